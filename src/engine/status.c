/*
 * status.c - the pool as a JSON document (status/pool.json, status --json).
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/timeutil.h"
#include "engine/pool_impl.h"
#include "engine/quota.h"
#include "engine/redis_conn.h"
#include <string.h>

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
static cJSON *learned_entry(const gkp__pm_counts *p, int64_t now) {
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

/* The endpoint: {"url", "unreachable", "since", "last_failure", "error"}.
 * `url` is the configured one unless an outage is on record. */
static cJSON *endpoint_entry(const gkp__snapshot *s) {
  cJSON *o = cJSON_CreateObject();
  int down = s->down_since_ms > 0;
  cJSON_AddStringToObject(o, "url",
                          down && s->down_url[0] != '\0' ? s->down_url : s->cfg->base_url);
  cJSON_AddBoolToObject(o, "unreachable", down);
  cJSON_AddItemToObject(o, "since", time_or_null(down ? s->down_since_ms : 0));
  cJSON_AddItemToObject(o, "last_failure", time_or_null(down ? s->down_last_ms : 0));
  cJSON_AddItemToObject(o, "error", str_or_null(down ? s->down_reason : NULL));
  return o;
}

/* One key's entry for one model. */
static cJSON *model_entry(const gkp__snap_key *k, const gkp__snap_pm *p, const gkp_limits *cfg,
                          int64_t now) {
  cJSON *m = cJSON_CreateObject();
  gkp_limits lim;
  int64_t until = 0;
  int kind = GKP_KIND_NONE;

  gkp__effective(&p->c, cfg, now, &lim);
  if (p->c.cooldown_until_ms > now) {
    until = p->c.cooldown_until_ms;
    kind = p->c.cooldown_kind;
  }
  if (k->c.cooldown_until_ms > now && k->c.cooldown_until_ms > until) {
    until = k->c.cooldown_until_ms;
    kind = k->c.cooldown_kind;
  }
  cJSON_AddNumberToObject(m, "requests_today", (double)p->requests_today);
  cJSON_AddItemToObject(m, "rpd_limit", limit_or_null(lim.rpd));
  cJSON_AddNumberToObject(m, "requests_last_minute", (double)p->reqs_minute);
  cJSON_AddItemToObject(m, "rpm_limit", limit_or_null(lim.rpm));
  cJSON_AddNumberToObject(m, "input_tokens_last_minute", (double)p->tokens_minute);
  cJSON_AddItemToObject(m, "tpm_limit", limit_or_null(lim.tpm));
  cJSON_AddNumberToObject(m, "cooldown_until", until > 0 ? unix_s_ceil(until) : 0);
  cJSON_AddItemToObject(m, "cooldown_kind",
                        kind != GKP_KIND_NONE ? cJSON_CreateString(gkp_kind_name(kind))
                                              : cJSON_CreateNull());
  cJSON_AddItemToObject(m, "learned", learned_entry(&p->c, now));
  cJSON_AddItemToObject(m, "last_error", str_or_null(p->c.last_error));
  cJSON_AddNumberToObject(m, "requests_total", (double)p->c.requests_total);
  cJSON_AddNumberToObject(m, "input_tokens_total", (double)p->c.tokens_in_total);
  cJSON_AddNumberToObject(m, "output_tokens_total", (double)p->c.tokens_out_total);
  cJSON_AddBoolToObject(m, "proven_access", p->c.proven != 0);
  cJSON *errs = cJSON_AddObjectToObject(m, "errors");
  for (int e = GKP_KIND_RPM; e < GKP_KIND_COUNT && e < GKP__ERROR_KINDS; e++) {
    cJSON_AddNumberToObject(errs, gkp_kind_name(e), (double)p->c.errors[e]);
  }
  return m;
}

/* "ready | busy | cooling | disabled" for a key. */
static const char *key_state(const gkp__snap_key *k, int any_cooling, int64_t now) {
  if (k->c.disabled) {
    return "disabled";
  }
  if (k->inflight > 0) {
    return "busy";
  }
  if (k->c.cooldown_until_ms > now || any_cooling) {
    return "cooling";
  }
  return "ready";
}

static cJSON *key_entry(const gkp__snapshot *s, size_t ki) {
  const gkp__config *cfg = s->cfg;
  const gkp__key_cfg *kc = &cfg->keys[ki];
  const gkp__snap_key *k = &s->keys[ki];
  int64_t now = s->now;
  cJSON *o = cJSON_CreateObject(), *models;
  int any_cooling = 0;
  gkp__snap_pm none;

  memset(&none, 0, sizeof none);
  gkp__pm_counts_init(&none.c);
  cJSON_AddStringToObject(o, "id", kc->id);
  cJSON_AddStringToObject(o, "project", kc->project);
  models = cJSON_CreateObject();
  for (size_t mi = 0; mi < cfg->nmodels; mi++) {
    const gkp__model_cfg *mc = &cfg->models[mi];
    int pi = s->pm_of[ki * cfg->nmodels + mi];
    const gkp__snap_pm *p = pi >= 0 ? &s->pms[pi] : &none;
    any_cooling |= p->c.cooldown_until_ms > now;
    cJSON_AddItemToObject(models, mc->id, model_entry(k, p, &mc->limits, now));
  }
  cJSON_AddStringToObject(o, "state", key_state(k, any_cooling, now));
  cJSON_AddItemToObject(o, "disabled_reason",
                        k->c.disabled ? cJSON_CreateString(k->c.disabled_reason)
                                      : cJSON_CreateNull());
  cJSON_AddNumberToObject(o, "inflight", k->inflight);
  cJSON_AddNumberToObject(o, "max_inflight", kc->max_inflight);
  cJSON_AddNumberToObject(o, "requests_total", (double)k->c.requests_total);
  cJSON_AddItemToObject(o, "last_used", time_or_null(k->c.last_used_ms));
  cJSON_AddNumberToObject(o, "cooldown_until",
                          k->c.cooldown_until_ms > now ? unix_s_ceil(k->c.cooldown_until_ms) : 0);
  cJSON_AddItemToObject(o, "cooldown_kind",
                        k->c.cooldown_until_ms > now
                            ? cJSON_CreateString(gkp_kind_name(k->c.cooldown_kind))
                            : cJSON_CreateNull());
  cJSON_AddItemToObject(o, "models", models);
  return o;
}

/* The document is rendered from a snapshot after the state's lock is let
 * go: a slow reader or a large pool never holds up the others. */
int gkp_status_json(gkp_pool *pool, char **out, gkp_error *err) {
  gkp__snapshot *s = NULL;
  cJSON *doc, *keys;
  int rc;

  *out = NULL;
  gkp__err_clear(err);
  if ((rc = gkp__pool_check_fork(pool, err)) != 0) {
    return rc;
  }
  rc = pool->be->ops->snapshot(pool->be, &s, err);
  if (rc != 0) {
    return rc;
  }
  doc = cJSON_CreateObject();
  if (doc == NULL) {
    gkp__snapshot_free(s);
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  cJSON_AddItemToObject(doc, "generated_at", time_or_null(s->now));
  cJSON_AddItemToObject(doc, "next_daily_reset", time_or_null(gkp_next_pacific_midnight(s->now)));
  cJSON_AddStringToObject(doc, "config",
                          pool->config_path != NULL ? pool->config_path : s->cfg->path);
  cJSON_AddStringToObject(doc, "state_file", s->where);
  cJSON_AddStringToObject(doc, "state_backend", gkp__state_is_redis(s->where) ? "redis" : "file");
  cJSON_AddItemToObject(doc, "endpoint", endpoint_entry(s));
  keys = cJSON_AddArrayToObject(doc, "keys");
  for (size_t ki = 0; ki < s->cfg->nkeys; ki++) {
    cJSON_AddItemToArray(keys, key_entry(s, ki));
  }
  gkp__snapshot_free(s);
  *out = cJSON_Print(doc);
  cJSON_Delete(doc);
  if (*out == NULL) {
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  return 0;
}
