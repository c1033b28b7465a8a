/*
 * The volume write barrier (SPEC section 6): a snapshot holds every write
 * that was answered before it began and none that began after it.
 *
 * It is an flock() on VOLUME/state/barrier, so it works across httpd
 * processes, hosts sharing the volume's file system, and the admin
 * command.  Every write request holds it shared from its first change to
 * its reply; snapshot creation holds it exclusively.  A writer waiting for
 * it waits (a snapshot is short); snapshot creation waits at most its
 * timeout for the writers in flight to drain, and fails cleanly after it.
 *
 * Plain C, no httpd.  0 or a negative errno.
 */
#ifndef MIRRORDAV_SNAPSHOT_BARRIER_H
#define MIRRORDAV_SNAPSHOT_BARRIER_H

#define BARRIER_FILE "state/barrier"

typedef struct {
    int fd; /* -1 when not held */
} barrier;

/* Takes the barrier of VOLUME shared (a writer): blocks while a snapshot
 * is being taken. */
int barrier_enter(const char *volume, barrier *b);

/* Takes it exclusively (a snapshot): waits for the writers in flight, at
 * most TIMEOUT_MS milliseconds; -ETIMEDOUT after that, holding nothing. */
int barrier_enter_exclusive(const char *volume, int timeout_ms, barrier *b);

/* Releases it (no-op if not held). */
void barrier_leave(barrier *b);

#endif
