/*
 * events-gen.c - writes stored events for the admin API's query benchmark
 * (tests/bench/run-api), as PostgreSQL COPY text on standard output:
 *
 *   events-gen COUNT TENANTS DAYS END PART NPARTS | psql -c "COPY events (...) FROM STDIN"
 *
 * The columns, in order, are those of EVENTS_GEN_COLUMNS below. Of COUNT
 * events numbered 0..COUNT-1, this process writes those whose number is PART
 * modulo NPARTS, so NPARTS processes (one COPY each) load the table side by
 * side; together they write the same rows as one process would, since every
 * row's random choices come from its own number.
 *
 * The rows look like what hubbub stores for a real deployment:
 * - received_at runs from END - DAYS days to END (Unix seconds) in event
 *   number order, so ids grow with time and the heap is in arrival order
 *   with the tenants interleaved, as ingest leaves it;
 * - tenant t (1..TENANTS) owns app t; tenants differ in volume (the weight
 *   of the n-th is n^-0.7: the largest gets ~25x the smallest's events);
 * - each tenant has 1-4 Instagram accounts (entry_id), the first busiest;
 * - fields are skewed as a messaging-heavy deployment's are: messages,
 *   messaging_seen and comments most, story_insights or standby rarely
 *   (FIELDS below); each payload is the item as hubbub stores it (a change's
 *   {"field","value"} or a messaging item), 200-600 bytes of JSON with
 *   nested ids, text with escapes and emoji;
 * - dedup_key is 16 distinct bytes a row, delivery_id groups ~1.3 events.
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HB_COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define JSON_MAX 4096
#define OUT_FLUSH (1 << 20)
#define MAX_TENANTS 100000

/* For tests/bench/run-api, which must name the same columns. */
#define EVENTS_GEN_COLUMNS                                                                         \
    "id, app_id, tenant_id, delivery_id, object, field, entry_id, entry_time, received_at,"        \
    " dedup_key, payload"

struct out {
    char *buf;
    size_t len, cap;
};

static void need(struct out *o, size_t n)
{
    if (o->len + n <= o->cap)
        return;
    fprintf(stderr, "events-gen: a row outgrew %zu bytes\n", o->cap);
    exit(1);
}

static void put(struct out *o, const char *s)
{
    size_t n = strlen(s);
    need(o, n);
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static void put_u(struct out *o, uint64_t v)
{
    char tmp[24];
    int i = 0;
    do {
        tmp[i++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    need(o, (size_t)i);
    while (i > 0)
        o->buf[o->len++] = tmp[--i];
}

/* splitmix64: each row seeds its own sequence from its number. */
static uint64_t rng;

static uint64_t rnd(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static unsigned pick(unsigned n)
{
    return (unsigned)(rnd() % n);
}

/* ---- payload pieces ---- */

/* JSON as Meta writes it: non-ASCII as \uXXXX escapes, '/' as "\/". The
 * backslashes are JSON's; put_copy_text() doubles them for COPY. */
static const char *const WORDS[] = {
    "love",  "this",      "so",     "much",       "where",        "did",         "you",
    "get",   "that",      "jacket", "amazing",    "colour",       "is",          "it",
    "still", "available", "price",  "please",     "DM",           "me",          "the",
    "link",  "doesn't",   "work",   "caf\\u00e9", "na\\u00efve",  "cr\\u00e8me", "ma\\u00f1ana",
    "order", "shipping",  "to",     "Berlin",     "size",         "M",           "or",
    "L",     "thanks",    "when",   "restock",    "\\\"sale\\\"", "wow",         "need",
};
static const char *const EMOJI[] = {
    "\\ud83d\\ude00", "\\ud83d\\ude0d", "\\ud83d\\udc51", "\\ud83d\\udd25",
    "\\u2764\\ufe0f", "\\ud83d\\ude4f", "\\ud83c\\udf89", "\\ud83d\\udc4d\\ud83c\\udffd",
};
static const char *const NAMES[] = {"jane.doe", "mark_92",      "lisa.makes", "the.tom.k",
                                    "anna_b",   "kofi.creates", "m.yilmaz",   "sofia.rr"};
static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void put_text(struct out *o, unsigned target)
{
    size_t start = o->len;
    while (o->len - start < target) {
        unsigned r = pick(12);
        if (r == 0)
            put(o, EMOJI[pick(HB_COUNT(EMOJI))]);
        else
            put(o, WORDS[pick(HB_COUNT(WORDS))]);
        put(o, " ");
    }
    if (pick(6) == 0) {
        put(o, "https:\\/\\/shop.example.com\\/item\\/");
        put_u(o, rnd() % 1000003);
    } else {
        put(o, EMOJI[pick(HB_COUNT(EMOJI))]);
    }
}

/* Instagram's message ids: a long base64 text. */
static void put_mid(struct out *o, uint64_t n)
{
    put(o, "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQx");
    put_u(o, 1000000 + n);
    need(o, 80);
    for (int i = 0; i < 80; i++)
        o->buf[o->len++] = B64[pick(64)];
}

struct row {
    uint64_t n;
    unsigned tenant;
    const char *account; /* the entry id: the tenant's Instagram account */
    const char *field;
    int64_t us; /* received_at, microseconds since the epoch */
};

static void put_sender(struct out *o, const struct row *r, bool echo)
{
    char scoped[24];
    snprintf(scoped, sizeof(scoped), "%llu", 1100000000000000ULL + pick(20000000));
    put(o, "{\"sender\":{\"id\":\"");
    put(o, echo ? r->account : scoped);
    put(o, "\"},\"recipient\":{\"id\":\"");
    put(o, echo ? scoped : r->account);
    put(o, "\"},\"timestamp\":");
    put_u(o, (uint64_t)(r->us / 1000 - 40 - pick(400)));
}

static void put_change_value_comment(struct out *o, const struct row *r)
{
    put(o, "{\"from\":{\"id\":\"");
    put_u(o, 6000000000000000ULL + pick(1000000000));
    put(o, "\",\"username\":\"");
    put(o, NAMES[pick(HB_COUNT(NAMES))]);
    put(o, "\"},\"media\":{\"id\":\"1800");
    put_u(o, 1000000000000ULL + r->n / 200);
    put(o, pick(3) == 0 ? "\",\"media_product_type\":\"REELS\"}"
                        : "\",\"media_product_type\":\"FEED\"}");
    put(o, ",\"id\":\"1790");
    put_u(o, 1000000000000ULL + r->n);
    put(o, "\"");
    if (pick(4) == 0) {
        put(o, ",\"parent_id\":\"1790");
        put_u(o, 1000000000000ULL + r->n - pick(1000) - 1);
        put(o, "\"");
    }
    put(o, ",\"text\":\"");
    put_text(o, 20 + pick(300));
    put(o, "\"}");
}

/* The item of row r as hubbub stores it. */
static void put_payload(struct out *o, const struct row *r)
{
    const char *f = r->field;
    if (strcmp(f, "comments") == 0 || strcmp(f, "live_comments") == 0) {
        put(o, "{\"field\":\"");
        put(o, f);
        put(o, "\",\"value\":");
        put_change_value_comment(o, r);
        put(o, "}");
    } else if (strcmp(f, "mentions") == 0) {
        put(o, "{\"field\":\"mentions\",\"value\":{\"media_id\":\"1800");
        put_u(o, 1000000000000ULL + rnd() % 1000000000);
        put(o, "\",\"comment_id\":\"1790");
        put_u(o, 1000000000000ULL + r->n);
        put(o, "\"}}");
    } else if (strcmp(f, "story_insights") == 0) {
        put(o, "{\"field\":\"story_insights\",\"value\":{\"media_id\":\"1800");
        put_u(o, 1000000000000ULL + rnd() % 1000000000);
        static const char *const K[] = {"exits",        "replies",   "reach",
                                        "taps_forward", "taps_back", "impressions"};
        for (size_t i = 0; i < HB_COUNT(K); i++) {
            put(o, i == 0 ? "\",\"" : ",\"");
            put(o, K[i]);
            put(o, "\":");
            put_u(o, pick(5000));
        }
        put(o, "}}");
    } else if (strcmp(f, "messaging_seen") == 0) {
        put_sender(o, r, false);
        put(o, ",\"read\":{\"mid\":\"");
        put_mid(o, r->n - pick(50));
        put(o, "\"}}");
    } else if (strcmp(f, "message_reactions") == 0) {
        static const char *const R[] = {"love", "haha", "wow", "like"};
        put_sender(o, r, false);
        put(o, ",\"reaction\":{\"mid\":\"");
        put_mid(o, r->n - pick(50));
        put(o, pick(5) == 0 ? "\",\"action\":\"unreact\"" : "\",\"action\":\"react\"");
        put(o, ",\"reaction\":\"");
        put(o, R[pick(HB_COUNT(R))]);
        put(o, "\",\"emoji\":\"");
        put(o, EMOJI[pick(HB_COUNT(EMOJI))]);
        put(o, "\"}}");
    } else if (strcmp(f, "messaging_postbacks") == 0) {
        put_sender(o, r, false);
        put(o, ",\"postback\":{\"mid\":\"");
        put_mid(o, r->n);
        put(o, "\",\"title\":\"Track my order\",\"payload\":\"ORDER_STATUS_");
        put_u(o, rnd() % 100000);
        put(o, "\"}}");
    } else if (strcmp(f, "messaging_referral") == 0) {
        put_sender(o, r, false);
        put(o, ",\"referral\":{\"ref\":\"spring-campaign-");
        put_u(o, pick(40));
        put(o, "\",\"source\":\"ADS\",\"type\":\"OPEN_THREAD\",\"ad_id\":\"2384");
        put_u(o, 1000000000000ULL + pick(1000000));
        put(o, "\"}}");
    } else if (strcmp(f, "messaging_handover") == 0) {
        put_sender(o, r, false);
        put(o, ",\"pass_thread_control\":{\"new_owner_app_id\":\"");
        put_u(o, 100000000000000ULL + pick(1000));
        put(o, "\",\"metadata\":\"escalated to a person\"}}");
    } else if (strcmp(f, "messaging_optins") == 0) {
        put_sender(o, r, false);
        put(o, ",\"optin\":{\"type\":\"notification_messages\",\"payload\":\"restock\","
               "\"notification_messages_token\":\"");
        put_mid(o, r->n);
        put(o, "\",\"notification_messages_frequency\":\"DAILY\"}}");
    } else {
        /* messages, message_echoes, standby: a message, sometimes with an
         * attachment or a reply. */
        bool echo = strcmp(f, "message_echoes") == 0;
        put_sender(o, r, echo);
        put(o, ",\"message\":{\"mid\":\"");
        put_mid(o, r->n);
        put(o, "\"");
        if (echo)
            put(o, ",\"is_echo\":true");
        unsigned kind = pick(10);
        if (kind == 0) {
            put(o, ",\"attachments\":[{\"type\":\"image\",\"payload\":{\"url\":"
                   "\"https:\\/\\/lookaside.fbsbx.com\\/ig_messaging_cdn\\/?asset_id=");
            put_u(o, 1800000000000000ULL + r->n);
            put(o, "&signature=Ab");
            put_u(o, rnd() % 1000000000000ULL);
            put(o, "\"}}]}}");
            return;
        }
        if (kind == 1) {
            put(o, ",\"reply_to\":{\"mid\":\"");
            put_mid(o, r->n - 1 - pick(100));
            put(o, "\"}");
        }
        put(o, ",\"text\":\"");
        put_text(o, 10 + pick(260));
        put(o, "\"}}");
    }
}

/* ---- the distributions ---- */

/* Per mille: a messaging-heavy deployment. */
static const struct {
    const char *name;
    unsigned weight;
} FIELDS[] = {
    {"messages", 380},           {"messaging_seen", 200},   {"comments", 150},
    {"message_reactions", 90},   {"message_echoes", 80},    {"mentions", 25},
    {"messaging_postbacks", 25}, {"story_insights", 15},    {"live_comments", 10},
    {"messaging_referral", 10},  {"messaging_handover", 5}, {"standby", 5},
    {"messaging_optins", 5},
};

static const char *pick_field(void)
{
    unsigned x = pick(1000);
    for (size_t i = 0; i < HB_COUNT(FIELDS); i++) {
        if (x < FIELDS[i].weight)
            return FIELDS[i].name;
        x -= FIELDS[i].weight;
    }
    return FIELDS[0].name;
}

static double *tenant_cdf;
static unsigned ntenants;

static unsigned pick_tenant(void)
{
    double x = (double)(rnd() >> 11) / 9007199254740992.0; /* [0, 1) */
    unsigned lo = 0, hi = ntenants - 1;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        if (tenant_cdf[mid] > x)
            hi = mid;
        else
            lo = mid + 1;
    }
    /* Tenant numbers are shuffled against volume, so the big ones are spread
     * over the ids. */
    return (lo * 37u) % ntenants + 1;
}

/* ---- rows ---- */

static void put_copy_text(struct out *o, const char *s, size_t n)
{
    need(o, 2 * n);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\')
            o->buf[o->len++] = '\\';
        o->buf[o->len++] = s[i];
    }
}

/* "YYYY-MM-DD HH:MM:SS.uuuuuu+00" */
static void put_time(struct out *o, int64_t us)
{
    time_t secs = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char tmp[48];
    int n =
        snprintf(tmp, sizeof(tmp), "%04d-%02d-%02d %02d:%02d:%02d.%06d+00", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(us % 1000000));
    need(o, (size_t)n);
    memcpy(o->buf + o->len, tmp, (size_t)n);
    o->len += (size_t)n;
}

static void write_row(struct out *o, struct out *json, uint64_t n, uint64_t count, int64_t start_us,
                      int64_t span_us)
{
    /* murmur3's finaliser: rows' sequences must not overlap. */
    uint64_t seed = n + 0x632be59bd9b4e019ULL;
    seed = (seed ^ (seed >> 33)) * 0xff51afd7ed558ccdULL;
    seed = (seed ^ (seed >> 33)) * 0xc4ceb9fe1a85ec53ULL;
    rng = seed ^ (seed >> 33);
    struct row r = {.n = n};
    r.tenant = pick_tenant();
    char account[24];
    unsigned naccounts = 1 + r.tenant % 4, a = pick(4);
    a = a < 2 ? 0 : a - 1; /* the first account gets half */
    snprintf(account, sizeof(account), "178414%06u%05u", r.tenant, a % naccounts);
    r.account = account;
    r.field = pick_field();
    r.us = start_us +
           (int64_t)((double)span_us * ((double)n + (double)pick(1000) / 1000.0) / (double)count);

    json->len = 0;
    put_payload(json, &r);

    uint64_t key1 = rnd() ^ n, key2 = rnd();
    put_u(o, n + 1); /* id */
    put(o, "\t");
    put_u(o, r.tenant); /* app_id: tenant t owns app t */
    put(o, "\t");
    put_u(o, r.tenant);
    put(o, "\t");
    put_u(o, n * 3 / 4 + 1); /* delivery_id */
    put(o, "\tinstagram\t");
    put(o, r.field);
    put(o, "\t");
    put(o, r.account);
    put(o, "\t");
    put_time(o, r.us - 300000 - pick(1500000)); /* entry_time: Meta's, a little earlier */
    put(o, "\t");
    put_time(o, r.us);
    put(o, "\t\\\\x");
    static const char hex[] = "0123456789abcdef";
    need(o, 32);
    for (int i = 60; i >= 0; i -= 4)
        o->buf[o->len++] = hex[(key1 >> i) & 15];
    for (int i = 60; i >= 0; i -= 4)
        o->buf[o->len++] = hex[(key2 >> i) & 15];
    put(o, "\t");
    put_copy_text(o, json->buf, json->len);
    put(o, "\n");
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--columns") == 0) {
        puts(EVENTS_GEN_COLUMNS);
        return 0;
    }
    if (argc != 7) {
        fprintf(stderr, "usage: events-gen COUNT TENANTS DAYS END PART NPARTS\n"
                        "       events-gen --columns\n");
        return 2;
    }
    uint64_t count = strtoull(argv[1], NULL, 10);
    ntenants = (unsigned)strtoul(argv[2], NULL, 10);
    unsigned days = (unsigned)strtoul(argv[3], NULL, 10);
    int64_t end = strtoll(argv[4], NULL, 10);
    uint64_t part = strtoull(argv[5], NULL, 10), nparts = strtoull(argv[6], NULL, 10);
    if (count == 0 || ntenants == 0 || ntenants > MAX_TENANTS || days == 0 || end <= 0 ||
        nparts == 0 || part >= nparts) {
        fprintf(stderr, "events-gen: bad arguments\n");
        return 2;
    }
    tenant_cdf = malloc(ntenants * sizeof(*tenant_cdf));
    if (tenant_cdf == NULL)
        return 1;
    double sum = 0;
    for (unsigned i = 0; i < ntenants; i++)
        sum += pow(i + 1.0, -0.7);
    double acc = 0;
    for (unsigned i = 0; i < ntenants; i++) {
        acc += pow(i + 1.0, -0.7) / sum;
        tenant_cdf[i] = acc;
    }
    tenant_cdf[ntenants - 1] = 1.0;

    int64_t span_us = (int64_t)days * 86400 * 1000000, start_us = end * 1000000 - span_us;
    struct out o = {.cap = OUT_FLUSH + 4 * JSON_MAX}, json = {.cap = JSON_MAX};
    o.buf = malloc(o.cap);
    json.buf = malloc(json.cap);
    if (o.buf == NULL || json.buf == NULL)
        return 1;
    for (uint64_t n = part; n < count; n += nparts) {
        write_row(&o, &json, n, count, start_us, span_us);
        if (o.len >= OUT_FLUSH) {
            if (fwrite(o.buf, 1, o.len, stdout) != o.len) {
                perror("events-gen: write");
                return 1;
            }
            o.len = 0;
        }
    }
    if (fwrite(o.buf, 1, o.len, stdout) != o.len || fflush(stdout) != 0) {
        perror("events-gen: write");
        return 1;
    }
    return 0;
}
