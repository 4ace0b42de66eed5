/*
 * test_state.c - the state file across versions, damage and fork():
 * a format 1 file (tests/fixtures/state-v1.db.gz, written by the format 1
 * engine: 3 keys, 7 requests on model "m", k3 disabled, k2 cooling) is
 * upgraded with its counts kept; a newer format is refused and left alone;
 * a damaged file is moved aside and every process using it moves on to the
 * same new file; a pool used after fork() refuses in the child and the
 * child's close leaves the parent's leases alone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <cmocka.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "engine/store.h"
#include "engine_test.h"

#define V1_NOW 1795521607000LL /* when the fixture was written */

static const char *CONFIG3 = "{\"providers\":{\"gemini\":{\"keys\":["
                             "{\"id\":\"k1\",\"api_key\":\"FAKE-V1-1\"},"
                             "{\"id\":\"k2\",\"api_key\":\"FAKE-V1-2\"},"
                             "{\"id\":\"k3\",\"api_key\":\"FAKE-V1-3\"}]}},"
                             "\"models\":{\"m\":{\"rpm\":100,\"tpm\":1000000,\"rpd\":1000}}}";

static const char *CONFIG1 = "{\"providers\":{\"gemini\":{\"keys\":["
                             "{\"id\":\"solo\",\"api_key\":\"FAKE-ST-1\"}]}},"
                             "\"models\":{\"m\":{}}}";

static char *tmpdir;
static char state[4200];
static char logged[4096];

static void keep_log(void *ud, int level, const char *line) {
  (void)ud;
  (void)level;
  snprintf(logged + strlen(logged), sizeof logged - strlen(logged), "%s\n", line);
}

static int setup(void **st) {
  (void)st;
  tmpdir = test_tmpdir();
  snprintf(state, sizeof state, "%s/state.db", tmpdir);
  logged[0] = '\0';
  t_now = V1_NOW;
  return 0;
}

static int teardown(void **st) {
  (void)st;
  test_rmrf(tmpdir);
  free(tmpdir);
  return 0;
}

static int open_cfg(const char *cfg, gkp_pool **p, gkp_error *err) {
  gkp_options o = {.state_path = state, .clock = test_clock, .log = keep_log};
  return gkp_pool_open_text(p, cfg, strlen(cfg), "test.json", NULL, &o, err);
}

static gkp_pool *open_ok(const char *cfg) {
  gkp_pool *p;
  gkp_error err;
  if (open_cfg(cfg, &p, &err) != 0) {
    fail_msg("open: %s", err.msg);
  }
  return p;
}

static uint32_t file_version(void) {
  uint32_t v = 0;
  int fd = open(state, O_RDONLY);
  assert_true(fd >= 0);
  assert_int_equal(pread(fd, &v, sizeof v, 8), sizeof v);
  close(fd);
  return v;
}

static const cJSON *key_of(const cJSON *doc, const char *id) {
  const cJSON *k;
  cJSON_ArrayForEach(k, cJSON_GetObjectItem(doc, "keys")) {
    if (strcmp(cJSON_GetObjectItem(k, "id")->valuestring, id) == 0) {
      return k;
    }
  }
  fail_msg("no key %s in the status", id);
  return NULL;
}

static double model_num(const cJSON *k, const char *field) {
  return cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(k, "models"), "m"), field)
      ->valuedouble;
}

static void test_format1_upgraded_with_counts_kept(void **st) {
  (void)st;
  char cmd[8600];
  snprintf(cmd, sizeof cmd, "gzip -dc '%s/state-v1.db.gz' > '%s'", getenv("GKP_FIXTURES"), state);
  assert_int_equal(system(cmd), 0);
  assert_int_equal(file_version(), 1);

  gkp_pool *p = open_ok(CONFIG3);
  assert_int_equal(file_version(), 3);
  assert_non_null(strstr(logged, "upgraded the state file to format 3"));
  char *json;
  assert_int_equal(gkp_status_json(p, &json, NULL), 0);
  cJSON *doc = cJSON_Parse(json);
  const cJSON *k1 = key_of(doc, "k1"), *k2 = key_of(doc, "k2"), *k3 = key_of(doc, "k3");
  assert_int_equal(cJSON_GetObjectItem(k1, "requests_total")->valueint, 3);
  assert_int_equal(cJSON_GetObjectItem(k2, "requests_total")->valueint, 2);
  assert_int_equal((int)model_num(k1, "requests_today"), 3);
  assert_int_equal((int)model_num(k1, "input_tokens_total"), 360);
  assert_int_equal((int)model_num(k1, "requests_last_minute"), 3);
  assert_int_equal((int)model_num(k3, "input_tokens_total"), 240);
  assert_string_equal(cJSON_GetObjectItem(k2, "state")->valuestring, "cooling");
  assert_string_equal(cJSON_GetObjectItem(k3, "state")->valuestring, "disabled");
  assert_string_equal(cJSON_GetObjectItem(k3, "disabled_reason")->valuestring,
                      "disabled in format 1");
  cJSON_Delete(doc);
  free(json);
  /* The least recently used key (k1 was used first of the last three) goes next. */
  gkp_lease l;
  gkp_error err;
  assert_int_equal(gkp_reserve(p, "m", 10, &l, NULL, &err), 0);
  assert_string_equal(l.key_id, "k1");
  gkp_release(p, &l, 1, NULL);
  gkp_pool_close(p);
  /* Nothing was moved aside. */
  snprintf(cmd, sizeof cmd, "ls '%s' | grep -q corrupt", tmpdir);
  assert_int_not_equal(system(cmd), 0);
}

static void test_newer_format_refused_and_left_alone(void **st) {
  (void)st;
  char hdr[4096] = "GKPSTATE";
  uint32_t v = 4;
  memcpy(hdr + 8, &v, sizeof v);
  int fd = open(state, O_RDWR | O_CREAT, 0600);
  assert_int_equal(write(fd, hdr, sizeof hdr), sizeof hdr);
  close(fd);
  gkp_pool *p;
  gkp_error err;
  assert_int_equal(open_cfg(CONFIG1, &p, &err), -EPROTO);
  assert_null(p);
  assert_non_null(strstr(err.msg, "state written by a newer gemini-pool (format 4); upgrade or "
                                  "use another --state"));
  assert_int_equal(file_version(), 4);
  char cmd[4300];
  snprintf(cmd, sizeof cmd, "ls '%s' | grep -q corrupt", tmpdir);
  assert_int_not_equal(system(cmd), 0);
}

/* Reads one byte from fd (waits for the other process). */
static void wait_for(int fd) {
  char c;
  assert_int_equal(read(fd, &c, 1), 1);
}

static void test_damaged_file_moved_and_everyone_follows(void **st) {
  (void)st;
  int to_child[2], to_parent[2];
  assert_int_equal(pipe(to_child), 0);
  assert_int_equal(pipe(to_parent), 0);
  gkp_pool *p = open_ok(CONFIG1);
  gkp_pool_close(p);
  struct stat before;
  assert_int_equal(stat(state, &before), 0);

  pid_t pid = fork();
  if (pid == 0) {
    /* The process that had the file open before it was damaged. */
    alarm(60); /* never outlives a failed parent */
    gkp_pool *c = open_ok(CONFIG1);
    gkp_lease l;
    int ok;
    assert_int_equal(write(to_parent[1], "r", 1), 1);
    wait_for(to_child[0]); /* the file was damaged and moved aside */
    ok = gkp_reserve(c, "m", 10, &l, NULL, NULL) == 0;
    assert_int_equal(write(to_parent[1], ok ? "l" : "x", 1), 1);
    wait_for(to_child[0]);
    gkp_release(c, &l, 1, NULL);
    gkp_pool_close(c);
    assert_int_equal(write(to_parent[1], "d", 1), 1);
    _exit(0);
  }
  wait_for(to_parent[0]);
  /* Damage a key record: its "used" flag becomes 7. */
  int fd = open(state, O_RDWR);
  uint64_t key_off;
  uint32_t bad = 7;
  assert_int_equal(pread(fd, &key_off, 8, (off_t)offsetof(gkp__store_hdr, lay.key_off)), 8);
  assert_int_equal(pwrite(fd, &bad, 4, (off_t)(key_off + offsetof(gkp__key_rec, used))), 4);
  close(fd);

  gkp_pool *q = open_ok(CONFIG1);
  assert_non_null(strstr(logged, "was damaged (a key record is damaged); moved it to"));
  struct stat after;
  assert_int_equal(stat(state, &after), 0);
  assert_true(after.st_ino != before.st_ino);
  assert_int_equal(write(to_child[1], "g", 1), 1);
  char c;
  assert_int_equal(read(to_parent[0], &c, 1), 1);
  assert_int_equal(c, 'l'); /* the other process took the key: in the new file */
  gkp_lease l;
  gkp_wait w;
  assert_int_equal(gkp_reserve(q, "m", 10, &l, &w, NULL), -EAGAIN);
  assert_int_equal(w.reason, GKP_WAIT_BUSY);
  assert_int_equal(write(to_child[1], "g", 1), 1);
  wait_for(to_parent[0]);
  assert_int_equal(gkp_reserve(q, "m", 10, &l, NULL, NULL), 0);
  gkp_release(q, &l, 1, NULL);
  gkp_pool_close(q);
  int status;
  waitpid(pid, &status, 0);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_fork_child_refused_parent_untouched(void **st) {
  (void)st;
  gkp_pool *p = open_ok(CONFIG1);
  gkp_lease l;
  gkp_error err;
  assert_int_equal(gkp_reserve(p, "m", 10, &l, NULL, &err), 0);
  pid_t pid = fork();
  if (pid == 0) {
    gkp_lease l2;
    gkp_error e2;
    int rc = gkp_reserve(p, "m", 10, &l2, NULL, &e2);
    int ok = rc == -ECHILD && strstr(e2.msg, "must open its own pool") != NULL;
    ok &= gkp_release(p, &l, 1, NULL) == -ECHILD;
    gkp_pool_close(p); /* frees memory only: the parent's lease stays */
    /* A pool of its own works (and sees the parent's lease). */
    gkp_pool *own = open_ok(CONFIG1);
    gkp_wait w;
    ok &= gkp_reserve(own, "m", 10, &l2, &w, NULL) == -EAGAIN && w.reason == GKP_WAIT_BUSY;
    gkp_pool_close(own);
    _exit(ok ? 0 : 1);
  }
  int status;
  waitpid(pid, &status, 0);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  /* The parent still holds its lease, and its pool still works. */
  gkp_pool *other = open_ok(CONFIG1);
  gkp_lease l3;
  assert_int_equal(gkp_reserve(other, "m", 10, &l3, NULL, NULL), -EAGAIN);
  assert_int_equal(gkp_release(p, &l, 1, &err), 0);
  assert_int_equal(gkp_reserve(other, "m", 10, &l3, NULL, NULL), 0);
  gkp_release(other, &l3, 1, NULL);
  gkp_pool_close(other);
  gkp_pool_close(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_format1_upgraded_with_counts_kept, setup, teardown),
      cmocka_unit_test_setup_teardown(test_newer_format_refused_and_left_alone, setup, teardown),
      cmocka_unit_test_setup_teardown(test_damaged_file_moved_and_everyone_follows, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_fork_child_refused_parent_untouched, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
