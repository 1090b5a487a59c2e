/*
 * fields.h - which Instagram webhook fields each login type may subscribe to.
 *
 * An account is connected through one of Meta's three Instagram setups (the
 * "login type"), and each setup offers a different set of webhook fields. The
 * table is Meta's "Subscribe to webhook fields" grid from the setup guide,
 * written down once here so that the API can refuse a field before the Graph
 * API does (one unknown field fails a whole subscribed_apps call).
 *
 * Everything here is constant data: any thread may call, nothing is freed.
 */
#ifndef HB_FIELDS_H
#define HB_FIELDS_H

#include <stdbool.h>
#include <stddef.h>

enum login_type { LOGIN_INSTAGRAM, LOGIN_FACEBOOK, LOGIN_MESSENGER };

/* "instagram_login" | "facebook_login" | "messenger_platform" (exact, no
 * trimming): 0, or HB_EINVAL. *out is written only on success. */
int fields_parse_login_type(const char *s, enum login_type *out);

/* The name fields_parse_login_type() accepts for lt; NULL for a value outside
 * the enum. */
const char *fields_login_type_name(enum login_type lt);

/* 0 when field may be subscribed with lt. HB_ENOTFOUND when field is not a
 * known Instagram webhook field (names are exact lowercase: "Comments" is
 * unknown); HB_EINVAL when known but unavailable with lt, or lt is outside the
 * enum. why may be NULL; otherwise *why is set on every return: NULL on 0, else
 * a static sentence for people, e.g. "story_insights is only available with
 * facebook_login" or "mentions is not a field of its own with instagram_login:
 * it arrives with comments". */
int fields_check(enum login_type lt, const char *field, const char **why);

/* Whether lt needs a linked Facebook Page id (facebook_login and
 * messenger_platform do: their subscribed_apps edge is on the Page). */
bool fields_needs_page(enum login_type lt);

/* All known field names in the table's order, for docs and tests; *count
 * (may be NULL) gets their number. The array is static. */
const char *const *fields_all(size_t *count);

/* The name the subscribed_apps edge of an account of login type lt uses for
 * our field name field (PROTOCOL.md section 3), or NULL when field is not
 * subscribed on that edge. Instagram Login's edge (the Instagram account's)
 * uses our names. facebook_login and messenger_platform subscribe on the
 * linked Page's edge, which uses Messenger's names: messaging_seen is
 * message_reads, messaging_referral is messaging_referrals,
 * messaging_handover is messaging_handovers; comments, live_comments,
 * mentions and story_insights are not accepted there (they come through the
 * app-level subscription), so they give NULL. Unknown fields and lt outside
 * the enum give NULL. This is only the naming: whether lt may use field at
 * all is fields_check()'s answer. The string is static. */
const char *fields_edge_name(enum login_type lt, const char *field);

/* The inverse: our name for a name the edge of lt reported (e.g. in GET
 * subscribed_apps), or NULL when it is none of ours (e.g. "feed", or
 * "messaging_seen" on the Page edge, which calls it "message_reads"). For
 * every field f with fields_edge_name(lt, f) != NULL,
 * fields_from_edge_name(lt, fields_edge_name(lt, f)) is f. Static string. */
const char *fields_from_edge_name(enum login_type lt, const char *edge_name);

#endif
