/*
 * payload.h - splits a Meta webhook delivery into events.
 *
 * A delivery is {"object": "...", "entry": [ ... ]}; each entry carries
 * changes[], messaging[] or standby[] items, or changed_fields[] when the app
 * does not ask for values. Every item becomes one event, classified by field
 * (PROTOCOL.md section 2). Nothing is dropped: an item or entry of a shape we
 * do not know becomes an event of field "unknown" (or of the field it names).
 *
 * Each event carries a deduplication key: the first 16 bytes of SHA-256 over
 * the entry id, the field and the canonical form of the item (json_canonical:
 * spacing and key order do not matter). Meta may re-batch a retried item into
 * another delivery, so the key never depends on the delivery; a reaction, an
 * unreaction and a second reaction differ in their bytes (timestamps), so
 * they stay three events even though they share a mid. A changed_fields name
 * has no item of its own: its event is {"changed_fields":[name],"id":..,
 * "time":..}, keyed likewise.
 *
 * Everything a payload holds is owned by it and is plain C data, so it can be
 * handed to another thread.
 */
#ifndef HB_PAYLOAD_H
#define HB_PAYLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PAYLOAD_KEY_LEN 16
#define PAYLOAD_NAME_MAX 64      /* longest object or field name we index */
#define PAYLOAD_ENTRY_ID_MAX 128 /* longest entry id we index */
#define PAYLOAD_DEFAULT_MAX_EVENTS 100000

struct payload_event {
    char *field;    /* never NULL: the field, or "unknown" */
    char *entry_id; /* NULL when the entry has no usable id */
    bool has_entry_time;
    int64_t entry_time_ms; /* entry.time in milliseconds (see payload_time_ms); times
                              outside 1970-9999 count as none */
    char *json;            /* the item as JSON text PostgreSQL's jsonb accepts */
    size_t json_len;
    uint8_t dedup_key[PAYLOAD_KEY_LEN];
};

struct payload {
    char *object; /* the envelope's "object", e.g. "instagram" */
    struct payload_event *events;
    size_t nevents;
};

struct payload_limits {
    int max_depth;     /* JSON nesting */
    size_t max_events; /* items in one delivery */
};

/* Parses body[0..len) and splits it. Returns 0 with *out filled (free with
 * payload_dispose), or HB_EINVAL when the body is not a JSON object with a
 * string "object" and an array "entry" (or is not JSON at all), or when it
 * holds more than max_events items; *why then names the problem in a short
 * static sentence fit for an API error message. */
int payload_split(const char *body, size_t len, const struct payload_limits *lim,
                  struct payload *out, const char **why);
void payload_dispose(struct payload *p);

/* Meta sends entry.time in seconds for changes and in milliseconds for
 * messaging; the magnitude tells them apart. Values below 1e11 are seconds
 * (1e11 s is the year 5138, 1e11 ms is 1973) and are scaled to milliseconds. */
int64_t payload_time_ms(int64_t t);

#endif
