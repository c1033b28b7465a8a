/* Unit tests for sidecar/usage.c: the counter's record (a torn or
 * altered one reads as unknown), updates (clamped at 0, an unknown
 * counter stays unknown), exact sums from several processes adding at
 * once (the flock), what the tree walk counts (regular files, sidecar
 * folders left out, no symlink followed), and the recount. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "sidecar/usage.h"
#include "tap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char vol[256], state[300], live[300];

static void put(const char *rel, size_t n)
{
    char path[600], buf[4096] = {0};
    int fd;

    snprintf(path, sizeof(path), "%s/%s", live, rel);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    while (n > 0) {
        size_t k = n < sizeof(buf) ? n : sizeof(buf);
        if (write(fd, buf, k) != (ssize_t)k)
            abort();
        n -= k;
    }
    close(fd);
}

static void mk(const char *rel)
{
    char path[600];

    snprintf(path, sizeof(path), "%s/%s", live, rel);
    mkdir(path, 0755);
}

static int add(int64_t delta)
{
    usage_txn t;
    int rc = usage_begin(state, &t);

    return rc ? rc : usage_end(&t, delta);
}

int main(void)
{
    char path[600];
    uint64_t used = 0, old = 0, counted = 0;
    int known = -1, i, fd;

    snprintf(vol, sizeof(vol), "/tmp/test_usage.XXXXXX");
    if (!mkdtemp(vol))
        return 1;
    snprintf(state, sizeof(state), "%s/state", vol);
    snprintf(live, sizeof(live), "%s/live", vol);
    mkdir(state, 0755);
    mkdir(live, 0755);

    /* ----------------------------------------------------- no counter */
    is_int(usage_read(state, &used), -ENOENT, "no counter: -ENOENT");
    is_int(add(100), 0, "an update without a counter succeeds");
    is_int(usage_read(state, &used), -ENOENT, "... and creates none");

    /* ------------------------------------------------- recount, tree */
    mk("a");
    mk("a/b");
    mk(".mirrordav");
    mk("a/.MirrorDAV");
    put("top", 1000);
    put("a/x", 5);
    put("a/b/y", 70000);
    put(".mirrordav/top.db", 4096);
    put("a/.MirrorDAV/x.db", 4096);
    snprintf(path, sizeof(path), "%s/a/link", live);
    if (symlink("/etc/passwd", path) != 0)
        return 1;
    snprintf(path, sizeof(path), "%s/a/fifo", live);
    mkfifo(path, 0644);
    is_int(usage_tree_bytes(live, &counted), 0, "tree walk");
    is_int(counted, 71005,
           "regular files only; sidecar folders (any case), symlinks, "
           "fifos left out");
    snprintf(path, sizeof(path), "%s/a/x", live);
    is_int(usage_tree_bytes(path, &counted), 0, "walk of a file");
    is_int(counted, 5, "... its size");

    is_int(usage_recount(vol, 0, 1000, &known, &old, &counted), 0,
           "recount, report only");
    is_int(known, 0, "the counter was unknown");
    is_int(counted, 71005, "counted");
    is_int(usage_read(state, &used), -ENOENT, "report only writes nothing");
    is_int(usage_recount(vol, 1, 1000, &known, &old, &counted), 0,
           "recount, written");
    is_int(usage_read(state, &used), 0, "the counter reads");
    is_int(used, 71005, "... the counted value");

    /* -------------------------------------------------------- updates */
    is_int(add(-1005), 0, "subtract");
    usage_read(state, &used);
    is_int(used, 70000, "70000");
    is_int(add(-80000), 0, "subtract more than there is");
    usage_read(state, &used);
    is_int(used, 0, "clamped at 0");
    is_int(add(123456789012LL), 0, "a large value");
    usage_read(state, &used);
    is_int(used, 123456789012LL, "... read back");

    /* Several processes at once: exact. */
    add(-123456789012LL);
    for (i = 0; i < 4; i++) {
        if (fork() == 0) {
            int k;
            for (k = 0; k < 500; k++)
                if (add(3) != 0)
                    _exit(1);
            _exit(0);
        }
    }
    for (i = 0; i < 4; i++) {
        int st;
        wait(&st);
        ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "writer %d", i);
    }
    usage_read(state, &used);
    is_int(used, 4 * 500 * 3, "4 processes x 500 updates: none lost");

    /* --------------------------------------------- torn, altered record */
    snprintf(path, sizeof(path), "%s/" USAGE_FILE, state);
    fd = open(path, O_WRONLY);
    if (pwrite(fd, "9", 1, 30) != 1) /* a digit changed: CRC mismatch */
        return 1;
    close(fd);
    is_int(usage_read(state, &used), -EBADMSG, "an altered record: -EBADMSG");
    is_int(add(10), 0, "an update of an unreadable counter");
    is_int(usage_read(state, &used), -EBADMSG, "... leaves it unknown");
    if (truncate(path, 20) != 0)
        return 1;
    is_int(usage_read(state, &used), -EBADMSG, "a torn record: -EBADMSG");
    is_int(usage_recount(vol, 1, 1000, &known, &old, &counted), 0, "recount");
    is_int(known, 0, "it was unknown");
    usage_read(state, &used);
    is_int(used, 71005, "the counter is whole again");

    {
        char cmd[400];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", vol);
        if (system(cmd) != 0)
            return 1;
    }
    return done_testing();
}
