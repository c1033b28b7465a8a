/*
 * intent: a small journal that makes a COPY or MOVE of a tree onto a
 * destination atomic across a crash.
 *
 * The new tree is built (COPY) or prepared (MOVE) out of sight, in a
 * staging folder STAGE = PARENT/.mirrordav/.stage-XXXXXX beside the
 * destination DST = PARENT/NAME, and swapped in by one rename (an exchange
 * when DST exists, so that the old tree lands in STAGE/NAME).  The entry's
 * own sidecar (PARENT/.mirrordav/NAME.db, not inside the tree) is staged as
 * STAGE/.mirrordav/NAME.db and renamed in after the swap.
 *
 * One record per operation, VOLUME/state/intent-XXXXXX, says what was
 * staged where and how far the operation got:
 *   staging  STAGE may hold a partial copy: disposable; DST is untouched.
 *   swap     STAGE holds the whole new tree (or, for a MOVE, a copy of the
 *            source's own sidecar), made durable; the swap may or may not
 *            have happened.  Whether it did is read from the inode now at
 *            DST (new_ino is the inode of the tree being swapped in).
 *            Not swapped: STAGE is disposable.  Swapped: roll forward
 *            (install the staged sidecar, drop the source's, set the old
 *            tree aside into STAGE).
 *   cleanup  everything is in place and durable; STAGE (the old tree, if
 *            any) is disposable.
 * A record is rewritten by write-temp, fsync, rename, fsync state/, so a
 * crash leaves either the old or the new record, never a torn one.
 *
 * A running operation holds an flock() on its record, so recovery (server
 * start, mirrordav fsck) never touches an operation in progress; a killed
 * process loses its locks.  Recovery passes serialise on state/intent.lock.
 *
 * Plain C, no httpd.  Functions return 0 or a negative errno value.
 */
#ifndef MIRRORDAV_INTENT_H
#define MIRRORDAV_INTENT_H

#include <limits.h>
#include <stdint.h>

#define INTENT_STAGE_PREFIX ".stage-"

typedef enum {
    INTENT_STAGING = 0,
    INTENT_SWAP = 1,
    INTENT_CLEANUP = 2,
} intent_phase;

typedef struct {
    char file[PATH_MAX]; /* the record */
    int fd;              /* open and flock()ed while the operation runs */
    int durable;         /* fsync (MirrorDAVFsync) */
    int move;            /* 0: COPY, 1: MOVE */
    intent_phase phase;
    char src[PATH_MAX];   /* MOVE: the source */
    char dst[PATH_MAX];   /* the destination */
    char stage[PATH_MAX]; /* the staging folder */
    uint64_t new_ino;     /* inode of the tree swapped in */
    uint64_t old_ino;     /* inode of the old destination, 0 if none */
    int newdb;            /* STAGE/.mirrordav holds the new entry sidecar */
} intent;

/* Writes the staging record (durably when DURABLE), locks it, then creates
 * the staging folder (and PARENT/.mirrordav if needed).  SRC is NULL for a
 * COPY.  On return, IN->stage names the folder; the staged entry goes to
 * IN->stage/NAME. */
int intent_begin(intent *in, const char *state_dir, int move, const char *src,
                 const char *dst, int durable);

/* Records phase SWAP (fill new_ino, old_ino, newdb first).  Durable on
 * return, so the swap may follow. */
int intent_ready(intent *in);

/* After the swap (or to redo it after a crash): roll forward, then drop
 * the staging folder and the record.  A staging folder that cannot be
 * removed entirely leaves the record in phase CLEANUP and returns the
 * error: nothing live depends on it any more. */
int intent_finish(intent *in);

/* Before the swap: drop the staging folder and the record. */
int intent_abort(intent *in);

/* Closes the record (releasing its lock) without changing anything. */
void intent_release(intent *in);

/* Resolves the intent of record FILE as recovery does: roll back or
 * forward.  -EBUSY if its operation is still running. */
int intent_resolve_file(const char *file, int durable);

/* Called once per record found by intent_recover: its file, the
 * destination, the phase it was in, what was done ("rolled back",
 * "completed", "in progress", ...) and the outcome (0 or -errno). */
typedef void (*intent_report_fn)(void *ctx, const intent *in,
                                 const char *action, int rc);

/* Walks STATE_DIR's records under state/intent.lock.  With REPAIR, each
 * record whose operation is dead is resolved; without, only reported.
 * Returns the number of records left unresolved, or -errno. */
int intent_recover(const char *state_dir, int repair, int durable,
                   intent_report_fn cb, void *ctx);

/* Crash tests: kills the process at the Nth call when the environment has
 * MIRRORDAV_TEST_CRASH_POINT=N (each step of an operation calls it). */
void intent_crash_point(void);

/* Removes PATH and all under it (a missing PATH is fine), going on past
 * members that cannot be removed; fails if any could not.  Bounded
 * memory: one descriptor per level. */
int intent_remove_all(const char *path);

/* Non-zero if STAGE (a path) is the staging folder of a record in
 * STATE_DIR. */
int intent_owns_stage(const char *state_dir, const char *stage);

#endif
