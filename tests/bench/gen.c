/*
 * gen.c - writes distinct, realistic, pre-signed webhook deliveries for the
 * benchmark (tests/bench/run builds and runs it; wrk's post.lua reads them).
 *
 *   gen SECRET COUNT NFILES PREFIX FIRST
 *
 * writes PREFIX.0 .. PREFIX.<NFILES-1>, COUNT deliveries in all (each wrk
 * thread reads its own file, so no delivery is sent twice). Each line is
 *
 *   sha256=<hex> TAB sha1=<hex> TAB <body>
 *
 * the two signature headers Meta sends, HMAC-SHA256 and HMAC-SHA1 of the body
 * with SECRET. Bodies are compact JSON with no raw newline, shaped like Meta's
 * (PROTOCOL.md): within each file, even lines are `comments` changes (entry
 * time in seconds), odd lines `messaging` messages (entry time in ms, a long
 * base64-ish mid), each with escaped emoji (\ud83d\ude00) and a URL written
 * with `\/`, 600-1200 bytes. Every delivery carries ids derived from its own
 * number (FIRST + its index), so each yields exactly one event and no two
 * deduplicate into one; runs with disjoint FIRST ranges stay distinct too.
 * A fixed pseudo-random sequence makes a run reproducible.
 */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BODY_MAX 4096
#define HB_COUNT(a) (sizeof(a) / sizeof((a)[0]))

struct out {
    char buf[BODY_MAX];
    size_t len;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->buf + o->len, sizeof(o->buf) - o->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(o->buf) - o->len) {
        fprintf(stderr, "gen: a delivery outgrew %d bytes\n", BODY_MAX);
        exit(1);
    }
    o->len += (size_t)n;
}

/* xorshift64*: a fixed, fast sequence; the bench needs variety, not secrecy. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dULL;
}

static unsigned pick(unsigned n)
{
    return (unsigned)(rnd() % n);
}

/* Words and escaped emoji as Meta writes them: non-ASCII as \uXXXX (UTF-16
 * surrogate pairs for emoji), never raw UTF-8. */
static const char *const WORDS[] = {
    "love",        "this",        "so",           "much",         "where",
    "did",         "you",         "get",          "that",         "jacket",
    "amazing",     "colour",      "is",           "it",           "still",
    "available",   "price",       "please",       "DM",           "me",
    "the",         "link",        "doesn't",      "work",         "caf\\u00e9",
    "na\\u00efve", "cr\\u00e8me", "ma\\u00f1ana", "stra\\u00dfe", "order",
    "shipping",    "to",          "Berlin",       "size",         "M",
    "or",          "L",           "thanks",
};
static const char *const EMOJI[] = {
    "\\ud83d\\ude00", "\\ud83d\\ude0d", "\\ud83d\\udc51", "\\ud83d\\udd25",
    "\\u2764\\ufe0f", "\\ud83d\\ude4f", "\\ud83c\\udf89", "\\ud83d\\udc4d\\ud83c\\udffd",
};
static const char *const NAMES[] = {"jane.doe", "mark_92",      "lisa.makes", "the.tom.k",
                                    "anna_b",   "kofi.creates", "m.yilmaz",   "sofia.rr"};
/* A few business accounts receive everything, as in a real deployment. */
static const char *const ACCOUNTS[] = {"17841400008460056", "17841405309211844",
                                       "17841401822304914", "17841453287416231"};

/* Roughly `target` bytes of comment or message text, with emoji, escapes and a
 * link whose slashes are escaped. */
static void put_text(struct out *o, size_t target, uint64_t n)
{
    size_t start = o->len;
    put(o, "%s ", EMOJI[pick(HB_COUNT(EMOJI))]);
    bool has_link = false;
    while (o->len - start < target) {
        unsigned r = pick(16);
        if (r == 0)
            put(o, "%s ", EMOJI[pick(HB_COUNT(EMOJI))]);
        else if (r == 1 && !has_link) {
            put(o, "https:\\/\\/www.instagram.com\\/p\\/C%07llx%03x\\/?igsh=%010llx ",
                (unsigned long long)(n & 0xfffffff), pick(4096),
                (unsigned long long)(rnd() & 0xffffffffffULL));
            has_link = true;
        } else if (r == 2)
            put(o, "\\\"%s\\\" ", WORDS[pick(HB_COUNT(WORDS))]);
        else
            put(o, "%s ", WORDS[pick(HB_COUNT(WORDS))]);
    }
    if (!has_link)
        put(o, "https:\\/\\/shop.example.com\\/item\\/%llu ",
            (unsigned long long)(n * 7919 % 1000003));
    put(o, "%s", EMOJI[0]); /* every delivery has a surrogate pair */
}

/* A comment on a post, as an Instagram-Login app receives it. */
static void comment(struct out *o, uint64_t n, time_t now)
{
    const char *account = ACCOUNTS[n % HB_COUNT(ACCOUNTS)];
    put(o,
        "{\"entry\":[{\"id\":\"%s\",\"time\":%lld,\"changes\":[{\"value\":{"
        "\"from\":{\"id\":\"%llu\",\"username\":\"%s\",\"self_ig_scoped_id\":\"%llu\"},"
        "\"media\":{\"id\":\"1800%013llu\",\"media_product_type\":\"%s\"},"
        "\"id\":\"1790%013llu\",",
        account, (long long)now, 6000000000000000ULL + pick(1000000000),
        NAMES[pick(HB_COUNT(NAMES))], 7000000000000000ULL + pick(1000000000),
        (unsigned long long)(n / 50), pick(3) == 0 ? "REELS" : "FEED", (unsigned long long)n);
    if (pick(4) == 0)
        put(o, "\"parent_id\":\"1790%013llu\",", (unsigned long long)(n > 10 ? n - 10 : n + 1u));
    put(o, "\"text\":\"");
    put_text(o, 290 + pick(440), n);
    put(o, "\"},\"field\":\"comments\"}]}],\"object\":\"instagram\"}");
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/* A direct message: the long base64-ish mid Instagram uses, unique per n. */
static void message(struct out *o, uint64_t n, time_t now)
{
    const char *account = ACCOUNTS[n % HB_COUNT(ACCOUNTS)];
    long long ms = (long long)now * 1000 + pick(1000);
    put(o,
        "{\"object\":\"instagram\",\"entry\":[{\"time\":%lld,\"id\":\"%s\",\"messaging\":[{"
        "\"sender\":{\"id\":\"%llu\"},\"recipient\":{\"id\":\"%s\"},\"timestamp\":%lld,"
        "\"message\":{\"mid\":\"aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQx%016llx",
        ms + 40 + pick(200), account, 1100000000000000ULL + pick(100000000), account, ms,
        (unsigned long long)n);
    for (int i = 0; i < 124; i++)
        put(o, "%c", B64[pick(sizeof(B64) - 1)]);
    put(o, "\",\"text\":\"");
    put_text(o, 200 + pick(400), n);
    put(o, "\"");
    if (pick(3) == 0)
        put(o,
            ",\"attachments\":[{\"type\":\"share\",\"payload\":{\"url\":"
            "\"https:\\/\\/lookaside.fbsbx.com\\/ig_messaging_cdn\\/?asset_id=%llu"
            "&signature=Ab%016llx\"}}]",
            1800000000000000ULL + n, (unsigned long long)rnd());
    put(o, "}}]}]}");
}

static void hex(const unsigned char *d, unsigned n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (unsigned i = 0; i < n; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[2 * n] = '\0';
}

/* Writes file f: its deliveries are numbers first + j * nfiles + f. */
static int write_file(const char *secret, const char *prefix, unsigned f, unsigned nfiles,
                      unsigned long long first, unsigned long long per, time_t now)
{
    static struct out o;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen;
    char h256[65], h1[41], path[4096];
    int slen = (int)strlen(secret);
    snprintf(path, sizeof(path), "%s.%u", prefix, f);
    FILE *fp = fopen(path, "w");
    if (fp == NULL) {
        perror(path);
        return 1;
    }
    for (unsigned long long j = 0; j < per; j++) {
        uint64_t n = first + j * nfiles + f;
        o.len = 0;
        if (j % 2 == 0)
            comment(&o, n, now);
        else
            message(&o, n, now);
        HMAC(EVP_sha256(), secret, slen, (unsigned char *)o.buf, o.len, md, &mdlen);
        hex(md, mdlen, h256);
        HMAC(EVP_sha1(), secret, slen, (unsigned char *)o.buf, o.len, md, &mdlen);
        hex(md, mdlen, h1);
        fprintf(fp, "sha256=%s\tsha1=%s\t", h256, h1);
        fwrite(o.buf, 1, o.len, fp);
        fputc('\n', fp);
    }
    if (fclose(fp) != 0) {
        perror(path);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: gen SECRET COUNT NFILES PREFIX FIRST\n");
        return 2;
    }
    const char *secret = argv[1];
    unsigned long long count = strtoull(argv[2], NULL, 10);
    unsigned nfiles = (unsigned)strtoul(argv[3], NULL, 10);
    const char *prefix = argv[4];
    unsigned long long first = strtoull(argv[5], NULL, 10);
    if (nfiles == 0 || nfiles > 256) {
        fprintf(stderr, "gen: NFILES must be 1..256\n");
        return 2;
    }
    time_t now = time(NULL);
    /* One process per file: the machine's cores write them side by side. */
    for (unsigned f = 0; f < nfiles; f++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("gen: fork");
            return 1;
        }
        if (pid == 0) {
            rng_state ^= (first + f + 1) * 0x100000001b3ULL;
            unsigned long long per = count / nfiles + (f < count % nfiles ? 1 : 0);
            _exit(write_file(secret, prefix, f, nfiles, first, per, now));
        }
    }
    int failed = 0, status;
    while (wait(&status) > 0)
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            failed = 1;
    return failed;
}
