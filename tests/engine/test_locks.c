/*
 * test_locks.c - the state file's lock is taken once per decision: a
 * reservation, a release, a recorded answer, an unsent request given back
 * with the endpoint noted down each take one transaction, and the largest
 * TPM of a model (asked for every prompt) none while its answer is fresh.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "engine/file_backend.h"
#include "engine/pool_impl.h"
#include "engine/store.h"
#include "engine_test.h"

static const char *CONFIG =
    "{\"providers\":{\"gemini\":{\"keys\":[{\"id\":\"k1\",\"api_key\":\"FAKE-L-1\"},"
    "{\"id\":\"k2\",\"api_key\":\"FAKE-L-2\"}]}},"
    "\"models\":{\"m\":{\"rpm\":1000,\"tpm\":5000,\"rpd\":100000,\"fallback\":\"n\"},"
    "\"n\":{\"rpm\":1000,\"tpm\":9000,\"rpd\":100000}}}";

static uint64_t locks(gkp_pool *p) {
  return ((fb *)p->be)->st->locks;
}

static void test_one_transaction_per_decision(void **unused) {
  (void)unused;
  char *dir = test_tmpdir(), state[4200];
  gkp_pool *p;
  gkp_lease l;
  gkp_error err;
  snprintf(state, sizeof state, "%s/state.db", dir);
  gkp_options o = {.state_path = state, .clock = test_clock};
  t_now = 1795521600000LL;
  if (gkp_pool_open_text(&p, CONFIG, strlen(CONFIG), "keys.json", dir, &o, &err) != 0) {
    fail_msg("open: %s", err.msg);
  }
  uint64_t n = locks(p);
  assert_int_equal(gkp_reserve(p, "m", 10, &l, NULL, &err), 0);
  assert_int_equal(locks(p), n + 1);
  gkp_usage u = {.prompt_tokens = 10, .candidates_tokens = 5, .thoughts_tokens = -1};
  assert_int_equal(gkp_record_usage(p, &l, &u, &err), 0);
  assert_int_equal(locks(p), n + 2);
  assert_int_equal(gkp_release(p, &l, 1, &err), 0);
  assert_int_equal(locks(p), n + 3);

  /* Given back unsent, the endpoint noted down: one transaction. */
  assert_int_equal(gkp_reserve(p, "m", 10, &l, NULL, &err), 0);
  n = locks(p);
  assert_int_equal(gkp_release_unreached(p, &l, "http://127.0.0.1:1", "connection refused", &err),
                   0);
  assert_int_equal(locks(p), n + 1);
  char why[64];
  assert_true(gkp_endpoint_down_since(p, why, sizeof why) > 0);
  assert_string_equal(why, "connection refused");
  assert_int_equal(gkp_count_available(p, "m", &err), 2); /* the key was given back */

  /* The largest TPM along m's fallbacks: computed under the lock once, then
   * remembered without it; asked afresh, under the lock again. */
  int64_t tpm = 0;
  n = locks(p);
  assert_int_equal(gkp__pool_max_tpm(p, "m", 0, &tpm, &err), 0);
  assert_int_equal(tpm, 9000);
  assert_int_equal(locks(p), n + 1);
  for (int i = 0; i < 10; i++) {
    tpm = 0;
    assert_int_equal(gkp__pool_max_tpm(p, "m", 0, &tpm, &err), 0);
    assert_int_equal(tpm, 9000);
  }
  assert_int_equal(locks(p), n + 1);
  assert_int_equal(gkp__pool_max_tpm(p, "m", 1, &tpm, &err), 0);
  assert_int_equal(locks(p), n + 2);
  assert_int_equal(gkp__pool_max_tpm(p, "nope", 0, &tpm, &err), 0);
  assert_int_equal(tpm, -1);

  gkp_pool_close(p);
  test_rmrf(dir);
  free(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_one_transaction_per_decision),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
