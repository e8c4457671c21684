/*
 * Kernel table: the only interface between the core and the per-ISA kernels.
 *
 * The scalar reference (ref.c) is always built and is the oracle; optimized
 * kernels (x86/avx2.c, x86/avx512.c) must give bit-identical results for
 * every input, NaN payloads included. src/kernels depends on nothing but
 * libc.
 *
 * Tables derive from the reference (as BLIS contexts do): dispatch.c starts
 * every ISA's table as a copy of ema_kernels_ref and lets the ISA's
 * override function replace only the kernels it implements, so a kernel an
 * ISA does not speed up (plain copies, say) is the reference one, stated
 * once.
 *
 * A "pair" names (parameter dtype -> shadow dtype). Every kernel works on n
 * elements from the given pointers; pointers may be unaligned and n may be 0.
 * Kernels never allocate and never fail.
 */
#ifndef EMA_KERNELS_H
#define EMA_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum ema_pair {
  EMA_PAIR_F32 = 0,       /* f32 params, f32 shadow */
  EMA_PAIR_F64 = 1,       /* f64 params, f64 shadow */
  EMA_PAIR_BF16_F32 = 2,  /* bf16 params, f32 shadow */
  EMA_PAIR_F16_F32 = 3,   /* f16 params, f32 shadow */
  EMA_PAIR_BF16_BF16 = 4, /* bf16 params, bf16 shadow, each op rounded to bf16 */
  EMA_PAIR_F16_F16 = 5,   /* f16 params, f16 shadow, each op rounded to f16 */
  EMA_PAIR_COUNT = 6
} ema_pair;

/* A scalar coefficient in the shadow's precision. Half shadows use h (the
   bit pattern of the coefficient already rounded to that half format). */
typedef union ema_coef {
  float f;
  double d;
  uint16_t h;
} ema_coef;

/* s[i] = s[i] - (s[i] - v[i]) * om, in the shadow's precision, no FMA.
   For half shadows each of the three operations is computed in float32 and
   rounded to the half format (to nearest even), as TensorFlow/Eigen do. */
typedef void (*ema_update_fn)(void *s, const void *v, size_t n, ema_coef om);

/* a[i] = b[i] / f in the shadow's precision (zero-debias read-out). For half
   shadows, the float32 quotient rounded to the half format. */
typedef void (*ema_div_fn)(void *a, const void *b, size_t n, ema_coef f);

/* Conversions between parameter and shadow: to_shadow writes s from v,
   from_shadow writes v from s (rounding to nearest even, NaN kept NaN and
   quiet, Inf kept). For same-dtype pairs both are plain copies. Widening
   bf16 -> f32 is an exact shift: a signaling NaN stays signaling there (it
   turns quiet at the first arithmetic operation); f16 -> f32 makes it quiet,
   as F16C does. */
typedef void (*ema_cvt_fn)(void *dst, const void *src, size_t n);

/* Exchange nbytes bytes between a and b (non-overlapping). */
typedef void (*ema_swap_fn)(void *a, void *b, size_t nbytes);

typedef struct ema_kernels {
  const char *name; /* "ref", "avx2", ... */
  ema_update_fn update[EMA_PAIR_COUNT];
  ema_div_fn div[EMA_PAIR_COUNT];
  ema_cvt_fn to_shadow[EMA_PAIR_COUNT];
  ema_cvt_fn from_shadow[EMA_PAIR_COUNT];
  ema_swap_fn swap;
} ema_kernels;

/* The scalar reference table; always available. */
extern const ema_kernels ema_kernels_ref;

/* ISA override functions: each is called once, by dispatch.c, on a copy of
   ema_kernels_ref; it sets name and replaces the kernels its file
   implements, bit-identical to the reference. Compiled in on x86-64 with GCC
   or Clang only (cmake/kernels.cmake defines EMA_HAVE_AVX2 and
   EMA_HAVE_AVX512 then). Never call the kernels of such a table directly:
   take the table from ema_kernels_by_name(), which checks that the CPU and
   the OS support the ISA. */
void ema_kernels_avx2_override(ema_kernels *k);   /* AVX2 + F16C */
void ema_kernels_avx512_override(ema_kernels *k); /* AVX-512 F/BW/VL (+F16C) */

/* The table chosen once for this process: the best ISA the CPU and OS
   support, or the one forced by the environment variable EMA_ISA
   (ref|avx2|avx512; an unknown or unsupported value falls back to the best;
   ema_isa() in the public API tells which one runs). Thread-safe. */
const ema_kernels *ema_kernels_best(void);

/* Look up a table by name ("ref", "avx2", "avx512"); NULL when that ISA is not
   compiled in or not supported by this CPU/OS. Thread-safe. */
const ema_kernels *ema_kernels_by_name(const char *name);

/* Name of the table ema_kernels_best() returns ("ref", "avx2", ...); static
   text. Thread-safe. */
const char *ema_kernels_chosen_name(void);

/* Bit patterns of floats (no aliasing trouble: memcpy), for the kernels and
   their tests. */
static inline uint32_t ema_f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

static inline float ema_bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static inline uint64_t ema_f64_bits(double d) {
  uint64_t u;
  memcpy(&u, &d, sizeof u);
  return u;
}

/* Scalar conversions, shared by the reference kernels and the core. */
float ema_bf16_to_f32(uint16_t h);
uint16_t ema_f32_to_bf16(float f);
float ema_f16_to_f32(uint16_t h);
uint16_t ema_f32_to_f16(float f);

#endif /* EMA_KERNELS_H */
