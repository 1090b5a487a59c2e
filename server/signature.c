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
#include "lib/hex.h"

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
    return hex_decode(digest, value + plen, SIGNATURE_LEN);
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
    memcpy(out, "sha256=", 7);
    hex_encode(out + 7, digest, SIGNATURE_LEN);
}
