/*
 * src/io/ckpt.h: what the checkpoint files of src/io share (save.c, load.c,
 * load_meta.c, export.c, ckpt_common.c). Private to src/io.
 *
 * One checkpoint holds, for every registered tensor <n>:
 *   <n>                       the model values (model dtype)
 *   <n>/<ema>                 the average (shadow dtype; debiased with zero_debias)
 *   <n>/<ema>/biased          zero_debias only: the biased accumulator
 *   <n>/<ema>/local_step      zero_debias only: int64 scalar, updates so far
 *   <n>/<ema>/decay_product   zero_debias only: f64 scalar, product of the decays
 * (<ema> is an average's name, "ExponentialMovingAverage" by default; the
 * names are TensorFlow's), COPY tensors under their own name only, KEEP
 * tensors under their own name and, frozen copy in the model dtype, under
 * <n>/<ema> of every member, and the EMA state in __metadata__.
 * docs/checkpoints.md is the full description.
 */
#ifndef EMA_IO_CKPT_H
#define EMA_IO_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "core/internal.h"
#include "io/safetensors.h"

#define CKPT_FORMAT_VERSION "1"

/* Metadata "ema.policy.<tensor name>" = "copy" or "keep": the policy of
   every tensor that is not averaged. Without it (0.1 files), a tensor with
   an average key is AVERAGE and one without is COPY. */
#define CKPT_POLICY_PREFIX "ema.policy."

/* "<a>/<b>" or "<a>/<b>/<c>" (c may be NULL), from ema__malloc; NULL when
   memory ran out. */
char *ckpt_join3(const char *a, const char *b, const char *c);

/* The checkpoint keys of average `ename` of tensor `name`: "<name>/<ename>",
   and with zero_debias its accumulator and counters (the table above).
   Returns how many were made (1 or 4), or 0 when memory ran out, with
   nothing left allocated. free() each key. */
int ckpt_state_keys(const char *name, const char *ename, int debias, char *keys[4]);

/* A string that came from a file, for a message: ema_escape'd (control and
   non-printable bytes as \xNN, at most 64 bytes then "...") in single
   quotes. dst holds CKPT_QUOTE_CAP bytes. */
#define CKPT_QUOTE_CAP 256
void ckpt_quote(char *dst, size_t cap, const char *s);

/* ctx's message "<fn>: <err>" and st. */
ema_status ckpt_fail(const ema_ctx *ctx, ema_status st, const char *fn, const char *err);

/* Metadata being built for a write: fixed keys plus a block per average. */
enum {
  CKPT_META_FIXED = 9,
  CKPT_META_PER_AVG = 10,
  CKPT_META_CAP = CKPT_META_FIXED + CKPT_META_PER_AVG * EMA_MAX_AVERAGES
};
typedef struct ckpt_meta {
  st_wmeta m[CKPT_META_CAP];
  char keys[CKPT_META_CAP][64];
  char vals[CKPT_META_CAP][48];
  size_t n;
} ckpt_meta;

void ckpt_meta_add(ckpt_meta *mb, const char *key, const char *value); /* value borrowed */
void ckpt_meta_addf(ckpt_meta *mb, const char *key, double v);         /* "%.17g" */
void ckpt_meta_addi(ckpt_meta *mb, const char *key, int64_t v);
/* ema.averages and the ema.average.<k>.* block of every average. */
void ckpt_meta_schedules(ckpt_meta *mb, const ema_ctx *ctx);

/* The 0.1 checksum ("libema.checksum"): an order-independent sum over
   tensors of a digest of (name, bytes). Kept to verify old checkpoints. */
typedef struct ckpt_legacy_hash {
  uint64_t lane[4];
  unsigned char tail[32];
  size_t tail_len;
  uint64_t total;
} ckpt_legacy_hash;
void ckpt_legacy_init(ckpt_legacy_hash *h);
void ckpt_legacy_update(ckpt_legacy_hash *h, const void *data, size_t n);
/* The term tensor `name` whose bytes went through h adds to the sum. */
uint64_t ckpt_legacy_term(const char *name, const ckpt_legacy_hash *h);

#endif /* EMA_IO_CKPT_H */
