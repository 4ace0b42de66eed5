/*
 * test_models.c - the built-in model table, "models", "fallback" and profiles.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"

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
      {"gemini-embedding-001", 100, 30000, 1000, NULL, 0, -1},
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
  gkp__config *cfg =
      load_ok("{" POOL ", 'models': {"
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
  EXPECT_ERROR("{" POOL ", 'models': {'status': {}}}", "models: model id \"status\"", "filesystem");
}

static void test_fallback_override(void **state) {
  (void)state;
  gkp__config *cfg =
      load_ok("{" POOL ", 'models': {'my-new-model': {'fallback': 'gemini-2.5-flash'}},"
              "'fallback': {'gemini-3-flash-preview': 'gemma-3-27b-it',"
              "'gemini-2.5-flash': null, 'gemini-3.1-flash-lite-preview': 'my-new-model',"
              "'gemini-2.5-flash-image': 'gemini-3.1-flash-lite-preview'}}");
  assert_string_equal(gkp__config_model(cfg, "gemini-3-flash-preview")->fallback, "gemma-3-27b-it");
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
  EXPECT_ERROR("{" POOL ", 'models': {'mine': {'fallback': 'nope'}}}", "models.mine.fallback",
               "\"nope\" is not a known model");
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
      {"pro", "gemini-3.1-pro-preview"}, {"flash", "gemini-3-flash-preview"},
      {"flash-2.5", "gemini-2.5-flash"}, {"flash-lite", "gemini-3.1-flash-lite-preview"},
      {"gemma", "gemma-3-27b-it"},       {"image", "gemini-2.5-flash-image"},
      {"auto", "gemini-3-flash-preview"},
  };
  for (size_t i = 0; i < 7; i++) {
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
    assert_int_equal(p->route, i == 6); /* "auto" routes; its model is nominal */
  }
  for (size_t i = 0; i < cfg->nmodels; i++) {
    const gkp__profile_cfg *p = gkp__config_profile(cfg, cfg->models[i].id);
    assert_non_null(p);
    assert_string_equal(p->model, cfg->models[i].id);
  }
  assert_int_equal(cfg->nprofiles, 7 + cfg->nmodels);
  assert_null(gkp__config_profile(cfg, "research"));
  assert_null(gkp__config_profile(cfg, NULL));
  gkp__config_free(cfg);
}

static void test_user_profiles_valid(void **state) {
  (void)state;
  gkp__config *cfg =
      load_ok("{" POOL ", 'models': {'my-new-model': {'thinking': 'budget'}}, 'profiles': {"
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
  assert_int_equal(cfg->nprofiles, 7 + cfg->nmodels + 1);
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
  EXPECT_ERROR("{" POOL ", 'profiles': {'r': {'model': 5}}}", "profiles.r.model", "got a number");
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

int run_model_tests(void) {
  const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
      T(test_builtin_table),   T(test_model_overrides),  T(test_fallback_override),
      T(test_fallback_cycles), T(test_default_profiles), T(test_user_profiles_valid),
      T(test_profile_errors),
#undef T
  };
  return cmocka_run_group_tests_name("config/models", tests, NULL, NULL);
}
