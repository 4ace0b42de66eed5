/*
 * runner.h - running generation jobs through the pool: reserve a key, send,
 * classify errors, apply their rules, retry on another key, wait for quota
 * or fall back along the model chain, within a deadline.
 *
 * Everything happens on one event-loop thread (the client's loop): a job
 * waiting for a key is an entry in a FIFO queue with a timer, not a thread,
 * so thousands of jobs cost memory only.
 *
 * Threads: gkp__runner_submit, gkp__job_cancel and gkp__job_release may be
 * called from any thread.  Every sink callback runs on the loop thread and
 * must not block for long.
 */
#ifndef GKP_RUNNER_H
#define GKP_RUNNER_H

#include <stddef.h>
#include <stdint.h>

#include "gkp.h"

typedef struct gkp__runner gkp__runner;
typedef struct gkp__job gkp__job;

/* What to run.  Every pointer is borrowed for the duration of submit. */
typedef struct gkp__job_spec {
  const char *profile; /* a configured profile, or NULL */
  const char *model;   /* overrides the profile's model; "auto", or neither given, or a
                          profile with "route": "auto": the pool picks it (routing) */
  const char *prompt;  /* the task text (not necessarily NUL-terminated) */
  size_t prompt_len;
  const char *context; /* extra context text placed before the task, or NULL */
  size_t context_len;
  const char *system; /* overrides the profile's system instruction */
  const void *image;  /* one input image (bytes), or NULL */
  size_t image_len;
  const char *thinking;     /* "minimal" | "low" | "medium" | "high" | NULL (profile's) */
  int capture_thinking;     /* ask for thought summaries and keep them apart */
  const char *const *tools; /* "google_search", "code_execution", "url_context"; NULL: profile's */
  size_t ntools;
  int64_t max_wait_ms; /* < 0: the profile's (default 120 s) */
  int64_t deadline_ms; /* whole job, from submission; <= 0: the runner default (none) */
  const char *quality; /* "draft" .. "research": thinking and a note; NULL: the profile's */
  int enable_tools;    /* tools from the task's words (replace the profile's) */
  const char *route_text; /* routed: the text to route on instead of prompt (raw jobs) */
  int route_image;        /* routed: an image is attached (raw jobs) */
} gkp__job_spec;

enum gkp__job_status {
  GKP__JOB_QUEUED = 0,
  GKP__JOB_RUNNING,
  GKP__JOB_DONE,
  GKP__JOB_FAILED,
  GKP__JOB_CANCELLED,
};

/* One request sent for a job. */
typedef struct gkp__attempt {
  char key_id[GKP_ID_MAX];
  char model[GKP_ID_MAX];
  int http_status; /* 0: transport failure or none */
  int kind;        /* enum gkp_kind; GKP_KIND_NONE on success */
  int64_t ms;      /* how long it took */
} gkp__attempt;

/* A job's state and outcome, as the sink sees it.  Owned by the job. */
typedef struct gkp__job_info {
  int status;          /* enum gkp__job_status */
  const char *profile; /* may be NULL */
  const char *model_requested;
  const char *model_used; /* "" until a request was sent */
  const char *key_id;     /* "" until a request was sent */
  const gkp__attempt *attempts;
  size_t nattempts;
  int64_t tokens_in, tokens_out;   /* -1 unknown */
  int64_t created_ms, finished_ms; /* finished 0 while not finished */
  int64_t latency_ms;              /* submission to completion */
  const char *error;               /* one or two lines a person can act on; "" if none */
  const char *text;                /* the answer so far (never two attempts joined) */
  size_t text_len;
  const char *thoughts; /* thought summaries (capture_thinking) */
  size_t thoughts_len;
  const char *route; /* a routed job's decision (gkp_route's JSON), NULL otherwise */
  const char *route_compact; /* the same, as the x-pool-route header says it */
  char task_type[GKP_ID_MAX]; /* the task's type and complexity as routing sees them (every */
  char complexity[16];        /* job with a prompt, routed or not: what `rate` records) */
  /* Raw jobs (gkp__runner_submit_raw), in on_done; zero/NULL in snapshots. */
  int refused_status;     /* Google refused the request itself (a 400, say): its HTTP
                             status, and its error JSON below; 0 otherwise */
  const char *error_body; /* the last error JSON Google sent, or NULL */
  size_t error_body_len;
  int64_t retry_at_ms; /* exhausted: when the first key frees up (0: unknown) */
  int raw_sent;        /* answer bytes went to the sink before the job ended */
} gkp__job_info;

/* Where a job's output goes.  All callbacks are optional; loop thread. */
typedef struct gkp__job_sink {
  /* New answer text (appended to everything delivered before). */
  void (*on_text)(void *ud, gkp__job *job, const char *text, size_t len);
  /* The text delivered so far must be thrown away: a retry produced a
   * different answer.  The new text follows through on_text. */
  void (*on_restart)(void *ud, gkp__job *job);
  /* A generated image of the successful attempt (before on_done). */
  void (*on_image)(void *ud, gkp__job *job, const char *mime, const void *data, size_t len);
  /* The job changed state (queued -> running, an attempt ended, ...). */
  void (*on_state)(void *ud, gkp__job *job, const gkp__job_info *info);
  /* Exactly once, at the end (done, failed or cancelled). */
  void (*on_done)(void *ud, gkp__job *job, const gkp__job_info *info);
  /* Raw jobs: one JSON value of Google's answer, unchanged (an SSE event's
   * data when streaming, else the whole body), with the model and key id
   * that produced it.  Non-zero aborts the job (cancelled). */
  int (*on_raw)(void *ud, gkp__job *job, const char *model, const char *key_id, const char *json,
                size_t len);
} gkp__job_sink;

typedef struct gkp__runner_opts {
  int64_t default_deadline_ms; /* <= 0: none (a stalled request still fails) */
  int64_t lease_renew_ms;      /* the lease heartbeat; <= 0: GKP_LEASE_RENEW_MS */
  int max_attempts;            /* <= 0: 12 */
  int stream;                  /* use streamGenerateContent (default 1 when opts is NULL) */
  /* > 0: every 429 cools (project, model) for exactly this long, whatever it
   * said: how simpler, reactive pools behave.  For comparisons only. */
  int64_t fixed_429_cooldown_ms;
} gkp__runner_opts;

/* Creates a runner over an open pool and starts its loop thread.  The pool
 * must outlive the runner.  Returns 0 or a negative errno with err set. */
int gkp__runner_new(gkp_pool *pool, const gkp__runner_opts *opts, gkp__runner **out,
                    gkp_error *err);

/* Cancels every job (their sinks see on_done with "cancelled"), stops the
 * loop and frees the runner.  Any thread but the loop's.  NULL is a no-op. */
void gkp__runner_free(gkp__runner *r);

/*
 * Submits a job.  Returns a job handle (released with gkp__job_release by
 * the caller when it no longer needs it, which may be before or after the
 * job finishes), or NULL with err set for input refused up front (unknown
 * profile or model, image of an unknown type or too large, empty prompt).
 */
gkp__job *gkp__runner_submit(gkp__runner *r, const gkp__job_spec *spec, const gkp__job_sink *sink,
                             void *ud, gkp_error *err);

/*
 * A raw request: a Gemini REST body passed through unchanged.  The job
 * selects keys, waits, retries and falls back by the same rules as
 * gkp__runner_submit, sending `body` to {base}/v1beta/models/{m}:{action}
 * for each model m of the chain.  Its token estimate comes from the body's
 * text parts.  "streamGenerateContent" is always asked for as SSE and each
 * event reaches on_raw as it arrives; once any answer byte went out, a
 * failure ends the job (never a second attempt joined to the first).
 */
typedef struct gkp__raw_spec {
  const char *profile; /* its max_wait applies; may be NULL */
  const char *model;   /* required: a configured model */
  const char *action;  /* "generateContent", "streamGenerateContent", "countTokens",
                          "embedContent", "batchEmbedContents" */
  const char *body;    /* the request JSON, sent as is */
  size_t body_len;
  int pin_model;       /* no fallback to other models */
  int64_t max_wait_ms; /* < 0: the profile's (default 120 s) */
  int64_t deadline_ms; /* <= 0: the runner's default */
} gkp__raw_spec;

/* As gkp__runner_submit, for a raw request; refuses an unknown model or
 * action, an empty body. */
gkp__job *gkp__runner_submit_raw(gkp__runner *r, const gkp__raw_spec *spec,
                                 const gkp__job_sink *sink, void *ud, gkp_error *err);

/* Input tokens of a raw request body, estimated before sending: the UTF-8
 * bytes of every "text" string / 4, rounded up, plus 258 per inline file. */
int64_t gkp__raw_estimate_tokens(const char *body, size_t len);

/* The text of a raw request's "contents" (every text part, joined by
 * newlines; malloc'd, NULL if none or out of memory) and whether it holds an
 * inline file. */
char *gkp__raw_task_text(const char *body, size_t len, int *has_image);

/* Cancels a job: a running request is aborted, a waiting job leaves the
 * queue; the sink sees on_done(cancelled) unless the job already ended.
 * Any thread. */
void gkp__job_cancel(gkp__job *job);

/* Drops the caller's reference.  After this the sink is never called again
 * (a job still running is cancelled).  Any thread. */
void gkp__job_release(gkp__job *job);

/* A snapshot of a job's info, from any thread: fills *out with copies the
 * caller frees with gkp__job_info_free.  Returns 0 or -ENOMEM. */
int gkp__job_snapshot(gkp__job *job, gkp__job_info *out);
void gkp__job_info_free(gkp__job_info *info);

/* The loop thread's runner statistics (for status/metrics). */
typedef struct gkp__runner_stats {
  uint64_t submitted, done, failed, cancelled;
  uint64_t waiting, running;
} gkp__runner_stats;
void gkp__runner_stats_get(gkp__runner *r, gkp__runner_stats *out);

/* The job status's name: "queued", "running", "done", "failed", "cancelled". */
const char *gkp__job_status_name(int status);

#endif
