/*
 * tls.c - server contexts and Meta's client-certificate check; see tls.h.
 */
#include "server/tls.h"

#include <h2o.h>
#include <inttypes.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "lib/hex.h"
#include "lib/log.h"

#define REFUSAL_LOG_INTERVAL_MS 1000

/* What a context's callbacks need: kept in the context's ex_data. */
struct tls_check {
    char cn[256];
    struct tls_stats *stats;
};

static int check_index = -1;  /* SSL_CTX ex_data: struct tls_check * */
static int reason_index = -1; /* SSL ex_data: refusal + 1 set by the verify callback */

static const char *const REFUSAL_NAMES[TLS_REFUSED_KINDS] = {
    "no_certificate", "untrusted", "expired", "wrong_cn", "handshake_failed"};

const char *tls_refusal_name(enum tls_refusal r)
{
    return r < TLS_REFUSED_KINDS ? REFUSAL_NAMES[r] : "unknown";
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void free_check(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    OPENSSL_free(ptr);
}

static bool subject_cn_is(X509 *cert, const char *want)
{
    X509_NAME *name = X509_get_subject_name(cert);
    int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    if (i < 0 || X509_NAME_get_index_by_NID(name, NID_commonName, i) >= 0)
        return false; /* none, or more than one: ambiguous */
    const ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
    size_t n = strlen(want);
    return (size_t)ASN1_STRING_length(s) == n && memcmp(ASN1_STRING_get0_data(s), want, n) == 0;
}

static int on_verify(int preverify_ok, X509_STORE_CTX *store)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    const struct tls_check *check = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), check_index);
    enum tls_refusal why;
    if (!preverify_ok) {
        int err = X509_STORE_CTX_get_error(store);
        why = err == X509_V_ERR_CERT_HAS_EXPIRED || err == X509_V_ERR_CERT_NOT_YET_VALID
                  ? TLS_REFUSED_EXPIRED
                  : TLS_REFUSED_UNTRUSTED;
    } else if (X509_STORE_CTX_get_error_depth(store) == 0 &&
               !subject_cn_is(X509_STORE_CTX_get_current_cert(store), check->cn)) {
        why = TLS_REFUSED_WRONG_CN;
    } else {
        return 1;
    }
    if (SSL_get_ex_data(ssl, reason_index) == NULL)
        SSL_set_ex_data(ssl, reason_index, (void *)(uintptr_t)(why + 1));
    if (why == TLS_REFUSED_WRONG_CN) /* a certificate error, not an internal one */
        X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
    return 0;
}

/* Counts a handshake when we send it a fatal alert. */
static void on_info(const SSL *ssl, int where, int ret)
{
    if (!(where & SSL_CB_WRITE_ALERT) || (ret >> 8) != SSL3_AL_FATAL)
        return;
    const struct tls_check *check = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), check_index);
    if (check == NULL || check->stats == NULL)
        return;
    uintptr_t recorded = (uintptr_t)SSL_get_ex_data(ssl, reason_index);
    enum tls_refusal why = TLS_REFUSED_OTHER;
    if (recorded != 0)
        why = (enum tls_refusal)(recorded - 1);
    else if ((ret & 0xff) == 116 /* certificate_required */ ||
             ((ret & 0xff) == SSL_AD_HANDSHAKE_FAILURE && check->cn[0] != '\0' &&
              SSL_get_state(ssl) == TLS_ST_SR_CERT)) /* TLS 1.2: while reading the client's */
        why = TLS_REFUSED_NO_CERT;
    struct tls_stats *st = check->stats;
    st->refused[why]++;
    struct log_throttle t = {st->log_last_ms, st->log_held};
    uint64_t held;
    if (log_throttle_pass(&t, now_ms(), REFUSAL_LOG_INTERVAL_MS, &held))
        log_warn("TLS handshake refused",
                 "reason=%s alert=\"%s\" refused_total=%" PRIu64 " similar_held_back=%" PRIu64,
                 tls_refusal_name(why), SSL_alert_desc_string_long(ret), st->refused[why], held);
    st->log_last_ms = t.last_ms;
    st->log_held = t.held;
}

static void openssl_error(char *err, size_t errsz, const char *what, const char *file)
{
    unsigned long e = ERR_get_error();
    char detail[256] = "";
    if (e != 0)
        ERR_error_string_n(e, detail, sizeof(detail));
    ERR_clear_error();
    snprintf(err, errsz, "%s %s%s%s", what, file, detail[0] ? ": " : "", detail);
}

SSL_CTX *tls_context_new(const struct tls_settings *s, struct tls_stats *stats, char *err,
                         size_t errsz)
{
    /* The loop thread alone makes contexts: no race on the indexes. */
    if (check_index < 0)
        check_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, free_check);
    if (reason_index < 0)
        reason_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    SSL_CTX *ctx = check_index < 0 || reason_index < 0 ? NULL : SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        snprintf(err, errsz, "OpenSSL cannot make a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate_chain_file(ctx, s->cert_file) != 1) {
        openssl_error(err, errsz, "HUBBUB_TLS_CERT: cannot load the certificate chain",
                      s->cert_file);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, s->key_file, SSL_FILETYPE_PEM) != 1) {
        openssl_error(err, errsz, "HUBBUB_TLS_KEY: cannot load the private key", s->key_file);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        openssl_error(err, errsz,
                      "HUBBUB_TLS_KEY: the private key does not match the certificate in",
                      s->cert_file);
        goto fail;
    }

    struct tls_check *check = OPENSSL_zalloc(sizeof(*check));
    if (check == NULL || SSL_CTX_set_ex_data(ctx, check_index, check) != 1) {
        OPENSSL_free(check);
        snprintf(err, errsz, "OpenSSL cannot make a TLS context");
        goto fail;
    }
    check->stats = stats;
    SSL_CTX_set_info_callback(ctx, on_info);
    if (s->client_ca_file != NULL) {
        snprintf(check->cn, sizeof(check->cn), "%s", s->client_cn);
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(s->client_ca_file);
        if (names == NULL || SSL_CTX_load_verify_locations(ctx, s->client_ca_file, NULL) != 1) {
            if (names != NULL)
                sk_X509_NAME_pop_free(names, X509_NAME_free);
            openssl_error(err, errsz, "HUBBUB_MTLS_CA: cannot load the client CA",
                          s->client_ca_file);
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, on_verify);
        SSL_CTX_set_verify_depth(ctx, TLS_CLIENT_DEPTH_MAX);
    }
    h2o_ssl_register_alpn_protocols(ctx, h2o_http2_alpn_protocols);
    return ctx;

fail:
    SSL_CTX_free(ctx);
    return NULL;
}

void tls_describe(SSL_CTX *ctx, char *out, size_t outsz)
{
    X509 *cert = SSL_CTX_get0_certificate(ctx);
    char cn[256] = "?", expires[64] = "?";
    if (cert != NULL) {
        X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn));
        struct tm tm;
        if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) == 1)
            strftime(expires, sizeof(expires), "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    snprintf(out, outsz, "cn=%s expires=%s", cn, expires);
}

bool tls_subject_cn(const char *subject, size_t len, char *out, size_t outsz)
{
    bool found = false;
    size_t i = 0;
    while (i < len) {
        /* One attribute: type '=' value, up to an unescaped ',' or '+'. */
        while (i < len && subject[i] == ' ')
            i++;
        size_t type_start = i;
        while (i < len && subject[i] != '=')
            i++;
        if (i == len)
            return false;
        size_t type_len = i - type_start;
        i++;
        bool is_cn = type_len == 2 && (subject[type_start] == 'C' || subject[type_start] == 'c') &&
                     (subject[type_start + 1] == 'N' || subject[type_start + 1] == 'n');
        size_t o = 0;
        while (i < len && subject[i] != ',' && subject[i] != '+') {
            char c = subject[i++];
            if (c == '\\' && i + 1 < len && hex_value((unsigned char)subject[i]) >= 0 &&
                hex_value((unsigned char)subject[i + 1]) >= 0) {
                /* \XX: a byte in hex, as OpenSSL writes non-ASCII ones */
                c = (char)(hex_value((unsigned char)subject[i]) << 4 |
                           hex_value((unsigned char)subject[i + 1]));
                i += 2;
            } else if (c == '\\' && i < len) {
                c = subject[i++];
            }
            if (is_cn) {
                if (o + 1 >= outsz || c == '\0') /* a NUL would end the name early */
                    return false;
                out[o++] = c;
            }
        }
        if (is_cn) {
            if (found)
                return false;
            found = true;
            out[o] = '\0';
        }
        i++; /* the separator */
    }
    return found;
}
