/*
 * mod_mirrordav: a mod_dav repository provider ("Dav mirrordav") serving a
 * volume's live tree, plus the configuration and request hooks around it.
 *
 *   <Location /dav>
 *       Dav mirrordav
 *       MirrorDAVVolume /srv/mirrordav
 *   </Location>
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "apr_strings.h"
#include "apr_uri.h"
#include "http_core.h"
#include "http_protocol.h"
#include "http_request.h"
#include "digest.h"
#include "mirrordav.h"

static void *create_dir_conf(apr_pool_t *p, char *dir)
{
    mirrordav_conf *conf = apr_pcalloc(p, sizeof(*conf));

    if (dir) {
        apr_size_t n = strlen(dir);
        while (n > 0 && dir[n - 1] == '/')
            n--;
        conf->root_uri = apr_pstrmemdup(p, dir, n);
    }
    conf->fsync = -1;
    conf->hash = -1;
    conf->digests = -1;
    conf->max_decoded = -1;
    conf->passive = -1;
    conf->max_props = -1;
    conf->snapshots = -1;
    conf->snap_timeout_ms = -1;
    conf->barrier = -1;
    conf->quota = -1;
    if (dir)
        mirrordav_browser_note_conf(p, conf);
    return conf;
}

static void *merge_dir_conf(apr_pool_t *p, void *basev, void *addv)
{
    mirrordav_conf *base = basev, *add = addv;
    mirrordav_conf *conf = apr_pcalloc(p, sizeof(*conf));

    conf->root_uri = add->volume
                         ? add->root_uri
                         : (base->root_uri ? base->root_uri : add->root_uri);
    conf->volume = add->volume ? add->volume : base->volume;
    conf->live = add->live ? add->live : base->live;
    conf->state = add->state ? add->state : base->state;
    conf->fsync = add->fsync != -1 ? add->fsync : base->fsync;
    conf->hash = add->hash != -1 ? add->hash : base->hash;
    conf->digests = add->digests != -1 ? add->digests : base->digests;
    conf->max_decoded =
        add->max_decoded != -1 ? add->max_decoded : base->max_decoded;
    conf->passive = add->passive != -1 ? add->passive : base->passive;
    conf->max_props = add->max_props != -1 ? add->max_props : base->max_props;
    conf->snapshots = add->snapshots != -1 ? add->snapshots : base->snapshots;
    conf->snap_backend =
        add->snap_backend ? add->snap_backend : base->snap_backend;
    conf->snap_timeout_ms = add->snap_timeout_ms != -1 ? add->snap_timeout_ms
                                                       : base->snap_timeout_ms;
    conf->barrier = add->barrier != -1 ? add->barrier : base->barrier;
    conf->quota = add->quota != -1 ? add->quota : base->quota;
    return conf;
}

static const char *set_volume(cmd_parms *cmd, void *dconf, const char *arg)
{
    mirrordav_conf *conf = dconf;
    apr_size_t n;

    if (!cmd->path)
        return "MirrorDAVVolume belongs in a <Location>";
    arg = ap_server_root_relative(cmd->pool, arg);
    if (!arg)
        return "MirrorDAVVolume: invalid path";
    n = strlen(arg);
    while (n > 1 && arg[n - 1] == '/')
        n--;
    conf->volume = apr_pstrmemdup(cmd->pool, arg, n);
    conf->live =
        apr_pstrcat(cmd->pool, conf->volume,
                    conf->snapshots == 1 ? "/snapshots" : "/live", NULL);
    if (conf->snapshots == 1)
        mirrordav_note_snapshots_root(cmd->pool, conf->live, conf->volume);
    conf->state = apr_pstrcat(cmd->pool, conf->volume, "/state", NULL);
    mirrordav_recovery_note_volume(conf->volume);
    return NULL;
}

static const char *set_fsync(cmd_parms *cmd, void *dconf, int on)
{
    ((mirrordav_conf *)dconf)->fsync = on;
    return NULL;
}

static const char *set_hash(cmd_parms *cmd, void *dconf, int on)
{
    ((mirrordav_conf *)dconf)->hash = on;
    return NULL;
}

/* MirrorDAVDigest sha1 [md5] [sha256]: the SHA-1 is always recorded. */
static const char *set_digest(cmd_parms *cmd, void *dconf, int argc,
                              char *const argv[])
{
    int i, mask = 0, sha1 = 0;

    for (i = 0; i < argc; i++) {
        if (!strcasecmp(argv[i], "sha1"))
            sha1 = 1;
        else if (!strcasecmp(argv[i], "md5"))
            mask |= DIGEST_BIT(DIGEST_MD5);
        else if (!strcasecmp(argv[i], "sha256"))
            mask |= DIGEST_BIT(DIGEST_SHA256);
        else
            sha1 = -1;
    }
    if (sha1 != 1)
        return "MirrorDAVDigest takes sha1, then md5 and/or sha256";
    ((mirrordav_conf *)dconf)->digests = mask;
    return NULL;
}

static const char *set_passive(cmd_parms *cmd, void *dconf, int on)
{
    ((mirrordav_conf *)dconf)->passive = on;
    return NULL;
}

static const char *set_max_decoded(cmd_parms *cmd, void *dconf,
                                   const char *arg)
{
    mirrordav_conf *conf = dconf;
    char *end;
    apr_off_t v;

    if (apr_strtoff(&v, arg, &end, 10) != APR_SUCCESS || *end || v < 0)
        return "MirrorDAVMaxDecodedSize takes a byte count (0: no limit)";
    conf->max_decoded = v;
    return NULL;
}

static const char *set_max_props(cmd_parms *cmd, void *dconf, const char *arg)
{
    char *end;
    long v = strtol(arg, &end, 10);

    if (end == arg || *end || v < 0 || v > 1000000)
        return "MirrorDAVMaxProperties takes a count up to 1000000 "
               "(0: no limit)";
    ((mirrordav_conf *)dconf)->max_props = (int)v;
    return NULL;
}

/* The served tree is volume/snapshots instead of volume/live; either
 * directive may come first. */
static const char *set_snapshots(cmd_parms *cmd, void *dconf, int on)
{
    mirrordav_conf *conf = dconf;

    conf->snapshots = on;
    if (conf->volume) {
        conf->live = apr_pstrcat(cmd->pool, conf->volume,
                                 on ? "/snapshots" : "/live", NULL);
        if (on)
            mirrordav_note_snapshots_root(cmd->pool, conf->live, conf->volume);
    }
    return NULL;
}

static const char *set_snap_backend(cmd_parms *cmd, void *dconf,
                                    const char *arg)
{
    if (strcmp(arg, "auto") && strcmp(arg, "btrfs") &&
        strcmp(arg, "reflink") && strcmp(arg, "hardlink"))
        return "MirrorDAVSnapshotBackend takes auto, btrfs, reflink or "
               "hardlink";
    ((mirrordav_conf *)dconf)->snap_backend = strcmp(arg, "auto") ? arg : NULL;
    return NULL;
}

static const char *set_snap_timeout(cmd_parms *cmd, void *dconf,
                                    const char *arg)
{
    char *end;
    long v = strtol(arg, &end, 10);

    if (end == arg || *end || v < 1 || v > 3600)
        return "MirrorDAVSnapshotTimeout takes seconds, 1 to 3600";
    ((mirrordav_conf *)dconf)->snap_timeout_ms = (int)v * 1000;
    return NULL;
}

static const char *set_barrier(cmd_parms *cmd, void *dconf, int on)
{
    ((mirrordav_conf *)dconf)->barrier = on;
    return NULL;
}

static const char *set_quota(cmd_parms *cmd, void *dconf, const char *arg)
{
    return mirrordav_quota_parse(arg, &((mirrordav_conf *)dconf)->quota);
}

static const command_rec commands[] = {
    AP_INIT_TAKE1("MirrorDAVVolume", set_volume, NULL, ACCESS_CONF,
                  "the volume directory; its live/ tree is served"),
    AP_INIT_FLAG("MirrorDAVFsync", set_fsync, NULL, ACCESS_CONF,
                 "fsync data and directories before acknowledging a write "
                 "(default On)"),
    AP_INIT_FLAG("MirrorDAVHash", set_hash, NULL, ACCESS_CONF,
                 "compute and record the SHA-1 of every upload (default On; "
                 "Off only to measure its cost)"),
    AP_INIT_TAKE_ARGV("MirrorDAVDigest", set_digest, NULL, ACCESS_CONF,
                      "digests recorded on receipt: sha1 (default), and md5 "
                      "(rclone's owncloud vendor compares MD5) and/or "
                      "sha256"),
    AP_INIT_TAKE1("MirrorDAVMaxDecodedSize", set_max_decoded, NULL,
                  ACCESS_CONF,
                  "largest decoded size of a gzip-encoded body, in bytes"),
    AP_INIT_FLAG("MirrorDAVPassiveContent", set_passive, NULL, ACCESS_CONF,
                 "serve stored files with Content-Security-Policy: sandbox "
                 "and X-Content-Type-Options: nosniff (default On)"),
    AP_INIT_TAKE1("MirrorDAVMaxProperties", set_max_props, NULL, ACCESS_CONF,
                  "most dead properties one resource may hold (default "
                  "1000, 0: no limit)"),
    AP_INIT_FLAG("MirrorDAVSnapshots", set_snapshots, NULL, ACCESS_CONF,
                 "serve the volume's snapshots (read-only; MKCOL and DELETE "
                 "of /NAME take and remove one) instead of its live tree"),
    AP_INIT_TAKE1("MirrorDAVSnapshotBackend", set_snap_backend, NULL,
                  ACCESS_CONF,
                  "auto (default), btrfs, reflink or hardlink: how MKCOL "
                  "takes a snapshot"),
    AP_INIT_TAKE1("MirrorDAVSnapshotTimeout", set_snap_timeout, NULL,
                  ACCESS_CONF,
                  "seconds a snapshot waits for the writes in flight "
                  "(default 30)"),
    AP_INIT_FLAG("MirrorDAVWriteBarrier", set_barrier, NULL, ACCESS_CONF,
                 "live writes hold the volume write barrier (default On; "
                 "Off only to measure its cost: snapshots are then not "
                 "point-in-time)"),
    AP_INIT_TAKE1("MirrorDAVQuota", set_quota, NULL, ACCESS_CONF,
                  "most bytes the volume's live tree may hold (K, M, G, T "
                  "suffixes; default none): writes past it get 507"),
    {NULL},
};

const mirrordav_conf *mirrordav_get_conf(request_rec *r)
{
    return ap_get_module_config(r->per_dir_config, &mirrordav_module);
}

int mirrordav_fsync_enabled(const mirrordav_conf *conf)
{
    return conf->fsync != 0;
}

int mirrordav_hash_enabled(const mirrordav_conf *conf)
{
    return conf->hash != 0;
}

int mirrordav_passive_enabled(const mirrordav_conf *conf)
{
    return conf->passive != 0;
}

int mirrordav_max_properties(const mirrordav_conf *conf)
{
    return conf->max_props == -1 ? 1000 : conf->max_props;
}

/* Sends STATUS with a one-line plain body naming the cause. */
static int refuse(request_rec *r, int status, const char *msg)
{
    /* httpd takes a string that looks like "scheme:..." or "/path" for a
     * redirect; every message here starts with a capitalised word and a
     * space, which it never mistakes for one. */
    ap_custom_response(r, status, apr_pstrcat(r->pool, msg, "\n", NULL));
    return status;
}

/* Maps the URI to the live tree ourselves, so that the core never walks
 * (or follows symlinks in) the volume, and mod_mime still finds a file
 * name to type the content by. */
static int translate_name(request_rec *r)
{
    const mirrordav_conf *conf = mirrordav_get_conf(r);
    mirrordav_path_status st;
    const char *relpath;

    if (!conf || !conf->live || !conf->root_uri || r->uri[0] != '/')
        return DECLINED;
    st = mirrordav_uri_to_relpath(r->pool, conf->root_uri, r->uri, &relpath);
    if (st == MIRRORDAV_PATH_OUTSIDE)
        return DECLINED;
    if (st != MIRRORDAV_PATH_OK)
        return refuse(r, mirrordav_path_http_status(st),
                      mirrordav_path_message(st));
    r->filename = (char *)(*relpath ? apr_pstrcat(r->pool, conf->live, "/",
                                                  relpath, NULL)
                                    : conf->live);
    r->canonical_filename = r->filename;
    /* httpd resets per_dir_config before map_to_storage: remember here
     * that the request is ours. */
    ap_set_module_config(r->request_config, &mirrordav_module, (void *)conf);
    return OK;
}

static int map_to_storage(request_rec *r)
{
    if (!ap_get_module_config(r->request_config, &mirrordav_module))
        return DECLINED;
    return OK; /* no <Directory> walk, no .htaccess in the volume */
}

/* mod_dav answers a bad Destination with a generic "Destination URI had
 * an error"; refuse the reserved name and bad segments with their cause. */
static int check_destination(request_rec *r, const mirrordav_conf *conf)
{
    const char *dest = apr_table_get(r->headers_in, "Destination");
    const char *relpath;
    mirrordav_path_status st;
    apr_uri_t uri;
    char *path;

    if (!dest || apr_uri_parse(r->pool, dest, &uri) != APR_SUCCESS ||
        !uri.path)
        return DECLINED; /* mod_dav reports malformed ones */
    /* As httpd treats a request URI: merge dot segments, then decode. */
    path = apr_pstrdup(r->pool, uri.path);
    if (!ap_normalize_path(path, AP_NORMALIZE_NOT_ABOVE_ROOT |
                                     AP_NORMALIZE_DECODE_UNRESERVED |
                                     AP_NORMALIZE_MERGE_SLASHES) ||
        ap_unescape_url(path) != OK)
        return DECLINED;
    st = mirrordav_uri_to_relpath(r->pool, conf->root_uri, path, &relpath);
    if (st == MIRRORDAV_PATH_OK || st == MIRRORDAV_PATH_OUTSIDE)
        return DECLINED;
    return refuse(r, mirrordav_path_http_status(st),
                  apr_pstrcat(r->pool, "Refused destination. ",
                              mirrordav_path_message(st), NULL));
}

/* A collection asked for by GET or HEAD without its trailing slash is
 * redirected to the slash form, as mod_dir does: a page or a client that
 * resolves relative links ("../", "file") against the slashless URI would
 * land in the parent folder.  WebDAV methods keep answering on the
 * slashless URI, which clients rely on. */
static int redirect_collection(request_rec *r, const mirrordav_conf *conf)
{
    apr_size_t n = strlen(r->uri);
    const char *relpath, *to;
    struct stat st;

    /* M_GET covers HEAD.  Only a real directory reached without crossing
     * a link is redirected; anything else is left to mod_dav's answer. */
    if (r->method_number != M_GET || n == 0 || r->uri[n - 1] == '/' ||
        mirrordav_uri_to_relpath(r->pool, conf->root_uri, r->uri, &relpath) !=
            MIRRORDAV_PATH_OK ||
        (*relpath && mirrordav_check_ancestors(r->pool, conf->live, relpath) !=
                         MIRRORDAV_PATH_OK) ||
        lstat(r->filename, &st) != 0 || !S_ISDIR(st.st_mode))
        return DECLINED;
    to = apr_pstrcat(r->pool, ap_escape_uri(r->pool, r->uri), "/",
                     r->args ? "?" : "", r->args ? r->args : "", NULL);
    apr_table_setn(r->headers_out, "Location",
                   ap_construct_url(r->pool, to, r));
    return HTTP_MOVED_PERMANENTLY;
}

static int fixups(request_rec *r)
{
    const mirrordav_conf *conf;

    if (!ap_get_module_config(r->request_config, &mirrordav_module))
        return DECLINED;
    conf = mirrordav_get_conf(r);
    {
        int rc = mirrordav_snapshot_fixups(r, conf);
        if (rc != DECLINED)
            return rc;
    }
    /* RFC 7694: tell clients that request bodies may be gzip-encoded. */
    if (r->method_number == M_OPTIONS)
        apr_table_setn(r->headers_out, "Accept-Encoding", "gzip");
    {
        int rc = mirrordav_quirks_fixups(r);
        if (rc != DECLINED)
            return rc;
    }
    if (r->method_number == M_COPY || r->method_number == M_MOVE)
        return check_destination(r, conf);
    return redirect_collection(r, conf);
}

static const dav_provider provider = {
    &mirrordav_hooks_repository,
    &mirrordav_hooks_propdb,
    &mirrordav_hooks_locks,
    NULL, /* versioning */
    NULL, /* binding */
    NULL, /* search */
    NULL, /* ctx */
};

static int pre_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp)
{
    mirrordav_recovery_reset(pconf);
    return OK;
}

static void register_hooks(apr_pool_t *p)
{
    /* Interrupted COPY/MOVE are resolved before any request is served. */
    ap_hook_pre_config(pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(mirrordav_recovery_run, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_translate_name(translate_name, NULL, NULL, APR_HOOK_FIRST);
    ap_hook_map_to_storage(map_to_storage, NULL, NULL, APR_HOOK_FIRST);
    ap_hook_fixups(fixups, NULL, NULL, APR_HOOK_MIDDLE);
    mirrordav_register_liveprop_hooks();
    mirrordav_register_liveprops(p);
    mirrordav_register_lock_hooks();
    mirrordav_register_propdb_hooks();
    mirrordav_register_body_filter();
    mirrordav_register_snapshot_hooks(p);
    mirrordav_register_patch_apply(p);
    mirrordav_register_browser_hooks(p);
    mirrordav_register_partial_update(p);
    mirrordav_register_quota(p);
    mirrordav_register_quirks();
    dav_register_provider(p, "mirrordav", &provider);
}

AP_DECLARE_MODULE(mirrordav) = {
    STANDARD20_MODULE_STUFF,
    create_dir_conf,
    merge_dir_conf,
    NULL,
    NULL,
    commands,
    register_hooks,
};
