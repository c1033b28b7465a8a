/* Unit tests for mod_mirrordav/gzip_input.c (streaming gzip decoder). */
#define _POSIX_C_SOURCE 200809L   /* clock_gettime under -std=c99 */
#include "mod_mirrordav/gzip_input.h"
#include "tap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#define MiB (1024u * 1024u)

/* ------------------------------------------------------------ helpers */

typedef struct {
    unsigned char *p;
    size_t len, cap;
} buf_t;

static void buf_put(buf_t *b, const void *d, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p) {
            perror("realloc");
            exit(2);
        }
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void buf_byte(buf_t *b, unsigned c)
{
    unsigned char x = (unsigned char)c;
    buf_put(b, &x, 1);
}

static void buf_le32(buf_t *b, uint32_t v)
{
    unsigned char x[4] = { v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, v >> 24 };
    buf_put(b, x, 4);
}

static void buf_free(buf_t *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static unsigned char *random_bytes(size_t n)
{
    unsigned char *p = malloc(n ? n : 1);
    size_t i;

    for (i = 0; i < n; i++)
        p[i] = (unsigned char)(rng() >> 32);
    return p;
}

/* Words and numbers: compresses roughly like logs or source text (~3-4x),
 * unlike zeros, which would flatter the decoder. */
static unsigned char *text_bytes(size_t n)
{
    static const char *words[] = {
        "the", "backup", "server", "stores", "file", "snapshot", "manifest",
        "of", "and", "PUT", "GET", "request", "WebDAV", "collection", "to",
        "sidecar", "hash", "verify", "a", "is", "with", "mirror", "data",
        "error", "\n", "200", "404", "in", "for", "chunk", "stream", "gzip",
    };
    unsigned char *p = malloc(n ? n : 1);
    size_t i = 0;

    while (i < n) {
        char tmp[32];
        uint64_t r = rng();
        int k;

        if ((r & 7) == 0)
            k = snprintf(tmp, sizeof tmp, "%u ", (unsigned)(r >> 40) % 100000);
        else
            k = snprintf(tmp, sizeof tmp, "%s ",
                         words[(r >> 8) % (sizeof words / sizeof *words)]);
        for (int j = 0; j < k && i < n; j++)
            p[i++] = (unsigned char)tmp[j];
    }
    return p;
}

/* Raw deflate body (no wrapper) of data. */
static void deflate_raw(buf_t *b, const void *data, size_t len, int level)
{
    z_stream z;
    size_t bound;

    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, level, Z_DEFLATED, -MAX_WBITS, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK)
        exit(2);
    bound = deflateBound(&z, len);
    buf_put(b, NULL, 0);
    if (b->len + bound > b->cap) {
        b->p = realloc(b->p, b->len + bound);
        b->cap = b->len + bound;
    }
    z.next_in = (unsigned char *)data;
    z.avail_in = (uInt)len;
    z.next_out = b->p + b->len;
    z.avail_out = (uInt)bound;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END)
        exit(2);
    b->len += bound - z.avail_out;
    deflateEnd(&z);
}

#define F_TEXT    0x01
#define F_HCRC    0x02
#define F_EXTRA   0x04
#define F_NAME    0x08
#define F_COMMENT 0x10

typedef struct {
    int flags;          /* FLG byte as written */
    int level;          /* deflate level; 0 = stored blocks */
    int cm;             /* compression method byte, 8 unless testing */
    int bad_hcrc;       /* write a wrong FHCRC */
    const unsigned char *extra;
    size_t extra_len;
    const char *name, *comment;
} gzopts;

static const gzopts plain = { 0, 6, 8, 0, NULL, 0, NULL, NULL };

/* One RFC 1952 member, written by hand so every header field can be set. */
static void gz_member(buf_t *b, const void *data, size_t len, const gzopts *o)
{
    size_t start = b->len;

    buf_byte(b, 0x1f);
    buf_byte(b, 0x8b);
    buf_byte(b, (unsigned)o->cm);
    buf_byte(b, (unsigned)o->flags);
    buf_le32(b, 1700000000u);   /* MTIME */
    buf_byte(b, 0);             /* XFL */
    buf_byte(b, 3);             /* OS: Unix */
    if (o->flags & F_EXTRA) {
        buf_byte(b, o->extra_len & 0xff);
        buf_byte(b, (unsigned)(o->extra_len >> 8));
        buf_put(b, o->extra, o->extra_len);
    }
    if (o->flags & F_NAME)
        buf_put(b, o->name, strlen(o->name) + 1);
    if (o->flags & F_COMMENT)
        buf_put(b, o->comment, strlen(o->comment) + 1);
    if (o->flags & F_HCRC) {
        uint32_t c = (uint32_t)crc32(0, b->p + start, (uInt)(b->len - start));
        if (o->bad_hcrc)
            c ^= 1;
        buf_byte(b, c & 0xff);
        buf_byte(b, (c >> 8) & 0xff);
    }
    deflate_raw(b, data, len, o->level);
    buf_le32(b, (uint32_t)crc32(0, data, (uInt)len));
    buf_le32(b, (uint32_t)len);
}

typedef struct {
    buf_t out;
    int keep;               /* 1: store output, 0: CRC it, -1: discard */
    uint64_t total;
    uint32_t crc;
    size_t calls, max_call, zero_calls;
    uint64_t fail_at;       /* return fail_code once total >= fail_at (0: never) */
    int fail_code;
} sinkctx;

static int sink(void *ctx, const void *buf, size_t len)
{
    sinkctx *s = ctx;

    s->calls++;
    if (len == 0)
        s->zero_calls++;
    if (len > s->max_call)
        s->max_call = len;
    if (s->keep > 0)
        buf_put(&s->out, buf, len);
    else if (s->keep == 0)
        s->crc = (uint32_t)crc32(s->crc, buf, (uInt)len);
    s->total += len;
    if (s->fail_at && s->total >= s->fail_at)
        return s->fail_code;
    return 0;
}

typedef struct {
    int rc;
    int failed_in_finish;   /* error came from gzin_finish, not a feed */
    size_t fed;             /* input bytes handed over before the error */
    uint64_t decoded;
    char msg[128];
} result;

/* Decode in into s in pieces of chunk bytes (0 = all at once). */
static result decode(const void *in, size_t len, size_t chunk, uint64_t max,
                     sinkctx *s)
{
    result r;
    gzin *g;
    size_t off = 0;

    memset(&r, 0, sizeof r);
    r.rc = gzin_create(&g, max, sink, s);
    if (r.rc != GZIN_OK) {
        snprintf(r.msg, sizeof r.msg, "create failed");
        return r;
    }
    if (chunk == 0)
        chunk = len ? len : 1;
    while (off < len) {
        size_t n = len - off < chunk ? len - off : chunk;
        r.rc = gzin_feed(g, (const unsigned char *)in + off, n);
        off += n;
        if (r.rc != GZIN_OK)
            break;
    }
    r.fed = off;
    if (r.rc == GZIN_OK) {
        r.rc = gzin_finish(g);
        r.failed_in_finish = r.rc != GZIN_OK;
    }
    r.decoded = gzin_decoded(g);
    snprintf(r.msg, sizeof r.msg, "%s", gzin_message(g));
    gzin_destroy(g);
    return r;
}

/* Decode and compare against the expected plain bytes. */
static void check_roundtrip(const char *what, const buf_t *gz,
                            const void *plain_data, size_t plain_len,
                            size_t chunk)
{
    sinkctx s;
    result r;

    memset(&s, 0, sizeof s);
    s.keep = 1;
    r = decode(gz->p, gz->len, chunk, 0, &s);
    is_int(r.rc, GZIN_OK, "%s, chunk %zu: decodes (%s)", what, chunk, r.msg);
    ok(s.out.len == plain_len
       && (plain_len == 0 || memcmp(s.out.p, plain_data, plain_len) == 0),
       "%s, chunk %zu: output identical (%zu bytes)", what, chunk, s.out.len);
    is_int(r.decoded, plain_len, "%s, chunk %zu: gzin_decoded", what, chunk);
    ok(s.max_call <= GZIN_BUFSIZE && s.zero_calls == 0,
       "%s, chunk %zu: sink calls 1..GZIN_BUFSIZE bytes (max %zu)", what,
       chunk, s.max_call);
    buf_free(&s.out);
}

/* Expect failure with a given code and message. */
static void check_bad(const char *what, const void *in, size_t len,
                      size_t chunk, int code, const char *msg)
{
    sinkctx s;
    result r;

    memset(&s, 0, sizeof s);
    r = decode(in, len, chunk, 0, &s);
    is_int(r.rc, code, "%s, chunk %zu: rejected", what, chunk);
    if (msg)
        is_str(r.msg, msg, "%s, chunk %zu: message", what, chunk);
}

static const size_t chunks[] = { 1, 7, 4096, 0 };
#define NCHUNKS (sizeof chunks / sizeof *chunks)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------ tests */

static void test_api(void)
{
    gzin *g = (gzin *)1;
    sinkctx s;

    memset(&s, 0, sizeof s);
    is_int(gzin_create(&g, 0, NULL, NULL), GZIN_MISUSE, "create needs a sink");
    ok(g == NULL, "failed create leaves *out NULL");
    is_int(gzin_create(NULL, 0, sink, &s), GZIN_MISUSE, "create needs out");
    is_int(gzin_create(&g, 0, sink, &s), GZIN_OK, "create");
    is_str(gzin_message(g), "ok", "fresh decoder says ok");
    is_int(gzin_feed(g, "", 0), GZIN_OK, "zero-length feed is a no-op");
    gzin_destroy(g);
    gzin_destroy(NULL);
    ok(GZIN_BAD_DATA < 0 && GZIN_TOO_LARGE < 0 && GZIN_NOMEM < 0
       && GZIN_MISUSE < 0, "own codes are negative");
    ok(GZIN_BAD_DATA != GZIN_TOO_LARGE && GZIN_TOO_LARGE != GZIN_NOMEM
       && GZIN_NOMEM != GZIN_MISUSE && GZIN_BAD_DATA != GZIN_NOMEM,
       "own codes are distinct");
    is_str(gzin_strerror(GZIN_TOO_LARGE), "decoded size exceeds limit",
           "strerror TOO_LARGE");
    is_str(gzin_strerror(28), "aborted by the output sink",
           "strerror of a sink code");
}

static void test_roundtrip(void)
{
    struct { const char *what; size_t len; int text; } sets[] = {
        { "0 bytes", 0, 1 },
        { "1 byte", 1, 1 },
        { "1 MiB text", 1 * MiB, 1 },
        { "8 MiB random", 8 * MiB, 0 },
    };

    for (size_t i = 0; i < sizeof sets / sizeof *sets; i++) {
        unsigned char *d = sets[i].text ? text_bytes(sets[i].len)
                                        : random_bytes(sets[i].len);
        buf_t gz = { 0 };

        gz_member(&gz, d, sets[i].len, &plain);
        for (size_t c = 0; c < NCHUNKS; c++)
            check_roundtrip(sets[i].what, &gz, d, sets[i].len, chunks[c]);
        buf_free(&gz);
        free(d);
    }

    /* A stream from zlib's own gzip writer, not just from our builder. */
    {
        unsigned char *d = text_bytes(300000);
        buf_t gz = { 0 };
        z_stream z;

        memset(&z, 0, sizeof z);
        deflateInit2(&z, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
        gz.cap = deflateBound(&z, 300000);
        gz.p = malloc(gz.cap);
        z.next_in = d;
        z.avail_in = 300000;
        z.next_out = gz.p;
        z.avail_out = (uInt)gz.cap;
        deflate(&z, Z_FINISH);
        gz.len = gz.cap - z.avail_out;
        deflateEnd(&z);
        check_roundtrip("zlib-written gzip", &gz, d, 300000, 0);
        check_roundtrip("zlib-written gzip", &gz, d, 300000, 1);
        buf_free(&gz);
        free(d);
    }

    /* Stored blocks: output arrives in the same call as its input. */
    {
        unsigned char *d = random_bytes(1 * MiB);
        buf_t gz = { 0 };
        gzopts o = plain;

        o.level = 0;
        gz_member(&gz, d, 1 * MiB, &o);
        check_roundtrip("stored blocks", &gz, d, 1 * MiB, 4096);
        buf_free(&gz);
        free(d);
    }
}

static void test_multimember(void)
{
    unsigned char *a = text_bytes(1 * MiB), *c = random_bytes(100000);
    const char *b = "hello, second member\n";
    buf_t gz = { 0 }, want = { 0 };

    gz_member(&gz, a, 1 * MiB, &plain);
    gz_member(&gz, b, strlen(b), &plain);
    gz_member(&gz, "", 0, &plain);              /* empty member */
    gz_member(&gz, c, 100000, &plain);
    buf_put(&want, a, 1 * MiB);
    buf_put(&want, b, strlen(b));
    buf_put(&want, c, 100000);
    for (size_t i = 0; i < NCHUNKS; i++)
        check_roundtrip("4 members incl. empty", &gz, want.p, want.len,
                        chunks[i]);
    buf_free(&gz);
    buf_free(&want);

    /* Only empty members. */
    gz_member(&gz, "", 0, &plain);
    check_roundtrip("1 empty member", &gz, "", 0, 0);
    gz_member(&gz, "", 0, &plain);
    check_roundtrip("2 empty members", &gz, "", 0, 1);
    buf_free(&gz);

    /* Every possible split of a small multi-member stream into two feeds,
     * which puts the feed boundary at each header byte, inside each magic
     * and on each member boundary. */
    {
        const char *p1 = "first", *p2 = "second member, a bit longer";
        gzopts o = plain;
        int bad = 0, bad_garbage = 0;
        size_t n;

        o.flags = F_NAME | F_HCRC;
        o.name = "x.txt";
        gz_member(&gz, p1, strlen(p1), &o);
        gz_member(&gz, "", 0, &plain);
        gz_member(&gz, p2, strlen(p2), &plain);
        buf_put(&want, p1, strlen(p1));
        buf_put(&want, p2, strlen(p2));
        n = gz.len;
        for (size_t split = 0; split <= n; split++) {
            sinkctx s;
            gzin *g;
            int rc;

            memset(&s, 0, sizeof s);
            s.keep = 1;
            gzin_create(&g, 0, sink, &s);
            rc = gzin_feed(g, gz.p, split);
            if (!rc)
                rc = gzin_feed(g, gz.p + split, n - split);
            if (!rc)
                rc = gzin_finish(g);
            if (rc || s.out.len != want.len
                || memcmp(s.out.p, want.p, want.len))
                bad++;
            gzin_destroy(g);
            buf_free(&s.out);

            /* Same with trailing garbage arriving in a third feed. */
            gzin_create(&g, 0, sink, &s);
            rc = gzin_feed(g, gz.p, split);
            if (!rc)
                rc = gzin_feed(g, gz.p + split, n - split);
            if (rc || gzin_feed(g, "junk", 4) != GZIN_BAD_DATA
                || strcmp(gzin_message(g),
                          "trailing garbage after gzip member"))
                bad_garbage++;
            gzin_destroy(g);
            buf_free(&s.out);
        }
        is_int(bad, 0, "every 2-feed split of a 3-member stream decodes");
        is_int(bad_garbage, 0,
               "every split: garbage in a later feed is caught at that feed");
        buf_free(&want);
    }

    /* Member boundary with the next magic split across feeds. */
    {
        size_t m1;
        sinkctx s;
        gzin *g;

        buf_free(&gz);
        gz_member(&gz, "one", 3, &plain);
        m1 = gz.len;
        gz_member(&gz, "two", 3, &plain);
        memset(&s, 0, sizeof s);
        s.keep = 1;
        gzin_create(&g, 0, sink, &s);
        is_int(gzin_feed(g, gz.p, m1 + 1), GZIN_OK,
               "feed member 1 + first magic byte of member 2");
        is_int(gzin_feed(g, gz.p + m1 + 1, 1), GZIN_OK,
               "feed second magic byte alone");
        is_int(gzin_feed(g, gz.p + m1 + 2, gz.len - m1 - 2), GZIN_OK,
               "feed the rest");
        is_int(gzin_finish(g), GZIN_OK, "finish");
        ok(s.out.len == 6 && !memcmp(s.out.p, "onetwo", 6), "output onetwo");
        gzin_destroy(g);
        buf_free(&s.out);
    }
    buf_free(&gz);
    free(a);
    free(c);
}

static void test_header_flags(void)
{
    unsigned char *d = text_bytes(20000);
    unsigned char extra[3000];
    char name[700], comment[300];
    int bad = 0;

    for (size_t i = 0; i < sizeof extra; i++)
        extra[i] = (unsigned char)(i * 7);
    extra[5] = 0x1f;        /* magic-like bytes inside fields must not matter */
    extra[6] = 0x8b;
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    memset(comment, 'c', sizeof comment - 1);
    comment[sizeof comment - 1] = '\0';

    /* Each flag alone, with explicit names for the report. */
    {
        static const struct { int f; const char *what; } one[] = {
            { F_TEXT, "FTEXT" }, { F_HCRC, "FHCRC" }, { F_EXTRA, "FEXTRA" },
            { F_NAME, "FNAME" }, { F_COMMENT, "FCOMMENT" },
        };
        for (size_t i = 0; i < sizeof one / sizeof *one; i++) {
            gzopts o = plain;
            buf_t gz = { 0 };

            o.flags = one[i].f;
            o.extra = extra;
            o.extra_len = sizeof extra;
            o.name = name;
            o.comment = comment;
            gz_member(&gz, d, 20000, &o);
            check_roundtrip(one[i].what, &gz, d, 20000, 0);
            check_roundtrip(one[i].what, &gz, d, 20000, 1);
            buf_free(&gz);
        }
    }

    /* All 32 combinations, at several chunk sizes, in a second member too. */
    for (int f = 0; f < 32; f++) {
        for (size_t c = 0; c < NCHUNKS; c++) {
            gzopts o = plain;
            buf_t gz = { 0 };
            sinkctx s;
            result r;

            o.flags = f;
            o.extra = extra;
            o.extra_len = (size_t)f * 50;     /* includes XLEN 0 */
            o.name = f & 1 ? "" : "file.bin";
            o.comment = comment;
            gz_member(&gz, "abc", 3, &plain);
            gz_member(&gz, d, 20000, &o);
            memset(&s, 0, sizeof s);
            s.keep = 1;
            r = decode(gz.p, gz.len, chunks[c], 0, &s);
            if (r.rc || s.out.len != 20003 || memcmp(s.out.p + 3, d, 20000)) {
                bad++;
                printf("# flags %#x chunk %zu: %s\n", f, chunks[c], r.msg);
            }
            buf_free(&s.out);
            buf_free(&gz);
        }
    }
    is_int(bad, 0, "all 32 header flag combinations, every chunk size");

    /* Header defects. */
    {
        gzopts o = plain;
        buf_t gz = { 0 };

        o.flags = F_NAME | F_HCRC;
        o.name = "f";
        o.bad_hcrc = 1;
        gz_member(&gz, d, 1000, &o);
        check_bad("wrong FHCRC", gz.p, gz.len, 0, GZIN_BAD_DATA,
                  "gzip header CRC mismatch");
        check_bad("wrong FHCRC", gz.p, gz.len, 1, GZIN_BAD_DATA,
                  "gzip header CRC mismatch");
        buf_free(&gz);

        o = plain;
        o.flags = 0x20;
        gz_member(&gz, d, 1000, &o);
        check_bad("reserved flag bit", gz.p, gz.len, 0, GZIN_BAD_DATA,
                  "reserved gzip header flags set");
        buf_free(&gz);

        o = plain;
        o.cm = 7;
        gz_member(&gz, d, 1000, &o);
        check_bad("CM 7", gz.p, gz.len, 0, GZIN_BAD_DATA,
                  "unsupported gzip compression method");
        buf_free(&gz);
    }
    free(d);
}

static void test_bad_input(void)
{
    unsigned char *d = text_bytes(1 * MiB);
    buf_t gz = { 0 }, tmp = { 0 };
    size_t n;

    gz_member(&gz, d, 1 * MiB, &plain);
    n = gz.len;

    /* Corruption inside the deflate data. */
    {
        int bad = 0;
        for (int k = 1; k < 20; k++) {
            size_t pos = 10 + (n - 18) * (size_t)k / 20;
            sinkctx s;
            result r;

            gz.p[pos] ^= 0x55;
            memset(&s, 0, sizeof s);
            r = decode(gz.p, n, 4096, 0, &s);
            if (r.rc != GZIN_BAD_DATA) {
                bad++;
                printf("# flip at %zu: rc %d (%s)\n", pos, r.rc, r.msg);
            }
            gz.p[pos] ^= 0x55;
        }
        is_int(bad, 0, "byte flipped at 19 points in compressed data: 400");
    }
    {
        /* In stored blocks a flipped byte is only caught by the CRC. */
        unsigned char *rd = random_bytes(200000);
        gzopts o = plain;

        o.level = 0;
        gz_member(&tmp, rd, 200000, &o);
        tmp.p[tmp.len / 2] ^= 1;
        for (size_t c = 0; c < NCHUNKS; c++)
            check_bad("flipped byte in stored data", tmp.p, tmp.len, chunks[c],
                      GZIN_BAD_DATA, "gzip CRC-32 mismatch");
        buf_free(&tmp);
        free(rd);
    }

    /* Trailer. */
    gz.p[n - 8] ^= 1;
    check_bad("wrong CRC in trailer", gz.p, n, 0, GZIN_BAD_DATA,
              "gzip CRC-32 mismatch");
    check_bad("wrong CRC in trailer", gz.p, n, 1, GZIN_BAD_DATA,
              "gzip CRC-32 mismatch");
    gz.p[n - 8] ^= 1;
    gz.p[n - 1] ^= 0x80;
    check_bad("wrong ISIZE", gz.p, n, 0, GZIN_BAD_DATA,
              "gzip ISIZE (decoded length) mismatch");
    check_bad("wrong ISIZE", gz.p, n, 7, GZIN_BAD_DATA,
              "gzip ISIZE (decoded length) mismatch");
    gz.p[n - 1] ^= 0x80;

    /* Truncation: feeds all succeed, finish says truncated. */
    {
        size_t cuts[] = { 1, 2, 3, 9, 10, 11, n / 3, n / 2, n - 9, n - 8,
                          n - 5, n - 1 };
        for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
            for (size_t c = 0; c < NCHUNKS; c++) {
                sinkctx s;
                result r;

                memset(&s, 0, sizeof s);
                r = decode(gz.p, cuts[i], chunks[c], 0, &s);
                ok(r.rc == GZIN_BAD_DATA && r.failed_in_finish
                   && !strcmp(r.msg, "truncated gzip stream"),
                   "truncated to %zu of %zu bytes, chunk %zu: %s", cuts[i], n,
                   chunks[c], r.msg);
            }
        }
    }
    {
        gzopts o = plain;

        o.flags = F_EXTRA | F_NAME;
        o.extra = (const unsigned char *)"xxxxxxxx";
        o.extra_len = 8;
        o.name = "name.txt";
        gz_member(&tmp, "x", 1, &o);
        check_bad("truncated in FEXTRA", tmp.p, 14, 1, GZIN_BAD_DATA,
                  "truncated gzip stream");
        check_bad("truncated in FNAME", tmp.p, 24, 0, GZIN_BAD_DATA,
                  "truncated gzip stream");
        buf_free(&tmp);
    }

    /* Trailing bytes after the last member. */
    {
        static const struct { const char *b; size_t len; const char *msg; }
        tails[] = {
            { "garbage", 7, "trailing garbage after gzip member" },
            { "\0", 1, "trailing garbage after gzip member" },
            { "\0\0\0\0\0\0\0\0", 8, "trailing garbage after gzip member" },
            { "\n", 1, "trailing garbage after gzip member" },
            { "\x1f\x00", 2, "trailing garbage after gzip member" },
            { "\x1f", 1, "truncated gzip stream" },
            { "\x1f\x8b", 2, "truncated gzip stream" },
            { "\x1f\x8b\x08\x00", 4, "truncated gzip stream" },
        };
        for (size_t i = 0; i < sizeof tails / sizeof *tails; i++) {
            buf_put(&tmp, gz.p, n);
            buf_put(&tmp, tails[i].b, tails[i].len);
            for (size_t c = 0; c < NCHUNKS; c++) {
                char what[64];
                snprintf(what, sizeof what, "tail #%zu (%zu bytes)", i,
                         tails[i].len);
                check_bad(what, tmp.p, tmp.len, chunks[c], GZIN_BAD_DATA,
                          tails[i].msg);
            }
            buf_free(&tmp);
        }
    }
    {
        /* Garbage only in a later feed, and at finish time nothing new. */
        sinkctx s;
        gzin *g;

        memset(&s, 0, sizeof s);
        gzin_create(&g, 0, sink, &s);
        is_int(gzin_feed(g, gz.p, n), GZIN_OK, "complete member fed");
        is_int(gzin_feed(g, "X", 1), GZIN_BAD_DATA,
               "garbage in the next feed rejected there");
        is_str(gzin_message(g), "trailing garbage after gzip member",
               "trailing garbage message");
        is_int(gzin_feed(g, gz.p, n), GZIN_BAD_DATA, "error is sticky (feed)");
        is_int(gzin_finish(g), GZIN_BAD_DATA, "error is sticky (finish)");
        gzin_destroy(g);
    }

    /* Not gzip. */
    check_bad("plain text body", "hello world", 11, 0, GZIN_BAD_DATA,
              "not gzip data");
    check_bad("first byte wrong", "\x1e\x8b\x08\x00", 4, 1, GZIN_BAD_DATA,
              "not gzip data");
    check_bad("second byte wrong, separate feed", "\x1f\x8c\x08\x00", 4, 1,
              GZIN_BAD_DATA, "not gzip data");
    check_bad("zlib (not gzip) stream", "\x78\x9c\x03\x00\x00\x00\x00\x01", 8,
              0, GZIN_BAD_DATA, "not gzip data");
    check_bad("lone 0x1f", "\x1f", 1, 0, GZIN_BAD_DATA,
              "truncated gzip stream");

    /* Empty. */
    {
        sinkctx s;
        gzin *g;

        memset(&s, 0, sizeof s);
        gzin_create(&g, 0, sink, &s);
        is_int(gzin_finish(g), GZIN_BAD_DATA, "no feed at all: 400");
        is_str(gzin_message(g), "empty gzip body", "empty body message");
        gzin_destroy(g);
        gzin_create(&g, 0, sink, &s);
        gzin_feed(g, "", 0);
        is_int(gzin_finish(g), GZIN_BAD_DATA, "only zero-length feeds: 400");
        is_str(gzin_message(g), "empty gzip body", "empty body message");
        gzin_destroy(g);
        is_int(s.calls, 0, "sink never called for empty bodies");
    }

    /* Misuse. */
    {
        sinkctx s;
        gzin *g;

        memset(&s, 0, sizeof s);
        gzin_create(&g, 0, sink, &s);
        gzin_feed(g, gz.p, n);
        is_int(gzin_finish(g), GZIN_OK, "finish ok");
        is_int(gzin_finish(g), GZIN_OK, "second finish still ok");
        is_int(s.total, 1 * MiB, "output delivered once");
        is_int(gzin_feed(g, gz.p, 10), GZIN_MISUSE, "feed after finish");
        gzin_destroy(g);
    }
    buf_free(&gz);
    free(d);
}

static void test_limit(void)
{
    /* 64 MiB of zeros compress ~1000:1. */
    unsigned char *zeros = calloc(64 * MiB, 1);
    buf_t gz = { 0 };

    gz_member(&gz, zeros, 64 * MiB, &(gzopts){ 0, 9, 8, 0, NULL, 0, NULL,
                                               NULL });
    printf("# bomb: 64 MiB of zeros in %zu bytes\n", gz.len);
    for (size_t c = 0; c < NCHUNKS; c++) {
        sinkctx s;
        result r;

        memset(&s, 0, sizeof s);
        r = decode(gz.p, gz.len, chunks[c], 1 * MiB, &s);
        is_int(r.rc, GZIN_TOO_LARGE, "bomb, limit 1 MiB, chunk %zu: 413",
               chunks[c]);
        is_str(r.msg, "decoded size exceeds limit", "bomb message");
        ok(s.total <= 1 * MiB + GZIN_BUFSIZE,
           "sink got %llu bytes, <= limit + one buffer",
           (unsigned long long)s.total);
        ok(r.decoded <= 1 * MiB + 1,
           "decoding stopped one byte past the limit (%llu decoded)",
           (unsigned long long)r.decoded);
        if (chunks[c] != 0)
            ok(r.fed < gz.len / 8, "rejected after %zu of %zu input bytes",
               r.fed, gz.len);
    }
    buf_free(&gz);
    free(zeros);

    /* Exact boundary, over several members. */
    {
        unsigned char *d = text_bytes(300000);
        sinkctx s;
        result r;

        gz_member(&gz, d, 100000, &plain);
        gz_member(&gz, d + 100000, 200000, &plain);
        for (size_t c = 0; c < NCHUNKS; c++) {
            memset(&s, 0, sizeof s);
            r = decode(gz.p, gz.len, chunks[c], 300000, &s);
            is_int(r.rc, GZIN_OK, "limit == size, chunk %zu: ok", chunks[c]);
            is_int(s.total, 300000, "all bytes delivered");
            memset(&s, 0, sizeof s);
            r = decode(gz.p, gz.len, chunks[c], 299999, &s);
            is_int(r.rc, GZIN_TOO_LARGE, "limit == size - 1, chunk %zu: 413",
                   chunks[c]);
            ok(s.total <= 299999, "sink got no more than the limit (%llu)",
               (unsigned long long)s.total);
            memset(&s, 0, sizeof s);
            r = decode(gz.p, gz.len, chunks[c], UINT64_MAX, &s);
            is_int(r.rc, GZIN_OK, "limit UINT64_MAX, chunk %zu: ok",
                   chunks[c]);
            memset(&s, 0, sizeof s);
            r = decode(gz.p, gz.len, chunks[c], 100000, &s);
            is_int(r.rc, GZIN_TOO_LARGE,
                   "limit counts all members, chunk %zu", chunks[c]);
        }
        buf_free(&gz);
        free(d);
    }
}

static void test_sink_error(void)
{
    unsigned char *d = text_bytes(4 * MiB);
    buf_t gz = { 0 };
    sinkctx s;
    result r;

    gz_member(&gz, d, 4 * MiB, &plain);
    for (size_t c = 0; c < NCHUNKS; c++) {
        memset(&s, 0, sizeof s);
        s.fail_at = 1 * MiB;
        s.fail_code = 28;           /* ENOSPC */
        r = decode(gz.p, gz.len, chunks[c], 0, &s);
        is_int(r.rc, 28, "sink code passed through, chunk %zu", chunks[c]);
        ok(!r.failed_in_finish, "reported by the feed that hit it");
        is_str(r.msg, "gzip output sink failed (code 28)", "sink message");
        ok(s.total < 2 * MiB, "decoding stopped at the sink error");
    }
    {
        gzin *g;

        memset(&s, 0, sizeof s);
        s.fail_at = 1;
        s.fail_code = 12345;
        gzin_create(&g, 0, sink, &s);
        gzin_feed(g, gz.p, gz.len);
        is_int(gzin_feed(g, "x", 1), 12345, "sink error sticky in feed");
        is_int(gzin_finish(g), 12345, "sink error sticky in finish");
        is_int(s.calls, 1, "sink not called again after failing");
        gzin_destroy(g);
    }
    buf_free(&gz);

    /* Small body: the only flush, and so the error, happens in finish. */
    gz_member(&gz, "tiny", 4, &plain);
    memset(&s, 0, sizeof s);
    s.fail_at = 1;
    s.fail_code = 28;
    r = decode(gz.p, gz.len, 0, 0, &s);
    is_int(r.rc, 28, "sink error from the final flush");
    ok(r.failed_in_finish, "reported by finish");
    buf_free(&gz);
    free(d);
}

static void test_throughput(void)
{
    size_t n = 64 * MiB;
    unsigned char *d = text_bytes(n);
    buf_t gz = { 0 };
    sinkctx s;
    result r;
    double t;

    gz_member(&gz, d, n, &plain);
    memset(&s, 0, sizeof s);
    r = decode(gz.p, gz.len, 64 * 1024, 0, &s);
    is_int(r.rc, GZIN_OK, "64 MiB text decodes");
    ok(s.total == n && s.crc == (uint32_t)crc32(0, d, (uInt)n),
       "64 MiB output checksum matches");
    memset(&s, 0, sizeof s);
    s.keep = -1;
    t = now();
    r = decode(gz.p, gz.len, 64 * 1024, 0, &s);
    t = now() - t;
    printf("# throughput: %.0f MiB/s decoded (%.1f:1, 64 KiB feeds, "
           "discarding sink; not asserted, sanitizers slow it)\n",
           n / (double)MiB / t, (double)n / gz.len);
    buf_free(&gz);
    free(d);
}

int main(void)
{
    test_api();
    test_roundtrip();
    test_multimember();
    test_header_flags();
    test_bad_input();
    test_limit();
    test_sink_error();
    test_throughput();
    return done_testing();
}
