/*
 * AVX-512 kernels (F, BW, VL): the same operations as the scalar reference
 * (ref.c), sixteen elements at a time, with bit-identical results for every
 * input, NaN payloads, signed zeros and subnormals included.
 *
 * How identity with ref.c is kept:
 *  - The update is s - (s - v) * om as three separate instructions (sub, mul,
 *    sub) in that order. This file is compiled with -mavx512f -mavx512bw
 *    -mavx512vl only (none of them lets the compiler emit an FMA) and the
 *    library with -ffp-contract=off. The operand order of each subtraction
 *    is the one of ref.c, so when both operands are NaN the first one comes
 *    out, as in the scalar code.
 *  - float16 <-> float32 uses the AVX-512F forms of vcvtph2ps and vcvtps2ph
 *    (round to nearest even from the immediate, not MXCSR): the same
 *    results as F16C and as ema_f16_to_f32 / ema_f32_to_f16.
 *  - bfloat16 -> float32 is a shift. float32 -> bfloat16 is the integer
 *    round-to-nearest-even of ema_f32_to_bf16 (NaN test and quieting
 *    included) on sixteen lanes. AVX512_BF16's vcvtneps2bf16 is NOT used:
 *    it treats subnormal inputs as zero (a DAZ of its own, whatever MXCSR
 *    says), so it differs from ref.c on float32 subnormals; the integer
 *    sequence is exact and the kernels are memory-bound anyway.
 *  - Half-shadow pairs round each of the three operations to the half
 *    format, as ref.c does.
 *  - Nothing here touches MXCSR: like ref.c, the kernels see whatever
 *    DAZ/FTZ the caller runs with (the default, none, in every test).
 *
 * Pointers may be unaligned and n may be anything: a masked head block
 * brings the destination to a 64-byte boundary (32 for half shadows, whose
 * block is 32 bytes), whole blocks follow, and a masked tail block takes the
 * rest. Masked loads never touch the masked-off elements (no fault past the
 * end of a buffer), masked stores never write them, and the masked-off
 * lanes compute on zeros, which is harmless.
 *
 * The coefficient (om, or the debias divisor) is assumed not to be NaN (the
 * core never passes one), as in avx2.c.
 */
#include <immintrin.h>
#include <stdint.h>

#include "kernels/kernels.h"

#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512VL__)
#error "avx512.c must be compiled with -mavx512f -mavx512bw -mavx512vl (see cmake/kernels.cmake)"
#endif

#define EMA_INLINE static inline __attribute__((always_inline))
#define LANES 16
#define FULL ((__mmask16)0xFFFF)

/* ---- sixteen-lane conversions --------------------------------------------- */

/* 16 bf16 at p (lanes of m only) -> 16 f32: exact, like ema_bf16_to_f32. */
EMA_INLINE __m512 load_bf16(const void *p, __mmask16 m) {
  __m512i w = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}

/* 16 f32 -> 16 bf16 bit patterns, one in the low half of each 32-bit lane,
   exactly as ema_f32_to_bf16 (see avx2.c's bf16_bits). */
EMA_INLINE __m512i bf16_bits(__m512 x) {
  const __m512i u = _mm512_castps_si512(x);
  const __m512i hi = _mm512_srli_epi32(u, 16);
  const __m512i abs = _mm512_and_si512(u, _mm512_set1_epi32(0x7FFFFFFF));
  const __mmask16 is_nan = _mm512_cmpgt_epi32_mask(abs, _mm512_set1_epi32(0x7F800000));
  const __m512i lsb = _mm512_and_si512(hi, _mm512_set1_epi32(1));
  const __m512i bias = _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF));
  const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(u, bias), 16);
  const __m512i quiet = _mm512_or_si512(hi, _mm512_set1_epi32(0x0040));
  return _mm512_mask_blend_epi32(is_nan, rounded, quiet);
}

/* every lane of bf16_bits is in [0, 0xFFFF], so the truncating vpmovdw is exact */
EMA_INLINE void store_bf16(void *p, __m512 x, __mmask16 m) {
  _mm256_mask_storeu_epi16(p, m, _mm512_cvtepi32_epi16(bf16_bits(x)));
}

EMA_INLINE __m512 round_bf16(__m512 x) { return _mm512_castsi512_ps(_mm512_slli_epi32(bf16_bits(x), 16)); }

EMA_INLINE __m512 load_f16(const void *p, __mmask16 m) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p)); }

/* the maskz form: at -O0 the plain one is a macro passing -1 as the mask (a
   -Wsign-conversion warning in our file) */
EMA_INLINE __m256i to_f16(__m512 x) { return _mm512_maskz_cvtps_ph(FULL, x, _MM_FROUND_TO_NEAREST_INT); }

EMA_INLINE void store_f16(void *p, __m512 x, __mmask16 m) { _mm256_mask_storeu_epi16(p, m, to_f16(x)); }

EMA_INLINE __m512 round_f16(__m512 x) { return _mm512_cvtph_ps(to_f16(x)); }

EMA_INLINE __m512 load_f32(const void *p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }

EMA_INLINE void store_f32(void *p, __m512 x, __mmask16 m) { _mm512_mask_storeu_ps(p, m, x); }

/* ---- block driver -----------------------------------------------------------
   A block is sixteen elements; op(a, b, c, m) handles the lanes of m. The
   head block ends where a reaches the alignment of a whole block (64 bytes,
   32 for 2-byte destinations), so the full blocks store aligned lines. */

typedef void (*block_op)(void *a, const void *b, ema_coef c, __mmask16 m);

EMA_INLINE __mmask16 first_lanes(size_t k) { return (__mmask16)((1u << k) - 1u); }

EMA_INLINE void run_op(block_op op, void *a_, size_t asz, const void *b_, size_t bsz, size_t n, ema_coef c) {
  unsigned char *a = (unsigned char *)a_;
  const unsigned char *b = (const unsigned char *)b_;
  const uintptr_t align = asz == 2 ? 32u : 64u;
  size_t head = (size_t)((align - ((uintptr_t)a & (align - 1u))) & (align - 1u)) / asz;
  if (head > n) head = n;
  if (head) op(a, b, c, first_lanes(head));
  size_t i = head;
  for (; i + LANES <= n; i += LANES) op(a + i * asz, b + i * bsz, c, FULL);
  if (i < n) op(a + i * asz, b + i * bsz, c, first_lanes(n - i));
}

/* ---- update: s = s - (s - v) * om -------------------------------------------- */

EMA_INLINE __m512 step_ps(__m512 s, __m512 v, __m512 om) {
  return _mm512_sub_ps(s, _mm512_mul_ps(_mm512_sub_ps(s, v), om));
}

EMA_INLINE void blk_update_f32(void *s, const void *v, ema_coef om, __mmask16 m) {
  store_f32(s, step_ps(load_f32(s, m), load_f32(v, m), _mm512_set1_ps(om.f)), m);
}

EMA_INLINE void blk_update_f64(void *s_, const void *v_, ema_coef om, __mmask16 m) {
  double *s = (double *)s_;
  const double *v = (const double *)v_;
  const __m512d o = _mm512_set1_pd(om.d);
  for (int h = 0; h < 2; h++) {
    const __mmask8 mh = (__mmask8)(m >> (8 * h));
    const __m512d sk = _mm512_maskz_loadu_pd(mh, s + 8 * h);
    const __m512d vk = _mm512_maskz_loadu_pd(mh, v + 8 * h);
    _mm512_mask_storeu_pd(s + 8 * h, mh, _mm512_sub_pd(sk, _mm512_mul_pd(_mm512_sub_pd(sk, vk), o)));
  }
}

EMA_INLINE void blk_update_bf16_f32(void *s, const void *v, ema_coef om, __mmask16 m) {
  store_f32(s, step_ps(load_f32(s, m), load_bf16(v, m), _mm512_set1_ps(om.f)), m);
}

EMA_INLINE void blk_update_f16_f32(void *s, const void *v, ema_coef om, __mmask16 m) {
  store_f32(s, step_ps(load_f32(s, m), load_f16(v, m), _mm512_set1_ps(om.f)), m);
}

/* Half shadows: om.f carries the coefficient already widened to f32. */
EMA_INLINE void blk_update_bf16_bf16(void *s, const void *v, ema_coef om, __mmask16 m) {
  const __m512 sf = load_bf16(s, m);
  const __m512 diff = round_bf16(_mm512_sub_ps(sf, load_bf16(v, m)));
  const __m512 prod = round_bf16(_mm512_mul_ps(diff, _mm512_set1_ps(om.f)));
  store_bf16(s, _mm512_sub_ps(sf, prod), m);
}

EMA_INLINE void blk_update_f16_f16(void *s, const void *v, ema_coef om, __mmask16 m) {
  const __m512 sf = load_f16(s, m);
  const __m512 diff = round_f16(_mm512_sub_ps(sf, load_f16(v, m)));
  const __m512 prod = round_f16(_mm512_mul_ps(diff, _mm512_set1_ps(om.f)));
  store_f16(s, _mm512_sub_ps(sf, prod), m);
}

static void update_f32(void *s, const void *v, size_t n, ema_coef om) { run_op(blk_update_f32, s, 4, v, 4, n, om); }

static void update_f64(void *s, const void *v, size_t n, ema_coef om) { run_op(blk_update_f64, s, 8, v, 8, n, om); }

static void update_bf16_f32(void *s, const void *v, size_t n, ema_coef om) {
  run_op(blk_update_bf16_f32, s, 4, v, 2, n, om);
}

static void update_f16_f32(void *s, const void *v, size_t n, ema_coef om) {
  run_op(blk_update_f16_f32, s, 4, v, 2, n, om);
}

static void update_bf16_bf16(void *s, const void *v, size_t n, ema_coef om) {
  ema_coef o;
  o.f = ema_bf16_to_f32(om.h);
  run_op(blk_update_bf16_bf16, s, 2, v, 2, n, o);
}

static void update_f16_f16(void *s, const void *v, size_t n, ema_coef om) {
  ema_coef o;
  o.f = ema_f16_to_f32(om.h);
  run_op(blk_update_f16_f16, s, 2, v, 2, n, o);
}

/* ---- zero-debias read-out: a = b / f ------------------------------------------ */

EMA_INLINE void blk_div_f32(void *a, const void *b, ema_coef f, __mmask16 m) {
  store_f32(a, _mm512_div_ps(load_f32(b, m), _mm512_set1_ps(f.f)), m);
}

EMA_INLINE void blk_div_f64(void *a_, const void *b_, ema_coef f, __mmask16 m) {
  double *a = (double *)a_;
  const double *b = (const double *)b_;
  const __m512d d = _mm512_set1_pd(f.d);
  for (int h = 0; h < 2; h++) {
    const __mmask8 mh = (__mmask8)(m >> (8 * h));
    _mm512_mask_storeu_pd(a + 8 * h, mh, _mm512_div_pd(_mm512_maskz_loadu_pd(mh, b + 8 * h), d));
  }
}

/* f.f: the divisor widened to f32 by the callers below. */
EMA_INLINE void blk_div_bf16(void *a, const void *b, ema_coef f, __mmask16 m) {
  store_bf16(a, _mm512_div_ps(load_bf16(b, m), _mm512_set1_ps(f.f)), m);
}

EMA_INLINE void blk_div_f16(void *a, const void *b, ema_coef f, __mmask16 m) {
  store_f16(a, _mm512_div_ps(load_f16(b, m), _mm512_set1_ps(f.f)), m);
}

static void div_f32(void *a, const void *b, size_t n, ema_coef f) { run_op(blk_div_f32, a, 4, b, 4, n, f); }

static void div_f64(void *a, const void *b, size_t n, ema_coef f) { run_op(blk_div_f64, a, 8, b, 8, n, f); }

static void div_bf16(void *a, const void *b, size_t n, ema_coef f) {
  ema_coef d;
  d.f = ema_bf16_to_f32(f.h);
  run_op(blk_div_bf16, a, 2, b, 2, n, d);
}

static void div_f16(void *a, const void *b, size_t n, ema_coef f) {
  ema_coef d;
  d.f = ema_f16_to_f32(f.h);
  run_op(blk_div_f16, a, 2, b, 2, n, d);
}

/* ---- conversions between half parameters and f32 shadows ---------------------- */

EMA_INLINE void blk_bf16_to_f32(void *d, const void *s, ema_coef unused, __mmask16 m) {
  (void)unused;
  store_f32(d, load_bf16(s, m), m);
}

EMA_INLINE void blk_f16_to_f32(void *d, const void *s, ema_coef unused, __mmask16 m) {
  (void)unused;
  store_f32(d, load_f16(s, m), m);
}

EMA_INLINE void blk_f32_to_bf16(void *d, const void *s, ema_coef unused, __mmask16 m) {
  (void)unused;
  store_bf16(d, load_f32(s, m), m);
}

EMA_INLINE void blk_f32_to_f16(void *d, const void *s, ema_coef unused, __mmask16 m) {
  (void)unused;
  store_f16(d, load_f32(s, m), m);
}

static const ema_coef no_coef = {0.0f};

static void bf16_to_f32(void *d, const void *s, size_t n) { run_op(blk_bf16_to_f32, d, 4, s, 2, n, no_coef); }

static void f16_to_f32(void *d, const void *s, size_t n) { run_op(blk_f16_to_f32, d, 4, s, 2, n, no_coef); }

static void f32_to_bf16(void *d, const void *s, size_t n) { run_op(blk_f32_to_bf16, d, 2, s, 4, n, no_coef); }

static void f32_to_f16(void *d, const void *s, size_t n) { run_op(blk_f32_to_f16, d, 2, s, 4, n, no_coef); }

/* ---- swap: 64 bytes at a time, masked head (to align a) and tail ---------------- */

EMA_INLINE void swap_block(unsigned char *a, unsigned char *b, __mmask64 m) {
  const __m512i x = _mm512_maskz_loadu_epi8(m, a);
  const __m512i y = _mm512_maskz_loadu_epi8(m, b);
  _mm512_mask_storeu_epi8(a, m, y);
  _mm512_mask_storeu_epi8(b, m, x);
}

static void swap_bytes(void *a_, void *b_, size_t nbytes) {
  unsigned char *a = (unsigned char *)a_, *b = (unsigned char *)b_;
  size_t head = (size_t)((64u - ((uintptr_t)a & 63u)) & 63u);
  if (head > nbytes) head = nbytes;
  if (head) swap_block(a, b, (__mmask64)((1ull << head) - 1ull));
  size_t i = head;
  for (; i + 64 <= nbytes; i += 64) swap_block(a + i, b + i, ~(__mmask64)0);
  if (i < nbytes) swap_block(a + i, b + i, (__mmask64)((1ull << (nbytes - i)) - 1ull));
}

/* The reference table with what this file implements replaced; the
   same-dtype conversions stay the reference's plain copies. */
void ema_kernels_avx512_override(ema_kernels *k) {
  k->name = "avx512";
  k->update[EMA_PAIR_F32] = update_f32;
  k->update[EMA_PAIR_F64] = update_f64;
  k->update[EMA_PAIR_BF16_F32] = update_bf16_f32;
  k->update[EMA_PAIR_F16_F32] = update_f16_f32;
  k->update[EMA_PAIR_BF16_BF16] = update_bf16_bf16;
  k->update[EMA_PAIR_F16_F16] = update_f16_f16;
  k->div[EMA_PAIR_F32] = div_f32;
  k->div[EMA_PAIR_F64] = div_f64;
  k->div[EMA_PAIR_BF16_F32] = div_f32;
  k->div[EMA_PAIR_F16_F32] = div_f32;
  k->div[EMA_PAIR_BF16_BF16] = div_bf16;
  k->div[EMA_PAIR_F16_F16] = div_f16;
  k->to_shadow[EMA_PAIR_BF16_F32] = bf16_to_f32;
  k->to_shadow[EMA_PAIR_F16_F32] = f16_to_f32;
  k->from_shadow[EMA_PAIR_BF16_F32] = f32_to_bf16;
  k->from_shadow[EMA_PAIR_F16_F32] = f32_to_f16;
  k->swap = swap_bytes;
}
