/*
 * t_shutdown.c - graceful shutdown, and HTTP/2 clients that go away.
 *
 * A test that wants deliveries "in flight" holds a lock from its own
 * connection: EXCLUSIVE on deliveries blocks the writers' INSERT, ACCESS
 * EXCLUSIVE on apps blocks app lookups. The requests are then certainly
 * waiting when SIGTERM arrives or the client leaves, and the test decides
 * when they may finish. Scenarios:
 *   1. HTTP/2 (prior knowledge) posts get 200; HTTP/2 and HTTP/1.1 clients
 *      that close their connection while their delivery waits on the app
 *      lookup or the commit, or right after sending it, do not crash hubbub;
 *      then idle keep-alive connections (HTTP/1.1 and HTTP/2) do not hold up
 *      the exit.
 *   2. 50 deliveries blocked on the commit (10 of them on one HTTP/2
 *      connection) and one on its app lookup when SIGTERM comes: hubbub
 *      waits, refuses new connections, answers 503 (with Connection: close,
 *      counted as shutting_down in /metrics) to a delivery on an open
 *      keep-alive connection, answers all the waiting ones once the commit
 *      goes through, every 200 is stored, and it exits 0 at once.
 *   3. 100 deliveries on 50 connections, SIGTERM after the first answers:
 *      200 only for what is stored; 503 or a transport error otherwise.
 *   4. A commit that outlasts HUBBUB_SHUTDOWN_TIMEOUT: hubbub gives up on
 *      time, and none of the waiting requests got 200.
 */
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/integration/harness.h"

#define APP_ID "17841400000000555"
#define APP2_ID "17841400000000556" /* same tenant and secret; used cold */
#define SECRET "shutdown-secret-0123456789abcdef"

/* Sends sig (unless 0) and waits up to limit_ms for the exit; returns the
 * exit status (128+signal if killed) and the time it took, or -1 after
 * killing a hubbub that did not exit in time. */
static int stop_timed(struct h_server *s, int sig, int limit_ms, int64_t *elapsed)
{
    int64_t t0 = h_now_ms();
    if (sig != 0)
        kill(s->pid, sig);
    int status = 0, rc = -1;
    for (;;) {
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            break;
        }
        if (h_now_ms() - t0 > limit_ms) {
            tap_diag("hubbub did not exit within %d ms; killing it", limit_ms);
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &status, 0);
            break;
        }
        h_sleep_ms(2);
    }
    *elapsed = h_now_ms() - t0;
    s->pid = 0;
    return rc;
}

static bool is_running(const struct h_server *s)
{
    return s->pid > 0 && waitpid(s->pid, NULL, WNOHANG) == 0;
}

/* ---- deliveries ---- */

static bool is_stored(struct h_db *db, int n)
{
    return h_db_int(db, "SELECT count(*) FROM events WHERE payload->'value'->>'id' = 'C%d'", n) > 0;
}

static bool wait_stored(struct h_db *db, int n, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    while (!is_stored(db, n)) {
        if (h_now_ms() > deadline)
            return false;
        h_sleep_ms(10);
    }
    return true;
}

/* ---- many deliveries at once, on the curl multi interface ---- */

struct post {
    int n;
    char *body;
    size_t len;
    char sig_header[100];
    long status; /* -1 not sent; 0 failed at the transport level; else the HTTP status */
    long http_version;
    char error[CURL_ERROR_SIZE];
    char resp[512];
    size_t resp_len;
    bool uploaded;
};

struct slot {
    CURL *easy;
    struct curl_slist *headers;
    struct post *post;
    char errbuf[CURL_ERROR_SIZE];
};

struct batch {
    char url[128];
    const char *app_id; /* APP_ID when NULL */
    struct post *posts;
    int n, parallel;
    bool http2;
    long timeout_ms;
    atomic_int uploaded, answered;
    /* called on the sending thread after each answer; false: start no more */
    bool (*on_done)(struct batch *b, struct post *p);
    void *arg;
    pthread_t thread;
};

static void posts_init(struct post *posts, int n, int first)
{
    for (int i = 0; i < n; i++) {
        char sig[72];
        memset(&posts[i], 0, sizeof(posts[i]));
        posts[i].n = first + i;
        posts[i].body = h_comment_delivery(first + i, &posts[i].len);
        h_sign(SECRET, posts[i].body, posts[i].len, sig);
        snprintf(posts[i].sig_header, sizeof(posts[i].sig_header), "X-Hub-Signature-256: %s", sig);
        posts[i].status = -1;
    }
}

static void posts_free(struct post *posts, int n)
{
    for (int i = 0; i < n; i++)
        free(posts[i].body);
    free(posts);
}

static size_t on_resp(char *p, size_t size, size_t n, void *arg)
{
    struct post *post = arg;
    size_t add = size * n;
    size_t room = sizeof(post->resp) - 1 - post->resp_len;
    size_t take = add < room ? add : room;
    memcpy(post->resp + post->resp_len, p, take);
    post->resp_len += take;
    post->resp[post->resp_len] = '\0';
    return add;
}

struct progress {
    struct batch *b;
    struct slot *slot;
};

static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)dltotal;
    (void)dlnow;
    struct progress *pr = arg;
    struct post *p = pr->slot->post;
    if (p != NULL && !p->uploaded && ultotal > 0 && ulnow >= ultotal) {
        p->uploaded = true;
        atomic_fetch_add(&pr->b->uploaded, 1);
    }
    return 0;
}

static void *batch_main(void *arg)
{
    struct batch *b = arg;
    CURLM *m = curl_multi_init();
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)b->parallel + 4);
    struct slot *slots = calloc((size_t)b->parallel, sizeof(*slots));
    struct progress *prog = calloc((size_t)b->parallel, sizeof(*prog));
    for (int i = 0; i < b->parallel; i++) {
        CURL *e = curl_easy_init();
        prog[i].b = b;
        prog[i].slot = &slots[i];
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, b->timeout_ms > 0 ? b->timeout_ms : 30000L);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_resp);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, slots[i].errbuf);
        curl_easy_setopt(e, CURLOPT_PRIVATE, &slots[i]);
        curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(e, CURLOPT_XFERINFODATA, &prog[i]);
        if (b->http2)
            curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
        slots[i].easy = e;
    }
    int next = 0, active = 0;
    bool go = true;
    while (active > 0 || (go && next < b->n)) {
        for (int i = 0; i < b->parallel && go && next < b->n; i++) {
            struct slot *s = &slots[i];
            if (s->post != NULL)
                continue;
            struct post *p = &b->posts[next++];
            s->post = p;
            p->status = 0;
            s->errbuf[0] = '\0';
            s->headers = curl_slist_append(NULL, "Expect:");
            s->headers = curl_slist_append(s->headers, "Content-Type: application/json");
            s->headers = curl_slist_append(s->headers, p->sig_header);
            curl_easy_setopt(s->easy, CURLOPT_URL, b->url);
            curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, s->headers);
            curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, p->body);
            curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)p->len);
            curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, p);
            curl_multi_add_handle(m, s->easy);
            active++;
        }
        int still;
        curl_multi_perform(m, &still);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            struct slot *s;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
            struct post *p = s->post;
            if (msg->data.result == CURLE_OK) {
                curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &p->status);
                curl_easy_getinfo(s->easy, CURLINFO_HTTP_VERSION, &p->http_version);
            } else {
                p->status = 0;
                snprintf(p->error, sizeof(p->error), "%s",
                         s->errbuf[0] ? s->errbuf : curl_easy_strerror(msg->data.result));
            }
            curl_multi_remove_handle(m, s->easy);
            curl_slist_free_all(s->headers);
            s->headers = NULL;
            s->post = NULL;
            active--;
            atomic_fetch_add(&b->answered, 1);
            if (b->on_done != NULL && !b->on_done(b, p))
                go = false;
        }
        if (active > 0)
            curl_multi_poll(m, NULL, 0, 20, NULL);
    }
    for (int i = 0; i < b->parallel; i++)
        curl_easy_cleanup(slots[i].easy);
    free(slots);
    free(prog);
    curl_multi_cleanup(m);
    return NULL;
}

static void batch_start(struct batch *b, const struct h_server *s, struct post *posts, int n,
                        int parallel)
{
    snprintf(b->url, sizeof(b->url), "%s/webhooks/%s", s->base,
             b->app_id != NULL ? b->app_id : APP_ID);
    b->posts = posts;
    b->n = n;
    b->parallel = parallel;
    atomic_init(&b->uploaded, 0);
    atomic_init(&b->answered, 0);
    if (pthread_create(&b->thread, NULL, batch_main, b) != 0)
        tap_bail("pthread_create failed");
}

struct tally {
    int ok, unavailable, transport, other, unsent;
    int ok_not_stored;
};

static void tally(struct h_db *db, const struct post *posts, int n, struct tally *t)
{
    memset(t, 0, sizeof(*t));
    for (int i = 0; i < n; i++) {
        const struct post *p = &posts[i];
        if (p->status == 200) {
            t->ok++;
            if (!is_stored(db, p->n) && t->ok_not_stored++ < 10)
                tap_diag("delivery C%d got 200 but is not stored: %.200s", p->n, p->resp);
        } else if (p->status == 503) {
            t->unavailable++;
        } else if (p->status == 0) {
            t->transport++;
        } else if (p->status < 0) {
            t->unsent++;
        } else if (t->other++ < 5) {
            tap_diag("delivery C%d got %ld: %.200s", p->n, p->status, p->resp);
        }
    }
}

/* ---- holding the commit (or the app lookup) back ---- */

/* Locks, on a connection of its own, until unlock(): sql is LOCK TABLE
 * statements. EXCLUSIVE on deliveries blocks the writers' INSERT; ACCESS
 * EXCLUSIVE on apps blocks app lookups. */
static PGconn *lock_tables(struct h_db *db, const char *sql)
{
    PGconn *c = PQconnectdb(db->url);
    if (PQstatus(c) != CONNECTION_OK)
        tap_bail("lock connection: %s", PQerrorMessage(c));
    PGresult *r = PQexec(c, "BEGIN");
    PQclear(r);
    r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        tap_bail("cannot lock: %s", PQresultErrorMessage(r));
    PQclear(r);
    return c;
}

static PGconn *lock_deliveries(struct h_db *db)
{
    return lock_tables(db, "LOCK TABLE deliveries IN EXCLUSIVE MODE");
}

static void unlock_tables(PGconn *c)
{
    PQclear(PQexec(c, "ROLLBACK"));
    PQfinish(c);
}

/* Waits until at least n hubbub connections wait on a lock in a statement
 * whose text is LIKE pattern. */
static bool wait_blocked_in(struct h_db *db, const char *pattern, int n, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    for (;;) {
        long long k = h_db_int(db,
                               "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                               "current_database() AND application_name = 'hubbub' AND "
                               "wait_event_type = 'Lock' AND query LIKE '%s'",
                               pattern);
        if (k >= n)
            return true;
        if (h_now_ms() > deadline)
            return false;
        h_sleep_ms(5);
    }
}

static bool wait_blocked(struct h_db *db, int n, int timeout_ms)
{
    return wait_blocked_in(db, "%%", n, timeout_ms);
}

/* ---- raw sockets: HTTP/1.1 and h2c by hand ---- */

static int tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static bool send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        c += w;
        n -= (size_t)w;
    }
    return true;
}

/* Reads up to cap bytes, waiting at most timeout_ms; 0 on EOF or reset, -1 on timeout. */
static ssize_t recv_some(int fd, void *buf, size_t cap, int timeout_ms)
{
    struct pollfd pfd = {fd, POLLIN, 0};
    int r = poll(&pfd, 1, timeout_ms);
    if (r <= 0)
        return -1;
    ssize_t n = recv(fd, buf, cap, 0);
    return n < 0 ? 0 : n;
}

/* Closes so that the peer sees a reset rather than an orderly end. */
static void close_reset(int fd)
{
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

/* Reads until the server closes the connection; returns the milliseconds
 * that took, or -1 when it is still open after timeout_ms. */
static int64_t wait_eof(int fd, int timeout_ms)
{
    int64_t t0 = h_now_ms();
    char buf[4096];
    for (;;) {
        int64_t left = timeout_ms - (h_now_ms() - t0);
        if (left <= 0)
            return -1;
        if (recv_some(fd, buf, sizeof(buf), (int)left) == 0)
            return h_now_ms() - t0;
    }
}

/* Sends one HTTP/1.1 request on a keep-alive connection and reads the
 * answer into buf (cap bytes, at least 4096); returns its status, or 0 when
 * the connection closed first. */
static long h1_exchange_into(int fd, const char *req, size_t len, char *buf, size_t cap)
{
    if (!send_all(fd, req, len))
        return 0;
    size_t have = 0;
    buf[0] = '\0';
    for (;;) {
        ssize_t n = recv_some(fd, buf + have, cap - 1 - have, 5000);
        if (n <= 0)
            return 0;
        have += (size_t)n;
        buf[have] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (end == NULL)
            continue;
        const char *cl = strcasestr(buf, "\r\ncontent-length:");
        size_t body = cl != NULL && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
        if (have >= (size_t)(end + 4 - buf) + body)
            break;
        if (have == cap - 1)
            return 0;
    }
    return strncmp(buf, "HTTP/1.1 ", 9) == 0 ? strtol(buf + 9, NULL, 10) : 0;
}

static long h1_exchange(int fd, const char *req, size_t len)
{
    char buf[4096];
    return h1_exchange_into(fd, req, len, buf, sizeof(buf));
}

static bool h1_healthz(int fd)
{
    const char req[] = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    return h1_exchange(fd, req, sizeof(req) - 1) == 200;
}

/* A signed POST of delivery n as HTTP/1.1 text; returns its length. */
static int h1_post_text(char *out, size_t cap, int n)
{
    size_t len;
    char sig[72];
    char *body = h_comment_delivery(n, &len);
    h_sign(SECRET, body, len, sig);
    int k = snprintf(out, cap,
                     "POST /webhooks/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Content-Type: application/json\r\nX-Hub-Signature-256: %s\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     APP_ID, sig, len, body);
    free(body);
    return k;
}

static const char H2_PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

static size_t h2_frame(uint8_t *out, uint8_t type, uint8_t flags, uint32_t stream,
                       const void *payload, size_t len)
{
    out[0] = (uint8_t)(len >> 16);
    out[1] = (uint8_t)(len >> 8);
    out[2] = (uint8_t)len;
    out[3] = type;
    out[4] = flags;
    out[5] = (uint8_t)(stream >> 24 & 0x7f);
    out[6] = (uint8_t)(stream >> 16);
    out[7] = (uint8_t)(stream >> 8);
    out[8] = (uint8_t)stream;
    if (len != 0)
        memcpy(out + 9, payload, len);
    return 9 + len;
}

/* HPACK "literal header field without indexing, new name", no Huffman. */
static size_t hpack_literal(uint8_t *out, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value), k = 0;
    if (nl > 126 || vl > 126)
        tap_bail("hpack_literal: header too long for this little encoder");
    out[k++] = 0x00;
    out[k++] = (uint8_t)nl;
    memcpy(out + k, name, nl);
    k += nl;
    out[k++] = (uint8_t)vl;
    memcpy(out + k, value, vl);
    k += vl;
    return k;
}

/* Connection preface, empty SETTINGS, and one request on stream 1. */
static size_t h2_request(uint8_t *out, const char *method, const char *path, const char *sig,
                         const char *body, size_t len)
{
    uint8_t block[1024];
    size_t b = 0, k = 0;
    char clen[32];
    snprintf(clen, sizeof(clen), "%zu", len);
    b += hpack_literal(block + b, ":method", method);
    b += hpack_literal(block + b, ":scheme", "http");
    b += hpack_literal(block + b, ":path", path);
    b += hpack_literal(block + b, ":authority", "127.0.0.1");
    if (body != NULL) {
        b += hpack_literal(block + b, "content-type", "application/json");
        b += hpack_literal(block + b, "content-length", clen);
    }
    if (sig != NULL)
        b += hpack_literal(block + b, "x-hub-signature-256", sig);
    memcpy(out, H2_PREFACE, sizeof(H2_PREFACE) - 1);
    k += sizeof(H2_PREFACE) - 1;
    k += h2_frame(out + k, 4, 0, 0, NULL, 0); /* SETTINGS */
    /* HEADERS: END_HEADERS, and END_STREAM when there is no body */
    k += h2_frame(out + k, 1, (uint8_t)(0x4 | (body == NULL ? 0x1 : 0)), 1, block, b);
    if (body != NULL)
        k += h2_frame(out + k, 0, 0x1, 1, body, len); /* DATA, END_STREAM */
    return k;
}

/* Reads frames until stream 1 ends, acknowledging the server's SETTINGS;
 * returns true when the response began with ":status 200" (HPACK index 8). */
static bool h2_read_response(int fd)
{
    uint8_t buf[16384 + 9];
    bool ok = false;
    int64_t deadline = h_now_ms() + 5000;
    size_t have = 0;
    while (h_now_ms() < deadline) {
        ssize_t n = recv_some(fd, buf + have, sizeof(buf) - have, 1000);
        if (n <= 0)
            return false;
        have += (size_t)n;
        while (have >= 9) {
            size_t len = (size_t)buf[0] << 16 | (size_t)buf[1] << 8 | buf[2];
            if (have < 9 + len)
                break;
            uint8_t type = buf[3], flags = buf[4];
            uint32_t stream = (uint32_t)(buf[5] & 0x7f) << 24 | (uint32_t)buf[6] << 16 |
                              (uint32_t)buf[7] << 8 | buf[8];
            if (type == 4 && !(flags & 0x1)) {
                uint8_t ack[9];
                send_all(fd, ack, h2_frame(ack, 4, 0x1, 0, NULL, 0));
            }
            if (type == 1 && stream == 1 && len > 0)
                ok = buf[9] == 0x88;
            bool end = (type == 0 || type == 1) && stream == 1 && (flags & 0x1);
            memmove(buf, buf + 9 + len, have - 9 - len);
            have -= 9 + len;
            if (end)
                return ok;
        }
    }
    return false;
}

static long healthz(const struct h_server *s)
{
    char url[128];
    snprintf(url, sizeof(url), "%s/healthz", s->base);
    struct h_resp r;
    h_http(&r, "GET", url, NULL, NULL, 0);
    long st = r.status;
    h_resp_free(&r);
    return st;
}

/* ---- scenario 1: HTTP/2, clients that go away, idle connections ---- */

static void scenario_http2(struct h_db *db)
{
    struct h_server s;
    const char *env[] = {"HUBBUB_LOG_LEVEL=info", "HUBBUB_SHUTDOWN_TIMEOUT=10s", NULL};
    h_server_start(&s, db, env);

    /* An HTTP/2 client that goes away while hubbub looks its app up (the
     * cache is cold): the lookup finishes for a request that is gone. */
    char sig[72];
    uint8_t wire[4096];
    size_t len;
    char *body = h_comment_delivery(999, &len);
    h_sign(SECRET, body, len, sig);
    size_t wlen = h2_request(wire, "POST", "/webhooks/" APP_ID, sig, body, len);
    free(body);
    PGconn *lock = lock_tables(db, "LOCK TABLE apps IN ACCESS EXCLUSIVE MODE");
    int fd = tcp_connect(s.port);
    bool sent = fd >= 0 && send_all(fd, wire, wlen);
    bool blocked = wait_blocked(db, 1, 5000);
    close_reset(fd);
    h_sleep_ms(50);
    unlock_tables(lock);
    tap_ok(sent && blocked, "an h2c delivery waits on its app lookup, which is held");
    h_sleep_ms(50);
    tap_is_int(healthz(&s), 200, "hubbub still answers after that client went away mid-lookup");
    tap_diag("the delivery of the client that left during the lookup is %s",
             is_stored(db, 999) ? "stored" : "not stored");

    /* A signed delivery over h2c with prior knowledge. */
    struct post *posts = calloc(1, sizeof(*posts));
    posts_init(posts, 1, 1000);
    struct batch b = {0};
    b.http2 = true;
    batch_start(&b, &s, posts, 1, 1);
    pthread_join(b.thread, NULL);
    tap_is_int(posts[0].status, 200, "an HTTP/2 (prior knowledge) client posts a delivery: 200");
    tap_is_int(posts[0].http_version, CURL_HTTP_VERSION_2_0, "... over HTTP/2");
    tap_contains(posts[0].resp, "\"status\":\"stored\"", "... and the answer says stored");
    tap_ok(is_stored(db, 1000), "... and the delivery is in the database");
    posts_free(posts, 1);

    /* An HTTP/2 client that goes away while its delivery waits on the commit:
     * h2o frees the request under the running job. */
    body = h_comment_delivery(1001, &len);
    h_sign(SECRET, body, len, sig);
    wlen = h2_request(wire, "POST", "/webhooks/" APP_ID, sig, body, len);
    free(body);
    lock = lock_deliveries(db);
    fd = tcp_connect(s.port);
    sent = fd >= 0 && send_all(fd, wire, wlen);
    blocked = wait_blocked(db, 1, 5000);
    close_reset(fd);
    h_sleep_ms(50); /* let h2o see the reset and dispose of the request */
    unlock_tables(lock);
    tap_ok(sent && blocked, "an h2c delivery reached the writer, which is held at the commit");
    tap_ok(wait_stored(db, 1001, 5000),
           "the delivery of an HTTP/2 client that went away during the commit is stored");
    tap_is_int(healthz(&s), 200, "hubbub still answers after that client went away");

    /* The same with HTTP/1.1. */
    char h1[2048];
    int h1len = h1_post_text(h1, sizeof(h1), 1002);
    lock = lock_deliveries(db);
    fd = tcp_connect(s.port);
    sent = fd >= 0 && send_all(fd, h1, (size_t)h1len);
    blocked = wait_blocked(db, 1, 5000);
    close_reset(fd);
    h_sleep_ms(50);
    unlock_tables(lock);
    tap_ok(sent && blocked, "an HTTP/1.1 delivery reached the writer, which is held at the commit");
    tap_ok(wait_stored(db, 1002, 5000),
           "the delivery of an HTTP/1.1 client that went away during the commit is stored");
    tap_is_int(healthz(&s), 200, "hubbub still answers after that client went away too");

    /* While the commit is held: h2c clients that close right after sending
     * (FIN or reset), and curl over HTTP/2 giving up after 1..30 ms. Their
     * deliveries may or may not be stored; hubbub must not mind. */
    lock = lock_deliveries(db);
    for (int i = 0; i < 20; i++) {
        body = h_comment_delivery(1100 + i, &len);
        h_sign(SECRET, body, len, sig);
        wlen = h2_request(wire, "POST", "/webhooks/" APP_ID, sig, body, len);
        free(body);
        fd = tcp_connect(s.port);
        if (fd < 0)
            break;
        send_all(fd, wire, wlen);
        if (i % 2 == 0)
            close_reset(fd);
        else
            close(fd);
    }
    posts = calloc(30, sizeof(*posts));
    posts_init(posts, 30, 1200);
    int gave_up = 0;
    for (int i = 0; i < 30; i++) {
        struct batch one = {0};
        one.http2 = true;
        one.timeout_ms = 1 + i;
        batch_start(&one, &s, &posts[i], 1, 1);
        pthread_join(one.thread, NULL);
        if (posts[i].status == 0)
            gave_up++;
    }
    blocked = wait_blocked(db, 1, 2000);
    unlock_tables(lock);
    tap_diag("curl over HTTP/2 with timeouts of 1..30 ms, commit held: %d of 30 gave up before "
             "the answer; writer blocked: %s",
             gave_up, blocked ? "yes" : "no");
    tap_is_int(gave_up, 30,
               "30 HTTP/2 clients gave up while their deliveries waited on the commit");
    h_sleep_ms(100);
    int stored = 0;
    for (int i = 0; i < 30; i++)
        stored += is_stored(db, posts[i].n);
    for (int i = 0; i < 20; i++)
        stored += is_stored(db, 1100 + i);
    tap_diag("of the 50 deliveries whose clients left early, %d are stored", stored);
    posts_free(posts, 30);
    tap_is_int(healthz(&s), 200, "hubbub still answers after 50 HTTP/2 clients left early");

    /* Idle keep-alive connections, HTTP/1.1 and HTTP/2, must not hold up the exit. */
    int idle1 = tcp_connect(s.port);
    bool h1_ok = idle1 >= 0 && h1_healthz(idle1);
    int idle2 = tcp_connect(s.port);
    wlen = h2_request(wire, "GET", "/healthz", NULL, NULL, 0);
    bool h2_ok = idle2 >= 0 && send_all(idle2, wire, wlen) && h2_read_response(idle2);
    tap_ok(h1_ok && h2_ok, "two idle keep-alive connections are open (HTTP/1.1 and HTTP/2)");
    int64_t took;
    int st = stop_timed(&s, SIGTERM, 10000, &took);
    int64_t eof1 = wait_eof(idle1, 100), eof2 = wait_eof(idle2, 100);
    tap_diag("with idle connections, hubbub exited %lld ms after SIGTERM", (long long)took);
    tap_is_int(st, 0, "one SIGTERM stops hubbub with status 0 after HTTP/2 clients left early");
    tap_ok(took <= 1200, "idle keep-alive connections do not delay the exit beyond ~1 s (%lld ms)",
           (long long)took);
    tap_ok(eof1 >= 0 && eof2 >= 0, "the idle connections were closed");
    close(idle1);
    close(idle2);
}

/* ---- scenario 2: SIGTERM while 50 deliveries wait on the commit ---- */

static void scenario_drain(struct h_db *db)
{
    struct h_server s;
    const char *env[] = {"HUBBUB_LOG_LEVEL=info", "HUBBUB_SHUTDOWN_TIMEOUT=10s", NULL};
    h_server_start(&s, db, env);
    enum { N1 = 40, N2 = 10, N = N1 + N2 };
    struct post *posts = calloc(N, sizeof(*posts));
    posts_init(posts, N, 2000);

    /* A keep-alive connection that is idle when SIGTERM comes; its delivery
     * puts APP_ID in the cache. */
    char req[2048];
    int reqlen = h1_post_text(req, sizeof(req), 2998);
    int idle = tcp_connect(s.port);
    bool idle_ok = idle >= 0 && h1_exchange(idle, req, (size_t)reqlen) == 200;
    int scrape = tcp_connect(s.port); /* for /metrics during the drain */
    idle_ok = idle_ok && scrape >= 0 && h1_healthz(scrape);

    /* Commits are held, and so are app lookups: APP2_ID is not cached. */
    PGconn *lock = lock_tables(db, "LOCK TABLE deliveries IN EXCLUSIVE MODE; "
                                   "LOCK TABLE apps IN ACCESS EXCLUSIVE MODE");
    struct post *cold = calloc(1, sizeof(*cold));
    posts_init(cold, 1, 2990);
    struct batch b1 = {0}, b2 = {0}, b3 = {0};
    b2.http2 = true;
    b3.app_id = APP2_ID;
    batch_start(&b1, &s, posts, N1, N1);
    batch_start(&b2, &s, posts + N1, N2, N2);
    batch_start(&b3, &s, cold, 1, 1);
    int64_t deadline = h_now_ms() + 5000;
    while (atomic_load(&b1.uploaded) + atomic_load(&b2.uploaded) < N && h_now_ms() < deadline)
        h_sleep_ms(5);
    bool blocked = wait_blocked_in(db, "%%INSERT INTO deliveries%%", 1, 5000);
    bool lookup_blocked = wait_blocked_in(db, "%%FROM apps%%", 1, 5000);
    h_sleep_ms(100); /* the loop reads what the clients wrote */
    tap_ok(idle_ok && atomic_load(&b1.uploaded) + atomic_load(&b2.uploaded) == N && blocked &&
               atomic_load(&b1.answered) + atomic_load(&b2.answered) == 0,
           "%d deliveries (%d of them over one HTTP/2 connection) wait on a held commit; one "
           "more connection is idle",
           N, N2);
    tap_ok(lookup_blocked && atomic_load(&b3.answered) == 0,
           "one more delivery, for an app not yet cached, waits on its app lookup");

    int64_t t_term = h_now_ms();
    kill(s.pid, SIGTERM);
    h_sleep_ms(300);
    tap_ok(is_running(&s),
           "with deliveries waiting on the commit, hubbub does not exit on SIGTERM");
    int fd = tcp_connect(s.port);
    int err = errno;
    tap_ok(fd < 0 && err == ECONNREFUSED, "while draining, new connections are refused");
    if (fd >= 0)
        close(fd);
    /* A delivery on a connection that was already open: a clean refusal (or
     * a closed connection), never 200, nothing stored. */
    reqlen = h1_post_text(req, sizeof(req), 2999);
    char raw[4096];
    long late = idle >= 0 ? h1_exchange_into(idle, req, (size_t)reqlen, raw, sizeof(raw)) : -1;
    tap_ok(late == 503 || late == 0,
           "while draining, a delivery on an open keep-alive connection "
           "gets 503 or a closed connection (%ld)",
           late);
    tap_ok(late != 503 || strcasestr(raw, "\r\nconnection: close\r\n") != NULL,
           "a 503 answered while draining says Connection: close");
    static const char metrics_req[] =
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " H_ADMIN_TOKEN
        "\r\n\r\n";
    size_t mcap = 1 << 20;
    char *mraw = malloc(mcap);
    long mst = h1_exchange_into(scrape, metrics_req, sizeof(metrics_req) - 1, mraw, mcap);
    tap_ok(mst == 200 &&
               (late != 503 || strstr(mraw, "\nhubbub_webhook_deliveries_total{app=\"unknown\","
                                            "outcome=\"shutting_down\"} 1\n") != NULL),
           "/metrics, on a connection open before SIGTERM, counts it as shutting_down (%ld)", mst);
    free(mraw);
    close(scrape);

    unlock_tables(lock);
    int64_t took;
    int st = stop_timed(&s, 0, 15000, &took);
    pthread_join(b1.thread, NULL);
    pthread_join(b2.thread, NULL);
    pthread_join(b3.thread, NULL);
    tap_diag("the delivery whose app lookup was pending at SIGTERM got %ld %s", cold->status,
             cold->error);
    tap_ok(cold->status == 200 || cold->status == 503,
           "the delivery whose app lookup was pending at SIGTERM got 200 or 503 (%ld)",
           cold->status);
    tap_ok(cold->status != 200 || is_stored(db, 2990), "... and if 200, it is stored");
    posts_free(cold, 1);
    struct tally t;
    tally(db, posts, N, &t);
    int h2_ok = 0;
    for (int i = N1; i < N; i++)
        h2_ok += posts[i].status == 200 && posts[i].http_version == CURL_HTTP_VERSION_2_0;
    tap_diag("drain: %d x 200 (%d of them HTTP/2), %d x 503, %d transport errors, %d other; the "
             "late delivery got %ld; exit %lld ms after the commit was released (%lld ms after "
             "SIGTERM)",
             t.ok, h2_ok, t.unavailable, t.transport, t.other, late, (long long)took,
             (long long)(h_now_ms() - t_term));
    for (int i = 0, shown = 0; i < N && shown < 3; i++) {
        if (posts[i].status == 0) {
            tap_diag("transport error example: C%d: %s", posts[i].n, posts[i].error);
            shown++;
        }
    }
    tap_is_int(st, 0, "hubbub exits with status 0 after draining");
    tap_ok(took <= 1000,
           "it exits within 1 s of the commit going through (%lld ms), idle "
           "keep-alive connections notwithstanding",
           (long long)took);
    tap_is_int(t.ok + t.unavailable, N, "every request it had read got an answer (200 or 503)");
    tap_is_int(t.ok, N, "all the deliveries that waited on the commit got 200, HTTP/2 ones too");
    tap_is_int(t.ok_not_stored, 0, "every delivery that got 200 is stored");
    tap_ok(!is_stored(db, 2999), "the delivery refused during the drain is not stored");
    tap_ok(idle < 0 || wait_eof(idle, 100) >= 0, "the idle connection was closed");
    if (idle >= 0)
        close(idle);
    posts_free(posts, N);
}

/* ---- scenario 3: SIGTERM while answers are flowing ---- */

static int64_t busy_term_at;

static bool term_after_first(struct batch *b, struct post *p)
{
    (void)p;
    struct h_server *s = b->arg;
    if (atomic_load(&b->answered) == 3) {
        busy_term_at = h_now_ms();
        kill(s->pid, SIGTERM);
    }
    return true;
}

static void scenario_busy(struct h_db *db)
{
    struct h_server s;
    const char *env[] = {"HUBBUB_LOG_LEVEL=info", "HUBBUB_SHUTDOWN_TIMEOUT=3s", NULL};
    h_server_start(&s, db, env);
    enum { N = 100 };
    struct post *posts = calloc(N, sizeof(*posts));
    posts_init(posts, N, 3000);
    struct batch b = {0};
    b.on_done = term_after_first;
    b.arg = &s;
    batch_start(&b, &s, posts, N, 50);
    pthread_join(b.thread, NULL);
    int64_t took;
    int st = stop_timed(&s, 0, 10000, &took);
    took = h_now_ms() - busy_term_at;
    struct tally t;
    tally(db, posts, N, &t);
    tap_diag("busy: %d x 200, %d x 503, %d transport errors, %d other, %d unsent", t.ok,
             t.unavailable, t.transport, t.other, t.unsent);
    for (int i = 0, shown = 0; i < N && shown < 2; i++) {
        if (posts[i].status == 0) {
            tap_diag("transport error example: %s", posts[i].error);
            shown++;
        }
    }
    tap_is_int(t.other + t.unsent, 0,
               "with SIGTERM amid 50 concurrent posts, every answer is "
               "200, 503 or a transport error");
    tap_ok(t.ok >= 3, "the ones answered before and during the drain got 200 (%d)", t.ok);
    tap_is_int(t.ok_not_stored, 0, "none got 200 without being stored");
    tap_is_int(st, 0, "hubbub exits with status 0");
    tap_ok(took < 3000, "within HUBBUB_SHUTDOWN_TIMEOUT (3 s): %lld ms", (long long)took);
    posts_free(posts, N);
}

/* ---- scenario 4: a commit that outlasts the shutdown timeout ---- */

static void scenario_timeout(struct h_db *db)
{
    struct h_server s;
    const char *env[] = {"HUBBUB_LOG_LEVEL=info", "HUBBUB_SHUTDOWN_TIMEOUT=1s", NULL};
    h_server_start(&s, db, env);
    enum { N = 10 };
    struct post *posts = calloc(N, sizeof(*posts));
    posts_init(posts, N, 4000);
    PGconn *lock = lock_deliveries(db);
    struct batch b = {0};
    batch_start(&b, &s, posts, N, N);
    int64_t deadline = h_now_ms() + 5000;
    while (atomic_load(&b.uploaded) < N && h_now_ms() < deadline)
        h_sleep_ms(5);
    bool blocked = wait_blocked(db, 1, 5000);
    h_sleep_ms(50);
    int64_t took;
    int st = stop_timed(&s, SIGTERM, 10000, &took);
    pthread_join(b.thread, NULL);
    unlock_tables(lock);
    struct tally t;
    tally(db, posts, N, &t);
    tap_diag("timeout: exit status %d after %lld ms; %d x 200, %d x 503, %d transport errors", st,
             (long long)took, t.ok, t.unavailable, t.transport);
    tap_ok(blocked, "%d deliveries wait on a commit held past the shutdown timeout", N);
    tap_ok(took >= 900 && took <= 1700,
           "hubbub gives up after HUBBUB_SHUTDOWN_TIMEOUT (1 s): "
           "%lld ms",
           (long long)took);
    tap_ok(st != 0 && st < 128,
           "it exits by itself, with a status that says the drain failed "
           "(%d)",
           st);
    tap_is_int(t.ok, 0, "no delivery whose commit was still waiting got 200");
    posts_free(posts, N);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    tap_plan(43);

    struct h_db db;
    h_db_create(&db, "shutdown");
    h_setup_app(&db, "shutco", APP_ID, "shutdown-verify-token", SECRET);
    h_setup_app(&db, "shutco", APP2_ID, "shutdown-verify-token-2", SECRET);

    int64_t t0 = h_now_ms();
    scenario_http2(&db);
    tap_diag("scenario 1 took %lld ms", (long long)(h_now_ms() - t0));
    t0 = h_now_ms();
    scenario_drain(&db);
    tap_diag("scenario 2 took %lld ms", (long long)(h_now_ms() - t0));
    t0 = h_now_ms();
    scenario_busy(&db);
    tap_diag("scenario 3 took %lld ms", (long long)(h_now_ms() - t0));
    t0 = h_now_ms();
    scenario_timeout(&db);
    tap_diag("scenario 4 took %lld ms", (long long)(h_now_ms() - t0));

    h_db_drop(&db);
    curl_global_cleanup();
    return tap_done();
}
