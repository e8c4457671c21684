/*
 * commands.h: the `ema` subcommands, one file each (cmd_<name>.c). Each file
 * defines its cli_command: name, summary, synopsis, --help text and entry
 * point. main.c lists them.
 */
#ifndef EMA_TOOL_COMMANDS_H
#define EMA_TOOL_COMMANDS_H

#include "cli.h"

extern const cli_command cmd_demo;
extern const cli_command cmd_smooth;
extern const cli_command cmd_inspect;
extern const cli_command cmd_extract;
extern const cli_command cmd_posthoc;
extern const cli_command cmd_bench;
extern const cli_command cmd_consolidate;

#endif /* EMA_TOOL_COMMANDS_H */
