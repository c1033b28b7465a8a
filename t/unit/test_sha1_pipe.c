/* sha1_pipe: the digest equals a one-shot SHA-1 for every stream length
 * and buffer split, with and without the hashing thread. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "mod_mirrordav/sha1_pipe.h"
#include "tap.h"

static void oneshot(const unsigned char *d, size_t n, char hex[41])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len, i;

    EVP_Digest(d, n, md, &len, EVP_sha1(), NULL);
    for (i = 0; i < len; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

/* Streams DATA through a pipe of NBUFS buffers of BUFSIZE, in pieces of
 * at most PIECE bytes, the way the PUT stream does. */
static int piped(const unsigned char *d, size_t n, size_t bufsize, int nbufs,
                 size_t piece, char hex[41])
{
    sha1_pipe *p;
    unsigned char *buf;
    size_t used = 0, off = 0;
    int rv;

    if ((rv = sha1_pipe_create(&p, bufsize, nbufs)) != 0)
        return rv;
    buf = sha1_pipe_buffer(p);
    while (off < n) {
        size_t k = n - off < piece ? n - off : piece;
        if (k > bufsize - used)
            k = bufsize - used;
        memcpy(buf + used, d + off, k);
        used += k;
        off += k;
        if (used == bufsize) {
            if ((rv = sha1_pipe_submit(p, used)) != 0)
                break;
            buf = sha1_pipe_buffer(p);
            used = 0;
        }
    }
    if (rv == 0)
        rv = sha1_pipe_finish(p, used, hex);
    sha1_pipe_destroy(p);
    return rv;
}

int main(void)
{
    static const size_t sizes[] = {
        0,     1,     4095,    4096,           4097,
        65536, 65537, 1 << 20, (1 << 20) + 17, 3 << 20};
    size_t max = 3 << 20, i;
    unsigned char *data = malloc(max);
    char want[41], got[41];

    for (i = 0; i < max; i++)
        data[i] = (unsigned char)(i * 2654435761u >> 13);
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t n = sizes[i];
        oneshot(data, n, want);
        is_int(piped(data, n, 4096, 4, 2048, got), 0, "pipe of %zu bytes", n);
        is_str(got, want, "%zu bytes, 4 KiB buffers, 2 KiB pieces", n);
        is_int(piped(data, n, 65536, 2, 1000, got), 0, "pipe of %zu bytes", n);
        is_str(got, want, "%zu bytes, 64 KiB buffers, odd pieces", n);
        is_int(piped(data, n, 262144, 4, 262144, got), 0, "pipe of %zu", n);
        is_str(got, want, "%zu bytes, whole buffers", n);
    }
    /* Several digests over the same bytes, each as computed in one shot
     * (the request thread and the hashing thread both used). */
    {
        const EVP_MD *mds[3] = {EVP_sha256(), EVP_md5(), EVP_sha512()};
        unsigned char md[EVP_MAX_MD_SIZE], one[EVP_MAX_MD_SIZE];
        unsigned len, onelen, k;
        size_t n = (1 << 20) + 17, off;
        sha1_pipe *p;

        ok(sha1_pipe_create_md(&p, 65536, 3, mds, 3) == 0, "create_md");
        for (off = 0; off + 65536 <= n; off += 65536) {
            memcpy(sha1_pipe_buffer(p), data + off, 65536);
            sha1_pipe_submit(p, 65536);
        }
        memcpy(sha1_pipe_buffer(p), data + off, n - off);
        is_int(sha1_pipe_finish(p, n - off, NULL), 0, "finish without hex");
        for (k = 0; k < 3; k++) {
            len = sha1_pipe_digest(p, (int)k, md);
            EVP_Digest(data, n, one, &onelen, mds[k], NULL);
            ok(len == onelen && memcmp(md, one, len) == 0,
               "digest %u of 3 matches its one-shot", k);
        }
        is_int(sha1_pipe_digest(p, 3, md), 0, "no digest 3");
        sha1_pipe_destroy(p);
        ok(sha1_pipe_create_md(&p, 4096, 2, mds, 0) == -EINVAL,
           "no digests refused");
    }
    /* A pipe dropped half way (a request aborted) must not hang or leak. */
    {
        sha1_pipe *p;
        ok(sha1_pipe_create(&p, 4096, 2) == 0, "create");
        memset(sha1_pipe_buffer(p), 1, 4096);
        ok(sha1_pipe_submit(p, 4096) == 0, "submit one buffer");
        sha1_pipe_destroy(p);
        ok(1, "destroyed mid-stream");
    }
    free(data);
    return done_testing();
}
