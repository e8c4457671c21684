/*
 * tests/fuzz/fuzz_tool_cli.c: libFuzzer target for the `ema` tool's argument
 * and file handling. Each input drives one command function in-process
 * (inspect, extract, posthoc or smooth: the commands that read files) with
 * a fuzzed argv and fuzzed file contents.
 *
 * Input layout:
 *   byte 0        the command (value % 4)
 *   byte 1        L, the length of the argv text
 *   L bytes       argv, tokens separated by '\n' or '\0'; "@F" and "@G" stand
 *                 for the two input files, "@O" and "@P" for two outputs;
 *                 '/' in a token becomes '_' (every other path stays in the
 *                 scratch directory, the working directory during the run)
 *   2 bytes       K, little-endian: how many of the remaining bytes are @F
 *   the rest      @F's bytes (K of them), then @G's
 *
 * Property oracle (abort() when it fails, so libFuzzer keeps the input):
 *  - the exit code is 0, 1 or 2 (and ASan/UBSan see no error);
 *  - exit code 1: stderr is exactly one line "ema: ..."; exit code 2: the
 *    first line is "ema: ..."; no line of stderr holds a control character
 *    (strings from the files are escaped);
 *  - inspect, extract and posthoc print no control character but '\n' on
 *    stdout (smooth is exempt: its CSV output carries the input's cells);
 *  - a failed call changed nothing: the input files keep their bytes and
 *    no output file appears (a successful one may overwrite an input it
 *    was told to write).
 * stdin is /dev/null; stdout and stderr are captured in memory. With
 * FUZZ_TOOL_VERBOSE set, each run's command, exit code and stderr are
 * printed (to see what the seeds reach).
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_ARGS = 64 };
static char scratch[64];
static int scratch_fd = -1, home_fd = -1; /* the scratch directory, the caller's */

static void setup_once(void) {
  if (scratch[0]) return;
  snprintf(scratch, sizeof scratch, "/tmp/fuzz_tool_cli.XXXXXX");
  if (!mkdtemp(scratch)) abort();
  scratch_fd = open(scratch, O_RDONLY | O_DIRECTORY);
  home_fd = open(".", O_RDONLY | O_DIRECTORY);
  if (scratch_fd < 0 || home_fd < 0) abort();
  int null_fd = open("/dev/null", O_RDONLY);
  if (null_fd < 0 || dup2(null_fd, 0) < 0) abort();
  close(null_fd);
}

/* Remove what the last run left in the scratch directory. */
static void clean_scratch(void) {
  DIR *d = opendir(".");
  if (!d) abort();
  for (struct dirent *e; (e = readdir(d)) != NULL;)
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) unlink(e->d_name);
  closedir(d);
}

static void write_file(const char *path, const uint8_t *p, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f || (n && fwrite(p, 1, n, f) != n) || fclose(f) != 0) abort();
}

static int same_file(const char *path, const uint8_t *p, size_t n) {
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  uint8_t buf[4096];
  size_t off = 0, got;
  int same = 1;
  while (same && (got = fread(buf, 1, sizeof buf, f)) > 0) {
    same = off + got <= n && memcmp(buf, p + off, got) == 0;
    off += got;
  }
  fclose(f);
  return same && off == n;
}

static int exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

/* The token with its placeholders replaced and '/' made '_'. */
static char *make_arg(const char *tok, size_t len) {
  static const char *const names[4][2] = {{"@F", "in_f"}, {"@G", "in_g"}, {"@O", "out_o"}, {"@P", "out_p"}};
  char *out = (char *)malloc(len * 3 + 1);
  size_t o = 0;
  if (!out) abort();
  for (size_t i = 0; i < len;) {
    int done = 0;
    for (int k = 0; k < 4 && !done; k++)
      if (i + 1 < len && tok[i] == names[k][0][0] && tok[i + 1] == names[k][0][1]) {
        memcpy(out + o, names[k][1], strlen(names[k][1]));
        o += strlen(names[k][1]);
        i += 2;
        done = 1;
      }
    if (!done) {
      out[o++] = tok[i] == '/' ? '_' : tok[i];
      i++;
    }
  }
  out[o] = '\0';
  return out;
}

/* No control byte (but '\n' where allowed) in text[0..n). */
static int clean_text(const char *text, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)text[i];
    if ((c < 0x20 && c != '\n') || c == 0x7F) return 0;
    if (c == 0xC2 && i + 1 < n && (unsigned char)text[i + 1] >= 0x80 && (unsigned char)text[i + 1] < 0xA0) return 0;
  }
  return 1;
}

static void check_stderr(int rc, const char *err, size_t n) {
  if (!clean_text(err, n)) abort();
  if (rc == 0) return;
  if (n < 6 || strncmp(err, "ema: ", 5) != 0 || err[n - 1] != '\n') abort();
  if (rc == 1 && memchr(err, '\n', n) != err + n - 1) abort(); /* one line */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const cli_command *const cmds[4] = {&cmd_inspect, &cmd_extract, &cmd_posthoc, &cmd_smooth};
  if (size < 4) return 0;
  setup_once();
  if (fchdir(scratch_fd) != 0) abort(); /* every relative path of the run lands there */
  clean_scratch();
  const cli_command *cmd = cmds[data[0] % 4];
  size_t alen = data[1] < size - 2 ? data[1] : size - 2;
  const char *atext = (const char *)data + 2;
  const uint8_t *rest = data + 2 + alen;
  size_t rlen = size - 2 - alen, flen = 0;
  if (rlen >= 2) {
    flen = (size_t)rest[0] | ((size_t)rest[1] << 8);
    rest += 2;
    rlen -= 2;
  }
  if (flen > rlen) flen = rlen;
  write_file("in_f", rest, flen);
  write_file("in_g", rest + flen, rlen - flen);

  char *argv[MAX_ARGS + 2];
  int argc = 0;
  argv[argc++] = make_arg(cmd->name, strlen(cmd->name));
  for (size_t i = 0; i < alen && argc <= MAX_ARGS;) {
    size_t j = i;
    while (j < alen && atext[j] != '\n' && atext[j] != '\0') j++;
    argv[argc++] = make_arg(atext + i, j - i);
    i = j + 1;
  }
  argv[argc] = NULL;

  char *out_text = NULL, *err_text = NULL;
  size_t out_len = 0, err_len = 0;
  FILE *saved_out = stdout, *saved_err = stderr;
  stdout = open_memstream(&out_text, &out_len);
  stderr = open_memstream(&err_text, &err_len);
  if (!stdout || !stderr) abort();
  int rc = cmd->run(cmd, argc, argv);
  fclose(stdout);
  fclose(stderr);
  stdout = saved_out;
  stderr = saved_err;

  if (getenv("FUZZ_TOOL_VERBOSE")) /* to see what the seeds reach */
    fprintf(stderr, "%s -> %d; stderr: %.*s\n", cmd->name, rc, (int)(err_len < 200 ? err_len : 200), err_text);
  if (rc < 0 || rc > 2) abort();
  check_stderr(rc, err_text, err_len);
  if (cmd != &cmd_smooth && !clean_text(out_text, out_len)) abort();
  if (rc != 0) { /* a failed call changed nothing */
    if (!same_file("in_f", rest, flen) || !same_file("in_g", rest + flen, rlen - flen)) abort();
    if (exists("out_o") || exists("out_p")) abort();
  }

  free(out_text);
  free(err_text);
  for (int i = 0; i < argc; i++) free(argv[i]);
  if (fchdir(home_fd) != 0) abort();
  return 0;
}
