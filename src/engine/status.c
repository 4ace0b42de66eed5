/*
 * status.c - the pool as a JSON document (status/pool.json, status --json).
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/timeutil.h"
#include "engine/pool_impl.h"
#include "engine/quota.h"

static cJSON *time_or_null(int64_t ms) {
  char buf[40];
  return ms > 0 ? cJSON_CreateString(gkp__rfc3339(ms, buf, sizeof buf)) : cJSON_CreateNull();
}

static cJSON *limit_or_null(int64_t v) {
  return v >= 0 ? cJSON_CreateNumber((double)v) : cJSON_CreateNull();
}

static cJSON *str_or_null(const char *s) {
  return s != NULL && s[0] != '\0' ? cJSON_CreateString(s) : cJSON_CreateNull();
}

/* Unix seconds, rounded up so that a cooldown never looks over early. */
static double unix_s_ceil(int64_t ms) {
  return (double)((ms + 999) / 1000);
}

/* {"rpd": {"value", "at", "until"}, ...}: the limits learned from Google's
 * 429s that still apply at `now`. */
static cJSON *learned_entry(const gkp__pm_rec *p, int64_t now) {
  static const char *const names[3] = {"rpm", "tpm", "rpd"};
  cJSON *o = cJSON_CreateObject();
  for (int i = 0; i < 3; i++) {
    int64_t until = gkp__learned_until(p, i);
    if (p->learned[i] >= 0 && now < until) {
      cJSON *l = cJSON_AddObjectToObject(o, names[i]);
      cJSON_AddNumberToObject(l, "value", (double)p->learned[i]);
      cJSON_AddItemToObject(l, "at", time_or_null(p->learned_at[i]));
      cJSON_AddItemToObject(l, "until", time_or_null(until));
    }
  }
  return o;
}

/* One key's entry for one model. */
static cJSON *model_entry(const gkp__key_rec *k, const gkp__pm_rec *p, const gkp_limits *cfg,
                          int64_t now) {
  cJSON *m = cJSON_CreateObject();
  gkp_limits lim;
  int64_t reqs, tokens, until = 0;
  int kind = GKP_KIND_NONE;

  gkp__effective(p, cfg, now, &lim);
  gkp__window_totals(p, now, &reqs, &tokens);
  if (p->cooldown_until_ms > now) {
    until = p->cooldown_until_ms;
    kind = p->cooldown_kind;
  }
  if (k->cooldown_until_ms > now && k->cooldown_until_ms > until) {
    until = k->cooldown_until_ms;
    kind = k->cooldown_kind;
  }
  cJSON_AddNumberToObject(m, "requests_today", (double)gkp__day_count(p, now));
  cJSON_AddItemToObject(m, "rpd_limit", limit_or_null(lim.rpd));
  cJSON_AddNumberToObject(m, "requests_last_minute", (double)reqs);
  cJSON_AddItemToObject(m, "rpm_limit", limit_or_null(lim.rpm));
  cJSON_AddNumberToObject(m, "input_tokens_last_minute", (double)tokens);
  cJSON_AddItemToObject(m, "tpm_limit", limit_or_null(lim.tpm));
  cJSON_AddNumberToObject(m, "cooldown_until", until > 0 ? unix_s_ceil(until) : 0);
  cJSON_AddItemToObject(m, "cooldown_kind",
                        kind != GKP_KIND_NONE ? cJSON_CreateString(gkp_kind_name(kind))
                                              : cJSON_CreateNull());
  cJSON_AddItemToObject(m, "learned", learned_entry(p, now));
  cJSON_AddItemToObject(m, "last_error", str_or_null(p->last_error));
  cJSON_AddNumberToObject(m, "requests_total", (double)p->requests_total);
  cJSON_AddNumberToObject(m, "input_tokens_total", (double)p->tokens_in_total);
  cJSON_AddNumberToObject(m, "output_tokens_total", (double)p->tokens_out_total);
  cJSON_AddBoolToObject(m, "proven_access", p->proven != 0);
  cJSON *errs = cJSON_AddObjectToObject(m, "errors");
  for (int e = GKP_KIND_RPM; e < GKP_KIND_COUNT; e++) {
    cJSON_AddNumberToObject(errs, gkp_kind_name(e), (double)p->errors[e]);
  }
  return m;
}

/* "ready | busy | cooling | disabled" for a key. */
static const char *key_state(const gkp__key_rec *k, int inflight, int any_cooling, int64_t now) {
  if (k->disabled) {
    return "disabled";
  }
  if (inflight > 0) {
    return "busy";
  }
  if (k->cooldown_until_ms > now || any_cooling) {
    return "cooling";
  }
  return "ready";
}

static cJSON *key_entry(gkp_pool *pool, int ki, int64_t now) {
  const gkp__key_cfg *kc = &pool->cfg->keys[ki];
  const gkp__key_rec *k = &pool->st->keys[pool->key_slot[ki]];
  cJSON *o = cJSON_CreateObject(), *models;
  int inflight = 0, any_cooling = 0;

  for (int i = 0; i < GKP__MAX_LEASES; i++) {
    inflight += gkp__lease_live(&k->leases[i], now);
  }
  cJSON_AddStringToObject(o, "id", kc->id);
  cJSON_AddStringToObject(o, "project", kc->project);
  models = cJSON_CreateObject();
  for (size_t mi = 0; mi < pool->cfg->nmodels; mi++) {
    const gkp__model_cfg *mc = &pool->cfg->models[mi];
    int ps = gkp__store_find_pm(pool->st, kc->project, mc->id);
    const gkp__pm_rec *p = ps >= 0 ? &pool->st->pms[ps] : &gkp__empty_pm;
    any_cooling |= p->cooldown_until_ms > now;
    cJSON_AddItemToObject(models, mc->id, model_entry(k, p, &mc->limits, now));
  }
  cJSON_AddStringToObject(o, "state", key_state(k, inflight, any_cooling, now));
  cJSON_AddItemToObject(o, "disabled_reason",
                        k->disabled ? cJSON_CreateString(k->disabled_reason) : cJSON_CreateNull());
  cJSON_AddNumberToObject(o, "inflight", inflight);
  cJSON_AddNumberToObject(o, "max_inflight", kc->max_inflight);
  cJSON_AddNumberToObject(o, "requests_total", (double)k->requests_total);
  cJSON_AddItemToObject(o, "last_used", time_or_null(k->last_used_ms));
  cJSON_AddNumberToObject(o, "cooldown_until",
                          k->cooldown_until_ms > now ? unix_s_ceil(k->cooldown_until_ms) : 0);
  cJSON_AddItemToObject(o, "cooldown_kind",
                        k->cooldown_until_ms > now
                            ? cJSON_CreateString(gkp_kind_name(k->cooldown_kind))
                            : cJSON_CreateNull());
  cJSON_AddItemToObject(o, "models", models);
  return o;
}

/* The endpoint: {"url", "unreachable", "since", "last_failure", "error"}.
 * `url` is the configured one unless an outage is on record.  Inside a
 * transaction. */
static cJSON *endpoint_entry(gkp_pool *pool) {
  const gkp__store_hdr *h = pool->st->hdr;
  cJSON *o = cJSON_CreateObject();
  char url[sizeof h->down_url], reason[sizeof h->down_reason];
  int down = h->down_since_ms > 0;
  snprintf(url, sizeof url, "%.*s", (int)sizeof url - 1, h->down_url);
  snprintf(reason, sizeof reason, "%.*s", (int)sizeof reason - 1, h->down_reason);
  cJSON_AddStringToObject(o, "url", down && url[0] != '\0' ? url : pool->cfg->base_url);
  cJSON_AddBoolToObject(o, "unreachable", down);
  cJSON_AddItemToObject(o, "since", time_or_null(down ? h->down_since_ms : 0));
  cJSON_AddItemToObject(o, "last_failure", time_or_null(down ? h->down_last_ms : 0));
  cJSON_AddItemToObject(o, "error", str_or_null(down ? reason : NULL));
  return o;
}

int gkp_status_json(gkp_pool *pool, char **out, gkp_error *err) {
  int64_t now = gkp_pool_now(pool);
  cJSON *doc, *keys;
  int rc;

  *out = NULL;
  gkp__err_clear(err);
  doc = cJSON_CreateObject();
  if (doc == NULL) {
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  cJSON_AddItemToObject(doc, "generated_at", time_or_null(now));
  cJSON_AddItemToObject(doc, "next_daily_reset", time_or_null(gkp_next_pacific_midnight(now)));
  pthread_rwlock_rdlock(&pool->cfg_lock);
  cJSON_AddStringToObject(doc, "config", gkp_pool_config_path(pool));
  cJSON_AddStringToObject(doc, "state_file", pool->st->path);
  rc = gkp__store_lock(pool->st, err);
  if (rc == 0) {
    cJSON_AddItemToObject(doc, "endpoint", endpoint_entry(pool));
    keys = cJSON_AddArrayToObject(doc, "keys");
    for (size_t ki = 0; ki < pool->cfg->nkeys; ki++) {
      cJSON_AddItemToArray(keys, key_entry(pool, (int)ki, now));
    }
    gkp__store_unlock(pool->st);
  }
  pthread_rwlock_unlock(&pool->cfg_lock);
  if (rc == 0) {
    *out = cJSON_Print(doc);
    if (*out == NULL) {
      rc = gkp__err(err, -ENOMEM, "out of memory");
    }
  }
  cJSON_Delete(doc);
  return rc;
}
