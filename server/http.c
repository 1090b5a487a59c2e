/*
 * http.c - listener, routing and answering helpers on libh2o; see http.h.
 *
 * h2o gets a single path ("/") with one handler that dispatches on our own
 * route table: exact and prefix routes in the order added, and a JSON 404
 * for the rest, so every answer hubbub gives has the same shape.
 */
#include "server/http.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/time.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api/json.h"
#include "lib/buf.h"
#include "lib/hb.h"
#include "lib/hex.h"
#include "lib/log.h"
#include "server/config.h"

#define MAX_ROUTES 32
/* No route of ours needs a long URL; Meta's handshake is well under 1 KB. */
#define MAX_URI_LEN 8192

struct route {
    char *prefix;
    size_t len;
    bool exact;
    http_handler_fn fn;
    void *ctx;
};

struct dispatch_handler {
    h2o_handler_t super;
    struct http *http;
};

/* One listening socket. TLS ones have their own accept context, whose
 * SSL_CTX can be replaced while connections that use the old one go on. */
struct listener {
    uv_tcp_t tcp;
    struct http *http;
    h2o_accept_ctx_t accept_ctx;
    bool open;
    bool client_verified; /* the handshake checked a client certificate */
    struct sockaddr_storage bound;
};

struct http {
    uv_loop_t *loop;
    h2o_globalconf_t config;
    h2o_context_t ctx;
    bool has_ctx;
    struct listener listeners[HTTP_MAX_LISTENERS];
    size_t nlisteners;
    size_t nconns;
    struct conn *conns; /* every open connection, for the drain's checks */
    size_t nroutes;
    struct route routes[MAX_ROUTES];
    http_observer_fn observer;
    void *observer_ctx;
    uint64_t id_seed, id_next;
};

/* What every request carries in its pool: its id, and what the observer is
 * told when the pool is disposed. */
struct req_note {
    struct http *http;
    const char *route;
    struct timeval began;
    char id[HTTP_REQUEST_ID_MAX + 1];
};

/* The uv handle h2o owns, with a way back to us when h2o closes it. */
struct conn {
    uv_tcp_t tcp;
    struct http *http;
    h2o_socket_t *sock;
    struct conn *prev, *next;
};

/* ---- answering ---- */

void http_add_header(h2o_req_t *req, const char *name, const char *value)
{
    /* h2o keeps the pointer until the response is written: copy the value
     * into the request's pool, so callers may pass a buffer on their stack. */
    h2o_iovec_t v = h2o_strdup(&req->pool, value, strlen(value));
    h2o_add_header_by_str(&req->pool, &req->res.headers, name, strlen(name), 0, NULL, v.base,
                          v.len);
}

void http_send(h2o_req_t *req, int status, const char *reason, const char *content_type,
               const char *body, size_t len)
{
    req->res.status = status;
    req->res.reason = reason;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, content_type,
                   strlen(content_type));
    req->res.content_length = len;
    /* While draining, every HTTP/1.1 answer closes its connection, so that a
     * client sends its next request to the process that takes over instead
     * of racing our close of an idle keep-alive connection. */
    if (req->conn->ctx->shutdown_requested)
        req->http1_is_persistent = 0;
    h2o_send_inline(req, body, len);
}

const char *http_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Entity";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    }
    return "Unknown";
}

void http_send_json(h2o_req_t *req, int status, const char *json, size_t len)
{
    http_send(req, status, http_reason(status), "application/json", json, len);
}

void http_send_error(h2o_req_t *req, int status, const char *code, const char *message)
{
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "{\"error\":{\"code\":");
    json_write_cstr(&b, code);
    buf_puts(&b, ",\"message\":");
    json_write_cstr(&b, message);
    buf_puts(&b, "}}");
    if (status == 503)
        http_add_header(req, "retry-after", "1");
    http_send_json(req, status, b.data, b.len);
    buf_dispose(&b);
}

int http_status_of(int hb_rc)
{
    switch (hb_rc) {
    case 0:
        return 200;
    case HB_EINVAL:
        return 400;
    case HB_EFORBIDDEN:
        return 403;
    case HB_ENOTFOUND:
        return 404;
    case HB_EEXIST:
        return 409;
    case HB_ETOOBIG:
        return 413;
    case HB_EUNAVAILABLE:
    case HB_EBUSY:
        return 503;
    }
    return 500;
}

/* ---- requests ---- */

const h2o_iovec_t *http_header(h2o_req_t *req, const char *name)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, name, strlen(name), -1);
    return i < 0 ? NULL : &req->headers.entries[i].value;
}

bool http_method_is(h2o_req_t *req, const char *method)
{
    return h2o_memis(req->method.base, req->method.len, method, strlen(method));
}

/* Percent-decodes s[0..n) into dst (at least n bytes); returns the length or -1. */
static ssize_t url_decode(char *dst, const char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            if (i + 2 >= n)
                return -1;
            int hi = hex_value((unsigned char)s[i + 1]), lo = hex_value((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            dst[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else if (s[i] == '+') {
            dst[o++] = ' ';
        } else {
            dst[o++] = s[i];
        }
    }
    return (ssize_t)o;
}

int http_query(h2o_req_t *req, const char *name, h2o_iovec_t *out)
{
    if (req->query_at == SIZE_MAX)
        return 0;
    const char *q = req->path.base + req->query_at + 1;
    const char *end = req->path.base + req->path.len;
    size_t name_len = strlen(name);
    char *scratch = h2o_mem_alloc_pool(&req->pool, (size_t)(end - q) + 1);
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *pair_end = amp != NULL ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(pair_end - q));
        const char *key_end = eq != NULL ? eq : pair_end;
        ssize_t klen = url_decode(scratch, q, (size_t)(key_end - q));
        if (klen < 0)
            return HB_EINVAL;
        if ((size_t)klen == name_len && memcmp(scratch, name, name_len) == 0) {
            const char *v = eq != NULL ? eq + 1 : pair_end;
            char *dst = h2o_mem_alloc_pool(&req->pool, (size_t)(pair_end - v) + 1);
            ssize_t vlen = url_decode(dst, v, (size_t)(pair_end - v));
            if (vlen < 0)
                return HB_EINVAL;
            dst[vlen] = '\0';
            *out = h2o_iovec_init(dst, (size_t)vlen);
            return 1;
        }
        q = amp != NULL ? amp + 1 : end;
    }
    return 0;
}

/* ---- holding a request across asynchronous work ---- */

static void on_slot_dispose(void *p)
{
    struct http_hold **slot = p;
    if (*slot != NULL) {
        (*slot)->req = NULL;
        (*slot)->slot = NULL;
    }
}

void http_hold_init(struct http_hold *hold, h2o_req_t *req)
{
    struct http_hold **slot = h2o_mem_alloc_shared(&req->pool, sizeof(*slot), on_slot_dispose);
    *slot = hold;
    hold->req = req;
    hold->slot = slot;
}

h2o_req_t *http_hold_release(struct http_hold *hold)
{
    if (hold->slot != NULL)
        *(struct http_hold **)hold->slot = NULL;
    hold->slot = NULL;
    h2o_req_t *req = hold->req;
    hold->req = NULL;
    return req;
}

/* ---- routing ---- */

void http_route(struct http *h, const char *prefix, bool exact, http_handler_fn fn, void *ctx)
{
    if (h->nroutes == MAX_ROUTES)
        abort(); /* a programming error, not an input */
    struct route *r = &h->routes[h->nroutes++];
    r->prefix = xstrdup(prefix);
    r->len = strlen(prefix);
    r->exact = exact;
    r->fn = fn;
    r->ctx = ctx;
}

void http_set_observer(struct http *h, http_observer_fn fn, void *ctx)
{
    h->observer = fn;
    h->observer_ctx = ctx;
}

uint64_t http_too_large_count(const struct http *h)
{
    return h->ctx.emitted_error_status[H2O_STATUS_ERROR_413];
}

static void on_note_dispose(void *p)
{
    struct req_note *n = p;
    if (n->http->observer == NULL)
        return;
    struct timeval now;
    gettimeofday(&now, NULL);
    int64_t us =
        (int64_t)(now.tv_sec - n->began.tv_sec) * 1000000 + (now.tv_usec - n->began.tv_usec);
    n->http->observer(n->http->observer_ctx, n->route, us > 0 ? (uint64_t)us : 0);
}

static bool is_id_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == ':' || c == '-';
}

/* A proxy's X-Request-Id, if it is one we can log and echo as it is. */
static bool is_valid_id(const h2o_iovec_t *v)
{
    if (v->len == 0 || v->len > HTTP_REQUEST_ID_MAX)
        return false;
    for (size_t i = 0; i < v->len; i++)
        if (!is_id_char(v->base[i]))
            return false;
    return true;
}

static uint64_t mix(uint64_t x)
{
    /* splitmix64: distinct counters give distinct, unguessable-looking ids. */
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static struct req_note *note_request(struct http *h, h2o_req_t *req)
{
    struct req_note *n = h2o_mem_alloc_shared(&req->pool, sizeof(*n), on_note_dispose);
    n->http = h;
    n->route = NULL;
    n->began = req->timestamps.request_begin_at;
    if (n->began.tv_sec == 0)
        n->began = req->processed_at.at;
    const h2o_iovec_t *given = http_header(req, "x-request-id");
    if (given != NULL && is_valid_id(given)) {
        memcpy(n->id, given->base, given->len);
        n->id[given->len] = '\0';
    } else {
        snprintf(n->id, sizeof(n->id), "%016llx",
                 (unsigned long long)mix(h->id_seed + h->id_next++));
    }
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL, n->id,
                          strlen(n->id));
    return n;
}

const char *http_request_id(h2o_req_t *req)
{
    ssize_t i = h2o_find_header_by_str(&req->res.headers, H2O_STRLIT("x-request-id"), -1);
    return i < 0 ? "-" : req->res.headers.entries[i].value.base;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    struct http *h = ((struct dispatch_handler *)self)->http;
    struct req_note *note = note_request(h, req);
    h2o_iovec_t path = req->path_normalized;
    if (req->path.len > MAX_URI_LEN) {
        http_send_error(req, 414, "uri_too_long", "the URL is longer than 8192 bytes");
        return 0;
    }
    for (size_t i = 0; i < h->nroutes; i++) {
        const struct route *r = &h->routes[i];
        if (path.len < r->len || memcmp(path.base, r->prefix, r->len) != 0)
            continue;
        if (r->exact && path.len != r->len)
            continue;
        note->route = r->prefix;
        return r->fn(r->ctx, req);
    }
    http_send_error(req, 404, "not_found", "no such resource");
    return 0;
}

/* ---- listener and connections ---- */

struct http *http_new(uv_loop_t *loop, size_t body_limit, int64_t request_timeout_ms)
{
    struct http *h = xcalloc(1, sizeof(*h));
    h->loop = loop;
    if (getrandom(&h->id_seed, sizeof(h->id_seed), 0) != sizeof(h->id_seed))
        h->id_seed = (uint64_t)uv_hrtime() ^ (uint64_t)getpid() << 32;
    h2o_config_init(&h->config);
    h->config.server_name = h2o_iovec_init(H2O_STRLIT("hubbub"));
    h->config.max_request_entity_size = body_limit;
    /* h2o arms this once per request, not per read: a client that trickles
     * its header or body is cut off when it runs out, however steadily it
     * sends. It is also how long an idle keep-alive connection is kept. */
    h->config.http1.req_timeout = (uint64_t)request_timeout_ms;
    h->config.http2.idle_timeout = (uint64_t)request_timeout_ms;
    h2o_hostconf_t *host =
        h2o_config_register_host(&h->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    struct dispatch_handler *handler = (void *)h2o_create_handler(path, sizeof(*handler));
    handler->super.on_req = on_req;
    handler->http = h;
    h2o_context_init(&h->ctx, loop, &h->config);
    h->has_ctx = true;
    return h;
}

static void on_conn_close(uv_handle_t *handle)
{
    struct conn *c = (struct conn *)handle;
    c->http->nconns--;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        c->http->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    free(c);
}

static void on_reject_close(uv_handle_t *handle)
{
    free(handle);
}

/* Hands an accepted connection (c->tcp set up) to h2o. */
static void conn_start(struct listener *l, struct conn *c)
{
    struct http *h = l->http;
    uv_tcp_nodelay(&c->tcp, 1);
    h->nconns++;
    c->prev = NULL;
    c->next = h->conns;
    if (h->conns != NULL)
        h->conns->prev = c;
    h->conns = c;
    c->sock = h2o_uv_socket_create((uv_stream_t *)&c->tcp, on_conn_close);
    h2o_accept(&l->accept_ctx, c->sock);
}

static void on_accept(uv_stream_t *stream, int status)
{
    struct listener *l = stream->data;
    if (status != 0)
        return;
    struct conn *c = xcalloc(1, sizeof(*c));
    c->http = l->http;
    uv_tcp_init(stream->loop, &c->tcp);
    if (uv_accept(stream, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, on_reject_close);
        return;
    }
    conn_start(l, c);
}

/* Accepts every connection the kernel has already completed for l. Closing
 * a listener resets the connections still in its backlog, whose clients
 * have connected and may have sent their request: they are taken and
 * answered instead. */
static void accept_backlog(struct listener *l)
{
    uv_os_fd_t lfd;
    if (uv_fileno((uv_handle_t *)&l->tcp, &lfd) != 0)
        return;
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return; /* EAGAIN: the backlog is empty (or EMFILE: nothing more to take) */
        }
        struct conn *c = xcalloc(1, sizeof(*c));
        c->http = l->http;
        uv_tcp_init(l->http->loop, &c->tcp);
        if (uv_tcp_open(&c->tcp, fd) != 0) {
            close(fd);
            uv_close((uv_handle_t *)&c->tcp, on_reject_close);
            continue;
        }
        conn_start(l, c);
    }
}

/* SO_REUSEPORT: a new hubbub can listen on the port while the old one still
 * drains, so a restart refuses no connection (the kernel spreads new ones
 * over both until the old one closes its listener). */
static int reuse_port(uv_tcp_t *tcp)
{
    uv_os_fd_t fd;
    int one = 1, rc = uv_fileno((uv_handle_t *)tcp, &fd);
    if (rc == 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
        rc = uv_translate_sys_error(errno);
    return rc;
}

int http_listen(struct http *h, const char *listen, SSL_CTX *ssl, bool client_verified, char *err,
                size_t errsz)
{
    char host[256];
    int port, rc;
    struct sockaddr_storage addr;
    if (h->nlisteners == HTTP_MAX_LISTENERS)
        abort(); /* a programming error */
    if (config_parse_listen(listen, host, sizeof(host), &port) != 0) {
        snprintf(err, errsz, "bad listen address '%s'", listen);
        return HB_EIO;
    }
    if (strchr(host, ':') != NULL)
        rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr);
    else
        rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&addr);
    if (rc != 0) {
        snprintf(err, errsz, "'%s' is not an IP address: %s", host, uv_strerror(rc));
        return HB_EIO;
    }
    int index = (int)h->nlisteners++;
    struct listener *l = &h->listeners[index];
    l->http = h;
    l->client_verified = client_verified;
    l->accept_ctx.ctx = &h->ctx;
    l->accept_ctx.hosts = h->config.hosts;
    if (ssl != NULL) {
        SSL_CTX_up_ref(ssl);
        l->accept_ctx.ssl_ctx = ssl;
    }
    uv_tcp_init_ex(h->loop, &l->tcp, addr.ss_family);
    l->tcp.data = l;
    l->open = true;
    int namelen = sizeof(l->bound);
    if ((rc = reuse_port(&l->tcp)) != 0 ||
        (rc = uv_tcp_bind(&l->tcp, (struct sockaddr *)&addr, 0)) != 0 ||
        (rc = uv_listen((uv_stream_t *)&l->tcp, 1024, on_accept)) != 0 ||
        (rc = uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&l->bound, &namelen)) != 0) {
        snprintf(err, errsz, "cannot listen on %s: %s", listen, uv_strerror(rc));
        return HB_EIO;
    }
    return index;
}

void http_replace_ssl(struct http *h, int listener, SSL_CTX *ssl)
{
    struct listener *l = &h->listeners[listener];
    SSL_CTX_up_ref(ssl);
    /* Connections hold their own references to the old context. */
    SSL_CTX_free(l->accept_ctx.ssl_ctx);
    l->accept_ctx.ssl_ctx = ssl;
}

/* Whether a connection whose local address is b came through the listener
 * bound to a: the same port, and the same address unless a is a wildcard.
 * The port alone is not enough: two listeners may share a port on two
 * addresses. */
static bool is_bound_to(const struct sockaddr_storage *a, const struct sockaddr *b)
{
    if (a->ss_family != b->sa_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)a;
        const struct sockaddr_in *y = (const struct sockaddr_in *)b;
        return x->sin_port == y->sin_port && (x->sin_addr.s_addr == htonl(INADDR_ANY) ||
                                              x->sin_addr.s_addr == y->sin_addr.s_addr);
    }
    const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a;
    const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)b;
    return x->sin6_port == y->sin6_port && (IN6_IS_ADDR_UNSPECIFIED(&x->sin6_addr) ||
                                            IN6_ARE_ADDR_EQUAL(&x->sin6_addr, &y->sin6_addr));
}

bool http_client_verified(const struct http *h, h2o_req_t *req)
{
    struct sockaddr_storage local;
    if (req->conn->callbacks->get_sockname == NULL ||
        req->conn->callbacks->get_sockname(req->conn, (struct sockaddr *)&local) == 0)
        return false;
    for (size_t i = 0; i < h->nlisteners; i++)
        if (is_bound_to(&h->listeners[i].bound, (struct sockaddr *)&local))
            return h->listeners[i].client_verified;
    return false;
}

void http_stop_accepting(struct http *h)
{
    /* Flag the context first: what is taken from the backlog below is then
     * answered with Connection: close. */
    h->ctx.shutdown_requested = 1;
    for (size_t i = 0; i < h->nlisteners; i++) {
        if (h->listeners[i].open) {
            accept_backlog(&h->listeners[i]);
            uv_close((uv_handle_t *)&h->listeners[i].tcp, NULL);
            h->listeners[i].open = false;
        }
    }
    h2o_context_request_shutdown(&h->ctx);
}

void http_close_idle(struct http *h)
{
    /* h2o 2.2 has no call to close idle keep-alive connections; expiring their
     * idle timeouts now makes h2o close them itself, cleanly. */
    uint64_t now = h2o_now(h->loop);
    h->ctx.http1.req_timeout.timeout = 0;
    h->ctx.http2.idle_timeout.timeout = 0;
    h2o_timeout_run(h->loop, &h->ctx.http1.req_timeout, now);
    h2o_timeout_run(h->loop, &h->ctx.http2.idle_timeout, now);
}

bool http_has_partial_request(const struct http *h)
{
    for (const struct conn *c = h->conns; c != NULL; c = c->next)
        if (c->sock != NULL && c->sock->input != NULL && c->sock->input->size > 0)
            return true;
    return false;
}

size_t http_connection_count(const struct http *h)
{
    return h->nconns;
}

void http_free(struct http *h)
{
    if (h == NULL)
        return;
    for (size_t i = 0; i < h->nlisteners; i++) {
        if (h->listeners[i].open)
            uv_close((uv_handle_t *)&h->listeners[i].tcp, NULL);
        SSL_CTX_free(h->listeners[i].accept_ctx.ssl_ctx);
    }
    if (h->has_ctx) {
        /* h2o's HTTP/2 shutdown arms a one-second GOAWAY re-send even with no
         * HTTP/2 connection; it must not outlive the context. */
        if (h2o_timeout_is_linked(&h->ctx.http2._graceful_shutdown_timeout))
            h2o_timeout_unlink(&h->ctx.http2._graceful_shutdown_timeout);
        h2o_context_dispose(&h->ctx);
    }
    h2o_config_dispose(&h->config);
    for (size_t i = 0; i < h->nroutes; i++)
        free(h->routes[i].prefix);
    free(h);
}
