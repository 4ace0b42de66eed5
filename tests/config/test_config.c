/*
 * test_config.c - keys.json, .env, lookup order, models and profiles.
 *
 * Every test runs in a fresh temporary directory with the test variables
 * unset.  JSON is written with single quotes (turned into double quotes by
 * write_json) to keep it readable.  Every error message and every log line is
 * checked for the secrets in use.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/config.h"
#include "config/internal.h"

#define SECRET_ENV1 "AIzaSyENVSECRET1x0123456789abcdefghijk"
#define SECRET_ENV2 "AIzaSyENVSECRET2x0123456789abcdefghijk"
#define SECRET_DOT "AIzaSyDOTSECRETxx0123456789abcdefghijk"
#define SECRET_LIT "AIzaSyLITSECRETxx0123456789abcdefghijk"

/* One key read from GKP_TEST_KEY_1: the smallest valid pool. */
#define POOL "'providers': {'gemini': {'keys': [{'id': 'k1', 'api_key': 'env:GKP_TEST_KEY_1'}]}}"

static const char *const secrets[] = {SECRET_ENV1, SECRET_ENV2, SECRET_DOT, SECRET_LIT, "SECRET"};

static const char *const test_vars[] = {
    "GKP_TEST_KEY_1",       "GKP_TEST_KEY_2",  "GKP_TEST_KEY_3",
    "GKP_TEST_EMPTY",       "GEMINI_POOL_CONFIG", "XDG_CONFIG_HOME",
    "GOOGLE_GEMINI_BASE_URL"};

static char g_dir[256];
static char g_keys[512];
static char g_dotenv[512];
static char g_cwd[4096];
static char *g_home;

static struct {
  int level;
  char line[1024];
} g_logs[32];
static int g_nlogs;

/* ---- Helpers ------------------------------------------------------------- */

static void assert_no_secret(const char *text) {
  for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++) {
    if (strstr(text, secrets[i]) != NULL) {
      fail_msg("a secret appears in: %s", text);
    }
  }
}

static void assert_contains(const char *text, const char *part) {
  if (strstr(text, part) == NULL) {
    fail_msg("\"%s\" does not contain \"%s\"", text, part);
  }
}

static void capture_log(void *ud, int level, const char *line) {
  (void)ud;
  assert_no_secret(line);
  assert_null(strchr(line, '\n'));
  if (g_nlogs < 32) {
    g_logs[g_nlogs].level = level;
    snprintf(g_logs[g_nlogs].line, sizeof g_logs[g_nlogs].line, "%s", line);
    g_nlogs++;
  }
}

static void write_file(const char *path, const char *text, mode_t mode) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  assert_int_equal(fchmod(fd, mode), 0);
  close(fd);
}

/* Writes JSON given with single quotes as keys.json (mode 0600). */
static void write_json_mode(const char *path, const char *json, mode_t mode) {
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

static int load_json_mode(const char *json, mode_t mode, gkp__config **cfg, gkp_error *err) {
  write_json_mode(g_keys, json, mode);
  *cfg = (gkp__config *)&g_nlogs; /* must be reset to NULL on failure */
  memset(err, 0x55, sizeof *err);
  return gkp__config_load(g_keys, capture_log, NULL, cfg, err);
}

/* Loads JSON that must be valid. */
static gkp__config *load_ok(const char *json) {
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
static void check_error(int rc, const gkp_error *err, const char *file, const char *const *parts) {
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

static void expect_error_(const char *json, const char *const *parts) {
  gkp__config *cfg;
  gkp_error err;
  int rc = load_json_mode(json, 0600, &cfg, &err);
  assert_null(cfg);
  check_error(rc, &err, g_keys, parts);
  assert_int_equal(rc, -EINVAL);
}

#define EXPECT_ERROR(json, ...) expect_error_(json, (const char *const[]){__VA_ARGS__, NULL})

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static int setup(void **state) {
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

static int teardown(void **state) {
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

static int count_logs(int level, const char *part) {
  int n = 0;
  for (int i = 0; i < g_nlogs; i++) {
    n += g_logs[i].level == level && strstr(g_logs[i].line, part) != NULL;
  }
  return n;
}

/* ---- Accepted forms ----------------------------------------------------- */

static void test_minimal_pool(void **state) {
  (void)state;
  gkp__config *cfg = load_ok("{" POOL "}");
  assert_string_equal(cfg->path, g_keys);
  assert_string_equal(cfg->dir, g_dir);
  assert_string_equal(cfg->base_url, "https://generativelanguage.googleapis.com");
  assert_int_equal(cfg->max_inflight, 1);
  assert_int_equal(cfg->nkeys, 1);
  const gkp__key_cfg *k = gkp__config_key(cfg, "k1");
  assert_ptr_equal(k, &cfg->keys[0]);
  assert_string_equal(k->secret, SECRET_ENV1);
  assert_string_equal(k->source, "env:GKP_TEST_KEY_1");
  assert_string_equal(k->project, "k1");
  assert_int_equal(k->max_inflight, 1);
  assert_null(gkp__config_key(cfg, "nope"));
  assert_null(gkp__config_key(cfg, NULL));
  assert_int_equal(g_nlogs, 0);
  gkp__config_free(cfg);
  gkp__config_free(NULL);
}

static void test_full_example(void **state) {
  (void)state;
  gkp__config *cfg = load_ok(
      "{ 'providers': { 'gemini': { 'keys': [\n"
      "    { 'id': 'primary-key',   'api_key': 'env:GKP_TEST_KEY_1' },\n"
      "    { 'id': 'secondary-key', 'api_key': 'env:GKP_TEST_KEY_2', 'project': 'proj-2',"
      " 'max_inflight': 2, 'comment': 'ignored' },\n"
      "    { 'id': 'me@example.com_3', 'api_key': 'env:GKP_TEST_KEY_1', 'project': null,"
      " 'max_inflight': null } ] } },\n"
      "  'base_url': 'https://generativelanguage.googleapis.com',\n"
      "  'max_inflight': 3,\n"
      "  'future_field': {'anything': [1, 2]},\n"
      "  'models': { 'gemini-3-flash-preview': { 'rpm': 5, 'tpm': 250000, 'rpd': 20 },"
      " 'my-new-model': {'fallback': 'gemini-2.5-flash'} },\n"
      "  'fallback': { 'gemini-3-flash-preview': 'gemini-2.5-flash' },\n"
      "  'profiles': { 'research': { 'model': 'gemini-3.1-pro-preview', 'system': 'Cite "
      "sources.', 'tools': ['google_search'], 'thinking': 'high', 'max_wait': 120,"
      " 'temperature': 0.2, 'max_output_tokens': 2048 } } }\n");
  assert_int_equal(cfg->nkeys, 3);
  assert_int_equal(cfg->max_inflight, 3);
  assert_string_equal(cfg->keys[0].project, "primary-key");
  assert_int_equal(cfg->keys[0].max_inflight, 3);
  assert_string_equal(cfg->keys[1].project, "proj-2");
  assert_int_equal(cfg->keys[1].max_inflight, 2);
  assert_string_equal(cfg->keys[1].secret, SECRET_ENV2);
  assert_string_equal(cfg->keys[2].project, "me@example.com_3");
  assert_int_equal(cfg->keys[2].max_inflight, 3);
  /* keys[2] reuses keys[0]'s key: they share one quota. */
  assert_int_equal(count_logs(GKP_LOG_WARN, "same API key"), 1);
  assert_int_equal(count_logs(GKP_LOG_WARN, "me@example.com_3"), 1);

  const gkp__profile_cfg *p = gkp__config_profile(cfg, "research");
  assert_non_null(p);
  assert_string_equal(p->model, "gemini-3.1-pro-preview");
  assert_string_equal(p->system, "Cite sources.");
  assert_int_equal(p->ntools, 1);
  assert_string_equal(p->tools[0], "google_search");
  assert_string_equal(p->thinking, "high");
  assert_int_equal(p->max_wait_ms, 120000);
  assert_true(p->temperature > 0.19 && p->temperature < 0.21);
  assert_int_equal(p->max_output_tokens, 2048);
  const gkp__model_cfg *m = gkp__config_model(cfg, "my-new-model");
  assert_non_null(m);
  assert_string_equal(m->fallback, "gemini-2.5-flash");
  assert_non_null(gkp__config_profile(cfg, "my-new-model"));
  gkp__config_free(cfg);
}

static void test_bom_and_whitespace(void **state) {
  (void)state;
  gkp__config *cfg = load_ok("\xEF\xBB\xBF\r\n  {" POOL "}\r\n\n  ");
  assert_int_equal(cfg->nkeys, 1);
  gkp__config_free(cfg);
}

static void test_parse_text(void **state) {
  (void)state;
  const char *json = "{\"providers\": {\"gemini\": {\"keys\": [{\"id\": \"a\", \"api_key\": "
                     "\"env:GKP_TEST_KEY_1\"}]}}}";
  gkp__config *cfg = NULL;
  gkp_error err;
  assert_int_equal(gkp__config_parse(json, strlen(json), NULL, NULL, NULL, NULL, &cfg, &err), 0);
  assert_string_equal(cfg->path, "<text>");
  assert_null(cfg->dir);
  assert_string_equal(cfg->keys[0].secret, SECRET_ENV1);
  gkp__config_free(cfg);

  /* With a directory, the .env there is read. */
  write_file(g_dotenv, "GKP_TEST_KEY_3=" SECRET_DOT "\n", 0600);
  const char *json3 = "{\"providers\": {\"gemini\": {\"keys\": [{\"id\": \"a\", \"api_key\": "
                      "\"env:GKP_TEST_KEY_3\"}]}}}";
  assert_int_equal(gkp__config_parse(json3, strlen(json3), "inline", g_dir, NULL, NULL, &cfg,
                                     &err), 0);
  assert_string_equal(cfg->path, "inline");
  assert_string_equal(cfg->keys[0].secret, SECRET_DOT);
  assert_string_equal(cfg->keys[0].source, ".env:GKP_TEST_KEY_3");
  gkp__config_free(cfg);

  /* Without one, a missing variable says no .env is read. */
  cfg = (gkp__config *)&err;
  int rc = gkp__config_parse(json3, strlen(json3), "inline", NULL, NULL, NULL, &cfg, &err);
  assert_null(cfg);
  check_error(rc, &err, "inline",
              (const char *const[]){"providers.gemini.keys[0].api_key", "GKP_TEST_KEY_3",
                                    "environment: not set", "no .env", NULL});
}

static void test_other_providers_ignored(void **state) {
  (void)state;
  gkp__config *cfg = load_ok("{'providers': {'openai': {'keys': [1]}, 'gemini': {'keys': "
                             "[{'id': 'k1', 'api_key': 'env:GKP_TEST_KEY_1'}]}}}");
  assert_int_equal(cfg->nkeys, 1);
  assert_int_equal(count_logs(GKP_LOG_INFO, "providers.\"openai\": ignored"), 1);
  assert_int_equal(count_logs(GKP_LOG_INFO, g_keys), 1);
  gkp__config_free(cfg);
}

/* ---- Secrets: environment, .env, literals -------------------------------- */

static void test_env_wins_over_dotenv(void **state) {
  (void)state;
  write_file(g_dotenv, "GKP_TEST_KEY_1=" SECRET_DOT "\nGKP_TEST_KEY_3=" SECRET_DOT "\n", 0600);
  const char *json = "{'providers': {'gemini': {'keys': ["
                     "{'id': 'a', 'api_key': 'env:GKP_TEST_KEY_1'},"
                     "{'id': 'b', 'api_key': 'env:GKP_TEST_KEY_3'}]}}}";
  gkp__config *cfg = load_ok(json);
  assert_string_equal(cfg->keys[0].secret, SECRET_ENV1);
  assert_string_equal(cfg->keys[0].source, "env:GKP_TEST_KEY_1");
  assert_string_equal(cfg->keys[1].secret, SECRET_DOT);
  assert_string_equal(cfg->keys[1].source, ".env:GKP_TEST_KEY_3");
  gkp__config_free(cfg);

  /* An empty environment variable does not hide the .env value. */
  setenv("GKP_TEST_KEY_1", "", 1);
  cfg = load_ok(json);
  assert_string_equal(cfg->keys[0].secret, SECRET_DOT);
  assert_string_equal(cfg->keys[0].source, ".env:GKP_TEST_KEY_1");
  gkp__config_free(cfg);
}

static void test_dotenv_syntax(void **state) {
  (void)state;
  const char *text = "# a comment\n"
                     "\n"
                     "   \t\n"
                     "PLAIN=abc\n"
                     "export EXPORTED=def\n"
                     "export   SPACED  =   ghi   \n"
                     "DQ=\"a b\\n\\\"c\\\\ \\x # not a comment\"   # a comment\n"
                     "SQ='lit\\n \"x\" # kept'\n"
                     "INLINE=value # comment\n"
                     "HASH=va#lue\n"
                     "EMPTY=\n"
                     "EMPTY_COMMENT= # only a comment\n"
                     "EMPTY_DQ=\"\"\n"
                     "CRLF=crlf\r\n"
                     "  INDENTED=yes\n"
                     "DUP=first\n"
                     "DUP=second\n"
                     "export=is-a-name\n"
                     "EQ=a=b=c\n"
                     "LAST=no-newline";
  gkp__dotenv env;
  gkp_error err;
  memset(&env, 0, sizeof env);
  assert_int_equal(gkp__dotenv_parse(text, strlen(text), "/x/.env", &env, &err), 0);
  assert_string_equal(gkp__dotenv_get(&env, "PLAIN"), "abc");
  assert_string_equal(gkp__dotenv_get(&env, "EXPORTED"), "def");
  assert_string_equal(gkp__dotenv_get(&env, "SPACED"), "ghi");
  assert_string_equal(gkp__dotenv_get(&env, "DQ"), "a b\n\"c\\ \\x # not a comment");
  assert_string_equal(gkp__dotenv_get(&env, "SQ"), "lit\\n \"x\" # kept");
  assert_string_equal(gkp__dotenv_get(&env, "INLINE"), "value");
  assert_string_equal(gkp__dotenv_get(&env, "HASH"), "va#lue");
  assert_string_equal(gkp__dotenv_get(&env, "EMPTY"), "");
  assert_string_equal(gkp__dotenv_get(&env, "EMPTY_COMMENT"), "");
  assert_string_equal(gkp__dotenv_get(&env, "EMPTY_DQ"), "");
  assert_string_equal(gkp__dotenv_get(&env, "CRLF"), "crlf");
  assert_string_equal(gkp__dotenv_get(&env, "INDENTED"), "yes");
  assert_string_equal(gkp__dotenv_get(&env, "DUP"), "second");
  assert_string_equal(gkp__dotenv_get(&env, "export"), "is-a-name");
  assert_string_equal(gkp__dotenv_get(&env, "EQ"), "a=b=c");
  assert_string_equal(gkp__dotenv_get(&env, "LAST"), "no-newline");
  assert_null(gkp__dotenv_get(&env, "MISSING"));
  assert_int_equal(env.n, 16);
  gkp__dotenv_free(&env);
  gkp__dotenv_free(NULL);
}

static void test_dotenv_syntax_through_config(void **state) {
  (void)state;
  write_file(g_dotenv,
             "# keys for the pool\r\n"
             "export GKP_TEST_KEY_3=\"" SECRET_DOT "\"  # project 3\r\n"
             "GKP_TEST_EMPTY = '" SECRET_LIT "'\r\n",
             0600);
  gkp__config *cfg = load_ok("{'providers': {'gemini': {'keys': ["
                             "{'id': 'a', 'api_key': 'env:GKP_TEST_KEY_3'},"
                             "{'id': 'b', 'api_key': 'env:GKP_TEST_EMPTY'}]}}}");
  assert_string_equal(cfg->keys[0].secret, SECRET_DOT);
  assert_string_equal(cfg->keys[1].secret, SECRET_LIT);
  assert_string_equal(cfg->keys[1].source, ".env:GKP_TEST_EMPTY");
  assert_int_equal(g_nlogs, 0);
  gkp__config_free(cfg);
}

static void test_dotenv_errors(void **state) {
  (void)state;
  static const struct {
    const char *text;
    const char *line;
    const char *what;
  } cases[] = {
      {"A=1\n" SECRET_DOT "\n", "line 2", "expected NAME=value"},
      {"A=1\n\n# c\n1ABC=" SECRET_DOT "\n", "line 4", "expected NAME=value"},
      {"A B=" SECRET_DOT "\n", "line 1", "expected NAME=value"},
      {"export\n", "line 1", "expected NAME=value"},
      {"A=\"" SECRET_DOT "\n", "line 1", "double quote is not closed"},
      {"A='" SECRET_DOT "\nB=2'\n", "line 1", "single quote is not closed"},
      {"OK=1\nA=\"" SECRET_DOT "\"x\n", "line 2", "after the closing quote"},
      {"A=-\n-=" SECRET_DOT "\n", "line 2", "expected NAME=value"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    gkp__dotenv env;
    gkp_error err;
    memset(&env, 0, sizeof env);
    int rc = gkp__dotenv_parse(cases[i].text, strlen(cases[i].text), "/x/.env", &env, &err);
    check_error(rc, &err, "/x/.env",
                (const char *const[]){cases[i].line, cases[i].what, "fix the line", NULL});
    assert_int_equal(rc, -EINVAL);
    gkp__dotenv_free(&env);
  }

  /* Through the configuration: the .env beside keys.json is named. */
  write_file(g_dotenv, "GKP_TEST_KEY_3=ok\nexport GKP SECRET=" SECRET_DOT "\n", 0600);
  gkp__config *cfg;
  gkp_error err;
  int rc = load_json_mode("{" POOL "}", 0600, &cfg, &err);
  assert_null(cfg);
  check_error(rc, &err, g_dotenv, (const char *const[]){"line 2", NULL});
}

static void test_dotenv_nul_and_not_a_file(void **state) {
  (void)state;
  gkp__dotenv env;
  gkp_error err;
  memset(&env, 0, sizeof env);
  static const char text[] = "A=1\nB=x\0y\n";
  int rc = gkp__dotenv_parse(text, sizeof text - 1, "/x/.env", &env, &err);
  check_error(rc, &err, "/x/.env", (const char *const[]){"line 2", "NUL", NULL});
  gkp__dotenv_free(&env);

  assert_int_equal(mkdir(g_dotenv, 0700), 0);
  rc = gkp__dotenv_load(g_dotenv, &env, &err);
  check_error(rc, &err, g_dotenv, (const char *const[]){"not a regular file", NULL});
  gkp__dotenv_free(&env);

  /* A missing .env is fine. */
  char missing[600];
  snprintf(missing, sizeof missing, "%s/nope/.env", g_dir);
  assert_int_equal(gkp__dotenv_load(missing, &env, &err), 0);
  assert_int_equal(env.exists, 0);
  gkp__dotenv_free(&env);
}

static void test_missing_variable(void **state) {
  (void)state;
  const char *json = "{'providers': {'gemini': {'keys': [{'id': 'k1', 'api_key': "
                     "'env:GKP_TEST_KEY_1'}, {'id': 'k2', 'api_key': 'env:GKP_TEST_KEY_3'}]}}}";
  /* No .env at all. */
  EXPECT_ERROR(json, "providers.gemini.keys[1].api_key", "GKP_TEST_KEY_3",
               "environment: not set", g_dotenv, "no such file", "export GKP_TEST_KEY_3=");
  /* A .env without it. */
  write_file(g_dotenv, "OTHER=" SECRET_DOT "\n", 0600);
  EXPECT_ERROR(json, "providers.gemini.keys[1].api_key", "GKP_TEST_KEY_3",
               "environment: not set", g_dotenv, ": not set", "add the line GKP_TEST_KEY_3=");
  /* Empty in both places. */
  setenv("GKP_TEST_KEY_3", "", 1);
  write_file(g_dotenv, "GKP_TEST_KEY_3=\n", 0600);
  EXPECT_ERROR(json, "keys[1].api_key", "GKP_TEST_KEY_3", "environment: empty", g_dotenv,
               ": empty");
}

static void test_literal_key_warning(void **state) {
  (void)state;
  const char *json = "{'providers': {'gemini': {'keys': [{'id': 'lit', 'api_key': '" SECRET_LIT
                     "'}, {'id': 'lit2', 'api_key': '" SECRET_LIT "x'}]}}}";
  gkp__config *cfg;
  gkp_error err;
  assert_int_equal(load_json_mode(json, 0600, &cfg, &err), 0);
  assert_string_equal(cfg->keys[0].secret, SECRET_LIT);
  assert_string_equal(cfg->keys[0].source, "literal");
  assert_int_equal(g_nlogs, 0);
  gkp__config_free(cfg);

  static const mode_t readable[] = {0640, 0604, 0644};
  for (size_t i = 0; i < 3; i++) {
    g_nlogs = 0;
    assert_int_equal(load_json_mode(json, readable[i], &cfg, &err), 0);
    assert_int_equal(g_nlogs, 1); /* once per file, not per key */
    assert_int_equal(g_logs[0].level, GKP_LOG_WARN);
    assert_contains(g_logs[0].line, g_keys);
    assert_contains(g_logs[0].line, "providers.gemini.keys[0].api_key");
    char fix[600];
    snprintf(fix, sizeof fix, "chmod 600 %s", g_keys);
    assert_contains(g_logs[0].line, fix);
    assert_contains(g_logs[0].line, "env:NAME");
    gkp__config_free(cfg);
  }

  /* env: keys in a readable file are fine. */
  g_nlogs = 0;
  assert_int_equal(load_json_mode("{" POOL "}", 0644, &cfg, &err), 0);
  assert_int_equal(g_nlogs, 0);
  gkp__config_free(cfg);
}

static void test_dotenv_readable_warning(void **state) {
  (void)state;
  write_file(g_dotenv, "GKP_TEST_KEY_3=" SECRET_DOT "\n", 0644);
  const char *json = "{'providers': {'gemini': {'keys': [{'id': 'k', 'api_key': "
                     "'env:GKP_TEST_KEY_3'}]}}}";
  gkp__config *cfg = load_ok(json);
  assert_int_equal(count_logs(GKP_LOG_WARN, "chmod 600"), 1);
  assert_int_equal(count_logs(GKP_LOG_WARN, g_dotenv), 1);
  gkp__config_free(cfg);
  g_nlogs = 0;
  assert_int_equal(chmod(g_dotenv, 0600), 0);
  cfg = load_ok(json);
  assert_int_equal(g_nlogs, 0);
  gkp__config_free(cfg);
}

static void test_api_key_forms(void **state) {
  (void)state;
  EXPECT_ERROR("{'providers': {'gemini': {'keys': [{'id': 'a', 'api_key': 'env:" SECRET_LIT
               "'}]}}}",
               "providers.gemini.keys[0].api_key", "looks like an API key", "env:NAME");
  EXPECT_ERROR("{'providers': {'gemini': {'keys': [{'id': 'a', 'api_key': "
               "'env:AIzaSyLITSECRETxx0123456789abcdefghijk'}]}}}",
               "keys[0].api_key", "looks like an API key");
  EXPECT_ERROR("{'providers': {'gemini': {'keys': [{'id': 'a', 'api_key': 'env:1BAD'}]}}}",
               "keys[0].api_key", "variable name", "env:GEMINI_KEY_1");
  EXPECT_ERROR("{'providers': {'gemini': {'keys': [{'id': 'a', 'api_key': 'env:'}]}}}",
               "keys[0].api_key", "variable name");
  EXPECT_ERROR("{'providers': {'gemini': {'keys': [{'id': 'a', 'api_key': '$GKP_TEST_KEY_1'}]}}}",
               "keys[0].api_key", "not expanded", "env:GKP_TEST_KEY_1");
  EXPECT_ERROR("{'providers': {'gemini': {'keys': [{'id': 'a', 'api_key': '${GKP_TEST_KEY_1}'}]}}}",
               "keys[0].api_key", "env:GKP_TEST_KEY_1");
  EXPECT_ERROR("{'providers': {'gemini': {'keys': [{'id': 'a', 'api_key': '" SECRET_LIT
               " '}]}}}",
               "keys[0].api_key", "spaces or control characters");
  EXPECT_ERROR("{'providers': {'gemini': {'keys': [{'id': 'a', 'api_key': ''}]}}}",
               "keys[0].api_key", "empty");
  setenv("GKP_TEST_KEY_3", SECRET_ENV2 "\n", 1);
  EXPECT_ERROR("{'providers': {'gemini': {'keys': [{'id': 'a', 'api_key': "
               "'env:GKP_TEST_KEY_3'}]}}}",
               "keys[0].api_key", "GKP_TEST_KEY_3", "environment", "control characters");
}

/* ---- Syntax and structure errors ------------------------------------------- */

static void test_invalid_json(void **state) {
  (void)state;
  EXPECT_ERROR("{\n  'providers': {\n    x\n  }\n}", "line 3, column 5", "invalid JSON");
  EXPECT_ERROR("{\n  'a': 1,\n}\n", "line 3, column 1", "trailing comma");
  EXPECT_ERROR("{'a': [1, 2,]}", "line 1, column 13", "trailing comma");
  EXPECT_ERROR("{'a': 1,,'b': 2}", "line 1, column 9", "invalid JSON");
  EXPECT_ERROR("{'a' 1}", "line 1, column 6", "invalid JSON");
  EXPECT_ERROR("{\n 'a': tru\n}", "line 2, column 7", "invalid JSON");
  EXPECT_ERROR("{\n 'k': '" SECRET_LIT, "line 2, column 7", "invalid JSON");
  EXPECT_ERROR("[1, [2,x]]", "line 1, column 8", "invalid JSON");
  EXPECT_ERROR("{'a': 1}\n// comment\n", "line 2, column 1", "after the end");
  EXPECT_ERROR("{'a': 1} {'b': 2}", "line 1, column 10", "after the end");
  /* Columns count characters, not bytes. */
  EXPECT_ERROR("{'\xc3\xa9\xc3\xa9': x}", "line 1, column 8");
  EXPECT_ERROR("", "empty", "keys.json.example");
  EXPECT_ERROR(" \n\t\n", "empty");
  EXPECT_ERROR("{\n 'providers': {'gemini': {'keys': [{'id': 'a', 'api_key': '" SECRET_LIT
               "',]}}}",
               "line 2", "invalid JSON");
}

static void test_structure_errors(void **state) {
  (void)state;
  EXPECT_ERROR("[]", "top level", "expected an object, got an array");
  EXPECT_ERROR("\"text\"", "top level", "got a string");
  EXPECT_ERROR("{}", "providers.gemini.keys", "missing", "keys.json.example");
  EXPECT_ERROR("{'providers': []}", "providers: expected an object, got an array");
  EXPECT_ERROR("{'providers': {'openai': {}}}", "providers.gemini.keys: missing");
  EXPECT_ERROR("{'providers': {'gemini': [1]}}", "providers.gemini: expected an object");
  EXPECT_ERROR("{'providers': {'gemini': {}}}", "providers.gemini.keys: missing");
  EXPECT_ERROR("{'providers': {'gemini': {'keys': {}}}}",
               "providers.gemini.keys: expected an array, got an object");
  EXPECT_ERROR("{'providers': {'gemini': {'keys': []}}}", "providers.gemini.keys",
               "the pool is empty", "add at least one key");
  EXPECT_ERROR("{'providers': {'gemini': {'keys': ['env:GKP_TEST_KEY_1']}}}",
               "providers.gemini.keys[0]: expected an object", "got a string");
  EXPECT_ERROR("{'providers': {'gemini': {'keys': [{'api_key': 'env:GKP_TEST_KEY_1'}]}}}",
               "providers.gemini.keys[0]: missing \"id\"");
  EXPECT_ERROR("{'providers': {'gemini': {'keys': [{'id': 7, 'api_key': 'env:X'}]}}}",
               "providers.gemini.keys[0].id: expected a string, got a number");
  EXPECT_ERROR("{'providers': {'gemini': {'keys': [{'id': 'a', 'api_key': 'env:GKP_TEST_KEY_1'},"
               "{'id': 'b'}]}}}",
               "providers.gemini.keys[1]", "no \"api_key\"", "env:NAME");
  EXPECT_ERROR("{'providers': {'gemini': {'keys': [{'id': 'a', 'api_key': ['" SECRET_LIT
               "']}]}}}",
               "providers.gemini.keys[0].api_key: expected a string, got an array");
  EXPECT_ERROR("{'providers': {'gemini': {'keys': [{'id': 'a', 'api_key': true}]}}}",
               "keys[0].api_key: expected a string, got true");
  EXPECT_ERROR("{'providers': {'gemini': {'keys': ["
               "{'id': 'same', 'api_key': 'env:GKP_TEST_KEY_1'},"
               "{'id': 'other', 'api_key': 'env:GKP_TEST_KEY_2'},"
               "{'id': 'same', 'api_key': 'env:GKP_TEST_KEY_2'}]}}}",
               "providers.gemini.keys[2].id", "duplicate id \"same\"", "keys[0]",
               "its own id");
}

static void test_id_rules(void **state) {
  (void)state;
  char json[512];
  static const struct {
    const char *id;
    const char *why;
  } bad[] = {
      {"", "is empty"},
      {".", "\".\" or \"..\""},
      {"..", "\".\" or \"..\""},
      {"a/b", "characters other than"},
      {"a b", "characters other than"},
      {"caf\xc3\xa9", "characters other than"},
      {"0123456789012345678901234567890123456789012345678901234567890123", "longer than 63"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snprintf(json, sizeof json, "{'providers': {'gemini': {'keys': [{'id': '%s', 'api_key': "
             "'env:GKP_TEST_KEY_1'}]}}}", bad[i].id);
    EXPECT_ERROR(json, "providers.gemini.keys[0].id", bad[i].why, "1 to 63");
  }
  /* 63 characters and every allowed character are fine. */
  gkp__config *cfg = load_ok(
      "{'providers': {'gemini': {'keys': [{'id': "
      "'012345678901234567890123456789012345678901234567890123456789012', 'api_key': "
      "'env:GKP_TEST_KEY_1'}, {'id': '.a_B-9@x..', 'api_key': 'env:GKP_TEST_KEY_2'}]}}}");
  assert_int_equal(strlen(cfg->keys[0].id), 63);
  gkp__config_free(cfg);
  EXPECT_ERROR("{'providers': {'gemini': {'keys': [{'id': 'a', 'api_key': "
               "'env:GKP_TEST_KEY_1', 'project': 'x y'}]}}}",
               "providers.gemini.keys[0].project", "characters other than");
  EXPECT_ERROR("{'providers': {'gemini': {'keys': [{'id': 'a', 'api_key': "
               "'env:GKP_TEST_KEY_1', 'project': 3}]}}}",
               "providers.gemini.keys[0].project: expected a string, got a number");
}

static void test_max_inflight(void **state) {
  (void)state;
  static const char *const bad[] = {"0", "17", "-1", "1.5", "'2'", "true"};
  char json[512];
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snprintf(json, sizeof json, "{" POOL ", 'max_inflight': %s}", bad[i]);
    EXPECT_ERROR(json, "max_inflight: expected a whole number from 1 to 16");
    snprintf(json, sizeof json, "{'providers': {'gemini': {'keys': [{'id': 'k', 'api_key': "
             "'env:GKP_TEST_KEY_1', 'max_inflight': %s}]}}}", bad[i]);
    EXPECT_ERROR(json, "providers.gemini.keys[0].max_inflight", "from 1 to 16");
  }
  gkp__config *cfg = load_ok("{" POOL ", 'max_inflight': 16}");
  assert_int_equal(cfg->max_inflight, 16);
  assert_int_equal(cfg->keys[0].max_inflight, 16);
  gkp__config_free(cfg);
}

static void test_load_file_errors(void **state) {
  (void)state;
  gkp__config *cfg = (gkp__config *)&g_nlogs;
  gkp_error err;
  char missing[600];
  snprintf(missing, sizeof missing, "%s/missing.json", g_dir);
  int rc = gkp__config_load(missing, NULL, NULL, &cfg, &err);
  assert_null(cfg);
  assert_int_equal(rc, -ENOENT);
  check_error(rc, &err, missing, (const char *const[]){"No such file", NULL});
  rc = gkp__config_load(g_dir, NULL, NULL, &cfg, &err);
  check_error(rc, &err, g_dir, (const char *const[]){"not a regular file", NULL});
  rc = gkp__config_load(NULL, NULL, NULL, &cfg, &err);
  assert_int_equal(rc, -EINVAL);
}

/* ---- Lookup order -------------------------------------------------------------- */

static void test_find_explicit_and_env(void **state) {
  (void)state;
  char buf[4096];
  gkp_error err;
  char other[600];
  snprintf(other, sizeof other, "%s/other.json", g_dir);
  write_json_mode(g_keys, "{" POOL "}", 0600);
  write_json_mode(other, "{" POOL "}", 0600);
  assert_int_equal(chdir(g_dir), 0); /* ./keys.json exists too */

  assert_int_equal(gkp__config_find(other, buf, sizeof buf, &err), 0);
  assert_string_equal(buf, other);
  /* A relative explicit path is made absolute. */
  assert_int_equal(gkp__config_find("other.json", buf, sizeof buf, &err), 0);
  assert_string_equal(buf, other);

  /* An explicit path that does not exist is an error, not a fall-through. */
  char missing[600];
  snprintf(missing, sizeof missing, "%s/missing.json", g_dir);
  int rc = gkp__config_find(missing, buf, sizeof buf, &err);
  assert_int_equal(rc, -ENOENT);
  check_error(rc, &err, missing, (const char *const[]){"given explicitly", NULL});

  setenv("GEMINI_POOL_CONFIG", other, 1);
  assert_int_equal(gkp__config_find(NULL, buf, sizeof buf, &err), 0);
  assert_string_equal(buf, other);
  /* The explicit path wins over the variable. */
  assert_int_equal(gkp__config_find(g_keys, buf, sizeof buf, &err), 0);
  assert_string_equal(buf, g_keys);

  setenv("GEMINI_POOL_CONFIG", missing, 1);
  rc = gkp__config_find(NULL, buf, sizeof buf, &err);
  assert_int_equal(rc, -ENOENT);
  check_error(rc, &err, missing, (const char *const[]){"$GEMINI_POOL_CONFIG", NULL});
  rc = gkp__config_find("", buf, sizeof buf, &err); /* "" is "not given" */
  assert_int_equal(rc, -ENOENT);

  setenv("GEMINI_POOL_CONFIG", g_dir, 1);
  rc = gkp__config_find(NULL, buf, sizeof buf, &err);
  assert_int_equal(rc, -EISDIR);
  check_error(rc, &err, g_dir, (const char *const[]){"is a directory", NULL});

  setenv("GEMINI_POOL_CONFIG", other, 1);
  char small[8];
  assert_int_equal(gkp__config_find(NULL, small, sizeof small, &err), -ENAMETOOLONG);
}

static void test_find_local_then_xdg(void **state) {
  (void)state;
  char buf[4096];
  char xdg[600];
  char home_cfg[700];
  char path[800];
  gkp_error err;
  snprintf(xdg, sizeof xdg, "%s/xdg", g_dir);
  assert_int_equal(mkdir(xdg, 0700), 0);
  snprintf(path, sizeof path, "%s/gemini-pool", xdg);
  assert_int_equal(mkdir(path, 0700), 0);
  snprintf(path, sizeof path, "%s/gemini-pool/keys.json", xdg);
  write_json_mode(path, "{" POOL "}", 0600);
  char work[600];
  snprintf(work, sizeof work, "%s/work", g_dir);
  assert_int_equal(mkdir(work, 0700), 0);
  assert_int_equal(chdir(work), 0);
  setenv("XDG_CONFIG_HOME", xdg, 1);
  setenv("HOME", g_dir, 1);

  /* No ./keys.json: $XDG_CONFIG_HOME. */
  assert_int_equal(gkp__config_find(NULL, buf, sizeof buf, &err), 0);
  assert_string_equal(buf, path);

  /* ./keys.json comes first. */
  char local[700];
  snprintf(local, sizeof local, "%s/keys.json", work);
  write_json_mode(local, "{" POOL "}", 0600);
  assert_int_equal(gkp__config_find(NULL, buf, sizeof buf, &err), 0);
  assert_string_equal(buf, local);
  assert_int_equal(unlink(local), 0);

  /* Without $XDG_CONFIG_HOME: $HOME/.config. */
  unsetenv("XDG_CONFIG_HOME");
  snprintf(home_cfg, sizeof home_cfg, "%s/.config", g_dir);
  assert_int_equal(mkdir(home_cfg, 0700), 0);
  snprintf(home_cfg, sizeof home_cfg, "%s/.config/gemini-pool", g_dir);
  assert_int_equal(mkdir(home_cfg, 0700), 0);
  snprintf(home_cfg, sizeof home_cfg, "%s/.config/gemini-pool/keys.json", g_dir);
  write_json_mode(home_cfg, "{" POOL "}", 0600);
  assert_int_equal(gkp__config_find(NULL, buf, sizeof buf, &err), 0);
  assert_string_equal(buf, home_cfg);

  /* A relative $XDG_CONFIG_HOME is ignored (XDG base directory spec). */
  setenv("XDG_CONFIG_HOME", "relative", 1);
  assert_int_equal(gkp__config_find(NULL, buf, sizeof buf, &err), 0);
  assert_string_equal(buf, home_cfg);

  /* Nothing anywhere: every place is listed. */
  assert_int_equal(unlink(home_cfg), 0);
  int rc = gkp__config_find(NULL, buf, sizeof buf, &err);
  assert_int_equal(rc, -ENOENT);
  assert_contains(err.msg, "$GEMINI_POOL_CONFIG is not set");
  assert_contains(err.msg, local);
  assert_contains(err.msg, home_cfg);
  assert_contains(err.msg, "keys.json.example");
  assert_contains(err.msg, "create one");
  assert_null(strchr(err.msg, '\n'));
}

/* ---- base_url ------------------------------------------------------------------- */

static void test_base_url(void **state) {
  (void)state;
  gkp__config *cfg = load_ok("{" POOL ", 'base_url': 'http://127.0.0.1:8080///'}");
  assert_string_equal(cfg->base_url, "http://127.0.0.1:8080");
  gkp__config_free(cfg);
  cfg = load_ok("{" POOL ", 'base_url': null}");
  assert_string_equal(cfg->base_url, "https://generativelanguage.googleapis.com");
  gkp__config_free(cfg);

  setenv("GOOGLE_GEMINI_BASE_URL", "HTTPS://proxy.example/v/", 1);
  cfg = load_ok("{" POOL ", 'base_url': 'http://127.0.0.1:8080'}");
  assert_string_equal(cfg->base_url, "HTTPS://proxy.example/v");
  gkp__config_free(cfg);
  /* Even over a bad value in the file. */
  cfg = load_ok("{" POOL ", 'base_url': 'ftp://x'}");
  assert_string_equal(cfg->base_url, "HTTPS://proxy.example/v");
  gkp__config_free(cfg);

  setenv("GOOGLE_GEMINI_BASE_URL", "localhost:8080", 1);
  EXPECT_ERROR("{" POOL "}", "$GOOGLE_GEMINI_BASE_URL", "\"localhost:8080\"",
               "http:// or https://");
  unsetenv("GOOGLE_GEMINI_BASE_URL");
  EXPECT_ERROR("{" POOL ", 'base_url': 'ftp://x'}", "base_url: \"ftp://x\"", "http://");
  EXPECT_ERROR("{" POOL ", 'base_url': 'https://'}", "base_url", "http://");
  EXPECT_ERROR("{" POOL ", 'base_url': 'http://a b'}", "base_url", "http://");
  EXPECT_ERROR("{" POOL ", 'base_url': 8080}", "base_url: expected a string, got a number");
}

/* ---- Models and fallback ---------------------------------------------------------- */

static void test_builtin_table(void **state) {
  (void)state;
  static const struct {
    const char *id;
    int64_t rpm, tpm, rpd;
    const char *fallback;
    int image, thinking;
  } want[] = {
      {"gemini-3.1-pro-preview", 0, 0, 0, "gemini-3-flash-preview", 0, 1},
      {"gemini-3-flash-preview", 5, 250000, 20, "gemini-2.5-flash", 0, 1},
      {"gemini-2.5-flash", 15, 250000, 1000, "gemini-3.1-flash-lite-preview", 0, 0},
      {"gemini-3.1-flash-lite-preview", 15, 250000, 500, NULL, 0, 1},
      {"gemma-3-1b-it", 30, 15000, 14400, "gemma-3-4b-it", 0, -1},
      {"gemma-3-4b-it", 30, 15000, 14400, "gemma-3-12b-it", 0, -1},
      {"gemma-3-12b-it", 30, 15000, 14400, "gemma-3-27b-it", 0, -1},
      {"gemma-3-27b-it", 30, 15000, 14400, "gemini-3.1-flash-lite-preview", 0, -1},
      {"gemini-2.5-flash-image", -1, -1, -1, NULL, 1, -1},
  };
  size_t n = sizeof want / sizeof want[0];
  assert_int_equal(gkp__builtin_model_count(), n);
  assert_null(gkp__builtin_model(n));
  gkp__config *cfg = load_ok("{" POOL "}");
  assert_int_equal(cfg->nmodels, n);
  for (size_t i = 0; i < n; i++) {
    const gkp__model_cfg *tables[] = {gkp__builtin_model(i), gkp__config_model(cfg, want[i].id)};
    assert_ptr_equal(tables[1], &cfg->models[i]);
    for (size_t t = 0; t < 2; t++) {
      const gkp__model_cfg *m = tables[t];
      assert_non_null(m);
      assert_string_equal(m->id, want[i].id);
      assert_int_equal(m->limits.rpm, want[i].rpm);
      assert_int_equal(m->limits.tpm, want[i].tpm);
      assert_int_equal(m->limits.rpd, want[i].rpd);
      if (want[i].fallback == NULL) {
        assert_null(m->fallback);
      } else {
        assert_string_equal(m->fallback, want[i].fallback);
      }
      assert_int_equal(m->image_output, want[i].image);
      assert_int_equal(m->thinking_level, want[i].thinking);
    }
  }
  assert_null(gkp__config_model(cfg, "gemini-1.0-pro"));
  gkp__config_free(cfg);
}

static void test_model_overrides(void **state) {
  (void)state;
  gkp__config *cfg = load_ok(
      "{" POOL ", 'models': {"
      "'gemini-3-flash-preview': {'rpd': 250},"
      "'gemini-2.5-flash': {'rpm': null, 'fallback': null, 'thinking': 'none'},"
      "'gemini-3-pro-image-preview': {'fallback': 'gemini-2.5-flash-image'},"
      "'gemini-3.5-flash': {'rpm': 10, 'future': 1},"
      "'gemini-2.5-pro': {},"
      "'my-model': {'image_output': true, 'thinking': 'level', 'tpm': 0}}}");
  const gkp__model_cfg *m = gkp__config_model(cfg, "gemini-3-flash-preview");
  assert_int_equal(m->limits.rpm, 5); /* kept from the table */
  assert_int_equal(m->limits.tpm, 250000);
  assert_int_equal(m->limits.rpd, 250);
  assert_string_equal(m->fallback, "gemini-2.5-flash");
  m = gkp__config_model(cfg, "gemini-2.5-flash");
  assert_int_equal(m->limits.rpm, GKP_LIMIT_UNKNOWN);
  assert_int_equal(m->limits.rpd, 1000);
  assert_null(m->fallback);
  assert_int_equal(m->thinking_level, -1);
  m = gkp__config_model(cfg, "gemini-3-pro-image-preview");
  assert_int_equal(m->limits.rpm, GKP_LIMIT_UNKNOWN);
  assert_int_equal(m->limits.tpm, GKP_LIMIT_UNKNOWN);
  assert_int_equal(m->limits.rpd, GKP_LIMIT_UNKNOWN);
  assert_int_equal(m->image_output, 1);
  assert_int_equal(m->thinking_level, -1);
  assert_string_equal(m->fallback, "gemini-2.5-flash-image");
  m = gkp__config_model(cfg, "gemini-3.5-flash");
  assert_int_equal(m->limits.rpm, 10);
  assert_int_equal(m->limits.tpm, GKP_LIMIT_UNKNOWN);
  assert_int_equal(m->thinking_level, 1);
  assert_null(m->fallback);
  m = gkp__config_model(cfg, "gemini-2.5-pro");
  assert_int_equal(m->thinking_level, 0);
  assert_int_equal(m->image_output, 0);
  m = gkp__config_model(cfg, "my-model");
  assert_int_equal(m->image_output, 1);
  assert_int_equal(m->thinking_level, 1);
  assert_int_equal(m->limits.tpm, 0);
  assert_int_equal(cfg->nmodels, gkp__builtin_model_count() + 4);
  gkp__config_free(cfg);

  EXPECT_ERROR("{" POOL ", 'models': []}", "models: expected an object");
  EXPECT_ERROR("{" POOL ", 'models': {'m': 5}}", "models.m: expected an object", "got a number");
  EXPECT_ERROR("{" POOL ", 'models': {'m': {'rpm': -1}}}", "models.m.rpm",
               "a whole number of at least 0", "got -1");
  EXPECT_ERROR("{" POOL ", 'models': {'m': {'tpm': 2.5}}}", "models.m.tpm", "got 2.5");
  EXPECT_ERROR("{" POOL ", 'models': {'m': {'rpd': '20'}}}", "models.m.rpd", "got a string");
  EXPECT_ERROR("{" POOL ", 'models': {'m': {'fallback': 3}}}", "models.m.fallback",
               "a model id or null, got a number");
  EXPECT_ERROR("{" POOL ", 'models': {'m': {'image_output': 1}}}", "models.m.image_output",
               "true or false");
  EXPECT_ERROR("{" POOL ", 'models': {'m': {'thinking': 'high'}}}", "models.m.thinking",
               "\"level\"", "\"budget\"", "\"none\"", "\"high\"");
  EXPECT_ERROR("{" POOL ", 'models': {'bad/model': {}}}", "models: model id \"bad/model\"",
               "characters other than");
  EXPECT_ERROR("{" POOL ", 'models': {'status': {}}}", "models: model id \"status\"",
               "filesystem");
}

static void test_fallback_override(void **state) {
  (void)state;
  gkp__config *cfg = load_ok(
      "{" POOL ", 'models': {'my-new-model': {'fallback': 'gemini-2.5-flash'}},"
      "'fallback': {'gemini-3-flash-preview': 'gemma-3-27b-it',"
      "'gemini-2.5-flash': null, 'gemini-3.1-flash-lite-preview': 'my-new-model',"
      "'gemini-2.5-flash-image': 'gemini-3.1-flash-lite-preview'}}");
  assert_string_equal(gkp__config_model(cfg, "gemini-3-flash-preview")->fallback,
                      "gemma-3-27b-it");
  assert_null(gkp__config_model(cfg, "gemini-2.5-flash")->fallback);
  assert_string_equal(gkp__config_model(cfg, "gemini-3.1-flash-lite-preview")->fallback,
                      "my-new-model");
  assert_string_equal(gkp__config_model(cfg, "gemini-2.5-flash-image")->fallback,
                      "gemini-3.1-flash-lite-preview");
  gkp__config_free(cfg);

  /* The top-level object wins over "models". */
  cfg = load_ok("{" POOL ", 'models': {'x': {'fallback': 'gemini-2.5-flash'}},"
                "'fallback': {'x': 'gemma-3-1b-it'}}");
  assert_string_equal(gkp__config_model(cfg, "x")->fallback, "gemma-3-1b-it");
  gkp__config_free(cfg);

  EXPECT_ERROR("{" POOL ", 'fallback': {'gemini-3-flash-preview': 'gemini-9-ultra'}}",
               "fallback.gemini-3-flash-preview", "\"gemini-9-ultra\" is not a known model",
               "under \"models\"");
  EXPECT_ERROR("{" POOL ", 'fallback': {'gemini-9-ultra': 'gemini-2.5-flash'}}",
               "fallback: \"gemini-9-ultra\" is not a known model");
  EXPECT_ERROR("{" POOL ", 'models': {'mine': {'fallback': 'nope'}}}",
               "models.mine.fallback", "\"nope\" is not a known model");
  EXPECT_ERROR("{" POOL ", 'fallback': {'gemini-2.5-flash': 5}}", "fallback.gemini-2.5-flash",
               "a model id or null");
  EXPECT_ERROR("{" POOL ", 'fallback': ['x']}", "fallback: expected an object");
}

static void test_fallback_cycles(void **state) {
  (void)state;
  EXPECT_ERROR("{" POOL ", 'fallback': {'gemini-3.1-flash-lite-preview': "
               "'gemini-3.1-pro-preview'}}",
               "fallback.gemini-3.1-flash-lite-preview", "loops",
               "(gemini-3.1-flash-lite-preview -> gemini-3.1-pro-preview -> "
               "gemini-3-flash-preview -> gemini-2.5-flash -> gemini-3.1-flash-lite-preview)",
               "null");
  EXPECT_ERROR("{" POOL ", 'fallback': {'gemma-3-4b-it': 'gemma-3-4b-it'}}",
               "fallback.gemma-3-4b-it", "loops (gemma-3-4b-it -> gemma-3-4b-it)");
  EXPECT_ERROR("{" POOL ", 'models': {'a': {'fallback': 'b'}, 'b': {'fallback': 'a'}}}",
               "models.a.fallback", "loops", "a -> b -> a");
}

/* ---- Profiles ------------------------------------------------------------------ */

static void test_default_profiles(void **state) {
  (void)state;
  gkp__config *cfg = load_ok("{" POOL ", 'models': {'my-new-model': {}}}");
  static const char *const defaults[][2] = {
      {"pro", "gemini-3.1-pro-preview"},
      {"flash", "gemini-3-flash-preview"},
      {"flash-2.5", "gemini-2.5-flash"},
      {"flash-lite", "gemini-3.1-flash-lite-preview"},
      {"gemma", "gemma-3-27b-it"},
      {"image", "gemini-2.5-flash-image"},
  };
  for (size_t i = 0; i < 6; i++) {
    const gkp__profile_cfg *p = gkp__config_profile(cfg, defaults[i][0]);
    assert_non_null(p);
    assert_ptr_equal(p, &cfg->profiles[i]);
    assert_string_equal(p->model, defaults[i][1]);
    assert_null(p->system);
    assert_int_equal(p->ntools, 0);
    assert_null(p->thinking);
    assert_int_equal(p->max_wait_ms, 120000);
    assert_true(p->temperature < 0);
    assert_true(p->max_output_tokens <= 0);
  }
  for (size_t i = 0; i < cfg->nmodels; i++) {
    const gkp__profile_cfg *p = gkp__config_profile(cfg, cfg->models[i].id);
    assert_non_null(p);
    assert_string_equal(p->model, cfg->models[i].id);
  }
  assert_int_equal(cfg->nprofiles, 6 + cfg->nmodels);
  assert_null(gkp__config_profile(cfg, "research"));
  assert_null(gkp__config_profile(cfg, NULL));
  gkp__config_free(cfg);
}

static void test_user_profiles_valid(void **state) {
  (void)state;
  gkp__config *cfg = load_ok(
      "{" POOL ", 'models': {'my-new-model': {'thinking': 'budget'}}, 'profiles': {"
      "'flash': {'system': 'Be brief.', 'max_wait': 0.5},"
      "'pro': {'model': 'gemini-2.5-flash', 'thinking': 'low'},"
      "'all.tools_1': {'model': 'my-new-model', 'tools': ['url_context', 'code_execution',"
      " 'google_search', 'url_context'], 'temperature': 0, 'max_output_tokens': null,"
      " 'thinking': 'minimal', 'system': null, 'future': true}}}");
  const gkp__profile_cfg *p = gkp__config_profile(cfg, "flash");
  assert_string_equal(p->model, "gemini-3-flash-preview"); /* merged over the default */
  assert_string_equal(p->system, "Be brief.");
  assert_int_equal(p->max_wait_ms, 500);
  p = gkp__config_profile(cfg, "pro");
  assert_string_equal(p->model, "gemini-2.5-flash");
  assert_string_equal(p->thinking, "low");
  p = gkp__config_profile(cfg, "all.tools_1");
  assert_string_equal(p->model, "my-new-model");
  assert_int_equal(p->ntools, 3);
  assert_string_equal(p->tools[0], "url_context");
  assert_string_equal(p->tools[1], "code_execution");
  assert_string_equal(p->tools[2], "google_search");
  assert_true(p->temperature == 0);
  assert_int_equal(p->max_output_tokens, 0);
  assert_null(p->system);
  assert_string_equal(p->thinking, "minimal");
  assert_int_equal(p->max_wait_ms, 120000);
  assert_int_equal(cfg->nprofiles, 6 + cfg->nmodels + 1);
  gkp__config_free(cfg);
}

static void test_profile_errors(void **state) {
  (void)state;
  EXPECT_ERROR("{" POOL ", 'profiles': []}", "profiles: expected an object");
  EXPECT_ERROR("{" POOL ", 'profiles': {'x': 'flash'}}", "profiles.x: expected an object",
               "got a string");
  EXPECT_ERROR("{" POOL ", 'profiles': {'new': {'system': 'hi'}}}", "profiles.new",
               "missing \"model\"");
  EXPECT_ERROR("{" POOL ", 'profiles': {'r': {'model': 'gemini-9'}}}", "profiles.r.model",
               "\"gemini-9\" is not a known model");
  EXPECT_ERROR("{" POOL ", 'profiles': {'r': {'model': 5}}}", "profiles.r.model",
               "got a number");
  EXPECT_ERROR("{" POOL ", 'profiles': {'r': {'model': 'gemini-2.5-flash', 'tools': "
               "['google_search', 'web']}}}",
               "profiles.r.tools[1]", "unknown tool \"web\"", "url_context");
  EXPECT_ERROR("{" POOL ", 'profiles': {'r': {'model': 'gemini-2.5-flash', 'tools': "
               "'google_search'}}}",
               "profiles.r.tools", "expected an array");
  EXPECT_ERROR("{" POOL ", 'profiles': {'r': {'model': 'gemini-2.5-flash', 'tools': [1]}}}",
               "profiles.r.tools[0]", "unknown tool a number");
  EXPECT_ERROR("{" POOL ", 'profiles': {'r': {'model': 'gemini-2.5-flash', 'thinking': "
               "'max'}}}",
               "profiles.r.thinking", "\"minimal\", \"low\", \"medium\", \"high\"", "\"max\"");
  EXPECT_ERROR("{" POOL ", 'profiles': {'r': {'model': 'gemma-3-1b-it', 'thinking': 'low'}}}",
               "profiles.r.thinking", "gemma-3-1b-it takes no thinking setting");
  EXPECT_ERROR("{" POOL ", 'profiles': {'r': {'model': 'gemini-2.5-flash', 'max_wait': -1}}}",
               "profiles.r.max_wait", "from 0 to 86400", "got -1");
  EXPECT_ERROR("{" POOL ", 'profiles': {'r': {'model': 'gemini-2.5-flash', 'max_wait': '5'}}}",
               "profiles.r.max_wait", "got a string");
  EXPECT_ERROR("{" POOL ", 'profiles': {'r': {'model': 'gemini-2.5-flash', 'temperature': 3}}}",
               "profiles.r.temperature", "from 0 to 2");
  EXPECT_ERROR("{" POOL ", 'profiles': {'r': {'model': 'gemini-2.5-flash', "
               "'max_output_tokens': 0}}}",
               "profiles.r.max_output_tokens", "from 1 to 2147483647");
  EXPECT_ERROR("{" POOL ", 'profiles': {'r': {'model': 'gemini-2.5-flash', 'system': 1}}}",
               "profiles.r.system", "a string or null");
  static const struct {
    const char *name;
    const char *why;
  } bad[] = {
      {"status", "filesystem's own files"},
      {"README", "filesystem's own files"},
      {"ctl", "filesystem's own files"},
      {".hidden", "starts with '.'"},
      {"a/b", "characters other than"},
      {"a@b", "characters other than"},
      {"", "is empty"},
      {"p123456789012345678901234567890123456789012345678901234567890123", "longer than 63"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char json[512];
    snprintf(json, sizeof json, "{" POOL ", 'profiles': {'%s': {'model': 'gemini-2.5-flash'}}}",
             bad[i].name);
    EXPECT_ERROR(json, "profiles: profile name", bad[i].why, "directory names");
  }
}

/* ---- Secrets never leak --------------------------------------------------------- */

static void test_no_secret_in_any_message(void **state) {
  (void)state;
  /* A literal secret, an env secret and a .env secret all in play while
   * every later part of the file is wrong in turn. */
  write_file(g_dotenv, "GKP_TEST_KEY_3=" SECRET_DOT "\n", 0644);
#define SECRET_POOL                                                                              \
  "'providers': {'gemini': {'keys': [{'id': 'a', 'api_key': '" SECRET_LIT "'},"                  \
  "{'id': 'b', 'api_key': 'env:GKP_TEST_KEY_1'}, {'id': 'c', 'api_key': 'env:GKP_TEST_KEY_3'},"  \
  "{'id': 'd', 'api_key': 'env:GKP_TEST_KEY_2'}]}}"
  static const char *const broken[] = {
      "{" SECRET_POOL ", 'max_inflight': 0}",
      "{" SECRET_POOL ", 'base_url': 'nope'}",
      "{" SECRET_POOL ", 'models': {'m': {'rpm': 'x'}}}",
      "{" SECRET_POOL ", 'fallback': {'gemini-2.5-flash': 'x'}}",
      "{" SECRET_POOL ", 'profiles': {'p': {'model': 'x'}}}",
      "{" SECRET_POOL ", 'extra': [1,}",
      "{" SECRET_POOL "} trailing",
      "{'providers': {'gemini': {'keys': [{'id': 'a', 'api_key': '" SECRET_LIT "'},"
      "{'id': 'a', 'api_key': 'env:GKP_TEST_KEY_1'}]}}}",
      "{'providers': {'gemini': {'keys': [{'id': '" SECRET_LIT "/', 'api_key': 'x'}]}}}",
  };
  for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++) {
    gkp__config *cfg;
    gkp_error err;
    g_nlogs = 0;
    int rc = load_json_mode(broken[i], 0644, &cfg, &err);
    assert_true(rc < 0);
    assert_null(cfg);
    if (i + 1 < sizeof broken / sizeof broken[0]) {
      assert_no_secret(err.msg);
    } else {
      /* Only a secret pasted where an id belongs is echoed, as the id. */
      assert_contains(err.msg, "characters other than");
    }
  }
  /* A valid file with all three: the log names places, never keys. */
  g_nlogs = 0;
  gkp__config *cfg;
  gkp_error err;
  assert_int_equal(load_json_mode("{" SECRET_POOL "}", 0644, &cfg, &err), 0);
  assert_int_equal(cfg->nkeys, 4);
  assert_int_equal(g_nlogs, 2); /* literal key and readable .env */
  gkp__config_free(cfg);
#undef SECRET_POOL
}

int main(void) {
  const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
      T(test_minimal_pool),
      T(test_full_example),
      T(test_bom_and_whitespace),
      T(test_parse_text),
      T(test_other_providers_ignored),
      T(test_env_wins_over_dotenv),
      T(test_dotenv_syntax),
      T(test_dotenv_syntax_through_config),
      T(test_dotenv_errors),
      T(test_dotenv_nul_and_not_a_file),
      T(test_missing_variable),
      T(test_literal_key_warning),
      T(test_dotenv_readable_warning),
      T(test_api_key_forms),
      T(test_invalid_json),
      T(test_structure_errors),
      T(test_id_rules),
      T(test_max_inflight),
      T(test_load_file_errors),
      T(test_find_explicit_and_env),
      T(test_find_local_then_xdg),
      T(test_base_url),
      T(test_builtin_table),
      T(test_model_overrides),
      T(test_fallback_override),
      T(test_fallback_cycles),
      T(test_default_profiles),
      T(test_user_profiles_valid),
      T(test_profile_errors),
      T(test_no_secret_in_any_message),
#undef T
  };
  return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
