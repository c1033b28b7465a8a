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
 * with 400 beyond its end.  The output O is never written into the live
 * file while it is produced:
 *  - where the file system clones (FICLONE: XFS, btrfs), O goes into a
 *    clone of the file, which is fsynced and renamed over it: cost
 *    proportional to O, and readers or a crash see old or new;
 *  - where it cannot (ext4), O is staged in VOLUME/state/ and applied in
 *    place under a redo journal (sidecar/patchlog.c), with readers kept
 *    out by the file's flock (repos.c's deliver holds it shared);
 *  - a file a snapshot shares (more than one link) is never written in
 *    place: it is copied whole into a new inode (or cloned), which takes
 *    the name, so the snapshot keeps the old bytes.
 * Afterwards the sidecar gets the new size, mtime and a bumped content
 * version at once, the SHA-1 is pending, and a worker thread in each
 * child computes it from the queue in VOLUME/state/pending/.
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
#include "gzip_input.h"
#include "mirrordav.h"
#include "sidecar/patchlog.h"
#include "sidecar/sidecar.h"

#define BODY_BUF (256 * 1024)
#define OUT_BUF  (256 * 1024)
#define WIN_BUF  (1024 * 1024)
#define BLOCK    4096

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
    int basis_fd; /* F, read by COPY commands */
    apr_uint64_t basis_size;
    int out_fd;            /* where O goes: the clone, or the staging file */
    apr_uint64_t out_base; /* O's first byte's offset in out_fd */
    apr_uint64_t want, got;
    apr_uint64_t s;  /* S: where O[0] goes in the file */
    int skip_same;   /* write only blocks that differ from the file */
    char *win, *cmp; /* O[win_off, +win_fill), and the file's bytes */
    apr_size_t win_fill;
    apr_uint64_t win_off;
    rs_job_t *job;
    char *outbuf;
    gzin *gz;
    int done;       /* the delta's end was reached */
    dav_error *err; /* why a callback stopped the job */
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

static dav_error *write_at(patch_ctx *c, const char *b, apr_size_t n,
                           apr_uint64_t off)
{
    while (n > 0) {
        ssize_t w = pwrite(c->out_fd, b, n, (off_t)(c->out_base + off));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return mirrordav_errno_error(
                c->p, APR_FROM_OS_ERROR(w < 0 ? errno : EIO),
                "Could not write the patched data");
        b += w;
        n -= (apr_size_t)w;
        off += (apr_uint64_t)w;
    }
    return NULL;
}

/* Writes the window (O[win_off, win_off + win_fill)).  When SKIP_SAME,
 * only its blocks that differ from the file's bytes at the same place:
 * the clone already holds those, and a sparse staging file leaves them
 * as holes that the journal's apply skips (sidecar/patchlog.c).  Windows
 * start at multiples of WIN_BUF in O, so every block is written whole or
 * not at all.  This keeps the writes (and the staged data) proportional
 * to the change even when the delta rewrites the whole file. */
static dav_error *flush_window(patch_ctx *c)
{
    apr_size_t done = 0, have = 0;
    dav_error *err;

    if (!c->skip_same || c->win_fill == 0) {
        err = write_at(c, c->win, c->win_fill, c->win_off);
        c->win_off += c->win_fill;
        c->win_fill = 0;
        return err;
    }
    while (have < c->win_fill) {
        ssize_t n = pread(c->basis_fd, c->cmp + have, c->win_fill - have,
                          (off_t)(c->s + c->win_off + have));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return mirrordav_errno_error(c->p, APR_FROM_OS_ERROR(errno),
                                         "Could not read the file");
        if (n == 0)
            break; /* past the end: all of it differs */
        have += (apr_size_t)n;
    }
    while (done < c->win_fill) {
        apr_size_t start = done, n;
        /* A run of differing blocks, written in one call. */
        while (done < c->win_fill) {
            n = c->win_fill - done < BLOCK ? c->win_fill - done : BLOCK;
            if (done + n <= have && !memcmp(c->win + done, c->cmp + done, n))
                break;
            done += n;
        }
        if (done > start && (err = write_at(c, c->win + start, done - start,
                                            c->win_off + start)) != NULL)
            return err;
        if (done < c->win_fill)
            done += c->win_fill - done < BLOCK ? c->win_fill - done : BLOCK;
    }
    c->win_off += c->win_fill;
    c->win_fill = 0;
    return NULL;
}

static dav_error *emit(patch_ctx *c, const char *b, apr_size_t n)
{
    if (n > c->want - c->got)
        return bad(c, apr_psprintf(c->p,
                                   "The delta's output is longer than the "
                                   "range (%" APR_UINT64_T_FMT " bytes).",
                                   c->want));
    while (n > 0) {
        apr_size_t k = WIN_BUF - c->win_fill;
        dav_error *err;

        if (k > n)
            k = n;
        memcpy(c->win + c->win_fill, b, k);
        c->win_fill += k;
        c->got += k;
        b += k;
        n -= k;
        if (c->win_fill == WIN_BUF && (err = flush_window(c)) != NULL)
            return err;
    }
    return NULL;
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

    c->err = pump(c, buf, len, 0);
    return c->err ? 1 : 0;
}

static dav_error *feed(patch_ctx *c, const char *buf, apr_size_t len)
{
    int rc;

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
    apr_bucket_brigade *bb;
    int eos = 0;

    c->job = rs_patch_begin(copy_cb, c);
    c->outbuf = apr_palloc(c->p, OUT_BUF);
    c->win = apr_palloc(c->p, WIN_BUF);
    c->cmp = c->skip_same ? apr_palloc(c->p, WIN_BUF) : NULL;
    apr_pool_cleanup_register(c->p, c, ctx_cleanup, apr_pool_cleanup_null);
    if (!c->job)
        return mirrordav_error(c->p, HTTP_INTERNAL_SERVER_ERROR, 0,
                               "Could not start the patch job.");
    if (gzip &&
        gzin_create(&c->gz, mirrordav_decoded_limit(mirrordav_get_conf(r)),
                    gz_sink, c) != GZIN_OK)
        return mirrordav_error(c->p, HTTP_INTERNAL_SERVER_ERROR, 0,
                               "Could not start the gzip decoder.");
    bb = apr_brigade_create(c->p, r->connection->bucket_alloc);
    while (!eos) {
        apr_bucket *e;
        apr_status_t rv = ap_get_brigade(
            r->input_filters, bb, AP_MODE_READBYTES, APR_BLOCK_READ, BODY_BUF);
        if (rv != APR_SUCCESS)
            return mirrordav_error(c->p, HTTP_BAD_REQUEST, rv,
                                   "The request body could not be read.");
        for (e = APR_BRIGADE_FIRST(bb); e != APR_BRIGADE_SENTINEL(bb);
             e = APR_BUCKET_NEXT(e)) {
            const char *data;
            apr_size_t len;
            dav_error *err;

            if (APR_BUCKET_IS_EOS(e)) {
                eos = 1;
                break;
            }
            if (APR_BUCKET_IS_METADATA(e))
                continue;
            rv = apr_bucket_read(e, &data, &len, APR_BLOCK_READ);
            if (rv != APR_SUCCESS)
                return mirrordav_error(c->p, HTTP_BAD_REQUEST, rv,
                                       "The request body could not be "
                                       "read.");
            if (len && (err = feed(c, data, len)) != NULL)
                return err;
        }
        apr_brigade_cleanup(bb);
    }
    if (c->gz) {
        int rc = gzin_finish(c->gz);
        if (rc != GZIN_OK)
            return rc > 0 && c->err ? c->err
                                    : mirrordav_gzip_error(r, c->gz, rc);
    }
    {
        dav_error *err = pump(c, NULL, 0, 1);
        return err ? err : flush_window(c);
    }
}

/* ------------------------------------------------------------ commit */

/* The target, opened read-write and held against other PATCH-APPLYs (an
 * open-file-description lock, apart from the flock readers share): the
 * basis must not change while a delta is applied to it.  A writer that
 * waited on a file replaced meanwhile (by the clone path's rename, or a
 * PUT) opens the new one. */
static dav_error *open_target(apr_pool_t *p, const char *path, int *fdp,
                              struct stat *st)
{
    int tries;

    for (tries = 0; tries < 100; tries++) {
        struct flock fl;
        struct stat now;
        int fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);

        if (fd < 0 && (errno == ENOENT || errno == ENOTDIR))
            return mirrordav_error(p, HTTP_INTERNAL_SERVER_ERROR, 0,
                                   "The file does not exist.");
        if (fd < 0)
            return mirrordav_errno_error(p, APR_FROM_OS_ERROR(errno),
                                         "Could not open the file");
        memset(&fl, 0, sizeof(fl));
        fl.l_type = F_WRLCK;
        fl.l_whence = SEEK_SET;
        while (fcntl(fd, F_OFD_SETLKW, &fl) != 0)
            if (errno != EINTR) {
                close(fd);
                return mirrordav_errno_error(p, APR_FROM_OS_ERROR(errno),
                                             "Could not lock the file");
            }
        if (fstat(fd, st) == 0 && lstat(path, &now) == 0 &&
            now.st_ino == st->st_ino && now.st_dev == st->st_dev) {
            if (!S_ISREG(st->st_mode)) {
                close(fd);
                return mirrordav_error(p, HTTP_METHOD_NOT_ALLOWED, 0,
                                       "PATCH-APPLY applies to files only.");
            }
            *fdp = fd;
            return NULL;
        }
        close(fd);
    }
    return mirrordav_error(p, HTTP_INTERNAL_SERVER_ERROR, 0,
                           "The file kept being replaced.");
}

static apr_status_t close_fd(void *data)
{
    int fd = (int)(intptr_t)data;
    if (fd >= 0)
        close(fd);
    return APR_SUCCESS;
}

static apr_status_t discard_newfile(void *data)
{
    publish_discard(data);
    return APR_SUCCESS;
}

static apr_status_t discard_stage(void *data)
{
    patchlog *pl = data;

    /* Before its record exists, staged data is only removed; after, the
     * handler retires it itself. */
    if (pl->rec_fd < 0 && pl->data_fd >= 0) {
        unlink(pl->data);
        close(pl->data_fd);
        pl->data_fd = -1;
    }
    return APR_SUCCESS;
}

/* A copy of the whole of FD into NF (a snapshot shares the file and it
 * cannot be cloned): the sharing is broken, at a cost that grows with the
 * file. */
static int copy_whole(int from, int to, apr_uint64_t size)
{
    loff_t in = 0, out = 0;

    while ((apr_uint64_t)in < size) {
        ssize_t n =
            copy_file_range(from, &in, to, &out, size - (apr_uint64_t)in, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? errno : EIO;
    }
    return 0;
}

static void wake_worker(void);

static dav_error *patch_file(request_rec *r, const dav_resource *resource,
                             const patch_range *pr, int gzip)
{
    const mirrordav_conf *conf = resource->info->conf;
    const char *path = resource->info->path;
    const char *dir = mirrordav_dirname(r->pool, path);
    apr_uint64_t result;
    publish_file *nf;
    patchlog *pl;
    patch_ctx *c;
    struct stat st, nst;
    dav_error *err;
    int fd = -1, rv, replace = 0;

    if ((err = open_target(r->pool, path, &fd, &st)) != NULL)
        return err;
    apr_pool_cleanup_register(r->pool, (void *)(intptr_t)fd, close_fd,
                              apr_pool_cleanup_null);
    if (pr->s > (apr_uint64_t)st.st_size)
        return mirrordav_error(
            r->pool, HTTP_INTERNAL_SERVER_ERROR, 0,
            apr_psprintf(
                r->pool,
                "S beyond the end of the file: S is %" APR_UINT64_T_FMT
                ", the file has %" APR_OFF_T_FMT " bytes.",
                pr->s, (apr_off_t)st.st_size));
    result = pr->truncate || pr->e1 > (apr_uint64_t)st.st_size
                 ? pr->e1
                 : (apr_uint64_t)st.st_size;
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
    c->basis_fd = fd;
    c->basis_size = (apr_uint64_t)st.st_size;
    c->want = pr->e1 - pr->s;

    /* Where O goes.  A clone first: on XFS and btrfs it costs nothing and
     * O then lands straight in the new version. */
    nf = apr_pcalloc(r->pool, sizeof(*nf));
    nf->fd = -1;
    pl = apr_pcalloc(r->pool, sizeof(*pl));
    pl->data_fd = pl->rec_fd = -1;
    if (sidecar_ensure_dir(dir) != 0)
        return mirrordav_errno_error(r->pool, APR_FROM_OS_ERROR(errno),
                                     "Could not prepare the sidecar folder");
    rv =
        publish_open(nf, dir, apr_pstrcat(r->pool, dir, "/" SIDECAR_DIR, NULL),
                     ".put-", O_WRONLY, st.st_mode & 07777);
    if (rv)
        return mirrordav_errno_error(r->pool, APR_FROM_OS_ERROR(-rv),
                                     "Could not create a temporary file");
    apr_pool_cleanup_register(r->pool, nf, discard_newfile,
                              apr_pool_cleanup_null);
    if (ioctl(nf->fd, FICLONE, fd) == 0)
        replace = 1;
    else if (st.st_nlink > 1) {
        /* A snapshot shares this inode: never write it in place. */
        if ((rv = copy_whole(fd, nf->fd, (apr_uint64_t)st.st_size)) != 0)
            return mirrordav_errno_error(r->pool, APR_FROM_OS_ERROR(rv),
                                         "Could not copy the file");
        replace = 1;
    }
    else {
        publish_discard(nf);
        if ((rv = patchlog_stage(conf->state, pl)) != 0)
            return mirrordav_errno_error(r->pool, APR_FROM_OS_ERROR(-rv),
                                         "Could not stage the patch");
        apr_pool_cleanup_register(r->pool, pl, discard_stage,
                                  apr_pool_cleanup_null);
    }
    c->out_fd = replace ? nf->fd : pl->data_fd;
    c->out_base = replace ? pr->s : 0;
    c->s = pr->s;
    c->skip_same = replace || pl->sparse;

    if ((err = run_body(c, gzip)) != NULL)
        return err;
    if (c->got != c->want)
        return mirrordav_error(
            r->pool, HTTP_BAD_REQUEST, 0,
            apr_psprintf(r->pool,
                         "The delta's output has %" APR_UINT64_T_FMT
                         " bytes; the range needs %" APR_UINT64_T_FMT ".",
                         c->got, c->want));

    /* QUOTA (quota.c): the one point where the size change is checked
     * against MirrorDAVQuota (507) and charged to the usage counter; it
     * belongs just before the commit step, wherever that step lives. */
    if ((err = mirrordav_quota_charge(r, conf, path, &st, result)) != NULL)
        return err;

    /* Queued before the data changes, durably: whatever crashes later,
     * the hash of the new data is computed (patchlog.h). */
    if ((rv = patchlog_pending_add(conf->state, path)) != 0)
        return mirrordav_errno_error(r->pool, APR_FROM_OS_ERROR(-rv),
                                     "Could not queue the SHA-1");
    if (replace) {
        if (pr->truncate && ftruncate(nf->fd, (off_t)pr->e1) != 0)
            return mirrordav_errno_error(r->pool, APR_FROM_OS_ERROR(errno),
                                         "Could not truncate the file");
        /* Contents durable before the name points at them; the name
         * durable before the record describes them (as PUT does). */
        if ((rv = publish_sync_fd(nf->fd)) != 0)
            return mirrordav_errno_error(r->pool, APR_FROM_OS_ERROR(-rv),
                                         "Could not sync the file");
        if (fstat(nf->fd, &nst) != 0)
            return mirrordav_errno_error(r->pool, APR_FROM_OS_ERROR(errno),
                                         "Could not stat the file");
        if ((rv = publish_commit(nf, path, PUBLISH_REPLACE)) != 0)
            return mirrordav_errno_error(r->pool, APR_FROM_OS_ERROR(-rv),
                                         "Could not put the file in place");
        if ((rv = publish_sync_dir(dir)) != 0)
            return mirrordav_errno_error(r->pool, APR_FROM_OS_ERROR(-rv),
                                         "Could not sync the directory");
    }
    else {
        pl->target = path;
        pl->ino = (apr_uint64_t)st.st_ino;
        pl->offset = pr->s;
        pl->len = c->got;
        pl->new_size = result;
        if ((rv = patchlog_write_record(conf->state, pl)) != 0)
            return mirrordav_errno_error(r->pool, APR_FROM_OS_ERROR(-rv),
                                         "Could not journal the patch");
        rv = patchlog_apply(pl, fd);
        if (rv) {
            /* The record stays: recovery replays it at the next start. */
            ap_log_rerror(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(-rv), r,
                          "PATCH-APPLY of %s failed in place; its journal "
                          "record %s is replayed at the next start",
                          path, pl->rec);
            return mirrordav_errno_error(r->pool, APR_FROM_OS_ERROR(-rv),
                                         "Could not apply the patch");
        }
        patchlog_retire(conf->state, pl);
        if (fstat(fd, &nst) != 0)
            return mirrordav_errno_error(r->pool, APR_FROM_OS_ERROR(errno),
                                         "Could not stat the file");
    }
    if ((rv = patchlog_record_new_data(path, &nst)) != 0)
        ap_log_rerror(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(-rv), r,
                      "could not record the new version of %s; "
                      "mirrordav fsck --repair brings it up to date",
                      path);
    wake_worker();
    return NULL;
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

/* ------------------------------------------------ the hashing worker */

/* One thread per child: waits for a PATCH-APPLY (or a second), then
 * computes the SHA-1s pending in each volume's state/pending/. */
static apr_thread_mutex_t *worker_mutex;
static apr_thread_cond_t *worker_cond;
static apr_thread_t *worker;
static int worker_stop, worker_kick;
static server_rec *worker_server;

static void wake_worker(void)
{
    if (!worker_mutex)
        return;
    apr_thread_mutex_lock(worker_mutex);
    worker_kick = 1;
    apr_thread_cond_signal(worker_cond);
    apr_thread_mutex_unlock(worker_mutex);
}

static void worker_report(void *ctx, const char *target, const char *what,
                          int rc)
{
    (void)ctx;
    ap_log_error(APLOG_MARK, rc ? APLOG_WARNING : APLOG_INFO,
                 rc ? APR_FROM_OS_ERROR(-rc) : 0, worker_server,
                 "pending SHA-1 of %s: %s", target, what);
}

static void *APR_THREAD_FUNC worker_main(apr_thread_t *t, void *data)
{
    apr_pool_t *p = data;

    (void)t;
    publish_set_durable(1);
    sidecar_set_durable(1);
    for (;;) {
        const apr_array_header_t *vols;
        int i;

        apr_thread_mutex_lock(worker_mutex);
        if (!worker_kick && !worker_stop)
            apr_thread_cond_timedwait(worker_cond, worker_mutex,
                                      apr_time_from_sec(1));
        worker_kick = 0;
        if (worker_stop) {
            apr_thread_mutex_unlock(worker_mutex);
            break;
        }
        apr_thread_mutex_unlock(worker_mutex);
        vols = mirrordav_recovery_volumes();
        for (i = 0; vols && i < vols->nelts; i++) {
            const char *state = apr_pstrcat(
                p, APR_ARRAY_IDX(vols, i, const char *), "/state", NULL);
            patchlog_pending_run(state, 0, worker_report, NULL);
        }
        apr_pool_clear(p);
    }
    return NULL;
}

static apr_status_t worker_cleanup(void *data)
{
    apr_status_t rv;

    (void)data;
    if (!worker)
        return APR_SUCCESS;
    apr_thread_mutex_lock(worker_mutex);
    worker_stop = 1;
    apr_thread_cond_signal(worker_cond);
    apr_thread_mutex_unlock(worker_mutex);
    apr_thread_join(&rv, worker);
    worker = NULL;
    worker_mutex = NULL;
    return APR_SUCCESS;
}

static void child_init(apr_pool_t *pchild, server_rec *s)
{
    apr_pool_t *wp;

    worker_server = s;
    worker_stop = worker_kick = 0;
    if (apr_thread_mutex_create(&worker_mutex, APR_THREAD_MUTEX_DEFAULT,
                                pchild) != APR_SUCCESS ||
        apr_thread_cond_create(&worker_cond, pchild) != APR_SUCCESS ||
        apr_pool_create(&wp, pchild) != APR_SUCCESS ||
        apr_thread_create(&worker, NULL, worker_main, wp, pchild) !=
            APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s,
                     "could not start the SHA-1 worker; pending hashes are "
                     "computed by mirrordav fsck --repair");
        worker = NULL;
        worker_mutex = NULL;
        return;
    }
    apr_pool_cleanup_register(pchild, NULL, worker_cleanup,
                              apr_pool_cleanup_null);
}

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
    ap_hook_child_init(child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(patch_apply_handler, NULL, before_dav, APR_HOOK_FIRST);
    dav_options_provider_register(p, "mirrordav", &options_provider);
}
