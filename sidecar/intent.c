/*
 * intent: the journal of tree COPY and MOVE (see intent.h).
 *
 * Record format, one "key value" per line, paths %-escaped (bytes up to
 * space, '%' and DEL), closed by "end" so that a record is complete or
 * rejected:
 *   mirrordav-intent 1
 *   op copy|move
 *   phase 0|1|2
 *   src PATH        (move only)
 *   dst PATH
 *   stage PATH
 *   new_ino N
 *   old_ino N
 *   newdb 0|1
 *   end
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "intent.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sidecar.h"

#define RECORD_PREFIX "intent-"
#define TMP_SUFFIX    ".tmp"
#define LOCK_FILE     "intent.lock"
#define RECORD_MAX    (4 * PATH_MAX + 512)
/* A temporary record older than this belongs to no running writer (one
 * lives for the few system calls between its creation and its rename). */
#define STALE_TMP_SECONDS 60

/*
 * Crash points, for the crash tests only: with MIRRORDAV_TEST_CRASH_POINT=N
 * in its environment, a process kills itself (SIGKILL, as kill -9 would)
 * on reaching its Nth crash point.  One getenv per process otherwise.
 */
void intent_crash_point(void)
{
    static int target = -1, seen;

    if (target < 0) {
        const char *e = getenv("MIRRORDAV_TEST_CRASH_POINT");
        target = e ? atoi(e) : 0;
    }
    if (target > 0 && ++seen == target)
        raise(SIGKILL);
}

static int neg_errno(void)
{
    return errno ? -errno : -EIO;
}

static int fsync_dir(const char *dir, int durable)
{
    int fd, rc = 0;

    if (!durable)
        return 0;
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return neg_errno();
    if (fsync(fd) != 0)
        rc = neg_errno();
    close(fd);
    return rc;
}

/* DIR and NAME of PATH (absolute, no trailing slash). */
static int split(const char *path, char *dir, char *name)
{
    const char *s = strrchr(path, '/');
    size_t n;

    if (!s || !s[1] || strlen(s + 1) > NAME_MAX)
        return -EINVAL;
    n = (size_t)(s - path);
    if (n >= PATH_MAX)
        return -ENAMETOOLONG;
    if (n == 0)
        strcpy(dir, "/");
    else {
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    strcpy(name, s + 1);
    return 0;
}

static int join(char *out, const char *dir, const char *name)
{
    if ((size_t)snprintf(out, PATH_MAX, "%s/%s", dir, name) >= PATH_MAX)
        return -ENAMETOOLONG;
    return 0;
}

static uint64_t ino_of(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0 ? (uint64_t)st.st_ino : 0;
}

/* ------------------------------------------------------------ removal */

static __thread int remove_failed;

static int remove_one(const char *path, const struct stat *st, int flag,
                      struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    if (remove(path) != 0 && errno != ENOENT)
        remove_failed = errno;
    return 0; /* go on: remove all that can be removed */
}

/* Removes PATH and everything under it; a missing PATH is fine.  nftw
 * keeps one descriptor per level, not the tree, in memory. */
int intent_remove_all(const char *path)
{
    struct stat st;

    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : neg_errno();
    remove_failed = 0;
    if (nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return neg_errno();
    return remove_failed ? -remove_failed : 0;
}

/* ------------------------------------------------------------ records */

static void put_escaped(FILE *f, const char *key, const char *s)
{
    fprintf(f, "%s ", key);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= ' ' || c == '%' || c == 0x7f)
            fprintf(f, "%%%02x", c);
        else
            fputc(c, f);
    }
    fputc('\n', f);
}

static int get_escaped(const char *v, char *out)
{
    size_t n = 0;

    for (; *v; v++) {
        unsigned int c;
        if (n + 1 >= PATH_MAX)
            return -ENAMETOOLONG;
        if (*v == '%') {
            if (sscanf(v + 1, "%2x", &c) != 1)
                return -EBADMSG;
            out[n++] = (char)c;
            v += 2;
        }
        else
            out[n++] = *v;
    }
    out[n] = '\0';
    return 0;
}

static int parse(const char *buf, intent *in)
{
    char line[2 * PATH_MAX];
    const char *p = buf;
    int have_end = 0, have_dst = 0, have_stage = 0, rc = 0;

    in->src[0] = in->dst[0] = in->stage[0] = '\0';
    if (strncmp(p, "mirrordav-intent 1\n", 19) != 0)
        return -EBADMSG;
    p += 19;
    while (*p && !rc) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char *v;

        if (!nl || len >= sizeof(line))
            return -EBADMSG;
        memcpy(line, p, len);
        line[len] = '\0';
        p = nl + 1;
        if (!strcmp(line, "end")) {
            have_end = 1;
            break;
        }
        if (!(v = strchr(line, ' ')))
            return -EBADMSG;
        *v++ = '\0';
        if (!strcmp(line, "op"))
            in->move = !strcmp(v, "move");
        else if (!strcmp(line, "phase"))
            in->phase = (intent_phase)atoi(v);
        else if (!strcmp(line, "src"))
            rc = get_escaped(v, in->src);
        else if (!strcmp(line, "dst"))
            rc = get_escaped(v, in->dst), have_dst = 1;
        else if (!strcmp(line, "stage"))
            rc = get_escaped(v, in->stage), have_stage = 1;
        else if (!strcmp(line, "new_ino"))
            in->new_ino = strtoull(v, NULL, 10);
        else if (!strcmp(line, "old_ino"))
            in->old_ino = strtoull(v, NULL, 10);
        else if (!strcmp(line, "newdb"))
            in->newdb = atoi(v);
    }
    if (rc)
        return rc;
    if (!have_end || !have_dst || !have_stage || in->phase < INTENT_STAGING ||
        in->phase > INTENT_CLEANUP || (in->move && !in->src[0]))
        return -EBADMSG;
    return 0;
}

static int load(int fd, intent *in)
{
    char *buf = malloc(RECORD_MAX + 1);
    ssize_t n;
    int rc;

    if (!buf)
        return -ENOMEM;
    n = pread(fd, buf, RECORD_MAX, 0);
    if (n < 0) {
        free(buf);
        return neg_errno();
    }
    buf[n] = '\0';
    rc = parse(buf, in);
    free(buf);
    return rc;
}

/*
 * Publishes IN as its record: a complete new file is written to
 * FILE.tmp, locked, fsynced, renamed over FILE, and state/ fsynced.  A
 * crash before the rename leaves the previous record (and a stray .tmp
 * that recovery removes); after it, the new one.  The new file is locked
 * before it gets the record's name, and the old one only released after,
 * so a recovery pass never finds the record unlocked while its operation
 * lives.
 */
static int write_record(intent *in)
{
    char tmp[PATH_MAX], dir[PATH_MAX], name[NAME_MAX + 1];
    FILE *f;
    int fd, rc = 0;

    if ((size_t)snprintf(tmp, sizeof(tmp), "%s" TMP_SUFFIX, in->file) >=
        sizeof(tmp))
        return -ENAMETOOLONG;
    if ((rc = split(in->file, dir, name)) != 0)
        return rc;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return neg_errno();
    if (flock(fd, LOCK_EX) != 0) {
        rc = neg_errno();
        close(fd);
        unlink(tmp);
        return rc;
    }
    if (!(f = fdopen(dup(fd), "w"))) {
        rc = neg_errno();
        goto fail;
    }
    fprintf(f, "mirrordav-intent 1\nop %s\nphase %d\n",
            in->move ? "move" : "copy", (int)in->phase);
    if (in->move)
        put_escaped(f, "src", in->src);
    put_escaped(f, "dst", in->dst);
    put_escaped(f, "stage", in->stage);
    fprintf(f, "new_ino %" PRIu64 "\nold_ino %" PRIu64 "\nnewdb %d\nend\n",
            in->new_ino, in->old_ino, in->newdb);
    if (fclose(f) != 0) {
        rc = neg_errno();
        goto fail;
    }
    /* The record's content before its name: a crash must not publish an
     * empty or partial record. */
    if (in->durable && fsync(fd) != 0) {
        rc = neg_errno();
        goto fail;
    }
    if (rename(tmp, in->file) != 0) {
        rc = neg_errno();
        goto fail;
    }
    /* The rename is only durable once state/ is: the caller's next step
     * (a swap, a removal) must not reach the disk before the record. */
    rc = fsync_dir(dir, in->durable);
    if (in->fd >= 0)
        close(in->fd);
    in->fd = fd;
    return rc;

fail:
    close(fd);
    unlink(tmp);
    return rc;
}

/* Removes the record: the operation is resolved. */
static int drop_record(intent *in)
{
    char dir[PATH_MAX], name[NAME_MAX + 1];
    int rc;

    if (unlink(in->file) != 0 && errno != ENOENT)
        return neg_errno();
    rc = split(in->file, dir, name);
    if (!rc)
        rc = fsync_dir(dir, in->durable);
    if (in->fd >= 0)
        close(in->fd);
    in->fd = -1;
    return rc;
}

/* ------------------------------------------------------------ operation */

int intent_begin(intent *in, const char *state_dir, int move, const char *src,
                 const char *dst, int durable)
{
    char parent[PATH_MAX], name[NAME_MAX + 1], scdir[PATH_MAX];
    unsigned char rnd[12];
    char hex[25];
    int i, rc;

    memset(in, 0, sizeof(*in));
    in->fd = -1;
    in->durable = durable;
    in->move = move;
    in->phase = INTENT_STAGING;
    if (strlen(dst) >= PATH_MAX || (src && strlen(src) >= PATH_MAX))
        return -ENAMETOOLONG;
    strcpy(in->dst, dst);
    if (move)
        strcpy(in->src, src);
    if ((rc = split(dst, parent, name)) != 0)
        return rc;
    if ((rc = sidecar_ensure_dir(parent)) != 0)
        return rc;
    if ((rc = join(scdir, parent, SIDECAR_DIR)) != 0)
        return rc;
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        return neg_errno();
    for (i = 0; i < 12; i++)
        sprintf(hex + 2 * i, "%02x", rnd[i]);
    if ((size_t)snprintf(in->stage, PATH_MAX,
                         "%s/" INTENT_STAGE_PREFIX "%.12s", scdir,
                         hex) >= PATH_MAX ||
        (size_t)snprintf(in->file, PATH_MAX, "%s/" RECORD_PREFIX "%.12s",
                         state_dir, hex + 12) >= PATH_MAX)
        return -ENAMETOOLONG;
    /* Record first, folder second: a staging folder is never without the
     * record that says it is disposable. */
    if ((rc = write_record(in)) != 0)
        return rc;
    intent_crash_point();
    if (mkdir(in->stage, 0755) != 0) {
        rc = neg_errno();
        drop_record(in);
        return rc;
    }
    intent_crash_point();
    return 0;
}

int intent_ready(intent *in)
{
    char scdir[PATH_MAX], name[NAME_MAX + 1];
    int rc;

    /* The staged tree (its members were fsynced as they were written)
     * and the staging folder's own entry must be on disk before the
     * record says they may be swapped in. */
    if ((rc = fsync_dir(in->stage, in->durable)) != 0)
        return rc;
    if ((rc = split(in->stage, scdir, name)) != 0 ||
        (rc = fsync_dir(scdir, in->durable)) != 0)
        return rc;
    in->phase = INTENT_SWAP;
    intent_crash_point();
    rc = write_record(in);
    intent_crash_point();
    return rc;
}

int intent_finish(intent *in)
{
    char parent[PATH_MAX], name[NAME_MAX + 1], scdir[PATH_MAX];
    char sdir[PATH_MAX], sname[NAME_MAX + 1], path[PATH_MAX];
    int rc;

    if ((rc = split(in->dst, parent, name)) != 0)
        return rc;
    intent_crash_point();
    if (in->phase == INTENT_SWAP) {
        /* The tree is at DST: make the entry's own sidecar match it.
         * The staged sidecar is renamed in before a MOVE's source sidecar
         * is removed, so that at every crash point one of the two holds
         * the properties.  Idempotent: a staged sidecar already renamed in
         * is not staged any more, and removing an absent one is a no-op. */
        if (in->newdb) {
            if ((rc = sidecar_path(in->stage, name, path, sizeof(path))) != 0)
                return rc;
            if (access(path, F_OK) == 0)
                rc = sidecar_move(in->stage, name, parent, name);
        }
        else
            rc = sidecar_remove(parent, name);
        if (rc)
            return rc;
        intent_crash_point();
        if (in->move) {
            uint64_t now_at_src = ino_of(in->src);

            if ((rc = split(in->src, sdir, sname)) != 0)
                return rc;
            /* The source's sidecar described the tree now at DST.  Only
             * while the source name is empty or holds the old destination
             * (swapped there): if a process died alone, recovery may come
             * after a client made a new entry there, whose sidecar stays. */
            if ((now_at_src == 0 || now_at_src == in->old_ino) &&
                (rc = sidecar_remove(sdir, sname)) != 0)
                return rc;
            intent_crash_point();
            /* The exchange left the old destination at the source's name;
             * it joins the staging folder (by inode, so that nothing else
             * is ever taken). */
            if (in->old_ino && ino_of(in->src) == in->old_ino) {
                if ((rc = join(path, in->stage, name)) != 0)
                    return rc;
                if (rename(in->src, path) != 0)
                    return neg_errno();
                intent_crash_point();
            }
            if ((rc = fsync_dir(sdir, in->durable)) != 0)
                return rc;
        }
        /* The swap and the sidecar must be durable before the record says
         * the old tree may go: until then a power loss could bring the old
         * names back, and the old tree with them would be the only copy. */
        if ((rc = fsync_dir(parent, in->durable)) != 0)
            return rc;
        if ((rc = join(scdir, parent, SIDECAR_DIR)) != 0 ||
            (rc = fsync_dir(scdir, in->durable)) != 0 ||
            (rc = fsync_dir(in->stage, in->durable)) != 0)
            return rc;
        in->phase = INTENT_CLEANUP;
        if ((rc = write_record(in)) != 0)
            return rc;
        intent_crash_point();
    }
    /* Cleanup: the staging folder holds nothing live.  The record goes
     * last, so a crash during a long removal is finished by recovery. */
    if ((rc = intent_remove_all(in->stage)) != 0)
        return rc;
    intent_crash_point();
    if ((rc = split(in->stage, scdir, name)) != 0 ||
        (rc = fsync_dir(scdir, in->durable)) != 0)
        return rc;
    return drop_record(in);
}

int intent_abort(intent *in)
{
    char scdir[PATH_MAX], name[NAME_MAX + 1];
    int rc;

    /* DST was never touched; the staging folder is a partial copy (or a
     * copy of the source's sidecar).  It goes before the record, so a
     * crash in between is aborted again by recovery. */
    if ((rc = intent_remove_all(in->stage)) != 0)
        return rc;
    if ((rc = split(in->stage, scdir, name)) != 0 ||
        (rc = fsync_dir(scdir, in->durable)) != 0)
        return rc;
    return drop_record(in);
}

void intent_release(intent *in)
{
    if (in->fd >= 0)
        close(in->fd);
    in->fd = -1;
}

/* ------------------------------------------------------------ recovery */

/* What a dead operation needs, given where its tree is now. */
static int resolve(intent *in, const char **action)
{
    char path[PATH_MAX], parent[PATH_MAX], name[NAME_MAX + 1];
    int rc;

    if (in->phase == INTENT_STAGING) {
        *action = "roll back (the swap had not begun)";
        return intent_abort(in);
    }
    if (in->phase == INTENT_CLEANUP) {
        *action = "complete (remove the replaced tree)";
        return intent_finish(in);
    }
    if (in->new_ino && ino_of(in->dst) == in->new_ino) {
        *action = "complete (the swap was done)";
        return intent_finish(in);
    }
    /* Not swapped: the new tree must still be where it was staged, or the
     * source for a MOVE.  Anything else is not understood: keep it all. */
    if ((rc = split(in->dst, parent, name)) != 0 ||
        (rc = join(path, in->stage, name)) != 0)
        return rc;
    if (in->new_ino && ino_of(in->move ? in->src : path) == in->new_ino) {
        *action = "roll back (the swap was not done)";
        return intent_abort(in);
    }
    *action = "find the tree (neither staged nor swapped in)";
    return -ENOENT;
}

int intent_resolve_file(const char *file, int durable)
{
    const char *action;
    intent in;
    int fd, rc;

    memset(&in, 0, sizeof(in));
    fd = open(file, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return neg_errno();
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return -EBUSY;
    }
    in.fd = fd;
    in.durable = durable;
    strcpy(in.file, file);
    rc = load(fd, &in);
    if (!rc)
        rc = resolve(&in, &action);
    intent_release(&in);
    return rc;
}

static int is_record(const char *n)
{
    size_t len = strlen(n);

    return !strncmp(n, RECORD_PREFIX, strlen(RECORD_PREFIX)) &&
           !(len > 4 && !strcmp(n + len - 4, TMP_SUFFIX));
}

int intent_recover(const char *state_dir, int repair, int durable,
                   intent_report_fn cb, void *ctx)
{
    char lockpath[PATH_MAX], path[PATH_MAX];
    struct dirent *de;
    int lockfd, left = 0, rc;
    DIR *d;

    if ((rc = join(lockpath, state_dir, LOCK_FILE)) != 0)
        return rc;
    /* One recovery pass at a time (server start, fsck): two passes
     * resolving one record could both roll it forward, and the second
     * would remove what the first installed. */
    lockfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lockfd < 0 && errno == EACCES) /* flock needs no write access */
        lockfd = open(lockpath, O_RDONLY | O_CLOEXEC);
    if (lockfd < 0)
        return neg_errno();
    if (flock(lockfd, LOCK_EX) != 0) {
        rc = neg_errno();
        close(lockfd);
        return rc;
    }
    if (!(d = opendir(state_dir))) {
        rc = neg_errno();
        close(lockfd);
        return rc;
    }
    while ((de = readdir(d)) != NULL) {
        const char *action = "reported";
        struct stat st;
        intent in;
        int fd;

        if (strncmp(de->d_name, RECORD_PREFIX, strlen(RECORD_PREFIX)) ||
            join(path, state_dir, de->d_name) != 0)
            continue;
        fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
            continue; /* removed meanwhile */
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            close(fd); /* a live operation's */
            continue;
        }
        if (!is_record(de->d_name)) {
            /* A temporary record never renamed: the record it would have
             * replaced (if any) still stands. */
            if (fstat(fd, &st) == 0 &&
                time(NULL) - st.st_mtime > STALE_TMP_SECONDS)
                unlink(path);
            close(fd);
            continue;
        }
        memset(&in, 0, sizeof(in));
        in.fd = fd;
        in.durable = durable;
        strcpy(in.file, path);
        rc = load(fd, &in);
        if (rc)
            action = "read the record";
        else if (repair)
            rc = resolve(&in, &action);
        if (rc || !repair)
            left++;
        if (cb)
            cb(ctx, &in, action, rc);
        intent_release(&in);
    }
    closedir(d);
    close(lockfd);
    return left;
}

int intent_owns_stage(const char *state_dir, const char *stage)
{
    char path[PATH_MAX];
    struct dirent *de;
    int found = 0;
    DIR *d;

    if (!(d = opendir(state_dir)))
        return 0;
    while (!found && (de = readdir(d)) != NULL) {
        intent in;
        int fd;

        if (!is_record(de->d_name) || join(path, state_dir, de->d_name) != 0)
            continue;
        if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
            continue;
        memset(&in, 0, sizeof(in));
        if (load(fd, &in) == 0 && !strcmp(in.stage, stage))
            found = 1;
        close(fd);
    }
    closedir(d);
    return found;
}
