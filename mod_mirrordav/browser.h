/*
 * The browser pages (docs/BROWSER.md): what the browser_*.c files share.
 *
 *   browser.c           which page a GET gets (Accept, query), the page
 *                       frame (headers, head, CSS, breadcrumbs), escaping,
 *                       human sizes, ISO times, the locations of a volume
 *   browser_plain.c     the bare listing every other client gets
 *   browser_listing.c   a directory, live or in a snapshot, sortable
 *   browser_snapshots.c /snapshots/ and a snapshot's verification report
 *   browser_versions.c  a file's versions across the snapshots
 *   browser_restore.c   the restore form's POST and its token
 */
#ifndef MIRRORDAV_BROWSER_H
#define MIRRORDAV_BROWSER_H

#include "mirrordav.h"

typedef enum {
    BROWSER_NONE = 0,  /* not a page: a file's bytes */
    BROWSER_PLAIN,     /* a collection for a client that did not ask for
                          HTML: the listing as it always was */
    BROWSER_LISTING,   /* a collection's page */
    BROWSER_SNAPSHOTS, /* /snapshots/ */
    BROWSER_REPORT,    /* /snapshots/NAME/?report */
    BROWSER_VERSIONS   /* FILE?versions */
} browser_page;

/* ------------------------------------------------------------ browser.c */

/* The request's Accept puts text/html first (see browser.c). */
int browser_wants_html(request_rec *r);
/* The value of query parameter NAME in R's query string (decoded), "" if
 * it has none, NULL if absent. */
const char *browser_arg(request_rec *r, const char *name);
/* Text for HTML, escaped for element content and attribute values alike
 * (& < > " '). */
const char *browser_text(apr_pool_t *p, const char *s);
/* A path percent-encoded byte by byte (all but unreserved characters and
 * '/'), then safe in an attribute as it is. */
const char *browser_url(apr_pool_t *p, const char *path);
/* "1.5 MiB" */
const char *browser_size(apr_pool_t *p, apr_off_t n);
/* <time datetime="2026-12-02T16:15:33Z">2026-12-02 16:15:33Z</time> */
const char *browser_time(apr_pool_t *p, apr_time_t t);
/* The page's start: <head> with TITLE (raw text), the style, the body's
 * breadcrumbs for URI (under the location ROOT_URI; the last crumb is
 * the page), and an <h1> with H1 (raw text). */
void browser_begin(apr_bucket_brigade *bb, request_rec *r,
                   const char *root_uri, const char *uri, const char *title,
                   const char *h1);
void browser_end(apr_bucket_brigade *bb);
/* A page's response headers: type, no caching, the security policy. */
void browser_headers(request_rec *r);
/* Passes BB on with an EOS. */
void browser_finish(ap_filter_t *output, apr_bucket_brigade *bb);

/* The <Location> URI (without trailing '/') that serves VOLUME's live
 * tree (SNAPSHOTS 0) or its snapshots (1), and that location's
 * configuration; NULL if none is configured. */
const mirrordav_conf *browser_location(const char *volume, int snapshots);

/* ---------------------------------------------------------- the pages */

dav_error *browser_plain(const dav_resource *resource, ap_filter_t *output);
dav_error *browser_listing(const dav_resource *resource, ap_filter_t *output);
dav_error *browser_snapshots(const dav_resource *resource,
                             ap_filter_t *output);
dav_error *browser_report(const dav_resource *resource, ap_filter_t *output);
dav_error *browser_versions(const dav_resource *resource, ap_filter_t *output);

/* browser_restore.c: the token that lets USER (NULL: none) restore the
 * live path RELPATH; NULL if the volume's secret could not be had. */
const char *browser_token(request_rec *r, const mirrordav_conf *live,
                          const char *relpath);
/* 1 if R's user may write URI (a live path, escaped): a PUT to it would
 * pass the server's access and authorisation checks. */
int browser_may_write(request_rec *r, const char *uri);
/* 1 if R's user may GET URI (escaped). */
int browser_may_read(request_rec *r, const char *uri);

#endif
