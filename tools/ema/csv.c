/*
 * csv.c: the RFC 4180 reader and field writer (see csv.h).
 *
 * The reader is one pass over the whole input held in memory. Unescaped
 * field text goes to one growing buffer; fields are remembered as offsets
 * into it and turned into pointers at the end, once the buffer stops moving.
 */
#include "csv.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef struct growbuf {
  char *p;
  size_t n, cap;
} growbuf;

static int gb_reserve(growbuf *g, size_t more) {
  if (g->n + more <= g->cap) return 1;
  size_t cap = g->cap ? g->cap : 256;
  while (cap < g->n + more) cap *= 2;
  char *p = (char *)realloc(g->p, cap);
  if (!p) return 0;
  g->p = p;
  g->cap = cap;
  return 1;
}

typedef struct sizes {
  size_t *p;
  size_t n, cap;
} sizes;

static int sz_push(sizes *s, size_t v) {
  if (s->n == s->cap) {
    size_t cap = s->cap ? 2 * s->cap : 64;
    size_t *p = (size_t *)realloc(s->p, cap * sizeof *p);
    if (!p) return 0;
    s->p = p;
    s->cap = cap;
  }
  s->p[s->n++] = v;
  return 1;
}

static void set_err(char *err, size_t cap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, cap, fmt, ap);
  va_end(ap);
}

int csv_parse(const char *name, const char *buf, size_t len, csv_table *t, char *err, size_t errcap) {
  memset(t, 0, sizeof *t);
  growbuf text = {0};
  sizes offs = {0}, lines = {0};
  size_t ncols = 0, nrec = 0, i = 0;
  long line = 1;
  int ok = 0;
  if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) i = 3; /* byte-order mark */

  while (i < len) {
    /* blank line: skipped */
    if (buf[i] == '\n' || buf[i] == '\r') {
      i += (buf[i] == '\r' && i + 1 < len && buf[i + 1] == '\n') ? 2 : 1;
      line++;
      continue;
    }
    long rec_line = line;
    size_t fields = 0;
    for (;;) { /* one field per iteration */
      size_t start = text.n;
      if (!sz_push(&offs, start)) goto nomem;
      if (i < len && buf[i] == '"') {
        long open_line = line;
        i++;
        for (;;) {
          if (i >= len) {
            set_err(err, errcap, "%s:%ld: a quoted field opened on this line is never closed (missing '\"')", name,
                    open_line);
            goto fail;
          }
          char c = buf[i];
          if (c == '"') {
            if (i + 1 < len && buf[i + 1] == '"') { /* "" is one quote */
              if (!gb_reserve(&text, 1)) goto nomem;
              text.p[text.n++] = '"';
              i += 2;
              continue;
            }
            i++;
            break;
          }
          if (c == '\0') {
            set_err(err, errcap, "%s:%ld: NUL byte inside a field", name, line);
            goto fail;
          }
          if (c == '\n' || (c == '\r' && !(i + 1 < len && buf[i + 1] == '\n'))) line++;
          if (!gb_reserve(&text, 1)) goto nomem;
          text.p[text.n++] = c;
          i++;
        }
        if (i < len && buf[i] != ',' && buf[i] != '\n' && buf[i] != '\r') {
          set_err(err, errcap,
                  "%s:%ld: unexpected '%c' after a closing quote (a field that starts with '\"' "
                  "must end with '\"')",
                  name, line, buf[i]);
          goto fail;
        }
      } else {
        while (i < len && buf[i] != ',' && buf[i] != '\n' && buf[i] != '\r') {
          if (buf[i] == '\0') {
            set_err(err, errcap, "%s:%ld: NUL byte inside a field", name, line);
            goto fail;
          }
          if (!gb_reserve(&text, 1)) goto nomem;
          text.p[text.n++] = buf[i++];
        }
      }
      if (!gb_reserve(&text, 1)) goto nomem;
      text.p[text.n++] = '\0';
      fields++;
      if (i < len && buf[i] == ',') {
        i++;
        continue;
      }
      /* end of record */
      if (i < len) {
        i += (buf[i] == '\r' && i + 1 < len && buf[i + 1] == '\n') ? 2 : 1;
        line++;
      }
      break;
    }
    if (nrec == 0) {
      ncols = fields;
    } else if (fields != ncols) {
      set_err(err, errcap, "%s:%ld: %zu field%s, but the header has %zu (every row needs one value per column)", name,
              rec_line, fields, fields == 1 ? "" : "s", ncols);
      goto fail;
    }
    if (!sz_push(&lines, (size_t)rec_line)) goto nomem;
    nrec++;
  }
  if (nrec == 0) {
    set_err(err, errcap, "%s: empty file (a CSV file needs a header line)", name);
    goto fail;
  }

  t->ncols = ncols;
  t->nrows = nrec - 1;
  t->text = text.p ? text.p : (char *)calloc(1, 1);
  t->cell = (char **)malloc(offs.n * sizeof *t->cell);
  t->line = (long *)malloc(lines.n * sizeof *t->line);
  if (!t->text || !t->cell || !t->line) {
    text.p = NULL;
    goto nomem;
  }
  for (size_t k = 0; k < offs.n; k++) t->cell[k] = t->text + offs.p[k];
  for (size_t k = 0; k < lines.n; k++) t->line[k] = (long)lines.p[k];
  text.p = NULL;
  ok = 1;
  goto done;
nomem:
  set_err(err, errcap, "%s: out of memory", name);
fail:
  csv_free(t);
done:
  free(text.p);
  free(offs.p);
  free(lines.p);
  return ok;
}

int csv_read(const char *path, csv_table *t, char *err, size_t errcap) {
  memset(t, 0, sizeof *t);
  int use_stdin = strcmp(path, "-") == 0;
  FILE *f = use_stdin ? stdin : fopen(path, "rb");
  if (!f) {
    set_err(err, errcap, "cannot open '%s': %s", path, strerror(errno));
    return 0;
  }
  growbuf g = {0};
  for (;;) {
    if (!gb_reserve(&g, 65536)) {
      set_err(err, errcap, "%s: out of memory", path);
      free(g.p);
      if (!use_stdin) fclose(f);
      return 0;
    }
    size_t got = fread(g.p + g.n, 1, g.cap - g.n, f);
    g.n += got;
    if (got == 0) break;
  }
  int bad = ferror(f);
  int saved = errno;
  if (!use_stdin) fclose(f);
  if (bad) {
    set_err(err, errcap, "cannot read '%s': %s", path, strerror(saved));
    free(g.p);
    return 0;
  }
  int ok = csv_parse(use_stdin ? "<stdin>" : path, g.p ? g.p : "", g.n, t, err, errcap);
  free(g.p);
  return ok;
}

long csv_column(const csv_table *t, const char *name) {
  for (size_t c = 0; c < t->ncols; c++)
    if (strcmp(t->cell[c], name) == 0) return (long)c;
  return -1;
}

void csv_free(csv_table *t) {
  if (!t) return;
  free(t->cell);
  free(t->line);
  free(t->text);
  memset(t, 0, sizeof *t);
}

void csv_write_field(FILE *f, const char *s) {
  size_t n = strlen(s);
  int quote = n && (s[0] == ' ' || s[0] == '\t' || s[n - 1] == ' ' || s[n - 1] == '\t');
  if (!quote) quote = strpbrk(s, ",\"\r\n") != NULL;
  if (!quote) {
    fputs(s, f);
    return;
  }
  fputc('"', f);
  for (; *s; s++) {
    if (*s == '"') fputc('"', f);
    fputc(*s, f);
  }
  fputc('"', f);
}
