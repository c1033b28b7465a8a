/*
 * PUT streams.  The body (gzip-decoded on the way when it is sent so) is
 * written to a new file (sidecar/publish.c: unnamed where /proc allows),
 * hashed with SHA-1 on a second thread as it streams, fsynced, and then
 * published under the target's name; only then does mod_dav answer.  A
 * reader sees the old file or the new one; a failed or interrupted upload
 * leaves nothing behind, a crash at most a temp name that fsck removes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "apr_lib.h"
#include "apr_strings.h"
#include "http_protocol.h"
#include "util_filter.h"
#include "digest.h"
#include "gzip_input.h"
#include "mirrordav.h"
#include "sha1_pipe.h"
#include "sidecar/sidecar.h"

#define STREAM_BUF (256 * 1024)
/* With fsync on, writeback is started every this many bytes, so that the
 * kernel's flusher threads write the body while it arrives and the final
 * fsync finds little left to do. */
#define WRITEBACK_STEP (8 * 1024 * 1024)

struct dav_stream {
    apr_pool_t *p;
    const dav_resource *resource;
    const char *dir;       /* the target's directory */
    mirrordav_newfile out; /* the file being written */
    sha1_pipe *sha1; /* hashes on a second thread: dec.pipe, NULL if none */
    mirrordav_hasher dec;       /* digests of the stored (decoded) bytes */
    mirrordav_hasher sent;      /* digests of a gzip body as sent (digest.c) */
    mirrordav_digests *digests; /* the request's integrity headers */
    unsigned char *sbuf;        /* sent.pipe's buffer being filled */
    apr_size_t sused;
    char *buf; /* the buffer being filled: written and hashed when full */
    apr_size_t used;
    gzin *gz;             /* decoder when the body is gzip-encoded */
    ap_filter_t *body_in; /* body_in_filter, while the stream is open */
    int durable;          /* fsync before the reply (MirrorDAVFsync) */
    apr_off_t written;    /* bytes written to fd */
    apr_off_t started;    /* bytes whose writeback has been started */
    dav_error *sink_err;  /* why the decoder's sink stopped */
    /* the volume's limit and usage (quota.c) */
    mirrordav_quota_put *quota;
};

static int gz_sink(void *ctx, const void *buf, size_t len);
static ap_filter_rec_t *body_in_handle;

static apr_status_t stream_cleanup(void *data)
{
    dav_stream *s = data;

    mirrordav_newfile_discard(&s->out);
    sha1_pipe_destroy(s->sha1);
    s->sha1 = s->dec.pipe = NULL;
    sha1_pipe_destroy(s->sent.pipe);
    s->sent.pipe = NULL;
    gzin_destroy(s->gz);
    s->gz = NULL;
    return APR_SUCCESS;
}

dav_error *mirrordav_open_stream(const dav_resource *resource,
                                 dav_stream_mode mode, dav_stream **stream)
{
    dav_resource_private *info = resource->info;
    apr_pool_t *p = resource->pool;
    const char *dir = mirrordav_dirname(p, info->path);
    struct stat st;
    dav_stream *s;
    dav_error *err;
    mirrordav_digests *digests;
    unsigned mask_sent;
    int gzip, rv;

    if ((err = mirrordav_body_coding(info->r, &gzip)) != NULL)
        return err;
    if (mode != DAV_MODE_WRITE_TRUNC)
        return mirrordav_error(p, HTTP_NOT_IMPLEMENTED, 0,
                               "Partial PUT is not supported; use "
                               "PATCH-APPLY.");
    /* Refused before any byte is stored: a malformed digest header or an
     * algorithm the server does not compute. */
    if ((err = mirrordav_digests_parse(info->r, 0, &digests)) != NULL)
        return err;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return mirrordav_error(p, HTTP_CONFLICT, 0,
                               "The parent collection does not exist.");
    if (sidecar_ensure_dir(dir) != 0)
        return mirrordav_errno_error(p, APR_FROM_OS_ERROR(errno),
                                     "Could not prepare the sidecar folder");

    s = apr_pcalloc(p, sizeof(*s));
    s->p = p;
    s->resource = resource;
    s->dir = dir;
    s->digests = digests;
    /* The thread's durability switch (publish.c), which get_resource has
     * set from MirrorDAVFsync. */
    s->durable = publish_durable();
    if ((err = mirrordav_quota_put_open(info->r, info->conf, info->path, gzip,
                                        &s->quota)) != NULL)
        return err;
    if ((rv = mirrordav_newfile_open(p, dir, &s->out)) != 0)
        return mirrordav_errno_error(p, APR_FROM_OS_ERROR(rv),
                                     "Could not create a temporary file");
    apr_pool_cleanup_register(p, s, stream_cleanup, apr_pool_cleanup_null);
    /* Four buffers: the hashing thread may lag the disk by three.  It
     * computes what is recorded (MirrorDAVHash, MirrorDAVDigest) and what
     * the request's digests need over the stored bytes; over the bytes
     * as sent too when the body is plain (the same bytes). */
    mask_sent = mirrordav_digests_needed(digests, DIGEST_OVER_SENT);
    if (mirrordav_hasher_create(
            &s->dec,
            mirrordav_recorded_digests(info->conf) |
                mirrordav_digests_needed(digests, DIGEST_OVER_DECODED) |
                (gzip ? 0 : mask_sent),
            STREAM_BUF, 4) != 0)
        return mirrordav_error(p, HTTP_INTERNAL_SERVER_ERROR, 0,
                               "Could not start the digests.");
    if ((s->sha1 = s->dec.pipe) != NULL)
        s->buf = (char *)sha1_pipe_buffer(s->sha1);
    else
        s->buf = apr_palloc(p, STREAM_BUF);
    /* A gzip body's own bytes go to a second hashing thread. */
    if (gzip && mask_sent) {
        if (mirrordav_hasher_create(&s->sent, mask_sent, STREAM_BUF, 4) != 0)
            return mirrordav_error(p, HTTP_INTERNAL_SERVER_ERROR, 0,
                                   "Could not start the digests.");
        s->sbuf = sha1_pipe_buffer(s->sent.pipe);
    }
    if (gzip && gzin_create(&s->gz, mirrordav_decoded_limit(info->conf),
                            gz_sink, s) != GZIN_OK)
        return mirrordav_error(p, HTTP_INTERNAL_SERVER_ERROR, 0,
                               "Could not start the gzip decoder.");
    s->body_in = ap_add_input_filter_handle(body_in_handle, NULL, info->r,
                                            info->r->connection);
    *stream = s;
    return NULL;
}

static dav_error *write_buf(dav_stream *s)
{
    const char *b = s->buf;
    apr_size_t left = s->used;

    while (left > 0) {
        ssize_t n = write(s->out.fd, b, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return mirrordav_errno_error(s->p, APR_FROM_OS_ERROR(errno),
                                         "Could not write the file");
        b += n;
        left -= (apr_size_t)n;
    }
    return NULL;
}

/* A full buffer goes to the file, then to the hashing thread, which works
 * on it while this thread receives the next one. */
static dav_error *flush_buf(dav_stream *s)
{
    dav_error *err = write_buf(s);

    if (err)
        return err;
    s->written += s->used;
    if (s->durable && s->written - s->started >= WRITEBACK_STEP) {
        /* Asynchronous: only starts the I/O; errors surface at fsync. */
        sync_file_range(s->out.fd, s->started, s->written - s->started,
                        SYNC_FILE_RANGE_WRITE);
        s->started = s->written;
    }
    if (s->sha1) {
        if (sha1_pipe_submit(s->sha1, s->used) != 0)
            return mirrordav_error(s->p, HTTP_INTERNAL_SERVER_ERROR, 0,
                                   "SHA-1 digest failed.");
        s->buf = (char *)sha1_pipe_buffer(s->sha1);
    }
    s->used = 0;
    return NULL;
}

static dav_error *write_data(dav_stream *s, const void *buf, apr_size_t len)
{
    const char *b = buf;

    while (len > 0) {
        apr_size_t n = STREAM_BUF - s->used;
        dav_error *err;

        if (n > len)
            n = len;
        if ((err = mirrordav_quota_put_check(
                 s->quota, s->written + (apr_off_t)(s->used + n))) != NULL)
            return err;
        memcpy(s->buf + s->used, b, n);
        s->used += n;
        b += n;
        len -= n;
        if (s->used == STREAM_BUF && (err = flush_buf(s)) != NULL)
            return err;
    }
    return NULL;
}

/* Decoded bytes from the gzip decoder. */
static int gz_sink(void *ctx, const void *buf, size_t len)
{
    dav_stream *s = ctx;

    s->sink_err = write_data(s, buf, len);
    return s->sink_err ? 1 : 0;
}

static dav_error *decoder_error(dav_stream *s, int rc)
{
    if (rc > 0 && s->sink_err)
        return s->sink_err;
    return mirrordav_gzip_error(s->resource->info->r, s->gz, rc);
}

/* A gzip body's bytes as sent, for the digests over them: copied into
 * the sent pipe's buffers, each handed to its thread when full. */
static dav_error *hash_sent(dav_stream *s, const void *buf, apr_size_t len)
{
    const char *b = buf;

    while (len > 0) {
        apr_size_t n = STREAM_BUF - s->sused;

        if (n > len)
            n = len;
        memcpy(s->sbuf + s->sused, b, n);
        s->sused += n;
        b += n;
        len -= n;
        if (s->sused == STREAM_BUF) {
            if (sha1_pipe_submit(s->sent.pipe, s->sused) != 0)
                return mirrordav_error(s->p, HTTP_INTERNAL_SERVER_ERROR, 0,
                                       "Digest failed.");
            s->sbuf = sha1_pipe_buffer(s->sent.pipe);
            s->sused = 0;
        }
    }
    return NULL;
}

/* Body bytes as they arrive: decoded first when the body is gzip. */
static dav_error *take_body(dav_stream *s, const void *buf, apr_size_t len)
{
    dav_error *err;
    int rc;

    if (!s->gz)
        return write_data(s, buf, len);
    if (s->sent.pipe && (err = hash_sent(s, buf, len)) != NULL)
        return err;
    rc = gzin_feed(s->gz, buf, len);
    return rc == GZIN_OK ? NULL : decoder_error(s, rc);
}

/* mod_dav reads the body 2 KiB at a time (DAV_READ_BLOCKSIZE): half a
 * million trips through the input filters per GiB.  This filter, put in
 * front of the request's input filters while a PUT stream is open, turns
 * each of those reads into one of up to a buffer's size, which the core
 * fills greedily from what the socket holds.  mod_dav still reads every
 * bucket and hands each to write_stream in order; only the pieces grow.
 * Returning more than asked is safe for mod_dav's loop, which takes
 * whatever the brigade holds; close_stream removes the filter before
 * anything else (ap_discard_request_body) reads the request. */
static apr_status_t body_in_filter(ap_filter_t *f, apr_bucket_brigade *bb,
                                   ap_input_mode_t mode, apr_read_type_e block,
                                   apr_off_t readbytes)
{
    if (mode == AP_MODE_READBYTES && readbytes < STREAM_BUF)
        readbytes = STREAM_BUF;
    return ap_get_brigade(f->next, bb, mode, block, readbytes);
}

void mirrordav_register_body_filter(void)
{
    body_in_handle = ap_register_input_filter(
        "MIRRORDAV_PUT_BODY", body_in_filter, NULL, AP_FTYPE_RESOURCE);
}

dav_error *mirrordav_write_stream(dav_stream *s, const void *buf,
                                  apr_size_t len)
{
    return take_body(s, buf, len);
}

/* X-OC-Mtime: decimal Unix seconds, optionally with a fraction; nothing
 * else (no sign, exponent, hex, "nan" or spaces).  0 when absent, 1 when
 * set, -1 when malformed. */
int mirrordav_parse_oc_mtime(const char *v, struct timespec *ts)
{
    long long sec = 0;
    long nsec = 0, scale = 100000000;
    const char *p = v;

    if (!v)
        return 0;
    if (!apr_isdigit(*p))
        return -1;
    for (; apr_isdigit(*p); p++) {
        if (sec > 100000000000LL) /* beyond year 5000 */
            return -1;
        sec = sec * 10 + (*p - '0');
    }
    if (*p == '.') {
        if (!apr_isdigit(*++p))
            return -1;
        for (; apr_isdigit(*p); p++, scale /= 10)
            nsec += (*p - '0') * scale;
    }
    if (*p)
        return -1;
    ts->tv_sec = (time_t)sec;
    ts->tv_nsec = nsec;
    return 1;
}

void mirrordav_record_receipt(request_rec *r, const char *path,
                              const struct stat *st, const char *sha1hex)
{
    mirrordav_record_receipt_digests(r, path, st, sha1hex, NULL, NULL);
}

void mirrordav_record_receipt_digests(request_rec *r, const char *path,
                                      const struct stat *st,
                                      const char *sha1hex,
                                      const char *sha256hex,
                                      const char *md5hex)
{
    sidecar_record rec;
    sidecar *sc;
    struct stat now;
    int rv;

    memset(&rec, 0, sizeof(rec));
    rv = sidecar_open(mirrordav_dirname(r->pool, path),
                      mirrordav_basename(path), 1, &sc);
    if (rv == 0 && (lstat(path, &now) != 0 || now.st_ino != st->st_ino ||
                    now.st_dev != st->st_dev)) {
        /* Another write has replaced this data since it was published;
         * that writer records its own.  Checked under the sidecar lock, so
         * the record always describes the data at the path. */
        sidecar_close(sc);
        return;
    }
    if (rv == 0) {
        rv = sidecar_get_record(sc, &rec);
        if (rv == 0 || rv == -ENOENT) {
            rec.version++;
            if (sha1hex) {
                apr_cpystrn(rec.sha1, sha1hex, sizeof(rec.sha1));
                rec.sha1_version = rec.version;
            }
            else
                rec.sha1[0] = '\0'; /* fsck --repair computes it */
            /* The SHA-256 and MD5 carry their own versions; without one
             * the field is cleared, so that the PATCH-APPLY worker, which
             * recomputes the digests a record holds, follows what this
             * location records now (MirrorDAVDigest). */
            rec.sha256[0] = rec.md5[0] = '\0';
            if (sha256hex) {
                apr_cpystrn(rec.sha256, sha256hex, sizeof(rec.sha256));
                rec.sha256_version = rec.version;
            }
            if (md5hex) {
                apr_cpystrn(rec.md5, md5hex, sizeof(rec.md5));
                rec.md5_version = rec.version;
            }
            /* The identity is taken now, after the publish: linking or
             * renaming the file into place moved its ctime.  ST (before
             * the publish) vouches that the bytes are the ones hashed;
             * size or mtime changed since means someone else wrote into
             * the file, and then the hash is bound to nothing. */
            sidecar_record_bind(&rec, &now);
            if (now.st_size != st->st_size ||
                now.st_mtim.tv_sec != st->st_mtim.tv_sec ||
                now.st_mtim.tv_nsec != st->st_mtim.tv_nsec)
                rec.bound = 0;
            rv = sidecar_set_record(sc, &rec);
        }
        if (rv == 0)
            rv = sidecar_commit(sc);
        sidecar_close(sc);
    }
    if (rv != 0)
        ap_log_rerror(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(-rv), r,
                      "could not record the SHA-1 of %s; "
                      "mirrordav fsck --repair recomputes it",
                      path);
}

/* Ends decoding (the gzip trailer is checked here) and flushes. */
static dav_error *finish_data(dav_stream *s)
{
    if (s->gz) {
        int rc = gzin_finish(s->gz);
        if (rc != GZIN_OK)
            return decoder_error(s, rc);
    }
    return write_buf(s); /* the last, partial buffer: hashed at close */
}

static dav_error *publish_error(dav_stream *s, int e, int create_only)
{
    if (e == EEXIST && create_only)
        return mirrordav_error(s->p, HTTP_PRECONDITION_FAILED, 0,
                               "If-None-Match: * failed: the resource was "
                               "created while this body was received.");
    if (e == EISDIR)
        return mirrordav_error(s->p, HTTP_CONFLICT, 0,
                               "A collection exists at this URI.");
    if (e == ENOENT || e == ENOTDIR)
        return mirrordav_error(s->p, HTTP_CONFLICT, 0,
                               "The parent collection no longer exists.");
    return mirrordav_errno_error(s->p, APR_FROM_OS_ERROR(e),
                                 "Could not put the file in place");
}

/* If-None-Match: * asks to create, never to replace.  mod_dav checks it
 * when the request starts; the publication enforces it again at the end,
 * as only a link can (rename replaces). */
static int create_only(request_rec *r)
{
    const char *v = apr_table_get(r->headers_in, "If-None-Match");

    if (!v)
        return 0;
    while (apr_isspace(*v))
        v++;
    if (*v++ != '*')
        return 0;
    while (apr_isspace(*v))
        v++;
    return *v == '\0';
}

/* ALG's digest of the stored bytes in HEX if it is one that is recorded
 * (a SHA-1 computed only for a request's check is recorded too: it is
 * right), else NULL. */
static const char *recorded_hex(const dav_stream *s, int alg, char *hex)
{
    if (alg != DIGEST_SHA1 &&
        !(mirrordav_recorded_digests(s->resource->info->conf) &
          DIGEST_BIT(alg)))
        return NULL;
    return mirrordav_hasher_hex(&s->dec, alg, hex) == 0 ? hex : NULL;
}

dav_error *mirrordav_close_stream(dav_stream *s, int commit)
{
    const dav_resource *resource = s->resource;
    dav_resource_private *info = resource->info;
    request_rec *r = info->r;
    int create = create_only(r);
    char hex[129], hex256[129], hexmd5[129];
    struct timespec times[2];
    struct stat st;
    dav_error *err;
    int have_mtime, rv;

    if (s->body_in) {
        /* mod_dav has read the body to its end (or given up on it). */
        ap_remove_input_filter(s->body_in);
        s->body_in = NULL;
    }
    if (!commit) {
        stream_cleanup(s);
        return NULL;
    }
    err = finish_data(s);
    if (!err)
        err = mirrordav_quirks_check_body(r);
    if (err) {
        stream_cleanup(s); /* nothing of a refused body stays */
        return err;
    }

    have_mtime = mirrordav_parse_oc_mtime(
        apr_table_get(r->headers_in, "X-OC-Mtime"), &times[1]);
    if (have_mtime < 0)
        return mirrordav_error(s->p, HTTP_BAD_REQUEST, 0,
                               "X-OC-Mtime must be Unix seconds.");
    if (have_mtime) {
        times[0].tv_sec = 0;
        times[0].tv_nsec = UTIME_OMIT;
        if (futimens(s->out.fd, times) != 0)
            return mirrordav_errno_error(s->p, APR_FROM_OS_ERROR(errno),
                                         "Could not set the mtime");
    }
    /* The data is on disk before any name can refer to it. */
    if ((rv = publish_sync_fd(s->out.fd)) != 0)
        return mirrordav_errno_error(s->p, APR_FROM_OS_ERROR(-rv),
                                     "Could not sync the file");
    if (fstat(s->out.fd, &st) != 0)
        return mirrordav_errno_error(s->p, APR_FROM_OS_ERROR(errno),
                                     "Could not stat the file");
    /* The hashing threads have run alongside the fsync; the last, partial
     * buffers are hashed now. */
    if ((s->sha1 && sha1_pipe_finish(s->sha1, s->used, NULL) != 0) ||
        (s->sent.pipe && sha1_pipe_finish(s->sent.pipe, s->sused, NULL) != 0))
        return mirrordav_error(s->p, HTTP_INTERNAL_SERVER_ERROR, 0,
                               "SHA-1 digest failed.");
    /* Validate, then publish: the bytes are stored and synced but have no
     * name yet.  A mismatch returns here, and the pool cleanup discards
     * the unnamed file: the old file and its record are not touched. */
    if ((err = mirrordav_digests_verify(s->p, s->digests, DIGEST_OVER_SENT,
                                        s->sent.pipe ? &s->sent : &s->dec)) ||
        (err = mirrordav_digests_verify(s->p, s->digests, DIGEST_OVER_DECODED,
                                        &s->dec)))
        return err;
    /* The tree changes from here: a snapshot holds all of this write or
     * none of it (snapshot_space.c). */
    if ((err = mirrordav_write_barrier(r, info->conf)) != NULL)
        return err;
    /* The final quota check and the publication under the usage
     * counter's lock, so that the size it replaces is the one counted. */
    if ((err = mirrordav_quota_put_lock(s->quota, st.st_size)) != NULL)
        return err;
    rv = publish_commit(&s->out, info->path,
                        create ? PUBLISH_CREATE : PUBLISH_REPLACE);
    mirrordav_quota_put_unlock(s->quota, rv == 0);
    if (rv)
        return publish_error(s, -rv, create);
    if (close(s->out.fd) != 0) {
        s->out.fd = -1;
        return mirrordav_errno_error(s->p, APR_FROM_OS_ERROR(errno),
                                     "Could not write the file");
    }
    s->out.fd = -1;
    /* The name is made durable before the record that describes it: the
     * record (in .mirrordav/, another directory) is committed with its own
     * fsync, and were it on disk while this entry was not, a crash would
     * leave the old file (or none) under a record of the new one.  A crash
     * between the two leaves the new file with the previous record, as
     * if the record had failed (fsck flags it as stale when the sizes
     * differ, and --repair recomputes it). */
    if ((rv = publish_sync_dir(s->dir)) != 0)
        return mirrordav_errno_error(s->p, APR_FROM_OS_ERROR(-rv),
                                     "Could not sync the directory");
    mirrordav_record_receipt_digests(r, info->path, &st,
                                     recorded_hex(s, DIGEST_SHA1, hex),
                                     recorded_hex(s, DIGEST_SHA256, hex256),
                                     recorded_hex(s, DIGEST_MD5, hexmd5));
    if (have_mtime)
        apr_table_setn(r->headers_out, "X-OC-Mtime", "accepted");
    return NULL;
}
