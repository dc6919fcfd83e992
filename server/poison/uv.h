/* uv.h - poison for base/ and turn/ (server/poison/README). */
#error "the engine (server/turn, server/base) must not include <uv.h>: libuv is net/, core/"
