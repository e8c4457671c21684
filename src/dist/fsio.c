/*
 * src/dist/fsio.c: the manifest's file operations: atomic write of a small
 * file, bounded whole-file read, safe file names, checkpoint ids.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dist/dist.h"
#include "io/st_internal.h"

char *fs_join(const char *dir, const char *name) {
  size_t a = strlen(dir), b = strlen(name);
  char *p = (char *)ema__malloc(a + b + 2);
  if (!p) return NULL;
  memcpy(p, dir, a);
  p[a] = '/';
  memcpy(p + a + 1, name, b + 1);
  return p;
}

int fs_safe_name(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || n > 255 || name[0] == '.') return 0;
  return strchr(name, '/') == NULL && strchr(name, '\\') == NULL;
}

static ema_status sys_fail(char *err, size_t cap, const char *what, const char *path) {
  char buf[128];
  st_errf(err, cap, "%s '%s' failed: %s", what, path, st_strerror(errno, buf, sizeof buf));
  return EMA_E_IO;
}

static int write_all(int fd, const unsigned char *p, size_t len) {
  while (len) {
    ssize_t w = write(fd, p, len);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    len -= (size_t)w;
  }
  return 0;
}

ema_status fs_write_atomic(const char *dir, const char *name, const void *buf, size_t len, char *err, size_t cap) {
  char tmpname[64];
  snprintf(tmpname, sizeof tmpname, ".%.24s.tmp-%ld", name, (long)getpid());
  char *path = fs_join(dir, name), *tmp = fs_join(dir, tmpname);
  ema_status st = EMA_OK;
  if (!path || !tmp) {
    st_errf(err, cap, "out of memory");
    st = EMA_E_NOMEM;
  }
  int fd = -1;
  if (st == EMA_OK) {
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) st = sys_fail(err, cap, "creating", tmp);
  }
  if (st == EMA_OK && write_all(fd, (const unsigned char *)buf, len)) st = sys_fail(err, cap, "writing", tmp);
  if (st == EMA_OK && fsync(fd)) st = sys_fail(err, cap, "fsync of", tmp);
  if (fd >= 0 && close(fd) && st == EMA_OK) st = sys_fail(err, cap, "closing", tmp);
  if (st == EMA_OK && rename(tmp, path)) st = sys_fail(err, cap, "renaming over", path);
  if (st != EMA_OK && tmp) unlink(tmp);
  if (st == EMA_OK) {
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd)) st = sys_fail(err, cap, "fsync of the directory (the file is in place)", dir);
    if (dfd >= 0) close(dfd);
  }
  free(path);
  free(tmp);
  return st;
}

ema_status fs_read_all(const char *dir, const char *name, size_t max, char **out, size_t *len, char *err, size_t cap) {
  *out = NULL;
  *len = 0;
  char *path = fs_join(dir, name);
  if (!path) {
    st_errf(err, cap, "out of memory");
    return EMA_E_NOMEM;
  }
  ema_status st = EMA_OK;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  struct stat sb;
  if (fd < 0) {
    st = sys_fail(err, cap, "opening", path);
  } else if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
    st_errf(err, cap, "'%s' is not a regular file", path);
    st = EMA_E_IO;
  } else if ((uint64_t)sb.st_size > max) {
    st_errf(err, cap, "'%s' is %lld bytes, more than the %zu a manifest may have", path, (long long)sb.st_size, max);
    st = EMA_E_FORMAT;
  }
  char *buf = NULL;
  size_t got = 0;
  if (st == EMA_OK) {
    buf = (char *)ema__malloc((size_t)sb.st_size + 1);
    if (!buf) {
      st_errf(err, cap, "out of memory");
      st = EMA_E_NOMEM;
    }
  }
  while (st == EMA_OK && got < (size_t)sb.st_size) {
    ssize_t r = read(fd, buf + got, (size_t)sb.st_size - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0)
      st = sys_fail(err, cap, "reading", path);
    else
      got += (size_t)r;
  }
  if (fd >= 0) close(fd);
  free(path);
  if (st != EMA_OK) {
    free(buf);
    return st;
  }
  buf[got] = '\0';
  *out = buf;
  *len = got;
  return EMA_OK;
}

void fs_new_id(char *out) {
  unsigned char r[DIST_ID_LEN / 2];
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  ssize_t got = fd >= 0 ? read(fd, r, sizeof r) : -1;
  if (fd >= 0) close(fd);
  if (got != (ssize_t)sizeof r) { /* no urandom: time, pid and a counter */
    static unsigned counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = ema__xxh64(&ts, sizeof ts, 0) ^ ((uint64_t)getpid() << 20) ^ ++counter;
    memcpy(r, &x, sizeof r);
  }
  for (size_t i = 0; i < sizeof r; i++) snprintf(out + 2 * i, 3, "%02x", r[i]);
}
