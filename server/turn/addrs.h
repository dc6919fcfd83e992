/* addrs.h - the addresses the engine hands out: relay IPs (relay-ip, or the listening IPs) with
 * their external-ip mapping (what XOR-RELAYED-ADDRESS announces), the alternate servers of a 300
 * Try Alternate (RFC 8489 §10, round-robin), and RFC 5780's table of listening addresses A1/A2 x
 * P1/P2 for CHANGE-REQUEST and OTHER-ADDRESS.
 *
 * Built once at start from a validated config, then read-only (the round-robin counter is atomic):
 * any thread.
 */
#ifndef UTURN_ADDRS_H
#define UTURN_ADDRS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "cfg.h"
#include "sockaddr_util.h"

#define ADDRS_MAX_RELAY_IPS 64
#define ADDRS_TRANSPORTS 4 /* enum turn_transport: udp, tcp, tls, dtls */

typedef struct {
    sa_any_t addr;      /* bind here */
    sa_any_t announced; /* report this (external-ip mapping), port filled per allocation */
} addrs_relay_ip_t;

typedef struct {
    const cfg_t *cfg; /* as at start */
    addrs_relay_ip_t relay4[ADDRS_MAX_RELAY_IPS];
    int nrelay4;
    addrs_relay_ip_t relay6[ADDRS_MAX_RELAY_IPS];
    int nrelay6;
    sa_any_t *alternates; /* alternate-server, in order; picked round-robin */
    size_t nalternates;
    sa_any_t *tls_alternates; /* tls-alternate-server */
    size_t ntls_alternates;
    _Atomic unsigned alternate_next;
    /* RFC 5780 (rfc5780 on): per family ([0] IPv4, [1] IPv6) the first two listening IPs A1, A2
     * (port 0), when that family has two; and the ports P1 (listening-port), P2 (alt). */
    sa_any_t rfc5780_ip[2][2];
    int rfc5780_family_ok[2];
    uint16_t rfc5780_port[2];
    /* The fleet's alternates (addrs_fleet_set): per client family ([0] IPv4, [1] IPv6) and
     * transport (enum turn_transport) the live node with the most headroom; tried before the
     * static lists. Under fleet_lock, which only a 300 and the fleet's period take. */
    pthread_mutex_t fleet_lock;
    bool fleet_lock_ready;
    sa_any_t fleet_alt[2][ADDRS_TRANSPORTS];
    bool fleet_has[2][ADDRS_TRANSPORTS];
} addrs_t;

/* Build from a validated config (which must outlive a) and the listening addresses (relay IPs
 * default to the ones that are not wildcards). Returns 0 or -1 with a message naming the key at
 * fault; addrs_close frees what was built either way. */
int addrs_init(addrs_t *a, const cfg_t *cfg, const struct sockaddr_storage *listen, size_t nlisten,
               char *err, size_t errlen);
void addrs_close(addrs_t *a);

/* The next alternate server (round-robin) for a client over TLS/DTLS (`secure`) or not, or NULL
 * when none is configured. */
const struct sockaddr *addrs_alternate(addrs_t *a, int secure);

/* Replace the fleet's alternates with alt[family][transport] where has[family][transport] (all
 * false: none, the static lists serve again). Called by the fleet (server/fleet) after each
 * registry read; the engine never reaches the fleet itself. Any thread. */
void addrs_fleet_set(addrs_t *a, const sa_any_t alt[2][ADDRS_TRANSPORTS],
                     const bool has[2][ADDRS_TRANSPORTS]);
/* The fleet's alternate for a client of `family` (AF_INET, AF_INET6) over `transport` into *out:
 * 0, or -1 when the fleet named none. Any thread. */
int addrs_fleet_alternate(addrs_t *a, int family, int transport, sa_any_t *out);

/* RFC 5780 §6.1 for a Binding request that arrived on `local` (Da:Dp): into `from` the address to
 * answer from for the CHANGE-REQUEST flags (Ca instead of Da with change_ip, Cp instead of Dp with
 * change_port), into `other` OTHER-ADDRESS (Ca:Cp). Returns 0, or -1 when rfc5780 is off or `local`
 * is not one of the four A x P addresses: the usage is then unsupported on that address (no
 * OTHER-ADDRESS, 420 for CHANGE-REQUEST). Pure lookup; any thread. */
int addrs_rfc5780(const addrs_t *a, const struct sockaddr *local, int change_ip, int change_port,
                  sa_any_t *from, sa_any_t *other);

#endif
