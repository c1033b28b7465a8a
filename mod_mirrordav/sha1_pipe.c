/*
 * sha1_pipe: a ring of buffers between the request thread (producer) and
 * one hashing thread (consumer).  Buffers are hashed in submission order,
 * by every digest of the pipe in turn (SHA-1 by default; digest.c adds
 * those a request asks for).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "sha1_pipe.h"

struct sha1_pipe {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    int started, stopping, failed;
    EVP_MD_CTX *ctx[SHA1_PIPE_MAX_MD];
    int nmd;
    unsigned char md[SHA1_PIPE_MAX_MD][EVP_MAX_MD_SIZE]; /* finished */
    unsigned mdlen[SHA1_PIPE_MAX_MD];

    unsigned char **bufs;
    size_t *lens;
    size_t bufsize;
    int nbufs;
    int head;  /* next buffer the producer fills */
    int tail;  /* next buffer the consumer hashes */
    int count; /* submitted, not yet hashed */
};

static int update_all(sha1_pipe *p, const unsigned char *b, size_t len)
{
    int k;

    for (k = 0; k < p->nmd; k++)
        if (EVP_DigestUpdate(p->ctx[k], b, len) != 1)
            return -1;
    return 0;
}

static void *hash_thread(void *arg)
{
    sha1_pipe *p = arg;

    pthread_mutex_lock(&p->mu);
    for (;;) {
        int i;
        size_t len;

        while (p->count == 0 && !p->stopping)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->count == 0)
            break; /* stopping and drained */
        i = p->tail;
        len = p->lens[i];
        pthread_mutex_unlock(&p->mu);

        /* Only this thread touches ctx once it has started. */
        if (update_all(p, p->bufs[i], len) != 0)
            p->failed = 1;

        pthread_mutex_lock(&p->mu);
        p->tail = (p->tail + 1) % p->nbufs;
        p->count--;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int sha1_pipe_create(sha1_pipe **out, size_t bufsize, int nbufs)
{
    const EVP_MD *sha1 = EVP_sha1();

    return sha1_pipe_create_md(out, bufsize, nbufs, &sha1, 1);
}

int sha1_pipe_create_md(sha1_pipe **out, size_t bufsize, int nbufs,
                        const EVP_MD *const *mds, int n)
{
    sha1_pipe *p;
    int i;

    if (n < 1 || n > SHA1_PIPE_MAX_MD)
        return -EINVAL;
    if (!(p = calloc(1, sizeof(*p))))
        return -ENOMEM;
    p->bufsize = bufsize;
    p->nbufs = nbufs;
    p->bufs = calloc(nbufs, sizeof(*p->bufs));
    p->lens = calloc(nbufs, sizeof(*p->lens));
    if (!p->bufs || !p->lens)
        goto fail;
    for (p->nmd = 0; p->nmd < n; p->nmd++)
        if (!(p->ctx[p->nmd] = EVP_MD_CTX_new()) ||
            EVP_DigestInit_ex(p->ctx[p->nmd], mds[p->nmd], NULL) != 1) {
            p->nmd++; /* freed below, even if half set up */
            goto fail;
        }
    for (i = 0; i < nbufs; i++)
        if (!(p->bufs[i] = malloc(bufsize)))
            goto fail;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    *out = p;
    return 0;
fail:
    if (p->bufs)
        for (i = 0; i < nbufs; i++)
            free(p->bufs[i]);
    free(p->bufs);
    free(p->lens);
    for (i = 0; i < p->nmd; i++)
        EVP_MD_CTX_free(p->ctx[i]);
    free(p);
    return -ENOMEM;
}

unsigned char *sha1_pipe_buffer(sha1_pipe *p)
{
    pthread_mutex_lock(&p->mu);
    while (p->count == p->nbufs)
        pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
    return p->bufs[p->head];
}

int sha1_pipe_submit(sha1_pipe *p, size_t len)
{
    if (len > p->bufsize)
        return -EINVAL;
    if (!p->started) {
        /* Without a thread (it could not start) hash inline: slower, same
         * digest. */
        if (pthread_create(&p->thread, NULL, hash_thread, p) == 0)
            p->started = 1;
        else
            return update_all(p, p->bufs[p->head], len) == 0 ? 0 : -EIO;
    }
    pthread_mutex_lock(&p->mu);
    p->lens[p->head] = len;
    p->head = (p->head + 1) % p->nbufs;
    p->count++;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

static void stop_thread(sha1_pipe *p)
{
    if (!p->started)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    p->started = 0;
}

int sha1_pipe_finish(sha1_pipe *p, size_t len, char hex[41])
{
    unsigned int i;
    int k;

    if (len > p->bufsize)
        return -EINVAL;
    if (p->started) {
        if (len)
            sha1_pipe_submit(p, len);
        stop_thread(p); /* drains every submitted buffer first */
    }
    else if (len && update_all(p, p->bufs[p->head], len) != 0)
        p->failed = 1;
    if (p->failed)
        return -EIO;
    for (k = 0; k < p->nmd; k++)
        if (EVP_DigestFinal_ex(p->ctx[k], p->md[k], &p->mdlen[k]) != 1)
            return -EIO;
    if (!hex)
        return 0;
    if (p->mdlen[0] != 20)
        return -EIO;
    for (i = 0; i < p->mdlen[0]; i++)
        snprintf(hex + 2 * i, 3, "%02x", p->md[0][i]);
    return 0;
}

unsigned sha1_pipe_digest(const sha1_pipe *p, int i, unsigned char *md)
{
    if (i < 0 || i >= p->nmd)
        return 0;
    memcpy(md, p->md[i], p->mdlen[i]);
    return p->mdlen[i];
}

void sha1_pipe_destroy(sha1_pipe *p)
{
    int i;

    if (!p)
        return;
    stop_thread(p);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    for (i = 0; i < p->nbufs; i++)
        free(p->bufs[i]);
    free(p->bufs);
    free(p->lens);
    for (i = 0; i < p->nmd; i++)
        EVP_MD_CTX_free(p->ctx[i]);
    free(p);
}
