/*
 * RFC 4331 quota: the live properties DAV:quota-available-bytes and
 * DAV:quota-used-bytes on every collection of the live tree, the optional
 * per-volume limit `MirrorDAVQuota BYTES`, and the accounting that keeps
 * the volume's usage counter (sidecar/usage.h: what "used" means, its
 * locking and its durability) in step with every write that changes the
 * live tree's size.
 *
 * The quota is per volume, so every collection reports the volume's
 * figures (RFC 4331 section 4 lets "used" cover the set of resources
 * that share the quota).  used is the counter; available is what the
 * file system gives the server's user (statvfs f_bavail), capped by
 * limit - used when a limit is set.  Both are answered only when a
 * PROPFIND names them, never for allprop (RFC 4331 section 3); rclone
 * `about`, Windows and Finder name them.
 *
 * A write that would take the volume past the limit gets 507 naming the
 * limit, and changes nothing.  Shrinking is always allowed.  The final
 * check and the size change happen under the counter's lock (usage.h),
 * so concurrent writers cannot together pass the limit; the checks
 * before that (Content-Length, bytes streamed) only refuse early.
 *
 * The counter is missing on a volume made before it existed: server
 * start recounts it then (recovery.c).  A counter that is unreadable
 * (torn by a crash) is unknown: quota-used-bytes is not answered, and
 * with a limit set every write that grows the volume is refused (507
 * naming the cause) until `mirrordav fsck --repair` recounts; without a
 * limit writes go on and the counter stays unknown.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "apr_lib.h"
#include "apr_strings.h"
#include "mirrordav.h"
#include "sidecar/usage.h"

enum { PROPID_available = 1, PROPID_used };

static const char *const namespace_uris[] = {"DAV:", NULL};

static const dav_liveprop_spec props[] = {
    {0, "quota-available-bytes", PROPID_available, 0},
    {0, "quota-used-bytes", PROPID_used, 0},
    {0, NULL, 0, 0},
};

static const dav_hooks_liveprop hooks_liveprop;

static const dav_liveprop_group group = {props, namespace_uris,
                                         &hooks_liveprop};

const char *mirrordav_quota_parse(const char *arg, apr_off_t *limit)
{
    static const char *const err =
        "MirrorDAVQuota takes a byte count with an optional K, M, G or T "
        "suffix (powers of 1024), or none";
    apr_off_t v, mult = 1;
    char *end;

    if (!strcasecmp(arg, "none")) {
        *limit = 0;
        return NULL;
    }
    if (!apr_isdigit(*arg) || apr_strtoff(&v, arg, &end, 10) != APR_SUCCESS)
        return err;
    switch (apr_toupper(*end)) {
    case '\0':
        break;
    case 'K':
        mult = 1024;
        break;
    case 'M':
        mult = 1024 * 1024;
        break;
    case 'G':
        mult = 1024 * 1024 * 1024;
        break;
    case 'T':
        mult = (apr_off_t)1024 * 1024 * 1024 * 1024;
        break;
    default:
        return err;
    }
    if (*end && end[1])
        return err;
    if (v < 0 || v > APR_INT64_MAX / mult)
        return "MirrorDAVQuota: too large";
    *limit = v * mult;
    return NULL;
}

/* The limit in bytes, 0 for none. */
static apr_uint64_t limit_of(const mirrordav_conf *conf)
{
    return conf->quota > 0 ? (apr_uint64_t)conf->quota : 0;
}

static int accounted(const mirrordav_conf *conf)
{
    return conf->snapshots != 1 && conf->state != NULL;
}

static dav_error *over_limit(apr_pool_t *p, const mirrordav_conf *conf,
                             const char *what, apr_uint64_t used,
                             apr_uint64_t want)
{
    apr_uint64_t limit = limit_of(conf);

    return mirrordav_error(
        p, HTTP_INSUFFICIENT_STORAGE, 0,
        apr_psprintf(p,
                     "%s would exceed the volume's quota (MirrorDAVQuota "
                     "%" APR_UINT64_T_FMT " bytes: %" APR_UINT64_T_FMT
                     " used, %" APR_UINT64_T_FMT " left, %" APR_UINT64_T_FMT
                     " more needed).",
                     what, limit, used, used < limit ? limit - used : 0,
                     want));
}

static dav_error *unknown_usage(apr_pool_t *p)
{
    return mirrordav_error(p, HTTP_INSUFFICIENT_STORAGE, 0,
                           "The volume's usage counter (state/" USAGE_FILE
                           ") is missing or unreadable, so MirrorDAVQuota "
                           "cannot be enforced; mirrordav fsck --repair "
                           "recounts it.");
}

/* Whether growing the volume (known counter USED) by GROWTH bytes stays
 * within the limit. */
static int fits(const mirrordav_conf *conf, apr_uint64_t used,
                apr_uint64_t growth)
{
    apr_uint64_t limit = limit_of(conf);

    return !limit || growth == 0 || (used <= limit && growth <= limit - used);
}

static apr_uint64_t regular_size(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0 && S_ISREG(st.st_mode)
               ? (apr_uint64_t)st.st_size
               : 0;
}

/* usage_end, logging a failure: the write itself has happened. */
static void end_txn(request_rec *r, const mirrordav_conf *conf, usage_txn *t,
                    apr_int64_t delta)
{
    int rc = usage_end(t, delta);

    if (rc && r)
        ap_log_rerror(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(-rc), r,
                      "could not update the usage counter in %s; "
                      "mirrordav fsck --repair recounts it",
                      conf->state);
}

static apr_status_t txn_cleanup(void *data)
{
    usage_end(data, 0);
    return APR_SUCCESS;
}

/* Takes the counter's lock for the rest of a change (released by
 * end_txn, or by the pool's cleanup if the request dies first: T must
 * live as long as P). */
static dav_error *begin_txn(apr_pool_t *p, const mirrordav_conf *conf,
                            usage_txn *t)
{
    int rc = usage_begin(conf->state, t);

    if (rc)
        return mirrordav_errno_error(p, APR_FROM_OS_ERROR(-rc),
                                     "Could not lock the usage counter");
    apr_pool_cleanup_register(p, t, txn_cleanup, apr_pool_cleanup_null);
    return NULL;
}

/* ------------------------------------------------------------------ PUT */

struct mirrordav_quota_put {
    request_rec *r;
    const mirrordav_conf *conf;
    const char *path;
    apr_off_t allow; /* bytes the body may have; -1: no limit */
    apr_uint64_t old;
    apr_uint64_t size;
    usage_txn txn;
};

/* A decimal byte count, or -1. */
static apr_off_t header_length(request_rec *r, const char *name)
{
    const char *v = apr_table_get(r->headers_in, name);
    apr_off_t n;
    char *end;

    if (!v || !apr_isdigit(*v) ||
        apr_strtoff(&n, v, &end, 10) != APR_SUCCESS || *end)
        return -1;
    return n;
}

dav_error *mirrordav_quota_put_open(request_rec *r, const mirrordav_conf *conf,
                                    const char *path, int gzip,
                                    mirrordav_quota_put **qp)
{
    mirrordav_quota_put *q = apr_pcalloc(r->pool, sizeof(*q));
    apr_uint64_t used, limit = limit_of(conf);
    apr_off_t expect;
    int rc;

    q->r = r;
    q->conf = conf;
    q->path = path;
    q->allow = -1;
    q->txn.lock_fd = q->txn.fd = -1;
    *qp = q;
    if (!limit || !accounted(conf))
        return NULL;
    /* Without the lock: this only refuses early; put_lock decides. */
    if ((rc = usage_read(conf->state, &used)) != 0)
        return unknown_usage(r->pool);
    q->old = regular_size(path);
    q->allow =
        used > limit ? (apr_off_t)q->old : (apr_off_t)(limit - used + q->old);
    /* The stored size is known before the body when it is not encoded:
     * Content-Length, or what Finder announces with its chunked body. */
    expect = gzip ? -1 : header_length(r, "Content-Length");
    if (expect < 0 && !gzip)
        expect = header_length(r, "X-Expected-Entity-Length");
    if (expect > q->allow) {
        /* Refused before the body is read: httpd would read and discard
         * all of it to keep the connection; closing it skips that. */
        r->connection->keepalive = AP_CONN_CLOSE;
        return over_limit(r->pool, conf, "This upload", used,
                          (apr_uint64_t)expect - q->old);
    }
    return NULL;
}

dav_error *mirrordav_quota_put_check(mirrordav_quota_put *q, apr_off_t total)
{
    apr_uint64_t used = 0;

    if (!q || q->allow < 0 || total <= q->allow)
        return NULL;
    usage_read(q->conf->state, &used);
    return over_limit(q->r->pool, q->conf, "This upload", used,
                      (apr_uint64_t)total - q->old);
}

dav_error *mirrordav_quota_put_lock(mirrordav_quota_put *q, apr_off_t size)
{
    dav_error *err;

    if (!q || !accounted(q->conf))
        return NULL;
    if ((err = begin_txn(q->r->pool, q->conf, &q->txn)) != NULL)
        return err;
    q->old = regular_size(q->path); /* what the publication replaces */
    q->size = (apr_uint64_t)size;
    if (limit_of(q->conf) && q->size > q->old) {
        if (!q->txn.known)
            err = unknown_usage(q->r->pool);
        else if (!fits(q->conf, q->txn.used, q->size - q->old))
            err = over_limit(q->r->pool, q->conf, "This upload", q->txn.used,
                             q->size - q->old);
        if (err) {
            usage_end(&q->txn, 0);
            return err;
        }
    }
    return NULL;
}

void mirrordav_quota_put_unlock(mirrordav_quota_put *q, int published)
{
    if (!q || q->txn.lock_fd < 0)
        return;
    end_txn(q->r, q->conf, &q->txn,
            published ? (apr_int64_t)q->size - (apr_int64_t)q->old : 0);
}

/* ---------------------------------------------------------- PATCH-APPLY */

typedef struct {
    const mirrordav_conf *conf;
    const char *path;
    struct stat old;
    apr_int64_t delta;
} charge;

/* The request is over: if the file is still the old one (same inode and
 * size), the change did not happen and the charge is given back. */
static apr_status_t refund(void *data)
{
    charge *c = data;
    struct stat st;
    usage_txn t;

    if (lstat(c->path, &st) != 0 || st.st_ino != c->old.st_ino ||
        st.st_size != c->old.st_size)
        return APR_SUCCESS;
    if (usage_begin(c->conf->state, &t) == 0)
        usage_end(&t, -c->delta);
    return APR_SUCCESS;
}

dav_error *mirrordav_quota_charge(request_rec *r, const mirrordav_conf *conf,
                                  const char *path, const struct stat *old,
                                  apr_uint64_t new_size)
{
    apr_int64_t delta = (apr_int64_t)new_size - (apr_int64_t)old->st_size;
    usage_txn *t; /* in the pool, as its cleanup refers to it */
    charge *c;
    dav_error *err;

    if (!accounted(conf) || delta == 0)
        return NULL;
    t = apr_palloc(r->pool, sizeof(*t));
    if ((err = begin_txn(r->pool, conf, t)) != NULL)
        return err;
    if (limit_of(conf) && delta > 0) {
        if (!t->known)
            err = unknown_usage(r->pool);
        else if (!fits(conf, t->used, (apr_uint64_t)delta))
            err = over_limit(r->pool, conf, "This patch", t->used,
                             (apr_uint64_t)delta);
        if (err) {
            usage_end(t, 0);
            return err;
        }
    }
    /* Charged before the change: a crash in between leaves the counter
     * high by DELTA (it refuses early rather than late); fsck recounts. */
    end_txn(r, conf, t, delta);
    c = apr_palloc(r->pool, sizeof(*c));
    c->conf = conf;
    c->path = path;
    c->old = *old;
    c->delta = delta;
    apr_pool_cleanup_register(r->pool, c, refund, apr_pool_cleanup_null);
    return NULL;
}

/* ---------------------------------------------------------- COPY staging */

/* A COPY stages its whole tree before the swap, which makes the final
 * check (swap_begin, under the lock).  Refusing only there would let a
 * copy past the limit fill the disk with a staged tree, and keep the
 * client waiting for all of it, to be told no.  So the staging counts
 * each file before it copies it and stops as soon as the staged bytes
 * could not fit even if the swap replaced the whole destination:
 * staged > limit - used + the destination's tree.  That only ever
 * refuses what the swap would refuse (counted at that moment; other
 * writers may change it either way meanwhile); the swap stays the
 * authority.  The destination is walked only once the cheaper bound
 * limit - used is passed, so a copy that fits costs no walk. */
struct mirrordav_quota_copy {
    request_rec *r;
    const mirrordav_conf *conf;
    const char *to;
    int replace;
    apr_uint64_t staged; /* bytes of regular files staged so far */
    apr_uint64_t allow;  /* staged bytes known to be allowed */
    dav_error *err;      /* the refusal, once made (in the request pool) */
};

/* Whether STAGED bytes could still fit; recomputes the bound from the
 * counter and the destination when it is passed.  WHAT names the copy in
 * the refusal (a tree's need is counted only as far as it was staged). */
static dav_error *check_staged(mirrordav_quota_copy *q, apr_uint64_t staged,
                               const char *what)
{
    apr_uint64_t used, dest = 0, limit = limit_of(q->conf);
    int rc;

    if (staged <= q->allow)
        return NULL;
    if (usage_read(q->conf->state, &used) != 0) {
        q->allow = UINT64_MAX; /* unknown: the swap refuses, naming it */
        return NULL;
    }
    if (q->replace && (rc = usage_tree_bytes(q->to, &dest)) != 0 &&
        rc != -ENOENT) {
        q->allow = UINT64_MAX; /* unmeasured: left to the swap */
        return NULL;
    }
    q->allow = (used < limit ? limit - used : 0) + dest;
    if (staged <= q->allow)
        return NULL;
    q->err = over_limit(q->r->pool, q->conf, what, used, staged - dest);
    return q->err;
}

dav_error *mirrordav_quota_copy_begin(request_rec *r,
                                      const mirrordav_conf *conf,
                                      const char *from, int from_dir,
                                      const char *to, int replace,
                                      mirrordav_quota_copy **qp)
{
    mirrordav_quota_copy *q;
    apr_uint64_t used, limit = limit_of(conf);

    *qp = NULL;
    /* Without a limit nothing is refused; with an unknown counter the
     * swap refuses every growth, naming the cause. */
    if (!limit || !accounted(conf) || usage_read(conf->state, &used) != 0)
        return NULL;
    q = apr_pcalloc(r->pool, sizeof(*q));
    q->r = r;
    q->conf = conf;
    q->to = to;
    q->replace = replace;
    q->allow = used < limit ? limit - used : 0;
    *qp = q;
    /* One file: refused before even the staging folder is made.  Its
     * bytes are counted again (and pass) when copy_file stages them. */
    return from_dir ? NULL : check_staged(q, regular_size(from), "This copy");
}

dav_error *mirrordav_quota_copy_add(mirrordav_quota_copy *q, apr_off_t bytes)
{
    if (!q || bytes <= 0)
        return q ? q->err : NULL;
    q->staged += (apr_uint64_t)bytes;
    return check_staged(q, q->staged,
                        "This copy, counted as far as it was staged,");
}

dav_error *mirrordav_quota_copy_refused(const mirrordav_quota_copy *q)
{
    return q ? q->err : NULL;
}

/* ------------------------------------------------------------ COPY/MOVE */

struct mirrordav_quota_swap {
    request_rec *r;
    const mirrordav_conf *conf;
    apr_int64_t delta;
    usage_txn txn;
};

dav_error *mirrordav_quota_swap_begin(request_rec *r,
                                      const mirrordav_conf *conf,
                                      const char *from, const char *to,
                                      int move, int replace,
                                      mirrordav_quota_swap **qp)
{
    mirrordav_quota_swap *q = apr_pcalloc(r->pool, sizeof(*q));
    apr_uint64_t added = 0, removed = 0;
    dav_error *err;
    int rc;

    q->r = r;
    q->conf = conf;
    q->txn.lock_fd = q->txn.fd = -1;
    *qp = q;
    if (!accounted(conf))
        return NULL;
    /* A COPY adds its staged tree (out of the live tree's count until
     * the swap: it is in .mirrordav/); a MOVE within the volume adds
     * nothing.  Walked before the lock: nobody else writes there. */
    if (!move && (rc = usage_tree_bytes(from, &added)) != 0)
        return mirrordav_errno_error(r->pool, APR_FROM_OS_ERROR(-rc),
                                     "Could not measure the copy");
    if ((err = begin_txn(r->pool, conf, &q->txn)) != NULL)
        return err;
    /* The tree an Overwrite replaces leaves the count; walked under the
     * lock, so no write into it is missed. */
    if (replace && (rc = usage_tree_bytes(to, &removed)) != 0 &&
        rc != -ENOENT) {
        usage_end(&q->txn, 0);
        return mirrordav_errno_error(r->pool, APR_FROM_OS_ERROR(-rc),
                                     "Could not measure the destination");
    }
    q->delta = (apr_int64_t)added - (apr_int64_t)removed;
    if (limit_of(conf) && q->delta > 0) {
        if (!q->txn.known)
            err = unknown_usage(r->pool);
        else if (!fits(conf, q->txn.used, (apr_uint64_t)q->delta))
            err = over_limit(r->pool, conf, "This copy", q->txn.used,
                             (apr_uint64_t)q->delta);
        if (err) {
            usage_end(&q->txn, 0);
            return err;
        }
    }
    return NULL;
}

void mirrordav_quota_swap_end(mirrordav_quota_swap *q, int swapped)
{
    if (!q || q->txn.lock_fd < 0)
        return;
    end_txn(q->r, q->conf, &q->txn, swapped ? q->delta : 0);
}

/* --------------------------------------------------------------- DELETE */

int mirrordav_quota_unlink(const mirrordav_conf *conf, const char *path)
{
    usage_txn t;
    apr_uint64_t size;
    int rc, e;

    if (!accounted(conf) || usage_begin(conf->state, &t) != 0)
        return unlink(path); /* counted by the next recount */
    size = regular_size(path);
    rc = unlink(path);
    e = errno;
    usage_end(&t, rc == 0 ? -(apr_int64_t)size : 0);
    errno = e;
    return rc;
}

/* ------------------------------------------------------ live properties */

static dav_prop_insert insert_prop(const dav_resource *resource, int propid,
                                   dav_prop_insert what, apr_text_header *phdr)
{
    const mirrordav_conf *conf;
    apr_pool_t *p = resource->pool;
    const dav_liveprop_spec *info;
    apr_uint64_t used = 0, limit, avail;
    const char *value = NULL, *qname;
    struct statvfs vfs;
    int global_ns, known;

    if (resource->hooks != &mirrordav_hooks_repository || !resource->exists ||
        !resource->collection)
        return DAV_PROP_INSERT_NOTDEF;
    conf = resource->info->conf;
    if (!accounted(conf))
        return DAV_PROP_INSERT_NOTDEF;
    if (what == DAV_PROP_INSERT_VALUE) {
        known = usage_read(conf->state, &used) == 0;
        limit = limit_of(conf);
        if (propid == PROPID_used) {
            if (!known)
                return DAV_PROP_INSERT_NOTDEF; /* unknown until recounted */
            value = apr_psprintf(p, "%" APR_UINT64_T_FMT, used);
        }
        else {
            if (statvfs(conf->live, &vfs) != 0)
                return DAV_PROP_INSERT_NOTDEF;
            avail = (apr_uint64_t)vfs.f_bavail * vfs.f_frsize;
            if (limit) {
                /* With the usage unknown, writes that grow the volume are
                 * refused: nothing is available. */
                apr_uint64_t left = known && used < limit ? limit - used : 0;
                if (left < avail)
                    avail = left;
            }
            value = apr_psprintf(p, "%" APR_UINT64_T_FMT, avail);
        }
    }
    global_ns = dav_get_liveprop_info(propid, &group, &info);
    qname =
        apr_pstrcat(p, "lp", apr_itoa(p, global_ns), ":", info->name, NULL);
    if (what == DAV_PROP_INSERT_SUPPORTED)
        apr_text_append(
            p, phdr,
            apr_psprintf(p,
                         "<D:supported-live-property D:name=\"%s\" "
                         "D:namespace=\"DAV:\"/>" DEBUG_CR,
                         info->name));
    else if (what == DAV_PROP_INSERT_VALUE)
        apr_text_append(p, phdr,
                        apr_pstrcat(p, "<", qname, ">", value, "</", qname,
                                    ">" DEBUG_CR, NULL));
    else
        apr_text_append(p, phdr,
                        apr_pstrcat(p, "<", qname, "/>" DEBUG_CR, NULL));
    return what;
}

static int is_writable(const dav_resource *resource, int propid)
{
    (void)resource, (void)propid;
    return 0; /* protected (RFC 4331 section 3) */
}

static const dav_hooks_liveprop hooks_liveprop = {
    insert_prop, is_writable, namespace_uris, NULL, NULL, NULL, NULL, NULL,
};

static int find_liveprop(const dav_resource *resource, const char *ns_uri,
                         const char *name, const dav_hooks_liveprop **hooks)
{
    if (resource->hooks != &mirrordav_hooks_repository)
        return 0;
    return dav_do_find_liveprop(ns_uri, name, &group, hooks);
}

/* Never in allprop (RFC 4331 section 3: they may be costly); propname
 * lists them, which costs nothing. */
static void insert_all_liveprops(request_rec *r, const dav_resource *resource,
                                 dav_prop_insert what, apr_text_header *phdr)
{
    (void)r;
    if (what != DAV_PROP_INSERT_NAME)
        return;
    (void)insert_prop(resource, PROPID_available, what, phdr);
    (void)insert_prop(resource, PROPID_used, what, phdr);
}

void mirrordav_register_quota(apr_pool_t *p)
{
    dav_register_liveprop_group(p, &group);
    dav_hook_find_liveprop(find_liveprop, NULL, NULL, APR_HOOK_MIDDLE);
    dav_hook_insert_all_liveprops(insert_all_liveprops, NULL, NULL,
                                  APR_HOOK_MIDDLE);
}
