/*
 * uvwrite.h - a fix for libh2o 2.2.5 on libuv: a write that fails at once.
 *
 * When a client resets a connection, libuv marks the stream unwritable, and
 * h2o's TLS layer then writes its close_notify: uv_write() returns UV_EPIPE
 * at once and never calls the callback. h2o 2.2.5 ignores that return value
 * and waits for the callback forever, so the connection is never closed: a
 * file descriptor leaks per reset TLS connection (anyone can exhaust them),
 * and a graceful shutdown waits out its timeout.
 *
 * hubbub's binary therefore defines uv_write() itself: it calls libuv's and,
 * when that fails at once, calls the callback with the error on the next
 * loop iteration, as libuv does for errors found later. If the stream is
 * closed first, the callback comes just before the stream's close callback
 * (uv_close() is wrapped for that), as libuv calls those of writes still
 * queued: h2o frees the write request in its close callback. libh2o's calls
 * bind to these definitions because the executable comes first in symbol
 * lookup.
 */
#ifndef HB_UVWRITE_H
#define HB_UVWRITE_H

/* Does nothing; calling it links this module into the binary (a static
 * library member is only linked when something refers to it). */
void uvwrite_fix_install(void);

#endif
