/*
 * Kernel dispatch: the ISA is chosen once per process and kept in a const
 * table pointer; EMA_ISA=<name> forces a choice (for tests and benchmarks).
 */
#include "kernels.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct isa_entry {
  const char *name;
  const ema_kernels *table;
  int (*supported)(void);
} isa_entry;

static int always(void) { return 1; }

/* Best first. Optimized ISAs are added here as they are written. */
static const isa_entry isa_list[] = {
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
