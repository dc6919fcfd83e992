/* jansson.h - poison (see server/poison/README): base/ and turn/ find this header before the
 * system's. */
#error                                                                                             \
    "the engine (server/turn) and base (server/base) must not include <jansson.h>: JSON belongs to admin/"
