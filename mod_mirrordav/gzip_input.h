/*
 * gzip_input: streaming decoder for gzip-encoded request bodies (SPEC 4).
 *
 * Pure C on zlib, no httpd/APR dependency.  Compressed bytes go in through
 * gzin_feed() in whatever pieces the network delivers; decoded bytes come out
 * through a sink callback in chunks of at most GZIN_BUFSIZE bytes.  Memory is
 * fixed (one output buffer plus zlib's ~40 KiB state) whatever the
 * compression ratio.
 *
 * Accepted input: one or more RFC 1952 members back to back (as produced by
 * `cat a.gz b.gz`), nothing after the last one.  Every member's header
 * (FEXTRA, FNAME, FCOMMENT, FHCRC), CRC-32 and ISIZE are checked.
 *
 * Typical use:
 *
 *     gzin *g;
 *     int rc = gzin_create(&g, limit, my_sink, my_ctx);
 *     while (rc == GZIN_OK && (more input))
 *         rc = gzin_feed(g, buf, len);
 *     if (rc == GZIN_OK)
 *         rc = gzin_finish(g);
 *     if (rc != GZIN_OK)
 *         log(gzin_message(g));  // then map rc to a status, see below
 *     gzin_destroy(g);
 *
 * Only after gzin_finish() returns GZIN_OK has the whole body been verified;
 * bytes handed to the sink before that may belong to a body that later turns
 * out corrupt, so the caller must be able to discard them.
 */
#ifndef MIRRORDAV_GZIP_INPUT_H
#define MIRRORDAV_GZIP_INPUT_H

#include <stddef.h>
#include <stdint.h>

/* Upper bound on the len of any sink call. */
#define GZIN_BUFSIZE (256 * 1024)

/*
 * Return codes.  The decoder's own codes are negative; a sink's nonzero
 * return is passed back unchanged, so sinks must use positive codes (errno
 * values and apr_status_t both are) to stay distinguishable.
 */
enum {
    GZIN_OK = 0,
    GZIN_BAD_DATA = -1,  /* corrupt, truncated, trailing or non-gzip: 400 */
    GZIN_TOO_LARGE = -2, /* decoded size exceeds max_decoded: 413 */
    GZIN_NOMEM = -3,     /* allocation failed: 500 */
    GZIN_MISUSE = -4     /* caller bug, e.g. feed after finish: 500 */
};

typedef struct gzin gzin;

/*
 * Receives decoded bytes; len is 1..GZIN_BUFSIZE and buf is only valid during
 * the call.  Return 0 to continue, or a positive code to abort decoding: the
 * same code is then returned by the gzin_feed()/gzin_finish() that called it.
 */
typedef int (*gzin_sink)(void *ctx, const void *buf, size_t len);

/*
 * Create a decoder.  max_decoded caps the total decoded size over all members
 * (0 = unlimited); output of exactly max_decoded bytes is allowed.
 * Returns GZIN_OK, GZIN_NOMEM, or GZIN_MISUSE (out or sink NULL).
 */
int gzin_create(gzin **out, uint64_t max_decoded, gzin_sink sink, void *ctx);

/*
 * Decode the next len bytes of the body (len 0 is a no-op).  All input is
 * consumed unless an error occurs.  Decoded output is buffered and handed to
 * the sink whenever GZIN_BUFSIZE bytes are ready, so a sink call may happen in
 * a later feed or only in gzin_finish().  Errors are sticky: once a call
 * fails, every later feed/finish returns the same code.
 * GZIN_TOO_LARGE is returned as soon as the limit is crossed: decoding
 * stops one byte past it and at most max_decoded bytes reach the sink.
 */
int gzin_feed(gzin *g, const void *buf, size_t len);

/*
 * End of body: checks that it was non-empty and did not stop inside a
 * member, then flushes the remaining output to the sink.  Returns GZIN_OK
 * only for a complete, valid body.  Calling it again returns the same result.
 */
int gzin_finish(gzin *g);

/* Short human-readable cause of the last error (e.g. "gzip CRC-32 mismatch"),
 * or "ok".  Valid until the next call on g. */
const char *gzin_message(const gzin *g);

/* Generic text for a return code; for the precise cause use gzin_message(). */
const char *gzin_strerror(int code);

/* Decoded bytes produced so far (including any not yet passed to the sink). */
uint64_t gzin_decoded(const gzin *g);

/* Free g; NULL is fine.  Safe at any point, e.g. after an error. */
void gzin_destroy(gzin *g);

#endif
