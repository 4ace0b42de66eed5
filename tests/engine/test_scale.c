/*
 * test_scale.c - a pool of 10 000 keys: opening, least-recently-used
 * selection over all of them, a reload that drops half the keys and adds
 * 5 000 others (the freed slots are reused: the file does not grow), and
 * the status document.  The times are printed, not asserted (a test never
 * asserts a duration: scripts/bench-engine has the figures); what is checked
 * is the outcome, and that a failing reservation is answered without a walk
 * of every key.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <cmocka.h>
#include <sys/stat.h>
#include <time.h>

#include "engine/engine.h"
#include "engine/file_backend.h"
#include "engine/pool_impl.h"
#include "engine/status.h"
#include "engine_test.h"

#define NKEYS 10000

static char *tmpdir;
static char state[4200], config[4200];
static int model_rpm = 1000000; /* model m's requests per minute */

static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Writes keys.json with keys named PREFIX0 .. PREFIX(n-1) from `first`. */
static void write_config(const char *prefix, int first, int n, const char *prefix2, int first2,
                         int n2) {
  char tmp[4300];
  snprintf(tmp, sizeof tmp, "%s.tmp", config);
  FILE *f = fopen(tmp, "w");
  assert_non_null(f);
  fprintf(f, "{\"providers\":{\"gemini\":{\"keys\":[");
  for (int i = 0; i < n + n2; i++) {
    const char *p = i < n ? prefix : prefix2;
    int k = i < n ? first + i : first2 + i - n;
    fprintf(f, "%s{\"id\":\"%s%d\",\"api_key\":\"FAKE-SCALE-%s%d\"}", i ? "," : "", p, k, p, k);
  }
  fprintf(f, "]}},\"models\":{\"m\":{\"rpm\":%d,\"tpm\":1000000000,\"rpd\":100000000}}}",
          model_rpm);
  fclose(f);
  assert_int_equal(rename(tmp, config), 0);
}

static off_t file_size(void) {
  struct stat sb;
  assert_int_equal(stat(state, &sb), 0);
  return sb.st_size;
}

/* n reserve + release cycles; returns the distinct keys handed out. */
static int cycles(gkp_pool *p, int n, char (*seen)[GKP_ID_MAX]) {
  int distinct = 0;
  for (int i = 0; i < n; i++) {
    gkp_lease l;
    gkp_error err;
    if (gkp_reserve(p, "m", 10, &l, NULL, &err) != 0) {
      fail_msg("reserve %d: %s", i, err.msg);
    }
    if (seen != NULL) {
      int dup = 0;
      for (int j = 0; j < distinct && !dup; j++) {
        dup = strcmp(seen[j], l.key_id) == 0;
      }
      if (!dup) {
        memcpy(seen[distinct++], l.key_id, GKP_ID_MAX);
      }
    }
    assert_int_equal(gkp_release(p, &l, 1, NULL), 0);
    t_now += 1;
  }
  return distinct;
}

static void test_ten_thousand_keys(void **st) {
  (void)st;
  gkp_pool *p;
  gkp_error err;
  double t;
  tmpdir = test_tmpdir();
  snprintf(state, sizeof state, "%s/state.db", tmpdir);
  snprintf(config, sizeof config, "%s/keys.json", tmpdir);
  write_config("a", 0, NKEYS, "", 0, 0);
  t_now = 1795521600000LL;

  t = mono_s();
  gkp_options o = {.config_path = config, .state_path = state, .clock = test_clock};
  if (gkp_pool_open(&p, &o, &err) != 0) {
    fail_msg("open: %s", err.msg);
  }
  double open_s = mono_s() - t;
  assert_int_equal(gkp_key_count(p), NKEYS);

  /* Least recently used first: 200 reservations, 200 different keys. */
  char(*seen)[GKP_ID_MAX] = calloc(200, GKP_ID_MAX);
  assert_int_equal(cycles(p, 200, seen), 200);
  free(seen);
  t = mono_s();
  cycles(p, 20000, NULL);
  double per_cycle_us = (mono_s() - t) / 20000 * 1e6;

  /* Half the keys go, 5 000 others come: the freed slots take them. */
  off_t size = file_size();
  write_config("a", 0, NKEYS / 2, "b", 0, NKEYS / 2);
  t = mono_s();
  assert_int_equal(gkp_pool_reload(p, &err), 0);
  double reload_s = mono_s() - t;
  assert_int_equal(gkp_key_count(p), NKEYS);
  assert_int_equal(file_size(), size);
  cycles(p, 20000, NULL);

  /* The largest TPM of the model (the runner's check of every prompt): one
   * call, not one per key; the former way, per key, measured alongside. */
  int64_t tpm = 0;
  t = mono_s();
  for (int i = 0; i < 2000; i++) {
    assert_int_equal(gkp__pool_max_tpm(p, "m", 0, &tpm, NULL), 0);
  }
  double max_tpm_us = (mono_s() - t) / 2000 * 1e6;
  assert_int_equal(tpm, 1000000000);
  t = mono_s();
  assert_int_equal(gkp__pool_max_tpm(p, "m", 1, &tpm, NULL), 0);
  double fresh_ms = (mono_s() - t) * 1e3;
  t = mono_s();
  for (size_t i = 0; i < gkp_key_count(p); i++) {
    gkp_limits lim;
    assert_int_equal(gkp_effective_limits(p, gkp_key_id(p, i), "m", &lim, NULL), 0);
  }
  double per_key_ms = (mono_s() - t) * 1e3;

  t = mono_s();
  char *json;
  assert_int_equal(gkp_status_json(p, &json, &err), 0);
  double status_s = mono_s() - t;
  cJSON *doc = cJSON_Parse(json);
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(doc, "keys")), NKEYS);
  /* Written directly, the document reads byte for byte as cJSON prints it. */
  char *again = cJSON_Print(doc);
  assert_string_equal(again, json);
  free(again);
  /* Compact, with one more member, as cJSON_PrintUnformatted. */
  gkp__status *snap;
  assert_int_equal(gkp__status_take(p, &snap, &err), 0);
  char *compact = gkp__status_render_json_with(snap, 1, "extra", "{\"a\":[1,\"b\"]}");
  gkp__status_free(snap);
  cJSON_AddItemToObject(doc, "extra", cJSON_Parse("{\"a\":[1,\"b\"]}"));
  again = cJSON_PrintUnformatted(doc);
  assert_string_equal(again, compact);
  free(again);
  free(compact);
  const cJSON *k, *b = NULL;
  cJSON_ArrayForEach(k, cJSON_GetObjectItem(doc, "keys")) {
    if (strcmp(cJSON_GetObjectItem(k, "id")->valuestring, "b42") == 0) {
      b = k;
    }
  }
  assert_non_null(b);
  assert_true(cJSON_GetObjectItem(b, "requests_total")->valueint >= 1);
  cJSON_Delete(doc);
  free(json);
  gkp_pool_close(p);

  printf("10000 keys: open %.2f s, %.1f us per reserve+release, reload %.2f s, status %.2f s\n",
         open_s, per_cycle_us, reload_s, status_s);
  printf("largest TPM of a model: %.2f us per call (%.2f ms computed afresh; one "
         "gkp_effective_limits per key: %.1f ms)\n",
         max_tpm_us, fresh_ms, per_key_ms);
  test_rmrf(tmpdir);
  free(tmpdir);
}

/* A pool of n keys each used once in a model with 1 request per minute:
 * microseconds per failing reservation, which must still say when the
 * first key frees up; an unsent request given back frees its key at once,
 * and so does the minute going by. */
static double failing_reserve_us(int n) {
  gkp_pool *p;
  gkp_error err;
  gkp_lease l, held;
  gkp_wait w;
  double t;
  tmpdir = test_tmpdir();
  snprintf(state, sizeof state, "%s/state.db", tmpdir);
  snprintf(config, sizeof config, "%s/keys.json", tmpdir);
  model_rpm = 1;
  write_config("a", 0, n, "", 0, 0);
  model_rpm = 1000000;
  t_now = 1795521600000LL;
  gkp_options o = {.config_path = config, .state_path = state, .clock = test_clock};
  if (gkp_pool_open(&p, &o, &err) != 0) {
    fail_msg("open: %s", err.msg);
  }
  for (int i = 0; i < n - 1; i++) {
    assert_int_equal(gkp_reserve(p, "m", 10, &l, NULL, &err), 0);
    assert_int_equal(gkp_release(p, &l, 1, NULL), 0);
  }
  assert_int_equal(gkp_reserve(p, "m", 10, &held, NULL, &err), 0);
  t_now += 1000;
  int64_t first_free = 1795521600000LL + 60000;
  uint64_t hits = ((fb *)p->be)->miss_hits;
  t = mono_s();
  for (int i = 0; i < 1000; i++) {
    memset(&w, 0, sizeof w);
    assert_int_equal(gkp_reserve(p, "m", 10 + i % 3, &l, &w, &err), -EAGAIN);
    assert_int_equal(w.reason, GKP_WAIT_QUOTA);
    assert_true(w.next_ms >= first_free && w.next_ms <= first_free + 2000);
    assert_string_equal(w.next_key_id, "a0");
  }
  double us = (mono_s() - t) / 1000 * 1e6;
  /* Three sizes, one walk each: every other answer without one. */
  assert_int_equal(((fb *)p->be)->miss_hits - hits, 1000 - 3);
  /* The unsent request given back: its key is free at once. */
  assert_int_equal(gkp_release(p, &held, 0, NULL), 0);
  assert_int_equal(gkp_reserve(p, "m", 10, &l, NULL, &err), 0);
  assert_string_equal(l.key_id, held.key_id);
  assert_int_equal(gkp_reserve(p, "m", 10, &held, &w, &err), -EAGAIN);
  /* A minute later the first key is free again. */
  t_now = w.next_ms;
  assert_int_equal(gkp_reserve(p, "m", 10, &l, NULL, &err), 0);
  assert_string_equal(l.key_id, "a0");
  gkp_pool_close(p);
  test_rmrf(tmpdir);
  free(tmpdir);
  return us;
}

static void test_failing_reserve(void **st) {
  (void)st;
  double small = failing_reserve_us(256), large = failing_reserve_us(NKEYS);
  printf("failing reservation (no key free, the soonest reported): %.1f us at 256 keys, %.1f us "
         "at %d keys\n",
         small, large, NKEYS);
}

/* Strings that need escaping (a reason with quotes, a backslash, control
 * characters and UTF-8): the document parses back to them, and reads as
 * cJSON prints it, formatted and compact. */
static void test_status_strings(void **st) {
  (void)st;
  static const char cfg[] = "{\"providers\":{\"gemini\":{\"keys\":[{\"id\":\"k1\","
                            "\"api_key\":\"FAKE-S-1\"}]}},\"models\":{\"m\":{\"rpm\":5}}}";
  const char *reason = "said \"no\"\\ at\n\tonce \x01\x1f caf\xc3\xa9";
  char *dir = test_tmpdir(), path[4200], *json;
  gkp_pool *p;
  gkp_error err;
  snprintf(path, sizeof path, "%s/state.db", dir);
  gkp_options o = {.state_path = path, .clock = test_clock};
  t_now = 1795521600000LL;
  assert_int_equal(gkp_pool_open_text(&p, cfg, sizeof cfg - 1, "keys.json", dir, &o, &err), 0);
  assert_int_equal(gkp_disable_key(p, "k1", reason, &err), 0);
  assert_int_equal(gkp_status_json(p, &json, &err), 0);
  cJSON *doc = cJSON_Parse(json);
  assert_non_null(doc);
  const cJSON *k = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "keys"), 0);
  assert_string_equal(cJSON_GetObjectItem(k, "disabled_reason")->valuestring, reason);
  char *again = cJSON_Print(doc);
  assert_string_equal(again, json);
  free(again);
  gkp__status *snap;
  assert_int_equal(gkp__status_take(p, &snap, &err), 0);
  char *compact = gkp__status_render_json_with(snap, 1, NULL, NULL);
  gkp__status_free(snap);
  again = cJSON_PrintUnformatted(doc);
  assert_string_equal(again, compact);
  free(again);
  free(compact);
  cJSON_Delete(doc);
  free(json);
  gkp_pool_close(p);
  test_rmrf(dir);
  free(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_status_strings),
      cmocka_unit_test(test_ten_thousand_keys),
      cmocka_unit_test(test_failing_reserve),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
