/* admin.c - the admin HTTP API's daemon: libmicrohttpd on a pool of its own threads, the route
 * table, bearer-token authentication and the request body rules.
 *
 * RFC 6750 §2.1 (Authorization: Bearer) and §3 (WWW-Authenticate on 401), RFC 9110 §15 (401, 403,
 * 404, 405 with Allow, 413, 415). Every route but /healthz needs a token from `admin-token`; a
 * token written "ro:TOKEN" is read-only (403 on anything that changes state or mints
 * credentials). Tokens are compared as SHA-256 digests in constant time, so neither their bytes
 * nor their length leak through timing, and they are read from the live config snapshot so a
 * reload rotates them. Routing and authentication happen when the headers are in, before any
 * body byte is read: an unauthenticated or oversized upload is refused without being buffered.
 * Bodies are capped at ADMIN_MAX_BODY, and libmicrohttpd bounds the rest: header memory per
 * connection, connections in all and per IP (admin-connections-max, admin-connections-per-ip; the
 * per-IP bound below the total so one source cannot take every slot) and an idle timeout. The
 * idle timeout restarts on every byte, so a slowloris client sending a byte every few seconds
 * would hold its slot for ever: each connection also has a deadline (admin-request-timeout) from
 * accept, or from its last answer on a kept-alive connection, to a whole request. A thread of our
 * own shuts down connections past it (libmicrohttpd has no call to close one from outside); the
 * answer itself is not under the deadline, so a long listing read by a slow client is not cut.
 */
#include "admin_int.h"

#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>
#include <openssl/sha.h>

#include "log.h"
#include "sockaddr_util.h"
#include "stun_auth.h"

#define POOL_THREADS 4
#define REAPER_TICK_MS 200      /* how late past its deadline a connection may be shut down */
#define CONN_MEMORY (32 * 1024) /* request line + headers per connection */
#define TOKEN_MIN 16
#define DISCARD_MAX (4 * 1024 * 1024) /* of an oversized chunked body, before closing */

#if MHD_VERSION < 0x00097002
typedef int mhd_result_t;
#else
typedef enum MHD_Result mhd_result_t;
#endif

static const admin_route_t routes[] = {
    {ADMIN_GET, "/healthz", ADMIN_R_PUBLIC, admin_h_healthz},
    {ADMIN_GET, "/readyz", ADMIN_R_RO, admin_h_readyz},
    {ADMIN_GET, "/metrics", ADMIN_R_RO, admin_h_metrics},
    {ADMIN_GET, "/ui", ADMIN_R_PUBLIC, admin_h_ui},
    {ADMIN_GET, "/ui/*", ADMIN_R_PUBLIC, admin_h_ui},
    {ADMIN_GET, "/api/v1/whoami", ADMIN_R_RO, admin_h_whoami},
    {ADMIN_GET, "/api/v1/stats", ADMIN_R_RO, admin_h_stats},
    {ADMIN_GET, "/api/v1/cluster", ADMIN_R_RO, admin_h_cluster},
    {ADMIN_GET, "/api/v1/history", ADMIN_R_RO, admin_h_history},
    {ADMIN_GET, "/api/v1/allocations", ADMIN_R_RO, admin_h_allocs_list},
    {ADMIN_DELETE, "/api/v1/allocations", 0, admin_h_allocs_kill_user},
    {ADMIN_GET, "/api/v1/allocations/*", ADMIN_R_RO, admin_h_alloc_get},
    {ADMIN_DELETE, "/api/v1/allocations/*", 0, admin_h_alloc_delete},
    {ADMIN_GET, "/api/v1/usage", ADMIN_R_RO, admin_h_usage},
    {ADMIN_GET, "/api/v1/realms/*/users", ADMIN_R_RO, admin_h_users_list},
    {ADMIN_GET, "/api/v1/realms/*/users/*", ADMIN_R_RO, admin_h_user_get},
    {ADMIN_PUT, "/api/v1/realms/*/users/*", ADMIN_R_BODY, admin_h_user_put},
    {ADMIN_DELETE, "/api/v1/realms/*/users/*", 0, admin_h_user_delete},
    {ADMIN_GET, "/api/v1/realms/*/secrets", ADMIN_R_RO, admin_h_secrets_list},
    {ADMIN_POST, "/api/v1/realms/*/secrets", ADMIN_R_OPTBODY, admin_h_secret_add},
    {ADMIN_DELETE, "/api/v1/realms/*/secrets/*", 0, admin_h_secret_delete},
    {ADMIN_POST, "/api/v1/credentials", ADMIN_R_BODY, admin_h_credentials},
    {ADMIN_DELETE, "/api/v1/credentials/*", 0, admin_h_credential_revoke},
    {ADMIN_GET | ADMIN_POST, "/api/v1/turn-credentials", ADMIN_R_KEYARG | ADMIN_R_OPTBODY,
     admin_h_turn_credentials},
    {ADMIN_POST, "/api/v1/drain", ADMIN_R_OPTBODY, admin_h_drain},
    {ADMIN_POST, "/api/v1/reload", ADMIN_R_OPTBODY, admin_h_reload},
};
#define NROUTES (sizeof(routes) / sizeof(routes[0]))

/* ---- paths and routes ---- */

static int method_bit(const char *m)
{
    if (strcmp(m, "GET") == 0)
        return ADMIN_GET;
    if (strcmp(m, "HEAD") == 0)
        return ADMIN_GET; /* libmicrohttpd sends the headers only */
    if (strcmp(m, "PUT") == 0)
        return ADMIN_PUT;
    if (strcmp(m, "POST") == 0)
        return ADMIN_POST;
    if (strcmp(m, "DELETE") == 0)
        return ADMIN_DELETE;
    return 0;
}

/* Split the raw path (libmicrohttpd leaves it escaped: see no_unescape) into decoded segments, so
 * that "%2F" inside a user name stays inside its segment. 0, -1 (bad escape: 400), -2 (too many
 * segments: 404), -3 (out of memory), -4 (not a path, e.g. "*": 400). */
static int split_path(admin_req_t *r, const char *url)
{
    const char *p = url;
    /* RFC 9112 §3.2.2: a server MUST accept the absolute-form ("http://host/path") as well. */
    if (strncasecmp(p, "http://", 7) == 0 || strncasecmp(p, "https://", 8) == 0) {
        p = strchr(strstr(p, "://") + 3, '/');
        if (!p)
            p = "/";
    }
    if (*p != '/')
        return -4;
    while (*p) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (r->nseg == ADMIN_MAX_SEGS)
            return -2;
        size_t len;
        char *s = admin_pct_decode(p, n, false, &len);
        if (!s)
            return -1;
        r->seg[r->nseg] = s;
        r->seglen[r->nseg++] = len;
        p += n;
    }
    return 0;
}

static bool route_matches(const admin_route_t *rt, const admin_req_t *r)
{
    const char *p = rt->pattern;
    int i = 0;
    while (*p) {
        p++; /* '/' */
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (i >= r->nseg)
            return false;
        if (!(n == 1 && *p == '*') && (n != r->seglen[i] || memcmp(p, r->seg[i], n) != 0))
            return false;
        i++;
        p += n;
    }
    return i == r->nseg;
}

/* The route for the request, or NULL with *allow set to the methods the path has (0: none). */
static const admin_route_t *find_route(const admin_req_t *r, int *allow)
{
    *allow = 0;
    for (size_t i = 0; i < NROUTES; i++) {
        if (!route_matches(&routes[i], r))
            continue;
        *allow |= routes[i].methods;
        if (routes[i].methods & r->method)
            return &routes[i];
    }
    return NULL;
}

static const char *allow_header(int m)
{
    static const char *const names[] = {"GET, HEAD", "PUT", "POST", "DELETE"};
    static __thread char buf[64];
    buf[0] = 0;
    for (int i = 0; i < 4; i++)
        if (m & (1 << i)) {
            if (buf[0])
                strcat(buf, ", ");
            strcat(buf, names[i]);
        }
    return buf;
}

/* ---- authentication ---- */

enum auth_result { AUTH_NONE = 0, AUTH_RO = 1, AUTH_FULL = 2 };

/* Compare `got` with every configured token, always all of them, on digests. */
static enum auth_result check_token(const admin_t *a, const char *got, size_t glen)
{
    const cfg_t *cfg = atomic_load(&a->s->shared.turn.live);
    uint8_t hg[SHA256_DIGEST_LENGTH], ht[SHA256_DIGEST_LENGTH];
    enum auth_result res = AUTH_NONE;
    SHA256((const unsigned char *)got, glen, hg);
    for (size_t i = 0; i < cfg->admin_token.n; i++) {
        const char *t = cfg->admin_token.v[i];
        bool ro = strncmp(t, "ro:", 3) == 0;
        if (ro)
            t += 3;
        size_t tlen = strlen(t);
        if (tlen < TOKEN_MIN)
            continue; /* refused at start; a reload may bring one in: never accept it */
        SHA256((const unsigned char *)t, tlen, ht);
        if (stun_auth_ct_equal(hg, ht, sizeof(hg)) == 0) {
            enum auth_result m = ro ? AUTH_RO : AUTH_FULL;
            if (m > res)
                res = m;
        }
    }
    return res;
}

static enum auth_result authenticate(admin_req_t *r)
{
    const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization");
    if (h) {
        while (*h == ' ')
            h++;
        if (strncasecmp(h, "Bearer ", 7) != 0)
            return AUTH_NONE;
        h += 7;
        while (*h == ' ')
            h++;
        size_t n = strlen(h);
        while (n && (h[n - 1] == ' ' || h[n - 1] == '\t'))
            n--;
        return n ? check_token(r->a, h, n) : AUTH_NONE;
    }
    if (r->route && (r->route->flags & ADMIN_R_KEYARG)) {
        char key[512];
        bool bad = false;
        const char *k = admin_query(r, "key", key, sizeof(key), &bad);
        if (k && !bad && *k)
            return check_token(r->a, k, strlen(k));
    }
    return AUTH_NONE;
}

/* ---- libmicrohttpd glue ---- */

static size_t no_unescape(void *cls, struct MHD_Connection *c, char *s)
{
    /* Keep the path escaped: split_path decodes segment by segment. Query values are decoded by
     * admin_query. */
    return strlen(s);
}

static uv_mutex_t log_lock;
static log_limit_t log_lim;

static void init_log_lock(void) { uv_mutex_init(&log_lock); }

__attribute__((format(printf, 2, 0))) static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char buf[512];
    vsnprintf(buf, sizeof(buf), fmt, ap);
    size_t n = strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = 0;
    uv_mutex_lock(&log_lock);
    int ok = log_limit_take(&log_lim, uv_hrtime() / 1000000, 1.0, 10.0);
    uv_mutex_unlock(&log_lock);
    if (ok)
        LOGW("admin", "http: %s", buf);
}

static void req_free(admin_req_t *r)
{
    for (int i = 0; i < r->nseg; i++)
        free(r->seg[i]);
    free(r->body);
    if (r->json)
        json_decref(r->json);
    free(r->resp);
    free(r);
}

/* ---- the request deadline ---- */

/* One open connection. Listed from libmicrohttpd's STARTED notification to its CLOSED one, both
 * under conns_lock, so the reaper never shuts down an fd that was closed and reused. */
struct admin_conn {
    admin_conn_t *prev, *next;
    int fd;
    uint64_t since_ms; /* accepted, or its last answer was sent */
    bool complete;     /* the request is in: the answer is not under the deadline */
    bool cut;          /* shut down already */
};

static uint64_t mono_ms(void) { return uv_hrtime() / 1000000u; }

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    admin_t *a = cls;
    admin_conn_t *ac = *socket_context;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        /* Out of memory: the connection is served, bounded by the idle timeout only. */
        if (!ci || !(ac = calloc(1, sizeof(*ac))))
            return;
        ac->fd = ci->connect_fd;
        ac->since_ms = mono_ms();
        uv_mutex_lock(&a->conns_lock);
        ac->next = a->conns;
        if (a->conns)
            a->conns->prev = ac;
        a->conns = ac;
        uv_mutex_unlock(&a->conns_lock);
        *socket_context = ac;
    } else if (ac) {
        uv_mutex_lock(&a->conns_lock);
        *(ac->prev ? &ac->prev->next : &a->conns) = ac->next;
        if (ac->next)
            ac->next->prev = ac->prev;
        uv_mutex_unlock(&a->conns_lock);
        free(ac);
        *socket_context = NULL;
    }
}

static admin_conn_t *conn_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* The whole request is in (complete) or its answer has been sent (the next one's clock starts). */
static void conn_mark(admin_t *a, struct MHD_Connection *conn, bool complete)
{
    admin_conn_t *ac = conn_of(conn);
    if (!ac)
        return;
    uv_mutex_lock(&a->conns_lock);
    ac->complete = complete;
    if (!complete)
        ac->since_ms = mono_ms();
    uv_mutex_unlock(&a->conns_lock);
}

static void reaper(void *arg)
{
    admin_t *a = arg;
    uv_mutex_lock(&a->conns_lock);
    while (!a->reaper_stop) {
        uint64_t now = mono_ms();
        for (admin_conn_t *ac = a->conns; ac; ac = ac->next) {
            if (ac->complete || ac->cut || now < ac->since_ms + a->deadline_ms)
                continue;
            /* libmicrohttpd sees end of file on its next poll and closes the connection (its
             * CLOSED notification then unlists it, under this lock). */
            shutdown(ac->fd, SHUT_RDWR);
            ac->cut = true;
            a->cut++;
            LOGD("admin", "closed an admin connection with no whole request after %llu ms",
                 (unsigned long long)(now - ac->since_ms));
        }
        (void)uv_cond_timedwait(&a->reaper_wake, &a->conns_lock,
                                (uint64_t)REAPER_TICK_MS * 1000000u);
    }
    uv_mutex_unlock(&a->conns_lock);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)toe;
    conn_mark(cls, c, false); /* a kept-alive connection's next request has its own deadline */
    if (*con_cls)
        req_free(*con_cls);
    *con_cls = NULL;
}

static mhd_result_t send_reply(admin_req_t *r)
{
    if (!r->answered)
        admin_reply_error(r, 500, "internal", "the handler gave no answer");
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(r->resp_len, r->resp, MHD_RESPMEM_MUST_FREE);
    if (!resp)
        return MHD_NO;
    r->resp = NULL; /* libmicrohttpd frees it with the response */
    MHD_add_response_header(resp, "Content-Type", r->ctype);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    if (r->allow)
        MHD_add_response_header(resp, "Allow", r->allow);
    if (r->www_authenticate)
        MHD_add_response_header(resp, "WWW-Authenticate", "Bearer realm=\"uturn\"");
    if (r->ui) {
        MHD_add_response_header(resp, "Content-Security-Policy", admin_ui_csp);
        MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
        MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    }
    mhd_result_t rc = MHD_queue_response(r->conn, r->status, resp);
    MHD_destroy_response(resp);
    return rc;
}

static bool is_json_ctype(const char *ct)
{
    if (!ct)
        return false;
    while (*ct == ' ')
        ct++;
    size_t n = strlen("application/json");
    return strncasecmp(ct, "application/json", n) == 0 &&
           (ct[n] == 0 || ct[n] == ';' || ct[n] == ' ');
}

/* Everything decided from the request line and headers. Returns 1 to go on (read the body), 0
 * when r now holds the answer. */
static int on_headers(admin_req_t *r, const char *url, const char *method)
{
    r->method = method_bit(method);
    int rc = split_path(r, url);
    if (rc == -3) {
        admin_reply_error(r, 500, "internal", "out of memory");
        return 0;
    }
    int allow = 0;
    if (rc == 0)
        r->route = find_route(r, &allow); /* an unknown method still learns the Allow list */
    bool public = r->route && (r->route->flags & ADMIN_R_PUBLIC);
    if (!public) {
        /* Authenticate first: nobody learns which paths exist without a token. */
        enum auth_result ar = authenticate(r);
        if (ar == AUTH_NONE) {
            r->www_authenticate = true;
            admin_reply_error(r, 401, "unauthorized",
                              "a valid 'Authorization: Bearer <admin-token>' header is required");
            return 0;
        }
        r->readonly = ar == AUTH_RO;
    }
    if (rc == -1 || rc == -4) {
        admin_reply_error(r, 400, "bad_path", "%s",
                          rc == -1 ? "the path has a bad percent-escape"
                                   : "the request target is not a path ('/...')");
        return 0;
    }
    if (!r->route) {
        if (allow && rc == 0) {
            r->allow = allow_header(allow);
            admin_reply_error(r, 405, "method_not_allowed", "%s is not allowed here (allowed: %s)",
                              method, r->allow);
        } else {
            admin_reply_error(r, 404, "not_found", "no such resource");
        }
        return 0;
    }
    if (r->readonly && !(r->route->flags & ADMIN_R_RO)) {
        admin_reply_error(r, 403, "read_only_token",
                          "this token is read-only; %s %s needs a full admin-token", method, url);
        return 0;
    }
    const char *cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Length");
    const char *te = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Transfer-Encoding");
    bool has_body = (cl && strtoull(cl, NULL, 10) > 0) || te;
    if (cl && strtoull(cl, NULL, 10) > ADMIN_MAX_BODY) {
        admin_reply_error(r, 413, "body_too_large", "the body is over %d bytes", ADMIN_MAX_BODY);
        return 0;
    }
    if (has_body &&
        !is_json_ctype(MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Type"))) {
        admin_reply_error(r, 415, "unsupported_media_type",
                          "a request body must be 'Content-Type: application/json'");
        return 0;
    }
    return 1;
}

/* The whole body is in: parse it and run the handler. */
static void on_request(admin_req_t *r)
{
    unsigned fl = r->route->flags;
    if ((fl & (ADMIN_R_BODY | ADMIN_R_OPTBODY)) && r->body_len > 0) {
        json_error_t je;
        r->json = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &je);
        if (!r->json) {
            admin_reply_error(r, 400, "bad_json", "the body is not JSON: %s (line %d, column %d)",
                              je.text, je.line, je.column);
            return;
        }
        if (!json_is_object(r->json)) {
            admin_reply_error(r, 400, "bad_json", "the body must be a JSON object");
            return;
        }
    } else if ((fl & ADMIN_R_BODY) && r->body_len == 0) {
        admin_reply_error(r, 400, "missing_body", "this request needs a JSON object body");
        return;
    }
    r->route->fn(r);
}

static mhd_result_t on_access(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **con_cls)
{
    admin_req_t *r = *con_cls;
    if (!r) {
        if (!(r = calloc(1, sizeof(*r))))
            return MHD_NO;
        r->a = cls;
        r->conn = conn;
        *con_cls = r;
        if (!on_headers(r, url, method))
            return send_reply(r);
        return MHD_YES;
    }
    /* libmicrohttpd's last call for a request: all of it is in (an answer sent early still
     * leaves the client's upload under the deadline until then). */
    if (*upload_data_size == 0)
        conn_mark(r->a, conn, true);
    if (r->answered)
        return MHD_YES; /* answered already; the rest of the upload is discarded */
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (r->too_big || r->body_len + n > ADMIN_MAX_BODY) {
            /* A chunked body (no Content-Length) grew past the limit: stop buffering. Discard a
             * little more so the client, still sending, can read the 413; past that, answer and
             * close now. */
            r->too_big = true;
            r->discarded += n;
            if (r->discarded <= DISCARD_MAX)
                return MHD_YES;
            admin_reply_error(r, 413, "body_too_large", "the body is over %d bytes",
                              ADMIN_MAX_BODY);
            return send_reply(r);
        }
        if (r->body_len + n > r->body_cap) {
            size_t cap = r->body_cap ? r->body_cap : 1024;
            while (cap < r->body_len + n)
                cap *= 2;
            char *b = realloc(r->body, cap);
            if (!b)
                return MHD_NO;
            r->body = b;
            r->body_cap = cap;
        }
        memcpy(r->body + r->body_len, upload_data, n);
        r->body_len += n;
        return MHD_YES;
    }
    if (r->too_big)
        admin_reply_error(r, 413, "body_too_large", "the body is over %d bytes", ADMIN_MAX_BODY);
    else
        on_request(r);
    return send_reply(r);
}

/* ---- start and stop ---- */

/* admin-listen: "IP", "IP:PORT", "[IPv6]", "[IPv6]:PORT", a bare IPv6 address (sa_parse_hostport),
 * or "localhost[:PORT]" for 127.0.0.1. */
static int parse_listen(const char *v, struct sockaddr_storage *ss)
{
    char buf[64];
    size_t ln = strlen("localhost");
    if (strncmp(v, "localhost", ln) == 0 && (v[ln] == '\0' || v[ln] == ':')) {
        if (snprintf(buf, sizeof(buf), "127.0.0.1%s", v + ln) >= (int)sizeof(buf))
            return -1;
        v = buf;
    }
    return sa_parse_hostport(v, ADMIN_DEFAULT_PORT, ss);
}

int admin_check(const cfg_t *cfg, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    if (cfg->admin_listen && parse_listen(cfg->admin_listen, &ss) != 0)
        return cfg_fail(cfg, "admin-listen", 0, err, errlen,
                        "'%s' is not IP[:PORT] or [IPv6][:PORT] (port %d when omitted)",
                        cfg->admin_listen, ADMIN_DEFAULT_PORT);
    return 0;
}

static int open_listener(admin_t *a, const char *v, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    if (parse_listen(v, &ss) != 0) {
        snprintf(err, errlen,
                 "'admin-listen' '%s' is not IP[:PORT] or [IPv6][:PORT] (port %d when omitted)", v,
                 ADMIN_DEFAULT_PORT);
        return -EINVAL;
    }
    sa_format((struct sockaddr *)&ss, a->listen_name, sizeof(a->listen_name));
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, sa_len((struct sockaddr *)&ss)) != 0 ||
        listen(fd, 128) != 0)
        goto fail;
    a->fd = fd;
    a->family = ss.ss_family;
    return 0;
fail:;
    int e = errno;
    if (fd >= 0)
        close(fd);
    snprintf(err, errlen, "cannot listen on admin-listen %s: %s", a->listen_name, strerror(e));
    return -e;
}

int admin_start(server_t *s, struct admin **out, char *err, size_t errlen)
{
    return admin_start_fleet(s, NULL, out, err, errlen);
}

int admin_start_fleet(server_t *s, struct fleet *fleet, struct admin **out, char *err,
                      size_t errlen)
{
    *out = NULL;
    int rc;
    /* admin-token and the connection limits were checked with the rest of the config
     * (cfg_validate), FILE:LINE named. */
    admin_t *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    a->s = s;
    a->fleet = fleet;
    a->fd = -1;
    a->start_unix_ms = admin_unix_ms();
    a->start_hr = uv_hrtime();
    if ((rc = open_listener(a, s->cfg->admin_listen, err, errlen)) != 0) {
        free(a);
        return rc;
    }
    static uv_once_t once = UV_ONCE_INIT;
    uv_once(&once, init_log_lock);
    const cfg_t *cfg = s->cfg;
    a->deadline_ms = (uint64_t)cfg->admin_request_timeout * 1000u;
    uv_mutex_init(&a->conns_lock);
    uv_cond_init(&a->reaper_wake);
    a->redis = admin_redis_new(s->shared.creds);
    /* Before the daemon starts: handlers read a->history without a lock. Out of memory: the API
     * runs without /api/v1/history (503). */
    a->history = admin_history_start(a, (size_t)cfg->admin_history);
    /* MHD_USE_ITC: a connection handed over by admin_add_connection wakes its pool thread. */
    unsigned flags =
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | MHD_USE_EPOLL | MHD_USE_ITC;
    if (a->family == AF_INET6)
        flags |= MHD_USE_IPv6;
    a->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, on_access, a, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_LISTEN_SOCKET, a->fd, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)POOL_THREADS,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->admin_request_timeout,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->admin_connections_max,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)cfg->admin_connections_per_ip,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEMORY, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, a, MHD_OPTION_NOTIFY_CONNECTION, on_connection, a,
        MHD_OPTION_UNESCAPE_CALLBACK, no_unescape, NULL, MHD_OPTION_END);
    if (!a->mhd || uv_thread_create(&a->reaper, reaper, a) != 0) {
        snprintf(err, errlen, "cannot start the admin API on %s", a->listen_name);
        if (a->mhd)
            MHD_stop_daemon(a->mhd);
        else
            close(a->fd);
        admin_redis_free(a->redis);
        admin_history_stop(a->history);
        uv_cond_destroy(&a->reaper_wake);
        uv_mutex_destroy(&a->conns_lock);
        free(a);
        return -EIO;
    }
    a->reaper_running = true;
    a->fd = -1; /* libmicrohttpd owns the listening socket now and closes it on stop */
    LOGI("admin", "admin API on http://%s (%zu tokens)", a->listen_name, s->cfg->admin_token.n);
    *out = a;
    return 0;
}

int admin_add_connection(struct admin *a, int fd)
{
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* libmicrohttpd closes fd also when it refuses the connection. */
    if (MHD_add_connection(a->mhd, fd, (struct sockaddr *)&sin, sizeof(sin)) != MHD_YES)
        return errno ? -errno : -EIO;
    return 0;
}

void admin_stop(struct admin *a)
{
    if (!a)
        return;
    MHD_stop_daemon(a->mhd); /* joins the pool threads; requests in progress finish first */
    admin_history_stop(a->history);
    if (a->reaper_running) {
        uv_mutex_lock(&a->conns_lock);
        a->reaper_stop = true;
        uv_cond_signal(&a->reaper_wake);
        uv_mutex_unlock(&a->conns_lock);
        uv_thread_join(&a->reaper);
    }
    uv_cond_destroy(&a->reaper_wake);
    uv_mutex_destroy(&a->conns_lock);
    admin_redis_free(a->redis);
    free(a);
}
