/*
 * bench_ratio: ema_apply against an in-place read-modify-write loop over the
 * same bytes, in one process, optionally next to a host OpenMP loop.
 *
 * For each layout (default: gpt2 = GPT-2 small's 148 parameter tensors, and
 * small = 10,000 tensors of 1,000 floats; f32 parameters, f32 shadows) it
 * times, alternately, rep after rep:
 *   ref: s = s - (s - v) * om over a contiguous shadow arena of the same
 *        size against the same parameter tensors, with the loop of
 *        common/rmw_native.c (-O3 -march=native), split by bytes among
 *        --threads threads (the caller + pthreads woken by a condition
 *        variable; 16-element aligned split points);
 *   ema: ema_apply on a context with ema_set_threads(--threads) that tracks
 *        the same parameter tensors (its own shadow arena).
 * Both move 12 bytes per parameter. They run back to back, in alternating
 * order (the second finds part of the parameters in the last-level cache).
 * The ratio is ref time / ema time per rep (1.0: libema as fast as the
 * loop); the median over the reps is reported, with the median times.
 *
 * --neighbor omp: the reference loop is a host OpenMP loop in this process
 * (#pragma omp parallel over the same split, --threads threads, libgomp's
 * default wait policy unless OMP_WAIT_POLICY says otherwise), so when
 * ema_apply starts, right after it, the OpenMP team's idle threads are
 * still spinning (as a PyTorch trainer's are after each of its ops) and
 * libema's workers compete with them for the CPUs.
 *
 * --neighbor omp-helper: the reference stays the pthread loop, and a helper
 * process (forked first, killed at the end) loops forever over a short
 * compute-bound OpenMP parallel region and a short serial part, with the
 * same default wait policy; both measured loops compete with it.
 *
 * --neighbor hog: a helper process that spins on the last CPU only (as a
 * busy thread of another program would): one of the measured threads
 * shares that CPU. With a static split, the run waits for the part stuck
 * there; with libema's dynamic claiming, the other threads take its work.
 *
 * libema picks its kernels at run time; EMA_ISA=avx2|avx512|ref forces them
 * (ema_isa() is printed). Speed claims live in bench/RESULTS.md.
 */
#define _GNU_SOURCE 1 /* sched_setaffinity */

#include <ema/ema.h>
#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/timing.h"

#include "common/layouts.h"
#include "common/rmw_native.h"

#define DECAY 0.999
#define OM ((float)(1.0 - DECAY))
#define MAXT 16

static void die(const char *what) {
  fprintf(stderr, "bench_ratio: %s\n", what);
  exit(1);
}

static double median(const double *v, int n) {
  double *t = (double *)malloc((size_t)n * sizeof *t);
  if (!t) die("out of memory");
  memcpy(t, v, (size_t)n * sizeof *t);
  qsort(t, (size_t)n, sizeof *t, bench_cmp_double);
  double m = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
  free(t);
  return m;
}

/* ---- the model and the reference loop ------------------------------------- */

typedef struct model {
  size_t count, total;
  float **param;
  size_t *numel, *off; /* off: start of each tensor in the reference arena */
  float *arena;
} model;

typedef struct ref_pool {
  const model *m;
  int nthreads;
  pthread_t th[MAXT];
  pthread_mutex_t mu;
  pthread_cond_t wake, done;
  unsigned long gen;
  int pending, quit;
} ref_pool;

/* Part p of n: the elements [total*p/n, total*(p+1)/n), 16-aligned. */
static size_t split_at(size_t total, int p, int n) {
  if (p >= n) return total;
  size_t e = total / (size_t)n * (size_t)p + total % (size_t)n * (size_t)p / (size_t)n;
  return e / 16 * 16;
}

static void ref_part(const model *m, int p, int n) {
  size_t b0 = split_at(m->total, p, n), b1 = split_at(m->total, p + 1, n);
  for (size_t i = 0; i < m->count; i++) {
    size_t t0 = m->off[i], t1 = t0 + m->numel[i];
    if (t1 <= b0) continue;
    if (t0 >= b1) break;
    size_t e0 = b0 > t0 ? b0 - t0 : 0, e1 = (b1 < t1 ? b1 : t1) - t0;
    rmw_native_f32(m->arena + t0 + e0, m->param[i] + e0, e1 - e0, OM);
  }
}

typedef struct worker_arg {
  ref_pool *pool;
  int part;
} worker_arg;

static void *ref_worker(void *arg) {
  worker_arg *w = (worker_arg *)arg;
  ref_pool *p = w->pool;
  unsigned long seen = 0;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (!p->quit && p->gen == seen) pthread_cond_wait(&p->wake, &p->mu);
    if (p->quit) break;
    seen = p->gen;
    pthread_mutex_unlock(&p->mu);
    ref_part(p->m, w->part, p->nthreads);
    pthread_mutex_lock(&p->mu);
    if (--p->pending == 0) pthread_cond_signal(&p->done);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

static void ref_run(ref_pool *p) {
  pthread_mutex_lock(&p->mu);
  p->pending = p->nthreads - 1;
  p->gen++;
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->mu);
  ref_part(p->m, 0, p->nthreads);
  pthread_mutex_lock(&p->mu);
  while (p->pending > 0) pthread_cond_wait(&p->done, &p->mu);
  pthread_mutex_unlock(&p->mu);
}

/* The reference as a host OpenMP loop: the same split, an OpenMP team. */
static void ref_run_omp(const model *m, int threads) {
#pragma omp parallel num_threads(threads)
  ref_part(m, omp_get_thread_num(), omp_get_num_threads());
}

static void model_build(model *m, const layout *l) {
  m->count = l->count;
  m->param = (float **)calloc(m->count, sizeof *m->param);
  m->numel = (size_t *)calloc(m->count, sizeof *m->numel);
  m->off = (size_t *)calloc(m->count, sizeof *m->off);
  if (!m->param || !m->numel || !m->off) die("out of memory");
  m->total = 0;
  for (size_t i = 0; i < m->count; i++) {
    size_t n = shape_numel(&l->shapes[i]);
    m->numel[i] = n;
    m->off[i] = m->total;
    m->total += n;
    m->param[i] = (float *)aligned_alloc(64, (n * 4 + 63) / 64 * 64);
    if (!m->param[i]) die("out of memory");
    for (size_t k = 0; k < n; k++) m->param[i][k] = 1.0f + (float)((k + i) % 1021) * (1.0f / 1024.0f);
  }
  m->arena = (float *)aligned_alloc(64, (m->total * 4 + 63) / 64 * 64);
  if (!m->arena) die("out of memory");
  for (size_t i = 0; i < m->count; i++) memcpy(m->arena + m->off[i], m->param[i], m->numel[i] * 4);
}

static void model_free(model *m) {
  for (size_t i = 0; i < m->count; i++) free(m->param[i]);
  free(m->param);
  free(m->numel);
  free(m->off);
  free(m->arena);
}

/* ---- the host OpenMP loop (a helper process) -------------------------------- */

static void omp_host_loop(void) {
  static float a[1 << 14];
  for (int i = 0; i < (1 << 14); i++) a[i] = (float)i * 1e-4f;
  volatile float sink = 0.0f;
  for (unsigned long it = 0;; it++) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < (1 << 14); i++) {
      float x = a[i];
      for (int k = 0; k < 32; k++) x = x * 0.999f + 0.001f;
      a[i] = x;
    }
    for (int k = 0; k < 20000; k++) sink = sink + a[k & 1023]; /* serial part: the team spins */
    if ((it & 255) == 0 && getppid() == 1) _exit(0);
  }
}

static void hog_loop(void) {
  cpu_set_t set;
  CPU_ZERO(&set);
  long last = sysconf(_SC_NPROCESSORS_ONLN) - 1;
  CPU_SET((size_t)(last > 0 ? last : 0), &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) _exit(1);
  for (volatile unsigned long it = 0;; it++)
    if ((it & 0xFFFFFF) == 0 && getppid() == 1) _exit(0);
}

static pid_t start_neighbor(int hog) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) die("fork failed");
  if (pid == 0) {
    if (hog) hog_loop();
    omp_host_loop();
    _exit(0);
  }
  struct timespec ts = {0, 300000000L}; /* let it start its team */
  nanosleep(&ts, NULL);
  return pid;
}

/* ---- one layout --------------------------------------------------------------- */

static void bench_layout(const layout *l, int threads, int reps, const char *neighbor) {
  const int omp_ref = strcmp(neighbor, "omp") == 0;
  model m;
  model_build(&m, l);
  ref_pool p;
  memset(&p, 0, sizeof p);
  p.m = &m;
  p.nthreads = threads;
  pthread_mutex_init(&p.mu, NULL);
  pthread_cond_init(&p.wake, NULL);
  pthread_cond_init(&p.done, NULL);
  worker_arg wa[MAXT];
  for (int i = 1; i < threads; i++) {
    wa[i].pool = &p;
    wa[i].part = i;
    if (pthread_create(&p.th[i], NULL, ref_worker, &wa[i]) != 0) die("pthread_create failed");
  }
  ema_ctx *ctx = NULL;
  if (ema_create(&ctx, DECAY) != EMA_OK) die("ema_create failed");
  if (ema_set_threads(ctx, threads) != EMA_OK) die("ema_set_threads failed");
  char name[32];
  for (size_t i = 0; i < m.count; i++) {
    int64_t n = (int64_t)m.numel[i];
    snprintf(name, sizeof name, "p%zu", i);
    if (ema_track(ctx, name, m.param[i], EMA_F32, 1, &n) != EMA_OK) die(ema_last_error(ctx));
  }
  double *tr = (double *)calloc((size_t)reps, sizeof *tr), *te = (double *)calloc((size_t)reps, sizeof *te);
  double *ratio = (double *)calloc((size_t)reps, sizeof *ratio);
  if (!tr || !te || !ratio) die("out of memory");
  for (int r = -2; r < reps; r++) { /* two warm-up reps */
    /* the order alternates: whichever runs second finds the other's
       parameters partly in the last-level cache */
    double t_ref = 0.0, t_ema = 0.0;
    for (int k = 0; k < 2; k++) {
      double t0 = bench_now();
      if ((k ^ r) & 1) {
        if (ema_apply(ctx) != EMA_OK) die(ema_last_error(ctx));
        t_ema = bench_now() - t0;
      } else {
        if (omp_ref)
          ref_run_omp(&m, threads);
        else
          ref_run(&p);
        t_ref = bench_now() - t0;
      }
    }
    if (r < 0) continue;
    tr[r] = t_ref;
    te[r] = t_ema;
    ratio[r] = t_ref / t_ema;
  }
  double bytes = 12.0 * (double)m.total;
  double mr = median(tr, reps), me = median(te, reps);
  printf("%-6s %-10s %-6s %7d %9zu %8.2f %8.2f %7.1f %7.1f %6.3f\n", l->name, neighbor, ema_isa(), threads, m.count,
         mr * 1e3, me * 1e3, bytes / mr * 1e-9, bytes / me * 1e-9, median(ratio, reps));
  fflush(stdout);
  free(tr);
  free(te);
  free(ratio);
  ema_free(ctx);
  pthread_mutex_lock(&p.mu);
  p.quit = 1;
  pthread_cond_broadcast(&p.wake);
  pthread_mutex_unlock(&p.mu);
  for (int i = 1; i < threads; i++) pthread_join(p.th[i], NULL);
  model_free(&m);
}

static void usage(void) {
  fprintf(stderr,
          "usage: bench_ratio [--layout gpt2|small|resnet50|flat]... [--threads N] [--reps N]\n"
          "                   [--neighbor none|omp|omp-helper|hog] [--quick]\n");
  exit(2);
}

int main(int argc, char **argv) {
  const layout_def *defs[NLAYOUTS];
  int nl = 0, threads = 2, reps = 15, quick = 0;
  const char *neighbor = "none";
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--layout") == 0 && i + 1 < argc && nl < NLAYOUTS) {
      if (!(defs[nl++] = find_layout(argv[++i]))) usage();
    } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
      threads = atoi(argv[++i]);
    } else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
      reps = atoi(argv[++i]);
    } else if (strcmp(argv[i], "--neighbor") == 0 && i + 1 < argc) {
      neighbor = argv[++i];
    } else if (strcmp(argv[i], "--quick") == 0) {
      quick = 1;
    } else {
      usage();
    }
  }
  if (threads < 1 || threads > MAXT || reps < 1) usage();
  static const char *const neighbors[] = {"none", "omp", "omp-helper", "hog"};
  int known = 0;
  for (size_t i = 0; i < sizeof neighbors / sizeof neighbors[0]; i++) known |= strcmp(neighbor, neighbors[i]) == 0;
  if (!known) usage();
  if (nl == 0) {
    defs[nl++] = find_layout("gpt2");
    defs[nl++] = find_layout("small");
  }
  const char *wp = getenv("OMP_WAIT_POLICY");
  printf("# bench_ratio: libema %s, kernels %s, %d threads, %d reps (median), neighbor %s (OMP_WAIT_POLICY=%s)\n",
         ema_version_string(), ema_isa(), threads, reps, neighbor, wp ? wp : "unset: libgomp default");
  printf("%-6s %-10s %-6s %7s %9s %8s %8s %7s %7s %6s\n", "layout", "neighbor", "isa", "threads", "tensors", "ref_ms",
         "ema_ms", "ref_GBs", "ema_GBs", "ratio");
  pid_t helper = 0;
  if (strcmp(neighbor, "omp-helper") == 0 || strcmp(neighbor, "hog") == 0) helper = start_neighbor(neighbor[0] == 'h');
  for (int i = 0; i < nl; i++) {
    layout l = make_layout(defs[i], quick);
    bench_layout(&l, threads, quick ? 3 : reps, neighbor);
    free(l.shapes);
  }
  if (helper > 0) {
    kill(helper, SIGKILL);
    waitpid(helper, NULL, 0);
  }
  return 0;
}
