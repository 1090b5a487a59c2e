/*
 * t_nginx.c - ops/nginx/hubbub.conf in front of hubbub: nginx terminates TLS
 * and verifies Meta's client certificate chain, hubbub checks the CN from the
 * subject nginx passes in X-Client-Cert-Subject (proxy mode, server/mtls.h).
 *
 * The conf is run as shipped: only its listen lines, its three file paths and
 * its upstream address are replaced, inside a small main config of the
 * test's own that keeps nginx's pid, logs and temporary files in a scratch
 * directory. Certificates come from the openssl command: a root CA standing
 * for Meta's outbound API CA, an intermediate that Meta sends beside its
 * client certificate, Meta's client certificate (O has an escaped comma in
 * RFC 2253), one with another CN, one that carries Meta's CN inside O, and a
 * self-signed one with Meta's CN.
 *
 * Skipped when nginx is not installed (ops/install-deps installs it).
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/integration/harness.h"

#define NGINX "/usr/sbin/nginx"
#define APP "1234567890"
#define SECRET "nginx-app-secret-0123456789"
#define TOKEN "nginx verify token"
#define META_CN "client.webhooks.fbclientcerts.com"
#define SUBJECT_HEADER "X-Client-Cert-Subject"

static char dir[64];    /* scratch directory: certificates, configs, logs */
static pid_t nginx_pid; /* 0 when not running */
static int nginx_port;

/* ---- files and commands ---- */

static void path_in(char *out, size_t outsz, const char *name)
{
    snprintf(out, outsz, "%s/%s", dir, name);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    buf[got] = '\0';
    fclose(f);
    if (len != NULL)
        *len = got;
    return buf;
}

static void spill(const char *name, const char *text)
{
    char path[256];
    path_in(path, sizeof(path), name);
    FILE *f = fopen(path, "w");
    if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0)
        tap_bail("cannot write %s: %s", path, strerror(errno));
}

/* Runs a shell command in dir, its output appended to dir/commands.log;
 * bails out when it fails. */
static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    char cmd[2048], full[2300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    snprintf(full, sizeof(full), "cd '%s' && { %s ; } >>commands.log 2>&1", dir, cmd);
    fflush(stdout);
    int st = system(full);
    if (st != 0) {
        char log[256];
        path_in(log, sizeof(log), "commands.log");
        char *out = slurp(log, NULL);
        tap_bail("command failed (%d): %s\n%s", st, cmd, out != NULL ? out : "");
    }
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

/* ---- certificates ---- */

#define NEWKEY "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"

/* name.key and name.crt: a certificate for subj signed by ca (name.csr,
 * name.ext in between), with the extensions in ext. */
static void issue(const char *name, const char *subj, const char *ca, const char *ext)
{
    char file[64];
    snprintf(file, sizeof(file), "%s.ext", name);
    spill(file, ext);
    sh("openssl req " NEWKEY " -keyout %s.key -out %s.csr -subj '%s'", name, name, subj);
    sh("openssl x509 -req -in %s.csr -CA %s.crt -CAkey %s.key -CAcreateserial -days 2"
       " -extfile %s.ext -out %s.crt",
       name, ca, ca, name, name);
}

static void make_certificates(void)
{
    const char *client_ext = "basicConstraints=CA:false\n"
                             "keyUsage=critical,digitalSignature\n"
                             "extendedKeyUsage=clientAuth\n";
    /* Stands for meta-outbound-api-ca-2025-12.pem: only the root is trusted. */
    sh("openssl req -x509 " NEWKEY " -keyout metaca.key -out metaca.crt -days 2"
       " -subj '/O=Test Meta/CN=Test Meta Outbound API CA'"
       " -addext basicConstraints=critical,CA:true -addext keyUsage=critical,keyCertSign,cRLSign");
    issue("inter", "/O=Test Meta/CN=Test Meta Client Intermediate", "metaca",
          "basicConstraints=critical,CA:true,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n");
    /* Clients present their certificate with the intermediate (name.pem). */
    issue("meta", "/C=US/ST=California/L=Menlo Park/O=Meta Platforms, Inc./CN=" META_CN, "inter",
          client_ext);
    issue("wrongcn", "/C=US/O=Meta Platforms, Inc./CN=client.webhooks.example.com", "inter",
          client_ext);
    /* RFC 2253 gives "CN=mallory.example.com,O=x\,CN=client.webhooks...": a
     * substring match on the subject would let it in. */
    issue("cninorg", "/O=x,CN=" META_CN "/CN=mallory.example.com", "inter", client_ext);
    sh("cat meta.crt inter.crt > meta.pem && cat wrongcn.crt inter.crt > wrongcn.pem"
       " && cat cninorg.crt inter.crt > cninorg.pem");
    /* Meta's certificate alone, without the intermediate. */
    sh("cp meta.crt leafonly.pem && cp meta.key leafonly.key");
    /* Meta's CN, but signed by nobody nginx trusts. */
    sh("openssl req -x509 " NEWKEY " -keyout selfsigned.key -out selfsigned.pem -days 2"
       " -subj '/O=Meta Platforms, Inc./CN=" META_CN "'");

    /* The server's own certificate, from a CA the test's client trusts. */
    sh("openssl req -x509 " NEWKEY " -keyout serverca.key -out serverca.crt -days 2"
       " -subj '/CN=Test Server CA'"
       " -addext basicConstraints=critical,CA:true -addext keyUsage=critical,keyCertSign,cRLSign");
    issue("server", "/CN=localhost", "serverca",
          "basicConstraints=CA:false\nkeyUsage=critical,digitalSignature\n"
          "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n");
    sh("cat server.crt serverca.crt > server.pem");
}

/* ---- the nginx configuration ---- */

/* Replaces the only occurrence of from in *text with to; bails out when
 * there is not exactly one, so that the conf and this test stay in step. */
static void replace_once(char **text, const char *from, const char *to)
{
    char *at = strstr(*text, from);
    if (at == NULL || strstr(at + 1, from) != NULL)
        tap_bail("ops/nginx/hubbub.conf must hold '%s' exactly once", from);
    size_t head = (size_t)(at - *text), flen = strlen(from), tlen = strlen(to);
    size_t tail = strlen(at + flen);
    char *out = malloc(head + tlen + tail + 1);
    memcpy(out, *text, head);
    memcpy(out + head, to, tlen);
    memcpy(out + head + tlen, at + flen, tail + 1);
    free(*text);
    *text = out;
}

static void render_config(int hubbub_port)
{
    char src[512], to[512];
    snprintf(src, sizeof(src), "%s/ops/nginx/hubbub.conf", HB_SOURCE_DIR);
    char *conf = slurp(src, NULL);
    if (conf == NULL)
        tap_bail("cannot read %s: %s", src, strerror(errno));
    snprintf(to, sizeof(to), "listen 127.0.0.1:%d ssl http2;", nginx_port);
    replace_once(&conf, "listen 443 ssl http2;", to);
    replace_once(&conf, "listen [::]:443 ssl http2;", "# (IPv6 listener left out by the test)");
    snprintf(to, sizeof(to), "%s/server.pem", dir);
    replace_once(&conf, "/etc/ssl/hubbub/fullchain.pem", to);
    snprintf(to, sizeof(to), "%s/server.key", dir);
    replace_once(&conf, "/etc/ssl/hubbub/privkey.pem", to);
    snprintf(to, sizeof(to), "%s/metaca.crt", dir);
    replace_once(&conf, "/etc/ssl/meta/meta-outbound-api-ca-2025-12.pem", to);
    snprintf(to, sizeof(to), "server 127.0.0.1:%d;", hubbub_port);
    replace_once(&conf, "server 127.0.0.1:8080;", to);
    spill("hubbub.conf", conf);
    free(conf);

    /* What Debian's /etc/nginx/nginx.conf would be, with everything nginx
     * writes kept in dir. As root, workers run as nobody (nginx's default
     * user): dir is made searchable so that they reach their temp paths. */
    char main_conf[2048];
    snprintf(main_conf, sizeof(main_conf),
             "worker_processes 1;\n"
             "pid %1$s/nginx.pid;\n"
             "error_log %1$s/error.log info;\n"
             "events { worker_connections 128; }\n"
             "http {\n"
             "    access_log %1$s/access.log;\n"
             "    client_body_temp_path %1$s/body;\n"
             "    proxy_temp_path %1$s/proxy;\n"
             "    fastcgi_temp_path %1$s/fastcgi;\n"
             "    uwsgi_temp_path %1$s/uwsgi;\n"
             "    scgi_temp_path %1$s/scgi;\n"
             "    include %1$s/hubbub.conf;\n"
             "}\n",
             dir);
    spill("nginx.conf", main_conf);
    chmod(dir, 0755);
}

/* ---- running nginx ---- */

static void nginx_diag(void)
{
    char path[256];
    path_in(path, sizeof(path), "error.log");
    char *log = slurp(path, NULL);
    if (log != NULL && log[0] != '\0')
        tap_diag("nginx error.log:\n%s", log);
    free(log);
}

static bool nginx_started, passed;

/* At any exit: nginx must not outlive the test. Its files are removed after
 * a pass, or when it never ran; otherwise kept to read. */
static void clean_up_at_exit(void)
{
    if (nginx_pid > 0) {
        /* SIGTERM: the master stops its workers and reaps them. Should it
         * not exit within 2 s, its process group is killed, workers too. */
        kill(nginx_pid, SIGTERM);
        int64_t deadline = h_now_ms() + 2000;
        while (waitpid(nginx_pid, NULL, WNOHANG) == 0) {
            if (h_now_ms() > deadline) {
                kill(-nginx_pid, SIGKILL);
                waitpid(nginx_pid, NULL, 0);
                break;
            }
            h_sleep_ms(10);
        }
        nginx_pid = 0;
    }
    if (passed || !nginx_started)
        nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
    else
        printf("# nginx's configuration and logs are kept in %s\n", dir);
    fflush(stdout);
}

/* Runs nginx with args after -p/-c/-e; returns its pid. */
static pid_t spawn_nginx(const char *extra1, const char *extra2)
{
    char conf[256], err[256], out[256], prefix[128];
    path_in(conf, sizeof(conf), "nginx.conf");
    path_in(err, sizeof(err), "error.log");
    path_in(out, sizeof(out), "nginx.out");
    snprintf(prefix, sizeof(prefix), "%s/", dir);
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        tap_bail("fork: %s", strerror(errno));
    if (pid == 0) {
        setpgid(0, 0);
        int fd = open(out, O_WRONLY | O_CREAT | O_APPEND, 0600);
        int devnull = open("/dev/null", O_RDONLY);
        dup2(devnull, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(NGINX, "nginx", "-p", prefix, "-c", conf, "-e", err, extra1, extra2, (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid);
    return pid;
}

static bool port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

static void start_nginx(void)
{
    nginx_pid = spawn_nginx("-g", "daemon off;");
    nginx_started = true;
    int64_t deadline = h_now_ms() + 10000;
    while (!port_open(nginx_port)) {
        int status;
        if (waitpid(nginx_pid, &status, WNOHANG) == nginx_pid) {
            nginx_pid = 0;
            nginx_diag();
            tap_bail("nginx exited at start (status %d)", status);
        }
        if (h_now_ms() > deadline) {
            nginx_diag();
            tap_bail("nginx does not listen on port %d after 10 s", nginx_port);
        }
        h_sleep_ms(20);
    }
}

/* ---- HTTPS requests through nginx ---- */

struct req {
    const char *method; /* default GET, or POST with a body */
    const char *path;
    const char *cert;           /* "meta": meta.pem and meta.key in dir; NULL: none */
    bool h2;                    /* HTTP/2 instead of HTTP/1.1 */
    bool tls12;                 /* TLS 1.2 at most instead of 1.3 */
    const char *const *headers; /* NULL-terminated "Name: value", may be NULL */
    const void *body;           /* signed with SECRET when sign is set */
    size_t len;
    bool sign;
};

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    char **buf = arg;
    size_t have = *buf != NULL ? strlen(*buf) : 0, add = size * n;
    *buf = realloc(*buf, have + add + 1);
    memcpy(*buf + have, p, add);
    (*buf)[have + add] = '\0';
    return add;
}

/* Sends q to nginx; returns the HTTP major version used (0: transport error). */
static int ng(struct h_resp *r, const struct req *q)
{
    memset(r, 0, sizeof(*r));
    char url[512], ca[256], cert[256], key[256], sig[72], sighdr[100];
    snprintf(url, sizeof(url), "https://127.0.0.1:%d%s", nginx_port, q->path);
    path_in(ca, sizeof(ca), "serverca.crt");
    struct curl_slist *list = NULL;
    for (const char *const *h = q->headers; h != NULL && *h != NULL; h++)
        list = curl_slist_append(list, *h);
    if (q->sign) {
        h_sign(SECRET, q->body, q->len, sig);
        snprintf(sighdr, sizeof(sighdr), "X-Hub-Signature-256: %s", sig);
        list = curl_slist_append(list, sighdr);
        list = curl_slist_append(list, "Content-Type: application/json");
    }
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(c, CURLOPT_CAINFO, ca);
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION,
                     q->h2 ? CURL_HTTP_VERSION_2TLS : CURL_HTTP_VERSION_1_1);
    if (q->tls12)
        curl_easy_setopt(c, CURLOPT_SSLVERSION,
                         (long)(CURL_SSLVERSION_TLSv1_2 | CURL_SSLVERSION_MAX_TLSv1_2));
    if (q->cert != NULL) {
        snprintf(cert, sizeof(cert), "%s/%s.pem", dir, q->cert);
        snprintf(key, sizeof(key), "%s/%s.key", dir, q->cert);
        curl_easy_setopt(c, CURLOPT_SSLCERT, cert);
        curl_easy_setopt(c, CURLOPT_SSLKEY, key);
    }
    const char *method = q->method != NULL ? q->method : q->body != NULL ? "POST" : "GET";
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (q->body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, q->body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->len);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r->headers);
    CURLcode rc = curl_easy_perform(c);
    long version = 0;
    if (rc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
        curl_easy_getinfo(c, CURLINFO_HTTP_VERSION, &version);
    } else {
        snprintf(r->error, sizeof(r->error), "%s", curl_easy_strerror(rc));
        tap_diag("%s %s: %s", method, q->path, r->error);
    }
    if (r->body == NULL)
        r->body = strdup("");
    r->len = strlen(r->body);
    if (r->headers == NULL)
        r->headers = strdup("");
    curl_slist_free_all(list);
    curl_easy_cleanup(c);
    return version == CURL_HTTP_VERSION_2_0 ? 2 : version == CURL_HTTP_VERSION_1_1 ? 1 : 0;
}

/* A signed delivery of comment C<n> to the app, through nginx. */
static long deliver(int n, const char *cert, bool h2, const char *const *headers, int *version,
                    char **body)
{
    size_t len;
    char *delivery = h_comment_delivery(n, &len);
    struct req q = {.path = "/webhooks/" APP,
                    .cert = cert,
                    .h2 = h2,
                    .headers = headers,
                    .body = delivery,
                    .len = len,
                    .sign = true};
    struct h_resp r;
    int v = ng(&r, &q);
    if (version != NULL)
        *version = v;
    if (body != NULL)
        *body = strdup(r.body);
    long st = r.status;
    h_resp_free(&r);
    free(delivery);
    return st;
}

static long long stored(struct h_db *db, int n)
{
    return h_db_int(db, "SELECT count(*) FROM events WHERE payload->'value'->>'id' = 'C%d'", n);
}

/* hubbub's refusal is a JSON error; nginx's is an HTML page. */
static bool from_hubbub(const char *body)
{
    return strstr(body, "\"client_certificate_required\"") != NULL;
}

int main(void)
{
    if (access(NGINX, X_OK) != 0) {
        printf("1..0 # SKIP nginx is not installed\n");
        return 0;
    }
    snprintf(dir, sizeof(dir), "/tmp/hubbub-nginx-XXXXXX");
    if (mkdtemp(dir) == NULL)
        tap_bail("mkdtemp: %s", strerror(errno));
    atexit(clean_up_at_exit);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int64_t t0 = h_now_ms();
    make_certificates();
    int64_t t_certs = h_now_ms();

    struct h_db db;
    struct h_server s;
    h_db_create(&db, "nginx");
    h_setup_app(&db, "acme", APP, TOKEN, SECRET);
    const char *env[] = {"HUBBUB_MTLS_PROXY_HEADER=" SUBJECT_HEADER,
                         "HUBBUB_MTLS_TRUSTED_PROXIES=127.0.0.1", NULL};
    h_server_start(&s, &db, env);

    nginx_port = h_free_port();
    render_config(s.port);
    {
        pid_t pid = spawn_nginx("-t", NULL);
        int status;
        waitpid(pid, &status, 0);
        char out[256];
        path_in(out, sizeof(out), "nginx.out");
        char *text = slurp(out, NULL);
        if (!tap_ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                    "nginx -t accepts ops/nginx/hubbub.conf"))
            tap_bail("nginx -t:\n%s", text != NULL ? text : "");
        free(text);
    }
    start_nginx();
    int64_t t_up = h_now_ms();

    struct h_resp r;
    char *body = NULL;
    int version = 0;

    /* ---- Meta's certificate ---- */
    struct req handshake = {.path = "/webhooks/" APP "?hub.mode=subscribe&hub.challenge=4711"
                                    "&hub.verify_token=nginx+verify+token",
                            .cert = "meta"};
    ng(&r, &handshake);
    tap_is_int(r.status, 200, "Meta's verification GET through nginx gets 200");
    tap_is_str(r.body, "4711", "and the challenge back");
    h_resp_free(&r);

    tap_is_int(deliver(1, "meta", false, NULL, &version, NULL), 200,
               "a signed delivery with Meta's certificate gets 200 (HTTP/1.1)");
    tap_is_int(version, 1, "over HTTP/1.1");
    tap_is_int(stored(&db, 1), 1, "and it is stored");

    tap_is_int(deliver(2, "meta", true, NULL, &version, NULL), 200,
               "a signed delivery with Meta's certificate gets 200 over HTTP/2");
    tap_is_int(version, 2, "nginx speaks HTTP/2 (ALPN h2)");
    tap_is_int(stored(&db, 2), 1, "and it is stored");

    {
        size_t len;
        char *delivery = h_comment_delivery(4, &len);
        struct req q = {.path = "/webhooks/" APP,
                        .cert = "meta",
                        .tls12 = true,
                        .body = delivery,
                        .len = len,
                        .sign = true};
        ng(&r, &q);
        tap_is_int(r.status, 200, "and over TLS 1.2");
        h_resp_free(&r);
        free(delivery);
        tap_is_int(stored(&db, 4), 1, "stored");
    }

    /* Larger than client_body_buffer_size: nginx buffers it in a temp file
     * before passing it on whole. */
    {
        size_t text = 1024 * 1024, cap = text + 512;
        char *big = malloc(cap);
        int n = snprintf(big, cap,
                         "{\"object\":\"instagram\",\"entry\":[{\"id\":\"17841400000000001\","
                         "\"time\":1700000000,\"changes\":[{\"field\":\"comments\",\"value\":"
                         "{\"id\":\"C3\",\"from\":{\"id\":\"U3\"},\"text\":\"");
        memset(big + n, 'a', text);
        int m = snprintf(big + n + text, cap - (size_t)n - text, "\"}}]}]}");
        struct req q = {.path = "/webhooks/" APP,
                        .cert = "meta",
                        .h2 = true,
                        .body = big,
                        .len = (size_t)n + text + (size_t)m,
                        .sign = true};
        ng(&r, &q);
        tap_is_int(r.status, 200, "a 1 MiB delivery (buffered to a temp file) gets 200");
        h_resp_free(&r);
        tap_is_int(stored(&db, 3), 1, "and it is stored");
        tap_is_int(h_db_int(&db, "SELECT length(payload->'value'->>'text') FROM events"
                                 " WHERE payload->'value'->>'id' = 'C3'"),
                   (long long)text, "whole");
        free(big);
        char path[256];
        path_in(path, sizeof(path), "error.log");
        char *log = slurp(path, NULL);
        tap_contains(log != NULL ? log : "",
                     "a client request body is buffered to a temporary file",
                     "nginx buffered it to a temp file");
        free(log);
    }
    /* Over client_max_body_size (= HUBBUB_BODY_LIMIT): refused by nginx from
     * Content-Length, before the body is sent. */
    {
        size_t len = 5 * 1024 * 1024;
        char *huge = malloc(len);
        memset(huge, ' ', len);
        struct req q = {
            .path = "/webhooks/" APP, .cert = "meta", .body = huge, .len = len, .sign = true};
        ng(&r, &q);
        tap_is_int(r.status, 413, "a 5 MiB body gets 413");
        tap_contains(r.body, "nginx", "from nginx");
        h_resp_free(&r);
        free(huge);
    }

    /* ---- a certificate nginx verifies but hubbub refuses ---- */
    tap_is_int(deliver(10, "wrongcn", false, NULL, NULL, &body), 403,
               "a certificate from Meta's CA with another CN gets 403");
    tap_ok(from_hubbub(body), "from hubbub (nginx verified the chain): %s", body);
    free(body);
    tap_is_int(deliver(11, "cninorg", true, NULL, NULL, &body), 403,
               "Meta's CN inside O (\"O=x\\,CN=" META_CN "\") gets 403");
    tap_ok(from_hubbub(body), "from hubbub: %s", body);
    free(body);

    /* ---- no certificate, or an untrusted one: nginx refuses ---- */
    tap_is_int(deliver(12, NULL, false, NULL, NULL, &body), 400,
               "a delivery without a client certificate gets 400");
    tap_contains(body, "No required SSL certificate was sent", "from nginx");
    free(body);
    tap_is_int(deliver(13, NULL, true, NULL, NULL, &body), 400, "also over HTTP/2");
    free(body);
    tap_is_int(deliver(14, "selfsigned", false, NULL, NULL, &body), 400,
               "a self-signed certificate with Meta's CN gets 400");
    tap_contains(body, "The SSL certificate error", "from nginx");
    free(body);
    tap_is_int(deliver(15, "leafonly", false, NULL, NULL, &body), 400,
               "Meta's certificate without its intermediate gets 400");
    tap_contains(body, "The SSL certificate error", "from nginx");
    free(body);
    handshake.cert = NULL;
    ng(&r, &handshake);
    tap_is_int(r.status, 400, "the verification GET without a certificate gets 400 too");
    h_resp_free(&r);

    /* ---- a forged subject header ---- */
    const char *forged[] = {SUBJECT_HEADER ": CN=" META_CN ",O=Meta Platforms\\, Inc.", NULL};
    const char *forged_lc[] = {"x-client-cert-subject: CN=" META_CN, NULL};
    tap_is_int(deliver(20, NULL, false, forged, NULL, &body), 400,
               "a forged subject header without a certificate gets 400");
    tap_contains(body, "No required SSL certificate was sent", "from nginx");
    free(body);
    tap_is_int(deliver(21, "wrongcn", false, forged, NULL, &body), 403,
               "a forged subject header with another verified certificate gets 403");
    tap_ok(from_hubbub(body), "from hubbub: nginx replaced the header with the real subject");
    free(body);
    tap_is_int(deliver(22, "wrongcn", true, forged_lc, NULL, &body), 403,
               "the same over HTTP/2, header in lower case");
    tap_ok(from_hubbub(body), "from hubbub");
    free(body);
    /* nginx merges "//" before resolving "..", hubbub does not: this is
     * /v1/tenants to nginx (no certificate needed) and would be
     * /webhooks/v1/tenants to hubbub. The /v1/ location passes nginx's reading
     * on, so hubbub's admin API answers, not its webhook handler. */
    const char *auth[] = {"Authorization: Bearer " H_ADMIN_TOKEN, NULL};
    const char *forged_auth[] = {forged[0], auth[0], NULL};
    struct req twisted = {.path = "/webhooks//../v1/tenants", .headers = forged_auth};
    ng(&r, &twisted);
    tap_is_int(r.status, 200, "\"/webhooks//../v1/tenants\" reaches hubbub as /v1/tenants");
    tap_contains(r.body, "acme", "the admin API answers it");
    h_resp_free(&r);
    for (int n = 10; n <= 22; n++)
        if (stored(&db, n) != 0)
            tap_ok(false, "refused delivery C%d was stored", n);
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM events"), 4,
               "only the four accepted deliveries are stored");

    /* ---- the admin API needs no client certificate ---- */
    struct req tenants = {.path = "/v1/tenants", .headers = auth};
    ng(&r, &tenants);
    tap_is_int(r.status, 200, "GET /v1/tenants with the operator token, no certificate: 200");
    tap_contains(r.body, "acme", "it lists the tenant");
    h_resp_free(&r);
    tenants.h2 = true;
    tap_is_int(ng(&r, &tenants), 2, "the admin API over HTTP/2");
    tap_is_int(r.status, 200, "answers 200 there too");
    h_resp_free(&r);
    struct req bad_query = {.path = "/v1/events?limit=abc", .headers = auth};
    ng(&r, &bad_query);
    tap_is_int(r.status, 400, "the query string is passed on (hubbub refuses limit=abc)");
    h_resp_free(&r);
    tenants.headers = NULL;
    ng(&r, &tenants);
    tap_is_int(r.status, 401, "without a token, hubbub's 401");
    h_resp_free(&r);
    struct req health = {.path = "/healthz"};
    ng(&r, &health);
    tap_is_int(r.status, 200, "/healthz needs no certificate");
    h_resp_free(&r);
    struct req other = {.path = "/not-listed"};
    ng(&r, &other);
    tap_is_int(r.status, 400, "any other path needs Meta's certificate (deny by default)");
    h_resp_free(&r);

    char *log = h_server_log(&s);
    tap_contains(log, "the client certificate names someone other than Meta",
                 "hubbub logs the wrong-CN refusals");
    free(log);

    int64_t t_checks = h_now_ms();
    tap_diag("certificates %lld ms, hubbub+nginx start %lld ms, requests %lld ms",
             (long long)(t_certs - t0), (long long)(t_up - t_certs), (long long)(t_checks - t_up));

    /* SIGQUIT: graceful shutdown, the workers finish and the master exits 0. */
    kill(nginx_pid, SIGQUIT);
    int status;
    waitpid(nginx_pid, &status, 0);
    nginx_pid = 0;
    tap_ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "nginx stops on SIGQUIT");
    tap_is_int(h_server_stop(&s, SIGTERM), 0, "hubbub stops on SIGTERM");
    h_db_drop(&db);
    int rc = tap_done();
    passed = rc == 0;
    return rc;
}
