/*
 * test_reload.c - reloading the configuration every few milliseconds while
 * eight threads reserve, release and read the configuration (key count and
 * ids, fallbacks, secrets, the status document).  Run under AddressSanitizer
 * and ThreadSanitizer by scripts/test: a reader must never see a freed
 * configuration, and the state must stay consistent while keys come and go.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "engine_test.h"

#define THREADS 8
#define RUN_MS 1500

static char *tmpdir;
static char config[4200];
static gkp_pool *pool;
static atomic_int stop, failures, reloads;
static atomic_long cycles;

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Writes one of two configurations: k1-k8, or k1-k4 and k9-k12. */
static void write_config(int variant) {
  char tmp[4300];
  snprintf(tmp, sizeof tmp, "%s.tmp", config);
  FILE *f = fopen(tmp, "w");
  assert_non_null(f);
  fprintf(f, "{\"providers\":{\"gemini\":{\"keys\":[");
  for (int i = 0; i < 8; i++) {
    int k = variant == 0 || i < 4 ? i + 1 : i + 5;
    fprintf(f, "%s{\"id\":\"k%d\",\"api_key\":\"FAKE-RELOAD-%d\"}", i ? "," : "", k, k);
  }
  fprintf(f, "]}},\"max_inflight\":2,\"models\":{\"m\":{\"fallback\":\"n\"},\"n\":{}}}");
  fclose(f);
  assert_int_equal(rename(tmp, config), 0);
}

static void fail_once(const char *what, const char *msg) {
  if (atomic_fetch_add(&failures, 1) < 5) {
    fprintf(stderr, "%s: %s\n", what, msg);
  }
}

static void *worker(void *ud) {
  long n = 0;
  (void)ud;
  while (!atomic_load(&stop)) {
    gkp_lease l;
    gkp_error err;
    char secret[128];
    int rc = gkp_reserve(pool, "m", 10, &l, NULL, &err);
    if (rc == 0) {
      /* The key may have left the configuration meanwhile: -ENOENT. */
      rc = gkp_key_secret(pool, l.key_id, secret, sizeof secret, &err);
      if (rc != 0 && rc != -ENOENT) {
        fail_once("secret", err.msg);
      }
      if (gkp_release(pool, &l, 1, &err) != 0) {
        fail_once("release", err.msg);
      }
    } else if (rc != -EAGAIN) {
      fail_once("reserve", err.msg);
    }
    size_t nk = gkp_key_count(pool);
    for (size_t i = 0; i < nk; i++) {
      const char *id = gkp_key_id(pool, i);
      if (id != NULL && id[0] != 'k') {
        fail_once("key id", id);
      }
    }
    const char *fb = gkp_model_fallback(pool, "m");
    if (fb == NULL || strcmp(fb, "n") != 0) {
      fail_once("fallback", fb != NULL ? fb : "(none)");
    }
    if (++n % 50 == 0) {
      char *json = NULL;
      if (gkp_status_json(pool, &json, &err) != 0) {
        fail_once("status", err.msg);
      }
      free(json);
    }
  }
  atomic_fetch_add(&cycles, n);
  return NULL;
}

static void test_reload_under_load(void **st) {
  (void)st;
  pthread_t th[THREADS];
  gkp_error err;
  tmpdir = test_tmpdir();
  snprintf(config, sizeof config, "%s/keys.json", tmpdir);
  char state[4200];
  snprintf(state, sizeof state, "%s/state.db", tmpdir);
  if (test_redis_url() != NULL) {
    snprintf(state, sizeof state, "%s", test_redis_url());
    test_redis_flush();
  }
  write_config(0);
  gkp_options o = {.config_path = config, .state_path = state};
  if (gkp_pool_open(&pool, &o, &err) != 0) {
    fail_msg("open: %s", err.msg);
  }
  for (int i = 0; i < THREADS; i++) {
    pthread_create(&th[i], NULL, worker, NULL);
  }
  int64_t end = mono_ms() + RUN_MS;
  for (int v = 1; mono_ms() < end; v ^= 1) {
    write_config(v);
    if (gkp_pool_reload(pool, &err) != 0) {
      fail_once("reload", err.msg);
    }
    atomic_fetch_add(&reloads, 1);
    usleep(2000);
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < THREADS; i++) {
    pthread_join(th[i], NULL);
  }
  printf("%d reloads, %ld reader cycles\n", atomic_load(&reloads), atomic_load(&cycles));
  assert_int_equal(atomic_load(&failures), 0);
  assert_true(atomic_load(&reloads) > 10);
  /* Every lease was given back: all eight keys of the last configuration
   * are free again. */
  assert_int_equal(gkp_count_available(pool, "m", &err), 8);
  gkp_pool_close(pool);
  test_rmrf(tmpdir);
  free(tmpdir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reload_under_load),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
