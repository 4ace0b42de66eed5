/*
 * backend.h - the verbs every state backend implements.
 *
 * The engine (pool.c, rules.c, status.c) keeps the configuration and the
 * public API; a backend keeps the shared state and nothing else touches it.
 * Each verb is one atomic step against the shared state, with the time
 * taken by the backend itself (the mapped file: the pool's clock; a network
 * store: its own), so that a verb never mixes two instants or two views.
 * The arithmetic (windows, day counts, eligibility, error rules) is the
 * shared pure code of quota.h, over the plain values declared there.
 *
 * The first backend is the mapped state file (file_backend.c over store.c).
 */
#ifndef GKP_ENGINE_BACKEND_H
#define GKP_ENGINE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "engine/engine.h"
#include "engine/quota.h"
#include "gkp.h"

/* Administrative changes (one verb). */
enum gkp__admin_kind {
  GKP__ADMIN_COOLDOWN, /* key (and model) cooldown until `until_ms`, any length */
  GKP__ADMIN_DISABLE,  /* disable key with `reason` */
  GKP__ADMIN_RESET,    /* clear cooldowns, streaks, disabled: key_id, or all when NULL */
};

typedef struct gkp__admin {
  int kind;
  const char *key_id;
  const char *model; /* COOLDOWN: NULL for key-wide */
  int64_t until_ms;
  int cooldown_kind;
  const char *reason;
} gkp__admin;

/* One key's state in a status snapshot. */
typedef struct gkp__snap_key {
  gkp__key_counts c;
  int inflight;
} gkp__snap_key;

/* One (project, model) pair's state in a status snapshot. */
typedef struct gkp__snap_pm {
  int64_t requests_today;
  int64_t reqs_minute, tokens_minute;
  gkp__pm_counts c; /* its window is not copied */
} gkp__snap_pm;

/* The state behind a status document, copied under the lock and rendered
 * after it.  Entries follow the configuration the backend had attached. */
typedef struct gkp__snapshot {
  int64_t now;
  const gkp__config *cfg; /* a reference */
  gkp__snap_key *keys;    /* cfg->nkeys */
  int *pm_of;             /* cfg->nkeys * cfg->nmodels: index in pms, -1 none */
  gkp__snap_pm *pms;
  size_t npms;
  char *where; /* the state's location */
  /* The endpoint as last seen unreachable (down_since_ms 0: reachable). */
  int64_t down_since_ms, down_last_ms;
  char down_url[256];
  char down_reason[GKP_REASON_MAX];
} gkp__snapshot;

void gkp__snapshot_free(gkp__snapshot *s);

/* The scores of one (task type, complexity, model): rate verb, routing. */
typedef struct gkp__score {
  char task_type[GKP_ID_MAX];
  char complexity[16];
  char model[GKP_ID_MAX];
  int64_t sum, n;
} gkp__score;

typedef struct gkp__backend gkp__backend;

typedef struct gkp__backend_ops {
  /* Makes cfg's keys the candidates (in the backend's least recently used
   * order) and cfg's models the known ones.  `reload`: slots of keys the
   * configuration no longer names are reclaimed and disabled keys enabled. */
  int (*attach)(gkp__backend *b, const gkp__config *cfg, int reload, gkp_error *err);
  /* Leases the least recently used eligible key and counts the request, or
   * returns -EAGAIN with *wait: the soonest time a key may be and why. */
  int (*reserve)(gkp__backend *b, const char *model, int64_t est_tokens, gkp_lease *out,
                 gkp_wait *wait, gkp_error *err);
  /* Extends a lease held by this process; -ESTALE if it is gone. */
  int (*renew)(gkp__backend *b, const gkp_lease *l, gkp_error *err);
  /* Extends n leases in one step (one transaction, one script): rcs[i] is
   * 0 or -ESTALE.  Returns 0, or a negative errno (err set) when the state
   * could not be reached at all (every rcs[i] is then that errno). */
  int (*renew_many)(gkp__backend *b, const gkp_lease *ls, size_t n, int *rcs, gkp_error *err);
  /* Ends a lease; not sent: the counts are given back. */
  int (*release)(gkp__backend *b, const gkp_lease *l, int sent, gkp_error *err);
  /* Ends a lease whose request never reached the server (its counts given
   * back, no key penalised) and notes the endpoint unreachable. */
  int (*release_unreached)(gkp__backend *b, const gkp_lease *l, const char *url, const char *reason,
                           gkp_error *err);
  /* When the endpoint was first seen unreachable (0: reachable), the reason
   * in buf.  An answer of the server (usage, an error with an HTTP status)
   * clears it. */
  int64_t (*endpoint_down)(gkp__backend *b, char *buf, size_t len);
  int (*record_usage)(gkp__backend *b, const gkp_lease *l, const gkp_usage *u, gkp_error *err);
  /* The ends of n requests in one step: for each, record_usage unless not
   * counted, then release(sent). */
  int (*finish)(gkp__backend *b, const gkp__finish *f, size_t n, gkp_error *err);
  /* Applies a classified error; sets v->cooldown_until_ms. */
  int (*apply_verdict)(gkp__backend *b, const gkp_lease *l, gkp_verdict *v, gkp_error *err);
  int (*admin)(gkp__backend *b, const gkp__admin *op, gkp_error *err);
  int (*count_available)(gkp__backend *b, const char *model, gkp_error *err);
  int (*effective_limits)(gkp__backend *b, const char *key_id, const char *model, gkp_limits *out,
                          gkp_error *err);
  /* The largest per-minute input-token limit (TPM) any configured key has
   * for `model` and its fallbacks, learned limits included; -1 if a limit is
   * unknown or 0 (or the model unknown).  Cheap: a backend may answer from a
   * value at most a second old unless `fresh` (see file_backend.h). */
  int (*max_tpm)(gkp__backend *b, const char *model, int fresh, int64_t *out, gkp_error *err);
  int (*snapshot)(gkp__backend *b, gkp__snapshot **out, gkp_error *err);
  /* Removes expired cooldowns and leases; returns how many. */
  int (*gc)(gkp__backend *b, gkp_error *err);
  /* Sets how long this process's leases live unless renewed (tests). */
  void (*set_lease_ttl)(gkp__backend *b, int64_t ms);
  /* Where the state lives (a path, a URL), for messages. */
  const char *(*where)(gkp__backend *b);
  /* Releases the leases this process holds (unless `forked`) and frees. */
  void (*close)(gkp__backend *b, int forked);
  /* A caller's counts (client_counts.h), shared by every process on the
   * state: `client_count` admits a request (*retry_s 0) or refuses it
   * (*retry_s > 0), or counts an error (GKP__CLIENT_ERROR), in one step;
   * `client_usage` reads them as of now. */
  int (*client_count)(gkp__backend *b, const char *id, int kind, int64_t rpm, int64_t rpd,
                      int64_t *retry_s, gkp_error *err);
  int (*client_usage)(gkp__backend *b, const char *id, gkp_client_usage *out, gkp_error *err);
  /* Writes what a snapshot of another state holds (counts, the minute's
   * totals as of now, cooldowns, learned limits, disabled keys) over this
   * state's records of the keys and models both configurations name. */
  int (*import)(gkp__backend *b, const gkp__snapshot *s, gkp_error *err);
  /* Adds one score (1..5) for a (task type, complexity, model), shared by
   * every process of the state; `scores` reads them all, summed. */
  int (*rate)(gkp__backend *b, const char *task_type, const char *complexity, const char *model,
              int score, gkp_error *err);
  int (*scores)(gkp__backend *b, gkp__score **out, size_t *n, gkp_error *err);
} gkp__backend_ops;

struct gkp__backend {
  const gkp__backend_ops *ops;
  /* A verb may wait on the network (Redis): callers on an event loop run
   * them on a thread of their own.  0: memory work under a lock only. */
  int remote;
};

/* The mapped-file backend.  `clock` NULL: the real clock.  `log` gets what
 * the store has to say (moved aside, upgraded). */
int gkp__file_backend_open(const char *path, gkp_clock_fn clock, void *clock_ud, gkp_log_fn log,
                           void *log_ud, gkp__backend **out, gkp_error *err);

/* The mapped-file backend's scores, in a file beside the state file
 * (fb_scores.c): one appended line per score. */
int gkp__fb_rate(gkp__backend *b, const char *task_type, const char *complexity, const char *model,
                 int score, gkp_error *err);
int gkp__fb_scores(gkp__backend *b, gkp__score **out, size_t *n, gkp_error *err);

/* Configuration snapshots are shared by reference (pool.c). */
const gkp__config *gkp__config_ref(const gkp__config *cfg);
void gkp__config_unref(const gkp__config *cfg);

/* What every backend says when a reservation finds no eligible key: fills
 * *wait (if given) with `reason`, `next` (INT64_MAX: never) and the key
 * `next_key` (an index into cfg's keys, -1: none) that frees up first, and
 * err with one line.  Returns -EAGAIN. */
int gkp__no_key(const gkp__config *cfg, const char *model, int next_key, int64_t next, int reason,
                gkp_wait *wait, gkp_error *err);

#endif
