/* admin_cluster.c - GET /api/v1/cluster: every live node of the fleet as this node last read the
 * registry (server/fleet: read every second, so the answer is at most a second old and costs no
 * Redis round trip), with fleet totals. A node without redis-userdb answers with itself alone and
 * "fleet": false; a fleet node that has no fresh view (Redis away for longer than an entry lives)
 * answers with itself alone and "redis_ok": false.
 */
#include "admin_int.h"

#include <string.h>

#include "fleet.h"

static json_t *node_json(const fleet_node_t *n, int64_t now_ms)
{
    json_t *addrs = json_object();
    for (int t = 0; t < FLEET_NTRANSPORTS; t++) {
        json_t *l = json_array();
        for (int i = 0; i < n->naddr[t]; i++)
            json_array_append_new(l, json_string(n->addr[t][i]));
        json_object_set_new(addrs, fleet_transport_name(t), l);
    }
    char started[40] = "";
    if (n->started_ms > 0)
        admin_iso8601(n->started_ms, started, sizeof(started));
    int64_t age = now_ms - n->ts_ms;
    return json_pack("{s:s,s:I,s:b,s:o,s:I,s:f,s:s,s:s?,s:I}", "id", n->id, "allocations",
                     (json_int_t)n->allocations, "draining", n->draining, "addresses", addrs, "bps",
                     (json_int_t)n->bps, "cpu", n->cpu, "version", n->version, "started",
                     started[0] ? started : NULL, "age_ms", (json_int_t)(age > 0 ? age : 0));
}

void admin_h_cluster(admin_req_t *r)
{
    admin_t *a = r->a;
    fleet_view_t *v = fleet_view_get(a->fleet);
    fleet_node_t me;
    const fleet_node_t *nodes = v ? v->nodes : &me;
    size_t n = v ? v->n : 1;
    if (!v) {
        fleet_local(a->s, &me);
        me.started_ms = a->start_unix_ms;
    }
    int64_t now = admin_unix_ms();
    json_t *arr = json_array();
    long long allocs = 0, bps = 0;
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(arr, node_json(&nodes[i], now));
        allocs += nodes[i].allocations;
        bps += nodes[i].bps;
    }
    json_t *o =
        json_pack("{s:b,s:s,s:o,s:{s:I,s:I,s:I}}", "fleet", fleet_enabled(a->fleet), "node",
                  a->fleet ? fleet_node_id(a->fleet) : me.id, "nodes", arr, "totals", "allocations",
                  (json_int_t)allocs, "nodes", (json_int_t)n, "bps", (json_int_t)bps);
    if (o && fleet_enabled(a->fleet))
        json_object_set_new(o, "redis_ok", json_boolean(v != NULL));
    fleet_view_put(v);
    admin_reply_json(r, 200, o);
}
