/*
 * pool_impl.h - the pool object, private to the engine (pool.c, rules.c,
 * status.c).  Front ends use engine/engine.h.
 *
 * Locks: cfg_mu only guards the swap of the configuration pointer (held for
 * a few instructions); reload_mu serialises reloads; the backend has its own
 * (for the mapped file: its mutex, then the file's flock).  No lock is held
 * while another is taken, except reload_mu around a backend verb.
 */
#ifndef GKP_ENGINE_POOL_IMPL_H
#define GKP_ENGINE_POOL_IMPL_H

#include <pthread.h>
#include <stdint.h>

#include "config/config.h"
#include "engine/backend.h"
#include "engine/engine.h"
#include "gkp.h"

struct gkp_pool {
  pthread_mutex_t cfg_mu;
  gkp__config *cfg; /* the snapshot in use; the pool holds a reference */
  pthread_mutex_t names_mu;
  char **names; /* ids returned by pointer, kept until close (pool.c) */
  size_t nnames, names_cap;
  pthread_mutex_t reload_mu;
  gkp__backend *be;
  char *config_path; /* NULL when opened from text */
  gkp_clock_fn clock;
  void *clock_ud;
  gkp_log_fn log;
  void *log_ud;
  int pid;              /* the process that opened it */
  unsigned fork_gen;    /* fork generation it was opened in (pool.c) */
  int fork_gen_unknown; /* fork watching failed: compare pids */
  /* A runner made on demand by gkp_run_task, freed at close. */
  pthread_mutex_t task_mu;
  void *task_runner;
  void (*task_runner_free)(void *runner);
  /* Routing's quota summary and scores, a second old at most (route_pool.c). */
  pthread_mutex_t route_mu;
  void *route_cache;
};

/* Logs one line through the pool's log callback, if any. */
void gkp__pool_log(const gkp_pool *pool, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* 0, or -ECHILD with err set when called in a process forked after the
 * pool was opened. */
int gkp__pool_check_fork(const gkp_pool *pool, gkp_error *err);

#endif
