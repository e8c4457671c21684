/*
 * cmd_smooth.c: `ema smooth`, the exponentially weighted mean of one column
 * of a CSV file, with the semantics of pandas' Series.ewm(...).mean()
 * (computed by the library's ema_ewm_mean).
 *
 *   ema smooth [--input FILE.csv] --column NAME
 *              (--beta B | --alpha A | --span S | --com C | --halflife H)
 *              [--no-adjust] [--ignore-na] [--min-periods N] [--times COLUMN]
 *              [--output OUT.csv] [--plot OUT.svg]
 *
 * Input: RFC 4180 CSV with a header (csv.c). Cells of the value column that
 * pandas' read_csv reads as missing ("", NaN, NA, null, ...) are NaN; "inf"
 * is infinite, which ewm treats as missing too; anything else that is not a
 * number is an error naming the line.
 *
 * Output: the input columns as they were, plus "<column>_ema" with the
 * shortest decimal text that reads back as the exact double (empty where
 * the mean is NaN, as pandas' to_csv writes it), on stdout unless --output.
 *
 * Time stamps (--times): numbers are seconds; ISO 8601 dates and date-times
 * ("2024-01-31", "2024-01-31T12:00:00", "2024-01-31 12:00:00.5", with an
 * optional "Z" or "+02:00" offset) become seconds since 1970-01-01 UTC.
 * The half-life is then a duration: "3d", "12h", "30min", "90s", "2w", or a
 * plain number of seconds (pandas requires a timedelta half-life with times).
 *
 * Without --input the data are the tool's synthetic year (temperatures.c) of daily
 * temperatures (columns date, day, temperature) and the plot reproduces the
 * seeds' two figures: beta 0.5, 0.9 and 0.98 without bias correction (the
 * curves start near 0: ema_series_beta) and with it, side by side.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "csv.h"
#include "svg.h"
#include "temperatures.h"

static int run_smooth(const cli_command *cmd, int argc, char **argv);

const cli_command cmd_smooth = {
    "smooth",
    "exponentially weighted mean of a CSV column (pandas ewm semantics)",
    "ema smooth [--input FILE.csv] --column NAME (--beta B | --alpha A | --span S | --com C |\n"
    "                  --halflife H) [--no-adjust] [--ignore-na] [--min-periods N] [--times COLUMN]\n"
    "                  [--output OUT.csv] [--plot OUT.svg]",
    "Add the exponentially weighted moving average of one column to a CSV file, with the\n"
    "semantics of pandas' Series.ewm(...).mean(). Without --input, use a built-in synthetic\n"
    "year of daily temperatures (columns date, day, temperature) and let --plot draw the\n"
    "seeds' figures: beta 0.5, 0.9 and 0.98, without and with bias correction.\n"
    "\n"
    "Input and output:\n"
    "  -i, --input FILE    CSV file with a header line (RFC 4180; '-' is standard input)\n"
    "  -c, --column NAME   the column to average (default with the built-in data: temperature)\n"
    "  -o, --output FILE   write the CSV there instead of standard output: the input's columns\n"
    "                      unchanged plus NAME_ema (empty where the mean is undefined)\n"
    "      --plot FILE     write an SVG plot of the column and its average\n"
    "\n"
    "Decay, exactly one (as pandas' com=, span=, halflife=, alpha=):\n"
    "      --beta B        the seeds' decay: alpha = 1 - B, 0 <= B < 1\n"
    "      --alpha A       smoothing factor, 0 < A <= 1\n"
    "      --span S        alpha = 2 / (S + 1), S >= 1\n"
    "      --com C         centre of mass: alpha = 1 / (1 + C), C >= 0\n"
    "      --halflife H    alpha = 1 - exp(-ln 2 / H), H > 0 rows; with --times, a duration:\n"
    "                      a number with a unit s, min, h, d or w (\"90s\", \"12h\", \"3d\"), or a\n"
    "                      plain number of seconds\n"
    "  (with the built-in data the default is --beta 0.9)\n"
    "\n"
    "As pandas:\n"
    "      --no-adjust     plain recursion y0 = x0, yt = (1-alpha) y(t-1) + alpha xt; the default\n"
    "                      (adjust=True) divides by the sum of the weights: bias-corrected\n"
    "      --ignore-na     skip missing values as if absent (default: they still age the weights)\n"
    "      --min-periods N results stay empty until N values were seen (default 0)\n"
    "      --times COLUMN  time stamps of the rows (needs --halflife, not --no-adjust): numbers\n"
    "                      are seconds; ISO dates \"2024-01-31\" and date-times\n"
    "                      \"2024-01-31T12:00:00\" or \"2024-01-31 12:00:00\" (optional fraction of a\n"
    "                      second, \"Z\" or \"+02:00\") are seconds since 1970-01-01 UTC;\n"
    "                      they must not decrease\n"
    "\n"
    "Missing values: cells that pandas' read_csv reads as NaN (empty, NaN, nan, NA, N/A, NULL,\n"
    "null, #N/A, ...) and infinities are missing; other non-numbers are errors.\n"
    "Exit status: 0 success, 1 failure (unreadable or malformed CSV: the message names the\n"
    "line), 2 usage error.\n",
    run_smooth,
};

enum {
  OPT_INPUT = 1,
  OPT_COLUMN,
  OPT_BETA,
  OPT_ALPHA,
  OPT_SPAN,
  OPT_COM,
  OPT_HALFLIFE,
  OPT_NO_ADJUST,
  OPT_IGNORE_NA,
  OPT_MIN_PERIODS,
  OPT_TIMES,
  OPT_OUTPUT,
  OPT_PLOT
};

/* ------------------------------------------------------------------------ */
/* Cells                                                                     */
/* ------------------------------------------------------------------------ */

/* What pandas' read_csv reads as NaN by default (pandas 1.5 STR_NA_VALUES). */
static int is_na_text(const char *s) {
  static const char *const na[] = {"",     "#N/A", "#N/A N/A", "#NA",     "-1.#IND", "-1.#QNAN",
                                   "-NaN", "-nan", "1.#IND",   "1.#QNAN", "<NA>",    "N/A",
                                   "NA",   "NULL", "NaN",      "n/a",     "nan",     "null"};
  while (*s == ' ' || *s == '\t') s++;
  size_t n = strlen(s);
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
  for (size_t i = 0; i < sizeof na / sizeof na[0]; i++)
    if (strlen(na[i]) == n && strncmp(na[i], s, n) == 0) return 1;
  return 0;
}

static int is_leap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar, by
   counting: whole years since year 1 (with their leap days), then months. */
static int64_t days_since_epoch(int64_t y, int m, int d) {
  static const int before_month[12] = {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334};
  int64_t years = y - 1;
  int64_t days = years * 365 + years / 4 - years / 100 + years / 400; /* 0001-01-01 to y-01-01 */
  days += before_month[m - 1] + (d - 1) + (m > 2 && is_leap(y));
  return days - 719162; /* 0001-01-01 to 1970-01-01 */
}

/* Read exactly n digits at *p. */
static int digits(const char **p, int n, int *out) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (!isdigit((unsigned char)(*p)[i])) return 0;
    v = v * 10 + ((*p)[i] - '0');
  }
  *p += n;
  *out = v;
  return 1;
}

/* ISO 8601 date or date-time into seconds since the epoch (UTC). 1 when s is
   one (then *secs is set), 0 otherwise. */
static int parse_iso(const char *s, double *secs) {
  int y, mo, d, h = 0, mi = 0, se = 0;
  double frac = 0;
  const char *p = s;
  if (!digits(&p, 4, &y) || *p++ != '-' || !digits(&p, 2, &mo) || *p++ != '-' || !digits(&p, 2, &d)) return 0;
  if (y < 1 || mo < 1 || mo > 12 || d < 1) return 0;
  static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (d > mdays[mo - 1] + (mo == 2 && is_leap(y))) return 0;
  int offset_min = 0;
  if (*p == 'T' || *p == ' ') {
    p++;
    if (!digits(&p, 2, &h) || *p++ != ':' || !digits(&p, 2, &mi)) return 0;
    if (*p == ':') {
      p++;
      if (!digits(&p, 2, &se)) return 0;
      if (*p == '.') {
        const char *q = p;
        double scale = 0.1;
        for (q++; isdigit((unsigned char)*q); q++, scale /= 10) frac += (*q - '0') * scale;
        if (q == p + 1) return 0;
        p = q;
      }
    }
    if (h > 23 || mi > 59 || se > 59) return 0;
    if (*p == 'Z') {
      p++;
    } else if (*p == '+' || *p == '-') {
      int sign = *p++ == '-' ? -1 : 1, oh, om = 0;
      if (!digits(&p, 2, &oh)) return 0;
      if (*p == ':') p++;
      if (isdigit((unsigned char)*p) && !digits(&p, 2, &om)) return 0;
      if (oh > 23 || om > 59) return 0;
      offset_min = sign * (oh * 60 + om);
    }
  }
  if (*p) return 0;
  *secs = (double)days_since_epoch(y, mo, d) * 86400.0 + h * 3600.0 + mi * 60.0 + se + frac - offset_min * 60.0;
  return 1;
}

/* A duration for --halflife with --times: number plus an optional unit. */
static int parse_duration(const char *s, double *secs) {
  static const struct {
    const char *unit;
    double secs;
  } units[] = {{"", 1},        {"s", 1},        {"sec", 1},     {"secs", 1},      {"second", 1},
               {"seconds", 1}, {"min", 60},     {"mins", 60},   {"minute", 60},   {"minutes", 60},
               {"h", 3600},    {"hr", 3600},    {"hour", 3600}, {"hours", 3600},  {"d", 86400},
               {"day", 86400}, {"days", 86400}, {"w", 604800},  {"week", 604800}, {"weeks", 604800}};
  char *end;
  while (*s == ' ') s++;
  if (!*s || strchr(s, 'x') || strchr(s, 'X')) return 0;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || errno == ERANGE || !isfinite(v)) return 0;
  while (*end == ' ') end++;
  size_t n = strlen(end);
  while (n && end[n - 1] == ' ') n--;
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
    if (strlen(units[i].unit) == n && strncmp(units[i].unit, end, n) == 0) {
      *secs = v * units[i].secs;
      return 1;
    }
  return 0;
}

/* ------------------------------------------------------------------------ */
/* The built-in data                                                         */
/* ------------------------------------------------------------------------ */

enum { BUILTIN_DAYS = 365, BUILTIN_YEAR = 2023 };
#define BUILTIN_SEED 2023u

/* A CSV table (date, day, temperature) holding the tool's synthetic
   year, so that the rest of the command treats it like a file. */
static int builtin_table(csv_table *t, double *temps) {
  if (!synthetic_temperatures(temps, BUILTIN_DAYS, BUILTIN_SEED)) return 0;
  enum { W = 40 };
  memset(t, 0, sizeof *t);
  t->ncols = 3;
  t->nrows = BUILTIN_DAYS;
  t->cell = (char **)malloc((BUILTIN_DAYS + 1) * 3 * sizeof *t->cell);
  t->line = (long *)malloc((BUILTIN_DAYS + 1) * sizeof *t->line);
  t->text = (char *)malloc((BUILTIN_DAYS + 1) * 3 * W);
  if (!t->cell || !t->line || !t->text) {
    csv_free(t);
    return 0;
  }
  for (size_t r = 0; r <= BUILTIN_DAYS; r++) {
    char *c0 = t->text + (r * 3) * W, *c1 = c0 + W, *c2 = c1 + W;
    if (r == 0) {
      strcpy(c0, "date");
      strcpy(c1, "day");
      strcpy(c2, "temperature");
    } else {
      int64_t days = days_since_epoch(BUILTIN_YEAR, 1, 1) + (int64_t)r - 1;
      /* back from days to a calendar date, month by month */
      int m = 1, dd = (int)(days - days_since_epoch(BUILTIN_YEAR, 1, 1)) + 1;
      static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
      while (dd > mdays[m - 1]) dd -= mdays[m++ - 1];
      snprintf(c0, W, "%04d-%02d-%02d", BUILTIN_YEAR, m, dd);
      snprintf(c1, W, "%zu", r);
      snprintf(c2, W, "%.2f", temps[r - 1]); /* a thermometer's resolution */
      temps[r - 1] = strtod(c2, NULL);       /* the data are what the table says */
    }
    t->cell[r * 3] = c0;
    t->cell[r * 3 + 1] = c1;
    t->cell[r * 3 + 2] = c2;
    t->line[r] = (long)r + 1;
  }
  return 1;
}

/* The seeds' two figures from the built-in year. */
static int plot_builtin(const char *path, const double *temps) {
  static const double betas[3] = {0.5, 0.9, 0.98};
  double *x = (double *)malloc(BUILTIN_DAYS * 7 * sizeof *x);
  if (!x) return cli_error("smooth: out of memory");
  double *curve[2][3];
  for (int k = 0; k < 6; k++) curve[k / 3][k % 3] = x + (size_t)BUILTIN_DAYS * (size_t)(k + 1);
  for (int i = 0; i < BUILTIN_DAYS; i++) x[i] = i + 1;
  for (int corr = 0; corr < 2; corr++)
    for (int b = 0; b < 3; b++)
      if (ema_series_beta(temps, BUILTIN_DAYS, betas[b], corr, curve[corr][b], NULL, 0) != EMA_OK) {
        free(x);
        return cli_error("smooth: ema_series_beta failed");
      }
  svg_series s[2][4];
  for (int corr = 0; corr < 2; corr++) {
    s[corr][0] = (svg_series){"daily temperature", x, temps, BUILTIN_DAYS, SVG_SKY, SVG_DOTS, 2.2};
    s[corr][1] = (svg_series){"β = 0.5 (≈ 2 days)", x, curve[corr][0], BUILTIN_DAYS, SVG_ORANGE, SVG_LINE, 1.6};
    s[corr][2] = (svg_series){"β = 0.9 (≈ 10 days)", x, curve[corr][1], BUILTIN_DAYS, SVG_RED, SVG_LINE, 2.2};
    s[corr][3] = (svg_series){
        "β = 0.98 (≈ 50 days)", x, curve[corr][2], BUILTIN_DAYS, corr ? SVG_GREEN : SVG_PURPLE, SVG_LINE, 2.6};
  }
  svg_panel panels[2] = {
      {"Without bias correction: v₀ = 0, vₜ = β vₜ₋₁ + (1−β) θₜ", "day of the year", "temperature (°C)", s[0], 4, 1},
      {"With bias correction: vₜ / (1 − βᵗ)", "day of the year", "temperature (°C)", s[1], 4, 1},
  };
  char err[512];
  int ok = svg_write(path, "Exponentially weighted averages of a synthetic year of daily temperatures", panels, 2, 640,
                     480, err, sizeof err);
  free(x);
  return ok ? EXIT_OK : cli_error("smooth: %s", err);
}

/* One panel: the column and its average, against row, day or time. */
static int plot_input(const char *path, const char *column, const char *decay_text, const double *x, const char *xlabel,
                      const double *y, const double *mean, size_t n) {
  char ylabel[256], title[512], ema_label[300];
  snprintf(ylabel, sizeof ylabel, "%s", column);
  snprintf(title, sizeof title, "Exponentially weighted mean of %s (%s)", column, decay_text);
  snprintf(ema_label, sizeof ema_label, "%s_ema", column);
  svg_series s[2] = {
      {column, x, y, n, SVG_SKY, n <= 5000 ? SVG_DOTS : SVG_LINE, n <= 5000 ? 2.2 : 0.8},
      {ema_label, x, mean, n, SVG_RED, SVG_LINE, 2.2},
  };
  svg_panel panel = {NULL, xlabel, ylabel, s, 2, 0};
  char err[512];
  if (!svg_write(path, title, &panel, 1, 900, 500, err, sizeof err)) return cli_error("smooth: %s", err);
  return EXIT_OK;
}

/* ------------------------------------------------------------------------ */
/* The command                                                               */
/* ------------------------------------------------------------------------ */

static int write_csv(FILE *f, const csv_table *t, const char *new_column, const double *mean) {
  for (size_t r = 0; r <= t->nrows; r++) {
    for (size_t c = 0; c < t->ncols; c++) {
      if (c) fputc(',', f);
      csv_write_field(f, t->cell[r * t->ncols + c]);
    }
    fputc(',', f);
    if (r == 0) {
      csv_write_field(f, new_column);
    } else if (!isnan(mean[r - 1])) {
      char buf[40];
      cli_format_double(buf, sizeof buf, mean[r - 1]);
      fputs(buf, f);
    }
    fputs("\n", f);
  }
  return !ferror(f);
}

static int run_smooth(const cli_command *cmd, int argc, char **argv) {
  static const cli_option options[] = {{"input", 'i', 1, OPT_INPUT},       {"column", 'c', 1, OPT_COLUMN},
                                       {"beta", 0, 1, OPT_BETA},           {"alpha", 0, 1, OPT_ALPHA},
                                       {"span", 0, 1, OPT_SPAN},           {"com", 0, 1, OPT_COM},
                                       {"halflife", 0, 1, OPT_HALFLIFE},   {"no-adjust", 0, 0, OPT_NO_ADJUST},
                                       {"ignore-na", 0, 0, OPT_IGNORE_NA}, {"min-periods", 0, 1, OPT_MIN_PERIODS},
                                       {"times", 0, 1, OPT_TIMES},         {"output", 'o', 1, OPT_OUTPUT},
                                       {"plot", 0, 1, OPT_PLOT},           {NULL, 0, 0, 0}};
  const char *input = NULL, *column = NULL, *times_col = NULL, *output = NULL, *plot = NULL;
  const char *decay_opt = NULL, *decay_arg = NULL;
  int decay_id = 0, adjust = 1, ignore_na = 0;
  int64_t min_periods = 0;
  cli_parser p;
  cli_parser_init(&p, cmd, options, argc, argv);
  for (int id, stop_rc; (id = cli_next(&p)) != CLI_END;) {
    if (cli_stop(&p, id, &stop_rc)) return stop_rc;
    switch (id) {
      case CLI_POSITIONAL:
        return cli_usage_error(cmd, "unexpected argument '%s' (the input file goes after --input)", p.arg);
      case OPT_INPUT:
        input = p.arg;
        break;
      case OPT_COLUMN:
        column = p.arg;
        break;
      case OPT_BETA:
      case OPT_ALPHA:
      case OPT_SPAN:
      case OPT_COM:
      case OPT_HALFLIFE:
        if (decay_id && decay_id != id)
          return cli_usage_error(cmd, "give only one of --beta, --alpha, --span, --com, --halflife (got %s and %s)",
                                 decay_opt, p.opt);
        decay_id = id;
        decay_arg = p.arg;
        decay_opt = id == OPT_BETA    ? "--beta"
                    : id == OPT_ALPHA ? "--alpha"
                    : id == OPT_SPAN  ? "--span"
                    : id == OPT_COM   ? "--com"
                                      : "--halflife";
        break;
      case OPT_NO_ADJUST:
        adjust = 0;
        break;
      case OPT_IGNORE_NA:
        ignore_na = 1;
        break;
      case OPT_MIN_PERIODS:
        if (!cli_int64(&p, 0, INT64_MAX, &min_periods)) return EXIT_USAGE;
        break;
      case OPT_TIMES:
        times_col = p.arg;
        break;
      case OPT_OUTPUT:
        output = p.arg;
        break;
      case OPT_PLOT:
        plot = p.arg;
        break;
    }
  }
  if (input && !column) return cli_usage_error(cmd, "missing --column NAME: which column to average");
  if (!decay_id) {
    if (input) return cli_usage_error(cmd, "missing the decay: give one of --beta, --alpha, --span, --com, --halflife");
    decay_id = OPT_BETA;
    decay_arg = "0.9";
    decay_opt = "--beta";
  }
  if (times_col && decay_id != OPT_HALFLIFE)
    return cli_usage_error(cmd,
                           "with --times give the decay as --halflife DURATION (e.g. 3d); pandas accepts "
                           "only a half-life with time stamps");

  /* the decay into pandas' options */
  ema_ewm_opts opts;
  ema_ewm_opts_init(&opts);
  opts.adjust = adjust;
  opts.ignore_na = ignore_na;
  opts.min_periods = (size_t)min_periods;
  double value;
  char err[1024];
  if (decay_id == OPT_HALFLIFE && times_col) {
    if (!parse_duration(decay_arg, &value))
      return cli_usage_error(cmd,
                             "--halflife with --times needs a duration such as 90s, 30min, 12h, 3d, 2w or a "
                             "number of seconds, not '%s'",
                             decay_arg);
  } else if (!cli_parse_double(decay_arg, 1, &value)) {
    return cli_usage_error(cmd, "option '%s' needs a number, not '%s'", decay_opt, decay_arg);
  }
  if (decay_id == OPT_BETA) {
    if (ema_ewm_opts_set_beta(&opts, value, err, sizeof err) != EMA_OK)
      return cli_usage_error(cmd, "--beta %s: %s", decay_arg, err);
  } else {
    opts.kind = decay_id == OPT_ALPHA  ? EMA_EWM_ALPHA
                : decay_id == OPT_SPAN ? EMA_EWM_SPAN
                : decay_id == OPT_COM  ? EMA_EWM_COM
                                       : EMA_EWM_HALFLIFE;
    opts.value = value;
  }
  if (ema_ewm_check(&opts, times_col != NULL, NULL, err, sizeof err) != EMA_OK)
    return cli_usage_error(cmd, "%s %s: %s", decay_opt, decay_arg, err);

  /* the data */
  int rc = EXIT_FAIL;
  csv_table t = {0};
  double *x = NULL, *times = NULL, *mean = NULL, *xplot = NULL;
  char *ema_column = NULL;
  const char *name = input ? input : "built-in data";
  double builtin_temps[BUILTIN_DAYS];
  if (input) {
    if (!csv_read(input, &t, err, sizeof err)) return cli_error("%s", err);
  } else {
    if (!column) column = "temperature";
    if (!builtin_table(&t, builtin_temps)) return cli_error("smooth: cannot build the synthetic data");
  }
  long col = csv_column(&t, column), tcol = -1;
  if (col < 0) {
    size_t len = 0;
    char list[512] = "";
    for (size_t c = 0; c < t.ncols && len + 4 < sizeof list; c++)
      len += (size_t)snprintf(list + len, sizeof list - len, "%s'%s'", c ? ", " : "", t.cell[c]);
    rc = cli_error("%s: no column '%s'; the columns are %s", name, column, list);
    goto done;
  }
  if (times_col && (tcol = csv_column(&t, times_col)) < 0) {
    rc = cli_error("%s: no column '%s' for --times", name, times_col);
    goto done;
  }
  ema_column = (char *)malloc(strlen(column) + 5);
  if (!ema_column) goto nomem;
  sprintf(ema_column, "%s_ema", column);
  if (csv_column(&t, ema_column) >= 0) {
    rc = cli_error("%s: the output column '%s' exists already; rename it in the input first", name, ema_column);
    goto done;
  }
  size_t n = t.nrows;
  x = (double *)malloc((n ? n : 1) * sizeof *x);
  mean = (double *)malloc((n ? n : 1) * sizeof *mean);
  xplot = (double *)malloc((n ? n : 1) * sizeof *xplot);
  if (!x || !mean || !xplot) goto nomem;
  for (size_t r = 0; r < n; r++) {
    const char *s = CSV_CELL(&t, r, (size_t)col);
    if (is_na_text(s)) {
      x[r] = NAN;
    } else if (!cli_parse_double(s, 1, &x[r])) {
      rc = cli_error("%s:%ld: column '%s': '%s' is not a number (use an empty cell or NaN for a missing value)", name,
                     CSV_LINE(&t, r), column, s);
      goto done;
    }
    xplot[r] = (double)r + 1;
  }
  int dates = 0;
  if (times_col) {
    times = (double *)malloc((n ? n : 1) * sizeof *times);
    if (!times) goto nomem;
    for (size_t r = 0; r < n; r++) {
      const char *s = CSV_CELL(&t, r, (size_t)tcol);
      while (*s == ' ') s++;
      int is_date = parse_iso(s, &times[r]);
      if (!is_date && !cli_parse_double(s, 0, &times[r])) {
        rc = cli_error(
            "%s:%ld: column '%s': '%s' is not a time stamp (seconds, or an ISO date such as 2024-01-31 or "
            "2024-01-31T12:00:00)",
            name, CSV_LINE(&t, r), times_col, CSV_CELL(&t, r, (size_t)tcol));
        goto done;
      }
      if (r == 0) dates = is_date;
      if (is_date != dates) {
        rc = cli_error("%s:%ld: column '%s': '%s' mixes %s with the %s of line %ld", name, CSV_LINE(&t, r), times_col,
                       s, is_date ? "a date" : "a number", dates ? "dates" : "numbers", CSV_LINE(&t, 0));
        goto done;
      }
      if (r > 0 && times[r] < times[r - 1]) {
        rc = cli_error("%s:%ld: column '%s': '%s' is earlier than the line before; time stamps must not decrease", name,
                       CSV_LINE(&t, r), times_col, s);
        goto done;
      }
      xplot[r] = dates ? (times[r] - times[0]) / 86400.0 : times[r];
    }
  }
  if (ema_ewm_mean(&opts, x, n, times, mean, err, sizeof err) != EMA_OK) {
    rc = cli_error("%s: %s", name, err);
    goto done;
  }

  /* the CSV */
  FILE *f = output ? fopen(output, "w") : stdout;
  if (!f) {
    rc = cli_error("cannot create '%s': %s", output, strerror(errno));
    goto done;
  }
  int wrote = write_csv(f, &t, ema_column, mean);
  if (output)
    wrote = (fclose(f) == 0) && wrote;
  else
    wrote = (fflush(f) == 0) && wrote;
  if (!wrote) {
    rc = cli_error("cannot write '%s': %s", output ? output : "standard output", strerror(errno));
    goto done;
  }

  /* the plot */
  if (plot) {
    if (!input) {
      rc = plot_builtin(plot, builtin_temps);
      goto done;
    }
    char decay_text[128], xlabel[300];
    snprintf(decay_text, sizeof decay_text, "%s %s%s%s", decay_opt + 2, decay_arg, adjust ? "" : ", no adjust",
             ignore_na ? ", ignore NA" : "");
    if (!times_col)
      snprintf(xlabel, sizeof xlabel, "row");
    else if (dates)
      snprintf(xlabel, sizeof xlabel, "days since %s", n ? CSV_CELL(&t, 0, (size_t)tcol) : "the first row");
    else
      snprintf(xlabel, sizeof xlabel, "%s", times_col);
    rc = plot_input(plot, column, decay_text, xplot, xlabel, x, mean, n);
    goto done;
  }
  rc = EXIT_OK;
  goto done;
nomem:
  rc = cli_error("smooth: out of memory");
done:
  csv_free(&t);
  free(x);
  free(times);
  free(mean);
  free(xplot);
  free(ema_column);
  return rc;
}
