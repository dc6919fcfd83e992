/* uv.h - poison (see server/poison/README): base/ and turn/ find this header before the system's.
 */
#error                                                                                             \
    "the engine (server/turn) and base (server/base) must not include <uv.h>: libuv belongs to net/ and core/; the engine takes its clock and sockets from its caller (dispatch_clock, dispatch_relay_ops_t)"
