/* Subcommands of the mirrordav admin command, one file each. */
#ifndef MIRRORDAV_COMMANDS_H
#define MIRRORDAV_COMMANDS_H

/* Each returns the process exit status. */
typedef int (*mirrordav_command_fn)(int argc, char **argv);

typedef struct {
    const char *name;
    mirrordav_command_fn run;
    const char *summary;
} mirrordav_command;

int cmd_sidecar(int argc, char **argv);
int cmd_fsck(int argc, char **argv);
int cmd_manifest(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_snapshot(int argc, char **argv);
int cmd_volume(int argc, char **argv);
int cmd_push(int argc, char **argv);

#endif
