/* paths.c: the URI -> relative path rules and the ancestor checks that
 * keep every request inside the volume. */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "apr_general.h"
#include "apr_pools.h"
#include "mod_mirrordav/mirrordav.h"
#include "tap.h"

static apr_pool_t *pool;

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
    is_int(mirrordav_check_ancestors(pool, base, "d/x"), MIRRORDAV_PATH_OK,
           "a directory on the way");
    is_int(mirrordav_check_ancestors(pool, base, "missing/x"),
           MIRRORDAV_PATH_OK, "a missing ancestor: the caller's 409");
    is_int(mirrordav_check_ancestors(pool, base, "f/x"), MIRRORDAV_PATH_OK,
           "a file as parent: the caller's 409");
    is_int(mirrordav_check_ancestors(pool, base, "link/passwd"),
           MIRRORDAV_PATH_SYMLINK, "a symlink on the way is refused");
    is_int(mirrordav_check_ancestors(pool, base, "d/../link/x"),
           MIRRORDAV_PATH_SYMLINK,
           "a path that reaches the symlink another way is refused too");
    is_int(mirrordav_check_ancestors(pool, base, "fifo/x"),
           MIRRORDAV_PATH_SYMLINK, "a FIFO on the way is refused");

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
