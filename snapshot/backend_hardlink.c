/*
 * The hardlink backend: each regular file of the snapshot is a hard link
 * to the live file.  Exact copy-on-write rests on the server's write
 * paths: data and sidecar databases are replaced by new file + rename,
 * never written in place, and no mtime, mode or xattr is changed on a
 * data file whose link count is above 1.
 *
 * link(2) moves the shared inode's ctime, and sidecar records are bound to
 * (inode, size, mtime, ctime): left alone, every live SHA-1 would read as
 * unknown.  So after linking a data file its live record is re-bound to
 * the new ctime (sidecar_rebind: a new database renamed over the old one),
 * and the directory's .mirrordav/ is linked only after all its files
 * (sidecar_first = 0): the snapshot then shares the re-bound databases,
 * which describe its files too (same inode, so the same new ctime).  Had
 * the databases been linked first, the rename would leave the snapshot
 * with the old binding, and its hashes unknown.
 *
 * Known limit: a later hardlink snapshot moves the ctime again, so the
 * records of older hardlink snapshots of the same unchanged file read as
 * unknown (their data is intact; the verifier recomputes from the bytes).
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sidecar/sidecar.h"
#include "snapshot/snapshot.h"

static int hardlink_file(const char *src, int sfd, const char *dst, int dfd,
                         const char *name, const struct stat *st, int flags)
{
    struct stat after;

    (void)dst;
    if (linkat(sfd, name, dfd, name, 0) != 0)
        return -errno;
    if (flags)
        return 0; /* a database itself, or no record to re-bind */
    if (fstatat(sfd, name, &after, AT_SYMLINK_NOFOLLOW) != 0)
        return -errno;
    /* Under the exclusive barrier no request changes the data, so BEFORE
     * and AFTER differ only by the ctime link() moved. */
    return sidecar_rebind(src, name, st, &after);
}

const snap_tree_ops snap_hardlink_ops = {"hardlink", 0, hardlink_file};
