/* Checkpoint checksums: new checkpoints record libema.xxh64, XXH64 (seed 0)
   of the data section (every byte after the header), which the test
   recomputes from the file's bytes; a flipped data byte is refused; the
   checkpoints written by the 0.1 library (tests/io/data/legacy_*.st, with
   0.1's own checksum) still load, bit for bit what this version computes
   for the same training, and their checksum is still verified. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "common/xxh64.h"
#include "io_util.h"
#include "legacy_model.h"

static const char *const avg_names[3] = {"w", "h", "b"};
static const size_t avg_bytes[3] = {24, 16, 24}; /* f32, bf16 with f32 shadow, f64 */

static uint64_t header_len(const unsigned char *b) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = (n << 8) | b[i];
  return n;
}

static void test_new_file_xxh64(void) {
  legacy_model m;
  ema_ctx *ctx = legacy_build(&m, 1, 3);
  CHECK(ctx != NULL);
  if (!ctx) return;
  const char *p = io_path("new.st");
  CHECK_ST(ctx, ema_save(ctx, p), EMA_OK);
  size_t len = 0;
  unsigned char *b = io_slurp(p, &len);
  ema_file *f = NULL;
  char err[256];
  CHECK(ema_file_open(&f, p, err, sizeof err) == EMA_OK);
  const char *rec = f ? ema_file_metadata(f, "libema.xxh64") : NULL;
  CHECK(rec != NULL && strlen(rec) == 16);
  CHECK(f && ema_file_metadata(f, "libema.checksum") == NULL);
  uint64_t n = header_len(b);
  char want[17];
  snprintf(want, sizeof want, "%016llx", (unsigned long long)ema__xxh64(b + 8 + n, len - 8 - n, 0));
  CHECK_MSG(rec && strcmp(rec, want) == 0, "recorded %s, data section hashes to %s", rec ? rec : "-", want);
  ema_file_close(f);
  /* a flipped bit in any data byte is refused, and nothing changes */
  int refused = 0, tried = 0;
  for (size_t at = 8 + n; at < len; at += 7, tried++) {
    b[at] ^= 0x10;
    io_spit(io_path("flip.st"), b, len);
    b[at] ^= 0x10;
    legacy_model m2;
    ema_ctx *c2 = legacy_build(&m2, 1, 1);
    legacy_model before = m2;
    ema_status st = ema_load(c2, io_path("flip.st"));
    refused +=
        st == EMA_E_FORMAT && strstr(ema_last_error(c2), "checksum") != NULL && memcmp(&before, &m2, sizeof m2) == 0;
    ema_free(c2);
  }
  CHECK_MSG(refused == tried, "%d of %d flips refused", refused, tried);
  printf("figures: %d single-bit flips in the data section refused by the checksum, nothing changed\n", refused);
  free(b);
  ema_free(ctx);
}

/* Both trained contexts hold the same bytes: model, averages, state. */
static void same_state(const ema_ctx *a, const legacy_model *ma, const ema_ctx *b, const legacy_model *mb,
                       const char *what) {
  size_t la, lb;
  unsigned char *sa = io_snapshot(a, avg_names, 3, avg_bytes, &la);
  unsigned char *sb = io_snapshot(b, avg_names, 3, avg_bytes, &lb);
  CHECK_MSG(la == lb && memcmp(sa, sb, la) == 0, "%s: averages or state differ", what);
  CHECK_MSG(memcmp(ma, mb, sizeof *ma) == 0, "%s: model differs", what);
  free(sa);
  free(sb);
}

static void test_legacy_loads(int debias) {
  const char *file =
      debias ? EMA_TEST_DATA_DIR "/io/data/legacy_debias.st" : EMA_TEST_DATA_DIR "/io/data/legacy_plain.st";
  legacy_model ma, mb;
  ema_ctx *a = legacy_build(&ma, debias, 5); /* what the old library saved */
  ema_ctx *b = legacy_build(&mb, debias, 1); /* a context further behind */
  CHECK(a && b);
  if (!a || !b) return;
  CHECK_ST(b, ema_load(b, file), EMA_OK);
  same_state(a, &ma, b, &mb, debias ? "legacy_debias" : "legacy_plain");
  /* training resumes exactly */
  legacy_fill(&ma, 6);
  legacy_fill(&mb, 6);
  CHECK_ST(a, ema_update(a, 6), EMA_OK);
  CHECK_ST(b, ema_update(b, 6), EMA_OK);
  same_state(a, &ma, b, &mb, "after one more step");
  /* the old checksum is still verified: flip one data byte */
  size_t len = 0;
  unsigned char *buf = io_slurp(file, &len);
  CHECK(buf != NULL);
  if (buf) {
    buf[len - 3] ^= 1;
    legacy_model mc;
    ema_ctx *c = legacy_build(&mc, debias, 1);
    legacy_model before = mc;
    CHECK_ST(c, ema_load_buffer(c, buf, len), EMA_E_FORMAT);
    CHECK(strstr(ema_last_error(c), "0.1 checksum") != NULL);
    CHECK(memcmp(&before, &mc, sizeof mc) == 0);
    ema_free(c);
    free(buf);
  }
  ema_free(a);
  ema_free(b);
}

int main(void) {
  io_mkdir("checksum");
  test_new_file_xxh64();
  test_legacy_loads(0);
  test_legacy_loads(1);
  io_rmdir();
  return check_report("test_checksum");
}
