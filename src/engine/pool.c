/*
 * pool.c - opening a pool, configuration snapshots, and the lease verbs of
 * the public API (passed on to the state backend).
 */
#include <errno.h>
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
#include "engine/redis_backend.h"
#include "engine/redis_conn.h"
#include "engine/route.h"

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

/* Bumped in every child of fork(): a pool opened in another generation was
 * opened by an ancestor.  (Cheaper than asking for the pid on every call.) */
static unsigned fork_generation;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void in_child(void) {
  __atomic_add_fetch(&fork_generation, 1, __ATOMIC_RELAXED);
}

static void watch_forks(void) {
  pthread_atfork(NULL, NULL, in_child);
}

static int forked(const gkp_pool *pool) {
  return __atomic_load_n(&fork_generation, __ATOMIC_RELAXED) != pool->fork_gen ||
         (pool->fork_gen_unknown && (int)getpid() != pool->pid);
}

int gkp__pool_check_fork(const gkp_pool *pool, gkp_error *err) {
  if (forked(pool)) {
    return gkp__err(err, -ECHILD,
                    "this pool was opened by process %d, before a fork(); a child process must "
                    "open its own pool (gkp_pool_open)",
                    pool->pid);
  }
  return 0;
}

/* ---- configuration snapshots ----------------------------------------------------- */

/* Words for a gkp_wait_reason in a "no key" message. */
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

int gkp__no_key(const gkp__config *cfg, const char *model, int next_key, int64_t next, int reason,
                gkp_wait *wait, gkp_error *err) {
  char when[40];
  if (wait != NULL) {
    wait->reason = reason;
    wait->next_ms = next;
    gkp__strlcpy(wait->next_key_id, next_key >= 0 ? cfg->keys[next_key].id : "",
                 sizeof wait->next_key_id);
  }
  if (next == INT64_MAX || next_key < 0) {
    return gkp__err(err, -EAGAIN, "no key can serve %s: %s (all %zu keys)", model,
                    wait_words(reason), cfg->nkeys);
  }
  return gkp__err(err, -EAGAIN, "no key is free for %s: %s; the first frees up at %s (%s)", model,
                  wait_words(reason), gkp__hms_utc(next, when, sizeof when),
                  cfg->keys[next_key].id);
}

const gkp__config *gkp__config_ref(const gkp__config *cfg) {
  __atomic_add_fetch(&((gkp__config *)cfg)->refs, 1, __ATOMIC_RELAXED);
  return cfg;
}

void gkp__config_unref(const gkp__config *cfg) {
  if (cfg != NULL && __atomic_sub_fetch(&((gkp__config *)cfg)->refs, 1, __ATOMIC_ACQ_REL) == 0) {
    gkp__config_free((gkp__config *)cfg);
  }
}

const gkp__config *gkp__pool_config(gkp_pool *pool) {
  const gkp__config *c;
  pthread_mutex_lock(&pool->cfg_mu);
  c = gkp__config_ref(pool->cfg);
  pthread_mutex_unlock(&pool->cfg_mu);
  return c;
}

int gkp__config_model_index(const gkp__config *cfg, const char *model) {
  for (size_t i = 0; model != NULL && i < cfg->nmodels; i++) {
    if (strcmp(cfg->models[i].id, model) == 0) {
      return (int)i;
    }
  }
  return -1;
}

static int config_key_index(const gkp__config *cfg, const char *id) {
  for (size_t i = 0; id != NULL && i < cfg->nkeys; i++) {
    if (strcmp(cfg->keys[i].id, id) == 0) {
      return (int)i;
    }
  }
  return -1;
}

/* ---- strings handed out by pointer ---------------------------------------------- */

static uint64_t hash_str(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s != '\0'; s++) {
    h = (h ^ (unsigned char)*s) * 1099511628211ull;
  }
  return h;
}

/* A copy of `s` that lives as long as the pool: ids returned by pointer
 * outlive any reload.  The set only grows with ids never seen before. */
static const char *intern(gkp_pool *pool, const char *s) {
  const char *out = NULL;
  if (s == NULL) {
    return NULL;
  }
  pthread_mutex_lock(&pool->names_mu);
  if ((pool->nnames + 1) * 2 > pool->names_cap) {
    size_t cap = pool->names_cap ? pool->names_cap * 2 : 64;
    char **n = calloc(cap, sizeof *n);
    if (n == NULL) {
      pthread_mutex_unlock(&pool->names_mu);
      return NULL;
    }
    for (size_t i = 0; i < pool->names_cap; i++) {
      if (pool->names[i] != NULL) {
        size_t j = (size_t)hash_str(pool->names[i]) & (cap - 1);
        while (n[j] != NULL) {
          j = (j + 1) & (cap - 1);
        }
        n[j] = pool->names[i];
      }
    }
    free(pool->names);
    pool->names = n;
    pool->names_cap = cap;
  }
  size_t j = (size_t)hash_str(s) & (pool->names_cap - 1);
  while (pool->names[j] != NULL && strcmp(pool->names[j], s) != 0) {
    j = (j + 1) & (pool->names_cap - 1);
  }
  if (pool->names[j] == NULL && (pool->names[j] = strdup(s)) != NULL) {
    pool->nnames++;
  }
  out = pool->names[j];
  pthread_mutex_unlock(&pool->names_mu);
  return out;
}

void *gkp__pool_task_runner(gkp_pool *pool, void *(*make)(gkp_pool *pool, gkp_error *err),
                            void (*free_fn)(void *runner), gkp_error *err) {
  void *r;
  pthread_mutex_lock(&pool->task_mu);
  if (pool->task_runner == NULL) {
    pool->task_runner = make(pool, err);
    pool->task_runner_free = free_fn;
  }
  r = pool->task_runner;
  pthread_mutex_unlock(&pool->task_mu);
  return r;
}

/* ---- opening ------------------------------------------------------------------------ */

/* Works out the state file's path (explicit, $GEMINI_POOL_STATE,
 * $XDG_STATE_HOME/gemini-pool/state.db or ~/.local/state/...), creates its
 * directory and checks that it belongs to the user alone.  Returns a
 * malloc'd path or NULL with err set.  A URL (NAME://...) is returned as it
 * is: its backend checks it. */
static char *state_path(const char *explicit_path, const char *cfg_state, gkp_error *err) {
  char buf[4096];
  const char *env = getenv("GEMINI_POOL_STATE");
  const char *xdg = getenv("XDG_STATE_HOME");
  const char *home = getenv("HOME");

  if (explicit_path != NULL && explicit_path[0] != '\0') {
    snprintf(buf, sizeof buf, "%s", explicit_path);
  } else if (env != NULL && env[0] != '\0') {
    snprintf(buf, sizeof buf, "%s", env);
  } else if (cfg_state != NULL && cfg_state[0] != '\0') {
    snprintf(buf, sizeof buf, "%s", cfg_state);
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
  if (gkp__state_has_scheme(buf)) {
    return strdup(buf); /* a URL: the backend checks it */
  }
  if (gkp__secure_parent(buf, 1, "the state directory", err) != 0) {
    return NULL;
  }
  return strdup(buf);
}

static int pool_open(gkp_pool **out, gkp__config *cfg, char *config_path, const gkp_options *opts,
                     gkp_error *err) {
  gkp_options none = {0};
  gkp_pool *pool;
  char *spath;
  int rc;

  if (opts == NULL) {
    opts = &none;
  }
  cfg->refs = 1;
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
  pool->fork_gen_unknown = pthread_once(&fork_once, watch_forks) != 0;
  pool->fork_gen = __atomic_load_n(&fork_generation, __ATOMIC_RELAXED);
  pthread_mutex_init(&pool->cfg_mu, NULL);
  pthread_mutex_init(&pool->names_mu, NULL);
  pthread_mutex_init(&pool->reload_mu, NULL);
  pthread_mutex_init(&pool->task_mu, NULL);
  pthread_mutex_init(&pool->route_mu, NULL);

  spath = state_path(opts->state_path, cfg->state, err);
  if (spath == NULL) {
    rc = err != NULL ? err->code : -ENOENT;
    goto fail;
  }
  if (gkp__state_has_scheme(spath)) {
    rc = gkp__redis_backend_open(spath, cfg->dir, opts->clock, opts->clock_ud, opts->log,
                                 opts->log_ud, &pool->be, err);
  } else {
    rc = gkp__file_backend_open(spath, opts->clock, opts->clock_ud, opts->log, opts->log_ud,
                                &pool->be, err);
  }
  if (spath != NULL) {
    memset(spath, 0, strlen(spath)); /* a URL may hold a password */
  }
  free(spath);
  if (rc != 0) {
    goto fail;
  }
  rc = pool->be->ops->attach(pool->be, cfg, 0, err);
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

void gkp_pool_close(gkp_pool *pool) {
  int forked;
  if (pool == NULL) {
    return;
  }
  forked = (int)getpid() != pool->pid;

  /* A forked child has no runner thread to stop: it only lets go of memory. */
  if (pool->task_runner != NULL && !forked) {
    pool->task_runner_free(pool->task_runner);
  }
  gkp__route_cache_free(pool);
  if (pool->be != NULL) {
    pool->be->ops->close(pool->be, forked);
  }
  gkp__config_unref(pool->cfg);
  for (size_t i = 0; i < pool->names_cap; i++) {
    free(pool->names[i]);
  }
  free(pool->names);
  pthread_mutex_destroy(&pool->cfg_mu);
  pthread_mutex_destroy(&pool->names_mu);
  pthread_mutex_destroy(&pool->reload_mu);
  pthread_mutex_destroy(&pool->task_mu);
  pthread_mutex_destroy(&pool->route_mu);
  free(pool->config_path);
  free(pool);
}

int gkp_pool_reload(gkp_pool *pool, gkp_error *err) {
  gkp__config *cfg = NULL, *old;
  int rc;

  gkp__err_clear(err);
  if ((rc = gkp__pool_check_fork(pool, err)) != 0) {
    return rc;
  }
  if (pool->config_path == NULL) {
    return gkp__err(err, -EINVAL, "this pool was opened from text; there is no file to re-read");
  }
  const gkp__config *cur = gkp__pool_config(pool);
  int origin = cur->origin;
  gkp__config_unref(cur);
  rc = gkp__config_load_from(pool->config_path, origin, pool->log, pool->log_ud, &cfg, err);
  if (rc != 0) {
    return rc;
  }
  cfg->refs = 1;
  pthread_mutex_lock(&pool->reload_mu);
  rc = pool->be->ops->attach(pool->be, cfg, 1, err);
  if (rc == 0) {
    pthread_mutex_lock(&pool->cfg_mu);
    old = pool->cfg;
    pool->cfg = cfg;
    pthread_mutex_unlock(&pool->cfg_mu);
    gkp__config_unref(old); /* freed when its last reader lets go */
  } else {
    gkp__config_unref(cfg);
  }
  pthread_mutex_unlock(&pool->reload_mu);
  return rc;
}

const char *gkp_pool_state_path(const gkp_pool *pool) {
  return pool->be->ops->where(pool->be);
}

const char *gkp_pool_config_path(const gkp_pool *pool) {
  const char *p;
  if (pool->config_path != NULL) {
    return pool->config_path;
  }
  const gkp__config *c = gkp__pool_config((gkp_pool *)pool);
  p = intern((gkp_pool *)pool, c->path);
  gkp__config_unref(c);
  return p;
}

size_t gkp_redact(gkp_pool *pool, char *text) {
  const gkp__config *c = gkp__pool_config(pool);
  size_t n = gkp__config_redact(c, text);
  gkp__config_unref(c);
  return n;
}

int gkp_pool_config_origin(const gkp_pool *pool) {
  const gkp__config *c = gkp__pool_config((gkp_pool *)pool);
  int origin = c->origin;
  gkp__config_unref(c);
  return origin;
}

/* ---- models and keys (read from a snapshot) ------------------------------------------ */

int gkp_model_known(const gkp_pool *pool, const char *model) {
  const gkp__config *c = gkp__pool_config((gkp_pool *)pool);
  int known = gkp__config_model_index(c, model) >= 0;
  gkp__config_unref(c);
  return known;
}

const char *gkp_model_fallback(const gkp_pool *pool, const char *model) {
  const gkp__config *c = gkp__pool_config((gkp_pool *)pool);
  int mi = gkp__config_model_index(c, model);
  const char *fb = mi >= 0 ? intern((gkp_pool *)pool, c->models[mi].fallback) : NULL;
  gkp__config_unref(c);
  return fb;
}

int gkp_model_limits(const gkp_pool *pool, const char *model, gkp_limits *out) {
  const gkp__config *c = gkp__pool_config((gkp_pool *)pool);
  int mi = gkp__config_model_index(c, model);
  if (mi >= 0) {
    *out = c->models[mi].limits;
  }
  gkp__config_unref(c);
  return mi >= 0 ? 0 : -ENOENT;
}

size_t gkp_key_count(const gkp_pool *pool) {
  const gkp__config *c = gkp__pool_config((gkp_pool *)pool);
  size_t n = c->nkeys;
  gkp__config_unref(c);
  return n;
}

const char *gkp_key_id(const gkp_pool *pool, size_t i) {
  const gkp__config *c = gkp__pool_config((gkp_pool *)pool);
  const char *id = i < c->nkeys ? intern((gkp_pool *)pool, c->keys[i].id) : NULL;
  gkp__config_unref(c);
  return id;
}

int gkp_key_secret(const gkp_pool *pool, const char *key_id, char *buf, size_t len,
                   gkp_error *err) {
  const gkp__config *c = gkp__pool_config((gkp_pool *)pool);
  int ki = config_key_index(c, key_id), rc = 0;
  if (ki < 0) {
    rc = gkp__err(err, -ENOENT, "unknown key id '%s'", key_id != NULL ? key_id : "");
  } else if (strlen(c->keys[ki].secret) + 1 > len) {
    rc = gkp__err(err, -ERANGE, "buffer too small for the secret of key '%s'", key_id);
  } else {
    memcpy(buf, c->keys[ki].secret, strlen(c->keys[ki].secret) + 1);
  }
  gkp__config_unref(c);
  return rc;
}

void gkp__pool_set_lease_ttl(gkp_pool *pool, int64_t ms) {
  pool->be->ops->set_lease_ttl(pool->be, ms);
}

/* ---- leases --------------------------------------------------------------------------- */

int gkp_reserve(gkp_pool *pool, const char *model, int64_t est_tokens, gkp_lease *lease,
                gkp_wait *wait, gkp_error *err) {
  int rc;
  gkp__err_clear(err);
  if (wait != NULL) {
    memset(wait, 0, sizeof *wait);
  }
  if ((rc = gkp__pool_check_fork(pool, err)) != 0) {
    return rc;
  }
  return pool->be->ops->reserve(pool->be, model, gkp__clamp64(est_tokens, 0, GKP__TOKENS_MAX),
                                lease, wait, err);
}

int gkp_lease_renew(gkp_pool *pool, const gkp_lease *lease, gkp_error *err) {
  int rc;
  gkp__err_clear(err);
  if ((rc = gkp__pool_check_fork(pool, err)) != 0) {
    return rc;
  }
  return pool->be->ops->renew(pool->be, lease, err);
}

int gkp__pool_renew_leases(gkp_pool *pool, const gkp_lease *ls, size_t n, int *rcs,
                           gkp_error *err) {
  int rc;
  gkp__err_clear(err);
  if ((rc = gkp__pool_check_fork(pool, err)) != 0) {
    for (size_t i = 0; i < n; i++) {
      rcs[i] = rc;
    }
    return rc;
  }
  if (n == 0) {
    return 0;
  }
  return pool->be->ops->renew_many(pool->be, ls, n, rcs, err);
}

int gkp__pool_finish(gkp_pool *pool, const gkp_lease *lease, const gkp_usage *usage, int sent,
                     gkp_error *err) {
  gkp__finish f = {.lease = *lease, .counted = usage != NULL, .sent = sent};
  if (usage != NULL) {
    f.usage = *usage;
  }
  return gkp__pool_finish_many(pool, &f, 1, err);
}

int gkp__pool_finish_many(gkp_pool *pool, const gkp__finish *f, size_t n, gkp_error *err) {
  int rc;
  gkp__err_clear(err);
  if ((rc = gkp__pool_check_fork(pool, err)) != 0) {
    return rc;
  }
  return n == 0 ? 0 : pool->be->ops->finish(pool->be, f, n, err);
}

int gkp__pool_state_remote(const gkp_pool *pool) {
  return pool->be->remote;
}

int gkp_release(gkp_pool *pool, const gkp_lease *lease, int sent, gkp_error *err) {
  int rc;
  gkp__err_clear(err);
  if ((rc = gkp__pool_check_fork(pool, err)) != 0) {
    return rc;
  }
  return pool->be->ops->release(pool->be, lease, sent, err);
}

int gkp_release_unreached(gkp_pool *pool, const gkp_lease *lease, const char *url,
                          const char *reason, gkp_error *err) {
  int rc;
  gkp__err_clear(err);
  if ((rc = gkp__pool_check_fork(pool, err)) != 0) {
    return rc;
  }
  return pool->be->ops->release_unreached(pool->be, lease, url, reason, err);
}

int64_t gkp_endpoint_down_since(gkp_pool *pool, char *buf, size_t len) {
  if (buf != NULL && len > 0) {
    buf[0] = '\0';
  }
  if (gkp__pool_check_fork(pool, NULL) != 0) {
    return 0;
  }
  return pool->be->ops->endpoint_down(pool->be, buf, len);
}

int gkp_record_usage(gkp_pool *pool, const gkp_lease *lease, const gkp_usage *usage,
                     gkp_error *err) {
  int rc;
  gkp__err_clear(err);
  if ((rc = gkp__pool_check_fork(pool, err)) != 0) {
    return rc;
  }
  return pool->be->ops->record_usage(pool->be, lease, usage, err);
}
