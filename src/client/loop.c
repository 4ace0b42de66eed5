#include "client/loop.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/err.h"
#include "common/timeutil.h"

/* The longest single sleep; the loop wakes for anything that matters anyway. */
#define LOOP_MAX_SLEEP_MS 3600000
/* A change of the wall-minus-monotonic offset larger than this is a clock step. */
#define CLOCK_STEP_MS 50
/* Deadlines further than this (100 years) from now are clamped. */
#define MAX_TIMER_DELAY_MS ((int64_t)100 * 366 * 24 * 3600 * 1000)

enum { XFER_NEW = 0, XFER_PENDING, XFER_ACTIVE, XFER_DONE };

/* A function posted from any thread. */
typedef struct post {
  struct post *next;
  gkp__loop_fn fn;
  void *ud;
} post;

/* A timer; slots are reused, `gen` tells reuses apart in ids. */
typedef struct timer_slot {
  int64_t due; /* CLOCK_MONOTONIC ms */
  uint64_t seq;
  gkp__loop_fn fn;
  void *ud;
  uint32_t gen;
  int32_t heap_idx; /* -1 when the slot is free */
  uint32_t next_free;
} timer_slot;

typedef struct handle_slot {
  void *ptr;
  int tag; /* 0 when free */
  uint32_t gen;
  uint32_t next_free;
} handle_slot;

#define NO_SLOT UINT32_MAX

struct gkp__loop {
  CURLM *multi;
  CURLSH *share;

  /* Owner side. */
  pthread_mutex_t stop_mu; /* serialises start/stop */
  pthread_t thread;
  int started;
  int joined;

  /* Shared with other threads, under mu. */
  pthread_mutex_t mu;
  post *post_head, *post_tail;
  int stop_requested;
  int closed; /* posts are refused */

  /* Loop thread only. */
  int in_curl;             /* inside curl_multi_perform: curl callbacks may be running */
  int closing;             /* shutting down: no new transfers */
  gkp__loop_xfer *pending; /* added while in_curl, not in the multi yet */
  gkp__loop_xfer *active;  /* in the multi */
  gkp__loop_xfer *done_head, *done_tail;
  size_t nxfers;
  size_t aborts_deferred;

  timer_slot *timers;
  uint32_t ntimer_slots, timer_free;
  uint32_t *heap;
  size_t heap_len;
  uint64_t timer_seq;
  int64_t mono_offset; /* CLOCK_MONOTONIC minus CLOCK_REALTIME, in ms */

  handle_slot *handles;
  uint32_t nhandle_slots, handle_free;
};

static __thread const gkp__loop *current_loop;

/* ---- clocks ---------------------------------------------------------------- */

int64_t gkp__loop_now_ms(void) {
  return gkp__now_ms();
}

/* ---- life cycle ------------------------------------------------------------ */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_OK;

static void curl_init_once(void) {
  curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int gkp__loop_new(gkp__loop **out, const gkp__loop_opts *opts, gkp_error *err) {
  *out = NULL;
  pthread_once(&curl_once, curl_init_once);
  if (curl_init_rc != CURLE_OK) {
    return gkp__err(err, -EIO, "libcurl could not be initialised: %s",
                    curl_easy_strerror(curl_init_rc));
  }
  gkp__loop *loop = calloc(1, sizeof *loop);
  if (loop == NULL) {
    return gkp__err(err, -ENOMEM, "out of memory creating the I/O loop");
  }
  loop->timer_free = NO_SLOT;
  loop->handle_free = NO_SLOT;
  loop->mono_offset = gkp__mono_ms() - gkp__loop_now_ms();
  pthread_mutex_init(&loop->mu, NULL);
  pthread_mutex_init(&loop->stop_mu, NULL);
  loop->multi = curl_multi_init();
  loop->share = curl_share_init();
  if (loop->multi == NULL || loop->share == NULL) {
    gkp__loop_free(loop);
    return gkp__err(err, -ENOMEM, "out of memory creating the HTTP client");
  }
  gkp__loop_opts o = {0};
  if (opts != NULL) {
    o = *opts;
  }
  if (o.max_host_connections <= 0) {
    o.max_host_connections = GKP__LOOP_MAX_HOST_CONNECTIONS;
  }
  if (o.max_cached_connections <= 0) {
    o.max_cached_connections = GKP__LOOP_MAX_CACHED_CONNECTIONS;
  }
  curl_multi_setopt(loop->multi, CURLMOPT_MAX_HOST_CONNECTIONS, o.max_host_connections);
  curl_multi_setopt(loop->multi, CURLMOPT_MAXCONNECTS, o.max_cached_connections);
  if (o.max_total_connections > 0) {
    curl_multi_setopt(loop->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, o.max_total_connections);
  }
  curl_multi_setopt(loop->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
  /* The share handle is only ever used on the loop thread: no lock needed. */
  curl_share_setopt(loop->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  *out = loop;
  return 0;
}

void gkp__loop_free(gkp__loop *loop) {
  if (loop == NULL) {
    return;
  }
  gkp__loop_stop(loop);
  post *p = loop->post_head;
  while (p != NULL) { /* posted but never run: the loop never started */
    post *next = p->next;
    free(p);
    p = next;
  }
  if (loop->multi != NULL) {
    curl_multi_cleanup(loop->multi);
  }
  if (loop->share != NULL) {
    curl_share_cleanup(loop->share);
  }
  free(loop->timers);
  free(loop->heap);
  free(loop->handles);
  pthread_mutex_destroy(&loop->mu);
  pthread_mutex_destroy(&loop->stop_mu);
  free(loop);
}

int gkp__loop_in_thread(const gkp__loop *loop) {
  return loop != NULL && current_loop == loop;
}

/* ---- posts ----------------------------------------------------------------- */

int gkp__loop_post(gkp__loop *loop, gkp__loop_fn fn, void *ud) {
  post *p = malloc(sizeof *p);
  if (p == NULL) {
    return -ENOMEM;
  }
  p->next = NULL;
  p->fn = fn;
  p->ud = ud;
  pthread_mutex_lock(&loop->mu);
  if (loop->closed) {
    pthread_mutex_unlock(&loop->mu);
    free(p);
    return -ESHUTDOWN;
  }
  int was_empty = (loop->post_head == NULL);
  if (loop->post_tail != NULL) {
    loop->post_tail->next = p;
  } else {
    loop->post_head = p;
  }
  loop->post_tail = p;
  /* Woken under the lock, so no wakeup can reach a loop already freed. */
  if (was_empty) {
    curl_multi_wakeup(loop->multi);
  }
  pthread_mutex_unlock(&loop->mu);
  return 0;
}

/* Runs the functions posted so far.  Returns whether a stop was requested. */
static int run_posts(gkp__loop *loop) {
  pthread_mutex_lock(&loop->mu);
  post *p = loop->post_head;
  loop->post_head = loop->post_tail = NULL;
  int stop = loop->stop_requested;
  pthread_mutex_unlock(&loop->mu);
  while (p != NULL) {
    post *next = p->next;
    p->fn(loop, p->ud);
    free(p);
    p = next;
  }
  return stop;
}

/* ---- timers ---------------------------------------------------------------- */

static int timer_before(const gkp__loop *loop, uint32_t a, uint32_t b) {
  const timer_slot *x = &loop->timers[a];
  const timer_slot *y = &loop->timers[b];
  return x->due < y->due || (x->due == y->due && x->seq < y->seq);
}

static void heap_set(gkp__loop *loop, size_t i, uint32_t slot) {
  loop->heap[i] = slot;
  loop->timers[slot].heap_idx = (int32_t)i;
}

static void heap_up(gkp__loop *loop, size_t i) {
  uint32_t slot = loop->heap[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!timer_before(loop, slot, loop->heap[parent])) {
      break;
    }
    heap_set(loop, i, loop->heap[parent]);
    i = parent;
  }
  heap_set(loop, i, slot);
}

static void heap_down(gkp__loop *loop, size_t i) {
  uint32_t slot = loop->heap[i];
  for (;;) {
    size_t l = 2 * i + 1;
    if (l >= loop->heap_len) {
      break;
    }
    size_t c = l;
    if (l + 1 < loop->heap_len && timer_before(loop, loop->heap[l + 1], loop->heap[l])) {
      c = l + 1;
    }
    if (!timer_before(loop, loop->heap[c], slot)) {
      break;
    }
    heap_set(loop, i, loop->heap[c]);
    i = c;
  }
  heap_set(loop, i, slot);
}

/* Removes the heap entry at i and frees its slot. */
static void heap_remove(gkp__loop *loop, size_t i) {
  uint32_t slot = loop->heap[i];
  loop->heap_len--;
  if (i < loop->heap_len) {
    uint32_t moved = loop->heap[loop->heap_len];
    heap_set(loop, i, moved);
    heap_down(loop, i);
    heap_up(loop, (size_t)loop->timers[moved].heap_idx);
  }
  timer_slot *t = &loop->timers[slot];
  t->heap_idx = -1;
  t->fn = NULL;
  t->ud = NULL;
  t->gen = t->gen + 1 ? t->gen + 1 : 1;
  t->next_free = loop->timer_free;
  loop->timer_free = slot;
}

/* Makes sure a free timer slot and a heap entry exist.  0 or -ENOMEM. */
static int timer_reserve(gkp__loop *loop) {
  if (loop->timer_free != NO_SLOT) {
    return 0;
  }
  uint32_t n = loop->ntimer_slots;
  if (n >= INT32_MAX / 2) {
    return -ENOMEM;
  }
  uint32_t m = n ? n * 2 : 16;
  timer_slot *t = realloc(loop->timers, (size_t)m * sizeof *t);
  if (t == NULL) {
    return -ENOMEM;
  }
  loop->timers = t;
  uint32_t *h = realloc(loop->heap, (size_t)m * sizeof *h);
  if (h == NULL) {
    return -ENOMEM;
  }
  loop->heap = h;
  for (uint32_t i = m; i > n; i--) {
    timer_slot *s = &t[i - 1];
    memset(s, 0, sizeof *s);
    s->gen = 1;
    s->heap_idx = -1;
    s->next_free = loop->timer_free;
    loop->timer_free = i - 1;
  }
  loop->ntimer_slots = m;
  return 0;
}

/*
 * Converts a wall-clock deadline to the monotonic clock.  The offset between
 * the clocks is kept as long as it moves by less than CLOCK_STEP_MS, so
 * timers with equal wall deadlines get equal monotonic ones (and fire in the
 * order they were added) whatever turn of the loop added them; a real step of
 * the wall clock moves the offset for timers added from then on.
 */
static int64_t mono_deadline(gkp__loop *loop, int64_t when_ms) {
  int64_t now_real = gkp__loop_now_ms();
  int64_t offset = gkp__mono_ms() - now_real;
  if (offset - loop->mono_offset > CLOCK_STEP_MS || loop->mono_offset - offset > CLOCK_STEP_MS) {
    loop->mono_offset = offset;
  }
  if (when_ms > now_real + MAX_TIMER_DELAY_MS) {
    when_ms = now_real + MAX_TIMER_DELAY_MS;
  } else if (when_ms < now_real - MAX_TIMER_DELAY_MS) {
    when_ms = now_real - MAX_TIMER_DELAY_MS;
  }
  return when_ms + loop->mono_offset;
}

uint64_t gkp__loop_timer_add(gkp__loop *loop, int64_t when_ms, gkp__loop_fn fn, void *ud) {
  if (timer_reserve(loop) < 0) {
    return 0;
  }
  uint32_t slot = loop->timer_free;
  timer_slot *t = &loop->timers[slot];
  loop->timer_free = t->next_free;
  t->due = mono_deadline(loop, when_ms);
  t->seq = ++loop->timer_seq;
  t->fn = fn;
  t->ud = ud;
  loop->heap[loop->heap_len] = slot;
  t->heap_idx = (int32_t)loop->heap_len;
  loop->heap_len++;
  heap_up(loop, (size_t)t->heap_idx);
  return ((uint64_t)t->gen << 32) | slot;
}

uint64_t gkp__loop_timer_after(gkp__loop *loop, int64_t delay_ms, gkp__loop_fn fn, void *ud) {
  int64_t now = gkp__loop_now_ms();
  if (delay_ms < 0) {
    delay_ms = 0;
  }
  int64_t when = delay_ms > INT64_MAX - now ? INT64_MAX : now + delay_ms;
  return gkp__loop_timer_add(loop, when, fn, ud);
}

int gkp__loop_timer_cancel(gkp__loop *loop, uint64_t id) {
  uint32_t slot = (uint32_t)(id & 0xffffffffu);
  uint32_t gen = (uint32_t)(id >> 32);
  if (slot >= loop->ntimer_slots) {
    return -ENOENT;
  }
  timer_slot *t = &loop->timers[slot];
  if (t->gen != gen || t->heap_idx < 0) {
    return -ENOENT;
  }
  heap_remove(loop, (size_t)t->heap_idx);
  return 0;
}

size_t gkp__loop_timer_count(const gkp__loop *loop) {
  return loop->heap_len;
}

/* Fires the timers due now that existed when this turn began. */
static void run_timers(gkp__loop *loop) {
  uint64_t seq_limit = loop->timer_seq;
  int64_t now = gkp__mono_ms();
  while (loop->heap_len > 0) {
    timer_slot *t = &loop->timers[loop->heap[0]];
    if (t->due > now || t->seq > seq_limit) {
      break;
    }
    gkp__loop_fn fn = t->fn;
    void *ud = t->ud;
    heap_remove(loop, 0); /* before the call: the callback may add timers */
    fn(loop, ud);
  }
}

/* How long the loop may sleep before the nearest timer (ms). */
static int sleep_ms(const gkp__loop *loop) {
  if (loop->heap_len == 0) {
    return LOOP_MAX_SLEEP_MS;
  }
  const timer_slot *t = &loop->timers[loop->heap[0]];
  int64_t d = t->due - gkp__mono_ms();
  if (d < 0) {
    return 0;
  }
  return d > LOOP_MAX_SLEEP_MS ? LOOP_MAX_SLEEP_MS : (int)d;
}

/* ---- handles --------------------------------------------------------------- */

uint64_t gkp__loop_handle_add(gkp__loop *loop, int tag, void *ptr) {
  if (loop->handle_free == NO_SLOT) {
    uint32_t n = loop->nhandle_slots;
    if (n >= INT32_MAX / 2) {
      return 0;
    }
    uint32_t m = n ? n * 2 : 16;
    handle_slot *h = realloc(loop->handles, (size_t)m * sizeof *h);
    if (h == NULL) {
      return 0;
    }
    loop->handles = h;
    for (uint32_t i = m; i > n; i--) {
      memset(&h[i - 1], 0, sizeof h[i - 1]);
      h[i - 1].gen = 1;
      h[i - 1].next_free = loop->handle_free;
      loop->handle_free = i - 1;
    }
    loop->nhandle_slots = m;
  }
  uint32_t slot = loop->handle_free;
  handle_slot *h = &loop->handles[slot];
  loop->handle_free = h->next_free;
  h->ptr = ptr;
  h->tag = tag;
  return ((uint64_t)h->gen << 32) | slot;
}

static handle_slot *handle_find(const gkp__loop *loop, uint64_t id) {
  uint32_t slot = (uint32_t)(id & 0xffffffffu);
  uint32_t gen = (uint32_t)(id >> 32);
  if (slot >= loop->nhandle_slots) {
    return NULL;
  }
  handle_slot *h = &loop->handles[slot];
  if (h->gen != gen || h->tag == 0) {
    return NULL;
  }
  return h;
}

void *gkp__loop_handle_get(const gkp__loop *loop, uint64_t id, int tag) {
  handle_slot *h = handle_find(loop, id);
  return (h != NULL && h->tag == tag) ? h->ptr : NULL;
}

void gkp__loop_handle_del(gkp__loop *loop, uint64_t id) {
  handle_slot *h = handle_find(loop, id);
  if (h == NULL) {
    return;
  }
  h->ptr = NULL;
  h->tag = 0;
  h->gen = h->gen + 1 ? h->gen + 1 : 1;
  h->next_free = loop->handle_free;
  loop->handle_free = (uint32_t)(h - loop->handles);
}

/* A call posted to an object by its handle (gkp__loop_post_handle). */
typedef struct handle_call {
  uint64_t id;
  int tag;
  void (*fn)(void *ptr);
} handle_call;

static void handle_call_run(gkp__loop *loop, void *ud) {
  handle_call *m = ud;
  void *ptr = gkp__loop_handle_get(loop, m->id, m->tag);
  if (ptr != NULL) {
    m->fn(ptr);
  }
  free(m);
}

int gkp__loop_post_handle(gkp__loop *loop, uint64_t id, int tag, void (*fn)(void *ptr)) {
  handle_call *m = malloc(sizeof *m);
  int rc;
  if (m == NULL) {
    return -ENOMEM;
  }
  m->id = id;
  m->tag = tag;
  m->fn = fn;
  rc = gkp__loop_post(loop, handle_call_run, m);
  if (rc < 0) {
    free(m);
  }
  return rc;
}

/* ---- transfers ------------------------------------------------------------- */

static void list_push(gkp__loop_xfer **head, gkp__loop_xfer *x) {
  x->prev = NULL;
  x->next = *head;
  if (*head != NULL) {
    (*head)->prev = x;
  }
  *head = x;
}

static void list_unlink(gkp__loop_xfer **head, gkp__loop_xfer *x) {
  if (x->prev != NULL) {
    x->prev->next = x->next;
  } else {
    *head = x->next;
  }
  if (x->next != NULL) {
    x->next->prev = x->prev;
  }
  x->prev = x->next = NULL;
}

/* Marks a transfer finished (out of every list) and queues its callback. */
static void queue_done(gkp__loop *loop, gkp__loop_xfer *x, CURLcode rc) {
  x->state = XFER_DONE;
  x->rc = rc;
  x->queue_next = NULL;
  if (loop->done_tail != NULL) {
    loop->done_tail->queue_next = x;
  } else {
    loop->done_head = x;
  }
  loop->done_tail = x;
}

/* Takes an active transfer out of the multi and queues its callback. */
static void finish_active(gkp__loop *loop, gkp__loop_xfer *x, CURLcode rc) {
  curl_multi_remove_handle(loop->multi, x->easy);
  list_unlink(&loop->active, x);
  queue_done(loop, x, rc);
}

int gkp__loop_xfer_add(gkp__loop *loop, gkp__loop_xfer *x) {
  if (loop->closing) {
    return -ESHUTDOWN;
  }
  x->queue_next = NULL;
  x->abort_requested = 0;
  x->rc = CURLE_OK;
  curl_easy_setopt(x->easy, CURLOPT_PRIVATE, (void *)x);
  curl_easy_setopt(x->easy, CURLOPT_SHARE, loop->share);
  if (loop->in_curl) {
    x->state = XFER_PENDING;
    list_push(&loop->pending, x);
  } else {
    if (curl_multi_add_handle(loop->multi, x->easy) != CURLM_OK) {
      curl_easy_setopt(x->easy, CURLOPT_SHARE, (CURLSH *)NULL);
      return -EIO;
    }
    x->state = XFER_ACTIVE;
    list_push(&loop->active, x);
  }
  loop->nxfers++;
  return 0;
}

int gkp__loop_xfer_abort(gkp__loop *loop, gkp__loop_xfer *x, CURLcode rc) {
  switch (x->state) {
  case XFER_PENDING:
    list_unlink(&loop->pending, x);
    x->abort_requested = 1;
    queue_done(loop, x, rc);
    return 1;
  case XFER_ACTIVE:
    if (x->abort_requested) {
      return 1;
    }
    x->abort_requested = 1;
    x->rc = rc;
    if (loop->in_curl) {
      loop->aborts_deferred++; /* finished after curl_multi_perform returns */
    } else {
      finish_active(loop, x, rc);
    }
    return 1;
  default:
    return x->abort_requested;
  }
}

size_t gkp__loop_xfer_count(const gkp__loop *loop) {
  return loop->nxfers;
}

/* Adds the transfers started while curl was inside a callback. */
static void flush_pending(gkp__loop *loop) {
  while (loop->pending != NULL) {
    gkp__loop_xfer *x = loop->pending;
    list_unlink(&loop->pending, x);
    if (curl_multi_add_handle(loop->multi, x->easy) != CURLM_OK) {
      queue_done(loop, x, CURLE_FAILED_INIT);
      continue;
    }
    x->state = XFER_ACTIVE;
    list_push(&loop->active, x);
  }
}

/* Collects the transfers curl has finished, and those aborted meanwhile. */
static void collect_finished(gkp__loop *loop) {
  int left = 0;
  for (;;) {
    CURLMsg *msg = curl_multi_info_read(loop->multi, &left);
    if (msg == NULL) {
      break;
    }
    if (msg->msg != CURLMSG_DONE) {
      continue;
    }
    gkp__loop_xfer *x = NULL;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
    if (x == NULL || x->state != XFER_ACTIVE) {
      continue;
    }
    finish_active(loop, x, x->abort_requested ? x->rc : msg->data.result);
  }
  if (loop->aborts_deferred > 0) {
    loop->aborts_deferred = 0;
    gkp__loop_xfer *x = loop->active;
    while (x != NULL) {
      gkp__loop_xfer *next = x->next;
      if (x->abort_requested) {
        finish_active(loop, x, x->rc);
      }
      x = next;
    }
  }
}

/* Runs the completion callbacks queued so far (and those they queue). */
static void dispatch_done(gkp__loop *loop) {
  while (loop->done_head != NULL) {
    gkp__loop_xfer *x = loop->done_head;
    loop->done_head = x->queue_next;
    if (loop->done_head == NULL) {
      loop->done_tail = NULL;
    }
    x->queue_next = NULL;
    loop->nxfers--;
    x->done(x, x->rc, x->abort_requested); /* x may be freed from here on */
  }
}

/* ---- the thread ------------------------------------------------------------ */

/* Ends the loop: runs the last posts, aborts all transfers, drops timers. */
static void loop_shutdown(gkp__loop *loop) {
  pthread_mutex_lock(&loop->mu);
  loop->closed = 1;
  pthread_mutex_unlock(&loop->mu);
  run_posts(loop); /* everything accepted before `closed` */
  loop->closing = 1;
  flush_pending(loop);
  while (loop->active != NULL) {
    gkp__loop_xfer *x = loop->active;
    x->abort_requested = 1;
    finish_active(loop, x, CURLE_ABORTED_BY_CALLBACK);
  }
  dispatch_done(loop);
  while (loop->heap_len > 0) {
    heap_remove(loop, loop->heap_len - 1);
  }
}

static void *loop_main(void *arg) {
  gkp__loop *loop = arg;
  current_loop = loop;
  for (;;) {
    run_timers(loop);
    int stop = run_posts(loop);
    flush_pending(loop);
    dispatch_done(loop);
    if (stop) {
      break;
    }
    int running = 0;
    curl_multi_poll(loop->multi, NULL, 0, sleep_ms(loop), NULL);
    loop->in_curl = 1;
    curl_multi_perform(loop->multi, &running);
    loop->in_curl = 0;
    collect_finished(loop);
    flush_pending(loop);
    dispatch_done(loop);
  }
  loop_shutdown(loop);
  current_loop = NULL;
  return NULL;
}

int gkp__loop_start(gkp__loop *loop, gkp_error *err) {
  pthread_mutex_lock(&loop->stop_mu);
  if (loop->started) {
    pthread_mutex_unlock(&loop->stop_mu);
    return gkp__err(err, -EALREADY, "the I/O loop was already started");
  }
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = pthread_create(&loop->thread, NULL, loop_main, loop);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) {
    pthread_mutex_unlock(&loop->stop_mu);
    return gkp__err(err, -rc, "cannot start the I/O thread: %s", strerror(rc));
  }
  loop->started = 1;
  pthread_mutex_unlock(&loop->stop_mu);
  return 0;
}

void gkp__loop_stop(gkp__loop *loop) {
  pthread_mutex_lock(&loop->stop_mu);
  if (loop->started && !loop->joined) {
    pthread_mutex_lock(&loop->mu);
    loop->stop_requested = 1;
    curl_multi_wakeup(loop->multi);
    pthread_mutex_unlock(&loop->mu);
    pthread_join(loop->thread, NULL);
    loop->joined = 1;
  }
  pthread_mutex_unlock(&loop->stop_mu);
}
