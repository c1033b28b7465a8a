/*
 * The page of a directory, live or in a snapshot (docs/BROWSER.md): a
 * table of name, size and modification time, sorted by any of them
 * through ?sort=name|size|mtime&order=asc|desc, folders before files.
 *
 * Sorting needs the whole directory, so it is read first into one
 * malloc'd arena: per entry a byte for folder or file, the sort key (8
 * bytes, only when sorting by size or time) and the name with its NUL,
 * unpadded; and a second array of the entries' 4-byte offsets into the
 * arena, which is what is sorted.  About 6 bytes plus the name (14 with
 * a key), and the sort's 4-byte scratch copy, freed once the page is
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

/* The arena and the offsets, grown by doubling (realloc moves large
 * blocks by remapping, not copying). */
typedef struct {
    char *arena;
    apr_uint32_t *off;
    apr_size_t used, size, n, cap;
} entries;

typedef struct {
    const char *arena;
    sort_key by;
    int desc;
} sort_ctx;

static apr_status_t free_entries(void *data)
{
    entries *l = data;

    free(l->arena);
    free(l->off);
    return APR_SUCCESS;
}

/* An entry at E: its type byte ('d' or 'f'), then with a key its 8
 * bytes, then the name. */
static const char *entry_name(const char *e, sort_key by)
{
    return e + 1 + (by == BY_NAME ? 0 : sizeof(apr_int64_t));
}

static apr_int64_t entry_key(const char *e)
{
    apr_int64_t k;

    memcpy(&k, e + 1, sizeof(k)); /* unaligned */
    return k;
}

static int cmp_entry(const void *a, const void *b, void *data)
{
    const sort_ctx *ctx = data;
    const char *x = ctx->arena + *(const apr_uint32_t *)a;
    const char *y = ctx->arena + *(const apr_uint32_t *)b;
    int c = 0;

    if (x[0] != y[0])
        return x[0] == 'd' ? -1 : 1; /* folders first, either way */
    if (ctx->by == BY_NAME)
        c = strcmp(entry_name(x, BY_NAME), entry_name(y, BY_NAME));
    else {
        apr_int64_t kx = entry_key(x), ky = entry_key(y);
        c = kx < ky ? -1 : kx > ky ? 1 : 0;
    }
    if (ctx->desc)
        c = -c;
    /* Equal keys: by name, ascending, whatever the order. */
    return c ? c : strcmp(entry_name(x, ctx->by), entry_name(y, ctx->by));
}

/* Appends an entry; 0 when out of memory (or past 4 GiB of names). */
static int add_entry(entries *l, int dir, sort_key by, apr_int64_t key,
                     const char *name)
{
    apr_size_t len = strlen(name) + 1;
    apr_size_t need = 1 + (by == BY_NAME ? 0 : sizeof(key)) + len;
    char *e;

    if (l->used + need > APR_UINT32_MAX)
        return 0;
    if (l->used + need > l->size) {
        apr_size_t size = l->size ? 2 * l->size : 16384;
        char *a;
        while (size < l->used + need)
            size *= 2;
        if (!(a = realloc(l->arena, size)))
            return 0;
        l->arena = a;
        l->size = size;
    }
    if (l->n == l->cap) {
        apr_size_t cap = l->cap ? 2 * l->cap : 1024;
        apr_uint32_t *o = realloc(l->off, cap * sizeof(*o));
        if (!o)
            return 0;
        l->off = o;
        l->cap = cap;
    }
    l->off[l->n++] = (apr_uint32_t)l->used;
    e = l->arena + l->used;
    *e = dir ? 'd' : 'f';
    if (by != BY_NAME)
        memcpy(e + 1, &key, sizeof(key));
    memcpy(e + need - len, name, len);
    l->used += need;
    return 1;
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
                    const char *name)
{
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
    apr_pool_t *p = resource->pool, *row;
    const char *sort = browser_arg(r, "sort");
    const char *order = browser_arg(r, "order");
    apr_bucket_brigade *bb = apr_brigade_create(p, output->c->bucket_alloc);
    const char *uri = resource->uri;
    int done = 0;
    entries list = {NULL, NULL, 0, 0, 0, 0};
    sort_ctx ctx;
    mirrordav_dir *d;
    dav_error *err;
    apr_size_t i;

    ctx.by = sort && !strcmp(sort, "size")    ? BY_SIZE
             : sort && !strcmp(sort, "mtime") ? BY_MTIME
                                              : BY_NAME;
    ctx.desc = order && !strcmp(order, "desc");
    if ((err = mirrordav_dir_open(p, resource->info->path, &d)))
        return err;
    /* Freed with the request whatever happens, or as soon as the page is
     * out. */
    apr_pool_cleanup_register(p, &list, free_entries, apr_pool_cleanup_null);
    apr_pool_create(&row, p);
    while (!done) {
        mirrordav_dirent de;

        /* Nothing is sent yet: an error still gets its own status. */
        if ((err = mirrordav_dir_next(row, d, &de, &done)) != NULL) {
            mirrordav_dir_close(p, d);
            apr_pool_cleanup_run(p, &list, free_entries);
            return err;
        }
        if (done)
            break;
        if (!add_entry(&list, de.finfo.filetype == APR_DIR, ctx.by,
                       ctx.by == BY_SIZE ? (apr_int64_t)de.finfo.size
                                         : apr_time_sec(de.finfo.mtime),
                       de.name)) {
            mirrordav_dir_close(p, d);
            apr_pool_cleanup_run(p, &list, free_entries);
            return mirrordav_error(p, HTTP_INTERNAL_SERVER_ERROR, 0,
                                   "Out of memory listing a directory.");
        }
        apr_pool_clear(row);
    }
    mirrordav_dir_close(p, d);
    ctx.arena = list.arena;
    if (list.n)
        qsort_r(list.off, list.n, sizeof(*list.off), cmp_entry, &ctx);

    if (uri[strlen(uri) - 1] != '/')
        uri = apr_pstrcat(p, uri, "/", NULL);
    browser_begin(bb, r, resource->info->conf->root_uri, uri,
                  apr_pstrcat(p, "Index of ", uri, NULL), uri);
    put_header(bb, ctx.by, ctx.desc);
    for (i = 0; i < list.n; i++) {
        put_row(bb, row, resource->info->path,
                entry_name(list.arena + list.off[i], ctx.by));
        apr_pool_clear(row);
        /* Hand rows on as we go instead of building the page. */
        if ((i + 1) % FLUSH_ROWS == 0 && ap_fflush(output, bb) != APR_SUCCESS)
            break;
    }
    apr_pool_destroy(row);
    apr_pool_cleanup_run(p, &list, free_entries);
    apr_brigade_puts(bb, NULL, NULL, "</tbody></table>\n");
    browser_end(bb);
    browser_finish(output, bb);
    return NULL;
}
