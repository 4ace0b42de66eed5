/*
 * test_task.c - gkp_run_task end to end against the emulator: answers,
 * streaming, retries, fallback, errors, and many threads on one pool.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gkp.h"

static gkp_pool *pool;
static char state[4200];

static const char *CONFIG =
    "{\"providers\":{\"gemini\":{\"keys\":["
    "{\"id\":\"one\",\"api_key\":\"env:TEST_KEY_1\"},{\"id\":\"two\",\"api_key\":\"env:TEST_KEY_"
    "2\"},"
    "{\"id\":\"three\",\"api_key\":\"env:TEST_KEY_3\"},{\"id\":\"four\",\"api_key\":\"env:TEST_KEY_"
    "4\"}"
    "]}},\"max_inflight\":4,"
    "\"models\":{\"gemini-2.5-flash\":{\"rpm\":100000,\"tpm\":100000000,\"rpd\":10000000},"
    "\"gemini-3.1-flash-lite-preview\":{\"rpm\":100000,\"tpm\":100000000,\"rpd\":10000000}}}";

/* POSTs a control request to the emulator, with its token ($EMU_TOKEN). */
static void emu(const char *path, const char *json) {
  char url[512], token[256];
  CURL *c = curl_easy_init();
  struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
  snprintf(token, sizeof token, "X-Emu-Token: %s", getenv("EMU_TOKEN"));
  h = curl_slist_append(h, token);
  snprintf(url, sizeof url, "%s/_emu/%s", getenv("EMU_URL"), path);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
  assert_int_equal(curl_easy_perform(c), CURLE_OK);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
}

static int setup(void **st) {
  (void)st;
  gkp_error err;
  static int n;
  snprintf(state, sizeof state, "%s/state-%d.db", getenv("TEST_STATE_DIR"), n++);
  gkp_options o = {.state_path = state};
  emu("reset", "{}");
  if (gkp_pool_open_text(&pool, CONFIG, strlen(CONFIG), "test.json", NULL, &o, &err) != 0) {
    fail_msg("%s", err.msg);
  }
  return 0;
}

static int teardown(void **st) {
  (void)st;
  gkp_pool_close(pool);
  return 0;
}

typedef struct streamed {
  char buf[8192];
  size_t len;
  int restarts;
} streamed;

static void on_text(void *ud, const char *text, size_t len) {
  streamed *s = ud;
  if (s->len + len < sizeof s->buf) {
    memcpy(s->buf + s->len, text, len);
    s->len += len;
  }
}

static void on_restart(void *ud) {
  streamed *s = ud;
  s->len = 0;
  s->restarts++;
}

static void test_answer_streams_and_records(void **st) {
  (void)st;
  streamed s = {0};
  gkp_task t = {.model = "gemini-2.5-flash",
                .prompt = "What is a key pool?",
                .on_text = on_text,
                .on_restart = on_restart,
                .ud = &s};
  gkp_task_result r;
  gkp_error err;
  assert_int_equal(gkp_run_task(pool, &t, &r, &err), 0);
  assert_true(r.ok);
  assert_string_equal(r.model_used, "gemini-2.5-flash");
  assert_string_equal(r.key_id, "one");
  assert_int_equal(r.attempts, 1);
  assert_true(r.tokens_in > 0);
  assert_non_null(strstr(r.text, "You asked: What is a key pool?"));
  assert_int_equal(s.len, r.text_len);
  assert_memory_equal(s.buf, r.text, r.text_len);
  gkp_task_result_free(&r);
  /* The next task goes to the next key (least recently used). */
  assert_int_equal(gkp_run_task(pool, &t, &r, &err), 0);
  assert_string_equal(r.key_id, "two");
  gkp_task_result_free(&r);
}

/* No model, no profile: the pool picks it, and says how in route. */
static void test_routed_task(void **st) {
  (void)st;
  gkp_task t = {.prompt = "summarize this paragraph"};
  gkp_task_result r;
  gkp_error err;
  assert_int_equal(gkp_run_task(pool, &t, &r, &err), 0);
  assert_true(r.ok);
  assert_string_equal(r.model_used, "gemini-3.1-flash-lite-preview");
  assert_non_null(r.route);
  assert_non_null(strstr(r.route, "\"task_type\":\"general\",\"complexity\":\"low\","
                                  "\"quality\":\"draft\""));
  assert_non_null(strstr(r.route, "\"candidates\":[{\"model\":\"gemini-3.1-flash-lite-preview\""));
  gkp_task_result_free(&r);
  /* A named model with a quality: no route; the quality's note is sent. */
  gkp_task q = {.model = "gemini-2.5-flash", .prompt = "summarize", .quality = "production"};
  assert_int_equal(gkp_run_task(pool, &q, &r, &err), 0);
  assert_true(r.ok);
  assert_null(r.route);
  assert_non_null(strstr(r.text, "Quality level: production"));
  gkp_task_result_free(&r);
  q.quality = "best";
  assert_int_equal(gkp_run_task(pool, &q, &r, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "unknown quality 'best'"));
}

static void test_server_error_retried_on_another_key(void **st) {
  (void)st;
  gkp_task t = {.model = "gemini-2.5-flash", .prompt = "retry me"};
  gkp_task_result r;
  emu("replay", "{\"status\":503,\"body_file\":\""
                "503_model_overloaded.json\",\"count\":1}");
  assert_int_equal(gkp_run_task(pool, &t, &r, NULL), 0);
  assert_true(r.ok);
  assert_int_equal(r.attempts, 2);
  assert_string_equal(r.key_id, "two");
  gkp_task_result_free(&r);
}

static void test_model_not_found_falls_back(void **st) {
  (void)st;
  gkp_task t = {.model = "gemini-2.5-flash", .prompt = "fall back"};
  gkp_task_result r;
  emu("replay", "{\"status\":404,\"body_file\":\""
                "404_model_not_found.json\",\"count\":1}");
  assert_int_equal(gkp_run_task(pool, &t, &r, NULL), 0);
  assert_true(r.ok);
  assert_string_equal(r.model_used, "gemini-3.1-flash-lite-preview");
  gkp_task_result_free(&r);
}

static void test_bad_request_fails_with_googles_message(void **st) {
  (void)st;
  gkp_task t = {.model = "gemini-2.5-flash", .prompt = "bad"};
  gkp_task_result r;
  emu("replay", "{\"status\":400,\"body\":\"{\\\"error\\\":{\\\"code\\\":400,\\\"message\\\":"
                "\\\"Invalid value at contents\\\",\\\"status\\\":\\\"INVALID_ARGUMENT\\\"}}\","
                "\"count\":1}");
  assert_int_equal(gkp_run_task(pool, &t, &r, NULL), 0);
  assert_false(r.ok);
  assert_non_null(strstr(r.error, "Invalid value at contents"));
  assert_int_equal(r.attempts, 1);
  gkp_task_result_free(&r);
}

static void test_refused_up_front(void **st) {
  (void)st;
  gkp_task t = {.model = "no-such-model", .prompt = "x"};
  gkp_task_result r;
  gkp_error err;
  assert_int_equal(gkp_run_task(pool, &t, &r, &err), -ENOENT);
  assert_non_null(strstr(err.msg, "no-such-model"));
  t.model = NULL;
  t.profile = "no-such-profile";
  assert_int_equal(gkp_run_task(pool, &t, &r, &err), -ENOENT);
  t.profile = "flash-2.5";
  t.prompt = "";
  assert_int_equal(gkp_run_task(pool, &t, &r, &err), -EINVAL);
}

#define THREADS 8
#define PER_THREAD 25
static int thread_failures;

static void *worker(void *arg) {
  (void)arg;
  for (int i = 0; i < PER_THREAD; i++) {
    char prompt[64];
    gkp_task_result r;
    snprintf(prompt, sizeof prompt, "thread task %d", i);
    gkp_task t = {.model = "gemini-2.5-flash", .prompt = prompt};
    if (gkp_run_task(pool, &t, &r, NULL) != 0 || !r.ok || strstr(r.text, prompt) == NULL) {
      __atomic_add_fetch(&thread_failures, 1, __ATOMIC_SEQ_CST);
    }
    gkp_task_result_free(&r);
  }
  return NULL;
}

static void test_many_threads_one_pool(void **st) {
  (void)st;
  pthread_t th[THREADS];
  for (int i = 0; i < THREADS; i++) {
    pthread_create(&th[i], NULL, worker, NULL);
  }
  for (int i = 0; i < THREADS; i++) {
    pthread_join(th[i], NULL);
  }
  assert_int_equal(thread_failures, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_answer_streams_and_records, setup, teardown),
      cmocka_unit_test_setup_teardown(test_routed_task, setup, teardown),
      cmocka_unit_test_setup_teardown(test_server_error_retried_on_another_key, setup, teardown),
      cmocka_unit_test_setup_teardown(test_model_not_found_falls_back, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_request_fails_with_googles_message, setup, teardown),
      cmocka_unit_test_setup_teardown(test_refused_up_front, setup, teardown),
      cmocka_unit_test_setup_teardown(test_many_threads_one_pool, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
