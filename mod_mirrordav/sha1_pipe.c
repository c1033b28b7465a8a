/*
 * sha1_pipe: a ring of buffers between the request thread (producer) and
 * one hashing thread (consumer).  Buffers are hashed in submission order.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include <openssl/evp.h>

#include "sha1_pipe.h"

struct sha1_pipe {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    int started, stopping, failed;
    EVP_MD_CTX *ctx;

    unsigned char **bufs;
    size_t *lens;
    size_t bufsize;
    int nbufs;
    int head;  /* next buffer the producer fills */
    int tail;  /* next buffer the consumer hashes */
    int count; /* submitted, not yet hashed */
};

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
        if (EVP_DigestUpdate(p->ctx, p->bufs[i], len) != 1)
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
    sha1_pipe *p = calloc(1, sizeof(*p));
    int i;

    if (!p)
        return -ENOMEM;
    p->bufsize = bufsize;
    p->nbufs = nbufs;
    p->bufs = calloc(nbufs, sizeof(*p->bufs));
    p->lens = calloc(nbufs, sizeof(*p->lens));
    p->ctx = EVP_MD_CTX_new();
    if (!p->bufs || !p->lens || !p->ctx ||
        EVP_DigestInit_ex(p->ctx, EVP_sha1(), NULL) != 1)
        goto fail;
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
    EVP_MD_CTX_free(p->ctx);
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
            return EVP_DigestUpdate(p->ctx, p->bufs[p->head], len) == 1 ? 0
                                                                        : -EIO;
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
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0, i;

    if (len > p->bufsize)
        return -EINVAL;
    if (p->started) {
        if (len)
            sha1_pipe_submit(p, len);
        stop_thread(p); /* drains every submitted buffer first */
    }
    else if (len && EVP_DigestUpdate(p->ctx, p->bufs[p->head], len) != 1)
        p->failed = 1;
    if (p->failed || EVP_DigestFinal_ex(p->ctx, md, &mdlen) != 1 ||
        mdlen != 20)
        return -EIO;
    for (i = 0; i < mdlen; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return 0;
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
    EVP_MD_CTX_free(p->ctx);
    free(p);
}
