/* static_creds.h - a credential source for tests and fuzzers that drive the engine without a loop:
 * static users ("name:password", like the `user` config key) answered at once, as the ops table
 * dispatch_init takes (creds_ops.h). Nothing is ever CREDS_PENDING, so no callback is kept.
 */
#ifndef UTURN_STATIC_CREDS_H
#define UTURN_STATIC_CREDS_H

#include "cfg.h"
#include "creds_ops.h"

/* The users of `cfg`'s `user` lines in its realm (both read at every lookup: cfg must outlive the
 * table). FOUND with the MD5 and SHA-256 keys of a known name (its password SASLprepped when
 * SASLprep accepts it, as auth/ does), UNKNOWN otherwise; USERHASH (RFC 8489 §14.4) matched
 * against every user's. */
void static_creds_ops(const cfg_t *cfg, creds_ops_t *out);

#endif
