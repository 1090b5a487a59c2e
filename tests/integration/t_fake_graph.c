/*
 * t_fake_graph.c - the fake Graph API's self-test (no hubbub, no database):
 * its strictness, the subscribed_apps round trip, the Send API, every failure
 * mode with its status, body and headers, recording and counts, Expect:
 * 100-continue, keep-alive, and concurrent keep-alive clients.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/fake_graph/fake_graph.h"
#include "tests/integration/harness.h"

#define VER "v25.0"
#define IG_NODE "17841400000000001"
#define IG_TOKEN "IGAAtest-token+/=one"
#define IG_TOKEN_Q "IGAAtest-token%2B%2F%3Done" /* percent-encoded */
#define IG_NODE2 "17841400000000002"
#define IG_TOKEN2 "IGAAtoken-two"
#define FB_PAGE "104000000000001"
#define FB_TOKEN "EAAGpage-token"
#define APP "1234567890"
#define USER "987654321012345"

/* ---- a small libcurl client that keeps its connection ---- */

struct resp {
    long status;
    char *body;
    char *headers;
    long connects; /* new connections this request opened */
    double seconds;
    bool is_timeout;
};

struct sink {
    char *data;
    size_t len;
};

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    struct sink *s = arg;
    size_t add = size * n;
    s->data = realloc(s->data, s->len + add + 1);
    memcpy(s->data + s->len, p, add);
    s->len += add;
    s->data[s->len] = '\0';
    return add;
}

static void resp_free(struct resp *r)
{
    free(r->body);
    free(r->headers);
    memset(r, 0, sizeof(*r));
}

/* url_path is appended to fg's base; headers NULL-terminated (may be NULL);
 * timeout_ms 0: 10 s. "Expect:" is switched off unless a header sets it. */
static void call(CURL *c, struct resp *r, struct fg *fg, const char *method, const char *url_path,
                 const char *const *headers, const char *body, long timeout_ms)
{
    char url[2048];
    snprintf(url, sizeof(url), "%s%s", fg_base_url(fg), url_path);
    struct sink b = {0}, h = {0};
    struct curl_slist *list = NULL;
    bool has_expect = false;
    for (const char *const *p = headers; p != NULL && *p != NULL; p++) {
        list = curl_slist_append(list, *p);
        has_expect = has_expect || strncasecmp(*p, "Expect:", 7) == 0;
    }
    if (!has_expect)
        list = curl_slist_append(list, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 10000L);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    } else {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    CURLcode rc = curl_easy_perform(c);
    memset(r, 0, sizeof(*r));
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    r->is_timeout = rc == CURLE_OPERATION_TIMEDOUT;
    curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &r->connects);
    curl_easy_getinfo(c, CURLINFO_TOTAL_TIME, &r->seconds);
    r->body = b.data != NULL ? b.data : strdup("");
    r->headers = h.data != NULL ? h.data : strdup("");
    curl_slist_free_all(list);
}

static CURL *client(void)
{
    CURL *c = curl_easy_init();
    if (c == NULL)
        tap_bail("curl_easy_init failed");
    return c;
}

static const char *const JSON_IG[] = {"Content-Type: application/json",
                                      "Authorization: Bearer " IG_TOKEN, NULL};
static const char *const BEARER_IG[] = {"Authorization: Bearer " IG_TOKEN, NULL};

/* A send of text to USER on the Instagram fake; returns the status. */
static long send_text(CURL *c, struct fg *fg, const char *recipient, const char *text,
                      struct resp *out)
{
    char body[4096];
    snprintf(body, sizeof(body), "{\"recipient\":{\"id\":\"%s\"},\"message\":{\"text\":\"%s\"}}",
             recipient, text);
    struct resp r;
    call(c, &r, fg, "POST", "/" VER "/" IG_NODE "/messages", JSON_IG, body, 0);
    long st = r.status;
    if (out != NULL)
        *out = r;
    else
        resp_free(&r);
    return st;
}

static bool has_header(const char *headers, const char *needle)
{
    return headers != NULL && strcasestr(headers, needle) != NULL;
}

/* ---- strictness and the round trip ---- */

static void test_subscribed_apps(struct fg *ig, struct fg *fb, CURL *c)
{
    struct resp r;
    call(c, &r, ig, "GET", "/" VER "/" IG_NODE "/subscribed_apps", BEARER_IG, NULL, 0);
    tap_is_int(r.status, 200, "GET subscribed_apps of a fresh node answers 200");
    tap_is_str(r.body, "{\"data\":[]}", "... with no data");
    tap_ok(has_header(r.headers, "X-App-Usage: {\"call_count\":1,"), "... and X-App-Usage");
    resp_free(&r);

    call(c, &r, ig, "POST",
         "/" VER "/" IG_NODE
         "/subscribed_apps?subscribed_fields=comments,messages&access_token=" IG_TOKEN_Q,
         NULL, "", 0);
    tap_is_int(r.status, 200, "POST with fields and a percent-encoded token in the query: 200");
    tap_is_str(r.body, "{\"success\":true}", "... {\"success\":true}");
    resp_free(&r);
    char *f = fg_fields(ig, IG_NODE);
    tap_is_str(f, "comments,messages", "the node's fields are the list sent");
    free(f);

    call(c, &r, ig, "GET", "/" VER "/" IG_NODE "/subscribed_apps", BEARER_IG, NULL, 0);
    tap_is_str(r.body,
               "{\"data\":[{\"id\":\"" APP "\",\"name\":\"Test App " APP
               "\",\"subscribed_fields\":[\"comments\",\"messages\"]}]}",
               "GET lists the app with its fields");
    resp_free(&r);

    static const char *const form[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    call(c, &r, ig, "POST", "/" VER "/me/subscribed_apps", form,
         "subscribed_fields=messages%2Cmessaging_seen%2Cmessages&access_token=" IG_TOKEN_Q, 0);
    tap_is_int(r.status, 200, "POST /me with fields and token in a form body: 200");
    resp_free(&r);
    f = fg_fields(ig, IG_NODE);
    tap_is_str(f, "messages,messaging_seen", "the list replaces the old one, duplicates dropped");
    free(f);

    call(c, &r, ig, "POST", "/" VER "/" IG_NODE "/subscribed_apps", JSON_IG,
         "{\"subscribed_fields\":[\"comments\",\"standby\"]}", 0);
    tap_is_int(r.status, 200, "POST with a JSON array body: 200");
    resp_free(&r);
    tap_ok(fg_wait_fields(ig, IG_NODE, "standby,comments", 10), "fg_wait_fields compares as sets");
    tap_ok(!fg_wait_fields(ig, IG_NODE, "standby", 30), "... and times out on a different set");

    call(c, &r, ig, "POST", "/" VER "/" IG_NODE "/subscribed_apps?subscribed_fields=comments,bogus",
         BEARER_IG, "", 0);
    tap_is_int(r.status, 400, "one unknown field: 400");
    tap_is_int(h_json_num(r.body, "code"), 100, "... code 100");
    tap_contains(r.body,
                 "(#100) Param subscribed_fields[1] must be one of {comments, live_comments, ",
                 "... Meta's message naming the index");
    tap_contains(r.body, "} - got \\\"bogus\\\"\"", "... and the name");
    tap_contains(r.body, "\"type\":\"OAuthException\"", "... type OAuthException");
    tap_contains(r.body, "\"fbtrace_id\":\"", "... an fbtrace_id");
    tap_ok(has_header(r.headers, "X-App-Usage:"), "... X-App-Usage on errors too");
    resp_free(&r);
    tap_ok(fg_wait_fields(ig, IG_NODE, "comments,standby", 0), "the failed call changed nothing");

    static const char *const ig_refused[] = {"story_insights", "message_reads",
                                             "messaging_policy_enforcement", "Comments", NULL};
    for (const char *const *p = ig_refused; *p != NULL; p++) {
        char path[256];
        snprintf(path, sizeof(path), "/" VER "/" IG_NODE "/subscribed_apps?subscribed_fields=%s",
                 *p);
        call(c, &r, ig, "POST", path, BEARER_IG, "", 0);
        tap_is_int(r.status, 400, "the Instagram edge refuses %s", *p);
        resp_free(&r);
    }

    call(c, &r, ig, "POST", "/" VER "/" IG_NODE "/subscribed_apps", BEARER_IG, "", 0);
    tap_is_int(h_json_num(r.body, "code"), 100, "no subscribed_fields: code 100");
    tap_contains(r.body, "(#100) The parameter subscribed_fields is required", "... required");
    resp_free(&r);

    /* The Page edge speaks Messenger names. */
    static const char *const fbh[] = {"Authorization: Bearer " FB_TOKEN, NULL};
    call(c, &r, fb, "POST", "/" VER "/" FB_PAGE "/subscribed_apps?subscribed_fields=comments", fbh,
         "", 0);
    tap_is_int(r.status, 400, "the Page edge refuses comments");
    tap_contains(r.body, "subscribed_fields[0] must be one of {messages, ", "... with its list");
    resp_free(&r);
    call(c, &r, fb, "POST",
         "/" VER "/" FB_PAGE
         "/subscribed_apps?subscribed_fields=messages,message_reads,messaging_referrals,"
         "messaging_handovers,message_echoes,standby",
         fbh, "", 0);
    tap_is_int(r.status, 200, "the Page edge takes Messenger names");
    resp_free(&r);

    call(c, &r, ig, "DELETE", "/" VER "/" IG_NODE "/subscribed_apps", BEARER_IG, NULL, 0);
    tap_is_str(r.body, "{\"success\":true}", "DELETE answers {\"success\":true}");
    resp_free(&r);
    call(c, &r, ig, "GET", "/" VER "/" IG_NODE "/subscribed_apps", BEARER_IG, NULL, 0);
    tap_is_str(r.body, "{\"data\":[]}", "... and GET shows none after it");
    resp_free(&r);

    fg_set_fields(ig, IG_NODE, "messages");
    call(c, &r, ig, "GET", "/" VER "/" IG_NODE "/subscribed_apps", BEARER_IG, NULL, 0);
    tap_contains(r.body, "\"subscribed_fields\":[\"messages\"]", "fg_set_fields makes drift");
    resp_free(&r);
    fg_set_fields(ig, IG_NODE, NULL);
}

static void expect_error(struct resp *r, long status, long code, const char *message,
                         const char *what)
{
    bool is_ok = r->status == status && h_json_num(r->body, "code") == code &&
                 strstr(r->body, message) != NULL && strstr(r->body, "\"fbtrace_id\":\"") != NULL;
    tap_ok(is_ok, "%s: HTTP %ld code %ld", what, status, code);
    if (!is_ok)
        tap_diag("got %ld %s", r->status, r->body);
}

static void test_auth_and_paths(struct fg *ig, CURL *c)
{
    struct resp r;
    call(c, &r, ig, "GET", "/" VER "/" IG_NODE "/subscribed_apps", NULL, NULL, 0);
    expect_error(&r, 400, 104, "An access token is required to request this resource.", "no token");
    tap_ok(has_header(r.headers, "WWW-Authenticate: OAuth"), "... with WWW-Authenticate");
    resp_free(&r);

    static const char *const wrong[] = {"Authorization: Bearer nope", NULL};
    call(c, &r, ig, "GET", "/" VER "/" IG_NODE "/subscribed_apps", wrong, NULL, 0);
    expect_error(&r, 400, 190, "Invalid OAuth access token - Cannot parse access token",
                 "an unknown token");
    tap_contains(r.body, "\"type\":\"OAuthException\"", "... OAuthException");
    resp_free(&r);

    static const char *const other[] = {"Authorization: Bearer " IG_TOKEN2, NULL};
    call(c, &r, ig, "GET", "/" VER "/" IG_NODE "/subscribed_apps", other, NULL, 0);
    expect_error(&r, 400, 190, "Invalid OAuth access token", "another node's token");
    resp_free(&r);

    call(c, &r, ig, "GET", "/v24.0/" IG_NODE "/subscribed_apps", BEARER_IG, NULL, 0);
    expect_error(&r, 400, 100, "Unsupported get request. Object with ID 'v24.0' does not exist",
                 "a wrong version");
    tap_is_int(h_json_num(r.body, "error_subcode"), 33, "... subcode 33");
    resp_free(&r);

    call(c, &r, ig, "GET", "/" IG_NODE "/subscribed_apps", BEARER_IG, NULL, 0);
    expect_error(&r, 400, 100, "Unsupported get request", "no version");
    resp_free(&r);

    call(c, &r, ig, "GET", "/" VER "/17841499999999999/subscribed_apps", BEARER_IG, NULL, 0);
    expect_error(&r, 400, 100, "Object with ID '17841499999999999' does not exist",
                 "an unknown node");
    resp_free(&r);

    call(c, &r, ig, "GET", "/" VER "/" IG_NODE "/subscribed_stuff", BEARER_IG, NULL, 0);
    expect_error(&r, 400, 2500, "Unknown path components: /subscribed_stuff", "an unknown edge");
    resp_free(&r);

    call(c, &r, ig, "GET", "/" VER "/" IG_NODE "/subscribed_apps/x", BEARER_IG, NULL, 0);
    expect_error(&r, 400, 2500, "Unknown path components: /subscribed_apps/x", "an extra path");
    resp_free(&r);

    call(c, &r, ig, "GET", "/" VER "/" IG_NODE "/messages", BEARER_IG, NULL, 0);
    expect_error(&r, 400, 100, "Unsupported get request", "GET on messages");
    resp_free(&r);

    /* Tokens can be replaced and invalidated. */
    fg_set_token(ig, IG_NODE2, "IGAAtoken-two-new");
    call(c, &r, ig, "GET", "/" VER "/" IG_NODE2 "/subscribed_apps", other, NULL, 0);
    expect_error(&r, 400, 190, "Invalid OAuth access token", "a replaced token");
    resp_free(&r);
    static const char *const newer[] = {"Authorization: Bearer IGAAtoken-two-new", NULL};
    call(c, &r, ig, "GET", "/" VER "/" IG_NODE2 "/subscribed_apps", newer, NULL, 0);
    tap_is_int(r.status, 200, "the new token works");
    resp_free(&r);
    fg_set_token(ig, IG_NODE2, NULL);
    call(c, &r, ig, "GET", "/" VER "/" IG_NODE2 "/subscribed_apps", newer, NULL, 0);
    tap_is_int(r.status, 400, "an invalidated token gets 400");
    resp_free(&r);
    fg_set_token(ig, IG_NODE2, IG_TOKEN2);
}

struct bad_send {
    const char *body;
    const char *message;
    const char *what;
};

static void test_sends(struct fg *ig, CURL *c)
{
    struct resp r;
    long before = fg_sends(ig, NULL, NULL);
    tap_is_int(send_text(c, ig, USER, "hello", &r), 200, "a text send: 200");
    tap_contains(r.body, "{\"recipient_id\":\"" USER "\",\"message_id\":\"", "... ids answered");
    char *mid1 = h_json_str(r.body, "message_id");
    tap_ok(mid1 != NULL && strlen(mid1) > 150, "... a long mid (%zu chars)",
           mid1 != NULL ? strlen(mid1) : 0);
    resp_free(&r);

    call(c, &r, ig, "POST", "/" VER "/me/messages", JSON_IG,
         "{\"recipient\":{\"id\":\"" USER "\"},\"messaging_type\":\"MESSAGE_TAG\","
         "\"tag\":\"HUMAN_AGENT\",\"message\":{\"text\":\"caf\\u00e9 \\ud83d\\udc51\","
         "\"reply_to\":{\"mid\":\"aWdfZAG1\"}}}",
         0);
    tap_is_int(r.status, 200, "/me/messages with HUMAN_AGENT, reply_to and escapes: 200");
    char *mid2 = h_json_str(r.body, "message_id");
    tap_ok(mid1 != NULL && mid2 != NULL && strcmp(mid1, mid2) != 0, "mids are unique");
    free(mid1);
    free(mid2);
    resp_free(&r);

    call(c, &r, ig, "POST", "/" VER "/" IG_NODE "/messages", JSON_IG,
         "{\"recipient\":{\"id\":\"" USER "\"},\"message\":{\"attachment\":{\"type\":\"image\","
         "\"payload\":{\"url\":\"https://example.com/a.png\"}}}}",
         0);
    tap_is_int(r.status, 200, "an image attachment: 200");
    resp_free(&r);

    char *long_ok = malloc(999 * 2 + 1), *long_bad = malloc(1000 * 2 + 1);
    for (int i = 0; i < 999; i++)
        memcpy(long_ok + 2 * i, "\xc3\xa9", 2);
    long_ok[999 * 2] = '\0';
    snprintf(long_bad, 1000 * 2 + 1, "%sx", long_ok);
    tap_is_int(send_text(c, ig, USER, long_ok, NULL), 200,
               "999 code points (1998 bytes) are accepted");
    tap_is_int(send_text(c, ig, USER, long_bad, &r), 400, "1000 code points are refused");
    tap_contains(r.body, "Length of param message[text] must be less than 1000", "... code 100");
    resp_free(&r);
    free(long_ok);
    free(long_bad);
    tap_is_int(fg_sends(ig, NULL, NULL) - before, 4, "four sends accepted so far");
    char *texts = fg_sent_texts(ig, IG_NODE, USER);
    const char *want = "hello\ncaf\xc3\xa9 \xf0\x9f\x91\x91\nimage:https://example.com/a.png\n";
    tap_ok(strncmp(texts, want, strlen(want)) == 0, "texts are recorded decoded, in order");
    free(texts);

    static const struct bad_send bad[] = {
        {"{\"recipient\":{\"id\":\"1\"},\"message\":{\"text\":\"x\"},\"foo\":1}",
         "(#100) Param foo is not allowed", "an extra top-level key"},
        {"{\"recipient\":{\"id\":\"1\"},\"message\":{\"text\":\"x\",\"quick_replies\":[]}}",
         "(#100) Param message[quick_replies] is not allowed", "an extra message key"},
        {"{\"recipient\":{\"id\":\"1\",\"comment_id\":\"2\"},\"message\":{\"text\":\"x\"}}",
         "(#100) Param recipient[comment_id] is not allowed", "an extra recipient key"},
        {"{\"recipient\":{\"id\":\"1\"},\"message\":{\"attachment\":{\"type\":\"image\","
         "\"payload\":{\"url\":\"https://e.com/a\",\"is_reusable\":true}}}}",
         "Param message[attachment][payload][is_reusable] is not allowed", "an extra payload key"},
        {"{\"message\":{\"text\":\"x\"}}", "(#100) The parameter recipient is required",
         "no recipient"},
        {"{\"recipient\":{},\"message\":{\"text\":\"x\"}}",
         "(#100) The parameter recipient[id] is required", "no recipient id"},
        {"{\"recipient\":{\"id\":\"12a\"},\"message\":{\"text\":\"x\"}}",
         "Param recipient[id] must be a valid ID string", "a recipient id with a letter"},
        {"{\"recipient\":{\"id\":12},\"message\":{\"text\":\"x\"}}",
         "Param recipient[id] must be a valid ID string", "a numeric recipient id"},
        {"{\"recipient\":{\"id\":\"1\"}}", "(#100) The parameter message is required",
         "no message"},
        {"{\"recipient\":{\"id\":\"1\"},\"message\":{}}",
         "One of message[text] or message[attachment] is required", "an empty message"},
        {"{\"recipient\":{\"id\":\"1\"},\"message\":{\"text\":\"x\",\"attachment\":{}}}",
         "Only one of message[text] and message[attachment]", "text and attachment"},
        {"{\"recipient\":{\"id\":\"1\"},\"message\":{\"text\":\"\"}}",
         "Param message[text] must be non-empty", "an empty text"},
        {"{\"recipient\":{\"id\":\"1\"},\"message\":{\"attachment\":{\"type\":\"template\","
         "\"payload\":{\"url\":\"https://e.com/a\"}}}}",
         "message[attachment][type] must be one of {image, video, audio, file}",
         "an attachment type"},
        {"{\"recipient\":{\"id\":\"1\"},\"message\":{\"attachment\":{\"type\":\"file\","
         "\"payload\":{\"url\":\"ftp://e.com/a\"}}}}",
         "message[attachment][payload][url] must be a valid URL", "an attachment URL"},
        {"{\"recipient\":{\"id\":\"1\"},\"message\":{\"text\":\"x\",\"reply_to\":{}}}",
         "message[reply_to][mid] must be a non-empty string", "reply_to without mid"},
        {"{\"recipient\":{\"id\":\"1\"},\"messaging_type\":\"MESSAGE_TAG\","
         "\"message\":{\"text\":\"x\"}}",
         "(#100) Param tag is required when messaging_type is MESSAGE_TAG",
         "MESSAGE_TAG without tag"},
        {"{\"recipient\":{\"id\":\"1\"},\"messaging_type\":\"MESSAGE_TAG\",\"tag\":\"ACCOUNT_"
         "UPDATE\","
         "\"message\":{\"text\":\"x\"}}",
         "(#100) Param tag must be one of {HUMAN_AGENT}", "a tag Instagram does not take"},
        {"{\"recipient\":{\"id\":\"1\"},\"tag\":\"HUMAN_AGENT\",\"message\":{\"text\":\"x\"}}",
         "Param tag is only allowed when messaging_type is MESSAGE_TAG", "a tag without the type"},
        {"{\"recipient\":{\"id\":\"1\"},\"messaging_type\":\"PROMO\",\"message\":{\"text\":\"x\"}}",
         "Param messaging_type must be one of {RESPONSE, UPDATE, MESSAGE_TAG}",
         "an unknown messaging_type"},
        {"{\"recipient\":{\"id\":\"1\"},\"message\":{\"text\":\"x\"}", "Invalid JSON",
         "truncated JSON"},
        {"[1]", "The request body must be a JSON object", "a JSON array"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        call(c, &r, ig, "POST", "/" VER "/" IG_NODE "/messages", JSON_IG, bad[i].body, 0);
        expect_error(&r, 400, 100, bad[i].message, bad[i].what);
        resp_free(&r);
    }
    call(c, &r, ig, "POST", "/" VER "/" IG_NODE "/messages", BEARER_IG,
         "{\"recipient\":{\"id\":\"1\"},\"message\":{\"text\":\"x\"}}", 0);
    expect_error(&r, 400, 100, "takes a JSON body", "a JSON body without application/json");
    resp_free(&r);
    tap_is_int(fg_sends(ig, NULL, NULL) - before, 4, "no refused send was recorded as sent");
}

/* ---- failure injection ---- */

struct mode_case {
    enum fg_mode mode;
    long status;
    long code;     /* -1: no Graph error object */
    long subcode;  /* 0: none */
    int transient; /* -1: absent */
    bool has_buc;
    const char *message;
};

static void test_faults(struct fg *ig, CURL *c)
{
    static const struct mode_case cases[] = {
        {FG_HTTP_500, 500, -1, 0, -1, false, "500 Internal Server Error"},
        {FG_ERR_1, 500, 1, 0, 1, false, "An unknown error has occurred."},
        {FG_ERR_2, 500, 2, 0, 1, false, "An unexpected error has occurred."},
        {FG_ERR_1200, 500, 1200, 0, 1, false, "Temporary send message failure"},
        {FG_ERR_4, 403, 4, 0, 1, false, "(#4) Application request limit reached"},
        {FG_ERR_17, 400, 17, 2446079, 1, true, "(#17) User request limit reached"},
        {FG_ERR_32, 400, 32, 0, 1, true, "(#32) Page request limit reached"},
        {FG_ERR_613, 400, 613, 0, 1, true, "(#613) Calls to this api have exceeded"},
        {FG_ERR_80002, 400, 80002, 0, 1, true, "too many calls to this Instagram account"},
        {FG_ERR_190, 400, 190, 460, 0, false, "Error validating access token"},
        {FG_ERR_200, 403, 200, 0, 0, false, "(#200) Requires"},
        {FG_ERR_10_WINDOW, 400, 10, 2018278, 0, false, "outside of allowed window"},
        {FG_ERR_100, 400, 100, 2018001, 0, false, "(#100) No matching user found"},
        {FG_ERR_368, 400, 368, 1390008, 0, false, "deemed abusive"},
        {FG_ERR_551, 400, 551, 1545041, 0, false, "This person isn't available right now."},
    };
    fg_set_regain_minutes(ig, 7);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct mode_case *k = &cases[i];
        long sent = fg_sends(ig, NULL, NULL);
        fg_fail(ig, (struct fg_match){.kind = FG_SEND}, k->mode, 1);
        struct resp r;
        send_text(c, ig, USER, "fault", &r);
        bool is_ok = r.status == k->status && strstr(r.body, k->message) != NULL &&
                     has_header(r.headers, "X-App-Usage: {\"call_count\":");
        if (k->code >= 0) {
            is_ok = is_ok && h_json_num(r.body, "code") == k->code &&
                    strstr(r.body, "\"fbtrace_id\":\"") != NULL &&
                    strstr(r.body, "\"type\":\"OAuthException\"") != NULL;
            is_ok = is_ok && (k->subcode == 0 ? strstr(r.body, "error_subcode") == NULL
                                              : h_json_num(r.body, "error_subcode") == k->subcode);
            is_ok = is_ok && (k->transient < 0 ? strstr(r.body, "is_transient") == NULL
                              : k->transient   ? strstr(r.body, "\"is_transient\":true") != NULL
                                               : strstr(r.body, "\"is_transient\":false") != NULL);
        } else {
            is_ok = is_ok && has_header(r.headers, "Content-Type: text/html");
        }
        bool has_buc = has_header(r.headers, "X-Business-Use-Case-Usage: {\"" IG_NODE
                                             "\":[{\"type\":\"messenger\",\"call_count\":100,");
        is_ok = is_ok && has_buc == k->has_buc;
        if (k->has_buc)
            is_ok = is_ok && has_header(r.headers, "\"estimated_time_to_regain_access\":7}]}");
        if (k->mode == FG_ERR_4)
            is_ok = is_ok && has_header(r.headers, "X-App-Usage: {\"call_count\":100,");
        tap_ok(is_ok, "mode %zu: HTTP %ld code %ld with its body and headers", i, k->status,
               k->code);
        if (!is_ok)
            tap_diag("got %ld %s\n%s", r.status, r.body, r.headers);
        resp_free(&r);
        bool is_recovered = send_text(c, ig, USER, "after", NULL) == 200;
        tap_ok(is_recovered && fg_sends(ig, NULL, NULL) == sent + 1,
               "... nothing sent by the failure, and the next send goes through");
    }
    fg_set_regain_minutes(ig, 1);

    /* Matching by kind, node and recipient; counts; endless rules. */
    fg_fail(ig, (struct fg_match){.kind = FG_SEND, .recipient = "111"}, FG_ERR_2, 2);
    tap_is_int(fg_faults_left(ig), 2, "a rule for two requests");
    tap_is_int(send_text(c, ig, USER, "other recipient", NULL), 200,
               "a rule for one recipient spares others");
    tap_is_int(send_text(c, ig, "111", "a", NULL), 500, "... and fails its own");
    tap_is_int(send_text(c, ig, "111", "b", NULL), 500, "... twice");
    tap_is_int(send_text(c, ig, "111", "c", NULL), 200, "... then recovers");
    char *t = fg_sent_texts(ig, IG_NODE, "111");
    tap_is_str(t, "c", "only the accepted send of the three is recorded");
    free(t);

    fg_fail(ig, (struct fg_match){.kind = FG_SUBSCRIBED_GET, .node = IG_NODE}, FG_ERR_1, -1);
    struct resp r;
    call(c, &r, ig, "GET", "/" VER "/" IG_NODE "/subscribed_apps", BEARER_IG, NULL, 0);
    tap_is_int(r.status, 500, "an endless rule on GET subscribed_apps fires");
    resp_free(&r);
    call(c, &r, ig, "GET", "/" VER "/" IG_NODE "/subscribed_apps", BEARER_IG, NULL, 0);
    tap_is_int(r.status, 500, "... again");
    resp_free(&r);
    tap_is_int(send_text(c, ig, USER, "x", NULL), 200, "... but not on sends");
    static const char *const other[] = {"Authorization: Bearer " IG_TOKEN2, NULL};
    call(c, &r, ig, "GET", "/" VER "/" IG_NODE2 "/subscribed_apps", other, NULL, 0);
    tap_is_int(r.status, 200, "... nor on another node");
    resp_free(&r);
    fg_clear_faults(ig);
    tap_is_int(fg_faults_left(ig), 0, "fg_clear_faults drops the rules");
    call(c, &r, ig, "GET", "/" VER "/" IG_NODE "/subscribed_apps", BEARER_IG, NULL, 0);
    tap_is_int(r.status, 200, "... and calls succeed again");
    resp_free(&r);

    /* A fault fires only on a request that would otherwise succeed. */
    fg_fail(ig, (struct fg_match){.kind = FG_SUBSCRIBE}, FG_ERR_613, 1);
    call(c, &r, ig, "POST", "/" VER "/" IG_NODE "/subscribed_apps?subscribed_fields=bogus",
         BEARER_IG, "", 0);
    tap_is_int(h_json_num(r.body, "code"), 100, "an invalid request gets its own error first");
    resp_free(&r);
    call(c, &r, ig, "POST", "/" VER "/" IG_NODE "/subscribed_apps?subscribed_fields=messages",
         BEARER_IG, "", 0);
    tap_is_int(h_json_num(r.body, "code"), 613, "... and the rule waits for a valid one");
    tap_contains(r.headers, "\"type\":\"instagram\"", "... usage type instagram off sends");
    resp_free(&r);
    fg_fail(ig, (struct fg_match){.kind = FG_SUBSCRIBE}, FG_ERR_190, 1);
    call(c, &r, ig, "POST", "/" VER "/" IG_NODE "/subscribed_apps?subscribed_fields=messages",
         BEARER_IG, "", 0);
    tap_is_int(h_json_num(r.body, "code"), 190, "an injected 190");
    resp_free(&r);
    call(c, &r, ig, "POST", "/" VER "/" IG_NODE "/subscribed_apps?subscribed_fields=messages",
         BEARER_IG, "", 0);
    tap_is_int(r.status, 200, "... leaves the token valid");
    resp_free(&r);
}

static void test_slow(struct fg *ig)
{
    fg_set_slow_ms(ig, 400);
    struct fg_match sends_to_slow = {.kind = FG_SEND, .recipient = "222"};
    CURL *c = client();
    struct resp r;

    long before = fg_count(ig, sends_to_slow);
    fg_fail(ig, sends_to_slow, FG_SLOW, 1);
    char body[] = "{\"recipient\":{\"id\":\"222\"},\"message\":{\"text\":\"slow\"}}";
    int64_t t0 = h_now_ms();
    call(c, &r, ig, "POST", "/" VER "/" IG_NODE "/messages", JSON_IG, body, 100);
    tap_ok(r.is_timeout && r.status == 0, "a slow answer makes a 100 ms client time out");
    resp_free(&r);
    tap_ok(fg_wait_requests(ig, sends_to_slow, before + 1, 2000), "the fake finishes that request");
    int64_t waited = h_now_ms() - t0;
    tap_ok(waited < 350, "... as soon as the client hung up (%lld ms)", (long long)waited);
    tap_is_int(fg_sends(ig, IG_NODE, "222"), 0, "... and did not send it");
    size_t n;
    struct fg_request *rs = fg_requests(ig, &n);
    tap_ok(n > 0 && rs[n - 1].status == 0 && rs[n - 1].is_injected,
           "the record says the client hung up (status 0)");
    fg_requests_free(rs, n);

    fg_fail(ig, sends_to_slow, FG_SLOW, 1);
    t0 = h_now_ms();
    call(c, &r, ig, "POST", "/" VER "/" IG_NODE "/messages", JSON_IG, body, 5000);
    long long took = h_now_ms() - t0;
    tap_ok(r.status == 500 && h_json_num(r.body, "code") == 2 && took >= 390,
           "a patient client gets code 2 after the delay (%lld ms)", took);
    resp_free(&r);

    fg_fail(ig, sends_to_slow, FG_SLOW_ACCEPTED, 1);
    call(c, &r, ig, "POST", "/" VER "/" IG_NODE "/messages", JSON_IG, body, 100);
    tap_ok(r.is_timeout, "slow-but-accepted: the client times out");
    resp_free(&r);
    tap_is_int(fg_sends(ig, IG_NODE, "222"), 1, "... yet the send is recorded as delivered");
    tap_ok(fg_wait_requests(ig, sends_to_slow, before + 3, 2000), "... and the request ends");
    rs = fg_requests(ig, &n);
    tap_ok(n > 0 && rs[n - 1].message_id != NULL && rs[n - 1].status == 0,
           "... with a message_id issued and status 0");
    fg_requests_free(rs, n);
    fg_set_slow_ms(ig, 3000);
    curl_easy_cleanup(c);
}

/* ---- recording ---- */

static void test_recording(struct fg *ig, CURL *c)
{
    fg_reset_records(ig);
    tap_is_int(fg_sends(ig, NULL, NULL), 0, "fg_reset_records forgets the sends");
    send_text(c, ig, "333", "one", NULL);
    send_text(c, ig, "333", "two", NULL);
    send_text(c, ig, "444", "three", NULL);
    struct resp r;
    call(c, &r, ig, "POST", "/" VER "/" IG_NODE "/subscribed_apps?subscribed_fields=messages", NULL,
         "access_token=" IG_TOKEN_Q, 0);
    resp_free(&r);

    size_t n;
    struct fg_request *rs = fg_requests(ig, &n);
    tap_is_int((long long)n, 4, "four requests recorded");
    if (n == 4) {
        tap_ok(rs[0].seq == rs[1].seq - 1 && rs[0].kind == FG_SEND && rs[3].kind == FG_SUBSCRIBE,
               "in order, with their kinds");
        tap_is_str(rs[0].method, "POST", "method");
        tap_is_str(rs[0].path, "/" VER "/" IG_NODE "/messages", "path");
        tap_is_str(rs[3].query, "subscribed_fields=messages", "query, raw");
        tap_ok(rs[0].token != NULL && strcmp(rs[0].token, IG_TOKEN) == 0 &&
                   rs[0].token_where == FG_TOKEN_HEADER,
               "the token presented, from the header");
        tap_ok(rs[3].token != NULL && strcmp(rs[3].token, IG_TOKEN) == 0 &&
                   rs[3].token_where == FG_TOKEN_BODY,
               "... or decoded from the body");
        tap_contains(rs[0].body, "\"text\":\"one\"", "the body");
        tap_contains(rs[0].headers, "Content-Type: application/json", "the headers");
        tap_ok(rs[0].recipient != NULL && strcmp(rs[0].recipient, "333") == 0 &&
                   rs[0].node != NULL && strcmp(rs[0].node, IG_NODE) == 0,
               "node and recipient");
        tap_ok(rs[0].status == 200 && rs[3].status == 200 && rs[0].message_id != NULL &&
                   rs[3].message_id == NULL,
               "statuses and the send's message_id");
        tap_ok(rs[0].arrived_us > 0 && rs[0].finished_us >= rs[0].arrived_us &&
                   rs[1].arrived_us >= rs[0].finished_us && rs[0].arrived_wall_us > 0,
               "monotonic arrival and finish times");
    }
    fg_requests_free(rs, n);
    tap_is_int(fg_count(ig, (struct fg_match){.kind = FG_SEND}), 3, "fg_count by kind");
    tap_is_int(fg_count(ig, (struct fg_match){.kind = FG_SEND, .recipient = "333"}), 2,
               "fg_count by recipient");
    tap_is_int(fg_count(ig, (struct fg_match){.kind = FG_ANY, .node = IG_NODE}), 4,
               "fg_count by node");
    tap_is_int(fg_sends(ig, IG_NODE, "333"), 2, "fg_sends per pair");
    char *t = fg_sent_texts(ig, IG_NODE, "333");
    tap_is_str(t, "one\ntwo", "fg_sent_texts in order");
    free(t);
    struct fg_send *s = fg_sent(ig, NULL, NULL, &n);
    tap_ok(n == 3 && strcmp(s[2].text, "three") == 0 && strcmp(s[2].recipient, "444") == 0 &&
               s[2].message_id != NULL && s[0].at_us <= s[1].at_us,
           "fg_sent lists every accepted send");
    fg_sent_free(s, n);
    tap_is_int(fg_max_in_flight(ig, IG_NODE, "333"), 1, "sequential sends never overlap");
    int64_t t0 = h_now_ms();
    tap_ok(!fg_wait_sends(ig, 4, 50) && h_now_ms() - t0 < 1000,
           "fg_wait_sends gives up at its deadline");
    tap_ok(fg_wait_sends(ig, 3, 0) && fg_wait_sends_to(ig, IG_NODE, "444", 1, 0),
           "... and sees what is there");

    fg_set_latency_ms(ig, 40);
    t0 = h_now_ms();
    send_text(c, ig, "333", "slowish", NULL);
    tap_ok(h_now_ms() - t0 >= 40, "fg_set_latency_ms delays answers");
    fg_set_latency_ms(ig, 0);
}

/* ---- HTTP: Expect, keep-alive, many clients ---- */

static int raw_connect(struct fg *fg)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)fg_port(fg));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        tap_bail("connect to the fake failed");
    return fd;
}

/* Reads until needle was seen or 2 s passed; returns what came (caller frees). */
static char *raw_read_until(int fd, const char *needle)
{
    char *out = calloc(1, 65536);
    size_t len = 0;
    int64_t end = h_now_ms() + 2000;
    while (strstr(out, needle) == NULL && len < 65535) {
        int left = (int)(end - h_now_ms());
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, left) <= 0)
            break;
        ssize_t r = recv(fd, out + len, 65535 - len, 0);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    return out;
}

static void test_http(struct fg *ig)
{
    /* Expect: 100-continue, by hand. */
    int fd = raw_connect(ig);
    const char *body = "{\"recipient\":{\"id\":\"555\"},\"message\":{\"text\":\"expect\"}}";
    char head[512];
    snprintf(head, sizeof(head),
             "POST /" VER "/" IG_NODE "/messages HTTP/1.1\r\nHost: x\r\n"
             "Authorization: Bearer " IG_TOKEN "\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\nExpect: 100-continue\r\n\r\n",
             strlen(body));
    send(fd, head, strlen(head), MSG_NOSIGNAL);
    char *got = raw_read_until(fd, "\r\n\r\n");
    tap_is_str(got, "HTTP/1.1 100 Continue\r\n\r\n", "Expect: 100-continue gets 100 Continue");
    free(got);
    send(fd, body, strlen(body), MSG_NOSIGNAL);
    got = raw_read_until(fd, "\"message_id\"");
    tap_ok(strncmp(got, "HTTP/1.1 200 OK\r\n", 17) == 0 && strstr(got, "\"message_id\"") != NULL,
           "... then the body is read and answered");
    free(got);

    /* A second request on the same connection: keep-alive. */
    snprintf(head, sizeof(head),
             "GET /" VER "/" IG_NODE "/subscribed_apps HTTP/1.1\r\nHost: x\r\n"
             "Authorization: Bearer " IG_TOKEN "\r\n\r\n"
             "GET /" VER "/" IG_NODE "/subscribed_apps HTTP/1.1\r\nHost: x\r\n"
             "Authorization: Bearer " IG_TOKEN "\r\nConnection: close\r\n\r\n");
    send(fd, head, strlen(head), MSG_NOSIGNAL);
    got = raw_read_until(fd, "Connection: close\r\n\r\n{\"data\":");
    char *second = strstr(got, "HTTP/1.1 200 OK\r\n");
    second = second != NULL ? strstr(second + 1, "HTTP/1.1 200 OK\r\n") : NULL;
    tap_ok(second != NULL && strstr(got, "Connection: keep-alive") != NULL,
           "two pipelined requests on one connection are both answered");
    free(got);
    char c;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    tap_ok(poll(&p, 1, 2000) == 1 && recv(fd, &c, 1, 0) == 0,
           "Connection: close closes the connection");
    close(fd);

    /* Malformed requests. */
    fd = raw_connect(ig);
    const char *chunked = "POST /" VER "/" IG_NODE "/messages HTTP/1.1\r\nHost: x\r\n"
                          "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    send(fd, chunked, strlen(chunked), MSG_NOSIGNAL);
    got = raw_read_until(fd, "\n\n");
    tap_ok(strncmp(got, "HTTP/1.1 411 ", 13) == 0, "a chunked body gets 411");
    free(got);
    close(fd);

    /* libcurl: the same handle reuses its connection; its own Expect. */
    CURL *cu = client();
    struct resp r;
    call(cu, &r, ig, "GET", "/" VER "/" IG_NODE "/subscribed_apps", BEARER_IG, NULL, 0);
    long first = r.connects;
    resp_free(&r);
    call(cu, &r, ig, "GET", "/" VER "/" IG_NODE "/subscribed_apps", BEARER_IG, NULL, 0);
    tap_ok(first == 1 && r.connects == 0 && r.status == 200,
           "libcurl reuses the keep-alive connection");
    resp_free(&r);
    char big[3000];
    memset(big, 'a', sizeof(big));
    snprintf(
        big, sizeof(big), "{\"recipient\":{\"id\":\"555\"},\"message\":{\"text\":\"%.900s\"}}",
        "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
        "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
    static const char *const expect[] = {"Content-Type: application/json",
                                         "Authorization: Bearer " IG_TOKEN, "Expect: 100-continue",
                                         NULL};
    curl_easy_setopt(cu, CURLOPT_EXPECT_100_TIMEOUT_MS, 5000L);
    call(cu, &r, ig, "POST", "/" VER "/" IG_NODE "/messages", expect, big, 0);
    tap_ok(r.status == 200 && has_header(r.headers, "HTTP/1.1 100 Continue") && r.seconds < 2.0,
           "libcurl's Expect: 100-continue is answered at once (%.3f s)", r.seconds);
    resp_free(&r);
    curl_easy_cleanup(cu);
}

struct worker {
    struct fg *fg;
    char recipient[32];
    int sends;
    int ok;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    CURL *c = curl_easy_init();
    for (int i = 0; i < w->sends; i++) {
        char text[32];
        snprintf(text, sizeof(text), "m%d", i);
        w->ok += send_text(c, w->fg, w->recipient, text, NULL) == 200;
    }
    curl_easy_cleanup(c);
    return NULL;
}

static void test_concurrency(struct fg *ig)
{
    enum { WORKERS = 24, EACH = 60 };
    fg_reset_records(ig);
    fg_set_latency_ms(ig, 1); /* as the benchmark does; makes requests overlap */
    struct worker w[WORKERS];
    pthread_t th[WORKERS];
    int64_t t0 = h_now_ms();
    for (int i = 0; i < WORKERS; i++) {
        w[i] = (struct worker){.fg = ig, .sends = EACH};
        snprintf(w[i].recipient, sizeof(w[i].recipient), "90%d", i);
        pthread_create(&th[i], NULL, worker_main, &w[i]);
    }
    int ok = 0;
    for (int i = 0; i < WORKERS; i++) {
        pthread_join(th[i], NULL);
        ok += w[i].ok;
    }
    int64_t ms = h_now_ms() - t0;
    fg_set_latency_ms(ig, 0);
    tap_is_int(ok, WORKERS * EACH, "%d keep-alive clients: every send answered 200", WORKERS);
    tap_ok(fg_wait_sends(ig, WORKERS * EACH, 1000), "... and recorded (%d in %lld ms)",
           WORKERS * EACH, (long long)ms);
    char *t = fg_sent_texts(ig, IG_NODE, "905");
    tap_ok(strncmp(t, "m0\nm1\nm2\n", 9) == 0, "... each conversation in its order");
    free(t);
    tap_is_int(fg_max_in_flight(ig, NULL, NULL), 1, "one client per recipient never overlaps");
    tap_ok(fg_max_concurrency(ig) > 1, "requests were in flight together (%d at most)",
           fg_max_concurrency(ig));

    /* Two clients on one conversation at once are seen. */
    fg_set_latency_ms(ig, 60);
    struct worker pair[2] = {{.fg = ig, .sends = 2}, {.fg = ig, .sends = 2}};
    snprintf(pair[0].recipient, sizeof(pair[0].recipient), "777");
    snprintf(pair[1].recipient, sizeof(pair[1].recipient), "777");
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, worker_main, &pair[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    fg_set_latency_ms(ig, 0);
    tap_is_int(fg_max_in_flight(ig, IG_NODE, "777"), 2,
               "two clients on one recipient show as an overlap");
}

static void *stop_main(void *arg)
{
    struct fg *fg = arg;
    h_sleep_ms(100);
    fg_stop(fg);
    return NULL;
}

static void test_stop_cuts_waits(void)
{
    struct fg *fg = fg_start(FG_FACEBOOK, VER);
    if (fg == NULL)
        tap_bail("fg_start failed");
    fg_add_node(fg, FB_PAGE, FB_TOKEN, APP);
    tap_contains(fg_env(fg), "HUBBUB_GRAPH_FACEBOOK_URL=http://127.0.0.1:",
                 "fg_env names the Facebook setting");
    fg_set_slow_ms(fg, 10000);
    fg_fail(fg, (struct fg_match){.kind = FG_SEND}, FG_SLOW, 1);
    pthread_t th;
    pthread_create(&th, NULL, stop_main, fg);
    CURL *c = client();
    struct resp r;
    static const char *const h[] = {"Content-Type: application/json",
                                    "Authorization: Bearer " FB_TOKEN, NULL};
    int64_t t0 = h_now_ms();
    call(c, &r, fg, "POST", "/" VER "/" FB_PAGE "/messages", h,
         "{\"recipient\":{\"id\":\"1\"},\"message\":{\"text\":\"x\"}}", 5000);
    pthread_join(th, NULL);
    long long took = h_now_ms() - t0;
    tap_ok(r.status == 0 && took < 2000, "fg_stop cuts a slow answer short (%lld ms)", took);
    resp_free(&r);
    curl_easy_cleanup(c);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct fg *ig = fg_start(FG_INSTAGRAM, VER);
    struct fg *fb = fg_start(FG_FACEBOOK, VER);
    if (ig == NULL || fb == NULL)
        tap_bail("fg_start failed");
    tap_ok(strncmp(fg_base_url(ig), "http://127.0.0.1:", 17) == 0 && fg_port(ig) > 0 &&
               fg_port(ig) != fg_port(fb),
           "two fakes on their own ports (%s)", fg_base_url(ig));
    fg_add_node(ig, IG_NODE, IG_TOKEN, APP);
    fg_add_node(ig, IG_NODE2, IG_TOKEN2, APP);
    fg_add_node(fb, FB_PAGE, FB_TOKEN, APP);

    CURL *c = client();
    test_subscribed_apps(ig, fb, c);
    test_auth_and_paths(ig, c);
    test_sends(ig, c);
    test_faults(ig, c);
    test_slow(ig);
    test_recording(ig, c);
    test_http(ig);
    test_concurrency(ig);
    curl_easy_cleanup(c);
    fg_stop(ig);
    fg_stop(fb);
    test_stop_cuts_waits();
    curl_global_cleanup();
    return tap_done();
}
