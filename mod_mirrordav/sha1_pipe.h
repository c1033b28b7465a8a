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

typedef struct sha1_pipe sha1_pipe;

int sha1_pipe_create(sha1_pipe **out, size_t bufsize, int nbufs);

/* The buffer to fill next (BUFSIZE bytes); waits while every buffer is
 * still being hashed. */
unsigned char *sha1_pipe_buffer(sha1_pipe *p);

/* Hands the current buffer, holding LEN bytes, to the hashing thread.
 * The caller must not touch it afterwards; take the next one with
 * sha1_pipe_buffer(). */
int sha1_pipe_submit(sha1_pipe *p, size_t len);

/* Hashes the first LEN bytes of the current buffer (the last, partial
 * one), waits for the thread and writes the digest as 40 lowercase hex
 * digits and a NUL. */
int sha1_pipe_finish(sha1_pipe *p, size_t len, char hex[41]);

/* Stops the thread (if any) and frees everything; NULL is fine. */
void sha1_pipe_destroy(sha1_pipe *p);

#endif
