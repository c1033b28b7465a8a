/*
 * The snapshot engine (SPEC section 6): a read-only, point-in-time copy of
 * VOLUME/live in VOLUME/snapshots/NAME that shares what did not change.
 *
 * One interface, three backends, detected per volume and overridable:
 *   btrfs     live/ is a subvolume: a read-only subvolume snapshot
 *             (one ioctl, constant time).
 *   reflink   per-file FICLONE (XFS, btrfs): unchanged blocks shared.
 *   hardlink  per-file link(2), any POSIX file system: unchanged files
 *             shared.  Exact only because every write path of the server
 *             replaces data and sidecars by rename, never in place.
 *
 * A snapshot appears under its real name only when complete (built under
 * a ".tmp-" name, renamed into place); snapshot_recover() removes what a
 * crash left under ".tmp-" names.  Real names never start with '.', so
 * recovery cannot touch a snapshot.
 *
 * Plain C, no httpd.  Functions return 0 or a negative errno.
 */
#ifndef MIRRORDAV_SNAPSHOT_SNAPSHOT_H
#define MIRRORDAV_SNAPSHOT_SNAPSHOT_H

#include <stdint.h>
#include <sys/stat.h>

#define SNAPSHOT_NAME_MAX           128
#define SNAPSHOT_TMP_PREFIX         ".tmp-"
#define SNAPSHOT_DEFAULT_TIMEOUT_MS 30000

typedef enum {
    SNAP_AUTO = 0,
    SNAP_BTRFS,
    SNAP_REFLINK,
    SNAP_HARDLINK,
} snap_backend_id;

typedef struct {
    uint64_t files; /* regular data files, sidecar databases not counted */
    uint64_t bytes; /* their apparent sizes */
    uint64_t barrier_us; /* how long writes were held off (create) */
} snap_counts;

/* A tree backend's per-file operation: makes DST_DIR/NAME share the data of
 * SRC_DIR/NAME (regular file, lstat ST).  SRC/DST are the directory paths
 * (for the sidecar library), SFD/DFD open descriptors on them.  FLAGS:
 * SNAP_F_SIDECAR for a file inside a .mirrordav/ folder, SNAP_F_NO_RECORDS
 * when SRC has no .mirrordav/ folder (no record to re-bind). */
#define SNAP_F_SIDECAR    1
#define SNAP_F_NO_RECORDS 2
typedef struct {
    const char *name;
    /* Non-zero: a directory's .mirrordav/ is shared before its files
     * (reflink: the clones' records are then re-bound in the snapshot);
     * zero: after them (hardlink: the live records re-bound first, so the
     * snapshot links the re-bound databases). */
    int sidecar_first;
    int (*share_file)(const char *src, int sfd, const char *dst, int dfd,
                      const char *name, const struct stat *st, int flags);
} snap_tree_ops;

extern const snap_tree_ops snap_reflink_ops, snap_hardlink_ops;

/* 1 if NAME is a valid snapshot name, else 0. */
int snapshot_name_valid(const char *name);

/* "auto", "btrfs", "reflink", "hardlink" <-> id.  parse: -EINVAL. */
int snapshot_backend_parse(const char *s, snap_backend_id *id);
const char *snapshot_backend_name(snap_backend_id id);

/* The backend VOLUME supports best: btrfs if live/ is a btrfs subvolume,
 * reflink if FICLONE works between snapshots/ files, else hardlink. */
int snapshot_detect(const char *volume, snap_backend_id *id);

typedef struct {
    snap_backend_id backend; /* SNAP_AUTO: snapshot_detect */
    int timeout_ms;          /* barrier wait; 0: the default 30 s */
} snapshot_opts;

/* Takes snapshot NAME of VOLUME/live: -EINVAL bad name, -EEXIST taken,
 * -ETIMEDOUT writers did not drain in time, -EOPNOTSUPP backend not
 * available here.  On success the record (name, created, backend, files,
 * bytes) is written and *COUNTS set (may be NULL); *USED gets the backend
 * (may be NULL).  On failure nothing is left under NAME. */
int snapshot_create(const char *volume, const char *name,
                    const snapshot_opts *opts, snap_counts *counts,
                    snap_backend_id *used);

/* Removes snapshot NAME and then its record: -ENOENT if neither exists.
 * The snapshot disappears from VOLUME/snapshots/ atomically first (rename
 * to a ".tmp-" name), so a crash midway leaves only a leftover. */
int snapshot_delete(const char *volume, const char *name);

/* Removes the ".tmp-" leftovers of crashed creates and deletes.  Holds
 * the barrier exclusively while doing so (a create in progress holds it
 * too), so a build in progress is never taken for a leftover.  Returns the
 * number removed or a negative errno. */
int snapshot_recover(const char *volume, int timeout_ms);

/* Creates VOLUME with live/ (a btrfs subvolume where possible), snapshots/
 * and state/.  *SUBVOL is set to 1 if live/ is a subvolume. */
int snapshot_volume_init(const char *volume, int *subvol);

/* Internal, shared between the backends. */
int snap_tree_copy(const snap_tree_ops *ops, const char *src, const char *dst,
                   snap_counts *counts);
/* rm -r of PATH; LIVE (may be NULL) is the live tree PATH is a snapshot
 * of, whose records are re-bound when a shared inode loses a link. */
int snap_remove_tree(const char *path, const char *live);
int snap_btrfs_is_subvolume(const char *path);
int snap_btrfs_snapshot(const char *src, const char *dst_parent,
                        const char *dst_name);
int snap_btrfs_subvol_create(const char *parent, const char *name);
int snap_btrfs_make_writable(const char *path);
int snap_copy_xattrs(int sfd, int dfd);

#endif
