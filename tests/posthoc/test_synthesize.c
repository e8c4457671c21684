/*
 * ema_posthoc_synthesize (ema/posthoc.h): post-hoc synthesis from snapshot
 * files, on snapshots written here with ema_file_write: two power-function
 * tracks (sigma_rel 0.10 and 0.05) every 256 steps up to 2816, holding an
 * f32 tensor larger than one 1 MiB chunk, f64, f16 and bf16 tensors and an
 * integer step counter.
 *  - a target step that is no snapshot's step is refused (3000, after the
 *    last snapshot at 2816, which the tool used to write silently with a
 *    residual of 0.88; 1000, between snapshots), nothing written;
 *  - several targets in one call give files equal, byte for byte, to one
 *    target per call; each output's f64 tensor equals sum_i coef_i s_i
 *    accumulated in snapshot order; integers come from the latest snapshot
 *    each target uses; residual and condition number are reported;
 *  - a poor fit is refused at the default threshold and accepted when the
 *    threshold is raised;
 *  - argument errors (too many targets, reserved fields, an output given
 *    twice or equal to a snapshot, a missing snapshot, mismatched tensors)
 *    are refused with a message and nothing written.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "ema/ema.h"

enum { NBIG = 300000, NSMALL = 777, NSNAP = 11, STEP = 256 };
static char dir[128];
static char paths[2 * NSNAP][300];
static const char *snap_list[2 * NSNAP];
static const double GAMMAS[2] = {6.937203940079848, 16.97219860155451};

static double value(int track, int i, size_t k, int which) {
  double t = (double)(i + 1) / NSNAP;
  return sin(0.001 * (double)k * (which + 1) + t * 3.0) * (1.0 + 0.1 * track) + 0.01 * (double)which;
}

static void write_snapshot(int track, int i) {
  static float big[NBIG];
  static double f64[NSMALL];
  static uint16_t f16[NSMALL], bf16[NSMALL];
  static double tmp[NSMALL];
  int64_t step = (int64_t)(i + 1) * STEP;
  for (size_t k = 0; k < NBIG; k++) big[k] = (float)value(track, i, k, 0);
  for (size_t k = 0; k < NSMALL; k++) {
    f64[k] = value(track, i, k, 1);
    tmp[k] = value(track, i, k, 2);
  }
  ema_convert(f16, EMA_F16, tmp, EMA_F64, NSMALL);
  for (size_t k = 0; k < NSMALL; k++) tmp[k] = value(track, i, k, 3);
  ema_convert(bf16, EMA_BF16, tmp, EMA_F64, NSMALL);
  int64_t s_big[2] = {NBIG / 100, 100}, s_small[1] = {NSMALL};
  ema_file_entry e[5] = {{"big", EMA_F32, 2, s_big, big},
                         {"f64", EMA_F64, 1, s_small, f64},
                         {"f16", EMA_F16, 1, s_small, f16},
                         {"bf16", EMA_BF16, 1, s_small, bf16},
                         {"step", EMA_I64, 0, NULL, &step}};
  char t[32], g[40];
  snprintf(t, sizeof t, "%lld", (long long)step);
  snprintf(g, sizeof g, "%.17g", GAMMAS[track]);
  const char *meta[4] = {"ema.t", t, "ema.gamma", g};
  char err[512];
  CHECK_MSG(ema_file_write(paths[track * NSNAP + i], e, 5, meta, 2, err, sizeof err) == EMA_OK, "%s", err);
}

static char *out_path(const char *name) {
  static char buf[8][400];
  static int next;
  char *p = buf[next++ % 8];
  snprintf(p, 400, "%s/%s", dir, name);
  return p;
}

/* Two files hold the same bytes; *size gets the first one's size. */
static int same_bytes(const char *pa, const char *pb, size_t *size) {
  FILE *fa = fopen(pa, "rb"), *fb = fopen(pb, "rb");
  int same = fa && fb;
  *size = 0;
  while (same) {
    unsigned char ba[4096], bb[4096];
    size_t na = fread(ba, 1, sizeof ba, fa), nb = fread(bb, 1, sizeof bb, fb);
    same = na == nb && memcmp(ba, bb, na) == 0;
    *size += na;
    if (na < sizeof ba) break;
  }
  if (fa) fclose(fa);
  if (fb) fclose(fb);
  return same;
}

static int exists(const char *p) { return access(p, F_OK) == 0; }

static ema_status synth(ema_posthoc_target *t, size_t nt, const ema_posthoc_options *o, char *err, size_t cap) {
  return ema_posthoc_synthesize(snap_list, 2 * NSNAP, t, nt, o, err, cap);
}

/* 3000 (after the last snapshot) and 1000 (between two) are refused. */
static void test_step_refused(void) {
  char err[1024];
  ema_posthoc_target t;
  int64_t steps[2] = {3000, 1000};
  for (int k = 0; k < 2; k++) {
    memset(&t, 0, sizeof t);
    t.sigma_rel = 0.07;
    t.step = steps[k];
    t.output = out_path("refused.safetensors");
    CHECK(synth(&t, 1, NULL, err, sizeof err) == EMA_E_INVALID_ARG);
    CHECK_MSG(strstr(err, "no snapshot's step") || strstr(err, "after the last snapshot"), "%s", err);
    CHECK(!exists(t.output));
    CHECK(t.step_used == 0 && t.info.residual == 0); /* outputs untouched */
  }
  CHECK(strstr(err, "768") && strstr(err, "1024")); /* the nearest snapshots */
  /* the fit there really is poor: with no step check, a step of 2816 is fine */
  memset(&t, 0, sizeof t);
  t.sigma_rel = 0.07;
  t.step = 2816;
  t.output = out_path("at2816.safetensors");
  CHECK_MSG(synth(&t, 1, NULL, err, sizeof err) == EMA_OK, "%s", err);
  CHECK(t.info.residual < 0.05 && t.info.cond >= 1 && t.step_used == 2816);
}

/* The f64 output equals sum_i coef_i s_i in snapshot order; ints from the latest used. */
static void check_output(const ema_posthoc_target *t) {
  char err[512];
  ema_file *out = NULL;
  CHECK_MSG(ema_file_open(&out, t->output, err, sizeof err) == EMA_OK, "%s", err);
  if (!out) return;
  static double want[NSMALL], got[NSMALL], s[NSMALL];
  memset(want, 0, sizeof want);
  int64_t latest = 0;
  for (int i = 0; i < 2 * NSNAP; i++) {
    int64_t st = (int64_t)(i % NSNAP + 1) * STEP;
    if (st <= t->step_used && st > latest) latest = st;
    if (t->coef[i] == 0) continue;
    for (size_t k = 0; k < NSMALL; k++) s[k] = value(i / NSNAP, i % NSNAP, k, 1);
    for (size_t k = 0; k < NSMALL; k++) want[k] += t->coef[i] * s[k];
  }
  CHECK(ema_file_read(out, "f64", 0, got, sizeof got) == EMA_OK);
  CHECK(memcmp(got, want, sizeof got) == 0);
  int64_t step = 0;
  CHECK(ema_file_read(out, "step", 0, &step, sizeof step) == EMA_OK);
  CHECK_MSG(step == latest, "step %lld, want %lld", (long long)step, (long long)latest);
  const char *ms = ema_file_metadata(out, "ema.t");
  CHECK(ms && atoll(ms) == t->step_used);
  CHECK(ema_file_metadata(out, "ema.posthoc.residual") && ema_file_metadata(out, "ema.posthoc.cond"));
  ema_file_close(out);
}

/* Five targets in one call == five calls, byte for byte. */
static void test_one_pass_equals_one_at_a_time(void) {
  enum { NT = 5 };
  static double coef[NT][2 * NSNAP], coef1[2 * NSNAP];
  const double sig[NT] = {0.05, 0.07, 0.10, 0.13, 0.0};
  const int64_t step[NT] = {0, 2816, 0, 1280, 1536};
  char err[1024], name[64];
  ema_posthoc_target all[NT];
  memset(all, 0, sizeof all);
  for (int j = 0; j < NT; j++) {
    all[j].sigma_rel = sig[j];
    all[j].gamma = 9.5; /* used by the target whose sigma_rel is 0 */
    all[j].step = step[j];
    snprintf(name, sizeof name, "multi_%d.safetensors", j);
    all[j].output = strdup(out_path(name));
    all[j].coef = coef[j];
  }
  ema_posthoc_options o;
  ema_posthoc_options_init(&o);
  int64_t snap_t[2 * NSNAP];
  o.snapshot_t = snap_t;
  CHECK_MSG(synth(all, NT, &o, err, sizeof err) == EMA_OK, "%s", err);
  CHECK(snap_t[0] == STEP && snap_t[2 * NSNAP - 1] == NSNAP * STEP);
  for (int j = 0; j < NT; j++) {
    ema_posthoc_target one;
    memset(&one, 0, sizeof one);
    one.sigma_rel = sig[j];
    one.gamma = 9.5;
    one.step = step[j];
    snprintf(name, sizeof name, "single_%d.safetensors", j);
    one.output = out_path(name);
    one.coef = coef1;
    CHECK_MSG(synth(&one, 1, NULL, err, sizeof err) == EMA_OK, "%s", err);
    size_t size = 0;
    CHECK_MSG(same_bytes(all[j].output, one.output, &size) && size > 4 * NBIG, "target %d: %zu bytes", j, size);
    CHECK(one.info.residual == all[j].info.residual && one.info.cond == all[j].info.cond);
    CHECK(memcmp(coef1, coef[j], sizeof coef1) == 0);
    check_output(&all[j]);
    CHECK(all[j].step_used == (step[j] ? step[j] : NSNAP * STEP));
  }
  CHECK(fabs(all[2].coef[2 * 0 + NSNAP - 1] - 1.0) < 1e-9); /* 0.10 at the end: its own last snapshot */
  CHECK(all[2].info.residual < 1e-6);
  for (int j = 0; j < NT; j++) free((void *)all[j].output);
}

static void test_poor_fit(void) {
  char err[1024];
  ema_posthoc_target t;
  memset(&t, 0, sizeof t);
  t.sigma_rel = 0.28;
  t.output = out_path("wide.safetensors");
  CHECK(synth(&t, 1, NULL, err, sizeof err) == EMA_E_INVALID_ARG);
  CHECK_MSG(strstr(err, "poor") && strstr(err, "residual"), "%s", err);
  CHECK(!exists(t.output));
  ema_posthoc_options o;
  ema_posthoc_options_init(&o);
  o.max_residual = INFINITY;
  CHECK_MSG(synth(&t, 1, &o, err, sizeof err) == EMA_OK, "%s", err);
  CHECK(t.info.residual > 0.05 && exists(t.output));
  memset(&t, 0, sizeof t);
  t.sigma_rel = 0.07;
  t.output = out_path("strict.safetensors");
  o.max_residual = 1e-6;
  CHECK(synth(&t, 1, &o, err, sizeof err) == EMA_E_INVALID_ARG && !exists(t.output));
}

static void test_bad_arguments(void) {
  char err[1024];
  ema_posthoc_target t[EMA_POSTHOC_MAX_TARGETS + 1];
  memset(t, 0, sizeof t);
  for (int j = 0; j <= EMA_POSTHOC_MAX_TARGETS; j++) {
    t[j].sigma_rel = 0.07;
    t[j].output = out_path(j == 0 ? "a.safetensors" : "b.safetensors");
  }
  CHECK(synth(t, EMA_POSTHOC_MAX_TARGETS + 1, NULL, err, sizeof err) == EMA_E_INVALID_ARG);
  CHECK(synth(t, 0, NULL, err, sizeof err) == EMA_E_INVALID_ARG);
  t[1].output = t[0].output;
  CHECK(synth(t, 2, NULL, err, sizeof err) == EMA_E_INVALID_ARG && strstr(err, "two targets"));
  t[0].output = paths[3];
  CHECK(synth(t, 1, NULL, err, sizeof err) == EMA_E_INVALID_ARG && strstr(err, "also a snapshot"));
  t[0].output = out_path("a.safetensors");
  ema_posthoc_options o;
  ema_posthoc_options_init(&o);
  o.reserved[3] = 1;
  CHECK(synth(t, 1, &o, err, sizeof err) == EMA_E_INVALID_ARG && strstr(err, "reserved"));
  t[0].sigma_rel = 0.5;
  CHECK(synth(t, 1, NULL, err, sizeof err) == EMA_E_INVALID_ARG);
  t[0].sigma_rel = 0;
  t[0].gamma = -0.7;
  CHECK(synth(t, 1, NULL, err, sizeof err) == EMA_E_INVALID_ARG);
  t[0].sigma_rel = 0.07;
  CHECK(ema_posthoc_synthesize(snap_list, 1, t, 1, NULL, err, sizeof err) == EMA_E_INVALID_ARG);
  const char *missing[2] = {paths[0], "/nonexistent/x.safetensors"};
  CHECK(ema_posthoc_synthesize(missing, 2, t, 1, NULL, err, sizeof err) != EMA_OK && strstr(err, "nonexistent"));
  /* a snapshot with another tensor set, and one whose name holds a control byte */
  int64_t shape[1] = {3};
  float v[3] = {1, 2, 3};
  int64_t step = 256;
  ema_file_entry e[2] = {{"odd\x1b[2Jname", EMA_F32, 1, shape, v}, {"step", EMA_I64, 0, NULL, &step}};
  const char *meta[4] = {"ema.t", "256", "ema.gamma", "6.9"};
  char *odd = out_path("odd.safetensors");
  CHECK(ema_file_write(odd, e, 2, meta, 2, err, sizeof err) == EMA_OK);
  const char *mixed[2] = {odd, paths[1]};
  CHECK(ema_posthoc_synthesize(mixed, 2, t, 1, NULL, err, sizeof err) == EMA_E_FORMAT);
  CHECK_MSG(strstr(err, "odd\\x1B[2Jname") && !strchr(err, '\x1b'), "escaped: %s", err);
  CHECK(!exists(t[0].output));
}

int main(void) {
  snprintf(dir, sizeof dir, "/tmp/test_synthesize.%d", (int)getpid());
  char cmd[300];
  snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
  if (system(cmd) != 0) return 1;
  for (int tr = 0; tr < 2; tr++)
    for (int i = 0; i < NSNAP; i++) {
      snprintf(paths[tr * NSNAP + i], 300, "%s/s%d_%05d.safetensors", dir, tr, (i + 1) * STEP);
      snap_list[tr * NSNAP + i] = paths[tr * NSNAP + i];
      write_snapshot(tr, i);
    }
  test_step_refused();
  test_one_pass_equals_one_at_a_time();
  test_poor_fit();
  test_bad_arguments();
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) return 1;
  return check_report("test_synthesize");
}
