/*
 * secretbox.h - AES-256-GCM sealing of the secrets hubbub keeps in PostgreSQL
 * (app secrets, verify tokens).
 *
 * The sealed form is text, so it sits in a text column and reads as what it is:
 *
 *   hb1:<key id, 8 hex>:<base64(nonce[12] | ciphertext | tag[16])>
 *
 * The additional authenticated data is a context string naming where the
 * value belongs ("app_secret:<meta app id>"), so a sealed value copied into
 * another row does not open. The key id lets a keyring hold the current key,
 * which seals, and older keys, which still open: keys rotate while hubbub
 * serves. Master keys are 32 random bytes written as 64 hex characters, in
 * HUBBUB_MASTER_KEY or one per line in the file HUBBUB_MASTER_KEY_FILE (the
 * first line seals).
 *
 * A loaded secretbox is read-only and may be used from any thread.
 */
#ifndef HB_SECRETBOX_H
#define HB_SECRETBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

#define SECRETBOX_KEY_LEN 32
#define SECRETBOX_MAX_KEYS 8

struct secretbox {
    int nkeys;
    struct {
        uint8_t key[SECRETBOX_KEY_LEN];
        char id[9]; /* hex of the first 4 bytes of SHA-256("hubbub key id" | key) */
    } keys[SECRETBOX_MAX_KEYS];
};

void secretbox_init(struct secretbox *sb);
void secretbox_dispose(struct secretbox *sb); /* wipes the keys */

/* Adds a key given as 64 hex characters; the first key added seals.
 * HB_EINVAL when it is not 64 hex characters, HB_ETOOBIG when full. */
int secretbox_add_key_hex(struct secretbox *sb, const char *hex, size_t len);

/* Loads keys from a hex string (may be NULL) and from a file of hex lines
 * (path may be NULL); the string's key comes first. On failure *why names
 * the problem without revealing key material. */
int secretbox_load(struct secretbox *sb, const char *key_hex, const char *key_file,
                   const char **why);

/* Seals plain[0..len) for context. Returns the sealed text (caller frees). */
char *secretbox_seal(const struct secretbox *sb, const char *context, const void *plain,
                     size_t len);

/* Opens sealed text for context into out. HB_EINVAL when the text is not a
 * sealed value, HB_ENOTFOUND when no loaded key has its id, HB_ECRYPTO when
 * it was tampered with or belongs to another context. */
int secretbox_open(const struct secretbox *sb, const char *context, const char *sealed,
                   struct buf *out);

/* The id of the key a sealed value needs, or NULL when malformed. */
const char *secretbox_key_id_of(const char *sealed, char id[9]);

/* Whether sealed was sealed by sb's first key, the one that seals now (a
 * rotation re-seals every value for which this is false). */
bool secretbox_is_sealed_by_first(const struct secretbox *sb, const char *sealed);

#endif
