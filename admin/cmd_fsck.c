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
 *   stale-hash    a SHA-1 recorded for an older content version or size
 *   unknown       anything else inside a sidecar folder (never touched)
 * With --repair it removes orphans, stale temps and unreadable sidecars,
 * and recomputes missing hashes under optimistic locking, so it is safe
 * to run while the server writes.  One line per finding on stdout:
 * PATH<TAB>KIND<TAB>ACTION.  Exit 0 when the tree is (now) clean, 1 when
 * problems remain, 2 on a usage or I/O error.
 */
#include <dirent.h>
#include <errno.h>
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
#include "sidecar/sidecar.h"

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
 * a version it was not computed from. */
static int rehash(const char *dir, const char *name, const char *path)
{
    sidecar_record rec;
    sidecar *sc;
    char hex[41];
    uint64_t size, version;
    int rv;

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

    if ((rv = entry_sha1_file(path, hex, &size)) != 0)
        return rv;
    if ((rv = sidecar_store_sha1(dir, name, hex, version)) != 0)
        return rv;

    /* Size and mtime describe the data the hash was taken from. */
    if ((rv = sidecar_open(dir, name, 1, &sc)) != 0)
        return rv;
    rv = sidecar_get_record(sc, &rec);
    if (rv == 0 && rec.version == version) {
        struct stat st;
        if (stat(path, &st) == 0 && (uint64_t)st.st_size == size) {
            rec.size = size;
            rec.mtime = st.st_mtime;
            rv = sidecar_set_record(sc, &rec);
            if (rv == 0)
                rv = sidecar_commit(sc);
        }
    }
    sidecar_close(sc);
    return rv;
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
    else if (rec.sha1_version != rec.version ||
             rec.size != (uint64_t)st->st_size)
        kind = "stale-hash";
    if (kind)
        report(c, path, kind, c->repair && rehash(dir, name, path) == 0,
               "recomputed");
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
        else if (S_ISREG(st.st_mode) &&
                 (strlen(n) > 3 && !strcmp(n + strlen(n) - 3, ".db")))
            report(c, path, "orphan", c->repair && unlink(path) == 0,
                   "removed");
        else
            report(c, path, "unknown", 0, "");
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
    check_dir(&c, live, 1);
    fflush(stdout);
    fprintf(stderr, "fsck: %lu files checked, %lu problems, %lu repaired\n",
            c.checked, c.problems, c.repaired);
    if (c.io_error)
        return 2;
    return c.problems > c.repaired ? 1 : 0;
}
