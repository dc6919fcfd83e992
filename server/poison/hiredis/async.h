/* hiredis/async.h - poison (see server/poison/README): base/ and turn/ find this header before the
 * system's. */
#error                                                                                             \
    "the engine (server/turn) and base (server/base) must not include <hiredis/async.h>: Redis belongs to auth/; the engine asks for keys through creds_ops_t"
