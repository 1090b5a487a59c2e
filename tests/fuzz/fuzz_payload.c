/*
 * fuzz_payload.c - libFuzzer target for the body of every webhook delivery.
 *
 * Runs payload_split() on the input, then json_parse() and the readers, and
 * checks the properties the rest of hubbub relies on rather than just the
 * absence of crashes: every event's JSON parses again and holds nothing
 * jsonb refuses; a sanitised copy is the raw text whenever nothing needed
 * sanitising; the canonical form parses and is its own canonical form; and
 * decoded strings survive a round trip through the writer.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/json.h"
#include "lib/buf.h"
#include "lib/hb.h"
#include "server/payload.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Parses text with the depth the document it came from was allowed. */
static void parse_ok(struct json_doc *doc, const char *text, size_t len)
{
    const char *why = NULL;
    int rc = json_parse(doc, text, len, JSON_DEFAULT_MAX_DEPTH, &why);
    if (rc != 0)
        fprintf(stderr, "re-parse refused (%s): %.*s\n", why, (int)len, text);
    CHECK(rc == 0);
}

static void check_payload(const char *text, size_t len)
{
    struct payload p;
    const char *why = NULL;
    int rc = payload_split(text, len, NULL, &p, &why);
    if (rc != 0) {
        CHECK(rc == HB_EINVAL && why != NULL && p.events == NULL && p.object == NULL);
        return;
    }
    CHECK(p.object != NULL && strlen(p.object) >= 1 && strlen(p.object) <= PAYLOAD_NAME_MAX);
    for (size_t k = 0; k < p.nevents; k++) {
        const struct payload_event *ev = &p.events[k];
        CHECK(ev->field != NULL && strlen(ev->field) >= 1 && strlen(ev->field) <= PAYLOAD_NAME_MAX);
        CHECK(ev->entry_id == NULL ||
              (strlen(ev->entry_id) >= 1 && strlen(ev->entry_id) <= PAYLOAD_ENTRY_ID_MAX));
        CHECK(ev->json != NULL && ev->json[ev->json_len] == '\0');
        struct json_doc doc;
        parse_ok(&doc, ev->json, ev->json_len);
        CHECK(!doc.has_unsafe_escapes);
        json_doc_dispose(&doc);
    }
    payload_dispose(&p);
}

static void check_canonical(const struct json_doc *doc)
{
    struct buf c, again;
    buf_init(&c);
    buf_init(&again);
    json_canonical(doc, 0, &c);
    struct json_doc cdoc;
    parse_ok(&cdoc, c.data, c.len);
    CHECK(cdoc.ntoks == doc->ntoks);
    json_canonical(&cdoc, 0, &again);
    CHECK(again.len == c.len && memcmp(again.data, c.data, c.len) == 0);
    json_doc_dispose(&cdoc);
    buf_dispose(&c);
    buf_dispose(&again);
}

static void check_sanitized(const struct json_doc *doc)
{
    struct buf s;
    buf_init(&s);
    json_copy_sanitized(doc, 0, &s);
    const char *raw;
    size_t n;
    json_raw(doc, 0, &raw, &n);
    if (!doc->has_unsafe_escapes)
        CHECK(s.len == n && memcmp(s.data, raw, n) == 0);
    struct json_doc sdoc;
    parse_ok(&sdoc, s.data, s.len);
    CHECK(!sdoc.has_unsafe_escapes);
    CHECK(sdoc.ntoks == doc->ntoks);
    json_doc_dispose(&sdoc);
    buf_dispose(&s);
}

/* Every string decodes to UTF-8 without NUL that the writer quotes back into
 * a string decoding to the same bytes. */
static void check_strings(const struct json_doc *doc)
{
    struct buf dec, quoted, again;
    buf_init(&dec);
    buf_init(&quoted);
    buf_init(&again);
    for (int i = 0; i < doc->ntoks; i++) {
        if (!json_is_string(doc, i))
            continue;
        buf_reset(&dec);
        buf_reset(&quoted);
        buf_reset(&again);
        json_string_decode(doc, i, &dec);
        CHECK(memchr(dec.data, '\0', dec.len) == NULL);
        json_write_string(&quoted, dec.data, dec.len);
        struct json_doc qdoc;
        parse_ok(&qdoc, quoted.data, quoted.len);
        CHECK(qdoc.ntoks == 1 && !qdoc.has_unsafe_escapes);
        json_string_decode(&qdoc, 0, &again);
        CHECK(again.len == dec.len && memcmp(again.data, dec.data, dec.len) == 0);
        json_doc_dispose(&qdoc);
    }
    buf_dispose(&dec);
    buf_dispose(&quoted);
    buf_dispose(&again);
}

/* json_next agrees with the token ranges, and json_get finds each key. */
static void check_walk(const struct json_doc *doc)
{
    for (int i = 0; i < doc->ntoks; i++) {
        int next = json_next(doc, i);
        CHECK(next > i && next <= doc->ntoks);
        for (int j = i + 1; j < next; j++)
            CHECK(doc->toks[j].start < doc->toks[i].end || doc->toks[i].type == JSON_STRING);
        if (next < doc->ntoks && doc->toks[i].type != JSON_STRING)
            CHECK(doc->toks[next].start >= doc->toks[i].end);
    }
    if (!json_is_object(doc, 0))
        return;
    struct buf key;
    buf_init(&key);
    for (int n = 0; n < doc->toks[0].size; n++) {
        int v = json_child(doc, 0, n);
        CHECK(v > 0);
        buf_reset(&key);
        json_string_decode(doc, v - 1, &key);
        /* The last duplicate wins, so the value found is this one or later. */
        int got = json_get(doc, 0, key.data);
        CHECK(got >= v);
    }
    buf_dispose(&key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    check_payload(text, size);

    struct json_doc doc;
    const char *why = NULL;
    if (json_parse(&doc, text, size, JSON_DEFAULT_MAX_DEPTH, &why) != 0) {
        CHECK(why != NULL);
        return 0;
    }
    CHECK(doc.ntoks >= 1);
    check_canonical(&doc);
    check_sanitized(&doc);
    check_strings(&doc);
    check_walk(&doc);
    json_doc_dispose(&doc);
    return 0;
}
