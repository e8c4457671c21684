/*
 * temperatures.c: the synthetic year of `ema smooth` (see temperatures.h).
 */
#include "temperatures.h"

#include <math.h>

/* splitmix64 (Steele, Lea, Flood 2014): a tiny, well-mixed generator. */
static uint64_t splitmix64_next(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15u);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
  return z ^ (z >> 31);
}

/* Uniform in [0, 1) with 53 random bits. */
static double uniform01(uint64_t *state) { return (double)(splitmix64_next(state) >> 11) * (1.0 / 9007199254740992.0); }

/* Approximately standard normal: sum of 12 uniforms minus 6 (Irwin-Hall);
   mean 0, variance 1, no libm call, so the same bits everywhere. */
static double normal01(uint64_t *state) {
  double sum = 0.0;
  for (int k = 0; k < 12; k++) sum += uniform01(state);
  return sum - 6.0;
}

int synthetic_temperatures(double *out, size_t n_days, uint64_t seed) {
  if (n_days > 0 && out == NULL) return 0;
  const double mean = 11.0, amplitude = 7.0, coldest_day = 15.0, period = 365.0;
  const double phi = 0.7, weather_sd = 2.5, noise_sd = 1.0;
  const double two_pi = 6.283185307179586;
  /* innovation sd such that the AR(1) process has sd weather_sd */
  const double innovation_sd = weather_sd * 0.71414284285428499; /* sqrt(1 - 0.49) */
  uint64_t state = seed;
  double weather = weather_sd * normal01(&state); /* start in the stationary law */
  for (size_t d = 0; d < n_days; d++) {
    if (d > 0) weather = phi * weather + innovation_sd * normal01(&state);
    double season = mean - amplitude * cos(two_pi * ((double)d - coldest_day) / period);
    out[d] = season + weather + noise_sd * normal01(&state);
  }
  return 1;
}
