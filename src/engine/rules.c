/*
 * rules.c - errors and administration in the public API: each call is one
 * backend verb (the rules themselves are gkp__apply_rule in quota.c).
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "common/err.h"
#include "common/util.h"
#include "engine/client_counts.h"
#include "engine/pool_impl.h"

/* Clears err and refuses use from a forked child. */
static int enter(gkp_pool *pool, gkp_error *err) {
  gkp__err_clear(err);
  return gkp__pool_check_fork(pool, err);
}

int gkp_apply_verdict(gkp_pool *pool, const gkp_lease *lease, gkp_verdict *v, gkp_error *err) {
  int rc = enter(pool, err);
  if (rc != 0) {
    return rc;
  }
  if (lease == NULL || lease->id == 0 || v == NULL) {
    return gkp__err(err, -EINVAL, "not a lease of this pool");
  }
  v->cooldown_until_ms = 0;
  gkp_redact(pool, v->message); /* it came from outside: stored and shown */
  return pool->be->ops->apply_verdict(pool->be, lease, v, err);
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

int gkp_report_key_error(gkp_pool *pool, const char *key_id, const char *model, int http_status,
                         const char *body, size_t len, gkp_verdict *out, gkp_error *err) {
  /* A lease that names the key and the pair and matches no live lease: the
   * backends apply a verdict to what a lease names (as after a release). */
  gkp_lease l = {.id = UINT64_MAX};
  gkp_verdict v;
  int rc = enter(pool, err), ki = -1, mi;
  if (rc != 0) {
    return rc;
  }
  const gkp__config *c = gkp__pool_config(pool);
  for (size_t i = 0; key_id != NULL && i < c->nkeys; i++) {
    if (strcmp(c->keys[i].id, key_id) == 0) {
      ki = (int)i;
    }
  }
  mi = model != NULL ? gkp__config_model_index(c, model) : -1;
  if (ki >= 0 && mi >= 0) {
    gkp__strlcpy(l.key_id, c->keys[ki].id, sizeof l.key_id);
    gkp__strlcpy(l.project, c->keys[ki].project, sizeof l.project);
    gkp__strlcpy(l.model, c->models[mi].id, sizeof l.model);
  }
  gkp__config_unref(c);
  if (ki < 0) {
    return gkp__err(err, -ENOENT, "unknown key id '%s'", key_id != NULL ? key_id : "");
  }
  if (mi < 0) {
    return gkp__err(err, -ENOENT, "unknown model '%s'", model != NULL ? model : "");
  }
  gkp_classify(http_status, body != NULL ? body : "", body != NULL ? len : 0, &v);
  rc = gkp_apply_verdict(pool, &l, &v, err);
  if (out != NULL) {
    *out = v;
  }
  return rc;
}

int gkp_set_cooldown(gkp_pool *pool, const char *key_id, const char *model, int64_t until_ms,
                     int kind, gkp_error *err) {
  gkp__admin op = {.kind = GKP__ADMIN_COOLDOWN,
                   .key_id = key_id != NULL ? key_id : "",
                   .model = model,
                   .until_ms = until_ms,
                   .cooldown_kind = kind};
  int rc = enter(pool, err);
  return rc != 0 ? rc : pool->be->ops->admin(pool->be, &op, err);
}

int gkp_disable_key(gkp_pool *pool, const char *key_id, const char *reason, gkp_error *err) {
  char why[GKP_REASON_MAX];
  gkp__strlcpy(why, reason != NULL ? reason : "disabled by hand", sizeof why);
  gkp_redact(pool, why);
  gkp__admin op = {
      .kind = GKP__ADMIN_DISABLE, .key_id = key_id != NULL ? key_id : "", .reason = why};
  int rc = enter(pool, err);
  return rc != 0 ? rc : pool->be->ops->admin(pool->be, &op, err);
}

int gkp_reset(gkp_pool *pool, const char *key_id, gkp_error *err) {
  int all = key_id == NULL || strcmp(key_id, "all") == 0;
  gkp__admin op = {.kind = GKP__ADMIN_RESET, .key_id = all ? NULL : key_id};
  int rc = enter(pool, err);
  return rc != 0 ? rc : pool->be->ops->admin(pool->be, &op, err);
}

int gkp_count_available(gkp_pool *pool, const char *model, gkp_error *err) {
  int rc = enter(pool, err);
  return rc != 0 ? rc : pool->be->ops->count_available(pool->be, model, err);
}

int gkp_clear_expired(gkp_pool *pool, gkp_error *err) {
  int rc = enter(pool, err);
  return rc != 0 ? rc : pool->be->ops->gc(pool->be, err);
}

static int client_id(const char *id, gkp_error *err) {
  return id != NULL && gkp__client_id_ok(id)
             ? 0
             : gkp__err(err, -EINVAL, "a caller's id must be 1 to %d printable characters",
                        GKP_ID_MAX - 1);
}

int64_t gkp_client_admit(gkp_pool *pool, const char *id, int64_t rpm, int64_t rpd, gkp_error *err) {
  int64_t retry_s = 0;
  int rc = enter(pool, err);
  if (rc == 0) {
    rc = client_id(id, err);
  }
  if (rc == 0) {
    rc = pool->be->ops->client_count(pool->be, id, GKP__CLIENT_ADMIT, rpm < 0 ? 0 : rpm,
                                     rpd < 0 ? 0 : rpd, &retry_s, err);
  }
  return rc != 0 ? rc : retry_s;
}

int gkp_client_error(gkp_pool *pool, const char *id, gkp_error *err) {
  int64_t retry_s = 0;
  int rc = enter(pool, err);
  if (rc == 0) {
    rc = client_id(id, err);
  }
  return rc != 0
             ? rc
             : pool->be->ops->client_count(pool->be, id, GKP__CLIENT_ERROR, 0, 0, &retry_s, err);
}

int gkp_client_get_usage(gkp_pool *pool, const char *id, gkp_client_usage *out, gkp_error *err) {
  int rc = enter(pool, err);
  memset(out, 0, sizeof *out);
  if (rc == 0) {
    rc = client_id(id, err);
  }
  return rc != 0 ? rc : pool->be->ops->client_usage(pool->be, id, out, err);
}

int gkp__pool_max_tpm(gkp_pool *pool, const char *model, int fresh, int64_t *out, gkp_error *err) {
  int rc = enter(pool, err);
  *out = -1;
  return rc != 0 ? rc : pool->be->ops->max_tpm(pool->be, model, fresh, out, err);
}

int gkp_effective_limits(gkp_pool *pool, const char *key_id, const char *model, gkp_limits *out,
                         gkp_error *err) {
  int rc = enter(pool, err);
  return rc != 0 ? rc : pool->be->ops->effective_limits(pool->be, key_id, model, out, err);
}
