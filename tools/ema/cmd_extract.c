/*
 * cmd_extract.c: `ema extract CKPT -o OUT.safetensors`, a plain inference
 * checkpoint from a libema checkpoint (ema_extract_averages): every average
 * "<name>/<ema>" is written as "<name>" in the model tensor's dtype, plain
 * state is copied, zero-debias counters are left out. Any safetensors reader
 * loads the result straight into the model.
 */
#include <stdio.h>

#include "commands.h"

static int run_extract(const cli_command *cmd, int argc, char **argv);

const cli_command cmd_extract = {
    "extract",
    "write the averaged weights as a plain safetensors file for inference",
    "ema extract CKPT -o OUT.safetensors [--ema-name NAME]",
    "Write a plain inference checkpoint: each average NAME/<ema name> of CKPT is stored as\n"
    "NAME (rounded to the model tensor's dtype), COPY tensors (such as global_step) are copied,\n"
    "zero-debias counters are left out. The result loads into the model with any safetensors\n"
    "reader, like TensorFlow's variables_to_restore() done once and for all. OUT is written\n"
    "atomically: a failure leaves any previous file untouched.\n"
    "\n"
    "Options:\n"
    "  -o, --output FILE   the file to write (required)\n"
    "      --ema-name NAME the averages' name when CKPT's metadata has no ema.name\n"
    "                      (default ExponentialMovingAverage)\n"
    "  -h, --help          show this help and exit\n"
    "\n"
    "Exit status: 0 success, 1 failure (missing or invalid checkpoint, no averages), 2 usage\n"
    "error.\n",
    run_extract,
};

enum { OPT_OUTPUT = 1, OPT_EMA_NAME };

static int run_extract(const cli_command *cmd, int argc, char **argv) {
  static const cli_option options[] = {
      {"output", 'o', 1, OPT_OUTPUT}, {"ema-name", 0, 1, OPT_EMA_NAME}, {NULL, 0, 0, 0}};
  const char *ckpt = NULL, *out = NULL, *ema_name = NULL;
  cli_parser p;
  cli_parser_init(&p, cmd, options, argc, argv);
  for (int id, stop_rc; (id = cli_next(&p)) != CLI_END;) {
    if (cli_stop(&p, id, &stop_rc)) return stop_rc;
    switch (id) {
      case CLI_POSITIONAL:
        if (ckpt) return cli_usage_error(cmd, "one checkpoint at a time (got '%s' and '%s')", ckpt, p.arg);
        ckpt = p.arg;
        break;
      case OPT_OUTPUT:
        out = p.arg;
        break;
      case OPT_EMA_NAME:
        ema_name = p.arg;
        break;
    }
  }
  if (!ckpt) return cli_usage_error(cmd, "missing the checkpoint file");
  if (!out) return cli_usage_error(cmd, "missing -o OUT.safetensors: where to write the averages");

  char err[1024];
  if (ema_extract_averages(ckpt, out, ema_name, err, sizeof err) != EMA_OK) return cli_error("%s", err);
  ema_file *f = NULL;
  if (ema_file_open(&f, out, err, sizeof err) != EMA_OK) return cli_error("reading back %s: %s", out, err);
  char shown[1024];
  printf("wrote %s: %zu tensors (the averages under the model's names, and COPY tensors)\n",
         cli_escape(out, shown, sizeof shown), ema_file_count(f));
  ema_file_close(f);
  return EXIT_OK;
}
