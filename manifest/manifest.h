/*
 * Manifests (SPEC section 7): a tree described one text record per line,
 * in collation order, each record protected by a CRC-32 and the whole file
 * by a SHA-1 in the trailer.  Plain C, no httpd: the admin command, the
 * verifier and the tests use it directly.
 *
 *   =NAME,key=value,...,_internal_record_crc=xxxxxxxx\n
 *
 * Reading and writing both stream: memory depends on the longest record,
 * never on the number of records.
 */
#ifndef MIRRORDAV_MANIFEST_H
#define MIRRORDAV_MANIFEST_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#define MANIFEST_CRC_KEY  "_internal_record_crc"
#define MANIFEST_TYPE_KEY "_internal_type"
#define MANIFEST_SHA1_KEY "_internal_file_sha1_hash"
#define MANIFEST_VERS_KEY "_internal_version"
#define MANIFEST_SUFFIX   ".manifest"
#define MANIFEST_SIDECARS ".mirrordav"

/* Error returns besides negative errnos. */
#define MANIFEST_ECORRUPT (-10000)

typedef struct {
    const char *key;
    const char *value;
} manifest_kv;

typedef enum {
    MANIFEST_HEADER,
    MANIFEST_ENTRY,
    MANIFEST_TRAILER
} manifest_kind;

/* One decoded record.  The strings live in the reader's buffers and stay
 * valid until the next call to manifest_reader_next. */
typedef struct {
    manifest_kind kind;
    const char *name; /* decoded; "" for the root */
    size_t nkv;       /* pairs, in file order, the CRC excluded */
    const manifest_kv *kv;
    unsigned long line; /* 1-based line number in the file */
} manifest_record;

/* The value of KEY in REC, or NULL. */
const char *manifest_get(const manifest_record *rec, const char *key);

/* ------------------------------------------------------------ format */

/* The manifest order of two names: children of a directory in byte order
 * of their names, every directory after all of its descendants, the root
 * ("") last.  Negative, zero or positive, as strcmp. */
int manifest_compare(const char *a, const char *b);

/* Appends S (LEN bytes) to OUT escaped: '%', ',', '=' and bytes below
 * 0x20 as %XX.  OUT must have room for 3 * LEN bytes; returns the bytes
 * written. */
size_t manifest_escape(char *out, const char *s, size_t len);

/* Decodes %XX in place; NUL-terminates.  -1 on a bad or %00 escape. */
int manifest_unescape(char *s, size_t len, size_t *outlen);

/* Non-zero if BASE (an entry name) is a manifest file: *.manifest or
 * *.manifest.verified.  Manifests describe trees; they are never
 * compared as entries of one. */
int manifest_is_manifest_file(const char *base);

/* CRC of one line (no terminator) as the format defines it: zlib's crc32
 * with the CRC's own value written as 00000000.  LINE must end with the
 * 8 hex digits of the CRC field. */
uint32_t manifest_line_crc(const char *line, size_t len);

/* ------------------------------------------------------------ reader */

typedef struct manifest_reader manifest_reader;

/* Opens PATH (or reads FD if PATH is NULL; the reader then owns FD).
 * 0 or -errno. */
int manifest_reader_open(manifest_reader **rd, const char *path, int fd);

/* The next record: 1 with *REC set (the header first, the trailer last),
 * 0 at the end of a valid manifest (after the trailer was checked),
 * MANIFEST_ECORRUPT (see manifest_reader_error) or -errno. */
int manifest_reader_next(manifest_reader *rd, const manifest_record **rec);

/* What was wrong and where, after MANIFEST_ECORRUPT. */
const char *manifest_reader_error(const manifest_reader *rd,
                                  unsigned long *line);

void manifest_reader_close(manifest_reader *rd);

/* ------------------------------------------------------------ writer */

typedef struct manifest_writer manifest_writer;

/* Starts a manifest on FD (not owned) with a header carrying the extra
 * pairs HDR (may be NULL).  0 or -errno. */
int manifest_writer_open(manifest_writer **wr, int fd, const manifest_kv *hdr,
                         size_t nhdr);

/* One record; keys are written in byte order whatever the order given.
 * Names must come in manifest order (-EINVAL otherwise). */
int manifest_writer_add(manifest_writer *wr, const char *name,
                        const manifest_kv *kv, size_t nkv);

/* Continues a manifest whose first LEN bytes are already in FD (written
 * by an earlier writer that was interrupted after LAST, the name of its
 * last record): hashes them, cuts FD to LEN and appends from there. */
int manifest_writer_resume(manifest_writer **wr, int fd, uint64_t len,
                           const char *last);

/* Writes out what is buffered; *LEN gets the bytes in the file so far
 * (a point to resume from once the caller has fsynced FD). */
int manifest_writer_flush(manifest_writer *wr, uint64_t *len);

/* Writes the trailer and flushes (no fsync: the caller publishes). */
int manifest_writer_finish(manifest_writer *wr);

void manifest_writer_free(manifest_writer *wr);

/* ------------------------------------------------------------ walk */

/* Called for each entry of a tree in manifest order.  NAME is relative to
 * the root ("" for the root itself); DIRFD and BASE address the entry
 * (openat); ST is its lstat.  A non-zero return stops the walk and is
 * returned by manifest_walk. */
typedef int (*manifest_walk_fn)(void *ctx, const char *name, int dirfd,
                                const char *base, const struct stat *st);

/* Visits ROOT's tree in manifest order, leaving out sidecar folders and
 * the entries for which SKIP (may be NULL) returns non-zero.  Memory is
 * bounded by the depth of the tree and its widest directory.
 * 0, the callback's value, or -errno. */
int manifest_walk(const char *root, manifest_walk_fn fn,
                  int (*skip)(void *ctx, const char *name,
                              const struct stat *st),
                  void *ctx);

/* ------------------------------------------------------------ hashing */

/* The one SHA-1 file-hashing routine of the project (verifier, fsck,
 * manifest generate): reads FD from its start to its end in large pieces
 * with sequential read-ahead.  HEX gets 40 digits + NUL, SIZE the bytes
 * read (may be NULL).  0 or -errno. */
int manifest_sha1_fd(int fd, char hex[41], uint64_t *size);

/* The same for a path (never following a symlink). */
int manifest_sha1_file(const char *path, char hex[41], uint64_t *size);

#endif
