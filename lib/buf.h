/*
 * buf.h - a growable byte buffer.
 *
 * The buffer itself has no cap: every caller feeds it from input that is
 * already bounded (the request body limit, a row of a result), and says so.
 * data is always NUL-terminated after a successful append, so text built in a
 * buf can be handed to C string functions; len excludes that NUL.
 */
#ifndef HB_BUF_H
#define HB_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
    char *data;
    size_t len;
    size_t cap;
};

void buf_init(struct buf *b);
void buf_dispose(struct buf *b);
void buf_reset(struct buf *b); /* len = 0, keeps the allocation */
void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *p, size_t n);
void buf_puts(struct buf *b, const char *s);
void buf_putc(struct buf *b, char c);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(struct buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
char *buf_steal(struct buf *b); /* returns data (caller frees), leaves b empty */

#endif
