/*
 * t_ingest.c - signed POSTs on /webhooks/{app-id}, the happy paths: every
 * delivery shape Meta sends (tests/fixtures/) is answered 200 only once it is
 * stored, byte for byte, split into events of the right field, entry, time
 * and tenant; signatures are checked over the raw bytes against every secret
 * of the app, and a bad one stores nothing.
 */
#include <openssl/sha.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/integration/harness.h"

#define APP_ID "1234567890"
#define SECRET "ig-app-secret-0123456789abcdef"
#define SECRET2 "meta-app-secret-fedcba9876543210"

#define IG_A "17841405822304914"
#define IG_B "17841400123456789"

/* One event a fixture must produce; time_ms is entry.time in milliseconds. */
struct want_event {
    const char *field;
    const char *entry_id;
    long long time_ms;
};

struct fixture_case {
    const char *file;
    const char *object;
    size_t nevents;
    struct want_event ev[8];
    /* Run as "WITH d AS (SELECT <delivery id> AS id) <check_sql>": proves the
     * payload jsonb holds the decoded values (escapes, \/ and all). */
    const char *check_sql;
    const char *check_want;
};

/* clang-format off */
static const struct fixture_case FIXTURES[] = {
    {"comments.json", "instagram", 1, {{"comments", IG_A, 1773142345000LL}},
     "SELECT payload->'value'->>'text' FROM events, d WHERE delivery_id = d.id",
     "Trop beau \xf0\x9f\x91\x91 j'adore l'\xc3\xa9t\xc3\xa9 ! https://example.com/x"},
    {"live_comments.json", "instagram", 1, {{"live_comments", IG_A, 1773142405000LL}},
     "SELECT (payload->'value'->>'text') || ' ' || (payload->'value'->'media'->>'id')"
     " FROM events, d WHERE delivery_id = d.id",
     "\xc2\xa1Hola! \xf0\x9f\x94\xa5\xf0\x9f\x94\xa5 18045678901234567"},
    {"mentions.json", "instagram", 1, {{"mentions", IG_A, 1773142465000LL}},
     "SELECT (payload->'value'->>'media_id') || ' ' || (payload->'value'->>'comment_id')"
     " FROM events, d WHERE delivery_id = d.id",
     "17918195224117851 17894227972186120"},
    {"story_insights.json", "instagram", 1, {{"story_insights", IG_A, 1773228745000LL}},
     "SELECT (payload->'value'->>'reach') || '/' || (payload->'value'->>'impressions')"
     " FROM events, d WHERE delivery_id = d.id",
     "44/444"},
    {"messages.json", "instagram", 1, {{"messages", IG_A, 1773142401512LL}},
     "SELECT (payload->'message'->>'text') || ' ' || length(payload->'message'->>'mid')"
     " FROM events, d WHERE delivery_id = d.id",
     "Bonjour, vous livrez \xc3\xa0 Montr\xc3\xa9" "al ? \xf0\x9f\x99\x8f 187"},
    {"messages_attachments.json", "instagram", 1, {{"messages", IG_A, 1773142406712LL}},
     "SELECT jsonb_array_length(payload->'message'->'attachments') || ' '"
     " || (payload->'message'->'attachments'->0->'payload'->>'url')"
     " FROM events, d WHERE delivery_id = d.id",
     "2 https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=17912345678901234"
     "&signature=AbzX8kP3qLmN0vR7tYw2HcJ5dE9fG1iK4oS6uB8xZ"},
    {"message_echoes.json", "instagram", 1, {{"message_echoes", IG_A, 1773142461812LL}},
     "SELECT (payload->'message'->>'is_echo') || ' ' || (payload->'sender'->>'id')"
     " FROM events, d WHERE delivery_id = d.id",
     "true " IG_A},
    {"message_reactions.json", "instagram", 2,
     {{"message_reactions", IG_A, 1773142465612LL}, {"message_reactions", IG_A, 1773142465612LL}},
     "SELECT string_agg((payload->'reaction'->>'action') || ':'"
     " || coalesce(payload->'reaction'->>'emoji', '-'), ','"
     " ORDER BY (payload->>'timestamp')::bigint) FROM events, d WHERE delivery_id = d.id",
     "react:\xe2\x9d\xa4\xef\xb8\x8f,unreact:-"},
    {"messaging_postbacks.json", "instagram", 1, {{"messaging_postbacks", IG_A, 1773142471612LL}},
     "SELECT (payload->'postback'->>'title') || '/' || (payload->'postback'->>'payload')"
     " FROM events, d WHERE delivery_id = d.id",
     "Voir le catalogue/CATALOG_SPRING_2026"},
    {"messaging_seen.json", "instagram", 1, {{"messaging_seen", IG_A, 1773142481612LL}},
     "SELECT (payload ? 'sender')::text || ' ' || length(payload->'read'->>'mid')"
     " FROM events, d WHERE delivery_id = d.id",
     "false 187"},
    {"messaging_referral.json", "instagram", 1, {{"messaging_referral", IG_A, 1773142491612LL}},
     "SELECT (payload->'referral'->>'ref') || ' '"
     " || (payload->'referral'->'ads_context_data'->>'photo_url')"
     " FROM events, d WHERE delivery_id = d.id",
     "spring_sale https://scontent.xx.fbcdn.net/v/t45.1600-4/ad_spring.jpg"},
    {"messaging_optins.json", "instagram", 1, {{"messaging_optins", IG_A, 1773142501612LL}},
     "SELECT (payload->'optin'->>'type') || ' '"
     " || (payload->'optin'->>'notification_messages_timezone')"
     " FROM events, d WHERE delivery_id = d.id",
     "notification_messages America/Toronto"},
    {"messaging_handover.json", "instagram", 1, {{"messaging_handover", IG_A, 1773142511612LL}},
     "SELECT payload->'pass_thread_control'->>'new_owner_app_id'"
     " FROM events, d WHERE delivery_id = d.id",
     "263902037430900"},
    {"messaging_policy_enforcement.json", "instagram", 1,
     {{"messaging_policy_enforcement", IG_A, 1773142521612LL}},
     "SELECT (payload->'policy_enforcement'->>'action') || ' '"
     " || position('https://developers.facebook.com/policy/'"
     "             in payload->'policy_enforcement'->>'reason')"
     " FROM events, d WHERE delivery_id = d.id",
     "block 41"},
    {"response_feedback.json", "instagram", 1, {{"response_feedback", IG_A, 1773142531612LL}},
     "SELECT payload->'response_feedback'->>'feedback' FROM events, d WHERE delivery_id = d.id",
     "Good response"},
    {"message_edit.json", "instagram", 1, {{"message_edit", IG_A, 1773142541612LL}},
     "SELECT (payload->'message_edit'->>'text') || ' #' || (payload->'message_edit'->>'num_edit')"
     " FROM events, d WHERE delivery_id = d.id",
     "Bonjour, vous livrez \xc3\xa0 Qu\xc3\xa9" "bec ? \xf0\x9f\x99\x8f #1"},
    {"messages_deleted.json", "instagram", 1, {{"messages", IG_A, 1773142551612LL}},
     "SELECT payload->'message'->>'is_deleted' FROM events, d WHERE delivery_id = d.id",
     "true"},
    {"standby.json", "instagram", 1, {{"standby", IG_A, 1773142561612LL}},
     "SELECT payload->'message'->>'text' FROM events, d WHERE delivery_id = d.id",
     "Est-ce que quelqu'un est l\xc3\xa0 ? \xf0\x9f\x91\x80"},
    /* Without "Include Values" each changed field is one event: the entry's
     * id and time with that one name. */
    {"changed_fields.json", "instagram", 2,
     {{"comments", IG_A, 1773142645000LL}, {"mentions", IG_A, 1773142645000LL}},
     "SELECT string_agg((payload->'changed_fields')::text || ' ' || (payload->>'id'), ','"
     " ORDER BY field) FROM events, d WHERE delivery_id = d.id",
     "[\"comments\"] " IG_A ",[\"mentions\"] " IG_A},
    /* A messaging entry whose time is in seconds: the magnitude rule scales it. */
    {"test_button.json", "instagram", 1, {{"messages", "0", 1773142700000LL}},
     "SELECT jsonb_typeof(payload->'timestamp') || ' ' || (payload->>'timestamp')"
     " FROM events, d WHERE delivery_id = d.id",
     "string 1527459824"},
    {"messages_as_change.json", "instagram", 1, {{"messages", "0", 1773142750000LL}},
     "SELECT (payload->>'field') || ' ' || (payload->'value'->'message'->>'text')"
     " FROM events, d WHERE delivery_id = d.id",
     "messages random_text"},
    {"page.json", "page", 1, {{"feed", "107280815400123", 1773142745000LL}},
     "SELECT (payload->'value'->>'message') || ' ' || (payload->'value'->'post'->>'permalink_url')"
     " FROM events, d WHERE delivery_id = d.id",
     "Tr\xc3\xa8s belle boutique \xf0\x9f\x91\x8d "
     "https://www.facebook.com/107280815400123/posts/pfbid02abc"},
    {"batch.json", "instagram", 6,
     {{"messages", IG_A, 1773142601612LL},
      {"messages", IG_A, 1773142601612LL},
      {"messaging_seen", IG_A, 1773142601612LL},
      {"comments", IG_B, 1773142845000LL},
      {"mentions", IG_B, 1773142845000LL},
      {"standby", IG_A, 1773142601812LL}},
     "SELECT string_agg(t, '|' ORDER BY t COLLATE \"C\") FROM ("
     " SELECT coalesce(payload->'message'->>'text', payload->'value'->>'text', '-') AS t"
     " FROM events, d WHERE delivery_id = d.id) s",
     "-|-|Deuxi\xc3\xa8me message|En attente|Premier message \xe2\x9c\xa8"
     "|Superbe \xf0\x9f\x98\x8d"},
};

/* clang-format on */

/* ---- helpers ---- */


static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "field|entry|time_ms" for each wanted event, sorted bytewise, space-joined:
 * the order events land in is the writer's business, not the test's. */
static char *want_events(const struct fixture_case *fc)
{
    char *keys[8];
    size_t total = 1;
    for (size_t i = 0; i < fc->nevents; i++) {
        if (asprintf(&keys[i], "%s|%s|%lld", fc->ev[i].field, fc->ev[i].entry_id,
                     fc->ev[i].time_ms) < 0)
            tap_bail("out of memory");
        total += strlen(keys[i]) + 1;
    }
    qsort(keys, fc->nevents, sizeof(keys[0]), cmp_str);
    char *out = calloc(1, total);
    size_t at = 0;
    for (size_t i = 0; i < fc->nevents; i++) {
        size_t n = strlen(keys[i]);
        if (i > 0)
            out[at++] = ' ';
        memcpy(out + at, keys[i], n);
        at += n;
        free(keys[i]);
    }
    return out;
}

static char *got_events(struct h_db *db, long long delivery_id)
{
    return h_db_text(
        db,
        "SELECT string_agg(k, ' ' ORDER BY k COLLATE \"C\") FROM ("
        " SELECT field || '|' || coalesce(entry_id, '-') || '|'"
        "  || coalesce((extract(epoch FROM entry_time) * 1000)::bigint::text, '-') AS k"
        " FROM events WHERE delivery_id = %lld) s",
        delivery_id);
}

static long long count_deliveries(struct h_db *db)
{
    return h_db_int(db, "SELECT count(*) FROM deliveries");
}

static long long count_events(struct h_db *db)
{
    return h_db_int(db, "SELECT count(*) FROM events");
}

/* POSTs body with the given X-Hub-Signature-256 value (NULL: no header). */
static void post_with_sig(struct h_resp *r, const struct h_server *s, const char *sig,
                          const void *body, size_t len)
{
    char header[256], url[128];
    snprintf(url, sizeof(url), "%s/webhooks/%s", s->base, APP_ID);
    if (sig != NULL)
        snprintf(header, sizeof(header), "X-Hub-Signature-256: %s", sig);
    else
        snprintf(header, sizeof(header), "X-Hub-Signature-256:"); /* curl drops it */
    const char *headers[] = {"Content-Type: application/json", header, NULL};
    h_http(r, "POST", url, headers, body, len);
}

/* ---- the fixtures ---- */

static void check_fixture(struct h_db *db, const struct h_server *s, long long tenant_id,
                          const struct fixture_case *fc)
{
    char path[128], sig[72], hash[65];
    snprintf(path, sizeof(path), "tests/fixtures/%s", fc->file);
    size_t len;
    char *body = h_read_fixture(path, &len);
    h_sign(SECRET, body, len, sig);
    h_sha256_hex(body, len, hash);

    struct h_resp r;
    h_post_signed(&r, s, APP_ID, SECRET, body, len);
    const char *f = fc->file;
    tap_is_int(r.status, 200, "%s: a signed delivery gets 200", f);
    tap_contains(r.body, "\"status\":\"stored\"", "%s: the answer says stored", f);
    tap_is_int(h_json_num(r.body, "events"), (long long)fc->nevents,
               "%s: the answer counts %zu event(s)", f, fc->nevents);
    tap_is_int(h_json_num(r.body, "duplicates"), 0, "%s: a first delivery has no duplicates", f);
    long long id = h_json_num(r.body, "delivery_id");
    h_resp_free(&r);

    tap_is_int(h_db_int(db,
                        "SELECT count(*) FROM deliveries WHERE id = %lld AND status = 'accepted'"
                        " AND reject_reason IS NULL AND item_count = %zu"
                        " AND app_id = (SELECT id FROM apps WHERE meta_app_id = '%s')",
                        id, fc->nevents, APP_ID),
               1, "%s: the answer's delivery_id is an accepted delivery of %zu item(s)", f,
               fc->nevents);
    char *got = h_db_text(db,
                          "SELECT encode(sha256(body), 'hex') || ' ' || octet_length(body)"
                          " FROM deliveries WHERE id = %lld",
                          id);
    char want[96];
    snprintf(want, sizeof(want), "%s %zu", hash, len);
    tap_is_str(got, want, "%s: deliveries.body is byte-identical to what was sent", f);
    free(got);
    got = h_db_text(db, "SELECT signature FROM deliveries WHERE id = %lld", id);
    tap_is_str(got, sig, "%s: the verified signature is kept", f);
    free(got);

    got = h_db_text(
        db, "SELECT string_agg(DISTINCT object, ',') FROM events WHERE delivery_id = %lld", id);
    tap_is_str(got, fc->object, "%s: events carry object \"%s\"", f, fc->object);
    free(got);
    tap_is_int(h_db_int(db,
                        "SELECT count(*) FROM events WHERE delivery_id = %lld"
                        " AND tenant_id = %lld",
                        id, tenant_id),
               (long long)fc->nevents, "%s: all %zu event(s) belong to the app's tenant", f,
               fc->nevents);
    char *want_ev = want_events(fc);
    got = got_events(db, id);
    tap_is_str(got, want_ev, "%s: events have the right field, entry_id and entry_time", f);
    free(got);
    free(want_ev);

    got = h_db_text(db, "WITH d AS (SELECT %lld::bigint AS id) %s", id, fc->check_sql);
    tap_is_str(got, fc->check_want, "%s: the payload jsonb holds the decoded values", f);
    free(got);
    free(body);
}

/* ---- dedup ---- */

static void check_dedup(struct h_db *db, const struct h_server *s)
{
    size_t len;
    char *body = h_read_fixture("tests/fixtures/messages.json", &len);
    long long ev_before = count_events(db), del_before = count_deliveries(db);
    struct h_resp r;
    h_post_signed(&r, s, APP_ID, SECRET, body, len);
    tap_is_int(r.status, 200, "a retried delivery still gets 200");
    tap_is_int(h_json_num(r.body, "duplicates"), 1, "the retry's one item is counted a duplicate");
    h_resp_free(&r);
    tap_is_int(count_events(db), ev_before, "a retried item is not stored twice");
    tap_is_int(count_deliveries(db), del_before + 1, "the retried delivery itself is still kept");

    /* Meta may re-batch a retried item with others, spaced and ordered differently. */
    const char *m = strstr(body, "\"mid\":\"");
    if (m == NULL)
        tap_bail("messages.json has no mid");
    m += 7;
    int midlen = (int)strcspn(m, "\"");
    char *rebatch = NULL;
    if (asprintf(&rebatch,
                 "{ \"entry\": [ { \"id\": \"" IG_A
                 "\", \"time\": 1773142999000, \"messaging\": [\n"
                 "  {\"message\": {\"text\": \"Bonjour, vous livrez \\u00e0 Montr\\u00e9al ? "
                 "\\ud83d\\ude4f\", \"mid\": \"%.*s\"},\n"
                 "   \"timestamp\": 1773142401187, \"recipient\": {\"id\": \"" IG_A "\"},"
                 " \"sender\": {\"id\": \"6283529878352164\"}},\n"
                 "  {\"sender\":{\"id\":\"6283529878352164\"},\"recipient\":{\"id\":\"" IG_A "\"},"
                 "\"timestamp\":1773142998000,\"message\":{\"mid\":\"m_rebatch_new\",\"text\":"
                 "\"new\"}}\n"
                 "] } ], \"object\": \"instagram\" }",
                 midlen, m) < 0)
        tap_bail("out of memory");
    free(body);
    ev_before = count_events(db);
    h_post_signed(&r, s, APP_ID, SECRET, rebatch, strlen(rebatch));
    tap_is_int(r.status, 200, "a re-batched retry gets 200");
    tap_is_int(h_json_num(r.body, "events"), 2, "the re-batched delivery holds 2 items");
    tap_is_int(h_json_num(r.body, "duplicates"), 1,
               "an item re-sent with other spacing and key order is a duplicate");
    h_resp_free(&r);
    tap_is_int(count_events(db), ev_before + 1, "only the new item of the re-batch is stored");
    free(rebatch);
}

/* ---- signatures ---- */

static void check_signatures(struct h_db *db, const struct h_server *s)
{
    struct h_resp r;
    char sig[72];
    static const char body[] =
        "{\"entry\":[{\"id\":\"" IG_A "\",\"time\":1773143000,\"changes\":[{\"field\":\"mentions\","
        "\"value\":{\"media_id\":\"17918195224110001\",\"comment_id\":\"17894227972180001\"}}]}],"
        "\"object\":\"instagram\"}";
    size_t len = strlen(body);

    /* Hex digits in upper case are the same signature. */
    h_sign(SECRET, body, len, sig);
    char upper[72];
    snprintf(upper, sizeof(upper), "%s", sig);
    for (char *p = upper + 7; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    tap_ok(strcmp(upper, sig) != 0, "the uppercase signature differs from the lowercase one");
    long long before = count_deliveries(db);
    post_with_sig(&r, s, upper, body, len);
    tap_is_int(r.status, 200, "an uppercase-hex signature is accepted");
    long long id = h_json_num(r.body, "delivery_id");
    h_resp_free(&r);
    tap_is_int(
        h_db_int(db, "SELECT count(*) FROM deliveries WHERE id = %lld AND status = 'accepted'", id),
        1, "the uppercase-signed delivery is stored");
    tap_is_int(count_deliveries(db), before + 1, "exactly one delivery was added");

    /* Every refusal below must leave both tables untouched. */
    before = count_deliveries(db);
    long long ev_before = count_events(db);
    static const char other[] =
        "{\"entry\":[{\"id\":\"" IG_A "\",\"time\":1773143001,\"changes\":[{\"field\":\"mentions\","
        "\"value\":{\"media_id\":\"17918195224110002\",\"comment_id\":\"17894227972180002\"}}]}],"
        "\"object\":\"instagram\"}";
    size_t olen = strlen(other);

    h_sign("not-the-app-secret", other, olen, sig);
    post_with_sig(&r, s, sig, other, olen);
    tap_is_int(r.status, 403, "a signature made with another secret gets 403");
    tap_contains(r.body, "\"code\":\"bad_signature\"",
                 "the wrong signature is a bad_signature error");
    h_resp_free(&r);

    h_sign(SECRET, body, len, sig); /* the right secret, but over another body */
    post_with_sig(&r, s, sig, other, olen);
    tap_is_int(r.status, 403, "a valid signature of another body gets 403");
    h_resp_free(&r);

    post_with_sig(&r, s, NULL, other, olen);
    tap_is_int(r.status, 403, "a missing X-Hub-Signature-256 gets 403");
    tap_contains(r.body, "\"code\":\"bad_signature\"",
                 "the missing signature is a bad_signature error");
    h_resp_free(&r);

    char good[72];
    h_sign(SECRET, other, olen, good);
    char malformed[6][140];
    snprintf(malformed[0], sizeof(malformed[0]), "%.70s", good);       /* 63 hex digits */
    snprintf(malformed[1], sizeof(malformed[1]), "%s0", good);         /* 65 hex digits */
    snprintf(malformed[2], sizeof(malformed[2]), "%s", good + 7);      /* no sha256= */
    snprintf(malformed[3], sizeof(malformed[3]), "sha1=%s", good + 7); /* wrong algorithm */
    snprintf(malformed[4], sizeof(malformed[4]), "%.69sg", good);      /* a non-hex digit */
    snprintf(malformed[5], sizeof(malformed[5]), "sha256=%s", "");     /* empty digest */
    static const char *const why[] = {"63 hex digits",  "65 hex digits",   "no sha256= prefix",
                                      "a sha1= prefix", "a non-hex digit", "an empty digest"};
    for (int i = 0; i < 6; i++) {
        post_with_sig(&r, s, malformed[i], other, olen);
        tap_is_int(r.status, 403, "a signature with %s gets 403", why[i]);
        h_resp_free(&r);
    }

    /* Signing a re-serialised body (\/ unescaped, as a JSON library would
     * write it) does not verify the raw bytes Meta sent. */
    size_t clen;
    char *comments = h_read_fixture("tests/fixtures/comments.json", &clen);
    char *reser = malloc(clen + 1);
    size_t rl = 0;
    for (size_t i = 0; i < clen; i++) {
        if (comments[i] == '\\' && i + 1 < clen && comments[i + 1] == '/')
            continue;
        reser[rl++] = comments[i];
    }
    tap_ok(rl < clen, "the comments fixture holds \\/ escapes");
    h_sign(SECRET, reser, rl, sig);
    post_with_sig(&r, s, sig, comments, clen);
    tap_is_int(r.status, 403, "a signature over re-serialised JSON does not verify the raw body");
    h_resp_free(&r);
    free(reser);
    free(comments);

    tap_is_int(count_deliveries(db), before, "refused signatures stored no delivery");
    tap_is_int(count_events(db), ev_before, "refused signatures stored no event");

    /* The comments fixture went in with its escapes intact. */
    tap_ok(h_db_int(db, "SELECT count(*) FROM deliveries"
                        " WHERE position(convert_to('\\/', 'UTF8') in body) > 0"
                        " AND position(convert_to('\\ud83d\\udc51', 'UTF8') in body) > 0") >= 1,
           "a stored body keeps its \\/ and \\uXXXX escapes as sent");
}

/* ---- a second secret ---- */

static void check_second_secret(struct h_db *db, const struct h_server *s)
{
    struct h_resp r;
    static const char first[] =
        "{\"object\":\"instagram\",\"entry\":[{\"time\":1773143100000,\"id\":\"" IG_A "\","
        "\"messaging\":[{\"sender\":{\"id\":\"6283529878352164\"},\"recipient\":{\"id\":\"" IG_A
        "\"},\"timestamp\":1773143099000,\"message\":{\"mid\":\"m_secret2\",\"text\":\"two\"}}]}]}";
    static const char second[] =
        "{\"object\":\"instagram\",\"entry\":[{\"time\":1773143200000,\"id\":\"" IG_A "\","
        "\"messaging\":[{\"sender\":{\"id\":\"6283529878352164\"},\"recipient\":{\"id\":\"" IG_A
        "\"},\"timestamp\":1773143199000,\"message\":{\"mid\":\"m_secret1\",\"text\":\"one\"}}]}]}";

    h_post_signed(&r, s, APP_ID, SECRET2, first, strlen(first));
    tap_is_int(r.status, 403, "a secret the app does not have yet gets 403");
    h_resp_free(&r);

    char env_secret[128];
    snprintf(env_secret, sizeof(env_secret), "HUBBUB_APP_SECRET=%s", SECRET2);
    const char *env[] = {env_secret, NULL};
    const char *argv[] = {"app", "add-secret", "--app-id", APP_ID, NULL};
    char *out = NULL;
    int rc = h_run(db, argv, env, NULL, &out);
    tap_is_int(rc, 0, "hubbub app add-secret succeeds");
    if (rc != 0)
        tap_diag("%s", out);
    free(out);

    /* The server re-reads the app after HUBBUB_APP_CACHE_TTL (100ms here). */
    long status = 0;
    long long id = -1;
    int64_t deadline = h_now_ms() + 3000;
    while (h_now_ms() < deadline) {
        h_post_signed(&r, s, APP_ID, SECRET2, first, strlen(first));
        status = r.status;
        id = h_json_num(r.body, "delivery_id");
        h_resp_free(&r);
        if (status != 403)
            break;
        h_sleep_ms(50);
    }
    tap_is_int(status, 200, "a delivery signed with the added secret gets 200");
    tap_is_int(h_db_int(db,
                        "SELECT count(*) FROM events WHERE delivery_id = %lld"
                        " AND payload->'message'->>'mid' = 'm_secret2'",
                        id),
               1, "the delivery signed with the added secret is stored");

    h_post_signed(&r, s, APP_ID, SECRET, second, strlen(second));
    tap_is_int(r.status, 200, "the first secret still verifies after another was added");
    id = h_json_num(r.body, "delivery_id");
    h_resp_free(&r);
    tap_is_int(h_db_int(db,
                        "SELECT count(*) FROM events WHERE delivery_id = %lld"
                        " AND payload->'message'->>'mid' = 'm_secret1'",
                        id),
               1, "the delivery signed with the first secret is stored");
}

int main(void)
{
    struct h_db db;
    struct h_server s;
    h_db_create(&db, "ingest");
    h_setup_app(&db, "acme", APP_ID, "verify-me", SECRET);
    const char *env[] = {"HUBBUB_APP_CACHE_TTL=100ms", NULL};
    h_server_start(&s, &db, env);
    long long tenant_id = h_db_int(&db, "SELECT id FROM tenants WHERE name = 'acme'");
    tap_ok(tenant_id > 0, "the app's tenant exists");

    for (size_t i = 0; i < sizeof(FIXTURES) / sizeof(FIXTURES[0]); i++)
        check_fixture(&db, &s, tenant_id, &FIXTURES[i]);
    check_dedup(&db, &s);
    check_signatures(&db, &s);
    check_second_secret(&db, &s);

    struct h_resp r;
    char url[128];
    snprintf(url, sizeof(url), "%s/healthz", s.base);
    h_http(&r, "GET", url, NULL, NULL, 0);
    tap_is_int(r.status, 200, "the server still answers /healthz");
    h_resp_free(&r);
    char *log = h_server_log(&s);
    tap_ok(strstr(log, SECRET) == NULL && strstr(log, "Trop beau") == NULL,
           "neither the secret nor a payload appears in the log");
    free(log);
    tap_is_int(h_server_stop(&s, SIGTERM), 0, "SIGTERM stops the server with status 0");
    h_db_drop(&db);
    return tap_done();
}
