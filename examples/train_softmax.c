/*
 * The example a newcomer copies: train a tiny softmax classifier with SGD and
 * keep an exponential moving average of its weights with libema.
 *
 * The data are noisy Gaussian blobs with some wrong labels; the learning rate
 * is high on purpose so that the raw weights jitter from batch to batch. Each
 * epoch evaluates the raw weights and, through ema_swap(), the averaged ones
 * on a held-out split.
 *
 *   cc train_softmax.c -lema -lm -o train_softmax && ./train_softmax
 */
#include <ema/ema.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

enum { DIM = 8, CLASSES = 4, TRAIN = 2000, TEST = 2000, BATCH = 16, EPOCHS = 12 };

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double uniform(void) { /* xorshift64*, deterministic on every machine */
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return (double)((rng * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}
static double gaussian(void) {
  double u = uniform() + 1e-300, v = uniform();
  return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static float X[TRAIN + TEST][DIM];
static int Y[TRAIN + TEST];
static float W[CLASSES][DIM], B[CLASSES];

static void make_data(void) {
  float centers[CLASSES][DIM];
  for (int c = 0; c < CLASSES; c++)
    for (int d = 0; d < DIM; d++) centers[c][d] = (float)gaussian();
  for (int i = 0; i < TRAIN + TEST; i++) {
    int c = (int)(uniform() * CLASSES);
    for (int d = 0; d < DIM; d++) X[i][d] = centers[c][d] + 1.2f * (float)gaussian();
    if (i < TRAIN && uniform() < 0.2) c = (int)(uniform() * CLASSES); /* label noise */
    Y[i] = c;
  }
}

/* Softmax cross-entropy of one example; fills p with probabilities. */
static double forward(const float *x, int y, double *p) {
  double mx = -1e300;
  for (int c = 0; c < CLASSES; c++) {
    double z = B[c];
    for (int d = 0; d < DIM; d++) z += (double)W[c][d] * x[d];
    p[c] = z;
    if (z > mx) mx = z;
  }
  double sum = 0;
  for (int c = 0; c < CLASSES; c++) sum += (p[c] = exp(p[c] - mx));
  for (int c = 0; c < CLASSES; c++) p[c] /= sum;
  return -log(p[y] + 1e-12);
}

static void evaluate(double *loss, double *acc) {
  double p[CLASSES], l = 0;
  int right = 0;
  for (int i = TRAIN; i < TRAIN + TEST; i++) {
    l += forward(X[i], Y[i], p);
    int best = 0;
    for (int c = 1; c < CLASSES; c++)
      if (p[c] > p[best]) best = c;
    right += best == Y[i];
  }
  *loss = l / TEST;
  *acc = (double)right / TEST;
}

#define TRY(call)                                                                           \
  do {                                                                                      \
    ema_status st_ = (call);                                                                \
    if (st_ != EMA_OK) {                                                                    \
      fprintf(stderr, "%s: %s (%s)\n", #call, ema_status_string(st_), ema_last_error(ctx)); \
      return 1;                                                                             \
    }                                                                                       \
  } while (0)

int main(void) {
  make_data();
  ema_ctx *ctx = NULL;
  if (ema_create(&ctx, 0.999) != EMA_OK) return 1;
  int64_t wshape[2] = {CLASSES, DIM}, bshape[1] = {CLASSES};
  TRY(ema_track(ctx, "W", W, EMA_F32, 2, wshape));
  TRY(ema_track(ctx, "b", B, EMA_F32, 1, bshape));

  printf("epoch  raw_loss  raw_acc  ema_loss  ema_acc\n");
  const float lr = 0.5f;
  int64_t step = 0;
  for (int epoch = 1; epoch <= EPOCHS; epoch++) {
    for (int start = 0; start < TRAIN; start += BATCH) {
      float gW[CLASSES][DIM] = {{0}}, gB[CLASSES] = {0};
      double p[CLASSES];
      for (int i = start; i < start + BATCH; i++) {
        forward(X[i], Y[i], p);
        for (int c = 0; c < CLASSES; c++) {
          float g = (float)(p[c] - (c == Y[i])) / BATCH;
          gB[c] += g;
          for (int d = 0; d < DIM; d++) gW[c][d] += g * X[i][d];
        }
      }
      for (int c = 0; c < CLASSES; c++) {
        B[c] -= lr * gB[c];
        for (int d = 0; d < DIM; d++) W[c][d] -= lr * gW[c][d];
      }
      TRY(ema_set_num_updates(ctx, ++step)); /* TensorFlow's warm-up: min(decay, (1+n)/(10+n)) */
      TRY(ema_apply(ctx));
    }
    double rl, ra, el, ea;
    evaluate(&rl, &ra);
    TRY(ema_swap(ctx)); /* the model now holds the averages */
    evaluate(&el, &ea);
    TRY(ema_swap(ctx)); /* and the training weights again, bit for bit */
    printf("%5d  %8.4f  %7.4f  %8.4f  %7.4f\n", epoch, rl, ra, el, ea);
  }
  ema_free(ctx);
  return 0;
}
