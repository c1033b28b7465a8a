/*
 * mirrordav snapshot: copy-on-write snapshots of a volume (SPEC section 6).
 *
 *   mirrordav snapshot create NAME --volume DIR [--backend
 * auto|btrfs|reflink|hardlink]
 *                                  [--timeout SECONDS]
 *   mirrordav snapshot list   --volume DIR [--json]
 *   mirrordav snapshot delete NAME --volume DIR
 *   mirrordav snapshot pin|unpin NAME --volume DIR
 *   mirrordav snapshot prune  --volume DIR [--keep-last N] [--keep-hourly N]
 *                             [--keep-daily N] [--keep-weekly N]
 *                             [--keep-monthly N] [--keep-yearly N] [--dry-run]
 *
 * Names: 1 to 128 of A-Z a-z 0-9 . _ -, not starting with '.'.  --timeout
 * bounds the wait for write requests in flight to drain (default 30 s);
 * after it, create fails (exit 1) and leaves nothing.  list and prune
 * first remove the leftovers of crashed creates and deletes.
 *
 * Retention (prune) has the semantics of restic and borg `forget`:
 *  - snapshots are ordered by creation time, newest first; periods are
 *    UTC hours, days, ISO 8601 weeks, months and years;
 *  - --keep-last N keeps the N newest;
 *  - --keep-daily N (and hourly, weekly, monthly, yearly alike) keeps,
 *    for each of the N most recent days that HAVE a snapshot, the newest
 *    snapshot of that day; days without a snapshot count for nothing, so
 *    a gap of a week does not eat into the 30 dailies;
 *  - the policies are a union: a snapshot kept by any is kept;
 *  - a pinned snapshot (snapshot pin NAME) is never removed, and a
 *    snapshot whose record is missing (crash just after its creation) is
 *    never removed either; neither counts towards a policy's N unless it
 *    is also the newest of its period;
 *  - without any --keep-* option prune refuses (it would remove all);
 *    --dry-run prints the decisions and removes nothing.
 * Worked example, --keep-daily 2 --keep-monthly 2, snapshots (UTC):
 *    a 2026-01-31 03:00   b 2026-02-27 03:00   c 2026-02-28 03:00
 *    d 2026-03-01 03:00   e 2026-03-01 15:00   (f 2026-02-20, pinned)
 *  daily:   e (Mar 1, newest of the day; d is the older one that day),
 *           c (Feb 28)                         -> 2 days counted
 *  monthly: e (March), c (February)            -> 2 months counted
 *  kept: e, c (policies) and f (pinned); removed: d, b, a.
 *  With --keep-monthly 3, a (January) would be kept too.
 *
 * Privileges: run as root, the command switches to the owner of the
 * volume's live/ (like verify), so what it creates stays the server's.
 * No btrfs ioctl used needs root: snapshotting an owned subvolume,
 * clearing its read-only flag and rmdir of an emptied subvolume are all
 * allowed to its owner (see snapshot/backend_btrfs.c).
 *
 * Exit status: 0 done, 1 the operation failed, 2 usage.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "admin/commands.h"
#include "admin/entry.h"
#include "snapshot/record.h"
#include "snapshot/retention.h"
#include "snapshot/snapshot.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: mirrordav snapshot create NAME --volume DIR [--backend "
            "auto|btrfs|reflink|hardlink] [--timeout SECONDS]\n"
            "       mirrordav snapshot list --volume DIR [--json]\n"
            "       mirrordav snapshot delete|pin|unpin NAME --volume DIR\n"
            "       mirrordav snapshot prune --volume DIR [--keep-last N] "
            "[--keep-hourly N] [--keep-daily N]\n"
            "             [--keep-weekly N] [--keep-monthly N] [--keep-yearly "
            "N] [--dry-run]\n");
}

/* One snapshot as list and prune see it. */
typedef struct {
    char name[SNAPSHOT_NAME_MAX + 1];
    int64_t created; /* -1 unknown */
    char backend[16], files[24], bytes[24], vstatus[24], vdisc[24];
    int pinned;
} snap_info;

static void get_or(const char *vol, const char *name, const char *key,
                   char *buf, size_t sz, const char *dflt)
{
    if (snaprec_get(vol, name, key, buf, sz) != 0)
        snprintf(buf, sz, "%s", dflt);
}

static int by_created(const void *a, const void *b)
{
    const snap_info *x = a, *y = b;

    if (x->created != y->created)
        return x->created < y->created ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* The snapshots of VOL (real names in snapshots/; one entry per snapshot,
 * not per file), oldest first.  *OUT is malloc()ed. */
static int load(const char *vol, snap_info **out, size_t *n)
{
    char dir[PATH_MAX], buf[32], pin[8];
    size_t cap = 0;
    struct dirent *de;
    snap_info *v = NULL;
    DIR *d;

    *n = 0;
    snprintf(dir, sizeof(dir), "%s/snapshots", vol);
    if (!(d = opendir(dir)))
        return -errno;
    while ((de = readdir(d))) {
        snap_info *s;

        if (!snapshot_name_valid(de->d_name))
            continue; /* ".", "..", ".tmp-" */
        if (*n == cap) {
            snap_info *nv =
                realloc(v, (cap = cap ? 2 * cap : 64) * sizeof(*v));
            if (!nv) {
                free(v);
                closedir(d);
                return -ENOMEM;
            }
            v = nv;
        }
        s = &v[(*n)++];
        memcpy(s->name, de->d_name, strlen(de->d_name) + 1); /* <= 128 */
        s->created = snaprec_get(vol, s->name, "created", buf, sizeof(buf))
                         ? -1
                         : strtoll(buf, NULL, 10);
        get_or(vol, s->name, "backend", s->backend, sizeof(s->backend), "-");
        get_or(vol, s->name, "files", s->files, sizeof(s->files), "-");
        get_or(vol, s->name, "bytes", s->bytes, sizeof(s->bytes), "-");
        get_or(vol, s->name, "verify_status", s->vstatus, sizeof(s->vstatus),
               "");
        get_or(vol, s->name, "verify_discrepancies", s->vdisc,
               sizeof(s->vdisc), "");
        get_or(vol, s->name, "pinned", pin, sizeof(pin), "0");
        s->pinned = !strcmp(pin, "1");
    }
    closedir(d);
    qsort(v, *n, sizeof(*v), by_created);
    *out = v;
    return 0;
}

static void iso(int64_t t, char *buf, size_t sz)
{
    time_t tt = (time_t)t;
    struct tm tm;

    if (t < 0 || !gmtime_r(&tt, &tm))
        snprintf(buf, sz, "-");
    else
        strftime(buf, sz, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            printf("\\u%04x", *s);
        else
            putchar(*s);
    }
    putchar('"');
}

static void json_num_or_null(const char *s)
{
    char *end;

    if (*s && (strtoull(s, &end, 10), *end == '\0'))
        fputs(s, stdout);
    else
        fputs("null", stdout);
}

static int do_list(const char *vol, int json)
{
    snap_info *v;
    size_t n, i;
    char t[32], ver[48];
    int rv = load(vol, &v, &n);

    if (rv) {
        fprintf(stderr, "mirrordav snapshot list: %s/snapshots: %s\n", vol,
                strerror(-rv));
        return 1;
    }
    if (json)
        putchar('[');
    else
        printf("%-32s %-20s %-8s %10s %14s %-18s %s\n", "NAME", "CREATED",
               "BACKEND", "FILES", "BYTES", "VERIFIED", "PINNED");
    for (i = 0; i < n; i++) {
        snap_info *s = &v[i];
        iso(s->created, t, sizeof(t));
        if (json) {
            printf("%s\n {\"name\":", i ? "," : "");
            json_str(s->name);
            printf(",\"created\":");
            if (s->created < 0)
                printf("null,\"created_unix\":null");
            else {
                json_str(t);
                printf(",\"created_unix\":%lld", (long long)s->created);
            }
            printf(",\"backend\":");
            if (strcmp(s->backend, "-"))
                json_str(s->backend);
            else
                printf("null");
            printf(",\"files\":");
            json_num_or_null(s->files);
            printf(",\"bytes\":");
            json_num_or_null(s->bytes);
            printf(",\"verify_status\":");
            if (*s->vstatus)
                json_str(s->vstatus);
            else
                printf("null");
            printf(",\"verify_discrepancies\":");
            json_num_or_null(s->vdisc);
            printf(",\"pinned\":%s}", s->pinned ? "true" : "false");
        }
        else {
            if (!*s->vstatus)
                snprintf(ver, sizeof(ver), "-");
            else if (*s->vdisc && strcmp(s->vdisc, "0"))
                snprintf(ver, sizeof(ver), "%s (%s)", s->vstatus, s->vdisc);
            else
                snprintf(ver, sizeof(ver), "%s", s->vstatus);
            printf("%-32s %-20s %-8s %10s %14s %-18s %s\n", s->name, t,
                   s->backend, s->files, s->bytes, ver,
                   s->pinned ? "yes" : "no");
        }
    }
    if (json)
        printf("%s]\n", n ? "\n" : "");
    free(v);
    return 0;
}

static int do_pin(const char *vol, const char *name, int pin)
{
    char path[PATH_MAX];
    const char *key = "pinned", *val = pin ? "1" : "0";
    int rv;

    snprintf(path, sizeof(path), "%s/snapshots/%s", vol, name);
    if (access(path, F_OK) != 0) {
        fprintf(stderr, "mirrordav snapshot %s: %s: no such snapshot\n",
                pin ? "pin" : "unpin", name);
        return 1;
    }
    if ((rv = snaprec_set(vol, name, &key, &val, 1)) != 0) {
        fprintf(stderr, "mirrordav snapshot pin: %s: %s\n", name,
                strerror(-rv));
        return 1;
    }
    return 0;
}

static void reasons(unsigned k, char *buf, size_t sz)
{
    static const char *const names[] = {"last",   "hourly",   "daily",
                                        "weekly", "monthly",  "yearly",
                                        "pinned", "no-record"};
    size_t len = 0;
    int b;

    buf[0] = '\0';
    for (b = 0; b < 8; b++)
        if (k & (1u << b))
            len += (size_t)snprintf(buf + len, sz - len, "%s%s",
                                    len ? "," : "", names[b]);
}

static int do_prune(const char *vol, const retention_policy *p, int dry)
{
    retention_item *items;
    snap_info *v;
    size_t n, i, removed = 0, failed = 0;
    char why[96], t[32];
    int rv = load(vol, &v, &n);

    if (rv) {
        fprintf(stderr, "mirrordav snapshot prune: %s/snapshots: %s\n", vol,
                strerror(-rv));
        return 1;
    }
    if (!(items = calloc(n ? n : 1, sizeof(*items)))) {
        free(v);
        return 1;
    }
    for (i = 0; i < n; i++) {
        items[i].name = v[i].name;
        items[i].created = v[i].created;
        items[i].pinned = v[i].pinned;
    }
    retention_apply(p, items, n);
    for (i = 0; i < n; i++) {
        /* created is in items[i] too, but print from the record */
        iso(items[i].created, t, sizeof(t));
        if (items[i].keep) {
            reasons(items[i].keep, why, sizeof(why));
            printf("keep   %-32s %s  %s\n", items[i].name, t, why);
            continue;
        }
        printf("%s %-32s %s\n", dry ? "would remove" : "remove", items[i].name,
               t);
        if (!dry) {
            if ((rv = snapshot_delete(vol, items[i].name)) != 0) {
                fprintf(stderr, "mirrordav snapshot prune: %s: %s\n",
                        items[i].name, strerror(-rv));
                failed++;
            }
            else
                removed++;
        }
    }
    if (!dry)
        printf("%zu removed, %zu kept%s\n", removed, n - removed - failed,
               failed ? ", some removals failed" : "");
    free(items);
    free(v);
    return failed ? 1 : 0;
}

static int parse_count(const char *opt, const char *arg, int *out)
{
    char *end;
    long v;

    if (!arg) {
        fprintf(stderr, "mirrordav snapshot: %s needs a number\n", opt);
        return -1;
    }
    errno = 0;
    v = strtol(arg, &end, 10);
    if (errno || *end || v < 0 || v > 1000000) {
        fprintf(stderr, "mirrordav snapshot: %s: not a count: %s\n", opt, arg);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int cmd_snapshot(int argc, char **argv)
{
    const char *vol = NULL, *sub, *name = NULL;
    retention_policy pol = {0, 0, 0, 0, 0, 0};
    snapshot_opts opts = {SNAP_AUTO, 0};
    char live[PATH_MAX];
    int json = 0, dry = 0, timeout_s = 0, i, rv;

    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    sub = argv[1];
    for (i = 2; i < argc; i++) {
        const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        int *count = NULL;

        if (!strcmp(a, "--volume") && next)
            vol = argv[++i];
        else if (!strcmp(a, "--json"))
            json = 1;
        else if (!strcmp(a, "--dry-run"))
            dry = 1;
        else if (!strcmp(a, "--backend") && next) {
            if (snapshot_backend_parse(argv[++i], &opts.backend) != 0) {
                fprintf(stderr, "mirrordav snapshot: unknown backend '%s'\n",
                        argv[i]);
                return 2;
            }
        }
        else if (!strcmp(a, "--timeout")) {
            if (parse_count(a, next, &timeout_s) != 0 || timeout_s == 0)
                return 2;
            i++;
        }
        else if (!strcmp(a, "--keep-last"))
            count = &pol.last;
        else if (!strcmp(a, "--keep-hourly"))
            count = &pol.hourly;
        else if (!strcmp(a, "--keep-daily"))
            count = &pol.daily;
        else if (!strcmp(a, "--keep-weekly"))
            count = &pol.weekly;
        else if (!strcmp(a, "--keep-monthly"))
            count = &pol.monthly;
        else if (!strcmp(a, "--keep-yearly"))
            count = &pol.yearly;
        else if (a[0] != '-' && !name)
            name = a;
        else {
            fprintf(stderr, "mirrordav snapshot: unexpected argument '%s'\n",
                    a);
            usage(stderr);
            return 2;
        }
        if (count) {
            if (parse_count(a, next, count) != 0)
                return 2;
            i++;
        }
    }
    opts.timeout_ms = timeout_s * 1000;
    if (!vol) {
        fprintf(stderr, "mirrordav snapshot: --volume DIR is required\n");
        return 2;
    }
    if (!strcmp(sub, "create") || !strcmp(sub, "delete") ||
        !strcmp(sub, "pin") || !strcmp(sub, "unpin")) {
        if (!name) {
            fprintf(stderr, "mirrordav snapshot %s: a NAME is required\n",
                    sub);
            return 2;
        }
        if (!snapshot_name_valid(name)) {
            fprintf(stderr,
                    "mirrordav snapshot %s: invalid name '%s': 1 to %d of "
                    "A-Z a-z 0-9 . _ -, not starting with '.'\n",
                    sub, name, SNAPSHOT_NAME_MAX);
            return 2;
        }
    }
    else if (strcmp(sub, "list") && strcmp(sub, "prune")) {
        fprintf(stderr, "mirrordav snapshot: unknown subcommand '%s'\n", sub);
        usage(stderr);
        return 2;
    }
    else if (name) {
        fprintf(stderr, "mirrordav snapshot %s: unexpected argument '%s'\n",
                sub, name);
        return 2;
    }
    if (!strcmp(sub, "prune") && retention_empty(&pol)) {
        fprintf(stderr, "mirrordav snapshot prune: no --keep-* option given; "
                        "refusing to remove every snapshot\n");
        return 2;
    }
    snprintf(live, sizeof(live), "%s/live", vol);
    if ((rv = entry_become_owner(live)) != 0) {
        fprintf(stderr, "mirrordav snapshot: %s: %s\n", live, strerror(-rv));
        return 1;
    }
    if (!strcmp(sub, "list") || !strcmp(sub, "prune") ||
        !strcmp(sub, "create")) {
        /* Leftovers of crashed creates and deletes (".tmp-" names only). */
        rv = snapshot_recover(vol, opts.timeout_ms);
        if (rv < 0)
            fprintf(stderr, "mirrordav snapshot: recovery: %s\n",
                    strerror(-rv));
        else if (rv > 0)
            fprintf(stderr, "mirrordav snapshot: removed %d leftover(s)\n",
                    rv);
    }
    if (!strcmp(sub, "create")) {
        snap_counts c;
        snap_backend_id used;

        rv = snapshot_create(vol, name, &opts, &c, &used);
        if (rv) {
            fprintf(stderr, "mirrordav snapshot create: %s: %s\n", name,
                    rv == -ETIMEDOUT ? "write requests did not drain in time"
                    : rv == -EOPNOTSUPP
                        ? "backend not available on this volume"
                        : strerror(-rv));
            return 1;
        }
        printf("%s: %s, %llu files, %llu bytes, writes held %.3f s\n", name,
               snapshot_backend_name(used), (unsigned long long)c.files,
               (unsigned long long)c.bytes, c.barrier_us / 1e6);
        return 0;
    }
    if (!strcmp(sub, "delete")) {
        if ((rv = snapshot_delete(vol, name)) != 0) {
            fprintf(stderr, "mirrordav snapshot delete: %s: %s\n", name,
                    rv == -ENOENT ? "no such snapshot" : strerror(-rv));
            return 1;
        }
        return 0;
    }
    if (!strcmp(sub, "pin") || !strcmp(sub, "unpin"))
        return do_pin(vol, name, !strcmp(sub, "pin"));
    if (!strcmp(sub, "list"))
        return do_list(vol, json);
    return do_prune(vol, &pol, dry);
}
