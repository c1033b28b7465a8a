/*
 * mirrordav verify --volume DIR --snapshot NAME [--manifest PATH] [--json]
 *                  [--jobs N] [--resume] [--strict] [--since-verified]
 * mirrordav verify --volume DIR --pending [...]
 *
 * Checks a snapshot against the manifests its client uploaded into it
 * (SPEC section 8), with the engine in manifest/verify.c.  For each
 * manifest: a line per discrepancy (PATH TAB KIND TAB EXPECTED TAB ACTUAL,
 * PATH relative to the snapshot, fields %-escaped as in manifests) or JSON;
 * the repaired manifest NAME.verified written into the live tree beside
 * the client's; each file's result in its sidecar; one JSON line per
 * discrepancy appended to VOLUME/state/verify.log; the snapshot's report
 * (VOLUME/state/verify/NAME/report: the text lines of this run, for the
 * browser's report page); and the outcome in the snapshot's record.  --pending
 * verifies every snapshot that has no result yet, oldest first.
 *
 * Exit status: 0 everything matches, 1 discrepancies, 2 usage or I/O
 * error, 3 a manifest is corrupt.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <openssl/evp.h>

#include "admin/commands.h"
#include "admin/entry.h"
#include "manifest/manifest.h"
#include "manifest/verify.h"
#include "sidecar/publish.h"
#include "snapshot/record.h"

typedef struct {
    const char *volume;
    const char *snapshot;
    const char *manifest; /* relative to the snapshot, or NULL: all */
    int json, jobs, resume, strict, since, quiet;
    /* per run */
    const char *prefix; /* the manifest's tree, relative to the snapshot */
    const char *manifest_rel;
    FILE *log;
    FILE *report; /* this run's report, published at its end */
    int first_json;
    time_t started;
} verify_ctx;

/* snprintf into a path buffer; non-zero when it did not fit. */
#define PATHF(buf, ...)                                                       \
    (snprintf(buf, sizeof(buf), __VA_ARGS__) >= (int)sizeof(buf))

static void put_escaped(FILE *out, const char *s)
{
    size_t n = strlen(s);
    char *buf = malloc(3 * n + 1);

    if (!buf)
        return;
    buf[manifest_escape(buf, s, n)] = '\0';
    fputs(buf, out);
    free(buf);
}

static void put_json(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20)
            fprintf(out, "\\u%04x", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
}

static char *full_path(const verify_ctx *c, const char *name)
{
    size_t lp = strlen(c->prefix), ln = strlen(name);
    char *p = malloc(lp + ln + 2);

    if (!p)
        return NULL;
    memcpy(p, c->prefix, lp);
    if (lp && ln)
        p[lp++] = '/';
    memcpy(p + lp, name, ln + 1);
    return p;
}

static int on_discrepancy(void *vctx, const verify_discrepancy *d)
{
    verify_ctx *c = vctx;
    const char *kind = verify_kind_name(d->kind);
    char *path = d->kind == VERIFY_CORRUPT_MANIFEST ? strdup(c->manifest_rel)
                                                    : full_path(c, d->path);

    if (!path)
        return 1;
    if (c->json) {
        printf("%s\n    {\"path\": ", c->first_json ? "" : ",");
        c->first_json = 0;
        put_json(stdout, path);
        printf(", \"kind\": \"%s\", \"expected\": ", kind);
        put_json(stdout, d->expected);
        printf(", \"actual\": ");
        put_json(stdout, d->actual);
        printf("}");
    }
    else {
        put_escaped(stdout, path);
        printf("\t%s\t", kind);
        put_escaped(stdout, d->expected);
        putchar('\t');
        put_escaped(stdout, d->actual);
        putchar('\n');
    }
    if (c->report) {
        put_escaped(c->report, path);
        fprintf(c->report, "\t%s\t", kind);
        put_escaped(c->report, d->expected);
        fputc('\t', c->report);
        put_escaped(c->report, d->actual);
        fputc('\n', c->report);
    }
    if (c->log) { /* for later analysis: one JSON object per line */
        fprintf(c->log,
                "{\"time\": %lld, \"snapshot\": ", (long long)c->started);
        put_json(c->log, c->snapshot);
        fprintf(c->log, ", \"manifest\": ");
        put_json(c->log, c->manifest_rel);
        fprintf(c->log, ", \"path\": ");
        put_json(c->log, path);
        fprintf(c->log, ", \"kind\": \"%s\", \"expected\": ", kind);
        put_json(c->log, d->expected);
        fprintf(c->log, ", \"actual\": ");
        put_json(c->log, d->actual);
        fprintf(c->log, "}\n");
    }
    free(path);
    return 0;
}

static void on_progress(void *vctx, const verify_stats *st, int final)
{
    verify_ctx *c = vctx;
    double secs = difftime(time(NULL), c->started);
    double mib = (double)st->bytes / 1048576.0;
    double rate = secs > 0 ? mib / secs : 0;

    if (c->quiet || !isatty(STDERR_FILENO))
        return;
    fprintf(stderr, "\r%s: %" PRIu64 " files, %.1f MiB, %.1f MiB/s",
            c->manifest_rel, st->files, mib, rate);
    if (!final && rate > 0 && st->expected_bytes > st->bytes)
        fprintf(stderr, ", ETA %.0f s   ",
                (double)(st->expected_bytes - st->bytes) / 1048576.0 / rate);
    else
        fprintf(stderr, "            ");
    if (final)
        fputc('\n', stderr);
}

/* Collects the manifests of a snapshot (relative names). */
typedef struct {
    char **v;
    size_t n;
} name_list;

static int collect(void *ctx, const char *name, int dirfd, const char *base,
                   const struct stat *st)
{
    name_list *l = ctx;
    char **v;

    (void)dirfd;
    if (!S_ISREG(st->st_mode) || !manifest_is_manifest_file(base) ||
        strlen(base) < sizeof(MANIFEST_SUFFIX) ||
        strcmp(base + strlen(base) - strlen(MANIFEST_SUFFIX),
               MANIFEST_SUFFIX) != 0)
        return 0;
    if (!(v = realloc(l->v, (l->n + 1) * sizeof(*v))) ||
        !(v[l->n] = strdup(name)))
        return -ENOMEM;
    l->v = v;
    l->n++;
    return 0;
}

/* The tree a manifest describes, relative to the snapshot: the folder
 * that holds it, or the header's root=PATH. */
static int manifest_root(const char *snapdir, const char *rel, char **out)
{
    const manifest_record *hdr;
    manifest_reader *rd;
    char path[PATH_MAX];
    const char *root = NULL, *slash;
    int rv;

    if (PATHF(path, "%s/%s", snapdir, rel))
        return -ENAMETOOLONG;
    if ((rv = manifest_reader_open(&rd, path, -1)) != 0)
        return rv;
    rv = manifest_reader_next(rd, &hdr);
    if (rv == 1)
        root = manifest_get(hdr, "root");
    if (rv == 1 && root) {
        while (*root == '/')
            root++;
        if (strstr(root, "..") || strstr(root, "//"))
            rv = -EINVAL; /* never outside the snapshot */
        else
            *out = strdup(root);
    }
    else if (rv == 1 || rv == MANIFEST_ECORRUPT) {
        /* a corrupt header: the run reports it */
        slash = strrchr(rel, '/');
        *out = slash ? strndup(rel, (size_t)(slash - rel)) : strdup("");
        rv = 1;
    }
    manifest_reader_close(rd);
    if (rv != 1)
        return rv ? rv : -EINVAL;
    if (!*out)
        return -ENOMEM;
    if (**out && (*out)[strlen(*out) - 1] == '/')
        (*out)[strlen(*out) - 1] = '\0';
    return 0;
}

static void manifest_id(const char *rel, char id[17])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0, i;

    EVP_Digest(rel, strlen(rel), md, &mdlen, EVP_sha1(), NULL);
    for (i = 0; i < 8; i++)
        snprintf(id + 2 * i, 3, "%02x", md[i]);
}

static int mkdirs(const char *path)
{
    char buf[PATH_MAX], *p;

    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
        return -ENAMETOOLONG;
    for (p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return -errno;
            *p = '/';
        }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* The newest snapshot other than SNAP with a verification result, created
 * before it; NULL if none. */
static char *newest_verified(const char *volume, const char *snap)
{
    char dir[PATH_MAX], buf[64], best_name[NAME_MAX + 1] = "";
    long long mine = 0, best = -1;
    struct dirent *de;
    DIR *d;

    if (snaprec_get(volume, snap, "created", buf, sizeof(buf)) == 0)
        mine = atoll(buf);
    snprintf(dir, sizeof(dir), "%s/snapshots", volume);
    if (!(d = opendir(dir)))
        return NULL;
    while ((de = readdir(d)) != NULL) {
        long long t;
        if (de->d_name[0] == '.' || !strcmp(de->d_name, snap))
            continue;
        if (snaprec_get(volume, de->d_name, "verify_time", buf, sizeof(buf)) !=
            0)
            continue;
        if (snaprec_get(volume, de->d_name, "created", buf, sizeof(buf)) != 0)
            continue;
        t = atoll(buf);
        if ((mine && t > mine) || t <= best)
            continue;
        best = t;
        snprintf(best_name, sizeof(best_name), "%s", de->d_name);
    }
    closedir(d);
    return best_name[0] ? strdup(best_name) : NULL;
}

/* Bytes this process has read so far, as the kernel counts them (rchar
 * of /proc/self/io): the incremental mode's cost, measured from outside
 * the engine's own counters.  0 if unknown. */
static uint64_t proc_rchar(void)
{
    char line[128];
    uint64_t v = 0;
    FILE *f = fopen("/proc/self/io", "r");

    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, "rchar:", 6))
            v = strtoull(line + 6, NULL, 10);
    fclose(f);
    return v;
}

/* This run's report, written as the discrepancies come in and published
 * whole at the end (report_close): the browser's report page reads the
 * last complete run's, never one being written.  A run resumed from a
 * checkpoint gets the earlier discrepancies replayed by the engine, so its
 * report is complete too.  Without one (no room, say) the run goes on. */
static void report_open(verify_ctx *c, publish_file *pf, const char *statedir)
{
    int fd = -1, rv;

    c->report = NULL;
    if ((rv = publish_open(pf, statedir, statedir, ".report-", O_WRONLY,
                           0644)) != 0 ||
        (fd = dup(pf->fd)) < 0 || !(c->report = fdopen(fd, "w"))) {
        fprintf(stderr, "mirrordav verify: %s: no report: %s\n", statedir,
                strerror(rv ? -rv : errno));
        if (!rv && fd >= 0)
            close(fd);
        publish_discard(pf);
    }
}

/* Publishes the report as STATEDIR/report (NULL: drops it).  Its data is
 * synced before it gets the name, and the folder after, so that a crash
 * leaves the previous run's report or this one, whole; the caller writes
 * the snapshot's record only after this.  If it cannot be published, the
 * previous run's report is removed rather than left to describe this
 * run. */
static void report_close(verify_ctx *c, publish_file *pf, const char *statedir)
{
    char path[PATH_MAX];
    int rv = 0;

    if (!c->report) {
        if (statedir && !PATHF(path, "%s/report", statedir))
            unlink(path);
        return;
    }
    if (fflush(c->report) != 0)
        rv = -errno;
    fclose(c->report);
    c->report = NULL;
    if (statedir) {
        if (PATHF(path, "%s/report", statedir))
            rv = -ENAMETOOLONG;
        if (!rv && fsync(pf->fd) != 0)
            rv = -errno;
        if (!rv)
            rv = publish_commit(pf, path, PUBLISH_REPLACE);
        if (!rv)
            rv = publish_fsync_dir(statedir);
        if (rv) {
            fprintf(stderr, "mirrordav verify: %s: %s\n", path, strerror(-rv));
            unlink(path);
        }
    }
    publish_discard(pf);
}

/* Verifies one snapshot; returns the exit status for it. */
static int verify_snapshot(verify_ctx *c)
{
    char snapdir[PATH_MAX], statedir[PATH_MAX], lockp[PATH_MAX];
    char *since = NULL;
    name_list l = {NULL, 0};
    verify_stats total;
    int status = 0, lock, rv, k;
    uint64_t rchar0;
    size_t i, resumed = 0;
    publish_file report = PUBLISH_FILE_INIT;

    memset(&total, 0, sizeof(total));
    c->started = time(NULL);
    rchar0 = proc_rchar();
    if (PATHF(snapdir, "%s/snapshots/%s", c->volume, c->snapshot) ||
        PATHF(statedir, "%s/state/verify/%s", c->volume, c->snapshot) ||
        PATHF(lockp, "%s/.lock", statedir)) {
        fprintf(stderr, "mirrordav verify: %s: path too long\n", c->volume);
        return 2;
    }
    if ((rv = mkdirs(statedir)) != 0) {
        fprintf(stderr, "mirrordav verify: %s: %s\n", statedir, strerror(-rv));
        return 2;
    }
    /* One verifier per snapshot at a time: the checkpoints and the
     * repaired manifests' temp files are per snapshot. */
    lock = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock < 0 || flock(lock, LOCK_EX | LOCK_NB) != 0) {
        fprintf(stderr, "mirrordav verify: %s is being verified already\n",
                c->snapshot);
        if (lock >= 0)
            close(lock);
        return 2;
    }
    report_open(c, &report, statedir);
    if (c->manifest) {
        struct stat st;
        char p[PATH_MAX];
        if (PATHF(p, "%s/%s", snapdir, c->manifest) || stat(p, &st) != 0 ||
            !S_ISREG(st.st_mode)) {
            fprintf(stderr, "mirrordav verify: no manifest %s in %s\n",
                    c->manifest, c->snapshot);
            report_close(c, &report, NULL);
            close(lock);
            return 2;
        }
        l.v = malloc(sizeof(*l.v));
        l.v[l.n++] = strdup(c->manifest);
    }
    else if ((rv = manifest_walk(snapdir, collect, NULL, &l)) != 0) {
        fprintf(stderr, "mirrordav verify: %s: %s\n", snapdir, strerror(-rv));
        report_close(c, &report, NULL);
        close(lock);
        return 2;
    }
    if (l.n == 0)
        fprintf(stderr, "mirrordav verify: no manifest in %s\n", c->snapshot);
    if (c->since)
        since = newest_verified(c->volume, c->snapshot);

    if (c->json)
        printf("{\"snapshot\": \"%s\", \"discrepancies\": [", c->snapshot);
    c->first_json = 1;
    for (i = 0; i < l.n; i++) {
        char tree[PATH_MAX], mpath[PATH_MAX], out[PATH_MAX], ck[PATH_MAX];
        char since_ix[PATH_MAX], ix[PATH_MAX], id[17], err[512], vs[32];
        manifest_kv hdr[2] = {{"verified_snapshot", c->snapshot},
                              {"verified_time", vs}};
        char *root = NULL;
        verify_opts o;
        verify_stats st;

        snprintf(vs, sizeof(vs), "%lld", (long long)c->started);
        if ((rv = manifest_root(snapdir, l.v[i], &root)) != 0) {
            fprintf(stderr, "mirrordav verify: %s: bad root: %s\n", l.v[i],
                    strerror(-rv));
            status = 2;
            continue;
        }
        manifest_id(l.v[i], id);
        if (PATHF(tree, "%s%s%s", snapdir, *root ? "/" : "", root) ||
            PATHF(mpath, "%s/%s", snapdir, l.v[i]) ||
            PATHF(out, "%s/live/%s.verified", c->volume, l.v[i]) ||
            PATHF(ck, "%s/%s", statedir, id))
            rv = -ENAMETOOLONG;
        else
            rv = mkdirs(ck);
        if (rv != 0) {
            fprintf(stderr, "mirrordav verify: %s: %s\n", ck, strerror(-rv));
            status = 2;
            free(root);
            continue;
        }
        memset(&o, 0, sizeof(o));
        o.tree = tree;
        o.manifest = mpath;
        {
            /* push-down only where the live folder still exists */
            struct stat dst;
            char od[PATH_MAX];
            const char *sl;
            snprintf(od, sizeof(od), "%s", out);
            sl = strrchr(od, '/');
            od[sl - od] = '\0';
            if (stat(od, &dst) == 0 && S_ISDIR(dst.st_mode))
                o.verified_out = out;
            else
                fprintf(stderr,
                        "mirrordav verify: %s: the live folder is gone; no "
                        "repaired manifest\n",
                        l.v[i]);
        }
        o.verified_header = hdr;
        o.nverified_header = 2;
        o.checkpoint_dir = ck;
        o.resume = c->resume;
        o.jobs = c->jobs;
        o.strict = c->strict;
        o.record_sidecars = 1;
        if (!PATHF(ix, "%s/%s.index", statedir, id))
            o.index_out = ix;
        if (since && !PATHF(since_ix, "%s/state/verify/%s/%s.index", c->volume,
                            since, id))
            o.since_index = since_ix;
        o.now = c->started;
        o.on_discrepancy = on_discrepancy;
        o.on_progress = on_progress;
        o.ctx = c;
        c->prefix = root;
        c->manifest_rel = l.v[i];
        rv = verify_run(&o, &st, err, sizeof(err));
        if (rv == MANIFEST_ECORRUPT)
            status = status == 2 ? 2 : 3;
        else if (rv != 0) {
            fprintf(stderr, "mirrordav verify: %s\n", err);
            status = 2;
        }
        else if (st.discrepancies && status == 0)
            status = 1;
        total.entries += st.entries;
        total.files += st.files;
        total.bytes += st.bytes;
        total.bytes_read += st.bytes_read;
        total.reused_files += st.reused_files;
        total.reused_bytes += st.reused_bytes;
        total.discrepancies += st.discrepancies;
        total.failed_entries += st.failed_entries;
        resumed += st.resumed;
        for (k = 0; k < VERIFY_NKINDS; k++)
            total.by_kind[k] += st.by_kind[k];
        free(root);
    }

    if (c->json) {
        printf("%s],\n \"summary\": {\"manifests\": %zu, \"entries\": %" PRIu64
               ", \"files\": %" PRIu64 ", \"bytes\": %" PRIu64
               ", \"bytes_read\": %" PRIu64 ", \"reused_files\": %" PRIu64
               ", \"reused_bytes\": %" PRIu64 ", \"discrepancies\": %" PRIu64,
               c->first_json ? "" : "\n", l.n, total.entries, total.files,
               total.bytes, total.bytes_read, total.reused_files,
               total.reused_bytes, total.discrepancies);
        for (k = 0; k < VERIFY_NKINDS; k++)
            printf(", \"%s\": %" PRIu64, verify_kind_name((verify_kind)k),
                   total.by_kind[k]);
        printf(", \"proc_rchar\": %" PRIu64 ", \"resumed\": %zu"
               ", \"exit\": %d}}\n",
               proc_rchar() - rchar0, resumed, status);
    }
    else {
        printf("# %s: %zu manifest(s), %" PRIu64 " entries, %" PRIu64
               " files, %" PRIu64 " bytes (%" PRIu64 " read, %" PRIu64
               " files and %" PRIu64 " bytes taken from %s), %" PRIu64
               " discrepancies%s\n",
               c->snapshot, l.n, total.entries, total.files, total.bytes,
               total.bytes_read, total.reused_files, total.reused_bytes,
               since ? since : "no earlier result", total.discrepancies,
               resumed ? " (resumed from a checkpoint)" : "");
    }
    fflush(stdout);

    /* The report before the record that says there is one to read. */
    if (l.n)
        report_close(c, &report, statedir);
    else
        report_close(c, &report, NULL);
    /* The outcome in the snapshot's record, where listings show it. */
    {
        char t[32], n[32], f[32], b[32];
        const char *keys[] = {"verify_time", "verify_status",
                              "verify_discrepancies", "verify_files",
                              "verify_bytes"};
        const char *vals[5];
        snprintf(t, sizeof(t), "%lld", (long long)c->started);
        snprintf(n, sizeof(n), "%" PRIu64, total.discrepancies);
        snprintf(f, sizeof(f), "%" PRIu64, total.files);
        snprintf(b, sizeof(b), "%" PRIu64, total.bytes);
        vals[0] = t;
        vals[1] = status == 0   ? "clean"
                  : status == 1 ? "discrepancies"
                  : status == 3 ? "corrupt"
                                : "error";
        vals[2] = n;
        vals[3] = f;
        vals[4] = b;
        if (l.n && (rv = snaprec_set(c->volume, c->snapshot, keys, vals, 5)))
            fprintf(stderr,
                    "mirrordav verify: could not record the result "
                    "of %s: %s\n",
                    c->snapshot, strerror(-rv));
    }
    for (i = 0; i < l.n; i++)
        free(l.v[i]);
    free(l.v);
    free(since);
    close(lock);
    return status;
}

/* Snapshots without a verification result, oldest first. */
static int pending(verify_ctx *c)
{
    char dir[PATH_MAX], buf[64];
    struct {
        long long t;
        char name[NAME_MAX + 1];
    } *v = NULL;
    size_t n = 0, i, j;
    struct dirent *de;
    int status = 0, s;
    DIR *d;

    snprintf(dir, sizeof(dir), "%s/snapshots", c->volume);
    if (!(d = opendir(dir))) {
        fprintf(stderr, "mirrordav verify: %s: %s\n", dir, strerror(errno));
        return 2;
    }
    while ((de = readdir(d)) != NULL) {
        struct stat st;
        char p[PATH_MAX];
        void *nv;
        if (de->d_name[0] == '.' ||
            snaprec_get(c->volume, de->d_name, "verify_time", buf,
                        sizeof(buf)) == 0)
            continue;
        if (PATHF(p, "%s/%s", dir, de->d_name) || stat(p, &st) != 0 ||
            !S_ISDIR(st.st_mode))
            continue;
        if (!(nv = realloc(v, (n + 1) * sizeof(*v)))) {
            closedir(d);
            free(v);
            return 2;
        }
        v = nv;
        v[n].t = snaprec_get(c->volume, de->d_name, "created", buf,
                             sizeof(buf)) == 0
                     ? atoll(buf)
                     : (long long)st.st_mtime;
        snprintf(v[n].name, sizeof(v[n].name), "%s", de->d_name);
        n++;
    }
    closedir(d);
    for (i = 1; i < n; i++) /* few snapshots: insertion sort, oldest first */
        for (j = i; j > 0 && v[j - 1].t > v[j].t; j--) {
            __typeof__(*v) tmp = v[j];
            v[j] = v[j - 1];
            v[j - 1] = tmp;
        }
    for (i = 0; i < n; i++) {
        c->snapshot = v[i].name;
        s = verify_snapshot(c);
        if (s > status)
            status = s == 1 && status >= 2 ? status : s;
    }
    free(v);
    return status;
}

static int usage(void)
{
    fprintf(stderr,
            "usage: mirrordav verify --volume DIR (--snapshot NAME | "
            "--pending)\n"
            "           [--manifest PATH] [--json] [--jobs N] [--resume]\n"
            "           [--strict] [--since-verified] [--quiet]\n");
    return 2;
}

int cmd_verify(int argc, char **argv)
{
    verify_ctx c;
    char live[PATH_MAX], logp[PATH_MAX];
    int i, pend = 0, status, rv;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);

    memset(&c, 0, sizeof(c));
    c.jobs = cores > 0 ? (int)cores : 1;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--volume") && i + 1 < argc)
            c.volume = argv[++i];
        else if (!strcmp(a, "--snapshot") && i + 1 < argc)
            c.snapshot = argv[++i];
        else if (!strcmp(a, "--manifest") && i + 1 < argc)
            c.manifest = argv[++i];
        else if (!strcmp(a, "--jobs") && i + 1 < argc) {
            c.jobs = atoi(argv[++i]);
            if (c.jobs < 1 || c.jobs > 256)
                return usage();
        }
        else if (!strcmp(a, "--json"))
            c.json = 1;
        else if (!strcmp(a, "--resume"))
            c.resume = 1;
        else if (!strcmp(a, "--strict"))
            c.strict = 1;
        else if (!strcmp(a, "--since-verified"))
            c.since = 1;
        else if (!strcmp(a, "--pending"))
            pend = 1;
        else if (!strcmp(a, "--quiet"))
            c.quiet = 1;
        else
            return usage();
    }
    if (!c.volume || (!c.snapshot == !pend) || (pend && c.manifest))
        return usage();
    if (c.snapshot && (strchr(c.snapshot, '/') || c.snapshot[0] == '.')) {
        fprintf(stderr, "mirrordav verify: bad snapshot name\n");
        return 2;
    }
    while (c.manifest && *c.manifest == '/')
        c.manifest++;
    if (c.manifest && strstr(c.manifest, "..")) {
        fprintf(stderr, "mirrordav verify: bad manifest path\n");
        return 2;
    }
    snprintf(live, sizeof(live), "%s/live", c.volume);
    /* What it writes (sidecars, the repaired manifests, state) must stay
     * the server's own. */
    if ((rv = entry_become_owner(live)) != 0) {
        fprintf(stderr, "mirrordav verify: %s: %s\n", live, strerror(-rv));
        return 2;
    }
    snprintf(logp, sizeof(logp), "%s/state/verify.log", c.volume);
    if (!(c.log = fopen(logp, "a")))
        fprintf(stderr, "mirrordav verify: %s: %s (failures not logged)\n",
                logp, strerror(errno));
    status = pend ? pending(&c) : verify_snapshot(&c);
    if (c.log) {
        if (fflush(c.log) != 0 || fsync(fileno(c.log)) != 0)
            fprintf(stderr, "mirrordav verify: %s: %s\n", logp,
                    strerror(errno));
        fclose(c.log);
    }
    return status;
}
