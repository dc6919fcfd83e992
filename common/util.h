/* util.h - the two macros every C codebase writes once: ARRAY_SIZE and container_of. */
#ifndef UTURN_UTIL_H
#define UTURN_UTIL_H

#include <stddef.h>

/* The number of elements of an array (not a pointer: sizeof would lie). */
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* The object of type `type` whose member `member` is at `ptr`. */
#define container_of(ptr, type, member) ((type *)(void *)(((char *)(ptr)) - offsetof(type, member)))

#endif
