/*
 * Depth walks for PROPFIND, locks and validation.  Members are visited in
 * directory order; the sidecar folder, symbolic links and special
 * files are never part of the tree.  Directories are read an entry at a
 * time, and each member's resource lives in a scratch pool cleared after
 * its callback, so a walk holds one open directory per level and one
 * member at a time, whatever the size of the tree.
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

struct mirrordav_dir {
    DIR *d;
    const char *volume; /* set when listing a volume's snapshots folder */
};

static apr_status_t close_dir(void *data)
{
    mirrordav_dir *dir = data;

    if (dir->d)
        closedir(dir->d);
    dir->d = NULL;
    return APR_SUCCESS;
}

dav_error *mirrordav_dir_open(apr_pool_t *p, const char *path,
                              mirrordav_dir **dirp)
{
    mirrordav_dir *dir = apr_pcalloc(p, sizeof(*dir));

    dir->d = opendir(path);
    if (!dir->d)
        return mirrordav_errno_error(p, APR_FROM_OS_ERROR(errno),
                                     "Could not read the collection");
    apr_pool_cleanup_register(p, dir, close_dir, apr_pool_cleanup_null);
    dir->volume = mirrordav_snapshots_root_volume(path);
    *dirp = dir;
    return NULL;
}

dav_error *mirrordav_dir_next(apr_pool_t *p, mirrordav_dir *dir,
                              mirrordav_dirent *e, int *done)
{
    struct dirent *de;

    *done = 0;
    while ((errno = 0, de = readdir(dir->d)) != NULL) {
        const char *n = de->d_name;
        struct stat st;

        if ((n[0] == '.' && (n[1] == '\0' || (n[1] == '.' && n[2] == '\0'))) ||
            mirrordav_is_reserved_name(n, strlen(n)))
            continue;
        if (fstatat(dirfd(dir->d), n, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue; /* vanished since readdir */
        if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
            continue; /* symlinks and special files are not served */
        if (dir->volume && !mirrordav_snapshot_listed_in(p, dir->volume, n))
            continue; /* not a complete snapshot */
        e->name = apr_pstrdup(p, n);
        mirrordav_stat_to_finfo(&st, &e->finfo);
        return NULL;
    }
    if (errno)
        return mirrordav_errno_error(p, APR_FROM_OS_ERROR(errno),
                                     "Could not read the collection");
    *done = 1;
    return NULL;
}

void mirrordav_dir_close(apr_pool_t *p, mirrordav_dir *dir)
{
    apr_pool_cleanup_run(p, dir, close_dir);
}

static int cmp_dirent(const void *a, const void *b)
{
    return strcmp(((const mirrordav_dirent *)a)->name,
                  ((const mirrordav_dirent *)b)->name);
}

dav_error *mirrordav_read_dir(apr_pool_t *p, const char *path, int sorted,
                              apr_array_header_t **entries)
{
    apr_array_header_t *arr = apr_array_make(p, 16, sizeof(mirrordav_dirent));
    mirrordav_dir *dir;
    dav_error *err;
    int done = 0;

    if ((err = mirrordav_dir_open(p, path, &dir)) != NULL)
        return err;
    while (!err && !done) {
        mirrordav_dirent e;
        if ((err = mirrordav_dir_next(p, dir, &e, &done)) == NULL && !done)
            *(mirrordav_dirent *)apr_array_push(arr) = e;
    }
    mirrordav_dir_close(p, dir);
    if (err)
        return err;
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
    const char *sep = dir->uri[strlen(dir->uri) - 1] == '/' ? "" : "/";
    apr_pool_t *listp, *scratch;
    mirrordav_dir *d;
    dav_error *err;
    int done = 0;

    /* One open directory per level and one member at a time, as
     * mod_dav_fs walks: memory does not grow with the size of a
     * collection.  Members come in directory order (a multistatus has
     * none); mod_dav streams each <response> as the callback returns. */
    apr_pool_create(&listp, params->pool);
    apr_pool_create(&scratch, listp);
    if ((err = mirrordav_dir_open(listp, dinfo->path, &d)) != NULL) {
        apr_pool_destroy(listp);
        return err;
    }
    while (!err) {
        mirrordav_dirent de;
        const char *uri;
        dav_resource *res;
        int is_dir;

        if ((err = mirrordav_dir_next(scratch, d, &de, &done)) != NULL || done)
            break;
        is_dir = de.finfo.filetype == APR_DIR;
        uri = apr_pstrcat(scratch, dir->uri, sep, de.name, is_dir ? "/" : "",
                          NULL);
        res = mirrordav_new_resource(
            scratch, dinfo->r, dinfo->conf,
            mirrordav_join(scratch, dinfo->relpath, de.name), uri, &de.finfo);

        ctx->wres.resource = res;
        err = params->func(&ctx->wres, is_dir ? DAV_CALLTYPE_COLLECTION
                                              : DAV_CALLTYPE_MEMBER);
        if (!err && is_dir && depth > 1)
            err = walk_members(ctx, res, depth - 1);
        apr_pool_clear(scratch);
    }
    apr_pool_destroy(listp); /* closes the directory */
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
