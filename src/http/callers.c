/*
 * callers.c - the callers of `clients`: finding one by its token, and its
 * per-minute and per-day limits.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/timeutil.h"
#include "http/front_impl.h"

int callers_init(gkp__front *f, gkp_error *err) {
  int rc = gkp__clients_load(gkp_pool_config_path(f->pool), &f->clients, err);
  if (rc != 0 || f->clients == NULL) {
    return rc;
  }
  f->callers = calloc(f->clients->n, sizeof *f->callers);
  if (f->callers == NULL) {
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  /* A token that is one of the pool's Gemini keys would hand the key out. */
  for (size_t i = 0; i < f->clients->n; i++) {
    f->callers[i].cfg = &f->clients->v[i];
    for (size_t k = 0; k < gkp_key_count(f->pool); k++) {
      char secret[512];
      gkp_error e;
      if (gkp_key_secret(f->pool, gkp_key_id(f->pool, k), secret, sizeof secret, &e) == 0 &&
          strcmp(secret, f->clients->v[i].token) == 0) {
        explicit_bzero(secret, sizeof secret);
        return gkp__err(err, -EINVAL,
                        "%s: client %s's token is a Gemini API key of the pool; give the client "
                        "a token of its own",
                        gkp_pool_config_path(f->pool), f->clients->v[i].id);
      }
      explicit_bzero(secret, sizeof secret);
    }
  }
  return 0;
}

void callers_free(gkp__front *f) {
  free(f->callers);
  f->callers = NULL;
  gkp__clients_free(f->clients);
  f->clients = NULL;
}

/* Compares without leaking where the first difference is, nor (beyond
 * the longer length) how long the secret is. */
static int same_token(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b), n = la > lb ? la : lb;
  unsigned char diff = (unsigned char)(la != lb);
  for (size_t i = 0; i < n; i++) {
    unsigned char x = i < la ? (unsigned char)a[i] : 0;
    unsigned char y = i < lb ? (unsigned char)b[i] : 0;
    diff |= x ^ y;
  }
  return diff == 0;
}

caller *callers_find(gkp__front *f, const char *token) {
  caller *found = NULL;
  if (f->clients == NULL || token == NULL) {
    return NULL;
  }
  for (size_t i = 0; i < f->clients->n; i++) {
    if (same_token(token, f->clients->v[i].token)) {
      found = &f->callers[i]; /* no early exit: every token is compared */
    }
  }
  return found;
}

int64_t callers_admit(gkp__front *f, caller *c) {
  int64_t now = gkp_pool_now(f->pool), sec = now / 1000, used = 0;
  int64_t day = gkp_last_pacific_midnight(now);
  if (c->day_start_ms != day) {
    c->day_start_ms = day;
    c->today = 0;
  }
  if (c->cfg->rpd > 0 && c->today >= c->cfg->rpd) {
    c->rejected++;
    return (gkp_next_pacific_midnight(now) - now + 999) / 1000;
  }
  int64_t oldest = sec;
  for (int i = 0; i < 60; i++) {
    if (c->minute_at[i] > sec - 60 && c->minute[i] > 0) {
      used += c->minute[i];
      if (c->minute_at[i] < oldest) {
        oldest = c->minute_at[i];
      }
    }
  }
  if (c->cfg->rpm > 0 && used >= c->cfg->rpm) {
    c->rejected++;
    return oldest + 60 - sec > 0 ? oldest + 60 - sec : 1;
  }
  int slot = (int)(sec % 60);
  if (c->minute_at[slot] != sec) {
    c->minute_at[slot] = sec;
    c->minute[slot] = 0;
  }
  c->minute[slot]++;
  c->today++;
  c->requests++;
  return 0;
}

int callers_allows(const caller *c, const char *model) {
  if (c == NULL || c->cfg->profiles == NULL) {
    return 1;
  }
  for (size_t i = 0; i < c->cfg->nprofiles; i++) {
    if (strcmp(c->cfg->profiles[i], model) == 0) {
      return 1;
    }
  }
  return 0;
}

char *gkp__front_clients_json(gkp__front *f) {
  gkp__dynbuf b;
  gkp__dynbuf_init(&b, 1 << 24);
  int rc = gkp__dynbuf_adds(&b, "{\"clients\":[");
  pthread_mutex_lock(&f->mu);
  int64_t now = gkp_pool_now(f->pool), sec = now / 1000;
  for (size_t i = 0; rc == 0 && f->clients != NULL && i < f->clients->n; i++) {
    caller *c = &f->callers[i];
    int64_t minute = 0;
    for (int s = 0; s < 60; s++) {
      minute += c->minute_at[s] > sec - 60 ? c->minute[s] : 0;
    }
    int64_t today = c->day_start_ms == gkp_last_pacific_midnight(now) ? c->today : 0;
    rc = gkp__dynbuf_printf(&b,
                            "%s{\"id\":\"%s\",\"rpm\":%lld,\"rpd\":%lld,\"minute\":%lld,"
                            "\"today\":%lld,\"requests\":%llu,\"rejected\":%llu,\"errors\":%llu,"
                            "\"waiting\":%u}",
                            i ? "," : "", c->cfg->id, (long long)c->cfg->rpm,
                            (long long)c->cfg->rpd, (long long)minute, (long long)today,
                            (unsigned long long)c->requests, (unsigned long long)c->rejected,
                            (unsigned long long)c->errors, c->waiting);
  }
  pthread_mutex_unlock(&f->mu);
  if (rc == 0) {
    rc = gkp__dynbuf_printf(&b, "],\"updated_ms\":%lld}", (long long)now);
  }
  char *out = rc == 0 ? strdup(gkp__dynbuf_ptr(&b)) : NULL;
  gkp__dynbuf_reset(&b);
  return out;
}
