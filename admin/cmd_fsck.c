/*
 * mirrordav fsck --volume DIR [--repair]
 *
 * Checks the sidecars of the live tree against the data:
 *   orphan        a sidecar whose file or collection is gone
 *   stale-temp    a temporary file left by an interrupted write
 *   interrupted-copy, interrupted-move
 *                 the intent record (VOLUME/state/intent-*) of a COPY or
 *                 MOVE that did not finish: --repair completes it (the
 *                 swap was done) or rolls it back (it was not); see
 *                 sidecar/intent.h.  Records of running operations are
 *                 locked and skipped.
 *   stale-stage   a staging folder that no record claims (never touched:
 *                 it may be the only copy of something)
 *   stale-trash   an overwritten tree set aside by an older version
 *                 (never touched, for the same reason)
 *   unreadable    a sidecar that cannot be opened
 *   missing-hash  a file with no SHA-1 recorded
 *   stale-hash    a SHA-1 recorded for an older content version
 *   identity      a SHA-1 whose record does not name the bytes on disk
 *                 (inode, size, mtime, ctime differ, or an old record
 *                 names none): the server serves it as unknown
 *   unknown       anything else inside a sidecar folder (never touched)
 *   interrupted-patch
 *                 the journal record of a PATCH-APPLY applied in place
 *                 (VOLUME/state/patch-*.rec): --repair replays it, which
 *                 gives the new version (sidecar/patchlog.h)
 *   pending-hash  a SHA-1 queued after a PATCH-APPLY and not yet computed
 *                 (VOLUME/state/pending/): --repair computes and stores it
 *   usage-drift   the usage counter (VOLUME/state/usage, sidecar/usage.h)
 *                 differs from the bytes counted in live/, or is
 *                 unreadable: the line gives both values, --repair
 *                 writes the counted one.  Counted with the volume's
 *                 write barrier held exclusively (writes wait, at most
 *                 30 s for those in flight), so the two are comparable.
 *                 A missing counter is no problem (the server counts it
 *                 when it starts; --repair writes it), nor is a volume
 *                 without state/ (a bare tree) checked.
 * An orphan is a NAME.db, or a hashed <sha1>.hdb whose recorded name is
 * absent from the directory; a sidecar whose data exists is never one.
 * With --repair it removes orphans, stale temps and unreadable sidecars,
 * and recomputes missing and stale hashes under optimistic locking (the
 * content version and the data's identity), so it is safe to run while
 * the server writes.  One line per finding on stdout:
 * PATH<TAB>KIND<TAB>ACTION.  Exit 0 when the tree is (now) clean, 1 when
 * problems remain, 2 on a usage or I/O error.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "admin/commands.h"
#include "admin/entry.h"
#include "sidecar/intent.h"
#include "sidecar/patchlog.h"
#include "sidecar/sidecar.h"
#include "sidecar/usage.h"

/* How long the recount waits for the writes in flight. */
#define USAGE_TIMEOUT_MS 30000

/* A temp file untouched this long belongs to no running write. */
#define STALE_TEMP_SECONDS (15 * 60)

typedef struct {
    const char *state; /* VOLUME/state: intent records */
    int repair;
    unsigned long checked, problems, repaired;
    int io_error;
} fsck_ctx;

typedef struct {
    char **v;
    size_t n, cap;
} strlist;

static int strlist_add(strlist *l, const char *s)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        char **v = realloc(l->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    if (!(l->v[l->n] = strdup(s)))
        return -ENOMEM;
    l->n++;
    return 0;
}

static void strlist_free(strlist *l)
{
    size_t i;
    for (i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int strlist_has(const strlist *l, const char *s)
{
    return bsearch(&s, l->v, l->n, sizeof(char *), cmp_str) != NULL;
}

static void report(fsck_ctx *c, const char *path, const char *kind, int fixed,
                   const char *action)
{
    c->problems++;
    if (fixed)
        c->repaired++;
    printf("%s\t%s\t%s\n", path, kind, fixed ? action : "reported");
}

static const char *base_of(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* Recomputes the SHA-1 of DIR/NAME without ever recording a hash against
 * a version or bytes it was not computed from.  The hash is bound to ST,
 * the identity of the open file before and after the read; the store
 * checks under the lock that the data at the path still has it.  Any
 * rename, link or unlink of that inode moves its ctime, so an unchanged
 * identity at the end also proves the path held this inode while it was
 * read. */
static int rehash(const char *dir, const char *name, const char *path)
{
    struct stat st, after;
    sidecar_record rec;
    sidecar *sc;
    char hex[41];
    uint64_t size, version;
    int fd, rv;

    if ((rv = sidecar_open(dir, name, 1, &sc)) != 0)
        return rv;
    memset(&rec, 0, sizeof(rec));
    rv = sidecar_get_record(sc, &rec);
    if (rv == 0 && rec.version == 0) {
        rec.version = 1;
        rv = sidecar_set_record(sc, &rec);
        if (rv == 0)
            rv = sidecar_commit(sc);
    }
    version = rec.version;
    sidecar_close(sc);
    if (rv != 0)
        return rv;

    if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
        return -errno;
    if (fstat(fd, &st) != 0)
        rv = -errno;
    else if ((rv = entry_sha1_file(path, hex, &size)) == 0 &&
             (fstat(fd, &after) != 0 || after.st_ino != st.st_ino ||
              after.st_size != st.st_size ||
              after.st_mtim.tv_sec != st.st_mtim.tv_sec ||
              after.st_mtim.tv_nsec != st.st_mtim.tv_nsec ||
              after.st_ctim.tv_sec != st.st_ctim.tv_sec ||
              after.st_ctim.tv_nsec != st.st_ctim.tv_nsec ||
              size != (uint64_t)st.st_size))
        rv = -ESTALE; /* written while read: the next run tries again */
    close(fd);
    if (rv != 0)
        return rv;
    return sidecar_store_sha1(dir, name, hex, version, &st);
}

static void check_file(fsck_ctx *c, const char *dir, const char *name,
                       const char *path, const struct stat *st)
{
    sidecar_record rec;
    sidecar *sc;
    const char *kind = NULL;
    int rv;

    c->checked++;
    memset(&rec, 0, sizeof(rec));
    rv = sidecar_open(dir, name, 0, &sc);
    if (rv == 0) {
        rv = sidecar_get_record(sc, &rec);
        sidecar_close(sc);
    }
    if (rv != 0) {
        int fixed = 0;
        if (c->repair && sidecar_remove(dir, name) == 0 &&
            rehash(dir, name, path) == 0)
            fixed = 1;
        report(c, path, "unreadable", fixed,
               "removed; hash recomputed (dead properties lost)");
        return;
    }
    if (!rec.sha1[0])
        kind = "missing-hash";
    else if (rec.sha1_version != rec.version)
        kind = "stale-hash";
    else if (!sidecar_hash_current(&rec, st)) {
        struct stat now;

        /* ST was taken before the record was read: a write that landed in
         * between is not a finding. */
        if (lstat(path, &now) != 0 || sidecar_hash_current(&rec, &now))
            return;
        kind = "identity";
    }
    if (kind)
        report(c, path, kind, c->repair && rehash(dir, name, path) == 0,
               "recomputed");
}

static int has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n > m && !strcmp(s + n - m, suffix);
}

/* A sidecar N (at PATH, in DIR's folder) that no entry listed earlier
 * claims.  Its entry's name is N less ".db", or for a hashed database the
 * name recorded inside, which must hash back to N.  It is an orphan only
 * if that entry is absent, which sidecar_remove_orphan checks again under
 * the lock before it removes anything. */
static void check_orphan(fsck_ctx *c, const char *dir, const char *n,
                         const char *path, const struct stat *st)
{
    char *name = NULL, scpath[PATH_MAX], data[PATH_MAX];
    struct stat dst;
    int rv;

    if (S_ISREG(st->st_mode) && has_suffix(n, ".hdb")) {
        if (sidecar_recorded_name(path, &name) != 0 ||
            sidecar_path(dir, name, scpath, sizeof(scpath)) != 0 ||
            strcmp(base_of(scpath), n) != 0) {
            free(name);
            report(c, path, "unknown", 0, "");
            return;
        }
    }
    else if (S_ISREG(st->st_mode) && has_suffix(n, ".db")) {
        name = strndup(n, strlen(n) - 3);
        if (!name) {
            c->io_error = 1;
            return;
        }
    }
    else {
        report(c, path, "unknown", 0, "");
        return;
    }
    if (!*name) { /* ".db" outside a tree's root: whose, is unclear */
        free(name);
        report(c, path, "unknown", 0, "");
        return;
    }
    if ((size_t)snprintf(data, sizeof(data), "%s/%s", dir, name) <
            sizeof(data) &&
        lstat(data, &dst) == 0) {
        /* A file or collection created since the listing: not an orphan.
         * Anything else there is not served, but is not ours to judge. */
        if (!S_ISREG(dst.st_mode) && !S_ISDIR(dst.st_mode))
            report(c, path, "unknown", 0, "");
        free(name);
        return;
    }
    rv = c->repair ? sidecar_remove_orphan(dir, name) : -1;
    if (rv != -EEXIST)
        report(c, path, "orphan", rv == 0, "removed");
    free(name);
}

static void check_sidecar_dir(fsck_ctx *c, const char *dir,
                              const strlist *expected)
{
    char scdir[PATH_MAX], path[PATH_MAX];
    struct dirent *de;
    DIR *d;
    time_t now = time(NULL);

    snprintf(scdir, sizeof(scdir), "%s/" SIDECAR_DIR, dir);
    if (!(d = opendir(scdir)))
        return;
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        struct stat st;

        if (!strcmp(n, ".") || !strcmp(n, "..") || !strcmp(n, ".lock"))
            continue;
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", scdir, n) >=
                sizeof(path) ||
            lstat(path, &st) != 0)
            continue;
        if (!strncmp(n, ".put-", 5) || !strncmp(n, ".tmp-", 5)) {
            if (now - st.st_mtime < STALE_TEMP_SECONDS)
                continue; /* a write may still be using it */
            report(c, path, "stale-temp", c->repair && unlink(path) == 0,
                   "removed");
        }
        else if (!strncmp(n, ".cow-", 5)) {
            /* A data file's private copy, or the old inode it replaced,
             * left by a crash in mod_mirrordav/cow.c: the path holds the
             * same bytes either way, and a snapshot keeps its own link.
             * Its mtime is the data's, so age is judged by the ctime. */
            if (now - st.st_ctime < STALE_TEMP_SECONDS)
                continue; /* a PROPPATCH may still be using it */
            report(c, path, "stale-temp", c->repair && unlink(path) == 0,
                   "removed");
        }
        else if (!strncmp(n, ".trash-", 7))
            report(c, path, "stale-trash", 0, "");
        else if (!strncmp(n, INTENT_STAGE_PREFIX,
                          strlen(INTENT_STAGE_PREFIX))) {
            /* A record's staging folder is its record's business (reported
             * with it, or a running operation's). */
            if (!intent_owns_stage(c->state, path))
                report(c, path, "stale-stage", 0, "");
        }
        else if (strlist_has(expected, n))
            continue;
        else
            check_orphan(c, dir, n, path, &st);
    }
    closedir(d);
}

static void check_dir(fsck_ctx *c, const char *dir, int is_root)
{
    strlist names = {0}, expected = {0}, subdirs = {0};
    char path[PATH_MAX], scpath[PATH_MAX];
    struct dirent *de;
    size_t i;
    DIR *d;

    if (!(d = opendir(dir))) {
        fprintf(stderr, "mirrordav fsck: %s: %s\n", dir, strerror(errno));
        c->io_error = 1;
        return;
    }
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
            sidecar_is_reserved_name(de->d_name))
            continue;
        strlist_add(&names, de->d_name);
    }
    closedir(d);
    qsort(names.v, names.n, sizeof(char *), cmp_str);

    if (is_root && sidecar_path(dir, "", scpath, sizeof(scpath)) == 0)
        strlist_add(&expected, base_of(scpath));
    for (i = 0; i < names.n; i++) {
        struct stat st;

        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, names.v[i]) >=
                sizeof(path) ||
            lstat(path, &st) != 0)
            continue;
        if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
            continue; /* not served, so no sidecar expected */
        if (sidecar_path(dir, names.v[i], scpath, sizeof(scpath)) == 0)
            strlist_add(&expected, base_of(scpath));
        if (S_ISREG(st.st_mode))
            check_file(c, dir, names.v[i], path, &st);
        else
            strlist_add(&subdirs, path);
    }
    qsort(expected.v, expected.n, sizeof(char *), cmp_str);
    check_sidecar_dir(c, dir, &expected);
    strlist_free(&names);
    strlist_free(&expected);

    for (i = 0; i < subdirs.n; i++)
        check_dir(c, subdirs.v[i], 0);
    strlist_free(&subdirs);
}

static void report_intent(void *ctx, const intent *in, const char *action,
                          int rc)
{
    fsck_ctx *c = ctx;

    c->problems++;
    if (c->repair && rc == 0)
        c->repaired++;
    if (rc)
        printf("%s\tinterrupted-%s\tkept (%s failed: %s; destination %s)\n",
               in->file, in->move ? "move" : "copy", action, strerror(-rc),
               in->dst);
    else
        printf("%s\tinterrupted-%s\t%s%s (destination %s)\n", in->file,
               in->move ? "move" : "copy", action, c->repair ? ": done" : "",
               in->dst);
}

static void report_patch(void *ctx, const char *target, const char *what,
                         int rc)
{
    fsck_ctx *c = ctx;
    const char *kind =
        strstr(what, "SHA-1") ? "pending-hash" : "interrupted-patch";

    /* The worker's retries report a refused stale store on the way: not
     * a finding of its own. */
    if (rc == -ESTALE)
        return;
    c->problems++;
    if (c->repair && rc == 0)
        c->repaired++;
    if (rc)
        printf("%s	%s	kept (%s: %s)\n", target, kind, what,
               strerror(-rc));
    else
        printf("%s	%s	%s\n", target, kind, what);
}

/* PATCH-APPLY's journal and pending hashes (sidecar/patchlog.h): replayed
 * and computed with --repair, reported otherwise.  Runs durable: a replay
 * is acknowledged data. */
static void check_patches(fsck_ctx *c, const char *state)
{
    if (patchlog_recover(state, c->repair, report_patch, c) < 0 ||
        patchlog_pending_run(
            state, c->repair ? PATCHLOG_PENDING_RUN : PATCHLOG_PENDING_LIST,
            report_patch, c) < 0) {
        fprintf(stderr,
                "mirrordav fsck: %s: cannot read the PATCH-APPLY "
                "journal or queue\n",
                state);
        c->io_error = 1;
    }
}

/* The usage counter against a recount of live/ (after the other
 * repairs, which may change the tree). */
static void check_usage(fsck_ctx *c, const char *volume)
{
    char path[PATH_MAX], was[32];
    uint64_t old, counted;
    struct stat st;
    int known, rc, missing;

    if (stat(c->state, &st) != 0 || !S_ISDIR(st.st_mode))
        return;
    snprintf(path, sizeof(path), "%s/" USAGE_FILE, c->state);
    missing = lstat(path, &st) != 0 && errno == ENOENT;
    rc = usage_recount(volume, c->repair, USAGE_TIMEOUT_MS, &known, &old,
                       &counted);
    if (rc) {
        fprintf(stderr, "mirrordav fsck: counting the usage of %s: %s\n",
                volume, strerror(-rc));
        c->io_error = 1;
        return;
    }
    if (known && old == counted) {
        fprintf(stderr, "fsck: usage %" PRIu64 " bytes, as counted\n",
                counted);
        return;
    }
    if (missing) {
        fprintf(
            stderr, "fsck: usage %" PRIu64 " bytes counted; no counter (%s)\n",
            counted, c->repair ? "written" : "the server writes it at start");
        return;
    }
    if (known)
        snprintf(was, sizeof(was), "%" PRIu64, old);
    else
        snprintf(was, sizeof(was), "unknown");
    c->problems++;
    if (c->repair)
        c->repaired++;
    printf("%s\tusage-drift\t%s (recorded %s, counted %" PRIu64 ")\n", path,
           c->repair ? "recounted" : "reported", was, counted);
}

int cmd_fsck(int argc, char **argv)
{
    static const struct option opts[] = {
        {"volume", required_argument, NULL, 'v'},
        {"repair", no_argument, NULL, 'r'},
        {NULL, 0, NULL, 0},
    };
    const char *volume = NULL;
    char live[PATH_MAX], state[PATH_MAX];
    fsck_ctx c = {0};
    struct stat st;
    int o;

    optind = 1;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == 'v')
            volume = optarg;
        else if (o == 'r')
            c.repair = 1;
        else
            return 2;
    }
    if (!volume || optind != argc) {
        fprintf(stderr, "usage: mirrordav fsck --volume DIR [--repair]\n");
        return 2;
    }
    snprintf(live, sizeof(live), "%s/live", volume);
    if (stat(live, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "mirrordav fsck: %s is not a volume (no live/)\n",
                volume);
        return 2;
    }
    if (entry_become_owner(live) != 0) {
        fprintf(stderr,
                "mirrordav fsck: cannot take the identity of the "
                "owner of %s\n",
                live);
        return 2;
    }
    /* Interrupted operations first: resolving them removes the staging
     * folders that the walk would otherwise report. */
    snprintf(state, sizeof(state), "%s/state", volume);
    c.state = state;
    if (intent_recover(state, c.repair, 1, report_intent, &c) < 0) {
        fprintf(stderr, "mirrordav fsck: %s: cannot read the intent records\n",
                state);
        c.io_error = 1;
    }
    check_patches(&c, state);

    /* Repairs are many small sidecar writes: made durable together by one
     * syncfs before the summary, not by an fsync each.  A crash before it
     * loses only repairs, which the next fsck makes again. */
    sidecar_set_durable(0);
    check_dir(&c, live, 1);
    check_usage(&c, volume);
    if (c.repair) {
        int fd = open(live, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || syncfs(fd) != 0) {
            fprintf(stderr, "mirrordav fsck: syncing %s: %s\n", live,
                    strerror(errno));
            c.io_error = 1;
        }
        if (fd >= 0)
            close(fd);
    }
    fflush(stdout);
    fprintf(stderr, "fsck: %lu files checked, %lu problems, %lu repaired\n",
            c.checked, c.problems, c.repaired);
    if (c.io_error)
        return 2;
    return c.problems > c.repaired ? 1 : 0;
}
