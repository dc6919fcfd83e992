/* fleet_json.c - the fleet's two JSON forms, a node's registry entry and a revocation event, both
 * ways. What is decoded comes from Redis, which any client of that database can write: sizes are
 * bounded before parsing, every field is checked for type and range, strings for length and
 * alphabet, and anything off is refused whole (the caller skips that entry or event).
 *
 * Entry: {"id":"a","instance":"<32 hex>","version":"0.1","allocations":N,"quota":N,"bps":N,"cpu":F,
 *         "draining":B,"started":MS,"ts":MS,"addresses":{"udp":["ip:port",...],"tcp":[...],
 *         "tls":[...],"dtls":[...]}}
 * Event: {"v":1,"type":"forget","origin":"<32 hex>","realm":"r","user":"u"|null,"terminate":B}
 */
#include "fleet.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

static const char *const transport_names[FLEET_NTRANSPORTS] = {"udp", "tcp", "tls", "dtls"};

const char *fleet_transport_name(int t)
{
    return t >= 0 && t < FLEET_NTRANSPORTS ? transport_names[t] : "?";
}

int fleet_id_valid(const char *s, size_t len)
{
    if (len < 1 || len > FLEET_ID_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static int hex_valid(const char *s, size_t len, size_t want)
{
    if (len != want)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* An address as a node writes it: "1.2.3.4:5" or "[::1]:5" (no names, nothing else). */
static int addr_valid(const char *s, size_t len)
{
    if (len < 3 || len >= FLEET_ADDR_MAX)
        return 0;
    return strspn(s, "0123456789abcdefABCDEF.:[]") == len;
}

static int dump(json_t *o, char *out, size_t cap)
{
    size_t n = o ? json_dumpb(o, out, cap, JSON_COMPACT) : 0;
    json_decref(o);
    if (n == 0 || n >= cap)
        return -1;
    out[n] = 0;
    return (int)n;
}

int fleet_node_encode(const fleet_node_t *n, char *out, size_t cap)
{
    json_t *addrs = json_object();
    for (int t = 0; t < FLEET_NTRANSPORTS && addrs; t++) {
        json_t *a = json_array();
        for (int i = 0; i < n->naddr[t] && i < FLEET_ADDRS_PER; i++)
            json_array_append_new(a, json_string(n->addr[t][i]));
        json_object_set_new(addrs, transport_names[t], a);
    }
    json_t *o = json_pack(
        "{s:s,s:s,s:s,s:I,s:I,s:I,s:f,s:b,s:I,s:I,s:o}", "id", n->id, "instance", n->instance,
        "version", n->version, "allocations", (json_int_t)n->allocations, "quota",
        (json_int_t)n->quota, "bps", (json_int_t)n->bps, "cpu", n->cpu, "draining", n->draining,
        "started", (json_int_t)n->started_ms, "ts", (json_int_t)n->ts_ms, "addresses", addrs);
    if (cap > FLEET_ENTRY_MAX)
        cap = FLEET_ENTRY_MAX;
    return dump(o, out, cap);
}

static json_t *load(const char *s, size_t len, size_t max, char *err, size_t errlen)
{
    if (len > max) {
        snprintf(err, errlen, "%zu bytes (at most %zu)", len, max);
        return NULL;
    }
    json_error_t je;
    /* JSON_REJECT_DUPLICATES: one meaning per field; \u0000 is refused by default. */
    json_t *o = json_loadb(s, len, JSON_REJECT_DUPLICATES, &je);
    if (!o) {
        snprintf(err, errlen, "not JSON: %s", je.text);
        return NULL;
    }
    if (!json_is_object(o)) {
        json_decref(o);
        snprintf(err, errlen, "not a JSON object");
        return NULL;
    }
    return o;
}

/* A string member of 1..max bytes into out (cap > max); -1 with err when absent or wrong. */
static int get_str(json_t *o, const char *k, char *out, size_t max, size_t *len, char *err,
                   size_t errlen)
{
    json_t *v = json_object_get(o, k);
    if (!json_is_string(v)) {
        snprintf(err, errlen, "'%s' %s", k, v ? "is not a string" : "is missing");
        return -1;
    }
    size_t n = json_string_length(v);
    if (n < 1 || n > max) {
        snprintf(err, errlen, "'%s' must be 1 to %zu bytes", k, max);
        return -1;
    }
    memcpy(out, json_string_value(v), n);
    out[n] = 0;
    if (len)
        *len = n;
    return 0;
}

static int get_int(json_t *o, const char *k, int64_t min, int64_t max, int64_t *out, char *err,
                   size_t errlen)
{
    json_t *v = json_object_get(o, k);
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        snprintf(err, errlen, "'%s' %s", k, v ? "is not an integer in range" : "is missing");
        return -1;
    }
    *out = (int64_t)json_integer_value(v);
    return 0;
}

static int get_bool(json_t *o, const char *k, bool *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, k);
    if (!json_is_boolean(v)) {
        snprintf(err, errlen, "'%s' %s", k, v ? "is not a boolean" : "is missing");
        return -1;
    }
    *out = json_is_true(v);
    return 0;
}

static int get_addrs(json_t *o, fleet_node_t *n, char *err, size_t errlen)
{
    json_t *a = json_object_get(o, "addresses");
    if (!json_is_object(a)) {
        snprintf(err, errlen, "'addresses' %s", a ? "is not an object" : "is missing");
        return -1;
    }
    for (int t = 0; t < FLEET_NTRANSPORTS; t++) {
        json_t *l = json_object_get(a, transport_names[t]);
        if (!l)
            continue; /* a node without that transport may leave it out */
        if (!json_is_array(l) || json_array_size(l) > FLEET_ADDRS_PER) {
            snprintf(err, errlen, "'addresses.%s' is not an array of at most %d",
                     transport_names[t], FLEET_ADDRS_PER);
            return -1;
        }
        for (size_t i = 0; i < json_array_size(l); i++) {
            json_t *v = json_array_get(l, i);
            const char *s = json_string_value(v);
            if (!s || !addr_valid(s, json_string_length(v))) {
                snprintf(err, errlen, "'addresses.%s[%zu]' is not IP:PORT", transport_names[t], i);
                return -1;
            }
            memcpy(n->addr[t][i], s, json_string_length(v) + 1);
        }
        n->naddr[t] = (int)json_array_size(l);
    }
    return 0;
}

int fleet_node_decode(const char *s, size_t len, fleet_node_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    json_t *o = load(s, len, FLEET_ENTRY_MAX, err, errlen);
    if (!o)
        return -1;
    size_t n;
    int rc = -1;
    if (get_str(o, "id", out->id, FLEET_ID_MAX, &n, err, errlen) != 0)
        goto out;
    if (!fleet_id_valid(out->id, n)) {
        snprintf(err, errlen, "'id' is not a node-id");
        goto out;
    }
    if (get_str(o, "instance", out->instance, FLEET_INSTANCE_LEN, &n, err, errlen) != 0)
        goto out;
    if (!hex_valid(out->instance, n, FLEET_INSTANCE_LEN)) {
        snprintf(err, errlen, "'instance' is not %d hex digits", FLEET_INSTANCE_LEN);
        goto out;
    }
    if (get_str(o, "version", out->version, sizeof(out->version) - 1, &n, err, errlen) != 0)
        goto out;
    json_t *cpu = json_object_get(o, "cpu");
    if (!json_is_number(cpu) || json_number_value(cpu) < 0 || json_number_value(cpu) > 1e6) {
        snprintf(err, errlen, "'cpu' %s", cpu ? "is not a number in range" : "is missing");
        goto out;
    }
    out->cpu = json_number_value(cpu);
    /* "quota" is optional: 0 (unlimited) when absent. */
    if (json_object_get(o, "quota") &&
        get_int(o, "quota", 0, INT32_MAX, &out->quota, err, errlen) != 0)
        goto out;
    if (get_int(o, "allocations", 0, INT32_MAX, &out->allocations, err, errlen) != 0 ||
        get_int(o, "bps", 0, INT64_MAX, &out->bps, err, errlen) != 0 ||
        get_bool(o, "draining", &out->draining, err, errlen) != 0 ||
        get_int(o, "started", 0, INT64_MAX, &out->started_ms, err, errlen) != 0 ||
        get_int(o, "ts", 0, INT64_MAX, &out->ts_ms, err, errlen) != 0 ||
        get_addrs(o, out, err, errlen) != 0)
        goto out;
    rc = 0;
out:
    json_decref(o);
    return rc;
}

int fleet_event_encode(const fleet_event_t *e, char *out, size_t cap)
{
    json_t *user = e->has_user ? json_stringn(e->user, e->ulen) : json_null();
    json_t *o = json_pack("{s:i,s:s,s:s,s:s,s:o,s:b}", "v", 1, "type", "forget", "origin",
                          e->origin, "realm", e->realm, "user", user, "terminate", e->terminate);
    if (cap > FLEET_EVENT_MAX + 1)
        cap = FLEET_EVENT_MAX + 1;
    return dump(o, out, cap);
}

int fleet_event_decode(const char *s, size_t len, fleet_event_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    json_t *o = load(s, len, FLEET_EVENT_MAX, err, errlen);
    if (!o)
        return -1;
    int rc = -1;
    size_t n;
    json_t *v = json_object_get(o, "v");
    json_t *type = json_object_get(o, "type");
    if (!json_is_integer(v) || json_integer_value(v) != 1) {
        snprintf(err, errlen, "'v' is not 1");
        goto out;
    }
    if (!json_is_string(type) || strcmp(json_string_value(type), "forget") != 0) {
        snprintf(err, errlen, "'type' is not \"forget\"");
        goto out;
    }
    if (get_str(o, "origin", out->origin, FLEET_INSTANCE_LEN, &n, err, errlen) != 0)
        goto out;
    if (!hex_valid(out->origin, n, FLEET_INSTANCE_LEN)) {
        snprintf(err, errlen, "'origin' is not %d hex digits", FLEET_INSTANCE_LEN);
        goto out;
    }
    if (get_str(o, "realm", out->realm, FLEET_REALM_MAX, NULL, err, errlen) != 0 ||
        get_bool(o, "terminate", &out->terminate, err, errlen) != 0)
        goto out;
    json_t *u = json_object_get(o, "user");
    if (json_is_null(u)) {
        out->has_user = false;
        if (out->terminate) {
            snprintf(err, errlen, "'terminate' needs a 'user'");
            goto out;
        }
    } else {
        if (get_str(o, "user", out->user, FLEET_USER_MAX, &out->ulen, err, errlen) != 0)
            goto out;
        out->has_user = true;
    }
    rc = 0;
out:
    json_decref(o);
    return rc;
}
