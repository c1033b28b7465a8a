/*
 * mod_discard: httpd's ceiling for PUT.  A handler that reads the whole
 * request body through the input filters (as a DAV provider would), throws
 * it away and answers 204 No Content.  Used only by bench/run, which builds
 * it with `apxs -c` into a temporary directory and loads it with:
 *
 *   LoadModule discard_module /tmp/.../.libs/mod_discard.so
 *   <Location /dav>
 *       SetHandler discard
 *   </Location>
 */
#include "httpd.h"
#include "http_config.h"
#include "http_protocol.h"
#include "http_request.h"
#include "util_filter.h"
#include "apr_buckets.h"
#include "apr_strings.h"

module AP_MODULE_DECLARE_DATA discard_module;

static int discard_handler(request_rec *r)
{
    apr_bucket_brigade *bb;
    apr_off_t total = 0;
    int seen_eos = 0;

    if (!r->handler || strcmp(r->handler, "discard") != 0)
        return DECLINED;

    bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    do {
        apr_bucket *b;
        apr_status_t rv = ap_get_brigade(r->input_filters, bb, AP_MODE_READBYTES,
                                         APR_BLOCK_READ, 65536);
        if (rv != APR_SUCCESS)
            return ap_map_http_request_error(rv, HTTP_BAD_REQUEST);
        for (b = APR_BRIGADE_FIRST(bb); b != APR_BRIGADE_SENTINEL(bb);
             b = APR_BUCKET_NEXT(b)) {
            const char *data;
            apr_size_t len;
            if (APR_BUCKET_IS_EOS(b)) {
                seen_eos = 1;
                break;
            }
            if (APR_BUCKET_IS_METADATA(b))
                continue;
            rv = apr_bucket_read(b, &data, &len, APR_BLOCK_READ);
            if (rv != APR_SUCCESS)
                return HTTP_BAD_REQUEST;
            total += len;
        }
        apr_brigade_cleanup(bb);
    } while (!seen_eos);

    apr_table_setn(r->headers_out, "X-Discarded",
                   apr_off_t_toa(r->pool, total));
    r->status = HTTP_NO_CONTENT;
    return OK;
}

static void discard_hooks(apr_pool_t *p)
{
    (void)p;
    ap_hook_handler(discard_handler, NULL, NULL, APR_HOOK_MIDDLE);
}

AP_DECLARE_MODULE(discard) = {
    STANDARD20_MODULE_STUFF,
    NULL, NULL, NULL, NULL, NULL,
    discard_hooks
};
