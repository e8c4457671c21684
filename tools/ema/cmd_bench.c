/*
 * cmd_bench.c: `ema bench [ARG]...` runs the speed benchmark, the separate
 * program bench_apply (bench/bench_apply.c), with the arguments passed
 * through unchanged, by replacing this process (execv): its output and exit
 * status are the benchmark's.
 *
 * Where bench_apply is looked for, in order:
 *  1. the file named by the environment variable EMA_BENCH_APPLY;
 *  2. next to the ema binary (the directory of /proc/self/exe, else of
 *     argv[0] when it holds a '/'): both are built into the build tree's top
 *     directory;
 *  3. the build tree the tool was compiled in (EMA_TOOL_BUILD_DIR, set by
 *     tools/ema/tool.cmake): <build>/bench_apply, <build>/bench/bench_apply.
 * When none exists, it says so and exits 1.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"

#ifndef EMA_TOOL_BUILD_DIR
#define EMA_TOOL_BUILD_DIR ""
#endif

static int run_bench(const cli_command *cmd, int argc, char **argv);

const cli_command cmd_bench = {
    "bench",
    "run the speed benchmark of ema_apply (bench_apply)",
    "ema bench [BENCH_APPLY_ARG]...",
    "Run the speed benchmark bench_apply (bench/bench_apply.c): ema_apply over several model\n"
    "layouts, dtypes and thread counts, against a memory-bandwidth triad measured in the\n"
    "same run. Every argument is passed to bench_apply unchanged ('ema bench --help' shows\n"
    "this text; 'ema bench -- --help' shows bench_apply's own options, such as --quick,\n"
    "--threads N,..., --layouts L,..., --csv).\n"
    "\n"
    "bench_apply is looked for in $EMA_BENCH_APPLY, then next to the ema binary, then in\n"
    "the build tree ema was built in (" EMA_TOOL_BUILD_DIR
    "). It is built with the\n"
    "tools (cmake -DEMA_BUILD_TOOLS=ON, the default).\n"
    "\n"
    "Exit status: bench_apply's; 1 when bench_apply cannot be found or started.\n",
    run_bench,
};

static int is_executable(const char *path) { return path && *path && access(path, X_OK) == 0; }

/* "<directory of this program>/bench_apply" into buf, or 0. */
static int next_to_self(const char *argv0, char *buf, size_t cap) {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    self[n] = '\0';
  } else if (argv0 && strchr(argv0, '/')) {
    snprintf(self, sizeof self, "%s", argv0);
  } else {
    return 0;
  }
  char *slash = strrchr(self, '/');
  if (!slash) return 0;
  *slash = '\0';
  return snprintf(buf, cap, "%s/bench_apply", self) < (int)cap;
}

static int run_bench(const cli_command *cmd, int argc, char **argv) {
  /* own help only for a lone --help/-h; "--" passes the rest through */
  int first = 1;
  if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) return cli_print_help(cmd);
  if (argc >= 2 && strcmp(argv[1], "--") == 0) first = 2;

  char found[PATH_MAX + 32] = "";
  const char *env = getenv("EMA_BENCH_APPLY");
  char candidate[PATH_MAX + 32];
  if (env && *env) {
    if (!is_executable(env)) return cli_error("bench: EMA_BENCH_APPLY is '%s', which is not an executable file", env);
    snprintf(found, sizeof found, "%s", env);
  }
  if (!*found && next_to_self(argv[0], candidate, sizeof candidate) && is_executable(candidate))
    snprintf(found, sizeof found, "%s", candidate);
  static const char build_dir[] = EMA_TOOL_BUILD_DIR; /* "" when not built in a tree */
  if (!*found && build_dir[0]) {
    static const char *const rel[] = {"/bench_apply", "/bench/bench_apply"};
    for (size_t i = 0; i < 2 && !*found; i++) {
      snprintf(candidate, sizeof candidate, "%s%s", build_dir, rel[i]);
      if (is_executable(candidate)) snprintf(found, sizeof found, "%s", candidate);
    }
  }
  if (!*found)
    return cli_error(
        "bench: the benchmark program bench_apply was not found (looked in $EMA_BENCH_APPLY, next to "
        "ema, and in %s); build it with cmake --build <build> --target bench_apply",
        *EMA_TOOL_BUILD_DIR ? EMA_TOOL_BUILD_DIR : "the build tree");

  /* argv for bench_apply: its path, then our arguments */
  int n = argc - first;
  char **args = (char **)calloc((size_t)n + 2, sizeof *args);
  if (!args) return cli_error("bench: out of memory");
  args[0] = found;
  for (int i = 0; i < n; i++) args[i + 1] = argv[first + i];
  fflush(stdout);
  execv(found, args);
  int e = errno;
  free(args);
  return cli_error("bench: cannot run %s: %s", found, strerror(e));
}
