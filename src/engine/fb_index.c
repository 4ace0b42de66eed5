/*
 * fb_index.c - the mapped-file backend's per-process indexes (configured
 * key -> slot, (project, model) -> slot, slot -> configured key), the
 * liveness of lease holders, and its transactions.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/timeutil.h"
#include "common/util.h"
#include "engine/file_backend.h"

const gkp__pm_counts *empty_pm(void) {
  static gkp__pm_counts e = {.learned = {-1, -1, -1}};
  return &e;
}

/* ---- the index ------------------------------------------------------------------------ */

static uint64_t hash2(const char *a, const char *b) {
  uint64_t h = 1469598103934665603ull;
  for (; *a != '\0'; a++) {
    h = (h ^ (unsigned char)*a) * 1099511628211ull;
  }
  h = (h ^ 0xff) * 1099511628211ull;
  for (; b != NULL && *b != '\0'; b++) {
    h = (h ^ (unsigned char)*b) * 1099511628211ull;
  }
  return h;
}

int sindex_init(sindex *x, size_t n) {
  size_t cap = 16;
  while (cap < n * 2) {
    cap *= 2;
  }
  free(x->slot);
  x->slot = malloc(sizeof(int) * cap);
  if (x->slot == NULL) {
    x->mask = 0;
    return -ENOMEM;
  }
  memset(x->slot, 0xff, sizeof(int) * cap);
  x->mask = cap - 1;
  x->n = 0;
  return 0;
}

/* Finds (a, b) with `same` comparing a stored value; returns the value or
 * -1, and in *pos where it is or would go. */

int sindex_find(const sindex *x, const void *ctx, same_fn same, const char *a, const char *b,
                size_t *pos) {
  size_t i = (size_t)hash2(a, b) & x->mask;
  while (x->slot[i] != -1) {
    if (same(ctx, x->slot[i], a, b)) {
      *pos = i;
      return x->slot[i];
    }
    i = (i + 1) & x->mask;
  }
  *pos = i;
  return -1;
}

int same_cfg_key(const void *ctx, int v, const char *a, const char *b) {
  const gkp__config *cfg = ctx;
  (void)b;
  return strcmp(cfg->keys[v].id, a) == 0;
}

static int same_key_slot(const void *ctx, int v, const char *a, const char *b) {
  const gkp__store *st = ctx;
  (void)b;
  return strcmp(st->keys[v].id, a) == 0;
}

static int same_pm(const void *ctx, int v, const char *a, const char *b) {
  const gkp__store *st = ctx;
  return strcmp(st->pms[v].project, a) == 0 && strcmp(st->pms[v].model, b) == 0;
}

/* ---- small helpers ------------------------------------------------------------------------ */

int64_t fb_now(const fb *f) {
  return f->clock != NULL ? f->clock(f->clock_ud) : gkp__now_ms();
}

uint64_t rnd(fb *f) {
  uint64_t x = f->rng;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  f->rng = x;
  return x;
}

int model_index(const gkp__config *cfg, const char *model) {
  for (size_t i = 0; model != NULL && i < cfg->nmodels; i++) {
    if (strcmp(cfg->models[i].id, model) == 0) {
      return (int)i;
    }
  }
  return -1;
}

int cfg_key_index(const fb *f, const char *id) {
  size_t pos;
  if (id == NULL || f->cfg_keys.slot == NULL) {
    return -1;
  }
  return sindex_find(&f->cfg_keys, f->cfg, same_cfg_key, id, NULL, &pos);
}

int own_add(fb *f, uint64_t id) {
  if (f->nown == f->capown) {
    size_t cap = f->capown ? f->capown * 2 : 16;
    uint64_t *n = realloc(f->own, cap * sizeof *n);
    if (n == NULL) {
      return -ENOMEM;
    }
    f->own = n;
    f->capown = cap;
  }
  f->own[f->nown++] = id;
  return 0;
}

void own_remove(fb *f, uint64_t id) {
  for (size_t i = 0; i < f->nown; i++) {
    if (f->own[i] == id) {
      f->own[i] = f->own[--f->nown];
      return;
    }
  }
}

/* ---- indexes -------------------------------------------------------------------------------- */

/* Adds pm records appended since the index was built (all of them again,
 * in a larger table, when it would be more than half full). */
void index_new_pms(fb *f) {
  gkp__store *st = f->st;
  uint32_t npm = st->hdr->lay.npm;
  if ((f->pms.n + (npm - f->indexed_npm) + 1) * 2 > f->pms.mask + 1) {
    if (sindex_init(&f->pms, (size_t)npm * 2) != 0) {
      return; /* lookups miss: records are created again, never wrong */
    }
    f->indexed_npm = 0;
  }
  while (f->indexed_npm < npm) {
    uint32_t s = f->indexed_npm++;
    size_t pos;
    if (st->pms[s].used &&
        sindex_find(&f->pms, st, same_pm, st->pms[s].project, st->pms[s].model, &pos) < 0) {
      f->pms.slot[pos] = (int)s;
      f->pms.n++;
    }
  }
}

/* The pm slot of (project, model), or -1. */
int find_pm(fb *f, const char *project, const char *model) {
  size_t pos;
  int s = sindex_find(&f->pms, f->st, same_pm, project, model, &pos);
  if (s < 0 && f->indexed_npm < f->st->hdr->lay.npm) {
    index_new_pms(f);
    s = sindex_find(&f->pms, f->st, same_pm, project, model, &pos);
  }
  return s;
}

/* The pm slot of (cfg key ki, model mi), or -1 if it has no record yet. */
int pm_slot_of(fb *f, int ki, int mi) {
  int *c = &f->pm_cache[(size_t)ki * f->cfg->nmodels + (size_t)mi];
  if (*c < 0) {
    *c = find_pm(f, f->cfg->keys[ki].project, f->cfg->models[mi].id);
  }
  return *c;
}

/* The pm slot, created if needed. */
int pm_attach(fb *f, int ki, int mi, gkp_error *err) {
  int s = pm_slot_of(f, ki, mi);
  if (s < 0) {
    s = gkp__store_new_pm(f->st, f->cfg->keys[ki].project, f->cfg->models[mi].id, -1, err);
    if (s >= 0) {
      size_t pos;
      index_new_pms(f);
      if (sindex_find(&f->pms, f->st, same_pm, f->st->pms[s].project, f->st->pms[s].model, &pos) <
          0) {
        f->pms.slot[pos] = s;
      }
      f->pm_cache[(size_t)ki * f->cfg->nmodels + (size_t)mi] = s;
    }
  }
  return s;
}

/* Whether the holder of a lease may be running (gkp__owner_alive, with
 * recent answers remembered). */
int holder_alive(fb *f, const gkp__owner *o) {
  int64_t mono = gkp__mono_ms();
  /* A holder of this namespace whose pid is free is gone: that costs one
   * system call and is never remembered. */
  if (o->boot != 0 && o->boot == f->self.boot && o->pidns != 0 && o->pidns == f->self.pidns &&
      o->pid > 0 && o->pid != f->self.pid && kill(o->pid, 0) != 0 && errno == ESRCH) {
    return 0;
  }
  for (unsigned i = 0; i < ALIVE_CACHE; i++) {
    if (f->alive[i].at_ms != 0 && mono - f->alive[i].at_ms < ALIVE_FRESH_MS &&
        gkp__owner_same(&f->alive[i].o, o)) {
      return 1;
    }
  }
  if (!gkp__owner_alive(o, &f->self)) {
    return 0;
  }
  f->alive[f->alive_next % ALIVE_CACHE].o = *o;
  f->alive[f->alive_next % ALIVE_CACHE].at_ms = mono;
  f->alive_next++;
  return 1;
}

/* Whether a lease's time has run out: on the wall clock, and on the boot
 * clock too, which no wall-clock step moves (unless its deadline is not of
 * this boot: further away than a whole lease lifetime). */
static int lease_expired(const fb *f, const gkp__lease_rec *l, int64_t now) {
  if (l->expires_ms > now) {
    return 0;
  }
  int64_t boot = gkp__boot_ms();
  int boot_valid = l->boot_expires_ms > 0 && l->boot_expires_ms - boot <= LEASE_TTL_MS;
  return !boot_valid || l->boot_expires_ms <= boot;
}

/* Whether a lease is still held: not expired, and its holder not gone. */
int lease_live(fb *f, const gkp__lease_rec *l, int64_t now) {
  return l->id != 0 && !lease_expired(f, l, now) && holder_alive(f, &l->owner);
}

int key_has_live_lease(fb *f, int s, int64_t now) {
  const gkp__key_rec *k = &f->st->keys[s];
  for (int i = 0; k->nleases > 0 && i < GKP__MAX_LEASES; i++) {
    if (lease_live(f, &k->leases[i], now)) {
      return 1;
    }
  }
  return 0;
}

/*
 * Rebuilds every per-process index for the attached configuration: finds or
 * creates each configured key's record (reusing freed slots), and with
 * `reclaim` frees the records of keys the configuration no longer names
 * (unless a lease on them is still alive).  Inside a transaction.
 */
int rebuild(fb *f, int reclaim, gkp_error *err) {
  gkp__store *st = f->st;
  const gkp__config *cfg = f->cfg;
  size_t nk = cfg->nkeys, nm = cfg->nmodels;
  sindex ids = {0};
  int *freed = NULL, nfreed = 0, rc = 0;
  int64_t now = fb_now(f);

  free(f->key_slot);
  free(f->pm_cache);
  forget_tpm(f);
  f->key_slot = calloc(nk + 1, sizeof(int));
  f->pm_cache = malloc(sizeof(int) * (nk * nm + 1));
  freed = malloc(sizeof(int) * (st->hdr->lay.nkeys + 1));
  if (f->key_slot == NULL || f->pm_cache == NULL || freed == NULL ||
      sindex_init(&ids, st->hdr->lay.nkeys) != 0 || sindex_init(&f->pms, st->hdr->lay.npm) != 0) {
    rc = gkp__err(err, -ENOMEM, "out of memory");
    goto out;
  }
  memset(f->pm_cache, 0xff, sizeof(int) * (nk * nm + 1));
  f->indexed_npm = 0;
  index_new_pms(f);
  /* Key records by id (keys are unique by id within the file). */
  for (uint32_t s = 0; s < st->hdr->lay.nkeys; s++) {
    size_t pos;
    if (!st->keys[s].used) {
      freed[nfreed++] = (int)s;
      continue;
    }
    int ci = cfg_key_index(f, st->keys[s].id);
    if (ci < 0 && reclaim && !key_has_live_lease(f, (int)s, now)) {
      gkp__store_free_key(st, (int)s);
      freed[nfreed++] = (int)s;
      continue;
    }
    if (sindex_find(&ids, st, same_key_slot, st->keys[s].id, NULL, &pos) < 0) {
      ids.slot[pos] = (int)s;
    }
  }
  for (size_t i = 0; i < nk; i++) {
    size_t pos;
    int s = sindex_find(&ids, st, same_key_slot, cfg->keys[i].id, NULL, &pos);
    if (s < 0) {
      s = gkp__store_new_key(st, cfg->keys[i].id, cfg->keys[i].project,
                             nfreed > 0 ? freed[--nfreed] : -1, err);
      if (s < 0) {
        rc = s;
        goto out;
      }
    } else if (strcmp(st->keys[s].project, cfg->keys[i].project) != 0) {
      gkp__store_save_recs(st, s, -1);
      gkp__strlcpy(st->keys[s].project, cfg->keys[i].project, sizeof st->keys[s].project);
      gkp__store_commit(st);
    }
    f->key_slot[i] = s;
  }
  free(f->cfg_of_slot);
  f->ncfg_of_slot = st->hdr->lay.nkeys;
  f->cfg_of_slot = malloc(sizeof(int) * (f->ncfg_of_slot + 1));
  if (f->cfg_of_slot == NULL) {
    f->ncfg_of_slot = 0;
    rc = gkp__err(err, -ENOMEM, "out of memory");
    goto out;
  }
  memset(f->cfg_of_slot, 0xff, sizeof(int) * (f->ncfg_of_slot + 1));
  for (size_t i = 0; i < nk; i++) {
    f->cfg_of_slot[f->key_slot[i]] = (int)i;
  }
  gkp__store_lru_repair(st);
  gkp__store_layout_seen(st);
out:
  free(ids.slot);
  free(freed);
  return rc;
}

/* Takes the store's lock, bringing the indexes up to date. */
int begin(fb *f, gkp_error *err) {
  int rc = gkp__store_lock(f->st, err);
  if (rc == 1) {
    rc = rebuild(f, 0, err);
    if (rc != 0) {
      gkp__store_unlock(f->st);
    }
  }
  return rc;
}

void end(fb *f) {
  gkp__store_unlock(f->st);
}

/* Removes the leases of key slot s that are certainly dead; returns how many
 * remain alive. */
int reap(fb *f, int s, int64_t now, int *reaped) {
  gkp__key_rec *k = &f->st->keys[s];
  int live = 0;
  for (int i = 0; k->nleases > 0 && i < GKP__MAX_LEASES; i++) {
    gkp__lease_rec *l = &k->leases[i];
    if (l->id == 0) {
      continue;
    }
    if (lease_live(f, l, now)) {
      live++;
      continue;
    }
    gkp__store_save(f->st, l, sizeof *l);
    gkp__store_save(f->st, &k->nleases, sizeof k->nleases);
    memset(l, 0, sizeof *l);
    k->nleases--;
    gkp__store_commit(f->st);
    if (reaped != NULL) {
      (*reaped)++;
    }
  }
  return live;
}
