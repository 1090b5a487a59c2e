/*
 * test_uvwrite.c - the uv_write() interposer (server/uvwrite.h): a write that
 * fails at once still gets its callback, later, and - as libuv promises for
 * every write request - before the close callback of its handle, because
 * h2o frees the write request in that close callback.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "server/uvwrite.h"

/* Like h2o's socket: the handle and the write request in one allocation,
 * freed by the handle's close callback. */
struct sock {
    uv_pipe_t pipe;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    int *events; /* appended to: 'w' write callback, 'c' close callback */
    size_t *nevents;
};

static void on_write(uv_write_t *req, int status)
{
    struct sock *s = req->data; /* freed already if the close came first */
    assert_true(status < 0);
    s->events[(*s->nevents)++] = 'w';
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)req, (void)status;
}

static void on_close(uv_handle_t *h)
{
    struct sock *s = h->data;
    s->events[(*s->nevents)++] = 'c';
    free(s);
}

static struct sock *open_unwritable(uv_loop_t *loop, int *fds, int *events, size_t *nevents)
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    struct sock *s = calloc(1, sizeof(*s));
    s->events = events;
    s->nevents = nevents;
    assert_int_equal(uv_pipe_init(loop, &s->pipe, 0), 0);
    assert_int_equal(uv_pipe_open(&s->pipe, fds[0]), 0);
    s->pipe.data = s;
    s->wreq.data = s;
    /* After a shutdown libuv refuses writes at once (UV_EPIPE), as it does
     * after a reset. */
    assert_int_equal(uv_shutdown(&s->sreq, (uv_stream_t *)&s->pipe, on_shutdown), 0);
    return s;
}

static void write_fails(struct sock *s)
{
    uv_buf_t b = uv_buf_init("x", 1);
    assert_int_not_equal(uv_write(&s->wreq, (uv_stream_t *)&s->pipe, &b, 1, on_write), 0);
}

/* The failed write's callback comes on a later loop turn, not from inside. */
static void test_late_callback(void **state)
{
    (void)state;
    uvwrite_fix_install();
    uv_loop_t loop;
    uv_loop_init(&loop);
    int fds[2], events[4];
    size_t n = 0;
    struct sock *s = open_unwritable(&loop, fds, events, &n);
    write_fails(s);
    assert_int_equal(n, 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(n, 1);
    assert_int_equal(events[0], 'w');
    uv_close((uv_handle_t *)&s->pipe, on_close);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(n, 2);
    assert_int_equal(events[1], 'c');
    assert_int_equal(uv_loop_close(&loop), 0);
    close(fds[1]);
}

/* h2o closes a socket with a write in flight (shutdown_ssl: "libuv calls the
 * write callback after the socket is closed by uv_close") and frees the
 * write request in the close callback: the write callback must come first,
 * once. h2o does both from a callback of the loop (reading, a timeout), so
 * the close callback runs at the end of that same loop turn. */
static struct sock *in_idle;

static void write_then_close(uv_idle_t *idle)
{
    write_fails(in_idle);
    uv_close((uv_handle_t *)&in_idle->pipe, on_close);
    uv_close((uv_handle_t *)idle, NULL);
}

static void test_closed_before_callback(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    int fds[2], events[4];
    size_t n = 0;
    in_idle = open_unwritable(&loop, fds, events, &n);
    uv_idle_t idle;
    uv_idle_init(&loop, &idle);
    uv_idle_start(&idle, write_then_close);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(n, 2);
    assert_int_equal(events[0], 'w');
    assert_int_equal(events[1], 'c');
    assert_int_equal(uv_loop_close(&loop), 0);
    close(fds[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_late_callback),
        cmocka_unit_test(test_closed_before_callback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
