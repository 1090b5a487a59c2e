/*
 * sim.c - `hubbub sim verify` and `hubbub sim send`; see sim.h.
 *
 * verify makes one GET the way Meta's dashboard does (no redirects followed,
 * certificates checked) and turns the first thing that went wrong into one
 * sentence an operator can act on.
 *
 * send drives every delivery through one curl multi handle with a fixed set
 * of easy handles (--concurrency), so connections are bounded and kept alive.
 * A delivery is a body built once by sim_payload and its two signatures: a
 * retry (--retry-like-meta) sends those same bytes again after an interval
 * that is 0 the first time (Meta retries at once) and then starts at
 * --retry-first and doubles, until the window (--retry-for) would be passed.
 * With --rate the deliveries are due at fixed intervals instead of all at
 * once, and only the figures are kept: counts, and one latency per delivery
 * for the percentiles.
 */
#include "server/sim.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/hb.h"
#include "lib/secret_input.h"
#include "server/sim_payload.h"

#define EXIT_FAILED 1
#define EXIT_USAGE 2
#define SECRET_MAX 512
#define MAX_DELIVERIES 1000000 /* --count x fields, or --rate x --duration */
#define MAX_CONCURRENCY 1024
#define USER_AGENT "facebookexternalua"

const char SIM_USAGE[] =
    "  sim verify URL --verify-token T [--challenge C] [--timeout D]\n"
    "                              Meta's GET handshake against any callback URL\n"
    "  sim send URL (--field NAME ... | --all-fields) [--app-secret S]\n"
    "           [--object instagram|page] [--ig-id ID] [--count N] [--concurrency C]\n"
    "           [--retry-like-meta [--retry-first D] [--retry-for D]]\n"
    "           [--rate N --duration D] [--seed N] [--timeout D]\n"
    "                              signed deliveries as Meta sends them; the secret\n"
    "                              may come from HUBBUB_APP_SECRET or standard input\n";

static _Noreturn void fatal(const char *what)
{
    fprintf(stderr, "hubbub sim: %s\n", what);
    abort();
}

static int usage(const char *why)
{
    if (why != NULL)
        fprintf(stderr, "hubbub sim: %s\n", why);
    fprintf(stderr, "usage:\n%s", SIM_USAGE);
    return EXIT_USAGE;
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "100ms", "5s", "2m", "36h", "1d", or a plain number of seconds; fractions
 * allowed. 0 with *us set, or HB_EINVAL. */
static int parse_duration(const char *s, int64_t *us)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || !(v >= 0) || v > 1e7)
        return HB_EINVAL;
    double unit;
    if (*end == '\0' || strcmp(end, "s") == 0)
        unit = 1e6;
    else if (strcmp(end, "ms") == 0)
        unit = 1e3;
    else if (strcmp(end, "m") == 0)
        unit = 60e6;
    else if (strcmp(end, "h") == 0)
        unit = 3600e6;
    else if (strcmp(end, "d") == 0)
        unit = 86400e6;
    else
        return HB_EINVAL;
    *us = (int64_t)(v * unit);
    return 0;
}

static int parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return HB_EINVAL;
    *out = v;
    return 0;
}

/* Appends s[0..n) to out on one line, with quotes and control characters
 * shown as in C, cut at max bytes. */
static void put_visible(struct buf *out, const char *s, size_t n, size_t max)
{
    buf_putc(out, '"');
    for (size_t i = 0; i < n && i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n')
            buf_puts(out, "\\n");
        else if (c == '\r')
            buf_puts(out, "\\r");
        else if (c == '\t')
            buf_puts(out, "\\t");
        else if (c == '"' || c == '\\')
            buf_printf(out, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            buf_printf(out, "\\x%02x", c);
        else
            buf_putc(out, (char)c);
    }
    buf_putc(out, '"');
    if (n > max)
        buf_printf(out, "... (%zu bytes)", n);
}

/* One sentence for a transfer that got no HTTP answer. */
static void transport_words(struct buf *out, CURL *easy, CURLcode rc, const char *errbuf,
                            int64_t timeout_us)
{
    const char *detail = errbuf != NULL && errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc);
    /* Where it tried: the URL's host and port (libcurl knows no address yet
     * when the connection failed). */
    char where[300] = "";
    char *url = NULL, *host = NULL, *port = NULL;
    CURLU *u = curl_url();
    curl_easy_getinfo(easy, CURLINFO_EFFECTIVE_URL, &url);
    if (u != NULL && url != NULL && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK)
        snprintf(where, sizeof(where), " by %s port %s", host, port);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
        buf_printf(out,
                   "cannot resolve the host name (%s); Meta must be able to look it up "
                   "in public DNS",
                   detail);
        break;
    case CURLE_COULDNT_CONNECT:
        if (strstr(detail, "refused") != NULL || strstr(detail, "Couldn't connect") != NULL)
            buf_printf(out,
                       "connection refused%s: nothing is listening there (is the server "
                       "running, is the port right?)",
                       where);
        else
            buf_printf(out, "cannot connect: %s", detail);
        break;
    case CURLE_OPERATION_TIMEDOUT:
        buf_printf(out, "timed out after %.1f s without an answer (Meta gives up too)",
                   (double)timeout_us / 1e6);
        break;
    case CURLE_PEER_FAILED_VERIFICATION:
#if CURL_AT_LEAST_VERSION(7, 62, 0)
    case CURLE_SSL_CACERT_BADFILE:
#endif
    case CURLE_SSL_CERTPROBLEM:
        buf_printf(out,
                   "TLS certificate problem (%s); Meta needs a valid certificate from a "
                   "public certificate authority, not a self-signed one",
                   detail);
        break;
    case CURLE_SSL_CONNECT_ERROR:
        buf_printf(out, "TLS handshake failed (%s)", detail);
        break;
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
        buf_printf(out, "not a usable URL (%s); Meta calls https:// URLs", detail);
        break;
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
        buf_printf(out, "the connection was closed without an answer (%s)", detail);
        break;
    default:
        buf_printf(out, "request failed: %s", detail);
    }
}

static size_t keep_some(char *data, size_t size, size_t nmemb, void *arg)
{
    struct buf *b = arg;
    size_t n = size * nmemb;
    if (b->len < 4096)
        buf_append(b, data, n < 4096 - b->len ? n : 4096 - b->len);
    return n;
}

/* ---- verify ---- */

/* Appends s[0..n) to out with every occurrence of a and of b (secrets, as
 * sent and URL-escaped) replaced by a placeholder. */
static void redact(struct buf *out, const char *s, size_t n, const char *a, const char *b)
{
    size_t alen = strlen(a), blen = strlen(b);
    for (size_t i = 0; i < n;) {
        size_t len = alen > 0 && n - i >= alen && memcmp(s + i, a, alen) == 0   ? alen
                     : blen > 0 && n - i >= blen && memcmp(s + i, b, blen) == 0 ? blen
                                                                                : 0;
        if (len > 0) {
            buf_puts(out, "<verify token>");
            i += len;
        } else {
            buf_putc(out, s[i++]);
        }
    }
}

static int cmd_verify(int argc, char **argv)
{
    const char *url = NULL, *token = getenv("HUBBUB_VERIFY_TOKEN"), *challenge = NULL;
    int64_t timeout_us = 10000000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (strcmp(a, "--verify-token") == 0 && has_value)
            token = argv[++i];
        else if (strcmp(a, "--challenge") == 0 && has_value)
            challenge = argv[++i];
        else if (strcmp(a, "--timeout") == 0 && has_value) {
            if (parse_duration(argv[++i], &timeout_us) != 0 || timeout_us < 1000)
                return usage("--timeout takes a duration such as 10s or 500ms");
        } else if (a[0] != '-' && url == NULL)
            url = a;
        else
            return usage(NULL);
    }
    if (url == NULL || token == NULL || token[0] == '\0')
        return usage("sim verify needs a URL and --verify-token (or HUBBUB_VERIFY_TOKEN)");
    char random_challenge[16];
    if (challenge == NULL) {
        /* Meta's challenges are numbers: ten random digits, no leading zero. */
        uint64_t r = 0;
        if (getrandom(&r, sizeof(r), 0) != sizeof(r))
            r = (uint64_t)now_us() ^ (uint64_t)getpid();
        snprintf(random_challenge, sizeof(random_challenge), "%010" PRIu64,
                 UINT64_C(1000000000) + r % UINT64_C(9000000000));
        challenge = random_challenge;
    } else if (challenge[0] == '\0') {
        return usage("--challenge must not be empty");
    }

    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURL *easy = curl_easy_init();
    if (easy == NULL)
        fatal("curl_easy_init failed");
    char *etoken = curl_easy_escape(easy, token, 0);
    char *echallenge = curl_easy_escape(easy, challenge, 0);
    char *etoken_copy = xstrdup(etoken != NULL ? etoken : token);
    struct buf full, body, why;
    buf_init(&full);
    buf_init(&body);
    buf_init(&why);
    buf_printf(&full, "%s%shub.mode=subscribe&hub.challenge=%s&hub.verify_token=%s", url,
               strchr(url, '?') != NULL ? "&" : "?", echallenge, etoken);
    curl_free(etoken);
    curl_free(echallenge);

    if (strncasecmp(url, "https://", 8) != 0)
        fprintf(stderr, "note: Meta calls only https:// callback URLs with a valid certificate\n");
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(easy, CURLOPT_URL, full.data);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(easy, CURLOPT_USERAGENT, USER_AGENT);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long)(timeout_us / 1000));
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, keep_some);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &body);
    int64_t t0 = now_us();
    CURLcode rc = curl_easy_perform(easy);
    double ms = (double)(now_us() - t0) / 1000.0;
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    bool ok = false;
    size_t clen = strlen(challenge);
    if (rc != CURLE_OK) {
        transport_words(&why, easy, rc, errbuf, timeout_us);
    } else if (status >= 300 && status < 400) {
        char *location = NULL;
        curl_easy_getinfo(easy, CURLINFO_REDIRECT_URL, &location);
        /* A redirect that keeps the query (http to https, a trailing slash)
         * carries the verify token: only the part before it is shown. */
        int shown = location != NULL ? (int)strcspn(location, "?#") : 0;
        buf_printf(&why,
                   "redirected (HTTP %ld to %.*s%s); Meta does not follow redirects: use the "
                   "final URL as the callback URL",
                   status, shown, location != NULL ? location : "",
                   location == NULL          ? "an unnamed location"
                   : location[shown] != '\0' ? ", its query left out"
                                             : "");
    } else if (status == 401 || status == 403) {
        buf_printf(&why,
                   "HTTP %ld: the server refused the handshake; the verify token does not match "
                   "the one configured for this app (or the mode was refused)",
                   status);
    } else if (status == 404) {
        buf_printf(&why, "HTTP 404: nothing at this URL; check the path and, for hubbub, the app "
                         "id in /webhooks/<app id>");
    } else if (status >= 500) {
        buf_printf(&why,
                   "HTTP %ld: the server failed (a server error, not a verify token "
                   "problem); see its logs",
                   status);
    } else if (status != 200) {
        buf_printf(&why, "HTTP %ld: Meta expects 200 with the challenge as the body", status);
    } else if (body.len == clen && memcmp(body.data, challenge, clen) == 0) {
        ok = true;
    } else {
        const char *how = "";
        if (body.len == 0)
            how = "the body is empty";
        else if (body.len > clen && memmem(body.data, body.len, challenge, clen) != NULL)
            how = body.data[0] == '{' || body.data[0] == '[' ? "the challenge is wrapped in JSON"
                  : body.data[0] == '"'                      ? "the challenge is in quotes"
                                        : "the challenge has extra characters (a newline or "
                                          "spaces?)";
        else
            how = "the challenge is not in it";
        buf_printf(&why, "HTTP 200 but the body is not the challenge (%s): expected \"%s\", got ",
                   how, challenge);
        /* A server that echoes the query back echoes the verify token. */
        struct buf shown;
        buf_init(&shown);
        redact(&shown, body.data != NULL ? body.data : "", body.len, token, etoken_copy);
        put_visible(&why, shown.data != NULL ? shown.data : "", shown.len, 120);
        buf_dispose(&shown);
        buf_puts(&why, "; answer with the bare challenge as text/plain");
    }
    if (ok)
        printf("ok: %s answered the handshake with the challenge %s (HTTP 200, %.0f ms)\n", url,
               challenge, ms);
    else
        fprintf(stderr, "hubbub sim verify: %s\n", why.data);
    curl_easy_cleanup(easy);
    explicit_bzero(etoken_copy, strlen(etoken_copy));
    free(etoken_copy);
    buf_dispose(&full);
    buf_dispose(&body);
    buf_dispose(&why);
    curl_global_cleanup();
    return ok ? 0 : EXIT_FAILED;
}

/* ---- send ---- */

struct send_opts {
    const char *url;
    const char *object;
    const char *entry_id;
    const char **fields;
    size_t nfields;
    long count;
    long concurrency;
    double rate; /* deliveries per second; 0: not load mode */
    int64_t duration_us;
    bool is_retry;
    int64_t retry_first_us, retry_for_us;
    int64_t timeout_us;
    bool has_seed;
    uint64_t seed;
};

struct delivery {
    const char *field;
    char *body;
    size_t len;
    char sig256[SIM_PAYLOAD_SIG256_LEN];
    char sig1[SIM_PAYLOAD_SIG1_LEN];
    int attempts;
    int64_t first_us, due_us;
};

struct slot {
    CURL *easy;
    struct curl_slist *headers;
    struct delivery *d;
    char errbuf[CURL_ERROR_SIZE];
    struct buf resp;
};

struct status_count {
    long status;
    uint64_t n;
};

struct send_run {
    const struct send_opts *o;
    const char *secret;
    CURLM *multi;
    struct slot *slots;
    long busy;
    uint64_t nonce;
    int64_t base_ms, last_ms;
    uint64_t total, made; /* deliveries to make, made so far */
    int64_t start_us;
    struct delivery **waiting; /* retries not yet due */
    size_t nwaiting, waiting_cap;
    /* figures */
    uint64_t delivered, failed, transport_errors, behind;
    uint64_t connects; /* new connections opened, over all attempts */
    struct status_count statuses[64];
    size_t nstatuses;
    uint32_t *latency_us;
    size_t nlatency;
    int64_t end_us;
};

static struct delivery *delivery_new(struct send_run *r)
{
    const struct send_opts *o = r->o;
    struct delivery *d = xcalloc(1, sizeof(*d));
    uint64_t seq = r->made++;
    d->field = o->fields[seq % o->nfields];
    int64_t t;
    if (o->has_seed) {
        t = r->base_ms + (int64_t)seq;
    } else {
        t = wall_ms();
        if (t <= r->last_ms)
            t = r->last_ms + 1; /* distinct timestamps, even within a millisecond */
        r->last_ms = t;
    }
    struct sim_payload_params p = {o->object, o->entry_id, r->nonce, seq, t};
    struct buf b;
    buf_init(&b);
    if (sim_payload_build(&b, d->field, &p) != 0)
        fatal("sim: unknown field slipped through");
    d->len = b.len;
    d->body = buf_steal(&b);
    sim_payload_sign(r->secret, d->body, d->len, d->sig256, d->sig1);
    return d;
}

static void delivery_free(struct delivery *d)
{
    if (d == NULL)
        return;
    free(d->body);
    free(d);
}

static void count_status(struct send_run *r, long status)
{
    for (size_t i = 0; i < r->nstatuses; i++)
        if (r->statuses[i].status == status) {
            r->statuses[i].n++;
            return;
        }
    if (r->nstatuses < sizeof(r->statuses) / sizeof(r->statuses[0]))
        r->statuses[r->nstatuses++] = (struct status_count){status, 1};
}

static void start(struct send_run *r, struct slot *s, struct delivery *d, int64_t now)
{
    const struct send_opts *o = r->o;
    if (d->attempts++ == 0)
        d->first_us = now;
    s->d = d;
    s->errbuf[0] = '\0';
    buf_reset(&s->resp);
    curl_slist_free_all(s->headers);
    char h256[128], h1[96];
    snprintf(h256, sizeof(h256), "X-Hub-Signature-256: %s", d->sig256);
    snprintf(h1, sizeof(h1), "X-Hub-Signature: %s", d->sig1);
    s->headers = curl_slist_append(NULL, "Content-Type: application/json");
    s->headers = curl_slist_append(s->headers, h256);
    s->headers = curl_slist_append(s->headers, h1);
    s->headers = curl_slist_append(s->headers, "Expect:"); /* Meta sends no 100-continue */
    if (s->headers == NULL)
        fatal("out of memory");
    CURL *e = s->easy;
    curl_easy_setopt(e, CURLOPT_URL, o->url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, USER_AGENT);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "deflate, gzip");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, s->headers);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, d->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)d->len);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(o->timeout_us / 1000));
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, s->errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, keep_some);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &s->resp);
    curl_easy_setopt(e, CURLOPT_PRIVATE, s);
    curl_multi_add_handle(r->multi, e);
    r->busy++;
}

static const char *status_words(long status)
{
    switch (status) {
    case 400:
        return " (the server could not read the delivery)";
    case 401:
    case 403:
        return " (refused: the signature did not verify; is the app secret right?)";
    case 404:
        return " (nothing at this URL: check the path and the app id)";
    case 413:
        return " (too large for the server)";
    case 429:
        return " (the server is throttling)";
    case 500:
        return " (the server failed)";
    case 502:
    case 504:
        return " (a proxy could not reach the server)";
    case 503:
        return " (the server is unavailable)";
    default:
        return "";
    }
}

/* The delivery is finished, for good: print it (unless in load mode) and
 * count it. */
static void finish(struct send_run *r, struct delivery *d, const char *words, int64_t now, bool ok)
{
    bool is_load = r->o->rate > 0;
    if (ok)
        r->delivered++;
    else
        r->failed++;
    if (!is_load) {
        printf("%-29s %s", d->field, words);
        if (d->attempts > 1)
            printf(" after %d attempts over %.2f s%s", d->attempts,
                   (double)(now - d->first_us) / 1e6, ok ? "" : "; Meta would stop retrying here");
        putchar('\n');
        fflush(stdout);
    }
    delivery_free(d);
}

static void on_done(struct send_run *r, CURLMsg *m, int64_t now)
{
    struct slot *s = NULL;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&s);
    CURLcode rc = m->data.result;
    struct delivery *d = s->d;
    s->d = NULL;
    long status = 0;
    curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_off_t total = 0;
    curl_easy_getinfo(s->easy, CURLINFO_TOTAL_TIME_T, &total);
    long connects = 0;
    curl_easy_getinfo(s->easy, CURLINFO_NUM_CONNECTS, &connects);
    r->connects += (uint64_t)connects;
    bool ok = rc == CURLE_OK && status >= 200 && status < 300;
    struct buf words;
    buf_init(&words);
    if (rc != CURLE_OK) {
        r->transport_errors++;
        transport_words(&words, s->easy, rc, s->errbuf, r->o->timeout_us);
    } else {
        count_status(r, status);
        buf_printf(&words, "%ld%s", status, ok ? "" : status_words(status));
        if (!ok && s->resp.len > 0) {
            buf_puts(&words, "; it answered ");
            put_visible(&words, s->resp.data, s->resp.len, 100);
        }
    }
    if (r->o->rate > 0 && r->latency_us != NULL && r->nlatency < r->total)
        r->latency_us[r->nlatency++] = total > UINT32_MAX ? UINT32_MAX : (uint32_t)total;
    curl_multi_remove_handle(r->multi, s->easy);
    r->busy--;

    if (!ok && r->o->is_retry) {
        /* Meta retries once at once, then with decreasing frequency: the
         * gap starts at --retry-first and doubles. */
        int64_t gap = d->attempts == 1 ? 0 : r->o->retry_first_us;
        for (int i = 2; i < d->attempts && gap < INT64_MAX / 4; i++)
            gap *= 2;
        if (now + gap - d->first_us <= r->o->retry_for_us) {
            printf("%-29s %s; retrying in %.2f s\n", d->field, words.data, (double)gap / 1e6);
            fflush(stdout);
            d->due_us = now + gap;
            if (r->nwaiting == r->waiting_cap) {
                r->waiting_cap = r->waiting_cap ? r->waiting_cap * 2 : 16;
                r->waiting = xrealloc(r->waiting, r->waiting_cap * sizeof(*r->waiting));
            }
            r->waiting[r->nwaiting++] = d;
            buf_dispose(&words);
            return;
        }
    }
    finish(r, d, words.data, now, ok);
    buf_dispose(&words);
}

/* The next delivery due at now, or NULL; *next_due_us gets when the next one
 * will be (INT64_MAX: none scheduled). */
static struct delivery *next_due(struct send_run *r, int64_t now, int64_t *next_due_us)
{
    *next_due_us = INT64_MAX;
    size_t best = SIZE_MAX;
    for (size_t i = 0; i < r->nwaiting; i++)
        if (best == SIZE_MAX || r->waiting[i]->due_us < r->waiting[best]->due_us)
            best = i;
    if (best != SIZE_MAX) {
        if (r->waiting[best]->due_us <= now) {
            struct delivery *d = r->waiting[best];
            r->waiting[best] = r->waiting[--r->nwaiting];
            return d;
        }
        *next_due_us = r->waiting[best]->due_us;
    }
    if (r->made < r->total) {
        int64_t due =
            r->o->rate > 0 ? r->start_us + (int64_t)((double)r->made * 1e6 / r->o->rate) : now;
        if (due <= now) {
            if (now - due > 5000)
                r->behind++;
            return delivery_new(r);
        }
        if (due < *next_due_us)
            *next_due_us = due;
    }
    return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double percentile_ms(const uint32_t *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)ceil(p * (double)n) - 1;
    if (i >= n)
        i = n - 1;
    return (double)v[i] / 1000.0;
}

static void print_load_summary(struct send_run *r)
{
    const struct send_opts *o = r->o;
    double secs = (double)(r->end_us - r->start_us) / 1e6;
    uint64_t sent = r->delivered + r->failed;
    /* Over the asked duration, or longer if the answers came late: never
     * above the asked rate just because the last answers were quick. */
    double over = secs > (double)o->duration_us / 1e6 ? secs : (double)o->duration_us / 1e6;
    printf("sent              %" PRIu64 " deliveries in %.2f s (asked: %.0f/s for %.2f s, "
           "concurrency %ld)\n",
           sent, secs, o->rate, (double)o->duration_us / 1e6, o->concurrency);
    printf("achieved rate     %.1f/s\n", over > 0 ? (double)sent / over : 0.0);
    printf("statuses         ");
    if (r->nstatuses == 0)
        printf(" none");
    for (size_t i = 0; i < r->nstatuses; i++)
        printf(" %ld: %" PRIu64, r->statuses[i].status, r->statuses[i].n);
    putchar('\n');
    printf("transport errors  %" PRIu64 "\n", r->transport_errors);
    printf("connections       %" PRIu64 " opened (kept alive, at most %ld at once)\n", r->connects,
           o->concurrency);
    qsort(r->latency_us, r->nlatency, sizeof(uint32_t), cmp_u32);
    printf("latency           p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms\n",
           percentile_ms(r->latency_us, r->nlatency, 0.50),
           percentile_ms(r->latency_us, r->nlatency, 0.90),
           percentile_ms(r->latency_us, r->nlatency, 0.99),
           percentile_ms(r->latency_us, r->nlatency, 1.0));
    printf("started late      %" PRIu64 " (more than 5 ms behind schedule: every connection "
           "was busy, or the machine was)\n",
           r->behind);
}

static int run_send(const struct send_opts *o, const char *secret)
{
    struct send_run r;
    memset(&r, 0, sizeof(r));
    r.o = o;
    r.secret = secret;
    if (o->has_seed) {
        r.nonce = o->seed;
        r.base_ms = INT64_C(1773142400000); /* fixed, so that a seed repeats its bodies */
    } else if (getrandom(&r.nonce, sizeof(r.nonce), 0) != sizeof(r.nonce)) {
        r.nonce = (uint64_t)now_us() ^ ((uint64_t)getpid() << 40);
    }
    if (o->rate > 0)
        r.total = (uint64_t)llround(o->rate * (double)o->duration_us / 1e6);
    else
        r.total = (uint64_t)o->count * o->nfields;
    if (r.total == 0 || r.total > MAX_DELIVERIES) {
        fprintf(stderr, "hubbub sim: %" PRIu64 " deliveries asked; give between 1 and %d\n",
                r.total, MAX_DELIVERIES);
        return EXIT_USAGE;
    }
    if (o->rate > 0)
        r.latency_us = xmalloc(r.total * sizeof(uint32_t));

    curl_global_init(CURL_GLOBAL_DEFAULT);
    r.multi = curl_multi_init();
    if (r.multi == NULL)
        fatal("curl_multi_init failed");
    curl_multi_setopt(r.multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, o->concurrency);
    curl_multi_setopt(r.multi, CURLMOPT_MAXCONNECTS, o->concurrency);
    r.slots = xcalloc((size_t)o->concurrency, sizeof(*r.slots));
    for (long i = 0; i < o->concurrency; i++) {
        if ((r.slots[i].easy = curl_easy_init()) == NULL)
            fatal("curl_easy_init failed");
        buf_init(&r.slots[i].resp);
    }

    r.start_us = now_us();
    for (;;) {
        int64_t now = now_us(), wake_us = INT64_MAX;
        for (long i = 0; i < o->concurrency && r.busy < o->concurrency; i++) {
            if (r.slots[i].d != NULL)
                continue;
            struct delivery *d = next_due(&r, now, &wake_us);
            if (d == NULL)
                break;
            start(&r, &r.slots[i], d, now);
        }
        if (r.busy == 0 && r.nwaiting == 0 && r.made >= r.total)
            break;
        int running = 0;
        curl_multi_perform(r.multi, &running);
        CURLMsg *m;
        int left;
        bool any_done = false;
        while ((m = curl_multi_info_read(r.multi, &left)) != NULL)
            if (m->msg == CURLMSG_DONE) {
                on_done(&r, m, now_us());
                any_done = true;
            }
        if (any_done)
            continue;
        int64_t wait_us = 1000000;
        if (r.busy < o->concurrency && wake_us != INT64_MAX)
            wait_us = wake_us - now_us();
        if (wait_us > 1000000)
            wait_us = 1000000;
        if (wait_us > 0)
            curl_multi_poll(r.multi, NULL, 0, (int)((wait_us + 999) / 1000), NULL);
    }
    r.end_us = now_us();

    if (o->rate > 0) {
        print_load_summary(&r);
    } else {
        printf("sent %" PRIu64 " %s to %s: %" PRIu64 " answered 2xx, %" PRIu64
               " failed; answers by status (every attempt):",
               r.total, r.total == 1 ? "delivery" : "deliveries", o->url, r.delivered, r.failed);
        for (size_t i = 0; i < r.nstatuses; i++)
            printf("%s %ld: %" PRIu64, i > 0 ? "," : "", r.statuses[i].status, r.statuses[i].n);
        printf("%s transport errors: %" PRIu64 "\n", r.nstatuses > 0 ? ";" : "",
               r.transport_errors);
    }
    for (long i = 0; i < o->concurrency; i++) {
        curl_easy_cleanup(r.slots[i].easy);
        curl_slist_free_all(r.slots[i].headers);
        buf_dispose(&r.slots[i].resp);
    }
    free(r.slots);
    free(r.waiting);
    free(r.latency_us);
    curl_multi_cleanup(r.multi);
    curl_global_cleanup();
    return r.failed == 0 ? 0 : EXIT_FAILED;
}

/* The app secret from --app-secret, HUBBUB_APP_SECRET, or one line of
 * standard input (without echo on a terminal). Never printed. */
static int read_secret(const char *given, char *out, size_t outsz)
{
    if (given != NULL && given[0] != '\0') {
        if (strlen(given) >= outsz)
            return HB_ETOOBIG;
        snprintf(out, outsz, "%s", given);
        return 0;
    }
    return secret_input_read("HUBBUB_APP_SECRET", "app secret", out, outsz);
}

static int cmd_send(int argc, char **argv)
{
    struct send_opts o = {
        .object = "instagram",
        .entry_id = "17841405822304914",
        .count = 1,
        .concurrency = 8,
        .retry_first_us = 15000000,
        .retry_for_us = INT64_C(36) * 3600 * 1000000,
        .timeout_us = 20000000,
    };
    const char *secret_arg = NULL;
    bool all = false, has_object = false, has_duration = false;
    size_t nfields = 0, nknown;
    sim_payload_fields(&nknown);
    const char **fields = xcalloc((size_t)argc + nknown + 1, sizeof(*fields));
    int rc = EXIT_USAGE;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        if (strcmp(a, "--all-fields") == 0) {
            all = true;
        } else if (strcmp(a, "--retry-like-meta") == 0) {
            o.is_retry = true;
        } else if (a[0] != '-' && o.url == NULL) {
            o.url = a;
        } else if (v == NULL) {
            rc = usage(a[0] == '-' ? "an option is missing its value" : NULL);
            goto out;
        } else if (i++, strcmp(a, "--field") == 0) {
            if (!sim_payload_knows(v)) {
                fprintf(stderr, "hubbub sim: unknown field %s; known fields:", v);
                size_t nf;
                const char *const *names = sim_payload_fields(&nf);
                for (size_t k = 0; k < nf; k++)
                    fprintf(stderr, " %s", names[k]);
                fprintf(stderr, " feed\n");
                goto out;
            }
            fields[nfields++] = v;
        } else if (strcmp(a, "--app-secret") == 0) {
            secret_arg = v;
        } else if (strcmp(a, "--object") == 0) {
            if (strcmp(v, "instagram") != 0 && strcmp(v, "page") != 0) {
                rc = usage("--object is instagram or page");
                goto out;
            }
            o.object = v;
            has_object = true;
        } else if (strcmp(a, "--ig-id") == 0) {
            if (v[0] == '\0' || strspn(v, "0123456789") != strlen(v) || strlen(v) > 32) {
                rc = usage("--ig-id is a numeric account (or Page) id");
                goto out;
            }
            o.entry_id = v;
        } else if (strcmp(a, "--count") == 0) {
            if (parse_long(v, 1, MAX_DELIVERIES, &o.count) != 0) {
                rc = usage("--count is a number from 1");
                goto out;
            }
        } else if (strcmp(a, "--concurrency") == 0) {
            if (parse_long(v, 1, MAX_CONCURRENCY, &o.concurrency) != 0) {
                rc = usage("--concurrency is a number from 1 to 1024");
                goto out;
            }
        } else if (strcmp(a, "--rate") == 0) {
            if (parse_long(v, 1, 1000000, &n) != 0) {
                rc = usage("--rate is deliveries per second, from 1");
                goto out;
            }
            o.rate = (double)n;
        } else if (strcmp(a, "--seed") == 0) {
            if (parse_long(v, 0, LONG_MAX, &n) != 0) {
                rc = usage("--seed is a number");
                goto out;
            }
            o.has_seed = true;
            o.seed = (uint64_t)n;
        } else if (strcmp(a, "--duration") == 0 || strcmp(a, "--retry-first") == 0 ||
                   strcmp(a, "--retry-for") == 0 || strcmp(a, "--timeout") == 0) {
            int64_t us;
            if (parse_duration(v, &us) != 0 || us <= 0) {
                fprintf(stderr, "hubbub sim: %s takes a duration such as 100ms, 5s or 36h\n", a);
                goto out;
            }
            if (strcmp(a, "--duration") == 0)
                o.duration_us = us, has_duration = true;
            else if (strcmp(a, "--retry-first") == 0)
                o.retry_first_us = us;
            else if (strcmp(a, "--retry-for") == 0)
                o.retry_for_us = us;
            else
                o.timeout_us = us < 1000 ? 1000 : us;
        } else {
            rc = usage(NULL);
            goto out;
        }
    }
    if (o.url == NULL) {
        rc = usage("sim send needs the callback URL");
        goto out;
    }
    if (all == (nfields > 0)) {
        rc = usage("give --field NAME (once or more) or --all-fields");
        goto out;
    }
    if ((o.rate > 0) != has_duration) {
        rc = usage("--rate and --duration go together");
        goto out;
    }
    if (o.rate > 0 && o.is_retry) {
        rc = usage("--retry-like-meta does not combine with --rate");
        goto out;
    }
    if (all) {
        const char *const *names = sim_payload_fields(&nfields);
        for (size_t k = 0; k < nfields; k++)
            fields[k] = names[k];
    }
    if (!has_object && nfields == 1 && strcmp(fields[0], "feed") == 0)
        o.object = "page";
    o.fields = fields;
    o.nfields = nfields;

    char secret[SECRET_MAX];
    if (read_secret(secret_arg, secret, sizeof(secret)) != 0) {
        fprintf(stderr,
                "hubbub sim: give the app secret with --app-secret, in HUBBUB_APP_SECRET or on "
                "standard input (at most %d bytes)\n",
                SECRET_MAX - 1);
        goto out;
    }
    rc = run_send(&o, secret);
    explicit_bzero(secret, sizeof(secret));
out:
    free(fields);
    return rc;
}

int sim_main(int argc, char **argv)
{
    if (argc < 1)
        return usage(NULL);
    if (strcmp(argv[0], "verify") == 0)
        return cmd_verify(argc, argv);
    if (strcmp(argv[0], "send") == 0)
        return cmd_send(argc, argv);
    return usage(NULL);
}
