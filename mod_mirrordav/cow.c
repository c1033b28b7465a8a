/*
 * Exact copy-on-write for hard-link snapshots (SPEC section 6).
 *
 * A hardlink snapshot shares each unchanged file's inode with the live
 * tree.  Contents are never written in place (PUT and COPY publish a new
 * inode by rename; sidecars are rewritten whole), but an mtime, mode or
 * xattr change on the data file itself would change the snapshot too.
 * Before such a change, a data file whose link count is above 1 gets a
 * private copy: same bytes, mode, times and xattrs, in a new inode that
 * takes the name, so the change lands on the copy alone.
 *
 * The copy is swapped in with renameat2(RENAME_EXCHANGE) rather than a
 * plain rename, so that a PUT that replaced the file meanwhile is never
 * overwritten with the old bytes: after the exchange the temporary name
 * holds what was at the path, and if that is not the inode that was
 * copied, the two are exchanged back and the newer file, which nothing
 * shares, stays.  Order: copy, fsync the copy, exchange, fsync the folder,
 * unlink the old link.  A crash before the exchange leaves a temporary
 * file in .mirrordav/ (fsck removes it) and the path unchanged; after it,
 * the path holds identical bytes and metadata either way, and the
 * snapshot's link keeps the old inode.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "apr_strings.h"
#include "mirrordav.h"
#include "sidecar/sidecar.h"

static int copy_xattrs(int in, int out)
{
    char names[4096], value[4096];
    ssize_t n = flistxattr(in, names, sizeof(names)), i;

    if (n < 0)
        return errno == ENOTSUP ? 0 : errno;
    for (i = 0; i < n; i += (ssize_t)strlen(names + i) + 1) {
        ssize_t v = fgetxattr(in, names + i, value, sizeof(value));
        if (v < 0 || fsetxattr(out, names + i, value, (size_t)v, 0) != 0)
            return errno;
    }
    return 0;
}

int mirrordav_cow_break(apr_pool_t *p, const mirrordav_conf *conf,
                        const char *path, struct stat *st)
{
    const char *dir = mirrordav_dirname(p, path);
    const char *tmp = NULL;
    struct stat src_after, copy, back;
    struct timespec times[2];
    char proc[64];
    int in = -1, out = -1, e = 0, i;
    off_t left;

    if (lstat(path, st) != 0)
        return errno;
    if (!S_ISREG(st->st_mode) || st->st_nlink <= 1)
        return 0; /* nothing shares it */
    if (sidecar_ensure_dir(dir) != 0)
        return errno ? errno : EIO;
    in = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (in < 0 || fstat(in, st) != 0) {
        e = errno;
        goto out;
    }
    out = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
    if (out < 0) {
        e = errno;
        goto out;
    }
    for (left = st->st_size; left > 0;) {
        ssize_t n = copy_file_range(in, NULL, out, NULL,
                                    left > (1 << 30) ? (1 << 30) : left, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            e = n < 0 ? errno : EIO;
            goto out;
        }
        left -= n;
    }
    times[0] = st->st_atim;
    times[1] = st->st_mtim;
    if ((e = copy_xattrs(in, out)) != 0)
        goto out;
    /* Times last: nothing after them moves the mtime. */
    if (fchmod(out, st->st_mode & 07777) != 0 || futimens(out, times) != 0 ||
        (mirrordav_fsync_enabled(conf) && fsync(out) != 0)) {
        e = errno;
        goto out;
    }
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", out);
    for (i = 0; i < 8 && !tmp; i++) {
        const char *t = mirrordav_temp_name(p, dir, ".cow-");
        if (!t) {
            e = EIO;
            goto out;
        }
        if (linkat(AT_FDCWD, proc, AT_FDCWD, t, AT_SYMLINK_FOLLOW) == 0)
            tmp = t;
        else if (errno != EEXIST) {
            e = errno;
            goto out;
        }
    }
    if (!tmp) {
        e = EEXIST;
        goto out;
    }
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_EXCHANGE) != 0) {
        e = errno;
        unlink(tmp);
        goto out;
    }
    if (lstat(tmp, &back) != 0 || back.st_ino != st->st_ino) {
        /* A newer file had replaced the one copied: put it back. */
        renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_EXCHANGE);
        unlink(tmp);
        e = lstat(path, st) == 0 ? 0 : errno;
        goto out;
    }
    if (mirrordav_fsync_enabled(conf)) {
        dav_error *err = mirrordav_fsync_dir(p, dir);
        if (err)
            e = EIO;
    }
    unlink(tmp); /* the snapshot's link to the old inode stays */
    /* The SHA-1 record follows the bytes into the new inode, if it named
     * them (the sidecar itself is rewritten, never changed in place). */
    if (fstat(in, &src_after) == 0 && fstat(out, &copy) == 0)
        sidecar_rebind_copy(dir, mirrordav_basename(path), st, &src_after,
                            &copy);
    if (lstat(path, st) != 0 && !e)
        e = errno;
out:
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    return e;
}
