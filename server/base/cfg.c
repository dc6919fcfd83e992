/* cfg.c - parse the config file and the command line through the table in cfg_table.c.
 *
 * Every error names the key, where it came from (FILE:LINE or "command line") and the reason, and
 * stops startup: a typo in a TURN server's config must not silently change who may relay what.
 */
#include "cfg.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sockaddr_util.h"
#include "util.h"

#define CFG_LINE_MAX 4096

static void *field(cfg_t *c, const cfg_entry_t *e) { return (char *)c + e->offset; }

static const void *cfield(const cfg_t *c, const cfg_entry_t *e)
{
    return (const char *)c + e->offset;
}

static int fail(char *err, size_t errlen, const char *where, const char *key, const char *why)
{
    snprintf(err, errlen, "%s: '%s': %s", where, key, why);
    return -1;
}

static int parse_bool(const char *v, bool *out)
{
    static const char *const yes[] = {"", "1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    if (!v) {
        *out = true;
        return 0;
    }
    for (size_t i = 0; i < ARRAY_SIZE(yes); i++)
        if (strcasecmp(v, yes[i]) == 0) {
            *out = true;
            return 0;
        }
    for (size_t i = 0; i < ARRAY_SIZE(no); i++)
        if (strcasecmp(v, no[i]) == 0) {
            *out = false;
            return 0;
        }
    return -1;
}

static int set_int(cfg_t *c, const cfg_entry_t *e, const char *v, const char *where, char *err,
                   size_t errlen)
{
    char why[160];
    if (!v || !*v)
        return fail(err, errlen, where, e->name, "needs a number");
    errno = 0;
    char *end;
    long long n = strtoll(v, &end, 10);
    if (errno || *end || end == v) {
        snprintf(why, sizeof(why), "'%s' is not a whole number", v);
        return fail(err, errlen, where, e->name, why);
    }
    if (n < e->min || n > e->max) {
        snprintf(why, sizeof(why), "%lld is out of range %ld..%ld", n, e->min, e->max);
        return fail(err, errlen, where, e->name, why);
    }
    if (e->offset == offsetof(cfg_t, max_bps))
        *(long *)field(c, e) = (long)n;
    else
        *(int *)field(c, e) = (int)n;
    return 0;
}

static int set_enum(cfg_t *c, const cfg_entry_t *e, const char *v, const char *where, char *err,
                    size_t errlen)
{
    for (int i = 0; v && e->enum_names[i]; i++)
        if (strcasecmp(v, e->enum_names[i]) == 0) {
            *(int *)field(c, e) = i;
            return 0;
        }
    char why[200];
    size_t n = (size_t)snprintf(why, sizeof(why), "'%s' is not one of", v ? v : "");
    for (int i = 0; e->enum_names[i] && n < sizeof(why); i++)
        n += (size_t)snprintf(why + n, sizeof(why) - n, " %s", e->enum_names[i]);
    return fail(err, errlen, where, e->name, why);
}

static int list_add(cfg_list_t *l, const char *v, const char *where)
{
    char **nv = realloc(l->v, (l->n + 1) * sizeof(*nv));
    if (!nv)
        return -1;
    l->v = nv;
    char **nw = realloc(l->where, (l->n + 1) * sizeof(*nw));
    if (!nw)
        return -1;
    l->where = nw;
    char *sv = strdup(v), *sw = strdup(where ? where : "default");
    if (!sv || !sw) {
        free(sv);
        free(sw);
        return -1;
    }
    l->v[l->n] = sv;
    l->where[l->n] = sw;
    l->n++;
    return 0;
}

static void list_free(cfg_list_t *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i]);
        free(l->where[i]);
    }
    free(l->v);
    free(l->where);
    l->v = NULL;
    l->where = NULL;
    l->n = 0;
}

/* Remember who set a scalar key last; the defaults leave it NULL. */
static int set_origin(cfg_t *c, const cfg_entry_t *e, const char *where)
{
    size_t idx = (size_t)(e - cfg_table);
    char *w = NULL;
    if (where && strcmp(where, "default") != 0 && !(w = strdup(where)))
        return -1;
    free(c->origin[idx]);
    c->origin[idx] = w;
    return 0;
}

const char *cfg_where(const cfg_t *c, const char *key, size_t i)
{
    const cfg_entry_t *e = cfg_table_find(key);
    if (!e || (e->flags & CFG_F_NOOP))
        return "default";
    if (e->type == CFG_LIST) {
        const cfg_list_t *l = cfield(c, e);
        return i < l->n && l->where ? l->where[i] : "default";
    }
    const char *w = c->origin[e - cfg_table];
    return w ? w : "default";
}

int cfg_fail(const cfg_t *c, const char *key, size_t i, char *err, size_t errlen, const char *fmt,
             ...)
{
    int n = snprintf(err, errlen, "%s: '%s': ", cfg_where(c, key, i), key);
    if (n >= 0 && (size_t)n < errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int set_value(cfg_t *c, const cfg_entry_t *e, const char *value, const char *where,
                     char *err, size_t errlen)
{
    const char *key = e->name;
    bool b;
    switch (e->type) {
    case CFG_BOOL:
        if (parse_bool(value, &b) != 0)
            return fail(err, errlen, where, key, "takes true/false, yes/no, on/off or nothing");
        if (!(e->flags & CFG_F_NOOP))
            *(bool *)field(c, e) = b;
        return 0;
    case CFG_INT:
        return set_int(c, e, value, where, err, errlen);
    case CFG_ENUM:
        return set_enum(c, e, value, where, err, errlen);
    case CFG_STR: {
        if (!value || !*value)
            return fail(err, errlen, where, key, "needs a value");
        char *s = strdup(value);
        if (!s)
            return fail(err, errlen, where, key, "out of memory");
        char **slot = field(c, e);
        free(*slot);
        *slot = s;
        return 0;
    }
    case CFG_LIST:
        if (!value || !*value)
            return fail(err, errlen, where, key, "needs a value");
        if (list_add(field(c, e), value, where) != 0)
            return fail(err, errlen, where, key, "out of memory");
        return 0;
    }
    return fail(err, errlen, where, key, "bad table entry");
}

int cfg_set(cfg_t *c, const char *key, const char *value, const char *where, char *err,
            size_t errlen)
{
    const cfg_entry_t *e = cfg_table_find(key);
    if (!e)
        return fail(err, errlen, where, key, "unknown key (uturnd --help lists every key)");
    if (e->flags & CFG_F_LATER)
        return fail(err, errlen, where, key, "not supported yet by this uturnd version");
    if (set_value(c, e, value, where, err, errlen) != 0)
        return -1;
    /* Lists keep the origin of each value (set_value); scalars the last one. */
    if (e->type != CFG_LIST && !(e->flags & CFG_F_NOOP) && set_origin(c, e, where) != 0)
        return fail(err, errlen, where, key, "out of memory");
    return 0;
}

void cfg_init(cfg_t *c)
{
    memset(c, 0, sizeof(*c));
    char err[256];
    for (size_t i = 0; i < cfg_table_len; i++) {
        const cfg_entry_t *e = &cfg_table[i];
        if (e->def && !(e->flags & (CFG_F_NOOP | CFG_F_LATER)))
            (void)cfg_set(c, e->name, e->def, "default", err, sizeof(err));
    }
}

void cfg_free(cfg_t *c)
{
    for (size_t i = 0; i < cfg_table_len; i++) {
        const cfg_entry_t *e = &cfg_table[i];
        if (e->flags & CFG_F_NOOP)
            continue;
        free(c->origin[i]);
        c->origin[i] = NULL;
        if (e->type == CFG_STR) {
            char **slot = field(c, e);
            free(*slot);
            *slot = NULL;
        } else if (e->type == CFG_LIST) {
            list_free(field(c, e));
        }
    }
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = 0;
    return s;
}

/* Split "key = value", "key=value", "key value" or "key". Strips one pair of surrounding quotes. */
static void split_kv(char *line, char **key, char **value)
{
    char *p = line;
    while (*p && *p != '=' && !isspace((unsigned char)*p))
        p++;
    *key = line;
    if (!*p) {
        *value = NULL;
        return;
    }
    int had_eq = *p == '=';
    *p++ = 0;
    p = trim(p);
    if (!had_eq && *p == '=')
        p = trim(p + 1);
    size_t n = strlen(p);
    if (n >= 2 && p[0] == '"' && p[n - 1] == '"') {
        p[n - 1] = 0;
        p++;
    }
    *value = (*p || had_eq) ? p : NULL;
}

int cfg_parse_file(cfg_t *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    int rc = cfg_parse_stream(c, f, path, err, errlen);
    fclose(f);
    return rc;
}

enum { LINE_OK, LINE_EOF, LINE_LONG, LINE_NUL };

/* One line without its newline into buf (NUL-terminated). Byte by byte, not fgets: fgets cannot
 * tell a NUL byte in the line from its end, and reported such a line as too long. */
static int read_line(FILE *f, char *buf, size_t cap)
{
    size_t n = 0;
    int ch, nul = 0;
    while ((ch = getc(f)) != EOF && ch != '\n') {
        if (ch == 0)
            nul = 1;
        if (n + 1 >= cap)
            return LINE_LONG;
        buf[n++] = (char)ch;
    }
    buf[n] = 0;
    if (ch == EOF && n == 0 && !nul)
        return LINE_EOF;
    return nul ? LINE_NUL : LINE_OK;
}

int cfg_parse_stream(cfg_t *c, FILE *f, const char *path, char *err, size_t errlen)
{
    char line[CFG_LINE_MAX];
    int lineno = 0, rc = 0, got;
    while ((got = read_line(f, line, sizeof(line))) != LINE_EOF) {
        lineno++;
        char where[PATH_MAX + 32];
        snprintf(where, sizeof(where), "%s:%d", path, lineno);
        if (got == LINE_LONG || got == LINE_NUL) {
            if (got == LINE_LONG)
                snprintf(err, errlen, "%s: line longer than %d bytes", where, CFG_LINE_MAX - 1);
            else
                snprintf(err, errlen, "%s: NUL byte in the line (a binary or UTF-16 file?)", where);
            rc = -1;
            break;
        }
        char *s = trim(line);
        if (!*s || *s == '#')
            continue;
        char *key, *value;
        split_kv(s, &key, &value);
        if ((rc = cfg_set(c, key, value, where, err, errlen)) != 0)
            break;
    }
    if (rc == 0 && ferror(f)) {
        snprintf(err, errlen, "%s: read error: %s", path, strerror(errno));
        rc = -1;
    }
    return rc;
}

int cfg_cli_scan(int argc, char **argv, cfg_cli_t *cli, char *err, size_t errlen)
{
    memset(cli, 0, sizeof(*cli));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0 || strcmp(a, "-config") == 0) {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "command line: '%s' needs a file name", a);
                return -1;
            }
            cli->config_path = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            cli->config_path = a + 9;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            cli->help = true;
        } else if (strcmp(a, "--version") == 0) {
            cli->version = true;
        } else if (strcmp(a, "--check-config") == 0) {
            cli->check_config = true;
        } else if (strcmp(a, "--kernel-offload-sweep") == 0) {
            cli->kernel_offload_sweep = true;
        }
    }
    return 0;
}

static int is_cli_meta(const char *a)
{
    return strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0 || strcmp(a, "--version") == 0 ||
           strcmp(a, "--check-config") == 0 || strcmp(a, "--kernel-offload-sweep") == 0 ||
           strncmp(a, "--config=", 9) == 0;
}

int cfg_apply_args(cfg_t *c, int argc, char **argv, char *err, size_t errlen)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0 || strcmp(a, "-config") == 0) {
            i++;
            continue;
        }
        if (is_cli_meta(a))
            continue;
        if (strncmp(a, "--", 2) != 0) {
            snprintf(err, errlen,
                     "command line: unexpected argument '%s' (settings are --key value)", a);
            return -1;
        }
        char key[128];
        const char *value = NULL;
        const char *eq = strchr(a + 2, '=');
        size_t klen = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (klen == 0 || klen >= sizeof(key)) {
            snprintf(err, errlen, "command line: bad option '%s'", a);
            return -1;
        }
        memcpy(key, a + 2, klen);
        key[klen] = 0;
        const cfg_entry_t *e = cfg_table_find(key);
        bool dummy;
        if (eq) {
            value = eq + 1;
        } else if (e && e->type == CFG_BOOL) {
            /* A boolean consumes the next word only when it is a boolean literal. */
            if (i + 1 < argc && parse_bool(argv[i + 1], &dummy) == 0 && argv[i + 1][0])
                value = argv[++i];
        } else if (i + 1 < argc) {
            value = argv[++i];
        }
        if (cfg_set(c, key, value, "command line", err, errlen) != 0)
            return -1;
    }
    return 0;
}

static int check_ip_list(const cfg_t *c, const cfg_list_t *l, const char *key, char *err,
                         size_t errlen)
{
    struct sockaddr_storage ss;
    for (size_t i = 0; i < l->n; i++)
        if (sa_parse_ip(l->v[i], 0, &ss) != 0)
            return cfg_fail(c, key, i, err, errlen, "'%s' is not an IPv4 or IPv6 address", l->v[i]);
    return 0;
}

/* admin-token: long and printable (the admin API compares digests of it, admin.c). */
static int check_admin_tokens(const cfg_t *c, char *err, size_t errlen)
{
    if (c->admin_listen && c->admin_token.n == 0)
        return cfg_fail(c, "admin-listen", 0, err, errlen, "needs at least one 'admin-token'");
    for (size_t i = 0; i < c->admin_token.n; i++) {
        const char *t = c->admin_token.v[i];
        if (strncmp(t, "ro:", 3) == 0)
            t += 3;
        size_t n = strlen(t);
        bool ok = n >= CFG_ADMIN_TOKEN_MIN;
        for (size_t j = 0; j < n && ok; j++)
            ok = t[j] > 0x20 && t[j] < 0x7f;
        if (!ok)
            return cfg_fail(c, "admin-token", i, err, errlen,
                            "a token must be at least %d printable characters without spaces "
                            "(e.g. from `openssl rand -hex 32`)",
                            CFG_ADMIN_TOKEN_MIN);
    }
    return 0;
}

int cfg_alt_listening_port(const cfg_t *c)
{
    return c->alt_listening_port ? c->alt_listening_port : c->listening_port + 1;
}

/* RFC 5780 §6: two IP addresses and two ports, the same ports on both addresses. The addresses
 * must be named: a wildcard socket would let the kernel pick the source, and the source is the
 * answer. */
static int check_rfc5780(const cfg_t *c, char *err, size_t errlen)
{
    if (!c->rfc5780)
        return 0;
    int n4 = 0, n6 = 0;
    for (size_t i = 0; i < c->listening_ip.n; i++) {
        struct sockaddr_storage ss, other;
        (void)sa_parse_ip(c->listening_ip.v[i], 0, &ss); /* checked by check_ip_list */
        static const uint8_t zero[16];
        const void *raw = ss.ss_family == AF_INET
                              ? (const void *)&((struct sockaddr_in *)&ss)->sin_addr
                              : (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr;
        if (memcmp(raw, zero, ss.ss_family == AF_INET ? 4 : 16) == 0)
            return cfg_fail(c, "listening-ip", i, err, errlen,
                            "%s is a wildcard; rfc5780 needs each address named",
                            c->listening_ip.v[i]);
        int dup = 0;
        for (size_t j = 0; j < i && !dup; j++)
            dup = sa_parse_ip(c->listening_ip.v[j], 0, &other) == 0 &&
                  sa_equal_ip((struct sockaddr *)&ss, (struct sockaddr *)&other);
        if (!dup && ss.ss_family == AF_INET)
            n4++;
        else if (!dup)
            n6++;
    }
    if (n4 < 2 && n6 < 2)
        return cfg_fail(c, "rfc5780", 0, err, errlen,
                        "rfc5780 needs two listening-ip of one family (RFC 5780 §6)");
    int alt = cfg_alt_listening_port(c);
    if (alt > 65535)
        return cfg_fail(c, "listening-port", 0, err, errlen,
                        "rfc5780: listening-port + 1 is past 65535: set 'alt-listening-port'");
    if (alt == c->listening_port)
        return cfg_fail(c, "alt-listening-port", 0, err, errlen,
                        "rfc5780: must differ from 'listening-port' %d", c->listening_port);
    if (alt == c->tls_listening_port && !(c->no_tls && c->no_dtls))
        return cfg_fail(c, "alt-listening-port", 0, err, errlen,
                        "rfc5780: %d is the 'tls-listening-port'", alt);
    return 0;
}

int cfg_validate(const cfg_t *c, char *err, size_t errlen)
{
    if (check_ip_list(c, &c->listening_ip, "listening-ip", err, errlen) ||
        check_ip_list(c, &c->relay_ip, "relay-ip", err, errlen))
        return -1;
    struct sockaddr_storage ss;
    for (size_t i = 0; i < c->external_ip.n; i++) {
        char buf[128];
        snprintf(buf, sizeof(buf), "%s", c->external_ip.v[i]);
        char *slash = strchr(buf, '/');
        if (slash)
            *slash = 0;
        if (sa_parse_ip(buf, 0, &ss) != 0 || (slash && sa_parse_ip(slash + 1, 0, &ss) != 0))
            return cfg_fail(c, "external-ip", i, err, errlen,
                            "'%s' is not PUBLIC or PUBLIC/PRIVATE", c->external_ip.v[i]);
    }
    if (c->min_port > c->max_port)
        return cfg_fail(c, "min-port", 0, err, errlen, "%d is above 'max-port' %d", c->min_port,
                        c->max_port);
    if (c->no_udp && c->no_tcp && c->no_tls && c->no_dtls) {
        snprintf(err, errlen, "no-udp, no-tcp, no-tls and no-dtls together leave nothing to serve");
        return -1;
    }
    if (!c->cert != !c->pkey)
        return cfg_fail(c, c->cert ? "cert" : "pkey", 0, err, errlen,
                        "'cert' and 'pkey' go together: set both (or neither) for TLS/DTLS");
    if (!c->realm || !*c->realm || strlen(c->realm) > 127)
        return cfg_fail(c, "realm", 0, err, errlen, "must be 1 to 127 bytes (RFC 8489 §14.9)");
    if (c->node_id) {
        size_t n = strlen(c->node_id);
        if (n < 1 || n > CFG_NODE_ID_MAX || strspn(c->node_id, CFG_NODE_ID_CHARS) != n)
            return cfg_fail(c, "node-id", 0, err, errlen, "must be 1 to 64 of A-Z a-z 0-9 . _ -");
    }
    if (check_admin_tokens(c, err, errlen) != 0)
        return -1;
    if (c->admin_connections_per_ip >= c->admin_connections_max)
        return cfg_fail(c, "admin-connections-per-ip", 0, err, errlen,
                        "%d must be below 'admin-connections-max' %d: one source could take every "
                        "slot",
                        c->admin_connections_per_ip, c->admin_connections_max);
    return check_rfc5780(c, err, errlen);
}

int cfg_load(cfg_t *c, int argc, char **argv, cfg_cli_t *cli, char *err, size_t errlen)
{
    cfg_init(c);
    if (cfg_cli_scan(argc, argv, cli, err, errlen) != 0)
        return -1;
    if (cli->help || cli->version)
        return 0;
    if (cli->config_path && cfg_parse_file(c, cli->config_path, err, errlen) != 0)
        return -1;
    if (cfg_apply_args(c, argc, argv, err, errlen) != 0)
        return -1;
    return cfg_validate(c, err, errlen);
}

void cfg_print_help(FILE *out, const char *prog)
{
    fprintf(
        out,
        "usage: %s [-c FILE] [--key value | --key=value | --flag]... [--check-config]\n"
        "       %s --kernel-offload-sweep\n"
        "\n"
        "uturn STUN/TURN server. Every key below works in the config file (key = value) and on\n"
        "the command line; command-line values win over the file, repeatable keys add up.\n"
        "\n",
        prog, prog);
    for (size_t i = 0; i < cfg_table_len; i++) {
        const cfg_entry_t *e = &cfg_table[i];
        const char *arg = e->type == CFG_BOOL ? "" : e->type == CFG_INT ? " N" : " VALUE";
        char head[64];
        snprintf(head, sizeof(head), "--%s%s", e->name, arg);
        fprintf(out, "  %-32s %s", head, e->help);
        if (e->def && e->type != CFG_BOOL)
            fprintf(out, " [%s]", e->def);
        if (e->flags & CFG_F_LATER)
            fprintf(out, " (not supported yet)");
        fprintf(out, "\n");
    }
    fprintf(out,
            "\n  -c, --config FILE                config file\n"
            "  --check-config                   validate the configuration and exit\n"
            "  --kernel-offload-sweep           remove the kernel path's tc filters of uturnds\n"
            "                                   that are gone (crashed), then exit (root;\n"
            "                                   systemd's ExecStopPost=+ in docs/KERNEL.md)\n"
            "  -h, --help                       this text\n"
            "  --version                        print the version\n");
}

void cfg_dump(const cfg_t *c, FILE *out)
{
    for (size_t i = 0; i < cfg_table_len; i++) {
        const cfg_entry_t *e = &cfg_table[i];
        if (e->flags & CFG_F_NOOP)
            continue;
        const void *p = cfield(c, e);
        int secret = (e->flags & CFG_F_SECRET) != 0;
        switch (e->type) {
        case CFG_BOOL:
            fprintf(out, "%s = %s\n", e->name, *(const bool *)p ? "true" : "false");
            break;
        case CFG_INT:
            if (e->offset == offsetof(cfg_t, max_bps))
                fprintf(out, "%s = %ld\n", e->name, *(const long *)p);
            else
                fprintf(out, "%s = %d\n", e->name, *(const int *)p);
            break;
        case CFG_ENUM:
            fprintf(out, "%s = %s\n", e->name, e->enum_names[*(const int *)p]);
            break;
        case CFG_STR:
            if (*(char *const *)p)
                fprintf(out, "%s = %s\n", e->name, secret ? "****" : *(char *const *)p);
            break;
        case CFG_LIST: {
            const cfg_list_t *l = p;
            for (size_t j = 0; j < l->n; j++)
                fprintf(out, "%s = %s\n", e->name, secret ? "****" : l->v[j]);
            break;
        }
        }
    }
}

void cfg_format_value(const cfg_t *c, const cfg_entry_t *e, char *out, size_t cap)
{
    const void *p = cfield(c, e);
    out[0] = 0;
    switch (e->type) {
    case CFG_BOOL:
        snprintf(out, cap, "%s", *(const bool *)p ? "true" : "false");
        break;
    case CFG_INT:
        if (e->offset == offsetof(cfg_t, max_bps))
            snprintf(out, cap, "%ld", *(const long *)p);
        else
            snprintf(out, cap, "%d", *(const int *)p);
        break;
    case CFG_ENUM:
        snprintf(out, cap, "%s", e->enum_names[*(const int *)p]);
        break;
    case CFG_STR:
        snprintf(out, cap, "%s", *(char *const *)p ? *(char *const *)p : "");
        break;
    case CFG_LIST: {
        const cfg_list_t *l = p;
        size_t n = 0;
        for (size_t j = 0; j < l->n && n < cap; j++)
            n += (size_t)snprintf(out + n, cap - n, "%s%s", j ? ", " : "", l->v[j]);
        break;
    }
    }
}

int cfg_keep_unreloadable(cfg_t *dst, const cfg_t *src)
{
    for (size_t i = 0; i < cfg_table_len; i++) {
        const cfg_entry_t *e = &cfg_table[i];
        if (e->flags & (CFG_F_NOOP | CFG_F_RELOAD))
            continue;
        void *d = field(dst, e);
        const void *sv = cfield(src, e);
        char *o = src->origin[i] ? strdup(src->origin[i]) : NULL;
        if (src->origin[i] && !o)
            return -ENOMEM;
        free(dst->origin[i]);
        dst->origin[i] = o;
        switch (e->type) {
        case CFG_BOOL:
            *(bool *)d = *(const bool *)sv;
            break;
        case CFG_INT:
            if (e->offset == offsetof(cfg_t, max_bps))
                *(long *)d = *(const long *)sv;
            else
                *(int *)d = *(const int *)sv;
            break;
        case CFG_ENUM:
            *(int *)d = *(const int *)sv;
            break;
        case CFG_STR: {
            char *const *from = sv;
            char *copy = *from ? strdup(*from) : NULL;
            if (*from && !copy)
                return -ENOMEM;
            free(*(char **)d);
            *(char **)d = copy;
            break;
        }
        case CFG_LIST: {
            const cfg_list_t *from = sv;
            cfg_list_t fresh = {NULL, NULL, 0};
            for (size_t j = 0; j < from->n; j++)
                if (list_add(&fresh, from->v[j], from->where[j]) != 0) {
                    list_free(&fresh);
                    return -ENOMEM;
                }
            list_free(d);
            *(cfg_list_t *)d = fresh;
            break;
        }
        }
    }
    return 0;
}

/* CPUs allowed by a cgroup v2 quota ("max 100000" or "200000 100000"), or 0 when unlimited. */
static int cgroup_cpus(void)
{
    FILE *f = fopen("/sys/fs/cgroup/cpu.max", "r");
    if (!f)
        return 0;
    char quota[32] = "";
    long period = 0;
    int n = fscanf(f, "%31s %ld", quota, &period);
    fclose(f);
    if (n != 2 || strcmp(quota, "max") == 0 || period <= 0)
        return 0;
    long q = atol(quota);
    return q > 0 ? (int)((q + period - 1) / period) : 0;
}

int cfg_worker_count(const cfg_t *c)
{
    if (c->relay_threads > 0)
        return c->relay_threads;
    int n = 1;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0)
        n = CPU_COUNT(&set);
    int cg = cgroup_cpus();
    if (cg > 0 && cg < n)
        n = cg;
    return n > 0 ? n : 1;
}

void cfg_node_id(const cfg_t *c, char out[CFG_NODE_ID_MAX + 1])
{
    if (c->node_id) {
        snprintf(out, CFG_NODE_ID_MAX + 1, "%s", c->node_id);
        return;
    }
    char h[256] = "";
    if (gethostname(h, sizeof(h) - 1) != 0 || !h[0])
        snprintf(h, sizeof(h), "uturn");
    h[CFG_NODE_ID_MAX] = 0;
    for (char *p = h; *p; p++)
        if (!strchr(CFG_NODE_ID_CHARS, *p))
            *p = '-';
    snprintf(out, CFG_NODE_ID_MAX + 1, "%s", h);
}
