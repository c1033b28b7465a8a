/*
 * What the mounted-share clients send that plain WebDAV does not cover:
 *
 * - Windows (Office, the mini-redirector) looks for `MS-Author-Via: DAV`
 *   on OPTIONS before it treats a folder as writable WebDAV: mod_dav's
 *   own OPTIONS handler sends it (t/44 checks that it stays so).
 * - macOS Finder sends PUT bodies chunked, with the length it means to
 *   send in `X-Expected-Entity-Length`.  The body is taken as any chunked
 *   body; the announced length is then held against the bytes that came:
 *   a body shorter (a Finder cut off mid-copy) or longer than announced
 *   is refused with 400 naming the header, and nothing is stored (the
 *   check runs in close_stream before the publication).  A malformed
 *   value, or one that contradicts Content-Length, is refused before the
 *   body is read.
 * - Windows' `Translate: f` (send the source, not a rendering) changes
 *   nothing here: files are always sent as stored.  It is accepted on
 *   every method, by not being looked at.
 */
#include "apr_lib.h"
#include "apr_strings.h"
#include "http_core.h"
#include "http_protocol.h"
#include "util_filter.h"
#include "mirrordav.h"

#define EXPECTED "X-Expected-Entity-Length"
#define NOTE     "mirrordav-expected-length"

typedef struct {
    apr_off_t expected;
    apr_off_t received;
} expected_len;

static ap_filter_rec_t *count_handle;

/* Sends STATUS with a one-line plain body naming the cause, before the
 * body is read: the connection closes rather than reading it to the end. */
static int refuse(request_rec *r, int status, const char *msg)
{
    r->connection->keepalive = AP_CONN_CLOSE;
    ap_custom_response(r, status, apr_pstrcat(r->pool, msg, "\n", NULL));
    return status;
}

/* Counts the body's bytes after the chunked coding is removed: a
 * content filter, so it sits above the core's HTTP_IN (a protocol one). */
static apr_status_t count_filter(ap_filter_t *f, apr_bucket_brigade *bb,
                                 ap_input_mode_t mode, apr_read_type_e block,
                                 apr_off_t readbytes)
{
    expected_len *x = f->ctx;
    apr_status_t rv = ap_get_brigade(f->next, bb, mode, block, readbytes);
    apr_off_t n = 0;

    if (rv == APR_SUCCESS && mode != AP_MODE_SPECULATIVE &&
        apr_brigade_length(bb, 1, &n) == APR_SUCCESS)
        x->received += n;
    return rv;
}

int mirrordav_quirks_fixups(request_rec *r)
{
    const char *v, *cl;
    expected_len *x;
    char *end;

    if (r->method_number != M_PUT ||
        !(v = apr_table_get(r->headers_in, EXPECTED)))
        return DECLINED;
    x = apr_pcalloc(r->pool, sizeof(*x));
    if (!apr_isdigit(*v) ||
        apr_strtoff(&x->expected, v, &end, 10) != APR_SUCCESS || *end)
        return refuse(r, HTTP_BAD_REQUEST,
                      "X-Expected-Entity-Length must be a byte count.");
    cl = apr_table_get(r->headers_in, "Content-Length");
    if (cl && apr_strtoi64(cl, NULL, 10) != x->expected)
        return refuse(r, HTTP_BAD_REQUEST,
                      "X-Expected-Entity-Length differs from "
                      "Content-Length.");
    apr_pool_userdata_setn(x, NOTE, NULL, r->pool);
    ap_add_input_filter_handle(count_handle, x, r, r->connection);
    return DECLINED;
}

dav_error *mirrordav_quirks_check_body(request_rec *r)
{
    expected_len *x = NULL;

    apr_pool_userdata_get((void **)&x, NOTE, r->pool);
    if (!x || x->received == x->expected)
        return NULL;
    return mirrordav_error(
        r->pool, HTTP_BAD_REQUEST, 0,
        apr_psprintf(r->pool,
                     "X-Expected-Entity-Length announced %" APR_OFF_T_FMT
                     " bytes; the body had %" APR_OFF_T_FMT
                     ". Nothing was stored.",
                     x->expected, x->received));
}

void mirrordav_register_quirks(void)
{
    count_handle = ap_register_input_filter(
        "MIRRORDAV_EXPECTED_LENGTH", count_filter, NULL, AP_FTYPE_CONTENT_SET);
}
