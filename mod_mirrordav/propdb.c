/*
 * Dead properties, kept in the entry's sidecar database.
 *
 * Each property is stored under the key "P{namespace}name".  The value is
 * compact, because a sidecar with a dozen small properties must fit one
 * 4 KiB block:
 *
 *     PREFIX \0 LANG \0 ATTRS \0 INNER
 *
 * INNER is the element's content as the client sent it (apr_xml_to_text,
 * XML-quoted), its elements prefixed "nsN"; ATTRS is the rest of the start
 * tag: the element's own attributes and the declarations of exactly the
 * prefixes used below it; PREFIX is the N of the element's own namespace
 * (empty: none); LANG is its xml:lang.  PROPFIND rebuilds the element.
 *
 * PROPPATCH collects its changes and publishes them once.  The writable
 * handle reads the published database without the directory's sidecar
 * lock (published databases never change), and every set or remove only
 * updates a per-request table of pending changes (mod_dav's all-or-nothing
 * rollback restores entries of that table).  close() then takes the lock,
 * reopens the database as it is now, applies the pending changes to it,
 * and commits (temp file, fsync, rename, folder fsync) before releasing
 * the lock.  So the lock is held for one read-merge-publish, never while
 * mod_dav parses or executes, and two PROPPATCHes of one resource cannot
 * lose each other's changes: the second merges into what the first
 * published.  The number of dead properties per resource is capped
 * (MirrorDAVMaxProperties), checked as properties are added and again
 * under the lock.
 *
 * mod_dav calls close() after it has built its 207 but before it sends it
 * (dav_method_proppatch: exec, commit/rollback, dav_close_propdb, then
 * dav_send_multistatus), and close() returns void.  No other hook comes
 * between the last store and the reply: dead properties get no commit
 * hook (patch_commit is for live ones).  A failure in close(), or a
 * refusal of ours during exec, is therefore noted on the request with an
 * output filter that throws the 207 away and answers the error instead.
 * The filter sits before the HTTP header filter and swallows everything
 * up to EOS, so no header of the 207 is ever written.
 *
 * Storing Win32LastModifiedTime also sets the file's mtime, which is what
 * the Windows WebDAV client means by it (liveprops.c validates the date).
 * It is set during exec; mod_dav's rollback, or close() when publishing
 * fails, puts the old mtime back.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "apr_date.h"
#include "apr_hash.h"
#include "apr_strings.h"
#include "apr_xml.h"
#include "http_protocol.h"
#include "mirrordav.h"
#include "sidecar/sidecar.h"
#include "util_filter.h"

#define WIN32_NS "urn:schemas-microsoft-com:"

#define FAILED_FILTER "MIRRORDAV_PROPPATCH_FAILED"

/* A pending change: a new value, or a removal (VAL NULL). */
typedef struct {
    const char *val;
    apr_size_t vlen;
} pending;

struct dav_db {
    apr_pool_t *pool;
    const dav_resource *resource;
    sidecar *sc; /* read-only view of the published database */
    int ro;
    apr_hash_t *pending;    /* writable: key -> pending */
    int count;              /* writable: dead properties in the merged view */
    int max;                /* writable: MirrorDAVMaxProperties, 0: none */
    int mtime_saved;        /* Win32LastModifiedTime changed the mtime ... */
    struct timespec mtime0; /* ... from this */
    int failed;             /* a failure is noted on the request */
    int rebind;             /* the mtime was set: re-bind the record ... */
    struct stat rebind_from; /* ... from this identity of the data */
    apr_array_header_t *names; /* dav_prop_name, collected lazily */
    int iter;
};

struct dav_deadprop_rollback {
    const char *key;
    apr_size_t klen;
    const pending *prev; /* the pending entry before, NULL: none */
    int mtime_set;
    struct timespec mtime;
};

static const char *prop_key(apr_pool_t *p, const dav_prop_name *name,
                            apr_size_t *klen)
{
    const char *k =
        apr_pstrcat(p, "P{", name->ns ? name->ns : "", "}", name->name, NULL);
    *klen = strlen(k);
    return k;
}

static int is_prop_key(const void *key, size_t klen)
{
    const char *k = key;

    return klen >= 3 && k[0] == 'P' && k[1] == '{';
}

static dav_error *sc_error(dav_db *db, int rv, const char *what)
{
    apr_status_t st = APR_FROM_OS_ERROR(rv < 0 ? -rv : EIO);

    return mirrordav_errno_error(db->pool, st, what);
}

/* Makes ERR the answer to the request (see the top of this file): the
 * filter replaces whatever mod_dav sends.  The first failure wins. */
static void note_failure(dav_db *db, const dav_error *err)
{
    request_rec *r = db->resource->info->r;
    dav_error *copy;

    if (db->failed || !r)
        return;
    db->failed = 1;
    /* The request pool outlives the response; the propdb's may not. */
    copy = apr_pmemdup(r->pool, err, sizeof(*err));
    copy->desc = apr_pstrdup(r->pool, err->desc);
    copy->namespace = apr_pstrdup(r->pool, err->namespace);
    copy->tagname = apr_pstrdup(r->pool, err->tagname);
    copy->prev = NULL;
    ap_log_rerror(APLOG_MARK, err->status >= 500 ? APLOG_ERR : APLOG_INFO,
                  err->aprerr, r, "PROPPATCH of %s: %s",
                  db->resource->info->path, err->desc);
    ap_add_output_filter(FAILED_FILTER, copy, r, r->connection);
}

static dav_error *failed(dav_db *db, dav_error *err)
{
    note_failure(db, err);
    return err;
}

static int count_cb(void *ctx, const void *key, size_t klen, const void *val,
                    size_t vlen)
{
    if (is_prop_key(key, klen))
        ++*(int *)ctx;
    return 0;
}

static dav_error *db_open(apr_pool_t *p, const dav_resource *resource, int ro,
                          dav_db **pdb)
{
    const char *dir, *name;
    dav_db *db;
    int rv;

    if (resource->hooks != &mirrordav_hooks_repository)
        return mirrordav_error(p, HTTP_INTERNAL_SERVER_ERROR, 0,
                               "Not a mirrordav resource.");
    mirrordav_sidecar_entry(resource, &dir, &name);
    /* mod_dav takes a NULL database as "no dead properties", as for a
     * missing one: PROPFIND then costs one getxattr instead of a GDBM open
     * for every member that holds only the server's records. */
    if (ro && !sidecar_has_user_keys(dir, name)) {
        *pdb = NULL;
        return NULL;
    }
    db = apr_pcalloc(p, sizeof(*db));
    db->pool = p;
    db->resource = resource;
    db->ro = ro;
    /* Read-only even for PROPPATCH: no lock until close() publishes. */
    rv = sidecar_open(dir, name, 0, &db->sc);
    if (rv != 0)
        return sc_error(db, rv, "Could not open the property database");
    if (!ro) {
        db->pending = apr_hash_make(p);
        db->max = mirrordav_max_properties(resource->info->conf);
        if (sidecar_has_user_keys(dir, name) &&
            (rv = sidecar_iter(db->sc, count_cb, &db->count)) != 0) {
            sidecar_close(db->sc);
            return sc_error(db, rv, "Could not read the property database");
        }
    }
    *pdb = db;
    return NULL;
}

static dav_error *too_many(dav_db *db, int count)
{
    return mirrordav_error(
        db->pool, HTTP_INSUFFICIENT_STORAGE, 0,
        apr_psprintf(db->pool,
                     "Too many dead properties: a resource holds at most %d "
                     "(MirrorDAVMaxProperties), this PROPPATCH would leave "
                     "%d.  Nothing was changed.",
                     db->max, count));
}

/* Applies the pending changes to the database as it is now, under the
 * directory's sidecar lock, and publishes the result durably. */
static dav_error *publish(dav_db *db)
{
    const char *dir, *name, *path = db->resource->info->path;
    apr_hash_index_t *hi;
    dav_error *err = NULL;
    struct stat st;
    sidecar *sc;
    int rv, added = 0, count = 0;

    mirrordav_sidecar_entry(db->resource, &dir, &name);
    rv = sidecar_open(dir, name, 1, &sc);
    if (rv != 0)
        return sc_error(db, rv, "Could not open the property database");
    /* DELETE and MOVE take the data away first and its sidecar after,
     * under this lock: data still here now keeps its sidecar until the
     * lock is released, and data gone must not get a sidecar again (a
     * later PUT of the name would inherit it). */
    if (lstat(path, &st) != 0) {
        err = errno == ENOENT
                  ? mirrordav_error(db->pool, HTTP_NOT_FOUND, 0,
                                    "The resource was removed while its "
                                    "properties were being changed.")
                  : mirrordav_errno_error(db->pool, APR_FROM_OS_ERROR(errno),
                                          "Could not check the resource");
        goto out;
    }
    /* The mtime set by Win32LastModifiedTime moved the ctime: the record
     * still names the same bytes.  Not re-bound (a damaged record, the
     * data rewritten meanwhile): the hash reads unknown until fsck
     * recomputes it, which is no reason to fail the request.  After a
     * rollback nothing is published and the hash reads unknown too. */
    if (db->rebind)
        (void)sidecar_rebind_handle(sc, &db->rebind_from, &st, 1);
    for (hi = apr_hash_first(db->pool, db->pending); hi && !rv;
         hi = apr_hash_next(hi)) {
        const void *key;
        apr_ssize_t klen;
        void *v, *old;
        size_t olen;
        const pending *pd;
        int had;

        apr_hash_this(hi, &key, &klen, &v);
        pd = v;
        had = sidecar_get(sc, key, klen, &old, &olen);
        if (had == 0)
            free(old);
        else if (had != -ENOENT) {
            rv = had;
            break;
        }
        if (pd->val) {
            rv = sidecar_put(sc, key, klen, pd->val, pd->vlen);
            added += had == -ENOENT;
        }
        else {
            rv = sidecar_del(sc, key, klen);
            added -= had == 0;
        }
    }
    /* Others may have added properties since this request counted. */
    if (!rv && db->max && added > 0 &&
        (rv = sidecar_iter(sc, count_cb, &count)) == 0 && count > db->max) {
        err = too_many(db, count);
        goto out;
    }
    /* Temp file, fsync, rename, fsync of the folder.  Until the rename
     * the old database stands and the temp file is discarded on close.
     * A failure of the folder's fsync comes after the rename: the new
     * properties are visible but may not survive a crash, and the client
     * is told so with the error. */
    if (!rv)
        rv = sidecar_commit(sc);
    if (rv != 0)
        err = sc_error(db, rv, "Could not store the properties");
out:
    sidecar_close(sc); /* releases the lock */
    return err;
}

static void db_close(dav_db *db)
{
    dav_error *err = NULL;

    sidecar_close(db->sc);
    /* After a refusal mod_dav has rolled everything back; publish nothing
     * even if it had not. */
    if (db->ro || db->failed || !apr_hash_count(db->pending))
        return;
    err = publish(db);
    if (!err)
        return;
    /* Nothing was stored: neither is the mtime that came with it. */
    if (db->mtime_saved) {
        struct timespec ts[2] = {{0, UTIME_OMIT}, db->mtime0};
        utimensat(AT_FDCWD, db->resource->info->path, ts, AT_SYMLINK_NOFOLLOW);
    }
    note_failure(db, err);
}

static dav_error *db_define_namespaces(dav_db *db, dav_xmlns_info *xi)
{
    return NULL; /* every stored value declares its own */
}

/* Marks every namespace used below ELEM (not ELEM itself). */
static void mark_used(const apr_xml_elem *elem, char *used, int n)
{
    const apr_xml_elem *c;
    const apr_xml_attr *a;

    for (c = elem->first_child; c; c = c->next) {
        if (c->ns >= 0 && c->ns < n)
            used[c->ns] = 1;
        for (a = c->attr; a; a = a->next)
            if (a->ns >= 0 && a->ns < n)
                used[a->ns] = 1;
        mark_used(c, used, n);
    }
}

static const char *encode_value(apr_pool_t *p, const apr_xml_elem *elem,
                                apr_array_header_t *namespaces,
                                apr_size_t *vlen)
{
    int n = namespaces ? namespaces->nelts : 0, i;
    char *used = apr_pcalloc(p, n + 1);
    const apr_xml_attr *a;
    const char *inner, *decls = "", *prefix = "";
    apr_size_t ilen;
    char *v, *w;

    mark_used(elem, used, n);
    for (a = elem->attr; a; a = a->next)
        if (a->ns >= 0 && a->ns < n)
            used[a->ns] = 1;
    for (i = 0; i < n; i++)
        if (used[i] && i != elem->ns)
            decls =
                apr_psprintf(p, "%s xmlns:ns%d=\"%s\"", decls, i,
                             apr_xml_quote_string(
                                 p, APR_XML_GET_URI_ITEM(namespaces, i), 1));
    for (a = elem->attr; a; a = a->next) {
        if (!strcmp(a->name, "xml:lang"))
            continue; /* kept as LANG */
        if (a->ns >= 0)
            decls = apr_psprintf(p, "%s ns%d:%s=\"%s\"", decls, a->ns, a->name,
                                 a->value);
        else
            decls = apr_psprintf(p, "%s %s=\"%s\"", decls, a->name, a->value);
    }
    if (elem->ns >= 0)
        prefix = apr_itoa(p, elem->ns);
    apr_xml_to_text(p, elem, APR_XML_X2T_INNER, namespaces, NULL, &inner,
                    &ilen);
    {
        const char *lang = elem->lang ? elem->lang : "";
        apr_size_t pl = strlen(prefix), ll = strlen(lang), dl = strlen(decls);

        *vlen = pl + ll + dl + ilen + 3;
        w = v = apr_palloc(p, *vlen);
        memcpy(w, prefix, pl);
        w += pl;
        *w++ = '\0';
        memcpy(w, lang, ll);
        w += ll;
        *w++ = '\0';
        memcpy(w, decls, dl);
        w += dl;
        *w++ = '\0';
        memcpy(w, inner, ilen);
    }
    return v;
}

static const char *decode_value(apr_pool_t *p, const dav_prop_name *name,
                                const char *v, apr_size_t vlen)
{
    const char *end = v + vlen, *prefix = v, *lang, *decls, *inner;
    const char *qname, *nsdecl = "", *langattr = "";

    lang = memchr(prefix, '\0', end - prefix);
    decls = lang ? memchr(lang + 1, '\0', end - lang - 1) : NULL;
    if (!lang || !decls)
        return ""; /* not ours: emit nothing rather than broken XML */
    lang++;
    decls++;
    inner = memchr(decls, '\0', end - decls);
    if (!inner)
        return "";
    inner++;
    if (*prefix) {
        qname = apr_pstrcat(p, "ns", prefix, ":", name->name, NULL);
        nsdecl = apr_pstrcat(p, " xmlns:ns", prefix, "=\"",
                             apr_xml_quote_string(p, name->ns, 1), "\"", NULL);
    }
    else
        qname = name->name;
    if (*lang)
        langattr = apr_pstrcat(p, " xml:lang=\"",
                               apr_xml_quote_string(p, lang, 1), "\"", NULL);
    if (inner == end)
        return apr_pstrcat(p, "<", qname, nsdecl, decls, langattr, "/>", NULL);
    return apr_pstrcat(p, "<", qname, nsdecl, decls, langattr, ">",
                       apr_pstrmemdup(p, inner, end - inner), "</", qname, ">",
                       NULL);
}

/* KEY in the merged view (published + pending): 0 and the value (in the
 * pool), -ENOENT, or an error. */
static int view_get(dav_db *db, const char *key, apr_size_t klen,
                    const char **val, apr_size_t *vlen)
{
    const pending *pd =
        db->pending ? apr_hash_get(db->pending, key, klen) : NULL;
    void *v;
    size_t n;
    int rv;

    if (pd) {
        if (!pd->val)
            return -ENOENT;
        *val = pd->val;
        *vlen = pd->vlen;
        return 0;
    }
    rv = sidecar_get(db->sc, key, klen, &v, &n);
    if (rv != 0)
        return rv;
    *val = apr_pstrmemdup(db->pool, v, n);
    *vlen = n;
    free(v);
    return 0;
}

static dav_error *db_output_value(dav_db *db, const dav_prop_name *name,
                                  dav_xmlns_info *xi, apr_text_header *phdr,
                                  int *found)
{
    apr_size_t klen, vlen;
    const char *key = prop_key(db->pool, name, &klen);
    const char *val;
    int rv = view_get(db, key, klen, &val, &vlen);

    *found = 0;
    if (rv == -ENOENT)
        return NULL;
    if (rv != 0)
        return sc_error(db, rv, "Could not read a property");
    apr_text_append(db->pool, phdr, decode_value(db->pool, name, val, vlen));
    *found = 1;
    return NULL;
}

struct dav_namespace_map {
    apr_array_header_t *namespaces;
};

static dav_error *db_map_namespaces(dav_db *db,
                                    const apr_array_header_t *namespaces,
                                    dav_namespace_map **mapping)
{
    dav_namespace_map *m = apr_palloc(db->pool, sizeof(*m));

    m->namespaces = (apr_array_header_t *)namespaces;
    *mapping = m;
    return NULL;
}

/* Sets the data's mtime.  That moves its ctime too, so the record's SHA-1,
 * which names the bytes by mtime and ctime, must be re-bound: publish()
 * does it under the lock, from the identity the data had before the first
 * change (kept here) to the one it has then. */
static int set_mtime(dav_db *db, const struct timespec *mtime)
{
    struct timespec ts[2] = {{0, UTIME_OMIT}, *mtime};
    struct stat before;
    int known, e;

    /* A snapshot sharing the inode keeps its mtime: the change goes to a
     * private copy (cow.c), which re-binds the record itself. */
    if ((e = mirrordav_cow_break(db->pool, db->resource->info->conf,
                                 db->resource->info->path, &before)) != 0)
        return -e;
    known = lstat(db->resource->info->path, &before) == 0;
    if (utimensat(AT_FDCWD, db->resource->info->path, ts,
                  AT_SYMLINK_NOFOLLOW) != 0)
        return -errno;
    if (known && !db->rebind) {
        db->rebind = 1;
        db->rebind_from = before;
    }
    return 0;
}

/* RFC 1123 date as the Windows client sends it. */
static int set_mtime_from(dav_db *db, const apr_xml_elem *elem)
{
    const char *text = dav_xml_get_cdata(elem, db->pool, 1);
    apr_time_t t = apr_date_parse_rfc(text);
    struct timespec ts;

    if (t == APR_DATE_BAD)
        return -EINVAL;
    ts.tv_sec = apr_time_sec(t);
    ts.tv_nsec = (long)(apr_time_usec(t) * 1000);
    return set_mtime(db, &ts);
}

static int is_win32_mtime(const dav_prop_name *name)
{
    return name->ns && strcmp(name->ns, WIN32_NS) == 0 &&
           strcmp(name->name, "Win32LastModifiedTime") == 0;
}

/* Records KEY's new state (VAL NULL: removed) in the pending table,
 * keeping the count of the merged view. */
static int set_pending(dav_db *db, const char *key, apr_size_t klen,
                       const pending *pd)
{
    const char *v;
    apr_size_t n;
    int before = view_get(db, key, klen, &v, &n), after;

    if (before != 0 && before != -ENOENT)
        return before;
    apr_hash_set(db->pending, key, klen, pd);
    after = pd ? (pd->val != NULL) : view_get(db, key, klen, &v, &n) == 0;
    db->count += after - (before == 0);
    return 0;
}

static dav_error *db_store(dav_db *db, const dav_prop_name *name,
                           const apr_xml_elem *elem,
                           dav_namespace_map *mapping)
{
    apr_size_t klen, vlen;
    const char *key = prop_key(db->pool, name, &klen);
    const char *text, *cur;
    pending *pd;
    int rv;

    if (db->ro || !db->pending)
        return mirrordav_error(db->pool, HTTP_INTERNAL_SERVER_ERROR, 0,
                               "The property database is read-only.");
    rv = view_get(db, key, klen, &cur, &vlen);
    if (rv != 0 && rv != -ENOENT)
        return failed(db, sc_error(db, rv, "Could not read a property"));
    /* Refused before it is added, so that an oversized PROPPATCH stops at
     * the first property over the limit. */
    if (rv == -ENOENT && db->max && db->count >= db->max)
        return failed(db, too_many(db, db->count + 1));
    /* Text and attribute values arrive unescaped; mod_dav_fs quotes the
     * element in place the same way before storing it. */
    apr_xml_quote_elem(db->pool, (apr_xml_elem *)elem);
    text = encode_value(db->pool, elem, mapping->namespaces, &vlen);
    pd = apr_palloc(db->pool, sizeof(*pd));
    pd->val = text;
    pd->vlen = vlen;
    if ((rv = set_pending(db, key, klen, pd)) != 0)
        return failed(db, sc_error(db, rv, "Could not store a property"));
    if (is_win32_mtime(name)) {
        struct stat st;

        if (!db->mtime_saved && lstat(db->resource->info->path, &st) == 0) {
            db->mtime_saved = 1;
            db->mtime0 = st.st_mtim;
        }
        if ((rv = set_mtime_from(db, elem)) != 0) {
            if (rv == -EINVAL)
                return mirrordav_error(db->pool, HTTP_BAD_REQUEST, 0,
                                       "Win32LastModifiedTime is not an "
                                       "RFC 1123 date.");
            return failed(db, sc_error(db, rv,
                                       "Could not set the modification "
                                       "time"));
        }
    }
    return NULL;
}

static dav_error *db_remove(dav_db *db, const dav_prop_name *name)
{
    static const pending removed = {NULL, 0};
    apr_size_t klen;
    const char *key = prop_key(db->pool, name, &klen);
    int rv;

    if (db->ro || !db->pending)
        return mirrordav_error(db->pool, HTTP_INTERNAL_SERVER_ERROR, 0,
                               "The property database is read-only.");
    if ((rv = set_pending(db, key, klen, &removed)) != 0)
        return failed(db, sc_error(db, rv, "Could not remove a property"));
    return NULL;
}

static int db_exists(dav_db *db, const dav_prop_name *name)
{
    apr_size_t klen, vlen;
    const char *key = prop_key(db->pool, name, &klen);
    const char *val;

    return view_get(db, key, klen, &val, &vlen) == 0;
}

static void add_name(dav_db *db, const char *k, size_t klen)
{
    const char *close = memchr(k, '}', klen);
    dav_prop_name *n;

    if (!close)
        return;
    n = apr_array_push(db->names);
    n->ns = apr_pstrmemdup(db->pool, k + 2, close - (k + 2));
    n->name = apr_pstrmemdup(db->pool, close + 1, klen - (close + 1 - k));
}

static int collect_name(void *ctx, const void *key, size_t klen,
                        const void *val, size_t vlen)
{
    dav_db *db = ctx;

    /* A key with a pending change is listed from the pending table. */
    if (is_prop_key(key, klen) &&
        !(db->pending && apr_hash_get(db->pending, key, klen)))
        add_name(db, key, klen);
    return 0;
}

static dav_error *db_next_name(dav_db *db, dav_prop_name *pname)
{
    if (db->iter < db->names->nelts)
        *pname = APR_ARRAY_IDX(db->names, db->iter++, dav_prop_name);
    else
        pname->ns = pname->name = NULL;
    return NULL;
}

static dav_error *db_first_name(dav_db *db, dav_prop_name *pname)
{
    apr_hash_index_t *hi;
    int rv;

    db->names = apr_array_make(db->pool, 8, sizeof(dav_prop_name));
    db->iter = 0;
    rv = sidecar_iter(db->sc, collect_name, db);
    if (rv != 0)
        return sc_error(db, rv, "Could not list the properties");
    for (hi = db->pending ? apr_hash_first(db->pool, db->pending) : NULL; hi;
         hi = apr_hash_next(hi)) {
        const void *key;
        apr_ssize_t klen;
        void *v;

        apr_hash_this(hi, &key, &klen, &v);
        if (((const pending *)v)->val)
            add_name(db, key, klen);
    }
    return db_next_name(db, pname);
}

static dav_error *db_get_rollback(dav_db *db, const dav_prop_name *name,
                                  dav_deadprop_rollback **prollback)
{
    dav_deadprop_rollback *rb = apr_pcalloc(db->pool, sizeof(*rb));

    rb->key = prop_key(db->pool, name, &rb->klen);
    if (db->pending)
        rb->prev = apr_hash_get(db->pending, rb->key, rb->klen);
    if (is_win32_mtime(name)) {
        struct stat st;
        if (lstat(db->resource->info->path, &st) == 0) {
            rb->mtime_set = 1;
            rb->mtime = st.st_mtim;
        }
    }
    *prollback = rb;
    return NULL;
}

static dav_error *db_apply_rollback(dav_db *db, dav_deadprop_rollback *rb)
{
    int rv = 0;

    if (db->pending)
        rv = set_pending(db, rb->key, rb->klen, rb->prev);
    if (rb->mtime_set) {
        struct timespec ts[2] = {{0, UTIME_OMIT}, rb->mtime};
        utimensat(AT_FDCWD, db->resource->info->path, ts, AT_SYMLINK_NOFOLLOW);
    }
    if (rv != 0)
        return sc_error(db, rv, "Could not roll back a property");
    return NULL;
}

const dav_hooks_propdb mirrordav_hooks_propdb = {
    db_open,
    db_close,
    db_define_namespaces,
    db_output_value,
    db_map_namespaces,
    db_store,
    db_remove,
    db_exists,
    db_first_name,
    db_next_name,
    db_get_rollback,
    db_apply_rollback,
    NULL,
};

/* ------------------------------------------------------------ failures */

/* Replaces mod_dav's 207 with the failure noted by note_failure(), in the
 * form mod_dav gives its own errors (dav_error_response_tag).  It drops
 * every bucket up to EOS, so nothing of the 207, headers included, goes
 * out; only then does it write the error. */
static apr_status_t failed_filter(ap_filter_t *f, apr_bucket_brigade *bb)
{
    request_rec *r = f->r;
    const dav_error *err = f->ctx;
    apr_bucket_alloc_t *ba = r->connection->bucket_alloc;
    const char *body;
    apr_bucket *e;
    int eos = 0;

    for (e = APR_BRIGADE_FIRST(bb); e != APR_BRIGADE_SENTINEL(bb);
         e = APR_BUCKET_NEXT(e))
        if (APR_BUCKET_IS_EOS(e))
            eos = 1;
    apr_brigade_cleanup(bb);
    if (!eos)
        return APR_SUCCESS;
    r->status = err->status;
    r->status_line = NULL;
    ap_set_content_type(r, DAV_XML_CONTENT_TYPE);
    body = apr_psprintf(
        r->pool,
        DAV_XML_HEADER "\n<D:error xmlns:D=\"DAV:\" "
                       "xmlns:m=\"http://apache.org/dav/xmlns\" "
                       "xmlns:C=\"%s\">\n<C:%s/>\n"
                       "<m:human-readable errcode=\"%d\">\n%s\n"
                       "</m:human-readable>\n</D:error>\n",
        apr_xml_quote_string(r->pool, err->namespace, 1), err->tagname,
        err->error_id, apr_xml_quote_string(r->pool, err->desc, 0));
    APR_BRIGADE_INSERT_TAIL(
        bb, apr_bucket_pool_create(body, strlen(body), r->pool, ba));
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(ba));
    ap_remove_output_filter(f);
    return ap_pass_brigade(f->next, bb);
}

void mirrordav_register_propdb_hooks(void)
{
    ap_register_output_filter(FAILED_FILTER, failed_filter, NULL,
                              AP_FTYPE_CONTENT_SET);
}
