/*
 * SHA-1 of a file's data: the one routine the verifier, fsck and
 * `manifest generate` share.  Large reads with sequential read-ahead
 * advice keep the disk streaming.  pread from offset 0, so the caller's
 * file position does not matter.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <openssl/evp.h>

#include "manifest/manifest.h"

#define HASH_BUF (1024 * 1024)

int manifest_sha1_fd(int fd, char hex[41], uint64_t *size)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0, i;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    char *buf = malloc(HASH_BUF);
    uint64_t total = 0;
    int rv = 0;

    if (!buf || !ctx || EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) != 1) {
        rv = -ENOMEM;
        goto done;
    }
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    for (;;) {
        ssize_t n = pread(fd, buf, HASH_BUF, (off_t)total);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rv = -errno;
            goto done;
        }
        if (n == 0)
            break;
        EVP_DigestUpdate(ctx, buf, (size_t)n);
        total += (uint64_t)n;
    }
    if (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 20) {
        rv = -EIO;
        goto done;
    }
    for (i = 0; i < 20; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    if (size)
        *size = total;
done:
    EVP_MD_CTX_free(ctx);
    free(buf);
    return rv;
}

int manifest_sha1_file(const char *path, char hex[41], uint64_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), rv;

    if (fd < 0)
        return -errno;
    rv = manifest_sha1_fd(fd, hex, size);
    close(fd);
    return rv;
}
