/*
 * The volume's usage counter: see usage.h for what it counts, its locking
 * and its durability.
 *
 * The record is one line of exactly USAGE_REC bytes,
 *   "mirrordav-usage 1 used=%020llu crc=%08x\n" padded with spaces,
 * the CRC-32 (zlib) over the text before " crc=".  Being shorter than a
 * sector and always written whole at offset 0, an update is one pwrite
 * that the kernel never splits; the CRC still catches a record a crash
 * tore, which then reads as unknown.
 */
#include "sidecar/usage.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "sidecar/publish.h"
#include "sidecar/sidecar.h"
#include "snapshot/barrier.h"

#define USAGE_REC   64
#define USAGE_MAGIC "mirrordav-usage 1 used="

static int neg_errno(void)
{
    return errno ? -errno : -EIO;
}

static void format_rec(char rec[USAGE_REC], uint64_t used)
{
    char body[64];
    int n = snprintf(body, sizeof(body), USAGE_MAGIC "%020" PRIu64, used);
    uLong crc = crc32(0L, (const Bytef *)body, (uInt)n);

    memset(rec, ' ', USAGE_REC);
    n = snprintf(rec, USAGE_REC, "%s crc=%08lx", body, (unsigned long)crc);
    rec[n] = ' '; /* snprintf's NUL becomes padding */
    rec[USAGE_REC - 1] = '\n';
}

static int parse_rec(const char *rec, size_t len, uint64_t *used)
{
    size_t m = sizeof(USAGE_MAGIC) - 1;
    const char *crc_at;
    unsigned long want;
    char *end;

    if (len != USAGE_REC || rec[USAGE_REC - 1] != '\n' ||
        memcmp(rec, USAGE_MAGIC, m) != 0)
        return -EBADMSG;
    crc_at = rec + m + 20;
    if (memcmp(crc_at, " crc=", 5) != 0)
        return -EBADMSG;
    errno = 0;
    want = strtoul(crc_at + 5, &end, 16);
    if (errno || end != crc_at + 13 ||
        crc32(0L, (const Bytef *)rec, (uInt)(crc_at - rec)) != want)
        return -EBADMSG;
    *used = strtoull(rec + m, NULL, 10);
    return 0;
}

static int path_in(char *buf, size_t sz, const char *dir, const char *name)
{
    return (size_t)snprintf(buf, sz, "%s/%s", dir, name) >= sz ? -ENAMETOOLONG
                                                               : 0;
}

static int read_fd(int fd, uint64_t *used)
{
    char rec[USAGE_REC + 1];
    ssize_t n = pread(fd, rec, sizeof(rec), 0);

    if (n < 0)
        return neg_errno();
    return parse_rec(rec, (size_t)n, used);
}

int usage_read(const char *state_dir, uint64_t *used)
{
    char path[PATH_MAX];
    int fd, rc;

    if ((rc = path_in(path, sizeof(path), state_dir, USAGE_FILE)) != 0)
        return rc;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return neg_errno();
    rc = read_fd(fd, used);
    close(fd);
    return rc;
}

static int lock_open(const char *state_dir)
{
    char path[PATH_MAX];
    int fd;

    if (path_in(path, sizeof(path), state_dir, USAGE_LOCK_FILE) != 0)
        return -ENAMETOOLONG;
    if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0)
        return neg_errno();
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            int rc = neg_errno();
            close(fd);
            return rc;
        }
    }
    return fd;
}

int usage_begin(const char *state_dir, usage_txn *t)
{
    char path[PATH_MAX];

    t->fd = -1;
    t->known = 0;
    t->used = 0;
    if ((t->lock_fd = lock_open(state_dir)) < 0) {
        int rc = t->lock_fd;
        t->lock_fd = -1;
        return rc;
    }
    /* Opened under the lock: a recount replaces the file by rename, and
     * only holds the lock while it does. */
    if (path_in(path, sizeof(path), state_dir, USAGE_FILE) == 0 &&
        (t->fd = open(path, O_RDWR | O_CLOEXEC)) >= 0)
        t->known = read_fd(t->fd, &t->used) == 0;
    return 0;
}

int usage_end(usage_txn *t, int64_t delta)
{
    int rc = 0;

    if (t->lock_fd < 0)
        return 0;
    if (t->known && delta != 0) {
        char rec[USAGE_REC];
        uint64_t v = delta < 0 && (uint64_t)-delta > t->used
                         ? 0
                         : t->used + (uint64_t)delta;
        format_rec(rec, v);
        if (pwrite(t->fd, rec, USAGE_REC, 0) != USAGE_REC)
            rc = neg_errno();
        else
            t->used = v;
    }
    if (t->fd >= 0)
        close(t->fd);
    close(t->lock_fd); /* releases the flock */
    t->fd = t->lock_fd = -1;
    return rc;
}

/* nftw has no context argument: the sum is per thread (httpd's worker
 * threads may walk at the same time). */
static __thread uint64_t walk_sum;

static int walk_one(const char *path, const struct stat *st, int type,
                    struct FTW *ftw)
{
    if (type == FTW_D && ftw->level > 0 &&
        strcasecmp(path + ftw->base, SIDECAR_DIR) == 0)
        return FTW_SKIP_SUBTREE;
    if (type == FTW_F && S_ISREG(st->st_mode))
        walk_sum += (uint64_t)st->st_size;
    /* FTW_NS, FTW_DNR: an entry removed meanwhile, or unreadable; the
     * walk goes on (the caller's recount holds the barrier). */
    return FTW_CONTINUE;
}

int usage_tree_bytes(const char *dir, uint64_t *bytes)
{
    struct stat st;

    if (lstat(dir, &st) != 0)
        return neg_errno();
    if (S_ISREG(st.st_mode)) {
        *bytes = (uint64_t)st.st_size;
        return 0;
    }
    walk_sum = 0;
    /* 32 directory descriptors at most; deeper levels are reopened. */
    if (nftw(dir, walk_one, 32, FTW_PHYS | FTW_ACTIONRETVAL) != 0)
        return neg_errno();
    *bytes = walk_sum;
    return 0;
}

/* A new record by temp file, fsync, rename, fsync of state/: the counter
 * is the old one or the new one whatever crashes. */
static int write_durably(const char *state_dir, uint64_t used)
{
    char path[PATH_MAX], tmp[PATH_MAX], rec[USAGE_REC];
    int fd, rc = 0;

    if (path_in(path, sizeof(path), state_dir, USAGE_FILE) != 0 ||
        path_in(tmp, sizeof(tmp), state_dir, USAGE_FILE ".new") != 0)
        return -ENAMETOOLONG;
    format_rec(rec, used);
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0)
        return neg_errno();
    if (write(fd, rec, USAGE_REC) != USAGE_REC || fsync(fd) != 0)
        rc = neg_errno();
    if (close(fd) != 0 && !rc)
        rc = neg_errno();
    if (!rc && rename(tmp, path) != 0)
        rc = neg_errno();
    if (rc) {
        unlink(tmp);
        return rc;
    }
    return publish_fsync_dir(state_dir);
}

int usage_recount(const char *volume, int write, int timeout_ms,
                  int *old_known, uint64_t *old, uint64_t *counted)
{
    char state[PATH_MAX], live[PATH_MAX];
    barrier b = {-1};
    usage_txn t;
    int rc;

    if (path_in(state, sizeof(state), volume, "state") != 0 ||
        path_in(live, sizeof(live), volume, "live") != 0)
        return -ENAMETOOLONG;
    /* Barrier first, then the counter's lock: the order every writer
     * takes them in.  With both held no write is between its change and
     * its update of the counter, so the walk and the counter describe the
     * same tree. */
    if ((rc = barrier_enter_exclusive(volume, timeout_ms, &b)) != 0)
        return rc;
    if ((rc = usage_begin(state, &t)) != 0) {
        barrier_leave(&b);
        return rc;
    }
    *old_known = t.known;
    *old = t.used;
    rc = usage_tree_bytes(live, counted);
    if (!rc && write)
        rc = write_durably(state, *counted);
    t.known = 0; /* nothing more to write through the old file */
    usage_end(&t, 0);
    barrier_leave(&b);
    return rc;
}
