/*
 * mtls.c - see mtls.h.
 */
#include "server/mtls.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/hb.h"
#include "server/tls.h"

static int parse_one(const char *s, size_t n, struct mtls_cidr *c)
{
    char text[INET6_ADDRSTRLEN + 8];
    if (n == 0 || n >= sizeof(text))
        return HB_EINVAL;
    memcpy(text, s, n);
    text[n] = '\0';
    char *slash = strchr(text, '/');
    if (slash != NULL)
        *slash++ = '\0';
    memset(c, 0, sizeof(*c));
    if (inet_pton(AF_INET, text, c->addr) == 1) {
        c->family = AF_INET;
        c->bits = 32;
    } else if (inet_pton(AF_INET6, text, c->addr) == 1) {
        c->family = AF_INET6;
        c->bits = 128;
    } else {
        return HB_EINVAL;
    }
    if (slash != NULL) {
        char *end;
        long bits = strtol(slash, &end, 10);
        if (*slash == '\0' || *end != '\0' || !isdigit((unsigned char)*slash) || bits < 0 ||
            bits > c->bits)
            return HB_EINVAL;
        c->bits = (int)bits;
    }
    return 0;
}

int mtls_parse_cidrs(const char *list, struct mtls_cidr *out, size_t max, size_t *n, char *err,
                     size_t errsz)
{
    *n = 0;
    const char *p = list;
    while (*p != '\0') {
        while (*p == ' ' || *p == ',')
            p++;
        if (*p == '\0')
            break;
        size_t len = strcspn(p, ", ");
        if (*n == max) {
            snprintf(err, errsz, "HUBBUB_MTLS_TRUSTED_PROXIES: more than %zu entries", max);
            return HB_EINVAL;
        }
        if (parse_one(p, len, &out[*n]) != 0) {
            snprintf(err, errsz,
                     "HUBBUB_MTLS_TRUSTED_PROXIES: '%.*s' is not an address or CIDR block",
                     (int)len, p);
            return HB_EINVAL;
        }
        (*n)++;
        p += len;
    }
    return 0;
}

bool mtls_cidr_contains(const struct mtls_cidr *c, const struct sockaddr *sa)
{
    uint8_t addr[16];
    if (sa->sa_family == AF_INET && c->family == AF_INET) {
        memcpy(addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const uint8_t *a6 = (const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
        static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (c->family == AF_INET6)
            memcpy(addr, a6, 16);
        else if (memcmp(a6, v4mapped, 12) == 0)
            memcpy(addr, a6 + 12, 4);
        else
            return false;
    } else {
        return false;
    }
    int full = c->bits / 8, rest = c->bits % 8;
    if (memcmp(addr, c->addr, (size_t)full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (addr[full] & mask) == (c->addr[full] & mask);
}

int mtls_policy_init(struct mtls_policy *p, const struct config *cfg, char *err, size_t errsz)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->cn, sizeof(p->cn), "%s", cfg->mtls_cn != NULL ? cfg->mtls_cn : TLS_META_CLIENT_CN);
    if (cfg->mtls_ca != NULL && cfg->tls_listen == NULL) {
        snprintf(err, errsz,
                 "HUBBUB_MTLS_CA needs HUBBUB_TLS_LISTEN: the listener that asks "
                 "for client certificates");
        return HB_EINVAL;
    }
    if (cfg->mtls_proxy_header != NULL) {
        size_t n = strlen(cfg->mtls_proxy_header);
        if (n == 0 || n >= sizeof(p->header)) {
            snprintf(err, errsz, "HUBBUB_MTLS_PROXY_HEADER: expected a header name");
            return HB_EINVAL;
        }
        for (size_t i = 0; i < n; i++)
            p->header[i] = (char)tolower((unsigned char)cfg->mtls_proxy_header[i]);
        if (cfg->mtls_trusted_proxies == NULL) {
            snprintf(err, errsz,
                     "HUBBUB_MTLS_PROXY_HEADER needs HUBBUB_MTLS_TRUSTED_PROXIES: "
                     "the header is believed only from those addresses");
            return HB_EINVAL;
        }
        if (mtls_parse_cidrs(cfg->mtls_trusted_proxies, p->proxies, MTLS_MAX_PROXIES, &p->nproxies,
                             err, errsz) != 0)
            return HB_EINVAL;
    }
    p->required = cfg->mtls_ca != NULL || cfg->mtls_proxy_header != NULL;
    return 0;
}

static bool from_trusted_proxy(const struct mtls_policy *p, h2o_req_t *req)
{
    struct sockaddr_storage peer;
    if (req->conn->callbacks->get_peername == NULL ||
        req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&peer) == 0)
        return false;
    for (size_t i = 0; i < p->nproxies; i++)
        if (mtls_cidr_contains(&p->proxies[i], (struct sockaddr *)&peer))
            return true;
    return false;
}

bool mtls_allows(struct mtls_policy *p, const struct http *h, h2o_req_t *req, const char **why)
{
    if (!p->required || http_client_verified(h, req))
        return true;
    *why = "a verified client certificate is required";
    if (p->header[0] != '\0' && from_trusted_proxy(p, req)) {
        size_t len = strlen(p->header);
        ssize_t i = h2o_find_header_by_str(&req->headers, p->header, len, -1);
        const h2o_iovec_t *subject = i < 0 ? NULL : &req->headers.entries[i].value;
        char cn[256];
        if (subject == NULL) {
            *why = "the proxy passed no client certificate subject";
        } else if (h2o_find_header_by_str(&req->headers, p->header, len, i) >= 0) {
            /* A proxy that appends its header leaves the client's first. */
            *why = "more than one client certificate subject was passed";
        } else if (!tls_subject_cn(subject->base, subject->len, cn, sizeof(cn)) ||
                   strcmp(cn, p->cn) != 0) {
            *why = "the client certificate names someone other than Meta";
        } else {
            return true;
        }
    }
    p->refused++;
    return false;
}
