/*
 * csv.h: reading and writing CSV as RFC 4180 defines it.
 *
 * Reading: fields separated by commas, records by LF, CRLF or CR; a field
 * in double quotes may hold commas, line breaks and quotes written twice
 * (""). The first record is the header. Blank lines are skipped (as pandas
 * does); a UTF-8 byte-order mark at the start is ignored. Errors name the
 * file and the line: a record with another number of fields than the header
 * (ragged rows), a quoted field that never ends (the line where it opened),
 * text after a closing quote, a NUL byte. Line numbers count physical lines
 * from 1, so a record with quoted line breaks spans several.
 *
 * Writing: csv_write_field() quotes a field only when it must (it holds a
 * comma, a quote, a line break, or spaces at either end, which some readers
 * would strip).
 */
#ifndef EMA_TOOL_CSV_H
#define EMA_TOOL_CSV_H

#include <stddef.h>
#include <stdio.h>

typedef struct csv_table {
  size_t ncols; /* fields per record */
  size_t nrows; /* data records, the header not counted */
  char **cell;  /* (nrows + 1) * ncols strings, row-major; row 0 is the header */
  long *line;   /* nrows + 1 entries: the line each record starts on */
  char *text;   /* storage of the unescaped fields */
} csv_table;

/* The cell of data row r (0-based, header excluded) and column c. */
#define CSV_CELL(t, r, c) ((t)->cell[((r) + 1) * (t)->ncols + (c)])
/* The line number of data row r. */
#define CSV_LINE(t, r) ((t)->line[(r) + 1])

/* Read and parse path ("-" reads standard input). Returns 1, or 0 with a
   message "<path>:<line>: <what>" (or "<path>: <what>") in err. */
int csv_read(const char *path, csv_table *t, char *err, size_t errcap);

/* Parse a buffer of len bytes; name is used in messages. */
int csv_parse(const char *name, const char *buf, size_t len, csv_table *t, char *err, size_t errcap);

/* Index of the header column called name, or -1. */
long csv_column(const csv_table *t, const char *name);

void csv_free(csv_table *t); /* NULL and a zeroed table are fine */

/* Write one field, quoted when needed. */
void csv_write_field(FILE *f, const char *s);

#endif /* EMA_TOOL_CSV_H */
