/*
 * test_openapi.c - docs/openapi.yaml against the code: every route of
 * api_routes() is documented and every documented /v1 route exists, the copy
 * compiled into the binary is the file on disk, every $ref resolves, and the
 * webhook fields it lists are the ones api/fields.c knows.
 *
 * No YAML library: the document is read with a line scanner that relies on
 * the layout the file promises in its header: path keys written as their
 * pattern at two spaces under "paths:", methods at four spaces below them,
 * and component names at four spaces under their kind under "components:".
 * The scanner's own test shows that a route missing from a document fails.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api.h"
#include "api/fields.h"
#include "api/openapi.h"

#ifndef HB_SOURCE_DIR
#define HB_SOURCE_DIR "."
#endif
#define DOC_PATH HB_SOURCE_DIR "/docs/openapi.yaml"

#define MAX_OPS 128
#define MAX_NAMES 64

/* One path + method the document describes; method as written (lowercase). */
struct op {
    char path[128];
    char method[8];
};

/* The operations an OpenAPI path item may hold. */
static const char *const METHODS[] = {"get",     "put",  "post",  "delete",
                                      "options", "head", "patch", "trace"};

/* ---- the line scanner ---- */

struct line {
    const char *s; /* content after the indentation */
    size_t len;    /* without trailing blanks or CR */
    size_t indent;
};

/* Advances *p to the next line holding something other than blanks or a
 * comment. Block scalar text is returned too; it is always indented deeper
 * than the key that holds it, so it never looks like a key at the levels the
 * scanners look at. */
static bool next_line(const char **p, const char *end, struct line *l)
{
    while (*p < end) {
        const char *b = *p;
        const char *nl = memchr(b, '\n', (size_t)(end - b));
        const char *e = nl != NULL ? nl : end;
        *p = nl != NULL ? nl + 1 : end;
        const char *s = b;
        while (s < e && *s == ' ')
            s++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
            e--;
        if (s == e || *s == '#')
            continue;
        l->s = s;
        l->len = (size_t)(e - s);
        l->indent = (size_t)(s - b);
        return true;
    }
    return false;
}

/* Whether the line is exactly "key:" (a mapping key whose value follows). */
static bool is_key(const struct line *l, const char *key, size_t klen)
{
    return l->len == klen + 1 && memcmp(l->s, key, klen) == 0 && l->s[klen] == ':';
}

static bool is_key_str(const struct line *l, const char *key)
{
    return is_key(l, key, strlen(key));
}

/* Collects the operations under paths: into ops (at most max). Returns how
 * many the document has, which may exceed max. */
static size_t scan_operations(const char *text, size_t len, struct op *ops, size_t max)
{
    const char *p = text, *end = text + len;
    struct line l;
    bool in_paths = false;
    char path[sizeof(ops->path)] = "";
    size_t n = 0;

    while (next_line(&p, end, &l)) {
        if (l.indent == 0) {
            in_paths = is_key_str(&l, "paths");
            path[0] = '\0';
        } else if (!in_paths) {
            continue;
        } else if (l.indent == 2) {
            path[0] = '\0';
            if (l.s[0] == '/' && l.s[l.len - 1] == ':' && l.len - 1 < sizeof(path)) {
                memcpy(path, l.s, l.len - 1);
                path[l.len - 1] = '\0';
            }
        } else if (l.indent == 4 && path[0] != '\0') {
            for (size_t i = 0; i < sizeof(METHODS) / sizeof(METHODS[0]); i++) {
                if (!is_key_str(&l, METHODS[i]))
                    continue;
                if (n < max) {
                    snprintf(ops[n].path, sizeof(ops[n].path), "%s", path);
                    snprintf(ops[n].method, sizeof(ops[n].method), "%s", METHODS[i]);
                }
                n++;
            }
        }
    }
    return n;
}

/* Whether components: has kind: (at two spaces) with name: (at four). */
static bool has_component(const char *text, size_t len, const char *kind, size_t klen,
                          const char *name, size_t nlen)
{
    const char *p = text, *end = text + len;
    struct line l;
    bool in_components = false, in_kind = false;

    while (next_line(&p, end, &l)) {
        if (l.indent == 0) {
            in_components = is_key_str(&l, "components");
            in_kind = false;
        } else if (in_components && l.indent == 2) {
            in_kind = is_key(&l, kind, klen);
        } else if (in_kind && l.indent == 4 && is_key(&l, name, nlen)) {
            return true;
        }
    }
    return false;
}

/* Collects the items of the enum directly under components/schemas/schema. */
static size_t scan_schema_enum(const char *text, size_t len, const char *schema, char names[][64],
                               size_t max)
{
    const char *p = text, *end = text + len;
    struct line l;
    bool in_components = false, in_schemas = false, in_schema = false, in_enum = false;
    size_t n = 0;

    while (next_line(&p, end, &l)) {
        if (l.indent == 0) {
            in_components = is_key_str(&l, "components");
            in_schemas = in_schema = in_enum = false;
        } else if (in_components && l.indent == 2) {
            in_schemas = is_key_str(&l, "schemas");
            in_schema = in_enum = false;
        } else if (in_schemas && l.indent == 4) {
            in_schema = is_key_str(&l, schema);
            in_enum = false;
        } else if (in_schema && l.indent == 6 && is_key_str(&l, "enum")) {
            in_enum = true;
        } else if (in_enum && l.indent >= 6 && l.len > 2 && memcmp(l.s, "- ", 2) == 0) {
            if (n < max)
                snprintf(names[n], 64, "%.*s", (int)(l.len - 2), l.s + 2);
            n++;
        } else {
            in_enum = false;
        }
    }
    return n;
}

/* The property names of components/schemas/schema (into props) and the
 * items of its flow-style "required: [a, b]" (into req); counts out. */
static void scan_schema_keys(const char *text, size_t len, const char *schema, char props[][64],
                             size_t *nprops, char req[][64], size_t *nreq, size_t max)
{
    const char *p = text, *end = text + len;
    struct line l;
    bool in_components = false, in_schemas = false, in_schema = false, in_props = false;
    *nprops = *nreq = 0;

    while (next_line(&p, end, &l)) {
        if (l.indent == 0) {
            in_components = is_key_str(&l, "components");
            in_schemas = in_schema = in_props = false;
        } else if (in_components && l.indent == 2) {
            in_schemas = is_key_str(&l, "schemas");
            in_schema = in_props = false;
        } else if (in_schemas && l.indent == 4) {
            in_schema = is_key_str(&l, schema);
            in_props = false;
        } else if (in_schema && l.indent == 6) {
            in_props = is_key_str(&l, "properties");
            if (l.len > 11 && memcmp(l.s, "required: [", 11) == 0 && l.s[l.len - 1] == ']') {
                const char *s = l.s + 11, *e = l.s + l.len - 1;
                while (s < e) {
                    const char *c = memchr(s, ',', (size_t)(e - s));
                    const char *ie = c != NULL ? c : e;
                    while (s < ie && *s == ' ')
                        s++;
                    if (s < ie && *nreq < max)
                        snprintf(req[*nreq], 64, "%.*s", (int)(ie - s), s);
                    if (s < ie)
                        (*nreq)++;
                    s = ie + 1;
                }
            }
        } else if (in_props && l.indent == 8 && l.s[l.len - 1] == ':') {
            if (*nprops < max)
                snprintf(props[*nprops], 64, "%.*s", (int)(l.len - 1), l.s);
            (*nprops)++;
        }
    }
}

/* The first route of routes[] the document does not describe, or NULL. */
static const struct api_route *first_undocumented(const struct op *ops, size_t nops,
                                                  const struct api_route *routes, size_t nroutes)
{
    for (size_t i = 0; i < nroutes; i++) {
        bool found = false;
        for (size_t j = 0; j < nops && !found; j++)
            found = strcmp(ops[j].path, routes[i].pattern) == 0 &&
                    strcasecmp(ops[j].method, routes[i].method) == 0;
        if (!found)
            return &routes[i];
    }
    return NULL;
}

/* The first /v1 operation of ops[] that routes[] lacks, or NULL. */
static const struct op *first_unrouted(const struct op *ops, size_t nops,
                                       const struct api_route *routes, size_t nroutes)
{
    for (size_t j = 0; j < nops; j++) {
        if (strncmp(ops[j].path, "/v1/", 4) != 0 && strcmp(ops[j].path, "/v1") != 0)
            continue;
        bool found = false;
        for (size_t i = 0; i < nroutes && !found; i++)
            found = strcmp(ops[j].path, routes[i].pattern) == 0 &&
                    strcasecmp(ops[j].method, routes[i].method) == 0;
        if (!found)
            return &ops[j];
    }
    return NULL;
}

/* ---- the document ---- */

static char *read_doc(size_t *len)
{
    FILE *f = fopen(DOC_PATH, "rb");
    if (f == NULL)
        fail_msg("cannot open %s", DOC_PATH);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long size = ftell(f);
    assert_true(size >= 0);
    assert_int_equal(fseek(f, 0, SEEK_SET), 0);
    char *text = malloc((size_t)size + 1);
    assert_non_null(text);
    assert_int_equal(fread(text, 1, (size_t)size, f), (size_t)size);
    text[size] = '\0';
    fclose(f);
    *len = (size_t)size;
    return text;
}

static size_t doc_operations(struct op *ops)
{
    size_t len;
    char *text = read_doc(&len);
    size_t n = scan_operations(text, len, ops, MAX_OPS);
    free(text);
    assert_true(n <= MAX_OPS);
    return n;
}

/* ---- tests ---- */

/* The scanner finds methods only at their place under their path, and a
 * route the document lacks is reported: the checks below can fail. */
static void test_scanner_finds_only_documented_routes(void **state)
{
    (void)state;
    static const char doc[] = "openapi: 3.1.0\n"
                              "info:\n"
                              "  description: |\n"
                              "    /v1/fake:\n"
                              "      get:\n"
                              "paths:\n"
                              "  # a comment\n"
                              "  /v1/a:\n"
                              "    parameters:\n"
                              "      - $ref: '#/components/parameters/Id'\n"
                              "    get:\n"
                              "      description: |\n"
                              "        post:\n"
                              "      responses:\n"
                              "        delete:\n"
                              "\n"
                              "  /v1/a/{id}:\n"
                              "    patch:\n"
                              "    x-get:\n"
                              "components:\n"
                              "  /v1/c:\n"
                              "    put:\n"
                              "  schemas:\n"
                              "    Id:\n"
                              "      type: integer\n";
    struct op ops[8];
    size_t n = scan_operations(doc, strlen(doc), ops, 8);
    assert_int_equal(n, 2);
    assert_string_equal(ops[0].path, "/v1/a");
    assert_string_equal(ops[0].method, "get");
    assert_string_equal(ops[1].path, "/v1/a/{id}");
    assert_string_equal(ops[1].method, "patch");

    static const struct api_route documented[] = {
        {"GET", "/v1/a", API_ANY, NULL},
        {"PATCH", "/v1/a/{id}", API_OPERATOR, NULL},
    };
    assert_null(first_undocumented(ops, n, documented, 2));
    assert_null(first_unrouted(ops, n, documented, 2));

    /* In code but not in the document: POST /v1/a, DELETE /v1/a, GET /v1/c. */
    static const struct api_route extra[][1] = {
        {{"POST", "/v1/a", API_ANY, NULL}},
        {{"DELETE", "/v1/a", API_ANY, NULL}},
        {{"PUT", "/v1/c", API_ANY, NULL}},
        {{"GET", "/v1/a/{id}", API_ANY, NULL}},
    };
    for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++)
        assert_ptr_equal(first_undocumented(ops, n, extra[i], 1), &extra[i][0]);
    /* In the document but not in code. */
    assert_ptr_equal(first_unrouted(ops, n, documented, 1), &ops[1]);

    assert_true(has_component(doc, strlen(doc), "schemas", 7, "Id", 2));
    assert_false(has_component(doc, strlen(doc), "schemas", 7, "Ids", 3));
    assert_false(has_component(doc, strlen(doc), "parameters", 10, "Id", 2));
}

static void test_every_route_is_documented(void **state)
{
    (void)state;
    struct op ops[MAX_OPS];
    size_t nops = doc_operations(ops);
    size_t nroutes;
    const struct api_route *routes = api_routes(&nroutes);
    assert_true(nroutes > 0);
    const struct api_route *r = first_undocumented(ops, nops, routes, nroutes);
    if (r != NULL)
        fail_msg("api_routes() has %s %s, but docs/openapi.yaml has no \"  %s:\" path with "
                 "a \"    <method>:\" key for it",
                 r->method, r->pattern, r->pattern);
}

static void test_every_documented_route_exists(void **state)
{
    (void)state;
    struct op ops[MAX_OPS];
    size_t nops = doc_operations(ops);
    size_t nroutes;
    const struct api_route *routes = api_routes(&nroutes);
    const struct op *o = first_unrouted(ops, nops, routes, nroutes);
    if (o != NULL)
        fail_msg("docs/openapi.yaml documents %s %s, which api_routes() does not have", o->method,
                 o->path);
    /* Each operation once: a repeated path key would hide one from parsers. */
    for (size_t i = 0; i < nops; i++)
        for (size_t j = i + 1; j < nops; j++)
            if (strcmp(ops[i].path, ops[j].path) == 0 && strcmp(ops[i].method, ops[j].method) == 0)
                fail_msg("docs/openapi.yaml documents %s %s twice", ops[i].method, ops[i].path);
}

static void test_embedded_copy_is_the_file(void **state)
{
    (void)state;
    size_t len;
    char *text = read_doc(&len);
    assert_int_equal(api_openapi_yaml_len, len);
    assert_memory_equal(api_openapi_yaml, text, len);
    assert_int_equal(api_openapi_yaml[len], '\0');
    free(text);
}

static void test_version_and_refs(void **state)
{
    (void)state;
    size_t len;
    char *text = read_doc(&len);
    if (strncmp(text, "openapi: 3.1", 12) != 0)
        fail_msg("docs/openapi.yaml must start with \"openapi: 3.1\"");

    const char *p = text, *end = text + len;
    struct line l;
    size_t nrefs = 0;
    while (next_line(&p, end, &l)) {
        const char *at = memmem(l.s, l.len, "$ref:", 5);
        if (at == NULL)
            continue;
        const char *v = at + 5, *e = l.s + l.len;
        while (v < e && *v == ' ')
            v++;
        if (v < e && (*v == '\'' || *v == '"')) {
            if (e - v < 2 || e[-1] != *v)
                fail_msg("unbalanced quotes in: %.*s", (int)l.len, l.s);
            v++;
            e--;
        }
        static const char prefix[] = "#/components/";
        size_t plen = sizeof(prefix) - 1;
        if ((size_t)(e - v) <= plen || memcmp(v, prefix, plen) != 0)
            fail_msg("$ref outside #/components/: %.*s", (int)l.len, l.s);
        const char *kind = v + plen;
        const char *slash = memchr(kind, '/', (size_t)(e - kind));
        if (slash == NULL || slash == kind || slash + 1 == e ||
            memchr(slash + 1, '/', (size_t)(e - slash - 1)) != NULL)
            fail_msg("$ref is not #/components/<kind>/<name>: %.*s", (int)l.len, l.s);
        if (!has_component(text, len, kind, (size_t)(slash - kind), slash + 1,
                           (size_t)(e - slash - 1)))
            fail_msg("$ref to a component that does not exist: %.*s", (int)(e - v), v);
        nrefs++;
    }
    assert_true(nrefs > 0);
    free(text);
}

/* The WebhookField enum is api/fields.c's list, in the same order. */
static void test_webhook_fields_match_the_table(void **state)
{
    (void)state;
    size_t len;
    char *text = read_doc(&len);
    char names[MAX_NAMES][64];
    size_t n = scan_schema_enum(text, len, "WebhookField", names, MAX_NAMES);
    free(text);
    size_t nfields;
    const char *const *fields = fields_all(&nfields);
    assert_true(n <= MAX_NAMES);
    for (size_t i = 0; i < nfields || i < n; i++) {
        if (i >= n)
            fail_msg("WebhookField in docs/openapi.yaml lacks %s", fields[i]);
        if (i >= nfields)
            fail_msg("WebhookField in docs/openapi.yaml has %s, unknown to api/fields.c", names[i]);
        if (strcmp(names[i], fields[i]) != 0)
            fail_msg("WebhookField item %zu is %s in docs/openapi.yaml, %s in api/fields.c", i,
                     names[i], fields[i]);
    }
}

/* A tenant is always rendered with all its members (retention_days may be
 * null, but is there: api/tenants.c builds it with jsonb_build_object), so
 * the Tenant schema requires every property it lists. */
static void test_tenant_requires_every_property(void **state)
{
    (void)state;
    size_t len;
    char *text = read_doc(&len);
    char props[MAX_NAMES][64], req[MAX_NAMES][64];
    size_t nprops, nreq;
    scan_schema_keys(text, len, "Tenant", props, &nprops, req, &nreq, MAX_NAMES);
    free(text);
    assert_true(nprops >= 4 && nprops <= MAX_NAMES);
    assert_true(nreq <= MAX_NAMES);
    for (size_t i = 0; i < nprops; i++) {
        bool found = false;
        for (size_t j = 0; j < nreq && !found; j++)
            found = strcmp(props[i], req[j]) == 0;
        if (!found)
            fail_msg("Tenant in docs/openapi.yaml does not require %s, which is always returned",
                     props[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scanner_finds_only_documented_routes),
        cmocka_unit_test(test_every_route_is_documented),
        cmocka_unit_test(test_every_documented_route_exists),
        cmocka_unit_test(test_embedded_copy_is_the_file),
        cmocka_unit_test(test_version_and_refs),
        cmocka_unit_test(test_webhook_fields_match_the_table),
        cmocka_unit_test(test_tenant_requires_every_property),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
