/*
 * base64url.h - RFC 4648 §5 base64url without padding, for API keys and
 * cursors: text that survives URLs and headers unescaped.
 */
#ifndef HB_BASE64URL_H
#define HB_BASE64URL_H

#include <stddef.h>
#include <stdint.h>

/* Characters base64url_encode writes for n bytes, without the NUL. */
#define BASE64URL_LEN(n) (((n)*4 + 2) / 3)

/* Writes BASE64URL_LEN(n) characters and a NUL into out. */
void base64url_encode(char *out, const uint8_t *in, size_t n);

/* Decodes in[0..len) into out (room for len * 3 / 4 bytes); returns the
 * number of bytes, or -1 for a character outside the alphabet, padding, a
 * length no encoding produces, or stray bits in the last character. */
long base64url_decode(uint8_t *out, const char *in, size_t len);

#endif
