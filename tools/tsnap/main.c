/*
 * main.c - the `tsnap` command: looks inside, verifies, compares, exports
 * and converts snapshot files and stores from the shell.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const cli_command *const commands[] = {
    &cli_ls, &cli_info, &cli_verify, &cli_diff, &cli_export, &cli_cp,
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

const cli_command *cli_current;

static void help(FILE *f)
{
    fputs("usage: tsnap COMMAND [OPTIONS] [ARGS]\n"
          "\n"
          "Looks inside, checks, compares and converts tsnap snapshots (HDF5 files)\n"
          "and stores (directories of step-NNNNNNNNNNNN.h5 snapshots).\n"
          "\n"
          "Commands:\n",
          f);
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-8s %s\n", commands[i]->name, commands[i]->summary);
    fputs("\n"
          "'tsnap COMMAND --help' shows a command's options and examples.\n"
          "Exit status: 0 success; 1 failure (verify: damage found; diff: the\n"
          "snapshots differ); 2 usage error or trouble (a missing file).\n",
          f);
}

int main(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : NULL;

    if (!name) {
        help(stderr);
        return CLI_USAGE;
    }
    if (!strcmp(name, "-h") || !strcmp(name, "--help") || !strcmp(name, "help")) {
        if (!strcmp(name, "help") && argc > 2) {
            for (size_t i = 0; i < NCOMMANDS; i++)
                if (!strcmp(argv[2], commands[i]->name)) {
                    fputs(commands[i]->help, stdout);
                    return CLI_OK;
                }
            fprintf(stderr, "tsnap: no command '%s'; 'tsnap --help' lists them\n", argv[2]);
            return CLI_USAGE;
        }
        help(stdout);
        return CLI_OK;
    }
    if (!strcmp(name, "-V") || !strcmp(name, "--version")) {
        printf("tsnap %s (file format %d)\n", tsnap_version(), TSNAP_FORMAT_VERSION);
        return CLI_OK;
    }
    for (size_t i = 0; i < NCOMMANDS; i++) {
        if (!strcmp(name, commands[i]->name)) {
            cli_current = commands[i];
            cli_name = commands[i]->name;
            optind = 1;
            return commands[i]->run(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "tsnap: no command '%s'; 'tsnap --help' lists them\n", name);
    return CLI_USAGE;
}
