/*
 * The snapshot engine's interface as the module uses it (SPEC section 6).
 * Plain C, no httpd.  0 or a negative errno; ERR gets a short cause.
 */
#ifndef MIRRORDAV_SNAPSHOT_H
#define MIRRORDAV_SNAPSHOT_H

#include <stddef.h>

/* Takes snapshot NAME of VOLUME/live into VOLUME/snapshots/NAME, with its
 * record in VOLUME/state/snapshots/NAME.rec.  BACKEND: "btrfs", "reflink",
 * "hardlink" or NULL (detected).  Holds the write barrier exclusively,
 * waiting at most BARRIER_TIMEOUT_MS for the writers in flight.
 * -EINVAL: bad name; -EEXIST: NAME exists; -ETIMEDOUT: writers did not
 * drain in time. */
int snapshot_create(const char *volume, const char *name, const char *backend,
                    int barrier_timeout_ms, char *err, size_t errsz);

/* Removes snapshot NAME and its record.  -ENOENT if there is none. */
int snapshot_delete(const char *volume, const char *name, char *err,
                    size_t errsz);

/* 1 if NAME is a valid snapshot name: 1 to 128 of A-Z a-z 0-9 . _ -,
 * not "." nor "..". */
int snapshot_name_valid(const char *name);

#endif
