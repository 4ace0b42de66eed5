/*
 * test_route.c - the routing decision as a pure function: task types and
 * complexities of typical tasks, the quality given or inferred, skips from
 * an injected per-model quota snapshot, the order from injected scores,
 * rules from "routing" in the configuration and one line per mistake in them.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/config.h"
#include "engine/engine.h"
#include "engine/route.h"

#define POOL                                                                                       \
  "{\"providers\": {\"gemini\": {\"keys\": [{\"id\": \"k1\", \"api_key\": "                        \
  "\"env:GKP_ROUTE_KEY\"}]}}"

static gkp__config *load(const char *extra) {
  char json[4096];
  gkp__config *cfg = NULL;
  gkp_error err;
  setenv("GKP_ROUTE_KEY", "fake-route-test-key", 1);
  snprintf(json, sizeof json, "%s%s%s}", POOL, extra[0] ? ", " : "", extra);
  int rc = gkp__config_parse(json, strlen(json), "keys.json", NULL, NULL, NULL, &cfg, &err);
  if (rc != 0) {
    fail_msg("config: %s", err.msg);
  }
  return cfg;
}

static gkp__route decide(const gkp__config *cfg, const char *task, int quality,
                         const gkp__model_quota *q, const gkp__score *s, size_t ns) {
  gkp__route r;
  gkp__route_in in = {.task = task, .len = strlen(task), .quality = quality};
  gkp__route_decide(cfg, &in, q, s, ns, &r);
  return r;
}

static void test_table(void **state) {
  (void)state;
  gkp__config *cfg = load("");
  static const struct {
    const char *task, *type, *cx, *model, *thinking;
    unsigned tools;
  } rows[] = {
      {"fix typo in: teh cat sat", "micro", "low", "gemma-3-1b-it", NULL, 0},
      {"convert to json: a=1, b=2", "micro", "low", "gemma-3-1b-it", NULL, 0},
      {"intent analysis for this request", "intent", "low", "gemini-3-flash-preview", "minimal", 0},
      {"Generate image of a red bicycle", "image", "low", "gemini-2.5-flash-image", NULL, 0},
      {"create diagram of the login flow, then explain it", "image", "medium",
       "gemini-2.5-flash-image", NULL, 0},
      {"What happened in the news this week about Debian releases?", "current_research", "medium",
       "gemini-3-flash-preview", "medium", GKP__RT_SEARCH},
      {"write a shell command to find large files", "tool_use", "low", "gemini-3-flash-preview",
       "minimal", GKP__RT_CODE},
      {"summarize this", "general", "low", "gemini-3.1-flash-lite-preview", "minimal", 0},
      {"hello there", "general", "low", "gemini-3.1-flash-lite-preview", "minimal", 0},
      {"compare these two approaches to caching in a web service", "general", "medium",
       "gemini-3-flash-preview", "medium", 0},
      {"Tell me a story about a lighthouse keeper and his cat, in three parts", "general", "medium",
       "gemini-3-flash-preview", "medium", 0},
      {"debug this crash in the parser", "general", "high", "gemini-3-flash-preview", "high", 0},
      {"a security audit of the login code", "general", "high", "gemini-3-flash-preview", "high",
       0},
      {"novel research directions for key pooling", "general", "research", "gemini-3.1-pro-preview",
       "high", 0},
  };
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    gkp__route r = decide(cfg, rows[i].task, -1, NULL, NULL, 0);
    printf("%-60.60s %s/%s -> %s\n", rows[i].task, r.task_type, gkp__cx_name(r.complexity),
           r.cands[0].model);
    assert_string_equal(r.task_type, rows[i].type);
    assert_string_equal(gkp__cx_name(r.complexity), rows[i].cx);
    assert_true(r.ncands > 0);
    assert_string_equal(r.cands[0].model, rows[i].model);
    if (rows[i].thinking == NULL) {
      assert_null(r.cands[0].thinking);
    } else {
      assert_string_equal(r.cands[0].thinking, rows[i].thinking);
    }
    assert_int_equal(r.cands[0].tools, rows[i].tools);
    assert_int_equal(r.quality, r.complexity); /* inferred: low->draft ... research->research */
    assert_false(r.quality_given);
  }
  /* A micro task's phrase in a long task is no micro task. */
  char longer[700];
  memset(longer, 'x', sizeof longer);
  memcpy(longer, "fix typo ", 9);
  longer[sizeof longer - 1] = '\0';
  gkp__route r = decide(cfg, longer, -1, NULL, NULL, 0);
  assert_string_equal(r.task_type, "general");
  /* Phrases match at the start of a word: "latest" is no "test". */
  r = decide(cfg, "withdraw the storage plan", -1, NULL, NULL, 0);
  assert_string_equal(r.task_type, "general");
  gkp__config_free(cfg);
}

static void test_quality_given(void **state) {
  (void)state;
  gkp__config *cfg = load("");
  gkp__route r = decide(cfg, "summarize this", GKP__Q_PRODUCTION, NULL, NULL, 0);
  assert_true(r.quality_given);
  assert_int_equal(r.quality, GKP__Q_PRODUCTION);
  assert_string_equal(r.cands[0].model, "gemini-3-flash-preview");
  assert_string_equal(r.cands[0].thinking, "high");
  r = decide(cfg, "debug this crash", GKP__Q_DRAFT, NULL, NULL, 0);
  assert_string_equal(r.cands[0].model, "gemini-3.1-flash-lite-preview");
  assert_string_equal(r.cands[0].thinking, "minimal");
  /* embedding words count only when no quality is given */
  r = decide(cfg, "semantic search over my notes", -1, NULL, NULL, 0);
  assert_string_equal(r.task_type, "embedding");
  r = decide(cfg, "semantic search over my notes", GKP__Q_STANDARD, NULL, NULL, 0);
  assert_string_equal(r.task_type, "general");
  gkp__config_free(cfg);
}

static void test_skips(void **state) {
  (void)state;
  gkp__config *cfg = load("");
  gkp__model_quota *q = calloc(cfg->nmodels, sizeof *q);
  int flash = gkp__config_model_index(cfg, "gemini-3-flash-preview");
  int pro = gkp__config_model_index(cfg, "gemini-3.1-pro-preview");
  q[flash].skip = GKP__SKIP_RPD;
  snprintf(q[flash].detail, sizeof q[flash].detail, "used up");
  q[pro].skip = GKP__SKIP_NO_FREE_TIER;
  gkp__route r = decide(cfg, "deep analysis of the strategic options", -1, q, NULL, 0);
  assert_int_equal(r.nskipped, 2);
  assert_string_equal(r.skipped[0].model, "gemini-3.1-pro-preview");
  assert_int_equal(r.skipped[0].skip, GKP__SKIP_NO_FREE_TIER);
  assert_string_equal(r.skipped[1].model, "gemini-3-flash-preview");
  assert_string_equal(gkp__skip_name(r.skipped[1].skip), "rpd_exhausted");
  assert_string_equal(r.cands[0].model, "gemini-2.5-flash");
  assert_string_equal(r.cands[0].thinking, "high");
  /* everything skipped: no candidate */
  for (size_t i = 0; i < cfg->nmodels; i++) {
    q[i].skip = GKP__SKIP_DISABLED;
  }
  r = decide(cfg, "summarize this", -1, q, NULL, 0);
  assert_int_equal(r.ncands, 0);
  assert_int_equal(r.nskipped, 1);
  char *json = gkp__route_json(&r);
  assert_non_null(strstr(json, "\"reason\":\"keys_disabled\""));
  free(json);
  free(q);
  gkp__config_free(cfg);
}

static void test_scores(void **state) {
  (void)state;
  gkp__config *cfg = load("");
  gkp__score s[2] = {{"general", "medium", "gemini-2.5-flash", 20, 4},
                     {"general", "medium", "gemini-3-flash-preview", 2, 1}};
  gkp__route r = decide(cfg, "compare these two caching approaches", -1, NULL, s, 2);
  assert_true(r.scored);                                                  /* 5 scores on the pair */
  assert_string_equal(r.cands[0].model, "gemini-2.5-flash");              /* 5.0 */
  assert_string_equal(r.cands[1].model, "gemini-3.1-flash-lite-preview"); /* unscored: 3 */
  assert_string_equal(r.cands[2].model, "gemini-3-flash-preview");        /* 2.0 */
  s[0].n = 3; /* 4 scores: the rules' order */
  r = decide(cfg, "compare these two caching approaches", -1, NULL, s, 2);
  assert_false(r.scored);
  assert_string_equal(r.cands[0].model, "gemini-3-flash-preview");
  /* a scored model without quota stays skipped */
  s[0].n = 4;
  gkp__model_quota *q = calloc(cfg->nmodels, sizeof *q);
  q[gkp__config_model_index(cfg, "gemini-2.5-flash")].skip = GKP__SKIP_RPD;
  r = decide(cfg, "compare these two caching approaches", -1, q, s, 2);
  assert_string_equal(r.cands[0].model, "gemini-3.1-flash-lite-preview");
  free(q);
  gkp__config_free(cfg);
}

static void test_config_rules(void **state) {
  (void)state;
  gkp__config *cfg = load(
      "\"routing\": {\"types\": {\"legal\": {\"words\": [\"Contract\"], \"models\": "
      "[\"gemini-2.5-flash\"], \"tools\": [\"url_context\"]}, \"micro\": {\"max_chars\": 20}}, "
      "\"complexity\": {\"high\": [\"contract\"]}, \"quality\": {\"production\": "
      "{\"thinking\": \"low\"}}}");
  gkp__route r = decide(cfg, "check this contract", -1, NULL, NULL, 0);
  assert_string_equal(r.task_type, "legal");
  assert_string_equal(gkp__cx_name(r.complexity), "high");
  assert_string_equal(r.cands[0].model, "gemini-2.5-flash");
  assert_string_equal(r.cands[0].thinking, "low");
  assert_int_equal(r.cands[0].tools, GKP__RT_URL);
  r = decide(cfg, "fix typo in this longer sentence", -1, NULL, NULL, 0);
  assert_string_equal(r.task_type, "general"); /* micro now only under 20 characters */
  gkp__config_free(cfg);
}

static void bad(const char *extra, const char *where) {
  char json[4096];
  gkp__config *cfg = NULL;
  gkp_error err;
  setenv("GKP_ROUTE_KEY", "fake-route-test-key", 1);
  snprintf(json, sizeof json, "%s, %s}", POOL, extra);
  int rc = gkp__config_parse(json, strlen(json), "keys.json", NULL, NULL, NULL, &cfg, &err);
  printf("%s\n", err.msg);
  assert_int_equal(rc, -EINVAL);
  assert_null(cfg);
  assert_non_null(strstr(err.msg, where));
  assert_null(strchr(err.msg, '\n'));
}

static void test_config_errors(void **state) {
  (void)state;
  bad("\"routing\": []", "keys.json: routing: expected an object");
  bad("\"routing\": {\"typos\": {}}", "routing: unknown field \"typos\"");
  bad("\"routing\": {\"types\": {\"x\": {\"models\": [\"a\"]}}}",
      "routing.types.x: a new task type needs \"words\"");
  bad("\"routing\": {\"types\": {\"x\": {\"words\": [\"a\"], \"models\": [\"nope\"]}}}",
      "routing.types.x.models[0]: \"nope\" is not a known model");
  bad("\"routing\": {\"types\": {\"x\": {\"words\": [\"\"]}}}", "routing.types.x.words[0]");
  bad("\"routing\": {\"types\": {\"x\": {\"words\": [\"a\"], \"thinking\": \"max\"}}}",
      "routing.types.x.thinking");
  bad("\"routing\": {\"types\": {\"x\": {\"words\": [\"a\"], \"tools\": [\"web\"]}}}",
      "routing.types.x.tools[0]: unknown tool \"web\"");
  bad("\"routing\": {\"types\": {\"general\": {\"words\": [\"a\"]}}}",
      "routing.types.general.words");
  bad("\"routing\": {\"complexity\": {\"extreme\": [\"a\"]}}", "unknown complexity \"extreme\"");
  bad("\"routing\": {\"quality\": {\"best\": {}}}", "unknown quality level \"best\"");
  bad("\"routing\": {\"quality\": {\"draft\": {\"models\": []}}}", "routing.quality.draft.models");
  bad("\"profiles\": {\"q\": {\"route\": \"manual\"}}", "profiles.q.route");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_table),        cmocka_unit_test(test_quality_given),
      cmocka_unit_test(test_skips),        cmocka_unit_test(test_scores),
      cmocka_unit_test(test_config_rules), cmocka_unit_test(test_config_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
