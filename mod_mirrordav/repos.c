/*
 * The repository: resources of the live tree and the operations on them
 * (lookup, GET delivery, MKCOL, COPY, MOVE, DELETE).  Every change that a
 * client is told about is on disk first: new files are written to a
 * temporary file, fsynced and renamed into place, and the directories
 * they land in are fsynced.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <linux/sockios.h>
#include <sys/stat.h>
#include <unistd.h>

#include "apr_strings.h"
#include "http_protocol.h"
#include "http_request.h"
#include "digest.h"
#include "mirrordav.h"
#include "http_core.h"
#include "sidecar/intent.h"
#include "sidecar/sidecar.h"

static void set_exists(dav_resource *res)
{
    apr_filetype_e t = res->info->finfo.filetype;

    res->exists = t == APR_REG || t == APR_DIR;
    res->collection = t == APR_DIR;
}

static void fill_from_stat(dav_resource *res)
{
    struct stat st;

    if (lstat(res->info->path, &st) == 0)
        mirrordav_stat_to_finfo(&st, &res->info->finfo);
    else {
        memset(&res->info->finfo, 0, sizeof(res->info->finfo));
        res->info->finfo.filetype = APR_NOFILE;
    }
    set_exists(res);
}

dav_resource *mirrordav_new_resource(apr_pool_t *p, request_rec *r,
                                     const mirrordav_conf *conf,
                                     const char *relpath, const char *uri,
                                     const apr_finfo_t *finfo)
{
    dav_resource *res = apr_pcalloc(p, sizeof(*res));
    dav_resource_private *info = apr_pcalloc(p, sizeof(*info));

    info->r = r;
    info->conf = conf;
    info->relpath = relpath;
    info->path =
        *relpath ? apr_pstrcat(p, conf->live, "/", relpath, NULL) : conf->live;
    res->type = DAV_RESOURCE_TYPE_REGULAR;
    res->info = info;
    res->hooks = &mirrordav_hooks_repository;
    res->pool = p;
    res->uri = uri;
    if (finfo) {
        info->finfo = *finfo;
        set_exists(res);
    }
    else
        fill_from_stat(res);
    return res;
}

static dav_error *get_resource(request_rec *r, const char *root_dir,
                               const char *label, int use_checked_in,
                               dav_resource **result)
{
    const mirrordav_conf *conf = mirrordav_get_conf(r);
    const char *relpath, *uri;
    mirrordav_path_status st;
    dav_resource *res;
    apr_size_t len;

    if (!conf->live)
        return mirrordav_error(
            r->pool, HTTP_INTERNAL_SERVER_ERROR, 0,
            "MirrorDAVVolume is not set for this location.");
    st = mirrordav_uri_to_relpath(r->pool, conf->root_uri, r->uri, &relpath);
    if (st == MIRRORDAV_PATH_OK && *relpath)
        st = mirrordav_check_ancestors(r->pool, conf->live, relpath);
    if (st != MIRRORDAV_PATH_OK)
        return mirrordav_error(r->pool, mirrordav_path_http_status(st), 0,
                               mirrordav_path_message(st));
    if (conf->snapshots == 1 && *relpath) {
        /* Only complete snapshots are served (snapshot_space.c). */
        const char *slash = strchr(relpath, '/');
        const char *name =
            slash ? apr_pstrmemdup(r->pool, relpath, slash - relpath)
                  : relpath;
        if (!mirrordav_snapshot_listed(r->pool, conf, name))
            return mirrordav_error(r->pool, HTTP_NOT_FOUND, 0,
                                   "No snapshot of this name.");
    }

    /* mod_dav expects no trailing slash; the walker adds it to members. */
    len = strlen(r->uri);
    uri = len > 1 && r->uri[len - 1] == '/'
              ? apr_pstrmemdup(r->pool, r->uri, len - 1)
              : r->uri;
    /* Every request resolves its resource here first: the sidecar
     * library follows the location's durability from now on. */
    sidecar_set_durable(mirrordav_fsync_enabled(conf));
    res = mirrordav_new_resource(r->pool, r, conf, relpath, uri, NULL);
    if (res->info->finfo.filetype == APR_UNKFILE)
        return mirrordav_error(r->pool, HTTP_FORBIDDEN, 0,
                               mirrordav_path_message(MIRRORDAV_PATH_SYMLINK));
    *result = res;
    return NULL;
}

static dav_error *get_parent_resource(const dav_resource *resource,
                                      dav_resource **parent)
{
    dav_resource_private *info = resource->info;
    const char *uri;

    if (!*info->relpath) {
        *parent = NULL;
        return NULL;
    }
    uri = mirrordav_dirname(resource->pool, resource->uri);
    *parent = mirrordav_new_resource(
        resource->pool, info->r, info->conf,
        mirrordav_dirname(resource->pool, info->relpath), *uri ? uri : "/",
        NULL);
    return NULL;
}

static int is_same_resource(const dav_resource *a, const dav_resource *b)
{
    return a->hooks == b->hooks && strcmp(a->info->path, b->info->path) == 0;
}

static int is_parent_resource(const dav_resource *parent,
                              const dav_resource *child)
{
    apr_size_t n = strlen(parent->info->path);

    return parent->hooks == child->hooks &&
           strncmp(parent->info->path, child->info->path, n) == 0 &&
           child->info->path[n] == '/';
}

static dav_error *set_headers(request_rec *r, const dav_resource *resource)
{
    const apr_finfo_t *fi = &resource->info->finfo;

    if (!resource->exists)
        return NULL;
    if (mirrordav_browser_set_headers(r, resource))
        return NULL; /* a page: made per request, no validators */
    ap_update_mtime(r, fi->mtime);
    ap_set_last_modified(r);
    apr_table_setn(r->headers_out, "ETag", mirrordav_etag(resource));
    if (resource->collection) {
        ap_set_content_type(r, "text/html; charset=utf-8");
        return NULL;
    }
    if (mirrordav_passive_enabled(resource->info->conf)) {
        /* Stored files are data, never pages of this site: an uploaded
         * .html opened by an admin must not run with the admin's
         * credentials, nor anything be sniffed into HTML.  (The module's
         * own pages have their own policy: browser.c.) */
        apr_table_setn(r->headers_out, "Content-Security-Policy", "sandbox");
        apr_table_setn(r->headers_out, "X-Content-Type-Options", "nosniff");
    }
    apr_table_setn(r->headers_out, "Accept-Ranges", "bytes");
    mirrordav_digest_response(r, resource); /* Want-Repr-Digest */
    ap_set_content_length(r, fi->size);
    if (!r->content_type)
        ap_set_content_type(r, "application/octet-stream");
    return NULL;
}

/* sendfile(2) hands the file's pages to TCP by reference: bytes not yet
 * acknowledged by the peer are read from the page cache when they are
 * (re)transmitted, so a write into the file after the call returned could
 * still reach this client.  The shared lock is therefore kept until the
 * socket's send queue is empty (SIOCOUTQ: unsent plus unacknowledged),
 * or the server's Timeout has passed (a client that stalls that long may
 * then see a later version's bytes at the end). */
static void wait_sent(request_rec *r)
{
    apr_socket_t *sock = ap_get_conn_socket(r->connection);
    apr_interval_time_t waited = 0, step = 1000;
    apr_os_sock_t sfd;
    int queued;

    if (!sock || apr_os_sock_get(&sfd, sock) != APR_SUCCESS)
        return;
    while (ioctl(sfd, SIOCOUTQ, &queued) == 0 && queued > 0 &&
           waited < r->server->timeout) {
        apr_sleep(step);
        waited += step;
        if (step < 50000)
            step *= 2;
    }
}

static dav_error *deliver(const dav_resource *resource, ap_filter_t *output)
{
    apr_pool_t *p = resource->pool;
    request_rec *r = resource->info->r;
    apr_bucket_brigade *bb;
    apr_file_t *fd;
    apr_os_file_t osfd = -1;
    apr_off_t size = resource->info->finfo.size;
    apr_status_t rv;

    if (mirrordav_browser_page(resource))
        return mirrordav_browser_deliver(resource, output);

    rv = apr_file_open(&fd, resource->info->path,
                       APR_FOPEN_READ | APR_FOPEN_BINARY |
                           APR_FOPEN_SENDFILE_ENABLED,
                       APR_OS_DEFAULT, p);
    if (rv != APR_SUCCESS)
        return mirrordav_errno_error(p, rv, "Could not open the file");

    /* Shared with other readers, exclusive with PATCH-APPLY's in-place
     * phase (sidecar/patchlog.c): the bytes sent are one version.  The
     * FLUSH makes the core write everything before the pass returns (no
     * write completion after the lock is gone); the lock goes with the
     * descriptor, when the request's pool is destroyed at the latest. */
    if (apr_os_file_get(&osfd, fd) == APR_SUCCESS) {
        struct stat st;

        while (flock(osfd, LOCK_SH) != 0 && errno == EINTR)
            ;
        /* A patch applied in place before the lock was had may have
         * changed the size; no header has been sent yet. */
        if (fstat(osfd, &st) == 0 && st.st_size != size) {
            size = st.st_size;
            ap_set_content_length(r, size);
        }
    }
    /* A file bucket lets the core output filter use sendfile, and the
     * byterange filter cut ranges without reading the data. */
    bb = apr_brigade_create(p, output->c->bucket_alloc);
    apr_brigade_insert_file(bb, fd, 0, size, p);
    APR_BRIGADE_INSERT_TAIL(bb,
                            apr_bucket_flush_create(output->c->bucket_alloc));
    APR_BRIGADE_INSERT_TAIL(bb,
                            apr_bucket_eos_create(output->c->bucket_alloc));
    rv = ap_pass_brigade(output, bb);
    if (osfd >= 0) {
        wait_sent(r);
        flock(osfd, LOCK_UN);
    }
    if (rv != APR_SUCCESS)
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, rv, r,
                      "delivery of %s ended early", resource->uri);
    return NULL;
}

static dav_error *create_collection(dav_resource *resource)
{
    dav_resource_private *info = resource->info;
    apr_pool_t *p = resource->pool;

    if (mkdir(info->path, 0755) != 0) {
        int e = errno;
        if (e == ENOENT || e == ENOTDIR)
            return mirrordav_error(p, HTTP_CONFLICT, 0,
                                   "The parent collection does not exist.");
        if (e == EEXIST)
            return mirrordav_error(p, HTTP_METHOD_NOT_ALLOWED, 0,
                                   "A resource already exists at this URI.");
        return mirrordav_errno_error(p, APR_FROM_OS_ERROR(e),
                                     "Could not create the collection");
    }
    if (mirrordav_fsync_enabled(info->conf)) {
        dav_error *err =
            mirrordav_fsync_dir(p, mirrordav_dirname(p, info->path));
        if (err)
            return err;
    }
    fill_from_stat(resource);
    return NULL;
}

/* ---------------------------------------------------------------- copy */

/* RFC 4918 9.8.5 / 9.9.4: a COPY or MOVE into a missing collection. */
static dav_error *no_destination_parent(apr_pool_t *p)
{
    return mirrordav_error(p, HTTP_CONFLICT, 0,
                           "The destination's parent collection does not "
                           "exist.");
}

/* Copies one regular file into place as a new file (publish.c), keeping
 * the source's mode and mtime: a restore from a snapshot must bring the
 * original time back.  ID gets, for sidecar_rebind_copy, the source's
 * fstat before and after reading it and the copy's once published. */
static dav_error *copy_file(apr_pool_t *p, const mirrordav_conf *conf,
                            const char *src, const char *dst,
                            struct stat id[3], mirrordav_quota_copy *q)
{
    const char *ddir = mirrordav_dirname(p, dst);
    mirrordav_newfile out = {-1, NULL};
    struct timespec times[2];
    struct stat st;
    off_t left;
    int in, e;

    if (sidecar_ensure_dir(ddir) != 0) {
        e = errno ? errno : EIO;
        if (e == ENOENT || e == ENOTDIR)
            return no_destination_parent(p);
        return mirrordav_errno_error(p, APR_FROM_OS_ERROR(e),
                                     "Could not prepare the destination");
    }
    in = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (in < 0 || fstat(in, &st) != 0) {
        e = errno;
        goto fail;
    }
    /* Counted before a byte of it is staged (quota.c). */
    if (mirrordav_quota_copy_add(q, st.st_size)) {
        close(in);
        return mirrordav_quota_copy_refused(q);
    }
    if ((e = mirrordav_newfile_open(p, ddir, &out)) != 0)
        goto fail;
    for (left = st.st_size; left > 0;) {
        ssize_t n = copy_file_range(in, NULL, out.fd, NULL,
                                    left > (1 << 30) ? (1 << 30) : left, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            e = n < 0 ? errno : EIO;
            goto fail;
        }
        left -= n;
    }
    times[0] = st.st_atim;
    times[1] = st.st_mtim;
    if (fchmod(out.fd, st.st_mode & 07777) != 0 ||
        futimens(out.fd, times) != 0 ||
        (mirrordav_fsync_enabled(conf) && fsync(out.fd) != 0)) {
        e = errno;
        goto fail;
    }
    if ((e = mirrordav_newfile_publish(p, &out, ddir, dst)) != 0)
        goto fail;
    id[0] = st;
    if (fstat(in, &id[1]) != 0 || fstat(out.fd, &id[2]) != 0)
        memset(id, 0, 3 * sizeof(*id)); /* matches no record */
    mirrordav_newfile_discard(&out);    /* closes it; nothing left to remove */
    close(in);
    if (mirrordav_fsync_enabled(conf))
        return mirrordav_fsync_dir(p, ddir);
    return NULL;

fail:
    if (in >= 0)
        close(in);
    mirrordav_newfile_discard(&out);
    return mirrordav_errno_error(p, APR_FROM_OS_ERROR(e),
                                 "Could not copy the file");
}

/* The Multi-Status keeps what it is given until the response is sent:
 * everything is copied into RP, the request's pool, never left in the
 * per-member pools that the walks clear. */
static void add_response(apr_pool_t *rp, dav_response **response,
                         const char *href, const dav_error *err)
{
    dav_response *resp = apr_pcalloc(rp, sizeof(*resp));

    resp->href = apr_pstrdup(rp, href);
    resp->status = err->status;
    resp->desc = err->desc ? apr_pstrdup(rp, err->desc) : NULL;
    resp->next = *response;
    *response = resp;
}

static int carry_sidecar(int (*op)(const char *, const char *, const char *,
                                   const char *),
                         apr_pool_t *p, const char *src, const char *dst)
{
    return op(mirrordav_dirname(p, src), mirrordav_basename(src),
              mirrordav_dirname(p, dst), mirrordav_basename(dst));
}

/*
 * One served entry of an open directory at a time: the walks below read
 * a directory piece by piece, as mod_dav_fs does, so that a folder of
 * 100 000 files costs one readdir buffer per level, not a list of names.
 * Returns 1 with *NAME and *ST set, 0 at the end, -1 with errno on error.
 */
static int next_entry(DIR *d, const char **name, struct stat *st)
{
    struct dirent *de;

    while ((errno = 0, de = readdir(d)) != NULL) {
        const char *n = de->d_name;

        if ((n[0] == '.' && (n[1] == '\0' || (n[1] == '.' && n[2] == '\0'))) ||
            sidecar_is_reserved_name(n))
            continue;
        if (fstatat(dirfd(d), n, st, AT_SYMLINK_NOFOLLOW) != 0)
            continue; /* vanished since readdir */
        if (!S_ISREG(st->st_mode) && !S_ISDIR(st->st_mode))
            continue; /* symlinks and special files are not served */
        *name = n;
        return 1;
    }
    return errno ? -1 : 0;
}

/* A restore copies from a snapshot, whose files no write path changes
 * (they are read-only and copy-on-write), but whose shared inodes see
 * their ctime move when the live tree replaces or links them.  There the
 * record is taken to name the bytes when inode, size and mtime match, as
 * the snapshot's own SHA-1 property does (mirrordav_hash_servable): the
 * source's stat in ID gets the record's ctime so that the copy's record
 * is re-bound rather than left unknown. */
static void in_snapshot_identity(apr_pool_t *p, const mirrordav_conf *conf,
                                 const char *src, const char *dst,
                                 struct stat id[3])
{
    const char *snaps = apr_pstrcat(p, conf->volume, "/snapshots/", NULL);
    sidecar_record rec;
    sidecar *sc;

    if (strncmp(src, snaps, strlen(snaps)) != 0 ||
        id[0].st_ino != id[1].st_ino || id[0].st_size != id[1].st_size ||
        id[0].st_mtim.tv_sec != id[1].st_mtim.tv_sec ||
        id[0].st_mtim.tv_nsec != id[1].st_mtim.tv_nsec)
        return;
    /* The staged copy's sidecar holds the source's record. */
    if (sidecar_open(mirrordav_dirname(p, dst), mirrordav_basename(dst), 0,
                     &sc) != 0)
        return;
    if (sidecar_get_record(sc, &rec) == 0 && rec.bound &&
        rec.ino == (uint64_t)id[0].st_ino &&
        rec.size == (uint64_t)id[0].st_size &&
        rec.mtime == (int64_t)id[0].st_mtim.tv_sec &&
        rec.mtime_nsec == (uint32_t)id[0].st_mtim.tv_nsec) {
        id[0].st_ctim.tv_sec = id[1].st_ctim.tv_sec = (time_t)rec.ctime;
        id[0].st_ctim.tv_nsec = id[1].st_ctim.tv_nsec = (long)rec.ctime_nsec;
    }
    sidecar_close(sc);
}

/* Recursive copy.  A member that fails is reported in RESPONSE (kept in
 * RP) and the walk goes on with its siblings, as RFC 4918 section 9.8.8
 * asks, except past the quota (Q), which stops the whole walk; P is this
 * level's scratch pool. */
static dav_error *copy_tree(apr_pool_t *p, apr_pool_t *rp,
                            const mirrordav_conf *conf, const char *src,
                            const char *dst, const char *dst_uri, int depth,
                            int is_dir, dav_response **response,
                            mirrordav_quota_copy *q)
{
    dav_error *err = NULL;

    if (!is_dir) {
        struct stat id[3];

        err = copy_file(p, conf, src, dst, id, q);
        if (!err && carry_sidecar(sidecar_copy, p, src, dst) != 0)
            err = mirrordav_error(p, HTTP_INTERNAL_SERVER_ERROR, 0,
                                  "Could not copy the file's metadata.");
        /* The SHA-1 carries over only if the bytes copied are the ones it
         * names; else it reads unknown at the destination. */
        if (!err) {
            in_snapshot_identity(p, conf, src, dst, id);
            sidecar_rebind_copy(mirrordav_dirname(p, dst),
                                mirrordav_basename(dst), &id[0], &id[1],
                                &id[2]);
        }
        return err;
    }
    if (mkdir(dst, 0755) != 0) {
        int e = errno;
        if (e == ENOENT || e == ENOTDIR)
            return no_destination_parent(p);
        return mirrordav_errno_error(p, APR_FROM_OS_ERROR(e),
                                     "Could not create the collection");
    }
    if (carry_sidecar(sidecar_copy, p, src, dst) != 0)
        return mirrordav_error(p, HTTP_INTERNAL_SERVER_ERROR, 0,
                               "Could not copy the collection's metadata.");
    if (depth != 0) {
        apr_pool_t *iter;
        const char *name;
        struct stat st;
        DIR *d = opendir(src);
        int more;

        if (!d)
            return mirrordav_errno_error(p, APR_FROM_OS_ERROR(errno),
                                         "Could not read the collection");
        apr_pool_create(&iter, p);
        while ((more = next_entry(d, &name, &st)) > 0) {
            const char *s = mirrordav_join(iter, src, name);
            const char *t = mirrordav_join(iter, dst, name);
            const char *u = apr_pstrcat(iter, dst_uri, "/", name, NULL);

            err = copy_tree(iter, rp, conf, s, t, u, depth,
                            S_ISDIR(st.st_mode), response, q);
            if (err && !mirrordav_quota_copy_refused(q))
                add_response(rp, response, u, err);
            err = NULL;
            apr_pool_clear(iter);
            if (mirrordav_quota_copy_refused(q))
                break;
        }
        if (more < 0)
            err = mirrordav_errno_error(p, APR_FROM_OS_ERROR(errno),
                                        "Could not read the collection");
        if (!err)
            err = mirrordav_quota_copy_refused(q);
        closedir(d);
        apr_pool_destroy(iter);
        if (err)
            return err;
    }
    if (mirrordav_fsync_enabled(conf))
        return mirrordav_fsync_dir(p, mirrordav_dirname(p, dst));
    return NULL;
}

/* An error from the intent library (a negative errno) as a response. */
static dav_error *intent_error(apr_pool_t *p, int rc, const char *what)
{
    return mirrordav_errno_error(p, APR_FROM_OS_ERROR(-rc), what);
}

/* The staging folder goes into the destination's parent: it must be a
 * collection (409 otherwise, RFC 4918 9.8.5 / 9.9.4). */
static dav_error *check_destination_parent(const dav_resource *dst)
{
    struct stat st;

    if (lstat(mirrordav_dirname(dst->pool, dst->info->path), &st) != 0 ||
        !S_ISDIR(st.st_mode))
        return no_destination_parent(dst->pool);
    return NULL;
}

/*
 * The swap that publishes a staged tree (COPY) or the source (MOVE) at
 * DST in one rename.  With Overwrite (mod_dav called remove_resource on
 * DST first, see set_replace) the old destination is exchanged with it,
 * so that DST is never missing or half-made; without, the name must still
 * be free.  IN's record must be in phase SWAP (durable) before this.
 */
static dav_error *swap_in(dav_resource *dst, intent *in, const char *from)
{
    apr_pool_t *p = dst->pool;
    struct stat st;
    int exists = lstat(dst->info->path, &st) == 0;
    unsigned int flags =
        exists && dst->info->replace ? RENAME_EXCHANGE : RENAME_NOREPLACE;
    mirrordav_quota_swap *q;
    dav_error *err;
    int rc;

    /* The quota is checked and the size change counted under the usage
     * counter's lock, around the one rename that changes the tree. */
    if ((err = mirrordav_quota_swap_begin(dst->info->r, dst->info->conf, from,
                                          dst->info->path, in->move,
                                          flags == RENAME_EXCHANGE, &q)))
        return err;
    rc = renameat2(AT_FDCWD, from, AT_FDCWD, dst->info->path, flags);
    mirrordav_quota_swap_end(q, rc == 0);
    if (rc == 0)
        return NULL;
    if (errno == EEXIST)
        return mirrordav_error(p, HTTP_PRECONDITION_FAILED, 0,
                               "The destination was created meanwhile.");
    if (errno == ENOENT || errno == ENOTDIR)
        return no_destination_parent(p);
    return mirrordav_errno_error(p, APR_FROM_OS_ERROR(errno),
                                 "Could not put the new tree in place");
}

/* Fills what the record needs before the swap: the inode of the tree
 * being swapped in (to tell later whether the swap happened), the old
 * destination's, and whether an entry sidecar was staged. */
static int prepare_swap(intent *in, const char *from, const char *name)
{
    char sc[PATH_MAX];
    struct stat st;

    if (lstat(from, &st) != 0)
        return -errno;
    in->new_ino = st.st_ino;
    in->old_ino = lstat(in->dst, &st) == 0 ? (uint64_t)st.st_ino : 0;
    if (sidecar_path(in->stage, name, sc, sizeof(sc)) != 0)
        return -ENAMETOOLONG;
    in->newdb = access(sc, F_OK) == 0;
    return intent_ready(in);
}

/* After the swap: the client is answered from here on, whatever the
 * clean-up of the old tree does (the record keeps it for recovery). */
static dav_error *finish_swap(dav_resource *dst, intent *in)
{
    int rc = intent_finish(in);

    intent_release(in);
    if (!rc)
        return NULL;
    if (in->phase == INTENT_CLEANUP) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, APR_FROM_OS_ERROR(-rc),
                      dst->info->r,
                      "the replaced tree in %s could not be removed "
                      "entirely; mirrordav fsck reports it (%s)",
                      in->stage, in->file);
        return NULL;
    }
    return mirrordav_errno_error(
        dst->pool, APR_FROM_OS_ERROR(-rc),
        "The new tree is in place but its metadata could not be; the "
        "server completes it at its next start (mirrordav fsck --repair "
        "does too)");
}

/* The swap renamed the entry, which moves its ctime: the record carried
 * to DPATH still names the same bytes if it named them as they were at
 * BEFORE (lstat of the entry just before the swap), so it is re-bound to
 * them.  Members inside a swapped collection keep their ctimes: only the
 * collection itself was renamed. */
static void rebind_swapped(apr_pool_t *p, const struct stat *before,
                           const char *dpath)
{
    struct stat after;

    if (lstat(dpath, &after) == 0)
        sidecar_rebind(mirrordav_dirname(p, dpath), mirrordav_basename(dpath),
                       before, &after);
}

/* A COPY that failed before its swap: says that the destination is as it
 * was. */
static dav_error *untouched(dav_resource *dst, const dav_error *err)
{
    apr_pool_t *p = dst->pool;

    fill_from_stat(dst);
    return mirrordav_error(
        p,
        err->status == HTTP_MULTI_STATUS ? HTTP_INTERNAL_SERVER_ERROR
                                         : err->status,
        err->aprerr,
        apr_pstrcat(p, err->desc ? err->desc : "Failed.",
                    dst->info->replace ? " The destination was left as it was."
                                       : " Nothing was copied.",
                    NULL));
}

/*
 * COPY: the whole copy is built in a staging folder beside the
 * destination (VOLUME/.../.mirrordav/.stage-*, never served), recorded in
 * an intent (sidecar/intent.h), and swapped in by one rename.  A crash or
 * a failure before the swap leaves the destination as it was and the
 * staged copy disposable; after it, the copy is whole and the old tree is
 * what is disposable.
 */
static dav_error *copy_resource(const dav_resource *src, dav_resource *dst,
                                int depth, dav_response **response)
{
    apr_pool_t *p = dst->pool;
    const mirrordav_conf *conf = dst->info->conf;
    const char *name = mirrordav_basename(dst->info->path);
    const char *staged;
    struct stat before;
    mirrordav_quota_copy *q;
    dav_error *err;
    intent in;
    int rc;

    *response = NULL;
    if (!*dst->info->relpath)
        return mirrordav_error(p, HTTP_FORBIDDEN, 0,
                               "The root of the share cannot be replaced.");
    if ((err = check_destination_parent(dst)) != NULL)
        return err;
    /* Past the quota, refused before or while staging, not at the swap. */
    if ((err = mirrordav_quota_copy_begin(dst->info->r, conf, src->info->path,
                                          src->collection, dst->info->path,
                                          dst->info->replace, &q)))
        return untouched(dst, err);
    rc = intent_begin(&in, conf->state, 0, NULL, dst->info->path,
                      mirrordav_fsync_enabled(conf));
    if (rc)
        return untouched(dst,
                         intent_error(p, rc, "Could not prepare the copy"));
    staged = mirrordav_join(p, in.stage, name);
    err = copy_tree(p, p, conf, src->info->path, staged, dst->uri, depth,
                    src->collection, response, q);
    if (!err && *response) {
        /* A copy is all or nothing, so that no half-copied tree is ever
         * visible: the first failure is reported alone. */
        const dav_response *first = *response;
        while (first->next)
            first = first->next;
        err = mirrordav_error(p, first->status, 0,
                              apr_pstrcat(p, "Could not copy ", first->href,
                                          ": ", first->desc ? first->desc : "",
                                          NULL));
    }
    *response = NULL;
    if (!err && (rc = prepare_swap(&in, staged, name)) != 0)
        err = intent_error(p, rc, "Could not record the copy");
    if (!err && lstat(staged, &before) != 0)
        memset(&before, 0, sizeof(before)); /* matches no record */
    if (!err)
        err = swap_in(dst, &in, staged);
    if (err) {
        if ((rc = intent_abort(&in)) != 0)
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, APR_FROM_OS_ERROR(-rc),
                          dst->info->r,
                          "the staged copy %s could not be removed; "
                          "mirrordav fsck --repair removes it",
                          in.stage);
        intent_release(&in);
        return untouched(dst, err);
    }
    err = finish_swap(dst, &in);
    rebind_swapped(p, &before, dst->info->path);
    fill_from_stat(dst);
    return err;
}

/* ---------------------------------------------------------------- delete */

/* Removes the sidecar folder of collection PATH, with anything left in
 * it (a staging folder of an operation that no longer matters once the
 * collection goes, or a legacy .trash-* folder). */
static dav_error *remove_sidecar_dir(apr_pool_t *p, const char *path)
{
    const char *sc = mirrordav_join(p, path, SIDECAR_DIR);
    int rc = intent_remove_all(sc);

    if (rc)
        return mirrordav_errno_error(p, APR_FROM_OS_ERROR(-rc),
                                     "Could not delete the collection's "
                                     "metadata folder");
    return NULL;
}

/*
 * Removes the entry PATH (a file, or an emptied collection) with its
 * sidecar, never one without the other.  The sidecar is first renamed to
 * a temporary name in its folder (made durable), then the data goes, then
 * the hidden sidecar; if the data cannot go, the sidecar is renamed back
 * and the member reported.  A crash after the first rename leaves the
 * data without its properties (fsck rehashes it) and a temporary file
 * (fsck removes it): never properties waiting for the next entry of that
 * name.  Not under the sidecar lock: a PROPPATCH racing a DELETE of the
 * same entry may leave an orphan, which fsck removes.
 */
static dav_error *remove_entry(apr_pool_t *p, const mirrordav_conf *conf,
                               const char *path, int is_dir)
{
    const char *dir = mirrordav_dirname(p, path);
    const char *hidden = mirrordav_temp_name(p, dir, ".tmp-");
    char db[PATH_MAX];
    int e;

    if (!hidden ||
        sidecar_path(dir, mirrordav_basename(path), db, sizeof(db)) != 0)
        return mirrordav_error(p, HTTP_INTERNAL_SERVER_ERROR, 0,
                               "Could not name the metadata to delete.");
    if (rename(db, hidden) != 0) {
        if (errno != ENOENT && errno != ENOTDIR)
            return mirrordav_errno_error(p, APR_FROM_OS_ERROR(errno),
                                         "Could not delete the metadata; "
                                         "the entry was kept");
        hidden = NULL;
    }
    else if (mirrordav_fsync_enabled(conf)) {
        dav_error *err = mirrordav_fsync_dir(p, mirrordav_dirname(p, hidden));
        if (err) {
            rename(hidden, db);
            return err;
        }
    }
    if ((is_dir ? rmdir(path) : mirrordav_quota_unlink(conf, path)) != 0 &&
        errno != ENOENT) {
        e = errno;
        if (hidden &&
            renameat2(AT_FDCWD, hidden, AT_FDCWD, db, RENAME_NOREPLACE) != 0)
            unlink(hidden); /* a newer sidecar came meanwhile: it stays */
        return mirrordav_errno_error(p, APR_FROM_OS_ERROR(e),
                                     is_dir ? "Could not delete the "
                                              "collection"
                                            : "Could not delete the file");
    }
    if (hidden)
        unlink(hidden); /* if not, a stale temp that fsck removes */
    return NULL;
}

/* P is this level's scratch pool; what RESPONSE keeps goes into RP.  URI
 * NULL: nothing is reported by name (a staged or replaced tree). */
static dav_error *remove_tree(apr_pool_t *p, apr_pool_t *rp,
                              const mirrordav_conf *conf, const char *path,
                              const char *uri, int is_dir,
                              dav_response **response, int *failed)
{
    const char *name;
    struct stat st;
    apr_pool_t *iter;
    dav_error *err = NULL;
    int more, child_failed = 0;
    DIR *d;

    if (!is_dir)
        return remove_entry(p, conf, path, 0);
    if (!(d = opendir(path)))
        return mirrordav_errno_error(p, APR_FROM_OS_ERROR(errno),
                                     "Could not read the collection");
    /* Unlinking entries already returned does not disturb readdir. */
    apr_pool_create(&iter, p);
    while ((more = next_entry(d, &name, &st)) > 0) {
        const char *u = uri ? apr_pstrcat(iter, uri, "/", name, NULL) : NULL;

        err = remove_tree(iter, rp, conf, mirrordav_join(iter, path, name), u,
                          S_ISDIR(st.st_mode), response, &child_failed);
        if (err) {
            if (u)
                add_response(rp, response, u, err);
            child_failed = 1;
            err = NULL;
        }
        apr_pool_clear(iter);
    }
    if (more < 0)
        err = mirrordav_errno_error(p, APR_FROM_OS_ERROR(errno),
                                    "Could not read the collection");
    closedir(d);
    apr_pool_destroy(iter);
    if (err)
        return err;
    if (child_failed) {
        /* RFC 4918 9.6.1: the ancestors of a member that could not be
         * deleted stay, and are not reported themselves. */
        *failed = 1;
        return NULL;
    }
    if ((err = remove_sidecar_dir(p, path)) != NULL)
        return err;
    return remove_entry(p, conf, path, 1);
}

/*
 * Overwrite: T makes mod_dav delete the destination before it copies or
 * moves onto it, which would lose the old data if the copy then failed or
 * the server died.  Nothing is deleted here: the destination is only
 * marked, and the COPY or MOVE exchanges the new tree with it (swap_in).
 */
static int is_overwrite_delete(const dav_resource *resource)
{
    request_rec *r = resource->info->r;

    /* mod_dav resolves the Destination through a subrequest. */
    return r && r->main &&
           (r->method_number == M_COPY || r->method_number == M_MOVE);
}

static dav_error *remove_resource(dav_resource *resource,
                                  dav_response **response)
{
    dav_resource_private *info = resource->info;
    apr_pool_t *p = resource->pool;
    dav_error *err;
    int failed = 0;

    *response = NULL;
    if (!*info->relpath)
        return mirrordav_error(p, HTTP_FORBIDDEN, 0,
                               "The root of the share cannot be deleted.");
    if (is_overwrite_delete(resource)) {
        info->replace = 1;
        return NULL;
    }
    err = remove_tree(p, p, info->conf, info->path, resource->uri,
                      resource->collection, response, &failed);
    if (!err && mirrordav_fsync_enabled(info->conf))
        err = mirrordav_fsync_dir(p, mirrordav_dirname(p, info->path));
    fill_from_stat(resource);
    if (!err && (failed || *response))
        return mirrordav_error(p, HTTP_MULTI_STATUS, 0,
                               "Some members could not be deleted.");
    return err;
}

/* ---------------------------------------------------------------- move */

/*
 * MOVE: one rename moves the whole tree (the members' sidecars travel
 * inside it).  The entry's own sidecar lives in the parent's sidecar
 * folder, so it is staged first as a copy under the new name, the data is
 * renamed (exchanged with the old destination under Overwrite), and only
 * then is the staged sidecar renamed in and the source's removed.  The
 * intent record makes the three steps one: at every crash point either
 * the source keeps its data and sidecar, or recovery completes the move.
 */
static dav_error *move_resource(dav_resource *src, dav_resource *dst,
                                dav_response **response)
{
    apr_pool_t *p = dst->pool;
    const mirrordav_conf *conf = dst->info->conf;
    const char *spath = src->info->path, *dpath = dst->info->path;
    const char *name = mirrordav_basename(dpath);
    struct stat before;
    dav_error *err = NULL;
    intent in;
    int rc;

    *response = NULL;
    if (!*src->info->relpath || !*dst->info->relpath)
        return mirrordav_error(p, HTTP_FORBIDDEN, 0,
                               "The root of the share cannot be moved.");
    if ((err = check_destination_parent(dst)) != NULL)
        return err;
    rc = intent_begin(&in, conf->state, 1, spath, dpath,
                      mirrordav_fsync_enabled(conf));
    if (rc)
        return intent_error(p, rc, "Could not prepare the move");
    rc = sidecar_copy(mirrordav_dirname(p, spath), mirrordav_basename(spath),
                      in.stage, name);
    if (rc)
        err = mirrordav_errno_error(p, APR_FROM_OS_ERROR(-rc),
                                    "Could not carry the metadata");
    if (!err && (rc = prepare_swap(&in, spath, name)) != 0)
        err = intent_error(p, rc, "Could not record the move");
    if (!err && lstat(spath, &before) != 0)
        memset(&before, 0, sizeof(before)); /* matches no record */
    if (!err)
        err = swap_in(dst, &in, spath);
    if (err) {
        if ((rc = intent_abort(&in)) != 0)
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, APR_FROM_OS_ERROR(-rc),
                          dst->info->r,
                          "the staging folder %s could not be removed; "
                          "mirrordav fsck --repair removes it",
                          in.stage);
        intent_release(&in);
        return err;
    }
    err = finish_swap(dst, &in);
    rebind_swapped(p, &before, dpath);
    fill_from_stat(src);
    fill_from_stat(dst);
    return err;
}

static request_rec *get_request_rec(const dav_resource *resource)
{
    return resource->info->r;
}

static const char *get_pathname(const dav_resource *resource)
{
    return resource->info->path;
}

const dav_hooks_repository mirrordav_hooks_repository = {
    1, /* handle_get: deliver() serves files with sendfile and ranges */
    get_resource,
    get_parent_resource,
    is_same_resource,
    is_parent_resource,
    mirrordav_open_stream,
    mirrordav_close_stream,
    mirrordav_write_stream,
    NULL, /* seek_stream: partial PUT is not offered; see PATCH-APPLY */
    set_headers,
    deliver,
    create_collection,
    copy_resource,
    move_resource,
    remove_resource,
    mirrordav_walk,
    mirrordav_etag,
    NULL, /* ctx */
    get_request_rec,
    get_pathname,
};
