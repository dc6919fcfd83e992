/* errbuf.h - the error-buffer convention of uturn's setup code: a function that can fail takes
 * (char *err, size_t errlen), writes one line saying what is wrong, and returns -1.
 */
#ifndef UTURN_ERRBUF_H
#define UTURN_ERRBUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

/* Format a message into err (like snprintf: truncated to errlen, always terminated when errlen
 * > 0) and return -1, so a check reads `return err_set(err, errlen, "...", ...);`. Any thread. */
__attribute__((format(printf, 3, 4))) static inline int err_set(char *err, size_t errlen,
                                                                const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

#endif
