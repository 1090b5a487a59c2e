/*
 * json.h - strict JSON reading on top of jsmn, and the escaping writer.
 *
 * jsmn tokenises quickly but accepts much that is not JSON (missing commas,
 * bare words, raw control characters, invalid UTF-8, several top-level
 * values). Everything we parse may end up in a PostgreSQL jsonb column, and
 * one value PostgreSQL refuses would fail a whole group commit, so
 * json_parse() follows jsmn with a full RFC 8259 check of the token stream and
 * of every string and number. What it accepts, jsonb accepts, except for two
 * escapes jsonb refuses: \u0000 and unpaired UTF-16 surrogates. Those are
 * valid JSON, so the document is accepted and has_unsafe_escapes is set;
 * json_copy_sanitized() then yields text jsonb takes (each replaced by
 * \ufffd), while the raw bytes stay untouched for signature checks and
 * storage.
 *
 * Token indexes are ints as in jsmn; -1 means "absent". A document owns its
 * token array; the text is borrowed and must outlive the document.
 * Thread-safety: none needed, documents are not shared.
 */
#ifndef HB_JSON_H
#define HB_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

enum json_type {
    JSON_UNDEFINED = 0,
    JSON_OBJECT = 1,
    JSON_ARRAY = 2,
    JSON_STRING = 3,
    JSON_PRIMITIVE = 4, /* number, true, false or null */
};

/* Same layout as jsmntok_t built with JSMN_PARENT_LINKS (checked in json.c).
 * For strings, start/end exclude the quotes. size is the number of children:
 * keys for an object, elements for an array, 1 for a key string. */
struct json_tok {
    int type;
    int start;
    int end;
    int size;
    int parent;
};

#define JSON_DEFAULT_MAX_DEPTH 128

struct json_doc {
    const char *text;
    size_t len;
    struct json_tok *toks; /* owned */
    int ntoks;
    bool has_unsafe_escapes; /* some string holds \u0000 or an unpaired surrogate */
};

/* Parses and validates text[0..len). Returns 0 and fills doc, or HB_EINVAL
 * with *why set to a static, human-readable reason ("invalid UTF-8 in a
 * string", "nesting deeper than 128 levels", "unexpected text after the
 * value", ...), or HB_ETOOBIG when len exceeds INT_MAX. On error doc holds
 * nothing to dispose. */
int json_parse(struct json_doc *doc, const char *text, size_t len, int max_depth, const char **why);
void json_doc_dispose(struct json_doc *doc);

/* Index of the first token after the subtree rooted at i. */
int json_next(const struct json_doc *doc, int i);

/* Value of key in object obj, or -1. Keys are compared after unescaping;
 * with duplicate keys the last wins, as in PostgreSQL's jsonb. */
int json_get(const struct json_doc *doc, int obj, const char *key);

/* i-th child (0-based) of an array, or value of the i-th member of an object;
 * -1 when out of range. Walks siblings: use json_next() to iterate. */
int json_child(const struct json_doc *doc, int parent, int n);

bool json_is_string(const struct json_doc *doc, int i);
bool json_is_object(const struct json_doc *doc, int i);
bool json_is_array(const struct json_doc *doc, int i);

/* true and *out set when token i is an integer number (no fraction or
 * exponent) that fits int64_t, or a string holding only such digits. */
bool json_int64(const struct json_doc *doc, int i, int64_t *out);

/* Appends the unescaped UTF-8 of string token i to out. \u0000 and unpaired
 * surrogates become U+FFFD so that the result is always valid UTF-8 without
 * NUL bytes. For a primitive, appends its text. */
void json_string_decode(const struct json_doc *doc, int i, struct buf *out);

/* The exact source text of the value at i (strings with their quotes). */
void json_raw(const struct json_doc *doc, int i, const char **p, size_t *n);

/* A form of the value at i that is the same for the same data however it was
 * spaced or ordered: no whitespace outside strings, object members sorted by
 * their raw key bytes (stable for duplicate keys), strings and numbers as
 * sent. Used for deduplication keys. */
void json_canonical(const struct json_doc *doc, int i, struct buf *out);

/* The source text of the value at i with \u0000 and unpaired surrogate
 * escapes replaced by \ufffd: text PostgreSQL's jsonb accepts. */
void json_copy_sanitized(const struct json_doc *doc, int i, struct buf *out);

/* Writer: appends s[0..n) as a quoted JSON string. Control characters, '"',
 * '\\' are escaped; invalid UTF-8 sequences become U+FFFD; '/' is not. */
void json_write_string(struct buf *out, const char *s, size_t n);
void json_write_cstr(struct buf *out, const char *s);

#endif
