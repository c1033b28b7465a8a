/*
 * New file contents become visible atomically: they are written to an
 * unnamed file (O_TMPFILE) in the target's directory and then given the
 * target's name; a crash before that leaves nothing behind.  A file that
 * replaces another is linked to a temporary name in the sidecar folder and
 * renamed over it.  Where O_TMPFILE is not supported, a named temporary
 * file in the sidecar folder stands in (fsck removes stale ones).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "apr_strings.h"
#include "mirrordav.h"
#include "sidecar/sidecar.h"

const char *mirrordav_temp_name(apr_pool_t *p, const char *dir,
                                const char *prefix)
{
    unsigned char r[8];

    if (apr_generate_random_bytes(r, sizeof(r)) != APR_SUCCESS)
        return NULL;
    return apr_psprintf(
        p, "%s/" SIDECAR_DIR "/%s%02x%02x%02x%02x%02x%02x%02x%02x", dir,
        prefix, r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]);
}

int mirrordav_newfile_open(apr_pool_t *p, const char *dir,
                           mirrordav_newfile *nf)
{
    nf->tmp = NULL;
    nf->fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
    if (nf->fd < 0) {
        nf->tmp = apr_pstrcat(p, dir, "/" SIDECAR_DIR "/.put-XXXXXX", NULL);
        nf->fd = mkstemp(nf->tmp);
    }
    if (nf->fd < 0) {
        int e = errno;
        nf->tmp = NULL;
        return e;
    }
    return 0;
}

int mirrordav_newfile_publish(apr_pool_t *p, mirrordav_newfile *nf,
                              const char *dir, const char *path)
{
    char proc[64];
    int i;

    if (!nf->tmp) {
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", nf->fd);
        if (linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW) == 0)
            return 0; /* a new file: no temp name, no rename */
        if (errno != EEXIST)
            return errno;
        for (i = 0; i < 8 && !nf->tmp; i++) {
            const char *t = mirrordav_temp_name(p, dir, ".put-");

            if (!t)
                return EIO;
            if (linkat(AT_FDCWD, proc, AT_FDCWD, t, AT_SYMLINK_FOLLOW) == 0)
                nf->tmp = (char *)t;
            else if (errno != EEXIST)
                return errno;
        }
        if (!nf->tmp)
            return EEXIST;
    }
    if (rename(nf->tmp, path) != 0)
        return errno;
    nf->tmp = NULL;
    return 0;
}

void mirrordav_newfile_discard(mirrordav_newfile *nf)
{
    if (nf->fd >= 0)
        close(nf->fd);
    nf->fd = -1;
    if (nf->tmp)
        unlink(nf->tmp);
    nf->tmp = NULL;
}
