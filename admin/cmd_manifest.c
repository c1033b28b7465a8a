/*
 * mirrordav manifest generate DIR [-o FILE]
 * mirrordav manifest check FILE
 *
 * generate writes the manifest of a directory tree (SPEC section 7): one
 * record per entry in manifest order, sidecar folders and manifest files
 * left out.  The same code makes a client's manifest and the server's.
 * check validates every record's CRC, the order, the header and the
 * trailer, and names the line of the first corruption.
 *
 * Exit status: 0 fine, 2 usage or I/O error, 3 the manifest is corrupt.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin/commands.h"
#include "manifest/manifest.h"
#include "sidecar/publish.h"

typedef struct {
    manifest_writer *wr;
    const char *out_base; /* the output's name when it is inside the tree */
    const char *tmp_base; /* its temp file's name, if it has one */
    uint64_t files, bytes;
} gen_ctx;

static int gen_skip(void *vctx, const char *name, const struct stat *st)
{
    gen_ctx *g = vctx;
    const char *slash = strrchr(name, '/');
    const char *base = slash ? slash + 1 : name;

    if (!S_ISREG(st->st_mode))
        return 0;
    if ((g->out_base && !strcmp(base, g->out_base)) ||
        (g->tmp_base && !strcmp(base, g->tmp_base)))
        return 1; /* the output itself, and its temp file */
    return manifest_is_manifest_file(base);
}

static int gen_entry(void *vctx, const char *name, int dirfd, const char *base,
                     const struct stat *lst)
{
    gen_ctx *g = vctx;
    char v[11][32], hex[41];
    manifest_kv kv[12];
    struct stat st = *lst;
    size_t n = 0;
    int rv, tries;

    if (S_ISREG(st.st_mode)) {
        /* Hash and stat the same open file; if it changes under us, the
         * record would pair a hash with another version's size. */
        for (tries = 0;; tries++) {
            uint64_t got = 0;
            int fd = openat(dirfd, base, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

            if (fd < 0)
                return -errno;
            rv =
                fstat(fd, &st) == 0 ? manifest_sha1_fd(fd, hex, &got) : -errno;
            close(fd);
            if (rv != 0)
                return rv;
            if (got == (uint64_t)st.st_size)
                break;
            if (tries == 3) {
                fprintf(stderr,
                        "mirrordav manifest: %s keeps changing while it is "
                        "read\n",
                        name);
                return -EAGAIN;
            }
        }
        g->files++;
        g->bytes += (uint64_t)st.st_size;
        kv[n].key = "hash";
        kv[n++].value = hex;
    }
    kv[n].key = "type";
    kv[n++].value = S_ISREG(st.st_mode)   ? "file"
                    : S_ISDIR(st.st_mode) ? "directory"
                    : S_ISLNK(st.st_mode) ? "link"
                                          : "special";
    snprintf(v[0], sizeof(v[0]), "%" PRIu64, (uint64_t)st.st_size);
    snprintf(v[1], sizeof(v[1]), "%" PRId64, (int64_t)st.st_mtime);
    snprintf(v[2], sizeof(v[2]), "%" PRId64, (int64_t)st.st_ctime);
    snprintf(v[3], sizeof(v[3]), "%" PRId64, (int64_t)st.st_atime);
    snprintf(v[4], sizeof(v[4]), "%o", (unsigned)st.st_mode);
    snprintf(v[5], sizeof(v[5]), "%u", (unsigned)st.st_uid);
    snprintf(v[6], sizeof(v[6]), "%u", (unsigned)st.st_gid);
    snprintf(v[7], sizeof(v[7]), "%" PRIu64, (uint64_t)st.st_ino);
    snprintf(v[8], sizeof(v[8]), "%" PRIu64, (uint64_t)st.st_nlink);
    kv[n].key = "st_size";
    kv[n++].value = v[0];
    kv[n].key = "st_mtime";
    kv[n++].value = v[1];
    kv[n].key = "st_ctime";
    kv[n++].value = v[2];
    kv[n].key = "st_atime";
    kv[n++].value = v[3];
    kv[n].key = "st_mode";
    kv[n++].value = v[4];
    kv[n].key = "st_uid";
    kv[n++].value = v[5];
    kv[n].key = "st_gid";
    kv[n++].value = v[6];
    kv[n].key = "st_ino";
    kv[n++].value = v[7];
    kv[n].key = "st_nlink";
    kv[n++].value = v[8];
    return manifest_writer_add(g->wr, name, kv, n);
}

/* Writes the manifest of DIR to FD. */
static int generate(const char *dir, int fd, gen_ctx *g)
{
    manifest_kv hdr[1] = {{"generator", "mirrordav " MIRRORDAV_VERSION}};
    int rv;

    if ((rv = manifest_writer_open(&g->wr, fd, hdr, 1)) != 0)
        return rv;
    rv = manifest_walk(dir, gen_entry, gen_skip, g);
    if (rv == 0)
        rv = manifest_writer_finish(g->wr);
    manifest_writer_free(g->wr);
    g->wr = NULL;
    return rv;
}

static int cmd_generate(int argc, char **argv)
{
    const char *dir = NULL, *out = NULL;
    publish_file pf = PUBLISH_FILE_INIT;
    char outdir[PATH_MAX];
    gen_ctx g;
    int i, rv;

    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-o") && i + 1 < argc)
            out = argv[++i];
        else if (!dir && argv[i][0] != '-')
            dir = argv[i];
        else {
            fprintf(stderr, "usage: mirrordav manifest generate DIR "
                            "[-o FILE]\n");
            return 2;
        }
    }
    if (!dir) {
        fprintf(stderr, "usage: mirrordav manifest generate DIR [-o FILE]\n");
        return 2;
    }
    memset(&g, 0, sizeof(g));
    if (!out) {
        rv = generate(dir, STDOUT_FILENO, &g);
        if (rv != 0) {
            fprintf(stderr, "mirrordav manifest: %s: %s\n", dir,
                    strerror(-rv));
            return 2;
        }
        return 0;
    }

    /* A reader of FILE sees the old manifest or the whole new one: a new
     * file beside it (sidecar/publish.h), fsynced, put in place by one
     * link or rename, the directory fsynced.  A crash before that leaves
     * at most a temp name, never a partial FILE. */
    {
        const char *slash = strrchr(out, '/');

        if (snprintf(outdir, sizeof(outdir), "%.*s",
                     slash ? (int)(slash - out) : 1,
                     slash ? (slash == out ? "/" : out) : ".") >=
            (int)sizeof(outdir)) {
            fprintf(stderr, "mirrordav manifest: %s: name too long\n", out);
            return 2;
        }
        g.out_base = slash ? slash + 1 : out;
    }
    if ((rv = publish_open(&pf, outdir, outdir, ".manifest-tmp-", O_WRONLY,
                           0644)) != 0) {
        fprintf(stderr, "mirrordav manifest: %s: %s\n", outdir, strerror(-rv));
        return 2;
    }
    g.tmp_base = pf.tmp ? strrchr(pf.tmp, '/') + 1 : NULL;
    rv = generate(dir, pf.fd, &g);
    if (rv == 0)
        rv = publish_sync_fd(pf.fd);
    if (rv == 0)
        rv = publish_commit(&pf, out, PUBLISH_REPLACE);
    if (rv == 0)
        rv = publish_sync_dir(outdir);
    publish_discard(&pf);
    if (rv != 0) {
        fprintf(stderr, "mirrordav manifest: %s: %s\n", out, strerror(-rv));
        return 2;
    }
    fprintf(stderr,
            "mirrordav manifest: %s: %" PRIu64 " files, %" PRIu64 " bytes\n",
            out, g.files, g.bytes);
    return 0;
}

static int cmd_check(int argc, char **argv)
{
    const manifest_record *rec;
    manifest_reader *rd;
    uint64_t entries = 0;
    unsigned long line;
    const char *why;
    int rv;

    if (argc != 2) {
        fprintf(stderr, "usage: mirrordav manifest check FILE\n");
        return 2;
    }
    if ((rv = manifest_reader_open(&rd, argv[1], -1)) != 0) {
        fprintf(stderr, "mirrordav manifest: %s: %s\n", argv[1],
                strerror(-rv));
        return 2;
    }
    while ((rv = manifest_reader_next(rd, &rec)) == 1)
        if (rec->kind == MANIFEST_ENTRY)
            entries++;
    if (rv == MANIFEST_ECORRUPT) {
        why = manifest_reader_error(rd, &line);
        printf("%s:%lu: corrupt: %s\n", argv[1], line, why);
        manifest_reader_close(rd);
        return 3;
    }
    manifest_reader_close(rd);
    if (rv != 0) {
        fprintf(stderr, "mirrordav manifest: %s: %s\n", argv[1],
                strerror(-rv));
        return 2;
    }
    printf("%s: valid, %" PRIu64 " entries\n", argv[1], entries);
    return 0;
}

int cmd_manifest(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "generate"))
        return cmd_generate(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "check"))
        return cmd_check(argc - 1, argv + 1);
    fprintf(stderr, "usage: mirrordav manifest generate DIR [-o FILE]\n"
                    "       mirrordav manifest check FILE\n");
    return 2;
}
