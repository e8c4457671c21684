/*
 * examples/train_sharded_mpi.c: a model sharded over MPI ranks, each rank
 * keeping the EMA of its own shard. Linear regression y = X w with w split
 * by rows over the ranks (as FSDP2 holds a parameter): every rank computes
 * its part of X w, one MPI_Allreduce sums the parts, and each rank updates
 * its own rows of w and their average. The EMA communicates nothing per
 * step; only the checkpoint does:
 *
 *   mpirun -np 4 ./train_sharded_mpi ckpt     train 200 steps, save ckpt/
 *   mpirun -np 3 ./train_sharded_mpi ckpt     resume from ckpt/ at 3 ranks
 *   ema consolidate ckpt -o model.safetensors one file, as ema_save writes it
 *
 * Build: cc train_sharded_mpi.c $(pkg-config --cflags --libs libema_mpi).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <ema/mpi.h>

enum { D = 64, N = 256, STEPS = 200 };

/* The data set, the same on every rank: x[i][j] and y[i] = x[i] . w_true. */
static double x_at(int i, int j) { return sin(0.37 * i + 1.3 * j) + 0.1 * cos(2.1 * i * j); }
static double w_true(int j) { return 0.5 - (double)(j % 7) / 7.0; }

static void die(const char *what, ema_status st, const ema_ctx *ctx) {
  fprintf(stderr, "%s: %s (%s)\n", what, ema_status_string(st), ctx ? ema_last_error(ctx) : "");
  MPI_Abort(MPI_COMM_WORLD, 1);
}

/* Mean squared error of the model over the data set (collective). */
static double loss(const float *w, int lo, int hi, const double *y) {
  static double part[N], pred[N];
  for (int i = 0; i < N; i++) {
    part[i] = 0;
    for (int j = lo; j < hi; j++) part[i] += x_at(i, j) * w[j - lo];
  }
  MPI_Allreduce(part, pred, N, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  double s = 0;
  for (int i = 0; i < N; i++) s += (pred[i] - y[i]) * (pred[i] - y[i]);
  return s / N;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const char *dir = argc > 1 ? argv[1] : "ckpt_sharded";

  /* This rank's rows of w: [lo, hi), uneven when size does not divide D. */
  int lo = D * rank / size, hi = D * (rank + 1) / size;
  float *w = (float *)calloc((size_t)(hi - lo) + 1, sizeof *w);
  double y[N];
  for (int i = 0; i < N; i++) {
    y[i] = 0;
    for (int j = 0; j < D; j++) y[i] += x_at(i, j) * w_true(j);
  }

  ema_comm *comm;
  ema_ctx *ema;
  ema_status st = ema_comm_from_mpi(&comm, MPI_COMM_WORLD);
  if (st != EMA_OK) die("ema_comm_from_mpi", st, NULL);
  if ((st = ema_create(&ema, 0.99)) != EMA_OK) die("ema_create", st, NULL);
  int64_t global = D, offset = lo, local = hi - lo;
  if ((st = ema_track_shard(ema, "w", w, EMA_F32, 1, &global, &offset, &local)) != EMA_OK)
    die("ema_track_shard", st, ema);

  /* Resume when a checkpoint is there, at whatever world size wrote it. */
  char manifest[1024];
  snprintf(manifest, sizeof manifest, "%s/manifest.json", dir);
  struct stat sb;
  int64_t step0 = 0;
  if (stat(manifest, &sb) == 0) {
    if ((st = ema_load_sharded(ema, dir, comm)) != EMA_OK) die("ema_load_sharded", st, ema);
    step0 = ema_num_updates(ema);
    if (rank == 0) printf("resumed %s at step %lld on %d ranks\n", dir, (long long)step0, size);
  }

  static double part[N], pred[N];
  for (int64_t step = step0 + 1; step <= step0 + STEPS; step++) {
    for (int i = 0; i < N; i++) { /* forward: my part of X w, summed over ranks */
      part[i] = 0;
      for (int j = lo; j < hi; j++) part[i] += x_at(i, j) * w[j - lo];
    }
    MPI_Allreduce(part, pred, N, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    for (int j = lo; j < hi; j++) { /* backward and SGD on my rows only */
      double g = 0;
      for (int i = 0; i < N; i++) g += 2.0 * (pred[i] - y[i]) * x_at(i, j) / N;
      w[j - lo] -= (float)(0.05 * g);
    }
    ema_set_num_updates(ema, step);                                 /* TensorFlow's warm-up: the caller owns the step */
    if ((st = ema_apply(ema)) != EMA_OK) die("ema_apply", st, ema); /* local: no communication */
  }

  double raw = loss(w, lo, hi, y);
  ema_swap(ema); /* evaluate with the averages, in place */
  double avg = loss(w, lo, hi, y);
  ema_swap(ema);
  if (rank == 0) printf("loss with the trained weights %.6f, with their EMA %.6f\n", raw, avg);

  if ((st = ema_save_sharded(ema, dir, comm)) != EMA_OK) die("ema_save_sharded", st, ema);
  if (rank == 0) printf("saved %s (one shard file per rank, manifest.json last)\n", dir);
  ema_free(ema);
  ema_comm_free(comm);
  free(w);
  MPI_Finalize();
  return 0;
}
