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

/* A failed write's callback, waiting for the next loop iteration. */
struct late_callback {
    uv_timer_t timer;
    uv_write_t *req;
    uv_write_cb cb;
    int status;
};

void uvwrite_fix_install(void)
{
}

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_timer(uv_timer_t *t)
{
    struct late_callback *late = t->data;
    late->cb(late->req, late->status);
    uv_close((uv_handle_t *)&late->timer, on_closed);
}

int uv_write(uv_write_t *req, uv_stream_t *handle, const uv_buf_t bufs[], unsigned int nbufs,
             uv_write_cb cb)
{
    static uv_write_fn real;
    if (real == NULL) {
        /* POSIX allows converting dlsym's result to a function pointer. */
        *(void **)&real = dlsym(RTLD_NEXT, "uv_write");
        if (real == NULL)
            abort();
    }
    int rc = real(req, handle, bufs, nbufs, cb);
    if (rc == 0 || cb == NULL)
        return rc;
    /* Called from inside the writer, the callback could free what the
     * writer is still using: report the failure as libuv reports late ones. */
    struct late_callback *late = xmalloc(sizeof(*late));
    late->req = req;
    late->cb = cb;
    late->status = rc;
    uv_timer_init(handle->loop, &late->timer);
    late->timer.data = late;
    uv_timer_start(&late->timer, on_timer, 0, 0);
    return rc;
}
