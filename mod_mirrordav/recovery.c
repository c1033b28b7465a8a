/*
 * Server-start recovery: before httpd serves a request, every volume's
 * interrupted COPY and MOVE operations (intent records in VOLUME/state/,
 * see sidecar/intent.h) are completed or rolled back, so that no client
 * ever sees a half-done swap or a destination without its sidecar.
 *
 * post_config runs as root, before httpd switches to its User.  The
 * recovery therefore runs in a forked child that first takes the identity
 * of the owner of VOLUME/live (as `mirrordav fsck` does): whatever it
 * renames or creates (state/intent.lock, sidecar databases) stays the
 * server's, never root's.  Several processes (a second httpd on the same
 * volume, a concurrent fsck) serialise on state/intent.lock, and records
 * of operations still running elsewhere are locked and skipped.
 */
#include <errno.h>
#include <grp.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "apr_strings.h"
#include "mirrordav.h"
#include "sidecar/intent.h"
#include "snapshot/snapshot.h"
#include "sidecar/patchlog.h"
#include "sidecar/sidecar.h"
#include "sidecar/usage.h"

static apr_array_header_t *volumes; /* const char *, from the config */

void mirrordav_recovery_reset(apr_pool_t *pconf)
{
    volumes = apr_array_make(pconf, 2, sizeof(const char *));
}

void mirrordav_recovery_note_volume(const char *volume)
{
    int i;

    if (!volumes)
        return;
    for (i = 0; i < volumes->nelts; i++)
        if (!strcmp(APR_ARRAY_IDX(volumes, i, const char *), volume))
            return;
    APR_ARRAY_PUSH(volumes, const char *) = volume;
}

const apr_array_header_t *mirrordav_recovery_volumes(void)
{
    return volumes;
}

typedef struct {
    server_rec *s;
} report_ctx;

static void report(void *ctx, const intent *in, const char *action, int rc)
{
    report_ctx *c = ctx;

    if (rc)
        ap_log_error(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(-rc), c->s,
                     "interrupted %s onto %s (%s): could not %s; the server "
                     "serves it as it is, mirrordav fsck reports it",
                     in->move ? "MOVE" : "COPY", in->dst, in->file, action);
    else
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, c->s,
                     "interrupted %s onto %s (%s): %s",
                     in->move ? "MOVE" : "COPY", in->dst, in->file, action);
}

static void patch_report(void *ctx, const char *target, const char *what,
                         int rc)
{
    ap_log_error(APLOG_MARK, rc ? APLOG_ERR : APLOG_NOTICE,
                 rc ? APR_FROM_OS_ERROR(-rc) : 0, ctx, "%s: %s", target, what);
}

/* Interrupted in-place PATCH-APPLYs (sidecar/patchlog.h) are completed:
 * the file becomes the new version.  Records left, or 0. */
static int patch_recover(server_rec *s, const char *state)
{
    int left = patchlog_recover(state, 1, patch_report, s);

    if (left < 0)
        ap_log_error(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(-left), s,
                     "recovery: cannot read the PATCH-APPLY journal in %s",
                     state);
    /* Records a crash left describing older data read as pending; the
     * children's workers compute the hashes. */
    patchlog_pending_run(state, PATCHLOG_PENDING_MARK, NULL, NULL);
    return left < 0 ? 1 : left;
}

/* A volume without a usage counter (made before there was one) gets it
 * counted here, once, before any request: writes must know it to keep
 * MirrorDAVQuota.  An unreadable one is left to fsck, which reports the
 * value it had (quota.c says how the server runs meanwhile). */
static void usage_start(server_rec *s, const char *volume, const char *state)
{
    uint64_t old, counted;
    int known, rc;

    if (usage_read(state, &old) != -ENOENT)
        return;
    rc = usage_recount(volume, 1, 30000, &known, &old, &counted);
    if (rc)
        ap_log_error(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(-rc), s,
                     "%s has no usage counter and it could not be counted; "
                     "run mirrordav fsck --volume %s --repair",
                     volume, volume);
    else
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s,
                     "%s: usage counter created: %" APR_UINT64_T_FMT
                     " bytes in live/",
                     volume, (apr_uint64_t)counted);
}

/* In the child: become the volume's owner, recover, exit. */
static void recover_as_owner(server_rec *s, const char *volume,
                             const char *state)
{
    const char *live = apr_pstrcat(s->process->pool, volume, "/live", NULL);
    report_ctx ctx = {s};
    struct stat st;
    int left;

    if (geteuid() == 0) {
        if (stat(live, &st) != 0) {
            ap_log_error(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(errno), s,
                         "recovery: cannot stat %s", live);
            _exit(2);
        }
        if (st.st_uid != 0 &&
            (setgroups(0, NULL) != 0 || setgid(st.st_gid) != 0 ||
             setuid(st.st_uid) != 0)) {
            ap_log_error(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(errno), s,
                         "recovery: cannot take the identity of the owner "
                         "of %s",
                         live);
            _exit(2);
        }
    }
    sidecar_set_durable(1);
    left = intent_recover(state, 1, 1, report, &ctx);
    if (left < 0)
        ap_log_error(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(-left), s,
                     "recovery: cannot read the intent records in %s", state);
    left += patch_recover(s, state);
    /* Half-built or half-deleted snapshots (their ".tmp-" names in
     * snapshots/) of a create or delete that a crash interrupted: never a
     * snapshot under a real name, so removing them loses nothing. */
    {
        int n = snapshot_recover(volume, 0);
        if (n < 0)
            ap_log_error(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(-n), s,
                         "recovery: snapshot leftovers in %s/snapshots",
                         volume);
        else if (n > 0)
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s,
                         "recovery: removed %d snapshot leftover(s) in "
                         "%s/snapshots",
                         n, volume);
    }
    usage_start(s, volume, state);
    _exit(left == 0 ? 0 : 1);
}

int mirrordav_recovery_run(apr_pool_t *pconf, apr_pool_t *plog,
                           apr_pool_t *ptemp, server_rec *s)
{
    int i;

    (void)pconf, (void)plog;
    if (!volumes)
        return OK;
    for (i = 0; i < volumes->nelts; i++) {
        const char *volume = APR_ARRAY_IDX(volumes, i, const char *);
        const char *state = apr_pstrcat(ptemp, volume, "/state", NULL);
        pid_t pid;
        int status;

        pid = fork();
        if (pid < 0) {
            ap_log_error(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(errno), s,
                         "recovery of %s: fork failed", volume);
            continue;
        }
        if (pid == 0)
            recover_as_owner(s, volume, state);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        /* Not fatal: what is left is in its own staging folder, out of
         * sight, and its record says what it is; the log names it. */
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                         "recovery of %s left interrupted operations "
                         "unresolved; run mirrordav fsck --volume %s",
                         volume, volume);
    }
    return OK;
}
