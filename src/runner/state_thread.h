/*
 * state_thread.h - the runner's calls into the state backend, off its loop.
 *
 * A backend whose verbs may wait on the network (Redis) is called from a
 * thread of its own, never from the loop thread: the runner queues an
 * operation, the state thread runs its verb with the pool's ordinary
 * synchronous calls, and the operation's continuation is posted back to
 * the loop.  Operations run one after another in the order they were
 * queued (so a lease's renewal never overtakes its release); whatever is
 * queued when the thread wakes is run as one batch and handed back to the
 * loop in one post.
 *
 * Threads: gkp__state_submit on the loop thread; `run` on the state thread;
 * `done` on the loop thread, or on the state thread with `orphan` set when
 * the loop has already stopped (then it may only free what it owns and end
 * leases, which it does with the pool's synchronous calls).
 */
#ifndef GKP_RUNNER_STATE_THREAD_H
#define GKP_RUNNER_STATE_THREAD_H

#include "client/loop.h"
#include "engine/engine.h"
#include "gkp.h"

typedef struct gkp__sop gkp__sop;

struct gkp__sop {
  gkp__sop *next; /* private */
  /* A request's end, if any: the ends of one batch are sent together in one
   * step of the backend (gkp__pool_finish_many), before the batch's verbs
   * (ending a lease sooner only frees its key sooner). */
  const gkp__finish *fin;
  /* The verb (the state thread), or NULL for `fin` alone.  Must not touch
   * what the loop owns. */
  void (*run)(gkp__sop *op);
  /* The continuation; frees op.  `orphan`: the loop is gone. */
  void (*done)(gkp__sop *op, int orphan);
};

typedef struct gkp__state_thread gkp__state_thread;

/* Starts a state thread for `pool` whose continuations go to `loop`.  0, or
 * a negative errno with err. */
int gkp__state_thread_new(gkp__loop *loop, gkp_pool *pool, gkp__state_thread **out,
                          gkp_error *err);

/* Queues op (loop thread). */
void gkp__state_submit(gkp__state_thread *t, gkp__sop *op);

/* Runs what is still queued (each done with `orphan` set unless the loop
 * still takes posts), stops and frees the thread.  Called after the loop
 * has stopped.  NULL is a no-op. */
void gkp__state_thread_free(gkp__state_thread *t);

#endif
