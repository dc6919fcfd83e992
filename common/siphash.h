/* siphash.h - SipHash-2-4, the keyed hash for every table indexed by bytes a client chooses.
 *
 * Aumasson and Bernstein, "SipHash: a fast short-input PRF" (2012). With a secret random key per
 * table, a sender cannot pick addresses or names that land in one bucket (hash flooding) and turn
 * each lookup into a long chain walk. Not a MAC for anything that crosses the wire.
 */
#ifndef UTURN_SIPHASH_H
#define UTURN_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

#define SIPHASH_KEY_LEN 16

/* The 64-bit SipHash-2-4 of `n` bytes at `in` under `key` (the paper's k0 = key[0..7] and
 * k1 = key[8..15], little-endian). Pure; any thread. */
uint64_t siphash(const uint8_t key[SIPHASH_KEY_LEN], const void *in, size_t n);

#endif
