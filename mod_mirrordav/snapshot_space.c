/*
 * /snapshots/: the volume's snapshots over WebDAV, and the write barrier
 * of the live tree (SPEC section 6).
 *
 * A location with "MirrorDAVSnapshots On" is served by the same provider
 * as the live tree, over VOLUME/snapshots instead of VOLUME/live, so that
 * everything under /snapshots/NAME/ reads exactly as the live tree does
 * (PROPFIND, GET with ranges and conditionals, dead properties and SHA-1
 * from the snapshot's own sidecars).  This file adds what differs:
 *
 *  - only complete snapshots are shown: a valid name with a record in
 *    state/snapshots/ (one being built or removed has none);
 *  - every method that could change anything is refused with 403 and its
 *    cause, here in fixups, before mod_dav looks at If: headers or locks,
 *    so that no lock token held on the live path opens a way in; a COPY or
 *    MOVE whose Destination lies in a snapshot is refused the same way;
 *  - MKCOL /snapshots/NAME takes a snapshot and DELETE /snapshots/NAME
 *    removes one, through the snapshot engine (snapshot/snapshot.h);
 *  - /snapshots/NAME has the record as live properties.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "apr_strings.h"
#include "apr_uri.h"
#include "http_core.h"
#include "http_protocol.h"
#include "http_request.h"
#include "mirrordav.h"
#include "sidecar/sidecar.h"
#include "snapshot/barrier.h"
#include "snapshot/record.h"
#include "snapshot/snapshot.h"

#define DEFAULT_TIMEOUT_MS (30 * 1000)

/* ------------------------------------------------------------ listing */

int mirrordav_snapshot_listed_in(apr_pool_t *p, const char *volume,
                                 const char *name)
{
    struct stat st;

    /* The engine writes the record once the snapshot has its name, and
     * removes it before the data goes: a temporary or half-removed tree
     * (under another name, with no record) is never shown. */
    return snapshot_name_valid(name) &&
           stat(
               apr_pstrcat(p, volume, "/" SNAPREC_DIR "/", name, ".rec", NULL),
               &st) == 0;
}

int mirrordav_snapshot_listed(apr_pool_t *p, const mirrordav_conf *conf,
                              const char *name)
{
    return mirrordav_snapshot_listed_in(p, conf->volume, name);
}

/* The snapshots folders of the configured volumes, so that every listing
 * of one (PROPFIND, the HTML page, a COPY's walk) shows only complete
 * snapshots.  Built while the configuration is read, read-only after. */
static apr_array_header_t *snapshot_roots;

static apr_status_t forget_roots(void *data)
{
    snapshot_roots = NULL;
    return APR_SUCCESS;
}

void mirrordav_note_snapshots_root(apr_pool_t *pconf, const char *root,
                                   const char *volume)
{
    const char **e;

    if (!snapshot_roots) {
        snapshot_roots = apr_array_make(pconf, 2, 2 * sizeof(char *));
        apr_pool_cleanup_register(pconf, NULL, forget_roots,
                                  apr_pool_cleanup_null);
    }
    e = apr_array_push(snapshot_roots);
    e[0] = root;
    e[1] = volume;
}

const char *mirrordav_snapshots_root_volume(const char *path)
{
    int i;

    for (i = 0; snapshot_roots && i < snapshot_roots->nelts; i++) {
        const char **e = (const char **)snapshot_roots->elts + 2 * i;
        if (strcmp(e[0], path) == 0)
            return e[1];
    }
    return NULL;
}

int mirrordav_is_snapshot_entry(const dav_resource *resource)
{
    const dav_resource_private *info = resource->info;

    return info->conf->snapshots == 1 && *info->relpath &&
           !strchr(info->relpath, '/');
}

static int rec_get(const dav_resource *resource, const char *key, char *buf,
                   apr_size_t n)
{
    return snaprec_get(resource->info->conf->volume, resource->info->relpath,
                       key, buf, n);
}

apr_time_t mirrordav_creation_time(const dav_resource *resource)
{
    char buf[32];
    char *end;
    long long t;

    if (mirrordav_is_snapshot_entry(resource) &&
        rec_get(resource, "created", buf, sizeof(buf)) == 0) {
        t = strtoll(buf, &end, 10);
        if (end != buf && !*end)
            return apr_time_from_sec(t);
    }
    return resource->info->finfo.ctime;
}

/* In the live tree a SHA-1 is served only while the data's identity,
 * ctime included, is the one it was bound to (sidecar_hash_current).  A
 * snapshot's files keep their inode, size and mtime, but not their ctime:
 * link(2) moved it when the snapshot was taken, and a MOVE or DELETE in
 * the live tree of a file a snapshot shares moves it again.  No write
 * path changes a shared inode's bytes (cow.c, and every replacement is a
 * new inode), so inside a snapshot the ctime is not compared. */
int mirrordav_hash_servable(const dav_resource *resource, const void *recv,
                            const struct stat *st)
{
    const sidecar_record *rec = recv;

    if (resource->info->conf->snapshots != 1)
        return sidecar_hash_current(rec, st);
    return rec->sha1[0] && rec->sha1_version == rec->version && rec->bound &&
           rec->ino == (uint64_t)st->st_ino &&
           rec->size == (uint64_t)st->st_size &&
           rec->mtime == (int64_t)st->st_mtim.tv_sec &&
           rec->mtime_nsec == (uint32_t)st->st_mtim.tv_nsec;
}

/* ------------------------------------------------------------ refusals */

static int refuse(request_rec *r, int status, const char *msg)
{
    /* As in mod_mirrordav.c: a message that starts with a capitalised
     * word and a space is never taken for a redirect. */
    ap_custom_response(r, status, apr_pstrcat(r->pool, msg, "\n", NULL));
    return status;
}

static int read_only(request_rec *r, const char *why)
{
    return refuse(
        r, HTTP_FORBIDDEN,
        apr_pstrcat(r->pool, "Snapshots are read-only: ", why, NULL));
}

/* The methods that change the live tree (or its locks), and so hold the
 * write barrier. */
static int is_write(request_rec *r)
{
    switch (r->method_number) {
    case M_PUT:
    case M_DELETE:
    case M_MKCOL:
    case M_COPY:
    case M_MOVE:
    case M_PROPPATCH:
    case M_LOCK:
    case M_UNLOCK:
        return 1;
    default:
        return strcmp(r->method, "PATCH-APPLY") == 0;
    }
}

/* Where the Destination header leads, as mod_dav will resolve it (a
 * subrequest): 1 if into one of our locations, with *SNAPSHOTS and
 * *VOLUME set; 0 when it is not ours or is malformed (mod_dav then
 * reports it).  The subrequest's merged configuration lives in its pool,
 * so only what outlives it is kept (the volume string is the server
 * configuration's). */
static int destination(request_rec *r, int *snapshots, const char **volume)
{
    const char *dest = apr_table_get(r->headers_in, "Destination");
    const mirrordav_conf *dc;
    request_rec *sub;
    apr_uri_t uri;
    int ours = 0;

    if (!dest || apr_uri_parse(r->pool, dest, &uri) != APR_SUCCESS ||
        !uri.path)
        return 0;
    /* The path as sent, as mod_dav passes it: the subrequest merges dot
     * segments and decodes it as httpd does any request URI (encoded
     * slashes as AllowEncodedSlashes says).  Decoding it here first would
     * refuse a %2F that the server decodes, and the COPY would then reach
     * a snapshot unchecked. */
    sub = ap_sub_req_lookup_uri(uri.path, r, NULL);
    dc = ap_get_module_config(sub->request_config, &mirrordav_module);
    if (dc && dc->volume) {
        ours = 1;
        *snapshots = dc->snapshots == 1;
        *volume = dc->volume;
    }
    ap_destroy_sub_req(sub);
    return ours;
}

/* ------------------------------------------------------------ barrier */

static apr_status_t leave_barrier(void *data)
{
    barrier_leave(data);
    return APR_SUCCESS;
}

/*
 * The write barrier, held shared from before the request's first change
 * until the request pool is destroyed.  httpd destroys the request pool
 * when the core output filter destroys the EOR bucket that follows the
 * response, which it does only after every byte of the response before it
 * has been written to the socket (or the connection is gone).  So the
 * release comes after the reply has left, never before: a snapshot, which
 * holds the barrier exclusively, either begins before the write's first
 * change (and the write waits for it, changes after it and answers after
 * it began: not in it, rightly) or begins after the reply was sent (and
 * holds every change of the write).  A reply never reaches the client
 * before a snapshot began unless the snapshot holds the write.
 *
 * Where it is taken: in fixups, before mod_dav's handler makes any change,
 * for every write method except PUT.  Their bodies are XML that mod_dav
 * reads first (LimitXMLRequestBody bounds them, Timeout bounds a slow
 * sender), and a snapshot that waits too long for one fails cleanly.  A
 * PUT's body can be gigabytes: it goes into an unnamed file that no
 * snapshot can see, and the PUT takes the barrier in close_stream, after
 * its data is synced and before its name is linked in (its first change
 * to the tree), so that no upload in progress holds up a snapshot.
 *
 * A writer waits for a snapshot in progress (barrier_enter blocks); only
 * a failure to open or lock the barrier file refuses the write, as
 * writing without it could put half a write into a snapshot.
 */
#define BARRIER_KEY "mirrordav-barrier"

static int enter_barrier(request_rec *r, const char *volume)
{
    barrier *b;
    void *held = NULL;
    int rc;

    apr_pool_userdata_get(&held, BARRIER_KEY, r->pool);
    if (held)
        return DECLINED; /* once per request */
    b = apr_palloc(r->pool, sizeof(*b));
    if ((rc = barrier_enter(volume, b)) != 0) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(-rc), r,
                      "could not take the write barrier of %s", volume);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    apr_pool_cleanup_register(r->pool, b, leave_barrier,
                              apr_pool_cleanup_null);
    apr_pool_userdata_setn(b, BARRIER_KEY, NULL, r->pool);
    return DECLINED;
}

static int enter_barrier_or_refuse(request_rec *r, const char *volume)
{
    if (enter_barrier(r, volume) != DECLINED)
        return refuse(r, HTTP_INTERNAL_SERVER_ERROR,
                      "Could not take the volume's write barrier.");
    return DECLINED;
}

dav_error *mirrordav_write_barrier(request_rec *r, const mirrordav_conf *conf)
{
    if (!conf->volume || conf->barrier == 0 ||
        enter_barrier(r, conf->volume) == DECLINED)
        return NULL;
    return mirrordav_error(r->pool, HTTP_INTERNAL_SERVER_ERROR, 0,
                           "Could not take the volume's write barrier.");
}

/* ------------------------------------------------------------ fixups */

static int in_snapshots(request_rec *r, const mirrordav_conf *conf)
{
    const char *relpath = NULL, *slash;
    const char *dvol;
    int dsnap;

    if (r->method_number == M_GET || r->method_number == M_OPTIONS ||
        r->method_number == M_PROPFIND)
        return DECLINED;
    if (mirrordav_uri_to_relpath(r->pool, conf->root_uri, r->uri, &relpath) !=
        MIRRORDAV_PATH_OK)
        return DECLINED; /* translate_name has refused it */
    slash = strchr(relpath, '/');

    switch (r->method_number) {
    case M_MKCOL:
        if (!*relpath)
            return refuse(r, HTTP_METHOD_NOT_ALLOWED,
                          "The snapshots collection exists.");
        if (!slash)
            return DECLINED; /* a new snapshot: the handler below */
        return read_only(r, "MKCOL inside a snapshot is refused; "
                            "MKCOL /snapshots/NAME takes a snapshot.");
    case M_DELETE:
        if (!*relpath)
            return read_only(r, "the snapshots collection cannot be "
                                "deleted; DELETE /snapshots/NAME removes "
                                "one snapshot.");
        if (!slash)
            return DECLINED;
        return read_only(r, "DELETE inside a snapshot is refused; "
                            "DELETE /snapshots/NAME removes a whole "
                            "snapshot.");
    case M_COPY:
        if (!slash && !*relpath)
            return read_only(r, "COPY of the snapshots collection is "
                                "refused; copy from /snapshots/NAME/.");
        if (!destination(r, &dsnap, &dvol))
            return DECLINED;
        if (dsnap)
            return read_only(r, "a snapshot cannot be the destination of "
                                "a COPY.");
        /* A restore into the live tree: a live write, for a user who
         * may write there (this request passed the snapshots location's
         * authorisation, which lets every reader COPY). */
        if (!mirrordav_may_write_destination(r))
            return refuse(r, HTTP_FORBIDDEN,
                          "Forbidden COPY: you may not write its "
                          "destination in the live tree.");
        return enter_barrier_or_refuse(r, dvol);
    case M_MOVE:
        return read_only(r, "nothing can be moved out of a snapshot; "
                            "COPY restores from it.");
    case M_PUT:
        return read_only(r, "PUT into a snapshot is refused.");
    case M_PROPPATCH:
        return read_only(r, "the properties of a snapshot cannot be "
                            "changed.");
    case M_LOCK:
        return read_only(r, "a snapshot cannot be locked, whatever locks "
                            "the client holds.");
    case M_UNLOCK:
        return read_only(r, "nothing in a snapshot is locked.");
    default:
        return read_only(r,
                         apr_pstrcat(r->pool, r->method,
                                     " is refused under /snapshots/.", NULL));
    }
}

int mirrordav_snapshot_fixups(request_rec *r, const mirrordav_conf *conf)
{
    const char *dvol;
    int dsnap;

    if (r->main || !conf->volume)
        return DECLINED; /* subrequests belong to their main request */
    if (conf->snapshots == 1)
        return in_snapshots(r, conf);
    if (!is_write(r))
        return DECLINED;
    if (r->method_number == M_COPY || r->method_number == M_MOVE) {
        if (destination(r, &dsnap, &dvol) && dsnap)
            return read_only(r, apr_pstrcat(r->pool,
                                            "a snapshot cannot be "
                                            "the destination of a ",
                                            r->method, ".", NULL));
    }
    if (r->method_number == M_PUT || conf->barrier == 0)
        return DECLINED; /* in close_stream (above); or measuring its cost */
    return enter_barrier_or_refuse(r, conf->volume);
}

/* ------------------------------------------------------------ handler */

static int snapshot_status(int rc)
{
    switch (rc) {
    case -EINVAL:
        return HTTP_BAD_REQUEST;
    case -EEXIST:
        return HTTP_METHOD_NOT_ALLOWED;
    case -ENOENT:
        return HTTP_NOT_FOUND;
    case -ETIMEDOUT:
    case -EAGAIN:
        return HTTP_SERVICE_UNAVAILABLE;
    case -ENOSPC:
    case -EDQUOT:
        return HTTP_INSUFFICIENT_STORAGE;
    case -ENOTSUP:
        return HTTP_NOT_IMPLEMENTED;
    default:
        return HTTP_INTERNAL_SERVER_ERROR;
    }
}

/* MKCOL /snapshots/NAME and DELETE /snapshots/NAME, before mod_dav. */
static int handler(request_rec *r)
{
    const mirrordav_conf *conf;
    const char *name;
    char err[256] = "";
    int rc, timeout;

    if (r->main || !ap_get_module_config(r->request_config, &mirrordav_module))
        return DECLINED;
    conf = mirrordav_get_conf(r);
    if (!conf || conf->snapshots != 1 ||
        (r->method_number != M_MKCOL && r->method_number != M_DELETE) ||
        mirrordav_uri_to_relpath(r->pool, conf->root_uri, r->uri, &name) !=
            MIRRORDAV_PATH_OK ||
        !*name || strchr(name, '/'))
        return DECLINED;
    if (ap_discard_request_body(r) != OK)
        return refuse(r, HTTP_BAD_REQUEST,
                      "Could not read the request "
                      "body.");
    if (!snapshot_name_valid(name))
        return refuse(r, HTTP_BAD_REQUEST,
                      "Invalid snapshot name: 1 to 128 of A-Z a-z 0-9 "
                      ". _ - are allowed.");
    if (r->method_number == M_MKCOL) {
        timeout = conf->snap_timeout_ms == -1 ? DEFAULT_TIMEOUT_MS
                                              : conf->snap_timeout_ms;
        snapshot_opts so;

        so.backend = SNAP_AUTO;
        so.timeout_ms = timeout;
        rc = conf->snap_backend
                 ? snapshot_backend_parse(conf->snap_backend, &so.backend)
                 : 0;
        if (rc == 0)
            rc = snapshot_create(conf->volume, name, &so, NULL, NULL);
        if (rc != 0)
            apr_cpystrn(err, strerror(-rc), sizeof(err));
        if (rc == 0) {
            apr_table_setn(
                r->headers_out, "Location",
                ap_construct_url(r->pool,
                                 apr_pstrcat(r->pool, r->uri, "/", NULL), r));
            r->status = HTTP_CREATED;
            ap_set_content_type(r, "text/plain; charset=utf-8");
            ap_rprintf(r, "Snapshot %s taken.\n", name);
            return OK;
        }
    }
    else {
        if (!mirrordav_snapshot_listed(r->pool, conf, name))
            return refuse(r, HTTP_NOT_FOUND, "No snapshot of this name.");
        rc = snapshot_delete(conf->volume, name);
        if (rc != 0)
            apr_cpystrn(err, strerror(-rc), sizeof(err));
        if (rc == 0) {
            r->status = HTTP_NO_CONTENT;
            return OK;
        }
    }
    ap_log_rerror(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(-rc), r,
                  "snapshot %s of %s: %s", r->method, name, err);
    if (rc == -EEXIST)
        return refuse(r, HTTP_METHOD_NOT_ALLOWED,
                      "A snapshot of this name exists.");
    return refuse(r, snapshot_status(rc),
                  apr_pstrcat(r->pool, "Snapshot ",
                              r->method_number == M_MKCOL ? "not taken: "
                                                          : "not removed: ",
                              err[0] ? err : "failed", ".", NULL));
}

/* ------------------------------------------------------------ properties */

enum {
    PROPID_backend = 1,
    PROPID_files,
    PROPID_bytes,
    PROPID_verify_status,
    PROPID_verify_discrepancies,
    PROPID_verify_time,
};

static const char *const namespace_uris[] = {MIRRORDAV_NS, NULL};

/* The record's keys, by property. */
static const char *const rec_keys[] = {
    NULL,          "backend",       "files",
    "bytes",       "verify_status", "verify_discrepancies",
    "verify_time",
};

static const dav_liveprop_spec props[] = {
    {0, "snapshot-backend", PROPID_backend, 0},
    {0, "snapshot-files", PROPID_files, 0},
    {0, "snapshot-bytes", PROPID_bytes, 0},
    {0, "verify-status", PROPID_verify_status, 0},
    {0, "verify-discrepancies", PROPID_verify_discrepancies, 0},
    {0, "verify-time", PROPID_verify_time, 0},
    {0, NULL, 0, 0},
};

static const dav_hooks_liveprop hooks_liveprop;
static const dav_liveprop_group group = {props, namespace_uris,
                                         &hooks_liveprop};

static dav_prop_insert insert_prop(const dav_resource *resource, int propid,
                                   dav_prop_insert what, apr_text_header *phdr)
{
    apr_pool_t *p = resource->pool;
    const dav_liveprop_spec *info;
    const char *value = NULL, *qname;
    char buf[128];
    int ns;

    if (resource->hooks != &mirrordav_hooks_repository || !resource->exists ||
        !mirrordav_is_snapshot_entry(resource) || propid < PROPID_backend ||
        propid > PROPID_verify_time)
        return DAV_PROP_INSERT_NOTDEF;
    if (rec_get(resource, rec_keys[propid], buf, sizeof(buf)) == 0)
        value = apr_xml_quote_string(p, buf, 0);
    else if (propid == PROPID_verify_status)
        value = "unverified"; /* the verifier has not run on it */
    else
        return DAV_PROP_INSERT_NOTDEF;

    ns = dav_get_liveprop_info(propid, &group, &info);
    qname = apr_pstrcat(p, "lp", apr_itoa(p, ns), ":", info->name, NULL);
    if (what == DAV_PROP_INSERT_SUPPORTED)
        apr_text_append(p, phdr,
                        apr_pstrcat(p, "<D:supported-live-property D:name=\"",
                                    info->name, "\" D:namespace=\"",
                                    MIRRORDAV_NS, "\"/>" DEBUG_CR, NULL));
    else if (what == DAV_PROP_INSERT_VALUE)
        apr_text_append(p, phdr,
                        apr_pstrcat(p, "<", qname, ">", value, "</", qname,
                                    ">" DEBUG_CR, NULL));
    else
        apr_text_append(p, phdr,
                        apr_pstrcat(p, "<", qname, "/>" DEBUG_CR, NULL));
    return what;
}

static int is_writable(const dav_resource *resource, int propid)
{
    return 0;
}

static const dav_hooks_liveprop hooks_liveprop = {
    insert_prop, is_writable, namespace_uris, NULL, NULL, NULL, NULL, NULL,
};

static int find_liveprop(const dav_resource *resource, const char *ns_uri,
                         const char *name, const dav_hooks_liveprop **hooks)
{
    if (resource->hooks != &mirrordav_hooks_repository ||
        resource->info->conf->snapshots != 1)
        return 0;
    return dav_do_find_liveprop(ns_uri, name, &group, hooks);
}

static void insert_all_liveprops(request_rec *r, const dav_resource *resource,
                                 dav_prop_insert what, apr_text_header *phdr)
{
    int id;

    if (resource->hooks != &mirrordav_hooks_repository || !resource->exists ||
        !mirrordav_is_snapshot_entry(resource))
        return;
    for (id = PROPID_backend; id <= PROPID_verify_time; id++)
        (void)insert_prop(resource, id, what, phdr);
}

void mirrordav_register_snapshot_hooks(apr_pool_t *p)
{
    /* Before mod_dav's handler (APR_HOOK_MIDDLE). */
    ap_hook_handler(handler, NULL, NULL, APR_HOOK_FIRST);
    dav_register_liveprop_group(p, &group);
    dav_hook_find_liveprop(find_liveprop, NULL, NULL, APR_HOOK_MIDDLE);
    dav_hook_insert_all_liveprops(insert_all_liveprops, NULL, NULL,
                                  APR_HOOK_MIDDLE);
}
