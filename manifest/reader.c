/*
 * The streaming manifest reader.  Every line is checked as it is read:
 * its line end, its CRC, its escapes, its place in the order; the header
 * must come first and the trailer last, with the SHA-1 of every byte
 * before it.  The first corruption is reported with its line number, and
 * nothing after it is trusted.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/evp.h>

#include "manifest/manifest.h"

#define READ_CHUNK (256 * 1024)
/* A record longer than this is taken as corruption rather than memory to
 * spend: real records are a few hundred bytes. */
#define MAX_LINE (1024 * 1024)

enum { EXPECT_HEADER, IN_ENTRIES, AT_END };

struct manifest_reader {
    int fd;
    char *buf; /* read buffer: [start, end) not yet consumed */
    size_t cap, start, end;
    int eof;
    char *line; /* the current record, decoded in place */
    size_t linecap;
    manifest_kv *kv;
    size_t kvcap;
    manifest_record rec;
    char *prev; /* the previous entry's name, for the order check */
    size_t prevcap;
    int have_prev;
    EVP_MD_CTX *sha1; /* over every byte before the trailer's line */
    unsigned long lineno;
    int state;
    char err[200];
};

static int corrupt(manifest_reader *rd, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(rd->err, sizeof(rd->err), fmt, ap);
    va_end(ap);
    return MANIFEST_ECORRUPT;
}

int manifest_reader_open(manifest_reader **out, const char *path, int fd)
{
    manifest_reader *rd = calloc(1, sizeof(*rd));

    if (!rd)
        return -ENOMEM;
    rd->fd = path ? open(path, O_RDONLY | O_CLOEXEC) : fd;
    if (rd->fd < 0) {
        int e = errno;
        free(rd);
        return -e;
    }
    posix_fadvise(rd->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    rd->cap = READ_CHUNK;
    rd->buf = malloc(rd->cap);
    rd->sha1 = EVP_MD_CTX_new();
    if (!rd->buf || !rd->sha1 ||
        EVP_DigestInit_ex(rd->sha1, EVP_sha1(), NULL) != 1) {
        manifest_reader_close(rd);
        return -ENOMEM;
    }
    *out = rd;
    return 0;
}

void manifest_reader_close(manifest_reader *rd)
{
    if (!rd)
        return;
    if (rd->fd >= 0)
        close(rd->fd);
    EVP_MD_CTX_free(rd->sha1);
    free(rd->buf);
    free(rd->line);
    free(rd->kv);
    free(rd->prev);
    free(rd);
}

const char *manifest_reader_error(const manifest_reader *rd,
                                  unsigned long *line)
{
    if (line)
        *line = rd->lineno;
    return rd->err;
}

const char *manifest_get(const manifest_record *rec, const char *key)
{
    size_t i;

    for (i = 0; i < rec->nkv; i++)
        if (!strcmp(rec->kv[i].key, key))
            return rec->kv[i].value;
    return NULL;
}

/* Finds the next line in the read buffer, reading as needed.  *LINE and
 * *LEN get it with its '\n'; 0 at a clean end of file. */
static int next_line(manifest_reader *rd, const char **line, size_t *len)
{
    size_t scanned = 0;

    for (;;) {
        char *nl = memchr(rd->buf + rd->start + scanned, '\n',
                          rd->end - rd->start - scanned);
        ssize_t n;

        if (nl) {
            *line = rd->buf + rd->start;
            *len = (size_t)(nl - *line) + 1;
            rd->start += *len;
            return 1;
        }
        scanned = rd->end - rd->start;
        /* Corruption found here is in the line being read: name it. */
        if (rd->eof)
            return scanned ? (rd->lineno++,
                              corrupt(rd, "the last line has no line end "
                                          "(truncated?)"))
                           : 0;
        if (scanned > MAX_LINE)
            return rd->lineno++,
                   corrupt(rd, "a record longer than %d bytes", MAX_LINE);
        if (rd->start > 0) { /* keep the partial line, drop the rest */
            memmove(rd->buf, rd->buf + rd->start, scanned);
            rd->start = 0;
            rd->end = scanned;
        }
        if (rd->end == rd->cap) {
            char *nb = realloc(rd->buf, rd->cap * 2);
            if (!nb)
                return -ENOMEM;
            rd->buf = nb;
            rd->cap *= 2;
        }
        do
            n = read(rd->fd, rd->buf + rd->end, rd->cap - rd->end);
        while (n < 0 && errno == EINTR);
        if (n < 0)
            return -errno;
        if (n == 0)
            rd->eof = 1;
        rd->end += (size_t)n;
    }
}

static int is_lower_hex(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* Splits the record (CRC already checked and cut off) into its decoded
 * name and pairs. */
static int parse_fields(manifest_reader *rd, char *s, size_t len)
{
    char *end = s + len, *field;
    size_t n = 0;

    if (len == 0 || *s != '=')
        return corrupt(rd, "a record must start with '='");
    field = s + 1;
    for (;;) {
        char *comma = memchr(field, ',', (size_t)(end - field));
        char *stop = comma ? comma : end;
        size_t flen = (size_t)(stop - field);

        if (field == s + 1) { /* the name */
            if (manifest_unescape(field, flen, NULL) != 0)
                return corrupt(rd, "a bad %%-escape in the name");
            rd->rec.name = field;
        }
        else {
            char *eq = memchr(field, '=', flen);

            if (!eq || eq == field)
                return corrupt(rd, "a field without 'key='");
            if (n == rd->kvcap) {
                size_t cap = rd->kvcap ? rd->kvcap * 2 : 16;
                manifest_kv *kv = realloc(rd->kv, cap * sizeof(*kv));
                if (!kv)
                    return -ENOMEM;
                rd->kv = kv;
                rd->kvcap = cap;
            }
            if (manifest_unescape(field, (size_t)(eq - field), NULL) != 0 ||
                manifest_unescape(eq + 1, (size_t)(stop - eq - 1), NULL) != 0)
                return corrupt(rd, "a bad %%-escape in a key or value");
            rd->kv[n].key = field;
            rd->kv[n].value = eq + 1;
            n++;
        }
        if (!comma)
            break;
        field = comma + 1;
    }
    rd->rec.kv = rd->kv;
    rd->rec.nkv = n;
    return 0;
}

static int check_order(manifest_reader *rd)
{
    size_t len = strlen(rd->rec.name);

    if (rd->have_prev) {
        int c = manifest_compare(rd->prev, rd->rec.name);
        if (c == 0)
            return corrupt(rd, "a second record for the same name");
        if (c > 0)
            return corrupt(rd, "a record out of order");
    }
    if (len + 1 > rd->prevcap) {
        char *p = realloc(rd->prev, len + 1);
        if (!p)
            return -ENOMEM;
        rd->prev = p;
        rd->prevcap = len + 1;
    }
    memcpy(rd->prev, rd->rec.name, len + 1);
    rd->have_prev = 1;
    return 0;
}

static int check_trailer(manifest_reader *rd)
{
    const char *want = manifest_get(&rd->rec, MANIFEST_SHA1_KEY);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0, i;
    char hex[41];

    if (!want || strlen(want) != 40 || !is_lower_hex(want, 40))
        return corrupt(rd, "the trailer has no valid %s", MANIFEST_SHA1_KEY);
    if (EVP_DigestFinal_ex(rd->sha1, md, &mdlen) != 1 || mdlen != 20)
        return -EIO;
    for (i = 0; i < 20; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    if (strcmp(hex, want) != 0)
        return corrupt(rd, "the file's SHA-1 is %s, the trailer says %s", hex,
                       want);
    return 0;
}

int manifest_reader_next(manifest_reader *rd, const manifest_record **out)
{
    static const char crc_field[] = "," MANIFEST_CRC_KEY "=";
    const size_t tail = sizeof(crc_field) - 1 + 8;
    const char *raw, *type;
    size_t rawlen, len;
    unsigned long crc;
    char *line;
    int rv;

    if (rd->state == AT_END) {
        rv = next_line(rd, &raw, &rawlen);
        if (rv < 0)
            return rv;
        return rv ? (++rd->lineno, corrupt(rd, "data after the trailer")) : 0;
    }
    rv = next_line(rd, &raw, &rawlen);
    if (rv <= 0) {
        if (rv == 0)
            return rd->lineno++, corrupt(rd, "the manifest ends without a "
                                             "trailer (truncated?)");
        return rv;
    }
    rd->lineno++;
    len = rawlen - 1;
    if (len > 0 && raw[len - 1] == '\r') /* CRLF is accepted */
        len--;
    if (len + 1 > rd->linecap) {
        char *l = realloc(rd->line, len + 1);
        if (!l)
            return -ENOMEM;
        rd->line = l;
        rd->linecap = len + 1;
    }
    line = rd->line;
    memcpy(line, raw, len);
    line[len] = '\0';

    if (len < tail || memcmp(line + len - tail, crc_field, tail - 8) != 0 ||
        !is_lower_hex(line + len - 8, 8))
        return corrupt(rd, "no %s at the end of the record", MANIFEST_CRC_KEY);
    crc = strtoul(line + len - 8, NULL, 16);
    if (manifest_line_crc(line, len) != (uint32_t)crc)
        return corrupt(rd, "the record's CRC does not match");
    if ((rv = parse_fields(rd, line, len - tail)) != 0)
        return rv;
    rd->rec.line = rd->lineno;

    type = manifest_get(&rd->rec, MANIFEST_TYPE_KEY);
    if (!type)
        rd->rec.kind = MANIFEST_ENTRY;
    else if (!strcmp(type, "header"))
        rd->rec.kind = MANIFEST_HEADER;
    else if (!strcmp(type, "trailer"))
        rd->rec.kind = MANIFEST_TRAILER;
    else
        return corrupt(rd, "an unknown record type '%s'", type);

    if (rd->state == EXPECT_HEADER) {
        const char *v = manifest_get(&rd->rec, MANIFEST_VERS_KEY);
        if (rd->rec.kind != MANIFEST_HEADER)
            return corrupt(rd, "the first record is not the header");
        if (!v || strcmp(v, "1") != 0)
            return corrupt(rd, "unsupported manifest version '%s'",
                           v ? v : "");
        rd->state = IN_ENTRIES;
    }
    else if (rd->rec.kind == MANIFEST_HEADER)
        return corrupt(rd, "a second header");
    else if (rd->rec.kind == MANIFEST_TRAILER) {
        if ((rv = check_trailer(rd)) != 0)
            return rv;
        rd->state = AT_END;
    }
    else if ((rv = check_order(rd)) != 0)
        return rv;
    if (rd->rec.kind != MANIFEST_TRAILER)
        EVP_DigestUpdate(rd->sha1, raw, rawlen);
    *out = &rd->rec;
    return 1;
}
