/*
 * log.c - logfmt lines on stderr; see log.h.
 */
#include "lib/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "lib/hb.h"

static _Atomic int current_level = HB_LOG_INFO;

static const char *const NAMES[] = {"debug", "info", "warn", "error"};

void log_set_level(enum log_level level)
{
    atomic_store(&current_level, (int)level);
}

int log_enabled(enum log_level level)
{
    return (int)level >= atomic_load(&current_level);
}

const char *log_level_name(enum log_level level)
{
    return (unsigned)level < HB_ARRAY_SIZE(NAMES) ? NAMES[level] : "info";
}

int log_parse_level(const char *s, enum log_level *out)
{
    for (size_t i = 0; i < HB_ARRAY_SIZE(NAMES); i++) {
        if (strcasecmp(s, NAMES[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *out = HB_LOG_WARN;
        return 0;
    }
    return HB_EINVAL;
}

char *log_quote(char *out, size_t outsz, const char *s, size_t len)
{
    size_t o = 0;
    int needs = len == 0;
    for (size_t i = 0; i < len && !needs; i++)
        needs = s[i] == ' ' || s[i] == '"' || s[i] == '=' || (unsigned char)s[i] < 0x20;
    if (outsz < 3) {
        if (outsz > 0)
            out[0] = '\0';
        return out;
    }
    if (!needs) {
        o = len < outsz - 1 ? len : outsz - 1;
        memcpy(out, s, o);
        out[o] = '\0';
        return out;
    }
    out[o++] = '"';
    for (size_t i = 0; i < len && o + 3 < outsz; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            out[o++] = '?';
        } else {
            out[o++] = (char)c;
        }
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}

void log_write(enum log_level level, const char *msg, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;

    char line[2048];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    char qmsg[512];
    int n = snprintf(line, sizeof(line), "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03dZ level=%s msg=%s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (int)(tv.tv_usec / 1000), log_level_name(level),
                     log_quote(qmsg, sizeof(qmsg), msg, strlen(msg)));
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
    if (fmt != NULL && fmt[0] != '\0' && len + 2 < sizeof(line)) {
        line[len++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + len, sizeof(line) - len, fmt, ap);
        va_end(ap);
        if (m > 0)
            len += (size_t)m < sizeof(line) - len ? (size_t)m : sizeof(line) - len - 1;
        else
            len--; /* no fields after all ("%s", ""): no trailing space */
    }
    if (len >= sizeof(line) - 1)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

bool log_throttle_pass(struct log_throttle *t, uint64_t now_ms, uint64_t interval_ms,
                       uint64_t *held)
{
    if (t->last_ms != 0 && now_ms - t->last_ms < interval_ms) {
        t->held++;
        return false;
    }
    *held = t->held;
    t->held = 0;
    t->last_ms = now_ms == 0 ? 1 : now_ms;
    return true;
}
