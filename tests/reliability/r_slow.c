/*
 * r_slow.c - clients that trickle their request are cut off in bounded time
 * and do not delay anyone else's delivery.
 *
 * With HUBBUB_REQUEST_TIMEOUT=2s, HUBBUB_REL_SLOW_CLIENTS (200; full 500)
 * connections trickle one byte every 100 ms: half of them the request head
 * (slow header), half the body of a delivery whose head was whole (slow
 * body). h2o arms the request timeout once per request, not per read, so
 * steady trickling does not keep a connection alive. Meanwhile a few
 * clients post deliveries for HUBBUB_REL_SECONDS (3; full 10): all get 200
 * with normal latency. Every slow client must be cut off between 2 s and
 * 4 s after it connected, and none of their half-sent deliveries is stored.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/integration/harness.h"
#include "tests/reliability/rel.h"

#define APP_ID "17841400000000904"
#define SECRET "slow-secret-0123456789abcdef"
#define CLIENTS 4
#define MAX_DELIVERIES 2000000
#define TIMEOUT_MS 2000
#define TRICKLE_MS 100

struct slow {
    int fd;
    bool is_body;
    char msg[1024];
    size_t len, sent;
    int64_t t_open, t_cut; /* t_cut 0: still open */
    bool answered;         /* got some HTTP answer before the close */
};

int main(void)
{
    int nslow = (int)rel_bound("HUBBUB_REL_SLOW_CLIENTS", 200, 500);
    int seconds = (int)rel_bound("HUBBUB_REL_SECONDS", 3, 10);
    rel_raise_nofile();
    struct h_db db;
    h_db_create(&db, "rel_slow");
    h_setup_app(&db, "slowco", APP_ID, "slow-verify", SECRET);
    const char *env[] = {"HUBBUB_REQUEST_TIMEOUT=2s", NULL};
    struct h_server s;
    h_server_start(&s, &db, env);

    struct slow *sl = calloc((size_t)nslow, sizeof(*sl));
    for (int i = 0; i < nslow; i++) {
        struct slow *c = &sl[i];
        c->is_body = i % 2 == 1;
        /* Delivery ids from 1 000 000 on, apart from the load's. */
        size_t blen;
        char *body = h_comment_delivery(1000000 + i, &blen);
        char sig[72];
        h_sign(SECRET, body, blen, sig);
        int k = snprintf(c->msg, sizeof(c->msg),
                         "POST /webhooks/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         "Content-Type: application/json\r\nX-Hub-Signature-256: %s\r\n"
                         "Content-Length: %zu\r\n\r\n%s",
                         APP_ID, sig, blen, body);
        c->len = (size_t)k;
        free(body);
        c->fd = rel_connect(s.port);
        if (c->fd < 0)
            tap_bail("connect: %s", strerror(errno));
        c->t_open = h_now_ms();
        if (c->is_body) {
            /* The whole head at once, then the body byte by byte. */
            size_t head = (size_t)(strstr(c->msg, "\r\n\r\n") + 4 - c->msg);
            if (send(c->fd, c->msg, head, MSG_NOSIGNAL) != (ssize_t)head)
                tap_bail("send: %s", strerror(errno));
            c->sent = head;
        }
    }

    struct rel_load load;
    rel_load_start(&load, s.port, APP_ID, SECRET, CLIENTS, 0, MAX_DELIVERIES, 0);
    int64_t t_end = h_now_ms() + seconds * 1000;
    if (t_end < h_now_ms() + TIMEOUT_MS * 2 + 500)
        t_end = h_now_ms() + TIMEOUT_MS * 2 + 500;
    int open = nslow;
    while (h_now_ms() < t_end) {
        int64_t now = h_now_ms();
        for (int i = 0; i < nslow; i++) {
            struct slow *c = &sl[i];
            if (c->t_cut != 0)
                continue;
            struct pollfd p = {c->fd, POLLIN, 0};
            bool cut = false;
            if (poll(&p, 1, 0) == 1) {
                char buf[512];
                ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
                if (n > 0 && strncmp(buf, "HTTP/1.", 7) == 0)
                    c->answered = true;
                cut = n <= 0 || c->answered;
            }
            if (!cut && c->sent < c->len - 1 &&
                send(c->fd, c->msg + c->sent, 1, MSG_NOSIGNAL | MSG_DONTWAIT) == 1)
                c->sent++;
            else if (!cut && c->sent < c->len - 1)
                cut = true; /* the write failed: the server closed */
            if (cut) {
                c->t_cut = now;
                close(c->fd);
                open--;
            }
        }
        h_sleep_ms(TRICKLE_MS);
    }
    rel_load_stop(&load);
    struct rel_tally t;
    rel_tally(&load, 0, INT64_MAX, &t);
    rel_tally_diag("deliveries next to the slow clients", &t);

    int cut[2] = {0, 0}, answered = 0;
    int64_t min_cut = INT64_MAX, max_cut = 0;
    size_t max_sent = 0;
    for (int i = 0; i < nslow; i++) {
        struct slow *c = &sl[i];
        if (c->t_cut == 0) {
            close(c->fd);
            continue;
        }
        cut[c->is_body]++;
        answered += c->answered;
        int64_t after = c->t_cut - c->t_open;
        min_cut = after < min_cut ? after : min_cut;
        max_cut = after > max_cut ? after : max_cut;
        max_sent = c->sent > max_sent ? c->sent : max_sent;
    }
    tap_diag("slow clients: %d of %d slow-header and %d of %d slow-body cut off, %lld-%lld ms "
             "after connecting (%d with an answer first); at most %zu bytes sent",
             cut[0], (nslow + 1) / 2, cut[1], nslow / 2, (long long)min_cut, (long long)max_cut,
             answered, max_sent);
    tap_is_int(cut[0] + cut[1], nslow, "every slow client was cut off");
    tap_ok(min_cut >= TIMEOUT_MS - 100 && max_cut <= 2 * TIMEOUT_MS,
           "after the request timeout of %d ms, within %d ms (%lld-%lld ms)", TIMEOUT_MS,
           2 * TIMEOUT_MS, (long long)min_cut, (long long)max_cut);
    tap_ok(t.ok > 0 && t.ok == t.n, "every other delivery got 200 meanwhile (%d of %d)", t.ok, t.n);
    tap_ok(t.p99 <= 100, "with normal latency: p50 %.0f ms, p99 %.0f ms", t.p50, t.p99);
    tap_is_int(h_db_int(&db,
                        "SELECT count(*) FROM events WHERE payload->'value'->>'id' >= 'C1000000'"
                        " AND length(payload->'value'->>'id') = 8"),
               0, "no half-sent delivery was stored");
    tap_is_int(h_server_stop(&s, SIGTERM), 0, "hubbub stops cleanly");
    free(sl);
    rel_load_free(&load);
    h_db_drop(&db);
    return tap_done();
}
