/*
 * src/io/st_atomic.c: writing a safetensors file atomically. The data goes
 * to a temporary file in the target's directory: an unnamed one (Linux
 * O_TMPFILE) where the file system supports it, so a crash while writing
 * leaves nothing behind; else a named one, ".<name>.tmp-<host>-<pid>-<nonce>",
 * which identifies its owner: every save to the same path first removes the
 * temporary files of that name whose owner (same host, pid) is gone. Full
 * writes with EINTR and short-write handling, fsync, the replaced file's mode
 * (and owner where permitted) carried over, then the temporary file is given
 * its name (linkat) and renamed over the target, and the directory fsynced.
 * Also the thread-local fault injection the tests use to prove the old file
 * survives.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* O_TMPFILE, AT_EMPTY_PATH */
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "common/xxh64.h"
#include "io/st_internal.h"

/* ------------------------------------------------------------------------ */
/* Fault injection (tests only; thread-local, so threads never interfere)    */
/* ------------------------------------------------------------------------ */

static _Thread_local struct {
  st_fault fault;
  uint64_t arg;
  uint64_t written;
  unsigned flip;
  int no_tmpfile; /* st_test_named_temp */
} st_tl;

void st_test_inject(st_fault fault, uint64_t arg) {
  int keep = st_tl.no_tmpfile;
  memset(&st_tl, 0, sizeof st_tl);
  st_tl.no_tmpfile = keep;
  st_tl.fault = fault;
  st_tl.arg = arg;
  st_tl.written = 0;
  st_tl.flip = 0;
}

uint64_t st_test_bytes_written(void) { return st_tl.written; }

void st_test_named_temp(int on) { st_tl.no_tmpfile = on; }

/* Fire a one-shot fault: 1 (and errno set) when fault is armed. */
static int st_fire(st_fault fault, int err) {
  if (st_tl.fault != fault) return 0;
  st_tl.fault = ST_FAULT_NONE;
  errno = err;
  return 1;
}

static ssize_t st_sys_write(int fd, const void *buf, size_t len) {
  if (st_tl.fault == ST_FAULT_WRITE) {
    if (st_tl.written >= st_tl.arg) {
      st_tl.fault = ST_FAULT_NONE;
      errno = ENOSPC;
      return -1;
    }
    if (len > st_tl.arg - st_tl.written) len = (size_t)(st_tl.arg - st_tl.written);
  } else if (st_tl.fault == ST_FAULT_SHORT) {
    if ((st_tl.flip++ & 1u) == 0) {
      errno = EINTR;
      return -1;
    }
    uint64_t most = st_tl.arg ? st_tl.arg : 1;
    if (len > most) len = (size_t)most;
  }
  ssize_t r = write(fd, buf, len);
  if (r > 0) st_tl.written += (uint64_t)r;
  return r;
}

/* ------------------------------------------------------------------------ */
/* Atomic file writing                                                       */
/* ------------------------------------------------------------------------ */

typedef struct st_out {
  int fd;
  unsigned char *buf;
  size_t len, cap;
} st_out;

/* Write all of p[0..n) to fd; 0, or -1 with errno. */
static int st_write_all(int fd, const unsigned char *p, size_t n) {
  while (n > 0) {
    size_t chunk = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
    ssize_t r = st_sys_write(fd, p, chunk);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (r == 0) {
      errno = EIO;
      return -1;
    }
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

static int st_out_flush(st_out *o) {
  if (o->len == 0) return 0;
  int r = st_write_all(o->fd, o->buf, o->len);
  o->len = 0;
  return r;
}

/* Buffered write: small pieces are gathered, big ones go straight out. */
static int st_out_put(st_out *o, const void *p, size_t n) {
  if (n <= o->cap - o->len) {
    memcpy(o->buf + o->len, p, n);
    o->len += n;
    return 0;
  }
  if (st_out_flush(o) != 0) return -1;
  if (n < o->cap) {
    memcpy(o->buf, p, n);
    o->len = n;
    return 0;
  }
  return st_write_all(o->fd, p, n);
}

ema_status st_write(const char *path, const st_wtensor *tensors, size_t n, const st_wmeta *meta, size_t n_meta,
                    char *err, size_t err_cap) {
  return st_write_stream(path, tensors, n, meta, n_meta, NULL, NULL, err, err_cap);
}

/* Chunk of tensor data requested from a producer at a time. */
#define ST_PRODUCE_CHUNK ((size_t)1 << 20)

/* One atomic write in progress. */
typedef struct st_target {
  const char *path, *base;
  char dir[4096];
  int dfd, fd;
  int unnamed;      /* fd is an O_TMPFILE file, not yet linked */
  int named;        /* tmp names a file of ours that must go on failure */
  char tmp[200];    /* the temporary name */
  char prefix[160]; /* ".<base>.tmp-<host>-": our temporary names start so */
  int have_old;     /* a regular file is being replaced ... */
  struct stat old;  /* ... with this mode and owner */
  char eb[128];
} st_target;

static ema_status st_io(st_target *T, char *err, size_t cap, const char *what) {
  st_errf(err, cap, "%s: %s: %s", T->path, what, st_strerror(errno, T->eb, sizeof T->eb));
  return EMA_E_IO;
}

/* Split path, open the directory, note the file being replaced. */
static ema_status st_target_open(st_target *T, const char *path, char *err, size_t cap) {
  memset(T, 0, sizeof *T);
  T->dfd = T->fd = -1;
  T->path = path;
  const char *slash = strrchr(path, '/');
  T->base = slash ? slash + 1 : path;
  if (!*T->base || strcmp(T->base, ".") == 0 || strcmp(T->base, "..") == 0) {
    st_errf(err, cap, "%s: not a file name", path);
    return EMA_E_INVALID_ARG;
  }
  size_t dlen = slash ? (size_t)(slash - path) : 1;
  if (slash == path) dlen = 1; /* "/name" */
  if (dlen >= sizeof T->dir) {
    st_errf(err, cap, "%s: the directory name is too long", path);
    return EMA_E_INVALID_ARG;
  }
  memcpy(T->dir, slash ? path : ".", dlen);
  T->dir[dlen] = '\0';
  /* The directory first: if it cannot be opened nothing has changed yet. */
  T->dfd = open(T->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (T->dfd < 0) {
    st_errf(err, cap, "%s: cannot open directory '%s': %s", path, T->dir, st_strerror(errno, T->eb, sizeof T->eb));
    return EMA_E_IO;
  }
  T->have_old = fstatat(T->dfd, T->base, &T->old, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(T->old.st_mode);
  char host[256] = "";
  gethostname(host, sizeof host - 1);
  size_t blen = strlen(T->base) < 128 ? strlen(T->base) : 128;
  snprintf(T->prefix, sizeof T->prefix, ".%.*s.tmp-%08x-", (int)blen, T->base,
           (unsigned)(ema__xxh64(host, strlen(host), 0) & 0xFFFFFFFFu));
  return EMA_OK;
}

/* Remove ".<base>.tmp-<our host>-<pid>-<nonce>" files whose process is
   gone: what a crash in a named-temporary save left. Errors are ignored. */
static void st_clean_stale(st_target *T) {
  int fd = dup(T->dfd);
  DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
  if (!d) {
    if (fd >= 0) close(fd);
    return;
  }
  size_t pl = strlen(T->prefix);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strncmp(e->d_name, T->prefix, pl) != 0) continue;
    char *end = NULL;
    long pid = strtol(e->d_name + pl, &end, 10);
    if (pid <= 0 || !end || *end != '-' || strlen(end + 1) != 8 || strspn(end + 1, "0123456789abcdef") != 8) continue;
    if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* alive, or not ours to judge */
    unlinkat(T->dfd, e->d_name, 0);
  }
  closedir(d);
}

/* The temporary file: unnamed where possible, else a fresh named one. */
static ema_status st_tmp_create(st_target *T, char *err, size_t cap) {
  if (st_fire(ST_FAULT_OPEN_TEMP, EACCES)) return st_io(T, err, cap, "cannot create a temporary file");
#ifdef O_TMPFILE
  if (!st_tl.no_tmpfile) {
    T->fd = openat(T->dfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
    if (T->fd >= 0) {
      T->unnamed = 1;
      return EMA_OK;
    }
    if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL && errno != ENOENT)
      return st_io(T, err, cap, "cannot create a temporary file");
  }
#endif
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t nonce = (uint64_t)ts.tv_nsec * 2654435761u ^ (uint64_t)(uintptr_t)&ts ^ ((uint64_t)ts.tv_sec << 20);
  for (int attempt = 0; attempt < 100; attempt++) {
    nonce = nonce * 6364136223846793005u + 1442695040888963407u;
    snprintf(T->tmp, sizeof T->tmp, "%s%ld-%08llx", T->prefix, (long)getpid(), (unsigned long long)(nonce >> 32));
    T->fd = openat(T->dfd, T->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (T->fd >= 0 || errno != EEXIST) break;
  }
  if (T->fd < 0) return st_io(T, err, cap, "cannot create a temporary file");
  T->named = 1;
  return EMA_OK;
}

/* The replaced file's mode, and its owner where this process may set it. */
static ema_status st_tmp_keep_mode(st_target *T, char *err, size_t cap) {
  if (!T->have_old) return EMA_OK;
  if ((T->old.st_uid != geteuid() || T->old.st_gid != getegid()) && fchown(T->fd, T->old.st_uid, T->old.st_gid) != 0 &&
      errno != EPERM)
    return st_io(T, err, cap, "cannot give the new file the owner of the old one");
  if (fchmod(T->fd, T->old.st_mode & 07777) != 0)
    return st_io(T, err, cap, "cannot give the new file the mode of the old one");
  return EMA_OK;
}

/* Header and every tensor's bytes, then fsync. */
static ema_status st_tmp_fill(st_target *T, const st_prep *p, const st_wtensor *tensors, size_t n, st_producer produce,
                              void *user, char *err, size_t cap) {
  unsigned char *obuf = ema__malloc((size_t)1 << 16), *chunk = produce ? ema__malloc(ST_PRODUCE_CHUNK) : NULL;
  if (!obuf || (produce && !chunk)) {
    free(obuf);
    free(chunk);
    st_errf(err, cap, "%s: out of memory", T->path);
    return EMA_E_NOMEM;
  }
  st_out o = {T->fd, obuf, 0, (size_t)1 << 16};
  ema_status st = EMA_OK;
  int bad = st_out_put(&o, p->head, p->head_len);
  for (size_t k = 0; k < n && !bad && st == EMA_OK; k++) {
    size_t nb = (size_t)p->nbytes[p->order[k]];
    if (!produce) {
      if (nb) bad = st_out_put(&o, tensors[p->order[k]].data, nb);
      continue;
    }
    for (size_t off = 0; off < nb && !bad && st == EMA_OK; off += ST_PRODUCE_CHUNK) {
      size_t len = nb - off < ST_PRODUCE_CHUNK ? nb - off : ST_PRODUCE_CHUNK;
      st = produce(user, p->order[k], off, chunk, len, err, cap); /* the producer writes the message */
      if (st == EMA_OK) bad = st_out_put(&o, chunk, len);
    }
  }
  if (st == EMA_OK && !bad) bad = st_out_flush(&o);
  free(obuf);
  free(chunk);
  if (st != EMA_OK) return st;
  if (bad) return st_io(T, err, cap, "cannot write the temporary file");
  if (st_fire(ST_FAULT_FSYNC, EIO) || fsync(T->fd) != 0) return st_io(T, err, cap, "cannot fsync the temporary file");
  return EMA_OK;
}

/* Name the unnamed file (linkat), close, rename over the target, fsync the
   directory. */
static ema_status st_tmp_commit(st_target *T, char *err, size_t cap) {
  if (T->unnamed) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(T->tmp, sizeof T->tmp, "%s%ld-%08lx", T->prefix, (long)getpid(),
             (unsigned long)(((uint64_t)ts.tv_nsec * 2654435761u) & 0xFFFFFFFFu));
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", T->fd);
#ifdef AT_EMPTY_PATH
    int r = linkat(T->fd, "", T->dfd, T->tmp, AT_EMPTY_PATH);
#else
    int r = -1;
#endif
    if (r != 0) r = linkat(AT_FDCWD, proc, T->dfd, T->tmp, AT_SYMLINK_FOLLOW);
    if (r != 0) return st_io(T, err, cap, "cannot give the temporary file a name (linkat)");
    T->named = 1;
  }
  int cr = close(T->fd);
  T->fd = -1;
  if (cr != 0) return st_io(T, err, cap, "cannot close the temporary file");
  if (st_fire(ST_FAULT_RENAME, EXDEV) || renameat(T->dfd, T->tmp, T->dfd, T->base) != 0)
    return st_io(T, err, cap, "cannot rename the temporary file over it");
  T->named = 0;
  /* Make the rename durable. EINVAL: this file system cannot sync directories. */
  if (st_fire(ST_FAULT_DIRSYNC, EIO) || (fsync(T->dfd) != 0 && errno != EINVAL)) {
    st_errf(err, cap,
            "%s: the new file is in place but fsync of directory '%s' failed, so the rename may not survive a crash: "
            "%s",
            T->path, T->dir, st_strerror(errno, T->eb, sizeof T->eb));
    return EMA_E_IO;
  }
  return EMA_OK;
}

ema_status st_write_stream(const char *path, const st_wtensor *tensors, size_t n, const st_wmeta *meta, size_t n_meta,
                           st_producer produce, void *user, char *err, size_t err_cap) {
  if (!path || !*path) {
    st_errf(err, err_cap, "st_write: NULL or empty path");
    return EMA_E_INVALID_ARG;
  }
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0) {
    st_errf(err, err_cap, "%s: not a file name", path);
    return EMA_E_INVALID_ARG;
  }
  st_prep p;
  ema_status st = st_prepare(tensors, n, meta, n_meta, produce == NULL, &p, err, err_cap);
  if (st != EMA_OK) return st;
  st_target *T = ema__malloc(sizeof *T);
  if (!T) {
    st_prep_free(&p);
    st_errf(err, err_cap, "%s: out of memory", path);
    return EMA_E_NOMEM;
  }
  st = st_target_open(T, path, err, err_cap);
  if (st == EMA_OK) st_clean_stale(T);
  if (st == EMA_OK) st = st_tmp_create(T, err, err_cap);
  if (st == EMA_OK) st = st_tmp_keep_mode(T, err, err_cap);
  if (st == EMA_OK) st = st_tmp_fill(T, &p, tensors, n, produce, user, err, err_cap);
  if (st == EMA_OK) st = st_tmp_commit(T, err, err_cap);
  if (T->fd >= 0) close(T->fd);
  if (T->named) unlinkat(T->dfd, T->tmp, 0);
  if (T->dfd >= 0) close(T->dfd);
  free(T);
  st_prep_free(&p);
  return st;
}
