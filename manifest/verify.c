/*
 * The verifier's engine.  One pass, three streams in step:
 *
 *   manifest (reader) ─┐
 *                      ├─ merge in manifest order ─► ring of jobs ─► emit
 *   tree (walk)      ──┘                               ▲    │        in order
 *                                        N hashing ────┘    ▼
 *                                        threads       discrepancies,
 *                                                      repaired manifest,
 *                                                      sidecar results,
 *                                                      checkpoints
 *
 * The walk's callback runs the merge: manifest records that sort before
 * the tree entry are missing, equal names are compared, a tree entry the
 * manifest lacks is extra.  Each becomes a job in a bounded ring; jobs
 * with data to read wait for a hashing thread, the rest are ready at once.
 * The calling thread emits jobs strictly in order as they become ready,
 * so the report and the repaired manifest come out in manifest order and
 * memory is bounded by the ring, whatever the size of the tree.
 *
 * Checkpoints: about every second, the repaired manifest's temp file and
 * the discrepancy list are fsynced, then a small checkpoint file naming
 * the last emitted entry is written (temp + fsync + rename).  A crash
 * between those steps leaves the previous checkpoint, whose offsets point
 * inside what was synced, so a resumed run cuts both files back to them
 * and carries on from that entry: the final report is the same as an
 * uninterrupted run's.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "manifest/manifest.h"
#include "manifest/verify.h"
#include "sidecar/publish.h"
#include "sidecar/sidecar.h"

#define RING_SIZE     1024
#define CKPT_INTERVAL 1 /* seconds between checkpoints, at most */
/* Entries between checkpoints, at most (a checkpoint costs a few fsyncs);
 * MIRRORDAV_VERIFY_CHECKPOINT_ENTRIES overrides it, for tests. */
#define CKPT_ENTRIES 50000

static const char *const kind_names[VERIFY_NKINDS] = {
    "missing", "extra",   "type", "size",  "mtime",
    "hash",    "sidecar", "mode", "owner", "corrupt-manifest"};

const char *verify_kind_name(verify_kind k)
{
    return k < VERIFY_NKINDS ? kind_names[k] : "?";
}

enum { JOB_READY, JOB_WAIT, JOB_BUSY };

typedef struct {
    int state;
    char *name;
    int in_manifest, in_tree;
    manifest_kv *kv; /* the manifest's pairs; strings in the same block */
    size_t nkv;
    struct stat st;
    int need_hash;
    char hex[41];
    int herr; /* errno of a failed read, 0 if hashed */
    uint64_t hashed;
    int reused;         /* result taken from the earlier index */
    sidecar_record rec; /* the receipt record beside the data */
    int have_rec;
    sidecar_verify old; /* the result an earlier run recorded */
    int have_old;
} job;

typedef struct {
    const verify_opts *o;
    verify_stats *st;
    char *err;
    size_t errsz;
    int rv; /* the first fatal error */

    job *ring;
    uint64_t head, tail, hash_next; /* sequence numbers */
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    int stop;
    pthread_t *threads;
    int nthreads;

    manifest_reader *rd;
    const manifest_record *cur; /* a manifest entry not yet merged */
    int rd_done;
    const char *after; /* resuming: everything up to this name is done */
    char *after_buf;

    manifest_writer *wr;
    int wr_fd;
    char *wr_tmp;

    /* The index of this run's clean files (written), and an earlier run's
     * (read, for --since-verified), both in manifest order. */
    manifest_writer *ix;
    int ix_fd;
    char *ix_tmp;
    manifest_reader *since;
    const manifest_record *since_cur;
    int since_done;
    uint64_t ix_resume; /* the index's length at the checkpoint */
    char *last;         /* the last emitted name */
    size_t lastcap;

    int disc_fd;        /* the discrepancy list, for resuming */
    long long disc_len; /* its length at the checkpoint */
    time_t last_ckpt, last_progress;
    unsigned since_ckpt;    /* entries emitted since the last checkpoint */
    unsigned ckpt_entries;  /* ... and how many make a checkpoint due */
    unsigned test_delay_us; /* tests only: a pause per emitted entry */
    int sidecars_dirty;     /* results written since the last syncfs */
} engine;

static int fail(engine *e, int rv, const char *what, const char *path)
{
    if (!e->rv) {
        e->rv = rv;
        snprintf(e->err, e->errsz, "%s %s: %s", what, path ? path : "",
                 rv == MANIFEST_ECORRUPT ? "corrupt" : strerror(-rv));
    }
    return e->rv;
}

static char *join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *p = malloc(la + lb + 2);

    if (!p)
        return NULL;
    memcpy(p, a, la);
    if (lb) {
        p[la++] = '/';
        memcpy(p + la, b, lb);
    }
    p[la + lb] = '\0';
    return p;
}

/* ------------------------------------------------------------ hashing */

static void read_receipt(const engine *e, job *j)
{
    char *path = join(e->o->tree, j->name), *slash;
    sidecar *sc;

    if (!path)
        return;
    slash = strrchr(path, '/');
    *slash = '\0';
    /* One read-only open for both records: the receipt, and the result
     * of an earlier run (so that an unchanged result is not rewritten). */
    if (sidecar_open(path, slash + 1, 0, &sc) == 0) {
        j->have_rec = sidecar_get_record(sc, &j->rec) == 0 && j->rec.sha1[0];
        j->have_old =
            e->o->record_sidecars && sidecar_get_verify(sc, &j->old) == 0;
        sidecar_close(sc);
    }
    free(path);
}

static int64_t ns(const struct timespec *t)
{
    return (int64_t)t->tv_sec * 1000000000 + t->tv_nsec;
}

static void hash_job(const engine *e, job *j)
{
    char *path;
    int fd;

    read_receipt(e, j);
    if (!(path = join(e->o->tree, j->name))) {
        j->herr = ENOMEM;
        return;
    }
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    free(path);
    if (fd < 0) {
        j->herr = errno;
        return;
    }
    j->herr = -manifest_sha1_fd(fd, j->hex, &j->hashed);
    close(fd);
}

/* Jobs a hashing thread takes at once: one lock round trip and one
 * wake-up per batch rather than per file, which matters for small files. */
#define BATCH 8

static void *worker(void *arg)
{
    engine *e = arg;

    pthread_mutex_lock(&e->mu);
    for (;;) {
        job *batch[BATCH];
        int n = 0, i;

        while (e->hash_next < e->tail && n < BATCH) {
            job *c = &e->ring[e->hash_next++ % RING_SIZE];
            if (c->state == JOB_WAIT) {
                c->state = JOB_BUSY;
                batch[n++] = c;
            }
        }
        if (!n) {
            if (e->stop)
                break;
            pthread_cond_wait(&e->work, &e->mu);
            continue;
        }
        pthread_mutex_unlock(&e->mu);
        for (i = 0; i < n; i++)
            hash_job(e, batch[i]);
        pthread_mutex_lock(&e->mu);
        for (i = 0; i < n; i++)
            batch[i]->state = JOB_READY;
        pthread_cond_broadcast(&e->done);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

/* ------------------------------------------------------------ output */

static int report(engine *e, const char *path, verify_kind k,
                  const char *expected, const char *actual)
{
    verify_discrepancy d = {path, k, expected ? expected : "",
                            actual ? actual : ""};

    e->st->discrepancies++;
    e->st->by_kind[k]++;
    if (e->disc_fd >= 0) {
        /* kind TAB path TAB expected TAB actual, escaped like a manifest */
        const char *f[3] = {d.path, d.expected, d.actual};
        size_t need = 16, i, n;
        char *line;

        for (i = 0; i < 3; i++)
            need += 3 * strlen(f[i]) + 1;
        if (!(line = malloc(need)))
            return fail(e, -ENOMEM, "memory", NULL);
        n = (size_t)sprintf(line, "%d", (int)k);
        for (i = 0; i < 3; i++) {
            line[n++] = '\t';
            n += manifest_escape(line + n, f[i], strlen(f[i]));
        }
        line[n++] = '\n';
        if (write(e->disc_fd, line, n) != (ssize_t)n) {
            free(line);
            return fail(e, errno ? -errno : -EIO, "writing", "discrepancies");
        }
        free(line);
    }
    if (e->o->on_discrepancy && e->o->on_discrepancy(e->o->ctx, &d))
        return fail(e, -ECANCELED, "stopped by", "the report");
    return 0;
}

static const char *type_of(const struct stat *st)
{
    return S_ISREG(st->st_mode)   ? "file"
           : S_ISDIR(st->st_mode) ? "directory"
           : S_ISLNK(st->st_mode) ? "link"
                                  : "special";
}

static const char *kv_get(const job *j, const char *key)
{
    size_t i;

    for (i = 0; i < j->nkv; i++)
        if (!strcmp(j->kv[i].key, key))
            return j->kv[i].value;
    return NULL;
}

static void record_result(engine *e, const job *j, int clean)
{
    char *path = join(e->o->tree, j->name), *slash;
    sidecar_verify v;
    sidecar *sc;

    if (!path)
        return;
    slash = strrchr(path, '/');
    *slash = '\0';
    memset(&v, 0, sizeof(v));
    v.time = e->o->now;
    v.clean = clean;
    v.version = j->have_rec ? j->rec.version : 0;
    if (!j->herr)
        memcpy(v.sha1, j->hex, sizeof(v.sha1));
    v.ino = (uint64_t)j->st.st_ino;
    v.size = (uint64_t)j->st.st_size;
    v.mtime_ns = ns(&j->st.st_mtim);
    v.ctime_ns = ns(&j->st.st_ctim);
    /* The same result for the same bytes is not written again: a re-run
     * costs no sidecar writes, and "time" stays when this result was
     * first found (the snapshot's record has the run's). */
    if (j->have_old && j->old.clean == v.clean &&
        j->old.version == v.version && !strcmp(j->old.sha1, v.sha1) &&
        j->old.ino == v.ino && j->old.size == v.size &&
        j->old.mtime_ns == v.mtime_ns && j->old.ctime_ns == v.ctime_ns) {
        free(path);
        return;
    }
    e->sidecars_dirty = 1;
    if (sidecar_open(path, slash + 1, 1, &sc) == 0) {
        if (sidecar_set_verify(sc, &v) != 0 || sidecar_commit(sc) != 0)
            fprintf(stderr,
                    "mirrordav verify: could not record the result "
                    "in the sidecar of %s\n",
                    j->name);
        sidecar_close(sc);
    }
    free(path);
}

/* Compares one job and reports what differs; returns the number of
 * discrepancies, or -1 on a fatal error. */
static int compare(engine *e, const job *j)
{
    const char *mtype, *v;
    char buf[2][64];
    uint64_t before = e->st->discrepancies;

    if (j->in_manifest && !j->in_tree) {
        mtype = kv_get(j, "type");
        report(e, j->name, VERIFY_MISSING, mtype ? mtype : "present",
               "absent");
        goto out;
    }
    if (!j->in_manifest) {
        report(e, j->name, VERIFY_EXTRA, "absent", type_of(&j->st));
        goto out;
    }
    e->st->entries++;
    mtype = kv_get(j, "type");
    if (!mtype || strcmp(mtype, type_of(&j->st)) != 0) {
        report(e, j->name, VERIFY_TYPE, mtype ? mtype : "(none)",
               type_of(&j->st));
        goto out;
    }
    if (S_ISREG(j->st.st_mode)) {
        int size_ok = 1;

        e->st->files++;
        e->st->bytes += (uint64_t)j->st.st_size;
        if (j->reused) {
            e->st->reused_files++;
            e->st->reused_bytes += (uint64_t)j->st.st_size;
        }
        else
            e->st->bytes_read += j->hashed;
        snprintf(buf[1], sizeof(buf[1]), "%" PRIu64, (uint64_t)j->st.st_size);
        v = kv_get(j, "st_size");
        if (v && strcmp(v, buf[1]) != 0) {
            size_ok = 0;
            report(e, j->name, VERIFY_SIZE, v, buf[1]);
        }
        v = kv_get(j, "st_mtime");
        /* whole seconds: a fraction another writer added is ignored */
        if (v && strtoll(v, NULL, 10) != (long long)j->st.st_mtime) {
            snprintf(buf[1], sizeof(buf[1]), "%lld",
                     (long long)j->st.st_mtime);
            report(e, j->name, VERIFY_MTIME, v, buf[1]);
        }
        if (j->herr) {
            report(e, j->name, VERIFY_HASH, kv_get(j, "hash"),
                   strerror(j->herr));
        }
        else if (size_ok) {
            /* A size mismatch already says the data differs; the hash
             * would only repeat it. */
            v = kv_get(j, "hash");
            if (v && strcmp(v, j->hex) != 0)
                report(e, j->name, VERIFY_HASH, v, j->hex);
        }
        /* Corruption at rest: the record made on receipt is bound to this
         * very file (inode, size, mtime to the nanosecond: nothing wrote
         * it since), yet its SHA-1 is not the data's.  The ctime is not
         * compared: a snapshot's hard link moves it, and so does damage
         * done through the file system, which is what this looks for. */
        if (!j->herr && j->have_rec && j->rec.bound &&
            j->rec.sha1_version == j->rec.version &&
            j->rec.ino == (uint64_t)j->st.st_ino &&
            j->rec.size == (uint64_t)j->st.st_size &&
            j->rec.mtime == (int64_t)j->st.st_mtim.tv_sec &&
            j->rec.mtime_nsec == (uint32_t)j->st.st_mtim.tv_nsec &&
            strcmp(j->rec.sha1, j->hex) != 0)
            report(e, j->name, VERIFY_SIDECAR, j->rec.sha1, j->hex);
    }
    if (e->o->strict) {
        v = kv_get(j, "st_mode");
        snprintf(buf[1], sizeof(buf[1]), "%o", (unsigned)j->st.st_mode);
        if (v && strcmp(v, buf[1]) != 0)
            report(e, j->name, VERIFY_MODE, v, buf[1]);
        snprintf(buf[0], sizeof(buf[0]), "%s:%s", kv_get(j, "st_uid") ?: "",
                 kv_get(j, "st_gid") ?: "");
        snprintf(buf[1], sizeof(buf[1]), "%u:%u", (unsigned)j->st.st_uid,
                 (unsigned)j->st.st_gid);
        if ((kv_get(j, "st_uid") || kv_get(j, "st_gid")) &&
            strcmp(buf[0], buf[1]) != 0)
            report(e, j->name, VERIFY_OWNER, buf[0], buf[1]);
    }
out:
    if (e->rv)
        return -1;
    return (int)(e->st->discrepancies - before);
}

static int write_checkpoint(engine *e);

/* Adds a file verified clean to this run's index: what a later
 * incremental run needs to take the result without reading the data. */
static void index_add(engine *e, const job *j)
{
    char v[3][24];
    manifest_kv kv[4] = {
        {"ino", v[0]}, {"mtime_ns", v[1]}, {"sha1", j->hex}, {"size", v[2]}};
    int rv;

    snprintf(v[0], sizeof(v[0]), "%" PRIu64, (uint64_t)j->st.st_ino);
    snprintf(v[1], sizeof(v[1]), "%" PRId64, ns(&j->st.st_mtim));
    snprintf(v[2], sizeof(v[2]), "%" PRIu64, (uint64_t)j->st.st_size);
    if ((rv = manifest_writer_add(e->ix, j->name, kv, 4)) != 0)
        fail(e, rv, "writing", e->ix_tmp);
}

static void emit(engine *e, job *j)
{
    size_t len = strlen(j->name);
    int n = compare(e, j);
    time_t now;

    if (e->test_delay_us)
        usleep(e->test_delay_us);
    if (n < 0)
        return;
    if (j->in_manifest && n > 0)
        e->st->failed_entries++;
    if (e->wr && j->in_manifest && n == 0) {
        int rv = manifest_writer_add(e->wr, j->name, j->kv, j->nkv);
        if (rv)
            fail(e, rv, "writing", e->wr_tmp);
    }
    if (e->ix && n == 0 && j->in_manifest && j->in_tree && !j->herr &&
        S_ISREG(j->st.st_mode))
        index_add(e, j);
    /* A result taken from the index was not re-checked here: the file's
     * sidecar keeps what the run that read it recorded. */
    if (e->o->record_sidecars && j->in_manifest && j->in_tree &&
        S_ISREG(j->st.st_mode) && !j->reused)
        record_result(e, j, n == 0);
    if (len + 1 > e->lastcap) {
        char *p = realloc(e->last, len + 1);
        if (!p) {
            fail(e, -ENOMEM, "memory", NULL);
            return;
        }
        e->last = p;
        e->lastcap = len + 1;
    }
    memcpy(e->last, j->name, len + 1);
    now = time(NULL);
    if (e->o->checkpoint_dir && (now - e->last_ckpt >= CKPT_INTERVAL ||
                                 ++e->since_ckpt >= e->ckpt_entries)) {
        write_checkpoint(e);
        e->last_ckpt = now;
        e->since_ckpt = 0;
    }
    if (e->o->on_progress && now != e->last_progress) {
        e->o->on_progress(e->o->ctx, e->st, 0);
        e->last_progress = now;
    }
}

static void free_job(job *j)
{
    free(j->name); /* the block that holds every string of the job */
    free(j->kv);
    memset(j, 0, sizeof(*j));
}

/* Emits the ready jobs at the head of the ring; with WAIT, waits for at
 * least one.  Called and returns with the lock held. */
static void drain(engine *e, int wait)
{
    for (;;) {
        job *j;

        if (e->head == e->tail)
            return;
        j = &e->ring[e->head % RING_SIZE];
        if (j->state != JOB_READY) {
            if (!wait)
                return;
            pthread_cond_wait(&e->done, &e->mu);
            continue;
        }
        pthread_mutex_unlock(&e->mu);
        if (!e->rv)
            emit(e, j);
        free_job(j);
        pthread_mutex_lock(&e->mu);
        e->head++;
        wait = 0;
    }
}

/* Queues one entry: REC (may be NULL) from the manifest, ST (may be NULL)
 * from the tree. */
static int push(engine *e, const char *name, const manifest_record *rec,
                const struct stat *st, const char *reused)
{
    size_t need = strlen(name) + 1, i, off;
    job *j;
    char *block;

    if (rec)
        for (i = 0; i < rec->nkv; i++)
            need += strlen(rec->kv[i].key) + strlen(rec->kv[i].value) + 2;
    pthread_mutex_lock(&e->mu);
    while (e->tail - e->head == RING_SIZE && !e->rv)
        drain(e, 1);
    pthread_mutex_unlock(&e->mu);
    if (e->rv)
        return e->rv;

    j = &e->ring[e->tail % RING_SIZE];
    memset(j, 0, sizeof(*j));
    if (!(block = malloc(need)) ||
        (rec && rec->nkv && !(j->kv = malloc(rec->nkv * sizeof(*j->kv))))) {
        free(block);
        return fail(e, -ENOMEM, "memory", NULL);
    }
    j->name = block;
    off = strlen(name) + 1;
    memcpy(block, name, off);
    if (rec) {
        j->in_manifest = 1;
        for (i = 0; i < rec->nkv; i++) {
            size_t kl = strlen(rec->kv[i].key) + 1;
            size_t vl = strlen(rec->kv[i].value) + 1;
            memcpy(block + off, rec->kv[i].key, kl);
            j->kv[i].key = block + off;
            off += kl;
            memcpy(block + off, rec->kv[i].value, vl);
            j->kv[i].value = block + off;
            off += vl;
        }
        j->nkv = rec->nkv;
    }
    if (st) {
        j->in_tree = 1;
        j->st = *st;
    }
    j->need_hash = rec && st && S_ISREG(st->st_mode);
    if (j->need_hash && reused) {
        j->reused = 1;
        j->need_hash = 0;
        memcpy(j->hex, reused, sizeof(j->hex));
    }

    pthread_mutex_lock(&e->mu);
    j->state = j->need_hash ? JOB_WAIT : JOB_READY;
    e->tail++;
    if (j->need_hash)
        pthread_cond_signal(&e->work);
    drain(e, 0);
    pthread_mutex_unlock(&e->mu);
    return e->rv;
}

/* ------------------------------------------------------------ merge */

static int done_already(const engine *e, const char *name)
{
    return e->after && manifest_compare(name, e->after) <= 0;
}

/* The next manifest entry not yet merged, or NULL at the trailer. */
static const manifest_record *peek(engine *e)
{
    while (!e->cur && !e->rd_done && !e->rv) {
        const manifest_record *rec;
        int rv = manifest_reader_next(e->rd, &rec);

        if (rv < 0) {
            fail(e, rv, "reading", e->o->manifest);
            break;
        }
        if (rv == 0 || rec->kind == MANIFEST_TRAILER) {
            e->rd_done = 1;
            break;
        }
        if (rec->kind != MANIFEST_ENTRY || done_already(e, rec->name))
            continue;
        /* Manifests are never compared, on either side. */
        {
            const char *slash = strrchr(rec->name, '/');
            if (manifest_is_manifest_file(slash ? slash + 1 : rec->name))
                continue;
        }
        e->cur = rec;
    }
    return e->cur;
}

static int skip_entry(void *ctx, const char *name, const struct stat *st)
{
    engine *e = ctx;
    const char *slash = strrchr(name, '/');

    /* A directory sorts after all of its members: when it is done, so is
     * everything under it, and the walk need not go in. */
    if (done_already(e, name))
        return 1;
    return S_ISREG(st->st_mode) &&
           manifest_is_manifest_file(slash ? slash + 1 : name);
}

/* Incremental: the SHA-1 an earlier run found for this very file, from
 * its index (read in step with the walk, both in manifest order), or
 * NULL.  It stands for the file when the bytes are provably the same:
 * same inode (a hard-link snapshot shares it; a reflink or btrfs
 * snapshot of an unchanged file does not, and is read again), size and
 * mtime to the nanosecond.  The ctime is not compared: linking the inode
 * into a later snapshot moves it.  A damaged index stops being used at
 * its first bad record. */
static const char *earlier_result(engine *e, const char *name,
                                  const struct stat *st)
{
    const manifest_record *r;
    const char *v;
    int c;

    if (!e->since || !S_ISREG(st->st_mode))
        return NULL;
    while (!e->since_done) {
        if (!e->since_cur) {
            int rv = manifest_reader_next(e->since, &r);
            if (rv != 1 || r->kind == MANIFEST_TRAILER) {
                e->since_done = 1;
                break;
            }
            if (r->kind == MANIFEST_ENTRY)
                e->since_cur = r;
            continue;
        }
        c = manifest_compare(e->since_cur->name, name);
        if (c < 0) {
            e->since_cur = NULL;
            continue;
        }
        if (c > 0)
            return NULL;
        r = e->since_cur;
        v = manifest_get(r, "sha1");
        {
            const char *ino = manifest_get(r, "ino");
            const char *size = manifest_get(r, "size");
            const char *mt = manifest_get(r, "mtime_ns");

            if (v && ino && size && mt && strlen(v) == 40 &&
                strtoull(ino, NULL, 10) == (uint64_t)st->st_ino &&
                strtoull(size, NULL, 10) == (uint64_t)st->st_size &&
                strtoll(mt, NULL, 10) == ns(&st->st_mtim))
                return v;
        }
        return NULL;
    }
    return NULL;
}

static int on_tree(void *ctx, const char *name, int dirfd, const char *base,
                   const struct stat *st)
{
    engine *e = ctx;
    const manifest_record *m;

    (void)dirfd;
    (void)base;
    if (done_already(e, name)) /* the root's own record, say */
        return 0;
    while ((m = peek(e)) != NULL) {
        int c = manifest_compare(m->name, name);

        if (c > 0)
            break;
        push(e, m->name, m, c == 0 ? st : NULL,
             c == 0 ? earlier_result(e, name, st) : NULL);
        e->cur = NULL;
        if (c == 0)
            return e->rv;
        if (e->rv)
            return e->rv;
    }
    if (e->rv)
        return e->rv;
    return push(e, name, NULL, st, NULL);
}

/* ------------------------------------------------------------ checkpoints */

static char *ckpt_path(const engine *e, const char *leaf)
{
    return join(e->o->checkpoint_dir, leaf);
}

static int write_checkpoint(engine *e)
{
    char *path = ckpt_path(e, "checkpoint"), *tmp = ckpt_path(e, "ckpt.tmp");
    uint64_t wlen = 0, ilen = 0;
    off_t dlen;
    FILE *f = NULL;
    int rv = 0, k;

    if (!path || !tmp) {
        rv = -ENOMEM;
        goto out;
    }
    /* The data the checkpoint points into first (the results recorded in
     * sidecars included), then the checkpoint. */
    if (e->sidecars_dirty && (rv = publish_syncfs(e->o->tree)) != 0)
        goto out;
    e->sidecars_dirty = 0;
    if (e->wr && ((rv = manifest_writer_flush(e->wr, &wlen)) != 0 ||
                  (fsync(e->wr_fd) != 0 && (rv = -errno))))
        goto out;
    if (e->ix && ((rv = manifest_writer_flush(e->ix, &ilen)) != 0 ||
                  (fsync(e->ix_fd) != 0 && (rv = -errno))))
        goto out;
    if (fsync(e->disc_fd) != 0 ||
        (dlen = lseek(e->disc_fd, 0, SEEK_CUR)) < 0) {
        rv = -errno;
        goto out;
    }
    if (!(f = fopen(tmp, "w"))) {
        rv = -errno;
        goto out;
    }
    {
        size_t n = strlen(e->last);
        char *esc = malloc(3 * n + 1);
        if (!esc) {
            rv = -ENOMEM;
            goto out;
        }
        esc[manifest_escape(esc, e->last, n)] = '\0';
        fprintf(f, "mirrordav-verify-checkpoint 1\nlast=%s\n", esc);
        free(esc);
    }
    fprintf(f, "verified=%" PRIu64 "\nindex=%" PRIu64 "\ndiscrepancies=%lld\n",
            wlen, ilen, (long long)dlen);
    fprintf(f,
            "stats=%" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64
            " %" PRIu64 " %" PRIu64 " %" PRIu64,
            e->st->entries, e->st->files, e->st->bytes, e->st->bytes_read,
            e->st->reused_files, e->st->reused_bytes, e->st->discrepancies,
            e->st->failed_entries);
    for (k = 0; k < VERIFY_NKINDS; k++)
        fprintf(f, " %" PRIu64, e->st->by_kind[k]);
    fprintf(f, "\n");
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
        rv = -errno;
        goto out;
    }
    fclose(f);
    f = NULL;
    if (rename(tmp, path) != 0)
        rv = -errno;
    else
        rv = publish_fsync_dir(e->o->checkpoint_dir);
out:
    if (f)
        fclose(f);
    if (rv)
        fail(e, rv, "writing the checkpoint in", e->o->checkpoint_dir);
    free(path);
    free(tmp);
    return rv;
}

/* Loads a checkpoint: sets e->after, the stats, and cuts the discrepancy
 * list back, replaying it to the caller.  *WLEN gets the length of the
 * repaired manifest's temp file to keep.  0, -ENOENT or -errno. */
static int load_checkpoint(engine *e, uint64_t *wlen)
{
    char *path = ckpt_path(e, "checkpoint"), *line = NULL;
    size_t cap = 0;
    long long dlen = -1;
    int rv = -ENOENT, k;
    FILE *f;

    if (!path)
        return -ENOMEM;
    f = fopen(path, "r");
    free(path);
    if (!f)
        return errno == ENOENT ? -ENOENT : -errno;
    *wlen = 0;
    while (getline(&line, &cap, f) > 0) {
        line[strcspn(line, "\n")] = '\0';
        if (!strncmp(line, "last=", 5)) {
            size_t n = strlen(line + 5);
            free(e->after_buf);
            if (!(e->after_buf = strdup(line + 5)) ||
                manifest_unescape(e->after_buf, n, NULL) != 0) {
                rv = -EINVAL;
                goto out;
            }
            e->after = e->after_buf;
        }
        else if (!strncmp(line, "verified=", 9))
            *wlen = strtoull(line + 9, NULL, 10);
        else if (!strncmp(line, "index=", 6))
            e->ix_resume = strtoull(line + 6, NULL, 10);
        else if (!strncmp(line, "discrepancies=", 14))
            dlen = strtoll(line + 14, NULL, 10);
        else if (!strncmp(line, "stats=", 6)) {
            char *p = line + 6;
            uint64_t *v[] = {&e->st->entries,       &e->st->files,
                             &e->st->bytes,         &e->st->bytes_read,
                             &e->st->reused_files,  &e->st->reused_bytes,
                             &e->st->discrepancies, &e->st->failed_entries};
            size_t i;
            for (i = 0; i < sizeof(v) / sizeof(*v); i++)
                *v[i] = strtoull(p, &p, 10);
            for (k = 0; k < VERIFY_NKINDS; k++)
                e->st->by_kind[k] = strtoull(p, &p, 10);
        }
    }
    if (!e->after || dlen < 0) {
        rv = -EINVAL;
        goto out;
    }
    e->disc_len = dlen;
    rv = 0;
out:
    free(line);
    fclose(f);
    return rv;
}

/* Whether the repaired manifest's temp file still holds the LEN bytes the
 * checkpoint counts on. */
static int verified_intact(engine *e, uint64_t len)
{
    const char *out = e->o->verified_out;
    const char *slash, *base;
    struct stat st;
    char *p;
    int ok;

    if (!out)
        return !e->o->index_out || e->ix_resume > 0;
    slash = strrchr(out, '/');
    base = slash ? slash + 1 : out;
    if (!(p = malloc(strlen(out) + 32)))
        return 0;
    sprintf(p, "%.*s/" SIDECAR_DIR "/.verify-%s.tmp",
            slash ? (int)(slash - out) : 1, slash ? out : ".", base);
    ok = len > 0 && stat(p, &st) == 0 && (uint64_t)st.st_size >= len;
    free(p);
    if (ok && e->o->index_out) { /* the index, likewise */
        if (!(p = malloc(strlen(e->o->index_out) + 8)))
            return 0;
        sprintf(p, "%s.tmp", e->o->index_out);
        ok = e->ix_resume > 0 && stat(p, &st) == 0 &&
             (uint64_t)st.st_size >= e->ix_resume;
        free(p);
    }
    return ok;
}

/* Replays the discrepancies found before the checkpoint, so that the
 * report is whole, and drops any found after it: they come again. */
static int replay(engine *e)
{
    char *line = NULL;
    size_t cap = 0;
    long long dlen = e->disc_len;
    int rv;

    if (ftruncate(e->disc_fd, (off_t)dlen) != 0) {
        rv = -errno;
        goto out;
    }
    {
        FILE *d = fdopen(dup(e->disc_fd), "r");
        if (!d) {
            rv = -errno;
            goto out;
        }
        rewind(d);
        while (getline(&line, &cap, d) > 0) {
            char *f4[4], *s = line;
            int i;
            line[strcspn(line, "\n")] = '\0';
            for (i = 0; i < 4; i++) {
                f4[i] = s;
                s += strcspn(s, "\t");
                if (*s)
                    *s++ = '\0';
            }
            for (i = 1; i < 4; i++)
                manifest_unescape(f4[i], strlen(f4[i]), NULL);
            if (e->o->on_discrepancy) {
                verify_discrepancy dd = {f4[1], (verify_kind)atoi(f4[0]),
                                         f4[2], f4[3]};
                e->o->on_discrepancy(e->o->ctx, &dd);
            }
        }
        fclose(d);
    }
    if (lseek(e->disc_fd, (off_t)dlen, SEEK_SET) < 0) {
        rv = -errno;
        goto out;
    }
    rv = 0;
out:
    free(line);
    return rv;
}

/* ------------------------------------------------------------ the run */

/* Opens the temp file of the repaired manifest, beside its final name in
 * the sidecar folder (hidden from clients, same file system, so the final
 * rename is atomic), and starts or resumes the writer. */
static int open_verified(engine *e, const manifest_record *hdr,
                         uint64_t resume_len)
{
    const char *out = e->o->verified_out;
    const char *slash = strrchr(out, '/');
    char *dir = slash ? strndup(out, (size_t)(slash - out)) : strdup(".");
    const char *base = slash ? slash + 1 : out;
    manifest_kv *kv = NULL;
    size_t n = 0, i, extra = 0;
    int rv;

    if (!dir)
        return -ENOMEM;
    if ((rv = sidecar_ensure_dir(dir)) != 0) {
        free(dir);
        return rv;
    }
    e->wr_tmp = malloc(strlen(dir) + strlen(base) + 32);
    if (!e->wr_tmp) {
        free(dir);
        return -ENOMEM;
    }
    sprintf(e->wr_tmp, "%s/" SIDECAR_DIR "/.verify-%s.tmp", dir, base);
    free(dir);
    e->wr_fd =
        open(e->wr_tmp,
             O_RDWR | O_CREAT | O_CLOEXEC | (resume_len ? 0 : O_TRUNC), 0644);
    if (e->wr_fd < 0)
        return -errno;
    if (resume_len)
        return manifest_writer_resume(&e->wr, e->wr_fd, resume_len, e->after);

    extra = e->o->nverified_header;
    if (!(kv = calloc(hdr->nkv + extra + 1, sizeof(*kv))))
        return -ENOMEM;
    for (i = 0; i < hdr->nkv; i++) {
        const char *k = hdr->kv[i].key;
        if (strcmp(k, MANIFEST_TYPE_KEY) && strcmp(k, MANIFEST_VERS_KEY))
            kv[n++] = hdr->kv[i];
    }
    /* The caller's pairs override the client's. */
    for (i = 0; i < extra; i++) {
        const manifest_kv *x = &e->o->verified_header[i];
        size_t m;
        for (m = 0; m < n && strcmp(kv[m].key, x->key); m++)
            ;
        kv[m] = *x;
        if (m == n)
            n++;
    }
    rv = manifest_writer_open(&e->wr, e->wr_fd, kv, n);
    free(kv);
    return rv;
}

/* The repaired manifest is a file of the live tree like any other: its
 * sidecar records its SHA-1, size, mtime and a new content version, as a
 * PUT would (after the name is durable: the record describes it). */
static int record_receipt(const char *dir, const char *path)
{
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    sidecar_record rec;
    struct stat st;
    char hex[41];
    sidecar *sc;
    int rv;

    if ((rv = manifest_sha1_file(path, hex, NULL)) != 0)
        return rv;
    if (stat(path, &st) != 0)
        return -errno;
    if ((rv = sidecar_open(dir, base, 1, &sc)) != 0)
        return rv;
    if ((rv = sidecar_get_record(sc, &rec)) == 0) {
        rec.version++;
        memcpy(rec.sha1, hex, sizeof(rec.sha1));
        rec.sha1_version = rec.version;
        sidecar_record_bind(&rec, &st);
        rv = sidecar_set_record(sc, &rec);
    }
    if (rv == 0)
        rv = sidecar_commit(sc);
    sidecar_close(sc);
    return rv;
}

/* The repaired manifest becomes visible whole: fsync the temp file,
 * rename it over the final name, fsync the directory.  A crash before the
 * rename leaves the old one (or none) and the temp file, which the next
 * run reuses or truncates. */
static int publish_verified(engine *e)
{
    const char *out = e->o->verified_out;
    const char *slash = strrchr(out, '/');
    char *dir = slash ? strndup(out, (size_t)(slash - out)) : strdup(".");
    int rv = manifest_writer_finish(e->wr);

    if (!dir)
        return -ENOMEM;
    if (rv == 0 && fsync(e->wr_fd) != 0)
        rv = -errno;
    if (rv == 0 && rename(e->wr_tmp, out) != 0)
        rv = -errno;
    if (rv == 0)
        rv = publish_fsync_dir(dir);
    if (rv == 0)
        rv = record_receipt(dir, out);
    free(dir);
    return rv;
}

/* This run's index of clean files: a temp file beside INDEX_OUT, started
 * or continued from the checkpoint like the repaired manifest. */
static int open_index(engine *e, uint64_t resume_len)
{
    manifest_kv kv[1] = {{"content", "verify-index"}};
    struct stat st;

    if (!(e->ix_tmp = malloc(strlen(e->o->index_out) + 8)))
        return -ENOMEM;
    sprintf(e->ix_tmp, "%s.tmp", e->o->index_out);
    e->ix_fd =
        open(e->ix_tmp,
             O_RDWR | O_CREAT | O_CLOEXEC | (resume_len ? 0 : O_TRUNC), 0644);
    if (e->ix_fd < 0)
        return -errno;
    if (resume_len && fstat(e->ix_fd, &st) == 0 &&
        (uint64_t)st.st_size >= resume_len)
        return manifest_writer_resume(&e->ix, e->ix_fd, resume_len, e->after);
    if (resume_len)
        return -ESTALE;
    return manifest_writer_open(&e->ix, e->ix_fd, kv, 1);
}

/* Data, then name, then the directory, as for the repaired manifest. */
static int publish_index(engine *e)
{
    const char *slash = strrchr(e->o->index_out, '/');
    char *dir =
        slash ? strndup(e->o->index_out, (size_t)(slash - e->o->index_out))
              : strdup(".");
    int rv = manifest_writer_finish(e->ix);

    if (!dir)
        return -ENOMEM;
    if (rv == 0 && fsync(e->ix_fd) != 0)
        rv = -errno;
    if (rv == 0 && rename(e->ix_tmp, e->o->index_out) != 0)
        rv = -errno;
    if (rv == 0)
        rv = publish_fsync_dir(dir);
    free(dir);
    return rv;
}

static void remove_checkpoint(engine *e)
{
    const char *leaves[] = {"checkpoint", "discrepancies"};
    size_t i;

    for (i = 0; i < 2; i++) {
        char *p = ckpt_path(e, leaves[i]);
        if (p)
            unlink(p);
        free(p);
    }
}

int verify_run(const verify_opts *o, verify_stats *st, char *err, size_t errsz)
{
    const manifest_record *hdr;
    uint64_t resume_len = 0, expected = 0;
    engine e;
    int rv, i;

    memset(&e, 0, sizeof(e));
    memset(st, 0, sizeof(*st));
    e.o = o;
    e.st = st;
    e.err = err;
    e.errsz = errsz;
    e.disc_fd = -1;
    e.wr_fd = -1;
    e.ix_fd = -1;
    err[0] = '\0';
    e.last = strdup("");
    e.lastcap = 1;
    pthread_mutex_init(&e.mu, NULL);
    pthread_cond_init(&e.work, NULL);
    pthread_cond_init(&e.done, NULL);
    if (!e.last || !(e.ring = calloc(RING_SIZE, sizeof(*e.ring)))) {
        fail(&e, -ENOMEM, "memory", NULL);
        goto out;
    }

    /* Validate the whole manifest first: a corrupt one is reported as such
     * and nothing is compared against it. */
    if ((rv = manifest_reader_open(&e.rd, o->manifest, -1)) != 0) {
        fail(&e, rv, "opening", o->manifest);
        goto out;
    }
    while ((rv = manifest_reader_next(e.rd, &hdr)) == 1) {
        const char *t = manifest_get(hdr, "type");
        const char *sz = manifest_get(hdr, "st_size");
        if (hdr->kind == MANIFEST_ENTRY && t && sz && !strcmp(t, "file"))
            expected += strtoull(sz, NULL, 10);
    }
    if (rv == MANIFEST_ECORRUPT) {
        unsigned long line;
        const char *why = manifest_reader_error(e.rd, &line);
        char actual[256];

        snprintf(actual, sizeof(actual), "line %lu: %s", line, why);
        report(&e, o->manifest, VERIFY_CORRUPT_MANIFEST, "valid", actual);
        e.rv = MANIFEST_ECORRUPT;
        snprintf(err, errsz, "%s: line %lu: %s", o->manifest, line, why);
        goto out;
    }
    if (rv != 0) {
        fail(&e, rv, "reading", o->manifest);
        goto out;
    }
    manifest_reader_close(e.rd);
    if ((rv = manifest_reader_open(&e.rd, o->manifest, -1)) != 0 ||
        (rv = manifest_reader_next(e.rd, &hdr)) != 1) {
        fail(&e, rv < 0 ? rv : -EIO, "reading", o->manifest);
        goto out;
    }

    if (o->checkpoint_dir) {
        char *dp = ckpt_path(&e, "discrepancies");
        if (!dp) {
            fail(&e, -ENOMEM, "memory", NULL);
            goto out;
        }
        e.disc_fd = open(dp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        free(dp);
        if (e.disc_fd < 0) {
            fail(&e, -errno, "opening the checkpoint in", o->checkpoint_dir);
            goto out;
        }
        rv = o->resume ? load_checkpoint(&e, &resume_len) : -ENOENT;
        if (rv == 0 && !verified_intact(&e, resume_len))
            rv = -ESTALE; /* the repaired manifest's start is gone */
        if (rv == 0)
            rv = replay(&e);
        if (rv == 0)
            st->resumed = 1;
        if (rv == -ENOENT || rv == -EINVAL || rv == -ESTALE) {
            /* start from scratch */
            e.after = NULL;
            memset(st, 0, sizeof(*st));
            resume_len = 0;
            if (ftruncate(e.disc_fd, 0) != 0) {
                fail(&e, -errno, "truncating", "discrepancies");
                goto out;
            }
        }
        else if (rv != 0) {
            fail(&e, rv, "reading the checkpoint in", o->checkpoint_dir);
            goto out;
        }
    }
    if (o->verified_out && (rv = open_verified(&e, hdr, resume_len)) != 0) {
        fail(&e, rv, "writing", o->verified_out);
        goto out;
    }
    if (o->index_out &&
        (rv = open_index(&e, e.after ? e.ix_resume : 0)) != 0) {
        fail(&e, rv, "writing", o->index_out);
        goto out;
    }
    /* An earlier index that cannot be opened is no reason to fail: every
     * file is then read. */
    if (o->since_index &&
        manifest_reader_open(&e.since, o->since_index, -1) != 0)
        e.since = NULL;
    if (e.after) {
        free(e.last);
        e.last = strdup(e.after);
        e.lastcap = strlen(e.after) + 1;
    }

    e.nthreads = o->jobs > 0 ? o->jobs : 1;
    if (!(e.threads = calloc((size_t)e.nthreads, sizeof(*e.threads)))) {
        fail(&e, -ENOMEM, "memory", NULL);
        goto out;
    }
    for (i = 0; i < e.nthreads; i++)
        if (pthread_create(&e.threads[i], NULL, worker, &e) != 0) {
            e.nthreads = i;
            fail(&e, -EAGAIN, "starting", "hashing threads");
            break;
        }
    /* The per-file results are many small sidecar writes: they are made
     * durable together, by a syncfs before each checkpoint and at the
     * end, rather than by an fsync each. */
    if (o->record_sidecars)
        sidecar_set_durable(0);
    e.last_ckpt = e.last_progress = time(NULL);
    {
        const char *ce = getenv("MIRRORDAV_VERIFY_CHECKPOINT_ENTRIES");
        e.ckpt_entries =
            ce && atoi(ce) > 0 ? (unsigned)atoi(ce) : CKPT_ENTRIES;
        /* MIRRORDAV_VERIFY_TEST_DELAY_US slows emission so that a test's
         * kill lands inside the run whatever the machine's speed. */
        ce = getenv("MIRRORDAV_VERIFY_TEST_DELAY_US");
        e.test_delay_us = ce && atoi(ce) > 0 ? (unsigned)atoi(ce) : 0;
    }
    st->expected_bytes = expected;

    if (!e.rv) {
        rv = manifest_walk(o->tree, on_tree, skip_entry, &e);
        if (rv && !e.rv)
            fail(&e, rv, "walking", o->tree);
    }
    /* What the manifest still holds is missing from the tree. */
    while (!e.rv && peek(&e)) {
        push(&e, e.cur->name, e.cur, NULL, NULL);
        e.cur = NULL;
    }
    pthread_mutex_lock(&e.mu);
    while (e.head != e.tail)
        drain(&e, 1); /* after a failure, jobs are freed unemitted */
    e.stop = 1;
    pthread_cond_broadcast(&e.work);
    pthread_mutex_unlock(&e.mu);
    for (i = 0; i < e.nthreads; i++)
        pthread_join(e.threads[i], NULL);

    if (!e.rv && e.sidecars_dirty && (rv = publish_syncfs(o->tree)) != 0)
        fail(&e, rv, "syncing", o->tree);
    if (o->record_sidecars)
        sidecar_set_durable(1);
    if (!e.rv && e.ix && (rv = publish_index(&e)) != 0)
        fail(&e, rv, "publishing", o->index_out);
    if (!e.rv && e.wr && (rv = publish_verified(&e)) != 0)
        fail(&e, rv, "publishing", o->verified_out);
    if (!e.rv && o->checkpoint_dir)
        remove_checkpoint(&e);
    if (o->on_progress)
        o->on_progress(o->ctx, st, 1);
out:
    if (e.wr_fd >= 0) {
        close(e.wr_fd);
        if (e.rv && e.wr && !o->checkpoint_dir)
            unlink(e.wr_tmp); /* nothing to resume it from */
    }
    manifest_writer_free(e.wr);
    manifest_writer_free(e.ix);
    if (e.ix_fd >= 0)
        close(e.ix_fd);
    manifest_reader_close(e.since);
    manifest_reader_close(e.rd);
    if (e.disc_fd >= 0)
        close(e.disc_fd);
    free(e.ring);
    free(e.threads);
    free(e.wr_tmp);
    free(e.ix_tmp);
    free(e.last);
    free(e.after_buf);
    pthread_mutex_destroy(&e.mu);
    pthread_cond_destroy(&e.work);
    pthread_cond_destroy(&e.done);
    return e.rv;
}
