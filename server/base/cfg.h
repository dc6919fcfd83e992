/* cfg.h - uturnd's configuration: one table drives the file parser, the command line, --help and
 * the config dump.
 *
 * File syntax: `key = value`, `key=value`, `key value` or a bare `key` for booleans; `#` starts a
 * comment. Option names follow coturn's turnserver.conf where the meaning is the same, so the
 * common lines of an existing file work unchanged. Every file key is also `--key value` /
 * `--key=value` on the command line. A cfg_t is built once, validated, and then only read (handlers
 * get `const cfg_t *`).
 */
#ifndef UTURN_CFG_H
#define UTURN_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef struct {
    char **v;
    char **where; /* v[i] came from where[i]: "FILE:LINE" or "command line" */
    size_t n;
} cfg_list_t;

/* Room for the origin of every key of the table (a static assert in cfg_table.c checks it). */
#define CFG_KEYS_MAX 192

typedef struct cfg {
    /* listeners */
    cfg_list_t listening_ip;
    int listening_port;
    int tls_listening_port;
    bool no_udp, no_tcp, no_tls, no_dtls;
    bool rfc5780;           /* RFC 5780 NAT behaviour discovery (needs two listening IPs) */
    int alt_listening_port; /* its second port; 0: listening-port + 1 */
    /* relay */
    cfg_list_t relay_ip;
    cfg_list_t external_ip;
    int min_port, max_port;
    bool no_tcp_relay, no_udp_relay;
    int relay_threads; /* 0: one worker per usable core */
    /* auth */
    char *realm;
    char *server_name;
    cfg_list_t user;
    bool use_auth_secret;
    cfg_list_t static_auth_secret;
    char *redis_userdb;
    int stale_nonce;
    int max_allocate_lifetime;
    char *nonce_secret;
    char *node_id; /* the fleet registry's name for this node; NULL: the host name */
    /* Not a key: the nonce secret the fleet agreed on in Redis (server/fleet), set by the
     * composition root before server_start when nonce-secret is unset; "" when none. Used as
     * nonce-secret would be. */
    char nonce_agreed[65];
    bool userhash;
    int redis_pending_per_ip, redis_pending_max, redis_cache_users, redis_cache_unknown;
    /* TLS */
    char *cert, *pkey, *cipher_list;
    /* peer policy and quotas */
    bool allow_loopback_peers, allow_private_peers;
    int max_permissions, max_channels;
    bool strict_channel_numbers;
    cfg_list_t denied_peer_ip, allowed_peer_ip;
    int user_quota, total_quota;
    bool cluster_quota; /* user-quota counted fleet-wide through redis-userdb */
    int max_peer_connections, user_peer_conn_quota; /* RFC 6062 peer data connections */
    int reservation_lifetime; /* seconds an EVEN-PORT R=1 reservation is held */
    int permission_lifetime;  /* testing only: RFC 8656 §9 fixes 300 s */
    int channel_lifetime;     /* testing only: RFC 8656 §12 fixes 600 s */
    long max_bps;
    /* streams */
    int tcp_frame_timeout;
    int tcp_idle_timeout;
    int max_tcp_per_ip;
    int max_tcp_connections; /* all workers together; 0: half of RLIMIT_NOFILE */
    int max_dtls_per_ip, max_dtls_sessions;
    int max_unauth_bps;
    /* misc */
    bool software_attribute;
    char *log_file, *pidfile;
    int log_level, log_format;
    int kernel_offload;     /* enum cfg_kernel_offload */
    int kernel_offload_xdp; /* enum cfg_kernel_offload: XDP in front of TC (kpath_xdp.c) */
    char *admin_listen;
    cfg_list_t admin_token;
    int admin_request_timeout, admin_connections_max, admin_connections_per_ip;
    int admin_history; /* samples (1 s each) kept for /api/v1/history */
    cfg_list_t alternate_server, tls_alternate_server;
    char *alternate_domain;
    bool drain_exit;
    /* usage ledger (turn/usage.h, core/usage_writer.c) */
    char *redis_statsdb; /* where the usage stream goes; NULL: redis-userdb */
    char *usage_stream;  /* Redis Stream key; "" or NULL: no stream */
    long usage_stream_maxlen;
    int usage_interval;    /* seconds between periodic usage records; 0: none */
    int usage_queue_max;   /* events queued per worker while Redis is slow or away */
    int usage_ended_users; /* users whose ended allocations' totals are kept, per worker */
    /* Where each scalar key was last set ("FILE:LINE", "command line"), by table index; NULL:
     * its default. Lists keep theirs per value. Read with cfg_where. */
    char *origin[CFG_KEYS_MAX];
} cfg_t;

/* What the command line asked for besides settings. */
typedef struct {
    const char *config_path; /* -c FILE, or NULL */
    bool help, version, check_config, kernel_offload_sweep;
} cfg_cli_t;

/* kernel-offload: the kernel fast path (server/kpath). Values are cfg_table.c's names' indexes. */
enum cfg_kernel_offload { CFG_KOFFLOAD_OFF = 0, CFG_KOFFLOAD_AUTO = 1, CFG_KOFFLOAD_ON = 2 };

/* One row of the table (cfg_table.c). */
enum cfg_type { CFG_BOOL, CFG_INT, CFG_STR, CFG_LIST, CFG_ENUM };
enum cfg_flags {
    CFG_F_RELOAD = 1 << 0, /* may change on reload (SIGHUP / admin) */
    CFG_F_SECRET = 1 << 1, /* masked in dumps */
    CFG_F_LATER = 1 << 2,  /* accepted by name, but setting it fails: "not supported yet" */
    CFG_F_NOOP = 1 << 3,   /* coturn option whose behaviour is always on here: accepted, ignored */
};
typedef struct {
    const char *name;
    enum cfg_type type;
    size_t offset;                 /* into cfg_t; unused for CFG_F_NOOP */
    const char *def;               /* default as text (NULL: none) */
    long min, max;                 /* CFG_INT bounds */
    const char *const *enum_names; /* CFG_ENUM: NULL-terminated, value = index */
    unsigned flags;
    const char *help;
} cfg_entry_t;

extern const cfg_entry_t cfg_table[];
extern const size_t cfg_table_len;
const cfg_entry_t *cfg_table_find(const char *name);

/* Fill `c` with the defaults. */
void cfg_init(cfg_t *c);
void cfg_free(cfg_t *c);

/* Set one key from text. `value` is NULL for a bare key (booleans). `where` names the origin for
 * messages ("FILE:LINE" or "command line"). Returns 0, or -1 with a message naming the key, the
 * origin and the reason in `err`. */
int cfg_set(cfg_t *c, const char *key, const char *value, const char *where, char *err,
            size_t errlen);

/* Parse a whole file into `c`. Returns 0 or -1 with `err` set (first error only). */
int cfg_parse_file(cfg_t *c, const char *path, char *err, size_t errlen);
/* The same from an open stream; `path` names it in messages. */
int cfg_parse_stream(cfg_t *c, FILE *f, const char *path, char *err, size_t errlen);

/* Parse argv. First pass (`cfg_cli_scan`) finds -c/--help/--version/--check-config so the file can
 * be read before the command line overrides it (`cfg_apply_args`): scalars on the command line win
 * over the file, repeatable keys add to it. Both return 0 or -1 with `err` set. */
int cfg_cli_scan(int argc, char **argv, cfg_cli_t *cli, char *err, size_t errlen);
int cfg_apply_args(cfg_t *c, int argc, char **argv, char *err, size_t errlen);

/* Cross-field checks after everything is set (ports, addresses, ranges, admin tokens). 0 or -1
 * with `err` naming FILE:LINE and the key. The checks that need to build something (users, peer
 * ranges, Redis, alternates, certificates) are shared_init's, which --check-config runs too
 * (server_check). */
int cfg_validate(const cfg_t *c, char *err, size_t errlen);

/* A node-id: 1 to CFG_NODE_ID_MAX of A-Z a-z 0-9 . _ - */
#define CFG_NODE_ID_MAX 64
#define CFG_NODE_ID_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"
/* This node's name in the fleet (its registry entry, its quota hash, its usage events): node-id,
 * or else the host name with every character a node-id may not hold made '-' and cut to
 * CFG_NODE_ID_MAX ("uturn" when there is no host name). Any thread. */
void cfg_node_id(const cfg_t *c, char out[CFG_NODE_ID_MAX + 1]);

/* Where a setting came from, for messages: "FILE:LINE", "command line" or "default". For a
 * list key, `i` picks the value; scalars ignore it. */
const char *cfg_where(const cfg_t *c, const char *key, size_t i);
/* Format "WHERE: 'key': reason" into err (WHERE from cfg_where) and return -1. Every check that
 * refuses a setting, at --check-config, at start or at reload, words its message this way. */
int cfg_fail(const cfg_t *c, const char *key, size_t i, char *err, size_t errlen, const char *fmt,
             ...) __attribute__((format(printf, 6, 7)));

/* The shortest admin-token accepted (ro: prefix not counted). */
#define CFG_ADMIN_TOKEN_MIN 16

/* RFC 5780's second port: alt-listening-port, or listening-port + 1 when that is 0. */
int cfg_alt_listening_port(const cfg_t *c);

/* The whole load: defaults, file, command line, validate. */
int cfg_load(cfg_t *c, int argc, char **argv, cfg_cli_t *cli, char *err, size_t errlen);

/* --help text generated from the table. */
void cfg_print_help(FILE *out, const char *prog);
/* Effective settings as `key = value` lines (secrets masked). */
void cfg_dump(const cfg_t *c, FILE *out);

/* One setting's value as text (lists joined with ", "), for dumps and reload reports. */
void cfg_format_value(const cfg_t *c, const cfg_entry_t *e, char *out, size_t cap);
/* Give `dst` the values of `src` for every key that is not CFG_F_RELOAD (deep copies). 0 or
 * -ENOMEM. */
int cfg_keep_unreloadable(cfg_t *dst, const cfg_t *src);

/* Worker count: relay-threads, or the CPUs this process may run on (affinity and cgroup aware). */
int cfg_worker_count(const cfg_t *c);

#endif
