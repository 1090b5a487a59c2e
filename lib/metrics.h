/*
 * metrics.h - counters, gauges and histograms, and their rendering in the
 * Prometheus text exposition format (version 0.0.4).
 *
 * The values are C11 atomics updated with relaxed ordering: a counter bumped
 * by the loop, the ingest writers and the workers costs one atomic add, never
 * a lock, and a scrape reads each value once. A histogram keeps one count per
 * bucket (not cumulative) and its sum in the integer unit it observes
 * (microseconds for a *_seconds histogram); rendering makes the buckets
 * cumulative and takes _count from them, so a scrape that races an
 * observation still shows _count equal to the +Inf bucket.
 *
 * Rendering writes into a struct buf: metrics_write_family() for the HELP and
 * TYPE lines, then samples. Label values are escaped as the format asks
 * (backslash, double quote, newline); names are the caller's constants.
 * Nothing here allocates after init, and nothing here knows hubbub's metrics.
 */
#ifndef HB_METRICS_H
#define HB_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

struct metrics_counter {
    atomic_uint_fast64_t value;
};

static inline void metrics_counter_add(struct metrics_counter *c, uint64_t n)
{
    atomic_fetch_add_explicit(&c->value, n, memory_order_relaxed);
}

static inline uint64_t metrics_counter_get(const struct metrics_counter *c)
{
    return atomic_load_explicit(&c->value, memory_order_relaxed);
}

#define METRICS_BUCKETS_MAX 24

struct metrics_histogram {
    size_t nbounds;
    double bounds[METRICS_BUCKETS_MAX];   /* upper bounds in the metric's unit, ascending */
    uint64_t limits[METRICS_BUCKETS_MAX]; /* the same in observed units */
    double unit;                          /* one observed unit in the metric's unit */
    atomic_uint_fast64_t buckets[METRICS_BUCKETS_MAX + 1]; /* the last one is +Inf */
    atomic_uint_fast64_t sum;                              /* in observed units */
};

/* bounds: nbounds (at most METRICS_BUCKETS_MAX) ascending upper bounds in
 * the metric's unit; unit: what one observed integer is worth in it (1e-6
 * when observing microseconds for a _seconds histogram, 1 for counts). */
void metrics_histogram_init(struct metrics_histogram *h, const double *bounds, size_t nbounds,
                            double unit);
void metrics_histogram_observe(struct metrics_histogram *h, uint64_t value);

/* Default bounds, in seconds and in items. */
extern const double METRICS_SECONDS_BOUNDS[];
extern const size_t METRICS_SECONDS_NBOUNDS;
extern const double METRICS_SIZE_BOUNDS[];
extern const size_t METRICS_SIZE_NBOUNDS;

struct metrics_label {
    const char *name;
    const char *value;
};

/* # HELP and # TYPE lines; type is "counter", "gauge" or "histogram". */
void metrics_write_family(struct buf *b, const char *name, const char *type, const char *help);
/* name{labels} value */
void metrics_write_uint(struct buf *b, const char *name, const struct metrics_label *labels,
                        size_t nlabels, uint64_t value);
void metrics_write_double(struct buf *b, const char *name, const struct metrics_label *labels,
                          size_t nlabels, double value);
/* name_bucket{labels,le=...} for every bound and +Inf, name_sum, name_count. */
void metrics_write_histogram(struct buf *b, const char *name, const struct metrics_label *labels,
                             size_t nlabels, const struct metrics_histogram *h);

/* A label value as the format escapes it (\\, \", \n). */
void metrics_escape_label(struct buf *b, const char *value);
/* A sample value: integers without a fraction, +Inf, -Inf, NaN. */
void metrics_format_double(struct buf *b, double v);

#endif
