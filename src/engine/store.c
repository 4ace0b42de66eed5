/*
 * store.c - the mapped state file: mapping, the undo journal, the LRU links,
 * transactions and the records' growth.  Opening, creating and upgrading are
 * in store_open.c; validation and the file-system check in store_check.c.
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
#include <sys/vfs.h>
#include <unistd.h>

#include "common/err.h"
#include "common/timeutil.h"
#include "common/util.h"
#include "engine/store_impl.h"
#include "engine/store_v1.h"

/* Keeps the compiler from moving stores across a journal step.  A killed
 * process cannot tear an aligned word store, and the kernel keeps every
 * store it completed, so ordering in program order is all that matters. */
#define STORE_FENCE() atomic_signal_fence(memory_order_seq_cst)

/* ---- mapping ---------------------------------------------------------------------- */

_Static_assert(GKP__CHANGES_OFF + sizeof(gkp__changes) <=
                   (sizeof(gkp__store_hdr) + PAGE - 1) / PAGE * PAGE,
               "the change log fits in the header's last page");

static void set_regions(gkp__store *st) {
  const gkp__layout *l = &st->hdr->lay;
  uint64_t end = GKP__CHANGES_OFF + sizeof(gkp__changes);
  st->keys = (gkp__key_rec *)((char *)st->hdr + l->key_off);
  st->pms = (gkp__pm_rec *)((char *)st->hdr + l->pm_off);
  st->changes = l->key_off >= end && l->pm_off >= end && st->size >= end
                    ? (gkp__changes *)((char *)st->hdr + GKP__CHANGES_OFF)
                    : NULL;
}

void gkp__store_unmap(gkp__store *st) {
  if (st->hdr != NULL) {
    munmap(st->hdr, st->size);
    st->hdr = NULL;
    st->keys = NULL;
    st->pms = NULL;
    st->size = 0;
  }
}

/* Maps `size` bytes of the open file. */
int gkp__store_map_size(gkp__store *st, size_t size, gkp_error *err) {
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, st->fd, 0);
  if (p == MAP_FAILED) {
    return gkp__err(err, -errno, "%s: cannot map the state file: %s", st->path, strerror(errno));
  }
  gkp__store_unmap(st);
  st->hdr = p;
  st->size = size;
  set_regions(st);
  return 0;
}

/* ---- the journal ------------------------------------------------------------------- */

void gkp__store_save(gkp__store *st, const void *p, size_t len) {
  gkp__journal *j = &st->hdr->journal;
  uint64_t off = (uint64_t)((const char *)p - (const char *)st->hdr);
  if (j->n >= GKP__JOURNAL_ENTRIES || len > GKP__JOURNAL_BYTES - j->bytes) {
    abort(); /* a change larger than the journal: a bug, never data */
  }
  memcpy(j->data + j->bytes, p, len);
  j->e[j->n].off = off;
  j->e[j->n].len = (uint32_t)len;
  j->e[j->n].data_off = j->bytes;
  j->bytes += (uint32_t)len;
  STORE_FENCE();
  j->n++;
  STORE_FENCE();
}

/* Appends one entry to the change log. */
static void change_add(gkp__changes *c, uint64_t gen, uint32_t tag) {
  gkp__change *e = &c->e[c->n % GKP__CHANGES];
  e->generation = gen;
  e->tag = tag;
  STORE_FENCE();
  c->n++;
  STORE_FENCE();
}

/* The record a journaled range lies in: a tag of gkp__changes. */
static uint32_t change_tag(const gkp__store *st, const gkp__jentry *e) {
  const gkp__layout *l = &st->hdr->lay;
  uint64_t kend = l->key_off + (uint64_t)l->key_cap * sizeof(gkp__key_rec);
  uint64_t pend = l->pm_off + (uint64_t)l->pm_cap * sizeof(gkp__pm_rec);
  if (e->off >= l->key_off && e->off < kend) {
    uint64_t s = (e->off - l->key_off) / sizeof(gkp__key_rec);
    return (e->off + e->len - l->key_off - 1) / sizeof(gkp__key_rec) == s ? (uint32_t)s
                                                                           : GKP__CHANGE_ALL;
  }
  if (e->off >= l->pm_off && e->off < pend) {
    uint64_t s = (e->off - l->pm_off) / sizeof(gkp__pm_rec);
    return (e->off + e->len - l->pm_off - 1) / sizeof(gkp__pm_rec) == s
               ? (uint32_t)s | GKP__CHANGE_PM
               : GKP__CHANGE_ALL;
  }
  return GKP__CHANGE_NONE;
}

/* Names the records the current change saved in the change log, under the
 * generation just bumped (see store.h). */
static void log_changes(gkp__store *st) {
  const gkp__journal *j = &st->hdr->journal;
  uint32_t tags[GKP__JOURNAL_ENTRIES];
  uint32_t n = 0;
  if (st->changes == NULL) {
    return;
  }
  for (uint32_t i = 0; i < j->n && i < GKP__JOURNAL_ENTRIES; i++) {
    uint32_t tag = change_tag(st, &j->e[i]), seen = 0;
    for (uint32_t k = 0; k < n && !seen; k++) {
      seen = tags[k] == tag;
    }
    if (!seen && tag != GKP__CHANGE_NONE) {
      tags[n++] = tag;
    }
  }
  if (n == 0) {
    tags[n++] = GKP__CHANGE_NONE;
  }
  for (uint32_t k = 0; k < n; k++) {
    change_add(st->changes, st->hdr->generation, tags[k]);
  }
}

void gkp__store_commit(gkp__store *st) {
  STORE_FENCE();
  st->hdr->generation++;
  STORE_FENCE();
  log_changes(st);
  st->hdr->journal.n = 0;
  STORE_FENCE();
  st->hdr->journal.bytes = 0;
}

/* Undoes the change a dead process left half done, newest range first. */
void gkp__store_rollback(gkp__store *st) {
  gkp__journal *j = &st->hdr->journal;
  while (j->n > 0) {
    const gkp__jentry *e = &j->e[j->n - 1];
    memcpy((char *)st->hdr + e->off, j->data + e->data_off, e->len);
    STORE_FENCE();
    j->n--;
    STORE_FENCE();
  }
  j->bytes = 0;
}

void gkp__store_save_recs(gkp__store *st, int key_slot, int pm_slot) {
  if (key_slot >= 0) {
    gkp__key_rec *k = &st->keys[key_slot];
    gkp__store_save(st, &k->used, sizeof *k - offsetof(gkp__key_rec, used));
  }
  if (pm_slot >= 0) {
    gkp__store_save(st, &st->pms[pm_slot], sizeof st->pms[pm_slot]);
  }
}

/* ---- LRU links ---------------------------------------------------------------------- */

static int cmp_lru(const void *a, const void *b, void *ud) {
  const gkp__key_rec *keys = ud;
  int x = *(const int *)a, y = *(const int *)b;
  int64_t ux = keys[x].c.last_used_ms, uy = keys[y].c.last_used_ms;
  if (ux != uy) {
    return ux < uy ? -1 : 1;
  }
  return (x > y) - (x < y);
}

/* Relinks every used key, least recently used first (ties: slot order). */
void gkp__store_lru_rebuild(gkp__store *st) {
  gkp__store_hdr *h = st->hdr;
  uint32_t n = 0;
  int *order = malloc(sizeof(int) * (h->lay.nkeys + 1));
  h->lru_dirty = 1;
  STORE_FENCE();
  if (order == NULL) {
    return; /* stays dirty: the next transaction tries again */
  }
  for (uint32_t i = 0; i < h->lay.nkeys; i++) {
    if (st->keys[i].used) {
      order[n++] = (int)i;
    } else {
      st->keys[i].lru_prev = st->keys[i].lru_next = -1;
    }
  }
  qsort_r(order, n, sizeof *order, cmp_lru, st->keys);
  for (uint32_t i = 0; i < n; i++) {
    st->keys[order[i]].lru_prev = i > 0 ? order[i - 1] : -1;
    st->keys[order[i]].lru_next = i + 1 < n ? order[i + 1] : -1;
  }
  h->lru_head = n > 0 ? order[0] : -1;
  h->lru_tail = n > 0 ? order[n - 1] : -1;
  free(order);
  STORE_FENCE();
  h->lru_dirty = 0;
}

/* Whether the links form one list of exactly the used keys. */
int gkp__store_lru_ok(const gkp__store *st) {
  const gkp__store_hdr *h = st->hdr;
  uint32_t used = 0, seen = 0;
  int prev = -1;
  for (uint32_t i = 0; i < h->lay.nkeys; i++) {
    used += st->keys[i].used;
  }
  for (int s = h->lru_head; s != -1; s = st->keys[s].lru_next) {
    if (s < 0 || (uint32_t)s >= h->lay.nkeys || !st->keys[s].used || st->keys[s].lru_prev != prev ||
        ++seen > used) {
      return 0;
    }
    prev = s;
  }
  return seen == used && h->lru_tail == prev;
}

static void lru_unlink(gkp__store *st, int s) {
  gkp__key_rec *k = &st->keys[s];
  if (k->lru_prev >= 0) {
    st->keys[k->lru_prev].lru_next = k->lru_next;
  } else {
    st->hdr->lru_head = k->lru_next;
  }
  if (k->lru_next >= 0) {
    st->keys[k->lru_next].lru_prev = k->lru_prev;
  } else {
    st->hdr->lru_tail = k->lru_prev;
  }
  k->lru_prev = k->lru_next = -1;
}

static void lru_append(gkp__store *st, int s) {
  gkp__key_rec *k = &st->keys[s];
  k->lru_prev = st->hdr->lru_tail;
  k->lru_next = -1;
  if (st->hdr->lru_tail >= 0) {
    st->keys[st->hdr->lru_tail].lru_next = s;
  } else {
    st->hdr->lru_head = s;
  }
  st->hdr->lru_tail = s;
}

void gkp__store_lru_repair(gkp__store *st) {
  if (st->hdr->lru_dirty) {
    gkp__store_lru_rebuild(st);
  }
}

void gkp__store_lru_touch(gkp__store *st, int slot) {
  if (st->hdr->lru_tail == slot) {
    return;
  }
  st->hdr->lru_dirty = 1;
  STORE_FENCE();
  lru_unlink(st, slot);
  lru_append(st, slot);
  STORE_FENCE();
  st->hdr->lru_dirty = 0;
}

/* ---- transactions ------------------------------------------------------------------- */

static int flock_ex(gkp__store *st, gkp_error *err) {
  while (flock(st->fd, LOCK_EX) != 0) {
    if (errno != EINTR) {
      return gkp__err(err, -errno, "%s: cannot lock the state file: %s", st->path, strerror(errno));
    }
  }
  return 0;
}

/* Follows the file now at the path after this one was moved aside. */
static int follow_move(gkp__store *st, gkp_error *err) {
  flock(st->fd, LOCK_UN);
  gkp__store_unmap(st);
  close(st->fd);
  st->fd = -1;
  st->moved = 1;
  return gkp__store_open_path(st, gkp__now_ms(), NULL, NULL, err);
}

int gkp__store_lock(gkp__store *st, gkp_error *err) {
  int rc;
  pthread_mutex_lock(&st->mu);
  st->locks++;
  if (st->fd < 0) {
    rc = gkp__store_open_path(st, gkp__now_ms(), NULL, NULL, err);
    if (rc != 0) {
      pthread_mutex_unlock(&st->mu);
      return rc;
    }
  }
  for (;;) {
    rc = flock_ex(st, err);
    if (rc == 0 && st->hdr->retired) {
      rc = follow_move(st, err);
      if (rc == 0) {
        continue;
      }
    }
    break;
  }
  if (rc == 0 && st->hdr->lay.file_size != st->size) {
    rc = gkp__store_map_size(st, st->hdr->lay.file_size, err);
  }
  if (rc != 0) {
    if (st->fd >= 0) {
      flock(st->fd, LOCK_UN);
    }
    pthread_mutex_unlock(&st->mu);
    return rc;
  }
  gkp__store_rollback(st);
  if (st->hdr->lay.file_size != st->size) { /* a grower died before committing */
    rc = gkp__store_map_size(st, st->hdr->lay.file_size, err);
    if (rc != 0) {
      flock(st->fd, LOCK_UN);
      pthread_mutex_unlock(&st->mu);
      return rc;
    }
  }
  if (st->hdr->lru_dirty) {
    gkp__store_lru_rebuild(st);
  }
  gkp__store_repair_lease_ids(st);
  return st->moved || st->hdr->lay.layout_gen != st->seen_layout ? 1 : 0;
}

void gkp__store_unlock(gkp__store *st) {
  flock(st->fd, LOCK_UN);
  pthread_mutex_unlock(&st->mu);
}

void gkp__store_layout_seen(gkp__store *st) {
  st->seen_layout = st->hdr->lay.layout_gen;
  st->moved = 0;
}

/* ---- records ------------------------------------------------------------------------- */

/* Moves the key (which != 0) or pm region to a new one twice as large at the
 * end of the file.  Returns 0 or a negative errno. */
static int grow(gkp__store *st, int which_keys, gkp_error *err) {
  gkp__layout *l = &st->hdr->lay;
  size_t rec = which_keys ? sizeof(gkp__key_rec) : sizeof(gkp__pm_rec);
  uint32_t cap = which_keys ? l->key_cap : l->pm_cap;
  uint32_t limit = which_keys ? GKP__MAX_KEYS_LIMIT : GKP__MAX_PM_LIMIT;
  uint64_t off = round_up(l->file_size), old_off = which_keys ? l->key_off : l->pm_off;
  uint64_t ncap = (uint64_t)cap * 2, size = round_up(off + ncap * rec);
  int rc;

  if (ncap > limit) {
    return gkp__err(err, -ENOSPC, "%s: the state file cannot track more than %u %s", st->path,
                    limit, which_keys ? "keys" : "project/model pairs");
  }
  rc = posix_fallocate(st->fd, 0, (off_t)size);
  if (rc != 0) {
    return gkp__err(err, -rc, "%s: cannot grow the state file: %s", st->path, strerror(rc));
  }
  rc = gkp__store_map_size(st, size, err);
  if (rc != 0) {
    return rc;
  }
  l = &st->hdr->lay;
  memcpy((char *)st->hdr + off, (char *)st->hdr + old_off, (size_t)cap * rec);
  gkp__store_save(st, l, sizeof *l);
  if (which_keys) {
    l->key_off = off;
    l->key_cap = (uint32_t)ncap;
  } else {
    l->pm_off = off;
    l->pm_cap = (uint32_t)ncap;
  }
  l->file_size = size;
  l->layout_gen++;
  gkp__store_commit(st);
  set_regions(st);
  return 0;
}

int gkp__store_new_key(gkp__store *st, const char *id, const char *project, int reuse,
                       gkp_error *err) {
  gkp__layout *l = &st->hdr->lay;
  int slot = reuse;
  if (slot < 0 && l->nkeys >= l->key_cap) {
    int rc = grow(st, 1, err);
    if (rc != 0) {
      return rc;
    }
    l = &st->hdr->lay;
  }
  /* A new key has never been used: the links are rebuilt to put it first. */
  st->hdr->lru_dirty = 1;
  gkp__store_save(st, l, sizeof *l);
  if (slot < 0) {
    slot = (int)l->nkeys++; /* appended: other processes' indexes stay valid */
  } else {
    l->layout_gen++; /* a reused slot: indexes that knew it as free are stale */
  }
  gkp__key_rec *k = &st->keys[slot];
  gkp__store_save_recs(st, slot, -1);
  memset(&k->used, 0, sizeof *k - offsetof(gkp__key_rec, used));
  gkp__strlcpy(k->id, id, sizeof k->id);
  gkp__strlcpy(k->project, project, sizeof k->project);
  k->used = 1;
  gkp__store_commit(st);
  return slot;
}

int gkp__store_new_pm(gkp__store *st, const char *project, const char *model, int reuse,
                      gkp_error *err) {
  gkp__layout *l = &st->hdr->lay;
  int slot = reuse;
  if (slot < 0 && l->npm >= l->pm_cap) {
    int rc = grow(st, 0, err);
    if (rc != 0) {
      return rc;
    }
    l = &st->hdr->lay;
  }
  gkp__store_save(st, l, sizeof *l);
  if (slot < 0) {
    slot = (int)l->npm++; /* appended: other processes' indexes stay valid */
  } else {
    l->layout_gen++; /* a reused slot: indexes that knew it as free are stale */
  }
  gkp__pm_rec *p = &st->pms[slot];
  gkp__store_save(st, p, sizeof *p);
  memset(p, 0, sizeof *p);
  gkp__pm_counts_init(&p->c);
  gkp__strlcpy(p->project, project, sizeof p->project);
  gkp__strlcpy(p->model, model, sizeof p->model);
  p->used = 1;
  gkp__store_commit(st);
  return slot;
}

void gkp__store_free_key(gkp__store *st, int slot) {
  st->hdr->lru_dirty = 1;
  gkp__store_save(st, &st->hdr->lay, sizeof st->hdr->lay);
  gkp__store_save(st, &st->keys[slot].used, sizeof st->keys[slot].used);
  st->keys[slot].used = 0;
  st->hdr->lay.layout_gen++;
  gkp__store_commit(st);
}

void gkp__store_free_pm(gkp__store *st, int slot) {
  gkp__store_save(st, &st->hdr->lay, sizeof st->hdr->lay);
  gkp__store_save(st, &st->pms[slot].used, sizeof st->pms[slot].used);
  st->pms[slot].used = 0;
  st->hdr->lay.layout_gen++;
  gkp__store_commit(st);
}
