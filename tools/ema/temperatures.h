/*
 * temperatures.h: the built-in data of `ema smooth`, a synthetic year of
 * daily temperatures (moved from the library, where it was
 * ema_series_synthetic_temperatures: only this tool uses it).
 */
#ifndef EMA_TOOL_TEMPERATURES_H
#define EMA_TOOL_TEMPERATURES_H

#include <stddef.h>
#include <stdint.h>

/* A deterministic synthetic record of daily mean temperatures in degrees
   Celsius, shaped like the London year in the seeds' figure: a seasonal
   sinusoid (mean 11.0, amplitude 7.0, coldest around 15 January; day 0 is
   1 January, period 365 days), plus day-to-day weather that persists (an
   AR(1) process, coefficient 0.7, standard deviation about 2.5) plus
   independent noise (standard deviation about 1.0). Writes out[0..n_days);
   n_days may exceed 365 (the seasons repeat). The same seed gives the same
   values on every run (splitmix64 and Irwin-Hall normals, never rand());
   values depend on the platform's cos() only through the seasonal term.
   Returns 1, or 0 for a NULL out with n_days > 0. */
int synthetic_temperatures(double *out, size_t n_days, uint64_t seed);

#endif
