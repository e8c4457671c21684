/*
 * Kernel dispatch: the ISA is chosen once per process and kept in a const
 * table pointer; EMA_ISA=<name> forces a choice (for tests and benchmarks).
 *
 * Every optimized table is built once, here, from the reference: a copy of
 * ema_kernels_ref on which the ISA's override function replaces what its
 * file implements (BLIS builds its contexts the same way).
 *
 * An optimized table is listed only when its file was compiled in (the
 * build defines EMA_HAVE_<ISA>, see cmake/kernels.cmake), and offered only
 * when the CPU has the instructions (CPUID) *and* the OS saves the
 * registers they use across context switches (XGETBV): a CPU with AVX2
 * under an OS that does not enable YMM state must get the scalar kernels,
 * and one with AVX-512 under an OS that does not enable the opmask and ZMM
 * state (XCR0 bits 5, 6, 7) must not get the AVX-512 kernels. CPU features
 * are read once, under pthread_once.
 */
#include "kernels.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(EMA_HAVE_AVX2) || defined(EMA_HAVE_AVX512)
#define EMA_HAVE_X86 1
#include <cpuid.h>
#endif

typedef struct isa_entry {
  const char *name;
  void (*override)(ema_kernels *k); /* NULL for ref */
  int (*supported)(void);
} isa_entry;

static int always(void) { return 1; }

#if defined(EMA_HAVE_X86)
/* CPUID bits (Intel SDM vol. 2, CPUID; the same on AMD). */
#define LEAF1_ECX_OSXSAVE (1u << 27) /* OS has enabled XSAVE/XGETBV */
#define LEAF1_ECX_AVX (1u << 28)
#define LEAF1_ECX_F16C (1u << 29)
#define LEAF7_EBX_AVX2 (1u << 5)
#define LEAF7_EBX_AVX512F (1u << 16)
#define LEAF7_EBX_AVX512BW (1u << 30)
#define LEAF7_EBX_AVX512VL (1u << 31)
#define XCR0_SSE_YMM 0x6u /* XMM and upper-YMM state saved by the OS */
#define XCR0_AVX512 0xE0u /* opmask, ZMM0-15 upper halves, ZMM16-31 */

static int have_avx2_f16c = 0;
static int have_avx512 = 0;
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
  const unsigned long long xcr0 = read_xcr0();
  if ((xcr0 & XCR0_SSE_YMM) != XCR0_SSE_YMM) return;
  __cpuid_count(7, 0, a, b, c, d);
  if (!(b & LEAF7_EBX_AVX2)) return;
  have_avx2_f16c = 1;
  const unsigned int need7 = LEAF7_EBX_AVX512F | LEAF7_EBX_AVX512BW | LEAF7_EBX_AVX512VL;
  if ((b & need7) == need7 && (xcr0 & XCR0_AVX512) == XCR0_AVX512) have_avx512 = 1;
}

#if defined(EMA_HAVE_AVX2)
static int avx2_supported(void) {
  pthread_once(&cpu_once, detect_cpu);
  return have_avx2_f16c;
}
#endif
#if defined(EMA_HAVE_AVX512)
static int avx512_supported(void) {
  pthread_once(&cpu_once, detect_cpu);
  return have_avx512;
}
#endif
#endif

/* Preferred first; ref last, always supported. The default choice is the
   first supported entry, so an ISA is listed above another only where it
   measured faster: on the AMD EPYC (Zen 4) machines of 2026-12-01 the
   AVX-512 kernels ran no faster than AVX2 at the memory bound (GPT-2 small,
   ResNet-50 and 10,000 small tensors, 1 and 2 threads: bench/RESULTS.md),
   so avx2 stays the default and avx512 is chosen only by EMA_ISA=avx512
   (its detection requires everything avx2 needs, so it is never the only
   choice). Move it up where a measurement shows it faster. */
static const isa_entry isa_list[] = {
#if defined(EMA_HAVE_AVX2)
    {"avx2", ema_kernels_avx2_override, avx2_supported},
#endif
#if defined(EMA_HAVE_AVX512)
    {"avx512", ema_kernels_avx512_override, avx512_supported},
#endif
    {"ref", NULL, always},
};

#define ISA_COUNT (sizeof isa_list / sizeof isa_list[0])

static ema_kernels tables[ISA_COUNT];
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

/* Only for ISAs this CPU and OS support: the override functions are
   compiled with their ISA's flags and may use its instructions themselves. */
static void build_tables(void) {
  for (size_t i = 0; i < ISA_COUNT; i++) {
    tables[i] = ema_kernels_ref;
    if (isa_list[i].override && isa_list[i].supported()) isa_list[i].override(&tables[i]);
  }
}

static const ema_kernels *table_of(size_t i) {
  if (!isa_list[i].override) return &ema_kernels_ref;
  pthread_once(&tables_once, build_tables);
  return &tables[i];
}

const ema_kernels *ema_kernels_by_name(const char *name) {
  if (!name) return NULL;
  for (size_t i = 0; i < ISA_COUNT; i++)
    if (strcmp(isa_list[i].name, name) == 0) return isa_list[i].supported() ? table_of(i) : NULL;
  return NULL;
}

static const ema_kernels *chosen = NULL;
static pthread_once_t chosen_once = PTHREAD_ONCE_INIT;

static void choose(void) {
  const char *want = getenv("EMA_ISA");
  const ema_kernels *k = (want && *want) ? ema_kernels_by_name(want) : NULL;
  for (size_t i = 0; i < ISA_COUNT && !k; i++)
    if (isa_list[i].supported()) k = table_of(i);
  chosen = k;
}

const ema_kernels *ema_kernels_best(void) {
  pthread_once(&chosen_once, choose);
  return chosen;
}

const char *ema_kernels_chosen_name(void) { return ema_kernels_best()->name; }
