/* Unit tests for sidecar/publish.c: create-only and replacing
 * publication, discard, the durability switch; and the same with no /proc
 * (named temp files), in a mount namespace when run as root. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "sidecar/publish.h"
#include "tap.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures;

#define check(cond)                                                           \
    do {                                                                      \
        if (!(cond)) {                                                        \
            failures++;                                                       \
            printf("#   %s:%d: %s\n", __FILE__, __LINE__, #cond);             \
        }                                                                     \
    } while (0)

static char *read_all(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY);
    ssize_t n;

    if (fd < 0)
        return NULL;
    n = read(fd, buf, len - 1);
    close(fd);
    if (n < 0)
        return NULL;
    buf[n] = '\0';
    return buf;
}

static int entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;

    if (!d)
        return -1;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

/* Writes S into a new file for DIR/NAME and publishes it HOW. */
static int put(const char *dir, const char *tmpdir, const char *name,
               const char *s, int how)
{
    publish_file pf = PUBLISH_FILE_INIT;
    char path[512];
    int rc;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if ((rc = publish_open(&pf, dir, tmpdir, ".put-", O_WRONLY, 0640)) != 0)
        return rc;
    if (write(pf.fd, s, strlen(s)) != (ssize_t)strlen(s))
        rc = -EIO;
    if (!rc)
        rc = publish_sync_fd(pf.fd);
    if (!rc)
        rc = publish_commit(&pf, path, how);
    publish_discard(&pf);
    return rc;
}

/* Every case in DIR (with its temp folder DIR/t); the number of failures. */
static int cases(const char *dir)
{
    char tmpdir[512], path[512], buf[64];
    publish_file pf = PUBLISH_FILE_INIT;
    struct stat st;

    failures = 0;
    snprintf(tmpdir, sizeof(tmpdir), "%s/t", dir);
    snprintf(path, sizeof(path), "%s/a", dir);
    check(mkdir(tmpdir, 0755) == 0);

    check(put(dir, tmpdir, "a", "one", PUBLISH_CREATE) == 0);
    check(read_all(path, buf, sizeof(buf)) && !strcmp(buf, "one"));
    check(stat(path, &st) == 0 && (st.st_mode & 0777) == 0640);
    check(put(dir, tmpdir, "a", "two", PUBLISH_CREATE) == -EEXIST);
    check(read_all(path, buf, sizeof(buf)) && !strcmp(buf, "one"));
    check(put(dir, tmpdir, "a", "three", PUBLISH_REPLACE) == 0);
    check(read_all(path, buf, sizeof(buf)) && !strcmp(buf, "three"));
    check(put(dir, tmpdir, "b", "new", PUBLISH_REPLACE) == 0);
    snprintf(path, sizeof(path), "%s/b", dir);
    check(read_all(path, buf, sizeof(buf)) && !strcmp(buf, "new"));

    /* Discarded unpublished: nothing stays. */
    check(publish_open(&pf, dir, tmpdir, ".put-", O_RDWR, 0644) == 0);
    check(write(pf.fd, "x", 1) == 1);
    publish_discard(&pf);
    publish_discard(&pf); /* twice is harmless */
    check(entries(tmpdir) == 0);
    check(entries(dir) == 3); /* a, b, t */

    /* A directory in the way: replace fails, nothing stays. */
    snprintf(path, sizeof(path), "%s/d", dir);
    check(mkdir(path, 0755) == 0);
    check(put(dir, tmpdir, "d", "x", PUBLISH_REPLACE) == -EISDIR);
    check(put(dir, tmpdir, "d", "x", PUBLISH_CREATE) == -EEXIST);
    check(entries(tmpdir) == 0);
    return failures;
}

int main(void)
{
    char dir[] = "/tmp/test_publish-XXXXXX", sub[64];
    pid_t pid;
    int status;

    if (!mkdtemp(dir))
        return 1;
    snprintf(sub, sizeof(sub), "%s/proc", dir);
    mkdir(sub, 0755);
    is_int(cases(sub), 0, "create-only, replace and discard (O_TMPFILE)");

    ok(publish_durable() == 1, "durable by default");
    publish_set_durable(0);
    is_int(publish_sync_dir("/nonexistent"), 0, "not durable: no fsync");
    publish_set_durable(1);
    is_int(publish_sync_dir("/nonexistent"), -ENOENT, "durable: fsync");

    /* No /proc: a mount namespace with an empty tmpfs over it. */
    snprintf(sub, sizeof(sub), "%s/noproc", dir);
    mkdir(sub, 0755);
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        if (unshare(CLONE_NEWNS) ||
            mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) ||
            mount("noproc", "/proc", "tmpfs", 0, NULL))
            _exit(77);
        if (access("/proc/self/fd", F_OK) == 0)
            _exit(78);
        /* _exit: LeakSanitizer would want the /proc we hid. */
        _exit(cases(sub) == 0 ? 0 : 1);
    }
    waitpid(pid, &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
        printf("ok %d - # SKIP no /proc: cannot make a mount namespace "
               "(not root)\n",
               ++tap_n);
    else
        ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "create-only, replace and discard without /proc (named temps)");

    snprintf(sub, sizeof(sub), "rm -rf '%s'", dir);
    if (system(sub) != 0)
        return 1;
    return done_testing();
}
