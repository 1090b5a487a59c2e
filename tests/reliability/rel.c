/*
 * rel.c - the reliability programs' shared parts; see rel.h.
 */
#include "tests/reliability/rel.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

const char *const rel_fate_names[REL_NFATES] = {"unsent",          "answered", "refused",
                                                "keep-alive race", "lost",     "timeout"};

long rel_bound(const char *name, long def, long full)
{
    const char *v = getenv(name);
    if (v != NULL && v[0] != '\0')
        return strtol(v, NULL, 10);
    const char *f = getenv("HUBBUB_REL_FULL");
    return f != NULL && strcmp(f, "1") == 0 ? full : def;
}

long rel_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    return rl.rlim_cur == RLIM_INFINITY ? 1L << 30 : (long)rl.rlim_cur;
}

/* ---- one request ---- */

int rel_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
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

void rel_client_init(struct rel_client *c, int port)
{
    c->port = port;
    c->fd = -1;
    c->reused = false;
    c->err[0] = '\0';
}

void rel_client_close(struct rel_client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->reused = false;
}

/* What a careful client checks before reusing a connection (curl does):
 * whether the server has already closed it. */
static bool is_dead(int fd)
{
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 0) <= 0)
        return false;
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n <= 0; /* EOF or error; unasked-for data also means trouble */
}

static bool send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return false;
        p += k;
        n -= (size_t)k;
    }
    return true;
}

/* Case-insensitive search for a header line's value in head[0..n). */
static const char *find_header(const char *head, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p != NULL; p = strstr(p + 2, "\r\n"))
        if (strncasecmp(p + 2, name, nl) == 0 && p[2 + nl] == ':')
            return p + 2 + nl + 1;
    return NULL;
}

enum rel_fate rel_client_request(struct rel_client *c, const char *head, const void *body,
                                 size_t len, int timeout_ms, int *status)
{
    c->err[0] = '\0';
    if (c->fd >= 0 && is_dead(c->fd))
        rel_client_close(c);
    if (c->fd < 0) {
        c->fd = rel_connect(c->port);
        if (c->fd < 0) {
            snprintf(c->err, sizeof(c->err), "connect: %s", strerror(errno));
            return REL_REFUSED;
        }
        c->reused = false;
    }
    bool reused = c->reused;
    char req[1024];
    int k = snprintf(req, sizeof(req), "%s\r\nContent-Length: %zu\r\n\r\n", head, len);
    if (k < 0 || (size_t)k >= sizeof(req) || (size_t)k + len > sizeof(req) - 1) {
        snprintf(c->err, sizeof(c->err), "request too large for the test client");
        rel_client_close(c);
        return REL_LOST;
    }
    memcpy(req + k, body, len);
    if (!send_all(c->fd, req, (size_t)k + len)) {
        snprintf(c->err, sizeof(c->err), "send: %s", strerror(errno));
        rel_client_close(c);
        return reused ? REL_RACE : REL_LOST;
    }
    char buf[8192];
    size_t got = 0;
    int64_t deadline = h_now_ms() + timeout_ms;
    long need = -1; /* bytes of the whole answer, once the head is in */
    bool closes = false;
    for (;;) {
        if (need >= 0 && got >= (size_t)need)
            break;
        int64_t left = deadline - h_now_ms();
        struct pollfd p = {c->fd, POLLIN, 0};
        int pr = left > 0 ? poll(&p, 1, (int)left) : 0;
        if (pr == 0) {
            snprintf(c->err, sizeof(c->err), "no answer in %d ms", timeout_ms);
            rel_client_close(c);
            return REL_TIMEOUT;
        }
        if (pr < 0 && errno == EINTR)
            continue;
        ssize_t n = recv(c->fd, buf + got, sizeof(buf) - 1 - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            snprintf(c->err, sizeof(c->err), "%s after %zu bytes of answer",
                     n == 0 ? "EOF" : strerror(errno), got);
            rel_client_close(c);
            return got == 0 && reused ? REL_RACE : REL_LOST;
        }
        got += (size_t)n;
        buf[got] = '\0';
        if (need < 0) {
            char *end = strstr(buf, "\r\n\r\n");
            if (end == NULL) {
                if (got >= sizeof(buf) - 1) {
                    snprintf(c->err, sizeof(c->err), "answer head too large");
                    rel_client_close(c);
                    return REL_LOST;
                }
                continue;
            }
            *end = '\0';
            const char *cl = find_header(buf, "content-length");
            need = (long)(end - buf) + 4 + (cl != NULL ? strtol(cl, NULL, 10) : 0);
            bool is_cut = need > (long)sizeof(buf) - 1;
            if (is_cut)
                need = (long)sizeof(buf) - 1; /* the rest is not read: the connection closes */
            int st = 0;
            if (sscanf(buf, "HTTP/1.%*d %d", &st) != 1) {
                snprintf(c->err, sizeof(c->err), "bad status line");
                rel_client_close(c);
                return REL_LOST;
            }
            *status = st;
            const char *conn = find_header(buf, "connection");
            closes = is_cut || (conn != NULL && strcasestr(conn, "close") != NULL);
            *end = '\r';
        }
    }
    if (closes)
        rel_client_close(c);
    else
        c->reused = true;
    return REL_ANSWERED;
}

/* ---- load ---- */

static void *load_main(void *arg)
{
    struct rel_load *l = arg;
    bool fresh = atomic_fetch_add(&l->started, 1) < l->nfresh;
    struct rel_client c;
    rel_client_init(&c, l->port);
    char path_head[512];
    double per_thread = l->rate > 0 ? l->rate / l->nthreads : 0;
    int64_t t0 = h_now_ms();
    long sent_here = 0;
    while (!atomic_load(&l->stop)) {
        if (per_thread > 0) {
            int64_t due = t0 + (int64_t)(sent_here * 1000.0 / per_thread);
            int64_t now = h_now_ms();
            if (due > now) {
                h_sleep_ms((int)(due - now < 20 ? due - now : 20));
                continue;
            }
        }
        int n = atomic_fetch_add(&l->next, 1);
        if (n >= l->max)
            break;
        sent_here++;
        size_t len;
        char *body = h_comment_delivery(n, &len);
        char sig[72];
        h_sign(l->secret, body, len, sig);
        snprintf(path_head, sizeof(path_head),
                 "POST /webhooks/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 "Content-Type: application/json\r\nX-Hub-Signature-256: %s%s",
                 l->app_id, sig, fresh ? "\r\nConnection: close" : "");
        struct rel_rec *r = &l->recs[n];
        r->t_send = h_now_ms();
        int status = 0;
        enum rel_fate f = rel_client_request(&c, path_head, body, len, l->timeout_ms, &status);
        r->t_done = h_now_ms();
        r->status = (int16_t)status;
        r->fate = (uint8_t)f;
        if (f == REL_ANSWERED)
            atomic_fetch_add(&l->answered, 1);
        if (f == REL_REFUSED || (f == REL_ANSWERED && status == 503))
            h_sleep_ms(2); /* as a client backs off before trying again */
        free(body);
    }
    rel_client_close(&c);
    return NULL;
}

void rel_load_start(struct rel_load *l, int port, const char *app_id, const char *secret,
                    int nthreads, int nfresh, int max, double rate)
{
    memset(l, 0, sizeof(*l));
    l->nfresh = nfresh;
    l->port = port;
    l->app_id = app_id;
    l->secret = secret;
    l->nthreads = nthreads;
    l->max = max;
    l->rate = rate;
    l->timeout_ms = (int)rel_bound("HUBBUB_REL_ANSWER_TIMEOUT_MS", 15000, 15000);
    l->recs = calloc((size_t)max, sizeof(*l->recs));
    l->threads = calloc((size_t)nthreads, sizeof(*l->threads));
    if (l->recs == NULL || l->threads == NULL)
        tap_bail("out of memory");
    l->t_start = h_now_ms();
    for (int i = 0; i < nthreads; i++)
        if (pthread_create(&l->threads[i], NULL, load_main, l) != 0)
            tap_bail("pthread_create failed");
}

void rel_load_stop(struct rel_load *l)
{
    atomic_store(&l->stop, true);
    for (int i = 0; i < l->nthreads; i++)
        pthread_join(l->threads[i], NULL);
}

void rel_load_free(struct rel_load *l)
{
    free(l->recs);
    free(l->threads);
}

int rel_load_sent(struct rel_load *l)
{
    int n = atomic_load(&l->next);
    return n < l->max ? n : l->max;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double rel_percentile(double *v, int n, double q)
{
    if (n == 0)
        return 0;
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    int i = (int)(q / 100.0 * (n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

void rel_tally(const struct rel_load *l, int64_t from, int64_t to, struct rel_tally *t)
{
    memset(t, 0, sizeof(*t));
    int total = atomic_load(&((struct rel_load *)l)->next);
    if (total > l->max)
        total = l->max;
    double *lat = malloc(sizeof(double) * (size_t)(total > 0 ? total : 1));
    int nlat = 0;
    int64_t first = INT64_MAX, last = 0;
    for (int i = 0; i < total; i++) {
        const struct rel_rec *r = &l->recs[i];
        if (r->fate == REL_UNSENT || r->t_send < from || r->t_send >= to)
            continue;
        t->n++;
        t->by_fate[r->fate]++;
        if (r->fate != REL_ANSWERED)
            continue;
        if (r->status == 200)
            t->ok++;
        else if (r->status == 503)
            t->unavailable++;
        else
            t->other++;
        lat[nlat++] = (double)(r->t_done - r->t_send);
        if (r->t_send < first)
            first = r->t_send;
        if (r->t_done > last)
            last = r->t_done;
    }
    t->p50 = rel_percentile(lat, nlat, 50);
    t->p99 = rel_percentile(lat, nlat, 99);
    t->max = nlat > 0 ? lat[nlat - 1] : 0;
    t->per_second = nlat > 0 && last > first ? nlat * 1000.0 / (double)(last - first) : 0;
    free(lat);
}

void rel_tally_diag(const char *what, const struct rel_tally *t)
{
    tap_diag("%s: %d sent, %.0f answered/s; 200: %d, 503: %d, other: %d; refused %d, "
             "keep-alive race %d, lost %d, timeout %d; latency p50 %.0f ms, p99 %.0f ms, "
             "max %.0f ms",
             what, t->n, t->per_second, t->ok, t->unavailable, t->other, t->by_fate[REL_REFUSED],
             t->by_fate[REL_RACE], t->by_fate[REL_LOST], t->by_fate[REL_TIMEOUT], t->p50, t->p99,
             t->max);
}

int rel_missing(struct h_db *db, const struct rel_load *l, int *stored, int *dups)
{
    int total = l->max;
    bool *seen = calloc((size_t)total, sizeof(*seen));
    PQreset(db->conn);
    PGresult *res = PQexec(db->conn, "SELECT payload->'value'->>'id' FROM events");
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        tap_bail("cannot read events: %s", PQresultErrorMessage(res));
    *dups = 0;
    for (int i = 0; i < PQntuples(res); i++) {
        const char *id = PQgetvalue(res, i, 0);
        long n = id[0] == 'C' ? strtol(id + 1, NULL, 10) : -1;
        if (n >= 0 && n < total) {
            if (seen[n])
                (*dups)++;
            seen[n] = true;
        }
    }
    *stored = PQntuples(res);
    PQclear(res);
    int missing = 0;
    for (int i = 0; i < total; i++)
        if (l->recs[i].fate == REL_ANSWERED && l->recs[i].status == 200 && !seen[i] &&
            missing++ < 5)
            tap_diag("delivery C%d got 200 at +%lld ms but is not stored", i,
                     (long long)(l->recs[i].t_done - l->t_start));
    free(seen);
    return missing;
}

/* ---- processes ---- */

long rel_rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long kib = -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, "VmRSS:", 6) == 0)
            kib = strtol(line + 6, NULL, 10);
    fclose(f);
    return kib;
}

bool rel_wait_log(const struct h_server *s, const char *needle, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    for (;;) {
        char *log = h_server_log(s);
        bool found = log != NULL && strstr(log, needle) != NULL;
        free(log);
        if (found)
            return true;
        if (h_now_ms() >= deadline)
            return false;
        h_sleep_ms(5);
    }
}
