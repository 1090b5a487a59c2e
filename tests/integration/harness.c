/*
 * harness.c - see harness.h.
 */
#include "tests/integration/harness.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef HB_SOURCE_DIR
#define HB_SOURCE_DIR "."
#endif

extern char **environ;

/* ---- TAP ---- */

static int tap_count, tap_failed, tap_planned = -1;
static int server_logs; /* how many /tmp/hubbub-test-<pid>-<n>.log files we made */

void tap_plan(int n)
{
    tap_planned = n;
    printf("1..%d\n", n);
    fflush(stdout);
}

static bool tap_vok(bool cond, const char *fmt, va_list ap)
{
    tap_count++;
    printf("%s %d - ", cond ? "ok" : "not ok", tap_count);
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    if (!cond)
        tap_failed++;
    return cond;
}

bool tap_ok(bool cond, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bool r = tap_vok(cond, fmt, ap);
    va_end(ap);
    return r;
}

bool tap_is_int(long long got, long long want, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bool r = tap_vok(got == want, fmt, ap);
    va_end(ap);
    if (!r)
        tap_diag("got %lld, want %lld", got, want);
    return r;
}

bool tap_is_str(const char *got, const char *want, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bool r = tap_vok(got != NULL && want != NULL && strcmp(got, want) == 0, fmt, ap);
    va_end(ap);
    if (!r)
        tap_diag("got '%.300s', want '%.300s'", got ? got : "(null)", want ? want : "(null)");
    return r;
}

bool tap_contains(const char *haystack, const char *needle, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bool r = tap_vok(haystack != NULL && strstr(haystack, needle) != NULL, fmt, ap);
    va_end(ap);
    if (!r)
        tap_diag("'%.300s' does not contain '%s'", haystack ? haystack : "(null)", needle);
    return r;
}

void tap_diag(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("# ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
}

void tap_bail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("Bail out! ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    exit(255);
}

int tap_done(void)
{
    /* Server logs are kept for a failed test, to read; removed otherwise. */
    if (tap_failed == 0) {
        for (int i = 0; i < server_logs; i++) {
            char path[128];
            snprintf(path, sizeof(path), "/tmp/hubbub-test-%d-%d.log", (int)getpid(), i);
            unlink(path);
        }
    }
    if (tap_planned < 0)
        printf("1..%d\n", tap_count);
    else if (tap_planned != tap_count)
        tap_diag("planned %d tests but ran %d", tap_planned, tap_count);
    fflush(stdout);
    return tap_failed == 0 && (tap_planned < 0 || tap_planned == tap_count) ? 0 : 1;
}

/* ---- time ---- */

int64_t h_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void h_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ---- database ---- */

static const char *admin_url(void)
{
    const char *u = getenv("HUBBUB_TEST_DATABASE_URL");
    if (u == NULL || u[0] == '\0')
        u = getenv("DATABASE_URL");
    if (u == NULL || u[0] == '\0')
        tap_bail("HUBBUB_TEST_DATABASE_URL is not set (run the tests with make test)");
    return u;
}

static void append_quoted(char **out, size_t *len, size_t *cap, const char *s)
{
    size_t need = *len + 2 * strlen(s) + 4;
    if (need > *cap) {
        *cap = need * 2;
        *out = realloc(*out, *cap);
    }
    char *p = *out + *len;
    *p++ = '\'';
    for (; *s; s++) {
        if (*s == '\'' || *s == '\\')
            *p++ = '\\';
        *p++ = *s;
    }
    *p++ = '\'';
    *p = '\0';
    *len = (size_t)(p - *out);
}

char *h_url_with_dbname(const char *url, const char *dbname)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &err);
    if (opts == NULL)
        tap_bail("cannot parse database URL: %s", err ? err : "?");
    size_t len = 0, cap = 256;
    char *out = calloc(1, cap);
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        const char *v = strcmp(o->keyword, "dbname") == 0 ? dbname : o->val;
        if (v == NULL || v[0] == '\0')
            continue;
        size_t need = len + strlen(o->keyword) + 2;
        if (need > cap) {
            cap = need * 2;
            out = realloc(out, cap);
        }
        len += (size_t)sprintf(out + len, "%s%s=", len ? " " : "", o->keyword);
        append_quoted(&out, &len, &cap, v);
    }
    PQconninfoFree(opts);
    return out;
}

static PGconn *connect_url(const char *url)
{
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK)
        tap_bail("cannot connect to the test database: %s", PQerrorMessage(c));
    PQclear(PQexec(c, "SET client_min_messages = warning"));
    return c;
}

void h_db_create(struct h_db *db, const char *tag)
{
    memset(db, 0, sizeof(*db));
    snprintf(db->name, sizeof(db->name), "hubbub_t_%s_%d", tag, (int)getpid());
    char *postgres_url = h_url_with_dbname(admin_url(), "postgres");
    PGconn *admin = connect_url(postgres_url);
    free(postgres_url);
    char sql[256];
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", db->name);
    PQclear(PQexec(admin, sql));
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", db->name);
    PGresult *r = PQexec(admin, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        tap_bail("cannot create database %s: %s", db->name, PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(admin);
    db->url = h_url_with_dbname(admin_url(), db->name);
    db->conn = connect_url(db->url);
}

void h_db_drop(struct h_db *db)
{
    if (db->conn != NULL)
        PQfinish(db->conn);
    db->conn = NULL;
    char *postgres_url = h_url_with_dbname(admin_url(), "postgres");
    PGconn *admin = PQconnectdb(postgres_url);
    free(postgres_url);
    if (PQstatus(admin) == CONNECTION_OK) {
        char sql[256];
        snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", db->name);
        PQclear(PQexec(admin, sql));
    }
    PQfinish(admin);
    free(db->url);
    db->url = NULL;
}

static PGresult *vquery(struct h_db *db, const char *fmt, va_list ap)
{
    char sql[8192];
    vsnprintf(sql, sizeof(sql), fmt, ap);
    if (PQstatus(db->conn) != CONNECTION_OK)
        PQreset(db->conn);
    PGresult *r = PQexec(db->conn, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)
        tap_bail("query failed: %s: %s", sql, PQresultErrorMessage(r));
    return r;
}

long long h_db_int(struct h_db *db, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    PGresult *r = vquery(db, fmt, ap);
    va_end(ap);
    long long v =
        PQntuples(r) > 0 && !PQgetisnull(r, 0, 0) ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : 0;
    PQclear(r);
    return v;
}

char *h_db_text(struct h_db *db, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    PGresult *r = vquery(db, fmt, ap);
    va_end(ap);
    char *v = strdup(PQntuples(r) > 0 && !PQgetisnull(r, 0, 0) ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    return v;
}

void h_db_exec(struct h_db *db, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    PQclear(vquery(db, fmt, ap));
    va_end(ap);
}

/* ---- processes ---- */

const char *h_binary(void)
{
    static char path[512];
    if (path[0] == '\0') {
        const char *b = getenv("HUBBUB_TEST_BINARY");
        snprintf(path, sizeof(path), "%s",
                 b != NULL && b[0] != '\0' ? b : HB_SOURCE_DIR "/build/hubbub");
    }
    return path;
}

const char *h_master_key(void)
{
    static char key[65];
    if (key[0] == '\0') {
        unsigned char raw[32];
        RAND_bytes(raw, sizeof(raw));
        for (int i = 0; i < 32; i++)
            sprintf(key + 2 * i, "%02x", raw[i]);
    }
    return key;
}

/* In the child: drop settings inherited from whoever ran the tests, then
 * apply ours, so a developer's own HUBBUB_* variables cannot leak in. */
static void child_env(struct h_db *db, const char *const *env)
{
    for (;;) {
        bool removed = false;
        for (char **e = environ; *e != NULL; e++) {
            if (strncmp(*e, "HUBBUB_", 7) == 0 || strncmp(*e, "DATABASE_URL=", 13) == 0) {
                char name[256];
                size_t n = strcspn(*e, "=");
                snprintf(name, sizeof(name), "%.*s", (int)n, *e);
                unsetenv(name);
                removed = true;
                break;
            }
        }
        if (!removed)
            break;
    }
    if (db != NULL)
        setenv("DATABASE_URL", db->url, 1);
    setenv("HUBBUB_MASTER_KEY", h_master_key(), 1);
    setenv("HUBBUB_ADMIN_TOKEN", H_ADMIN_TOKEN, 1);
    /* Meta is unreachable here: unless a test points the workers at its
     * fake Graph API, their calls are refused at once (port 9, discard). */
    setenv("HUBBUB_GRAPH_INSTAGRAM_URL", "http://127.0.0.1:9", 1);
    setenv("HUBBUB_GRAPH_FACEBOOK_URL", "http://127.0.0.1:9", 1);
    for (const char *const *e = env; e != NULL && *e != NULL; e++)
        putenv(strdup(*e));
}

/* ---- a private PostgreSQL cluster ---- */

void h_cluster_init(struct h_cluster *c, const char *source_dir, const char *tag)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->source_dir, sizeof(c->source_dir), "%s", source_dir);
    snprintf(c->dir, sizeof(c->dir), "/tmp/hubbub-%s-%d", tag, (int)getpid());
    snprintf(c->log, sizeof(c->log), "/tmp/hubbub-%s-%d.log", tag, (int)getpid());
}

int h_cluster_run(struct h_cluster *c, const char *cmd, const char *extra)
{
    char line[768];
    snprintf(line, sizeof(line), "'%s/ops/pg-local' %s '%s' %s >>'%s' 2>&1", c->source_dir, cmd,
             c->dir, extra != NULL ? extra : "", c->log);
    int st = system(line);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

void h_cluster_start_or_bail(struct h_cluster *c)
{
    c->is_created = true;
    if (h_cluster_run(c, "start", "--fsync=off") == 0)
        return;
    char log[4096] = "";
    FILE *f = fopen(c->log, "r");
    if (f != NULL) {
        size_t n = fread(log, 1, sizeof(log) - 1, f);
        log[n] = '\0';
        fclose(f);
    }
    tap_bail("ops/pg-local start %s failed: %s", c->dir, log);
}

char *h_cluster_url(const struct h_cluster *c)
{
    char line[512], url[512] = "";
    snprintf(line, sizeof(line), "'%s/ops/pg-local' url '%s' hubbub", c->source_dir, c->dir);
    FILE *p = popen(line, "r");
    if (p == NULL || fgets(url, sizeof(url), p) == NULL)
        tap_bail("ops/pg-local url failed");
    pclose(p);
    url[strcspn(url, "\n")] = '\0';
    return strdup(url);
}

void h_cluster_remove(struct h_cluster *c)
{
    if (!c->is_created)
        return;
    c->is_created = false;
    h_cluster_run(c, "kill", NULL);
    char line[320];
    snprintf(line, sizeof(line), "rm -rf '%s' '%s'", c->dir, c->log);
    if (system(line) != 0)
        fprintf(stderr, "could not remove %s\n", c->dir);
}

int h_run(struct h_db *db, const char *const *argv, const char *const *env, const char *stdin_data,
          char **output)
{
    return h_spawn(db, h_binary(), argv, env, stdin_data, output);
}

int h_spawn(struct h_db *db, const char *program, const char *const *argv, const char *const *env,
            const char *stdin_data, char **output)
{
    int in[2], out[2];
    /* Read in the parent: the child drops HUBBUB_* variables, and every
     * child must share one master key. */
    h_master_key();
    if (pipe(in) != 0 || pipe(out) != 0)
        tap_bail("pipe: %s", strerror(errno));
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        tap_bail("fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        dup2(out[1], 2);
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        child_env(db, env);
        const char *args[32];
        int n = 0;
        args[n++] = program;
        for (const char *const *a = argv; *a != NULL && n < 31; a++)
            args[n++] = *a;
        args[n] = NULL;
        execv(args[0], (char *const *)args);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    if (stdin_data != NULL) {
        ssize_t w = write(in[1], stdin_data, strlen(stdin_data));
        (void)w;
    }
    close(in[1]);
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 1024 > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        ssize_t n = read(out[0], buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    close(out[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (output != NULL)
        *output = buf;
    else
        free(buf);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void h_setup_app(struct h_db *db, const char *tenant, const char *app_id, const char *verify_token,
                 const char *secret)
{
    char *out = NULL;
    const char *migrate[] = {"migrate", NULL};
    if (h_run(db, migrate, NULL, NULL, &out) != 0)
        tap_bail("hubbub migrate failed: %s", out);
    free(out);
    const char *tadd[] = {"tenant", "add", tenant, "--if-missing", NULL};
    if (h_run(db, tadd, NULL, NULL, &out) != 0)
        tap_bail("hubbub tenant add failed: %s", out);
    free(out);
    char env_secret[600];
    snprintf(env_secret, sizeof(env_secret), "HUBBUB_APP_SECRET=%s", secret);
    const char *env[] = {env_secret, NULL};
    const char *aadd[] = {
        "app", "add", "--tenant", tenant, "--app-id", app_id, "--verify-token", verify_token, NULL};
    if (h_run(db, aadd, env, NULL, &out) != 0)
        tap_bail("hubbub app add failed: %s", out);
    free(out);
}

/* A port below Linux's ephemeral range (32768-60999): a port the kernel
 * hands out to outgoing connections (curl's, other tests') could be taken
 * between this check and hubbub's bind. Where to start is spread by pid so
 * that test files running side by side rarely try the same ports. */
int h_free_port(void)
{
    static int next;
    if (next == 0)
        next = 20000 + (int)(((unsigned)getpid() * 2654435761u) % 12000u);
    for (int tries = 0; tries < 12000; tries++) {
        int port = next;
        next = next + 1 >= 32000 ? 20000 : next + 1;
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {0};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons((uint16_t)port);
        int rc = bind(fd, (struct sockaddr *)&a, sizeof(a));
        close(fd);
        if (rc == 0)
            return port;
    }
    tap_bail("cannot find a free port: %s", strerror(errno));
}

char *h_server_log(const struct h_server *s)
{
    FILE *f = fopen(s->log_path, "r");
    if (f == NULL)
        return strdup("");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    buf[got] = '\0';
    fclose(f);
    return buf;
}

/* Servers still running when a test exits (a bail-out, a failed
 * assertion) are killed, so that no hubbub outlives its test. */
#define MAX_SERVERS 32
static pid_t running_servers[MAX_SERVERS];

static void kill_servers_at_exit(void)
{
    for (int i = 0; i < MAX_SERVERS; i++) {
        /* waitpid tells a child still running from one already reaped. */
        if (running_servers[i] > 0 && waitpid(running_servers[i], NULL, WNOHANG) == 0) {
            kill(running_servers[i], SIGKILL);
            waitpid(running_servers[i], NULL, 0);
        }
        running_servers[i] = 0;
    }
}

static void track_server(pid_t pid, pid_t replace)
{
    static bool registered;
    if (!registered) {
        atexit(kill_servers_at_exit);
        registered = true;
    }
    for (int i = 0; i < MAX_SERVERS; i++) {
        if (running_servers[i] == replace) {
            running_servers[i] = pid;
            return;
        }
    }
}

char *h_comment_delivery(int n, size_t *len)
{
    char buf[512];
    int k =
        snprintf(buf, sizeof(buf),
                 "{\"object\":\"instagram\",\"entry\":[{\"id\":\"17841400000000001\","
                 "\"time\":1700000000,\"changes\":[{\"field\":\"comments\",\"value\":"
                 "{\"id\":\"C%d\",\"text\":\"hello %d \\ud83d\\udc51\",\"from\":{\"id\":\"U%d\"},"
                 "\"media\":{\"id\":\"M1\"}}}]}]}",
                 n, n, n);
    *len = (size_t)k;
    return strdup(buf);
}

void h_server_start(struct h_server *s, struct h_db *db, const char *const *env)
{
    h_server_start_on(s, db, env, h_free_port());
}

void h_server_start_on(struct h_server *s, struct h_db *db, const char *const *env, int port)
{
    static int seq;
    memset(s, 0, sizeof(*s));
    s->port = port;
    snprintf(s->base, sizeof(s->base), "http://127.0.0.1:%d", s->port);
    snprintf(s->log_path, sizeof(s->log_path), "/tmp/hubbub-test-%d-%d.log", (int)getpid(), seq++);
    server_logs = seq;
    char listen[64];
    snprintf(listen, sizeof(listen), "HUBBUB_LISTEN=127.0.0.1:%d", s->port);
    const char *binary = h_binary();
    h_master_key();
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        tap_bail("fork: %s", strerror(errno));
    if (pid == 0) {
        int fd = open(s->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
        int devnull = open("/dev/null", O_RDONLY);
        dup2(devnull, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        child_env(db, env);
        putenv(strdup(listen));
        if (getenv("HUBBUB_LOG_LEVEL") == NULL)
            setenv("HUBBUB_LOG_LEVEL", "info", 1);
        execl(binary, binary, "serve", (char *)NULL);
        _exit(127);
    }
    s->pid = pid;
    track_server(pid, 0);
    char url[128];
    snprintf(url, sizeof(url), "%s/healthz", s->base);
    int64_t deadline = h_now_ms() + 15000;
    while (h_now_ms() < deadline) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            char *log = h_server_log(s);
            tap_bail("hubbub serve exited at start: %s", log);
        }
        struct h_resp r;
        h_http(&r, "GET", url, NULL, NULL, 0);
        long st = r.status;
        h_resp_free(&r);
        if (st == 200)
            return;
        h_sleep_ms(20);
    }
    kill(pid, SIGKILL);
    tap_bail("hubbub serve did not answer /healthz within 15s");
}

int h_server_stop(struct h_server *s, int sig)
{
    if (s->pid <= 0)
        return -1;
    kill(s->pid, sig);
    int status = 0;
    int64_t deadline = h_now_ms() + 20000;
    for (;;) {
        pid_t p = waitpid(s->pid, &status, WNOHANG);
        if (p == s->pid)
            break;
        if (h_now_ms() > deadline) {
            tap_diag("hubbub did not exit after signal %d; killing it", sig);
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &status, 0);
            break;
        }
        h_sleep_ms(10);
    }
    track_server(0, s->pid);
    s->pid = 0;
    /* Under make asan a sanitizer report in the server must fail the test
     * even when every answer the test checked was right. */
    char *log = h_server_log(s);
    if (strstr(log, "ERROR: AddressSanitizer") != NULL || strstr(log, "runtime error:") != NULL ||
        strstr(log, "ERROR: LeakSanitizer") != NULL)
        tap_ok(false, "the server's log (%s) holds a sanitizer report", s->log_path);
    free(log);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* ---- checks ---- */

void h_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[32];
    SHA256(data, len, md);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* Finds "key" followed by optional spaces and a colon (PostgreSQL's
 * json_build_object writes "key" : value); returns what follows the colon
 * and its spaces, or NULL. */
static const char *json_value_of(const char *body, const char *key)
{
    char pat[128];
    snprintf(pat, sizeof(pat), "\"%s\"", key);
    for (const char *p = body != NULL ? strstr(body, pat) : NULL; p != NULL;
         p = strstr(p + 1, pat)) {
        const char *v = p + strlen(pat);
        while (*v == ' ')
            v++;
        if (*v != ':')
            continue;
        v++;
        while (*v == ' ')
            v++;
        return v;
    }
    return NULL;
}

long long h_json_num(const char *body, const char *key)
{
    const char *v = json_value_of(body, key);
    return v == NULL ? -1 : strtoll(v, NULL, 10);
}

/* ---- HTTP ---- */

struct sink {
    char *data;
    size_t len, cap;
};

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    struct sink *s = arg;
    size_t add = size * n;
    if (s->len + add + 1 > s->cap) {
        s->cap = (s->len + add + 1) * 2;
        s->data = realloc(s->data, s->cap);
    }
    memcpy(s->data + s->len, p, add);
    s->len += add;
    s->data[s->len] = '\0';
    return add;
}

void h_http(struct h_resp *r, const char *method, const char *url, const char *const *headers,
            const void *body, size_t len)
{
    static bool inited;
    if (!inited) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        inited = true;
    }
    memset(r, 0, sizeof(*r));
    struct sink b = {0}, h = {0};
    CURL *c = curl_easy_init();
    struct curl_slist *list = curl_slist_append(NULL, "Expect:");
    for (const char *const *p = headers; p != NULL && *p != NULL; p++)
        list = curl_slist_append(list, *p);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
    if (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 || body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body != NULL ? body : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    else
        snprintf(r->error, sizeof(r->error), "%s", curl_easy_strerror(rc));
    r->body = b.data != NULL ? b.data : strdup("");
    r->len = b.len;
    r->headers = h.data != NULL ? h.data : strdup("");
    curl_slist_free_all(list);
    curl_easy_cleanup(c);
}

void h_resp_free(struct h_resp *r)
{
    free(r->body);
    free(r->headers);
    r->body = r->headers = NULL;
}

void h_sign(const char *secret, const void *body, size_t len, char out[72])
{
    unsigned char d[32];
    unsigned int n = sizeof(d);
    HMAC(EVP_sha256(), secret, (int)strlen(secret), body, len, d, &n);
    strcpy(out, "sha256=");
    for (int i = 0; i < 32; i++)
        sprintf(out + 7 + 2 * i, "%02x", d[i]);
}

void h_post_signed(struct h_resp *r, const struct h_server *s, const char *app_id,
                   const char *secret, const void *body, size_t len)
{
    char sig[72], header[100], url[128];
    h_sign(secret, body, len, sig);
    snprintf(header, sizeof(header), "X-Hub-Signature-256: %s", sig);
    snprintf(url, sizeof(url), "%s/webhooks/%s", s->base, app_id);
    const char *headers[] = {"Content-Type: application/json", header, NULL};
    h_http(r, "POST", url, headers, body, len);
}

char *h_read_fixture(const char *relpath, size_t *len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", HB_SOURCE_DIR, relpath);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        tap_bail("cannot open fixture %s", path);
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

/* ---- admin API ---- */

void h_api(struct h_resp *r, const struct h_server *s, const char *token, const char *method,
           const char *path, const char *json)
{
    char url[4096], auth[256];
    snprintf(url, sizeof(url), "%s%s", s->base, path);
    const char *headers[3] = {NULL, NULL, NULL};
    int n = 0;
    if (token != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        headers[n++] = auth;
    }
    if (json != NULL)
        headers[n++] = "Content-Type: application/json";
    h_http(r, method, url, headers, json, json != NULL ? strlen(json) : 0);
}

char *h_json_str(const char *body, const char *key)
{
    const char *p = json_value_of(body, key);
    if (p == NULL || *p != '"')
        return NULL;
    p++;
    char *out = malloc(strlen(p) + 1);
    size_t o = 0;
    for (; *p != '\0' && *p != '"'; p++) {
        if (*p == '\\' && p[1] != '\0')
            p++;
        out[o++] = *p;
    }
    out[o] = '\0';
    return out;
}

long long h_api_ig_account(const struct h_server *s, const char *key, const char *meta_app_id,
                           const char *app_secret, const char *verify_token, const char *ig_id,
                           const char *access_token, const char *field, long *status)
{
    struct h_resp r;
    char json[512];
    snprintf(json, sizeof(json),
             "{\"meta_app_id\":\"%s\",\"app_secret\":\"%s\",\"verify_token\":\"%s\"}",
             meta_app_id, app_secret, verify_token);
    h_api(&r, s, key, "POST", "/v1/apps", json);
    if (r.status != 201)
        tap_bail("creating app %s: %ld %s", meta_app_id, r.status, r.body ? r.body : r.error);
    long long app = h_json_num(r.body, "id");
    h_resp_free(&r);
    snprintf(json, sizeof(json),
             "{\"app_id\":%lld,\"ig_id\":\"%s\",\"login_type\":\"instagram_login\","
             "\"access_token\":\"%s\",\"subscribed_fields\":[\"%s\"]}",
             app, ig_id, access_token, field);
    h_api(&r, s, key, "POST", "/v1/accounts", json);
    *status = r.status;
    long long acc = r.status == 201 ? h_json_num(r.body, "id") : 0;
    h_resp_free(&r);
    return acc;
}

long long h_api_tenant(const struct h_server *s, const char *name, char key[64])
{
    struct h_resp r;
    char body[256], path[128];
    snprintf(body, sizeof(body), "{\"name\":\"%s\"}", name);
    h_api(&r, s, H_ADMIN_TOKEN, "POST", "/v1/tenants", body);
    if (r.status != 201)
        tap_bail("creating tenant %s: %ld %s", name, r.status, r.body ? r.body : r.error);
    long long id = h_json_num(r.body, "id");
    h_resp_free(&r);
    snprintf(path, sizeof(path), "/v1/tenants/%lld/keys", id);
    h_api(&r, s, H_ADMIN_TOKEN, "POST", path, "{\"name\":\"test\"}");
    char *k = r.status == 201 ? h_json_str(r.body, "key") : NULL;
    if (k == NULL || strlen(k) >= 64)
        tap_bail("creating a key for %s: %ld %s", name, r.status, r.body ? r.body : r.error);
    snprintf(key, 64, "%s", k);
    free(k);
    h_resp_free(&r);
    return id;
}
