/*
 * test_tool_units.c: unit tests of the `ema` tool's own helpers, compiled
 * together with tools/ema/cli.c and tools/ema/csv.c.
 *
 *  - f16 and bf16: every one of the 65536 bit patterns decodes and encodes
 *    back to itself (NaN stays NaN); rounding of doubles (random values,
 *    exact midpoints, subnormals, overflow) equals nearest-with-ties-to-even
 *    found by searching the sorted table of all finite values;
 *  - integer stores saturate; shortest round-trip number text;
 *  - strict number parsing;
 *  - the CSV reader: quoting, CRLF, blank lines, BOM, and the line numbers of
 *    its errors; the field writer's quoting;
 *  - the synthetic temperature year of `ema smooth` (temperatures.c).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cli.h"
#include "csv.h"
#include "temperatures.h"

static uint16_t load16(const unsigned char *b) { return (uint16_t)(b[0] | (b[1] << 8)); }

static uint16_t store_bits(ema_dtype dt, double v) {
  unsigned char b[2];
  cli_store_element(b, dt, 0, v);
  return load16(b);
}

static double load_bits(ema_dtype dt, uint16_t h) {
  unsigned char b[2] = {(unsigned char)(h & 0xff), (unsigned char)(h >> 8)};
  return cli_load_element(b, dt, 0);
}

/* Nearest finite value by search, ties to the even bit pattern; inf past the
   midpoint above the largest finite value. Non-negative a only. */
static uint16_t reference_round(ema_dtype dt, const double *table, int n, double a) {
  double top = table[n - 1], next_up = top + (top - table[n - 2]); /* 2^(emax+1) */
  if (a >= (top + next_up) / 2) return (uint16_t)(dt == EMA_F16 ? 0x7c00 : 0x7f80);
  int lo = 0, hi = n - 1;
  while (hi - lo > 1) { /* table[lo] <= a < table[hi] */
    int mid = (lo + hi) / 2;
    if (table[mid] <= a)
      lo = mid;
    else
      hi = mid;
  }
  if (a >= table[hi]) return (uint16_t)hi;
  double dl = a - table[lo], dh = table[hi] - a;
  if (dl < dh) return (uint16_t)lo;
  if (dh < dl) return (uint16_t)hi;
  return (uint16_t)((lo % 2 == 0) ? lo : hi);
}

static void test_half(ema_dtype dt, uint16_t inf_bits) {
  /* every pattern round-trips */
  int bad = 0;
  for (unsigned h = 0; h < 65536; h++) {
    double v = load_bits(dt, (uint16_t)h);
    uint16_t back = store_bits(dt, v);
    if (isnan(v) ? !isnan(load_bits(dt, back)) : back != h) bad++;
  }
  CHECK_MSG(bad == 0, "%s: %d patterns do not round-trip", ema_dtype_name(dt), bad);
  CHECK(store_bits(dt, INFINITY) == inf_bits && store_bits(dt, -INFINITY) == (inf_bits | 0x8000));
  CHECK(isnan(load_bits(dt, store_bits(dt, NAN))));
  CHECK(store_bits(dt, -0.0) == 0x8000 && store_bits(dt, 0.0) == 0);

  /* rounding against the search */
  int n = inf_bits; /* finite non-negative patterns are 0 .. inf_bits-1, increasing */
  double *table = (double *)malloc((size_t)n * sizeof *table);
  for (int i = 0; i < n; i++) table[i] = load_bits(dt, (uint16_t)i);
  uint64_t s = 42;
  bad = 0;
  for (int k = 0; k < 400000; k++) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    double a;
    int i = (int)((s >> 33) % (uint64_t)(n - 1));
    switch (k % 4) {
      case 0:
        a = (table[i] + table[i + 1]) / 2;
        break; /* exact midpoint */
      case 1:
        a = table[i] + (table[i + 1] - table[i]) * (double)((s >> 11) & 0xffff) / 65536.0;
        break;
      case 2:
        a = nextafter((table[i] + table[i + 1]) / 2, k % 8 < 4 ? 0 : INFINITY);
        break; /* near ties */
      default:
        a = ldexp((double)((s >> 11) & 0xfffff) / 1048576.0, (int)((s >> 40) % 300) - 150);
        break;
    }
    uint16_t want = reference_round(dt, table, n, a), got = store_bits(dt, a);
    if (got != want) {
      if (bad < 5) fprintf(stderr, "%s: %.17g -> 0x%04x, want 0x%04x\n", ema_dtype_name(dt), a, got, want);
      bad++;
    }
    if (store_bits(dt, -a) != (want | 0x8000) && a > 0) bad++;
  }
  CHECK_MSG(bad == 0, "%s: %d roundings differ from the search", ema_dtype_name(dt), bad);
  free(table);
}

static void test_numbers(void) {
  unsigned char b[8];
  cli_store_element(b, EMA_I32, 0, 3e10);
  CHECK(cli_load_element(b, EMA_I32, 0) == 2147483647.0);
  cli_store_element(b, EMA_I32, 0, -2.5);
  CHECK(cli_load_element(b, EMA_I32, 0) == -2.0); /* nearest, ties to even */
  cli_store_element(b, EMA_I64, 0, -1e30);
  CHECK(cli_load_element(b, EMA_I64, 0) == -9223372036854775808.0);
  cli_store_element(b, EMA_F32, 0, 0.1);
  CHECK(cli_load_element(b, EMA_F32, 0) == (double)0.1f);
  cli_store_element(b, EMA_F64, 0, 0.1);
  CHECK(cli_load_element(b, EMA_F64, 0) == 0.1);
  CHECK(b[7] == 0x3f && b[0] == 0x9a); /* little-endian */

  char buf[40];
  const double vals[] = {0.1, 1.0 / 3, 1e-300, 5e-324, 123456789.0, -2.5, 0.30000000000000004};
  for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
    cli_format_double(buf, sizeof buf, vals[i]);
    CHECK_MSG(strtod(buf, NULL) == vals[i], "%s", buf);
  }
  cli_format_double(buf, sizeof buf, 0.1);
  CHECK(strcmp(buf, "0.1") == 0);
  cli_format_double(buf, sizeof buf, NAN);
  CHECK(strcmp(buf, "nan") == 0);

  double d;
  int64_t i;
  CHECK(cli_parse_double(" 1.5 ", 0, &d) && d == 1.5);
  CHECK(cli_parse_double("-2e3", 0, &d) && d == -2000);
  CHECK(!cli_parse_double("", 0, &d) && !cli_parse_double("1.5x", 0, &d) && !cli_parse_double("0x10", 0, &d));
  CHECK(!cli_parse_double("inf", 0, &d) && cli_parse_double("inf", 1, &d) && isinf(d));
  CHECK(!cli_parse_double("nan", 1, &d) && !cli_parse_double("1e999", 0, &d));
  CHECK(cli_parse_int64("42", &i) && i == 42 && !cli_parse_int64("4.2", &i) && !cli_parse_int64("", &i));
  CHECK(!cli_parse_int64("99999999999999999999", &i));
}

static void test_csv(void) {
  csv_table t;
  char err[256];
  const char *ok =
      "\xEF\xBB\xBF"
      "a,b,c\r\n1,\"x, \"\"y\"\"\",\r\n\n\"multi\nline\",2,\"\"\n3,4,5";
  CHECK(csv_parse("t.csv", ok, strlen(ok), &t, err, sizeof err));
  CHECK(t.ncols == 3 && t.nrows == 3);
  if (t.nrows == 3) {
    CHECK(strcmp(t.cell[0], "a") == 0); /* BOM skipped */
    CHECK(strcmp(CSV_CELL(&t, 0, 1), "x, \"y\"") == 0 && strcmp(CSV_CELL(&t, 0, 2), "") == 0);
    CHECK(strcmp(CSV_CELL(&t, 1, 0), "multi\nline") == 0);
    CHECK(CSV_LINE(&t, 0) == 2 && CSV_LINE(&t, 1) == 4 && CSV_LINE(&t, 2) == 6);
    CHECK(csv_column(&t, "c") == 2 && csv_column(&t, "d") == -1);
  }
  csv_free(&t);

  static const struct {
    const char *text, *where;
  } bad[] = {
      {"a,b\n1,2\n3\n", "t.csv:3: 1 field"},
      {"a,b\n\"1\n2\",3\n4,5,6\n", "t.csv:4: 3 fields"},
      {"a\n\"open\n\nstill\n", "t.csv:2: a quoted field"},
      {"a,b\n\"1\"2,3\n", "t.csv:2: unexpected '2'"},
      {"", "t.csv: empty file"},
      {"\n\n", "t.csv: empty file"},
  };
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    int r = csv_parse("t.csv", bad[k].text, strlen(bad[k].text), &t, err, sizeof err);
    CHECK_MSG(!r && strncmp(err, bad[k].where, strlen(bad[k].where)) == 0, "case %zu: '%s'", k, err);
  }
  const char nul[] = "a\nx\0y\n";
  CHECK(!csv_parse("t.csv", nul, sizeof nul - 1, &t, err, sizeof err) && strstr(err, "t.csv:2: NUL"));

  /* the writer quotes only when it must */
  FILE *f = tmpfile();
  if (f) {
    const char *fields[] = {"plain", "a,b", "say \"hi\"", "two\nlines", " pad", ""};
    for (size_t k = 0; k < 6; k++) {
      if (k) fputc(',', f);
      csv_write_field(f, fields[k]);
    }
    rewind(f);
    char line[128] = "";
    size_t got = fread(line, 1, sizeof line - 1, f);
    line[got] = '\0';
    CHECK_MSG(strcmp(line, "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\" pad\",") == 0, "%s", line);
    fclose(f);
  }
}

static void test_synthetic_temperatures(void) {
  CHECK(synthetic_temperatures(NULL, 3, 1) == 0);
  CHECK(synthetic_temperatures(NULL, 0, 1) == 1);
  enum { N = 365 };
  double a[N], b[N], c[N], prefix[100];
  CHECK(synthetic_temperatures(a, N, 1) == 1);
  CHECK(synthetic_temperatures(b, N, 1) == 1);
  CHECK(synthetic_temperatures(c, N, 2) == 1);
  CHECK(synthetic_temperatures(prefix, 100, 1) == 1);
  CHECK(memcmp(a, b, sizeof a) == 0);
  CHECK(memcmp(a, c, sizeof a) != 0);
  CHECK(memcmp(a, prefix, sizeof prefix) == 0);
  for (uint64_t seed = 0; seed < 20; seed++) {
    CHECK(synthetic_temperatures(a, N, seed) == 1);
    double sum = 0, jan = 0, jul = 0, lo = 1e9, hi = -1e9;
    for (size_t d = 0; d < N; d++) {
      CHECK(isfinite(a[d]));
      sum += a[d];
      lo = a[d] < lo ? a[d] : lo;
      hi = a[d] > hi ? a[d] : hi;
      if (d < 31) {
        jan += a[d] / 31;
      }
      if (d >= 181 && d < 212) {
        jul += a[d] / 31;
      }
    }
    CHECK_MSG(fabs(sum / N - 11.0) < 1.5, "seed %llu: mean %g", (unsigned long long)seed, sum / N);
    CHECK_MSG(jul - jan > 8 && jul - jan < 20, "seed %llu: jan %g jul %g", (unsigned long long)seed, jan, jul);
    CHECK(lo > -15 && hi < 35);
    /* noisy day to day: the seeds' scatter, not a smooth curve */
    double rough = 0;
    for (size_t d = 1; d < N; d++) {
      rough += fabs(a[d] - a[d - 1]);
    }
    CHECK(rough / (N - 1) > 0.8);
  }
}

int main(void) {
  test_half(EMA_F16, 0x7c00);
  test_half(EMA_BF16, 0x7f80);
  test_numbers();
  test_csv();
  test_synthetic_temperatures();
  return check_report("test_tool_units");
}
