/* rand.c - rand_bytes over getrandom(2); see rand.h. */
#include "rand.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "log.h"

void rand_bytes(void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            /* Nonces, ports and tokens from a weak source would be a silent security hole. */
            LOGE("random", "getrandom failed: %s", strerror(errno));
            abort();
        }
        p += r;
        n -= (size_t)r;
    }
}
