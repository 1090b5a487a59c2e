/*
 * fake_graph.c - the strict fake Graph API; see fake_graph.h.
 *
 * Shape: one accept thread and one thread per connection, blocking sockets.
 * hubbub keeps a few dozen keep-alive connections at most, so a thread each
 * is cheap and keeps the HTTP code a straight loop (read a request, answer,
 * repeat). All state lives behind one mutex: a request parses its body
 * outside it, then takes it once to record its arrival and decide the answer
 * (registry, faults, the send itself), waits without it (latency, slow
 * faults), and takes it again to record its finish, just before writing, so
 * that a client reacting to the answer never overlaps it in the counts. A
 * condition variable on the monotonic clock wakes the fg_wait_* callers.
 *
 * The waits poll the socket for POLLRDHUP: a client that timed out and hung
 * up ends its request at once (status 0), and fg_stop() cuts every wait
 * short by shutting the sockets down.
 */
#include "tests/fake_graph/fake_graph.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "api/json.h"
#include "lib/buf.h"
#include "lib/hb.h"
#include "lib/hex.h"

#define HEAD_MAX (64 * 1024)
#define BODY_MAX (1024 * 1024)
#define TEXT_MAX_CPS 1000 /* text must have fewer code points than this */
#define PAIR_BUCKETS 4096
#define MAX_HEADERS 100

/* Instagram-Login column of the seed's "Subscribe to webhook fields" table
 * (cells with permissions), plus message_edit; mentions arrives inside
 * comments there and story_insights is Facebook-Login only. */
static const char IG_FIELDS[] = "comments,live_comments,message_echoes,message_edit,"
                                "message_reactions,messages,messaging_handover,messaging_optins,"
                                "messaging_postbacks,messaging_referral,messaging_seen,standby";
/* The Page edge speaks Messenger names (PROTOCOL.md 3); the Instagram-only
 * fields come through the app-level subscription and are refused here. */
static const char FB_FIELDS[] =
    "messages,message_echoes,message_deliveries,message_reads,message_reactions,message_edits,"
    "messaging_postbacks,messaging_optins,messaging_optouts,messaging_referrals,"
    "messaging_handovers,messaging_policy_enforcement,messaging_account_linking,"
    "messaging_feedback,messaging_customer_information,response_feedback,standby,inbox_labels";

struct node {
    char *id;
    char *token; /* NULL: none valid */
    char *app_id;
    char *fields; /* csv, NULL: not subscribed */
    struct node *next;
};

struct pair {
    char *node;
    char *recipient;
    int cur, max;
    long sent;
    struct pair *next;
};

struct rule {
    enum fg_kind kind;
    char *node;
    char *recipient;
    enum fg_mode mode;
    int left; /* < 0: endless */
    int slow_ms;
    int regain_minutes;
};

struct conn {
    struct fg *fg;
    int fd; /* -1 once the thread closed it */
    bool is_done;
    pthread_t thread;
    struct conn *next;
};

struct fg {
    enum fg_flavour flavour;
    char version[32];
    char base[64];
    char env[128];
    int port;
    int listen_fd;
    pthread_t accept_thread;

    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool is_stopping;
    struct conn *conns;

    struct node *nodes;
    char *valid_fields; /* csv, NULL: the flavour's */
    int latency_ms;
    int app_usage;
    int slow_ms;
    int regain_minutes;
    uint64_t rng;
    long mid_counter;

    struct rule *rules;
    size_t nrules, caprules;

    struct fg_request *recs;
    size_t nrecs, caprecs;
    long rec_base; /* seq of recs[0] */
    long next_seq;
    struct fg_send *sends;
    size_t nsends, capsends;
    struct pair *pairs[PAIR_BUCKETS];
    int in_flight, max_in_flight;
};

/* ---- small helpers ---- */

static int64_t clock_us(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static char *dup_or_null(const char *s)
{
    return s != NULL ? xstrdup(s) : NULL;
}

static bool str_eq(const char *a, const char *b)
{
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

static uint64_t rng_next(struct fg *fg) /* xorshift64*, under mu */
{
    fg->rng ^= fg->rng >> 12;
    fg->rng ^= fg->rng << 25;
    fg->rng ^= fg->rng >> 27;
    return fg->rng * 2685821657736338717ULL;
}

static void random_chars(struct fg *fg, char *out, size_t n)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    for (size_t i = 0; i < n; i++)
        out[i] = alphabet[rng_next(fg) % 64];
    out[n] = '\0';
}

static void base64_append(struct buf *out, const unsigned char *in, size_t n, bool is_url)
{
    const char *a = is_url ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                           : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        buf_putc(out, a[(v >> 18) & 63]);
        buf_putc(out, a[(v >> 12) & 63]);
        if (i + 1 < n)
            buf_putc(out, a[(v >> 6) & 63]);
        if (i + 2 < n)
            buf_putc(out, a[v & 63]);
    }
}

/* Percent-decodes s[0..n) with '+' as space; a malformed escape stays as is. */
static void pct_decode(struct buf *out, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') {
            buf_putc(out, ' ');
        } else if (s[i] == '%' && i + 2 < n && hex_value((unsigned char)s[i + 1]) >= 0 &&
                   hex_value((unsigned char)s[i + 2]) >= 0) {
            buf_putc(out, (char)(hex_value((unsigned char)s[i + 1]) * 16 +
                                 hex_value((unsigned char)s[i + 2])));
            i += 2;
        } else {
            buf_putc(out, s[i]);
        }
    }
}

/* The decoded value of the first name=value in a urlencoded s[0..n), or
 * NULL. A name without '=' has the value "". Caller frees. */
static char *form_get(const char *s, size_t n, const char *name)
{
    if (s == NULL)
        return NULL;
    const char *p = s, *end = s + n;
    struct buf k;
    buf_init(&k);
    char *found = NULL;
    while (p < end && found == NULL) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp != NULL ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(e - p));
        const char *ke = eq != NULL ? eq : e;
        buf_reset(&k);
        pct_decode(&k, p, (size_t)(ke - p));
        if (k.data != NULL && strcmp(k.data, name) == 0) {
            struct buf v;
            buf_init(&v);
            buf_append(&v, "", 0);
            if (eq != NULL)
                pct_decode(&v, eq + 1, (size_t)(e - eq - 1));
            found = buf_steal(&v);
        }
        p = e + 1;
    }
    buf_dispose(&k);
    return found;
}

static size_t count_code_points(const char *s, size_t n)
{
    size_t cps = 0;
    for (size_t i = 0; i < n; i++)
        cps += ((unsigned char)s[i] & 0xC0) != 0x80;
    return cps;
}

/* Splits a csv into a NULL-terminated array of copies (empty items kept). */
static char **csv_split(const char *csv, size_t *n)
{
    size_t cnt = 1;
    for (const char *p = csv; *p != '\0'; p++)
        cnt += *p == ',';
    char **v = xcalloc(cnt + 1, sizeof(*v));
    const char *p = csv;
    for (size_t i = 0; i < cnt; i++) {
        const char *c = strchr(p, ',');
        size_t len = c != NULL ? (size_t)(c - p) : strlen(p);
        v[i] = xstrndup(p, len);
        p += len + 1;
    }
    *n = cnt;
    return v;
}

static void strv_free(char **v)
{
    if (v == NULL)
        return;
    for (char **p = v; *p != NULL; p++)
        free(*p);
    free(v);
}

static bool csv_has(const char *csv, const char *item)
{
    size_t n = strlen(item);
    const char *p = csv;
    while (p != NULL && *p != '\0') {
        const char *c = strchr(p, ',');
        size_t len = c != NULL ? (size_t)(c - p) : strlen(p);
        if (len == n && memcmp(p, item, n) == 0)
            return true;
        p = c != NULL ? c + 1 : NULL;
    }
    return false;
}

/* Whether two csv lists hold the same set of names (NULL and "" are empty). */
static bool csv_same_set(const char *a, const char *b)
{
    bool is_a_empty = a == NULL || *a == '\0', is_b_empty = b == NULL || *b == '\0';
    if (is_a_empty || is_b_empty)
        return is_a_empty == is_b_empty;
    size_t na, nb;
    char **va = csv_split(a, &na), **vb = csv_split(b, &nb);
    bool is_same = true;
    for (size_t i = 0; i < na && is_same; i++)
        is_same = csv_has(b, va[i]);
    for (size_t i = 0; i < nb && is_same; i++)
        is_same = csv_has(a, vb[i]);
    strv_free(va);
    strv_free(vb);
    return is_same;
}

/* ---- registry and records (under mu) ---- */

static struct node *node_find(struct fg *fg, const char *id)
{
    for (struct node *n = fg->nodes; n != NULL; n = n->next)
        if (strcmp(n->id, id) == 0)
            return n;
    return NULL;
}

static struct node *node_by_token(struct fg *fg, const char *token)
{
    for (struct node *n = fg->nodes; n != NULL; n = n->next)
        if (str_eq(n->token, token))
            return n;
    return NULL;
}

static unsigned pair_hash(const char *node, const char *recipient)
{
    uint32_t h = 2166136261u;
    for (const char *p = node; *p != '\0'; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    h = (h ^ 0x1f) * 16777619u;
    for (const char *p = recipient; *p != '\0'; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return h % PAIR_BUCKETS;
}

static struct pair *pair_get(struct fg *fg, const char *node, const char *recipient, bool create)
{
    unsigned h = pair_hash(node, recipient);
    for (struct pair *p = fg->pairs[h]; p != NULL; p = p->next)
        if (strcmp(p->node, node) == 0 && strcmp(p->recipient, recipient) == 0)
            return p;
    if (!create)
        return NULL;
    struct pair *p = xcalloc(1, sizeof(*p));
    p->node = xstrdup(node);
    p->recipient = xstrdup(recipient);
    p->next = fg->pairs[h];
    fg->pairs[h] = p;
    return p;
}

static struct fg_request *rec_find(struct fg *fg, long seq)
{
    long i = seq - fg->rec_base;
    if (i < 0 || (size_t)i >= fg->nrecs || fg->recs[i].seq != seq)
        return NULL;
    return &fg->recs[i];
}

static void request_dispose(struct fg_request *r)
{
    free(r->method);
    free(r->path);
    free(r->query);
    free(r->headers);
    free(r->body);
    free(r->token);
    free(r->node);
    free(r->recipient);
    free(r->message_id);
}

static void send_dispose(struct fg_send *s)
{
    free(s->node);
    free(s->recipient);
    free(s->text);
    free(s->message_id);
}

static bool match_ok(const struct fg_match *m, enum fg_kind kind, const char *node,
                     const char *recipient)
{
    if (m->kind != FG_ANY && m->kind != kind)
        return false;
    if (m->node != NULL && !str_eq(m->node, node))
        return false;
    if (m->recipient != NULL && (kind != FG_SEND || !str_eq(m->recipient, recipient)))
        return false;
    return true;
}

/* ---- HTTP: reading a request ---- */

struct hdr {
    const char *name;
    const char *value;
};

struct http_req {
    char *head; /* the request line and headers, NULs written in */
    char *raw_headers;
    const char *method;
    const char *target;
    bool is_http10;
    struct hdr h[MAX_HEADERS];
    int nh;
    const char *body; /* points into the connection buffer */
    size_t body_len;
    size_t total_len; /* head + body bytes consumed */
};

static const char *hdr_get(const struct http_req *r, const char *name)
{
    for (int i = 0; i < r->nh; i++)
        if (strcasecmp(r->h[i].name, name) == 0)
            return r->h[i].value;
    return NULL;
}

static bool send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Reads more bytes into in; false on EOF or error. */
static bool read_more(int fd, struct buf *in)
{
    buf_reserve(in, 16384);
    for (;;) {
        ssize_t r = recv(fd, in->data + in->len, in->cap - in->len - 1, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        in->len += (size_t)r;
        in->data[in->len] = '\0';
        return true;
    }
}

static void answer_plain(int fd, int status, const char *reason)
{
    char out[256];
    int n = snprintf(out, sizeof(out),
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s\n",
                     status, reason, strlen(reason) + 1, reason);
    send_all(fd, out, (size_t)n);
}

static int parse_head(struct http_req *r, size_t head_len)
{
    char *line_end = strstr(r->head, "\r\n");
    *line_end = '\0';
    char *sp1 = strchr(r->head, ' ');
    char *sp2 = sp1 != NULL ? strchr(sp1 + 1, ' ') : NULL;
    if (sp1 == NULL || sp2 == NULL || sp1 == r->head || sp2[1] == '\0')
        return -1;
    *sp1 = '\0';
    *sp2 = '\0';
    for (const char *p = r->head; *p != '\0'; p++)
        if (*p < 'A' || *p > 'Z')
            return -1;
    if (sp1[1] != '/')
        return -1;
    if (strcmp(sp2 + 1, "HTTP/1.1") == 0)
        r->is_http10 = false;
    else if (strcmp(sp2 + 1, "HTTP/1.0") == 0)
        r->is_http10 = true;
    else
        return -1;
    r->method = r->head;
    r->target = sp1 + 1;

    char *p = line_end + 2;
    r->raw_headers = xstrndup(p, head_len - (size_t)(p - r->head));
    while (*p != '\0') {
        char *e = strstr(p, "\r\n");
        if (e == NULL)
            break;
        *e = '\0';
        if (e == p)
            break;
        char *colon = strchr(p, ':');
        if (colon == NULL || colon == p || r->nh == MAX_HEADERS)
            return -1;
        *colon = '\0';
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        char *ve = v + strlen(v);
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            *--ve = '\0';
        r->h[r->nh].name = p;
        r->h[r->nh].value = v;
        r->nh++;
        p = e + 2;
    }
    return 0;
}

/* Reads one request from the connection: 0 and r filled, 1 on a clean end
 * (EOF, stop), or -1 after answering a malformed request (close then). */
static int read_request(struct conn *c, struct buf *in, struct http_req *r)
{
    memset(r, 0, sizeof(*r));
    char *end;
    while ((end = in->len > 0 ? memmem(in->data, in->len, "\r\n\r\n", 4) : NULL) == NULL) {
        if (in->len > HEAD_MAX) {
            answer_plain(c->fd, 431, "Request Header Fields Too Large");
            return -1;
        }
        if (!read_more(c->fd, in))
            return 1;
    }
    size_t head_len = (size_t)(end - in->data) + 4;
    r->head = xstrndup(in->data, head_len);
    if (parse_head(r, head_len) != 0) {
        answer_plain(c->fd, 400, "Bad Request");
        return -1;
    }
    if (hdr_get(r, "Transfer-Encoding") != NULL) {
        answer_plain(c->fd, 411, "Length Required");
        return -1;
    }
    size_t cl = 0;
    bool has_cl = false;
    for (int i = 0; i < r->nh; i++) {
        if (strcasecmp(r->h[i].name, "Content-Length") != 0)
            continue;
        const char *v = r->h[i].value;
        char *e;
        errno = 0;
        unsigned long long n = strtoull(v, &e, 10);
        if (*v < '0' || *v > '9' || *e != '\0' || errno != 0 || (has_cl && n != cl)) {
            answer_plain(c->fd, 400, "Bad Content-Length");
            return -1;
        }
        if (n > BODY_MAX) {
            answer_plain(c->fd, 413, "Payload Too Large");
            return -1;
        }
        cl = (size_t)n;
        has_cl = true;
    }
    const char *expect = hdr_get(r, "Expect");
    if (expect != NULL) {
        if (strcasecmp(expect, "100-continue") != 0) {
            answer_plain(c->fd, 417, "Expectation Failed");
            return -1;
        }
        if (cl > 0 && in->len < head_len + cl) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            if (!send_all(c->fd, cont, sizeof(cont) - 1))
                return 1;
        }
    }
    while (in->len < head_len + cl)
        if (!read_more(c->fd, in))
            return 1;
    r->body = in->data + head_len;
    r->body_len = cl;
    r->total_len = head_len + cl;
    return 0;
}

static void http_req_dispose(struct http_req *r)
{
    free(r->head);
    free(r->raw_headers);
}

/* ---- deciding the answer ---- */

struct answer {
    int status;
    const char *ctype;
    struct buf body;
    struct buf headers; /* extra header lines, each ending in \r\n */
    int error_code;
    bool is_injected;
    int delay_ms;
    int app_usage;
};

/* What the request says, parsed outside the lock. */
struct parsed {
    enum fg_kind kind;
    char *segs[4];
    int nsegs; /* path segments, capped at 4 (the 4th holds the rest) */
    char *token;
    enum fg_token_where token_where;
    bool is_form, is_json;
    struct json_doc doc;
    bool has_doc;
    const char *json_why; /* the body is JSON but did not parse */
    char *recipient;
};

static void graph_error(struct fg *fg, struct answer *a, int status, const char *message,
                        const char *type, int code, int subcode, int transient)
{
    char trace[16];
    random_chars(fg, trace, 11);
    buf_reset(&a->body);
    buf_puts(&a->body, "{\"error\":{\"message\":");
    json_write_cstr(&a->body, message);
    buf_printf(&a->body, ",\"type\":\"%s\",\"code\":%d", type, code);
    if (subcode != 0)
        buf_printf(&a->body, ",\"error_subcode\":%d", subcode);
    if (transient >= 0)
        buf_printf(&a->body, ",\"is_transient\":%s", transient ? "true" : "false");
    buf_printf(&a->body, ",\"fbtrace_id\":\"%s\"}}", trace);
    buf_printf(&a->headers, "x-fb-trace-id: %s\r\n", trace);
    if (code == 190 || code == 104) {
        buf_printf(&a->headers, "WWW-Authenticate: OAuth \"Facebook Platform\" \"%s\" \"",
                   code == 190 ? "invalid_token" : "invalid_request");
        for (const char *p = message; *p != '\0'; p++)
            if (*p != '"' && *p != '\r' && *p != '\n')
                buf_putc(&a->headers, *p);
        buf_puts(&a->headers, "\"\r\n");
    }
    a->status = status;
    a->ctype = "application/json; charset=UTF-8";
    a->error_code = code;
}

static void param_error(struct fg *fg, struct answer *a, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void param_error(struct fg *fg, struct answer *a, const char *fmt, ...)
{
    struct buf m;
    buf_init(&m);
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&m, fmt, ap);
    va_end(ap);
    graph_error(fg, a, 400, m.data, "OAuthException", 100, 0, -1);
    buf_dispose(&m);
}

static void unsupported(struct fg *fg, struct answer *a, const char *method, const char *object)
{
    struct buf m;
    buf_init(&m);
    char lower[16];
    size_t i = 0;
    for (; method[i] != '\0' && i < sizeof(lower) - 1; i++)
        lower[i] = (char)(method[i] >= 'A' && method[i] <= 'Z' ? method[i] + 32 : method[i]);
    lower[i] = '\0';
    buf_printf(&m,
               "Unsupported %s request. Object with ID '%s' does not exist, cannot be loaded due "
               "to missing permissions, or does not support this operation. Please read the Graph "
               "API documentation at https://developers.facebook.com/docs/graph-api",
               lower, object);
    graph_error(fg, a, 400, m.data, "GraphMethodException", 100, 33, -1);
    buf_dispose(&m);
}

static void success(struct answer *a, const char *json)
{
    buf_reset(&a->body);
    buf_puts(&a->body, json);
    a->status = 200;
    a->ctype = "application/json; charset=UTF-8";
    a->error_code = 0;
}

static const char *valid_fields(const struct fg *fg)
{
    if (fg->valid_fields != NULL)
        return fg->valid_fields;
    return fg->flavour == FG_INSTAGRAM ? IG_FIELDS : FB_FIELDS;
}

/* ---- the Send API body ---- */

struct send_msg {
    struct buf text; /* what fg_sent reports */
};

static void key_path(struct buf *out, const char *prefix, const struct json_doc *d, int key)
{
    buf_reset(out);
    struct buf k;
    buf_init(&k);
    json_string_decode(d, key, &k);
    if (prefix == NULL)
        buf_puts(out, k.data != NULL ? k.data : "");
    else
        buf_printf(out, "%s[%s]", prefix, k.data != NULL ? k.data : "");
    buf_dispose(&k);
}

/* Checks that object obj has only keys from allowed (csv); false after
 * answering the first other one. */
static bool only_keys(struct fg *fg, struct answer *a, const struct json_doc *d, int obj,
                      const char *prefix, const char *allowed)
{
    int k = obj + 1;
    bool is_ok = true;
    struct buf kb, path;
    buf_init(&kb);
    buf_init(&path);
    for (int i = 0; i < d->toks[obj].size && is_ok; i++) {
        buf_reset(&kb);
        json_string_decode(d, k, &kb);
        if (kb.data == NULL || !csv_has(allowed, kb.data) || kb.data[0] == '\0') {
            key_path(&path, prefix, d, k);
            param_error(fg, a, "(#100) Param %s is not allowed", path.data);
            is_ok = false;
        }
        k = json_next(d, k);
    }
    buf_dispose(&kb);
    buf_dispose(&path);
    return is_ok;
}

static bool is_digits(const char *s)
{
    if (s == NULL || *s == '\0')
        return false;
    for (; *s != '\0'; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

static char *string_value(const struct json_doc *d, int i)
{
    struct buf b;
    buf_init(&b);
    buf_append(&b, "", 0);
    json_string_decode(d, i, &b);
    return buf_steal(&b);
}

/* Validates a Send API body; true with msg->text set, or false after
 * answering the error. */
static bool check_send(struct fg *fg, struct answer *a, const struct parsed *p,
                       struct send_msg *msg)
{
    const struct json_doc *d = &p->doc;
    if (!p->is_json) {
        param_error(fg, a,
                    "(#100) The Send API takes a JSON body (Content-Type: "
                    "application/json)");
        return false;
    }
    if (!p->has_doc) {
        param_error(fg, a, "(#100) Invalid JSON in the request body: %s",
                    p->json_why != NULL ? p->json_why : "empty");
        return false;
    }
    if (!json_is_object(d, 0)) {
        param_error(fg, a, "(#100) The request body must be a JSON object");
        return false;
    }
    if (!only_keys(fg, a, d, 0, NULL, "recipient,message,messaging_type,tag,access_token"))
        return false;

    int rcp = json_get(d, 0, "recipient");
    if (rcp < 0) {
        param_error(fg, a, "(#100) The parameter recipient is required");
        return false;
    }
    if (!json_is_object(d, rcp)) {
        param_error(fg, a, "(#100) Param recipient must be a JSON object");
        return false;
    }
    if (!only_keys(fg, a, d, rcp, "recipient", "id"))
        return false;
    int id = json_get(d, rcp, "id");
    if (id < 0) {
        param_error(fg, a, "(#100) The parameter recipient[id] is required");
        return false;
    }
    char *ids = json_is_string(d, id) ? string_value(d, id) : NULL;
    bool is_id_ok = is_digits(ids);
    free(ids);
    if (!is_id_ok) {
        param_error(fg, a, "(#100) Param recipient[id] must be a valid ID string (e.g., \"123\")");
        return false;
    }

    int m = json_get(d, 0, "message");
    if (m < 0) {
        param_error(fg, a, "(#100) The parameter message is required");
        return false;
    }
    if (!json_is_object(d, m)) {
        param_error(fg, a, "(#100) Param message must be a JSON object");
        return false;
    }
    if (!only_keys(fg, a, d, m, "message", "text,attachment,reply_to"))
        return false;
    int text = json_get(d, m, "text"), att = json_get(d, m, "attachment");
    if (text >= 0 && att >= 0) {
        param_error(fg, a, "(#100) Only one of message[text] and message[attachment] may be set");
        return false;
    }
    if (text < 0 && att < 0) {
        param_error(fg, a, "(#100) One of message[text] or message[attachment] is required");
        return false;
    }
    if (text >= 0) {
        if (!json_is_string(d, text)) {
            param_error(fg, a, "(#100) Param message[text] must be a string");
            return false;
        }
        json_string_decode(d, text, &msg->text);
        if (msg->text.len == 0) {
            param_error(fg, a, "(#100) Param message[text] must be non-empty");
            return false;
        }
        if (count_code_points(msg->text.data, msg->text.len) >= TEXT_MAX_CPS) {
            param_error(fg, a, "(#100) Length of param message[text] must be less than %d",
                        TEXT_MAX_CPS);
            return false;
        }
    } else {
        if (!json_is_object(d, att)) {
            param_error(fg, a, "(#100) Param message[attachment] must be a JSON object");
            return false;
        }
        if (!only_keys(fg, a, d, att, "message[attachment]", "type,payload"))
            return false;
        int type = json_get(d, att, "type"), payload = json_get(d, att, "payload");
        char *ts = json_is_string(d, type) ? string_value(d, type) : NULL;
        bool is_type_ok = ts != NULL && csv_has("image,video,audio,file", ts) && *ts != '\0';
        if (!is_type_ok) {
            param_error(fg, a,
                        "(#100) Param message[attachment][type] must be one of {image, video, "
                        "audio, file}");
            free(ts);
            return false;
        }
        if (payload < 0 || !json_is_object(d, payload)) {
            param_error(fg, a, "(#100) Param message[attachment][payload] must be a JSON object");
            free(ts);
            return false;
        }
        if (!only_keys(fg, a, d, payload, "message[attachment][payload]", "url")) {
            free(ts);
            return false;
        }
        int url = json_get(d, payload, "url");
        char *us = json_is_string(d, url) ? string_value(d, url) : NULL;
        if (us == NULL || (strncmp(us, "https://", 8) != 0 && strncmp(us, "http://", 7) != 0)) {
            param_error(fg, a,
                        "(#100) Param message[attachment][payload][url] must be a valid "
                        "URL");
            free(ts);
            free(us);
            return false;
        }
        buf_printf(&msg->text, "%s:%s", ts, us);
        free(ts);
        free(us);
    }
    int reply = json_get(d, m, "reply_to");
    if (reply >= 0) {
        if (!json_is_object(d, reply)) {
            param_error(fg, a, "(#100) Param message[reply_to] must be a JSON object");
            return false;
        }
        if (!only_keys(fg, a, d, reply, "message[reply_to]", "mid"))
            return false;
        int mid = json_get(d, reply, "mid");
        if (mid < 0 || !json_is_string(d, mid) || d->toks[mid].end == d->toks[mid].start) {
            param_error(fg, a, "(#100) Param message[reply_to][mid] must be a non-empty string");
            return false;
        }
    }

    int mt = json_get(d, 0, "messaging_type"), tag = json_get(d, 0, "tag");
    char *mts = json_is_string(d, mt) ? string_value(d, mt) : NULL;
    char *tags = json_is_string(d, tag) ? string_value(d, tag) : NULL;
    bool is_ok = false;
    const char *tags_ok = fg->flavour == FG_INSTAGRAM
                              ? "HUMAN_AGENT"
                              : "HUMAN_AGENT,ACCOUNT_UPDATE,"
                                "CONFIRMED_EVENT_UPDATE,POST_PURCHASE_UPDATE";
    if (mt >= 0 && (mts == NULL || *mts == '\0' || !csv_has("RESPONSE,UPDATE,MESSAGE_TAG", mts))) {
        param_error(fg, a,
                    "(#100) Param messaging_type must be one of {RESPONSE, UPDATE, MESSAGE_TAG}");
    } else if (str_eq(mts, "MESSAGE_TAG") && tag < 0) {
        param_error(fg, a, "(#100) Param tag is required when messaging_type is MESSAGE_TAG");
    } else if (tag >= 0 && !str_eq(mts, "MESSAGE_TAG")) {
        param_error(fg, a, "(#100) Param tag is only allowed when messaging_type is MESSAGE_TAG");
    } else if (tag >= 0 && (tags == NULL || *tags == '\0' || !csv_has(tags_ok, tags))) {
        param_error(fg, a, "(#100) Param tag must be one of {%s}", tags_ok);
    } else {
        int at = json_get(d, 0, "access_token");
        if (at >= 0 && !json_is_string(d, at))
            param_error(fg, a, "(#100) Param access_token must be a string");
        else
            is_ok = true;
    }
    free(mts);
    free(tags);
    return is_ok;
}

/* The subscribed_fields parameter, from the query, a form or a JSON body, as
 * a csv: NULL when absent. A JSON array (in any of them) is joined. */
static char *fields_param(const struct parsed *p, const char *query, const char *body,
                          size_t body_len, bool *is_bad_json)
{
    char *v = form_get(query, query != NULL ? strlen(query) : 0, "subscribed_fields");
    if (v == NULL && p->is_form)
        v = form_get(body, body_len, "subscribed_fields");
    struct buf out;
    buf_init(&out);
    *is_bad_json = false;
    if (v == NULL && p->has_doc && json_is_object(&p->doc, 0)) {
        int f = json_get(&p->doc, 0, "subscribed_fields");
        if (f >= 0 && json_is_string(&p->doc, f)) {
            v = string_value(&p->doc, f);
        } else if (f >= 0 && json_is_array(&p->doc, f)) {
            buf_append(&out, "", 0);
            int e = f + 1;
            for (int i = 0; i < p->doc.toks[f].size; i++) {
                if (!json_is_string(&p->doc, e))
                    *is_bad_json = true;
                if (i > 0)
                    buf_putc(&out, ',');
                json_string_decode(&p->doc, e, &out);
                e = json_next(&p->doc, e);
            }
            return buf_steal(&out);
        } else if (f >= 0) {
            *is_bad_json = true;
            return xstrdup("");
        }
    }
    if (v != NULL && v[0] == '[') {
        struct json_doc d;
        const char *why;
        buf_append(&out, "", 0);
        if (json_parse(&d, v, strlen(v), 4, &why) != 0 || !json_is_array(&d, 0)) {
            *is_bad_json = true;
        } else {
            int e = 1;
            for (int i = 0; i < d.toks[0].size; i++) {
                if (!json_is_string(&d, e))
                    *is_bad_json = true;
                if (i > 0)
                    buf_putc(&out, ',');
                json_string_decode(&d, e, &out);
                e = json_next(&d, e);
            }
            json_doc_dispose(&d);
        }
        free(v);
        return buf_steal(&out);
    }
    return v;
}

static void fields_list_error(struct fg *fg, struct answer *a, size_t index, const char *got)
{
    struct buf m;
    buf_init(&m);
    buf_printf(&m, "(#100) Param subscribed_fields[%zu] must be one of {", index);
    const char *vf = valid_fields(fg);
    for (const char *c = vf; *c != '\0'; c++) {
        if (*c == ',')
            buf_puts(&m, ", ");
        else
            buf_putc(&m, *c);
    }
    buf_printf(&m, "} - got \"%s\"", got);
    graph_error(fg, a, 400, m.data, "OAuthException", 100, 0, -1);
    buf_dispose(&m);
}

/* Validates the list and returns it deduplicated, or NULL after answering. */
static char *check_fields(struct fg *fg, struct answer *a, const char *csv, bool is_bad_json)
{
    if (csv == NULL || *csv == '\0') {
        if (is_bad_json)
            param_error(fg, a, "(#100) Param subscribed_fields must be an array of strings");
        else
            param_error(fg, a, "(#100) The parameter subscribed_fields is required");
        return NULL;
    }
    if (is_bad_json) {
        param_error(fg, a, "(#100) Param subscribed_fields must be an array of strings");
        return NULL;
    }
    size_t n;
    char **v = csv_split(csv, &n);
    struct buf out;
    buf_init(&out);
    buf_append(&out, "", 0);
    char *result = NULL;
    for (size_t i = 0; i < n; i++) {
        if (v[i][0] == '\0' || !csv_has(valid_fields(fg), v[i])) {
            fields_list_error(fg, a, i, v[i]);
            goto out;
        }
        if (!csv_has(out.data, v[i])) {
            if (out.len > 0)
                buf_putc(&out, ',');
            buf_puts(&out, v[i]);
        }
    }
    result = buf_steal(&out);
out:
    buf_dispose(&out);
    strv_free(v);
    return result;
}

static void new_mid(struct fg *fg, struct buf *out, const char *node, const char *recipient)
{
    struct buf raw;
    buf_init(&raw);
    char rnd[48];
    random_chars(fg, rnd, 40);
    long seq = ++fg->mid_counter;
    buf_reset(out);
    if (fg->flavour == FG_INSTAGRAM) {
        buf_printf(&raw, "ig_message_item:1:IGMessageThread:%s:%s:%ld:%s:fake-graph", node,
                   recipient, seq, rnd);
        while (raw.len < 132)
            buf_putc(&raw, (char)('a' + rng_next(fg) % 26));
        base64_append(out, (const unsigned char *)raw.data, raw.len, false);
    } else {
        buf_puts(out, "m_");
        buf_printf(&raw, "%s:%s:%ld:%s", node, recipient, seq, rnd);
        base64_append(out, (const unsigned char *)raw.data, raw.len, true);
    }
    buf_dispose(&raw);
}

static void apply_fault(struct fg *fg, struct answer *a, const struct rule *r, const char *node,
                        enum fg_kind kind)
{
    int regain = r->regain_minutes;
    const char *buc_type = kind == FG_SEND               ? "messenger"
                           : fg->flavour == FG_INSTAGRAM ? "instagram"
                                                         : "pages";
    bool has_buc = false;
    a->is_injected = true;
    switch (r->mode) {
    case FG_HTTP_500:
        buf_reset(&a->body);
        buf_puts(&a->body, "<!DOCTYPE html><html><head><title>Error</title></head><body>"
                           "<h1>500 Internal Server Error</h1></body></html>");
        a->status = 500;
        a->ctype = "text/html; charset=utf-8";
        a->error_code = 0;
        break;
    case FG_ERR_1:
        graph_error(fg, a, 500, "An unknown error has occurred.", "OAuthException", 1, 0, 1);
        break;
    case FG_ERR_2:
    case FG_SLOW:
        graph_error(fg, a, 500,
                    "An unexpected error has occurred. Please retry your request later.",
                    "OAuthException", 2, 0, 1);
        if (r->mode == FG_SLOW)
            a->delay_ms += r->slow_ms;
        break;
    case FG_ERR_1200:
        graph_error(fg, a, 500, "Temporary send message failure. Please try again later",
                    "OAuthException", 1200, 0, 1);
        break;
    case FG_ERR_4:
        graph_error(fg, a, 403, "(#4) Application request limit reached", "OAuthException", 4, 0,
                    1);
        a->app_usage = 100;
        break;
    case FG_ERR_17:
        graph_error(fg, a, 400, "(#17) User request limit reached", "OAuthException", 17, 2446079,
                    1);
        has_buc = true;
        break;
    case FG_ERR_32:
        graph_error(fg, a, 400, "(#32) Page request limit reached", "OAuthException", 32, 0, 1);
        has_buc = true;
        break;
    case FG_ERR_613:
        graph_error(fg, a, 400, "(#613) Calls to this api have exceeded the rate limit.",
                    "OAuthException", 613, 0, 1);
        has_buc = true;
        break;
    case FG_ERR_80002:
        graph_error(fg, a, 400,
                    "(#80002) There have been too many calls to this Instagram account. Wait a bit "
                    "and try again. For more info, please refer to "
                    "https://developers.facebook.com/docs/graph-api/overview/rate-limiting.",
                    "OAuthException", 80002, 0, 1);
        has_buc = true;
        break;
    case FG_ERR_190:
        graph_error(fg, a, 400,
                    "Error validating access token: The session has been invalidated because the "
                    "user changed their password or Facebook has changed the session for security "
                    "reasons.",
                    "OAuthException", 190, 460, 0);
        break;
    case FG_ERR_200:
        graph_error(fg, a, 403,
                    "(#200) Requires instagram_manage_messages permission to manage the object",
                    "OAuthException", 200, 0, 0);
        break;
    case FG_ERR_10_WINDOW:
        graph_error(fg, a, 400,
                    "(#10) This message is sent outside of allowed window. Learn more about the "
                    "new policy here: https://developers.facebook.com/docs/messenger-platform/"
                    "policy-overview",
                    "OAuthException", 10, 2018278, 0);
        break;
    case FG_ERR_100:
        graph_error(fg, a, 400, "(#100) No matching user found", "OAuthException", 100, 2018001, 0);
        break;
    case FG_ERR_368:
        graph_error(fg, a, 400,
                    "The action attempted has been deemed abusive or is otherwise disallowed",
                    "OAuthException", 368, 1390008, 0);
        break;
    case FG_ERR_551:
        graph_error(fg, a, 400, "This person isn't available right now.", "OAuthException", 551,
                    1545041, 0);
        break;
    case FG_SLOW_ACCEPTED:
        break; /* the caller does the work; only the delay is ours */
    }
    if (has_buc)
        buf_printf(
            &a->headers,
            "X-Business-Use-Case-Usage: {\"%s\":[{\"type\":\"%s\",\"call_count\":100,"
            "\"total_cputime\":24,\"total_time\":31,\"estimated_time_to_regain_access\":%d}]}"
            "\r\n",
            node, buc_type, regain);
}

static const struct rule *take_rule(struct fg *fg, enum fg_kind kind, const char *node,
                                    const char *recipient)
{
    for (size_t i = 0; i < fg->nrules; i++) {
        struct rule *r = &fg->rules[i];
        if (r->left == 0)
            continue;
        struct fg_match m = {r->kind, r->node, r->recipient};
        if (!match_ok(&m, kind, node, recipient))
            continue;
        if (r->left > 0)
            r->left--;
        return r;
    }
    return NULL;
}

/* Decides the answer; under mu. *node_out gets the node addressed. */
static void decide(struct fg *fg, struct answer *a, struct parsed *p, const struct http_req *hr,
                   const char *query, long seq, char **node_out)
{
    const char *object = p->nsegs > 0 ? p->segs[0] : "";
    if (p->nsegs == 0) {
        graph_error(fg, a, 400, "Unknown path components: /", "OAuthException", 2500, 0, -1);
        return;
    }
    if (strcmp(object, fg->version) != 0) {
        unsupported(fg, a, hr->method, object);
        return;
    }
    if (p->token == NULL) {
        graph_error(fg, a, 400, "An access token is required to request this resource.",
                    "OAuthException", 104, 0, -1);
        return;
    }
    struct node *owner = node_by_token(fg, p->token);
    if (owner == NULL) {
        graph_error(fg, a, 400, "Invalid OAuth access token - Cannot parse access token",
                    "OAuthException", 190, 0, -1);
        return;
    }
    if (p->nsegs < 2) {
        graph_error(fg, a, 400, "Unknown path components: /", "OAuthException", 2500, 0, -1);
        return;
    }
    struct node *n = strcmp(p->segs[1], "me") == 0 ? owner : node_find(fg, p->segs[1]);
    *node_out = xstrdup(n != NULL ? n->id : p->segs[1]);
    if (n == NULL) {
        unsupported(fg, a, hr->method, p->segs[1]);
        return;
    }
    if (n != owner) {
        graph_error(fg, a, 400, "Invalid OAuth access token - Cannot parse access token",
                    "OAuthException", 190, 0, -1);
        return;
    }
    if (p->nsegs != 3 ||
        (strcmp(p->segs[2], "subscribed_apps") != 0 && strcmp(p->segs[2], "messages") != 0)) {
        struct buf m;
        buf_init(&m);
        buf_puts(&m, "Unknown path components: ");
        for (int i = 2; i < p->nsegs; i++)
            buf_printf(&m, "/%s", p->segs[i]);
        graph_error(fg, a, 400, p->nsegs == 2 ? "Unknown path components: /" : m.data,
                    "OAuthException", 2500, 0, -1);
        buf_dispose(&m);
        return;
    }
    if (p->kind == FG_OTHER) {
        unsupported(fg, a, hr->method, n->id);
        return;
    }

    /* parameters */
    char *fields = NULL;
    struct send_msg msg;
    buf_init(&msg.text);
    buf_append(&msg.text, "", 0);
    if (p->kind == FG_SUBSCRIBE) {
        bool is_bad_json;
        char *csv = fields_param(p, query, hr->body, hr->body_len, &is_bad_json);
        fields = check_fields(fg, a, csv, is_bad_json);
        free(csv);
        if (fields == NULL)
            goto out;
    } else if (p->kind == FG_SEND) {
        if (!check_send(fg, a, p, &msg))
            goto out;
    }

    const struct rule *r = take_rule(fg, p->kind, n->id, p->recipient);
    if (r != NULL) {
        apply_fault(fg, a, r, n->id, p->kind);
        if (r->mode != FG_SLOW_ACCEPTED)
            goto out;
        a->delay_ms += r->slow_ms;
    }

    /* the work */
    switch (p->kind) {
    case FG_SUBSCRIBE:
        free(n->fields);
        n->fields = fields;
        fields = NULL;
        success(a, "{\"success\":true}");
        break;
    case FG_UNSUBSCRIBE:
        free(n->fields);
        n->fields = NULL;
        success(a, "{\"success\":true}");
        break;
    case FG_SUBSCRIBED_GET:
        success(a, "{\"data\":[");
        if (n->fields != NULL) {
            buf_puts(&a->body, "{\"id\":");
            json_write_cstr(&a->body, n->app_id);
            buf_printf(&a->body, ",\"name\":\"Test App %s\",\"subscribed_fields\":[", n->app_id);
            size_t cnt;
            char **v = csv_split(n->fields, &cnt);
            for (size_t i = 0; i < cnt; i++) {
                if (i > 0)
                    buf_putc(&a->body, ',');
                json_write_cstr(&a->body, v[i]);
            }
            strv_free(v);
            buf_puts(&a->body, "]}");
        }
        buf_puts(&a->body, "]}");
        break;
    case FG_SEND: {
        struct buf mid;
        buf_init(&mid);
        new_mid(fg, &mid, n->id, p->recipient);
        success(a, "{\"recipient_id\":");
        json_write_cstr(&a->body, p->recipient);
        buf_puts(&a->body, ",\"message_id\":");
        json_write_cstr(&a->body, mid.data);
        buf_putc(&a->body, '}');
        if (fg->nsends == fg->capsends) {
            fg->capsends = fg->capsends == 0 ? 256 : fg->capsends * 2;
            fg->sends = xrealloc(fg->sends, fg->capsends * sizeof(*fg->sends));
        }
        struct fg_send *s = &fg->sends[fg->nsends++];
        s->node = xstrdup(n->id);
        s->recipient = xstrdup(p->recipient);
        s->text = buf_steal(&msg.text);
        s->message_id = xstrdup(mid.data);
        s->seq = seq;
        s->at_us = clock_us(CLOCK_MONOTONIC);
        s->at_wall_us = clock_us(CLOCK_REALTIME);
        pair_get(fg, n->id, p->recipient, true)->sent++;
        struct fg_request *rec = rec_find(fg, seq);
        if (rec != NULL)
            rec->message_id = buf_steal(&mid);
        buf_dispose(&mid);
        break;
    }
    default:
        break;
    }
out:
    free(fields);
    buf_dispose(&msg.text);
}

/* ---- one request, end to end ---- */

static void parse_request(struct parsed *p, const struct http_req *hr, const char *path,
                          const char *query)
{
    memset(p, 0, sizeof(*p));
    /* segments */
    const char *s = path + 1;
    while (*s != '\0' && p->nsegs < 4) {
        const char *e = p->nsegs < 3 ? strchr(s, '/') : NULL;
        size_t len = e != NULL ? (size_t)(e - s) : strlen(s);
        p->segs[p->nsegs++] = xstrndup(s, len);
        if (e == NULL)
            break;
        s = e + 1;
    }
    const char *m = hr->method;
    p->kind = FG_OTHER;
    if (p->nsegs == 3 && strcmp(p->segs[2], "subscribed_apps") == 0) {
        if (strcmp(m, "POST") == 0)
            p->kind = FG_SUBSCRIBE;
        else if (strcmp(m, "GET") == 0)
            p->kind = FG_SUBSCRIBED_GET;
        else if (strcmp(m, "DELETE") == 0)
            p->kind = FG_UNSUBSCRIBE;
    } else if (p->nsegs == 3 && strcmp(p->segs[2], "messages") == 0 && strcmp(m, "POST") == 0) {
        p->kind = FG_SEND;
    }

    const char *ct = hdr_get(hr, "Content-Type");
    p->is_form = ct != NULL && strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0;
    p->is_json = ct != NULL && strncasecmp(ct, "application/json", 16) == 0;
    if (p->is_json && hr->body_len > 0) {
        p->has_doc = json_parse(&p->doc, hr->body, hr->body_len, 32, &p->json_why) == 0;
    } else if (p->is_json) {
        p->json_why = "empty body";
    }
    if (p->kind == FG_SEND && p->has_doc && json_is_object(&p->doc, 0)) {
        int r = json_get(&p->doc, 0, "recipient");
        int id = json_is_object(&p->doc, r) ? json_get(&p->doc, r, "id") : -1;
        if (json_is_string(&p->doc, id))
            p->recipient = string_value(&p->doc, id);
    }

    /* the token: header, then query, then body */
    const char *auth = hdr_get(hr, "Authorization");
    if (auth != NULL &&
        (strncasecmp(auth, "Bearer ", 7) == 0 || strncasecmp(auth, "OAuth ", 6) == 0)) {
        const char *t = strchr(auth, ' ') + 1;
        while (*t == ' ')
            t++;
        if (*t != '\0') {
            p->token = xstrdup(t);
            p->token_where = FG_TOKEN_HEADER;
        }
    }
    if (p->token == NULL && (p->token = form_get(query, strlen(query), "access_token")) != NULL)
        p->token_where = FG_TOKEN_QUERY;
    if (p->token == NULL && p->is_form &&
        (p->token = form_get(hr->body, hr->body_len, "access_token")) != NULL)
        p->token_where = FG_TOKEN_BODY;
    if (p->token == NULL && p->has_doc && json_is_object(&p->doc, 0)) {
        int t = json_get(&p->doc, 0, "access_token");
        if (json_is_string(&p->doc, t)) {
            p->token = string_value(&p->doc, t);
            p->token_where = FG_TOKEN_BODY;
        }
    }
    if (p->token != NULL && p->token[0] == '\0') {
        free(p->token);
        p->token = NULL;
        p->token_where = FG_TOKEN_NONE;
    }
}

static void parsed_dispose(struct parsed *p)
{
    for (int i = 0; i < p->nsegs; i++)
        free(p->segs[i]);
    free(p->token);
    free(p->recipient);
    if (p->has_doc)
        json_doc_dispose(&p->doc);
}

/* Waits ms; false when the peer hung up or the socket was shut down. */
static bool wait_on(int fd, int ms)
{
    int64_t end = clock_us(CLOCK_MONOTONIC) + (int64_t)ms * 1000;
    for (;;) {
        int64_t left = end - clock_us(CLOCK_MONOTONIC);
        if (left <= 0)
            return true;
        struct pollfd pf = {.fd = fd, .events = POLLRDHUP};
        int r = poll(&pf, 1, (int)((left + 999) / 1000));
        if (r < 0 && errno != EINTR)
            return true;
        if (r > 0 && (pf.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0)
            return false;
    }
}

/* Handles one request; false when the connection must close. */
static bool handle(struct conn *c, const struct http_req *hr)
{
    struct fg *fg = c->fg;
    const char *q = strchr(hr->target, '?');
    char *path = q != NULL ? xstrndup(hr->target, (size_t)(q - hr->target)) : xstrdup(hr->target);
    const char *query = q != NULL ? q + 1 : "";
    struct parsed p;
    parse_request(&p, hr, path, query);

    struct answer a;
    memset(&a, 0, sizeof(a));
    buf_init(&a.body);
    buf_init(&a.headers);
    char *node = NULL;

    pthread_mutex_lock(&fg->mu);
    long seq = fg->next_seq++;
    if (fg->nrecs == fg->caprecs) {
        fg->caprecs = fg->caprecs == 0 ? 256 : fg->caprecs * 2;
        fg->recs = xrealloc(fg->recs, fg->caprecs * sizeof(*fg->recs));
    }
    struct fg_request *rec = &fg->recs[fg->nrecs++];
    memset(rec, 0, sizeof(*rec));
    rec->seq = seq;
    rec->kind = p.kind;
    rec->method = xstrdup(hr->method);
    rec->path = xstrdup(path);
    rec->query = xstrdup(query);
    rec->headers = xstrdup(hr->raw_headers);
    rec->body = xstrndup(hr->body != NULL ? hr->body : "", hr->body_len);
    rec->body_len = hr->body_len;
    rec->token = dup_or_null(p.token);
    rec->token_where = p.token_where;
    rec->recipient = dup_or_null(p.recipient);
    rec->arrived_us = clock_us(CLOCK_MONOTONIC);
    rec->arrived_wall_us = clock_us(CLOCK_REALTIME);
    a.app_usage = fg->app_usage;
    a.delay_ms = fg->latency_ms;
    decide(fg, &a, &p, hr, query, seq, &node);
    rec = rec_find(fg, seq);
    if (rec != NULL)
        rec->node = dup_or_null(node);
    struct pair *pr = NULL;
    if (p.kind == FG_SEND && node != NULL && p.recipient != NULL) {
        pr = pair_get(fg, node, p.recipient, true);
        if (++pr->cur > pr->max)
            pr->max = pr->cur;
    }
    if (++fg->in_flight > fg->max_in_flight)
        fg->max_in_flight = fg->in_flight;
    pthread_mutex_unlock(&fg->mu);

    bool is_there = a.delay_ms <= 0 || wait_on(c->fd, a.delay_ms);

    pthread_mutex_lock(&fg->mu);
    rec = rec_find(fg, seq);
    if (rec != NULL) {
        rec->finished_us = clock_us(CLOCK_MONOTONIC);
        rec->status = is_there ? a.status : 0;
        rec->error_code = a.error_code;
        rec->is_injected = a.is_injected;
    }
    if (pr != NULL)
        pr->cur--;
    fg->in_flight--;
    pthread_cond_broadcast(&fg->cond);
    pthread_mutex_unlock(&fg->mu);

    const char *conn_hdr = hdr_get(hr, "Connection");
    bool is_keep = hr->is_http10 ? conn_hdr != NULL && strcasecmp(conn_hdr, "keep-alive") == 0
                                 : conn_hdr == NULL || strcasecmp(conn_hdr, "close") != 0;
    if (is_there) {
        struct buf out;
        buf_init(&out);
        buf_printf(&out,
                   "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                   "facebook-api-version: %s\r\n"
                   "X-App-Usage: {\"call_count\":%d,\"total_cputime\":%d,\"total_time\":%d}\r\n"
                   "%sConnection: %s\r\n\r\n",
                   a.status,
                   a.status == 200   ? "OK"
                   : a.status == 400 ? "Bad Request"
                   : a.status == 403 ? "Forbidden"
                                     : "Internal Server Error",
                   a.ctype, a.body.len, fg->version, a.app_usage, a.app_usage / 2,
                   a.app_usage * 2 / 3, a.headers.data != NULL ? a.headers.data : "",
                   is_keep ? "keep-alive" : "close");
        buf_append(&out, a.body.data, a.body.len);
        if (!send_all(c->fd, out.data, out.len))
            is_keep = false;
        buf_dispose(&out);
    } else {
        is_keep = false;
    }

    free(node);
    free(path);
    parsed_dispose(&p);
    buf_dispose(&a.body);
    buf_dispose(&a.headers);
    return is_keep;
}

static void *conn_main(void *arg)
{
    struct conn *c = arg;
    struct buf in;
    buf_init(&in);
    for (;;) {
        struct http_req r;
        int rc = read_request(c, &in, &r);
        bool is_keep = rc == 0 && handle(c, &r);
        if (rc == 0) {
            memmove(in.data, in.data + r.total_len, in.len - r.total_len);
            in.len -= r.total_len;
        }
        http_req_dispose(&r);
        if (!is_keep)
            break;
    }
    buf_dispose(&in);
    pthread_mutex_lock(&c->fg->mu);
    close(c->fd);
    c->fd = -1;
    c->is_done = true;
    pthread_mutex_unlock(&c->fg->mu);
    return NULL;
}

/* Joins connection threads that ended; under mu (they no longer need it). */
static void reap(struct fg *fg)
{
    struct conn **pp = &fg->conns;
    while (*pp != NULL) {
        struct conn *c = *pp;
        if (c->is_done) {
            pthread_join(c->thread, NULL);
            *pp = c->next;
            free(c);
        } else {
            pp = &c->next;
        }
    }
}

static void *accept_main(void *arg)
{
    struct fg *fg = arg;
    for (;;) {
        int fd = accept4(fg->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        pthread_mutex_lock(&fg->mu);
        bool is_stopping = fg->is_stopping;
        pthread_mutex_unlock(&fg->mu);
        if (fd < 0) {
            if (is_stopping)
                break;
            if (errno == EMFILE || errno == ENFILE || errno == ENOMEM || errno == ENOBUFS)
                usleep(10000);
            continue;
        }
        if (is_stopping) {
            close(fd);
            break;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct conn *c = xcalloc(1, sizeof(*c));
        c->fg = fg;
        c->fd = fd;
        pthread_mutex_lock(&fg->mu);
        reap(fg);
        if (pthread_create(&c->thread, NULL, conn_main, c) != 0) {
            close(fd);
            free(c);
        } else {
            c->next = fg->conns;
            fg->conns = c;
        }
        pthread_mutex_unlock(&fg->mu);
    }
    return NULL;
}

/* ---- public: life cycle ---- */

struct fg *fg_start(enum fg_flavour flavour, const char *version)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sa);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 512) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return NULL;
    }
    struct fg *fg = xcalloc(1, sizeof(*fg));
    fg->flavour = flavour;
    snprintf(fg->version, sizeof(fg->version), "%s", version);
    fg->port = ntohs(sa.sin_port);
    fg->listen_fd = fd;
    snprintf(fg->base, sizeof(fg->base), "http://127.0.0.1:%d", fg->port);
    snprintf(fg->env, sizeof(fg->env), "HUBBUB_GRAPH_%s_URL=%s",
             flavour == FG_INSTAGRAM ? "INSTAGRAM" : "FACEBOOK", fg->base);
    fg->app_usage = 1;
    fg->slow_ms = 3000;
    fg->regain_minutes = 1;
    fg->rng = (uint64_t)clock_us(CLOCK_REALTIME) ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)fg;
    if (fg->rng == 0)
        fg->rng = 88172645463325252ULL;
    pthread_mutex_init(&fg->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&fg->cond, &ca);
    pthread_condattr_destroy(&ca);
    int rc = pthread_create(&fg->accept_thread, NULL, accept_main, fg);
    if (rc != 0) {
        close(fd);
        pthread_mutex_destroy(&fg->mu);
        pthread_cond_destroy(&fg->cond);
        free(fg);
        errno = rc;
        return NULL;
    }
    return fg;
}

void fg_stop(struct fg *fg)
{
    if (fg == NULL)
        return;
    pthread_mutex_lock(&fg->mu);
    fg->is_stopping = true;
    pthread_mutex_unlock(&fg->mu);
    shutdown(fg->listen_fd, SHUT_RDWR);
    pthread_join(fg->accept_thread, NULL);
    close(fg->listen_fd);
    pthread_mutex_lock(&fg->mu);
    for (struct conn *c = fg->conns; c != NULL; c = c->next)
        if (c->fd >= 0)
            shutdown(c->fd, SHUT_RDWR);
    pthread_mutex_unlock(&fg->mu);
    while (fg->conns != NULL) {
        struct conn *c = fg->conns;
        pthread_join(c->thread, NULL);
        fg->conns = c->next;
        free(c);
    }
    while (fg->nodes != NULL) {
        struct node *n = fg->nodes;
        fg->nodes = n->next;
        free(n->id);
        free(n->token);
        free(n->app_id);
        free(n->fields);
        free(n);
    }
    for (size_t i = 0; i < fg->nrules; i++) {
        free(fg->rules[i].node);
        free(fg->rules[i].recipient);
    }
    free(fg->rules);
    for (size_t i = 0; i < fg->nrecs; i++)
        request_dispose(&fg->recs[i]);
    free(fg->recs);
    for (size_t i = 0; i < fg->nsends; i++)
        send_dispose(&fg->sends[i]);
    free(fg->sends);
    for (size_t i = 0; i < PAIR_BUCKETS; i++) {
        while (fg->pairs[i] != NULL) {
            struct pair *p = fg->pairs[i];
            fg->pairs[i] = p->next;
            free(p->node);
            free(p->recipient);
            free(p);
        }
    }
    free(fg->valid_fields);
    pthread_mutex_destroy(&fg->mu);
    pthread_cond_destroy(&fg->cond);
    free(fg);
}

const char *fg_base_url(const struct fg *fg)
{
    return fg->base;
}

int fg_port(const struct fg *fg)
{
    return fg->port;
}

const char *fg_env(const struct fg *fg)
{
    return fg->env;
}

/* ---- public: registry ---- */

void fg_add_node(struct fg *fg, const char *node_id, const char *token, const char *app_id)
{
    pthread_mutex_lock(&fg->mu);
    struct node *n = node_find(fg, node_id);
    if (n == NULL) {
        n = xcalloc(1, sizeof(*n));
        n->id = xstrdup(node_id);
        n->next = fg->nodes;
        fg->nodes = n;
    }
    free(n->token);
    free(n->app_id);
    n->token = dup_or_null(token);
    n->app_id = xstrdup(app_id);
    pthread_mutex_unlock(&fg->mu);
}

bool fg_set_token(struct fg *fg, const char *node_id, const char *token)
{
    pthread_mutex_lock(&fg->mu);
    struct node *n = node_find(fg, node_id);
    if (n != NULL) {
        free(n->token);
        n->token = dup_or_null(token);
    }
    pthread_mutex_unlock(&fg->mu);
    return n != NULL;
}

char *fg_fields(struct fg *fg, const char *node_id)
{
    pthread_mutex_lock(&fg->mu);
    struct node *n = node_find(fg, node_id);
    char *f = n != NULL ? dup_or_null(n->fields) : NULL;
    pthread_mutex_unlock(&fg->mu);
    return f;
}

bool fg_set_fields(struct fg *fg, const char *node_id, const char *fields_csv)
{
    pthread_mutex_lock(&fg->mu);
    struct node *n = node_find(fg, node_id);
    if (n != NULL) {
        free(n->fields);
        n->fields = fields_csv != NULL && *fields_csv != '\0' ? xstrdup(fields_csv) : NULL;
    }
    pthread_cond_broadcast(&fg->cond);
    pthread_mutex_unlock(&fg->mu);
    return n != NULL;
}

void fg_set_valid_fields(struct fg *fg, const char *fields_csv)
{
    pthread_mutex_lock(&fg->mu);
    free(fg->valid_fields);
    fg->valid_fields = dup_or_null(fields_csv);
    pthread_mutex_unlock(&fg->mu);
}

/* ---- public: behaviour ---- */

#define SETTER(name, field)                                                                        \
    void name(struct fg *fg, int v)                                                                \
    {                                                                                              \
        pthread_mutex_lock(&fg->mu);                                                               \
        fg->field = v < 0 ? 0 : v;                                                                 \
        pthread_mutex_unlock(&fg->mu);                                                             \
    }

SETTER(fg_set_latency_ms, latency_ms)
SETTER(fg_set_app_usage, app_usage)
SETTER(fg_set_slow_ms, slow_ms)
SETTER(fg_set_regain_minutes, regain_minutes)

void fg_fail(struct fg *fg, struct fg_match m, enum fg_mode mode, int count)
{
    pthread_mutex_lock(&fg->mu);
    if (fg->nrules == fg->caprules) {
        fg->caprules = fg->caprules == 0 ? 8 : fg->caprules * 2;
        fg->rules = xrealloc(fg->rules, fg->caprules * sizeof(*fg->rules));
    }
    struct rule *r = &fg->rules[fg->nrules++];
    r->kind = m.kind;
    r->node = dup_or_null(m.node);
    r->recipient = dup_or_null(m.recipient);
    r->mode = mode;
    r->left = count < 0 ? -1 : count;
    r->slow_ms = fg->slow_ms;
    r->regain_minutes = fg->regain_minutes;
    pthread_mutex_unlock(&fg->mu);
}

void fg_clear_faults(struct fg *fg)
{
    pthread_mutex_lock(&fg->mu);
    for (size_t i = 0; i < fg->nrules; i++) {
        free(fg->rules[i].node);
        free(fg->rules[i].recipient);
    }
    fg->nrules = 0;
    pthread_mutex_unlock(&fg->mu);
}

int fg_faults_left(struct fg *fg)
{
    int64_t n = 0;
    pthread_mutex_lock(&fg->mu);
    for (size_t i = 0; i < fg->nrules; i++)
        n += fg->rules[i].left < 0 ? INT32_MAX : fg->rules[i].left;
    pthread_mutex_unlock(&fg->mu);
    return n > INT32_MAX ? INT32_MAX : (int)n;
}

/* ---- public: recording ---- */

struct fg_request *fg_requests(struct fg *fg, size_t *n)
{
    pthread_mutex_lock(&fg->mu);
    struct fg_request *out = xcalloc(fg->nrecs + 1, sizeof(*out));
    for (size_t i = 0; i < fg->nrecs; i++) {
        const struct fg_request *r = &fg->recs[i];
        out[i] = *r;
        out[i].method = xstrdup(r->method);
        out[i].path = xstrdup(r->path);
        out[i].query = xstrdup(r->query);
        out[i].headers = xstrdup(r->headers);
        out[i].body = xstrndup(r->body, r->body_len);
        out[i].token = dup_or_null(r->token);
        out[i].node = dup_or_null(r->node);
        out[i].recipient = dup_or_null(r->recipient);
        out[i].message_id = dup_or_null(r->message_id);
    }
    *n = fg->nrecs;
    pthread_mutex_unlock(&fg->mu);
    return out;
}

void fg_requests_free(struct fg_request *r, size_t n)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        request_dispose(&r[i]);
    free(r);
}

static long count_locked(struct fg *fg, const struct fg_match *m, bool is_finished_only)
{
    long n = 0;
    for (size_t i = 0; i < fg->nrecs; i++) {
        const struct fg_request *r = &fg->recs[i];
        if (is_finished_only && r->finished_us == 0)
            continue;
        n += match_ok(m, r->kind, r->node, r->recipient);
    }
    return n;
}

long fg_count(struct fg *fg, struct fg_match m)
{
    pthread_mutex_lock(&fg->mu);
    long n = count_locked(fg, &m, false);
    pthread_mutex_unlock(&fg->mu);
    return n;
}

void fg_reset_records(struct fg *fg)
{
    pthread_mutex_lock(&fg->mu);
    for (size_t i = 0; i < fg->nrecs; i++)
        request_dispose(&fg->recs[i]);
    fg->nrecs = 0;
    fg->rec_base = fg->next_seq;
    for (size_t i = 0; i < fg->nsends; i++)
        send_dispose(&fg->sends[i]);
    fg->nsends = 0;
    for (size_t i = 0; i < PAIR_BUCKETS; i++) {
        for (struct pair *p = fg->pairs[i]; p != NULL; p = p->next) {
            p->max = p->cur;
            p->sent = 0;
        }
    }
    fg->max_in_flight = fg->in_flight;
    pthread_mutex_unlock(&fg->mu);
}

static bool send_matches(const struct fg_send *s, const char *node, const char *recipient)
{
    return (node == NULL || strcmp(s->node, node) == 0) &&
           (recipient == NULL || strcmp(s->recipient, recipient) == 0);
}

static long sends_locked(struct fg *fg, const char *node, const char *recipient)
{
    if (node == NULL && recipient == NULL)
        return (long)fg->nsends;
    if (node != NULL && recipient != NULL) {
        struct pair *p = pair_get(fg, node, recipient, false);
        return p != NULL ? p->sent : 0;
    }
    long n = 0;
    for (size_t i = 0; i < fg->nsends; i++)
        n += send_matches(&fg->sends[i], node, recipient);
    return n;
}

long fg_sends(struct fg *fg, const char *node, const char *recipient)
{
    pthread_mutex_lock(&fg->mu);
    long n = sends_locked(fg, node, recipient);
    pthread_mutex_unlock(&fg->mu);
    return n;
}

struct fg_send *fg_sent(struct fg *fg, const char *node, const char *recipient, size_t *n)
{
    pthread_mutex_lock(&fg->mu);
    struct fg_send *out = xcalloc(fg->nsends + 1, sizeof(*out));
    size_t k = 0;
    for (size_t i = 0; i < fg->nsends; i++) {
        const struct fg_send *s = &fg->sends[i];
        if (!send_matches(s, node, recipient))
            continue;
        out[k] = *s;
        out[k].node = xstrdup(s->node);
        out[k].recipient = xstrdup(s->recipient);
        out[k].text = xstrdup(s->text);
        out[k].message_id = xstrdup(s->message_id);
        k++;
    }
    *n = k;
    pthread_mutex_unlock(&fg->mu);
    return out;
}

void fg_sent_free(struct fg_send *s, size_t n)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        send_dispose(&s[i]);
    free(s);
}

char *fg_sent_texts(struct fg *fg, const char *node, const char *recipient)
{
    struct buf out;
    buf_init(&out);
    buf_append(&out, "", 0);
    pthread_mutex_lock(&fg->mu);
    bool is_first = true;
    for (size_t i = 0; i < fg->nsends; i++) {
        if (!send_matches(&fg->sends[i], node, recipient))
            continue;
        if (!is_first)
            buf_putc(&out, '\n');
        buf_puts(&out, fg->sends[i].text);
        is_first = false;
    }
    pthread_mutex_unlock(&fg->mu);
    return buf_steal(&out);
}

int fg_max_in_flight(struct fg *fg, const char *node, const char *recipient)
{
    int max = 0;
    pthread_mutex_lock(&fg->mu);
    for (size_t i = 0; i < PAIR_BUCKETS; i++)
        for (struct pair *p = fg->pairs[i]; p != NULL; p = p->next)
            if ((node == NULL || strcmp(p->node, node) == 0) &&
                (recipient == NULL || strcmp(p->recipient, recipient) == 0) && p->max > max)
                max = p->max;
    pthread_mutex_unlock(&fg->mu);
    return max;
}

int fg_max_concurrency(struct fg *fg)
{
    pthread_mutex_lock(&fg->mu);
    int n = fg->max_in_flight;
    pthread_mutex_unlock(&fg->mu);
    return n;
}

/* ---- public: waiting ---- */

enum wait_kind { WAIT_SENDS, WAIT_REQUESTS, WAIT_FIELDS };

struct wait_for {
    enum wait_kind kind;
    const char *node;
    const char *recipient;
    struct fg_match m;
    long n;
    const char *fields;
};

static bool holds(struct fg *fg, const struct wait_for *w)
{
    switch (w->kind) {
    case WAIT_SENDS:
        return sends_locked(fg, w->node, w->recipient) >= w->n;
    case WAIT_REQUESTS:
        return count_locked(fg, &w->m, true) >= w->n;
    case WAIT_FIELDS: {
        struct node *n = node_find(fg, w->node);
        return n != NULL && csv_same_set(n->fields, w->fields);
    }
    }
    return false;
}

static bool wait_until(struct fg *fg, const struct wait_for *w, int timeout_ms)
{
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&fg->mu);
    bool is_ok;
    while (!(is_ok = holds(fg, w)))
        if (pthread_cond_timedwait(&fg->cond, &fg->mu, &dl) == ETIMEDOUT) {
            is_ok = holds(fg, w);
            break;
        }
    pthread_mutex_unlock(&fg->mu);
    return is_ok;
}

bool fg_wait_sends(struct fg *fg, long n, int timeout_ms)
{
    struct wait_for w = {.kind = WAIT_SENDS, .n = n};
    return wait_until(fg, &w, timeout_ms);
}

bool fg_wait_sends_to(struct fg *fg, const char *node, const char *recipient, long n,
                      int timeout_ms)
{
    struct wait_for w = {.kind = WAIT_SENDS, .node = node, .recipient = recipient, .n = n};
    return wait_until(fg, &w, timeout_ms);
}

bool fg_wait_requests(struct fg *fg, struct fg_match m, long n, int timeout_ms)
{
    struct wait_for w = {.kind = WAIT_REQUESTS, .m = m, .n = n};
    return wait_until(fg, &w, timeout_ms);
}

bool fg_wait_fields(struct fg *fg, const char *node_id, const char *fields_csv, int timeout_ms)
{
    struct wait_for w = {.kind = WAIT_FIELDS, .node = node_id, .fields = fields_csv};
    return wait_until(fg, &w, timeout_ms);
}
