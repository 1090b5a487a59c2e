/*
 * rel.h - what the reliability programs share: bounds from the environment,
 * an HTTP/1.1 keep-alive client on plain sockets that tells apart every way
 * a request can end, a load of signed deliveries from several threads with
 * a record of each, percentiles, and a process's RSS.
 *
 * The client is written on sockets rather than libcurl because the suite
 * must know exactly what happened to each request: refused before sending,
 * written on a reused connection that the server had just closed (the
 * keep-alive race, which clients retry), or written and then cut off with no
 * answer (a failure).
 */
#ifndef HB_TEST_REL_H
#define HB_TEST_REL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tests/integration/harness.h"

/* A bound from the environment: name's value if set (a whole number), else
 * def. HUBBUB_REL_FULL=1 (make test-reliability) picks full instead. */
long rel_bound(const char *name, long def, long full);

/* Raises this process's open-file soft limit to the hard limit; returns it. */
long rel_raise_nofile(void);

/* ---- one request ---- */

enum rel_fate {
    REL_UNSENT = 0, /* not sent yet (or the load stopped first) */
    REL_ANSWERED,   /* a whole HTTP answer came back */
    REL_REFUSED,    /* connect() failed: nothing was sent; retry is safe */
    REL_RACE,       /* written on a reused keep-alive connection that then ended with
                       no byte of an answer: the keep-alive race, which clients retry */
    REL_LOST,       /* written on a fresh connection, or answer cut off: a failure */
    REL_TIMEOUT,    /* no answer in time */
    REL_NFATES
};
extern const char *const rel_fate_names[REL_NFATES];

struct rel_client {
    int port;
    int fd; /* -1: none */
    bool reused;
    char err[96];
};

void rel_client_init(struct rel_client *c, int port);
void rel_client_close(struct rel_client *c);
/* Sends one request (head: method, path and headers without the blank line;
 * Content-Length is added) and reads the answer, reconnecting first if the
 * connection is closed. *status gets the HTTP status when answered. */
enum rel_fate rel_client_request(struct rel_client *c, const char *head, const void *body,
                                 size_t len, int timeout_ms, int *status);

/* A plain TCP connection to 127.0.0.1:port, or -1 (errno set). */
int rel_connect(int port);

/* ---- load ---- */

struct rel_rec {
    int64_t t_send, t_done; /* h_now_ms() */
    int16_t status;
    uint8_t fate;
};

struct rel_load {
    int port;
    const char *app_id, *secret;
    int nthreads;
    int nfresh;  /* of those, how many send Connection: close (a new connection each time) */
    int max;     /* records available; the load stops when they run out */
    double rate; /* deliveries per second in all (0: as fast as answers come) */
    int timeout_ms;
    struct rel_rec *recs;
    atomic_int next;
    atomic_bool stop;
    atomic_int answered;
    pthread_t *threads;
    atomic_int started;
    int64_t t_start;
};

/* Starts nthreads threads, each with its own keep-alive connection (but
 * nfresh of them open a new connection for each request), posting deliveries
 * h_comment_delivery(n) for n = 0, 1, ... until rel_load_stop() or max. */
void rel_load_start(struct rel_load *l, int port, const char *app_id, const char *secret,
                    int nthreads, int nfresh, int max, double rate);
void rel_load_stop(struct rel_load *l);
void rel_load_free(struct rel_load *l);
/* Number of deliveries taken so far. */
int rel_load_sent(struct rel_load *l);

struct rel_tally {
    int n, by_fate[REL_NFATES];
    int ok, unavailable, other; /* answered 200, 503, anything else */
    double p50, p99, max;       /* latency of the answered ones, ms */
    double per_second;          /* answered per second over the window */
};
/* Deliveries sent in [from, to) (h_now_ms(); 0, INT64_MAX for all). */
void rel_tally(const struct rel_load *l, int64_t from, int64_t to, struct rel_tally *t);
/* Prints a tally as one TAP diagnostic line. */
void rel_tally_diag(const char *what, const struct rel_tally *t);

/* Reads the events table: how many of the deliveries that got 200 are not
 * stored (the first few are printed), and how many are stored twice.
 * *stored gets the number of events. */
int rel_missing(struct h_db *db, const struct rel_load *l, int *stored, int *dups);

/* ---- processes ---- */

/* Resident set size of pid in KiB, or -1. */
long rel_rss_kib(pid_t pid);
/* Waits up to timeout_ms for needle in the server's log. */
bool rel_wait_log(const struct h_server *s, const char *needle, int timeout_ms);
/* Percentile q (0..100) of n values (sorted in place). */
double rel_percentile(double *v, int n, double q);

#endif
