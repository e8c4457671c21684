/*
 * cmd_inspect.c: `ema inspect CKPT`, what a checkpoint holds.
 *
 * For any safetensors file (libema's checkpoints and others): the tensors
 * with dtype and shape, which ones have an average ("<name>/<ema name>"),
 * the EMA state and other metadata, and per averaged tensor the relative
 * distance ||raw - avg||_2 / ||raw||_2 between the weights and the average.
 *
 * EMA names: the metadata's ema.name and, for a bank of several averages,
 * every ema.average.<k>.name; --ema-name adds one; with none of these,
 * TensorFlow's "ExponentialMovingAverage". Each name gives its own average
 * (and distance) per tensor.
 *
 * The distance is computed in double precision while streaming both tensors
 * through fixed windows of ema_file_read (memory stays bounded whatever the
 * tensor size); F32, F64, F16 and BF16 are decoded by the tool itself
 * (cli.c). The norms are accumulated with scaling, so huge F64 values do not
 * overflow.
 *
 * Roles of the tensors (also the "role" field of --json):
 *   model    a tensor of the model (with or without an average)
 *   state    plain state in a libema checkpoint (no average: ema_track_policy with EMA_POLICY_COPY)
 *   average  "<name>/<ema>", the average of <name>
 *   internal "<name>/<ema>/<anything>": an average's own state (the
 *            zero-debias accumulator and counters, ...)
 *   orphan   "<name>/<ema>" whose <name> is absent
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"

static int run_inspect(const cli_command *cmd, int argc, char **argv);

const cli_command cmd_inspect = {
    "inspect",
    "list a checkpoint's tensors, averages, EMA state and raw-vs-average distances",
    "ema inspect [--json] [--ema-name NAME] CKPT",
    "Show what a safetensors checkpoint holds: each tensor's dtype and shape, whether it has\n"
    "an average (stored as NAME/<ema name>), the EMA state from the metadata (decay,\n"
    "num_updates, ...), and for each averaged tensor the relative distance\n"
    "||raw - average|| / ||raw|| (L2 norms, in double precision; F32, F64, F16, BF16).\n"
    "Large files are streamed: memory stays small whatever their size.\n"
    "\n"
    "The EMA names come from the metadata: ema.name and, for a bank of several averages,\n"
    "each ema.average.K.name (one distance column per average); without them,\n"
    "TensorFlow's ExponentialMovingAverage. Tensors NAME/<ema name>/... are the averages'\n"
    "internal state (zero-debias accumulators).\n"
    "\n"
    "Options:\n"
    "      --json           print one JSON object instead of the tables: file, ema_names,\n"
    "                       metadata, and per tensor name, dtype, shape, bytes, role (model,\n"
    "                       state, average, internal, orphan), average, rel_distance and\n"
    "                       averages (one entry per EMA name); null where undefined\n"
    "      --ema-name NAME  also look for averages stored as NAME/<NAME>\n"
    "  -h, --help           show this help and exit\n"
    "\n"
    "Exit status: 0 success, 1 failure (missing or invalid file), 2 usage error.\n",
    run_inspect,
};

enum { OPT_JSON = 1, OPT_EMA_NAME };
enum { ROLE_MODEL, ROLE_STATE, ROLE_AVERAGE, ROLE_INTERNAL, ROLE_ORPHAN };
static const char *const role_names[] = {"model", "state", "average", "internal", "orphan"};
enum { MAX_NAMES = 16 };

typedef struct row {
  ema_file_tensor t;
  int role;
  int of_name;                /* average/internal/orphan rows: which EMA name */
  long average[MAX_NAMES];    /* per EMA name: the average's row, or -1 */
  double distance[MAX_NAMES]; /* NaN when not computed; +inf when ||raw|| is 0 */
  const char *why[MAX_NAMES]; /* an average without a distance: why */
} row;

/* ||v||_2 accumulated as scale * sqrt(ssq), as the BLAS nrm2 does. */
typedef struct norm2 {
  double scale, ssq;
} norm2;

static void norm2_add(norm2 *n, double v) {
  if (v == 0 || isnan(v)) {
    if (isnan(v)) n->ssq = NAN;
    return;
  }
  double a = fabs(v);
  if (isinf(a)) {
    n->scale = INFINITY;
    n->ssq = 1;
    return;
  }
  if (a > n->scale) {
    double r = n->scale / a;
    n->ssq = 1 + n->ssq * r * r;
    n->scale = a;
  } else {
    double r = a / n->scale;
    n->ssq += r * r;
  }
}
static double norm2_value(const norm2 *n) { return n->scale == 0 ? 0 : n->scale * sqrt(n->ssq); }

/* Relative distance between the tensors raw and avg of f, streaming. */
static ema_status rel_distance(const ema_file *f, const ema_file_tensor *raw, const ema_file_tensor *avg, double *out,
                               progress *bar, double *done, char *err, size_t errcap) {
  enum { WINDOW = 1 << 14 }; /* elements per read */
  size_t rsz = ema_dtype_size(raw->dtype), asz = ema_dtype_size(avg->dtype);
  unsigned char *rb = (unsigned char *)malloc(WINDOW * rsz), *ab = (unsigned char *)malloc(WINDOW * asz);
  if (!rb || !ab) {
    free(rb);
    free(ab);
    snprintf(err, errcap, "out of memory");
    return EMA_E_NOMEM;
  }
  norm2 diff = {0, 0}, ref = {0, 0};
  ema_status st = EMA_OK;
  for (uint64_t i = 0; i < raw->numel; i += WINDOW) {
    size_t k = (size_t)(raw->numel - i < WINDOW ? raw->numel - i : WINDOW);
    if ((st = ema_file_read(f, raw->name, i * rsz, rb, k * rsz, err, errcap)) != EMA_OK) break;
    if ((st = ema_file_read(f, avg->name, i * asz, ab, k * asz, err, errcap)) != EMA_OK) break;
    for (size_t j = 0; j < k; j++) {
      double r = cli_load_element(rb, raw->dtype, j), a = cli_load_element(ab, avg->dtype, j);
      norm2_add(&ref, r);
      norm2_add(&diff, r - a);
    }
    *done += (double)(k * (rsz + asz));
    progress_update(bar, *done);
  }
  free(rb);
  free(ab);
  if (st != EMA_OK) return st;
  double d = norm2_value(&diff), r = norm2_value(&ref);
  *out = r == 0 ? (d == 0 ? 0 : INFINITY) : d / r;
  return EMA_OK;
}

static int same_shape(const ema_file_tensor *a, const ema_file_tensor *b) {
  if (a->ndim != b->ndim) return 0;
  for (int d = 0; d < a->ndim; d++)
    if (a->shape[d] != b->shape[d]) return 0;
  return 1;
}

static long find_row(const row *rows, size_t n, const char *name, size_t len) {
  for (size_t i = 0; i < n; i++)
    if (strlen(rows[i].t.name) == len && strncmp(rows[i].t.name, name, len) == 0) return (long)i;
  return -1;
}

static int is_float(ema_dtype d) { return d == EMA_F32 || d == EMA_F64 || d == EMA_F16 || d == EMA_BF16; }

/* The EMA names: --ema-name, ema.name, ema.average.<k>.name; or the default. */
static size_t ema_names(const ema_file *f, const char *opt, const char **names) {
  size_t n = 0;
  const char *cand[MAX_NAMES + 2];
  size_t nc = 0;
  if (opt) cand[nc++] = opt;
  if (ema_file_metadata(f, "ema.name")) cand[nc++] = ema_file_metadata(f, "ema.name");
  for (size_t i = 0; i < ema_file_metadata_count(f) && nc < MAX_NAMES + 2; i++) {
    const char *k, *v;
    unsigned idx;
    char tail[8];
    ema_file_metadata_at(f, i, &k, &v);
    if (sscanf(k, "ema.average.%u.%7s", &idx, tail) == 2 && strcmp(tail, "name") == 0) cand[nc++] = v;
  }
  for (size_t i = 0; i < nc && n < MAX_NAMES; i++) {
    int dup = !*cand[i] || strchr(cand[i], '/') != NULL;
    for (size_t j = 0; j < n && !dup; j++) dup = strcmp(names[j], cand[i]) == 0;
    if (!dup) names[n++] = cand[i];
  }
  if (n == 0) names[n++] = "ExponentialMovingAverage";
  return n;
}

static void print_distance(FILE *f, double d, int json) {
  if (json) {
    if (isfinite(d))
      fprintf(f, "%.17g", d);
    else
      fputs("null", f);
  } else if (isnan(d)) {
    fputs("-", f);
  } else {
    fprintf(f, "%.4g", d);
  }
}

static void print_json(const char *path, const ema_file *f, const char *const *names, size_t nn, const row *rows,
                       size_t n) {
  printf("{\n  \"file\": ");
  cli_json_string(stdout, path);
  printf(",\n  \"ema_names\": [");
  for (size_t k = 0; k < nn; k++) {
    printf("%s", k ? ", " : "");
    cli_json_string(stdout, names[k]);
  }
  printf("],\n  \"metadata\": {");
  for (size_t i = 0; i < ema_file_metadata_count(f); i++) {
    const char *k, *v;
    ema_file_metadata_at(f, i, &k, &v);
    printf("%s\n    ", i ? "," : "");
    cli_json_string(stdout, k);
    printf(": ");
    cli_json_string(stdout, v);
  }
  printf("%s},\n  \"tensors\": [", ema_file_metadata_count(f) ? "\n  " : "");
  for (size_t i = 0; i < n; i++) {
    const row *r = &rows[i];
    char shape[256];
    cli_format_shape(shape, sizeof shape, r->t.ndim, r->t.shape);
    printf("%s\n    {\"name\": ", i ? "," : "");
    cli_json_string(stdout, r->t.name);
    printf(", \"dtype\": \"%s\", \"shape\": %s, \"bytes\": %llu, \"role\": \"%s\"", r->t.dtype_name, shape,
           (unsigned long long)r->t.nbytes, role_names[r->role]);
    if (r->role != ROLE_MODEL && r->role != ROLE_STATE) {
      printf(", \"ema_name\": ");
      cli_json_string(stdout, names[r->of_name]);
    }
    /* the first EMA name's average, then all of them */
    printf(", \"average\": ");
    if (r->average[0] >= 0)
      cli_json_string(stdout, rows[r->average[0]].t.name);
    else
      printf("null");
    printf(", \"rel_distance\": ");
    print_distance(stdout, r->distance[0], 1);
    printf(", \"averages\": [");
    int first = 1;
    for (size_t k = 0; k < nn; k++) {
      if (r->average[k] < 0) continue;
      printf("%s{\"ema_name\": ", first ? "" : ", ");
      first = 0;
      cli_json_string(stdout, names[k]);
      printf(", \"name\": ");
      cli_json_string(stdout, rows[r->average[k]].t.name);
      printf(", \"dtype\": \"%s\", \"rel_distance\": ", rows[r->average[k]].t.dtype_name);
      print_distance(stdout, r->distance[k], 1);
      printf(", \"note\": ");
      if (r->why[k])
        cli_json_string(stdout, r->why[k]);
      else
        printf("null");
      printf("}");
    }
    printf("]}");
  }
  printf("%s]\n}\n", n ? "\n  " : "");
}

static void print_text(const char *path, const ema_file *f, const char *const *names, size_t nn, const row *rows,
                       size_t n) {
  size_t n_avg = 0, n_state = 0, n_model = 0;
  uint64_t bytes = 0;
  for (size_t i = 0; i < n; i++) {
    bytes += rows[i].t.nbytes;
    n_model += rows[i].role == ROLE_MODEL;
    n_state += rows[i].role == ROLE_STATE;
    int has = 0;
    for (size_t k = 0; k < nn; k++) has |= rows[i].average[k] >= 0;
    if (has) n_avg++;
  }
  printf("file: %s\n", path);
  printf("tensors: %zu in all: %zu model tensors, %zu of them averaged; %zu plain state; %.1f KiB of data\n", n,
         n_model + n_state, n_avg, n_state, (double)bytes / 1024.0);
  printf("averages: stored as NAME/");
  for (size_t k = 0; k < nn; k++) printf("%s%s", k ? ", NAME/" : "", names[k]);
  printf("\n");
  const char *fmt = ema_file_metadata(f, "libema.format"), *ver = ema_file_metadata(f, "libema.version");
  if (fmt) printf("format: libema checkpoint, format %s, written by libema %s\n", fmt, ver ? ver : "?");
  const char *decay = ema_file_metadata(f, "ema.decay"), *nupd = ema_file_metadata(f, "ema.num_updates");
  const char *zd = ema_file_metadata(f, "ema.zero_debias"), *sched = ema_file_metadata(f, "ema.schedule");
  if (decay || nupd || zd || sched) {
    printf("EMA state: decay %s, num_updates %s", decay ? decay : "?", nupd ? nupd : "?");
    if (nupd && strcmp(nupd, "-1") == 0) printf(" (warm-up off)");
    printf(", zero_debias %s, schedule %s\n", zd ? zd : "?", sched ? sched : "?");
  }
  size_t nm = ema_file_metadata_count(f);
  if (nm) {
    size_t w = 0;
    for (size_t i = 0; i < nm; i++) {
      const char *k, *v;
      ema_file_metadata_at(f, i, &k, &v);
      if (strlen(k) > w) w = strlen(k);
    }
    printf("metadata:\n");
    for (size_t i = 0; i < nm; i++) {
      const char *k, *v;
      ema_file_metadata_at(f, i, &k, &v);
      printf("  %-*s  %s\n", (int)w, k, v);
    }
  }
  /* the table: model and state tensors first, then the averages' tensors */
  size_t wn = strlen("tensor"), ws = strlen("shape");
  char shape[256];
  for (size_t i = 0; i < n; i++) {
    if (strlen(rows[i].t.name) > wn) wn = strlen(rows[i].t.name);
    cli_format_shape(shape, sizeof shape, rows[i].t.ndim, rows[i].t.shape);
    if (strlen(shape) > ws) ws = strlen(shape);
  }
  printf("\n%-*s  %-5s  %-*s  %-16s", (int)wn, "tensor", "dtype", (int)ws, "shape", "average");
  if (nn == 1)
    printf("  ||raw-avg||/||raw||\n");
  else {
    for (size_t k = 0; k < nn; k++) printf("  %-*s", (int)(strlen(names[k]) > 10 ? strlen(names[k]) : 10), names[k]);
    printf("   (||raw-avg||/||raw|| per average)\n");
  }
  for (int pass = 0; pass < 2; pass++) {
    for (size_t i = 0; i < n; i++) {
      const row *r = &rows[i];
      int main_row = r->role == ROLE_MODEL || r->role == ROLE_STATE;
      if (main_row != (pass == 0)) continue;
      cli_format_shape(shape, sizeof shape, r->t.ndim, r->t.shape);
      char avg[64];
      long a0 = -1;
      size_t count = 0;
      for (size_t k = 0; k < nn; k++)
        if (r->average[k] >= 0) {
          if (a0 < 0) a0 = r->average[k];
          count++;
        }
      if (r->role == ROLE_STATE)
        snprintf(avg, sizeof avg, "- (plain state)");
      else if (r->role == ROLE_AVERAGE)
        snprintf(avg, sizeof avg, "(an average)");
      else if (r->role == ROLE_INTERNAL)
        snprintf(avg, sizeof avg, "(EMA internal)");
      else if (r->role == ROLE_ORPHAN)
        snprintf(avg, sizeof avg, "(orphan average)");
      else if (count > 1)
        snprintf(avg, sizeof avg, "%zu (%s)", count, rows[a0].t.dtype_name);
      else if (count == 1)
        snprintf(avg, sizeof avg, "yes (%s)", rows[a0].t.dtype_name);
      else
        snprintf(avg, sizeof avg, "-");
      printf("%-*s  %-5s  %-*s  %-16s", (int)wn, r->t.name, r->t.dtype_name, (int)ws, shape, avg);
      for (size_t k = 0; k < nn; k++) {
        int w = nn == 1 ? 0 : (int)(strlen(names[k]) > 10 ? strlen(names[k]) : 10);
        printf("  ");
        if (r->why[k])
          printf("(%s)", r->why[k]);
        else if (!isnan(r->distance[k]))
          printf("%-*.4g", w, r->distance[k]);
        else
          printf("%-*s", w, "-");
      }
      printf("\n");
    }
  }
}

static int run_inspect(const cli_command *cmd, int argc, char **argv) {
  static const cli_option options[] = {{"json", 0, 0, OPT_JSON}, {"ema-name", 0, 1, OPT_EMA_NAME}, {NULL, 0, 0, 0}};
  int json = 0;
  const char *path = NULL, *ema_name_opt = NULL;
  cli_parser p;
  cli_parser_init(&p, cmd, options, argc, argv);
  for (int id; (id = cli_next(&p)) != CLI_END;) {
    switch (id) {
      case CLI_BAD:
        return EXIT_USAGE;
      case CLI_HELP:
        return cli_print_help(cmd);
      case CLI_POSITIONAL:
        if (path) return cli_usage_error(cmd, "one checkpoint at a time (got '%s' and '%s')", path, p.arg);
        path = p.arg;
        break;
      case OPT_JSON:
        json = 1;
        break;
      case OPT_EMA_NAME:
        if (!*p.arg || strchr(p.arg, '/')) return cli_usage_error(cmd, "--ema-name needs a name without '/'");
        ema_name_opt = p.arg;
        break;
    }
  }
  if (!path) return cli_usage_error(cmd, "missing the checkpoint file");

  char err[1024];
  ema_file *f = NULL;
  if (ema_file_open(&f, path, err, sizeof err) != EMA_OK) return cli_error("%s", err);
  const char *names[MAX_NAMES];
  size_t nn = ema_names(f, ema_name_opt, names);
  int is_libema = ema_file_metadata(f, "libema.format") != NULL;

  size_t n = ema_file_count(f);
  row *rows = (row *)calloc(n ? n : 1, sizeof *rows);
  if (!rows) {
    ema_file_close(f);
    return cli_error("inspect: out of memory");
  }
  for (size_t i = 0; i < n; i++) {
    ema_file_tensor_at(f, i, &rows[i].t);
    rows[i].role = ROLE_MODEL;
    for (size_t k = 0; k < MAX_NAMES; k++) {
      rows[i].average[k] = -1;
      rows[i].distance[k] = NAN;
    }
  }
  /* roles from the names: "<owner>/<ema>" and "<owner>/<ema>/..." */
  double total_bytes = 0;
  for (size_t i = 0; i < n; i++) {
    const char *name = rows[i].t.name;
    size_t len = strlen(name);
    for (size_t k = 0; k < nn && rows[i].role == ROLE_MODEL; k++) {
      size_t el = strlen(names[k]);
      for (size_t pos = 0; pos + el + 1 <= len; pos++) {
        if (name[pos] != '/' || strncmp(name + pos + 1, names[k], el) != 0) continue;
        char after = name[pos + 1 + el];
        if (after != '\0' && after != '/') continue;
        long owner = find_row(rows, n, name, pos);
        if (owner < 0 && after == '/') continue;
        rows[i].of_name = (int)k;
        if (after == '/') {
          rows[i].role = ROLE_INTERNAL;
        } else if (owner < 0) {
          rows[i].role = ROLE_ORPHAN;
        } else {
          rows[i].role = ROLE_AVERAGE;
          rows[owner].average[k] = (long)i;
          total_bytes += (double)(rows[i].t.nbytes + rows[owner].t.nbytes);
        }
        break;
      }
    }
  }
  for (size_t i = 0; i < n; i++) {
    int has = 0;
    for (size_t k = 0; k < nn; k++) has |= rows[i].average[k] >= 0;
    if (is_libema && rows[i].role == ROLE_MODEL && !has) rows[i].role = ROLE_STATE;
  }

  /* distances */
  progress bar;
  progress_begin(&bar, "reading", total_bytes);
  double done = 0;
  int rc = EXIT_OK;
  for (size_t i = 0; i < n && rc == EXIT_OK; i++) {
    row *r = &rows[i];
    for (size_t k = 0; k < nn && rc == EXIT_OK; k++) {
      if (r->role != ROLE_MODEL || r->average[k] < 0) continue;
      const ema_file_tensor *a = &rows[r->average[k]].t;
      if (!r->t.supported || !a->supported || !is_float(r->t.dtype) || !is_float(a->dtype))
        r->why[k] = "not a float dtype";
      else if (!same_shape(&r->t, a))
        r->why[k] = "shape differs from the average's";
      else if (rel_distance(f, &r->t, a, &r->distance[k], &bar, &done, err, sizeof err) != EMA_OK)
        rc = cli_error("%s: %s", path, err);
    }
  }
  progress_done(&bar);
  if (rc == EXIT_OK) {
    if (json)
      print_json(path, f, names, nn, rows, n);
    else
      print_text(path, f, names, nn, rows, n);
  }
  free(rows);
  ema_file_close(f);
  return rc;
}
