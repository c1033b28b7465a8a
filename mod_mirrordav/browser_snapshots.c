/*
 * /snapshots/ for a browser (docs/BROWSER.md): every complete snapshot,
 * newest first, with its creation time, file count, size and the
 * verifier's result, all from its record (snapshot/record.h); and
 * /snapshots/NAME/?report, the discrepancies of the snapshot's last
 * verification, streamed from the report the verifier leaves in
 * VOLUME/state/verify/NAME/report (admin/cmd_verify.c).
 *
 * The snapshot list is held for sorting: a name and a few numbers per
 * snapshot.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apr_strings.h"
#include "http_protocol.h"
#include "util_filter.h"
#include "browser.h"
#include "manifest/manifest.h"
#include "snapshot/record.h"

#define FLUSH_ROWS 256

typedef struct {
    const char *name;
    apr_int64_t created; /* Unix seconds; -1 unknown */
    const char *files, *bytes, *status, *count;
} snap;

static const char *rec(apr_pool_t *p, const char *volume, const char *name,
                       const char *key)
{
    char buf[64];

    return snaprec_get(volume, name, key, buf, sizeof(buf)) == 0
               ? apr_pstrdup(p, buf)
               : NULL;
}

static int cmp_snap(const void *a, const void *b)
{
    const snap *x = a, *y = b;

    if (x->created != y->created)
        return x->created > y->created ? -1 : 1;
    return -strcmp(x->name, y->name);
}

static int is_number(const char *s)
{
    if (!s || !*s)
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

static void put_status(apr_bucket_brigade *bb, apr_pool_t *p, const char *root,
                       const snap *s)
{
    const char *st = s->status ? s->status : "";

    if (!strcmp(st, "clean"))
        apr_brigade_puts(bb, NULL, NULL,
                         "<td class=\"status\" data-status=\"clean\">"
                         "verified clean</td>");
    else if (!strcmp(st, "discrepancies") || !strcmp(st, "corrupt")) {
        /* A corrupt manifest is one discrepancy of its own kind. */
        apr_int64_t n = is_number(s->count) ? apr_atoi64(s->count) : 0;
        if (n < 1)
            n = 1;
        apr_brigade_printf(
            bb, NULL, NULL,
            "<td class=\"status\" data-status=\"discrepancies\"><a "
            "href=\"%s%s/?report\">%" APR_INT64_T_FMT " discrepanc%s</a></td>",
            browser_url(p, root), browser_url(p, s->name), n,
            n == 1 ? "y" : "ies");
    }
    else /* never verified, or the verifier could not finish */
        apr_brigade_puts(bb, NULL, NULL,
                         "<td class=\"status\" data-status=\"not-verified\">"
                         "not verified</td>");
}

dav_error *browser_snapshots(const dav_resource *resource, ap_filter_t *output)
{
    request_rec *r = resource->info->r;
    const mirrordav_conf *conf = resource->info->conf;
    apr_pool_t *p = resource->pool, *row;
    apr_bucket_brigade *bb = apr_brigade_create(p, output->c->bucket_alloc);
    apr_array_header_t *list = apr_array_make(p, 16, sizeof(snap));
    const char *root = apr_pstrcat(p, conf->root_uri, "/", NULL);
    mirrordav_dir *d;
    dav_error *err;
    int done = 0, i;

    if ((err = mirrordav_dir_open(p, resource->info->path, &d)))
        return err;
    apr_pool_create(&row, p);
    while (!done) {
        mirrordav_dirent de;
        snap *s;
        const char *c;

        if ((err = mirrordav_dir_next(row, d, &de, &done)) != NULL) {
            mirrordav_dir_close(p, d);
            return err;
        }
        if (done)
            break;
        /* Only complete snapshots have a record (the engine writes it
         * once the snapshot has its name). */
        if (de.finfo.filetype == APR_DIR &&
            mirrordav_snapshot_listed(row, conf, de.name)) {
            s = apr_array_push(list);
            s->name = apr_pstrdup(p, de.name);
            c = rec(row, conf->volume, de.name, "created");
            s->created = is_number(c) ? apr_atoi64(c) : -1;
            s->files = rec(p, conf->volume, de.name, "files");
            s->bytes = rec(p, conf->volume, de.name, "bytes");
            s->status = rec(p, conf->volume, de.name, "verify_status");
            s->count = rec(p, conf->volume, de.name, "verify_discrepancies");
        }
        apr_pool_clear(row);
    }
    mirrordav_dir_close(p, d);
    qsort(list->elts, list->nelts, sizeof(snap), cmp_snap);

    browser_begin(bb, r, conf->root_uri, root, "Snapshots", "Snapshots");
    apr_brigade_puts(bb, NULL, NULL,
                     "<table class=\"snapshots\">\n<thead><tr>"
                     "<th class=\"name\">Snapshot</th>"
                     "<th class=\"created\">Created</th>"
                     "<th class=\"files\">Files</th>"
                     "<th class=\"size\">Size</th>"
                     "<th class=\"status\">Verification</th>"
                     "</tr></thead>\n<tbody>\n");
    for (i = 0; i < list->nelts; i++) {
        const snap *s = &APR_ARRAY_IDX(list, i, snap);
        const char *url = browser_url(row, s->name);
        apr_off_t bytes = is_number(s->bytes) ? apr_atoi64(s->bytes) : -1;

        apr_brigade_printf(
            bb, NULL, NULL,
            "<tr class=\"snapshot\" data-name=\"%s\"><td class=\"name\">"
            "<a href=\"%s%s/\">%s</a></td><td class=\"created\">%s</td>"
            "<td class=\"files\">%s</td>",
            browser_text(row, s->name), browser_url(row, root), url,
            browser_text(row, s->name),
            s->created >= 0 ? browser_time(row, apr_time_from_sec(s->created))
                            : "unknown",
            is_number(s->files) ? s->files : "");
        if (bytes >= 0)
            apr_brigade_printf(
                bb, NULL, NULL,
                "<td class=\"size\" data-bytes=\"%" APR_OFF_T_FMT
                "\" title=\"%" APR_OFF_T_FMT " bytes\">%s</td>",
                bytes, bytes, browser_size(row, bytes));
        else
            apr_brigade_puts(bb, NULL, NULL, "<td class=\"size\"></td>");
        put_status(bb, row, root, s);
        apr_brigade_puts(bb, NULL, NULL, "</tr>\n");
        apr_pool_clear(row);
    }
    apr_pool_destroy(row);
    apr_brigade_puts(bb, NULL, NULL, "</tbody></table>\n");
    browser_end(bb);
    browser_finish(output, bb);
    return NULL;
}

static apr_status_t close_file(void *f)
{
    fclose(f);
    return APR_SUCCESS;
}

static const char *field(apr_pool_t *p, char *s)
{
    size_t n;

    if (manifest_unescape(s, strlen(s), &n) != 0)
        return "?";
    return browser_text(p, s);
}

dav_error *browser_report(const dav_resource *resource, ap_filter_t *output)
{
    request_rec *r = resource->info->r;
    const mirrordav_conf *conf = resource->info->conf;
    const char *name = resource->info->relpath;
    apr_pool_t *p = resource->pool, *row;
    apr_bucket_brigade *bb = apr_brigade_create(p, output->c->bucket_alloc);
    const char *status = rec(p, conf->volume, name, "verify_status");
    const char *when = rec(p, conf->volume, name, "verify_time");
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    FILE *f;
    int n = 0;

    /* A report left by a snapshot of the same name removed since is not
     * this one's: only a verified snapshot's is read. */
    f = !status ? NULL
                : fopen(apr_pstrcat(p, conf->volume, "/state/verify/", name,
                                    "/report", NULL),
                        "re");
    if (f) {
        /* Closed with the request at the latest, whatever happens. */
        apr_pool_cleanup_register(p, f, close_file, apr_pool_cleanup_null);
    }
    else if (status && errno != ENOENT)
        return mirrordav_errno_error(p, APR_FROM_OS_ERROR(errno),
                                     "Could not open the verification report");

    browser_begin(bb, r, conf->root_uri,
                  apr_pstrcat(p, conf->root_uri, "/", name, "/", NULL),
                  apr_pstrcat(p, "Verification of ", name, NULL),
                  apr_pstrcat(p, "Verification of snapshot ", name, NULL));
    if (!status)
        apr_brigade_puts(bb, NULL, NULL,
                         "<p class=\"summary\">This snapshot has not been "
                         "verified.</p>\n");
    else
        apr_brigade_printf(
            bb, NULL, NULL, "<p class=\"summary\">Last verified %s: %s.</p>\n",
            is_number(when)
                ? browser_time(p, apr_time_from_sec(apr_atoi64(when)))
                : "at an unknown time",
            browser_text(p, status));
    apr_brigade_puts(bb, NULL, NULL,
                     "<table class=\"report\">\n<thead><tr>"
                     "<th class=\"path\">Path</th><th class=\"kind\">Kind</th>"
                     "<th class=\"expected\">Expected</th>"
                     "<th class=\"actual\">Actual</th></tr></thead>\n"
                     "<tbody>\n");
    apr_pool_create(&row, p);
    /* A line at a time: PATH TAB KIND TAB EXPECTED TAB ACTUAL, each field
     * %-escaped as in manifests (no tab or newline inside one). */
    while (f && (len = getline(&line, &cap, f)) > 0) {
        char *v[4], *s = line, *t;
        int k;

        if (line[len - 1] == '\n')
            line[--len] = '\0';
        for (k = 0; k < 4; k++) {
            v[k] = s;
            t = strchr(s, '\t');
            if (t)
                *t = '\0';
            s = t ? t + 1 : s + strlen(s);
        }
        apr_brigade_printf(
            bb, NULL, NULL,
            "<tr class=\"discrepancy\"><td class=\"path\">%s</td>"
            "<td class=\"kind\">%s</td><td class=\"expected\">%s</td>"
            "<td class=\"actual\">%s</td></tr>\n",
            field(row, v[0]), field(row, v[1]), field(row, v[2]),
            field(row, v[3]));
        apr_pool_clear(row);
        if (++n % FLUSH_ROWS == 0 && ap_fflush(output, bb) != APR_SUCCESS)
            break;
    }
    free(line);
    apr_pool_destroy(row);
    apr_brigade_puts(bb, NULL, NULL, "</tbody></table>\n");
    browser_end(bb);
    browser_finish(output, bb);
    return NULL;
}
