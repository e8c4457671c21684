/*
 * main.c: `ema`, the command-line tool of libema.
 *
 *   ema COMMAND [OPTION]... [ARG]...
 *
 * Dispatches to one subcommand (cmd_*.c, listed below), and answers
 * `ema --help` and `ema --version`. Exit status everywhere: 0 success,
 * 1 failure, 2 usage error. The tool uses the public header <ema/ema.h> only.
 */
#include <stdio.h>
#include <string.h>

#include "commands.h"

static const cli_command *const commands[] = {&cmd_demo,    &cmd_smooth, &cmd_inspect,    &cmd_extract,
                                              &cmd_posthoc, &cmd_bench,  &cmd_consolidate};
enum { N_COMMANDS = sizeof commands / sizeof commands[0] };

static void print_help(FILE *f) {
  fprintf(f,
          "Usage: ema COMMAND [OPTION]... [ARG]...\n"
          "Exponential moving averages of model weights: a training demo, EMA of a data series,\n"
          "and tools for libema checkpoints and post-hoc EMA snapshots.\n"
          "\n"
          "Commands:\n");
  for (size_t i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-11s %s\n", commands[i]->name, commands[i]->summary);
  fprintf(f,
          "\n"
          "Options:\n"
          "  -h, --help     show this help and exit\n"
          "  -V, --version  show the versions of the tool and of the library, and exit\n"
          "\n"
          "Run 'ema COMMAND --help' for the options of one command.\n"
          "Exit status: 0 success, 1 failure, 2 usage error (bad command line).\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "ema: missing command\n");
    print_help(stderr);
    return EXIT_USAGE;
  }
  const char *name = argv[1];
  if (strcmp(name, "-h") == 0 || strcmp(name, "--help") == 0 || strcmp(name, "help") == 0) {
    if (strcmp(name, "help") == 0 && argc > 2) { /* "ema help smooth" */
      for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(argv[2], commands[i]->name) == 0) return cli_print_help(commands[i]);
      cli_error("unknown command '%s'", argv[2]);
      fprintf(stderr, "Try 'ema --help' for the list of commands.\n");
      return EXIT_USAGE;
    }
    print_help(stdout);
    return EXIT_OK;
  }
  if (strcmp(name, "-V") == 0 || strcmp(name, "--version") == 0) {
    printf("ema (libema) %s\nlibrary %s, kernels %s\n", EMA_VERSION_STRING, ema_version_string(), ema_isa());
    if (ema_version_number() != EMA_VERSION_NUMBER)
      printf("warning: the tool was built against libema %s but runs with %s\n", EMA_VERSION_STRING,
             ema_version_string());
    return EXIT_OK;
  }
  for (size_t i = 0; i < N_COMMANDS; i++)
    if (strcmp(name, commands[i]->name) == 0) return commands[i]->run(commands[i], argc - 1, argv + 1);
  cli_error("unknown %s '%s'", name[0] == '-' ? "option" : "command", name);
  fprintf(stderr, "Usage: ema COMMAND [OPTION]... [ARG]...\nTry 'ema --help' for the list of commands.\n");
  return EXIT_USAGE;
}
