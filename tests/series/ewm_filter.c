/*
 * tests/series/ewm_filter.c: the C side of the pandas conformance test.
 * Reads ewm cases from stdin, runs ema_ewm_mean() on each and writes the
 * results to stdout, for tests/series/pandas_conformance.py to compare with
 * pandas. Every case also goes through the streaming API in uneven chunks;
 * a result that differs from the batch one in any bit is reported as status
 * 99 so the script fails.
 *
 * Input, whitespace-separated tokens (numbers as C99 hex floats, nan, inf):
 *   case ID KIND VALUE ADJUST IGNORE_NA MIN_PERIODS HAS_TIMES N
 *   X_1 .. X_N
 *   T_1 .. T_N            (only when HAS_TIMES is 1)
 * KIND is 0 com, 1 span, 2 halflife, 3 alpha (ema_ewm_kind values).
 * Output, one line per case:
 *   ID STATUS Y_1 .. Y_N  (Y as %a hex floats or nan; none unless STATUS 0)
 *
 * "ewm_filter --skip REASON" prints the reason and exits 77 (ctest's skip
 * code), for builds where no Python is found.
 */
#include "series/series.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int read_token(char *buf, size_t cap) {
  int c;
  do {
    c = getchar();
  } while (c == ' ' || c == '\n' || c == '\t' || c == '\r');
  if (c == EOF) {
    return 0;
  }
  size_t len = 0;
  while (c != EOF && c != ' ' && c != '\n' && c != '\t' && c != '\r') {
    if (len + 1 < cap) {
      buf[len++] = (char)c;
    }
    c = getchar();
  }
  buf[len] = '\0';
  return 1;
}

static int read_double(double *out) {
  char buf[128];
  if (!read_token(buf, sizeof buf)) {
    return 0;
  }
  char *end = NULL;
  *out = strtod(buf, &end);
  return end != buf && *end == '\0';
}

static int read_u64(uint64_t *out) {
  char buf[64];
  if (!read_token(buf, sizeof buf)) {
    return 0;
  }
  char *end = NULL;
  unsigned long long v = strtoull(buf, &end, 10);
  *out = (uint64_t)v;
  return end != buf && *end == '\0';
}

static void print_double(double v) {
  if (isnan(v)) {
    fputs(" nan", stdout);
  } else {
    printf(" %a", v);
  }
}

/* Same series through the stream in chunk sizes 0, 1, 2, ... cycling. */
static int stream_matches(const ema_ewm_opts *o, const double *x, const double *t, size_t n, const double *batch,
                          double *tmp) {
  ema_ewm_stream *s = NULL;
  if (ema_ewm_stream_create(&s, o, t != NULL, NULL, 0) != EMA_OK) {
    return 0;
  }
  size_t pos = 0, chunk = 0;
  int ok = 1;
  while (pos < n && ok) {
    size_t len = chunk % 5;
    chunk++;
    if (len > n - pos) {
      len = n - pos;
    }
    ok = ema_ewm_stream_push(s, x + pos, len, t ? t + pos : NULL, tmp + pos, NULL, 0) == EMA_OK;
    pos += len;
  }
  ema_ewm_stream_free(s);
  return ok && (n == 0 || memcmp(tmp, batch, n * sizeof *tmp) == 0);
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "--skip") == 0) {
    printf("SKIP: %s\n", argc >= 3 ? argv[2] : "requested");
    return 77;
  }
  char tok[64];
  double *x = NULL, *t = NULL, *y = NULL, *y2 = NULL;
  size_t cap = 0;
  int bad_input = 0;
  while (read_token(tok, sizeof tok)) {
    uint64_t id, kind, adjust, ignore_na, minp, has_times, n;
    double value;
    if (strcmp(tok, "case") != 0 || !read_u64(&id) || !read_u64(&kind) || !read_double(&value) || !read_u64(&adjust) ||
        !read_u64(&ignore_na) || !read_u64(&minp) || !read_u64(&has_times) || !read_u64(&n)) {
      bad_input = 1;
      break;
    }
    if (n > cap) {
      size_t new_cap = (size_t)n;
      double *nx = realloc(x, new_cap * sizeof *x);
      double *nt = nx ? realloc(t, new_cap * sizeof *t) : NULL;
      double *ny = nt ? realloc(y, new_cap * sizeof *y) : NULL;
      double *ny2 = ny ? realloc(y2, new_cap * sizeof *y2) : NULL;
      if (nx) x = nx;
      if (nt) t = nt;
      if (ny) y = ny;
      if (ny2) y2 = ny2;
      if (!ny2) {
        fputs("ewm_filter: out of memory\n", stderr);
        return 1;
      }
      cap = new_cap;
    }
    for (size_t i = 0; i < n && !bad_input; i++) {
      bad_input = !read_double(&x[i]);
    }
    for (size_t i = 0; has_times && i < n && !bad_input; i++) {
      bad_input = !read_double(&t[i]);
    }
    if (bad_input) {
      break;
    }
    ema_ewm_opts o;
    ema_ewm_opts_init(&o);
    o.kind = (ema_ewm_kind)kind;
    o.value = value;
    o.adjust = (int)adjust;
    o.ignore_na = (int)ignore_na;
    o.min_periods = (size_t)minp;
    char err[256];
    const double *tt = has_times ? t : NULL;
    ema_status st = ema_ewm_mean(&o, x, (size_t)n, tt, y, err, sizeof err);
    int status = (int)st;
    if (st == EMA_OK && !stream_matches(&o, x, tt, (size_t)n, y, y2)) {
      status = 99;
    }
    printf("%" PRIu64 " %d", id, status);
    if (st == EMA_OK) {
      for (size_t i = 0; i < n; i++) {
        print_double(y[i]);
      }
    }
    putchar('\n');
  }
  free(x);
  free(t);
  free(y);
  free(y2);
  if (bad_input) {
    fputs("ewm_filter: malformed input\n", stderr);
    return 2;
  }
  return 0;
}
