/* microhttpd.h - poison (see server/poison/README): base/ and turn/ find this header before the
 * system's. */
#error                                                                                             \
    "the engine (server/turn) and base (server/base) must not include <microhttpd.h>: the HTTP admin belongs to admin/; it reads the engine through alloc_view.h"
