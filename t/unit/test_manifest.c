/* Unit tests of the manifest library: format, reader, writer, walk. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "manifest/manifest.h"
#include "tap.h"

static char tmpdir[] = "/tmp/test_manifest.XXXXXX";

static void test_escape(void)
{
    const char *in = "a,b=c%d\ne\tf g\x01h\xc3\xa9";
    char out[128], copy[128];
    size_t n = manifest_escape(out, in, strlen(in)), m;

    out[n] = '\0';
    is_str(out, "a%2Cb%3Dc%25d%0Ae%09f g%01h\xc3\xa9",
           "escaping: %% , = and control bytes as %%XX, the rest as is");
    memcpy(copy, out, n + 1);
    ok(manifest_unescape(copy, n, &m) == 0 && m == strlen(in) &&
           !strcmp(copy, in),
       "unescaping restores the bytes");
    strcpy(copy, "bad%0");
    ok(manifest_unescape(copy, 5, NULL) != 0, "a cut escape is refused");
    strcpy(copy, "bad%zz");
    ok(manifest_unescape(copy, 6, NULL) != 0, "a non-hex escape is refused");
    strcpy(copy, "nul%00");
    ok(manifest_unescape(copy, 6, NULL) != 0, "%%00 is refused");
}

static void test_crc(void)
{
    const char *line = "=header,_internal_type=header,_internal_version=1,"
                       "_internal_record_crc=917e1394";

    is_int(manifest_line_crc(line, strlen(line)), 0x917e1394,
           "SPEC's example header line has CRC 917e1394");
}

static void test_compare(void)
{
    /* SPEC section 7's example, in order. */
    const char *order[] = {"a/1d", "a/2d/wf", "a/2d/xf", "a/2d",
                           "a/3f", "a",       "b",       ""};
    size_t i, j, n = sizeof(order) / sizeof(*order);
    int good = 1;

    for (i = 0; i < n; i++)
        for (j = 0; j < n; j++) {
            int c = manifest_compare(order[i], order[j]);
            if ((i < j && c >= 0) || (i > j && c <= 0) || (i == j && c))
                good = 0;
        }
    ok(good, "SPEC's example shape sorts as written, the root last");
    ok(manifest_compare("a/x", "a.txt") < 0,
       "a directory's members come before a sibling that shares its "
       "prefix ('a' < 'a.txt' by name)");
    ok(manifest_compare("B", "a") < 0, "byte order: 'B' before 'a'");
    ok(manifest_compare("z", "\xc3\xa9") < 0,
       "byte order: 'z' before a non-ASCII name");
    ok(manifest_compare("a b", "a-b") < 0 && manifest_compare("a-b", "ab") < 0,
       "byte order, not locale order, for ' ' '-' and letters");
}

/* Writes a small manifest to PATH; returns its size. */
static void write_sample(const char *path)
{
    manifest_kv hdr[] = {{"source", "test,host=1"}};
    manifest_kv f1[] = {{"type", "file"},
                        {"hash", "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
                        {"st_size", "0"},
                        {"zz_unknown", "kept=%,"}};
    manifest_kv d[] = {{"type", "directory"}};
    manifest_writer *wr;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

    ok(fd >= 0, "open %s", path);
    ok(manifest_writer_open(&wr, fd, hdr, 1) == 0, "writer opens");
    ok(manifest_writer_add(wr, "dir/we,ird=na%me\nx", f1, 4) == 0,
       "a record with a hostile name");
    ok(manifest_writer_add(wr, "dir", d, 1) == 0, "the directory after it");
    ok(manifest_writer_add(wr, "a", d, 1) == -EINVAL,
       "a record out of order is refused");
    ok(manifest_writer_add(wr, "header", f1, 3) == 0,
       "a file called 'header' is an ordinary entry");
    ok(manifest_writer_add(wr, "", d, 1) == 0, "the root last");
    ok(manifest_writer_finish(wr) == 0, "trailer written");
    manifest_writer_free(wr);
    close(fd);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = malloc(1 << 16);

    *len = fread(buf, 1, 1 << 16, f);
    fclose(f);
    return buf;
}

static void spew(const char *path, const char *buf, size_t len)
{
    FILE *f = fopen(path, "wb");

    fwrite(buf, 1, len, f);
    fclose(f);
}

/* Reads PATH to the end: 0 if valid, else the corruption's line (or -1). */
static long read_all(const char *path, int *entries, int verbose)
{
    const manifest_record *rec;
    manifest_reader *rd;
    unsigned long line = 0;
    int rv;

    if (manifest_reader_open(&rd, path, -1) != 0)
        return -1;
    *entries = 0;
    while ((rv = manifest_reader_next(rd, &rec)) == 1)
        if (rec->kind == MANIFEST_ENTRY)
            (*entries)++;
    if (rv == MANIFEST_ECORRUPT) {
        const char *why = manifest_reader_error(rd, &line);
        if (verbose)
            printf("# line %lu: %s\n", line, why);
        manifest_reader_close(rd);
        return (long)line;
    }
    manifest_reader_close(rd);
    return rv == 0 ? 0 : -1;
}

static void test_round_trip(void)
{
    char path[256], path2[256];
    const manifest_record *rec;
    manifest_reader *rd;
    int n = 0, entries, rv, seen_name = 0, seen_unknown = 0;

    snprintf(path, sizeof(path), "%s/m.manifest", tmpdir);
    write_sample(path);
    ok(manifest_reader_open(&rd, path, -1) == 0, "reader opens");
    while ((rv = manifest_reader_next(rd, &rec)) == 1) {
        n++;
        if (n == 1)
            ok(rec->kind == MANIFEST_HEADER &&
                   !strcmp(manifest_get(rec, "source"), "test,host=1"),
               "the header first, its pairs decoded");
        if (rec->kind == MANIFEST_ENTRY &&
            !strcmp(rec->name, "dir/we,ird=na%me\nx")) {
            seen_name = 1;
            seen_unknown =
                !strcmp(manifest_get(rec, "zz_unknown") ?: "", "kept=%,");
        }
    }
    is_int(rv, 0, "reads to a valid end");
    is_int(n, 6, "header, 4 entries, trailer");
    ok(seen_name, "the hostile name round-trips");
    ok(seen_unknown, "an unknown key is kept");
    manifest_reader_close(rd);

    /* CRLF line ends read too. */
    {
        size_t len, i, o = 0;
        char *buf = slurp(path, &len), *crlf = malloc(2 * len);
        for (i = 0; i < len; i++) {
            if (buf[i] == '\n')
                crlf[o++] = '\r';
            crlf[o++] = buf[i];
        }
        snprintf(path2, sizeof(path2), "%s/crlf.manifest", tmpdir);
        /* The trailer's SHA-1 covers the bytes as they are in the file,
         * so a CRLF copy needs its trailer rewritten: check that a CRLF
         * manifest with a matching trailer reads, by hashing. */
        spew(path2, crlf, o);
        ok(read_all(path2, &entries, 0) > 0,
           "a CRLF copy of an LF manifest fails on its trailer hash");
        free(buf);
        free(crlf);
    }
}

static void test_crlf_written(void)
{
    /* A manifest written with CRLF ends by another implementation: build
     * it line by line with the right CRCs and trailer hash. */
    char path[256];
    const char *lines[] = {
        "=header,_internal_type=header,_internal_version=1",
        "=f,hash=da39a3ee5e6b4b0d3255bfef95601890afd80709,st_size=0,"
        "type=file",
        "=,type=directory",
    };
    char buf[4096], line[512];
    size_t o = 0, i;
    int entries;
    FILE *p;

    for (i = 0; i < 3; i++) {
        size_t n = (size_t)snprintf(
            line, sizeof(line), "%s,_internal_record_crc=00000000", lines[i]);
        snprintf(line + n - 8, 9, "%08x", manifest_line_crc(line, n));
        o += (size_t)sprintf(buf + o, "%s\r\n", line);
    }
    snprintf(path, sizeof(path), "%s/crlf2.manifest", tmpdir);
    spew(path, buf, o);
    {
        char cmd[512], hex[41];
        snprintf(cmd, sizeof(cmd), "sha1sum < %s", path);
        p = popen(cmd, "r");
        ok(p && fscanf(p, "%40s", hex) == 1, "sha1sum of the records");
        pclose(p);
        size_t n = (size_t)snprintf(
            line, sizeof(line),
            "=trailer,_internal_file_sha1_hash=%s,_internal_type=trailer,"
            "_internal_record_crc=00000000",
            hex);
        snprintf(line + n - 8, 9, "%08x", manifest_line_crc(line, n));
        o += (size_t)sprintf(buf + o, "%s\r\n", line);
    }
    spew(path, buf, o);
    is_int(read_all(path, &entries, 1), 0, "a CRLF manifest reads");
    is_int(entries, 2, "with both its entries");
}

static void test_every_byte(void)
{
    char path[256], bad[256];
    size_t len, i, lineno = 1, wrong = 0, undetected = 0;
    char *buf, *copy;
    int entries;

    snprintf(path, sizeof(path), "%s/m.manifest", tmpdir);
    snprintf(bad, sizeof(bad), "%s/bad.manifest", tmpdir);
    buf = slurp(path, &len);
    copy = malloc(len);
    is_int(read_all(path, &entries, 1), 0, "the sample is valid");
    for (i = 0; i < len; i++) {
        long got;

        memcpy(copy, buf, len);
        copy[i] ^= 0x01;
        spew(bad, copy, len);
        got = read_all(bad, &entries, 0);
        if (got <= 0)
            undetected++;
        else if ((size_t)got != lineno) {
            wrong++;
            printf("# byte %zu (line %zu): named line %ld\n", i, lineno, got);
        }
        if (buf[i] == '\n')
            lineno++;
    }
    is_int(undetected, 0, "flipping any one of %zu bytes is detected", len);
    is_int(wrong, 0, "and the line named is the flipped byte's line");

    /* Truncation and appended junk. */
    spew(bad, buf, len - 1);
    ok(read_all(bad, &entries, 0) > 0, "a missing last line end is found");
    {
        size_t cut = len - 1;
        while (cut > 0 && buf[cut - 1] != '\n')
            cut--;
        spew(bad, buf, cut);
        ok(read_all(bad, &entries, 0) > 0, "a missing trailer is found");
    }
    memcpy(copy, buf, len);
    spew(bad, buf, len);
    {
        FILE *f = fopen(bad, "ab");
        fputs("junk\n", f);
        fclose(f);
    }
    ok(read_all(bad, &entries, 0) > 0, "data after the trailer is found");
    free(buf);
    free(copy);
}

typedef struct {
    char seen[64][64];
    int n;
} walk_log;

static int log_entry(void *ctx, const char *name, int dirfd, const char *base,
                     const struct stat *st)
{
    walk_log *w = ctx;
    struct stat again;

    (void)st;
    if (w->n < 64)
        snprintf(w->seen[w->n++], 64, "%s",
                 fstatat(dirfd, base, &again, AT_SYMLINK_NOFOLLOW) == 0
                     ? name
                     : "(unreachable)");
    return 0;
}

static void test_walk(void)
{
    const char *want[] = {"a/1d", "a/2d/wf", "a/2d/xf", "a/2d", "a/3f",
                          "a",    "a.txt",   "header",  ""};
    char cmd[1024];
    walk_log w;
    int i, same = 1;

    snprintf(cmd, sizeof(cmd),
             "set -e; cd %s; mkdir -p tree/a/1d tree/a/2d tree/.mirrordav "
             "tree/a/.mirrordav; touch tree/a/2d/xf tree/a/2d/wf tree/a/3f "
             "tree/a.txt tree/header tree/.mirrordav/x.db",
             tmpdir);
    ok(system(cmd) == 0, "a tree of SPEC's shape");
    memset(&w, 0, sizeof(w));
    snprintf(cmd, sizeof(cmd), "%s/tree", tmpdir);
    is_int(manifest_walk(cmd, log_entry, NULL, &w), 0, "the walk succeeds");
    is_int(w.n, 9, "every entry once, sidecar folders left out");
    for (i = 0; i < 9 && i < w.n; i++)
        if (strcmp(w.seen[i], want[i]))
            same = 0;
    ok(same, "in manifest order, each reachable by dirfd + base");
    if (!same)
        for (i = 0; i < w.n; i++)
            printf("#   %d: %s\n", i, w.seen[i]);
}

int main(void)
{
    char cmd[300];

    if (!mkdtemp(tmpdir))
        return 1;
    test_escape();
    test_crc();
    test_compare();
    test_round_trip();
    test_crlf_written();
    test_every_byte();
    test_walk();
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        return 1;
    return done_testing();
}
