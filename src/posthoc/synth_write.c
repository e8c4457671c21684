/*
 * synth_write.c: the writers of ema_posthoc_synthesize. Every output holds
 * the same tensors, so ema_file_write_stream asks each writer for the same
 * chunks in the same order; the writers (one per target, a thread for each
 * beyond the first) meet once per chunk, and the last to arrive reads that
 * window of every snapshot once and combines it into every output. A writer
 * asking for another chunk than the others (never seen; it would take a
 * change in ema_file_write_stream) is still served correctly, on its own.
 */
#include "core/internal.h"
#include "posthoc/synth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Combine chunk (k, off, len) into every target of mask (those waiting with
   that request). Runs under the mutex, while the other writers wait. */
static ema_status combine(sy_job *job, const int *mask, size_t k, uint64_t off, size_t len) {
  const ema_file_entry *e = &job->entries[k];
  size_t esz = ema_dtype_size(e->dtype), m = len / esz;
  char nm[300];
  ema_status st = EMA_OK;
  if (!ema__is_float_dtype(e->dtype)) { /* integers: copied from the latest snapshot each target uses */
    for (size_t j = 0; j < job->nt && st == EMA_OK; j++) {
      if (!mask[j]) continue;
      const sy_snap *s = &job->snaps[job->tg[j].latest];
      st = ema_file_read(s->f, e->name, off, job->tg[j].dst, len);
      if (st != EMA_OK)
        snprintf(job->fail_msg, sizeof job->fail_msg, "%s: could not read '%s': %s", s->path,
                 ema__sy_escape(e->name, nm, sizeof nm), ema_file_last_error(s->f));
    }
    return st;
  }
  for (size_t sub = 0; sub < m && st == EMA_OK; sub += SY_SUB) {
    size_t c = m - sub < SY_SUB ? m - sub : SY_SUB;
    for (size_t j = 0; j < job->nt; j++)
      if (mask[j]) memset(job->tg[j].acc, 0, c * sizeof(double));
    for (size_t i = 0; i < job->n && st == EMA_OK; i++) {
      int need = 0;
      for (size_t j = 0; j < job->nt; j++) need |= mask[j] && job->tg[j].coef[i] != 0;
      if (!need) continue;
      uint64_t at = off + (uint64_t)(sub * esz);
      st = ema_file_read(job->snaps[i].f, e->name, at, job->window, c * esz);
      if (st != EMA_OK) {
        snprintf(job->fail_msg, sizeof job->fail_msg, "%s: could not read '%s' at byte %llu of the tensor: %s",
                 job->snaps[i].path, ema__sy_escape(e->name, nm, sizeof nm), (unsigned long long)at,
                 ema_file_last_error(job->snaps[i].f));
        break;
      }
      ema_convert(job->dwin, EMA_F64, job->window, e->dtype, c);
      for (size_t j = 0; j < job->nt; j++) {
        double w = job->tg[j].coef[i], *acc = job->tg[j].acc;
        if (!mask[j] || w == 0) continue;
        for (size_t x = 0; x < c; x++) acc[x] += w * job->dwin[x];
      }
    }
    for (size_t j = 0; j < job->nt && st == EMA_OK; j++)
      if (mask[j]) ema_convert((unsigned char *)job->tg[j].dst + sub * esz, e->dtype, job->tg[j].acc, EMA_F64, c);
  }
  return st;
}

/* One round: serve every waiting writer, grouped by request; wake them. */
static void run_round(sy_job *job) {
  int mask[EMA_POSTHOC_MAX_TARGETS], done[EMA_POSTHOC_MAX_TARGETS] = {0};
  for (size_t j = 0; j < job->nt; j++) {
    sy_target *a = &job->tg[j];
    if (!a->waiting || done[j]) continue;
    for (size_t i = 0; i < job->nt; i++) {
      sy_target *b = &job->tg[i];
      mask[i] = !done[i] && b->waiting && b->k == a->k && b->off == a->off && b->len == a->len;
    }
    ema_status st = job->failed != EMA_OK ? job->failed : combine(job, mask, a->k, a->off, a->len);
    if (st != EMA_OK && job->failed == EMA_OK) job->failed = st;
    for (size_t i = 0; i < job->nt; i++)
      if (mask[i]) {
        job->tg[i].st = st;
        done[i] = 1;
      }
  }
  for (size_t j = 0; j < job->nt; j++) job->tg[j].waiting = 0;
  job->arrived = 0;
  job->generation++;
  pthread_cond_broadcast(&job->cv);
}

/* The producer of each writer: wait for the round, then return its result. */
static ema_status produce(void *user, size_t k, uint64_t off, void *dst, size_t len, char *err, size_t errcap) {
  sy_target *me = (sy_target *)user;
  sy_job *job = me->job;
  pthread_mutex_lock(&job->mu);
  me->k = k;
  me->off = off;
  me->len = len;
  me->dst = dst;
  me->st = EMA_OK;
  me->waiting = 1;
  if (++job->arrived == job->active) {
    run_round(job);
  } else {
    uint64_t g = job->generation;
    while (job->generation == g) pthread_cond_wait(&job->cv, &job->mu);
  }
  ema_status st = me->st;
  if (st != EMA_OK && err && errcap) snprintf(err, errcap, "%s", job->fail_msg);
  pthread_mutex_unlock(&job->mu);
  return st;
}

/* A writer leaves: the others no longer wait for it; its failure stops them. */
static void writer_done(sy_target *me) {
  sy_job *job = me->job;
  pthread_mutex_lock(&job->mu);
  if (me->wst != EMA_OK && job->failed == EMA_OK) {
    job->failed = me->wst;
    snprintf(job->fail_msg, sizeof job->fail_msg, "%s", me->werr);
  }
  job->active--;
  if (job->arrived > 0 && job->arrived == job->active) run_round(job);
  pthread_mutex_unlock(&job->mu);
}

static void write_one(sy_target *me) {
  sy_job *job = me->job;
  size_t j = (size_t)(me - job->tg);
  me->wst = ema_file_write_stream(me->in->output, job->entries, job->ne, job->meta + 2 * SY_META * j, SY_META, produce,
                                  me, me->werr, sizeof me->werr);
  writer_done(me);
}

static void *writer_thread(void *arg) {
  write_one((sy_target *)arg);
  return NULL;
}

/* Shortest "%.*g" text that reads back as v exactly ("nan" for NaN). */
static void fmt_double(char *buf, size_t cap, double v) {
  if (isnan(v)) {
    snprintf(buf, cap, "nan");
    return;
  }
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(buf, cap, "%.*g", prec, v);
    if (strtod(buf, NULL) == v) return;
  }
}

/* "[a, b, ...]" of the snapshots' steps (which 0), exponents (1) or the
   target's coefficients (2), on the heap. */
static char *number_list(const sy_job *job, const sy_target *tg, int which) {
  size_t cap = 32 * job->n + 8, len = 1;
  char *buf = (char *)malloc(cap);
  if (!buf) return NULL;
  buf[0] = '[';
  for (size_t i = 0; i < job->n; i++) {
    char num[40];
    if (which == 0)
      snprintf(num, sizeof num, "%lld", (long long)job->snaps[i].t);
    else
      fmt_double(num, sizeof num, which == 1 ? job->snaps[i].gamma : tg->coef[i]);
    len += (size_t)snprintf(buf + len, cap - len, "%s%s", i ? ", " : "", num);
  }
  snprintf(buf + len, cap - len, "]");
  return buf;
}

/* The metadata of target j: 2 * SY_META strings, the values on the heap. */
static int make_meta(sy_job *job, size_t j) {
  static const char *const keys[SY_META] = {"format",
                                            "ema.sigma_rel",
                                            "ema.gamma",
                                            "ema.t",
                                            "ema.posthoc.coefficients",
                                            "ema.posthoc.snapshot_t",
                                            "ema.posthoc.snapshot_gamma",
                                            "ema.posthoc.residual",
                                            "ema.posthoc.cond"};
  const sy_target *tg = &job->tg[j];
  char **v = job->meta_heap + SY_META * j;
  double sigma = tg->in->sigma_rel;
  if (sigma == 0 && ema_power_sigma_rel(tg->gamma, &sigma) != EMA_OK) sigma = NAN;
  double nums[4] = {sigma, tg->gamma, 0, tg->info.residual};
  for (int i = 0; i < SY_META; i++) {
    v[i] = i >= 4 && i <= 6 ? number_list(job, tg, i == 4 ? 2 : i - 5) : (char *)malloc(40);
    if (!v[i]) return 0;
    if (i == 0) snprintf(v[i], 40, "pt");
    if (i == 1 || i == 2 || i == 7) fmt_double(v[i], 40, nums[i == 7 ? 3 : i - 1]);
    if (i == 3) snprintf(v[i], 40, "%lld", (long long)tg->step);
    if (i == 8) fmt_double(v[i], 40, tg->info.cond);
    job->meta[2 * SY_META * j + 2 * (size_t)i] = keys[i];
    job->meta[2 * SY_META * j + 2 * (size_t)i + 1] = v[i];
  }
  return 1;
}

/* Open the snapshots some target uses (a coefficient or integer tensors). */
static ema_status open_used(sy_job *job, char *err, size_t errcap) {
  for (size_t i = 0; i < job->n; i++) {
    int used = 0;
    for (size_t j = 0; j < job->nt; j++) used |= job->tg[j].coef[i] != 0 || job->tg[j].latest == i;
    if (!used) continue;
    ema_status st = ema_file_open(&job->snaps[i].f, job->snaps[i].path, err, errcap);
    if (st != EMA_OK) return st;
  }
  return EMA_OK;
}

/* Start the writers (targets 1.. in threads, target 0 here) and wait. */
static ema_status run_writers(sy_job *job) {
  job->active = job->nt;
  for (size_t j = 1; j < job->nt; j++) {
    if (pthread_create(&job->tg[j].thread, NULL, writer_thread, &job->tg[j]) != 0) {
      pthread_mutex_lock(&job->mu);
      if (job->failed == EMA_OK) {
        job->failed = EMA_E_NOMEM;
        snprintf(job->fail_msg, sizeof job->fail_msg, "ema_posthoc_synthesize: could not start a writer thread");
      }
      job->active -= job->nt - j; /* these never arrive */
      if (job->arrived > 0 && job->arrived == job->active) run_round(job);
      pthread_mutex_unlock(&job->mu);
      break;
    }
    job->tg[j].started = 1;
  }
  write_one(&job->tg[0]);
  for (size_t j = 1; j < job->nt; j++)
    if (job->tg[j].started) pthread_join(job->tg[j].thread, NULL);
  return job->failed;
}

ema_status ema__sy_write_all(sy_job *job, char *err, size_t errcap) {
  ema_status st = open_used(job, err, errcap);
  if (st != EMA_OK) return st;
  job->window = (unsigned char *)malloc(SY_SUB * sizeof(double));
  job->dwin = (double *)malloc(SY_SUB * sizeof(double));
  job->meta = (const char **)calloc(2 * SY_META * job->nt, sizeof *job->meta);
  job->meta_heap = (char **)calloc(SY_META * job->nt, sizeof *job->meta_heap);
  int ok = job->window && job->dwin && job->meta && job->meta_heap;
  for (size_t j = 0; ok && j < job->nt; j++) ok = make_meta(job, j);
  if (!ok) {
    snprintf(err, errcap, "ema_posthoc_synthesize: out of memory");
    st = EMA_E_NOMEM;
  } else if (pthread_mutex_init(&job->mu, NULL) != 0 || pthread_cond_init(&job->cv, NULL) != 0) {
    snprintf(err, errcap, "ema_posthoc_synthesize: could not create a mutex");
    st = EMA_E_NOMEM;
  } else {
    st = run_writers(job);
    if (st != EMA_OK && err && errcap) snprintf(err, errcap, "%s", job->fail_msg);
    pthread_cond_destroy(&job->cv);
    pthread_mutex_destroy(&job->mu);
  }
  if (job->meta_heap)
    for (size_t i = 0; i < SY_META * job->nt; i++) free(job->meta_heap[i]);
  free(job->meta_heap);
  free((void *)job->meta);
  free(job->window);
  free(job->dwin);
  return st;
}
