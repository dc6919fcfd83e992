/* log.c - the logging sink behind log.h.
 *
 * Lines are built in a stack buffer and emitted with a single write(2) (O_APPEND for files), which
 * keeps concurrent lines whole without a lock on the packet path. JSON output escapes the message
 * itself since messages may quote peer-supplied text (usernames, realms).
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static _Atomic int log_level_cur = LOG_INFO;
static _Atomic int log_format_cur = LOG_FORMAT_TEXT;
static _Atomic int log_fd = 2;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int log_setup(enum log_level level, enum log_format format, const char *path)
{
    int fd = 2;
    if (path && *path && strcmp(path, "-") != 0 && strcmp(path, "stderr") != 0) {
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        if (fd < 0)
            return -errno;
    }
    int old = atomic_exchange(&log_fd, fd);
    if (old > 2)
        close(old);
    atomic_store(&log_level_cur, (int)level);
    atomic_store(&log_format_cur, (int)format);
    return 0;
}

void log_set_level(enum log_level level) { atomic_store(&log_level_cur, (int)level); }

void log_close(void)
{
    int old = atomic_exchange(&log_fd, 2);
    if (old > 2)
        close(old);
}

int log_enabled(enum log_level level)
{
    return (int)level <= atomic_load_explicit(&log_level_cur, memory_order_relaxed);
}

/* Append `s` to buf as JSON string content; returns the new length (bounded by cap - 1). */
static size_t json_escape(char *buf, size_t len, size_t cap, const char *s)
{
    for (; *s && len + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[len++] = '\\';
            buf[len++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            len += (size_t)snprintf(buf + len, cap - len, "\\u%04x", c);
        } else {
            buf[len++] = (char)c;
        }
    }
    return len;
}

/* Peer-supplied bytes can reach a message: keep text lines one line by replacing controls. */
static void sanitize_text(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = '?';
}

void log_msg(enum log_level level, const char *event, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[40];
    size_t tl = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + tl, sizeof(ts) - tl, ".%03ldZ", (long)(tv.tv_usec / 1000));

    char line[1400];
    size_t len;
    if (atomic_load_explicit(&log_format_cur, memory_order_relaxed) == LOG_FORMAT_JSON) {
        len = (size_t)snprintf(line, sizeof(line), "{\"ts\":\"%s\",\"level\":\"%s\",\"event\":\"",
                               ts, level_names[level]);
        len = json_escape(line, len, sizeof(line), event);
        len += (size_t)snprintf(line + len, sizeof(line) - len, "\",\"msg\":\"");
        len = json_escape(line, len, sizeof(line), msg);
        if (len + 3 >= sizeof(line))
            len = sizeof(line) - 3;
        line[len++] = '"';
        line[len++] = '}';
    } else {
        sanitize_text(msg);
        len = (size_t)snprintf(line, sizeof(line), "%s %-5s %s: %s", ts, level_names[level], event,
                               msg);
        if (len > sizeof(line) - 2)
            len = sizeof(line) - 2;
    }
    line[len++] = '\n';
    ssize_t w = write(atomic_load_explicit(&log_fd, memory_order_relaxed), line, len);
    (void)w; /* nowhere left to report a failed log write */
}

int log_limit_take(log_limit_t *lim, uint64_t now_ms, double per_sec, double burst)
{
    if (lim->last_ms == 0) {
        lim->tokens = burst;
    } else if (now_ms > lim->last_ms) {
        lim->tokens += (double)(now_ms - lim->last_ms) * per_sec / 1000.0;
        if (lim->tokens > burst)
            lim->tokens = burst;
    }
    lim->last_ms = now_ms;
    if (lim->tokens >= 1.0) {
        lim->tokens -= 1.0;
        return 1;
    }
    lim->suppressed++;
    return 0;
}
