/*
 * metrics.c - atomic metric values and the Prometheus text format; see
 * metrics.h.
 */
#include "lib/metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const double METRICS_SECONDS_BOUNDS[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                         0.1,    0.25,  0.5,    1,     2.5,  5,     10};
const size_t METRICS_SECONDS_NBOUNDS = sizeof(METRICS_SECONDS_BOUNDS) / sizeof(double);
const double METRICS_SIZE_BOUNDS[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000};
const size_t METRICS_SIZE_NBOUNDS = sizeof(METRICS_SIZE_BOUNDS) / sizeof(double);

void metrics_histogram_init(struct metrics_histogram *h, const double *bounds, size_t nbounds,
                            double unit)
{
    if (nbounds > METRICS_BUCKETS_MAX)
        abort(); /* a programming error */
    h->nbounds = nbounds;
    h->unit = unit;
    for (size_t i = 0; i < nbounds; i++) {
        h->bounds[i] = bounds[i];
        /* An observation v falls in bucket i when v * unit <= bounds[i]. */
        h->limits[i] = (uint64_t)floor(bounds[i] / unit + 1e-9);
    }
    for (size_t i = 0; i <= METRICS_BUCKETS_MAX; i++)
        atomic_init(&h->buckets[i], 0);
    atomic_init(&h->sum, 0);
}

void metrics_histogram_observe(struct metrics_histogram *h, uint64_t value)
{
    size_t i = 0;
    while (i < h->nbounds && value > h->limits[i])
        i++;
    atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum, value, memory_order_relaxed);
}

void metrics_escape_label(struct buf *b, const char *value)
{
    for (const char *p = value; *p != '\0'; p++) {
        if (*p == '\\')
            buf_puts(b, "\\\\");
        else if (*p == '"')
            buf_puts(b, "\\\"");
        else if (*p == '\n')
            buf_puts(b, "\\n");
        else
            buf_putc(b, *p);
    }
}

void metrics_format_double(struct buf *b, double v)
{
    if (isnan(v))
        buf_puts(b, "NaN");
    else if (isinf(v))
        buf_puts(b, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 1e15)
        buf_printf(b, "%.0f", v);
    else
        buf_printf(b, "%.15g", v);
}

void metrics_write_family(struct buf *b, const char *name, const char *type, const char *help)
{
    buf_printf(b, "# HELP %s ", name);
    /* HELP text escapes only backslash and newline. */
    for (const char *p = help; *p != '\0'; p++) {
        if (*p == '\\')
            buf_puts(b, "\\\\");
        else if (*p == '\n')
            buf_puts(b, "\\n");
        else
            buf_putc(b, *p);
    }
    buf_printf(b, "\n# TYPE %s %s\n", name, type);
}

static void write_name(struct buf *b, const char *name, const char *suffix,
                       const struct metrics_label *labels, size_t nlabels, const char *le)
{
    buf_puts(b, name);
    buf_puts(b, suffix);
    if (nlabels == 0 && le == NULL)
        return;
    buf_putc(b, '{');
    for (size_t i = 0; i < nlabels; i++) {
        buf_printf(b, "%s%s=\"", i > 0 ? "," : "", labels[i].name);
        metrics_escape_label(b, labels[i].value);
        buf_putc(b, '"');
    }
    if (le != NULL)
        buf_printf(b, "%sle=\"%s\"", nlabels > 0 ? "," : "", le);
    buf_putc(b, '}');
}

void metrics_write_uint(struct buf *b, const char *name, const struct metrics_label *labels,
                        size_t nlabels, uint64_t value)
{
    write_name(b, name, "", labels, nlabels, NULL);
    buf_printf(b, " %llu\n", (unsigned long long)value);
}

void metrics_write_double(struct buf *b, const char *name, const struct metrics_label *labels,
                          size_t nlabels, double value)
{
    write_name(b, name, "", labels, nlabels, NULL);
    buf_putc(b, ' ');
    metrics_format_double(b, value);
    buf_putc(b, '\n');
}

void metrics_write_histogram(struct buf *b, const char *name, const struct metrics_label *labels,
                             size_t nlabels, const struct metrics_histogram *h)
{
    uint64_t cumulative = 0;
    struct buf le;
    buf_init(&le);
    for (size_t i = 0; i <= h->nbounds; i++) {
        cumulative += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        buf_reset(&le);
        if (i < h->nbounds)
            metrics_format_double(&le, h->bounds[i]);
        else
            buf_puts(&le, "+Inf");
        write_name(b, name, "_bucket", labels, nlabels, le.data);
        buf_printf(b, " %llu\n", (unsigned long long)cumulative);
    }
    buf_dispose(&le);
    uint64_t sum = atomic_load_explicit(&h->sum, memory_order_relaxed);
    write_name(b, name, "_sum", labels, nlabels, NULL);
    buf_putc(b, ' ');
    metrics_format_double(b, (double)sum * h->unit);
    buf_putc(b, '\n');
    write_name(b, name, "_count", labels, nlabels, NULL);
    buf_printf(b, " %llu\n", (unsigned long long)cumulative);
}
