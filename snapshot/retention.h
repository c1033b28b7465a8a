/*
 * Retention (mirrordav snapshot prune): which snapshots a policy keeps,
 * with the semantics of restic and borg `forget`.  A pure function: no
 * file system, no clock.  See admin/cmd_snapshot.c for the rules with a
 * worked example.
 */
#ifndef MIRRORDAV_SNAPSHOT_RETENTION_H
#define MIRRORDAV_SNAPSHOT_RETENTION_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int last, hourly, daily, weekly, monthly, yearly; /* 0: policy unused */
} retention_policy;

/* Why a snapshot is kept: a bit per policy that claims it. */
enum {
    KEEP_LAST = 1 << 0,
    KEEP_HOURLY = 1 << 1,
    KEEP_DAILY = 1 << 2,
    KEEP_WEEKLY = 1 << 3,
    KEEP_MONTHLY = 1 << 4,
    KEEP_YEARLY = 1 << 5,
    KEEP_PINNED = 1 << 6,
    KEEP_UNKNOWN = 1 << 7, /* no creation time: never removed */
};

typedef struct {
    const char *name;
    int64_t created; /* Unix seconds; < 0 unknown */
    int pinned;
    unsigned keep; /* out: 0 remove, else KEEP_* reasons */
} retention_item;

/* Sorts ITEMS newest first (ties: name descending) and sets each keep. */
void retention_apply(const retention_policy *p, retention_item *items,
                     size_t n);

/* Non-zero if P keeps nothing by policy (no --keep-* given). */
int retention_empty(const retention_policy *p);

#endif
