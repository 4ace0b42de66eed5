/*
 * store.c - the mapped state file: creation, validation, locking, journal.
 */
#include "engine/store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/util.h"

/* Keeps the compiler from moving stores across a journal step.  A killed
 * process cannot tear an aligned word store, and the kernel keeps every
 * store it completed, so ordering in program order is all that matters. */
#define STORE_FENCE() atomic_signal_fence(memory_order_seq_cst)

static size_t layout_size(void) {
  return sizeof(gkp__store_hdr) + sizeof(gkp__key_rec) * GKP__MAX_KEYS +
         sizeof(gkp__pm_rec) * GKP__MAX_PM;
}

static int str_ok(const char *s, size_t size) {
  return memchr(s, '\0', size) != NULL;
}

/* `next_lease` is the header's next_lease_id: every lease in use is older. */
static int key_rec_ok(const gkp__key_rec *k, uint64_t next_lease) {
  if (k->used > 1 || k->disabled > 1 || k->nleases > GKP__MAX_LEASES) {
    return 0;
  }
  if (!str_ok(k->id, sizeof k->id) || !str_ok(k->project, sizeof k->project) ||
      !str_ok(k->disabled_reason, sizeof k->disabled_reason)) {
    return 0;
  }
  if (k->cooldown_kind < 0 || k->cooldown_kind >= GKP_KIND_COUNT) {
    return 0;
  }
  for (int i = 0; i < GKP__MAX_LEASES; i++) {
    if (k->leases[i].id != 0 &&
        (k->leases[i].pm_slot >= GKP__MAX_PM || k->leases[i].id >= next_lease)) {
      return 0;
    }
  }
  return 1;
}

/* The largest count, or time in seconds, a window bucket or the day count
 * may hold: far beyond anything the engine writes, and small enough that
 * sums over a window cannot overflow. */
#define COUNT_MAX (INT64_C(1) << 48)

static int pm_rec_ok(const gkp__pm_rec *p) {
  if (p->used > 1 || p->proven > 1) {
    return 0;
  }
  if (!str_ok(p->project, sizeof p->project) || !str_ok(p->model, sizeof p->model) ||
      !str_ok(p->last_error, sizeof p->last_error)) {
    return 0;
  }
  if (p->day_count < 0 || p->day_count > COUNT_MAX) {
    return 0;
  }
  for (int i = 0; i < 3; i++) {
    if (p->learned[i] < -1 || p->learned[i] > COUNT_MAX) {
      return 0;
    }
  }
  for (int i = 0; i < GKP__WIN_SLOTS; i++) {
    const gkp__bucket *b = &p->win[i];
    if (b->sec < -COUNT_MAX || b->sec > COUNT_MAX || b->reqs < 0 || b->reqs > COUNT_MAX ||
        b->tokens < 0 || b->tokens > COUNT_MAX) {
      return 0;
    }
  }
  return p->cooldown_kind >= 0 && p->cooldown_kind < GKP_KIND_COUNT;
}

/* Checks that a mapped file is a state file of this layout whose header and
 * journal are sane (so that rolling the journal back is safe).  Returns NULL
 * if so, else what is wrong. */
static const char *validate_header(const gkp__store_hdr *h, size_t size) {
  if (size < sizeof *h) {
    return "shorter than its header";
  }
  if (memcmp(h->magic, GKP__STORE_MAGIC, 8) != 0) {
    return "not a gemini-pool state file";
  }
  if (h->version != GKP__STORE_VERSION || h->hdr_size != sizeof *h ||
      h->key_rec_size != sizeof(gkp__key_rec) || h->pm_rec_size != sizeof(gkp__pm_rec) ||
      h->max_keys != GKP__MAX_KEYS || h->max_pm != GKP__MAX_PM) {
    return "written by an incompatible version";
  }
  if (h->file_size != layout_size() || size < layout_size()) {
    return "truncated";
  }
  if (h->nkeys > GKP__MAX_KEYS || h->npm > GKP__MAX_PM || h->journal.active > 1 ||
      h->journal.key_slot < -1 || h->journal.key_slot >= GKP__MAX_KEYS || h->journal.pm_slot < -1 ||
      h->journal.pm_slot >= GKP__MAX_PM || h->next_lease_id == 0) {
    return "header out of range";
  }
  /* Rolling back an active journal copies its records into place: they must
   * be as sane as the records themselves. */
  if (h->journal.active &&
      ((h->journal.key_slot >= 0 && !key_rec_ok(&h->journal.key_copy, h->next_lease_id)) ||
       (h->journal.pm_slot >= 0 && !pm_rec_ok(&h->journal.pm_copy)))) {
    return "its journal is damaged";
  }
  return NULL;
}

/* Checks every record in use.  Returns NULL if all are sane, else what is
 * wrong.  Called after an unfinished change was rolled back: the records it
 * was modifying are only checked as they are restored. */
static const char *validate_records(const gkp__store_hdr *h) {
  const gkp__key_rec *keys = (const gkp__key_rec *)(h + 1);
  const gkp__pm_rec *pms = (const gkp__pm_rec *)(keys + GKP__MAX_KEYS);
  for (uint32_t i = 0; i < h->nkeys; i++) {
    if (!key_rec_ok(&keys[i], h->next_lease_id)) {
      return "a key record is damaged";
    }
  }
  for (uint32_t i = 0; i < h->npm; i++) {
    if (!pm_rec_ok(&pms[i])) {
      return "a model record is damaged";
    }
  }
  return NULL;
}

/* Creates a fresh state file at `path` unless one appears meanwhile: the
 * file is built under a temporary name and link()ed into place, which never
 * replaces an existing file.  Returns 0 (created or lost the race) or a
 * negative errno. */
static int create_file(const char *path, int64_t now_ms, gkp_error *err) {
  char tmp[4096];
  gkp__store_hdr h;
  int fd, rc = 0;

  /* An unpredictable name, created exclusively: nothing planted there is
   * followed or reused. */
  snprintf(tmp, sizeof tmp, "%s.new-XXXXXX", path);
  fd = mkostemp(tmp, O_CLOEXEC);
  if (fd < 0) {
    return gkp__err(err, -errno, "%s: cannot create the state file: %s", tmp, strerror(errno));
  }
  memset(&h, 0, sizeof h);
  memcpy(h.magic, GKP__STORE_MAGIC, 8);
  h.version = GKP__STORE_VERSION;
  h.hdr_size = sizeof h;
  h.key_rec_size = sizeof(gkp__key_rec);
  h.pm_rec_size = sizeof(gkp__pm_rec);
  h.max_keys = GKP__MAX_KEYS;
  h.max_pm = GKP__MAX_PM;
  h.file_size = layout_size();
  h.created_ms = now_ms;
  h.next_lease_id = 1;
  h.journal.key_slot = -1;
  h.journal.pm_slot = -1;
  if (ftruncate(fd, (off_t)layout_size()) != 0 ||
      pwrite(fd, &h, sizeof h, 0) != (ssize_t)sizeof h || fsync(fd) != 0) {
    rc = gkp__err(err, -errno, "%s: cannot write the state file: %s", tmp, strerror(errno));
  }
  close(fd);
  if (rc == 0 && link(tmp, path) != 0 && errno != EEXIST) {
    rc = gkp__err(err, -errno, "%s: cannot create the state file: %s", path, strerror(errno));
  }
  unlink(tmp);
  return rc;
}

static void rollback(gkp__store *st);

/* Maps an open state file (under its lock).  Returns 0, or a positive 1 with *why set when the
 * file is not a valid state file, or a negative errno. */
static int map_file(gkp__store *st, const char **why, gkp_error *err) {
  struct stat sb;
  void *p;

  if (fstat(st->fd, &sb) != 0) {
    return gkp__err(err, -errno, "%s: %s", st->path, strerror(errno));
  }
  if (!S_ISREG(sb.st_mode)) {
    return gkp__err(err, -EINVAL, "%s: not a regular file; name the state file itself", st->path);
  }
  if ((size_t)sb.st_size != layout_size()) {
    *why = (size_t)sb.st_size < layout_size() ? "truncated" : "of an unexpected size";
    if ((size_t)sb.st_size < sizeof(gkp__store_hdr)) {
      *why = "shorter than its header";
    }
    return 1;
  }
  p = mmap(NULL, layout_size(), PROT_READ | PROT_WRITE, MAP_SHARED, st->fd, 0);
  if (p == MAP_FAILED) {
    return gkp__err(err, -errno, "%s: cannot map the state file: %s", st->path, strerror(errno));
  }
  st->size = layout_size();
  st->hdr = p;
  *why = validate_header(st->hdr, st->size);
  if (*why == NULL) {
    st->keys = (gkp__key_rec *)(st->hdr + 1);
    st->pms = (gkp__pm_rec *)(st->keys + GKP__MAX_KEYS);
    /* A change a killed process left half done is undone first: its
     * half-written records are not damage. */
    rollback(st);
    *why = validate_records(st->hdr);
  }
  if (*why != NULL) {
    munmap(p, st->size);
    st->hdr = NULL;
    st->keys = NULL;
    st->pms = NULL;
    return 1;
  }
  return 0;
}

int gkp__store_open(const char *path, int64_t now_ms, gkp__store **out, char *moved_to,
                    gkp_error *err) {
  gkp__store *st;
  int rc;

  *out = NULL;
  if (moved_to != NULL) {
    moved_to[0] = '\0';
  }
  st = calloc(1, sizeof *st);
  if (st == NULL || (st->path = strdup(path)) == NULL) {
    free(st);
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  st->fd = -1;
  pthread_mutex_init(&st->mu, NULL);

  for (int attempt = 0; attempt < 3; attempt++) {
    const char *why = NULL;
    st->fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (st->fd < 0 && errno == ENOENT) {
      rc = create_file(path, now_ms, err);
      if (rc < 0) {
        goto fail;
      }
      continue;
    }
    if (st->fd < 0 && errno == ELOOP) {
      rc = gkp__err(err, -ELOOP,
                    "%s: is a symbolic link, and the state file is never opened through one; "
                    "remove the link (or pass --state with the real file)",
                    path);
      goto fail;
    }
    if (st->fd < 0) {
      rc = gkp__err(err, -errno, "%s: cannot open the state file: %s", path, strerror(errno));
      goto fail;
    }
    if (flock(st->fd, LOCK_EX) != 0) {
      rc = gkp__err(err, -errno, "%s: cannot lock the state file: %s", path, strerror(errno));
      goto fail;
    }
    rc = map_file(st, &why, err);
    if (rc < 0) {
      goto fail;
    }
    if (rc == 0) {
      flock(st->fd, LOCK_UN);
      *out = st;
      return 0;
    }
    /* Invalid: move it aside (under its lock, so only one process does). */
    {
      char aside[4096];
      struct stat a, b;
      snprintf(aside, sizeof aside, "%s.corrupt-%lld", path, (long long)(now_ms / 1000));
      if (stat(path, &a) == 0 && fstat(st->fd, &b) == 0 && a.st_ino == b.st_ino &&
          rename(path, aside) == 0 && moved_to != NULL) {
        snprintf(moved_to, 4096, "%s (%s)", aside, why);
      }
    }
    close(st->fd);
    st->fd = -1;
  }
  rc = gkp__err(err, -EIO, "%s: the state file keeps turning out invalid; remove it", path);
fail:
  if (st->fd >= 0) {
    close(st->fd);
  }
  pthread_mutex_destroy(&st->mu);
  free(st->path);
  free(st);
  return rc;
}

void gkp__store_close(gkp__store *st) {
  if (st == NULL) {
    return;
  }
  if (st->hdr != NULL) {
    msync(st->hdr, st->size, MS_ASYNC);
    munmap(st->hdr, st->size);
  }
  if (st->fd >= 0) {
    close(st->fd);
  }
  pthread_mutex_destroy(&st->mu);
  free(st->path);
  free(st);
}

/* Undoes the change a dead process left half done. */
static void rollback(gkp__store *st) {
  gkp__journal *j = &st->hdr->journal;
  if (!j->active) {
    return;
  }
  if (j->key_slot >= 0) {
    st->keys[j->key_slot] = j->key_copy;
  }
  if (j->pm_slot >= 0) {
    st->pms[j->pm_slot] = j->pm_copy;
  }
  STORE_FENCE();
  j->active = 0;
  STORE_FENCE();
}

int gkp__store_lock(gkp__store *st, gkp_error *err) {
  pthread_mutex_lock(&st->mu);
  while (flock(st->fd, LOCK_EX) != 0) {
    if (errno != EINTR) {
      int e = errno;
      pthread_mutex_unlock(&st->mu);
      return gkp__err(err, -e, "%s: cannot lock the state file: %s", st->path, strerror(e));
    }
  }
  st->in_tx = 1;
  rollback(st);
  return 0;
}

void gkp__store_unlock(gkp__store *st) {
  st->in_tx = 0;
  flock(st->fd, LOCK_UN);
  pthread_mutex_unlock(&st->mu);
}

void gkp__store_change(gkp__store *st, int key_slot, int pm_slot) {
  gkp__journal *j = &st->hdr->journal;
  j->key_slot = key_slot;
  j->pm_slot = pm_slot;
  if (key_slot >= 0) {
    j->key_copy = st->keys[key_slot];
  }
  if (pm_slot >= 0) {
    j->pm_copy = st->pms[pm_slot];
  }
  STORE_FENCE();
  j->active = 1;
  STORE_FENCE();
}

void gkp__store_commit(gkp__store *st) {
  STORE_FENCE();
  st->hdr->generation++;
  st->hdr->journal.active = 0;
  STORE_FENCE();
}

int gkp__store_find_key(const gkp__store *st, const char *id) {
  for (uint32_t i = 0; i < st->hdr->nkeys; i++) {
    if (st->keys[i].used && strcmp(st->keys[i].id, id) == 0) {
      return (int)i;
    }
  }
  return -1;
}

int gkp__store_find_pm(const gkp__store *st, const char *project, const char *model) {
  for (uint32_t i = 0; i < st->hdr->npm; i++) {
    const gkp__pm_rec *p = &st->pms[i];
    if (p->used && strcmp(p->model, model) == 0 && strcmp(p->project, project) == 0) {
      return (int)i;
    }
  }
  return -1;
}

int gkp__store_attach_key(gkp__store *st, const char *id, const char *project, gkp_error *err) {
  int slot = gkp__store_find_key(st, id);
  if (slot >= 0) {
    if (strcmp(st->keys[slot].project, project) != 0) {
      gkp__store_change(st, slot, -1);
      gkp__strlcpy(st->keys[slot].project, project, sizeof st->keys[slot].project);
      gkp__store_commit(st);
    }
    return slot;
  }
  if (st->hdr->nkeys >= GKP__MAX_KEYS) {
    return gkp__err(err, -ENOSPC,
                    "%s: the state file already tracks %d keys; move it aside to start afresh",
                    st->path, GKP__MAX_KEYS);
  }
  slot = (int)st->hdr->nkeys;
  /* The slot is claimed in the header first: if this process dies before
   * the record is filled, the rolled-back slot is simply unused. */
  st->hdr->nkeys++;
  gkp__store_change(st, slot, -1);
  memset(&st->keys[slot], 0, sizeof st->keys[slot]);
  gkp__strlcpy(st->keys[slot].id, id, sizeof st->keys[slot].id);
  gkp__strlcpy(st->keys[slot].project, project, sizeof st->keys[slot].project);
  st->keys[slot].used = 1;
  gkp__store_commit(st);
  return slot;
}

int gkp__store_attach_pm(gkp__store *st, const char *project, const char *model, gkp_error *err) {
  int slot = gkp__store_find_pm(st, project, model);
  if (slot >= 0) {
    return slot;
  }
  if (st->hdr->npm >= GKP__MAX_PM) {
    return gkp__err(err, -ENOSPC,
                    "%s: the state file already tracks %d project/model pairs; move it aside "
                    "to start afresh",
                    st->path, GKP__MAX_PM);
  }
  slot = (int)st->hdr->npm;
  st->hdr->npm++;
  gkp__store_change(st, -1, slot);
  gkp__pm_rec *p = &st->pms[slot];
  memset(p, 0, sizeof *p);
  gkp__strlcpy(p->project, project, sizeof p->project);
  gkp__strlcpy(p->model, model, sizeof p->model);
  p->learned[0] = p->learned[1] = p->learned[2] = -1;
  p->used = 1;
  gkp__store_commit(st);
  return slot;
}
