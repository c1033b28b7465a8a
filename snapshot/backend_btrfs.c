/*
 * The btrfs backend: live/ is a subvolume, and a snapshot is a read-only
 * subvolume snapshot of it made by one ioctl, in constant time whatever
 * the size of the tree.  Inode numbers, ctimes and all bytes are those of
 * the live tree at that instant, so the sidecar records (bound to inode,
 * size, mtime and ctime, not the device) stay current in the snapshot.
 *
 * Privileges: creating a snapshot of a subvolume one owns, creating a
 * subvolume in a writable directory, and clearing the read-only flag of a
 * subvolume one owns need no root; BTRFS_IOC_SNAP_DESTROY does (unless
 * the file system is mounted user_subvol_rm_allowed).  So deletion clears
 * the read-only flag, removes the contents and rmdir()s the subvolume
 * root, which Linux (>= 4.18) allows its owner: everything runs as the
 * volume's owner.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/btrfs.h>
#include <linux/magic.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "snapshot/snapshot.h"

/* The inode number of every subvolume's root directory. */
#define BTRFS_SUBVOL_ROOT_INO 256

int snap_btrfs_is_subvolume(const char *path)
{
    struct statfs sf;
    struct stat st;

    if (statfs(path, &sf) != 0 || stat(path, &st) != 0)
        return 0;
    return sf.f_type == BTRFS_SUPER_MAGIC && S_ISDIR(st.st_mode) &&
           st.st_ino == BTRFS_SUBVOL_ROOT_INO;
}

int snap_btrfs_snapshot(const char *src, const char *dst_parent,
                        const char *dst_name)
{
    struct btrfs_ioctl_vol_args_v2 args;
    int s, p, rv = 0;

    if (strlen(dst_name) > BTRFS_SUBVOL_NAME_MAX)
        return -ENAMETOOLONG;
    s = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s < 0)
        return -errno;
    p = open(dst_parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (p < 0) {
        rv = -errno;
        close(s);
        return rv;
    }
    memset(&args, 0, sizeof(args));
    args.fd = s;
    args.flags = BTRFS_SUBVOL_RDONLY;
    strcpy(args.name, dst_name);
    /* The ioctl commits the snapshot in a transaction of its own: after
     * it returns, it exists whole or (after a crash before the commit)
     * not at all; the caller still syncs the parent's entry. */
    if (ioctl(p, BTRFS_IOC_SNAP_CREATE_V2, &args) != 0)
        rv = -errno;
    close(s);
    close(p);
    return rv;
}

int snap_btrfs_subvol_create(const char *parent, const char *name)
{
    struct btrfs_ioctl_vol_args args;
    int p, rv = 0;

    if (strlen(name) > BTRFS_PATH_NAME_MAX)
        return -ENAMETOOLONG;
    p = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (p < 0)
        return -errno;
    memset(&args, 0, sizeof(args));
    strcpy(args.name, name);
    if (ioctl(p, BTRFS_IOC_SUBVOL_CREATE, &args) != 0)
        rv = -errno;
    close(p);
    return rv;
}

int snap_btrfs_make_writable(const char *path)
{
    uint64_t flags;
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rv = 0;

    if (fd < 0)
        return -errno;
    if (ioctl(fd, BTRFS_IOC_SUBVOL_GETFLAGS, &flags) != 0)
        rv = -errno;
    else if (flags & BTRFS_SUBVOL_RDONLY) {
        flags &= ~(uint64_t)BTRFS_SUBVOL_RDONLY;
        if (ioctl(fd, BTRFS_IOC_SUBVOL_SETFLAGS, &flags) != 0)
            rv = -errno;
    }
    close(fd);
    return rv;
}
