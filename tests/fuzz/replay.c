/*
 * tests/fuzz/replay.c: replay driver for the libFuzzer targets. Runs every
 * file named on the command line, and every regular file in every directory
 * named there, through LLVMFuzzerTestOneInput once. Built with the normal
 * compiler (no libFuzzer needed) and run by ctest over tests/fuzz/corpus, so
 * the corpus and every crash reproducer added to it stay regression tests.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path) {
  FILE *fp = fopen(path, "rb");
  if (!fp) {
    perror(path);
    return -1;
  }
  size_t cap = 4096, len = 0;
  unsigned char *buf = malloc(cap);
  for (;;) {
    if (!buf) {
      fclose(fp);
      fprintf(stderr, "%s: out of memory\n", path);
      return -1;
    }
    len += fread(buf + len, 1, cap - len, fp);
    if (len < cap) break;
    cap *= 2;
    unsigned char *q = realloc(buf, cap);
    if (!q) free(buf);
    buf = q;
  }
  int bad = ferror(fp);
  fclose(fp);
  if (bad) {
    fprintf(stderr, "%s: read error\n", path);
    free(buf);
    return -1;
  }
  /* an exact-size copy, so that ASan sees reads past the end */
  unsigned char *exact = malloc(len ? len : 1);
  if (!exact) {
    free(buf);
    return -1;
  }
  memcpy(exact, buf, len);
  free(buf);
  LLVMFuzzerTestOneInput(exact, len);
  free(exact);
  return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s FILE_OR_DIR...\n", argv[0]);
    return 2;
  }
  int runs = 0, errors = 0;
  for (int a = 1; a < argc; a++) {
    struct stat sb;
    if (stat(argv[a], &sb) != 0) {
      perror(argv[a]);
      errors++;
      continue;
    }
    if (!S_ISDIR(sb.st_mode)) {
      if (run_file(argv[a]) == 0)
        runs++;
      else
        errors++;
      continue;
    }
    DIR *d = opendir(argv[a]);
    if (!d) {
      perror(argv[a]);
      errors++;
      continue;
    }
    /* sorted, so that a failure is reproducible in the same order */
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
      if (e->d_name[0] == '.') continue;
      if (n == cap) {
        cap = cap ? cap * 2 : 64;
        char **q = realloc(names, cap * sizeof *names);
        if (!q) break;
        names = q;
      }
      size_t nl = strlen(argv[a]) + strlen(e->d_name) + 2;
      names[n] = malloc(nl);
      if (!names[n]) break;
      snprintf(names[n], nl, "%s/%s", argv[a], e->d_name);
      n++;
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
      if (stat(names[i], &sb) == 0 && S_ISREG(sb.st_mode)) {
        if (run_file(names[i]) == 0)
          runs++;
        else
          errors++;
      }
      free(names[i]);
    }
    free(names);
  }
  printf("replayed %d inputs, %d errors\n", runs, errors);
  return errors || runs == 0 ? 1 : 0;
}
