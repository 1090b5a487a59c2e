/*
 * mtls.h - who may reach the webhook endpoint when mutual TLS is on.
 *
 * With HUBBUB_MTLS_CA or HUBBUB_MTLS_PROXY_HEADER set, a webhook request is
 * let in only when it came over hubbub's own HTTPS listener, whose handshake
 * verified Meta's client certificate (server/tls.h), or from a configured
 * proxy address carrying the verified subject in the configured header with
 * the right CN. The header from anyone else is ignored and the request
 * refused (403), so it cannot be forged by a client that reaches hubbub
 * directly. Refusals are counted.
 */
#ifndef HB_MTLS_H
#define HB_MTLS_H

#include <h2o.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "server/config.h"
#include "server/http.h"

#define MTLS_MAX_PROXIES 32

struct mtls_cidr {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    int bits;
};

struct mtls_policy {
    bool required;
    char cn[256];
    char header[128]; /* lower case; "" when no proxy mode */
    struct mtls_cidr proxies[MTLS_MAX_PROXIES];
    size_t nproxies;
    uint64_t refused; /* requests refused here (handshake refusals are in tls_stats) */
};

/* Parses "10.0.0.0/8, 192.168.1.7, ::1" into out; 0, or HB_EINVAL with err set. */
int mtls_parse_cidrs(const char *list, struct mtls_cidr *out, size_t max, size_t *n, char *err,
                     size_t errsz);
bool mtls_cidr_contains(const struct mtls_cidr *c, const struct sockaddr *sa);

/* From the settings; HB_EINVAL with err set when they do not fit together. */
int mtls_policy_init(struct mtls_policy *p, const struct config *cfg, char *err, size_t errsz);

/* Whether req may use the webhook endpoint; *why names the refusal. */
bool mtls_allows(struct mtls_policy *p, const struct http *h, h2o_req_t *req, const char **why);

#endif
