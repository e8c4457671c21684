/*
 * src/dist/dist.h: what the files of src/dist share (sharded tensors,
 * communication helpers, the save/load plan, box geometry, the manifest).
 * Private to src/dist.
 */
#ifndef EMA_SRC_DIST_H
#define EMA_SRC_DIST_H

#include "core/internal.h"
#include "ema/dist.h"
#include "common/xxh64.h"
#include "io/safetensors.h"

#define DIST_MANIFEST "manifest.json"
#define DIST_FORMAT "libema-sharded"
#define DIST_FORMAT_VERSION 1
#define DIST_ID_LEN 16 /* hex digits of a checkpoint id */

/* The box of a global tensor a rank holds (ema_tensor.shard). One malloc. */
struct ema_shard {
  int64_t global[EMA_MAX_DIMS];
  int64_t offset[EMA_MAX_DIMS];
};

/* ---- communication (comm.c); a NULL comm is a world of one ---------------- */
ema_status dc_check(const ema_ctx *ctx, const ema_comm *c, const char *fn);
int dc_rank(const ema_comm *c);
int dc_size(const ema_comm *c);
ema_status dc_bcast(const ema_comm *c, void *buf, size_t len, int root);
/* Every rank's block of any length: *all gets them back to back (free()),
   off[r] and len[r] (size entries each, free()) where rank r's starts. */
ema_status dc_allgatherv(const ema_comm *c, const void *send, size_t len, unsigned char **all, size_t **off,
                         size_t **lens);
/* Every rank contributes its status; returns the first failing rank's
   status (rank order), *bad its rank (-1 when all are EMA_OK). A comm
   failure is returned as such. */
ema_status dc_agree(const ema_comm *c, ema_status mine, int *bad);

/* Checksums are XXH64 (seed 0, src/common/xxh64.h), as ema_save's
   libema.xxh64: of each chunk's bytes in the manifest, of the data section
   in a consolidated file. These __metadata__ keys cover a whole file, which
   no rank holds: empty in the manifest's state, left out of shard files,
   computed by consolidation. */
#define DIST_SUM_KEY "libema.xxh64"
int dist_is_sum_key(const char *key);

/* ---- the saved entries of a context (plan.c) ----------------------------- */
enum { DR_MODEL, DR_AVG, DR_BIASED, DR_STEPS, DR_PROD };

typedef struct dist_entry {
  char *key; /* owned: "<n>", "<n>/<ema>", "<n>/<ema>/biased", ... */
  ema_tensor *t;
  int role; /* DR_* */
  size_t k; /* member of the bank */
  ema_dtype dtype;
  int ndim;    /* 0 for the zero-debias scalars */
  int sharded; /* the tensor is a shard (its box may be a part) */
  int64_t global[EMA_MAX_DIMS], offset[EMA_MAX_DIMS], local[EMA_MAX_DIMS];
  void *data; /* the local bytes */
  size_t nbytes;
} dist_entry;

/* Keys of member names[k] of tensor t as ema_save names them (ema_save's
   table); for_model: the keys ema_load_averages_into_model reads (the
   average of member `active` under the name active_name, or the model
   values of replicated state). EMA_E_NOMEM or EMA_OK. */
ema_status dist_plan(const ema_ctx *ctx, int for_model, const char *active_name, dist_entry **out, size_t *n);
void dist_plan_free(dist_entry *e, size_t n);
const char *dist_role_name(int role);

/* ---- boxes (box.c) -------------------------------------------------------- */
uint64_t box_volume(int ndim, const int64_t *shape);
/* Intersection of boxes a and b: 1 and (off, shape) when not empty. */
int box_intersect(int ndim, const int64_t *aoff, const int64_t *ashape, const int64_t *boff, const int64_t *bshape,
                  int64_t *off, int64_t *shape);
/* Visit the intersection box (ioff, ishape) as contiguous runs: fn gets the
   byte offset of each run in the src box (soff, sshape) and in the dst box,
   and its length, in increasing order in both. esize bytes per element. */
typedef ema_status (*box_run_fn)(void *user, uint64_t src_byte, uint64_t dst_byte, uint64_t len);
ema_status box_runs(int ndim, const int64_t *ioff, const int64_t *ishape, const int64_t *soff, const int64_t *sshape,
                    const int64_t *doff, const int64_t *dshape, size_t esize, box_run_fn fn, void *user);

/* ---- files (fsio.c) ------------------------------------------------------ */
/* Write buf to dir/name atomically (temporary, fsync, rename, fsync dir). */
ema_status fs_write_atomic(const char *dir, const char *name, const void *buf, size_t len, char *err, size_t cap);
/* Read dir/name whole (at most max bytes) into *out (free()). */
ema_status fs_read_all(const char *dir, const char *name, size_t max, char **out, size_t *len, char *err, size_t cap);
char *fs_join(const char *dir, const char *name); /* free() */
/* 1 when name is a plain file name inside a directory: not empty, no '/',
   no '\\', not "." or "..", no leading '.', at most 255 bytes. */
int fs_safe_name(const char *name);
/* A new checkpoint id: DIST_ID_LEN hex digits and a NUL. */
void fs_new_id(char *out);

#endif
