/*
 * Integrity headers.  A request may name the digests of what it sends;
 * the server computes exactly those (on the hashing thread, beside the
 * SHA-1 it records anyway) and refuses the write, before anything is
 * published, when one differs.  What each header covers, and why, is in
 * docs/DIGESTS.md.
 *
 * Parsing follows RFC 8941 (structured-field dictionaries) for
 * Content-Digest, Repr-Digest, Unencoded-Digest and Want-Repr-Digest, and
 * ownCloud's "TYPE:hex" list for OC-Checksum.  An algorithm the server
 * does not compute is refused by name (400), never skipped: a client that
 * asked for a check must not believe one was made.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "apr_base64.h"
#include "apr_lib.h"
#include "apr_strings.h"
#include "digest.h"
#include "sidecar/sidecar.h"

#define MAX_CHECKS 16

static const struct {
    const char *oc; /* OC-Checksum type, NULL if not accepted there */
    const char *sf; /* RFC 9530 key, NULL if not accepted there */
    unsigned len;   /* digest bytes */
} algs[DIGEST_NALG] = {
    [DIGEST_SHA1] = {"SHA1", NULL, 20},
    [DIGEST_MD5] = {"MD5", NULL, 16},
    [DIGEST_SHA256] = {"SHA256", "sha-256", 32},
    [DIGEST_SHA512] = {NULL, "sha-512", 64},
};

static const EVP_MD *alg_md(int alg)
{
    switch (alg) {
    case DIGEST_SHA1:
        return EVP_sha1();
    case DIGEST_MD5:
        return EVP_md5();
    case DIGEST_SHA256:
        return EVP_sha256();
    default:
        return EVP_sha512();
    }
}

typedef struct {
    const char *header; /* as named in messages */
    const char *name;   /* the algorithm as the header spells it */
    int alg;
    digest_over over;
    int hex; /* OC-Checksum: values in hex; else base64 */
    unsigned char want[64];
} check;

struct mirrordav_digests {
    check c[MAX_CHECKS];
    int n;
};

/* ------------------------------------------------- RFC 8941 dictionaries */

typedef enum { SF_BYTES, SF_INTEGER, SF_OTHER } sf_type;

typedef struct {
    const char *key;
    sf_type type;
    const char *bytes; /* SF_BYTES: the base64 text, not decoded */
    apr_size_t nbytes;
    apr_int64_t integer;
} sf_member;

static int is_lcalpha(int c)
{
    return c >= 'a' && c <= 'z';
}

static int is_tchar(int c)
{
    return c > 0x20 && c < 0x7f && !strchr("\"(),/;<=>?@[\\]{}", c);
}

static const char *sf_key(apr_pool_t *p, const char **s)
{
    const char *start = *s;

    if (!is_lcalpha(**s) && **s != '*')
        return NULL;
    while (is_lcalpha(**s) || apr_isdigit(**s) || (**s && strchr("_-.*", **s)))
        (*s)++;
    return apr_pstrmemdup(p, start, *s - start);
}

/* One bare item (RFC 8941 4.2.3.1) into M; 0, or -1 if malformed. */
static int sf_bare_item(const char **s, sf_member *m)
{
    const char *q = *s;

    m->type = SF_OTHER;
    if (*q == ':') {
        const char *start = ++q;

        while (apr_isalnum(*q) || *q == '+' || *q == '/' || *q == '=')
            q++;
        if (*q != ':')
            return -1;
        m->type = SF_BYTES;
        m->bytes = start;
        m->nbytes = q - start;
        *s = q + 1;
        return 0;
    }
    if (*q == '-' || apr_isdigit(*q)) {
        int neg = *q == '-', digits = 0, decimal = 0;
        apr_int64_t v = 0;

        if (neg)
            q++;
        for (; apr_isdigit(*q) || (*q == '.' && !decimal); q++) {
            if (*q == '.') {
                decimal = 1;
                continue;
            }
            if (++digits > 15)
                return -1;
            v = v * 10 + (*q - '0');
        }
        if (!digits || q[-1] == '.')
            return -1;
        if (!decimal) {
            m->type = SF_INTEGER;
            m->integer = neg ? -v : v;
        }
        *s = q;
        return 0;
    }
    if (*q == '"') {
        for (q++; *q != '"'; q++) {
            if (*q == '\\' && (q[1] == '"' || q[1] == '\\'))
                q++;
            else if (*q < 0x20 || *q > 0x7e)
                return -1;
        }
        *s = q + 1;
        return 0;
    }
    if (*q == '?') {
        if (q[1] != '0' && q[1] != '1')
            return -1;
        *s = q + 2;
        return 0;
    }
    if (apr_isalpha(*q) || *q == '*') {
        while (is_tchar(*q) || *q == ':' || *q == '/')
            q++;
        *s = q;
        return 0;
    }
    return -1;
}

/* Parameters after an item: checked for syntax and ignored. */
static int sf_params(apr_pool_t *p, const char **s)
{
    while (**s == ';') {
        sf_member ignored;

        (*s)++;
        while (**s == ' ')
            (*s)++;
        if (!sf_key(p, s))
            return -1;
        if (**s == '=') {
            (*s)++;
            if (sf_bare_item(s, &ignored) != 0)
                return -1;
        }
    }
    return 0;
}

/* A dictionary into *OUT (sf_member), in order (a repeated key is kept
 * twice: the caller lets the last one win, as RFC 8941 says).  Inner
 * lists are refused: no field here uses them.  0, or -1 if malformed. */
static int sf_dictionary(apr_pool_t *p, const char *s,
                         apr_array_header_t **out)
{
    apr_array_header_t *a = apr_array_make(p, 4, sizeof(sf_member));

    while (*s == ' ' || *s == '\t')
        s++;
    while (*s) {
        sf_member *m = apr_array_push(a);

        memset(m, 0, sizeof(*m));
        if (!(m->key = sf_key(p, &s)))
            return -1;
        if (*s == '=') {
            s++;
            if (sf_bare_item(&s, m) != 0)
                return -1;
        }
        else
            m->type = SF_OTHER; /* boolean true */
        if (sf_params(p, &s) != 0)
            return -1;
        while (*s == ' ' || *s == '\t')
            s++;
        if (!*s)
            break;
        if (*s++ != ',')
            return -1;
        while (*s == ' ' || *s == '\t')
            s++;
        if (!*s)
            return -1; /* trailing comma */
    }
    *out = a;
    return 0;
}

/* Strict base64 (RFC 4648 alphabet, padding optional as RFC 8941 allows)
 * of exactly LEN bytes into OUT; 0 or -1. */
static int decode_base64(const char *s, apr_size_t n, unsigned char *out,
                         unsigned len)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    apr_uint32_t acc = 0;
    unsigned got = 0, bits = 0;
    apr_size_t i;

    while (n > 0 && s[n - 1] == '=')
        n--;
    for (i = 0; i < n; i++) {
        const char *c = strchr(alphabet, s[i]);

        if (!c || !s[i])
            return -1; /* '=' inside */
        acc = (acc << 6) | (apr_uint32_t)(c - alphabet);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (got == len)
                return -1;
            out[got++] = (unsigned char)(acc >> bits);
        }
    }
    return got == len && (acc & ((1u << bits) - 1)) == 0 ? 0 : -1;
}

static const char *encode_base64(apr_pool_t *p, const unsigned char *b,
                                 unsigned len)
{
    char *out = apr_palloc(p, apr_base64_encode_len(len));

    apr_base64_encode_binary(out, b, len);
    return out;
}

static const char *encode_hex(apr_pool_t *p, const unsigned char *b,
                              unsigned len)
{
    static const char hex[] = "0123456789abcdef";
    char *out = apr_palloc(p, 2 * len + 1);
    unsigned i;

    for (i = 0; i < len; i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 15];
    }
    out[2 * len] = '\0';
    return out;
}

/* ------------------------------------------------------------ parsing */

static dav_error *bad(apr_pool_t *p, const char *header, const char *why)
{
    return mirrordav_error(p, HTTP_BAD_REQUEST, 0,
                           apr_psprintf(p, "%s: %s", header, why));
}

static dav_error *add_check(apr_pool_t *p, mirrordav_digests *d,
                            const char *header, const char *name, int alg,
                            digest_over over, int hex, check **out)
{
    int i;

    /* RFC 8941: of a repeated key, the last one counts. */
    for (i = 0; i < d->n; i++)
        if (!strcmp(d->c[i].header, header) && d->c[i].alg == alg)
            break;
    if (i == d->n) {
        if (d->n == MAX_CHECKS)
            return bad(p, header, "too many digests.");
        d->n++;
    }
    *out = &d->c[i];
    memset(*out, 0, sizeof(**out));
    (*out)->header = header;
    (*out)->name = name;
    (*out)->alg = alg;
    (*out)->over = over;
    (*out)->hex = hex;
    return NULL;
}

static dav_error *parse_sf_field(request_rec *r, mirrordav_digests *d,
                                 const char *header, digest_over over)
{
    apr_pool_t *p = r->pool;
    const char *v = apr_table_get(r->headers_in, header);
    apr_array_header_t *members;
    dav_error *err;
    int i, alg;

    if (!v)
        return NULL;
    if (sf_dictionary(p, v, &members) != 0 || members->nelts == 0)
        return bad(p, header,
                   "malformed (RFC 8941 dictionary of "
                   "algorithm=:base64:).");
    for (i = 0; i < members->nelts; i++) {
        const sf_member *m = &APR_ARRAY_IDX(members, i, sf_member);
        check *c;

        for (alg = 0; alg < DIGEST_NALG; alg++)
            if (algs[alg].sf && !strcmp(algs[alg].sf, m->key))
                break;
        if (alg == DIGEST_NALG)
            return bad(p, header,
                       apr_psprintf(p,
                                    "algorithm %s is not supported "
                                    "(sha-256, sha-512).",
                                    m->key));
        if (m->type != SF_BYTES)
            return bad(p, header,
                       apr_psprintf(p, "%s is not a byte sequence.", m->key));
        if ((err = add_check(p, d, header, algs[alg].sf, alg, over, 0, &c)))
            return err;
        if (decode_base64(m->bytes, m->nbytes, c->want, algs[alg].len) != 0)
            return bad(p, header,
                       apr_psprintf(p, "%s is not %u bytes of base64.", m->key,
                                    algs[alg].len));
    }
    return NULL;
}

static int hex_value(int c)
{
    if (apr_isdigit(c))
        return c - '0';
    c = apr_tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* OC-Checksum: TYPE:hex, several separated by spaces (commas too: httpd
 * joins repeated headers with ", "). */
static dav_error *parse_oc_checksum(request_rec *r, mirrordav_digests *d,
                                    digest_over over)
{
    static const char header[] = "OC-Checksum";
    apr_pool_t *p = r->pool;
    const char *v = apr_table_get(r->headers_in, header);
    char *copy, *tok, *last;
    int count = 0;

    if (!v)
        return NULL;
    copy = apr_pstrdup(p, v);
    for (tok = apr_strtok(copy, " \t,", &last); tok;
         tok = apr_strtok(NULL, " \t,", &last)) {
        char *colon = strchr(tok, ':');
        const char *hexs;
        dav_error *err;
        check *c;
        int alg;
        unsigned i;

        if (!colon || colon == tok)
            return bad(p, header, "malformed (TYPE:hex expected).");
        *colon = '\0';
        hexs = colon + 1;
        for (alg = 0; alg < DIGEST_NALG; alg++)
            if (algs[alg].oc && !strcasecmp(algs[alg].oc, tok))
                break;
        if (alg == DIGEST_NALG)
            return bad(p, header,
                       apr_psprintf(p,
                                    "algorithm %s is not supported "
                                    "(SHA1, MD5, SHA256).",
                                    tok));
        if (strlen(hexs) != 2 * algs[alg].len)
            return bad(p, header,
                       apr_psprintf(p, "%s needs %u hex digits.", tok,
                                    2 * algs[alg].len));
        if ((err = add_check(p, d, header, algs[alg].oc, alg, over, 1, &c)))
            return err;
        for (i = 0; i < algs[alg].len; i++) {
            int hi = hex_value(hexs[2 * i]), lo = hex_value(hexs[2 * i + 1]);

            if (hi < 0 || lo < 0)
                return bad(p, header, apr_psprintf(p, "%s is not hex.", tok));
            c->want[i] = (unsigned char)(hi << 4 | lo);
        }
        count++;
    }
    if (!count)
        return bad(p, header, "empty.");
    return NULL;
}

dav_error *mirrordav_digests_parse(request_rec *r, int patch,
                                   mirrordav_digests **out)
{
    mirrordav_digests *d = apr_pcalloc(r->pool, sizeof(*d));
    digest_over repr = patch ? DIGEST_OVER_RESULT : DIGEST_OVER_SENT;
    digest_over file = patch ? DIGEST_OVER_RESULT : DIGEST_OVER_DECODED;
    dav_error *err;

    *out = NULL;
    if ((err = parse_oc_checksum(r, d, file)) ||
        (err = parse_sf_field(r, d, "Content-Digest", DIGEST_OVER_SENT)) ||
        (err = parse_sf_field(r, d, "Repr-Digest", repr)) ||
        (err = parse_sf_field(r, d, "Unencoded-Digest", DIGEST_OVER_DECODED)))
        return err;
    if (d->n)
        *out = d;
    return NULL;
}

unsigned mirrordav_digests_needed(const mirrordav_digests *d, digest_over over)
{
    unsigned mask = 0;
    int i;

    for (i = 0; d && i < d->n; i++)
        if (d->c[i].over == over)
            mask |= DIGEST_BIT(d->c[i].alg);
    return mask;
}

/* ------------------------------------------------------------ hashing */

unsigned mirrordav_recorded_digests(const mirrordav_conf *conf)
{
    if (!mirrordav_hash_enabled(conf))
        return 0;
    return DIGEST_BIT(DIGEST_SHA1) |
           (conf->digests > 0
                ? (unsigned)conf->digests &
                      (DIGEST_BIT(DIGEST_MD5) | DIGEST_BIT(DIGEST_SHA256))
                : 0);
}

int mirrordav_hasher_create(mirrordav_hasher *h, unsigned mask, size_t bufsize,
                            int nbufs)
{
    const EVP_MD *mds[DIGEST_NALG];
    int alg, n = 0;

    h->pipe = NULL;
    for (alg = 0; alg < DIGEST_NALG; alg++) {
        h->index[alg] = -1;
        /* DIGEST_SHA1 is 0: when asked for, it is the pipe's first, whose
         * hex sha1_pipe_finish gives. */
        if (mask & DIGEST_BIT(alg)) {
            h->index[alg] = n;
            mds[n++] = alg_md(alg);
        }
    }
    if (!n)
        return 0;
    return sha1_pipe_create_md(&h->pipe, bufsize, nbufs, mds, n);
}

static unsigned hasher_digest(const mirrordav_hasher *h, int alg,
                              unsigned char *md)
{
    if (!h || !h->pipe || h->index[alg] < 0)
        return 0;
    return sha1_pipe_digest(h->pipe, h->index[alg], md);
}

int mirrordav_hasher_hex(const mirrordav_hasher *h, int alg, char *hex)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = hasher_digest(h, alg, md), i;

    if (!len)
        return -1;
    for (i = 0; i < len; i++)
        apr_snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return 0;
}

dav_error *mirrordav_digests_verify(apr_pool_t *p, const mirrordav_digests *d,
                                    digest_over over,
                                    const mirrordav_hasher *h)
{
    int i;

    for (i = 0; d && i < d->n; i++) {
        const check *c = &d->c[i];
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned len;

        if (c->over != over)
            continue;
        len = hasher_digest(h, c->alg, md);
        if (len != algs[c->alg].len)
            return mirrordav_error(p, HTTP_INTERNAL_SERVER_ERROR, 0,
                                   apr_psprintf(p, "%s: %s was not computed.",
                                                c->header, c->name));
        if (memcmp(md, c->want, len) != 0)
            return mirrordav_error(
                p, HTTP_BAD_REQUEST, 0,
                apr_psprintf(
                    p, "%s mismatch: %s expected %s, computed %s.", c->header,
                    c->name,
                    c->hex
                        ? encode_hex(p, c->want, len)
                        : apr_pstrcat(p, ":", encode_base64(p, c->want, len),
                                      ":", NULL),
                    c->hex ? encode_hex(p, md, len)
                           : apr_pstrcat(p, ":", encode_base64(p, md, len),
                                         ":", NULL)));
    }
    return NULL;
}

/* ------------------------------------------------------- PATCH-APPLY */

#define FEED_BUF (256 * 1024)

/* A byte stream into a hasher: buffers filled here, hashed on the
 * pipe's thread once full.  Destroyed with the request's pool. */
typedef struct {
    apr_pool_t *p;
    mirrordav_hasher h;
    unsigned char *buf;
    apr_size_t used;
    int finished;
} feed;

static apr_status_t feed_cleanup(void *data)
{
    feed *f = data;

    sha1_pipe_destroy(f->h.pipe);
    f->h.pipe = NULL;
    return APR_SUCCESS;
}

static dav_error *feed_start(apr_pool_t *p, unsigned mask, feed **out)
{
    feed *f;

    *out = NULL;
    if (!mask)
        return NULL;
    f = apr_pcalloc(p, sizeof(*f));
    f->p = p;
    if (mirrordav_hasher_create(&f->h, mask, FEED_BUF, 4) != 0)
        return mirrordav_error(p, HTTP_INTERNAL_SERVER_ERROR, 0,
                               "Could not start the digests.");
    apr_pool_cleanup_register(p, f, feed_cleanup, apr_pool_cleanup_null);
    f->buf = sha1_pipe_buffer(f->h.pipe);
    *out = f;
    return NULL;
}

static dav_error *feed_submit(feed *f)
{
    if (sha1_pipe_submit(f->h.pipe, f->used) != 0)
        return mirrordav_error(f->p, HTTP_INTERNAL_SERVER_ERROR, 0,
                               "Digest failed.");
    f->buf = sha1_pipe_buffer(f->h.pipe);
    f->used = 0;
    return NULL;
}

static dav_error *feed_add(feed *f, const void *buf, apr_size_t len)
{
    const char *b = buf;
    dav_error *err;

    while (f && len > 0) {
        apr_size_t n = FEED_BUF - f->used;

        if (n > len)
            n = len;
        memcpy(f->buf + f->used, b, n);
        f->used += n;
        b += n;
        len -= n;
        if (f->used == FEED_BUF && (err = feed_submit(f)) != NULL)
            return err;
    }
    return NULL;
}

/* LEN bytes of FD from OFF, read straight into the pipe's buffers. */
static dav_error *feed_fd(feed *f, int fd, apr_uint64_t off, apr_uint64_t len)
{
    dav_error *err;

    while (f && len > 0) {
        apr_size_t n = FEED_BUF - f->used;
        ssize_t got;

        if (n > len)
            n = (apr_size_t)len;
        got = pread(fd, f->buf + f->used, n, (off_t)off);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return mirrordav_errno_error(
                f->p, APR_FROM_OS_ERROR(got < 0 ? errno : EIO),
                "Could not read the file for its digest");
        f->used += (apr_size_t)got;
        off += (apr_uint64_t)got;
        len -= (apr_uint64_t)got;
        if (f->used == FEED_BUF && (err = feed_submit(f)) != NULL)
            return err;
    }
    return NULL;
}

static dav_error *feed_finish(feed *f)
{
    if (!f || f->finished)
        return NULL;
    f->finished = 1;
    if (sha1_pipe_finish(f->h.pipe, f->used, NULL) != 0)
        return mirrordav_error(f->p, HTTP_INTERNAL_SERVER_ERROR, 0,
                               "Digest failed.");
    return NULL;
}

struct mirrordav_patch_digests {
    apr_pool_t *p;
    mirrordav_digests *d;
    int gzip;
    feed *sent;    /* the body as sent (and decoded, for a plain body) */
    feed *decoded; /* a gzip body decoded */
    feed *result;  /* the file the patch produces */
};

dav_error *mirrordav_patch_digests_start(request_rec *r, int gzip,
                                         int basis_fd, apr_uint64_t s,
                                         mirrordav_patch_digests **out)
{
    mirrordav_patch_digests *pd;
    mirrordav_digests *d;
    unsigned dec;
    dav_error *err;

    *out = NULL;
    if ((err = mirrordav_digests_parse(r, 1, &d)) != NULL || !d)
        return err;
    pd = apr_pcalloc(r->pool, sizeof(*pd));
    pd->p = r->pool;
    pd->d = d;
    pd->gzip = gzip;
    dec = mirrordav_digests_needed(d, DIGEST_OVER_DECODED);
    if ((err = feed_start(r->pool,
                          mirrordav_digests_needed(d, DIGEST_OVER_SENT) |
                              (gzip ? 0 : dec),
                          &pd->sent)) ||
        (err = feed_start(r->pool, gzip ? dec : 0, &pd->decoded)) ||
        (err = feed_start(r->pool,
                          mirrordav_digests_needed(d, DIGEST_OVER_RESULT),
                          &pd->result)) ||
        (err = feed_fd(pd->result, basis_fd, 0, s)))
        return err;
    *out = pd;
    return NULL;
}

dav_error *mirrordav_patch_digests_sent(mirrordav_patch_digests *pd,
                                        const void *buf, apr_size_t len)
{
    return pd ? feed_add(pd->sent, buf, len) : NULL;
}

dav_error *mirrordav_patch_digests_decoded(mirrordav_patch_digests *pd,
                                           const void *buf, apr_size_t len)
{
    return pd ? feed_add(pd->decoded, buf, len) : NULL;
}

dav_error *mirrordav_patch_digests_output(mirrordav_patch_digests *pd,
                                          const void *buf, apr_size_t len)
{
    return pd ? feed_add(pd->result, buf, len) : NULL;
}

dav_error *mirrordav_patch_digests_check(mirrordav_patch_digests *pd,
                                         int basis_fd, apr_uint64_t tail,
                                         apr_uint64_t tail_len)
{
    dav_error *err;

    if (!pd)
        return NULL;
    if ((err = feed_fd(pd->result, basis_fd, tail, tail_len)) ||
        (err = feed_finish(pd->sent)) || (err = feed_finish(pd->decoded)) ||
        (err = feed_finish(pd->result)))
        return err;
    if ((err = mirrordav_digests_verify(pd->p, pd->d, DIGEST_OVER_SENT,
                                        pd->sent ? &pd->sent->h : NULL)) ||
        (err = mirrordav_digests_verify(
             pd->p, pd->d, DIGEST_OVER_DECODED,
             pd->gzip ? (pd->decoded ? &pd->decoded->h : NULL)
                      : (pd->sent ? &pd->sent->h : NULL))) ||
        (err = mirrordav_digests_verify(pd->p, pd->d, DIGEST_OVER_RESULT,
                                        pd->result ? &pd->result->h : NULL)))
        return err;
    return NULL;
}

/* ------------------------------------------------------- GET and HEAD */

static int hex_to_bytes(const char *hex, unsigned char *out, unsigned len)
{
    unsigned i;

    for (i = 0; i < len; i++) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);

        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

/* The weight Want-Repr-Digest gives KEY: 0 to 10, -1 if not listed. */
static int weight(const apr_array_header_t *prefs, const char *key)
{
    int i, w = -1;

    for (i = 0; i < prefs->nelts; i++) {
        const sf_member *m = &APR_ARRAY_IDX(prefs, i, sf_member);

        if (!strcmp(m->key, key))
            w = (int)m->integer; /* the last one counts */
    }
    return w;
}

/* Answers sha-256 when the record holds one for these bytes, unless the
 * request weighs it 0 (RFC 9530 lets a server send an algorithm not
 * asked for).  SHA-1 ("sha", deprecated in the RFC 9530 registry) only
 * when the request asks for it by name with a weight above 0: it is what
 * every file has, but no client should be handed a deprecated digest it
 * did not ask for.  Nothing when no hash is current. */
void mirrordav_digest_response(request_rec *r, const dav_resource *resource)
{
    const char *v = apr_table_get(r->headers_in, "Want-Repr-Digest");
    const apr_finfo_t *fi = &resource->info->finfo;
    const char *dir, *name, *out = NULL;
    apr_array_header_t *prefs;
    unsigned char md[32];
    sidecar_record rec, rec256;
    struct stat st;
    sidecar *sc;
    int i, rv;

    if (!v || resource->collection || !resource->exists)
        return;
    /* A preference that does not parse, or is not integers 0 to 10, is
     * ignored: the response is the same without it. */
    if (sf_dictionary(r->pool, v, &prefs) != 0)
        return;
    for (i = 0; i < prefs->nelts; i++) {
        const sf_member *m = &APR_ARRAY_IDX(prefs, i, sf_member);

        if (m->type != SF_INTEGER || m->integer < 0 || m->integer > 10)
            return;
    }
    mirrordav_sidecar_entry(resource, &dir, &name);
    if (sidecar_open(dir, name, 0, &sc) != 0)
        return;
    rv = sidecar_get_record(sc, &rec);
    sidecar_close(sc);
    /* After the record: its hash is served only while it names the bytes
     * at the path now, and those are the bytes whose length and ETag this
     * response carries (finfo, from the lookup). */
    if (rv != 0 || lstat(resource->info->path, &st) != 0 ||
        (apr_ino_t)st.st_ino != fi->inode || st.st_size != fi->size ||
        fi->mtime !=
            apr_time_from_sec(st.st_mtim.tv_sec) + st.st_mtim.tv_nsec / 1000)
        return;

    /* The SHA-256 is bound like the SHA-1 (the same identity, its own
     * version): the servability rule (snapshots: no ctime) is asked of a
     * copy of the record that holds it in the SHA-1's place. */
    rec256 = rec;
    rec256.sha1[0] = rec.sha256[0];
    rec256.sha1_version = rec.sha256_version;
    if (weight(prefs, "sha-256") != 0 &&
        mirrordav_hash_servable(resource, &rec256, &st) &&
        hex_to_bytes(rec.sha256, md, 32) == 0)
        out = apr_pstrcat(r->pool, "sha-256=:", encode_base64(r->pool, md, 32),
                          ":", NULL);
    if (weight(prefs, "sha") > 0 &&
        mirrordav_hash_servable(resource, &rec, &st) &&
        hex_to_bytes(rec.sha1, md, 20) == 0) {
        const char *sha = apr_pstrcat(
            r->pool, "sha=:", encode_base64(r->pool, md, 20), ":", NULL);

        out = out ? apr_pstrcat(r->pool, out, ", ", sha, NULL) : sha;
    }
    if (out)
        apr_table_setn(r->headers_out, "Repr-Digest", out);
}
