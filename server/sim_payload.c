/*
 * sim_payload.c - Meta-shaped deliveries for `hubbub sim send`; see
 * sim_payload.h. The items follow tests/fixtures/ (which follow PROTOCOL.md),
 * with their ids and times drawn from (nonce, seq).
 */
#include "server/sim_payload.h"

#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base64url.h"
#include "lib/hb.h"
#include "lib/hex.h"
#include "server/signature.h"

enum shape { MESSAGING, STANDBY, CHANGES };

struct field_def {
    const char *name;
    enum shape shape;
    void (*item)(struct buf *out, const struct sim_payload_params *p);
};

/* ---- ids ---- */

static uint64_t mix(uint64_t x)
{
    /* splitmix64: distinct inputs give well-spread, practically distinct outputs */
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static uint64_t draw(const struct sim_payload_params *p, uint64_t salt)
{
    return mix(mix(p->nonce ^ (salt << 56)) ^ p->seq);
}

/* A 17-digit id like Meta's numeric ids: prefix then 14 digits. */
static void put_id(struct buf *out, const struct sim_payload_params *p, const char *prefix,
                   uint64_t salt)
{
    buf_printf(out, "\"%s%014" PRIu64 "\"", prefix, draw(p, salt) % UINT64_C(100000000000000));
}

/* An Instagram message id: long base64 text naming the thread and the item.
 * The entry id may be of any length. */
static void put_mid(struct buf *out, const struct sim_payload_params *p, uint64_t salt)
{
    struct buf raw;
    buf_init(&raw);
    buf_printf(&raw,
               "ig_message_item:1:IGMessageThread:%s:3402823668417103012442760%013" PRIu64
               ":3184729387462198372%019" PRIu64 ":v2",
               p->entry_id, draw(p, salt) % UINT64_C(10000000000000), draw(p, salt + 1));
    char *enc = xmalloc(BASE64URL_LEN(raw.len) + 1);
    base64url_encode(enc, (const uint8_t *)raw.data, raw.len);
    buf_printf(out, "\"%s\"", enc);
    free(enc);
    buf_dispose(&raw);
}

static void put_str(struct buf *out, const char *s)
{
    sim_payload_escape(out, s, strlen(s));
}

/* The person who writes to the account, and the timestamp of the item. */
static void put_people(struct buf *out, const struct sim_payload_params *p, bool from_business)
{
    buf_puts(out, "\"sender\":{\"id\":");
    if (from_business)
        put_str(out, p->entry_id);
    else
        put_id(out, p, "628", 1);
    buf_puts(out, "},\"recipient\":{\"id\":");
    if (from_business)
        put_id(out, p, "628", 1);
    else
        put_str(out, p->entry_id);
    buf_printf(out, "},\"timestamp\":%" PRId64 ",", p->now_ms - 300);
}

/* ---- items ---- */

static void item_message(struct buf *out, const struct sim_payload_params *p)
{
    put_people(out, p, false);
    buf_puts(out, "\"message\":{\"mid\":");
    put_mid(out, p, 10);
    buf_puts(out, ",\"text\":");
    put_str(out, "Bonjour, vous livrez \u00e0 Montr\u00e9al ? \U0001F64F");
    buf_puts(out, "}");
}

static void item_echo(struct buf *out, const struct sim_payload_params *p)
{
    put_people(out, p, true);
    buf_puts(out, "\"message\":{\"mid\":");
    put_mid(out, p, 10);
    buf_puts(out, ",\"text\":");
    put_str(out, "Oui, nous livrons partout au Qu\u00e9bec \U0001F69A");
    buf_puts(out, ",\"is_echo\":true}");
}

static void item_reaction(struct buf *out, const struct sim_payload_params *p)
{
    put_people(out, p, false);
    buf_puts(out, "\"reaction\":{\"mid\":");
    put_mid(out, p, 10);
    buf_puts(out, ",\"action\":\"react\",\"reaction\":\"love\",\"emoji\":");
    put_str(out, "\u2764\ufe0f");
    buf_puts(out, "}");
}

static void item_postback(struct buf *out, const struct sim_payload_params *p)
{
    put_people(out, p, false);
    buf_puts(out, "\"postback\":{\"mid\":");
    put_mid(out, p, 10);
    buf_puts(out, ",\"title\":");
    put_str(out, "Voir le catalogue \u2728");
    buf_puts(out, ",\"payload\":\"CATALOG_SPRING_2026\"}");
}

static void item_seen(struct buf *out, const struct sim_payload_params *p)
{
    /* Instagram Login sends read receipts without sender and recipient. */
    buf_printf(out, "\"timestamp\":%" PRId64 ",\"read\":{\"mid\":", p->now_ms - 300);
    put_mid(out, p, 10);
    buf_puts(out, "}");
}

static void item_referral(struct buf *out, const struct sim_payload_params *p)
{
    put_people(out, p, false);
    buf_puts(out, "\"referral\":{\"ref\":\"spring_sale\",\"ad_id\":");
    put_id(out, p, "238", 2);
    buf_puts(out, ",\"source\":\"ADS\",\"type\":\"OPEN_THREAD\",\"ads_context_data\":"
                  "{\"ad_title\":");
    put_str(out, "Collection printemps \u2013 -20 %");
    buf_puts(out, ",\"photo_url\":");
    put_str(out, "https://scontent.xx.fbcdn.net/v/t45.1600-4/ad_spring.jpg");
    buf_puts(out, "}}");
}

static void item_optin(struct buf *out, const struct sim_payload_params *p)
{
    put_people(out, p, false);
    buf_puts(out, "\"optin\":{\"type\":\"notification_messages\",\"payload\":\"WEEKLY_DEALS\","
                  "\"notification_messages_token\":");
    put_id(out, p, "745", 3);
    buf_printf(out,
               ",\"notification_messages_frequency\":\"WEEKLY\","
               "\"notification_messages_timezone\":\"America\\/Toronto\","
               "\"token_expiry_timestamp\":%" PRId64 ",\"user_token_status\":\"NOT_REFRESHED\","
               "\"title\":",
               p->now_ms + INT64_C(15552000000));
    put_str(out, "Offres de la semaine \U0001F6CD\ufe0f");
    buf_puts(out, "}");
}

static void item_handover(struct buf *out, const struct sim_payload_params *p)
{
    put_people(out, p, false);
    buf_puts(out, "\"pass_thread_control\":{\"previous_owner_app_id\":\"1217981644879628\","
                  "\"new_owner_app_id\":\"263902037430900\",\"metadata\":");
    put_str(out, "Transfert vers un agent humain \U0001F9D1\u200D\U0001F4BC");
    buf_puts(out, "}");
}

static void item_policy(struct buf *out, const struct sim_payload_params *p)
{
    buf_puts(out, "\"recipient\":{\"id\":");
    put_str(out, p->entry_id);
    buf_printf(out,
               "},\"timestamp\":%" PRId64 ",\"policy_enforcement\":{\"action\":\"block\","
               "\"reason\":",
               p->now_ms - 300);
    put_str(out, "The bot violated our Platform Policies "
                 "(https://developers.facebook.com/policy/#messengerplatform).");
    buf_puts(out, "}");
}

static void item_feedback(struct buf *out, const struct sim_payload_params *p)
{
    put_people(out, p, false);
    buf_puts(out, "\"response_feedback\":{\"mid\":");
    put_mid(out, p, 10);
    buf_puts(out, ",\"feedback\":\"Good response\"}");
}

static void item_edit(struct buf *out, const struct sim_payload_params *p)
{
    put_people(out, p, false);
    buf_puts(out, "\"message_edit\":{\"mid\":");
    put_mid(out, p, 10);
    buf_puts(out, ",\"text\":");
    put_str(out, "Bonjour, vous livrez \u00e0 Qu\u00e9bec ? \U0001F64F");
    buf_puts(out, ",\"num_edit\":1}");
}

static void item_standby(struct buf *out, const struct sim_payload_params *p)
{
    put_people(out, p, false);
    buf_puts(out, "\"message\":{\"mid\":");
    put_mid(out, p, 10);
    buf_puts(out, ",\"text\":");
    put_str(out, "Est-ce que quelqu'un est l\u00e0 ? \U0001F440");
    buf_puts(out, "}");
}

static void comment_value(struct buf *out, const struct sim_payload_params *p, const char *type,
                          const char *text)
{
    buf_puts(out, "{\"from\":{\"id\":");
    put_id(out, p, "120", 1);
    buf_puts(out, ",\"username\":\"marie.dupont\"},\"media\":{\"id\":");
    put_id(out, p, "180", 4);
    buf_printf(out, ",\"media_product_type\":\"%s\"},\"id\":", type);
    put_id(out, p, "178", 5);
    buf_puts(out, ",\"text\":");
    put_str(out, text);
    buf_puts(out, "}");
}

static void item_comment(struct buf *out, const struct sim_payload_params *p)
{
    comment_value(out, p, "FEED",
                  "Trop beau \U0001F451 j'adore l'\u00e9t\u00e9 ! https://example.com/x");
}

static void item_live_comment(struct buf *out, const struct sim_payload_params *p)
{
    comment_value(out, p, "LIVE", "\u00a1Hola! \U0001F525\U0001F525");
}

static void item_mention(struct buf *out, const struct sim_payload_params *p)
{
    buf_puts(out, "{\"media_id\":");
    put_id(out, p, "179", 4);
    buf_puts(out, ",\"comment_id\":");
    put_id(out, p, "178", 5);
    buf_puts(out, "}");
}

static void item_story_insights(struct buf *out, const struct sim_payload_params *p)
{
    uint64_t r = draw(p, 6);
    buf_puts(out, "{\"media_id\":");
    put_id(out, p, "180", 4);
    buf_printf(out,
               ",\"exits\":%" PRIu64 ",\"replies\":%" PRIu64 ",\"reach\":%" PRIu64
               ",\"taps_forward\":%" PRIu64 ",\"taps_back\":%" PRIu64 ",\"impressions\":%" PRIu64
               "}",
               r % 7, (r >> 8) % 5, 40 + (r >> 16) % 400, (r >> 24) % 9, (r >> 32) % 9,
               400 + (r >> 40) % 4000);
}

static void item_feed(struct buf *out, const struct sim_payload_params *p)
{
    buf_puts(out, "{\"from\":{\"id\":");
    put_id(out, p, "735", 1);
    buf_puts(out, ",\"name\":\"Jean Tremblay\"},\"message\":");
    put_str(out, "Tr\u00e8s belle boutique \U0001F44D");
    buf_printf(out, ",\"post_id\":\"%s_", p->entry_id);
    buf_printf(out, "%015" PRIu64 "\",\"comment_id\":\"", draw(p, 7) % UINT64_C(1000000000000000));
    buf_printf(out,
               "%015" PRIu64 "\",\"created_time\":%" PRId64 ",\"item\":\"comment\","
               "\"verb\":\"add\"}",
               draw(p, 8) % UINT64_C(1000000000000000), p->now_ms / 1000);
}

static const struct field_def FIELDS[] = {
    {"comments", CHANGES, item_comment},
    {"live_comments", CHANGES, item_live_comment},
    {"mentions", CHANGES, item_mention},
    {"story_insights", CHANGES, item_story_insights},
    {"messages", MESSAGING, item_message},
    {"message_echoes", MESSAGING, item_echo},
    {"message_reactions", MESSAGING, item_reaction},
    {"message_edit", MESSAGING, item_edit},
    {"messaging_postbacks", MESSAGING, item_postback},
    {"messaging_seen", MESSAGING, item_seen},
    {"messaging_referral", MESSAGING, item_referral},
    {"messaging_optins", MESSAGING, item_optin},
    {"messaging_handover", MESSAGING, item_handover},
    {"messaging_policy_enforcement", MESSAGING, item_policy},
    {"response_feedback", MESSAGING, item_feedback},
    {"standby", STANDBY, item_standby},
};
#define NFIELDS (sizeof(FIELDS) / sizeof(FIELDS[0]))

static const struct field_def FEED = {"feed", CHANGES, item_feed};

/* The names again, as the array sim_payload_fields() hands out; the unit
 * test checks that both lists agree. */
static const char *const NAMES[] = {
    "comments",
    "live_comments",
    "mentions",
    "story_insights",
    "messages",
    "message_echoes",
    "message_reactions",
    "message_edit",
    "messaging_postbacks",
    "messaging_seen",
    "messaging_referral",
    "messaging_optins",
    "messaging_handover",
    "messaging_policy_enforcement",
    "response_feedback",
    "standby",
};
_Static_assert(sizeof(NAMES) / sizeof(NAMES[0]) == NFIELDS, "one name per field");

const char *const *sim_payload_fields(size_t *count)
{
    if (count != NULL)
        *count = NFIELDS;
    return NAMES;
}

static const struct field_def *find(const char *field)
{
    for (size_t i = 0; i < NFIELDS; i++)
        if (strcmp(FIELDS[i].name, field) == 0)
            return &FIELDS[i];
    return strcmp(field, FEED.name) == 0 ? &FEED : NULL;
}

bool sim_payload_knows(const char *field)
{
    return find(field) != NULL;
}

int sim_payload_build(struct buf *out, const char *field, const struct sim_payload_params *p)
{
    const struct field_def *f = find(field);
    if (f == NULL)
        return HB_EINVAL;
    if (f->shape == CHANGES) {
        /* Meta writes these with "entry" first and the time in seconds. */
        buf_puts(out, "{\"entry\":[{\"id\":");
        put_str(out, p->entry_id);
        buf_printf(out, ",\"time\":%" PRId64 ",\"changes\":[{\"value\":", p->now_ms / 1000);
        f->item(out, p);
        buf_printf(out, ",\"field\":\"%s\"}]}],\"object\":", f->name);
        put_str(out, p->object);
        buf_puts(out, "}");
    } else {
        buf_puts(out, "{\"object\":");
        put_str(out, p->object);
        buf_printf(out, ",\"entry\":[{\"time\":%" PRId64 ",\"id\":", p->now_ms);
        put_str(out, p->entry_id);
        buf_printf(out, ",\"%s\":[{", f->shape == STANDBY ? "standby" : "messaging");
        f->item(out, p);
        buf_puts(out, "}]}]}");
    }
    return 0;
}

/* ---- escaping and signing ---- */

/* Decodes one UTF-8 sequence at s[0..n); returns its length and sets *cp, or
 * returns 1 with *cp = U+FFFD for a byte that starts no valid sequence. */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    *cp = 0xfffd;
    unsigned char c = s[0];
    size_t len;
    uint32_t v, min;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2, v = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3, v = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 1;
    }
    if (len > n)
        return 1;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 1;
        v = (v << 6) | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 1;
    *cp = v;
    return len;
}

void sim_payload_escape(struct buf *out, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    buf_putc(out, '"');
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        if (c < 0x80) {
            i++;
            switch (c) {
            case '"':
                buf_puts(out, "\\\"");
                break;
            case '\\':
                buf_puts(out, "\\\\");
                break;
            case '/':
                buf_puts(out, "\\/");
                break;
            case '\b':
                buf_puts(out, "\\b");
                break;
            case '\f':
                buf_puts(out, "\\f");
                break;
            case '\n':
                buf_puts(out, "\\n");
                break;
            case '\r':
                buf_puts(out, "\\r");
                break;
            case '\t':
                buf_puts(out, "\\t");
                break;
            default:
                if (c < 0x20 || c == 0x7f)
                    buf_printf(out, "\\u%04x", c);
                else
                    buf_putc(out, (char)c);
            }
            continue;
        }
        uint32_t cp;
        i += utf8_next(u + i, n - i, &cp);
        if (cp >= 0x10000) {
            cp -= 0x10000;
            buf_printf(out, "\\u%04x\\u%04x", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
        } else {
            buf_printf(out, "\\u%04x", cp);
        }
    }
    buf_putc(out, '"');
}

void sim_payload_sign(const char *secret, const void *body, size_t len,
                      char sig256[SIM_PAYLOAD_SIG256_LEN], char sig1[SIM_PAYLOAD_SIG1_LEN])
{
    uint8_t d256[SIGNATURE_LEN], d1[EVP_MAX_MD_SIZE];
    unsigned int n1 = 0;
    signature_compute(secret, strlen(secret), body, len, d256);
    signature_format(d256, sig256);
    HMAC(EVP_sha1(), secret, (int)strlen(secret), body, len, d1, &n1);
    memcpy(sig1, "sha1=", 5);
    hex_encode(sig1 + 5, d1, 20);
}
