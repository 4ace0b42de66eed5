/*
 * redis_backend.c - the backend verbs over a Redis server or cluster.
 *
 * Every decision is one Lua script on the server (redis_lua.c), over the
 * records of one Google project, which share the hash tag {project} and so
 * one slot.  Choosing among keys is the client's: it walks the pool's least
 * recently used order, a sorted set (gkp:{pool}:lru, scored by last use, in
 * a slot of its own) and offers each candidate to the reserve script until
 * one takes; the winner's score is bumped afterwards.  Two clients that pick
 * the same candidate are settled by the script: the second finds it busy.
 * On a single server one call does it all: the client names the keys of
 * the first page as it last read it, and the script walks the page as it
 * is now, in the same step, answering "stale" if the page holds a key the
 * client did not name (the client then reads the page again).
 *
 * Times are the server's: the scripts read TIME, and the client turns the
 * server's times into its own clock (an offset refreshed on every answer)
 * only where it hands them to its caller (wait times, cooldown ends).
 * Applying an error's rule reuses quota.c's gkp__apply_rule on the fields
 * it reads, then writes them with a script that checks nothing changed in
 * between (rare: errors only), retrying if something did.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "common/timeutil.h"
#include "common/util.h"
#include "engine/backend.h"
#include "engine/client_counts.h"
#include "engine/redis_backend.h"
#include "engine/redis_conn.h"
#include "engine/redis_lua.h"

#define PAGE GKP__REDIS_PAGE
#define KNAME 400

typedef struct own_lease {
  uint64_t id;
  int64_t last_used_before; /* the key's last use before this lease */
  char key_id[GKP_ID_MAX];
  char project[GKP_ID_MAX];
} own_lease;

typedef struct key_ix {
  const char *id;
  int ki;
} key_ix;

typedef struct rb {
  gkp__backend base;
  gkp__rconn conn; /* conn.mu guards everything below */
  gkp_clock_fn clock;
  void *clock_ud;
  gkp_log_fn log;
  void *log_ud;
  const gkp__config *cfg;
  key_ix *ix; /* cfg keys sorted by id */
  uint64_t rng;
  own_lease *own;
  size_t nown, capown;
  char lru[64];
  char page[PAGE][GKP_ID_MAX]; /* the LRU order's first page as last read */
  int npage;                   /* 0: not read yet */
  char endpoint[64];           /* the endpoint record: since last url reason */
  int lease_ttl_ms;
  /* max_tpm's answers of the last second, by chain head (guarded by memo_mu). */
  pthread_mutex_t memo_mu;
  struct {
    char model[GKP_ID_MAX];
    int64_t value, at_mono;
  } tpm_memo[16];
} rb;

/* ---- names and small helpers ------------------------------------------------------------ */

static void kname(char *buf, char kind, const char *project, const char *id) {
  snprintf(buf, KNAME, "gkp:{%s}:%c:%s", project, kind, id != NULL ? id : "");
}

static int cmp_ix(const void *a, const void *b) {
  return strcmp(((const key_ix *)a)->id, ((const key_ix *)b)->id);
}

static int cfg_key(const rb *r, const char *id) {
  key_ix k = {id, 0}, *f;
  if (id == NULL || r->ix == NULL) {
    return -1;
  }
  f = bsearch(&k, r->ix, r->cfg->nkeys, sizeof *r->ix, cmp_ix);
  return f != NULL ? f->ki : -1;
}

static uint64_t rnd(rb *r) {
  uint64_t x = r->rng;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  r->rng = x;
  return x;
}

/* A test clock overrides the server's: its time is passed to the scripts. */
static void now_arg(const rb *r, char *buf) {
  if (r->clock != NULL) {
    snprintf(buf, 24, "%" PRId64, r->clock(r->clock_ud));
  } else {
    buf[0] = '\0';
  }
}

/* Our best knowledge of the server's time now. */
static int64_t server_now(const rb *r) {
  return r->clock != NULL ? r->clock(r->clock_ud) : gkp__rconn_server_now(&r->conn);
}

/* A server time in the caller's clock. */
static int64_t to_local(const rb *r, int64_t t) {
  if (r->clock != NULL || t == INT64_MAX || t <= 0) {
    return t;
  }
  return t - r->conn.offset_ms;
}

static void saw_time(rb *r, int64_t server_ms) {
  if (r->clock == NULL && server_ms > 0) {
    gkp__rconn_saw_server_time(&r->conn, server_ms);
  }
}

static int64_t reply_int(const redisReply *x) {
  if (x == NULL) {
    return 0;
  }
  if (x->type == REDIS_REPLY_INTEGER) {
    return x->integer;
  }
  if (x->type == REDIS_REPLY_STRING) {
    return strtoll(x->str, NULL, 10);
  }
  return 0;
}

static uint32_t h24(const char *s) {
  uint32_t h = 2166136261u;
  for (; *s != '\0'; s++) {
    h = (h ^ (unsigned char)*s) * 16777619u;
  }
  return h & 0xffffffu;
}

/* Runs a command given as separate strings. */
static redisReply *cmd(rb *r, const char *route, gkp_error *err, int argc, ...) {
  const char *av[16];
  va_list ap;
  va_start(ap, argc);
  for (int i = 0; i < argc && i < 16; i++) {
    av[i] = va_arg(ap, const char *);
  }
  va_end(ap);
  return gkp__rconn_cmd(&r->conn, route, argc, av, NULL, err);
}

static int own_add(rb *r, const gkp_lease *l, int64_t last_used_before) {
  own_lease *n = gkp__grow(r->own, &r->capown, r->nown + 1, sizeof *n, 16);
  if (n == NULL) {
    return -ENOMEM;
  }
  r->own = n;
  r->own[r->nown].id = l->id;
  r->own[r->nown].last_used_before = last_used_before;
  gkp__strlcpy(r->own[r->nown].key_id, l->key_id, sizeof r->own[r->nown].key_id);
  gkp__strlcpy(r->own[r->nown].project, l->project, sizeof r->own[r->nown].project);
  r->nown++;
  return 0;
}

/* The key's last use before lease `id` of this process, or -1. */
static int64_t own_last_used(const rb *r, uint64_t id) {
  for (size_t i = 0; i < r->nown; i++) {
    if (r->own[i].id == id) {
      return r->own[i].last_used_before;
    }
  }
  return -1;
}

static void own_remove(rb *r, uint64_t id) {
  for (size_t i = 0; i < r->nown; i++) {
    if (r->own[i].id == id) {
      r->own[i] = r->own[--r->nown];
      return;
    }
  }
}

static int model_index(const gkp__config *cfg, const char *model) {
  for (size_t i = 0; model != NULL && i < cfg->nmodels; i++) {
    if (strcmp(cfg->models[i].id, model) == 0) {
      return (int)i;
    }
  }
  return -1;
}

static int unknown_model(const rb *r, const char *model, gkp_error *err) {
  return gkp__err(err, -ENOENT, "unknown model '%s': add it under \"models\" in %s",
                  model != NULL ? model : "", r->cfg->path);
}

static int unknown_key(const rb *r, const char *id, gkp_error *err) {
  return gkp__err(err, -ENOENT, "unknown key id '%s' (the keys are listed in %s)",
                  id != NULL ? id : "", r->cfg->path);
}

/* ---- attach ------------------------------------------------------------------------------- */

/* Puts every configured key in the LRU order (new ones first, in
 * configuration order); on reload drops keys no longer named and enables
 * disabled ones. */
static int attach_locked(rb *r, const gkp__config *cfg, int reload, gkp_error *err) {
  size_t n = cfg->nkeys;
  const char **av = calloc(3 + 2 * n, sizeof *av);
  char(*score)[24] = calloc(n + 1, sizeof *score);
  redisReply *x = NULL;
  int rc = 0;
  if (av == NULL || score == NULL) {
    free(av);
    free(score);
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  r->npage = 0; /* the keys may have changed: read the page again */
  av[0] = "ZADD";
  av[1] = r->lru;
  av[2] = "NX";
  for (size_t i = 0; i < n; i++) {
    snprintf(score[i], sizeof score[i], "%zd", (ssize_t)i - (ssize_t)n);
    av[3 + 2 * i] = score[i];
    av[4 + 2 * i] = cfg->keys[i].id;
  }
  x = gkp__rconn_cmd(&r->conn, r->lru, (int)(3 + 2 * n), av, NULL, err);
  rc = x == NULL ? (err != NULL && err->code != 0 ? err->code : -EIO) : 0;
  freeReplyObject(x);
  free(av);
  free(score);
  if (rc != 0 || !reload) {
    return rc;
  }
  x = cmd(r, r->lru, err, 4, "ZRANGE", r->lru, "0", "-1");
  for (size_t i = 0; x != NULL && i < x->elements; i++) {
    if (x->element[i]->type == REDIS_REPLY_STRING && cfg_key(r, x->element[i]->str) < 0) {
      freeReplyObject(cmd(r, r->lru, NULL, 3, "ZREM", r->lru, x->element[i]->str));
    }
  }
  freeReplyObject(x);
  for (size_t i = 0; i < n; i++) {
    char k[KNAME];
    kname(k, 'k', cfg->keys[i].project, cfg->keys[i].id);
    freeReplyObject(cmd(r, k, NULL, 6, "HSET", k, "dis", "0", "dreason", ""));
  }
  return 0;
}

/* Forgets max_tpm's answers: this process changed a limit or the keys. */
static void memo_clear(rb *r) {
  pthread_mutex_lock(&r->memo_mu);
  memset(r->tpm_memo, 0, sizeof r->tpm_memo);
  pthread_mutex_unlock(&r->memo_mu);
}

static int rb_attach(gkp__backend *b, const gkp__config *cfg, int reload, gkp_error *err) {
  memo_clear((rb *)b);
  rb *r = (rb *)b;
  key_ix *ix = calloc(cfg->nkeys + 1, sizeof *ix), *old_ix;
  const gkp__config *old;
  int rc;
  if (ix == NULL) {
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  for (size_t i = 0; i < cfg->nkeys; i++) {
    ix[i].id = cfg->keys[i].id;
    ix[i].ki = (int)i;
  }
  qsort(ix, cfg->nkeys, sizeof *ix, cmp_ix);
  pthread_mutex_lock(&r->conn.mu);
  old = r->cfg;
  old_ix = r->ix;
  r->cfg = gkp__config_ref(cfg);
  r->ix = ix;
  rc = attach_locked(r, cfg, reload, err);
  if (rc != 0 && old != NULL) {
    gkp__config_unref(r->cfg);
    free(r->ix);
    r->cfg = old;
    r->ix = old_ix;
  } else {
    if (old != NULL) {
      gkp__config_unref(old);
    }
    free(old_ix);
  }
  pthread_mutex_unlock(&r->conn.mu);
  return rc;
}

/* ---- reserve ------------------------------------------------------------------------------ */

typedef struct offer {
  int status; /* 1 leased, 2 eligible (probe), 0 none can */
  int reason;
  int64_t ready; /* server time; INT64_MAX never */
  int64_t id, now;
  int index; /* the candidate it is about, -1: none */
  int full;  /* the script read a whole page of the LRU order */
} offer;

/* The names and arguments of one reserve call, built once per call. */
typedef struct offer_args {
  char (*names)[KNAME]; /* 5 per candidate */
  char (*maxin)[16];
  const char **av;
} offer_args;

static void offer_args_free(offer_args *a) {
  free(a->names);
  free(a->maxin);
  free(a->av);
}

/* Offers cfg keys kis[0..n) to the reserve script, in one call (with the
 * LRU bump) on a single server: in the order given, or, with `pass` (the
 * ids of the cached page that are not in our config, np of them), in the
 * LRU order the script reads.  Returns 0 with *o, or an error. */
static int offer_keys(rb *r, const int *kis, int n, int mi, int64_t est, int probe,
                      const char *const *pass, int np, offer *o, gkp_error *err) {
  const gkp_limits *lim = &r->cfg->models[mi].limits;
  const char *model = r->cfg->models[mi].id;
  int lru = !r->conn.cluster, check = lru && pass != NULL, nkeys = 5 * n + lru;
  int argc = nkeys + 11 + 2 * n + (check ? 1 + np : 0), rc = 0;
  char a_np[16];
  char now[24], a_est[24], a_rpm[24], a_tpm[24], a_rpd[24], a_ds[24], a_nm[24], a_ttl[24], a_n[16];
  offer_args a = {calloc((size_t)(5 * n), KNAME), calloc((size_t)n, 16),
                  calloc((size_t)argc, sizeof(char *))};
  int64_t t = server_now(r);
  if (a.names == NULL || a.maxin == NULL || a.av == NULL) {
    offer_args_free(&a);
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  for (int i = 0; i < n; i++) {
    const gkp__key_cfg *kc = &r->cfg->keys[kis[i]];
    kname(a.names[5 * i], 'k', kc->project, kc->id);
    kname(a.names[5 * i + 1], 'l', kc->project, kc->id);
    kname(a.names[5 * i + 2], 'm', kc->project, model);
    kname(a.names[5 * i + 3], 'w', kc->project, model);
    snprintf(a.names[5 * i + 4], KNAME, "gkp:{%s}:seq", kc->project);
    snprintf(a.maxin[i], 16, "%d", kc->max_inflight);
    for (int j = 0; j < 5; j++) {
      a.av[5 * i + j] = a.names[5 * i + j];
    }
    a.av[nkeys + 11 + i] = a.maxin[i];
    a.av[nkeys + 11 + n + i] = kc->id;
  }
  if (lru) {
    a.av[5 * n] = r->lru;
  }
  if (check) {
    snprintf(a_np, sizeof a_np, "%d", np);
    a.av[nkeys + 11 + 2 * n] = a_np;
    for (int i = 0; i < np; i++) {
      a.av[nkeys + 12 + 2 * n + i] = pass[i];
    }
  }
  now_arg(r, now);
  snprintf(a_est, sizeof a_est, "%" PRId64, est > 0 ? est : 0);
  snprintf(a_rpm, sizeof a_rpm, "%" PRId64, lim->rpm);
  snprintf(a_tpm, sizeof a_tpm, "%" PRId64, lim->tpm);
  snprintf(a_rpd, sizeof a_rpd, "%" PRId64, lim->rpd);
  snprintf(a_ttl, sizeof a_ttl, "%d", r->lease_ttl_ms);
  snprintf(a_n, sizeof a_n, "%d", n);
  const char *fixed[11] = {now,
                           a_est,
                           a_rpm,
                           a_tpm,
                           a_rpd,
                           a_ds,
                           a_nm,
                           a_ttl,
                           probe ? "1" : "0",
                           check ? "2"
                           : lru ? "1"
                                 : "0",
                           a_n};
  for (int i = 0; i < 11; i++) {
    a.av[nkeys + i] = fixed[i];
  }
  for (int attempt = 0;; attempt++) {
    snprintf(a_ds, sizeof a_ds, "%" PRId64, gkp_last_pacific_midnight(t));
    snprintf(a_nm, sizeof a_nm, "%" PRId64, gkp_next_pacific_midnight(t));
    redisReply *x = gkp__rconn_script(&r->conn, GKP__RS_RESERVE, nkeys, argc, a.av, err);
    if (x == NULL) {
      rc = err != NULL && err->code != 0 ? err->code : -EIO;
      break;
    }
    if (x->type != REDIS_REPLY_ARRAY || x->elements != 6) {
      freeReplyObject(x);
      rc = gkp__err(err, -EPROTO, "state %s: unexpected answer to reserve", r->conn.url.where);
      break;
    }
    o->status = (int)reply_int(x->element[0]);
    o->id = reply_int(x->element[1]);
    o->reason = (int)reply_int(x->element[1]);
    o->ready = reply_int(x->element[2]);
    o->now = reply_int(x->element[3]);
    o->index = (int)reply_int(x->element[4]) - 1;
    o->full = (int)reply_int(x->element[5]);
    freeReplyObject(x);
    if (o->status < -2 || o->status > 2 || (o->status >= 1 && (o->index < 0 || o->index >= n))) {
      rc = gkp__err(err, -EPROTO, "state %s: the server's answer to reserve is out of range",
                    r->conn.url.where);
      break;
    }
    saw_time(r, o->now);
    if (o->ready < 0) {
      o->ready = INT64_MAX;
    }
    if (o->status != -1) {
      break;
    }
    if (attempt == 2) {
      rc = gkp__err(err, -EAGAIN, "state %s: the server's clock keeps crossing midnight",
                    r->conn.url.where);
      break;
    }
    t = o->now; /* our idea of the day was wrong: use the server's */
  }
  offer_args_free(&a);
  return rc;
}

static int offer_key(rb *r, int ki, int mi, int64_t est, int probe, offer *o, gkp_error *err) {
  return offer_keys(r, &ki, 1, mi, est, probe, NULL, 0, o, err);
}

static int no_key(rb *r, const char *model, int next_key, int64_t next, int reason, gkp_wait *wait,
                  gkp_error *err) {
  return gkp__no_key(r->cfg, model, next_key, to_local(r, next), reason, wait, err);
}

/* The server is unreachable: the caller waits and tries again soon. */
static int unreachable(rb *r, gkp_wait *wait, gkp_error *err) {
  if (wait != NULL) {
    int64_t now = r->clock != NULL ? r->clock(r->clock_ud) : gkp__now_ms();
    int64_t back = r->conn.next_try_ms - gkp__now_ms();
    wait->reason = GKP_WAIT_UNREACHABLE;
    wait->next_ms = now + (back > 0 ? back : 250);
    wait->next_key_id[0] = '\0';
  }
  (void)err;
  return -EAGAIN;
}

/* Takes the lease an offer won. */
static int took(rb *r, int ki, int mi, int64_t est, const offer *o, gkp_lease *out,
                gkp_error *err) {
  const gkp__key_cfg *kc = &r->cfg->keys[ki];
  char score[24];
  memset(out, 0, sizeof *out);
  out->id = ((uint64_t)o->id << 24) | h24(kc->project);
  out->started_ms = o->now;
  out->est_tokens = est > 0 ? est : 0;
  gkp__strlcpy(out->key_id, kc->id, sizeof out->key_id);
  gkp__strlcpy(out->project, kc->project, sizeof out->project);
  gkp__strlcpy(out->model, r->cfg->models[mi].id, sizeof out->model);
  if (r->conn.cluster) { /* on a single server the script did it */
    snprintf(score, sizeof score, "%" PRId64, o->now);
    freeReplyObject(cmd(r, r->lru, NULL, 5, "ZADD", r->lru, "XX", score, kc->id));
  }
  if (own_add(r, out, o->ready) != 0) {
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  return 0;
}

/* Keeps the first page of the LRU order as read. */
static void keep_page(rb *r, const redisReply *x) {
  r->npage = 0;
  for (size_t i = 0; i < x->elements && i < PAGE; i++) {
    if (x->element[i]->type == REDIS_REPLY_STRING) {
      gkp__strlcpy(r->page[r->npage++], x->element[i]->str, GKP_ID_MAX);
    }
  }
}

/* The best "none can" answer seen so far. */
typedef struct cand_best {
  int key, reason;
  int64_t next;
} cand_best;

static void note_best(cand_best *b, const offer *o, const int *kis) {
  if (o->index >= 0 && (b->key < 0 || o->ready < b->next)) {
    b->next = o->ready;
    b->reason = o->reason;
    b->key = kis[o->index];
  }
}

/* Single server: one call over the cached first page.  Returns 1 with the
 * lease, 0 (none of the page can: *more says whether pages follow), 2 (the
 * cache is stale: read the page again), or an error. */
static int reserve_cached(rb *r, int mi, int64_t est, gkp_lease *out, cand_best *bst, int *more,
                          gkp_error *err) {
  int kis[PAGE], n = 0, np = 0;
  const char *pass[PAGE];
  offer o;
  for (int i = 0; i < r->npage; i++) {
    int ki = cfg_key(r, r->page[i]);
    if (ki >= 0) {
      kis[n++] = ki;
    } else {
      pass[np++] = r->page[i];
    }
  }
  if (n == 0) {
    return 2;
  }
  int rc = offer_keys(r, kis, n, mi, est, 0, pass, np, &o, err);
  if (rc != 0) {
    return rc;
  }
  if (o.status == 1) {
    rc = took(r, kis[o.index], mi, est, &o, out, err);
    return rc != 0 ? rc : 1;
  }
  if (o.status == -2) {
    return 2;
  }
  note_best(bst, &o, kis);
  *more = o.full;
  return 0;
}

static int reserve_locked(rb *r, const char *model, int64_t est, gkp_lease *out, gkp_wait *wait,
                          gkp_error *err) {
  int mi = model_index(r->cfg, model), kis[PAGE], more = 1;
  cand_best bst = {-1, GKP_WAIT_NONE, INT64_MAX};
  long start = 0;
  if (mi < 0) {
    return unknown_model(r, model, err);
  }
  if (!r->conn.cluster && r->npage > 0) {
    int rc = reserve_cached(r, mi, est, out, &bst, &more, err);
    if (rc == 1) {
      return 0;
    }
    if (rc < 0) {
      return rc == -EAGAIN ? unreachable(r, wait, err) : rc;
    }
    if (rc == 0) {
      start = PAGE; /* the first page was offered as it is now */
    }
  }
  for (; more; start += PAGE) {
    char a[24], b[24];
    int n = 0;
    snprintf(a, sizeof a, "%ld", start);
    snprintf(b, sizeof b, "%ld", start + PAGE - 1);
    redisReply *x = cmd(r, r->lru, err, 4, "ZRANGE", r->lru, a, b);
    if (x == NULL) {
      return err != NULL && err->code == -EAGAIN ? unreachable(r, wait, err) : -EIO;
    }
    size_t got = x->elements;
    if (start == 0) {
      keep_page(r, x);
    }
    for (size_t i = 0; i < got; i++) {
      int ki = x->element[i]->type == REDIS_REPLY_STRING ? cfg_key(r, x->element[i]->str) : -1;
      if (ki >= 0) {
        kis[n++] = ki;
      }
    }
    freeReplyObject(x);
    /* A cluster spreads the candidates over slots: one call each. */
    int step = r->conn.cluster ? 1 : n;
    for (int i = 0; i < n; i += step) {
      offer o;
      int rc = offer_keys(r, kis + i, step, mi, est, 0, NULL, 0, &o, err);
      if (rc != 0) {
        return rc == -EAGAIN ? unreachable(r, wait, err) : rc;
      }
      if (o.status == 1) {
        return took(r, kis[i + o.index], mi, est, &o, out, err);
      }
      note_best(&bst, &o, kis + i);
    }
    more = got >= PAGE;
  }
  return no_key(r, model, bst.key, bst.next, bst.reason, wait, err);
}

static int rb_reserve(gkp__backend *b, const char *model, int64_t est, gkp_lease *out,
                      gkp_wait *wait, gkp_error *err) {
  rb *r = (rb *)b;
  int rc;
  pthread_mutex_lock(&r->conn.mu);
  rc = reserve_locked(r, model, est, out, wait, err);
  pthread_mutex_unlock(&r->conn.mu);
  return rc;
}

static void endpoint_up(rb *r);

/* ---- lease verbs ------------------------------------------------------------------------ */

static int bad_lease(const gkp_lease *l, gkp_error *err) {
  if (l == NULL || l->id == 0 || l->project[0] == '\0') {
    return gkp__err(err, -EINVAL, "not a lease of this pool");
  }
  return 0;
}

static void lease_member(const gkp_lease *l, char *buf) {
  snprintf(buf, 24, "%" PRIu64, l->id >> 24);
}

static int rb_renew(gkp__backend *b, const gkp_lease *l, gkp_error *err) {
  rb *r = (rb *)b;
  char lk[KNAME], now[24], id[24], ttl[24];
  redisReply *x;
  int rc;
  if ((rc = bad_lease(l, err)) != 0) {
    return rc;
  }
  kname(lk, 'l', l->project, l->key_id);
  lease_member(l, id);
  snprintf(ttl, sizeof ttl, "%d", r->lease_ttl_ms);
  pthread_mutex_lock(&r->conn.mu);
  now_arg(r, now);
  const char *av[] = {lk, now, id, ttl};
  x = gkp__rconn_script(&r->conn, GKP__RS_RENEW, 1, 4, av, err);
  if (x == NULL) {
    rc = err != NULL && err->code != 0 ? err->code : -EIO;
  } else {
    rc = x->type == REDIS_REPLY_ARRAY && x->elements == 2 && reply_int(x->element[0]) == 1
             ? 0
             : gkp__err(err, -ESTALE, "the lease on key '%s' was reclaimed", l->key_id);
    if (x->type == REDIS_REPLY_ARRAY && x->elements == 2) {
      saw_time(r, reply_int(x->element[1]));
    }
    freeReplyObject(x);
  }
  pthread_mutex_unlock(&r->conn.mu);
  return rc;
}

/* One script over leases `idx` (of one slot).  Returns 0 or the errno of a
 * failed call (then each of them gets it). */
static int renew_group(rb *r, const gkp_lease *ls, const size_t *idx, size_t n, int *rcs,
                       gkp_error *err) {
  const char **av = calloc(2 * n + 2, sizeof *av);
  char(*names)[KNAME] = malloc(n * sizeof *names);
  char(*ids)[24] = malloc(n * sizeof *ids);
  char now[24], ttl[24];
  int rc = 0;
  if (av == NULL || names == NULL || ids == NULL) {
    rc = gkp__err(err, -ENOMEM, "out of memory");
    goto out;
  }
  now_arg(r, now);
  snprintf(ttl, sizeof ttl, "%d", r->lease_ttl_ms);
  for (size_t i = 0; i < n; i++) {
    kname(names[i], 'l', ls[idx[i]].project, ls[idx[i]].key_id);
    lease_member(&ls[idx[i]], ids[i]);
    av[i] = names[i];
    av[n + 2 + i] = ids[i];
  }
  av[n] = now;
  av[n + 1] = ttl;
  redisReply *x = gkp__rconn_script(&r->conn, GKP__RS_RENEW_MANY, (int)n, (int)(2 * n + 2), av,
                                    err);
  if (x == NULL) {
    rc = err != NULL && err->code != 0 ? err->code : -EIO;
  } else if (x->type != REDIS_REPLY_ARRAY || x->elements != n + 1) {
    rc = gkp__err(err, -EPROTO, "unexpected answer from %s to a lease renewal", r->conn.url.where);
  } else {
    saw_time(r, reply_int(x->element[0]));
    for (size_t i = 0; i < n; i++) {
      rcs[idx[i]] = reply_int(x->element[i + 1]) == 1 ? 0 : -ESTALE;
    }
  }
  freeReplyObject(x);
out:
  if (rc != 0) {
    for (size_t i = 0; i < n; i++) {
      rcs[idx[i]] = rc;
    }
  }
  free(av);
  free(names);
  free(ids);
  return rc;
}

/* A heartbeat's leases: one script on a single server; on a cluster one per
 * project (each script stays in one slot). */
static int rb_renew_many(gkp__backend *b, const gkp_lease *ls, size_t n, int *rcs,
                         gkp_error *err) {
  rb *r = (rb *)b;
  size_t *idx = malloc(n * sizeof *idx), ng;
  char *done = calloc(n, 1);
  int rc = 0;
  if (idx == NULL || done == NULL) {
    free(idx);
    free(done);
    for (size_t i = 0; i < n; i++) {
      rcs[i] = -ENOMEM;
    }
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  pthread_mutex_lock(&r->conn.mu);
  for (size_t i = 0; i < n; i++) {
    if (done[i]) {
      continue;
    }
    ng = 0;
    for (size_t j = i; j < n; j++) {
      if (done[j]) {
        continue;
      }
      if (bad_lease(&ls[j], NULL) != 0) {
        rcs[j] = -EINVAL;
        done[j] = 1;
      } else if (!r->conn.cluster || strcmp(ls[j].project, ls[i].project) == 0) {
        idx[ng++] = j;
        done[j] = 1;
      }
    }
    if (ng > 0) {
      int g = renew_group(r, ls, idx, ng, rcs, err);
      if (g != 0 && rc == 0) {
        rc = g;
      }
    }
  }
  pthread_mutex_unlock(&r->conn.mu);
  free(idx);
  free(done);
  return rc;
}

static int rb_release(gkp__backend *b, const gkp_lease *l, int sent, gkp_error *err) {
  rb *r = (rb *)b;
  char k[KNAME], lk[KNAME], m[KNAME], w[KNAME], id[24], st[24], est[24], ds[24], plu[24] = "";
  redisReply *x;
  int rc, gone = 0;
  if ((rc = bad_lease(l, err)) != 0) {
    return rc;
  }
  kname(k, 'k', l->project, l->key_id);
  kname(lk, 'l', l->project, l->key_id);
  kname(m, 'm', l->project, l->model);
  kname(w, 'w', l->project, l->model);
  lease_member(l, id);
  snprintf(st, sizeof st, "%" PRId64, l->started_ms);
  snprintf(est, sizeof est, "%" PRId64, l->est_tokens);
  snprintf(ds, sizeof ds, "%" PRId64, gkp_last_pacific_midnight(l->started_ms));
  pthread_mutex_lock(&r->conn.mu);
  int64_t before = own_last_used(r, l->id);
  if (before >= 0) {
    snprintf(plu, sizeof plu, "%" PRId64, before);
  }
  const char *av[] = {k, lk, m, w, id, sent ? "1" : "0", st, est, ds, plu};
  x = gkp__rconn_script(&r->conn, GKP__RS_RELEASE, 4, 10, av, err);
  rc = x == NULL ? (err != NULL && err->code != 0 ? err->code : -EIO) : 0;
  gone = x != NULL && reply_int(x) == 1;
  freeReplyObject(x);
  if (gone && !sent && before > 0) { /* never sent: the key's place in the LRU order back */
    freeReplyObject(cmd(r, r->lru, NULL, 5, "ZADD", r->lru, "XX", plu, l->key_id));
  }
  /* Unreachable: the lease ends on the server by itself. */
  own_remove(r, l->id);
  pthread_mutex_unlock(&r->conn.mu);
  return rc == -EAGAIN ? 0 : rc;
}

static int rb_record_usage(gkp__backend *b, const gkp_lease *l, const gkp_usage *u,
                           gkp_error *err) {
  rb *r = (rb *)b;
  char m[KNAME], w[KNAME], st[24], est[24], pt[24], out[24];
  redisReply *x;
  int rc;
  int64_t o = 0;
  if ((rc = bad_lease(l, err)) != 0) {
    return rc;
  }
  kname(m, 'm', l->project, l->model);
  kname(w, 'w', l->project, l->model);
  snprintf(st, sizeof st, "%" PRId64, l->started_ms);
  snprintf(est, sizeof est, "%" PRId64, l->est_tokens);
  snprintf(pt, sizeof pt, "%" PRId64, u != NULL ? u->prompt_tokens : (int64_t)-1);
  if (u != NULL) {
    o = (u->candidates_tokens > 0 ? u->candidates_tokens : 0) +
        (u->thoughts_tokens > 0 ? u->thoughts_tokens : 0);
  }
  snprintf(out, sizeof out, "%" PRId64, o);
  pthread_mutex_lock(&r->conn.mu);
  /* An answer came: on a single server the script marks the endpoint
   * reachable in the same call; a cluster keeps it in another slot. */
  int one = !r->conn.cluster, nk = 0;
  const char *av[7];
  av[nk++] = m;
  av[nk++] = w;
  if (one) {
    av[nk++] = r->endpoint;
  }
  const char *args[] = {st, est, pt, out};
  memcpy(av + nk, args, sizeof args);
  x = gkp__rconn_script(&r->conn, GKP__RS_USAGE, nk, nk + 4, av, err);
  rc = x == NULL ? (err != NULL && err->code != 0 ? err->code : -EIO) : 0;
  freeReplyObject(x);
  if (rc == 0 && !one) {
    endpoint_up(r);
  }
  pthread_mutex_unlock(&r->conn.mu);
  return rc;
}

/* One request's end as arguments of the finish script (9) and its keys
 * (4), in `buf` (13 strings). */
typedef struct fin_args {
  char k[KNAME], lk[KNAME], m[KNAME], w[KNAME];
  char id[24], st[24], est[24], ds[24], plu[24], pt[24], out[24];
  int64_t before;
} fin_args;

static void fin_fill(rb *r, const gkp__finish *f, fin_args *a) {
  const gkp_lease *l = &f->lease;
  int64_t o = 0;
  kname(a->k, 'k', l->project, l->key_id);
  kname(a->lk, 'l', l->project, l->key_id);
  kname(a->m, 'm', l->project, l->model);
  kname(a->w, 'w', l->project, l->model);
  lease_member(l, a->id);
  snprintf(a->st, sizeof a->st, "%" PRId64, l->started_ms);
  snprintf(a->est, sizeof a->est, "%" PRId64, l->est_tokens);
  snprintf(a->ds, sizeof a->ds, "%" PRId64, gkp_last_pacific_midnight(l->started_ms));
  snprintf(a->pt, sizeof a->pt, "%" PRId64, f->counted ? f->usage.prompt_tokens : (int64_t)-1);
  if (f->counted) {
    o = (f->usage.candidates_tokens > 0 ? f->usage.candidates_tokens : 0) +
        (f->usage.thoughts_tokens > 0 ? f->usage.thoughts_tokens : 0);
  }
  snprintf(a->out, sizeof a->out, "%" PRId64, o);
  a->before = own_last_used(r, l->id);
  a->plu[0] = '\0';
  if (a->before >= 0) {
    snprintf(a->plu, sizeof a->plu, "%" PRId64, a->before);
  }
}

/* One finish script over fs[0..n) (one slot, or a single server). */
static int finish_group(rb *r, const gkp__finish *fs, size_t n, gkp_error *err) {
  fin_args *a = calloc(n, sizeof *a);
  const char **av = calloc(13 * n + 2, sizeof *av);
  char count[24];
  int rc = 0, counted = 0, nk = 0, na = 0;
  if (a == NULL || av == NULL) {
    free(a);
    free(av);
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  for (size_t i = 0; i < n; i++) {
    fin_fill(r, &fs[i], &a[i]);
    counted |= fs[i].counted;
    av[nk++] = a[i].k;
    av[nk++] = a[i].lk;
    av[nk++] = a[i].m;
    av[nk++] = a[i].w;
  }
  /* An answer came: on a single server the script marks the endpoint
   * reachable in the same call; a cluster keeps it in another slot. */
  if (counted && !r->conn.cluster) {
    av[nk++] = r->endpoint;
  }
  snprintf(count, sizeof count, "%zu", n);
  const char **arg = av + nk;
  arg[na++] = count;
  for (size_t i = 0; i < n; i++) {
    const char *one[] = {a[i].id, fs[i].sent ? "1" : "0", a[i].st, a[i].est, a[i].ds, a[i].plu,
                         fs[i].counted ? "1" : "0", a[i].pt, a[i].out};
    memcpy(arg + na, one, sizeof one);
    na += 9;
  }
  redisReply *x = gkp__rconn_script(&r->conn, GKP__RS_FINISH, nk, nk + na, av, err);
  rc = x == NULL ? (err != NULL && err->code != 0 ? err->code : -EIO) : 0;
  for (size_t i = 0; i < n; i++) {
    int gone = x != NULL && x->type == REDIS_REPLY_ARRAY && i < x->elements &&
               reply_int(x->element[i]) == 1;
    if (gone && !fs[i].sent && a[i].before > 0) {
      /* never sent: the key's place in the LRU order back */
      freeReplyObject(
          cmd(r, r->lru, NULL, 5, "ZADD", r->lru, "XX", a[i].plu, fs[i].lease.key_id));
    }
    /* Unreachable: the lease ends on the server by itself. */
    own_remove(r, fs[i].lease.id);
  }
  freeReplyObject(x);
  if (rc == 0 && counted && r->conn.cluster) {
    endpoint_up(r);
  }
  free(a);
  free(av);
  return rc;
}

/* The ends of n requests: one script on a single server; on a cluster one
 * per request (each in its project's slot). */
static int rb_finish(gkp__backend *b, const gkp__finish *fs, size_t n, gkp_error *err) {
  rb *r = (rb *)b;
  int rc = 0, counted = 0;
  for (size_t i = 0; i < n; i++) {
    if ((rc = bad_lease(&fs[i].lease, err)) != 0) {
      return rc;
    }
    counted |= fs[i].counted;
  }
  pthread_mutex_lock(&r->conn.mu);
  if (!r->conn.cluster) {
    rc = finish_group(r, fs, n, err);
  } else {
    for (size_t i = 0; i < n; i++) {
      int one = finish_group(r, &fs[i], 1, err);
      rc = rc != 0 ? rc : one;
    }
  }
  pthread_mutex_unlock(&r->conn.mu);
  /* Releases on an unreachable server end by themselves: only a lost usage
   * is worth an error. */
  return rc == -EAGAIN && !counted ? 0 : rc;
}

/* ---- the endpoint record ------------------------------------------------------------------ */

/* The endpoint answered: it is reachable.  Best effort (a lost write only
 * leaves an old note that the next answer clears). */
static void endpoint_up(rb *r) {
  freeReplyObject(cmd(r, r->endpoint, NULL, 4, "HSET", r->endpoint, "since", "0"));
}

static int rb_release_unreached(gkp__backend *b, const gkp_lease *l, const char *url,
                                const char *reason, gkp_error *err) {
  rb *r = (rb *)b;
  char now[24];
  int rc = rb_release(b, l, 0, err);
  if (rc != 0) {
    return rc;
  }
  pthread_mutex_lock(&r->conn.mu);
  snprintf(now, sizeof now, "%" PRId64, server_now(r));
  redisReply *x = cmd(r, r->endpoint, NULL, 3, "HGET", r->endpoint, "since");
  int64_t since = reply_int(x);
  freeReplyObject(x);
  const char *fv[] = {
      "HSET", r->endpoint, "url",   url != NULL ? url : "", "reason", reason != NULL ? reason : "",
      "last", now,         "since", since > 0 ? "" : now};
  int n = since > 0 ? 8 : 10;
  freeReplyObject(gkp__rconn_cmd(&r->conn, r->endpoint, n, fv, NULL, NULL));
  pthread_mutex_unlock(&r->conn.mu);
  return 0;
}

static int64_t rb_endpoint_down(gkp__backend *b, char *buf, size_t len) {
  rb *r = (rb *)b;
  int64_t since = 0;
  if (buf != NULL && len > 0) {
    buf[0] = '\0';
  }
  pthread_mutex_lock(&r->conn.mu);
  redisReply *x = cmd(r, r->endpoint, NULL, 4, "HMGET", r->endpoint, "since", "reason");
  if (x != NULL && x->type == REDIS_REPLY_ARRAY && x->elements == 2) {
    since = to_local(r, reply_int(x->element[0]));
    if (since > 0 && buf != NULL && len > 0 && x->element[1]->type == REDIS_REPLY_STRING) {
      gkp__strlcpy(buf, x->element[1]->str, len);
    }
  }
  freeReplyObject(x);
  pthread_mutex_unlock(&r->conn.mu);
  return since;
}

/* ---- verdicts ------------------------------------------------------------------------------ */

#define KF 3
#define MF 11

static void fmt_i(char *buf, int64_t v) {
  snprintf(buf, 24, "%" PRId64, v);
}

/* Reads the fields a rule changes, applies it and writes them back if
 * nothing changed meanwhile.  1: written, 0: changed (retry), < 0 error. */
static int verdict_once(rb *r, const gkp_lease *l, gkp_verdict *v, gkp_error *err) {
  char k[KNAME], m[KNAME], nv[KF + MF][24], kind[16];
  const char *av[2 + 2 * (KF + MF) + 3];
  gkp__key_counts kc = {0};
  gkp__pm_counts pc;
  gkp__instant t;
  redisReply *xk, *xm, *x;
  int rc;

  kname(k, 'k', l->project, l->key_id);
  kname(m, 'm', l->project, l->model);
  xk = cmd(r, k, err, 5, "HMGET", k, "dis", "cdu", "cdk");
  if (xk == NULL) {
    return err != NULL && err->code != 0 ? err->code : -EIO;
  }
  const char *mv[] = {"HMGET", m,    "cdu", "cdk", "prv", "s429", "ssrv",
                      "lr",    "lt", "ld",  "lra", "lta", "lda"};
  xm = gkp__rconn_cmd(&r->conn, m, 2 + MF, mv, NULL, err);
  if (xm == NULL || xk->elements != KF || xm->elements != MF) {
    freeReplyObject(xk);
    freeReplyObject(xm);
    return err != NULL && err->code != 0 ? err->code : -EIO;
  }
  gkp__pm_counts_init(&pc);
  kc.disabled = (uint32_t)reply_int(xk->element[0]);
  kc.cooldown_until_ms = reply_int(xk->element[1]);
  kc.cooldown_kind = (int32_t)reply_int(xk->element[2]);
  pc.cooldown_until_ms = reply_int(xm->element[0]);
  pc.cooldown_kind = (int32_t)reply_int(xm->element[1]);
  pc.proven = (uint32_t)reply_int(xm->element[2]);
  pc.streak_429 = (uint32_t)reply_int(xm->element[3]);
  pc.streak_server = (uint32_t)reply_int(xm->element[4]);
  for (int i = 0; i < 3; i++) {
    pc.learned[i] =
        xm->element[5 + i]->type == REDIS_REPLY_STRING ? reply_int(xm->element[5 + i]) : -1;
  }
  gkp__instant_at(&t, server_now(r));
  v->cooldown_until_ms = to_local(r, gkp__apply_rule(&kc, &pc, v, &t, rnd(r)));
  av[0] = k;
  av[1] = m;
  for (int i = 0; i < KF; i++) {
    av[2 + i] = xk->element[i]->type == REDIS_REPLY_STRING ? xk->element[i]->str : "";
  }
  for (int i = 0; i < MF; i++) {
    av[2 + KF + i] = xm->element[i]->type == REDIS_REPLY_STRING ? xm->element[i]->str : "";
  }
  fmt_i(nv[0], kc.disabled);
  fmt_i(nv[1], kc.cooldown_until_ms);
  fmt_i(nv[2], kc.cooldown_kind);
  fmt_i(nv[3], pc.cooldown_until_ms);
  fmt_i(nv[4], pc.cooldown_kind);
  fmt_i(nv[5], pc.proven);
  fmt_i(nv[6], pc.streak_429);
  fmt_i(nv[7], pc.streak_server);
  for (int i = 0; i < 3; i++) {
    fmt_i(nv[8 + i], pc.learned[i]);
    fmt_i(nv[11 + i], pc.learned_at[i]);
  }
  for (int i = 0; i < KF + MF; i++) {
    av[2 + KF + MF + i] = nv[i];
  }
  snprintf(kind, sizeof kind, "%d",
           v->kind > GKP_KIND_NONE && v->kind < GKP__ERROR_KINDS ? v->kind : 0);
  av[2 + 2 * (KF + MF)] = kc.disabled_reason;
  av[3 + 2 * (KF + MF)] = kind;
  av[4 + 2 * (KF + MF)] = pc.last_error;
  x = gkp__rconn_script(&r->conn, GKP__RS_VERDICT, 2, (int)(sizeof av / sizeof av[0]), av, err);
  freeReplyObject(xk);
  freeReplyObject(xm);
  if (x == NULL) {
    return err != NULL && err->code != 0 ? err->code : -EIO;
  }
  rc = (int)reply_int(x);
  freeReplyObject(x);
  return rc;
}

static int rb_apply_verdict(gkp__backend *b, const gkp_lease *l, gkp_verdict *v, gkp_error *err) {
  memo_clear((rb *)b);
  rb *r = (rb *)b;
  int rc;
  if ((rc = bad_lease(l, err)) != 0) {
    return rc;
  }
  pthread_mutex_lock(&r->conn.mu);
  if (cfg_key(r, l->key_id) < 0) {
    rc = gkp__err(err, -EINVAL, "not a lease of this pool");
  } else {
    for (int i = 0; i < 20 && (rc = verdict_once(r, l, v, err)) == 0; i++) {
    }
    if (rc == 1 && v->http_status > 0) {
      endpoint_up(r); /* the server answered */
    }
  }
  pthread_mutex_unlock(&r->conn.mu);
  if (rc < 0) {
    return rc;
  }
  return rc == 1   ? 0
         : rc == 0 ? gkp__err(err, -EBUSY, "state %s: too much contention", r->conn.url.where)
                   : rc;
}

/* ---- administration ------------------------------------------------------------------------ */

static int reset_key(rb *r, int ki, gkp_error *err) {
  const gkp__key_cfg *kc = &r->cfg->keys[ki];
  size_t nm = r->cfg->nmodels;
  char(*names)[KNAME] = calloc(nm + 1, KNAME);
  const char **av = calloc(nm + 1, sizeof *av);
  redisReply *x;
  int rc;
  if (names == NULL || av == NULL) {
    free(names);
    free(av);
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  kname(names[0], 'k', kc->project, kc->id);
  av[0] = names[0];
  for (size_t mi = 0; mi < nm; mi++) {
    kname(names[1 + mi], 'm', kc->project, r->cfg->models[mi].id);
    av[1 + mi] = names[1 + mi];
  }
  x = nm + 1 <= 60
          ? gkp__rconn_script(&r->conn, GKP__RS_RESET, (int)(nm + 1), (int)(nm + 1), av, err)
          : NULL;
  rc = x == NULL ? (err != NULL && err->code != 0 ? err->code : -E2BIG) : 0;
  freeReplyObject(x);
  free(names);
  free(av);
  return rc;
}

static int admin_locked(rb *r, const gkp__admin *op, gkp_error *err) {
  char k[KNAME], until[24], kind[16];
  redisReply *x;
  int ki;
  if (op->kind == GKP__ADMIN_RESET && op->key_id == NULL) {
    for (size_t i = 0; i < r->cfg->nkeys; i++) {
      int rc = reset_key(r, (int)i, err);
      if (rc != 0) {
        return rc;
      }
    }
    return 0;
  }
  ki = cfg_key(r, op->key_id);
  if (ki < 0) {
    return unknown_key(r, op->key_id, err);
  }
  const gkp__key_cfg *kc = &r->cfg->keys[ki];
  if (op->kind == GKP__ADMIN_RESET) {
    return reset_key(r, ki, err);
  }
  kname(k, 'k', kc->project, kc->id);
  if (op->kind == GKP__ADMIN_DISABLE) {
    x = cmd(r, k, err, 6, "HSET", k, "dis", "1", "dreason",
            op->reason != NULL ? op->reason : "disabled by hand");
  } else {
    if (op->model != NULL) {
      if (model_index(r->cfg, op->model) < 0) {
        return gkp__err(err, -ENOENT, "unknown model '%s'", op->model);
      }
      kname(k, 'm', kc->project, op->model);
    }
    snprintf(until, sizeof until, "%" PRId64, op->until_ms);
    snprintf(kind, sizeof kind, "%d", op->until_ms > 0 ? op->cooldown_kind : GKP_KIND_NONE);
    x = cmd(r, k, err, 6, "HSET", k, "cdu", until, "cdk", kind);
  }
  if (x == NULL) {
    return err != NULL && err->code != 0 ? err->code : -EIO;
  }
  freeReplyObject(x);
  return 0;
}

static int rb_admin(gkp__backend *b, const gkp__admin *op, gkp_error *err) {
  memo_clear((rb *)b);
  rb *r = (rb *)b;
  int rc;
  pthread_mutex_lock(&r->conn.mu);
  rc = admin_locked(r, op, err);
  pthread_mutex_unlock(&r->conn.mu);
  return rc;
}

static int rb_count_available(gkp__backend *b, const char *model, gkp_error *err) {
  rb *r = (rb *)b;
  int mi, n = 0, rc = 0;
  pthread_mutex_lock(&r->conn.mu);
  mi = model_index(r->cfg, model);
  if (mi < 0) {
    rc = unknown_model(r, model, err);
  }
  for (size_t ki = 0; rc == 0 && ki < r->cfg->nkeys; ki++) {
    offer o;
    rc = offer_key(r, (int)ki, mi, 1, 1, &o, err);
    n += rc == 0 && o.status == 2;
  }
  pthread_mutex_unlock(&r->conn.mu);
  return rc != 0 ? rc : n;
}

static int rb_effective_limits(gkp__backend *b, const char *key_id, const char *model,
                               gkp_limits *out, gkp_error *err) {
  rb *r = (rb *)b;
  char m[KNAME];
  int ki, mi, rc = 0;
  redisReply *x;
  pthread_mutex_lock(&r->conn.mu);
  ki = cfg_key(r, key_id);
  mi = model_index(r->cfg, model);
  if (ki < 0 || mi < 0) {
    rc = ki < 0 ? unknown_key(r, key_id, err)
                : gkp__err(err, -ENOENT, "unknown model '%s'", model != NULL ? model : "");
  } else {
    gkp__pm_counts pc;
    gkp__pm_counts_init(&pc);
    kname(m, 'm', r->cfg->keys[ki].project, model);
    x = cmd(r, m, err, 8, "HMGET", m, "lr", "lt", "ld", "lra", "lta", "lda");
    if (x == NULL) {
      rc = err != NULL && err->code != 0 ? err->code : -EIO;
    } else {
      for (size_t i = 0; i < 3 && i + 3 < x->elements; i++) {
        if (x->element[i]->type == REDIS_REPLY_STRING) {
          pc.learned[i] = reply_int(x->element[i]);
          pc.learned_at[i] = reply_int(x->element[i + 3]);
        }
      }
      freeReplyObject(x);
      gkp__effective(&pc, &r->cfg->models[mi].limits, server_now(r), out);
    }
  }
  pthread_mutex_unlock(&r->conn.mu);
  return rc;
}

/* The largest TPM of any key's project for `model` and its fallbacks (-1 if
 * one is unknown or 0): one HMGET per (key, model), so an answer is kept for
 * a second per chain head unless `fresh` is asked for. */
static int rb_max_tpm(gkp__backend *b, const char *model, int fresh, int64_t *out, gkp_error *err) {
  rb *r = (rb *)b;
  int64_t best = 0, mono = gkp__mono_ms();
  int mi = model_index(r->cfg, model), slot = -1;
  *out = -1;
  if (mi < 0) {
    return 0;
  }
  pthread_mutex_lock(&r->memo_mu);
  for (int i = 0; mi >= 0 && i < 16 && slot < 0; i++) {
    if (strcmp(r->tpm_memo[i].model, model) == 0 || r->tpm_memo[i].model[0] == '\0' || i == 15) {
      slot = i;
    }
  }
  if (slot >= 0 && !fresh && strcmp(r->tpm_memo[slot].model, model) == 0 &&
      mono - r->tpm_memo[slot].at_mono < 1000) {
    *out = r->tpm_memo[slot].value;
    pthread_mutex_unlock(&r->memo_mu);
    return 0;
  }
  pthread_mutex_unlock(&r->memo_mu);
  for (size_t n = 0; mi >= 0 && n < r->cfg->nmodels && best >= 0; n++) {
    for (size_t ki = 0; ki < r->cfg->nkeys && best >= 0; ki++) {
      gkp_limits lim;
      int rc = rb_effective_limits(b, r->cfg->keys[ki].id, r->cfg->models[mi].id, &lim, err);
      if (rc != 0) {
        return rc;
      }
      best = lim.tpm <= 0 ? -1 : lim.tpm > best ? lim.tpm : best;
    }
    mi =
        r->cfg->models[mi].fallback != NULL ? model_index(r->cfg, r->cfg->models[mi].fallback) : -1;
  }
  *out = best;
  if (slot >= 0) {
    pthread_mutex_lock(&r->memo_mu);
    gkp__strlcpy(r->tpm_memo[slot].model, model, sizeof r->tpm_memo[slot].model);
    r->tpm_memo[slot].value = best;
    r->tpm_memo[slot].at_mono = mono;
    pthread_mutex_unlock(&r->memo_mu);
  }
  return 0;
}

static int rb_gc(gkp__backend *b, gkp_error *err) {
  rb *r = (rb *)b;
  int n = 0, rc = 0;
  pthread_mutex_lock(&r->conn.mu);
  for (size_t ki = 0; rc == 0 && ki < r->cfg->nkeys && r->cfg->nmodels + 3 < 60; ki++) {
    const gkp__key_cfg *kc = &r->cfg->keys[ki];
    char names[64][KNAME], now[24];
    const char *av[64];
    size_t nk = 0;
    kname(names[nk++], 'k', kc->project, kc->id);
    kname(names[nk++], 'l', kc->project, kc->id);
    for (size_t mi = 0; mi < r->cfg->nmodels; mi++) {
      kname(names[nk++], 'm', kc->project, r->cfg->models[mi].id);
    }
    for (size_t i = 0; i < nk; i++) {
      av[i] = names[i];
    }
    now_arg(r, now);
    av[nk] = now;
    redisReply *x = gkp__rconn_script(&r->conn, GKP__RS_GC, (int)nk, (int)nk + 1, av, err);
    if (x == NULL) {
      rc = err != NULL && err->code != 0 ? err->code : -EIO;
    } else {
      n += (int)reply_int(x);
      freeReplyObject(x);
    }
  }
  pthread_mutex_unlock(&r->conn.mu);
  return rc != 0 ? rc : n;
}

/* ---- status snapshot ------------------------------------------------------------------------ */

static const char *field(const redisReply *h, const char *name) {
  for (size_t i = 0; h != NULL && i + 1 < h->elements; i += 2) {
    if (h->element[i]->type == REDIS_REPLY_STRING && h->element[i + 1]->type == REDIS_REPLY_STRING &&
        strcmp(h->element[i]->str, name) == 0) {
      return h->element[i + 1]->str;
    }
  }
  return NULL;
}

static int64_t field_i(const redisReply *h, const char *name, int64_t dflt) {
  const char *v = field(h, name);
  return v != NULL && v[0] != '\0' ? strtoll(v, NULL, 10) : dflt;
}

/* Fills a snapshot's pair entry from its records. */
static void snap_pm(gkp__snap_pm *e, const redisReply *m, const redisReply *w,
                    const gkp__instant *t) {
  gkp__pm_counts *p = &e->c;
  gkp__pm_counts_init(p);
  p->cooldown_until_ms = field_i(m, "cdu", 0);
  p->cooldown_kind = (int32_t)field_i(m, "cdk", 0);
  p->proven = (uint32_t)field_i(m, "prv", 0);
  p->streak_429 = (uint32_t)field_i(m, "s429", 0);
  p->streak_server = (uint32_t)field_i(m, "ssrv", 0);
  p->day_start_ms = field_i(m, "ds", 0);
  p->day_count = field_i(m, "dc", 0);
  p->learned[0] = field_i(m, "lr", -1);
  p->learned[1] = field_i(m, "lt", -1);
  p->learned[2] = field_i(m, "ld", -1);
  p->learned_at[0] = field_i(m, "lra", 0);
  p->learned_at[1] = field_i(m, "lta", 0);
  p->learned_at[2] = field_i(m, "lda", 0);
  p->requests_total = (uint64_t)field_i(m, "rt", 0);
  p->tokens_in_total = (uint64_t)field_i(m, "tin", 0);
  p->tokens_out_total = (uint64_t)field_i(m, "tout", 0);
  for (int k = 1; k < GKP__ERROR_KINDS; k++) {
    char f[8];
    snprintf(f, sizeof f, "e%d", k);
    p->errors[k] = (uint64_t)field_i(m, f, 0);
  }
  gkp__strlcpy(p->last_error, field(m, "le"), sizeof p->last_error);
  e->requests_today = gkp__day_count(p, t);
  e->reqs_minute = e->tokens_minute = 0;
  for (size_t i = 0; w != NULL && i + 1 < w->elements; i += 2) {
    if (w->element[i]->type != REDIS_REPLY_STRING ||
        w->element[i + 1]->type != REDIS_REPLY_STRING ||
        (w->element[i]->str[0] != 'r' && w->element[i]->str[0] != 't')) {
      continue;
    }
    const char *f = w->element[i]->str;
    int64_t sec = strtoll(f + 1, NULL, 10), v = strtoll(w->element[i + 1]->str, NULL, 10);
    if (sec > t->dead_sec) {
      *(f[0] == 'r' ? &e->reqs_minute : &e->tokens_minute) += v;
    }
  }
}

static int snap_key(rb *r, gkp__snapshot *s, size_t ki, const gkp__instant *t, size_t *cap,
                    gkp_error *err) {
  const gkp__key_cfg *kc = &r->cfg->keys[ki];
  size_t nm = r->cfg->nmodels;
  char k[KNAME], l[KNAME], now[24];
  redisReply *x;
  kname(k, 'k', kc->project, kc->id);
  kname(l, 'l', kc->project, kc->id);
  x = cmd(r, k, err, 2, "HGETALL", k);
  if (x == NULL) {
    return -EAGAIN;
  }
  gkp__key_counts *c = &s->keys[ki].c;
  c->disabled = (uint32_t)field_i(x, "dis", 0);
  gkp__strlcpy(c->disabled_reason, field(x, "dreason"), sizeof c->disabled_reason);
  c->cooldown_until_ms = field_i(x, "cdu", 0);
  c->cooldown_kind = (int32_t)field_i(x, "cdk", 0);
  c->last_used_ms = field_i(x, "lu", 0);
  c->requests_total = (uint64_t)field_i(x, "rt", 0);
  freeReplyObject(x);
  snprintf(now, sizeof now, "(%" PRId64, s->now);
  x = cmd(r, l, err, 4, "ZCOUNT", l, now, "+inf");
  s->keys[ki].inflight = (int)reply_int(x);
  freeReplyObject(x);
  for (size_t mi = 0; mi < nm; mi++) {
    char m[KNAME], w[KNAME];
    redisReply *xm, *xw;
    s->pm_of[ki * nm + mi] = -1;
    kname(m, 'm', kc->project, r->cfg->models[mi].id);
    kname(w, 'w', kc->project, r->cfg->models[mi].id);
    xm = cmd(r, m, err, 2, "HGETALL", m);
    if (xm == NULL) {
      return -EAGAIN;
    }
    if (xm->elements == 0) {
      freeReplyObject(xm);
      continue;
    }
    xw = cmd(r, w, err, 2, "HGETALL", w);
    if (s->npms == *cap) {
      size_t nc = *cap ? *cap * 2 : 64;
      gkp__snap_pm *n = realloc(s->pms, nc * sizeof *n);
      if (n == NULL) {
        freeReplyObject(xm);
        freeReplyObject(xw);
        return -ENOMEM;
      }
      s->pms = n;
      *cap = nc;
    }
    snap_pm(&s->pms[s->npms], xm, xw, t);
    s->pm_of[ki * nm + mi] = (int)s->npms++;
    freeReplyObject(xm);
    freeReplyObject(xw);
  }
  return 0;
}

static int rb_snapshot(gkp__backend *b, gkp__snapshot **out, gkp_error *err) {
  rb *r = (rb *)b;
  gkp__snapshot *s = calloc(1, sizeof *s);
  gkp__instant t;
  size_t cap = 0;
  int rc = 0;
  *out = NULL;
  if (s == NULL || (s->where = strdup(r->conn.url.where)) == NULL) {
    free(s);
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  pthread_mutex_lock(&r->conn.mu);
  rc = gkp__rconn_connect(&r->conn, err);
  s->now = server_now(r);
  gkp__instant_at(&t, s->now);
  if (rc == 0) {
    redisReply *x =
        cmd(r, r->endpoint, err, 6, "HMGET", r->endpoint, "since", "last", "url", "reason");
    if (x != NULL && x->type == REDIS_REPLY_ARRAY && x->elements == 4) {
      s->down_since_ms = reply_int(x->element[0]);
      s->down_last_ms = reply_int(x->element[1]);
      if (s->down_since_ms > 0 && x->element[2]->type == REDIS_REPLY_STRING &&
          x->element[3]->type == REDIS_REPLY_STRING) {
        gkp__strlcpy(s->down_url, x->element[2]->str, sizeof s->down_url);
        gkp__strlcpy(s->down_reason, x->element[3]->str, sizeof s->down_reason);
      }
    }
    freeReplyObject(x);
  }
  s->cfg = gkp__config_ref(r->cfg);
  s->keys = calloc(r->cfg->nkeys + 1, sizeof *s->keys);
  s->pm_of = malloc(sizeof(int) * (r->cfg->nkeys * r->cfg->nmodels + 1));
  if (rc == 0 && (s->keys == NULL || s->pm_of == NULL)) {
    rc = gkp__err(err, -ENOMEM, "out of memory");
  }
  for (size_t ki = 0; rc == 0 && ki < r->cfg->nkeys; ki++) {
    rc = snap_key(r, s, ki, &t, &cap, err);
  }
  pthread_mutex_unlock(&r->conn.mu);
  if (rc != 0) {
    gkp__snapshot_free(s);
    return rc == -ENOMEM ? gkp__err(err, rc, "out of memory") : rc;
  }
  *out = s;
  return 0;
}

/* ---- import -------------------------------------------------------------------------------- */

/* Runs HSET on `name` with the given field/value pairs. */
static int hset(rb *r, const char *name, int n, const char **fv, gkp_error *err) {
  const char *av[2 + 2 * 40];
  redisReply *x;
  av[0] = "HSET";
  av[1] = name;
  for (int i = 0; i < 2 * n; i++) {
    av[2 + i] = fv[i];
  }
  x = gkp__rconn_cmd(&r->conn, name, 2 + 2 * n, av, NULL, err);
  if (x == NULL) {
    return err != NULL && err->code != 0 ? err->code : -EIO;
  }
  freeReplyObject(x);
  return 0;
}

static int import_key(rb *r, const gkp__key_cfg *kc, const gkp__key_counts *c, gkp_error *err) {
  char k[KNAME], v[5][24];
  kname(k, 'k', kc->project, kc->id);
  fmt_i(v[0], c->disabled);
  fmt_i(v[1], c->cooldown_until_ms);
  fmt_i(v[2], c->cooldown_kind);
  fmt_i(v[3], c->last_used_ms);
  fmt_i(v[4], (int64_t)c->requests_total);
  const char *fv[] = {"dis", v[0], "dreason", c->disabled_reason, "cdu", v[1], "cdk", v[2], "lu",
                      v[3],  "rt", v[4]};
  int rc = hset(r, k, 6, fv, err);
  if (rc == 0 && c->last_used_ms > 0) {
    freeReplyObject(cmd(r, r->lru, NULL, 5, "ZADD", r->lru, "XX", v[3], kc->id));
  }
  return rc;
}

static int import_pm(rb *r, const char *project, const char *model, const gkp__snap_pm *e,
                     int64_t now, gkp_error *err) {
  const gkp__pm_counts *p = &e->c;
  char m[KNAME], w[KNAME], v[16][24], ef[GKP__ERROR_KINDS][8], ev[GKP__ERROR_KINDS][24];
  const char *fv[2 * 40];
  int n = 0, rc;
  int64_t vals[16] = {p->cooldown_until_ms,
                      p->cooldown_kind,
                      p->proven,
                      p->streak_429,
                      p->streak_server,
                      p->day_start_ms,
                      p->day_count,
                      p->learned[0],
                      p->learned[1],
                      p->learned[2],
                      p->learned_at[0],
                      p->learned_at[1],
                      p->learned_at[2],
                      (int64_t)p->requests_total,
                      (int64_t)p->tokens_in_total,
                      (int64_t)p->tokens_out_total};
  static const char *names[16] = {"cdu", "cdk", "prv", "s429", "ssrv", "ds", "dc",  "lr",
                                  "lt",  "ld",  "lra", "lta",  "lda",  "rt", "tin", "tout"};
  kname(m, 'm', project, model);
  kname(w, 'w', project, model);
  for (int i = 0; i < 16; i++) {
    fmt_i(v[i], vals[i]);
    fv[2 * n] = names[i];
    fv[2 * n++ + 1] = v[i];
  }
  fv[2 * n] = "le";
  fv[2 * n++ + 1] = p->last_error;
  for (int k = 1; k < GKP__ERROR_KINDS && n < 40; k++) {
    snprintf(ef[k], sizeof ef[k], "e%d", k);
    fmt_i(ev[k], (int64_t)p->errors[k]);
    fv[2 * n] = ef[k];
    fv[2 * n++ + 1] = ev[k];
  }
  rc = hset(r, m, n, fv, err);
  if (rc == 0 && (e->reqs_minute > 0 || e->tokens_minute > 0)) {
    /* The minute's totals count from now: an upper bound, never less. */
    char rf[24], tf[24], rv[24], tv[24];
    snprintf(rf, sizeof rf, "r%" PRId64, now / 1000);
    snprintf(tf, sizeof tf, "t%" PRId64, now / 1000);
    fmt_i(rv, e->reqs_minute);
    fmt_i(tv, e->tokens_minute);
    const char *wv[] = {rf, rv, tf, tv};
    rc = hset(r, w, 2, wv, err);
  }
  return rc;
}

static int rb_import(gkp__backend *b, const gkp__snapshot *s, gkp_error *err) {
  rb *r = (rb *)b;
  size_t snm = s->cfg->nmodels;
  int rc = 0;
  pthread_mutex_lock(&r->conn.mu);
  int64_t now = server_now(r);
  for (size_t sk = 0; rc == 0 && sk < s->cfg->nkeys; sk++) {
    int ki = cfg_key(r, s->cfg->keys[sk].id);
    if (ki < 0) {
      continue;
    }
    const gkp__key_cfg *kc = &r->cfg->keys[ki];
    rc = import_key(r, kc, &s->keys[sk].c, err);
    for (size_t sm = 0; rc == 0 && sm < snm; sm++) {
      int pi = s->pm_of[sk * snm + sm];
      if (pi >= 0 && model_index(r->cfg, s->cfg->models[sm].id) >= 0) {
        rc = import_pm(r, kc->project, s->cfg->models[sm].id, &s->pms[pi], now, err);
      }
    }
  }
  pthread_mutex_unlock(&r->conn.mu);
  return rc;
}

/* ---- open and close ------------------------------------------------------------------------ */

/* ---- callers' counts ------------------------------------------------------------------------ */

/* A caller's counts are one string, read then written back by a script
 * that checks it did not change in between (retrying if it did). */
static int client_read(rb *r, const char *name, char *text, gkp__client_counts *c, gkp_error *err) {
  redisReply *x = cmd(r, name, err, 2, "GET", name);
  text[0] = '\0';
  memset(c, 0, sizeof *c);
  if (x == NULL) {
    return err != NULL && err->code != 0 ? err->code : -EIO;
  }
  if (x->type == REDIS_REPLY_STRING && x->len < GKP__CLIENT_TEXT_MAX) {
    memcpy(text, x->str, x->len);
    text[x->len] = '\0';
    gkp__client_decode(text, x->len, c); /* damaged: from zero */
  } else if (x->type != REDIS_REPLY_NIL) {
    freeReplyObject(x);
    return gkp__err(err, -EPROTO, "%s: %s is not a caller's record", r->conn.url.where, name);
  }
  freeReplyObject(x);
  return 0;
}

static int rb_client_count(gkp__backend *b, const char *id, int kind, int64_t rpm, int64_t rpd,
                           int64_t *retry_s, gkp_error *err) {
  rb *r = (rb *)b;
  char name[KNAME], old[GKP__CLIENT_TEXT_MAX], text[GKP__CLIENT_TEXT_MAX];
  gkp__client_counts c;
  int rc = 0;
  *retry_s = 0;
  snprintf(name, sizeof name, "gkp:client:{%s}", id);
  pthread_mutex_lock(&r->conn.mu);
  for (int attempt = 0;; attempt++) {
    if (attempt == 64) {
      rc = gkp__err(err, -EBUSY, "%s: caller %s's record keeps changing", r->conn.url.where, id);
      break;
    }
    if ((rc = client_read(r, name, old, &c, err)) != 0) {
      break;
    }
    *retry_s = gkp__client_count(&c, kind, server_now(r), rpm, rpd);
    gkp__client_encode(&c, text, sizeof text);
    const char *av[] = {name, old, text};
    redisReply *x = gkp__rconn_script(&r->conn, GKP__RS_CAS, 1, 3, av, err);
    if (x == NULL) {
      rc = err != NULL && err->code != 0 ? err->code : -EIO;
      break;
    }
    int done = x->type == REDIS_REPLY_INTEGER && x->integer == 1;
    int other = x->type != REDIS_REPLY_INTEGER || (x->integer != 0 && x->integer != 1);
    freeReplyObject(x);
    if (other) {
      rc = gkp__err(err, -EPROTO, "%s: unexpected answer to a caller's update", r->conn.url.where);
      break;
    }
    if (done) {
      break;
    }
  }
  pthread_mutex_unlock(&r->conn.mu);
  return rc;
}

static int rb_client_usage(gkp__backend *b, const char *id, gkp_client_usage *out, gkp_error *err) {
  rb *r = (rb *)b;
  char name[KNAME], text[GKP__CLIENT_TEXT_MAX];
  gkp__client_counts c;
  snprintf(name, sizeof name, "gkp:client:{%s}", id);
  memset(out, 0, sizeof *out);
  pthread_mutex_lock(&r->conn.mu);
  int rc = client_read(r, name, text, &c, err);
  if (rc == 0) {
    gkp__client_read(&c, server_now(r), out);
  }
  pthread_mutex_unlock(&r->conn.mu);
  return rc;
}

static const char *rb_where(gkp__backend *b) {
  return ((rb *)b)->conn.url.where;
}

static void rb_close(gkp__backend *b, int forked) {
  rb *r = (rb *)b;
  if (r == NULL) {
    return;
  }
  if (!forked && r->nown > 0 && r->conn.nodes[0].c != NULL) {
    for (size_t i = 0; i < r->nown; i++) {
      char lk[KNAME], id[24];
      kname(lk, 'l', r->own[i].project, r->own[i].key_id);
      snprintf(id, sizeof id, "%" PRIu64, r->own[i].id >> 24);
      freeReplyObject(cmd(r, lk, NULL, 3, "ZREM", lk, id));
    }
  }
  gkp__rconn_free(&r->conn);
  if (r->cfg != NULL) {
    gkp__config_unref(r->cfg);
  }
  free(r->ix);
  free(r->own);
  pthread_mutex_destroy(&r->memo_mu);
  free(r);
}

/* GKP_LEASE_TTL_MS, or $GEMINI_POOL_LEASE_TTL_MS (1 s to 60 s; for tests,
 * whose holders renew more often than the runner's default). */
static int lease_ttl(void) {
  const char *e = getenv("GEMINI_POOL_LEASE_TTL_MS");
  long v = e != NULL ? strtol(e, NULL, 10) : 0;
  return v >= 1000 && v <= GKP_LEASE_TTL_MS ? (int)v : GKP_LEASE_TTL_MS;
}

static void rb_set_lease_ttl(gkp__backend *b, int64_t ms) {
  rb *r = (rb *)b;
  pthread_mutex_lock(&r->conn.mu);
  r->lease_ttl_ms = ms > 0 && ms <= INT32_MAX ? (int)ms : GKP_LEASE_TTL_MS;
  pthread_mutex_unlock(&r->conn.mu);
}

/* ---- scores ------------------------------------------------------------------------------ */

/* One hash, gkp:{pool}:scores, field "TYPE\tCOMPLEXITY\tMODEL", value
 * count << 32 | sum: one HINCRBY adds a score atomically. */
#define SCORE_KEY "gkp:{pool}:scores"

static int rb_rate(gkp__backend *b, const char *task_type, const char *complexity,
                   const char *model, int score, gkp_error *err) {
  rb *r = (rb *)b;
  char field[3 * GKP_ID_MAX + 4], inc[32];
  snprintf(field, sizeof field, "%s\t%s\t%s", task_type, complexity, model);
  snprintf(inc, sizeof inc, "%lld", (long long)((1LL << 32) + score));
  pthread_mutex_lock(&r->conn.mu);
  redisReply *x = cmd(r, SCORE_KEY, err, 4, "HINCRBY", SCORE_KEY, field, inc);
  pthread_mutex_unlock(&r->conn.mu);
  if (x == NULL) {
    return err != NULL && err->code != 0 ? err->code : -EIO;
  }
  int rc = x->type == REDIS_REPLY_INTEGER
               ? 0
               : gkp__err(err, -EIO, "%s: HINCRBY %s: %s", rb_where(b), SCORE_KEY,
                          x->str != NULL ? x->str : "unexpected reply");
  freeReplyObject(x);
  return rc;
}

static int rb_scores(gkp__backend *b, gkp__score **out, size_t *n, gkp_error *err) {
  rb *r = (rb *)b;
  *out = NULL;
  *n = 0;
  pthread_mutex_lock(&r->conn.mu);
  redisReply *x = cmd(r, SCORE_KEY, err, 2, "HGETALL", SCORE_KEY);
  pthread_mutex_unlock(&r->conn.mu);
  if (x == NULL) {
    return err != NULL && err->code != 0 ? err->code : -EIO;
  }
  size_t cap = x->type == REDIS_REPLY_ARRAY ? x->elements / 2 : 0;
  gkp__score *s = calloc(cap > 0 ? cap : 1, sizeof *s);
  if (s == NULL) {
    freeReplyObject(x);
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  for (size_t i = 0; i + 1 < x->elements && cap > 0; i += 2) {
    const redisReply *f = x->element[i], *v = x->element[i + 1];
    if (f->str == NULL || v->str == NULL) {
      continue;
    }
    gkp__score *e = &s[*n];
    long long packed = strtoll(v->str, NULL, 10);
    if (sscanf(f->str, "%63[^\t]\t%15[^\t]\t%63s", e->task_type, e->complexity, e->model) == 3 &&
        packed > 0) {
      e->n = packed >> 32;
      e->sum = packed & 0xffffffffLL;
      (*n)++;
    }
  }
  freeReplyObject(x);
  *out = s;
  return 0;
}

static const gkp__backend_ops redis_ops = {
    .attach = rb_attach,
    .reserve = rb_reserve,
    .renew = rb_renew,
    .renew_many = rb_renew_many,
    .finish = rb_finish,
    .release = rb_release,
    .record_usage = rb_record_usage,
    .apply_verdict = rb_apply_verdict,
    .admin = rb_admin,
    .count_available = rb_count_available,
    .effective_limits = rb_effective_limits,
    .max_tpm = rb_max_tpm,
    .snapshot = rb_snapshot,
    .gc = rb_gc,
    .where = rb_where,
    .close = rb_close,
    .import = rb_import,
    .set_lease_ttl = rb_set_lease_ttl,
    .release_unreached = rb_release_unreached,
    .endpoint_down = rb_endpoint_down,
    .rate = rb_rate,
    .scores = rb_scores,
    .client_count = rb_client_count,
    .client_usage = rb_client_usage,
};

int gkp__redis_backend_open(const char *url, const char *env_dir, gkp_clock_fn clock,
                            void *clock_ud, gkp_log_fn log, void *log_ud, gkp__backend **out,
                            gkp_error *err) {
  gkp__rurl u;
  rb *r;
  int rc;
  *out = NULL;
  rc = gkp__rurl_parse(url, env_dir, &u, err);
  if (rc != 0) {
    return rc;
  }
  r = calloc(1, sizeof *r);
  if (r == NULL) {
    gkp__rurl_wipe(&u);
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  r->base.ops = &redis_ops;
  r->base.remote = 1;
  pthread_mutex_init(&r->memo_mu, NULL);
  r->clock = clock;
  r->clock_ud = clock_ud;
  r->log = log;
  r->log_ud = log_ud;
  r->rng = (uint64_t)gkp__now_ms() * 6364136223846793005ull ^ (uint64_t)getpid();
  snprintf(r->lru, sizeof r->lru, "gkp:{pool}:lru");
  snprintf(r->endpoint, sizeof r->endpoint, "gkp:{pool}:endpoint");
  r->lease_ttl_ms = lease_ttl();
  gkp__rconn_init(&r->conn, &u);
  pthread_mutex_lock(&r->conn.mu);
  rc = gkp__rconn_connect(&r->conn, err);
  pthread_mutex_unlock(&r->conn.mu);
  if (rc != 0) {
    rb_close(&r->base, 0);
    return rc;
  }
  *out = &r->base;
  return 0;
}
