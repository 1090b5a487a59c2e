/*
 * payload.c - splits a Meta webhook delivery into events; see payload.h.
 *
 * One json_parse() of the body, then one walk over entry[] in document order.
 * Each item list of an entry (changes, messaging, standby, changed_fields) is
 * a row of a table that says how to name an item's field and which JSON the
 * event keeps, so the walk itself has no per-list cases. An event's JSON is
 * the item's own source text, byte for byte, unless the body holds escapes
 * jsonb refuses; its key hashes the canonical text, which one scratch buffer,
 * reused for every event of the delivery, holds. The names and ids read from
 * the body are decoded into two more reused buffers and copied into the
 * event only once it is certain to be kept.
 */
#include "server/payload.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "api/json.h"
#include "lib/buf.h"
#include "lib/hb.h"

#define TIME_SECONDS_BELOW INT64_C(100000000000)
/* Times outside 1970..9999 are not a notification's time: stored as none. */
#define TIME_MS_MAX INT64_C(253402300799999)

/* A changed_fields event is larger than the name it comes from (it repeats
 * the entry's id and time), so events can outgrow their body. This bounds
 * what one delivery may ask for: the events may hold this many times the
 * body's size (plus some slack for small bodies) before the delivery counts
 * as holding too many items. */
#define EXPANSION_MAX 32
#define EXPANSION_SLACK ((size_t)1 << 20)

struct splitter {
    const struct json_doc *doc;
    struct payload *out;
    size_t cap; /* events allocated */
    size_t max_events;
    size_t json_budget;   /* bytes of event JSON still allowed */
    struct buf canon;     /* hash input: entry id, field, canonical JSON */
    struct buf name;      /* decoded field name of the current item */
    struct buf id;        /* decoded id of the current entry */
    const char *entry_id; /* id.data, or NULL when the entry has no usable id */
    bool has_time;
    int64_t time_ms;
};

int64_t payload_time_ms(int64_t t)
{
    if (t >= TIME_SECONDS_BELOW)
        return t;
    if (t < INT64_MIN / 1000)
        return INT64_MIN;
    return t * 1000;
}

/* ---- naming fields ---- */

/* The decoded string at tok when it can serve as a field name (1 to
 * PAYLOAD_NAME_MAX bytes, no control characters: it is indexed and shown in
 * logs), else NULL. */
static const char *valid_name(struct splitter *s, int tok)
{
    if (!json_is_string(s->doc, tok))
        return NULL;
    buf_reset(&s->name);
    json_string_decode(s->doc, tok, &s->name);
    if (s->name.len == 0 || s->name.len > PAYLOAD_NAME_MAX)
        return NULL;
    for (size_t k = 0; k < s->name.len; k++) {
        unsigned char c = (unsigned char)s->name.data[k];
        if (c < 0x20 || c == 0x7F)
            return NULL;
    }
    return s->name.data;
}

static const char *or_unknown(const char *field)
{
    return field != NULL ? field : "unknown";
}

static const char *field_of_change(struct splitter *s, int item)
{
    return or_unknown(valid_name(s, json_get(s->doc, item, "field")));
}

/* PROTOCOL.md section 2: the key a messaging item carries names its field.
 * Checked in this order; "message" comes first as by far the most common. */
static const struct {
    const char *key;
    const char *field;
} MESSAGING_FIELDS[] = {
    {"message", "messages"},
    {"reaction", "message_reactions"},
    {"postback", "messaging_postbacks"},
    {"read", "messaging_seen"},
    {"referral", "messaging_referral"},
    {"optin", "messaging_optins"},
    {"pass_thread_control", "messaging_handover"},
    {"take_thread_control", "messaging_handover"},
    {"request_thread_control", "messaging_handover"},
    {"policy_enforcement", "messaging_policy_enforcement"},
    {"response_feedback", "response_feedback"},
    {"message_edit", "message_edit"},
};

static bool is_echo(const struct json_doc *doc, int message)
{
    const char *raw;
    size_t n;
    json_raw(doc, json_get(doc, message, "is_echo"), &raw, &n);
    return n == 4 && memcmp(raw, "true", 4) == 0;
}

static const char *field_of_messaging(struct splitter *s, int item)
{
    for (size_t k = 0; k < HB_ARRAY_SIZE(MESSAGING_FIELDS); k++) {
        int v = json_get(s->doc, item, MESSAGING_FIELDS[k].key);
        if (v < 0)
            continue;
        if (k == 0 && is_echo(s->doc, v))
            return "message_echoes";
        return MESSAGING_FIELDS[k].field;
    }
    return "unknown";
}

static const char *field_of_standby(struct splitter *s, int item)
{
    (void)s;
    (void)item;
    return "standby";
}

static const char *field_of_name(struct splitter *s, int item)
{
    return or_unknown(valid_name(s, item));
}

/* The item lists of an entry, in the order their events are emitted. */
static const struct {
    const char *key;
    const char *(*field)(struct splitter *s, int item);
    bool is_name; /* changed_fields: items are bare field names */
} ITEM_LISTS[] = {
    {"changes", field_of_change, false},
    {"messaging", field_of_messaging, false},
    {"standby", field_of_standby, false},
    {"changed_fields", field_of_name, true},
};

/* ---- events ---- */

/* The key's input is the entry id, the field and the event's canonical JSON;
 * key_begin writes the first two into the scratch buffer. */
static void key_begin(struct splitter *s, const char *field)
{
    buf_reset(&s->canon);
    if (s->entry_id != NULL)
        buf_puts(&s->canon, s->entry_id);
    buf_putc(&s->canon, '\0');
    buf_puts(&s->canon, field);
    buf_putc(&s->canon, '\0');
}

static void key_finish(struct splitter *s, uint8_t key[PAYLOAD_KEY_LEN])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)s->canon.data, s->canon.len, md);
    memcpy(key, md, PAYLOAD_KEY_LEN);
}

/* Makes room for one more event of n JSON bytes; NULL when the delivery
 * would exceed its limits. */
static struct payload_event *new_event(struct splitter *s, size_t n, const char **why)
{
    struct payload *p = s->out;
    if (p->nevents == s->max_events || n > s->json_budget) {
        *why = "delivery holds too many items";
        return NULL;
    }
    s->json_budget -= n;
    if (p->nevents == s->cap) {
        s->cap = s->cap == 0 ? 4 : s->cap * 2;
        p->events = xrealloc(p->events, s->cap * sizeof *p->events);
    }
    struct payload_event *ev = &p->events[p->nevents];
    memset(ev, 0, sizeof(*ev));
    return ev;
}

static void fill_event(struct splitter *s, struct payload_event *ev, const char *field,
                       struct buf *json)
{
    ev->json_len = json->len;
    ev->json = buf_steal(json);
    ev->field = xstrdup(field);
    ev->entry_id = s->entry_id != NULL ? xstrdup(s->entry_id) : NULL;
    ev->has_entry_time = s->has_time;
    ev->entry_time_ms = s->time_ms;
    s->out->nevents++;
}

/* Appends the event for the JSON at tok. */
static int add_event(struct splitter *s, const char *field, int tok, const char **why)
{
    const char *raw;
    size_t n;
    json_raw(s->doc, tok, &raw, &n);
    struct payload_event *ev = new_event(s, n, why);
    if (ev == NULL)
        return HB_EINVAL;
    struct buf json;
    buf_init(&json);
    json_copy_sanitized(s->doc, tok, &json);
    key_begin(s, field);
    json_canonical(s->doc, tok, &s->canon);
    key_finish(s, ev->dedup_key);
    fill_event(s, ev, field, &json);
    return 0;
}

static void append_or_null(struct splitter *s, int tok, struct buf *out)
{
    if (tok < 0)
        buf_puts(out, "null");
    else
        json_copy_sanitized(s->doc, tok, out);
}

/* A changed_fields name carries no value, so its event is the entry reduced
 * to that one name: {"changed_fields":[name],"id":..,"time":..}. Keeping the
 * whole entry instead would copy an entry naming n fields n times. The keys
 * are written sorted and without spaces, so the text is its own canonical
 * form and the time keeps two notifications of one field apart. */
static int add_changed_field(struct splitter *s, const char *field, int entry, int name,
                             const char **why)
{
    const struct json_doc *doc = s->doc;
    int id = json_get(doc, entry, "id"), time = json_get(doc, entry, "time");
    struct buf json;
    buf_init(&json);
    buf_puts(&json, "{\"changed_fields\":[");
    json_copy_sanitized(doc, name, &json);
    buf_puts(&json, "],\"id\":");
    append_or_null(s, id, &json);
    buf_puts(&json, ",\"time\":");
    append_or_null(s, time, &json);
    buf_putc(&json, '}');
    struct payload_event *ev = new_event(s, json.len, why);
    if (ev == NULL) {
        buf_dispose(&json);
        return HB_EINVAL;
    }
    key_begin(s, field);
    buf_append(&s->canon, json.data, json.len);
    key_finish(s, ev->dedup_key);
    fill_event(s, ev, field, &json);
    return 0;
}

/* ---- entries ---- */

/* A number token without fraction or exponent, of any length. */
static bool is_integer(const struct json_doc *doc, int tok)
{
    const char *raw;
    size_t n;
    if (json_is_string(doc, tok) || json_is_object(doc, tok) || json_is_array(doc, tok))
        return false;
    json_raw(doc, tok, &raw, &n);
    if (n > 0 && raw[0] == '-') {
        raw++;
        n--;
    }
    if (n == 0)
        return false;
    for (size_t k = 0; k < n; k++)
        if (raw[k] < '0' || raw[k] > '9')
            return false;
    return true;
}

static void read_entry_meta(struct splitter *s, int entry)
{
    const struct json_doc *doc = s->doc;
    s->entry_id = NULL;
    s->has_time = false;
    s->time_ms = 0;
    if (!json_is_object(doc, entry))
        return;
    int id = json_get(doc, entry, "id");
    if (json_is_string(doc, id) || is_integer(doc, id)) {
        buf_reset(&s->id);
        json_string_decode(doc, id, &s->id);
        if (s->id.len >= 1 && s->id.len <= PAYLOAD_ENTRY_ID_MAX)
            s->entry_id = s->id.data;
    }
    int64_t t;
    if (json_int64(doc, json_get(doc, entry, "time"), &t)) {
        s->time_ms = payload_time_ms(t);
        s->has_time = s->time_ms >= 0 && s->time_ms <= TIME_MS_MAX;
        if (!s->has_time)
            s->time_ms = 0;
    }
}

static int split_entry(struct splitter *s, int entry, const char **why)
{
    const struct json_doc *doc = s->doc;
    size_t before = s->out->nevents;
    read_entry_meta(s, entry);
    for (size_t l = 0; json_is_object(doc, entry) && l < HB_ARRAY_SIZE(ITEM_LISTS); l++) {
        int list = json_get(doc, entry, ITEM_LISTS[l].key);
        if (!json_is_array(doc, list))
            continue;
        int item = list + 1;
        for (int k = 0; k < doc->toks[list].size; k++, item = json_next(doc, item)) {
            const char *field = ITEM_LISTS[l].field(s, item);
            int rc = ITEM_LISTS[l].is_name ? add_changed_field(s, field, entry, item, why)
                                           : add_event(s, field, item, why);
            if (rc != 0)
                return rc;
        }
    }
    /* Nothing is dropped: an entry we could not split is kept whole. */
    if (s->out->nevents == before)
        return add_event(s, "unknown", entry, why);
    return 0;
}

/* ---- the delivery ---- */

static int read_object(const struct json_doc *doc, char **object, const char **why)
{
    int tok = json_get(doc, 0, "object");
    if (!json_is_string(doc, tok)) {
        *why = "\"object\" must be a non-empty string";
        return HB_EINVAL;
    }
    struct buf b;
    buf_init(&b);
    json_string_decode(doc, tok, &b);
    if (b.len == 0 || b.len > PAYLOAD_NAME_MAX) {
        *why = b.len == 0 ? "\"object\" must be a non-empty string" : "\"object\" is too long";
        buf_dispose(&b);
        return HB_EINVAL;
    }
    *object = buf_steal(&b);
    return 0;
}

/* The envelope of a parsed body, then its entries in order. */
static int split_body(struct splitter *s, const char **why)
{
    const struct json_doc *doc = s->doc;
    if (!json_is_object(doc, 0)) {
        *why = "the body must be a JSON object";
        return HB_EINVAL;
    }
    int rc = read_object(doc, &s->out->object, why);
    if (rc != 0)
        return rc;
    int entries = json_get(doc, 0, "entry");
    if (!json_is_array(doc, entries)) {
        *why = "\"entry\" must be an array";
        return HB_EINVAL;
    }
    int entry = entries + 1;
    for (int k = 0; k < doc->toks[entries].size && rc == 0; k++) {
        rc = split_entry(s, entry, why);
        entry = json_next(doc, entry);
    }
    return rc;
}

int payload_split(const char *body, size_t len, const struct payload_limits *lim,
                  struct payload *out, const char **why)
{
    const char *ignored;
    struct json_doc doc;
    struct payload p = {0};
    struct splitter s = {.doc = &doc, .out = &p, .max_events = PAYLOAD_DEFAULT_MAX_EVENTS};
    int max_depth = JSON_DEFAULT_MAX_DEPTH;
    if (why == NULL)
        why = &ignored;
    if (lim != NULL && lim->max_depth > 0)
        max_depth = lim->max_depth;
    if (lim != NULL && lim->max_events > 0)
        s.max_events = lim->max_events;
    s.json_budget = len <= (SIZE_MAX - EXPANSION_SLACK) / EXPANSION_MAX
                        ? len * EXPANSION_MAX + EXPANSION_SLACK
                        : SIZE_MAX;
    memset(out, 0, sizeof *out);
    buf_init(&s.canon);
    buf_init(&s.name);
    buf_init(&s.id);

    int rc = json_parse(&doc, body, len, max_depth, why);
    if (rc == 0)
        rc = split_body(&s, why);
    if (rc == 0)
        *out = p;
    else
        payload_dispose(&p);
    buf_dispose(&s.canon);
    buf_dispose(&s.name);
    buf_dispose(&s.id);
    json_doc_dispose(&doc);
    return rc;
}

void payload_dispose(struct payload *p)
{
    if (p == NULL)
        return;
    for (size_t k = 0; k < p->nevents; k++) {
        free(p->events[k].field);
        free(p->events[k].entry_id);
        free(p->events[k].json);
    }
    free(p->events);
    free(p->object);
    memset(p, 0, sizeof *p);
}
