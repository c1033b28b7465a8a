/*
 * FILE?versions (docs/BROWSER.md): the live file and every snapshot that
 * holds its path, newest first, grouped by SHA-1, each downloadable, with
 * a restore form per version for a user who may write the live path.
 *
 * The SHA-1 of each version is the one its snapshot's sidecar recorded
 * for those very bytes (mirrordav_hash_servable), or "unknown": no data
 * is read, let alone hashed, while the page is made.  The versions are
 * held for the grouping: a few fields per snapshot.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "apr_strings.h"
#include "http_protocol.h"
#include "util_filter.h"
#include "browser.h"
#include "sidecar/sidecar.h"
#include "snapshot/record.h"

typedef struct {
    const char *snapshot;
    apr_int64_t created;
    apr_off_t size;
    apr_time_t mtime;
    const char *sha1; /* "" unknown */
    int shown;
} version;

static int cmp_version(const void *a, const void *b)
{
    const version *x = a, *y = b;

    if (x->created != y->created)
        return x->created > y->created ? -1 : 1;
    return -strcmp(x->snapshot, y->snapshot);
}

/* The SHA-1 RESOURCE's sidecar holds for the bytes lstat gave as ST, or
 * "" if it holds none for them. */
static const char *known_sha1(apr_pool_t *p, const dav_resource *resource,
                              const struct stat *st)
{
    const char *dir, *name;
    sidecar_record rec;
    sidecar *sc;
    const char *sha1 = "";

    mirrordav_sidecar_entry(resource, &dir, &name);
    if (sidecar_open(dir, name, 0, &sc) != 0)
        return "";
    if (sidecar_get_record(sc, &rec) == 0 &&
        mirrordav_hash_servable(resource, &rec, st))
        sha1 = apr_pstrdup(p, rec.sha1);
    sidecar_close(sc);
    return sha1;
}

/* A regular file at RELPATH under CONF's tree, reached without a link. */
static dav_resource *file_at(apr_pool_t *p, request_rec *r,
                             const mirrordav_conf *conf, const char *relpath,
                             struct stat *st)
{
    dav_resource *res;

    if (mirrordav_check_ancestors(p, conf->live, relpath) != MIRRORDAV_PATH_OK)
        return NULL;
    res = mirrordav_new_resource(p, r, conf, relpath, "", NULL);
    if (!res->exists || res->collection || lstat(res->info->path, st) != 0 ||
        !S_ISREG(st->st_mode))
        return NULL;
    return res;
}

static void put_row(apr_bucket_brigade *bb, apr_pool_t *p,
                    const mirrordav_conf *snapc, const char *relpath,
                    const version *v, const char *action, const char *token)
{
    const char *snapurl =
        apr_pstrcat(p, snapc->root_uri, "/", v->snapshot, "/", NULL);

    apr_brigade_printf(
        bb, NULL, NULL,
        "<tr class=\"version\" data-snapshot=\"%s\"><td class=\"snapshot\">"
        "<a href=\"%s\">%s</a></td><td class=\"size\" "
        "data-bytes=\"%" APR_OFF_T_FMT "\" title=\"%" APR_OFF_T_FMT
        " bytes\">%s</td>"
        "<td class=\"mtime\">%s</td><td class=\"sha1\">%s%s%s</td>"
        "<td class=\"actions\"><a class=\"download\" href=\"%s\" "
        "download>download</a>",
        browser_text(p, v->snapshot), browser_url(p, snapurl),
        browser_text(p, v->snapshot), v->size, v->size,
        browser_size(p, v->size), browser_time(p, v->mtime),
        *v->sha1 ? "<code>" : "", *v->sha1 ? v->sha1 : "unknown",
        *v->sha1 ? "</code>" : "",
        browser_url(p, apr_pstrcat(p, snapurl, relpath, NULL)));
    if (action)
        apr_brigade_printf(
            bb, NULL, NULL,
            " <form class=\"restore\" method=\"post\" action=\"%s\">"
            "<input type=\"hidden\" name=\"action\" value=\"restore\">"
            "<input type=\"hidden\" name=\"snapshot\" value=\"%s\">"
            "<input type=\"hidden\" name=\"token\" value=\"%s\">"
            "<button type=\"submit\">Restore</button></form>",
            action, browser_text(p, v->snapshot), browser_text(p, token));
    apr_brigade_puts(bb, NULL, NULL, "</td></tr>\n");
}

dav_error *browser_versions(const dav_resource *resource, ap_filter_t *output)
{
    request_rec *r = resource->info->r;
    const mirrordav_conf *conf = resource->info->conf;
    const mirrordav_conf *livec, *snapc;
    apr_pool_t *p = resource->pool, *row;
    apr_bucket_brigade *bb = apr_brigade_create(p, output->c->bucket_alloc);
    apr_array_header_t *vs = apr_array_make(p, 16, sizeof(version));
    const char *relpath = resource->info->relpath, *liveuri, *action = NULL;
    const char *token = NULL, *hidden = NULL;
    dav_resource *live = NULL;
    struct stat st;
    int i, j, folder = 0;

    if (conf->snapshots == 1) {
        /* A file in a snapshot: the path it has in the live tree. */
        const char *slash = strchr(relpath, '/');
        relpath = slash ? slash + 1 : "";
        snapc = conf;
        livec = browser_location(conf->volume, 0);
    }
    else {
        livec = conf;
        snapc = browser_location(conf->volume, 1);
    }
    liveuri = apr_pstrcat(p, livec ? livec->root_uri : "", "/", relpath, NULL);
    /* What the page shows of the other location (the snapshots, seen from
     * the live tree; the live file, seen from a snapshot) is that
     * location's content: only for a user who may read it there. */
    if (conf->snapshots == 1 && livec &&
        !browser_may_read(
            r, browser_url(p, apr_pstrcat(p, livec->root_uri, "/", NULL)))) {
        livec = NULL;
        hidden = "the live tree";
    }
    else if (conf->snapshots != 1 && snapc &&
             !browser_may_read(
                 r,
                 browser_url(p, apr_pstrcat(p, snapc->root_uri, "/", NULL)))) {
        snapc = NULL;
        hidden = "the snapshots";
    }
    apr_pool_create(&row, p);

    if (snapc) {
        mirrordav_dir *d;
        dav_error *err;
        int done = 0;

        if ((err = mirrordav_dir_open(p, snapc->live, &d)))
            return err;
        while (!done) {
            mirrordav_dirent de;
            dav_resource *res;
            version *v;
            char buf[32];

            if ((err = mirrordav_dir_next(row, d, &de, &done)) || done)
                break;
            if (de.finfo.filetype != APR_DIR ||
                !mirrordav_snapshot_listed(row, snapc, de.name) ||
                !(res = file_at(row, r, snapc,
                                apr_pstrcat(row, de.name, "/", relpath, NULL),
                                &st))) {
                apr_pool_clear(row);
                continue;
            }
            v = apr_array_push(vs);
            v->snapshot = apr_pstrdup(p, de.name);
            v->created = snaprec_get(snapc->volume, de.name, "created", buf,
                                     sizeof(buf)) == 0
                             ? apr_atoi64(buf)
                             : -1;
            v->size = st.st_size;
            v->mtime = apr_time_from_sec(st.st_mtime);
            v->sha1 = known_sha1(p, res, &st);
            v->shown = 0;
            apr_pool_clear(row);
        }
        mirrordav_dir_close(p, d);
        if (err)
            return err;
        qsort(vs->elts, vs->nelts, sizeof(version), cmp_version);
    }
    if (livec && *relpath) {
        live = file_at(p, r, livec, relpath, &st);
        /* A folder now: restoring a file over it would delete the folder
         * (browser_restore.c refuses it), so no form. */
        folder =
            !live &&
            mirrordav_check_ancestors(p, livec->live, relpath) ==
                MIRRORDAV_PATH_OK &&
            lstat(apr_pstrcat(p, livec->live, "/", relpath, NULL), &st) == 0 &&
            S_ISDIR(st.st_mode);
        if (vs->nelts && !folder &&
            browser_may_write(r, browser_url(p, liveuri))) {
            action = browser_url(p, liveuri);
            token = browser_token(r, livec, relpath);
            if (!token)
                action = NULL;
        }
    }

    browser_begin(bb, r, conf->root_uri, resource->uri,
                  apr_pstrcat(p, "Versions of ", liveuri, NULL), liveuri);
    apr_brigade_puts(bb, NULL, NULL,
                     "<section class=\"current\"><h2>Now</h2>\n");
    if (live) {
        const char *sha1 = known_sha1(p, live, &st);
        apr_brigade_printf(bb, NULL, NULL,
                           "<p><a href=\"%s\">%s</a>: <span class=\"size\" "
                           "data-bytes=\"%" APR_OFF_T_FMT
                           "\" title=\"%" APR_OFF_T_FMT " bytes\">%s</span>, "
                           "modified <span class=\"mtime\">%s</span>, SHA-1 "
                           "<span class=\"sha1\">%s%s%s</span></p>\n",
                           browser_url(p, liveuri), browser_text(p, liveuri),
                           (apr_off_t)st.st_size, (apr_off_t)st.st_size,
                           browser_size(p, st.st_size),
                           browser_time(p, apr_time_from_sec(st.st_mtime)),
                           *sha1 ? "<code>" : "", *sha1 ? sha1 : "unknown",
                           *sha1 ? "</code>" : "");
    }
    else if (hidden && !livec)
        apr_brigade_printf(bb, NULL, NULL,
                           "<p class=\"hidden\">You may not read %s.</p>\n",
                           hidden);
    else if (folder)
        apr_brigade_printf(bb, NULL, NULL,
                           "<p class=\"folder\">%s is a folder now: a file "
                           "cannot be restored over it.</p>\n",
                           browser_text(p, liveuri));
    else
        apr_brigade_printf(bb, NULL, NULL,
                           "<p class=\"absent\">%s does not exist now.</p>\n",
                           browser_text(p, liveuri));
    apr_brigade_puts(bb, NULL, NULL, "</section>\n");
    if (hidden && !snapc)
        apr_brigade_printf(bb, NULL, NULL,
                           "<p class=\"hidden\">You may not read %s.</p>\n",
                           hidden);
    else if (!vs->nelts)
        apr_brigade_puts(
            bb, NULL, NULL,
            "<p class=\"none\">No snapshot holds this path.</p>\n");

    /* Groups in the order of their newest member (the versions are
     * newest first); an unknown SHA-1 is a group of its own. */
    for (i = 0; i < vs->nelts; i++) {
        version *g = &APR_ARRAY_IDX(vs, i, version);
        if (g->shown)
            continue;
        apr_brigade_printf(
            bb, NULL, NULL,
            "<section class=\"version-group\" data-sha1=\"%s\">"
            "<h2>%s%s%s</h2>\n<table class=\"versions\"><thead><tr>"
            "<th class=\"snapshot\">Snapshot</th><th class=\"size\">Size</th>"
            "<th class=\"mtime\">Modified</th><th class=\"sha1\">SHA-1</th>"
            "<th class=\"actions\"><span>Actions</span></th></tr></thead>"
            "<tbody>\n",
            g->sha1, *g->sha1 ? "SHA-1 <code>" : "Unknown SHA-1", g->sha1,
            *g->sha1 ? "</code>" : "");
        for (j = i; j < vs->nelts; j++) {
            version *v = &APR_ARRAY_IDX(vs, j, version);
            if (v->shown ||
                (j != i && (!*g->sha1 || strcmp(v->sha1, g->sha1))))
                continue;
            v->shown = 1;
            put_row(bb, row, snapc, relpath, v, action, token);
            apr_pool_clear(row);
        }
        apr_brigade_puts(bb, NULL, NULL, "</tbody></table></section>\n");
    }
    apr_pool_destroy(row);
    browser_end(bb);
    browser_finish(output, bb);
    return NULL;
}
