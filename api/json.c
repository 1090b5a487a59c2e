/*
 * json.c - strict JSON on top of jsmn; see json.h for the contract.
 *
 * json_parse() runs in four linear steps. A pre-scan finds where the
 * top-level value ends and checks the bracket depth on the raw bytes: jsmn's
 * close-bracket search climbs parent links, so a deeply nested body would cost
 * it depth squared, and it must never see one. jsmn then counts the tokens and
 * fills an array of exactly that size. Last, one walk over the tokens in
 * document order checks everything jsmn lets through: the separators in the
 * text between tokens, the grammar of every number and literal, and the bytes
 * of every string (escapes, control characters, UTF-8). That walk keeps a
 * cursor in the text and accounts for every byte of it, so no stray text can
 * hide between tokens.
 *
 * Readers (json_get, json_canonical, ...) assume a validated document. None of
 * them recurses over the tree: json_canonical keeps its own stack in one
 * allocation sized by the subtree, so a document's depth never meets the C
 * stack.
 */
#include "api/json.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <jsmn.h>

#include "lib/hb.h"
#include "lib/hex.h"

_Static_assert(sizeof(struct json_tok) == sizeof(jsmntok_t), "json_tok must match jsmntok_t");
_Static_assert(offsetof(struct json_tok, type) == offsetof(jsmntok_t, type), "type");
_Static_assert(offsetof(struct json_tok, start) == offsetof(jsmntok_t, start), "start");
_Static_assert(offsetof(struct json_tok, end) == offsetof(jsmntok_t, end), "end");
_Static_assert(offsetof(struct json_tok, size) == offsetof(jsmntok_t, size), "size");
_Static_assert(offsetof(struct json_tok, parent) == offsetof(jsmntok_t, parent), "parent");
_Static_assert(sizeof(jsmntype_t) == sizeof(int), "jsmntype_t must be an int");
_Static_assert(JSON_OBJECT == (int)JSMN_OBJECT && JSON_ARRAY == (int)JSMN_ARRAY &&
                   JSON_STRING == (int)JSMN_STRING && JSON_PRIMITIVE == (int)JSMN_PRIMITIVE,
               "json_type must match jsmntype_t");

/* PostgreSQL's numeric, behind jsonb numbers, refuses exponents beyond +-1000
 * and more than 16383 digits after the point; 131072 digits before it is its
 * other bound, kept with a margin. */
#define PG_EXP_MAX 1000
#define PG_SCALE_MAX 16383
#define PG_INT_DIGITS_MAX 131000

/* Subtrees this small are canonicalised with stack scratch, no malloc. */
#define CANON_SMALL 128

static const char SYNTAX[] = "invalid JSON syntax";
static const char TRAILING[] = "unexpected text after the JSON value";

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static size_t skip_ws(const char *s, size_t i, size_t end)
{
    while (i < end && is_ws(s[i]))
        i++;
    return i;
}

static bool is_container(const struct json_tok *t)
{
    return t->type == JSON_OBJECT || t->type == JSON_ARRAY;
}

/* Token bounds with the quotes of a string included. */
static size_t raw_start(const struct json_tok *t)
{
    return (size_t)t->start - (t->type == JSON_STRING);
}

static size_t raw_end(const struct json_tok *t)
{
    return (size_t)t->end + (t->type == JSON_STRING);
}

static bool valid_index(const struct json_doc *doc, int i)
{
    return doc != NULL && i >= 0 && i < doc->ntoks;
}

static int fail(const char **why, const char *reason)
{
    *why = reason;
    return HB_EINVAL;
}

/* ---- bytes: hex, escapes, UTF-8 ---- */

static long hex4(const unsigned char *p)
{
    long v = 0;
    for (int k = 0; k < 4; k++) {
        int d = hex_value(p[k]);
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Decodes the escape at p (p[0] is the backslash, e ends the string body).
 * Returns its length: 2, 6, or 12 for a surrogate pair, which is decoded as
 * one code point; 0 when malformed. \u0000 and unpaired surrogates set
 * *is_unsafe and decode as U+FFFD, the one form every reader agrees on. */
static size_t escape_decode(const unsigned char *p, const unsigned char *e, uint32_t *cp,
                            bool *is_unsafe)
{
    *is_unsafe = false;
    if (e - p < 2)
        return 0;
    switch (p[1]) {
    case '"':
    case '\\':
    case '/':
        *cp = p[1];
        return 2;
    case 'b':
        *cp = '\b';
        return 2;
    case 'f':
        *cp = '\f';
        return 2;
    case 'n':
        *cp = '\n';
        return 2;
    case 'r':
        *cp = '\r';
        return 2;
    case 't':
        *cp = '\t';
        return 2;
    case 'u':
        break;
    default:
        return 0;
    }
    long u = e - p >= 6 ? hex4(p + 2) : -1;
    if (u < 0)
        return 0;
    if (u >= 0xD800 && u <= 0xDBFF && e - p >= 12 && p[6] == '\\' && p[7] == 'u') {
        long lo = hex4(p + 8);
        if (lo >= 0xDC00 && lo <= 0xDFFF) {
            *cp = 0x10000 + (((uint32_t)u - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
            return 12;
        }
    }
    if (u == 0 || (u >= 0xD800 && u <= 0xDFFF)) {
        *is_unsafe = true;
        *cp = 0xFFFD;
        return 6;
    }
    *cp = (uint32_t)u;
    return 6;
}

static size_t utf8_encode(uint32_t cp, unsigned char out[4])
{
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | (cp >> 18));
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* For the bytes at p (p < e, *p >= 0x80): the length of a well-formed UTF-8
 * sequence, or minus the length of the ill-formed prefix that one U+FFFD
 * replaces (Unicode's "maximal subpart" practice). The ranges of the second
 * byte exclude overlongs (E0, F0), UTF-8-encoded surrogates (ED) and code
 * points above U+10FFFF (F4). */
static int utf8_scan(const unsigned char *p, const unsigned char *e)
{
    unsigned c = p[0];
    unsigned lo = 0x80, hi = 0xBF;
    int n;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return -1;
    }
    int k = 1;
    for (; k < n && p + k < e; k++) {
        unsigned b = p[k];
        if (k == 1 ? (b < lo || b > hi) : (b & 0xC0) != 0x80)
            break;
    }
    return k == n ? n : -k;
}

/* ---- json_parse: pre-scan ---- */

/* Index of the quote that closes a string whose body starts at i, or len. A
 * quote closes the string unless an odd run of backslashes precedes it; memchr
 * makes the long ids and texts of webhook bodies cheap to pass over. */
static size_t skip_string(const char *s, size_t i, size_t len)
{
    for (;;) {
        const char *q = memchr(s + i, '"', len - i);
        if (q == NULL)
            return len;
        size_t k = (size_t)(q - s), b = k;
        while (b > i && s[b - 1] == '\\')
            b--;
        if ((k - b) % 2 == 0)
            return k;
        i = k + 1;
    }
}

static const char *depth_reason(int max_depth)
{
    return max_depth == 128 ? "nesting deeper than 128 levels" : "nesting too deep";
}

/* Finds the extent [*start, *end) of the top-level value, checking on the way
 * the nesting depth and NUL bytes. What follows is left to check_tree(), so
 * that an error inside the value is reported first. */
static int scan_root(const char *s, size_t len, int max_depth, size_t *start, size_t *end,
                     const char **why)
{
    /* jsmn stops at a NUL byte as if the text ended there; NULs are rare
     * enough to look for them in strings only when there is one at all. */
    bool has_nul = len > 0 && memchr(s, '\0', len) != NULL;
    size_t i = skip_ws(s, 0, len);
    if (i == len)
        return fail(why, "body is empty");
    *start = i;
    if (s[i] != '{' && s[i] != '[' && s[i] != '"') {
        /* A number or literal: up to whitespace, so that "1]" is judged as
         * a bad number rather than as trailing text. */
        while (i < len && !is_ws(s[i]))
            i++;
        *end = i;
    } else {
        int depth = 0;
        for (;; i++) {
            if (i >= len)
                return fail(why, "truncated JSON");
            char c = s[i];
            if (c == '"') {
                size_t body = i + 1;
                i = skip_string(s, body, len);
                if (has_nul && memchr(s + body, '\0', i - body) != NULL)
                    return fail(why, "control character in a string");
                if (i >= len)
                    return fail(why, "truncated JSON");
                if (depth == 0)
                    break;
            } else if (c == '{' || c == '[') {
                if (depth == max_depth)
                    return fail(why, depth_reason(max_depth));
                depth++;
            } else if (c == '}' || c == ']') {
                if (--depth == 0)
                    break;
            } else if (c == '\0') {
                return fail(why, SYNTAX);
            }
        }
        *end = i + 1;
    }
    return 0;
}

/* ---- json_parse: tokenising ---- */

static const char *jsmn_reason(int r, const char *s, size_t end, unsigned pos)
{
    if (r == JSMN_ERROR_PART)
        return "truncated JSON";
    /* jsmn rewinds to the opening quote when it refuses a string, and the
     * only thing it refuses in a string is an escape. */
    if (r == JSMN_ERROR_INVAL && pos < end && s[pos] == '"')
        return "invalid escape in a string";
    return SYNTAX;
}

/* A top-level number or literal: jsmn's strict mode wants a delimiter after
 * every primitive, which a lone "1" has not, so it gets its token here. */
static void tokenize_primitive(struct json_doc *d, size_t start, size_t end)
{
    d->toks = xmalloc(sizeof *d->toks);
    d->toks[0] = (struct json_tok){JSON_PRIMITIVE, (int)start, (int)end, 0, -1};
    d->ntoks = 1;
}

static int tokenize(struct json_doc *d, size_t end, const char **why)
{
    jsmn_parser p;
    jsmn_init(&p);
    int n = jsmn_parse(&p, d->text, end, NULL, 0);
    if (n <= 0)
        return fail(why, n == 0 ? SYNTAX : jsmn_reason(n, d->text, end, p.pos));
    d->toks = xmalloc((size_t)n * sizeof *d->toks);
    jsmn_init(&p);
    int r = jsmn_parse(&p, d->text, end, (jsmntok_t *)d->toks, (unsigned)n);
    /* jsmn wrote through jsmntok_t and we read through json_tok: keep the
     * compiler from using type-based alias analysis to reorder the two. */
    __asm__ __volatile__("" ::: "memory");
    if (r < 0)
        return fail(why, jsmn_reason(r, d->text, end, p.pos));
    d->ntoks = (int)p.toknext;
    return 0;
}

/* ---- json_parse: validation walk ---- */

/* s[from..to) is whitespace, around exactly one sep unless sep is 0. */
static bool gap_ok(const char *s, size_t from, size_t to, char sep)
{
    if (from > to)
        return false;
    from = skip_ws(s, from, to);
    if (sep != 0) {
        if (from == to || s[from] != sep)
            return false;
        from = skip_ws(s, from + 1, to);
    }
    return from == to;
}

static int check_string(struct json_doc *d, const struct json_tok *t, const char **why)
{
    const unsigned char *p = (const unsigned char *)d->text + t->start;
    const unsigned char *e = (const unsigned char *)d->text + t->end;
    if (d->text[t->start - 1] != '"' || d->text[t->end] != '"')
        return fail(why, SYNTAX);
    while (p < e) {
        unsigned c = *p;
        if (c >= 0x20 && c < 0x80 && c != '\\') {
            p++;
        } else if (c < 0x20) {
            return fail(why, "control character in a string");
        } else if (c == '\\') {
            uint32_t cp;
            bool is_unsafe;
            size_t n = escape_decode(p, e, &cp, &is_unsafe);
            if (n == 0)
                return fail(why, "invalid escape in a string");
            d->has_unsafe_escapes |= is_unsafe;
            p += n;
        } else {
            int n = utf8_scan(p, e);
            if (n < 0)
                return fail(why, "invalid UTF-8 in a string");
            p += n;
        }
    }
    return 0;
}

static const char *skip_digits(const char *p, const char *e)
{
    while (p < e && *p >= '0' && *p <= '9')
        p++;
    return p;
}

/* A jsonb number is a numeric; outside these bounds PostgreSQL refuses it. */
static bool fits_numeric(int64_t int_digits, int64_t frac_digits, int64_t exp)
{
    if (exp > PG_EXP_MAX || exp < -PG_EXP_MAX)
        return false;
    return int_digits + exp <= PG_INT_DIGITS_MAX && frac_digits - exp <= PG_SCALE_MAX;
}

/* RFC 8259 number grammar, plus the bounds PostgreSQL's numeric keeps. */
static int check_number(const char *p, const char *e, const char **why)
{
    if (p < e && *p == '-')
        p++;
    const char *q = p;
    if (p < e && *p == '0')
        p++;
    else if (p < e && *p >= '1' && *p <= '9')
        p = skip_digits(p, e);
    else
        return fail(why, "invalid number");
    int64_t int_digits = p - q, frac_digits = 0;
    if (p < e && *p == '.') {
        q = ++p;
        p = skip_digits(p, e);
        if (p == q)
            return fail(why, "invalid number");
        frac_digits = p - q;
    }
    int64_t exp = 0;
    if (p < e && (*p == 'e' || *p == 'E')) {
        bool is_neg = ++p < e && *p == '-';
        if (p < e && (*p == '-' || *p == '+'))
            p++;
        q = p;
        for (; p < e && *p >= '0' && *p <= '9'; p++)
            if (exp <= PG_EXP_MAX)
                exp = exp * 10 + (*p - '0');
        if (p == q)
            return fail(why, "invalid number");
        if (is_neg)
            exp = -exp;
    }
    if (p != e)
        return fail(why, "invalid number");
    if (!fits_numeric(int_digits, frac_digits, exp))
        return fail(why, "number out of range");
    return 0;
}

static int check_primitive(const struct json_doc *d, const struct json_tok *t, const char **why)
{
    const char *p = d->text + t->start;
    size_t n = (size_t)(t->end - t->start);
    if ((n == 4 && memcmp(p, "true", 4) == 0) || (n == 5 && memcmp(p, "false", 5) == 0) ||
        (n == 4 && memcmp(p, "null", 4) == 0))
        return 0;
    if (n > 0 && (*p | 0x20) >= 'a' && (*p | 0x20) <= 'z')
        return fail(why, "invalid literal");
    if (n == 0 || *p == '\0' || strchr("-+.0123456789", *p) == NULL)
        return fail(why, SYNTAX);
    return check_number(p, p + n, why);
}

/* The token lies within the text, with room for a string's quotes. */
static bool bounds_ok(const struct json_doc *d, const struct json_tok *t)
{
    return t->start >= (t->type == JSON_STRING) && t->end >= t->start && raw_end(t) <= d->len;
}

/* Structure and content of token i: object members are strings with exactly
 * one value each, and nothing but containers and keys has children. */
static int check_token(struct json_doc *d, int i, const char **why)
{
    const struct json_tok *t = &d->toks[i];
    bool is_key = t->parent >= 0 && d->toks[t->parent].type == JSON_OBJECT;
    switch (t->type) {
    case JSON_OBJECT:
    case JSON_ARRAY:
        if (is_key || d->text[t->start] != (t->type == JSON_OBJECT ? '{' : '['))
            return fail(why, SYNTAX);
        return 0;
    case JSON_STRING:
        if (t->size != (is_key ? 1 : 0))
            return fail(why, SYNTAX);
        return check_string(d, t, why);
    case JSON_PRIMITIVE:
        if (is_key || t->size != 0)
            return fail(why, SYNTAX);
        return check_primitive(d, t, why);
    }
    return fail(why, SYNTAX);
}

/* Closes, from token j up to (not including) p, every container that ends
 * before the next token: only whitespace may precede each closing bracket. */
static bool close_up(const struct json_doc *d, int j, int p, size_t *cur)
{
    while (j != p) {
        if (j < 0)
            return false;
        const struct json_tok *t = &d->toks[j];
        if (is_container(t)) {
            if (t->end <= t->start)
                return false;
            size_t close = (size_t)t->end - 1;
            if (!gap_ok(d->text, *cur, close, 0) ||
                d->text[close] != (t->type == JSON_OBJECT ? '}' : ']'))
                return false;
            *cur = (size_t)t->end;
        }
        j = t->parent;
    }
    return true;
}

static int check_tree(struct json_doc *d, const char **why)
{
    size_t cur = skip_ws(d->text, 0, d->len);
    for (int i = 0; i < d->ntoks; i++) {
        const struct json_tok *t = &d->toks[i];
        int p = t->parent;
        if (i > 0 && p == -1)
            return fail(why, TRAILING);
        if (p >= i || (i == 0 && p != -1) || (i > 0 && !close_up(d, i - 1, p, &cur)))
            return fail(why, SYNTAX);
        /* A token right after its parent is a container's first child or a
         * key's value; any other token follows a sibling. */
        char sep = 0;
        if (i > 0 && p != i - 1)
            sep = ',';
        else if (i > 0 && d->toks[p].type == JSON_STRING)
            sep = ':';
        if (!bounds_ok(d, t) || !gap_ok(d->text, cur, raw_start(t), sep))
            return fail(why, SYNTAX);
        int rc = check_token(d, i, why);
        if (rc != 0)
            return rc;
        cur = is_container(t) ? (size_t)t->start + 1 : raw_end(t);
    }
    if (d->ntoks == 0 || !close_up(d, d->ntoks - 1, -1, &cur))
        return fail(why, SYNTAX);
    if (skip_ws(d->text, cur, d->len) != d->len)
        return fail(why, TRAILING);
    return 0;
}

int json_parse(struct json_doc *doc, const char *text, size_t len, int max_depth, const char **why)
{
    const char *ignored;
    if (why == NULL)
        why = &ignored;
    memset(doc, 0, sizeof *doc);
    if (len > INT_MAX) {
        *why = "body is too large";
        return HB_ETOOBIG;
    }
    if (max_depth <= 0)
        max_depth = JSON_DEFAULT_MAX_DEPTH;
    struct json_doc d = {.text = text, .len = len};
    size_t start, end;
    int rc = scan_root(text, len, max_depth, &start, &end, why);
    if (rc != 0)
        return rc;
    if (text[start] == '{' || text[start] == '[' || text[start] == '"')
        rc = tokenize(&d, end, why);
    else
        tokenize_primitive(&d, start, end);
    if (rc == 0)
        rc = check_tree(&d, why);
    if (rc != 0) {
        free(d.toks);
        return rc;
    }
    *doc = d;
    return 0;
}

void json_doc_dispose(struct json_doc *doc)
{
    if (doc == NULL)
        return;
    free(doc->toks);
    memset(doc, 0, sizeof *doc);
}

/* ---- readers ---- */

int json_next(const struct json_doc *doc, int i)
{
    if (doc == NULL || i < 0)
        return -1;
    if (i >= doc->ntoks)
        return doc->ntoks;
    const struct json_tok *t = &doc->toks[i];
    if (t->type == JSON_STRING && t->size == 1 && i + 1 < doc->ntoks)
        t = &doc->toks[++i]; /* a key: its subtree ends with its value's */
    if (!is_container(t))
        return i + 1;
    /* Tokens come in order of their start offsets and each starts at its
     * own byte, so the subtree ends at the first token starting past the
     * closing bracket, within (end - start) tokens: a binary search keeps
     * walks over siblings from rescanning deep subtrees. */
    int lo = i + 1;
    int hi = t->end - t->start < doc->ntoks - lo ? lo + (t->end - t->start) : doc->ntoks;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (doc->toks[mid].start < t->end)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int json_child(const struct json_doc *doc, int parent, int n)
{
    if (!valid_index(doc, parent) || !is_container(&doc->toks[parent]) || n < 0 ||
        n >= doc->toks[parent].size)
        return -1;
    int c = parent + 1;
    for (int k = 0; k < n; k++)
        c = json_next(doc, c);
    return doc->toks[parent].type == JSON_OBJECT ? c + 1 : c;
}

static bool type_is(const struct json_doc *doc, int i, int type)
{
    return valid_index(doc, i) && doc->toks[i].type == type;
}

bool json_is_string(const struct json_doc *doc, int i)
{
    return type_is(doc, i, JSON_STRING);
}

bool json_is_object(const struct json_doc *doc, int i)
{
    return type_is(doc, i, JSON_OBJECT);
}

bool json_is_array(const struct json_doc *doc, int i)
{
    return type_is(doc, i, JSON_ARRAY);
}

/* Whether string token i unescapes to s[0..n), without building the copy. */
static bool string_equals(const struct json_doc *doc, int i, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)doc->text + doc->toks[i].start;
    const unsigned char *e = (const unsigned char *)doc->text + doc->toks[i].end;
    size_t k = 0;
    while (p < e) {
        if (*p != '\\') {
            if (k == n || (unsigned char)s[k] != *p)
                return false;
            p++;
            k++;
            continue;
        }
        uint32_t cp;
        bool is_unsafe;
        unsigned char u[4];
        size_t len = escape_decode(p, e, &cp, &is_unsafe);
        size_t m = utf8_encode(cp, u);
        if (len == 0 || n - k < m || memcmp(s + k, u, m) != 0)
            return false;
        p += len;
        k += m;
    }
    return k == n;
}

int json_get(const struct json_doc *doc, int obj, const char *key)
{
    if (!json_is_object(doc, obj) || key == NULL)
        return -1;
    size_t n = strlen(key);
    int found = -1;
    int c = obj + 1;
    for (int k = 0; k < doc->toks[obj].size; k++) {
        if (string_equals(doc, c, key, n))
            found = c + 1;
        c = json_next(doc, c);
    }
    return found;
}

bool json_int64(const struct json_doc *doc, int i, int64_t *out)
{
    if (!valid_index(doc, i))
        return false;
    const struct json_tok *t = &doc->toks[i];
    if (t->type != JSON_PRIMITIVE && t->type != JSON_STRING)
        return false;
    const char *p = doc->text + t->start, *e = doc->text + t->end;
    bool is_neg = p < e && *p == '-';
    p += is_neg;
    if (p == e)
        return false;
    uint64_t limit = is_neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    uint64_t v = 0;
    for (; p < e; p++) {
        if (*p < '0' || *p > '9')
            return false;
        unsigned d = (unsigned)(*p - '0');
        if (v > (limit - d) / 10)
            return false;
        v = v * 10 + d;
    }
    if (!is_neg)
        *out = (int64_t)v;
    else
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    return true;
}

void json_raw(const struct json_doc *doc, int i, const char **p, size_t *n)
{
    if (!valid_index(doc, i)) {
        *p = NULL;
        *n = 0;
        return;
    }
    const struct json_tok *t = &doc->toks[i];
    *p = doc->text + raw_start(t);
    *n = raw_end(t) - raw_start(t);
}

void json_string_decode(const struct json_doc *doc, int i, struct buf *out)
{
    if (!json_is_string(doc, i)) {
        const char *raw;
        size_t n;
        json_raw(doc, i, &raw, &n);
        buf_append(out, raw == NULL ? "" : raw, n);
        return;
    }
    const unsigned char *p = (const unsigned char *)doc->text + doc->toks[i].start;
    const unsigned char *e = (const unsigned char *)doc->text + doc->toks[i].end;
    buf_reserve(out, (size_t)(e - p));
    for (;;) {
        const unsigned char *q = memchr(p, '\\', (size_t)(e - p));
        buf_append(out, p, (size_t)((q == NULL ? e : q) - p));
        if (q == NULL)
            return;
        uint32_t cp;
        bool is_unsafe;
        unsigned char u[4];
        size_t len = escape_decode(q, e, &cp, &is_unsafe);
        if (len == 0) /* only on a document json_parse did not accept */
            return;
        buf_append(out, u, utf8_encode(cp, u));
        p = q + len;
    }
}

void json_copy_sanitized(const struct json_doc *doc, int i, struct buf *out)
{
    const char *raw;
    size_t n;
    json_raw(doc, i, &raw, &n);
    if (raw == NULL)
        return;
    buf_reserve(out, n);
    if (!doc->has_unsafe_escapes) {
        buf_append(out, raw, n);
        return;
    }
    /* Outside strings JSON has no backslash, so every one starts an escape. */
    const unsigned char *run = (const unsigned char *)raw, *e = run + n, *p = run, *q;
    while ((q = memchr(p, '\\', (size_t)(e - p))) != NULL) {
        uint32_t cp;
        bool is_unsafe;
        size_t len = escape_decode(q, e, &cp, &is_unsafe);
        if (len == 0) /* only on a document json_parse did not accept */
            len = e - q < 2 ? (size_t)(e - q) : 2;
        if (is_unsafe) {
            buf_append(out, run, (size_t)(q - run));
            buf_append(out, "\\ufffd", 6);
            run = q + len;
        }
        p = q + len;
    }
    buf_append(out, run, (size_t)(e - run));
}

/* ---- json_canonical ---- */

static int key_cmp(const struct json_doc *d, int a, int b)
{
    const struct json_tok *x = &d->toks[a], *y = &d->toks[b];
    size_t nx = (size_t)(x->end - x->start), ny = (size_t)(y->end - y->start);
    int c = memcmp(d->text + x->start, d->text + y->start, nx < ny ? nx : ny);
    if (c != 0)
        return c;
    return (nx > ny) - (nx < ny);
}

/* Stable sort of key tokens: insertion sort for the small objects webhooks
 * carry, merge sort above that so a huge object stays n log n. */
static void sort_keys(const struct json_doc *d, int *v, int *tmp, int n)
{
    if (n <= 16) {
        for (int i = 1; i < n; i++) {
            int x = v[i], j = i;
            for (; j > 0 && key_cmp(d, v[j - 1], x) > 0; j--)
                v[j] = v[j - 1];
            v[j] = x;
        }
        return;
    }
    int h = n / 2;
    sort_keys(d, v, tmp, h);
    sort_keys(d, v + h, tmp, n - h);
    int a = 0, b = h, k = 0;
    while (a < h && b < n)
        tmp[k++] = key_cmp(d, v[b], v[a]) < 0 ? v[b++] : v[a++];
    while (a < h)
        tmp[k++] = v[a++];
    memcpy(v, tmp, (size_t)k * sizeof *v);
}

struct frame {
    int tok;
    int n;       /* members or elements */
    int k;       /* next one to write */
    size_t base; /* where their token list starts in the order array */
};

struct canon {
    const struct json_doc *doc;
    struct buf *out;
    int *order; /* child lists of the open containers, stacked */
    int *tmp;   /* merge sort scratch */
    struct frame *frames;
    int nframes;
    size_t top;
};

static void canon_open(struct canon *c, int tok)
{
    const struct json_tok *t = &c->doc->toks[tok];
    struct frame *f = &c->frames[c->nframes++];
    *f = (struct frame){.tok = tok, .n = t->size, .k = 0, .base = c->top};
    int child = tok + 1;
    for (int k = 0; k < t->size; k++) {
        c->order[c->top + (size_t)k] = child;
        child = json_next(c->doc, child);
    }
    if (t->type == JSON_OBJECT)
        sort_keys(c->doc, c->order + c->top, c->tmp, t->size);
    c->top += (size_t)t->size;
    buf_putc(c->out, t->type == JSON_OBJECT ? '{' : '[');
}

static void canon_leaf(struct canon *c, int tok)
{
    const char *raw;
    size_t n;
    json_raw(c->doc, tok, &raw, &n);
    buf_append(c->out, raw, n);
}

void json_canonical(const struct json_doc *doc, int i, struct buf *out)
{
    if (!valid_index(doc, i))
        return;
    struct canon c = {.doc = doc, .out = out};
    if (!is_container(&doc->toks[i])) {
        canon_leaf(&c, i);
        return;
    }
    /* A subtree of m tokens has at most m open containers and m children
     * listed at once, so m-sized scratch can never overflow. */
    size_t m = (size_t)(json_next(doc, i) - i);
    int small_order[CANON_SMALL], small_tmp[CANON_SMALL];
    struct frame small_frames[CANON_SMALL];
    void *heap = NULL;
    if (m <= CANON_SMALL) {
        c.order = small_order;
        c.tmp = small_tmp;
        c.frames = small_frames;
    } else {
        heap = xmalloc(m * (2 * sizeof(int) + sizeof(struct frame)));
        c.frames = heap;
        c.order = (int *)(c.frames + m);
        c.tmp = c.order + m;
    }
    buf_reserve(out, raw_end(&doc->toks[i]) - raw_start(&doc->toks[i]));
    canon_open(&c, i);
    while (c.nframes > 0) {
        struct frame *f = &c.frames[c.nframes - 1];
        if (f->k == f->n) {
            buf_putc(out, doc->toks[f->tok].type == JSON_OBJECT ? '}' : ']');
            c.top = f->base;
            c.nframes--;
            continue;
        }
        if (f->k > 0)
            buf_putc(out, ',');
        int child = c.order[f->base + (size_t)f->k++];
        if (doc->toks[f->tok].type == JSON_OBJECT) {
            canon_leaf(&c, child);
            buf_putc(out, ':');
            child++;
        }
        if (is_container(&doc->toks[child]))
            canon_open(&c, child);
        else
            canon_leaf(&c, child);
    }
    free(heap);
}

/* ---- writer ---- */

/* The two-character escape for c, or 0 when c needs \u00XX or none. */
static char short_escape(unsigned c)
{
    switch (c) {
    case '"':
        return '"';
    case '\\':
        return '\\';
    case '\b':
        return 'b';
    case '\f':
        return 'f';
    case '\n':
        return 'n';
    case '\r':
        return 'r';
    case '\t':
        return 't';
    }
    return 0;
}

static void write_escape(struct buf *out, unsigned c)
{
    static const char hex[] = "0123456789abcdef";
    char esc[6] = {'\\', short_escape(c)};
    if (esc[1] != 0) {
        buf_append(out, esc, 2);
        return;
    }
    memcpy(esc + 1, "u00", 3);
    esc[4] = hex[c >> 4];
    esc[5] = hex[c & 15];
    buf_append(out, esc, 6);
}

void json_write_string(struct buf *out, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *e = p + n, *run = p;
    buf_reserve(out, n + 2);
    buf_putc(out, '"');
    while (p < e) {
        unsigned c = *p;
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            p++;
            continue;
        }
        int k = c >= 0x80 ? utf8_scan(p, e) : 0;
        if (k > 0) {
            p += k;
            continue;
        }
        buf_append(out, run, (size_t)(p - run));
        if (k < 0) {
            buf_append(out, "\xEF\xBF\xBD", 3);
            p += -k;
        } else {
            write_escape(out, c);
            p++;
        }
        run = p;
    }
    buf_append(out, run, (size_t)(p - run));
    buf_putc(out, '"');
}

void json_write_cstr(struct buf *out, const char *s)
{
    if (s == NULL) {
        buf_puts(out, "null");
        return;
    }
    json_write_string(out, s, strlen(s));
}
