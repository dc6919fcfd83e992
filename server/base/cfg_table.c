/* cfg_table.c - the one table of uturnd settings.
 *
 * Every key the file, the command line, --help and the config dump know comes from here. Names are
 * coturn's where the meaning is the same (turnserver.conf compatibility); our own keys are marked
 * as such in their help text. Keys that a later release implements are CFG_F_LATER: they parse by
 * name and fail with "not supported yet" instead of being silently ignored.
 */
#include "cfg.h"

#include <stddef.h>
#include <string.h>

#include "log.h"
#include "util.h"

#define OFF(f) offsetof(cfg_t, f)

static const char *const log_level_names[] = {"error", "warn", "info", "debug", NULL};
static const char *const log_format_names[] = {"text", "json", NULL};
/* Order = enum cfg_kernel_offload. */
static const char *const kernel_offload_names[] = {"off", "auto", "on", NULL};

const cfg_entry_t cfg_table[] = {
    /* listeners */
    {"listening-ip", CFG_LIST, OFF(listening_ip), NULL, 0, 0, NULL, 0,
     "IP to listen on (repeatable; IPv4 or IPv6). Default: every IPv4 and IPv6 address"},
    {"listening-port", CFG_INT, OFF(listening_port), "3478", 1, 65535, NULL, 0,
     "UDP and TCP port for STUN/TURN"},
    {"tls-listening-port", CFG_INT, OFF(tls_listening_port), "5349", 1, 65535, NULL, 0,
     "TLS and DTLS port"},
    {"no-udp", CFG_BOOL, OFF(no_udp), "false", 0, 0, NULL, 0, "do not listen on UDP"},
    {"no-tcp", CFG_BOOL, OFF(no_tcp), "false", 0, 0, NULL, 0, "do not listen on TCP"},
    {"no-tls", CFG_BOOL, OFF(no_tls), "false", 0, 0, NULL, 0, "do not listen on TLS"},
    {"no-dtls", CFG_BOOL, OFF(no_dtls), "false", 0, 0, NULL, 0, "do not listen on DTLS"},
    {"rfc5780", CFG_BOOL, OFF(rfc5780), "false", 0, 0, NULL, 0,
     "RFC 5780 NAT behaviour discovery: OTHER-ADDRESS, CHANGE-REQUEST, RESPONSE-PORT, PADDING. "
     "Needs two listening-ip of one family; listens on both ports of both. Off by default: bigger "
     "Binding answers, sent from other addresses (ours)"},
    {"alt-listening-port", CFG_INT, OFF(alt_listening_port), "0", 0, 65535, NULL, 0,
     "second UDP and TCP port for rfc5780; 0 = listening-port + 1"},
    /* relay */
    {"relay-ip", CFG_LIST, OFF(relay_ip), NULL, 0, 0, NULL, 0,
     "IP for relayed addresses (repeatable). Default: the listening IPs"},
    {"external-ip", CFG_LIST, OFF(external_ip), NULL, 0, 0, NULL, 0,
     "public IP announced for a private relay IP: PUBLIC or PUBLIC/PRIVATE (repeatable)"},
    {"min-port", CFG_INT, OFF(min_port), "49152", 1, 65535, NULL, 0, "lowest relay port"},
    {"max-port", CFG_INT, OFF(max_port), "65535", 1, 65535, NULL, 0, "highest relay port"},
    {"no-tcp-relay", CFG_BOOL, OFF(no_tcp_relay), "false", 0, 0, NULL, 0,
     "refuse TCP relay allocations (RFC 6062)"},
    {"no-udp-relay", CFG_BOOL, OFF(no_udp_relay), "false", 0, 0, NULL, 0,
     "refuse UDP relay allocations"},
    {"relay-threads", CFG_INT, OFF(relay_threads), "0", 0, 256, NULL, 0,
     "worker threads, each with its own event loop; 0 = one per usable core"},
    /* auth */
    {"realm", CFG_STR, OFF(realm), "uturn", 0, 0, NULL, 0, "realm for long-term credentials"},
    {"server-name", CFG_STR, OFF(server_name), NULL, 0, 0, NULL, 0, "name used in logs"},
    {"user", CFG_LIST, OFF(user), NULL, 0, 0, NULL, CFG_F_SECRET,
     "static user NAME:PASSWORD or NAME:0xHEXKEY (coturn's MD5 key form; repeatable)"},
    {"use-auth-secret", CFG_BOOL, OFF(use_auth_secret), "false", 0, 0, NULL, 0,
     "TURN REST ephemeral credentials"},
    {"static-auth-secret", CFG_LIST, OFF(static_auth_secret), NULL, 0, 0, NULL, CFG_F_SECRET,
     "REST API shared secret (repeatable, for rotation)"},
    {"redis-userdb", CFG_STR, OFF(redis_userdb), NULL, 0, 0, NULL, CFG_F_SECRET,
     "Redis user database: \"ip=... port=... dbname=... password=...\" or "
     "redis://[[user]:password@]host[:port][/db]; with Redis Sentinel \"sentinel=IP[:PORT],... "
     "master=NAME [password=...] [sentinel-password=...] [dbname=N]\" or "
     "redis-sentinel://[[user]:password@]IP[:PORT],.../NAME[/db][?sentinel-password=...] "
     "(sentinel ports default to 26379; uturnd follows the master through a failover)"},
    {"stale-nonce", CFG_INT, OFF(stale_nonce), "600", 1, 86400, NULL, CFG_F_RELOAD,
     "nonce lifetime in seconds"},
    {"max-allocate-lifetime", CFG_INT, OFF(max_allocate_lifetime), "3600", 600, 86400, NULL,
     CFG_F_RELOAD, "longest allocation lifetime granted, seconds"},
    {"node-id", CFG_STR, OFF(node_id), NULL, 0, 0, NULL, 0,
     "this node's name in the fleet registry (with redis-userdb): 1-64 of [A-Za-z0-9._-]; unique "
     "per node. Default: the host name (ours)"},
    {"nonce-secret", CFG_STR, OFF(nonce_secret), NULL, 0, 0, NULL, CFG_F_SECRET,
     "secret behind the stateless nonces; set the same on every node behind one name (ours). "
     "Default: random at start"},
    {"redis-pending-per-ip", CFG_INT, OFF(redis_pending_per_ip), "32", 1, 65536, NULL, CFG_F_RELOAD,
     "credential lookups from one source IP waiting for Redis, per worker; more are dropped "
     "(ours)"},
    {"redis-pending-max", CFG_INT, OFF(redis_pending_max), "256", 1, 65536, NULL, CFG_F_RELOAD,
     "credential lookups waiting for Redis per worker; more are dropped (ours)"},
    {"redis-cache-users", CFG_INT, OFF(redis_cache_users), "4096", 1, 4194304, NULL, CFG_F_RELOAD,
     "known Redis users cached per worker; only other known users evict them (ours)"},
    {"redis-cache-unknown", CFG_INT, OFF(redis_cache_unknown), "1024", 1, 4194304, NULL,
     CFG_F_RELOAD,
     "unknown names cached per worker (at least redis-pending-max + 1 are kept) (ours)"},
    {"userhash", CFG_BOOL, OFF(userhash), "false", 0, 0, NULL, 0,
     "advertise RFC 8489 username anonymity (USERHASH); needs users whose hash is known (ours)"},
    /* TLS */
    {"cert", CFG_STR, OFF(cert), NULL, 0, 0, NULL, CFG_F_RELOAD,
     "TLS/DTLS certificate chain (PEM, leaf first); TLS and DTLS listen only when set"},
    {"pkey", CFG_STR, OFF(pkey), NULL, 0, 0, NULL, CFG_F_RELOAD, "TLS/DTLS private key (PEM)"},
    {"cipher-list", CFG_STR, OFF(cipher_list), NULL, 0, 0, NULL, CFG_F_RELOAD,
     "OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are OpenSSL's defaults)"},
    /* peers and quotas */
    {"allow-loopback-peers", CFG_BOOL, OFF(allow_loopback_peers), "false", 0, 0, NULL, 0,
     "allow relaying to loopback peers (testing only)"},
    {"allow-private-peers", CFG_BOOL, OFF(allow_private_peers), "false", 0, 0, NULL, 0,
     "allow relaying to RFC 1918 and CGNAT (100.64/10) peers (ours; denied by default)"},
    {"max-permissions", CFG_INT, OFF(max_permissions), "64", 1, 65535, NULL, CFG_F_RELOAD,
     "permissions per allocation (ours)"},
    {"max-channels", CFG_INT, OFF(max_channels), "64", 1, 4096, NULL, CFG_F_RELOAD,
     "channel bindings per allocation (ours)"},
    {"strict-channel-numbers", CFG_BOOL, OFF(strict_channel_numbers), "false", 0, 0, NULL, 0,
     "accept only RFC 8656 channels 0x4000-0x4FFF; by default RFC 5766's 0x4000-0x7FFF too, as "
     "coturn's and pion's clients use them (ours)"},
    {"denied-peer-ip", CFG_LIST, OFF(denied_peer_ip), NULL, 0, 0, NULL, 0,
     "deny peers: IP, CIDR or A-B range (repeatable)"},
    {"allowed-peer-ip", CFG_LIST, OFF(allowed_peer_ip), NULL, 0, 0, NULL, 0,
     "allow peers, checked before the deny list: IP, CIDR or A-B range (repeatable)"},
    {"user-quota", CFG_INT, OFF(user_quota), "256", 0, 1000000, NULL, CFG_F_RELOAD,
     "concurrent allocations per user (486 past it); 0 = unlimited. The default is far above a "
     "browser's or softphone's need and 1/64 of the default relay port range"},
    {"total-quota", CFG_INT, OFF(total_quota), "12000", 0, 10000000, NULL, CFG_F_RELOAD,
     "concurrent allocations in all (508, or 300 with alternate-server, past it); 0 = unlimited. "
     "The default leaves a quarter of the default 16384 relay ports free"},
    {"cluster-quota", CFG_BOOL, OFF(cluster_quota), "true", 0, 0, NULL, 0,
     "with redis-userdb, count user-quota over every node of the fleet (a crashed node's share "
     "frees when its registry entry expires); Redis away or slower than 200 ms: this node's own "
     "count (ours)"},
    /* RFC 6062 peer connections (ours): a real client holds a handful per allocation; a flood of
     * peers connecting in must not take the process's file descriptors from everyone else. */
    {"max-peer-connections", CFG_INT, OFF(max_peer_connections), "64", 1, 65535, NULL, CFG_F_RELOAD,
     "RFC 6062 TCP peer connections per allocation, accepted and made by Connect, pending or "
     "bound; past it peers are closed at accept and Connect gets 508 (ours)"},
    {"user-peer-connection-quota", CFG_INT, OFF(user_peer_conn_quota), "256", 0, 1000000, NULL,
     CFG_F_RELOAD,
     "RFC 6062 TCP peer connections per user over all allocations and workers; 0 = unlimited "
     "(ours)"},
    {"reservation-lifetime", CFG_INT, OFF(reservation_lifetime), "30", 1, 3600, NULL, CFG_F_RELOAD,
     "seconds an EVEN-PORT R=1 reservation holds port N+1 and one unit of its user's quota (RFC "
     "8656 §7.2 asks for about 30; ours)"},
    /* Testing only: RFC 8656 fixes both; shorter ones let a test see expiry in seconds
     * (tests/integration/test_kernel_equivalence.py). Read at each Allocate. */
    {"permission-lifetime", CFG_INT, OFF(permission_lifetime), "300", 1, 300, NULL, CFG_F_RELOAD,
     "testing only: seconds a permission lasts (RFC 8656 §9 fixes 300; ours)"},
    {"channel-lifetime", CFG_INT, OFF(channel_lifetime), "600", 1, 600, NULL, CFG_F_RELOAD,
     "testing only: seconds a channel binding lasts (RFC 8656 §12 fixes 600; ours)"},
    {"max-bps", CFG_INT, OFF(max_bps), "0", 0, 100000000000L, NULL, CFG_F_RELOAD,
     "bytes per second per allocation; 0 = unlimited"},
    /* streams (our own) */
    {"tcp-frame-timeout", CFG_INT, OFF(tcp_frame_timeout), "20", 1, 3600, NULL, 0,
     "close a TCP/TLS connection stalled this many seconds in the middle of a message (ours)"},
    {"tcp-idle-timeout", CFG_INT, OFF(tcp_idle_timeout), "120", 5, 86400, NULL, 0,
     "close a TCP/TLS connection without an allocation after this many idle seconds (ours)"},
    {"max-tcp-connections", CFG_INT, OFF(max_tcp_connections), "0", 0, 1000000, NULL, 0,
     "client TCP/TLS connections in all, every worker together; 0 = half the file-descriptor "
     "limit (RLIMIT_NOFILE) at start, so relay sockets always keep the other half (ours)"},
    {"max-tcp-connections-per-ip", CFG_INT, OFF(max_tcp_per_ip), "256", 1, 1000000, NULL, 0,
     "concurrent TCP/TLS client connections from one IP, per worker (ours)"},
    {"max-dtls-sessions-per-ip", CFG_INT, OFF(max_dtls_per_ip), "64", 1, 100000, NULL, 0,
     "concurrent DTLS sessions from one IP, per worker; beyond it a ClientHello is dropped (ours)"},
    {"max-dtls-sessions", CFG_INT, OFF(max_dtls_sessions), "1024", 1, 1000000, NULL, 0,
     "concurrent DTLS sessions per worker, about 48 KiB each (ours)"},
    {"max-unauth-answer-bps", CFG_INT, OFF(max_unauth_bps), "4194304", 1024, 1000000000, NULL,
     CFG_F_RELOAD,
     "bytes per second of answers to unauthenticated UDP requests, per worker (ours)"},
    /* misc */
    {"software-attribute", CFG_BOOL, OFF(software_attribute), "false", 0, 0, NULL, 0,
     "send SOFTWARE in responses (ours; off: it inflates every response)"},
    {"log-file", CFG_STR, OFF(log_file), NULL, 0, 0, NULL, 0, "log to this file instead of stderr"},
    {"pidfile", CFG_STR, OFF(pidfile), NULL, 0, 0, NULL, 0, "write the process id here"},
    {"kernel-offload", CFG_ENUM, OFF(kernel_offload), "auto", 0, 0, kernel_offload_names, 0,
     "relay UDP ChannelData, Send and Data in the kernel (a TC program, docs/KERNEL.md): auto uses "
     "it when it loads and logs one line saying why not otherwise; on refuses to start without "
     "it; off never loads it (ours)"},
    {"kernel-offload-xdp", CFG_ENUM, OFF(kernel_offload_xdp), "auto", 0, 0, kernel_offload_names, 0,
     "the kernel path's XDP program in front of its TC program (docs/KERNEL.md): auto attaches it "
     "in native mode on the listening and relay interfaces but loopback and veth, logging why "
     "not; on includes veth (their far ends must run an XDP program) and refuses to start if an "
     "attach fails; off: TC only (ours)"},
    {"log-level", CFG_ENUM, OFF(log_level), "info", 0, 0, log_level_names, CFG_F_RELOAD,
     "error, warn, info or debug (ours)"},
    {"log-format", CFG_ENUM, OFF(log_format), "text", 0, 0, log_format_names, 0,
     "text or json, one line per event (ours)"},
    {"admin-listen", CFG_STR, OFF(admin_listen), NULL, 0, 0, NULL, 0,
     "admin HTTP API on IP[:PORT] or [IPv6][:PORT], port 8089 when omitted; off when unset "
     "(ours)"},
    {"admin-token", CFG_LIST, OFF(admin_token), NULL, 0, 0, NULL, CFG_F_SECRET | CFG_F_RELOAD,
     "admin API bearer token, 16+ characters; ro:TOKEN is read-only (repeatable; ours)"},
    {"admin-request-timeout", CFG_INT, OFF(admin_request_timeout), "10", 1, 3600, NULL, 0,
     "seconds an admin API connection has from accept (or its last answer) to a whole request "
     "(ours)"},
    {"admin-connections-max", CFG_INT, OFF(admin_connections_max), "1024", 2, 65536, NULL, 0,
     "admin API connections in all (ours)"},
    {"admin-connections-per-ip", CFG_INT, OFF(admin_connections_per_ip), "128", 1, 65536, NULL, 0,
     "admin API connections from one IP; keep it below admin-connections-max (ours)"},
    {"admin-history", CFG_INT, OFF(admin_history), "3600", 10, 86400, NULL, 0,
     "1 s samples the admin API keeps for /api/v1/history and the dashboard's charts (ours)"},
    {"alternate-server", CFG_LIST, OFF(alternate_server), NULL, 0, 0, NULL, 0,
     "IP[:PORT] offered with 300 Try Alternate when full or draining (repeatable)"},
    {"tls-alternate-server", CFG_LIST, OFF(tls_alternate_server), NULL, 0, 0, NULL, 0,
     "IP[:PORT] offered to TLS and DTLS clients instead of alternate-server (repeatable)"},
    {"alternate-domain", CFG_STR, OFF(alternate_domain), NULL, 0, 0, NULL, 0,
     "name sent as ALTERNATE-DOMAIN to TLS/DTLS clients with 300 (ours; default: server-name)"},
    {"drain-exit", CFG_BOOL, OFF(drain_exit), "false", 0, 0, NULL, 0,
     "exit when draining and the last allocation ends (ours)"},
    /* usage ledger (ours, but for redis-statsdb) */
    {"redis-statsdb", CFG_STR, OFF(redis_statsdb), NULL, 0, 0, NULL, CFG_F_SECRET,
     "Redis for the usage ledger (same forms as redis-userdb; default: redis-userdb). When set, "
     "coturn's statistics layout is written there too: turn/realm/R/user/U/allocation/ID/status "
     "keys and PUBLISHes of status, traffic and total_traffic"},
    {"usage-stream", CFG_STR, OFF(usage_stream), "turn/usage", 0, 0, NULL, 0,
     "Redis Stream key that allocation events are appended to (XADD); empty = off (ours)"},
    {"usage-stream-maxlen", CFG_INT, OFF(usage_stream_maxlen), "100000", 1, 1000000000L, NULL, 0,
     "approximate cap of the usage stream (XADD MAXLEN ~ N) (ours)"},
    {"usage-interval", CFG_INT, OFF(usage_interval), "60", 0, 86400, NULL, 0,
     "seconds between periodic usage records of a live allocation; 0 = none (ours)"},
    {"usage-queue-max", CFG_INT, OFF(usage_queue_max), "8192", 16, 1048576, NULL, 0,
     "usage events queued per worker while Redis is slow or away; then new ones are dropped and "
     "counted (ours)"},
    {"usage-ended-users", CFG_INT, OFF(usage_ended_users), "10000", 0, 1000000, NULL, 0,
     "users per worker whose ended allocations' totals the admin usage endpoint keeps (LRU) "
     "(ours)"},
    /* coturn options that describe what uturn always does */
    {"fingerprint", CFG_BOOL, 0, NULL, 0, 0, NULL, CFG_F_NOOP,
     "coturn: FINGERPRINT is answered whenever the request had one"},
    {"lt-cred-mech", CFG_BOOL, 0, NULL, 0, 0, NULL, CFG_F_NOOP,
     "coturn: long-term credentials are always on"},
    {"no-cli", CFG_BOOL, 0, NULL, 0, 0, NULL, CFG_F_NOOP, "coturn: there is no telnet CLI"},
    {"no-loopback-peers", CFG_BOOL, 0, NULL, 0, 0, NULL, CFG_F_NOOP,
     "coturn: loopback peers are denied unless allow-loopback-peers"},
    {"no-multicast-peers", CFG_BOOL, 0, NULL, 0, 0, NULL, CFG_F_NOOP,
     "coturn: multicast peers are always denied"},
    {"no-software-attribute", CFG_BOOL, 0, NULL, 0, 0, NULL, CFG_F_NOOP,
     "coturn: SOFTWARE is off unless software-attribute"},
    {"no-stdout-log", CFG_BOOL, 0, NULL, 0, 0, NULL, CFG_F_NOOP, "coturn: see log-file"},
    {"simple-log", CFG_BOOL, 0, NULL, 0, 0, NULL, CFG_F_NOOP, "coturn: see log-file"},
};

const size_t cfg_table_len = ARRAY_SIZE(cfg_table);
_Static_assert(ARRAY_SIZE(cfg_table) <= CFG_KEYS_MAX,
               "cfg_t.origin needs room for every key: raise CFG_KEYS_MAX");

const cfg_entry_t *cfg_table_find(const char *name)
{
    for (size_t i = 0; i < cfg_table_len; i++)
        if (strcmp(cfg_table[i].name, name) == 0)
            return &cfg_table[i];
    return NULL;
}
