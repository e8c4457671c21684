/*
 * cmd_demo.c: `ema demo`, the project's main job (`make demo`).
 *
 * Trains a small multi-layer perceptron on a built-in synthetic data set and
 * shows what an exponential moving average of the weights buys:
 *
 *  1-2. Data and model: those of examples/mlp.h, included here (4 classes
 *     of 2 overlapping Gaussian blobs in 8 dimensions, 25% label noise, a
 *     held-out split; 8 -> 32 tanh -> 4 softmax, mini-batch SGD), for the
 *     given --seed.
 *  3. EMA: libema with decay 0.995 and TensorFlow's num_updates warm-up
 *     (effective decay min(0.995, (1+step)/(10+step))); global_step is an
 *     integer that follows the model (ema_track_policy, EMA_POLICY_COPY), never averaged.
 *  4. Every quarter epoch the raw weights and, through ema_swap(), the
 *     averages are evaluated on the held-out split; a table prints the
 *     values at the end of each epoch.
 *  5. The checkpoint is saved (ema_save), then the seeds' restore story is
 *     replayed in fresh contexts: a plain restore (ema_load) gives the raw
 *     weights, ema_load_averages_into_model (TensorFlow's
 *     variables_to_restore()) gives the averages. Both are evaluated and must
 *     equal what training saw, bit for bit; if not, the demo fails (exit 1).
 *  6. An SVG plot of held-out loss and accuracy, raw vs EMA.
 *
 * examples/train_mlp.c is the same program without the options, the plot
 * and the progress bar: the file to copy. Both include examples/mlp.h (the
 * data and the network); the tool's tests check that both print the same
 * table.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "svg.h"

#include "mlp.h" /* examples/mlp.h: the data set and the network */

enum { EVALS_PER_EPOCH = 4 };

typedef mlp_data dataset;
typedef mlp_model model;

/* ------------------------------------------------------------------------ */
/* The command                                                               */
/* ------------------------------------------------------------------------ */

static int run_demo(const cli_command *cmd, int argc, char **argv);

const cli_command cmd_demo = {
    "demo",
    "train a small classifier and show what an EMA of its weights buys",
    "ema demo [--epochs N] [--out DIR] [--seed S] [--no-plot]",
    "Train a multi-layer perceptron (8 -> 32 tanh -> 4) with mini-batch SGD on a built-in\n"
    "synthetic data set (overlapping classes, 25% label noise, a held-out split), keeping an\n"
    "exponential moving average of its weights with libema (decay 0.995 with TensorFlow's\n"
    "num_updates warm-up). Each epoch, the raw weights and the averages (through ema_swap)\n"
    "are evaluated on the held-out split and a table row is printed.\n"
    "\n"
    "Then the checkpoint DIR/checkpoint.safetensors is written (ema_save; the integer\n"
    "global_step rides along as a COPY tensor) and restored into fresh models twice, as in\n"
    "TensorFlow: a plain restore (ema_load) gives the raw weights, ema_load_averages_into_model\n"
    "(variables_to_restore) gives the averages. Both must equal what training saw, bit for\n"
    "bit; otherwise the demo fails. Finally DIR/demo.svg plots loss and accuracy, raw vs EMA.\n"
    "\n"
    "Options:\n"
    "  --epochs N   epochs to train, 1..1000 (default 20)\n"
    "  --out DIR    directory for checkpoint.safetensors and demo.svg (default ema-demo;\n"
    "               created if missing)\n"
    "  --seed S     seed of the data set and of the initial weights (default 1)\n"
    "  --no-plot    do not write demo.svg\n"
    "  -h, --help   show this help and exit\n"
    "\n"
    "The same program, without options, is examples/train_mlp.c.\n"
    "Exit status: 0 success, 1 failure (including a restore that does not match), 2 usage error.\n",
    run_demo,
};

enum { OPT_EPOCHS = 1, OPT_OUT, OPT_SEED, OPT_NO_PLOT };

typedef struct history {
  double *x, *raw_loss, *raw_acc, *ema_loss, *ema_acc; /* one entry per evaluation */
  size_t n;
} history;

#define TRY(call)                                                                                     \
  do {                                                                                                \
    ema_status st_ = (call);                                                                          \
    if (st_ != EMA_OK) {                                                                              \
      rc = cli_error("demo: %s failed: %s (%s)", #call, ema_status_string(st_), ema_last_error(ctx)); \
      goto done;                                                                                      \
    }                                                                                                 \
  } while (0)

static int write_plot(const char *path, const history *hi) {
  svg_series loss[2] = {
      {"raw weights", hi->x, hi->raw_loss, hi->n, SVG_BLUE, SVG_LINE, 1.6},
      {"EMA of the weights", hi->x, hi->ema_loss, hi->n, SVG_RED, SVG_LINE, 2.4},
  };
  svg_series acc[2] = {
      {"raw weights", hi->x, hi->raw_acc, hi->n, SVG_BLUE, SVG_LINE, 1.6},
      {"EMA of the weights", hi->x, hi->ema_acc, hi->n, SVG_RED, SVG_LINE, 2.4},
  };
  svg_panel panels[2] = {
      {"Held-out loss", "epoch", "cross-entropy", loss, 2, 0},
      {"Held-out accuracy", "epoch", "accuracy (%)", acc, 2, 0},
  };
  char err[512];
  if (!svg_write(path, "ema demo: SGD weights vs their exponential moving average (decay 0.995)", panels, 2, 600, 440,
                 err, sizeof err))
    return cli_error("demo: %s", err);
  return EXIT_OK;
}

/* Evaluate a model restored from the checkpoint and compare it with what
   training saw: weights bit for bit, and the evaluation. */
static int check_restore(const char *what, const char *gives, const model *m, const model *expect, const dataset *d,
                         int64_t step, int64_t expect_step, double want_loss, double want_acc) {
  double loss, acc;
  mlp_evaluate(m, d, &loss, &acc);
  int same = memcmp(m, expect, sizeof *m) == 0 && loss == want_loss && acc == want_acc && step == expect_step;
  printf("  %-29s %-17s %8.4f  %6.2f%%  %s\n", what, gives, loss, 100 * acc, same ? "yes, bit for bit" : "NO");
  return same;
}

static int run_demo(const cli_command *cmd, int argc, char **argv) {
  static const cli_option options[] = {{"epochs", 0, 1, OPT_EPOCHS},
                                       {"out", 0, 1, OPT_OUT},
                                       {"seed", 0, 1, OPT_SEED},
                                       {"no-plot", 0, 0, OPT_NO_PLOT},
                                       {NULL, 0, 0, 0}};
  int64_t epochs = 20, seed = 1;
  const char *out_dir = "ema-demo";
  int plot = 1;
  cli_parser p;
  cli_parser_init(&p, cmd, options, argc, argv);
  for (int id, stop_rc; (id = cli_next(&p)) != CLI_END;) {
    if (cli_stop(&p, id, &stop_rc)) return stop_rc;
    switch (id) {
      case CLI_POSITIONAL:
        return cli_usage_error(cmd, "unexpected argument '%s'", p.arg);
      case OPT_EPOCHS:
        if (!cli_int64(&p, 1, 1000, &epochs)) return EXIT_USAGE;
        break;
      case OPT_SEED:
        if (!cli_int64(&p, 0, INT64_MAX, &seed)) return EXIT_USAGE;
        break;
      case OPT_OUT:
        out_dir = p.arg;
        break;
      case OPT_NO_PLOT:
        plot = 0;
        break;
    }
  }
  if (!*out_dir) return cli_usage_error(cmd, "option '--out' needs a directory name");
  if (!cli_mkdir(out_dir)) return cli_error("demo: cannot create the directory '%s'", out_dir);

  int rc = EXIT_FAIL;
  ema_ctx *ctx = NULL, *fresh = NULL;
  dataset *d = (dataset *)malloc(sizeof *d);
  model *m = (model *)malloc(sizeof *m), *raw_copy = (model *)malloc(sizeof *m), *avg_copy = (model *)malloc(sizeof *m);
  model *restored = (model *)malloc(sizeof *m);
  int *order = (int *)malloc(N_TRAIN * sizeof *order);
  char *ckpt = cli_join_path(out_dir, "checkpoint.safetensors"), *svg = cli_join_path(out_dir, "demo.svg");
  size_t n_evals = (size_t)epochs * EVALS_PER_EPOCH;
  history hi = {0};
  double *hist = (double *)malloc(5 * n_evals * sizeof *hist);
  if (!d || !m || !raw_copy || !avg_copy || !restored || !order || !ckpt || !svg || !hist) {
    rc = cli_error("demo: out of memory");
    goto done;
  }
  hi.x = hist;
  hi.raw_loss = hist + n_evals;
  hi.raw_acc = hist + 2 * n_evals;
  hi.ema_loss = hist + 3 * n_evals;
  hi.ema_acc = hist + 4 * n_evals;

  mlp_make_data(d, (uint64_t)seed);
  mlp_init(m, (uint64_t)seed + 1000);
  int64_t global_step = 0;
  if (ema_create(&ctx, DECAY) != EMA_OK) {
    rc = cli_error("demo: ema_create failed");
    goto done;
  }
  TRY(mlp_track(ctx, m, &global_step));

  printf(
      "ema demo: MLP %d-%d-%d, %d training examples (%.0f%% wrong labels), %d held out, batch %d,\n"
      "learning rate %.2f, EMA decay %.3f with num_updates warm-up, seed %lld\n\n",
      DIM, HIDDEN, CLASSES, N_TRAIN, 100 * LABEL_NOISE, N_TEST, BATCH, (double)LEARNING_RATE, DECAY, (long long)seed);
  printf("epoch   step   decay  raw loss  raw acc  EMA loss  EMA acc\n");
  fflush(stdout);

  uint64_t shuffle = (uint64_t)seed + 2000;
  for (int i = 0; i < N_TRAIN; i++) order[i] = i;
  const int steps_per_epoch = N_TRAIN / BATCH, steps_per_eval = steps_per_epoch / EVALS_PER_EPOCH;
  progress bar;
  progress_begin(&bar, "training", (double)epochs);
  double raw_loss = 0, raw_acc = 0, ema_loss = 0, ema_acc = 0;
  for (int epoch = 1; epoch <= epochs; epoch++) {
    mlp_shuffle(order, N_TRAIN, &shuffle);
    for (int s = 0; s < steps_per_epoch; s++) {
      mlp_sgd_step(m, d, order + s * BATCH);
      global_step++;
      TRY(ema_set_num_updates(ctx, global_step)); /* decay = min(0.995, (1+n)/(10+n)) */
      TRY(ema_apply(ctx));
      if ((s + 1) % steps_per_eval == 0) {
        mlp_evaluate(m, d, &raw_loss, &raw_acc);
        TRY(ema_swap(ctx)); /* the model now holds the averages */
        mlp_evaluate(m, d, &ema_loss, &ema_acc);
        TRY(ema_swap(ctx)); /* and its training weights again, bit for bit */
        hi.x[hi.n] = epoch - 1 + (double)(s + 1) / steps_per_epoch;
        hi.raw_loss[hi.n] = raw_loss;
        hi.raw_acc[hi.n] = 100 * raw_acc;
        hi.ema_loss[hi.n] = ema_loss;
        hi.ema_acc[hi.n] = 100 * ema_acc;
        hi.n++;
      }
      progress_update(&bar, epoch - 1 + (double)(s + 1) / steps_per_epoch);
    }
    progress_done(&bar);
    printf("%5d  %5lld  %.4f  %8.4f  %6.2f%%  %8.4f  %6.2f%%\n", epoch, (long long)global_step,
           ema_effective_decay(ctx), raw_loss, 100 * raw_acc, ema_loss, 100 * ema_acc);
    fflush(stdout);
  }
  progress_done(&bar);

  /* What training saw at the end, to compare the restores with. */
  memcpy(raw_copy, m, sizeof *m);
  TRY(ema_swap(ctx));
  memcpy(avg_copy, m, sizeof *m);
  TRY(ema_swap(ctx));
  TRY(ema_save(ctx, ckpt));
  printf("\nheld-out accuracy at the end: raw %.2f%%, EMA %.2f%%; loss: raw %.4f, EMA %.4f\n", 100 * raw_acc,
         100 * ema_acc, raw_loss, ema_loss);
  printf("checkpoint: %s (global_step %lld as a COPY tensor)\n\n", ckpt, (long long)global_step);

  /* The seeds' story: the same checkpoint, restored two ways into fresh models. */
  printf("Restoring the checkpoint into a fresh model, two ways:\n");
  printf("  %-29s %-17s %8s  %7s  %s\n", "restore", "model gets", "loss", "acc", "equals training");
  int ok = 1;
  for (int way = 0; way < 2; way++) {
    int64_t restored_step = -1;
    mlp_init(restored, (uint64_t)seed + 3000); /* different weights: the restore must overwrite them */
    ema_free(fresh);
    fresh = NULL;
    if (ema_create(&fresh, DECAY) != EMA_OK) {
      rc = cli_error("demo: ema_create failed");
      goto done;
    }
    ema_status st = mlp_track(fresh, restored, &restored_step);
    if (st == EMA_OK) st = way == 0 ? ema_load(fresh, ckpt) : ema_load_averages_into_model(fresh, ckpt);
    if (st != EMA_OK) {
      rc = cli_error("demo: restoring %s failed: %s (%s)", ckpt, ema_status_string(st), ema_last_error(fresh));
      goto done;
    }
    if (way == 0)
      ok &= check_restore("ema_load (plain restore)", "raw weights", restored, raw_copy, d, restored_step, global_step,
                          raw_loss, raw_acc);
    else
      ok &= check_restore("ema_load_averages_into_model", "averaged weights", restored, avg_copy, d, restored_step,
                          global_step, ema_loss, ema_acc);
  }
  printf(
      "  (ema_load_averages_into_model is TensorFlow's Saver(ema.variables_to_restore()): each\n"
      "   average lands in its model tensor; global_step, a COPY tensor, restores as itself.)\n");
  if (!ok) {
    rc = cli_error("demo: a restored model differs from what training saw; the checkpoint round trip is broken");
    goto done;
  }
  if (plot) {
    if (write_plot(svg, &hi) != EXIT_OK) goto done;
    printf("plot: %s\n", svg);
  }
  rc = EXIT_OK;
done:
  ema_free(ctx);
  ema_free(fresh);
  free(d);
  free(m);
  free(raw_copy);
  free(avg_copy);
  free(restored);
  free(order);
  free(ckpt);
  free(svg);
  free(hist);
  return rc;
}
