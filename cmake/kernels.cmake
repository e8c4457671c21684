# Per-ISA kernel files, included by the top-level CMakeLists.txt after it has
# set EMA_KERNEL_SOURCES (ref.c and dispatch.c). Each optimized kernel file is
# appended here and is the only file that gets that ISA's flags; the rest of
# the library stays baseline so the binary runs on any CPU of the target
# architecture, and dispatch.c picks the kernels at run time. Never -mfma
# (the update must not be fused) and never -march=native.

include(CheckCSourceCompiles)

# Included from the top-level CMakeLists.txt: paths as it spells them, so
# that source file properties attach to the same files.
set(_ema_kernel_dir ${CMAKE_CURRENT_SOURCE_DIR}/src/kernels)

# AVX2 + F16C: x86-64 only, with a GCC-compatible compiler (the flags, the
# inline xgetbv and <cpuid.h> in dispatch.c are GCC/Clang syntax).
set(_ema_x86_64 OFF)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64|x64)$" AND CMAKE_SIZEOF_VOID_P EQUAL 8)
  set(_ema_x86_64 ON)
endif()
if(_ema_x86_64 AND CMAKE_C_COMPILER_ID MATCHES "^(GNU|Clang|AppleClang)$")
  set(_ema_saved_flags "${CMAKE_REQUIRED_FLAGS}")
  set(CMAKE_REQUIRED_FLAGS "${CMAKE_REQUIRED_FLAGS} -mavx2 -mf16c")
  check_c_source_compiles([=[
#include <immintrin.h>
#include <cpuid.h>
int main(void) {
  unsigned int a, b, c, d;
  __cpuid_count(7, 0, a, b, c, d);
  __m256 x = _mm256_cvtph_ps(_mm_set1_epi16((short)b));
  __m256i y = _mm256_add_epi32(_mm256_castps_si256(x), _mm256_set1_epi32((int)a));
  return _mm256_extract_epi32(y, 1) == 7;
}]=] EMA_CC_HAS_AVX2_F16C)
  set(CMAKE_REQUIRED_FLAGS "${_ema_saved_flags}")
  if(EMA_CC_HAS_AVX2_F16C)
    list(APPEND EMA_KERNEL_SOURCES ${_ema_kernel_dir}/x86/avx2.c)
    set_source_files_properties(${_ema_kernel_dir}/x86/avx2.c
      PROPERTIES COMPILE_OPTIONS "-mavx2;-mf16c")
    # dispatch.c lists the avx2 table only when x86/avx2.c is compiled in.
    set_property(SOURCE ${_ema_kernel_dir}/dispatch.c APPEND
      PROPERTY COMPILE_DEFINITIONS EMA_HAVE_AVX2=1)
  endif()
endif()

# AVX-512 F/BW/VL: the same conditions, plus a compiler that has the
# intrinsics. Only x86/avx512.c gets these flags; none of them lets the
# compiler emit an FMA (and the library is built with -ffp-contract=off).
if(_ema_x86_64 AND CMAKE_C_COMPILER_ID MATCHES "^(GNU|Clang|AppleClang)$")
  set(_ema_saved_flags "${CMAKE_REQUIRED_FLAGS}")
  set(CMAKE_REQUIRED_FLAGS "${CMAKE_REQUIRED_FLAGS} -mavx512f -mavx512bw -mavx512vl")
  check_c_source_compiles([=[
#include <immintrin.h>
int main(void) {
  __m256i h = _mm256_maskz_loadu_epi16((__mmask16)3, "0123456789abcdef0123456789abcdef");
  __m512 x = _mm512_cvtph_ps(h);
  __m512i y = _mm512_add_epi32(_mm512_castps_si512(x), _mm512_set1_epi32(1));
  _mm256_mask_storeu_epi16(&h, (__mmask16)1, _mm512_cvtepi32_epi16(y));
  return _mm512_cmpgt_epi32_mask(y, _mm512_setzero_si512()) == 7;
}]=] EMA_CC_HAS_AVX512)
  set(CMAKE_REQUIRED_FLAGS "${_ema_saved_flags}")
  if(EMA_CC_HAS_AVX512)
    list(APPEND EMA_KERNEL_SOURCES ${_ema_kernel_dir}/x86/avx512.c)
    set_source_files_properties(${_ema_kernel_dir}/x86/avx512.c
      PROPERTIES COMPILE_OPTIONS "-mavx512f;-mavx512bw;-mavx512vl")
    set_property(SOURCE ${_ema_kernel_dir}/dispatch.c APPEND
      PROPERTY COMPILE_DEFINITIONS EMA_HAVE_AVX512=1)
  endif()
endif()
