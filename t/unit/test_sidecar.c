/* Unit tests for sidecar/: naming, the merged view, atomic publication,
 * size, optimistic locking, following the data, writer exclusion. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "sidecar/sidecar.h"
#include "tap.h"

#include <sys/xattr.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <gdbm.h>
#include <limits.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char root[64];

static char *mkpath(const char *fmt, const char *a)
{
    static char buf[8][PATH_MAX];
    static int n;
    char *b = buf[n++ % 8];

    snprintf(b, PATH_MAX, fmt, root, a);
    return b;
}

static void mkdir_p(const char *p)
{
    if (mkdir(p, 0755) && errno != EEXIST) {
        perror(p);
        exit(2);
    }
}

static char *longname(size_t len, char c)
{
    char *s = malloc(len + 1);

    memset(s, c, len);
    s[len] = '\0';
    return s;
}

static void write_file(const char *p, const char *data)
{
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);

    if (fd < 0 || write(fd, data, strlen(data)) != (ssize_t)strlen(data) ||
        close(fd)) {
        perror(p);
        exit(2);
    }
}

/* Past the file system's timestamp granularity (a jiffy), so that the
 * next change of a ctime is visible. */
static void tick(void)
{
    struct timespec ts = {0, 20 * 1000 * 1000};

    nanosleep(&ts, NULL);
}

static ino_t ino_of(const char *p)
{
    struct stat st;

    return stat(p, &st) ? 0 : st.st_ino;
}

static int exists(const char *p)
{
    struct stat st;

    return lstat(p, &st) == 0;
}

/* Number of entries in a folder whose name starts with PREFIX. */
static int count_prefix(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    if (!d)
        return -1;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0)
            n++;
    closedir(d);
    return n;
}

/* Value of string KEY through a fresh read-only handle; NULL if absent. */
static char *read_val(const char *dir, const char *name, const char *key)
{
    sidecar *sc;
    void *v;
    size_t vl;
    char *s = NULL;

    if (sidecar_open(dir, name, 0, &sc))
        return NULL;
    if (sidecar_get(sc, key, strlen(key), &v, &vl) == 0) {
        s = malloc(vl + 1);
        memcpy(s, v, vl);
        s[vl] = '\0';
        free(v);
    }
    sidecar_close(sc);
    return s;
}

static int put_commit(const char *dir, const char *name, const char *key,
                      const char *val)
{
    sidecar *sc;
    int rc = sidecar_open(dir, name, 1, &sc);

    if (rc)
        return rc;
    rc = sidecar_put(sc, key, strlen(key), val, strlen(val));
    if (!rc)
        rc = sidecar_commit(sc);
    sidecar_close(sc);
    return rc;
}

static int val_is(const char *dir, const char *name, const char *key,
                  const char *want)
{
    char *got = read_val(dir, name, key);
    int same = want ? got && strcmp(got, want) == 0 : got == NULL;

    if (!same)
        printf("#   %s/%s %s: got '%s', want '%s'\n", dir, name, key,
               got ? got : "(none)", want ? want : "(none)");
    free(got);
    return same;
}

struct collect {
    int n;
    int seen_bin;
    int seen_empty;
    int seen_other;
};

static const unsigned char bin_key[] = {'k', 0, 0xff, '\n', 0x80};
static const unsigned char bin_val[] = {0, 1, 2, 0, 0xfe, 0xff, 0};

static int collect_cb(void *ctx, const void *key, size_t klen, const void *val,
                      size_t vlen)
{
    struct collect *c = ctx;

    c->n++;
    if (klen == sizeof bin_key && memcmp(key, bin_key, klen) == 0 &&
        vlen == sizeof bin_val && memcmp(val, bin_val, vlen) == 0)
        c->seen_bin++;
    else if (klen == 5 && memcmp(key, "empty", 5) == 0 && vlen == 0)
        c->seen_empty++;
    else
        c->seen_other++;
    return 0;
}

static int stop_cb(void *ctx, const void *key, size_t klen, const void *val,
                   size_t vlen)
{
    (*(int *)ctx)++;
    return 42;
}

static int rm_cb(const char *p, const struct stat *st, int flag,
                 struct FTW *ftw)
{
    return remove(p);
}

/* ------------------------------------------------------------------ */

static void test_reserved(void)
{
    ok(sidecar_is_reserved_name(".mirrordav"), "reserved: .mirrordav");
    ok(!sidecar_is_reserved_name(".mirrordav2"), "reserved: not .mirrordav2");
    ok(!sidecar_is_reserved_name(".mirrorda"), "reserved: not .mirrorda");
    ok(!sidecar_is_reserved_name(""), "reserved: not empty");
    ok(!sidecar_is_reserved_name(".MIRRORDAV"), "reserved: case-sensitive");
}

static void sha1_hex(const char *s, char out[41])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n, i;

    EVP_Digest(s, strlen(s), md, &n, EVP_sha1(), NULL);
    for (i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", md[i]);
}

static void test_paths(void)
{
    char out[PATH_MAX], want[PATH_MAX], hex[41];
    size_t lens[] = {250, 252}, hlens[] = {253, 255}, i;

    is_int(sidecar_path("/d", "", out, sizeof out), 0, "path: root entry");
    is_str(out, "/d/.mirrordav/.db", "path: root is .mirrordav/.db");
    is_int(sidecar_path("/d", "file.txt", out, sizeof out), 0, "path: plain");
    is_str(out, "/d/.mirrordav/file.txt.db", "path: NAME.db");

    for (i = 0; i < 2; i++) {
        char *n = longname(lens[i], 'x');

        is_int(sidecar_path("/d", n, out, sizeof out), 0,
               "path: %zu-byte name", lens[i]);
        snprintf(want, sizeof want, "/d/.mirrordav/%s.db", n);
        is_str(out, want, "path: %zu-byte name maps to NAME.db", lens[i]);
        is_int(strlen(strrchr(out, '/') + 1), lens[i] + 3,
               "path: %zu-byte name: file name length", lens[i]);
        free(n);
    }
    for (i = 0; i < 2; i++) {
        char *n = longname(hlens[i], 'y');

        is_int(sidecar_path("/d", n, out, sizeof out), 0,
               "path: %zu-byte name", hlens[i]);
        sha1_hex(n, hex);
        snprintf(want, sizeof want, "/d/.mirrordav/%s.hdb", hex);
        is_str(out, want, "path: %zu-byte name is hashed", hlens[i]);
        free(n);
    }
    {
        char *n = longname(256, 'z');

        is_int(sidecar_path("/d", n, out, sizeof out), -ENAMETOOLONG,
               "path: 256-byte name refused");
        free(n);
    }
    is_int(sidecar_path("/d", "a/b", out, sizeof out), -EINVAL,
           "path: slash refused");
    is_int(sidecar_path("/d", "..", out, sizeof out), -EINVAL,
           "path: .. refused");
    is_int(sidecar_path("/d", ".", out, sizeof out), -EINVAL,
           "path: . refused");
    is_int(sidecar_path("/d", ".mirrordav", out, sizeof out), -EINVAL,
           "path: reserved name refused");
    is_int(sidecar_path("/d", "file", out, 10), -ENAMETOOLONG,
           "path: short buffer");
    is_int(sidecar_path("/d", "file", out, strlen("/d/.mirrordav/file.db")),
           -ENAMETOOLONG, "path: buffer without room for NUL");
    is_int(
        sidecar_path("/d", "file", out, strlen("/d/.mirrordav/file.db") + 1),
        0, "path: exact buffer");
}

static void test_missing(void)
{
    char *dir = mkpath("%s/missing%s", "");
    struct collect c = {0};
    sidecar_record rec;
    sidecar *sc;
    void *v;
    size_t vl;

    mkdir_p(dir);
    is_int(sidecar_open(dir, "nofile", 0, &sc), 0, "missing: opens");
    is_int(sidecar_get(sc, "k", 1, &v, &vl), -ENOENT, "missing: get ENOENT");
    is_int(sidecar_iter(sc, collect_cb, &c), 0, "missing: iter ok");
    is_int(c.n, 0, "missing: iter empty");
    memset(&rec, 0x55, sizeof rec);
    is_int(sidecar_get_record(sc, &rec), 0, "missing: record ok");
    ok(rec.sha1[0] == 0 && rec.version == 0 && rec.size == 0 &&
           rec.mtime == 0 && rec.sha1_version == 0,
       "missing: record zeroed");
    is_int(sidecar_put(sc, "k", 1, "v", 1), -EBADF,
           "missing: read-only handle refuses put");
    is_int(sidecar_commit(sc), -EBADF, "missing: read-only commit refused");
    sidecar_close(sc);
    ok(!exists(mkpath("%s/missing/%s", ".mirrordav")),
       "missing: reader created no folder");
    is_int(sidecar_open(mkpath("%s/no/such/%s", "dir"), "f", 0, &sc), 0,
           "missing: reader of a missing directory reads empty");
    sidecar_close(sc);
}

static void test_kv(void)
{
    int ntmp;
    char *dir = mkpath("%s/kv%s", "");
    struct collect c = {0};
    sidecar *sc, *rd;
    void *v;
    size_t vl;
    int n = 0;

    mkdir_p(dir);
    is_int(sidecar_open(dir, "f", 1, &sc), 0, "kv: open writable");
    is_int(sidecar_put(sc, bin_key, sizeof bin_key, bin_val, sizeof bin_val),
           0, "kv: put binary");
    is_int(sidecar_put(sc, "empty", 5, NULL, 0), 0, "kv: put empty value");
    is_int(sidecar_put(sc, "gone", 4, "x", 1), 0, "kv: put gone");
    is_int(sidecar_put(sc, "_rec", 4, "x", 1), -EPERM, "kv: '_' key refused");
    is_int(sidecar_del(sc, "_name", 5), -EPERM, "kv: '_' del refused");
    is_int(sidecar_put(sc, "", 0, "x", 1), -EINVAL, "kv: empty key refused");
    is_int(sidecar_del(sc, "gone", 4), 0, "kv: del pending");
    is_int(sidecar_del(sc, "never", 5), 0, "kv: del of absent key is fine");
    is_int(sidecar_get(sc, "gone", 4, &v, &vl), -ENOENT,
           "kv: deleted pending key absent");
    is_int(sidecar_get(sc, bin_key, sizeof bin_key, &v, &vl), 0,
           "kv: get binary before commit");
    ok(vl == sizeof bin_val && memcmp(v, bin_val, vl) == 0,
       "kv: binary value intact before commit");
    free(v);
    is_int(sidecar_iter(sc, collect_cb, &c), 0, "kv: iter pending");
    ok(c.n == 2 && c.seen_bin == 1 && c.seen_empty == 1,
       "kv: iter sees pending binary and empty (n=%d)", c.n);
    is_int(sidecar_commit(sc), 0, "kv: commit");
    is_int(sidecar_put(sc, "after", 5, "commit", 6), 0,
           "kv: handle usable after commit");
    is_int(sidecar_commit(sc), 0, "kv: second commit");
    sidecar_close(sc);
    is_int(count_prefix(mkpath("%s/kv/%s", ".mirrordav"), ".tmp-"), 0,
           "kv: no temp left");

    is_int(sidecar_open(dir, "f", 0, &rd), 0, "kv: reopen read-only");
    is_int(sidecar_get(rd, bin_key, sizeof bin_key, &v, &vl), 0,
           "kv: binary key stored");
    ok(vl == sizeof bin_val && memcmp(v, bin_val, vl) == 0,
       "kv: binary value stored");
    free(v);
    is_int(sidecar_get(rd, "empty", 5, &v, &vl), 0, "kv: empty value found");
    is_int(vl, 0, "kv: empty value has length 0");
    free(v);
    is_int(sidecar_get(rd, "gone", 4, &v, &vl), -ENOENT,
           "kv: gone not stored");
    memset(&c, 0, sizeof c);
    is_int(sidecar_iter(rd, collect_cb, &c), 0, "kv: iter stored");
    ok(c.n == 3 && c.seen_bin == 1 && c.seen_empty == 1 && c.seen_other == 1,
       "kv: iter stored finds 3 keys (n=%d)", c.n);
    is_int(sidecar_iter(rd, stop_cb, &n), 42, "kv: iter stops on non-zero");
    is_int(n, 1, "kv: iter stopped after one call");
    sidecar_close(rd);

    /* A delete of a stored key, and a merged view over base + changes. */
    is_int(sidecar_open(dir, "f", 1, &sc), 0, "kv: reopen writable");
    is_int(sidecar_del(sc, bin_key, sizeof bin_key), 0, "kv: del stored");
    is_int(sidecar_put(sc, "empty", 5, "now", 3), 0, "kv: overwrite stored");
    is_int(sidecar_put(sc, "new", 3, "n", 1), 0, "kv: add new");
    memset(&c, 0, sizeof c);
    is_int(sidecar_iter(sc, collect_cb, &c), 0, "kv: merged iter");
    ok(c.n == 3 && c.seen_bin == 0 && c.seen_empty == 0 && c.seen_other == 3,
       "kv: merged iter sees after/empty(now)/new (n=%d)", c.n);
    is_int(sidecar_commit(sc), 0, "kv: commit merged");
    sidecar_close(sc);
    ok(val_is(dir, "f", "empty", "now"), "kv: overwrite published");
    ok(val_is(dir, "f", "new", "n"), "kv: new published");
    ok(val_is(dir, "f", "after", "commit"), "kv: untouched key kept");
    is_int(sidecar_open(dir, "f", 0, &rd), 0, "kv: reopen");
    is_int(sidecar_get(rd, bin_key, sizeof bin_key, &v, &vl), -ENOENT,
           "kv: deleted key gone");
    sidecar_close(rd);

    /* Repeated prepare rewrites the temp; commit publishes the last. */
    is_int(sidecar_open(dir, "f", 1, &sc), 0, "kv: open for prepare");
    is_int(sidecar_put(sc, "p", 1, "1", 1), 0, "kv: put p=1");
    is_int(sidecar_prepare(sc), 0, "kv: prepare 1");
    /* The temp is unnamed (O_TMPFILE) where the system allows, else one
     * named file; either way repeated prepares reuse it. */
    ntmp = count_prefix(mkpath("%s/kv/%s", ".mirrordav"), ".tmp-");
    ok(ntmp <= 1, "kv: prepare wrote at most one named temp (%d)", ntmp);
    is_int(sidecar_put(sc, "p", 1, "2", 1), 0, "kv: put p=2");
    is_int(sidecar_prepare(sc), 0, "kv: prepare 2");
    is_int(sidecar_prepare(sc), 0, "kv: prepare 3 (clean)");
    is_int(count_prefix(mkpath("%s/kv/%s", ".mirrordav"), ".tmp-"), ntmp,
           "kv: still the same temp");
    is_int(sidecar_commit(sc), 0, "kv: commit after prepare");
    sidecar_close(sc);
    ok(val_is(dir, "f", "p", "2"), "kv: last prepared state published");
    is_int(count_prefix(mkpath("%s/kv/%s", ".mirrordav"), ".tmp-"), 0,
           "kv: no temp after commit");
}

static void test_noop(void)
{
    char *dir = mkpath("%s/noop%s", "");
    char *db = mkpath("%s/noop/.mirrordav/%s", "f.db");
    sidecar *sc;
    ino_t ino;

    mkdir_p(dir);
    is_int(put_commit(dir, "f", "k", "v"), 0, "noop: seed");
    ino = ino_of(db);
    ok(ino != 0, "noop: db exists");
    is_int(sidecar_open(dir, "f", 1, &sc), 0, "noop: open writable");
    is_int(sidecar_commit(sc), 0, "noop: commit without change");
    is_int(sidecar_put(sc, "k", 1, "v", 1), 0, "noop: put same value");
    is_int(sidecar_del(sc, "absent", 6), 0, "noop: del absent");
    is_int(sidecar_commit(sc), 0, "noop: commit of no-op changes");
    sidecar_close(sc);
    ok(ino_of(db) == ino, "noop: database not rewritten (inode kept)");
}

static void test_atomic(void)
{
    char *dir = mkpath("%s/atomic%s", "");
    char *snap = mkpath("%s/snap%s", "");
    char *db = mkpath("%s/atomic/.mirrordav/%s", "f.db");
    char *link_to = mkpath("%s/snap/.mirrordav/%s", "f.db");
    sidecar *w, *r;
    void *v;
    size_t vl;

    mkdir_p(dir);
    mkdir_p(snap);
    is_int(put_commit(dir, "f", "color", "red"), 0, "atomic: seed");
    is_int(sidecar_ensure_dir(snap), 0, "atomic: ensure_dir");
    is_int(sidecar_ensure_dir(snap), 0, "atomic: ensure_dir again");
    is_int(link(db, link_to), 0, "atomic: snapshot hard link");

    is_int(sidecar_open(dir, "f", 1, &w), 0, "atomic: writer");
    is_int(sidecar_put(w, "color", 5, "blue", 4), 0, "atomic: change");
    is_int(sidecar_prepare(w), 0, "atomic: prepare");
    is_int(sidecar_open(dir, "f", 0, &r), 0, "atomic: reader meanwhile");
    is_int(sidecar_get(r, "color", 5, &v, &vl), 0, "atomic: reader get");
    ok(vl == 3 && memcmp(v, "red", 3) == 0,
       "atomic: prepared change invisible to reader");
    free(v);
    is_int(sidecar_commit(w), 0, "atomic: commit");
    is_int(sidecar_get(r, "color", 5, &v, &vl), 0, "atomic: old reader get");
    ok(vl == 3 && memcmp(v, "red", 3) == 0,
       "atomic: open reader keeps its consistent old view");
    free(v);
    sidecar_close(r);
    sidecar_close(w);

    ok(ino_of(db) != ino_of(link_to), "atomic: commit made a new inode");
    ok(val_is(dir, "f", "color", "blue"), "atomic: live sees new");
    ok(val_is(snap, "f", "color", "red"), "atomic: snapshot link unchanged");

    /* Dropped changes never show. */
    is_int(sidecar_open(dir, "f", 1, &w), 0, "atomic: writer 2");
    is_int(sidecar_put(w, "color", 5, "green", 5), 0, "atomic: change 2");
    is_int(sidecar_prepare(w), 0, "atomic: prepare 2");
    sidecar_close(w);
    ok(val_is(dir, "f", "color", "blue"), "atomic: closed without commit");
    is_int(count_prefix(mkpath("%s/atomic/%s", ".mirrordav"), ".tmp-"), 0,
           "atomic: close removed the temp");
}

static void fill_props(sidecar *sc, int n, const size_t *vlens)
{
    char key[64], val[512];
    int i, bad = 0;

    for (i = 0; i < n; i++) {
        snprintf(key, sizeof key, "{http://example.com/ns}prop%d", i);
        memset(val, 'a' + i, vlens[i]);
        bad += sidecar_put(sc, key, strlen(key), val, vlens[i]) != 0;
    }
    is_int(bad, 0, "size: %d properties put", n);
}

static void size_case(const char *dir, const char *name, const size_t *vlens,
                      const char *what)
{
    char path[PATH_MAX];
    sidecar_record rec = {"", 0, 0, 0, 0};
    struct stat st;
    sidecar *sc;
    size_t total = 0;
    int i;

    for (i = 0; i < 12; i++)
        total += vlens[i];
    is_int(sidecar_open(dir, name, 1, &sc), 0, "size: open %s", what);
    fill_props(sc, 12, vlens);
    memcpy(rec.sha1, "da39a3ee5e6b4b0d3255bfef95601890afd80709", 41);
    rec.sha1_version = rec.version = 123456;
    rec.size = 1234567890123ULL;
    rec.mtime = 1700000000;
    is_int(sidecar_set_record(sc, &rec), 0, "size: record set");
    is_int(sidecar_commit(sc), 0, "size: commit");
    sidecar_close(sc);
    sidecar_path(dir, name, path, sizeof path);
    is_int(stat(path, &st), 0, "size: stat");
    printf("# %s: values %zu bytes, file %lld bytes, st_blocks %lld\n", what,
           total, (long long)st.st_size, (long long)st.st_blocks);
    ok((long long)st.st_blocks * 512 <= 4096,
       "size: %s takes at most one 4 KiB block (%lld bytes allocated)", what,
       (long long)st.st_blocks * 512);
    {
        char *got = read_val(dir, name, "{http://example.com/ns}prop11");

        ok(got && strlen(got) == vlens[11], "size: %s database readable",
           what);
        free(got);
    }
}

static void test_size(void)
{
    char *dir = mkpath("%s/size%s", "");
    size_t v160[12], v2k[12];
    char key[64];
    sidecar *sc;
    void *v;
    size_t vl;
    int i, bad = 0;

    mkdir_p(dir);
    for (i = 0; i < 12; i++) {
        v160[i] = 160;
        v2k[i] = i < 11 ? 171 : 2047 - 11 * 171; /* 2047 in total */
    }
    size_case(dir, "twelve", v160, "12 x 160-byte values");
    size_case(dir, "under2k", v2k, "12 values totalling 2047 bytes");

    /* Rewriting (one change) keeps the size. */
    is_int(sidecar_open(dir, "twelve", 1, &sc), 0, "size: reopen");
    is_int(sidecar_put(sc, "{DAV:}Win32LastModifiedTime", 27,
                       "Tue, 14 Nov 2023 22:13:20 GMT", 29),
           0, "size: 13th property");
    is_int(sidecar_commit(sc), 0, "size: commit 13");
    sidecar_close(sc);
    is_int(sidecar_open(dir, "twelve", 0, &sc), 0, "size: read back");
    for (i = 0; i < 12; i++) {
        snprintf(key, sizeof key, "{http://example.com/ns}prop%d", i);
        if (sidecar_get(sc, key, strlen(key), &v, &vl) || vl != 160 ||
            ((char *)v)[0] != 'a' + i || ((char *)v)[159] != 'a' + i)
            bad++;
        else
            free(v);
    }
    is_int(bad, 0, "size: all 12 values intact after rewrite");
    sidecar_close(sc);
}

static void test_record(void)
{
    char *dir = mkpath("%s/rec%s", "");
    sidecar_record a = {"", 0, 0, 0, 0}, b;
    sidecar *sc;

    mkdir_p(dir);
    memcpy(a.sha1, "0123456789ABCDEFabcdef0123456789abcdef01", 41);
    a.sha1_version = UINT64_MAX;
    a.size = 0;
    a.mtime = -1234567;
    a.version = 1;
    is_int(sidecar_open(dir, "f", 1, &sc), 0, "record: open");
    is_int(sidecar_set_record(sc, &a), 0, "record: set");
    is_int(sidecar_commit(sc), 0, "record: commit");
    sidecar_close(sc);
    is_int(sidecar_open(dir, "f", 0, &sc), 0, "record: reopen");
    is_int(sidecar_get_record(sc, &b), 0, "record: get");
    is_str(b.sha1, "0123456789abcdefabcdef0123456789abcdef01",
           "record: sha1 (lowercased)");
    ok(b.sha1_version == UINT64_MAX, "record: sha1_version max");
    is_int(b.size, 0, "record: size");
    is_int(b.mtime, -1234567, "record: negative mtime");
    is_int(b.version, 1, "record: version");
    sidecar_close(sc);

    is_int(sidecar_open(dir, "f", 1, &sc), 0, "record: open 2");
    memcpy(a.sha1, "xyz", 4);
    is_int(sidecar_set_record(sc, &a), -EINVAL, "record: bad sha1 refused");
    a.sha1[0] = '\0';
    a.mtime = INT64_MIN;
    is_int(sidecar_set_record(sc, &a), 0, "record: set without sha1");
    is_int(sidecar_get_record(sc, &b), 0, "record: get pending");
    is_str(b.sha1, "", "record: sha1 cleared");
    ok(b.mtime == INT64_MIN, "record: mtime min");
    is_str(b.sha256, "", "record: no sha256 reads empty");

    /* The SHA-256 (flag bit 2) after the identity, with its own version;
     * a current SHA-1 does not make it current. */
    memcpy(a.sha1, "0123456789abcdef0123456789abcdef01234567", 41);
    memcpy(a.sha256,
           "00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff",
           65);
    a.sha1_version = a.version = 9;
    a.sha256_version = 8;
    a.bound = 1;
    a.ino = 77;
    is_int(sidecar_set_record(sc, &a), 0, "record: set with sha256");
    is_int(sidecar_get_record(sc, &b), 0, "record: get with sha256");
    is_str(b.sha256,
           "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
           "record: sha256 (lowercased)");
    ok(b.sha256_version == 8 && b.ino == 77 && b.bound, "record: sha256 "
                                                        "version, identity");
    memcpy(a.md5, "0123456789abcdef0123456789ABCDEF", 33);
    a.md5_version = 9;
    is_int(sidecar_set_record(sc, &a), 0, "record: set with md5");
    is_int(sidecar_get_record(sc, &b), 0, "record: get with md5");
    is_str(b.md5, "0123456789abcdef0123456789abcdef", "record: md5");
    ok(b.md5_version == 9 && b.sha256_version == 8, "record: md5 version");
    a.md5[0] = '\0';
    a.sha256[3] = 'g';
    is_int(sidecar_set_record(sc, &a), -EINVAL, "record: bad sha256 refused");
    sidecar_close(sc);
}

/* The SHA-256 and MD5 beside the SHA-1: kept by a store for the bytes the
 * record already described, dropped by one for other bytes of the same
 * content version (fsck after a change behind the server's back). */
static void test_extra_digests(void)
{
    char dir[128], f[PATH_MAX];
    const char *h1 = "1111111111111111111111111111111111111111";
    const char *h256 =
        "2222222222222222222222222222222222222222222222222222222222222222";
    sidecar_record r = {"", 0, 0, 0, 0}, b;
    struct timespec ts[2];
    struct stat st, st2;
    sidecar *sc;

    snprintf(dir, sizeof dir, "%s/xd", root);
    snprintf(f, sizeof f, "%s/f", dir);
    mkdir_p(dir);
    write_file(f, "abc");
    stat(f, &st);
    r.version = 3;
    memcpy(r.sha256, h256, 65);
    r.sha256_version = 3;
    memcpy(r.md5, "33333333333333333333333333333333", 33);
    r.md5_version = 3;
    sidecar_record_bind(&r, &st);
    is_int(sidecar_open(dir, "f", 1, &sc), 0, "extra: open");
    is_int(sidecar_set_record(sc, &r), 0, "extra: set");
    is_int(sidecar_commit(sc), 0, "extra: commit");
    sidecar_close(sc);

    is_int(sidecar_store_sha1(dir, "f", h1, 3, &st), 0,
           "extra: store the SHA-1 of the same bytes");
    sidecar_open(dir, "f", 0, &sc);
    sidecar_get_record(sc, &b);
    sidecar_close(sc);
    ok(sidecar_hash_current(&b, &st) && sidecar_sha256_current(&b, &st) &&
           sidecar_md5_current(&b, &st),
       "extra: same bytes: SHA-256 and MD5 kept, current");

    /* Other bytes, same size, behind the record's back. */
    write_file(f, "xyz");
    ts[0].tv_sec = ts[1].tv_sec = 1000000;
    ts[0].tv_nsec = ts[1].tv_nsec = 0;
    utimensat(AT_FDCWD, f, ts, 0);
    stat(f, &st2);
    is_int(sidecar_store_sha1(dir, "f", h1, 3, &st2), 0,
           "extra: store the SHA-1 of other bytes, same version");
    sidecar_open(dir, "f", 0, &sc);
    sidecar_get_record(sc, &b);
    sidecar_close(sc);
    ok(sidecar_hash_current(&b, &st2), "extra: the new SHA-1 current");
    ok(!sidecar_sha256_current(&b, &st2) && !b.sha256[0] && !b.md5[0] &&
           !sidecar_md5_current(&b, &st2),
       "extra: other bytes: SHA-256 and MD5 dropped");

    is_int(sidecar_store_digests(dir, "f", h1, h256, NULL, 3, &st2), 0,
           "extra: store SHA-1 and SHA-256 together");
    sidecar_open(dir, "f", 0, &sc);
    sidecar_get_record(sc, &b);
    sidecar_close(sc);
    ok(sidecar_sha256_current(&b, &st2) && !strcmp(b.sha256, h256),
       "extra: SHA-256 stored with the SHA-1");
}

static void test_optimistic(void)
{
    char dir[128];
    const char *h1 = "1111111111111111111111111111111111111111";
    const char *h2 = "2222222222222222222222222222222222222222";
    sidecar_record r = {"", 0, 0, 0, 0};
    struct stat st, st2;
    sidecar *sc;
    ino_t ino;

    snprintf(dir, sizeof dir, "%s/opt", root);
    mkdir_p(dir);
    write_file(mkpath("%s/opt/%s", "f"), "0123456789");
    stat(mkpath("%s/opt/%s", "f"), &st);
    r.version = 1;
    r.size = 10;
    is_int(sidecar_open(dir, "f", 1, &sc), 0, "opt: open");
    is_int(sidecar_set_record(sc, &r), 0, "opt: version 1");
    is_int(sidecar_commit(sc), 0, "opt: commit v1");
    sidecar_close(sc);

    is_int(sidecar_store_sha1(dir, "f", h1, 1, NULL), -EINVAL,
           "opt: store without the data's identity refused");
    is_int(sidecar_store_sha1(dir, "f", h1, 1, &st), 0, "opt: store at v1");
    is_int(sidecar_open(dir, "f", 1, &sc), 0, "opt: open 2");
    is_int(sidecar_get_record(sc, &r), 0, "opt: get");
    is_str(r.sha1, h1, "opt: sha1 stored");
    is_int(r.sha1_version, 1, "opt: sha1_version 1");
    is_int(r.size, 10, "opt: other fields kept");
    r.version = 2; /* a write happened meanwhile */
    is_int(sidecar_set_record(sc, &r), 0, "opt: bump to v2");
    is_int(sidecar_commit(sc), 0, "opt: commit v2");
    sidecar_close(sc);

    ino = ino_of(mkpath("%s/opt/.mirrordav/%s", "f.db"));
    is_int(sidecar_store_sha1(dir, "f", h2, 1, &st), -ESTALE,
           "opt: store from v1 refused at v2");
    ok(ino_of(mkpath("%s/opt/.mirrordav/%s", "f.db")) == ino,
       "opt: refused store wrote nothing");
    is_int(sidecar_open(dir, "f", 0, &sc), 0, "opt: reader");
    is_int(sidecar_get_record(sc, &r), 0, "opt: get after refusal");
    is_str(r.sha1, h1, "opt: sha1 unchanged after refusal");
    is_int(r.sha1_version, 1, "opt: sha1_version unchanged");
    sidecar_close(sc);

    /* The data replaced while it was hashed: another inode at the path. */
    write_file(mkpath("%s/opt/%s", "g"), "0123456789");
    rename(mkpath("%s/opt/%s", "g"), mkpath("%s/opt/%s", "f"));
    is_int(sidecar_store_sha1(dir, "f", h2, 2, &st), -ESTALE,
           "opt: store for bytes no longer at the path refused");
    stat(mkpath("%s/opt/%s", "f"), &st2);
    is_int(sidecar_store_sha1(dir, "f", h2, 2, &st2), 0, "opt: store at v2");
    is_int(sidecar_open(dir, "f", 0, &sc), 0, "opt: reader 2");
    is_int(sidecar_get_record(sc, &r), 0, "opt: get 2");
    is_str(r.sha1, h2, "opt: new sha1");
    is_int(r.sha1_version, 2, "opt: sha1_version 2");
    is_int(r.version, 2, "opt: version untouched");
    ok(sidecar_hash_current(&r, &st2),
       "opt: stored hash is bound to the data");
    ok(!sidecar_hash_current(&r, &st), "opt: ... and not to the old inode");
    sidecar_close(sc);
    is_int(count_prefix(mkpath("%s/opt/%s", ".mirrordav"), ".tmp-"), 0,
           "opt: no temp left");
    is_int(sidecar_store_sha1(dir, "f", "nothex", 2, &st2), -EINVAL,
           "opt: malformed sha1 refused");
}

/* Writes the "_rec" value V (as the encoder before the identity did) into
 * a new database for entry NAME of DIR. */
static void write_raw_record(const char *dir, const char *name,
                             const unsigned char *v, size_t vlen)
{
    char path[PATH_MAX];
    GDBM_FILE db;
    datum k = {(char *)"_rec", 4}, d = {(char *)v, (int)vlen};

    snprintf(path, sizeof path, "%s/.mirrordav", dir);
    mkdir_p(path);
    snprintf(path, sizeof path, "%s/.mirrordav/%s.db", dir, name);
    db = gdbm_open(path, 512, GDBM_NEWDB, 0644, NULL);
    if (!db || gdbm_store(db, k, d, GDBM_REPLACE) != 0) {
        perror(path);
        exit(2);
    }
    gdbm_close(db);
}

static void test_identity(void)
{
    char dir[128], f[PATH_MAX], g[PATH_MAX];
    const char *h = "0123456789abcdef0123456789abcdef01234567";
    /* The format as written before the identity: format 1, flags "SHA-1",
     * 20 bytes, then sha1_version 1, size 3, mtime 0, version 1. */
    unsigned char old[2 + 20 + 4] = {1, 1};
    sidecar_record r = {"", 0, 0, 0, 0}, b;
    struct stat st, st2, st3;
    struct timespec ts[2];
    sidecar *sc;
    void *v;
    size_t vl;
    int i;

    snprintf(dir, sizeof dir, "%s/id", root);
    snprintf(f, sizeof f, "%s/f", dir);
    snprintf(g, sizeof g, "%s/g", dir);
    mkdir_p(dir);
    write_file(f, "abc");
    stat(f, &st);

    /* An old record reads, with its hash, as bound to nothing. */
    for (i = 0; i < 20; i++)
        old[2 + i] = (unsigned char)(0x01 + i);
    old[22] = 1;
    old[23] = 3;
    old[24] = 0;
    old[25] = 1;
    write_raw_record(dir, "f", old, sizeof old);
    is_int(sidecar_open(dir, "f", 0, &sc), 0, "identity: open old record");
    is_int(sidecar_get_record(sc, &b), 0, "identity: old record reads");
    is_str(b.sha1, "0102030405060708090a0b0c0d0e0f1011121314",
           "identity: old record's sha1");
    ok(b.size == 3 && b.version == 1 && b.sha1_version == 1,
       "identity: old record's fields");
    is_int(b.bound, 0, "identity: old record is unbound");
    is_int(sidecar_hash_current(&b, &st), 0,
           "identity: old record's hash is unknown");
    sidecar_close(sc);

    /* An unbound record is still written in the old format exactly. */
    is_int(sidecar_open(dir, "f", 1, &sc), 0, "identity: open writable");
    is_int(sidecar_set_record(sc, &b), 0, "identity: rewrite unbound");
    is_int(sidecar_get(sc, "_rec", 4, &v, &vl), 0, "identity: raw get");
    ok(vl == sizeof old && !memcmp(v, old, vl),
       "identity: unbound encoding is the old one, byte for byte");
    free(v);

    /* Bound: round trip, and the match. */
    memcpy(r.sha1, h, 41);
    r.version = r.sha1_version = 7;
    sidecar_record_bind(&r, &st);
    is_int(sidecar_set_record(sc, &r), 0, "identity: set bound");
    is_int(sidecar_commit(sc), 0, "identity: commit");
    sidecar_close(sc);
    is_int(sidecar_open(dir, "f", 0, &sc), 0, "identity: reopen");
    is_int(sidecar_get_record(sc, &b), 0, "identity: get bound");
    sidecar_close(sc);
    ok(b.bound && b.ino == (uint64_t)st.st_ino && b.size == 3 &&
           b.mtime == st.st_mtim.tv_sec &&
           b.mtime_nsec == (uint32_t)st.st_mtim.tv_nsec &&
           b.ctime == st.st_ctim.tv_sec &&
           b.ctime_nsec == (uint32_t)st.st_ctim.tv_nsec,
       "identity: round trip of inode, size, mtime and ctime in ns");
    is_int(sidecar_hash_current(&b, &st), 1, "identity: current for its data");
    b.sha1_version = 6;
    is_int(sidecar_hash_current(&b, &st), 0,
           "identity: not current for an older content version");
    b.sha1_version = 7;
    b.sha1[0] = '\0';
    is_int(sidecar_hash_current(&b, &st), 0, "identity: no hash, not current");
    memcpy(b.sha1, h, 41);
    st2 = st;
    st2.st_ino++;
    is_int(sidecar_hash_current(&b, &st2), 0, "identity: other inode");
    st2 = st;
    st2.st_size++;
    is_int(sidecar_hash_current(&b, &st2), 0, "identity: other size");
    st2 = st;
    st2.st_mtim.tv_nsec ^= 1;
    is_int(sidecar_hash_current(&b, &st2), 0, "identity: mtime 1 ns apart");
    st2 = st;
    st2.st_ctim.tv_nsec ^= 1;
    is_int(sidecar_hash_current(&b, &st2), 0, "identity: ctime 1 ns apart");

    /* Rewritten in place, same size, mtime put back: the ctime tells. */
    tick();
    write_file(f, "xyz");
    ts[0] = st.st_atim;
    ts[1] = st.st_mtim;
    utimensat(AT_FDCWD, f, ts, 0);
    stat(f, &st2);
    ok(st2.st_ino == st.st_ino && st2.st_size == st.st_size &&
           st2.st_mtim.tv_nsec == st.st_mtim.tv_nsec,
       "identity: same inode, size and mtime after the rewrite");
    is_int(sidecar_hash_current(&b, &st2), 0,
           "identity: the rewritten file's hash is unknown");

    /* Truncated identity fields are damage. */
    {
        unsigned char bad[2 + 4 + 2] = {1, 2, 0, 3, 0, 1, 5, 0};

        write_raw_record(dir, "t", bad, sizeof bad);
        is_int(sidecar_open(dir, "t", 0, &sc), 0, "identity: open truncated");
        is_int(sidecar_get_record(sc, &b), -EBADMSG,
               "identity: truncated identity is -EBADMSG");
        sidecar_close(sc);
    }

    /* Rebinding after a rename of the data: ctime moves, bytes do not. */
    is_int(sidecar_open(dir, "f", 1, &sc), 0, "rebind: open");
    sidecar_record_bind(&r, &st2);
    is_int(sidecar_set_record(sc, &r), 0, "rebind: bind to the data");
    is_int(sidecar_commit(sc), 0, "rebind: commit");
    sidecar_close(sc);
    tick();
    rename(f, g);
    rename(g, f);
    stat(f, &st3);
    is_int(sidecar_hash_current(&r, &st3), 0,
           "rebind: a rename leaves the record unmatched");
    st = st3;
    st.st_ino++;
    is_int(sidecar_rebind(dir, "f", &st2, &st), 0, "rebind: other inode");
    sidecar_open(dir, "f", 0, &sc);
    sidecar_get_record(sc, &b);
    sidecar_close(sc);
    is_int(sidecar_hash_current(&b, &st3), 0, "rebind: not to another inode");
    is_int(sidecar_rebind(dir, "f", &st3, &st3), 0,
           "rebind: from a stat the record does not describe");
    sidecar_open(dir, "f", 0, &sc);
    sidecar_get_record(sc, &b);
    sidecar_close(sc);
    is_int(sidecar_hash_current(&b, &st3), 0, "rebind: ... changes nothing");
    is_int(sidecar_rebind(dir, "f", &st2, &st3), 0, "rebind: the rename");
    sidecar_open(dir, "f", 0, &sc);
    sidecar_get_record(sc, &b);
    sidecar_close(sc);
    is_int(sidecar_hash_current(&b, &st3), 1, "rebind: current again");
    is_int(sidecar_rebind(dir, "nothing", &st2, &st3), 0,
           "rebind: no database is fine");
    ok(access(mkpath("%s/id/.mirrordav/%s", "nothing.db"), F_OK) != 0,
       "rebind: ... and creates none");

    /* The mtime set through an open handle (Win32LastModifiedTime). */
    tick();
    ts[0].tv_nsec = UTIME_OMIT;
    ts[1].tv_sec = 1577874030;
    ts[1].tv_nsec = 0;
    utimensat(AT_FDCWD, f, ts, 0);
    stat(f, &st);
    is_int(sidecar_open(dir, "f", 1, &sc), 0, "rebind handle: open");
    is_int(sidecar_rebind_handle(sc, &st3, &st, 0), 0,
           "rebind handle: mtime change not allowed");
    sidecar_get_record(sc, &b);
    is_int(sidecar_hash_current(&b, &st), 0, "rebind handle: stays unknown");
    is_int(sidecar_rebind_handle(sc, &st3, &st, 1), 0,
           "rebind handle: mtime set");
    sidecar_get_record(sc, &b);
    is_int(sidecar_hash_current(&b, &st), 1, "rebind handle: current");
    is_int(sidecar_commit(sc), 0, "rebind handle: commit");
    sidecar_close(sc);

    /* A copy: a new inode, carried only if the source held still. */
    write_file(g, "abc");
    ts[0].tv_nsec = UTIME_OMIT;
    ts[1] = st.st_mtim;
    utimensat(AT_FDCWD, g, ts, 0);
    stat(g, &st2);
    is_int(sidecar_copy(dir, "f", dir, "g"), 0, "rebind copy: sidecar copy");
    sidecar_open(dir, "g", 0, &sc);
    sidecar_get_record(sc, &b);
    sidecar_close(sc);
    is_int(sidecar_hash_current(&b, &st2), 0,
           "rebind copy: the carried record does not match the copy");
    st3 = st;
    st3.st_ctim.tv_sec++;
    is_int(sidecar_rebind_copy(dir, "g", &st, &st3, &st2), 0,
           "rebind copy: source changed while read");
    sidecar_open(dir, "g", 0, &sc);
    sidecar_get_record(sc, &b);
    sidecar_close(sc);
    is_int(sidecar_hash_current(&b, &st2), 0, "rebind copy: stays unknown");
    st3 = st2;
    st3.st_size++;
    is_int(sidecar_rebind_copy(dir, "g", &st, &st, &st3), 0,
           "rebind copy: copy of another size");
    sidecar_open(dir, "g", 0, &sc);
    sidecar_get_record(sc, &b);
    sidecar_close(sc);
    is_int(sidecar_hash_current(&b, &st3), 0, "rebind copy: stays unknown 2");
    is_int(sidecar_rebind_copy(dir, "g", &st, &st, &st2), 0,
           "rebind copy: source unchanged");
    sidecar_open(dir, "g", 0, &sc);
    sidecar_get_record(sc, &b);
    sidecar_close(sc);
    is_int(sidecar_hash_current(&b, &st2), 1, "rebind copy: current");
}

static void test_orphan(void)
{
    char dir[128];
    char *l1 = longname(253, 'O'), *l2 = longname(253, 'P');
    char p1[PATH_MAX], p2[PATH_MAX], data[PATH_MAX];
    char *name = NULL;
    sidecar *sc;

    snprintf(dir, sizeof dir, "%s/orph", root);
    mkdir_p(dir);
    is_int(sidecar_open(dir, l1, 1, &sc), 0, "orphan: create hashed 1");
    is_int(sidecar_put(sc, "k", 1, "v", 1), 0, "orphan: put 1");
    is_int(sidecar_commit(sc), 0, "orphan: commit 1");
    sidecar_close(sc);
    is_int(sidecar_open(dir, l2, 1, &sc), 0, "orphan: create hashed 2");
    is_int(sidecar_put(sc, "k", 1, "v", 1), 0, "orphan: put 2");
    is_int(sidecar_commit(sc), 0, "orphan: commit 2");
    sidecar_close(sc);
    sidecar_path(dir, l1, p1, sizeof p1);
    sidecar_path(dir, l2, p2, sizeof p2);
    is_int(sidecar_recorded_name(p1, &name), 0, "orphan: recorded name");
    is_str(name ? name : "", l1, "orphan: ... is the full name");
    free(name);
    is_int(sidecar_recorded_name(mkpath("%s/orph/%s", "none.hdb"), &name),
           -ENOENT, "orphan: recorded name of nothing");
    snprintf(data, sizeof data, "%s/%s", dir, l2);
    write_file(data, "here");
    is_int(sidecar_remove_orphan(dir, l2), -EEXIST,
           "orphan: data exists, refused");
    ok(access(p2, F_OK) == 0, "orphan: ... and the database kept");
    is_int(sidecar_remove_orphan(dir, l1), 0, "orphan: no data, removed");
    ok(access(p1, F_OK) != 0, "orphan: ... database gone");
    is_int(sidecar_remove_orphan(dir, ""), -EINVAL,
           "orphan: a directory's own database never");
    free(l1);
    free(l2);
}

static void test_follow(void)
{
    char *a = mkpath("%s/fa%s", ""), *b = mkpath("%s/fb%s", "");
    char *l1 = longname(253, 'L'), *l2 = longname(255, 'M');
    char pa[PATH_MAX], pb[PATH_MAX];
    sidecar *sc;
    void *v;
    size_t vl;
    ino_t ino;

    mkdir_p(a);
    mkdir_p(b);

    /* copy: independent byte copy */
    is_int(put_commit(a, "src", "k", "one"), 0, "follow: seed src");
    is_int(sidecar_copy(a, "src", b, "dst"), 0, "follow: copy");
    sidecar_path(a, "src", pa, sizeof pa);
    sidecar_path(b, "dst", pb, sizeof pb);
    ok(ino_of(pa) && ino_of(pb) && ino_of(pa) != ino_of(pb),
       "follow: copy is a separate inode");
    ok(val_is(b, "dst", "k", "one"), "follow: copy carries content");
    is_int(put_commit(a, "src", "k", "two"), 0, "follow: change src");
    ok(val_is(b, "dst", "k", "one"), "follow: copy independent of src");
    {
        struct stat st;

        stat(pb, &st);
        is_int(st.st_nlink, 1, "follow: copy not hard-linked");
        is_int(st.st_mode & 0777, 0644, "follow: copy mode 0644");
    }

    /* move: rename, inode travels */
    ino = ino_of(pa);
    is_int(sidecar_move(a, "src", b, "moved"), 0, "follow: move");
    ok(!exists(pa), "follow: move removed source");
    sidecar_path(b, "moved", pb, sizeof pb);
    ok(ino_of(pb) == ino, "follow: plain move is a rename");
    ok(val_is(b, "moved", "k", "two"), "follow: moved content");

    /* missing source: nothing to carry, destination's old db goes */
    is_int(sidecar_copy(a, "nothing", b, "moved"), 0,
           "follow: copy of missing source");
    ok(!exists(pb), "follow: copy of missing source cleared destination");
    is_int(put_commit(b, "x", "k", "x"), 0, "follow: seed x");
    is_int(sidecar_move(a, "nothing", b, "x"), 0,
           "follow: move of missing source");
    sidecar_path(b, "x", pb, sizeof pb);
    ok(!exists(pb), "follow: move of missing source cleared destination");
    is_int(sidecar_move(mkpath("%s/%s", "nodir"), "n", b, "y"), 0,
           "follow: move from a directory without sidecars");

    /* copy into a directory without .mirrordav yet */
    {
        char *c = mkpath("%s/fc%s", "");

        mkdir_p(c);
        is_int(put_commit(a, "s2", "k", "v2"), 0, "follow: seed s2");
        is_int(sidecar_copy(a, "s2", c, "s2"), 0,
               "follow: copy creates destination folder");
        ok(val_is(c, "s2", "k", "v2"), "follow: copied into new folder");
    }

    /* short -> hashed */
    is_int(sidecar_copy(a, "s2", b, l1), 0, "follow: copy to hashed name");
    sidecar_path(b, l1, pb, sizeof pb);
    ok(strstr(pb, ".hdb") != NULL && exists(pb), "follow: hashed file made");
    ok(val_is(b, l1, "k", "v2"), "follow: hashed copy content");
    is_int(sidecar_open(b, l1, 0, &sc), 0, "follow: hashed copy opens");
    is_int(sidecar_get(sc, "_name", 5, &v, &vl), 0, "follow: _name present");
    ok(vl == 253 && memcmp(v, l1, vl) == 0, "follow: _name is the full name");
    free(v);
    sidecar_close(sc);

    /* hashed -> other hashed name, other dir */
    is_int(sidecar_move(b, l1, a, l2), 0, "follow: move hashed -> hashed");
    ok(!exists(pb), "follow: hashed source gone");
    is_int(sidecar_open(a, l2, 0, &sc), 0, "follow: renamed hashed opens");
    is_int(sidecar_get(sc, "_name", 5, &v, &vl), 0, "follow: _name there");
    ok(vl == 255 && memcmp(v, l2, vl) == 0, "follow: _name rewritten");
    free(v);
    sidecar_close(sc);
    ok(val_is(a, l2, "k", "v2"), "follow: content kept across rewrite");

    /* hashed -> same hashed name elsewhere: plain rename */
    sidecar_path(a, l2, pa, sizeof pa);
    ino = ino_of(pa);
    is_int(sidecar_move(a, l2, b, l2), 0, "follow: move same long name");
    sidecar_path(b, l2, pb, sizeof pb);
    ok(ino_of(pb) == ino, "follow: same hashed name moves by rename");
    ok(val_is(b, l2, "k", "v2"), "follow: content there");

    /* hashed -> short */
    is_int(sidecar_move(b, l2, a, "short"), 0, "follow: move hashed -> short");
    ok(!exists(pb), "follow: hashed source removed");
    ok(val_is(a, "short", "k", "v2"), "follow: short has content");
    is_int(sidecar_open(a, "short", 0, &sc), 0, "follow: open short");
    is_int(sidecar_get(sc, "_name", 5, &v, &vl), -ENOENT,
           "follow: _name dropped for a normal name");
    sidecar_close(sc);

    /* a hashed slot holding another name's database */
    is_int(put_commit(a, l1, "k", "mine"), 0, "follow: hashed via put");
    sidecar_path(a, l1, pa, sizeof pa);
    sidecar_path(a, l2, pb, sizeof pb);
    is_int(link(pa, pb), 0, "follow: plant l1's db under l2's hash");
    is_int(sidecar_open(a, l2, 0, &sc), -EEXIST,
           "follow: mismatched _name refused (reader)");
    is_int(sidecar_open(a, l2, 1, &sc), -EEXIST,
           "follow: mismatched _name refused (writer)");
    is_int(sidecar_copy(a, l2, b, "z"), -EEXIST,
           "follow: mismatched _name refused (copy)");
    is_int(sidecar_remove(a, l2), 0, "follow: remove hashed");
    ok(!exists(pb), "follow: hashed removed");
    ok(val_is(a, l1, "k", "mine"), "follow: other name untouched");

    /* remove */
    is_int(sidecar_remove(a, "short"), 0, "follow: remove");
    sidecar_path(a, "short", pa, sizeof pa);
    ok(!exists(pa), "follow: removed");
    is_int(sidecar_remove(a, "short"), 0, "follow: remove again is fine");
    is_int(sidecar_remove(mkpath("%s/%s", "nodir"), "q"), 0,
           "follow: remove without folder");
    is_int(sidecar_remove(a, "a/b"), -EINVAL, "follow: bad name refused");

    /* the root's own database */
    is_int(put_commit(a, "", "root", "r"), 0, "follow: root db");
    is_int(sidecar_copy(a, "", b, "asentry"), 0, "follow: root -> entry");
    ok(val_is(b, "asentry", "root", "r"), "follow: root content copied");

    is_int(count_prefix(mkpath("%s/fa/%s", ".mirrordav"), ".tmp-") +
               count_prefix(mkpath("%s/fb/%s", ".mirrordav"), ".tmp-"),
           0, "follow: no temp left");
    free(l1);
    free(l2);
}

static void test_lock(void)
{
    char *dir = mkpath("%s/lock%s", "");
    sidecar *w;
    pid_t pid;
    int st, fd, r, i, go[2];
    char b = 'g';

    mkdir_p(dir);
    ok(pipe(go) == 0, "lock: pipe");
    /* Fork before locking: a child forked while the lock is held would
     * share the parent's open file description, and with it the lock. */
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        sidecar *c;
        void *v;
        size_t vl;
        int code = 1;

        alarm(10); /* never hang the suite */
        close(go[1]);
        if (read(go[0], &b, 1) != 1)
            _exit(4);
        if (sidecar_open(dir, "f", 1, &c) == 0) {
            /* Serialised: the parent's commit is visible now. */
            if (sidecar_get(c, "k", 1, &v, &vl) == 0) {
                code = vl == 6 && memcmp(v, "parent", 6) == 0 ? 0 : 3;
                free(v);
            }
            else {
                code = 2;
            }
            sidecar_close(c);
        }
        _exit(code);
    }
    ok(pid > 0, "lock: fork");
    close(go[0]);

    is_int(sidecar_open(dir, "f", 1, &w), 0, "lock: writer holds lock");
    is_int(sidecar_put(w, "k", 1, "parent", 6), 0, "lock: parent change");

    fd = open(mkpath("%s/lock/.mirrordav/%s", ".lock"), O_RDONLY);
    ok(fd >= 0, "lock: lock file exists");
    r = flock(fd, LOCK_EX | LOCK_NB);
    ok(r == -1 && errno == EWOULDBLOCK, "lock: another open file can't lock");
    close(fd);

    is_int(write(go[1], &b, 1), 1, "lock: child told to lock");
    close(go[1]);
    for (i = 0; i < 30; i++) { /* give the child time to block */
        struct timespec ts = {0, 10 * 1000 * 1000};

        nanosleep(&ts, NULL);
    }
    is_int(waitpid(pid, &st, WNOHANG), 0, "lock: second writer waits");
    is_int(sidecar_commit(w), 0, "lock: parent commits");
    sidecar_close(w);
    is_int(waitpid(pid, &st, 0), pid, "lock: child finished");
    ok(WIFEXITED(st) && WEXITSTATUS(st) == 0,
       "lock: child got the lock after close and saw the commit (%d)", st);

    /* Readers never block. */
    is_int(sidecar_open(dir, "f", 1, &w), 0, "lock: writer again");
    ok(val_is(dir, "f", "k", "parent"), "lock: reader not blocked by writer");
    sidecar_close(w);
}

/* The mark that lets PROPFIND skip databases holding only records. */
static void test_user_keys_mark(void)
{
    char *dir = mkpath("%s/mark%s", "");
    char *db = mkpath("%s/mark/.mirrordav/%s", "f.db");
    sidecar_record rec;
    sidecar *sc;

    mkdir_p(dir);
    is_int(sidecar_has_user_keys(dir, "f"), 0, "mark: no database: none");
    memset(&rec, 0, sizeof(rec));
    rec.version = 1;
    is_int(sidecar_open(dir, "f", 1, &sc), 0, "mark: open");
    is_int(sidecar_set_record(sc, &rec), 0, "mark: records only");
    is_int(sidecar_commit(sc), 0, "mark: commit");
    is_int(sidecar_has_user_keys(dir, "f"), 0, "mark: records only: none");
    is_int(sidecar_put(sc, "P{ns}x", 6, "v", 1), 0, "mark: a caller key");
    is_int(sidecar_commit(sc), 0, "mark: commit");
    is_int(sidecar_has_user_keys(dir, "f"), 1, "mark: caller key: some");
    is_int(sidecar_del(sc, "P{ns}x", 6), 0, "mark: delete it");
    is_int(sidecar_commit(sc), 0, "mark: commit");
    is_int(sidecar_has_user_keys(dir, "f"), 0, "mark: deleted again: none");
    is_int(sidecar_put(sc, "P{ns}y", 6, "w", 1), 0, "mark: another key");
    is_int(sidecar_commit(sc), 0, "mark: commit");
    sidecar_close(sc);
    is_int(sidecar_copy(dir, "f", dir, "g"), 0, "mark: copy");
    is_int(sidecar_has_user_keys(dir, "g"), 1, "mark: the copy keeps it");
    removexattr(db, "user.mirrordav.dead");
    is_int(sidecar_has_user_keys(dir, "f"), 1,
           "mark: a database without the mark counts as having keys");
}

int main(void)
{
    snprintf(root, sizeof root, "/tmp/test_sidecar-XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    test_reserved();
    test_paths();
    test_missing();
    test_kv();
    test_noop();
    test_atomic();
    test_size();
    test_record();
    test_optimistic();
    test_extra_digests();
    test_identity();
    test_orphan();
    test_follow();
    test_lock();
    test_user_keys_mark();

    nftw(root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return done_testing();
}
