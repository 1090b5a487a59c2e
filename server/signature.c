/*
 * signature.c - X-Hub-Signature-256 parsing and verification; see signature.h.
 */
#include "server/signature.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/hb.h"

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int signature_parse(const char *value, size_t len, uint8_t digest[SIGNATURE_LEN])
{
    static const char prefix[] = "sha256=";
    const size_t plen = sizeof(prefix) - 1;

    while (len > 0 && (*value == ' ' || *value == '\t')) {
        value++;
        len--;
    }
    while (len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\t'))
        len--;
    if (len != plen + 2 * SIGNATURE_LEN || strncasecmp(value, prefix, plen) != 0)
        return HB_EINVAL;
    value += plen;
    for (size_t i = 0; i < SIGNATURE_LEN; i++) {
        int hi = hexval((unsigned char)value[2 * i]), lo = hexval((unsigned char)value[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return HB_EINVAL;
        digest[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

void signature_compute(const void *secret, size_t secret_len, const void *body, size_t body_len,
                       uint8_t digest[SIGNATURE_LEN])
{
    unsigned int n = SIGNATURE_LEN;
    if (HMAC(EVP_sha256(), secret, (int)secret_len, body, body_len, digest, &n) == NULL ||
        n != SIGNATURE_LEN)
        abort(); /* HMAC-SHA256 with valid arguments cannot fail */
}

bool signature_matches(const uint8_t digest[SIGNATURE_LEN], const void *secret, size_t secret_len,
                       const void *body, size_t body_len)
{
    uint8_t expected[SIGNATURE_LEN];
    signature_compute(secret, secret_len, body, body_len, expected);
    bool ok = CRYPTO_memcmp(expected, digest, SIGNATURE_LEN) == 0;
    OPENSSL_cleanse(expected, sizeof(expected));
    return ok;
}

void signature_format(const uint8_t digest[SIGNATURE_LEN], char out[72])
{
    static const char hex[] = "0123456789abcdef";
    memcpy(out, "sha256=", 7);
    for (size_t i = 0; i < SIGNATURE_LEN; i++) {
        out[7 + 2 * i] = hex[digest[i] >> 4];
        out[7 + 2 * i + 1] = hex[digest[i] & 15];
    }
    out[7 + 2 * SIGNATURE_LEN] = '\0';
}
