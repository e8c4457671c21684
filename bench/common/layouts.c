/*
 * Parameter layouts shared by the benchmarks: one flat tensor, 10,000 small
 * tensors, and the parameter shapes of ResNet-50 and GPT-2 small.
 */
#include "layouts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void add_shape(layout *l, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
  if (l->count == l->cap) {
    l->cap = l->cap ? 2 * l->cap : 256;
    shape *ns = (shape *)realloc(l->shapes, l->cap * sizeof *ns);
    if (!ns) {
      fprintf(stderr, "bench: out of memory\n");
      exit(1);
    }
    l->shapes = ns;
  }
  shape *s = &l->shapes[l->count++];
  s->ndim = ndim;
  s->dim[0] = d0;
  s->dim[1] = d1;
  s->dim[2] = d2;
  s->dim[3] = d3;
}

size_t shape_numel(const shape *s) {
  size_t n = 1;
  for (int i = 0; i < s->ndim; i++) n *= (size_t)s->dim[i];
  return n;
}

size_t layout_numel(const layout *l) {
  size_t n = 0;
  for (size_t i = 0; i < l->count; i++) n += shape_numel(&l->shapes[i]);
  return n;
}

static void expect_totals(const layout *l, size_t count, size_t numel) {
  if (l->count != count || layout_numel(l) != numel) {
    fprintf(stderr, "bench: layout %s has %zu tensors / %zu params, expected %zu / %zu\n", l->name, l->count,
            layout_numel(l), count, numel);
    exit(1);
  }
}

static void build_flat(layout *l) { add_shape(l, 1, 100000000, 0, 0, 0); }

static void build_small(layout *l) {
  for (int i = 0; i < 10000; i++) add_shape(l, 1, 1000, 0, 0, 0);
}

/* torchvision resnet50: conv weights are [out, in, kh, kw]; every BatchNorm
   has a weight and a bias (running statistics are buffers, not parameters). */
static void bn(layout *l, int64_t c) {
  add_shape(l, 1, c, 0, 0, 0);
  add_shape(l, 1, c, 0, 0, 0);
}

static void build_resnet50(layout *l) {
  static const int64_t planes[4] = {64, 128, 256, 512};
  static const int blocks[4] = {3, 4, 6, 3};
  add_shape(l, 4, 64, 3, 7, 7); /* conv1 */
  bn(l, 64);
  int64_t inplanes = 64;
  for (int s = 0; s < 4; s++) {
    int64_t p = planes[s];
    for (int b = 0; b < blocks[s]; b++) {
      add_shape(l, 4, p, inplanes, 1, 1); /* conv1 1x1 */
      bn(l, p);
      add_shape(l, 4, p, p, 3, 3); /* conv2 3x3 */
      bn(l, p);
      add_shape(l, 4, 4 * p, p, 1, 1); /* conv3 1x1, expansion 4 */
      bn(l, 4 * p);
      if (b == 0) {
        add_shape(l, 4, 4 * p, inplanes, 1, 1); /* downsample conv */
        bn(l, 4 * p);
      }
      inplanes = 4 * p;
    }
  }
  add_shape(l, 2, 1000, 2048, 0, 0); /* fc weight */
  add_shape(l, 1, 1000, 0, 0, 0);    /* fc bias */
}

/* Hugging Face GPT-2 small (Conv1D weights are [in, out]), lm_head tied to
   wte so not a separate parameter. */
static void build_gpt2(layout *l) {
  const int64_t d = 768;
  add_shape(l, 2, 50257, d, 0, 0); /* wte */
  add_shape(l, 2, 1024, d, 0, 0);  /* wpe */
  for (int b = 0; b < 12; b++) {
    bn(l, d);                        /* ln_1 weight, bias */
    add_shape(l, 2, d, 3 * d, 0, 0); /* attn.c_attn.weight */
    add_shape(l, 1, 3 * d, 0, 0, 0); /* attn.c_attn.bias */
    add_shape(l, 2, d, d, 0, 0);     /* attn.c_proj.weight */
    add_shape(l, 1, d, 0, 0, 0);     /* attn.c_proj.bias */
    bn(l, d);                        /* ln_2 weight, bias */
    add_shape(l, 2, d, 4 * d, 0, 0); /* mlp.c_fc.weight */
    add_shape(l, 1, 4 * d, 0, 0, 0); /* mlp.c_fc.bias */
    add_shape(l, 2, 4 * d, d, 0, 0); /* mlp.c_proj.weight */
    add_shape(l, 1, d, 0, 0, 0);     /* mlp.c_proj.bias */
  }
  bn(l, d); /* ln_f weight, bias */
}

const layout_def layout_defs[NLAYOUTS] = {
    {"flat", build_flat, 1, 100000000, 64},
    {"small", build_small, 10000, 10000000, 10},
    {"resnet50", build_resnet50, 161, 25557032, 64},
    {"gpt2", build_gpt2, 148, 124439808, 64},
};

layout make_layout(const layout_def *def, int quick) {
  layout l = {def->name, NULL, 0, 0};
  def->build(&l);
  expect_totals(&l, def->count, def->numel);
  if (quick) {
    for (size_t i = 0; i < l.count; i++) {
      size_t n = shape_numel(&l.shapes[i]);
      l.shapes[i].ndim = 1;
      l.shapes[i].dim[0] = (int64_t)((n + def->quick_div - 1) / def->quick_div);
    }
  }
  return l;
}

const layout_def *find_layout(const char *name) {
  for (size_t i = 0; i < NLAYOUTS; i++)
    if (strcmp(layout_defs[i].name, name) == 0) return &layout_defs[i];
  return NULL;
}
