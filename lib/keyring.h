/*
 * keyring.h - the master keys of a running hubbub, replaceable while it
 * serves, so that the key can be rotated without a restart.
 *
 * Readers on any thread take the current secretbox with one atomic load and
 * no lock. A reload builds a new secretbox from HUBBUB_MASTER_KEY and
 * HUBBUB_MASTER_KEY_FILE (read again) and publishes it with an atomic store;
 * the one it replaces is retired, not freed, because a reader may still be
 * using it: retired secretboxes (a few hundred bytes each, and only kept when
 * the key ids changed) live until keyring_free(), which wipes them all.
 *
 * Reloads happen on SIGHUP and, at most once per reload interval, when a
 * value names a key id the keyring does not hold: a process the operator
 * forgot to signal still opens what a rotated process sealed. A reload that
 * fails keeps the keys it had. Reloads are serialised by a mutex that readers
 * never take.
 */
#ifndef HB_KEYRING_H
#define HB_KEYRING_H

#include <stdbool.h>
#include <stdint.h>

#include "lib/buf.h"
#include "lib/secretbox.h"

struct keyring;

/* Loads the keys (key_hex and key_file as for secretbox_load; either may be
 * NULL; both are copied). NULL on failure, with *why naming the problem
 * without revealing key material. */
struct keyring *keyring_new(const char *key_hex, const char *key_file, const char **why);
/* Wipes every key it ever held. No reader may use the keyring any more. */
void keyring_free(struct keyring *kr);

/* The keys in use now; valid until keyring_free(). Any thread. */
const struct secretbox *keyring_current(const struct keyring *kr);

/* Whether a key file was given, i.e. whether a reload can change anything. */
bool keyring_has_file(const struct keyring *kr);

/* Reads the keys again. 0 when loaded (*changed says whether the key ids or
 * their order differ from before), or a negative HB_E* with *why set and the
 * old keys kept. Logs the outcome with cause (key ids only). Any thread (not
 * the event loop's: it reads a file). */
int keyring_reload(struct keyring *kr, const char *cause, bool *changed, const char **why);

/* The shortest time between two reloads caused by an unknown key id
 * (default 1000 ms). */
void keyring_set_reload_interval_ms(struct keyring *kr, int64_t ms);

/* secretbox_seal() with the current keys. */
char *keyring_seal(const struct keyring *kr, const char *context, const void *plain, size_t len);

/* secretbox_open() with the current keys; when the value names a key id
 * they do not hold, reloads (throttled) and tries once more. May read a file:
 * not on the event loop's thread. */
int keyring_open(struct keyring *kr, const char *context, const char *sealed, struct buf *out);

#endif
