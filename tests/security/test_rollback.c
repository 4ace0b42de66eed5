/*
 * test_rollback.c - a process killed (kill -9) in the middle of a change that
 * left a record out of range: the next open rolls the change back before it
 * validates the file, so it loads without a warning and nothing is lost.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/store.h"
#include "gkp.h"

static int warnings;

static void count_warnings(void *ud, int level, const char *line) {
  (void)ud;
  if (level >= GKP_LOG_WARN) {
    fprintf(stderr, "warning: %s\n", line);
    warnings++;
  }
}

#define CHECK(cond, what)                                                                          \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "FAIL %s\n", what);                                                          \
      exit(1);                                                                                     \
    }                                                                                              \
    printf("ok   %s\n", what);                                                                     \
  } while (0)

static const char CONFIG[] =
    "{\"providers\":{\"gemini\":{\"keys\":[{\"id\":\"k1\",\"api_key\":\"FAKE-ROLLBACK-KEY-1\"}]}}}";

static gkp_pool *open_pool(const char *state) {
  gkp_options o = {.state_path = state, .log = count_warnings};
  gkp_pool *pool = NULL;
  gkp_error err;
  if (gkp_pool_open_text(&pool, CONFIG, strlen(CONFIG), "test.json", NULL, &o, &err) != 0) {
    fprintf(stderr, "FAIL open: %s\n", err.msg);
    exit(1);
  }
  return pool;
}

/* In a child: starts a change of the model record, writes values no answer may
 * store (as a torn or hostile write would), and dies by SIGKILL before the
 * commit. */
static void die_mid_change(const char *state) {
  pid_t pid = fork();
  if (pid == 0) {
    gkp__store *st;
    gkp_error err;
    if (gkp__store_open(state, 0, NULL, NULL, &st, &err) != 0 || gkp__store_lock(st, &err) < 0) {
      _exit(2);
    }
    gkp__store_save_recs(st, -1, 0);
    st->pms[0].c.win.b[0].tokens = INT64_C(1) << 60;
    st->pms[0].c.day_count = -5;
    st->pms[0].c.learned[0] = INT64_C(1) << 60;
    raise(SIGKILL);
    _exit(3);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
        "a process is killed in the middle of a change");
}

int main(void) {
  char dir[] = "/tmp/gkp-rollback-XXXXXX", state[4200];
  gkp_lease lease;
  gkp_usage usage = {.prompt_tokens = 1234, .candidates_tokens = 5, .thoughts_tokens = -1};
  CHECK(mkdtemp(dir) != NULL, "a private directory");
  snprintf(state, sizeof state, "%s/state.db", dir);

  gkp_pool *pool = open_pool(state);
  CHECK(gkp_reserve(pool, "gemini-2.5-flash", 100, &lease, NULL, NULL) == 0, "a key is reserved");
  CHECK(gkp_record_usage(pool, &lease, &usage, NULL) == 0, "its usage is recorded");
  gkp_release(pool, &lease, 1, NULL);
  gkp_pool_close(pool);

  die_mid_change(state);

  warnings = 0;
  pool = open_pool(state);
  CHECK(warnings == 0, "the next open loads the state file without a warning");
  gkp_limits lim;
  CHECK(gkp_effective_limits(pool, "k1", "gemini-2.5-flash", &lim, NULL) == 0 && lim.rpm < 1000000,
        "the half-written learned limit is gone");
  CHECK(gkp_count_available(pool, "gemini-2.5-flash", NULL) >= 0, "the pool works");
  gkp_pool_close(pool);

  char cmd[4300];
  snprintf(cmd, sizeof cmd, "ls %s | grep -q corrupt", dir);
  CHECK(system(cmd) != 0, "nothing was moved aside");
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  (void)system(cmd);
  return 0;
}
