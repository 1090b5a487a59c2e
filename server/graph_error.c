/*
 * graph_error.c - see graph_error.h.
 *
 * Meta's answers and headers are read with the strict reader of api/json.h:
 * a body or header that is not JSON is simply "no error object" or "no
 * usage", never a crash, and numbers are taken only when they are integers
 * that fit int64_t. Everything that can grow from input is cut to a fixed
 * size before it is kept.
 */
#include "server/graph_error.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "api/json.h"
#include "lib/hb.h"

#define MS_PER_MINUTE 60000

/* The length of s[0..n) cut to at most max bytes without splitting a UTF-8
 * sequence (continuation bytes are 10xxxxxx). */
static size_t utf8_cut(const char *s, size_t n, size_t max)
{
    if (n <= max)
        return n;
    size_t cut = max;
    while (cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80)
        cut--;
    return cut;
}

/* Copies string token i, unescaped, into dst[0..cap] (cap bytes + NUL). */
static void copy_string(const struct json_doc *doc, int i, char *dst, size_t cap)
{
    dst[0] = '\0';
    if (!json_is_string(doc, i))
        return;
    struct buf tmp;
    buf_init(&tmp);
    json_string_decode(doc, i, &tmp);
    if (tmp.len > 0) {
        size_t n = utf8_cut(tmp.data, tmp.len, cap);
        memcpy(dst, tmp.data, n);
        dst[n] = '\0';
    }
    buf_dispose(&tmp);
}

static int64_t get_int(const struct json_doc *doc, int obj, const char *key)
{
    int64_t v = 0;
    int i = json_get(doc, obj, key);
    if (i < 0 || !json_int64(doc, i, &v))
        return 0;
    return v;
}

bool graph_error_parse(const char *body, size_t len, struct graph_error *e)
{
    struct json_doc doc;
    const char *why = NULL;
    bool is_found = false;

    memset(e, 0, sizeof(*e));
    if (body == NULL || json_parse(&doc, body, len, JSON_DEFAULT_MAX_DEPTH, &why) != 0)
        return false;
    int err = json_get(&doc, 0, "error");
    if (!json_is_object(&doc, err))
        goto out;
    is_found = true;
    e->code = get_int(&doc, err, "code");
    e->subcode = get_int(&doc, err, "error_subcode");
    int t = json_get(&doc, err, "is_transient");
    if (t >= 0 && doc.toks[t].type == JSON_PRIMITIVE) {
        const char *p = doc.text + doc.toks[t].start;
        e->is_transient = doc.toks[t].end - doc.toks[t].start == 4 && memcmp(p, "true", 4) == 0;
    }
    copy_string(&doc, json_get(&doc, err, "type"), e->type, GRAPH_ERROR_TYPE_MAX);
    copy_string(&doc, json_get(&doc, err, "message"), e->message, GRAPH_ERROR_MESSAGE_MAX);
    copy_string(&doc, json_get(&doc, err, "fbtrace_id"), e->fbtrace_id, GRAPH_ERROR_TRACE_MAX);
out:
    json_doc_dispose(&doc);
    return is_found;
}

static bool is_account_rate_limit(int64_t code)
{
    return code == 17 || code == 32 || code == 613 || (code >= 80001 && code <= 80014);
}

static enum graph_class classify_error(int http_status, const struct graph_error *e)
{
    int64_t code = e->code;

    if (code == 190 || code == 102 || e->subcode == 463 || e->subcode == 467)
        return GRAPH_TOKEN_INVALID;
    if (code == 368)
        return GRAPH_POLICY_BLOCK;
    if (code == 4)
        return GRAPH_APP_RATE_LIMIT;
    if (is_account_rate_limit(code))
        return GRAPH_ACCOUNT_RATE_LIMIT;
    if (code == 1 || code == 2 || code == 341 || code == 1200)
        return GRAPH_TEMPORARY;
    if (e->is_transient)
        return GRAPH_TEMPORARY;
    if (code == 10 || code == 100 || (code >= 200 && code <= 299) || code == 551)
        return GRAPH_PERMANENT;
    return http_status >= 500 && http_status <= 599 ? GRAPH_TEMPORARY : GRAPH_PERMANENT;
}

enum graph_class graph_classify(int http_status, bool is_timeout, const struct graph_error *e)
{
    if (is_timeout || http_status <= 0)
        return GRAPH_TEMPORARY;
    if (e != NULL)
        return classify_error(http_status, e);
    if (http_status >= 200 && http_status <= 299)
        return GRAPH_OK;
    if ((http_status >= 500 && http_status <= 599) || http_status == 408 || http_status == 429)
        return GRAPH_TEMPORARY;
    return GRAPH_PERMANENT;
}

const char *graph_class_name(enum graph_class c)
{
    switch (c) {
    case GRAPH_OK:
        return "ok";
    case GRAPH_TEMPORARY:
        return "temporary";
    case GRAPH_APP_RATE_LIMIT:
        return "app_rate_limited";
    case GRAPH_ACCOUNT_RATE_LIMIT:
        return "rate_limited";
    case GRAPH_POLICY_BLOCK:
        return "policy_blocked";
    case GRAPH_TOKEN_INVALID:
        return "token_invalid";
    case GRAPH_PERMANENT:
        return "permanent";
    }
    return "unknown";
}

/* ---- usage headers ---- */

struct usage {
    int64_t max_eta_minutes; /* 0: none given */
    int64_t max_percent;     /* -1: none given */
};

static void scan_usage_object(const struct json_doc *doc, int obj, struct usage *u)
{
    static const char *const percents[] = {"call_count", "total_cputime", "total_time"};
    int64_t v;

    if (!json_is_object(doc, obj))
        return;
    for (size_t k = 0; k < HB_ARRAY_SIZE(percents); k++) {
        int i = json_get(doc, obj, percents[k]);
        if (i >= 0 && json_int64(doc, i, &v) && v > u->max_percent)
            u->max_percent = v;
    }
    int i = json_get(doc, obj, "estimated_time_to_regain_access");
    if (i >= 0 && json_int64(doc, i, &v) && v > u->max_eta_minutes)
        u->max_eta_minutes = v;
}

/* X-Business-Use-Case-Usage: an object of arrays of usage objects. A bare
 * usage object as a member value is read too. */
static void scan_buc(const char *header, struct usage *u)
{
    struct json_doc doc;
    const char *why = NULL;

    if (header == NULL || json_parse(&doc, header, strlen(header), 8, &why) != 0)
        return;
    if (json_is_object(&doc, 0)) {
        int key = 1;
        for (int m = 0; m < doc.toks[0].size; m++) {
            int val = key + 1;
            if (json_is_array(&doc, val)) {
                int el = val + 1;
                for (int k = 0; k < doc.toks[val].size; k++) {
                    scan_usage_object(&doc, el, u);
                    el = json_next(&doc, el);
                }
            } else {
                scan_usage_object(&doc, val, u);
            }
            key = json_next(&doc, key);
        }
    }
    json_doc_dispose(&doc);
}

static void scan_app(const char *header, struct usage *u)
{
    struct json_doc doc;
    const char *why = NULL;

    if (header == NULL || json_parse(&doc, header, strlen(header), 8, &why) != 0)
        return;
    scan_usage_object(&doc, 0, u);
    json_doc_dispose(&doc);
}

static void scan_usage(const char *buc_header, const char *app_usage_header, struct usage *u)
{
    u->max_eta_minutes = 0;
    u->max_percent = -1;
    scan_buc(buc_header, u);
    scan_app(app_usage_header, u);
}

int64_t graph_usage_pause_ms(const char *buc_header, const char *app_usage_header,
                             int64_t default_ms, int64_t max_ms)
{
    struct usage u;
    int64_t ms;

    if (default_ms < 0)
        default_ms = 0;
    if (max_ms < 0)
        max_ms = 0;
    scan_usage(buc_header, app_usage_header, &u);
    if (u.max_eta_minutes <= 0)
        ms = default_ms;
    else if (u.max_eta_minutes >= max_ms / MS_PER_MINUTE + 1)
        ms = max_ms; /* also keeps the multiplication from overflowing */
    else
        ms = u.max_eta_minutes * MS_PER_MINUTE;
    return ms < max_ms ? ms : max_ms;
}

int64_t graph_usage_percent(const char *buc_header, const char *app_usage_header)
{
    struct usage u;
    scan_usage(buc_header, app_usage_header, &u);
    return u.max_percent;
}

/* ---- backoff ---- */

int64_t graph_backoff_ms(int attempt, int64_t base_ms, int64_t cap_ms, uint64_t random)
{
    if (cap_ms < 1)
        cap_ms = 1;
    if (base_ms < 1)
        base_ms = 1;
    if (base_ms > cap_ms)
        base_ms = cap_ms;
    if (attempt < 1)
        attempt = 1;
    /* Doubling stops at the cap, so d stays below 2 * INT64_MAX and the loop
     * runs at most 63 times whatever attempt is. */
    uint64_t cap = (uint64_t)cap_ms;
    uint64_t d = (uint64_t)base_ms;
    for (int i = 1; i < attempt && d < cap; i++)
        d *= 2;
    if (d > cap)
        d = cap;
    uint64_t fixed = d - d / 2; /* ceil(d / 2): at least 1 */
    uint64_t span = d - fixed;
    return (int64_t)(fixed + random % (span + 1));
}

/* ---- last_error JSON ---- */

static void put_string_member(struct buf *out, const char *key, const char *s)
{
    buf_printf(out, ",\"%s\":", key);
    json_write_string(out, s, utf8_cut(s, strlen(s), GRAPH_ERROR_MESSAGE_MAX));
}

void graph_error_json(struct buf *out, int http_status, enum graph_class c,
                      const struct graph_error *e, const char *transport_message)
{
    buf_puts(out, "{\"class\":");
    json_write_cstr(out, graph_class_name(c));
    if (http_status > 0)
        buf_printf(out, ",\"http_status\":%d", http_status);
    if (e != NULL && e->code != 0)
        buf_printf(out, ",\"code\":%" PRId64, e->code);
    if (e != NULL && e->subcode != 0)
        buf_printf(out, ",\"subcode\":%" PRId64, e->subcode);
    if (e != NULL && e->type[0] != '\0')
        put_string_member(out, "type", e->type);

    if (e != NULL && e->message[0] != '\0') {
        put_string_member(out, "message", e->message);
    } else if (transport_message != NULL && transport_message[0] != '\0') {
        put_string_member(out, "message", transport_message);
    } else if (c != GRAPH_OK) {
        char sentence[64];
        if (http_status > 0 && e == NULL)
            snprintf(sentence, sizeof(sentence), "HTTP %d without an error object", http_status);
        else if (http_status > 0)
            snprintf(sentence, sizeof(sentence), "HTTP %d with an error object but no message",
                     http_status);
        else
            snprintf(sentence, sizeof(sentence), "no answer from the Graph API");
        put_string_member(out, "message", sentence);
    }

    if (e != NULL && e->fbtrace_id[0] != '\0')
        put_string_member(out, "fbtrace_id", e->fbtrace_id);
    if (e != NULL && e->is_transient)
        buf_puts(out, ",\"is_transient\":true");
    buf_putc(out, '}');
}
