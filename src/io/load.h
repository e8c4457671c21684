/*
 * src/io/load.h: the checkpoint loader shared by ema_load and
 * ema_load_averages_into_model (load.c, load_meta.c). Private to src/io.
 *
 * A load runs in three phases: plan (find every tensor the context needs,
 * check dtypes and shapes, parse the metadata into the loader), stage (read
 * every byte needed into one staging buffer and verify the checksum) and
 * commit (copy from the staging buffer into the context; cannot fail). A
 * failure in the first two changes nothing.
 */
#ifndef EMA_IO_LOAD_H
#define EMA_IO_LOAD_H

#include "io/ckpt.h"

/* What to copy where once everything is validated and staged. */
typedef struct load_item {
  const st_tensor *src;
  ema_tensor *t;
  int dest;                  /* LD_* */
  size_t k;                  /* average of the bank */
  size_t staged;             /* offset in the staging buffer */
  const unsigned char *from; /* its bytes once staged (the commit copies from here) */
} load_item;

enum { LD_MODEL, LD_SHADOW, LD_AVERAGE, LD_STEPS, LD_PROD, LD_MODEL_FROM_SHADOW, LD_KEEP, LD_KEEP_SAME };

typedef struct loader {
  ema_ctx *ctx;
  const char *fn;
  const char *what; /* "'<path>'" or "the buffer", for messages */
  const void *buf;  /* a checkpoint in memory (NULL: a file); with parts, its head */
  size_t buf_len;
  const ema_bytes *parts; /* the data section in pieces (ema_load_state_parts), or NULL */
  size_t n_parts;
  int state_only; /* the model tensors are not in it (ema_load_state_buffer) */
  st_file *f;
  load_item *items;
  size_t n;
  unsigned char *stage; /* the staging buffer of a load from a file (NULL from memory) */
  const char *ema_name; /* the file's EMA name, or the context's */
  signed char *fpol;    /* per registered tensor: the policy the file records, -1 none */
  /* ema_load: the EMA state read from the metadata, committed at the end */
  ema_avg avg[EMA_MAX_AVERAGES];
  size_t n_avg;
  int64_t num_updates, last_step;
} loader;

/* Find key and check its dtype (want or also) and shape (t's, or a scalar),
   then plan its copy to dest. role names it in messages. */
ema_status load_expect(loader *L, const char *key, ema_tensor *t, ema_dtype want, ema_dtype also, int scalar, int dest,
                       size_t k, const char *role);

/* The policies the file records ("ema.policy.<name>") into L->fpol. */
ema_status load_read_policies(loader *L);

/* Registered tensor i must have been saved with its policy: the recorded
   one, else AVERAGE when the file has avg_key, else COPY. EMA_E_MISMATCH. */
ema_status load_check_policy(loader *L, size_t i, const char *avg_key);

/* ema_load's metadata: EMA state, bank names and schedules into L. */
ema_status load_read_state(loader *L);

/* One load: the hooks plan (after the file is open and checked), check (after
   staging; may be NULL) and commit (cannot fail). */
typedef struct load_ops {
  ema_status (*plan)(loader *L);
  ema_status (*check)(loader *L);
  void (*commit)(loader *L);
  int in_place; /* commit only memcpy's staged bytes: a checkpoint in memory is its own staging */
} load_ops;

/* Where a checkpoint comes from: path, or buf[0..len) when path is NULL;
   with parts, buf[0..len) is its length and header and the data section is
   parts[0..n_parts) back to back. */
typedef struct load_src {
  const char *path;
  const void *buf;
  size_t len;
  int state_only; /* the model tensors are neither expected nor loaded */
  const ema_bytes *parts;
  size_t n_parts;
} load_src;

ema_status load_run(ema_ctx *ctx, const load_src *src, const char *fn, const load_ops *ops);

#endif /* EMA_IO_LOAD_H */
