/*
 * fuzz_config.c - keys.json text through gkp__config_parse.
 *
 * Every input gives either a configuration whose lookups and fallback
 * chains hold together, or a negative errno with one line of text; no
 * message or log line ever holds a key taken from the environment.
 */
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "fuzz.h"

/* The value of every variable a seed names: a secret that must never show. */
/* Shaped like a real key (split so that no tracked line holds one). */
#define SECRET "AIza" "FuzzSecretValue0123456789abcdefghij"

static const char *const vars[] = {
    "GEMINI_KEY_PROJECT_1",
    "GEMINI_KEY_PROJECT_2",
    "GEMINI_KEY_PROJECT_3",
    "GEMINI_KEY_PROJECT_3A",
    "GEMINI_KEY_PROJECT_3B",
    "GEMINI_KEY_1",
    "GEMINI_KEY_2",
    "K1",
    "K2",
    "K",
};

/* Whether the input itself holds (part of) the secret: then a message
 * quoting the input may hold it too, and proves nothing. */
static int input_has_secret;

static void check_line(const char *line) {
  FUZZ_CHECK(line != NULL);
  FUZZ_CHECK(strchr(line, '\n') == NULL);
  FUZZ_CHECK(input_has_secret || strstr(line, SECRET) == NULL);
}

static void on_log(void *ud, int level, const char *line) {
  (void)ud;
  FUZZ_CHECK(level >= GKP_LOG_DEBUG && level <= GKP_LOG_ERROR);
  check_line(line);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
    setenv(vars[i], SECRET, 1);
  }
  setenv("EMPTY_KEY", "", 1);
  unsetenv("GOOGLE_GEMINI_BASE_URL");
  return 0;
}

/* Every fallback names a known model, and no chain loops. */
static void check_chains(const gkp__config *cfg) {
  for (size_t i = 0; i < cfg->nmodels; i++) {
    const gkp__model_cfg *m = &cfg->models[i];
    FUZZ_CHECK(m->id != NULL && gkp__config_model(cfg, m->id) != NULL);
    size_t steps = 0;
    while (m->fallback != NULL) {
      m = gkp__config_model(cfg, m->fallback);
      FUZZ_CHECK(m != NULL);
      FUZZ_CHECK(++steps <= cfg->nmodels);
    }
  }
}

static void check_config(const gkp__config *cfg) {
  FUZZ_CHECK(cfg->nkeys > 0 && cfg->base_url != NULL);
  FUZZ_CHECK(cfg->max_inflight >= 1 && cfg->max_inflight <= 16);
  for (size_t i = 0; i < cfg->nkeys; i++) {
    const gkp__key_cfg *k = &cfg->keys[i];
    FUZZ_CHECK(gkp__config_key(cfg, k->id) == k); /* ids are unique */
    FUZZ_CHECK(strlen(k->id) > 0 && strlen(k->id) < GKP_ID_MAX);
    FUZZ_CHECK(strlen(k->project) > 0 && strlen(k->project) < GKP_ID_MAX);
    FUZZ_CHECK(k->secret != NULL && k->secret[0] != '\0' && k->source != NULL);
    FUZZ_CHECK(k->max_inflight >= 1 && k->max_inflight <= 16);
  }
  check_chains(cfg);
  for (size_t i = 0; i < cfg->nprofiles; i++) {
    const gkp__profile_cfg *p = &cfg->profiles[i];
    FUZZ_CHECK(gkp__config_profile(cfg, p->name) != NULL);
    FUZZ_CHECK(p->model != NULL && gkp__config_model(cfg, p->model) != NULL);
    for (size_t t = 0; t < p->ntools; t++) {
      FUZZ_CHECK(p->tools[t] != NULL);
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  gkp__config *cfg = NULL;
  gkp_error err;
  memset(&err, 0, sizeof err);
  input_has_secret = memmem(data, size, "AIzaFuzz", 8) != NULL;
  int rc = gkp__config_parse((const char *)data, size, "keys.json", NULL, on_log, NULL, &cfg, &err);
  if (rc == 0) {
    FUZZ_CHECK(cfg != NULL);
    check_config(cfg);
    gkp__config_free(cfg);
  } else {
    FUZZ_CHECK(rc < 0 && cfg == NULL);
    FUZZ_CHECK(err.code == rc && err.msg[0] != '\0');
    check_line(err.msg);
  }
  return 0;
}
