/*
 * Snapshot records in VOLUME/state/snapshots/ (see record.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sidecar/publish.h"
#include "snapshot/record.h"

static int rec_path(const char *volume, const char *name, const char *leaf,
                    char *out, size_t outsz)
{
    int n =
        leaf ? snprintf(out, outsz, "%s/" SNAPREC_DIR "/%s", volume, leaf)
             : snprintf(out, outsz, "%s/" SNAPREC_DIR "/%s.rec", volume, name);

    return n < 0 || (size_t)n >= outsz ? -ENAMETOOLONG : 0;
}

int snaprec_get(const char *volume, const char *name, const char *key,
                char *buf, size_t bufsz)
{
    char path[PATH_MAX], *line = NULL;
    size_t cap = 0, klen = strlen(key);
    int rv = -ENOENT;
    FILE *f;

    if ((rv = rec_path(volume, name, NULL, path, sizeof(path))) != 0)
        return rv;
    if (!(f = fopen(path, "r")))
        return -errno;
    rv = -ENOENT;
    while (getline(&line, &cap, f) > 0) {
        line[strcspn(line, "\n")] = '\0';
        if (!strncmp(line, key, klen) && line[klen] == '=') {
            size_t vlen = strlen(line + klen + 1);
            if (vlen + 1 > bufsz)
                rv = -ENAMETOOLONG;
            else {
                memcpy(buf, line + klen + 1, vlen + 1);
                rv = 0;
            }
            break;
        }
    }
    free(line);
    fclose(f);
    return rv;
}

int snaprec_set(const char *volume, const char *name, const char *const *keys,
                const char *const *values, size_t n)
{
    char dir[PATH_MAX], path[PATH_MAX], lockp[PATH_MAX];
    publish_file pf = PUBLISH_FILE_INIT;
    char *line = NULL;
    size_t cap = 0, i;
    FILE *in, *out = NULL;
    int lock = -1, rv;

    for (i = 0; i < n; i++)
        if (strchr(values[i], '\n') || strchr(keys[i], '=') ||
            strchr(keys[i], '\n'))
            return -EINVAL;
    if ((rv = rec_path(volume, name, NULL, path, sizeof(path))) != 0 ||
        (rv = rec_path(volume, name, ".lock", lockp, sizeof(lockp))) != 0)
        return rv;
    if (snprintf(dir, sizeof(dir), "%s/" SNAPREC_DIR, volume) >=
        (int)sizeof(dir))
        return -ENAMETOOLONG;
    if (mkdir(dir, 0755) == 0) {
        /* the new folder's name must be durable before files in it are */
        char parent[PATH_MAX];
        snprintf(parent, sizeof(parent), "%s/state", volume);
        if ((rv = publish_sync_dir(parent)) != 0)
            return rv;
    }
    else if (errno != EEXIST)
        return -errno;
    /* Writers of records serialise here; readers need no lock, as a
     * record changes by rename only. */
    if ((lock = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0)
        return -errno;
    if (flock(lock, LOCK_EX) != 0) {
        rv = -errno;
        goto out;
    }
    /* The new record: a new file (sidecar/publish.h), fsynced, put in
     * place by one rename, the folder fsynced.  A crash before the rename
     * leaves the old record (and at most a temp name); after the folder's
     * fsync the new one is what survives. */
    if ((rv = publish_open(&pf, dir, dir, ".rec-tmp-", O_WRONLY, 0644)) != 0)
        goto out;
    if (!(out = fdopen(dup(pf.fd), "w"))) {
        rv = -errno;
        goto out;
    }
    if ((in = fopen(path, "r")) != NULL) { /* keep the other keys */
        while (getline(&line, &cap, in) > 0) {
            size_t k = strcspn(line, "=");
            for (i = 0; i < n; i++)
                if (strlen(keys[i]) == k && !strncmp(line, keys[i], k))
                    break;
            if (i == n && line[k] == '=')
                fputs(line, out);
        }
        fclose(in);
    }
    else if (errno != ENOENT) {
        rv = -errno;
        goto out;
    }
    for (i = 0; i < n; i++)
        fprintf(out, "%s=%s\n", keys[i], values[i]);
    if (fclose(out) != 0) {
        out = NULL;
        rv = -errno;
        goto out;
    }
    out = NULL;
    if ((rv = publish_sync_fd(pf.fd)) == 0 &&
        (rv = publish_commit(&pf, path, PUBLISH_REPLACE)) == 0)
        rv = publish_sync_dir(dir);
out:
    if (out)
        fclose(out);
    publish_discard(&pf);
    free(line);
    if (lock >= 0)
        close(lock);
    return rv;
}

int snaprec_delete(const char *volume, const char *name)
{
    char dir[PATH_MAX], path[PATH_MAX], lockp[PATH_MAX];
    int lock, rv;

    if ((rv = rec_path(volume, name, NULL, path, sizeof(path))) != 0 ||
        (rv = rec_path(volume, name, ".lock", lockp, sizeof(lockp))) != 0)
        return rv;
    snprintf(dir, sizeof(dir), "%s/" SNAPREC_DIR, volume);
    if ((lock = open(lockp, O_RDWR | O_CLOEXEC)) < 0)
        return errno == ENOENT ? -ENOENT : -errno;
    /* Under the writers' lock, so that a concurrent snaprec_set does not
     * rename a record back in from its copy of the old one. */
    if (flock(lock, LOCK_EX) != 0)
        rv = -errno;
    else if (unlink(path) != 0)
        rv = -errno;
    else
        rv = publish_sync_dir(dir);
    close(lock);
    return rv;
}
