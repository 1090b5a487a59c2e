/*
 * t_sim.c - `hubbub sim` against the real hubbub and against a small HTTP
 * listener of the test's own (for what hubbub never does: fail on purpose,
 * redirect, wrap the challenge in JSON).
 *
 * verify: the right token passes; a wrong token, a wrong app id, a closed
 * port, a redirect and a JSON-wrapped challenge fail with exit 1 and their
 * sentence. send: --all-fields stores one event of each field, with its
 * unicode decoded; a second run is not deduplicated, a repeated --seed is; a
 * wrong secret is reported as 403; --retry-like-meta sends the same bytes
 * with growing gaps until 200, or until --retry-for; --rate makes load and
 * prints its figures.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "server/sim_payload.h"
#include "tests/integration/harness.h"

#define APP "1234567890"
#define TOKEN "meaty hamhock/&="
#define SECRET "sim-secret-0123456789abcdef"
#define COMMENT_TEXT                                                                               \
    "Trop beau \xf0\x9f\x91\x91 j'adore l'\xc3\xa9t\xc3\xa9 ! https://example.com/x"
#define MESSAGE_TEXT                                                                               \
    "Bonjour, vous livrez \xc3\xa0 Montr\xc3\xa9"                                                  \
    "al ? \xf0\x9f\x99\x8f"

/* ---- a listener that answers as the test says ---- */

enum mode { FAIL_FIRST, REDIRECT, JSON_CHALLENGE, SILENT };

#define MAX_REQS 32

struct request {
    int64_t at_ms;
    char *body;
    char sig256[80], sig1[64], agent[64], content_type[64];
};

struct listener {
    int fd, port;
    enum mode mode;
    int fail_first; /* FAIL_FIRST: answer 500 to this many requests, then 200 */
    pthread_t thread;
    pthread_mutex_t mu;
    struct request reqs[MAX_REQS];
    int nreqs;
};

static void header_value(const char *head, const char *name, char *out, size_t outsz)
{
    out[0] = '\0';
    size_t n = strlen(name);
    for (const char *p = head; (p = strstr(p, "\r\n")) != NULL; p += 2) {
        if (strncasecmp(p + 2, name, n) == 0 && p[2 + n] == ':') {
            const char *v = p + 3 + n;
            while (*v == ' ')
                v++;
            size_t len = strcspn(v, "\r\n");
            snprintf(out, outsz, "%.*s", (int)len, v);
            return;
        }
    }
}

static void serve_one(struct listener *l, int c)
{
    char buf[65536];
    size_t len = 0;
    char *end = NULL;
    while (len < sizeof(buf) - 1 && end == NULL) {
        ssize_t n = read(c, buf + len, sizeof(buf) - 1 - len);
        if (n <= 0)
            return;
        len += (size_t)n;
        buf[len] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    if (end == NULL)
        return;
    size_t head_len = (size_t)(end - buf) + 4;
    char cl[32];
    *end = '\0';
    header_value(buf, "Content-Length", cl, sizeof(cl));
    size_t want = (size_t)strtoul(cl, NULL, 10);
    while (len < head_len + want && len < sizeof(buf) - 1) {
        ssize_t n = read(c, buf + len, sizeof(buf) - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    pthread_mutex_lock(&l->mu);
    int k = l->nreqs;
    if (k < MAX_REQS) {
        struct request *r = &l->reqs[k];
        r->at_ms = h_now_ms();
        r->body = strndup(buf + head_len, want);
        header_value(buf, "X-Hub-Signature-256", r->sig256, sizeof(r->sig256));
        header_value(buf, "X-Hub-Signature", r->sig1, sizeof(r->sig1));
        header_value(buf, "User-Agent", r->agent, sizeof(r->agent));
        header_value(buf, "Content-Type", r->content_type, sizeof(r->content_type));
        l->nreqs++;
    }
    pthread_mutex_unlock(&l->mu);

    char resp[512];
    if (l->mode == SILENT) {
        while (read(c, buf, sizeof(buf)) > 0) /* until the client gives up */
            ;
        return;
    }
    if (l->mode == REDIRECT) {
        /* To https, keeping the path and the query, as servers commonly do. */
        const char *target = strchr(buf, ' ');
        target = target != NULL ? target + 1 : "/";
        snprintf(resp, sizeof(resp),
                 "HTTP/1.1 301 Moved Permanently\r\nLocation: https://example.com%.*s\r\n"
                 "Content-Length: 0\r\nConnection: close\r\n\r\n",
                 (int)strcspn(target, " \r\n"), target);
    } else if (l->mode == JSON_CHALLENGE) {
        const char *q = strstr(buf, "hub.challenge=");
        char ch[32] = "";
        if (q != NULL)
            snprintf(ch, sizeof(ch), "%.*s", (int)strcspn(q + 14, "& "), q + 14);
        /* Like a handler that answers with its parsed query, and its raw one. */
        const char *t = strstr(buf, "hub.verify_token=");
        char raw[64] = "";
        if (t != NULL)
            snprintf(raw, sizeof(raw), "%.*s", (int)strcspn(t + 17, "& "), t + 17);
        char body[256];
        int bl =
            snprintf(body, sizeof(body),
                     "{\"hub.challenge\":\"%s\",\"hub.verify_token\":\"" TOKEN "\",\"raw\":\"%s\"}",
                     ch, raw);
        snprintf(resp, sizeof(resp),
                 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                 "Connection: close\r\n\r\n%s",
                 bl, body);
    } else if (k < l->fail_first) {
        snprintf(resp, sizeof(resp),
                 "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n"
                 "Connection: close\r\n\r\nfail");
    } else {
        snprintf(resp, sizeof(resp),
                 "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    }
    ssize_t w = write(c, resp, strlen(resp));
    (void)w;
}

static void *listener_main(void *arg)
{
    struct listener *l = arg;
    for (;;) {
        int c = accept(l->fd, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR)
                continue;
            return NULL;
        }
        serve_one(l, c);
        close(c);
    }
}

static void listener_start(struct listener *l, enum mode mode, int fail_first)
{
    memset(l, 0, sizeof(*l));
    l->mode = mode;
    l->fail_first = fail_first;
    pthread_mutex_init(&l->mu, NULL);
    l->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof(a);
    if (bind(l->fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(l->fd, 16) != 0 ||
        getsockname(l->fd, (struct sockaddr *)&a, &alen) != 0)
        tap_bail("listener: %s", strerror(errno));
    l->port = ntohs(a.sin_port);
    pthread_create(&l->thread, NULL, listener_main, l);
}

static void listener_stop(struct listener *l)
{
    shutdown(l->fd, SHUT_RDWR);
    close(l->fd);
    pthread_join(l->thread, NULL);
    for (int i = 0; i < l->nreqs; i++)
        free(l->reqs[i].body);
}

/* ---- running the command ---- */

static int sim(const char *const *argv, const char *const *env, const char *in, char **out)
{
    int rc = h_run(NULL, argv, env, in, out);
    if (rc != 0 && rc != 1 && rc != 2)
        tap_diag("hubbub sim exited %d: %s", rc, *out);
    return rc;
}

static const char *const SECRET_ENV[] = {"HUBBUB_APP_SECRET=" SECRET, NULL};

static void test_verify(const struct h_server *s)
{
    char url[256], bad_app[256], closed[256];
    snprintf(url, sizeof(url), "%s/webhooks/" APP, s->base);
    snprintf(bad_app, sizeof(bad_app), "%s/webhooks/999", s->base);
    snprintf(closed, sizeof(closed), "http://127.0.0.1:%d/webhooks/" APP, h_free_port());
    char *out = NULL;

    const char *ok[] = {"sim", "verify", url, "--verify-token", TOKEN, NULL};
    tap_is_int(sim(ok, NULL, NULL, &out), 0, "verify: the right token succeeds");
    tap_contains(out, "answered the handshake with the challenge", "verify: says so");
    free(out);

    const char *chosen[] = {"sim", "verify",      url,          "--verify-token",
                            TOKEN, "--challenge", "1158201444", NULL};
    tap_is_int(sim(chosen, NULL, NULL, &out), 0, "verify: a chosen challenge succeeds");
    tap_contains(out, "challenge 1158201444", "verify: names the challenge it sent");
    free(out);

    const char *wrong[] = {"sim", "verify", url, "--verify-token", "not the token", NULL};
    tap_is_int(sim(wrong, NULL, NULL, &out), 1, "verify: a wrong token exits 1");
    tap_contains(out, "verify token does not match", "verify: a wrong token is named");
    free(out);

    const char *app[] = {"sim", "verify", bad_app, "--verify-token", TOKEN, NULL};
    tap_is_int(sim(app, NULL, NULL, &out), 1, "verify: a wrong app id exits 1");
    tap_contains(out, "HTTP 404", "verify: a wrong app id is a 404");
    tap_contains(out, "app id", "verify: ... which points at the app id");
    free(out);

    const char *port[] = {"sim", "verify", closed, "--verify-token", TOKEN, NULL};
    tap_is_int(sim(port, NULL, NULL, &out), 1, "verify: a closed port exits 1");
    tap_contains(out, "connection refused", "verify: a closed port is a refused connection");
    free(out);

    const char *usage[] = {"sim", "verify", url, NULL};
    tap_is_int(sim(usage, NULL, NULL, &out), 2, "verify: no token is a usage error (exit 2)");
    free(out);

    struct listener l;
    char lurl[128];
    listener_start(&l, REDIRECT, 0);
    snprintf(lurl, sizeof(lurl), "http://127.0.0.1:%d/hook", l.port);
    const char *redir[] = {"sim", "verify", lurl, "--verify-token", TOKEN, NULL};
    tap_is_int(sim(redir, NULL, NULL, &out), 1, "verify: a redirect exits 1");
    tap_contains(out, "Meta does not follow redirects", "verify: a redirect is named");
    tap_contains(out, "to https://example.com/hook, its query left out",
                 "verify: with where it leads");
    tap_ok(strstr(out, "hamhock") == NULL, "verify: the verify token is not printed");
    tap_is_int(l.nreqs, 1, "verify: the redirect is not followed");
    free(out);
    listener_stop(&l);

    listener_start(&l, JSON_CHALLENGE, 0);
    snprintf(lurl, sizeof(lurl), "http://127.0.0.1:%d/hook", l.port);
    const char *json[] = {"sim", "verify",      lurl,       "--verify-token",
                          TOKEN, "--challenge", "42424242", NULL};
    tap_is_int(sim(json, NULL, NULL, &out), 1, "verify: a JSON-wrapped challenge exits 1");
    tap_contains(out, "wrapped in JSON", "verify: the wrapping is named");
    tap_contains(out, "{\\\"hub.challenge\\\":\\\"42424242\\\",",
                 "verify: what came back is shown");
    tap_contains(
        out, "\\\"hub.verify_token\\\":\\\"<verify token>\\\",\\\"raw\\\":\\\"<verify token>\\\"",
        "verify: the verify token it echoed is left out, as sent and escaped");
    tap_ok(strstr(out, "hamhock") == NULL, "verify: the echoed token is not printed");
    free(out);
    listener_stop(&l);
}

/* What a self-signed certificate and a server that never answers look like. */
static void test_tls_and_timeout(struct h_db *db)
{
    char dir[] = "/tmp/hubbub-t-sim-XXXXXX", cmd[512], *out = NULL;
    if (mkdtemp(dir) == NULL)
        tap_bail("mkdtemp: %s", strerror(errno));
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
             "-subj /CN=127.0.0.1 -keyout %s/key.pem -out %s/cert.pem 2>/dev/null",
             dir, dir);
    if (system(cmd) != 0)
        tap_bail("cannot make a self-signed certificate with openssl");
    int port = h_free_port();
    char listen_env[64], cert_env[128], key_env[128], url[128];
    snprintf(listen_env, sizeof(listen_env), "HUBBUB_TLS_LISTEN=127.0.0.1:%d", port);
    snprintf(cert_env, sizeof(cert_env), "HUBBUB_TLS_CERT=%s/cert.pem", dir);
    snprintf(key_env, sizeof(key_env), "HUBBUB_TLS_KEY=%s/key.pem", dir);
    const char *const env[] = {listen_env, cert_env, key_env, NULL};
    struct h_server tls;
    h_server_start(&tls, db, env);
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/webhooks/" APP, port);
    const char *self[] = {"sim", "verify", url, "--verify-token", TOKEN, NULL};
    tap_is_int(sim(self, NULL, NULL, &out), 1, "verify: a self-signed certificate exits 1");
    tap_contains(out, "TLS certificate problem", "verify: the certificate is named");
    tap_contains(out, "not a self-signed one", "verify: ... with what Meta needs");
    free(out);
    h_server_stop(&tls, 15);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        tap_diag("could not remove %s", dir);

    struct listener l;
    listener_start(&l, SILENT, 0);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/hook", l.port);
    const char *slow[] = {"sim", "verify",    url,     "--verify-token",
                          TOKEN, "--timeout", "300ms", NULL};
    int64_t t0 = h_now_ms();
    tap_is_int(sim(slow, NULL, NULL, &out), 1, "verify: no answer exits 1");
    tap_contains(out, "timed out after 0.3 s", "verify: the time-out is named");
    tap_ok(h_now_ms() - t0 < 3000, "verify: --timeout bounds the wait");
    free(out);
    const char *slow_send[] = {"sim",      "send",      url,     "--field",
                               "mentions", "--timeout", "300ms", NULL};
    tap_is_int(sim(slow_send, SECRET_ENV, NULL, &out), 1, "send: no answer exits 1");
    tap_contains(out, "mentions                      timed out", "send: the time-out is named");
    free(out);
    listener_stop(&l);
}

static void test_send(const struct h_server *s, struct h_db *db)
{
    char url[256];
    snprintf(url, sizeof(url), "%s/webhooks/" APP, s->base);
    char *out = NULL;
    size_t nfields;
    const char *const *fields = sim_payload_fields(&nfields);

    const char *all[] = {"sim", "send", url, "--all-fields", NULL};
    tap_is_int(sim(all, SECRET_ENV, NULL, &out), 0, "send --all-fields exits 0");
    bool every_line = true;
    for (size_t i = 0; i < nfields; i++) {
        char line[128];
        snprintf(line, sizeof(line), "%-29s 200\n", fields[i]);
        if (strstr(out, line) == NULL) {
            tap_diag("no line for %s", fields[i]);
            every_line = false;
        }
    }
    tap_ok(every_line, "send: one line per delivery with its field and status");
    tap_contains(out, "16 answered 2xx, 0 failed", "send: the summary counts them");
    tap_ok(strstr(out, SECRET) == NULL, "send: the secret is never printed");
    free(out);

    tap_is_int(h_db_int(db, "SELECT count(*) FROM events"), (long long)nfields,
               "one event per generated item");
    bool each = true;
    for (size_t i = 0; i < nfields; i++) {
        long long n = h_db_int(db, "SELECT count(*) FROM events WHERE field = '%s'", fields[i]);
        if (n != 1) {
            tap_diag("%s: %lld events", fields[i], n);
            each = false;
        }
    }
    tap_ok(each, "every field is stored once, under its own name");
    tap_is_int(h_db_int(db, "SELECT count(*) FROM events WHERE object <> 'instagram' "
                            "OR entry_id <> '17841405822304914'"),
               0, "object and entry id are as sent");
    char *text = h_db_text(db, "SELECT payload->'value'->>'text' FROM events "
                               "WHERE field = 'comments'");
    tap_is_str(text, COMMENT_TEXT, "a comment's escaped emoji and accents arrive decoded");
    free(text);
    text = h_db_text(db, "SELECT payload->'message'->>'text' FROM events WHERE field = 'messages'");
    tap_is_str(text, MESSAGE_TEXT, "a message's text arrives decoded");
    free(text);
    text = h_db_text(db, "SELECT encode(body, 'escape') FROM deliveries d JOIN events e "
                         "ON e.delivery_id = d.id WHERE e.field = 'comments'");
    tap_contains(text, "\\\\ud83d\\\\udc51", "the raw delivery holds the surrogate-pair escape");
    free(text);

    tap_is_int(sim(all, SECRET_ENV, NULL, &out), 0, "a second run exits 0");
    free(out);
    tap_is_int(h_db_int(db, "SELECT count(*) FROM events"), 2 * (long long)nfields,
               "a second run is not deduplicated (new ids)");

    const char *seeded[] = {"sim", "send", url, "--field", "comments", "--seed", "7", NULL};
    tap_is_int(sim(seeded, SECRET_ENV, NULL, &out), 0, "--seed 7 exits 0");
    free(out);
    tap_is_int(sim(seeded, SECRET_ENV, NULL, &out), 0, "--seed 7 again exits 0");
    free(out);
    tap_is_int(h_db_int(db, "SELECT count(*) FROM events WHERE field = 'comments'"), 3,
               "the same seed twice is stored once (a duplicate on purpose)");

    const char *stdin_secret[] = {"sim", "send", url, "--field", "mentions", "--count", "3", NULL};
    tap_is_int(sim(stdin_secret, NULL, SECRET "\n", &out), 0,
               "the secret may come on standard input");
    tap_contains(out, "3 answered 2xx", "--count 3 sends three");
    free(out);

    const char *page[] = {
        "sim",      "send", url,       "--field",         "feed", "--field", "messages",
        "--object", "page", "--ig-id", "107280815400123", NULL};
    tap_is_int(sim(page, SECRET_ENV, NULL, &out), 0, "--object page --ig-id exits 0");
    free(out);
    tap_is_int(h_db_int(db, "SELECT count(*) FROM events WHERE object = 'page' "
                            "AND entry_id = '107280815400123' AND field IN ('feed', 'messages')"),
               2, "--object and --ig-id set the envelope's object and entry id");

    const char *const bad_env[] = {"HUBBUB_APP_SECRET=not-the-secret-at-all", NULL};
    const char *bad[] = {"sim", "send", url, "--field", "messages", NULL};
    tap_is_int(sim(bad, bad_env, NULL, &out), 1, "a wrong secret exits 1");
    tap_contains(out, "403", "a wrong secret is reported as 403");
    tap_contains(out, "signature did not verify", "... in plain words");
    tap_ok(strstr(out, "not-the-secret-at-all") == NULL, "... without echoing the secret");
    free(out);

    const char *unknown[] = {"sim", "send", url, "--field", "photos", NULL};
    tap_is_int(sim(unknown, SECRET_ENV, NULL, &out), 2, "an unknown field is a usage error");
    free(out);
}

static void test_retry(void)
{
    struct listener l;
    char url[128], *out = NULL;
    listener_start(&l, FAIL_FIRST, 3);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/hook", l.port);
    const char *retry[] = {
        "sim",           "send",  url,           "--field", "comments", "--retry-like-meta",
        "--retry-first", "100ms", "--retry-for", "5s",      NULL};
    tap_is_int(sim(retry, SECRET_ENV, NULL, &out), 0, "retry: 3 failures then 200 exits 0");
    tap_contains(out, "200 after 4 attempts", "retry: the summary counts the attempts");
    free(out);
    tap_is_int(l.nreqs, 4, "retry: 4 requests arrived");
    bool same = l.nreqs == 4;
    for (int i = 1; i < l.nreqs; i++)
        same = same && strcmp(l.reqs[i].body, l.reqs[0].body) == 0 &&
               strcmp(l.reqs[i].sig256, l.reqs[0].sig256) == 0 &&
               strcmp(l.reqs[i].sig1, l.reqs[0].sig1) == 0;
    tap_ok(same, "retry: every attempt has the same body and signatures");
    if (l.nreqs >= 1) {
        char want[72];
        h_sign(SECRET, l.reqs[0].body, strlen(l.reqs[0].body), want);
        tap_is_str(l.reqs[0].sig256, want, "X-Hub-Signature-256 is the HMAC of the raw body");
        unsigned char d1[EVP_MAX_MD_SIZE];
        unsigned int n1 = 0;
        HMAC(EVP_sha1(), SECRET, (int)strlen(SECRET), (const unsigned char *)l.reqs[0].body,
             strlen(l.reqs[0].body), d1, &n1);
        char want1[64] = "sha1=";
        for (unsigned int i = 0; i < n1 && i < 20; i++)
            snprintf(want1 + 5 + 2 * i, 3, "%02x", d1[i]);
        tap_is_str(l.reqs[0].sig1, want1, "X-Hub-Signature is the HMAC-SHA1 of the raw body");
        tap_is_str(l.reqs[0].agent, "facebookexternalua", "the User-Agent is Meta's");
        tap_is_str(l.reqs[0].content_type, "application/json", "the body is application/json");
    } else {
        tap_ok(false, "no request to check");
    }
    if (l.nreqs == 4) {
        int64_t g1 = l.reqs[1].at_ms - l.reqs[0].at_ms, g2 = l.reqs[2].at_ms - l.reqs[1].at_ms,
                g3 = l.reqs[3].at_ms - l.reqs[2].at_ms;
        tap_diag("gaps: %lld %lld %lld ms", (long long)g1, (long long)g2, (long long)g3);
        tap_ok(g1 < 90, "retry: the first is at once, as Meta's (%lld ms)", (long long)g1);
        tap_ok(g2 >= 90 && g3 > g2, "retry: then the gaps grow (%lld, %lld ms)", (long long)g2,
               (long long)g3);
    } else {
        tap_ok(false, "retry: the first is at once");
        tap_ok(false, "retry: then the gaps grow");
    }
    listener_stop(&l);

    listener_start(&l, FAIL_FIRST, 1000);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/hook", l.port);
    const char *give_up[] = {
        "sim",           "send",  url,           "--field", "messages", "--retry-like-meta",
        "--retry-first", "100ms", "--retry-for", "1s",      NULL};
    int64_t t0 = h_now_ms();
    tap_is_int(sim(give_up, SECRET_ENV, NULL, &out), 1, "retry: always failing exits 1");
    int64_t took = h_now_ms() - t0;
    tap_contains(out, "Meta would stop retrying here", "retry: says it gave up");
    free(out);
    /* 100, 200, 400 ms: attempts at 0, 0.1, 0.3, 0.7 s; the next (1.5 s) is past 1 s. */
    tap_is_int(l.nreqs, 5, "retry: stops at --retry-for (5 attempts in 1 s)");
    tap_ok(took < 1400, "retry: does not wait past --retry-for (%lld ms)", (long long)took);
    listener_stop(&l);
}

static void test_rate(const struct h_server *s, struct h_db *db)
{
    char url[256], *out = NULL;
    snprintf(url, sizeof(url), "%s/webhooks/" APP, s->base);
    long long before = h_db_int(db, "SELECT count(*) FROM events");
    const char *load[] = {"sim",      "send",   url,   "--field",    "messages", "--field",
                          "comments", "--rate", "200", "--duration", "1s",       NULL};
    int64_t t0 = h_now_ms();
    tap_is_int(sim(load, SECRET_ENV, NULL, &out), 0, "rate: 200/s for 1 s exits 0");
    int64_t took = h_now_ms() - t0;
    tap_contains(out, "sent              200 deliveries", "rate: 200 were sent");
    tap_contains(out, "statuses          200: 200", "rate: all 200 got 200");
    tap_contains(out, "transport errors  0", "rate: no transport errors");
    tap_contains(out, "achieved rate", "rate: the achieved rate is printed");
    const char *conn = strstr(out, "connections ");
    long opened = conn != NULL ? strtol(conn + strlen("connections "), NULL, 10) : -1;
    tap_ok(opened >= 1 && opened <= 8,
           "rate: at most --concurrency connections, kept alive (%ld opened for 200)", opened);
    tap_contains(out, "p50", "rate: latency percentiles are printed");
    tap_contains(out, "p99", "rate: ... up to p99");
    for (char *line = strtok(out, "\n"); line != NULL; line = strtok(NULL, "\n"))
        tap_diag("%s", line);
    free(out);
    tap_ok(took >= 900 && took < 5000, "rate: it took about a second (%lld ms)", (long long)took);
    tap_is_int(h_db_int(db, "SELECT count(*) FROM events") - before, 200,
               "rate: 200 events were stored");
}

int main(void)
{
    struct h_db db;
    struct h_server s;
    h_db_create(&db, "sim");
    h_setup_app(&db, "acme", APP, TOKEN, SECRET);
    h_server_start(&s, &db, NULL);

    test_verify(&s);
    test_tls_and_timeout(&db);
    test_send(&s, &db);
    test_retry();
    test_rate(&s, &db);

    h_server_stop(&s, 15);
    h_db_drop(&db);
    return tap_done();
}
