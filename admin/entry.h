/* Shared helpers of the admin subcommands. */
#ifndef MIRRORDAV_ENTRY_H
#define MIRRORDAV_ENTRY_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

/* Non-zero if PATH is the root of a tree: VOLUME/live or
 * VOLUME/snapshots/NAME.  A root keeps its own sidecar inside itself. */
int entry_is_tree_root(const char *path);

/* Splits PATH into the directory whose .mirrordav/ holds its sidecar and
 * the entry name ("" for the root of a tree). */
int entry_resolve(const char *path, char *dir, size_t dirsz, char *name,
                  size_t namesz);

/* SHA-1 of a file's data as 40 hex digits (+ NUL); SIZE gets the bytes
 * read.  Returns 0 or a negative errno. */
int entry_sha1_file(const char *path, char hex[41], uint64_t *size);

/* When run as root, switches to the owner (uid and gid) of PATH, so that
 * files written into a volume stay the server's.  0 or -errno. */
int entry_become_owner(const char *path);

#endif
