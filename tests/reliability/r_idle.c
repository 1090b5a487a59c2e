/*
 * r_idle.c - thousands of idle connections do not slow deliveries down.
 *
 * hubbub starts with a soft open-file limit of 1024 inherited from the test
 * and must raise it to the hard limit itself. The test then opens
 * HUBBUB_REL_IDLE_CONNS connections (10 000; the test raises its own limit
 * too): half of them send one request and stay open (idle keep-alive), half
 * never send a byte. While they are all held, a few clients post deliveries
 * for HUBBUB_REL_SECONDS (3; full 15): every one must get 200 with normal
 * latency (p99 printed next to the figure without the idle connections,
 * which is measured first), the idle connections must all still be open,
 * and hubbub's RSS is printed. Last, a hubbub whose hard limit is low says
 * so in its log.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/integration/harness.h"
#include "tests/reliability/rel.h"

#define APP_ID "17841400000000902"
#define SECRET "idle-secret-0123456789abcdef"
#define CLIENTS 4
#define MAX_DELIVERIES 2000000

static long nofile_of(pid_t pid, bool hard)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/limits", (int)pid);
    FILE *f = fopen(path, "r");
    long v = -1;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "Max open files", 14) == 0) {
            char *p = line + 14;
            long soft = strtol(p, &p, 10);
            v = hard ? strtol(p, NULL, 10) : soft;
        }
    }
    if (f != NULL)
        fclose(f);
    return v;
}

static void run_load(int port, int ms, struct rel_tally *t, int *first_n)
{
    struct rel_load l;
    rel_load_start(&l, port, APP_ID, SECRET, CLIENTS, 0, MAX_DELIVERIES, 0);
    h_sleep_ms(ms);
    rel_load_stop(&l);
    rel_tally(&l, 0, INT64_MAX, t);
    (void)first_n;
    rel_load_free(&l);
}

static bool is_open(int fd)
{
    struct pollfd p = {fd, POLLIN, 0};
    return poll(&p, 1, 0) == 0;
}

int main(void)
{
    int nconns = (int)rel_bound("HUBBUB_REL_IDLE_CONNS", 10000, 10000);
    int seconds = (int)rel_bound("HUBBUB_REL_SECONDS", 3, 15);
    long limit = rel_raise_nofile();
    tap_diag("open-file limit of the test: %ld", limit);
    if (limit < nconns + 200) {
        tap_diag("the hard limit allows only %ld connections here", limit - 200);
        nconns = (int)limit - 200;
    }
    struct h_db db;
    h_db_create(&db, "rel_idle");
    h_setup_app(&db, "idleco", APP_ID, "idle-verify", SECRET);

    /* hubbub inherits a soft limit of 1024 and must raise it itself. */
    struct rlimit rl, low;
    getrlimit(RLIMIT_NOFILE, &rl);
    low = rl;
    low.rlim_cur = 1024;
    setrlimit(RLIMIT_NOFILE, &low);
    const char *env[] = {"HUBBUB_REQUEST_TIMEOUT=120s", NULL};
    struct h_server s;
    h_server_start(&s, &db, env);
    setrlimit(RLIMIT_NOFILE, &rl);
    long soft = nofile_of(s.pid, false), hard = nofile_of(s.pid, true);
    tap_diag("hubbub's open-file limit: soft %ld, hard %ld", soft, hard);
    tap_ok(soft == hard && soft > 1024, "hubbub raised its soft open-file limit to the hard one");

    struct rel_tally base;
    run_load(s.port, seconds * 1000, &base, NULL);
    rel_tally_diag("without idle connections", &base);
    long rss0 = rel_rss_kib(s.pid);

    int *fds = calloc((size_t)nconns, sizeof(int));
    int64_t t0 = h_now_ms();
    int opened = 0, failed = 0, asked = 0;
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    for (int i = 0; i < nconns; i++) {
        fds[i] = rel_connect(s.port);
        if (fds[i] < 0) {
            if (failed++ < 3)
                tap_diag("connection %d: %s", i, strerror(errno));
            continue;
        }
        opened++;
        if (i % 2 == 0 && send(fds[i], req, sizeof(req) - 1, MSG_NOSIGNAL) > 0)
            asked++;
    }
    /* Read the answers of the ones that asked: they are then idle keep-alive. */
    int answered = 0;
    for (int i = 0; i < nconns; i += 2) {
        if (fds[i] < 0)
            continue;
        struct pollfd p = {fds[i], POLLIN, 0};
        char buf[1024];
        if (poll(&p, 1, 5000) == 1 && recv(fds[i], buf, sizeof(buf), 0) > 0 &&
            strncmp(buf, "HTTP/1.1 200", 12) == 0)
            answered++;
    }
    tap_diag("%d connections opened in %lld ms (%d failed); %d asked /healthz, %d answered", opened,
             (long long)(h_now_ms() - t0), failed, asked, answered);
    tap_is_int(opened, nconns, "%d connections are open at once", nconns);
    tap_is_int(answered, asked, "the half that sent a request got its answer");

    struct rel_tally t;
    run_load(s.port, seconds * 1000, &t, NULL);
    char what[64];
    snprintf(what, sizeof(what), "with %d idle connections", opened);
    rel_tally_diag(what, &t);
    long rss1 = rel_rss_kib(s.pid);
    tap_diag("hubbub RSS: %ld KiB before, %ld KiB with the idle connections (%.1f KiB each)", rss0,
             rss1, opened > 0 ? (double)(rss1 - rss0) / opened : 0.0);
    tap_ok(t.ok > 0 && t.ok == t.n, "every delivery got 200 (%d of %d)", t.ok, t.n);
    tap_ok(t.p99 <= 100 || t.p99 <= 3 * base.p99 + 10,
           "latency stays normal: p99 %.0f ms (without idle connections %.0f ms)", t.p99, base.p99);
    int still = 0;
    for (int i = 0; i < nconns; i++)
        if (fds[i] >= 0 && is_open(fds[i]))
            still++;
    tap_is_int(still, opened, "every idle connection is still open");
    for (int i = 0; i < nconns; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(fds);
    int64_t t1 = h_now_ms();
    tap_is_int(h_server_stop(&s, SIGTERM), 0, "hubbub stops cleanly");
    tap_diag("stopped in %lld ms", (long long)(h_now_ms() - t1));

    /* A low hard limit: hubbub says so. */
    struct rlimit tight = {1024, 1024};
    if (setrlimit(RLIMIT_NOFILE, &tight) == 0) {
        h_server_start(&s, &db, NULL);
        bool restored = setrlimit(RLIMIT_NOFILE, &rl) == 0;
        char *log = h_server_log(&s);
        tap_contains(log, "open-file limit is low", "with a hard limit of 1024, the log says so");
        free(log);
        h_server_stop(&s, SIGTERM);
        if (!restored)
            tap_diag("could not restore the open-file limit");
    } else {
        tap_ok(true, "# SKIP cannot lower the open-file limit");
    }
    h_db_drop(&db);
    return tap_done();
}
