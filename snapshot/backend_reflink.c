/*
 * The reflink backend: each regular file of the snapshot is a new inode
 * whose blocks are shared with the live file (FICLONE, XFS or btrfs); a
 * later write to either copies the changed blocks only.  The clone gets
 * the live file's mode, owner (when permitted), user xattrs and times.
 *
 * The snapshot's sidecar databases are cloned first (sidecar_first = 1),
 * as they describe the live inode; once a data file is cloned, its record
 * in the snapshot is re-bound to the clone (sidecar_rebind_copy: only if
 * it described the live file, whose identity did not change meanwhile,
 * and the clone has its size and mtime), so the snapshot's hashes stay
 * current.  The live tree is not written at all.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sidecar/sidecar.h"
#include "snapshot/snapshot.h"

static int reflink_file(const char *src, int sfd, const char *dst, int dfd,
                        const char *name, const struct stat *st, int flags)
{
    struct stat before, after, copy;
    struct timespec t[2];
    int in, out, rv = 0;

    (void)src;
    (void)st;
    in = openat(sfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (in < 0)
        return -errno;
    out = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0) {
        rv = -errno;
        close(in);
        return rv;
    }
    if (fstat(in, &before) != 0 || ioctl(out, FICLONE, in) != 0)
        rv = -errno;
    else if (fchown(out, before.st_uid, before.st_gid) != 0 && errno != EPERM)
        rv = -errno;
    else if (fchmod(out, before.st_mode & 07777) != 0)
        rv = -errno;
    else if ((rv = snap_copy_xattrs(in, out)) == 0) {
        t[0] = before.st_atim;
        t[1] = before.st_mtim;
        if (futimens(out, t) != 0 || fstat(out, &copy) != 0 ||
            fstat(in, &after) != 0)
            rv = -errno;
    }
    close(in);
    close(out);
    if (rv || flags)
        return rv; /* a database itself, or no record to re-bind */
    return sidecar_rebind_copy(dst, name, &before, &after, &copy);
}

const snap_tree_ops snap_reflink_ops = {"reflink", 1, reflink_file};
