/*
 * mod_mirrordav: internal interfaces shared by the module's source files.
 *
 *   mod_mirrordav.c  configuration, hooks, provider registration
 *   paths.c          URI -> volume path mapping and its safety rules
 *   util.c           errors, directory fsync, stat, ETags (used by all)
 *   repos.c          resources: lookup, MKCOL, COPY, MOVE, DELETE, GET
 *   streams.c        PUT: temp file, fsync, rename
 *   publish.c        new files (the mechanism: sidecar/publish.c)
 *   encoding.c       content codings of request bodies (gzip)
 *   gzip_input.c     the streaming gzip decoder (no httpd dependency)
 *   walker.c         depth walks over the tree
 *   liveprops.c      DAV: and mirrordav live properties
 *   propdb.c         dead properties in the sidecar databases
 *   locks.c          class 2 locking: the lock database in state/
 *   recovery.c       server start: finish or undo interrupted COPY/MOVE
 *   snapshot_space.c /snapshots/: read-only snapshots, MKCOL/DELETE of
 *                    whole snapshots, the write barrier of live writes
 *   cow.c            breaks a data file's sharing with a snapshot
 *   browser*.c       pages for web browsers, restore (see browser.h)
 *   digest.c         integrity headers, Repr-Digest (digest.h)
 *   patch_apply.c    the PATCH-APPLY method
 *   patch_commit.c   the commit path of partial updates, the SHA-1 worker
 *   partial_update.c SabreDAV's PATCH and PUT with Content-Range
 *   quota.c          RFC 4331 quota: properties, MirrorDAVQuota, and the
 *                    usage counter's accounting of every write
 *   client_quirks.c  what Finder sends: X-Expected-Entity-Length
 */
#ifndef MIRRORDAV_H
#define MIRRORDAV_H

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "apr_file_info.h"
#include "mod_dav.h"
#include "sidecar/publish.h"

#define MIRRORDAV_NS       "http://mirrordav.org/ns"
#define MIRRORDAV_COPY_BUF (256 * 1024)

typedef struct {
    const char *root_uri;  /* the <Location> prefix, without trailing '/' */
    const char *volume;    /* volume root */
    const char *live;      /* volume/live: the served tree */
    const char *state;     /* volume/state */
    int fsync;             /* fsync before acknowledging; -1 = unset (on) */
    int hash;              /* SHA-1 on receipt; -1 = unset (on) */
    int digests;           /* MirrorDAVDigest: the digests recorded
                              beside the SHA-1 (digest.h's DIGEST_BIT
                              mask of MD5, SHA-256); -1 = unset (none) */
    apr_off_t max_decoded; /* gzip decoded size limit; -1 = unset */
    int passive;           /* files served inert (CSP sandbox, nosniff);
                              -1 = unset (on) */
    int max_props;         /* dead properties per resource; -1 = unset */

    /* MirrorDAVSnapshots On: the location serves volume/snapshots (then
     * in LIVE), read-only; -1 = unset (off). */
    int snapshots;
    const char *snap_backend; /* MirrorDAVSnapshotBackend; NULL = auto */
    int snap_timeout_ms;      /* MirrorDAVSnapshotTimeout; -1 = unset */
    int barrier;              /* MirrorDAVWriteBarrier; -1 = unset (on) */
    apr_off_t quota;          /* MirrorDAVQuota in bytes; 0 = none,
                                 -1 = unset (none) */
} mirrordav_conf;

struct dav_resource_private {
    request_rec *r;
    const mirrordav_conf *conf;
    const char *relpath; /* "" for the root, else "a/b" (decoded) */
    const char *path;    /* absolute file system path */
    apr_finfo_t finfo;   /* from lstat; valid when the resource exists */
    int replace;         /* a COPY or MOVE destination that Overwrite lets
                            it replace (see repos.c, set by remove) */
};

extern module AP_MODULE_DECLARE_DATA mirrordav_module;

const mirrordav_conf *mirrordav_get_conf(request_rec *r);
int mirrordav_fsync_enabled(const mirrordav_conf *conf);
int mirrordav_hash_enabled(const mirrordav_conf *conf);
int mirrordav_passive_enabled(const mirrordav_conf *conf);
/* MirrorDAVMaxProperties: 0 for no limit. */
int mirrordav_max_properties(const mirrordav_conf *conf);

/* paths.c */
typedef enum {
    MIRRORDAV_PATH_OK = 0,
    MIRRORDAV_PATH_RESERVED, /* names the sidecar folder */
    MIRRORDAV_PATH_INVALID,  /* empty, "." or ".." segment */
    MIRRORDAV_PATH_SYMLINK,  /* crosses a symlink or special file */
    MIRRORDAV_PATH_OUTSIDE   /* not under the location */
} mirrordav_path_status;

mirrordav_path_status mirrordav_uri_to_relpath(apr_pool_t *p,
                                               const char *root_uri,
                                               const char *uri,
                                               const char **relpath);
mirrordav_path_status mirrordav_check_ancestors(apr_pool_t *p,
                                                const char *base,
                                                const char *relpath);
const char *mirrordav_path_message(mirrordav_path_status st);
int mirrordav_path_http_status(mirrordav_path_status st);
const char *mirrordav_join(apr_pool_t *p, const char *dir, const char *name);
const char *mirrordav_basename(const char *relpath);
const char *mirrordav_dirname(apr_pool_t *p, const char *path);
/* NAME (LEN bytes) is the sidecar folder's, in any letter case. */
int mirrordav_is_reserved_name(const char *name, apr_size_t len);

/* repos.c */
extern const dav_hooks_repository mirrordav_hooks_repository;
dav_resource *mirrordav_new_resource(apr_pool_t *p, request_rec *r,
                                     const mirrordav_conf *conf,
                                     const char *relpath, const char *uri,
                                     const apr_finfo_t *finfo);

/* util.c: errors, fsync, stat, ETags, sidecar location */
/* Reads R's request body to its end, BUFSIZE bytes at a time, handing
 * each non-empty piece to SINK in order; stops at SINK's first error.
 * 400 naming the cause when the body cannot be read.  PATCH-APPLY and the
 * other partial updates read their bodies through it. */
typedef dav_error *(*mirrordav_body_sink)(void *ctx, const char *buf,
                                          apr_size_t len);
dav_error *mirrordav_read_body(request_rec *r, apr_size_t bufsize,
                               mirrordav_body_sink sink, void *ctx);
struct stat;
void mirrordav_stat_to_finfo(const struct stat *st, apr_finfo_t *fi);
dav_error *mirrordav_error(apr_pool_t *p, int status, apr_status_t rv,
                           const char *desc);
dav_error *mirrordav_fsync_dir(apr_pool_t *p, const char *dir);
/* The directory and entry name of RESOURCE's sidecar database. */
void mirrordav_sidecar_entry(const dav_resource *resource, const char **dir,
                             const char **name);
dav_error *mirrordav_errno_error(apr_pool_t *p, apr_status_t rv,
                                 const char *what);
const char *mirrordav_etag(const dav_resource *resource);

/* publish.c: new contents become visible atomically (the mechanism is
 * sidecar/publish.c's).  errno returns.  A mirrordav_newfile is a
 * publish_file: {-1, NULL} initialises one that discard accepts. */
typedef publish_file mirrordav_newfile;
/* A random name in DIR's sidecar folder, starting with PREFIX; callers
 * retry on EEXIST.  NULL if no randomness could be had. */
const char *mirrordav_temp_name(apr_pool_t *p, const char *dir,
                                const char *prefix);
/* Opens a new file (mode 0644) for an entry of DIR. */
int mirrordav_newfile_open(apr_pool_t *p, const char *dir,
                           mirrordav_newfile *nf);
/* Gives the file the name PATH (in DIR): linked in when PATH is free,
 * renamed over it otherwise. */
int mirrordav_newfile_publish(apr_pool_t *p, mirrordav_newfile *nf,
                              const char *dir, const char *path);
/* Closes it and removes what was not published. */
void mirrordav_newfile_discard(mirrordav_newfile *nf);

/* streams.c */
dav_error *mirrordav_open_stream(const dav_resource *resource,
                                 dav_stream_mode mode, dav_stream **stream);
dav_error *mirrordav_write_stream(dav_stream *stream, const void *buf,
                                  apr_size_t bufsize);
dav_error *mirrordav_close_stream(dav_stream *stream, int commit);
/* Registers the input filter that feeds mod_dav's PUT loop big reads. */
void mirrordav_register_body_filter(void);
/* Records in PATH's sidecar that the data ST describes was stored: SHA-1
 * (hex, or NULL if unknown), size, mtime, and a bumped content version;
 * nothing if other data has replaced it at PATH meanwhile. */
void mirrordav_record_receipt(request_rec *r, const char *path,
                              const struct stat *st, const char *sha1hex);
/* The same with the SHA-256 and MD5 (hex, or NULL: not computed)
 * beside it. */
void mirrordav_record_receipt_digests(request_rec *r, const char *path,
                                      const struct stat *st,
                                      const char *sha1hex,
                                      const char *sha256hex,
                                      const char *md5hex);
/* X-OC-Mtime's value V: 0 when absent, 1 when *TS was set, -1 when
 * malformed. */
struct timespec;
int mirrordav_parse_oc_mtime(const char *v, struct timespec *ts);

/* encoding.c */
struct gzin;
/* Sets *GZIP when the body is gzip-encoded; 415 for any other coding. */
dav_error *mirrordav_body_coding(request_rec *r, int *gzip);
dav_error *mirrordav_gzip_error(request_rec *r, const struct gzin *g, int rc);
apr_uint64_t mirrordav_decoded_limit(const mirrordav_conf *conf);

/* walker.c */
dav_error *mirrordav_walk(const dav_walk_params *params, int depth,
                          dav_response **response);
/* The visible entries of a directory (no sidecar folder, no symlinks nor
 * special files), each with its lstat info, in directory order. */
typedef struct {
    const char *name;
    apr_finfo_t finfo;
} mirrordav_dirent;
typedef struct mirrordav_dir mirrordav_dir;
/* Opens PATH for reading an entry at a time; closed with P at the latest. */
dav_error *mirrordav_dir_open(apr_pool_t *p, const char *path,
                              mirrordav_dir **dir);
/* The next entry, its name allocated in P (a per-entry pool); *DONE is
 * set at the end. */
dav_error *mirrordav_dir_next(apr_pool_t *p, mirrordav_dir *dir,
                              mirrordav_dirent *e, int *done);
void mirrordav_dir_close(apr_pool_t *p, mirrordav_dir *dir);
/* Every entry at once (in byte order of the names if SORTED): memory
 * grows with the directory.  Only for the callers not yet moved to
 * mirrordav_dir_next. */
dav_error *mirrordav_read_dir(apr_pool_t *p, const char *dir, int sorted,
                              apr_array_header_t **entries);

/* liveprops.c */
void mirrordav_register_liveprops(apr_pool_t *p);
void mirrordav_register_liveprop_hooks(void);

/* propdb.c */
extern const dav_hooks_propdb mirrordav_hooks_propdb;
/* Registers the output filter that answers a PROPPATCH whose changes
 * could not be stored with the error instead of mod_dav's 207. */
void mirrordav_register_propdb_hooks(void);

/* recovery.c */
void mirrordav_recovery_reset(apr_pool_t *pconf);
void mirrordav_recovery_note_volume(const char *volume);
int mirrordav_recovery_run(apr_pool_t *pconf, apr_pool_t *plog,
                           apr_pool_t *ptemp, server_rec *s);
/* The configured volumes (const char *), or NULL. */
const apr_array_header_t *mirrordav_recovery_volumes(void);

/* patch_apply.c */
void mirrordav_register_patch_apply(apr_pool_t *p);
/* The method number of PATCH-APPLY (-1 before post_config). */
int mirrordav_patch_apply_method(void);
/* Non-zero when RESOURCE must not be written (PATCH-APPLY answers 403):
 * any path outside the live tree, such as a snapshot's.  The one place
 * that says what is read-only. */
int mirrordav_read_only(const dav_resource *resource);

/* partial_update.c */
void mirrordav_register_partial_update(apr_pool_t *p);

/* locks.c */
extern const dav_hooks_locks mirrordav_hooks_locks;
/* Registers the output filter that answers 201 to a LOCK that created
 * its resource. */
void mirrordav_register_lock_hooks(void);

/* snapshot_space.c */
/* Refuses writes under /snapshots/ (403 with the cause) and COPY or MOVE
 * into it; takes the volume write barrier for a write to the live tree
 * (but PUT, which takes it in close_stream).  DECLINED or the status to
 * answer. */
int mirrordav_snapshot_fixups(request_rec *r, const mirrordav_conf *conf);
void mirrordav_register_snapshot_hooks(apr_pool_t *p);
/* Takes the volume write barrier for the rest of request R (once; see
 * snapshot_space.c): PUT calls it before its first change to the tree. */
dav_error *mirrordav_write_barrier(request_rec *r, const mirrordav_conf *conf);
/* 1 if NAME is a complete snapshot of CONF's volume: a valid name with a
 * record (a snapshot being built or removed has none). */
int mirrordav_snapshot_listed(apr_pool_t *p, const mirrordav_conf *conf,
                              const char *name);
int mirrordav_snapshot_listed_in(apr_pool_t *p, const char *volume,
                                 const char *name);
/* Notes (at configuration time) that ROOT is VOLUME's snapshots folder;
 * the volume of the snapshots folder PATH, or NULL if it is none. */
void mirrordav_note_snapshots_root(apr_pool_t *pconf, const char *root,
                                   const char *volume);
const char *mirrordav_snapshots_root_volume(const char *path);
/* RESOURCE is /snapshots/NAME itself. */
int mirrordav_is_snapshot_entry(const dav_resource *resource);
/* DAV:creationdate: the snapshot's recorded creation for /snapshots/NAME,
 * else FINFO's ctime. */
apr_time_t mirrordav_creation_time(const dav_resource *resource);
/* Whether REC's SHA-1 may be served for the data ST describes (see
 * snapshot_space.c: inside a snapshot the ctime is not compared). */
int mirrordav_hash_servable(const dav_resource *resource, const void *rec,
                            const struct stat *st);

/* cow.c */
/* If PATH is a regular file whose inode is shared (link count above 1: a
 * hard-link snapshot holds it), gives PATH a private copy of it (bytes,
 * mode, times, xattrs) first, so that a change to its metadata cannot
 * reach the snapshot.  *ST: lstat of PATH, refreshed.  0 or an errno. */
int mirrordav_cow_break(apr_pool_t *p, const mirrordav_conf *conf,
                        const char *path, struct stat *st);

/* browser.c (the pages: browser.h) */
/* Notes a <Location>'s configuration, so that pages can link between a
 * volume's live tree and its snapshots. */
void mirrordav_browser_note_conf(apr_pool_t *p, const mirrordav_conf *conf);
/* 1 if GET of RESOURCE is answered with a page (a collection, FILE?versions)
 * rather than a file's bytes; then deliver hands it to
 * mirrordav_browser_deliver.  set_headers sets a page's headers and
 * returns 1, or 0 for the headers of the bare listing. */
int mirrordav_browser_page(const dav_resource *resource);
int mirrordav_browser_set_headers(request_rec *r,
                                  const dav_resource *resource);
dav_error *mirrordav_browser_deliver(const dav_resource *resource,
                                     ap_filter_t *output);
/* browser_restore.c: the restore form's POST handler. */
void mirrordav_register_browser_hooks(apr_pool_t *p);
/* 1 if R's user may write where R's Destination header leads, as a PUT
 * there would be allowed (or if there is no usable Destination). */
int mirrordav_may_write_destination(request_rec *r);
/* quota.c (see there for what is counted and when) */
void mirrordav_register_quota(apr_pool_t *p);
/* Parses MirrorDAVQuota's argument (bytes, K/M/G/T suffixes, "none");
 * NULL or the error. */
const char *mirrordav_quota_parse(const char *arg, apr_off_t *limit);
/* PUT: open refuses (507) a body known to be too large before it is
 * read; check refuses once TOTAL stored bytes pass what is left; lock
 * (just before the publication, SIZE the stored size) takes the usage
 * counter's lock and makes the final check; unlock counts the change if
 * PUBLISHED and releases it. */
typedef struct mirrordav_quota_put mirrordav_quota_put;
dav_error *mirrordav_quota_put_open(request_rec *r, const mirrordav_conf *conf,
                                    const char *path, int gzip,
                                    mirrordav_quota_put **q);
dav_error *mirrordav_quota_put_check(mirrordav_quota_put *q, apr_off_t total);
dav_error *mirrordav_quota_put_lock(mirrordav_quota_put *q, apr_off_t size);
void mirrordav_quota_put_unlock(mirrordav_quota_put *q, int published);
/* PATCH-APPLY, just before its commit: refuses (507) a result that
 * passes the limit, else charges NEW_SIZE - OLD's size to the counter at
 * once (given back when the request ends if PATH still is OLD). */
dav_error *mirrordav_quota_charge(request_rec *r, const mirrordav_conf *conf,
                                  const char *path, const struct stat *old,
                                  apr_uint64_t new_size);
/* COPY, while it stages: begin (before the staging folder is made)
 * refuses (507) a single file FROM (not FROM_DIR) that cannot fit; add
 * counts BYTES about to be staged and refuses once no Overwrite of TO
 * could make them fit, which refused then tells the walk.  Q is NULL
 * when nothing is checked.  swap_begin stays the final check. */
typedef struct mirrordav_quota_copy mirrordav_quota_copy;
dav_error *mirrordav_quota_copy_begin(request_rec *r,
                                      const mirrordav_conf *conf,
                                      const char *from, int from_dir,
                                      const char *to, int replace,
                                      mirrordav_quota_copy **q);
dav_error *mirrordav_quota_copy_add(mirrordav_quota_copy *q, apr_off_t bytes);
dav_error *mirrordav_quota_copy_refused(const mirrordav_quota_copy *q);
/* COPY/MOVE, around the rename that swaps FROM in at TO (REPLACE: over
 * an existing TO): begin measures and checks (507) and holds the
 * counter's lock; end counts the change if SWAPPED and releases it. */
typedef struct mirrordav_quota_swap mirrordav_quota_swap;
dav_error *mirrordav_quota_swap_begin(request_rec *r,
                                      const mirrordav_conf *conf,
                                      const char *from, const char *to,
                                      int move, int replace,
                                      mirrordav_quota_swap **q);
void mirrordav_quota_swap_end(mirrordav_quota_swap *q, int swapped);
/* DELETE: unlink(2) of a file of the live tree, counted; 0 or -1 with
 * errno, as unlink. */
int mirrordav_quota_unlink(const mirrordav_conf *conf, const char *path);

/* client_quirks.c */
/* Fixups: checks X-Expected-Entity-Length on PUT and starts counting
 * the body.  DECLINED or the status to answer. */
int mirrordav_quirks_fixups(request_rec *r);
/* PUT, at the end of the body: 400 if X-Expected-Entity-Length announced
 * another length than the body had. */
dav_error *mirrordav_quirks_check_body(request_rec *r);
void mirrordav_register_quirks(void);

#endif
