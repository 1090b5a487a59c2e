/*
 * sim_payload.h - deliveries that look like Meta's, for `hubbub sim send`.
 *
 * One function builds the body of one delivery for one webhook field, in the
 * shape PROTOCOL.md gives: a messaging[] or standby[] item for the messaging
 * fields (entry.time in milliseconds), a changes[] item for the others
 * (entry.time in seconds). Text is written the way Meta writes it: compact,
 * every non-ASCII character as a lowercase \uXXXX escape (UTF-16 surrogate
 * pairs for emoji) and '/' as '\/', so a receiver that re-serialises the body
 * before checking the signature fails here as it would with Meta.
 *
 * Every id and mid is derived from (nonce, seq), every timestamp from now_ms:
 * deliveries with different seq and now_ms never share an item, so none is
 * deduplicated (a policy_enforcement item carries no id at all: only its
 * timestamp tells it apart), while the same (nonce, seq, now_ms) gives
 * byte-identical bodies when duplicates are wanted. Pure functions: any
 * thread may call them.
 */
#ifndef HB_SIM_PAYLOAD_H
#define HB_SIM_PAYLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

#define SIM_PAYLOAD_SIG256_LEN 72 /* "sha256=" + 64 hex + NUL */
#define SIM_PAYLOAD_SIG1_LEN 46   /* "sha1=" + 40 hex + NUL */

struct sim_payload_params {
    const char *object;   /* the envelope's "object": "instagram" or "page" */
    const char *entry_id; /* entry.id: the Instagram account (or Page) id */
    uint64_t nonce;       /* distinguishes runs */
    uint64_t seq;         /* distinguishes deliveries of one run */
    int64_t now_ms;       /* Unix time in milliseconds the delivery claims */
};

/* The fields PROTOCOL.md lists for the instagram object, in a fixed order;
 * *count gets their number. The array is static. */
const char *const *sim_payload_fields(size_t *count);

/* Whether sim_payload_build knows field: one of sim_payload_fields(), or
 * "feed" (a Page's feed change, with object "page"). */
bool sim_payload_knows(const char *field);

/* Appends the body of one delivery of field to out. 0, or HB_EINVAL for a
 * field sim_payload_knows() does not know (out is then unchanged). */
int sim_payload_build(struct buf *out, const char *field, const struct sim_payload_params *p);

/* Appends s[0..n) (UTF-8) to out as a JSON string with its quotes, escaped
 * as Meta escapes: non-ASCII as \uXXXX (lowercase hex, surrogate pairs
 * above U+FFFF), '/' as '\/', controls as \n, \t, ... or \u00XX. A byte
 * sequence that is not UTF-8 becomes \ufffd. */
void sim_payload_escape(struct buf *out, const char *s, size_t n);

/* The two headers Meta signs a delivery with: "sha256=<hex HMAC-SHA256>" and
 * the legacy "sha1=<hex HMAC-SHA1>" of the raw body, keyed by the app secret. */
void sim_payload_sign(const char *secret, const void *body, size_t len,
                      char sig256[SIM_PAYLOAD_SIG256_LEN], char sig1[SIM_PAYLOAD_SIG1_LEN]);

#endif
