/* test_cfg.c - the config table, file parser and command line (server/cfg.c).
 *
 * Table-driven: each row sets one key from text and expects success or an error message containing
 * the named fragments. Then whole files (syntax forms, comments, quotes, long lines) and argv
 * forms.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "cfg.h"
#include "turn_auth.h"
#include "unit.h"
#include "util.h"

typedef struct {
    const char *key;
    const char *value; /* NULL: bare key */
    int ok;
    const char *err_part;
} set_case_t;

static const set_case_t set_cases[] = {
    {"listening-port", "3478", 1, NULL},
    {"listening-port", "0", 0, "out of range 1..65535"},
    {"listening-port", "65536", 0, "out of range"},
    {"listening-port", "12x", 0, "not a whole number"},
    {"listening-port", "", 0, "needs a number"},
    {"listening-port", NULL, 0, "needs a number"},
    {"no-udp", NULL, 1, NULL},
    {"no-udp", "yes", 1, NULL},
    {"no-udp", "Off", 1, NULL},
    {"no-udp", "2", 0, "true/false"},
    {"log-level", "debug", 1, NULL},
    {"log-level", "chatty", 0, "not one of error warn info debug"},
    {"realm", "example.org", 1, NULL},
    {"realm", "", 0, "needs a value"},
    {"listening-ip", "127.0.0.1", 1, NULL},
    {"nonsense", "1", 0, "unknown key"},
    {"user", "a:b", 1, NULL},
    {"cert", "x.pem", 1, NULL},
    {"fingerprint", NULL, 1, NULL},
    {"max-bps", "100000000000", 1, NULL},
    {"max-bps", "-1", 0, "out of range"},
};

UNIT_TEST(set_table)
{
    for (size_t i = 0; i < ARRAY_SIZE(set_cases); i++) {
        const set_case_t *t = &set_cases[i];
        cfg_t c;
        cfg_init(&c);
        char err[256] = "";
        int rc = cfg_set(&c, t->key, t->value, "test", err, sizeof(err));
        if ((rc == 0) != t->ok)
            fprintf(stderr, "case %zu (%s=%s): rc %d err '%s'\n", i, t->key,
                    t->value ? t->value : "(bare)", rc, err);
        CHECK_INT(rc == 0, t->ok);
        if (!t->ok) {
            CHECK(strstr(err, t->err_part) != NULL);
            CHECK(strstr(err, t->key) != NULL);
            CHECK(strstr(err, "test") != NULL);
        }
        cfg_free(&c);
    }
}

UNIT_TEST(defaults)
{
    cfg_t c;
    cfg_init(&c);
    CHECK_INT(c.listening_port, 3478);
    CHECK_INT(c.tls_listening_port, 5349);
    CHECK_INT(c.min_port, 49152);
    CHECK_INT(c.max_port, 65535);
    CHECK_STR(c.realm, "uturn");
    CHECK_INT(c.stale_nonce, 600);
    CHECK_INT(c.max_allocate_lifetime, 3600);
    CHECK_INT(c.software_attribute, 0);
    CHECK_INT(c.allow_loopback_peers, 0);
    char err[256];
    CHECK_INT(cfg_validate(&c, err, sizeof(err)), 0);
    cfg_free(&c);
}

static char *write_tmp(const char *text)
{
    static char path[64];
    snprintf(path, sizeof(path), "/tmp/uturn-test-cfg-XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0)
        return NULL;
    size_t n = strlen(text);
    if (write(fd, text, n) != (ssize_t)n) {
        close(fd);
        return NULL;
    }
    close(fd);
    return path;
}

UNIT_TEST(file_forms)
{
    const char *text = "# a comment\n"
                       "   # indented comment\n"
                       "\n"
                       "listening-port = 4000\n"
                       "min-port=50000\n"
                       "max-port 50100\n"
                       "realm = \"quoted.example\"\n"
                       "listening-ip = 127.0.0.1\n"
                       "listening-ip = ::1\n"
                       "no-tcp\n"
                       "log-format = json\n";
    char *path = write_tmp(text);
    CHECK(path != NULL);
    cfg_t c;
    cfg_init(&c);
    char err[512] = "";
    CHECK_INT(cfg_parse_file(&c, path, err, sizeof(err)), 0);
    CHECK_INT(c.listening_port, 4000);
    CHECK_INT(c.min_port, 50000);
    CHECK_INT(c.max_port, 50100);
    CHECK_STR(c.realm, "quoted.example");
    CHECK_INT(c.listening_ip.n, 2);
    if (c.listening_ip.n == 2)
        CHECK_STR(c.listening_ip.v[1], "::1");
    CHECK_INT(c.no_tcp, 1);
    CHECK_INT(c.log_format, 1);
    CHECK_INT(cfg_validate(&c, err, sizeof(err)), 0);
    cfg_free(&c);
    unlink(path);

    path = write_tmp("listening-port = 1\nbad-key = 2\n");
    cfg_init(&c);
    CHECK_INT(cfg_parse_file(&c, path, err, sizeof(err)), -1);
    char want[128];
    snprintf(want, sizeof(want), "%s:2: 'bad-key': unknown key", path);
    CHECK(strstr(err, want) != NULL);
    cfg_free(&c);
    unlink(path);

    /* A line over the limit is refused, not split into two settings. */
    char *big = malloc(6000);
    memset(big, 'a', 5998);
    memcpy(big, "realm=", 6);
    big[5998] = '\n';
    big[5999] = 0;
    path = write_tmp(big);
    free(big);
    cfg_init(&c);
    CHECK_INT(cfg_parse_file(&c, path, err, sizeof(err)), -1);
    CHECK(strstr(err, "line longer than") != NULL);
    cfg_free(&c);
    unlink(path);
}

UNIT_TEST(validate)
{
    cfg_t c;
    char err[256];
    cfg_init(&c);
    c.min_port = 60000;
    c.max_port = 50000;
    CHECK_INT(cfg_validate(&c, err, sizeof(err)), -1);
    CHECK(strstr(err, "min-port") != NULL);
    cfg_free(&c);

    cfg_init(&c);
    CHECK_INT(cfg_set(&c, "external-ip", "203.0.113.5/198.51.100.5", "t", err, sizeof(err)), 0);
    CHECK_INT(cfg_validate(&c, err, sizeof(err)), 0);
    CHECK_INT(cfg_set(&c, "external-ip", "203.0.113.5/nope", "t", err, sizeof(err)), 0);
    CHECK_INT(cfg_validate(&c, err, sizeof(err)), -1);
    CHECK(strstr(err, "external-ip") != NULL);
    cfg_free(&c);

    cfg_init(&c);
    c.no_udp = c.no_tcp = c.no_tls = c.no_dtls = true;
    CHECK_INT(cfg_validate(&c, err, sizeof(err)), -1);
    cfg_free(&c);
}

/* argv arrays with writable strings, as main() gets them. */
typedef struct {
    char store[12][64];
    char *v[13];
    int n;
} argv_t;

static char **mkargv(argv_t *a, const char *const *words)
{
    a->n = 0;
    for (; *words && a->n < 12; words++, a->n++) {
        snprintf(a->store[a->n], sizeof(a->store[0]), "%s", *words);
        a->v[a->n] = a->store[a->n];
    }
    a->v[a->n] = NULL;
    return a->v;
}

UNIT_TEST(argv)
{
    static const char *const good[] = {"uturnd",
                                       "--listening-port",
                                       "5000",
                                       "--no-udp",
                                       "--realm=r.example",
                                       "--no-tcp",
                                       "false",
                                       "--log-level",
                                       "warn",
                                       "--check-config",
                                       NULL};
    argv_t a;
    cfg_t c;
    cfg_cli_t cli;
    char err[256] = "";
    char **argv = mkargv(&a, good);
    CHECK_INT(cfg_load(&c, a.n, argv, &cli, err, sizeof(err)), 0);
    CHECK_INT(c.listening_port, 5000);
    CHECK_INT(c.no_udp, 1);
    CHECK_INT(c.no_tcp, 0);
    CHECK_STR(c.realm, "r.example");
    CHECK_INT(c.log_level, 1);
    CHECK_INT(cli.check_config, 1);
    cfg_free(&c);

    static const char *const bad[] = {"uturnd", "-c", NULL};
    argv = mkargv(&a, bad);
    CHECK_INT(cfg_load(&c, a.n, argv, &cli, err, sizeof(err)), -1);
    CHECK(strstr(err, "needs a file name") != NULL);
    cfg_free(&c);

    static const char *const stray[] = {"uturnd", "oops", NULL};
    argv = mkargv(&a, stray);
    CHECK_INT(cfg_load(&c, a.n, argv, &cli, err, sizeof(err)), -1);
    CHECK(strstr(err, "unexpected argument 'oops'") != NULL);
    cfg_free(&c);
}

UNIT_TEST(table_consistent)
{
    /* Every row has a help text; names are unique; defaults parse (cfg_init would have failed). */
    for (size_t i = 0; i < cfg_table_len; i++) {
        CHECK(cfg_table[i].help && cfg_table[i].help[0]);
        for (size_t j = i + 1; j < cfg_table_len; j++)
            CHECK(strcmp(cfg_table[i].name, cfg_table[j].name) != 0);
        if (cfg_table[i].def && !(cfg_table[i].flags & (CFG_F_LATER | CFG_F_NOOP))) {
            cfg_t c;
            cfg_init(&c);
            char err[256];
            CHECK_INT(cfg_set(&c, cfg_table[i].name, cfg_table[i].def, "t", err, sizeof(err)), 0);
            cfg_free(&c);
        }
    }
    CHECK(cfg_worker_count(&(cfg_t){.relay_threads = 3}) == 3);
    CHECK(cfg_worker_count(&(cfg_t){.relay_threads = 0}) >= 1);
}

/* What the code that reads each integer key can hold (issue 11, defect 2: max-permissions 65535
 * went into a 16-bit capacity that doubled past 32768 to 0). One row per key whose holder is
 * narrower than the int it is parsed into, or that is multiplied. */
#define BITS(type_member) (sizeof(type_member) * CHAR_BIT)
typedef struct {
    const char *key;
    long hold; /* the largest value its users can take */
} hold_t;

UNIT_TEST(bounds_fit_their_users)
{
    const alloc_t *a = NULL;
    (void)a;
    const hold_t holds[] = {
        /* Ports go into uint16_t (sa_set_port) */
        {"listening-port", UINT16_MAX},
        {"tls-listening-port", UINT16_MAX},
        {"alt-listening-port", UINT16_MAX},
        {"min-port", UINT16_MAX},
        {"max-port", UINT16_MAX},
        /* The permission and channel tables' counts and capacities (alloc.h). */
        {"max-permissions", (long)((1ULL << (BITS(a->capperms) - 1)) - 1)},
        {"max-channels", (long)((1ULL << (BITS(a->capchans) - 1)) - 1)},
        /* RFC 8656 §12: 0x4000-0x7FFF is every channel number there is. */
        {"max-channels", 0x4000},
        /* Seconds made milliseconds in an int somewhere would overflow past INT_MAX / 1000. */
        {"stale-nonce", INT_MAX / 1000},
        {"max-allocate-lifetime", INT_MAX / 1000},
        {"tcp-frame-timeout", INT_MAX / 1000},
        {"tcp-idle-timeout", INT_MAX / 1000},
        /* Allocation ids carry the worker number in their top 16 bits (worker << 48). */
        {"relay-threads", 1L << 16},
        /* The max-bps bucket is a double: exact up to 2^53. */
        {"max-bps", 1L << 53},
    };
    for (size_t i = 0; i < ARRAY_SIZE(holds); i++) {
        const cfg_entry_t *e = cfg_table_find(holds[i].key);
        CHECK(e != NULL);
        if (!e)
            continue;
        if (e->max > holds[i].hold)
            fprintf(stderr, "'%s' allows %ld, its users hold %ld\n", e->name, e->max,
                    holds[i].hold);
        CHECK(e->max <= holds[i].hold);
    }
    /* Every integer key: min <= default <= max, and an int field never gets more than INT_MAX. */
    for (size_t i = 0; i < cfg_table_len; i++) {
        const cfg_entry_t *e = &cfg_table[i];
        if (e->type != CFG_INT || (e->flags & (CFG_F_NOOP | CFG_F_LATER)))
            continue;
        CHECK(e->min <= e->max);
        if (e->offset != offsetof(cfg_t, max_bps) && e->max > INT_MAX)
            fprintf(stderr, "'%s' allows %ld in an int\n", e->name, e->max);
        CHECK(e->offset == offsetof(cfg_t, max_bps) || e->max <= INT_MAX);
        long def = e->def ? strtol(e->def, NULL, 10) : 0;
        CHECK(def >= e->min && def <= e->max);
    }
}

/* A nonce made with the largest stale-nonce is one the check accepts (it refuses expiries too far
 * ahead as a clock gone backwards): otherwise every request would get 438 forever. */
UNIT_TEST(stale_nonce_max_accepted)
{
    const cfg_entry_t *e = cfg_table_find("stale-nonce");
    CHECK(e != NULL);
    if (!e)
        return;
    uint8_t secret[TURN_NONCE_SECRET_LEN] = {1, 2, 3};
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(0x7f000001);
    sin.sin_port = htons(5000);
    char nonce[TURN_NONCE_MAX + 1];
    uint32_t now = 1800000000u, feat = 0;
    int n = turn_nonce_make(secret, now + (uint32_t)e->max, 0, (struct sockaddr *)&sin, nonce,
                            sizeof(nonce));
    CHECK(n > 0);
    CHECK_INT(turn_nonce_check(secret, nonce, (size_t)(n > 0 ? n : 0), now, (struct sockaddr *)&sin,
                               &feat),
              TURN_NONCE_OK);
}

/* The permission table at the largest max-permissions, past the old wrap at 32768, and the
 * channel table at its largest max-channels: every entry is kept and found. About 15 s under ASan
 * (65535 permissions, each install a linear scan), hence its own limit. */
UNIT_TEST_TIMEOUT(tables_at_max, 300)
{
    const cfg_entry_t *pe = cfg_table_find("max-permissions");
    const cfg_entry_t *ce = cfg_table_find("max-channels");
    CHECK(pe && ce);
    if (!pe || !ce)
        return;
    alloc_t *a = calloc(1, sizeof(*a));
    CHECK(a != NULL);
    if (!a)
        return;
    unsigned maxp = (unsigned)pe->max, maxc = (unsigned)ce->max;
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    int bad = 0;
    for (unsigned i = 0; i < maxp && !bad; i++) {
        sin.sin_addr.s_addr = htonl(0x0a000000u + i);
        bad = alloc_perm_install(a, (struct sockaddr *)&sin, 1000, maxp) != 0;
    }
    CHECK_INT(bad, 0);
    CHECK_INT(a->nperms, maxp);
    CHECK(a->capperms >= a->nperms && a->capperms <= maxp);
    sin.sin_addr.s_addr = htonl(0x0a000000u + maxp);
    CHECK_INT(alloc_perm_install(a, (struct sockaddr *)&sin, 1000, maxp), -ENOSPC);
    sin.sin_addr.s_addr = htonl(0x0a000000u + 32768); /* the entry the old wrap lost */
    CHECK_INT(alloc_perm_check(a, (struct sockaddr *)&sin, 1000), 1);
    sin.sin_addr.s_addr = htonl(0x0a000000u);
    CHECK_INT(alloc_perm_check(a, (struct sockaddr *)&sin, 1000), 1);
    bad = 0;
    for (unsigned i = 0; i < maxc && !bad; i++) {
        sin.sin_port = htons((uint16_t)(10000 + i));
        bad = alloc_chan_bind(a, (uint16_t)(0x4000 + i), (struct sockaddr *)&sin, 1000, maxc) != 0;
    }
    CHECK_INT(bad, 0);
    CHECK_INT(a->nchans, maxc);
    sin.sin_port = htons(9);
    CHECK_INT(alloc_chan_bind(a, 0x7fff, (struct sockaddr *)&sin, 1000, maxc), -ENOSPC);
    free(a->perms);
    free(a->chans);
    free(a);
}

/* Every message names where the value came from: FILE:LINE, "command line" or "default". */
UNIT_TEST(where)
{
    char *path = write_tmp("# c\nrealm = r.example\nuser = a:b\n\nuser = broken\n");
    CHECK(path != NULL);
    if (!path)
        return;
    cfg_t c;
    cfg_init(&c);
    char err[512] = "", want[600];
    CHECK_INT(cfg_parse_file(&c, path, err, sizeof(err)), 0);
    snprintf(want, sizeof(want), "%s:2", path);
    CHECK_STR(cfg_where(&c, "realm", 0), want);
    snprintf(want, sizeof(want), "%s:5", path);
    CHECK_STR(cfg_where(&c, "user", 1), want);
    CHECK_STR(cfg_where(&c, "listening-port", 0), "default");
    CHECK_STR(cfg_where(&c, "user", 7), "default");
    CHECK_INT(cfg_set(&c, "realm", "cli.example", "command line", err, sizeof(err)), 0);
    CHECK_STR(cfg_where(&c, "realm", 0), "command line");
    CHECK_INT(cfg_fail(&c, "user", 1, err, sizeof(err), "missing '%c'", ':'), -1);
    snprintf(want, sizeof(want), "%s:5: 'user': missing ':'", path);
    CHECK_STR(err, want);
    /* Reload keeps the origins of what it does not reload. */
    cfg_t d;
    cfg_init(&d);
    CHECK_INT(cfg_keep_unreloadable(&d, &c), 0);
    snprintf(want, sizeof(want), "%s:5", path);
    CHECK_STR(cfg_where(&d, "user", 1), want);
    cfg_free(&d);
    cfg_free(&c);
    unlink(path);

    /* Short admin token: FILE:LINE of that token. */
    path = write_tmp("admin-listen = 127.0.0.1\nadmin-token = 0123456789abcdef\n"
                     "admin-token = ro:short\n");
    cfg_init(&c);
    CHECK_INT(cfg_parse_file(&c, path, err, sizeof(err)), 0);
    CHECK_INT(cfg_validate(&c, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s:3: 'admin-token': a token must be at least 16", path);
    CHECK(strncmp(err, want, strlen(want)) == 0);
    cfg_free(&c);
    unlink(path);
}

/* A NUL byte is named as such, not as a long line; a long line still is one. */
UNIT_TEST(nul_and_long_lines)
{
    static const char text[] = "realm = a\nuser = x\0y:z\n";
    char path[] = "/tmp/uturn-test-cfg-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    CHECK(write(fd, text, sizeof(text) - 1) == (ssize_t)(sizeof(text) - 1));
    close(fd);
    cfg_t c;
    cfg_init(&c);
    char err[512] = "", want[600];
    CHECK_INT(cfg_parse_file(&c, path, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s:2: NUL byte", path);
    CHECK(strncmp(err, want, strlen(want)) == 0);
    cfg_free(&c);
    unlink(path);

    char *big = malloc(5000);
    CHECK(big != NULL);
    if (!big)
        return;
    memset(big, 'x', 4999);
    big[4999] = 0;
    memcpy(big, "realm = ", 8);
    char *p = write_tmp(big);
    free(big);
    cfg_init(&c);
    CHECK_INT(cfg_parse_file(&c, p, err, sizeof(err)), -1);
    CHECK(strstr(err, ":1: line longer than 4095 bytes") != NULL);
    cfg_free(&c);
    unlink(p);
}

UNIT_MAIN("test_cfg")
