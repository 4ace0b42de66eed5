/*
 * task.c - gkp_run_task: the runner behind a blocking call of the library.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/util.h"
#include "engine/engine.h"
#include "engine/pool_impl.h"
#include "runner/runner.h"

typedef struct waiter {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int done;
  const gkp_task *task;
  gkp_task_result *res;
} waiter;

static void free_runner(void *r) {
  gkp__runner_free(r);
}

static void *make_runner(gkp_pool *pool, gkp_error *err) {
  gkp__runner *r;
  return gkp__runner_new(pool, NULL, &r, err) == 0 ? r : NULL;
}

/* The pool's runner, started on first use. */
static gkp__runner *pool_runner(gkp_pool *pool, gkp_error *err) {
  return gkp__pool_task_runner(pool, make_runner, free_runner, err);
}

static void on_text(void *ud, gkp__job *job, const char *text, size_t len) {
  waiter *w = ud;
  (void)job;
  if (w->task->on_text != NULL) {
    w->task->on_text(w->task->ud, text, len);
  }
}

static void on_restart(void *ud, gkp__job *job) {
  waiter *w = ud;
  (void)job;
  if (w->task->on_restart != NULL) {
    w->task->on_restart(w->task->ud);
  }
}

static void on_image(void *ud, gkp__job *job, const char *mime, const void *data, size_t len) {
  waiter *w = ud;
  gkp_image *n = realloc(w->res->images, (w->res->nimages + 1) * sizeof *n);
  (void)job;
  if (n == NULL) {
    return;
  }
  w->res->images = n;
  n = &n[w->res->nimages];
  n->data = malloc(len > 0 ? len : 1);
  if (n->data == NULL) {
    return;
  }
  memcpy(n->data, data, len);
  n->len = len;
  snprintf(n->mime, sizeof n->mime, "%s", mime);
  w->res->nimages++;
}

static void on_done(void *ud, gkp__job *job, const gkp__job_info *info) {
  waiter *w = ud;
  gkp_task_result *res = w->res;
  (void)job;
  res->ok = info->status == GKP__JOB_DONE;
  snprintf(res->model_used, sizeof res->model_used, "%s", info->model_used);
  snprintf(res->key_id, sizeof res->key_id, "%s", info->key_id);
  snprintf(res->error, sizeof res->error, "%s", info->error);
  res->attempts = (int)info->nattempts;
  res->tokens_in = info->tokens_in;
  res->tokens_out = info->tokens_out;
  res->latency_ms = info->latency_ms;
  res->text = gkp__dup_n(info->text, info->text_len);
  res->text_len = res->text != NULL ? info->text_len : 0;
  res->thoughts = gkp__dup_n(info->thoughts, info->thoughts_len);
  res->route = info->route != NULL ? strdup(info->route) : NULL;
  pthread_mutex_lock(&w->mu);
  w->done = 1;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

int gkp_run_task(gkp_pool *pool, const gkp_task *task, gkp_task_result *res, gkp_error *err) {
  waiter w = {.task = task, .res = res};
  gkp__runner *r;
  gkp__job *job;

  gkp__err_clear(err);
  memset(res, 0, sizeof *res);
  res->tokens_in = res->tokens_out = -1;
  if (task == NULL || task->prompt == NULL) {
    return gkp__err(err, -EINVAL, "the task has no prompt");
  }
  r = pool_runner(pool, err);
  if (r == NULL) {
    return err != NULL ? err->code : -ENOMEM;
  }
  gkp__job_spec spec = {
      .profile = task->profile,
      .model = task->model,
      .prompt = task->prompt,
      .prompt_len = strlen(task->prompt),
      .context = task->context,
      .context_len = task->context != NULL ? strlen(task->context) : 0,
      .system = task->system,
      .image = task->image,
      .image_len = task->image_len,
      .thinking = task->thinking,
      .capture_thinking = task->capture_thinking,
      .max_wait_ms = task->max_wait_ms,
      .deadline_ms = task->timeout_ms,
      .quality = task->quality,
      .enable_tools = task->enable_tools,
  };
  gkp__job_sink sink = {
      .on_text = on_text, .on_restart = on_restart, .on_image = on_image, .on_done = on_done};
  pthread_mutex_init(&w.mu, NULL);
  pthread_cond_init(&w.cv, NULL);
  job = gkp__runner_submit(r, &spec, &sink, &w, err);
  if (job == NULL) {
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    return err != NULL && err->code != 0 ? err->code : -EINVAL;
  }
  pthread_mutex_lock(&w.mu);
  while (!w.done) {
    pthread_cond_wait(&w.cv, &w.mu);
  }
  pthread_mutex_unlock(&w.mu);
  gkp__job_release(job);
  pthread_mutex_destroy(&w.mu);
  pthread_cond_destroy(&w.cv);
  if (res->text == NULL || res->thoughts == NULL) {
    gkp_task_result_free(res);
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  return 0;
}

void gkp_task_result_free(gkp_task_result *res) {
  if (res == NULL) {
    return;
  }
  free(res->text);
  free(res->thoughts);
  free(res->route);
  for (size_t i = 0; i < res->nimages; i++) {
    free(res->images[i].data);
  }
  free(res->images);
  memset(res, 0, sizeof *res);
}
