/* rand.h - the one source of randomness in uturnd: the kernel CSPRNG, and nothing weaker.
 *
 * Nonce secrets, cookie secrets, relay ports, reservation tokens, transaction IDs and hash seeds
 * all come from here, so a weak fallback cannot creep in at one call site.
 */
#ifndef UTURN_RAND_H
#define UTURN_RAND_H

#include <stddef.h>

/* Fill buf with n random bytes from getrandom(2), retrying on EINTR and short reads. Aborts (after
 * logging) if the kernel cannot give them: a silent weak source would be a security hole. Any
 * thread. */
void rand_bytes(void *buf, size_t n);

#endif
