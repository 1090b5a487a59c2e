/*
 * ratelimit.h - a token bucket per API key, on the loop thread.
 *
 * Buckets are keyed by a hash of the token as presented, before it is known
 * to be valid: repeating a bad key is limited like using a good one, at no
 * database cost. A client that invents a new key per request gets a new
 * bucket each time: server/admin.c keeps a second table, of failed
 * authentications per client address, for that. The table is bounded: when it
 * is full, buckets that have refilled completely (indistinguishable from new ones) are dropped, and
 * if none has, the oldest entry is reused. Not thread-safe.
 */
#ifndef HB_RATELIMIT_H
#define HB_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#define RATELIMIT_KEY_LEN 16

struct ratelimit;

/* rate: tokens per second; burst: bucket size; max_keys: table bound. */
struct ratelimit *ratelimit_new(double rate, double burst, size_t max_keys);
void ratelimit_free(struct ratelimit *rl);

/* Takes one token for key at now_ms. Returns 0 when allowed, otherwise the
 * milliseconds until a token will be there. */
int64_t ratelimit_take(struct ratelimit *rl, const uint8_t key[RATELIMIT_KEY_LEN], uint64_t now_ms);

/* Like ratelimit_take without taking: 0 when a token is there (or the key
 * is unknown), else the milliseconds until one will be. */
int64_t ratelimit_peek(struct ratelimit *rl, const uint8_t key[RATELIMIT_KEY_LEN], uint64_t now_ms);

size_t ratelimit_size(const struct ratelimit *rl); /* keys held, for tests */

#endif
