/*
 * uvwrite.c - see uvwrite.h.
 */
#include "server/uvwrite.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <uv.h>

#include "lib/hb.h"

typedef int (*uv_write_fn)(uv_write_t *, uv_stream_t *, const uv_buf_t[], unsigned int,
                           uv_write_cb);
typedef void (*uv_close_fn)(uv_handle_t *, uv_close_cb);

/* A failed write's callback, waiting for the next loop iteration. */
struct late_callback {
    uv_timer_t timer;
    uv_write_t *req;
    uv_stream_t *stream;
    uv_write_cb cb;
    int status;
    struct late_callback *next;
};

/* A stream closed while one of its callbacks was waiting, and the close
 * callback it was given. */
struct closing {
    uv_handle_t *handle;
    uv_close_cb cb;
    struct closing *next;
};

/* Loops are used by one thread each, and so are these lists. */
static _Thread_local struct late_callback *waiting;
static _Thread_local struct closing *closing;

void uvwrite_fix_install(void)
{
}

static void *next_symbol(const char *name)
{
    void *p = dlsym(RTLD_NEXT, name);
    if (p == NULL)
        abort();
    return p;
}

static void real_close(uv_handle_t *handle, uv_close_cb cb)
{
    static uv_close_fn real;
    if (real == NULL)
        *(void **)&real = next_symbol("uv_close"); /* POSIX allows the conversion */
    real(handle, cb);
}

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

/* Takes late off the waiting list and calls its callback. */
static void call_late(struct late_callback *late)
{
    for (struct late_callback **p = &waiting; *p != NULL; p = &(*p)->next) {
        if (*p == late) {
            *p = late->next;
            break;
        }
    }
    uv_timer_stop(&late->timer);
    real_close((uv_handle_t *)&late->timer, on_closed);
    late->cb(late->req, late->status);
}

static void on_timer(uv_timer_t *t)
{
    call_late(t->data);
}

static struct late_callback *waiting_on(const uv_handle_t *handle)
{
    for (struct late_callback *l = waiting; l != NULL; l = l->next)
        if ((const uv_handle_t *)l->stream == handle)
            return l;
    return NULL;
}

/* The stream is closed: as libuv does with the writes still queued, call
 * the waiting callbacks before the close callback, which may free their
 * requests (h2o's does). */
static void on_stream_closed(uv_handle_t *handle)
{
    struct late_callback *late;
    while ((late = waiting_on(handle)) != NULL)
        call_late(late);
    struct closing **p = &closing;
    while ((*p)->handle != handle)
        p = &(*p)->next;
    struct closing *c = *p;
    *p = c->next;
    uv_close_cb cb = c->cb;
    free(c);
    if (cb != NULL)
        cb(handle);
}

void uv_close(uv_handle_t *handle, uv_close_cb cb)
{
    if (waiting_on(handle) == NULL) {
        real_close(handle, cb);
        return;
    }
    struct closing *c = xmalloc(sizeof(*c));
    c->handle = handle;
    c->cb = cb;
    c->next = closing;
    closing = c;
    real_close(handle, on_stream_closed);
}

int uv_write(uv_write_t *req, uv_stream_t *handle, const uv_buf_t bufs[], unsigned int nbufs,
             uv_write_cb cb)
{
    static uv_write_fn real;
    if (real == NULL)
        *(void **)&real = next_symbol("uv_write");
    int rc = real(req, handle, bufs, nbufs, cb);
    /* A stream already closing gets no callback, as from libuv: the one it
     * was closed with could not be made to wait for it. */
    if (rc == 0 || cb == NULL || uv_is_closing((uv_handle_t *)handle))
        return rc;
    /* Called from inside the writer, the callback could free what the
     * writer is still using: report the failure as libuv reports late ones,
     * on the next loop iteration or, when the stream is closed first, just
     * before its close callback. */
    struct late_callback *late = xmalloc(sizeof(*late));
    late->req = req;
    late->stream = handle;
    late->cb = cb;
    late->status = rc;
    late->next = waiting;
    waiting = late;
    uv_timer_init(handle->loop, &late->timer);
    late->timer.data = late;
    uv_timer_start(&late->timer, on_timer, 0, 0);
    return rc;
}
