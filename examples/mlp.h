/*
 * mlp.h: the data set and the model of examples/train_mlp.c, shared with
 * `ema demo` (tools/ema/cmd_demo.c), which includes this file too: both
 * train exactly the same network on exactly the same data, so their tables
 * agree. Plain C11 and libema's public header; nothing to link but libm.
 *
 *  - Data: 4 classes in 8 dimensions, each class a mixture of 2 Gaussian
 *    blobs (so a linear model is not enough), overlapping; 25% of the
 *    training labels are replaced by random ones (label noise); a held-out
 *    split with true labels measures generalisation. Deterministic for a
 *    seed: splitmix64 and Box-Muller, the same numbers on every machine.
 *  - Model: 8 -> 32 tanh -> 4 softmax, float32 weights, mini-batch SGD
 *    (batch 20) at a learning rate high enough that the raw weights jitter.
 */
#ifndef EMA_EXAMPLES_MLP_H
#define EMA_EXAMPLES_MLP_H

#include <ema/ema.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

enum { DIM = 8, HIDDEN = 32, CLASSES = 4, BLOBS = 2, N_TRAIN = 4000, N_TEST = 4000, BATCH = 20 };
#define LABEL_NOISE 0.25
#define LEARNING_RATE 0.8f
#define DECAY 0.995

/* ---- random numbers: splitmix64 ---- */
static uint64_t mlp_rng_next(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static double mlp_uniform(uint64_t *s) { return (double)(mlp_rng_next(s) >> 11) * 0x1.0p-53; } /* [0, 1) */
static double mlp_gauss(uint64_t *s) {                                                         /* Box-Muller */
  double u = 1.0 - mlp_uniform(s), v = mlp_uniform(s);
  return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}
static int mlp_below(uint64_t *s, int n) { return (int)(mlp_uniform(s) * n); }

/* Fisher-Yates shuffle of order[0..n). */
static void mlp_shuffle(int *order, int n, uint64_t *s) {
  for (int i = n - 1; i > 0; i--) {
    int j = mlp_below(s, i + 1), t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
}

/* ---- data: rows [0, N_TRAIN) train, the rest held out ---- */
typedef struct mlp_data {
  float x[N_TRAIN + N_TEST][DIM];
  int y[N_TRAIN + N_TEST];
} mlp_data;

static void mlp_make_data(mlp_data *d, uint64_t seed) {
  double center[CLASSES][BLOBS][DIM];
  for (int c = 0; c < CLASSES; c++)
    for (int b = 0; b < BLOBS; b++)
      for (int k = 0; k < DIM; k++) center[c][b][k] = mlp_gauss(&seed);
  for (int i = 0; i < N_TRAIN + N_TEST; i++) {
    int c = mlp_below(&seed, CLASSES), b = mlp_below(&seed, BLOBS);
    for (int k = 0; k < DIM; k++) d->x[i][k] = (float)(center[c][b][k] + mlp_gauss(&seed));
    if (i < N_TRAIN && mlp_uniform(&seed) < LABEL_NOISE) c = mlp_below(&seed, CLASSES); /* a wrong label */
    d->y[i] = c;
  }
}

/* ---- the model ---- */
typedef struct mlp_model {
  float w1[HIDDEN][DIM], b1[HIDDEN]; /* hidden layer, tanh */
  float w2[CLASSES][HIDDEN], b2[CLASSES];
} mlp_model;

static void mlp_init(mlp_model *m, uint64_t seed) {
  for (int j = 0; j < HIDDEN; j++) {
    for (int k = 0; k < DIM; k++) m->w1[j][k] = (float)(mlp_gauss(&seed) / sqrt((double)DIM));
    m->b1[j] = 0;
  }
  for (int c = 0; c < CLASSES; c++) {
    for (int j = 0; j < HIDDEN; j++) m->w2[c][j] = (float)(mlp_gauss(&seed) / sqrt((double)HIDDEN));
    m->b2[c] = 0;
  }
}

/* Forward pass of one example: hidden activations h, class probabilities p;
   returns the cross-entropy loss for label y. */
static double mlp_forward(const mlp_model *m, const float *x, int y, double *h, double *p) {
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

/* Mean loss and accuracy on the held-out split. */
static void mlp_evaluate(const mlp_model *m, const mlp_data *d, double *loss, double *acc) {
  double h[HIDDEN], p[CLASSES], total = 0;
  int right = 0;
  for (int i = N_TRAIN; i < N_TRAIN + N_TEST; i++) {
    total += mlp_forward(m, d->x[i], d->y[i], h, p);
    int best = 0;
    for (int c = 1; c < CLASSES; c++)
      if (p[c] > p[best]) best = c;
    right += best == d->y[i];
  }
  *loss = total / N_TEST;
  *acc = (double)right / N_TEST;
}

/* One SGD step on the examples batch[0..BATCH). */
static void mlp_sgd_step(mlp_model *m, const mlp_data *d, const int *batch) {
  static mlp_model g; /* gradient, same layout as the model */
  memset(&g, 0, sizeof g);
  double h[HIDDEN], p[CLASSES];
  for (int e = 0; e < BATCH; e++) {
    int i = batch[e];
    mlp_forward(m, d->x[i], d->y[i], h, p);
    double dh[HIDDEN] = {0};
    for (int c = 0; c < CLASSES; c++) {
      double dz = (p[c] - (c == d->y[i])) / BATCH;
      g.b2[c] += (float)dz;
      for (int j = 0; j < HIDDEN; j++) {
        g.w2[c][j] += (float)(dz * h[j]);
        dh[j] += dz * m->w2[c][j];
      }
    }
    for (int j = 0; j < HIDDEN; j++) {
      double da = dh[j] * (1 - h[j] * h[j]);
      g.b1[j] += (float)da;
      for (int k = 0; k < DIM; k++) g.w1[j][k] += (float)(da * d->x[i][k]);
    }
  }
  float *w = (float *)m;
  const float *gw = (const float *)&g;
  for (size_t k = 0; k < sizeof(mlp_model) / sizeof(float); k++) w[k] -= LEARNING_RATE * gw[k];
}

/* ---- libema ---- */

/* The weights are averaged; global_step, an integer, is carried as plain
   state (saved and restored beside them, never averaged). */
static ema_status mlp_track(ema_ctx *ctx, mlp_model *m, int64_t *global_step) {
  const int64_t s_w1[2] = {HIDDEN, DIM}, s_b1[1] = {HIDDEN}, s_w2[2] = {CLASSES, HIDDEN}, s_b2[1] = {CLASSES};
  ema_status st;
  if ((st = ema_track(ctx, "hidden.weight", m->w1, EMA_F32, 2, s_w1)) != EMA_OK) return st;
  if ((st = ema_track(ctx, "hidden.bias", m->b1, EMA_F32, 1, s_b1)) != EMA_OK) return st;
  if ((st = ema_track(ctx, "out.weight", m->w2, EMA_F32, 2, s_w2)) != EMA_OK) return st;
  if ((st = ema_track(ctx, "out.bias", m->b2, EMA_F32, 1, s_b2)) != EMA_OK) return st;
  return ema_track_policy(ctx, "global_step", global_step, EMA_I64, 0, NULL, EMA_POLICY_COPY);
}

#endif /* EMA_EXAMPLES_MLP_H */
