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
 * tensor size); F32, F64, F16 and BF16 are decoded by the library's
 * ema_convert. The norms are accumulated with scaling, so huge F64 values do not
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
  int of_name; /* average/internal/orphan rows: which EMA name */
  char *shown; /* the name escaped for the text table (cli_escape) */
} row;

/* The rows and, per row and EMA name (nn of them), the average's row (-1:
   none), the distance (NaN when not computed; +inf when ||raw|| is 0) and
   why an average has no distance. */
typedef struct table {
  row *rows;
  size_t n, nn;
  long *average;
  double *distance;
  const char **why;
} table;

#define AVG(tb, i, k) ((tb)->average[(i) * (tb)->nn + (k)])
#define DIST(tb, i, k) ((tb)->distance[(i) * (tb)->nn + (k)])
#define WHY(tb, i, k) ((tb)->why[(i) * (tb)->nn + (k)])

/* Tensor names -> row, hashed (FNV-1a), so that finding the owner of every
   "<owner>/<ema>" is linear in the number of tensors. */
typedef struct name_index {
  long *slot; /* row + 1, 0 when empty; a power of two entries */
  size_t mask;
} name_index;

static uint64_t fnv_step(uint64_t h, unsigned char c) { return (h ^ c) * 0x100000001B3ull; }
#define FNV_START 0xCBF29CE484222325ull

static int index_build(name_index *x, const row *rows, size_t n) {
  size_t cap = 16;
  while (cap < 2 * n) cap *= 2;
  x->slot = (long *)calloc(cap, sizeof *x->slot);
  x->mask = cap - 1;
  if (!x->slot) return 0;
  for (size_t i = 0; i < n; i++) {
    uint64_t h = FNV_START;
    for (const unsigned char *c = (const unsigned char *)rows[i].t.name; *c; c++) h = fnv_step(h, *c);
    size_t j = (size_t)h & x->mask;
    while (x->slot[j]) j = (j + 1) & x->mask;
    x->slot[j] = (long)i + 1;
  }
  return 1;
}

/* The row whose name is the len bytes at name (h: their hash), or -1. */
static long index_find(const name_index *x, const row *rows, const char *name, size_t len, uint64_t h) {
  for (size_t j = (size_t)h & x->mask; x->slot[j]; j = (j + 1) & x->mask) {
    const char *cand = rows[x->slot[j] - 1].t.name;
    if (strncmp(cand, name, len) == 0 && cand[len] == '\0') return x->slot[j] - 1;
  }
  return -1;
}

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
  double *rd = (double *)malloc(WINDOW * sizeof *rd), *ad = (double *)malloc(WINDOW * sizeof *ad);
  norm2 diff = {0, 0}, ref = {0, 0};
  ema_status st = rb && ab && rd && ad ? EMA_OK : EMA_E_NOMEM;
  if (st != EMA_OK) snprintf(err, errcap, "out of memory");
  for (uint64_t i = 0; i < raw->numel && st == EMA_OK; i += WINDOW) {
    size_t k = (size_t)(raw->numel - i < WINDOW ? raw->numel - i : WINDOW);
    if ((st = ema_file_read(f, raw->name, i * rsz, rb, k * rsz)) != EMA_OK ||
        (st = ema_file_read(f, avg->name, i * asz, ab, k * asz)) != EMA_OK) {
      snprintf(err, errcap, "%s", ema_file_last_error(f));
      break;
    }
    /* to double with the library's conversions (files and hosts are little-endian) */
    ema_convert(rd, EMA_F64, rb, raw->dtype, k);
    ema_convert(ad, EMA_F64, ab, avg->dtype, k);
    for (size_t j = 0; j < k; j++) {
      norm2_add(&ref, rd[j]);
      norm2_add(&diff, rd[j] - ad[j]);
    }
    *done += (double)(k * (rsz + asz));
    progress_update(bar, *done);
  }
  free(rb);
  free(ab);
  free(rd);
  free(ad);
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

static void print_json(const char *path, const ema_file *f, const char *const *names, const table *tb) {
  printf("{\n  \"file\": ");
  cli_json_string(stdout, path);
  printf(",\n  \"ema_names\": [");
  for (size_t k = 0; k < tb->nn; k++) {
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
  for (size_t i = 0; i < tb->n; i++) {
    const row *r = &tb->rows[i];
    char shape[256];
    cli_format_shape(shape, sizeof shape, r->t.ndim, r->t.shape);
    printf("%s\n    {\"name\": ", i ? "," : "");
    cli_json_string(stdout, r->t.name);
    printf(", \"dtype\": ");
    cli_json_string(stdout, r->t.dtype_name);
    printf(", \"shape\": %s, \"bytes\": %llu, \"role\": \"%s\"", shape, (unsigned long long)r->t.nbytes,
           role_names[r->role]);
    if (r->role != ROLE_MODEL && r->role != ROLE_STATE) {
      printf(", \"ema_name\": ");
      cli_json_string(stdout, names[r->of_name]);
    }
    /* the first EMA name's average, then all of them */
    printf(", \"average\": ");
    if (AVG(tb, i, 0) >= 0)
      cli_json_string(stdout, tb->rows[AVG(tb, i, 0)].t.name);
    else
      printf("null");
    printf(", \"rel_distance\": ");
    print_distance(stdout, DIST(tb, i, 0), 1);
    printf(", \"averages\": [");
    int first = 1;
    for (size_t k = 0; k < tb->nn; k++) {
      if (AVG(tb, i, k) < 0) continue;
      const ema_file_tensor *a = &tb->rows[AVG(tb, i, k)].t;
      printf("%s{\"ema_name\": ", first ? "" : ", ");
      first = 0;
      cli_json_string(stdout, names[k]);
      printf(", \"name\": ");
      cli_json_string(stdout, a->name);
      printf(", \"dtype\": ");
      cli_json_string(stdout, a->dtype_name);
      printf(", \"rel_distance\": ");
      print_distance(stdout, DIST(tb, i, k), 1);
      printf(", \"note\": ");
      if (WHY(tb, i, k))
        cli_json_string(stdout, WHY(tb, i, k));
      else
        printf("null");
      printf("}");
    }
    printf("]}");
  }
  printf("%s]\n}\n", tb->n ? "\n  " : "");
}

/* printf("%s", s) with s escaped (cli_escape), padded to width; an escaped
   copy that cannot be made (out of memory) prints as "?". */
static void print_escaped(const char *s, int width) {
  char *e = cli_escape_alloc(s);
  printf("%-*s", width, e ? e : "?");
  free(e);
}

/* The summary lines and the metadata, every string from the file escaped. */
static void print_header(const char *path, const ema_file *f, const char *const *names, const table *tb) {
  size_t n_avg = 0, n_state = 0, n_model = 0;
  uint64_t bytes = 0;
  for (size_t i = 0; i < tb->n; i++) {
    bytes += tb->rows[i].t.nbytes;
    n_model += tb->rows[i].role == ROLE_MODEL;
    n_state += tb->rows[i].role == ROLE_STATE;
    int has = 0;
    for (size_t k = 0; k < tb->nn; k++) has |= AVG(tb, i, k) >= 0;
    if (has) n_avg++;
  }
  printf("file: ");
  print_escaped(path, 0);
  printf("\ntensors: %zu in all: %zu model tensors, %zu of them averaged; %zu plain state; %.1f KiB of data\n", tb->n,
         n_model + n_state, n_avg, n_state, (double)bytes / 1024.0);
  printf("averages: stored as NAME/");
  for (size_t k = 0; k < tb->nn; k++) {
    if (k) printf(", NAME/");
    print_escaped(names[k], 0);
  }
  printf("\n");
  const char *fmt = ema_file_metadata(f, "libema.format"), *ver = ema_file_metadata(f, "libema.version");
  if (fmt) {
    printf("format: libema checkpoint, format ");
    print_escaped(fmt, 0);
    printf(", written by libema ");
    print_escaped(ver ? ver : "?", 0);
    printf("\n");
  }
  const char *decay = ema_file_metadata(f, "ema.decay"), *nupd = ema_file_metadata(f, "ema.num_updates");
  const char *zd = ema_file_metadata(f, "ema.zero_debias"), *sched = ema_file_metadata(f, "ema.schedule");
  if (decay || nupd || zd || sched) {
    printf("EMA state: decay ");
    print_escaped(decay ? decay : "?", 0);
    printf(", num_updates ");
    print_escaped(nupd ? nupd : "?", 0);
    if (nupd && strcmp(nupd, "-1") == 0) printf(" (warm-up off)");
    printf(", zero_debias ");
    print_escaped(zd ? zd : "?", 0);
    printf(", schedule ");
    print_escaped(sched ? sched : "?", 0);
    printf("\n");
  }
  size_t nm = ema_file_metadata_count(f), w = 0;
  char **keys = (char **)calloc(nm ? nm : 1, sizeof *keys);
  for (size_t i = 0; keys && i < nm; i++) {
    const char *k, *v;
    ema_file_metadata_at(f, i, &k, &v);
    keys[i] = cli_escape_alloc(k);
    if (keys[i] && strlen(keys[i]) > w) w = strlen(keys[i]);
  }
  if (nm) printf("metadata:\n");
  for (size_t i = 0; i < nm; i++) {
    const char *k, *v;
    ema_file_metadata_at(f, i, &k, &v);
    printf("  %-*s  ", (int)w, keys && keys[i] ? keys[i] : "?");
    print_escaped(v, 0);
    printf("\n");
    if (keys) free(keys[i]);
  }
  free(keys);
}

/* What the "average" column says about row i. */
static void average_cell(const table *tb, size_t i, char *avg, size_t cap) {
  const row *r = &tb->rows[i];
  long a0 = -1;
  size_t count = 0;
  for (size_t k = 0; k < tb->nn; k++)
    if (AVG(tb, i, k) >= 0) {
      if (a0 < 0) a0 = AVG(tb, i, k);
      count++;
    }
  if (r->role == ROLE_STATE)
    snprintf(avg, cap, "- (plain state)");
  else if (r->role == ROLE_AVERAGE)
    snprintf(avg, cap, "(an average)");
  else if (r->role == ROLE_INTERNAL)
    snprintf(avg, cap, "(EMA internal)");
  else if (r->role == ROLE_ORPHAN)
    snprintf(avg, cap, "(orphan average)");
  else if (count > 1)
    snprintf(avg, cap, "%zu (%s)", count, tb->rows[a0].t.dtype_name);
  else if (count == 1)
    snprintf(avg, cap, "yes (%s)", tb->rows[a0].t.dtype_name);
  else
    snprintf(avg, cap, "-");
}

static void print_text(const char *path, const ema_file *f, const char *const *names, const table *tb) {
  print_header(path, f, names, tb);
  /* the table: model and state tensors first, then the averages' tensors */
  size_t wn = strlen("tensor"), ws = strlen("shape"), nn = tb->nn;
  char shape[256];
  for (size_t i = 0; i < tb->n; i++) {
    const char *shown = tb->rows[i].shown ? tb->rows[i].shown : "?";
    if (strlen(shown) > wn) wn = strlen(shown);
    cli_format_shape(shape, sizeof shape, tb->rows[i].t.ndim, tb->rows[i].t.shape);
    if (strlen(shape) > ws) ws = strlen(shape);
  }
  printf("\n%-*s  %-5s  %-*s  %-16s", (int)wn, "tensor", "dtype", (int)ws, "shape", "average");
  if (nn == 1) {
    printf("  ||raw-avg||/||raw||\n");
  } else {
    for (size_t k = 0; k < nn; k++) {
      printf("  ");
      print_escaped(names[k], 10);
    }
    printf("   (||raw-avg||/||raw|| per average)\n");
  }
  for (int pass = 0; pass < 2; pass++) {
    for (size_t i = 0; i < tb->n; i++) {
      const row *r = &tb->rows[i];
      int main_row = r->role == ROLE_MODEL || r->role == ROLE_STATE;
      if (main_row != (pass == 0)) continue;
      cli_format_shape(shape, sizeof shape, r->t.ndim, r->t.shape);
      char avg[64];
      average_cell(tb, i, avg, sizeof avg);
      printf("%-*s  %-5s  %-*s  %-16s", (int)wn, r->shown ? r->shown : "?", r->t.dtype_name, (int)ws, shape, avg);
      for (size_t k = 0; k < nn; k++) {
        char *en = nn == 1 ? NULL : cli_escape_alloc(names[k]);
        int w = nn == 1 ? 0 : (int)(en && strlen(en) > 10 ? strlen(en) : 10);
        free(en);
        printf("  ");
        if (WHY(tb, i, k))
          printf("(%s)", WHY(tb, i, k));
        else if (!isnan(DIST(tb, i, k)))
          printf("%-*.4g", w, DIST(tb, i, k));
        else
          printf("%-*s", w, "-");
      }
      printf("\n");
    }
  }
}

/* Roles from the names: "<owner>/<ema>" is an average (or an orphan when
   <owner> is absent), "<owner>/<ema>/..." an average's internal state.
   Linear: one pass over each name, owners found through the hash index.
   Returns the bytes the distances will read. */
static double assign_roles(table *tb, const name_index *x, const char *const *names) {
  double total = 0;
  for (size_t i = 0; i < tb->n; i++) {
    const char *name = tb->rows[i].t.name;
    for (size_t k = 0; k < tb->nn && tb->rows[i].role == ROLE_MODEL; k++) {
      size_t el = strlen(names[k]);
      uint64_t h = FNV_START; /* hash of name[0..pos) */
      for (size_t pos = 0; name[pos]; h = fnv_step(h, (unsigned char)name[pos]), pos++) {
        if (name[pos] != '/' || strncmp(name + pos + 1, names[k], el) != 0) continue;
        char after = name[pos + 1 + el];
        if (after != '\0' && after != '/') continue;
        long owner = index_find(x, tb->rows, name, pos, h);
        if (owner < 0 && after == '/') continue;
        tb->rows[i].of_name = (int)k;
        if (after == '/') {
          tb->rows[i].role = ROLE_INTERNAL;
        } else if (owner < 0) {
          tb->rows[i].role = ROLE_ORPHAN;
        } else {
          tb->rows[i].role = ROLE_AVERAGE;
          AVG(tb, (size_t)owner, k) = (long)i;
          total += (double)(tb->rows[i].t.nbytes + tb->rows[owner].t.nbytes);
        }
        break;
      }
    }
  }
  return total;
}

static void table_free(table *tb) {
  if (tb->rows)
    for (size_t i = 0; i < tb->n; i++) free(tb->rows[i].shown);
  free(tb->rows);
  free(tb->average);
  free(tb->distance);
  free((void *)tb->why);
}

/* The rows of f, roles assigned; 0 when out of memory. */
static int table_build(table *tb, const ema_file *f, const char *const *names, size_t nn, int text,
                       double *total_bytes) {
  size_t n = ema_file_count(f), cells = (n ? n : 1) * nn;
  memset(tb, 0, sizeof *tb);
  tb->n = n;
  tb->nn = nn;
  tb->rows = (row *)calloc(n ? n : 1, sizeof *tb->rows);
  tb->average = (long *)malloc(cells * sizeof *tb->average);
  tb->distance = (double *)malloc(cells * sizeof *tb->distance);
  tb->why = (const char **)calloc(cells, sizeof *tb->why);
  if (!tb->rows || !tb->average || !tb->distance || !tb->why) return 0;
  for (size_t c = 0; c < cells; c++) {
    tb->average[c] = -1;
    tb->distance[c] = NAN;
  }
  for (size_t i = 0; i < n; i++) {
    ema_file_tensor_at(f, i, &tb->rows[i].t);
    tb->rows[i].role = ROLE_MODEL;
    if (text && !(tb->rows[i].shown = cli_escape_alloc(tb->rows[i].t.name))) return 0;
  }
  name_index x;
  if (!index_build(&x, tb->rows, n)) return 0;
  *total_bytes = assign_roles(tb, &x, names);
  free(x.slot);
  int is_libema = ema_file_metadata(f, "libema.format") != NULL;
  for (size_t i = 0; i < n; i++) {
    int has = 0;
    for (size_t k = 0; k < nn; k++) has |= AVG(tb, i, k) >= 0;
    if (is_libema && tb->rows[i].role == ROLE_MODEL && !has) tb->rows[i].role = ROLE_STATE;
  }
  return 1;
}

/* The distance of every averaged tensor to each of its averages. */
static int compute_distances(table *tb, const ema_file *f, const char *path, double total_bytes) {
  char err[1024];
  progress bar;
  progress_begin(&bar, "reading", total_bytes);
  double done = 0;
  int rc = EXIT_OK;
  for (size_t i = 0; i < tb->n && rc == EXIT_OK; i++) {
    row *r = &tb->rows[i];
    for (size_t k = 0; k < tb->nn && rc == EXIT_OK; k++) {
      if (r->role != ROLE_MODEL || AVG(tb, i, k) < 0) continue;
      const ema_file_tensor *a = &tb->rows[AVG(tb, i, k)].t;
      if (!r->t.supported || !a->supported || !is_float(r->t.dtype) || !is_float(a->dtype))
        WHY(tb, i, k) = "not a float dtype";
      else if (!same_shape(&r->t, a))
        WHY(tb, i, k) = "shape differs from the average's";
      else if (rel_distance(f, &r->t, a, &DIST(tb, i, k), &bar, &done, err, sizeof err) != EMA_OK)
        rc = cli_error("%s: %s", path, err);
    }
  }
  progress_done(&bar);
  return rc;
}

static int run_inspect(const cli_command *cmd, int argc, char **argv) {
  static const cli_option options[] = {{"json", 0, 0, OPT_JSON}, {"ema-name", 0, 1, OPT_EMA_NAME}, {NULL, 0, 0, 0}};
  int json = 0;
  const char *path = NULL, *ema_name_opt = NULL;
  cli_parser p;
  cli_parser_init(&p, cmd, options, argc, argv);
  for (int id, stop_rc; (id = cli_next(&p)) != CLI_END;) {
    if (cli_stop(&p, id, &stop_rc)) return stop_rc;
    switch (id) {
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
  table tb;
  double total_bytes = 0;
  int rc;
  if (!table_build(&tb, f, names, nn, !json, &total_bytes))
    rc = cli_error("inspect: out of memory");
  else if ((rc = compute_distances(&tb, f, path, total_bytes)) == EXIT_OK) {
    if (json)
      print_json(path, f, names, &tb);
    else
      print_text(path, f, names, &tb);
  }
  table_free(&tb);
  ema_file_close(f);
  return rc;
}
