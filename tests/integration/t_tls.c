/*
 * t_tls.c - HTTPS and Meta's mutual TLS: the client certificate is checked in
 * the handshake (chain to HUBBUB_MTLS_CA within depth 3, subject CN), refusals
 * are counted and logged by reason, webhooks are refused (403) on listeners
 * that did not verify a client, HUBBUB_TLS_ADMIN_LISTEN serves the admin API
 * without one, SIGHUP reloads the certificate, a TLS-terminating proxy may
 * pass the verified subject from a trusted address, and settings that do not
 * fit together stop `hubbub serve`.
 *
 * The certificates are made with the openssl command line in a temporary
 * directory, removed at the end: a CA with intermediates, server
 * certificates for 127.0.0.1, and client certificates that are right, name
 * someone else, come from another CA, have expired, or chain too deep.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/integration/harness.h"

#define APP_ID "1234567890"
#define SECRET "secret-tls-0123456789"
#define VERIFY_TOKEN "tls-verify-token"
#define META_CN "client.webhooks.fbclientcerts.com"
#define PROXY_HEADER "X-Amzn-Mtls-Clientcert-Subject"
#define RIGHT_SUBJECT "CN=" META_CN ",O=Meta Platforms\\, Inc.,L=Menlo Park"

static char dir[64]; /* the certificates */

/* ---- certificates ---- */

static const char CERT_SCRIPT[] =
    "set -e\n"
    "cat > c.cnf <<'EOF'\n"
    "[req]\n"
    "distinguished_name = dn\n"
    "prompt = no\n"
    "[dn]\n"
    "CN = unused\n"
    "[ca_ext]\n"
    "basicConstraints = critical,CA:TRUE\n"
    "keyUsage = critical,keyCertSign,cRLSign\n"
    "subjectKeyIdentifier = hash\n"
    "authorityKeyIdentifier = keyid:always\n"
    "[server_ext]\n"
    "basicConstraints = CA:FALSE\n"
    "keyUsage = critical,digitalSignature\n"
    "extendedKeyUsage = serverAuth\n"
    "subjectAltName = IP:127.0.0.1,IP:127.0.0.2,DNS:localhost\n"
    "[client_ext]\n"
    "basicConstraints = CA:FALSE\n"
    "keyUsage = critical,digitalSignature\n"
    "extendedKeyUsage = clientAuth\n"
    "[ca]\n"
    "default_ca = tca\n"
    "[tca]\n"
    "database = index.txt\n"
    "new_certs_dir = .\n"
    "serial = serial\n"
    "default_md = sha256\n"
    "policy = pol\n"
    "unique_subject = no\n"
    "[pol]\n"
    "commonName = supplied\n"
    "organizationName = optional\n"
    "EOF\n"
    "key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out \"$1.key\"; }\n"
    "root() {\n"
    "  key \"$1\"\n"
    "  openssl req -config c.cnf -new -x509 -key \"$1.key\" -subj \"/CN=$2\" -days 2 \\\n"
    "    -extensions ca_ext -out \"$1.pem\"\n"
    "}\n"
    "# sign NAME SUBJECT ISSUER EXTENSIONS\n"
    "sign() {\n"
    "  key \"$1\"\n"
    "  openssl req -config c.cnf -new -key \"$1.key\" -subj \"$2\" -out \"$1.csr\"\n"
    "  openssl x509 -req -in \"$1.csr\" -CA \"$3.pem\" -CAkey \"$3.key\" \\\n"
    "    -set_serial \"0x$(openssl rand -hex 8)\" -days 2 -extfile c.cnf -extensions \"$4\" \\\n"
    "    -out \"$1.pem\" 2>/dev/null\n"
    "}\n"
    "root ca 'hubbub test CA'\n"
    "root ca2 'hubbub untrusted CA'\n"
    "sign i1 '/CN=hubbub test intermediate 1' ca ca_ext\n"
    "sign i2 '/CN=hubbub test intermediate 2' i1 ca_ext\n"
    "sign i3 '/CN=hubbub test intermediate 3' i2 ca_ext\n"
    "sign i4 '/CN=hubbub test intermediate 4' i3 ca_ext\n"
    "sign server '/CN=hubbub-original' ca server_ext\n"
    "sign server2 '/CN=hubbub-reloaded' ca server_ext\n"
    "sign client '/CN=" META_CN "/O=Meta Platforms, Inc.' ca client_ext\n"
    "sign via1 '/CN=" META_CN "' i1 client_ext\n"
    "sign via3 '/CN=" META_CN "' i3 client_ext\n"
    "sign via4 '/CN=" META_CN "' i4 client_ext\n"
    "sign wrong '/CN=client.webhooks.example.com' ca client_ext\n"
    "sign untrusted '/CN=" META_CN "' ca2 client_ext\n"
    "cat via1.pem i1.pem > via1.chain.pem\n"
    "cat via3.pem i3.pem i2.pem i1.pem > via3.chain.pem\n"
    "cat via4.pem i4.pem i3.pem i2.pem i1.pem > via4.chain.pem\n"
    "# x509 in OpenSSL 3.0 cannot back-date; ca can.\n"
    "touch index.txt\n"
    "echo 1000 > serial\n"
    "key expired\n"
    "openssl req -config c.cnf -new -key expired.key -subj '/CN=" META_CN "' -out expired.csr\n"
    "openssl ca -batch -config c.cnf -name tca -cert ca.pem -keyfile ca.key -in expired.csr \\\n"
    "  -out expired.pem -startdate 20200101000000Z -enddate 20200201000000Z \\\n"
    "  -extensions client_ext -notext 2>/dev/null\n";

static void remove_certs(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

/* Makes the certificates in a new directory, removed at exit (a bail-out too). */
static void make_certs(void)
{
    snprintf(dir, sizeof(dir), "/tmp/hubbub-tls-XXXXXX");
    if (mkdtemp(dir) == NULL)
        tap_bail("mkdtemp failed");
    atexit(remove_certs);
    char path[128];
    snprintf(path, sizeof(path), "%s/make.sh", dir);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        tap_bail("cannot write %s", path);
    fputs(CERT_SCRIPT, f);
    fclose(f);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "cd %s && sh make.sh > make.log 2>&1", dir);
    if (system(cmd) != 0) {
        snprintf(cmd, sizeof(cmd), "cat %s/make.log", dir);
        if (system(cmd) != 0)
            tap_diag("no make.log");
        tap_bail("cannot make the test certificates with openssl");
    }
}

/* The path of a file in the certificate directory (one of four rotating
 * buffers, so a few can be used in one call). */
static const char *in_dir(const char *name)
{
    static char bufs[4][160];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof(bufs[0]), "%s/%s", dir, name);
    return b;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        tap_bail("cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

/* ---- HTTP with libcurl ---- */

/* Which client certificate a call presents. */
struct client {
    char cert[160], key[160];
};

static struct client client_named(const char *name)
{
    struct client cl;
    bool chained = strncmp(name, "via", 3) == 0;
    snprintf(cl.cert, sizeof(cl.cert), "%s/%s%s.pem", dir, name, chained ? ".chain" : "");
    snprintf(cl.key, sizeof(cl.key), "%s/%s.key", dir, name);
    return cl;
}

/* How a request is made, apart from what it sends. */
struct how {
    const struct client *client; /* NULL: none */
    long http_version;           /* 0: CURL_HTTP_VERSION_1_1 */
    long ssl_version;            /* 0: libcurl's default (TLS 1.2 to 1.3) */
    const char *ciphers;
    const char *interface; /* the source address */
    const char *header;    /* one more request header */
    const char *header2;   /* and another */
};

static const struct how PLAIN = {0};

struct answer {
    CURLcode rc;
    long status; /* 0 when the request failed at the transport level */
    long http_version;
    long num_connects;
    char error[CURL_ERROR_SIZE];
    char *body;
    size_t len;
    char subject[512]; /* the server certificate's subject, on a new connection */
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct answer *a = arg;
    size_t add = size * n;
    a->body = realloc(a->body, a->len + add + 1);
    memcpy(a->body + a->len, p, add);
    a->len += add;
    a->body[a->len] = '\0';
    return add;
}

/* GET (body NULL) or POST url. handle non-NULL is reused, so its connection
 * stays open from one call to the next; NULL uses a fresh one. Caller frees
 * a->body. */
static void perform(CURL *handle, const char *url, const struct how *how,
                    const char *const *headers, const void *body, size_t len, struct answer *a)
{
    memset(a, 0, sizeof(*a));
    a->body = strdup("");
    CURL *h = handle != NULL ? handle : curl_easy_init();
    curl_easy_reset(h);
    struct curl_slist *list = curl_slist_append(NULL, "Expect:");
    for (const char *const *p = headers; p != NULL && *p != NULL; p++)
        list = curl_slist_append(list, *p);
    if (how->header != NULL)
        list = curl_slist_append(list, how->header);
    if (how->header2 != NULL)
        list = curl_slist_append(list, how->header2);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, a->error);
    curl_easy_setopt(h, CURLOPT_CAINFO, in_dir("ca.pem"));
    curl_easy_setopt(h, CURLOPT_CERTINFO, 1L);
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION,
                     how->http_version != 0 ? how->http_version : (long)CURL_HTTP_VERSION_1_1);
    if (body != NULL) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    if (how->client != NULL) {
        curl_easy_setopt(h, CURLOPT_SSLCERT, how->client->cert);
        curl_easy_setopt(h, CURLOPT_SSLKEY, how->client->key);
    }
    if (how->ssl_version != 0)
        curl_easy_setopt(h, CURLOPT_SSLVERSION, how->ssl_version);
    if (how->ciphers != NULL)
        curl_easy_setopt(h, CURLOPT_SSL_CIPHER_LIST, how->ciphers);
    if (how->interface != NULL)
        curl_easy_setopt(h, CURLOPT_INTERFACE, how->interface);
    a->rc = curl_easy_perform(h);
    if (a->rc == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &a->status);
    else if (a->error[0] == '\0')
        snprintf(a->error, sizeof(a->error), "%s", curl_easy_strerror(a->rc));
    curl_easy_getinfo(h, CURLINFO_HTTP_VERSION, &a->http_version);
    curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &a->num_connects);
    struct curl_certinfo *ci = NULL;
    if (curl_easy_getinfo(h, CURLINFO_CERTINFO, &ci) == CURLE_OK && ci != NULL &&
        ci->num_of_certs > 0) {
        for (struct curl_slist *s = ci->certinfo[0]; s != NULL; s = s->next)
            if (strncmp(s->data, "Subject:", 8) == 0)
                snprintf(a->subject, sizeof(a->subject), "%s", s->data + 8);
    }
    curl_slist_free_all(list);
    if (handle == NULL)
        curl_easy_cleanup(h);
}

/* A signed delivery (its comment id is C<n>) POSTed to base's webhook. */
static void post_delivery(CURL *handle, const char *base, const struct how *how, int n,
                          struct answer *a)
{
    size_t len;
    char *body = h_comment_delivery(n, &len);
    char sig[72], sig_header[100], url[160];
    h_sign(SECRET, body, len, sig);
    snprintf(sig_header, sizeof(sig_header), "X-Hub-Signature-256: %s", sig);
    snprintf(url, sizeof(url), "%s/webhooks/" APP_ID, base);
    const char *headers[] = {"Content-Type: application/json", sig_header, NULL};
    perform(handle, url, how, headers, body, len, a);
    free(body);
}

static long post_status(const char *base, const struct how *how, int n)
{
    struct answer a;
    post_delivery(NULL, base, how, n, &a);
    free(a.body);
    return a.status;
}

/* GET base+path (with the operator's token when is_admin); body may be NULL. */
static long get_status(const char *base, const char *path, const struct how *how, bool is_admin,
                       char **body)
{
    char url[512];
    snprintf(url, sizeof(url), "%s%s", base, path);
    const char *headers[] = {is_admin ? "Authorization: Bearer " H_ADMIN_TOKEN : NULL, NULL};
    struct answer a;
    perform(NULL, url, how, headers, NULL, 0, &a);
    if (body != NULL)
        *body = strdup(a.body);
    free(a.body);
    return a.status;
}

static long long stored(struct h_db *db)
{
    return h_db_int(db, "SELECT count(*) FROM deliveries");
}

static long long stored_comment(struct h_db *db, int n)
{
    return h_db_int(db, "SELECT count(*) FROM events WHERE payload->'value'->>'id' = 'C%d'", n);
}

/* ---- the server's log ---- */

#define REFUSED_LINE "msg=\"TLS handshake refused\""

static int count_in_log(const struct h_server *s, const char *needle)
{
    char *log = h_server_log(s);
    int n = 0;
    for (const char *p = log; (p = strstr(p, needle)) != NULL; p++)
        n++;
    free(log);
    return n;
}

static bool wait_for_log(const struct h_server *s, const char *needle, int count, int ms)
{
    int64_t deadline = h_now_ms() + ms;
    do {
        if (count_in_log(s, needle) >= count)
            return true;
        h_sleep_ms(5);
    } while (h_now_ms() < deadline);
    return false;
}

/* The last line holding needle, without its time stamp ("" when none). */
static void last_line(const struct h_server *s, const char *needle, char *out, size_t outsz)
{
    char *log = h_server_log(s);
    const char *hit = NULL;
    for (const char *p = log; (p = strstr(p, needle)) != NULL; p++)
        hit = p;
    out[0] = '\0';
    if (hit != NULL)
        snprintf(out, outsz, "%.*s", (int)strcspn(hit, "\n"), hit);
    free(log);
}

/* Refusals are logged at most once a second: the test spaces the ones whose
 * line it reads. */
static int64_t last_refusal_logged;

static void wait_log_window(void)
{
    int64_t wait = last_refusal_logged + 1050 - h_now_ms();
    if (wait > 0)
        h_sleep_ms((int)wait);
}

static int next_comment = 1000;

/* A signed delivery over base that the handshake refuses: a transport error,
 * nothing stored, and one log line holding each of want[] (" reason=x ",
 * " refused_total=n "). */
static void check_refused(struct h_db *db, const struct h_server *s, const char *base,
                          const struct how *how, const char *what, const char *const *want)
{
    wait_log_window();
    int lines = count_in_log(s, REFUSED_LINE);
    long long before = stored(db);
    struct answer a;
    post_delivery(NULL, base, how, next_comment++, &a);
    tap_ok(a.status == 0 && a.rc != CURLE_OK, "%s: refused in the handshake, no HTTP status (%s)",
           what, a.error);
    free(a.body);
    tap_is_int(stored(db) - before, 0, "%s: nothing is stored", what);
    tap_ok(wait_for_log(s, REFUSED_LINE, lines + 1, 2000), "%s: one line is logged", what);
    last_refusal_logged = h_now_ms();
    char line[1024];
    last_line(s, REFUSED_LINE, line, sizeof(line));
    for (const char *const *w = want; *w != NULL; w++)
        tap_contains(line, *w, "%s: the line has%s", what, *w);
}

/* ---- HTTPS with Meta's mutual TLS ---- */

static void test_mtls(struct h_db *db)
{
    int tls_port = h_free_port(), admin_port = h_free_port();
    while (admin_port == tls_port)
        admin_port = h_free_port();
    char tls_listen[64], admin_listen[64], cert[200], key[200], ca[200];
    snprintf(tls_listen, sizeof(tls_listen), "HUBBUB_TLS_LISTEN=127.0.0.1:%d", tls_port);
    snprintf(admin_listen, sizeof(admin_listen), "HUBBUB_TLS_ADMIN_LISTEN=127.0.0.1:%d",
             admin_port);
    snprintf(cert, sizeof(cert), "HUBBUB_TLS_CERT=%s", in_dir("server.pem"));
    snprintf(key, sizeof(key), "HUBBUB_TLS_KEY=%s", in_dir("server.key"));
    snprintf(ca, sizeof(ca), "HUBBUB_MTLS_CA=%s", in_dir("ca.pem"));
    const char *env[] = {tls_listen, admin_listen, cert, key, ca, NULL};
    struct h_server s;
    h_server_start(&s, db, env);
    char tls[64], admin[64], line[1024];
    snprintf(tls, sizeof(tls), "https://127.0.0.1:%d", tls_port);
    snprintf(admin, sizeof(admin), "https://127.0.0.1:%d", admin_port);
    last_line(&s, "msg=\"HTTPS listening\"", line, sizeof(line));
    tap_contains(line, "mtls=required", "the HTTPS listener logs that mTLS is required");

    const struct client meta_cert = client_named("client"), via1_cert = client_named("via1"),
                        via3_cert = client_named("via3"), via4_cert = client_named("via4"),
                        wrong_cert = client_named("wrong"),
                        untrusted_cert = client_named("untrusted"),
                        expired_cert = client_named("expired");
    const struct how meta = {.client = &meta_cert}, wrong = {.client = &wrong_cert};

    /* Meta's certificate: deliveries and the verification GET. */
    struct answer a;
    long long before = stored(db);
    post_delivery(NULL, tls, &meta, 1, &a);
    tap_is_int(a.status, 200, "Meta's certificate: a signed delivery over HTTPS gets 200");
    if (a.status == 0)
        tap_diag("%s", a.error);
    tap_contains(a.body, "\"status\":\"stored\"", "the answer says stored");
    tap_is_int(a.http_version, CURL_HTTP_VERSION_1_1, "that was HTTP/1.1");
    free(a.body);
    tap_is_int(stored(db) - before, 1, "one delivery is stored");
    tap_is_int(stored_comment(db, 1), 1, "with its event");
    char *body = NULL;
    tap_is_int(get_status(tls,
                          "/webhooks/" APP_ID "?hub.mode=subscribe&hub.challenge=4242"
                          "&hub.verify_token=" VERIFY_TOKEN,
                          &meta, false, &body),
               200, "the verification GET over HTTPS gets 200");
    tap_is_str(body, "4242", "and echoes the challenge");
    free(body);

    const struct how h2 = {.client = &meta_cert, .http_version = CURL_HTTP_VERSION_2TLS};
    post_delivery(NULL, tls, &h2, 2, &a);
    tap_is_int(a.status, 200, "a signed delivery over HTTP/2 gets 200");
    tap_is_int(a.http_version, CURL_HTTP_VERSION_2_0, "ALPN chose HTTP/2");
    free(a.body);
    tap_is_int(stored_comment(db, 2), 1, "the HTTP/2 delivery is stored");
    post_delivery(NULL, tls, &meta, 3, &a);
    tap_ok(a.status == 200 && a.http_version == CURL_HTTP_VERSION_1_1,
           "HTTP/1.1 still works beside it (%ld)", a.status);
    free(a.body);

    const struct how via1 = {.client = &via1_cert}, via3 = {.client = &via3_cert};
    tap_is_int(post_status(tls, &via1, 4), 200,
               "a certificate signed by an intermediate (sent along) gets 200");
    tap_is_int(post_status(tls, &via3, 5), 200,
               "a chain of three intermediates (depth 3) gets 200");
    tap_ok(stored_comment(db, 4) == 1 && stored_comment(db, 5) == 1,
           "both chained deliveries are stored");
    const struct how tls12 = {.client = &meta_cert,
                              .ssl_version = CURL_SSLVERSION_TLSv1_2 | CURL_SSLVERSION_MAX_TLSv1_2};
    tap_is_int(post_status(tls, &tls12, 6), 200, "TLS 1.2 is accepted");

    /* Refused in the handshake, each reason logged. */
    const char *wrong_cn[] = {" reason=wrong_cn ", " refused_total=1 ", NULL};
    check_refused(db, &s, tls, &wrong, "a certificate with another CN", wrong_cn);

    /* Meanwhile, the other listeners: no webhooks there. */
    before = stored(db);
    tap_is_int(post_status(s.base, &PLAIN, 20), 403,
               "on the plain listener a signed webhook POST gets 403");
    struct h_resp r;
    h_post_signed(&r, &s, APP_ID, SECRET, "{\"object\":\"instagram\",\"entry\":[]}", 33);
    tap_contains(r.body, "\"client_certificate_required\"",
                 "the 403 is client_certificate_required");
    h_resp_free(&r);
    tap_is_int(get_status(s.base,
                          "/webhooks/" APP_ID "?hub.mode=subscribe&hub.challenge=7"
                          "&hub.verify_token=" VERIFY_TOKEN,
                          &PLAIN, false, NULL),
               403, "the verification GET on the plain listener gets 403 too");
    tap_is_int(get_status(s.base, "/healthz", &PLAIN, false, NULL), 200,
               "/healthz works on the plain listener");
    tap_is_int(get_status(s.base, "/v1/tenants", &PLAIN, true, &body), 200,
               "the admin API works on the plain listener");
    tap_contains(body, "\"acme\"", "and lists the tenant");
    free(body);
    tap_is_int(get_status(admin, "/v1/tenants", &PLAIN, true, &body), 200,
               "HUBBUB_TLS_ADMIN_LISTEN serves the admin API over HTTPS without a client "
               "certificate");
    tap_contains(body, "\"acme\"", "the admin answer is the tenant list");
    free(body);
    tap_is_int(get_status(admin, "/v1/tenants", &PLAIN, false, NULL), 401,
               "the admin listener still wants the token");
    post_delivery(NULL, admin, &PLAIN, 21, &a);
    tap_is_int(a.status, 403, "the admin listener refuses a signed webhook POST (403)");
    tap_contains(a.body, "\"client_certificate_required\"", "as client_certificate_required");
    free(a.body);
    tap_is_int(post_status(admin, &meta, 22), 403,
               "even with Meta's certificate at hand (the admin listener never asks for it)");
    tap_is_int(stored(db) - before, 0, "nothing is stored from the plain or admin listener");

    const struct how untrusted = {.client = &untrusted_cert}, expired = {.client = &expired_cert},
                     none = {0}, via4 = {.client = &via4_cert};
    const char *untrusted1[] = {" reason=untrusted ", " refused_total=1 ", NULL};
    check_refused(db, &s, tls, &untrusted, "a certificate from another CA", untrusted1);
    const char *expired1[] = {" reason=expired ", " refused_total=1 ", NULL};
    check_refused(db, &s, tls, &expired, "an expired certificate", expired1);
    const char *none1[] = {" reason=no_certificate ", " refused_total=1 ", NULL};
    check_refused(db, &s, tls, &none, "no client certificate (TLS 1.3)", none1);
    const char *untrusted2[] = {" reason=untrusted ", " refused_total=2 ", NULL};
    check_refused(db, &s, tls, &via4, "a chain of four intermediates (depth 4)", untrusted2);

    /* A TLS 1.2 handshake that fails before any certificate is asked for (no
     * cipher in common: RSA key exchange with an EC key) is not a missing one. */
    const struct how rsa_kx = {.client = &meta_cert,
                               .ssl_version = CURL_SSLVERSION_TLSv1_2 | CURL_SSLVERSION_MAX_TLSv1_2,
                               .ciphers = "AES128-SHA"};
    const char *no_cipher[] = {" reason=handshake_failed ", NULL};
    check_refused(db, &s, tls, &rsa_kx, "no cipher in common (TLS 1.2)", no_cipher);

    /* TLS 1.1 and below: OpenSSL 3 offers them only at security level 0. */
    const struct how tls11 = {.client = &meta_cert,
                              .ssl_version = CURL_SSLVERSION_TLSv1 | CURL_SSLVERSION_MAX_TLSv1_1,
                              .ciphers = "DEFAULT:@SECLEVEL=0"};
    struct answer t;
    char url[128];
    snprintf(url, sizeof(url), "%s/healthz", tls);
    wait_log_window();
    perform(NULL, url, &tls11, NULL, NULL, 0, &t);
    if (t.rc != CURLE_OK && strstr(t.error, "no protocols available") != NULL) {
        tap_ok(true, "# SKIP this libcurl/OpenSSL cannot offer TLS 1.1 (%s)", t.error);
    } else {
        tap_ok(t.status == 0, "TLS 1.1 and below get no HTTP answer (%s)", t.error);
        tap_ok(wait_for_log(&s, "reason=handshake_failed alert=\"protocol version\"", 1, 2000),
               "the server refused them for the protocol version");
        last_refusal_logged = h_now_ms();
    }
    free(t.body);

    /* A flood of refusals is logged at most once a second, but counted. */
    int lines = count_in_log(&s, REFUSED_LINE);
    for (int i = 0; i < 6; i++) {
        post_delivery(NULL, tls, &wrong, next_comment++, &a);
        tap_ok(a.status == 0, "flood: wrong CN %d refused", i + 1);
        free(a.body);
    }
    tap_is_int(count_in_log(&s, REFUSED_LINE) - lines, 0,
               "6 refusals within a second of the last logged one log nothing more");

    /* SIGHUP: a keep-alive connection, then a new certificate. */
    CURL *ka = curl_easy_init();
    perform(ka, url, &meta, NULL, NULL, 0, &a);
    tap_is_int(a.status, 200, "keep-alive: a first request");
    tap_contains(a.subject, "CN = hubbub-original", "the server certificate is the original one");
    free(a.body);
    perform(ka, url, &meta, NULL, NULL, 0, &a);
    tap_ok(a.status == 200 && a.num_connects == 0,
           "keep-alive: a second request reuses the connection (%ld, %ld new)", a.status,
           a.num_connects);
    free(a.body);

    if (rename(in_dir("server2.pem"), in_dir("server.pem")) != 0 ||
        rename(in_dir("server2.key"), in_dir("server.key")) != 0)
        tap_bail("cannot replace the server certificate");
    kill(s.pid, SIGHUP);
    tap_ok(wait_for_log(&s, "msg=\"SIGHUP: certificate reloaded\" cn=hubbub-reloaded", 1, 3000),
           "SIGHUP reloads the certificate and logs its CN");
    perform(ka, url, &meta, NULL, NULL, 0, &a);
    tap_ok(a.status == 200 && a.num_connects == 0,
           "the connection opened before SIGHUP still answers (%ld, %ld new)", a.status,
           a.num_connects);
    free(a.body);
    perform(NULL, url, &meta, NULL, NULL, 0, &a);
    tap_is_int(a.status, 200, "a new connection after SIGHUP works");
    tap_contains(a.subject, "CN = hubbub-reloaded", "and gets the new certificate");
    free(a.body);
    snprintf(url, sizeof(url), "%s/healthz", admin);
    perform(NULL, url, &PLAIN, NULL, NULL, 0, &a);
    tap_contains(a.subject, "CN = hubbub-reloaded", "the admin listener has the new one too");
    free(a.body);
    tap_is_int(post_status(tls, &meta, 40), 200, "after SIGHUP Meta's certificate gets 200");

    /* The reloaded context still checks clients (the flood was counted). */
    const struct how none12 = {.ssl_version =
                                   CURL_SSLVERSION_TLSv1_2 | CURL_SSLVERSION_MAX_TLSv1_2};
    const char *none2[] = {" reason=no_certificate ", " refused_total=2 ", " similar_held_back=6",
                           NULL};
    check_refused(db, &s, tls, &none12, "after SIGHUP, no certificate (TLS 1.2)", none2);
    tap_is_int(post_status(tls, &wrong, 41), 0, "after SIGHUP, another CN is still refused");
    tap_is_int(stored_comment(db, 41), 0, "and not stored");

    write_file(in_dir("server.pem"), "-----BEGIN CERTIFICATE-----\nbroken\n"
                                     "-----END CERTIFICATE-----\n");
    kill(s.pid, SIGHUP);
    tap_ok(wait_for_log(&s, "certificate not reloaded; keeping the old one", 1, 3000),
           "a broken certificate file on SIGHUP is logged");
    snprintf(url, sizeof(url), "%s/healthz", tls);
    perform(NULL, url, &meta, NULL, NULL, 0, &a);
    tap_is_int(a.status, 200, "after the broken reload new connections still work");
    tap_contains(a.subject, "CN = hubbub-reloaded", "with the certificate loaded before");
    free(a.body);
    perform(ka, url, &meta, NULL, NULL, 0, &a);
    tap_ok(a.status == 200 && a.num_connects == 0, "and the first keep-alive connection too");
    free(a.body);
    curl_easy_cleanup(ka);

    tap_is_int(h_server_stop(&s, SIGTERM), 0, "SIGTERM stops the HTTPS server with status 0");
}

/* Listeners on the same port of two addresses: the admin one must not pass
 * for the one that verified the client. */
static void test_same_port(struct h_db *db)
{
    int port = h_free_port();
    char tls_listen[64], admin_listen[64], cert[200], key[200], ca[200];
    snprintf(tls_listen, sizeof(tls_listen), "HUBBUB_TLS_LISTEN=127.0.0.1:%d", port);
    snprintf(admin_listen, sizeof(admin_listen), "HUBBUB_TLS_ADMIN_LISTEN=127.0.0.2:%d", port);
    snprintf(cert, sizeof(cert), "HUBBUB_TLS_CERT=%s", in_dir("server.pem"));
    snprintf(key, sizeof(key), "HUBBUB_TLS_KEY=%s", in_dir("server.key"));
    snprintf(ca, sizeof(ca), "HUBBUB_MTLS_CA=%s", in_dir("ca.pem"));
    const char *env[] = {tls_listen, admin_listen, cert, key, ca, NULL};
    struct h_server s;
    h_server_start(&s, db, env);
    char tls[64], admin[64];
    snprintf(tls, sizeof(tls), "https://127.0.0.1:%d", port);
    snprintf(admin, sizeof(admin), "https://127.0.0.2:%d", port);
    const struct client meta_cert = client_named("client");
    const struct how meta = {.client = &meta_cert};
    tap_is_int(post_status(tls, &meta, 50), 200, "same port: Meta's certificate on the mTLS one");
    tap_is_int(get_status(admin, "/v1/tenants", &PLAIN, true, NULL), 200,
               "same port: the admin API on the other address");
    tap_is_int(post_status(admin, &PLAIN, 51), 403,
               "same port: a webhook POST on the admin address gets 403");
    tap_is_int(stored_comment(db, 51), 0, "same port: and is not stored");
    tap_is_int(h_server_stop(&s, SIGTERM), 0, "same port: the server stops cleanly");
}

/* ---- clients that reset their connection ---- */

/* A TLS connection that asks for /healthz, reads the answer and then resets
 * (SO_LINGER 0: RST, no close_notify), as a client that crashed would.
 * Returns false when the exchange itself failed. */
static bool request_then_reset(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return false;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    char buf[512];
    bool ok = SSL_connect(ssl) == 1 && SSL_write(ssl, req, sizeof(req) - 1) > 0 &&
              SSL_read(ssl, buf, sizeof(buf)) > 0;
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    return ok;
}

/* libh2o 2.2.5 leaked every TLS connection a client reset (server/uvwrite.h):
 * the server then could not stop until its shutdown timeout. */
static void test_reset_connections(struct h_db *db)
{
    int port = h_free_port();
    char tls_listen[64], cert[200], key[200];
    snprintf(tls_listen, sizeof(tls_listen), "HUBBUB_TLS_LISTEN=127.0.0.1:%d", port);
    snprintf(cert, sizeof(cert), "HUBBUB_TLS_CERT=%s", in_dir("server.pem"));
    snprintf(key, sizeof(key), "HUBBUB_TLS_KEY=%s", in_dir("server.key"));
    const char *env[] = {tls_listen, cert, key, "HUBBUB_SHUTDOWN_TIMEOUT=5s", NULL};
    struct h_server s;
    h_server_start(&s, db, env);
    int ok = 0;
    for (int i = 0; i < 20; i++)
        ok += request_then_reset(port);
    tap_is_int(ok, 20, "20 TLS clients got their answer and then reset the connection");
    h_sleep_ms(200);
    int64_t t0 = h_now_ms();
    tap_is_int(h_server_stop(&s, SIGTERM), 0, "reset connections: SIGTERM still exits 0");
    int64_t took = h_now_ms() - t0;
    tap_ok(took < 4000,
           "  in %lld ms, well before the 5 s shutdown timeout: every reset connection "
           "was closed",
           (long long)took);
}

/* ---- session resumption ---- */

/* One TLS connection to port with the client certificate name, offering
 * *sess (if any) for resumption, GET /healthz; the session is kept in *sess
 * for the next one. Returns the HTTP status line's code, 0 on failure, and
 * whether the session was resumed in *reused. */
static int resume_get(int port, const char *name, int version, SSL_SESSION **sess, bool *reused)
{
    *reused = false;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return 0;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, version);
    SSL_CTX_set_max_proto_version(ctx, version);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
    const struct client cl = client_named(name);
    SSL_CTX_use_certificate_chain_file(ctx, cl.cert);
    SSL_CTX_use_PrivateKey_file(ctx, cl.key, SSL_FILETYPE_PEM);
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (*sess != NULL)
        SSL_set_session(ssl, *sess);
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    char buf[2048];
    int status = 0, n = 0;
    if (SSL_connect(ssl) == 1 && SSL_write(ssl, req, sizeof(req) - 1) > 0) {
        int got;
        while (n < (int)sizeof(buf) - 1 && (got = SSL_read(ssl, buf + n, sizeof(buf) - 1 - n)) > 0)
            n += got;
        buf[n] = '\0';
        if (n > 12 && strncmp(buf, "HTTP/1.1 ", 9) == 0)
            status = atoi(buf + 9);
        *reused = SSL_session_reused(ssl) == 1;
        SSL_SESSION *next = SSL_get1_session(ssl);
        if (next != NULL) {
            SSL_SESSION_free(*sess);
            *sess = next;
        }
    }
    SSL_shutdown(ssl);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    return status;
}

/* A client that resumes its TLS session (Meta's do) must not be refused. */
static void test_resumption(struct h_db *db)
{
    int port = h_free_port();
    char tls_listen[64], cert[200], key[200], ca[200];
    snprintf(tls_listen, sizeof(tls_listen), "HUBBUB_TLS_LISTEN=127.0.0.1:%d", port);
    snprintf(cert, sizeof(cert), "HUBBUB_TLS_CERT=%s", in_dir("server.pem"));
    snprintf(key, sizeof(key), "HUBBUB_TLS_KEY=%s", in_dir("server.key"));
    snprintf(ca, sizeof(ca), "HUBBUB_MTLS_CA=%s", in_dir("ca.pem"));
    const char *env[] = {tls_listen, cert, key, ca, NULL};
    struct h_server s;
    h_server_start(&s, db, env);
    static const struct {
        int version;
        const char *name;
    } versions[] = {{TLS1_2_VERSION, "TLS 1.2"}, {TLS1_3_VERSION, "TLS 1.3"}};
    for (size_t i = 0; i < 2; i++) {
        SSL_SESSION *sess = NULL;
        bool reused;
        const char *v = versions[i].name;
        tap_is_int(resume_get(port, "client", versions[i].version, &sess, &reused), 200,
                   "resumption %s: a first connection with Meta's certificate gets 200", v);
        tap_ok(sess != NULL, "resumption %s: the client has a session to resume", v);
        tap_is_int(resume_get(port, "client", versions[i].version, &sess, &reused), 200,
                   "resumption %s: a second connection offering that session gets 200", v);
        SSL_SESSION_free(sess);
    }
    tap_is_int(h_server_stop(&s, SIGTERM), 0, "resumption: the server stops cleanly");
}

/* ---- a TLS-terminating proxy in front ---- */

static void test_proxy(struct h_db *db, const char *trusted, const char *other)
{
    char trust[64];
    snprintf(trust, sizeof(trust), "HUBBUB_MTLS_TRUSTED_PROXIES=%s", trusted);
    const char *env[] = {"HUBBUB_MTLS_PROXY_HEADER=" PROXY_HEADER, trust, NULL};
    struct h_server s;
    h_server_start(&s, db, env);
    long long before = stored(db);
    int n = strcmp(trusted, "127.0.0.1") == 0 ? 100 : 200;
    struct how from = {.interface = trusted, .header = PROXY_HEADER ": " RIGHT_SUBJECT};
    tap_is_int(post_status(s.base, &from, n), 200,
               "proxy %s: the right subject from the trusted proxy gets 200", trusted);
    tap_is_int(stored_comment(db, n), 1, "proxy %s: and is stored", trusted);
    from.header = PROXY_HEADER ": CN=client.webhooks.example.com,O=Meta";
    tap_is_int(post_status(s.base, &from, n + 1), 403, "proxy %s: another CN gets 403", trusted);
    from.header = PROXY_HEADER ": CN=evil.example,O=" META_CN;
    tap_is_int(post_status(s.base, &from, n + 2), 403,
               "proxy %s: Meta's name elsewhere in the subject does not count", trusted);
    from.header = PROXY_HEADER ": CN=" META_CN ".evil.example";
    tap_is_int(post_status(s.base, &from, n + 3), 403,
               "proxy %s: a CN that only starts with Meta's gets 403", trusted);
    from.header = NULL;
    tap_is_int(post_status(s.base, &from, n + 4), 403, "proxy %s: no header gets 403", trusted);
    /* A proxy that appends its header to the client's: the first one is the
     * client's own. */
    from.header = PROXY_HEADER ": " RIGHT_SUBJECT;
    from.header2 = PROXY_HEADER ": CN=client.webhooks.example.com";
    tap_is_int(post_status(s.base, &from, n + 6), 403,
               "proxy %s: two subject headers (one forged) get 403", trusted);
    from.header = PROXY_HEADER ": CN=client.webhooks.example.com";
    from.header2 = PROXY_HEADER ": " RIGHT_SUBJECT;
    tap_is_int(post_status(s.base, &from, n + 7), 403, "proxy %s: in either order", trusted);
    from.header2 = NULL;
    struct h_resp r;
    h_post_signed(&r, &s, APP_ID, SECRET, "{\"object\":\"instagram\",\"entry\":[]}", 33);
    tap_contains(r.body, "\"client_certificate_required\"",
                 "proxy %s: the 403 is client_certificate_required", trusted);
    h_resp_free(&r);
    from = (struct how){.interface = other, .header = PROXY_HEADER ": " RIGHT_SUBJECT};
    tap_is_int(post_status(s.base, &from, n + 5), 403,
               "proxy %s: the right header from %s is ignored: 403", trusted, other);
    tap_is_int(stored(db) - before, 1, "proxy %s: only the accepted delivery is stored", trusted);
    tap_is_int(get_status(s.base, "/healthz", &PLAIN, false, NULL), 200,
               "proxy %s: /healthz still works", trusted);
    tap_is_int(h_server_stop(&s, SIGTERM), 0, "proxy %s: the server stops cleanly", trusted);
}

/* ---- settings that do not fit together ---- */

static void check_config_error(struct h_db *db, const char *what, const char *const *extra,
                               const char *setting)
{
    /* A port of its own: the default one may be taken. */
    char listen[64];
    snprintf(listen, sizeof(listen), "HUBBUB_LISTEN=127.0.0.1:%d", h_free_port());
    const char *env[12];
    int n = 0;
    env[n++] = listen;
    for (const char *const *e = extra; *e != NULL && n < 11; e++)
        env[n++] = *e;
    env[n] = NULL;
    const char *argv[] = {"serve", NULL};
    char *out = NULL;
    int rc = h_run(db, argv, env, NULL, &out);
    tap_ok(rc != 0 && rc < 128, "%s: hubbub serve exits non-zero (%d)", what, rc);
    if (!tap_contains(out, setting, "%s: the message names %s", what, setting))
        tap_diag("%s", out);
    tap_ok(strstr(out, "Sanitizer") == NULL && strstr(out, "runtime error:") == NULL,
           "%s: no sanitizer report on the way out", what);
    free(out);
}

static void test_config(struct h_db *db)
{
    char tls_listen[64], cert[200], key[200], wrong_key[200], ca[200];
    snprintf(tls_listen, sizeof(tls_listen), "HUBBUB_TLS_LISTEN=127.0.0.1:%d", h_free_port());
    snprintf(cert, sizeof(cert), "HUBBUB_TLS_CERT=%s", in_dir("server.pem"));
    snprintf(key, sizeof(key), "HUBBUB_TLS_KEY=%s", in_dir("server.key"));
    snprintf(wrong_key, sizeof(wrong_key), "HUBBUB_TLS_KEY=%s", in_dir("client.key"));
    snprintf(ca, sizeof(ca), "HUBBUB_MTLS_CA=%s", in_dir("ca.pem"));

    const char *ca_alone[] = {ca, NULL};
    check_config_error(db, "HUBBUB_MTLS_CA without HUBBUB_TLS_LISTEN", ca_alone,
                       "HUBBUB_TLS_LISTEN");
    const char *no_cert[] = {tls_listen, NULL};
    check_config_error(db, "HUBBUB_TLS_LISTEN without a certificate", no_cert, "HUBBUB_TLS_CERT");
    const char *mismatch[] = {tls_listen, cert, wrong_key, NULL};
    check_config_error(db, "a key that does not match the certificate", mismatch, "HUBBUB_TLS_KEY");
    const char *bad_ca[] = {tls_listen, cert, key, "HUBBUB_MTLS_CA=/nonexistent/meta-ca.pem", NULL};
    check_config_error(db, "a client CA file that cannot be read", bad_ca, "HUBBUB_MTLS_CA");
    const char *header_alone[] = {"HUBBUB_MTLS_PROXY_HEADER=" PROXY_HEADER, NULL};
    check_config_error(db, "HUBBUB_MTLS_PROXY_HEADER without trusted proxies", header_alone,
                       "HUBBUB_MTLS_TRUSTED_PROXIES");
    const char *bad_cidr[] = {"HUBBUB_MTLS_PROXY_HEADER=" PROXY_HEADER,
                              "HUBBUB_MTLS_TRUSTED_PROXIES=10.0.0.0/33", NULL};
    check_config_error(db, "a trusted proxy that is not a CIDR block", bad_cidr,
                       "HUBBUB_MTLS_TRUSTED_PROXIES");
}

int main(void)
{
    int64_t t0 = h_now_ms();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    make_certs();
    tap_diag("certificates made in %lld ms", (long long)(h_now_ms() - t0));
    struct h_db db;
    h_db_create(&db, "tls");
    h_setup_app(&db, "acme", APP_ID, VERIFY_TOKEN, SECRET);

    test_config(&db);
    test_proxy(&db, "127.0.0.1", "127.0.0.2");
    test_proxy(&db, "127.0.0.2", "127.0.0.1");
    test_same_port(&db);
    test_reset_connections(&db);
    test_resumption(&db);
    test_mtls(&db); /* last: its SIGHUP test replaces server.pem */

    h_db_drop(&db);
    curl_global_cleanup();
    tap_diag("t_tls took %lld ms", (long long)(h_now_ms() - t0));
    return tap_done();
}
