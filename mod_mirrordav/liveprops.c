/*
 * Live properties: the DAV: ones that mod_dav leaves to the provider
 * (resourcetype, lockdiscovery, supportedlock and getcontenttype are the
 * core's), and the server's own records in the mirrordav namespace, which
 * are protected: PROPPATCH cannot set them.
 */
#include <string.h>
#include <sys/stat.h>

#include "apr_date.h"
#include "apr_strings.h"
#include "apr_time.h"
#include "mirrordav.h"
#include "sidecar/sidecar.h"

enum { NS_DAV, NS_MIRRORDAV, NS_WIN32, NS_OC };

enum {
    PROPID_sha1 = 1,
    PROPID_content_version,
    PROPID_win32_mtime,
    PROPID_oc_checksums,
};

static const char *const namespace_uris[] = {
    "DAV:", MIRRORDAV_NS,
    "urn:schemas-microsoft-com:", "http://owncloud.org/ns", NULL};

static const dav_liveprop_spec props[] = {
    {NS_DAV, "creationdate", DAV_PROPID_creationdate, 0},
    {NS_DAV, "getcontentlength", DAV_PROPID_getcontentlength, 0},
    {NS_DAV, "getetag", DAV_PROPID_getetag, 0},
    {NS_DAV, "getlastmodified", DAV_PROPID_getlastmodified, 0},
    {NS_MIRRORDAV, "sha1", PROPID_sha1, 0},
    {NS_MIRRORDAV, "content-version", PROPID_content_version, 0},
    /* Stored as a dead property; known here only to validate its date
     * before PROPPATCH changes anything (propdb.c sets the mtime). */
    {NS_WIN32, "Win32LastModifiedTime", PROPID_win32_mtime, 1},
    /* ownCloud's: the recorded hashes as sync clients (rclone's owncloud
     * vendor) read them. */
    {NS_OC, "checksums", PROPID_oc_checksums, 0},
    {0, NULL, 0, 0},
};

static const dav_hooks_liveprop hooks_liveprop;

static const dav_liveprop_group liveprop_group = {props, namespace_uris,
                                                  &hooks_liveprop};

static const char *iso8601(apr_pool_t *p, apr_time_t t)
{
    apr_time_exp_t x;

    apr_time_exp_gmt(&x, t);
    return apr_psprintf(p, "%.4d-%.2d-%.2dT%.2d:%.2d:%.2dZ", x.tm_year + 1900,
                        x.tm_mon + 1, x.tm_mday, x.tm_hour, x.tm_min,
                        x.tm_sec);
}

static int read_record(const dav_resource *resource, sidecar_record *rec)
{
    const char *dir, *name;
    sidecar *sc;
    int rv;

    mirrordav_sidecar_entry(resource, &dir, &name);
    memset(rec, 0, sizeof(*rec));
    if ((rv = sidecar_open(dir, name, 0, &sc)) != 0)
        return rv;
    rv = sidecar_get_record(sc, rec);
    sidecar_close(sc);
    return rv;
}

static dav_prop_insert insert_prop(const dav_resource *resource, int propid,
                                   dav_prop_insert what, apr_text_header *phdr)
{
    apr_pool_t *p = resource->pool;
    const apr_finfo_t *fi;
    const dav_liveprop_spec *info;
    const char *value = NULL, *s;
    sidecar_record rec;
    int global_ns, pending = 0;

    if (resource->hooks != &mirrordav_hooks_repository || !resource->exists)
        return DAV_PROP_INSERT_NOTDEF;
    fi = &resource->info->finfo;

    switch (propid) {
    case DAV_PROPID_creationdate:
        value = iso8601(p, mirrordav_creation_time(resource));
        break;
    case DAV_PROPID_getcontentlength:
        if (resource->collection)
            return DAV_PROP_INSERT_NOTDEF;
        value = apr_off_t_toa(p, fi->size);
        break;
    case DAV_PROPID_getetag:
        value = apr_xml_quote_string(p, mirrordav_etag(resource), 0);
        break;
    case DAV_PROPID_getlastmodified: {
        char *buf = apr_palloc(p, APR_RFC822_DATE_LEN);
        apr_rfc822_date(buf, fi->mtime);
        value = buf;
        break;
    }
    case PROPID_sha1:
    case PROPID_content_version:
        if (resource->collection)
            return DAV_PROP_INSERT_NOTDEF;
        if (what == DAV_PROP_INSERT_VALUE) {
            struct stat st;

            if (read_record(resource, &rec) != 0)
                return DAV_PROP_INSERT_NOTDEF;
            if (propid == PROPID_content_version) {
                if (!rec.version && !rec.sha1[0])
                    return DAV_PROP_INSERT_NOTDEF; /* no record */
                value = apr_psprintf(p, "%" APR_UINT64_T_FMT,
                                     (apr_uint64_t)rec.version);
                break;
            }
            /* A fresh lstat, after the record was read: the hash is
             * served only while it names the bytes at the path now
             * (finfo has microseconds only, and may predate the read). */
            if (lstat(resource->info->path, &st) != 0)
                return DAV_PROP_INSERT_NOTDEF;
            if (!mirrordav_hash_servable(resource, &rec, &st)) {
                /* Pending: the record describes these bytes (bumped by
                 * PATCH-APPLY, sidecar/patchlog.c) but their SHA-1 is
                 * still being computed.  Answered as an empty value
                 * marked <sha1 mirrordav:pending="true"/>, never as a
                 * value.  Anything else is unknown: not answered. */
                if (!rec.sha1[0] && rec.version && rec.bound &&
                    rec.ino == (apr_uint64_t)st.st_ino &&
                    rec.size == (apr_uint64_t)st.st_size &&
                    rec.mtime == st.st_mtim.tv_sec &&
                    rec.mtime_nsec == (apr_uint32_t)st.st_mtim.tv_nsec)
                    pending = 1;
                else
                    return DAV_PROP_INSERT_NOTDEF; /* unknown */
            }
            else
                value = apr_pstrdup(p, rec.sha1);
        }
        break;
    case PROPID_oc_checksums:
        if (resource->collection)
            return DAV_PROP_INSERT_NOTDEF;
        if (what == DAV_PROP_INSERT_VALUE) {
            sidecar_record rec256;
            struct stat st;

            /* As ownCloud answers it: <oc:checksum>SHA1:hex</oc:checksum>,
             * the types separated by spaces.  Only hashes that name the
             * bytes at the path now (a fresh lstat after the read, as for
             * sha1 above); an unknown or pending one leaves the value
             * empty, which clients read as "no hash". */
            value = "";
            if (read_record(resource, &rec) != 0 ||
                lstat(resource->info->path, &st) != 0)
                break;
            if (mirrordav_hash_servable(resource, &rec, &st))
                value = apr_pstrcat(p, "SHA1:", rec.sha1, NULL);
            /* The SHA-256 and the MD5 are bound like the SHA-1 (each with
             * its own version): the same servability rule, asked of a
             * copy of the record holding each in the SHA-1's place. */
            rec256 = rec;
            rec256.sha1[0] = rec.sha256[0];
            rec256.sha1_version = rec.sha256_version;
            if (mirrordav_hash_servable(resource, &rec256, &st))
                value = apr_pstrcat(p, value, *value ? " " : "",
                                    "SHA256:", rec.sha256, NULL);
            rec256.sha1[0] = rec.md5[0];
            rec256.sha1_version = rec.md5_version;
            if (mirrordav_hash_servable(resource, &rec256, &st))
                value = apr_pstrcat(p, value, *value ? " " : "",
                                    "MD5:", rec.md5, NULL);
        }
        break;
    default:
        return DAV_PROP_INSERT_NOTDEF;
    }

    global_ns = dav_get_liveprop_info(propid, &liveprop_group, &info);
    if (what == DAV_PROP_INSERT_SUPPORTED)
        s = apr_psprintf(p,
                         "<D:supported-live-property D:name=\"%s\" "
                         "D:namespace=\"%s\"/>" DEBUG_CR,
                         info->name, namespace_uris[info->ns]);
    else {
        /* Once per property per member of a PROPFIND: no format parsing. */
        const char *qname = apr_pstrcat(p, "lp", apr_itoa(p, global_ns), ":",
                                        info->name, NULL);

        if (pending)
            s = apr_pstrcat(p, "<", qname, " lp", apr_itoa(p, global_ns),
                            ":pending=\"true\"/>" DEBUG_CR, NULL);
        else if (what == DAV_PROP_INSERT_VALUE &&
                 propid == PROPID_oc_checksums) {
            const char *inner = apr_pstrcat(p, "lp", apr_itoa(p, global_ns),
                                            ":checksum", NULL);

            s = *value
                    ? apr_pstrcat(p, "<", qname, "><", inner, ">", value, "</",
                                  inner, "></", qname, ">" DEBUG_CR, NULL)
                    : apr_pstrcat(p, "<", qname, "/>" DEBUG_CR, NULL);
        }
        else if (what == DAV_PROP_INSERT_VALUE)
            s = apr_pstrcat(p, "<", qname, ">", value, "</", qname,
                            ">" DEBUG_CR, NULL);
        else
            s = apr_pstrcat(p, "<", qname, "/>" DEBUG_CR, NULL);
    }
    apr_text_append(p, phdr, s);
    return what;
}

static int is_writable(const dav_resource *resource, int propid)
{
    return propid == PROPID_win32_mtime;
}

static dav_error *patch_validate(const dav_resource *resource,
                                 const apr_xml_elem *elem, int operation,
                                 void **context, int *defer_to_dead)
{
    if (operation == DAV_PROP_OP_SET &&
        apr_date_parse_rfc(dav_xml_get_cdata(elem, resource->pool, 1)) ==
            APR_DATE_BAD) {
        *defer_to_dead = 0;
        return mirrordav_error(resource->pool, HTTP_BAD_REQUEST, 0,
                               "Win32LastModifiedTime is not an RFC 1123 "
                               "date.");
    }
    *defer_to_dead = 1;
    return NULL;
}

static const dav_hooks_liveprop hooks_liveprop = {
    insert_prop, is_writable, namespace_uris, patch_validate,
    NULL,        NULL,        NULL,           NULL,
};

static int find_liveprop(const dav_resource *resource, const char *ns_uri,
                         const char *name, const dav_hooks_liveprop **hooks)
{
    if (resource->hooks != &mirrordav_hooks_repository)
        return 0;
    return dav_do_find_liveprop(ns_uri, name, &liveprop_group, hooks);
}

static void insert_all_liveprops(request_rec *r, const dav_resource *resource,
                                 dav_prop_insert what, apr_text_header *phdr)
{
    if (resource->hooks != &mirrordav_hooks_repository || !resource->exists)
        return;
    (void)insert_prop(resource, DAV_PROPID_creationdate, what, phdr);
    (void)insert_prop(resource, DAV_PROPID_getcontentlength, what, phdr);
    (void)insert_prop(resource, DAV_PROPID_getlastmodified, what, phdr);
    (void)insert_prop(resource, DAV_PROPID_getetag, what, phdr);
    /* The SHA-1 costs a sidecar read per member: PROPFIND names it when
     * it wants it, as RFC 4918 lets allprop leave such properties out.
     * propname lists every name (RFC 4918 9.1); a name costs no read. */
    if (what == DAV_PROP_INSERT_NAME && !resource->collection) {
        (void)insert_prop(resource, PROPID_sha1, what, phdr);
        (void)insert_prop(resource, PROPID_content_version, what, phdr);
        (void)insert_prop(resource, PROPID_oc_checksums, what, phdr);
    }
}

static void gather_propsets(apr_array_header_t *uris)
{
    /* No propsets to advertise. */
}

void mirrordav_register_liveprops(apr_pool_t *p)
{
    dav_register_liveprop_group(p, &liveprop_group);
}

void mirrordav_register_liveprop_hooks(void)
{
    dav_hook_gather_propsets(gather_propsets, NULL, NULL, APR_HOOK_MIDDLE);
    dav_hook_find_liveprop(find_liveprop, NULL, NULL, APR_HOOK_MIDDLE);
    dav_hook_insert_all_liveprops(insert_all_liveprops, NULL, NULL,
                                  APR_HOOK_MIDDLE);
}
