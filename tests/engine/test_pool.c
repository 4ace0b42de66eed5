/*
 * test_pool.c - the engine's selection, reservation and error rules, with an
 * injected clock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <cmocka.h>
#include <pthread.h>

#include "engine/engine.h"
#include "engine_test.h"

/* 2026-11-24 12:00:00 UTC, a Tuesday (PST: midnight is 08:00 UTC). */
#define T0 1795521600000LL
#define HOUR 3600000LL

static char *tmpdir;
static char state_file[4200];
static gkp_pool *pool;

static const char *SECRETS[] = {"FAKE-SECRET-ALPHA-0001", "FAKE-SECRET-BRAVO-0002",
                                "FAKE-SECRET-CHARLIE-0003", "FAKE-SECRET-DELTA-0004"};

/* Opens `pool` over a config with keys k1..kN and the given extra JSON. */
static void open_pool(int nkeys, const char *projects[], const char *extra) {
  char json[8192];
  size_t n = 0;
  gkp_options o = {.clock = test_clock, .state_path = state_file};
  gkp_error err;

  n += (size_t)snprintf(json + n, sizeof json - n, "{\"providers\":{\"gemini\":{\"keys\":[");
  for (int i = 0; i < nkeys; i++) {
    char var[32];
    snprintf(var, sizeof var, "GKP_TEST_KEY_%d", i + 1);
    setenv(var, SECRETS[i % 4], 1);
    n += (size_t)snprintf(json + n, sizeof json - n, "%s{\"id\":\"k%d\",\"api_key\":\"env:%s\"",
                          i ? "," : "", i + 1, var);
    if (projects != NULL && projects[i] != NULL) {
      n += (size_t)snprintf(json + n, sizeof json - n, ",\"project\":\"%s\"", projects[i]);
    }
    n += (size_t)snprintf(json + n, sizeof json - n, "}");
  }
  n +=
      (size_t)snprintf(json + n, sizeof json - n, "]}}%s%s}", extra ? "," : "", extra ? extra : "");
  int rc = gkp_pool_open_text(&pool, json, n, "test.json", NULL, &o, &err);
  if (rc != 0) {
    fail_msg("open: %s", err.msg);
  }
}

static int setup(void **st) {
  (void)st;
  tmpdir = test_tmpdir();
  snprintf(state_file, sizeof state_file, "%s/state.db", tmpdir);
  if (test_redis_url() != NULL) {
    snprintf(state_file, sizeof state_file, "%s", test_redis_url());
    test_redis_flush();
  }
  t_now = T0;
  pool = NULL;
  return 0;
}

static int teardown(void **st) {
  (void)st;
  gkp_pool_close(pool);
  pool = NULL;
  test_rmrf(tmpdir);
  free(tmpdir);
  return 0;
}

/* A model without limits, so that only selection rules apply. */
#define FREE_MODEL "\"models\":{\"free-model\":{}}"

static void reserve_ok(const char *model, gkp_lease *l) {
  gkp_error err;
  int rc = gkp_reserve(pool, model, 10, l, NULL, &err);
  if (rc != 0) {
    fail_msg("reserve %s: %s", model, err.msg);
  }
}

static void cycle(const char *model, const char *expect_key) {
  gkp_lease l;
  reserve_ok(model, &l);
  assert_string_equal(l.key_id, expect_key);
  assert_int_equal(gkp_release(pool, &l, 1, NULL), 0);
  t_now += 10;
}

static void test_lru_order_all_before_repeat(void **st) {
  (void)st;
  open_pool(4, NULL, FREE_MODEL);
  const char *order[] = {"k1", "k2", "k3", "k4", "k1", "k2", "k3", "k4"};
  for (int i = 0; i < 8; i++) {
    cycle("free-model", order[i]);
  }
}

/* Two processes share the least recently used order, also beyond one page
 * of it (32 keys): after the other used the keys this one saw first, this
 * one takes the key neither used, not one it remembers as oldest. */
static void test_lru_order_shared_beyond_a_page(void **st) {
  (void)st;
  open_pool(40, NULL, FREE_MODEL);
  gkp_pool *a = pool;
  cycle("free-model", "k1");
  pool = NULL;
  open_pool(40, NULL, FREE_MODEL);
  for (int i = 2; i <= 32; i++) {
    char id[16];
    snprintf(id, sizeof id, "k%d", i);
    cycle("free-model", id);
  }
  gkp_pool_close(pool);
  pool = a;
  cycle("free-model", "k33");
  cycle("free-model", "k34");
}

static void test_never_used_first(void **st) {
  (void)st;
  open_pool(3, NULL, FREE_MODEL);
  gkp_lease a, b;
  /* Use k1 and k2 with k1 held, so k2 is picked, then release both. */
  reserve_ok("free-model", &a);
  reserve_ok("free-model", &b);
  assert_string_equal(b.key_id, "k2");
  gkp_release(pool, &a, 1, NULL);
  gkp_release(pool, &b, 1, NULL);
  t_now += 1000;
  cycle("free-model", "k3"); /* never used beats both */
  cycle("free-model", "k1"); /* then the least recently used */
}

static void test_nearest_cooldown_reported(void **st) {
  (void)st;
  open_pool(3, NULL, FREE_MODEL);
  gkp_lease l;
  gkp_wait w;
  gkp_error err;
  assert_int_equal(gkp_set_cooldown(pool, "k1", "free-model", T0 + 30000, GKP_KIND_RPM, NULL), 0);
  assert_int_equal(gkp_set_cooldown(pool, "k2", "free-model", T0 + 10000, GKP_KIND_RPM, NULL), 0);
  assert_int_equal(gkp_set_cooldown(pool, "k3", NULL, T0 + 20000, GKP_KIND_BILLING, NULL), 0);
  assert_int_equal(gkp_reserve(pool, "free-model", 1, &l, &w, &err), -EAGAIN);
  assert_int_equal(w.reason, GKP_WAIT_COOLDOWN);
  assert_int_equal(w.next_ms, T0 + 10000);
  assert_string_equal(w.next_key_id, "k2");
  assert_non_null(strstr(err.msg, "k2"));
  assert_non_null(strstr(err.msg, "12:00:10 UTC"));
  t_now = T0 + 10000;
  cycle("free-model", "k2");
}

static void test_explicit_cooldown_override(void **st) {
  (void)st;
  open_pool(1, NULL, FREE_MODEL);
  gkp_lease l;
  gkp_wait w;
  assert_int_equal(gkp_set_cooldown(pool, "k1", "free-model", T0 + HOUR, GKP_KIND_RPM, NULL), 0);
  assert_int_equal(gkp_reserve(pool, "free-model", 1, &l, &w, NULL), -EAGAIN);
  assert_int_equal(w.next_ms, T0 + HOUR);
  /* An explicit override may shorten it. */
  assert_int_equal(gkp_set_cooldown(pool, "k1", "free-model", T0 + 5000, GKP_KIND_RPM, NULL), 0);
  assert_int_equal(gkp_reserve(pool, "free-model", 1, &l, &w, NULL), -EAGAIN);
  assert_int_equal(w.next_ms, T0 + 5000);
  assert_int_equal(gkp_set_cooldown(pool, "k1", "free-model", 0, GKP_KIND_NONE, NULL), 0);
  cycle("free-model", "k1");
}

static void test_tier_detection_limit_zero(void **st) {
  (void)st;
  /* gemini-3.1-pro-preview has limit 0 in the table: skipped outright. */
  open_pool(2, NULL, NULL);
  gkp_lease l;
  gkp_wait w;
  assert_int_equal(gkp_reserve(pool, "gemini-3.1-pro-preview", 1, &l, &w, NULL), -EAGAIN);
  assert_int_equal(w.reason, GKP_WAIT_NEVER);
  assert_string_equal(gkp_model_fallback(pool, "gemini-3.1-pro-preview"), "gemini-3-flash-preview");
  /* A model that is on the free tier is reserved normally. */
  reserve_ok("gemini-2.5-flash", &l);
  gkp_release(pool, &l, 1, NULL);
}

static void test_per_model_cooldown_does_not_block_others(void **st) {
  (void)st;
  open_pool(1, NULL, "\"models\":{\"free-model\":{},\"other-model\":{}}");
  gkp_lease l;
  assert_int_equal(gkp_set_cooldown(pool, "k1", "free-model", T0 + HOUR, GKP_KIND_RPM, NULL), 0);
  assert_int_equal(gkp_reserve(pool, "free-model", 1, &l, NULL, NULL), -EAGAIN);
  cycle("other-model", "k1");
}

static void test_key_wide_cooldown_blocks_all(void **st) {
  (void)st;
  open_pool(2, NULL, "\"models\":{\"free-model\":{},\"other-model\":{}}");
  assert_int_equal(gkp_set_cooldown(pool, "k1", NULL, T0 + HOUR, GKP_KIND_BILLING, NULL), 0);
  cycle("free-model", "k2");
  cycle("other-model", "k2");
  cycle("free-model", "k2");
  assert_int_equal(gkp_count_available(pool, "other-model", NULL), 1);
}

static void test_reserved_not_handed_out_twice(void **st) {
  (void)st;
  open_pool(2, NULL, FREE_MODEL);
  gkp_lease a, b, c;
  gkp_wait w;
  gkp_error err;
  reserve_ok("free-model", &a);
  reserve_ok("free-model", &b);
  assert_string_not_equal(a.key_id, b.key_id);
  assert_int_equal(gkp_count_available(pool, "free-model", NULL), 0);
  /* All reserved: a clear error. */
  assert_int_equal(gkp_reserve(pool, "free-model", 1, &c, &w, &err), -EAGAIN);
  assert_int_equal(w.reason, GKP_WAIT_BUSY);
  assert_non_null(strstr(err.msg, "busy"));
  assert_non_null(strstr(err.msg, "free-model"));
  /* Release makes it available again. */
  assert_int_equal(gkp_release(pool, &a, 1, NULL), 0);
  assert_int_equal(gkp_count_available(pool, "free-model", NULL), 1);
  reserve_ok("free-model", &c);
  assert_string_equal(c.key_id, a.key_id);
  /* Releasing twice is harmless. */
  assert_int_equal(gkp_release(pool, &a, 1, NULL), 0);
  assert_int_equal(gkp_count_available(pool, "free-model", NULL), 0);
  gkp_release(pool, &b, 1, NULL);
  gkp_release(pool, &c, 1, NULL);
}

static void test_max_inflight(void **st) {
  (void)st;
  open_pool(1, NULL, "\"max_inflight\":3," FREE_MODEL);
  gkp_lease l[4];
  for (int i = 0; i < 3; i++) {
    reserve_ok("free-model", &l[i]);
  }
  assert_int_equal(gkp_reserve(pool, "free-model", 1, &l[3], NULL, NULL), -EAGAIN);
  for (int i = 0; i < 3; i++) {
    gkp_release(pool, &l[i], 1, NULL);
  }
}

static void test_unknown_model(void **st) {
  (void)st;
  open_pool(1, NULL, NULL);
  gkp_lease l;
  gkp_error err;
  assert_int_equal(gkp_reserve(pool, "gpt-5", 1, &l, NULL, &err), -ENOENT);
  assert_non_null(strstr(err.msg, "gpt-5"));
  assert_non_null(strstr(err.msg, "models"));
  assert_int_equal(gkp_count_available(pool, "gpt-5", NULL), -ENOENT);
}

static void test_unknown_provider(void **st) {
  (void)st;
  const char *json = "{\"providers\":{\"openai\":{\"keys\":[{\"id\":\"a\",\"api_key\":\"x\"}]}}}";
  gkp_options o = {.clock = test_clock, .state_path = state_file};
  gkp_error err;
  assert_true(gkp_pool_open_text(&pool, json, strlen(json), "p.json", NULL, &o, &err) < 0);
  assert_null(pool);
  assert_non_null(strstr(err.msg, "gemini"));
}

static void test_count_available_and_clear_expired(void **st) {
  (void)st;
  open_pool(3, NULL, FREE_MODEL);
  char *doc;
  assert_int_equal(gkp_count_available(pool, "free-model", NULL), 3);
  gkp_set_cooldown(pool, "k1", "free-model", T0 + 1000, GKP_KIND_RPM, NULL);
  gkp_set_cooldown(pool, "k2", NULL, T0 + 2000, GKP_KIND_BILLING, NULL);
  assert_int_equal(gkp_count_available(pool, "free-model", NULL), 1);
  assert_int_equal(gkp_clear_expired(pool, NULL), 0);
  t_now = T0 + 1500;
  assert_int_equal(gkp_count_available(pool, "free-model", NULL), 2);
  assert_int_equal(gkp_clear_expired(pool, NULL), 1);
  t_now = T0 + 2500;
  assert_int_equal(gkp_clear_expired(pool, NULL), 1);
  assert_int_equal(gkp_count_available(pool, "free-model", NULL), 3);
  assert_int_equal(gkp_status_json(pool, &doc, NULL), 0);
  assert_null(strstr(doc, "\"cooldown_kind\":\t\"rpm\""));
  assert_null(strstr(doc, "\"cooldown_kind\":\t\"billing\""));
  free(doc);
}

/* ---- quota counting ------------------------------------------------------ */

static void test_rpm_window(void **st) {
  (void)st;
  open_pool(1, NULL, "\"models\":{\"m\":{\"rpm\":5}}");
  gkp_lease l;
  gkp_wait w;
  for (int i = 0; i < 5; i++) {
    reserve_ok("m", &l);
    gkp_release(pool, &l, 1, NULL);
    t_now += 1000;
  }
  assert_int_equal(gkp_reserve(pool, "m", 1, &l, &w, NULL), -EAGAIN);
  assert_int_equal(w.reason, GKP_WAIT_QUOTA);
  /* The first request (second T0) stops counting 61 s + margin later. */
  assert_true(w.next_ms >= T0 + 60000);
  assert_true(w.next_ms <= T0 + 62000);
  t_now = w.next_ms - 1;
  assert_int_equal(gkp_reserve(pool, "m", 1, &l, NULL, NULL), -EAGAIN);
  t_now = w.next_ms;
  reserve_ok("m", &l);
  gkp_release(pool, &l, 1, NULL);
  /* A reservation never sent gives its request back. */
  assert_int_equal(gkp_reserve(pool, "m", 1, &l, NULL, NULL), -EAGAIN);
  t_now += 1000;
  reserve_ok("m", &l);
  gkp_release(pool, &l, 0, NULL);
  reserve_ok("m", &l);
  gkp_release(pool, &l, 1, NULL);
}

static void test_tpm_window_and_correction(void **st) {
  (void)st;
  open_pool(1, NULL, "\"models\":{\"m\":{\"tpm\":1000}}");
  gkp_lease a, b;
  gkp_wait w;
  gkp_usage u = {.prompt_tokens = 100, .candidates_tokens = 5, .thoughts_tokens = -1};
  assert_int_equal(gkp_reserve(pool, "m", 600, &a, NULL, NULL), 0);
  gkp_release(pool, &a, 1, NULL);
  assert_int_equal(gkp_reserve(pool, "m", 600, &b, &w, NULL), -EAGAIN);
  assert_int_equal(w.reason, GKP_WAIT_QUOTA);
  /* The real count was 100: the window is corrected. */
  assert_int_equal(gkp_record_usage(pool, &a, &u, NULL), 0);
  assert_int_equal(gkp_reserve(pool, "m", 600, &b, NULL, NULL), 0);
  gkp_release(pool, &b, 1, NULL);
  /* A prompt larger than the whole TPM limit never fits. */
  assert_int_equal(gkp_reserve(pool, "m", 1001, &b, &w, NULL), -EAGAIN);
  assert_int_equal(w.reason, GKP_WAIT_NEVER);
}

static void test_project_shared_quota(void **st) {
  (void)st;
  const char *projects[] = {"p1", "p1", "p2"};
  open_pool(3, projects, "\"models\":{\"m\":{\"rpm\":2}}");
  gkp_lease l;
  const char *expect[] = {"k1", "k2", "k3", "k3"};
  for (int i = 0; i < 4; i++) {
    cycle("m", expect[i]);
  }
  /* p1 used its 2 and p2 its 2: nothing left for a minute. */
  assert_int_equal(gkp_reserve(pool, "m", 1, &l, NULL, NULL), -EAGAIN);
}

/* Reserves until RPD stops it; returns how many went through. */
static int drain(const char *model) {
  gkp_lease l;
  int n = 0;
  while (gkp_reserve(pool, model, 1, &l, NULL, NULL) == 0) {
    gkp_release(pool, &l, 1, NULL);
    n++;
    t_now += 61000 + 1000; /* stay clear of the RPM window */
  }
  return n;
}

/* Checks RPD resets exactly at `midnight` (ms). */
static void check_rpd_reset_at(int64_t midnight) {
  gkp_lease l;
  gkp_wait w;
  t_now = midnight - 3 * HOUR;
  assert_true(drain("m") >= 1); /* the rest of the day's 2 */
  assert_int_equal(gkp_reserve(pool, "m", 1, &l, &w, NULL), -EAGAIN);
  assert_int_equal(w.next_ms, midnight);
  t_now = midnight - 1;
  assert_int_equal(gkp_reserve(pool, "m", 1, &l, NULL, NULL), -EAGAIN);
  t_now = midnight;
  reserve_ok("m", &l);
  gkp_release(pool, &l, 1, NULL);
}

static void test_rpd_resets_at_pacific_midnight_across_dst(void **st) {
  (void)st;
  open_pool(1, NULL, "\"models\":{\"m\":{\"rpd\":2}}");
  /* Before the spring change: midnight PST 2026-03-08 is 08:00 UTC. */
  check_rpd_reset_at(1772956800000LL);
  /* The first day of PDT: midnight 2026-03-09 is 07:00 UTC. */
  check_rpd_reset_at(1773039600000LL);
  /* Autumn: midnight 2026-11-01 (PDT) is 07:00 UTC ... */
  check_rpd_reset_at(1793516400000LL);
  /* ... and after the 25-hour day, midnight 2026-11-02 (PST) is 08:00 UTC. */
  check_rpd_reset_at(1793606400000LL);
}

/* ---- error rules --------------------------------------------------------- */

/* Reads a fixture's body and status. */
static char *fixture(const char *name, int *status) {
  char path[4200];
  const char *dir = getenv("GKP_FIXTURES");
  snprintf(path, sizeof path, "%s/gemini-errors/%s", dir ? dir : "tests/fixtures", name);
  char *text = test_slurp(path, NULL);
  assert_non_null(text);
  /* The fixture is JSON with "http_status" and "body"; pull them out
   * without a JSON library: the body is a JSON string. */
  char *s = strstr(text, "\"http_status\":");
  assert_non_null(s);
  *status = atoi(s + 14);
  char *b = strstr(text, "\"body\": \"");
  assert_non_null(b);
  b += 9;
  char *out = malloc(strlen(b) + 1), *o = out;
  for (; *b != '\0' && *b != '"'; b++) {
    if (*b == '\\') {
      b++;
      *o++ = *b == 'n' ? '\n' : *b == 't' ? '\t' : *b;
    } else {
      *o++ = *b;
    }
  }
  *o = '\0';
  free(text);
  return out;
}

static void report_fixture(const char *name, gkp_lease *l, gkp_verdict *v) {
  int status;
  char *body = fixture(name, &status);
  gkp_error err;
  if (gkp_report_error(pool, l, status, body, strlen(body), v, &err) != 0) {
    fail_msg("report: %s", err.msg);
  }
  free(body);
}

static void test_per_day_cooldown_until_midnight(void **st) {
  (void)st;
  open_pool(2, NULL, NULL);
  gkp_lease l;
  gkp_verdict v;
  gkp_limits lim;
  reserve_ok("gemini-2.5-flash", &l);
  report_fixture("429_per_day_free_tier.json", &l, &v);
  gkp_release(pool, &l, 1, NULL);
  assert_int_equal(v.kind, GKP_KIND_RPD);
  /* Whatever retryDelay said (22s): until the next midnight Pacific. */
  int64_t midnight = gkp_next_pacific_midnight(T0);
  assert_int_equal(v.cooldown_until_ms, midnight);
  /* Learned: this project's RPD is 250, not the table's 1000. */
  assert_int_equal(gkp_effective_limits(pool, "k1", "gemini-2.5-flash", &lim, NULL), 0);
  assert_int_equal(lim.rpd, 250);
  assert_int_equal(gkp_effective_limits(pool, "k2", "gemini-2.5-flash", &lim, NULL), 0);
  assert_int_equal(lim.rpd, 1000);
  cycle("gemini-2.5-flash", "k2");
  cycle("gemini-2.5-flash", "k2");
  t_now = midnight - 1;
  assert_int_equal(gkp_count_available(pool, "gemini-2.5-flash", NULL), 1);
  t_now = midnight;
  assert_int_equal(gkp_count_available(pool, "gemini-2.5-flash", NULL), 2);
}

static void test_tpm_429_learns_and_cools_for_retry_delay(void **st) {
  (void)st;
  open_pool(2, NULL, NULL);
  gkp_lease l;
  gkp_verdict v;
  gkp_limits lim;
  reserve_ok("gemini-2.5-flash", &l);
  report_fixture("429_input_tokens_per_minute_free_tier.json", &l, &v);
  gkp_release(pool, &l, 1, NULL);
  assert_int_equal(v.kind, GKP_KIND_TPM);
  assert_int_equal(v.cooldown_until_ms, T0 + 26000);
  gkp_effective_limits(pool, "k1", "gemini-2.5-flash", &lim, NULL);
  assert_int_equal(lim.tpm, 250000);
  t_now = T0 + 25999;
  assert_int_equal(gkp_count_available(pool, "gemini-2.5-flash", NULL), 1);
  t_now = T0 + 26000;
  assert_int_equal(gkp_count_available(pool, "gemini-2.5-flash", NULL), 2);
}

static void test_precise_retry_and_minimum(void **st) {
  (void)st;
  open_pool(1, NULL, NULL);
  gkp_lease l;
  gkp_verdict v;
  const char *body = "{\"error\":{\"code\":429,\"message\":\"Quota exceeded. Please retry in "
                     "0.2s.\",\"status\":\"RESOURCE_EXHAUSTED\",\"details\":[{\"@type\":"
                     "\"type.googleapis.com/google.rpc.QuotaFailure\",\"violations\":[{"
                     "\"quotaId\":\"GenerateRequestsPerMinutePerProjectPerModel-FreeTier\"}]}]}}";
  reserve_ok("gemini-2.5-flash", &l);
  assert_int_equal(gkp_report_error(pool, &l, 429, body, strlen(body), &v, NULL), 0);
  gkp_release(pool, &l, 1, NULL);
  assert_int_equal(v.kind, GKP_KIND_RPM);
  assert_int_equal(v.cooldown_until_ms, T0 + 1000); /* at least 1 s */
}

static void test_no_free_tier(void **st) {
  (void)st;
  open_pool(1, NULL, NULL);
  gkp_lease l;
  gkp_verdict v;
  char *doc;
  reserve_ok("gemini-2.5-flash", &l);
  report_fixture("429_limit_zero_no_free_tier.json", &l, &v);
  gkp_release(pool, &l, 1, NULL);
  assert_int_equal(v.kind, GKP_KIND_NO_FREE_TIER);
  assert_int_equal(v.action, GKP_ACT_FALLBACK);
  assert_int_equal(v.cooldown_until_ms, gkp_next_pacific_midnight(T0));
  assert_int_equal(gkp_status_json(pool, &doc, NULL), 0);
  assert_non_null(strstr(doc, "\"no_free_tier\""));
  free(doc);
}

static void test_billing_is_key_wide(void **st) {
  (void)st;
  open_pool(2, NULL, NULL);
  gkp_lease l;
  gkp_verdict v;
  char *doc;
  reserve_ok("gemini-2.5-flash", &l);
  report_fixture("429_prepay_credits_depleted.json", &l, &v);
  gkp_release(pool, &l, 1, NULL);
  assert_int_equal(v.kind, GKP_KIND_BILLING);
  assert_int_equal(v.cooldown_until_ms, T0 + 2 * HOUR);
  cycle("gemini-3-flash-preview", "k2");
  cycle("gemma-3-27b-it", "k2");
  /* The key-wide cooldown shows in every model entry of k1. */
  assert_int_equal(gkp_status_json(pool, &doc, NULL), 0);
  char *k2 = strstr(doc, "\"k2\"");
  assert_non_null(k2);
  int n = 0;
  for (char *p = doc; (p = strstr(p, "\"billing\"")) != NULL && p < k2; p++) {
    n++;
  }
  assert_true(n >= 10); /* every model of k1 (and the key entry itself) */
  free(doc);
  t_now = T0 + 2 * HOUR;
  assert_int_equal(gkp_count_available(pool, "gemini-2.5-flash", NULL), 2);
}

static void test_unknown_429_doubles_and_resets(void **st) {
  (void)st;
  open_pool(1, NULL, NULL);
  const char *body = "{\"error\":{\"code\":429,\"message\":\"Resource has been exhausted (e.g. "
                     "check quota).\",\"status\":\"RESOURCE_EXHAUSTED\"}}";
  gkp_lease l;
  gkp_verdict v;
  int64_t expect[] = {60000, 120000, 240000};
  for (int i = 0; i < 3; i++) {
    reserve_ok("gemini-2.5-flash", &l);
    assert_int_equal(gkp_report_error(pool, &l, 429, body, strlen(body), &v, NULL), 0);
    gkp_release(pool, &l, 1, NULL);
    assert_int_equal(v.kind, GKP_KIND_UNKNOWN_429);
    assert_int_equal(v.cooldown_until_ms - t_now, expect[i]);
    t_now = v.cooldown_until_ms;
  }
  /* A success resets the streak. */
  reserve_ok("gemini-2.5-flash", &l);
  gkp_usage u = {.prompt_tokens = 1, .candidates_tokens = 1, .thoughts_tokens = -1};
  assert_int_equal(gkp_record_usage(pool, &l, &u, NULL), 0);
  gkp_release(pool, &l, 1, NULL);
  t_now += 1000;
  reserve_ok("gemini-2.5-flash", &l);
  gkp_report_error(pool, &l, 429, body, strlen(body), &v, NULL);
  gkp_release(pool, &l, 1, NULL);
  assert_int_equal(v.cooldown_until_ms - t_now, 60000);
  /* Capped at midnight Pacific. */
  int64_t midnight = gkp_next_pacific_midnight(t_now);
  t_now = midnight - 90000;
  gkp_reset(pool, "k1", NULL);
  reserve_ok("gemini-2.5-flash", &l);
  gkp_report_error(pool, &l, 429, body, strlen(body), &v, NULL); /* 60 s */
  gkp_release(pool, &l, 1, NULL);
  t_now = v.cooldown_until_ms;
  reserve_ok("gemini-2.5-flash", &l);
  gkp_report_error(pool, &l, 429, body, strlen(body), &v, NULL); /* would be 120 s */
  gkp_release(pool, &l, 1, NULL);
  assert_int_equal(v.cooldown_until_ms, midnight);
}

static void test_invalid_key_disabled_until_reset(void **st) {
  (void)st;
  open_pool(2, NULL, NULL);
  gkp_lease l;
  gkp_verdict v;
  char *doc;
  reserve_ok("gemini-2.5-flash", &l);
  assert_string_equal(l.key_id, "k1");
  report_fixture("400_api_key_invalid_array_framed.json", &l, &v);
  gkp_release(pool, &l, 1, NULL);
  assert_int_equal(v.kind, GKP_KIND_INVALID_KEY);
  for (int i = 0; i < 3; i++) {
    cycle("gemini-2.5-flash", "k2");
    t_now += 5000;
  }
  assert_int_equal(gkp_status_json(pool, &doc, NULL), 0);
  assert_non_null(strstr(doc, "\"disabled\""));
  assert_non_null(strstr(doc, "API key not valid"));
  free(doc);
  /* Days later it is still disabled. */
  t_now += 72 * HOUR;
  assert_int_equal(gkp_count_available(pool, "gemini-2.5-flash", NULL), 1);
  assert_int_equal(gkp_reset(pool, "k1", NULL), 0);
  assert_int_equal(gkp_count_available(pool, "gemini-2.5-flash", NULL), 2);
  assert_int_equal(gkp_reset(pool, "nope", NULL), -ENOENT);
}

static void test_server_errors_short_backoff(void **st) {
  (void)st;
  open_pool(1, NULL, NULL);
  gkp_lease l;
  gkp_verdict v;
  for (int i = 0; i < 8; i++) {
    reserve_ok("gemini-2.5-flash", &l);
    report_fixture("503_model_overloaded.json", &l, &v);
    gkp_release(pool, &l, 1, NULL);
    assert_int_equal(v.kind, GKP_KIND_SERVER);
    assert_true(v.cooldown_until_ms > t_now);
    assert_true(v.cooldown_until_ms - t_now <= 30000);
    t_now = v.cooldown_until_ms;
  }
}

static void test_model_not_found_no_penalty(void **st) {
  (void)st;
  open_pool(1, NULL, NULL);
  gkp_lease l;
  gkp_verdict v;
  reserve_ok("gemini-2.5-flash", &l);
  report_fixture("404_model_not_found.json", &l, &v);
  gkp_release(pool, &l, 1, NULL);
  assert_int_equal(v.kind, GKP_KIND_MODEL_NOT_FOUND);
  assert_int_equal(v.action, GKP_ACT_FALLBACK);
  assert_int_equal(v.cooldown_until_ms, 0);
  assert_int_equal(gkp_count_available(pool, "gemini-2.5-flash", NULL), 1);
}

/* ---- persistence and secrets --------------------------------------------- */

static void test_state_survives_reopen(void **st) {
  (void)st;
  open_pool(2, NULL, NULL);
  gkp_lease l;
  gkp_verdict v;
  reserve_ok("gemini-2.5-flash", &l);
  report_fixture("429_per_day_free_tier.json", &l, &v);
  gkp_release(pool, &l, 1, NULL);
  gkp_disable_key(pool, "k2", "by hand", NULL);
  gkp_pool_close(pool);
  pool = NULL;
  open_pool(2, NULL, NULL);
  assert_int_equal(gkp_count_available(pool, "gemini-2.5-flash", NULL), 0);
  char *doc;
  assert_int_equal(gkp_status_json(pool, &doc, NULL), 0);
  assert_non_null(strstr(doc, "\"rpd\""));
  assert_non_null(strstr(doc, "by hand"));
  free(doc);
}

static void test_corrupt_state_moved_aside(void **st) {
  (void)st;
  if (test_redis_url() != NULL) {
    skip(); /* a file's damage: Redis keeps its own data safe */
  }
  FILE *f = fopen(state_file, "w");
  fputs("{ this is not a state file", f);
  fclose(f);
  char warned[1024] = "";
  gkp_options o = {.clock = test_clock, .state_path = state_file};
  (void)o;
  open_pool(1, NULL, NULL); /* must not fail */
  cycle("gemini-2.5-flash", "k1");
  char aside[4300];
  snprintf(aside, sizeof aside, "%s.corrupt-%lld", state_file, (long long)(T0 / 1000));
  assert_int_equal(access(aside, F_OK), 0);
  (void)warned;
}

static void test_no_secret_anywhere(void **st) {
  (void)st;
  open_pool(4, NULL, NULL);
  gkp_lease l;
  gkp_verdict v;
  gkp_error err;
  char *doc, buf[64];
  size_t len = 0;
  reserve_ok("gemini-2.5-flash", &l);
  report_fixture("400_api_key_invalid_array_framed.json", &l, &v);
  gkp_release(pool, &l, 1, NULL);
  gkp_reserve(pool, "nope", 1, &l, NULL, &err);
  assert_int_equal(gkp_key_secret(pool, "k2", buf, sizeof buf, NULL), 0);
  assert_string_equal(buf, SECRETS[1]);
  assert_int_equal(gkp_key_secret(pool, "k2", buf, 4, &err), -ERANGE);
  assert_int_equal(gkp_status_json(pool, &doc, NULL), 0);
  char *file = test_redis_url() != NULL ? test_redis_dump(&len) : test_slurp(state_file, &len);
  assert_non_null(file);
  for (int i = 0; i < 4; i++) {
    assert_false(test_contains(doc, strlen(doc), SECRETS[i]));
    assert_false(test_contains(file, len, SECRETS[i]));
    assert_false(test_contains(err.msg, strlen(err.msg), SECRETS[i]));
    assert_false(test_contains(v.message, strlen(v.message), SECRETS[i]));
  }
  free(doc);
  free(file);
}

/* ---- threads ------------------------------------------------------------- */

#define THREADS 8
#define ROUNDS 2000
static int holders[4];
static pthread_mutex_t holders_mu = PTHREAD_MUTEX_INITIALIZER;
static int overlaps;

static void *worker(void *arg) {
  (void)arg;
  for (int i = 0; i < ROUNDS; i++) {
    gkp_lease l;
    gkp_usage u = {.prompt_tokens = 3, .candidates_tokens = 1, .thoughts_tokens = -1};
    if (gkp_reserve(pool, "free-model", 3, &l, NULL, NULL) != 0) {
      i--;
      continue;
    }
    int k = l.key_id[1] - '1';
    pthread_mutex_lock(&holders_mu);
    overlaps += holders[k]++ != 0;
    pthread_mutex_unlock(&holders_mu);
    gkp_record_usage(pool, &l, &u, NULL);
    pthread_mutex_lock(&holders_mu);
    holders[k]--;
    pthread_mutex_unlock(&holders_mu);
    gkp_release(pool, &l, 1, NULL);
  }
  return NULL;
}

static void test_concurrent_threads_lose_nothing(void **st) {
  (void)st;
  pthread_t th[THREADS];
  open_pool(4, NULL, FREE_MODEL);
  for (int i = 0; i < THREADS; i++) {
    pthread_create(&th[i], NULL, worker, NULL);
  }
  for (int i = 0; i < THREADS; i++) {
    pthread_join(th[i], NULL);
  }
  assert_int_equal(overlaps, 0);
  char *doc;
  assert_int_equal(gkp_status_json(pool, &doc, NULL), 0);
  long total = 0;
  for (char *p = doc; (p = strstr(p, "\"id\":")) != NULL; p++) {
    char *r = strstr(p, "\"requests_total\":");
    total += atol(r + 17);
  }
  free(doc);
  assert_int_equal(total, THREADS * ROUNDS);
}

/* ---- what Google saw, what heals, clock steps ------------------------------ */

/* The status document's entry for key `key` on `model` (parsed; *doc is
 * freed with cJSON_Delete). */
static const cJSON *status_entry(cJSON **doc, const char *key, const char *model) {
  char *text;
  const cJSON *k;
  assert_int_equal(gkp_status_json(pool, &text, NULL), 0);
  *doc = cJSON_Parse(text);
  free(text);
  assert_non_null(*doc);
  cJSON_ArrayForEach(k, cJSON_GetObjectItem(*doc, "keys")) {
    if (strcmp(cJSON_GetObjectItem(k, "id")->valuestring, key) == 0) {
      return model != NULL ? cJSON_GetObjectItem(cJSON_GetObjectItem(k, "models"), model) : k;
    }
  }
  fail_msg("no key %s in the status", key);
  return NULL;
}

static double status_num(const char *key, const char *model, const char *field) {
  cJSON *doc;
  const cJSON *e = status_entry(&doc, key, model);
  const cJSON *v = cJSON_GetObjectItem(e, field);
  double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
  cJSON_Delete(doc);
  return d;
}

static void test_unreached_request_is_not_counted(void **st) {
  (void)st;
  open_pool(1, NULL, "\"models\":{\"m\":{\"rpm\":2,\"tpm\":1000,\"rpd\":3}}");
  gkp_lease l;
  gkp_usage u = {.prompt_tokens = 10, .candidates_tokens = 1, .thoughts_tokens = -1};
  char why[64];
  cJSON *doc;
  reserve_ok("m", &l); /* one real request at T0 */
  gkp_record_usage(pool, &l, &u, NULL);
  gkp_release(pool, &l, 1, NULL);
  t_now += 5000;
  for (int i = 0; i < 5; i++) {
    reserve_ok("m", &l);
    assert_int_equal(
        gkp_release_unreached(pool, &l, "http://127.0.0.1:9", "connection refused", NULL), 0);
    t_now += 100;
  }
  assert_true(status_num("k1", "m", "requests_today") == 1);
  assert_true(status_num("k1", "m", "requests_last_minute") == 1);
  assert_true(status_num("k1", "m", "input_tokens_last_minute") == 10);
  assert_true(status_num("k1", "m", "requests_total") == 1);
  assert_true(status_num("k1", "m", "cooldown_until") == 0);
  assert_true(status_num("k1", NULL, "requests_total") == 1);
  const cJSON *k = status_entry(&doc, "k1", NULL);
  assert_string_equal(cJSON_GetObjectItem(k, "last_used")->valuestring, "2026-11-24T12:00:00Z");
  assert_string_equal(cJSON_GetObjectItem(k, "state")->valuestring, "ready");
  const cJSON *e = cJSON_GetObjectItem(doc, "endpoint");
  assert_true(cJSON_IsTrue(cJSON_GetObjectItem(e, "unreachable")));
  assert_string_equal(cJSON_GetObjectItem(e, "since")->valuestring, "2026-11-24T12:00:05Z");
  assert_string_equal(cJSON_GetObjectItem(e, "error")->valuestring, "connection refused");
  assert_string_equal(cJSON_GetObjectItem(e, "url")->valuestring, "http://127.0.0.1:9");
  cJSON_Delete(doc);
  assert_true(gkp_endpoint_down_since(pool, why, sizeof why) == T0 + 5000);
  assert_string_equal(why, "connection refused");
  /* The quota is whole: two more requests fit the RPD of 3. */
  reserve_ok("m", &l);
  gkp_record_usage(pool, &l, &u, NULL); /* an answer: the endpoint is back */
  gkp_release(pool, &l, 1, NULL);
  assert_true(gkp_endpoint_down_since(pool, NULL, 0) == 0);
  t_now += 60000;
  reserve_ok("m", &l);
  gkp_release(pool, &l, 1, NULL);
}

static void test_learned_limit_heals_at_midnight(void **st) {
  (void)st;
  open_pool(1, NULL, NULL);
  gkp_lease l;
  gkp_verdict v;
  gkp_limits lim;
  cJSON *doc;
  int64_t midnight = gkp_next_pacific_midnight(T0);
  reserve_ok("gemini-2.5-flash", &l);
  report_fixture("429_per_day_free_tier.json", &l, &v);
  gkp_release(pool, &l, 1, NULL);
  gkp_effective_limits(pool, "k1", "gemini-2.5-flash", &lim, NULL);
  assert_int_equal(lim.rpd, 250);
  const cJSON *m = status_entry(&doc, "k1", "gemini-2.5-flash");
  const cJSON *rpd = cJSON_GetObjectItem(cJSON_GetObjectItem(m, "learned"), "rpd");
  assert_non_null(rpd);
  assert_int_equal((int)cJSON_GetObjectItem(rpd, "value")->valuedouble, 250);
  assert_string_equal(cJSON_GetObjectItem(rpd, "at")->valuestring, "2026-11-24T12:00:00Z");
  assert_string_equal(cJSON_GetObjectItem(rpd, "until")->valuestring, "2026-11-25T08:00:00Z");
  assert_int_equal((int)cJSON_GetObjectItem(m, "rpd_limit")->valuedouble, 250);
  cJSON_Delete(doc);
  /* At midnight Pacific the table's value applies again, with no reset. */
  t_now = midnight - 1;
  gkp_effective_limits(pool, "k1", "gemini-2.5-flash", &lim, NULL);
  assert_int_equal(lim.rpd, 250);
  t_now = midnight;
  gkp_effective_limits(pool, "k1", "gemini-2.5-flash", &lim, NULL);
  assert_int_equal(lim.rpd, 1000);
  m = status_entry(&doc, "k1", "gemini-2.5-flash");
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(m, "learned")), 0);
  cJSON_Delete(doc);
  /* Learned again, then forgotten by a reset. */
  reserve_ok("gemini-2.5-flash", &l);
  report_fixture("429_per_day_free_tier.json", &l, &v);
  gkp_release(pool, &l, 1, NULL);
  gkp_effective_limits(pool, "k1", "gemini-2.5-flash", &lim, NULL);
  assert_int_equal(lim.rpd, 250);
  assert_int_equal(gkp_reset(pool, "all", NULL), 0);
  gkp_effective_limits(pool, "k1", "gemini-2.5-flash", &lim, NULL);
  assert_int_equal(lim.rpd, 1000);
}

/* Learns limit `value` for `metric` on the pair of lease l. */
static void learn(gkp_lease *l, int metric, int64_t value) {
  gkp_verdict v = {0};
  v.kind = GKP_KIND_TPM;
  v.learned_metric = metric;
  v.learned_limit = value;
  assert_int_equal(gkp_apply_verdict(pool, l, &v, NULL), 0);
  gkp_release(pool, l, 1, NULL);
  t_now += 600000; /* past the cooldown */
}

/* The largest TPM of a model chain: per project (two keys share "pa"),
 * learned limits included, healing at midnight; -1 when one is 0. */
static void test_max_tpm_of_chain(void **st) {
  (void)st;
  const char *projects[] = {"pa", "pa", "pb"};
  int64_t tpm;
  gkp_lease l;
  open_pool(3, projects,
            "\"models\":{\"m\":{\"tpm\":1000,\"fallback\":\"n\"},\"n\":{\"tpm\":600}}");
  assert_int_equal(gkp__pool_max_tpm(pool, "m", 0, &tpm, NULL), 0);
  assert_int_equal(tpm, 1000);
  assert_int_equal(gkp__pool_max_tpm(pool, "n", 0, &tpm, NULL), 0);
  assert_int_equal(tpm, 600);
  assert_int_equal(gkp__pool_max_tpm(pool, "nope", 0, &tpm, NULL), 0);
  assert_int_equal(tpm, -1);
  /* pa learns 400 for m: pb still takes 1000. */
  reserve_ok("m", &l);
  assert_string_equal(l.project, "pa");
  learn(&l, GKP_KIND_TPM, 400);
  assert_int_equal(gkp__pool_max_tpm(pool, "m", 0, &tpm, NULL), 0);
  assert_int_equal(tpm, 1000);
  /* pb learns 300: the chain's largest is n's 600, at once (no stale answer). */
  reserve_ok("m", &l);
  reserve_ok("m", &l);
  assert_string_equal(l.project, "pb");
  learn(&l, GKP_KIND_TPM, 300);
  assert_int_equal(gkp__pool_max_tpm(pool, "m", 0, &tpm, NULL), 0);
  assert_int_equal(tpm, 600);
  /* At midnight Pacific the learned limits heal (a fresh answer sees it). */
  t_now = gkp_next_pacific_midnight(T0);
  assert_int_equal(gkp__pool_max_tpm(pool, "m", 1, &tpm, NULL), 0);
  assert_int_equal(tpm, 1000);
  /* A limit of 0 on one project: unknown (-1), nothing refused. */
  reserve_ok("n", &l);
  learn(&l, GKP_KIND_TPM, 0);
  assert_int_equal(gkp__pool_max_tpm(pool, "m", 0, &tpm, NULL), 0);
  assert_int_equal(tpm, -1);
}

static void test_quota_value_zero_heals_at_midnight(void **st) {
  (void)st;
  open_pool(1, NULL, NULL);
  gkp_lease l;
  gkp_verdict v;
  const char *body = "{\"error\":{\"code\":429,\"message\":\"Quota exceeded.\",\"status\":"
                     "\"RESOURCE_EXHAUSTED\",\"details\":[{\"@type\":\"type.googleapis.com/"
                     "google.rpc.QuotaFailure\",\"violations\":[{\"quotaId\":"
                     "\"GenerateRequestsPerDayPerProjectPerModel-FreeTier\",\"quotaValue\":\"0\"}]}"
                     "]}}";
  reserve_ok("gemini-2.5-flash", &l);
  assert_int_equal(gkp_report_error(pool, &l, 429, body, strlen(body), &v, NULL), 0);
  gkp_release(pool, &l, 1, NULL);
  assert_int_equal(v.kind, GKP_KIND_NO_FREE_TIER);
  int64_t midnight = gkp_next_pacific_midnight(T0);
  t_now = midnight - 1;
  assert_int_equal(gkp_count_available(pool, "gemini-2.5-flash", NULL), 0);
  t_now = midnight; /* no_free_tier until midnight, never forever */
  assert_int_equal(gkp_count_available(pool, "gemini-2.5-flash", NULL), 1);
}

static void test_clock_step_back_never_undercounts(void **st) {
  (void)st;
  if (test_redis_url() != NULL) {
    skip(); /* on Redis time is the server's: a client's clock steps change nothing */
  }
  open_pool(1, NULL, "\"models\":{\"m\":{\"rpm\":3}}");
  gkp_lease l;
  gkp_wait w;
  reserve_ok("m", &l);
  gkp_release(pool, &l, 1, NULL);
  reserve_ok("m", &l);
  gkp_release(pool, &l, 1, NULL);
  /* 64 s back: the same one-second slot as the requests just counted. */
  t_now = T0 - 64000;
  reserve_ok("m", &l);
  gkp_release(pool, &l, 1, NULL);
  assert_int_equal(gkp_reserve(pool, "m", 1, &l, &w, NULL), -EAGAIN);
  assert_int_equal(w.reason, GKP_WAIT_QUOTA);
  assert_true(status_num("k1", "m", "requests_last_minute") == 3);
  /* An hour back: still full, but free a window from now, not an hour. */
  t_now = T0 - HOUR;
  assert_int_equal(gkp_reserve(pool, "m", 1, &l, &w, NULL), -EAGAIN);
  assert_true(w.next_ms > t_now && w.next_ms <= t_now + 62000);
  t_now = w.next_ms - 1;
  assert_int_equal(gkp_reserve(pool, "m", 1, &l, NULL, NULL), -EAGAIN);
  t_now = w.next_ms;
  reserve_ok("m", &l);
  gkp_release(pool, &l, 1, NULL);
}

static void test_clock_step_back_day_count_never_flips(void **st) {
  (void)st;
  if (test_redis_url() != NULL) {
    skip(); /* on Redis time is the server's: a client's clock steps change nothing */
  }
  open_pool(1, NULL, "\"models\":{\"m\":{\"rpd\":3}}");
  gkp_lease l;
  gkp_wait w;
  int64_t midnight = gkp_next_pacific_midnight(T0);
  reserve_ok("m", &l);
  gkp_release(pool, &l, 1, NULL);
  t_now += 2000;
  reserve_ok("m", &l);
  gkp_release(pool, &l, 1, NULL);
  /* Back across the last midnight Pacific (08:00 UTC): still today's 2. */
  t_now = T0 - 5 * HOUR;
  assert_true(status_num("k1", "m", "requests_today") == 2);
  reserve_ok("m", &l);
  gkp_release(pool, &l, 1, NULL);
  assert_int_equal(gkp_reserve(pool, "m", 1, &l, &w, NULL), -EAGAIN);
  assert_true(w.next_ms == midnight);
  /* Forward again: the count is still 3, not 2 or 1. */
  t_now = T0 + 5000;
  assert_true(status_num("k1", "m", "requests_today") == 3);
  assert_int_equal(gkp_reserve(pool, "m", 1, &l, NULL, NULL), -EAGAIN);
  t_now = midnight;
  reserve_ok("m", &l);
  gkp_release(pool, &l, 1, NULL);
}

static void test_clock_step_forward_keeps_live_leases(void **st) {
  (void)st;
  if (test_redis_url() != NULL) {
    skip(); /* on Redis time is the server's: a client's clock steps change nothing */
  }
  open_pool(1, NULL, FREE_MODEL);
  gkp_lease a, b;
  gkp_wait w;
  reserve_ok("free-model", &a);
  t_now += 3 * HOUR; /* far past the lease's wall-clock lifetime */
  assert_int_equal(gkp_reserve(pool, "free-model", 1, &b, &w, NULL), -EAGAIN);
  assert_int_equal(w.reason, GKP_WAIT_BUSY);
  assert_true(status_num("k1", NULL, "inflight") == 1);
  gkp_release(pool, &a, 1, NULL);
  reserve_ok("free-model", &b);
  gkp_release(pool, &b, 1, NULL);
}

/* An error met outside a reservation (a caller that sent with the key
 * itself) follows the same rules: per day until midnight Pacific, per minute
 * for the retry delay, given as Google's JSON or as plain text; a live
 * lease of the key is left alone. */
static void test_report_key_error_without_lease(void **st) {
  (void)st;
  open_pool(3, NULL, NULL);
  gkp_verdict v;
  gkp_error err;
  gkp_lease held;
  int status;
  char *day = fixture("429_per_day_free_tier.json", &status);
  char *minute = fixture("429_input_tokens_per_minute_free_tier.json", &status);
  reserve_ok("gemini-2.5-flash", &held); /* k1, in flight */
  assert_int_equal(
      gkp_report_key_error(pool, "k2", "gemini-2.5-flash", 429, day, strlen(day), &v, &err), 0);
  assert_int_equal(v.kind, GKP_KIND_RPD);
  assert_int_equal(v.cooldown_until_ms, gkp_next_pacific_midnight(T0));
  assert_int_equal(
      gkp_report_key_error(pool, "k3", "gemini-2.5-flash", 429, minute, strlen(minute), &v, &err),
      0);
  assert_int_equal(v.kind, GKP_KIND_TPM);
  assert_int_equal(v.cooldown_until_ms, T0 + 26000);
  /* k1 is busy, k2 and k3 cool: nothing; the lease of k1 still renews. */
  assert_int_equal(gkp_count_available(pool, "gemini-2.5-flash", NULL), 0);
  assert_int_equal(gkp_lease_renew(pool, &held, NULL), 0);
  assert_int_equal(gkp_release(pool, &held, 1, NULL), 0);
  t_now = T0 + 26000;
  assert_int_equal(gkp_count_available(pool, "gemini-2.5-flash", NULL), 2);
  /* Plain text, as an SDK's exception prints it. */
  const char *text = "429 RESOURCE_EXHAUSTED. You exceeded your current quota. Please retry in "
                     "12.5s. quotaId: GenerateRequestsPerMinutePerProjectPerModel-FreeTier";
  assert_int_equal(
      gkp_report_key_error(pool, "k3", "gemini-2.5-flash", 429, text, strlen(text), &v, &err), 0);
  assert_int_equal(v.kind, GKP_KIND_RPM);
  assert_int_equal(v.cooldown_until_ms, T0 + 26000 + 12500);
  /* Unknown key or model: -ENOENT with a line naming it, nothing applied. */
  assert_int_equal(
      gkp_report_key_error(pool, "k9", "gemini-2.5-flash", 429, day, strlen(day), &v, &err),
      -ENOENT);
  assert_non_null(strstr(err.msg, "'k9'"));
  assert_int_equal(gkp_report_key_error(pool, "k1", "gemini-9", 429, day, strlen(day), &v, &err),
                   -ENOENT);
  assert_non_null(strstr(err.msg, "'gemini-9'"));
  assert_int_equal(gkp_count_available(pool, "gemini-2.5-flash", NULL), 1);
  free(day);
  free(minute);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_report_key_error_without_lease, setup, teardown),
      cmocka_unit_test_setup_teardown(test_lru_order_all_before_repeat, setup, teardown),
      cmocka_unit_test_setup_teardown(test_lru_order_shared_beyond_a_page, setup, teardown),
      cmocka_unit_test_setup_teardown(test_never_used_first, setup, teardown),
      cmocka_unit_test_setup_teardown(test_nearest_cooldown_reported, setup, teardown),
      cmocka_unit_test_setup_teardown(test_explicit_cooldown_override, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tier_detection_limit_zero, setup, teardown),
      cmocka_unit_test_setup_teardown(test_per_model_cooldown_does_not_block_others, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_key_wide_cooldown_blocks_all, setup, teardown),
      cmocka_unit_test_setup_teardown(test_reserved_not_handed_out_twice, setup, teardown),
      cmocka_unit_test_setup_teardown(test_max_inflight, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unknown_model, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unknown_provider, setup, teardown),
      cmocka_unit_test_setup_teardown(test_count_available_and_clear_expired, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rpm_window, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tpm_window_and_correction, setup, teardown),
      cmocka_unit_test_setup_teardown(test_project_shared_quota, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rpd_resets_at_pacific_midnight_across_dst, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_per_day_cooldown_until_midnight, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tpm_429_learns_and_cools_for_retry_delay, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_precise_retry_and_minimum, setup, teardown),
      cmocka_unit_test_setup_teardown(test_no_free_tier, setup, teardown),
      cmocka_unit_test_setup_teardown(test_billing_is_key_wide, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unknown_429_doubles_and_resets, setup, teardown),
      cmocka_unit_test_setup_teardown(test_invalid_key_disabled_until_reset, setup, teardown),
      cmocka_unit_test_setup_teardown(test_server_errors_short_backoff, setup, teardown),
      cmocka_unit_test_setup_teardown(test_model_not_found_no_penalty, setup, teardown),
      cmocka_unit_test_setup_teardown(test_state_survives_reopen, setup, teardown),
      cmocka_unit_test_setup_teardown(test_corrupt_state_moved_aside, setup, teardown),
      cmocka_unit_test_setup_teardown(test_no_secret_anywhere, setup, teardown),
      cmocka_unit_test_setup_teardown(test_concurrent_threads_lose_nothing, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unreached_request_is_not_counted, setup, teardown),
      cmocka_unit_test_setup_teardown(test_learned_limit_heals_at_midnight, setup, teardown),
      cmocka_unit_test_setup_teardown(test_max_tpm_of_chain, setup, teardown),
      cmocka_unit_test_setup_teardown(test_quota_value_zero_heals_at_midnight, setup, teardown),
      cmocka_unit_test_setup_teardown(test_clock_step_back_never_undercounts, setup, teardown),
      cmocka_unit_test_setup_teardown(test_clock_step_back_day_count_never_flips, setup, teardown),
      cmocka_unit_test_setup_teardown(test_clock_step_forward_keeps_live_leases, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
