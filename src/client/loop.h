/*
 * loop.h - the I/O event loop: one thread that owns a libcurl multi handle.
 *
 * Everything the client does happens on this one thread: HTTP transfers,
 * timers and functions posted from other threads.  Thousands of transfers in
 * flight and thousands of waiting timers hold no threads.  The thread sleeps
 * in curl_multi_poll() until a socket is ready, curl needs attention, the
 * nearest timer is due, or another thread posts work (which wakes it with
 * curl_multi_wakeup); it never polls busily.
 *
 * Threads:
 * - "loop thread" functions must be called from a callback running on the
 *   loop thread (a posted function, a timer, or an HTTP callback).  They
 *   are not locked.
 * - gkp__loop_post, gkp__loop_in_thread and gkp__loop_stop may be called
 *   from any thread (gkp__loop_stop not from the loop thread itself).
 *
 * Callbacks are never run from inside the call that registers them: a
 * posted function, a timer or a transfer's completion always runs later,
 * from the loop itself.
 *
 * Life cycle: gkp__loop_new, gkp__loop_start (once), work, gkp__loop_stop,
 * gkp__loop_free.  Stopping runs every function posted before the stop,
 * then ends every transfer still in flight (their owners see them end as
 * "cancelled"), then discards pending timers without running them.
 */
#ifndef GKP_CLIENT_LOOP_H
#define GKP_CLIENT_LOOP_H

#include <curl/curl.h>
#include <stdint.h>

#include "gkp.h"

typedef struct gkp__loop gkp__loop;

/* A function run on the loop thread (posted work, a timer). */
typedef void (*gkp__loop_fn)(gkp__loop *loop, void *ud);

/* Connection limits for the multi handle.  Zero fields take the default. */
typedef struct gkp__loop_opts {
  long max_host_connections;   /* CURLMOPT_MAX_HOST_CONNECTIONS, default 256 */
  long max_total_connections;  /* CURLMOPT_MAX_TOTAL_CONNECTIONS, default 0 (no limit) */
  long max_cached_connections; /* CURLMOPT_MAXCONNECTS: idle keep-alive cache, default 64 */
} gkp__loop_opts;

#define GKP__LOOP_MAX_HOST_CONNECTIONS 256
#define GKP__LOOP_MAX_CACHED_CONNECTIONS 64

/*
 * Initialises libcurl (once per process, thread-safely) and creates a loop
 * that is not running yet.  opts may be NULL.  Returns 0 and *out, or
 * -ENOMEM / -EIO with a message in err.  Any thread.
 */
int gkp__loop_new(gkp__loop **out, const gkp__loop_opts *opts, gkp_error *err);

/*
 * Stops the loop if it is still running and frees it.  Functions posted to
 * a loop that never started are dropped without running (their ud is not
 * freed).  Must not be called from the loop thread, nor while other threads
 * may still call gkp__loop_post.  NULL is a no-op.
 */
void gkp__loop_free(gkp__loop *loop);

/*
 * Spawns the loop thread (all signals blocked in it).  A loop is started at
 * most once.  Returns 0, -EALREADY, or a negative errno from pthread_create
 * with a message in err.  Any thread.
 */
int gkp__loop_start(gkp__loop *loop, gkp_error *err);

/*
 * Stops the loop and joins its thread.  On the way out the loop thread runs
 * every function posted before the stop, ends all transfers still in flight
 * (each owner's completion callback runs, reporting cancellation), and
 * discards pending timers without running them.  New posts are refused
 * (-ESHUTDOWN) from then on.  Idempotent; a no-op on a loop never started.
 * Any thread except the loop thread.
 */
void gkp__loop_stop(gkp__loop *loop);

/*
 * Queues fn(loop, ud) to run on the loop thread, in posting order, and wakes
 * the loop.  Returns 0; -ESHUTDOWN if the loop is stopping or stopped (fn
 * will not run: ud still belongs to the caller); -ENOMEM.  Any thread.
 * Functions posted before gkp__loop_start run once it starts.
 */
int gkp__loop_post(gkp__loop *loop, gkp__loop_fn fn, void *ud);

/* Whether the calling thread is this loop's thread.  Any thread. */
int gkp__loop_in_thread(const gkp__loop *loop);

/* The wall clock (CLOCK_REALTIME) in ms since the epoch: the engine's clock,
 * in which timer deadlines are given.  Any thread. */
int64_t gkp__loop_now_ms(void);

/* ---- Timers (loop thread) ------------------------------------------------ */

/*
 * Runs fn(loop, ud) once on the loop thread when the wall clock reaches
 * `when_ms` (ms since the epoch, CLOCK_REALTIME; a time in the past means
 * "as soon as possible").  The deadline is converted to the monotonic clock
 * when the timer is added, so a later step of the wall clock neither fires
 * the timer early nor holds it back: it fires after the interval that
 * remained when it was added, and the callback should re-check its own
 * wall-clock condition.  Timers with the same deadline fire in the order
 * they were added (unless the wall clock stepped between the two adds).
 * A timer added from a timer callback with a past deadline fires on the
 * next turn of the loop, not in the same one.
 * Returns the timer id (never 0), or 0 if memory ran out.  O(log n).
 */
uint64_t gkp__loop_timer_add(gkp__loop *loop, int64_t when_ms, gkp__loop_fn fn, void *ud);

/* As gkp__loop_timer_add, `delay_ms` from now. */
uint64_t gkp__loop_timer_after(gkp__loop *loop, int64_t delay_ms, gkp__loop_fn fn, void *ud);

/*
 * Cancels a timer that has not fired.  Returns 0, or -ENOENT if the id is
 * unknown, already fired (or firing now) or already cancelled.  O(log n).
 */
int gkp__loop_timer_cancel(gkp__loop *loop, uint64_t id);

/* Number of pending timers. */
size_t gkp__loop_timer_count(const gkp__loop *loop);

/* ---- Handles (loop thread) ----------------------------------------------- */

/*
 * A table of ids for objects that live on the loop, so that other threads
 * can name them safely (an id of an object already gone simply finds
 * nothing).  `tag` says what kind of object an id names: a lookup with
 * another tag finds nothing.  Ids are never 0 and not reused soon (a slot's
 * generation changes on every reuse).
 */
uint64_t gkp__loop_handle_add(gkp__loop *loop, int tag, void *ptr); /* 0 on ENOMEM */
void *gkp__loop_handle_get(const gkp__loop *loop, uint64_t id, int tag);
void gkp__loop_handle_del(gkp__loop *loop, uint64_t id);

/* Runs fn(ptr) on the loop thread for the object that handle `id` (of kind
 * `tag`) names, if it still exists then; nothing if it is gone.  Returns 0,
 * -ESHUTDOWN or -ENOMEM.  Any thread. */
int gkp__loop_post_handle(gkp__loop *loop, uint64_t id, int tag, void (*fn)(void *ptr));

/* Tags used by the client modules. */
enum { GKP__HANDLE_HTTP = 1, GKP__HANDLE_GEMINI = 2 };

/* ---- Transfers (loop thread; for http.c) -------------------------------- */

typedef struct gkp__loop_xfer gkp__loop_xfer;

/*
 * Called once on the loop thread when a transfer has ended and its easy
 * handle is out of the multi handle.  `rc` is curl's result; `aborted` is 1
 * when the transfer was ended by gkp__loop_xfer_abort or by the loop
 * stopping (rc is then the code given to the abort).  The callee owns the
 * easy handle and the xfer again and may free both.
 */
typedef void (*gkp__loop_xfer_done_fn)(gkp__loop_xfer *x, CURLcode rc, int aborted);

/*
 * A transfer, embedded in its owner's object.  The owner sets `easy` and
 * `done`; the rest is private to loop.c.
 */
struct gkp__loop_xfer {
  CURL *easy;
  gkp__loop_xfer_done_fn done;
  /* private */
  gkp__loop_xfer *prev, *next; /* in the pending or active list */
  gkp__loop_xfer *queue_next;  /* in the done queue */
  int state;
  int abort_requested;
  CURLcode rc;
};

/*
 * Adds a transfer to the multi handle (or, while curl is inside a callback,
 * as soon as it returns).  Sets CURLOPT_PRIVATE of the easy handle to x and
 * CURLOPT_SHARE to the loop's share handle (TLS sessions).  Returns 0, or
 * -ESHUTDOWN while the loop is stopping (done will not be called), or
 * -EIO if curl refused it.  Loop thread.
 */
int gkp__loop_xfer_add(gkp__loop *loop, gkp__loop_xfer *x);

/*
 * Ends a transfer early.  Its done callback runs later, at a point where
 * curl is not inside a callback, with aborted = 1 and `rc`.  Safe from any
 * loop callback, including the transfer's own curl callbacks.  Returns 1 if
 * the transfer will end as aborted, 0 if it had already ended and its done
 * callback is queued with the real result.  Must not be called once done
 * has run (the owner may have freed x).  Loop thread.
 */
int gkp__loop_xfer_abort(gkp__loop *loop, gkp__loop_xfer *x, CURLcode rc);

/* Number of transfers added and not yet done. */
size_t gkp__loop_xfer_count(const gkp__loop *loop);

#endif
