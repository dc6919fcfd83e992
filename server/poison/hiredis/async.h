/* hiredis/async.h - poison for base/ and turn/ (server/poison/README). */
#error "the engine (server/turn, server/base) must not include <hiredis/async.h>: Redis is auth/"
