/*
 * Atomic publication of new file contents, shared by the module (PUT,
 * COPY) and the sidecar library (databases), and the one durability
 * switch both follow.  Plain C, no httpd dependency.  Functions return 0
 * or a negative errno.
 *
 * A new file is written unnamed (O_TMPFILE) in its target's directory
 * when /proc/self/fd is there to give it a name later, else under a
 * random temporary name in a folder of the caller's choosing (the sidecar
 * folder, which fsck sweeps).  Publishing links it in under the target's
 * name, or, when replacing, renames a temporary name over the target: a
 * reader sees the old contents or the new, never a mix, and a crash before
 * the publication leaves the target as it was.
 */
#ifndef MIRRORDAV_PUBLISH_H
#define MIRRORDAV_PUBLISH_H

#include <sys/types.h>

typedef struct {
    int fd;       /* open for writing; -1 when closed */
    char *tmp;    /* its temporary name; NULL while unnamed or published */
    char *tmpdir; /* where temporary names go */
    char *prefix; /* their first characters (".put-", ".tmp-") */
} publish_file;

#define PUBLISH_FILE_INIT                                                     \
    {                                                                         \
        -1, NULL, NULL, NULL                                                  \
    }

/* Whether this thread's writes are synced before they are acknowledged.
 * Per thread because the server sets it per request (MirrorDAVFsync);
 * on by default. */
void publish_set_durable(int on);
int publish_durable(void);
/* fsync FD, or the directory DIR, when durable. */
int publish_sync_fd(int fd);
int publish_sync_dir(const char *dir);

/* The same two, whatever the durability switch says: for what a caller
 * must have on disk in any case (checkpoints, a snapshot's name). */
int publish_fsync_dir(const char *dir);
/* syncfs(2) of the file system that holds directory PATH. */
int publish_syncfs(const char *path);

/* Opens a new, empty file (MODE; O_RDWR or O_WRONLY in FLAGS) for an entry
 * of DIR.  A named one goes in TMPDIR, its name starting with PREFIX. */
int publish_open(publish_file *pf, const char *dir, const char *tmpdir,
                 const char *prefix, int flags, mode_t mode);

enum {
    PUBLISH_REPLACE = 0, /* over whatever is at the path */
    PUBLISH_CREATE = 1   /* only if nothing is: -EEXIST otherwise */
};
/* Gives PF's contents the name PATH (on the file system of PF's
 * directory), atomically.  The caller syncs the contents first
 * (publish_sync_fd) and the directory after (publish_sync_dir).  The file
 * stays open; publish_discard closes it. */
int publish_commit(publish_file *pf, const char *path, int how);

/* Closes PF and removes whatever of it was not published. */
void publish_discard(publish_file *pf);

#endif
