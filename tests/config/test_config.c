/*
 * test_config.c - keys.json: accepted forms, secrets from the environment,
 * .env and literals, syntax and structure errors, lookup order, base_url,
 * and no secret in any message.  main() also runs the groups in
 * test_dotenv.c and test_models.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"

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
  gkp__config *cfg =
      load_ok("{ 'providers': { 'gemini': { 'keys': [\n"
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

static void test_example_file(void **state) {
  (void)state;
  const char *root = getenv("GKP_SOURCE_ROOT");
  if (root == NULL) {
    skip();
  }
  char path[4096];
  snprintf(path, sizeof path, "%s/keys.json.example", root);
  setenv("GEMINI_KEY_PROJECT_1", SECRET_ENV1, 1);
  setenv("GEMINI_KEY_PROJECT_2", SECRET_ENV2, 1);
  setenv("GEMINI_KEY_PROJECT_3A", SECRET_LIT, 1);
  write_file(g_dotenv, "GEMINI_KEY_PROJECT_3B=" SECRET_DOT "\n", 0600);
  /* The example's .env is the one beside it; read this test's instead. */
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  static char text[16384];
  size_t len = fread(text, 1, sizeof text, f);
  fclose(f);
  gkp__config *cfg = NULL;
  gkp_error err;
  int rc = gkp__config_parse(text, len, path, g_dir, capture_log, NULL, &cfg, &err);
  if (rc != 0) {
    fail_msg("keys.json.example: %s", err.msg);
  }
  assert_int_equal(cfg->nkeys, 4);
  assert_string_equal(cfg->keys[2].project, "project-3");
  assert_string_equal(cfg->keys[3].source, ".env:GEMINI_KEY_PROJECT_3B");
  assert_int_equal(cfg->keys[3].max_inflight, 2);
  assert_non_null(gkp__config_profile(cfg, "research"));
  assert_non_null(gkp__config_profile(cfg, "gemini-2.5-pro"));
  assert_int_equal(g_nlogs, 0);
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
  assert_int_equal(gkp__config_parse(json3, strlen(json3), "inline", g_dir, NULL, NULL, &cfg, &err),
                   0);
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

static void test_missing_variable(void **state) {
  (void)state;
  const char *json = "{'providers': {'gemini': {'keys': [{'id': 'k1', 'api_key': "
                     "'env:GKP_TEST_KEY_1'}, {'id': 'k2', 'api_key': 'env:GKP_TEST_KEY_3'}]}}}";
  /* No .env at all. */
  EXPECT_ERROR(json, "providers.gemini.keys[1].api_key", "GKP_TEST_KEY_3", "environment: not set",
               g_dotenv, "no such file", "export GKP_TEST_KEY_3=");
  /* A .env without it. */
  write_file(g_dotenv, "OTHER=" SECRET_DOT "\n", 0600);
  EXPECT_ERROR(json, "providers.gemini.keys[1].api_key", "GKP_TEST_KEY_3", "environment: not set",
               g_dotenv, ": not set", "add the line GKP_TEST_KEY_3=");
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
  EXPECT_ERROR("{'providers': {'gemini': {'keys': [{'id': 'a', 'api_key': '" SECRET_LIT " '}]}}}",
               "keys[0].api_key", "spaces or control characters");
  EXPECT_ERROR("{'providers': {'gemini': {'keys': [{'id': 'a', 'api_key': 'GKP_TEST_KEY_1'}]}}}",
               "keys[0].api_key", "looks like a variable name", "\"env:GKP_TEST_KEY_1\"");
  EXPECT_ERROR(
      "{'providers': {'gemini': {'keys': [{'id': 'a', 'api_key': 'ENV:GKP_TEST_KEY_1'}]}}}",
      "keys[0].api_key", "lower case");
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
  EXPECT_ERROR("{\n 'providers': {'gemini': {'keys': [{'id': 'a', 'api_key': '" SECRET_LIT "',]}}}",
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
  EXPECT_ERROR("{'providers': {'gemini': {'keys': [{'id': '" SECRET_LIT "', 'api_key': "
               "'env:GKP_TEST_KEY_1'}]}}}",
               "providers.gemini.keys[0].id", "looks like an API key", "project-1");
  EXPECT_ERROR("{'providers': {'gemini': {'keys': [{'id': 7, 'api_key': 'env:X'}]}}}",
               "providers.gemini.keys[0].id: expected a string, got a number");
  EXPECT_ERROR("{'providers': {'gemini': {'keys': [{'id': 'a', 'api_key': 'env:GKP_TEST_KEY_1'},"
               "{'id': 'b'}]}}}",
               "providers.gemini.keys[1]", "no \"api_key\"", "env:NAME");
  EXPECT_ERROR("{'providers': {'gemini': {'keys': [{'id': 'a', 'api_key': ['" SECRET_LIT "']}]}}}",
               "providers.gemini.keys[0].api_key: expected a string, got an array");
  EXPECT_ERROR("{'providers': {'gemini': {'keys': [{'id': 'a', 'api_key': true}]}}}",
               "keys[0].api_key: expected a string, got true");
  EXPECT_ERROR("{'providers': {'gemini': {'keys': ["
               "{'id': 'same', 'api_key': 'env:GKP_TEST_KEY_1'},"
               "{'id': 'other', 'api_key': 'env:GKP_TEST_KEY_2'},"
               "{'id': 'same', 'api_key': 'env:GKP_TEST_KEY_2'}]}}}",
               "providers.gemini.keys[2].id", "duplicate id \"same\"", "keys[0]", "its own id");
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
    snprintf(json, sizeof json,
             "{'providers': {'gemini': {'keys': [{'id': '%s', 'api_key': "
             "'env:GKP_TEST_KEY_1'}]}}}",
             bad[i].id);
    EXPECT_ERROR(json, "providers.gemini.keys[0].id", bad[i].why, "1 to 63");
  }
  /* 63 characters and every allowed character are fine. */
  gkp__config *cfg =
      load_ok("{'providers': {'gemini': {'keys': [{'id': "
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
    snprintf(json, sizeof json,
             "{'providers': {'gemini': {'keys': [{'id': 'k', 'api_key': "
             "'env:GKP_TEST_KEY_1', 'max_inflight': %s}]}}}",
             bad[i]);
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

/* ---- Secrets never leak --------------------------------------------------------- */

static void test_no_secret_in_any_message(void **state) {
  (void)state;
  /* A literal secret, an env secret and a .env secret all in play while
   * every later part of the file is wrong in turn. */
  write_file(g_dotenv, "GKP_TEST_KEY_3=" SECRET_DOT "\n", 0644);
#define SECRET_POOL                                                                                \
  "'providers': {'gemini': {'keys': [{'id': 'a', 'api_key': '" SECRET_LIT "'},"                    \
  "{'id': 'b', 'api_key': 'env:GKP_TEST_KEY_1'}, {'id': 'c', 'api_key': 'env:GKP_TEST_KEY_3'},"    \
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
      "{'providers': {'gemini': {'keys': [{'id': 'AIzaSyLITSECRETxx0123456789abcdefghijk', "
      "'api_key': 'env:GKP_TEST_KEY_1'}]}}}",
  };
  for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++) {
    gkp__config *cfg;
    gkp_error err;
    g_nlogs = 0;
    int rc = load_json_mode(broken[i], 0644, &cfg, &err);
    assert_true(rc < 0);
    assert_null(cfg);
    assert_int_equal(g_nlogs, 0); /* no warnings about a configuration that is refused */
    assert_no_secret(err.msg);
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

static int run_config_tests(void) {
  const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
      T(test_minimal_pool),
      T(test_full_example),
      T(test_example_file),
      T(test_bom_and_whitespace),
      T(test_parse_text),
      T(test_other_providers_ignored),
      T(test_env_wins_over_dotenv),
      T(test_missing_variable),
      T(test_literal_key_warning),
      T(test_api_key_forms),
      T(test_invalid_json),
      T(test_structure_errors),
      T(test_id_rules),
      T(test_max_inflight),
      T(test_load_file_errors),
      T(test_find_explicit_and_env),
      T(test_find_local_then_xdg),
      T(test_base_url),
      T(test_no_secret_in_any_message),
#undef T
  };
  return cmocka_run_group_tests_name("config/keys", tests, NULL, NULL);
}

int main(void) {
  int failed = run_config_tests();
  failed += run_dotenv_tests();
  failed += run_model_tests();
  return failed == 0 ? 0 : 1;
}
