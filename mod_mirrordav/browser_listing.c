/*
 * The page of a directory, live or in a snapshot (docs/BROWSER.md): a
 * table of name, size and modification time, sorted by any of them
 * through ?sort=name|size|mtime&order=asc|desc, folders before files.
 *
 * Sorting needs the whole directory, so it is read first, keeping for
 * each entry only its name (with a byte for folder or file) and its sort
 * key: about 20 bytes plus the name, in a pool that goes once the page is
 * out.  The rows are then written in the sorted order with a fresh lstat
 * each (the size and time shown are the entry's as the row is written;
 * an entry gone meanwhile has no row), and handed on every few hundred
 * rows, so the page itself is never held whole.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "apr_strings.h"
#include "http_protocol.h"
#include "util_filter.h"
#include "browser.h"

#define FLUSH_ROWS 256

typedef enum { BY_NAME, BY_SIZE, BY_MTIME } sort_key;

typedef struct {
    const char *name; /* name[0] is 'd' (folder) or 'f'; the name follows */
    apr_int64_t key;  /* size, or mtime in whole seconds (as shown) */
} entry;

typedef struct {
    entry *v;
    apr_size_t n, cap;
} entries;

static apr_status_t free_entries(void *data)
{
    free(((entries *)data)->v);
    return APR_SUCCESS;
}

static int cmp_entry(const void *a, const void *b, void *ctx)
{
    const entry *x = a, *y = b;
    int desc = ((int *)ctx)[1], by = ((int *)ctx)[0], c;

    if (x->name[0] != y->name[0])
        return x->name[0] == 'd' ? -1 : 1; /* folders first, either way */
    c = by == BY_NAME ? 0 : (x->key < y->key) ? -1 : (x->key > y->key) ? 1 : 0;
    if (by == BY_NAME)
        c = strcmp(x->name + 1, y->name + 1);
    if (desc)
        c = -c;
    /* Equal keys: by name, ascending, whatever the order. */
    return c ? c : strcmp(x->name + 1, y->name + 1);
}

static void put_header(apr_bucket_brigade *bb, sort_key by, int desc)
{
    static const char *const key[] = {"name", "size", "mtime"};
    static const char *const label[] = {"Name", "Size", "Modified"};
    int k;

    apr_brigade_puts(bb, NULL, NULL, "<table class=\"listing\">\n<thead><tr>");
    for (k = 0; k < 3; k++) {
        /* The sorted column's link turns the order round; the others
         * start ascending. */
        int next_desc = (int)by == k ? !desc : 0;
        apr_brigade_printf(
            bb, NULL, NULL,
            "<th class=\"%s\"%s><a href=\"?sort=%s&amp;order=%s\">%s</a>"
            "</th>",
            key[k],
            (int)by != k ? ""
            : desc       ? " aria-sort=\"descending\""
                         : " aria-sort=\"ascending\"",
            key[k], next_desc ? "desc" : "asc", label[k]);
    }
    apr_brigade_puts(bb, NULL, NULL,
                     "<th class=\"actions\"><span>Actions</span></th>"
                     "</tr></thead>\n<tbody>\n");
}

static void put_row(apr_bucket_brigade *bb, apr_pool_t *p, const char *dir,
                    const entry *e)
{
    const char *name = e->name + 1;
    const char *text = browser_text(p, name);
    /* "./" keeps a name such as "http:x" from being read as a scheme. */
    const char *href = apr_pstrcat(p, "./", browser_url(p, name), NULL);
    struct stat st;

    if (lstat(apr_pstrcat(p, dir, "/", name, NULL), &st) != 0)
        return;
    if (S_ISDIR(st.st_mode))
        apr_brigade_printf(bb, NULL, NULL,
                           "<tr class=\"dir\"><td class=\"name\"><a "
                           "href=\"%s/\">%s/</a></td><td class=\"size\"></td>"
                           "<td class=\"mtime\">%s</td>"
                           "<td class=\"actions\"></td></tr>\n",
                           href, text,
                           browser_time(p, apr_time_from_sec(st.st_mtime)));
    else if (S_ISREG(st.st_mode))
        apr_brigade_printf(
            bb, NULL, NULL,
            "<tr class=\"file\"><td class=\"name\"><a href=\"%s\">%s</a></td>"
            "<td class=\"size\" data-bytes=\"%" APR_OFF_T_FMT
            "\" title=\"%" APR_OFF_T_FMT " bytes\">%s</td>"
            "<td class=\"mtime\">%s</td><td class=\"actions\">"
            "<a class=\"download\" href=\"%s\" download>download</a> "
            "<a class=\"versions\" href=\"%s?versions\">versions</a>"
            "</td></tr>\n",
            href, text, (apr_off_t)st.st_size, (apr_off_t)st.st_size,
            browser_size(p, st.st_size),
            browser_time(p, apr_time_from_sec(st.st_mtime)), href, href);
}

dav_error *browser_listing(const dav_resource *resource, ap_filter_t *output)
{
    request_rec *r = resource->info->r;
    apr_pool_t *p = resource->pool, *names, *row;
    const char *sort = browser_arg(r, "sort");
    const char *order = browser_arg(r, "order");
    apr_bucket_brigade *bb = apr_brigade_create(p, output->c->bucket_alloc);
    const char *uri = resource->uri;
    int ctx[2], done = 0;
    entries list = {NULL, 0, 0};
    mirrordav_dir *d;
    dav_error *err;
    apr_size_t i;

    ctx[0] = sort && !strcmp(sort, "size")    ? BY_SIZE
             : sort && !strcmp(sort, "mtime") ? BY_MTIME
                                              : BY_NAME;
    ctx[1] = order && !strcmp(order, "desc");
    if ((err = mirrordav_dir_open(p, resource->info->path, &d)))
        return err;
    apr_pool_create(&names, p);
    apr_pool_cleanup_register(names, &list, free_entries,
                              apr_pool_cleanup_null);
    apr_pool_create(&row, p);
    while (!done) {
        mirrordav_dirent de;
        entry *e;

        /* Nothing is sent yet: an error still gets its own status. */
        if ((err = mirrordav_dir_next(row, d, &de, &done)) != NULL) {
            mirrordav_dir_close(p, d);
            apr_pool_destroy(names);
            return err;
        }
        if (done)
            break;
        if (list.n == list.cap) {
            apr_size_t cap = list.cap ? 2 * list.cap : 256;
            entry *v = realloc(list.v, cap * sizeof(*v));
            if (!v) {
                mirrordav_dir_close(p, d);
                apr_pool_destroy(names);
                return mirrordav_error(p, HTTP_INTERNAL_SERVER_ERROR, 0,
                                       "Out of memory listing a directory.");
            }
            list.v = v;
            list.cap = cap;
        }
        e = &list.v[list.n++];
        e->name = apr_pstrcat(names, de.finfo.filetype == APR_DIR ? "d" : "f",
                              de.name, NULL);
        e->key = ctx[0] == BY_SIZE ? (apr_int64_t)de.finfo.size
                                   : apr_time_sec(de.finfo.mtime);
        apr_pool_clear(row);
    }
    mirrordav_dir_close(p, d);
    if (list.n)
        qsort_r(list.v, list.n, sizeof(entry), cmp_entry, ctx);

    if (uri[strlen(uri) - 1] != '/')
        uri = apr_pstrcat(p, uri, "/", NULL);
    browser_begin(bb, r, resource->info->conf->root_uri, uri,
                  apr_pstrcat(p, "Index of ", uri, NULL), uri);
    put_header(bb, ctx[0], ctx[1]);
    for (i = 0; i < list.n; i++) {
        put_row(bb, row, resource->info->path, &list.v[i]);
        apr_pool_clear(row);
        /* Hand rows on as we go instead of building the page. */
        if ((i + 1) % FLUSH_ROWS == 0 && ap_fflush(output, bb) != APR_SUCCESS)
            break;
    }
    apr_pool_destroy(row);
    apr_pool_destroy(names);
    apr_brigade_puts(bb, NULL, NULL, "</tbody></table>\n");
    browser_end(bb);
    browser_finish(output, bb);
    return NULL;
}
