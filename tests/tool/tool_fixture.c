/*
 * tool_fixture.c: writes the files the `ema` tool's tests read, through the
 * public API only (include/ema/ema.h).
 *
 *   tool_fixture ckpt PATH [--debias]
 *       A libema checkpoint (ema_save) with one tensor of each float dtype
 *       (f32, f64, f16 and bf16 models; the half ones get float32 shadows),
 *       an int64 plain-state step, and averages that differ from the
 *       weights after a few updates. With --debias, zero_debias is on (the
 *       checkpoint then holds the ".../biased" and ".../local_step" tensors).
 *
 *   tool_fixture ckpt-bank PATH
 *       A checkpoint of a bank of three averages of one f32 tensor "w" [8]
 *       and an int64 "step": the context's own (decay 0.9), "slow"
 *       (constant 0.99) and "power" (power function, sigma_rel 0.10),
 *       updated with ema_update at steps 1..5.
 *
 *   tool_fixture many N PATH
 *       A libema-style checkpoint written with ema_file_write: N model
 *       tensors "layer.<i>.weight" f32 [2], each with its average
 *       "layer.<i>.weight/ExponentialMovingAverage" (2N tensors in all),
 *       for timing `ema inspect` on many tensors.
 *
 *   tool_fixture hostile DIR
 *       Files whose strings would fool a terminal if printed raw:
 *       DIR/evil.safetensors, a libema-style checkpoint whose tensor name
 *       holds ESC sequences, a newline and a C1 control (U+009B), with its
 *       average, and metadata "ema.decay" = "0.5\nema: all good" and a key
 *       with an OSC sequence; DIR/snap_ok.safetensors and
 *       DIR/snap_evil.safetensors, post-hoc snapshots, the second with
 *       ema.t = "12\x1b[2J\nema: ok".
 *
 *   tool_fixture bigsnaps DIR MB
 *       Three post-hoc snapshots of one f32 tensor "w" of MB mebibytes
 *       (DIR/big_a100, big_a200 with ema.gamma 6.94, big_b200 with 16.97),
 *       to check that synthesis streams: its memory stays far below the
 *       snapshots' size.
 *
 *   tool_fixture snapshots DIR
 *       Post-hoc EMA snapshots of a simulated training run of T_END steps:
 *       weights that converge with noise, tracked by power-function EMAs
 *       (updates with ema_power_decay, in double precision) of
 *       sigma_rel 0.05 ("a", metadata ema.sigma_rel) and 0.10 ("b", metadata
 *       ema.gamma), written every SNAP_EVERY steps as
 *       DIR/a_<t>.safetensors and DIR/b_<t>.safetensors. Tensors: w f32 [257],
 *       v f64 [3, 5], h bf16 [16], q f16 [4, 4], step i64 [].
 *       Reference averages, tracked exactly in double and written as f64
 *       under the same names (step as i64):
 *         DIR/ref_b_final.safetensors   sigma_rel 0.10 at T_END (what "b"
 *                                       tracked: synthesis must give it back)
 *         DIR/ref_c_final.safetensors   sigma_rel 0.07 at T_END (never tracked)
 *         DIR/ref_c_half.safetensors    sigma_rel 0.07 at T_END / 2
 *       And hostile snapshots, each at step T_END with gamma of "b":
 *         DIR/bad_shape.safetensors     w has shape [256]
 *         DIR/bad_dtype.safetensors     w is f64
 *         DIR/bad_missing.safetensors   no tensor v
 *         DIR/bad_extra.safetensors     an extra tensor z
 *         DIR/bad_nometa.safetensors    no ema.t / ema.gamma metadata
 *         DIR/bad_t.safetensors         ema.t is "soon"
 *
 * Exit status 0, or 1 with a message.
 */
#include <ema/ema.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T_END 2000
#define SNAP_EVERY 100
enum { NW = 257, NV = 15, NH = 16, NQ = 16, NTOT = NW + NV + NH + NQ };

static int fail(const char *what, const char *err) {
  fprintf(stderr, "tool_fixture: %s: %s\n", what, err);
  return 1;
}

/* IEEE binary16 / bfloat16 from a double, round to nearest even (only
   normal, moderate values occur here). */
static uint16_t to_half(double d, int mbits, int bias) {
  uint16_t sign = d < 0 ? 0x8000 : 0;
  double a = fabs(d);
  if (a == 0) return sign;
  int e;
  frexp(a, &e);
  e -= 1;
  double frac = ldexp(a, -e) - 1.0;
  unsigned bits = ((unsigned)(e + bias) << mbits) + (unsigned)nearbyint(ldexp(frac, mbits));
  return (uint16_t)(sign | bits);
}
static uint16_t to_f16(double d) { return to_half(d, 10, 15); }
static uint16_t to_bf16(double d) { return to_half(d, 7, 127); }

/* ------------------------------------------------------------------------ */

static int write_ckpt(const char *path, int debias) {
  static float w[6] = {1.0f, -2.0f, 3.5f, 0.25f, -0.75f, 2.0f};
  static double v[4] = {10.0, 20.0, -30.0, 0.125};
  static uint16_t h[5], b[3];
  static int64_t step = 0;
  for (int i = 0; i < 5; i++) h[i] = to_f16(0.5 * (i + 1));
  for (int i = 0; i < 3; i++) b[i] = to_bf16(-1.0 - i);
  ema_ctx *ctx = NULL;
  if (ema_create(&ctx, 0.9) != EMA_OK) return fail("ema_create", "failed");
  ema_status st = EMA_OK;
  if (debias) st = ema_set_zero_debias(ctx, 1);
  if (st == EMA_OK) st = ema_track(ctx, "layer.w32", w, EMA_F32, 2, (int64_t[]){2, 3});
  if (st == EMA_OK) st = ema_track(ctx, "layer.w64", v, EMA_F64, 1, (int64_t[]){4});
  if (st == EMA_OK) st = ema_track(ctx, "layer.h16", h, EMA_F16, 1, (int64_t[]){5});
  if (st == EMA_OK) st = ema_track(ctx, "layer.b16", b, EMA_BF16, 1, (int64_t[]){3});
  if (st == EMA_OK) st = ema_track_policy(ctx, "global_step", &step, EMA_I64, 0, NULL, EMA_POLICY_COPY);
  for (int k = 1; k <= 3 && st == EMA_OK; k++) { /* the weights move, the averages follow */
    for (int i = 0; i < 6; i++) w[i] += 1.0f;
    for (int i = 0; i < 4; i++) v[i] *= 1.5;
    for (int i = 0; i < 5; i++) h[i] = to_f16(0.5 * (i + 1) + k);
    for (int i = 0; i < 3; i++) b[i] = to_bf16(-1.0 - i - 2 * k);
    step = k;
    st = ema_apply(ctx);
  }
  if (st == EMA_OK) st = ema_save(ctx, path);
  if (st != EMA_OK) {
    int rc = fail("checkpoint", ema_last_error(ctx));
    ema_free(ctx);
    return rc;
  }
  ema_free(ctx);
  return 0;
}

static int write_bank(const char *path) {
  static float w[8];
  static int64_t step = 0;
  ema_ctx *ctx = NULL;
  if (ema_create(&ctx, 0.9) != EMA_OK) return fail("ema_create", "failed");
  ema_schedule slow, power;
  ema_schedule_init(&slow, EMA_SCHEDULE_CONSTANT);
  slow.decay = 0.99;
  ema_schedule_init(&power, EMA_SCHEDULE_POWER);
  power.sigma_rel = 0.10;
  ema_status st = ema_bank_add(ctx, "slow", &slow, NULL);
  if (st == EMA_OK) st = ema_bank_add(ctx, "power", &power, NULL);
  if (st == EMA_OK) st = ema_track(ctx, "w", w, EMA_F32, 1, (int64_t[]){8});
  if (st == EMA_OK) st = ema_track_policy(ctx, "step", &step, EMA_I64, 0, NULL, EMA_POLICY_COPY);
  for (int k = 1; k <= 5 && st == EMA_OK; k++) {
    for (int i = 0; i < 8; i++) w[i] = (float)(k * (i + 1));
    step = k;
    st = ema_update(ctx, k);
  }
  if (st == EMA_OK) st = ema_save(ctx, path);
  int rc = st == EMA_OK ? 0 : fail("bank checkpoint", ema_last_error(ctx));
  ema_free(ctx);
  return rc;
}

/* ------------------------------------------------------------------------ */

/* A snapshot or reference: the NTOT averages in x (w, v, h, q order). */
static int write_set(const char *path, const double *x, int64_t step, int as_f64, const char *const *meta,
                     size_t n_meta, int variant) {
  float w[NW];
  double v[NV];
  uint16_t h[NH], q[NQ];
  double wd[NW], hd[NH], qd[NQ];
  for (int i = 0; i < NW; i++) w[i] = (float)(wd[i] = x[i]);
  for (int i = 0; i < NV; i++) v[i] = x[NW + i];
  for (int i = 0; i < NH; i++) h[i] = to_bf16(hd[i] = x[NW + NV + i]);
  for (int i = 0; i < NQ; i++) q[i] = to_f16(qd[i] = x[NW + NV + NH + i]);
  int64_t sw[1] = {NW}, sw_bad[1] = {NW - 1}, sv[2] = {3, 5}, sh[1] = {NH}, sq[2] = {4, 4}, sz[1] = {2};
  double z[2] = {0, 0};
  ema_file_entry e[6] = {
      {"w", as_f64 ? EMA_F64 : EMA_F32, 1, sw, as_f64 ? (const void *)wd : (const void *)w},
      {"v", EMA_F64, 2, sv, v},
      {"h", as_f64 ? EMA_F64 : EMA_BF16, 1, sh, as_f64 ? (const void *)hd : (const void *)h},
      {"q", as_f64 ? EMA_F64 : EMA_F16, 2, sq, as_f64 ? (const void *)qd : (const void *)q},
      {"step", EMA_I64, 0, NULL, &step},
      {"z", EMA_F64, 1, sz, z},
  };
  size_t n = 5;
  if (variant == 1) e[0].shape = sw_bad;                              /* bad_shape */
  if (variant == 2) e[0] = (ema_file_entry){"w", EMA_F64, 1, sw, wd}; /* bad_dtype */
  if (variant == 3) {                                                 /* bad_missing: drop v */
    e[1] = e[4];
    n = 4;
  }
  if (variant == 4) n = 6; /* bad_extra */
  char err[512];
  if (ema_file_write(path, e, n, meta, n_meta, err, sizeof err) != EMA_OK) return fail(path, err);
  return 0;
}

/* Simulated weights at step t: converging towards a target, with noise. */
static void weights_at(int64_t t, uint64_t *rng, double *x) {
  for (int i = 0; i < NTOT; i++) {
    uint64_t z = (*rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    double u = (double)(z >> 11) * 0x1.0p-53 - 0.5;
    double target = sin(0.37 * i) + 0.5;
    x[i] = target + 2.0 * cos(1.3 * i) * exp(-(double)t / 600.0) + 0.1 * u;
  }
}

static int write_snapshots(const char *dir) {
  double g_a, g_b, g_c;
  if (ema_power_gamma(0.05, &g_a) != EMA_OK || ema_power_gamma(0.10, &g_b) != EMA_OK ||
      ema_power_gamma(0.07, &g_c) != EMA_OK)
    return fail("ema_power_gamma", "failed");
  static double x[NTOT], sa[NTOT], sb[NTOT], sc[NTOT];
  uint64_t rng = 12345;
  char path[4096], t_text[32], g_text[40];
  for (int64_t t = 1; t <= T_END; t++) {
    weights_at(t, &rng, x);
    double da, db, dc;
    if (ema_power_decay(g_a, t, 1, &da) != EMA_OK || ema_power_decay(g_b, t, 1, &db) != EMA_OK ||
        ema_power_decay(g_c, t, 1, &dc) != EMA_OK)
      return fail("ema_power_decay", "failed");
    for (int i = 0; i < NTOT; i++) { /* the library's update rule, in double */
      sa[i] = sa[i] - (sa[i] - x[i]) * (1 - da);
      sb[i] = sb[i] - (sb[i] - x[i]) * (1 - db);
      sc[i] = sc[i] - (sc[i] - x[i]) * (1 - dc);
    }
    snprintf(t_text, sizeof t_text, "%lld", (long long)t);
    if (t % SNAP_EVERY == 0) {
      const char *meta_a[] = {"ema.t", t_text, "ema.sigma_rel", "0.05"};
      snprintf(g_text, sizeof g_text, "%.17g", g_b);
      const char *meta_b[] = {"ema.t", t_text, "ema.gamma", g_text};
      snprintf(path, sizeof path, "%s/a_%05lld.safetensors", dir, (long long)t);
      if (write_set(path, sa, t, 0, meta_a, 2, 0)) return 1;
      snprintf(path, sizeof path, "%s/b_%05lld.safetensors", dir, (long long)t);
      if (write_set(path, sb, t, 0, meta_b, 2, 0)) return 1;
    }
    if (t == T_END / 2) {
      snprintf(path, sizeof path, "%s/ref_c_half.safetensors", dir);
      if (write_set(path, sc, t, 1, NULL, 0, 0)) return 1;
    }
  }
  snprintf(path, sizeof path, "%s/ref_b_final.safetensors", dir);
  if (write_set(path, sb, T_END, 1, NULL, 0, 0)) return 1;
  snprintf(path, sizeof path, "%s/ref_c_final.safetensors", dir);
  if (write_set(path, sc, T_END, 1, NULL, 0, 0)) return 1;

  /* hostile snapshots */
  snprintf(t_text, sizeof t_text, "%d", T_END);
  snprintf(g_text, sizeof g_text, "%.17g", g_b);
  const char *meta[] = {"ema.t", t_text, "ema.gamma", g_text};
  const char *meta_bad_t[] = {"ema.t", "soon", "ema.gamma", g_text};
  static const char *const names[] = {"bad_shape", "bad_dtype", "bad_missing", "bad_extra"};
  for (int k = 0; k < 4; k++) {
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, names[k]);
    if (write_set(path, sb, T_END, 0, meta, 2, k + 1)) return 1;
  }
  snprintf(path, sizeof path, "%s/bad_nometa.safetensors", dir);
  if (write_set(path, sb, T_END, 0, NULL, 0, 0)) return 1;
  snprintf(path, sizeof path, "%s/bad_t.safetensors", dir);
  if (write_set(path, sb, T_END, 0, meta_bad_t, 2, 0)) return 1;
  return 0;
}

static int write_many(long n, const char *path) {
  enum { NAME = 64 };
  size_t count = 2 * (size_t)n;
  ema_file_entry *e = (ema_file_entry *)calloc(count, sizeof *e);
  char *names = (char *)malloc(count * NAME);
  static const int64_t shape[1] = {2};
  static const float values[2][2] = {{1.0f, 2.0f}, {1.5f, 2.5f}};
  if (!e || !names) return 1;
  for (size_t i = 0; i < count; i++) {
    char *nm = names + i * NAME;
    snprintf(nm, NAME, i % 2 ? "layer.%zu.weight/ExponentialMovingAverage" : "layer.%zu.weight", i / 2);
    e[i].name = nm;
    e[i].dtype = EMA_F32;
    e[i].ndim = 1;
    e[i].shape = shape;
    e[i].data = values[i % 2];
  }
  const char *meta[4] = {"libema.format", "1", "ema.name", "ExponentialMovingAverage"};
  char err[512];
  ema_status st = ema_file_write(path, e, count, meta, 2, err, sizeof err);
  if (st != EMA_OK) fprintf(stderr, "tool_fixture: %s\n", err);
  free(e);
  free(names);
  return st == EMA_OK ? 0 : 1;
}

#define EVIL_NAME "w\x1b[31mred\nema: forged\xc2\x9b"

static int write_hostile(const char *dir) {
  char path[1024], err[512];
  static const int64_t shape[1] = {2};
  static const float w[2] = {1, 2}, a[2] = {1.5f, 2.5f};
  ema_file_entry e[2] = {{EVIL_NAME, EMA_F32, 1, shape, w},
                         {EVIL_NAME "/ExponentialMovingAverage", EMA_F32, 1, shape, a}};
  const char *meta[8] = {"libema.format",
                         "1",
                         "ema.decay",
                         "0.5\nema: all good",
                         "ema.name",
                         "ExponentialMovingAverage",
                         "note\x1b]0;pwned\x07",
                         "\xc2\x9b"
                         "31m"};
  snprintf(path, sizeof path, "%s/evil.safetensors", dir);
  if (ema_file_write(path, e, 2, meta, 4, err, sizeof err) != EMA_OK) return fprintf(stderr, "%s\n", err), 1;
  const char *snap_meta[2][4] = {{"ema.t", "10", "ema.gamma", "6.9"},
                                 {"ema.t", "12\x1b[2J\nema: ok", "ema.gamma", "16.9"}};
  const char *names[2] = {"snap_ok", "snap_evil"};
  for (int i = 0; i < 2; i++) {
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, names[i]);
    if (ema_file_write(path, e, 1, snap_meta[i], 2, err, sizeof err) != EMA_OK) return fprintf(stderr, "%s\n", err), 1;
  }
  return 0;
}

static int write_bigsnaps(const char *dir, long mb) {
  size_t n = (size_t)mb * (1u << 20) / 4;
  float *w = (float *)malloc(n * sizeof *w);
  if (!w) return 1;
  static const char *const names[3] = {"big_a100", "big_a200", "big_b200"};
  static const char *const meta[3][4] = {{"ema.t", "100", "ema.gamma", "6.94"},
                                         {"ema.t", "200", "ema.gamma", "6.94"},
                                         {"ema.t", "200", "ema.gamma", "16.97"}};
  int rc = 0;
  for (int k = 0; k < 3 && rc == 0; k++) {
    for (size_t i = 0; i < n; i++) w[i] = (float)((double)(i % 1000) * 0.001 + k);
    int64_t shape[1] = {(int64_t)n};
    ema_file_entry e = {"w", EMA_F32, 1, shape, w};
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, names[k]);
    if (ema_file_write(path, &e, 1, meta[k], 2, err, sizeof err) != EMA_OK) {
      fprintf(stderr, "%s\n", err);
      rc = 1;
    }
  }
  free(w);
  return rc;
}

int main(int argc, char **argv) {
  if (argc >= 3 && strcmp(argv[1], "ckpt") == 0)
    return write_ckpt(argv[2], argc >= 4 && strcmp(argv[3], "--debias") == 0);
  if (argc == 3 && strcmp(argv[1], "ckpt-bank") == 0) return write_bank(argv[2]);
  if (argc == 4 && strcmp(argv[1], "many") == 0) return write_many(atol(argv[2]), argv[3]);
  if (argc == 4 && strcmp(argv[1], "bigsnaps") == 0) return write_bigsnaps(argv[2], atol(argv[3]));
  if (argc == 3 && strcmp(argv[1], "hostile") == 0) return write_hostile(argv[2]);
  if (argc == 3 && strcmp(argv[1], "snapshots") == 0) return write_snapshots(argv[2]);
  fprintf(stderr,
          "usage: tool_fixture ckpt PATH [--debias] | ckpt-bank PATH | many N PATH | hostile DIR | bigsnaps DIR MB | "
          "snapshots DIR\n");
  return 2;
}
