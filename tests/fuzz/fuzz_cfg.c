/* fuzz_cfg.c - libFuzzer target for the configuration parser (server/cfg.c): the input is a config
 * file; every line goes through the table (cfg_set), then the cross-field checks (cfg_validate) and
 * the shared-state build that parses peer ranges, relay and alternate addresses (shared_init), then
 * everything is freed (leaks are failures under ASan).
 */
#include <stdint.h>
#include <stdio.h>

#include "cfg.h"
#include "shared.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > 65536)
        return 0;
    FILE *f = fmemopen((void *)(uintptr_t)data, size, "r");
    if (!f)
        return 0;
    cfg_t c;
    cfg_init(&c);
    char err[512];
    if (cfg_parse_stream(&c, f, "fuzz", err, sizeof(err)) == 0 &&
        cfg_validate(&c, err, sizeof(err)) == 0 && !c.redis_userdb && !c.cert) {
        /* Redis and certificates would reach out to the network or the disk: not here. */
        shared_t s;
        (void)shared_init(&s, &c, NULL, 0, err, sizeof(err));
        shared_close(&s); /* also after a failed init: it frees whatever was built */
    }
    fclose(f);
    cfg_free(&c);
    return 0;
}
