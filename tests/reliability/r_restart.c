/*
 * r_restart.c - restarting hubbub under load loses nothing and leaves no
 * client without an answer it could not retry.
 *
 * Several clients, each on its own keep-alive connection, post distinct
 * signed deliveries without pause (a quarter of them open a new connection
 * for each delivery instead) while hubbub is restarted on the same
 * port, in the two ways an operator does it:
 *   handover      the new process starts first (hubbub listens with
 *                 SO_REUSEPORT), then the old one gets SIGTERM;
 *   stop, start   SIGTERM, wait for the exit, then start the new one
 *                 (connections are refused in between).
 * Every old process must exit 0 within its drain time; every delivery that
 * got 200 must be stored; every request must have got an HTTP answer, or
 * have been refused before it was sent. A request written and then cut off
 * without an answer fails the test, on a fresh connection or a reused one:
 * during the drain every answer says Connection: close, and idle keep-alive
 * connections are closed only after a grace period in which busy clients
 * have sent their next request.
 *
 * Bounds: HUBBUB_REL_RESTARTS (restarts, 4; full 12), HUBBUB_REL_CLIENTS
 * (connections, 8; full 32), HUBBUB_REL_RESTART_GAP_MS (load between
 * restarts, 400; full 1500).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/integration/harness.h"
#include "tests/reliability/rel.h"

#define APP_ID "17841400000000901"
#define SECRET "restart-secret-0123456789abcdef"
#define MAX_DELIVERIES 3000000
#define DRAIN "HUBBUB_SHUTDOWN_TIMEOUT=5s"

/* Waits for s to exit; returns its status (128+signal) and the time taken. */
static int wait_exit(struct h_server *s, int limit_ms, int64_t *took)
{
    int64_t t0 = h_now_ms();
    int status = 0, rc = -1;
    for (;;) {
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            break;
        }
        if (h_now_ms() - t0 > limit_ms) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &status, 0);
            break;
        }
        h_sleep_ms(2);
    }
    *took = h_now_ms() - t0;
    s->pid = 0;
    return rc;
}

static void wait_answers(struct rel_load *l, int more, int limit_ms)
{
    int want = atomic_load(&l->answered) + more;
    int64_t deadline = h_now_ms() + limit_ms;
    while (atomic_load(&l->answered) < want && h_now_ms() < deadline)
        h_sleep_ms(2);
}

int main(void)
{
    int restarts = (int)rel_bound("HUBBUB_REL_RESTARTS", 4, 12);
    int clients = (int)rel_bound("HUBBUB_REL_CLIENTS", 8, 32);
    int gap_ms = (int)rel_bound("HUBBUB_REL_RESTART_GAP_MS", 400, 1500);
    rel_raise_nofile();
    int64_t t_begin = h_now_ms();
    struct h_db db;
    h_db_create(&db, "rel_restart");
    h_setup_app(&db, "restartco", APP_ID, "restart-verify", SECRET);
    const char *env[] = {DRAIN, NULL};

    struct h_server s;
    h_server_start(&s, &db, env);
    int port = s.port;
    struct rel_load load;
    rel_load_start(&load, port, APP_ID, SECRET, clients, clients / 4, MAX_DELIVERIES, 0);
    wait_answers(&load, 500, 10000);

    int bad_exits = 0, slow_exits = 0;
    int64_t longest = 0;
    for (int i = 0; i < restarts; i++) {
        bool handover = i % 2 == 0;
        struct h_server next;
        int64_t took;
        int st;
        if (handover) {
            h_server_start_on(&next, &db, env, port);
            if (!rel_wait_log(&next, "msg=listening", 10000))
                tap_bail("the new hubbub did not start listening");
            kill(s.pid, SIGTERM);
            st = wait_exit(&s, 10000, &took);
        } else {
            kill(s.pid, SIGTERM);
            st = wait_exit(&s, 10000, &took);
            h_server_start_on(&next, &db, env, port);
        }
        if (st != 0)
            bad_exits++;
        if (took > 5000)
            slow_exits++;
        if (took > longest)
            longest = took;
        tap_diag("restart %d (%s): the old process exited %d after %lld ms", i + 1,
                 handover ? "handover" : "stop, start", st, (long long)took);
        s = next;
        wait_answers(&load, 200, 10000);
        h_sleep_ms(gap_ms);
    }
    rel_load_stop(&load);
    int final = h_server_stop(&s, SIGTERM);

    struct rel_tally t;
    rel_tally(&load, 0, INT64_MAX, &t);
    rel_tally_diag("all deliveries", &t);
    for (int i = 0, shown = 0; i < rel_load_sent(&load) && shown < 5; i++) {
        const struct rel_rec *r = &load.recs[i];
        if (r->fate == REL_LOST || r->fate == REL_RACE || r->fate == REL_TIMEOUT ||
            (r->fate == REL_ANSWERED && r->status != 200 && r->status != 503)) {
            tap_diag("delivery C%d: %s, status %d, at +%lld ms", i, rel_fate_names[r->fate],
                     r->status, (long long)(r->t_send - load.t_start));
            shown++;
        }
    }
    int stored, dups;
    int missing = rel_missing(&db, &load, &stored, &dups);
    tap_diag("%d events stored; %d deliveries got 200", stored, t.ok);

    tap_is_int(bad_exits, 0, "every old hubbub exited 0 after SIGTERM under load (%d restarts)",
               restarts);
    tap_ok(slow_exits == 0, "each exited within its drain time of 5 s (longest %lld ms)",
           (long long)longest);
    tap_is_int(final, 0, "the last one stops cleanly too");
    tap_ok(t.ok > restarts * 200, "deliveries got 200 throughout (%d)", t.ok);
    tap_is_int(t.by_fate[REL_LOST], 0,
               "no request was written and then cut off without an answer on a fresh connection");
    tap_is_int(t.by_fate[REL_RACE], 0,
               "no request written on a reused keep-alive connection was cut off either");
    tap_is_int(t.by_fate[REL_TIMEOUT], 0, "every request sent got its answer in time");
    tap_is_int(t.other, 0, "every answer was 200 or 503");
    tap_is_int(missing, 0, "every delivery that got 200 is in the database");
    tap_is_int(dups, 0, "no delivery is stored twice");
    rel_load_free(&load);
    h_db_drop(&db);
    tap_diag("total %lld ms", (long long)(h_now_ms() - t_begin));
    return tap_done();
}
