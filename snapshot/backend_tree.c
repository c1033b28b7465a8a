/*
 * The walk shared by the reflink and hardlink backends: recreates the
 * directories of SRC under DST and lets the backend share each regular
 * file.  Streaming: one open directory per level of depth, nothing listed
 * in memory.  Directories get their mode, owner, xattrs and times after
 * their contents (adding entries moves a directory's mtime).  Symlinks,
 * devices, fifos and sockets are skipped: the server never creates them.
 * In a .mirrordav/ folder, ".lock" and ".tmp-*" are skipped: the lock
 * file is recreated on first use, and a temp database is a write in
 * progress or a crash's leftover, never published data.
 *
 * No fsync here: the caller syncs the whole file system once (syncfs)
 * before renaming the snapshot into place.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "sidecar/sidecar.h"
#include "snapshot/snapshot.h"

int snap_copy_xattrs(int sfd, int dfd)
{
    char names[4096], value[4096];
    ssize_t len = flistxattr(sfd, names, sizeof(names)), off;

    if (len < 0)
        return errno == ENOTSUP || errno == ERANGE ? 0 : -errno;
    for (off = 0; off < len; off += (ssize_t)strlen(names + off) + 1) {
        ssize_t v = fgetxattr(sfd, names + off, value, sizeof(value));
        /* Only what the server writes (user.*) must follow; others (e.g.
         * security.*) are best effort, as an unprivileged owner may not
         * set them. */
        if (v < 0 || fsetxattr(dfd, names + off, value, (size_t)v, 0) != 0) {
            if (!strncmp(names + off, "user.", 5))
                return -errno;
        }
    }
    return 0;
}

/* Mode, owner (best effort: an unprivileged run keeps its own uid), xattrs
 * and times of ST onto the directory DFD, once its contents are in. */
static int finish_dir(int sfd, int dfd, const struct stat *st)
{
    struct timespec t[2] = {st->st_atim, st->st_mtim};
    int rv;

    if (fchown(dfd, st->st_uid, st->st_gid) != 0 && errno != EPERM)
        return -errno;
    if (fchmod(dfd, st->st_mode & 07777) != 0)
        return -errno;
    if ((rv = snap_copy_xattrs(sfd, dfd)) != 0)
        return rv;
    return futimens(dfd, t) != 0 ? -errno : 0;
}

struct walk {
    const snap_tree_ops *ops;
    snap_counts *counts;
    char src[PATH_MAX], dst[PATH_MAX];
};

static int copy_dir(struct walk *w, int sfd, int dfd, int sidecar);

/* Appends "/NAME" to both paths; returns the old lengths' end. */
static int push(struct walk *w, const char *name, size_t *sl, size_t *dl)
{
    *sl = strlen(w->src);
    *dl = strlen(w->dst);
    if (snprintf(w->src + *sl, sizeof(w->src) - *sl, "/%s", name) >=
            (int)(sizeof(w->src) - *sl) ||
        snprintf(w->dst + *dl, sizeof(w->dst) - *dl, "/%s", name) >=
            (int)(sizeof(w->dst) - *dl)) {
        w->src[*sl] = w->dst[*dl] = '\0';
        return -ENAMETOOLONG;
    }
    return 0;
}

static int copy_subdir(struct walk *w, int sfd, int dfd, const char *name,
                       const struct stat *st, int sidecar)
{
    size_t sl, dl;
    int s = -1, d = -1, rv;

    if (mkdirat(dfd, name, 0700) != 0)
        return -errno;
    if ((rv = push(w, name, &sl, &dl)) != 0)
        return rv;
    s = openat(sfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    d = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (s < 0 || d < 0)
        rv = -errno;
    else if ((rv = copy_dir(w, s, d, sidecar)) == 0)
        rv = finish_dir(s, d, st);
    if (s >= 0)
        close(s);
    if (d >= 0)
        close(d);
    w->src[sl] = w->dst[dl] = '\0';
    return rv;
}

static int copy_dir(struct walk *w, int sfd, int dfd, int sidecar)
{
    int dupfd = dup(sfd), rv = 0, have_sidecar = 0, no_records;
    struct stat sidecar_st;
    struct dirent *de;
    DIR *dir;

    if (dupfd < 0)
        return -errno;
    if (!(dir = fdopendir(dupfd))) {
        close(dupfd);
        return -errno;
    }
    /* A folder without .mirrordav/ has no record to re-bind: saves a
     * lookup per file.  None can appear meanwhile: the barrier holds off
     * the writers. */
    no_records =
        fstatat(sfd, SIDECAR_DIR, &sidecar_st, AT_SYMLINK_NOFOLLOW) != 0;
    if (!sidecar && w->ops->sidecar_first && !no_records &&
        S_ISDIR(sidecar_st.st_mode)) {
        if ((rv = copy_subdir(w, sfd, dfd, SIDECAR_DIR, &sidecar_st, 1)))
            goto out;
    }
    while (!rv) {
        struct stat st;

        errno = 0;
        if (!(de = readdir(dir))) {
            rv = errno ? -errno : 0;
            break;
        }
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (sidecar &&
            (!strcmp(de->d_name, ".lock") || !strncmp(de->d_name, ".tmp-", 5)))
            continue;
        if (fstatat(sfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            rv = -errno;
            break;
        }
        if (!sidecar && !strcmp(de->d_name, SIDECAR_DIR) &&
            S_ISDIR(st.st_mode)) {
            have_sidecar = 1;
            sidecar_st = st;
            continue; /* before or after the files: see sidecar_first */
        }
        if (S_ISDIR(st.st_mode))
            rv = copy_subdir(w, sfd, dfd, de->d_name, &st, sidecar);
        else if (S_ISREG(st.st_mode)) {
            rv = w->ops->share_file(w->src, sfd, w->dst, dfd, de->d_name, &st,
                                    sidecar      ? SNAP_F_SIDECAR
                                    : no_records ? SNAP_F_NO_RECORDS
                                                 : 0);
            if (!rv && !sidecar) {
                w->counts->files++;
                w->counts->bytes += (uint64_t)st.st_size;
            }
        }
    }
    if (!rv && have_sidecar && !w->ops->sidecar_first) {
        /* Re-read: the backend may have re-bound records in it. */
        if (fstatat(sfd, SIDECAR_DIR, &sidecar_st, AT_SYMLINK_NOFOLLOW) != 0)
            rv = -errno;
        else
            rv = copy_subdir(w, sfd, dfd, SIDECAR_DIR, &sidecar_st, 1);
    }
out:
    closedir(dir);
    return rv;
}

int snap_tree_copy(const snap_tree_ops *ops, const char *src, const char *dst,
                   snap_counts *counts)
{
    struct walk w;
    struct stat st;
    int s, d, rv;

    w.ops = ops;
    w.counts = counts;
    if (snprintf(w.src, sizeof(w.src), "%s", src) >= (int)sizeof(w.src) ||
        snprintf(w.dst, sizeof(w.dst), "%s", dst) >= (int)sizeof(w.dst))
        return -ENAMETOOLONG;
    s = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s < 0)
        return -errno;
    d = open(dst, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d < 0) {
        rv = -errno;
        close(s);
        return rv;
    }
    if (fstat(s, &st) != 0)
        rv = -errno;
    else if ((rv = copy_dir(&w, s, d, 0)) == 0)
        rv = finish_dir(s, d, &st);
    close(s);
    close(d);
    return rv;
}

/* rm -r, streaming, without following symlinks.  Read-only btrfs
 * subvolumes must have been made writable first.
 *
 * Removing a hard link moves the ctime of the inode it shared with the
 * live tree, which would leave the live record unknown (see
 * backend_hardlink.c).  So for a data file that is the same inode as its
 * live counterpart (LIVE/REL), the live record is re-bound after the
 * unlink.  A request replacing the live file meanwhile makes LIVE/REL
 * another inode: then sidecar_rebind finds nothing to do. */
struct rm {
    char path[PATH_MAX], live[PATH_MAX];
    int has_live; /* live holds the counterpart of path */
};

static int remove_at(struct rm *r, int pfd, const char *name, int sidecar)
{
    size_t pl = strlen(r->path), ll = strlen(r->live);
    int fd, rv = 0;
    struct dirent *de;
    struct stat st, lbefore, lafter;
    DIR *dir;

    if (snprintf(r->path + pl, sizeof(r->path) - pl, "/%s", name) >=
            (int)(sizeof(r->path) - pl) ||
        snprintf(r->live + ll, sizeof(r->live) - ll, "/%s", name) >=
            (int)(sizeof(r->live) - ll)) {
        rv = -ENAMETOOLONG;
        goto out;
    }
    if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        rv = errno == ENOENT ? 0 : -errno;
        goto out;
    }
    if (!S_ISDIR(st.st_mode)) {
        int rebind = r->has_live && !sidecar && S_ISREG(st.st_mode) &&
                     st.st_nlink > 1 && lstat(r->live, &lbefore) == 0 &&
                     lbefore.st_ino == st.st_ino &&
                     lbefore.st_dev == st.st_dev;
        if (unlinkat(pfd, name, 0) != 0 && errno != ENOENT)
            rv = -errno;
        else if (rebind && lstat(r->live, &lafter) == 0) {
            r->live[ll] = '\0';
            rv = sidecar_rebind(r->live, name, &lbefore, &lafter);
        }
        goto out;
    }
    fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        rv = errno == ENOENT ? 0 : -errno;
        goto out;
    }
    if (!(dir = fdopendir(fd))) {
        close(fd);
        rv = -errno;
        goto out;
    }
    while (!rv) {
        errno = 0;
        if (!(de = readdir(dir))) {
            rv = errno ? -errno : 0;
            break;
        }
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            rv = remove_at(r, dirfd(dir), de->d_name,
                           sidecar || !strcmp(de->d_name, SIDECAR_DIR));
    }
    closedir(dir);
    if (!rv && unlinkat(pfd, name, AT_REMOVEDIR) != 0 && errno != ENOENT)
        rv = -errno;
out:
    r->path[pl] = r->live[ll] = '\0';
    return rv;
}

int snap_remove_tree(const char *path, const char *live)
{
    struct dirent *de;
    struct rm r;
    int fd, rv = 0;
    DIR *dir;

    r.has_live = live != NULL;
    if (snprintf(r.path, sizeof(r.path), "%s", path) >= (int)sizeof(r.path) ||
        snprintf(r.live, sizeof(r.live), "%s", live ? live : "") >=
            (int)sizeof(r.live))
        return -ENAMETOOLONG;
    fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOTDIR ? (unlink(path) ? -errno : 0) : -errno;
    if (!(dir = fdopendir(fd))) {
        close(fd);
        return -errno;
    }
    while (!rv) {
        errno = 0;
        if (!(de = readdir(dir))) {
            rv = errno ? -errno : 0;
            break;
        }
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            rv = remove_at(&r, dirfd(dir), de->d_name,
                           !strcmp(de->d_name, SIDECAR_DIR));
    }
    closedir(dir);
    if (!rv && rmdir(path) != 0 && errno != ENOENT)
        rv = -errno;
    return rv;
}
