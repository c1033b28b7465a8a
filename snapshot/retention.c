/*
 * Retention: restic/borg `forget` semantics (see retention.h).
 *
 * For each policy with count N, the snapshots are walked newest first;
 * each is mapped to its period (UTC hour, day, ISO week, month, year); the
 * first (newest) snapshot of a period not seen yet is kept, until N
 * periods have been counted.  Periods without a snapshot are not counted,
 * so N always keeps N snapshots when there are that many periods.  A
 * snapshot is kept if any policy keeps it (union), if pinned, or if its
 * creation time is unknown.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "snapshot/retention.h"

static int newest_first(const void *a, const void *b)
{
    const retention_item *x = a, *y = b;

    if (x->created != y->created)
        return x->created > y->created ? -1 : 1;
    return -strcmp(x->name, y->name);
}

/* The period of T for policy BIT, as one comparable number. */
static long long period(int64_t t, unsigned bit)
{
    time_t tt = (time_t)t;
    struct tm tm;
    long long y;

    gmtime_r(&tt, &tm);
    y = tm.tm_year + 1900LL;
    switch (bit) {
    case KEEP_HOURLY:
        return ((y * 100 + tm.tm_mon) * 100 + tm.tm_mday) * 100 + tm.tm_hour;
    case KEEP_DAILY:
        return (y * 100 + tm.tm_mon) * 100 + tm.tm_mday;
    case KEEP_WEEKLY: {
        /* ISO 8601 week: the week belongs to the year of its Thursday. */
        int wday = (tm.tm_wday + 6) % 7; /* Monday 0 */
        int64_t thursday = t - (int64_t)wday * 86400 + 3 * 86400;
        time_t th = (time_t)thursday;
        struct tm tt2;
        gmtime_r(&th, &tt2);
        return (tt2.tm_year + 1900LL) * 100 + tt2.tm_yday / 7;
    }
    case KEEP_MONTHLY:
        return y * 100 + tm.tm_mon;
    default:
        return y;
    }
}

int retention_empty(const retention_policy *p)
{
    return p->last <= 0 && p->hourly <= 0 && p->daily <= 0 && p->weekly <= 0 &&
           p->monthly <= 0 && p->yearly <= 0;
}

void retention_apply(const retention_policy *p, retention_item *items,
                     size_t n)
{
    const struct {
        unsigned bit;
        int count;
    } rules[] = {{KEEP_HOURLY, p->hourly},
                 {KEEP_DAILY, p->daily},
                 {KEEP_WEEKLY, p->weekly},
                 {KEEP_MONTHLY, p->monthly},
                 {KEEP_YEARLY, p->yearly}};
    size_t i, r;

    if (n == 0)
        return;
    qsort(items, n, sizeof(*items), newest_first);
    for (i = 0; i < n; i++) {
        items[i].keep = 0;
        if (items[i].pinned)
            items[i].keep |= KEEP_PINNED;
        if (items[i].created < 0)
            items[i].keep |= KEEP_UNKNOWN;
        if ((int64_t)i < p->last)
            items[i].keep |= KEEP_LAST;
    }
    for (r = 0; r < sizeof(rules) / sizeof(rules[0]); r++) {
        int left = rules[r].count, have = 0;
        long long last = 0;

        for (i = 0; i < n && left > 0; i++) {
            long long k;

            if (items[i].created < 0)
                continue;
            k = period(items[i].created, rules[r].bit);
            if (have && k == last)
                continue;
            have = 1;
            last = k;
            items[i].keep |= rules[r].bit;
            left--;
        }
    }
}
