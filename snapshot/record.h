/*
 * Snapshot records: one small text file per snapshot in
 * VOLUME/state/snapshots/NAME.rec, "key=value" lines, written whole
 * (temp file, fsync, rename, fsync) under an flock of the folder, so a
 * reader sees the old record or the new one.  The snapshot engine writes
 * name, creation time, backend and counts; the verifier adds its result:
 *
 *   verify_time=UNIX  verify_status=clean|discrepancies|corrupt|error
 *   verify_discrepancies=N  verify_files=N  verify_bytes=N
 *
 * Plain C, no httpd.  0 or a negative errno.
 */
#ifndef MIRRORDAV_SNAPSHOT_RECORD_H
#define MIRRORDAV_SNAPSHOT_RECORD_H

#include <stddef.h>

#define SNAPREC_DIR "state/snapshots"

/* The value of KEY in NAME's record, into BUF.  -ENOENT if the record or
 * the key is missing, -ENAMETOOLONG if BUF is too small. */
int snaprec_get(const char *volume, const char *name, const char *key,
                char *buf, size_t bufsz);

/* Sets the N pairs KEYS[i]=VALUES[i] in NAME's record, keeping its other
 * keys; creates the record if missing.  Values must hold no newline. */
int snaprec_set(const char *volume, const char *name, const char *const *keys,
                const char *const *values, size_t n);

/* Removes NAME's record (under the folder's lock, then an fsync of the
 * folder).  -ENOENT if there was none. */
int snaprec_delete(const char *volume, const char *name);

#endif
