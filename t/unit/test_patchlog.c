/* The queue of pending SHA-1s (sidecar/patchlog.c): an entry being made
 * while a worker lists the queue is not lost.  A writer is held inside
 * patchlog_pending_add (MIRRORDAV_TEST_PENDING_DELAY_US) while the worker
 * runs; afterwards the worker must still find the entry and store the
 * hash.  (Were an entry visible before its content, the worker would
 * take it for one whose writer crashed, remove it, and the file's SHA-1
 * would stay pending for good.)  Then: an entry a crash left half made
 * (t-) is removed at start, a p- entry is never replaced by another, and
 * an entry its writer holds is left alone by the worker. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sidecar/patchlog.h"
#include "sidecar/publish.h"
#include "sidecar/sidecar.h"
#include "tap.h"

static char top[256], state[300], live[300], file[400];

static int count_prefix(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    if (!d)
        return 0;
    while ((e = readdir(d)) != NULL)
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

static void record_sha1(char out[41])
{
    sidecar_record rec;
    sidecar *sc;

    out[0] = '\0';
    memset(&rec, 0, sizeof(rec));
    if (sidecar_open(live, "f", 0, &sc) == 0) {
        if (sidecar_get_record(sc, &rec) == 0)
            memcpy(out, rec.sha1, 41);
        sidecar_close(sc);
    }
}

int main(void)
{
    char pending[400], sha[41];
    struct stat st;
    pid_t pid;
    int status, fd;

    publish_set_durable(0);
    sidecar_set_durable(0);
    snprintf(top, sizeof(top), "/tmp/test_patchlog.XXXXXX");
    if (!mkdtemp(top))
        return 1;
    snprintf(state, sizeof(state), "%s/state", top);
    snprintf(live, sizeof(live), "%s/live", top);
    snprintf(file, sizeof(file), "%s/f", live);
    snprintf(pending, sizeof(pending), "%s/pending", state);
    mkdir(state, 0755);
    mkdir(live, 0755);
    fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, "hello\n", 6) != 6)
        return 1;
    close(fd);
    if (sidecar_ensure_dir(live) != 0 || stat(file, &st) != 0)
        return 1;

    /* The data changed: its record is pending, as a partial update
     * leaves it. */
    is_int(patchlog_record_new_data(file, &st), 0, "the record is pending");
    record_sha1(sha);
    is_str(sha, "", "no SHA-1 recorded yet");

    /* A writer held inside patchlog_pending_add while the worker runs. */
    pid = fork();
    if (pid == 0) {
        setenv("MIRRORDAV_TEST_PENDING_DELAY_US", "400000", 1);
        _exit(patchlog_pending_add(state, file, NULL) == 0 ? 0 : 1);
    }
    usleep(150000);
    ok(count_prefix(pending, "p-") == 0,
       "while it is being made, no p- entry is listed");
    patchlog_pending_run(state, PATCHLOG_PENDING_RUN, NULL, NULL);
    waitpid(pid, &status, 0);
    ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
       "patchlog_pending_add succeeded");
    is_int(count_prefix(pending, "p-"), 1, "the entry is there once made");
    is_int(count_prefix(pending, "t-"), 0, "no t- file is left");
    is_int(patchlog_pending_run(state, PATCHLOG_PENDING_RUN, NULL, NULL), 0,
           "the worker empties the queue");
    record_sha1(sha);
    is_str(sha, "f572d396fae9206628714fb2ce00f72e94f2258f",
           "the worker stored the file's SHA-1");

    /* A t- file, as a crash inside patchlog_pending_add leaves it: left
     * alone by a running worker, removed at start. */
    {
        char t[500];

        snprintf(t, sizeof(t), "%s/t-crash1", pending);
        fd = open(t, O_WRONLY | O_CREAT, 0644);
        if (fd >= 0)
            close(fd);
        patchlog_pending_run(state, PATCHLOG_PENDING_RUN, NULL, NULL);
        is_int(count_prefix(pending, "t-"), 1,
               "a running worker leaves a t- file alone");
        patchlog_pending_run(state, PATCHLOG_PENDING_MARK, NULL, NULL);
        is_int(count_prefix(pending, "t-"), 0, "the start removes it");
    }

    /* Many entries for one file: each is its own, none replaces another. */
    {
        int i, fails = 0;

        for (i = 0; i < 200; i++)
            fails += patchlog_pending_add(state, file, NULL) != 0;
        is_int(fails, 0, "200 entries added");
        is_int(count_prefix(pending, "p-"), 200, "200 entries listed");
        patchlog_pending_run(state, PATCHLOG_PENDING_RUN, NULL, NULL);
        is_int(count_prefix(pending, "p-"), 0, "the worker takes them all");
    }

    /* A writer's held entry (PATCH-APPLY holds it from before the data
     * changes until the record describes the new data).  A worker running
     * meanwhile finds the record current for the old data: were the entry
     * free, it would drop it, and the new data's SHA-1 would stay pending
     * for good (or, after a crash, the record would stay stale). */
    {
        int held = -1;

        is_int(patchlog_pending_add(state, file, &held), 0,
               "a held entry is added");
        is_int(patchlog_pending_run(state, PATCHLOG_PENDING_RUN, NULL, NULL),
               1, "a worker leaves the held entry alone");
        fd = open(file, O_WRONLY | O_TRUNC);
        if (fd < 0 || write(fd, "world!\n", 7) != 7 || fstat(fd, &st) != 0)
            return 1;
        close(fd);
        is_int(patchlog_record_new_data(file, &st), 0,
               "the new data recorded");
        if (held >= 0)
            close(held);
        is_int(patchlog_pending_run(state, PATCHLOG_PENDING_RUN, NULL, NULL),
               0, "released, the entry is taken");
        record_sha1(sha);
        is_str(sha, "212f1113ebcc528e501933d85e28d042df45746d",
               "the worker stored the new data's SHA-1");
    }

    {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", top);
        if (system(cmd) != 0)
            return 1;
    }
    return done_testing();
}
