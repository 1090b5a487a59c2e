/*
 * log.h - one logfmt line per event on stderr:
 *
 *   ts=2026-11-26T22:19:14.123Z level=info msg="listening" addr=127.0.0.1:8080
 *
 * msg is a constant sentence; the remaining fields come from a printf format
 * of "key=value" pairs. Values that may hold spaces or quotes go through
 * log_quote(). Nothing that is a secret, a token or a payload body is ever
 * passed here. Lines are written with one write(2) so threads never interleave
 * within a line. The level is process-wide, settable from any thread.
 */
#ifndef HB_LOG_H
#define HB_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { HB_LOG_DEBUG = 0, HB_LOG_INFO, HB_LOG_WARN, HB_LOG_ERROR };

void log_set_level(enum log_level level);
int log_parse_level(const char *s, enum log_level *out); /* 0 or HB_EINVAL */
const char *log_level_name(enum log_level level);
int log_enabled(enum log_level level);

void log_write(enum log_level level, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes s as a logfmt value into out (quoted and escaped when needed,
 * truncated to fit); returns out. */
char *log_quote(char *out, size_t outsz, const char *s, size_t len);

/* Lets a repeated warning through at most once per interval, counting what
 * it held back, so that a flood of bad requests cannot fill the disk.
 * Not thread-safe: one per thread (the loop's live in struct server). */
struct log_throttle {
    uint64_t last_ms;
    uint64_t held;
};

/* true when a line may be written now; *held gets how many were held back
 * since the last one. */
bool log_throttle_pass(struct log_throttle *t, uint64_t now_ms, uint64_t interval_ms,
                       uint64_t *held);

#define log_debug(msg, ...) log_write(HB_LOG_DEBUG, msg, __VA_ARGS__)
#define log_info(msg, ...) log_write(HB_LOG_INFO, msg, __VA_ARGS__)
#define log_warn(msg, ...) log_write(HB_LOG_WARN, msg, __VA_ARGS__)
#define log_error(msg, ...) log_write(HB_LOG_ERROR, msg, __VA_ARGS__)

#endif
