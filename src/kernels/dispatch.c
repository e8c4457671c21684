/*
 * Kernel dispatch: the ISA is chosen once per process and kept in a const
 * table pointer; EMA_ISA=<name> forces a choice (for tests and benchmarks).
 *
 * An optimized table is listed only when its file was compiled in (the
 * build defines EMA_HAVE_<ISA>, see cmake/kernels.cmake), and offered only
 * when the CPU has the instructions (CPUID) *and* the OS saves the
 * registers they use across context switches (XGETBV): a CPU with AVX2
 * under an OS that does not enable YMM state must get the scalar kernels.
 * CPU features are read once, under pthread_once.
 */
#include "kernels.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(EMA_HAVE_AVX2)
#include <cpuid.h>
#endif

typedef struct isa_entry {
  const char *name;
  const ema_kernels *table;
  int (*supported)(void);
} isa_entry;

static int always(void) { return 1; }

#if defined(EMA_HAVE_AVX2)
/* CPUID bits (Intel SDM vol. 2, CPUID; the same on AMD). */
#define LEAF1_ECX_OSXSAVE (1u << 27) /* OS has enabled XSAVE/XGETBV */
#define LEAF1_ECX_AVX (1u << 28)
#define LEAF1_ECX_F16C (1u << 29)
#define LEAF7_EBX_AVX2 (1u << 5)
#define XCR0_SSE_YMM 0x6u /* XMM and upper-YMM state saved by the OS */

static int have_avx2_f16c = 0;
static pthread_once_t cpu_once = PTHREAD_ONCE_INIT;

static unsigned long long read_xcr0(void) {
  unsigned int lo, hi;
  /* inline asm rather than _xgetbv(), which would need -mxsave here */
  __asm__ __volatile__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0u));
  return ((unsigned long long)hi << 32) | lo;
}

static void detect_cpu(void) {
  unsigned int a, b, c, d;
  if (__get_cpuid_max(0, NULL) < 7) return;
  __cpuid_count(1, 0, a, b, c, d);
  const unsigned int need1 = LEAF1_ECX_OSXSAVE | LEAF1_ECX_AVX | LEAF1_ECX_F16C;
  if ((c & need1) != need1) return;
  if ((read_xcr0() & XCR0_SSE_YMM) != XCR0_SSE_YMM) return;
  __cpuid_count(7, 0, a, b, c, d);
  if (!(b & LEAF7_EBX_AVX2)) return;
  have_avx2_f16c = 1;
}

static int avx2_supported(void) {
  pthread_once(&cpu_once, detect_cpu);
  return have_avx2_f16c;
}
#endif

/* Best first; ref last, always supported. */
static const isa_entry isa_list[] = {
#if defined(EMA_HAVE_AVX2)
    {"avx2", &ema_kernels_avx2, avx2_supported},
#endif
    {"ref", &ema_kernels_ref, always},
};

static const ema_kernels *chosen = NULL;
static pthread_once_t chosen_once = PTHREAD_ONCE_INIT;

const ema_kernels *ema_kernels_by_name(const char *name) {
  if (!name) return NULL;
  for (size_t i = 0; i < sizeof isa_list / sizeof isa_list[0]; i++)
    if (strcmp(isa_list[i].name, name) == 0) return isa_list[i].supported() ? isa_list[i].table : NULL;
  return NULL;
}

static void choose(void) {
  const char *want = getenv("EMA_ISA");
  const ema_kernels *k = (want && *want) ? ema_kernels_by_name(want) : NULL;
  if (!k) {
    for (size_t i = 0; i < sizeof isa_list / sizeof isa_list[0] && !k; i++)
      if (isa_list[i].supported()) k = isa_list[i].table;
  }
  chosen = k;
}

const ema_kernels *ema_kernels_best(void) {
  pthread_once(&chosen_once, choose);
  return chosen;
}

const char *ema_kernels_chosen_name(void) { return ema_kernels_best()->name; }
