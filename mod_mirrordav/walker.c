/*
 * Depth walks for PROPFIND, locks and validation.  Members are visited in
 * directory order; the sidecar folder, symbolic links and special
 * files are never part of the tree.  Each member's resource lives in a
 * scratch pool cleared after its callback, and directories are read one
 * entry at a time, so a walk over a large tree holds one open directory
 * per level, not a listing.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "apr_strings.h"
#include "mirrordav.h"
#include "sidecar/sidecar.h"

static int cmp_dirent(const void *a, const void *b)
{
    return strcmp(((const mirrordav_dirent *)a)->name,
                  ((const mirrordav_dirent *)b)->name);
}

dav_error *mirrordav_read_dir(apr_pool_t *p, const char *path, int sorted,
                              apr_array_header_t **entries)
{
    apr_array_header_t *arr = apr_array_make(p, 16, sizeof(mirrordav_dirent));
    DIR *d = opendir(path);
    struct dirent *de;

    if (!d)
        return mirrordav_errno_error(p, APR_FROM_OS_ERROR(errno),
                                     "Could not read the collection");
    while ((errno = 0, de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        mirrordav_dirent *e;
        struct stat st;

        if ((n[0] == '.' && (n[1] == '\0' || (n[1] == '.' && n[2] == '\0'))) ||
            sidecar_is_reserved_name(n))
            continue;
        if (fstatat(dirfd(d), n, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue; /* vanished since readdir */
        if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
            continue; /* symlinks and special files are not served */
        e = apr_array_push(arr);
        e->name = apr_pstrdup(p, n);
        mirrordav_stat_to_finfo(&st, &e->finfo);
    }
    if (errno) {
        int e = errno;
        closedir(d);
        return mirrordav_errno_error(p, APR_FROM_OS_ERROR(e),
                                     "Could not read the collection");
    }
    closedir(d);
    if (sorted)
        qsort(arr->elts, arr->nelts, sizeof(mirrordav_dirent), cmp_dirent);
    *entries = arr;
    return NULL;
}

typedef struct {
    const dav_walk_params *params;
    dav_walk_resource wres;
} walk_ctx;

static dav_error *walk_members(walk_ctx *ctx, const dav_resource *dir,
                               int depth)
{
    const dav_walk_params *params = ctx->params;
    dav_resource_private *dinfo = dir->info;
    apr_pool_t *scratch;
    struct dirent *de;
    dav_error *err = NULL;
    DIR *d;

    /* One entry at a time, not a listing: a folder of 100 000 files
     * (a DELETE validates its whole tree through this walk) costs one
     * readdir buffer per level.  A multistatus has no order. */
    if (!(d = opendir(dinfo->path)))
        return mirrordav_errno_error(params->pool, APR_FROM_OS_ERROR(errno),
                                     "Could not read the collection");
    apr_pool_create(&scratch, params->pool);
    while (!err && (errno = 0, de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        apr_finfo_t finfo;
        struct stat st;
        const char *uri;
        dav_resource *res;
        int is_dir;

        if ((n[0] == '.' && (n[1] == '\0' || (n[1] == '.' && n[2] == '\0'))) ||
            sidecar_is_reserved_name(n))
            continue;
        if (fstatat(dirfd(d), n, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue; /* vanished since readdir */
        if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
            continue; /* symlinks and special files are not served */
        mirrordav_stat_to_finfo(&st, &finfo);
        is_dir = S_ISDIR(st.st_mode);
        uri = apr_pstrcat(scratch, dir->uri,
                          dir->uri[strlen(dir->uri) - 1] == '/' ? "" : "/", n,
                          is_dir ? "/" : "", NULL);
        res = mirrordav_new_resource(
            scratch, dinfo->r, dinfo->conf,
            mirrordav_join(scratch, dinfo->relpath, n), uri, &finfo);
        ctx->wres.resource = res;
        err = params->func(&ctx->wres, is_dir ? DAV_CALLTYPE_COLLECTION
                                              : DAV_CALLTYPE_MEMBER);
        if (!err && is_dir && depth > 1)
            err = walk_members(ctx, res, depth - 1);
        apr_pool_clear(scratch);
    }
    if (!err && errno)
        err = mirrordav_errno_error(params->pool, APR_FROM_OS_ERROR(errno),
                                    "Could not read the collection");
    closedir(d);
    apr_pool_destroy(scratch);
    return err;
}

dav_error *mirrordav_walk(const dav_walk_params *params, int depth,
                          dav_response **response)
{
    const dav_resource *root = params->root;
    walk_ctx ctx;
    dav_error *err;

    memset(&ctx, 0, sizeof(ctx));
    ctx.params = params;
    ctx.wres.walk_ctx = params->walk_ctx;
    ctx.wres.pool = params->pool;
    ctx.wres.resource = root;
    if (root->collection && root->uri[strlen(root->uri) - 1] != '/') {
        /* Collections are reported with their trailing slash. */
        dav_resource *shown = apr_pmemdup(params->pool, root, sizeof(*root));
        shown->uri = apr_pstrcat(params->pool, root->uri, "/", NULL);
        ctx.wres.resource = shown;
    }

    err = params->func(&ctx.wres, root->collection ? DAV_CALLTYPE_COLLECTION
                                                   : DAV_CALLTYPE_MEMBER);
    if (!err && root->exists && root->collection && depth > 0)
        err = walk_members(&ctx, root,
                           depth == DAV_INFINITY ? DAV_INFINITY : depth);
    *response = ctx.wres.response;
    return err;
}
