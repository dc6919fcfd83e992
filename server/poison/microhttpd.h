/* microhttpd.h - poison for base/ and turn/ (server/poison/README). */
#error "the engine (server/turn, server/base) must not include <microhttpd.h>: HTTP is admin/"
