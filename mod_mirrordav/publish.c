/*
 * The module's side of sidecar/publish.c, which holds the mechanism (an
 * unnamed file linked in, or a temp name renamed over the target): APR
 * pools and positive errno values, as the module's callers expect, and
 * temporary names in the target's sidecar folder.
 */
#include <errno.h>
#include <fcntl.h>

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
    return -publish_open(nf, dir, apr_pstrcat(p, dir, "/" SIDECAR_DIR, NULL),
                         ".put-", O_WRONLY, 0644);
}

int mirrordav_newfile_publish(apr_pool_t *p, mirrordav_newfile *nf,
                              const char *dir, const char *path)
{
    (void)p;
    (void)dir;
    return -publish_commit(nf, path, PUBLISH_REPLACE);
}

void mirrordav_newfile_discard(mirrordav_newfile *nf)
{
    publish_discard(nf);
}
