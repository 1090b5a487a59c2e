/*
 * soak.c - `make soak`: a long steady load, with hubbub's memory watched.
 *
 * HUBBUB_SOAK_CLIENTS keep-alive clients (32) post distinct signed
 * deliveries at HUBBUB_SOAK_RATE per second in all (10 000: half the
 * benchmark's 20 000 durable deliveries/s; give the figure measured on the
 * machine at hand) for HUBBUB_SOAK_SECONDS (600). hubbub's RSS is sampled
 * every HUBBUB_SOAK_SAMPLE_MS (5 000) and printed with the answers per
 * second of that interval. Verdict: after a warm-up (a sixth of the run, at
 * most 60 s), the median RSS of the last window (a minute, or a third of
 * what follows the warm-up if shorter) must be within HUBBUB_SOAK_FLAT_PCT
 * (10) % of the median of the first window. Every delivery that got 200 must
 * be stored.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/integration/harness.h"
#include "tests/reliability/rel.h"

#define APP_ID "17841400000000905"
#define SECRET "soak-secret-0123456789abcdef"

struct sample {
    int64_t t; /* ms since the load started */
    long rss_kib;
    double per_second;
};

static double median_rss(const struct sample *s, int n, int64_t from, int64_t to)
{
    double *v = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    int k = 0;
    for (int i = 0; i < n; i++)
        if (s[i].t >= from && s[i].t < to)
            v[k++] = (double)s[i].rss_kib;
    double m = rel_percentile(v, k, 50);
    free(v);
    return m;
}

int main(void)
{
    long seconds = rel_bound("HUBBUB_SOAK_SECONDS", 600, 600);
    double rate = (double)rel_bound("HUBBUB_SOAK_RATE", 10000, 10000);
    int clients = (int)rel_bound("HUBBUB_SOAK_CLIENTS", 32, 32);
    int sample_ms = (int)rel_bound("HUBBUB_SOAK_SAMPLE_MS", 5000, 5000);
    double flat_pct = (double)rel_bound("HUBBUB_SOAK_FLAT_PCT", 10, 10);
    rel_raise_nofile();
    struct h_db db;
    h_db_create(&db, "soak");
    h_setup_app(&db, "soakco", APP_ID, "soak-verify", SECRET);
    struct h_server s;
    h_server_start(&s, &db, NULL);
    tap_diag("soak: %ld s at %.0f deliveries/s from %d clients; RSS every %d ms", seconds, rate,
             clients, sample_ms);

    int max = (int)(rate * (double)seconds * 1.05) + 1000;
    struct rel_load load;
    rel_load_start(&load, s.port, APP_ID, SECRET, clients, 0, max, rate);
    int nsamples = (int)(seconds * 1000 / sample_ms) + 2;
    struct sample *sm = calloc((size_t)nsamples, sizeof(*sm));
    int n = 0;
    int64_t t0 = load.t_start, end = t0 + seconds * 1000;
    int last_answered = 0;
    int64_t last_t = t0;
    while (n < nsamples) {
        int64_t due = t0 + (int64_t)(n + 1) * sample_ms;
        if (due > end)
            break;
        while (h_now_ms() < due)
            h_sleep_ms(50);
        int64_t now = h_now_ms();
        int answered = atomic_load(&load.answered);
        sm[n].t = now - t0;
        sm[n].rss_kib = rel_rss_kib(s.pid);
        sm[n].per_second = (answered - last_answered) * 1000.0 / (double)(now - last_t);
        tap_diag("t=%5.0f s  rss=%6ld KiB  answered/s=%6.0f", sm[n].t / 1000.0, sm[n].rss_kib,
                 sm[n].per_second);
        last_answered = answered;
        last_t = now;
        n++;
    }
    rel_load_stop(&load);

    struct rel_tally t;
    rel_tally(&load, 0, INT64_MAX, &t);
    rel_tally_diag("soak", &t);
    int64_t total_ms = seconds * 1000;
    int64_t warmup = total_ms / 6 < 60000 ? total_ms / 6 : 60000;
    int64_t window = (total_ms - warmup) / 3 < 60000 ? (total_ms - warmup) / 3 : 60000;
    double first = median_rss(sm, n, warmup, warmup + window);
    double last = median_rss(sm, n, total_ms - window, total_ms + 1);
    double change = first > 0 ? (last - first) * 100.0 / first : 0;
    bool flat = first > 0 && change <= flat_pct && change >= -flat_pct;
    tap_diag("RSS median %.0f KiB in [%lld s, %lld s), %.0f KiB in the last %lld s: %+.1f %% -> %s",
             first, (long long)(warmup / 1000), (long long)((warmup + window) / 1000), last,
             (long long)(window / 1000), change, flat ? "FLAT" : "GROWING");
    tap_ok(n >= 3, "%d RSS samples", n);
    tap_ok(flat,
           "RSS is flat: the last window's median is within %.0f %% of the first's (%+.1f %%)",
           flat_pct, change);
    tap_diag("achieved %.0f deliveries/s of the %.0f asked for", t.per_second, rate);
    tap_is_int(t.by_fate[REL_LOST] + t.by_fate[REL_RACE] + t.by_fate[REL_TIMEOUT], 0,
               "every request got an answer");
    int stored, dups;
    int missing = rel_missing(&db, &load, &stored, &dups);
    tap_is_int(missing, 0, "every delivery that got 200 is stored (%d events)", stored);
    tap_is_int(h_server_stop(&s, SIGTERM), 0, "hubbub stops cleanly");
    free(sm);
    rel_load_free(&load);
    h_db_drop(&db);
    return tap_done();
}
