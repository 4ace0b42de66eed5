/*
 * bench_runner.c - the task runner against a Gemini API server (the
 * emulator), one phase per invocation; scripts/bench-runner runs them all.
 *
 *   bench_runner latency N MODEL     sequential requests: a bare libcurl request
 *                                    vs the same through runner + engine
 *   bench_runner throughput N MODEL  N jobs submitted at once: jobs/s
 *   bench_runner yield N MODEL [FIXED_429_COOLDOWN_MS]
 *                                    N jobs at once against tight quotas: seconds
 *                                    to finish and 429s seen
 *
 * The pool comes from the usual config lookup ($GEMINI_POOL_CONFIG, ...),
 * the server from $GOOGLE_GEMINI_BASE_URL.  Output: "key=value" lines.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/gemini.h"
#include "gkp.h"
#include "runner/runner.h"

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double pct(double *v, int n, double p) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  int i = (int)(p * (n - 1) + 0.5);
  return v[i];
}

static gkp_pool *open_pool(void) {
  gkp_pool *pool;
  gkp_error err;
  if (gkp_pool_open(&pool, NULL, &err) != 0) {
    fprintf(stderr, "bench-runner: %s\n", err.msg);
    exit(1);
  }
  return pool;
}

/* ---- waiting for jobs ---------------------------------------------------- */

typedef struct tracker {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int pending, failed, http429;
  double last_done_ms;
} tracker;

static void on_done(void *ud, gkp__job *job, const gkp__job_info *info) {
  tracker *t = ud;
  (void)job;
  pthread_mutex_lock(&t->mu);
  t->pending--;
  if (info->status != GKP__JOB_DONE) {
    t->failed++;
    fprintf(stderr, "bench-runner: job failed: %s\n", info->error);
  }
  for (size_t i = 0; i < info->nattempts; i++) {
    t->http429 += info->attempts[i].http_status == 429;
  }
  t->last_done_ms = now_ms();
  pthread_cond_broadcast(&t->cv);
  pthread_mutex_unlock(&t->mu);
}

static void wait_all(tracker *t) {
  pthread_mutex_lock(&t->mu);
  while (t->pending > 0) {
    pthread_cond_wait(&t->cv, &t->mu);
  }
  pthread_mutex_unlock(&t->mu);
}

/* Submits n jobs at once and waits for all; returns the elapsed ms. */
static double run_jobs(gkp__runner *r, int n, const char *model, int64_t max_wait_ms, tracker *t) {
  gkp__job_sink sink = {.on_done = on_done};
  gkp__job **jobs = calloc((size_t)n, sizeof *jobs);
  char prompt[64];
  double t0 = now_ms();
  t->pending = n;
  for (int i = 0; i < n; i++) {
    gkp__job_spec spec = {.model = model, .max_wait_ms = max_wait_ms, .deadline_ms = 900000};
    gkp_error err;
    snprintf(prompt, sizeof prompt, "benchmark prompt number %d", i);
    spec.prompt = prompt;
    spec.prompt_len = strlen(prompt);
    jobs[i] = gkp__runner_submit(r, &spec, &sink, t, &err);
    if (jobs[i] == NULL) {
      fprintf(stderr, "bench-runner: %s\n", err.msg);
      exit(1);
    }
  }
  wait_all(t);
  for (int i = 0; i < n; i++) {
    gkp__job_release(jobs[i]);
  }
  free(jobs);
  return t->last_done_ms - t0;
}

/* ---- phases --------------------------------------------------------------- */

static size_t discard(char *p, size_t s, size_t n, void *ud) {
  (void)p;
  (void)ud;
  return s * n;
}

static int latency(int n, const char *model) {
  gkp_pool *pool = open_pool();
  gkp__runner *r;
  gkp_error err;
  double *bare = calloc((size_t)n, sizeof *bare), *pooled = calloc((size_t)n, sizeof *pooled);
  char url[2048], header[600], secret[512], *body;
  size_t body_len;
  const char *base = getenv("GOOGLE_GEMINI_BASE_URL");

  /* The bare request: the same body, the same server, one reused handle. */
  gkp__gemini_request req = {.text = "benchmark prompt", .thinking_style = -1};
  gkp__gemini_build_body(&req, &body, &body_len, NULL);
  gkp_key_secret(pool, gkp_key_id(pool, 0), secret, sizeof secret, NULL);
  snprintf(url, sizeof url, "%s/v1beta/models/%s:streamGenerateContent?alt=sse", base, model);
  snprintf(header, sizeof header, "x-goog-api-key: %s", secret);
  CURL *c = curl_easy_init();
  struct curl_slist *h = curl_slist_append(NULL, header);
  h = curl_slist_append(h, "Content-Type: application/json");
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)body_len);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
  if (gkp__runner_new(pool, NULL, &r, &err) != 0) {
    fprintf(stderr, "bench-runner: %s\n", err.msg);
    return 1;
  }
  /* Interleaved, so that both see the server in the same state. */
  for (int i = 0; i < n; i++) {
    tracker t = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    /* The bare requests rotate over the keys as the pool does, so both
     * load the server's per-project bookkeeping alike. */
    gkp_key_secret(pool, gkp_key_id(pool, (size_t)i % gkp_key_count(pool)), secret, sizeof secret,
                   NULL);
    snprintf(header, sizeof header, "x-goog-api-key: %s", secret);
    curl_slist_free_all(h);
    h = curl_slist_append(NULL, header);
    h = curl_slist_append(h, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    double t0 = now_ms();
    if (curl_easy_perform(c) != CURLE_OK) {
      fprintf(stderr, "bench-runner: bare request failed\n");
      return 1;
    }
    bare[i] = now_ms() - t0;
    t0 = now_ms();
    run_jobs(r, 1, model, 60000, &t);
    pooled[i] = t.last_done_ms - t0;
    if (t.failed) {
      return 1;
    }
  }
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  free(body);
  memset(secret, 0, sizeof secret);
  gkp__runner_free(r);
  gkp_pool_close(pool);
  double b50 = pct(bare, n, 0.5), b99 = pct(bare, n, 0.99);
  double p50 = pct(pooled, n, 0.5), p99 = pct(pooled, n, 0.99);
  printf("bare_p50_ms=%.3f\nbare_p99_ms=%.3f\npooled_p50_ms=%.3f\npooled_p99_ms=%.3f\n", b50, b99,
         p50, p99);
  printf("added_p50_ms=%.3f\nadded_p99_ms=%.3f\n", p50 - b50, p99 - b99);
  free(bare);
  free(pooled);
  return 0;
}

static int throughput(int n, const char *model) {
  gkp_pool *pool = open_pool();
  gkp__runner *r;
  gkp_error err;
  tracker t = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
  if (gkp__runner_new(pool, NULL, &r, &err) != 0) {
    fprintf(stderr, "bench-runner: %s\n", err.msg);
    return 1;
  }
  double ms = run_jobs(r, n, model, 60000, &t);
  gkp__runner_free(r);
  gkp_pool_close(pool);
  printf("jobs=%d\nfailed=%d\nseconds=%.3f\nrps=%.0f\n", n, t.failed, ms / 1e3, n / (ms / 1e3));
  return t.failed != 0;
}

static int yield(int n, const char *model, int64_t fixed_ms) {
  gkp_pool *pool = open_pool();
  gkp__runner *r;
  gkp_error err;
  gkp__runner_opts o = {.stream = 1, .fixed_429_cooldown_ms = fixed_ms, .max_attempts = 1000};
  tracker t = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
  if (gkp__runner_new(pool, &o, &r, &err) != 0) {
    fprintf(stderr, "bench-runner: %s\n", err.msg);
    return 1;
  }
  double ms = run_jobs(r, n, model, 900000, &t);
  gkp__runner_free(r);
  gkp_pool_close(pool);
  printf("jobs=%d\nfailed=%d\nseconds=%.3f\nclient_429=%d\n", n, t.failed, ms / 1e3, t.http429);
  return t.failed != 0;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: bench_runner latency|throughput|yield N MODEL [FIXED_MS]\n");
    return 2;
  }
  int n = atoi(argv[2]);
  if (strcmp(argv[1], "latency") == 0) {
    return latency(n, argv[3]);
  }
  if (strcmp(argv[1], "throughput") == 0) {
    return throughput(n, argv[3]);
  }
  if (strcmp(argv[1], "yield") == 0) {
    return yield(n, argv[3], argc > 4 ? atoll(argv[4]) : 0);
  }
  return 2;
}
