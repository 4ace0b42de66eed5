/*
 * engine.h - what the front ends (runner, filesystem, CLI) use of the engine
 * beyond gkp.h.  They never see the pool's insides nor take its locks.
 *
 * The configuration is an immutable, reference-counted snapshot: take one
 * with gkp__pool_config, read it as long as needed, drop it with
 * gkp__config_unref.  A reload swaps in a new snapshot; readers of the old
 * one are never disturbed.
 */
#ifndef GKP_ENGINE_ENGINE_H
#define GKP_ENGINE_ENGINE_H

#include <stddef.h>

#include "config/config.h"
#include "gkp.h"

/* The configuration in use, with a reference the caller drops. */
const gkp__config *gkp__pool_config(gkp_pool *pool);

/* Drops a reference taken by gkp__pool_config.  NULL is a no-op. */
void gkp__config_unref(const gkp__config *cfg);

/* Index of a model in a configuration, or -1. */
int gkp__config_model_index(const gkp__config *cfg, const char *model);

/* The largest per-minute input-token limit (TPM) any key has for `model`
 * and its fallbacks, learned limits included, in *out; -1 if a limit is
 * unknown or 0, or the model unknown.  One call, cost independent of the
 * number of keys most of the time: the answer may be up to a second old
 * (changes by other processes) unless `fresh`.  0 or a negative errno. */
int gkp__pool_max_tpm(gkp_pool *pool, const char *model, int fresh, int64_t *out, gkp_error *err);

/* The runner gkp_run_task uses, made by `make` on first use and freed by
 * `free_fn` when the pool closes.  NULL with err if `make` failed. */
void *gkp__pool_task_runner(gkp_pool *pool, void *(*make)(gkp_pool *pool, gkp_error *err),
                            void (*free_fn)(void *runner), gkp_error *err);

/* Copies what one pool's state holds (counts, cooldowns, learned limits,
 * disabled keys) into another's, for the keys and models both name: moving
 * a pool between a state file and Redis.  0 or a negative errno with err. */
int gkp__state_copy(gkp_pool *from, gkp_pool *to, gkp_error *err);
/* Whether the pool's state verbs may wait on the network (a Redis state):
 * then an event loop must not call them itself.  0 for the state file,
 * whose verbs are memory work under its lock. */
int gkp__pool_state_remote(const gkp_pool *pool);

/* Renews n leases in one step of the state backend; rcs[i] is 0 or the
 * lease's own failure (-ESTALE: reclaimed).  0 or a negative errno (err
 * set) when the state could not be reached. */
int gkp__pool_renew_leases(gkp_pool *pool, const gkp_lease *ls, size_t n, int *rcs,
                           gkp_error *err);

/* The end of a request in one step: gkp_record_usage(usage) unless usage
 * is NULL, then gkp_release(sent). */
int gkp__pool_finish(gkp_pool *pool, const gkp_lease *lease, const gkp_usage *usage, int sent,
                     gkp_error *err);

/* The end of one request, for gkp__pool_finish_many. */
typedef struct gkp__finish {
  gkp_lease lease;
  gkp_usage usage;
  int counted; /* a 2xx answer: its usage is recorded */
  int sent;
} gkp__finish;

/* The ends of n requests in one step of the backend (one transaction, one
 * script on a single Redis server). */
int gkp__pool_finish_many(gkp_pool *pool, const gkp__finish *f, size_t n, gkp_error *err);

/* Sets how long the leases this pool takes live unless renewed (default
 * GKP_LEASE_TTL_MS); for tests of the heartbeat in real time. */
void gkp__pool_set_lease_ttl(gkp_pool *pool, int64_t ms);

#endif
