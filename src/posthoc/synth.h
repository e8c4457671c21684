/*
 * synth.h: internals of ema_posthoc_synthesize, shared by synth.c (checks
 * and the fits: everything before the first byte is written) and
 * synth_write.c (the one-pass writers).
 */
#ifndef EMA_POSTHOC_SYNTH_H
#define EMA_POSTHOC_SYNTH_H

#include <pthread.h>

#include "ema/file.h"
#include "ema/posthoc.h"

/* Elements combined at a time: the accumulators of one target. */
#define SY_SUB ((size_t)1 << 16)
/* Largest chunk ema_file_write_stream asks its producer for. */
#define SY_CHUNK ((size_t)1 << 20)

typedef struct sy_snap {
  const char *path; /* borrowed */
  int64_t t;
  double gamma;
  ema_file *f; /* open while writing when some target uses it */
} sy_snap;

struct sy_job;

typedef struct sy_target {
  struct sy_job *job;
  ema_posthoc_target *in; /* the caller's */
  double *coef;           /* n_snapshots coefficients */
  size_t latest;          /* latest snapshot used: integer tensors come from it */
  double gamma;           /* the plan: exponent, step and fit */
  int64_t step;
  ema_posthoc_info info;
  double *acc; /* SY_SUB accumulators */
  /* the writer's request of the current round */
  int waiting;
  size_t k;
  uint64_t off;
  size_t len;
  void *dst;
  ema_status st; /* result of the round for this writer */
  /* the writer */
  pthread_t thread;
  int started;
  ema_status wst;
  char werr[512];
} sy_target;

typedef struct sy_job {
  sy_snap *snaps;
  size_t n;
  sy_target *tg;
  size_t nt;
  ema_file *ref; /* snapshots[0], open from the checks to the end */
  ema_file_entry *entries;
  size_t ne;
  unsigned char *window; /* one window of one snapshot */
  double *dwin;          /* that window in double */
  const char **meta;     /* per target: 2 * SY_META strings */
  char **meta_heap;      /* per target: the strings to free */
  /* rendezvous of the writers (one round = one chunk of every output) */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  size_t active, arrived;
  uint64_t generation;
  ema_status failed; /* first error of a round or a writer; EMA_OK while none */
  char fail_msg[512];
} sy_job;

enum { SY_META = 9 }; /* metadata entries of an output */

/* A string that came from a file, escaped for a message into buf
   (ema_escape: control and non-printable bytes as \xNN, at most 64 bytes
   then "..."); returns buf. */
const char *ema__sy_escape(const char *s, char *buf, size_t cap);

/* Write every target's output in one pass over the open snapshots. */
ema_status ema__sy_write_all(sy_job *job, char *err, size_t errcap);

#endif
