/* Policies in checkpoints: KEEP tensors are saved under their own name and,
   frozen copy in the model dtype, under every member's average key; COPY and
   KEEP are recorded in __metadata__ ("ema.policy.<name>"); a load restores
   the frozen copy and refuses a checkpoint whose policies differ from the
   context's with EMA_E_MISMATCH, changing nothing. */
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "io/safetensors.h"
#include "io_util.h"

typedef struct net {
  float w[4];
  float frozen[3];
  int32_t ids[2]; /* KEEP of an integer dtype */
  int64_t step[1];
} net;

static const int64_t s4[1] = {4}, s3[1] = {3}, s2[1] = {2}, s1[1] = {1};

/* pol_frozen: the policy "frozen" is registered with. */
static ema_ctx *make(net *n, float base, ema_policy pol_frozen, ema_policy pol_step) {
  memset(n, 0, sizeof *n);
  for (int i = 0; i < 4; i++) n->w[i] = base + (float)i;
  for (int i = 0; i < 3; i++) n->frozen[i] = base * 10 + (float)i;
  n->ids[0] = (int32_t)base;
  n->ids[1] = 7;
  n->step[0] = 1;
  ema_ctx *ctx = NULL;
  ema_schedule s;
  ema_schedule_init(&s, EMA_SCHEDULE_CONSTANT);
  s.decay = 0.5;
  int ok = ema_create(&ctx, 0.9) == EMA_OK && ema_bank_add(ctx, "fast", &s, NULL) == EMA_OK &&
           ema_track(ctx, "w", n->w, EMA_F32, 1, s4) == EMA_OK &&
           ema_track_policy(ctx, "frozen", n->frozen, EMA_F32, 1, s3, pol_frozen) == EMA_OK &&
           ema_track_policy(ctx, "ids", n->ids, EMA_I32, 1, s2, EMA_POLICY_KEEP) == EMA_OK &&
           ema_track_policy(ctx, "step", n->step, EMA_I64, 1, s1, pol_step) == EMA_OK;
  if (!ok) {
    ema_free(ctx);
    return NULL;
  }
  return ctx;
}

static void train(ema_ctx *ctx, net *n, int steps) {
  for (int t = 1; t <= steps; t++) {
    for (int i = 0; i < 4; i++) n->w[i] += 0.5f;
    n->frozen[0] += 100.0f; /* the model moves; the frozen copy does not */
    n->step[0] = t;
    if (ema_update(ctx, t) != EMA_OK) abort();
  }
}

int main(void) {
  io_mkdir("ckpt_policy");
  net a, b;
  ema_ctx *ca = make(&a, 1.0f, EMA_POLICY_KEEP, EMA_POLICY_COPY);
  CHECK(ca != NULL);
  if (!ca) return check_report("test_ckpt_policy");
  train(ca, &a, 3);
  const char *p = io_path("pol.st");
  CHECK_ST(ca, ema_save(ca, p), EMA_OK);

  /* the file: frozen copies under every member, policies recorded */
  ema_file *f = NULL;
  char err[256];
  CHECK(ema_file_open(&f, p, err, sizeof err) == EMA_OK);
  const char *const keys[4] = {"frozen/ExponentialMovingAverage", "frozen/fast", "ids/ExponentialMovingAverage",
                               "ids/fast"};
  for (int j = 0; j < 4; j++) {
    ema_file_tensor t;
    CHECK_MSG(f && ema_file_find(f, keys[j], &t) == EMA_OK, "%s missing", keys[j]);
    unsigned char got[12];
    CHECK(f && ema_file_read(f, keys[j], 0, got, j < 2 ? 12 : 8) == EMA_OK);
    const float want_f[3] = {10, 11, 12};
    const int32_t want_i[2] = {1, 7};
    CHECK(memcmp(got, j < 2 ? (const void *)want_f : (const void *)want_i, j < 2 ? 12 : 8) == 0);
    CHECK(t.dtype == (j < 2 ? EMA_F32 : EMA_I32));
  }
  CHECK(f && strcmp(ema_file_metadata(f, "ema.policy.frozen"), "keep") == 0);
  CHECK(f && strcmp(ema_file_metadata(f, "ema.policy.step"), "copy") == 0);
  CHECK(f && ema_file_metadata(f, "ema.policy.w") == NULL);
  ema_file_close(f);

  /* load restores the frozen copy (b froze other values) and the model */
  ema_ctx *cb = make(&b, 2.0f, EMA_POLICY_KEEP, EMA_POLICY_COPY);
  CHECK_ST(cb, ema_load(cb, p), EMA_OK);
  for (size_t k = 0; k < 2; k++) {
    CHECK(memcmp(ema_bank_average(cb, "frozen", k, NULL), ema_bank_average(ca, "frozen", k, NULL), 12) == 0);
    CHECK(memcmp(ema_bank_average(cb, "ids", k, NULL), ema_bank_average(ca, "ids", k, NULL), 8) == 0);
    CHECK(memcmp(ema_bank_average(cb, "w", k, NULL), ema_bank_average(ca, "w", k, NULL), 16) == 0);
  }
  CHECK(memcmp(&a, &b, sizeof a) == 0);
  /* and evaluation puts the frozen values into the model */
  CHECK_ST(cb, ema_load_averages_into_model(cb, p), EMA_OK);
  CHECK(b.frozen[0] == 10.0f && b.frozen[2] == 12.0f && b.ids[0] == 1);
  /* the inference export holds the frozen copy under the tensor's name */
  CHECK(ema_extract_averages(p, io_path("inf.st"), NULL, err, sizeof err) == EMA_OK);
  CHECK(ema_file_open(&f, io_path("inf.st"), err, sizeof err) == EMA_OK);
  float fz[3] = {0};
  CHECK(f && ema_file_read(f, "frozen", 0, fz, sizeof fz) == EMA_OK && fz[0] == 10.0f);
  ema_file_close(f);

  /* policy mismatches: EMA_E_MISMATCH, nothing changed */
  const struct {
    ema_policy frozen, step;
    const char *needle;
  } bad[3] = {{EMA_POLICY_AVERAGE, EMA_POLICY_COPY, "'frozen' was saved with policy keep"},
              {EMA_POLICY_COPY, EMA_POLICY_COPY, "'frozen' was saved with policy keep"},
              {EMA_POLICY_KEEP, EMA_POLICY_KEEP, "'step' was saved with policy copy"}};
  for (int j = 0; j < 3; j++) {
    for (int into = 0; into < 2; into++) {
      net c;
      ema_ctx *cc = make(&c, 3.0f, bad[j].frozen, bad[j].step);
      CHECK(cc != NULL);
      if (!cc) continue;
      net before = c;
      unsigned char fa[12] = {0}, fb[12] = {0};
      const void *avg0 = ema_bank_average(cc, "frozen", 0, NULL); /* NULL for COPY */
      if (avg0) memcpy(fa, avg0, 12);
      ema_status st = into ? ema_load_averages_into_model(cc, p) : ema_load(cc, p);
      CHECK_MSG(st == EMA_E_MISMATCH, "case %d into %d: %d %s", j, into, (int)st, ema_last_error(cc));
      CHECK_MSG(strstr(ema_last_error(cc), bad[j].needle) != NULL, "%s", ema_last_error(cc));
      if (avg0) memcpy(fb, avg0, 12);
      CHECK(memcmp(&before, &c, sizeof c) == 0 && memcmp(fa, fb, 12) == 0);
      ema_free(cc);
    }
  }
  /* an unknown policy value is a format error */
  size_t len = 0;
  unsigned char *buf = io_slurp(p, &len);
  st_file *sf = NULL;
  CHECK(buf && st_open_mem(buf, len, &sf, NULL, 0) == EMA_OK);
  if (sf) {
    st_wtensor w[32];
    st_wmeta m[64];
    size_t nm = 0, nw = sf->n_tensors;
    for (size_t i = 0; i < nw; i++) {
      const st_tensor *t = &sf->tensors[i];
      w[i] = (st_wtensor){t->name, t->dtype, t->ndim, t->shape, buf + sf->data_start + t->begin};
    }
    for (size_t i = 0; i < sf->n_meta; i++)
      m[nm++] =
          (st_wmeta){sf->meta[i].key, strcmp(sf->meta[i].key, "ema.policy.step") == 0 ? "frozen\n" : sf->meta[i].value};
    unsigned char *out = NULL;
    size_t olen = 0;
    CHECK(st_serialize(w, nw, m, nm, &out, &olen, NULL, 0) == EMA_OK);
    CHECK_ST(cb, ema_load_buffer(cb, out, olen), EMA_E_FORMAT);
    CHECK_MSG(strstr(ema_last_error(cb), "unknown policy 'frozen\\x0A'") != NULL, "%s", ema_last_error(cb));
    /* frozen copies that differ between members (checksum left out) */
    size_t nm2 = 0;
    for (size_t i = 0; i < sf->n_meta; i++)
      if (strcmp(sf->meta[i].key, "libema.xxh64") != 0) m[nm2++] = (st_wmeta){sf->meta[i].key, sf->meta[i].value};
    const st_tensor *ff = st_find(sf, "frozen/fast");
    buf[sf->data_start + ff->begin] ^= 1;
    free(out);
    CHECK(st_serialize(w, nw, m, nm2, &out, &olen, NULL, 0) == EMA_OK);
    CHECK_ST(cb, ema_load_buffer(cb, out, olen), EMA_E_FORMAT);
    CHECK(strstr(ema_last_error(cb), "frozen copies") != NULL);
    free(out);
    st_close(sf);
  }
  free(buf);
  /* a 0.1 checkpoint has no KEEP: registering its plain state as KEEP is refused */
  ema_free(ca);
  ema_free(cb);
  io_rmdir();
  return check_report("test_ckpt_policy");
}
