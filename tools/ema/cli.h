/*
 * cli.h: what every `ema` subcommand shares.
 *
 *  - Exit codes: EXIT_OK (0), EXIT_FAIL (1, the work failed: missing file,
 *    corrupt input, a check that did not hold), EXIT_USAGE (2, the command
 *    line is wrong: unknown option, missing or malformed value).
 *  - Messages: cli_error() prints one line "ema: <message>" on stderr;
 *    cli_usage_error() adds the command's synopsis and a pointer to --help,
 *    as GNU tools do, and returns EXIT_USAGE.
 *  - An option parser (cli_next) for "--name VALUE", "--name=VALUE",
 *    "-x VALUE", flags, "--" and positional arguments in any order.
 *  - Strict number parsing: the whole string must be a finite number.
 *  - A progress bar on stderr that appears only when stderr is a terminal
 *    and the work has already taken more than a second.
 *  - Small helpers: element loads and stores for every dtype (f16 and bf16
 *    through the library's ema_convert), shortest round-trip number text,
 *    JSON strings, shapes, paths, escaping of strings from files.
 *
 * Nothing here includes anything from src/: the tool is built on the public
 * header include/ema/ema.h only.
 */
#ifndef EMA_TOOL_CLI_H
#define EMA_TOOL_CLI_H

#include <ema/ema.h>

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

/* One subcommand: its name, a one-line summary for `ema --help`, its
   synopsis (first line of its --help and of usage errors), the text of its
   --help after the synopsis, and its entry point (argv[0] is the command
   name). */
typedef struct cli_command {
  const char *name;
  const char *summary;
  const char *synopsis;
  const char *help;
  int (*run)(const struct cli_command *cmd, int argc, char **argv);
} cli_command;

/* ------------------------------------------------------------------------ */
/* Messages                                                                  */
/* ------------------------------------------------------------------------ */

#if defined(__GNUC__) || defined(__clang__)
#define CLI_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define CLI_PRINTF(f, a)
#endif

/* "ema: <message>\n" on stderr, the message escaped (cli_escape), so always
   one line. Returns EXIT_FAIL, so that a command can `return cli_error(...)`. */
int cli_error(const char *fmt, ...) CLI_PRINTF(1, 2);

/* "ema: <command>: <message>", the synopsis and "Try 'ema <command> --help'
   for more information." on stderr. Returns EXIT_USAGE. */
int cli_usage_error(const cli_command *cmd, const char *fmt, ...) CLI_PRINTF(2, 3);

/* s made safe to print with the library's ema_escape (control bytes, DEL,
   C1 controls and ill-formed UTF-8 as \xNN, the backslash as \\), but
   whole, not cut at 64 bytes. Written into buf (cap bytes, "..." when it
   does not fit); returns buf. Every string that came from a file (tensor
   names, metadata) and every path goes through it before the tool prints
   it. cli_error and cli_usage_error pass their whole message through the
   same escaping, backslashes excepted (a message the library escaped is
   not escaped twice): a message is always one line. */
const char *cli_escape(const char *s, char *buf, size_t cap);

/* cli_escape into a new heap string that always fits (NULL when out of
   memory); free() it. */
char *cli_escape_alloc(const char *s);

/* Print the command's full --help on stdout. Returns EXIT_OK. */
int cli_print_help(const cli_command *cmd);

/* ------------------------------------------------------------------------ */
/* Options                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct cli_option {
  const char *name; /* long name without "--", e.g. "epochs" */
  char short_name;  /* 'o' for "-o", or 0 */
  int has_arg;      /* 1 when the option takes a value */
  int id;           /* returned by cli_next; must be > 0 */
} cli_option;

typedef struct cli_parser {
  const cli_command *cmd;
  const cli_option *options; /* terminated by an entry with name NULL */
  int argc;
  char **argv;
  int i;           /* next argv index */
  int no_more;     /* after "--": everything is positional */
  const char *arg; /* the value of the last option, or the positional */
  const char *opt; /* how the last option was spelt, e.g. "--epochs" */
} cli_parser;

enum { CLI_END = -1, CLI_BAD = -2, CLI_POSITIONAL = 0, CLI_HELP = -3 };

/* Start parsing argv[1..argc) (argv[0] is the command name). */
void cli_parser_init(cli_parser *p, const cli_command *cmd, const cli_option *options, int argc, char **argv);

/* The next item: an option id (> 0, with p->arg its value when it takes
   one), CLI_POSITIONAL (p->arg is the argument), CLI_HELP for -h/--help,
   CLI_END, or CLI_BAD after printing a usage error (the caller returns
   EXIT_USAGE). */
int cli_next(cli_parser *p);

/* What a command's option loop does with CLI_BAD (return EXIT_USAGE: the
   usage error is printed) and CLI_HELP (print the help, return EXIT_OK):
   1 with *rc set when the command must return *rc now, 0 for any other id.
     for (int id, rc; (id = cli_next(&p)) != CLI_END;) {
       if (cli_stop(&p, id, &rc)) return rc;
       switch (id) { ... }
     } */
int cli_stop(const cli_parser *p, int id, int *rc);

/* Strict conversions of an option value; on failure they print a usage error
   naming the option and return 0 (then the caller returns EXIT_USAGE). */
int cli_double(const cli_parser *p, double *out);
int cli_int64(const cli_parser *p, int64_t lo, int64_t hi, int64_t *out);

/* Whole-string conversions without messages: 1 on success. cli_parse_double
   accepts what strtod does (decimal only, no hex), with spaces around, and
   refuses an empty string; finite values only unless allow_inf. */
int cli_parse_double(const char *s, int allow_inf, double *out);
int cli_parse_int64(const char *s, int64_t *out);

/* ------------------------------------------------------------------------ */
/* Progress bar                                                              */
/* ------------------------------------------------------------------------ */

/* A progress bar on stderr, drawn only when stderr is a terminal and only
   once the work has run for more than a second (short work prints nothing),
   redrawn at most ten times a second, erased by progress_done(). */
typedef struct progress {
  const char *label;
  double total;
  double start, last_draw;
  int enabled, shown;
} progress;

void progress_begin(progress *p, const char *label, double total);
void progress_update(progress *p, double done);
void progress_done(progress *p);

/* Seconds from an arbitrary origin (CLOCK_MONOTONIC). */
double cli_now(void);

/* ------------------------------------------------------------------------ */
/* Numbers                                                                   */
/* ------------------------------------------------------------------------ */

/* Element i of a little-endian buffer of dtype as a double (F32, F64, F16,
   BF16, I32, I64), exactly; the half formats through ema_convert. */
double cli_load_element(const void *buf, ema_dtype dtype, size_t i);
/* Store v as element i of dtype: floats rounded once, to nearest with ties
   to even (directly from the double, also for f16 and bf16, by ema_convert;
   overflow gives infinity), integers rounded to nearest and saturated (NaN
   gives 0). */
void cli_store_element(void *buf, ema_dtype dtype, size_t i, double v);

/* Shortest "%.*g" text (15, 16 or 17 digits) that reads back as v exactly;
   "nan", "inf", "-inf" for the specials. buf of at least 32 bytes. */
void cli_format_double(char *buf, size_t cap, double v);

/* Write s as a JSON string literal (with the quotes) to f: control
   characters, DEL and the C1 controls as \u00XX (the decoded string is s). */
void cli_json_string(FILE *f, const char *s);

/* "[2, 3]" style shape text into buf. */
void cli_format_shape(char *buf, size_t cap, int ndim, const int64_t *shape);

/* ------------------------------------------------------------------------ */
/* Files                                                                     */
/* ------------------------------------------------------------------------ */

/* Create directory path (one level) unless it exists. 1 on success. */
int cli_mkdir(const char *path);

/* "dir/name" into a new heap string (NULL when out of memory). */
char *cli_join_path(const char *dir, const char *name);

#endif /* EMA_TOOL_CLI_H */
