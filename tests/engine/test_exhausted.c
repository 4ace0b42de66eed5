/*
 * test_exhausted.c - a reservation that finds no key answers from what the
 * previous one found, brought up to date from the state file's change log
 * (fb_miss.c).  After every kind of change (a reservation and a release on
 * another model, here and in another process, a verdict, a cooldown, a
 * reset, a reload, the clock going by) the answer (when, why, which key)
 * equals the one a walk of every key gives, and most of them come without
 * a walk.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <sys/wait.h>

#include "engine/file_backend.h"
#include "engine/pool_impl.h"
#include "engine_test.h"

#define NPROJ 16
#define PER_PROJ 4

static char *tmpdir;
static char state[4200], config[4200];

/* NPROJ projects of PER_PROJ keys (plus `extra` keys of a project of their
 * own); model "m" takes one request per minute per project, "other" any. */
static void write_config(int extra) {
  char tmp[4300];
  snprintf(tmp, sizeof tmp, "%s.tmp", config);
  FILE *f = fopen(tmp, "w");
  assert_non_null(f);
  fprintf(f, "{\"providers\":{\"gemini\":{\"keys\":[");
  for (int i = 0; i < NPROJ * PER_PROJ + extra; i++) {
    fprintf(f, "%s{\"id\":\"k%d\",\"project\":\"p%d\",\"api_key\":\"FAKE-EXH-%d\"}", i ? "," : "",
            i, i < NPROJ * PER_PROJ ? i / PER_PROJ : NPROJ, i);
  }
  fprintf(f, "]}},\"models\":{\"m\":{\"rpm\":1,\"tpm\":1000000,\"rpd\":1000},"
             "\"other\":{\"rpm\":1000000,\"tpm\":1000000000,\"rpd\":100000000}}}");
  fclose(f);
  assert_int_equal(rename(tmp, config), 0);
}

static fb *backend(gkp_pool *p) {
  return (fb *)p->be;
}

/* A failing reservation of `est` tokens on "m", answered as it would be,
 * then by a walk of every key: both the same.  Returns whether the first
 * came without a walk. */
static int same_answer_at(gkp_pool *p, int64_t est, int line) {
  gkp_wait w1, w2;
  gkp_lease l;
  gkp_error err;
  uint64_t hits = backend(p)->miss_hits;
  memset(&w1, 0, sizeof w1);
  memset(&w2, 0, sizeof w2);
  int rc = gkp_reserve(p, "m", est, &l, &w1, &err);
  if (rc != -EAGAIN) {
    fail_msg("line %d: a reservation answered %d, not -EAGAIN", line, rc);
  }
  int fast = backend(p)->miss_hits > hits;
  backend(p)->miss_off = 1;
  assert_int_equal(gkp_reserve(p, "m", est, &l, &w2, &err), -EAGAIN);
  backend(p)->miss_off = 0;
  assert_int_equal(w1.reason, w2.reason);
  assert_int_equal(w1.next_ms, w2.next_ms);
  assert_string_equal(w1.next_key_id, w2.next_key_id);
  return fast;
}

#define same_answer(p, est) same_answer_at(p, est, __LINE__)

/* A reservation after a change that may have freed a key: it succeeds
 * exactly when a count of every key finds one, else as same_answer. */
static void reserve_or_same(gkp_pool *p) {
  gkp_lease l;
  gkp_error err;
  if (gkp_count_available(p, "m", &err) > 0) {
    assert_int_equal(gkp_reserve(p, "m", 10, &l, NULL, &err), 0);
    assert_int_equal(gkp_release(p, &l, 1, NULL), 0);
  } else {
    same_answer(p, 10);
  }
}

static gkp_pool *open_pool(void) {
  gkp_pool *p;
  gkp_error err;
  gkp_options o = {.config_path = config, .state_path = state, .clock = test_clock};
  if (gkp_pool_open(&p, &o, &err) != 0) {
    fail_msg("open: %s", err.msg);
  }
  return p;
}

static void other_cycle(gkp_pool *p) {
  gkp_lease l;
  gkp_error err;
  assert_int_equal(gkp_reserve(p, "other", 10, &l, NULL, &err), 0);
  assert_int_equal(gkp_release(p, &l, 1, NULL), 0);
}

/* Another process reserves and releases a key on "other" `n` times. */
static void other_process(int n) {
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    gkp_pool *q = open_pool();
    for (int i = 0; i < n; i++) {
      gkp_lease l;
      if (gkp_reserve(q, "other", 10, &l, NULL, NULL) != 0 || gkp_release(q, &l, 1, NULL) != 0) {
        _exit(1);
      }
    }
    gkp_pool_close(q);
    _exit(0);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_answer_follows_changes(void **unused) {
  (void)unused;
  gkp_pool *p;
  gkp_lease held, l;
  gkp_error err;
  tmpdir = test_tmpdir();
  snprintf(state, sizeof state, "%s/state.db", tmpdir);
  snprintf(config, sizeof config, "%s/keys.json", tmpdir);
  write_config(0);
  t_now = 1795521600000LL;
  p = open_pool();

  /* One request per project, a second apart; the first one still held. */
  for (int i = 0; i < NPROJ; i++) {
    assert_int_equal(gkp_reserve(p, "m", 10, i == 0 ? &held : &l, NULL, &err), 0);
    if (i > 0) {
      assert_int_equal(gkp_release(p, &l, 1, NULL), 0);
    }
    t_now += 1000;
  }
  assert_false(same_answer(p, 10)); /* the first: a walk */
  assert_true(same_answer(p, 10));  /* nothing changed */
  assert_false(same_answer(p, 11)); /* another size: a walk of its own */
  assert_true(same_answer(p, 11));

  /* A reservation and a release on another model, here and elsewhere. */
  other_cycle(p);
  assert_true(same_answer(p, 10));
  other_process(3);
  assert_true(same_answer(p, 10));
  assert_true(same_answer(p, 11));

  /* A verdict on the held lease: its pair cools down. */
  assert_int_equal(gkp_report_error(p, &held, 429, "{}", 2, NULL, &err), 0);
  assert_true(same_answer(p, 10));

  /* An unsent request given back frees its project at once: never the
   * remembered "no key" (its verdict's cooldown reset first). */
  assert_int_equal(gkp_reset(p, held.key_id, &err), 0);
  assert_true(same_answer(p, 10));
  assert_int_equal(gkp_release(p, &held, 0, NULL), 0);
  assert_int_equal(gkp_reserve(p, "m", 10, &held, NULL, &err), 0);
  assert_int_equal(strncmp(held.project, "p0", 3), 0);
  assert_false(same_answer(p, 10));
  assert_true(same_answer(p, 10));

  /* Cooldowns: on a pair, on a whole key (the soonest one's). */
  gkp_wait w;
  assert_int_equal(gkp_reserve(p, "m", 10, &l, &w, &err), -EAGAIN);
  assert_int_equal(gkp_set_cooldown(p, w.next_key_id, "m", t_now + 3600000, GKP_KIND_RPM, &err), 0);
  assert_true(same_answer(p, 10));
  assert_int_equal(gkp_reserve(p, "m", 10, &l, &w, &err), -EAGAIN);
  assert_int_equal(gkp_set_cooldown(p, w.next_key_id, NULL, t_now + 7200000, GKP_KIND_SERVER, &err),
                   0);
  assert_true(same_answer(p, 10));
  assert_int_equal(gkp_disable_key(p, "k63", "test", &err), 0);
  assert_true(same_answer(p, 10));

  /* A reset clears a cooldown: the soonest key may change again. */
  assert_int_equal(gkp_reset(p, w.next_key_id, &err), 0);
  assert_true(same_answer(p, 10));

  /* The clock: up to just before the soonest time the same answer; at it,
   * a key. */
  assert_int_equal(gkp_reserve(p, "m", 10, &l, &w, &err), -EAGAIN);
  t_now = w.next_ms - 1;
  assert_true(same_answer(p, 10));
  other_process(1);
  assert_true(same_answer(p, 10));
  t_now = w.next_ms;
  assert_int_equal(gkp_reserve(p, "m", 10, &l, NULL, &err), 0);
  assert_string_equal(l.key_id, w.next_key_id);
  assert_int_equal(gkp_release(p, &l, 1, NULL), 0);
  assert_false(same_answer(p, 10));
  assert_true(same_answer(p, 10));

  /* Another process frees a project the same way. */
  pid_t pid = fork();
  if (pid == 0) {
    gkp_pool *q = open_pool();
    gkp_lease ql;
    /* Every cooldown cleared, the disabled key enabled. */
    _exit(gkp_reset(q, "all", NULL) == 0 && gkp_reserve(q, "other", 10, &ql, NULL, NULL) == 0 &&
                  gkp_release(q, &ql, 1, NULL) == 0
              ? 0
              : 1);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  reserve_or_same(p);
  reserve_or_same(p);

  /* A reload that adds a project: its key is free. */
  write_config(1);
  assert_int_equal(gkp_pool_reload(p, &err), 0);
  assert_int_equal(gkp_reserve(p, "m", 10, &l, NULL, &err), 0);
  assert_string_equal(l.key_id, "k64");
  assert_int_equal(gkp_release(p, &l, 1, NULL), 0);
  assert_false(same_answer(p, 10));
  assert_true(same_answer(p, 10));

  gkp_pool_close(p);
  test_rmrf(tmpdir);
  free(tmpdir);
}

/* Many changes, each checked: random reservations, releases, verdicts and
 * cooldowns here and in another process, the clock moving by random
 * steps. */
static void test_random_changes(void **unused) {
  (void)unused;
  gkp_pool *p;
  gkp_lease l;
  gkp_error err;
  unsigned seed = 12345;
  int fast = 0;
  tmpdir = test_tmpdir();
  snprintf(state, sizeof state, "%s/state.db", tmpdir);
  snprintf(config, sizeof config, "%s/keys.json", tmpdir);
  write_config(0);
  t_now = 1795521600000LL;
  p = open_pool();
  for (int round = 0; round < 400; round++) {
    int64_t est = 10 + rand_r(&seed) % 2;
    int what = rand_r(&seed) % 8;
    char key[16];
    snprintf(key, sizeof key, "k%d", rand_r(&seed) % (NPROJ * PER_PROJ));
    t_now += rand_r(&seed) % 3000;
    int rc = gkp_reserve(p, "m", est, &l, NULL, &err);
    if (rc == 0) {
      /* Used: sent or not, answered or failed. */
      if (what == 0) {
        assert_int_equal(gkp_report_error(p, &l, 429, "{}", 2, NULL, &err), 0);
      }
      assert_int_equal(gkp_release(p, &l, what != 1, NULL), 0);
      continue;
    }
    assert_int_equal(rc, -EAGAIN);
    fast += same_answer(p, est);
    if (what == 2) {
      other_cycle(p);
    } else if (what == 3) {
      other_process(1 + rand_r(&seed) % 3);
    } else if (what == 4) {
      gkp_set_cooldown(p, key, rand_r(&seed) % 2 ? "m" : NULL, t_now + rand_r(&seed) % 90000,
                       GKP_KIND_SERVER, &err);
    } else if (what == 5) {
      gkp_reset(p, key, &err);
    }
  }
  printf("%d of the failing reservations answered without a walk\n", fast);
  assert_true(fast > 50);
  gkp_pool_close(p);
  test_rmrf(tmpdir);
  free(tmpdir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_answer_follows_changes),
      cmocka_unit_test(test_random_changes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
