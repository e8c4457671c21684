/*
 * tests/dist/test_dist.c: sharded EMA at world sizes 1 to 4, with ranks as
 * threads of one process (thread_comm.h): bitwise equality with the
 * unsharded run, uneven and empty shards, resharding 4 -> 3 -> 1 continuing
 * bit for bit, zero_debias, and disagreeing ranks refused.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "dist/model.h"
#include "dist/thread_comm.h"

static char tmp[256];

typedef struct job {
  mrank m;
  const ema_comm *comm;
  const char *dir;
  int world, rank, op; /* OP_* */
  uint32_t from, to;   /* steps */
  mopts o;
  ema_status st;
  char err[512];
} job;

enum { OP_INIT, OP_TRAIN, OP_SAVE, OP_LOAD, OP_LOAD_MODEL, OP_FREE };

static void *run_job(void *arg) {
  job *j = (job *)arg;
  j->st = EMA_OK;
  switch (j->op) {
    case OP_INIT:
      j->st = m_init(&j->m, j->world, j->rank, &j->o) ? EMA_E_NOMEM : EMA_OK;
      break;
    case OP_TRAIN:
      for (uint32_t s = j->from; s <= j->to && j->st == EMA_OK; s++) j->st = m_step(&j->m, s) ? EMA_E_STATE : EMA_OK;
      break;
    case OP_SAVE:
      j->st = ema_save_sharded(j->m.ctx, j->dir, j->comm);
      break;
    case OP_LOAD:
      j->st = ema_load_sharded(j->m.ctx, j->dir, j->comm);
      break;
    case OP_LOAD_MODEL:
      j->st = ema_load_sharded_averages_into_model(j->m.ctx, j->dir, j->comm);
      break;
    case OP_FREE:
      m_free(&j->m);
      break;
  }
  if (j->st != EMA_OK && j->m.ctx) snprintf(j->err, sizeof j->err, "%s", ema_last_error(j->m.ctx));
  return NULL;
}

/* A world of w ranks (w == 1 uses comm NULL). */
typedef struct world {
  int w;
  tc_world tw;
  job j[TC_MAX];
} world;

static void world_init(world *W, int w, int zero_debias) {
  memset(W, 0, sizeof *W);
  W->w = w;
  tc_init(&W->tw, w);
  for (int r = 0; r < w; r++) {
    W->j[r].world = w;
    W->j[r].rank = r;
    W->j[r].comm = w == 1 ? NULL : &W->tw.comm[r];
    W->j[r].o.sharded = 1;
    W->j[r].o.zero_debias = zero_debias;
  }
}

/* Run op on every rank; returns the status all ranks returned, or -1 when
   they disagree. */
static int world_op(world *W, int op, const char *dir, uint32_t from, uint32_t to) {
  void *args[TC_MAX];
  for (int r = 0; r < W->w; r++) {
    W->j[r].op = op;
    W->j[r].dir = dir;
    W->j[r].from = from;
    W->j[r].to = to;
    args[r] = &W->j[r];
  }
  tc_run(W->w, run_job, args);
  for (int r = 1; r < W->w; r++)
    if (W->j[r].st != W->j[0].st) return -1;
  if (W->j[0].st != EMA_OK && getenv("EMA_TEST_VERBOSE")) fprintf(stderr, "  (rank 0: %s)\n", W->j[0].err);
  return (int)W->j[0].st;
}

static long world_diff(world *W, const mrank *ref) {
  long bad = 0;
  for (int r = 0; r < W->w; r++) bad += m_diff(&W->j[r].m, ref);
  return bad;
}

static void world_free(world *W) {
  world_op(W, OP_FREE, NULL, 0, 0);
  tc_destroy(&W->tw);
}

static char *path(const char *name) {
  static char buf[8][512];
  static int i;
  char *p = buf[i++ % 8];
  snprintf(p, 512, "%s/%s", tmp, name);
  return p;
}

/* Save at 4, load at 3, train, save, load at 1, train: bitwise equal to
   one unsharded run throughout. */
static void test_reshard(int zero_debias) {
  mrank ref;
  mopts ro = {zero_debias, 0};
  CHECK(m_init(&ref, 1, 0, &ro) == 0);
  world A, B, C;
  world_init(&A, 4, zero_debias);
  CHECK(world_op(&A, OP_INIT, NULL, 0, 0) == EMA_OK);
  CHECK(world_op(&A, OP_TRAIN, NULL, 1, 5) == EMA_OK);
  for (uint32_t s = 1; s <= 5; s++) CHECK(m_step(&ref, s) == 0);
  CHECK(world_diff(&A, &ref) == 0);
  const char *d4 = path(zero_debias ? "zd4" : "ck4"), *d3 = path(zero_debias ? "zd3" : "ck3");
  CHECK(world_op(&A, OP_SAVE, d4, 0, 0) == EMA_OK);
  world_free(&A);

  world_init(&B, 3, zero_debias);
  CHECK(world_op(&B, OP_INIT, NULL, 0, 0) == EMA_OK);
  CHECK(world_diff(&B, &ref) != 0); /* fresh: not the trained state */
  CHECK(world_op(&B, OP_LOAD, d4, 0, 0) == EMA_OK);
  CHECK(world_diff(&B, &ref) == 0);
  CHECK(world_op(&B, OP_TRAIN, NULL, 6, 8) == EMA_OK);
  for (uint32_t s = 6; s <= 8; s++) CHECK(m_step(&ref, s) == 0);
  CHECK(world_diff(&B, &ref) == 0);
  CHECK(world_op(&B, OP_SAVE, d3, 0, 0) == EMA_OK);
  world_free(&B);
  if (!zero_debias) CHECK(ema_save(ref.ctx, path("ref8.safetensors")) == EMA_OK);

  world_init(&C, 1, zero_debias);
  CHECK(world_op(&C, OP_INIT, NULL, 0, 0) == EMA_OK);
  CHECK(world_op(&C, OP_LOAD, d3, 0, 0) == EMA_OK);
  CHECK(world_diff(&C, &ref) == 0);
  CHECK(ema_last_step(C.j[0].m.ctx) == ema_last_step(ref.ctx));
  CHECK(world_op(&C, OP_TRAIN, NULL, 9, 10) == EMA_OK);
  for (uint32_t s = 9; s <= 10; s++) CHECK(m_step(&ref, s) == 0);
  CHECK(world_diff(&C, &ref) == 0);
  world_free(&C);
  m_free(&ref);
}

/* The averages land in the model boxes, at another world size, as
   ema_load_averages_into_model puts them from the unsharded checkpoint. */
static void test_averages_into_model(void) {
  mrank ref;
  mopts ro = {0, 0};
  CHECK(m_init(&ref, 1, 0, &ro) == 0);
  /* the reference: the unsharded run's checkpoint loaded the same way */
  CHECK(ema_load_averages_into_model(ref.ctx, path("ref8.safetensors")) == EMA_OK);
  world W;
  world_init(&W, 2, 0);
  CHECK(world_op(&W, OP_INIT, NULL, 0, 0) == EMA_OK);
  CHECK(world_op(&W, OP_LOAD_MODEL, path("ck3"), 0, 0) == EMA_OK);
  long bad = 0;
  for (int r = 0; r < 2; r++) {
    mrank *m = &W.j[r].m;
    for (int t = 0; t < M_TENSORS; t++) {
      size_t es = ema_dtype_size(M_SPEC[t].dtype);
      int64_t n = 1;
      for (int d = 0; d < M_SPEC[t].ndim; d++) n *= m->local[t][d];
      for (int64_t i = 0; i < n; i++)
        bad += memcmp((char *)m->data[t] + (size_t)i * es, (char *)ref.data[t] + (size_t)m_global_index(m, t, i) * es,
                      es) != 0;
    }
  }
  CHECK(bad == 0);
  world_free(&W);
  m_free(&ref);
}

/* Ranks that disagree (a box missing, another global shape) fail together
   with EMA_E_MISMATCH and write nothing. */
static void *bad_rank(void *arg) {
  job *j = (job *)arg;
  mopts o = {0, 1};
  m_init(&j->m, j->world, j->rank, &o);
  if (j->rank == 1) { /* rank 1 registers one more tensor */
    static float x[2];
    int64_t g = 4, off = 2, loc = 2;
    ema_track_shard(j->m.ctx, "extra", x, EMA_F32, 1, &g, &off, &loc);
  }
  j->st = ema_save_sharded(j->m.ctx, j->dir, j->comm);
  m_free(&j->m);
  return NULL;
}

static void test_disagreement(void) {
  world W;
  world_init(&W, 2, 0);
  void *args[2] = {&W.j[0], &W.j[1]};
  W.j[0].dir = W.j[1].dir = path("bad");
  tc_run(2, bad_rank, args);
  CHECK(W.j[0].st == EMA_E_MISMATCH && W.j[1].st == EMA_E_MISMATCH);
  struct stat sb;
  CHECK(stat(path("bad/manifest.json"), &sb) != 0);
  tc_destroy(&W.tw);
}

static void test_track_shard_args(void) {
  ema_ctx *c = NULL;
  CHECK(ema_create(&c, 0.9) == EMA_OK);
  float x[4];
  int64_t g[2] = {4, 2}, off[2] = {3, 0}, loc[2] = {2, 2}, okoff[2] = {2, 0};
  CHECK_ST(c, ema_track_shard(c, "x", x, EMA_F32, 2, g, off, loc), EMA_E_INVALID_ARG);
  CHECK(ema_count(c) == 0);
  CHECK_ST(c, ema_track_shard(c, "x", x, EMA_F32, 2, g, NULL, loc), EMA_E_INVALID_ARG);
  CHECK_ST(c, ema_track_shard(c, "x", x, EMA_I32, 2, g, okoff, loc), EMA_E_DTYPE);
  CHECK_ST(c, ema_track_shard(c, "x", x, EMA_F32, 2, g, okoff, loc), EMA_OK);
  CHECK_ST(c, ema_track_shard(c, "x", x, EMA_F32, 2, g, okoff, loc), EMA_E_EXISTS);
  int sharded = 0;
  int64_t gg[EMA_MAX_DIMS], oo[EMA_MAX_DIMS];
  CHECK_ST(c, ema_shard_info(c, "x", &sharded, gg, oo), EMA_OK);
  CHECK(sharded == 1 && gg[0] == 4 && gg[1] == 2 && oo[0] == 2 && oo[1] == 0);
  CHECK_ST(c, ema_shard_info(c, "y", NULL, NULL, NULL), EMA_E_NOT_FOUND);
  CHECK(ema_untrack(c, "x") == EMA_OK); /* frees the shard (ASan/valgrind) */
  ema_free(c);
}

static unsigned char *slurp(const char *p, size_t *n) {
  FILE *f = fopen(p, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = (unsigned char *)malloc((size_t)len + 1);
  *n = b ? fread(b, 1, (size_t)len, f) : 0;
  b[*n] = 0;
  fclose(f);
  return b;
}

static int same_file(const char *a, const char *b) {
  size_t na = 0, nb = 0;
  unsigned char *x = slurp(a, &na), *y = slurp(b, &nb);
  int same = x && y && na == nb && memcmp(x, y, na) == 0;
  free(x);
  free(y);
  return same;
}

static int progress_calls;
static uint64_t progress_last, progress_total;
static void on_progress(void *user, uint64_t done, uint64_t total) {
  (void)user;
  progress_calls++;
  progress_last = done;
  progress_total = total;
}

/* consolidate of the 3-rank checkpoint == ema_save of the unsharded run. */
static void test_consolidate(void) {
  char err[512] = "";
  const char *out = path("cons.safetensors");
  ema_status st = ema_consolidate(path("ck3"), out, on_progress, NULL, err, sizeof err);
  CHECK_MSG(st == EMA_OK, "%s", err);
  CHECK(same_file(out, path("ref8.safetensors")));
  CHECK(progress_calls > 0 && progress_last == progress_total);
  /* the unsharded reference's inference file, against the HF layout */
  CHECK(ema_extract_averages(path("ref8.safetensors"), path("ref8_avg.safetensors"), NULL, err, sizeof err) == EMA_OK);
  ema_file *ref = NULL;
  CHECK(ema_file_open(&ref, path("ref8_avg.safetensors"), err, sizeof err) == EMA_OK);
  for (int many = 0; many < 2; many++) {
    const char *hf = path(many ? "hf_many" : "hf_one");
    st = ema_consolidate_hf(path("ck3"), hf, many ? 200 : 0, NULL, NULL, err, sizeof err);
    CHECK_MSG(st == EMA_OK, "%s", err);
    char p[600];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", hf);
    size_t ilen = 0;
    unsigned char *index = slurp(p, &ilen);
    CHECK(many ? index != NULL : index == NULL);
    if (many && index) CHECK(strstr((char *)index, "\"total_size\": ") && strstr((char *)index, "\"weight_map\""));
    size_t found = 0, files = 0;
    DIR *dd = opendir(hf);
    struct dirent *de;
    while (dd && (de = readdir(dd)) != NULL) {
      if (!strstr(de->d_name, ".safetensors") || strstr(de->d_name, ".json")) continue;
      files++;
      snprintf(p, sizeof p, "%s/%s", hf, de->d_name);
      CHECK(many ? strncmp(de->d_name, "model-0000", 10) == 0 : strcmp(de->d_name, "model.safetensors") == 0);
      ema_file *g = NULL;
      CHECK(ema_file_open(&g, p, err, sizeof err) == EMA_OK);
      if (!g) continue;
      for (size_t i = 0; i < ema_file_count(g); i++) {
        ema_file_tensor t, r;
        CHECK(ema_file_tensor_at(g, i, &t) == EMA_OK);
        CHECK(ema_file_find(ref, t.name, &r) == EMA_OK);
        CHECK(t.nbytes == r.nbytes && t.dtype == r.dtype);
        unsigned char a[4096], b[4096];
        if (t.nbytes <= sizeof a && r.nbytes == t.nbytes) {
          CHECK(ema_file_read(g, t.name, 0, a, (size_t)t.nbytes) == EMA_OK);
          CHECK(ema_file_read(ref, r.name, 0, b, (size_t)r.nbytes) == EMA_OK);
          CHECK(memcmp(a, b, (size_t)t.nbytes) == 0);
        }
        if (index) CHECK(strstr((char *)index, t.name) != NULL);
        found++;
      }
      ema_file_close(g);
    }
    if (dd) closedir(dd);
    CHECK(many ? files > 2 : files == 1);
    size_t want = 0; /* the extract file also keeps the other members, "<n>/fast" */
    for (size_t i = 0; i < ema_file_count(ref); i++) {
      ema_file_tensor r;
      ema_file_tensor_at(ref, i, &r);
      want += strchr(r.name, '/') == NULL;
    }
    CHECK_MSG(found == want && want == M_TENSORS, "%zu tensors, want %zu", found, want);
    free(index);
  }
  ema_file_close(ref);
}

static uint64_t digest(const mrank *m) {
  uint64_t h = 1469598103934665603ull;
  for (int t = 0; t < M_TENSORS; t++) {
    int64_t n = 1;
    for (int d = 0; d < M_SPEC[t].ndim; d++) n *= m->local[t][d];
    size_t es = ema_dtype_size(M_SPEC[t].dtype);
    for (int k = -1; k < (M_SPEC[t].state ? 0 : 2); k++) {
      ema_dtype dt;
      const unsigned char *p = k < 0 ? (const unsigned char *)m->data[t]
                                     : (const unsigned char *)ema_bank_average(m->ctx, M_SPEC[t].name, (size_t)k, &dt);
      size_t bytes = (size_t)n * (k < 0 ? es : ema_dtype_size(dt));
      for (size_t i = 0; i < bytes; i++) h = (h ^ p[i]) * 1099511628211ull;
    }
  }
  return h ^ (uint64_t)ema_num_updates(m->ctx) ^ ((uint64_t)ema_last_step(m->ctx) << 32);
}

static void put(const char *p, const void *b, size_t n) {
  FILE *f = fopen(p, "wb");
  if (f) {
    fwrite(b, 1, n, f);
    fclose(f);
  }
}

/* Replace the first `from` of text by `to` into dir/manifest.json; 0 when
   from is not in text. */
static int mutate(const char *dir, const char *text, const char *from, const char *to) {
  const char *at = strstr(text, from);
  if (!at) return 0;
  size_t n = strlen(text), a = (size_t)(at - text), fl = strlen(from), tl = strlen(to);
  char *o = (char *)malloc(n - fl + tl + 1);
  memcpy(o, text, a);
  memcpy(o + a, to, tl);
  memcpy(o + a + tl, at + fl, n - a - fl + 1);
  char p[600];
  snprintf(p, sizeof p, "%s/manifest.json", dir);
  put(p, o, strlen(o));
  free(o);
  return 1;
}

/* Loading a hostile checkpoint fails on every rank and changes nothing. */
static void expect_refused_as(world *W, const char *dir, int want, const char *what, int model_too) {
  uint64_t before[TC_MAX];
  for (int r = 0; r < W->w; r++) before[r] = digest(&W->j[r].m);
  int got = world_op(W, OP_LOAD, dir, 0, 0);
  CHECK_MSG(got == want, "%s: got %d, want %d", what, got, want);
  for (int r = 0; r < W->w; r++) CHECK_MSG(digest(&W->j[r].m) == before[r], "%s changed rank %d", what, r);
  if (!model_too) return; /* the model's load does not read the damaged bytes */
  got = world_op(W, OP_LOAD_MODEL, dir, 0, 0);
  CHECK_MSG(got == want || want == EMA_E_MISMATCH, "%s (into model): got %d, want %d", what, got, want);
  for (int r = 0; r < W->w; r++) CHECK_MSG(digest(&W->j[r].m) == before[r], "%s changed rank %d", what, r);
}

static void expect_refused(world *W, const char *dir, int want, const char *what) {
  expect_refused_as(W, dir, want, what, 1);
}

static void test_hostile(void) {
  world S, L;
  world_init(&S, 2, 0);
  CHECK(world_op(&S, OP_INIT, NULL, 0, 0) == EMA_OK);
  CHECK(world_op(&S, OP_TRAIN, NULL, 1, 5) == EMA_OK);
  const char *hx = path("hx"), *hy = path("hy");
  CHECK(world_op(&S, OP_SAVE, hx, 0, 0) == EMA_OK);
  CHECK(world_op(&S, OP_TRAIN, NULL, 6, 6) == EMA_OK);
  CHECK(world_op(&S, OP_SAVE, hy, 0, 0) == EMA_OK);
  world_free(&S);
  world_init(&L, 2, 0);
  CHECK(world_op(&L, OP_INIT, NULL, 0, 0) == EMA_OK);
  CHECK(world_op(&L, OP_TRAIN, NULL, 1, 3) == EMA_OK);
  char mp[600];
  snprintf(mp, sizeof mp, "%s/manifest.json", hx);
  size_t n = 0;
  char *good = (char *)slurp(mp, &n);
  CHECK(good != NULL);
  if (!good) return;
  static const struct {
    const char *from, *to, *what;
    int want;
  } cases[] = {
      {"\"offsets\": [6,0], \"shape\": [4,7]", "\"offsets\": [5,0], \"shape\": [4,7]", "overlapping chunks",
       EMA_E_FORMAT},
      {"\"offsets\": [0,0], \"shape\": [6,7]", "\"offsets\": [0,0], \"shape\": [5,7]", "a missing chunk", EMA_E_FORMAT},
      {"\"shape\": [10,7],", "\"shape\": [12,7],", "a wrong global shape", EMA_E_FORMAT},
      {"\"name\": \"shard-00000", "\"name\": \"../shard-00000", "a file outside the directory", EMA_E_FORMAT},
      {"\"name\": \"shard-00001", "\"name\": \"/etc/passwd\", \"x\": \"", "an absolute path", EMA_E_FORMAT},
      {"\"format_version\": 1", "\"format_version\": 2", "another format version", EMA_E_FORMAT},
      {"\"world_size\": 2", "\"world_size\": 3", "a wrong world size", EMA_E_FORMAT},
      {"\"rank\": 1, \"bytes\": ", "\"rank\": 1, \"bytes\": 1", "a wrong file size", EMA_E_FORMAT},
      {"\"ema.num_updates\": \"", "\"ema.num_updates\": \"7", "a state not the shard's", EMA_E_FORMAT},
      {"\"xxh64\": \"", "\"xxh64\": \"0", "a bad checksum field", EMA_E_FORMAT},
      {"\"tensors\": [", "\"tensors\": [{\"name\": \"w\"}, ", "a duplicate tensor", EMA_E_FORMAT},
      {"\"dtype\": \"F32\"", "\"dtype\": \"F64\"", "another dtype", EMA_E_MISMATCH},
      {"\"name\": \"w/fast\"", "\"name\": \"w/slow\"", "a missing average", EMA_E_MISMATCH},
      {"\"ema.policy.k\": \"keep\"", "\"ema.policy.k\": \"copy\"", "another policy", EMA_E_MISMATCH},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    CHECK_MSG(mutate(hx, good, cases[i].from, cases[i].to), "pattern of '%s' not found", cases[i].what);
    expect_refused(&L, hx, cases[i].want, cases[i].what);
  }
  put(mp, good, n / 2); /* truncated */
  expect_refused(&L, hx, EMA_E_FORMAT, "a truncated manifest");
  put(mp, good, n);
  /* a shard file of another checkpoint, under this one's name */
  char cmd[2000];
  const char *keep = path("keep");
  snprintf(cmd, sizeof cmd,
           "cd '%s' && f=$(ls shard-00001-of-00002.*.safetensors) && cp $f '%s' && cp "
           "../hy/shard-00001-of-00002.*.safetensors $f",
           hx, keep);
  CHECK(system(cmd) == 0);
  expect_refused(&L, hx, EMA_E_FORMAT, "a shard of another checkpoint");
  snprintf(cmd, sizeof cmd, "cd '%s' && cp '%s' $(ls shard-00001-of-00002.*.safetensors)", hx, keep);
  CHECK(system(cmd) == 0);
  /* a flipped data byte in rank 1's file: its checksum fails there, and
     rank 0 fails with it */
  snprintf(cmd, sizeof cmd,
           "cd '%s' && f=$(ls shard-00001-of-00002.*.safetensors) && "
           "printf '\\377' | dd of=$f bs=1 seek=$(($(stat -c %%s $f) - 3)) conv=notrunc status=none",
           hx);
  CHECK(system(cmd) == 0);
  expect_refused_as(&L, hx, EMA_E_FORMAT, "a corrupt chunk", 0);
  snprintf(cmd, sizeof cmd, "cd '%s' && cp '%s' $(ls shard-00001-of-00002.*.safetensors)", hx, keep);
  CHECK(system(cmd) == 0);
  CHECK(world_op(&L, OP_LOAD, hx, 0, 0) == EMA_OK); /* restored: loads */
  expect_refused(&L, path("nothing-here"), EMA_E_IO, "no checkpoint");
  free(good);
  world_free(&L);
}

/* A context registering another global shape than the checkpoint's. */
static void test_wrong_registration(void) {
  ema_ctx *c = NULL;
  CHECK(ema_create(&c, 0.9) == EMA_OK);
  float x[80] = {0};
  int64_t g[2] = {10, 8}, off[2] = {0, 0};
  CHECK(ema_track_shard(c, "w", x, EMA_F32, 2, g, off, g) == EMA_OK);
  CHECK_ST(c, ema_load_sharded(c, path("hx"), NULL), EMA_E_MISMATCH);
  CHECK(strstr(ema_last_error(c), "global shape") != NULL);
  ema_free(c);
}

/* A save removes its older shard files, and nothing else of the directory. */
static void test_garbage(void) {
  world W;
  world_init(&W, 1, 0);
  CHECK(world_op(&W, OP_INIT, NULL, 0, 0) == EMA_OK);
  const char *d = path("gc");
  CHECK(world_op(&W, OP_SAVE, d, 0, 0) == EMA_OK);
  char p[700];
  static const char *const foreign[] = {"shard-00001-model-00001-of-00001.safetensors", "notes.txt",
                                        "shard-00000-of-00001.xyz.safetensors"};
  for (int i = 0; i < 3; i++) {
    snprintf(p, sizeof p, "%s/%s", d, foreign[i]);
    put(p, "x", 1);
  }
  CHECK(world_op(&W, OP_TRAIN, NULL, 1, 2) == EMA_OK);
  CHECK(world_op(&W, OP_SAVE, d, 0, 0) == EMA_OK);
  CHECK(world_op(&W, OP_SAVE, d, 0, 0) == EMA_OK);
  int ours = 0, others = 0;
  DIR *dd = opendir(d);
  struct dirent *de;
  while (dd && (de = readdir(dd)) != NULL) {
    if (de->d_name[0] == '.' && (de->d_name[1] == 0 || de->d_name[1] == '.')) continue;
    int f = 0;
    for (int i = 0; i < 3; i++) f |= strcmp(de->d_name, foreign[i]) == 0;
    if (f)
      others++;
    else if (strcmp(de->d_name, "manifest.json") != 0)
      ours++;
  }
  if (dd) closedir(dd);
  CHECK_MSG(ours == 1 && others == 3, "%d shard files, %d foreign files", ours, others);
  world_free(&W);
}

int main(void) {
  snprintf(tmp, sizeof tmp, "/tmp/ema_test_dist_%ld", (long)getpid());
  mkdir(tmp, 0755);
  test_track_shard_args();
  test_reshard(0);
  test_consolidate();
  test_reshard(1);
  test_averages_into_model();
  test_disagreement();
  test_hostile();
  test_garbage();
  test_wrong_registration();
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
  if (getenv("EMA_TEST_KEEP"))
    printf("kept %s\n", tmp);
  else if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", tmp);
  return check_report("test_dist");
}
