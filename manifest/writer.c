/*
 * The streaming manifest writer: a header, records in manifest order with
 * their keys in byte order and a CRC each, then the trailer with the SHA-1
 * of everything before it.  The caller owns the file descriptor and makes
 * the result durable and visible (temp file, fsync, rename).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/evp.h>

#include "manifest/manifest.h"

#define OUT_BUF (256 * 1024)

struct manifest_writer {
    int fd;
    char *out; /* output buffer */
    size_t used;
    char *line; /* the record being formatted */
    size_t linecap;
    const manifest_kv **sorted;
    size_t sortcap;
    char *prev; /* the previous entry's name, for the order check */
    size_t prevcap;
    int have_prev;
    EVP_MD_CTX *sha1;
    int in_trailer;   /* the trailer's line is not hashed */
    uint64_t flushed; /* bytes in the file */
};

static int flush_out(manifest_writer *wr)
{
    size_t off = 0;

    while (off < wr->used) {
        ssize_t n = write(wr->fd, wr->out + off, wr->used - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        off += (size_t)n;
    }
    wr->flushed += wr->used;
    wr->used = 0;
    return 0;
}

static int emit(manifest_writer *wr, const char *s, size_t len)
{
    int rv;

    if (!wr->in_trailer)
        EVP_DigestUpdate(wr->sha1, s, len);
    while (len > 0) {
        size_t n = OUT_BUF - wr->used;

        if (n > len)
            n = len;
        memcpy(wr->out + wr->used, s, n);
        wr->used += n;
        s += n;
        len -= n;
        if (wr->used == OUT_BUF && (rv = flush_out(wr)) != 0)
            return rv;
    }
    return 0;
}

static int by_key(const void *a, const void *b)
{
    const manifest_kv *x = *(const manifest_kv *const *)a;
    const manifest_kv *y = *(const manifest_kv *const *)b;

    return strcmp(x->key, y->key);
}

/* Formats and emits one record: name, pairs in key order, CRC. */
static int put_record(manifest_writer *wr, const char *name,
                      const manifest_kv *kv, size_t nkv)
{
    size_t need = 3 * strlen(name) + 64, n, i;
    char crc[9];

    for (i = 0; i < nkv; i++)
        need += 3 * (strlen(kv[i].key) + strlen(kv[i].value)) + 2;
    if (need > wr->linecap) {
        char *l = realloc(wr->line, need);
        if (!l)
            return -ENOMEM;
        wr->line = l;
        wr->linecap = need;
    }
    if (nkv > wr->sortcap) {
        const manifest_kv **s = realloc(wr->sorted, nkv * sizeof(*s));
        if (!s)
            return -ENOMEM;
        wr->sorted = s;
        wr->sortcap = nkv;
    }
    for (i = 0; i < nkv; i++)
        wr->sorted[i] = &kv[i];
    qsort(wr->sorted, nkv, sizeof(*wr->sorted), by_key);

    n = 0;
    wr->line[n++] = '=';
    n += manifest_escape(wr->line + n, name, strlen(name));
    for (i = 0; i < nkv; i++) {
        const manifest_kv *p = wr->sorted[i];

        if (!strcmp(p->key, MANIFEST_CRC_KEY))
            continue; /* ours to write */
        wr->line[n++] = ',';
        n += manifest_escape(wr->line + n, p->key, strlen(p->key));
        wr->line[n++] = '=';
        n += manifest_escape(wr->line + n, p->value, strlen(p->value));
    }
    n += (size_t)sprintf(wr->line + n, ",%s=00000000", MANIFEST_CRC_KEY);
    snprintf(crc, sizeof(crc), "%08x", manifest_line_crc(wr->line, n));
    memcpy(wr->line + n - 8, crc, 8);
    wr->line[n++] = '\n';
    return emit(wr, wr->line, n);
}

int manifest_writer_open(manifest_writer **out, int fd, const manifest_kv *hdr,
                         size_t nhdr)
{
    manifest_writer *wr = calloc(1, sizeof(*wr));
    manifest_kv *kv;
    size_t i;
    int rv;

    if (!wr)
        return -ENOMEM;
    wr->fd = fd;
    wr->out = malloc(OUT_BUF);
    wr->sha1 = EVP_MD_CTX_new();
    kv = calloc(nhdr + 2, sizeof(*kv));
    if (!wr->out || !wr->sha1 || !kv ||
        EVP_DigestInit_ex(wr->sha1, EVP_sha1(), NULL) != 1) {
        free(kv);
        manifest_writer_free(wr);
        return -ENOMEM;
    }
    kv[0].key = MANIFEST_TYPE_KEY;
    kv[0].value = "header";
    kv[1].key = MANIFEST_VERS_KEY;
    kv[1].value = "1";
    for (i = 0; i < nhdr; i++)
        kv[i + 2] = hdr[i];
    rv = put_record(wr, "header", kv, nhdr + 2);
    free(kv);
    if (rv != 0) {
        manifest_writer_free(wr);
        return rv;
    }
    *out = wr;
    return 0;
}

static int set_prev(manifest_writer *wr, const char *name)
{
    size_t len = strlen(name);

    if (len + 1 > wr->prevcap) {
        char *p = realloc(wr->prev, len + 1);
        if (!p)
            return -ENOMEM;
        wr->prev = p;
        wr->prevcap = len + 1;
    }
    memcpy(wr->prev, name, len + 1);
    wr->have_prev = 1;
    return 0;
}

int manifest_writer_resume(manifest_writer **out, int fd, uint64_t len,
                           const char *last)
{
    manifest_writer *wr = calloc(1, sizeof(*wr));
    uint64_t done = 0;
    int rv = 0;

    if (!wr)
        return -ENOMEM;
    wr->fd = fd;
    wr->out = malloc(OUT_BUF);
    wr->sha1 = EVP_MD_CTX_new();
    if (!wr->out || !wr->sha1 ||
        EVP_DigestInit_ex(wr->sha1, EVP_sha1(), NULL) != 1) {
        manifest_writer_free(wr);
        return -ENOMEM;
    }
    /* The trailer hashes every byte before it: take in the bytes the
     * earlier writer left, using the output buffer to read them. */
    while (done < len) {
        size_t want = len - done > OUT_BUF ? OUT_BUF : (size_t)(len - done);
        ssize_t n = pread(fd, wr->out, want, (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rv = n < 0 ? -errno : -EIO; /* shorter than the checkpoint */
            break;
        }
        EVP_DigestUpdate(wr->sha1, wr->out, (size_t)n);
        done += (uint64_t)n;
    }
    if (rv == 0 && (ftruncate(fd, (off_t)len) != 0 ||
                    lseek(fd, (off_t)len, SEEK_SET) < 0))
        rv = -errno;
    if (rv == 0 && last)
        rv = set_prev(wr, last);
    if (rv != 0) {
        manifest_writer_free(wr);
        return rv;
    }
    wr->flushed = len;
    *out = wr;
    return 0;
}

int manifest_writer_flush(manifest_writer *wr, uint64_t *len)
{
    int rv = flush_out(wr);

    if (len)
        *len = wr->flushed;
    return rv;
}

int manifest_writer_add(manifest_writer *wr, const char *name,
                        const manifest_kv *kv, size_t nkv)
{
    size_t i;
    int rv;

    for (i = 0; i < nkv; i++)
        if (!strcmp(kv[i].key, MANIFEST_TYPE_KEY))
            return -EINVAL; /* entries never carry a record type */
    if (wr->have_prev && manifest_compare(wr->prev, name) >= 0)
        return -EINVAL;
    if ((rv = set_prev(wr, name)) != 0)
        return rv;
    return put_record(wr, name, kv, nkv);
}

int manifest_writer_finish(manifest_writer *wr)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0, i;
    char hex[41];
    manifest_kv kv[2];
    int rv;

    wr->in_trailer = 1;
    if (EVP_DigestFinal_ex(wr->sha1, md, &mdlen) != 1 || mdlen != 20)
        return -EIO;
    for (i = 0; i < 20; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    kv[0].key = MANIFEST_SHA1_KEY;
    kv[0].value = hex;
    kv[1].key = MANIFEST_TYPE_KEY;
    kv[1].value = "trailer";
    if ((rv = put_record(wr, "trailer", kv, 2)) != 0)
        return rv;
    return flush_out(wr);
}

void manifest_writer_free(manifest_writer *wr)
{
    if (!wr)
        return;
    EVP_MD_CTX_free(wr->sha1);
    free(wr->out);
    free(wr->line);
    free(wr->sorted);
    free(wr->prev);
    free(wr);
}
