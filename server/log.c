/*
 * log.c - cd_log (see log.h).  The level is one atomic, set once at start
 * and read by every request thread.
 */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "text.h"

static atomic_int log_level = CD_LOG_INFO;

void cd_log_set_level(int level)
{
    atomic_store(&log_level, level);
}

bool cd_log_level_parse(const char *s, int *out)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = i;
            return true;
        }
    return false;
}

/*
 * Copies in[0..n) to out (cap bytes, NUL-terminated, cut at a whole
 * escape) with every byte a reader could mistake for something else as
 * \xHH, as nginx writes its logs: control bytes (a "\n" in a URL must not
 * start a forged log line, an ESC must not reach a terminal), DEL, the
 * backslash itself (so that an escape is never ambiguous) and bytes that
 * are not part of valid UTF-8.  Valid UTF-8 stays as it is.
 */
static void log_escape(char *out, size_t cap, const char *in, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)in[i];
        size_t seq = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 && c <= 0xEF ? 3
                     : c >= 0xC2 && c <= 0xDF ? 2 : 1;
        if (c >= 0x80 && (seq == 1 || seq > n - i || !cd_utf8_valid(in + i, seq)))
            seq = 0;    /* not valid UTF-8 here: escape this one byte */
        if (seq == 0 || c < 0x20 || c == 0x7f || c == '\\') {
            if (o + 4 >= cap)
                break;
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
            i++;
        } else {
            if (o + seq >= cap)
                break;
            memcpy(out + o, in + i, seq);
            o += seq;
            i += seq;
        }
    }
    out[o] = '\0';
}

void cd_log(int level, const char *fmt, ...)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    if (level > atomic_load(&log_level))
        return;
    /* A level out of range is logged, as the nearest one, not read past
     * the table. */
    if (level < CD_LOG_ERROR)
        level = CD_LOG_ERROR;
    if (level > CD_LOG_DEBUG)
        level = CD_LOG_DEBUG;
    char stamp[64];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, names[level]);
    char msg[2048], escaped[4 * sizeof msg];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (len < 0)
        len = 0;
    log_escape(escaped, sizeof escaped, msg, (size_t)len < sizeof msg ? (size_t)len
                                                                       : sizeof msg - 1);
    fprintf(stderr, "%s%s\n", stamp, escaped);
}
