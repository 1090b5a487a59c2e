/*
 * ratelimit.c - see ratelimit.h. Open addressing with linear probing over a
 * table twice the bound; deletion rebuilds the table, which only happens
 * when it is full.
 */
#include "server/ratelimit.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "lib/hb.h"

struct bucket {
    bool used;
    uint8_t key[RATELIMIT_KEY_LEN];
    double tokens;
    uint64_t updated_ms;
};

struct ratelimit {
    double rate, burst;
    size_t max_keys, nkeys, nslots;
    struct bucket *slots;
};

struct ratelimit *ratelimit_new(double rate, double burst, size_t max_keys)
{
    struct ratelimit *rl = xcalloc(1, sizeof(*rl));
    rl->rate = rate;
    rl->burst = burst < 1 ? 1 : burst;
    rl->max_keys = max_keys < 1 ? 1 : max_keys;
    rl->nslots = rl->max_keys * 2;
    rl->slots = xcalloc(rl->nslots, sizeof(*rl->slots));
    return rl;
}

void ratelimit_free(struct ratelimit *rl)
{
    if (rl == NULL)
        return;
    free(rl->slots);
    free(rl);
}

size_t ratelimit_size(const struct ratelimit *rl)
{
    return rl->nkeys;
}

static size_t slot_of(const struct ratelimit *rl, const uint8_t *key)
{
    /* The key is already a cryptographic hash: its bytes are the hash. */
    uint64_t h;
    memcpy(&h, key, sizeof(h));
    return (size_t)(h % rl->nslots);
}

static void refill(const struct ratelimit *rl, struct bucket *b, uint64_t now_ms)
{
    if (now_ms > b->updated_ms) {
        b->tokens = fmin(rl->burst, b->tokens + (double)(now_ms - b->updated_ms) * rl->rate / 1000);
        b->updated_ms = now_ms;
    }
}

static struct bucket *insert(struct ratelimit *rl, const uint8_t *key)
{
    size_t i = slot_of(rl, key);
    while (rl->slots[i].used)
        i = (i + 1) % rl->nslots;
    rl->slots[i].used = true;
    memcpy(rl->slots[i].key, key, RATELIMIT_KEY_LEN);
    rl->nkeys++;
    return &rl->slots[i];
}

/* Keeps the buckets that still hold back a client; if all do, the most
 * recently used half. */
static void evict(struct ratelimit *rl, uint64_t now_ms)
{
    struct bucket *old = rl->slots;
    size_t n = rl->nslots;
    uint64_t oldest_kept = 0;
    size_t full = 0;
    for (size_t i = 0; i < n; i++) {
        if (old[i].used) {
            refill(rl, &old[i], now_ms);
            full += old[i].tokens >= rl->burst;
        }
    }
    if (full == 0) {
        /* Every bucket is active: keep the newer half by last use. */
        uint64_t lo = UINT64_MAX, hi = 0;
        for (size_t i = 0; i < n; i++) {
            if (old[i].used) {
                lo = old[i].updated_ms < lo ? old[i].updated_ms : lo;
                hi = old[i].updated_ms > hi ? old[i].updated_ms : hi;
            }
        }
        oldest_kept = lo + (hi - lo) / 2 + 1;
    }
    rl->slots = xcalloc(n, sizeof(*rl->slots));
    rl->nkeys = 0;
    for (size_t i = 0; i < n; i++) {
        if (!old[i].used || old[i].tokens >= rl->burst || old[i].updated_ms < oldest_kept)
            continue;
        struct bucket *b = insert(rl, old[i].key);
        b->tokens = old[i].tokens;
        b->updated_ms = old[i].updated_ms;
    }
    free(old);
}

static struct bucket *lookup(struct ratelimit *rl, const uint8_t *key)
{
    for (size_t i = slot_of(rl, key); rl->slots[i].used; i = (i + 1) % rl->nslots)
        if (memcmp(rl->slots[i].key, key, RATELIMIT_KEY_LEN) == 0)
            return &rl->slots[i];
    return NULL;
}

int64_t ratelimit_peek(struct ratelimit *rl, const uint8_t key[RATELIMIT_KEY_LEN], uint64_t now_ms)
{
    struct bucket *b = lookup(rl, key);
    if (b == NULL)
        return 0;
    refill(rl, b, now_ms);
    return b->tokens >= 1 ? 0 : (int64_t)ceil((1 - b->tokens) * 1000 / rl->rate);
}

int64_t ratelimit_take(struct ratelimit *rl, const uint8_t key[RATELIMIT_KEY_LEN], uint64_t now_ms)
{
    struct bucket *b = lookup(rl, key);
    if (b == NULL) {
        if (rl->nkeys >= rl->max_keys)
            evict(rl, now_ms);
        b = insert(rl, key);
        b->tokens = rl->burst;
        b->updated_ms = now_ms;
    }
    refill(rl, b, now_ms);
    if (b->tokens >= 1) {
        b->tokens -= 1;
        return 0;
    }
    return (int64_t)ceil((1 - b->tokens) * 1000 / rl->rate);
}
