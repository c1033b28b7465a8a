/*
 * Resolving a path on disk to the sidecar entry that describes it, and
 * hashing a file: shared by the admin subcommands.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


#include "admin/entry.h"
#include "manifest/manifest.h"

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* A volume holds live/ and state/ side by side. */
static int is_volume(const char *dir)
{
    char buf[PATH_MAX];

    if (snprintf(buf, sizeof(buf), "%s/state", dir) >= (int)sizeof(buf))
        return 0;
    if (!is_dir(buf))
        return 0;
    snprintf(buf, sizeof(buf), "%s/live", dir);
    return is_dir(buf);
}

int entry_is_tree_root(const char *path)
{
    char parent[PATH_MAX], grand[PATH_MAX], tmp[PATH_MAX];
    char *base;

    if (!realpath(path, tmp) || !is_dir(tmp))
        return 0;
    snprintf(parent, sizeof(parent), "%s", tmp);
    base = strrchr(parent, '/');
    if (!base || base == parent)
        return 0;
    *base++ = '\0';
    if (strcmp(base, "live") == 0 && is_volume(parent))
        return 1;
    /* VOLUME/snapshots/NAME */
    snprintf(grand, sizeof(grand), "%s", parent);
    base = strrchr(grand, '/');
    if (!base || base == grand)
        return 0;
    *base++ = '\0';
    return strcmp(base, "snapshots") == 0 && is_volume(grand);
}

int entry_resolve(const char *path, char *dir, size_t dirsz, char *name,
                  size_t namesz)
{
    char copy[PATH_MAX];
    const char *slash;
    size_t n = strlen(path);

    while (n > 1 && path[n - 1] == '/')
        n--;
    if (n >= sizeof(copy))
        return -ENAMETOOLONG;
    memcpy(copy, path, n);
    copy[n] = '\0';

    if (entry_is_tree_root(copy)) {
        if ((size_t)snprintf(dir, dirsz, "%s", copy) >= dirsz)
            return -ENAMETOOLONG;
        name[0] = '\0';
        return 0;
    }
    slash = strrchr(copy, '/');
    if (!slash) {
        snprintf(dir, dirsz, ".");
        if ((size_t)snprintf(name, namesz, "%s", copy) >= namesz)
            return -ENAMETOOLONG;
        return 0;
    }
    if ((size_t)snprintf(name, namesz, "%s", slash + 1) >= namesz)
        return -ENAMETOOLONG;
    if (slash == copy)
        snprintf(dir, dirsz, "/");
    else if ((size_t)snprintf(dir, dirsz, "%.*s", (int)(slash - copy), copy) >=
             dirsz)
        return -ENAMETOOLONG;
    return 0;
}

int entry_sha1_file(const char *path, char hex[41], uint64_t *size)
{
    return manifest_sha1_file(path, hex, size); /* the one hashing routine */
}

int entry_become_owner(const char *path)
{
    struct stat st;

    if (geteuid() != 0)
        return 0;
    if (stat(path, &st) != 0)
        return -errno;
    if (st.st_uid == 0)
        return 0;
    if (setgroups(0, NULL) != 0 || setgid(st.st_gid) != 0 ||
        setuid(st.st_uid) != 0)
        return -errno;
    return 0;
}
