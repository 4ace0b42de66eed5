/*
 * pool_impl.h - the pool object, shared by the engine's modules.
 */
#ifndef GKP_ENGINE_POOL_IMPL_H
#define GKP_ENGINE_POOL_IMPL_H

#include <pthread.h>
#include <stdint.h>

#include "config/config.h"
#include "engine/store.h"
#include "gkp.h"

struct gkp_pool {
  gkp__config *cfg; /* replaced by reload under cfg_lock (write) */
  pthread_rwlock_t cfg_lock;
  gkp__store *st;
  char *config_path; /* NULL when opened from text */
  gkp_clock_fn clock;
  void *clock_ud;
  gkp_log_fn log;
  void *log_ud;
  int pid;
  /* Everything below is guarded by the store's mutex (inside transactions). */
  int *key_slot; /* store slot of cfg->keys[i] */
  int *pm_cache; /* pm slot of (cfg key i, cfg model m), -1 unknown */
  uint64_t *own; /* ids of leases this pool holds */
  size_t nown, capown;
  uint64_t rng;
  /* A runner made on demand by gkp_run_task, freed at close (runner.c). */
  pthread_mutex_t task_mu;
  void *task_runner;
  void (*task_runner_free)(void *runner);
};

/* Logs one line through the pool's log callback, if any. */
void gkp__pool_log(const gkp_pool *pool, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Takes the configuration (read) and the state file's lock for work on
 * `model`.  Returns the model's index, or a negative errno (-ENOENT for an
 * unknown model) with nothing held. */
int gkp__pool_begin_model(gkp_pool *pool, const char *model, gkp_error *err);

/* Releases what gkp__pool_begin_model took. */
void gkp__pool_end(gkp_pool *pool);

/* Index of a model in the pool's configuration, or -1. */
int gkp__pool_model_index(const gkp_pool *pool, const char *model);

/* A pm record with nothing in it (for pairs not in the state yet). */
extern const gkp__pm_rec gkp__empty_pm;

/* When learned limit i (0 rpm, 1 tpm, 2 rpd) of a pm record stops applying:
 * the next midnight Pacific after it was learned; 0 if there is none. */
int64_t gkp__learned_until(const gkp__pm_rec *p, int i);

/* The limits that apply to a pm record at `now`: learned ones replace
 * configured ones until they heal (gkp__learned_until). */
void gkp__effective(const gkp__pm_rec *p, const gkp_limits *cfg, int64_t now, gkp_limits *out);

/* Notes that an answer came from the endpoint.  Inside a transaction. */
void gkp__endpoint_reached(gkp_pool *pool);

/* Whether a lease is still held: its owner is alive and its time has not
 * run out on both the wall clock and the boot clock. */
int gkp__lease_live(const gkp__lease_rec *l, int64_t now_ms);

/* Whether config key ki can take a request of `est` tokens on model mi now.
 * Returns 1, or 0 with *ready (INT64_MAX: never) and *reason (a
 * gkp_wait_reason).  Reaps dead leases on the way.  Inside a transaction. */
int gkp__key_eligible(gkp_pool *pool, int ki, int mi, int64_t est, int64_t now, int64_t *ready,
                      int *reason);

/* Removes the leases of key slot ks whose owner died or whose time ran out,
 * adding their number to *reaped (if given); returns how many live ones
 * remain.  Inside a transaction. */
int gkp__reap_leases(gkp_pool *pool, int ks, int64_t now, int *reaped);

#endif
