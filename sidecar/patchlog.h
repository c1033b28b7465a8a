/*
 * patchlog: the journal of PATCH-APPLY requests applied in place, and the
 * queue of SHA-1s still to be computed after one (SPEC section 5).  Plain
 * C, no httpd dependency: the module writes and replays it, `mirrordav
 * fsck` reports and replays it.  Functions return 0 or a negative errno.
 *
 * In place (where the file system cannot clone a file): the output O is
 * staged in VOLUME/state/patch-XXXXXX.data and fsynced; then a record
 * patch-XXXXXX.rec (written to a temp name, fsynced, renamed, state/
 * fsynced) names the target, its inode, the offset, O's length and the
 * size the file must end with.  Only then is O copied into the file (under
 * an exclusive flock, which readers share), the file fsynced, and the
 * record removed before its data.  The journal is redo-only: replaying a
 * record writes the same bytes to the same place and sets the same size,
 * so it may run any number of times.  A crash before the record is
 * durable leaves the old file (and at most a .data file, removed by
 * recovery); after, recovery completes it: the new file.
 *
 * Pending SHA-1s: before the data changes, an entry
 * VOLUME/state/pending/p-XXXXXX holding the target's path is made durable
 * (written as t-XXXXXX, then renamed: a p- entry is never seen empty);
 * the hashing worker (the module's, or fsck --repair) removes it once the
 * SHA-1 of the data is stored, or once a newer write (with its own entry)
 * made the hash stale.  So a pending hash is never forgotten, whatever
 * crashes in between.
 */
#ifndef MIRRORDAV_PATCHLOG_H
#define MIRRORDAV_PATCHLOG_H

#include <stdint.h>
#include <sys/stat.h>

typedef struct {
    char rec[4096];  /* the record's path */
    char data[4096]; /* the staged O's path */
    int data_fd;     /* open read-write; -1 when closed */
    int rec_fd;      /* the record, flocked while the request runs */
    /* What the record says. */
    const char *target;
    uint64_t ino;
    uint64_t offset, len, new_size;
    /* The staged O holds only the blocks that differ from the file at the
     * same place; the rest are holes (SEEK_DATA/SEEK_HOLE find them), and
     * only the data is copied in.  Set by patchlog_stage where the file
     * system reports holes exactly (ext4, XFS, btrfs, tmpfs). */
    int sparse;
} patchlog;

/* Creates the staging file for O in STATE; PL->data_fd is where O goes. */
int patchlog_stage(const char *state, patchlog *pl);
/* Sets the staged O's size to PL->len, syncs it and makes the record
 * durable (fields set by the caller).  From here on a crash completes the
 * patch. */
int patchlog_write_record(const char *state, patchlog *pl);
/* Copies O into TARGET_FD at its offset and sets the size, under an
 * exclusive flock of TARGET_FD (readers hold it shared), and fsyncs. */
int patchlog_apply(const patchlog *pl, int target_fd);
/* Removes the record, then the data (or just the data, before a record). */
void patchlog_retire(const char *state, patchlog *pl);

/* Replays (REPAIR) or lists every record of STATE not locked by a running
 * request; REPORT (may be NULL) is told of each.  Removes staged data
 * without a record.  Returns the number of records left, or -errno. */
typedef void (*patchlog_report_fn)(void *ctx, const char *target,
                                   const char *what, int rc);
int patchlog_recover(const char *state, int repair, patchlog_report_fn report,
                     void *ctx);

/* Makes durable an entry saying that PATH's SHA-1 must be computed.
 * With HELD, the entry stays locked (flock) and open in *HELD until the
 * caller closes it, which it does once PATH's record describes the new
 * data: until then a worker leaves the entry alone (it would find the
 * record current for the old data and drop the entry before the data
 * changed).  Without HELD (NULL) the entry is free at once. */
int patchlog_pending_add(const char *state, const char *path, int *held);
/* Computes and stores (versioned, sidecar_store_sha1) the SHA-1 of each
 * pending entry not locked by another worker; removes an entry once
 * stored or once a newer write made it stale.  REPORT is told of each
 * ("stored", "stale store refused", or an error).  Returns how many
 * remain, or -errno.  LIST_ONLY: PATCHLOG_PENDING_LIST counts and
 * reports, changing nothing; PATCHLOG_PENDING_MARK only brings each
 * entry's sidecar record up to date with its data (version bumped, SHA-1
 * empty: pending), without hashing. */
#define PATCHLOG_PENDING_RUN  0
#define PATCHLOG_PENDING_LIST 1
#define PATCHLOG_PENDING_MARK 2 /* at start: records read as pending */
int patchlog_pending_run(const char *state, int list_only,
                         patchlog_report_fn report, void *ctx);

/* After new data was put at PATH (identity ST, taken before the publish
 * for a replaced file): bumps the content version, records size and mtime,
 * clears the SHA-1 (pending) and binds the record to the data at PATH,
 * under the sidecar lock; nothing if PATH no longer holds ST's inode. */
int patchlog_record_new_data(const char *path, const struct stat *st);

#endif
