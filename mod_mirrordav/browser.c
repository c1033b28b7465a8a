/*
 * HTML listing for GET of a collection: a table of the members with size
 * and modification time, links to go down and to download.  Streamed a
 * row at a time; names are escaped for both the URL and the HTML.
 */
#include "apr_strings.h"
#include "http_protocol.h"
#include "util_filter.h"
#include "mirrordav.h"

dav_error *mirrordav_deliver_listing(const dav_resource *resource,
                                     ap_filter_t *output)
{
    apr_pool_t *p = resource->pool;
    apr_bucket_brigade *bb = apr_brigade_create(p, output->c->bucket_alloc);
    const char *base = resource->uri;
    const char *title = ap_escape_html(p, *base ? base : "/");
    apr_array_header_t *entries;
    apr_pool_t *row;
    dav_error *err;
    int i;

    if ((err = mirrordav_read_dir(p, resource->info->path, 1, &entries)))
        return err;
    if (base[strlen(base) - 1] == '/')
        base = apr_pstrndup(p, base, strlen(base) - 1);

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
    for (i = 0; i < entries->nelts; i++) {
        const mirrordav_dirent *de =
            &APR_ARRAY_IDX(entries, i, mirrordav_dirent);
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
                           dir ? "" : apr_off_t_toa(row, de->finfo.size),
                           date);
        if (i % 64 == 63) {
            /* Hand rows on as we go instead of building the page. */
            if (ap_fflush(output, bb) != APR_SUCCESS)
                break;
        }
        apr_pool_clear(row);
    }
    apr_pool_destroy(row);
    apr_brigade_puts(bb, NULL, NULL, "</table>\n</body></html>\n");
    APR_BRIGADE_INSERT_TAIL(bb,
                            apr_bucket_eos_create(output->c->bucket_alloc));
    ap_pass_brigade(output, bb);
    return NULL;
}
