/*
 * Class 2 locking: mod_dav's lock hooks over a lock database in the
 * volume's state/ directory.
 *
 * Storage.  VOLUME/state/locks.gdbm holds DIRECT locks only, keyed by "/"
 * plus the locked resource's relpath ("/" for the root); a value lists
 * that resource's locks (format at encode_record).  Keys are paths, not
 * inodes, so a lock survives the PUT that replaces its file.
 *
 * Indirect locks are computed, never stored: the locks on a resource are
 * its own record plus the depth-infinity locks in each ancestor's record,
 * a few fetches per lookup.  Storing them, as mod_dav_fs does, would mean
 * writing one record per member for a LOCK of a big collection, a COPY
 * into it or a PUT of a new member.  So append_locks(make_indirect) is a
 * no-op, get_locks reports an ancestor's lock as INDIRECT with its info
 * naming the ancestor's record, lookup_resource returns the resource that
 * holds a token directly (dav_unlock walks from there), and remove_lock
 * only ever touches the record of the resource it is given.  A MOVE moves
 * no locks: mod_dav removes the source tree's locks (dav_unlock) and the
 * destination is covered by its new ancestors' locks as soon as it exists.
 *
 * Concurrency.  Requests run in several processes (and hosts, on a shared
 * file system), so nothing is kept in memory beyond one request.  Access
 * is serialised by flock() on state/locks.lock (GDBM's own locking makes
 * a second writer fail rather than wait, so it is off): LOCK_SH to read,
 * LOCK_EX to write, held for one hook call only.  It cannot be held from
 * open_lockdb to close_lockdb: mod_dav opens more lock databases while one
 * is open (dav_validate_request and dav_get_resource_state open their own,
 * dav_unlock inside a MOVE), and flock() on a second descriptor would wait
 * for the first forever.  As mod_dav checks for conflicting locks in one
 * call and adds the lock in another, append_locks checks again inside its
 * write.
 *
 * Crash safety.  The published locks.gdbm is never changed in place: a
 * write builds a complete new database and renames it over the old one
 * (why, and the order of fsyncs and renames: at the wtx type and publish).
 * A crash at any instant leaves the old or the new database, and nothing
 * is answered before the new one is durable.  No file means no locks; the
 * database is removed when its last lock goes.  Nothing else (no count, no
 * header) is trusted: readers find locks only in the records themselves.
 * Since a published file never changes, a handle keeps its read-only
 * GDBM handle and the ancestors' records it fetched while the name still
 * leads to the same inode, so a depth walk costs about one fetch per
 * member; with no database at all, reads open nothing.
 *
 * Expired locks are ignored when read and dropped by every write, which
 * copies the database.  A database that exists but cannot be read, or a
 * record that does not decode, is never taken for "no locks": the
 * requests that need it fail with a 500, and the log names the file (see
 * unusable), until an operator restores it or moves it aside.
 *
 * Lock-null resources: a LOCK of an unmapped URL creates an empty file
 * (RFC 4918 section 7.3), so no lock ever names a missing resource.  The
 * answer must then be 201, but mod_dav's dav_method_lock() sets
 * r->status = HTTP_OK unconditionally before it writes the lockdiscovery
 * body.  Minimal reproduction against mod_dav_fs or a provider without
 * the filter below:
 *   curl -i -X LOCK --data '<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:">
 *     <D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/>
 *     </D:locktype></D:lockinfo>' http://HOST/dav/no-such-file
 *   -> "HTTP/1.1 200 OK" (litmus locks: WARNING unmapped_lock).
 * append_locks, which creates the file, therefore adds an output filter
 * that turns that 200 into 201 before the headers are written.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gdbm.h>

#include "apr_strings.h"
#include "apr_uuid.h"
#include "http_protocol.h"
#include "util_filter.h"
#include "mirrordav.h"

#define LOCKDB_NAME      "locks.gdbm"
#define LOCKDB_TEMP      "locks.gdbm.new" /* the next one, being written */
#define LOCKFILE_NAME    "locks.lock"
#define LOCKTOKEN_PREFIX "opaquelocktoken:"
#define MEMBUILD_MAX     (8 << 20) /* larger databases are built on disk */
#define CACHE_MAX        4096      /* cached ancestor records per handle */
#define CREATED_FILTER   "MIRRORDAV_LOCK_CREATED"
#define RECORD_VERSION   1

struct dav_locktoken {
    apr_uuid_t uuid;
};

/* One lock as stored in a record. */
typedef struct lockrec {
    dav_lock_scope scope;
    dav_lock_type type;
    int depth;      /* 0 or DAV_INFINITY */
    time_t timeout; /* DAV_TIMEOUT_INFINITE or expiry time */
    dav_locktoken token;
    const char *owner; /* <D:owner> XML, or NULL */
    const char *auth_user;
    struct lockrec *next;
} lockrec;

/* The lock database of one volume, as seen by one handle. */
typedef struct {
    apr_pool_t *pool;
    const char *state, *dbpath, *tmppath, *lockpath;
    int fsync;
    int fd;          /* the lock file (for flock only); -1 until first use */
    int have_reader; /* rdb and cache describe the file (rdev, rino), or
                        with rdb NULL, the absence of any */
    dev_t rdev;
    ino_t rino;
    GDBM_FILE rdb;
    apr_pool_t *cpool;  /* the cache's; created on first use */
    apr_hash_t *cache;  /* key -> lockrec list, or the store itself
                           for "no record" */
    const char *purged; /* key whose subtree remove_lock cleared */
} lockstore;

struct dav_lockdb_private {
    request_rec *r;
    apr_pool_t *pool;   /* results live here (the request's pool) */
    apr_hash_t *stores; /* state directory -> lockstore */
};

typedef struct {
    dav_lockdb pub;
    dav_lockdb_private priv;
} lockdb_combined;

/* Lets a lock find its record: the holder of a DIRECT lock. */
struct dav_lock_private {
    lockstore *ls;
    const char *key;
};

typedef struct {
    dav_lock pub;
    dav_lock_private priv;
    dav_locktoken token;
} lock_combined;

static int lock_expired(time_t timeout, time_t now)
{
    return timeout != DAV_TIMEOUT_INFINITE && now >= timeout;
}

/* ------------------------------------------------------------ encoding */

static void put_u32(unsigned char *p, apr_uint32_t v)
{
    int i;
    for (i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, apr_uint64_t v)
{
    int i;
    for (i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static apr_uint32_t get_u32(const unsigned char *p)
{
    apr_uint32_t v = 0;
    int i;
    for (i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static apr_uint64_t get_u64(const unsigned char *p)
{
    apr_uint64_t v = 0;
    int i;
    for (i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/*
 * record := version(1) entry*
 * entry  := scope(1) type(1) infinite(1) 0(1) timeout(i64) uuid(16)
 *           str(owner) str(auth_user)
 * str    := u32 n, then n-1 bytes; n = 0 stands for NULL
 * Integers are little-endian, so hosts sharing a volume agree.
 */
static apr_size_t str_size(const char *s)
{
    return 4 + (s ? strlen(s) : 0);
}

static unsigned char *put_str(unsigned char *p, const char *s)
{
    apr_size_t n = s ? strlen(s) : 0;

    put_u32(p, s ? (apr_uint32_t)n + 1 : 0);
    if (n)
        memcpy(p + 4, s, n);
    return p + 4 + n;
}

static datum encode_record(apr_pool_t *p, const lockrec *list)
{
    const lockrec *l;
    apr_size_t size = 1;
    unsigned char *buf, *q;
    datum d;

    for (l = list; l; l = l->next)
        size += 4 + 8 + sizeof(apr_uuid_t) + str_size(l->owner) +
                str_size(l->auth_user);
    q = buf = apr_palloc(p, size);
    *q++ = RECORD_VERSION;
    for (l = list; l; l = l->next) {
        q[0] = (unsigned char)l->scope;
        q[1] = (unsigned char)l->type;
        q[2] = l->depth == DAV_INFINITY;
        q[3] = 0;
        put_u64(q + 4, (apr_uint64_t)(apr_int64_t)l->timeout);
        memcpy(q + 12, l->token.uuid.data, sizeof(apr_uuid_t));
        q = put_str(q + 12 + sizeof(apr_uuid_t), l->owner);
        q = put_str(q, l->auth_user);
    }
    d.dptr = (char *)buf;
    d.dsize = (int)size;
    return d;
}

static int get_str(apr_pool_t *p, const unsigned char **q,
                   const unsigned char *end, const char **s)
{
    apr_uint32_t n;

    if (end - *q < 4)
        return -1;
    n = get_u32(*q);
    *q += 4;
    if (n == 0) {
        *s = NULL;
        return 0;
    }
    if ((apr_size_t)(end - *q) < n - 1 || memchr(*q, '\0', n - 1))
        return -1;
    *s = apr_pstrmemdup(p, (const char *)*q, n - 1);
    *q += n - 1;
    return 0;
}

/* Decodes a record, keeping its order; -1 if it is malformed. */
static int decode_record(apr_pool_t *p, const char *data, apr_size_t len,
                         lockrec **list)
{
    const unsigned char *q = (const unsigned char *)data, *end = q + len;
    lockrec **tail = list;

    *list = NULL;
    if (len < 1 || *q++ != RECORD_VERSION)
        return -1;
    while (q < end) {
        lockrec *l = apr_pcalloc(p, sizeof(*l));

        if (end - q < (long)(12 + sizeof(apr_uuid_t)))
            return -1;
        l->scope = q[0];
        l->type = q[1];
        if ((l->scope != DAV_LOCKSCOPE_EXCLUSIVE &&
             l->scope != DAV_LOCKSCOPE_SHARED) ||
            l->type != DAV_LOCKTYPE_WRITE || q[2] > 1)
            return -1;
        l->depth = q[2] ? DAV_INFINITY : 0;
        l->timeout = (time_t)(apr_int64_t)get_u64(q + 4);
        memcpy(l->token.uuid.data, q + 12, sizeof(apr_uuid_t));
        q += 12 + sizeof(apr_uuid_t);
        if (get_str(p, &q, end, &l->owner) ||
            get_str(p, &q, end, &l->auth_user))
            return -1;
        *tail = l;
        tail = &l->next;
    }
    return 0;
}

/* Drops the expired locks of LIST; says whether any was dropped. */
static int drop_expired(lockrec **list, time_t now)
{
    int dropped = 0;

    while (*list) {
        if (lock_expired((*list)->timeout, now)) {
            *list = (*list)->next;
            dropped = 1;
        }
        else
            list = &(*list)->next;
    }
    return dropped;
}

/* ------------------------------------------------------------ keys */

static const char *key_of(apr_pool_t *p, const char *relpath)
{
    return apr_pstrcat(p, "/", relpath, NULL);
}

/* The key of KEY's parent, or NULL for the root's key. */
static const char *parent_key(apr_pool_t *p, const char *key)
{
    const char *s = strrchr(key, '/');

    if (s == key)
        return key[1] ? "/" : NULL;
    return apr_pstrmemdup(p, key, s - key);
}

/* Whether KEY names a proper descendant of ANCESTOR. */
static int key_below(const char *key, apr_size_t klen, const char *ancestor)
{
    apr_size_t n = strlen(ancestor);

    if (n == 1) /* the root */
        return klen > 1;
    return klen > n && memcmp(key, ancestor, n) == 0 && key[n] == '/';
}

static datum key_datum(const char *key)
{
    datum d;

    d.dptr = (char *)key;
    d.dsize = (int)strlen(key);
    return d;
}

/* ------------------------------------------------------------ the store */

static dav_lockdb_private *lockdb_of(dav_lockdb *lockdb)
{
    return lockdb->info;
}

static dav_error *db_error(apr_pool_t *p, apr_status_t rv, const char *what)
{
    char buf[120];

    return mirrordav_error(
        p, HTTP_INTERNAL_SERVER_ERROR, rv,
        rv ? apr_psprintf(p, "%s: %s", what,
                          apr_strerror(rv, buf, sizeof(buf)))
           : what);
}

static void drop_reader(lockstore *ls)
{
    if (ls->rdb)
        gdbm_close(ls->rdb);
    ls->rdb = NULL;
    ls->have_reader = 0;
    if (ls->cpool)
        apr_pool_clear(ls->cpool);
    ls->cache = NULL;
}

static apr_status_t store_cleanup(void *data)
{
    lockstore *ls = data;

    if (ls->rdb)
        gdbm_close(ls->rdb);
    ls->rdb = NULL;
    ls->have_reader = 0;
    if (ls->fd >= 0)
        close(ls->fd);
    ls->fd = -1;
    return APR_SUCCESS;
}

static lockstore *store_for(dav_lockdb *lockdb, const dav_resource *resource)
{
    dav_lockdb_private *db = lockdb_of(lockdb);
    const mirrordav_conf *conf = resource->info->conf;
    lockstore *ls = apr_hash_get(db->stores, conf->state, APR_HASH_KEY_STRING);

    if (ls)
        return ls;
    ls = apr_pcalloc(db->pool, sizeof(*ls));
    ls->pool = db->pool;
    ls->state = conf->state;
    ls->dbpath = apr_pstrcat(db->pool, conf->state, "/" LOCKDB_NAME, NULL);
    ls->tmppath = apr_pstrcat(db->pool, conf->state, "/" LOCKDB_TEMP, NULL);
    ls->lockpath = apr_pstrcat(db->pool, conf->state, "/" LOCKFILE_NAME, NULL);
    ls->fsync = mirrordav_fsync_enabled(conf);
    ls->fd = -1;
    apr_pool_cleanup_register(db->pool, ls, store_cleanup,
                              apr_pool_cleanup_null);
    apr_hash_set(db->stores, conf->state, APR_HASH_KEY_STRING, ls);
    return ls;
}

static const char *gdbm_message(apr_pool_t *p, gdbm_error e, int sys)
{
    if (gdbm_check_syserr(e))
        return apr_psprintf(p, "%s: %s", gdbm_strerror(e), strerror(sys));
    return gdbm_strerror(e);
}

/*
 * The database exists but cannot be read (or a record of it cannot be
 * decoded).  Nothing is assumed about the locks it holds: every request
 * that needs them is refused until an operator restores the file (or
 * moves it aside, giving its locks up knowingly), rather than a lock
 * being forgotten.  Requests whose lookups touch no bad part still work.
 */
static dav_error *unusable(lockstore *ls, request_rec *r, const char *why)
{
    ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                  "lock database %s is unusable (%s): requests that need "
                  "its locks are refused until it is restored or moved "
                  "aside (which gives up every lock it holds)",
                  ls->dbpath, why);
    return mirrordav_error(ls->pool, HTTP_INTERNAL_SERVER_ERROR, 0,
                           "The lock database cannot be read, so the locks "
                           "on this resource are unknown: refused rather "
                           "than risk ignoring one.");
}

/*
 * Creates state/ when a volume lacks it, and syncs its name into the
 * volume directory: otherwise a crash could take state/, and every lock
 * stored in it meanwhile, away again.
 */
static dav_error *make_state_dir(lockstore *ls)
{
    if (mkdir(ls->state, 0755) != 0) {
        if (errno == EEXIST)
            return NULL; /* made meanwhile; its maker syncs it */
        return mirrordav_errno_error(ls->pool, APR_FROM_OS_ERROR(errno),
                                     "Could not create the volume's state "
                                     "directory");
    }
    return ls->fsync ? mirrordav_fsync_dir(
                           ls->pool, mirrordav_dirname(ls->pool, ls->state))
                     : NULL;
}

/* Takes the flock (LOCK_SH or LOCK_EX) on the lock file, creating it (and
 * state/) on first use. */
static dav_error *store_lock(lockstore *ls, int how)
{
    dav_error *err;
    int tries, e = 0;

    for (tries = 0; ls->fd < 0 && tries < 4; tries++) {
        ls->fd = open(ls->lockpath, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (ls->fd >= 0 || (e = errno) != ENOENT)
            break;
        ls->fd =
            open(ls->lockpath,
                 O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0640);
        if (ls->fd >= 0) {
            /* The lock file holds no data, but it is a state file like the
             * others: its name is synced into state/ when created. */
            if (ls->fsync &&
                (err = mirrordav_fsync_dir(ls->pool, ls->state)) != NULL)
                return err;
            break;
        }
        if ((e = errno) == EEXIST)
            continue; /* created meanwhile by another process */
        if (e != ENOENT)
            break;
        if ((err = make_state_dir(ls)) != NULL)
            return err;
    }
    if (ls->fd < 0)
        return db_error(ls->pool, APR_FROM_OS_ERROR(e ? e : ENOENT),
                        apr_pstrcat(ls->pool,
                                    "Could not open the lock "
                                    "database's lock file ",
                                    ls->lockpath, NULL));
    while (flock(ls->fd, how) != 0) {
        if (errno != EINTR)
            return db_error(ls->pool, APR_FROM_OS_ERROR(errno),
                            "Could not lock the lock database");
    }
    return NULL;
}

static void store_unlock(lockstore *ls)
{
    flock(ls->fd, LOCK_UN);
}

/*
 * Starts a read: the flock in LOCK_SH, and a reader for the database file
 * as it is now (rdb stays NULL when there is no file: nothing is locked).
 * A published file never changes (write_end replaces it by rename), so a
 * reader and its cache stay valid while the name still leads to the same
 * inode; the inode cannot be reused while rdb holds it open.
 */
static dav_error *read_begin(lockstore *ls, request_rec *r)
{
    struct stat st;
    dav_error *err;
    gdbm_error e;
    int sys;

    if ((err = store_lock(ls, LOCK_SH)) != NULL)
        return err;
    if (stat(ls->dbpath, &st) != 0) {
        sys = errno;
        if (sys != ENOENT) {
            store_unlock(ls);
            return unusable(ls, r, strerror(sys));
        }
        if (!ls->have_reader || ls->rdb) {
            drop_reader(ls);
            ls->have_reader = 1; /* "no file", cached */
        }
        return NULL;
    }
    if (ls->have_reader && ls->rdb && st.st_ino == ls->rino &&
        st.st_dev == ls->rdev)
        return NULL;
    drop_reader(ls);
    ls->rdb = gdbm_open(ls->dbpath, 0,
                        GDBM_READER | GDBM_NOLOCK | GDBM_CLOEXEC, 0, NULL);
    if (!ls->rdb) {
        e = gdbm_errno;
        sys = errno;
        store_unlock(ls);
        return unusable(ls, r, gdbm_message(ls->pool, e, sys));
    }
    if (fstat(gdbm_fdesc(ls->rdb), &st) != 0) {
        sys = errno;
        drop_reader(ls);
        store_unlock(ls);
        return db_error(ls->pool, APR_FROM_OS_ERROR(sys),
                        "Could not read the lock database");
    }
    ls->rdev = st.st_dev;
    ls->rino = st.st_ino;
    ls->have_reader = 1;
    return NULL;
}

/*
 * Fetches KEY's record within a read.  Records of ancestors are cached:
 * a walk asks for them once per member.  A record that cannot be read or
 * decoded fails the lookup (see unusable).
 */
static dav_error *read_fetch(lockstore *ls, request_rec *r, apr_pool_t *p,
                             const char *key, int cache, lockrec **list)
{
    datum v;
    apr_pool_t *rp = p;
    int rc;

    *list = NULL;
    if (!ls->rdb)
        return NULL;
    if (cache) {
        void *hit = ls->cache
                        ? apr_hash_get(ls->cache, key, APR_HASH_KEY_STRING)
                        : NULL;
        if (hit) {
            *list = hit == (void *)ls ? NULL : hit;
            return NULL;
        }
        if (!ls->cpool)
            apr_pool_create(&ls->cpool, ls->pool);
        if (!ls->cache || apr_hash_count(ls->cache) >= CACHE_MAX) {
            /* bounded memory on a walk over a huge tree */
            apr_pool_clear(ls->cpool);
            ls->cache = apr_hash_make(ls->cpool);
        }
        rp = ls->cpool;
    }
    v = gdbm_fetch(ls->rdb, key_datum(key));
    if (!v.dptr) {
        gdbm_error e = gdbm_last_errno(ls->rdb);
        int sys = gdbm_last_syserr(ls->rdb);

        if (e != GDBM_ITEM_NOT_FOUND) {
            const char *why = apr_psprintf(p, "reading the record of %s: %s",
                                           key, gdbm_message(p, e, sys));
            drop_reader(ls); /* GDBM may want recovery: reopen next time */
            return unusable(ls, r, why);
        }
    }
    else {
        rc = decode_record(rp, v.dptr, v.dsize, list);
        free(v.dptr);
        if (rc != 0) {
            *list = NULL;
            return unusable(
                ls, r, apr_psprintf(p, "the record of %s is malformed", key));
        }
    }
    if (cache)
        apr_hash_set(ls->cache, apr_pstrdup(ls->cpool, key),
                     APR_HASH_KEY_STRING, *list ? (void *)*list : (void *)ls);
    return NULL;
}

/*
 * Crash safety of writes.  GDBM changes a database in place, and a crash
 * (or kill -9) in the middle of a change can leave it torn.  GDBM's crash
 * tolerance (gdbm_failure_atomic, GDBM >= 1.21; Debian has 1.23) would
 * avoid that, but it needs a file system with reflink copies (XFS, btrfs),
 * not ext4 nor the shared file systems (CephFS, NFS) this store is meant
 * for, and it leaves picking the right snapshot after a crash to us.  So
 * a write never changes the published file: under the exclusive flock it
 * copies the database into a new one (lock databases are small, a few
 * bytes per lock), changes that, and write_end renames it over the old
 * one, the discipline the sidecars use.  The file on disk is thus always
 * one complete database, whatever instant a crash hits.  The new database
 * is built in memory (memfd, where GDBM's own fsyncs cost nothing) unless
 * the old one is large, and then in the temp file itself.
 */
typedef struct {
    GDBM_FILE db; /* the new database */
    int fd;       /* the file it is built in */
    int in_place; /* fd is the temp file in state/, not a memfd */
} wtx;

static dav_error *write_failed(GDBM_FILE wdb, apr_pool_t *p)
{
    return mirrordav_error(p, HTTP_INTERNAL_SERVER_ERROR, 0,
                           apr_psprintf(p, "Lock database failure: %s",
                                        gdbm_message(p, gdbm_last_errno(wdb),
                                                     gdbm_last_syserr(wdb))));
}

/* Closes and removes the new database of a write that publishes nothing. */
static void discard(lockstore *ls, wtx *w)
{
    if (w->db)
        gdbm_close(w->db);
    w->db = NULL;
    if (w->fd >= 0)
        close(w->fd);
    w->fd = -1;
    if (w->in_place)
        unlink(ls->tmppath);
    w->in_place = 0;
}

/* Creates the new, empty database; OLD_SIZE: the current one's size. */
static dav_error *build_open(lockstore *ls, apr_off_t old_size, wtx *w)
{
    int dfd, e;

    w->db = NULL;
    w->in_place = 0;
    w->fd = old_size <= MEMBUILD_MAX ? memfd_create("locks", MFD_CLOEXEC) : -1;
    if (w->fd < 0) {
        /* A temp file left by a crashed writer is simply truncated: writers
         * are serialised by the flock, so no other one is using it. */
        w->fd =
            open(ls->tmppath,
                 O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
        if (w->fd < 0)
            return db_error(ls->pool, APR_FROM_OS_ERROR(errno),
                            "Could not create the new lock database");
        w->in_place = 1;
    }
    dfd = fcntl(w->fd, F_DUPFD_CLOEXEC, 0);
    if (dfd >= 0)
        w->db = gdbm_fd_open(dfd, ls->tmppath, 0,
                             GDBM_NEWDB | GDBM_NOLOCK | GDBM_CLOERROR, NULL);
    if (!w->db) {
        e = dfd < 0 ? errno : 0;
        discard(ls, w);
        return db_error(ls->pool, APR_FROM_OS_ERROR(e),
                        "Could not create the new lock database");
    }
    return NULL;
}

/*
 * Copies every record of OLD into the new database, dropping expired
 * locks on the way (every write is a sweep).  A record that does not
 * decode is copied as it is: it is not ours to drop (see unusable).  A
 * database that cannot be read to the end fails the write.
 */
static dav_error *copy_records(lockstore *ls, request_rec *r, GDBM_FILE old,
                               GDBM_FILE db, apr_pool_t *p)
{
    time_t now = time(NULL);
    apr_pool_t *sp;
    datum k = gdbm_firstkey(old);
    dav_error *err = NULL;
    gdbm_error e;

    apr_pool_create(&sp, p);
    while (k.dptr) {
        datum v = gdbm_fetch(old, k), next;
        lockrec *list;
        int rc = 0;

        if (!v.dptr) {
            free(k.dptr);
            break; /* the error is checked below */
        }
        apr_pool_clear(sp);
        if (decode_record(sp, v.dptr, v.dsize, &list) == 0 &&
            drop_expired(&list, now)) {
            if (list)
                rc = gdbm_store(db, k, encode_record(sp, list), GDBM_INSERT);
        }
        else
            rc = gdbm_store(db, k, v, GDBM_INSERT);
        free(v.dptr);
        if (rc != 0) {
            free(k.dptr);
            err = rc > 0 ? unusable(ls, r, "a key is stored twice")
                         : write_failed(db, p);
            break;
        }
        next = gdbm_nextkey(old, k);
        free(k.dptr);
        k = next;
    }
    apr_pool_destroy(sp);
    if (!err && (e = gdbm_last_errno(old)) != GDBM_ITEM_NOT_FOUND &&
        e != GDBM_NO_ERROR)
        err = unusable(ls, r, gdbm_message(p, e, gdbm_last_syserr(old)));
    return err;
}

/* Starts a write: the flock in LOCK_EX, and the new database holding a
 * copy of the current one. */
static dav_error *write_begin(lockstore *ls, request_rec *r, apr_pool_t *p,
                              wtx *w)
{
    GDBM_FILE old;
    struct stat st;
    dav_error *err;

    if ((err = store_lock(ls, LOCK_EX)) != NULL)
        return err;
    st.st_size = 0;
    old = gdbm_open(ls->dbpath, 0, GDBM_READER | GDBM_NOLOCK | GDBM_CLOEXEC, 0,
                    NULL);
    if (!old) {
        gdbm_error e = gdbm_errno;
        int sys = errno;

        if (!gdbm_check_syserr(e) || sys != ENOENT) {
            store_unlock(ls);
            return unusable(ls, r, gdbm_message(p, e, sys));
        }
        /* no file: nothing is locked yet */
    }
    else if (fstat(gdbm_fdesc(old), &st) != 0)
        st.st_size = MEMBUILD_MAX + 1;
    if ((err = build_open(ls, st.st_size, w)) == NULL && old)
        err = copy_records(ls, r, old, w->db, p);
    if (old)
        gdbm_close(old);
    if (err) {
        discard(ls, w);
        store_unlock(ls);
    }
    return err;
}

/* Copies the memfd FROM into the file TO. */
static int copy_fd(int from, int to)
{
    char buf[65536];
    off_t off = 0;
    ssize_t n;

    while ((n = pread(from, buf, sizeof(buf), off)) > 0) {
        ssize_t done = 0;

        while (done < n) {
            ssize_t m = write(to, buf + done, n - done);

            if (m < 0) {
                if (errno == EINTR)
                    continue;
                return -1;
            }
            done += m;
        }
        off += n;
    }
    return n < 0 ? -1 : 0;
}

/*
 * Makes the new database the current one, durably (with MirrorDAVFsync
 * on) before the request is answered.  Called with the flock in LOCK_EX.
 */
static dav_error *publish(lockstore *ls, wtx *w)
{
    gdbm_count_t n = 0;
    int fd = -1, e;
    dav_error *err;

    if (gdbm_count(w->db, &n) != 0)
        return write_failed(w->db, ls->pool);
    e = gdbm_close(w->db) != 0 ? (errno ? errno : EIO) : 0;
    w->db = NULL;
    if (e)
        return db_error(ls->pool, APR_FROM_OS_ERROR(e),
                        "Could not write the new lock database");
    if (n == 0) {
        /* Nothing is locked any more: the file goes, and its absence means
         * "no locks" to every reader.  A crash before state/'s fsync can
         * bring the old file back, which is right as long as no client
         * has been told that its locks are gone: the reply waits. */
        discard(ls, w);
        if (unlink(ls->dbpath) != 0 && errno != ENOENT)
            return db_error(ls->pool, APR_FROM_OS_ERROR(errno),
                            "Could not remove the emptied lock database");
        return ls->fsync ? mirrordav_fsync_dir(ls->pool, ls->state) : NULL;
    }
    if (w->in_place)
        fd = w->fd;
    else {
        fd = open(ls->tmppath,
                  O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
        if (fd < 0 || copy_fd(w->fd, fd) != 0) {
            e = errno;
            if (fd >= 0)
                close(fd);
            w->in_place = 1; /* so that discard removes the temp file */
            discard(ls, w);
            return db_error(ls->pool, APR_FROM_OS_ERROR(e),
                            "Could not write the new lock database");
        }
        close(w->fd);
    }
    w->fd = -1;
    /* The data reaches the disk before a name leads to it: else a power
     * loss after the rename could leave locks.gdbm naming a file with
     * missing blocks.  A crash before the rename leaves the old database
     * in place and a stray temp file that the next write truncates.
     * (MirrorDAVFsync Off skips this and the fsync below: after a power
     * loss the name may then lead to an empty or partial file, which
     * readers report as unusable rather than read as "no locks".) */
    e = ls->fsync && fsync(fd) != 0 ? errno : 0;
    if (close(fd) != 0 && !e)
        e = errno;
    /* rename() replaces the name atomically: a crash leaves the old or the
     * new database under it, never a mix.  Readers that opened the old
     * one keep reading it unchanged (its inode lives on while open) and
     * notice the new one by its inode (read_begin). */
    if (e || rename(ls->tmppath, ls->dbpath) != 0) {
        e = e ? e : errno;
        unlink(ls->tmppath);
        return db_error(ls->pool, APR_FROM_OS_ERROR(e),
                        "Could not publish the new lock database");
    }
    w->in_place = 0; /* renamed: nothing left to remove */
    /* The reply waits for state/'s fsync: until then a power loss may bring
     * back the old database (or, for the first one, no file), which is
     * right only while no client has been told of the change.  The lock
     * file created next to it is synced by store_lock. */
    if (ls->fsync && (err = mirrordav_fsync_dir(ls->pool, ls->state)) != NULL)
        return err;
    return NULL;
}

/* Ends a write: publishes the change, if any and the steps succeeded. */
static dav_error *write_end(lockstore *ls, wtx *w, int changed, int ok)
{
    dav_error *err = NULL;

    if (ok && changed)
        err = publish(ls, w);
    discard(ls, w); /* what publish did not consume, or left on failure */
    store_unlock(ls);
    return err;
}

/* Rewrites KEY's record (removes it when LIST is empty). */
static dav_error *write_record(GDBM_FILE wdb, apr_pool_t *p, const char *key,
                               const lockrec *list)
{
    int rc;

    if (list)
        rc = gdbm_store(wdb, key_datum(key), encode_record(p, list),
                        GDBM_REPLACE);
    else {
        rc = gdbm_delete(wdb, key_datum(key));
        if (rc != 0 && gdbm_last_errno(wdb) == GDBM_ITEM_NOT_FOUND)
            rc = 0;
    }
    return rc == 0 ? NULL : write_failed(wdb, p);
}

/* Reads KEY's record within a write, without its expired locks; DIRTY
 * says whether some were dropped.  A malformed record fails the write. */
static dav_error *write_fetch(lockstore *ls, GDBM_FILE wdb, request_rec *r,
                              apr_pool_t *p, const char *key, time_t now,
                              lockrec **list, int *dirty)
{
    datum v = gdbm_fetch(wdb, key_datum(key));
    int rc;

    *list = NULL;
    *dirty = 0;
    if (!v.dptr) {
        if (gdbm_last_errno(wdb) == GDBM_ITEM_NOT_FOUND)
            return NULL;
        return write_failed(wdb, p);
    }
    rc = decode_record(p, v.dptr, v.dsize, list);
    free(v.dptr);
    if (rc != 0) {
        *list = NULL;
        return unusable(ls, r,
                        apr_psprintf(p, "the record of %s is malformed", key));
    }
    if (drop_expired(list, now))
        *dirty = 1;
    return NULL;
}

/* Lists every key of the database (to change records without upsetting
 * GDBM's traversal). */
static apr_array_header_t *all_keys(GDBM_FILE dbf, apr_pool_t *p)
{
    apr_array_header_t *keys = apr_array_make(p, 16, sizeof(const char *));
    datum k = gdbm_firstkey(dbf);

    while (k.dptr) {
        datum next = gdbm_nextkey(dbf, k);

        APR_ARRAY_PUSH(keys, const char *) =
            apr_pstrmemdup(p, k.dptr, k.dsize);
        free(k.dptr);
        k = next;
    }
    return keys;
}

/* One step of a write transaction; sets *CHANGED if it wrote. */
typedef dav_error *(*write_fn)(lockstore *ls, GDBM_FILE wdb, request_rec *r,
                               apr_pool_t *p, void *ctx, int *changed);

/* Runs FN under LOCK_EX on a copy of the database, and publishes the copy
 * if FN changed it. */
static dav_error *run_write(lockstore *ls, request_rec *r, write_fn fn,
                            void *ctx)
{
    apr_pool_t *p;
    wtx w = {NULL, -1, 0};
    int changed = 0;
    dav_error *err, *err2;

    apr_pool_create(&p, ls->pool);
    if ((err = write_begin(ls, r, p, &w)) != NULL)
        return err;
    err = fn(ls, w.db, r, p, ctx, &changed);
    err2 = write_end(ls, &w, changed, err == NULL);
    if (err)
        return err; /* P, which it may live in, goes with the request */
    apr_pool_destroy(p);
    return err2;
}

/* ------------------------------------------------------------ dav_lock */

static dav_lock *new_lock(apr_pool_t *p, lockstore *ls, const char *key,
                          const lockrec *rec, dav_lock_rectype rectype,
                          int is_locknull)
{
    lock_combined *c = apr_pcalloc(p, sizeof(*c));

    c->pub.rectype = rectype;
    c->pub.is_locknull = is_locknull;
    c->pub.scope = rec->scope;
    c->pub.type = rec->type;
    c->pub.depth = rec->depth;
    c->pub.timeout = rec->timeout;
    c->token = rec->token;
    c->pub.locktoken = &c->token;
    c->pub.owner = rec->owner ? apr_pstrdup(p, rec->owner) : NULL;
    c->pub.auth_user = rec->auth_user ? apr_pstrdup(p, rec->auth_user) : NULL;
    c->priv.ls = ls;
    c->priv.key = apr_pstrdup(p, key);
    c->pub.info = &c->priv;
    return &c->pub;
}

static int same_token(const dav_locktoken *a, const dav_locktoken *b)
{
    return memcmp(a->uuid.data, b->uuid.data, sizeof(a->uuid.data)) == 0;
}

/* ------------------------------------------------------------ hooks */

static const char *get_supportedlock(const dav_resource *resource)
{
    static const char supported[] =
        DEBUG_CR "<D:lockentry>" DEBUG_CR
                 "<D:lockscope><D:exclusive/></D:lockscope>" DEBUG_CR
                 "<D:locktype><D:write/></D:locktype>" DEBUG_CR
                 "</D:lockentry>" DEBUG_CR "<D:lockentry>" DEBUG_CR
                 "<D:lockscope><D:shared/></D:lockscope>" DEBUG_CR
                 "<D:locktype><D:write/></D:locktype>" DEBUG_CR
                 "</D:lockentry>" DEBUG_CR;

    return supported;
}

/*
 * Anything but "opaquelocktoken:" and exactly one UUID is an unknown
 * state token (DAV_ERR_LOCK_UNK_STATE_TOKEN): mod_dav's If header
 * evaluation then counts it as a state that does not match (so a locked
 * resource answers 423, litmus cond_put_corrupt_token), where any other
 * parse error would be a 400.  "DAV:no-lock" takes the same path.
 * apr_uuid_parse() ignores what follows the 36 characters, so the length
 * is checked here: "<token>x" is not the token.
 */
static dav_error *parse_locktoken(apr_pool_t *p, const char *char_token,
                                  dav_locktoken **locktoken_p)
{
    dav_locktoken *t;
    apr_size_t plen = sizeof(LOCKTOKEN_PREFIX) - 1;

    if (strncasecmp(char_token, LOCKTOKEN_PREFIX, plen) != 0 ||
        strlen(char_token + plen) != APR_UUID_FORMATTED_LENGTH)
        goto unknown;
    t = apr_pcalloc(p, sizeof(*t));
    if (apr_uuid_parse(&t->uuid, char_token + plen) != APR_SUCCESS)
        goto unknown;
    *locktoken_p = t;
    return NULL;

unknown:
    return dav_new_error(p, HTTP_BAD_REQUEST, DAV_ERR_LOCK_UNK_STATE_TOKEN, 0,
                         "The lock token is not one this server issued.");
}

static const char *format_locktoken(apr_pool_t *p,
                                    const dav_locktoken *locktoken)
{
    char buf[APR_UUID_FORMATTED_LENGTH + 1];

    apr_uuid_format(buf, &locktoken->uuid);
    return apr_pstrcat(p, LOCKTOKEN_PREFIX, buf, NULL);
}

static int compare_locktoken(const dav_locktoken *lt1,
                             const dav_locktoken *lt2)
{
    return memcmp(lt1->uuid.data, lt2->uuid.data, sizeof(lt1->uuid.data));
}

static apr_status_t lockdb_cleanup(void *data)
{
    dav_lockdb_private *db = data;
    apr_hash_index_t *hi;

    for (hi = apr_hash_first(NULL, db->stores); hi; hi = apr_hash_next(hi)) {
        lockstore *ls = apr_hash_this_val(hi);
        apr_pool_cleanup_run(db->pool, ls, store_cleanup);
    }
    apr_hash_clear(db->stores);
    return APR_SUCCESS;
}

/* Opening costs nothing: each hook call opens what it needs (and the
 * resource it is given names the volume). */
static dav_error *open_lockdb(request_rec *r, int ro, int force,
                              dav_lockdb **lockdb)
{
    lockdb_combined *c = apr_pcalloc(r->pool, sizeof(*c));

    c->pub.hooks = &mirrordav_hooks_locks;
    c->pub.ro = ro;
    c->pub.info = &c->priv;
    c->priv.r = r;
    c->priv.pool = r->pool;
    c->priv.stores = apr_hash_make(r->pool);
    apr_pool_cleanup_register(r->pool, &c->priv, lockdb_cleanup,
                              apr_pool_cleanup_null);
    *lockdb = &c->pub;
    return NULL;
}

static void close_lockdb(dav_lockdb *lockdb)
{
    apr_pool_cleanup_run(lockdb->info->pool, lockdb->info, lockdb_cleanup);
}

/* No lock-null state: a LOCK of an unmapped URL creates the file. */
static dav_error *remove_locknull_state(dav_lockdb *lockdb,
                                        const dav_resource *resource)
{
    return NULL;
}

static dav_error *create_lock(dav_lockdb *lockdb, const dav_resource *resource,
                              dav_lock **lock)
{
    dav_lockdb_private *db = lockdb_of(lockdb);
    lock_combined *c = apr_pcalloc(db->pool, sizeof(*c));

    c->pub.rectype = DAV_LOCKREC_DIRECT;
    c->pub.is_locknull = !resource->exists;
    apr_uuid_get(&c->token.uuid);
    c->pub.locktoken = &c->token;
    c->priv.ls = store_for(lockdb, resource);
    c->priv.key = key_of(db->pool, resource->info->relpath);
    c->pub.info = &c->priv;
    *lock = &c->pub;
    return NULL;
}

/*
 * Calls VISIT for the records that can hold locks on RESOURCE: its own
 * (self = 1), then each ancestor's, nearest first, within one read.
 * VISIT returns nonzero to stop.
 */
typedef int (*visit_fn)(void *ctx, const char *key, int self,
                        const lockrec *list);

static dav_error *visit_records(dav_lockdb *lockdb,
                                const dav_resource *resource, visit_fn visit,
                                void *ctx, int ancestors)
{
    dav_lockdb_private *db = lockdb_of(lockdb);
    lockstore *ls = store_for(lockdb, resource);
    apr_pool_t *p = resource->pool; /* a walk clears it for each member */
    const char *key = key_of(p, resource->info->relpath);
    int self = 1;
    dav_error *err;

    if ((err = read_begin(ls, db->r)) != NULL)
        return err;
    for (; key; key = ancestors ? parent_key(p, key) : NULL, self = 0) {
        lockrec *list;

        if ((err = read_fetch(ls, db->r, p, key, !self, &list)) != NULL ||
            (list && visit(ctx, key, self, list)))
            break;
    }
    store_unlock(ls);
    return err;
}

typedef struct {
    dav_lockdb *lockdb;
    const dav_resource *resource;
    lockstore *ls;
    int calltype;
    time_t now;
    const dav_locktoken *token; /* find_lock, lookup_resource */
    int partial_ok;
    dav_lock *locks; /* the result */
    const char *found_key;
    int found_self;
} visit_ctx;

static void visit_init(visit_ctx *c, dav_lockdb *lockdb,
                       const dav_resource *resource)
{
    memset(c, 0, sizeof(*c));
    c->lockdb = lockdb;
    c->resource = resource;
    c->ls = store_for(lockdb, resource);
    c->now = time(NULL);
}

static dav_lock_rectype indirect_type(int calltype)
{
    return calltype == DAV_GETLOCKS_PARTIAL ? DAV_LOCKREC_INDIRECT_PARTIAL
                                            : DAV_LOCKREC_INDIRECT;
}

static int collect_locks(void *data, const char *key, int self,
                         const lockrec *list)
{
    visit_ctx *c = data;
    apr_pool_t *p = c->resource->pool;

    for (; list; list = list->next) {
        dav_lock *l;

        if (lock_expired(list->timeout, c->now) ||
            (!self && list->depth != DAV_INFINITY))
            continue;
        l = new_lock(p, c->ls, key, list,
                     self ? DAV_LOCKREC_DIRECT : indirect_type(c->calltype),
                     self && !c->resource->exists);
        l->next = c->locks;
        c->locks = l;
    }
    return 0;
}

static dav_error *get_locks(dav_lockdb *lockdb, const dav_resource *resource,
                            int calltype, dav_lock **locks)
{
    visit_ctx c;
    dav_error *err;

    visit_init(&c, lockdb, resource);
    c.calltype = calltype;
    err = visit_records(lockdb, resource, collect_locks, &c, 1);
    *locks = err ? NULL : c.locks;
    return err;
}

static int match_token(void *data, const char *key, int self,
                       const lockrec *list)
{
    visit_ctx *c = data;

    for (; list; list = list->next) {
        if (lock_expired(list->timeout, c->now) ||
            (!self && list->depth != DAV_INFINITY) ||
            !same_token(&list->token, c->token))
            continue;
        c->found_key = key;
        c->found_self = self;
        if (c->lockdb) {
            c->locks =
                new_lock(c->resource->pool, c->ls, key, list,
                         self ? DAV_LOCKREC_DIRECT
                              : (c->partial_ok ? DAV_LOCKREC_INDIRECT_PARTIAL
                                               : DAV_LOCKREC_INDIRECT),
                         self && !c->resource->exists);
        }
        return 1;
    }
    return 0;
}

static dav_error *find_lock(dav_lockdb *lockdb, const dav_resource *resource,
                            const dav_locktoken *locktoken, int partial_ok,
                            dav_lock **lock)
{
    visit_ctx c;
    dav_error *err;

    visit_init(&c, lockdb, resource);
    c.token = locktoken;
    c.partial_ok = partial_ok;
    err = visit_records(lockdb, resource, match_token, &c, 1);
    *lock = err ? NULL : c.locks;
    return err;
}

static int any_active(void *data, const char *key, int self,
                      const lockrec *list)
{
    visit_ctx *c = data;

    for (; list; list = list->next) {
        if (!lock_expired(list->timeout, c->now)) {
            c->found_self = 1;
            return 1;
        }
    }
    return 0;
}

/* Only the resource's own locks count: a missing member of a locked
 * collection is a null resource, not a lock-null one. */
static dav_error *has_locks(dav_lockdb *lockdb, const dav_resource *resource,
                            int *locks_present)
{
    visit_ctx c = {0};
    dav_error *err;

    c.now = time(NULL);
    err = visit_records(lockdb, resource, any_active, &c, 0);
    *locks_present = !err && c.found_self;
    return err;
}

/*
 * Whether a new lock of SCOPE conflicts with an existing active one:
 * an exclusive lock conflicts with any, a shared one with exclusive ones.
 */
static int conflicts(dav_lock_scope scope, const lockrec *list, time_t now,
                     int self)
{
    for (; list; list = list->next) {
        if (lock_expired(list->timeout, now) ||
            (!self && list->depth != DAV_INFINITY))
            continue;
        if (scope == DAV_LOCKSCOPE_EXCLUSIVE ||
            list->scope == DAV_LOCKSCOPE_EXCLUSIVE)
            return 1;
    }
    return 0;
}

/* Checks, within a write, that no lock stored meanwhile by another
 * request conflicts with NEW on KEY (OWN: KEY's current locks). */
static dav_error *recheck_conflicts(lockstore *ls, GDBM_FILE wdb,
                                    request_rec *r, apr_pool_t *p,
                                    const char *key, const lockrec *own,
                                    const dav_lock *new, int collection,
                                    time_t now)
{
    const char *k;
    lockrec *list;
    int dirty;
    dav_error *err;

    if (conflicts(new->scope, own, now, 1))
        goto locked;
    for (k = parent_key(p, key); k; k = parent_key(p, k)) {
        if ((err = write_fetch(ls, wdb, r, p, k, now, &list, &dirty)))
            return err;
        if (conflicts(new->scope, list, now, 0))
            goto locked;
    }
    if (collection && new->depth == DAV_INFINITY) {
        apr_array_header_t *keys = all_keys(wdb, p);
        int i;

        for (i = 0; i < keys->nelts; i++) {
            k = APR_ARRAY_IDX(keys, i, const char *);
            if (!key_below(k, strlen(k), key))
                continue;
            if ((err = write_fetch(ls, wdb, r, p, k, now, &list, &dirty)))
                return err;
            if (conflicts(new->scope, list, now, 1))
                goto locked;
        }
    }
    return NULL;

locked:
    return mirrordav_error(p, HTTP_LOCKED, 0,
                           "A conflicting lock was taken meanwhile.");
}

/* Creates the empty file that a LOCK of an unmapped URL stands for;
 * *CREATED says whether it was created here (not by someone else). */
static dav_error *create_empty(const dav_resource *resource, int *created)
{
    dav_resource_private *info = resource->info;
    apr_pool_t *p = resource->pool;
    int sync = mirrordav_fsync_enabled(info->conf);
    dav_error *err = NULL;
    struct stat st;
    int fd, e = 0;

    *created = 0;
    fd = open(info->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
              0644);
    if (fd < 0) {
        e = errno;
        if (e == EEXIST)
            return NULL;
        if (e == ENOENT || e == ENOTDIR)
            return mirrordav_error(p, HTTP_CONFLICT, 0,
                                   "The parent collection does not exist.");
        return mirrordav_errno_error(p, APR_FROM_OS_ERROR(e),
                                     "Could not create the locked file");
    }
    if (sync && fsync(fd) != 0)
        e = errno;
    if (!e && fstat(fd, &st) != 0)
        e = errno;
    if (close(fd) != 0 && !e)
        e = errno;
    if (e)
        err = mirrordav_errno_error(p, APR_FROM_OS_ERROR(e),
                                    "Could not write the locked file");
    else if (sync)
        err = mirrordav_fsync_dir(p, mirrordav_dirname(p, info->path));
    if (err) {
        unlink(info->path);
        return err;
    }
    /* The SHA-1 of no bytes, so that the empty file is described like
     * any stored file. */
    mirrordav_record_receipt(info->r, info->path, &st,
                             "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    *created = 1;
    return NULL;
}

static dav_error *remove_lock(dav_lockdb *lockdb, const dav_resource *resource,
                              const dav_locktoken *locktoken);

typedef struct {
    const char *key;
    int collection;
    const dav_lock *locks;
    const dav_locktoken *token; /* remove_lock */
    int below;
    const dav_locktoken_list *ltl; /* refresh_locks */
    time_t new_time;
    int exists;
    apr_pool_t *rpool;
    dav_lock *result;
} write_ctx;

static dav_error *do_append(lockstore *ls, GDBM_FILE wdb, request_rec *r,
                            apr_pool_t *p, void *data, int *changed)
{
    write_ctx *c = data;
    time_t now = time(NULL);
    const dav_lock *l;
    lockrec *list, **tail;
    int dirty;
    dav_error *err;

    if ((err = write_fetch(ls, wdb, r, p, c->key, now, &list, &dirty)))
        return err;
    for (l = c->locks; l; l = l->next) {
        lockrec *rec;

        if (l->rectype != DAV_LOCKREC_DIRECT)
            continue;
        for (tail = &list; *tail; tail = &(*tail)->next)
            if (same_token(&(*tail)->token, l->locktoken))
                break;
        if (*tail)
            continue; /* already there */
        if ((err = recheck_conflicts(ls, wdb, r, p, c->key, list, l,
                                     c->collection, now)) != NULL)
            return err;
        rec = apr_pcalloc(p, sizeof(*rec));
        rec->scope = l->scope;
        rec->type = l->type;
        rec->depth = l->depth == DAV_INFINITY ? DAV_INFINITY : 0;
        rec->timeout = l->timeout;
        rec->token = *l->locktoken;
        rec->owner = l->owner;
        rec->auth_user = l->auth_user;
        *tail = rec;
        dirty = 1;
    }
    if (!dirty)
        return NULL;
    *changed = 1;
    return write_record(wdb, p, c->key, list);
}

/*
 * Stores new DIRECT locks.  Indirect ones (make_indirect, or copies that
 * dav_inherit_locks hands down) are implied by the ancestor's record.
 */
static dav_error *append_locks(dav_lockdb *lockdb,
                               const dav_resource *resource, int make_indirect,
                               const dav_lock *lock)
{
    dav_lockdb_private *db = lockdb_of(lockdb);
    write_ctx c = {0};
    const dav_lock *l;
    int created;
    dav_error *err;

    if (make_indirect)
        return NULL;
    for (l = lock; l && l->rectype != DAV_LOCKREC_DIRECT; l = l->next)
        ;
    if (!l)
        return NULL;
    c.key = key_of(db->pool, resource->info->relpath);
    c.collection = resource->collection;
    c.locks = lock;
    if ((err = run_write(store_for(lockdb, resource), db->r, do_append, &c)))
        return err;

    /* The lock is in place first, so that a PUT racing with this LOCK
     * needs the token; then the file it reserves is created. */
    if (resource->exists)
        return NULL;
    if ((err = create_empty(resource, &created)) != NULL) {
        for (l = lock; l; l = l->next)
            if (l->rectype == DAV_LOCKREC_DIRECT)
                remove_lock(lockdb, resource, l->locktoken);
        return err;
    }
    if (created) {
        apr_table_setn(db->r->notes, CREATED_FILTER, "1");
        ap_add_output_filter(CREATED_FILTER, NULL, db->r, db->r->connection);
    }
    return NULL;
}

static int has_record(void *data, const char *key, int self,
                      const lockrec *list)
{
    ((visit_ctx *)data)->found_self = 1;
    return 1;
}

/* Sets *FOUND if any key below KEY exists (within a read). */
static dav_error *any_below(lockstore *ls, request_rec *r, const char *key,
                            int *found)
{
    const char *why;
    gdbm_error e;
    datum k;

    *found = 0;
    if (!ls->rdb)
        return NULL;
    k = gdbm_firstkey(ls->rdb);
    while (k.dptr) {
        datum next;

        if (key_below(k.dptr, k.dsize, key)) {
            *found = 1;
            free(k.dptr);
            return NULL;
        }
        next = gdbm_nextkey(ls->rdb, k);
        free(k.dptr);
        k = next;
    }
    e = gdbm_last_errno(ls->rdb);
    if (e == GDBM_ITEM_NOT_FOUND || e == GDBM_NO_ERROR)
        return NULL;
    why = gdbm_message(ls->pool, e, gdbm_last_syserr(ls->rdb));
    drop_reader(ls);
    return unusable(ls, r, why);
}

static dav_error *do_remove(lockstore *ls, GDBM_FILE wdb, request_rec *r,
                            apr_pool_t *p, void *data, int *changed)
{
    write_ctx *c = data;
    lockrec *list, **lp;
    int dirty, i;
    dav_error *err;

    if ((err = write_fetch(ls, wdb, r, p, c->key, time(NULL), &list, &dirty)))
        return err;
    if (!c->token) {
        dirty |= list != NULL;
        list = NULL;
    }
    for (lp = &list; *lp;) {
        if (same_token(&(*lp)->token, c->token)) {
            *lp = (*lp)->next;
            dirty = 1;
        }
        else
            lp = &(*lp)->next;
    }
    if (dirty) {
        *changed = 1;
        if ((err = write_record(wdb, p, c->key, list)))
            return err;
    }
    if (c->below) {
        apr_array_header_t *keys = all_keys(wdb, p);

        for (i = 0; i < keys->nelts; i++) {
            const char *k = APR_ARRAY_IDX(keys, i, const char *);

            if (!key_below(k, strlen(k), c->key))
                continue;
            *changed = 1;
            if ((err = write_record(wdb, p, k, NULL)))
                return err;
        }
    }
    return NULL;
}

/*
 * Removes the lock LOCKTOKEN from RESOURCE's own record, or all of its
 * locks when LOCKTOKEN is NULL (DELETE and MOVE); then the records of
 * everything below a collection go too, since dav_unlock's walk does not
 * see members removed behind WebDAV's back.  The walk calls this for
 * every member of the tree, so a read checks first for anything to do.
 */
static dav_error *remove_lock(dav_lockdb *lockdb, const dav_resource *resource,
                              const dav_locktoken *locktoken)
{
    dav_lockdb_private *db = lockdb_of(lockdb);
    lockstore *ls = store_for(lockdb, resource);
    visit_ctx v = {0};
    write_ctx c = {0};
    dav_error *err;

    if ((err = visit_records(lockdb, resource, has_record, &v, 0)) != NULL)
        return err;
    c.key = key_of(resource->pool, resource->info->relpath);
    c.token = locktoken;
    if (!locktoken && resource->collection &&
        !(ls->purged && key_below(c.key, strlen(c.key), ls->purged))) {
        if ((err = read_begin(ls, db->r)) != NULL)
            return err;
        err = any_below(ls, db->r, c.key, &c.below);
        store_unlock(ls);
        if (err)
            return err;
    }
    if (!v.found_self && !c.below)
        return NULL;
    if ((err = run_write(ls, db->r, do_remove, &c)) != NULL)
        return err;
    if (c.below) /* its members need no scan of their own */
        ls->purged = apr_pstrdup(ls->pool, c.key);
    return NULL;
}

static int token_listed(const dav_locktoken_list *ltl, const dav_locktoken *t)
{
    for (; ltl; ltl = ltl->next)
        if (same_token(ltl->locktoken, t))
            return 1;
    return 0;
}

static dav_error *do_refresh(lockstore *ls, GDBM_FILE wdb, request_rec *r,
                             apr_pool_t *p, void *data, int *changed)
{
    write_ctx *c = data;
    time_t now = time(NULL);
    const char *key;
    int self = 1;
    dav_error *err;

    c->result = NULL;
    for (key = c->key; key; key = parent_key(p, key), self = 0) {
        lockrec *list, *l;
        int dirty;

        if ((err = write_fetch(ls, wdb, r, p, key, now, &list, &dirty)))
            return err;
        for (l = list; l; l = l->next) {
            dav_lock *dl;

            if ((!self && l->depth != DAV_INFINITY) ||
                !token_listed(c->ltl, &l->token))
                continue;
            l->timeout = c->new_time;
            dirty = 1;
            dl = new_lock(c->rpool, ls, key, l, DAV_LOCKREC_DIRECT,
                          self && !c->exists);
            dl->next = c->result;
            c->result = dl;
        }
        if (dirty) {
            *changed = 1;
            if ((err = write_record(wdb, p, key, list)))
                return err;
        }
    }
    return NULL;
}

/* Refreshes the listed locks held on RESOURCE itself or, with depth
 * infinity, on an ancestor; returns them resolved. */
static dav_error *refresh_locks(dav_lockdb *lockdb,
                                const dav_resource *resource,
                                const dav_locktoken_list *ltl, time_t new_time,
                                dav_lock **locks)
{
    dav_lockdb_private *db = lockdb_of(lockdb);
    write_ctx c = {0};
    dav_error *err;

    c.key = key_of(db->pool, resource->info->relpath);
    c.ltl = ltl;
    c.new_time = new_time;
    c.exists = resource->exists;
    c.rpool = db->pool;
    err = run_write(store_for(lockdb, resource), db->r, do_refresh, &c);
    *locks = err ? NULL : c.result;
    return err;
}

/* The resource on which LOCKTOKEN was taken: START itself, or the
 * ancestor whose depth-infinity lock covers it. */
static dav_error *lookup_resource(dav_lockdb *lockdb,
                                  const dav_locktoken *locktoken,
                                  const dav_resource *start,
                                  const dav_resource **resource)
{
    visit_ctx c = {0};
    const dav_resource *res = start;
    dav_error *err;
    apr_size_t n;

    *resource = NULL;
    c.resource = start;
    c.now = time(NULL);
    c.token = locktoken;
    if ((err = visit_records(lockdb, start, match_token, &c, 1)) != NULL)
        return err;
    if (!c.found_key)
        return mirrordav_error(lockdb_of(lockdb)->pool, HTTP_CONFLICT, 0,
                               "No lock with this token covers the "
                               "resource.");
    /* Climb from START to the resource that holds the key. */
    n = strlen(c.found_key);
    while (res && strlen(res->info->relpath) + 1 > n) {
        dav_resource *parent;

        if ((err = res->hooks->get_parent_resource(res, &parent)) != NULL)
            return err;
        res = parent;
    }
    if (!res)
        return mirrordav_error(lockdb_of(lockdb)->pool,
                               HTTP_INTERNAL_SERVER_ERROR, 0,
                               "The locked ancestor could not be found.");
    *resource = res;
    return NULL;
}

const dav_hooks_locks mirrordav_hooks_locks = {
    get_supportedlock,
    parse_locktoken,
    format_locktoken,
    compare_locktoken,
    open_lockdb,
    close_lockdb,
    remove_locknull_state,
    create_lock,
    get_locks,
    find_lock,
    has_locks,
    append_locks,
    remove_lock,
    refresh_locks,
    lookup_resource,
    NULL, /* ctx */
};

/* ------------------------------------------------------------ 201 */

/* Turns mod_dav's 200 into 201 for a LOCK that created its resource,
 * before the headers are written (see the top of this file). */
static apr_status_t created_filter(ap_filter_t *f, apr_bucket_brigade *bb)
{
    request_rec *r = f->r;

    if (r->status == HTTP_OK && apr_table_get(r->notes, CREATED_FILTER)) {
        r->status = HTTP_CREATED;
        r->status_line = NULL;
    }
    ap_remove_output_filter(f);
    return ap_pass_brigade(f->next, bb);
}

void mirrordav_register_lock_hooks(void)
{
    ap_register_output_filter(CREATED_FILTER, created_filter, NULL,
                              AP_FTYPE_CONTENT_SET);
}
