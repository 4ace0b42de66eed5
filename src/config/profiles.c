/*
 * profiles.c - the directories of the filesystem: the default ones, one per
 * model, and the file's "profiles" (merged over a profile of the same name).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/internal.h"

#define MAX_WAIT_DEFAULT_MS 120000
#define MAX_WAIT_MAX_S 86400 /* a day: every daily quota is back by then */

/* The default directories, before the one-per-model ones. */
static const struct {
  const char *name;
  const char *model;
} default_profiles[] = {
    {"pro", "gemini-3.1-pro-preview"}, {"flash", "gemini-3-flash-preview"},
    {"flash-2.5", "gemini-2.5-flash"}, {"flash-lite", "gemini-3.1-flash-lite-preview"},
    {"gemma", "gemma-3-27b-it"},       {"image", "gemini-2.5-flash-image"},
    {"auto", "gemini-3-flash-preview"}, /* routed: the model is only nominal */
};

static const char *const tool_names[] = {"google_search", "code_execution", "url_context"};
static const char *const thinking_names[] = {"minimal", "low", "medium", "high"};

/* See internal.h. */
void gkp__profile_cfg_clear(gkp__profile_cfg *p) {
  for (size_t i = 0; i < p->ntools; i++) {
    free(p->tools[i]);
  }
  free(p->tools);
  free(p->name);
  free(p->model);
  free(p->system);
  free(p->thinking);
  free(p->quality);
  memset(p, 0, sizeof *p);
}

/* The profile named `name`, added with defaults (120 s wait, nothing else
 * set) when missing.  NULL when out of memory. */
static gkp__profile_cfg *profile_get(gkp__config *cfg, const char *name, int *added) {
  *added = 0;
  for (size_t i = 0; i < cfg->nprofiles; i++) {
    if (strcmp(cfg->profiles[i].name, name) == 0) {
      return &cfg->profiles[i];
    }
  }
  gkp__profile_cfg *profiles = realloc(cfg->profiles, (cfg->nprofiles + 1) * sizeof *profiles);
  if (profiles == NULL) {
    return NULL;
  }
  cfg->profiles = profiles;
  gkp__profile_cfg *p = &profiles[cfg->nprofiles++];
  memset(p, 0, sizeof *p);
  p->max_wait_ms = MAX_WAIT_DEFAULT_MS;
  p->temperature = -1;
  p->name = strdup(name);
  *added = 1;
  return p->name != NULL ? p : NULL;
}

/* Replaces *slot with a copy of s (NULL allowed).  Returns 0 or -ENOMEM. */
static int replace_str(char **slot, const char *s) {
  char *copy = s != NULL ? strdup(s) : NULL;
  if (s != NULL && copy == NULL) {
    return -ENOMEM;
  }
  free(*slot);
  *slot = copy;
  return 0;
}

/* Whether s is one of the n names. */
static int one_of(const char *s, const char *const *names, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (strcmp(s, names[i]) == 0) {
      return 1;
    }
  }
  return 0;
}

/* Reads "tools" into p (replacing what it had).  Returns 0 or a negative
 * errno. */
static int profile_tools(const gkp__cfg_ctx *ctx, gkp__profile_cfg *p, const cJSON *tools,
                         const char *where) {
  char at[224];
  if (!cJSON_IsArray(tools) && !cJSON_IsNull(tools)) {
    return gkp__cfg_fail(ctx, -EINVAL, where,
                         "expected an array such as [\"google_search\"], got %s",
                         gkp__json_type(tools));
  }
  for (size_t i = 0; i < p->ntools; i++) {
    free(p->tools[i]);
  }
  free(p->tools);
  p->tools = NULL;
  p->ntools = 0;
  size_t n = cJSON_IsArray(tools) ? (size_t)cJSON_GetArraySize(tools) : 0;
  if (n == 0) {
    return 0;
  }
  p->tools = calloc(n, sizeof *p->tools);
  if (p->tools == NULL) {
    return gkp__cfg_fail(ctx, -ENOMEM, where, "out of memory");
  }
  size_t i = 0;
  const cJSON *t;
  cJSON_ArrayForEach(t, tools) {
    snprintf(at, sizeof at, "%s[%zu]", where, i++);
    if (!cJSON_IsString(t) || !one_of(t->valuestring, tool_names, 3)) {
      char q[96];
      return gkp__cfg_fail(
          ctx, -EINVAL, at,
          "unknown tool %s; use \"google_search\", \"code_execution\" or \"url_context\"",
          cJSON_IsString(t) ? gkp__cfg_quote(t->valuestring, q, sizeof q) : gkp__json_type(t));
    }
    if (one_of(t->valuestring, (const char *const *)p->tools, p->ntools)) {
      continue; /* listed twice: once is enough */
    }
    p->tools[p->ntools] = strdup(t->valuestring);
    if (p->tools[p->ntools++] == NULL) {
      return gkp__cfg_fail(ctx, -ENOMEM, at, "out of memory");
    }
  }
  return 0;
}

/* Reads a number in [min, max] (seconds, a temperature) or fails naming
 * `where`.  Returns 0 or -EINVAL. */
static int read_number(const gkp__cfg_ctx *ctx, const cJSON *v, const char *where, double min,
                       double max, double *out) {
  if (!cJSON_IsNumber(v) || !(v->valuedouble >= min && v->valuedouble <= max)) {
    if (cJSON_IsNumber(v)) {
      return gkp__cfg_fail(ctx, -EINVAL, where, "expected a number from %g to %g, got %g", min, max,
                           v->valuedouble);
    }
    return gkp__cfg_fail(ctx, -EINVAL, where, "expected a number from %g to %g, got %s", min, max,
                         gkp__json_type(v));
  }
  *out = v->valuedouble;
  return 0;
}

/* Reads an optional string field (NULL when null) from one of `allowed`
 * (any string when allowed is NULL) into *slot.  Returns 0 or a negative
 * errno. */
static int profile_string(const gkp__cfg_ctx *ctx, const cJSON *v, const char *where,
                          const char *const *allowed, size_t nallowed, char **slot) {
  char q[96];
  if (!cJSON_IsString(v) && !cJSON_IsNull(v)) {
    return gkp__cfg_fail(ctx, -EINVAL, where, "expected %s or null, got %s",
                         allowed != NULL ? "\"minimal\", \"low\", \"medium\", \"high\""
                                         : "a string",
                         gkp__json_type(v));
  }
  if (allowed != NULL && cJSON_IsString(v) && !one_of(v->valuestring, allowed, nallowed)) {
    return gkp__cfg_fail(ctx, -EINVAL, where,
                         "expected \"minimal\", \"low\", \"medium\", \"high\" or null, got %s",
                         gkp__cfg_quote(v->valuestring, q, sizeof q));
  }
  if (replace_str(slot, cJSON_IsString(v) ? v->valuestring : NULL) < 0) {
    return gkp__cfg_fail(ctx, -ENOMEM, where, "out of memory");
  }
  return 0;
}

/* Reads the numeric fields of one "profiles" entry (max_wait, temperature,
 * max_output_tokens; null unsets the last two) into p.  Returns 0 or
 * -EINVAL. */
static int profile_numbers(const gkp__cfg_ctx *ctx, gkp__profile_cfg *p, const cJSON *e,
                           const char *base) {
  char where[192];
  double d;
  const cJSON *wait = cJSON_GetObjectItemCaseSensitive(e, "max_wait");
  const cJSON *temp = cJSON_GetObjectItemCaseSensitive(e, "temperature");
  const cJSON *max_out = cJSON_GetObjectItemCaseSensitive(e, "max_output_tokens");
  if (wait != NULL) {
    snprintf(where, sizeof where, "%s.max_wait", base);
    if (read_number(ctx, wait, where, 0, MAX_WAIT_MAX_S, &d) < 0) {
      return -EINVAL;
    }
    p->max_wait_ms = (int64_t)(d * 1000 + 0.5);
  }
  if (temp != NULL && cJSON_IsNull(temp)) {
    p->temperature = -1;
  } else if (temp != NULL) {
    snprintf(where, sizeof where, "%s.temperature", base);
    if (read_number(ctx, temp, where, 0, 2, &p->temperature) < 0) {
      return -EINVAL;
    }
  }
  if (max_out != NULL && cJSON_IsNull(max_out)) {
    p->max_output_tokens = 0;
  } else if (max_out != NULL) {
    snprintf(where, sizeof where, "%s.max_output_tokens", base);
    if (gkp__json_int(ctx, max_out, where, 1, INT32_MAX, &p->max_output_tokens) < 0) {
      return -EINVAL;
    }
  }
  return 0;
}

/* "route": "auto" (or null: the profile's model) and "quality" (one of the
 * levels, or null).  Returns 0 or a negative errno. */
static int profile_route(const gkp__cfg_ctx *ctx, gkp__profile_cfg *p, const cJSON *e,
                         const char *base) {
  char where[192];
  char q[96];
  const cJSON *route = cJSON_GetObjectItemCaseSensitive(e, "route");
  const cJSON *quality = cJSON_GetObjectItemCaseSensitive(e, "quality");
  if (route != NULL) {
    snprintf(where, sizeof where, "%s.route", base);
    if (!cJSON_IsNull(route) && !(cJSON_IsString(route) && strcmp(route->valuestring, "auto") == 0)) {
      return gkp__cfg_fail(ctx, -EINVAL, where,
                           "expected \"auto\" (the pool picks the model) or null, got %s",
                           cJSON_IsString(route) ? gkp__cfg_quote(route->valuestring, q, sizeof q)
                                                 : gkp__json_type(route));
    }
    p->route = cJSON_IsString(route);
  }
  if (quality != NULL) {
    snprintf(where, sizeof where, "%s.quality", base);
    if (!cJSON_IsNull(quality) &&
        !(cJSON_IsString(quality) && gkp__quality_index(quality->valuestring) >= 0)) {
      return gkp__cfg_fail(ctx, -EINVAL, where,
                           "expected \"draft\", \"standard\", \"production\", \"research\" or "
                           "null, got %s",
                           cJSON_IsString(quality) ? gkp__cfg_quote(quality->valuestring, q, sizeof q)
                                                   : gkp__json_type(quality));
    }
    if (replace_str(&p->quality, cJSON_IsString(quality) ? quality->valuestring : NULL) < 0) {
      return gkp__cfg_fail(ctx, -ENOMEM, where, "out of memory");
    }
  }
  return 0;
}

/* Applies the optional fields of one "profiles" entry to p (those absent
 * keep their value).  Returns 0 or a negative errno. */
static int profile_fields(const gkp__cfg_ctx *ctx, gkp__profile_cfg *p, const cJSON *e,
                          const char *base) {
  char where[192];
  const cJSON *system = cJSON_GetObjectItemCaseSensitive(e, "system");
  const cJSON *tools = cJSON_GetObjectItemCaseSensitive(e, "tools");
  const cJSON *thinking = cJSON_GetObjectItemCaseSensitive(e, "thinking");
  int rc = 0;
  if (system != NULL) {
    snprintf(where, sizeof where, "%s.system", base);
    rc = profile_string(ctx, system, where, NULL, 0, &p->system);
  }
  if (rc == 0 && tools != NULL) {
    snprintf(where, sizeof where, "%s.tools", base);
    rc = profile_tools(ctx, p, tools, where);
  }
  if (rc == 0 && thinking != NULL) {
    snprintf(where, sizeof where, "%s.thinking", base);
    rc = profile_string(ctx, thinking, where, thinking_names, 4, &p->thinking);
  }
  if (rc == 0) {
    rc = profile_route(ctx, p, e, base);
  }
  return rc == 0 ? profile_numbers(ctx, p, e, base) : rc;
}

/* Applies one "profiles" entry, merged over a profile of the same name.
 * Returns 0 or a negative errno. */
static int apply_profile(const gkp__cfg_ctx *ctx, gkp__config *cfg, const cJSON *e) {
  char base[128];
  char where[192];
  char q[96];
  const char *problem = gkp__cfg_name_problem(e->string);
  if (problem != NULL) {
    return gkp__cfg_fail(ctx, -EINVAL, "profiles",
                         "profile name %s %s; profile names become directory names, so use 1 to 63 "
                         "letters, digits, '.', '_' or '-'",
                         gkp__cfg_quote(e->string, q, sizeof q), problem);
  }
  snprintf(base, sizeof base, "profiles.%s", e->string);
  if (!cJSON_IsObject(e)) {
    return gkp__cfg_fail(ctx, -EINVAL, base,
                         "expected an object such as {\"model\": \"gemini-2.5-flash\"}, got %s",
                         gkp__json_type(e));
  }
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(e, "model");
  snprintf(where, sizeof where, "%s.model", base);
  if (model != NULL && !cJSON_IsString(model)) {
    return gkp__cfg_fail(ctx, -EINVAL, where, "expected a model id (a string), got %s",
                         gkp__json_type(model));
  }
  if (model != NULL && gkp__config_model(cfg, model->valuestring) == NULL) {
    return gkp__cfg_fail(
        ctx, -EINVAL, where,
        "%s is not a known model; use a built-in model id or add it under \"models\"",
        gkp__cfg_quote(model->valuestring, q, sizeof q));
  }
  int added;
  gkp__profile_cfg *p = profile_get(cfg, e->string, &added);
  if (p == NULL) {
    return gkp__cfg_fail(ctx, -ENOMEM, base, "out of memory");
  }
  const cJSON *route = cJSON_GetObjectItemCaseSensitive(e, "route");
  if (model == NULL && added && cJSON_IsString(route)) {
    if (replace_str(&p->model, "gemini-3-flash-preview") < 0) {
      return gkp__cfg_fail(ctx, -ENOMEM, base, "out of memory");
    }
  } else if (model == NULL && added) {
    return gkp__cfg_fail(ctx, -EINVAL, base,
                         "missing \"model\"; name the model this profile uses, e.g. \"model\": "
                         "\"gemini-2.5-flash\"");
  }
  if (model != NULL && replace_str(&p->model, model->valuestring) < 0) {
    return gkp__cfg_fail(ctx, -ENOMEM, where, "out of memory");
  }
  int rc = profile_fields(ctx, p, e, base);
  if (rc < 0) {
    return rc;
  }
  const gkp__model_cfg *m = gkp__config_model(cfg, p->model);
  if (p->thinking != NULL && m->thinking_level < 0) {
    snprintf(where, sizeof where, "%s.thinking", base);
    return gkp__cfg_fail(ctx, -EINVAL, where,
                         "model %s takes no thinking setting; remove \"thinking\" or set "
                         "\"thinking\" under models.%s",
                         m->id, m->id);
  }
  return 0;
}

/* See internal.h. */
int gkp__config_profiles_load(const gkp__cfg_ctx *ctx, gkp__config *cfg, const cJSON *root) {
  int added;
  size_t ndefaults = sizeof default_profiles / sizeof default_profiles[0];
  for (size_t i = 0; i < ndefaults + cfg->nmodels; i++) {
    const char *name = i < ndefaults ? default_profiles[i].name : cfg->models[i - ndefaults].id;
    const char *model = i < ndefaults ? default_profiles[i].model : name;
    gkp__profile_cfg *p = profile_get(cfg, name, &added);
    if (p == NULL || replace_str(&p->model, model) < 0) {
      return gkp__cfg_fail(ctx, -ENOMEM, "profiles", "out of memory");
    }
    p->route = strcmp(name, "auto") == 0;
  }
  const cJSON *profiles = cJSON_GetObjectItemCaseSensitive(root, "profiles");
  if (profiles == NULL || cJSON_IsNull(profiles)) {
    return 0;
  }
  if (!cJSON_IsObject(profiles)) {
    return gkp__cfg_fail(ctx, -EINVAL, "profiles", "expected an object of profile names, got %s",
                         gkp__json_type(profiles));
  }
  const cJSON *e;
  cJSON_ArrayForEach(e, profiles) {
    int rc = apply_profile(ctx, cfg, e);
    if (rc < 0) {
      return rc;
    }
  }
  return 0;
}
