/*
 * train_mlp.c: train a small neural network with SGD and keep an exponential
 * moving average (EMA) of its weights with libema, evaluate both, save a
 * checkpoint and restore it the two ways TensorFlow users know.
 *
 *   cc -std=c11 train_mlp.c -lema -lm -o train_mlp && ./train_mlp [CHECKPOINT]
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
 *    integer: it is carried as plain state (ema_track_state), never averaged.
 *  - Evaluation: the raw weights, then ema_swap() puts the averages into the
 *    model, evaluate again, ema_swap() puts the training weights back.
 *  - Checkpoint: ema_save() writes weights, averages and EMA state. A fresh
 *    program restores it with ema_load() (the raw weights: what you want to
 *    resume training) or ema_load_averages_into_model() (the averages in the
 *    model's tensors: what you want to evaluate or serve; TensorFlow's
 *    Saver(ema.variables_to_restore())).
 *
 * This is the readable twin of `ema demo` (tools/ema/cmd_demo.c), which adds
 * options, a plot and a progress bar; both print the same table.
 */
#include <ema/ema.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { DIM = 8, HIDDEN = 32, CLASSES = 4, BLOBS = 2, N_TRAIN = 4000, N_TEST = 4000, BATCH = 20, EPOCHS = 20 };
#define LABEL_NOISE 0.25
#define LEARNING_RATE 0.8f
#define DECAY 0.995
#define SEED 1

/* splitmix64: a small generator that gives the same numbers everywhere */
static uint64_t rng_next(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static double uniform(uint64_t *s) { return (double)(rng_next(s) >> 11) * 0x1.0p-53; }
static double gauss(uint64_t *s) {
  double u = 1.0 - uniform(s), v = uniform(s);
  return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}
static int below(uint64_t *s, int n) { return (int)(uniform(s) * n); }

/* ---- data: rows [0, N_TRAIN) train, the rest held out ---- */
static float X[N_TRAIN + N_TEST][DIM];
static int Y[N_TRAIN + N_TEST];

static void make_data(uint64_t seed) {
  double center[CLASSES][BLOBS][DIM];
  for (int c = 0; c < CLASSES; c++)
    for (int b = 0; b < BLOBS; b++)
      for (int k = 0; k < DIM; k++) center[c][b][k] = gauss(&seed);
  for (int i = 0; i < N_TRAIN + N_TEST; i++) {
    int c = below(&seed, CLASSES), b = below(&seed, BLOBS);
    for (int k = 0; k < DIM; k++) X[i][k] = (float)(center[c][b][k] + gauss(&seed));
    if (i < N_TRAIN && uniform(&seed) < LABEL_NOISE) c = below(&seed, CLASSES); /* a wrong label */
    Y[i] = c;
  }
}

/* ---- the model ---- */
typedef struct model {
  float w1[HIDDEN][DIM], b1[HIDDEN];
  float w2[CLASSES][HIDDEN], b2[CLASSES];
} model;

static void init_model(model *m, uint64_t seed) {
  for (int j = 0; j < HIDDEN; j++) {
    for (int k = 0; k < DIM; k++) m->w1[j][k] = (float)(gauss(&seed) / sqrt((double)DIM));
    m->b1[j] = 0;
  }
  for (int c = 0; c < CLASSES; c++) {
    for (int j = 0; j < HIDDEN; j++) m->w2[c][j] = (float)(gauss(&seed) / sqrt((double)HIDDEN));
    m->b2[c] = 0;
  }
}

/* hidden activations h, probabilities p; returns the cross-entropy loss */
static double forward(const model *m, const float *x, int y, double *h, double *p) {
  for (int j = 0; j < HIDDEN; j++) {
    double a = m->b1[j];
    for (int k = 0; k < DIM; k++) a += (double)m->w1[j][k] * x[k];
    h[j] = tanh(a);
  }
  double top = -INFINITY;
  for (int c = 0; c < CLASSES; c++) {
    double z = m->b2[c];
    for (int j = 0; j < HIDDEN; j++) z += (double)m->w2[c][j] * h[j];
    p[c] = z;
    if (z > top) top = z;
  }
  double sum = 0;
  for (int c = 0; c < CLASSES; c++) sum += (p[c] = exp(p[c] - top));
  for (int c = 0; c < CLASSES; c++) p[c] /= sum;
  return -log(p[y] > 1e-300 ? p[y] : 1e-300);
}

static void evaluate(const model *m, double *loss, double *acc) {
  double h[HIDDEN], p[CLASSES], total = 0;
  int right = 0;
  for (int i = N_TRAIN; i < N_TRAIN + N_TEST; i++) {
    total += forward(m, X[i], Y[i], h, p);
    int best = 0;
    for (int c = 1; c < CLASSES; c++)
      if (p[c] > p[best]) best = c;
    right += best == Y[i];
  }
  *loss = total / N_TEST;
  *acc = (double)right / N_TEST;
}

static void sgd_step(model *m, const int *batch) {
  static model g;
  memset(&g, 0, sizeof g);
  double h[HIDDEN], p[CLASSES];
  for (int e = 0; e < BATCH; e++) {
    int i = batch[e];
    forward(m, X[i], Y[i], h, p);
    double dh[HIDDEN] = {0};
    for (int c = 0; c < CLASSES; c++) {
      double dz = (p[c] - (c == Y[i])) / BATCH;
      g.b2[c] += (float)dz;
      for (int j = 0; j < HIDDEN; j++) {
        g.w2[c][j] += (float)(dz * h[j]);
        dh[j] += dz * m->w2[c][j];
      }
    }
    for (int j = 0; j < HIDDEN; j++) {
      double da = dh[j] * (1 - h[j] * h[j]);
      g.b1[j] += (float)da;
      for (int k = 0; k < DIM; k++) g.w1[j][k] += (float)(da * X[i][k]);
    }
  }
  float *w = (float *)m;
  const float *gw = (const float *)&g;
  for (size_t k = 0; k < sizeof(model) / sizeof(float); k++) w[k] -= LEARNING_RATE * gw[k];
}

/* ---- libema ---- */

/* Stop with a message when a libema call fails. */
static void check(ema_status st, const ema_ctx *ctx, const char *what) {
  if (st == EMA_OK) return;
  fprintf(stderr, "train_mlp: %s: %s (%s)\n", what, ema_status_string(st), ema_last_error(ctx));
  exit(1);
}

/* Weights are averaged; global_step is plain state saved beside them. */
static void track_model(ema_ctx *ctx, model *m, int64_t *global_step) {
  check(ema_track(ctx, "hidden.weight", m->w1, EMA_F32, 2, (int64_t[]){HIDDEN, DIM}), ctx, "track");
  check(ema_track(ctx, "hidden.bias", m->b1, EMA_F32, 1, (int64_t[]){HIDDEN}), ctx, "track");
  check(ema_track(ctx, "out.weight", m->w2, EMA_F32, 2, (int64_t[]){CLASSES, HIDDEN}), ctx, "track");
  check(ema_track(ctx, "out.bias", m->b2, EMA_F32, 1, (int64_t[]){CLASSES}), ctx, "track");
  check(ema_track_policy(ctx, "global_step", global_step, EMA_I64, 0, NULL, EMA_POLICY_COPY), ctx, "track_policy");
}

int main(int argc, char **argv) {
  const char *path = argc > 1 ? argv[1] : "train_mlp.safetensors";
  static model m, restored;
  static int order[N_TRAIN];
  make_data(SEED);
  init_model(&m, SEED + 1000);

  ema_ctx *ema = NULL;
  int64_t global_step = 0;
  check(ema_create(&ema, DECAY), ema, "create");
  track_model(ema, &m, &global_step);

  printf("epoch   step   decay  raw loss  raw acc  EMA loss  EMA acc\n");
  uint64_t shuffle = SEED + 2000;
  for (int i = 0; i < N_TRAIN; i++) order[i] = i;
  double raw_loss = 0, raw_acc = 0, ema_loss = 0, ema_acc = 0;
  for (int epoch = 1; epoch <= EPOCHS; epoch++) {
    for (int i = N_TRAIN - 1; i > 0; i--) { /* shuffle the training set */
      int j = below(&shuffle, i + 1), t = order[i];
      order[i] = order[j];
      order[j] = t;
    }
    for (int s = 0; s < N_TRAIN / BATCH; s++) {
      sgd_step(&m, order + s * BATCH);
      global_step++;
      check(ema_set_num_updates(ema, global_step), ema, "set_num_updates");
      check(ema_apply(ema), ema, "apply"); /* shadow -= (shadow - w) * (1 - decay) */
    }
    evaluate(&m, &raw_loss, &raw_acc);
    check(ema_swap(ema), ema, "swap"); /* the model now holds the averages */
    evaluate(&m, &ema_loss, &ema_acc);
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
    init_model(&restored, SEED + 3000); /* other weights: the restore must replace them */
    check(ema_create(&fresh, DECAY), fresh, "create");
    track_model(fresh, &restored, &step);
    if (way == 0)
      check(ema_load(fresh, path), fresh, "load"); /* raw weights: to resume training */
    else
      check(ema_load_averages_into_model(fresh, path), fresh, "load averages"); /* to evaluate or serve */
    double loss, acc;
    evaluate(&restored, &loss, &acc);
    int same = way == 0 ? (loss == raw_loss && acc == raw_acc) : (loss == ema_loss && acc == ema_acc);
    printf("%-29s loss %.4f  acc %6.2f%%  (%s)\n", way == 0 ? "ema_load:" : "ema_load_averages_into_model:", loss,
           100 * acc, same ? "as in training" : "DIFFERENT from training");
    ok &= same && step == global_step;
    ema_free(fresh);
  }
  ema_free(ema);
  return ok ? 0 : 1;
}
