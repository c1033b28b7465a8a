/*
 * The bare listing of a collection, for every client that does not ask
 * for HTML first (browser.c): byte for byte what GET of a collection
 * always answered, which scripts and WebDAV clients may rely on.  A table
 * of the members with size and modification time.  Streamed a
 * row at a time from the directory as it is read, so that a page of any
 * length holds one row in memory; names are escaped for both the URL and
 * the HTML.  A collection of up to SORT_MAX members is listed in byte
 * order of the names; a larger one in directory order, since sorting it
 * would mean holding it whole.
 */
#include <stdlib.h>
#include <string.h>

#include "apr_strings.h"
#include "http_protocol.h"
#include "util_filter.h"
#include "browser.h"

#define SORT_MAX 1024

static int cmp_dirent(const void *a, const void *b)
{
    return strcmp(((const mirrordav_dirent *)a)->name,
                  ((const mirrordav_dirent *)b)->name);
}

static void put_row(apr_bucket_brigade *bb, apr_pool_t *row, const char *base,
                    const mirrordav_dirent *de)
{
    int dir = de->finfo.filetype == APR_DIR;
    char date[APR_RFC822_DATE_LEN];
    const char *href = ap_escape_html(
        row, ap_escape_uri(row, apr_pstrcat(row, base, "/", de->name,
                                            dir ? "/" : "", NULL)));

    apr_rfc822_date(date, de->finfo.mtime);
    apr_brigade_printf(bb, NULL, NULL,
                       "<tr><td><a href=\"%s\">%s%s</a></td>"
                       "<td>%s</td><td>%s</td></tr>\n",
                       href, ap_escape_html(row, de->name), dir ? "/" : "",
                       dir ? "" : apr_off_t_toa(row, de->finfo.size), date);
}

dav_error *browser_plain(const dav_resource *resource, ap_filter_t *output)
{
    apr_pool_t *p = resource->pool;
    apr_bucket_brigade *bb = apr_brigade_create(p, output->c->bucket_alloc);
    const char *base = resource->uri;
    const char *title = ap_escape_html(p, *base ? base : "/");
    apr_array_header_t *first;
    apr_pool_t *firstp, *row;
    mirrordav_dir *d;
    dav_error *err;
    int i, done = 0, gone = 0, n = 0;

    if ((err = mirrordav_dir_open(p, resource->info->path, &d)))
        return err;
    if (base[strlen(base) - 1] == '/')
        base = apr_pstrndup(p, base, strlen(base) - 1);

    /* The first SORT_MAX entries, sorted if they are all there is.  An
     * error before anything is sent still gets its own status. */
    apr_pool_create(&firstp, p);
    first = apr_array_make(firstp, 64, sizeof(mirrordav_dirent));
    while (first->nelts < SORT_MAX) {
        mirrordav_dirent de;
        if ((err = mirrordav_dir_next(firstp, d, &de, &done)) != NULL) {
            mirrordav_dir_close(p, d);
            return err;
        }
        if (done)
            break;
        *(mirrordav_dirent *)apr_array_push(first) = de;
    }
    if (done)
        qsort(first->elts, first->nelts, sizeof(mirrordav_dirent), cmp_dirent);

    apr_brigade_printf(
        bb, NULL, NULL,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        "<title>Index of %s</title></head><body>\n"
        "<h1>Index of %s</h1>\n<table>\n"
        "<tr><th>Name</th><th>Size</th><th>Modified</th></tr>\n",
        title, title);
    if (*resource->info->relpath)
        apr_brigade_puts(bb, NULL, NULL,
                         "<tr><td><a href=\"../\">../</a></td><td></td>"
                         "<td></td></tr>\n");
    apr_pool_create(&row, p);
    for (i = 0; i < first->nelts && !gone; i++) {
        put_row(bb, row, base, &APR_ARRAY_IDX(first, i, mirrordav_dirent));
        /* Hand rows on as we go instead of building the page. */
        if (++n % 64 == 0 && ap_fflush(output, bb) != APR_SUCCESS)
            gone = 1;
        apr_pool_clear(row);
    }
    apr_pool_destroy(firstp);
    while (!done && !gone) {
        mirrordav_dirent de;

        if ((err = mirrordav_dir_next(row, d, &de, &done)) != NULL) {
            /* The status has been sent: end the page short and say why
             * in the log. */
            ap_log_rerror(APLOG_MARK, APLOG_ERR, err->aprerr,
                          resource->info->r, "listing of %s cut short: %s",
                          resource->uri, err->desc);
            break;
        }
        if (done)
            break;
        put_row(bb, row, base, &de);
        if (++n % 64 == 0 && ap_fflush(output, bb) != APR_SUCCESS)
            gone = 1;
        apr_pool_clear(row);
    }
    apr_pool_destroy(row);
    mirrordav_dir_close(p, d);
    apr_brigade_puts(bb, NULL, NULL, "</table>\n</body></html>\n");
    APR_BRIGADE_INSERT_TAIL(bb,
                            apr_bucket_eos_create(output->c->bucket_alloc));
    ap_pass_brigade(output, bb);
    return NULL;
}
