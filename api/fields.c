/*
 * fields.c - see fields.h.
 *
 * One row per field, one cell per login type, in the order and with the
 * verdicts of Meta's setup guide ("Subscribe to webhook fields"). A cell is
 * YES (permission bullets in the guide), NO ("x") or IN ("Included in the ...
 * webhook notification": the events come inside another field, so there is
 * nothing to subscribe to separately). The sentences are string literals put
 * together by ROW/ROW_IN, so they can be returned without a buffer;
 * tests/unit/test_fields.c rebuilds each one from the guide's grid and compares.
 */
#include "api/fields.h"

#include <string.h>

#include "lib/hb.h"

enum cell { YES, NO, IN };

struct field_row {
    const char *name;
    enum cell cell[3];  /* indexed by enum login_type */
    const char *why_no; /* for the NO cells */
    const char *why_in; /* for the IN cell; NULL when the row has none */
};

#define IG "instagram_login"
#define FB "facebook_login"
#define MS "messenger_platform"

/* clang-format off */
/* where: the login types whose cell is YES, as a phrase. ROW_IN is for a row
 * whose IN cell (login type in) gets its events inside the field carrier. */
#define ROW(f, ig, fb, ms, where) {f, {ig, fb, ms}, f " is only available with " where, NULL}
#define ROW_IN(f, ig, fb, ms, where, in, carrier)                                                  \
    {f, {ig, fb, ms},                                                                              \
     f " is only available with " where " (with " in " it arrives with " carrier ")",             \
     f " is not a field of its own with " in ": it arrives with " carrier}
/* clang-format on */

static const char *const login_names[] = {
    [LOGIN_INSTAGRAM] = IG,
    [LOGIN_FACEBOOK] = FB,
    [LOGIN_MESSENGER] = MS,
};

/* clang-format off */
static const struct field_row rows[] = {
    /*  field                           IG   FB   MS */
    ROW("comments",                     YES, YES, NO,  IG " and " FB),
    ROW("live_comments",                YES, YES, NO,  IG " and " FB),
    ROW_IN("mentions",                  IN,  YES, NO,  FB, IG, "comments"),
    ROW_IN("message_echoes",            YES, NO,  IN,  IG, MS, "messages"),
    ROW("message_reactions",            YES, NO,  YES, IG " and " MS),
    ROW("messages",                     YES, NO,  YES, IG " and " MS),
    ROW("messaging_handover",           YES, NO,  YES, IG " and " MS),
    ROW("messaging_optins",             YES, NO,  NO,  IG),
    ROW("messaging_policy_enforcement", NO,  NO,  YES, MS),
    ROW("messaging_postbacks",          YES, NO,  YES, IG " and " MS),
    ROW("messaging_referral",           YES, NO,  YES, IG " and " MS),
    ROW("messaging_seen",               YES, NO,  YES, IG " and " MS),
    ROW("response_feedback",            NO,  NO,  YES, MS),
    ROW("standby",                      YES, NO,  YES, IG " and " MS),
    ROW("story_insights",               NO,  YES, NO,  FB),
};
/* clang-format on */

/* The names of rows[], in the same order: fields_all() hands out an array of
 * strings, and tests/unit/test_fields.c checks the two agree. */
static const char *const names[] = {
    "comments",
    "live_comments",
    "mentions",
    "message_echoes",
    "message_reactions",
    "messages",
    "messaging_handover",
    "messaging_optins",
    "messaging_policy_enforcement",
    "messaging_postbacks",
    "messaging_referral",
    "messaging_seen",
    "response_feedback",
    "standby",
    "story_insights",
};

_Static_assert(HB_ARRAY_SIZE(names) == HB_ARRAY_SIZE(rows), "names[] must list every row");

static bool is_login_type(enum login_type lt)
{
    return (unsigned)lt < HB_ARRAY_SIZE(login_names);
}

int fields_parse_login_type(const char *s, enum login_type *out)
{
    if (s == NULL)
        return HB_EINVAL;
    for (size_t i = 0; i < HB_ARRAY_SIZE(login_names); i++) {
        if (strcmp(s, login_names[i]) == 0) {
            *out = (enum login_type)i;
            return 0;
        }
    }
    return HB_EINVAL;
}

const char *fields_login_type_name(enum login_type lt)
{
    return is_login_type(lt) ? login_names[lt] : NULL;
}

int fields_check(enum login_type lt, const char *field, const char **why)
{
    const char *sentence = NULL;
    int rc;

    if (!is_login_type(lt)) {
        sentence = "unknown login type";
        rc = HB_EINVAL;
        goto out;
    }
    if (field != NULL) {
        for (size_t i = 0; i < HB_ARRAY_SIZE(rows); i++) {
            if (strcmp(field, rows[i].name) != 0)
                continue;
            switch (rows[i].cell[lt]) {
            case YES:
                rc = 0;
                break;
            case IN:
                sentence = rows[i].why_in;
                rc = HB_EINVAL;
                break;
            case NO:
            default:
                sentence = rows[i].why_no;
                rc = HB_EINVAL;
                break;
            }
            goto out;
        }
    }
    sentence = "not a known Instagram webhook field";
    rc = HB_ENOTFOUND;
out:
    if (why != NULL)
        *why = sentence;
    return rc;
}

bool fields_needs_page(enum login_type lt)
{
    return lt == LOGIN_FACEBOOK || lt == LOGIN_MESSENGER;
}

const char *const *fields_all(size_t *count)
{
    if (count != NULL)
        *count = HB_ARRAY_SIZE(names);
    return names;
}

/* The Page edge's own names for our fields; NULL: not on the Page edge. Every
 * other field keeps its name there. */
static const struct {
    const char *field;
    const char *page_name;
} page_names[] = {
    {"comments", NULL},
    {"live_comments", NULL},
    {"mentions", NULL},
    {"story_insights", NULL},
    {"messaging_seen", "message_reads"},
    {"messaging_referral", "messaging_referrals"},
    {"messaging_handover", "messaging_handovers"},
};

const char *fields_edge_name(enum login_type lt, const char *field)
{
    if (!is_login_type(lt) || field == NULL)
        return NULL;
    for (size_t i = 0; i < HB_ARRAY_SIZE(names); i++) {
        if (strcmp(field, names[i]) != 0)
            continue;
        if (lt == LOGIN_INSTAGRAM)
            return names[i];
        for (size_t j = 0; j < HB_ARRAY_SIZE(page_names); j++)
            if (strcmp(field, page_names[j].field) == 0)
                return page_names[j].page_name;
        return names[i];
    }
    return NULL;
}

const char *fields_from_edge_name(enum login_type lt, const char *edge_name)
{
    if (edge_name == NULL)
        return NULL;
    for (size_t i = 0; i < HB_ARRAY_SIZE(names); i++) {
        const char *e = fields_edge_name(lt, names[i]);
        if (e != NULL && strcmp(e, edge_name) == 0)
            return names[i];
    }
    return NULL;
}
