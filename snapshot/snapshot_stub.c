/*
 * TEMPORARY STUB of the snapshot engine, for the httpd side's tests only:
 * the lead replaces it with the snapshot library (snapshot/snapshot.c and
 * its backends) at merge.  It does what `cp -al live snapshots/NAME` does
 * (hard links; directories recreated with their mode and times; sidecar
 * folders included), under the exclusive write barrier, builds under a
 * hidden temporary name and renames into place, then writes the record.
 * No backend detection, no crash recovery, no durability beyond a
 * syncfs(): not the engine SPEC section 6 asks for.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "snapshot/barrier.h"
#include "snapshot/record.h"
#include "snapshot/snapshot.h"

int snapshot_name_valid(const char *name)
{
    size_t n = strlen(name), i;

    if (n == 0 || n > 128 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return 0;
    for (i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

struct counts {
    uint64_t files, bytes;
};

/* Links the tree under directory SRC into the new directory DST; counts
 * the data files (not those of sidecar folders). */
static int link_tree(int src, int dst, struct counts *c, int sidecars)
{
    DIR *d = fdopendir(src);
    struct dirent *de;
    int rc = 0;

    if (!d) {
        rc = -errno;
        close(src);
        return rc;
    }
    while (rc == 0 && (errno = 0, de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        struct stat st;

        if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0)
            continue;
        if (fstatat(dirfd(d), n, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            rc = errno == ENOENT ? 0 : -errno;
            continue;
        }
        if (S_ISREG(st.st_mode)) {
            if (linkat(dirfd(d), n, dst, n, 0) != 0)
                rc = -errno;
            if (!sidecars) {
                c->files++;
                c->bytes += (uint64_t)st.st_size;
            }
        }
        else if (S_ISDIR(st.st_mode)) {
            struct timespec ts[2] = {st.st_atim, st.st_mtim};
            int s, t;

            if (mkdirat(dst, n, st.st_mode & 07777) != 0) {
                rc = -errno;
                break;
            }
            s = openat(dirfd(d), n,
                       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            t = openat(dst, n,
                       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (s < 0 || t < 0) {
                rc = -errno;
                if (s >= 0)
                    close(s);
                if (t >= 0)
                    close(t);
                break;
            }
            rc = link_tree(s, t, c, sidecars || strcmp(n, ".mirrordav") == 0);
            /* (closes s) */
            /* Times last: linking the members moved them. */
            if (rc == 0 && futimens(t, ts) != 0)
                rc = -errno;
            close(t);
        }
        /* symlinks and special files are not part of the tree */
    }
    if (rc == 0 && errno != 0 && !de)
        rc = -errno;
    closedir(d);
    return rc;
}

static int remove_tree_at(int dir, const char *name)
{
    int fd =
        openat(dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct dirent *de;
    DIR *d;
    int rc = 0;

    if (fd < 0)
        return unlinkat(dir, name, 0) == 0 ? 0 : -errno;
    if (!(d = fdopendir(fd))) {
        close(fd);
        return -errno;
    }
    while ((de = readdir(d)) != NULL) {
        struct stat st;
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            int r = remove_tree_at(dirfd(d), de->d_name);
            if (r && !rc)
                rc = r;
        }
        else if (unlinkat(dirfd(d), de->d_name, 0) != 0 && !rc)
            rc = -errno;
    }
    closedir(d);
    if (unlinkat(dir, name, AT_REMOVEDIR) != 0 && !rc)
        rc = -errno;
    return rc;
}

static void say(char *err, size_t errsz, const char *what, int rc)
{
    if (err && errsz)
        snprintf(err, errsz, "%s: %s", what, strerror(-rc));
}

int snapshot_create(const char *volume, const char *name, const char *backend,
                    int barrier_timeout_ms, char *err, size_t errsz)
{
    char live[PATH_MAX], snaps[PATH_MAX], tmp[NAME_MAX + 1];
    struct counts c = {0, 0};
    struct stat st;
    barrier b;
    int rc, s = -1, t = -1, sd = -1;

    if (!snapshot_name_valid(name)) {
        say(err, errsz, "invalid snapshot name", -EINVAL);
        return -EINVAL;
    }
    if (backend && strcmp(backend, "hardlink") != 0) {
        say(err, errsz, "the stub has only the hardlink backend", -ENOTSUP);
        return -ENOTSUP;
    }
    snprintf(live, sizeof live, "%s/live", volume);
    snprintf(snaps, sizeof snaps, "%s/snapshots", volume);
    snprintf(tmp, sizeof tmp, ".tmp-%s-%ld", name, (long)getpid());
    if ((sd = open(snaps, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        rc = -errno;
        say(err, errsz, "no snapshots folder", rc);
        return rc;
    }
    if (fstatat(sd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        close(sd);
        say(err, errsz, "a snapshot of this name exists", -EEXIST);
        return -EEXIST;
    }
    if ((rc = barrier_enter_exclusive(volume, barrier_timeout_ms, &b)) != 0) {
        close(sd);
        say(err, errsz, "writers in flight did not finish in time", rc);
        return rc;
    }
    if ((s = open(live, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
        fstat(s, &st) != 0 || mkdirat(sd, tmp, st.st_mode & 07777) != 0 ||
        (t = openat(sd, tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        rc = -errno;
        say(err, errsz, "could not start the snapshot", rc);
        goto out;
    }
    rc = link_tree(s, t, &c, 0);
    s = -1; /* closed by link_tree */
    if (rc == 0) {
        struct timespec ts[2] = {st.st_atim, st.st_mtim};
        futimens(t, ts);
        syncfs(t);
        if (renameat2(sd, tmp, sd, name, RENAME_NOREPLACE) != 0)
            rc = -errno;
    }
    if (rc != 0) {
        say(err, errsz, "could not link the tree", rc);
        remove_tree_at(sd, tmp);
        goto out;
    }
    {
        char created[32], files[32], bytes[32];
        const char *keys[] = {"name", "created", "backend", "files", "bytes"};
        const char *vals[] = {name, created, "hardlink", files, bytes};

        snprintf(created, sizeof created, "%lld", (long long)time(NULL));
        snprintf(files, sizeof files, "%llu", (unsigned long long)c.files);
        snprintf(bytes, sizeof bytes, "%llu", (unsigned long long)c.bytes);
        if ((rc = snaprec_set(volume, name, keys, vals, 5)) != 0)
            say(err, errsz, "could not write the record", rc);
    }
out:
    barrier_leave(&b);
    if (s >= 0)
        close(s);
    if (t >= 0)
        close(t);
    close(sd);
    return rc;
}

int snapshot_delete(const char *volume, const char *name, char *err,
                    size_t errsz)
{
    char snaps[PATH_MAX], rec[PATH_MAX], tmp[NAME_MAX + 1];
    int sd, rc;

    if (!snapshot_name_valid(name)) {
        say(err, errsz, "invalid snapshot name", -EINVAL);
        return -EINVAL;
    }
    snprintf(snaps, sizeof snaps, "%s/snapshots", volume);
    snprintf(rec, sizeof rec, "%s/" SNAPREC_DIR "/%s.rec", volume, name);
    snprintf(tmp, sizeof tmp, ".del-%s-%ld", name, (long)getpid());
    if ((sd = open(snaps, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        rc = -errno;
        say(err, errsz, "no snapshots folder", rc);
        return rc;
    }
    /* Out of sight first, then the record, then the data. */
    if (renameat(sd, name, sd, tmp) != 0) {
        rc = -errno;
        close(sd);
        say(err, errsz, "could not remove the snapshot", rc);
        return rc;
    }
    unlink(rec);
    rc = remove_tree_at(sd, tmp);
    close(sd);
    if (rc)
        say(err, errsz, "could not remove every file of the snapshot", rc);
    return rc;
}
