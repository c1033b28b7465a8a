/*
 * Restore from the versions page (docs/BROWSER.md): a form POST to the
 * live file's URL (action=restore, snapshot=NAME, token=TOKEN) makes the
 * server perform the WebDAV COPY (Overwrite: T) from
 * /snapshots/NAME/PATH to /dav/PATH that a client could send, as a
 * sub-request through mod_dav and this provider: locks, the write
 * barrier and the sidecars behave exactly as for a client's COPY.
 *
 * A forged form is refused before anything is touched:
 *  - Origin, or failing that Referer, must be the request's own origin;
 *  - the token must be the HMAC-SHA256, under the volume's secret, of the
 *    user, the live path and the hour (this one or the previous), so that
 *    a page only hands out forms for one user and path;
 *  - the user must be allowed to PUT the live path.
 * Every other POST (any other body type) is left to the server, which
 * refuses it as it always did.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "apr_strings.h"
#include "apr_uri.h"
#include "http_core.h"
#include "http_protocol.h"
#include "http_request.h"
#include "util_filter.h"
#include "browser.h"
#include "snapshot/snapshot.h"

#define SECRET_NAME "browser-secret"
#define SECRET_LEN  32
#define FORM_MAX    8192
#define WINDOW_SECS 3600

static ap_filter_rec_t *discard_filter;

/* ------------------------------------------------------------ the secret */

static int read_secret(const char *path, unsigned char *key)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC), n = 0, rv = 0;

    if (fd < 0)
        return -errno;
    while (n < SECRET_LEN) {
        ssize_t k = read(fd, key + n, SECRET_LEN - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            rv = k < 0 ? -errno : -EBADMSG;
            break;
        }
        n += k;
    }
    close(fd);
    return rv;
}

/* The volume's secret, made on first use.  It is written whole and
 * fsynced under a temporary name (or unnamed) before it gets its name, so
 * a crash leaves either no secret or a complete one, never a short one
 * that would refuse every token for good; fsynced whatever MirrorDAVFsync
 * says for the same reason.  Two processes making it at once: the second
 * link fails with EEXIST and that process reads the first one's. */
static int volume_secret(apr_pool_t *p, const mirrordav_conf *conf,
                         unsigned char *key)
{
    const char *state = apr_pstrcat(p, conf->volume, "/state", NULL);
    const char *path = apr_pstrcat(p, state, "/" SECRET_NAME, NULL);
    publish_file pf = PUBLISH_FILE_INIT;
    unsigned char fresh[SECRET_LEN];
    int rv, n = 0;

    if ((rv = read_secret(path, key)) != -ENOENT)
        return rv;
    if (RAND_bytes(fresh, sizeof(fresh)) != 1)
        return -EIO;
    if ((rv = publish_open(&pf, state, state, ".secret-", O_WRONLY, 0600)))
        return rv;
    while (n < SECRET_LEN) {
        ssize_t k = write(pf.fd, fresh + n, SECRET_LEN - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            rv = -errno;
            break;
        }
        n += k;
    }
    if (!rv && fsync(pf.fd) != 0)
        rv = -errno;
    if (!rv)
        rv = publish_commit(&pf, path, PUBLISH_CREATE);
    publish_discard(&pf);
    OPENSSL_cleanse(fresh, sizeof(fresh));
    if (rv && rv != -EEXIST)
        return rv;
    /* Ours, or the one another process published first. */
    if ((rv = publish_fsync_dir(state)))
        return rv;
    return read_secret(path, key);
}

/* ------------------------------------------------------------ the token */

static const char *token_for(request_rec *r, const unsigned char *key,
                             const char *relpath, apr_int64_t window)
{
    const char *user = r->user ? r->user : "";
    const char *w = apr_psprintf(r->pool, "%" APR_INT64_T_FMT, window);
    apr_size_t lu = strlen(user), lp = strlen(relpath), lw = strlen(w);
    /* user NUL path NUL window: no two inputs give the same message. */
    char *msg = apr_palloc(r->pool, lu + lp + lw + 2);
    apr_size_t len = lu + lp + lw + 2;

    memcpy(msg, user, lu + 1);
    memcpy(msg + lu + 1, relpath, lp + 1);
    memcpy(msg + lu + lp + 2, w, lw);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0, i;
    char *hex;

    if (!HMAC(EVP_sha256(), key, SECRET_LEN, (const unsigned char *)msg, len,
              mac, &maclen))
        return NULL;
    hex = apr_palloc(r->pool, 2 * maclen + 1);
    for (i = 0; i < maclen; i++)
        apr_snprintf(hex + 2 * i, 3, "%02x", mac[i]);
    return hex;
}

const char *browser_token(request_rec *r, const mirrordav_conf *live,
                          const char *relpath)
{
    unsigned char key[SECRET_LEN];
    const char *t;
    int rv;

    if ((rv = volume_secret(r->pool, live, key)) != 0) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(-rv), r,
                      "no restore forms: the volume's secret in %s/state: %s",
                      live->volume, strerror(-rv));
        return NULL;
    }
    t = token_for(r, key, relpath, apr_time_sec(apr_time_now()) / WINDOW_SECS);
    OPENSSL_cleanse(key, sizeof(key));
    return t;
}

/* TOKEN was handed out for this user and path within the last one to two
 * hours. */
static int token_valid(request_rec *r, const mirrordav_conf *conf,
                       const char *relpath, const char *token)
{
    unsigned char key[SECRET_LEN];
    apr_int64_t now = apr_time_sec(apr_time_now()) / WINDOW_SECS, w;
    int ok = 0;

    if (strlen(token) != 64 || volume_secret(r->pool, conf, key) != 0)
        return 0;
    for (w = now; w >= now - 1; w--) {
        const char *t = token_for(r, key, relpath, w);
        if (t && CRYPTO_memcmp(t, token, 64) == 0)
            ok = 1;
    }
    OPENSSL_cleanse(key, sizeof(key));
    return ok;
}

/* ------------------------------------------------------------ authorisation
 */

int browser_may_write(request_rec *r, const char *uri)
{
    request_rec *rr = ap_sub_req_method_uri("PUT", uri, r, NULL);
    int ok = rr->status == HTTP_OK, rc;

    /* httpd skips the access checks of a sub-request whose configuration
     * is the main request's (same <Location>): they passed for the main
     * request's method, which says nothing about PUT.  Run them for PUT
     * here, as ap_process_request_internal would (the user is the main
     * request's). */
    if (ok && rr->per_dir_config == r->per_dir_config) {
        rc = ap_run_access_checker(rr);
        if (rc != OK && rc != DECLINED)
            ok = 0;
        else if ((rc = ap_run_access_checker_ex(rr)) == DECLINED)
            ok = (rc = ap_run_auth_checker(rr)) == OK || rc == DECLINED;
        else
            ok = rc == OK;
    }
    ap_destroy_sub_req(rr);
    return ok;
}

int browser_may_read(request_rec *r, const char *uri)
{
    /* A GET from another <Location> runs that location's access checks
     * (httpd skips them only for the main request's own configuration,
     * whose GET has passed). */
    request_rec *rr = ap_sub_req_lookup_uri(uri, r, NULL);
    int ok = rr->status == HTTP_OK;

    ap_destroy_sub_req(rr);
    return ok;
}

int mirrordav_may_write_destination(request_rec *r)
{
    const char *dest = apr_table_get(r->headers_in, "Destination");
    apr_uri_t uri;

    /* A malformed one is mod_dav's to refuse. */
    if (!dest || apr_uri_parse(r->pool, dest, &uri) != APR_SUCCESS ||
        !uri.path)
        return 1;
    return browser_may_write(r, uri.path);
}

/* ------------------------------------------------------------ the POST */

static int refuse(request_rec *r, int status, const char *msg)
{
    /* A message that starts with a capitalised word and a space is never
     * taken for a redirect (see mod_mirrordav.c). */
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, "restore refused: %s", msg);
    ap_custom_response(r, status, apr_pstrcat(r->pool, msg, "\n", NULL));
    return status;
}

static int is_form(request_rec *r)
{
    const char *ct = apr_table_get(r->headers_in, "Content-Type");
    static const char form[] = "application/x-www-form-urlencoded";
    apr_size_t n = sizeof(form) - 1;

    return ct && strncasecmp(ct, form, n) == 0 &&
           (!ct[n] || ct[n] == ';' || ct[n] == ' ');
}

/* The body, at most FORM_MAX bytes; NULL if longer or unreadable. */
static char *read_form(request_rec *r, int *status)
{
    char *buf = apr_palloc(r->pool, FORM_MAX + 1);
    apr_size_t n = 0;
    long k;

    if ((*status = ap_setup_client_block(r, REQUEST_CHUNKED_DECHUNK)) != OK)
        return NULL;
    if (ap_should_client_block(r))
        while ((k = ap_get_client_block(r, buf + n, FORM_MAX + 1 - n)) > 0) {
            n += k;
            if (n > FORM_MAX) {
                *status = HTTP_REQUEST_ENTITY_TOO_LARGE;
                return NULL;
            }
        }
    else
        k = 0;
    if (k < 0) {
        *status = HTTP_BAD_REQUEST;
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

/* The value of field NAME in the urlencoded FORM, or NULL.  *BAD is set
 * for a malformed escape, and for a field given twice: which one counts
 * would be this parser's guess, and a proxy or firewall in front may have
 * guessed the other. */
static const char *form_field(apr_pool_t *p, const char *form,
                              const char *name, int *bad)
{
    char *copy = apr_pstrdup(p, form), *item, *state, *v = NULL;
    apr_size_t n = strlen(name);

    for (item = apr_strtok(copy, "&", &state); item;
         item = apr_strtok(NULL, "&", &state)) {
        if (strncmp(item, name, n) == 0 && item[n] == '=') {
            char *c;
            if (v)
                *bad = 1;
            v = item + n + 1;
            for (c = v; *c; c++)
                if (*c == '+')
                    *c = ' ';
            if (ap_unescape_url(v) != OK) /* bad escape, %00, %2F */
                *bad = 1;
        }
    }
    return v;
}

/* scheme://host[:port] as the browser addressed this server. */
static const char *own_origin(request_rec *r)
{
    char *url = ap_construct_url(r->pool, "/", r);

    url[strlen(url) - 1] = '\0';
    return url;
}

static int same_origin(request_rec *r)
{
    const char *own = own_origin(r);
    const char *origin = apr_table_get(r->headers_in, "Origin");
    const char *referer = apr_table_get(r->headers_in, "Referer");
    apr_size_t n = strlen(own);

    if (origin)
        return strcasecmp(origin, own) == 0;
    return referer && strncasecmp(referer, own, n) == 0 &&
           (referer[n] == '/' || !referer[n]);
}

static apr_status_t discard(ap_filter_t *f, apr_bucket_brigade *bb)
{
    apr_brigade_cleanup(bb);
    return APR_SUCCESS;
}

/* COPY SRC_URI to DEST_URI, Overwrite: T, as a client's COPY would be
 * handled; the status it got. */
static int copy_subrequest(request_rec *r, const char *src_uri,
                           const char *dest_uri)
{
    request_rec *rr;
    int rc;

    /* A sub-request takes its headers from the main request: they are
     * set there for the length of the lookup.  The main request's body
     * headers are not copied.  (The sub-request's fixups leave the write
     * barrier to the main request: restore_handler takes it.) */
    apr_table_setn(r->headers_in, "Destination",
                   ap_construct_url(r->pool, dest_uri, r));
    apr_table_setn(r->headers_in, "Overwrite", "T");
    apr_table_unset(r->headers_in, "Depth");
    rr = ap_sub_req_method_uri("COPY", src_uri, r, NULL);
    apr_table_unset(r->headers_in, "Destination");
    apr_table_unset(r->headers_in, "Overwrite");
    if (rr->status != HTTP_OK) {
        rc = rr->status;
        ap_destroy_sub_req(rr);
        return rc;
    }
    /* mod_dav's answer to the COPY (a 201 page, an error body) is not for
     * the browser: this request answers with its own page. */
    rr->output_filters = rr->proto_output_filters = NULL;
    ap_add_output_filter_handle(discard_filter, NULL, rr, r->connection);
    rc = ap_run_sub_req(rr);
    if (rc == OK)
        rc = rr->status;
    ap_destroy_sub_req(rr);
    return rc;
}

static int restore_handler(request_rec *r)
{
    const mirrordav_conf *conf, *snapc;
    const char *form, *action, *snapshot, *token, *relpath, *src;
    int status = OK, bad = 0;
    apr_bucket_brigade *bb;
    struct stat st;

    if (r->method_number != M_POST ||
        !ap_get_module_config(r->request_config, &mirrordav_module) ||
        !is_form(r))
        return DECLINED;
    conf = mirrordav_get_conf(r);
    if (!conf || conf->snapshots == 1 || !conf->volume)
        return DECLINED;
    if (!(form = read_form(r, &status)))
        return refuse(r, status == OK ? HTTP_BAD_REQUEST : status,
                      "Malformed restore form: the body could not be read "
                      "or is over 8 KiB.");
    action = form_field(r->pool, form, "action", &bad);
    snapshot = form_field(r->pool, form, "snapshot", &bad);
    token = form_field(r->pool, form, "token", &bad);
    if (bad || !action)
        return refuse(r, HTTP_BAD_REQUEST,
                      "Malformed restore form: no action, a bad escape, "
                      "or a field given twice.");
    if (strcmp(action, "restore") != 0)
        return refuse(r, HTTP_BAD_REQUEST,
                      "Unknown form action: only restore is known.");
    if (!same_origin(r))
        return refuse(r, HTTP_FORBIDDEN,
                      "Forbidden restore: the form does not come from this "
                      "site (Origin or Referer).");
    if (mirrordav_uri_to_relpath(r->pool, conf->root_uri, r->uri, &relpath) !=
            MIRRORDAV_PATH_OK ||
        !*relpath)
        return refuse(r, HTTP_BAD_REQUEST,
                      "Bad restore target: not a file of the live tree.");
    if (!token || !token_valid(r, conf, relpath, token))
        return refuse(r, HTTP_FORBIDDEN,
                      "Forbidden restore: the form's token is missing, "
                      "expired, or not for this user and file.");
    if (!browser_may_write(r, browser_url(r->pool, r->uri)))
        return refuse(r, HTTP_FORBIDDEN,
                      "Forbidden restore: you may not write this file.");
    if (!snapshot || !snapshot_name_valid(snapshot))
        return refuse(r, HTTP_BAD_REQUEST,
                      "Bad snapshot name: 1 to 128 of A-Z a-z 0-9 . _ -.");
    snapc = browser_location(conf->volume, 1);
    if (!snapc || !mirrordav_snapshot_listed(r->pool, conf, snapshot))
        return refuse(r, HTTP_NOT_FOUND, "No such snapshot.");
    if (mirrordav_check_ancestors(r->pool, snapc->live,
                                  apr_pstrcat(r->pool, snapshot, "/", relpath,
                                              NULL)) != MIRRORDAV_PATH_OK ||
        lstat(apr_pstrcat(r->pool, snapc->live, "/", snapshot, "/", relpath,
                          NULL),
              &st) != 0 ||
        !S_ISREG(st.st_mode))
        return refuse(r, HTTP_NOT_FOUND,
                      "The snapshot holds no file at this path.");

    /* A restore brings back a file: over a folder, the COPY (Overwrite:
     * T) would first delete the folder and all it holds, which no restore
     * button may do (a client's own COPY still can).  The versions page
     * offers no form then either. */
    if (lstat(apr_pstrcat(r->pool, conf->live, "/", relpath, NULL), &st) ==
            0 &&
        S_ISDIR(st.st_mode))
        return refuse(r, HTTP_CONFLICT,
                      "Folder in the way: the live path is a folder now; "
                      "nothing was restored.");
    /* The write barrier, as a client's COPY into the live tree takes it
     * in its fixups (snapshot_space.c), which leave sub-requests to their
     * main request: taken here, before the COPY's first change, and held
     * until this request's pool goes, after the reply; a snapshot either
     * began before (the COPY waits for it) or holds the restore whole. */
    if (mirrordav_write_barrier(r, conf) != NULL)
        return refuse(r, HTTP_INTERNAL_SERVER_ERROR,
                      "Restore failed: could not take the volume's write "
                      "barrier; nothing was restored.");
    /* A URL: the Location's prefix is as configured (decoded), so it is
     * encoded like the path. */
    src = apr_pstrcat(r->pool, browser_url(r->pool, snapc->root_uri), "/",
                      snapshot, "/", browser_url(r->pool, relpath), NULL);
    status = copy_subrequest(r, src, browser_url(r->pool, r->uri));
    if (status != HTTP_CREATED && status != HTTP_NO_CONTENT) {
        ap_log_rerror(APLOG_MARK, APLOG_NOTICE, 0, r,
                      "restore of %s from %s: the COPY got %d", relpath,
                      snapshot, status);
        if (status == HTTP_LOCKED)
            return refuse(r, status,
                          "Locked file: the live file is locked; nothing "
                          "was restored.");
        return refuse(r, status >= 400 ? status : HTTP_INTERNAL_SERVER_ERROR,
                      "Restore failed: the copy from the snapshot was "
                      "refused; nothing was restored.");
    }

    /* The page: the same headers as every other page. */
    {
        const char *liveurl = browser_url(r->pool, r->uri);
        browser_headers(r);
        bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
        browser_begin(bb, r, conf->root_uri, r->uri, "Restored", "Restored");
        apr_brigade_printf(
            bb, NULL, NULL,
            "<p class=\"restored\">Restored %s from snapshot %s</p>\n"
            "<p><a class=\"restored-file\" href=\"%s\">%s</a> &middot; "
            "<a href=\"%s?versions\">versions</a></p>\n",
            browser_text(r->pool, relpath), browser_text(r->pool, snapshot),
            liveurl, browser_text(r->pool, r->uri), liveurl);
        browser_end(bb);
        browser_finish(r->output_filters, bb);
    }
    return OK;
}

void mirrordav_register_browser_hooks(apr_pool_t *p)
{
    /* Before mod_dav's handler, which leaves POST to the server. */
    ap_hook_handler(restore_handler, NULL, NULL, APR_HOOK_FIRST);
    discard_filter = ap_register_output_filter("MIRRORDAV_DISCARD", discard,
                                               NULL, AP_FTYPE_RESOURCE);
}
