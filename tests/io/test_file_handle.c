/* ema_file handles carry their own last error (ema_file_last_error): each
   failing call on a handle says what failed, in one line, with names shown
   escaped; a call that succeeds clears it. The free functions keep the
   caller's buffer and name themselves: ema_file_write_stream reports
   "ema_file_write_stream", not "ema_file_write". */
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "io_util.h"

static ema_status failing_producer(void *user, size_t index, uint64_t offset, void *dst, size_t len, char *err,
                                   size_t errcap) {
  (void)user, (void)index, (void)offset, (void)dst, (void)len;
  snprintf(err, errcap, "the producer gave up");
  return EMA_E_IO;
}

int main(void) {
  io_mkdir("file_handle");
  float a[4] = {1, 2, 3, 4};
  const int64_t shape[1] = {4};
  ema_file_entry e[2] = {{"a", EMA_F32, 1, shape, a}, {"odd\nname\x1b[31m", EMA_F32, 1, shape, a}};
  const char *meta[2] = {"k", "v"};
  char err[256];
  const char *p = io_path("f.st");
  CHECK(ema_file_write(p, e, 2, meta, 1, err, sizeof err) == EMA_OK);

  ema_file *f = NULL;
  CHECK(ema_file_open(&f, p, err, sizeof err) == EMA_OK);
  if (!f) return check_report("test_file_handle");
  ema_file_tensor t;
  CHECK(ema_file_tensor_at(f, 7, &t) == EMA_E_NOT_FOUND);
  CHECK(strstr(ema_file_last_error(f), "index 7 is out of range") != NULL);
  CHECK(ema_file_tensor_at(f, 0, &t) == EMA_OK && ema_file_last_error(f)[0] == '\0');
  CHECK(ema_file_find(f, "zz\ntop", &t) == EMA_E_NOT_FOUND);
  CHECK(strstr(ema_file_last_error(f), "no tensor 'zz\\x0Atop'") != NULL);
  CHECK(!strchr(ema_file_last_error(f), '\n'));
  float out[4];
  CHECK(ema_file_read(f, "a", 8, out, 16) == EMA_E_INVALID_ARG);
  CHECK(strstr(ema_file_last_error(f), "ema_file_read") != NULL && strstr(ema_file_last_error(f), "outside") != NULL);
  CHECK(ema_file_read(f, "nope", 0, out, 4) == EMA_E_NOT_FOUND);
  CHECK(strstr(ema_file_last_error(f), "no tensor 'nope'") != NULL);
  CHECK(ema_file_read(f, "a", 0, out, 16) == EMA_OK && memcmp(out, a, 16) == 0 && ema_file_last_error(f)[0] == '\0');
  CHECK(ema_file_metadata_at(f, 3, NULL, NULL) == EMA_E_NOT_FOUND);
  CHECK(strstr(ema_file_last_error(f), "out of range") != NULL);
  /* a name from the file, escaped in the message of a read past its end */
  CHECK(ema_file_read(f, "odd\nname\x1b[31m", 12, out, 8) == EMA_E_INVALID_ARG);
  CHECK(!strchr(ema_file_last_error(f), '\n') && !strchr(ema_file_last_error(f), '\x1b'));
  CHECK(strcmp(ema_file_last_error(NULL), "") != 0);
  ema_file_close(f);

  /* free functions name themselves */
  CHECK(ema_file_write_stream(NULL, e, 1, NULL, 0, failing_producer, NULL, err, sizeof err) == EMA_E_INVALID_ARG);
  CHECK(strncmp(err, "ema_file_write_stream:", 22) == 0);
  CHECK(ema_file_write_stream(io_path("g.st"), e, 1, NULL, 0, failing_producer, NULL, err, sizeof err) == EMA_E_IO);
  CHECK(strncmp(err, "ema_file_write_stream: ", 23) == 0 && strstr(err, "the producer gave up") != NULL);
  CHECK(ema_file_write(NULL, e, 1, NULL, 0, err, sizeof err) == EMA_E_INVALID_ARG);
  CHECK(strncmp(err, "ema_file_write:", 15) == 0);
  io_rmdir();
  return check_report("test_file_handle");
}
