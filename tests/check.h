/* Minimal test harness shared by the C tests: CHECK records a failure and
   goes on; main returns check_report() which prints "N passed, N failed". */
#ifndef EMA_TEST_CHECK_H
#define EMA_TEST_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_passed_ = 0, check_failed_ = 0;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (cond) {                                                                \
      check_passed_++;                                                         \
    } else {                                                                   \
      check_failed_++;                                                         \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                          \
  } while (0)

#define CHECK_MSG(cond, ...)                                                   \
  do {                                                                         \
    if (cond) {                                                                \
      check_passed_++;                                                         \
    } else {                                                                   \
      check_failed_++;                                                         \
      fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                            \
      fputc('\n', stderr);                                                     \
    }                                                                          \
  } while (0)

/* Status check that prints the status and the context's last error. */
#define CHECK_ST(ctx, call, want)                                                                               \
  do {                                                                                                          \
    ema_status st_ = (call);                                                                                    \
    CHECK_MSG(st_ == (want), "%s -> %d (%s), want %d; last error: %s", #call, (int)st_, ema_status_string(st_), \
              (int)(want), ema_last_error(ctx));                                                                \
  } while (0)

static int check_report(const char *name) {
  printf("%s: %d passed, %d failed\n", name, check_passed_, check_failed_);
  return check_failed_ ? 1 : 0;
}

#endif
