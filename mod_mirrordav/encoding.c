/*
 * Content codings of request bodies.  PUT and PATCH-APPLY accept gzip,
 * named by Content-Encoding or by Content-Transfer-Encoding (the header the
 * original protocol used), and decode it while streaming (gzip_input.c).
 * Any other coding is refused with 415, as RFC 9110 section 8.4.1 asks,
 * and the reply says what is accepted (RFC 7694).
 */
#include <strings.h>

#include "apr_strings.h"
#include "mirrordav.h"
#include "gzip_input.h"

static int is_identity(const char *v)
{
    return !v || !*v || !strcasecmp(v, "identity");
}

static int is_gzip(const char *v)
{
    return v && (!strcasecmp(v, "gzip") || !strcasecmp(v, "x-gzip"));
}

dav_error *mirrordav_body_coding(request_rec *r, int *gzip)
{
    const char *ce = apr_table_get(r->headers_in, "Content-Encoding");
    const char *cte =
        apr_table_get(r->headers_in, "Content-Transfer-Encoding");

    *gzip = 0;
    if ((is_gzip(ce) && is_identity(cte)) ||
        (is_gzip(cte) && is_identity(ce))) {
        *gzip = 1;
        return NULL;
    }
    if (is_identity(ce) && (is_identity(cte) || !strcasecmp(cte, "binary")))
        return NULL;
    apr_table_setn(r->err_headers_out, "Accept-Encoding", "gzip");
    return mirrordav_error(
        r->pool, HTTP_UNSUPPORTED_MEDIA_TYPE, 0,
        apr_psprintf(r->pool,
                     "Unsupported content coding '%s': this server accepts "
                     "gzip or no coding.",
                     ap_escape_html(r->pool, is_identity(ce) ? cte : ce)));
}

dav_error *mirrordav_gzip_error(request_rec *r, const gzin *g, int rc)
{
    switch (rc) {
    case GZIN_BAD_DATA:
        return mirrordav_error(r->pool, HTTP_BAD_REQUEST, 0,
                               apr_pstrcat(r->pool, "Invalid gzip body: ",
                                           gzin_message(g), ".", NULL));
    case GZIN_TOO_LARGE:
        return mirrordav_error(r->pool, HTTP_REQUEST_ENTITY_TOO_LARGE, 0,
                               "The decoded body exceeds "
                               "MirrorDAVMaxDecodedSize.");
    default:
        return mirrordav_error(
            r->pool, HTTP_INTERNAL_SERVER_ERROR, 0,
            apr_pstrcat(r->pool, "gzip decoder: ", gzin_message(g), NULL));
    }
}

apr_uint64_t mirrordav_decoded_limit(const mirrordav_conf *conf)
{
    return conf->max_decoded > 0 ? (apr_uint64_t)conf->max_decoded : 0;
}
