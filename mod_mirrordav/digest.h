/*
 * digest.c: the integrity headers of a request (OC-Checksum, RFC 9530
 * Content-Digest and Repr-Digest, the draft Unencoded-Digest), the
 * digests that computing them needs on the hashing thread (sha1_pipe),
 * their check before anything is published, and Repr-Digest on GET/HEAD
 * from the sidecar record.  docs/DIGESTS.md says what each header covers.
 */
#ifndef MIRRORDAV_DIGEST_H
#define MIRRORDAV_DIGEST_H

#include "mirrordav.h"
#include "sha1_pipe.h"

enum { DIGEST_SHA1, DIGEST_MD5, DIGEST_SHA256, DIGEST_SHA512, DIGEST_NALG };
#define DIGEST_BIT(alg) (1u << (alg))

/* The bytes a digest is computed over. */
typedef enum {
    DIGEST_OVER_SENT,    /* the body as sent (gzip bytes for a gzip body) */
    DIGEST_OVER_DECODED, /* the body decoded (the same for a plain body) */
    DIGEST_OVER_RESULT   /* PATCH-APPLY: the file the patch produces */
} digest_over;

typedef struct mirrordav_digests mirrordav_digests;

/* Parses the request's integrity headers.  For PUT (PATCH 0) OC-Checksum
 * and Unencoded-Digest cover the decoded body, Content-Digest and
 * Repr-Digest the body as sent.  For PATCH-APPLY, OC-Checksum and
 * Repr-Digest cover the resulting file.  *OUT is NULL when the request
 * sends none.  400 naming the header for a malformed one, and naming the
 * algorithm for one the server does not support. */
dav_error *mirrordav_digests_parse(request_rec *r, int patch,
                                   mirrordav_digests **out);

/* The algorithms (DIGEST_BIT mask) D needs over OVER; 0 for a NULL D. */
unsigned mirrordav_digests_needed(const mirrordav_digests *d,
                                  digest_over over);

/* A hashing pipe for the algorithms of a mask, and where each one is. */
typedef struct {
    sha1_pipe *pipe;        /* NULL: nothing to compute */
    int index[DIGEST_NALG]; /* in the pipe, -1 if not computed */
} mirrordav_hasher;

/* Starts H for MASK (SHA-1 first when in MASK).  0 or a negative errno. */
int mirrordav_hasher_create(mirrordav_hasher *h, unsigned mask, size_t bufsize,
                            int nbufs);
/* After sha1_pipe_finish: ALG's digest as lowercase hex into HEX (129
 * bytes); 0, or -1 if H did not compute it. */
int mirrordav_hasher_hex(const mirrordav_hasher *h, int alg, char *hex);

/* After sha1_pipe_finish: compares every digest D sent over OVER with
 * H's.  NULL, or 400 naming the header, the algorithm, the value sent and
 * the one computed. */
dav_error *mirrordav_digests_verify(apr_pool_t *p, const mirrordav_digests *d,
                                    digest_over over,
                                    const mirrordav_hasher *h);

/* PATCH-APPLY's digests: the body as sent, the decoded delta, and the
 * resulting file, which is the basis's bytes before S, the delta's output
 * O, and (without truncation) the basis's bytes after O's range.  Each is
 * hashed on a hashing thread as it streams; the basis's own bytes are
 * read only when a digest of the result is asked for.  Every function
 * takes a NULL PD (no digest asked for) and then does nothing. */
typedef struct mirrordav_patch_digests mirrordav_patch_digests;

/* Parses the request's headers (400 as mirrordav_digests_parse) and
 * starts what they need; for a digest of the result, hashes the basis
 * (BASIS_FD) from 0 to S now. */
dav_error *mirrordav_patch_digests_start(request_rec *r, int gzip,
                                         int basis_fd, apr_uint64_t s,
                                         mirrordav_patch_digests **pd);
/* The body's bytes as they arrive, and as decoded (gzip only). */
dav_error *mirrordav_patch_digests_sent(mirrordav_patch_digests *pd,
                                        const void *buf, apr_size_t len);
dav_error *mirrordav_patch_digests_decoded(mirrordav_patch_digests *pd,
                                           const void *buf, apr_size_t len);
/* The delta's output O, in order. */
dav_error *mirrordav_patch_digests_output(mirrordav_patch_digests *pd,
                                          const void *buf, apr_size_t len);
/* Once the body is applied and before anything is published: hashes the
 * basis from TAIL for TAIL_LEN bytes (what follows O in the result), then
 * compares every digest.  NULL, or 400 as mirrordav_digests_verify. */
dav_error *mirrordav_patch_digests_check(mirrordav_patch_digests *pd,
                                         int basis_fd, apr_uint64_t tail,
                                         apr_uint64_t tail_len);

/* GET/HEAD of a file: Repr-Digest when the request sends Want-Repr-Digest
 * and the sidecar record holds a hash current for the bytes at the path
 * (never computed here). */
void mirrordav_digest_response(request_rec *r, const dav_resource *resource);

/* MirrorDAVDigest: the algorithms recorded on receipt (DIGEST_BIT mask:
 * SHA-1, and MD5 and SHA-256 when configured; none with MirrorDAVHash
 * Off). */
unsigned mirrordav_recorded_digests(const mirrordav_conf *conf);

#endif
