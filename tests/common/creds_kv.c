/* creds_kv.c - see creds_kv.h. */
#include "creds_kv.h"

#include <stdio.h>

#include "cfg.h"

creds_shared_t *creds_shared_from_kv(const char *const *kv, char *err, size_t errlen)
{
    cfg_t cfg;
    creds_shared_t *sh = NULL;
    cfg_init(&cfg);
    for (; kv[0]; kv += 2)
        if (cfg_set(&cfg, kv[0], kv[1], "test", err, errlen) != 0) {
            fprintf(stderr, "cfg_set %s: %s\n", kv[0], err);
            cfg_free(&cfg);
            return NULL;
        }
    if (creds_shared_new(&cfg, &sh, err, errlen) != 0)
        sh = NULL;
    cfg_free(&cfg);
    return sh;
}
