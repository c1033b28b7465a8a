/*
 * sidecar: per-file metadata databases (GDBM) kept beside the data.
 *
 * File names inside DIR/.mirrordav/:
 *   NAME.db        database of entry NAME ("" gives ".db": DIR itself)
 *   <sha1>.hdb     database of a NAME too long for NAME.db within NAME_MAX;
 *                  <sha1> is the lowercase hex SHA-1 of NAME, and the full
 *                  name is stored inside under "_name".  A normal name
 *                  always ends in ".db", a hashed one in "hdb", so the two
 *                  never collide.
 *   .lock          flock()ed exclusively by writers of this folder
 *   .tmp-XXXXXX    a database being written; renamed to its final name
 *
 * Published databases are immutable: snapshots share them by hard link, so
 * every change builds a complete new file and renames it in.  Readers
 * therefore open without any lock.
 *
 * Library keys (a leading '_'):
 *   "_name"  hashed databases only: the entry's full name, no NUL.
 *   "_rec"   sidecar_record, binary:
 *              byte 0   format, 1
 *              byte 1   flags; bit 0: a SHA-1 follows
 *              20 bytes raw SHA-1, when flagged
 *              then LEB128 varints: sha1_version, size, mtime (zigzag),
 *              version;
 *              when flags bit 1 (bound) is set, the identity of the data
 *              follows, as varints: inode, mtime_nsec, ctime (zigzag),
 *              ctime_nsec.
 *              when flags bit 2 is set, 32 bytes raw SHA-256 follow, then
 *              its content version as a varint (sidecar_record.sha256);
 *              then, when flags bit 3 is set, 16 bytes raw MD5 and its
 *              content version.
 *            Readers ignore trailing bytes and unknown flags, so later
 *            fields can be appended without changing the format byte.  A
 *            record from before the identity has bit 1 clear, and so does
 *            one rewritten by such an old reader: its hash reads unknown.
 *   "_verify" sidecar_verify, binary: byte 0 format (1), byte 1 flags
 *            (bit 0: clean, bit 1: a SHA-1 follows), 20 bytes raw SHA-1
 *            when flagged, then LEB128 varints: time (zigzag), version,
 *            ino, size, mtime_ns (zigzag), ctime_ns (zigzag).
 *
 * Size: the spec wants a database with 12 properties whose values total
 * under 2 KiB to take one 4 KiB block.  GDBM lays a new file out as header,
 * directory and one bucket, each one block, then data.  With 512-byte blocks
 * (the GDBM minimum) that leaves 2560 bytes of a 4 KiB block for records,
 * but GDBM never lets a record smaller than a block straddle a block
 * boundary, so records of ~190 bytes go two to a block and 12 of them need
 * 3 KiB.  prepare() therefore reserves the space for all records first, as
 * one contiguous free extent (store two filler records and delete them with
 * block coalescing on), and the real records are then carved out of it back
 * to back.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "sidecar.h"
#include "publish.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <gdbm.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <unistd.h>

#define LOCK_NAME    ".lock"
#define TMP_PREFIX   ".tmp-"
#define KEY_NAME     "_name"
#define KEY_REC      "_rec"
#define KEY_VERIFY   "_verify"
#define REC_FORMAT   1
#define REC_HAS_SHA1 0x01
#define REC_BOUND    0x02
#define REC_SHA256   0x04
#define REC_MD5      0x08
#define DB_MODE      0644
#define GDBM_BLOCK   512
/* Reserving is about the small, common case; above this, plain GDBM. */
#define RESERVE_MAX (64 * 1024)
/* Databases up to this size are built in memory, then copied. */
#define MEMBUILD_MAX (1024 * 1024)

struct change {
    unsigned char *key; /* key and value share one allocation */
    size_t klen;
    unsigned char *val; /* NULL: deleted */
    size_t vlen;
};

struct sidecar {
    char *folder; /* DIR/.mirrordav */
    char *path;   /* the database */
    char *name;   /* entry name */
    int hashed;
    int writable;
    int lock_fd;        /* -1 unless writable */
    GDBM_FILE base;     /* the published database, NULL if none */
    struct change *chg; /* pending changes, sorted by key */
    size_t nchg, chgcap;
    int changed;  /* something to publish */
    int prepared; /* the temp file holds the current state */
    /* The new database (publish.c); its fd is -1 if none. */
    publish_file out;
    int stale; /* base must be reopened: we just replaced it */
    int err;   /* lost track of the published state */
};

/* ------------------------------------------------------------ helpers */

static int neg_errno(void)
{
    return errno > 0 ? -errno : -EIO;
}

/* GDBM's error for DB (or the thread's last one when DB is NULL), as a
 * negative errno.  Structural damage reads as -EBADMSG. */
static int gdbm_to_errno(GDBM_FILE db)
{
    gdbm_error e = db ? gdbm_last_errno(db) : gdbm_errno;
    int sys;

    switch (e) {
    case GDBM_NO_ERROR:
        return -EIO;
    case GDBM_ITEM_NOT_FOUND:
        return -ENOENT;
    case GDBM_MALLOC_ERROR:
        return -ENOMEM;
    case GDBM_BAD_MAGIC_NUMBER:
    case GDBM_BAD_FILE_OFFSET:
    case GDBM_BYTE_SWAPPED:
    case GDBM_BAD_HEADER:
    case GDBM_BAD_AVAIL:
    case GDBM_BAD_BUCKET:
    case GDBM_BAD_DIR_ENTRY:
    case GDBM_BAD_HASH_TABLE:
    case GDBM_NEED_RECOVERY:
    case GDBM_EMPTY_DATABASE:
    case GDBM_FILE_EOF:
        return -EBADMSG;
    default:
        break;
    }
    if (gdbm_check_syserr(e)) {
        sys = db ? gdbm_last_syserr(db) : errno;
        if (sys > 0)
            return -sys;
    }
    return -EIO;
}

static char *join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + 1 + lb + 1);

    if (!s)
        return NULL;
    memcpy(s, a, la);
    s[la] = '/';
    memcpy(s + la + 1, b, lb + 1);
    return s;
}

static int full_write(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return neg_errno();
        }
        if (n == 0)
            return -EIO;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Copies IN from its start to OUT at its current offset. */
static int copy_fd(int in, int out)
{
    char buf[16384];
    off_t off = 0;

    for (;;) {
        ssize_t n = pread(in, buf, sizeof buf, off);
        int rc;

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return neg_errno();
        }
        if (n == 0)
            return 0;
        rc = full_write(out, buf, (size_t)n);
        if (rc)
            return rc;
        off += n;
    }
}

/* Durability is the caller's setting (per request in the server), so it is
 * per thread; publish.c holds the one switch. */
void sidecar_set_durable(int on)
{
    publish_set_durable(on);
}

static int sync_fd(int fd)
{
    return publish_sync_fd(fd);
}

static int fsync_path(const char *path)
{
    return publish_sync_dir(path);
}

static int lock_open(const char *folder, int *out)
{
    char *p = join(folder, LOCK_NAME);
    int fd;

    if (!p)
        return -ENOMEM;
    fd = open(p, O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
    free(p);
    if (fd < 0)
        return neg_errno();
    *out = fd;
    return 0;
}

static int lock_take(int fd)
{
    while (flock(fd, LOCK_EX)) {
        if (errno != EINTR)
            return neg_errno();
    }
    return 0;
}

static int is_hex_sha1(const char *s)
{
    size_t i;

    for (i = 0; i < 40; i++) {
        char c = s[i];

        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
              (c >= 'A' && c <= 'F')))
            return 0;
    }
    return s[40] == '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return c - 'A' + 10;
}

/* ------------------------------------------------------------ naming */

int sidecar_is_reserved_name(const char *name)
{
    return name && strcmp(name, SIDECAR_DIR) == 0;
}

/* File name (not path) of NAME's database into OUT[NAME_MAX + 1]. */
static int db_filename(const char *name, char *out, int *hashed)
{
    size_t len;

    if (!name)
        return -EINVAL;
    len = strlen(name);
    if (strchr(name, '/') || strcmp(name, ".") == 0 ||
        strcmp(name, "..") == 0 || sidecar_is_reserved_name(name))
        return -EINVAL;
    if (len > NAME_MAX)
        return -ENAMETOOLONG;
    if (len + 3 <= NAME_MAX) {
        memcpy(out, name, len);
        memcpy(out + len, ".db", 4);
        *hashed = 0;
    }
    else {
        static const char hex[] = "0123456789abcdef";
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0, i;

        if (!EVP_Digest(name, len, md, &mdlen, EVP_sha1(), NULL) ||
            mdlen != 20)
            return -EIO;
        for (i = 0; i < mdlen; i++) {
            out[2 * i] = hex[md[i] >> 4];
            out[2 * i + 1] = hex[md[i] & 15];
        }
        memcpy(out + 2 * mdlen, ".hdb", 5);
        *hashed = 1;
    }
    return 0;
}

struct paths {
    char *folder;
    char *path;
    int hashed;
};

static void paths_free(struct paths *p)
{
    free(p->folder);
    free(p->path);
    p->folder = p->path = NULL;
}

static int paths_make(const char *dir, const char *name, struct paths *p)
{
    char fn[NAME_MAX + 1];
    int rc;

    p->folder = p->path = NULL;
    if (!dir || !*dir)
        return -EINVAL;
    rc = db_filename(name, fn, &p->hashed);
    if (rc)
        return rc;
    p->folder = join(dir, SIDECAR_DIR);
    if (p->folder)
        p->path = join(p->folder, fn);
    if (!p->path) {
        paths_free(p);
        return -ENOMEM;
    }
    return 0;
}

int sidecar_path(const char *dir, const char *name, char *out, size_t outsz)
{
    struct paths p;
    size_t len;
    int rc = paths_make(dir, name, &p);

    if (rc)
        return rc;
    len = strlen(p.path);
    if (len >= outsz) {
        rc = -ENAMETOOLONG;
    }
    else {
        memcpy(out, p.path, len + 1);
    }
    paths_free(&p);
    return rc;
}

int sidecar_ensure_dir(const char *dir)
{
    struct stat st;
    char *folder;
    int rc = 0;

    if (!dir || !*dir)
        return -EINVAL;
    folder = join(dir, SIDECAR_DIR);
    if (!folder)
        return -ENOMEM;
    if (mkdir(folder, 0755) == 0) {
        /* The new entry in DIR must survive a crash as well as the
         * database about to be renamed into it. */
        rc = fsync_path(dir);
    }
    else if (errno != EEXIST) {
        rc = neg_errno();
    }
    else if (stat(folder, &st)) {
        rc = neg_errno();
    }
    else if (!S_ISDIR(st.st_mode)) {
        rc = -ENOTDIR;
    }
    free(folder);
    return rc;
}

/* ------------------------------------------------------------ pending */

static int key_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);

    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

/* Index of KEY in the change list, or where it would go (*found = 0). */
static size_t chg_find(const sidecar *sc, const void *key, size_t klen,
                       int *found)
{
    size_t lo = 0, hi = sc->nchg;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = key_cmp(sc->chg[mid].key, sc->chg[mid].klen, key, klen);

        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

static struct change *chg_lookup(const sidecar *sc, const void *key,
                                 size_t klen)
{
    int found;
    size_t i = chg_find(sc, key, klen, &found);

    return found ? &sc->chg[i] : NULL;
}

/* Records a put (VAL non-NULL) or a delete of KEY. */
static int chg_set(sidecar *sc, const void *key, size_t klen, const void *val,
                   size_t vlen)
{
    int found;
    size_t i = chg_find(sc, key, klen, &found);
    unsigned char *mem = malloc(klen + (val ? vlen : 0) + 1);

    if (!mem)
        return -ENOMEM;
    memcpy(mem, key, klen);
    if (val && vlen)
        memcpy(mem + klen, val, vlen);
    if (found) {
        free(sc->chg[i].key);
    }
    else {
        if (sc->nchg == sc->chgcap) {
            size_t cap = sc->chgcap ? 2 * sc->chgcap : 8;
            struct change *n = realloc(sc->chg, cap * sizeof *n);

            if (!n) {
                free(mem);
                return -ENOMEM;
            }
            sc->chg = n;
            sc->chgcap = cap;
        }
        memmove(&sc->chg[i + 1], &sc->chg[i],
                (sc->nchg - i) * sizeof sc->chg[0]);
        sc->nchg++;
    }
    sc->chg[i].key = mem;
    sc->chg[i].klen = klen;
    sc->chg[i].val = val ? mem + klen : NULL;
    sc->chg[i].vlen = val ? vlen : 0;
    return 0;
}

static void chg_clear(sidecar *sc)
{
    size_t i;

    for (i = 0; i < sc->nchg; i++)
        free(sc->chg[i].key);
    free(sc->chg);
    sc->chg = NULL;
    sc->nchg = sc->chgcap = 0;
}

/* ------------------------------------------------------------ reading */

/* Opens the published database at PATH for reading; *db = NULL if there
 * is none.  Published files never change, so no lock is needed. */
static int base_open(const char *path, GDBM_FILE *db)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    *db = NULL;
    if (fd < 0)
        return errno == ENOENT ? 0 : neg_errno();
    /* No mmap: for a file of a few KiB, mapping and unmapping it costs
     * more than reading it (PROPFIND opens one per member). */
    *db = gdbm_fd_open(fd, path, 0,
                       GDBM_READER | GDBM_NOLOCK | GDBM_NOMMAP | GDBM_CLOERROR,
                       NULL);
    if (!*db)
        return gdbm_to_errno(NULL);
    return 0;
}

/* Reopens the base after a commit, lazily: most handles are closed right
 * after committing. */
static int fresh(sidecar *sc)
{
    GDBM_FILE base;
    int rc;

    if (sc->err || !sc->stale)
        return sc->err;
    rc = base_open(sc->path, &base);
    if (rc) {
        /* Without the base the view would be wrong, and a later commit
         * would drop keys: the handle is done. */
        sc->err = rc;
        return rc;
    }
    sc->base = base;
    sc->stale = 0;
    return 0;
}

/* Looks KEY up in the merged view.  With OUT, fills it with a malloc'd
 * copy (never NULL, even when empty); 0, -ENOENT or an error. */
static int merged_get(sidecar *sc, const void *key, size_t klen, datum *out)
{
    struct change *c = chg_lookup(sc, key, klen);
    datum k, v;

    if (c) {
        if (!c->val)
            return -ENOENT;
        if (out) {
            out->dptr = malloc(c->vlen ? c->vlen : 1);
            if (!out->dptr)
                return -ENOMEM;
            if (c->vlen)
                memcpy(out->dptr, c->val, c->vlen);
            out->dsize = (int)c->vlen;
        }
        return 0;
    }
    if (!sc->base)
        return -ENOENT;
    k.dptr = (char *)key;
    k.dsize = (int)klen;
    v = gdbm_fetch(sc->base, k);
    if (!v.dptr)
        return gdbm_to_errno(sc->base);
    if (out)
        *out = v;
    else
        free(v.dptr);
    return 0;
}

/* Walks the merged view.  Values are valid during the callback only. */
static int merged_iter(sidecar *sc, sidecar_iter_fn cb, void *ctx)
{
    datum k, next, v;
    size_t i;
    int rc;

    if (sc->base) {
        k = gdbm_firstkey(sc->base);
        while (k.dptr) {
            struct change *c = chg_lookup(sc, k.dptr, (size_t)k.dsize);

            if (c) {
                rc = c->val ? cb(ctx, c->key, c->klen, c->val, c->vlen) : 0;
            }
            else {
                v = gdbm_fetch(sc->base, k);
                if (!v.dptr) {
                    rc = gdbm_to_errno(sc->base);
                }
                else {
                    rc = cb(ctx, k.dptr, (size_t)k.dsize, v.dptr,
                            (size_t)v.dsize);
                    free(v.dptr);
                }
            }
            if (rc) {
                free(k.dptr);
                return rc;
            }
            next = gdbm_nextkey(sc->base, k);
            free(k.dptr);
            k = next;
        }
        if (gdbm_last_errno(sc->base) != GDBM_ITEM_NOT_FOUND &&
            gdbm_last_errno(sc->base) != GDBM_NO_ERROR)
            return gdbm_to_errno(sc->base);
    }
    /* Pending puts of keys the base lacks. */
    for (i = 0; i < sc->nchg; i++) {
        struct change *c = &sc->chg[i];

        if (!c->val)
            continue;
        if (sc->base) {
            k.dptr = (char *)c->key;
            k.dsize = (int)c->klen;
            gdbm_clear_error(sc->base);
            if (gdbm_exists(sc->base, k))
                continue;
            if (gdbm_last_errno(sc->base) != GDBM_NO_ERROR)
                return gdbm_to_errno(sc->base);
        }
        rc = cb(ctx, c->key, c->klen, c->val, c->vlen);
        if (rc)
            return rc;
    }
    return 0;
}

/* The new database starts as an unnamed file in the sidecar folder where
 * it can (publish.c): a new entry's database is then linked in under its
 * name, with no temp name and no rename in the (busy) folder.  No ".db"
 * suffix on a temp name, so that nothing mistakes it for a published
 * database. */
static int tmp_open(sidecar *sc)
{
    return publish_open(&sc->out, sc->folder, sc->folder, TMP_PREFIX, O_RDWR,
                        DB_MODE);
}

/* Puts the prepared database in place, atomically. */
static int publish_tmp(sidecar *sc)
{
    return publish_commit(&sc->out, sc->path, PUBLISH_REPLACE);
}

/* ------------------------------------------------------------ handles */

static void handle_free(sidecar *sc)
{
    publish_discard(&sc->out);
    if (sc->base)
        gdbm_close(sc->base);
    if (sc->lock_fd >= 0)
        close(sc->lock_fd); /* releases the flock */
    chg_clear(sc);
    free(sc->folder);
    free(sc->path);
    free(sc->name);
    free(sc);
}

/* Takes ownership of P's strings, LOCK_FD and BASE, also on failure. */
static int handle_new(struct paths *p, const char *name, int writable,
                      int lock_fd, GDBM_FILE base, sidecar **out)
{
    sidecar *sc = calloc(1, sizeof *sc);

    if (!sc) {
        paths_free(p);
        if (lock_fd >= 0)
            close(lock_fd);
        if (base)
            gdbm_close(base);
        return -ENOMEM;
    }
    sc->folder = p->folder;
    sc->path = p->path;
    sc->hashed = p->hashed;
    p->folder = p->path = NULL;
    sc->writable = writable;
    sc->lock_fd = lock_fd;
    sc->base = base;
    sc->out.fd = -1;
    sc->name = strdup(name);
    if (!sc->name) {
        handle_free(sc);
        return -ENOMEM;
    }
    *out = sc;
    return 0;
}

/* A hashed database must name its entry.  A mismatch means the slot is
 * somebody else's (or damaged): -EEXIST.  A new one gets its name as a
 * pending put that by itself is not worth publishing. */
static int check_name(sidecar *sc)
{
    datum v;
    size_t len = strlen(sc->name);
    int rc;

    if (!sc->hashed)
        return 0;
    if (!sc->base)
        return chg_set(sc, KEY_NAME, sizeof KEY_NAME - 1, sc->name, len);
    rc = merged_get(sc, KEY_NAME, sizeof KEY_NAME - 1, &v);
    if (rc == -ENOENT)
        return -EEXIST;
    if (rc)
        return rc;
    rc = ((size_t)v.dsize == len && memcmp(v.dptr, sc->name, len) == 0)
             ? 0
             : -EEXIST;
    free(v.dptr);
    return rc;
}

int sidecar_open(const char *dir, const char *name, int writable,
                 sidecar **out)
{
    struct paths p;
    GDBM_FILE base = NULL;
    int lock_fd = -1, rc;

    *out = NULL;
    rc = paths_make(dir, name, &p);
    if (rc)
        return rc;
    if (writable) {
        rc = sidecar_ensure_dir(dir);
        if (!rc)
            rc = lock_open(p.folder, &lock_fd);
        if (!rc)
            rc = lock_take(lock_fd);
    }
    if (!rc)
        rc = base_open(p.path, &base);
    if (rc) {
        if (lock_fd >= 0)
            close(lock_fd);
        paths_free(&p);
        return rc;
    }
    rc = handle_new(&p, name, writable, lock_fd, base, out);
    if (rc)
        return rc;
    rc = check_name(*out);
    if (rc) {
        handle_free(*out);
        *out = NULL;
    }
    return rc;
}

void sidecar_close(sidecar *sc)
{
    if (sc)
        handle_free(sc);
}

/* ------------------------------------------------------------ access */

static int check_kv(const void *key, size_t klen, size_t vlen)
{
    if (!key || klen == 0)
        return -EINVAL;
    if (klen > INT_MAX || vlen > INT_MAX || klen + vlen > INT_MAX)
        return -EFBIG;
    return 0;
}

int sidecar_get(sidecar *sc, const void *key, size_t klen, void **val,
                size_t *vlen)
{
    datum v;
    int rc = check_kv(key, klen, 0);

    if (rc)
        return rc;
    rc = fresh(sc);
    if (rc)
        return rc;
    rc = merged_get(sc, key, klen, &v);
    if (rc)
        return rc;
    *val = v.dptr;
    *vlen = (size_t)v.dsize;
    return 0;
}

/* Put (VAL non-NULL) or delete, skipping changes that change nothing, so
 * that an idempotent request does not unshare a snapshot's inode. */
static int do_set(sidecar *sc, const void *key, size_t klen, const void *val,
                  size_t vlen)
{
    datum cur;
    int rc;

    if (!sc->writable)
        return -EBADF;
    rc = fresh(sc);
    if (rc)
        return rc;
    rc = merged_get(sc, key, klen, val ? &cur : NULL);
    if (rc && rc != -ENOENT)
        return rc;
    if (!val && rc == -ENOENT)
        return 0;
    if (val && rc == 0) {
        int same = (size_t)cur.dsize == vlen &&
                   (vlen == 0 || memcmp(cur.dptr, val, vlen) == 0);

        free(cur.dptr);
        if (same)
            return 0;
    }
    rc = chg_set(sc, key, klen, val, vlen);
    if (rc)
        return rc;
    sc->changed = 1;
    sc->prepared = 0;
    return 0;
}

int sidecar_put(sidecar *sc, const void *key, size_t klen, const void *val,
                size_t vlen)
{
    int rc = check_kv(key, klen, vlen);

    if (rc)
        return rc;
    if (!val && vlen)
        return -EINVAL;
    if (*(const char *)key == '_')
        return -EPERM;
    return do_set(sc, key, klen, val ? val : "", vlen);
}

int sidecar_del(sidecar *sc, const void *key, size_t klen)
{
    int rc = check_kv(key, klen, 0);

    if (rc)
        return rc;
    if (*(const char *)key == '_')
        return -EPERM;
    return do_set(sc, key, klen, NULL, 0);
}

int sidecar_iter(sidecar *sc, sidecar_iter_fn cb, void *ctx)
{
    int rc = fresh(sc);

    return rc ? rc : merged_iter(sc, cb, ctx);
}

/* ------------------------------------------------------------ writing */

struct db_sum {
    size_t total;  /* bytes of keys and values */
    int user_keys; /* keys that are not the library's records */
};

static int sum_cb(void *ctx, const void *key, size_t klen, const void *val,
                  size_t vlen)
{
    struct db_sum *sum = ctx;

    (void)val;
    sum->total += klen + vlen;
    if (klen && *(const char *)key != '_')
        sum->user_keys++;
    return 0;
}

/* The mark PROPFIND reads instead of opening a database that holds only
 * the server's records; a database without it is simply opened. */
#define USER_KEYS_XATTR "user.mirrordav.dead"

static void mark_user_keys(int fd, int user_keys)
{
    if (fsetxattr(fd, USER_KEYS_XATTR, user_keys ? "1" : "0", 1, 0) != 0)
        fremovexattr(fd, USER_KEYS_XATTR); /* never leave a stale mark */
}

int sidecar_has_user_keys(const char *dir, const char *name)
{
    char path[PATH_MAX], v;

    if (sidecar_path(dir, name, path, sizeof(path)) != 0)
        return 1;
    if (getxattr(path, USER_KEYS_XATTR, &v, 1) == 1)
        return v != '0';
    return errno == ENOENT ? 0 : 1; /* no database, or no mark */
}

static int store_cb(void *ctx, const void *key, size_t klen, const void *val,
                    size_t vlen)
{
    GDBM_FILE db = ctx;
    datum k, v;

    k.dptr = (char *)key;
    k.dsize = (int)klen;
    v.dptr = (char *)(vlen ? val : "");
    v.dsize = (int)vlen;
    if (gdbm_store(db, k, v, GDBM_INSERT))
        return gdbm_to_errno(db);
    return 0;
}

/* Leaves one free extent of TOTAL bytes (rounded up to blocks) right after
 * the initial bucket, so that records smaller than a block are packed back
 * to back instead of one or two per block.  Relies on GDBM's allocator
 * (first the bucket's spare block, then whole blocks from the end of the
 * file, coalescing of adjacent free extents); if that ever changes, the
 * file is merely larger, which the unit test will notice. */
static int reserve(GDBM_FILE db, size_t total)
{
    static const char ka[] = "_reserve.a", kb[] = "_reserve.b";
    int one = 1, bs = 0, rc = 0;
    size_t want, sa, sb = 0;
    char *zero;
    datum k, v;

    if (gdbm_setopt(db, GDBM_SETCOALESCEBLKS, &one, sizeof one) ||
        gdbm_setopt(db, GDBM_GETBLOCKSIZE, &bs, sizeof bs) ||
        bs <= (int)sizeof kb)
        return gdbm_to_errno(db);
    want = (total + (size_t)bs - 1) / (size_t)bs * (size_t)bs;
    /* The first filler takes the bucket's spare block exactly, the second
     * the whole blocks after it. */
    sa = (size_t)bs;
    if (want > sa)
        sb = want - sa;
    zero = calloc(1, sa > sb ? sa : sb);
    if (!zero)
        return -ENOMEM;

    k.dptr = (char *)ka;
    k.dsize = sizeof ka - 1;
    v.dptr = zero;
    v.dsize = (int)(sa - (sizeof ka - 1));
    if (gdbm_store(db, k, v, GDBM_REPLACE))
        rc = gdbm_to_errno(db);
    if (!rc && sb) {
        k.dptr = (char *)kb;
        k.dsize = sizeof kb - 1;
        v.dsize = (int)(sb - (sizeof kb - 1));
        if (gdbm_store(db, k, v, GDBM_REPLACE) || gdbm_delete(db, k))
            rc = gdbm_to_errno(db);
    }
    if (!rc) {
        k.dptr = (char *)ka;
        k.dsize = sizeof ka - 1;
        if (gdbm_delete(db, k))
            rc = gdbm_to_errno(db);
    }
    free(zero);
    return rc;
}

/* Writes the merged view as a new GDBM database into the empty file FD
 * (not consumed). */
static int build_db(sidecar *sc, int fd, size_t total)
{
    GDBM_FILE db = NULL;
    int flags = GDBM_NEWDB | GDBM_NOLOCK | GDBM_CLOERROR;
    int try, dfd, rc;

    /* Should a later GDBM refuse small blocks, a larger file beats none. */
    for (try = 0; try < 2 && !db; try++) {
        dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (dfd < 0)
            return neg_errno();
        db = try == 0 ? gdbm_fd_open(dfd, sc->path, GDBM_BLOCK,
                                     flags | GDBM_BSEXACT, NULL)
                      : gdbm_fd_open(dfd, sc->path, 0, flags, NULL);
        if (!db && gdbm_errno != GDBM_BLOCK_SIZE_ERROR)
            break;
    }
    if (!db)
        return gdbm_to_errno(NULL);
    rc = total <= RESERVE_MAX ? reserve(db, total) : 0;
    if (!rc)
        rc = merged_iter(sc, store_cb, db);
    if (gdbm_close(db) && !rc)
        rc = gdbm_to_errno(NULL);
    return rc;
}

int sidecar_prepare(sidecar *sc)
{
    struct db_sum sum = {0, 0};
    size_t total;
    int rc, mfd = -1;

    if (!sc->writable)
        return -EBADF;
    if (sc->err)
        return sc->err;
    if (!sc->changed || sc->prepared)
        return 0;
    rc = merged_iter(sc, sum_cb, &sum);
    if (rc)
        return rc;
    total = sum.total;

    if (sc->out.fd < 0) {
        rc = tmp_open(sc);
        if (rc)
            return rc;
    }
    else if (ftruncate(sc->out.fd, 0) || lseek(sc->out.fd, 0, SEEK_SET)) {
        return neg_errno();
    }

    /* gdbm_open and gdbm_close fsync.  Building in memory keeps prepare
     * free of fsyncs; commit syncs once.  Large databases are built in
     * place instead, to bound memory. */
    if (total <= MEMBUILD_MAX)
        mfd = memfd_create("sidecar", MFD_CLOEXEC);
    if (mfd >= 0) {
        rc = build_db(sc, mfd, total);
        if (!rc)
            rc = copy_fd(mfd, sc->out.fd);
        close(mfd);
    }
    else {
        rc = build_db(sc, sc->out.fd, total);
    }
    if (!rc) {
        mark_user_keys(sc->out.fd, sum.user_keys);
        sc->prepared = 1;
    }
    return rc;
}

int sidecar_commit(sidecar *sc)
{
    int rc;

    if (!sc->writable)
        return -EBADF;
    if (sc->err)
        return sc->err;
    if (!sc->changed)
        return 0;
    rc = sidecar_prepare(sc);
    if (rc)
        return rc;
    if (sync_fd(sc->out.fd)) {
        /* After a failed fsync the page cache proves nothing. */
        sc->prepared = 0;
        return neg_errno();
    }
    if ((rc = publish_tmp(sc)) != 0)
        return rc;
    publish_discard(&sc->out); /* published: closes it, removes nothing */

    /* Published, even if the folder's fsync fails below: the new file is
     * the base from now on. */
    chg_clear(sc);
    sc->changed = sc->prepared = 0;
    if (sc->base) {
        gdbm_close(sc->base);
        sc->base = NULL;
    }
    sc->stale = 1;
    return fsync_path(sc->folder);
}

/* ------------------------------------------------------------ records */

static size_t put_varint(unsigned char *p, uint64_t v)
{
    size_t n = 0;

    while (v >= 0x80) {
        p[n++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (unsigned char)v;
    return n;
}

static int get_varint(const unsigned char **p, const unsigned char *end,
                      uint64_t *v)
{
    uint64_t r = 0;
    unsigned shift = 0;

    while (*p < end) {
        unsigned char b = *(*p)++;

        if (shift == 63 && b > 1)
            return -EBADMSG;
        r |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = r;
            return 0;
        }
        shift += 7;
        if (shift > 63)
            return -EBADMSG;
    }
    return -EBADMSG;
}

static uint64_t zigzag(int64_t v)
{
    return v < 0 ? ~((uint64_t)v << 1) : (uint64_t)v << 1;
}

static int64_t unzigzag(uint64_t v)
{
    return (v & 1) ? (int64_t) ~(v >> 1) : (int64_t)(v >> 1);
}

int sidecar_get_record(sidecar *sc, sidecar_record *rec)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p, *end;
    unsigned char flags;
    uint64_t mt;
    datum v;
    int rc, i;

    memset(rec, 0, sizeof *rec);
    rc = fresh(sc);
    if (rc)
        return rc;
    rc = merged_get(sc, KEY_REC, sizeof KEY_REC - 1, &v);
    if (rc == -ENOENT)
        return 0;
    if (rc)
        return rc;
    p = (const unsigned char *)v.dptr;
    end = p + v.dsize;
    rc = -EBADMSG;
    if (end - p < 2 || p[0] != REC_FORMAT)
        goto out;
    flags = p[1];
    if (flags & REC_HAS_SHA1) {
        if (end - p < 22)
            goto out;
        for (i = 0; i < 20; i++) {
            rec->sha1[2 * i] = hex[p[2 + i] >> 4];
            rec->sha1[2 * i + 1] = hex[p[2 + i] & 15];
        }
        rec->sha1[40] = '\0';
        p += 22;
    }
    else {
        p += 2;
    }
    if (get_varint(&p, end, &rec->sha1_version) ||
        get_varint(&p, end, &rec->size) || get_varint(&p, end, &mt) ||
        get_varint(&p, end, &rec->version))
        goto out;
    rec->mtime = unzigzag(mt);
    if (flags & REC_BOUND) {
        uint64_t mns, ct, cns;

        if (get_varint(&p, end, &rec->ino) || get_varint(&p, end, &mns) ||
            get_varint(&p, end, &ct) || get_varint(&p, end, &cns) ||
            mns >= 1000000000 || cns >= 1000000000)
            goto out;
        rec->bound = 1;
        rec->mtime_nsec = (uint32_t)mns;
        rec->ctime = unzigzag(ct);
        rec->ctime_nsec = (uint32_t)cns;
    }
    if (flags & REC_SHA256) {
        if (end - p < 32)
            goto out;
        for (i = 0; i < 32; i++) {
            rec->sha256[2 * i] = hex[p[i] >> 4];
            rec->sha256[2 * i + 1] = hex[p[i] & 15];
        }
        rec->sha256[64] = '\0';
        p += 32;
        if (get_varint(&p, end, &rec->sha256_version))
            goto out;
    }
    if (flags & REC_MD5) {
        if (end - p < 16)
            goto out;
        for (i = 0; i < 16; i++) {
            rec->md5[2 * i] = hex[p[i] >> 4];
            rec->md5[2 * i + 1] = hex[p[i] & 15];
        }
        rec->md5[32] = '\0';
        p += 16;
        if (get_varint(&p, end, &rec->md5_version))
            goto out;
    }
    rc = 0;
out:
    if (rc)
        memset(rec, 0, sizeof *rec);
    free(v.dptr);
    return rc;
}

int sidecar_set_record(sidecar *sc, const sidecar_record *rec)
{
    unsigned char buf[2 + 20 + 32 + 16 + 11 * 10], *p = buf;
    int i;

    if (rec->sha1[0] && !is_hex_sha1(rec->sha1))
        return -EINVAL;
    for (i = 0; rec->sha256[0] && i < 64; i++)
        if (!isxdigit((unsigned char)rec->sha256[i]))
            return -EINVAL;
    if (rec->sha256[0] && rec->sha256[64])
        return -EINVAL;
    for (i = 0; rec->md5[0] && i < 32; i++)
        if (!isxdigit((unsigned char)rec->md5[i]))
            return -EINVAL;
    if (rec->md5[0] && rec->md5[32])
        return -EINVAL;
    if (rec->bound &&
        (rec->mtime_nsec >= 1000000000 || rec->ctime_nsec >= 1000000000))
        return -EINVAL;
    *p++ = REC_FORMAT;
    *p++ = (unsigned char)((rec->sha1[0] ? REC_HAS_SHA1 : 0) |
                           (rec->bound ? REC_BOUND : 0) |
                           (rec->sha256[0] ? REC_SHA256 : 0) |
                           (rec->md5[0] ? REC_MD5 : 0));
    if (rec->sha1[0]) {
        for (i = 0; i < 20; i++)
            *p++ = (unsigned char)(hexval(rec->sha1[2 * i]) << 4 |
                                   hexval(rec->sha1[2 * i + 1]));
    }
    p += put_varint(p, rec->sha1_version);
    p += put_varint(p, rec->size);
    p += put_varint(p, zigzag(rec->mtime));
    p += put_varint(p, rec->version);
    if (rec->bound) {
        p += put_varint(p, rec->ino);
        p += put_varint(p, rec->mtime_nsec);
        p += put_varint(p, zigzag(rec->ctime));
        p += put_varint(p, rec->ctime_nsec);
    }
    if (rec->sha256[0]) {
        for (i = 0; i < 32; i++)
            *p++ = (unsigned char)(hexval(rec->sha256[2 * i]) << 4 |
                                   hexval(rec->sha256[2 * i + 1]));
        p += put_varint(p, rec->sha256_version);
    }
    if (rec->md5[0]) {
        for (i = 0; i < 16; i++)
            *p++ = (unsigned char)(hexval(rec->md5[2 * i]) << 4 |
                                   hexval(rec->md5[2 * i + 1]));
        p += put_varint(p, rec->md5_version);
    }
    return do_set(sc, KEY_REC, sizeof KEY_REC - 1, buf, (size_t)(p - buf));
}

void sidecar_record_bind(sidecar_record *rec, const struct stat *st)
{
    rec->bound = 1;
    rec->ino = (uint64_t)st->st_ino;
    rec->size = (uint64_t)st->st_size;
    rec->mtime = (int64_t)st->st_mtim.tv_sec;
    rec->mtime_nsec = (uint32_t)st->st_mtim.tv_nsec;
    rec->ctime = (int64_t)st->st_ctim.tv_sec;
    rec->ctime_nsec = (uint32_t)st->st_ctim.tv_nsec;
}

/* 1 if REC's identity is bound and is ST's. */
static int record_is(const sidecar_record *rec, const struct stat *st)
{
    return rec->bound && S_ISREG(st->st_mode) &&
           rec->ino == (uint64_t)st->st_ino &&
           rec->size == (uint64_t)st->st_size &&
           rec->mtime == (int64_t)st->st_mtim.tv_sec &&
           rec->mtime_nsec == (uint32_t)st->st_mtim.tv_nsec &&
           rec->ctime == (int64_t)st->st_ctim.tv_sec &&
           rec->ctime_nsec == (uint32_t)st->st_ctim.tv_nsec;
}

/* 1 if A and B are the same file with the same identity. */
static int stat_same(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino &&
           a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
           a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec &&
           a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

int sidecar_hash_current(const sidecar_record *rec, const struct stat *st)
{
    return rec->sha1[0] && rec->sha1_version == rec->version &&
           record_is(rec, st);
}

int sidecar_sha256_current(const sidecar_record *rec, const struct stat *st)
{
    return rec->sha256[0] && rec->sha256_version == rec->version &&
           record_is(rec, st);
}

int sidecar_md5_current(const sidecar_record *rec, const struct stat *st)
{
    return rec->md5[0] && rec->md5_version == rec->version &&
           record_is(rec, st);
}

/* The data at DIR/NAME ("" = DIR itself), lstat()ed into ST. */
static int lstat_data(const char *dir, const char *name, struct stat *st)
{
    char *path;
    int rc = 0;

    if (!*name)
        return lstat(dir, st) ? neg_errno() : 0;
    if (!(path = join(dir, name)))
        return -ENOMEM;
    if (lstat(path, st))
        rc = neg_errno();
    free(path);
    return rc;
}

int sidecar_store_sha1(const char *dir, const char *name, const char *sha1,
                       uint64_t version, const struct stat *st)
{
    return sidecar_store_digests(dir, name, sha1, NULL, NULL, version, st);
}

int sidecar_store_digests(const char *dir, const char *name, const char *sha1,
                          const char *sha256, const char *md5,
                          uint64_t version, const struct stat *st)
{
    sidecar_record rec;
    struct stat now;
    sidecar *sc;
    int rc;

    if (!sha1 || !is_hex_sha1(sha1) || !st ||
        (sha256 && strlen(sha256) != 64) || (md5 && strlen(md5) != 32))
        return -EINVAL;
    rc = sidecar_open(dir, name, 1, &sc);
    if (rc)
        return rc;
    rc = sidecar_get_record(sc, &rec);
    if (!rc && rec.version != version)
        rc = -ESTALE;
    /* Under the lock, so that a write that replaces the data (and records
     * under the same lock) cannot slip between this check and the commit:
     * the hash is bound only to the bytes it was computed from. */
    if (!rc) {
        rc = lstat_data(dir, name, &now);
        if (rc == -ENOENT || rc == -ENOTDIR || (!rc && !stat_same(&now, st)))
            rc = -ESTALE;
    }
    if (!rc) {
        memcpy(rec.sha1, sha1, 41);
        rec.sha1_version = version;
        /* A digest not given here stays only if the record already
         * described these very bytes; otherwise (fsck rehashing data
         * changed behind the server's back, same content version) it
         * names other bytes, and binding the record to ST would make it
         * read as current: it is dropped. */
        int same = record_is(&rec, st);

        if (sha256) {
            memcpy(rec.sha256, sha256, 65);
            rec.sha256_version = version;
        }
        else if (!same)
            rec.sha256[0] = '\0';
        if (md5) {
            memcpy(rec.md5, md5, 33);
            rec.md5_version = version;
        }
        else if (!same)
            rec.md5[0] = '\0';
        sidecar_record_bind(&rec, &now);
        rc = sidecar_set_record(sc, &rec);
    }
    if (!rc)
        rc = sidecar_commit(sc);
    sidecar_close(sc);
    return rc;
}

int sidecar_rebind_handle(sidecar *sc, const struct stat *before,
                          const struct stat *after, int mtime_set)
{
    sidecar_record rec;
    int rc = sidecar_get_record(sc, &rec);

    if (rc || !record_is(&rec, before))
        return rc;
    if (after->st_dev != before->st_dev || after->st_ino != before->st_ino ||
        after->st_size != before->st_size ||
        (!mtime_set && (after->st_mtim.tv_sec != before->st_mtim.tv_sec ||
                        after->st_mtim.tv_nsec != before->st_mtim.tv_nsec)))
        return 0;
    sidecar_record_bind(&rec, after);
    return sidecar_set_record(sc, &rec);
}

/* Opens NAME in DIR writable, lets REBIND change the record, commits.
 * A missing sidecar folder means no record: nothing to open or create. */
static int rebind_at(const char *dir, const char *name,
                     int (*rebind)(sidecar *, const void *), const void *arg)
{
    char path[PATH_MAX];
    sidecar *sc;
    int rc;

    rc = sidecar_path(dir, name, path, sizeof path);
    if (rc)
        return rc;
    if (access(path, F_OK))
        return errno == ENOENT || errno == ENOTDIR ? 0 : neg_errno();
    rc = sidecar_open(dir, name, 1, &sc);
    if (rc)
        return rc;
    rc = rebind(sc, arg);
    if (!rc)
        rc = sidecar_commit(sc);
    sidecar_close(sc);
    return rc;
}

struct rebind_args {
    const struct stat *before, *after, *copy;
};

static int rebind_rename(sidecar *sc, const void *arg)
{
    const struct rebind_args *a = arg;

    return sidecar_rebind_handle(sc, a->before, a->after, 0);
}

static int rebind_copied(sidecar *sc, const void *arg)
{
    const struct rebind_args *a = arg;
    sidecar_record rec;
    int rc = sidecar_get_record(sc, &rec);

    /* The bytes read are the bytes of BEFORE only if nothing changed the
     * source meanwhile; the copy keeps size and mtime, so a copy that
     * differs in either is not the one that was read. */
    if (rc || !record_is(&rec, a->before) || !stat_same(a->before, a->after) ||
        a->copy->st_size != a->before->st_size ||
        a->copy->st_mtim.tv_sec != a->before->st_mtim.tv_sec ||
        a->copy->st_mtim.tv_nsec != a->before->st_mtim.tv_nsec)
        return rc;
    sidecar_record_bind(&rec, a->copy);
    return sidecar_set_record(sc, &rec);
}

int sidecar_rebind(const char *dir, const char *name,
                   const struct stat *before, const struct stat *after)
{
    struct rebind_args a = {before, after, NULL};

    return rebind_at(dir, name, rebind_rename, &a);
}

int sidecar_rebind_copy(const char *dir, const char *name,
                        const struct stat *src_before,
                        const struct stat *src_after, const struct stat *copy)
{
    struct rebind_args a = {src_before, src_after, copy};

    return rebind_at(dir, name, rebind_copied, &a);
}

/* ------------------------------------------------------------ following */

/* Exclusive locks on the folders A and B (B may be NULL, or A's folder
 * under another spelling), taken in inode order so that two moves in
 * opposite directions cannot deadlock.  A missing folder is not locked:
 * *fd stays -1. */
static int lock_pair(const char *a, int *fa, const char *b, int *fb)
{
    struct stat sa, sb;
    int rc;

    *fa = *fb = -1;
    rc = lock_open(a, fa);
    if (rc == -ENOENT)
        rc = 0;
    if (!rc && b) {
        rc = lock_open(b, fb);
        if (rc == -ENOENT)
            rc = 0;
    }
    if (!rc && *fa >= 0 && *fb >= 0) {
        if (fstat(*fa, &sa) || fstat(*fb, &sb)) {
            rc = neg_errno();
        }
        else if (sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino) {
            close(*fb);
            *fb = -1;
        }
        else if (sa.st_dev > sb.st_dev ||
                 (sa.st_dev == sb.st_dev && sa.st_ino > sb.st_ino)) {
            int t = *fa;

            *fa = *fb;
            *fb = t;
        }
    }
    if (!rc && *fa >= 0)
        rc = lock_take(*fa);
    if (!rc && *fb >= 0)
        rc = lock_take(*fb);
    if (rc) {
        if (*fa >= 0)
            close(*fa);
        if (*fb >= 0)
            close(*fb);
        *fa = *fb = -1;
    }
    return rc;
}

static void unlock_fd(int fd)
{
    if (fd >= 0)
        close(fd);
}

/* Removes the database at D->path (ENOENT is fine), durably. */
static int unlink_db(const struct paths *d)
{
    if (unlink(d->path)) {
        if (errno == ENOENT || errno == ENOTDIR)
            return 0;
        return neg_errno();
    }
    return fsync_path(d->folder);
}

/* Publishes a byte copy of SRC_FD as D->path. */
static int publish_copy(int src_fd, const struct paths *d)
{
    publish_file out;
    int rc;

    rc = publish_open(&out, d->folder, d->folder, TMP_PREFIX, O_RDWR, DB_MODE);
    if (rc)
        return rc;
    rc = copy_fd(src_fd, out.fd);
    if (!rc) {
        char v;
        if (fgetxattr(src_fd, USER_KEYS_XATTR, &v, 1) == 1)
            mark_user_keys(out.fd, v != '0');
    }
    if (!rc)
        rc = sync_fd(out.fd);
    if (!rc)
        rc = publish_commit(&out, d->path, PUBLISH_REPLACE);
    publish_discard(&out);
    if (!rc)
        rc = fsync_path(d->folder);
    return rc;
}

/* Publishes the content of the open database SRC_FD (of entry SNAME, at
 * S) as the database of entry DNAME at D, rewriting "_name" to fit.
 * Consumes SRC_FD; LOCK_FD stays the caller's. */
static int publish_renamed(int src_fd, const struct paths *s,
                           const char *sname, const struct paths *d,
                           const char *dname)
{
    struct paths dp = {NULL, NULL, d->hashed};
    GDBM_FILE base;
    sidecar *sc;
    int rc;

    base = gdbm_fd_open(src_fd, s->path, 0,
                        GDBM_READER | GDBM_NOLOCK | GDBM_CLOERROR, NULL);
    if (!base)
        return gdbm_to_errno(NULL);
    dp.folder = strdup(d->folder);
    dp.path = strdup(d->path);
    if (!dp.folder || !dp.path) {
        paths_free(&dp);
        gdbm_close(base);
        return -ENOMEM;
    }
    /* Check the source's name under its own identity first. */
    rc = handle_new(&dp, sname, 1, -1, base, &sc);
    if (rc)
        return rc;
    sc->hashed = s->hashed;
    rc = check_name(sc);
    if (!rc) {
        size_t len = strlen(dname);
        char *n = strdup(dname);

        if (!n) {
            rc = -ENOMEM;
        }
        else {
            free(sc->name);
            sc->name = n;
            sc->hashed = d->hashed;
            chg_clear(sc);
            rc = d->hashed
                     ? chg_set(sc, KEY_NAME, sizeof KEY_NAME - 1, dname, len)
                     : chg_set(sc, KEY_NAME, sizeof KEY_NAME - 1, NULL, 0);
        }
    }
    if (!rc) {
        sc->changed = 1;
        rc = sidecar_commit(sc);
    }
    sidecar_close(sc);
    return rc;
}

/* Common part of copy and move.  MOVE: take the source away too. */
static int follow(const char *src_dir, const char *src_name,
                  const char *dst_dir, const char *dst_name, int move)
{
    struct paths s, d;
    int la = -1, lb = -1, fd = -1, rc;

    rc = paths_make(src_dir, src_name, &s);
    if (rc)
        return rc;
    rc = paths_make(dst_dir, dst_name, &d);
    if (rc) {
        paths_free(&s);
        return rc;
    }
    if (strcmp(s.path, d.path) == 0)
        goto out;
    rc = sidecar_ensure_dir(dst_dir);
    if (!rc)
        rc = lock_pair(d.folder, &la, move ? s.folder : NULL, &lb);
    if (rc)
        goto out;

    fd = open(s.path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = errno == ENOENT || errno == ENOTDIR ? 0 : neg_errno();
        /* Nothing to carry: the destination's old metadata must not
         * stay attached to the new data. */
        if (!rc)
            rc = unlink_db(&d);
        goto out;
    }

    if (s.hashed == d.hashed &&
        (!s.hashed || strcmp(src_name, dst_name) == 0)) {
        if (move) {
            close(fd);
            fd = -1;
            if (rename(s.path, d.path) == 0) {
                rc = fsync_path(d.folder);
                if (!rc && strcmp(s.folder, d.folder) != 0)
                    rc = fsync_path(s.folder);
                goto out;
            }
            if (errno != EXDEV) {
                rc = neg_errno();
                goto out;
            }
            fd = open(s.path, O_RDONLY | O_CLOEXEC);
            if (fd < 0) {
                rc = neg_errno();
                goto out;
            }
        }
        rc = publish_copy(fd, &d);
    }
    else {
        rc = publish_renamed(fd, &s, src_name, &d, dst_name);
        fd = -1;
    }
    if (!rc && move)
        rc = unlink_db(&s);
out:
    if (fd >= 0)
        close(fd);
    unlock_fd(lb);
    unlock_fd(la);
    paths_free(&s);
    paths_free(&d);
    return rc;
}

int sidecar_copy(const char *src_dir, const char *src_name,
                 const char *dst_dir, const char *dst_name)
{
    return follow(src_dir, src_name, dst_dir, dst_name, 0);
}

int sidecar_move(const char *src_dir, const char *src_name,
                 const char *dst_dir, const char *dst_name)
{
    return follow(src_dir, src_name, dst_dir, dst_name, 1);
}

int sidecar_remove(const char *dir, const char *name)
{
    struct paths p;
    int fa, fb, rc;

    rc = paths_make(dir, name, &p);
    if (rc)
        return rc;
    rc = lock_pair(p.folder, &fa, NULL, &fb);
    if (!rc && fa >= 0)
        rc = unlink_db(&p);
    unlock_fd(fa);
    paths_free(&p);
    return rc;
}

/* ------------------------------------------------------------ orphans */

int sidecar_recorded_name(const char *path, char **name)
{
    datum k, v;
    GDBM_FILE db;
    int rc = base_open(path, &db);

    *name = NULL;
    if (rc)
        return rc;
    if (!db)
        return -ENOENT;
    k.dptr = KEY_NAME;
    k.dsize = sizeof KEY_NAME - 1;
    v = gdbm_fetch(db, k);
    if (!v.dptr) {
        rc = gdbm_to_errno(db);
    }
    else if (v.dsize <= 0 || v.dsize > NAME_MAX ||
             memchr(v.dptr, '/', (size_t)v.dsize) ||
             memchr(v.dptr, '\0', (size_t)v.dsize)) {
        rc = -EBADMSG;
    }
    else if (!(*name = malloc((size_t)v.dsize + 1))) {
        rc = -ENOMEM;
    }
    else {
        memcpy(*name, v.dptr, (size_t)v.dsize);
        (*name)[v.dsize] = '\0';
    }
    free(v.dptr);
    gdbm_close(db);
    return rc;
}

int sidecar_remove_orphan(const char *dir, const char *name)
{
    struct stat st;
    struct paths p;
    int fa, fb, rc;

    if (!*name)
        return -EINVAL; /* DIR itself: its own database is never an orphan */
    rc = paths_make(dir, name, &p);
    if (rc)
        return rc;
    /* Under the lock: a PUT that creates NAME publishes the data first and
     * then records under this lock, so either the data is seen here and
     * the database stays, or its record is written after the removal. */
    rc = lock_pair(p.folder, &fa, NULL, &fb);
    if (!rc && fa >= 0) {
        rc = lstat_data(dir, name, &st);
        if (rc == 0)
            rc = -EEXIST;
        else if (rc == -ENOENT)
            rc = unlink_db(&p);
    }
    unlock_fd(fa);
    paths_free(&p);
    return rc;
}

/* ------------------------------------------------------ verification */

int sidecar_get_verify(sidecar *sc, sidecar_verify *out)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p, *end;
    uint64_t t, m, c;
    datum v;
    int rc, i;

    memset(out, 0, sizeof *out);
    if ((rc = fresh(sc)) != 0)
        return rc;
    if ((rc = merged_get(sc, KEY_VERIFY, sizeof KEY_VERIFY - 1, &v)) != 0)
        return rc;
    p = (const unsigned char *)v.dptr;
    end = p + v.dsize;
    rc = -EBADMSG;
    if (end - p < 2 || p[0] != 1)
        goto out;
    out->clean = p[1] & 1;
    if (p[1] & 2) {
        if (end - p < 22)
            goto out;
        for (i = 0; i < 20; i++) {
            out->sha1[2 * i] = hex[p[2 + i] >> 4];
            out->sha1[2 * i + 1] = hex[p[2 + i] & 15];
        }
        out->sha1[40] = '\0';
        p += 20;
    }
    p += 2;
    if (get_varint(&p, end, &t) || get_varint(&p, end, &out->version) ||
        get_varint(&p, end, &out->ino) || get_varint(&p, end, &out->size) ||
        get_varint(&p, end, &m) || get_varint(&p, end, &c))
        goto out;
    out->time = unzigzag(t);
    out->mtime_ns = unzigzag(m);
    out->ctime_ns = unzigzag(c);
    rc = 0;
out:
    if (rc)
        memset(out, 0, sizeof *out);
    free(v.dptr);
    return rc;
}

int sidecar_set_verify(sidecar *sc, const sidecar_verify *v)
{
    unsigned char buf[2 + 20 + 6 * 10], *p = buf;
    int i;

    if (v->sha1[0] && !is_hex_sha1(v->sha1))
        return -EINVAL;
    *p++ = 1;
    *p++ = (unsigned char)((v->clean ? 1 : 0) | (v->sha1[0] ? 2 : 0));
    if (v->sha1[0])
        for (i = 0; i < 20; i++)
            *p++ = (unsigned char)(hexval(v->sha1[2 * i]) << 4 |
                                   hexval(v->sha1[2 * i + 1]));
    p += put_varint(p, zigzag(v->time));
    p += put_varint(p, v->version);
    p += put_varint(p, v->ino);
    p += put_varint(p, v->size);
    p += put_varint(p, zigzag(v->mtime_ns));
    p += put_varint(p, zigzag(v->ctime_ns));
    return do_set(sc, KEY_VERIFY, sizeof KEY_VERIFY - 1, buf,
                  (size_t)(p - buf));
}
