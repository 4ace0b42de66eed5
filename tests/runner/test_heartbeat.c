/*
 * test_heartbeat.c - a request that runs for a long time keeps its lease
 * (the runner renews it), and a holder that stops renewing loses its key
 * within the lease's lifetime.
 *
 * Time is scaled down 100 times, as a lease lives on the real clocks (the
 * wall clock and the boot clock): the lease lifetime is 0.6 s instead of
 * 60 s and the runner's heartbeat 0.2 s instead of 20 s, so that a stream
 * of 9 s stands for one of 15 minutes (15 lifetimes).  One key,
 * max_inflight 1: a second pool on the same state polls for the key all
 * along.  On a state file, or on Redis (GKP_TEST_STATE).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine.h"
#include "gkp.h"
#include "runner/runner.h"

#define SCALE 100 /* real lifetimes / these */
#define TTL_MS (GKP_LEASE_TTL_MS / SCALE)
#define RENEW_MS (GKP_LEASE_RENEW_MS / SCALE)

static const char *CONFIG = "{\"providers\":{\"gemini\":{\"keys\":["
                            "{\"id\":\"solo\",\"api_key\":\"env:TEST_KEY_1\"}]}},"
                            "\"models\":{\"gemini-2.5-flash\":{\"rpm\":100000,\"tpm\":100000000,"
                            "\"rpd\":10000000}}}";

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void emu(const char *path, const char *json) {
  char url[512], token[512];
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

static size_t keep_body(char *data, size_t size, size_t n, void *ud) {
  char *buf = ud;
  size_t have = strlen(buf), add = size * n;
  if (have + add < 4096) {
    memcpy(buf + have, data, add);
    buf[have + add] = '\0';
  }
  return size * n;
}

/* How many requests wait at the emulator's gate `name` (0 before the first). */
static int gate_waiting(const char *name) {
  char url[512], token[512], body[4096] = "", key[128];
  CURL *c = curl_easy_init();
  struct curl_slist *h = NULL;
  snprintf(token, sizeof token, "X-Emu-Token: %s", getenv("EMU_TOKEN"));
  h = curl_slist_append(h, token);
  snprintf(url, sizeof url, "%s/_emu/gates", getenv("EMU_URL"));
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, keep_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
  assert_int_equal(curl_easy_perform(c), CURLE_OK);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  snprintf(key, sizeof key, "\"%s\":", name);
  const char *g = strstr(body, key);
  const char *w = g != NULL ? strstr(g, "\"waiting\":") : NULL;
  return w != NULL ? atoi(w + strlen("\"waiting\":")) : 0;
}

/* The state: a file per test, or the Redis server named by GKP_TEST_STATE
 * (tests/redis/with_redis.sh), where the runner calls it from its state
 * thread. */
static gkp_pool *open_pool(const char *name) {
  char state[4200];
  gkp_options o = {.state_path = state};
  gkp_pool *p;
  gkp_error err;
  const char *redis = getenv("GKP_TEST_STATE");
  if (redis != NULL && redis[0] != '\0') {
    snprintf(state, sizeof state, "%s", redis);
  } else {
    snprintf(state, sizeof state, "%s/%s.db", getenv("TEST_STATE_DIR"), name);
  }
  if (gkp_pool_open_text(&p, CONFIG, strlen(CONFIG), "test.json", NULL, &o, &err) != 0) {
    fail_msg("%s", err.msg);
  }
  gkp__pool_set_lease_ttl(p, TTL_MS);
  return p;
}

/* The second pool: tries to take the key until told to stop. */
typedef struct poller {
  gkp_pool *pool;
  atomic_int stop;
  atomic_int got; /* times it was handed the key */
  atomic_llong first_ms;
} poller;

static void *poll_key(void *ud) {
  poller *p = ud;
  while (!atomic_load(&p->stop)) {
    gkp_lease l;
    if (gkp_reserve(p->pool, "gemini-2.5-flash", 10, &l, NULL, NULL) == 0) {
      long long zero = 0;
      atomic_fetch_add(&p->got, 1);
      atomic_compare_exchange_strong(&p->first_ms, &zero, (long long)mono_ms());
      gkp_release(p->pool, &l, 0, NULL);
    }
    usleep(10000);
  }
  return NULL;
}

typedef struct done {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int finished;
  int status;
  int64_t at;
} done;

static void on_done(void *ud, gkp__job *job, const gkp__job_info *info) {
  done *d = ud;
  (void)job;
  pthread_mutex_lock(&d->mu);
  d->finished = 1;
  d->status = info->status;
  d->at = mono_ms();
  pthread_cond_signal(&d->cv);
  pthread_mutex_unlock(&d->mu);
}

static void test_long_stream_keeps_its_lease(void **st) {
  (void)st;
  gkp_pool *a, *b;
  gkp__runner *r;
  gkp_error err;
  pthread_t th;
  done d = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
  a = open_pool("stream");
  b = open_pool("stream");
  emu("reset", "{}");
  /* The request waits at a gate (opened 9.1 s after it got there), then slow
   * chunks: over 15 lease lifetimes. */
  emu("faults", "{\"scope\":\"global\",\"hold\":\"hb\",\"chunk_delay_ms\":50}");
  gkp__runner_opts ro = {.stream = 1, .lease_renew_ms = RENEW_MS};
  assert_int_equal(gkp__runner_new(a, &ro, &r, &err), 0);
  gkp__job_spec spec = {.model = "gemini-2.5-flash", .prompt = "Say something.", .prompt_len = 14};
  gkp__job_sink sink = {.on_done = on_done};
  int64_t started = mono_ms();
  gkp__job *job = gkp__runner_submit(r, &spec, &sink, &d, &err);
  assert_non_null(job);
  /* The job has its key once its request is at the emulator (a hang guard of
   * 120 s). */
  for (int i = 0; i < 1200 && gate_waiting("hb") < 1; i++) {
    usleep(100000);
  }
  assert_int_equal(gate_waiting("hb"), 1);
  poller p = {.pool = b};
  pthread_create(&th, NULL, poll_key, &p);
  usleep(9100 * 1000);
  emu("gates", "{\"name\":\"hb\",\"open\":true}");
  pthread_mutex_lock(&d.mu);
  while (!d.finished) {
    pthread_cond_wait(&d.cv, &d.mu);
  }
  pthread_mutex_unlock(&d.mu);
  atomic_store(&p.stop, 1);
  pthread_join(th, NULL);
  assert_int_equal(d.status, GKP__JOB_DONE);
  assert_true(d.at - started >= 15 * TTL_MS);
  /* While the request ran, the other pool never had the key. */
  long long first = atomic_load(&p.first_ms);
  if (first != 0 && first < d.at) {
    fail_msg("the other pool took the key %lld ms into a %lld ms request", first - started,
             (long long)(d.at - started));
  }
  gkp__job_release(job);
  gkp__runner_free(r);
  gkp_pool_close(a);
  gkp_pool_close(b);
  emu("faults", "{\"scope\":\"global\",\"hold\":null,\"chunk_delay_ms\":null}");
}

static void test_holder_that_stops_renewing_loses_the_key(void **st) {
  (void)st;
  gkp_pool *a, *b;
  gkp_lease l;
  gkp_error err;
  pthread_t th;
  a = open_pool("stopped");
  b = open_pool("stopped");
  assert_int_equal(gkp_reserve(a, "gemini-2.5-flash", 10, &l, NULL, &err), 0);
  int64_t taken = mono_ms();
  poller p = {.pool = b};
  pthread_create(&th, NULL, poll_key, &p);
  while (atomic_load(&p.got) == 0 && mono_ms() - taken < 100 * TTL_MS) {
    usleep(10000);
  }
  atomic_store(&p.stop, 1);
  pthread_join(th, NULL);
  long long first = atomic_load(&p.first_ms);
  assert_true(first != 0);
  /* Not before the lease expired; after it, within the hang guard above (how
   * soon depends on the machine's load: not judged). */
  assert_true(first - taken >= TTL_MS);
  assert_int_equal(gkp_lease_renew(a, &l, &err), -ESTALE);
  gkp_release(a, &l, 1, NULL);
  gkp_pool_close(a);
  gkp_pool_close(b);
}

/* The heartbeat's verb renews many leases in one step, each with its own
 * answer; the end of a request releases in the same step as its usage. */
static void test_renew_many_and_finish(void **st) {
  (void)st;
  gkp_pool *a = open_pool("verbs"), *b = open_pool("verbs");
  gkp_lease ls[2], other;
  gkp_error err;
  int rcs[2] = {1, 1};
  assert_int_equal(gkp_reserve(a, "gemini-2.5-flash", 10, &ls[0], NULL, &err), 0);
  ls[1] = ls[0];
  ls[1].id += (uint64_t)1 << 32; /* a lease this state never gave */
  assert_int_equal(gkp__pool_renew_leases(a, ls, 2, rcs, &err), 0);
  assert_int_equal(rcs[0], 0);
  assert_int_equal(rcs[1], -ESTALE);
  assert_int_equal(gkp_reserve(b, "gemini-2.5-flash", 10, &other, NULL, &err), -EAGAIN);
  gkp__finish f = {.lease = ls[0], .usage = {7, 3, -1}, .counted = 1, .sent = 1};
  assert_int_equal(gkp__pool_finish_many(a, &f, 1, &err), 0);
  assert_int_equal(gkp_lease_renew(a, &ls[0], &err), -ESTALE);
  assert_int_equal(gkp_reserve(b, "gemini-2.5-flash", 10, &other, NULL, &err), 0);
  gkp_release(b, &other, 0, NULL);
  gkp_pool_close(a);
  gkp_pool_close(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_renew_many_and_finish),
      cmocka_unit_test(test_long_stream_keeps_its_lease),
      cmocka_unit_test(test_holder_that_stops_renewing_loses_the_key),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
