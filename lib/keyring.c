/*
 * keyring.c - see keyring.h.
 */
#include "lib/keyring.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "lib/hb.h"
#include "lib/log.h"

struct keyring {
    _Atomic(struct secretbox *) current;
    pthread_mutex_t reload_mu; /* writers only; guards everything below */
    char *key_hex;             /* wiped at free */
    char *key_file;
    struct secretbox **retired;
    size_t nretired;
    int64_t last_unknown_reload_ms; /* 0: never */
    _Atomic int64_t interval_ms;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* NULL on failure, with *rc the error. */
static struct secretbox *load(const struct keyring *kr, int *rc, const char **why)
{
    struct secretbox *sb = xmalloc(sizeof(*sb));
    secretbox_init(sb);
    if ((*rc = secretbox_load(sb, kr->key_hex, kr->key_file, why)) != 0) {
        secretbox_dispose(sb);
        free(sb);
        return NULL;
    }
    return sb;
}

struct keyring *keyring_new(const char *key_hex, const char *key_file, const char **why)
{
    struct keyring *kr = xcalloc(1, sizeof(*kr));
    kr->key_hex = key_hex != NULL && key_hex[0] != '\0' ? xstrdup(key_hex) : NULL;
    kr->key_file = key_file != NULL && key_file[0] != '\0' ? xstrdup(key_file) : NULL;
    int rc;
    struct secretbox *sb = load(kr, &rc, why);
    if (sb == NULL) {
        keyring_free(kr);
        return NULL;
    }
    atomic_init(&kr->current, sb);
    atomic_init(&kr->interval_ms, 1000);
    pthread_mutex_init(&kr->reload_mu, NULL);
    return kr;
}

static void box_free(struct secretbox *sb)
{
    if (sb == NULL)
        return;
    secretbox_dispose(sb);
    free(sb);
}

void keyring_free(struct keyring *kr)
{
    if (kr == NULL)
        return;
    struct secretbox *sb = atomic_load(&kr->current);
    if (sb != NULL) {
        box_free(sb);
        pthread_mutex_destroy(&kr->reload_mu);
    }
    for (size_t i = 0; i < kr->nretired; i++)
        box_free(kr->retired[i]);
    free(kr->retired);
    if (kr->key_hex != NULL) {
        OPENSSL_cleanse(kr->key_hex, strlen(kr->key_hex));
        free(kr->key_hex);
    }
    free(kr->key_file);
    free(kr);
}

const struct secretbox *keyring_current(const struct keyring *kr)
{
    /* The cast drops const only to satisfy atomic_load's signature on
     * older compilers; nothing is written. */
    return atomic_load_explicit((_Atomic(struct secretbox *) *)&kr->current, memory_order_acquire);
}

bool keyring_has_file(const struct keyring *kr)
{
    return kr->key_file != NULL;
}

static bool same_ids(const struct secretbox *a, const struct secretbox *b)
{
    if (a->nkeys != b->nkeys)
        return false;
    for (int i = 0; i < a->nkeys; i++)
        if (strcmp(a->keys[i].id, b->keys[i].id) != 0)
            return false;
    return true;
}

/* Under reload_mu. */
static int reload_locked(struct keyring *kr, bool *changed, const char **why)
{
    *changed = false;
    int rc;
    struct secretbox *fresh = load(kr, &rc, why);
    if (fresh == NULL)
        return rc;
    struct secretbox *old = atomic_load_explicit(&kr->current, memory_order_relaxed);
    if (same_ids(old, fresh)) {
        box_free(fresh);
        return 0;
    }
    kr->retired = xrealloc(kr->retired, (kr->nretired + 1) * sizeof(*kr->retired));
    kr->retired[kr->nretired++] = old;
    atomic_store_explicit(&kr->current, fresh, memory_order_release);
    *changed = true;
    return 0;
}

static void log_loaded(const struct secretbox *sb, const char *msg, const char *cause)
{
    char ids[SECRETBOX_MAX_KEYS * 9 + 1] = "";
    size_t n = 0;
    for (int i = 0; i < sb->nkeys; i++)
        n += (size_t)snprintf(ids + n, sizeof(ids) - n, "%s%s", i > 0 ? "," : "", sb->keys[i].id);
    log_info(msg, "cause=%s sealing=%s keys=%s", cause, sb->keys[0].id, ids);
}

int keyring_reload(struct keyring *kr, const char *cause, bool *changed, const char **why)
{
    pthread_mutex_lock(&kr->reload_mu);
    int rc = reload_locked(kr, changed, why);
    if (rc != 0)
        log_error("master keys not reloaded; keeping the old ones", "cause=%s error=\"%s\"", cause,
                  *why);
    else
        log_loaded(atomic_load_explicit(&kr->current, memory_order_relaxed),
                   *changed ? "master keys reloaded" : "master keys reloaded; unchanged", cause);
    pthread_mutex_unlock(&kr->reload_mu);
    return rc;
}

void keyring_set_reload_interval_ms(struct keyring *kr, int64_t ms)
{
    atomic_store(&kr->interval_ms, ms);
}

char *keyring_seal(const struct keyring *kr, const char *context, const void *plain, size_t len)
{
    return secretbox_seal(keyring_current(kr), context, plain, len);
}

int keyring_open(struct keyring *kr, const char *context, const char *sealed, struct buf *out)
{
    const struct secretbox *tried = keyring_current(kr);
    int rc = secretbox_open(tried, context, sealed, out);
    if (rc != HB_ENOTFOUND || kr->key_file == NULL)
        return rc;

    pthread_mutex_lock(&kr->reload_mu);
    const struct secretbox *cur = atomic_load_explicit(&kr->current, memory_order_relaxed);
    int64_t now = now_ms();
    /* Another thread may have reloaded while this one waited: try its keys. */
    if (cur == tried && (kr->last_unknown_reload_ms == 0 ||
                         now - kr->last_unknown_reload_ms >= atomic_load(&kr->interval_ms))) {
        kr->last_unknown_reload_ms = now;
        bool changed;
        const char *why;
        if (reload_locked(kr, &changed, &why) != 0)
            log_warn("a value needs a master key this process does not hold, and the key file "
                     "could not be read again; keeping the old keys",
                     "error=\"%s\"", why);
        else if (changed)
            log_loaded(atomic_load_explicit(&kr->current, memory_order_relaxed),
                       "master keys reloaded", "unknown_key_id");
        cur = atomic_load_explicit(&kr->current, memory_order_relaxed);
    }
    pthread_mutex_unlock(&kr->reload_mu);
    if (cur == tried)
        return rc;
    return secretbox_open(cur, context, sealed, out);
}
