/*
 * fb_clients.c - the callers' counts of the mapped-file backend.
 *
 * They live in a file beside the state file, STATE.clients: one record of
 * CLIENT_REC bytes per caller ("ID COUNTS", padded with spaces, ending in a
 * newline; COUNTS is client_counts.h's text), read and written in place
 * under the state file's transaction lock, so every process on the state
 * counts against the same figures.  The file is opened with O_NOFOLLOW
 * (created with O_EXCL, 0600) and must be a regular file of ours that no
 * one else may read: a link planted there is refused, never followed.  A
 * damaged record counts from zero.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "engine/client_counts.h"
#include "engine/file_backend.h"

#define CLIENT_REC 3072
#define MAX_RECS 4096

/* Opens the file once (under the store's lock); without `create`, 1 when
 * there is none yet. */
static int clients_open(fb *f, int create, gkp_error *err) {
  char path[4200];
  struct stat sb;
  if (f->clients_fd >= 0) {
    return 0;
  }
  if (snprintf(path, sizeof path, "%s.clients", f->st->path) >= (int)sizeof path) {
    return gkp__err(err, -ENAMETOOLONG, "%s.clients: path too long", f->st->path);
  }
  int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0 && errno == ENOENT && !create) {
    return 1;
  }
  if (fd < 0 && errno == ENOENT) {
    fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  }
  if (fd < 0) {
    int e = errno;
    return gkp__err(err, -e, "%s: %s", path,
                    e == ELOOP ? "is a symbolic link; refusing to follow it" : strerror(e));
  }
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_uid != geteuid() ||
      (sb.st_mode & 077) != 0) {
    close(fd);
    return gkp__err(err, -EPERM,
                    "%s: not a regular file of this user readable by it alone; move it away", path);
  }
  f->clients_fd = fd;
  return 0;
}

/* Finds caller `id`'s record: its offset (or where a new one goes) and its
 * counts (zero if new or damaged).  Under the lock. */
static int find(fb *f, const char *id, off_t *at, gkp__client_counts *c, gkp_error *err) {
  char rec[CLIENT_REC];
  size_t idlen = strlen(id);
  struct stat sb;
  memset(c, 0, sizeof *c);
  if (fstat(f->clients_fd, &sb) != 0) {
    return gkp__err(err, -errno, "%s.clients: %s", f->st->path, strerror(errno));
  }
  off_t n = sb.st_size / CLIENT_REC;
  for (off_t i = 0; i < n && i < MAX_RECS; i++) {
    ssize_t got = pread(f->clients_fd, rec, sizeof rec, i * CLIENT_REC);
    if (got != CLIENT_REC) {
      return gkp__err(err, -EIO, "%s.clients: short read", f->st->path);
    }
    if (memcmp(rec, id, idlen) == 0 && rec[idlen] == ' ') {
      *at = i * CLIENT_REC;
      size_t len = CLIENT_REC - 1 - (idlen + 1);
      const char *s = rec + idlen + 1;
      while (len > 0 && s[len - 1] == ' ') {
        len--;
      }
      gkp__client_decode(s, len, c); /* damaged: from zero */
      return 0;
    }
  }
  if (n >= MAX_RECS) {
    return gkp__err(err, -ENOSPC, "%s.clients: more than %d callers", f->st->path, MAX_RECS);
  }
  *at = n * CLIENT_REC;
  return 0;
}

static int store(fb *f, const char *id, off_t at, const gkp__client_counts *c, gkp_error *err) {
  char rec[CLIENT_REC];
  memset(rec, ' ', sizeof rec);
  int n = snprintf(rec, sizeof rec, "%s ", id);
  gkp__client_encode(c, rec + n, sizeof rec - (size_t)n - 1);
  rec[strlen(rec)] = ' ';
  rec[CLIENT_REC - 1] = '\n';
  if (pwrite(f->clients_fd, rec, sizeof rec, at) != (ssize_t)sizeof rec) {
    return gkp__err(err, errno != 0 ? -errno : -EIO, "%s.clients: %s", f->st->path,
                    strerror(errno != 0 ? errno : EIO));
  }
  return 0;
}

int fb_client_count(gkp__backend *b, const char *id, int kind, int64_t rpm, int64_t rpd,
                    int64_t *retry_s, gkp_error *err) {
  fb *f = (fb *)b;
  gkp__client_counts c;
  off_t at = 0;
  int rc = gkp__store_lock(f->st, err);
  *retry_s = 0;
  if (rc < 0) {
    return rc;
  }
  rc = clients_open(f, 1, err);
  if (rc == 0) {
    rc = find(f, id, &at, &c, err);
  }
  if (rc == 0) {
    *retry_s = gkp__client_count(&c, kind, fb_now(f), rpm, rpd);
    rc = store(f, id, at, &c, err);
  }
  gkp__store_unlock(f->st);
  return rc;
}

int fb_client_usage(gkp__backend *b, const char *id, gkp_client_usage *out, gkp_error *err) {
  fb *f = (fb *)b;
  gkp__client_counts c;
  off_t at = 0;
  int rc = gkp__store_lock(f->st, err);
  memset(out, 0, sizeof *out);
  if (rc < 0) {
    return rc;
  }
  rc = clients_open(f, 0, err);
  if (rc == 1) {
    rc = 0; /* nobody counted yet */
  } else if (rc == 0) {
    rc = find(f, id, &at, &c, err);
  }
  if (rc == 0 && f->clients_fd >= 0) {
    gkp__client_read(&c, fb_now(f), out);
  }
  gkp__store_unlock(f->st);
  return rc;
}
