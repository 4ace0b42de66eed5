/*
 * models.c - the built-in model table and fallback chains.
 *
 * The table holds the original project's verified free-tier limits (SPEC §2).
 * A configuration copies it, applies "models" (limit overrides, new models),
 * then "fallback" (chain overrides), and checks the chains.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/internal.h"

#define GEMMA_LIMITS                                                                               \
  { 30, 15000, 14400 }
#define UNKNOWN_LIMITS                                                                             \
  { GKP_LIMIT_UNKNOWN, GKP_LIMIT_UNKNOWN, GKP_LIMIT_UNKNOWN }

/* In chain order.  String literals: never freed, never written. */
static const gkp__model_cfg builtin_models[] = {
    {.id = "gemini-3.1-pro-preview",
     .limits = {0, 0, 0},
     .fallback = "gemini-3-flash-preview",
     .thinking_level = 1},
    {.id = "gemini-3-flash-preview",
     .limits = {5, 250000, 20},
     .fallback = "gemini-2.5-flash",
     .thinking_level = 1},
    {.id = "gemini-2.5-flash",
     .limits = {15, 250000, 1000},
     .fallback = "gemini-3.1-flash-lite-preview",
     .thinking_level = 0},
    {.id = "gemini-3.1-flash-lite-preview",
     .limits = {15, 250000, 500},
     .fallback = NULL,
     .thinking_level = 1},
    {.id = "gemma-3-1b-it",
     .limits = GEMMA_LIMITS,
     .fallback = "gemma-3-4b-it",
     .thinking_level = -1},
    {.id = "gemma-3-4b-it",
     .limits = GEMMA_LIMITS,
     .fallback = "gemma-3-12b-it",
     .thinking_level = -1},
    {.id = "gemma-3-12b-it",
     .limits = GEMMA_LIMITS,
     .fallback = "gemma-3-27b-it",
     .thinking_level = -1},
    {.id = "gemma-3-27b-it",
     .limits = GEMMA_LIMITS,
     .fallback = "gemini-3.1-flash-lite-preview",
     .thinking_level = -1},
    {.id = "gemini-2.5-flash-image",
     .limits = UNKNOWN_LIMITS,
     .fallback = NULL,
     .image_output = 1,
     .thinking_level = -1},
    {.id = "gemini-embedding-001", /* embedContent, batchEmbedContents */
     .limits = {100, 30000, 1000},
     .fallback = NULL,
     .thinking_level = -1},
};

#define NBUILTIN (sizeof builtin_models / sizeof builtin_models[0])

/* Where a model's fallback was last set, for messages. */
enum { FB_TABLE = 0, FB_MODELS, FB_FALLBACK };

/* See config.h. */
size_t gkp__builtin_model_count(void) {
  return NBUILTIN;
}

/* See config.h.  NULL past the end. */
const gkp__model_cfg *gkp__builtin_model(size_t i) {
  return i < NBUILTIN ? &builtin_models[i] : NULL;
}

/* See internal.h. */
void gkp__model_cfg_clear(gkp__model_cfg *m) {
  free(m->id);
  free(m->fallback);
  memset(m, 0, sizeof *m);
}

/* The index of model `id` in cfg->models, or -1. */
static long model_index(const gkp__config *cfg, const char *id) {
  for (size_t i = 0; id != NULL && i < cfg->nmodels; i++) {
    if (strcmp(cfg->models[i].id, id) == 0) {
      return (long)i;
    }
  }
  return -1;
}

/* Appends a model: a copy of `from` when given, else an unknown one whose
 * thinking style and image output are guessed from its id the way the
 * table's are (gemini-3*: level, gemini-2.5*: budget, "-image": images).
 * *origin grows along.  Returns the new index or -ENOMEM. */
static long model_add(gkp__config *cfg, unsigned char **origin, const char *id,
                      const gkp__model_cfg *from) {
  gkp__model_cfg *models = realloc(cfg->models, (cfg->nmodels + 1) * sizeof *models);
  if (models == NULL) {
    return -ENOMEM;
  }
  cfg->models = models;
  unsigned char *o = realloc(*origin, cfg->nmodels + 1);
  if (o == NULL) {
    return -ENOMEM;
  }
  *origin = o;
  gkp__model_cfg *m = &models[cfg->nmodels];
  memset(m, 0, sizeof *m);
  o[cfg->nmodels] = FB_TABLE;
  cfg->nmodels++;
  m->id = strdup(id);
  if (from != NULL) {
    m->limits = from->limits;
    m->fallback = from->fallback != NULL ? strdup(from->fallback) : NULL;
    m->image_output = from->image_output;
    m->thinking_level = from->thinking_level;
  } else {
    m->limits = (gkp_limits)UNKNOWN_LIMITS;
    m->image_output = strstr(id, "-image") != NULL;
    m->thinking_level = m->image_output                      ? -1
                        : strncmp(id, "gemini-3", 8) == 0    ? 1
                        : strncmp(id, "gemini-2.5", 10) == 0 ? 0
                                                             : -1;
  }
  if (m->id == NULL || (from != NULL && from->fallback != NULL && m->fallback == NULL)) {
    return -ENOMEM;
  }
  return (long)cfg->nmodels - 1;
}

/* Replaces a model's fallback with `to` (NULL: end of chain).  Returns 0 or
 * -ENOMEM. */
static int set_fallback(gkp__model_cfg *m, const char *to) {
  char *copy = to != NULL ? strdup(to) : NULL;
  if (to != NULL && copy == NULL) {
    return -ENOMEM;
  }
  free(m->fallback);
  m->fallback = copy;
  return 0;
}

/* Reads a fallback value: a model id or null.  Returns 0 and *to (borrowed,
 * NULL for null) or -EINVAL naming `where`. */
static int read_fallback(const gkp__cfg_ctx *ctx, const cJSON *item, const char *where,
                         const char **to) {
  if (cJSON_IsNull(item)) {
    *to = NULL;
    return 0;
  }
  if (!cJSON_IsString(item)) {
    return gkp__cfg_fail(ctx, -EINVAL, where, "expected a model id or null, got %s",
                         gkp__json_type(item));
  }
  *to = item->valuestring;
  return 0;
}

/* Applies one "models" entry to model index i.  Returns 0 or a negative
 * errno with ctx->err filled. */
static int apply_model_entry(const gkp__cfg_ctx *ctx, gkp__config *cfg, unsigned char *origin,
                             size_t i, const cJSON *entry) {
  gkp__model_cfg *m = &cfg->models[i];
  char where[160];
  static const char *const limit_names[] = {"rpm", "tpm", "rpd"};
  int64_t *limits[] = {&m->limits.rpm, &m->limits.tpm, &m->limits.rpd};
  for (size_t k = 0; k < 3; k++) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(entry, limit_names[k]);
    snprintf(where, sizeof where, "models.%s.%s", m->id, limit_names[k]);
    if (v == NULL) {
      continue;
    }
    if (cJSON_IsNull(v)) {
      *limits[k] = GKP_LIMIT_UNKNOWN;
    } else if (gkp__json_int(ctx, v, where, 0, INT64_MAX, limits[k]) < 0) {
      return -EINVAL;
    }
  }
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(entry, "fallback");
  if (v != NULL) {
    const char *to;
    snprintf(where, sizeof where, "models.%s.fallback", m->id);
    if (read_fallback(ctx, v, where, &to) < 0) {
      return -EINVAL;
    }
    if (set_fallback(m, to) < 0) {
      return gkp__cfg_fail(ctx, -ENOMEM, where, "out of memory");
    }
    origin[i] = FB_MODELS;
  }
  v = cJSON_GetObjectItemCaseSensitive(entry, "image_output");
  if (v != NULL) {
    if (!cJSON_IsBool(v)) {
      snprintf(where, sizeof where, "models.%s.image_output", m->id);
      return gkp__cfg_fail(ctx, -EINVAL, where, "expected true or false, got %s",
                           gkp__json_type(v));
    }
    m->image_output = cJSON_IsTrue(v);
  }
  v = cJSON_GetObjectItemCaseSensitive(entry, "thinking");
  if (v != NULL) {
    const char *s = cJSON_IsString(v) ? v->valuestring : "";
    snprintf(where, sizeof where, "models.%s.thinking", m->id);
    if (strcmp(s, "level") == 0 || strcmp(s, "budget") == 0 || strcmp(s, "none") == 0) {
      m->thinking_level = s[0] == 'l' ? 1 : s[0] == 'b' ? 0 : -1;
    } else {
      char q[96];
      return gkp__cfg_fail(ctx, -EINVAL, where,
                           "expected \"level\" (Gemini 3 thinkingLevel), \"budget\" (Gemini 2.5 "
                           "thinkingBudget) or \"none\", got %s",
                           cJSON_IsString(v) ? gkp__cfg_quote(s, q, sizeof q) : gkp__json_type(v));
    }
  }
  return 0;
}

/* Applies the file's "models" object.  Returns 0 or a negative errno. */
static int apply_models(const gkp__cfg_ctx *ctx, gkp__config *cfg, unsigned char **origin,
                        const cJSON *models) {
  if (models == NULL || cJSON_IsNull(models)) {
    return 0;
  }
  if (!cJSON_IsObject(models)) {
    return gkp__cfg_fail(ctx, -EINVAL, "models", "expected an object of model ids, got %s",
                         gkp__json_type(models));
  }
  const cJSON *entry;
  cJSON_ArrayForEach(entry, models) {
    char q[96];
    const char *problem = gkp__cfg_name_problem(entry->string);
    if (problem != NULL) {
      return gkp__cfg_fail(ctx, -EINVAL, "models",
                           "model id %s %s; model ids become directory names, so use 1 to 63 "
                           "letters, digits, '.', '_' or '-'",
                           gkp__cfg_quote(entry->string, q, sizeof q), problem);
    }
    if (!cJSON_IsObject(entry)) {
      char where[160];
      snprintf(where, sizeof where, "models.%s", entry->string);
      return gkp__cfg_fail(
          ctx, -EINVAL, where,
          "expected an object such as {\"rpm\": 5, \"tpm\": 250000, \"rpd\": 20}, got %s",
          gkp__json_type(entry));
    }
    long i = model_index(cfg, entry->string);
    if (i < 0) {
      i = model_add(cfg, origin, entry->string, NULL);
      if (i < 0) {
        return gkp__cfg_fail(ctx, -ENOMEM, "models", "out of memory");
      }
    }
    int rc = apply_model_entry(ctx, cfg, *origin, (size_t)i, entry);
    if (rc < 0) {
      return rc;
    }
  }
  return 0;
}

/* Applies the file's top-level "fallback" object.  Returns 0 or a negative
 * errno. */
static int apply_fallbacks(const gkp__cfg_ctx *ctx, gkp__config *cfg, unsigned char *origin,
                           const cJSON *fallback) {
  if (fallback == NULL || cJSON_IsNull(fallback)) {
    return 0;
  }
  if (!cJSON_IsObject(fallback)) {
    return gkp__cfg_fail(
        ctx, -EINVAL, "fallback",
        "expected an object such as {\"gemini-3-flash-preview\": \"gemini-2.5-flash\"}, got %s",
        gkp__json_type(fallback));
  }
  const cJSON *entry;
  cJSON_ArrayForEach(entry, fallback) {
    char q[96];
    long i = model_index(cfg, entry->string);
    if (i < 0) {
      return gkp__cfg_fail(
          ctx, -EINVAL, "fallback",
          "%s is not a known model; use a built-in model id or add it under \"models\"",
          gkp__cfg_quote(entry->string, q, sizeof q));
    }
    char where[160];
    const char *to;
    snprintf(where, sizeof where, "fallback.%s", entry->string);
    if (read_fallback(ctx, entry, where, &to) < 0) {
      return -EINVAL;
    }
    if (set_fallback(&cfg->models[i], to) < 0) {
      return gkp__cfg_fail(ctx, -ENOMEM, where, "out of memory");
    }
    origin[i] = FB_FALLBACK;
  }
  return 0;
}

/* Writes where model i's fallback was set ("fallback.ID" or
 * "models.ID.fallback") into buf. */
static const char *fallback_where(const gkp__config *cfg, const unsigned char *origin, size_t i,
                                  char *buf, size_t len) {
  if (origin[i] == FB_FALLBACK) {
    snprintf(buf, len, "fallback.%s", cfg->models[i].id);
  } else {
    snprintf(buf, len, "models.%s.fallback", cfg->models[i].id);
  }
  return buf;
}

/* Checks that every fallback names a known model and that no chain loops.
 * Returns 0 or -EINVAL naming where the offending fallback was set. */
static int check_chains(const gkp__cfg_ctx *ctx, const gkp__config *cfg,
                        const unsigned char *origin) {
  char where[160];
  char q[96];
  for (size_t i = 0; i < cfg->nmodels; i++) {
    const char *to = cfg->models[i].fallback;
    if (to != NULL && model_index(cfg, to) < 0) {
      return gkp__cfg_fail(
          ctx, -EINVAL, fallback_where(cfg, origin, i, where, sizeof where),
          "%s is not a known model; use a built-in model id or add it under \"models\"",
          gkp__cfg_quote(to, q, sizeof q));
    }
  }
  for (size_t i = 0; i < cfg->nmodels; i++) {
    long j = (long)i;
    size_t steps = 0;
    while (j >= 0 && steps <= cfg->nmodels) {
      j = model_index(cfg, cfg->models[j].fallback);
      steps++;
    }
    if (j < 0) {
      continue;
    }
    /* j is on the loop: blame the link the file set (the table has no
     * loops) that comes first in the model list, so the message does not
     * depend on where the walk happened to stop, and list the loop from
     * there. */
    long blame = -1;
    long k = j;
    do {
      if (origin[k] != FB_TABLE && (blame < 0 || k < blame)) {
        blame = k;
      }
      k = model_index(cfg, cfg->models[k].fallback);
    } while (k != j);
    if (blame < 0) {
      blame = j;
    }
    char chain[320] = "";
    size_t len = 0;
    k = blame;
    do {
      len += (size_t)snprintf(chain + len, sizeof chain - len, "%s -> ", cfg->models[k].id);
      k = model_index(cfg, cfg->models[k].fallback);
    } while (k != blame && len < sizeof chain);
    if (len < sizeof chain) {
      snprintf(chain + len, sizeof chain - len, "%s", cfg->models[blame].id);
    }
    return gkp__cfg_fail(ctx, -EINVAL,
                         fallback_where(cfg, origin, (size_t)blame, where, sizeof where),
                         "the fallback chain loops (%s); end one of these chains with null", chain);
  }
  return 0;
}

/* See internal.h. */
int gkp__config_models_load(const gkp__cfg_ctx *ctx, gkp__config *cfg, const cJSON *root) {
  unsigned char *origin = NULL;
  int rc = 0;
  for (size_t i = 0; i < NBUILTIN && rc == 0; i++) {
    if (model_add(cfg, &origin, builtin_models[i].id, &builtin_models[i]) < 0) {
      rc = gkp__cfg_fail(ctx, -ENOMEM, "models", "out of memory");
    }
  }
  if (rc == 0) {
    rc = apply_models(ctx, cfg, &origin, cJSON_GetObjectItemCaseSensitive(root, "models"));
  }
  if (rc == 0) {
    rc = apply_fallbacks(ctx, cfg, origin, cJSON_GetObjectItemCaseSensitive(root, "fallback"));
  }
  if (rc == 0) {
    rc = check_chains(ctx, cfg, origin);
  }
  free(origin);
  return rc;
}
