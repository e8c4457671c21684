/*
 * The seeds' printed TensorFlow 1 runs, reproduced bit for bit.
 *
 * Each expected value is the text TensorFlow printed for a float32; strtof
 * turns it back into the float32 it came from, and the test compares bit
 * patterns, not tolerances. The sources are ../shared/seeds/000_*.txt and
 * 002_*.txt (w starts at 0, decay 0.99, num_updates = global_step).
 */
#include <ema/ema.h>

#include <stdlib.h>
#include <string.h>

#include "check.h"

static uint32_t bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

static void check_value(const char *what, float got, const char *printed) {
  float want = strtof(printed, NULL);
  CHECK_MSG(bits(got) == bits(want), "%s: got %.9g (0x%08x), TensorFlow printed %s (0x%08x)", what, (double)got,
            bits(got), printed, bits(want));
}

/* Seed 000 was printed by an older numpy with 8 significant digits, which
   does not always identify a float32; compare the text instead. */
static void check_text8(const char *what, float got, const char *printed) {
  char buf[32];
  snprintf(buf, sizeof buf, "%.8g", (double)got);
  CHECK_MSG(strcmp(buf, printed) == 0, "%s: got %s (%.9g), TensorFlow printed %s", what, buf, (double)got, printed);
}

static float avg(const ema_ctx *ctx, const char *name) {
  ema_dtype dt;
  const float *p = (const float *)ema_average(ctx, name, &dt);
  CHECK(p != NULL && dt == EMA_F32);
  return p ? *p : -1.0f;
}

/* Seed 002, first run: three updates at global_step 1, then step 100, w=10,
   then 100 more updates printed every 10. */
static void seed_002_run1(void) {
  ema_ctx *ctx;
  float w = 0.0f;
  CHECK_ST(NULL, ema_create(&ctx, 0.99), EMA_OK);
  CHECK_ST(ctx, ema_track(ctx, "w", &w, EMA_F32, 0, NULL), EMA_OK);
  check_value("init", avg(ctx, "w"), "0.0");
  w = 1.0f;
  ema_set_num_updates(ctx, 1);
  CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
  check_value("002 apply 1", avg(ctx, "w"), "0.8181818");
  CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
  check_value("002 apply 2", avg(ctx, "w"), "0.96694213");
  CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
  check_value("002 apply 3", avg(ctx, "w"), "0.99398947");
  ema_set_num_updates(ctx, 100);
  w = 10.0f;
  CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
  check_value("002 step 100", avg(ctx, "w"), "1.7308447");
  CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
  static const char *const printed[] = {"3.0286236", "7.031032", "8.735577", "9.461507",  "9.770666",
                                        "9.90233",   "9.958405", "9.982285", "9.9924555", "9.996786"};
  for (int i = 0; i < 100; i++) {
    CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
    if (i % 10 == 0) check_value("002 loop", avg(ctx, "w"), printed[i / 10]);
  }
  ema_free(ctx);
}

/* Seed 000, first run: one update at step 1, then step 100 with w=10. */
static void seed_000_run1(void) {
  ema_ctx *ctx;
  float w = 0.0f;
  CHECK_ST(NULL, ema_create(&ctx, 0.99), EMA_OK);
  CHECK_ST(ctx, ema_track(ctx, "w", &w, EMA_F32, 0, NULL), EMA_OK);
  w = 1.0f;
  ema_set_num_updates(ctx, 1);
  CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
  check_text8("000 apply 1", avg(ctx, "w"), "0.81818181");
  ema_set_num_updates(ctx, 100);
  w = 10.0f;
  CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
  check_text8("000 step 100", avg(ctx, "w"), "1.5694213");
  CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
  static const char *const printed[] = {"2.8925343", "6.973074", "8.7108936", "9.4509964", "9.7661905",
                                        "9.900424",  "9.957592", "9.9819393", "9.9923086", "9.9967241"};
  for (int i = 0; i < 100; i++) {
    CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
    if (i % 10 == 0) check_text8("000 loop", avg(ctx, "w"), printed[i / 10]);
  }
  ema_free(ctx);
}

/* Seed 000, second run and "example 2": w keeps growing while the EMA
   chases it; a trainable float32 global_step is averaged too (the trap the
   seeds warn about), and its average is printed as well. */
static void seed_000_run2(void) {
  ema_ctx *ctx;
  float w = 0.0f, gs = 0.0f;
  CHECK_ST(NULL, ema_create(&ctx, 0.99), EMA_OK);
  CHECK_ST(ctx, ema_track(ctx, "w", &w, EMA_F32, 0, NULL), EMA_OK);
  CHECK_ST(ctx, ema_track(ctx, "global_step", &gs, EMA_F32, 0, NULL), EMA_OK);
  w = 1.0f;
  gs = 1.0f;
  ema_set_num_updates(ctx, 1);
  CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
  check_text8("000/2 apply 1", avg(ctx, "w"), "0.81818181");
  gs = 100.0f;
  ema_set_num_updates(ctx, 100);
  w = 10.0f;
  CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
  check_text8("000/2 step 100", avg(ctx, "w"), "1.5694213");
  CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
  static const char *const pw[] = {"2.9743524", "11.139132", "20.35755",  "30.024689", "39.882935",
                                   "49.822563", "59.796848", "69.785896", "79.781242", "89.779259"};
  static const char *const pg[] = {"23.225294", "67.303207", "86.075096", "94.069664", "97.474388",
                                   "98.924385", "99.541916", "99.804916", "99.916916", "99.964607"};
  for (int i = 0; i < 100; i++) {
    w += 1.0f;
    CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
    if (i % 10 == 0) {
      check_text8("000/2 w", avg(ctx, "w"), pw[i / 10]);
      check_text8("000/2 global_step", avg(ctx, "global_step"), pg[i / 10]);
    }
  }
  ema_free(ctx);
}

/* Seed 002, second run: the same chase printed with shortest float32 reprs
   (11.1391325, 59.79685, 69.7859, ... are the same floats as above). */
static void seed_002_run2(void) {
  ema_ctx *ctx;
  float w = 0.0f;
  CHECK_ST(NULL, ema_create(&ctx, 0.99), EMA_OK);
  CHECK_ST(ctx, ema_track(ctx, "w", &w, EMA_F32, 0, NULL), EMA_OK);
  w = 1.0f;
  ema_set_num_updates(ctx, 1);
  CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
  check_value("002/2 apply 1", avg(ctx, "w"), "0.8181818");
  ema_set_num_updates(ctx, 100);
  w = 10.0f;
  CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
  check_value("002/2 step 100", avg(ctx, "w"), "1.5694213");
  CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
  static const char *const pw[] = {"2.9743524", "11.1391325", "20.35755", "30.024689", "39.882935",
                                   "49.822563", "59.79685",   "69.7859",  "79.78124",  "89.77926"};
  for (int i = 0; i < 100; i++) {
    w += 1.0f;
    CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
    if (i % 10 == 0) check_value("002/2 w", avg(ctx, "w"), pw[i / 10]);
  }
  ema_free(ctx);
}

/* The classic formula d*s + (1-d)*v does not reproduce the seeds: this is
   why the library evaluates s - (s - v) * (1 - d). Replay seed 002's first
   run with the classic formula in plain float32 and count the printed
   values it misses (if none, the golden data would be too weak to tell). */
static void classic_formula_differs(void) {
  static const char *const printed[] = {"1.7308447", "3.0286236", "7.031032", "8.735577",  "9.461507", "9.770666",
                                        "9.90233",   "9.958405",  "9.982285", "9.9924555", "9.996786"};
  float s = 0.0f, w = 1.0f, d = 2.0f / 11.0f;
  int misses = 0;
  for (int i = 0; i < 3; i++) s = d * s + (1.0f - d) * w;
  w = 10.0f;
  d = (1.0f + 100.0f) / (10.0f + 100.0f); /* min(0.99, 101/110) */
  s = d * s + (1.0f - d) * w;
  misses += bits(s) != bits(strtof(printed[0], NULL));
  s = d * s + (1.0f - d) * w;
  for (int i = 0; i < 100; i++) {
    s = d * s + (1.0f - d) * w;
    if (i % 10 == 0) misses += bits(s) != bits(strtof(printed[1 + i / 10], NULL));
  }
  CHECK_MSG(misses > 0, "the classic formula reproduced every printed value");
}

int main(void) {
  seed_002_run1();
  seed_000_run1();
  seed_000_run2();
  seed_002_run2();
  classic_formula_differs();
  return check_report("test_seeds");
}
