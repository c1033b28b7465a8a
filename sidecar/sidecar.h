/*
 * sidecar: per-file metadata databases (GDBM) kept beside the data.
 *
 * The entry NAME of directory DIR is described by one GDBM file inside
 * DIR/.mirrordav/.  The directory itself, when it is the root of a tree,
 * uses the empty name.  A database file is never modified in place: every
 * change writes a complete new database to a temporary file in the same
 * .mirrordav/ folder, fsyncs it and renames it over the old one.  That keeps
 * a crash from tearing a database, and keeps a snapshot that shares the
 * old inode through a hard link unchanged.
 *
 * Plain C, no httpd dependency.  Every function returns 0 on success or a
 * negative errno value (-ENOENT, -EIO, -ENAMETOOLONG, -ESTALE, ...);
 * -EBADMSG means a database (or record) is damaged.
 *
 * Locking: writers of one directory serialise on an flock() of
 * DIR/.mirrordav/.lock; readers take no lock.  The lock is not recursive:
 * while a thread holds a writable handle on DIR, it must not open another
 * writable handle on DIR, nor call sidecar_store_sha1/copy/move/remove on
 * DIR (they lock too), or it waits for itself forever.  The lock belongs to
 * the open file: a child fork()ed meanwhile shares it until it exits or
 * execs.
 */
#ifndef MIRRORDAV_SIDECAR_H
#define MIRRORDAV_SIDECAR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#define SIDECAR_DIR ".mirrordav"

/* Non-zero if NAME (one path segment) is reserved for the server: the
 * sidecar folder itself.  Such names are never listed or served. */
int sidecar_is_reserved_name(const char *name);

/* Writes into OUT the path of the database for entry NAME of DIR
 * ("" = DIR itself): DIR/.mirrordav/NAME.db.  Names too long to take the
 * suffix within NAME_MAX (over 252 bytes) map to <hex SHA-1 of NAME>.hdb;
 * the full name is recorded inside.  -EINVAL for a NAME with '/', ".",
 * ".." or the reserved name; -ENAMETOOLONG for a NAME over NAME_MAX or an
 * OUT too small. */
int sidecar_path(const char *dir, const char *name, char *out, size_t outsz);

/* Creates DIR/.mirrordav if missing (mode 0755), durably (fsyncs DIR). */
int sidecar_ensure_dir(const char *dir);

/* Whether commits, copies and moves made by this thread fsync the data
 * and the sidecar folder before returning (default on).  The server sets
 * it per request from MirrorDAVFsync. */
void sidecar_set_durable(int on);

/* 0 if the database of NAME in DIR certainly holds no caller keys (it is
 * missing, or marked so when it was written), 1 otherwise.  One getxattr:
 * lets a PROPFIND skip the databases that hold only the server's records. */
int sidecar_has_user_keys(const char *dir, const char *name);

/* Keys starting with '_' belong to the library (server records below);
 * callers store their own data (dead properties) under any other key. */

typedef struct sidecar sidecar;

/* Opens the database of NAME in DIR.  Read-only when WRITABLE is 0: no
 * lock is taken, and a missing database reads as empty.  Writable: creates
 * DIR/.mirrordav if needed and takes the directory's sidecar lock until
 * sidecar_close(), so that concurrent writers in any process serialise.
 * A hashed database whose recorded name is not NAME gives -EEXIST. */
int sidecar_open(const char *dir, const char *name, int writable,
                 sidecar **out);

/* Value of KEY, malloc'd into *VAL (caller frees); -ENOENT if absent.
 * Library keys can be read too. */
int sidecar_get(sidecar *sc, const void *key, size_t klen, void **val,
                size_t *vlen);
/* Pending changes, published by sidecar_commit().  -EBADF on a read-only
 * handle, -EPERM for a key starting with '_', -EINVAL for an empty key.
 * Putting the current value or deleting an absent key changes nothing (and
 * so does not rewrite the database, which a snapshot may share). */
int sidecar_put(sidecar *sc, const void *key, size_t klen, const void *val,
                size_t vlen);
int sidecar_del(sidecar *sc, const void *key, size_t klen);

/* Calls CB for every key of the merged view (stored + pending changes),
 * library keys ('_') included, in no particular order; a non-zero return
 * from CB stops the walk and is returned.  KEY and VAL are valid during
 * the call only; CB must not change SC. */
typedef int (*sidecar_iter_fn)(void *ctx, const void *key, size_t klen,
                               const void *val, size_t vlen);
int sidecar_iter(sidecar *sc, sidecar_iter_fn cb, void *ctx);

/* Writes the pending state to the temporary database without publishing
 * it, so that errors such as ENOSPC surface before a client is answered. */
int sidecar_prepare(sidecar *sc);
/* Prepares if needed, fsyncs, renames over the database, fsyncs DIR's
 * sidecar folder.  A no-op when nothing changed.  The handle stays usable
 * (and locked), now over the published state. */
int sidecar_commit(sidecar *sc);
/* Releases everything; pending changes not committed are dropped. */
void sidecar_close(sidecar *sc);

/* The server's own records about the data.
 *
 * A SHA-1 belongs to particular bytes, and the record names them by the
 * identity of the file that held them when the hash was bound: inode,
 * size, mtime and ctime to the nanosecond.  Anything that writes the
 * bytes changes the mtime or the ctime (and replacing the file, the
 * inode), so where the identity no longer matches the file, the hash is
 * unknown (sidecar_hash_current).  The device is left out: the record
 * lives on the data's own file system, and device numbers are not stable
 * across reboots (btrfs, device-mapper, NFS).  rename(2), link(2) and
 * utimensat(2) move the ctime without touching the bytes: whoever does
 * that to the data re-binds the record (sidecar_rebind*).  Records written
 * before the identity existed read with BOUND 0: their hash is unknown. */
typedef struct {
    char sha1[41];         /* hex SHA-1 of the data, "" if unknown */
    uint64_t sha1_version; /* content version the SHA-1 was computed from */
    uint64_t size;
    int64_t mtime;    /* seconds */
    uint64_t version; /* content version, bumped by each write */
    /* Identity of the data the record describes, with SIZE and MTIME:
     * valid only when BOUND is non-zero. */
    int bound;
    uint64_t ino;
    uint32_t mtime_nsec;
    int64_t ctime; /* seconds */
    uint32_t ctime_nsec;
    /* SHA-256 (MirrorDAVDigest sha1 sha256), bound like the SHA-1 to the
     * identity above and to content version SHA256_VERSION: its own
     * version, so that every writer that bumps VERSION or rewrites the
     * SHA-1 without knowing of it leaves it reading unknown. */
    char sha256[65];         /* hex, "" if unknown */
    uint64_t sha256_version; /* content version it was computed from */
    /* MD5 (MirrorDAVDigest ... md5), bound the same way. */
    char md5[33];
    uint64_t md5_version;
} sidecar_record;

/* Missing fields read as zero / empty. */
int sidecar_get_record(sidecar *sc, sidecar_record *rec);
int sidecar_set_record(sidecar *sc, const sidecar_record *rec);

/* Sets REC's identity (size, mtime, inode, ctime) from ST. */
void sidecar_record_bind(sidecar_record *rec, const struct stat *st);

/* 1 if REC's SHA-1 describes the data whose lstat() or fstat() is ST: a
 * SHA-1 is recorded for the current content version, and the identity is
 * bound and equal to ST's.  0 otherwise: the hash is unknown. */
int sidecar_hash_current(const sidecar_record *rec, const struct stat *st);
/* The same for REC's SHA-256 and MD5. */
int sidecar_sha256_current(const sidecar_record *rec, const struct stat *st);
int sidecar_md5_current(const sidecar_record *rec, const struct stat *st);

/* Records a data-derived value (SHA-1, 40 hex digits) computed from
 * content VERSION, from the bytes of a file whose identity was ST
 * throughout the computation.  Opens, checks and commits under the lock;
 * -ESTALE if the entry's content version is no longer VERSION, or the
 * data at DIR/NAME no longer has ST's identity: then nothing is written. */
int sidecar_store_sha1(const char *dir, const char *name, const char *sha1,
                       uint64_t version, const struct stat *st);
/* The same, with the SHA-256 and the MD5 (hex; NULL: not computed, left
 * as they are, which for an older version reads unknown) of the same
 * bytes. */
int sidecar_store_digests(const char *dir, const char *name, const char *sha1,
                          const char *sha256, const char *md5,
                          uint64_t version, const struct stat *st);

/* After an operation that moved the data's ctime but kept its bytes: a
 * rename(2) or link(2) of the data file.  BEFORE and AFTER are lstat()s
 * of the data taken just before and just after it.  If the record of NAME
 * in DIR described BEFORE, and AFTER is the same inode with the same size
 * and mtime, the record is bound to AFTER; otherwise it is left as it is
 * (and reads as unknown).  Takes DIR's lock.  A missing database is fine. */
int sidecar_rebind(const char *dir, const char *name,
                   const struct stat *before, const struct stat *after);

/* After a copy of the data into a new file: SRC_BEFORE and SRC_AFTER are
 * fstat()s of the source file descriptor taken before and after reading
 * it, COPY the fstat() of the new file once it has its final name.  The
 * record of NAME in DIR (the copy's, carried from the source) is bound to
 * COPY only if it described SRC_BEFORE, the source's identity did not
 * change while it was read, and COPY has its size and mtime.  Takes DIR's
 * lock. */
int sidecar_rebind_copy(const char *dir, const char *name,
                        const struct stat *src_before,
                        const struct stat *src_after, const struct stat *copy);

/* The same as sidecar_rebind, in an open writable handle (pending until
 * sidecar_commit), for a caller that already holds DIR's lock and changes
 * the data's times itself: MTIME_SET allows AFTER's mtime to differ. */
int sidecar_rebind_handle(sidecar *sc, const struct stat *before,
                          const struct stat *after, int mtime_set);

/* Follow the data.  Each is atomic for the destination and durable on
 * return; a missing source database is not an error (nothing to carry),
 * and then any database the destination had is removed, as it described
 * the data just replaced.  They take the destination directory's lock
 * (move: the source's too).  A copy is an independent file, never a hard
 * link.  A move is a rename unless the name changes between normal and
 * hashed form (or between two hashed names): then the database is
 * rewritten with the new "_name" and the source removed.  For a
 * collection, only its own database (in the parent's folder) is handled
 * here: its children's travel inside it.  sidecar_remove: a missing
 * database is fine. */
int sidecar_copy(const char *src_dir, const char *src_name,
                 const char *dst_dir, const char *dst_name);
int sidecar_move(const char *src_dir, const char *src_name,
                 const char *dst_dir, const char *dst_name);
int sidecar_remove(const char *dir, const char *name);

/* The verifier's result for the data (mirrordav verify): when it ran,
 * whether the data matched the manifest, the content version and the
 * identity of the bytes it read, and the SHA-1 it computed.  Kept under
 * its own library key, so the receipt record is never rewritten by a
 * verification. */
typedef struct {
    int64_t time;     /* Unix seconds */
    int clean;        /* 1: matched the manifest; 0: a discrepancy */
    uint64_t version; /* content version checked */
    char sha1[41];    /* computed from the data, "" if not hashed */
    uint64_t ino, size;
    int64_t mtime_ns, ctime_ns;
} sidecar_verify;

/* -ENOENT if the database holds no verification result. */
int sidecar_get_verify(sidecar *sc, sidecar_verify *v);
int sidecar_set_verify(sidecar *sc, const sidecar_verify *v);

/* The entry name recorded in the hashed database at PATH, malloc'd into
 * *NAME (caller frees).  -ENOENT if PATH or its name is missing, -EBADMSG
 * if the name is not one path segment. */
int sidecar_recorded_name(const char *path, char **name);

/* Removes the database of NAME in DIR if, under DIR's lock, DIR/NAME does
 * not exist; -EEXIST (and nothing removed) if it does.  For fsck: never
 * removes the metadata of data that is there. */
int sidecar_remove_orphan(const char *dir, const char *name);

#endif
