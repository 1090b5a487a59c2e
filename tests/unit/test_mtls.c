/*
 * test_mtls.c - the pure parts of mutual TLS: the CN in a subject string as
 * proxies pass it, trusted-proxy address blocks, and which settings fit
 * together.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/hb.h"
#include "server/mtls.h"
#include "server/tls.h"

static void test_subject_cn(void **state)
{
    (void)state;
    static const struct {
        const char *subject;
        const char *cn; /* NULL: refused */
    } cases[] = {
        /* nginx's $ssl_client_s_dn and an ALB's header: RFC 2253, leaf first */
        {"CN=client.webhooks.fbclientcerts.com,O=Meta Platforms\\, Inc.,L=Menlo Park,ST=California,"
         "C=US",
         "client.webhooks.fbclientcerts.com"},
        {"C=US,ST=California,L=Menlo Park,O=Meta Platforms\\, "
         "Inc.,CN=client.webhooks.fbclientcerts.com",
         "client.webhooks.fbclientcerts.com"},
        {"cn=lower.example", "lower.example"},
        {"O=x, CN=spaced.example", "spaced.example"},
        {"CN=a\\,b", "a,b"},
        {"CN=caf\\C3\\A9.example", "caf\xc3\xa9.example"}, /* OpenSSL's hex escapes */
        {"CN=\\41\\2C", "A,"},
        {"CN=", ""},
        {"O=Meta", NULL},
        {"", NULL},
        {"CN=one,CN=two", NULL}, /* ambiguous */
        {"CN=x+CN=y", NULL},
        {"CNX=client.webhooks.fbclientcerts.com", NULL},
        {"garbage", NULL},
        /* an escaped NUL would cut the name short in a C string compare */
        {"CN=client.webhooks.fbclientcerts.com\\00.evil.example", NULL},
        {"CN=\\00", NULL},
    };
    for (size_t i = 0; i < HB_ARRAY_SIZE(cases); i++) {
        char cn[256];
        bool ok = tls_subject_cn(cases[i].subject, strlen(cases[i].subject), cn, sizeof(cn));
        if (cases[i].cn == NULL) {
            assert_false(ok);
        } else {
            assert_true(ok);
            assert_string_equal(cn, cases[i].cn);
        }
    }
    char small[8];
    const char *long_cn = "CN=client.webhooks.fbclientcerts.com";
    assert_false(tls_subject_cn(long_cn, strlen(long_cn), small, sizeof(small)));
}

static struct sockaddr_storage addr_of(const char *text)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (strchr(text, ':') != NULL) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, text, &a->sin6_addr), 1);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, text, &a->sin_addr), 1);
    }
    return ss;
}

static bool trusted(const char *list, const char *peer)
{
    struct mtls_cidr c[8];
    size_t n;
    char err[256];
    assert_int_equal(mtls_parse_cidrs(list, c, 8, &n, err, sizeof(err)), 0);
    struct sockaddr_storage ss = addr_of(peer);
    for (size_t i = 0; i < n; i++)
        if (mtls_cidr_contains(&c[i], (struct sockaddr *)&ss))
            return true;
    return false;
}

static void test_cidrs(void **state)
{
    (void)state;
    assert_true(trusted("127.0.0.1", "127.0.0.1"));
    assert_false(trusted("127.0.0.1", "127.0.0.2"));
    assert_true(trusted("10.0.0.0/8", "10.200.3.4"));
    assert_false(trusted("10.0.0.0/8", "11.0.0.1"));
    assert_true(trusted("192.168.1.0/25", "192.168.1.127"));
    assert_false(trusted("192.168.1.0/25", "192.168.1.128"));
    assert_true(trusted("0.0.0.0/0", "8.8.8.8"));
    assert_true(trusted(" 10.1.1.1 , 172.16.0.0/12", "172.31.255.255"));
    assert_true(trusted("::1", "::1"));
    assert_false(trusted("::1", "::2"));
    assert_true(trusted("fd00::/8", "fd12:3456::1"));
    /* An IPv4 peer on a dual-stack socket arrives v4-mapped. */
    assert_true(trusted("127.0.0.1", "::ffff:127.0.0.1"));
    assert_false(trusted("127.0.0.1", "::ffff:127.0.0.9"));
    assert_false(trusted("::/0", "127.0.0.1"));
    assert_true(trusted("::/0", "2001:db8::1"));
    assert_true(trusted("10.0.0.6/31", "10.0.0.7"));
    assert_false(trusted("10.0.0.6/31", "10.0.0.8"));
    assert_true(trusted("128.0.0.0/1", "200.1.1.1"));
    assert_false(trusted("128.0.0.0/1", "127.1.1.1"));
    assert_true(trusted("2001:db8::/33", "2001:db8:7fff::1"));
    assert_false(trusted("2001:db8::/33", "2001:db8:8000::1"));
    assert_true(trusted("10.0.0.0/8", "::ffff:10.9.9.9"));

    const char *bad[] = {"localhost", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/x",
                         "::1/129",   "1.2.3.4/-1",  "300.1.1.1"};
    for (size_t i = 0; i < HB_ARRAY_SIZE(bad); i++) {
        struct mtls_cidr c[4];
        size_t n;
        char err[256] = "";
        assert_int_equal(mtls_parse_cidrs(bad[i], c, 4, &n, err, sizeof(err)), HB_EINVAL);
        assert_non_null(strstr(err, "HUBBUB_MTLS_TRUSTED_PROXIES"));
    }
    struct mtls_cidr c[2];
    size_t n;
    char err[256];
    assert_int_equal(mtls_parse_cidrs("1.1.1.1,2.2.2.2,3.3.3.3", c, 2, &n, err, sizeof(err)),
                     HB_EINVAL);
}

static void test_policy(void **state)
{
    (void)state;
    struct config cfg;
    memset(&cfg, 0, sizeof(cfg));
    struct mtls_policy p;
    char err[256];
    assert_int_equal(mtls_policy_init(&p, &cfg, err, sizeof(err)), 0);
    assert_false(p.required);
    assert_string_equal(p.cn, TLS_META_CLIENT_CN);

    cfg.mtls_ca = "ca.pem";
    assert_int_equal(mtls_policy_init(&p, &cfg, err, sizeof(err)), HB_EINVAL);
    assert_non_null(strstr(err, "HUBBUB_TLS_LISTEN"));
    cfg.tls_listen = "127.0.0.1:8443";
    assert_int_equal(mtls_policy_init(&p, &cfg, err, sizeof(err)), 0);
    assert_true(p.required);

    memset(&cfg, 0, sizeof(cfg));
    cfg.mtls_proxy_header = "X-Amzn-Mtls-Clientcert-Subject";
    assert_int_equal(mtls_policy_init(&p, &cfg, err, sizeof(err)), HB_EINVAL);
    assert_non_null(strstr(err, "HUBBUB_MTLS_TRUSTED_PROXIES"));
    cfg.mtls_trusted_proxies = "10.0.0.0/8";
    cfg.mtls_cn = "other.example";
    assert_int_equal(mtls_policy_init(&p, &cfg, err, sizeof(err)), 0);
    assert_true(p.required);
    assert_string_equal(p.header, "x-amzn-mtls-clientcert-subject");
    assert_string_equal(p.cn, "other.example");
    assert_int_equal(p.nproxies, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_subject_cn),
        cmocka_unit_test(test_cidrs),
        cmocka_unit_test(test_policy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
