/*
 * stats.c - hubbub's counters and their rendering; see stats.h.
 *
 * The app table is open addressing on the Meta app id, grown at half load;
 * rows are allocated one by one so that pointers to them stay valid.
 */
#include "server/stats.h"

#include <stdlib.h>
#include <string.h>

#include "api/fields.h"
#include "lib/hb.h"
#include "server/appcache.h"

struct stats_app {
    char id[APP_ID_MAX + 1];
    uint64_t n[STATS_DELIVERY_N];
};

#define FIELDS_MAX 32

enum graph_outcome {
    G_OK,
    G_TEMPORARY,
    G_APP_RATE_LIMITED,
    G_RATE_LIMITED,
    G_POLICY_BLOCKED,
    G_TOKEN_INVALID,
    G_PERMANENT,
    G_TIMEOUT,
    G_TRANSPORT_ERROR,
    G_N
};

static const char *const GRAPH_OUTCOMES[G_N] = {
    "ok",        "temporary", "app_rate_limited", "rate_limited", "policy_blocked", "token_invalid",
    "permanent", "timeout",   "transport_error"};

static const char *const DELIVERY_OUTCOMES[STATS_DELIVERY_N] = {
    "accepted",           "duplicate",      "bad_signature", "bad_json",
    "too_large",          "db_unavailable", "overloaded",    "unknown_app",
    "method_not_allowed", "client_refused", "shutting_down", "failed"};

static const char *const VERIFY_OUTCOMES[STATS_VERIFY_N] = {"ok", "bad_token", "bad_request",
                                                            "unknown_app", "db_unavailable"};

static const char *const ROUTES[STATS_ROUTE_N] = {"webhook", "api", "other"};

struct stats {
    /* loop thread */
    struct stats_app **slots;
    size_t cap, napps;
    struct stats_app unknown, other;
    uint64_t verifications[STATS_VERIFY_N];

    /* any thread */
    const char *fields[FIELDS_MAX];
    size_t nfields;
    struct metrics_counter events[FIELDS_MAX + 1]; /* the last: "other" */
    struct metrics_histogram batch_size, commit_us;
    struct metrics_histogram request_us[STATS_ROUTE_N];
    struct metrics_counter graph[G_N];
};

struct stats *stats_new(void)
{
    struct stats *s = xcalloc(1, sizeof(*s));
    s->cap = 64;
    s->slots = xcalloc(s->cap, sizeof(*s->slots));
    snprintf(s->unknown.id, sizeof(s->unknown.id), "unknown");
    snprintf(s->other.id, sizeof(s->other.id), "other");
    /* The fields one may subscribe to, and those the splitter names that
     * are not in that table (PROTOCOL.md section 2): message_edit. */
    size_t n;
    const char *const *all = fields_all(&n);
    for (size_t i = 0; i < n && s->nfields < FIELDS_MAX; i++)
        s->fields[s->nfields++] = all[i];
    if (s->nfields < FIELDS_MAX)
        s->fields[s->nfields++] = "message_edit";
    for (size_t i = 0; i <= FIELDS_MAX; i++)
        atomic_init(&s->events[i].value, 0);
    for (size_t i = 0; i < G_N; i++)
        atomic_init(&s->graph[i].value, 0);
    metrics_histogram_init(&s->batch_size, METRICS_SIZE_BOUNDS, METRICS_SIZE_NBOUNDS, 1);
    metrics_histogram_init(&s->commit_us, METRICS_SECONDS_BOUNDS, METRICS_SECONDS_NBOUNDS, 1e-6);
    for (size_t i = 0; i < STATS_ROUTE_N; i++)
        metrics_histogram_init(&s->request_us[i], METRICS_SECONDS_BOUNDS, METRICS_SECONDS_NBOUNDS,
                               1e-6);
    return s;
}

void stats_free(struct stats *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->cap; i++)
        free(s->slots[i]);
    free(s->slots);
    free(s);
}

static uint64_t hash(const char *id)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *id != '\0'; id++)
        h = (h ^ (unsigned char)*id) * 1099511628211ULL;
    return h;
}

static void grow(struct stats *s)
{
    size_t cap = s->cap * 2;
    struct stats_app **slots = xcalloc(cap, sizeof(*slots));
    for (size_t i = 0; i < s->cap; i++) {
        if (s->slots[i] == NULL)
            continue;
        size_t j = hash(s->slots[i]->id) & (cap - 1);
        while (slots[j] != NULL)
            j = (j + 1) & (cap - 1);
        slots[j] = s->slots[i];
    }
    free(s->slots);
    s->slots = slots;
    s->cap = cap;
}

struct stats_app *stats_app(struct stats *s, const char *meta_app_id)
{
    if (meta_app_id == NULL || strlen(meta_app_id) > APP_ID_MAX)
        return &s->unknown;
    size_t j = hash(meta_app_id) & (s->cap - 1);
    while (s->slots[j] != NULL) {
        if (strcmp(s->slots[j]->id, meta_app_id) == 0)
            return s->slots[j];
        j = (j + 1) & (s->cap - 1);
    }
    if (s->napps >= STATS_APPS_MAX)
        return &s->other;
    struct stats_app *a = xcalloc(1, sizeof(*a));
    snprintf(a->id, sizeof(a->id), "%s", meta_app_id);
    s->slots[j] = a;
    if (++s->napps * 2 > s->cap)
        grow(s);
    return a;
}

void stats_delivery(struct stats_app *a, enum stats_delivery outcome)
{
    a->n[outcome]++;
}

void stats_verification(struct stats *s, enum stats_verification outcome)
{
    s->verifications[outcome]++;
}

void stats_events_stored(void *arg, const char *field, uint64_t n)
{
    struct stats *s = arg;
    size_t i = 0;
    while (i < s->nfields && strcmp(s->fields[i], field) != 0)
        i++;
    metrics_counter_add(&s->events[i < s->nfields ? i : FIELDS_MAX], n);
}

void stats_request(struct stats *s, enum stats_route route, uint64_t us)
{
    metrics_histogram_observe(&s->request_us[route], us);
}

void stats_graph_call(struct stats *s, const struct graph_response *resp, enum graph_class cls)
{
    if (s == NULL)
        return;
    enum graph_outcome o;
    if (resp->http_status == 0)
        o = resp->is_timeout ? G_TIMEOUT : G_TRANSPORT_ERROR;
    else
        switch (cls) {
        case GRAPH_OK:
            o = G_OK;
            break;
        case GRAPH_TEMPORARY:
            o = G_TEMPORARY;
            break;
        case GRAPH_APP_RATE_LIMIT:
            o = G_APP_RATE_LIMITED;
            break;
        case GRAPH_ACCOUNT_RATE_LIMIT:
            o = G_RATE_LIMITED;
            break;
        case GRAPH_POLICY_BLOCK:
            o = G_POLICY_BLOCKED;
            break;
        case GRAPH_TOKEN_INVALID:
            o = G_TOKEN_INVALID;
            break;
        default:
            o = G_PERMANENT;
            break;
        }
    metrics_counter_add(&s->graph[o], 1);
}

struct metrics_histogram *stats_batch_size(struct stats *s)
{
    return &s->batch_size;
}

struct metrics_histogram *stats_commit_us(struct stats *s)
{
    return &s->commit_us;
}

static void render_app(struct buf *b, const struct stats_app *a, uint64_t extra_too_large)
{
    for (size_t o = 0; o < STATS_DELIVERY_N; o++) {
        uint64_t v = a->n[o] + (o == STATS_TOO_LARGE ? extra_too_large : 0);
        struct metrics_label l[] = {{"app", a->id}, {"outcome", DELIVERY_OUTCOMES[o]}};
        metrics_write_uint(b, "hubbub_webhook_deliveries_total", l, 2, v);
    }
}

void stats_render(struct stats *s, struct buf *b, uint64_t too_large)
{
    metrics_write_family(b, "hubbub_webhook_deliveries_total", "counter",
                         "Webhook POSTs by Meta app id and outcome; app=\"unknown\" when refused "
                         "before the app was found");
    render_app(b, &s->unknown, too_large);
    for (size_t i = 0; i < s->cap; i++)
        if (s->slots[i] != NULL)
            render_app(b, s->slots[i], 0);
    if (s->napps >= STATS_APPS_MAX)
        render_app(b, &s->other, 0);

    metrics_write_family(b, "hubbub_webhook_verifications_total", "counter",
                         "Webhook verification handshakes (GET) by outcome");
    for (size_t o = 0; o < STATS_VERIFY_N; o++) {
        struct metrics_label l[] = {{"outcome", VERIFY_OUTCOMES[o]}};
        metrics_write_uint(b, "hubbub_webhook_verifications_total", l, 1, s->verifications[o]);
    }

    metrics_write_family(b, "hubbub_events_total", "counter",
                         "New events stored (duplicates not counted) by webhook field");
    for (size_t i = 0; i <= s->nfields; i++) {
        size_t k = i < s->nfields ? i : FIELDS_MAX;
        struct metrics_label l[] = {{"field", i < s->nfields ? s->fields[i] : "other"}};
        metrics_write_uint(b, "hubbub_events_total", l, 1, metrics_counter_get(&s->events[k]));
    }

    metrics_write_family(b, "hubbub_ingest_commit_batch_size", "histogram",
                         "Deliveries committed together in one transaction");
    metrics_write_histogram(b, "hubbub_ingest_commit_batch_size", NULL, 0, &s->batch_size);
    metrics_write_family(b, "hubbub_ingest_commit_duration_seconds", "histogram",
                         "Time to store and commit one batch of deliveries");
    metrics_write_histogram(b, "hubbub_ingest_commit_duration_seconds", NULL, 0, &s->commit_us);

    metrics_write_family(b, "hubbub_http_request_duration_seconds", "histogram",
                         "Time from a request's arrival to the end of its answer, by route class");
    for (size_t r = 0; r < STATS_ROUTE_N; r++) {
        struct metrics_label l[] = {{"route", ROUTES[r]}};
        metrics_write_histogram(b, "hubbub_http_request_duration_seconds", l, 1, &s->request_us[r]);
    }

    metrics_write_family(b, "hubbub_graph_requests_total", "counter",
                         "Graph API calls made by the workers, by outcome");
    for (size_t o = 0; o < G_N; o++) {
        struct metrics_label l[] = {{"outcome", GRAPH_OUTCOMES[o]}};
        metrics_write_uint(b, "hubbub_graph_requests_total", l, 1,
                           metrics_counter_get(&s->graph[o]));
    }
}
