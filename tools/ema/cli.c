/*
 * cli.c: messages, option parsing, number parsing, the progress bar and the
 * small conversions every `ema` subcommand shares (see cli.h).
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Messages                                                                  */
/* ------------------------------------------------------------------------ */

static char *escape_message(const char *msg);

/* The formatted message, escaped (cli_escape): one line whatever it holds. */
static void print_message(const char *fmt, va_list ap) {
  char small[1024], *msg = small;
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(small, sizeof small, fmt, ap);
  if (n >= (int)sizeof small && (msg = (char *)malloc((size_t)n + 1)) != NULL) vsnprintf(msg, (size_t)n + 1, fmt, ap2);
  va_end(ap2);
  if (!msg) msg = small; /* out of memory: the truncated message */
  char *safe = escape_message(msg);
  fputs(safe ? safe : "(message lost: out of memory)", stderr);
  free(safe);
  if (msg != small) free(msg);
}

int cli_error(const char *fmt, ...) {
  va_list ap;
  fflush(stdout);
  fputs("ema: ", stderr);
  va_start(ap, fmt);
  print_message(fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  return EXIT_FAIL;
}

int cli_usage_error(const cli_command *cmd, const char *fmt, ...) {
  va_list ap;
  fflush(stdout);
  fprintf(stderr, "ema: %s: ", cmd->name);
  va_start(ap, fmt);
  print_message(fmt, ap);
  va_end(ap);
  fprintf(stderr, "\nUsage: %s\nTry 'ema %s --help' for more information.\n", cmd->synopsis, cmd->name);
  return EXIT_USAGE;
}

/* Escape s[0..n) with the library's ema_escape, whole: in pieces of at most
   48 bytes cut between characters (ema_escape shows 64 bytes of a string;
   the tool shows all of it). With keep_backslash, a backslash passes as it
   is (so that a message escaped by the library is not escaped twice).
   Writes at most cap - 1 bytes and a NUL into buf; "..." when the rest
   does not fit. */
static void escape_whole(const char *s, size_t n, int keep_backslash, char *buf, size_t cap) {
  size_t i = 0, o = 0;
  if (cap == 0) return;
  while (i < n) {
    char piece[48 * 4 + 8];
    size_t len, take;
    if (keep_backslash && s[i] == '\\') {
      piece[0] = '\\';
      len = take = 1;
    } else {
      take = n - i < 48 ? n - i : 48;
      while (take < n - i && take > 1 && ((unsigned char)s[i + take] & 0xC0) == 0x80) take--; /* a character whole */
      if (keep_backslash) {
        const char *bs = memchr(s + i, '\\', take);
        if (bs) take = (size_t)(bs - (s + i));
      }
      len = ema_escape(s + i, take, piece, sizeof piece);
    }
    int last = i + take == n;
    if (o + len + (last ? 0 : 3) > cap - 1) { /* no room: what fits, then "..." */
      if (o + 3 <= cap - 1) memcpy(buf + o, "...", 3), o += 3;
      break;
    }
    memcpy(buf + o, piece, len);
    o += len;
    i += take;
  }
  buf[o] = '\0';
}

const char *cli_escape(const char *s, char *buf, size_t cap) {
  escape_whole(s, strlen(s), 0, buf, cap);
  return buf;
}

/* The message pass of cli_error: controls escaped, backslashes kept. */
static char *escape_message(const char *msg) {
  size_t cap = 4 * strlen(msg) + 4;
  char *buf = (char *)malloc(cap);
  if (buf) escape_whole(msg, strlen(msg), 1, buf, cap);
  return buf;
}

char *cli_escape_alloc(const char *s) {
  size_t cap = 4 * strlen(s) + 4; /* \xNN at most per byte */
  char *buf = (char *)malloc(cap);
  return buf ? (char *)cli_escape(s, buf, cap) : NULL;
}

int cli_print_help(const cli_command *cmd) {
  printf("Usage: %s\n%s", cmd->synopsis, cmd->help);
  return EXIT_OK;
}

/* ------------------------------------------------------------------------ */
/* Options                                                                   */
/* ------------------------------------------------------------------------ */

void cli_parser_init(cli_parser *p, const cli_command *cmd, const cli_option *options, int argc, char **argv) {
  memset(p, 0, sizeof *p);
  p->cmd = cmd;
  p->options = options;
  p->argc = argc;
  p->argv = argv;
  p->i = 1;
}

/* Take the option's value: attached (inline) or the next argument. */
static int take_value(cli_parser *p, const cli_option *o, const char *inline_value) {
  if (!o->has_arg) {
    if (inline_value) {
      cli_usage_error(p->cmd, "option '%s' takes no value", p->opt);
      return CLI_BAD;
    }
    p->arg = NULL;
    return o->id;
  }
  if (inline_value) {
    p->arg = inline_value;
    return o->id;
  }
  if (p->i >= p->argc) {
    cli_usage_error(p->cmd, "option '%s' needs a value", p->opt);
    return CLI_BAD;
  }
  p->arg = p->argv[p->i++];
  return o->id;
}

int cli_next(cli_parser *p) {
  static char spelt[80];
  for (;;) {
    if (p->i >= p->argc) return CLI_END;
    char *a = p->argv[p->i++];
    if (p->no_more || a[0] != '-' || a[1] == '\0') {
      p->arg = a;
      return CLI_POSITIONAL;
    }
    if (strcmp(a, "--") == 0) {
      p->no_more = 1;
      continue;
    }
    if (a[1] == '-') { /* --name or --name=value */
      const char *name = a + 2;
      const char *eq = strchr(name, '=');
      size_t len = eq ? (size_t)(eq - name) : strlen(name);
      snprintf(spelt, sizeof spelt, "--%.*s", (int)(len < 60 ? len : 60), name);
      p->opt = spelt;
      for (const cli_option *o = p->options; o && o->name; o++)
        if (strlen(o->name) == len && strncmp(o->name, name, len) == 0) return take_value(p, o, eq ? eq + 1 : NULL);
      if (len == 4 && strncmp(name, "help", 4) == 0) return CLI_HELP;
      cli_usage_error(p->cmd, "unknown option '%s'", spelt);
      return CLI_BAD;
    }
    /* -x or -xVALUE */
    snprintf(spelt, sizeof spelt, "-%c", a[1]);
    p->opt = spelt;
    for (const cli_option *o = p->options; o && o->name; o++) {
      if (o->short_name && o->short_name == a[1]) {
        if (a[2] && !o->has_arg) break; /* "-xyz" for a flag: not supported */
        return take_value(p, o, a[2] ? a + 2 : NULL);
      }
    }
    if (a[1] == 'h' && a[2] == '\0') return CLI_HELP;
    cli_usage_error(p->cmd, "unknown option '%s'", a);
    return CLI_BAD;
  }
}

int cli_stop(const cli_parser *p, int id, int *rc) {
  if (id == CLI_BAD)
    *rc = EXIT_USAGE;
  else if (id == CLI_HELP)
    *rc = cli_print_help(p->cmd);
  else
    return 0;
  return 1;
}

int cli_parse_double(const char *s, int allow_inf, double *out) {
  while (*s == ' ' || *s == '\t') s++;
  if (!*s || strchr(s, 'x') || strchr(s, 'X')) return 0;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s) return 0;
  while (*end == ' ' || *end == '\t') end++;
  if (*end) return 0;
  if (isnan(v) || (!allow_inf && isinf(v))) return 0;
  if (errno == ERANGE && isinf(v) && !allow_inf) return 0;
  *out = v;
  return 1;
}

int cli_parse_int64(const char *s, int64_t *out) {
  while (*s == ' ' || *s == '\t') s++;
  if (!*s) return 0;
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (end == s || errno == ERANGE) return 0;
  while (*end == ' ' || *end == '\t') end++;
  if (*end) return 0;
  *out = (int64_t)v;
  return 1;
}

int cli_double(const cli_parser *p, double *out) {
  if (!cli_parse_double(p->arg, 0, out)) {
    cli_usage_error(p->cmd, "option '%s' needs a finite number, not '%s'", p->opt, p->arg);
    return 0;
  }
  return 1;
}

int cli_int64(const cli_parser *p, int64_t lo, int64_t hi, int64_t *out) {
  int64_t v;
  if (!cli_parse_int64(p->arg, &v) || v < lo || v > hi) {
    cli_usage_error(p->cmd, "option '%s' needs an integer in [%lld, %lld], not '%s'", p->opt, (long long)lo,
                    (long long)hi, p->arg);
    return 0;
  }
  *out = v;
  return 1;
}

/* ------------------------------------------------------------------------ */
/* Progress bar                                                              */
/* ------------------------------------------------------------------------ */

double cli_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void progress_begin(progress *p, const char *label, double total) {
  memset(p, 0, sizeof *p);
  p->label = label;
  p->total = total > 0 ? total : 1;
  p->enabled = isatty(STDERR_FILENO);
  p->start = cli_now();
}

void progress_update(progress *p, double done) {
  if (!p->enabled) return;
  double now = cli_now();
  if (now - p->start < 1.0 || now - p->last_draw < 0.1) return;
  p->last_draw = now;
  p->shown = 1;
  double frac = done / p->total;
  if (frac < 0) frac = 0;
  if (frac > 1) frac = 1;
  enum { WIDTH = 30 };
  char bar[WIDTH + 1];
  int full = (int)(frac * WIDTH);
  for (int i = 0; i < WIDTH; i++) bar[i] = i < full ? '=' : (i == full ? '>' : ' ');
  bar[WIDTH] = '\0';
  fprintf(stderr, "\r%s [%s] %3d%% %5.1fs", p->label, bar, (int)(frac * 100), now - p->start);
  fflush(stderr);
}

void progress_done(progress *p) {
  if (p->shown) {
    fputs("\r\033[K", stderr); /* erase the bar's line */
    fflush(stderr);
  }
  p->shown = 0;
}

/* ------------------------------------------------------------------------ */
/* Elements (the half formats through the library's ema_convert)            */
/* ------------------------------------------------------------------------ */

/* Little-endian loads and stores, whatever the host's byte order. */
static uint64_t load_le(const unsigned char *p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}
static void store_le(unsigned char *p, uint64_t v, int n) {
  for (int i = 0; i < n; i++) p[i] = (unsigned char)(v >> (8 * i));
}

double cli_load_element(const void *buf, ema_dtype dtype, size_t i) {
  const unsigned char *b = (const unsigned char *)buf;
  switch (dtype) {
    case EMA_F32: {
      uint32_t u = (uint32_t)load_le(b + 4 * i, 4);
      float f;
      memcpy(&f, &u, 4);
      return (double)f;
    }
    case EMA_F64: {
      uint64_t u = load_le(b + 8 * i, 8);
      double d;
      memcpy(&d, &u, 8);
      return d;
    }
    case EMA_F16:
    case EMA_BF16: {
      uint16_t h = (uint16_t)load_le(b + 2 * i, 2);
      double d = NAN;
      ema_convert(&d, EMA_F64, &h, dtype, 1);
      return d;
    }
    case EMA_I32:
      return (double)(int32_t)(uint32_t)load_le(b + 4 * i, 4);
    case EMA_I64:
      return (double)(int64_t)load_le(b + 8 * i, 8);
  }
  return NAN;
}

void cli_store_element(void *buf, ema_dtype dtype, size_t i, double v) {
  unsigned char *b = (unsigned char *)buf;
  switch (dtype) {
    case EMA_F32: {
      float f = (float)v;
      uint32_t u;
      memcpy(&u, &f, 4);
      store_le(b + 4 * i, u, 4);
      return;
    }
    case EMA_F64: {
      uint64_t u;
      memcpy(&u, &v, 8);
      store_le(b + 8 * i, u, 8);
      return;
    }
    case EMA_F16:
    case EMA_BF16: {
      uint16_t h = 0;
      ema_convert(&h, dtype, &v, EMA_F64, 1);
      store_le(b + 2 * i, h, 2);
      return;
    }
    case EMA_I32: {
      double r = isnan(v) ? 0 : nearbyint(v);
      int32_t x = r >= 2147483647.0 ? INT32_MAX : r <= -2147483648.0 ? INT32_MIN : (int32_t)r;
      store_le(b + 4 * i, (uint32_t)x, 4);
      return;
    }
    case EMA_I64: {
      double r = isnan(v) ? 0 : nearbyint(v);
      int64_t x = r >= 9223372036854775807.0 ? INT64_MAX : r <= -9223372036854775808.0 ? INT64_MIN : (int64_t)r;
      store_le(b + 8 * i, (uint64_t)x, 8);
      return;
    }
  }
}

/* ------------------------------------------------------------------------ */
/* Text                                                                      */
/* ------------------------------------------------------------------------ */

void cli_format_double(char *buf, size_t cap, double v) {
  if (isnan(v)) {
    snprintf(buf, cap, "nan");
    return;
  }
  if (isinf(v)) {
    snprintf(buf, cap, v > 0 ? "inf" : "-inf");
    return;
  }
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(buf, cap, "%.*g", prec, v);
    if (strtod(buf, NULL) == v) return;
  }
}

void cli_json_string(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    switch (*p) {
      case '"':
        fputs("\\\"", f);
        break;
      case '\\':
        fputs("\\\\", f);
        break;
      case '\n':
        fputs("\\n", f);
        break;
      case '\r':
        fputs("\\r", f);
        break;
      case '\t':
        fputs("\\t", f);
        break;
      default:
        if (*p < 0x20 || *p == 0x7F) {
          fprintf(f, "\\u%04x", *p);
        } else if (*p == 0xC2 && p[1] >= 0x80 && p[1] < 0xA0) { /* C1 controls: \u0080..\u009f */
          fprintf(f, "\\u%04x", p[1]);
          p++;
        } else {
          fputc(*p, f); /* other UTF-8 passes through: JSON text is UTF-8 */
        }
    }
  }
  fputc('"', f);
}

void cli_format_shape(char *buf, size_t cap, int ndim, const int64_t *shape) {
  size_t n = 0;
  n += (size_t)snprintf(buf, cap, "[");
  for (int d = 0; d < ndim && n < cap; d++)
    n += (size_t)snprintf(buf + n, cap - n, "%s%lld", d ? ", " : "", (long long)shape[d]);
  if (n < cap) snprintf(buf + n, cap - n, "]");
}

/* ------------------------------------------------------------------------ */
/* Files                                                                     */
/* ------------------------------------------------------------------------ */

int cli_mkdir(const char *path) {
  struct stat st;
  if (stat(path, &st) == 0) return S_ISDIR(st.st_mode);
  return mkdir(path, 0777) == 0;
}

char *cli_join_path(const char *dir, const char *name) {
  size_t a = strlen(dir), b = strlen(name);
  char *s = (char *)malloc(a + b + 2);
  if (!s) return NULL;
  memcpy(s, dir, a);
  size_t n = a;
  if (a && dir[a - 1] != '/') s[n++] = '/';
  memcpy(s + n, name, b + 1);
  return s;
}
