/*
 * patchlog: PATCH-APPLY's in-place journal and the queue of pending
 * SHA-1s.  See patchlog.h for the protocol; the comments here say why each
 * step comes where it does.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "sidecar/patchlog.h"
#include "sidecar/publish.h"
#include "sidecar/sidecar.h"

#define COPY_BUF (256 * 1024)

static int sync_dir(const char *dir)
{
    return publish_sync_dir(dir);
}

/* DIR and NAME of PATH (a path with at least one '/'), in BUF. */
static int split_path(const char *path, char *buf, size_t bufsz,
                      const char **dir, const char **name)
{
    char *slash;

    if (snprintf(buf, bufsz, "%s", path) >= (int)bufsz)
        return -ENAMETOOLONG;
    slash = strrchr(buf, '/');
    if (!slash || slash == buf)
        return -EINVAL;
    *slash = '\0';
    *dir = buf;
    *name = slash + 1;
    return 0;
}

/* Whether lseek(SEEK_DATA) on FD's file system finds exactly the blocks
 * written (elsewhere, Linux may call the whole file data, which would copy
 * a hole's zeros over the file). */
static int holes_exact(int fd)
{
    struct statfs sf;

    if (fstatfs(fd, &sf) != 0)
        return 0;
    switch ((unsigned long)sf.f_type) {
    case 0xEF53UL:     /* ext2/3/4 */
    case 0x58465342UL: /* XFS */
    case 0x9123683EUL: /* btrfs */
    case 0x01021994UL: /* tmpfs */
        return 1;
    default:
        return 0;
    }
}

int patchlog_stage(const char *state, patchlog *pl)
{
    memset(pl, 0, sizeof(*pl));
    pl->data_fd = pl->rec_fd = -1;
    if (snprintf(pl->data, sizeof(pl->data), "%s/patch-XXXXXX.data", state) >=
        (int)sizeof(pl->data))
        return -ENAMETOOLONG;
    pl->data_fd = mkostemps(pl->data, 5, O_CLOEXEC);
    if (pl->data_fd < 0)
        return -errno;
    /* Locked for as long as this request owns it: a recovery running
     * meanwhile (fsck --repair) skips staged data that is locked. */
    flock(pl->data_fd, LOCK_EX);
    snprintf(pl->rec, sizeof(pl->rec), "%.*s.rec", (int)(strlen(pl->data) - 5),
             pl->data);
    pl->sparse = holes_exact(pl->data_fd);
    return 0;
}

static int write_all(int fd, const char *b, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, b, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        b += n;
        len -= (size_t)n;
    }
    return 0;
}

int patchlog_write_record(const char *state, patchlog *pl)
{
    char tmp[4096 + 8], *text = NULL;
    int fd, rc, n;

    /* O is durable before the record that points at it: a record is only
     * ever replayed with its whole O.  Its size is O's length (a sparse O
     * may end in a hole), which replay checks. */
    if (ftruncate(pl->data_fd, (off_t)pl->len) != 0)
        return -errno;
    if ((rc = publish_sync_fd(pl->data_fd)) != 0)
        return rc;
    n = asprintf(&text,
                 "mirrordav-patch 1\nino %" PRIu64 "\noffset %" PRIu64
                 "\nlen %" PRIu64 "\nsize %" PRIu64 "\nsparse %d\ntarget %s",
                 pl->ino, pl->offset, pl->len, pl->new_size, pl->sparse,
                 pl->target);
    if (n < 0)
        return -ENOMEM;
    snprintf(tmp, sizeof(tmp), "%.*s.rtmp", (int)(strlen(pl->rec) - 4),
             pl->rec);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        free(text);
        return -errno;
    }
    /* Locked before it gets its name, so that no recovery ever sees it
     * unlocked while this request runs. */
    flock(fd, LOCK_EX);
    rc = write_all(fd, text, (size_t)n);
    free(text);
    /* Whole before named: a crash leaves a complete record or none (a
     * .rtmp, which recovery removes), never a torn one. */
    if (!rc)
        rc = publish_sync_fd(fd);
    if (!rc && rename(tmp, pl->rec) != 0)
        rc = -errno;
    /* The name durable before the file changes: from here on, a crash is
     * completed by replaying the record. */
    if (!rc)
        rc = sync_dir(state);
    if (rc) {
        close(fd);
        unlink(tmp);
        unlink(pl->rec);
        return rc;
    }
    pl->rec_fd = fd;
    return 0;
}

/* Copies FROM[DONE, LEN) to TO at OFFSET + DONE. */
static int copy_part(int from, int to, char *buf, uint64_t offset,
                     uint64_t done, uint64_t len)
{
    int rc = 0;

    while (done < len) {
        size_t want = len - done > COPY_BUF ? COPY_BUF : (size_t)(len - done);
        ssize_t n = pread(from, buf, want, (off_t)done);
        ssize_t w;
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO; /* staged O shorter than recorded */
        for (ssize_t off = 0; off < n; off += w) {
            w = pwrite(to, buf + off, (size_t)(n - off),
                       (off_t)(offset + done + (uint64_t)off));
            if (w < 0 && errno == EINTR) {
                w = 0;
                continue;
            }
            if (w <= 0)
                return w < 0 ? -errno : -EIO;
        }
        done += (uint64_t)n;
    }
    return rc;
}

/* Copies the staged O (only its data, when SPARSE: the holes are bytes
 * equal to the file's) into TO at OFFSET. */
static int copy_range(int from, int to, uint64_t offset, uint64_t len,
                      int sparse)
{
    char *buf = malloc(COPY_BUF);
    uint64_t pos = 0;
    int rc = 0;

    if (!buf)
        return -ENOMEM;
    if (!sparse)
        rc = copy_part(from, to, buf, offset, 0, len);
    while (sparse && !rc && pos < len) {
        off_t a = lseek(from, (off_t)pos, SEEK_DATA), b;
        if (a < 0) {
            if (errno != ENXIO) /* ENXIO: no data after POS */
                rc = -errno;
            break;
        }
        b = lseek(from, a, SEEK_HOLE);
        if (b < 0) {
            rc = -errno;
            break;
        }
        if ((uint64_t)b > len)
            b = (off_t)len;
        rc = copy_part(from, to, buf, offset, (uint64_t)a, (uint64_t)b);
        pos = (uint64_t)b;
    }
    free(buf);
    return rc;
}

int patchlog_apply(const patchlog *pl, int target_fd)
{
    int rc;

    /* Readers (GET/HEAD) hold the file's flock shared while they send it:
     * none of them sees the bytes between the first pwrite and the
     * truncate. */
    while (flock(target_fd, LOCK_EX) != 0)
        if (errno != EINTR)
            return -errno;
    rc = copy_range(pl->data_fd, target_fd, pl->offset, pl->len, pl->sparse);
    /* Writing O then setting the size is idempotent: a replay of a record
     * whose apply had (partly) run writes the same bytes again.  For a
     * patch that keeps the tail, the size is already the new size. */
    if (!rc && ftruncate(target_fd, (off_t)pl->new_size) != 0)
        rc = -errno;
    /* Durable before the record is retired: a retired record is never
     * replayed again. */
    if (!rc)
        rc = publish_sync_fd(target_fd);
    flock(target_fd, LOCK_UN);
    return rc;
}

void patchlog_retire(const char *state, patchlog *pl)
{
    (void)state;
    /* The record goes first, its data after.  If a crash lets the data's
     * removal reach the disk and not the record's, recovery finds a
     * record without data: the data is only removed here, after the apply
     * was fsynced, so such a record is complete and is simply dropped. */
    if (pl->rec_fd >= 0) {
        unlink(pl->rec);
        close(pl->rec_fd);
        pl->rec_fd = -1;
    }
    if (pl->data_fd >= 0) {
        unlink(pl->data);
        close(pl->data_fd);
        pl->data_fd = -1;
    }
}

static int parse_record(int fd, patchlog *pl, char **target)
{
    char buf[8192];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    char *t;

    if (n <= 0)
        return -EBADMSG;
    buf[n] = '\0';
    if (sscanf(buf,
               "mirrordav-patch 1\nino %" SCNu64 "\noffset %" SCNu64
               "\nlen %" SCNu64 "\nsize %" SCNu64 "\nsparse %d\n",
               &pl->ino, &pl->offset, &pl->len, &pl->new_size,
               &pl->sparse) != 5)
        return -EBADMSG;
    t = strstr(buf, "\ntarget ");
    if (!t || t[8] != '/')
        return -EBADMSG;
    *target = strdup(t + 8);
    return *target ? 0 : -ENOMEM;
}

/* Replays one locked record REC_FD (its path in PL->rec). */
static int replay(const char *state, patchlog *pl, patchlog_report_fn report,
                  void *ctx)
{
    char *target = NULL;
    struct stat st, dst;
    int fd, held = -1, rc = parse_record(pl->rec_fd, pl, &target);

    if (rc) {
        if (report)
            report(ctx, pl->rec, "unreadable PATCH-APPLY record kept", rc);
        return rc;
    }
    pl->target = target;
    pl->data_fd = open(pl->data, O_RDONLY | O_CLOEXEC);
    if (pl->data_fd < 0) {
        /* Data is removed only after the apply was durable (retire). */
        if (report)
            report(ctx, target, "PATCH-APPLY already applied; record removed",
                   0);
        patchlog_retire(state, pl);
        free(target);
        return 0;
    }
    fd = open(target, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0 || (uint64_t)st.st_ino != pl->ino ||
        fstat(pl->data_fd, &dst) != 0 || (uint64_t)dst.st_size != pl->len) {
        /* The file was removed or replaced since (its new data supersedes
         * this patch), or the staged O is not whole: nothing to replay. */
        if (report)
            report(ctx, target,
                   "PATCH-APPLY record does not match the file; dropped", 0);
        if (fd >= 0)
            close(fd);
        patchlog_retire(state, pl);
        free(target);
        return 0;
    }
    /* The entry held until the record describes the new data (a worker
     * running meanwhile, e.g. a server's while fsck repairs, would drop
     * it as current for the old data). */
    rc = patchlog_pending_add(state, target, &held);
    if (!rc)
        rc = patchlog_apply(pl, fd);
    if (!rc && fstat(fd, &st) == 0)
        patchlog_record_new_data(target, &st);
    if (held >= 0)
        close(held);
    close(fd);
    if (report)
        report(ctx, target,
               rc ? "could not replay PATCH-APPLY"
                  : "interrupted PATCH-APPLY completed",
               rc);
    if (!rc)
        patchlog_retire(state, pl);
    free(target);
    return rc;
}

static int has_suffix(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* Whether the staged data at PATH (".data") has its record. */
static int has_record(const char *path)
{
    char rec[4096];
    struct stat st;

    snprintf(rec, sizeof(rec), "%.*s.rec", (int)(strlen(path) - 5), path);
    return stat(rec, &st) == 0;
}

int patchlog_recover(const char *state, int repair, patchlog_report_fn report,
                     void *ctx)
{
    DIR *d = opendir(state);
    struct dirent *e;
    int left = 0;

    if (!d)
        return errno == ENOENT ? 0 : -errno;
    while ((e = readdir(d)) != NULL) {
        char path[4096];
        patchlog pl;
        int fd;

        if (strncmp(e->d_name, "patch-", 6) != 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", state, e->d_name);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        /* Locked: a request running now owns it. */
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            close(fd);
            continue;
        }
        if (has_suffix(e->d_name, ".rtmp") ||
            (has_suffix(e->d_name, ".data") && !has_record(path))) {
            /* A record never made whole, or O staged without a record:
             * the file was never touched. */
            if (repair)
                unlink(path);
            close(fd);
            continue;
        }
        if (!has_suffix(e->d_name, ".rec")) {
            close(fd);
            continue;
        }
        memset(&pl, 0, sizeof(pl));
        pl.data_fd = -1;
        pl.rec_fd = fd;
        snprintf(pl.rec, sizeof(pl.rec), "%s", path);
        snprintf(pl.data, sizeof(pl.data), "%.*s.data",
                 (int)(strlen(path) - 4), path);
        if (!repair) {
            char *target = NULL;
            if (report)
                report(ctx,
                       parse_record(fd, &pl, &target) == 0 ? target : path,
                       "interrupted PATCH-APPLY to replay", 0);
            free(target);
            left++;
            close(fd);
            continue;
        }
        if (replay(state, &pl, report, ctx) != 0) {
            left++;
            if (pl.rec_fd >= 0)
                close(pl.rec_fd);
            if (pl.data_fd >= 0)
                close(pl.data_fd);
        }
    }
    closedir(d);
    return left;
}

/* MIRRORDAV_TEST_PENDING_DELAY_US: a test-only pause while an entry is
 * being made (t/unit/test_patchlog.c widens the window a worker could
 * look into).  Read once per process. */
static void test_pause(void)
{
    static int us = -1;

    if (us < 0) {
        const char *e = getenv("MIRRORDAV_TEST_PENDING_DELAY_US");
        us = e ? atoi(e) : 0;
    }
    if (us > 0)
        usleep((useconds_t)us);
}

int patchlog_pending_add(const char *state, const char *path, int *held)
{
    char dir[4096], tmp[4400], entry[4400];
    int fd = -1, rc, named = 0;

    if (held)
        *held = -1;

    snprintf(dir, sizeof(dir), "%s/pending", state);
    if (mkdir(dir, 0755) == 0) {
        if ((rc = sync_dir(state)) != 0)
            return rc;
    }
    else if (errno != EEXIST)
        return -errno;
    for (;;) {
        snprintf(tmp, sizeof(tmp), "%s/t-XXXXXX", dir);
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
            return -errno;
        /* Locked before it is named p- (the rename keeps the inode and
         * its lock): a worker never finds a held entry unlocked. */
        if (held && flock(fd, LOCK_EX) != 0) {
            rc = -errno;
            close(fd);
            unlink(tmp);
            return rc;
        }
        rc = write_all(fd, path, strlen(path));
        /* Whole and durable before it is named p-: a worker listing
         * pending/ meanwhile never finds it empty, which it would take for
         * the entry of a writer that crashed before the data changed, and
         * remove; the entry would then be lost while the data changes. */
        if (!rc)
            rc = publish_sync_fd(fd);
        test_pause();
        snprintf(entry, sizeof(entry), "%s/p-%s", dir, tmp + strlen(dir) + 3);
        /* Never over another entry (a p- whose t- name was freed). */
        if (!rc) {
            if (renameat2(AT_FDCWD, tmp, AT_FDCWD, entry, RENAME_NOREPLACE))
                rc = -errno;
            else
                named = 1;
        }
        if (rc == -EEXIST) {
            rc = 0;
            unlink(tmp);
            close(fd);
            continue;
        }
        break;
    }
    /* The name durable before the data changes: a crash after the change
     * always finds the entry.  A crash before the rename leaves a t-
     * file, removed at the next start (PATCHLOG_PENDING_MARK). */
    if (!rc)
        rc = sync_dir(dir);
    if (rc)
        unlink(named ? entry : tmp);
    if (!rc && held)
        *held = fd;
    else
        close(fd);
    return rc;
}

/* The SHA-1 of FD's bytes into HEX; with HEX256 and HEXMD5 (NULL: not
 * wanted) the SHA-256 and the MD5 of the same read. */
static int hash_fd(int fd, char hex[41], char hex256[65], char hexmd5[33])
{
    const EVP_MD *mds[3] = {EVP_sha1(), EVP_sha256(), EVP_md5()};
    char *out[3] = {hex, hex256, hexmd5};
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctxs[3] = {NULL, NULL, NULL};
    char *buf = malloc(COPY_BUF);
    off_t off = 0;
    int rc = 0, k;

    for (k = 0; k < 3; k++)
        if (out[k] && (!(ctxs[k] = EVP_MD_CTX_new()) ||
                       EVP_DigestInit_ex(ctxs[k], mds[k], NULL) != 1))
            rc = -ENOMEM;
    if (!buf)
        rc = -ENOMEM;
    while (!rc) {
        ssize_t n = pread(fd, buf, COPY_BUF, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            rc = -errno;
        if (n <= 0)
            break;
        for (k = 0; k < 3; k++)
            if (ctxs[k] && EVP_DigestUpdate(ctxs[k], buf, (size_t)n) != 1)
                rc = -EIO;
        off += n;
    }
    for (k = 0; k < 3; k++) {
        if (!rc && ctxs[k] &&
            (EVP_DigestFinal_ex(ctxs[k], md, &mdlen) != 1 ||
             mdlen != (unsigned)EVP_MD_get_size(mds[k])))
            rc = -EIO;
        for (unsigned i = 0; !rc && ctxs[k] && i < mdlen; i++)
            sprintf(out[k] + 2 * i, "%02x", md[i]);
        EVP_MD_CTX_free(ctxs[k]);
    }
    free(buf);
    return rc;
}

/* One pending PATH: 0 when stored (or nothing left to do), -ESTALE when
 * a newer write overtook it, another -errno on failure. */
static int hash_one(const char *path, patchlog_report_fn report, void *ctx)
{
    char buf[4096], hex[41], hex256[65], hexmd5[33];
    const char *dir, *name;
    int want256, wantmd5;
    sidecar_record rec;
    struct stat before;
    sidecar *sc;
    int fd, rc;

    if ((rc = split_path(path, buf, sizeof(buf), &dir, &name)) != 0)
        return rc;
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno; /* gone: nothing to hash */
    if (fstat(fd, &before) != 0 || !S_ISREG(before.st_mode)) {
        close(fd);
        return 0;
    }
    memset(&rec, 0, sizeof(rec));
    rc = sidecar_open(dir, name, 0, &sc);
    if (!rc) {
        rc = sidecar_get_record(sc, &rec);
        sidecar_close(sc);
    }
    if (rc && rc != -ENOENT) {
        close(fd);
        return rc;
    }
    if (sidecar_hash_current(&rec, &before)) {
        close(fd);
        return 0; /* already recorded */
    }
    /* The digests recorded beside the SHA-1 (MirrorDAVDigest) are those
     * the record held for an earlier version: the same set again.  No
     * lock: a write meanwhile moves the mtime (or replaces the inode) or
     * the content version, and the store refuses the hashes. */
    want256 = rec.sha256[0] != '\0';
    wantmd5 = rec.md5[0] != '\0';
    rc = hash_fd(fd, hex, want256 ? hex256 : NULL, wantmd5 ? hexmd5 : NULL);
    close(fd);
    if (rc)
        return rc;
    rc = sidecar_store_digests(dir, name, hex, want256 ? hex256 : NULL,
                               wantmd5 ? hexmd5 : NULL, rec.version, &before);
    if (rc == -ESTALE && report)
        report(ctx, path,
               "SHA-1 computed for an older content version; stale store "
               "refused",
               rc);
    return rc;
}

/* A record that does not describe the data at PATH at all (a crash
 * between the data's change and the record's) is brought up to date: new
 * version, SHA-1 pending. */
static void mark_pending(const char *path)
{
    sidecar_record rec;
    char b[4096];
    const char *dn, *nm;
    struct stat st;
    sidecar *sc;

    if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return;
    memset(&rec, 0, sizeof(rec));
    if (split_path(path, b, sizeof(b), &dn, &nm) == 0 &&
        sidecar_open(dn, nm, 0, &sc) == 0) {
        sidecar_get_record(sc, &rec);
        sidecar_close(sc);
    }
    if (!rec.bound || rec.ino != (uint64_t)st.st_ino ||
        rec.size != (uint64_t)st.st_size ||
        rec.mtime != (int64_t)st.st_mtim.tv_sec ||
        rec.mtime_nsec != (uint32_t)st.st_mtim.tv_nsec)
        patchlog_record_new_data(path, &st);
}

int patchlog_pending_run(const char *state, int list_only,
                         patchlog_report_fn report, void *ctx)
{
    char dir[4096];
    DIR *d;
    struct dirent *e;
    int left = 0;

    snprintf(dir, sizeof(dir), "%s/pending", state);
    d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    while ((e = readdir(d)) != NULL) {
        char entry[4400], path[4097];
        ssize_t n;
        int fd, rc = -ESTALE, tries;

        if (list_only == PATCHLOG_PENDING_MARK &&
            strncmp(e->d_name, "t-", 2) == 0) {
            /* An entry being made when the server stopped: its request
             * had not changed the data yet.  Only at start, when no
             * request can be making one. */
            snprintf(entry, sizeof(entry), "%s/%s", dir, e->d_name);
            unlink(entry);
            continue;
        }
        if (strncmp(e->d_name, "p-", 2) != 0)
            continue;
        snprintf(entry, sizeof(entry), "%s/%s", dir, e->d_name);
        fd = open(entry, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        /* Another worker (another child, or fsck) has it, or its writer
         * holds it until the record describes the new data. */
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            close(fd);
            left++;
            continue;
        }
        n = pread(fd, path, sizeof(path) - 1, 0);
        if (n <= 0) {
            /* Empty: its writer crashed before the fsync, before the data
             * changed. */
            if (!list_only)
                unlink(entry);
            close(fd);
            continue;
        }
        path[n] = '\0';
        if (list_only == PATCHLOG_PENDING_MARK) {
            mark_pending(path);
            left++;
            close(fd);
            continue;
        }
        if (list_only) {
            if (report)
                report(ctx, path, "SHA-1 pending", 0);
            left++;
            close(fd);
            continue;
        }
        /* A stale store means that a newer write came in meanwhile; it
         * queued its own entry, but this one is only removed once a hash
         * of the data as it then is has been stored. */
        for (tries = 0; tries < 3 && rc == -ESTALE; tries++) {

            rc = hash_one(path, report, ctx);
            /* A record that does not describe the data at all (a crash
             * between the data's change and the record's) is brought up
             * to date first, then hashed. */
            if (rc == -ESTALE)
                mark_pending(path);
        }
        if (rc == 0) {
            unlink(entry);
            if (report)
                report(ctx, path, "SHA-1 stored", 0);
        }
        else {
            left++;
            if (report && rc != -ESTALE)
                report(ctx, path, "could not compute the SHA-1", rc);
        }
        close(fd);
    }
    closedir(d);
    return left;
}

int patchlog_record_new_data(const char *path, const struct stat *st)
{
    char buf[4096];
    const char *dir, *name;
    sidecar_record rec;
    struct stat now;
    sidecar *sc;
    int rc;

    if ((rc = split_path(path, buf, sizeof(buf), &dir, &name)) != 0)
        return rc;
    if ((rc = sidecar_open(dir, name, 1, &sc)) != 0)
        return rc;
    /* Under the sidecar lock: a write that replaced the data records its
     * own (as PUT's receipt does). */
    if (lstat(path, &now) != 0 || now.st_ino != st->st_ino) {
        sidecar_close(sc);
        return 0;
    }
    memset(&rec, 0, sizeof(rec));
    rc = sidecar_get_record(sc, &rec);
    if (rc == 0 || rc == -ENOENT) {
        rec.version++;
        rec.sha1[0] = '\0'; /* pending: the worker computes it */
        rec.sha1_version = 0;
        rec.size = (uint64_t)now.st_size;
        rec.mtime = now.st_mtim.tv_sec;
        sidecar_record_bind(&rec, &now);
        rc = sidecar_set_record(sc, &rec);
    }
    if (!rc)
        rc = sidecar_commit(sc);
    sidecar_close(sc);
    return rc;
}
