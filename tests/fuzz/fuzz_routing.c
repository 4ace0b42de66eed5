/*
 * fuzz_routing.c - the "routing" object of keys.json through the config
 * parser, then decisions with the rules it gave.
 *
 * The input is the value of "routing" in an otherwise valid keys.json.
 * Every input gives either rules that hold together (every model named is
 * known, a "general" type with no words comes last or is reachable, every
 * decision names at least one candidate or skip, its JSON parses), or a
 * negative errno with one line of text.
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "engine/route.h"
#include "fuzz.h"

#define HEAD                                                                                       \
  "{\"providers\": {\"gemini\": {\"keys\": [{\"id\": \"k1\", \"api_key\": "                        \
  "\"env:FUZZ_ROUTE_KEY\"}]}}, \"routing\": "

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  setenv("FUZZ_ROUTE_KEY", "fake-fuzz-route-key", 1);
  unsetenv("GOOGLE_GEMINI_BASE_URL");
  return 0;
}

static void check_rules(const gkp__config *cfg) {
  const gkp__routing *r = &cfg->routing;
  FUZZ_CHECK(r->ntypes > 0);
  for (size_t i = 0; i < r->ntypes; i++) {
    const gkp__route_type *t = &r->types[i];
    FUZZ_CHECK(t->name != NULL && t->name[0] != '\0');
    for (size_t m = 0; m < t->models.n; m++) {
      FUZZ_CHECK(gkp__config_model(cfg, t->models.v[m]) != NULL);
    }
    for (size_t w = 0; w < t->words.n; w++) {
      FUZZ_CHECK(t->words.v[w][0] != '\0');
    }
  }
  for (int q = 0; q < GKP__Q_COUNT; q++) {
    FUZZ_CHECK(r->q[q].models.n > 0);
    for (size_t m = 0; m < r->q[q].models.n; m++) {
      FUZZ_CHECK(gkp__config_model(cfg, r->q[q].models.v[m]) != NULL);
    }
  }
  static const char *const tasks[] = {"summarize this", "fix typo here",
                                      "the latest news on a contract dispute, in depth",
                                      "refactor and debug the strategic plan"};
  for (size_t i = 0; i < sizeof tasks / sizeof tasks[0]; i++) {
    for (int q = -1; q < GKP__Q_COUNT; q++) {
      gkp__route out;
      gkp__route_in in = {
          .task = tasks[i], .len = strlen(tasks[i]), .quality = q, .enable_tools = 1};
      gkp__route_decide(cfg, &in, NULL, NULL, 0, &out);
      FUZZ_CHECK(out.ncands > 0);
      FUZZ_CHECK(out.ncands <= GKP__ROUTE_MAX && out.nskipped <= GKP__ROUTE_MAX);
      char *json = gkp__route_json(&out);
      FUZZ_CHECK(json != NULL);
      cJSON *doc = cJSON_Parse(json);
      FUZZ_CHECK(doc != NULL);
      cJSON_Delete(doc);
      free(json);
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t hl = strlen(HEAD);
  char *json = malloc(hl + size + 2);
  if (json == NULL) {
    return 0;
  }
  memcpy(json, HEAD, hl);
  memcpy(json + hl, data, size);
  json[hl + size] = '}';
  json[hl + size + 1] = '\0';
  gkp__config *cfg = NULL;
  gkp_error err;
  memset(&err, 0, sizeof err);
  int rc = gkp__config_parse(json, hl + size + 1, "keys.json", NULL, NULL, NULL, &cfg, &err);
  if (rc == 0) {
    FUZZ_CHECK(cfg != NULL);
    check_rules(cfg);
    gkp__config_free(cfg);
  } else {
    FUZZ_CHECK(rc < 0 && cfg == NULL);
    FUZZ_CHECK(err.code == rc && err.msg[0] != '\0' && strchr(err.msg, '\n') == NULL);
  }
  free(json);
  return 0;
}
