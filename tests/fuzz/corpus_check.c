/*
 * tests/fuzz/corpus_check.c: checks the seed corpus's labels against the C
 * reader: every "valid_*" seed must open (EMA_OK) and every "bad_*" seed must
 * be refused with EMA_E_FORMAT. "*.hdr" seeds are header-mode inputs (see
 * fuzz_safetensors.c): the 8-byte length is made up here. Seeds added by the
 * fuzzer (other names) are only replayed, by replay.c.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"

static unsigned char *load(const char *path, size_t *len) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return NULL;
  unsigned char *b = malloc(1 << 16);
  *len = b ? fread(b, 1, 1 << 16, fp) : 0;
  fclose(fp);
  return b;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  DIR *d = opendir(argv[1]);
  if (!d) {
    perror(argv[1]);
    return 1;
  }
  int checked = 0, wrong = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    int valid = strncmp(e->d_name, "valid_", 6) == 0;
    if (!valid && strncmp(e->d_name, "bad_", 4) != 0) continue;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", argv[1], e->d_name);
    size_t len;
    unsigned char *raw = load(path, &len);
    if (!raw) {
      perror(path);
      wrong++;
      continue;
    }
    unsigned char *buf = raw;
    size_t blen = len;
    size_t nl = strlen(e->d_name);
    if (nl > 4 && strcmp(e->d_name + nl - 4, ".hdr") == 0) {
      const unsigned char *nul = memchr(raw, 0, len);
      size_t hl = nul ? (size_t)(nul - raw) : len, dl = nul ? len - hl - 1 : 0;
      buf = malloc(8 + hl + dl + 1);
      for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
      memcpy(buf + 8, raw, hl);
      if (dl) memcpy(buf + 8 + hl, nul + 1, dl);
      blen = 8 + hl + dl;
    }
    char err[512];
    st_file *f = NULL;
    ema_status st = st_open_mem(buf, blen, &f, err, sizeof err);
    ema_status want = valid ? EMA_OK : EMA_E_FORMAT;
    if (st != want) {
      fprintf(stderr, "%s: status %d, want %d (%s)\n", e->d_name, (int)st, (int)want, st ? err : "accepted");
      wrong++;
    }
    st_close(f);
    if (buf != raw) free(buf);
    free(raw);
    checked++;
  }
  closedir(d);
  printf("checked %d labelled seeds, %d wrong\n", checked, wrong);
  return wrong || checked == 0 ? 1 : 0;
}
