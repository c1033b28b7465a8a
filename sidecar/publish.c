/*
 * Atomic publication of new file contents; see publish.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "publish.h"

static __thread int durable = 1;

void publish_set_durable(int on)
{
    durable = on;
}

int publish_durable(void)
{
    return durable;
}

static int neg_errno(void)
{
    return errno ? -errno : -EIO;
}

int publish_sync_fd(int fd)
{
    return durable && fsync(fd) ? neg_errno() : 0;
}

static int sync_dir_fd(const char *dir, int (*how)(int))
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;

    if (fd < 0)
        return neg_errno();
    if (how(fd))
        rc = neg_errno();
    close(fd);
    return rc;
}

int publish_fsync_dir(const char *dir)
{
    return sync_dir_fd(dir, fsync);
}

int publish_syncfs(const char *path)
{
    return sync_dir_fd(path, syncfs);
}

int publish_sync_dir(const char *dir)
{
    int fd, rc = 0;

    if (!durable)
        return 0;
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return neg_errno();
    if (fsync(fd))
        rc = neg_errno();
    close(fd);
    return rc;
}

/* An unnamed file can only be given a name through /proc/self/fd (linkat
 * with AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH, which httpd's user lacks).
 * Without /proc (a container or chroot that does not mount it), files
 * start under a temporary name instead. */
static int can_name_unnamed(void)
{
    return access("/proc/self/fd", X_OK) == 0;
}

int publish_open(publish_file *pf, const char *dir, const char *tmpdir,
                 const char *prefix, int flags, mode_t mode)
{
    size_t len;
    int rc;

    pf->fd = -1;
    pf->tmp = NULL;
    pf->tmpdir = strdup(tmpdir);
    pf->prefix = strdup(prefix);
    if (!pf->tmpdir || !pf->prefix) {
        publish_discard(pf);
        return -ENOMEM;
    }
    if (can_name_unnamed()) {
        pf->fd = open(dir, O_TMPFILE | flags | O_CLOEXEC, mode);
        if (pf->fd >= 0) {
            if (fchmod(pf->fd, mode) == 0) /* the umask does not apply */
                return 0;
            rc = neg_errno();
            publish_discard(pf);
            return rc;
        }
        /* Not supported by this file system: a named temp file. */
    }
    len = strlen(tmpdir) + strlen(prefix) + 8;
    if (!(pf->tmp = malloc(len))) {
        publish_discard(pf);
        return -ENOMEM;
    }
    snprintf(pf->tmp, len, "%s/%sXXXXXX", tmpdir, prefix);
    pf->fd = mkostemp(pf->tmp, (flags & ~O_ACCMODE) | O_CLOEXEC);
    if (pf->fd < 0 || fchmod(pf->fd, mode) != 0) {
        rc = neg_errno();
        publish_discard(pf);
        return rc;
    }
    return 0;
}

/* Links the unnamed file to a new random name in the temp folder. */
static int link_temp_name(publish_file *pf, const char *proc)
{
    size_t len = strlen(pf->tmpdir) + strlen(pf->prefix) + 18;
    int i, rc;

    for (i = 0; i < 16; i++) {
        unsigned char r[8];
        char *t;

        if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
            return -EIO;
        if (!(t = malloc(len)))
            return -ENOMEM;
        snprintf(t, len, "%s/%s%02x%02x%02x%02x%02x%02x%02x%02x", pf->tmpdir,
                 pf->prefix, r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]);
        if (linkat(AT_FDCWD, proc, AT_FDCWD, t, AT_SYMLINK_FOLLOW) == 0) {
            pf->tmp = t;
            return 0;
        }
        rc = neg_errno();
        free(t);
        if (rc != -EEXIST)
            return rc;
    }
    return -EEXIST;
}

int publish_commit(publish_file *pf, const char *path, int how)
{
    char proc[64];
    int rc;

    if (pf->fd < 0)
        return -EBADF;
    if (!pf->tmp) {
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", pf->fd);
        /* A link never replaces anything: a new entry appears whole, with
         * no temp name and no rename. */
        if (linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW) == 0)
            return 0;
        if (errno != EEXIST || how == PUBLISH_CREATE)
            return neg_errno();
        /* Replacing: a temp name, then one rename over the old entry.  A
         * crash in between leaves the old entry and a temp name that fsck
         * removes. */
        if ((rc = link_temp_name(pf, proc)) != 0)
            return rc;
    }
    else if (how == PUBLISH_CREATE) {
        /* link, unlike rename, fails if the name is taken.  A crash before
         * the unlink leaves a second name for the published file in the
         * temp folder; fsck removes that name, not the file. */
        if (link(pf->tmp, path) != 0)
            return neg_errno();
        unlink(pf->tmp);
        free(pf->tmp);
        pf->tmp = NULL;
        return 0;
    }
    if (rename(pf->tmp, path) != 0)
        return neg_errno();
    free(pf->tmp);
    pf->tmp = NULL;
    return 0;
}

void publish_discard(publish_file *pf)
{
    if (pf->fd >= 0)
        close(pf->fd); /* an unnamed file vanishes with its descriptor */
    pf->fd = -1;
    if (pf->tmp) {
        unlink(pf->tmp);
        free(pf->tmp);
    }
    pf->tmp = NULL;
    free(pf->tmpdir);
    pf->tmpdir = NULL;
    free(pf->prefix);
    pf->prefix = NULL;
}
