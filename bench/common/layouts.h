/* Parameter layouts shared by the benchmarks (bench/common/layouts.c): the
   shapes of real models' parameters, as a framework allocates them. */
#ifndef EMA_BENCH_LAYOUTS_H
#define EMA_BENCH_LAYOUTS_H

#include <stddef.h>
#include <stdint.h>

typedef struct shape {
  int ndim;
  int64_t dim[4];
} shape;

typedef struct layout {
  const char *name;
  shape *shapes; /* malloc'ed; free(shapes) when done */
  size_t count, cap;
} layout;

typedef struct layout_def {
  const char *name;
  void (*build)(layout *);
  size_t count, numel; /* asserted totals of the full-size layout */
  size_t quick_div;    /* --quick: every tensor shrinks to ceil(numel/div) */
} layout_def;

/* "flat" (one tensor of 100M floats), "small" (10,000 x 1,000), "resnet50"
   (torchvision), "gpt2" (Hugging Face GPT-2 small), in that order. */
#define NLAYOUTS 4
extern const layout_def layout_defs[NLAYOUTS];

size_t shape_numel(const shape *s);
size_t layout_numel(const layout *l);

/* Build a layout, check its totals (exit(1) with a message if they are
   wrong), and shrink it for quick (each tensor becomes 1-D with
   ceil(numel/div) elements: same count, same spread). */
layout make_layout(const layout_def *def, int quick);

/* The layout_defs entry of that name, or NULL. */
const layout_def *find_layout(const char *name);

#endif
