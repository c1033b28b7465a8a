/*
 * patch_commit: the commit path every partial update of a file shares
 * (PATCH-APPLY, and any other request that replaces a byte range): the
 * new bytes O of the range are staged apart from the live file, then made
 * visible at once, crash-safely, and the sidecar records the new version
 * with its SHA-1 pending, which a worker thread computes (see
 * patch_commit.c for the mechanisms and their ordering).
 *
 *   mirrordav_patch_open     the file, locked against other partial
 *                            updates for the rest of the request
 *   mirrordav_patch_prepare  where O goes (S: O[0]'s offset in the file)
 *   mirrordav_patch_write    O, in order, any number of calls
 *   mirrordav_patch_commit   the new version becomes visible
 *
 * Nothing is visible before the commit; a request that stops earlier
 * leaves the file and its sidecar as they were (pool cleanups remove
 * what was staged).
 */
#ifndef MIRRORDAV_PATCH_COMMIT_H
#define MIRRORDAV_PATCH_COMMIT_H

#include <time.h>

#include "mirrordav.h"

typedef struct mirrordav_patch mirrordav_patch;

/* Opens RESOURCE's file read-write under an exclusive lock that other
 * partial updates respect (held until R's pool goes). */
dav_error *mirrordav_patch_open(request_rec *r, const dav_resource *resource,
                                mirrordav_patch **pt);
/* The file as opened: its descriptor (to read the old bytes) and size. */
int mirrordav_patch_basis_fd(const mirrordav_patch *pt);
apr_uint64_t mirrordav_patch_basis_size(const mirrordav_patch *pt);
/* Prepares where O goes: a clone of the file, a whole copy (a snapshot
 * shares it), or a staging file in VOLUME/state/ for the journal. */
dav_error *mirrordav_patch_prepare(mirrordav_patch *pt, apr_uint64_t s);
/* Appends N bytes to O. */
dav_error *mirrordav_patch_write(mirrordav_patch *pt, const char *buf,
                                 apr_size_t n);
/* How many bytes of O were written. */
apr_uint64_t mirrordav_patch_written(const mirrordav_patch *pt);
/* The new version gets MTIME (X-OC-Mtime) instead of the time of the
 * commit. */
void mirrordav_patch_set_mtime(mirrordav_patch *pt,
                               const struct timespec *mtime);
/* Makes the new version visible: F[0,S) + O + F[S+|O|,L), or with
 * TRUNCATE F[0,S) + O; RESULT is its size.  A gap between L and S reads
 * as zeros. */
dav_error *mirrordav_patch_commit(mirrordav_patch *pt, apr_uint64_t result,
                                  int truncate);
/* The hashing worker of each child. */
void mirrordav_register_patch_commit(apr_pool_t *p);

#endif
