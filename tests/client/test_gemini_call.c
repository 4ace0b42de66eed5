/*
 * test_gemini_call.c - Gemini calls on the loop against the loopback server
 * (tests/client/test_server.py, which also checks that the API key comes
 * only in x-goog-api-key): streamed and whole answers, every kind of
 * outcome, countTokens, models.list paging, cancellation and limits.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "client/gemini.h"
#include "client/loop.h"
#include "common/dynbuf.h"
#include "server.h"

#define KEY "test-key-123"

static test_server srv = {.in_fd = -1};

enum { M_GENERATE, M_COUNT, M_MODELS };

typedef struct crec {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  /* what to do */
  int mode;
  char model[64];
  int stream;
  char base[256];
  gkp__gemini_endpoint ep;
  int abort_text;  /* on_text returns 5 */
  int cancel_text; /* gkp__gemini_call_cancel from the first on_text */
  /* what happened */
  int started, start_rc;
  char start_err[GKP_MSG_MAX];
  uint64_t id;
  gkp__gemini_call *call; /* loop thread only */
  gkp__dynbuf text, thoughts;
  int text_calls;
  long long t_start, t_first_text, t_done;
  int images;
  char mime[32];
  unsigned char image[256];
  size_t image_len;
  int usage_calls;
  gkp__gemini_usage usage;
  int done_calls;
  int status, http_status, body_truncated;
  char message[GKP_MSG_MAX];
  char body[70000];
  size_t body_len;
  char finish[40], block[40], model_version[80];
  int64_t count;
  size_t nmodels;
  char models[1024];
} crec;

static void crec_init(crec *r, int mode, const char *model, int stream) {
  memset(r, 0, sizeof *r);
  pthread_mutex_init(&r->mu, NULL);
  pthread_cond_init(&r->cv, NULL);
  r->mode = mode;
  snprintf(r->model, sizeof r->model, "%s", model);
  r->stream = stream;
  snprintf(r->base, sizeof r->base, "http://127.0.0.1:%d", srv.port);
  r->ep.base_url = r->base;
  r->ep.api_key = KEY;
  gkp__dynbuf_init(&r->text, 1 << 20);
  gkp__dynbuf_init(&r->thoughts, 1 << 20);
}

static void crec_free(crec *r) {
  gkp__dynbuf_reset(&r->text);
  gkp__dynbuf_reset(&r->thoughts);
  pthread_mutex_destroy(&r->mu);
  pthread_cond_destroy(&r->cv);
}

static int c_text(void *ud, const char *t, size_t len, int thought) {
  crec *r = ud;
  pthread_mutex_lock(&r->mu);
  gkp__dynbuf_add(thought ? &r->thoughts : &r->text, t, len);
  int first = r->text_calls++ == 0;
  if (first) {
    r->t_first_text = test_now_ms();
  }
  int rc = r->abort_text;
  int cancel = first && r->cancel_text;
  gkp__gemini_call *call = r->call;
  pthread_mutex_unlock(&r->mu);
  if (cancel) {
    gkp__gemini_call_cancel(call);
    gkp__gemini_call_cancel(call);
  }
  return rc;
}

static int c_image(void *ud, const char *mime, const void *data, size_t len, int thought) {
  crec *r = ud;
  pthread_mutex_lock(&r->mu);
  if (!thought) {
    r->images++;
    snprintf(r->mime, sizeof r->mime, "%s", mime);
    r->image_len = len < sizeof r->image ? len : sizeof r->image;
    memcpy(r->image, data, r->image_len);
  }
  pthread_mutex_unlock(&r->mu);
  return 0;
}

static void c_usage(void *ud, const gkp__gemini_usage *u) {
  crec *r = ud;
  pthread_mutex_lock(&r->mu);
  r->usage_calls++;
  r->usage = *u;
  pthread_mutex_unlock(&r->mu);
}

/* Records the outcome; the caller holds r->mu. */
static void record_outcome(crec *r, const gkp__gemini_outcome *o) {
  r->done_calls++;
  r->status = o->status;
  r->http_status = o->http_status;
  r->body_truncated = o->body_truncated;
  snprintf(r->message, sizeof r->message, "%s", o->message);
  r->body_len = 0;
  if (o->body != NULL) {
    r->body_len = o->body_len < sizeof r->body - 1 ? o->body_len : sizeof r->body - 1;
    memcpy(r->body, o->body, r->body_len);
  }
  r->body[r->body_len] = '\0';
  snprintf(r->finish, sizeof r->finish, "%s", o->state->finish_reason);
  snprintf(r->block, sizeof r->block, "%s", o->state->block_reason);
  snprintf(r->model_version, sizeof r->model_version, "%s", o->state->model_version);
  r->t_done = test_now_ms();
  r->call = NULL;
  pthread_cond_broadcast(&r->cv);
}

static void c_done(void *ud, const gkp__gemini_outcome *o) {
  crec *r = ud;
  pthread_mutex_lock(&r->mu);
  record_outcome(r, o);
  pthread_mutex_unlock(&r->mu);
}

static void c_count(void *ud, const gkp__gemini_outcome *o, int64_t n) {
  crec *r = ud;
  pthread_mutex_lock(&r->mu);
  r->count = n;
  record_outcome(r, o);
  pthread_mutex_unlock(&r->mu);
}

static void c_models(void *ud, const gkp__gemini_outcome *o, const gkp__gemini_model *m, size_t n) {
  crec *r = ud;
  pthread_mutex_lock(&r->mu);
  r->nmodels = n;
  size_t at = 0;
  for (size_t i = 0; i < n && at < sizeof r->models; i++) {
    at +=
        (size_t)snprintf(r->models + at, sizeof r->models - at, "%s|%s|%lld|%lld|%d|%d;", m[i].id,
                         m[i].display_name, (long long)m[i].input_token_limit,
                         (long long)m[i].output_token_limit, m[i].generate_content, m[i].thinking);
  }
  record_outcome(r, o);
  pthread_mutex_unlock(&r->mu);
}

static const gkp__gemini_callbacks rec_cb = {c_text, c_image, c_usage, c_done, NULL};

static void start_on_loop(gkp__loop *loop, void *ud) {
  crec *r = ud;
  gkp__gemini_request req = {.text = "hi", .temperature = -1};
  char *body = NULL;
  size_t len = 0;
  gkp_error e = {0};
  assert_int_equal(gkp__gemini_build_body(&req, &body, &len, &e), 0);
  pthread_mutex_lock(&r->mu);
  r->t_start = test_now_ms();
  pthread_mutex_unlock(&r->mu);
  gkp__gemini_call *call = NULL;
  int rc;
  if (r->mode == M_GENERATE) {
    rc =
        gkp__gemini_call_start(loop, &r->ep, r->model, body, len, r->stream, &rec_cb, r, &call, &e);
  } else if (r->mode == M_COUNT) {
    rc = gkp__gemini_count_start(loop, &r->ep, r->model, body, len, c_count, r, &call, &e);
  } else {
    rc = gkp__gemini_models_start(loop, &r->ep, c_models, r, &call, &e);
  }
  free(body);
  pthread_mutex_lock(&r->mu);
  r->started = 1;
  r->start_rc = rc;
  snprintf(r->start_err, sizeof r->start_err, "%s", e.msg);
  if (rc == 0) {
    r->call = call;
    r->id = gkp__gemini_call_id(call);
  }
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

/* Starts the call and waits for its end (or its failure to start). */
static void run(gkp__loop *loop, crec *r) {
  assert_int_equal(gkp__loop_post(loop, start_on_loop, r), 0);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += 100; /* a hang guard, shorter than the "held" model's 120 s */
  pthread_mutex_lock(&r->mu);
  while (r->done_calls == 0 && !(r->started && r->start_rc != 0)) {
    if (pthread_cond_timedwait(&r->cv, &r->mu, &ts) == ETIMEDOUT) {
      break;
    }
  }
  int done = r->done_calls > 0 || (r->started && r->start_rc != 0);
  pthread_mutex_unlock(&r->mu);
  if (!done) {
    fail_msg("call %s not done in time", r->model);
  }
}

static void wait_started(crec *r) {
  pthread_mutex_lock(&r->mu);
  while (!r->started) {
    pthread_cond_wait(&r->cv, &r->mu);
  }
  pthread_mutex_unlock(&r->mu);
}

static void wait_done(crec *r) {
  pthread_mutex_lock(&r->mu);
  while (r->done_calls == 0) {
    pthread_cond_wait(&r->cv, &r->mu);
  }
  pthread_mutex_unlock(&r->mu);
}

static int starts_with(const char *s, const char *prefix) {
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* ---- fixtures --------------------------------------------------------------- */

static gkp__loop *loop;

static int group_setup(void **state) {
  (void)state;
  test_no_proxy();
  if (test_server_start(&srv) != 0) {
    return -1;
  }
  gkp_error e = {0};
  if (gkp__loop_new(&loop, NULL, &e) != 0 || gkp__loop_start(loop, &e) != 0) {
    return -1;
  }
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  gkp__loop_free(loop);
  test_server_stop(&srv);
  return 0;
}

/* ---- answers ---------------------------------------------------------------- */

static void test_stream_ok(void **state) {
  (void)state;
  crec r;
  crec_init(&r, M_GENERATE, "ok", 1);
  run(loop, &r);
  assert_int_equal(r.start_rc, 0);
  assert_int_equal(r.done_calls, 1);
  assert_int_equal(r.status, GKP__GEMINI_OK);
  assert_int_equal(r.http_status, 200);
  assert_string_equal(r.message, "");
  assert_string_equal(gkp__dynbuf_ptr(&r.text), "Hello world");
  assert_string_equal(gkp__dynbuf_ptr(&r.thoughts), "Let me think.");
  assert_int_equal(r.usage_calls, 2); /* running totals: two different ones */
  assert_int_equal(r.usage.prompt, 7);
  assert_int_equal(r.usage.candidates, 3);
  assert_int_equal(r.usage.thoughts, 5);
  assert_int_equal(r.usage.total, 15);
  assert_string_equal(r.finish, "STOP");
  assert_string_equal(r.model_version, "gemini-test-001");
  assert_int_equal(r.body_len, 0);
  crec_free(&r);
}

static void test_whole_answer_ok(void **state) {
  (void)state;
  crec r;
  crec_init(&r, M_GENERATE, "models/ok", 0);
  run(loop, &r);
  assert_int_equal(r.status, GKP__GEMINI_OK);
  assert_string_equal(gkp__dynbuf_ptr(&r.text), "Hello world");
  assert_string_equal(gkp__dynbuf_ptr(&r.thoughts), "Let me think.");
  assert_int_equal(r.usage_calls, 1);
  assert_int_equal(r.usage.total, 15);
  crec_free(&r);
}

static void test_stream_is_incremental(void **state) {
  (void)state;
  crec r;
  crec_init(&r, M_GENERATE, "slow", 1);
  run(loop, &r);
  assert_int_equal(r.status, GKP__GEMINI_OK);
  assert_string_equal(gkp__dynbuf_ptr(&r.text), "Hello world");
  assert_true(r.t_done - r.t_first_text >= 800);
  crec_free(&r);
}

static void test_max_tokens_is_success_with_note(void **state) {
  (void)state;
  crec r;
  crec_init(&r, M_GENERATE, "maxtokens", 1);
  run(loop, &r);
  assert_int_equal(r.status, GKP__GEMINI_OK);
  assert_string_equal(r.message, "the answer was cut at maxOutputTokens (finishReason MAX_TOKENS)");
  crec_free(&r);
}

static void test_image_answer(void **state) {
  (void)state;
  for (int stream = 0; stream < 2; stream++) {
    crec r;
    crec_init(&r, M_GENERATE, "image", stream);
    run(loop, &r);
    assert_int_equal(r.status, GKP__GEMINI_OK);
    assert_string_equal(gkp__dynbuf_ptr(&r.text), "Here:");
    assert_int_equal(r.images, 1);
    assert_string_equal(r.mime, "image/png");
    assert_true(r.image_len > 8);
    assert_memory_equal(r.image, "\x89PNG\r\n\x1a\n", 8);
    crec_free(&r);
  }
}

/* ---- failures ---------------------------------------------------------------- */

static void test_midstream_bare_error(void **state) {
  (void)state;
  crec r;
  crec_init(&r, M_GENERATE, "midstream-error", 1);
  run(loop, &r);
  assert_int_equal(r.status, GKP__GEMINI_STREAM_ERROR);
  assert_int_equal(r.http_status, 200);
  assert_string_equal(gkp__dynbuf_ptr(&r.text), "partial");
  assert_true(starts_with(r.body, "{\n  \"error\": {\n    \"code\": 500,"));
  assert_int_equal(r.body[r.body_len - 1], '}');
  assert_non_null(strstr(r.body, "{not a brace}"));
  assert_non_null(strstr(r.message, "500 INTERNAL"));
  crec_free(&r);
}

static void test_data_error_event(void **state) {
  (void)state;
  crec r;
  crec_init(&r, M_GENERATE, "data-error", 1);
  run(loop, &r);
  assert_int_equal(r.status, GKP__GEMINI_STREAM_ERROR);
  assert_int_equal(r.http_status, 200);
  assert_non_null(strstr(r.body, "\"UNAVAILABLE\""));
  assert_non_null(strstr(r.message, "503 UNAVAILABLE: The model is overloaded."));
  crec_free(&r);
}

static void test_http_error_body(void **state) {
  (void)state;
  for (int stream = 0; stream < 2; stream++) {
    crec r;
    crec_init(&r, M_GENERATE, "quota", stream);
    run(loop, &r);
    assert_int_equal(r.status, GKP__GEMINI_HTTP_ERROR);
    assert_int_equal(r.http_status, 429);
    assert_false(r.body_truncated);
    assert_true(starts_with(r.body, "{\n  \"error\": {\n    \"code\": 429,"));
    assert_non_null(strstr(r.body, "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"));
    assert_int_equal(r.body_len, strlen(r.body));
    assert_int_equal(r.body[r.body_len - 1], '\n');
    assert_string_equal(r.message, "HTTP 429 RESOURCE_EXHAUSTED: You exceeded your current "
                                   "quota, please check your plan and billing details.");
    assert_int_equal(gkp__dynbuf_len(&r.text), 0);
    crec_free(&r);
  }
}

static void test_error_body_is_capped(void **state) {
  (void)state;
  crec r;
  crec_init(&r, M_GENERATE, "quota", 1);
  r.ep.max_error_bytes = 100;
  run(loop, &r);
  assert_int_equal(r.status, GKP__GEMINI_HTTP_ERROR);
  assert_int_equal(r.body_len, 100);
  assert_true(r.body_truncated);
  crec_free(&r);
}

static void test_event_cap(void **state) {
  (void)state;
  crec r;
  crec_init(&r, M_GENERATE, "ok", 1);
  r.ep.max_event_bytes = 50;
  run(loop, &r);
  assert_int_equal(r.status, GKP__GEMINI_MALFORMED);
  assert_non_null(strstr(r.message, "exceeded"));
  crec_free(&r);
}

static void test_wrong_key(void **state) {
  (void)state;
  crec r;
  crec_init(&r, M_GENERATE, "ok", 1);
  r.ep.api_key = "not-the-key";
  run(loop, &r);
  assert_int_equal(r.status, GKP__GEMINI_HTTP_ERROR);
  assert_int_equal(r.http_status, 400);
  assert_non_null(strstr(r.message, "API key not valid"));
  crec_free(&r);
}

static void test_truncated_and_unfinished(void **state) {
  (void)state;
  crec r;
  crec_init(&r, M_GENERATE, "truncated", 1);
  run(loop, &r);
  assert_int_equal(r.status, GKP__GEMINI_MALFORMED);
  assert_string_equal(r.message, "malformed answer: the stream ended mid-event (truncated)");
  assert_string_equal(gkp__dynbuf_ptr(&r.text), "partial");
  crec_free(&r);

  crec_init(&r, M_GENERATE, "nofinish", 1);
  run(loop, &r);
  assert_int_equal(r.status, GKP__GEMINI_MALFORMED);
  assert_string_equal(r.message, "the answer ended without a finishReason (truncated)");
  crec_free(&r);
}

static void test_content_failures(void **state) {
  (void)state;
  for (int stream = 0; stream < 2; stream++) {
    crec r;
    crec_init(&r, M_GENERATE, "safety", stream);
    run(loop, &r);
    assert_int_equal(r.status, GKP__GEMINI_CONTENT);
    assert_string_equal(r.message,
                        "the answer was blocked by Google's safety filter (finishReason SAFETY)");
    assert_string_equal(r.finish, "SAFETY");
    crec_free(&r);

    crec_init(&r, M_GENERATE, "blocked", stream);
    run(loop, &r);
    assert_int_equal(r.status, GKP__GEMINI_CONTENT);
    assert_string_equal(r.message, "the prompt was blocked (blockReason PROHIBITED_CONTENT)");
    assert_string_equal(r.block, "PROHIBITED_CONTENT");
    crec_free(&r);
  }
}

static void test_transport_failures(void **state) {
  (void)state;
  crec r;
  crec_init(&r, M_GENERATE, "reset", 1);
  run(loop, &r);
  assert_int_equal(r.status, GKP__GEMINI_TRANSPORT);
  assert_string_equal(gkp__dynbuf_ptr(&r.text), "partial");
  assert_true(strcmp(r.message, "connection reset") == 0 ||
              strcmp(r.message, "connection closed before the whole answer arrived") == 0);
  crec_free(&r);

  int fd = -1;
  int port = test_refusing_port(&fd);
  crec_init(&r, M_GENERATE, "ok", 1);
  snprintf(r.base, sizeof r.base, "http://127.0.0.1:%d/", port);
  run(loop, &r);
  close(fd);
  assert_int_equal(r.status, GKP__GEMINI_TRANSPORT);
  assert_int_equal(r.http_status, 0);
  assert_string_equal(r.message, "connection refused");
  crec_free(&r);

  crec_init(&r, M_GENERATE, "hang", 1);
  r.ep.low_speed_time_s = 1;
  run(loop, &r);
  assert_int_equal(r.status, GKP__GEMINI_TRANSPORT);
  assert_string_equal(r.message, "stalled: less than 1 byte/s for 1 s");
  crec_free(&r);
}

/* ---- starting, cancelling --------------------------------------------------------- */

static void test_bad_arguments(void **state) {
  (void)state;
  crec r;
  crec_init(&r, M_GENERATE, "gemini?key=" KEY, 1);
  run(loop, &r);
  assert_int_equal(r.start_rc, -EINVAL);
  assert_non_null(strstr(r.start_err, "invalid model name"));
  assert_int_equal(r.done_calls, 0);
  crec_free(&r);

  crec_init(&r, M_GENERATE, "ok", 1);
  r.ep.api_key = "abc\r\nX-Evil: 1";
  run(loop, &r);
  assert_int_equal(r.start_rc, -EINVAL);
  crec_free(&r);

  crec_init(&r, M_GENERATE, "ok", 1);
  r.ep.api_key = NULL;
  run(loop, &r);
  assert_int_equal(r.start_rc, -EINVAL);
  crec_free(&r);

  /* Off the loop thread. */
  gkp_error e = {0};
  gkp__gemini_endpoint ep = {.api_key = KEY};
  assert_int_equal(gkp__gemini_call_start(loop, &ep, "ok", "{}", 2, 1, &rec_cb, NULL, NULL, &e),
                   -EINVAL);
}

static void test_cancel_from_other_thread(void **state) {
  (void)state;
  crec r;
  crec_init(&r, M_GENERATE, "hang", 1);
  assert_int_equal(gkp__loop_post(loop, start_on_loop, &r), 0);
  wait_started(&r);
  usleep(200000);
  pthread_mutex_lock(&r.mu);
  uint64_t id = r.id;
  pthread_mutex_unlock(&r.mu);
  assert_int_equal(gkp__gemini_call_cancel_async(loop, id), 0);
  wait_done(&r);
  usleep(200000);
  pthread_mutex_lock(&r.mu);
  assert_int_equal(r.done_calls, 1);
  assert_int_equal(r.status, GKP__GEMINI_CANCELLED);
  assert_string_equal(r.message, "cancelled");
  pthread_mutex_unlock(&r.mu);
  assert_int_equal(gkp__gemini_call_cancel_async(loop, id), 0); /* gone: harmless */
  crec_free(&r);
}

static void test_cancel_and_abort_in_on_text(void **state) {
  (void)state;
  crec r;
  crec_init(&r, M_GENERATE, "held", 1);
  r.cancel_text = 1;
  run(loop, &r);
  assert_int_equal(r.status, GKP__GEMINI_CANCELLED);
  /* It did not wait for the rest, which the server holds for 120 s: run()
   * would have given up first. */
  crec_free(&r);

  crec_init(&r, M_GENERATE, "ok", 1);
  r.abort_text = 5;
  run(loop, &r);
  assert_int_equal(r.status, GKP__GEMINI_ABORTED);
  assert_non_null(strstr(r.message, "aborted"));
  assert_int_equal(r.text_calls, 1);
  crec_free(&r);
}

static void test_stop_cancels_calls(void **state) {
  (void)state;
  gkp__loop *own = NULL;
  gkp_error e = {0};
  assert_int_equal(gkp__loop_new(&own, NULL, &e), 0);
  assert_int_equal(gkp__loop_start(own, &e), 0);
  crec r;
  crec_init(&r, M_GENERATE, "hang", 1);
  assert_int_equal(gkp__loop_post(own, start_on_loop, &r), 0);
  wait_started(&r);
  usleep(100000);
  gkp__loop_free(own);
  assert_int_equal(r.done_calls, 1);
  assert_int_equal(r.status, GKP__GEMINI_CANCELLED);
  crec_free(&r);
}

/* ---- countTokens, models.list ----------------------------------------------------- */

static void test_count_tokens(void **state) {
  (void)state;
  crec r;
  crec_init(&r, M_COUNT, "gemini-2.5-flash", 0);
  run(loop, &r);
  assert_int_equal(r.status, GKP__GEMINI_OK);
  assert_int_equal(r.count, 42);
  crec_free(&r);

  crec_init(&r, M_COUNT, "gemini-2.5-flash", 0);
  r.ep.api_key = "bad";
  run(loop, &r);
  assert_int_equal(r.status, GKP__GEMINI_HTTP_ERROR);
  assert_int_equal(r.http_status, 400);
  assert_int_equal(r.count, -1);
  crec_free(&r);
}

static void test_models_list(void **state) {
  (void)state;
  crec r;
  crec_init(&r, M_MODELS, "", 0);
  run(loop, &r);
  assert_int_equal(r.status, GKP__GEMINI_OK);
  assert_int_equal(r.nmodels, 3);
  assert_string_equal(r.models, "gemini-2.5-flash|Gemini 2.5 Flash|1048576|65536|1|1;"
                                "embedding-001|Embedding|-1|-1|0|0;"
                                "gemini-3-pro-preview||-1|-1|1|0;");
  crec_free(&r);

  crec_init(&r, M_MODELS, "", 0);
  r.ep.api_key = "bad";
  run(loop, &r);
  assert_int_equal(r.status, GKP__GEMINI_HTTP_ERROR);
  assert_int_equal(r.http_status, 400);
  assert_int_equal(r.nmodels, 0);
  assert_non_null(strstr(r.body, "API key not valid"));
  crec_free(&r);

  crec_init(&r, M_MODELS, "", 0);
  snprintf(r.base, sizeof r.base, "http://127.0.0.1:%d/loop", srv.port);
  run(loop, &r);
  assert_int_equal(r.status, GKP__GEMINI_MALFORMED);
  assert_non_null(strstr(r.message, "nextPageToken"));
  crec_free(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stream_ok),
      cmocka_unit_test(test_whole_answer_ok),
      cmocka_unit_test(test_stream_is_incremental),
      cmocka_unit_test(test_max_tokens_is_success_with_note),
      cmocka_unit_test(test_image_answer),
      cmocka_unit_test(test_midstream_bare_error),
      cmocka_unit_test(test_data_error_event),
      cmocka_unit_test(test_http_error_body),
      cmocka_unit_test(test_error_body_is_capped),
      cmocka_unit_test(test_event_cap),
      cmocka_unit_test(test_wrong_key),
      cmocka_unit_test(test_truncated_and_unfinished),
      cmocka_unit_test(test_content_failures),
      cmocka_unit_test(test_transport_failures),
      cmocka_unit_test(test_bad_arguments),
      cmocka_unit_test(test_cancel_from_other_thread),
      cmocka_unit_test(test_cancel_and_abort_in_on_text),
      cmocka_unit_test(test_stop_cancels_calls),
      cmocka_unit_test(test_count_tokens),
      cmocka_unit_test(test_models_list),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
