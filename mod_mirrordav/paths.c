/*
 * URI to volume path mapping.  httpd has already decoded and normalised the
 * URI (dot segments merged, encoded slashes refused); this file enforces
 * the volume's own rules on top: no segment may be empty, "." or "..", none
 * may name the sidecar folder, and no path may cross a symbolic link or a
 * special file, so nothing leads outside the volume.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#ifdef SYS_openat2
#include <linux/openat2.h>
#endif

#include "apr_strings.h"
#include "mirrordav.h"
#include "sidecar/sidecar.h"

/* The reserved name is matched in any letter case, on every volume: a
 * volume may sit on, or be copied to, a case-insensitive file system (a
 * casefolded ext4 folder, a mounted SMB or APFS share, a restore on
 * macOS), where ".MirrorDAV" opens the sidecar folder; a name that is
 * refused in some places and served in others would follow the data
 * around unpredictably.  Refusing it everywhere costs users only the
 * handful of spellings of this one name. */
int mirrordav_is_reserved_name(const char *name, apr_size_t len)
{
    return len == sizeof(SIDECAR_DIR) - 1 &&
           strncasecmp(name, SIDECAR_DIR, len) == 0;
}

static mirrordav_path_status check_segment(const char *seg, apr_size_t len)
{
    if (len == 0 || (len == 1 && seg[0] == '.') ||
        (len == 2 && seg[0] == '.' && seg[1] == '.'))
        return MIRRORDAV_PATH_INVALID;
    if (mirrordav_is_reserved_name(seg, len))
        return MIRRORDAV_PATH_RESERVED;
    return MIRRORDAV_PATH_OK;
}

mirrordav_path_status mirrordav_uri_to_relpath(apr_pool_t *p,
                                               const char *root_uri,
                                               const char *uri,
                                               const char **relpath)
{
    apr_size_t rlen = strlen(root_uri);
    const char *rest, *seg;

    if (strncmp(uri, root_uri, rlen) != 0 ||
        (uri[rlen] != '\0' && uri[rlen] != '/'))
        return MIRRORDAV_PATH_OUTSIDE;
    rest = uri + rlen;
    while (*rest == '/')
        rest++;

    /* Validate every segment; a single trailing slash is allowed. */
    for (seg = rest; *seg;) {
        const char *end = strchr(seg, '/');
        apr_size_t len = end ? (apr_size_t)(end - seg) : strlen(seg);
        mirrordav_path_status st = check_segment(seg, len);

        if (st != MIRRORDAV_PATH_OK)
            return st;
        if (!end)
            break;
        seg = end + 1;
    }

    {
        apr_size_t n = strlen(rest);
        if (n && rest[n - 1] == '/')
            n--;
        *relpath = apr_pstrmemdup(p, rest, n);
    }
    return MIRRORDAV_PATH_OK;
}

/* The lstat walk: each proper ancestor in turn, from the top.  A symlink
 * swapped in for an ancestor already checked, while the walk goes on
 * below it, is followed unseen; it serves where openat2 is missing and to
 * tell what a non-directory on the way is. */
static mirrordav_path_status check_by_lstat(apr_pool_t *p, const char *base,
                                            const char *relpath)
{
    char *path = apr_pstrcat(p, base, "/", relpath, NULL);
    char *s = path + strlen(base) + 1;
    struct stat st;

    while ((s = strchr(s, '/')) != NULL) {
        *s = '\0';
        if (lstat(path, &st) != 0) {
            *s = '/';
            return MIRRORDAV_PATH_OK; /* missing ancestor: caller says 409 */
        }
        if (!S_ISDIR(st.st_mode)) {
            *s = '/';
            return S_ISLNK(st.st_mode) || !S_ISREG(st.st_mode)
                       ? MIRRORDAV_PATH_SYMLINK
                       : MIRRORDAV_PATH_OK; /* a file as parent: 409 */
        }
        *s++ = '/';
    }
    return MIRRORDAV_PATH_OK;
}

/* Set by the unit test to check that both ways give the same answers. */
int mirrordav_paths_no_openat2;

/* Every proper ancestor of RELPATH under BASE must be a real directory or
 * not exist at all; a symlink or special file anywhere on the way refuses
 * the path.  The last segment is the caller's to lstat.
 *
 * Where the kernel has openat2 (Linux 5.6), the parent is resolved in one
 * call from a descriptor of BASE with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS:
 * the kernel refuses a symlink met at any component during that one
 * resolution, so a link swapped in mid-check cannot be followed as it can
 * between two lstat calls.  The caller still uses the path by name
 * afterwards; this narrows the window to between check and use, it does
 * not close it. */
mirrordav_path_status
mirrordav_check_ancestors(apr_pool_t *p, const char *base, const char *relpath)
{
#ifdef SYS_openat2
    const char *slash = strrchr(relpath, '/');
    struct open_how how;
    struct stat st;
    int dfd, fd, e, tries;

    if (!slash)
        return MIRRORDAV_PATH_OK; /* no proper ancestor */
    if (mirrordav_paths_no_openat2)
        return check_by_lstat(p, base, relpath);
    dfd = open(base, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return check_by_lstat(p, base, relpath);
    memset(&how, 0, sizeof(how));
    how.flags = O_PATH | O_CLOEXEC;
    how.resolve =
        RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    /* EAGAIN: a concurrent rename raced the RESOLVE_BENEATH check. */
    for (tries = 0; tries < 3; tries++) {
        fd = (int)syscall(SYS_openat2, dfd,
                          apr_pstrmemdup(p, relpath, slash - relpath), &how,
                          sizeof(how));
        e = errno;
        if (fd >= 0 || e != EAGAIN)
            break;
    }
    close(dfd);
    if (fd >= 0) {
        int rc = fstat(fd, &st);
        close(fd);
        if (rc != 0 || S_ISDIR(st.st_mode) || S_ISREG(st.st_mode))
            return MIRRORDAV_PATH_OK;  /* a file as parent: the caller's 409 */
        return MIRRORDAV_PATH_SYMLINK; /* a special file */
    }
    switch (e) {
    case ELOOP: /* a symlink on the way */
    case EXDEV: /* a way out of BASE */
        return MIRRORDAV_PATH_SYMLINK;
    case ENOENT:
        return MIRRORDAV_PATH_OK; /* missing ancestor: caller says 409 */
    default:
        /* ENOTDIR (a file or a special file on the way: the walk tells
         * which), and ENOSYS, EPERM (seccomp), EINVAL on kernels or
         * sandboxes without openat2. */
        return check_by_lstat(p, base, relpath);
    }
#else
    return check_by_lstat(p, base, relpath);
#endif
}

const char *mirrordav_path_message(mirrordav_path_status st)
{
    switch (st) {
    case MIRRORDAV_PATH_RESERVED:
        return "The name " SIDECAR_DIR " is reserved by the server.";
    case MIRRORDAV_PATH_INVALID:
        return "The path has an empty, '.' or '..' segment.";
    case MIRRORDAV_PATH_SYMLINK:
        return "The path crosses a symbolic link or special file, "
               "which this server does not follow.";
    case MIRRORDAV_PATH_OUTSIDE:
        return "The path is outside this share.";
    default:
        return "OK";
    }
}

int mirrordav_path_http_status(mirrordav_path_status st)
{
    switch (st) {
    case MIRRORDAV_PATH_OK:
        return HTTP_OK;
    case MIRRORDAV_PATH_RESERVED:
        return HTTP_NOT_FOUND;
    case MIRRORDAV_PATH_SYMLINK:
        return HTTP_FORBIDDEN;
    default:
        return HTTP_BAD_REQUEST;
    }
}

const char *mirrordav_join(apr_pool_t *p, const char *dir, const char *name)
{
    if (!*name)
        return dir;
    if (!*dir)
        return apr_pstrdup(p, name);
    return apr_pstrcat(p, dir, "/", name, NULL);
}

const char *mirrordav_basename(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

const char *mirrordav_dirname(apr_pool_t *p, const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? apr_pstrmemdup(p, path, s - path) : "";
}
