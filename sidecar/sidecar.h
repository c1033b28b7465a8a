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
 * negative errno value (-ENOENT, -EIO, -ENAMETOOLONG, -ESTALE, ...).
 */
#ifndef MIRRORDAV_SIDECAR_H
#define MIRRORDAV_SIDECAR_H

#include <stddef.h>
#include <stdint.h>

#define SIDECAR_DIR ".mirrordav"

/* Non-zero if NAME (one path segment) is reserved for the server: the
 * sidecar folder itself.  Such names are never listed or served. */
int sidecar_is_reserved_name(const char *name);

/* Writes into OUT the path of the database for entry NAME of DIR
 * ("" = DIR itself).  Names too long to take the suffix within NAME_MAX
 * map to a hashed file name; the full name is recorded inside. */
int sidecar_path(const char *dir, const char *name, char *out, size_t outsz);

/* Creates DIR/.mirrordav if missing (mode 0755). */
int sidecar_ensure_dir(const char *dir);

/* Keys starting with '_' belong to the library (server records below);
 * callers store their own data (dead properties) under any other key. */

typedef struct sidecar sidecar;

/* Opens the database of NAME in DIR.  Read-only when WRITABLE is 0: no
 * lock is taken, and a missing database reads as empty.  Writable: takes
 * the directory's sidecar lock until sidecar_close(), so that concurrent
 * writers in any process serialise. */
int sidecar_open(const char *dir, const char *name, int writable,
                 sidecar **out);

/* Value of KEY, malloc'd into *VAL (caller frees); -ENOENT if absent. */
int sidecar_get(sidecar *sc, const void *key, size_t klen, void **val,
                size_t *vlen);
int sidecar_put(sidecar *sc, const void *key, size_t klen, const void *val,
                size_t vlen);
int sidecar_del(sidecar *sc, const void *key, size_t klen);

/* Calls CB for every key of the merged view (stored + pending changes);
 * a non-zero return from CB stops the walk and is returned. */
typedef int (*sidecar_iter_fn)(void *ctx, const void *key, size_t klen,
                               const void *val, size_t vlen);
int sidecar_iter(sidecar *sc, sidecar_iter_fn cb, void *ctx);

/* Writes the pending state to the temporary database without publishing
 * it, so that errors such as ENOSPC surface before a client is answered. */
int sidecar_prepare(sidecar *sc);
/* Prepares if needed, fsyncs, renames over the database, fsyncs DIR's
 * sidecar folder.  A no-op when nothing changed. */
int sidecar_commit(sidecar *sc);
/* Releases everything; pending changes not committed are dropped. */
void sidecar_close(sidecar *sc);

/* The server's own records about the data. */
typedef struct {
    char sha1[41];          /* hex SHA-1 of the data, "" if unknown */
    uint64_t sha1_version;  /* content version the SHA-1 was computed from */
    uint64_t size;
    int64_t mtime;          /* seconds */
    uint64_t version;       /* content version, bumped by each write */
} sidecar_record;

/* Missing fields read as zero / empty. */
int sidecar_get_record(sidecar *sc, sidecar_record *rec);
int sidecar_set_record(sidecar *sc, const sidecar_record *rec);

/* Records a data-derived value (SHA-1) computed from content VERSION.
 * Opens, checks and commits under the lock; -ESTALE if the entry's content
 * version is no longer VERSION, in which case nothing is written. */
int sidecar_store_sha1(const char *dir, const char *name, const char *sha1,
                       uint64_t version);

/* Follow the data.  Each is atomic for the destination and durable on
 * return; a missing source database is not an error (nothing to carry). */
int sidecar_copy(const char *src_dir, const char *src_name,
                 const char *dst_dir, const char *dst_name);
int sidecar_move(const char *src_dir, const char *src_name,
                 const char *dst_dir, const char *dst_name);
int sidecar_remove(const char *dir, const char *name);

#endif
