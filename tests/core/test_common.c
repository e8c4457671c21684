/*
 * src/common and the status table: ema_escape, ema_status_name and
 * ema_status_string from EMA_STATUS_MAP, the UTF-8 validator, the message
 * formatter and the allocation failure hook.
 */
#include <ema/ema.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/alloc.h"
#include "common/err.h"
#include "common/utf8.h"

/* ema_escape of a NUL-terminated s into a large buffer, compared with want. */
static int esc_is(const char *s, const char *want) {
  char buf[512];
  memset(buf, 'Z', sizeof buf);
  size_t n = ema_escape(s, strlen(s), buf, sizeof buf);
  int ok = n == strlen(want) && strcmp(buf, want) == 0;
  if (!ok) fprintf(stderr, "ema_escape gave '%s' (%zu), want '%s'\n", buf, n, want);
  return ok;
}

static void test_escape_bytes(void) {
  CHECK(esc_is("plain name.weight", "plain name.weight"));
  CHECK(esc_is("a\\b", "a\\\\b"));
  CHECK(esc_is("tab\there\nnl", "tab\\x09here\\x0Anl"));
  CHECK(esc_is("\x7f", "\\x7F"));
  CHECK(esc_is("\x1b[31m", "\\x1B[31m"));                                /* a terminal escape is defused */
  CHECK(esc_is("caf\xc3\xa9 \xe2\x82\xac", "caf\xc3\xa9 \xe2\x82\xac")); /* UTF-8 as is */
  CHECK(esc_is("\xc3", "\\xC3"));                                        /* truncated sequence */
  CHECK(esc_is("\xc0\xaf", "\\xC0\\xAF"));                               /* overlong */
  CHECK(esc_is("\xed\xa0\x80", "\\xED\\xA0\\x80"));                      /* surrogate */
  CHECK(esc_is("\xff", "\\xFF"));
  CHECK(esc_is("\xc2\x85", "\\xC2\\x85")); /* C1 control NEL */
  CHECK(esc_is("\xc2\xa0", "\xc2\xa0"));   /* NBSP is printable */
  /* embedded NUL with an explicit length */
  char buf[64];
  CHECK(ema_escape("a\0b", 3, buf, sizeof buf) == 6 && strcmp(buf, "a\\x00b") == 0);
  CHECK(ema_escape(NULL, 5, buf, sizeof buf) == 0 && buf[0] == '\0');
  CHECK(ema_escape("x", 1, NULL, 10) == 0);
  buf[0] = 'Q';
  CHECK(ema_escape("x", 1, buf, 0) == 0 && buf[0] == 'Q'); /* cap 0 writes nothing */
}

static void test_escape_limits(void) {
  char src[200], buf[512];
  memset(src, 'a', sizeof src);
  /* exactly 64 bytes: shown whole, no "..." */
  CHECK(ema_escape(src, 64, buf, sizeof buf) == 64 && strlen(buf) == 64);
  /* 65 bytes: 64 shown, then "..." */
  CHECK(ema_escape(src, 65, buf, sizeof buf) == 67 && strcmp(buf + 64, "...") == 0);
  /* a 2-byte character across the 64-byte limit is not cut */
  src[63] = '\xc3';
  src[64] = '\xa9';
  size_t n = ema_escape(src, 66, buf, sizeof buf);
  CHECK(n == 66 && memcmp(buf + 60, "aaa...", 6) == 0);
  /* escapes count source bytes: 64 control bytes give 256 output bytes + "..." */
  memset(src, 1, sizeof src);
  CHECK(ema_escape(src, 100, buf, sizeof buf) == 64 * 4 + 3);
  /* cap: at most cap - 1 bytes, an escape is never cut, always terminated */
  memset(buf, 'Z', sizeof buf);
  CHECK(ema_escape("\n\n", 2, buf, 7) == 4 && strcmp(buf, "\\x0A") == 0);
  CHECK(ema_escape("abcdef", 6, buf, 4) == 3 && strcmp(buf, "abc") == 0);
  CHECK(ema_escape("abc", 3, buf, 1) == 0 && buf[0] == '\0');
  CHECK(ema_escape("\xe2\x82\xac", 3, buf, 3) == 0 && buf[0] == '\0'); /* a character whole or not */
  /* for every cap, the result is a prefix of the uncapped rendering */
  const char *mix = "w\\\x01\xc3\xa9\xff.z";
  char full[64];
  size_t fn = ema_escape(mix, strlen(mix), full, sizeof full);
  for (size_t cap = 1; cap <= fn + 1; cap++) {
    memset(buf, 'Z', sizeof buf);
    size_t k = ema_escape(mix, strlen(mix), buf, cap);
    CHECK(k < cap && buf[k] == '\0' && memcmp(buf, full, k) == 0);
  }
}

static void test_status_table(void) {
  /* names for every value, NULL past the end, as a binding discovers them */
  const char *want[] = {"EMA_OK",          "EMA_E_INVALID_ARG", "EMA_E_DTYPE",      "EMA_E_NOMEM",
                        "EMA_E_NOT_FOUND", "EMA_E_EXISTS",      "EMA_E_STATE",      "EMA_E_IO",
                        "EMA_E_FORMAT",    "EMA_E_MISMATCH",    "EMA_E_UNSUPPORTED"};
  size_t count = 0;
  while (ema_status_name((ema_status)count)) count++;
  CHECK(count == sizeof want / sizeof want[0]);
  for (size_t i = 0; i < count && i < sizeof want / sizeof want[0]; i++)
    CHECK(strcmp(ema_status_name((ema_status)i), want[i]) == 0);
  CHECK(ema_status_name((ema_status)-1) == NULL);
  CHECK(ema_status_name((ema_status)99) == NULL);
  CHECK(strcmp(ema_status_string(EMA_E_IO), "input/output error") == 0);
  CHECK(strstr(ema_status_string(EMA_E_NOT_FOUND), "index") != NULL);
  CHECK(strcmp(ema_status_string((ema_status)11), "unknown status") == 0);
  /* the map expands into the same values as the enum */
#define EXPECT_VALUE(name, value, text) CHECK((int)(name) == (value) && strcmp(ema_status_string(name), text) == 0);
  EMA_STATUS_MAP(EXPECT_VALUE)
#undef EXPECT_VALUE
}

static void test_utf8(void) {
  CHECK(ema__valid_utf8("", 0));
  CHECK(ema__valid_utf8("ascii", 5));
  CHECK(ema__valid_utf8("\xf0\x9f\x98\x80", 4));  /* U+1F600 */
  CHECK(!ema__valid_utf8("\xf4\x90\x80\x80", 4)); /* above U+10FFFF */
  CHECK(!ema__valid_utf8("\xe0\x80\xaf", 3));     /* overlong */
  CHECK(!ema__valid_utf8("\xed\xbf\xbf", 3));     /* surrogate */
  CHECK(!ema__valid_utf8("\x80", 1));             /* stray continuation */
  CHECK(ema__utf8_check((const unsigned char *)"ab\xc3\x28", 4) == 2);
  CHECK(ema__utf8_seq((const unsigned char *)"\xe2\x82\xac", 2) == 0); /* truncated */
}

static void test_errf_and_alloc(void) {
  char buf[8];
  ema__errf(buf, sizeof buf, "%s-%d", "abcdef", 42);
  CHECK(strcmp(buf, "abcdef-") == 0); /* truncated, terminated */
  ema__errf(NULL, 10, "x");           /* no-op */
  buf[0] = 'Q';
  ema__errf(buf, 0, "x");
  CHECK(buf[0] == 'Q');
  ema__test_fail_alloc(1);
  void *a = ema__malloc(8), *b = ema__malloc(8), *c = ema__aligned_alloc(100);
  ema__test_fail_alloc(-1);
  CHECK(a != NULL && b == NULL && c == NULL);
  free(a);
  void *d = ema__aligned_alloc(100);
  CHECK(d != NULL && ((uintptr_t)d % EMA_ALIGN) == 0);
  ema__aligned_free(d);
}

int main(void) {
  test_escape_bytes();
  test_escape_limits();
  test_status_table();
  test_utf8();
  test_errf_and_alloc();
  return check_report("test_common");
}
