/*
 * mirrordav sidecar get|set|del|list|dump PATH [KEY [VALUE]]
 *
 * Reads and edits the metadata database of one file or collection, for
 * operators.  Keys and values are printed with non-printable bytes as
 * %XX, so binary records stay readable and greppable.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/commands.h"
#include "admin/entry.h"
#include "sidecar/sidecar.h"

static void put_escaped(FILE *out, const void *data, size_t len)
{
    const unsigned char *s = data;
    size_t i;

    for (i = 0; i < len; i++) {
        if (s[i] < 0x20 || s[i] >= 0x7f || s[i] == '%')
            fprintf(out, "%%%02X", s[i]);
        else
            fputc(s[i], out);
    }
}

static int print_key(void *ctx, const void *key, size_t klen, const void *val,
                     size_t vlen)
{
    put_escaped(stdout, key, klen);
    if (ctx) {
        fputc('\t', stdout);
        put_escaped(stdout, val, vlen);
    }
    fputc('\n', stdout);
    return 0;
}

static int fail(const char *what, const char *path, int rv)
{
    fprintf(stderr, "mirrordav sidecar: %s %s: %s\n", what, path,
            strerror(rv < 0 ? -rv : rv));
    return 2;
}

int cmd_sidecar(int argc, char **argv)
{
    char dir[PATH_MAX], name[NAME_MAX + 1];
    const char *op, *path;
    int writable, rv, status = 0;
    sidecar *sc;

    if (argc < 3) {
        fprintf(stderr, "usage: mirrordav sidecar get PATH KEY\n"
                        "       mirrordav sidecar set PATH KEY VALUE\n"
                        "       mirrordav sidecar del PATH KEY\n"
                        "       mirrordav sidecar list PATH\n"
                        "       mirrordav sidecar dump PATH\n");
        return 2;
    }
    op = argv[1];
    path = argv[2];
    if ((!strcmp(op, "get") || !strcmp(op, "del")) && argc != 4)
        return fprintf(stderr, "mirrordav sidecar %s: needs KEY\n", op), 2;
    if (!strcmp(op, "set") && argc != 5)
        return fprintf(stderr, "mirrordav sidecar set: needs KEY VALUE\n"), 2;
    if (strcmp(op, "get") && strcmp(op, "set") && strcmp(op, "del") &&
        strcmp(op, "list") && strcmp(op, "dump"))
        return fprintf(stderr, "mirrordav sidecar: unknown '%s'\n", op), 2;

    rv = entry_resolve(path, dir, sizeof(dir), name, sizeof(name));
    if (rv != 0)
        return fail("cannot resolve", path, rv);
    writable = !strcmp(op, "set") || !strcmp(op, "del");
    if (writable && entry_become_owner(dir) != 0)
        return fail("cannot take the identity of the owner of", dir, errno);
    if ((rv = sidecar_open(dir, name, writable, &sc)) != 0)
        return fail("cannot open the sidecar of", path, rv);

    if (!strcmp(op, "get")) {
        void *val;
        size_t vlen;
        rv = sidecar_get(sc, argv[3], strlen(argv[3]), &val, &vlen);
        if (rv == 0) {
            fwrite(val, 1, vlen, stdout);
            fputc('\n', stdout);
            free(val);
        }
        else if (rv == -ENOENT)
            status = 1;
        else
            status = fail("cannot read", path, rv);
    }
    else if (!strcmp(op, "set") || !strcmp(op, "del")) {
        if (argv[3][0] == '_') {
            fprintf(stderr, "mirrordav sidecar: keys starting with '_' are "
                            "the server's records\n");
            status = 2;
        }
        else {
            rv = !strcmp(op, "set")
                     ? sidecar_put(sc, argv[3], strlen(argv[3]), argv[4],
                                   strlen(argv[4]))
                     : sidecar_del(sc, argv[3], strlen(argv[3]));
            if (rv == 0)
                rv = sidecar_commit(sc);
            if (rv == -ENOENT)
                status = 1;
            else if (rv != 0)
                status = fail("cannot write", path, rv);
        }
    }
    else {
        int dump = !strcmp(op, "dump");
        if (dump) {
            sidecar_record rec;
            memset(&rec, 0, sizeof(rec));
            if (sidecar_get_record(sc, &rec) == 0)
                printf("# sha1=%s sha1_version=%" PRIu64 " size=%" PRIu64
                       " mtime=%" PRId64 " version=%" PRIu64 "\n",
                       rec.sha1[0] ? rec.sha1 : "-", rec.sha1_version,
                       rec.size, rec.mtime, rec.version);
            if (rec.sha256[0])
                printf("# sha256=%s sha256_version=%" PRIu64 "\n", rec.sha256,
                       rec.sha256_version);
            if (rec.md5[0])
                printf("# md5=%s md5_version=%" PRIu64 "\n", rec.md5,
                       rec.md5_version);
        }
        rv = sidecar_iter(sc, print_key, dump ? (void *)1 : NULL);
        if (rv != 0)
            status = fail("cannot read", path, rv);
    }
    sidecar_close(sc);
    return status;
}
