/*
 * secretbox.c - AES-256-GCM sealing with OpenSSL's EVP interface; see
 * secretbox.h for the format.
 */
#include "lib/secretbox.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "lib/hb.h"
#include "lib/hex.h"

#define PREFIX "hb1:"
#define NONCE_LEN 12
#define TAG_LEN 16

void secretbox_init(struct secretbox *sb)
{
    memset(sb, 0, sizeof(*sb));
}

void secretbox_dispose(struct secretbox *sb)
{
    OPENSSL_cleanse(sb, sizeof(*sb));
}

int secretbox_add_key_hex(struct secretbox *sb, const char *hex, size_t len)
{
    uint8_t key[SECRETBOX_KEY_LEN];
    if (len != 2 * SECRETBOX_KEY_LEN)
        return HB_EINVAL;
    if (hex_decode(key, hex, SECRETBOX_KEY_LEN) != 0)
        return HB_EINVAL;
    if (sb->nkeys == SECRETBOX_MAX_KEYS) {
        OPENSSL_cleanse(key, sizeof(key));
        return HB_ETOOBIG;
    }
    uint8_t digest[SHA256_DIGEST_LENGTH], input[13 + SECRETBOX_KEY_LEN];
    memcpy(input, "hubbub key id", 13);
    memcpy(input + 13, key, sizeof(key));
    SHA256(input, sizeof(input), digest);
    OPENSSL_cleanse(input, sizeof(input));
    memcpy(sb->keys[sb->nkeys].key, key, sizeof(key));
    hex_encode(sb->keys[sb->nkeys].id, digest, 4);
    sb->nkeys++;
    OPENSSL_cleanse(key, sizeof(key));
    return 0;
}

static int load_file(struct secretbox *sb, const char *path, const char **why)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        *why = "cannot read the master key file";
        return HB_EIO;
    }
    char line[256];
    int rc = 0, n = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        size_t len = strlen(line);
        while (len > 0 && isspace((unsigned char)line[len - 1]))
            len--;
        size_t start = 0;
        while (start < len && isspace((unsigned char)line[start]))
            start++;
        if (start == len || line[start] == '#')
            continue;
        if ((rc = secretbox_add_key_hex(sb, line + start, len - start)) != 0) {
            *why = "the master key file must hold keys of 64 hex characters, one per line";
            break;
        }
        n++;
    }
    OPENSSL_cleanse(line, sizeof(line));
    fclose(f);
    if (rc == 0 && n == 0) {
        *why = "the master key file holds no key";
        rc = HB_EINVAL;
    }
    return rc;
}

int secretbox_load(struct secretbox *sb, const char *key_hex, const char *key_file,
                   const char **why)
{
    *why = NULL;
    if (key_hex != NULL && key_hex[0] != '\0') {
        if (secretbox_add_key_hex(sb, key_hex, strlen(key_hex)) != 0) {
            *why = "HUBBUB_MASTER_KEY must be 64 hex characters (32 random bytes)";
            return HB_EINVAL;
        }
    }
    if (key_file != NULL && key_file[0] != '\0') {
        int rc = load_file(sb, key_file, why);
        if (rc != 0)
            return rc;
    }
    if (sb->nkeys == 0) {
        *why = "no master key: set HUBBUB_MASTER_KEY or HUBBUB_MASTER_KEY_FILE";
        return HB_EINVAL;
    }
    return 0;
}

char *secretbox_seal(const struct secretbox *sb, const char *context, const void *plain, size_t len)
{
    size_t rawlen = NONCE_LEN + len + TAG_LEN;
    uint8_t *raw = xmalloc(rawlen);
    if (RAND_bytes(raw, NONCE_LEN) != 1)
        abort(); /* no randomness means no safe nonce: refuse to go on */

    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int outl = 0, finl = 0;
    if (c == NULL || EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) != 1 ||
        EVP_EncryptInit_ex(c, NULL, NULL, sb->keys[0].key, raw) != 1 ||
        EVP_EncryptUpdate(c, NULL, &outl, (const uint8_t *)context, (int)strlen(context)) != 1 ||
        EVP_EncryptUpdate(c, raw + NONCE_LEN, &outl, plain, (int)len) != 1 ||
        EVP_EncryptFinal_ex(c, raw + NONCE_LEN + outl, &finl) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, raw + NONCE_LEN + len) != 1)
        abort(); /* AES-GCM with valid arguments cannot fail */
    EVP_CIPHER_CTX_free(c);

    size_t b64len = 4 * ((rawlen + 2) / 3);
    size_t total = strlen(PREFIX) + 8 + 1 + b64len + 1;
    char *out = xmalloc(total);
    int n = snprintf(out, total, PREFIX "%s:", sb->keys[0].id);
    EVP_EncodeBlock((uint8_t *)out + n, raw, (int)rawlen);
    free(raw);
    return out;
}

const char *secretbox_key_id_of(const char *sealed, char id[9])
{
    size_t plen = strlen(PREFIX);
    if (strncmp(sealed, PREFIX, plen) != 0 || strlen(sealed) < plen + 9 || sealed[plen + 8] != ':')
        return NULL;
    memcpy(id, sealed + plen, 8);
    id[8] = '\0';
    return id;
}

bool secretbox_is_sealed_by_first(const struct secretbox *sb, const char *sealed)
{
    char id[9];
    return sb->nkeys > 0 && secretbox_key_id_of(sealed, id) != NULL &&
           strcmp(id, sb->keys[0].id) == 0;
}

int secretbox_open(const struct secretbox *sb, const char *context, const char *sealed,
                   struct buf *out)
{
    char id[9];
    if (secretbox_key_id_of(sealed, id) == NULL)
        return HB_EINVAL;
    const uint8_t *key = NULL;
    for (int i = 0; i < sb->nkeys; i++)
        if (strcmp(sb->keys[i].id, id) == 0)
            key = sb->keys[i].key;
    if (key == NULL)
        return HB_ENOTFOUND;

    const char *b64 = sealed + strlen(PREFIX) + 9;
    size_t b64len = strlen(b64);
    if (b64len == 0 || b64len % 4 != 0)
        return HB_EINVAL;
    uint8_t *raw = xmalloc(b64len / 4 * 3);
    int rawlen = EVP_DecodeBlock(raw, (const uint8_t *)b64, (int)b64len);
    int rc = HB_EINVAL;
    EVP_CIPHER_CTX *c = NULL;
    if (rawlen < 0)
        goto out;
    /* EVP_DecodeBlock counts '=' padding as zero bytes. */
    if (b64len >= 1 && b64[b64len - 1] == '=')
        rawlen--;
    if (b64len >= 2 && b64[b64len - 2] == '=')
        rawlen--;
    if (rawlen < NONCE_LEN + TAG_LEN)
        goto out;

    size_t len = (size_t)rawlen - NONCE_LEN - TAG_LEN;
    buf_reset(out);
    buf_reserve(out, len);
    int outl = 0, finl = 0;
    rc = HB_ECRYPTO;
    c = EVP_CIPHER_CTX_new();
    if (c == NULL || EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) != 1 ||
        EVP_DecryptInit_ex(c, NULL, NULL, key, raw) != 1 ||
        EVP_DecryptUpdate(c, NULL, &outl, (const uint8_t *)context, (int)strlen(context)) != 1 ||
        EVP_DecryptUpdate(c, (uint8_t *)out->data, &outl, raw + NONCE_LEN, (int)len) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN, raw + NONCE_LEN + len) != 1 ||
        EVP_DecryptFinal_ex(c, (uint8_t *)out->data + outl, &finl) != 1) {
        OPENSSL_cleanse(out->data, len);
        goto out;
    }
    out->len = len;
    out->data[len] = '\0';
    rc = 0;
out:
    EVP_CIPHER_CTX_free(c);
    free(raw);
    return rc;
}
