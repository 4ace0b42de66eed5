/*
 * helpers.c - what the config tests share: a fresh temporary directory per
 * test, files written with a given mode, captured log lines, and checks that
 * an error message is one line naming the file and never holds a secret.
 */
#include "helpers.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const secrets[] = {SECRET_ENV1, SECRET_ENV2, SECRET_DOT, SECRET_LIT, "SECRET"};

static const char *const test_vars[] = {
    "GKP_TEST_KEY_1",         "GKP_TEST_KEY_2",       "GKP_TEST_KEY_3",
    "GKP_TEST_EMPTY",         "GEMINI_POOL_CONFIG",   "XDG_CONFIG_HOME",
    "GOOGLE_GEMINI_BASE_URL", "GEMINI_KEY_PROJECT_1", "GEMINI_KEY_PROJECT_2",
    "GEMINI_KEY_PROJECT_3A",  "GEMINI_KEY_PROJECT_3B"};

char g_dir[256];
char g_keys[512];
char g_dotenv[512];
static char g_cwd[4096];
static char *g_home;

struct test_log g_logs[TEST_MAX_LOGS];
int g_nlogs;

/* ---- Helpers ------------------------------------------------------------- */

void assert_no_secret(const char *text) {
  for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++) {
    if (strstr(text, secrets[i]) != NULL) {
      fail_msg("a secret appears in: %s", text);
    }
  }
}

void assert_contains(const char *text, const char *part) {
  if (strstr(text, part) == NULL) {
    fail_msg("\"%s\" does not contain \"%s\"", text, part);
  }
}

void capture_log(void *ud, int level, const char *line) {
  (void)ud;
  assert_no_secret(line);
  assert_null(strchr(line, '\n'));
  if (g_nlogs < TEST_MAX_LOGS) {
    g_logs[g_nlogs].level = level;
    snprintf(g_logs[g_nlogs].line, sizeof g_logs[g_nlogs].line, "%s", line);
    g_nlogs++;
  }
}

void write_file(const char *path, const char *text, mode_t mode) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  assert_int_equal(fchmod(fd, mode), 0);
  close(fd);
}

/* Writes JSON given with single quotes as keys.json (mode 0600). */
void write_json_mode(const char *path, const char *json, mode_t mode) {
  char *text = strdup(json);
  assert_non_null(text);
  for (char *p = text; *p; p++) {
    if (*p == '\'') {
      *p = '"';
    }
  }
  write_file(path, text, mode);
  free(text);
}

int load_json_mode(const char *json, mode_t mode, gkp__config **cfg, gkp_error *err) {
  write_json_mode(g_keys, json, mode);
  *cfg = (gkp__config *)&g_nlogs; /* must be reset to NULL on failure */
  memset(err, 0x55, sizeof *err);
  return gkp__config_load(g_keys, capture_log, NULL, cfg, err);
}

/* Loads JSON that must be valid. */
gkp__config *load_ok(const char *json) {
  gkp__config *cfg;
  gkp_error err;
  int rc = load_json_mode(json, 0600, &cfg, &err);
  if (rc != 0) {
    fail_msg("load failed (%d): %s", rc, err.msg);
  }
  assert_int_equal(err.code, 0);
  assert_non_null(cfg);
  return cfg;
}

/* Checks a failed load's message: one line, "FILE: ...", every part, no
 * secret. */
void check_error(int rc, const gkp_error *err, const char *file, const char *const *parts) {
  assert_true(rc < 0);
  assert_int_equal(err->code, rc);
  assert_null(strchr(err->msg, '\n'));
  assert_true(strlen(err->msg) < GKP_MSG_MAX);
  if (strncmp(err->msg, file, strlen(file)) != 0 || strncmp(err->msg + strlen(file), ": ", 2)) {
    fail_msg("\"%s\" does not start with \"%s: \"", err->msg, file);
  }
  for (size_t i = 0; parts[i] != NULL; i++) {
    assert_contains(err->msg, parts[i]);
  }
  assert_no_secret(err->msg);
}

void expect_error_(const char *json, const char *const *parts) {
  gkp__config *cfg;
  gkp_error err;
  int rc = load_json_mode(json, 0600, &cfg, &err);
  assert_null(cfg);
  check_error(rc, &err, g_keys, parts);
  assert_int_equal(rc, -EINVAL);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

int setup(void **state) {
  (void)state;
  assert_non_null(getcwd(g_cwd, sizeof g_cwd));
  snprintf(g_dir, sizeof g_dir, "/tmp/gkp-config-XXXXXX");
  assert_non_null(mkdtemp(g_dir));
  snprintf(g_keys, sizeof g_keys, "%s/keys.json", g_dir);
  snprintf(g_dotenv, sizeof g_dotenv, "%s/.env", g_dir);
  for (size_t i = 0; i < sizeof test_vars / sizeof test_vars[0]; i++) {
    unsetenv(test_vars[i]);
  }
  setenv("GKP_TEST_KEY_1", SECRET_ENV1, 1);
  setenv("GKP_TEST_KEY_2", SECRET_ENV2, 1);
  const char *home = getenv("HOME");
  g_home = home != NULL ? strdup(home) : NULL;
  g_nlogs = 0;
  return 0;
}

int teardown(void **state) {
  (void)state;
  assert_int_equal(chdir(g_cwd), 0);
  nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  for (size_t i = 0; i < sizeof test_vars / sizeof test_vars[0]; i++) {
    unsetenv(test_vars[i]);
  }
  if (g_home != NULL) {
    setenv("HOME", g_home, 1);
  } else {
    unsetenv("HOME");
  }
  free(g_home);
  g_home = NULL;
  return 0;
}

int count_logs(int level, const char *part) {
  int n = 0;
  for (int i = 0; i < g_nlogs; i++) {
    n += g_logs[i].level == level && strstr(g_logs[i].line, part) != NULL;
  }
  return n;
}
