/*
 * train_mlp.c: train a small neural network with SGD and keep an exponential
 * moving average (EMA) of its weights with libema, evaluate both, save a
 * checkpoint and restore it the two ways TensorFlow users know.
 *
 *   cc -std=c11 train_mlp.c -lema -lm -o train_mlp && ./train_mlp [CHECKPOINT]
 *
 * The data set and the network (nothing EMA-specific) are in mlp.h, beside
 * this file; this file is the EMA part.
 *
 * What happens:
 *  - Data: 4 classes in 8 dimensions, each class two overlapping Gaussian
 *    blobs; 25% of the training labels are wrong on purpose; a held-out set
 *    with true labels measures what the model really learnt.
 *  - Model: 8 -> 32 (tanh) -> 4 (softmax), float32 weights, mini-batch SGD
 *    with a learning rate high enough that the weights jitter.
 *  - EMA: ema_track() each weight tensor; after every SGD step,
 *    ema_set_num_updates(step) + ema_apply() (TensorFlow's warm-up: the decay
 *    is min(0.995, (1+step)/(10+step))). The step counter global_step is an
 *    integer: it follows the model (ema_track_policy, EMA_POLICY_COPY), never averaged.
 *  - Evaluation: the raw weights, then ema_swap() puts the averages into the
 *    model, evaluate again, ema_swap() puts the training weights back.
 *  - Checkpoint: ema_save() writes weights, averages and EMA state. A fresh
 *    program restores it with ema_load() (the raw weights: what you want to
 *    resume training) or ema_load_averages_into_model() (the averages in the
 *    model's tensors: what you want to evaluate or serve; TensorFlow's
 *    Saver(ema.variables_to_restore())).
 *
 * This is the readable twin of `ema demo` (tools/ema/cmd_demo.c), which
 * includes the same mlp.h and adds options, a plot and a progress bar; both
 * print the same table.
 */
#include <ema/ema.h>

#include <stdio.h>
#include <stdlib.h>

#include "mlp.h"

enum { EPOCHS = 20 };
#define SEED 1

/* Stop with a message when a libema call fails. */
static void check(ema_status st, const ema_ctx *ctx, const char *what) {
  if (st == EMA_OK) return;
  fprintf(stderr, "train_mlp: %s: %s (%s)\n", what, ema_status_string(st), ema_last_error(ctx));
  exit(1);
}

int main(int argc, char **argv) {
  const char *path = argc > 1 ? argv[1] : "train_mlp.safetensors";
  static mlp_data data;
  static mlp_model m, restored;
  static int order[N_TRAIN];
  mlp_make_data(&data, SEED);
  mlp_init(&m, SEED + 1000);

  ema_ctx *ema = NULL;
  int64_t global_step = 0;
  check(ema_create(&ema, DECAY), ema, "create");
  check(mlp_track(ema, &m, &global_step), ema, "track");

  printf("epoch   step   decay  raw loss  raw acc  EMA loss  EMA acc\n");
  uint64_t shuffle = SEED + 2000;
  for (int i = 0; i < N_TRAIN; i++) order[i] = i;
  double raw_loss = 0, raw_acc = 0, ema_loss = 0, ema_acc = 0;
  for (int epoch = 1; epoch <= EPOCHS; epoch++) {
    mlp_shuffle(order, N_TRAIN, &shuffle);
    for (int s = 0; s < N_TRAIN / BATCH; s++) {
      mlp_sgd_step(&m, &data, order + s * BATCH);
      global_step++;
      check(ema_set_num_updates(ema, global_step), ema, "set_num_updates");
      check(ema_apply(ema), ema, "apply"); /* shadow -= (shadow - w) * (1 - decay) */
    }
    mlp_evaluate(&m, &data, &raw_loss, &raw_acc);
    check(ema_swap(ema), ema, "swap"); /* the model now holds the averages */
    mlp_evaluate(&m, &data, &ema_loss, &ema_acc);
    check(ema_swap(ema), ema, "swap"); /* and its training weights again */
    printf("%5d  %5lld  %.4f  %8.4f  %6.2f%%  %8.4f  %6.2f%%\n", epoch, (long long)global_step,
           ema_effective_decay(ema), raw_loss, 100 * raw_acc, ema_loss, 100 * ema_acc);
  }
  check(ema_save(ema, path), ema, "save");
  printf("saved %s\n", path);

  /* Restore into a fresh model, two ways, and evaluate. */
  int ok = 1;
  for (int way = 0; way < 2; way++) {
    ema_ctx *fresh = NULL;
    int64_t step = 0;
    mlp_init(&restored, SEED + 3000); /* other weights: the restore must replace them */
    check(ema_create(&fresh, DECAY), fresh, "create");
    check(mlp_track(fresh, &restored, &step), fresh, "track");
    if (way == 0)
      check(ema_load(fresh, path), fresh, "load"); /* raw weights: to resume training */
    else
      check(ema_load_averages_into_model(fresh, path), fresh, "load averages"); /* to evaluate or serve */
    double loss, acc;
    mlp_evaluate(&restored, &data, &loss, &acc);
    int same = way == 0 ? (loss == raw_loss && acc == raw_acc) : (loss == ema_loss && acc == ema_acc);
    printf("%-29s loss %.4f  acc %6.2f%%  (%s)\n", way == 0 ? "ema_load:" : "ema_load_averages_into_model:", loss,
           100 * acc, same ? "as in training" : "DIFFERENT from training");
    ok &= same && step == global_step;
    ema_free(fresh);
  }
  ema_free(ema);
  return ok ? 0 : 1;
}
