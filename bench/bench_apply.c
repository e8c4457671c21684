/*
 * bench_apply: how fast ema_apply runs, against the memory-bandwidth limit
 * measured in the same process.
 *
 * For each parameter layout (one flat tensor of 100M floats; 10,000 tensors
 * of 1,000 floats; the ResNet-50 and GPT-2-small parameter shapes), each
 * parameter dtype (f32, and bf16 with the default float32 shadows) and each
 * thread count, it times ema_apply (warm-up, then the median of --reps
 * repetitions) and, interleaved with it, an in-place read-modify-write
 * "triad" b[i] = x*b[i] + y*c[i] over buffers of the same total bytes,
 * threaded the same way (pthreads, the same number of threads, the work split
 * by bytes). Bytes moved: 12 per f32 parameter (read v, read s, write s),
 * 10 per bf16 parameter (read a 2-byte v, read and write a 4-byte s). The
 * bf16 reference is a triad that reads a 2-byte bf16 array and updates a
 * 4-byte f32 array (10 bytes/element); the plain f32 triad of the same total
 * bytes is reported beside it.
 *
 * The triad is plain C compiled with the Release flags of this file (-O3, no
 * -march: GCC vectorizes it with SSE2, the x86-64 baseline). libema picks
 * its kernels at run time (ema_isa(), printed in the header; EMA_ISA=ref
 * forces the scalar ones).
 *
 * Parameters are allocated one tensor at a time (64-byte aligned), as a
 * framework allocates them; the library keeps the shadows in its own arena.
 * Speed claims live here and in bench/RESULTS.md, never in a test: the
 * ctest smoke test only runs --quick and checks that it completes.
 */
#define _POSIX_C_SOURCE 200809L

#include <ema/ema.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/timing.h"

#define DECAY 0.999
#define ALIGN 64
#define SPLIT_ELEMS 16 /* triad split points fall on 64-byte lines of b */
#define MAX_THREADS 64

/* ------------------------------------------------------------------------ */
/* Utilities                                                                  */
/* ------------------------------------------------------------------------ */

static void die(const char *what) {
  fprintf(stderr, "bench_apply: %s\n", what);
  exit(1);
}

static void check(ema_status st, const ema_ctx *ctx, const char *call) {
  if (st == EMA_OK) return;
  fprintf(stderr, "bench_apply: %s failed: %s (%s)\n", call, ema_status_string(st), ctx ? ema_last_error(ctx) : "");
  exit(1);
}

static void *xalloc(size_t bytes) {
  size_t rounded = (bytes + ALIGN - 1) / ALIGN * ALIGN;
  void *p = aligned_alloc(ALIGN, rounded ? rounded : ALIGN);
  if (!p) die("out of memory");
  return p;
}

typedef struct stats {
  double min, med, max;
} stats;

static stats summarize(double *t, int n) {
  qsort(t, (size_t)n, sizeof *t, bench_cmp_double);
  stats s;
  s.min = t[0];
  s.max = t[n - 1];
  s.med = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
  return s;
}

/* The machine's load average ("" where /proc/loadavg does not exist): the
   benchmark is only as good as the machine is quiet. */
static const char *loadavg(void) {
  static char buf[64];
  buf[0] = '\0';
  FILE *f = fopen("/proc/loadavg", "r");
  if (!f) return buf;
  if (!fgets(buf, (int)sizeof buf, f)) buf[0] = '\0';
  fclose(f);
  char *sp = buf;
  for (int k = 0; k < 3 && sp; k++) sp = strchr(sp + 1, ' ');
  if (sp)
    *sp = '\0';
  else
    buf[strcspn(buf, "\n")] = '\0';
  return buf;
}

#include "common/layouts.h"

/* ------------------------------------------------------------------------ */
/* The triad reference and its thread pool                                    */
/* ------------------------------------------------------------------------ */

/* b[i] = x*b[i] + y*c[i]: reads 8 bytes and writes 4 per element. */
static void triad_f32(float *restrict b, const float *restrict c, size_t n, float x, float y) {
  for (size_t i = 0; i < n; i++) b[i] = x * b[i] + y * c[i];
}

/* The same with c a bf16 array widened to f32: reads 6 bytes, writes 4. */
static void triad_bf16(float *restrict b, const uint16_t *restrict c, size_t n, float x, float y) {
  for (size_t i = 0; i < n; i++) {
    uint32_t u = (uint32_t)c[i] << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    b[i] = x * b[i] + y * f;
  }
}

typedef struct triad_job {
  float *b;
  const float *c;    /* f32 triad, or NULL */
  const uint16_t *h; /* bf16 triad, or NULL */
  size_t n;
} triad_job;

static void triad_part(const triad_job *job, int part, int nparts) {
  size_t n = job->n;
  size_t e0 = n / (size_t)nparts * (size_t)part + n % (size_t)nparts * (size_t)part / (size_t)nparts;
  size_t e1 = n / (size_t)nparts * (size_t)(part + 1) + n % (size_t)nparts * (size_t)(part + 1) / (size_t)nparts;
  e0 = part == 0 ? 0 : (e0 + SPLIT_ELEMS - 1) / SPLIT_ELEMS * SPLIT_ELEMS;
  e1 = part + 1 == nparts ? n : (e1 + SPLIT_ELEMS - 1) / SPLIT_ELEMS * SPLIT_ELEMS;
  if (e1 > n) e1 = n;
  if (e0 >= e1) return;
  const float x = 0.999f, y = 0.001f;
  if (job->h)
    triad_bf16(job->b + e0, job->h + e0, e1 - e0, x, y);
  else
    triad_f32(job->b + e0, job->c + e0, e1 - e0, x, y);
}

/* A persistent pool like libema's: workers sleep on a condition variable,
   the caller runs part 0 and waits for the others. */
typedef struct tpool {
  int nthreads;
  pthread_t th[MAX_THREADS];
  pthread_mutex_t mu;
  pthread_cond_t wake, done;
  unsigned long gen;
  int pending, quit;
  const triad_job *job;
} tpool;

typedef struct tworker {
  tpool *pool;
  int part;
} tworker;

static tworker tworkers[MAX_THREADS];

static void *tpool_main(void *arg) {
  tworker *w = (tworker *)arg;
  tpool *p = w->pool;
  unsigned long seen = 0;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (!p->quit && p->gen == seen) pthread_cond_wait(&p->wake, &p->mu);
    if (p->quit) break;
    seen = p->gen;
    const triad_job *job = p->job;
    pthread_mutex_unlock(&p->mu);
    triad_part(job, w->part, p->nthreads);
    pthread_mutex_lock(&p->mu);
    if (--p->pending == 0) pthread_cond_signal(&p->done);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

static void tpool_start(tpool *p, int nthreads) {
  memset(p, 0, sizeof *p);
  p->nthreads = nthreads;
  if (pthread_mutex_init(&p->mu, NULL) || pthread_cond_init(&p->wake, NULL) || pthread_cond_init(&p->done, NULL))
    die("pthread init failed");
  for (int i = 1; i < nthreads; i++) {
    tworkers[i].pool = p;
    tworkers[i].part = i;
    if (pthread_create(&p->th[i], NULL, tpool_main, &tworkers[i])) die("pthread_create failed");
  }
}

static void tpool_stop(tpool *p) {
  pthread_mutex_lock(&p->mu);
  p->quit = 1;
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->mu);
  for (int i = 1; i < p->nthreads; i++) pthread_join(p->th[i], NULL);
  pthread_cond_destroy(&p->wake);
  pthread_cond_destroy(&p->done);
  pthread_mutex_destroy(&p->mu);
}

static void tpool_run(tpool *p, const triad_job *job) {
  if (p->nthreads < 2) {
    triad_part(job, 0, 1);
    return;
  }
  pthread_mutex_lock(&p->mu);
  p->job = job;
  p->pending = p->nthreads - 1;
  p->gen++;
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->mu);
  triad_part(job, 0, p->nthreads);
  pthread_mutex_lock(&p->mu);
  while (p->pending > 0) pthread_cond_wait(&p->done, &p->mu);
  pthread_mutex_unlock(&p->mu);
}

/* ------------------------------------------------------------------------ */
/* One layout, one dtype                                                      */
/* ------------------------------------------------------------------------ */

typedef struct options {
  int layouts[NLAYOUTS];
  int nlayouts;
  int threads[16];
  int nthreads;
  int dtypes[2]; /* EMA_F32, EMA_BF16 */
  int ndtypes;
  int reps, warmup, quick, csv, overhead;
} options;

static float init_value(size_t i) { return 1.0f + (float)(i % 1021) * (1.0f / 1024.0f); }

static uint16_t to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return (uint16_t)(u >> 16); /* the values above are exact in bf16 */
}

static void fill_params(void *p, ema_dtype dt, size_t n, size_t salt) {
  if (dt == EMA_F32) {
    float *f = (float *)p;
    for (size_t i = 0; i < n; i++) f[i] = init_value(i + salt) + 0.5f;
  } else {
    uint16_t *h = (uint16_t *)p;
    for (size_t i = 0; i < n; i++) h[i] = to_bf16(init_value(i + salt) + 0.5f);
  }
}

/* One row of results. ratio = median over the repetitions of the paired
   ratio triad time / libema time (each pair ran back to back, so slow drift
   of the machine cancels); best = fastest triad / fastest libema. */
typedef struct row {
  stats lib, tri, trif;
  double ratio, ratio_f, best, best_f;
  int have_f;
} row;

static double paired_ratio(const double *num, const double *den, double *scratch, int n) {
  for (int r = 0; r < n; r++) scratch[r] = num[r] / den[r];
  return summarize(scratch, n).med;
}

static void print_row(const options *o, const char *layout_name, ema_dtype dt, int threads, size_t numel, size_t bytes,
                      const row *w) {
  double gl = (double)bytes / w->lib.med * 1e-9, gt = (double)bytes / w->tri.med * 1e-9;
  double gf = w->have_f ? (double)bytes / w->trif.med * 1e-9 : 0.0;
  double spread = (w->lib.max - w->lib.min) / w->lib.med * 100.0;
  const char *dname = dt == EMA_F32 ? "f32" : "bf16>f32";
  if (o->csv) {
    printf("%s,%s,%d,%zu,%zu,%.3f,%.3f,%.4f,%.4f,", layout_name, dname, threads, numel, bytes, gl, gt, w->ratio,
           w->best);
    if (w->have_f)
      printf("%.3f,%.4f,%.4f,", gf, w->ratio_f, w->best_f);
    else
      printf(",,,");
    printf("%.4f,%.4f,%.4f,%.4f,%.4f,%.4f\n", w->lib.min * 1e3, w->lib.med * 1e3, w->lib.max * 1e3, w->tri.min * 1e3,
           w->tri.med * 1e3, w->tri.max * 1e3);
  } else {
    printf("%-9s %-9s %3d %11.2f %10.2f %6.3f %6.3f", layout_name, dname, threads, gl, gt, w->ratio, w->best);
    if (w->have_f)
      printf(" %8.2f %6.3f", gf, w->ratio_f);
    else
      printf(" %8s %6s", "-", "-");
    printf(" %9.3f %6.1f%%\n", w->lib.med * 1e3, spread);
  }
  fflush(stdout);
}

static void bench_one(const options *o, const layout *l, ema_dtype dt) {
  size_t n = layout_numel(l);
  size_t esz = dt == EMA_F32 ? 4 : 2;
  size_t bytes = n * (esz + 8); /* read v, read s, write s (f32 shadow) */

  /* parameters, one allocation per tensor */
  void **params = (void **)calloc(l->count, sizeof *params);
  if (!params) die("out of memory");
  ema_ctx *ctx = NULL;
  check(ema_create(&ctx, DECAY), NULL, "ema_create");
  size_t salt = 0;
  for (size_t i = 0; i < l->count; i++) {
    size_t k = shape_numel(&l->shapes[i]);
    params[i] = xalloc(k * esz);
    fill_params(params[i], dt, k, salt);
    salt += k;
    char name[32];
    snprintf(name, sizeof name, "t%zu", i);
    check(ema_track(ctx, name, params[i], dt, l->shapes[i].ndim, l->shapes[i].dim), ctx, "ema_track");
  }

  /* triad buffers of the same total bytes */
  float *tb = (float *)xalloc(n * 4);
  float *tc = NULL;
  uint16_t *th = NULL;
  if (dt == EMA_F32) {
    tc = (float *)xalloc(n * 4);
    for (size_t i = 0; i < n; i++) tc[i] = init_value(i) + 0.5f;
  } else {
    th = (uint16_t *)xalloc(n * 2);
    for (size_t i = 0; i < n; i++) th[i] = to_bf16(init_value(i) + 0.5f);
  }
  for (size_t i = 0; i < n; i++) tb[i] = init_value(i);
  triad_job job = {tb, tc, th, n};

  /* bf16 rows: also the plain f32 triad over the same total bytes */
  float *fb = NULL, *fc = NULL;
  triad_job fjob = {NULL, NULL, NULL, 0};
  int have_f = dt != EMA_F32;
  if (have_f) {
    size_t nf = bytes / 12;
    fb = (float *)xalloc(nf * 4);
    fc = (float *)xalloc(nf * 4);
    for (size_t i = 0; i < nf; i++) {
      fb[i] = init_value(i);
      fc[i] = init_value(i) + 0.5f;
    }
    fjob.b = fb;
    fjob.c = fc;
    fjob.n = nf;
  }

  double *tl = (double *)malloc((size_t)o->reps * sizeof(double));
  double *tt = (double *)malloc((size_t)o->reps * sizeof(double));
  double *tf = (double *)malloc((size_t)o->reps * sizeof(double));
  double *scratch = (double *)malloc((size_t)o->reps * sizeof(double));
  if (!tl || !tt || !tf || !scratch) die("out of memory");

  for (int ti = 0; ti < o->nthreads; ti++) {
    int nt = o->threads[ti];
    check(ema_set_threads(ctx, nt), ctx, "ema_set_threads");
    tpool pool;
    tpool_start(&pool, nt);
    for (int r = 0; r < o->warmup; r++) {
      check(ema_apply(ctx), ctx, "ema_apply");
      tpool_run(&pool, &job);
      if (have_f) tpool_run(&pool, &fjob);
    }
    /* interleaved, so that drift in the machine's speed hits all alike */
    for (int r = 0; r < o->reps; r++) {
      double t0 = bench_now();
      check(ema_apply(ctx), ctx, "ema_apply");
      double t1 = bench_now();
      tpool_run(&pool, &job);
      double t2 = bench_now();
      tl[r] = t1 - t0;
      tt[r] = t2 - t1;
      if (have_f) {
        double t3 = bench_now();
        tpool_run(&pool, &fjob);
        tf[r] = bench_now() - t3;
      }
    }
    tpool_stop(&pool);
    row w;
    memset(&w, 0, sizeof w);
    w.have_f = have_f;
    w.ratio = paired_ratio(tt, tl, scratch, o->reps);
    if (have_f) w.ratio_f = paired_ratio(tf, tl, scratch, o->reps);
    w.lib = summarize(tl, o->reps);
    w.tri = summarize(tt, o->reps);
    w.best = w.tri.min / w.lib.min;
    if (have_f) {
      w.trif = summarize(tf, o->reps);
      w.best_f = w.trif.min / w.lib.min;
    }
    print_row(o, l->name, dt, nt, n, bytes, &w);
  }

  /* keep the results observable so that nothing above is optimized away */
  volatile float sink = tb[n / 2];
  (void)sink;

  free(tl);
  free(tt);
  free(tf);
  free(scratch);
  free(fb);
  free(fc);
  free(tb);
  free(tc);
  free(th);
  ema_free(ctx);
  for (size_t i = 0; i < l->count; i++) free(params[i]);
  free(params);
}

/* ------------------------------------------------------------------------ */
/* Fixed cost of one call (--overhead)                                        */
/* ------------------------------------------------------------------------ */

/* Fixed costs, on cache-resident data so that memory bandwidth does not hide
   them (the largest size, 6 MB moved, keeps both libema's buffers and the
   triad's in a 32 MB L3):
   1. one tensor of growing size: the median time of one ema_apply (f32) and
      of one triad of the same bytes, for each thread count; the difference
      between thread counts is the fork/join of the worker pool (libema
      starts its workers only from 1 MiB moved; the triad pool always does);
   2. 10,000 tensors of 16 floats, one thread: the time per tensor of
      ema_apply against a plain C loop of the same update over the same
      tensors (own shadows, same layout), i.e. the bookkeeping per tensor;
   3. the small layout (10,000 x 1,000 floats, not cache-resident), one
      thread: ema_apply, the plain loop and the triad, interleaved. */

/* s = s - (s - v) * om, the update in the order of the contract; plain C
   built like the triad. */
static void loop_update(float *restrict s, const float *restrict v, size_t n, float om) {
  for (size_t i = 0; i < n; i++) s[i] = s[i] - (s[i] - v[i]) * om;
}

static void bench_overhead(const options *o) {
  static const size_t sizes[] = {1024, 16384, 87382, 131072, 524288};
  const int reps = 101;
  double *tl = (double *)malloc((size_t)reps * sizeof(double));
  double *tt = (double *)malloc((size_t)reps * sizeof(double));
  if (!tl || !tt) die("out of memory");
  if (!o->csv) {
    printf("\nTime of one call, cache-resident, f32, one tensor (median of %d):\n", reps);
    printf("%10s %9s %3s %13s %13s\n", "params", "bytes", "thr", "apply us", "triad us");
  }
  for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
    size_t n = sizes[si];
    float *v = (float *)xalloc(n * 4), *b = (float *)xalloc(n * 4), *c = (float *)xalloc(n * 4);
    fill_params(v, EMA_F32, n, 0);
    for (size_t i = 0; i < n; i++) {
      b[i] = init_value(i);
      c[i] = init_value(i) + 0.5f;
    }
    ema_ctx *ctx = NULL;
    check(ema_create(&ctx, DECAY), NULL, "ema_create");
    int64_t shp = (int64_t)n;
    check(ema_track(ctx, "v", v, EMA_F32, 1, &shp), ctx, "ema_track");
    triad_job job = {b, c, NULL, n};
    for (int ti = 0; ti < o->nthreads; ti++) {
      int nt = o->threads[ti];
      check(ema_set_threads(ctx, nt), ctx, "ema_set_threads");
      tpool pool;
      tpool_start(&pool, nt);
      for (int r = 0; r < 20; r++) {
        check(ema_apply(ctx), ctx, "ema_apply");
        tpool_run(&pool, &job);
      }
      for (int r = 0; r < reps; r++) {
        double t0 = bench_now();
        check(ema_apply(ctx), ctx, "ema_apply");
        double t1 = bench_now();
        tpool_run(&pool, &job);
        double t2 = bench_now();
        tl[r] = t1 - t0;
        tt[r] = t2 - t1;
      }
      tpool_stop(&pool);
      stats sl = summarize(tl, reps), st = summarize(tt, reps);
      if (o->csv)
        printf("overhead,f32,%d,%zu,%zu,%.3f,%.3f\n", nt, n, n * 12, sl.med * 1e6, st.med * 1e6);
      else
        printf("%10zu %9zu %3d %13.2f %13.2f\n", n, n * 12, nt, sl.med * 1e6, st.med * 1e6);
    }
    ema_free(ctx);
    free(v);
    free(b);
    free(c);
  }

  /* many tiny tensors: the cost of each tensor beyond its bytes */
  enum { NT = 10000, NE = 16 };
  float **pv = (float **)calloc(NT, sizeof *pv), **ps = (float **)calloc(NT, sizeof *ps);
  if (!pv || !ps) die("out of memory");
  ema_ctx *ctx = NULL;
  check(ema_create(&ctx, DECAY), NULL, "ema_create");
  check(ema_set_threads(ctx, 1), ctx, "ema_set_threads");
  for (int i = 0; i < NT; i++) {
    pv[i] = (float *)xalloc(NE * 4);
    ps[i] = (float *)xalloc(NE * 4);
    fill_params(pv[i], EMA_F32, NE, (size_t)i);
    memcpy(ps[i], pv[i], NE * 4);
    char name[32];
    snprintf(name, sizeof name, "t%d", i);
    int64_t shp = NE;
    check(ema_track(ctx, name, pv[i], EMA_F32, 1, &shp), ctx, "ema_track");
  }
  const float om = (float)(1.0 - DECAY);
  for (int r = 0; r < 20; r++) {
    check(ema_apply(ctx), ctx, "ema_apply");
    for (int i = 0; i < NT; i++) loop_update(ps[i], pv[i], NE, om);
  }
  for (int r = 0; r < reps; r++) {
    double t0 = bench_now();
    check(ema_apply(ctx), ctx, "ema_apply");
    double t1 = bench_now();
    for (int i = 0; i < NT; i++) loop_update(ps[i], pv[i], NE, om);
    double t2 = bench_now();
    tl[r] = t1 - t0;
    tt[r] = t2 - t1;
  }
  stats sl = summarize(tl, reps), st = summarize(tt, reps);
  if (o->csv)
    printf("tiny_tensors,f32,1,%d,%d,%.3f,%.3f\n", NT, NE, sl.med * 1e6, st.med * 1e6);
  else
    printf(
        "\n%d tensors x %d floats, 1 thread: ema_apply %.1f us (%.1f ns/tensor), "
        "plain loop %.1f us (%.1f ns/tensor)\n",
        NT, NE, sl.med * 1e6, sl.med * 1e9 / NT, st.med * 1e6, st.med * 1e9 / NT);
  ema_free(ctx);
  for (int i = 0; i < NT; i++) {
    free(pv[i]);
    free(ps[i]);
  }
  free(pv);
  free(ps);

  /* the small layout itself, 1 thread: ema_apply against the plain loop
     over the same tensors (shadows in one block at 64-byte-aligned
     offsets, as libema keeps them) and against the triad of the same
     bytes. If the loop is as slow as libema, the layout (10,000 separate
     streams) is the limit; if it is faster, libema's bookkeeping is. */
  enum { NS = 10000, ES = 1000 };
  const size_t ES_PAD = (ES * 4 + ALIGN - 1) / ALIGN * ALIGN / 4;
  float **sv = (float **)calloc(NS, sizeof *sv);
  float *sblock = (float *)xalloc((size_t)NS * ES_PAD * 4);
  float *tb = (float *)xalloc((size_t)NS * ES * 4), *tc = (float *)xalloc((size_t)NS * ES * 4);
  double *tp = (double *)malloc((size_t)reps * sizeof(double));
  if (!sv || !tp) die("out of memory");
  check(ema_create(&ctx, DECAY), NULL, "ema_create");
  check(ema_set_threads(ctx, 1), ctx, "ema_set_threads");
  for (int i = 0; i < NS; i++) {
    sv[i] = (float *)xalloc(ES * 4);
    fill_params(sv[i], EMA_F32, ES, (size_t)i * ES);
    memcpy(sblock + (size_t)i * ES_PAD, sv[i], ES * 4);
    char name[32];
    snprintf(name, sizeof name, "t%d", i);
    int64_t shp = ES;
    check(ema_track(ctx, name, sv[i], EMA_F32, 1, &shp), ctx, "ema_track");
  }
  for (size_t i = 0; i < (size_t)NS * ES; i++) {
    tb[i] = init_value(i);
    tc[i] = init_value(i) + 0.5f;
  }
  tpool pool;
  tpool_start(&pool, 1);
  triad_job job = {tb, tc, NULL, (size_t)NS * ES};
  const int sreps = 31;
  for (int r = -3; r < sreps; r++) {
    double t0 = bench_now();
    check(ema_apply(ctx), ctx, "ema_apply");
    double t1 = bench_now();
    for (int i = 0; i < NS; i++) loop_update(sblock + (size_t)i * ES_PAD, sv[i], ES, om);
    double t2 = bench_now();
    tpool_run(&pool, &job);
    double t3 = bench_now();
    if (r >= 0) {
      tl[r] = t1 - t0;
      tt[r] = t2 - t1;
      tp[r] = t3 - t2;
    }
  }
  tpool_stop(&pool);
  sl = summarize(tl, sreps);
  st = summarize(tt, sreps);
  stats sp = summarize(tp, sreps);
  double by = 12.0 * NS * ES * 1e-9;
  if (o->csv)
    printf("small_layout_loop,f32,1,%d,%d,%.3f,%.3f,%.3f\n", NS, ES, sl.med * 1e3, st.med * 1e3, sp.med * 1e3);
  else
    printf(
        "%d tensors x %d floats, 1 thread (median of %d): ema_apply %.2f ms (%.1f GB/s), "
        "plain loop over the same tensors %.2f ms (%.1f GB/s), triad %.2f ms (%.1f GB/s)\n",
        NS, ES, sreps, sl.med * 1e3, by / sl.med, st.med * 1e3, by / st.med, sp.med * 1e3, by / sp.med);
  ema_free(ctx);
  for (int i = 0; i < NS; i++) free(sv[i]);
  free(sv);
  free(sblock);
  free(tb);
  free(tc);
  free(tp);
  free(tl);
  free(tt);
}

/* ------------------------------------------------------------------------ */
/* Command line                                                               */
/* ------------------------------------------------------------------------ */

static void usage(FILE *f) {
  fprintf(f,
          "usage: bench_apply [options]\n"
          "  --layouts L,...  flat,small,resnet50,gpt2 (default: all)\n"
          "  --threads N,...  thread counts (default: 1,2)\n"
          "  --dtypes D,...   f32,bf16 (default: both; bf16 = bf16 params, f32 shadows)\n"
          "  --reps N         timed repetitions, median reported (default 15; --quick 3)\n"
          "  --warmup N       untimed repetitions first (default 2)\n"
          "  --quick          every tensor shrunk (same count), for a smoke test\n"
          "  --overhead       also time fixed costs: pool fork/join, per-tensor bookkeeping\n"
          "  --csv            CSV instead of the table\n");
}

/* "--opt=value" or "--opt value" */
static const char *opt_value(int argc, char **argv, int *i, const char *opt) {
  size_t k = strlen(opt);
  if (strncmp(argv[*i], opt, k) != 0) return NULL;
  if (argv[*i][k] == '=') return argv[*i] + k + 1;
  if (argv[*i][k] == '\0') {
    if (*i + 1 >= argc) {
      fprintf(stderr, "bench_apply: %s needs a value\n", opt);
      exit(2);
    }
    return argv[++*i];
  }
  return NULL;
}

static int parse_int(const char *s, int lo, int hi, const char *what) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || (*end && *end != ',') || v < lo || v > hi) {
    fprintf(stderr, "bench_apply: bad %s '%s' (%d..%d)\n", what, s, lo, hi);
    exit(2);
  }
  return (int)v;
}

static void parse_list(const char *s, void (*each)(options *, const char *, size_t), options *o) {
  while (*s) {
    const char *e = strchr(s, ',');
    size_t len = e ? (size_t)(e - s) : strlen(s);
    if (len) each(o, s, len);
    s += len;
    if (*s == ',') s++;
  }
}

static void add_layout(options *o, const char *s, size_t len) {
  for (size_t i = 0; i < NLAYOUTS; i++) {
    if (strlen(layout_defs[i].name) == len && strncmp(layout_defs[i].name, s, len) == 0) {
      o->layouts[o->nlayouts++] = (int)i;
      return;
    }
  }
  fprintf(stderr, "bench_apply: unknown layout '%.*s'\n", (int)len, s);
  exit(2);
}

static void add_threads(options *o, const char *s, size_t len) {
  (void)len;
  if (o->nthreads >= 16) die("too many thread counts");
  o->threads[o->nthreads++] = parse_int(s, 1, MAX_THREADS, "thread count");
}

static void add_dtype(options *o, const char *s, size_t len) {
  if (o->ndtypes >= 2) die("too many dtypes");
  if (len == 3 && strncmp(s, "f32", 3) == 0)
    o->dtypes[o->ndtypes++] = EMA_F32;
  else if (len == 4 && strncmp(s, "bf16", 4) == 0)
    o->dtypes[o->ndtypes++] = EMA_BF16;
  else {
    fprintf(stderr, "bench_apply: unknown dtype '%.*s'\n", (int)len, s);
    exit(2);
  }
}

int main(int argc, char **argv) {
  options o;
  memset(&o, 0, sizeof o);
  o.reps = -1;
  o.warmup = 2;
  for (int i = 1; i < argc; i++) {
    const char *v;
    if ((v = opt_value(argc, argv, &i, "--layouts"))) {
      o.nlayouts = 0;
      parse_list(v, add_layout, &o);
    } else if ((v = opt_value(argc, argv, &i, "--threads"))) {
      o.nthreads = 0;
      parse_list(v, add_threads, &o);
    } else if ((v = opt_value(argc, argv, &i, "--dtypes"))) {
      o.ndtypes = 0;
      parse_list(v, add_dtype, &o);
    } else if ((v = opt_value(argc, argv, &i, "--reps"))) {
      o.reps = parse_int(v, 1, 100000, "--reps");
    } else if ((v = opt_value(argc, argv, &i, "--warmup"))) {
      o.warmup = parse_int(v, 0, 100000, "--warmup");
    } else if (strcmp(argv[i], "--quick") == 0) {
      o.quick = 1;
    } else if (strcmp(argv[i], "--overhead") == 0) {
      o.overhead = 1;
    } else if (strcmp(argv[i], "--csv") == 0) {
      o.csv = 1;
    } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 0;
    } else {
      fprintf(stderr, "bench_apply: unknown option '%s'\n", argv[i]);
      usage(stderr);
      return 2;
    }
  }
  if (o.nlayouts == 0)
    for (size_t i = 0; i < NLAYOUTS; i++) o.layouts[o.nlayouts++] = (int)i;
  if (o.nthreads == 0) {
    o.threads[o.nthreads++] = 1;
    o.threads[o.nthreads++] = 2;
  }
  if (o.ndtypes == 0) {
    o.dtypes[o.ndtypes++] = EMA_F32;
    o.dtypes[o.ndtypes++] = EMA_BF16;
  }
  if (o.reps < 0) o.reps = o.quick ? 3 : 15;

  /* every layout's totals are checked, whichever ones run */
  for (size_t i = 0; i < NLAYOUTS; i++) {
    layout l = make_layout(&layout_defs[i], 0);
    free(l.shapes);
  }

  ema_ctx *probe = NULL;
  check(ema_create(&probe, DECAY), NULL, "ema_create");
  int default_threads = ema_threads(probe);
  ema_free(probe);
  const char *forced = getenv("EMA_ISA");
  if (o.csv) {
    printf(
        "# libema %s isa=%s EMA_ISA=%s online_cpus=%ld default_threads=%d reps=%d%s "
        "loadavg=%s\n",
        ema_version_string(), ema_isa(), forced ? forced : "", sysconf(_SC_NPROCESSORS_ONLN), default_threads, o.reps,
        o.quick ? " quick" : "", loadavg());
    printf(
        "layout,dtype,threads,params,bytes,libema_gbs,triad_gbs,ratio,best_ratio,"
        "triad_f32_gbs,ratio_f32,best_ratio_f32,libema_ms_min,libema_ms_med,libema_ms_max,triad_ms_min,triad_ms_med,"
        "triad_ms_max\n");
  } else {
    printf(
        "libema %s, kernels: %s%s%s%s, online CPUs: %ld, default threads: %d, "
        "load average: %s\n",
        ema_version_string(), ema_isa(), forced ? " (EMA_ISA=" : "", forced ? forced : "", forced ? ")" : "",
        sysconf(_SC_NPROCESSORS_ONLN), default_threads, loadavg());
    printf(
        "median of %d reps after %d warm-up%s; GB/s = 1e9 bytes/s, 12 B/param f32, "
        "10 B/param bf16>f32\n",
        o.reps, o.warmup, o.quick ? "; QUICK sizes (smoke test, not a measurement)" : "");
    printf(
        "triad: b=x*b+y*c in place, same bytes, same threads (bf16 rows: c is bf16); "
        "tri-f32: plain f32 triad of the same bytes\n\n");
    printf("%-9s %-9s %3s %11s %10s %6s %6s %8s %6s %9s %7s\n", "layout", "dtype", "thr", "libema GB/s", "triad GB/s",
           "ratio", "best", "tri-f32", "ratio", "apply ms", "spread");
  }
  for (int li = 0; li < o.nlayouts; li++) {
    layout l = make_layout(&layout_defs[o.layouts[li]], o.quick);
    for (int di = 0; di < o.ndtypes; di++) bench_one(&o, &l, (ema_dtype)o.dtypes[di]);
    free(l.shapes);
  }
  if (o.overhead) bench_overhead(&o);
  if (!o.csv)
    printf(
        "\nGB/s from median times; ratio = median of per-repetition libema/triad speed "
        "ratios (run back to back);\nbest = fastest triad time / fastest libema time; "
        "spread = (max - min) / median of the libema times;\nload average at the end: %s\n",
        loadavg());
  return 0;
}
