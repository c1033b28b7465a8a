/*
 * The commit path of partial updates (patch_commit.h), taken out of
 * PATCH-APPLY so that every dialect that rewrites a byte range shares it.
 *
 * The new bytes O of the range are never written into the live file while
 * they are produced:
 *  - where the file system clones (FICLONE: XFS, btrfs), O goes into a
 *    clone of the file, which is fsynced and renamed over it: cost
 *    proportional to O, and readers or a crash see old or new;
 *  - where it cannot (ext4), O is staged in VOLUME/state/ and applied in
 *    place under a redo journal (sidecar/patchlog.c), with readers kept
 *    out by the file's flock (repos.c's deliver holds it shared);
 *  - a file a snapshot shares (more than one link) is never written in
 *    place: it is copied whole into a new inode (or cloned), which takes
 *    the name, so the snapshot keeps the old bytes.
 * Afterwards the sidecar gets the new size, mtime and a bumped content
 * version at once, the SHA-1 is pending, and a worker thread in each
 * child computes it from the queue in VOLUME/state/pending/.
 */
#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/fs.h>

#include "apr_strings.h"
#include "apr_thread_proc.h"
#include "apr_thread_cond.h"
#include "http_protocol.h"
#include "patch_commit.h"
#include "sidecar/patchlog.h"
#include "sidecar/sidecar.h"

#define WIN_BUF (1024 * 1024)
#define BLOCK   4096

struct mirrordav_patch {
    request_rec *r;
    apr_pool_t *p;
    const mirrordav_conf *conf;
    const char *path, *dir;
    int basis_fd; /* F, locked (open_target) */
    struct stat st;
    publish_file *nf; /* the clone or copy, when REPLACE */
    patchlog *pl;     /* the staging and journal, otherwise */
    int replace;
    int out_fd;            /* where O goes: the clone, or the staging file */
    apr_uint64_t out_base; /* O's first byte's offset in out_fd */
    apr_uint64_t s;        /* S: where O[0] goes in the file */
    apr_uint64_t got;      /* bytes of O so far */
    int skip_same;         /* write only blocks that differ from the file */
    char *win, *cmp;       /* O[win_off, +win_fill), and the file's bytes */
    apr_size_t win_fill;
    apr_uint64_t win_off;
    int have_mtime;
    struct timespec times[2]; /* for futimens: atime kept, the mtime */
};

void mirrordav_patch_set_mtime(mirrordav_patch *c,
                               const struct timespec *mtime)
{
    c->have_mtime = 1;
    c->times[0].tv_sec = 0;
    c->times[0].tv_nsec = UTIME_OMIT;
    c->times[1] = *mtime;
}

static dav_error *write_at(mirrordav_patch *c, const char *b, apr_size_t n,
                           apr_uint64_t off)
{
    while (n > 0) {
        ssize_t w = pwrite(c->out_fd, b, n, (off_t)(c->out_base + off));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return mirrordav_errno_error(
                c->p, APR_FROM_OS_ERROR(w < 0 ? errno : EIO),
                "Could not write the patched data");
        b += w;
        n -= (apr_size_t)w;
        off += (apr_uint64_t)w;
    }
    return NULL;
}

/* Writes the window (O[win_off, win_off + win_fill)).  When SKIP_SAME,
 * only its blocks that differ from the file's bytes at the same place:
 * the clone already holds those, and a sparse staging file leaves them
 * as holes that the journal's apply skips (sidecar/patchlog.c).  Windows
 * start at multiples of WIN_BUF in O, so every block is written whole or
 * not at all.  This keeps the writes (and the staged data) proportional
 * to the change even when the delta rewrites the whole file. */
static dav_error *flush_window(mirrordav_patch *c)
{
    apr_size_t done = 0, have = 0;
    dav_error *err;

    if (!c->skip_same || c->win_fill == 0) {
        err = write_at(c, c->win, c->win_fill, c->win_off);
        c->win_off += c->win_fill;
        c->win_fill = 0;
        return err;
    }
    while (have < c->win_fill) {
        ssize_t n = pread(c->basis_fd, c->cmp + have, c->win_fill - have,
                          (off_t)(c->s + c->win_off + have));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return mirrordav_errno_error(c->p, APR_FROM_OS_ERROR(errno),
                                         "Could not read the file");
        if (n == 0)
            break; /* past the end: all of it differs */
        have += (apr_size_t)n;
    }
    while (done < c->win_fill) {
        apr_size_t start = done, n;
        /* A run of differing blocks, written in one call. */
        while (done < c->win_fill) {
            n = c->win_fill - done < BLOCK ? c->win_fill - done : BLOCK;
            if (done + n <= have && !memcmp(c->win + done, c->cmp + done, n))
                break;
            done += n;
        }
        if (done > start && (err = write_at(c, c->win + start, done - start,
                                            c->win_off + start)) != NULL)
            return err;
        if (done < c->win_fill)
            done += c->win_fill - done < BLOCK ? c->win_fill - done : BLOCK;
    }
    c->win_off += c->win_fill;
    c->win_fill = 0;
    return NULL;
}

dav_error *mirrordav_patch_write(mirrordav_patch *c, const char *b,
                                 apr_size_t n)
{
    while (n > 0) {
        apr_size_t k = WIN_BUF - c->win_fill;
        dav_error *err;

        if (k > n)
            k = n;
        memcpy(c->win + c->win_fill, b, k);
        c->win_fill += k;
        c->got += k;
        b += k;
        n -= k;
        if (c->win_fill == WIN_BUF && (err = flush_window(c)) != NULL)
            return err;
    }
    return NULL;
}

apr_uint64_t mirrordav_patch_written(const mirrordav_patch *c)
{
    return c->got;
}

int mirrordav_patch_basis_fd(const mirrordav_patch *c)
{
    return c->basis_fd;
}

apr_uint64_t mirrordav_patch_basis_size(const mirrordav_patch *c)
{
    return (apr_uint64_t)c->st.st_size;
}

/* ------------------------------------------------------------ commit */

/* The target, opened read-write and held against other PATCH-APPLYs (an
 * open-file-description lock, apart from the flock readers share): the
 * basis must not change while a delta is applied to it.  A writer that
 * waited on a file replaced meanwhile (by the clone path's rename, or a
 * PUT) opens the new one. */
static dav_error *open_target(apr_pool_t *p, const char *path, int *fdp,
                              struct stat *st)
{
    int tries;

    for (tries = 0; tries < 100; tries++) {
        struct flock fl;
        struct stat now;
        int fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);

        if (fd < 0 && (errno == ENOENT || errno == ENOTDIR))
            return mirrordav_error(p, HTTP_INTERNAL_SERVER_ERROR, 0,
                                   "The file does not exist.");
        if (fd < 0)
            return mirrordav_errno_error(p, APR_FROM_OS_ERROR(errno),
                                         "Could not open the file");
        memset(&fl, 0, sizeof(fl));
        fl.l_type = F_WRLCK;
        fl.l_whence = SEEK_SET;
        while (fcntl(fd, F_OFD_SETLKW, &fl) != 0)
            if (errno != EINTR) {
                close(fd);
                return mirrordav_errno_error(p, APR_FROM_OS_ERROR(errno),
                                             "Could not lock the file");
            }
        if (fstat(fd, st) == 0 && lstat(path, &now) == 0 &&
            now.st_ino == st->st_ino && now.st_dev == st->st_dev) {
            if (!S_ISREG(st->st_mode)) {
                close(fd);
                return mirrordav_error(p, HTTP_METHOD_NOT_ALLOWED, 0,
                                       "PATCH-APPLY applies to files only.");
            }
            *fdp = fd;
            return NULL;
        }
        close(fd);
    }
    return mirrordav_error(p, HTTP_INTERNAL_SERVER_ERROR, 0,
                           "The file kept being replaced.");
}

static apr_status_t close_fd(void *data)
{
    int fd = (int)(intptr_t)data;
    if (fd >= 0)
        close(fd);
    return APR_SUCCESS;
}

static apr_status_t discard_newfile(void *data)
{
    publish_discard(data);
    return APR_SUCCESS;
}

/* The pending entry's lock, released at the latest with the request. */
static apr_status_t release_entry(void *data)
{
    int *held = data;

    if (*held >= 0) {
        close(*held);
        *held = -1;
    }
    return APR_SUCCESS;
}

static apr_status_t discard_stage(void *data)
{
    patchlog *pl = data;

    /* Before its record exists, staged data is only removed; after, the
     * handler retires it itself. */
    if (pl->rec_fd < 0 && pl->data_fd >= 0) {
        unlink(pl->data);
        close(pl->data_fd);
        pl->data_fd = -1;
    }
    return APR_SUCCESS;
}

/* A copy of the whole of FD into NF (a snapshot shares the file and it
 * cannot be cloned): the sharing is broken, at a cost that grows with the
 * file. */
static int copy_whole(int from, int to, apr_uint64_t size)
{
    loff_t in = 0, out = 0;

    while ((apr_uint64_t)in < size) {
        ssize_t n =
            copy_file_range(from, &in, to, &out, size - (apr_uint64_t)in, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? errno : EIO;
    }
    return 0;
}

static void wake_worker(void);

dav_error *mirrordav_patch_open(request_rec *r, const dav_resource *resource,
                                mirrordav_patch **pt)
{
    mirrordav_patch *c = apr_pcalloc(r->pool, sizeof(*c));
    dav_error *err;
    int fd = -1;

    c->r = r;
    c->p = r->pool;
    c->conf = resource->info->conf;
    c->path = resource->info->path;
    c->dir = mirrordav_dirname(r->pool, c->path);
    if ((err = open_target(r->pool, c->path, &fd, &c->st)) != NULL)
        return err;
    apr_pool_cleanup_register(r->pool, (void *)(intptr_t)fd, close_fd,
                              apr_pool_cleanup_null);
    c->basis_fd = fd;
    *pt = c;
    return NULL;
}

dav_error *mirrordav_patch_prepare(mirrordav_patch *c, apr_uint64_t s)
{
    request_rec *r = c->r;
    const mirrordav_conf *conf = c->conf;
    const char *dir = c->dir;
    int fd = c->basis_fd;
    publish_file *nf;
    patchlog *pl;
    int rv, replace = 0;

    /* Where O goes.  A clone first: on XFS and btrfs it costs nothing and
     * O then lands straight in the new version. */
    nf = apr_pcalloc(r->pool, sizeof(*nf));
    nf->fd = -1;
    pl = apr_pcalloc(r->pool, sizeof(*pl));
    pl->data_fd = pl->rec_fd = -1;
    c->nf = nf;
    c->pl = pl;
    if (sidecar_ensure_dir(dir) != 0)
        return mirrordav_errno_error(r->pool, APR_FROM_OS_ERROR(errno),
                                     "Could not prepare the sidecar folder");
    rv =
        publish_open(nf, dir, apr_pstrcat(r->pool, dir, "/" SIDECAR_DIR, NULL),
                     ".put-", O_WRONLY, c->st.st_mode & 07777);
    if (rv)
        return mirrordav_errno_error(r->pool, APR_FROM_OS_ERROR(-rv),
                                     "Could not create a temporary file");
    apr_pool_cleanup_register(r->pool, nf, discard_newfile,
                              apr_pool_cleanup_null);
    if (ioctl(nf->fd, FICLONE, fd) == 0)
        replace = 1;
    else if (c->st.st_nlink > 1) {
        /* A snapshot shares this inode: never write it in place. */
        if ((rv = copy_whole(fd, nf->fd, (apr_uint64_t)c->st.st_size)) != 0)
            return mirrordav_errno_error(r->pool, APR_FROM_OS_ERROR(rv),
                                         "Could not copy the file");
        replace = 1;
    }
    else {
        publish_discard(nf);
        if ((rv = patchlog_stage(conf->state, pl)) != 0)
            return mirrordav_errno_error(r->pool, APR_FROM_OS_ERROR(-rv),
                                         "Could not stage the patch");
        apr_pool_cleanup_register(r->pool, pl, discard_stage,
                                  apr_pool_cleanup_null);
    }
    c->replace = replace;
    c->out_fd = replace ? nf->fd : pl->data_fd;
    c->out_base = replace ? s : 0;
    c->s = s;
    c->skip_same = replace || pl->sparse;
    c->win = apr_palloc(c->p, WIN_BUF);
    c->cmp = c->skip_same ? apr_palloc(c->p, WIN_BUF) : NULL;
    return NULL;
}

dav_error *mirrordav_patch_commit(mirrordav_patch *c, apr_uint64_t result,
                                  int truncate)
{
    request_rec *r = c->r;
    const mirrordav_conf *conf = c->conf;
    const char *path = c->path;
    const char *dir = c->dir;
    publish_file *nf = c->nf;
    patchlog *pl = c->pl;
    struct stat nst;
    dav_error *err;
    int fd = c->basis_fd, rv, *held;

    if ((err = flush_window(c)) != NULL)
        return err;
    /* The size change checked against MirrorDAVQuota (507) and charged to
     * the usage counter (quota.c), for every partial-update dialect alike;
     * after the caller's digest checks (nothing charged for a refused
     * body) and before anything is queued or changed. */
    if ((err = mirrordav_quota_charge(r, conf, path, &c->st, result)) != NULL)
        return err;
    /* Queued before the data changes, durably: whatever crashes later,
     * the hash of the new data is computed (patchlog.h).  The entry is
     * held (locked) until the record describes the new data: a worker
     * taking it earlier would find the record current for the old data
     * and drop it, and a crash after the change would then leave the
     * record stale with no entry to repair it.  A crash frees the lock
     * with the process; recovery then marks and the workers hash. */
    held = apr_palloc(r->pool, sizeof(*held));
    if ((rv = patchlog_pending_add(conf->state, path, held)) != 0)
        return mirrordav_errno_error(r->pool, APR_FROM_OS_ERROR(-rv),
                                     "Could not queue the SHA-1");
    apr_pool_cleanup_register(r->pool, held, release_entry,
                              apr_pool_cleanup_null);
    if (c->replace) {
        if (truncate && ftruncate(nf->fd, (off_t)(c->s + c->got)) != 0)
            return mirrordav_errno_error(r->pool, APR_FROM_OS_ERROR(errno),
                                         "Could not truncate the file");
        if (c->have_mtime && futimens(nf->fd, c->times) != 0)
            return mirrordav_errno_error(r->pool, APR_FROM_OS_ERROR(errno),
                                         "Could not set the mtime");
        /* Contents durable before the name points at them; the name
         * durable before the record describes them (as PUT does). */
        if ((rv = publish_sync_fd(nf->fd)) != 0)
            return mirrordav_errno_error(r->pool, APR_FROM_OS_ERROR(-rv),
                                         "Could not sync the file");
        if (fstat(nf->fd, &nst) != 0)
            return mirrordav_errno_error(r->pool, APR_FROM_OS_ERROR(errno),
                                         "Could not stat the file");
        if ((rv = publish_commit(nf, path, PUBLISH_REPLACE)) != 0)
            return mirrordav_errno_error(r->pool, APR_FROM_OS_ERROR(-rv),
                                         "Could not put the file in place");
        if ((rv = publish_sync_dir(dir)) != 0)
            return mirrordav_errno_error(r->pool, APR_FROM_OS_ERROR(-rv),
                                         "Could not sync the directory");
    }
    else {
        pl->target = path;
        pl->ino = (apr_uint64_t)c->st.st_ino;
        pl->offset = c->s;
        pl->len = c->got;
        pl->new_size = result;
        if ((rv = patchlog_write_record(conf->state, pl)) != 0)
            return mirrordav_errno_error(r->pool, APR_FROM_OS_ERROR(-rv),
                                         "Could not journal the patch");
        rv = patchlog_apply(pl, fd);
        if (rv) {
            /* The record stays: recovery replays it at the next start. */
            ap_log_rerror(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(-rv), r,
                          "PATCH-APPLY of %s failed in place; its journal "
                          "record %s is replayed at the next start",
                          path, pl->rec);
            return mirrordav_errno_error(r->pool, APR_FROM_OS_ERROR(-rv),
                                         "Could not apply the patch");
        }
        patchlog_retire(conf->state, pl);
        /* After the apply, which sets the mtime of its own writes, and
         * synced before the answer.  The journal does not carry it: a
         * crash between the apply and here leaves the new bytes with the
         * time of the replay (the data is what must survive). */
        if (c->have_mtime) {
            if (futimens(fd, c->times) != 0)
                return mirrordav_errno_error(r->pool, APR_FROM_OS_ERROR(errno),
                                             "Could not set the mtime");
            if ((rv = publish_sync_fd(fd)) != 0)
                return mirrordav_errno_error(r->pool, APR_FROM_OS_ERROR(-rv),
                                             "Could not sync the file");
        }
        if (fstat(fd, &nst) != 0)
            return mirrordav_errno_error(r->pool, APR_FROM_OS_ERROR(errno),
                                         "Could not stat the file");
    }
    if ((rv = patchlog_record_new_data(path, &nst)) != 0)
        ap_log_rerror(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(-rv), r,
                      "could not record the new version of %s; "
                      "mirrordav fsck --repair brings it up to date",
                      path);
    apr_pool_cleanup_run(r->pool, held, release_entry);
    wake_worker();
    return NULL;
}

/* ------------------------------------------------ the hashing worker */

/* One thread per child: waits for a PATCH-APPLY (or a second), then
 * computes the SHA-1s pending in each volume's state/pending/. */
static apr_thread_mutex_t *worker_mutex;
static apr_thread_cond_t *worker_cond;
static apr_thread_t *worker;
static int worker_stop, worker_kick;
static server_rec *worker_server;

static void wake_worker(void)
{
    if (!worker_mutex)
        return;
    apr_thread_mutex_lock(worker_mutex);
    worker_kick = 1;
    apr_thread_cond_signal(worker_cond);
    apr_thread_mutex_unlock(worker_mutex);
}

static void worker_report(void *ctx, const char *target, const char *what,
                          int rc)
{
    (void)ctx;
    ap_log_error(APLOG_MARK, rc ? APLOG_WARNING : APLOG_INFO,
                 rc ? APR_FROM_OS_ERROR(-rc) : 0, worker_server,
                 "pending SHA-1 of %s: %s", target, what);
}

static void *APR_THREAD_FUNC worker_main(apr_thread_t *t, void *data)
{
    apr_pool_t *p = data;

    (void)t;
    publish_set_durable(1);
    sidecar_set_durable(1);
    for (;;) {
        const apr_array_header_t *vols;
        int i;

        apr_thread_mutex_lock(worker_mutex);
        if (!worker_kick && !worker_stop)
            apr_thread_cond_timedwait(worker_cond, worker_mutex,
                                      apr_time_from_sec(1));
        worker_kick = 0;
        if (worker_stop) {
            apr_thread_mutex_unlock(worker_mutex);
            break;
        }
        apr_thread_mutex_unlock(worker_mutex);
        vols = mirrordav_recovery_volumes();
        for (i = 0; vols && i < vols->nelts; i++) {
            const char *state = apr_pstrcat(
                p, APR_ARRAY_IDX(vols, i, const char *), "/state", NULL);
            patchlog_pending_run(state, 0, worker_report, NULL);
        }
        apr_pool_clear(p);
    }
    return NULL;
}

static apr_status_t worker_cleanup(void *data)
{
    apr_status_t rv;

    (void)data;
    if (!worker)
        return APR_SUCCESS;
    apr_thread_mutex_lock(worker_mutex);
    worker_stop = 1;
    apr_thread_cond_signal(worker_cond);
    apr_thread_mutex_unlock(worker_mutex);
    apr_thread_join(&rv, worker);
    worker = NULL;
    worker_mutex = NULL;
    return APR_SUCCESS;
}

static void child_init(apr_pool_t *pchild, server_rec *s)
{
    apr_pool_t *wp;

    worker_server = s;
    worker_stop = worker_kick = 0;
    if (apr_thread_mutex_create(&worker_mutex, APR_THREAD_MUTEX_DEFAULT,
                                pchild) != APR_SUCCESS ||
        apr_thread_cond_create(&worker_cond, pchild) != APR_SUCCESS ||
        apr_pool_create(&wp, pchild) != APR_SUCCESS ||
        apr_thread_create(&worker, NULL, worker_main, wp, pchild) !=
            APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s,
                     "could not start the SHA-1 worker; pending hashes are "
                     "computed by mirrordav fsck --repair");
        worker = NULL;
        worker_mutex = NULL;
        return;
    }
    apr_pool_cleanup_register(pchild, NULL, worker_cleanup,
                              apr_pool_cleanup_null);
}

void mirrordav_register_patch_commit(apr_pool_t *p)
{
    (void)p;
    ap_hook_child_init(child_init, NULL, NULL, APR_HOOK_MIDDLE);
}
