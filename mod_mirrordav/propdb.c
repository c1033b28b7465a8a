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
 * PROPPATCH is all-or-nothing: every store or remove rewrites the pending
 * database to a temporary file (so a full disk is reported against the
 * property that hit it), mod_dav rolls back the executed operations if any
 * one fails, and close() publishes the result with one fsync + rename.
 *
 * Storing Win32LastModifiedTime also sets the file's mtime, which is what
 * the Windows WebDAV client means by it (liveprops.c validates the date).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "apr_date.h"
#include "apr_strings.h"
#include "apr_xml.h"
#include "mirrordav.h"
#include "sidecar/sidecar.h"

#define WIN32_NS "urn:schemas-microsoft-com:"

struct dav_db {
    apr_pool_t *pool;
    const dav_resource *resource;
    sidecar *sc;
    int ro;
    apr_array_header_t *names; /* dav_prop_name, collected lazily */
    int iter;
};

struct dav_deadprop_rollback {
    dav_prop_name name;
    char *value; /* NULL: the property did not exist */
    apr_size_t len;
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

static dav_error *sc_error(dav_db *db, int rv, const char *what)
{
    apr_status_t st = APR_FROM_OS_ERROR(rv < 0 ? -rv : EIO);

    return mirrordav_errno_error(db->pool, st, what);
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
    rv = sidecar_open(dir, name, !ro, &db->sc);
    if (rv != 0)
        return sc_error(db, rv, "Could not open the property database");
    *pdb = db;
    return NULL;
}

static void db_close(dav_db *db)
{
    if (!db->ro) {
        int rv = sidecar_commit(db->sc);
        if (rv != 0)
            ap_log_rerror(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(-rv),
                          db->resource->info->r,
                          "could not publish the properties of %s",
                          db->resource->info->path);
    }
    sidecar_close(db->sc);
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

static dav_error *db_output_value(dav_db *db, const dav_prop_name *name,
                                  dav_xmlns_info *xi, apr_text_header *phdr,
                                  int *found)
{
    apr_size_t klen, vlen;
    const char *key = prop_key(db->pool, name, &klen);
    void *val;
    int rv = sidecar_get(db->sc, key, klen, &val, &vlen);

    *found = 0;
    if (rv == -ENOENT)
        return NULL;
    if (rv != 0)
        return sc_error(db, rv, "Could not read a property");
    apr_text_append(db->pool, phdr, decode_value(db->pool, name, val, vlen));
    free(val);
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
 * which names the bytes by mtime and ctime, is re-bound within this
 * handle: it still names the same bytes. */
static int set_mtime(dav_db *db, const struct timespec *mtime)
{
    struct timespec ts[2] = {{0, UTIME_OMIT}, *mtime};
    struct stat before, after;
    int known = lstat(db->resource->info->path, &before) == 0;

    if (utimensat(AT_FDCWD, db->resource->info->path, ts,
                  AT_SYMLINK_NOFOLLOW) != 0)
        return -errno;
    /* Not re-bound (a damaged record, no memory): the hash reads unknown
     * until fsck recomputes it, which is no reason to fail the request. */
    if (known && lstat(db->resource->info->path, &after) == 0)
        (void)sidecar_rebind_handle(db->sc, &before, &after, 1);
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

static dav_error *db_store(dav_db *db, const dav_prop_name *name,
                           const apr_xml_elem *elem,
                           dav_namespace_map *mapping)
{
    apr_size_t klen, vlen;
    const char *key = prop_key(db->pool, name, &klen);
    const char *text;
    int rv;

    /* Text and attribute values arrive unescaped; mod_dav_fs quotes the
     * element in place the same way before storing it. */
    apr_xml_quote_elem(db->pool, (apr_xml_elem *)elem);
    text = encode_value(db->pool, elem, mapping->namespaces, &vlen);
    rv = sidecar_put(db->sc, key, klen, text, vlen);
    if (rv == 0)
        rv = sidecar_prepare(db->sc);
    if (rv != 0)
        return sc_error(db, rv, "Could not store a property");
    if (is_win32_mtime(name) && (rv = set_mtime_from(db, elem)) != 0) {
        if (rv == -EINVAL)
            return mirrordav_error(db->pool, HTTP_BAD_REQUEST, 0,
                                   "Win32LastModifiedTime is not an "
                                   "RFC 1123 date.");
        return sc_error(db, rv, "Could not set the modification time");
    }
    return NULL;
}

static dav_error *db_remove(dav_db *db, const dav_prop_name *name)
{
    apr_size_t klen;
    const char *key = prop_key(db->pool, name, &klen);
    int rv = sidecar_del(db->sc, key, klen);

    if (rv == 0 || rv == -ENOENT)
        rv = sidecar_prepare(db->sc);
    if (rv != 0)
        return sc_error(db, rv, "Could not remove a property");
    return NULL;
}

static int db_exists(dav_db *db, const dav_prop_name *name)
{
    apr_size_t klen, vlen;
    const char *key = prop_key(db->pool, name, &klen);
    void *val;

    if (sidecar_get(db->sc, key, klen, &val, &vlen) != 0)
        return 0;
    free(val);
    return 1;
}

static int collect_name(void *ctx, const void *key, size_t klen,
                        const void *val, size_t vlen)
{
    dav_db *db = ctx;
    const char *k = key, *close;
    dav_prop_name *n;

    if (klen < 3 || k[0] != 'P' || k[1] != '{')
        return 0;
    close = memchr(k, '}', klen);
    if (!close)
        return 0;
    n = apr_array_push(db->names);
    n->ns = apr_pstrmemdup(db->pool, k + 2, close - (k + 2));
    n->name = apr_pstrmemdup(db->pool, close + 1, klen - (close + 1 - k));
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
    int rv;

    db->names = apr_array_make(db->pool, 8, sizeof(dav_prop_name));
    db->iter = 0;
    rv = sidecar_iter(db->sc, collect_name, db);
    if (rv != 0)
        return sc_error(db, rv, "Could not list the properties");
    return db_next_name(db, pname);
}

static dav_error *db_get_rollback(dav_db *db, const dav_prop_name *name,
                                  dav_deadprop_rollback **prollback)
{
    dav_deadprop_rollback *rb = apr_pcalloc(db->pool, sizeof(*rb));
    apr_size_t klen, vlen;
    const char *key = prop_key(db->pool, name, &klen);
    void *val;
    int rv;

    rb->name.ns = apr_pstrdup(db->pool, name->ns);
    rb->name.name = apr_pstrdup(db->pool, name->name);
    rv = sidecar_get(db->sc, key, klen, &val, &vlen);
    if (rv == 0) {
        rb->value = apr_pstrmemdup(db->pool, val, vlen);
        rb->len = vlen;
        free(val);
    }
    else if (rv != -ENOENT)
        return sc_error(db, rv, "Could not read a property");
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
    apr_size_t klen;
    const char *key = prop_key(db->pool, &rb->name, &klen);
    int rv;

    if (rb->value)
        rv = sidecar_put(db->sc, key, klen, rb->value, rb->len);
    else {
        rv = sidecar_del(db->sc, key, klen);
        if (rv == -ENOENT)
            rv = 0;
    }
    if (rv == 0)
        rv = sidecar_prepare(db->sc);
    if (rb->mtime_set)
        set_mtime(db, &rb->mtime);
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
