/*
 * pool.c - opening a pool, reserving and releasing keys, recording usage.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/securedir.h"
#include "common/timeutil.h"
#include "common/util.h"
#include "engine/bounds.h"
#include "engine/pool_impl.h"
#include "engine/quota.h"

const gkp__pm_rec gkp__empty_pm = {.learned = {-1, -1, -1}};

void gkp__pool_log(const gkp_pool *pool, int level, const char *fmt, ...) {
  char line[1024];
  va_list ap;
  if (pool->log == NULL) {
    return;
  }
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  pool->log(pool->log_ud, level, line);
}

int64_t gkp_pool_now(const gkp_pool *pool) {
  return pool->clock != NULL ? pool->clock(pool->clock_ud) : gkp__now_ms();
}

int gkp__pool_model_index(const gkp_pool *pool, const char *model) {
  if (model == NULL) {
    return -1;
  }
  for (size_t i = 0; i < pool->cfg->nmodels; i++) {
    if (strcmp(pool->cfg->models[i].id, model) == 0) {
      return (int)i;
    }
  }
  return -1;
}

static int key_index(const gkp_pool *pool, const char *id) {
  if (id == NULL) {
    return -1;
  }
  for (size_t i = 0; i < pool->cfg->nkeys; i++) {
    if (strcmp(pool->cfg->keys[i].id, id) == 0) {
      return (int)i;
    }
  }
  return -1;
}

int64_t gkp__learned_until(const gkp__pm_rec *p, int i) {
  if (p->learned[i] < 0 || p->learned_at[i] <= 0) {
    return 0;
  }
  return gkp_next_pacific_midnight(p->learned_at[i]);
}

void gkp__effective(const gkp__pm_rec *p, const gkp_limits *cfg, int64_t now, gkp_limits *out) {
  int64_t *field[3] = {&out->rpm, &out->tpm, &out->rpd};
  *out = *cfg;
  for (int i = 0; i < 3; i++) {
    /* A learned limit heals at the next midnight Pacific: Google's limits
     * change, and a value seen once must not cap the project for good. */
    if (p->learned[i] >= 0 && now < gkp__learned_until(p, i)) {
      *field[i] = p->learned[i];
    }
  }
}

int gkp__lease_live(const gkp__lease_rec *l, int64_t now_ms) {
  if (l->id == 0) {
    return 0;
  }
  if (l->expires_ms <= now_ms) {
    /* The wall clock says its time is up.  The boot clock, which no
     * wall-clock step moves, must agree -- unless its deadline is not of
     * this boot (further away than a whole lease lifetime). */
    int64_t boot = gkp__boot_ms();
    int boot_valid = l->boot_expires_ms > 0 && l->boot_expires_ms - boot <= GKP_LEASE_TTL_MS;
    if (!boot_valid || l->boot_expires_ms <= boot) {
      return 0;
    }
  }
  return kill(l->pid, 0) == 0 || errno != ESRCH;
}

/* ---- opening ----------------------------------------------------------- */

/* Works out the state file's path (explicit, $GEMINI_POOL_STATE,
 * $XDG_STATE_HOME/gemini-pool/state.db or ~/.local/state/...), creates its
 * directory and checks that it belongs to the user alone.  Returns a
 * malloc'd path or NULL with err set. */
static char *state_path(const char *explicit_path, gkp_error *err) {
  char buf[4096];
  const char *env = getenv("GEMINI_POOL_STATE");
  const char *xdg = getenv("XDG_STATE_HOME");
  const char *home = getenv("HOME");

  if (explicit_path != NULL && explicit_path[0] != '\0') {
    snprintf(buf, sizeof buf, "%s", explicit_path);
  } else if (env != NULL && env[0] != '\0') {
    snprintf(buf, sizeof buf, "%s", env);
  } else if (xdg != NULL && xdg[0] == '/') {
    snprintf(buf, sizeof buf, "%s/gemini-pool/state.db", xdg);
  } else if (home != NULL && home[0] == '/') {
    snprintf(buf, sizeof buf, "%s/.local/state/gemini-pool/state.db", home);
  } else {
    gkp__err(err, -ENOENT,
             "no place for the state file: set GEMINI_POOL_STATE, XDG_STATE_HOME or HOME, "
             "or pass --state FILE");
    return NULL;
  }
  if (gkp__secure_parent(buf, 1, "the state directory", err) != 0) {
    return NULL;
  }
  return strdup(buf);
}

/* Sizes the per-config caches and attaches every configured key to the
 * store.  Called with the configuration installed; takes the store lock. */
static int attach_config(gkp_pool *pool, gkp_error *err) {
  gkp__config *cfg = pool->cfg;
  size_t nk = cfg->nkeys, nm = cfg->nmodels;
  int *ks = malloc(sizeof(int) * (nk > 0 ? nk : 1));
  int *pc = malloc(sizeof(int) * (nk * nm > 0 ? nk * nm : 1));
  int rc;

  if (ks == NULL || pc == NULL) {
    free(ks);
    free(pc);
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  for (size_t i = 0; i < nk * nm; i++) {
    pc[i] = -1;
  }
  rc = gkp__store_lock(pool->st, err);
  if (rc != 0) {
    free(ks);
    free(pc);
    return rc;
  }
  for (size_t i = 0; i < nk; i++) {
    rc = gkp__store_attach_key(pool->st, cfg->keys[i].id, cfg->keys[i].project, err);
    if (rc < 0) {
      gkp__store_unlock(pool->st);
      free(ks);
      free(pc);
      return rc;
    }
    ks[i] = rc;
  }
  free(pool->key_slot);
  free(pool->pm_cache);
  pool->key_slot = ks;
  pool->pm_cache = pc;
  gkp__store_unlock(pool->st);
  return 0;
}

static int pool_open(gkp_pool **out, gkp__config *cfg, char *config_path, const gkp_options *opts,
                     gkp_error *err) {
  gkp_options none = {0};
  gkp_pool *pool;
  char moved[4096];
  char *spath;
  int rc;

  if (opts == NULL) {
    opts = &none;
  }
  pool = calloc(1, sizeof *pool);
  if (pool == NULL) {
    gkp__config_free(cfg);
    free(config_path);
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  pool->cfg = cfg;
  pool->config_path = config_path;
  pool->clock = opts->clock;
  pool->clock_ud = opts->clock_ud;
  pool->log = opts->log;
  pool->log_ud = opts->log_ud;
  pool->pid = (int)getpid();
  pool->rng = (uint64_t)gkp__now_ms() * 6364136223846793005ull ^ (uint64_t)pool->pid;
  pthread_rwlock_init(&pool->cfg_lock, NULL);
  pthread_mutex_init(&pool->task_mu, NULL);

  spath = state_path(opts->state_path, err);
  if (spath == NULL) {
    rc = err != NULL ? err->code : -ENOENT;
    goto fail;
  }
  rc = gkp__store_open(spath, gkp_pool_now(pool), &pool->st, moved, err);
  free(spath);
  if (rc != 0) {
    goto fail;
  }
  if (moved[0] != '\0') {
    gkp__pool_log(pool, GKP_LOG_WARN,
                  "%s: the state file was damaged; moved it to %s and started a fresh one",
                  pool->st->path, moved);
  }
  rc = attach_config(pool, err);
  if (rc != 0) {
    goto fail;
  }
  *out = pool;
  return 0;
fail:
  gkp_pool_close(pool);
  return rc;
}

int gkp_pool_open(gkp_pool **out, const gkp_options *opts, gkp_error *err) {
  char path[4096];
  gkp__config *cfg = NULL;
  int rc, origin = GKP_CONFIG_GIVEN;

  *out = NULL;
  gkp__err_clear(err);
  rc = gkp__config_locate(opts != NULL ? opts->config_path : NULL, path, sizeof path, &origin, err);
  if (rc != 0) {
    return rc;
  }
  rc = gkp__config_load_from(path, origin, opts != NULL ? opts->log : NULL,
                             opts != NULL ? opts->log_ud : NULL, &cfg, err);
  if (rc != 0) {
    return rc;
  }
  return pool_open(out, cfg, strdup(path), opts, err);
}

int gkp_pool_open_text(gkp_pool **out, const char *json, size_t len, const char *name,
                       const char *dir, const gkp_options *opts, gkp_error *err) {
  gkp__config *cfg = NULL;
  int rc;

  *out = NULL;
  gkp__err_clear(err);
  rc = gkp__config_parse(json, len, name != NULL ? name : "<config>", dir,
                         opts != NULL ? opts->log : NULL, opts != NULL ? opts->log_ud : NULL, &cfg,
                         err);
  if (rc != 0) {
    return rc;
  }
  return pool_open(out, cfg, NULL, opts, err);
}

/* Drops a lease from the key record (inside a change). */
static int drop_lease(gkp__key_rec *k, uint64_t id) {
  for (int i = 0; i < GKP__MAX_LEASES; i++) {
    if (k->leases[i].id == id) {
      memset(&k->leases[i], 0, sizeof k->leases[i]);
      if (k->nleases > 0) {
        k->nleases--;
      }
      return 1;
    }
  }
  return 0;
}

void gkp_pool_close(gkp_pool *pool) {
  if (pool == NULL) {
    return;
  }
  if (pool->task_runner != NULL) {
    pool->task_runner_free(pool->task_runner);
  }
  if (pool->st != NULL && pool->nown > 0 && gkp__store_lock(pool->st, NULL) == 0) {
    for (size_t i = 0; i < pool->nown; i++) {
      for (uint32_t s = 0; s < pool->st->hdr->nkeys; s++) {
        gkp__key_rec *k = &pool->st->keys[s];
        int found = 0;
        for (int l = 0; l < GKP__MAX_LEASES; l++) {
          found |= k->leases[l].id == pool->own[i];
        }
        if (found) {
          gkp__store_change(pool->st, (int)s, -1);
          drop_lease(k, pool->own[i]);
          gkp__store_commit(pool->st);
          break;
        }
      }
    }
    gkp__store_unlock(pool->st);
  }
  gkp__store_close(pool->st);
  gkp__config_free(pool->cfg);
  pthread_rwlock_destroy(&pool->cfg_lock);
  pthread_mutex_destroy(&pool->task_mu);
  free(pool->config_path);
  free(pool->key_slot);
  free(pool->pm_cache);
  free(pool->own);
  free(pool);
}

int gkp_pool_reload(gkp_pool *pool, gkp_error *err) {
  gkp__config *cfg = NULL, *old;
  int *old_ks, *old_pc;
  int rc;

  gkp__err_clear(err);
  if (pool->config_path == NULL) {
    return gkp__err(err, -EINVAL, "this pool was opened from text; there is no file to re-read");
  }
  rc = gkp__config_load_from(pool->config_path, pool->cfg->origin, pool->log, pool->log_ud, &cfg,
                             err);
  if (rc != 0) {
    return rc;
  }
  pthread_rwlock_wrlock(&pool->cfg_lock);
  old = pool->cfg;
  old_ks = pool->key_slot;
  old_pc = pool->pm_cache;
  pool->cfg = cfg;
  pool->key_slot = NULL;
  pool->pm_cache = NULL;
  rc = attach_config(pool, err);
  if (rc != 0) {
    pool->cfg = old;
    pool->key_slot = old_ks;
    pool->pm_cache = old_pc;
    pthread_rwlock_unlock(&pool->cfg_lock);
    gkp__config_free(cfg);
    return rc;
  }
  free(old_ks);
  free(old_pc);
  /* A reload re-enables disabled keys: the user may have fixed them. */
  if (gkp__store_lock(pool->st, NULL) == 0) {
    for (size_t i = 0; i < cfg->nkeys; i++) {
      gkp__key_rec *k = &pool->st->keys[pool->key_slot[i]];
      if (k->disabled) {
        gkp__store_change(pool->st, pool->key_slot[i], -1);
        k->disabled = 0;
        k->disabled_reason[0] = '\0';
        gkp__store_commit(pool->st);
      }
    }
    gkp__store_unlock(pool->st);
  }
  pthread_rwlock_unlock(&pool->cfg_lock);
  gkp__config_free(old);
  return 0;
}

const char *gkp_pool_state_path(const gkp_pool *pool) {
  return pool->st->path;
}

const char *gkp_pool_config_path(const gkp_pool *pool) {
  return pool->config_path != NULL ? pool->config_path : pool->cfg->path;
}

size_t gkp_redact(gkp_pool *pool, char *text) {
  size_t n;
  pthread_rwlock_rdlock(&pool->cfg_lock);
  n = gkp__config_redact(pool->cfg, text);
  pthread_rwlock_unlock(&pool->cfg_lock);
  return n;
}

int gkp_pool_config_origin(const gkp_pool *pool) {
  return pool->cfg->origin;
}

/* ---- models ------------------------------------------------------------ */

int gkp_model_known(const gkp_pool *pool, const char *model) {
  return gkp__pool_model_index(pool, model) >= 0;
}

const char *gkp_model_fallback(const gkp_pool *pool, const char *model) {
  int mi = gkp__pool_model_index(pool, model);
  return mi >= 0 ? pool->cfg->models[mi].fallback : NULL;
}

int gkp_model_limits(const gkp_pool *pool, const char *model, gkp_limits *out) {
  int mi = gkp__pool_model_index(pool, model);
  if (mi < 0) {
    return -ENOENT;
  }
  *out = pool->cfg->models[mi].limits;
  return 0;
}

size_t gkp_key_count(const gkp_pool *pool) {
  return pool->cfg->nkeys;
}

const char *gkp_key_id(const gkp_pool *pool, size_t i) {
  return i < pool->cfg->nkeys ? pool->cfg->keys[i].id : NULL;
}

int gkp_key_secret(const gkp_pool *pool, const char *key_id, char *buf, size_t len,
                   gkp_error *err) {
  gkp_pool *p = (gkp_pool *)pool;
  int ki, rc = 0;
  pthread_rwlock_rdlock(&p->cfg_lock);
  ki = key_index(pool, key_id);
  if (ki < 0) {
    rc = gkp__err(err, -ENOENT, "unknown key id '%s'", key_id != NULL ? key_id : "");
  } else if (strlen(pool->cfg->keys[ki].secret) + 1 > len) {
    rc = gkp__err(err, -ERANGE, "buffer too small for the secret of key '%s'", key_id);
  } else {
    memcpy(buf, pool->cfg->keys[ki].secret, strlen(pool->cfg->keys[ki].secret) + 1);
  }
  pthread_rwlock_unlock(&p->cfg_lock);
  return rc;
}

/* ---- eligibility --------------------------------------------------------- */

/* The pm slot of (config key ki, model mi), or -1 if it has no record yet.
 * Inside a transaction. */
static int pm_slot_of(gkp_pool *pool, int ki, int mi) {
  int *c = &pool->pm_cache[(size_t)ki * pool->cfg->nmodels + (size_t)mi];
  if (*c < 0) {
    *c = gkp__store_find_pm(pool->st, pool->cfg->keys[ki].project, pool->cfg->models[mi].id);
  }
  return *c;
}

/* The pm slot, created if needed.  Inside a transaction. */
static int pm_attach(gkp_pool *pool, int ki, int mi, gkp_error *err) {
  int slot = pm_slot_of(pool, ki, mi);
  if (slot < 0) {
    slot =
        gkp__store_attach_pm(pool->st, pool->cfg->keys[ki].project, pool->cfg->models[mi].id, err);
    if (slot >= 0) {
      pool->pm_cache[(size_t)ki * pool->cfg->nmodels + (size_t)mi] = slot;
    }
  }
  return slot;
}

/* Removes leases whose owner died or whose time ran out; returns how many
 * live ones remain.  Inside a transaction. */
int gkp__reap_leases(gkp_pool *pool, int ks, int64_t now, int *reaped) {
  gkp__key_rec *k = &pool->st->keys[ks];
  int live = 0;
  if (k->nleases == 0) {
    return 0;
  }
  for (int i = 0; i < GKP__MAX_LEASES; i++) {
    gkp__lease_rec *l = &k->leases[i];
    if (l->id == 0) {
      continue;
    }
    if (gkp__lease_live(l, now)) {
      live++;
    } else {
      gkp__store_change(pool->st, ks, -1);
      memset(l, 0, sizeof *l);
      k->nleases = k->nleases > 0 ? k->nleases - 1 : 0;
      gkp__store_commit(pool->st);
      if (reaped != NULL) {
        (*reaped)++;
      }
    }
  }
  return live;
}

/* Notes a condition that keeps a key from being eligible until `ready`. */
static void hold(int64_t *ready, int *reason, int64_t when, int why) {
  if (*reason == GKP_WAIT_NONE || when > *ready) {
    *ready = when;
    *reason = why;
  }
}

/* Whether config key ki can take a request of `est` tokens on model mi now.
 * Returns 1, or 0 with *ready / *reason.  Inside a transaction. */
int gkp__key_eligible(gkp_pool *pool, int ki, int mi, int64_t est, int64_t now, int64_t *ready,
                      int *reason) {
  int ks = pool->key_slot[ki];
  gkp__key_rec *k = &pool->st->keys[ks];
  int ps = pm_slot_of(pool, ki, mi);
  const gkp__pm_rec *p = ps >= 0 ? &pool->st->pms[ps] : &gkp__empty_pm;
  gkp_limits lim;
  int64_t t;
  int why;

  if (ps >= 0 && gkp__window_from_future(p, now)) {
    /* The wall clock stepped back: bring the window's buckets to the present
     * so that they expire a window from now, not a step from now. */
    gkp__store_change(pool->st, -1, ps);
    gkp__window_restamp(&pool->st->pms[ps], now);
    gkp__store_commit(pool->st);
  }

  *reason = GKP_WAIT_NONE;
  *ready = now;
  if (k->disabled) {
    hold(ready, reason, INT64_MAX, GKP_WAIT_NEVER);
    return 0;
  }
  if (k->cooldown_until_ms > now) {
    hold(ready, reason, k->cooldown_until_ms, GKP_WAIT_COOLDOWN);
  }
  if (p->cooldown_until_ms > now) {
    hold(ready, reason, p->cooldown_until_ms, GKP_WAIT_COOLDOWN);
  }
  gkp__effective(p, &pool->cfg->models[mi].limits, now, &lim);
  if (!gkp__quota_fits(p, &lim, est, now, &t, &why)) {
    hold(ready, reason, t, why);
  }
  if (gkp__reap_leases(pool, ks, now, NULL) >= pool->cfg->keys[ki].max_inflight) {
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

static int own_add(gkp_pool *pool, uint64_t id) {
  uint64_t *n = gkp__grow(pool->own, &pool->capown, pool->nown + 1, sizeof *n, 16);
  if (n == NULL) {
    return -ENOMEM;
  }
  pool->own = n;
  pool->own[pool->nown++] = id;
  return 0;
}

static void own_remove(gkp_pool *pool, uint64_t id) {
  for (size_t i = 0; i < pool->nown; i++) {
    if (pool->own[i] == id) {
      pool->own[i] = pool->own[--pool->nown];
      return;
    }
  }
}

int gkp__pool_begin_model(gkp_pool *pool, const char *model, gkp_error *err) {
  int mi, rc;
  pthread_rwlock_rdlock(&pool->cfg_lock);
  mi = gkp__pool_model_index(pool, model);
  if (mi < 0) {
    pthread_rwlock_unlock(&pool->cfg_lock);
    return gkp__err(err, -ENOENT, "unknown model '%s': add it under \"models\" in %s",
                    model != NULL ? model : "", gkp_pool_config_path(pool));
  }
  rc = gkp__store_lock(pool->st, err);
  if (rc != 0) {
    pthread_rwlock_unlock(&pool->cfg_lock);
    return rc;
  }
  return mi;
}

void gkp__pool_end(gkp_pool *pool) {
  gkp__store_unlock(pool->st);
  pthread_rwlock_unlock(&pool->cfg_lock);
}

int gkp_reserve(gkp_pool *pool, const char *model, int64_t est_tokens, gkp_lease *lease,
                gkp_wait *wait, gkp_error *err) {
  int64_t now = gkp_pool_now(pool), best_used = 0, next = INT64_MAX;
  int mi, best = -1, next_reason = GKP_WAIT_NONE, next_key = -1, rc;

  gkp__err_clear(err);
  if (wait != NULL) {
    memset(wait, 0, sizeof *wait);
  }
  est_tokens = gkp__clamp64(est_tokens, 0, GKP__TOKENS_MAX);
  mi = gkp__pool_begin_model(pool, model, err);
  if (mi < 0) {
    return mi;
  }
  for (size_t ki = 0; ki < pool->cfg->nkeys; ki++) {
    int64_t ready;
    int reason;
    if (gkp__key_eligible(pool, (int)ki, mi, est_tokens, now, &ready, &reason)) {
      int64_t used = pool->st->keys[pool->key_slot[ki]].last_used_ms;
      if (best < 0 || used < best_used) {
        best = (int)ki;
        best_used = used;
      }
    } else if (next_key < 0 || ready < next) {
      next = ready;
      next_reason = reason;
      next_key = (int)ki;
    }
  }
  if (best < 0) {
    char when[40];
    if (wait != NULL) {
      wait->reason = next_reason;
      wait->next_ms = next;
      gkp__strlcpy(wait->next_key_id, next_key >= 0 ? pool->cfg->keys[next_key].id : "",
                   sizeof wait->next_key_id);
    }
    if (next == INT64_MAX || next_key < 0) {
      rc = gkp__err(err, -EAGAIN, "no key can serve %s: %s (all %zu keys)", model,
                    wait_words(next_reason), pool->cfg->nkeys);
    } else {
      rc = gkp__err(err, -EAGAIN, "no key is free for %s: %s; the first frees up at %s (%s)", model,
                    wait_words(next_reason), gkp__hms_utc(next, when, sizeof when),
                    pool->cfg->keys[next_key].id);
    }
    gkp__pool_end(pool);
    return rc;
  }

  int ks = pool->key_slot[best];
  int ps = pm_attach(pool, best, mi, err);
  if (ps < 0 || own_add(pool, pool->st->hdr->next_lease_id) != 0) {
    gkp__pool_end(pool);
    return ps < 0 ? ps : gkp__err(err, -ENOMEM, "out of memory");
  }
  gkp__key_rec *k = &pool->st->keys[ks];
  uint64_t id = pool->st->hdr->next_lease_id++;
  gkp__lease_rec *l = NULL;
  gkp__store_change(pool->st, ks, ps);
  for (int i = 0; i < GKP__MAX_LEASES && l == NULL; i++) {
    if (k->leases[i].id == 0) {
      l = &k->leases[i];
    }
  }
  if (l != NULL) {
    l->id = id;
    l->pid = pool->pid;
    l->started_ms = now;
    l->expires_ms = now + GKP_LEASE_TTL_MS;
    l->boot_expires_ms = gkp__boot_ms() + GKP_LEASE_TTL_MS;
    l->est_tokens = est_tokens;
    l->pm_slot = (uint32_t)ps;
    l->prev_used_ms = k->last_used_ms;
    k->nleases++;
  }
  k->last_used_ms = now;
  k->requests_total++;
  int64_t day = gkp__count_request(&pool->st->pms[ps], now, est_tokens);
  if (l != NULL) {
    l->day_ms = day;
  }
  gkp__store_commit(pool->st);

  lease->id = id;
  lease->key_slot = (uint32_t)ks;
  lease->pm_slot = (uint32_t)ps;
  lease->started_ms = now;
  lease->est_tokens = est_tokens;
  gkp__strlcpy(lease->key_id, k->id, sizeof lease->key_id);
  gkp__strlcpy(lease->project, k->project, sizeof lease->project);
  gkp__strlcpy(lease->model, model, sizeof lease->model);
  gkp__pool_end(pool);
  return 0;
}

static int lease_ok(const gkp_pool *pool, const gkp_lease *lease, gkp_error *err) {
  if (lease == NULL || lease->id == 0 || lease->key_slot >= pool->st->hdr->nkeys ||
      lease->pm_slot >= pool->st->hdr->npm) {
    return gkp__err(err, -EINVAL, "not a lease of this pool");
  }
  return 0;
}

int gkp_lease_renew(gkp_pool *pool, const gkp_lease *lease, gkp_error *err) {
  int rc = lease_ok(pool, lease, err);
  if (rc != 0 || (rc = gkp__store_lock(pool->st, err)) != 0) {
    return rc;
  }
  gkp__key_rec *k = &pool->st->keys[lease->key_slot];
  rc = gkp__err(err, -ESTALE, "the lease on key '%s' was reclaimed", lease->key_id);
  for (int i = 0; i < GKP__MAX_LEASES; i++) {
    if (k->leases[i].id == lease->id) {
      gkp__store_change(pool->st, (int)lease->key_slot, -1);
      k->leases[i].expires_ms = gkp_pool_now(pool) + GKP_LEASE_TTL_MS;
      k->leases[i].boot_expires_ms = gkp__boot_ms() + GKP_LEASE_TTL_MS;
      gkp__store_commit(pool->st);
      gkp__err_clear(err);
      rc = 0;
      break;
    }
  }
  gkp__store_unlock(pool->st);
  return rc;
}

/* Ends a lease inside a transaction; see gkp_release. */
static void release_locked(gkp_pool *pool, const gkp_lease *lease, int sent) {
  gkp__key_rec *k = &pool->st->keys[lease->key_slot];
  const gkp__lease_rec *l = NULL;
  for (int i = 0; i < GKP__MAX_LEASES; i++) {
    if (k->leases[i].id == lease->id) {
      l = &k->leases[i];
    }
  }
  if (l != NULL) {
    int64_t prev_used = l->prev_used_ms, day = l->day_ms;
    gkp__store_change(pool->st, (int)lease->key_slot, sent ? -1 : (int)lease->pm_slot);
    if (!sent) {
      /* Nothing reached the server: as if the reservation never happened,
       * unless a later reservation has used the key since. */
      gkp__uncount_request(&pool->st->pms[lease->pm_slot], lease->started_ms, day,
                           lease->est_tokens);
      if (k->requests_total > 0) {
        k->requests_total--;
      }
      if (k->last_used_ms == lease->started_ms) {
        k->last_used_ms = prev_used;
      }
    }
    drop_lease(k, lease->id);
    gkp__store_commit(pool->st);
  }
  own_remove(pool, lease->id);
}

int gkp_release(gkp_pool *pool, const gkp_lease *lease, int sent, gkp_error *err) {
  int rc = lease_ok(pool, lease, err);
  if (rc != 0 || (rc = gkp__store_lock(pool->st, err)) != 0) {
    return rc;
  }
  release_locked(pool, lease, sent);
  gkp__store_unlock(pool->st);
  return 0;
}

/* Notes the endpoint reachable (an answer came).  Inside a transaction. */
void gkp__endpoint_reached(gkp_pool *pool) {
  pool->st->hdr->down_since_ms = 0;
}

int gkp_release_unreached(gkp_pool *pool, const gkp_lease *lease, const char *url,
                          const char *reason, gkp_error *err) {
  int rc = lease_ok(pool, lease, err);
  if (rc != 0 || (rc = gkp__store_lock(pool->st, err)) != 0) {
    return rc;
  }
  release_locked(pool, lease, 0);
  gkp__store_hdr *h = pool->st->hdr;
  int64_t now = gkp_pool_now(pool), since = h->down_since_ms > 0 ? h->down_since_ms : now;
  h->down_since_ms = 0; /* strings first, the time last: see store.h */
  gkp__strlcpy(h->down_url, url != NULL ? url : "", sizeof h->down_url);
  gkp__strlcpy(h->down_reason, reason != NULL ? reason : "", sizeof h->down_reason);
  h->down_last_ms = now;
  h->down_since_ms = since;
  gkp__store_unlock(pool->st);
  return 0;
}

int64_t gkp_endpoint_down_since(gkp_pool *pool, char *buf, size_t len) {
  int64_t since = 0;
  if (buf != NULL && len > 0) {
    buf[0] = '\0';
  }
  if (gkp__store_lock(pool->st, NULL) == 0) {
    const gkp__store_hdr *h = pool->st->hdr;
    since = h->down_since_ms;
    if (since > 0 && buf != NULL && len > 0) {
      snprintf(buf, len, "%.*s", (int)sizeof h->down_reason - 1, h->down_reason);
    }
    gkp__store_unlock(pool->st);
  }
  return since;
}

int gkp_record_usage(gkp_pool *pool, const gkp_lease *lease, const gkp_usage *usage,
                     gkp_error *err) {
  int rc = lease_ok(pool, lease, err);
  if (rc != 0 || (rc = gkp__store_lock(pool->st, err)) != 0) {
    return rc;
  }
  gkp__pm_rec *p = &pool->st->pms[lease->pm_slot];
  gkp__endpoint_reached(pool);
  gkp__store_change(pool->st, -1, (int)lease->pm_slot);
  p->proven = 1;
  p->streak_429 = 0;
  p->streak_server = 0;
  p->last_error[0] = '\0';
  if (usage != NULL) {
    /* The counts come from the answer: bounded before they are stored. */
    int64_t in = gkp__clamp64(usage->prompt_tokens, -1, GKP__TOKENS_MAX);
    int64_t out = gkp__clamp64(usage->candidates_tokens, 0, GKP__TOKENS_MAX);
    int64_t thoughts = gkp__clamp64(usage->thoughts_tokens, 0, GKP__TOKENS_MAX);
    if (in >= 0) {
      gkp__correct_tokens(p, lease->started_ms, in - lease->est_tokens);
      p->tokens_in_total += (uint64_t)in;
    }
    p->tokens_out_total += (uint64_t)out + (uint64_t)thoughts;
  }
  gkp__store_commit(pool->st);
  gkp__store_unlock(pool->st);
  return 0;
}
