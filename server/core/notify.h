/* notify.h - tell the service manager where the daemon is in its life (systemd's sd_notify
 * protocol, Type=notify): READY=1 once every listener is bound, RELOADING=1 and READY=1 around a
 * SIGHUP reload, STOPPING=1 when the orderly stop begins.
 *
 * Without $NOTIFY_SOCKET (not started by systemd) every call does nothing. Built with libsystemd
 * (HAVE_SYSTEMD) the messages go through sd_notify; without it, through a small writer of our own
 * that speaks the same datagram protocol. Any thread; the calls never block for long and never
 * fail the caller: a manager that does not listen is not the daemon's problem.
 */
#ifndef UTURN_NOTIFY_H
#define UTURN_NOTIFY_H

/* Send one notification: newline-separated KEY=VALUE assignments ("READY=1\nSTATUS=..."). Returns
 * 1 when sent, 0 when there is no $NOTIFY_SOCKET, or -errno (logged by nobody: callers ignore it).
 */
int notify_send(const char *state);
/* The built-in writer (notify_send without libsystemd): one datagram with `state` to the socket at
 * `path` ("/..." a file, "@..." an abstract name). Returns 1 when sent, 0 when `path` is NULL or
 * empty, -EINVAL for another form or a name too long for sockaddr_un, or -errno from sendto. */
int notify_send_socket(const char *path, const char *state);
/* READY=1 with a STATUS= line (`status` may be NULL). */
void notify_ready(const char *status);
/* RELOADING=1 with MONOTONIC_USEC= (CLOCK_MONOTONIC now), as systemd 253+ asks for
 * Type=notify-reload; older managers ignore the extra field. Follow with notify_ready. */
void notify_reloading(void);
/* STOPPING=1. */
void notify_stopping(void);

#endif
