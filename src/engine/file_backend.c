/*
 * file_backend.c - the backend verbs over the mapped state file.
 *
 * Every verb is one transaction of the store.  The backend keeps, per
 * process, indexes from the attached configuration to store slots (rebuilt
 * when the store says its layout changed) and walks the keys in the file's
 * least recently used order, stopping at the first eligible one.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/timeutil.h"
#include "common/util.h"
#include "engine/backend.h"
#include "engine/store.h"

/* Leases live this long unless renewed (f->lease_ttl_ms: a test may set a
 * shorter lifetime). */
#define LEASE_TTL_MS (f->lease_ttl_ms)
/* A holder found alive is taken as alive for this long (a dead one's key
 * frees up at most this much later than it could). */
#define ALIVE_CACHE 16
#define ALIVE_FRESH_MS 1000

/* An open-addressing index from one or two strings to a slot. */
typedef struct sindex {
  int *slot; /* -1: empty */
  size_t mask;
  size_t n; /* entries */
} sindex;

typedef struct fb {
  gkp__backend base;
  gkp__store *st;
  gkp_clock_fn clock;
  void *clock_ud;
  gkp_log_fn log;
  void *log_ud;
  gkp__owner self;
  uint64_t rng;
  int64_t lease_ttl_ms;
  /* Below: guarded by the store's mutex. */
  const gkp__config *cfg; /* attached; a reference */
  sindex cfg_keys;        /* key id -> cfg index */
  int *key_slot;          /* cfg index -> key slot */
  int *cfg_of_slot;       /* key slot -> cfg index, -1: not ours */
  size_t ncfg_of_slot;
  int *pm_cache; /* cfg key * nmodels + model -> pm slot, -1: none yet */
  sindex pms;    /* (project, model) -> pm slot, for the first `indexed_npm` */
  uint32_t indexed_npm;
  uint64_t *own; /* ids of leases this process holds */
  size_t nown, capown;
  /* Holders found alive lately: reading /proc for every busy key on every
   * reservation would cost more than the reservation. */
  struct alive_seen {
    gkp__owner o;
    int64_t at_ms; /* monotonic */
  } alive[ALIVE_CACHE];
  unsigned alive_next;
} fb;

static const gkp__pm_counts *empty_pm(void) {
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

static int sindex_init(sindex *x, size_t n) {
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
typedef int (*same_fn)(const void *ctx, int v, const char *a, const char *b);

static int sindex_find(const sindex *x, const void *ctx, same_fn same, const char *a, const char *b,
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

static int same_cfg_key(const void *ctx, int v, const char *a, const char *b) {
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

static int64_t fb_now(const fb *f) {
  return f->clock != NULL ? f->clock(f->clock_ud) : gkp__now_ms();
}

static uint64_t rnd(fb *f) {
  uint64_t x = f->rng;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  f->rng = x;
  return x;
}

static int model_index(const gkp__config *cfg, const char *model) {
  for (size_t i = 0; model != NULL && i < cfg->nmodels; i++) {
    if (strcmp(cfg->models[i].id, model) == 0) {
      return (int)i;
    }
  }
  return -1;
}

static int cfg_key_index(const fb *f, const char *id) {
  size_t pos;
  if (id == NULL || f->cfg_keys.slot == NULL) {
    return -1;
  }
  return sindex_find(&f->cfg_keys, f->cfg, same_cfg_key, id, NULL, &pos);
}

static int own_add(fb *f, uint64_t id) {
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

static void own_remove(fb *f, uint64_t id) {
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
static void index_new_pms(fb *f) {
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
static int find_pm(fb *f, const char *project, const char *model) {
  size_t pos;
  int s = sindex_find(&f->pms, f->st, same_pm, project, model, &pos);
  if (s < 0 && f->indexed_npm < f->st->hdr->lay.npm) {
    index_new_pms(f);
    s = sindex_find(&f->pms, f->st, same_pm, project, model, &pos);
  }
  return s;
}

/* The pm slot of (cfg key ki, model mi), or -1 if it has no record yet. */
static int pm_slot_of(fb *f, int ki, int mi) {
  int *c = &f->pm_cache[(size_t)ki * f->cfg->nmodels + (size_t)mi];
  if (*c < 0) {
    *c = find_pm(f, f->cfg->keys[ki].project, f->cfg->models[mi].id);
  }
  return *c;
}

/* The pm slot, created if needed. */
static int pm_attach(fb *f, int ki, int mi, gkp_error *err) {
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
static int holder_alive(fb *f, const gkp__owner *o) {
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
static int lease_live(fb *f, const gkp__lease_rec *l, int64_t now) {
  return l->id != 0 && !lease_expired(f, l, now) && holder_alive(f, &l->owner);
}

static int key_has_live_lease(fb *f, int s, int64_t now) {
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
static int rebuild(fb *f, int reclaim, gkp_error *err) {
  gkp__store *st = f->st;
  const gkp__config *cfg = f->cfg;
  size_t nk = cfg->nkeys, nm = cfg->nmodels;
  sindex ids = {0};
  int *freed = NULL, nfreed = 0, rc = 0;
  int64_t now = fb_now(f);

  free(f->key_slot);
  free(f->pm_cache);
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
static int begin(fb *f, gkp_error *err) {
  int rc = gkp__store_lock(f->st, err);
  if (rc == 1) {
    rc = rebuild(f, 0, err);
    if (rc != 0) {
      gkp__store_unlock(f->st);
    }
  }
  return rc;
}

static void end(fb *f) {
  gkp__store_unlock(f->st);
}

/* ---- attach ---------------------------------------------------------------------------------- */

static int fb_attach(gkp__backend *b, const gkp__config *cfg, int reload, gkp_error *err) {
  fb *f = (fb *)b;
  const gkp__config *old;
  sindex keys = {0};
  int rc;

  if (sindex_init(&keys, cfg->nkeys) != 0) {
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  for (size_t i = 0; i < cfg->nkeys; i++) {
    size_t pos;
    if (sindex_find(&keys, cfg, same_cfg_key, cfg->keys[i].id, NULL, &pos) < 0) {
      keys.slot[pos] = (int)i;
    }
  }
  rc = gkp__store_lock(f->st, err);
  if (rc < 0) {
    free(keys.slot);
    return rc;
  }
  old = f->cfg;
  sindex old_keys = f->cfg_keys;
  f->cfg = gkp__config_ref(cfg);
  f->cfg_keys = keys;
  rc = rebuild(f, reload, err);
  if (rc != 0 && old != NULL) { /* keep serving the configuration in use */
    gkp__config_unref(f->cfg);
    free(f->cfg_keys.slot);
    f->cfg = old;
    f->cfg_keys = old_keys;
    old = NULL;
    rebuild(f, 0, NULL);
  } else {
    free(old_keys.slot);
  }
  if (rc == 0 && reload) {
    /* A reload re-enables disabled keys: the user may have fixed them. */
    for (size_t i = 0; i < cfg->nkeys; i++) {
      gkp__key_rec *k = &f->st->keys[f->key_slot[i]];
      if (k->c.disabled) {
        gkp__store_save_recs(f->st, f->key_slot[i], -1);
        k->c.disabled = 0;
        k->c.disabled_reason[0] = '\0';
        gkp__store_commit(f->st);
      }
    }
  }
  end(f);
  if (old != NULL) {
    gkp__config_unref(old);
  }
  return rc;
}

/* ---- reserve --------------------------------------------------------------------------------- */

/* Removes the leases of key slot s that are certainly dead; returns how many
 * remain alive. */
static int reap(fb *f, int s, int64_t now, int *reaped) {
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

/* Whether cfg key ki can take a request now; *ready / *reason otherwise. */
static int eligible(fb *f, int ki, int mi, int64_t est, const gkp__instant *t, int64_t *ready,
                    int *reason) {
  int s = f->key_slot[ki];
  gkp__key_rec *k = &f->st->keys[s];
  int ps = pm_slot_of(f, ki, mi);
  const gkp__pm_counts *p = ps >= 0 ? &f->st->pms[ps].c : empty_pm();
  int max = f->cfg->keys[ki].max_inflight;

  if (ps >= 0 && gkp__window_from_future(&p->win, t)) {
    /* The wall clock stepped back: bring the window's buckets to the present
     * so that they expire a window from now, not a step from now. */
    gkp__store_save_recs(f->st, -1, ps);
    gkp__window_restamp(&f->st->pms[ps].c.win, t);
    gkp__store_commit(f->st);
  }
  gkp__key_fits(&k->c, p, &f->cfg->models[mi].limits, est, t, ready, reason);
  if (*reason == GKP_WAIT_NEVER) {
    return 0;
  }
  if ((int)k->nleases >= max && reap(f, s, t->now, NULL) >= max) {
    int64_t soonest = INT64_MAX;
    for (int i = 0; i < GKP__MAX_LEASES; i++) {
      if (k->leases[i].id != 0 && k->leases[i].expires_ms < soonest) {
        soonest = k->leases[i].expires_ms;
      }
    }
    /* A busy key usually frees up long before its lease expires: the
     * expiry is only an upper bound, reported when nothing else holds it. */
    if (*reason == GKP_WAIT_NONE) {
      *ready = soonest;
      *reason = GKP_WAIT_BUSY;
    }
  }
  return *reason == GKP_WAIT_NONE;
}

static const char *wait_words(int reason) {
  switch (reason) {
  case GKP_WAIT_BUSY:
    return "every key is busy";
  case GKP_WAIT_COOLDOWN:
    return "keys are cooling down";
  case GKP_WAIT_QUOTA:
    return "the quota is used up";
  default:
    return "no key can serve it";
  }
}

static int unknown_model(const fb *f, const char *model, gkp_error *err) {
  return gkp__err(err, -ENOENT, "unknown model '%s': add it under \"models\" in %s",
                  model != NULL ? model : "", f->cfg->path);
}

/* Reports that no key is eligible. */
static int no_key(fb *f, const char *model, int next_key, int64_t next, int reason, gkp_wait *wait,
                  gkp_error *err) {
  char when[40];
  if (wait != NULL) {
    wait->reason = reason;
    wait->next_ms = next;
    gkp__strlcpy(wait->next_key_id, next_key >= 0 ? f->cfg->keys[next_key].id : "",
                 sizeof wait->next_key_id);
  }
  if (next == INT64_MAX || next_key < 0) {
    return gkp__err(err, -EAGAIN, "no key can serve %s: %s (all %zu keys)", model,
                    wait_words(reason), f->cfg->nkeys);
  }
  return gkp__err(err, -EAGAIN, "no key is free for %s: %s; the first frees up at %s (%s)", model,
                  wait_words(reason), gkp__hms_utc(next, when, sizeof when),
                  f->cfg->keys[next_key].id);
}

/* Takes a lease on cfg key ki for model mi. */
static int take(fb *f, int ki, int mi, int64_t est, const gkp__instant *t, gkp_lease *out,
                gkp_error *err) {
  gkp__store *st = f->st;
  int s = f->key_slot[ki];
  int ps = pm_attach(f, ki, mi, err);
  gkp__key_rec *k = &st->keys[s];
  uint64_t id;
  int li = -1;

  if (ps < 0) {
    return ps;
  }
  for (int i = 0; i < GKP__MAX_LEASES && li < 0; i++) {
    li = k->leases[i].id == 0 ? i : -1;
  }
  if (li < 0 || own_add(f, st->hdr->next_lease_id) != 0) {
    return gkp__err(err, li < 0 ? -EAGAIN : -ENOMEM, "%s",
                    li < 0 ? "no lease slot" : "out of memory");
  }
  id = st->hdr->next_lease_id;
  gkp__store_save(st, &st->hdr->next_lease_id, sizeof st->hdr->next_lease_id);
  gkp__store_save(st, &k->nleases, sizeof k->nleases);
  gkp__store_save(st, &k->c, sizeof k->c);
  gkp__store_save(st, &k->leases[li], sizeof k->leases[li]);
  gkp__store_save(st, &st->pms[ps].c, offsetof(gkp__pm_counts, win) + offsetof(gkp__window, b));
  gkp__store_save(st, gkp__bucket_of(&st->pms[ps].c.win, t->now), sizeof(gkp__bucket));
  st->hdr->next_lease_id++;
  gkp__lease_rec *l = &k->leases[li];
  l->id = id;
  l->owner = f->self;
  l->started_ms = t->now;
  l->expires_ms = t->now + LEASE_TTL_MS;
  l->boot_expires_ms = gkp__boot_ms() + LEASE_TTL_MS;
  l->est_tokens = est;
  l->pm_slot = (uint32_t)ps;
  l->prev_used_ms = k->c.last_used_ms;
  k->nleases++;
  k->c.last_used_ms = t->now;
  k->c.requests_total++;
  if (gkp__window_from_future(&st->pms[ps].c.win, t)) {
    gkp__store_save(st, st->pms[ps].c.win.b, sizeof st->pms[ps].c.win.b);
  }
  l->day_ms = gkp__count_request(&st->pms[ps].c, t, est);
  gkp__store_commit(st);
  gkp__store_lru_touch(st, s);

  memset(out, 0, sizeof *out);
  out->id = id;
  out->started_ms = t->now;
  out->est_tokens = est;
  gkp__strlcpy(out->key_id, k->id, sizeof out->key_id);
  gkp__strlcpy(out->project, k->project, sizeof out->project);
  gkp__strlcpy(out->model, f->cfg->models[mi].id, sizeof out->model);
  return 0;
}

static int fb_reserve(gkp__backend *b, const char *model, int64_t est, gkp_lease *out,
                      gkp_wait *wait, gkp_error *err) {
  fb *f = (fb *)b;
  gkp__instant t;
  int64_t next = INT64_MAX;
  int mi, rc, next_key = -1, next_reason = GKP_WAIT_NONE;

  if ((rc = begin(f, err)) != 0) {
    return rc;
  }
  mi = model_index(f->cfg, model);
  if (mi < 0) {
    rc = unknown_model(f, model, err);
    end(f);
    return rc;
  }
  gkp__instant_at(&t, fb_now(f));
  for (int s = f->st->hdr->lru_head; s >= 0; s = f->st->keys[s].lru_next) {
    int ki = (size_t)s < f->ncfg_of_slot ? f->cfg_of_slot[s] : -1;
    int64_t ready;
    int reason;
    if (ki < 0) {
      continue;
    }
    if (eligible(f, ki, mi, est, &t, &ready, &reason)) {
      rc = take(f, ki, mi, est, &t, out, err);
      end(f);
      return rc;
    }
    if (next_key < 0 || ready < next) {
      next = ready;
      next_reason = reason;
      next_key = ki;
    }
  }
  rc = no_key(f, model, next_key, next, next_reason, wait, err);
  end(f);
  return rc;
}

/* ---- lease verbs ------------------------------------------------------------------------------
 */

/* Finds a lease of this process: its key slot and index, or -1. */
static int find_lease(fb *f, const gkp_lease *l, int *li) {
  gkp__store *st = f->st;
  int ki = cfg_key_index(f, l->key_id), s = -1;
  if (ki >= 0) {
    s = f->key_slot[ki];
  } else {
    for (uint32_t i = 0; i < st->hdr->lay.nkeys && s < 0; i++) {
      s = st->keys[i].used && strcmp(st->keys[i].id, l->key_id) == 0 ? (int)i : -1;
    }
  }
  if (s < 0) {
    return -1;
  }
  for (int i = 0; i < GKP__MAX_LEASES; i++) {
    const gkp__lease_rec *r = &st->keys[s].leases[i];
    if (r->id == l->id && gkp__owner_same(&r->owner, &f->self)) {
      *li = i;
      return s;
    }
  }
  return -1;
}

static int bad_lease(const gkp_lease *l, gkp_error *err) {
  if (l == NULL || l->id == 0) {
    return gkp__err(err, -EINVAL, "not a lease of this pool");
  }
  return 0;
}

static int fb_renew(gkp__backend *b, const gkp_lease *l, gkp_error *err) {
  fb *f = (fb *)b;
  int rc, li, s;
  if ((rc = bad_lease(l, err)) != 0 || (rc = begin(f, err)) != 0) {
    return rc;
  }
  s = find_lease(f, l, &li);
  if (s < 0) {
    rc = gkp__err(err, -ESTALE, "the lease on key '%s' was reclaimed", l->key_id);
  } else {
    gkp__lease_rec *r = &f->st->keys[s].leases[li];
    gkp__store_save(f->st, &r->expires_ms, sizeof r->expires_ms);
    gkp__store_save(f->st, &r->boot_expires_ms, sizeof r->boot_expires_ms);
    r->expires_ms = fb_now(f) + LEASE_TTL_MS;
    r->boot_expires_ms = gkp__boot_ms() + LEASE_TTL_MS;
    gkp__store_commit(f->st);
  }
  end(f);
  return rc;
}

static int fb_release(gkp__backend *b, const gkp_lease *l, int sent, gkp_error *err) {
  fb *f = (fb *)b;
  int rc, li, s;
  if ((rc = bad_lease(l, err)) != 0 || (rc = begin(f, err)) != 0) {
    return rc;
  }
  s = find_lease(f, l, &li);
  if (s >= 0) {
    gkp__key_rec *k = &f->st->keys[s];
    uint32_t ps = k->leases[li].pm_slot;
    int unsent = !sent && ps < f->st->hdr->lay.npm;
    gkp__store_save(f->st, &k->leases[li], sizeof k->leases[li]);
    gkp__store_save(f->st, &k->nleases, sizeof k->nleases);
    if (unsent) {
      gkp__store_save(f->st, &k->c, sizeof k->c);
      gkp__store_save_recs(f->st, -1, (int)ps);
      /* Nothing reached the server: as if the reservation never happened,
       * unless a later reservation has used the key since. */
      gkp__uncount_request(&f->st->pms[ps].c, l->started_ms, k->leases[li].day_ms, l->est_tokens);
      if (k->c.requests_total > 0) {
        k->c.requests_total--;
      }
      if (k->c.last_used_ms == l->started_ms) {
        k->c.last_used_ms = k->leases[li].prev_used_ms;
      }
    }
    memset(&k->leases[li], 0, sizeof k->leases[li]);
    k->nleases = k->nleases > 0 ? k->nleases - 1 : 0;
    gkp__store_commit(f->st);
  }
  own_remove(f, l->id);
  end(f);
  return 0;
}

static int fb_release_unreached(gkp__backend *b, const gkp_lease *l, const char *url,
                                const char *reason, gkp_error *err) {
  fb *f = (fb *)b;
  int rc = fb_release(b, l, 0, err);
  if (rc != 0 || (rc = begin(f, err)) != 0) {
    return rc;
  }
  gkp__store_hdr *h = f->st->hdr;
  int64_t now = fb_now(f), since = h->down_since_ms > 0 ? h->down_since_ms : now;
  h->down_since_ms = 0; /* strings first, the time last: see store.h */
  gkp__strlcpy(h->down_url, url != NULL ? url : "", sizeof h->down_url);
  gkp__strlcpy(h->down_reason, reason != NULL ? reason : "", sizeof h->down_reason);
  h->down_last_ms = now;
  h->down_since_ms = since;
  end(f);
  return 0;
}

static int64_t fb_endpoint_down(gkp__backend *b, char *buf, size_t len) {
  fb *f = (fb *)b;
  int64_t since = 0;
  if (buf != NULL && len > 0) {
    buf[0] = '\0';
  }
  if (begin(f, NULL) == 0) {
    const gkp__store_hdr *h = f->st->hdr;
    since = h->down_since_ms;
    if (since > 0 && buf != NULL && len > 0) {
      snprintf(buf, len, "%.*s", (int)sizeof h->down_reason - 1, h->down_reason);
    }
    end(f);
  }
  return since;
}

/* The pm slot a lease of this process counts against, or -1 with err. */
static int lease_pm(fb *f, const gkp_lease *l, int *key_slot, gkp_error *err) {
  int li, s = find_lease(f, l, &li);
  if (s >= 0) {
    *key_slot = s;
    return (int)f->st->keys[s].leases[li].pm_slot;
  }
  /* A lease already released (a verdict after release, say) still names
   * its key and pair. */
  int ki = cfg_key_index(f, l->key_id);
  int ps = ki >= 0 ? find_pm(f, l->project, l->model) : -1;
  if (ps < 0) {
    return gkp__err(err, -EINVAL, "not a lease of this pool");
  }
  *key_slot = f->key_slot[ki];
  return ps;
}

static int fb_record_usage(gkp__backend *b, const gkp_lease *l, const gkp_usage *u,
                           gkp_error *err) {
  fb *f = (fb *)b;
  int rc, ks, ps;
  if ((rc = bad_lease(l, err)) != 0 || (rc = begin(f, err)) != 0) {
    return rc;
  }
  ps = lease_pm(f, l, &ks, err);
  if (ps >= 0) {
    gkp__pm_counts *p = &f->st->pms[ps].c;
    gkp__store_save(f->st, p, offsetof(gkp__pm_counts, win) + offsetof(gkp__window, b));
    gkp__store_save(f->st, gkp__bucket_of(&p->win, l->started_ms), sizeof(gkp__bucket));
    gkp__apply_usage(p, l->started_ms, l->est_tokens, u);
    gkp__store_commit(f->st);
    f->st->hdr->down_since_ms = 0; /* an answer came: the endpoint is reachable */
  }
  end(f);
  return ps < 0 ? ps : 0;
}

static int fb_apply_verdict(gkp__backend *b, const gkp_lease *l, gkp_verdict *v, gkp_error *err) {
  fb *f = (fb *)b;
  gkp__instant t;
  int rc, ks, ps;
  if ((rc = bad_lease(l, err)) != 0 || (rc = begin(f, err)) != 0) {
    return rc;
  }
  ps = lease_pm(f, l, &ks, err);
  if (ps >= 0) {
    gkp__instant_at(&t, fb_now(f));
    gkp__store_save_recs(f->st, ks, ps);
    v->cooldown_until_ms = gkp__apply_rule(&f->st->keys[ks].c, &f->st->pms[ps].c, v, &t, rnd(f));
    gkp__store_commit(f->st);
    if (v->http_status > 0) {
      f->st->hdr->down_since_ms = 0; /* the server answered */
    }
  }
  end(f);
  return ps < 0 ? ps : 0;
}

/* ---- administration
 * ------------------------------------------------------------------------------ */

static int unknown_key(const fb *f, const char *id, gkp_error *err) {
  return gkp__err(err, -ENOENT, "unknown key id '%s' (the keys are listed in %s)",
                  id != NULL ? id : "", f->cfg->path);
}

/* Clears one key's disabled flag and cooldowns, and those of its project's
 * pairs. */
static void reset_key(fb *f, int ki) {
  gkp__store *st = f->st;
  int s = f->key_slot[ki];
  gkp__key_rec *k = &st->keys[s];
  gkp__store_save_recs(st, s, -1);
  k->c.disabled = 0;
  k->c.disabled_reason[0] = '\0';
  k->c.cooldown_until_ms = 0;
  k->c.cooldown_kind = GKP_KIND_NONE;
  gkp__store_commit(st);
  for (size_t mi = 0; mi < f->cfg->nmodels; mi++) {
    int ps = pm_slot_of(f, ki, (int)mi);
    if (ps >= 0) {
      gkp__store_save_recs(st, -1, ps);
      gkp__pm_reset(&st->pms[ps].c);
      gkp__store_commit(st);
    }
  }
}

static int admin_locked(fb *f, const gkp__admin *op, gkp_error *err) {
  gkp__store *st = f->st;
  int ki = -1, mi = -1, ps = -1;
  if (op->kind == GKP__ADMIN_RESET && op->key_id == NULL) {
    for (size_t i = 0; i < f->cfg->nkeys; i++) {
      reset_key(f, (int)i);
    }
    return 0;
  }
  ki = cfg_key_index(f, op->key_id);
  if (ki < 0) {
    return unknown_key(f, op->key_id, err);
  }
  int s = f->key_slot[ki];
  gkp__key_rec *k = &st->keys[s];
  switch (op->kind) {
  case GKP__ADMIN_RESET:
    reset_key(f, ki);
    return 0;
  case GKP__ADMIN_DISABLE:
    gkp__store_save_recs(st, s, -1);
    k->c.disabled = 1;
    gkp__strlcpy(k->c.disabled_reason, op->reason != NULL ? op->reason : "disabled by hand",
                 sizeof k->c.disabled_reason);
    gkp__store_commit(st);
    return 0;
  default:
    break;
  }
  if (op->model != NULL) {
    mi = model_index(f->cfg, op->model);
    if (mi < 0) {
      return gkp__err(err, -ENOENT, "unknown model '%s'", op->model);
    }
    ps = pm_attach(f, ki, mi, err);
    if (ps < 0) {
      return ps;
    }
  }
  gkp__store_save_recs(st, s, ps);
  if (ps >= 0) {
    st->pms[ps].c.cooldown_until_ms = op->until_ms;
    st->pms[ps].c.cooldown_kind = op->until_ms > 0 ? op->cooldown_kind : GKP_KIND_NONE;
  } else {
    k->c.cooldown_until_ms = op->until_ms;
    k->c.cooldown_kind = op->until_ms > 0 ? op->cooldown_kind : GKP_KIND_NONE;
  }
  gkp__store_commit(st);
  return 0;
}

static int fb_admin(gkp__backend *b, const gkp__admin *op, gkp_error *err) {
  fb *f = (fb *)b;
  int rc = begin(f, err);
  if (rc != 0) {
    return rc;
  }
  rc = admin_locked(f, op, err);
  end(f);
  return rc;
}

static int fb_count_available(gkp__backend *b, const char *model, gkp_error *err) {
  fb *f = (fb *)b;
  gkp__instant t;
  int rc = begin(f, err), mi, n = 0;
  if (rc != 0) {
    return rc;
  }
  mi = model_index(f->cfg, model);
  if (mi < 0) {
    rc = unknown_model(f, model, err);
    end(f);
    return rc;
  }
  gkp__instant_at(&t, fb_now(f));
  for (size_t ki = 0; ki < f->cfg->nkeys; ki++) {
    int64_t ready;
    int reason;
    n += eligible(f, (int)ki, mi, 1, &t, &ready, &reason);
  }
  end(f);
  return n;
}

static int fb_effective_limits(gkp__backend *b, const char *key_id, const char *model,
                               gkp_limits *out, gkp_error *err) {
  fb *f = (fb *)b;
  int rc = begin(f, err), ki, mi;
  if (rc != 0) {
    return rc;
  }
  ki = cfg_key_index(f, key_id);
  mi = model_index(f->cfg, model);
  if (ki < 0 || mi < 0) {
    rc = ki < 0 ? unknown_key(f, key_id, err)
                : gkp__err(err, -ENOENT, "unknown model '%s'", model != NULL ? model : "");
  } else {
    int ps = pm_slot_of(f, ki, mi);
    gkp__effective(ps >= 0 ? &f->st->pms[ps].c : empty_pm(), &f->cfg->models[mi].limits, fb_now(f),
                   out);
  }
  end(f);
  return rc;
}

static int fb_gc(gkp__backend *b, gkp_error *err) {
  fb *f = (fb *)b;
  gkp__store *st = f->st;
  int64_t now;
  int n = 0, rc = begin(f, err);
  if (rc != 0) {
    return rc;
  }
  now = fb_now(f);
  for (uint32_t s = 0; s < st->hdr->lay.nkeys; s++) {
    gkp__key_rec *k = &st->keys[s];
    if (!k->used) {
      continue;
    }
    if (k->c.cooldown_kind != GKP_KIND_NONE && k->c.cooldown_until_ms <= now) {
      gkp__store_save_recs(st, (int)s, -1);
      k->c.cooldown_until_ms = 0;
      k->c.cooldown_kind = GKP_KIND_NONE;
      gkp__store_commit(st);
      n++;
    }
    reap(f, (int)s, now, &n);
  }
  for (uint32_t s = 0; s < st->hdr->lay.npm; s++) {
    gkp__pm_counts *p = &st->pms[s].c;
    if (st->pms[s].used && p->cooldown_kind != GKP_KIND_NONE && p->cooldown_until_ms <= now) {
      gkp__store_save_recs(st, -1, (int)s);
      p->cooldown_until_ms = 0;
      p->cooldown_kind = GKP_KIND_NONE;
      gkp__store_commit(st);
      n++;
    }
  }
  end(f);
  return n;
}

/* ---- status snapshot ---------------------------------------------------------------------------
 */

void gkp__snapshot_free(gkp__snapshot *s) {
  if (s == NULL) {
    return;
  }
  if (s->cfg != NULL) {
    gkp__config_unref(s->cfg);
  }
  free(s->keys);
  free(s->pm_of);
  free(s->pms);
  free(s->where);
  free(s);
}

/* Copies what the status document shows; only plain copies under the lock. */
static int snap_locked(fb *f, gkp__snapshot *s) {
  const gkp__config *cfg = f->cfg;
  size_t nk = cfg->nkeys, nm = cfg->nmodels, cap = 0;
  gkp__instant t;

  gkp__instant_at(&t, s->now);
  s->cfg = gkp__config_ref(cfg);
  s->keys = calloc(nk + 1, sizeof *s->keys);
  s->pm_of = malloc(sizeof(int) * (nk * nm + 1));
  if (s->keys == NULL || s->pm_of == NULL) {
    return -ENOMEM;
  }
  for (size_t ki = 0; ki < nk; ki++) {
    const gkp__key_rec *k = &f->st->keys[f->key_slot[ki]];
    s->keys[ki].c = k->c;
    for (int i = 0; k->nleases > 0 && i < GKP__MAX_LEASES; i++) {
      s->keys[ki].inflight += lease_live(f, &k->leases[i], s->now);
    }
    for (size_t mi = 0; mi < nm; mi++) {
      int ps = pm_slot_of(f, (int)ki, (int)mi);
      s->pm_of[ki * nm + mi] = -1;
      if (ps < 0) {
        continue;
      }
      if (s->npms == cap) {
        cap = cap ? cap * 2 : 64;
        gkp__snap_pm *n = realloc(s->pms, cap * sizeof *n);
        if (n == NULL) {
          return -ENOMEM;
        }
        s->pms = n;
      }
      gkp__snap_pm *e = &s->pms[s->npms];
      const gkp__pm_counts *p = &f->st->pms[ps].c;
      memcpy(&e->c, p, offsetof(gkp__pm_counts, win));
      memset(&e->c.win, 0, sizeof e->c.win);
      e->requests_today = gkp__day_count(p, &t);
      gkp__window_totals(&p->win, &t, &e->reqs_minute, &e->tokens_minute);
      s->pm_of[ki * nm + mi] = (int)s->npms++;
    }
  }
  return 0;
}

static int fb_snapshot(gkp__backend *b, gkp__snapshot **out, gkp_error *err) {
  fb *f = (fb *)b;
  gkp__snapshot *s = calloc(1, sizeof *s);
  int rc;
  *out = NULL;
  if (s == NULL || (s->where = strdup(f->st->path)) == NULL) {
    free(s);
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  rc = begin(f, err);
  if (rc != 0) {
    gkp__snapshot_free(s);
    return rc;
  }
  s->now = fb_now(f);
  const gkp__store_hdr *h = f->st->hdr;
  s->down_since_ms = h->down_since_ms;
  s->down_last_ms = h->down_last_ms;
  snprintf(s->down_url, sizeof s->down_url, "%.*s", (int)sizeof h->down_url - 1, h->down_url);
  snprintf(s->down_reason, sizeof s->down_reason, "%.*s", (int)sizeof h->down_reason - 1,
           h->down_reason);
  rc = snap_locked(f, s);
  end(f);
  if (rc != 0) {
    gkp__snapshot_free(s);
    return gkp__err(err, rc, "out of memory");
  }
  *out = s;
  return 0;
}

/* ---- open and close ---------------------------------------------------------------------------
 */

static const char *fb_where(gkp__backend *b) {
  return ((fb *)b)->st->path;
}

static void fb_close(gkp__backend *b, int forked) {
  fb *f = (fb *)b;
  if (f == NULL) {
    return;
  }
  /* A forked child shares the parent's lock and leases: it touches neither. */
  if (!forked && f->nown > 0 && f->cfg != NULL && begin(f, NULL) == 0) {
    for (uint32_t s = 0; s < f->st->hdr->lay.nkeys; s++) {
      gkp__key_rec *k = &f->st->keys[s];
      for (int i = 0; k->nleases > 0 && i < GKP__MAX_LEASES; i++) {
        if (k->leases[i].id != 0 && gkp__owner_same(&k->leases[i].owner, &f->self)) {
          for (size_t o = 0; o < f->nown; o++) {
            if (f->own[o] == k->leases[i].id) {
              gkp__store_save(f->st, &k->leases[i], sizeof k->leases[i]);
              gkp__store_save(f->st, &k->nleases, sizeof k->nleases);
              memset(&k->leases[i], 0, sizeof k->leases[i]);
              k->nleases--;
              gkp__store_commit(f->st);
              break;
            }
          }
        }
      }
    }
    end(f);
  }
  /* Closing a descriptor never unlocks a lock the parent's copy holds. */
  gkp__store_close(f->st);
  if (f->cfg != NULL) {
    gkp__config_unref(f->cfg);
  }
  free(f->cfg_keys.slot);
  free(f->pms.slot);
  free(f->key_slot);
  free(f->cfg_of_slot);
  free(f->pm_cache);
  free(f->own);
  free(f);
}

/* ---- import ------------------------------------------------------------------------------ */

/* Puts a minute's totals in the bucket of `now` (an upper bound: they count
 * for a whole minute more). */
static void window_from_totals(gkp__window *w, int64_t now, int64_t reqs, int64_t tokens) {
  gkp__instant t;
  gkp__instant_at(&t, now);
  memset(w, 0, sizeof *w);
  w->floor_sec = t.dead_sec;
  gkp__bucket *b = gkp__bucket_of(w, now);
  b->sec = (uint32_t)(now / 1000);
  b->reqs = (uint32_t)reqs;
  b->tokens = tokens;
  w->sum_reqs = reqs;
  w->sum_tokens = tokens;
}

static int import_locked(fb *f, const gkp__snapshot *s, gkp_error *err) {
  size_t snm = s->cfg->nmodels;
  int64_t now = fb_now(f);
  for (size_t sk = 0; sk < s->cfg->nkeys; sk++) {
    int ki = cfg_key_index(f, s->cfg->keys[sk].id);
    if (ki < 0) {
      continue;
    }
    int ks = f->key_slot[ki];
    gkp__store_save_recs(f->st, ks, -1);
    f->st->keys[ks].c = s->keys[sk].c;
    gkp__store_commit(f->st);
    for (size_t sm = 0; sm < snm; sm++) {
      int pi = s->pm_of[sk * snm + sm], mi = model_index(f->cfg, s->cfg->models[sm].id);
      if (pi < 0 || mi < 0) {
        continue;
      }
      int ps = pm_attach(f, ki, mi, err);
      if (ps < 0) {
        return ps;
      }
      const gkp__snap_pm *e = &s->pms[pi];
      gkp__pm_counts *p = &f->st->pms[ps].c;
      gkp__store_save_recs(f->st, -1, ps);
      memcpy(p, &e->c, offsetof(gkp__pm_counts, win));
      window_from_totals(&p->win, now, e->reqs_minute, e->tokens_minute);
      gkp__store_commit(f->st);
    }
  }
  return 0;
}

static int fb_import(gkp__backend *b, const gkp__snapshot *s, gkp_error *err) {
  fb *f = (fb *)b;
  int rc = begin(f, err);
  if (rc != 0) {
    return rc;
  }
  rc = import_locked(f, s, err);
  end(f);
  return rc;
}

static void fb_set_lease_ttl(gkp__backend *b, int64_t ms) {
  ((fb *)b)->lease_ttl_ms = ms > 0 ? ms : GKP_LEASE_TTL_MS;
}

static const gkp__backend_ops file_ops = {
    .set_lease_ttl = fb_set_lease_ttl,
    .attach = fb_attach,
    .reserve = fb_reserve,
    .renew = fb_renew,
    .release = fb_release,
    .release_unreached = fb_release_unreached,
    .endpoint_down = fb_endpoint_down,
    .record_usage = fb_record_usage,
    .apply_verdict = fb_apply_verdict,
    .admin = fb_admin,
    .count_available = fb_count_available,
    .effective_limits = fb_effective_limits,
    .snapshot = fb_snapshot,
    .gc = fb_gc,
    .where = fb_where,
    .close = fb_close,
    .import = fb_import,
};

static void store_note(void *ud, const char *line) {
  fb *f = ud;
  if (f->log != NULL) {
    f->log(f->log_ud, GKP_LOG_WARN, line);
  }
}

int gkp__file_backend_open(const char *path, gkp_clock_fn clock, void *clock_ud, gkp_log_fn log,
                           void *log_ud, gkp__backend **out, gkp_error *err) {
  fb *f = calloc(1, sizeof *f);
  int rc;
  *out = NULL;
  if (f == NULL) {
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  f->base.ops = &file_ops;
  f->lease_ttl_ms = GKP_LEASE_TTL_MS;
  f->clock = clock;
  f->clock_ud = clock_ud;
  f->log = log;
  f->log_ud = log_ud;
  gkp__owner_self(&f->self);
  f->rng = (uint64_t)gkp__now_ms() * 6364136223846793005ull ^ (uint64_t)f->self.pid;
  rc = gkp__store_open(path, fb_now(f), store_note, f, &f->st, err);
  if (rc != 0) {
    free(f);
    return rc;
  }
  *out = &f->base;
  return 0;
}
