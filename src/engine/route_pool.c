/*
 * route_pool.c - routing over a pool: the per-model quota summary and the
 * scores, cached for a second, and the public gkp_route / gkp_rate.
 *
 * The summary is built from a status snapshot (every key, O(keys)) at most
 * once a second per pool, and at once after this process rated a run or the
 * configuration changed; a decision reads it and never walks the keys.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/timeutil.h"
#include "common/util.h"
#include "engine/pool_impl.h"
#include "engine/quota.h"
#include "engine/route.h"

#define CACHE_MS 1000

typedef struct route_cache {
  const gkp__config *cfg; /* the configuration the summary was built for (a reference) */
  int64_t at_mono;        /* when it was built; 0: never */
  gkp__model_quota *quota;
  gkp__score *scores;
  size_t nscores;
} route_cache;

/* Summarises one model over every key of a snapshot. */
static void summarise_model(const gkp__snapshot *s, const gkp__instant *t, size_t mi,
                            gkp__model_quota *q) {
  const gkp__config *cfg = s->cfg;
  const gkp__model_cfg *m = &cfg->models[mi];
  size_t ok = 0, rpd = 0, nft = 0, dis = 0;
  int64_t limit = -1;
  gkp__pm_counts none;
  gkp__pm_counts_init(&none);
  for (size_t ki = 0; ki < cfg->nkeys && ok == 0; ki++) {
    const gkp__snap_key *k = &s->keys[ki];
    int pi = s->pm_of[ki * cfg->nmodels + mi];
    const gkp__pm_counts *p = pi >= 0 ? &s->pms[pi].c : &none;
    int64_t today = pi >= 0 ? s->pms[pi].requests_today : 0;
    gkp_limits lim;
    if (k->c.disabled) {
      dis++;
      continue;
    }
    gkp__effective(p, &m->limits, t->now, &lim);
    if ((p->cooldown_until_ms > t->now && p->cooldown_kind == GKP_KIND_NO_FREE_TIER) ||
        ((lim.rpm == 0 || lim.rpd == 0) && !p->proven)) {
      nft++;
    } else if ((p->cooldown_until_ms >= t->next_midnight && p->cooldown_kind == GKP_KIND_RPD) ||
               (lim.rpd > 0 && today >= lim.rpd)) {
      rpd++;
      limit = lim.rpd;
    } else {
      ok++;
    }
  }
  memset(q, 0, sizeof *q);
  if (ok > 0 || cfg->nkeys == 0) {
    return;
  }
  if (dis == cfg->nkeys) {
    q->skip = GKP__SKIP_DISABLED;
    snprintf(q->detail, sizeof q->detail, "all %zu keys are disabled", dis);
  } else if (rpd >= nft) {
    char when[40];
    q->skip = GKP__SKIP_RPD;
    char n[32] = "";
    if (limit > 0) {
      snprintf(n, sizeof n, "%lld ", (long long)limit);
    }
    snprintf(q->detail, sizeof q->detail,
             "the day's %srequests are used up on every key until %s (midnight Pacific)", n,
             gkp__hms_utc(t->next_midnight, when, sizeof when));
  } else {
    q->skip = GKP__SKIP_NO_FREE_TIER;
    snprintf(q->detail, sizeof q->detail, "not on the free tier for any key");
  }
}

/* Rebuilds the cache (under route_mu).  Trouble reading the state leaves
 * every model with quota: the engine's own waiting then says why. */
static void refresh(gkp_pool *pool, route_cache *c, const gkp__config *cfg) {
  gkp__snapshot *s = NULL;
  gkp_error err;
  gkp__model_quota *q = calloc(cfg->nmodels > 0 ? cfg->nmodels : 1, sizeof *q);
  if (q != NULL && pool->be->ops->snapshot(pool->be, &s, &err) == 0 && s->cfg == cfg) {
    gkp__instant t;
    gkp__instant_at(&t, s->now);
    for (size_t mi = 0; mi < cfg->nmodels; mi++) {
      summarise_model(s, &t, mi, &q[mi]);
    }
  }
  gkp__snapshot_free(s);
  free(c->quota);
  c->quota = q;
  free(c->scores);
  c->scores = NULL;
  c->nscores = 0;
  if (pool->be->ops->scores != NULL) {
    pool->be->ops->scores(pool->be, &c->scores, &c->nscores, &err);
  }
  if (c->cfg != NULL) {
    gkp__config_unref(c->cfg);
  }
  c->cfg = gkp__config_ref(cfg);
  c->at_mono = gkp__mono_ms();
}

int gkp__pool_route(gkp_pool *pool, const gkp__route_in *in, gkp__route *out, gkp_error *err) {
  int rc = gkp__pool_check_fork(pool, err);
  if (rc != 0) {
    return rc;
  }
  const gkp__config *cfg = gkp__pool_config(pool);
  pthread_mutex_lock(&pool->route_mu);
  route_cache *c = pool->route_cache;
  if (c == NULL) {
    c = pool->route_cache = calloc(1, sizeof *c);
  }
  if (c == NULL) {
    pthread_mutex_unlock(&pool->route_mu);
    gkp__config_unref(cfg);
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  int64_t now = gkp__mono_ms();
  if (c->at_mono == 0 || c->cfg != cfg || now - c->at_mono >= CACHE_MS || now < c->at_mono) {
    refresh(pool, c, cfg);
  }
  gkp__route_decide(cfg, in, c->quota, c->scores, c->nscores, out);
  pthread_mutex_unlock(&pool->route_mu);
  gkp__config_unref(cfg);
  return 0;
}

void gkp__route_cache_free(gkp_pool *pool) {
  route_cache *c = pool->route_cache;
  if (c == NULL) {
    return;
  }
  if (c->cfg != NULL) {
    gkp__config_unref(c->cfg);
  }
  free(c->quota);
  free(c->scores);
  free(c);
  pool->route_cache = NULL;
}

int gkp_route(gkp_pool *pool, const char *task, const char *quality, int has_image,
              char **json_out, gkp_error *err) {
  gkp__route r;
  gkp__err_clear(err);
  if (json_out == NULL) {
    return gkp__err(err, -EINVAL, "gkp_route: no place for the result");
  }
  *json_out = NULL;
  if (task == NULL || task[0] == '\0') {
    return gkp__err(err, -EINVAL, "the task is empty");
  }
  int q = quality != NULL ? gkp__quality_index(quality) : -1;
  if (quality != NULL && q < 0) {
    return gkp__err(err, -EINVAL,
                    "unknown quality '%s' (draft, standard, production, research)", quality);
  }
  gkp__route_in in = {.task = task, .len = strlen(task), .has_image = has_image, .quality = q};
  int rc = gkp__pool_route(pool, &in, &r, err);
  if (rc != 0) {
    return rc;
  }
  *json_out = gkp__route_json(&r);
  return *json_out != NULL ? 0 : gkp__err(err, -ENOMEM, "out of memory");
}

void gkp_free(void *p) {
  free(p);
}

int gkp_rate(gkp_pool *pool, const char *task_type, const char *complexity, const char *model,
             int score, gkp_error *err) {
  int rc = gkp__pool_check_fork(pool, err);
  if (rc != 0) {
    return rc;
  }
  gkp__err_clear(err);
  if (score < 1 || score > 5) {
    return gkp__err(err, -EINVAL, "a score is a whole number from 1 to 5 (got %d)", score);
  }
  if (complexity == NULL || gkp__cx_index(complexity) < 0) {
    return gkp__err(err, -EINVAL, "unknown complexity '%s' (low, medium, high, research)",
                    complexity != NULL ? complexity : "");
  }
  const gkp__config *cfg = gkp__pool_config(pool);
  int known_type = 0;
  for (size_t i = 0; task_type != NULL && i < cfg->routing.ntypes; i++) {
    known_type |= strcmp(cfg->routing.types[i].name, task_type) == 0;
  }
  if (!known_type) {
    rc = gkp__err(err, -EINVAL, "unknown task type '%s' (see gemini-pool route --json)",
                  task_type != NULL ? task_type : "");
  } else if (model == NULL || gkp__config_model_index(cfg, model) < 0) {
    rc = gkp__err(err, -EINVAL, "unknown model '%s'", model != NULL ? model : "");
  } else if (pool->be->ops->rate == NULL) {
    rc = gkp__err(err, -ENOTSUP, "this state backend keeps no scores");
  } else {
    rc = pool->be->ops->rate(pool->be, task_type, complexity, model, score, err);
  }
  gkp__config_unref(cfg);
  if (rc == 0) {
    pthread_mutex_lock(&pool->route_mu);
    if (pool->route_cache != NULL) {
      ((route_cache *)pool->route_cache)->at_mono = 0; /* our own score shows at once */
    }
    pthread_mutex_unlock(&pool->route_mu);
  }
  return rc;
}
