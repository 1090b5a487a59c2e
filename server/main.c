/*
 * main.c - the hubbub command: start-up order, signals and drain for `serve`,
 * and the small administrative commands that talk to PostgreSQL directly.
 *
 * serve: settings are checked, the master key loaded and the schema verified
 * before the listener opens, so a misconfigured hubbub fails at once with one
 * clear line instead of answering errors. On SIGINT or SIGTERM it stops
 * accepting, answers every request that is waiting on a commit, closes idle
 * connections and exits 0; a second signal, or the drain outlasting
 * HUBBUB_SHUTDOWN_TIMEOUT, exits at once (nothing acknowledged is lost
 * either way: 200 is only ever sent after COMMIT).
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <curl/curl.h>
#include <openssl/rand.h>
#include <uv.h>

#include "db/apps.h"
#include "db/ingest.h"
#include "db/migrate.h"
#include "db/partitions.h"
#include "db/pool.h"
#include "db/rekey.h"
#include "db/retention.h"
#include "db/tenants.h"
#include "lib/hb.h"
#include "lib/log.h"
#include "lib/secret_input.h"
#include "lib/secretbox.h"
#include "server/admin.h"
#include "server/appcache.h"
#include "server/config.h"
#include "server/http.h"
#include "server/mtls.h"
#include "server/observe.h"
#include "server/probe.h"
#include "server/replay.h"
#include "server/server.h"
#include "server/sim.h"
#include "server/stats.h"
#include "server/tls.h"
#include "server/upkeep.h"
#include "server/uvwrite.h"
#include "server/webhook.h"
#include "server/worker.h"

#define EXIT_USAGE 2
#define SECRET_MAX 512
/* During the drain, idle keep-alive connections are kept this long (at most
 * half the drain time), so that a client that got its last answer just
 * before the signal sends its next request to us, and gets an answer that
 * closes the connection, instead of racing our close. */
#define IDLE_GRACE_MS 250
/* Below this many descriptors, hubbub says at start how few connections it
 * can hold. */
#define NOFILE_WANTED 16384

static const char USAGE[] =
    "usage: hubbub [command]\n"
    "\n"
    "  serve                       serve webhooks (the default)\n"
    "  migrate                     apply pending database migrations\n"
    "  migrate status              list migrations; exit 1 unless all are applied\n"
    "  tenant add NAME [--if-missing]\n"
    "  app add --tenant NAME --app-id ID [--verify-token T] [--if-missing]\n"
    "                              the app secret is read from HUBBUB_APP_SECRET or\n"
    "                              standard input; the verify token may also come\n"
    "                              from HUBBUB_VERIFY_TOKEN\n"
    "  app add-secret --app-id ID  add another live secret (same input rules)\n"
    "  keys status                 count the sealed values under each master key id;\n"
    "                              exit 1 unless the sealing key seals them all\n"
    "  keys rotate                 re-seal every value under the sealing key (the\n"
    "                              first in HUBBUB_MASTER_KEY_FILE) while hubbub serves\n"
    "  keys generate               print a new random master key (64 hex characters)\n"
    "  config check                validate and print every setting\n"
    "  sim verify URL --verify-token T\n"
    "                              Meta's GET handshake against any callback URL\n"
    "  sim send URL --field NAME | --all-fields\n"
    "                              signed deliveries as Meta sends them (`hubbub sim`\n"
    "                              lists the options: retries, load)\n"
    "  retention --older-than 90d [--dry-run]\n"
    "                              drop months and delete events past their retention\n"
    "  replay [--app ID] [--since TIME] [--until TIME] [--status rejected|accepted|all]\n"
    "         [--delivery ID] [--dry-run]\n"
    "                              split stored deliveries again and store new events\n"
    "  version\n"
    "\n"
    "Settings come from the environment, then from the file HUBBUB_CONFIG_FILE names;\n"
    "see README.md or `hubbub config check`.\n";

/* Ends the process at once: serve may already run threads inside libpq or
 * libcurl, under which exit()'s handlers (OpenSSL's cleanup) must not run. */
static _Noreturn void die(const char *msg, const char *detail)
{
    fflush(stdout);
    fprintf(stderr, "hubbub: %s%s%s\n", msg, detail ? ": " : "", detail ? detail : "");
    _exit(1);
}

/* ---- serve ---- */

/* Ends the process while other threads may still be inside libpq, libcurl or
 * OpenSSL (a call stuck past the drain time). exit() would run the
 * libraries' atexit cleanup (OpenSSL's) under them, which is undefined and
 * may crash the process on its way out, changing its exit status. Nothing
 * acknowledged depends on those threads: a delivery gets 200 only once
 * committed, a job still running has been put back in the queue, and log
 * lines are written unbuffered. */
static _Noreturn void exit_leaving_threads(int code)
{
    fflush(stdout);
    fflush(stderr);
    _exit(code);
}

struct serve_state {
    struct server srv;
    struct config *cfg; /* srv.cfg, which SIGHUP may change */
    uv_async_t ingest_async;
    struct worker_pool *workers; /* NULL with HUBBUB_WORKERS=0 */
    struct upkeep *upkeep;
    uv_signal_t sigint, sigterm, sighup;
    uv_work_t key_reload;
    bool is_key_reloading, is_key_reload_again;
    uv_timer_t drain_timer;
    int tls_listener, tls_admin_listener; /* -1: none */
    uint64_t drain_started;
    int phase; /* 0 running, 1 draining requests, 2 closing connections */
};

static void on_ingest_notify(void *arg)
{
    uv_async_send(arg);
}

static void on_ingest_async(uv_async_t *async)
{
    struct serve_state *st = async->data;
    struct ingest_delivery *d = db_ingest_take_completed(st->srv.ingest);
    while (d != NULL) {
        struct ingest_delivery *next = d->next;
        webhook_on_completed(&st->srv, d);
        d = next;
    }
}

static void on_drain_tick(uv_timer_t *t)
{
    struct serve_state *st = t->data;
    struct server *srv = &st->srv;
    uint64_t elapsed = uv_now(srv->loop) - st->drain_started;
    if (elapsed > (uint64_t)srv->cfg->shutdown_timeout_ms) {
        log_error("shutdown timed out; exiting with work still in flight",
                  "waiting=%zu connections=%zu", srv->inflight, http_connection_count(srv->http));
        exit_leaving_threads(1);
    }
    uint64_t half = (uint64_t)srv->cfg->shutdown_timeout_ms / 2;
    uint64_t grace = IDLE_GRACE_MS < half ? IDLE_GRACE_MS : half;
    if (st->phase == 1 && srv->inflight == 0 && appcache_pending(srv->apps) == 0 &&
        elapsed >= grace && (!http_has_partial_request(srv->http) || elapsed >= half)) {
        /* Everything read has been answered; the writers have nothing left;
         * no client is half-way through sending a request (or it has had
         * half the drain time to finish). */
        db_ingest_stop(srv->ingest);
        on_ingest_async(&st->ingest_async);
        http_close_idle(srv->http);
        st->phase = 2;
    }
    if (st->phase == 2 && http_connection_count(srv->http) == 0)
        uv_stop(srv->loop);
}

static void on_signal(uv_signal_t *sig, int signum)
{
    struct serve_state *st = sig->data;
    if (st->phase != 0) {
        log_warn("second signal; exiting now", "signal=%d", signum);
        exit_leaving_threads(1);
    }
    log_info("shutting down: finishing in-flight deliveries", "signal=%d", signum);
    st->phase = 1;
    st->srv.stopping = true;
    st->drain_started = uv_now(st->srv.loop);
    if (st->workers != NULL)
        worker_pool_quiesce(st->workers); /* running jobs finish; no new ones start */
    http_stop_accepting(st->srv.http);
    uv_timer_start(&st->drain_timer, on_drain_tick, 0, 10);
}

/* The HTTPS contexts from the settings: the listener's (with Meta's client
 * check when HUBBUB_MTLS_CA is set) and the admin listener's (without). */
static int tls_contexts(const struct config *cfg, struct tls_stats *stats, SSL_CTX **main_ctx,
                        SSL_CTX **admin_ctx, char *err, size_t errsz)
{
    *main_ctx = *admin_ctx = NULL;
    if ((cfg->tls_listen != NULL || cfg->tls_admin_listen != NULL) &&
        (cfg->tls_cert == NULL || cfg->tls_key == NULL)) {
        snprintf(err, errsz,
                 "HUBBUB_TLS_LISTEN and HUBBUB_TLS_ADMIN_LISTEN need "
                 "HUBBUB_TLS_CERT and HUBBUB_TLS_KEY");
        return HB_EINVAL;
    }
    struct tls_settings ts = {cfg->tls_cert, cfg->tls_key, cfg->mtls_ca, cfg->mtls_cn};
    if (cfg->tls_listen != NULL && (*main_ctx = tls_context_new(&ts, stats, err, errsz)) == NULL)
        return HB_EINVAL;
    ts.client_ca_file = NULL;
    if (cfg->tls_admin_listen != NULL &&
        (*admin_ctx = tls_context_new(&ts, stats, err, errsz)) == NULL) {
        SSL_CTX_free(*main_ctx);
        *main_ctx = NULL;
        return HB_EINVAL;
    }
    return 0;
}

/* SIGHUP: read the master key file again, off the loop (a file read). One
 * reload at a time; a signal during one asks for another after it. */
static void key_reload_work(uv_work_t *w)
{
    struct serve_state *st = w->data;
    bool changed;
    const char *why;
    keyring_reload(st->srv.keys, "SIGHUP", &changed, &why); /* logs either way */
}

static void key_reload_done(uv_work_t *w, int status)
{
    (void)status;
    struct serve_state *st = w->data;
    st->is_key_reloading = false;
    if (st->is_key_reload_again && st->phase == 0) {
        st->is_key_reload_again = false;
        st->is_key_reloading = true;
        uv_queue_work(st->srv.loop, &st->key_reload, key_reload_work, key_reload_done);
    }
}

static void reload_master_keys(struct serve_state *st)
{
    if (!keyring_has_file(st->srv.keys)) {
        log_info("SIGHUP: master keys not reloaded (no HUBBUB_MASTER_KEY_FILE)", "%s", "");
        return;
    }
    if (st->is_key_reloading) {
        st->is_key_reload_again = true;
        return;
    }
    st->is_key_reloading = true;
    st->key_reload.data = st;
    uv_queue_work(st->srv.loop, &st->key_reload, key_reload_work, key_reload_done);
}

/* SIGHUP, first: read the settings again (the environment and
 * HUBBUB_CONFIG_FILE) and apply what can change while running: the log level
 * and the certificate and key paths. Other changes are named, with a note
 * that they need a restart; values are never logged (some are secrets).
 * Settings that do not load keep the running ones. */
static void reload_settings(struct serve_state *st)
{
    struct config next;
    char err[512];
    if (config_load(&next, err, sizeof(err)) != 0) {
        char quoted[600];
        log_error("SIGHUP: settings not reloaded; keeping the running ones", "error=%s",
                  log_quote(quoted, sizeof(quoted), err, strlen(err)));
        config_dispose(&next);
        return;
    }
    struct config *cfg = st->cfg;
    size_t n, changed = 0;
    const struct config_setting *s = config_settings(&n);
    for (size_t i = 0; i < n; i++) {
        if (config_value_equal(cfg, &next, &s[i]))
            continue;
        changed++;
        if (strcmp(s[i].env, "HUBBUB_LOG_LEVEL") == 0) {
            /* Said at info level under whichever level shows it. */
            enum log_level from = cfg->log_level;
            bool said = log_enabled(HB_LOG_INFO);
            if (said)
                log_info("SIGHUP: log level changed", "from=%s to=%s", log_level_name(from),
                         log_level_name(next.log_level));
            log_set_level(next.log_level);
            cfg->log_level = next.log_level;
            if (!said)
                log_info("SIGHUP: log level changed", "from=%s to=%s", log_level_name(from),
                         log_level_name(next.log_level));
        } else if (strcmp(s[i].env, "HUBBUB_TLS_CERT") == 0 ||
                   strcmp(s[i].env, "HUBBUB_TLS_KEY") == 0) {
            char **mine = (char **)((char *)cfg + s[i].offset);
            char **theirs = (char **)((char *)&next + s[i].offset);
            char *old = *mine;
            *mine = *theirs;
            *theirs = old; /* freed with next */
            log_info("SIGHUP: setting changed", "setting=%s", s[i].env);
        } else {
            log_warn("SIGHUP: setting changed; it takes effect at the next start", "setting=%s",
                     s[i].env);
        }
    }
    if (changed == 0)
        log_info("SIGHUP: settings unchanged", "%s", "");
    config_dispose(&next);
}

/* SIGHUP, then: read the certificate and key again. New connections get
 * them; open ones finish with the old ones. A bad file keeps the old ones. */
static void on_sighup(uv_signal_t *sig, int signum)
{
    (void)signum;
    struct serve_state *st = sig->data;
    struct server *srv = &st->srv;
    reload_settings(st);
    reload_master_keys(st);
    if (st->tls_listener < 0 && st->tls_admin_listener < 0) {
        log_debug("SIGHUP: no certificate to reload (no HTTPS listener)", "%s", "");
        return;
    }
    SSL_CTX *main_ctx, *admin_ctx;
    char err[512];
    if (tls_contexts(srv->cfg, &srv->tls_stats, &main_ctx, &admin_ctx, err, sizeof(err)) != 0) {
        char q[600];
        log_error("SIGHUP: certificate not reloaded; keeping the old one", "error=%s",
                  log_quote(q, sizeof(q), err, strlen(err)));
        return;
    }
    char what[320] = "";
    if (main_ctx != NULL) {
        http_replace_ssl(srv->http, st->tls_listener, main_ctx);
        tls_describe(main_ctx, what, sizeof(what));
        SSL_CTX_free(main_ctx);
    }
    if (admin_ctx != NULL) {
        http_replace_ssl(srv->http, st->tls_admin_listener, admin_ctx);
        SSL_CTX_free(admin_ctx);
    }
    log_info("SIGHUP: certificate reloaded", "%s", what);
}

static int healthz(void *ctx, h2o_req_t *req)
{
    (void)ctx;
    static const char body[] = "{\"status\":\"ok\"}";
    http_send_json(req, 200, body, sizeof(body) - 1);
    return 0;
}

static PGconn *connect_or_die(const struct config *cfg)
{
    char err[512];
    PGconn *c = db_connect(cfg->database_url, err, sizeof(err));
    if (c == NULL)
        die("cannot connect to the database (DATABASE_URL)", err);
    return c;
}

static void load_keys_or_die(const struct config *cfg, struct secretbox *keys)
{
    const char *why;
    secretbox_init(keys);
    if (secretbox_load(keys, cfg->master_key, cfg->master_key_file, &why) != 0)
        die(why, NULL);
}

struct key_check {
    const struct secretbox *sb;
};

static void check_key_id(void *arg, int column, const char *key_id, int64_t count)
{
    struct key_check *k = arg;
    if (strcmp(key_id, "-") == 0)
        return;
    for (int i = 0; i < k->sb->nkeys; i++)
        if (strcmp(k->sb->keys[i].id, key_id) == 0)
            return;
    log_error("stored secrets are sealed by a master key that is not loaded; they cannot be "
              "opened (deliveries and handshakes of their apps get 500) until it is",
              "column=%s key_id=%s values=%" PRId64, db_rekey_column_name(column), key_id, count);
}

/* A wrong HUBBUB_MASTER_KEY(_FILE) would otherwise show only as 500s. It is
 * said at start, by key id (never a key), and serving goes on: values sealed
 * by a loaded key still open. */
static void warn_unknown_key_ids(PGconn *c, const struct keyring *keys)
{
    struct key_check k = {keyring_current(keys)};
    char err[256];
    if (db_rekey_status(c, check_key_id, &k, err, sizeof(err)) != 0)
        log_warn("cannot check which master keys the stored secrets need", "error=\"%s\"", err);
}

/* Every connection costs a descriptor: take all the kernel allows. */
static void raise_nofile_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t want = rl.rlim_max;
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < NOFILE_WANTED)
        log_warn("the open-file limit is low: hubbub can hold only about this many connections; "
                 "raise it (ulimit -n, LimitNOFILE=)",
                 "nofile=%llu", (unsigned long long)rl.rlim_cur);
    else
        log_debug("open-file limit", "nofile=%llu", (unsigned long long)rl.rlim_cur);
}

static int cmd_serve(struct config *cfg)
{
    const char *kwhy;
    struct keyring *keys = keyring_new(cfg->master_key, cfg->master_key_file, &kwhy);
    if (keys == NULL)
        die(kwhy, NULL);

    char err[1024];
    PGconn *c = connect_or_die(cfg);
    if (db_migrate_check(c, db_migrations_embedded, db_migrations_embedded_count, err,
                         sizeof(err)) != 0)
        die("the database schema is not current", err);
    warn_unknown_key_ids(c, keys);
    PQfinish(c);

    raise_nofile_limit();
    uvwrite_fix_install();
    /* The lookups run on libuv's pool; give it a thread per connection. */
    char nthreads[16];
    snprintf(nthreads, sizeof(nthreads), "%d", cfg->db_pool_size);
    setenv("UV_THREADPOOL_SIZE", nthreads, 0);
    signal(SIGPIPE, SIG_IGN);

    struct serve_state st;
    memset(&st, 0, sizeof(st));
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct server *srv = &st.srv;
    srv->loop = &loop;
    srv->cfg = cfg;
    st.cfg = cfg;
    srv->stats = stats_new();
    srv->probe = probe_start(cfg->database_url, cfg->probe_interval_ms);
    srv->keys = keys;
    srv->pool = db_pool_new(cfg->database_url, cfg->db_pool_size);
    db_pool_set_statement_timeout(srv->pool, cfg->api_statement_timeout_ms);
    if (cfg->read_database_url != NULL) {
        srv->replica = db_replica_new(cfg->read_database_url, cfg->db_pool_size,
                                      cfg->api_statement_timeout_ms, cfg->db_retry_max_ms);
        log_info("event queries go to the read replica (HUBBUB_READ_DATABASE_URL)", "%s", "");
    }
    const char *why;
    if (admin_load_token(cfg, srv->admin_token, sizeof(srv->admin_token), &why) != 0)
        die(why, NULL);
    srv->ratelimit = ratelimit_new(cfg->api_rate, cfg->api_burst, 10000);
    srv->auth_failures = ratelimit_new(1, cfg->api_auth_failures, 10000);
    char perr[512];
    if (mtls_policy_init(&srv->mtls, cfg, perr, sizeof(perr)) != 0)
        die(perr, NULL);

    srv->apps = appcache_new(&loop, srv->pool, keys, cfg->app_cache_ttl_ms);

    uv_async_init(&loop, &st.ingest_async, on_ingest_async);
    st.ingest_async.data = &st;
    struct db_ingest_config icfg = {.url = cfg->database_url,
                                    .writers = cfg->ingest_writers,
                                    .batch_max = cfg->ingest_batch_max,
                                    .queue_limit = cfg->ingest_queue_limit,
                                    .retry_max_ms = cfg->db_retry_max_ms,
                                    .statement_timeout_ms = cfg->ingest_statement_timeout_ms,
                                    .batch_size = stats_batch_size(srv->stats),
                                    .commit_us = stats_commit_us(srv->stats),
                                    .on_stored = stats_events_stored,
                                    .on_stored_arg = srv->stats};
    srv->ingest = db_ingest_new(&icfg, on_ingest_notify, &st.ingest_async);
    curl_global_init(CURL_GLOBAL_DEFAULT); /* before any thread uses libcurl */
    if (cfg->workers > 0 &&
        cfg->job_lease_ms < 3 * (cfg->graph_timeout_ms + cfg->graph_connect_timeout_ms))
        log_warn("HUBBUB_JOB_LEASE is shorter than a subscription job may take (three Graph API "
                 "calls); a slow job may run twice at once",
                 "lease_ms=%" PRId64 " call_ms=%" PRId64, cfg->job_lease_ms,
                 cfg->graph_timeout_ms + cfg->graph_connect_timeout_ms);
    srv->http = http_new(&loop, cfg->body_limit, cfg->request_timeout_ms);
    http_set_observer(srv->http, observe_request_done, srv);
    http_route(srv->http, "/healthz", true, healthz, srv);
    http_route(srv->http, "/readyz", true, observe_readyz, srv);
    http_route(srv->http, "/metrics", true, observe_metrics, srv);
    http_route(srv->http, WEBHOOK_PREFIX, false, webhook_handle, srv);
    http_route(srv->http, ADMIN_PREFIX, false, admin_handle, srv);
    http_route(srv->http, "/openapi.yaml", true, admin_openapi, srv);
    if (http_listen(srv->http, cfg->listen, NULL, false, err, sizeof(err)) < 0)
        die(err, NULL);
    SSL_CTX *main_ctx, *admin_ctx;
    if (tls_contexts(cfg, &srv->tls_stats, &main_ctx, &admin_ctx, err, sizeof(err)) != 0)
        die("cannot set up TLS", err);
    st.tls_listener = st.tls_admin_listener = -1;
    if (main_ctx != NULL) {
        st.tls_listener = http_listen(srv->http, cfg->tls_listen, main_ctx, cfg->mtls_ca != NULL,
                                      err, sizeof(err));
        char what[320];
        tls_describe(main_ctx, what, sizeof(what));
        SSL_CTX_free(main_ctx);
        if (st.tls_listener < 0)
            die(err, NULL);
        log_info("HTTPS listening", "addr=%s mtls=%s %s", cfg->tls_listen,
                 cfg->mtls_ca != NULL ? "required" : "off", what);
    }
    if (admin_ctx != NULL) {
        st.tls_admin_listener =
            http_listen(srv->http, cfg->tls_admin_listen, admin_ctx, false, err, sizeof(err));
        SSL_CTX_free(admin_ctx);
        if (st.tls_admin_listener < 0)
            die(err, NULL);
        log_info("HTTPS listening for the admin API", "addr=%s", cfg->tls_admin_listen);
    }
    /* Jobs and upkeep start once every listener is up: a start that fails on
     * its settings makes no Graph API call and changes nothing. */
    if (cfg->workers > 0)
        st.workers = worker_pool_start(cfg, keys, srv->stats);
    srv->workers = st.workers;
    st.upkeep = upkeep_start(cfg);

    uv_signal_init(&loop, &st.sigint);
    uv_signal_init(&loop, &st.sigterm);
    st.sigint.data = st.sigterm.data = &st;
    uv_signal_start(&st.sigint, on_signal, SIGINT);
    uv_signal_start(&st.sigterm, on_signal, SIGTERM);
    uv_signal_init(&loop, &st.sighup);
    st.sighup.data = &st;
    uv_signal_start(&st.sighup, on_sighup, SIGHUP);
    uv_timer_init(&loop, &st.drain_timer);
    st.drain_timer.data = &st;

    log_info("listening", "addr=%s writers=%d pool=%d body_limit=%zu", cfg->listen,
             cfg->ingest_writers, cfg->db_pool_size, cfg->body_limit);
    uv_run(&loop, UV_RUN_DEFAULT);

    /* Drained: h2o's context runs the loop itself while disposing, so it is
     * torn down here, outside uv_run. */
    http_free(srv->http);
    uv_close((uv_handle_t *)&st.ingest_async, NULL);
    uv_close((uv_handle_t *)&st.sigint, NULL);
    uv_close((uv_handle_t *)&st.sigterm, NULL);
    uv_close((uv_handle_t *)&st.sighup, NULL);
    uv_close((uv_handle_t *)&st.drain_timer, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&loop);
    if (rc != 0)
        log_error("event loop closed with handles still open", "error=%s", uv_strerror(rc));

    /* Partition upkeep and running jobs share the drain time; a job still
     * running at the deadline is put back in the queue for another process,
     * or the next start. */
    uv_update_time(&loop);
    int64_t left = cfg->shutdown_timeout_ms - (int64_t)(uv_now(&loop) - st.drain_started);
    bool is_left_behind = !upkeep_stop(st.upkeep, left > 0 ? left : 0);
    uv_update_time(&loop);
    left = cfg->shutdown_timeout_ms - (int64_t)(uv_now(&loop) - st.drain_started);
    if (st.workers != NULL && worker_pool_stop(st.workers, left > 0 ? left : 0) != 0)
        is_left_behind = true; /* a worker is still inside a Graph API call */
    if (!probe_stop(srv->probe, 1000))
        is_left_behind = true;
    if (is_left_behind) {
        /* Leave libcurl, libpq, OpenSSL and the keys alone under them. */
        log_info("stopped", "left_behind=%s", "threads");
        exit_leaving_threads(rc == 0 ? 0 : 1);
    }
    curl_global_cleanup();
    db_ingest_free(srv->ingest);
    stats_free(srv->stats);
    appcache_free(srv->apps);
    db_pool_free(srv->pool);
    db_replica_free(srv->replica);
    ratelimit_free(srv->ratelimit);
    ratelimit_free(srv->auth_failures);
    explicit_bzero(srv->admin_token, sizeof(srv->admin_token));
    keyring_free(keys);
    log_info("stopped", "%s", "");
    return rc == 0 ? 0 : 1;
}

/* ---- migrate ---- */

static int cmd_migrate(const struct config *cfg, int argc, char **argv)
{
    char err[1024];
    PGconn *c = connect_or_die(cfg);
    int rc;
    if (argc >= 1 && strcmp(argv[0], "status") == 0) {
        rc = db_migrate_status(c, db_migrations_embedded, db_migrations_embedded_count, stdout, err,
                               sizeof(err));
        if (rc == 0)
            rc = db_migrate_check(c, db_migrations_embedded, db_migrations_embedded_count, err,
                                  sizeof(err));
    } else if (argc == 0) {
        rc = db_migrate_apply(c, db_migrations_embedded, db_migrations_embedded_count, stdout, err,
                              sizeof(err));
        if (rc == 0)
            printf("schema is current (%zu migrations)\n", db_migrations_embedded_count);
        int created = 0;
        if (rc == 0 &&
            (rc = db_partitions_ensure(c, cfg->partition_months_ahead, 0, &created)) != 0)
            snprintf(err, sizeof(err), "partition upkeep: %s", PQerrorMessage(c));
        else if (rc == 0 && created > 0)
            printf("%d partitions created\n", created);
    } else {
        fputs(USAGE, stderr);
        PQfinish(c);
        return EXIT_USAGE;
    }
    PQfinish(c);
    if (rc != 0) {
        fprintf(stderr, "hubbub: %s\n", err);
        return 1;
    }
    return 0;
}

/* ---- retention, replay ---- */

static int cmd_retention(const struct config *cfg, int argc, char **argv)
{
    const char *older = NULL;
    bool is_dry_run = false, is_bad = false;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--older-than") == 0 && i + 1 < argc)
            older = argv[++i];
        else if (strcmp(argv[i], "--dry-run") == 0)
            is_dry_run = true;
        else
            is_bad = true;
    }
    char *end = NULL;
    long days = older != NULL ? strtol(older, &end, 10) : 0;
    if (is_bad || older == NULL || end == older || (strcmp(end, "d") != 0 && *end != '\0') ||
        days < 1 || days > 36500) {
        fputs("usage: hubbub retention --older-than DAYSd [--dry-run]  (e.g. 90d)\n", stderr);
        return EXIT_USAGE;
    }
    PGconn *c = connect_or_die(cfg);
    char err[1024];
    struct db_retention_result res;
    int rc = db_retention_run(c, (int)days, is_dry_run, stdout, &res, err, sizeof(err));
    PQfinish(c);
    if (rc != 0) {
        fprintf(stderr, "hubbub: %s\n", err);
        return 1;
    }
    return 0;
}

static int cmd_replay(const struct config *cfg, int argc, char **argv)
{
    struct replay_options o = {.status = "rejected"};
    for (int i = 0; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--dry-run") == 0) {
            o.is_dry_run = true;
            continue;
        }
        if (v == NULL)
            goto usage;
        if (strcmp(argv[i], "--app") == 0)
            o.meta_app_id = v;
        else if (strcmp(argv[i], "--since") == 0)
            o.since = v;
        else if (strcmp(argv[i], "--until") == 0)
            o.until = v;
        else if (strcmp(argv[i], "--status") == 0)
            o.status = v;
        else if (strcmp(argv[i], "--delivery") == 0)
            o.delivery_id = v;
        else
            goto usage;
        i++;
    }
    if (strcmp(o.status, "rejected") != 0 && strcmp(o.status, "accepted") != 0 &&
        strcmp(o.status, "all") != 0)
        goto usage;
    if (o.delivery_id != NULL && strspn(o.delivery_id, "0123456789") != strlen(o.delivery_id))
        goto usage;
    PGconn *c = connect_or_die(cfg);
    char err[1024];
    struct replay_result res;
    int rc = replay_run(c, cfg, &o, stdout, &res, err, sizeof(err));
    PQfinish(c);
    if (rc != 0) {
        fprintf(stderr, "hubbub: %s\n", err);
        return 1;
    }
    return 0;
usage:
    fputs("usage: hubbub replay [--app META_APP_ID] [--since TIME] [--until TIME]\n"
          "                     [--status rejected|accepted|all] [--delivery ID] [--dry-run]\n",
          stderr);
    return EXIT_USAGE;
}

/* ---- tenant, app ---- */

static const char *flag_value(int argc, char **argv, const char *name)
{
    for (int i = 0; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    return NULL;
}

static bool has_flag(int argc, char **argv, const char *name)
{
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return true;
    return false;
}

static int cmd_tenant(const struct config *cfg, int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[0], "add") != 0) {
        fputs(USAGE, stderr);
        return EXIT_USAGE;
    }
    PGconn *c = connect_or_die(cfg);
    int64_t id;
    int rc = db_tenant_add(c, argv[1], &id);
    if (rc == HB_EEXIST && has_flag(argc, argv, "--if-missing") &&
        db_tenant_find(c, argv[1], &id) == 0) {
        printf("tenant %s exists (id %" PRId64 ")\n", argv[1], id);
        rc = 0;
    } else if (rc == 0) {
        printf("tenant %s added (id %" PRId64 ")\n", argv[1], id);
    } else if (rc == HB_EEXIST) {
        fprintf(stderr, "hubbub: a tenant named %s already exists\n", argv[1]);
    } else if (rc == HB_EINVAL) {
        fprintf(stderr, "hubbub: tenant names are 1-63 letters, digits, '.', '_' or '-'\n");
    } else {
        fprintf(stderr, "hubbub: cannot add the tenant: %s\n", PQerrorMessage(c));
    }
    PQfinish(c);
    return rc == 0 ? 0 : 1;
}

static void hint_of(const char *secret, char *hint, size_t hintsz)
{
    size_t n = strlen(secret);
    snprintf(hint, hintsz, "...%s", n >= 12 ? secret + n - 4 : "");
}

static bool valid_meta_app_id(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > APP_ID_MAX)
        return false;
    return strspn(id, "0123456789") == n;
}

static int cmd_app(const struct config *cfg, int argc, char **argv)
{
    if (argc < 1 || (strcmp(argv[0], "add") != 0 && strcmp(argv[0], "add-secret") != 0)) {
        fputs(USAGE, stderr);
        return EXIT_USAGE;
    }
    bool add = strcmp(argv[0], "add") == 0;
    const char *app_id = flag_value(argc, argv, "--app-id");
    const char *tenant = flag_value(argc, argv, "--tenant");
    const char *token = flag_value(argc, argv, "--verify-token");
    if (token == NULL)
        token = getenv("HUBBUB_VERIFY_TOKEN");
    if (app_id == NULL || (add && (tenant == NULL || token == NULL || token[0] == '\0'))) {
        fputs(USAGE, stderr);
        return EXIT_USAGE;
    }
    if (!valid_meta_app_id(app_id)) {
        fprintf(stderr, "hubbub: --app-id must be the numeric Meta app id (1-%d digits)\n",
                APP_ID_MAX);
        return EXIT_USAGE;
    }

    struct secretbox keys;
    load_keys_or_die(cfg, &keys);
    PGconn *c = connect_or_die(cfg);
    int rc = 0;
    int64_t tenant_id = -1, id = 0;
    if (add && (rc = db_tenant_find(c, tenant, &tenant_id)) != 0) {
        fprintf(stderr, "hubbub: no tenant named %s\n", tenant);
        goto out;
    }
    if (add && has_flag(argc, argv, "--if-missing")) {
        struct db_app *existing = NULL;
        if (db_app_get(c, app_id, &existing) == 0) {
            printf("app %s exists; left unchanged\n", app_id);
            db_app_free(existing);
            goto out;
        }
    }

    char secret[SECRET_MAX], hint[16], context[64];
    if ((rc = secret_input_read("HUBBUB_APP_SECRET", "app secret", secret, sizeof(secret))) != 0) {
        fprintf(stderr,
                "hubbub: give the app secret in HUBBUB_APP_SECRET or on standard input"
                " (at most %d bytes)\n",
                SECRET_MAX - 1);
        goto out;
    }
    hint_of(secret, hint, sizeof(hint));
    snprintf(context, sizeof(context), "app_secret:%s", app_id);
    char *secret_sealed = secretbox_seal(&keys, context, secret, strlen(secret));
    explicit_bzero(secret, sizeof(secret));

    if (add) {
        snprintf(context, sizeof(context), "verify_token:%s", app_id);
        char *token_sealed = secretbox_seal(&keys, context, token, strlen(token));
        rc = db_app_add(c, tenant_id, app_id, token_sealed, secret_sealed, hint, &id);
        free(token_sealed);
        if (rc == 0)
            printf("app %s added for tenant %s (secret %s); callback URL path: /webhooks/%s\n",
                   app_id, tenant, hint, app_id);
        else if (rc == HB_EEXIST)
            fprintf(stderr, "hubbub: app %s already exists\n", app_id);
    } else {
        rc = db_app_add_secret(c, app_id, secret_sealed, hint);
        if (rc == 0)
            printf("secret %s added to app %s; both old and new now verify\n", hint, app_id);
        else if (rc == HB_ENOTFOUND)
            fprintf(stderr, "hubbub: no app %s\n", app_id);
    }
    free(secret_sealed);
    if (rc != 0 && rc != HB_EEXIST && rc != HB_ENOTFOUND)
        fprintf(stderr, "hubbub: database error: %s\n", PQerrorMessage(c));
out:
    PQfinish(c);
    secretbox_dispose(&keys);
    return rc == 0 ? 0 : 1;
}

/* ---- keys ---- */

struct key_status {
    const struct secretbox *sb; /* NULL when the keys do not load */
    int64_t not_current;
};

static void print_status_row(void *arg, int column, const char *key_id, int64_t count)
{
    struct key_status *ks = arg;
    const char *role = "";
    if (ks->sb != NULL) {
        role = "not loaded";
        for (int i = 0; i < ks->sb->nkeys; i++)
            if (strcmp(ks->sb->keys[i].id, key_id) == 0)
                role = i == 0 ? "seals" : "opens";
    }
    if (ks->sb == NULL || strcmp(key_id, ks->sb->keys[0].id) != 0)
        ks->not_current += count;
    printf("%-34s %-8s %8" PRId64 "  %s\n", db_rekey_column_name(column),
           strcmp(key_id, "-") == 0 ? "(none)" : key_id, count, role);
}

static int keys_status(const struct config *cfg, const struct secretbox *sb)
{
    PGconn *c = connect_or_die(cfg);
    struct key_status ks = {sb, 0};
    char err[1024];
    printf("%-34s %-8s %8s  %s\n", "column", "key id", "values", "key");
    int rc = db_rekey_status(c, print_status_row, &ks, err, sizeof(err));
    PQfinish(c);
    if (rc != 0) {
        fprintf(stderr, "hubbub: %s\n", err);
        return 1;
    }
    if (sb != NULL && ks.not_current > 0)
        printf("%" PRId64
               " values are not sealed by the sealing key %s: run `hubbub keys rotate`\n",
               ks.not_current, sb->keys[0].id);
    else if (sb != NULL)
        printf("every value is sealed by the sealing key %s\n", sb->keys[0].id);
    return ks.not_current == 0 ? 0 : 1;
}

static int keys_rotate(const struct config *cfg, const struct secretbox *sb)
{
    PGconn *c = connect_or_die(cfg);
    printf("re-sealing with key %s\n", sb->keys[0].id);
    fflush(stdout);
    struct db_rekey_options opt = {100, 60000, 200};
    struct db_rekey_result res[DB_REKEY_NCOLUMNS];
    char err[1024];
    int rc = db_rekey_rotate(c, sb, &opt, res, stderr, err, sizeof(err));
    PQfinish(c);
    int64_t failed = 0, left = 0;
    for (int k = 0; k < DB_REKEY_NCOLUMNS; k++) {
        printf("%-34s %6" PRId64 " re-sealed %6" PRId64 " failed %6" PRId64 " left\n",
               db_rekey_column_name(k), res[k].resealed, res[k].failed, res[k].left);
        failed += res[k].failed;
        left += res[k].left;
    }
    if (rc != 0) {
        fprintf(stderr, "hubbub: rotation stopped: %s\n", err);
        return 1;
    }
    if (failed > 0)
        fprintf(stderr,
                "hubbub: %" PRId64 " values cannot be opened with the loaded keys and were left as "
                "they are (see above); keep the key that sealed them in the file\n",
                failed);
    if (left > 0)
        fprintf(stderr,
                "hubbub: %" PRId64 " values kept changing or stayed in use; run it again (a "
                "process that still seals with an old key was not signalled?)\n",
                left);
    return failed == 0 && left == 0 ? 0 : 1;
}

/* Needs no settings: an operator makes a key before anything is set up. */
static int cmd_keys_generate(void)
{
    uint8_t key[SECRETBOX_KEY_LEN];
    if (RAND_bytes(key, sizeof(key)) != 1)
        die("no randomness for a key", NULL);
    for (size_t i = 0; i < sizeof(key); i++)
        printf("%02x", key[i]);
    printf("\n");
    explicit_bzero(key, sizeof(key));
    return 0;
}

static int cmd_keys(const struct config *cfg, int argc, char **argv)
{
    if (argc < 1) {
        fputs(USAGE, stderr);
        return EXIT_USAGE;
    }
    bool status = strcmp(argv[0], "status") == 0;
    if (!status && strcmp(argv[0], "rotate") != 0) {
        fputs(USAGE, stderr);
        return EXIT_USAGE;
    }
    struct secretbox keys;
    const char *why;
    secretbox_init(&keys);
    int rc;
    if (secretbox_load(&keys, cfg->master_key, cfg->master_key_file, &why) != 0) {
        fprintf(stderr, "hubbub: %s\n", why);
        rc = status ? keys_status(cfg, NULL) : 1;
        if (status)
            rc = 1;
    } else {
        rc = status ? keys_status(cfg, &keys) : keys_rotate(cfg, &keys);
    }
    secretbox_dispose(&keys);
    return rc;
}

/* ---- config ---- */

/* Loads the settings, or says in one line what is wrong with them. */
static int load_config(struct config *cfg)
{
    char err[512];
    if (config_load(cfg, err, sizeof(err)) == 0)
        return 0;
    fprintf(stderr, "hubbub: %s\n", err);
    config_dispose(cfg);
    return HB_EINVAL;
}

static int cmd_config(int argc, char **argv)
{
    if (argc < 1 || strcmp(argv[0], "check") != 0) {
        fputs(USAGE, stderr);
        return EXIT_USAGE;
    }
    struct config cfg;
    if (load_config(&cfg) != 0)
        return 1;
    size_t n;
    const struct config_setting *s = config_settings(&n);
    int width = 0;
    for (size_t i = 0; i < n; i++)
        if ((int)strlen(s[i].env) > width)
            width = (int)strlen(s[i].env);
    for (size_t i = 0; i < n; i++) {
        char value[256];
        config_format_value(&cfg, &s[i], value, sizeof(value));
        printf("%-*s %-7s %s\n", width, s[i].env,
               config_source_name((enum config_source)cfg.sources[i]), value);
    }
    struct secretbox keys;
    const char *why;
    secretbox_init(&keys);
    int rc = secretbox_load(&keys, cfg.master_key, cfg.master_key_file, &why);
    if (rc != 0)
        fprintf(stderr, "hubbub: %s\n", why);
    else
        printf("master keys: %d loaded, sealing with key %s\n", keys.nkeys, keys.keys[0].id);
    secretbox_dispose(&keys);
    char token[128];
    if (admin_load_token(&cfg, token, sizeof(token), &why) != 0) {
        fprintf(stderr, "hubbub: %s\n", why);
        rc = 1;
    } else {
        printf("operator access: %s\n", token[0] != '\0' ? "on" : "off (no admin token)");
    }
    explicit_bzero(token, sizeof(token));

    char err[512];
    struct mtls_policy policy;
    struct tls_stats stats;
    memset(&stats, 0, sizeof(stats));
    SSL_CTX *main_ctx = NULL, *admin_ctx = NULL;
    if (mtls_policy_init(&policy, &cfg, err, sizeof(err)) != 0 ||
        tls_contexts(&cfg, &stats, &main_ctx, &admin_ctx, err, sizeof(err)) != 0) {
        fprintf(stderr, "hubbub: %s\n", err);
        rc = 1;
    } else if (main_ctx != NULL || admin_ctx != NULL) {
        char what[320];
        tls_describe(main_ctx != NULL ? main_ctx : admin_ctx, what, sizeof(what));
        printf("TLS: certificate %s; client certificates %s\n", what,
               cfg.mtls_ca != NULL ? "required" : "not asked for");
    }
    if (policy.required)
        printf("webhooks: only from verified Meta clients%s\n",
               policy.header[0] != '\0' ? " (directly or through the trusted proxies)" : "");
    SSL_CTX_free(main_ctx);
    SSL_CTX_free(admin_ctx);
    config_dispose(&cfg);
    return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : "serve";
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        fputs(USAGE, stdout);
        return 0;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("hubbub 0.1.0 (libh2o %s, libuv %s, libpq %d)\n", H2O_VERSION, uv_version_string(),
               PQlibVersion());
        return 0;
    }
    if (strcmp(cmd, "config") == 0)
        return cmd_config(argc - 2, argv + 2);
    if (strcmp(cmd, "sim") == 0) /* needs no settings: it may test any server */
        return sim_main(argc - 2, argv + 2);
    if (strcmp(cmd, "keys") == 0 && argc == 3 && strcmp(argv[2], "generate") == 0)
        return cmd_keys_generate();

    struct config cfg;
    if (load_config(&cfg) != 0)
        return 1;
    log_set_level(cfg.log_level);

    int rc;
    if (strcmp(cmd, "serve") == 0)
        rc = cmd_serve(&cfg);
    else if (strcmp(cmd, "migrate") == 0)
        rc = cmd_migrate(&cfg, argc - 2, argv + 2);
    else if (strcmp(cmd, "tenant") == 0)
        rc = cmd_tenant(&cfg, argc - 2, argv + 2);
    else if (strcmp(cmd, "app") == 0)
        rc = cmd_app(&cfg, argc - 2, argv + 2);
    else if (strcmp(cmd, "keys") == 0)
        rc = cmd_keys(&cfg, argc - 2, argv + 2);
    else if (strcmp(cmd, "retention") == 0)
        rc = cmd_retention(&cfg, argc - 2, argv + 2);
    else if (strcmp(cmd, "replay") == 0)
        rc = cmd_replay(&cfg, argc - 2, argv + 2);
    else {
        fputs(USAGE, stderr);
        rc = EXIT_USAGE;
    }
    config_dispose(&cfg);
    return rc;
}
