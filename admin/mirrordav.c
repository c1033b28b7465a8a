/*
 * mirrordav: the operator's command.  Dispatches to subcommands; each
 * lives in its own file and uses the plain C libraries (sidecar/,
 * snapshot/, manifest/) directly, never the running server.
 */
#include <stdio.h>
#include <string.h>

#include "admin/commands.h"

static int cmd_version(int argc, char **argv)
{
    printf("mirrordav %s\n", MIRRORDAV_VERSION);
    return 0;
}

static int cmd_help(int argc, char **argv);

static const mirrordav_command commands[] = {
    {"help", cmd_help, "show this help"},
    {"version", cmd_version, "print the version"},
    {"sidecar", cmd_sidecar, "get|set|del|list|dump a file's metadata"},
    {"fsck", cmd_fsck, "check (--repair: fix) sidecars against the data"},
    {"manifest", cmd_manifest, "generate|check a tree's manifest"},
    {"verify", cmd_verify, "check a snapshot against its manifests"},
    {"snapshot", cmd_snapshot, "create|list|delete|prune|pin|unpin snapshots"},
    {"volume", cmd_volume, "init a volume (live/, snapshots/, state/)"},
    {"push", cmd_push, "send a file as PATCH-APPLY deltas (or a PUT)"},
    {NULL, NULL, NULL},
};

static void usage(FILE *out)
{
    const mirrordav_command *c;

    fprintf(out, "usage: mirrordav COMMAND [ARGS...]\n\ncommands:\n");
    for (c = commands; c->name; c++)
        fprintf(out, "  %-10s %s\n", c->name, c->summary);
}

static int cmd_help(int argc, char **argv)
{
    usage(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    const mirrordav_command *c;

    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
        return cmd_help(argc - 1, argv + 1);
    if (!strcmp(argv[1], "--version"))
        return cmd_version(argc - 1, argv + 1);
    for (c = commands; c->name; c++)
        if (!strcmp(c->name, argv[1]))
            return c->run(argc - 1, argv + 1);
    fprintf(stderr, "mirrordav: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
