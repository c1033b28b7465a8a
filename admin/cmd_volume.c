/*
 * mirrordav volume init DIR: creates a volume (SPEC section 1): DIR/live
 * (a btrfs subvolume when DIR is on btrfs, so that the btrfs snapshot
 * backend applies), DIR/snapshots and DIR/state.  Existing parts are
 * kept.  Run as root on an existing DIR, it switches to DIR's owner
 * first, so the volume stays the server's.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "admin/commands.h"
#include "admin/entry.h"
#include "sidecar/usage.h"
#include "snapshot/snapshot.h"

int cmd_volume(int argc, char **argv)
{
    int rv, subvol;

    if (argc != 3 || strcmp(argv[1], "init")) {
        fprintf(stderr, "usage: mirrordav volume init DIR\n");
        return 2;
    }
    if (access(argv[2], F_OK) == 0 && (rv = entry_become_owner(argv[2]))) {
        fprintf(stderr, "mirrordav volume: %s: %s\n", argv[2], strerror(-rv));
        return 1;
    }
    if ((rv = snapshot_volume_init(argv[2], &subvol)) != 0) {
        fprintf(stderr, "mirrordav volume init: %s: %s\n", argv[2],
                strerror(-rv));
        return 1;
    }
    /* The usage counter (sidecar/usage.h), counted now if there is none
     * (an existing live/ may hold files). */
    {
        char state[PATH_MAX];
        uint64_t used, old;
        int known;

        snprintf(state, sizeof(state), "%s/state", argv[2]);
        if (usage_read(state, &used) == -ENOENT &&
            (rv = usage_recount(argv[2], 1, 30000, &known, &old, &used))) {
            fprintf(stderr, "mirrordav volume init: counting %s/live: %s\n",
                    argv[2], strerror(-rv));
            return 1;
        }
    }
    printf("%s: live/ %s\n", argv[2],
           subvol ? "is a btrfs subvolume" : "is a directory");
    return 0;
}
