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
 * give up: an exclusive flock waiter does not block later shared lockers
 * on Linux, so a stream of writers could otherwise starve it; the timeout
 * bounds that.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "snapshot/barrier.h"

static int open_barrier(const char *volume)
{
    char path[PATH_MAX];
    int fd;

    if (snprintf(path, sizeof(path), "%s/" BARRIER_FILE, volume) >=
        (int)sizeof(path))
        return -ENAMETOOLONG;
    /* The file holds nothing; it exists only to be locked.  Created on
     * first use (mode 0644: any process of the server's user may lock it
     * shared or exclusive, as flock needs only an open descriptor). */
    fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
    return fd < 0 ? -errno : fd;
}

int barrier_enter(const char *volume, barrier *b)
{
    int fd = open_barrier(volume);

    b->fd = -1;
    if (fd < 0)
        return fd;
    while (flock(fd, LOCK_SH) != 0) {
        if (errno != EINTR) {
            int e = errno;
            close(fd);
            return -e;
        }
    }
    b->fd = fd;
    return 0;
}

int barrier_enter_exclusive(const char *volume, int timeout_ms, barrier *b)
{
    struct timespec start, now, pause = {0, 2 * 1000 * 1000};
    int fd = open_barrier(volume);

    b->fd = -1;
    if (fd < 0)
        return fd;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        long waited;

        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            break;
        if (errno != EWOULDBLOCK && errno != EINTR) {
            int e = errno;
            close(fd);
            return -e;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        waited = (now.tv_sec - start.tv_sec) * 1000 +
                 (now.tv_nsec - start.tv_nsec) / 1000000;
        if (waited >= timeout_ms) {
            close(fd);
            return -ETIMEDOUT;
        }
        nanosleep(&pause, NULL);
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
