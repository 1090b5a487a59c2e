/*
 * messages.c - the replies outbox; see messages.h.
 *
 * POST validates the reply, then in one transaction stores it in messages
 * with request, the exact Send API body the worker will post (PROTOCOL.md
 * section 4), and queues its "send" job (db_jobs_enqueue_send()): a message
 * exists exactly when its job does. request is built by jsonb_build_object
 * from parameters, so nothing the client sent is ever part of JSON or SQL
 * text; the representation reads text, attachment, reply_to and tag back
 * from it.
 *
 * Idempotency-Key: keys are unique per tenant (the account's tenant, also
 * when the operator posts), held by a partial unique index. The INSERT says
 * ON CONFLICT DO NOTHING, which waits for a concurrent transaction holding
 * the same key to end; a later statement of ours then sees its row. The same
 * key with the same account and the same request (compared as jsonb: member
 * order, spacing and null members do not matter) answers that message again;
 * anything else is a 409 idempotency_conflict.
 *
 * A message's state comes from its job (jobs.message_id) and its account:
 * MESSAGE_STATE below is the one place that maps them, used by every route.
 *
 * Scope: every statement carries the tenant, "($n::bigint IS NULL OR
 * tenant_id = $n)" with NULL only for the operator; messages and accounts of
 * other tenants answer 404, as missing ones do.
 */
#include "api/messages.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "db/jobs.h"
#include "lib/hb.h"
#include "lib/log.h"

/* Meta: text "must be under 1000 characters". Counted in code points. */
#define TEXT_MAX_CHARS 999
#define RECIPIENT_MAX 32
#define URL_MAX 2000
#define MID_MAX 1000
#define TYPE_MAX 16
#define TAG_MAX 32
#define INSERT_TRIES 3

/* The state shown, from the job j and the account a of message m. A queued
 * job of an account waiting for a new token is not claimed: "held". Without
 * a job (none is ever deleted alone, but a cleanup might) the message is
 * "sent" if Meta's id was stored, else "failed": it will not go out. */
#define MESSAGE_STATE                                                                              \
    "(CASE WHEN j.state = 'queued' AND a.sub_state = 'token_invalid' THEN 'held'"                  \
    " WHEN j.state = 'queued' AND j.attempts = 0 THEN 'queued'"                                    \
    " WHEN j.state = 'queued' THEN 'retrying'"                                                     \
    " WHEN j.state = 'running' THEN 'sending'"                                                     \
    " WHEN j.state = 'succeeded' THEN 'sent'"                                                      \
    " WHEN j.state IS NOT NULL THEN j.state"                                                       \
    " WHEN m.meta_message_id IS NOT NULL THEN 'sent' ELSE 'failed' END)"

/* A message with its job, account and app. A message has one job; LIMIT 1
 * keeps a list from repeating a row should it ever have two. */
#define MESSAGE_FROM                                                                               \
    " FROM messages m JOIN accounts a ON a.id = m.account_id JOIN apps p ON p.id = a.app_id"       \
    " LEFT JOIN LATERAL (SELECT state, attempts, run_at, last_error FROM jobs"                     \
    " WHERE jobs.message_id = m.id ORDER BY jobs.id DESC LIMIT 1) j ON true"

/* next_attempt_at: when a queued job may next run, no earlier than a
 * rate-limit pause of its account or app; null while held, while waiting
 * for an earlier reply of its conversation, or when not queued. */
#define MESSAGE_JSON                                                                               \
    "jsonb_build_object('id', m.id, 'account_id', m.account_id, 'tenant_id', m.tenant_id,"         \
    " 'recipient_id', m.recipient_id, 'text', m.request #> '{message,text}',"                      \
    " 'attachment', CASE WHEN m.request #> '{message,attachment}' IS NOT NULL THEN"                \
    " jsonb_build_object('type', m.request #> '{message,attachment,type}',"                        \
    " 'url', m.request #> '{message,attachment,payload,url}') END,"                                \
    " 'reply_to', m.request #> '{message,reply_to,mid}', 'tag', m.request -> 'tag',"               \
    " 'state', " MESSAGE_STATE ", 'attempts', coalesce(j.attempts, 0),"                            \
    " 'last_error', j.last_error,"                                                                 \
    " 'next_attempt_at', CASE WHEN j.state = 'queued' AND a.sub_state <> 'token_invalid'"          \
    "  AND j.run_at < 'infinity'"                                                                  \
    " THEN greatest(j.run_at, a.paused_until, p.paused_until) END,"                                \
    " 'message_id', m.meta_message_id, 'sent_at', m.sent_at, 'echo_event_id', m.echo_event_id,"    \
    " 'idempotency_key', m.idempotency_key, 'created_at', m.created_at)::text"

/* The Send API body from $3 recipient, $4 text, $5 reply_to mid, $6
 * attachment type, $7 attachment url, $8 tag (all text, NULL when absent).
 * jsonb_strip_nulls drops the members left NULL; every value the client gave
 * is a non-null string, so it drops nothing of theirs. */
#define REQUEST_JSON                                                                               \
    "jsonb_strip_nulls(jsonb_build_object('recipient', jsonb_build_object('id', $3::text),"        \
    " 'messaging_type', CASE WHEN $8::text IS NULL THEN 'RESPONSE' ELSE 'MESSAGE_TAG' END,"        \
    " 'tag', $8::text,"                                                                            \
    " 'message', CASE WHEN $6::text IS NULL THEN jsonb_build_object('text', $4::text,"             \
    " 'reply_to', CASE WHEN $5::text IS NOT NULL THEN jsonb_build_object('mid', $5::text) END)"    \
    " ELSE jsonb_build_object('attachment', jsonb_build_object('type', $6::text,"                  \
    " 'payload', jsonb_build_object('url', $7::text))) END))"

static const char *const STATES[] = {"queued", "retrying", "sending", "sent",
                                     "failed", "dead",     "held",    NULL};
static const char *const ATTACHMENT_TYPES[] = {"image", "video", "audio", "file", NULL};

/* A validated POST body. Strings are NUL-terminated; data is NULL when the
 * member was left out. */
struct message_in {
    struct buf recipient, text, reply_to, type, url, tag;
};

static void message_in_init(struct message_in *in)
{
    buf_init(&in->recipient);
    buf_init(&in->text);
    buf_init(&in->reply_to);
    buf_init(&in->type);
    buf_init(&in->url);
    buf_init(&in->tag);
}

static void message_in_dispose(struct message_in *in)
{
    buf_dispose(&in->recipient);
    buf_dispose(&in->text);
    buf_dispose(&in->reply_to);
    buf_dispose(&in->type);
    buf_dispose(&in->url);
    buf_dispose(&in->tag);
}

static bool is_null(const struct json_doc *doc, int v)
{
    return doc->toks[v].type == JSON_PRIMITIVE && doc->text[doc->toks[v].start] == 'n';
}

static bool in_list(const char *s, const char *const *list)
{
    for (; *list != NULL; list++)
        if (strcmp(s, *list) == 0)
            return true;
    return false;
}

/* Whether every byte is printable ASCII (spaces only if allowed). */
static bool printable_ascii(const char *s, size_t n, bool allow_space)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < (allow_space ? 0x20 : 0x21) || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

/* String member key of object obj, reported as field: 1 and the decoded
 * value in out, 0 when absent or null, -1 (422 set) when not a string, empty,
 * longer than max bytes, or holding \u0000 or an unpaired surrogate (which
 * the reader would turn into U+FFFD: text to send must be what was sent). */
static int member_string(struct api_call *call, const struct json_doc *doc, int obj,
                         const char *key, const char *field, size_t max, struct buf *out)
{
    int v = json_get(doc, obj, key);
    if (v < 0 || is_null(doc, v))
        return 0;
    if (!json_is_string(doc, v)) {
        api_invalid(call, field, "%s must be a string", field);
        return -1;
    }
    if (doc->has_unsafe_escapes) {
        const char *raw;
        size_t n;
        struct buf clean;
        buf_init(&clean);
        json_raw(doc, v, &raw, &n);
        json_copy_sanitized(doc, v, &clean);
        bool same = clean.len == n && memcmp(clean.data, raw, n) == 0;
        buf_dispose(&clean);
        if (!same) {
            api_invalid(call, field, "%s must not hold \\u0000 or an unpaired surrogate", field);
            return -1;
        }
    }
    buf_reset(out);
    json_string_decode(doc, v, out);
    if (out->len == 0) {
        api_invalid(call, field, "%s must not be empty", field);
        return -1;
    }
    if (out->len > max) {
        api_invalid(call, field, "%s is longer than %zu bytes", field, max);
        return -1;
    }
    return 1;
}

/* Code points of valid UTF-8: the bytes that do not continue a sequence. */
static size_t utf8_chars(const char *s, size_t n)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        count += ((unsigned char)s[i] & 0xc0) != 0x80;
    return count;
}

/* https://host..., printable ASCII without spaces (anything else must be
 * percent-encoded), with a host. */
static bool valid_url(const char *s, size_t n)
{
    static const char scheme[] = "https://";
    size_t k = sizeof(scheme) - 1;
    if (n <= k || strncasecmp(s, scheme, k) != 0 || !printable_ascii(s, n, false))
        return false;
    return strchr("/?#", s[k]) == NULL;
}

static bool read_recipient(struct api_call *call, const struct json_doc *doc, struct message_in *in)
{
    int rc =
        member_string(call, doc, 0, "recipient_id", "recipient_id", RECIPIENT_MAX, &in->recipient);
    if (rc == 0)
        api_invalid(call, "recipient_id", "recipient_id is required");
    if (rc <= 0)
        return false;
    for (size_t i = 0; i < in->recipient.len; i++) {
        if (in->recipient.data[i] < '0' || in->recipient.data[i] > '9') {
            api_invalid(call, "recipient_id",
                        "recipient_id must be a string of 1-%d digits (an Instagram-scoped id)",
                        RECIPIENT_MAX);
            return false;
        }
    }
    return true;
}

static bool read_text(struct api_call *call, const struct json_doc *doc, struct message_in *in)
{
    /* No byte cap of its own: the body's 64 KiB bounds it. */
    int rc = member_string(call, doc, 0, "text", "text", API_BODY_MAX, &in->text);
    if (rc == 0)
        buf_dispose(&in->text);
    if (rc <= 0)
        return rc == 0;
    size_t chars = utf8_chars(in->text.data, in->text.len);
    if (chars > TEXT_MAX_CHARS) {
        api_invalid(call, "text",
                    "text must be at most %d characters (Unicode code points); it has %zu",
                    TEXT_MAX_CHARS, chars);
        return false;
    }
    return true;
}

static bool read_attachment(struct api_call *call, const struct json_doc *doc,
                            struct message_in *in)
{
    int v = json_get(doc, 0, "attachment");
    if (v < 0 || is_null(doc, v))
        return true;
    if (!json_is_object(doc, v)) {
        api_invalid(call, "attachment", "attachment must be an object with type and url");
        return false;
    }
    struct buf key;
    buf_init(&key);
    int n = doc->toks[v].size;
    for (int i = 0, k = v + 1; i < n; i++, k = json_next(doc, k + 1)) {
        buf_reset(&key);
        json_string_decode(doc, k, &key);
        const char *name = key.data != NULL ? key.data : "";
        if (strcmp(name, "type") != 0 && strcmp(name, "url") != 0) {
            char field[96];
            snprintf(field, sizeof(field), "attachment.%.64s", name);
            api_invalid(call, field, "unknown member \"%.64s\" in attachment", name);
            buf_dispose(&key);
            return false;
        }
    }
    buf_dispose(&key);

    int rc = member_string(call, doc, v, "type", "attachment.type", TYPE_MAX, &in->type);
    if (rc < 0)
        return false;
    if (rc == 0 || !in_list(in->type.data, ATTACHMENT_TYPES)) {
        api_invalid(call, "attachment.type",
                    "attachment.type must be \"image\", \"video\", \"audio\" or \"file\"");
        return false;
    }
    rc = member_string(call, doc, v, "url", "attachment.url", URL_MAX, &in->url);
    if (rc < 0)
        return false;
    if (rc == 0 || !valid_url(in->url.data, in->url.len)) {
        api_invalid(call, "attachment.url",
                    "attachment.url must be an https:// URL of at most %d bytes, in printable "
                    "ASCII without spaces (percent-encode the rest)",
                    URL_MAX);
        return false;
    }
    return true;
}

static const char *const MEMBERS[] = {"recipient_id", "text", "attachment",
                                      "reply_to",     "tag",  NULL};

static bool read_message(struct api_call *call, const struct json_doc *doc, struct message_in *in)
{
    if (!api_body_only(call, doc, MEMBERS) || !read_recipient(call, doc, in) ||
        !read_text(call, doc, in) || !read_attachment(call, doc, in))
        return false;
    bool has_text = in->text.data != NULL, has_attachment = in->url.data != NULL;
    if (has_text && has_attachment) {
        api_invalid(call, "attachment", "send text or attachment, not both");
        return false;
    }
    if (!has_text && !has_attachment) {
        api_invalid(call, "text", "text or attachment is required");
        return false;
    }

    int rc = member_string(call, doc, 0, "reply_to", "reply_to", MID_MAX, &in->reply_to);
    if (rc < 0)
        return false;
    if (rc == 0) {
        buf_dispose(&in->reply_to);
    } else if (!printable_ascii(in->reply_to.data, in->reply_to.len, false)) {
        api_invalid(call, "reply_to",
                    "reply_to must be a message's mid: 1-%d printable ASCII characters", MID_MAX);
        return false;
    } else if (!has_text) {
        api_invalid(call, "reply_to", "reply_to goes with text only");
        return false;
    }

    rc = member_string(call, doc, 0, "tag", "tag", TAG_MAX, &in->tag);
    if (rc < 0)
        return false;
    if (rc == 0) {
        buf_dispose(&in->tag);
    } else if (strcmp(in->tag.data, "HUMAN_AGENT") != 0) {
        api_invalid(call, "tag", "tag must be \"HUMAN_AGENT\", or left out");
        return false;
    }
    return true;
}

/* 400 unless the Idempotency-Key header, if any, is usable. */
static bool check_idempotency_key(struct api_call *call)
{
    if (!call->has_idempotency_key)
        return true;
    const char *k = call->idempotency_key;
    if (k[0] == '\0' || !printable_ascii(k, strlen(k), true)) {
        api_error(call, 400, "bad_request",
                  "Idempotency-Key must be sent once, as 1-255 printable ASCII characters");
        return false;
    }
    return true;
}

/* The answer to a failed db_jobs_* call. */
static void jobs_error(struct api_call *call, int rc)
{
    if (rc == HB_EUNAVAILABLE) {
        api_error(call, 503, "unavailable", "the database is unavailable; retry later");
    } else {
        char ctx[128];
        api_log_context(call, ctx, sizeof(ctx));
        log_error("queueing a send failed", "%s rc=%s", ctx, hb_strerror(rc));
        api_error(call, 500, "internal", "the request could not be completed");
    }
}

/* Sets the 202 with message id (of tenant) and its Location. false with the
 * answer set on a database error. */
static bool reply_message(struct api_call *call, PGconn *c, const char *id, const char *tenant)
{
    const char *params[] = {id, tenant};
    PGresult *r = api_exec(c,
                           "SELECT " MESSAGE_JSON MESSAGE_FROM " WHERE m.id = $1"
                           " AND m.tenant_id = $2",
                           2, params);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
    if (!ok) {
        api_db_error(call, c, r, NULL);
    } else {
        api_reply_row(call, 202, r);
        snprintf(call->location, sizeof(call->location), "/v1/messages/%s", id);
    }
    PQclear(r);
    return ok;
}

/* Inside the transaction, account and tenant known: stores the message and
 * queues its job, or finds the one stored under the same key. Sets the
 * answer; false when the transaction must be rolled back. */
static bool store(struct api_call *call, PGconn *c, const char *tenant, const char *account,
                  const struct message_in *in)
{
    const char *key = call->has_idempotency_key ? call->idempotency_key : NULL;
    const char *params[] = {tenant,        account,           in->recipient.data,
                            in->text.data, in->reply_to.data, in->type.data,
                            in->url.data,  in->tag.data,      key};
    for (int attempt = 0; attempt < INSERT_TRIES; attempt++) {
        PGresult *r =
            api_exec(c,
                     "INSERT INTO messages (tenant_id, account_id, recipient_id, request,"
                     " idempotency_key) VALUES ($1, $2, $3, " REQUEST_JSON ", $9)"
                     " ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL"
                     " DO NOTHING RETURNING id",
                     9, params);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            api_db_error(call, c, r, NULL);
            PQclear(r);
            return false;
        }
        if (PQntuples(r) == 1) {
            char id[24];
            snprintf(id, sizeof(id), "%s", PQgetvalue(r, 0, 0));
            PQclear(r);
            int64_t job_id;
            int rc = db_jobs_enqueue_send(c, strtoll(account, NULL, 10), strtoll(id, NULL, 10),
                                          in->recipient.data, &job_id);
            if (rc != 0) {
                jobs_error(call, rc);
                return false;
            }
            return reply_message(call, c, id, tenant);
        }
        PQclear(r);

        /* The key is taken; its holder has committed (the INSERT waited). */
        r = api_exec(c,
                     "SELECT id, account_id = $2 AND request = " REQUEST_JSON " FROM messages"
                     " WHERE tenant_id = $1 AND idempotency_key = $9",
                     9, params);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            api_db_error(call, c, r, NULL);
            PQclear(r);
            return false;
        }
        if (PQntuples(r) == 0) { /* deleted meanwhile with its account: try again */
            PQclear(r);
            continue;
        }
        char id[24];
        snprintf(id, sizeof(id), "%s", PQgetvalue(r, 0, 0));
        bool same = strcmp(PQgetvalue(r, 0, 1), "t") == 0;
        PQclear(r);
        if (!same) {
            api_error(call, 409, "idempotency_conflict",
                      "this Idempotency-Key was used for another request (message %s)", id);
            return false;
        }
        return reply_message(call, c, id, tenant);
    }
    api_error(call, 503, "unavailable", "the Idempotency-Key is contended; retry");
    return false;
}

void messages_create(struct api_call *call, PGconn *c)
{
    if (!check_idempotency_key(call))
        return;
    struct json_doc doc;
    if (!api_body_object(call, &doc))
        return;
    struct message_in in;
    message_in_init(&in);
    bool ok = read_message(call, &doc, &in);
    json_doc_dispose(&doc);
    if (!ok || !api_begin(call, c)) {
        message_in_dispose(&in);
        return;
    }

    char account[24], sc[24], tenant[24];
    snprintf(account, sizeof(account), "%" PRId64, call->ids[0]);
    const char *params[] = {account, api_scope(call, sc)};
    /* SHARE: the account can neither be deleted under the INSERT nor get a
     * new token before it commits, so the send job's first run_at (held
     * while the token is invalid) is released by the token's change. */
    PGresult *r = api_exec(c,
                           "SELECT tenant_id FROM accounts WHERE id = $1"
                           " AND ($2::bigint IS NULL OR tenant_id = $2) FOR SHARE",
                           2, params);
    ok = false;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        api_db_error(call, c, r, NULL);
    } else if (PQntuples(r) == 0) {
        api_not_found(call, "no account with this id");
    } else {
        snprintf(tenant, sizeof(tenant), "%s", PQgetvalue(r, 0, 0));
        ok = true;
    }
    PQclear(r);
    if (ok && store(call, c, tenant, account, &in))
        api_commit(call, c); /* on failure its error replaces the 202 */
    else
        api_rollback(c);
    message_in_dispose(&in);
}

void messages_list(struct api_call *call, PGconn *c)
{
    static const char *const known[] = {"limit", "cursor", "state", NULL};
    int limit;
    int64_t before = 0, unused;
    int has_cursor;
    if (!api_params_only(call, known, NULL) || !api_limit(call, &limit) ||
        (has_cursor = api_cursor_decode(call, &before, &unused)) < 0)
        return;
    const char *state = api_param(call, "state");
    if (state != NULL && !in_list(state, STATES)) {
        api_error(call, 400, "bad_request",
                  "state must be queued, retrying, sending, sent, failed, dead or held");
        return;
    }

    char account[24], sc[24], b[24], l[16];
    snprintf(account, sizeof(account), "%" PRId64, call->ids[0]);
    snprintf(b, sizeof(b), "%" PRId64, before);
    snprintf(l, sizeof(l), "%d", limit + 1);
    const char *tenant = api_scope(call, sc);
    const char *ap[] = {account, tenant};
    PGresult *r = api_exec(c,
                           "SELECT 1 FROM accounts WHERE id = $1"
                           " AND ($2::bigint IS NULL OR tenant_id = $2)",
                           2, ap);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) == 0) {
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            api_db_error(call, c, r, NULL);
        else
            api_not_found(call, "no account with this id");
        PQclear(r);
        return;
    }
    PQclear(r);

    const char *params[] = {account, tenant, has_cursor > 0 ? b : NULL, state, l};
    r = api_exec(c,
                 "SELECT " MESSAGE_JSON ", m.id" MESSAGE_FROM " WHERE m.account_id = $1"
                 " AND ($2::bigint IS NULL OR m.tenant_id = $2)"
                 " AND ($3::int8 IS NULL OR m.id < $3)"
                 " AND ($4::text IS NULL OR " MESSAGE_STATE " = $4)"
                 " ORDER BY m.id DESC LIMIT $5",
                 5, params);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        api_db_error(call, c, r, NULL);
    else
        api_reply_list(call, r, 0, limit, 1, -1);
    PQclear(r);
}

void messages_get(struct api_call *call, PGconn *c)
{
    char id[24], sc[24];
    snprintf(id, sizeof(id), "%" PRId64, call->ids[0]);
    const char *params[] = {id, api_scope(call, sc)};
    PGresult *r = api_exec(c,
                           "SELECT " MESSAGE_JSON MESSAGE_FROM " WHERE m.id = $1"
                           " AND ($2::bigint IS NULL OR m.tenant_id = $2)",
                           2, params);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        api_db_error(call, c, r, NULL);
    else if (PQntuples(r) == 0)
        api_not_found(call, "no message with this id");
    else
        api_reply_row(call, 200, r);
    PQclear(r);
}

void messages_retry(struct api_call *call, PGconn *c)
{
    if (call->body != NULL && call->body_len > 0) {
        static const char *const none[] = {NULL};
        struct json_doc doc;
        if (!api_body_object(call, &doc))
            return;
        bool ok = api_body_only(call, &doc, none);
        json_doc_dispose(&doc);
        if (!ok)
            return;
    }
    char id[24], sc[24];
    snprintf(id, sizeof(id), "%" PRId64, call->ids[0]);
    const char *params[] = {id, api_scope(call, sc)};
    if (!api_begin(call, c))
        return;
    /* SHARE on the account, as when the reply was posted: a token being
     * replaced now sees the job this puts back. */
    PGresult *r = api_exec(c,
                           "SELECT 1 FROM messages m JOIN accounts a ON a.id = m.account_id"
                           " WHERE m.id = $1 AND ($2::bigint IS NULL OR m.tenant_id = $2)"
                           " FOR SHARE OF a",
                           2, params);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) == 0) {
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            api_db_error(call, c, r, NULL);
        else
            api_not_found(call, "no message with this id");
        PQclear(r);
        api_rollback(c);
        return;
    }
    PQclear(r);
    int rc = db_jobs_requeue_send(c, call->ids[0]);
    if (rc <= 0) {
        api_rollback(c);
        if (rc == 0)
            api_error(call, 409, "conflict", "only a failed or dead reply can be sent again");
        else
            api_error(call, rc == HB_EUNAVAILABLE ? 503 : 500,
                      rc == HB_EUNAVAILABLE ? "unavailable" : "internal",
                      "the reply could not be queued again");
        return;
    }
    if (!api_commit(call, c))
        return;
    r = api_exec(c,
                 "SELECT " MESSAGE_JSON MESSAGE_FROM " WHERE m.id = $1"
                 " AND ($2::bigint IS NULL OR m.tenant_id = $2)",
                 2, params);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) == 0)
        api_db_error(call, c, r, NULL);
    else
        api_reply_row(call, 202, r);
    PQclear(r);
}
