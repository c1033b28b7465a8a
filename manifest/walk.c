/*
 * The collation walk: a directory tree visited in manifest order (children
 * in byte order of their names, each directory after its descendants, the
 * root last), so that a manifest can be written, or compared with a tree,
 * in one streaming pass.  Only the names of the directories on the current
 * path are held, one sorted list per level.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "manifest/manifest.h"

typedef struct {
    int fd;           /* the directory, open */
    char **names;     /* its entries, sorted */
    size_t n, next;   /* how many; the next to visit */
    size_t namelen;   /* length of its name in the path buffer */
    const char *base; /* its own entry name (in the parent's list) */
    struct stat st;   /* its own lstat, for its record after the members */
} frame;

typedef struct {
    frame *v;
    size_t n, cap;
    char *path; /* the current name, relative to the root */
    size_t pathcap;
} walk_state;

static int by_name(const void *a, const void *b)
{
    /* strcmp compares as unsigned char: byte order, whatever the locale */
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(frame *f)
{
    size_t i;

    for (i = 0; i < f->n; i++)
        free(f->names[i]);
    free(f->names);
    f->names = NULL;
    f->n = 0;
}

/* Reads and sorts the entry names of F's directory. */
static int load_names(frame *f)
{
    size_t cap = 0;
    struct dirent *de;
    DIR *d;
    int fd = dup(f->fd);

    if (fd < 0)
        return -errno;
    if (!(d = fdopendir(fd))) {
        int e = errno;
        close(fd);
        return -e;
    }
    while ((errno = 0, de = readdir(d)) != NULL) {
        const char *nm = de->d_name;

        if (!strcmp(nm, ".") || !strcmp(nm, "..") ||
            !strcmp(nm, MANIFEST_SIDECARS))
            continue;
        if (f->n == cap) {
            char **v =
                realloc(f->names, (cap = cap ? cap * 2 : 64) * sizeof(*v));
            if (!v)
                goto nomem;
            f->names = v;
        }
        if (!(f->names[f->n] = strdup(nm)))
            goto nomem;
        f->n++;
    }
    if (errno) {
        int e = errno;
        closedir(d);
        return -e;
    }
    closedir(d);
    if (f->n > 1)
        qsort(f->names, f->n, sizeof(*f->names), by_name);
    return 0;
nomem:
    closedir(d);
    return -ENOMEM;
}

/* Sets the path buffer to the first LEN bytes plus "/NAME" (or NAME at
 * the root); returns the new length. */
static int set_path(walk_state *w, size_t len, const char *name,
                    size_t *outlen)
{
    size_t nlen = strlen(name), need = len + 1 + nlen + 1;

    if (need > w->pathcap) {
        char *p = realloc(w->path, need * 2);
        if (!p)
            return -ENOMEM;
        w->path = p;
        w->pathcap = need * 2;
    }
    if (len)
        w->path[len++] = '/';
    memcpy(w->path + len, name, nlen + 1);
    *outlen = len + nlen;
    return 0;
}

static int push(walk_state *w, int fd, const char *base, size_t namelen,
                const struct stat *st)
{
    frame *f;
    int rv;

    if (w->n == w->cap) {
        frame *v =
            realloc(w->v, (w->cap = w->cap ? w->cap * 2 : 16) * sizeof(*v));
        if (!v) {
            close(fd);
            return -ENOMEM;
        }
        w->v = v;
    }
    f = &w->v[w->n++];
    memset(f, 0, sizeof(*f));
    f->fd = fd;
    f->base = base;
    f->namelen = namelen;
    f->st = *st;
    if ((rv = load_names(f)) != 0)
        return rv;
    return 0;
}

static void pop(walk_state *w)
{
    frame *f = &w->v[--w->n];

    free_names(f);
    close(f->fd);
}

int manifest_walk(const char *root, manifest_walk_fn fn,
                  int (*skip)(void *ctx, const char *name,
                              const struct stat *st),
                  void *ctx)
{
    walk_state w;
    struct stat st;
    int fd, rv = 0;

    memset(&w, 0, sizeof(w));
    fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) != 0) {
        rv = -errno;
        close(fd);
        return rv;
    }
    if (!(w.path = malloc(w.pathcap = 256))) {
        close(fd);
        return -ENOMEM;
    }
    w.path[0] = '\0';
    if ((rv = push(&w, fd, root, 0, &st)) != 0)
        goto done;

    while (w.n > 0) {
        frame *top = &w.v[w.n - 1];
        size_t len;

        if (top->next < top->n) {
            const char *name = top->names[top->next++];

            if (fstatat(top->fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
                if (errno == ENOENT)
                    continue; /* gone since the listing */
                rv = -errno;
                goto done;
            }
            if ((rv = set_path(&w, top->namelen, name, &len)) != 0)
                goto done;
            if (skip && skip(ctx, w.path, &st))
                continue;
            if (S_ISDIR(st.st_mode)) {
                int cfd =
                    openat(top->fd, name,
                           O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (cfd < 0) {
                    rv = -errno;
                    goto done;
                }
                if ((rv = push(&w, cfd, name, len, &st)) != 0)
                    goto done;
                continue;
            }
            if ((rv = fn(ctx, w.path, top->fd, name, &st)) != 0)
                goto done;
            continue;
        }
        /* All members done: the directory's own record. */
        w.path[top->namelen] = '\0';
        if (w.n > 1)
            rv = fn(ctx, w.path, w.v[w.n - 2].fd, top->base, &top->st);
        else
            rv = fn(ctx, w.path, AT_FDCWD, root, &top->st);
        pop(&w);
        if (rv != 0)
            goto done;
        if (w.n > 0)
            w.path[w.v[w.n - 1].namelen] = '\0';
    }
done:
    while (w.n > 0)
        pop(&w);
    free(w.v);
    free(w.path);
    return rv;
}
