/* Retention (snapshot/retention.c): restic/borg `forget` semantics, the
 * worked example of admin/cmd_snapshot.c, and the edge cases. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot/retention.h"
#include "tap.h"

/* Unix seconds of a UTC date and time (days from civil, H. Hinnant). */
static int64_t utc(int y, int m, int d, int hh)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return (era * 146097 + doe - 719468) * 86400 + hh * 3600;
}

static unsigned keep_of(retention_item *it, size_t n, const char *name)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (!strcmp(it[i].name, name))
            return it[i].keep;
    return 0xdead;
}

static void kept(retention_item *it, size_t n, char *out)
{
    size_t i;

    out[0] = '\0';
    for (i = 0; i < n; i++)
        if (it[i].keep)
            strcat(out, it[i].name);
}

int main(void)
{
    char got[64];

    { /* the worked example of admin/cmd_snapshot.c */
        retention_item it[] = {
            {"a", utc(2026, 1, 31, 3), 0, 0}, {"b", utc(2026, 2, 27, 3), 0, 0},
            {"c", utc(2026, 2, 28, 3), 0, 0}, {"d", utc(2026, 3, 1, 3), 0, 0},
            {"e", utc(2026, 3, 1, 15), 0, 0}, {"f", utc(2026, 2, 20, 3), 1, 0},
        };
        retention_policy p = {0, 0, 2, 0, 2, 0};
        retention_apply(&p, it, 6);
        kept(it, 6, got);
        is_str(got, "ecf", "example: e, c by policy, f pinned");
        is_int(keep_of(it, 6, "e"), KEEP_DAILY | KEEP_MONTHLY,
               "e: newest of its day and month");
        is_int(keep_of(it, 6, "f"), KEEP_PINNED, "f: pinned only");
        p.monthly = 3;
        retention_apply(&p, it, 6);
        kept(it, 6, got);
        is_str(got, "ecfa", "--keep-monthly 3 adds January's a");
    }
    { /* gaps do not count; keep-last; union */
        retention_item it[] = {
            {"d1", utc(2025, 6, 1, 0), 0, 0},
            {"d5", utc(2025, 6, 5, 0), 0, 0},
            {"d9", utc(2025, 6, 9, 0), 0, 0},
            {"d9b", utc(2025, 6, 9, 5), 0, 0},
        };
        retention_policy p = {0, 0, 3, 0, 0, 0};
        retention_apply(&p, it, 4);
        kept(it, 4, got);
        is_str(got, "d9bd5d1",
               "3 dailies over a gap: the 3 days that have one");
        p.daily = 0;
        p.last = 2;
        retention_apply(&p, it, 4);
        kept(it, 4, got);
        is_str(got, "d9bd9", "--keep-last 2: the two newest");
        p.daily = 2;
        retention_apply(&p, it, 4);
        kept(it, 4, got);
        is_str(got, "d9bd9d5", "last 2 union daily 2");
        is_int(keep_of(it, 4, "d9b"), KEEP_LAST | KEEP_DAILY, "both reasons");
    }
    { /* ISO weeks across a year's end; hourly; yearly; unknown times */
        retention_item it[] = {
            {"w1", utc(2024, 12, 30, 1), 0, 0}, /* ISO 2025-W01 (Mon) */
            {"w2", utc(2025, 1, 4, 1), 0, 0},   /* ISO 2025-W01 (Sat) */
            {"w3", utc(2024, 12, 29, 1), 0, 0}, /* ISO 2024-W52 (Sun) */
            {"u", -1, 0, 0},
        };
        retention_policy p = {0, 0, 0, 2, 0, 0};
        retention_apply(&p, it, 4);
        kept(it, 4, got);
        is_str(got, "w2w3u", "weekly: Mon 30 Dec and Sat 4 Jan share a week");
        p.weekly = 0;
        p.yearly = 5;
        retention_apply(&p, it, 4);
        kept(it, 4, got);
        is_str(got, "w2w1u", "yearly: newest of 2025 and of 2024");
        is_int(keep_of(it, 4, "u"), KEEP_UNKNOWN, "no record: never removed");
        p.yearly = 0;
        p.hourly = 1;
        retention_apply(&p, it, 4);
        kept(it, 4, got);
        is_str(got, "w2u", "hourly 1: the newest only");
    }
    {
        retention_policy p = {0, 0, 0, 0, 0, 0};
        ok(retention_empty(&p), "no policy is empty");
        p.yearly = 1;
        ok(!retention_empty(&p), "a policy is not");
        retention_apply(&p, NULL, 0);
        ok(1, "zero snapshots");
    }
    return done_testing();
}
