/*
 * The volume write barrier (see barrier.h).
 *
 * Why flock and not fcntl locks: flock locks belong to the open file, so
 * the threads of one httpd child each hold their own shared lock through
 * their own descriptor, and closing one descriptor never drops another's
 * lock (fcntl locks are per process and would).  On CephFS and NFSv4,
 * flock is honoured across hosts.
 *
 * The writer side never times out: a snapshot holds the barrier for the
 * time it takes to clone the tree, and a write that waits is better than a
 * write that fails.  The snapshot side polls with LOCK_NB, so that it can
 * give up.
 *
 * A gate keeps a stream of writers from starving the snapshot: an
 * exclusive flock waiter does not block later shared lockers on Linux, so
 * with a few clients writing back to back there is always a shared holder
 * and the barrier is never free.  Writers pass the gate (state/barrier.gate,
 * shared, held only until they have the barrier) before taking the
 * barrier; a snapshot closes the gate (exclusive) first, so that no new
 * writer enters while the ones in flight drain, and opens it again as soon
 * as it holds the barrier, where the writers then wait.  Order, gate then
 * barrier on both sides, and no writer waits on the gate while it holds
 * the barrier: no deadlock.  A snapshot that times out opens the gate.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "snapshot/barrier.h"

static int open_barrier(const char *volume, const char *suffix)
{
    char path[PATH_MAX];
    int fd;

    if (snprintf(path, sizeof(path), "%s/" BARRIER_FILE "%s", volume,
                 suffix) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    /* The file holds nothing; it exists only to be locked.  Created on
     * first use (mode 0644: any process of the server's user may lock it
     * shared or exclusive, as flock needs only an open descriptor). */
    fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
    return fd < 0 ? -errno : fd;
}

static int lock_wait(int fd, int op)
{
    while (flock(fd, op) != 0)
        if (errno != EINTR)
            return -errno;
    return 0;
}

int barrier_enter(const char *volume, barrier *b)
{
    int gate = open_barrier(volume, ".gate"), fd, rc;

    b->fd = -1;
    if (gate < 0)
        return gate;
    /* Waits while a snapshot drains the writers in flight. */
    if ((rc = lock_wait(gate, LOCK_SH)) != 0) {
        close(gate);
        return rc;
    }
    fd = open_barrier(volume, "");
    rc = fd < 0 ? fd : lock_wait(fd, LOCK_SH);
    close(gate); /* through the gate: let a snapshot close it */
    if (rc != 0) {
        if (fd >= 0)
            close(fd);
        return rc;
    }
    b->fd = fd;
    return 0;
}

/* Polls for an exclusive lock on FD until DEADLINE (monotonic). */
static int lock_until(int fd, const struct timespec *start, int timeout_ms)
{
    struct timespec now, pause = {0, 2 * 1000 * 1000};

    for (;;) {
        long waited;

        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            return 0;
        if (errno != EWOULDBLOCK && errno != EINTR)
            return -errno;
        clock_gettime(CLOCK_MONOTONIC, &now);
        waited = (now.tv_sec - start->tv_sec) * 1000 +
                 (now.tv_nsec - start->tv_nsec) / 1000000;
        if (waited >= timeout_ms)
            return -ETIMEDOUT;
        nanosleep(&pause, NULL);
    }
}

int barrier_enter_exclusive(const char *volume, int timeout_ms, barrier *b)
{
    struct timespec start;
    int gate = open_barrier(volume, ".gate"), fd = -1, rc;

    b->fd = -1;
    if (gate < 0)
        return gate;
    clock_gettime(CLOCK_MONOTONIC, &start);
    /* Close the gate (writers hold it only for an instant), then wait for
     * the writers in flight; both within the one timeout. */
    rc = lock_until(gate, &start, timeout_ms);
    if (rc == 0) {
        fd = open_barrier(volume, "");
        rc = fd < 0 ? fd : lock_until(fd, &start, timeout_ms);
    }
    close(gate); /* open again: new writers now wait on the barrier */
    if (rc != 0) {
        if (fd >= 0)
            close(fd);
        return rc;
    }
    b->fd = fd;
    return 0;
}

void barrier_leave(barrier *b)
{
    if (b->fd >= 0) {
        close(b->fd); /* releases the lock */
        b->fd = -1;
    }
}
