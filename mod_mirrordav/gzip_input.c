/*
 * gzip_input: streaming gzip decoder, see gzip_input.h.
 */
#include "mod_mirrordav/gzip_input.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define ZLIB_CONST /* lets next_in take the caller's const buffer */
#include <zlib.h>

struct gzin {
    z_stream z;
    gzin_sink sink;
    void *ctx;
    uint64_t max; /* 0 = unlimited */
    uint64_t decoded;
    uint64_t consumed; /* body bytes seen, to tell "empty" apart */
    size_t fill;       /* bytes waiting in out[] */
    /* Magic bytes of the current member checked so far (0..2).  0 also means
     * "between members": no byte of a new member has arrived yet. */
    int magic;
    int members; /* members completed */
    int err;     /* sticky result, GZIN_OK while healthy */
    int finished;
    const char *msg;
    char msgbuf[96];
    unsigned char out[GZIN_BUFSIZE];
};

static int fail(gzin *g, int code, const char *msg)
{
    g->err = code;
    g->msg = msg;
    return code;
}

/* zlib's messages are terse and name zlib internals; say what is wrong with
 * the upload instead. */
static int fail_zlib(gzin *g, int ret)
{
    const char *zm = g->z.msg;

    if (ret == Z_MEM_ERROR)
        return fail(g, GZIN_NOMEM, "out of memory in zlib");
    if (!zm)
        zm = "unknown error";
    if (!strcmp(zm, "incorrect data check"))
        return fail(g, GZIN_BAD_DATA, "gzip CRC-32 mismatch");
    if (!strcmp(zm, "incorrect length check"))
        return fail(g, GZIN_BAD_DATA, "gzip ISIZE (decoded length) mismatch");
    if (!strcmp(zm, "header crc mismatch"))
        return fail(g, GZIN_BAD_DATA, "gzip header CRC mismatch");
    if (!strcmp(zm, "unknown compression method"))
        return fail(g, GZIN_BAD_DATA, "unsupported gzip compression method");
    if (!strcmp(zm, "unknown header flags set"))
        return fail(g, GZIN_BAD_DATA, "reserved gzip header flags set");
    if (!strcmp(zm, "incorrect header check"))
        return fail(g, GZIN_BAD_DATA, "not gzip data");
    snprintf(g->msgbuf, sizeof g->msgbuf, "corrupt gzip data (%s)", zm);
    return fail(g, GZIN_BAD_DATA, g->msgbuf);
}

static int flush(gzin *g)
{
    int rc;

    if (g->fill == 0)
        return GZIN_OK;
    rc = g->sink(g->ctx, g->out, g->fill);
    g->fill = 0;
    if (rc != 0) {
        snprintf(g->msgbuf, sizeof g->msgbuf,
                 "gzip output sink failed (code %d)", rc);
        return fail(g, rc, g->msgbuf);
    }
    return GZIN_OK;
}

int gzin_create(gzin **out, uint64_t max_decoded, gzin_sink sink, void *ctx)
{
    gzin *g;
    int ret;

    if (out)
        *out = NULL;
    if (!out || !sink)
        return GZIN_MISUSE;
    /* Not calloc: zeroing the 256 KiB buffer would cost a pass over memory
     * per request for nothing. */
    g = malloc(sizeof *g);
    if (!g)
        return GZIN_NOMEM;
    memset(g, 0, offsetof(gzin, out));
    g->sink = sink;
    g->ctx = ctx;
    g->max = max_decoded;
    g->msg = "ok";
    /* 16 + MAX_WBITS: gzip wrapper only, so zlib itself parses the header
     * fields and verifies CRC-32, ISIZE and FHCRC. */
    ret = inflateInit2(&g->z, 16 + MAX_WBITS);
    if (ret != Z_OK) {
        free(g);
        return ret == Z_MEM_ERROR ? GZIN_NOMEM : GZIN_MISUSE;
    }
    *out = g;
    return GZIN_OK;
}

int gzin_feed(gzin *g, const void *buf, size_t len)
{
    z_stream *z;

    if (!g)
        return GZIN_MISUSE;
    if (g->err)
        return g->err;
    if (g->finished)
        return fail(g, GZIN_MISUSE, "gzip input fed after finish");
    if (len == 0)
        return GZIN_OK;

    z = &g->z;
    z->next_in = buf;
    g->consumed += len;

    /* avail_in is a uInt: hand over huge buffers in pieces. */
    while (len > 0) {
        size_t piece = len > 0x40000000u ? 0x40000000u : len;

        z->avail_in = (uInt)piece;
        len -= piece;

        for (;;) {
            size_t room;
            uInt give;
            int ret;

            if (g->fill == GZIN_BUFSIZE) {
                int rc = flush(g);
                if (rc)
                    return rc;
            }
            room = GZIN_BUFSIZE - g->fill;

            if (g->magic < 2) {
                /* Check the magic ourselves: zlib would only say "incorrect
                 * header check", and a new member after the first one must be
                 * told apart from trailing garbage. */
                static const unsigned char id[2] = {0x1f, 0x8b};
                uInt i;

                for (i = 0; g->magic < 2 && i < z->avail_in; i++) {
                    if (z->next_in[i] != id[g->magic])
                        return fail(g, GZIN_BAD_DATA,
                                    g->members
                                        ? "trailing garbage after gzip member"
                                        : "not gzip data");
                    g->magic++;
                }
                if (z->avail_in == 0)
                    break;
            }

            /* Cap the output at one byte past the limit so crossing it is
             * noticed without decoding further. */
            give = (uInt)room;
            if (g->max && g->max - g->decoded < give)
                give = (uInt)(g->max - g->decoded) + 1;

            z->next_out = g->out + g->fill;
            z->avail_out = give;
            ret = inflate(z, Z_NO_FLUSH);
            give -= z->avail_out;
            g->fill += give;
            g->decoded += give;

            if (g->max && g->decoded > g->max)
                return fail(g, GZIN_TOO_LARGE, "decoded size exceeds limit");

            if (ret == Z_STREAM_END) {
                /* Member complete and its trailer verified; whatever follows
                 * must be another member. */
                g->members++;
                g->magic = 0;
                inflateReset(z);
                if (z->avail_in == 0)
                    break;
                continue;
            }
            if (ret == Z_BUF_ERROR && z->avail_in == 0)
                break; /* no progress possible: needs more input */
            if (ret != Z_OK)
                return fail_zlib(g, ret);
            /* Z_OK with output room left means all input was consumed; with
             * the buffer full, zlib may still hold output, so go around. */
            if (z->avail_out != 0)
                break;
        }
    }
    return GZIN_OK;
}

int gzin_finish(gzin *g)
{
    if (!g)
        return GZIN_MISUSE;
    if (g->err)
        return g->err;
    if (g->finished)
        return GZIN_OK;
    if (g->consumed == 0)
        return fail(g, GZIN_BAD_DATA, "empty gzip body");
    if (g->magic > 0)
        return fail(g, GZIN_BAD_DATA, "truncated gzip stream");
    g->finished = 1;
    return flush(g);
}

const char *gzin_message(const gzin *g)
{
    return g ? g->msg : "no gzip decoder";
}

const char *gzin_strerror(int code)
{
    switch (code) {
    case GZIN_OK:
        return "ok";
    case GZIN_BAD_DATA:
        return "invalid gzip data";
    case GZIN_TOO_LARGE:
        return "decoded size exceeds limit";
    case GZIN_NOMEM:
        return "out of memory";
    case GZIN_MISUSE:
        return "gzip decoder misused";
    default:
        return "aborted by the output sink";
    }
}

uint64_t gzin_decoded(const gzin *g)
{
    return g ? g->decoded : 0;
}

void gzin_destroy(gzin *g)
{
    if (!g)
        return;
    inflateEnd(&g->z);
    free(g);
}
