/*
 * cmd_consolidate.c: `ema consolidate DIR -o OUT.safetensors` and
 * `ema consolidate DIR --hf OUTDIR [--max-shard-size SIZE]`: a sharded
 * checkpoint (ema_save_sharded) as one unsharded checkpoint, bit for bit
 * what ema_save of the same model writes, or as model weights in Hugging
 * Face's sharded layout. Streams chunk by chunk (ema/dist.h): memory stays
 * a few MiB whatever the model's size. A progress bar on a terminal.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ema/dist.h>

#include "commands.h"

static int run_consolidate(const cli_command *cmd, int argc, char **argv);

const cli_command cmd_consolidate = {
    "consolidate",
    "turn a sharded checkpoint into one file or Hugging Face model shards",
    "ema consolidate DIR (-o OUT.safetensors | --hf OUTDIR [--max-shard-size SIZE])",
    "Read the sharded checkpoint in DIR (written by ema_save_sharded: manifest.json and one\n"
    "shard file per rank) and write it without gathering it in memory:\n"
    "  -o OUT.safetensors: the unsharded checkpoint, the tensors, names and EMA state that\n"
    "     ema_save of the same model, unsharded, writes (it loads with ema_load);\n"
    "  --hf OUTDIR: the averages as model weights (each average under its tensor's name, in\n"
    "     the model's dtype; state tensors as they are), as OUTDIR/model.safetensors when they\n"
    "     fit one shard, else OUTDIR/model-0000i-of-0000n.safetensors and\n"
    "     model.safetensors.index.json (metadata.total_size, weight_map).\n"
    "Files are written atomically; a failure leaves previous files untouched.\n"
    "\n"
    "Options:\n"
    "  -o, --output FILE        the unsharded checkpoint to write\n"
    "      --hf OUTDIR          write Hugging Face model shards into OUTDIR\n"
    "      --max-shard-size SIZE  largest shard of --hf: bytes, or with KB MB GB (10^3) or\n"
    "                           KiB MiB GiB (2^10) (default 5GB, as Hugging Face)\n"
    "  -h, --help               show this help and exit\n"
    "\n"
    "Exit status: 0 success, 1 failure (missing, invalid or hostile checkpoint), 2 usage\n"
    "error.\n",
    run_consolidate,
};

enum { OPT_OUTPUT = 1, OPT_HF, OPT_MAX };

/* "5GB", "200MB", "2GiB", "1000": 1 and *out, or 0. */
static int parse_size(const char *s, uint64_t *out) {
  char *end = NULL;
  if (!s || !isdigit((unsigned char)*s)) return 0;
  double v = strtod(s, &end);
  static const struct {
    const char *unit;
    double mult;
  } units[] = {{"", 1},      {"B", 1},        {"KB", 1e3},        {"MB", 1e6},           {"GB", 1e9},
               {"TB", 1e12}, {"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0}, {"TiB", 1099511627776.0}};
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
    if (strcmp(end, units[i].unit) == 0) {
      double b = v * units[i].mult;
      if (!(b >= 1 && b < 1.8e19)) return 0;
      *out = (uint64_t)b;
      return 1;
    }
  return 0;
}

static void on_progress(void *user, uint64_t done, uint64_t total) {
  (void)total;
  progress_update((progress *)user, (double)done);
}

static uint64_t g_total; /* set by the first progress call */
static void first_progress(void *user, uint64_t done, uint64_t total) {
  progress *p = (progress *)user;
  if (!g_total) {
    g_total = total;
    p->total = (double)total;
  }
  on_progress(user, done, total);
}

static int run_consolidate(const cli_command *cmd, int argc, char **argv) {
  static const cli_option options[] = {
      {"output", 'o', 1, OPT_OUTPUT}, {"hf", 0, 1, OPT_HF}, {"max-shard-size", 0, 1, OPT_MAX}, {NULL, 0, 0, 0}};
  const char *dir = NULL, *out = NULL, *hf = NULL;
  uint64_t max = 0;
  cli_parser p;
  cli_parser_init(&p, cmd, options, argc, argv);
  for (int id; (id = cli_next(&p)) != CLI_END;) {
    switch (id) {
      case CLI_BAD:
        return EXIT_USAGE;
      case CLI_HELP:
        return cli_print_help(cmd);
      case CLI_POSITIONAL:
        if (dir) return cli_usage_error(cmd, "one checkpoint directory at a time (got '%s' and '%s')", dir, p.arg);
        dir = p.arg;
        break;
      case OPT_OUTPUT:
        out = p.arg;
        break;
      case OPT_HF:
        hf = p.arg;
        break;
      case OPT_MAX:
        if (!parse_size(p.arg, &max))
          return cli_usage_error(cmd, "--max-shard-size '%s' is not a size such as 5GB, 500MB or 1000000", p.arg);
        break;
    }
  }
  if (!dir) return cli_usage_error(cmd, "missing the checkpoint directory");
  if (!out == !hf) return cli_usage_error(cmd, "give exactly one of -o OUT.safetensors and --hf OUTDIR");
  if (max && !hf) return cli_usage_error(cmd, "--max-shard-size goes with --hf");
  char err[1024];
  progress bar;
  progress_begin(&bar, "consolidate", 1.0);
  ema_status st = out ? ema_consolidate(dir, out, first_progress, &bar, err, sizeof err)
                      : ema_consolidate_hf(dir, hf, max, first_progress, &bar, err, sizeof err);
  progress_done(&bar);
  if (st != EMA_OK) return cli_error("%s", err);
  printf("wrote %s (%.1f MB streamed)\n", out ? out : hf, (double)g_total / 1e6);
  return EXIT_OK;
}
