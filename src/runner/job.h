/*
 * job.h - the job object inside the runner (runner.c, job.c).
 */
#ifndef GKP_RUNNER_JOB_H
#define GKP_RUNNER_JOB_H

#include <pthread.h>
#include <stdatomic.h>

#include "client/gemini.h"
#include "common/dynbuf.h"
#include "engine/route.h"
#include "runner/runner.h"

#define GKP__MAX_ANSWER ((size_t)64 * 1024 * 1024)
#define GKP__MAX_CHAIN 16

/* An image of the attempt in progress, kept until the attempt succeeds. */
typedef struct gkp__job_image {
  char mime[48];
  void *data;
  size_t len;
} gkp__job_image;

typedef struct gkp__mq gkp__mq;

struct gkp__job {
  atomic_int refs; /* the owner's and the loop's */
  gkp__runner *runner;
  pthread_mutex_t mu; /* guards what gkp__job_snapshot reads */

  /* What to run (immutable after submit). */
  char *profile;
  char *model_requested;
  char *prompt;
  char *context;
  char *system;
  void *image;
  size_t image_len;
  int thinking; /* GKP__THINK_* */
  int capture_thinking;
  unsigned tools; /* GKP__TOOL_* */
  double temperature;
  int64_t max_output_tokens;
  int64_t max_wait_ms;
  int64_t deadline_ms; /* absolute */
  gkp__job_sink sink;
  void *sink_ud;
  /* A routed job: the candidates in order, the one being tried. */
  char *route_json;
  char *route_compact;
  gkp__route_cand *cands;
  size_t ncands, cand_i;
  int thinking_given; /* the spec or profile named a thinking level: kept for every candidate */
  char task_type[GKP_ID_MAX]; /* routing's view of the task ("" for raw jobs) */
  char complexity[16];
  int tools_given;    /* the spec or profile named tools: kept for every candidate */
  char *quality_note; /* the quality's note for the prompt, or NULL */

  /* Where it is (loop thread; status/attempts also under mu). */
  int status;
  int released; /* the owner let go: no more sink calls */
  int cancel_requested;
  int timed_out;
  char model[GKP_ID_MAX]; /* the model being tried */
  char *body;             /* the request body for `model` */
  size_t body_len;
  int64_t est_tokens;
  int64_t wait_started_ms; /* when it started waiting for `model` */
  int64_t chain_next_ms;   /* the soonest a key frees up anywhere on the chain */
  int chain_never;         /* some model of the chain can never be served */
  char chain_reason[GKP_MSG_MAX];
  char last_error[GKP_MSG_MAX]; /* the last failed attempt, for the end-of-chain message */
  char state_down[GKP_MSG_MAX]; /* why the shared state cannot be reached ("" when it can) */
  int server_streak;            /* consecutive server errors on `model` */
  int keywide_penalties;        /* keys this job got disabled or billed (at most 2) */
  int endpoint_wait;            /* waiting because nothing reaches the endpoint */
  gkp__mq *queue;               /* the queue it waits in, or NULL */
  gkp__job *qprev, *qnext;
  gkp__job *all_prev, *all_next; /* every live job of the runner */
  int listed;                    /* in that list */
  uint64_t deadline_timer;
  gkp_lease lease;
  int has_lease;
  int state_op; /* a state operation that decides its next step is under way */
  gkp__gemini_call *call;
  int64_t attempt_started_ms;

  /* Output. */
  gkp__dynbuf text;         /* delivered answer text */
  gkp__dynbuf attempt_text; /* the current attempt's text */
  int attempt_synced;       /* attempt_text has caught up with `text` */
  gkp__dynbuf thoughts;
  gkp__job_image *images;
  size_t nimages;
  gkp__gemini_usage usage;
  int has_usage;

  /* Outcome (under mu). */
  gkp__attempt *attempts;
  size_t nattempts, capattempts;
  char model_used[GKP_ID_MAX];
  char key_id[GKP_ID_MAX];
  int64_t tokens_in, tokens_out;
  int64_t created_ms, finished_ms;
  char error[GKP_MSG_MAX];

  /* Raw requests (gkp__runner_submit_raw). */
  int raw;
  char *raw_action;
  int raw_stream;
  int pin_model;
  int (*model_allowed)(void *ud, const char *model); /* fallback's filter, or NULL */
  int raw_sent;          /* answer bytes went to the sink */
  int refused_status;    /* Google refused the request: its status */
  gkp__dynbuf raw_error; /* the last error JSON */
};

#endif
