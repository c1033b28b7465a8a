/*
 * sha1_pipe: SHA-1 of a byte stream, computed on a second thread while the
 * caller goes on receiving and writing.  Hashing is the most expensive
 * step of a large PUT; overlapping it with the network and the disk keeps
 * its cost off the request's wall time.
 *
 * The caller fills buffers owned by the pipe and submits them; the hashing
 * thread starts only when the first full buffer is submitted, so a small
 * body is hashed inline at finish and never pays for a thread.  Memory is
 * NBUFS buffers of BUFSIZE bytes, whatever the stream's length.
 *
 * Plain C (pthreads, OpenSSL).  Functions return 0 or a negative errno.
 */
#ifndef MIRRORDAV_SHA1_PIPE_H
#define MIRRORDAV_SHA1_PIPE_H

#include <stddef.h>

#include <openssl/evp.h>

typedef struct sha1_pipe sha1_pipe;

#define SHA1_PIPE_MAX_MD 6

int sha1_pipe_create(sha1_pipe **out, size_t bufsize, int nbufs);
/* The same with the N digests MDS (1 to SHA1_PIPE_MAX_MD, SHA-1 or not)
 * all computed over the same bytes on the same thread, instead of SHA-1
 * alone: digest I of the pipe is MDS[I]. */
int sha1_pipe_create_md(sha1_pipe **out, size_t bufsize, int nbufs,
                        const EVP_MD *const *mds, int n);

/* The buffer to fill next (BUFSIZE bytes); waits while every buffer is
 * still being hashed. */
unsigned char *sha1_pipe_buffer(sha1_pipe *p);

/* Hands the current buffer, holding LEN bytes, to the hashing thread.
 * The caller must not touch it afterwards; take the next one with
 * sha1_pipe_buffer(). */
int sha1_pipe_submit(sha1_pipe *p, size_t len);

/* Hashes the first LEN bytes of the current buffer (the last, partial
 * one), waits for the thread and finalises every digest; writes digest 0
 * as 40 lowercase hex digits and a NUL into HEX unless HEX is NULL (then
 * digest 0 may be any algorithm). */
int sha1_pipe_finish(sha1_pipe *p, size_t len, char hex[41]);

/* After sha1_pipe_finish: digest I, raw, into MD (EVP_MAX_MD_SIZE bytes);
 * its length, or 0 if I is out of range. */
unsigned sha1_pipe_digest(const sha1_pipe *p, int i, unsigned char *md);

/* Stops the thread (if any) and frees everything; NULL is fine. */
void sha1_pipe_destroy(sha1_pipe *p);

#endif
