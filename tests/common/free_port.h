/* free_port.h - a loopback port for a test's own listener, chosen where nothing else takes it.
 *
 * Binding to port 0 and closing hands back an *ephemeral* port, and until the test's listener
 * binds it any connect() on the machine (the server's own Redis connections, a client) may take
 * the same port as its local end: bind then fails with EADDRINUSE. So the port comes from below
 * the kernel's ephemeral range (net.ipv4.ip_local_port_range), where only explicit binds go, and
 * below every relay range the tests configure (40000 and up). */
#ifndef UTURN_TEST_FREE_PORT_H
#define UTURN_TEST_FREE_PORT_H

/* A port free on 127.0.0.1 for both TCP and UDP right now, in [20000, ephemeral low - 1] (random
 * start, so parallel tests rarely pick the same one). Falls back to an ephemeral port when that
 * range is empty. -1 when none is found. */
int test_free_port(void);

#endif
