/*
 * store_open.c - opening the state file: creating it, upgrading a format 1
 * file, moving a damaged one aside, and following a file another process
 * moved.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "common/err.h"
#include "common/timeutil.h"
#include "common/util.h"
#include "engine/store_impl.h"
#include "engine/store_v1.h"

/* ---- creating, upgrading, opening --------------------------------------------------- */

static uint64_t first_lease_id(int64_t now_ms) {
  /* Lease ids of different files never meet: a release that outlives a
   * moved-aside file cannot end a lease of the new one. */
  uint64_t x = (uint64_t)now_ms * 6364136223846793005ull ^ (uint64_t)getpid() << 32;
  return (x & 0x0000ffffffff0000ull) << 16 | 1;
}

/* The header and layout of a fresh file with room for nk keys, np pairs. */
static void fresh_header(gkp__store_hdr *h, int64_t now_ms, uint32_t nk, uint32_t np) {
  memset(h, 0, sizeof *h);
  memcpy(h->magic, GKP__STORE_MAGIC, 8);
  h->version = GKP__STORE_VERSION;
  h->hdr_size = sizeof *h;
  h->key_rec_size = sizeof(gkp__key_rec);
  h->pm_rec_size = sizeof(gkp__pm_rec);
  h->created_ms = now_ms;
  h->next_lease_id = first_lease_id(now_ms);
  h->lru_head = h->lru_tail = -1;
  h->lay.key_cap = nk;
  h->lay.pm_cap = np;
  h->lay.key_off = round_up(sizeof *h);
  h->lay.pm_off = round_up(h->lay.key_off + (uint64_t)nk * sizeof(gkp__key_rec));
  h->lay.file_size = round_up(h->lay.pm_off + (uint64_t)np * sizeof(gkp__pm_rec));
}

static uint32_t cap_for(size_t n, uint32_t initial) {
  uint32_t c = initial;
  while (c < n) {
    c *= 2;
  }
  return c;
}

/* Writes a file (header, then records) at a temporary name and links or
 * renames it to `path`.  `replace` 0: never replaces an existing file. */
static int write_file(const char *path, const gkp__store_hdr *h, const gkp__v1_contents *v1,
                      int replace, gkp_error *err) {
  char tmp[4200];
  int fd, rc = 0;
  /* An unpredictable name, created exclusively: nothing planted there is
   * followed or reused. */
  snprintf(tmp, sizeof tmp, "%s.new-XXXXXX", path);
  fd = mkostemp(tmp, O_CLOEXEC);
  if (fd < 0) {
    return gkp__err(err, -errno, "%s: cannot create the state file: %s", tmp, strerror(errno));
  }
  if (ftruncate(fd, (off_t)h->lay.file_size) != 0) {
    rc = -errno;
  }
  for (size_t i = 0; rc == 0 && v1 != NULL && i < v1->nkeys; i++) {
    gkp__key_rec k;
    memset(&k, 0, sizeof k);
    k.used = 1;
    memcpy(k.id, v1->keys[i].id, sizeof k.id);
    memcpy(k.project, v1->keys[i].project, sizeof k.project);
    k.c = v1->keys[i].c;
    if (pwrite(fd, &k, sizeof k, (off_t)(h->lay.key_off + i * sizeof k)) != (ssize_t)sizeof k) {
      rc = -errno;
    }
  }
  for (size_t i = 0; rc == 0 && v1 != NULL && i < v1->npm; i++) {
    gkp__pm_rec p;
    memset(&p, 0, sizeof p);
    p.used = 1;
    memcpy(p.project, v1->pms[i].project, sizeof p.project);
    memcpy(p.model, v1->pms[i].model, sizeof p.model);
    p.c = v1->pms[i].c;
    if (pwrite(fd, &p, sizeof p, (off_t)(h->lay.pm_off + i * sizeof p)) != (ssize_t)sizeof p) {
      rc = -errno;
    }
  }
  if (rc == 0 && (pwrite(fd, h, sizeof *h, 0) != (ssize_t)sizeof *h || fsync(fd) != 0)) {
    rc = -errno;
  }
  close(fd);
  if (rc != 0) {
    gkp__err(err, rc, "%s: cannot write the state file: %s", tmp, strerror(-rc));
  } else if (replace ? rename(tmp, path) != 0 : (link(tmp, path) != 0 && errno != EEXIST)) {
    rc = gkp__err(err, -errno, "%s: cannot create the state file: %s", path, strerror(errno));
  }
  unlink(tmp);
  return rc;
}

/* Creates a fresh state file at `path` unless one appears meanwhile. */
static int create_file(const char *path, int64_t now_ms, gkp_error *err) {
  gkp__store_hdr *h = malloc(sizeof *h);
  int rc;
  if (h == NULL) {
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  fresh_header(h, now_ms, GKP__KEYS_INITIAL, GKP__PMS_INITIAL);
  rc = write_file(path, h, NULL, 0, err);
  free(h);
  return rc;
}

/* Replaces the format 1 file open on fd (locked) with a format 2 file that
 * keeps its records.  Returns 0, 1 if it is not a sane format 1 file, or a
 * negative errno. */
static int upgrade_v1(gkp__store *st, size_t size, int64_t now_ms, gkp_error *err) {
  gkp__v1_contents v1;
  gkp__store_hdr *h;
  void *map;
  int rc;
  if (size != gkp__store_v1_size()) {
    return 1;
  }
  map = mmap(NULL, size, PROT_READ, MAP_SHARED, st->fd, 0);
  if (map == MAP_FAILED) {
    return gkp__err(err, -errno, "%s: cannot map the state file: %s", st->path, strerror(errno));
  }
  rc = gkp__store_v1_read(map, size, &v1, err);
  munmap(map, size);
  if (rc != 0) {
    return rc;
  }
  h = malloc(sizeof *h);
  if (h == NULL) {
    gkp__store_v1_free(&v1);
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  fresh_header(h, v1.created_ms != 0 ? v1.created_ms : now_ms, cap_for(v1.nkeys, GKP__KEYS_INITIAL),
               cap_for(v1.npm, GKP__PMS_INITIAL));
  h->lay.nkeys = (uint32_t)v1.nkeys;
  h->lay.npm = (uint32_t)v1.npm;
  h->lru_dirty = 1; /* the first transaction links the keys by last use */
  rc = write_file(st->path, h, &v1, 1, err);
  free(h);
  gkp__store_v1_free(&v1);
  return rc;
}

/* Marks the file open on st->fd retired and moves it aside (if the path
 * still names it).  Under the file's lock. */
static void move_aside(gkp__store *st, int64_t now_ms, const char *why, gkp__store_note_fn note,
                       void *note_ud) {
  char aside[4200], line[4400];
  struct stat a, b;
  uint32_t one = 1;
  if (fstat(st->fd, &b) == 0 && b.st_size >= 16) {
    /* Processes that have it mapped see this when they next take the lock. */
    if (pwrite(st->fd, &one, sizeof one, 12) != (ssize_t)sizeof one) {
      return;
    }
  }
  snprintf(aside, sizeof aside, "%s.corrupt-%lld", st->path, (long long)(now_ms / 1000));
  if (stat(st->path, &a) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev &&
      rename(st->path, aside) == 0 && note != NULL) {
    snprintf(line, sizeof line,
             "%s: the state file was damaged (%s); moved it to %s and started a fresh one",
             st->path, why, aside);
    note(note_ud, line);
  }
}

/* One attempt at opening the file at st->path, with st->fd open and locked.
 * Returns 0 (mapped), 1 (try again: created, upgraded or moved aside), or a
 * negative errno. */
static int open_locked(gkp__store *st, int64_t now_ms, gkp__store_note_fn note, void *note_ud,
                       gkp_error *err) {
  struct stat sb;
  gkp__store_hdr *h;
  const char *why = NULL;
  int rc;

  if (fstat(st->fd, &sb) != 0) {
    return gkp__err(err, -errno, "%s: %s", st->path, strerror(errno));
  }
  if (!S_ISREG(sb.st_mode)) {
    return gkp__err(err, -EINVAL, "%s: not a regular file; name the state file itself", st->path);
  }
  h = malloc(sizeof *h);
  if (h == NULL) {
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  memset(h, 0, sizeof *h);
  if ((size_t)sb.st_size < 16 || pread(st->fd, h, sizeof *h, 0) < 16) {
    why = "shorter than its header";
  } else if (memcmp(h->magic, GKP__STORE_MAGIC, 8) != 0) {
    why = "not a gemini-pool state file";
  } else if (h->version > GKP__STORE_VERSION) {
    rc = gkp__err(err, -EPROTO,
                  "%s: state written by a newer gemini-pool (format %u); upgrade or use another "
                  "--state",
                  st->path, h->version);
    free(h);
    return rc;
  } else if (h->version == 1) {
    free(h);
    rc = upgrade_v1(st, (size_t)sb.st_size, now_ms, err);
    if (rc == 0 && note != NULL) {
      char line[4300];
      snprintf(line, sizeof line, "%s: upgraded the state file to format %u", st->path,
               GKP__STORE_VERSION);
      note(note_ud, line);
    }
    if (rc <= 0) {
      return rc < 0 ? rc : 1;
    }
    why = "a damaged format 1 file";
    h = NULL;
  } else if (h->version == 2) {
    why = "format 2, written by a development version";
  } else if (h->version != GKP__STORE_VERSION || (size_t)sb.st_size < sizeof *h) {
    why = "written by an incompatible version";
  } else if (h->retired) {
    why = "retired, yet still at its path";
  } else {
    why = gkp__store_validate_hdr(h, (uint64_t)sb.st_size);
  }
  if (why == NULL) {
    rc = gkp__store_map_size(st, h->lay.file_size, err);
    free(h);
    if (rc != 0) {
      return rc;
    }
    gkp__store_rollback(st);
    why = gkp__store_validate_recs(st);
    if (why == NULL) {
      if (st->hdr->lru_dirty || !gkp__store_lru_ok(st)) {
        gkp__store_lru_rebuild(st);
      }
      return 0;
    }
    gkp__store_unmap(st);
  } else {
    free(h);
  }
  move_aside(st, now_ms, why, note, note_ud);
  return 1;
}

/* Opens whatever file is at st->path now, into st (fd and mapping). */
int gkp__store_open_path(gkp__store *st, int64_t now_ms, gkp__store_note_fn note, void *note_ud,
                         gkp_error *err) {
  for (int attempt = 0; attempt < 4; attempt++) {
    int rc;
    st->fd = open(st->path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (st->fd < 0 && errno == ENOENT) {
      rc = create_file(st->path, now_ms, err);
      if (rc < 0) {
        return rc;
      }
      continue;
    }
    if (st->fd < 0 && errno == ELOOP) {
      return gkp__err(err, -ELOOP,
                      "%s: is a symbolic link, and the state file is never opened through one; "
                      "remove the link (or pass --state with the real file)",
                      st->path);
    }
    if (st->fd < 0) {
      return gkp__err(err, -errno, "%s: cannot open the state file: %s", st->path, strerror(errno));
    }
    if (flock(st->fd, LOCK_EX) != 0) {
      rc = gkp__err(err, -errno, "%s: cannot lock the state file: %s", st->path, strerror(errno));
    } else {
      rc = open_locked(st, now_ms, note, note_ud, err);
      flock(st->fd, LOCK_UN);
    }
    if (rc == 0) {
      return 0;
    }
    close(st->fd);
    st->fd = -1;
    if (rc < 0) {
      return rc;
    }
  }
  return gkp__err(err, -EIO, "%s: the state file keeps turning out invalid; remove it", st->path);
}

int gkp__store_open(const char *path, int64_t now_ms, gkp__store_note_fn note, void *note_ud,
                    gkp__store **out, gkp_error *err) {
  gkp__store *st;
  char dir[4200];
  char *slash;
  int rc;

  *out = NULL;
  snprintf(dir, sizeof dir, "%s", path);
  slash = strrchr(dir, '/');
  if (slash != NULL) {
    slash[slash == dir ? 1 : 0] = '\0';
  }
  rc = gkp__store_check_fs(slash != NULL ? dir : ".", path, err);
  if (rc != 0) {
    return rc;
  }
  st = calloc(1, sizeof *st);
  if (st == NULL || (st->path = strdup(path)) == NULL) {
    free(st);
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  st->fd = -1;
  pthread_mutex_init(&st->mu, NULL);
  rc = gkp__store_open_path(st, now_ms, note, note_ud, err);
  if (rc != 0) {
    gkp__store_close(st);
    return rc;
  }
  *out = st;
  return 0;
}

void gkp__store_close(gkp__store *st) {
  if (st == NULL) {
    return;
  }
  if (st->hdr != NULL) {
    msync(st->hdr, st->size, MS_ASYNC);
    gkp__store_unmap(st);
  }
  if (st->fd >= 0) {
    close(st->fd);
  }
  pthread_mutex_destroy(&st->mu);
  free(st->path);
  free(st);
}
