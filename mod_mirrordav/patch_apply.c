/*
 * PATCH-APPLY (SPEC section 5): a byte range of a file rewritten with the
 * output of an rdiff delta whose basis is the whole file.
 *
 *   PATCH-APPLY /dav/f      Content-Range: bytes S-E/T  (or bytes:S-E/T)
 *                           FileTruncate: true          (optional)
 *
 * mod_dav does not know the method, so a handler placed before mod_dav's
 * takes it on our locations and runs mod_dav's own checks through its
 * public API, as its method_put does: dav_get_resource (the provider's
 * lookup: path rules, symlinks) and dav_validate_request with
 * DAV_VALIDATE_RESOURCE (If: headers, locks: 423 without the token).
 * Access control ran before any handler.
 *
 * The body (gzip-decoded on the way when so sent) streams through a
 * librsync patch job; its COPY commands pread the current file, refused
 * with 400 beyond its end.  Its output goes through the commit path that
 * all partial updates share (patch_commit.c): staged apart from the live
 * file, then made visible at once, crash-safely, with the SHA-1 pending.
 */
#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/fs.h>

#include <librsync.h>

#include "apr_lib.h"
#include "apr_strings.h"
#include "apr_thread_proc.h"
#include "apr_thread_cond.h"
#include "http_protocol.h"
#include "http_request.h"
#include "digest.h"
#include "gzip_input.h"
#include "mirrordav.h"
#include "patch_commit.h"

#define BODY_BUF (256 * 1024)
#define OUT_BUF  (256 * 1024)

static int m_patch_apply = -1;

int mirrordav_patch_apply_method(void)
{
    return m_patch_apply;
}

/* ------------------------------------------------------------ the range */

typedef struct {
    apr_uint64_t s, e1, t; /* S, E+1 (so that an empty O is E+1 == S), T */
    int truncate;
} patch_range;

static int parse_u64(const char **p, apr_uint64_t *v)
{
    const char *q = *p;

    if (!apr_isdigit(*q))
        return -1;
    *v = 0;
    for (; apr_isdigit(*q); q++) {
        if (*v > (APR_UINT64_MAX - 9) / 10)
            return -1;
        *v = *v * 10 + (apr_uint64_t)(*q - '0');
    }
    *p = q;
    return 0;
}

/* "bytes S-E/T" or the original "bytes:S-E/T".  E may be S-1 (an empty
 * range, "0--1/0" for an empty file), so that `Content-Range: bytes
 * 0-$((N-1))/$N` works for every N.  NULL, or the cause of the refusal. */
static const char *parse_range(request_rec *r, patch_range *pr)
{
    const char *v = apr_table_get(r->headers_in, "Content-Range");
    const char *ft = apr_table_get(r->headers_in, "FileTruncate");
    apr_uint64_t e;
    int minus_one = 0;

    if (!v)
        return "Content-Range is missing: PATCH-APPLY needs "
               "'bytes S-E/T'.";
    while (apr_isspace(*v))
        v++;
    if (strncasecmp(v, "bytes", 5) != 0)
        return "Malformed Content-Range: expected 'bytes S-E/T'.";
    v += 5;
    if (*v == ':')
        v++;
    else if (*v == ' ')
        while (*v == ' ')
            v++;
    else
        return "Malformed Content-Range: expected 'bytes S-E/T'.";
    if (parse_u64(&v, &pr->s) || *v++ != '-')
        return "Malformed Content-Range: expected 'bytes S-E/T'.";
    if (*v == '-') {
        v++;
        minus_one = 1;
    }
    if (parse_u64(&v, &e) || *v++ != '/' || parse_u64(&v, &pr->t))
        return "Malformed Content-Range: expected 'bytes S-E/T'.";
    while (apr_isspace(*v))
        v++;
    if (*v)
        return "Malformed Content-Range: expected 'bytes S-E/T'.";
    if (minus_one) {
        if (e != 1 || pr->s != 0)
            return "Malformed Content-Range: E is negative.";
        pr->e1 = 0;
    }
    else {
        if (e == APR_UINT64_MAX || e + 1 < pr->s)
            return "Malformed Content-Range: S is beyond E.";
        pr->e1 = e + 1;
    }
    if (pr->e1 > (apr_uint64_t)APR_INT64_MAX ||
        pr->t > (apr_uint64_t)APR_INT64_MAX)
        return "Malformed Content-Range: offset too large.";
    pr->truncate = ft && !strcasecmp(ft, "true");
    return NULL;
}

/* ---------------------------------------------------- the patch job */

typedef struct {
    request_rec *r;
    apr_pool_t *p;
    mirrordav_patch *pt; /* where O goes (patch_commit.c) */
    int basis_fd;        /* F, read by COPY commands */
    apr_uint64_t basis_size;
    apr_uint64_t want, got;
    rs_job_t *job;
    char *outbuf;
    gzin *gz;
    mirrordav_patch_digests *dg; /* the request's digests (digest.c) */
    int done;                    /* the delta's end was reached */
    dav_error *err;              /* why a callback stopped the job */
} patch_ctx;

static dav_error *bad(patch_ctx *c, const char *msg)
{
    return mirrordav_error(c->p, HTTP_BAD_REQUEST, 0, msg);
}

static rs_result copy_cb(void *opaque, rs_long_t pos, size_t *len, void **buf)
{
    patch_ctx *c = opaque;
    size_t done = 0;

    if (pos < 0 || (apr_uint64_t)pos > c->basis_size ||
        *len > c->basis_size - (apr_uint64_t)pos) {
        c->err = mirrordav_error(
            c->p, HTTP_BAD_REQUEST, 0,
            apr_psprintf(
                c->p,
                "Malformed delta: a COPY command reads %" APR_SIZE_T_FMT
                " bytes at offset %" APR_INT64_T_FMT
                ", beyond the end of the file (%" APR_UINT64_T_FMT " bytes).",
                *len, (apr_int64_t)pos, c->basis_size));
        return RS_CORRUPT;
    }
    while (done < *len) {
        ssize_t n = pread(c->basis_fd, (char *)*buf + done, *len - done,
                          (off_t)pos + (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            c->err = mirrordav_errno_error(
                c->p, APR_FROM_OS_ERROR(n < 0 ? errno : EIO),
                "Could not read the file");
            return RS_IO_ERROR;
        }
        done += (size_t)n;
    }
    return RS_DONE;
}

static dav_error *emit(patch_ctx *c, const char *b, apr_size_t n)
{
    dav_error *err;

    if (n > c->want - c->got)
        return bad(c, apr_psprintf(c->p,
                                   "The delta's output is longer than the "
                                   "range (%" APR_UINT64_T_FMT " bytes).",
                                   c->want));
    if ((err = mirrordav_patch_digests_output(c->dg, b, n)) != NULL)
        return err;
    c->got += n;
    return mirrordav_patch_write(c->pt, b, n);
}

/* Runs the job over IN (LEN bytes), writing what it produces. */
static dav_error *pump(patch_ctx *c, const char *in, apr_size_t len, int eof)
{
    rs_buffers_t b;

    if (c->done) {
        if (len > 0)
            return bad(c, "Malformed delta: data after its end.");
        return NULL;
    }
    memset(&b, 0, sizeof(b));
    b.next_in = (char *)in;
    b.avail_in = len;
    b.eof_in = eof;
    for (;;) {
        size_t before_in = b.avail_in, produced;
        rs_result res;
        dav_error *err;

        b.next_out = c->outbuf;
        b.avail_out = OUT_BUF;
        res = rs_job_iter(c->job, &b);
        produced = OUT_BUF - b.avail_out;
        if (produced && (err = emit(c, c->outbuf, produced)) != NULL)
            return err;
        if (res == RS_DONE) {
            c->done = 1;
            if (b.avail_in > 0)
                return bad(c, "Malformed delta: data after its end.");
            return NULL;
        }
        if (res != RS_BLOCKED) {
            if (c->err)
                return c->err;
            return bad(c, apr_pstrcat(c->p, "Malformed delta: ",
                                      rs_strerror(res), ".", NULL));
        }
        if (produced == 0 && b.avail_in == before_in) {
            if (!eof && b.avail_in == 0)
                return NULL; /* wants more input */
            return bad(c, eof ? "Malformed delta: truncated."
                              : "Malformed delta: the patch job made no "
                                "progress.");
        }
    }
}

static int gz_sink(void *ctx, const void *buf, size_t len)
{
    patch_ctx *c = ctx;

    c->err = mirrordav_patch_digests_decoded(c->dg, buf, len);
    if (!c->err)
        c->err = pump(c, buf, len, 0);
    return c->err ? 1 : 0;
}

static dav_error *feed(void *ctx, const char *buf, apr_size_t len)
{
    patch_ctx *c = ctx;
    dav_error *err;
    int rc;

    if ((err = mirrordav_patch_digests_sent(c->dg, buf, len)) != NULL)
        return err;
    if (!c->gz)
        return pump(c, buf, len, 0);
    rc = gzin_feed(c->gz, buf, len);
    if (rc == GZIN_OK)
        return NULL;
    if (rc > 0 && c->err)
        return c->err;
    return mirrordav_gzip_error(c->r, c->gz, rc);
}

static apr_status_t ctx_cleanup(void *data)
{
    patch_ctx *c = data;

    if (c->job)
        rs_job_free(c->job);
    c->job = NULL;
    gzin_destroy(c->gz);
    c->gz = NULL;
    return APR_SUCCESS;
}

/* Reads the whole body through the job; O ends up in c->out_fd. */
static dav_error *run_body(patch_ctx *c, int gzip)
{
    request_rec *r = c->r;
    dav_error *err;

    c->job = rs_patch_begin(copy_cb, c);
    c->outbuf = apr_palloc(c->p, OUT_BUF);
    apr_pool_cleanup_register(c->p, c, ctx_cleanup, apr_pool_cleanup_null);
    if (!c->job)
        return mirrordav_error(c->p, HTTP_INTERNAL_SERVER_ERROR, 0,
                               "Could not start the patch job.");
    if (gzip &&
        gzin_create(&c->gz, mirrordav_decoded_limit(mirrordav_get_conf(r)),
                    gz_sink, c) != GZIN_OK)
        return mirrordav_error(c->p, HTTP_INTERNAL_SERVER_ERROR, 0,
                               "Could not start the gzip decoder.");
    if ((err = mirrordav_read_body(r, BODY_BUF, feed, c)) != NULL)
        return err;
    if (c->gz) {
        int rc = gzin_finish(c->gz);
        if (rc != GZIN_OK)
            return rc > 0 && c->err ? c->err
                                    : mirrordav_gzip_error(r, c->gz, rc);
    }
    return pump(c, NULL, 0, 1);
}

/* ------------------------------------------------------------ commit */

static dav_error *patch_file(request_rec *r, const dav_resource *resource,
                             const patch_range *pr, int gzip)
{
    mirrordav_patch *pt;
    apr_uint64_t result, size;
    patch_ctx *c;
    dav_error *err;

    if ((err = mirrordav_patch_open(r, resource, &pt)) != NULL)
        return err;
    size = mirrordav_patch_basis_size(pt);
    if (pr->s > size)
        return mirrordav_error(
            r->pool, HTTP_INTERNAL_SERVER_ERROR, 0,
            apr_psprintf(
                r->pool,
                "S beyond the end of the file: S is %" APR_UINT64_T_FMT
                ", the file has %" APR_OFF_T_FMT " bytes.",
                pr->s, (apr_off_t)size));
    result = pr->truncate || pr->e1 > size ? pr->e1 : size;
    if (result != pr->t)
        return mirrordav_error(
            r->pool, HTTP_BAD_REQUEST, 0,
            apr_psprintf(r->pool,
                         "Result size mismatch: the patched file would have "
                         "%" APR_UINT64_T_FMT " bytes, not T = "
                         "%" APR_UINT64_T_FMT ".",
                         result, pr->t));

    c = apr_pcalloc(r->pool, sizeof(*c));
    c->r = r;
    c->p = r->pool;
    c->pt = pt;
    c->basis_fd = mirrordav_patch_basis_fd(pt);
    c->basis_size = size;
    c->want = pr->e1 - pr->s;
    /* Digest headers refused (400) before anything is written; a digest
     * of the result hashes the basis up to S now. */
    if ((err = mirrordav_patch_digests_start(r, gzip, c->basis_fd, pr->s,
                                             &c->dg)))
        return err;
    if ((err = mirrordav_patch_prepare(pt, pr->s)) != NULL)
        return err;

    if ((err = run_body(c, gzip)) != NULL)
        return err;
    if (c->got != c->want)
        return mirrordav_error(
            r->pool, HTTP_BAD_REQUEST, 0,
            apr_psprintf(r->pool,
                         "The delta's output has %" APR_UINT64_T_FMT
                         " bytes; the range needs %" APR_UINT64_T_FMT ".",
                         c->got, c->want));
    /* Validate, then finalize: the request's digests are compared while
     * nothing has changed (O is in the clone or the staging file, neither
     * visible); a mismatch returns here and the pool's cleanups discard
     * them.  The result's digest ends with the basis's bytes after O's
     * range, which the file keeps unless truncated.  This stays before
     * mirrordav_patch_commit, which queues the SHA-1 and changes data. */
    if ((err = mirrordav_patch_digests_check(
             c->dg, c->basis_fd, pr->e1,
             !pr->truncate && pr->e1 < size ? size - pr->e1 : 0)) != NULL)
        return err;
    return mirrordav_patch_commit(pt, result, pr->truncate);
}

/* ----------------------------------------------------------- handler */

/* Whether RESOURCE may not be written: anything outside the live tree
 * (snapshots are served from VOLUME/snapshots/, never under live/). */
int mirrordav_read_only(const dav_resource *resource)
{
    const mirrordav_conf *conf = resource->info->conf;
    const char *path = resource->info->path;
    apr_size_t n = strlen(conf->live);

    return strncmp(path, conf->live, n) != 0 ||
           (path[n] != '\0' && path[n] != '/');
}

static int patch_apply_handler(request_rec *r)
{
    dav_response *multi = NULL;
    dav_resource *resource;
    const char *cause;
    patch_range pr;
    dav_error *err;
    int gzip;

    if (m_patch_apply < 0 || r->method_number != m_patch_apply ||
        !ap_get_module_config(r->request_config, &mirrordav_module))
        return DECLINED;
    if ((err = dav_get_resource(r, 0, 0, &resource)) != NULL)
        return dav_handle_err(r, err, NULL);
    if (resource->hooks != &mirrordav_hooks_repository)
        return DECLINED;
    if (mirrordav_read_only(resource))
        return dav_handle_err(
            r,
            mirrordav_error(r->pool, HTTP_FORBIDDEN, 0,
                            "This resource is read-only (a snapshot)."),
            NULL);
    if (resource->collection) {
        apr_table_setn(r->err_headers_out, "Allow",
                       "OPTIONS, GET, HEAD, DELETE, PROPFIND, PROPPATCH, "
                       "COPY, MOVE, LOCK, UNLOCK");
        return dav_handle_err(
            r,
            mirrordav_error(r->pool, HTTP_METHOD_NOT_ALLOWED, 0,
                            "PATCH-APPLY applies to files, not "
                            "collections."),
            NULL);
    }
    /* If: headers and locks, as mod_dav checks a PUT to an existing
     * resource: 423 without the lock token. */
    if ((err = dav_validate_request(r, resource, 0, NULL, &multi,
                                    DAV_VALIDATE_RESOURCE, NULL)) != NULL)
        return dav_handle_err(r, err, multi);
    if (!resource->exists)
        return dav_handle_err(r,
                              mirrordav_error(r->pool,
                                              HTTP_INTERNAL_SERVER_ERROR, 0,
                                              "The file does not exist."),
                              NULL);
    if ((cause = parse_range(r, &pr)) != NULL)
        return dav_handle_err(
            r, mirrordav_error(r->pool, HTTP_BAD_REQUEST, 0, cause), NULL);
    if ((err = mirrordav_body_coding(r, &gzip)) != NULL)
        return dav_handle_err(r, err, NULL);
    if ((err = patch_file(r, resource, &pr, gzip)) != NULL)
        return dav_handle_err(r, err, NULL);
    return HTTP_NO_CONTENT;
}

/* OPTIONS: the method is in Allow on our files. */
static dav_error *options_method(request_rec *r, const dav_resource *resource,
                                 apr_text_header *phdr)
{
    if (resource && resource->hooks == &mirrordav_hooks_repository &&
        resource->exists && !resource->collection)
        apr_text_append(r->pool, phdr, "PATCH-APPLY");
    return NULL;
}

static dav_error *options_header(request_rec *r, const dav_resource *resource,
                                 apr_text_header *phdr)
{
    (void)r, (void)resource, (void)phdr;
    return NULL;
}

static const dav_options_provider options_provider = {
    options_header,
    options_method,
    NULL,
};

static int post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                       server_rec *s)
{
    (void)plog, (void)ptemp, (void)s;
    m_patch_apply = ap_method_register(pconf, "PATCH-APPLY");
    return OK;
}

void mirrordav_register_patch_apply(apr_pool_t *p)
{
    static const char *const before_dav[] = {"mod_dav.c", NULL};

    ap_hook_post_config(post_config, NULL, NULL, APR_HOOK_MIDDLE);
    mirrordav_register_patch_commit(p);
    ap_hook_handler(patch_apply_handler, NULL, before_dav, APR_HOOK_FIRST);
    dav_options_provider_register(p, "mirrordav", &options_provider);
}
