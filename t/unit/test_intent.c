/* The intent journal (sidecar/intent.c): a COPY's swap finished, rolled
 * back or completed by recovery depending on where it stopped; records of
 * live operations left alone; damaged records kept; paths of any bytes
 * survive the record. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sidecar/intent.h"
#include "sidecar/sidecar.h"
#include "tap.h"

static char top[256], state[300], parent[300];

static void spew(const char *path, const char *s)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(s, f);
        fclose(f);
    }
}

static char *slurp(const char *path)
{
    static char buf[256];
    FILE *f = fopen(path, "r");
    size_t n = 0;

    buf[0] = '\0';
    if (f) {
        n = fread(buf, 1, sizeof(buf) - 1, f);
        buf[n] = '\0';
        fclose(f);
    }
    return buf;
}

static int count_records(void)
{
    char cmd[PATH_MAX + 64];
    FILE *p;
    int n = -1;

    snprintf(cmd, sizeof(cmd), "ls '%s' | grep -c '^intent-' ", state);
    if ((p = popen(cmd, "r"))) {
        if (fscanf(p, "%d", &n) != 1)
            n = -1;
        pclose(p);
    }
    return n;
}

/* A destination tree DST holding file "f" with TEXT. */
static void make_tree(const char *dst, const char *text)
{
    char f[PATH_MAX];

    mkdir(dst, 0755);
    snprintf(f, sizeof(f), "%s/f", dst);
    spew(f, text);
}

/* Stages a copy onto DST (which holds "old") up to the swap record. */
static int stage(intent *in, const char *dst)
{
    char staged[2 * PATH_MAX + 2], name[NAME_MAX + 1];
    struct stat st;
    int rc = intent_begin(in, state, 0, NULL, dst, 1);

    if (rc)
        return rc;
    snprintf(name, sizeof(name), "%s", strrchr(dst, '/') + 1);
    snprintf(staged, sizeof(staged), "%s/%s", in->stage, name);
    make_tree(staged, "new");
    stat(staged, &st);
    in->new_ino = st.st_ino;
    in->old_ino = stat(dst, &st) == 0 ? st.st_ino : 0;
    in->newdb = 0;
    return intent_ready(in);
}

static int swap(intent *in)
{
    char staged[2 * PATH_MAX + 2];

    snprintf(staged, sizeof(staged), "%s/%s", in->stage,
             strrchr(in->dst, '/') + 1);
    return renameat2(AT_FDCWD, staged, AT_FDCWD, in->dst, RENAME_EXCHANGE);
}

static int left_after_recovery(void)
{
    return intent_recover(state, 1, 1, NULL, NULL);
}

int main(void)
{
    char dst[400], f[500], stage_path[PATH_MAX], odd[400];
    intent in;
    struct stat st;

    snprintf(top, sizeof(top), "/tmp/test_intent-XXXXXX");
    if (!mkdtemp(top))
        return 1;
    snprintf(state, sizeof(state), "%s/state", top);
    snprintf(parent, sizeof(parent), "%s/live", top);
    mkdir(state, 0755);
    mkdir(parent, 0755);
    snprintf(dst, sizeof(dst), "%s/dst", parent);
    snprintf(f, sizeof(f), "%s/f", dst);

    /* The whole way through. */
    make_tree(dst, "old");
    is_int(stage(&in, dst), 0, "a copy is staged and recorded");
    is_int(count_records(), 1, "one record while it runs");
    is_int(swap(&in), 0, "the swap");
    is_int(intent_finish(&in), 0, "finish");
    intent_release(&in);
    is_str(slurp(f), "new", "the destination is the copy");
    ok(stat(in.stage, &st) != 0, "the staging folder (old tree) is gone");
    is_int(count_records(), 0, "and the record");

    /* Dead before the swap: rolled back. */
    is_int(stage(&in, dst), 0, "staged again");
    snprintf(stage_path, sizeof(stage_path), "%s", in.stage);
    intent_release(&in); /* the process dies */
    is_int(left_after_recovery(), 0, "recovery resolves it");
    is_str(slurp(f), "new", "the destination is as it was");
    ok(stat(stage_path, &st) != 0, "the staged copy is gone");
    is_int(count_records(), 0, "and the record");

    /* Dead right after the swap: completed. */
    spew(f, "old");
    is_int(stage(&in, dst), 0, "staged once more");
    snprintf(stage_path, sizeof(stage_path), "%s", in.stage);
    is_int(swap(&in), 0, "swapped");
    intent_release(&in);
    is_int(left_after_recovery(), 0, "recovery resolves it");
    is_str(slurp(f), "new", "the destination is the copy");
    ok(stat(stage_path, &st) != 0, "the old tree is gone");
    is_int(count_records(), 0, "and the record");

    /* A live operation's record is not touched. */
    spew(f, "old");
    is_int(stage(&in, dst), 0, "an operation in progress");
    is_int(left_after_recovery(), 0, "recovery skips it");
    is_int(count_records(), 1, "its record stays");
    ok(stat(in.stage, &st) == 0, "and its staging folder");
    is_int(intent_resolve_file(in.file, 1), -EBUSY,
           "resolving it directly is refused");
    intent_release(&in);
    is_int(intent_resolve_file(in.file, 1), 0, "once dead, it is resolved");
    is_str(slurp(f), "old", "rolled back: it had not swapped");

    /* A damaged record is kept, and counted. */
    snprintf(odd, sizeof(odd), "%s/intent-damaged", state);
    spew(odd, "mirrordav-intent 1\nop copy\nphase 1\n");
    is_int(left_after_recovery(), 1, "a damaged record is left unresolved");
    ok(stat(odd, &st) == 0, "and kept");
    unlink(odd);

    /* Names with spaces, newlines and '%' survive the record. */
    snprintf(odd, sizeof(odd), "%s/a b%%25\nc", parent);
    make_tree(odd, "old");
    is_int(stage(&in, odd), 0, "a destination with odd bytes is staged");
    intent_release(&in);
    is_int(left_after_recovery(), 0, "and rolled back by recovery");
    snprintf(f, sizeof(f), "%s/f", odd);
    is_str(slurp(f), "old", "at its own path");

    /* One recovery pass at a time: a pass waits while another holds
     * state/intent.lock.  (Not a speed test: 300 ms without an answer
     * only shows the lock is waited for; the pass then ends at once.) */
    {
        char lockpath[400];
        struct pollfd pfd;
        int pipefd[2], lfd, status;
        pid_t pid;

        snprintf(lockpath, sizeof(lockpath), "%s/intent.lock", state);
        lfd = open(lockpath, O_RDWR | O_CREAT, 0644);
        ok(lfd >= 0 && flock(lfd, LOCK_EX) == 0, "a pass holds the lock");
        if (pipe(pipefd) != 0)
            return 1;
        pid = fork();
        if (pid == 0) {
            int left = intent_recover(state, 1, 1, NULL, NULL);
            if (write(pipefd[1], &left, sizeof(left)) != sizeof(left))
                _exit(2);
            _exit(0);
        }
        pfd.fd = pipefd[0];
        pfd.events = POLLIN;
        is_int(poll(&pfd, 1, 300), 0, "a second pass waits for it");
        flock(lfd, LOCK_UN);
        close(lfd);
        is_int(poll(&pfd, 1, 30000), 1, "and runs once it is released");
        waitpid(pid, &status, 0);
        ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "to the end");
        close(pipefd[0]);
        close(pipefd[1]);
    }

    {
        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", top);
        if (system(cmd) != 0)
            return 1;
    }
    return done_testing();
}
