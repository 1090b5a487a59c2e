/*
 * graph.c - see graph.h.
 *
 * Each call starts and ends with curl_easy_reset(): every option is set
 * afresh, so nothing of one call (a method, a body pointer, a header list
 * holding a token, an error buffer in a freed response) can leak into the
 * next, while the handle keeps its connection pool, TLS session and DNS
 * caches. The response struct is filled by the write and header callbacks;
 * both keep to fixed caps, so a hostile or broken peer costs at most
 * max_response_bytes plus two usage headers.
 *
 * Security settings are not options: TLS peer and host verification are
 * always on, redirects are never followed (a redirect would carry the
 * Authorization header elsewhere), and only http and https are allowed. Plain
 * http is allowed because the tests talk to a local fake Graph API
 * (tests/fake_graph/); the production base URLs are https.
 */
#include "server/graph.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/hb.h"

struct graph_client {
    CURL *curl;
    int64_t connect_timeout_ms;
    int64_t timeout_ms;
    size_t max_response_bytes;
    char *user_agent;
    char *ca_file; /* NULL: the system's store */
};

/* What the callbacks of one transfer write into. */
struct xfer {
    struct graph_response *out;
    size_t max;
};

struct graph_client *graph_client_new(const struct graph_options *opt)
{
    struct graph_client *gc = xcalloc(1, sizeof(*gc));
    gc->curl = curl_easy_init();
    if (gc->curl == NULL) {
        fprintf(stderr, "level=fatal msg=\"curl_easy_init failed\"\n");
        abort();
    }
    gc->connect_timeout_ms = opt->connect_timeout_ms > 0 ? opt->connect_timeout_ms : 0;
    gc->timeout_ms = opt->timeout_ms > 0 ? opt->timeout_ms : 0;
    gc->max_response_bytes =
        opt->max_response_bytes > 0 ? opt->max_response_bytes : GRAPH_DEFAULT_MAX_RESPONSE;
    gc->user_agent = xstrdup(opt->user_agent != NULL ? opt->user_agent : GRAPH_DEFAULT_USER_AGENT);
    gc->ca_file = opt->ca_file != NULL ? xstrdup(opt->ca_file) : NULL;
    return gc;
}

void graph_client_free(struct graph_client *gc)
{
    if (gc == NULL)
        return;
    curl_easy_cleanup(gc->curl);
    free(gc->user_agent);
    free(gc->ca_file);
    free(gc);
}

void graph_response_dispose(struct graph_response *r)
{
    buf_dispose(&r->body);
    free(r->app_usage);
    free(r->buc_usage);
    r->app_usage = NULL;
    r->buc_usage = NULL;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct xfer *x = arg;
    size_t len = size * n;
    if (len > x->max - x->out->body.len) {
        x->out->is_too_big = true;
        return 0; /* anything but len aborts the transfer */
    }
    buf_append(&x->out->body, p, len);
    return len;
}

/* Keeps the value of header line p[0..len) in *dst when it is named name
 * (lowercase); a later line of the same name replaces it. */
static void capture_header(const char *p, size_t len, const char *name, char **dst)
{
    size_t nl = strlen(name);
    if (len <= nl || p[nl] != ':' || strncasecmp(p, name, nl) != 0)
        return;
    const char *v = p + nl + 1, *e = p + len;
    while (v < e && (*v == ' ' || *v == '\t'))
        v++;
    while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t'))
        e--;
    free(*dst);
    *dst = NULL;
    if ((size_t)(e - v) <= GRAPH_USAGE_HEADER_MAX)
        *dst = xstrndup(v, (size_t)(e - v));
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    struct xfer *x = arg;
    size_t len = size * n;
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        /* A new response (after a 1xx): only the final one's headers count. */
        free(x->out->app_usage);
        free(x->out->buc_usage);
        x->out->app_usage = NULL;
        x->out->buc_usage = NULL;
        return len;
    }
    capture_header(p, len, "x-app-usage", &x->out->app_usage);
    capture_header(p, len, "x-business-use-case-usage", &x->out->buc_usage);
    return len;
}

static bool has_control_chars(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

/* Whether a failed transfer may have put (part of) the request on the wire.
 * The codes listed fail before any request byte is sent. Otherwise curl's
 * pretransfer time (never 0 once reached: curl counts at least 1 us) or the
 * bytes of request sent tell; a timeout with neither struck while
 * connecting. Every other failure is assumed to have sent something. */
static bool may_have_left(CURL *h, CURLcode res, long status)
{
    if (status > 0)
        return true; /* an answer had begun */
    switch (res) {
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_FAILED_INIT:
    case CURLE_URL_MALFORMAT:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OUT_OF_MEMORY:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_BAD_FUNCTION_ARGUMENT:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
        return false;
    default:
        break;
    }
    curl_off_t pretransfer_us = 0;
    long request_bytes = 0;
    if (curl_easy_getinfo(h, CURLINFO_PRETRANSFER_TIME_T, &pretransfer_us) != CURLE_OK ||
        curl_easy_getinfo(h, CURLINFO_REQUEST_SIZE, &request_bytes) != CURLE_OK)
        return true;
    if (pretransfer_us > 0 || request_bytes > 0)
        return true;
    return res != CURLE_OPERATION_TIMEDOUT;
}

/* Frees a header list after overwriting its strings: one holds the token. */
static void free_headers(struct curl_slist *list)
{
    for (struct curl_slist *i = list; i != NULL; i = i->next)
        explicit_bzero(i->data, strlen(i->data));
    curl_slist_free_all(list);
}

static struct curl_slist *add_header(struct curl_slist *list, const char *line)
{
    struct curl_slist *l = curl_slist_append(list, line);
    if (l == NULL) {
        fprintf(stderr, "level=fatal msg=\"out of memory\" where=curl_slist_append\n");
        abort();
    }
    return l;
}

#define SETOPT(opt, val)                                                                           \
    do {                                                                                           \
        if (curl_easy_setopt(h, opt, val) != CURLE_OK) {                                           \
            snprintf(out->error, sizeof(out->error), "curl refused option %s", #opt);              \
            goto done;                                                                             \
        }                                                                                          \
    } while (0)

int graph_request(struct graph_client *gc, const char *method, const char *url, const char *token,
                  const char *content_type, const char *body, size_t body_len,
                  struct graph_response *out)
{
    CURL *h = gc->curl;
    struct curl_slist *headers = NULL;
    struct buf line;
    struct xfer x = {out, gc->max_response_bytes};
    CURLcode res = CURLE_FAILED_INIT;
    int rc = HB_EINVAL;

    memset(out, 0, sizeof(*out));
    buf_init(&out->body);
    buf_append(&out->body, "", 0); /* data is never NULL */
    out->curl_code = CURLE_OK;
    buf_init(&line);

    if (method == NULL || url == NULL)
        return HB_EINVAL;
    bool is_get = strcmp(method, "GET") == 0;
    bool is_post = strcmp(method, "POST") == 0;
    bool is_delete = strcmp(method, "DELETE") == 0;
    if (!is_get && !is_post && !is_delete)
        return HB_EINVAL;
    if (token != NULL && (token[0] == '\0' || has_control_chars(token) || strstr(url, token)))
        return HB_EINVAL;
    if (content_type != NULL && has_control_chars(content_type))
        return HB_EINVAL;
    if (body == NULL)
        body_len = 0;

    rc = HB_EIO;
    curl_easy_reset(h);
    SETOPT(CURLOPT_ERRORBUFFER, out->error);
    SETOPT(CURLOPT_URL, url);
    SETOPT(CURLOPT_NOSIGNAL, 1L);
    SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
    SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
    SETOPT(CURLOPT_SSL_VERIFYPEER, 1L);
    SETOPT(CURLOPT_SSL_VERIFYHOST, 2L);
    SETOPT(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if (gc->ca_file != NULL)
        SETOPT(CURLOPT_CAINFO, gc->ca_file);
    SETOPT(CURLOPT_CONNECTTIMEOUT_MS, (long)gc->connect_timeout_ms);
    SETOPT(CURLOPT_TIMEOUT_MS, (long)gc->timeout_ms);
    SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
    SETOPT(CURLOPT_USERAGENT, gc->user_agent);
    SETOPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)gc->max_response_bytes);
    SETOPT(CURLOPT_WRITEFUNCTION, on_body);
    SETOPT(CURLOPT_WRITEDATA, &x);
    SETOPT(CURLOPT_HEADERFUNCTION, on_header);
    SETOPT(CURLOPT_HEADERDATA, &x);

    if (is_post) {
        SETOPT(CURLOPT_POST, 1L);
        SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        SETOPT(CURLOPT_POSTFIELDS, body != NULL ? body : "");
    } else {
        SETOPT(CURLOPT_HTTPGET, 1L);
        if (is_delete)
            SETOPT(CURLOPT_CUSTOMREQUEST, "DELETE");
    }

    /* An empty "Expect:" stops curl from waiting for 100-continue. */
    headers = add_header(headers, "Expect:");
    if (content_type != NULL) {
        buf_printf(&line, "Content-Type: %s", content_type);
        headers = add_header(headers, line.data);
        buf_reset(&line);
    } else if (is_post) {
        /* Without this curl would claim a form body. */
        headers = add_header(headers, "Content-Type:");
    }
    if (token != NULL) {
        buf_printf(&line, "Authorization: Bearer %s", token);
        headers = add_header(headers, line.data);
        explicit_bzero(line.data, line.len);
        buf_reset(&line);
    }
    SETOPT(CURLOPT_HTTPHEADER, headers);

    res = curl_easy_perform(h);
    out->curl_code = res;
    if (res == CURLE_OK) {
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        out->http_status = (int)status;
        rc = 0;
        goto done;
    }
    long partial_status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &partial_status);
    out->is_timeout = res == CURLE_OPERATION_TIMEDOUT;
    if (res == CURLE_FILESIZE_EXCEEDED)
        out->is_too_big = true;
    out->is_maybe_delivered = may_have_left(h, res, partial_status);
    buf_reset(&out->body); /* a partial body is not an answer */

done:
    if (rc != 0 && out->error[0] == '\0')
        snprintf(out->error, sizeof(out->error), "%s", curl_easy_strerror(res));
    if (rc != 0)
        out->curl_code = res;
    /* Drops every pointer into this call (error buffer, callbacks' data,
     * the header list) before they go away; connections stay. */
    curl_easy_reset(h);
    free_headers(headers);
    buf_dispose(&line);
    return rc;
}

void graph_query_escape(struct buf *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    buf_reserve(out, n);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bool is_unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                             (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
        if (is_unreserved) {
            buf_putc(out, (char)c);
        } else {
            char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
            buf_append(out, esc, 3);
        }
    }
}
