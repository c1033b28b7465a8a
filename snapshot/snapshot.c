/*
 * The snapshot engine: names, backend detection, create, delete, recovery
 * and volume creation (see snapshot.h).
 *
 * Create, tree backends (reflink, hardlink), and what a crash leaves:
 *   1. barrier taken exclusively: no write request is between its first
 *      change and its reply, none starts until step 6;
 *   2. the tree is built in snapshots/.tmp-NAME-XXXXXX;
 *   3. syncfs: every new directory, link, clone and re-bound sidecar is on
 *      disk before the snapshot gets its name (a crash up to here leaves a
 *      ".tmp-" leftover, which snapshot_recover removes);
 *   4. rename to NAME (RENAME_NOREPLACE) and fsync of snapshots/: from
 *      here the snapshot exists, whole;
 *   5. the record is written (its own temp + fsync + rename + fsync); a
 *      crash between 4 and 5 leaves a whole snapshot without a record,
 *      which snapshot_recover writes (complete_records);
 *   6. barrier released.
 * btrfs: step 2-4 are one ioctl straight to NAME, which commits the
 * snapshot in its own transaction (whole or absent after a crash, no
 * temp name needed); the barrier is released right after it, and the
 * counts for the record are taken from the read-only snapshot, which no
 * write can change, so the barrier is not held for a walk of the tree.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "sidecar/publish.h"
#include "sidecar/sidecar.h"
#include "snapshot/barrier.h"
#include "snapshot/record.h"
#include "snapshot/snapshot.h"

int snapshot_name_valid(const char *name)
{
    size_t n = strlen(name), i;

    if (n < 1 || n > SNAPSHOT_NAME_MAX || name[0] == '.')
        return 0;
    for (i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static const char *const backend_names[] = {"auto", "btrfs", "reflink",
                                            "hardlink"};

int snapshot_backend_parse(const char *s, snap_backend_id *id)
{
    int i;

    for (i = 0; i < 4; i++)
        if (!strcmp(s, backend_names[i])) {
            *id = (snap_backend_id)i;
            return 0;
        }
    return -EINVAL;
}

const char *snapshot_backend_name(snap_backend_id id)
{
    return (unsigned)id < 4 ? backend_names[id] : "?";
}

static int pathf(char *out, size_t outsz, const char *fmt, const char *a,
                 const char *b)
{
    int n = snprintf(out, outsz, fmt, a, b);

    return n < 0 || (size_t)n >= outsz ? -ENAMETOOLONG : 0;
}

/* 1 if FICLONE works in SNAPDIR (two temp files, removed again). */
static int reflink_works(const char *snapdir)
{
    char a[PATH_MAX], b[PATH_MAX], buf[4096];
    int fa, fb, ok = 0;

    if (pathf(a, sizeof(a), "%s/%sprobe-XXXXXX", snapdir,
              SNAPSHOT_TMP_PREFIX) ||
        pathf(b, sizeof(b), "%s/%sprobe-XXXXXX", snapdir, SNAPSHOT_TMP_PREFIX))
        return 0;
    if ((fa = mkstemp(a)) < 0)
        return 0;
    if ((fb = mkstemp(b)) >= 0) {
        memset(buf, 'p', sizeof(buf));
        ok = write(fa, buf, sizeof(buf)) == (ssize_t)sizeof(buf) &&
             ioctl(fb, FICLONE, fa) == 0;
        close(fb);
        unlink(b);
    }
    close(fa);
    unlink(a);
    return ok;
}

int snapshot_detect(const char *volume, snap_backend_id *id)
{
    char live[PATH_MAX], snaps[PATH_MAX];
    int rv;

    if ((rv = pathf(live, sizeof(live), "%s/%s", volume, "live")) ||
        (rv = pathf(snaps, sizeof(snaps), "%s/%s", volume, "snapshots")))
        return rv;
    if (snap_btrfs_is_subvolume(live))
        *id = SNAP_BTRFS;
    else if (reflink_works(snaps))
        *id = SNAP_REFLINK;
    else
        *id = SNAP_HARDLINK;
    return 0;
}

/* Files and bytes of the tree at FD, sidecar folders left out; streaming
 * (one open directory per level). */
static int count_tree(int fd, snap_counts *c)
{
    struct dirent *de;
    int rv = 0, d = dup(fd);
    DIR *dir;

    if (d < 0)
        return -errno;
    if (!(dir = fdopendir(d))) {
        close(d);
        return -errno;
    }
    while (!rv) {
        struct stat st;

        errno = 0;
        if (!(de = readdir(dir))) {
            rv = errno ? -errno : 0;
            break;
        }
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
            !strcmp(de->d_name, SIDECAR_DIR))
            continue;
        if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            rv = -errno;
        else if (S_ISREG(st.st_mode)) {
            c->files++;
            c->bytes += (uint64_t)st.st_size;
        }
        else if (S_ISDIR(st.st_mode)) {
            int sub = openat(fd, de->d_name,
                             O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0)
                rv = -errno;
            else {
                rv = count_tree(sub, c);
                close(sub);
            }
        }
    }
    closedir(dir);
    return rv;
}

static int write_record(const char *volume, const char *name,
                        snap_backend_id id, const snap_counts *c)
{
    char created[32], files[32], bytes[32];
    const char *keys[] = {"name", "created", "backend", "files", "bytes"};
    const char *values[] = {name, created, snapshot_backend_name(id), files,
                            bytes};

    snprintf(created, sizeof(created), "%lld", (long long)time(NULL));
    snprintf(files, sizeof(files), "%llu", (unsigned long long)c->files);
    snprintf(bytes, sizeof(bytes), "%llu", (unsigned long long)c->bytes);
    return snaprec_set(volume, name, keys, values, 5);
}

/* Whether the sidecar re-binds of a walk may skip their fsyncs, made
 * durable together by one syncfs instead (as fsck --repair does); an fsync
 * each costs ~75x cp -al with a record on every file.  A re-bind replaces
 * a database by rename.  In the snapshot's temp tree (reflink) nothing is
 * at stake: a crash before the syncfs discards the whole tree.  In live/
 * (hardlink: link() and unlink() move the ctime of live files), a crash
 * before the syncfs may lose re-binds, and the records then read as
 * unknown, never wrong; but the database replaced must be whole: ext4
 * (auto_da_alloc, its default) and btrfs write a file's data before a
 * rename over an existing name commits, and tmpfs does not survive a crash
 * anyway.  Elsewhere (e.g. XFS) each re-bind keeps its fsyncs. */
static int rebinds_may_batch(const char *live, snap_backend_id id)
{
    struct statfs sf;

    if (id == SNAP_REFLINK)
        return 1;
    if (statfs(live, &sf) != 0)
        return 0;
    return sf.f_type == EXT4_SUPER_MAGIC || sf.f_type == BTRFS_SUPER_MAGIC ||
           sf.f_type == TMPFS_MAGIC;
}

/* syncfs of the file system holding PATH. */
static int create_tree(const char *live, const char *snaps, const char *name,
                       snap_backend_id id, snap_counts *c)
{
    char tmp[PATH_MAX], final[PATH_MAX], tmpl[PATH_MAX];
    int rv;

    if ((rv = pathf(tmpl, sizeof(tmpl), SNAPSHOT_TMP_PREFIX "%s-%sXXXXXX",
                    name, "")) ||
        (rv = pathf(tmp, sizeof(tmp), "%s/%s", snaps, tmpl)) ||
        (rv = pathf(final, sizeof(final), "%s/%s", snaps, name)))
        return rv;
    if (!mkdtemp(tmp))
        return -errno;
    sidecar_set_durable(!rebinds_may_batch(live, id));
    rv = snap_tree_copy(id == SNAP_REFLINK ? &snap_reflink_ops
                                           : &snap_hardlink_ops,
                        live, tmp, c);
    sidecar_set_durable(1);
    /* Everything the walk made, and the sidecars it re-bound, reach the
     * disk before the name that makes the snapshot real. */
    if (!rv)
        rv = publish_syncfs(tmp);
    if (!rv && renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_NOREPLACE))
        rv = -errno;
    if (rv) {
        snap_remove_tree(tmp, live); /* else recovery will */
        return rv;
    }
    return publish_fsync_dir(snaps);
}

int snapshot_create(const char *volume, const char *name,
                    const snapshot_opts *opts, snap_counts *counts,
                    snap_backend_id *used)
{
    char live[PATH_MAX], snaps[PATH_MAX], final[PATH_MAX];
    snap_backend_id id = opts ? opts->backend : SNAP_AUTO;
    int timeout = opts && opts->timeout_ms > 0 ? opts->timeout_ms
                                               : SNAPSHOT_DEFAULT_TIMEOUT_MS;
    snap_counts c = {0, 0, 0};
    struct stat sl, ss;
    struct timespec t0, t1;
    barrier b;
    int rv;

    if (!snapshot_name_valid(name))
        return -EINVAL;
    if ((rv = pathf(live, sizeof(live), "%s/%s", volume, "live")) ||
        (rv = pathf(snaps, sizeof(snaps), "%s/%s", volume, "snapshots")) ||
        (rv = pathf(final, sizeof(final), "%s/%s", snaps, name)))
        return rv;
    if (stat(live, &sl) != 0 || stat(snaps, &ss) != 0)
        return -errno;
    if (sl.st_dev != ss.st_dev && !snap_btrfs_is_subvolume(live))
        return -EXDEV; /* links and clones stay within one file system */
    if (id == SNAP_AUTO && (rv = snapshot_detect(volume, &id)) != 0)
        return rv;
    if (id == SNAP_BTRFS && !snap_btrfs_is_subvolume(live))
        return -EOPNOTSUPP;
    if (id == SNAP_REFLINK && !reflink_works(snaps))
        return -EOPNOTSUPP;
    if ((rv = barrier_enter_exclusive(volume, timeout, &b)) != 0)
        return rv;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (access(final, F_OK) == 0) {
        rv = -EEXIST;
        goto out;
    }
    if (id == SNAP_BTRFS) {
        rv = snap_btrfs_snapshot(live, snaps, name);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        barrier_leave(&b);
        if (!rv)
            rv = publish_fsync_dir(snaps);
        if (!rv) {
            int fd = open(final, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (fd < 0)
                rv = -errno;
            else {
                rv = count_tree(fd, &c);
                close(fd);
            }
        }
    }
    else
        rv = create_tree(live, snaps, name, id, &c);
    if (!rv) {
        /* An orphan record of an earlier snapshot of this name (crash in
         * a delete) must not lend its verification result to this one. */
        snaprec_delete(volume, name);
        rv = write_record(volume, name, id, &c);
    }
out:
    if (b.fd >= 0)
        clock_gettime(CLOCK_MONOTONIC, &t1);
    barrier_leave(&b);
    if (!rv) {
        c.barrier_us = (uint64_t)((t1.tv_sec - t0.tv_sec) * 1000000 +
                                  (t1.tv_nsec - t0.tv_nsec) / 1000);
        if (counts)
            *counts = c;
        if (used)
            *used = id;
    }
    return rv;
}

int snapshot_delete(const char *volume, const char *name)
{
    char snaps[PATH_MAX], final[PATH_MAX], tmp[PATH_MAX], live[PATH_MAX];
    struct stat st;
    int rv, had_tree;

    if (!snapshot_name_valid(name))
        return -EINVAL;
    if ((rv = pathf(snaps, sizeof(snaps), "%s/%s", volume, "snapshots")) ||
        (rv = pathf(live, sizeof(live), "%s/%s", volume, "live")) ||
        (rv = pathf(final, sizeof(final), "%s/%s", snaps, name)))
        return rv;
    had_tree = lstat(final, &st) == 0;
    if (had_tree) {
        if (snprintf(tmp, sizeof(tmp),
                     "%s/" SNAPSHOT_TMP_PREFIX "del-%s-%ld-%ld", snaps, name,
                     (long)getpid(), (long)time(NULL)) >= (int)sizeof(tmp))
            return -ENAMETOOLONG;
        if (snap_btrfs_is_subvolume(final) &&
            (rv = snap_btrfs_make_writable(final)) != 0)
            return rv;
        /* The name goes first, atomically and durably: from then on no
         * reader sees a snapshot being emptied, and a crash leaves a
         * ".tmp-" leftover for recovery. */
        if (renameat2(AT_FDCWD, final, AT_FDCWD, tmp, RENAME_NOREPLACE) != 0)
            return -errno;
        if ((rv = publish_fsync_dir(snaps)) != 0)
            return rv;
        /* The live re-binds (see rebinds_may_batch) reach the disk by the
         * syncfs after the removal. */
        sidecar_set_durable(!rebinds_may_batch(live, SNAP_HARDLINK));
        rv = snap_remove_tree(tmp, live);
        sidecar_set_durable(1);
        if (rv != 0 && rv != -ENOENT)
            return rv;
        if ((rv = publish_syncfs(snaps)) != 0)
            return rv;
    }
    /* The record last: a crash before this leaves a record without a
     * snapshot, which list and prune ignore and the next delete or create
     * of the name removes. */
    rv = snaprec_delete(volume, name);
    if (rv == -ENOENT)
        rv = had_tree ? 0 : -ENOENT;
    return rv;
}

/* 1 if SNAPS holds a ".tmp-" entry. */
static int has_leftovers(const char *snaps)
{
    struct dirent *de;
    DIR *d = opendir(snaps);
    int found = 0;

    if (!d)
        return 0;
    while (!found && (de = readdir(d)))
        found = !strncmp(de->d_name, SNAPSHOT_TMP_PREFIX,
                         strlen(SNAPSHOT_TMP_PREFIX));
    closedir(d);
    return found;
}

/* A crash between a snapshot's rename (step 4) and its record (step 5)
 * leaves a whole snapshot without a record.  Whole, because it has its
 * real name: the record is made for it here, with the counts taken from
 * the tree (a snapshot no write changes), the volume's backend, and the
 * ctime of its folder (the rename that made it real) as its creation
 * time.  A create racing this pass writes its own record over this one
 * with the same facts. */
static int complete_records(const char *volume, const char *snaps)
{
    char path[PATH_MAX], val[32];
    struct dirent *de;
    int rv = 0;
    DIR *d = opendir(snaps);

    if (!d)
        return errno == ENOENT ? 0 : -errno;
    while (!rv && (de = readdir(d))) {
        snap_counts c = {0, 0, 0};
        snap_backend_id id;
        struct stat st;
        char created[32], files[32], bytes[32];
        const char *keys[] = {"name", "created", "backend", "files", "bytes"};
        const char *values[] = {de->d_name, created, NULL, files, bytes};
        int fd;

        if (!snapshot_name_valid(de->d_name) ||
            snaprec_get(volume, de->d_name, "created", val, sizeof(val)) !=
                -ENOENT)
            continue;
        if ((rv = pathf(path, sizeof(path), "%s/%s", snaps, de->d_name)))
            break;
        fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            continue; /* not a snapshot folder */
        if (fstat(fd, &st) != 0 || (rv = count_tree(fd, &c)) != 0 ||
            (rv = snapshot_detect(volume, &id)) != 0) {
            rv = rv ? rv : -errno;
            close(fd);
            break;
        }
        close(fd);
        snprintf(created, sizeof(created), "%lld", (long long)st.st_ctime);
        snprintf(files, sizeof(files), "%llu", (unsigned long long)c.files);
        snprintf(bytes, sizeof(bytes), "%llu", (unsigned long long)c.bytes);
        values[2] = snapshot_backend_name(id);
        rv = snaprec_set(volume, de->d_name, keys, values, 5);
    }
    closedir(d);
    return rv;
}

int snapshot_recover(const char *volume, int timeout_ms)
{
    char snaps[PATH_MAX], path[PATH_MAX], live[PATH_MAX];
    struct dirent *de;
    int rv, removed = 0;
    barrier b;
    DIR *d;

    if ((rv = pathf(snaps, sizeof(snaps), "%s/%s", volume, "snapshots")) ||
        (rv = pathf(live, sizeof(live), "%s/%s", volume, "live")))
        return rv;
    if ((rv = complete_records(volume, snaps)) != 0)
        return rv;
    if (!has_leftovers(snaps))
        return 0; /* the common case takes no barrier */
    if ((rv = barrier_enter_exclusive(
             volume, timeout_ms > 0 ? timeout_ms : SNAPSHOT_DEFAULT_TIMEOUT_MS,
             &b)) != 0)
        return rv;
    if (!(d = opendir(snaps))) {
        rv = -errno;
        barrier_leave(&b);
        return rv;
    }
    while (!rv && (de = readdir(d))) {
        /* Only temp names: a real name never starts with '.'. */
        if (strncmp(de->d_name, SNAPSHOT_TMP_PREFIX,
                    strlen(SNAPSHOT_TMP_PREFIX)))
            continue;
        if ((rv = pathf(path, sizeof(path), "%s/%s", snaps, de->d_name)))
            break;
        if (snap_btrfs_is_subvolume(path))
            snap_btrfs_make_writable(path);
        sidecar_set_durable(!rebinds_may_batch(live, SNAP_HARDLINK));
        rv = snap_remove_tree(path, live);
        sidecar_set_durable(1);
        if (rv == -ENOENT)
            rv = 0; /* a concurrent delete removed its own */
        else if (!rv)
            removed++;
    }
    closedir(d);
    if (!rv)
        rv = publish_syncfs(snaps); /* the removals and the live re-binds */
    barrier_leave(&b);
    return rv ? rv : removed;
}

int snapshot_volume_init(const char *volume, int *subvol)
{
    static const char *const dirs[] = {"snapshots", "state"};
    char path[PATH_MAX];
    struct statfs sf;
    int rv, i;

    *subvol = 0;
    if (mkdir(volume, 0755) != 0 && errno != EEXIST)
        return -errno;
    if ((rv = pathf(path, sizeof(path), "%s/%s", volume, "live")))
        return rv;
    if (access(path, F_OK) == 0)
        *subvol = snap_btrfs_is_subvolume(path);
    else if (statfs(volume, &sf) == 0 && sf.f_type == BTRFS_SUPER_MAGIC &&
             snap_btrfs_subvol_create(volume, "live") == 0)
        *subvol = 1;
    else if (mkdir(path, 0755) != 0)
        return -errno;
    for (i = 0; i < 2; i++) {
        if ((rv = pathf(path, sizeof(path), "%s/%s", volume, dirs[i])))
            return rv;
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            return -errno;
    }
    return publish_fsync_dir(volume);
}
