/*
 * AVX2 kernels (with F16C for float16): the same operations as the scalar
 * reference (ref.c), eight elements at a time, with bit-identical results
 * for every input, NaN payloads included.
 *
 * How identity with ref.c is kept:
 *  - The update is s - (s - v) * om as three separate instructions (sub, mul,
 *    sub) in that order. This file is compiled with -mavx2 -mf16c only,
 *    never -mfma, and the library is built with -ffp-contract=off, so
 *    nothing is fused. The operand order of each subtraction is the one of
 *    ref.c, so when both operands are NaN the same (first) one comes out.
 *  - float16 <-> float32 uses F16C (vcvtph2ps, vcvtps2ph with round to
 *    nearest even in the immediate, not MXCSR). Their NaN, subnormal and
 *    overflow behaviour is exactly what ema_f16_to_f32 and ema_f32_to_f16
 *    implement; tests/kernels/test_kernels.c checks it.
 *  - bfloat16 has no conversion instructions in AVX2: widening is a shift,
 *    narrowing is the integer round-to-nearest-even of ema_f32_to_bf16,
 *    NaN test and quieting included, done on eight lanes.
 *  - Half-shadow pairs round each of the three operations to the half
 *    format, as ref.c does.
 *
 * Pointers may be unaligned (only unaligned loads and stores are used) and
 * n may be anything: whole blocks of eight go straight through; the last
 * n % 8 elements are copied into a zero-padded stack block, run through the
 * same vector code, and copied back, so the tail takes the same path as the
 * body.
 *
 * No non-temporal stores. They would not change any value, but they push the
 * shadow out of the cache although it is read back at the next step. In a
 * quick measurement (f32 update, one thread, 32 MiB L3) they were about 2.5x
 * slower for a 4 MiB shadow and 10-20% faster once shadow + parameters
 * exceed the L3. A streaming path for calls larger than the last-level
 * cache is possible later; it needs the cache size and 32-byte aligned
 * stores, and bench/ should show the gain first.
 *
 * The coefficient (om, or the debias divisor) is assumed not to be NaN (the
 * core never passes one); with a NaN coefficient and a NaN element, which of
 * the two payloads comes out of the multiplication is up to the compiler,
 * here as in ref.c.
 */
#include "kernels/kernels.h"

#include <immintrin.h>
#include <string.h>

#if !defined(__AVX2__) || !defined(__F16C__)
#error "avx2.c must be compiled with -mavx2 -mf16c (see cmake/kernels.cmake)"
#endif

#define EMA_INLINE static inline __attribute__((always_inline))

/* ---- eight-lane conversions --------------------------------------------- */

/* 8 bf16 (16 bytes at p) -> 8 f32: exact, like ema_bf16_to_f32. */
EMA_INLINE __m256 load_bf16(const void *p) {
  __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

/* 8 f32 -> 8 bf16 bit patterns, one in the low half of each 32-bit lane,
   exactly as ema_f32_to_bf16: a NaN keeps its sign and top payload bits and
   is made quiet; anything else is rounded to nearest even by adding
   0x7FFF + lsb and dropping the low 16 bits (an overflow carries into Inf,
   as in the scalar code). */
EMA_INLINE __m256i bf16_bits(__m256 x) {
  const __m256i u = _mm256_castps_si256(x);
  const __m256i hi = _mm256_srli_epi32(u, 16);
  const __m256i abs = _mm256_and_si256(u, _mm256_set1_epi32(0x7FFFFFFF));
  /* abs is non-negative as a signed int, so a signed compare is right */
  const __m256i is_nan = _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(0x7F800000));
  const __m256i lsb = _mm256_and_si256(hi, _mm256_set1_epi32(1));
  const __m256i bias = _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF));
  const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, bias), 16);
  const __m256i quiet = _mm256_or_si256(hi, _mm256_set1_epi32(0x0040));
  return _mm256_blendv_epi8(rounded, quiet, is_nan);
}

/* 8 f32 -> 8 bf16 stored at p (16 bytes). */
EMA_INLINE void store_bf16(void *p, __m256 x) {
  const __m256i r = bf16_bits(x);
  /* every lane is in [0, 0xFFFF], so the unsigned saturating pack is exact */
  const __m128i h = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
  _mm_storeu_si128((__m128i *)p, h);
}

/* 8 f16 (16 bytes at p) -> 8 f32, like ema_f16_to_f32. */
EMA_INLINE __m256 load_f16(const void *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }

/* 8 f32 -> 8 f16 at p, round to nearest even, like ema_f32_to_f16. */
EMA_INLINE __m128i to_f16(__m256 x) { return _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT); }

EMA_INLINE void store_f16(void *p, __m256 x) { _mm_storeu_si128((__m128i *)p, to_f16(x)); }

/* f32 -> f16 -> f32: the value rounded to float16. */
EMA_INLINE __m256 round_f16(__m256 x) { return _mm256_cvtph_ps(to_f16(x)); }

/* f32 -> bf16 -> f32: the value rounded to bfloat16. */
EMA_INLINE __m256 round_bf16(__m256 x) { return _mm256_castsi256_ps(_mm256_slli_epi32(bf16_bits(x), 16)); }

/* ---- block drivers --------------------------------------------------------
   A block is eight elements. run_op calls op on every whole block of
   (a, b) and then once more on a zero-padded stack copy of the remaining
   n % 8 elements, writing only those back into a. */

typedef void (*block_op)(void *a, const void *b, ema_coef c);

EMA_INLINE void run_op(block_op op, void *a_, size_t asz, const void *b_, size_t bsz, size_t n, ema_coef c) {
  unsigned char *a = (unsigned char *)a_;
  const unsigned char *b = (const unsigned char *)b_;
  const size_t whole = n / 8, rest = n % 8;
  for (size_t i = 0; i < whole; i++) op(a + i * 8 * asz, b + i * 8 * bsz, c);
  if (rest) {
    _Alignas(32) unsigned char ta[64] = {0};
    _Alignas(32) unsigned char tb[64] = {0};
    a += whole * 8 * asz;
    b += whole * 8 * bsz;
    memcpy(ta, a, rest * asz);
    memcpy(tb, b, rest * bsz);
    op(ta, tb, c);
    memcpy(a, ta, rest * asz);
  }
}

/* ---- update: s = s - (s - v) * om ----------------------------------------- */

EMA_INLINE __m256 ema_step_ps(__m256 s, __m256 v, __m256 om) {
  return _mm256_sub_ps(s, _mm256_mul_ps(_mm256_sub_ps(s, v), om));
}

EMA_INLINE void blk_update_f32(void *s, const void *v, ema_coef om) {
  const __m256 s0 = _mm256_loadu_ps((const float *)s);
  const __m256 v0 = _mm256_loadu_ps((const float *)v);
  _mm256_storeu_ps((float *)s, ema_step_ps(s0, v0, _mm256_set1_ps(om.f)));
}

EMA_INLINE void blk_update_f64(void *s_, const void *v_, ema_coef om) {
  double *s = (double *)s_;
  const double *v = (const double *)v_;
  const __m256d o = _mm256_set1_pd(om.d);
  for (int k = 0; k < 8; k += 4) {
    const __m256d sk = _mm256_loadu_pd(s + k);
    const __m256d vk = _mm256_loadu_pd(v + k);
    _mm256_storeu_pd(s + k, _mm256_sub_pd(sk, _mm256_mul_pd(_mm256_sub_pd(sk, vk), o)));
  }
}

EMA_INLINE void blk_update_bf16_f32(void *s, const void *v, ema_coef om) {
  const __m256 s0 = _mm256_loadu_ps((const float *)s);
  _mm256_storeu_ps((float *)s, ema_step_ps(s0, load_bf16(v), _mm256_set1_ps(om.f)));
}

EMA_INLINE void blk_update_f16_f32(void *s, const void *v, ema_coef om) {
  const __m256 s0 = _mm256_loadu_ps((const float *)s);
  _mm256_storeu_ps((float *)s, ema_step_ps(s0, load_f16(v), _mm256_set1_ps(om.f)));
}

/* Half shadows: om.f carries the coefficient already widened to f32 (see
   update_bf16_bf16 below); each operation is rounded to the half format. */
EMA_INLINE void blk_update_bf16_bf16(void *s, const void *v, ema_coef om) {
  const __m256 sf = load_bf16(s);
  const __m256 diff = round_bf16(_mm256_sub_ps(sf, load_bf16(v)));
  const __m256 prod = round_bf16(_mm256_mul_ps(diff, _mm256_set1_ps(om.f)));
  store_bf16(s, _mm256_sub_ps(sf, prod));
}

EMA_INLINE void blk_update_f16_f16(void *s, const void *v, ema_coef om) {
  const __m256 sf = load_f16(s);
  const __m256 diff = round_f16(_mm256_sub_ps(sf, load_f16(v)));
  const __m256 prod = round_f16(_mm256_mul_ps(diff, _mm256_set1_ps(om.f)));
  store_f16(s, _mm256_sub_ps(sf, prod));
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

/* ---- zero-debias read-out: a = b / f --------------------------------------- */

EMA_INLINE void blk_div_f32(void *a, const void *b, ema_coef f) {
  _mm256_storeu_ps((float *)a, _mm256_div_ps(_mm256_loadu_ps((const float *)b), _mm256_set1_ps(f.f)));
}

EMA_INLINE void blk_div_f64(void *a_, const void *b_, ema_coef f) {
  double *a = (double *)a_;
  const double *b = (const double *)b_;
  const __m256d d = _mm256_set1_pd(f.d);
  _mm256_storeu_pd(a, _mm256_div_pd(_mm256_loadu_pd(b), d));
  _mm256_storeu_pd(a + 4, _mm256_div_pd(_mm256_loadu_pd(b + 4), d));
}

/* f.f: the divisor widened to f32 by the caller below. */
EMA_INLINE void blk_div_bf16(void *a, const void *b, ema_coef f) {
  store_bf16(a, _mm256_div_ps(load_bf16(b), _mm256_set1_ps(f.f)));
}

EMA_INLINE void blk_div_f16(void *a, const void *b, ema_coef f) {
  store_f16(a, _mm256_div_ps(load_f16(b), _mm256_set1_ps(f.f)));
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

/* ---- conversions (the same-dtype copies are the reference's memcpy) --------- */

EMA_INLINE void blk_bf16_to_f32(void *d, const void *s, ema_coef unused) {
  (void)unused;
  _mm256_storeu_ps((float *)d, load_bf16(s));
}

EMA_INLINE void blk_f16_to_f32(void *d, const void *s, ema_coef unused) {
  (void)unused;
  _mm256_storeu_ps((float *)d, load_f16(s));
}

EMA_INLINE void blk_f32_to_bf16(void *d, const void *s, ema_coef unused) {
  (void)unused;
  store_bf16(d, _mm256_loadu_ps((const float *)s));
}

EMA_INLINE void blk_f32_to_f16(void *d, const void *s, ema_coef unused) {
  (void)unused;
  store_f16(d, _mm256_loadu_ps((const float *)s));
}

static const ema_coef no_coef = {0.0f};

static void bf16_to_f32(void *d, const void *s, size_t n) { run_op(blk_bf16_to_f32, d, 4, s, 2, n, no_coef); }

static void f16_to_f32(void *d, const void *s, size_t n) { run_op(blk_f16_to_f32, d, 4, s, 2, n, no_coef); }

static void f32_to_bf16(void *d, const void *s, size_t n) { run_op(blk_f32_to_bf16, d, 2, s, 4, n, no_coef); }

static void f32_to_f16(void *d, const void *s, size_t n) { run_op(blk_f32_to_f16, d, 2, s, 4, n, no_coef); }

/* ---- swap -------------------------------------------------------------------- */

static void swap_bytes(void *a_, void *b_, size_t nbytes) {
  unsigned char *a = (unsigned char *)a_, *b = (unsigned char *)b_;
  size_t i = 0;
  for (; i + 32 <= nbytes; i += 32) {
    const __m256i x = _mm256_loadu_si256((const __m256i *)(a + i));
    const __m256i y = _mm256_loadu_si256((const __m256i *)(b + i));
    _mm256_storeu_si256((__m256i *)(a + i), y);
    _mm256_storeu_si256((__m256i *)(b + i), x);
  }
  for (; i < nbytes; i++) {
    unsigned char t = a[i];
    a[i] = b[i];
    b[i] = t;
  }
}

/* The reference table with what this file implements replaced; the
   same-dtype conversions stay the reference's plain copies. */
void ema_kernels_avx2_override(ema_kernels *k) {
  k->name = "avx2";
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
