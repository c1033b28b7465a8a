/*
 * The partial-update dialects that clients already speak (SPEC 4b,
 * docs/PARTIAL-UPDATES.md), both committed through PATCH-APPLY's path
 * (patch_commit.c): atomic, crash-safe, the snapshot keeping the old
 * bytes, the SHA-1 pending and computed in the background.
 *
 *   PATCH /dav/f     Content-Type: application/x-sabredav-partialupdate
 *                    X-Update-Range: bytes=S-E | bytes=S- | bytes=-N | append
 *                    Content-Length: N                (required)
 *   PUT /dav/f       Content-Range: bytes S-E/LEN   (LEN may be '*')
 *
 * The body is the literal new bytes of the range (gzip-decoded on the way
 * when so sent).  A start beyond the end of the file leaves zeros between
 * the old end and S, as SabreDAV's documentation and Apache's in-place
 * write both do.
 *
 * Where: a handler placed before mod_dav's, as for PATCH-APPLY.  mod_dav
 * knows PUT with Content-Range (it opens the provider's stream with
 * DAV_MODE_WRITE_SEEKABLE and seeks), but that contract is a write into
 * the live file at an offset: whatever we did behind it, mod_dav neither
 * checks the body's length against the range nor gives the stream the
 * range's end, and a stream that copied the file first would cost the
 * whole file on every write.  Taking the request first lets the range be
 * checked before anything is read and the body go straight into the
 * commit path, at a cost proportional to the range.  mod_dav's own checks
 * run through its public API, as PATCH-APPLY does: dav_get_resource and
 * dav_validate_request (If: headers, locks: 423 without the token).
 */
#include <errno.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "apr_lib.h"
#include "apr_strings.h"
#include "http_protocol.h"
#include "http_request.h"
#include "gzip_input.h"
#include "digest.h"
#include "mirrordav.h"
#include "patch_commit.h"

#define BODY_BUF      (256 * 1024)
#define SABRE_TYPE    "application/x-sabredav-partialupdate"
#define SABRE_FEATURE "sabredav-partialupdate"
#define OFFSET_MAX    ((apr_uint64_t)APR_INT64_MAX)
#define UNBOUNDED     APR_UINT64_MAX

typedef enum { RANGE_BOUNDED, RANGE_FROM, RANGE_SUFFIX, RANGE_APPEND } kind;

typedef struct {
    kind k;
    apr_uint64_t s, e; /* S and E (inclusive); N for RANGE_SUFFIX */
} update_range;

static int parse_u64(const char **p, apr_uint64_t *v)
{
    const char *q = *p;

    if (!apr_isdigit(*q))
        return -1;
    *v = 0;
    for (; apr_isdigit(*q); q++) {
        apr_uint64_t d = (apr_uint64_t)(*q - '0');

        if (*v > (OFFSET_MAX - d) / 10)
            return -1; /* beyond any file offset */
        *v = *v * 10 + d;
    }
    *p = q;
    return 0;
}

/* X-Update-Range, as SabreDAV's plugin reads it: "append", "bytes=S-E",
 * "bytes=S-" or "bytes=-N".  NULL, or the cause of the 400. */
static const char *parse_update_range(request_rec *r, update_range *ur)
{
    const char *v = apr_table_get(r->headers_in, "X-Update-Range");

    if (!v)
        return "X-Update-Range is missing: expected 'bytes=S-E', "
               "'bytes=S-', 'bytes=-N' or 'append'.";
    if (!strcasecmp(v, "append")) {
        ur->k = RANGE_APPEND;
        return NULL;
    }
    if (strncasecmp(v, "bytes=", 6) != 0)
        goto malformed;
    v += 6;
    if (*v == '-') {
        v++;
        if (parse_u64(&v, &ur->e) || *v)
            goto malformed;
        ur->k = RANGE_SUFFIX;
        return NULL;
    }
    if (parse_u64(&v, &ur->s) || *v++ != '-')
        goto malformed;
    if (!*v) {
        ur->k = RANGE_FROM;
        return NULL;
    }
    if (parse_u64(&v, &ur->e) || *v)
        goto malformed;
    ur->k = RANGE_BOUNDED;
    return NULL;
malformed:
    return "Malformed X-Update-Range: expected 'bytes=S-E', 'bytes=S-', "
           "'bytes=-N' or 'append'.";
}

/* Content-Range of a PUT, as mod_dav reads it ("bytes S-E/LEN", LEN
 * beyond E, or '*' for LEN), strictly.  NULL, or the cause of the
 * 400. */
static const char *parse_content_range(const char *v, update_range *ur)
{
    apr_uint64_t len;

    if (strncasecmp(v, "bytes ", 6) != 0)
        goto malformed;
    v += 6;
    if (parse_u64(&v, &ur->s) || *v++ != '-' || parse_u64(&v, &ur->e) ||
        *v++ != '/')
        goto malformed;
    if (*v == '*') {
        if (v[1])
            goto malformed;
    }
    else if (parse_u64(&v, &len) || *v)
        goto malformed;
    else if (len <= ur->e)
        return "Malformed Content-Range: the complete length is not "
               "beyond E.";
    if (ur->e < ur->s)
        return "Malformed Content-Range: E is before S.";
    ur->k = RANGE_BOUNDED;
    return NULL;
malformed:
    return "Malformed Content-Range: expected 'bytes S-E/LEN' or "
           "'bytes S-E/*'.";
}

/* ---------------------------------------------------------- the body */

typedef struct {
    request_rec *r;
    mirrordav_patch *pt;
    apr_uint64_t want; /* the range's length, or UNBOUNDED */
    apr_uint64_t room; /* bytes from S to the largest file size */
    int len_status;    /* the status of a body that does not fit it */
    gzin *gz;
    mirrordav_patch_digests *dg; /* the request's digests (digest.c) */
    dav_error *err;              /* why the sink stopped the decoder */
} body_ctx;

static dav_error *too_long(body_ctx *c)
{
    return mirrordav_error(
        c->r->pool, c->len_status, 0,
        apr_psprintf(c->r->pool,
                     "The body is longer than the range (%" APR_UINT64_T_FMT
                     " bytes).",
                     c->want));
}

static dav_error *take(body_ctx *c, const char *buf, apr_size_t len)
{
    apr_uint64_t got = mirrordav_patch_written(c->pt);
    dav_error *err;

    if (c->want != UNBOUNDED && len > c->want - got)
        return too_long(c);
    if (c->want == UNBOUNDED && len > c->room - got)
        return mirrordav_error(c->r->pool, c->len_status, 0,
                               "The range ends beyond the largest file "
                               "size.");
    /* The literal body is O itself: a digest of the result hashes it as
     * PATCH-APPLY's delta output. */
    if ((err = mirrordav_patch_digests_output(c->dg, buf, len)) != NULL)
        return err;
    return mirrordav_patch_write(c->pt, buf, len);
}

static int gz_sink(void *ctx, const void *buf, size_t len)
{
    body_ctx *c = ctx;

    c->err = mirrordav_patch_digests_decoded(c->dg, buf, len);
    if (!c->err)
        c->err = take(c, buf, len);
    return c->err ? 1 : 0;
}

static apr_status_t gz_cleanup(void *data)
{
    body_ctx *c = data;

    gzin_destroy(c->gz);
    c->gz = NULL;
    return APR_SUCCESS;
}

/* One piece of the body as sent: its digests, then the range (through
 * the decoder for a gzip body). */
static dav_error *feed(void *ctx, const char *buf, apr_size_t len)
{
    body_ctx *c = ctx;
    dav_error *err;
    int rc;

    if ((err = mirrordav_patch_digests_sent(c->dg, buf, len)) != NULL)
        return err;
    if (!c->gz)
        return take(c, buf, len);
    if ((rc = gzin_feed(c->gz, buf, len)) == GZIN_OK)
        return NULL;
    return rc > 0 && c->err ? c->err : mirrordav_gzip_error(c->r, c->gz, rc);
}

/* Streams the whole body into the commit path. */
static dav_error *read_body(body_ctx *c, int gzip)
{
    request_rec *r = c->r;
    dav_error *err;
    int rc;

    if (gzip) {
        if (gzin_create(&c->gz, mirrordav_decoded_limit(mirrordav_get_conf(r)),
                        gz_sink, c) != GZIN_OK)
            return mirrordav_error(r->pool, HTTP_INTERNAL_SERVER_ERROR, 0,
                                   "Could not start the gzip decoder.");
        apr_pool_cleanup_register(r->pool, c, gz_cleanup,
                                  apr_pool_cleanup_null);
    }
    if ((err = mirrordav_read_body(r, BODY_BUF, feed, c)) != NULL)
        return err;
    if (c->gz && (rc = gzin_finish(c->gz)) != GZIN_OK)
        return rc > 0 && c->err ? c->err : mirrordav_gzip_error(r, c->gz, rc);
    return NULL;
}

/* ------------------------------------------------------------ update */

/* Content-Length as a number; -1 when absent, -2 when malformed (httpd's
 * protocol layer refuses those first; kept for safety). */
static apr_int64_t content_length(request_rec *r)
{
    const char *v = apr_table_get(r->headers_in, "Content-Length");
    apr_uint64_t n;

    if (!v)
        return -1;
    if (parse_u64(&v, &n) || *v)
        return -2;
    return (apr_int64_t)n;
}

static dav_error *range_error(request_rec *r, int status, const char *msg)
{
    return mirrordav_error(r->pool, status, 0, msg);
}

/* Applies the body to the range UR of RESOURCE.  SABRE: the SabreDAV
 * dialect (416 for a range that does not fit, lengths known up front
 * unless gzip-encoded); else PUT with Content-Range (400). */
static dav_error *update(request_rec *r, const dav_resource *resource,
                         update_range *ur, int sabre, int gzip,
                         apr_int64_t clen)
{
    const int fit = sabre ? HTTP_RANGE_NOT_SATISFIABLE : HTTP_BAD_REQUEST;
    mirrordav_patch *pt;
    apr_uint64_t size, s, result, got;
    struct timespec mtime;
    /* In the pool, not on the stack: its cleanup runs after this call. */
    body_ctx *c = apr_pcalloc(r->pool, sizeof(*c));
    dav_error *err;
    int have_mtime;

    have_mtime = mirrordav_parse_oc_mtime(
        apr_table_get(r->headers_in, "X-OC-Mtime"), &mtime);
    if (have_mtime < 0)
        return mirrordav_error(r->pool, HTTP_BAD_REQUEST, 0,
                               "X-OC-Mtime must be Unix seconds.");

    c->r = r;
    c->len_status = fit;
    c->want = UNBOUNDED;
    if (ur->k == RANGE_BOUNDED) {
        if (ur->e < ur->s)
            return range_error(
                r, fit,
                apr_psprintf(r->pool,
                             "The end offset (%" APR_UINT64_T_FMT
                             ") is lower than the start offset "
                             "(%" APR_UINT64_T_FMT ").",
                             ur->e, ur->s));
        c->want = ur->e - ur->s + 1;
    }
    /* A plain body's length is known before it is read. */
    if (!gzip && clen >= 0 && c->want != UNBOUNDED &&
        (apr_uint64_t)clen != c->want)
        return range_error(
            r, fit,
            apr_psprintf(r->pool,
                         "The body's length (%" APR_INT64_T_FMT
                         ") is not that of the range %" APR_UINT64_T_FMT
                         "-%" APR_UINT64_T_FMT " (%" APR_UINT64_T_FMT
                         " bytes).",
                         clen, ur->s, ur->e, c->want));

    /* The volume's write barrier, before the commit path looks at the
     * file's links: a snapshot taken between that look and the commit
     * would share an inode the journal then writes in place.  Taken
     * before the file's lock, in the order PATCH-APPLY takes both (its
     * barrier comes from the fixups). */
    if ((err = mirrordav_write_barrier(r, resource->info->conf)) != NULL)
        return err;
    if ((err = mirrordav_patch_open(r, resource, &pt)) != NULL)
        return err;
    size = mirrordav_patch_basis_size(pt);
    switch (ur->k) {
    case RANGE_APPEND:
        s = size;
        break;
    case RANGE_SUFFIX:
        if (ur->e > size)
            return range_error(r, fit,
                               apr_psprintf(r->pool,
                                            "bytes=-%" APR_UINT64_T_FMT
                                            " starts before the file: it has "
                                            "%" APR_UINT64_T_FMT " bytes.",
                                            ur->e, size));
        s = size - ur->e;
        break;
    default:
        s = ur->s;
    }
    if (c->want != UNBOUNDED
            ? c->want > OFFSET_MAX - s
            : !gzip && clen >= 0 && (apr_uint64_t)clen > OFFSET_MAX - s)
        return range_error(r, fit,
                           "The range ends beyond the largest "
                           "file size.");
    c->pt = pt;
    c->room = OFFSET_MAX - s;
    /* Digest headers, as for PATCH-APPLY (docs/DIGESTS.md): refused (400)
     * before anything is written; a digest of the result hashes the
     * basis up to S now. */
    if ((err = mirrordav_patch_digests_start(
             r, gzip, mirrordav_patch_basis_fd(pt), s, &c->dg)) != NULL)
        return err;
    if ((err = mirrordav_patch_prepare(pt, s)) != NULL)
        return err;
    if ((err = read_body(c, gzip)) != NULL)
        return err;
    got = mirrordav_patch_written(pt);
    if (c->want != UNBOUNDED && got != c->want)
        return range_error(r, fit,
                           apr_psprintf(r->pool,
                                        "The body has %" APR_UINT64_T_FMT
                                        " bytes; the range %" APR_UINT64_T_FMT
                                        "-%" APR_UINT64_T_FMT
                                        " needs %" APR_UINT64_T_FMT ".",
                                        got, s, s + c->want - 1, c->want));
    result = s + got > size ? s + got : size;
    /* Validate, then finalize: compared while nothing has changed; the
     * result ends with the basis's bytes after the range. */
    if ((err = mirrordav_patch_digests_check(
             c->dg, mirrordav_patch_basis_fd(pt), s + got,
             s + got < size ? size - (s + got) : 0)) != NULL)
        return err;
    if (have_mtime)
        mirrordav_patch_set_mtime(pt, &mtime);
    if ((err = mirrordav_patch_commit(pt, result, 0)) != NULL)
        return err;
    if (have_mtime)
        apr_table_setn(r->headers_out, "X-OC-Mtime", "accepted");
    return NULL;
}

/* ----------------------------------------------------------- handler */

static int refuse(request_rec *r, int status, const char *msg)
{
    return dav_handle_err(r, mirrordav_error(r->pool, status, 0, msg), NULL);
}

static int partial_handler(request_rec *r)
{
    dav_response *multi = NULL;
    dav_resource *resource;
    const char *cause, *crange = NULL, *ctype;
    update_range ur;
    apr_int64_t clen;
    dav_error *err;
    int sabre, gzip;

    if (!ap_get_module_config(r->request_config, &mirrordav_module))
        return DECLINED;
    if (r->method_number == M_PATCH)
        sabre = 1;
    else if (r->method_number == M_PUT &&
             (crange = apr_table_get(r->headers_in, "Content-Range")) != NULL)
        sabre = 0;
    else
        return DECLINED;
    if ((err = dav_get_resource(r, 0, 0, &resource)) != NULL)
        return dav_handle_err(r, err, NULL);
    if (resource->hooks != &mirrordav_hooks_repository)
        return DECLINED;
    if (mirrordav_read_only(resource))
        return refuse(r, HTTP_FORBIDDEN,
                      "This resource is read-only (a snapshot).");
    if (resource->collection) {
        apr_table_setn(r->err_headers_out, "Allow",
                       "OPTIONS, GET, HEAD, DELETE, PROPFIND, PROPPATCH, "
                       "COPY, MOVE, LOCK, UNLOCK");
        return refuse(r, HTTP_METHOD_NOT_ALLOWED,
                      sabre ? "PATCH applies to files, not collections."
                            : "A partial PUT applies to files, not "
                              "collections.");
    }
    if (!resource->exists)
        return refuse(r, HTTP_NOT_FOUND,
                      sabre ? "The file does not exist: PATCH updates an "
                              "existing file."
                            : "The file does not exist: a PUT with "
                              "Content-Range updates an existing file; "
                              "create it with a whole PUT first.");
    /* If: headers and locks, as mod_dav checks a PUT to an existing
     * resource: 423 without the lock token. */
    if ((err = dav_validate_request(r, resource, 0, NULL, &multi,
                                    DAV_VALIDATE_RESOURCE, NULL)) != NULL)
        return dav_handle_err(r, err, multi);
    /* SabreDAV's order: the range (400), the type (415), the length
     * (411), then whether they fit (416). */
    if (sabre) {
        if ((cause = parse_update_range(r, &ur)) != NULL)
            return refuse(r, HTTP_BAD_REQUEST, cause);
        ctype = apr_table_get(r->headers_in, "Content-Type");
        if (!ctype || strcasecmp(ctype, SABRE_TYPE) != 0) {
            apr_table_setn(r->err_headers_out, "Accept-Patch", SABRE_TYPE);
            return refuse(
                r, HTTP_UNSUPPORTED_MEDIA_TYPE,
                apr_psprintf(
                    r->pool,
                    "Unknown Content-Type '%s': PATCH takes " SABRE_TYPE ".",
                    ap_escape_html(r->pool, ctype ? ctype : "")));
        }
    }
    else if ((cause = parse_content_range(crange, &ur)) != NULL)
        return refuse(r, HTTP_BAD_REQUEST, cause);
    clen = content_length(r);
    if (clen == -2)
        return refuse(r, HTTP_BAD_REQUEST, "Malformed Content-Length.");
    if (sabre && clen <= 0)
        return refuse(r, HTTP_LENGTH_REQUIRED,
                      "A Content-Length header (above 0) is required.");
    if ((err = mirrordav_body_coding(r, &gzip)) != NULL)
        return dav_handle_err(r, err, NULL);
    if ((err = update(r, resource, &ur, sabre, gzip, clen)) != NULL)
        return dav_handle_err(r, err, NULL);
    return HTTP_NO_CONTENT;
}

/* ----------------------------------------------------------- OPTIONS */

/* The DAV header names the SabreDAV dialect; Allow has PATCH on files. */
static dav_error *options_header(request_rec *r, const dav_resource *resource,
                                 apr_text_header *phdr)
{
    if (resource && resource->hooks == &mirrordav_hooks_repository)
        apr_text_append(r->pool, phdr, SABRE_FEATURE);
    return NULL;
}

static dav_error *options_method(request_rec *r, const dav_resource *resource,
                                 apr_text_header *phdr)
{
    if (resource && resource->hooks == &mirrordav_hooks_repository &&
        resource->exists && !resource->collection &&
        !mirrordav_read_only(resource))
        apr_text_append(r->pool, phdr, "PATCH");
    return NULL;
}

static const dav_options_provider options_provider = {
    options_header,
    options_method,
    NULL,
};

void mirrordav_register_partial_update(apr_pool_t *p)
{
    static const char *const before_dav[] = {"mod_dav.c", NULL};

    ap_hook_handler(partial_handler, NULL, before_dav, APR_HOOK_FIRST);
    dav_options_provider_register(p, "mirrordav-partial", &options_provider);
}
