/*
 * tls.h - OpenSSL server contexts for hubbub's HTTPS listeners, with Meta's
 * mutual TLS: the client certificate must chain to a configured CA in at
 * most 3 steps and name client.webhooks.fbclientcerts.com (configurable) as
 * its subject CN.
 *
 * libh2o 2.2 gives no access to the peer certificate once a connection is
 * up, so the client check happens in the handshake: a connection that fails
 * it is refused before any request, let alone a body, is read. Refusals are
 * counted by reason and logged at most once a second.
 *
 * Contexts are built on the loop thread and used there only. A context is
 * reference-counted by OpenSSL: replacing it (SIGHUP) leaves connections
 * that use the old one running until they close.
 */
#ifndef HB_TLS_H
#define HB_TLS_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TLS_META_CLIENT_CN "client.webhooks.fbclientcerts.com"
#define TLS_CLIENT_DEPTH_MAX 3

enum tls_refusal {
    TLS_REFUSED_NO_CERT,   /* the client sent no certificate */
    TLS_REFUSED_UNTRUSTED, /* it does not chain to the CA, or the chain is too long */
    TLS_REFUSED_EXPIRED,   /* expired or not yet valid */
    TLS_REFUSED_WRONG_CN,  /* chains, but names someone else */
    TLS_REFUSED_OTHER,     /* any other handshake failure */
    TLS_REFUSED_KINDS
};

/* Counts of refused handshakes; owned by the caller, updated on the loop. */
struct tls_stats {
    uint64_t refused[TLS_REFUSED_KINDS];
    uint64_t log_last_ms, log_held;
};

const char *tls_refusal_name(enum tls_refusal r);

struct tls_settings {
    const char *cert_file;      /* PEM: the certificate, then its chain */
    const char *key_file;       /* PEM private key */
    const char *client_ca_file; /* NULL: no client certificates asked for */
    const char *client_cn;      /* required subject CN with client_ca_file */
};

/* Builds a server context: TLS 1.2 and 1.3 only, ALPN h2 and http/1.1.
 * With client_ca_file, every handshake must present a client certificate
 * that passes the check above; stats (kept alive by the caller) counts those
 * refused. NULL with a sentence in err when a file is missing or does not
 * match. */
SSL_CTX *tls_context_new(const struct tls_settings *s, struct tls_stats *stats, char *err,
                         size_t errsz);

/* "CN=..., expires 2027-01-01" of the context's certificate, for logs. */
void tls_describe(SSL_CTX *ctx, char *out, size_t outsz);

/* The value of the CN attribute in an RFC 2253/4514 subject string, as
 * proxies pass it ("CN=a.b,O=Meta Platforms\, Inc."), unescaped into out.
 * false when there is none, more than one, it holds a NUL byte or it does not
 * fit. */
bool tls_subject_cn(const char *subject, size_t len, char *out, size_t outsz);

#endif
