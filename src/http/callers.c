/*
 * callers.c - the callers of `clients`: finding one by its token, and its
 * per-minute and per-day limits.
 */
#include <errno.h>
#include <stdio.h>
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
  gkp_error e;
  int64_t wait_s = gkp_client_admit(f->pool, c->cfg->id, c->cfg->rpm, c->cfg->rpd, &e);
  if (wait_s < 0) {
    char line[GKP_MSG_MAX + 64];
    snprintf(line, sizeof line, "client %s: its usage could not be counted: %s", c->cfg->id, e.msg);
    front_log(f, line);
  }
  return wait_s;
}

void callers_error(gkp__front *f, caller *c) {
  gkp_error e;
  if (gkp_client_error(f->pool, c->cfg->id, &e) != 0) {
    char line[GKP_MSG_MAX + 64];
    snprintf(line, sizeof line, "client %s: its error could not be counted: %s", c->cfg->id, e.msg);
    front_log(f, line);
  }
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

/* One caller's usage as the state has it, with `waiting` (-1: not known
 * here), as a JSON object. */
static int usage_json(gkp__dynbuf *b, gkp_pool *pool, const gkp__client_cfg *cfg, int first,
                      long long waiting) {
  gkp_client_usage u;
  gkp_error e;
  if (gkp_client_get_usage(pool, cfg->id, &u, &e) != 0) {
    return gkp__dynbuf_printf(b, "%s{\"id\":\"%s\",\"error\":\"state unreadable\"}",
                              first ? "" : ",", cfg->id);
  }
  int rc = gkp__dynbuf_printf(b,
                              "%s{\"id\":\"%s\",\"rpm\":%lld,\"rpd\":%lld,\"minute\":%lld,"
                              "\"today\":%lld,\"requests\":%lld,\"rejected\":%lld,"
                              "\"errors\":%lld",
                              first ? "" : ",", cfg->id, (long long)cfg->rpm, (long long)cfg->rpd,
                              (long long)u.minute, (long long)u.today, (long long)u.requests,
                              (long long)u.rejected, (long long)u.errors);
  if (rc == 0 && waiting >= 0) {
    rc = gkp__dynbuf_printf(b, ",\"waiting\":%lld", waiting);
  }
  return rc == 0 ? gkp__dynbuf_adds(b, "}") : rc;
}

static char *usage_doc(gkp_pool *pool, const gkp__clients *clients, gkp__front *f) {
  gkp__dynbuf b;
  gkp__dynbuf_init(&b, 1 << 24);
  int rc = gkp__dynbuf_adds(&b, "{\"clients\":[");
  for (size_t i = 0; rc == 0 && clients != NULL && i < clients->n; i++) {
    long long waiting = -1;
    if (f != NULL) {
      pthread_mutex_lock(&f->mu);
      waiting = f->callers[i].waiting;
      pthread_mutex_unlock(&f->mu);
    }
    rc = usage_json(&b, pool, &clients->v[i], i == 0, waiting);
  }
  if (rc == 0) {
    rc = gkp__dynbuf_printf(&b, "],\"updated_ms\":%lld}", (long long)gkp_pool_now(pool));
  }
  char *out = rc == 0 ? strdup(gkp__dynbuf_ptr(&b)) : NULL;
  gkp__dynbuf_reset(&b);
  return out;
}

char *gkp__front_clients_json(gkp__front *f) {
  return usage_doc(f->pool, f->clients, f);
}

char *gkp__front_usage_json(gkp_pool *pool) {
  gkp__clients *clients = NULL;
  gkp_error e;
  if (gkp__clients_load(gkp_pool_config_path(pool), &clients, &e) != 0 || clients == NULL) {
    return NULL;
  }
  char *out = usage_doc(pool, clients, NULL);
  gkp__clients_free(clients);
  return out;
}
