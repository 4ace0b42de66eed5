/*
 * keys.c - providers.gemini.keys: ids, projects, and the API keys themselves.
 *
 * An api_key is "env:NAME" (the environment first, then the .env beside
 * keys.json) or a literal key.  Messages name the variable and where it was
 * looked for, never a value.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/internal.h"

#define WHERE_MAX 192

/* Whether s is a variable name: [A-Za-z_][A-Za-z0-9_]*. */
static int is_var_name(const char *s) {
  if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_')) {
    return 0;
  }
  return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") == strlen(s);
}

/* A Google API key ("AIza" + 35 characters) where a variable name belongs. */
static int looks_like_key(const char *s) {
  return strncmp(s, "AIza", 4) == 0 && strlen(s) >= 30;
}

/* Whether s looks like a variable name written without "env:": upper case
 * letters, digits and at least one '_' (Google keys are mixed case). */
static int looks_like_var(const char *s) {
  return is_var_name(s) && strchr(s, '_') != NULL &&
         strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == strlen(s);
}

/* Looks up variable `name`: the environment, then .env (an empty value counts
 * as unset, so a stray `export NAME=` does not hide the .env line).  Returns 0
 * with *value (borrowed) and `source` set to "env:NAME" or ".env:NAME", or
 * -EINVAL with a message naming the variable and both places looked. */
static int lookup_var(const gkp__cfg_ctx *ctx, const gkp__dotenv *denv, const char *where,
                      const char *name, const char **value, char *source, size_t len) {
  const char *from_env = getenv(name);
  const char *from_file = gkp__dotenv_get(denv, name);
  if (from_env != NULL && from_env[0] != '\0') {
    *value = from_env;
    snprintf(source, len, "env:%s", name);
  } else if (from_file != NULL && from_file[0] != '\0') {
    *value = from_file;
    snprintf(source, len, ".env:%s", name);
  } else {
    const char *env_state = from_env != NULL ? "empty" : "not set";
    const char *file_state = from_file != NULL ? "empty" : "not set";
    if (denv->path == NULL) {
      return gkp__cfg_fail(ctx, -EINVAL, where,
                           "variable %s is missing (environment: %s; no .env is read for this "
                           "configuration); export %s=YOUR_KEY",
                           name, env_state, name);
    }
    return gkp__cfg_fail(ctx, -EINVAL, where,
                         "variable %s is missing (environment: %s; %s: %s); export %s=YOUR_KEY or "
                         "add the line %s=YOUR_KEY to %s",
                         name, env_state, denv->path, denv->exists ? file_state : "no such file",
                         name, name, denv->path);
  }
  if (gkp__cfg_has_blank(*value)) {
    return gkp__cfg_fail(ctx, -EINVAL, where,
                         "the value of %s (%s) contains spaces or control characters; remove them",
                         name, *value == from_env ? "environment" : denv->path);
  }
  return 0;
}

/* Checks a literal api_key for the usual slips: a shell variable, a variable
 * name without "env:", "ENV:", spaces.  Returns 0 or -EINVAL; the message
 * quotes the value only when it is a variable name. */
static int check_literal(const gkp__cfg_ctx *ctx, const char *where, const char *spec) {
  char name[300];
  if (spec[0] == '$') {
    snprintf(name, sizeof name, "%s", spec + (spec[1] == '{' ? 2 : 1));
    name[strcspn(name, "}")] = '\0';
    return gkp__cfg_fail(ctx, -EINVAL, where,
                         "variables are not expanded here; write \"env:%s\" to read one",
                         is_var_name(name) && strlen(name) < 64 ? name : "NAME");
  }
  if (strncasecmp(spec, "env:", 4) == 0) {
    return gkp__cfg_fail(ctx, -EINVAL, where, "write \"env:\" in lower case");
  }
  if (looks_like_var(spec) && strlen(spec) < 64) {
    return gkp__cfg_fail(ctx, -EINVAL, where,
                         "\"%s\" looks like a variable name, not a key; write \"env:%s\"", spec,
                         spec);
  }
  if (gkp__cfg_has_blank(spec)) {
    return gkp__cfg_fail(ctx, -EINVAL, where,
                         "the key contains spaces or control characters; remove them");
  }
  return 0;
}

/* Fills k->secret and k->source from an api_key value, "env:NAME" or a
 * literal key (then sets *literal).  Returns 0, -ENOMEM, or -EINVAL with a
 * message that never holds a value. */
static int resolve_secret(const gkp__cfg_ctx *ctx, const gkp__dotenv *denv, const char *where,
                          const char *spec, gkp__key_cfg *k, int *literal) {
  const char *value = spec;
  char source[300] = "literal";
  int rc;
  if (strncmp(spec, "env:", 4) == 0) {
    const char *name = spec + 4;
    if (looks_like_key(name)) {
      return gkp__cfg_fail(
          ctx, -EINVAL, where,
          "\"env:\" must be followed by a variable name, but this looks like an API key; put the "
          "key in the environment or .env and write \"env:NAME\"");
    }
    if (!is_var_name(name) || strlen(name) > 255) {
      return gkp__cfg_fail(
          ctx, -EINVAL, where,
          "\"env:\" must be followed by a variable name (up to 255 letters, digits and _, not "
          "starting with a digit); write e.g. \"env:GEMINI_KEY_1\"");
    }
    rc = lookup_var(ctx, denv, where, name, &value, source, sizeof source);
  } else {
    rc = check_literal(ctx, where, spec);
    *literal = 1;
  }
  if (rc < 0) {
    return rc;
  }
  k->secret = strdup(value);
  k->source = strdup(source);
  if (k->secret == NULL || k->source == NULL) {
    return gkp__cfg_fail(ctx, -ENOMEM, where, "out of memory");
  }
  return 0;
}

/* Fills k from one element of providers.gemini.keys.  `i` is its index, the
 * keys before it are checked for duplicate ids.  Returns 0 or a negative
 * errno with ctx->err filled; what k holds is freed with the config. */
static int load_key(const gkp__cfg_ctx *ctx, const gkp__config *cfg, const gkp__dotenv *denv,
                    const cJSON *item, size_t i, int *literal) {
  gkp__key_cfg *k = &cfg->keys[i];
  char where[WHERE_MAX];
  char field[WHERE_MAX + 16];
  char q[96];
  snprintf(where, sizeof where, "providers.gemini.keys[%zu]", i);
  if (!cJSON_IsObject(item)) {
    return gkp__cfg_fail(ctx, -EINVAL, where,
                         "expected an object like {\"id\": \"project-1\", \"api_key\": "
                         "\"env:GEMINI_KEY_1\"}, got %s",
                         gkp__json_type(item));
  }
  const cJSON *id = cJSON_GetObjectItemCaseSensitive(item, "id");
  const cJSON *api_key = cJSON_GetObjectItemCaseSensitive(item, "api_key");
  const cJSON *project = cJSON_GetObjectItemCaseSensitive(item, "project");
  const cJSON *inflight = cJSON_GetObjectItemCaseSensitive(item, "max_inflight");
  snprintf(field, sizeof field, "%s.id", where);
  if (id == NULL) {
    return gkp__cfg_fail(ctx, -EINVAL, where,
                         "missing \"id\"; add a name for the key, e.g. \"id\": \"project-1\"");
  }
  if (!cJSON_IsString(id)) {
    return gkp__cfg_fail(ctx, -EINVAL, field, "expected a string, got %s; write the id in quotes",
                         gkp__json_type(id));
  }
  if (looks_like_key(id->valuestring)) {
    return gkp__cfg_fail(ctx, -EINVAL, field,
                         "this looks like an API key, and ids are shown in status files and "
                         "logs; use a name such as \"project-1\" and put the key in api_key");
  }
  const char *problem = gkp__cfg_id_problem(id->valuestring);
  if (problem != NULL) {
    return gkp__cfg_fail(ctx, -EINVAL, field,
                         "id %s %s; use 1 to 63 letters, digits, '.', '_', '@' or '-'",
                         gkp__cfg_quote(id->valuestring, q, sizeof q), problem);
  }
  for (size_t j = 0; j < i; j++) {
    if (strcmp(cfg->keys[j].id, id->valuestring) == 0) {
      return gkp__cfg_fail(ctx, -EINVAL, field,
                           "duplicate id \"%s\" (also used by providers.gemini.keys[%zu]); give "
                           "every key its own id",
                           id->valuestring, j);
    }
  }
  k->id = strdup(id->valuestring);
  if (k->id == NULL) {
    return gkp__cfg_fail(ctx, -ENOMEM, field, "out of memory");
  }

  snprintf(field, sizeof field, "%s.api_key", where);
  if (api_key == NULL) {
    return gkp__cfg_fail(ctx, -EINVAL, where,
                         "key \"%s\" has no \"api_key\"; add \"api_key\": \"env:NAME\" and set "
                         "NAME in the environment or .env",
                         k->id);
  }
  if (!cJSON_IsString(api_key)) {
    return gkp__cfg_fail(ctx, -EINVAL, field, "expected a string, got %s; write \"env:NAME\"",
                         gkp__json_type(api_key));
  }
  if (api_key->valuestring[0] == '\0') {
    return gkp__cfg_fail(ctx, -EINVAL, field,
                         "empty; write \"env:NAME\" and set NAME in the environment or .env");
  }
  int rc = resolve_secret(ctx, denv, field, api_key->valuestring, k, literal);
  if (rc < 0) {
    return rc;
  }

  snprintf(field, sizeof field, "%s.project", where);
  if (project != NULL && !cJSON_IsNull(project)) {
    if (!cJSON_IsString(project)) {
      return gkp__cfg_fail(ctx, -EINVAL, field,
                           "expected a string, got %s; write the Google project's name in quotes",
                           gkp__json_type(project));
    }
    problem = gkp__cfg_id_problem(project->valuestring);
    if (problem != NULL) {
      return gkp__cfg_fail(ctx, -EINVAL, field,
                           "project %s %s; use 1 to 63 letters, digits, '.', '_', '@' or '-'",
                           gkp__cfg_quote(project->valuestring, q, sizeof q), problem);
    }
  }
  k->project = strdup(project != NULL && cJSON_IsString(project) ? project->valuestring : k->id);
  if (k->project == NULL) {
    return gkp__cfg_fail(ctx, -ENOMEM, field, "out of memory");
  }

  k->max_inflight = cfg->max_inflight;
  if (inflight != NULL && !cJSON_IsNull(inflight)) {
    int64_t v;
    snprintf(field, sizeof field, "%s.max_inflight", where);
    rc = gkp__json_int(ctx, inflight, field, 1, GKP__MAX_INFLIGHT_MAX, &v);
    if (rc < 0) {
      return rc;
    }
    k->max_inflight = (int)v;
  }
  return 0;
}

/* See internal.h. */
void gkp__config_keys_warn(const gkp__cfg_ctx *ctx, const gkp__config *cfg, const gkp__dotenv *denv,
                           int literal_readable) {
  int dotenv_used = 0;
  for (size_t i = 0; i < cfg->nkeys; i++) {
    const gkp__key_cfg *k = &cfg->keys[i];
    if (strcmp(k->source, "literal") == 0 && literal_readable) {
      gkp__cfg_log(ctx, GKP_LOG_WARN,
                   "providers.gemini.keys[%zu].api_key: a literal API key in a file that group or "
                   "others can read; run `chmod 600 %s`, or write \"env:NAME\" and keep the key in "
                   "the environment or .env",
                   i, ctx->file);
      literal_readable = 0; /* once per file */
    }
    dotenv_used |= strncmp(k->source, ".env:", 5) == 0;
    for (size_t j = 0; j < i; j++) {
      if (strcmp(cfg->keys[j].secret, k->secret) == 0) {
        gkp__cfg_log(ctx, GKP_LOG_WARN,
                     "providers.gemini.keys[%zu]: key \"%s\" has the same API key as \"%s\", so "
                     "they share one quota; remove one of them",
                     i, k->id, cfg->keys[j].id);
        break;
      }
    }
  }
  if (dotenv_used && (denv->mode & 044) != 0 && ctx->log != NULL) {
    char line[GKP_MSG_MAX];
    snprintf(line, sizeof line,
             "%s: holds API keys and group or others can read it; run `chmod 600 %s`", denv->path,
             denv->path);
    ctx->log(ctx->log_ud, GKP_LOG_WARN, line);
  }
}

/* See internal.h. */
int gkp__config_keys_load(const gkp__cfg_ctx *ctx, gkp__config *cfg, const gkp__dotenv *denv,
                          const cJSON *root, int *literal) {
  const char *fix = "add \"providers\": {\"gemini\": {\"keys\": [{\"id\": \"project-1\", "
                    "\"api_key\": \"env:GEMINI_KEY_1\"}]}} (see keys.json.example)";
  const cJSON *providers = cJSON_GetObjectItemCaseSensitive(root, "providers");
  if (providers == NULL) {
    return gkp__cfg_fail(ctx, -EINVAL, "providers.gemini.keys", "missing; %s", fix);
  }
  if (!cJSON_IsObject(providers)) {
    return gkp__cfg_fail(ctx, -EINVAL, "providers", "expected an object, got %s; %s",
                         gkp__json_type(providers), fix);
  }
  const cJSON *p;
  cJSON_ArrayForEach(p, providers) {
    if (strcmp(p->string, "gemini") != 0) {
      char q[96];
      gkp__cfg_log(ctx, GKP_LOG_INFO, "providers.%s: ignored; only \"gemini\" keys are pooled",
                   gkp__cfg_quote(p->string, q, sizeof q));
    }
  }
  const cJSON *gemini = cJSON_GetObjectItemCaseSensitive(providers, "gemini");
  if (gemini == NULL) {
    return gkp__cfg_fail(ctx, -EINVAL, "providers.gemini.keys", "missing; %s", fix);
  }
  if (!cJSON_IsObject(gemini)) {
    return gkp__cfg_fail(ctx, -EINVAL, "providers.gemini", "expected an object, got %s; %s",
                         gkp__json_type(gemini), fix);
  }
  const cJSON *keys = cJSON_GetObjectItemCaseSensitive(gemini, "keys");
  if (keys == NULL) {
    return gkp__cfg_fail(ctx, -EINVAL, "providers.gemini.keys", "missing; %s", fix);
  }
  if (!cJSON_IsArray(keys)) {
    return gkp__cfg_fail(ctx, -EINVAL, "providers.gemini.keys",
                         "expected an array, got %s; write [{\"id\": ..., \"api_key\": ...}, ...]",
                         gkp__json_type(keys));
  }
  size_t n = (size_t)cJSON_GetArraySize(keys);
  if (n == 0) {
    return gkp__cfg_fail(ctx, -EINVAL, "providers.gemini.keys",
                         "the pool is empty; add at least one key, e.g. {\"id\": \"project-1\", "
                         "\"api_key\": \"env:GEMINI_KEY_1\"}");
  }
  cfg->keys = calloc(n, sizeof *cfg->keys);
  if (cfg->keys == NULL) {
    return gkp__cfg_fail(ctx, -ENOMEM, "providers.gemini.keys", "out of memory");
  }
  size_t i = 0;
  const cJSON *item;
  cJSON_ArrayForEach(item, keys) {
    cfg->nkeys = i + 1; /* so that a half-filled entry is freed */
    int rc = load_key(ctx, cfg, denv, item, i, literal);
    if (rc < 0) {
      return rc;
    }
    i++;
  }
  return 0;
}
