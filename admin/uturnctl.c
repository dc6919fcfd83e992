/* uturnctl.c - the command-line client of uturnd's admin API (docs/ADMIN.md, docs/openapi.yaml).
 *
 * It speaks HTTP with libcurl and reads JSON with jansson. The URL and token come from --url and
 * --token, else UTURN_URL and UTURN_TOKEN, else a config file (--config FILE, default
 * ~/.config/uturnctl.conf: `url = ...`, `token = ...`, `realm = ...` lines). Output is a human
 * table by default and the API's JSON with --json. Exit codes a script can rely on: 0 success, 1
 * the API answered an error (its code and message on stderr: "uturnctl: 404 not_found: ..."), 2
 * usage, 3 uturnd could not be reached.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "probe.h"

#define EXIT_API 1
#define EXIT_USAGE 2
#define EXIT_CONNECT 3
#define DEFAULT_URL "http://127.0.0.1:8089"

typedef struct {
    const char *url, *token, *realm, *config;
    bool json;
    long timeout;
} opts_t;

static opts_t opt;
static char *cfg_url, *cfg_token, *cfg_realm; /* from the config file */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: uturnctl [--url URL] [--token TOKEN] [--config FILE] [--realm REALM] [--json]\n"
            "                [--timeout SECONDS] COMMAND [ARGS]\n"
            "commands:\n"
            "  stats                          live statistics\n"
            "  cluster                        the fleet's live nodes (GET /api/v1/cluster)\n"
            "  health | ready                 /healthz, /readyz\n"
            "  metrics                        Prometheus text\n"
            "  allocations [--user U] [--limit N] [--cursor C]\n"
            "  allocation ID                  one allocation in detail\n"
            "  kill ID                        terminate an allocation\n"
            "  kill --user USER               terminate USER's allocations on every node\n"
            "  user add USER --password PW    (PW '-' reads one line from stdin)\n"
            "  user del USER | user show USER | user list [--limit N] [--cursor C]\n"
            "  secret add [SECRET] | secret del ID | secret list\n"
            "  credentials [USER] [--ttl SECONDS]\n"
            "  revoke USERNAME                revoke an ephemeral username (EXPIRY:NAME)\n"
            "  drain | reload\n"
            "  probe turn:HOST:PORT[?transport=udp|tcp] [turns:HOST:PORT] --user U --password P\n"
            "                                 check any TURN server (docs/PROBE.md; exit 0 no\n"
            "                                 FAIL, 1 a FAIL, 2 usage/unreachable)\n"
            "URL and token: flags, else UTURN_URL / UTURN_TOKEN, else ~/.config/uturnctl.conf.\n"
            "Exit: 0 ok, 1 API error, 2 usage, 3 cannot connect.\n");
}

__attribute__((format(printf, 1, 2), noreturn)) static void die_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "uturnctl: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    usage(stderr);
    exit(EXIT_USAGE);
}

/* ---- config file ---- */

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = 0;
    if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
        s[n - 1] = 0;
        s++;
    }
    return s;
}

static void read_config(void)
{
    char path[1024];
    const char *p = opt.config;
    if (!p) {
        const char *home = getenv("HOME");
        if (!home)
            return;
        snprintf(path, sizeof(path), "%s/.config/uturnctl.conf", home);
        p = path;
    }
    FILE *f = fopen(p, "r");
    if (!f) {
        if (opt.config) {
            fprintf(stderr, "uturnctl: cannot read %s: %s\n", p, strerror(errno));
            exit(EXIT_USAGE);
        }
        return;
    }
    char line[2048];
    int lineno = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        char *s = trim(line);
        if (!*s || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            fprintf(stderr, "uturnctl: %s:%d: expected 'key = value'\n", p, lineno);
            exit(EXIT_USAGE);
        }
        *eq = 0;
        char *k = trim(s), *v = trim(eq + 1);
        char **dst = strcmp(k, "url") == 0     ? &cfg_url
                     : strcmp(k, "token") == 0 ? &cfg_token
                     : strcmp(k, "realm") == 0 ? &cfg_realm
                                               : NULL;
        if (!dst) {
            fprintf(stderr, "uturnctl: %s:%d: unknown key '%s' (url, token, realm)\n", p, lineno,
                    k);
            exit(EXIT_USAGE);
        }
        free(*dst);
        *dst = strdup(v);
    }
    fclose(f);
}

/* ---- HTTP ---- */

typedef struct {
    char *buf;
    size_t len;
} body_t;

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    body_t *b = arg;
    size_t add = size * n;
    char *nb = realloc(b->buf, b->len + add + 1);
    if (!nb)
        return 0;
    memcpy(nb + b->len, p, add);
    b->buf = nb;
    b->len += add;
    b->buf[b->len] = 0;
    return add;
}

static CURL *curl;

/* Escape one path segment. */
static char *seg(const char *s)
{
    char *e = curl_easy_escape(curl, s, 0);
    if (!e) {
        fprintf(stderr, "uturnctl: out of memory\n");
        exit(EXIT_CONNECT);
    }
    return e;
}

/* Do a request; returns the HTTP status and the body in *out (parsed when JSON). Exits 3 when
 * uturnd cannot be reached. `raw` receives the body text when non-NULL. */
static long request(const char *method, const char *path, json_t *body, json_t **out, char **raw)
{
    char url[4096];
    body_t b = {NULL, 0};
    snprintf(url, sizeof(url), "%s%s", opt.url, path);
    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, opt.timeout);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, opt.timeout < 5 ? opt.timeout : 5L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    struct curl_slist *h = NULL;
    char auth[2048];
    if (opt.token) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", opt.token);
        h = curl_slist_append(h, auth);
    }
    char *text = NULL;
    if (body) {
        text = json_dumps(body, JSON_COMPACT);
        h = curl_slist_append(h, "Content-Type: application/json");
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, text ? text : "{}");
    }
    h = curl_slist_append(h, "Accept: application/json");
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
    CURLcode rc = curl_easy_perform(curl);
    curl_slist_free_all(h);
    free(text);
    if (rc != CURLE_OK) {
        fprintf(stderr, "uturnctl: cannot reach %s: %s\n", opt.url, curl_easy_strerror(rc));
        free(b.buf);
        exit(EXIT_CONNECT);
    }
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    *out = b.buf ? json_loadb(b.buf, b.len, 0, NULL) : NULL;
    if (raw)
        *raw = b.buf;
    else
        free(b.buf);
    return status;
}

/* Print the API's error and exit 1. */
__attribute__((noreturn)) static void api_error(long status, json_t *j)
{
    json_t *e = json_object_get(json_object_get(j, "error"), "code");
    json_t *m = json_object_get(json_object_get(j, "error"), "message");
    fprintf(stderr, "uturnctl: %ld %s: %s\n", status, e ? json_string_value(e) : "error",
            m ? json_string_value(m) : "(no message)");
    exit(EXIT_API);
}

static json_t *call(const char *method, const char *path, json_t *body, long *status_out)
{
    json_t *j = NULL;
    long st = request(method, path, body, &j, NULL);
    if (status_out)
        *status_out = st;
    if (st < 200 || st >= 300)
        api_error(st, j);
    if (!j) {
        fprintf(stderr, "uturnctl: %ld: the answer is not JSON\n", st);
        exit(EXIT_API);
    }
    return j;
}

static void print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (s)
        puts(s);
    free(s);
}

static const char *str(json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "-";
}

static long long num(json_t *o, const char *k) { return json_integer_value(json_object_get(o, k)); }

/* ---- commands ---- */

static const char *realm(void)
{
    static char buf[512];
    if (opt.realm)
        return opt.realm;
    /* Not given: the server's own realm. */
    json_t *s = call("GET", "/api/v1/stats", NULL, NULL);
    snprintf(buf, sizeof(buf), "%s", str(s, "realm"));
    json_decref(s);
    return buf;
}

static void add_query(char *q, size_t cap, const char *k, const char *v)
{
    if (!v)
        return;
    char *e = seg(v);
    size_t n = strlen(q);
    snprintf(q + n, cap - n, "%s%s=%s", n ? "&" : "?", k, e);
    curl_free(e);
}

/* The kernel fast path's figures (docs/KERNEL.md); "relayed" above is user space's share. */
static void kernel_lines(json_t *k)
{
    if (!json_is_true(json_object_get(k, "active"))) {
        printf("kernel path    off\n");
        return;
    }
    json_t *by = json_object_get(k, "bytes"), *pk = json_object_get(k, "packets");
    json_t *dr = json_object_get(k, "drops"), *rf = json_object_get(k, "refused");
    printf("kernel path    active: %lld allocations in slots, %lld map entries\n",
           num(k, "slots_in_use"), num(k, "entries"));
    printf("kernel bytes   %lld client->peer, %lld peer->client\n", num(by, "client_to_peer"),
           num(by, "peer_to_client"));
    printf("kernel pkts    %lld client->peer, %lld peer->client\n", num(pk, "client_to_peer"),
           num(pk, "peer_to_client"));
    printf("kernel drops   %lld max-bps, %lld redirect\n", num(dr, "bps"), num(dr, "redirect"));
    printf("kernel refused %lld no slot, %lld map full, %lld errors\n", num(rf, "no_slot"),
           num(rf, "map_full"), num(rf, "error"));
    json_t *xdp = json_object_get(k, "xdp");
    printf("kernel xdp     %lld relayed, %lld left to TC (checksum)\n", num(xdp, "relayed"),
           num(xdp, "passed_checksum"));
}

static int cmd_stats(void)
{
    json_t *j = call("GET", "/api/v1/stats", NULL, NULL);
    if (opt.json) {
        print_json(j);
    } else {
        json_t *al = json_object_get(j, "allocations"), *rl = json_object_get(j, "relay");
        json_t *bt = json_object_get(al, "by_transport");
        printf("version        %s\n", str(j, "version"));
        printf("uptime         %.0f s\n", json_number_value(json_object_get(j, "uptime_seconds")));
        printf("workers        %lld\n", num(j, "workers"));
        printf("draining       %s\n", json_is_true(json_object_get(j, "draining")) ? "yes" : "no");
        printf("allocations    %lld (udp %lld, tcp %lld, tls %lld, dtls %lld)\n",
               num(al, "current"), num(bt, "udp"), num(bt, "tcp"), num(bt, "tls"), num(bt, "dtls"));
        printf("created        %lld, expired %lld, deleted %lld\n", num(al, "created"),
               num(al, "expired"), num(al, "deleted"));
        json_t *by = json_object_get(rl, "bytes"), *pk = json_object_get(rl, "packets");
        printf("relayed bytes  %lld client->peer, %lld peer->client\n", num(by, "client_to_peer"),
               num(by, "peer_to_client"));
        printf("relayed pkts   %lld client->peer, %lld peer->client\n", num(pk, "client_to_peer"),
               num(pk, "peer_to_client"));
        json_t *ports = json_object_get(rl, "ports");
        printf("relay ports    %lld in use, %lld free\n", num(ports, "in_use"), num(ports, "free"));
        kernel_lines(json_object_get(j, "kernel"));
        json_t *rd = json_object_get(j, "redis");
        if (json_is_true(json_object_get(rd, "configured")))
            printf("redis          %lld of %lld workers connected\n", num(rd, "workers_up"),
                   num(j, "workers"));
    }
    json_decref(j);
    return 0;
}

/* One line per live node, then the totals; the first address of each client transport. */
static int cmd_cluster(void)
{
    json_t *j = call("GET", "/api/v1/cluster", NULL, NULL);
    if (opt.json) {
        print_json(j);
        json_decref(j);
        return 0;
    }
    json_t *nodes = json_object_get(j, "nodes"), *tot = json_object_get(j, "totals");
    printf("%-20s %11s %12s %6s %8s %7s  %s\n", "NODE", "ALLOCATIONS", "BPS", "CPU", "DRAINING",
           "AGE_MS", "ADDRESSES");
    for (size_t i = 0; i < json_array_size(nodes); i++) {
        json_t *n = json_array_get(nodes, i), *ad = json_object_get(n, "addresses");
        char addrs[256] = "";
        size_t used = 0;
        static const char *const tr[] = {"udp", "tcp", "tls", "dtls"};
        for (size_t t = 0; t < 4; t++) {
            const char *a = json_string_value(json_array_get(json_object_get(ad, tr[t]), 0));
            if (a && used < sizeof(addrs))
                used += (size_t)snprintf(addrs + used, sizeof(addrs) - used, "%s%s %s",
                                         used ? ", " : "", tr[t], a);
        }
        printf("%-20s %11lld %12lld %6.2f %8s %7lld  %s\n", str(n, "id"), num(n, "allocations"),
               num(n, "bps"), json_number_value(json_object_get(n, "cpu")),
               json_is_true(json_object_get(n, "draining")) ? "yes" : "no", num(n, "age_ms"),
               addrs);
    }
    printf("%lld node(s), %lld allocation(s), %lld bps%s\n", num(tot, "nodes"),
           num(tot, "allocations"), num(tot, "bps"),
           json_is_true(json_object_get(j, "fleet")) ? "" : " (not in a fleet: no redis-userdb)");
    json_decref(j);
    return 0;
}

static int cmd_kill_user(const char *user)
{
    char path[1024];
    char *e = seg(user);
    snprintf(path, sizeof(path), "/api/v1/allocations?user=%s", e);
    curl_free(e);
    json_t *j = call("DELETE", path, NULL, NULL);
    if (opt.json)
        print_json(j);
    else
        printf("%lld allocation(s) of '%s' terminated here%s\n", num(j, "terminated"), user,
               json_is_true(json_object_get(j, "fleet")) ? "; the other nodes follow" : "");
    json_decref(j);
    return 0;
}

static int cmd_simple(const char *method, const char *path)
{
    json_t *j = NULL;
    long st = request(method, path, NULL, &j, NULL);
    if (opt.json || st < 200 || st >= 300) {
        if (j && (opt.json || !json_object_get(j, "error")))
            print_json(j);
        if (st < 200 || st >= 300) {
            if (j && json_object_get(j, "error"))
                api_error(st, j);
            json_decref(j);
            return EXIT_API;
        }
    } else {
        json_t *reasons = json_object_get(j, "reasons");
        printf("%s\n", str(j, "status"));
        for (size_t i = 0; i < json_array_size(reasons); i++)
            printf("  %s\n", json_string_value(json_array_get(reasons, i)));
    }
    json_decref(j);
    return 0;
}

static int cmd_metrics(void)
{
    json_t *j = NULL;
    char *raw = NULL;
    long st = request("GET", "/metrics", NULL, &j, &raw);
    if (st != 200)
        api_error(st, j);
    fputs(raw ? raw : "", stdout);
    free(raw);
    json_decref(j);
    return 0;
}

static void print_alloc_row(json_t *a)
{
    json_t *rel = json_array_get(json_object_get(a, "relayed"), 0);
    printf("%-16s  %-4s  %-22s  %-22s  %-20s  %-20s  %lld/%lld\n", str(a, "id"),
           str(a, "transport"), str(a, "client"), rel ? str(rel, "announced") : "-",
           str(a, "username"), str(a, "expires"),
           num(json_object_get(a, "client_to_peer"), "bytes"),
           num(json_object_get(a, "peer_to_client"), "bytes"));
}

static int cmd_allocations(int argc, char **argv)
{
    char q[2048] = "", path[2200];
    for (int i = 0; i < argc; i++) {
        if (i + 1 < argc && strcmp(argv[i], "--user") == 0)
            add_query(q, sizeof(q), "user", argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--limit") == 0)
            add_query(q, sizeof(q), "limit", argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--cursor") == 0)
            add_query(q, sizeof(q), "cursor", argv[++i]);
        else
            die_usage("allocations: unexpected '%s'", argv[i]);
    }
    snprintf(path, sizeof(path), "/api/v1/allocations%s", q);
    json_t *j = call("GET", path, NULL, NULL);
    if (opt.json) {
        print_json(j);
    } else {
        json_t *list = json_object_get(j, "allocations");
        printf("%-16s  %-4s  %-22s  %-22s  %-20s  %-20s  %s\n", "ID", "TR", "CLIENT", "RELAYED",
               "USER", "EXPIRES", "BYTES C>P/P>C");
        for (size_t i = 0; i < json_array_size(list); i++)
            print_alloc_row(json_array_get(list, i));
        printf("%zu shown, %lld in all", json_array_size(list), num(j, "total"));
        if (json_is_string(json_object_get(j, "next_cursor")))
            printf(", more with --cursor %s", str(j, "next_cursor"));
        printf("\n");
    }
    json_decref(j);
    return 0;
}

static int cmd_one_alloc(const char *method, const char *id)
{
    char path[512];
    char *e = seg(id);
    snprintf(path, sizeof(path), "/api/v1/allocations/%s", e);
    curl_free(e);
    json_t *j = call(method, path, NULL, NULL);
    if (opt.json || strcmp(method, "GET") == 0)
        print_json(j);
    else
        printf("terminated %s\n", id);
    json_decref(j);
    return 0;
}

static const char *read_password(const char *pw)
{
    static char line[1100];
    if (strcmp(pw, "-") != 0)
        return pw;
    if (!fgets(line, sizeof(line), stdin))
        die_usage("user add: no password on stdin");
    line[strcspn(line, "\r\n")] = 0;
    return line;
}

static int cmd_user(int argc, char **argv)
{
    if (argc < 1)
        die_usage("user: add, del, show or list");
    char path[2048], q[512] = "";
    char *r = seg(realm());
    const char *sub = argv[0];
    int rc = 0;
    if (strcmp(sub, "list") == 0) {
        for (int i = 1; i < argc; i++) {
            if (i + 1 < argc && strcmp(argv[i], "--limit") == 0)
                add_query(q, sizeof(q), "limit", argv[++i]);
            else if (i + 1 < argc && strcmp(argv[i], "--cursor") == 0)
                add_query(q, sizeof(q), "cursor", argv[++i]);
            else
                die_usage("user list: unexpected '%s'", argv[i]);
        }
        snprintf(path, sizeof(path), "/api/v1/realms/%s/users%s", r, q);
        json_t *j = call("GET", path, NULL, NULL);
        if (opt.json) {
            print_json(j);
        } else {
            json_t *users = json_object_get(j, "users");
            for (size_t i = 0; i < json_array_size(users); i++)
                printf("%s\n", json_string_value(json_array_get(users, i)));
            if (json_is_string(json_object_get(j, "next_cursor")))
                fprintf(stderr, "(more with --cursor %s)\n", str(j, "next_cursor"));
        }
        json_decref(j);
        curl_free(r);
        return 0;
    }
    if (argc < 2)
        die_usage("user %s: USER missing", sub);
    char *u = seg(argv[1]);
    snprintf(path, sizeof(path), "/api/v1/realms/%s/users/%s", r, u);
    curl_free(u);
    curl_free(r);
    json_t *j;
    if (strcmp(sub, "add") == 0) {
        const char *pw = NULL;
        for (int i = 2; i < argc; i++) {
            if (i + 1 < argc && strcmp(argv[i], "--password") == 0)
                pw = argv[++i];
            else
                die_usage("user add: unexpected '%s'", argv[i]);
        }
        if (!pw)
            die_usage("user add: --password PW is required ('-' reads it from stdin)");
        json_t *body = json_pack("{s:s}", "password", read_password(pw));
        long st;
        j = call("PUT", path, body, &st);
        json_decref(body);
        if (!opt.json)
            printf("%s %s\n", st == 201 ? "added" : "updated", argv[1]);
    } else if (strcmp(sub, "del") == 0) {
        j = call("DELETE", path, NULL, NULL);
        if (!opt.json)
            printf("deleted %s (%lld allocations terminated)\n", argv[1],
                   num(j, "allocations_terminated"));
    } else if (strcmp(sub, "show") == 0) {
        j = call("GET", path, NULL, NULL);
        if (!opt.json)
            printf("%s: md5 key %s, sha256 key %s%s\n", argv[1],
                   json_is_true(json_object_get(j, "md5_key")) ? "yes" : "no",
                   json_is_true(json_object_get(j, "sha256_key")) ? "yes" : "no",
                   json_is_true(json_object_get(j, "revoked")) ? ", revoked" : "");
    } else {
        die_usage("user: unknown subcommand '%s'", sub);
    }
    if (opt.json)
        print_json(j);
    json_decref(j);
    return rc;
}

static int cmd_secret(int argc, char **argv)
{
    if (argc < 1)
        die_usage("secret: add, del or list");
    char path[2048];
    char *r = seg(realm());
    snprintf(path, sizeof(path), "/api/v1/realms/%s/secrets", r);
    curl_free(r);
    json_t *j;
    if (strcmp(argv[0], "list") == 0) {
        j = call("GET", path, NULL, NULL);
        if (!opt.json) {
            json_t *l = json_object_get(j, "secrets");
            printf("%-8s  %-7s  %s\n", "ID", "SOURCE", "FINGERPRINT");
            for (size_t i = 0; i < json_array_size(l); i++) {
                json_t *s = json_array_get(l, i);
                printf("%-8s  %-7s  %s\n", str(s, "id"), str(s, "source"), str(s, "fingerprint"));
            }
        }
    } else if (strcmp(argv[0], "add") == 0) {
        json_t *body = argc > 1 ? json_pack("{s:s}", "secret", argv[1]) : json_object();
        j = call("POST", path, body, NULL);
        json_decref(body);
        if (!opt.json) {
            printf("secret %s %s\n", str(j, "id"),
                   json_is_true(json_object_get(j, "created")) ? "added" : "already there");
            if (json_object_get(j, "secret"))
                printf("generated secret (shown once): %s\n", str(j, "secret"));
        }
    } else if (strcmp(argv[0], "del") == 0) {
        if (argc < 2)
            die_usage("secret del: ID missing");
        char *e = seg(argv[1]);
        size_t n = strlen(path);
        snprintf(path + n, sizeof(path) - n, "/%s", e);
        curl_free(e);
        j = call("DELETE", path, NULL, NULL);
        if (!opt.json)
            printf("deleted secret %s\n", argv[1]);
    } else {
        die_usage("secret: unknown subcommand '%s'", argv[0]);
    }
    if (opt.json)
        print_json(j);
    json_decref(j);
    return 0;
}

static int cmd_credentials(int argc, char **argv)
{
    const char *user = NULL;
    long long ttl = -1;
    for (int i = 0; i < argc; i++) {
        if (i + 1 < argc && strcmp(argv[i], "--ttl") == 0) {
            char *end;
            ttl = strtoll(argv[++i], &end, 10);
            if (*end || ttl <= 0)
                die_usage("credentials: --ttl takes seconds");
        } else if (!user && argv[i][0] != '-') {
            user = argv[i];
        } else {
            die_usage("credentials: unexpected '%s'", argv[i]);
        }
    }
    json_t *body = json_object();
    if (user)
        json_object_set_new(body, "username", json_string(user));
    if (ttl > 0)
        json_object_set_new(body, "ttl", json_integer(ttl));
    json_t *j = call("POST", "/api/v1/credentials", body, NULL);
    json_decref(body);
    if (opt.json) {
        print_json(j);
    } else {
        printf("username  %s\npassword  %s\nttl       %lld\nexpires   %s\n", str(j, "username"),
               str(j, "password"), num(j, "ttl"), str(j, "expires"));
        json_t *u = json_object_get(j, "uris");
        for (size_t i = 0; i < json_array_size(u); i++)
            printf("uri       %s\n", json_string_value(json_array_get(u, i)));
    }
    json_decref(j);
    return 0;
}

static int cmd_revoke(const char *user)
{
    char path[2048];
    char *e = seg(user);
    snprintf(path, sizeof(path), "/api/v1/credentials/%s", e);
    curl_free(e);
    json_t *j = call("DELETE", path, NULL, NULL);
    if (opt.json)
        print_json(j);
    else
        printf("revoked %s until %s (%lld allocations terminated)\n", user, str(j, "revoked_until"),
               num(j, "allocations_terminated"));
    json_decref(j);
    return 0;
}

static int cmd_action(const char *what)
{
    char path[64];
    snprintf(path, sizeof(path), "/api/v1/%s", what);
    json_t *j = call("POST", path, NULL, NULL);
    if (opt.json) {
        print_json(j);
    } else if (strcmp(what, "drain") == 0) {
        printf("draining (%lld allocations left)\n", num(j, "allocations"));
    } else {
        json_t *c = json_object_get(j, "changes");
        if (json_array_size(c) == 0)
            printf("reloaded: nothing changed\n");
        for (size_t i = 0; i < json_array_size(c); i++)
            printf("%s\n", json_string_value(json_array_get(c, i)));
    }
    json_decref(j);
    return 0;
}

static int dispatch(int argc, char **argv)
{
    const char *c = argv[0];
    if (strcmp(c, "probe") == 0) /* talks to a TURN server, not to the admin API */
        return probe_main(argc - 1, argv + 1, opt.json);
    if (strcmp(c, "stats") == 0 && argc == 1)
        return cmd_stats();
    if (strcmp(c, "cluster") == 0 && argc == 1)
        return cmd_cluster();
    if (strcmp(c, "health") == 0 && argc == 1)
        return cmd_simple("GET", "/healthz");
    if (strcmp(c, "ready") == 0 && argc == 1)
        return cmd_simple("GET", "/readyz");
    if (strcmp(c, "metrics") == 0 && argc == 1)
        return cmd_metrics();
    if (strcmp(c, "allocations") == 0)
        return cmd_allocations(argc - 1, argv + 1);
    if (strcmp(c, "allocation") == 0 && argc == 2)
        return cmd_one_alloc("GET", argv[1]);
    if (strcmp(c, "kill") == 0 && argc == 3 && strcmp(argv[1], "--user") == 0)
        return cmd_kill_user(argv[2]);
    if (strcmp(c, "kill") == 0 && argc == 2)
        return cmd_one_alloc("DELETE", argv[1]);
    if (strcmp(c, "user") == 0)
        return cmd_user(argc - 1, argv + 1);
    if (strcmp(c, "secret") == 0)
        return cmd_secret(argc - 1, argv + 1);
    if (strcmp(c, "credentials") == 0)
        return cmd_credentials(argc - 1, argv + 1);
    if (strcmp(c, "revoke") == 0 && argc == 2)
        return cmd_revoke(argv[1]);
    if ((strcmp(c, "drain") == 0 || strcmp(c, "reload") == 0) && argc == 1)
        return cmd_action(c);
    die_usage("unknown command or wrong arguments: '%s'", c);
}

int main(int argc, char **argv)
{
    int i = 1;
    opt.timeout = 10;
    for (; i < argc && argv[i][0] == '-' && argv[i][1] == '-'; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--json") == 0) {
            opt.json = true;
            continue;
        }
        if (strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (!v)
            die_usage("%s needs a value", a);
        if (strcmp(a, "--url") == 0)
            opt.url = v;
        else if (strcmp(a, "--token") == 0)
            opt.token = v;
        else if (strcmp(a, "--config") == 0)
            opt.config = v;
        else if (strcmp(a, "--realm") == 0)
            opt.realm = v;
        else if (strcmp(a, "--timeout") == 0)
            opt.timeout = strtol(v, NULL, 10);
        else
            die_usage("unknown option '%s'", a);
        i++;
    }
    if (i >= argc)
        die_usage("no command");
    if (opt.timeout <= 0)
        die_usage("--timeout takes a positive number of seconds");
    read_config();
    if (!opt.url)
        opt.url = getenv("UTURN_URL") ? getenv("UTURN_URL") : cfg_url ? cfg_url : DEFAULT_URL;
    if (!opt.token)
        opt.token = getenv("UTURN_TOKEN") ? getenv("UTURN_TOKEN") : cfg_token;
    if (!opt.realm)
        opt.realm = cfg_realm;
    size_t ul = strlen(opt.url);
    while (ul > 0 && opt.url[ul - 1] == '/') /* "http://host:8089/" works as well */
        ul--;
    char *url = strndup(opt.url, ul);
    opt.url = url;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0 || !(curl = curl_easy_init())) {
        fprintf(stderr, "uturnctl: cannot initialise libcurl\n");
        return EXIT_CONNECT;
    }
    int rc = dispatch(argc - i, argv + i);
    curl_easy_cleanup(curl);
    curl_global_cleanup();
    free(url);
    free(cfg_url);
    free(cfg_token);
    free(cfg_realm);
    return rc;
}
