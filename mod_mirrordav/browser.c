/*
 * Browser pages (docs/BROWSER.md, SPEC section 9): which page a GET of a
 * collection or of FILE?versions gets, and the frame every page shares.
 *
 * A client gets a page only when its Accept header puts text/html first;
 * every other client (no Accept, * / *, WebDAV clients) gets the bare
 * listing it always got (browser_plain.c), headers included.  Pages are
 * the module's own HTML: no script, an inline style the
 * Content-Security-Policy allows and nothing else, never cached.  Every
 * name is escaped for the HTML (browser_text) and every link built from a
 * name is percent-encoded byte by byte (browser_url), so no name can end
 * an attribute, open a tag, or become a scheme or a network path.
 */
#include <stdlib.h>
#include <string.h>

#include "apr_lib.h"
#include "apr_strings.h"
#include "http_protocol.h"
#include "util_filter.h"
#include "browser.h"

/* ------------------------------------------------------------ locations */

/* Every <Location> configuration with a volume, so that a page of the
 * live tree can link to the snapshots and back.  Filled while the
 * configuration is read, read-only after. */
static apr_array_header_t *locations;

static apr_status_t forget_locations(void *data)
{
    locations = NULL;
    return APR_SUCCESS;
}

void mirrordav_browser_note_conf(apr_pool_t *p, const mirrordav_conf *conf)
{
    if (!locations) {
        locations = apr_array_make(p, 4, sizeof(const mirrordav_conf *));
        apr_pool_cleanup_register(p, NULL, forget_locations,
                                  apr_pool_cleanup_null);
    }
    APR_ARRAY_PUSH(locations, const mirrordav_conf *) = conf;
}

const mirrordav_conf *browser_location(const char *volume, int snapshots)
{
    int i;

    for (i = 0; locations && i < locations->nelts; i++) {
        const mirrordav_conf *c =
            APR_ARRAY_IDX(locations, i, const mirrordav_conf *);
        if (c->volume && c->root_uri && c->live &&
            strcmp(c->volume, volume) == 0 &&
            (c->snapshots == 1) == (snapshots != 0))
            return c;
    }
    return NULL;
}

/* ------------------------------------------------------------ negotiation */

/* HTML-preferring: text/html is named with the highest q-value of the
 * header, and no type with that q-value comes before it (browsers name
 * several types at q=1, text/html first).  "* / *" alone, no Accept, or
 * text/html ranked below another type: not. */
int browser_wants_html(request_rec *r)
{
    const char *accept = apr_table_get(r->headers_in, "Accept");
    char *copy, *item, *state;
    double best = -1, html = -1, before = -1;

    if (!accept)
        return 0;
    copy = apr_pstrdup(r->pool, accept);
    for (item = apr_strtok(copy, ",", &state); item;
         item = apr_strtok(NULL, ",", &state)) {
        char *semi = strchr(item, ';'), *type = item, *end;
        double q = 1;

        if (semi) {
            char *param, *ps;
            *semi = '\0';
            for (param = apr_strtok(semi + 1, ";", &ps); param;
                 param = apr_strtok(NULL, ";", &ps)) {
                while (apr_isspace(*param))
                    param++;
                if ((param[0] == 'q' || param[0] == 'Q') && param[1] == '=')
                    q = strtod(param + 2, NULL);
            }
        }
        while (apr_isspace(*type))
            type++;
        end = type + strlen(type);
        while (end > type && apr_isspace(end[-1]))
            *--end = '\0';
        if (!*type)
            continue;
        if (strcasecmp(type, "text/html") == 0 && html < 0) {
            html = q;
            before = best; /* the highest q named before it */
        }
        if (q > best)
            best = q;
    }
    return html > 0 && html >= best && html > before;
}

const char *browser_arg(request_rec *r, const char *name)
{
    char *copy, *item, *state;
    apr_size_t n = strlen(name);

    if (!r->args)
        return NULL;
    copy = apr_pstrdup(r->pool, r->args);
    for (item = apr_strtok(copy, "&", &state); item;
         item = apr_strtok(NULL, "&", &state)) {
        if (strncmp(item, name, n) == 0 && (!item[n] || item[n] == '=')) {
            char *v = item[n] ? item + n + 1 : item + n, *c;
            for (c = v; *c; c++)
                if (*c == '+')
                    *c = ' ';
            return ap_unescape_url(v) == OK ? v : "";
        }
    }
    return NULL;
}

/* ------------------------------------------------------------ escaping */

const char *browser_text(apr_pool_t *p, const char *s)
{
    apr_size_t n = 0;
    const char *c;
    char *out, *o;

    for (c = s; *c; c++)
        n += (*c == '&' || *c == '<' || *c == '>' || *c == '"' || *c == '\'')
                 ? 6
                 : 1;
    o = out = apr_palloc(p, n + 1);
    for (c = s; *c; c++) {
        const char *e = *c == '&'    ? "&amp;"
                        : *c == '<'  ? "&lt;"
                        : *c == '>'  ? "&gt;"
                        : *c == '"'  ? "&quot;"
                        : *c == '\'' ? "&#39;"
                                     : NULL;
        if (e) {
            apr_size_t k = strlen(e);
            memcpy(o, e, k);
            o += k;
        }
        else
            *o++ = *c;
    }
    *o = '\0';
    return out;
}

const char *browser_url(apr_pool_t *p, const char *path)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *c;
    char *out = apr_palloc(p, 3 * strlen(path) + 1), *o = out;

    for (c = (const unsigned char *)path; *c; c++) {
        if (apr_isalnum(*c) || *c == '-' || *c == '.' || *c == '_' ||
            *c == '~' || *c == '/')
            *o++ = (char)*c;
        else {
            *o++ = '%';
            *o++ = hex[*c >> 4];
            *o++ = hex[*c & 15];
        }
    }
    *o = '\0';
    return out;
}

const char *browser_size(apr_pool_t *p, apr_off_t n)
{
    static const char *const unit[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)n;
    int u = -1;

    if (n < 1024)
        return apr_psprintf(p, "%" APR_OFF_T_FMT " B", n);
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    return apr_psprintf(p, v < 10 ? "%.1f %s" : "%.0f %s", v, unit[u]);
}

const char *browser_time(apr_pool_t *p, apr_time_t t)
{
    apr_time_exp_t x;
    char iso[32], shown[32];
    apr_size_t n;

    apr_time_exp_gmt(&x, t);
    apr_strftime(iso, &n, sizeof(iso), "%Y-%m-%dT%H:%M:%SZ", &x);
    apr_strftime(shown, &n, sizeof(shown), "%Y-%m-%d %H:%M:%SZ", &x);
    return apr_psprintf(p, "<time datetime=\"%s\">%s</time>", iso, shown);
}

/* ------------------------------------------------------------ the frame */

static const char style[] =
    ":root{color-scheme:light dark;--fg:#1b1b1b;--bg:#fff;--muted:#666;"
    "--line:#ddd;--link:#0645ad;--accent:#f3f5f8}"
    "@media (prefers-color-scheme:dark){:root{--fg:#e6e6e6;--bg:#16181c;"
    "--muted:#9aa0a6;--line:#33363b;--link:#8ab4f8;--accent:#1f2227}}"
    "body{font:15px/1.45 system-ui,sans-serif;color:var(--fg);"
    "background:var(--bg);margin:0 auto;padding:1em;max-width:70em}"
    "a{color:var(--link)}h1{font-size:1.3em;word-break:break-all}"
    "nav.breadcrumbs ol{list-style:none;padding:0;margin:0 0 .5em;"
    "display:flex;flex-wrap:wrap}"
    "nav.breadcrumbs li+li:before{content:'/';padding:0 .4em;"
    "color:var(--muted)}"
    "table{border-collapse:collapse;width:100%}"
    "th,td{text-align:left;padding:.35em .5em;border-bottom:1px solid "
    "var(--line);vertical-align:top}"
    "th{background:var(--accent)}td.name{word-break:break-all}"
    "td.size,th.size,td.files,th.files{text-align:right;white-space:nowrap}"
    "td.mtime,td.created{white-space:nowrap}"
    "td.actions a{margin-right:.6em}code{font-size:.9em;word-break:break-all}"
    "section{margin:1em 0}form.restore{display:inline;margin:0}"
    "p.restored{padding:.6em;background:var(--accent)}"
    "@media (max-width:40em){td.mtime,th.mtime,td.created,th.created{"
    "display:none}"
    "body{padding:.5em}}";

void browser_begin(apr_bucket_brigade *bb, request_rec *r,
                   const char *root_uri, const char *uri, const char *title,
                   const char *h1)
{
    apr_pool_t *p = r->pool;
    apr_size_t rn = strlen(root_uri);
    const char *rest = uri + rn, *seg;
    const char *top = root_uri[0] == '/' ? root_uri + 1 : root_uri;
    char *href = apr_pstrcat(p, root_uri, "/", NULL);
    int last;

    apr_brigade_printf(
        bb, NULL, NULL,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, "
        "initial-scale=1\">\n<title>%s</title>\n<style>%s</style>\n"
        "</head><body>\n<nav class=\"breadcrumbs\" aria-label=\"Breadcrumb\">"
        "<ol>",
        browser_text(p, title), style);
    /* The location's own crumb, then one per segment of the rest. */
    while (*rest == '/')
        rest++;
    last = !*rest;
    apr_brigade_printf(bb, NULL, NULL, "<li><a href=\"%s\"%s>%s</a></li>",
                       browser_url(p, href),
                       last ? " aria-current=\"page\"" : "",
                       browser_text(p, *top ? top : "/"));
    for (seg = rest; *seg;) {
        const char *slash = strchr(seg, '/');
        apr_size_t n = slash ? (apr_size_t)(slash - seg) : strlen(seg);
        const char *name = apr_pstrmemdup(p, seg, n);

        seg += n;
        /* A file's page (FILE?versions) ends on the file, without '/'. */
        href = apr_pstrcat(p, href, name, *seg ? "/" : "", NULL);
        while (*seg == '/')
            seg++;
        apr_brigade_printf(bb, NULL, NULL, "<li><a href=\"%s\"%s>%s</a></li>",
                           browser_url(p, href),
                           !*seg ? " aria-current=\"page\"" : "",
                           browser_text(p, name));
    }
    apr_brigade_printf(bb, NULL, NULL, "</ol></nav>\n<h1>%s</h1>\n",
                       browser_text(p, h1));
}

void browser_end(apr_bucket_brigade *bb)
{
    apr_brigade_puts(bb, NULL, NULL, "</body></html>\n");
}

void browser_finish(ap_filter_t *output, apr_bucket_brigade *bb)
{
    APR_BRIGADE_INSERT_TAIL(bb,
                            apr_bucket_eos_create(output->c->bucket_alloc));
    ap_pass_brigade(output, bb);
}

/* ------------------------------------------------------------ dispatch */

static browser_page page_of(const dav_resource *resource)
{
    request_rec *r = resource->info->r;
    const mirrordav_conf *conf = resource->info->conf;

    if (!resource->exists)
        return BROWSER_NONE;
    if (!resource->collection)
        return r->args && strcmp(r->args, "versions") == 0 ? BROWSER_VERSIONS
                                                           : BROWSER_NONE;
    if (!browser_wants_html(r))
        return BROWSER_PLAIN;
    if (conf->snapshots == 1 && !*resource->info->relpath)
        return BROWSER_SNAPSHOTS;
    if (mirrordav_is_snapshot_entry(resource) && r->args &&
        strcmp(r->args, "report") == 0)
        return BROWSER_REPORT;
    return BROWSER_LISTING;
}

void browser_headers(request_rec *r)
{
    ap_set_content_type(r, "text/html; charset=utf-8");
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    apr_table_mergen(r->headers_out, "Vary", "Accept");
    apr_table_setn(r->headers_out, "X-Content-Type-Options", "nosniff");
    apr_table_setn(r->headers_out, "Referrer-Policy", "same-origin");
    apr_table_setn(r->headers_out, "Content-Security-Policy",
                   "default-src 'none'; style-src 'unsafe-inline'; "
                   "img-src 'self'; form-action 'self'; "
                   "frame-ancestors 'none'; base-uri 'none'");
}

int mirrordav_browser_set_headers(request_rec *r, const dav_resource *resource)
{
    browser_page page = page_of(resource);

    if (page == BROWSER_NONE || page == BROWSER_PLAIN)
        return 0;
    browser_headers(r);
    return 1;
}

dav_error *mirrordav_browser_deliver(const dav_resource *resource,
                                     ap_filter_t *output)
{
    switch (page_of(resource)) {
    case BROWSER_LISTING:
        return browser_listing(resource, output);
    case BROWSER_SNAPSHOTS:
        return browser_snapshots(resource, output);
    case BROWSER_REPORT:
        return browser_report(resource, output);
    case BROWSER_VERSIONS:
        return browser_versions(resource, output);
    default:
        return browser_plain(resource, output);
    }
}

int mirrordav_browser_page(const dav_resource *resource)
{
    return page_of(resource) != BROWSER_NONE;
}
