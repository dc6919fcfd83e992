/* admin_json.c - replies, errors and input checks shared by the admin routes.
 *
 * Every body the API sends is built and escaped by jansson; every error is
 * {"error":{"code":"<stable identifier>","message":"<for humans>"}} with the HTTP status that
 * says what went wrong (RFC 9110 §15). Names that reach Redis keys or logs are checked here:
 * bounded length, valid UTF-8, no control characters.
 */
#include "admin_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <microhttpd.h>

#include "stun_auth.h"

void admin_reply_text(admin_req_t *r, unsigned status, const char *ctype, const char *text,
                      size_t len)
{
    if (r->answered)
        return;
    char *copy = malloc(len + 1);
    if (copy) {
        memcpy(copy, text, len);
        copy[len] = 0;
    } else {
        len = 0;
        status = 500;
    }
    free(r->resp);
    r->resp = copy;
    r->resp_len = len;
    r->status = status;
    r->ctype = ctype;
    r->answered = true;
}

void admin_reply_json(admin_req_t *r, unsigned status, json_t *body)
{
    if (r->answered) {
        json_decref(body);
        return;
    }
    if (!body)
        body = json_object();
    char *s = body ? json_dumps(body, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    json_decref(body);
    free(r->resp);
    if (!s) {
        static const char oom[] =
            "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
        r->resp = strdup(oom);
        r->resp_len = r->resp ? strlen(oom) : 0;
        status = 500;
    } else {
        r->resp = s;
        r->resp_len = strlen(s);
    }
    r->status = status;
    r->ctype = "application/json";
    r->answered = true;
}

void admin_reply_error(admin_req_t *r, unsigned status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* A message may quote client input cut at any byte: keep it valid UTF-8 for jansson. */
    json_t *m = json_string(msg);
    if (!m)
        m = json_string("(message not valid UTF-8)");
    admin_reply_json(r, status, json_pack("{s:{s:s,s:o}}", "error", "code", code, "message", m));
}

char *admin_pct_decode(const char *s, size_t n, bool plus_space, size_t *outlen)
{
    char *out = malloc(n + 1);
    size_t o = 0;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi = i + 1 < n ? stun_auth_hex_digit(s[i + 1]) : -1;
            int lo = i + 2 < n ? stun_auth_hex_digit(s[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                free(out);
                return NULL;
            }
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else if (plus_space && s[i] == '+') {
            out[o++] = ' ';
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = 0;
    *outlen = o;
    return out;
}

const char *admin_query(admin_req_t *r, const char *name, char *out, size_t cap, bool *bad)
{
    /* libmicrohttpd already turned '+' into ' ' and leaves %-escapes to us (no_unescape). */
    const char *v = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
    if (!v)
        return NULL;
    size_t n;
    char *d = admin_pct_decode(v, strlen(v), false, &n);
    if (!d || n + 1 > cap || memchr(d, 0, n)) {
        free(d);
        *bad = true;
        return NULL;
    }
    memcpy(out, d, n + 1);
    free(d);
    return out;
}

int admin_query_int(admin_req_t *r, const char *name, long long def, long long min, long long max,
                    long long *out)
{
    char buf[32];
    bool bad = false;
    const char *v = admin_query(r, name, buf, sizeof(buf), &bad);
    *out = def;
    if (!v && !bad)
        return 0;
    char *end = NULL;
    errno = 0;
    long long x = v ? strtoll(v, &end, 10) : 0;
    if (bad || !v || !*v || *end || errno || x < min || x > max) {
        admin_reply_error(r, 400, "bad_parameter", "'%s' must be an integer from %lld to %lld",
                          name, min, max);
        return -1;
    }
    *out = x;
    return 0;
}

/* Length of the UTF-8 sequence at s (at most n bytes), or 0 when it is malformed. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    unsigned v = c & (0x3F >> (len - 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    /* C1 controls (U+0080..U+009F) are control characters too. */
    if (v < 0xA0)
        return 0;
    return len;
}

int admin_check_name(admin_req_t *r, const char *field, const char *v, size_t len, size_t max)
{
    if (len == 0 || len > max) {
        admin_reply_error(r, 400, "bad_field", "'%s' must be 1 to %zu bytes", field, max);
        return -1;
    }
    const unsigned char *s = (const unsigned char *)v;
    for (size_t i = 0; i < len;) {
        if (s[i] < 0x20 || s[i] == 0x7f) {
            admin_reply_error(r, 400, "bad_field", "'%s' has a control character", field);
            return -1;
        }
        size_t l = utf8_len(s + i, len - i);
        if (l == 0) {
            admin_reply_error(r, 400, "bad_field", "'%s' is not valid UTF-8 text", field);
            return -1;
        }
        i += l;
    }
    return 0;
}

const char *admin_body_str(admin_req_t *r, const char *field, size_t *len, bool *bad)
{
    json_t *v = r->json ? json_object_get(r->json, field) : NULL;
    if (!v)
        return NULL;
    if (!json_is_string(v)) {
        admin_reply_error(r, 400, "bad_field", "'%s' must be a string", field);
        *bad = true;
        return NULL;
    }
    *len = json_string_length(v);
    return json_string_value(v);
}

int64_t admin_unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void admin_iso8601(int64_t unix_ms, char *out, size_t cap)
{
    time_t t = (time_t)(unix_ms / 1000);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, cap, "?");
}
