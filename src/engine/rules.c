/*
 * rules.c - what each kind of error does to keys, and the administrative
 * operations: explicit cooldowns, disabling, resets, counting, expiry.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/err.h"
#include "common/util.h"
#include "engine/bounds.h"
#include "engine/pool_impl.h"
#include "engine/quota.h"

#define SECOND 1000LL
#define MINUTE (60 * SECOND)
#define BILLING_COOLDOWN_MS (2 * 60 * MINUTE)
#define SERVER_COOLDOWN_MAX_MS (30 * SECOND)

static int64_t min64(int64_t a, int64_t b) {
  return a < b ? a : b;
}

static int64_t max64(int64_t a, int64_t b) {
  return a > b ? a : b;
}

/* A pseudo-random number in [0, n) from the pool's generator (xorshift). */
static uint64_t rnd(gkp_pool *pool, uint64_t n) {
  uint64_t x = pool->rng;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  pool->rng = x;
  return n > 0 ? x % n : 0;
}

/* Sets a (project, model) cooldown, never shortening one already running. */
static int64_t cool_pm(gkp__pm_rec *p, int64_t until, int kind) {
  if (until > p->cooldown_until_ms || p->cooldown_kind == GKP_KIND_NONE) {
    p->cooldown_until_ms = max64(until, p->cooldown_until_ms);
    p->cooldown_kind = kind;
  }
  return p->cooldown_until_ms;
}

/* The cooldown of an unknown 429: 60 s, doubled for each consecutive one,
 * never past the next Pacific midnight. */
static int64_t unknown_429_ms(uint32_t streak, int64_t now) {
  int64_t d = MINUTE;
  for (uint32_t i = 1; i < streak && d < 48 * 60 * MINUTE; i++) {
    d *= 2;
  }
  return min64(now + d, gkp_next_pacific_midnight(now));
}

int gkp_apply_verdict(gkp_pool *pool, const gkp_lease *lease, gkp_verdict *v, gkp_error *err) {
  int64_t now = gkp_pool_now(pool), until = 0;
  int rc;

  gkp__err_clear(err);
  if (lease == NULL || lease->id == 0 || v == NULL) {
    return gkp__err(err, -EINVAL, "not a lease of this pool");
  }
  gkp_redact(pool, v->message); /* it came from outside: stored and shown */
  rc = gkp__store_lock(pool->st, err);
  if (rc != 0) {
    return rc;
  }
  if (lease->key_slot >= pool->st->hdr->nkeys || lease->pm_slot >= pool->st->hdr->npm) {
    gkp__store_unlock(pool->st);
    return gkp__err(err, -EINVAL, "not a lease of this pool");
  }
  gkp__key_rec *k = &pool->st->keys[lease->key_slot];
  gkp__pm_rec *p = &pool->st->pms[lease->pm_slot];
  gkp__store_change(pool->st, (int)lease->key_slot, (int)lease->pm_slot);
  switch (v->kind) {
  case GKP_KIND_RPM:
  case GKP_KIND_TPM: {
    int64_t d = v->retry_ms >= 0 ? gkp__clamp64(v->retry_ms, SECOND, GKP__DELAY_MAX_MS) : MINUTE;
    until = cool_pm(p, now + d, v->kind);
    break;
  }
  case GKP_KIND_RPD:
    until = cool_pm(p, gkp_next_pacific_midnight(now), v->kind);
    break;
  case GKP_KIND_NO_FREE_TIER:
    p->proven = 0;
    until = cool_pm(p, gkp_next_pacific_midnight(now), v->kind);
    break;
  case GKP_KIND_BILLING:
    k->cooldown_until_ms = max64(k->cooldown_until_ms, now + BILLING_COOLDOWN_MS);
    k->cooldown_kind = GKP_KIND_BILLING;
    until = k->cooldown_until_ms;
    break;
  case GKP_KIND_UNKNOWN_429:
    p->streak_429++;
    until = cool_pm(p, unknown_429_ms(p->streak_429, now), v->kind);
    break;
  case GKP_KIND_INVALID_KEY:
    k->disabled = 1;
    snprintf(k->disabled_reason, sizeof k->disabled_reason, "HTTP %d: %s", v->http_status,
             v->message);
    break;
  case GKP_KIND_SERVER: {
    /* Short jittered backoff: 1 s, 2 s, 4 s ... at most 30 s, times [0.5, 1). */
    int64_t d = SECOND << min64(p->streak_server, 5);
    p->streak_server++;
    d = min64(d, SERVER_COOLDOWN_MAX_MS);
    d = d / 2 + (int64_t)rnd(pool, (uint64_t)(d / 2));
    until = cool_pm(p, now + d, v->kind);
    break;
  }
  default:
    break; /* model not found, bad request: no penalty */
  }
  if (v->learned_limit >= 0) {
    int i = v->learned_metric == GKP_KIND_RPM   ? 0
            : v->learned_metric == GKP_KIND_TPM ? 1
            : v->learned_metric == GKP_KIND_RPD ? 2
                                                : -1;
    if (i >= 0) {
      /* Applies until the next midnight Pacific (gkp__effective). */
      p->learned[i] = gkp__clamp64(v->learned_limit, 0, GKP__LIMIT_MAX);
      p->learned_at[i] = now;
    }
  }
  if (v->http_status > 0) {
    gkp__endpoint_reached(pool);
  }
  if (v->kind > GKP_KIND_NONE && v->kind < GKP_KIND_COUNT) {
    p->errors[v->kind]++;
  }
  snprintf(p->last_error, sizeof p->last_error, "%s: %s", gkp_kind_name(v->kind), v->message);
  gkp__store_commit(pool->st);
  gkp__store_unlock(pool->st);
  v->cooldown_until_ms = until;
  return 0;
}

int gkp_report_error(gkp_pool *pool, const gkp_lease *lease, int http_status, const char *body,
                     size_t len, gkp_verdict *out, gkp_error *err) {
  gkp_verdict v;
  int rc;
  gkp_classify(http_status, body, len, &v);
  rc = gkp_apply_verdict(pool, lease, &v, err);
  if (out != NULL) {
    *out = v;
  }
  return rc;
}

/* Finds config key `id`; returns its index or a negative errno. */
static int find_key(gkp_pool *pool, const char *id, gkp_error *err) {
  for (size_t i = 0; id != NULL && i < pool->cfg->nkeys; i++) {
    if (strcmp(pool->cfg->keys[i].id, id) == 0) {
      return (int)i;
    }
  }
  return gkp__err(err, -ENOENT, "unknown key id '%s' (the keys are listed in %s)",
                  id != NULL ? id : "", gkp_pool_config_path(pool));
}

int gkp_set_cooldown(gkp_pool *pool, const char *key_id, const char *model, int64_t until_ms,
                     int kind, gkp_error *err) {
  int ki, mi = -1, ps = -1, rc;
  gkp__err_clear(err);
  pthread_rwlock_rdlock(&pool->cfg_lock);
  ki = find_key(pool, key_id, err);
  if (ki >= 0 && model != NULL && (mi = gkp__pool_model_index(pool, model)) < 0) {
    ki = gkp__err(err, -ENOENT, "unknown model '%s'", model);
  }
  if (ki < 0 || (rc = gkp__store_lock(pool->st, err)) != 0) {
    pthread_rwlock_unlock(&pool->cfg_lock);
    return ki < 0 ? ki : rc;
  }
  int ks = pool->key_slot[ki];
  if (mi >= 0) {
    ps = gkp__store_attach_pm(pool->st, pool->cfg->keys[ki].project, model, err);
    if (ps < 0) {
      gkp__store_unlock(pool->st);
      pthread_rwlock_unlock(&pool->cfg_lock);
      return ps;
    }
  }
  gkp__store_change(pool->st, ks, ps);
  if (ps >= 0) {
    pool->st->pms[ps].cooldown_until_ms = until_ms;
    pool->st->pms[ps].cooldown_kind = until_ms > 0 ? kind : GKP_KIND_NONE;
  } else {
    pool->st->keys[ks].cooldown_until_ms = until_ms;
    pool->st->keys[ks].cooldown_kind = until_ms > 0 ? kind : GKP_KIND_NONE;
  }
  gkp__store_commit(pool->st);
  gkp__store_unlock(pool->st);
  pthread_rwlock_unlock(&pool->cfg_lock);
  return 0;
}

int gkp_disable_key(gkp_pool *pool, const char *key_id, const char *reason, gkp_error *err) {
  char why[GKP_REASON_MAX];
  int ki, rc;
  gkp__err_clear(err);
  gkp__strlcpy(why, reason != NULL ? reason : "disabled by hand", sizeof why);
  gkp_redact(pool, why);
  pthread_rwlock_rdlock(&pool->cfg_lock);
  ki = find_key(pool, key_id, err);
  if (ki < 0 || (rc = gkp__store_lock(pool->st, err)) != 0) {
    pthread_rwlock_unlock(&pool->cfg_lock);
    return ki < 0 ? ki : rc;
  }
  int ks = pool->key_slot[ki];
  gkp__store_change(pool->st, ks, -1);
  pool->st->keys[ks].disabled = 1;
  gkp__strlcpy(pool->st->keys[ks].disabled_reason, why, sizeof pool->st->keys[ks].disabled_reason);
  gkp__store_commit(pool->st);
  gkp__store_unlock(pool->st);
  pthread_rwlock_unlock(&pool->cfg_lock);
  return 0;
}

/* Clears one key's disabled flag and cooldowns, and the cooldowns and learned
 * limits of its project's models.  Inside a transaction. */
static void reset_key(gkp_pool *pool, int ki) {
  int ks = pool->key_slot[ki];
  gkp__key_rec *k = &pool->st->keys[ks];
  gkp__store_change(pool->st, ks, -1);
  k->disabled = 0;
  k->disabled_reason[0] = '\0';
  k->cooldown_until_ms = 0;
  k->cooldown_kind = GKP_KIND_NONE;
  gkp__store_commit(pool->st);
  for (uint32_t s = 0; s < pool->st->hdr->npm; s++) {
    gkp__pm_rec *p = &pool->st->pms[s];
    if (p->used && strcmp(p->project, k->project) == 0) {
      gkp__store_change(pool->st, -1, (int)s);
      p->cooldown_until_ms = 0;
      p->cooldown_kind = GKP_KIND_NONE;
      p->streak_429 = 0;
      p->streak_server = 0;
      p->last_error[0] = '\0';
      for (int i = 0; i < 3; i++) {
        p->learned[i] = -1; /* back to the configured limits */
        p->learned_at[i] = 0;
      }
      gkp__store_commit(pool->st);
    }
  }
}

int gkp_reset(gkp_pool *pool, const char *key_id, gkp_error *err) {
  int all = key_id == NULL || strcmp(key_id, "all") == 0, ki = -1, rc;
  gkp__err_clear(err);
  pthread_rwlock_rdlock(&pool->cfg_lock);
  if (!all && (ki = find_key(pool, key_id, err)) < 0) {
    pthread_rwlock_unlock(&pool->cfg_lock);
    return ki;
  }
  rc = gkp__store_lock(pool->st, err);
  if (rc == 0) {
    for (size_t i = 0; i < pool->cfg->nkeys; i++) {
      if (all || (int)i == ki) {
        reset_key(pool, (int)i);
      }
    }
    gkp__store_unlock(pool->st);
  }
  pthread_rwlock_unlock(&pool->cfg_lock);
  return rc;
}

int gkp_count_available(gkp_pool *pool, const char *model, gkp_error *err) {
  int64_t now = gkp_pool_now(pool);
  int mi, n = 0;
  gkp__err_clear(err);
  mi = gkp__pool_begin_model(pool, model, err);
  if (mi < 0) {
    return mi;
  }
  for (size_t ki = 0; ki < pool->cfg->nkeys; ki++) {
    int64_t ready;
    int reason;
    n += gkp__key_eligible(pool, (int)ki, mi, 1, now, &ready, &reason);
  }
  gkp__pool_end(pool);
  return n;
}

int gkp_clear_expired(gkp_pool *pool, gkp_error *err) {
  int64_t now = gkp_pool_now(pool);
  int n = 0, rc = gkp__store_lock(pool->st, err);
  if (rc != 0) {
    return rc;
  }
  for (uint32_t s = 0; s < pool->st->hdr->nkeys; s++) {
    gkp__key_rec *k = &pool->st->keys[s];
    if (k->used && k->cooldown_kind != GKP_KIND_NONE && k->cooldown_until_ms <= now) {
      gkp__store_change(pool->st, (int)s, -1);
      k->cooldown_until_ms = 0;
      k->cooldown_kind = GKP_KIND_NONE;
      gkp__store_commit(pool->st);
      n++;
    }
    if (k->used) {
      gkp__reap_leases(pool, (int)s, now, &n);
    }
  }
  for (uint32_t s = 0; s < pool->st->hdr->npm; s++) {
    gkp__pm_rec *p = &pool->st->pms[s];
    if (p->used && p->cooldown_kind != GKP_KIND_NONE && p->cooldown_until_ms <= now) {
      gkp__store_change(pool->st, -1, (int)s);
      p->cooldown_until_ms = 0;
      p->cooldown_kind = GKP_KIND_NONE;
      gkp__store_commit(pool->st);
      n++;
    }
  }
  gkp__store_unlock(pool->st);
  return n;
}

int gkp_effective_limits(gkp_pool *pool, const char *key_id, const char *model, gkp_limits *out,
                         gkp_error *err) {
  int ki, mi, rc;
  gkp__err_clear(err);
  pthread_rwlock_rdlock(&pool->cfg_lock);
  ki = find_key(pool, key_id, err);
  mi = gkp__pool_model_index(pool, model);
  if (ki < 0 || mi < 0) {
    pthread_rwlock_unlock(&pool->cfg_lock);
    return ki < 0 ? ki : gkp__err(err, -ENOENT, "unknown model '%s'", model ? model : "");
  }
  rc = gkp__store_lock(pool->st, err);
  if (rc == 0) {
    int ps = gkp__store_find_pm(pool->st, pool->cfg->keys[ki].project, model);
    gkp__effective(ps >= 0 ? &pool->st->pms[ps] : &gkp__empty_pm, &pool->cfg->models[mi].limits,
                   gkp_pool_now(pool), out);
    gkp__store_unlock(pool->st);
  }
  pthread_rwlock_unlock(&pool->cfg_lock);
  return rc;
}
