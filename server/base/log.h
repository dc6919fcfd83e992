/* log.h - leveled, one-line-per-event logging to stderr or a file, as text or JSON.
 *
 * Any thread may log. Each event is formatted into a stack buffer and written with one write(2), so
 * lines from different workers never interleave. log_ratelimited() keeps a hostile source from
 * turning the log into an amplifier of its own.
 */
#ifndef UTURN_LOG_H
#define UTURN_LOG_H

#include <stdint.h>

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };
enum log_format { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON = 1 };

/* Configure the sink. `path` NULL or "-" or "stderr" logs to stderr. Returns 0 or -errno (the file
 * could not be opened). Call before any worker starts; later calls (log reopen) are safe. */
int log_setup(enum log_level level, enum log_format format, const char *path);
/* Change only the level (reload): the sink and format stay. */
void log_set_level(enum log_level level);
/* Close the file sink, if any. */
void log_close(void);
int log_enabled(enum log_level level);

/* Log one event. `event` is a short stable identifier ("listen", "tcp_close") that JSON output
 * keeps as its own field; the message is printf-formatted. */
void log_msg(enum log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Token bucket for rate-limited logs: at most `burst` lines, refilled at `per_sec` lines a second.
 * Owned by one thread (a worker), so it needs no lock. */
typedef struct {
    double tokens;
    uint64_t last_ms;
    unsigned suppressed;
} log_limit_t;

/* 1 when a line may be logged now (and counts it), 0 when it must be suppressed. */
int log_limit_take(log_limit_t *lim, uint64_t now_ms, double per_sec, double burst);

#define LOGE(ev, ...) log_msg(LOG_ERROR, ev, __VA_ARGS__)
#define LOGW(ev, ...) log_msg(LOG_WARN, ev, __VA_ARGS__)
#define LOGI(ev, ...) log_msg(LOG_INFO, ev, __VA_ARGS__)
#define LOGD(ev, ...)                                                                              \
    do {                                                                                           \
        if (log_enabled(LOG_DEBUG))                                                                \
            log_msg(LOG_DEBUG, ev, __VA_ARGS__);                                                   \
    } while (0)

#endif
