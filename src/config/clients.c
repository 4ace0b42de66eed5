/*
 * clients.c - reading `clients` from keys.json (see clients.h).
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "config/clients.h"
#include "config/internal.h"

#define MIN_TOKEN 16

/* Reads a whole file (at most 16 MiB).  Returns a malloc'd buffer or NULL. */
static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  size_t n = 0, cap = 0;
  if (f == NULL) {
    return NULL;
  }
  for (;;) {
    if (n == cap) {
      cap = cap ? cap * 2 : 65536;
      char *nb = cap <= (16u << 20) ? realloc(buf, cap + 1) : NULL;
      if (nb == NULL) {
        free(buf);
        fclose(f);
        return NULL;
      }
      buf = nb;
    }
    size_t r = fread(buf + n, 1, cap - n, f);
    n += r;
    if (r == 0) {
      break;
    }
  }
  fclose(f);
  buf[n] = '\0';
  *len = n;
  return buf;
}

/* The .env beside `path`. */
static int load_dotenv(const char *path, gkp__dotenv *env, gkp_error *err) {
  const char *slash = strrchr(path, '/');
  char dotenv[4200];
  if (slash == NULL) {
    snprintf(dotenv, sizeof dotenv, ".env");
  } else {
    snprintf(dotenv, sizeof dotenv, "%.*s/.env", (int)(slash - path), path);
  }
  return gkp__dotenv_load(dotenv, env, err);
}

/* Resolves a token spec: "env:NAME" or a literal. */
static int resolve_token(const char *path, size_t i, const char *spec, const gkp__dotenv *env,
                         char **out, gkp_error *err) {
  const char *value = spec;
  if (strncmp(spec, "env:", 4) == 0) {
    const char *name = spec + 4, *v = getenv(name);
    if (v == NULL || v[0] == '\0') {
      v = gkp__dotenv_get(env, name);
    }
    if (v == NULL || v[0] == '\0') {
      return gkp__err(err, -EINVAL,
                      "%s: clients[%zu].token: variable %s is missing (environment and .env); "
                      "export %s=A_LONG_RANDOM_TOKEN",
                      path, i, name, name);
    }
    value = v;
  }
  if (strlen(value) < MIN_TOKEN) {
    return gkp__err(err, -EINVAL,
                    "%s: clients[%zu].token is shorter than %d characters; use a long random "
                    "token (e.g. openssl rand -hex 24)",
                    path, i, MIN_TOKEN);
  }
  *out = strdup(value);
  return *out != NULL ? 0 : gkp__err(err, -ENOMEM, "out of memory");
}

static int read_limit(const char *path, size_t i, const cJSON *c, const char *name, int64_t *out,
                      gkp_error *err) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, name);
  *out = 0;
  if (v == NULL) {
    return 0;
  }
  if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e9 ||
      v->valuedouble != (double)(int64_t)v->valuedouble) {
    return gkp__err(err, -EINVAL, "%s: clients[%zu].%s must be a whole number >= 0", path, i, name);
  }
  *out = (int64_t)v->valuedouble;
  return 0;
}

static int read_profiles(const char *path, size_t i, const cJSON *c, gkp__client_cfg *out,
                         gkp_error *err) {
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(c, "profiles"), *it;
  if (p == NULL) {
    return 0;
  }
  if (!cJSON_IsArray(p)) {
    return gkp__err(err, -EINVAL, "%s: clients[%zu].profiles must be a list of names", path, i);
  }
  out->profiles = calloc((size_t)cJSON_GetArraySize(p) + 1, sizeof *out->profiles);
  if (out->profiles == NULL) {
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  cJSON_ArrayForEach(it, p) {
    if (!cJSON_IsString(it)) {
      return gkp__err(err, -EINVAL, "%s: clients[%zu].profiles must be a list of names", path, i);
    }
    if ((out->profiles[out->nprofiles++] = strdup(it->valuestring)) == NULL) {
      return gkp__err(err, -ENOMEM, "out of memory");
    }
  }
  return 0;
}

static int read_client(const char *path, size_t i, const cJSON *c, const gkp__dotenv *env,
                       gkp__client_cfg *out, gkp_error *err) {
  const cJSON *id = cJSON_GetObjectItemCaseSensitive(c, "id");
  const cJSON *tok = cJSON_GetObjectItemCaseSensitive(c, "token");
  if (!cJSON_IsObject(c)) {
    return gkp__err(err, -EINVAL, "%s: clients[%zu] must be an object {\"id\":..,\"token\":..}",
                    path, i);
  }
  if (!cJSON_IsString(id) || gkp__cfg_id_problem(id->valuestring) != NULL) {
    return gkp__err(err, -EINVAL,
                    "%s: clients[%zu].id must be a name of letters, digits, '.', "
                    "'-' or '_'",
                    path, i);
  }
  if (!cJSON_IsString(tok)) {
    return gkp__err(err, -EINVAL, "%s: clients[%zu] (%s) needs a \"token\" (e.g. \"env:NAME\")",
                    path, i, id->valuestring);
  }
  if ((out->id = strdup(id->valuestring)) == NULL) {
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  int rc = resolve_token(path, i, tok->valuestring, env, &out->token, err);
  if (rc == 0) {
    rc = read_limit(path, i, c, "rpm", &out->rpm, err);
  }
  if (rc == 0) {
    rc = read_limit(path, i, c, "rpd", &out->rpd, err);
  }
  return rc == 0 ? read_profiles(path, i, c, out, err) : rc;
}

static int check_unique(const char *path, const gkp__clients *cl, gkp_error *err) {
  for (size_t i = 0; i < cl->n; i++) {
    for (size_t j = 0; j < i; j++) {
      if (strcmp(cl->v[i].id, cl->v[j].id) == 0) {
        return gkp__err(err, -EINVAL, "%s: clients[%zu]: duplicate id \"%s\"", path, i,
                        cl->v[i].id);
      }
      if (strcmp(cl->v[i].token, cl->v[j].token) == 0) {
        return gkp__err(err, -EINVAL, "%s: clients %s and %s share one token; give each its own",
                        path, cl->v[j].id, cl->v[i].id);
      }
    }
  }
  return 0;
}

int gkp__clients_load(const char *path, gkp__clients **out, gkp_error *err) {
  size_t len = 0;
  gkp__dotenv env;
  int rc = 0;
  *out = NULL;
  char *text = slurp(path, &len);
  if (text == NULL) {
    return gkp__err(err, -errno ? -errno : -EIO, "%s: cannot read it", path);
  }
  cJSON *root = cJSON_ParseWithLength(text, len);
  explicit_bzero(text, len);
  free(text);
  const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "clients");
  if (root == NULL || list == NULL) {
    cJSON_Delete(root); /* the configuration's own reader reports bad JSON */
    return 0;
  }
  if (!cJSON_IsArray(list)) {
    gkp__json_wipe(root);
    cJSON_Delete(root);
    return gkp__err(err, -EINVAL, "%s: \"clients\" must be a list of {\"id\",\"token\"}", path);
  }
  memset(&env, 0, sizeof env);
  gkp__clients *cl = calloc(1, sizeof *cl);
  size_t n = (size_t)cJSON_GetArraySize(list);
  if (cl == NULL || (cl->v = calloc(n + 1, sizeof *cl->v)) == NULL) {
    rc = gkp__err(err, -ENOMEM, "out of memory");
  }
  if (rc == 0) {
    rc = load_dotenv(path, &env, err);
  }
  for (size_t i = 0; rc == 0 && i < n; i++) {
    cl->n++;
    rc = read_client(path, i, cJSON_GetArrayItem(list, (int)i), &env, &cl->v[i], err);
  }
  if (rc == 0) {
    rc = check_unique(path, cl, err);
  }
  gkp__dotenv_free(&env);
  gkp__json_wipe(root);
  cJSON_Delete(root);
  if (rc != 0 || (cl != NULL && cl->n == 0)) {
    gkp__clients_free(cl);
    return rc;
  }
  *out = cl;
  return 0;
}

void gkp__clients_free(gkp__clients *c) {
  if (c == NULL) {
    return;
  }
  for (size_t i = 0; c->v != NULL && i < c->n; i++) {
    free(c->v[i].id);
    if (c->v[i].token != NULL) {
      explicit_bzero(c->v[i].token, strlen(c->v[i].token));
      free(c->v[i].token);
    }
    for (size_t j = 0; j < c->v[i].nprofiles; j++) {
      free(c->v[i].profiles[j]);
    }
    free(c->v[i].profiles);
  }
  free(c->v);
  free(c);
}
