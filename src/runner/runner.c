/*
 * runner.c - the job state machine on the event loop: waiting queues,
 * reservations, attempts, verdicts, fallback, completion.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/timeutil.h"
#include "common/util.h"
#include "engine/engine.h"
#include "engine/pool_impl.h"
#include "runner/job.h"
#include "runner/state_thread.h"

#define DEFAULT_MAX_ATTEMPTS 12
#define SERVER_STREAK_FALLBACK 3
#define DEFAULT_STALL_TIMEOUT_S 300
/* How often a queue whose keys are busy in other processes looks again. */
#define BUSY_POLL_MS 250
/* While nothing reaches the endpoint, the next try waits 1 s, 2 s, 4 s ...
 * at most this long. */
#define UNREACHABLE_BACKOFF_MAX_MS 8000
/* Keys one job may get disabled or billed before it fails with the message:
 * one misread error never takes down the pool. */
#define MAX_KEYWIDE_PENALTIES 2

/* A FIFO of jobs waiting for a key for one model. */
struct gkp__mq {
  char model[GKP_ID_MAX];
  gkp__job *head, *tail;
  size_t n;
  gkp__job *reserving; /* its head, while the state thread reserves for it */
  uint64_t timer;
  int64_t timer_at;
  gkp__mq *next;
  gkp__runner *runner;
};

struct gkp__runner {
  gkp_pool *pool;
  gkp__loop *loop;
  gkp__runner_opts opts;
  gkp__mq *queues;
  gkp__job *all; /* live jobs (loop thread) */
  pthread_mutex_t stats_mu;
  gkp__runner_stats stats;
  /* Runs the state verbs when they may wait on the network (Redis); NULL:
   * the loop calls them itself (the state file: memory work under its
   * lock). */
  gkp__state_thread *st;
  int dispatch_posted;  /* a dispatch of every queue is already posted */
  long stall_timeout_s; /* per request: abort after this long without a byte
                           ($GEMINI_POOL_STALL_TIMEOUT, default 300 s) */
  uint64_t renew_timer; /* the lease heartbeat, while a job holds a lease */
  /* The endpoint while nothing reaches it (loop thread): no job starts an
   * attempt before retry_at; an answer of any kind clears it. */
  int64_t down_retry_at_ms; /* 0: reachable as far as we know */
  int64_t down_backoff_ms;
  char down_error[GKP_MSG_MAX]; /* "could not connect to URL: reason" */
};

static void job_unref(gkp__job *job);
static void dispatch_all(gkp__runner *r);
static void job_try(gkp__job *job);
static void dispatch_queue(gkp__mq *q);

/* ---- state verbs off the loop ----------------------------------------------- */

/* Runs a state operation: on the state thread, its continuation posted back
 * to the loop; or here and now when the backend never waits on I/O. */
static void state_call(gkp__runner *r, gkp__sop *op) {
  if (r->st != NULL) {
    gkp__state_submit(r->st, op);
    return;
  }
  if (op->fin != NULL) {
    gkp__pool_finish_many(r->pool, op->fin, 1, NULL);
  }
  if (op->run != NULL) {
    op->run(op);
  }
  op->done(op, 0);
}

/* Whether a job ended while a state operation for it was under way. */
static int job_ended(const gkp__job *job) {
  return job->status >= GKP__JOB_DONE;
}

/* The end of a lease, not waited for. */
typedef struct end_op {
  gkp__sop base;
  gkp__runner *r;
  gkp__finish fin;
} end_op;

static void end_done(gkp__sop *o, int orphan) {
  end_op *op = (end_op *)o;
  if (!orphan) {
    dispatch_all(op->r); /* a key came free */
  }
  free(op);
}

const char *gkp__job_status_name(int status) {
  static const char *names[] = {"queued", "running", "done", "failed", "cancelled"};
  return status >= 0 && status <= GKP__JOB_CANCELLED ? names[status] : "unknown";
}

/* ---- info for sinks ------------------------------------------------------ */

/* The raw job's part of the info (on_done; the loop thread). */
static void raw_info(gkp__job *job, gkp__job_info *out) {
  if (!job->raw) {
    return;
  }
  out->refused_status = job->refused_status;
  if (gkp__dynbuf_len(&job->raw_error) > 0) {
    out->error_body = gkp__dynbuf_ptr(&job->raw_error);
    out->error_body_len = gkp__dynbuf_len(&job->raw_error);
  }
  out->retry_at_ms = job->chain_next_ms != INT64_MAX ? job->chain_next_ms : 0;
  out->raw_sent = job->raw_sent;
}

static void job_info(gkp__job *job, gkp__job_info *out) {
  memset(out, 0, sizeof *out);
  out->status = job->status;
  out->profile = job->profile;
  out->model_requested = job->model_requested;
  out->model_used = job->model_used;
  out->key_id = job->key_id;
  out->attempts = job->attempts;
  out->nattempts = job->nattempts;
  out->tokens_in = job->tokens_in;
  out->tokens_out = job->tokens_out;
  out->created_ms = job->created_ms;
  out->finished_ms = job->finished_ms;
  out->latency_ms = job->finished_ms > 0 ? job->finished_ms - job->created_ms : 0;
  out->error = job->error;
  out->text = gkp__dynbuf_ptr(&job->text);
  out->text_len = gkp__dynbuf_len(&job->text);
  out->thoughts = gkp__dynbuf_ptr(&job->thoughts);
  out->thoughts_len = gkp__dynbuf_len(&job->thoughts);
  out->route = job->route_json;
  out->route_compact = job->route_compact;
  gkp__strlcpy(out->task_type, job->task_type, sizeof out->task_type);
  gkp__strlcpy(out->complexity, job->complexity, sizeof out->complexity);
  raw_info(job, out);
}

static void notify_state(gkp__job *job) {
  gkp__job_info info;
  if (job->released || job->sink.on_state == NULL) {
    return;
  }
  job_info(job, &info);
  job->sink.on_state(job->sink_ud, job, &info);
}

static void set_status(gkp__job *job, int status) {
  pthread_mutex_lock(&job->mu);
  job->status = status;
  pthread_mutex_unlock(&job->mu);
}

/* ---- queues -------------------------------------------------------------- */

static gkp__mq *queue_for(gkp__runner *r, const char *model) {
  gkp__mq *q;
  for (q = r->queues; q != NULL; q = q->next) {
    if (strcmp(q->model, model) == 0) {
      return q;
    }
  }
  q = calloc(1, sizeof *q);
  if (q == NULL) {
    return NULL;
  }
  gkp__strlcpy(q->model, model, sizeof q->model);
  q->runner = r;
  q->next = r->queues;
  r->queues = q;
  return q;
}

static void queue_remove(gkp__job *job) {
  gkp__mq *q = job->queue;
  if (q == NULL) {
    return;
  }
  if (job->qprev != NULL) {
    job->qprev->qnext = job->qnext;
  } else {
    q->head = job->qnext;
  }
  if (job->qnext != NULL) {
    job->qnext->qprev = job->qprev;
  } else {
    q->tail = job->qprev;
  }
  job->qprev = job->qnext = NULL;
  job->queue = NULL;
  q->n--;
  pthread_mutex_lock(&job->runner->stats_mu);
  job->runner->stats.waiting--;
  pthread_mutex_unlock(&job->runner->stats_mu);
}

/* Puts a job in its model's queue: at the back, or at the front for a job
 * that already waited its turn and is being retried. */
static int queue_add(gkp__job *job, int front) {
  gkp__mq *q = queue_for(job->runner, job->model);
  if (q == NULL) {
    return -ENOMEM;
  }
  job->queue = q;
  if (front) {
    job->qnext = q->head;
    job->qprev = NULL;
    if (q->head != NULL) {
      q->head->qprev = job;
    } else {
      q->tail = job;
    }
    q->head = job;
  } else {
    job->qprev = q->tail;
    job->qnext = NULL;
    if (q->tail != NULL) {
      q->tail->qnext = job;
    } else {
      q->head = job;
    }
    q->tail = job;
  }
  q->n++;
  pthread_mutex_lock(&job->runner->stats_mu);
  job->runner->stats.waiting++;
  pthread_mutex_unlock(&job->runner->stats_mu);
  return 0;
}

/* ---- finishing ------------------------------------------------------------ */

static void job_free(gkp__job *job) {
  free(job->profile);
  free(job->model_requested);
  free(job->prompt);
  free(job->context);
  free(job->system);
  free(job->image);
  free(job->body);
  free(job->raw_action);
  free(job->route_json);
  free(job->route_compact);
  free(job->quality_note);
  free(job->cands);
  gkp__dynbuf_reset(&job->raw_error);
  gkp__dynbuf_reset(&job->text);
  gkp__dynbuf_reset(&job->attempt_text);
  gkp__dynbuf_reset(&job->thoughts);
  for (size_t i = 0; i < job->nimages; i++) {
    free(job->images[i].data);
  }
  free(job->images);
  free(job->attempts);
  pthread_mutex_destroy(&job->mu);
  free(job);
}

static void job_unref(gkp__job *job) {
  if (atomic_fetch_sub(&job->refs, 1) == 1) {
    job_free(job);
  }
}

static void drop_images(gkp__job *job) {
  for (size_t i = 0; i < job->nimages; i++) {
    free(job->images[i].data);
  }
  free(job->images);
  job->images = NULL;
  job->nimages = 0;
}

/* Ends a job: status, error, sink's on_done, and the loop's reference. */
static void job_finish(gkp__job *job, int status, const char *error) {
  gkp__runner *r = job->runner;
  gkp__job_info info;

  queue_remove(job);
  if (job->deadline_timer != 0) {
    gkp__loop_timer_cancel(r->loop, job->deadline_timer);
    job->deadline_timer = 0;
  }
  pthread_mutex_lock(&job->mu);
  job->status = status;
  job->finished_ms = gkp_pool_now(r->pool);
  gkp__strlcpy(job->error, error != NULL ? error : "", sizeof job->error);
  gkp_redact(r->pool, job->error); /* it may quote an upstream */
  pthread_mutex_unlock(&job->mu);

  pthread_mutex_lock(&r->stats_mu);
  if (status == GKP__JOB_DONE) {
    r->stats.done++;
  } else if (status == GKP__JOB_FAILED) {
    r->stats.failed++;
  } else {
    r->stats.cancelled++;
  }
  pthread_mutex_unlock(&r->stats_mu);

  if (!job->released && job->sink.on_done != NULL) {
    job_info(job, &info);
    job->sink.on_done(job->sink_ud, job, &info);
  }
  if (job->listed) {
    if (job->all_prev != NULL) {
      job->all_prev->all_next = job->all_next;
    } else {
      r->all = job->all_next;
    }
    if (job->all_next != NULL) {
      job->all_next->all_prev = job->all_prev;
    }
    job->all_prev = job->all_next = NULL;
    job->listed = 0;
  }
  job_unref(job);
}

/* ---- requests -------------------------------------------------------------- */

/* Builds the request body for job->model (the thinking style and image
 * output depend on the model).  Returns 0 or a negative errno with msg. */
static int build_body(gkp__job *job, gkp_error *err) {
  gkp_pool *pool = job->runner->pool;
  gkp__gemini_image img = {.data = job->image, .len = job->image_len};
  if (job->raw) {
    return 0; /* the caller's body, sent as is */
  }
  gkp__gemini_request req = {
      .text = job->prompt,
      .context = job->context,
      .images = job->image != NULL ? &img : NULL,
      .nimages = job->image != NULL ? 1 : 0,
      .system = job->system,
      .tools = job->tools,
      .temperature = job->temperature,
      .max_output_tokens = job->max_output_tokens,
      .thinking = job->thinking,
      .include_thoughts = job->capture_thinking,
      .thinking_style = GKP__THINKING_STYLE_NONE,
  };
  const gkp__config *cfg = gkp__pool_config(pool);
  int mi = gkp__config_model_index(cfg, job->model);
  if (mi >= 0) {
    req.image_output = cfg->models[mi].image_output;
    req.thinking_style = cfg->models[mi].thinking_level;
  }
  gkp__config_unref(cfg);
  if (req.thinking_style == GKP__THINKING_STYLE_NONE) {
    req.include_thoughts = 0;
  }
  free(job->body);
  job->body = NULL;
  job->est_tokens = gkp__gemini_estimate_tokens(&req);
  return gkp__gemini_build_body(&req, &job->body, &job->body_len, err);
}

static int add_attempt(gkp__job *job, int http_status, int kind) {
  gkp__attempt *a;
  pthread_mutex_lock(&job->mu);
  gkp__attempt *n = gkp__grow(job->attempts, &job->capattempts, job->nattempts + 1, sizeof *n, 4);
  if (n == NULL) {
    pthread_mutex_unlock(&job->mu);
    return -ENOMEM;
  }
  job->attempts = n;
  a = &job->attempts[job->nattempts++];
  memset(a, 0, sizeof *a);
  gkp__strlcpy(a->key_id, job->lease.key_id, sizeof a->key_id);
  gkp__strlcpy(a->model, job->model, sizeof a->model);
  a->http_status = http_status;
  a->kind = kind;
  a->ms = gkp__mono_ms() - job->attempt_started_ms;
  pthread_mutex_unlock(&job->mu);
  return 0;
}

/* Ends the current reservation; wakes the queues since a key came free. */
static void end_lease(gkp__job *job, int sent) {
  gkp__runner *r = job->runner;
  if (!job->has_lease) {
    return;
  }
  job->has_lease = 0;
  end_op *op = calloc(1, sizeof *op);
  if (op == NULL) { /* the lease expires by itself */
    dispatch_all(r);
    return;
  }
  op->base.fin = &op->fin;
  op->base.done = end_done;
  op->r = r;
  op->fin.lease = job->lease;
  op->fin.sent = sent;
  state_call(r, &op->base);
}

/* ---- text across attempts --------------------------------------------------- */

static void deliver(gkp__job *job, const char *text, size_t len) {
  if (len == 0) {
    return;
  }
  pthread_mutex_lock(&job->mu);
  int rc = gkp__dynbuf_add(&job->text, text, len);
  pthread_mutex_unlock(&job->mu);
  if (rc == 0 && !job->released && job->sink.on_text != NULL) {
    job->sink.on_text(job->sink_ud, job, text, len);
  }
}

/* Throws away the delivered text and delivers the current attempt's. */
static void restart_text(gkp__job *job) {
  pthread_mutex_lock(&job->mu);
  gkp__dynbuf_clear(&job->text);
  pthread_mutex_unlock(&job->mu);
  if (!job->released && job->sink.on_restart != NULL) {
    job->sink.on_restart(job->sink_ud, job);
  }
  job->attempt_synced = 1;
  deliver(job, gkp__dynbuf_ptr(&job->attempt_text), gkp__dynbuf_len(&job->attempt_text));
}

/*
 * New answer text of the current attempt.  A first attempt streams straight
 * through.  After a failed attempt that delivered text, a retry is held back
 * until it has caught up: if it begins with exactly the text already
 * delivered, only what follows is delivered; if it differs, the sink is told
 * to restart and gets the new answer instead.  So a reader never sees text
 * of two attempts joined.
 */
static void attempt_text(gkp__job *job, const char *text, size_t len) {
  size_t before = gkp__dynbuf_len(&job->attempt_text), done = gkp__dynbuf_len(&job->text);
  if (gkp__dynbuf_add(&job->attempt_text, text, len) != 0) {
    return;
  }
  if (job->attempt_synced) {
    deliver(job, text, len);
    return;
  }
  size_t now = before + len, cmp = (now < done ? now : done) - before;
  if (memcmp(gkp__dynbuf_ptr(&job->text) + before, text, cmp) != 0) {
    restart_text(job);
    return;
  }
  if (now >= done) {
    job->attempt_synced = 1;
    deliver(job, text + cmp, len - cmp);
  }
}

/* ---- gemini callbacks ------------------------------------------------------- */

static int cb_text(void *ud, const char *text, size_t len, int is_thought) {
  gkp__job *job = ud;
  if (is_thought) {
    pthread_mutex_lock(&job->mu);
    gkp__dynbuf_add(&job->thoughts, text, len);
    pthread_mutex_unlock(&job->mu);
  } else {
    attempt_text(job, text, len);
  }
  return 0;
}

static int cb_image(void *ud, const char *mime, const void *data, size_t len, int is_thought) {
  gkp__job *job = ud;
  gkp__job_image *n;
  if (is_thought) {
    return 0;
  }
  n = realloc(job->images, (job->nimages + 1) * sizeof *n);
  if (n == NULL) {
    return 0;
  }
  job->images = n;
  n = &job->images[job->nimages];
  n->data = malloc(len > 0 ? len : 1);
  if (n->data == NULL) {
    return 0;
  }
  memcpy(n->data, data, len);
  n->len = len;
  gkp__strlcpy(n->mime, mime, sizeof n->mime);
  job->nimages++;
  return 0;
}

static void cb_usage(void *ud, const gkp__gemini_usage *u) {
  gkp__job *job = ud;
  job->usage = *u;
  job->has_usage = 1;
}

/* The end-of-chain failure message. */
static void chain_message(gkp__job *job, char *buf, size_t len) {
  char when[40];
  size_t nkeys = gkp_key_count(job->runner->pool);
  /* Repeated server trouble is no quota matter: say so, and what to check. */
  if (job->nattempts > 0 && job->attempts[job->nattempts - 1].kind == GKP_KIND_SERVER) {
    snprintf(buf, len,
             "gave up on %s and its fallbacks after repeated server errors; the last: %s "
             "(check base_url or $GOOGLE_GEMINI_BASE_URL, or try again later)",
             job->model_requested, job->last_error[0] != '\0' ? job->last_error : "unknown");
    return;
  }
  /* The soonest time seen along the chain may have passed by now (a short
   * server cooldown on the first model): naming it would be wrong. */
  if (job->chain_next_ms > gkp_pool_now(job->runner->pool) && job->chain_next_ms != INT64_MAX) {
    int midnight = job->chain_next_ms == gkp_next_pacific_midnight(job->chain_next_ms - 1);
    int n = snprintf(buf, len, "all %zu keys exhausted for %s and its fallbacks until %s%s", nkeys,
                     job->model_requested, gkp__hms_utc(job->chain_next_ms, when, sizeof when),
                     midnight ? " (midnight Pacific)" : "");
    (void)n;
  } else {
    int n = snprintf(buf, len, "no key can serve %s or its fallbacks: %s", job->model_requested,
                     job->chain_reason[0] != '\0' ? job->chain_reason : "every key is disabled");
    /* "no key can serve it" alone does not say why (keys disabled as invalid,
     * say): add the last error unless the reason already is that error. */
    if (job->last_error[0] != '\0' && strstr(job->chain_reason, job->last_error) == NULL && n > 0 &&
        (size_t)n < len) {
      snprintf(buf + n, len - (size_t)n, "; the last error: %s", job->last_error);
    }
  }
}

/* A routed job's settings for one candidate: its thinking and tools unless
 * the caller named them. */
static void use_candidate(gkp__job *job, const gkp__route_cand *c) {
  if (!job->thinking_given) {
    job->thinking = gkp__gemini_thinking_parse(c->thinking);
  }
  if (!job->tools_given) {
    job->tools = c->tools;
  }
}

/* Moves the job to the next model of its chain, or fails it at the end. */
static void job_fallback(gkp__job *job, const char *why) {
  gkp__runner *r = job->runner;
  const char *next;
  char msg[GKP_MSG_MAX];
  gkp_error err;

  const gkp__config *cfg = gkp__pool_config(r->pool);
  int mi = gkp__config_model_index(cfg, job->model);
  next = job->pin_model || mi < 0 ? NULL : cfg->models[mi].fallback;
  if (job->ncands > 0) {
    /* A routed job goes down its candidates, each with its thinking and tools,
     * past those the caller may not use. */
    next = NULL;
    while (job->cand_i + 1 < job->ncands) {
      const char *c = job->cands[++job->cand_i].model;
      if (job->model_allowed == NULL || job->model_allowed(job->sink_ud, c)) {
        next = c;
        use_candidate(job, &job->cands[job->cand_i]);
        break;
      }
    }
  } else {
    /* Past the models the caller may not use (a chain is at most every model long). */
    for (size_t hops = 0; next != NULL && job->model_allowed != NULL &&
                          !job->model_allowed(job->sink_ud, next) && hops < cfg->nmodels;
         hops++) {
      mi = gkp__config_model_index(cfg, next);
      next = mi < 0 ? NULL : cfg->models[mi].fallback;
    }
    if (next != NULL && job->model_allowed != NULL && !job->model_allowed(job->sink_ud, next)) {
      next = NULL;
    }
  }
  if (next != NULL) {
    gkp__strlcpy(job->model, next, sizeof job->model);
  }
  gkp__config_unref(cfg);
  if (why != NULL && why[0] != '\0' && job->chain_reason[0] == '\0') {
    gkp__strlcpy(job->chain_reason, why, sizeof job->chain_reason);
  }
  if (next == NULL) {
    chain_message(job, msg, sizeof msg);
    job_finish(job, GKP__JOB_FAILED, msg);
    return;
  }
  job->server_streak = 0;
  job->wait_started_ms = gkp_pool_now(r->pool);
  if (build_body(job, &err) != 0) {
    job_finish(job, GKP__JOB_FAILED, err.msg);
    return;
  }
  job_try(job);
}

/* An answer of any kind came: the endpoint is reachable again, and the jobs
 * waiting for it may go on. */
static void endpoint_back(gkp__runner *r) {
  if (r->down_retry_at_ms != 0) {
    r->down_retry_at_ms = 0;
    r->down_backoff_ms = 0;
    dispatch_all(r);
  }
}

/* A lease whose request never reached the server, given back. */
typedef struct unreached_op {
  end_op e; /* first: its done is end_done */
  char url[1024];
  char reason[GKP_MSG_MAX];
} unreached_op;

static void unreached_run(gkp__sop *o) {
  unreached_op *op = (unreached_op *)o;
  gkp_release_unreached(op->e.r->pool, &op->e.fin.lease, op->url, op->reason, NULL);
}

/* An attempt that never reached the server: nobody's key's fault.  Gives the
 * reservation back uncounted, backs off, and waits within max_wait; then
 * fails with one line naming the endpoint and the reason. */
static void job_unreached(gkp__job *job, const char *reason) {
  gkp__runner *r = job->runner;
  int64_t now = gkp_pool_now(r->pool);
  char base[1024];

  const gkp__config *cfg = gkp__pool_config(r->pool);
  gkp__strlcpy(base, cfg->base_url, sizeof base);
  gkp__config_unref(cfg);
  add_attempt(job, 0, GKP_KIND_UNREACHABLE);
  if (job->has_lease) {
    unreached_op *op = calloc(1, sizeof *op);
    job->has_lease = 0;
    if (op != NULL) {
      op->e.base.run = unreached_run;
      op->e.base.done = end_done;
      op->e.r = r;
      op->e.fin.lease = job->lease;
      gkp__strlcpy(op->url, base, sizeof op->url);
      gkp__strlcpy(op->reason, reason, sizeof op->reason);
      state_call(r, &op->e.base);
    }
  }
  drop_images(job);
  /* One backoff step per round of tries, not per job that failed in it. */
  if (now >= r->down_retry_at_ms) {
    r->down_backoff_ms = r->down_backoff_ms > 0 ? r->down_backoff_ms * 2 : 1000;
    if (r->down_backoff_ms > UNREACHABLE_BACKOFF_MAX_MS) {
      r->down_backoff_ms = UNREACHABLE_BACKOFF_MAX_MS;
    }
    r->down_retry_at_ms = now + r->down_backoff_ms;
  }
  snprintf(r->down_error, sizeof r->down_error, "could not connect to %s: %s", base, reason);
  gkp__strlcpy(job->last_error, r->down_error, sizeof job->last_error);
  dispatch_all(r); /* the reservation is free again */
  if (r->down_retry_at_ms > job->wait_started_ms + job->max_wait_ms) {
    job_finish(job, GKP__JOB_FAILED, r->down_error);
    return;
  }
  set_status(job, GKP__JOB_QUEUED);
  notify_state(job);
  if (queue_add(job, 1) != 0) {
    job_finish(job, GKP__JOB_FAILED, "out of memory");
  }
}

/* The request was cancelled or aborted (by the owner, the deadline or a
 * receiver that refused more): the job ends. */
static void attempt_cancelled(gkp__job *job, const gkp__gemini_outcome *o) {
  add_attempt(job, o->http_status, GKP_KIND_NONE);
  end_lease(job, 1);
  job_finish(job, job->timed_out ? GKP__JOB_FAILED : GKP__JOB_CANCELLED,
             job->timed_out ? "timed out before the answer was complete" : "cancelled");
}

/* An answered request's usage and release, in one step; the job ends
 * when they are recorded. */
typedef struct answer_op {
  gkp__sop base;
  gkp__job *job; /* a reference */
  gkp__finish fin;
  int content; /* GKP__GEMINI_CONTENT: the job fails with `message` */
  char message[GKP_MSG_MAX];
} answer_op;

static void answer_done(gkp__sop *o, int orphan) {
  answer_op *op = (answer_op *)o;
  gkp__job *job = op->job;
  if (orphan || job_ended(job)) {
    goto out;
  }
  job->state_op = 0;
  dispatch_all(job->runner); /* a key came free */
  if (op->content) {
    job_finish(job, GKP__JOB_FAILED, op->message);
    goto out;
  }
  /* The whole answer is shorter than what an earlier attempt delivered. */
  if (!job->attempt_synced) {
    restart_text(job);
  }
  for (size_t i = 0; i < job->nimages; i++) {
    if (!job->released && job->sink.on_image != NULL) {
      job->sink.on_image(job->sink_ud, job, job->images[i].mime, job->images[i].data,
                         job->images[i].len);
    }
  }
  job_finish(job, GKP__JOB_DONE, NULL);
out:
  job_unref(job);
  free(op);
}

/* Google answered (GKP__GEMINI_OK, or GKP__GEMINI_CONTENT: an answer it
 * refused to finish): the usage is recorded and the job ends. */
static void attempt_answered(gkp__job *job, const gkp__gemini_outcome *o) {
  gkp__runner *r = job->runner;
  gkp_usage u = {-1, -1, -1};
  /* countTokens does not spend the model's generation quota: what its
   * reservation took is given back. */
  int counted = !(job->raw && strcmp(job->raw_action, "countTokens") == 0);
  if (job->has_usage) {
    u.prompt_tokens = job->usage.prompt;
    u.candidates_tokens = job->usage.candidates;
    u.thoughts_tokens = job->usage.thoughts;
  }
  add_attempt(job, o->http_status, GKP_KIND_NONE);
  pthread_mutex_lock(&job->mu);
  gkp__strlcpy(job->model_used, job->model, sizeof job->model_used);
  gkp__strlcpy(job->key_id, job->lease.key_id, sizeof job->key_id);
  job->tokens_in = u.prompt_tokens;
  job->tokens_out = u.candidates_tokens >= 0 ? u.candidates_tokens : -1;
  pthread_mutex_unlock(&job->mu);
  answer_op *op = calloc(1, sizeof *op);
  if (op == NULL) {
    end_lease(job, counted);
    job_finish(job, GKP__JOB_FAILED, "out of memory");
    return;
  }
  op->base.fin = &op->fin;
  op->base.done = answer_done;
  op->job = job;
  op->fin.lease = job->lease;
  op->fin.usage = u;
  op->fin.counted = counted;
  op->fin.sent = counted;
  op->content = o->status == GKP__GEMINI_CONTENT;
  gkp__strlcpy(op->message, o->message != NULL ? o->message : "", sizeof op->message);
  job->has_lease = 0;
  job->state_op = 1;
  atomic_fetch_add(&job->refs, 1);
  state_call(r, &op->base);
}

/* The pool's verdict on a failed request (its rule applied) and the
 * lease's release, on the state thread; the job goes on from attempt_judged. */
typedef struct verdict_op {
  gkp__sop base;
  gkp__job *job; /* a reference */
  gkp_lease lease;
  char model[GKP_ID_MAX];
  int http_status;
  char *body; /* the error body, or the transport failure's message */
  size_t len;
  int transport;
  int64_t fixed_429_cooldown_ms;
  gkp_verdict v;
} verdict_op;

static void verdict_run(gkp__sop *o) {
  verdict_op *op = (verdict_op *)o;
  gkp_pool *pool = op->job->runner->pool;
  gkp_report_error(pool, &op->lease, op->http_status, op->body, op->len, &op->v, NULL);
  if (op->transport) {
    gkp__strlcpy(op->v.message, op->body, sizeof op->v.message);
    gkp_redact(pool, op->v.message);
  }
  if (op->fixed_429_cooldown_ms > 0 && op->v.http_status == 429) {
    /* The reactive policy of simpler pools (for comparison in benchmarks). */
    gkp_set_cooldown(pool, op->lease.key_id, op->model,
                     gkp_pool_now(pool) + op->fixed_429_cooldown_ms, op->v.kind, NULL);
  }
  gkp__pool_finish(pool, &op->lease, NULL, 1, NULL);
}

static void attempt_judged(gkp__job *job, gkp_verdict *v);

static void verdict_done(gkp__sop *o, int orphan) {
  verdict_op *op = (verdict_op *)o;
  gkp__job *job = op->job;
  if (!orphan && !job_ended(job)) {
    job->state_op = 0;
    dispatch_all(job->runner); /* a key came free */
    attempt_judged(job, &op->v);
  }
  job_unref(job);
  free(op->body);
  free(op);
}

/* A raw job keeps the last error JSON Google sent, for its caller. */
static void raw_note_error(gkp__job *job, const gkp__gemini_outcome *o) {
  if (!job->raw || o->body == NULL || o->body_len == 0) {
    return;
  }
  gkp__dynbuf_clear(&job->raw_error);
  /* It came from outside and goes out again: any stretch of a key it echoes
   * is redacted (the buffer is NUL-terminated; the text never grows). */
  if (gkp__dynbuf_add(&job->raw_error, o->body, o->body_len) == 0 &&
      gkp_redact(job->runner->pool, job->raw_error.buf) > 0) {
    job->raw_error.len = strlen(job->raw_error.buf);
  }
}

/* One JSON value of a raw answer: to the sink as Google sent it, except
 * that any stretch of a configured key an upstream echoed is redacted. */
static int cb_event(void *ud, const char *json, size_t len) {
  gkp__job *job = ud;
  job->raw_sent = 1;
  if (job->released || job->sink.on_raw == NULL) {
    return 0;
  }
  char *copy = gkp__dup_n(json, len);
  if (copy == NULL) {
    return -ENOMEM;
  }
  if (gkp_redact(job->runner->pool, copy) > 0) {
    len = strlen(copy);
  }
  int rc = job->sink.on_raw(job->sink_ud, job, job->model, job->lease.key_id, copy, len);
  free(copy);
  return rc;
}

/* The request failed: its verdict is taken on the state thread, then
 * attempt_judged decides. */
static void attempt_failed(gkp__job *job, const gkp__gemini_outcome *o) {
  gkp__runner *r = job->runner;
  verdict_op *op = calloc(1, sizeof *op);
  raw_note_error(job, o);
  if (op != NULL) {
    if (o->status == GKP__GEMINI_HTTP_ERROR || o->status == GKP__GEMINI_STREAM_ERROR) {
      op->http_status = o->http_status;
      op->body = gkp__dup_n(o->body != NULL ? o->body : "", o->body != NULL ? o->body_len : 0);
      op->len = o->body != NULL ? o->body_len : 0;
    } else {
      const char *m = o->message != NULL ? o->message : "transport failure";
      op->transport = 1;
      op->body = strdup(m);
      op->len = strlen(m);
    }
  }
  if (op == NULL || op->body == NULL) {
    if (op != NULL) {
      free(op);
    }
    end_lease(job, 1);
    job_finish(job, GKP__JOB_FAILED, "out of memory");
    return;
  }
  op->base.run = verdict_run;
  op->base.done = verdict_done;
  op->job = job;
  op->lease = job->lease;
  gkp__strlcpy(op->model, job->model, sizeof op->model);
  op->fixed_429_cooldown_ms = r->opts.fixed_429_cooldown_ms;
  job->has_lease = 0;
  job->state_op = 1;
  atomic_fetch_add(&job->refs, 1);
  state_call(r, &op->base);
}

/* The verdict is in: the job fails, falls back to the next model, or
 * waits in its queue for another key. */
static void attempt_judged(gkp__job *job, gkp_verdict *v) {
  gkp__runner *r = job->runner;
  char msg[GKP_MSG_MAX];

  add_attempt(job, v->http_status, v->kind);
  drop_images(job);
  snprintf(msg, sizeof msg, "%s on %s (%s): %s", gkp_kind_name(v->kind), job->model,
           job->lease.key_id, v->message);
  gkp__strlcpy(job->last_error, msg, sizeof job->last_error);
  job->server_streak = v->kind == GKP_KIND_SERVER ? job->server_streak + 1 : 0;
  if (job->timed_out) {
    char late[GKP_MSG_MAX];
    snprintf(late, sizeof late, "timed out; the last attempt: %.400s", msg);
    job_finish(job, GKP__JOB_FAILED, late);
    return;
  }
  if (job->raw && job->raw_sent) {
    /* Part of an answer went out: a retry would repeat or change it. */
    char broke[GKP_MSG_MAX];
    snprintf(broke, sizeof broke, "the answer broke off after it had begun: %.400s", msg);
    job_finish(job, GKP__JOB_FAILED, broke);
    return;
  }
  if (v->action == GKP_ACT_FAIL) {
    job->refused_status = job->raw ? v->http_status : 0;
    snprintf(msg, sizeof msg, "Google refused the request (HTTP %d): %s", v->http_status,
             v->message);
    job_finish(job, GKP__JOB_FAILED, msg);
    return;
  }
  if (v->key_wide && ++job->keywide_penalties >= MAX_KEYWIDE_PENALTIES) {
    snprintf(msg, sizeof msg, "Google refused %d keys in a row (%s, HTTP %d): %s",
             job->keywide_penalties, gkp_kind_name(v->kind), v->http_status, v->message);
    job_finish(job, GKP__JOB_FAILED, msg);
    return;
  }
  if ((int)job->nattempts >= r->opts.max_attempts) {
    char last[GKP_MSG_MAX];
    snprintf(last, sizeof last, "gave up after %zu attempts; the last: %s", job->nattempts, msg);
    job_finish(job, GKP__JOB_FAILED, last);
    return;
  }
  set_status(job, GKP__JOB_QUEUED);
  notify_state(job);
  if (v->action == GKP_ACT_FALLBACK || job->server_streak >= SERVER_STREAK_FALLBACK) {
    job_fallback(job, msg);
    return;
  }
  if (queue_add(job, 1) != 0) {
    job_finish(job, GKP__JOB_FAILED, "out of memory");
    return;
  }
  dispatch_all(r);
}

/* The end of a request (loop thread). */
static void cb_done(void *ud, const gkp__gemini_outcome *o) {
  gkp__job *job = ud;
  gkp__runner *r = job->runner;

  job->call = NULL;
  pthread_mutex_lock(&r->stats_mu);
  r->stats.running--;
  pthread_mutex_unlock(&r->stats_mu);
  if (o->status == GKP__GEMINI_CANCELLED || o->status == GKP__GEMINI_ABORTED) {
    attempt_cancelled(job, o);
  } else if (o->status == GKP__GEMINI_TRANSPORT && o->unsent) {
    job_unreached(job, o->message != NULL ? o->message : "could not connect");
  } else if (o->status == GKP__GEMINI_OK || o->status == GKP__GEMINI_CONTENT) {
    endpoint_back(r);
    attempt_answered(job, o);
  } else {
    endpoint_back(r);
    attempt_failed(job, o);
  }
}

/* ---- dispatching ------------------------------------------------------------- */

/* One heartbeat's renewals: every lease in one step of the backend. */
typedef struct renew_op {
  gkp__sop base;
  gkp_pool *pool;
  size_t n;
  int *rcs;
  gkp_lease leases[];
} renew_op;

static void renew_run(gkp__sop *o) {
  renew_op *op = (renew_op *)o;
  gkp__pool_renew_leases(op->pool, op->leases, op->n, op->rcs, NULL);
}

static void renew_done(gkp__sop *o, int orphan) {
  renew_op *op = (renew_op *)o;
  (void)orphan;
  free(op->rcs);
  free(op);
}

/* The lease heartbeat: every lease a running request holds is renewed, so
 * that a stream still receiving keeps its key however long it runs, while a
 * holder that stops (killed, stuck) loses it within GKP_LEASE_TTL_MS.  All
 * of them in one call of the backend, off the loop when it is remote. */
static void renew_leases(gkp__loop *loop, void *ud) {
  gkp__runner *r = ud;
  size_t n = 0, i = 0;
  (void)loop;
  r->renew_timer = 0;
  for (gkp__job *job = r->all; job != NULL; job = job->all_next) {
    n += job->has_lease != 0;
  }
  if (n == 0) {
    return;
  }
  r->renew_timer = gkp__loop_timer_after(r->loop, r->opts.lease_renew_ms, renew_leases, r);
  renew_op *op = malloc(sizeof *op + n * sizeof op->leases[0]);
  int *rcs = malloc(n * sizeof *rcs);
  if (op == NULL || rcs == NULL) {
    free(op);
    free(rcs);
    return; /* the next beat tries again, well within the leases' life */
  }
  for (gkp__job *job = r->all; job != NULL; job = job->all_next) {
    if (job->has_lease) {
      op->leases[i++] = job->lease;
    }
  }
  op->base.fin = NULL;
  op->base.run = renew_run;
  op->base.done = renew_done;
  op->pool = r->pool;
  op->n = n;
  op->rcs = rcs;
  state_call(r, &op->base);
}

static void start_heartbeat(gkp__runner *r) {
  if (r->renew_timer == 0) {
    r->renew_timer = gkp__loop_timer_after(r->loop, r->opts.lease_renew_ms, renew_leases, r);
  }
}

/* Starts the request of a job that has just got its lease.  The job ends
 * if it cannot start. */
static void job_start(gkp__job *job) {
  gkp__runner *r = job->runner;
  gkp_error err;
  char secret[512];
  gkp__gemini_endpoint ep = {0};
  char base[1024];
  int rc;

  job->has_lease = 1;
  start_heartbeat(r);
  const gkp__config *cfg = gkp__pool_config(r->pool);
  gkp__strlcpy(base, cfg->base_url, sizeof base);
  gkp__config_unref(cfg);
  if (gkp_key_secret(r->pool, job->lease.key_id, secret, sizeof secret, &err) != 0) {
    end_lease(job, 0);
    job_finish(job, GKP__JOB_FAILED, err.msg);
    return;
  }
  ep.base_url = base;
  ep.api_key = secret;
  ep.low_speed_time_s = r->stall_timeout_s;
  ep.timeout_ms = -1; /* a stream still receiving is never cut; the job's deadline may */
  gkp__gemini_callbacks cb = {.on_text = cb_text,
                              .on_image = cb_image,
                              .on_usage = cb_usage,
                              .on_done = cb_done,
                              .on_event = cb_event};
  job->has_usage = 0;
  gkp__dynbuf_clear(&job->attempt_text);
  pthread_mutex_lock(&job->mu);
  gkp__dynbuf_clear(&job->thoughts); /* thoughts belong to the attempt that answers */
  pthread_mutex_unlock(&job->mu);
  job->attempt_synced = gkp__dynbuf_len(&job->text) == 0;
  job->attempt_started_ms = gkp__mono_ms();
  if (job->raw) {
    rc = gkp__gemini_raw_start(r->loop, &ep, job->model, job->raw_action, job->body, job->body_len,
                               job->raw_stream, &cb, job, &job->call, &err);
  } else {
    rc = gkp__gemini_call_start(r->loop, &ep, job->model, job->body, job->body_len, r->opts.stream,
                                &cb, job, &job->call, &err);
  }
  explicit_bzero(secret, sizeof secret);
  if (rc != 0) {
    end_lease(job, 0);
    job_finish(job, GKP__JOB_FAILED, err.msg);
    return;
  }
  pthread_mutex_lock(&job->mu);
  /* The key of the attempt under way (then of the last one): what a status
   * reader wants to see while the answer streams in. */
  gkp__strlcpy(job->key_id, job->lease.key_id, sizeof job->key_id);
  pthread_mutex_unlock(&job->mu);
  set_status(job, GKP__JOB_RUNNING);
  pthread_mutex_lock(&r->stats_mu);
  r->stats.running++;
  pthread_mutex_unlock(&r->stats_mu);
  notify_state(job);
}

/* Decides what a job that cannot start now does: wait (returns 0) or move
 * on (fallback; returns 1). */
static int job_cannot_start(gkp__job *job, const gkp_wait *w) {
  int64_t now = gkp_pool_now(job->runner->pool);
  int64_t budget = job->wait_started_ms + job->max_wait_ms;
  if (job->endpoint_wait) {
    if (w->next_ms <= budget) {
      return 0;
    }
    queue_remove(job);
    job_finish(job, GKP__JOB_FAILED, job->runner->down_error);
    return 1;
  }
  if (w->reason == GKP_WAIT_UNREACHABLE) {
    /* Nothing is sent while the shared state cannot be reached: the job
     * waits for it as for a key, and fails when its max_wait runs out. */
    if (w->next_ms > budget) {
      char why[GKP_MSG_MAX + 64];
      snprintf(why, sizeof why, "%s; gave up after waiting %lld s", job->state_down,
               (long long)(job->max_wait_ms / 1000));
      queue_remove(job);
      job_finish(job, GKP__JOB_FAILED, why);
      return 1;
    }
    return 0;
  }
  /* A busy key's next_ms is only its lease's expiry (an upper bound, 10 min
   * away): it used to end up in the failure message as "until <then>". */
  if (w->reason != GKP_WAIT_BUSY && w->next_ms != INT64_MAX &&
      (job->chain_next_ms == 0 || w->next_ms < job->chain_next_ms)) {
    job->chain_next_ms = w->next_ms;
  }
  if (w->reason == GKP_WAIT_BUSY) {
    return 0; /* a key in flight frees up soon */
  }
  if (w->reason == GKP_WAIT_NEVER || w->next_ms > budget) {
    char why[GKP_MSG_MAX];
    snprintf(why, sizeof why, "%s: %s", job->model,
             w->reason == GKP_WAIT_NEVER ? "no key can serve it" : "no key frees up in time");
    queue_remove(job);
    job_fallback(job, w->reason == GKP_WAIT_NEVER ? why : NULL);
    return 1;
  }
  (void)now;
  return 0;
}

static void queue_timer_fired(gkp__loop *loop, void *ud);

/* The head of a queue cannot start now (*w says why and until when): it
 * goes back to the front and waits, or moves on.  Returns 1 if the queue
 * may go on with its next job, 0 if it waits (its timer set). */
static int job_waits(gkp__mq *q, gkp__job *job, const gkp_wait *w) {
  gkp__runner *r = q->runner;
  if (queue_add(job, 1) != 0) {
    job_finish(job, GKP__JOB_FAILED, "out of memory");
    return 1;
  }
  if (job_cannot_start(job, w)) {
    return 1; /* it moved to another queue or ended */
  }
  /* The head waits; so does everyone behind it.  Look again when the
   * first key frees up (or soon, if keys are busy elsewhere). */
  int64_t now = gkp_pool_now(r->pool);
  int64_t at =
      w->reason == GKP_WAIT_BUSY || w->next_ms == INT64_MAX ? now + BUSY_POLL_MS : w->next_ms;
  if (q->timer == 0 || at < q->timer_at) {
    if (q->timer != 0) {
      gkp__loop_timer_cancel(r->loop, q->timer);
    }
    q->timer = gkp__loop_timer_add(r->loop, at, queue_timer_fired, q);
    q->timer_at = at;
  }
  return 0;
}

/* What a reservation for the head of a queue answered.  Returns 1 if the
 * queue may go on with its next job, 0 if it waits. */
static int job_reserved(gkp__mq *q, gkp__job *job, int rc, const gkp_lease *lease,
                        const gkp_wait *w, const gkp_error *err) {
  if (rc == -EAGAIN) {
    if (w->reason == GKP_WAIT_UNREACHABLE) {
      gkp__strlcpy(job->state_down, err->msg, sizeof job->state_down);
    }
    return job_waits(q, job, w);
  }
  job->state_down[0] = '\0';
  if (rc != 0) {
    job_finish(job, GKP__JOB_FAILED, err->msg);
    return 1;
  }
  job->lease = *lease;
  job_start(job);
  return 1;
}

/* A reservation made on the state thread for the head of a queue. */
typedef struct reserve_op {
  gkp__sop base;
  gkp__mq *q;
  gkp__job *job; /* a reference */
  gkp_pool *pool;
  char model[GKP_ID_MAX];
  int64_t est;
  int rc;
  gkp_lease lease;
  gkp_wait wait;
  gkp_error err;
} reserve_op;

static void reserve_run(gkp__sop *o) {
  reserve_op *op = (reserve_op *)o;
  op->rc = gkp_reserve(op->pool, op->model, op->est, &op->lease, &op->wait, &op->err);
}

static void reserve_done(gkp__sop *o, int orphan) {
  reserve_op *op = (reserve_op *)o;
  gkp__job *job = op->job;
  gkp__mq *q = op->q;
  if (orphan || job_ended(job)) {
    /* Nobody wants the key any more: it is given back uncounted. */
    if (op->rc == 0) {
      if (orphan) {
        gkp_release(op->pool, &op->lease, 0, NULL);
      } else {
        job->lease = op->lease;
        job->has_lease = 1;
        end_lease(job, 0);
      }
    }
    if (!orphan) {
      q->reserving = NULL;
      dispatch_queue(q);
    }
  } else {
    q->reserving = NULL;
    if (job_reserved(q, job, op->rc, &op->lease, &op->wait, &op->err)) {
      dispatch_queue(q);
    }
  }
  job_unref(job);
  free(op);
}

/* Starts as many jobs of a queue as keys allow, in FIFO order.  With a
 * remote state, one reservation at a time is under way per queue, on the
 * state thread; the queue goes on when it answers. */
static void dispatch_queue(gkp__mq *q) {
  gkp__runner *r = q->runner;
  while (q->head != NULL && q->reserving == NULL) {
    gkp__job *job = q->head;
    gkp_wait w;
    gkp_error err;
    gkp_lease lease;
    queue_remove(job);
    job->endpoint_wait = 0;
    if (r->down_retry_at_ms != 0 && gkp_pool_now(r->pool) < r->down_retry_at_ms) {
      memset(&w, 0, sizeof w);
      w.reason = GKP_WAIT_COOLDOWN;
      w.next_ms = r->down_retry_at_ms;
      job->endpoint_wait = 1;
      if (!job_waits(q, job, &w)) {
        return;
      }
      continue;
    }
    if (r->st == NULL) {
      int rc = gkp_reserve(r->pool, job->model, job->est_tokens, &lease, &w, &err);
      if (!job_reserved(q, job, rc, &lease, &w, &err)) {
        return;
      }
      continue;
    }
    reserve_op *op = calloc(1, sizeof *op);
    if (op == NULL) {
      job_finish(job, GKP__JOB_FAILED, "out of memory");
      continue;
    }
    op->base.run = reserve_run;
    op->base.done = reserve_done;
    op->q = q;
    op->job = job;
    op->pool = r->pool;
    gkp__strlcpy(op->model, job->model, sizeof op->model);
    op->est = job->est_tokens;
    atomic_fetch_add(&job->refs, 1);
    q->reserving = job;
    gkp__state_submit(r->st, &op->base);
  }
}

static void queue_timer_fired(gkp__loop *loop, void *ud) {
  gkp__mq *q = ud;
  (void)loop;
  q->timer = 0;
  dispatch_queue(q);
}

static void dispatch_all_now(gkp__loop *loop, void *ud) {
  gkp__runner *r = ud;
  (void)loop;
  r->dispatch_posted = 0;
  for (gkp__mq *q = r->queues; q != NULL; q = q->next) {
    dispatch_queue(q);
  }
}

/* Schedules a pass over every queue on the next turn of the loop. */
static void dispatch_all(gkp__runner *r) {
  if (!r->dispatch_posted && gkp__loop_timer_after(r->loop, 0, dispatch_all_now, r) != 0) {
    r->dispatch_posted = 1;
  }
}

/* A job enters (or re-enters) its model's queue and tries its luck. */
static void job_try(gkp__job *job) {
  gkp__mq *q = queue_for(job->runner, job->model);
  if (q == NULL || queue_add(job, 0) != 0) {
    job_finish(job, GKP__JOB_FAILED, "out of memory");
    return;
  }
  if (q->head == job) {
    dispatch_queue(q);
  }
}

/* ---- posted from other threads ---------------------------------------------- */

static void deadline_fired(gkp__loop *loop, void *ud) {
  gkp__job *job = ud;
  char msg[GKP_MSG_MAX];
  (void)loop;
  job->deadline_timer = 0;
  job->timed_out = 1;
  if (job->state_op) {
    return; /* its continuation sees timed_out */
  }
  if (job->call != NULL) {
    gkp__gemini_call_cancel(job->call);
    return;
  }
  snprintf(msg, sizeof msg, "timed out after %lld s waiting for a key for %s",
           (long long)((job->deadline_ms - job->created_ms) / 1000), job->model);
  job_finish(job, GKP__JOB_FAILED, msg);
}

/* The largest TPM any key of the job's chain has, if the job's prompt is
 * larger (-1 otherwise).  A state verb: the remembered answer lets most
 * prompts through at no cost; a refusal is checked against the state as it
 * is now. */
static int64_t too_large(gkp_pool *pool, const char *model, int64_t est) {
  int64_t limit = -1;
  if (gkp__pool_max_tpm(pool, model, 0, &limit, NULL) != 0 || limit < 0 || est <= limit ||
      gkp__pool_max_tpm(pool, model, 1, &limit, NULL) != 0 || limit < 0 || est <= limit) {
    return -1;
  }
  return limit;
}

static void job_enter(gkp__job *job, int64_t too_large_limit) {
  gkp__runner *r = job->runner;
  char msg[GKP_MSG_MAX];
  if (too_large_limit >= 0) {
    snprintf(msg, sizeof msg,
             "the prompt is about %lld input tokens, more than any key can take: the largest "
             "per-minute input token limit (TPM) of %s and its fallbacks is %lld",
             (long long)job->est_tokens, job->model, (long long)too_large_limit);
    job_finish(job, GKP__JOB_FAILED, msg);
    return;
  }
  if (job->deadline_ms > 0) {
    job->deadline_timer = gkp__loop_timer_add(r->loop, job->deadline_ms, deadline_fired, job);
  }
  job->wait_started_ms = gkp_pool_now(r->pool);
  notify_state(job);
  job_try(job);
}

/* A new job's size checked against the pool's limits on the state thread. */
typedef struct check_op {
  gkp__sop base;
  gkp__job *job; /* a reference */
  char model[GKP_ID_MAX];
  int64_t est;
  int64_t limit;
} check_op;

static void check_run(gkp__sop *o) {
  check_op *op = (check_op *)o;
  op->limit = too_large(op->job->runner->pool, op->model, op->est);
}

static void check_done(gkp__sop *o, int orphan) {
  check_op *op = (check_op *)o;
  if (!orphan && !job_ended(op->job)) {
    job_enter(op->job, op->limit);
  }
  job_unref(op->job);
  free(op);
}

static void job_begin(gkp__loop *loop, void *ud) {
  gkp__job *job = ud;
  gkp__runner *r = job->runner;
  (void)loop;
  job->all_next = r->all;
  if (r->all != NULL) {
    r->all->all_prev = job;
  }
  r->all = job;
  job->listed = 1;
  if (job->cancel_requested) {
    job_finish(job, GKP__JOB_CANCELLED, "cancelled");
    return;
  }
  if (r->st == NULL) {
    job_enter(job, too_large(r->pool, job->model, job->est_tokens));
    return;
  }
  check_op *op = calloc(1, sizeof *op);
  if (op == NULL) {
    job_finish(job, GKP__JOB_FAILED, "out of memory");
    return;
  }
  op->base.run = check_run;
  op->base.done = check_done;
  op->job = job;
  gkp__strlcpy(op->model, job->model, sizeof op->model);
  op->est = job->est_tokens;
  atomic_fetch_add(&job->refs, 1);
  gkp__state_submit(r->st, &op->base);
}

static void job_cancel_now(gkp__loop *loop, void *ud) {
  gkp__job *job = ud;
  (void)loop;
  job->cancel_requested = 1;
  if (job->listed && job->status < GKP__JOB_DONE) {
    if (job->call != NULL) {
      gkp__gemini_call_cancel(job->call);
    } else {
      job_finish(job, GKP__JOB_CANCELLED, "cancelled");
    }
  }
  job_unref(job); /* the reference taken by gkp__job_cancel */
}

void gkp__job_cancel(gkp__job *job) {
  atomic_fetch_add(&job->refs, 1);
  if (gkp__loop_post(job->runner->loop, job_cancel_now, job) != 0) {
    job_unref(job);
  }
}

static void job_release_now(gkp__loop *loop, void *ud) {
  gkp__job *job = ud;
  job->released = 1;
  job_cancel_now(loop, job);
}

void gkp__job_release(gkp__job *job) {
  if (job == NULL) {
    return;
  }
  /* The owner's reference becomes the posted function's; it drops it. */
  if (gkp__loop_post(job->runner->loop, job_release_now, job) != 0) {
    job_unref(job);
  }
}

/* ---- submission ---------------------------------------------------------------- */

static unsigned tool_bits(const char *const *tools, size_t n) {
  unsigned bits = 0;
  for (size_t i = 0; i < n; i++) {
    if (strcmp(tools[i], "google_search") == 0) {
      bits |= GKP__TOOL_GOOGLE_SEARCH;
    } else if (strcmp(tools[i], "code_execution") == 0) {
      bits |= GKP__TOOL_CODE_EXECUTION;
    } else if (strcmp(tools[i], "url_context") == 0) {
      bits |= GKP__TOOL_URL_CONTEXT;
    }
  }
  return bits;
}

/* A routed job: the decision, its first candidate, the JSON it records.
 * Returns 0 or a negative errno with err set. */
static int job_route(gkp__job *job, const gkp__job_spec *s, int quality, const gkp__config *cfg,
                     gkp_error *err) {
  const gkp__profile_cfg *p = s->profile != NULL ? gkp__config_profile(cfg, s->profile) : NULL;
  gkp__route rt;
  char compact[1024];
  gkp__route_in in = {.task = s->route_text != NULL ? s->route_text : s->prompt,
                      .len = s->route_text != NULL ? strlen(s->route_text) : s->prompt_len,
                      .has_image = s->image != NULL || s->route_image,
                      .enable_tools = s->enable_tools,
                      .quality = quality};
  int rc = gkp__pool_route(job->runner->pool, &in, &rt, err);
  if (rc != 0) {
    return rc;
  }
  if (rt.ncands == 0) {
    char why[GKP_MSG_MAX] = "";
    size_t n = 0;
    for (size_t i = 0; i < rt.nskipped && n < sizeof why; i++) {
      int k = snprintf(why + n, sizeof why - n, "%s%s: %s", i > 0 ? "; " : "", rt.skipped[i].model,
                       rt.skipped[i].detail);
      n += k > 0 ? (size_t)k : 0;
    }
    return gkp__err(err, -EAGAIN, "no model can take this task today: %s", why);
  }
  job->cands = malloc(rt.ncands * sizeof *job->cands);
  job->route_json = gkp__route_json(&rt);
  gkp__route_compact(&rt, compact, sizeof compact);
  job->route_compact = strdup(compact);
  job->model_requested = strdup("auto");
  job->profile = s->profile != NULL ? strdup(s->profile) : NULL;
  const char *system = s->system != NULL ? s->system : p != NULL ? p->system : NULL;
  job->system = system != NULL ? strdup(system) : NULL;
  if (job->cands == NULL || job->route_json == NULL || job->route_compact == NULL ||
      job->model_requested == NULL || (s->profile != NULL && job->profile == NULL) ||
      (system != NULL && job->system == NULL)) {
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  memcpy(job->cands, rt.cands, rt.ncands * sizeof *job->cands);
  job->ncands = rt.ncands;
  job->cand_i = 0;
  gkp__strlcpy(job->model, rt.cands[0].model, sizeof job->model);
  const char *thinking = s->thinking != NULL ? s->thinking : p != NULL ? p->thinking : NULL;
  job->thinking = gkp__gemini_thinking_parse(thinking);
  if (job->thinking < 0) {
    return gkp__err(err, -EINVAL, "unknown thinking level '%s' (minimal, low, medium, high)",
                    thinking);
  }
  job->tools = s->tools != NULL                ? tool_bits(s->tools, s->ntools)
               : p != NULL && !s->enable_tools ? tool_bits((const char *const *)p->tools, p->ntools)
                                               : 0;
  use_candidate(job, &job->cands[0]);
  job->temperature = p != NULL ? p->temperature : -1;
  job->max_output_tokens = p != NULL ? p->max_output_tokens : 0;
  job->max_wait_ms = s->max_wait_ms >= 0 ? s->max_wait_ms : p != NULL ? p->max_wait_ms : 120000;
  return 0;
}

/* Fills the job's settings from its profile and the spec.  Returns 0 or a
 * negative errno with err set. */
static int job_settings(gkp__job *job, const gkp__job_spec *s, gkp_error *err) {
  gkp_pool *pool = job->runner->pool;
  const gkp__profile_cfg *p = NULL;
  const char *model, *system, *thinking;
  int rc = 0;

  const gkp__config *cfg = gkp__pool_config(pool);
  if (s->profile != NULL && (p = gkp__config_profile(cfg, s->profile)) == NULL) {
    rc = gkp__err(err, -ENOENT, "unknown profile '%s'", s->profile);
    goto out;
  }
  const char *quality = s->quality != NULL ? s->quality : p != NULL ? p->quality : NULL;
  int qi = quality != NULL ? gkp__quality_index(quality) : -1;
  if (quality != NULL && qi < 0) {
    rc = gkp__err(err, -EINVAL, "unknown quality '%s' (draft, standard, production, research)",
                  quality);
    goto out;
  }
  job->quality_note =
      qi >= 0 && cfg->routing.q[qi].note != NULL ? strdup(cfg->routing.q[qi].note) : NULL;
  job->thinking_given = s->thinking != NULL || (p != NULL && p->thinking != NULL);
  job->tools_given = s->tools != NULL || (!s->enable_tools && p != NULL && p->ntools > 0);
  if (s->prompt != NULL && s->prompt_len > 0) {
    gkp__route_in in = {.task = s->prompt, .len = s->prompt_len, .quality = qi};
    int ti, cx;
    gkp__route_classify(cfg, &in, &ti, &cx);
    gkp__strlcpy(job->task_type, ti >= 0 ? cfg->routing.types[ti].name : "general",
                 sizeof job->task_type);
    gkp__strlcpy(job->complexity, gkp__cx_name(cx), sizeof job->complexity);
  }
  int routed = s->model != NULL ? strcmp(s->model, "auto") == 0
                                : (p != NULL ? p->route : s->profile == NULL);
  if (routed) {
    rc = job_route(job, s, qi, cfg, err);
    goto out;
  }
  model = s->model != NULL ? s->model : p != NULL ? p->model : NULL;
  if (model == NULL || gkp__config_model_index(cfg, model) < 0) {
    rc = gkp__err(err, -ENOENT, "unknown model '%s': add it under \"models\" in %s",
                  model != NULL ? model : "(none)", gkp_pool_config_path(pool));
    goto out;
  }
  gkp__strlcpy(job->model, model, sizeof job->model);
  job->model_requested = strdup(model);
  job->profile = s->profile != NULL ? strdup(s->profile) : NULL;
  system = s->system != NULL ? s->system : p != NULL ? p->system : NULL;
  job->system = system != NULL ? strdup(system) : NULL;
  thinking = s->thinking != NULL ? s->thinking : p != NULL ? p->thinking : NULL;
  if (thinking == NULL && qi >= 0) {
    thinking = cfg->routing.q[qi].thinking; /* the quality's level */
  }
  job->thinking = gkp__gemini_thinking_parse(thinking);
  if (job->thinking < 0) {
    rc = gkp__err(err, -EINVAL, "unknown thinking level '%s' (minimal, low, medium, high)",
                  thinking);
    goto out;
  }
  job->tools = s->tools != NULL  ? tool_bits(s->tools, s->ntools)
               : s->enable_tools ? gkp__routing_tools_for(&cfg->routing, s->prompt)
               : p != NULL       ? tool_bits((const char *const *)p->tools, p->ntools)
                                 : 0;
  job->temperature = p != NULL ? p->temperature : -1;
  job->max_output_tokens = p != NULL ? p->max_output_tokens : 0;
  job->max_wait_ms = s->max_wait_ms >= 0 ? s->max_wait_ms : p != NULL ? p->max_wait_ms : 120000;
out:
  gkp__config_unref(cfg);
  return rc;
}

/* A new job owned by the caller and the loop (two references), with its
 * buffers, times and sink set; NULL (err set) when out of memory. */
static gkp__job *job_new(gkp__runner *r, int64_t deadline_ms, const gkp__job_sink *sink, void *ud,
                         gkp_error *err) {
  int64_t now = gkp_pool_now(r->pool);
  int64_t limit = deadline_ms > 0 ? deadline_ms : r->opts.default_deadline_ms;
  gkp__job *job = calloc(1, sizeof *job);
  if (job == NULL) {
    gkp__err(err, -ENOMEM, "out of memory");
    return NULL;
  }
  atomic_init(&job->refs, 2); /* the owner's and the loop's */
  job->runner = r;
  pthread_mutex_init(&job->mu, NULL);
  gkp__dynbuf_init(&job->text, GKP__MAX_ANSWER);
  gkp__dynbuf_init(&job->attempt_text, GKP__MAX_ANSWER);
  gkp__dynbuf_init(&job->thoughts, GKP__MAX_ANSWER);
  gkp__dynbuf_init(&job->raw_error, GKP__GEMINI_MAX_ERROR_BODY);
  job->tokens_in = job->tokens_out = -1;
  job->created_ms = now;
  job->deadline_ms = limit > 0 ? now + limit : 0;
  if (sink != NULL) {
    job->sink = *sink;
  }
  job->sink_ud = ud;
  return job;
}

/* The task text with the quality's note after it (if any), malloc'd. */
static char *with_note(const char *prompt, size_t len, const char *note) {
  if (note == NULL) {
    return gkp__dup_n(prompt, len);
  }
  size_t nlen = strlen(note);
  char *out = malloc(len + nlen + 3);
  if (out != NULL) {
    memcpy(out, prompt, len);
    memcpy(out + len, "\n\n", 2);
    memcpy(out + len + 2, note, nlen + 1);
  }
  return out;
}

gkp__job *gkp__runner_submit(gkp__runner *r, const gkp__job_spec *s, const gkp__job_sink *sink,
                             void *ud, gkp_error *err) {
  gkp__job *job;

  gkp__err_clear(err);
  if (s->prompt == NULL || s->prompt_len == 0) {
    gkp__err(err, -EINVAL, "the prompt is empty");
    return NULL;
  }
  if ((job = job_new(r, s->deadline_ms, sink, ud, err)) == NULL) {
    return NULL;
  }
  job->capture_thinking = s->capture_thinking;
  if (job_settings(job, s, err) != 0) {
    job_free(job);
    return NULL;
  }
  job->prompt = with_note(s->prompt, s->prompt_len, job->quality_note);
  job->context = s->context != NULL ? gkp__dup_n(s->context, s->context_len) : NULL;
  if (s->image != NULL) {
    job->image = malloc(s->image_len > 0 ? s->image_len : 1);
    if (job->image != NULL) {
      memcpy(job->image, s->image, s->image_len);
      job->image_len = s->image_len;
    }
  }
  if (job->prompt == NULL || (s->context != NULL && job->context == NULL) ||
      (s->image != NULL && job->image == NULL)) {
    job_free(job);
    gkp__err(err, -ENOMEM, "out of memory");
    return NULL;
  }
  /* Refuse a bad image or an oversized prompt now, not later. */
  if (build_body(job, err) != 0) {
    job_free(job);
    return NULL;
  }
  pthread_mutex_lock(&r->stats_mu);
  r->stats.submitted++;
  pthread_mutex_unlock(&r->stats_mu);
  if (gkp__loop_post(r->loop, job_begin, job) != 0) {
    job_free(job);
    gkp__err(err, -ESHUTDOWN, "the runner is shutting down");
    return NULL;
  }
  return job;
}

static int raw_action_ok(const char *a) {
  static const char *const ok[] = {"generateContent", "streamGenerateContent", "countTokens",
                                   "embedContent", "batchEmbedContents"};
  for (size_t i = 0; a != NULL && i < sizeof ok / sizeof ok[0]; i++) {
    if (strcmp(a, ok[i]) == 0) {
      return 1;
    }
  }
  return 0;
}

gkp__job *gkp__runner_submit_raw(gkp__runner *r, const gkp__raw_spec *s, const gkp__job_sink *sink,
                                 void *ud, gkp_error *err) {
  gkp__job *job;

  gkp__err_clear(err);
  if (!raw_action_ok(s->action)) {
    gkp__err(err, -EINVAL, "unknown method '%s'", s->action != NULL ? s->action : "");
    return NULL;
  }
  if (s->body == NULL || s->body_len == 0) {
    gkp__err(err, -EINVAL, "the request body is empty");
    return NULL;
  }
  if ((job = job_new(r, s->deadline_ms, sink, ud, err)) == NULL) {
    return NULL;
  }
  gkp__job_spec js = {.profile = s->profile, .model = s->model, .max_wait_ms = s->max_wait_ms};
  char *text = NULL;
  if (s->model != NULL && strcmp(s->model, "auto") == 0) {
    /* Routed on the text of the request's contents. */
    text = gkp__raw_task_text(s->body, s->body_len, &js.route_image);
    js.route_text = text != NULL && text[0] != '\0' ? text : "(no text)";
    js.prompt = js.route_text;
    js.prompt_len = strlen(js.route_text);
  }
  int src = job_settings(job, &js, err);
  free(text);
  if (src != 0) {
    job_free(job);
    return NULL;
  }
  job->raw = 1;
  job->pin_model = s->pin_model;
  job->model_allowed = s->model_allowed;
  job->raw_stream = strcmp(s->action, "streamGenerateContent") == 0;
  job->raw_action = strdup(s->action);
  job->body = s->take_body ? (char *)s->body : gkp__dup_n(s->body, s->body_len);
  job->body_len = s->body_len;
  job->prompt = strdup("");
  if (job->raw_action == NULL || job->body == NULL || job->prompt == NULL) {
    if (s->take_body) {
      job->body = NULL; /* the caller's again */
    }
    job_free(job);
    gkp__err(err, -ENOMEM, "out of memory");
    return NULL;
  }
  job->est_tokens =
      s->est_tokens > 0 ? s->est_tokens : gkp__raw_estimate_tokens(s->body, s->body_len);
  pthread_mutex_lock(&r->stats_mu);
  r->stats.submitted++;
  pthread_mutex_unlock(&r->stats_mu);
  if (gkp__loop_post(r->loop, job_begin, job) != 0) {
    if (s->take_body) {
      job->body = NULL; /* the caller's again */
    }
    job_free(job);
    gkp__err(err, -ESHUTDOWN, "the runner is shutting down");
    return NULL;
  }
  return job;
}

int gkp__job_snapshot(gkp__job *job, gkp__job_info *out) {
  gkp__job_info in;
  pthread_mutex_lock(&job->mu);
  job_info(job, &in);
  *out = in;
  out->profile = in.profile != NULL ? strdup(in.profile) : NULL;
  out->model_requested = strdup(in.model_requested != NULL ? in.model_requested : "");
  out->model_used = strdup(in.model_used);
  out->key_id = strdup(in.key_id);
  out->error = strdup(in.error);
  out->text = gkp__dup_n(in.text != NULL ? in.text : "", in.text_len);
  out->thoughts = gkp__dup_n(in.thoughts != NULL ? in.thoughts : "", in.thoughts_len);
  out->route = in.route != NULL ? strdup(in.route) : NULL;
  out->route_compact = in.route_compact != NULL ? strdup(in.route_compact) : NULL;
  gkp__attempt *a = malloc(sizeof *a * (in.nattempts > 0 ? in.nattempts : 1));
  if (a != NULL && in.nattempts > 0) {
    memcpy(a, in.attempts, sizeof *a * in.nattempts);
  }
  out->attempts = a;
  out->error_body = NULL; /* on_done only */
  out->error_body_len = 0;
  pthread_mutex_unlock(&job->mu);
  if (out->model_requested == NULL || out->model_used == NULL || out->key_id == NULL ||
      out->error == NULL || out->text == NULL || out->thoughts == NULL || a == NULL) {
    gkp__job_info_free(out);
    return -ENOMEM;
  }
  return 0;
}

void gkp__job_info_free(gkp__job_info *info) {
  free((char *)info->profile);
  free((char *)info->model_requested);
  free((char *)info->model_used);
  free((char *)info->key_id);
  free((char *)info->error);
  free((char *)info->text);
  free((char *)info->thoughts);
  free((char *)info->route);
  free((char *)info->route_compact);
  free((gkp__attempt *)info->attempts);
  memset(info, 0, sizeof *info);
}

/* ---- the runner ------------------------------------------------------------------ */

int gkp__runner_new(gkp_pool *pool, const gkp__runner_opts *opts, gkp__runner **out,
                    gkp_error *err) {
  gkp__runner *r = calloc(1, sizeof *r);
  int rc;
  *out = NULL;
  if (r == NULL) {
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  r->pool = pool;
  if (opts != NULL) {
    r->opts = *opts;
  } else {
    r->opts.stream = 1;
  }
  if (r->opts.lease_renew_ms <= 0) {
    r->opts.lease_renew_ms = GKP_LEASE_RENEW_MS;
    /* A shorter heartbeat for tests that watch it under load (with a short
     * $GEMINI_POOL_LEASE_TTL_MS on Redis): 100 ms to the default. */
    const char *beat = getenv("GEMINI_POOL_LEASE_RENEW_MS");
    if (beat != NULL && beat[0] != '\0') {
      char *end;
      long ms = strtol(beat, &end, 10);
      if (*end == '\0' && ms >= 100 && ms <= GKP_LEASE_RENEW_MS) {
        r->opts.lease_renew_ms = ms;
      }
    }
  }
  if (r->opts.max_attempts <= 0) {
    r->opts.max_attempts = DEFAULT_MAX_ATTEMPTS;
  }
  /* A request that receives nothing for this long is server trouble and is
   * retried on another key.  Thinking models can be silent for minutes
   * before their first chunk, hence a generous default; a smaller value lets
   * tests and impatient users fail over sooner. */
  r->stall_timeout_s = DEFAULT_STALL_TIMEOUT_S;
  const char *stall = getenv("GEMINI_POOL_STALL_TIMEOUT");
  if (stall != NULL && stall[0] != '\0') {
    char *end;
    long s = strtol(stall, &end, 10);
    if (*end == '\0' && s > 0 && s <= 3600) {
      r->stall_timeout_s = s;
    }
  }
  pthread_mutex_init(&r->stats_mu, NULL);
  rc = gkp__loop_new(&r->loop, NULL, err);
  if (rc == 0 && gkp__pool_state_remote(pool)) {
    rc = gkp__state_thread_new(r->loop, pool, &r->st, err);
  }
  if (rc == 0) {
    rc = gkp__loop_start(r->loop, err);
  }
  if (rc != 0) {
    gkp__state_thread_free(r->st);
    gkp__loop_free(r->loop);
    pthread_mutex_destroy(&r->stats_mu);
    free(r);
    return rc;
  }
  *out = r;
  return 0;
}

static void cancel_everything(gkp__loop *loop, void *ud) {
  gkp__runner *r = ud;
  gkp__job *job, *next;
  (void)loop;
  for (job = r->all; job != NULL; job = next) {
    next = job->all_next;
    job->cancel_requested = 1;
    if (job->call != NULL) {
      gkp__gemini_call_cancel(job->call); /* its on_done finishes it */
    } else {
      job_finish(job, GKP__JOB_CANCELLED, "cancelled: the service is stopping");
    }
  }
}

void gkp__runner_free(gkp__runner *r) {
  if (r == NULL) {
    return;
  }
  gkp__loop_post(r->loop, cancel_everything, r);
  gkp__loop_stop(r->loop);
  /* What the loop handed to the state thread last (releases) still runs. */
  gkp__state_thread_free(r->st);
  gkp__loop_free(r->loop);
  while (r->queues != NULL) {
    gkp__mq *q = r->queues;
    r->queues = q->next;
    free(q);
  }
  pthread_mutex_destroy(&r->stats_mu);
  free(r);
}

void gkp__runner_stats_get(gkp__runner *r, gkp__runner_stats *out) {
  pthread_mutex_lock(&r->stats_mu);
  *out = r->stats;
  pthread_mutex_unlock(&r->stats_mu);
}
