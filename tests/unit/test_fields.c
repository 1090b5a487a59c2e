/*
 * test_fields.c - the webhook fields each login type may subscribe to, cell by
 * cell against the grid in Meta's Instagram webhooks setup guide ("Subscribe
 * to webhook fields"), and the sentences that explain a refusal.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "api/fields.h"
#include "lib/hb.h"

/* The guide's grid, copied by hand. Columns: Instagram Login, Facebook Login,
 * Messenger Platform. 'Y' has permission bullets, 'x' is "x", 'c' is
 * "Included in the comments webhook notification", 'm' is "Included in the
 * messages webhook notification". */
static const struct {
    const char *field;
    const char cells[4];
} GUIDE[] = {
    {"comments", "YYx"},
    {"live_comments", "YYx"},
    {"mentions", "cYx"},
    {"message_echoes", "Yxm"},
    {"message_reactions", "YxY"},
    {"messages", "YxY"},
    {"messaging_handover", "YxY"},
    {"messaging_optins", "Yxx"},
    {"messaging_policy_enforcement", "xxY"},
    {"messaging_postbacks", "YxY"},
    {"messaging_referral", "YxY"},
    {"messaging_seen", "YxY"},
    {"response_feedback", "xxY"},
    {"standby", "YxY"},
    {"story_insights", "xYx"},
};

static const enum login_type LTS[] = {LOGIN_INSTAGRAM, LOGIN_FACEBOOK, LOGIN_MESSENGER};
static const char *const LT_NAMES[] = {"instagram_login", "facebook_login", "messenger_platform"};

static const char *carrier_of(char cell)
{
    return cell == 'c' ? "comments" : "messages";
}

/* The sentence fields_check() should give for an 'x' cell of row i. */
static void expected_unavailable(size_t i, char *out, size_t cap)
{
    const char *cells = GUIDE[i].cells;
    size_t n = (size_t)snprintf(out, cap, "%s is only available with", GUIDE[i].field);
    const char *sep = " ";
    for (size_t j = 0; j < 3; j++) {
        if (cells[j] == 'Y') {
            n += (size_t)snprintf(out + n, cap - n, "%s%s", sep, LT_NAMES[j]);
            sep = " and ";
        }
    }
    for (size_t j = 0; j < 3; j++)
        if (cells[j] == 'c' || cells[j] == 'm')
            snprintf(out + n, cap - n, " (with %s it arrives with %s)", LT_NAMES[j],
                     carrier_of(cells[j]));
}

static void test_every_cell_matches_the_setup_guide(void **state)
{
    (void)state;
    char want[256];
    for (size_t i = 0; i < HB_ARRAY_SIZE(GUIDE); i++) {
        for (size_t j = 0; j < 3; j++) {
            const char *why = "unset";
            int rc = fields_check(LTS[j], GUIDE[i].field, &why);
            char cell = GUIDE[i].cells[j];
            if (cell == 'Y') {
                if (rc != 0)
                    fail_msg("%s with %s: rc %d, want 0", GUIDE[i].field, LT_NAMES[j], rc);
                assert_null(why);
                continue;
            }
            if (rc != HB_EINVAL)
                fail_msg("%s with %s: rc %d, want HB_EINVAL", GUIDE[i].field, LT_NAMES[j], rc);
            if (cell == 'x')
                expected_unavailable(i, want, sizeof(want));
            else
                snprintf(want, sizeof(want),
                         "%s is not a field of its own with %s: it arrives with %s", GUIDE[i].field,
                         LT_NAMES[j], carrier_of(cell));
            assert_non_null(why);
            assert_string_equal(why, want);
        }
    }
}

static void test_the_sentences_read_as_documented(void **state)
{
    (void)state;
    const char *why = NULL;
    assert_int_equal(fields_check(LOGIN_INSTAGRAM, "story_insights", &why), HB_EINVAL);
    assert_string_equal(why, "story_insights is only available with facebook_login");
    assert_int_equal(fields_check(LOGIN_MESSENGER, "story_insights", &why), HB_EINVAL);
    assert_string_equal(why, "story_insights is only available with facebook_login");
    assert_int_equal(fields_check(LOGIN_FACEBOOK, "messages", &why), HB_EINVAL);
    assert_string_equal(why, "messages is only available with instagram_login and "
                             "messenger_platform");
}

static void test_included_fields_name_the_field_they_arrive_with(void **state)
{
    (void)state;
    const char *why = NULL;
    assert_int_equal(fields_check(LOGIN_INSTAGRAM, "mentions", &why), HB_EINVAL);
    assert_string_equal(why, "mentions is not a field of its own with instagram_login: it "
                             "arrives with comments");
    assert_int_equal(fields_check(LOGIN_MESSENGER, "message_echoes", &why), HB_EINVAL);
    assert_string_equal(why, "message_echoes is not a field of its own with messenger_platform: "
                             "it arrives with messages");
    /* Where the guide says "x" for such a field, the sentence still points to
     * the setup that delivers it inside another field. */
    assert_int_equal(fields_check(LOGIN_MESSENGER, "mentions", &why), HB_EINVAL);
    assert_string_equal(why, "mentions is only available with facebook_login (with "
                             "instagram_login it arrives with comments)");
    assert_int_equal(fields_check(LOGIN_FACEBOOK, "message_echoes", &why), HB_EINVAL);
    assert_string_equal(why, "message_echoes is only available with instagram_login (with "
                             "messenger_platform it arrives with messages)");
    /* The carriers themselves are subscribable there. */
    assert_int_equal(fields_check(LOGIN_INSTAGRAM, "comments", NULL), 0);
    assert_int_equal(fields_check(LOGIN_MESSENGER, "messages", NULL), 0);
}

static void test_fields_all_lists_the_guide_in_order(void **state)
{
    (void)state;
    size_t count = 0;
    const char *const *all = fields_all(&count);
    assert_int_equal(count, HB_ARRAY_SIZE(GUIDE));
    for (size_t i = 0; i < count; i++) {
        assert_string_equal(all[i], GUIDE[i].field);
        /* Every listed name is known to fields_check(). */
        assert_int_not_equal(fields_check(LOGIN_INSTAGRAM, all[i], NULL), HB_ENOTFOUND);
    }
    assert_ptr_equal(fields_all(NULL), all);
}

static void test_unknown_fields_are_not_found(void **state)
{
    (void)state;
    /* Wrong case, surrounding space, prefixes and extensions of real names,
     * the Page edge's Messenger spellings, and fields of other objects. */
    const char *unknown[] = {
        "Comments",
        "COMMENTS",
        "Messages",
        "comments ",
        " comments",
        "\tmessages",
        "messages\n",
        "comment",
        "commentsx",
        "message",
        "messaging_",
        "story_insight",
        "message_reads",
        "messaging_referrals",
        "messaging_handovers",
        "feed",
        "comments,messages",
        "",
    };
    for (size_t i = 0; i < HB_ARRAY_SIZE(unknown); i++) {
        for (size_t j = 0; j < 3; j++) {
            const char *why = NULL;
            int rc = fields_check(LTS[j], unknown[i], &why);
            if (rc != HB_ENOTFOUND)
                fail_msg("\"%s\" with %s: rc %d, want HB_ENOTFOUND", unknown[i], LT_NAMES[j], rc);
            assert_non_null(why);
        }
    }
    assert_int_equal(fields_check(LOGIN_INSTAGRAM, NULL, NULL), HB_ENOTFOUND);
}

static void test_empty_field_is_not_found(void **state)
{
    (void)state;
    const char *why = NULL;
    assert_int_equal(fields_check(LOGIN_FACEBOOK, "", &why), HB_ENOTFOUND);
    assert_string_equal(why, "not a known Instagram webhook field");
}

static void test_why_is_cleared_on_success_and_may_be_null(void **state)
{
    (void)state;
    const char *why = "left over";
    assert_int_equal(fields_check(LOGIN_FACEBOOK, "story_insights", &why), 0);
    assert_null(why);
    assert_int_equal(fields_check(LOGIN_FACEBOOK, "story_insights", NULL), 0);
    assert_int_equal(fields_check(LOGIN_INSTAGRAM, "story_insights", NULL), HB_EINVAL);
    assert_int_equal(fields_check(LOGIN_INSTAGRAM, "mentions", NULL), HB_EINVAL);
    assert_int_equal(fields_check(LOGIN_INSTAGRAM, "nope", NULL), HB_ENOTFOUND);
}

static void test_out_of_range_login_type_is_refused(void **state)
{
    (void)state;
    const char *why = NULL;
    assert_int_equal(fields_check((enum login_type)3, "comments", &why), HB_EINVAL);
    assert_non_null(why);
    assert_int_equal(fields_check((enum login_type) - 1, "comments", NULL), HB_EINVAL);
    assert_null(fields_login_type_name((enum login_type)3));
    assert_false(fields_needs_page((enum login_type)3));
}

static void test_only_page_based_setups_need_a_page(void **state)
{
    (void)state;
    assert_false(fields_needs_page(LOGIN_INSTAGRAM));
    assert_true(fields_needs_page(LOGIN_FACEBOOK));
    assert_true(fields_needs_page(LOGIN_MESSENGER));
}

static void test_login_types_parse_and_print(void **state)
{
    (void)state;
    for (size_t j = 0; j < 3; j++) {
        enum login_type lt = (enum login_type)99;
        assert_int_equal(fields_parse_login_type(LT_NAMES[j], &lt), 0);
        assert_int_equal(lt, LTS[j]);
        assert_string_equal(fields_login_type_name(lt), LT_NAMES[j]);
    }
    const char *bad[] = {
        "",
        "Instagram_login",
        "FACEBOOK_LOGIN",
        "instagram",
        "facebook",
        "messenger",
        "messenger_platform ",
        " instagram_login",
        "instagram_login\n",
        "instagram_logins",
        "facebook_login,messenger_platform",
    };
    for (size_t i = 0; i < HB_ARRAY_SIZE(bad); i++) {
        enum login_type lt = LOGIN_MESSENGER;
        if (fields_parse_login_type(bad[i], &lt) != HB_EINVAL)
            fail_msg("\"%s\" parsed as a login type", bad[i]);
        /* Not written on failure. */
        assert_int_equal(lt, LOGIN_MESSENGER);
    }
    enum login_type lt = LOGIN_FACEBOOK;
    assert_int_equal(fields_parse_login_type(NULL, &lt), HB_EINVAL);
    assert_int_equal(lt, LOGIN_FACEBOOK);
}

/* ---- names on the subscribed_apps edge ---- */

/* PROTOCOL.md section 3: the Page edge (facebook_login, messenger_platform)
 * speaks Messenger's names and does not take the Instagram-only fields. */
static const struct {
    const char *field;
    const char *page_name; /* NULL: not on the Page edge */
} PAGE_EDGE[] = {
    {"comments", NULL},
    {"live_comments", NULL},
    {"mentions", NULL},
    {"message_echoes", "message_echoes"},
    {"message_reactions", "message_reactions"},
    {"messages", "messages"},
    {"messaging_handover", "messaging_handovers"},
    {"messaging_optins", "messaging_optins"},
    {"messaging_policy_enforcement", "messaging_policy_enforcement"},
    {"messaging_postbacks", "messaging_postbacks"},
    {"messaging_referral", "messaging_referrals"},
    {"messaging_seen", "message_reads"},
    {"response_feedback", "response_feedback"},
    {"standby", "standby"},
    {"story_insights", NULL},
};

static void test_instagram_edge_uses_our_names(void **state)
{
    (void)state;
    size_t count = 0;
    const char *const *all = fields_all(&count);
    for (size_t i = 0; i < count; i++) {
        const char *e = fields_edge_name(LOGIN_INSTAGRAM, all[i]);
        assert_non_null(e);
        assert_string_equal(e, all[i]);
        const char *f = fields_from_edge_name(LOGIN_INSTAGRAM, all[i]);
        assert_non_null(f);
        assert_string_equal(f, all[i]);
    }
    /* The Page edge's spellings are not Instagram names. */
    assert_null(fields_from_edge_name(LOGIN_INSTAGRAM, "message_reads"));
    assert_null(fields_from_edge_name(LOGIN_INSTAGRAM, "messaging_referrals"));
    assert_null(fields_from_edge_name(LOGIN_INSTAGRAM, "messaging_handovers"));
}

static void test_page_edge_uses_messenger_names(void **state)
{
    (void)state;
    size_t count = 0;
    fields_all(&count);
    assert_int_equal(HB_ARRAY_SIZE(PAGE_EDGE), count);
    const enum login_type page_lts[] = {LOGIN_FACEBOOK, LOGIN_MESSENGER};
    for (size_t j = 0; j < HB_ARRAY_SIZE(page_lts); j++) {
        for (size_t i = 0; i < HB_ARRAY_SIZE(PAGE_EDGE); i++) {
            const char *e = fields_edge_name(page_lts[j], PAGE_EDGE[i].field);
            if (PAGE_EDGE[i].page_name == NULL) {
                if (e != NULL)
                    fail_msg("%s is on the Page edge as %s", PAGE_EDGE[i].field, e);
                continue;
            }
            if (e == NULL)
                fail_msg("%s is missing from the Page edge", PAGE_EDGE[i].field);
            assert_string_equal(e, PAGE_EDGE[i].page_name);
            const char *f = fields_from_edge_name(page_lts[j], PAGE_EDGE[i].page_name);
            assert_non_null(f);
            assert_string_equal(f, PAGE_EDGE[i].field);
        }
    }
}

static void test_edge_names_read_back_to_ours(void **state)
{
    (void)state;
    assert_string_equal(fields_from_edge_name(LOGIN_FACEBOOK, "message_reads"), "messaging_seen");
    assert_string_equal(fields_from_edge_name(LOGIN_MESSENGER, "messaging_referrals"),
                        "messaging_referral");
    assert_string_equal(fields_from_edge_name(LOGIN_MESSENGER, "messaging_handovers"),
                        "messaging_handover");
    assert_string_equal(fields_from_edge_name(LOGIN_MESSENGER, "messages"), "messages");
    /* Our spelling is not what the Page edge reports. */
    assert_null(fields_from_edge_name(LOGIN_MESSENGER, "messaging_seen"));
    assert_null(fields_from_edge_name(LOGIN_FACEBOOK, "messaging_referral"));
    assert_null(fields_from_edge_name(LOGIN_FACEBOOK, "messaging_handover"));
    /* Instagram-only fields and other Page fields are none of ours there. */
    assert_null(fields_from_edge_name(LOGIN_FACEBOOK, "comments"));
    assert_null(fields_from_edge_name(LOGIN_MESSENGER, "story_insights"));
    assert_null(fields_from_edge_name(LOGIN_FACEBOOK, "feed"));
    assert_null(fields_from_edge_name(LOGIN_MESSENGER, "message_edits"));
    assert_null(fields_from_edge_name(LOGIN_INSTAGRAM, "feed"));
    assert_null(fields_from_edge_name(LOGIN_INSTAGRAM, "Messages"));
    assert_null(fields_from_edge_name(LOGIN_INSTAGRAM, ""));
    assert_null(fields_from_edge_name(LOGIN_INSTAGRAM, NULL));
}

static void test_edge_names_refuse_unknown_input(void **state)
{
    (void)state;
    const char *unknown[] = {"", "Comments", "message_reads", "messages ", "feed", "message_edit"};
    for (size_t i = 0; i < HB_ARRAY_SIZE(unknown); i++)
        for (size_t j = 0; j < 3; j++)
            if (fields_edge_name(LTS[j], unknown[i]) != NULL)
                fail_msg("\"%s\" has an edge name with %s", unknown[i], LT_NAMES[j]);
    assert_null(fields_edge_name(LOGIN_INSTAGRAM, NULL));
    assert_null(fields_edge_name((enum login_type)3, "messages"));
    assert_null(fields_edge_name((enum login_type) - 1, "messages"));
    assert_null(fields_from_edge_name((enum login_type)3, "messages"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_cell_matches_the_setup_guide),
        cmocka_unit_test(test_the_sentences_read_as_documented),
        cmocka_unit_test(test_included_fields_name_the_field_they_arrive_with),
        cmocka_unit_test(test_fields_all_lists_the_guide_in_order),
        cmocka_unit_test(test_unknown_fields_are_not_found),
        cmocka_unit_test(test_empty_field_is_not_found),
        cmocka_unit_test(test_why_is_cleared_on_success_and_may_be_null),
        cmocka_unit_test(test_out_of_range_login_type_is_refused),
        cmocka_unit_test(test_only_page_based_setups_need_a_page),
        cmocka_unit_test(test_login_types_parse_and_print),
        cmocka_unit_test(test_instagram_edge_uses_our_names),
        cmocka_unit_test(test_page_edge_uses_messenger_names),
        cmocka_unit_test(test_edge_names_read_back_to_ours),
        cmocka_unit_test(test_edge_names_refuse_unknown_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
