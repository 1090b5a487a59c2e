/*
 * ceiling.c - the benchmark's ceiling: a bare libh2o server on libuv that
 * answers every request 200 with a tiny JSON body and does nothing else.
 *
 *   ceiling HOST PORT     (PORT 0 picks a free one)
 *
 * prints "port=N" on standard output once it listens, then serves until it is
 * killed. It is set up as server/http.c sets up hubbub's listener (one loop,
 * one h2o context, TCP_NODELAY, backlog 1024, 4 MiB request bodies, which
 * h2o buffers whole before on_req as it does for hubbub), so the same wrk load
 * against both shows what hubbub's own work costs. tests/bench/run builds it.
 */
#include <h2o.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define BODY_LIMIT (4 * 1024 * 1024)

static h2o_globalconf_t config;
static h2o_context_t ctx;
static h2o_accept_ctx_t accept_ctx;

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    (void)self;
    static const char body[] = "{\"status\":\"ok\"}";
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("application/json"));
    req->res.content_length = sizeof(body) - 1;
    h2o_send_inline(req, body, sizeof(body) - 1);
    return 0;
}

static void on_close(uv_handle_t *handle)
{
    free(handle);
}

static void on_accept(uv_stream_t *listener, int status)
{
    if (status != 0)
        return;
    uv_tcp_t *conn = malloc(sizeof(*conn));
    if (conn == NULL)
        abort();
    uv_tcp_init(listener->loop, conn);
    if (uv_accept(listener, (uv_stream_t *)conn) != 0) {
        uv_close((uv_handle_t *)conn, on_close);
        return;
    }
    uv_tcp_nodelay(conn, 1);
    h2o_accept(&accept_ctx, h2o_uv_socket_create((uv_stream_t *)conn, on_close));
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: ceiling HOST PORT\n");
        return 2;
    }
    uv_loop_t *loop = uv_default_loop();
    h2o_config_init(&config);
    config.server_name = h2o_iovec_init(H2O_STRLIT("ceiling"));
    config.max_request_entity_size = BODY_LIMIT;
    h2o_hostconf_t *host =
        h2o_config_register_host(&config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    h2o_create_handler(path, sizeof(h2o_handler_t))->on_req = on_req;
    h2o_context_init(&ctx, loop, &config);
    accept_ctx.ctx = &ctx;
    accept_ctx.hosts = config.hosts;

    struct sockaddr_in addr;
    uv_tcp_t listener;
    char *end;
    long port = strtol(argv[2], &end, 10);
    if (*end != '\0' || end == argv[2] || port < 0 || port > 65535) {
        fprintf(stderr, "ceiling: bad port '%s'\n", argv[2]);
        return 2;
    }
    int rc;
    uv_tcp_init(loop, &listener);
    if ((rc = uv_ip4_addr(argv[1], (int)port, &addr)) != 0 ||
        (rc = uv_tcp_bind(&listener, (struct sockaddr *)&addr, 0)) != 0 ||
        (rc = uv_listen((uv_stream_t *)&listener, 1024, on_accept)) != 0) {
        fprintf(stderr, "ceiling: cannot listen on %s:%s: %s\n", argv[1], argv[2], uv_strerror(rc));
        return 1;
    }
    struct sockaddr_in bound;
    int len = sizeof(bound);
    uv_tcp_getsockname(&listener, (struct sockaddr *)&bound, &len);
    printf("port=%d\n", ntohs(bound.sin_port));
    fflush(stdout);
    return uv_run(loop, UV_RUN_DEFAULT);
}
