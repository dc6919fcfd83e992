/* creds_kv.h - a creds_shared_t built from key/value pairs the way the config file would set them,
 * for the C tests of the credential stores.
 */
#ifndef UTURN_TEST_CREDS_KV_H
#define UTURN_TEST_CREDS_KV_H

#include <stddef.h>

#include "creds.h"

/* `kv` is NULL-terminated: key, value, key, value, ... Returns the shared part, or NULL with the
 * reason in err (a key that cfg_set refuses is also printed on stderr). */
creds_shared_t *creds_shared_from_kv(const char *const *kv, char *err, size_t errlen);

#endif
