/*
 * test_multiproc.c - reservations across processes sharing one state file,
 * leases of dead processes, and kill -9 at random moments.
 *
 * Exclusivity is checked with evidence kept outside the engine: a holder
 * count per key in shared memory, and an append-only log of acquisitions and
 * releases whose order must alternate per key.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>

#include "engine_test.h"

#define PROCS 8
#define CYCLES 2000
#define NKEYS 4

static char *tmpdir;
static char state_file[4200];
static char log_file[4200];

static const char *CONFIG =
    "{\"providers\":{\"gemini\":{\"keys\":["
    "{\"id\":\"k1\",\"api_key\":\"FAKE-MP-1\"},{\"id\":\"k2\",\"api_key\":\"FAKE-MP-2\"},"
    "{\"id\":\"k3\",\"api_key\":\"FAKE-MP-3\"},{\"id\":\"k4\",\"api_key\":\"FAKE-MP-4\"}]}},"
    "\"models\":{\"free-model\":{}}}";

static const char *CONFIG1 = "{\"providers\":{\"gemini\":{\"keys\":["
                             "{\"id\":\"k1\",\"api_key\":\"FAKE-MP-1\"}]}},"
                             "\"models\":{\"free-model\":{}}}";

struct shared {
  atomic_int holders[NKEYS];
  atomic_int overlaps;
  atomic_llong acked; /* crash test: the last cooldown a child saw committed */
};

static struct shared *shm;

static int setup(void **st) {
  (void)st;
  tmpdir = test_tmpdir();
  snprintf(state_file, sizeof state_file, "%s/state.db", tmpdir);
  snprintf(log_file, sizeof log_file, "%s/holders.log", tmpdir);
  if (test_redis_url() != NULL) {
    snprintf(state_file, sizeof state_file, "%s", test_redis_url());
    test_redis_flush();
  }
  shm = mmap(NULL, sizeof *shm, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  assert_true(shm != MAP_FAILED);
  memset(shm, 0, sizeof *shm);
  return 0;
}

static int teardown(void **st) {
  (void)st;
  munmap(shm, sizeof *shm);
  test_rmrf(tmpdir);
  free(tmpdir);
  return 0;
}

static gkp_pool *open_pool(const char *config, gkp_log_fn log, void *ud) {
  gkp_pool *pool = NULL;
  gkp_options o = {.state_path = state_file, .log = log, .log_ud = ud};
  gkp_error err;
  if (gkp_pool_open_text(&pool, config, strlen(config), "mp.json", NULL, &o, &err) != 0) {
    fprintf(stderr, "open: %s\n", err.msg);
    return NULL;
  }
  return pool;
}

static void log_line(int fd, char what, const char *key) {
  char line[64];
  int n = snprintf(line, sizeof line, "%c %s %d\n", what, key, (int)getpid());
  if (write(fd, line, (size_t)n) != n) {
    _exit(3);
  }
}

static void child_cycles(void) {
  gkp_pool *pool = open_pool(CONFIG, NULL, NULL);
  int fd = open(log_file, O_WRONLY | O_APPEND | O_CREAT, 0600);
  if (pool == NULL || fd < 0) {
    _exit(2);
  }
  for (int i = 0; i < CYCLES; i++) {
    gkp_lease l;
    gkp_usage u = {.prompt_tokens = 2, .candidates_tokens = 1, .thoughts_tokens = -1};
    int rc = gkp_reserve(pool, "free-model", 2, &l, NULL, NULL);
    if (rc == -EAGAIN) {
      sched_yield();
      i--;
      continue;
    }
    if (rc != 0) {
      _exit(4);
    }
    int k = l.key_id[1] - '1';
    if (atomic_fetch_add(&shm->holders[k], 1) != 0) {
      atomic_fetch_add(&shm->overlaps, 1);
    }
    log_line(fd, 'A', l.key_id);
    gkp_record_usage(pool, &l, &u, NULL);
    log_line(fd, 'R', l.key_id);
    atomic_fetch_sub(&shm->holders[k], 1);
    if (gkp_release(pool, &l, 1, NULL) != 0) {
      _exit(5);
    }
  }
  close(fd);
  gkp_pool_close(pool);
  _exit(0);
}

static long sum_field(const char *doc, const char *field) {
  long total = 0;
  size_t n = strlen(field);
  for (const char *p = doc; (p = strstr(p, field)) != NULL; p += n) {
    total += atol(p + n);
  }
  return total;
}

static void test_eight_processes_never_share_a_key(void **st) {
  (void)st;
  pid_t pids[PROCS];
  /* Create the state file first so the children race only on records. */
  gkp_pool *pool = open_pool(CONFIG, NULL, NULL);
  assert_non_null(pool);
  for (int i = 0; i < PROCS; i++) {
    pids[i] = fork();
    assert_true(pids[i] >= 0);
    if (pids[i] == 0) {
      child_cycles();
    }
  }
  for (int i = 0; i < PROCS; i++) {
    int status;
    assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
  }
  assert_int_equal(atomic_load(&shm->overlaps), 0);

  /* The log alternates A/R per key, by the same process. */
  size_t len = 0;
  char *log = test_slurp(log_file, &len);
  assert_non_null(log);
  int holder[NKEYS] = {0}, acquisitions = 0;
  for (char *line = strtok(log, "\n"); line != NULL; line = strtok(NULL, "\n")) {
    char what, key[16];
    int pid;
    assert_int_equal(sscanf(line, "%c %15s %d", &what, key, &pid), 3);
    int k = key[1] - '1';
    if (what == 'A') {
      assert_int_equal(holder[k], 0);
      holder[k] = pid;
      acquisitions++;
    } else {
      assert_int_equal(holder[k], pid);
      holder[k] = 0;
    }
  }
  free(log);
  assert_int_equal(acquisitions, PROCS * CYCLES);

  /* No lost counts, no leftover leases. */
  char *doc;
  assert_int_equal(gkp_status_json(pool, &doc, NULL), 0);
  assert_int_equal(sum_field(doc, "\"requests_total\":\t"), 2L * PROCS * CYCLES);
  assert_int_equal(sum_field(doc, "\"inflight\":\t"), 0);
  free(doc);
  gkp_pool_close(pool);
}

static void test_dead_holder_lease_reclaimed(void **st) {
  (void)st;
  setenv("GEMINI_POOL_LEASE_TTL_MS", "2000", 1);
  gkp_pool *pool = open_pool(CONFIG1, NULL, NULL);
  gkp_lease l;
  gkp_wait w;
  assert_non_null(pool);
  pid_t pid = fork();
  if (pid == 0) {
    gkp_pool *p = open_pool(CONFIG1, NULL, NULL);
    gkp_lease mine;
    if (p == NULL || gkp_reserve(p, "free-model", 1, &mine, NULL, NULL) != 0) {
      _exit(2);
    }
    atomic_store(&shm->acked, 1);
    pause(); /* hold it until killed */
    _exit(0);
  }
  while (atomic_load(&shm->acked) == 0) {
    usleep(1000);
  }
  /* Held by a live process: busy. */
  assert_int_equal(gkp_reserve(pool, "free-model", 1, &l, &w, NULL), -EAGAIN);
  assert_int_equal(w.reason, GKP_WAIT_BUSY);
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  if (test_redis_url() != NULL) {
    /* Another machine cannot see the holder die: its lease expires on the
     * server (GEMINI_POOL_LEASE_TTL_MS, 2 s here) unless renewed. */
    assert_int_equal(gkp_reserve(pool, "free-model", 1, &l, &w, NULL), -EAGAIN);
    assert_int_equal(w.reason, GKP_WAIT_BUSY);
    usleep(2500 * 1000);
  }
  /* Its owner is dead: the lease is reclaimed at once. */
  assert_int_equal(gkp_reserve(pool, "free-model", 1, &l, NULL, NULL), 0);
  gkp_release(pool, &l, 1, NULL);
  gkp_pool_close(pool);
}

/* ---- kill -9 at random moments ------------------------------------------ */

#define BASE_MS 4102444800000LL /* 2100-01-01: cooldowns far in the future */

static int warnings;
static void count_warning(void *ud, int level, const char *line) {
  (void)ud;
  if (level >= GKP_LOG_WARN) {
    warnings++;
    fprintf(stderr, "warning: %s\n", line);
  }
}

static void child_writer(void) {
  gkp_pool *pool = open_pool(CONFIG1, NULL, NULL);
  long long v = atomic_load(&shm->acked);
  if (pool == NULL) {
    _exit(2);
  }
  for (;;) {
    gkp_lease l;
    v++;
    if (gkp_set_cooldown(pool, "k1", "other-model", BASE_MS + v * 1000, GKP_KIND_RPM, NULL) != 0) {
      _exit(3);
    }
    atomic_store(&shm->acked, v);
    if (gkp_reserve(pool, "free-model", 5, &l, NULL, NULL) == 0) {
      gkp_release(pool, &l, (int)(v & 1), NULL);
    }
  }
}

/* The cooldown of (k1, other-model) in whole seconds, from the status. */
static long long read_cooldown(gkp_pool *pool) {
  char *doc;
  long long s = -1;
  if (gkp_status_json(pool, &doc, NULL) != 0) {
    return -1;
  }
  const char *m = strstr(doc, "\"other-model\":");
  const char *c = m != NULL ? strstr(m, "\"cooldown_until\":\t") : NULL;
  if (c != NULL) {
    s = atoll(c + strlen("\"cooldown_until\":\t"));
  }
  free(doc);
  return s;
}

static void test_kill_9_at_random_moments(void **st) {
  (void)st;
  const char *config = "{\"providers\":{\"gemini\":{\"keys\":["
                       "{\"id\":\"k1\",\"api_key\":\"FAKE-MP-1\"}]}},"
                       "\"models\":{\"free-model\":{},\"other-model\":{}}}";
  long long last_seen = 0;
  CONFIG1 = config;
  srand((unsigned)time(NULL));
  for (int round = 0; round < 60; round++) {
    pid_t pid = fork();
    if (pid == 0) {
      child_writer();
    }
    usleep((useconds_t)(rand() % 20000));
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    warnings = 0;
    gkp_pool *pool = open_pool(config, count_warning, NULL);
    assert_non_null(pool);
    assert_int_equal(warnings, 0); /* never found damaged */
    long long acked = atomic_load(&shm->acked);
    long long s = read_cooldown(pool);
    gkp_pool_close(pool);
    if (acked > 0) {
      /* Every acknowledged cooldown is there; none went backwards. */
      assert_true(s >= (BASE_MS + acked * 1000) / 1000);
      assert_true(s >= last_seen);
      last_seen = s;
    }
  }
  assert_true(atomic_load(&shm->acked) > 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_eight_processes_never_share_a_key, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dead_holder_lease_reclaimed, setup, teardown),
      cmocka_unit_test_setup_teardown(test_kill_9_at_random_moments, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
