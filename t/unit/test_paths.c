/* paths.c: the URI -> relative path rules and the ancestor checks that
 * keep every request inside the volume. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* renameat2 */
#endif
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>
#ifdef SYS_openat2
#include <linux/openat2.h>
#endif

#include "apr_general.h"
#include "apr_pools.h"
#include "mod_mirrordav/mirrordav.h"
#include "tap.h"

static apr_pool_t *pool;
extern int mirrordav_paths_no_openat2; /* paths.c */

/* Swaps BASE/sw (a real directory) with BASE/sw2 (a symlink) over and
 * over, atomically, until told to stop. */
static volatile int racing;
static const char *race_base;

static void *swapper(void *arg)
{
    char a[512], b[512];

    (void)arg;
    snprintf(a, sizeof a, "%s/sw", race_base);
    snprintf(b, sizeof b, "%s/sw2", race_base);
    while (racing)
        if (renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) != 0)
            break;
    return NULL;
}

/* Checks "sw/x/y" while sw flips between a directory whose x is a FIFO
 * and a symlink to a directory whose x is a directory: at every instant
 * the answer is "refused", but a walk that lstats sw before the flip and
 * sw/x after it sees two directories.  Returns how many checks said OK. */
static int race(const char *base, int seconds, int *checks)
{
    pthread_t t;
    apr_pool_t *sub;
    time_t end = time(NULL) + seconds;
    int wrong = 0;

    race_base = base;
    racing = 1;
    *checks = 0;
    if (pthread_create(&t, NULL, swapper, NULL) != 0)
        return -1;
    apr_pool_create(&sub, pool);
    while (time(NULL) < end) {
        int i;
        for (i = 0; i < 1000; i++, ++*checks) {
            if (mirrordav_check_ancestors(sub, base, "sw/x/y") ==
                MIRRORDAV_PATH_OK)
                wrong++;
            apr_pool_clear(sub);
        }
    }
    racing = 0;
    pthread_join(t, NULL);
    apr_pool_destroy(sub);
    return wrong;
}

static void uri_ok(const char *uri, const char *want)
{
    const char *rel = NULL;
    is_int(mirrordav_uri_to_relpath(pool, "/dav", uri, &rel),
           MIRRORDAV_PATH_OK, "%s is accepted", uri);
    is_str(rel, want, "%s maps to '%s'", uri, want);
}

static void uri_bad(const char *uri, mirrordav_path_status want)
{
    const char *rel = NULL;
    is_int(mirrordav_uri_to_relpath(pool, "/dav", uri, &rel), want,
           "%s is refused (%d)", uri, (int)want);
}

int main(void)
{
    char base[] = "/tmp/test_paths-XXXXXX";
    char buf[512];
    int mode;

    apr_initialize();
    apr_pool_create(&pool, NULL);

    uri_ok("/dav", "");
    uri_ok("/dav/", "");
    uri_ok("/dav/a", "a");
    uri_ok("/dav/a/", "a");
    uri_ok("/dav/a/b c/\xc3\xa9.txt", "a/b c/\xc3\xa9.txt");
    uri_ok("/dav/.mirrordavx", ".mirrordavx");
    uri_ok("/dav/x.mirrordav", "x.mirrordav");
    uri_bad("/davx", MIRRORDAV_PATH_OUTSIDE);
    uri_bad("/other/a", MIRRORDAV_PATH_OUTSIDE);
    uri_bad("/dav/.mirrordav", MIRRORDAV_PATH_RESERVED);
    /* In any letter case, on every volume (see paths.c). */
    uri_bad("/dav/.MirrorDAV", MIRRORDAV_PATH_RESERVED);
    uri_bad("/dav/.MIRRORDAV", MIRRORDAV_PATH_RESERVED);
    uri_bad("/dav/a/.mirrorDav/x.db", MIRRORDAV_PATH_RESERVED);
    uri_ok("/dav/.MirrorDAVx", ".MirrorDAVx");
    uri_ok("/dav/MIRRORDAV", "MIRRORDAV");
    uri_bad("/dav/a/.mirrordav/x.db", MIRRORDAV_PATH_RESERVED);
    uri_bad("/dav/a/.mirrordav/", MIRRORDAV_PATH_RESERVED);
    uri_bad("/dav/a/../b", MIRRORDAV_PATH_INVALID);
    uri_bad("/dav/a/./b", MIRRORDAV_PATH_INVALID);
    uri_bad("/dav/a//b", MIRRORDAV_PATH_INVALID);
    uri_bad("/dav/..", MIRRORDAV_PATH_INVALID);

    is_int(mirrordav_path_http_status(MIRRORDAV_PATH_RESERVED), 404,
           "reserved -> 404");
    is_int(mirrordav_path_http_status(MIRRORDAV_PATH_SYMLINK), 403,
           "symlink -> 403");
    is_int(mirrordav_path_http_status(MIRRORDAV_PATH_INVALID), 400,
           "bad segment -> 400");

    /* Ancestors: a directory is fine, a symlink or a FIFO on the way is
     * not, a missing one or a plain file is left to the caller (409). */
    if (!mkdtemp(base))
        return 2;
    snprintf(buf, sizeof buf, "%s/d", base);
    mkdir(buf, 0755);
    snprintf(buf, sizeof buf, "%s/f", base);
    close(creat(buf, 0644));
    snprintf(buf, sizeof buf, "%s/link", base);
    if (symlink("/etc", buf) != 0)
        return 2;
    snprintf(buf, sizeof buf, "%s/fifo", base);
    mkfifo(buf, 0644);
    snprintf(buf, sizeof buf, "%s/d/e", base);
    mkdir(buf, 0755);
    snprintf(buf, sizeof buf, "%s/d/up", base);
    if (symlink("..", buf) != 0)
        return 2;
    snprintf(buf, sizeof buf, "%s/d/fifo", base);
    mkfifo(buf, 0644);

    /* The same answers from openat2 (where the kernel has it) and from
     * the lstat walk it falls back to. */
    for (mode = 0; mode < 2; mode++) {
        const char *how = mode ? "lstat walk" : "openat2";

        mirrordav_paths_no_openat2 = mode;
        is_int(mirrordav_check_ancestors(pool, base, "x"), MIRRORDAV_PATH_OK,
               "%s: a top entry has no ancestor to check", how);
        is_int(mirrordav_check_ancestors(pool, base, "d/x"), MIRRORDAV_PATH_OK,
               "%s: a directory on the way", how);
        is_int(mirrordav_check_ancestors(pool, base, "d/e/x"),
               MIRRORDAV_PATH_OK, "%s: two directories on the way", how);
        is_int(mirrordav_check_ancestors(pool, base, "missing/x"),
               MIRRORDAV_PATH_OK, "%s: a missing ancestor: the caller's 409",
               how);
        is_int(mirrordav_check_ancestors(pool, base, "d/missing/x/y"),
               MIRRORDAV_PATH_OK, "%s: a missing ancestor deeper down", how);
        is_int(mirrordav_check_ancestors(pool, base, "f/x"), MIRRORDAV_PATH_OK,
               "%s: a file as parent: the caller's 409", how);
        is_int(mirrordav_check_ancestors(pool, base, "f/x/y"),
               MIRRORDAV_PATH_OK, "%s: a file as grandparent: 409 too", how);
        is_int(mirrordav_check_ancestors(pool, base, "link/passwd"),
               MIRRORDAV_PATH_SYMLINK, "%s: a symlink on the way is refused",
               how);
        is_int(mirrordav_check_ancestors(pool, base, "link/ssl/x"),
               MIRRORDAV_PATH_SYMLINK,
               "%s: a symlink high on the way is refused", how);
        is_int(mirrordav_check_ancestors(pool, base, "d/up/d/x"),
               MIRRORDAV_PATH_SYMLINK,
               "%s: a symlink that stays inside is refused too", how);
        is_int(mirrordav_check_ancestors(pool, base, "d/up/x"),
               MIRRORDAV_PATH_SYMLINK, "%s: so is one as the parent", how);
        is_int(mirrordav_check_ancestors(pool, base, "d/../link/x"),
               MIRRORDAV_PATH_SYMLINK,
               "%s: a path that reaches the symlink another way is refused "
               "too",
               how);
        is_int(mirrordav_check_ancestors(pool, base, "fifo/x"),
               MIRRORDAV_PATH_SYMLINK, "%s: a FIFO on the way is refused",
               how);
        is_int(mirrordav_check_ancestors(pool, base, "d/fifo/x/y"),
               MIRRORDAV_PATH_SYMLINK, "%s: a FIFO deeper down is refused",
               how);
    }
    mirrordav_paths_no_openat2 = 0;

    /* A symlink swapped in during the check.  The lstat walk can be fooled
     * (told only, as it is the fallback); openat2 must never be. */
    {
        char p2[512];
        int checks, wrong;

        snprintf(buf, sizeof buf, "%s/sw", base);
        mkdir(buf, 0755);
        snprintf(buf, sizeof buf, "%s/sw/x", base);
        mkfifo(buf, 0644);
        snprintf(buf, sizeof buf, "%s/outside/x", base);
        snprintf(p2, sizeof p2, "%s/outside", base);
        mkdir(p2, 0755);
        mkdir(buf, 0755);
        snprintf(buf, sizeof buf, "%s/sw2", base);
        if (symlink("outside", buf) != 0)
            return 2;
        mirrordav_paths_no_openat2 = 1;
        wrong = race(base, 1, &checks);
        printf("# lstat walk: %d of %d checks fooled by the swap\n", wrong,
               checks);
        mirrordav_paths_no_openat2 = 0;
        wrong = race(base, 2, &checks);
        is_int(wrong, 0,
               "a symlink swapped in during %d checks never passed (%d did)",
               checks, wrong);
    }

#ifdef SYS_openat2
    {
        /* Say which way this machine's checks went. */
        struct open_how oh = {.flags = O_PATH, .resolve = RESOLVE_BENEATH};
        long fd = syscall(SYS_openat2, AT_FDCWD, ".", &oh, sizeof(oh));
        printf("# openat2 is %s here\n", fd >= 0 ? "available" : "missing");
        if (fd >= 0)
            close((int)fd);
    }
#endif

    is_str(mirrordav_join(pool, "a", "b"), "a/b", "join");
    is_str(mirrordav_join(pool, "", "b"), "b", "join onto the root");
    is_str(mirrordav_dirname(pool, "a/b/c"), "a/b", "dirname");
    is_str(mirrordav_dirname(pool, "c"), "", "dirname of a top entry");
    is_str(mirrordav_basename("a/b/c"), "c", "basename");

    snprintf(buf, sizeof buf, "rm -rf '%s'", base);
    if (system(buf) != 0)
        return 2;
    apr_pool_destroy(pool);
    apr_terminate();
    return done_testing();
}
