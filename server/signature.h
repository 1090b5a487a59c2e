/*
 * signature.h - Meta's X-Hub-Signature-256: "sha256=" and the hex of
 * HMAC-SHA256(app secret, raw body bytes).
 *
 * The body is verified exactly as received, never re-serialised: Meta escapes
 * non-ASCII as \uXXXX and '/' as '\/', and any reformatting would change the
 * digest. The comparison takes the same time whatever the digests hold.
 */
#ifndef HB_SIGNATURE_H
#define HB_SIGNATURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SIGNATURE_LEN 32

/* Parses a header value "sha256=<64 hex>" (hex of either case, surrounding
 * spaces ignored) into digest. 0 or HB_EINVAL. */
int signature_parse(const char *value, size_t len, uint8_t digest[SIGNATURE_LEN]);

/* true when digest equals HMAC-SHA256(secret, body), compared in constant time. */
bool signature_matches(const uint8_t digest[SIGNATURE_LEN], const void *secret, size_t secret_len,
                       const void *body, size_t body_len);

/* Writes "sha256=<64 lowercase hex>" and a NUL into out (72 bytes). */
void signature_format(const uint8_t digest[SIGNATURE_LEN], char out[72]);

/* Computes HMAC-SHA256(secret, body). */
void signature_compute(const void *secret, size_t secret_len, const void *body, size_t body_len,
                       uint8_t digest[SIGNATURE_LEN]);

#endif
