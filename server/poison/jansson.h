/* jansson.h - poison for base/ and turn/ (server/poison/README). */
#error "the engine (server/turn, server/base) must not include <jansson.h>: JSON is admin/"
