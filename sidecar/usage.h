/*
 * The volume's usage counter (RFC 4331 quota, SPEC section 4b): how many
 * bytes the live tree holds, kept in VOLUME/state/usage so that no
 * request walks the tree to answer it.  It lives beside the other
 * volume-wide journals of state/ (intent.c, patchlog.c), and like them it
 * is plain C, no httpd, shared by the module and `mirrordav fsck`.
 *
 * What "used" means: the sum of the apparent sizes (st_size) of every
 * regular file under live/, each name counted once, leaving out the
 * sidecar folders (.mirrordav/, with the staging folders of COPY/MOVE in
 * them), directories, snapshots/ and state/.  It is what clients stored,
 * the same on every file system (blocks would depend on reflinks, holes
 * and the snapshots sharing them), and a test or an operator can compute
 * it with `find live -name .mirrordav -prune -o -type f -printf %s`.
 *
 * Concurrency: every change is a read-modify-write of the counter under
 * an exclusive flock(2) of state/usage.lock, which any number of httpd
 * processes (and hosts on a shared file system with working flock) and
 * the admin command share; nothing is cached in memory.  PUT, COPY,
 * MOVE and DELETE make the change itself (the rename or unlink) under the
 * same lock, so two writers of one path each count what the other left;
 * Partial updates (PATCH-APPLY and the other dialects) charge their size
 * change just before they make it (quota.c, from patch_commit.c).
 * Files written into live/ behind the server's back are not counted until
 * a recount.
 *
 * Durability: the counter is rewritten in place (one pwrite of a fixed
 * 64-byte record with its own CRC) and not fsynced: an fsync per write
 * would be a third on every PUT, for a figure that can always be
 * recounted.  After a kill of the server the counter misses at most the
 * operations in flight (changed the tree, not yet the counter; or the
 * reverse for PATCH-APPLY, which charges first); after a crash of the
 * machine it may also lose the updates the kernel had not yet written
 * back (with Linux's defaults, about the last 30 s of them).
 * `mirrordav fsck` reports the drift and `--repair` recounts; a torn or
 * missing record reads as unknown, never as a number.
 *
 * Functions return 0 or a negative errno.
 */
#ifndef MIRRORDAV_USAGE_H
#define MIRRORDAV_USAGE_H

#include <stdint.h>

#define USAGE_FILE      "usage"      /* in VOLUME/state */
#define USAGE_LOCK_FILE "usage.lock" /* in VOLUME/state */

/* A change in progress: the lock is held from usage_begin to usage_end. */
typedef struct {
    int lock_fd; /* -1 when not held */
    int fd;      /* the counter, or -1 when there is none */
    int known;   /* the counter exists and its record is intact */
    uint64_t used;
} usage_txn;

/* Reads the counter without the lock (a record is written whole, and its
 * CRC tells a torn one): -ENOENT when there is none, -EBADMSG when it is
 * unreadable. */
int usage_read(const char *state_dir, uint64_t *used);

/* Takes the lock and reads the counter into T (T->known says whether it
 * is there and intact). */
int usage_begin(const char *state_dir, usage_txn *t);
/* Adds DELTA (clamped at 0) to a known counter and releases the lock; an
 * unknown counter stays unknown (a partial figure is worse than none). */
int usage_end(usage_txn *t, int64_t delta);

/* Sums what "used" counts under DIR (see above); files that vanish while
 * it walks are skipped. */
int usage_tree_bytes(const char *dir, uint64_t *bytes);

/* Recounts VOLUME/live with the volume's write barrier held exclusively
 * (waiting at most TIMEOUT_MS for the writes in flight), so that no write
 * is between its change and its counter update.  *OLD_KNOWN and *OLD get
 * the counter as it was, *COUNTED the total; with WRITE, the counter is
 * set to it durably (temp file, fsync, rename, fsync of state/). */
int usage_recount(const char *volume, int write, int timeout_ms,
                  int *old_known, uint64_t *old, uint64_t *counted);

#endif
