/* test_cfg.c - the config table, file parser and command line (server/cfg.c).
 *
 * Table-driven: each row sets one key from text and expects success or an error message containing
 * the named fragments. Then whole files (syntax forms, comments, quotes, long lines) and argv
 * forms.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"
#include "unit.h"

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

static void test_set_table(void)
{
    for (size_t i = 0; i < sizeof(set_cases) / sizeof(set_cases[0]); i++) {
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

static void test_defaults(void)
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

static void test_file_forms(void)
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

static void test_validate(void)
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

static void test_argv(void)
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

static void test_table_consistent(void)
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

int main(void)
{
    test_set_table();
    test_defaults();
    test_file_forms();
    test_validate();
    test_argv();
    test_table_consistent();
    return unit_done("test_cfg");
}
