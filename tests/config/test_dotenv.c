/*
 * test_dotenv.c - .env syntax, its errors, and how keys.json uses it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"

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

int run_dotenv_tests(void) {
  const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
      T(test_dotenv_syntax),           T(test_dotenv_syntax_through_config),
      T(test_dotenv_errors),           T(test_dotenv_nul_and_not_a_file),
      T(test_dotenv_readable_warning),
#undef T
  };
  return cmocka_run_group_tests_name("config/dotenv", tests, NULL, NULL);
}
