/*
 * Helpers that many of the module's files use: tagged errors, errno
 * mapping, directory fsync, stat conversion, ETags and where a resource's
 * sidecar lives.  Kept apart so that no resource file is everyone's
 * dependency.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "apr_strings.h"
#include "util_filter.h"
#include "mirrordav.h"

void mirrordav_stat_to_finfo(const struct stat *st, apr_finfo_t *fi)
{
    memset(fi, 0, sizeof(*fi));
    fi->valid = APR_FINFO_LINK | APR_FINFO_MIN | APR_FINFO_INODE |
                APR_FINFO_NLINK | APR_FINFO_OWNER;
    fi->filetype = S_ISREG(st->st_mode)   ? APR_REG
                   : S_ISDIR(st->st_mode) ? APR_DIR
                                          : APR_UNKFILE; /* link, special */
    fi->protection = st->st_mode & 07777;
    fi->user = st->st_uid;
    fi->group = st->st_gid;
    fi->inode = st->st_ino;
    fi->device = st->st_dev;
    fi->nlink = (apr_int32_t)st->st_nlink;
    fi->size = st->st_size;
    fi->csize = (apr_off_t)st->st_blocks * 512;
    fi->atime =
        apr_time_from_sec(st->st_atim.tv_sec) + st->st_atim.tv_nsec / 1000;
    fi->mtime =
        apr_time_from_sec(st->st_mtim.tv_sec) + st->st_mtim.tv_nsec / 1000;
    fi->ctime =
        apr_time_from_sec(st->st_ctim.tv_sec) + st->st_ctim.tv_nsec / 1000;
}

/* Tagged, so that mod_dav sends the description in the response body. */
dav_error *mirrordav_error(apr_pool_t *p, int status, apr_status_t rv,
                           const char *desc)
{
    return dav_new_error_tag(p, status, 0, rv, desc, MIRRORDAV_NS,
                             status >= 500 ? "failed" : "refused");
}

void mirrordav_sidecar_entry(const dav_resource *resource, const char **dir,
                             const char **name)
{
    const char *path = resource->info->path;

    if (*resource->info->relpath && !mirrordav_is_snapshot_entry(resource)) {
        *dir = mirrordav_dirname(resource->pool, path);
        *name = mirrordav_basename(path);
    }
    else {
        /* The root of a tree (the live one, or a snapshot's copy of
         * it) keeps its own. */
        *dir = path;
        *name = "";
    }
}

dav_error *mirrordav_errno_error(apr_pool_t *p, apr_status_t rv,
                                 const char *what)
{
    int status = HTTP_INTERNAL_SERVER_ERROR;
    char buf[120];

    if (APR_STATUS_IS_ENOSPC(rv) || rv == APR_FROM_OS_ERROR(EDQUOT))
        status = HTTP_INSUFFICIENT_STORAGE;
    else if (APR_STATUS_IS_EACCES(rv) || rv == APR_FROM_OS_ERROR(EPERM) ||
             rv == APR_FROM_OS_ERROR(EROFS))
        status = HTTP_FORBIDDEN;
    else if (APR_STATUS_IS_ENAMETOOLONG(rv))
        status = HTTP_BAD_REQUEST;
    return mirrordav_error(
        p, status, rv,
        apr_psprintf(p, "%s: %s", what, apr_strerror(rv, buf, sizeof(buf))));
}

dav_error *mirrordav_fsync_dir(apr_pool_t *p, const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    apr_status_t rv;

    if (fd < 0)
        return mirrordav_errno_error(p, APR_FROM_OS_ERROR(errno),
                                     "Could not open a directory to sync");
    rv = fsync(fd) == 0 ? APR_SUCCESS : APR_FROM_OS_ERROR(errno);
    close(fd);
    if (rv != APR_SUCCESS)
        return mirrordav_errno_error(p, rv, "Could not sync a directory");
    return NULL;
}

const char *mirrordav_etag(const dav_resource *resource)
{
    const apr_finfo_t *fi = &resource->info->finfo;

    if (!resource->exists)
        return "";
    /* The inode changes on every PUT (temp file + rename), so two versions
     * with equal size and mtime still get different tags. */
    return apr_psprintf(resource->pool,
                        "\"%" APR_UINT64_T_HEX_FMT "-%" APR_UINT64_T_HEX_FMT
                        "-%" APR_UINT64_T_HEX_FMT "\"",
                        (apr_uint64_t)fi->inode, (apr_uint64_t)fi->size,
                        (apr_uint64_t)fi->mtime);
}

dav_error *mirrordav_read_body(request_rec *r, apr_size_t bufsize,
                               mirrordav_body_sink sink, void *ctx)
{
    apr_bucket_brigade *bb =
        apr_brigade_create(r->pool, r->connection->bucket_alloc);
    int eos = 0;

    while (!eos) {
        apr_bucket *e;
        apr_status_t rv = ap_get_brigade(
            r->input_filters, bb, AP_MODE_READBYTES, APR_BLOCK_READ, bufsize);

        if (rv != APR_SUCCESS)
            return mirrordav_error(r->pool, HTTP_BAD_REQUEST, rv,
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
                return mirrordav_error(r->pool, HTTP_BAD_REQUEST, rv,
                                       "The request body could not be "
                                       "read.");
            if (len && (err = sink(ctx, data, len)) != NULL)
                return err;
        }
        apr_brigade_cleanup(bb);
    }
    return NULL;
}
