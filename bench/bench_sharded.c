/*
 * bench/bench_sharded.c: save and load of a GPT-2-small-sized EMA (124M
 * float32 parameters, GPT-2's 148 tensors) sharded over the MPI ranks by
 * dim 0 (as FSDP2 holds them), against ema_save/ema_load of the same model
 * unsharded in the same run (rank 0 alone, before the sharded part).
 *
 *   mpirun -np N bench_sharded DIR [--reps R] [--scale S]
 *
 * Prints one line per measurement: world size, operation, best and median
 * seconds over R repetitions (every rank's time is the slowest rank's: a
 * barrier before, an allreduce of the times after), GB/s of checkpoint
 * bytes, and the peak resident memory of the rank (getrusage). --scale
 * divides every dim-0 size (for a quick run). Public headers only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <ema/mpi.h>

typedef struct spec {
  char name[64];
  int ndim;
  int64_t shape[2];
} spec;

static int gpt2(spec *s, int64_t scale) {
  int n = 0;
#define T(nm, a, b, nd)                                                                                                \
  (snprintf(s[n].name, sizeof s[n].name, "%s", nm), s[n].ndim = nd, s[n].shape[0] = (a) / scale > 0 ? (a) / scale : 1, \
   s[n].shape[1] = b, n++)
  T("wte.weight", 50257, 768, 2);
  T("wpe.weight", 1024, 768, 2);
  for (int l = 0; l < 12; l++) {
    static const struct {
      const char *n;
      int64_t a, b;
      int nd;
    } L[] = {{"ln_1.weight", 768, 0, 1},           {"ln_1.bias", 768, 0, 1},
             {"attn.c_attn.weight", 768, 2304, 2}, {"attn.c_attn.bias", 2304, 0, 1},
             {"attn.c_proj.weight", 768, 768, 2},  {"attn.c_proj.bias", 768, 0, 1},
             {"ln_2.weight", 768, 0, 1},           {"ln_2.bias", 768, 0, 1},
             {"mlp.c_fc.weight", 768, 3072, 2},    {"mlp.c_fc.bias", 3072, 0, 1},
             {"mlp.c_proj.weight", 3072, 768, 2},  {"mlp.c_proj.bias", 768, 0, 1}};
    for (size_t i = 0; i < sizeof L / sizeof L[0]; i++) {
      char nm[64];
      snprintf(nm, sizeof nm, "h.%d.%s", l, L[i].n);
      T(nm, L[i].a, L[i].b, L[i].nd);
    }
  }
  T("ln_f.weight", 768, 0, 1);
  T("ln_f.bias", 768, 0, 1);
#undef T
  return n;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double peak_mb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_maxrss / 1024.0;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void report(int world, const char *what, double *t, int reps, double bytes, int rank) {
  qsort(t, (size_t)reps, sizeof *t, cmp);
  double mb = peak_mb(), max_mb;
  MPI_Allreduce(&mb, &max_mb, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  if (rank == 0)
    printf("world %d  %-22s best %7.3f s  median %7.3f s  %6.2f GB/s  peak RSS per rank %7.0f MB\n", world, what, t[0],
           t[reps / 2], bytes / t[0] / 1e9, max_mb);
}

static void check(ema_status st, const ema_ctx *ctx, const char *what) {
  if (st == EMA_OK) return;
  fprintf(stderr, "%s: %s: %s\n", what, ema_status_string(st), ema_last_error(ctx));
  MPI_Abort(MPI_COMM_WORLD, 1);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, world, reps = 3;
  int64_t scale = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  if (argc < 2) {
    if (rank == 0) fprintf(stderr, "usage: bench_sharded DIR [--reps R] [--scale S]\n");
    MPI_Finalize();
    return 2;
  }
  for (int i = 2; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
    if (!strcmp(argv[i], "--scale")) scale = atoll(argv[i + 1]);
  }
  if (reps < 1 || reps > 50) reps = 3;
  if (scale < 1) scale = 1;
  static spec s[200];
  int n = gpt2(s, scale);
  ema_comm *comm;
  ema_ctx *ctx;
  check(ema_comm_from_mpi(&comm, MPI_COMM_WORLD), NULL, "ema_comm_from_mpi");
  check(ema_create(&ctx, 0.999), NULL, "ema_create");
  float **data = (float **)calloc((size_t)n, sizeof *data);
  double params = 0;
  for (int i = 0; i < n; i++) {
    int64_t rows = s[i].shape[0], cols = s[i].ndim == 2 ? s[i].shape[1] : 1;
    int64_t lo = rows * rank / world, hi = rows * (rank + 1) / world;
    int64_t off[2] = {lo, 0}, loc[2] = {hi - lo, cols};
    size_t m = (size_t)((hi - lo) * cols);
    data[i] = (float *)malloc((m ? m : 1) * sizeof(float));
    for (size_t j = 0; j < m; j++) data[i][j] = (float)((j * 2654435761u) % 1000u) * 1e-3f;
    check(ema_track_shard(ctx, s[i].name, data[i], EMA_F32, s[i].ndim, s[i].shape, off, loc), ctx, "track");
    params += (double)(rows * cols);
  }
  check(ema_apply(ctx), ctx, "apply");
  double bytes = params * 8; /* model values and one average, f32 */
  char path[1024];
  double *t = (double *)calloc((size_t)reps, sizeof *t);
  if (world == 1) { /* the unsharded reference: ema_save/ema_load of the same model */
    snprintf(path, sizeof path, "%s/unsharded.safetensors", argv[1]);
    for (int r = 0; r < reps; r++) {
      double t0 = now();
      check(ema_save(ctx, path), ctx, "ema_save");
      t[r] = now() - t0;
    }
    report(world, "ema_save (unsharded)", t, reps, bytes, rank);
    for (int r = 0; r < reps; r++) {
      double t0 = now();
      check(ema_load(ctx, path), ctx, "ema_load");
      t[r] = now() - t0;
    }
    report(world, "ema_load (unsharded)", t, reps, bytes, rank);
  }
  snprintf(path, sizeof path, "%s/sharded", argv[1]);
  for (int r = 0; r < reps; r++) {
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = now(), dt, mx;
    check(ema_save_sharded(ctx, path, comm), ctx, "ema_save_sharded");
    dt = now() - t0;
    MPI_Allreduce(&dt, &mx, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    t[r] = mx;
  }
  report(world, "ema_save_sharded", t, reps, bytes, rank);
  for (int r = 0; r < reps; r++) {
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = now(), dt, mx;
    check(ema_load_sharded(ctx, path, comm), ctx, "ema_load_sharded");
    dt = now() - t0;
    MPI_Allreduce(&dt, &mx, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    t[r] = mx;
  }
  report(world, "ema_load_sharded", t, reps, bytes, rank);
  if (rank == 0) printf("world %d  %d tensors, %.1fM parameters\n", world, n, params / 1e6);
  ema_free(ctx);
  ema_comm_free(comm);
  for (int i = 0; i < n; i++) free(data[i]);
  free(data);
  free(t);
  MPI_Finalize();
  return 0;
}
