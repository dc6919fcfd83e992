/* probe.c - `uturnctl probe`: command line, the order of the checks, and the report.
 *
 * Usage and the meaning of every row: docs/PROBE.md. The report is a table (check, RFC clause,
 * PASS/FAIL/WARN/SKIP, detail) or JSON with --json; the exit code is PROBE_EXIT_* (0 no FAIL, 1 a
 * FAIL, 2 usage or the first target unreachable).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "probe.h"

/* Bounded copy that always terminates (longer input is cut). */
static void copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = 0;
}

static const char *result_name(probe_result_t r)
{
    return r == PROBE_PASS ? "PASS" : r == PROBE_FAIL ? "FAIL" : r == PROBE_WARN ? "WARN" : "SKIP";
}

void probe_add(probe_t *p, const probe_target_t *t, const char *check, const char *rfc,
               probe_result_t r, const char *fmt, ...)
{
    if (p->nrows >= PROBE_MAX_ROWS)
        return;
    probe_row_t *row = &p->rows[p->nrows++];
    copy_str(row->target, sizeof(row->target), t ? t->uri : "-");
    snprintf(row->check, sizeof(row->check), "%s", check);
    snprintf(row->rfc, sizeof(row->rfc), "%s", rfc);
    row->result = r;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(row->detail, sizeof(row->detail), fmt, ap);
    va_end(ap);
}

static void probe_usage(FILE *f)
{
    fprintf(f,
            "usage: uturnctl probe turn:HOST:PORT[?transport=udp|tcp] [turns:HOST:PORT] ...\n"
            "                --user U --password P [--json] [--user2 U2 --password2 P2]\n"
            "                [--ca FILE] [--peer-ip IP] [--max-allocations N] [--timeout MS]\n"
            "Black-box checks against any TURN server (docs/PROBE.md).\n"
            "Exit: 0 no FAIL, 1 at least one FAIL, 2 usage error or first target unreachable.\n");
}

/* turn:HOST:PORT[?transport=udp|tcp], turns:HOST:PORT[?transport=tcp]; HOST may be [v6]. */
static int parse_uri(const char *uri, probe_target_t *t)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->uri, sizeof(t->uri), "%s", uri);
    const char *rest;
    if (strncmp(uri, "turns:", 6) == 0) {
        t->tls = t->stream = true;
        rest = uri + 6;
    } else if (strncmp(uri, "turn:", 5) == 0) {
        rest = uri + 5;
    } else {
        return -1;
    }
    char hp[300];
    snprintf(hp, sizeof(hp), "%s", rest);
    char *q = strchr(hp, '?');
    if (q) {
        *q++ = 0;
        if (strcmp(q, "transport=tcp") == 0)
            t->stream = true;
        else if (strcmp(q, "transport=udp") != 0 || t->tls)
            return -1;
    }
    char *port = NULL;
    if (hp[0] == '[') {
        char *e = strchr(hp, ']');
        if (!e)
            return -1;
        *e = 0;
        copy_str(t->host, sizeof(t->host), hp + 1);
        port = e[1] == ':' ? e + 2 : NULL;
    } else {
        port = strrchr(hp, ':');
        if (port)
            *port++ = 0;
        copy_str(t->host, sizeof(t->host), hp);
    }
    long pn = port ? strtol(port, NULL, 10) : (t->tls ? 5349 : 3478);
    if (!t->host[0] || pn <= 0 || pn > 65535)
        return -1;
    t->port = (uint16_t)pn;
    return 0;
}

/* Display width of UTF-8 text (the RFC column has "§"). */
static int width(const char *s)
{
    int w = 0;
    for (; *s; s++)
        w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

static void pad(const char *s, int w) { printf("%s%*s ", s, w - width(s), ""); }

static void print_table(const probe_t *p)
{
    int wt = 6, wc = 5, wr = 3;
    for (int i = 0; i < p->nrows; i++) {
        const probe_row_t *r = &p->rows[i];
        wt = width(r->target) > wt ? width(r->target) : wt;
        wc = width(r->check) > wc ? width(r->check) : wc;
        wr = width(r->rfc) > wr ? width(r->rfc) : wr;
    }
    pad("TARGET", wt);
    pad("CHECK", wc);
    pad("RFC", wr);
    printf("%-6s %s\n", "RESULT", "DETAIL");
    for (int i = 0; i < p->nrows; i++) {
        const probe_row_t *r = &p->rows[i];
        pad(r->target, wt);
        pad(r->check, wc);
        pad(r->rfc, wr);
        printf("%-6s %s\n", result_name(r->result), r->detail);
    }
}

static void print_json(const probe_t *p, const int counts[4], int rc)
{
    json_t *rows = json_array();
    for (int i = 0; i < p->nrows; i++) {
        const probe_row_t *r = &p->rows[i];
        json_array_append_new(rows, json_pack("{s:s, s:s, s:s, s:s, s:s}", "target", r->target,
                                              "check", r->check, "rfc", r->rfc, "result",
                                              result_name(r->result), "detail", r->detail));
    }
    json_t *targets = json_array();
    for (int i = 0; i < p->ntargets; i++)
        json_array_append_new(targets, json_string(p->targets[i].uri));
    json_t *root =
        json_pack("{s:o, s:o, s:{s:i, s:i, s:i, s:i}, s:i}", "targets", targets, "checks", rows,
                  "summary", "pass", counts[PROBE_PASS], "fail", counts[PROBE_FAIL], "warn",
                  counts[PROBE_WARN], "skip", counts[PROBE_SKIP], "exit", rc);
    char *s = json_dumps(root, JSON_INDENT(2));
    printf("%s\n", s);
    free(s);
    json_decref(root);
}

static int finish(probe_t *p, int rc)
{
    int counts[4] = {0};
    for (int i = 0; i < p->nrows; i++)
        counts[p->rows[i].result]++;
    if (rc == PROBE_EXIT_PASS && counts[PROBE_FAIL])
        rc = PROBE_EXIT_FAIL;
    if (p->json) {
        print_json(p, counts, rc);
    } else {
        print_table(p);
        printf("\n%d PASS, %d FAIL, %d WARN, %d SKIP\n", counts[PROBE_PASS], counts[PROBE_FAIL],
               counts[PROBE_WARN], counts[PROBE_SKIP]);
    }
    return rc;
}

int probe_main(int argc, char **argv, bool json)
{
    static probe_t p; /* large: rows */
    memset(&p, 0, sizeof(p));
    p.json = json;
    p.max_allocations = 8;
    p.timeout_ms = 3000;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--json") == 0) {
            p.json = true;
            continue;
        }
        if (strcmp(a, "--help") == 0) {
            probe_usage(stdout);
            return PROBE_EXIT_PASS;
        }
        if (strncmp(a, "--", 2) == 0) {
            if (!v)
                goto usage;
            i++;
            if (strcmp(a, "--user") == 0)
                p.user = v;
            else if (strcmp(a, "--password") == 0)
                p.password = v;
            else if (strcmp(a, "--user2") == 0)
                p.user2 = v;
            else if (strcmp(a, "--password2") == 0)
                p.password2 = v;
            else if (strcmp(a, "--ca") == 0)
                p.ca_file = v;
            else if (strcmp(a, "--peer-ip") == 0)
                p.peer_ip = v;
            else if (strcmp(a, "--max-allocations") == 0)
                p.max_allocations = atoi(v);
            else if (strcmp(a, "--timeout") == 0)
                p.timeout_ms = atoi(v);
            else
                goto usage;
            continue;
        }
        if (p.ntargets == PROBE_MAX_TARGETS || parse_uri(a, &p.targets[p.ntargets]) < 0) {
            fprintf(stderr, "uturnctl probe: bad or too many targets: '%s'\n", a);
            goto usage;
        }
        p.ntargets++;
    }
    if (!p.ntargets || !p.user || !p.password || (p.user2 && !p.password2) ||
        p.max_allocations < 1 || p.max_allocations > 64 || p.timeout_ms < 100 ||
        p.timeout_ms > 30000)
        goto usage;
    for (int i = 0; i < p.ntargets; i++)
        if (probe_resolve(&p.targets[i]) < 0) {
            fprintf(stderr, "uturnctl probe: cannot resolve %s\n", p.targets[i].host);
            return PROBE_EXIT_USAGE;
        }

    probe_selftest(&p);
    int reachable = 0;
    for (int i = 0; i < p.ntargets; i++)
        if (probe_binding(&p, &p.targets[i]) == 0)
            reachable |= 1 << i;
    if (!(reachable & 1))
        return finish(&p, PROBE_EXIT_USAGE);
    /* The credential, relay and peer checks run on the first target (one allocation set is
     * enough); amplification on every UDP target, TLS on every turns: target. */
    probe_turn_checks(&p, &p.targets[0]);
    for (int i = 0; i < p.ntargets; i++) {
        if (!p.targets[i].stream && (reachable & (1 << i)))
            probe_amplification(&p, &p.targets[i]);
        if (p.targets[i].tls) /* also when TURN did not answer: a TLS listener is still there */
            probe_tls_checks(&p, &p.targets[i]);
    }
    return finish(&p, PROBE_EXIT_PASS);

usage:
    probe_usage(stderr);
    return PROBE_EXIT_USAGE;
}
