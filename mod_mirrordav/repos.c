/*
 * The repository: resources of the live tree and the operations on them
 * (lookup, GET delivery, MKCOL, COPY, MOVE, DELETE).  Every change that a
 * client is told about is on disk first: new files are written to a
 * temporary file, fsynced and renamed into place, and the directories
 * they land in are fsynced.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "apr_strings.h"
#include "http_protocol.h"
#include "http_request.h"
#include "mirrordav.h"
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
         * own listing pages above have neither header.) */
        apr_table_setn(r->headers_out, "Content-Security-Policy", "sandbox");
        apr_table_setn(r->headers_out, "X-Content-Type-Options", "nosniff");
    }
    apr_table_setn(r->headers_out, "Accept-Ranges", "bytes");
    ap_set_content_length(r, fi->size);
    if (!r->content_type)
        ap_set_content_type(r, "application/octet-stream");
    return NULL;
}

dav_error *mirrordav_deliver_listing(const dav_resource *resource,
                                     ap_filter_t *output);

static dav_error *deliver(const dav_resource *resource, ap_filter_t *output)
{
    apr_pool_t *p = resource->pool;
    request_rec *r = resource->info->r;
    apr_bucket_brigade *bb;
    apr_file_t *fd;
    apr_status_t rv;

    if (resource->collection)
        return mirrordav_deliver_listing(resource, output);

    rv = apr_file_open(&fd, resource->info->path,
                       APR_FOPEN_READ | APR_FOPEN_BINARY |
                           APR_FOPEN_SENDFILE_ENABLED,
                       APR_OS_DEFAULT, p);
    if (rv != APR_SUCCESS)
        return mirrordav_errno_error(p, rv, "Could not open the file");

    /* A file bucket lets the core output filter use sendfile, and the
     * byterange filter cut ranges without reading the data. */
    bb = apr_brigade_create(p, output->c->bucket_alloc);
    apr_brigade_insert_file(bb, fd, 0, resource->info->finfo.size, p);
    APR_BRIGADE_INSERT_TAIL(bb,
                            apr_bucket_eos_create(output->c->bucket_alloc));
    rv = ap_pass_brigade(output, bb);
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
                            struct stat id[3])
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

static void add_response(apr_pool_t *p, dav_response **response,
                         const char *href, dav_error *err)
{
    dav_response *resp = apr_pcalloc(p, sizeof(*resp));

    resp->href = href;
    resp->status = err->status;
    /* ERR may live in a per-member pool that is cleared before the
     * response is read (found by t/90 under ASan, MaxMemFree 1). */
    resp->desc = apr_pstrdup(p, err->desc);
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

/* Recursive copy.  A member that fails is reported in RESPONSE and the
 * walk goes on with its siblings, as RFC 4918 section 9.8.8 asks. */
static dav_error *copy_tree(apr_pool_t *p, const mirrordav_conf *conf,
                            const char *src, const char *dst,
                            const char *dst_uri, int depth, int is_dir,
                            dav_response **response)
{
    apr_array_header_t *entries;
    dav_error *err;
    int i;

    if (!is_dir) {
        struct stat id[3];

        err = copy_file(p, conf, src, dst, id);
        if (!err && carry_sidecar(sidecar_copy, p, src, dst) != 0)
            err = mirrordav_error(p, HTTP_INTERNAL_SERVER_ERROR, 0,
                                  "Could not copy the file's metadata.");
        /* The SHA-1 carries over only if the bytes copied are the ones it
         * names; else it reads unknown at the destination. */
        if (!err)
            sidecar_rebind_copy(mirrordav_dirname(p, dst),
                                mirrordav_basename(dst), &id[0], &id[1],
                                &id[2]);
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
        apr_pool_t *sub;
        if ((err = mirrordav_read_dir(p, src, 0, &entries)) != NULL)
            return err;
        apr_pool_create(&sub, p);
        for (i = 0; i < entries->nelts; i++) {
            const mirrordav_dirent *de =
                &APR_ARRAY_IDX(entries, i, mirrordav_dirent);
            const char *s = mirrordav_join(sub, src, de->name);
            const char *d = mirrordav_join(sub, dst, de->name);
            const char *u = apr_pstrcat(p, dst_uri, "/", de->name, NULL);

            err = copy_tree(sub, conf, s, d, u, depth,
                            de->finfo.filetype == APR_DIR, response);
            if (err)
                add_response(p, response, u, err);
            apr_pool_clear(sub);
        }
        apr_pool_destroy(sub);
    }
    if (mirrordav_fsync_enabled(conf))
        return mirrordav_fsync_dir(p, mirrordav_dirname(p, dst));
    return NULL;
}

static dav_error *settle_trash(dav_resource *dst, dav_error *err);
static dav_error *remove_tree(apr_pool_t *p, const char *path, const char *uri,
                              int is_dir, dav_response **response,
                              int *failed);

static dav_error *copy_resource(const dav_resource *src, dav_resource *dst,
                                int depth, dav_response **response)
{
    dav_error *err;

    *response = NULL;
    err =
        copy_tree(dst->pool, dst->info->conf, src->info->path, dst->info->path,
                  dst->uri, depth, src->collection, response);
    fill_from_stat(dst);
    if (!err && *response)
        err = mirrordav_error(dst->pool, HTTP_MULTI_STATUS, 0,
                              "Some members could not be copied.");
    if (err) {
        /* A copy is all or nothing, so that no half-copied tree is ever
         * visible: report the first failure alone, and take away what was
         * copied.  (The destination did not exist, or was set aside and
         * settle_trash brings it back.) */
        if (*response)
            err = mirrordav_error(
                dst->pool, (*response)->status, 0,
                apr_pstrcat(dst->pool, "Could not copy ", (*response)->href,
                            ": ", (*response)->desc ? (*response)->desc : "",
                            NULL));
        *response = NULL;
        if (!dst->info->trash) {
            struct stat st;
            dav_response *ignored = NULL;
            int failed = 0;

            if (lstat(dst->info->path, &st) == 0)
                remove_tree(dst->pool, dst->info->path, "",
                            S_ISDIR(st.st_mode), &ignored, &failed);
            fill_from_stat(dst);
            err = mirrordav_error(dst->pool, err->status, err->aprerr,
                                  apr_pstrcat(dst->pool, err->desc,
                                              " Nothing was copied.", NULL));
        }
    }
    return settle_trash(dst, err);
}

/* ---------------------------------------------------------------- delete */

static dav_error *remove_tree(apr_pool_t *p, const char *path, const char *uri,
                              int is_dir, dav_response **response, int *failed)
{
    apr_array_header_t *entries;
    dav_error *err;
    int i, child_failed = 0;

    if (!is_dir) {
        if (unlink(path) != 0 && errno != ENOENT)
            return mirrordav_errno_error(p, APR_FROM_OS_ERROR(errno),
                                         "Could not delete the file");
        /* Data first: a crash in between leaves an orphan sidecar, which
         * no client sees and fsck removes. */
        sidecar_remove(mirrordav_dirname(p, path), mirrordav_basename(path));
        return NULL;
    }
    if ((err = mirrordav_read_dir(p, path, 0, &entries)) != NULL)
        return err;
    for (i = 0; i < entries->nelts; i++) {
        const mirrordav_dirent *de =
            &APR_ARRAY_IDX(entries, i, mirrordav_dirent);
        const char *u = apr_pstrcat(p, uri, "/", de->name, NULL);

        err = remove_tree(p, mirrordav_join(p, path, de->name), u,
                          de->finfo.filetype == APR_DIR, response,
                          &child_failed);
        if (err) {
            add_response(p, response, u, err);
            child_failed = 1;
        }
    }
    if (child_failed) {
        /* RFC 4918 9.6.1: the ancestors of a member that could not be
         * deleted stay, and are not reported themselves. */
        *failed = 1;
        return NULL;
    }
    {
        /* The folder's own sidecar folder goes with it. */
        const char *sc = mirrordav_join(p, path, SIDECAR_DIR);
        apr_dir_t *d;
        apr_finfo_t fi;
        if (apr_dir_open(&d, sc, p) == APR_SUCCESS) {
            while (apr_dir_read(&fi, APR_FINFO_NAME, d) == APR_SUCCESS) {
                if (strcmp(fi.name, ".") && strcmp(fi.name, ".."))
                    unlink(mirrordav_join(p, sc, fi.name));
            }
            apr_dir_close(d);
            rmdir(sc);
        }
    }
    if (rmdir(path) != 0)
        return mirrordav_errno_error(p, APR_FROM_OS_ERROR(errno),
                                     "Could not delete the collection");
    sidecar_remove(mirrordav_dirname(p, path), mirrordav_basename(path));
    return NULL;
}

/*
 * Overwrite: T makes mod_dav delete the destination before it copies or
 * moves onto it, which would lose the old data if the copy then failed.
 * Instead the old destination is renamed aside into its directory's
 * sidecar folder, restored if the operation fails, and discarded once it
 * has succeeded.
 */
static int is_overwrite_delete(const dav_resource *resource)
{
    request_rec *r = resource->info->r;

    /* mod_dav resolves the Destination through a subrequest. */
    return r && r->main &&
           (r->method_number == M_COPY || r->method_number == M_MOVE);
}

static dav_error *set_aside(dav_resource *resource)
{
    dav_resource_private *info = resource->info;
    apr_pool_t *p = resource->pool;
    const char *dir = mirrordav_dirname(p, info->path);
    int i;

    if (sidecar_ensure_dir(dir) != 0)
        return mirrordav_errno_error(p, APR_FROM_OS_ERROR(errno),
                                     "Could not prepare the sidecar folder");
    for (i = 0; i < 8; i++) {
        const char *trash = mirrordav_temp_name(p, dir, ".trash-");

        if (!trash) {
            errno = EIO;
            break;
        }
        if (renameat2(AT_FDCWD, info->path, AT_FDCWD, trash,
                      RENAME_NOREPLACE) == 0) {
            info->trash = trash;
            fill_from_stat(resource);
            return NULL;
        }
        if (errno != EEXIST)
            break;
    }
    return mirrordav_errno_error(p, APR_FROM_OS_ERROR(errno),
                                 "Could not replace the destination");
}

/* After the COPY or MOVE: drop the old destination, or put it back. */
static dav_error *settle_trash(dav_resource *dst, dav_error *err)
{
    dav_resource_private *info = dst->info;
    apr_pool_t *p = dst->pool;
    dav_response *ignored = NULL;
    int failed = 0;

    if (!info->trash)
        return err;
    if (!err) {
        struct stat st;
        int is_dir = lstat(info->trash, &st) == 0 && S_ISDIR(st.st_mode);

        if (remove_tree(p, info->trash, "", is_dir, &ignored, &failed) !=
                NULL ||
            failed || ignored)
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, info->r,
                          "the overwritten %s could not be removed entirely "
                          "from %s; mirrordav fsck reports it",
                          info->path, info->trash);
        info->trash = NULL;
        return NULL;
    }
    /* Whatever the failed operation left goes, the old data comes back. */
    {
        struct stat st;
        if (lstat(info->path, &st) == 0)
            remove_tree(p, info->path, "", S_ISDIR(st.st_mode), &ignored,
                        &failed);
    }
    if (rename(info->trash, info->path) != 0) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(errno), info->r,
                      "could not restore %s from %s", info->path, info->trash);
        return err;
    }
    info->trash = NULL;
    fill_from_stat(dst);
    return mirrordav_error(p,
                           err->status == HTTP_MULTI_STATUS
                               ? HTTP_INTERNAL_SERVER_ERROR
                               : err->status,
                           err->aprerr,
                           apr_pstrcat(p, err->desc ? err->desc : "Failed",
                                       " The destination was left as it "
                                       "was.",
                                       NULL));
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
    if (is_overwrite_delete(resource))
        return set_aside(resource);
    err = remove_tree(p, info->path, resource->uri, resource->collection,
                      response, &failed);
    if (!err && mirrordav_fsync_enabled(info->conf))
        err = mirrordav_fsync_dir(p, mirrordav_dirname(p, info->path));
    fill_from_stat(resource);
    if (!err && (failed || *response))
        return mirrordav_error(p, HTTP_MULTI_STATUS, 0,
                               "Some members could not be deleted.");
    return err;
}

/* ---------------------------------------------------------------- move */

static dav_error *move_resource(dav_resource *src, dav_resource *dst,
                                dav_response **response)
{
    apr_pool_t *p = dst->pool;
    const char *spath = src->info->path, *dpath = dst->info->path;
    dav_error *err = NULL;
    struct stat before, after;

    *response = NULL;
    if (!*src->info->relpath)
        return mirrordav_error(p, HTTP_FORBIDDEN, 0,
                               "The root of the share cannot be moved.");
    /* One rename moves the whole tree atomically; the sidecars of the
     * members travel inside it, and only the entry's own sidecar follows
     * in a second step (a crash in between is repaired by fsck). */
    if (lstat(spath, &before) != 0)         /* rename(2) moves the ctime */
        memset(&before, 0, sizeof(before)); /* matches no record */
    if (rename(spath, dpath) != 0) {
        int e = errno;
        if (e == ENOENT || e == ENOTDIR)
            err = no_destination_parent(p);
        else
            err = mirrordav_errno_error(p, APR_FROM_OS_ERROR(e),
                                        "Could not move the resource");
        return settle_trash(dst, err);
    }
    settle_trash(dst, NULL);
    if (carry_sidecar(sidecar_move, p, spath, dpath) != 0)
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, src->info->r,
                      "metadata of %s did not follow its move to %s; "
                      "mirrordav fsck will repair it",
                      spath, dpath);
    else if (lstat(dpath, &after) == 0)
        sidecar_rebind(mirrordav_dirname(p, dpath), mirrordav_basename(dpath),
                       &before, &after);
    if (mirrordav_fsync_enabled(dst->info->conf)) {
        const char *sdir = mirrordav_dirname(p, spath);
        const char *ddir = mirrordav_dirname(p, dpath);
        err = mirrordav_fsync_dir(p, ddir);
        if (!err && strcmp(sdir, ddir) != 0)
            err = mirrordav_fsync_dir(p, sdir);
    }
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
