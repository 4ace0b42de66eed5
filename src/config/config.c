/*
 * config.c - finding, reading and validating keys.json.
 *
 * Every mistake becomes one line "FILE: WHERE: WHAT; FIX", where WHERE is the
 * JSON path of the offending field (e.g. providers.gemini.keys[1].api_key) or
 * "line L, column C" for a syntax error.  No message ever holds a secret:
 * values of api_key fields, environment variables and .env lines are never
 * echoed.  Models and profiles are in models.c, .env files in dotenv.c.
 */
#include "config/config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "config/internal.h"

#define DEFAULT_BASE_URL "https://generativelanguage.googleapis.com"
#define CONFIG_MAX_BYTES (4 * 1024 * 1024)
#define MAX_INFLIGHT_MAX 16
#define WHERE_MAX 192

/* ---- Messages and JSON helpers ------------------------------------------ */

/* See internal.h. */
int gkp__cfg_fail(const gkp__cfg_ctx *ctx, int code, const char *where, const char *fmt, ...) {
  if (ctx->err == NULL) {
    return code;
  }
  char what[GKP_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  if (where != NULL && where[0] != '\0') {
    return gkp__err(ctx->err, code, "%s: %s: %s", ctx->file, where, what);
  }
  return gkp__err(ctx->err, code, "%s: %s", ctx->file, what);
}

/* See internal.h. */
void gkp__cfg_log(const gkp__cfg_ctx *ctx, int level, const char *fmt, ...) {
  if (ctx->log == NULL) {
    return;
  }
  char what[GKP_MSG_MAX];
  char line[GKP_MSG_MAX + 256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  snprintf(line, sizeof line, "%s: %s", ctx->file, what);
  ctx->log(ctx->log_ud, level, line);
}

/* See internal.h. */
const char *gkp__cfg_quote(const char *s, char *buf, size_t len) {
  size_t n = 0;
  size_t i = 0;
  if (len < 8) {
    return "\"...\"";
  }
  buf[n++] = '"';
  for (; s[i] != '\0' && i < 64 && n + 5 < len; i++) {
    unsigned char c = (unsigned char)s[i];
    buf[n++] = (c < 0x20 || c == 0x7f || c == '"') ? '?' : (char)c;
  }
  if (s[i] != '\0') {
    memcpy(buf + n, "...", 3);
    n += 3;
  }
  buf[n++] = '"';
  buf[n] = '\0';
  return buf;
}

/* See internal.h. */
const char *gkp__json_type(const cJSON *item) {
  if (item == NULL) {
    return "nothing";
  }
  if (cJSON_IsString(item)) {
    return "a string";
  }
  if (cJSON_IsNumber(item)) {
    return "a number";
  }
  if (cJSON_IsBool(item)) {
    return cJSON_IsTrue(item) ? "true" : "false";
  }
  if (cJSON_IsNull(item)) {
    return "null";
  }
  if (cJSON_IsArray(item)) {
    return "an array";
  }
  if (cJSON_IsObject(item)) {
    return "an object";
  }
  return "something else";
}

/* See internal.h. */
int gkp__json_int(const gkp__cfg_ctx *ctx, const cJSON *item, const char *where, int64_t min,
                  int64_t max, int64_t *out) {
  const double exact = 9007199254740992.0; /* 2^53: larger doubles skip integers */
  char range[64];
  if (max >= (int64_t)exact) {
    snprintf(range, sizeof range, "a whole number of at least %lld", (long long)min);
  } else {
    snprintf(range, sizeof range, "a whole number from %lld to %lld", (long long)min,
             (long long)max);
  }
  if (!cJSON_IsNumber(item)) {
    return gkp__cfg_fail(ctx, -EINVAL, where, "expected %s, got %s; write it without quotes",
                         range, gkp__json_type(item));
  }
  double v = item->valuedouble;
  if (!(v > -exact && v < exact) || (double)(int64_t)v != v || (int64_t)v < min ||
      (int64_t)v > max) {
    return gkp__cfg_fail(ctx, -EINVAL, where, "expected %s, got %g; change the value", range, v);
  }
  *out = (int64_t)v;
  return 0;
}

/* See internal.h. */
const char *gkp__cfg_name_problem(const char *name) {
  size_t len = strlen(name);
  if (len == 0) {
    return "is empty";
  }
  if (len >= GKP_ID_MAX) {
    return "is longer than 63 characters";
  }
  if (name[0] == '.') {
    return "starts with '.'";
  }
  if (strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") != len) {
    return "has characters other than letters, digits, '.', '_' and '-'";
  }
  if (strcmp(name, "status") == 0 || strcmp(name, "README") == 0 || strcmp(name, "ctl") == 0) {
    return "is the name of one of the filesystem's own files";
  }
  return NULL;
}

/* See internal.h. */
char *gkp__cfg_strdup(const char *s) {
  return s != NULL ? strdup(s) : NULL;
}

/* Returns NULL when `id` is a valid key or project id (1..63 characters of
 * [A-Za-z0-9._@-], not "." or ".."), else a phrase saying what is wrong. */
static const char *id_problem(const char *id) {
  size_t len = strlen(id);
  if (len == 0) {
    return "is empty";
  }
  if (len >= GKP_ID_MAX) {
    return "is longer than 63 characters";
  }
  if (strcmp(id, ".") == 0 || strcmp(id, "..") == 0) {
    return "is \".\" or \"..\"";
  }
  if (strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._@-") != len) {
    return "has characters other than letters, digits, '.', '_', '@' and '-'";
  }
  return NULL;
}

/* ---- Finding the file ---------------------------------------------------- */

/* Copies `path` into buf, prefixed with the working directory when relative
 * (the daemon may change directory later).  Returns 0 or -ENAMETOOLONG. */
static int copy_path(const char *path, char *buf, size_t len, gkp_error *err) {
  char cwd[4096];
  int n;
  if (path[0] != '/' && getcwd(cwd, sizeof cwd) != NULL) {
    n = snprintf(buf, len, "%s%s%s", cwd, strcmp(cwd, "/") == 0 ? "" : "/", path);
  } else {
    n = snprintf(buf, len, "%s", path);
  }
  if (n < 0 || (size_t)n >= len) {
    return gkp__err(err, -ENAMETOOLONG, "%s: path too long (more than %zu bytes)", path, len - 1);
  }
  return 0;
}

/* Checks that a path named by the user (explicitly or by $GEMINI_POOL_CONFIG)
 * is a file.  Returns 0 or a negative errno with a message naming it. */
static int check_named(const char *path, const char *how, gkp_error *err) {
  struct stat st;
  if (stat(path, &st) != 0) {
    int e = errno;
    return gkp__err(err, -e, "%s: %s (the configuration file %s); check the path, or create it "
                    "(see keys.json.example)", path, strerror(e), how);
  }
  if (S_ISDIR(st.st_mode)) {
    return gkp__err(err, -EISDIR, "%s: is a directory (the configuration file %s); name the "
                    "keys.json file itself", path, how);
  }
  return 0;
}

/* See config.h.  Candidates that exist but are directories are errors. */
int gkp__config_find(const char *explicit_path, char *buf, size_t len, gkp_error *err) {
  if (buf == NULL || len == 0) {
    return gkp__err(err, -EINVAL, "gkp__config_find: no buffer");
  }
  buf[0] = '\0';
  const char *env = getenv("GEMINI_POOL_CONFIG");
  const char *named = NULL;
  const char *how = NULL;
  if (explicit_path != NULL && explicit_path[0] != '\0') {
    named = explicit_path;
    how = "given explicitly";
  } else if (env != NULL && env[0] != '\0') {
    named = env;
    how = "named by $GEMINI_POOL_CONFIG";
  }
  if (named != NULL) {
    int rc = check_named(named, how, err);
    return rc < 0 ? rc : copy_path(named, buf, len, err);
  }

  char local[4200];
  char xdg[4200];
  const char *xdg_home = getenv("XDG_CONFIG_HOME");
  const char *home = getenv("HOME");
  if (copy_path("keys.json", local, sizeof local, err) < 0) {
    return -ENAMETOOLONG;
  }
  if (xdg_home != NULL && xdg_home[0] == '/') {
    snprintf(xdg, sizeof xdg, "%s/gemini-pool/keys.json", xdg_home);
  } else if (home != NULL && home[0] != '\0') {
    snprintf(xdg, sizeof xdg, "%s/.config/gemini-pool/keys.json", home);
  } else {
    xdg[0] = '\0'; /* neither $XDG_CONFIG_HOME nor $HOME: nowhere to look */
  }
  const char *candidates[2] = {local, xdg};
  for (size_t i = 0; i < 2; i++) {
    struct stat st;
    if (candidates[i][0] == '\0' || stat(candidates[i], &st) != 0) {
      continue;
    }
    if (S_ISDIR(st.st_mode)) {
      return gkp__err(err, -EISDIR, "%s: is a directory, not a keys.json file; remove or rename "
                      "it", candidates[i]);
    }
    return copy_path(candidates[i], buf, len, err);
  }
  return gkp__err(err, -ENOENT, "no configuration found: $GEMINI_POOL_CONFIG is not set and "
                  "neither %s nor %s exists; create one (see keys.json.example), or pass "
                  "--config FILE", local, xdg[0] ? xdg : "$XDG_CONFIG_HOME/gemini-pool/keys.json "
                  "($XDG_CONFIG_HOME and $HOME unset)");
}

/* ---- JSON syntax ---------------------------------------------------------- */

/* cJSON reports one past the offending character when a string fails (an
 * object key that is not a string, an unterminated string).  Moves pos back
 * in those cases, knowing whether pos-1 is in an object and outside strings. */
static size_t error_pos(const char *s, size_t start, size_t pos) {
  char stack[1100];
  size_t depth = 0;
  int in_string = 0;
  if (pos <= start) {
    return pos;
  }
  for (size_t i = start; i < pos - 1; i++) {
    char c = s[i];
    if (in_string) {
      if (c == '\\') {
        i++;
      } else if (c == '"') {
        in_string = 0;
      }
    } else if (c == '"') {
      in_string = 1;
    } else if ((c == '{' || c == '[') && depth < sizeof stack) {
      stack[depth++] = c;
    } else if ((c == '}' || c == ']') && depth > 0) {
      depth--;
    }
  }
  char c = s[pos - 1];
  if (in_string) {
    return pos;
  }
  if (c == '"') {
    return pos - 1; /* an opening quote: the string never ended */
  }
  if (depth == 0 || stack[depth - 1] != '{' || strchr(" \t\r\n[{", c) != NULL) {
    return pos;
  }
  size_t q = pos - 1;
  while (q > start && strchr(" \t\r\n", s[q - 1]) != NULL) {
    q--;
  }
  return (q > start && (s[q - 1] == '{' || s[q - 1] == ',')) ? pos - 1 : pos;
}

/* Parses the JSON text.  Returns 0 and *out, or -EINVAL naming the line and
 * column (1-based; columns count characters) of the first syntax error. */
static int parse_json(const gkp__cfg_ctx *ctx, const char *json, size_t len, cJSON **out) {
  size_t start = (len >= 3 && memcmp(json, "\xEF\xBB\xBF", 3) == 0) ? 3 : 0;
  size_t i = start;
  while (i < len && strchr(" \t\r\n", json[i]) != NULL && json[i] != '\0') {
    i++;
  }
  if (i == len) {
    return gkp__cfg_fail(ctx, -EINVAL, NULL, "the file is empty; write a JSON object with "
                         "\"providers\" in it (see keys.json.example)");
  }
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(json + start, len - start, &end, 0);
  size_t pos = end != NULL ? (size_t)(end - json) : start;
  const char *what = "invalid JSON";
  const char *fix = "check for a missing or extra comma, quote, colon or bracket there "
                    "(JSON allows no comments and no trailing commas)";
  if (root == NULL) {
    pos = error_pos(json, start, pos < len ? pos + 0 : len);
  } else {
    while (pos < len && strchr(" \t\r\n", json[pos]) != NULL && json[pos] != '\0') {
      pos++;
    }
    if (pos == len) {
      *out = root;
      return 0;
    }
    cJSON_Delete(root);
    what = "unexpected text after the end of the JSON document";
    fix = "remove it, or wrap everything in one { }";
  }
  if (pos < len && (json[pos] == '}' || json[pos] == ']')) {
    size_t q = pos;
    while (q > start && strchr(" \t\r\n", json[q - 1]) != NULL) {
      q--;
    }
    if (q > start && json[q - 1] == ',') {
      fix = "remove the trailing comma before it (JSON allows none)";
    }
  }
  size_t line = 1;
  size_t col = 1;
  for (size_t k = start; k < pos && k < len; k++) {
    if (json[k] == '\n') {
      line++;
      col = 1;
    } else if (((unsigned char)json[k] & 0xC0) != 0x80) {
      col++;
    }
  }
  char where[64];
  snprintf(where, sizeof where, "line %zu, column %zu", line, col);
  return gkp__cfg_fail(ctx, -EINVAL, where, "%s; %s", what, fix);
}

/* Wipes every string of a cJSON tree (api_key values are among them). */
static void json_wipe(cJSON *item) {
  for (; item != NULL; item = item->next) {
    if (item->valuestring != NULL) {
      explicit_bzero(item->valuestring, strlen(item->valuestring));
    }
    json_wipe(item->child);
  }
}

/* ---- Keys ------------------------------------------------------------------ */

static int is_var_name(const char *s) {
  if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_')) {
    return 0;
  }
  return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") ==
         strlen(s);
}

/* A Google API key ("AIza" + 35 characters) where a variable name belongs. */
static int looks_like_key(const char *s) {
  return strncmp(s, "AIza", 4) == 0 && strlen(s) >= 30;
}

/* Whether a secret holds whitespace or control characters (a pasted newline
 * would corrupt the HTTP header it goes into). */
static int bad_secret_chars(const char *s) {
  for (; *s != '\0'; s++) {
    if ((unsigned char)*s <= 0x20 || (unsigned char)*s == 0x7f) {
      return 1;
    }
  }
  return 0;
}

/* Fills k->secret and k->source from an api_key value: "env:NAME" (the
 * environment, then .env; an empty variable counts as unset) or a literal.
 * Sets *literal for a literal key.  Returns 0, -ENOMEM, or -EINVAL with a
 * message that names the variable and both places looked, never a value. */
static int resolve_secret(const gkp__cfg_ctx *ctx, const gkp__dotenv *denv, const char *where,
                          const char *spec, gkp__key_cfg *k, int *literal) {
  const char *value = spec;
  char source[GKP_ID_MAX + 16] = "literal";
  if (strncmp(spec, "env:", 4) == 0) {
    const char *name = spec + 4;
    if (looks_like_key(name)) {
      return gkp__cfg_fail(ctx, -EINVAL, where, "\"env:\" must be followed by a variable name, "
                           "but this looks like an API key; put the key in the environment or "
                           ".env and write \"env:NAME\"");
    }
    if (!is_var_name(name) || strlen(name) > GKP_ID_MAX) {
      return gkp__cfg_fail(ctx, -EINVAL, where, "\"env:\" must be followed by a variable name "
                           "(letters, digits and _, not starting with a digit); write e.g. "
                           "\"env:GEMINI_KEY_1\"");
    }
    const char *from_env = getenv(name);
    const char *from_file = gkp__dotenv_get(denv, name);
    if (from_env != NULL && from_env[0] != '\0') {
      value = from_env;
      snprintf(source, sizeof source, "env:%s", name);
    } else if (from_file != NULL && from_file[0] != '\0') {
      value = from_file;
      snprintf(source, sizeof source, ".env:%s", name);
    } else {
      const char *env_state = from_env != NULL ? "empty" : "not set";
      const char *file_state = from_file != NULL ? "empty" : "not set";
      if (denv->path == NULL) {
        return gkp__cfg_fail(ctx, -EINVAL, where, "variable %s is missing (environment: %s; no "
                             ".env is read for this configuration); export %s=YOUR_KEY", name,
                             env_state, name);
      }
      if (!denv->exists) {
        file_state = "no such file";
      }
      return gkp__cfg_fail(ctx, -EINVAL, where, "variable %s is missing (environment: %s; %s: "
                           "%s); export %s=YOUR_KEY or add the line %s=YOUR_KEY to %s", name,
                           env_state, denv->path, file_state, name, name, denv->path);
    }
    if (bad_secret_chars(value)) {
      return gkp__cfg_fail(ctx, -EINVAL, where, "the value of %s (%s) contains spaces or control "
                           "characters; remove them", name, value == from_env ? "environment"
                                                                                : denv->path);
    }
  } else {
    if (spec[0] == '$') {
      char name[GKP_ID_MAX + 8];
      snprintf(name, sizeof name, "%s", spec + (spec[1] == '{' ? 2 : 1));
      name[strcspn(name, "}")] = '\0';
      return gkp__cfg_fail(ctx, -EINVAL, where, "variables are not expanded here; write "
                           "\"env:%s\" to read one", is_var_name(name) ? name : "NAME");
    }
    if (bad_secret_chars(spec)) {
      return gkp__cfg_fail(ctx, -EINVAL, where, "the key contains spaces or control characters; "
                           "remove them");
    }
    *literal = 1;
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
    return gkp__cfg_fail(ctx, -EINVAL, where, "expected an object like {\"id\": \"project-1\", "
                         "\"api_key\": \"env:GEMINI_KEY_1\"}, got %s", gkp__json_type(item));
  }
  const cJSON *id = cJSON_GetObjectItemCaseSensitive(item, "id");
  const cJSON *api_key = cJSON_GetObjectItemCaseSensitive(item, "api_key");
  const cJSON *project = cJSON_GetObjectItemCaseSensitive(item, "project");
  const cJSON *inflight = cJSON_GetObjectItemCaseSensitive(item, "max_inflight");
  snprintf(field, sizeof field, "%s.id", where);
  if (id == NULL) {
    return gkp__cfg_fail(ctx, -EINVAL, where, "missing \"id\"; add a name for the key, e.g. "
                         "\"id\": \"project-1\"");
  }
  if (!cJSON_IsString(id)) {
    return gkp__cfg_fail(ctx, -EINVAL, field, "expected a string, got %s; write the id in quotes",
                         gkp__json_type(id));
  }
  const char *problem = id_problem(id->valuestring);
  if (problem != NULL) {
    return gkp__cfg_fail(ctx, -EINVAL, field, "id %s %s; use 1 to 63 letters, digits, '.', '_', "
                         "'@' or '-'", gkp__cfg_quote(id->valuestring, q, sizeof q), problem);
  }
  for (size_t j = 0; j < i; j++) {
    if (strcmp(cfg->keys[j].id, id->valuestring) == 0) {
      return gkp__cfg_fail(ctx, -EINVAL, field, "duplicate id \"%s\" (also used by "
                           "providers.gemini.keys[%zu]); give every key its own id",
                           id->valuestring, j);
    }
  }
  k->id = strdup(id->valuestring);
  if (k->id == NULL) {
    return gkp__cfg_fail(ctx, -ENOMEM, field, "out of memory");
  }

  snprintf(field, sizeof field, "%s.api_key", where);
  if (api_key == NULL) {
    return gkp__cfg_fail(ctx, -EINVAL, where, "key \"%s\" has no \"api_key\"; add \"api_key\": "
                         "\"env:NAME\" and set NAME in the environment or .env", k->id);
  }
  if (!cJSON_IsString(api_key)) {
    return gkp__cfg_fail(ctx, -EINVAL, field, "expected a string, got %s; write \"env:NAME\"",
                         gkp__json_type(api_key));
  }
  if (api_key->valuestring[0] == '\0') {
    return gkp__cfg_fail(ctx, -EINVAL, field, "empty; write \"env:NAME\" and set NAME in the "
                         "environment or .env");
  }
  int rc = resolve_secret(ctx, denv, field, api_key->valuestring, k, literal);
  if (rc < 0) {
    return rc;
  }

  snprintf(field, sizeof field, "%s.project", where);
  if (project != NULL && !cJSON_IsNull(project)) {
    if (!cJSON_IsString(project)) {
      return gkp__cfg_fail(ctx, -EINVAL, field, "expected a string, got %s; write the Google "
                           "project's name in quotes", gkp__json_type(project));
    }
    problem = id_problem(project->valuestring);
    if (problem != NULL) {
      return gkp__cfg_fail(ctx, -EINVAL, field, "project %s %s; use 1 to 63 letters, digits, "
                           "'.', '_', '@' or '-'",
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
    rc = gkp__json_int(ctx, inflight, field, 1, MAX_INFLIGHT_MAX, &v);
    if (rc < 0) {
      return rc;
    }
    k->max_inflight = (int)v;
  }
  return 0;
}

/* Warns (never fails) about secrets stored where others may read them and
 * about one API key configured under two ids. */
static void warn_keys(const gkp__cfg_ctx *ctx, const gkp__config *cfg, const gkp__dotenv *denv,
                      int literal_readable) {
  int dotenv_used = 0;
  for (size_t i = 0; i < cfg->nkeys; i++) {
    const gkp__key_cfg *k = &cfg->keys[i];
    if (strcmp(k->source, "literal") == 0 && literal_readable) {
      gkp__cfg_log(ctx, GKP_LOG_WARN, "providers.gemini.keys[%zu].api_key: a literal API key in "
                   "a file that group or others can read; run `chmod 600 %s`, or write "
                   "\"env:NAME\" and keep the key in the environment or .env", i, ctx->file);
      literal_readable = 0; /* once per file */
    }
    dotenv_used |= strncmp(k->source, ".env:", 5) == 0;
    for (size_t j = 0; j < i; j++) {
      if (strcmp(cfg->keys[j].secret, k->secret) == 0) {
        gkp__cfg_log(ctx, GKP_LOG_WARN, "providers.gemini.keys[%zu]: key \"%s\" has the same API "
                     "key as \"%s\", so they share one quota; remove one of them", i, k->id,
                     cfg->keys[j].id);
        break;
      }
    }
  }
  if (dotenv_used && (denv->mode & 044) != 0 && ctx->log != NULL) {
    char line[GKP_MSG_MAX];
    snprintf(line, sizeof line, "%s: holds API keys and group or others can read it; run "
             "`chmod 600 %s`", denv->path, denv->path);
    ctx->log(ctx->log_ud, GKP_LOG_WARN, line);
  }
}

/* Reads providers.gemini.keys into cfg->keys.  Returns 0 or a negative errno
 * with ctx->err filled. */
static int load_keys(const gkp__cfg_ctx *ctx, gkp__config *cfg, const gkp__dotenv *denv,
                     const cJSON *root, int literal_readable) {
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
    return gkp__cfg_fail(ctx, -EINVAL, "providers.gemini.keys", "expected an array, got %s; "
                         "write [{\"id\": ..., \"api_key\": ...}, ...]", gkp__json_type(keys));
  }
  size_t n = (size_t)cJSON_GetArraySize(keys);
  if (n == 0) {
    return gkp__cfg_fail(ctx, -EINVAL, "providers.gemini.keys", "the pool is empty; add at least "
                         "one key, e.g. {\"id\": \"project-1\", \"api_key\": "
                         "\"env:GEMINI_KEY_1\"}");
  }
  cfg->keys = calloc(n, sizeof *cfg->keys);
  if (cfg->keys == NULL) {
    return gkp__cfg_fail(ctx, -ENOMEM, "providers.gemini.keys", "out of memory");
  }
  size_t i = 0;
  int literal = 0;
  const cJSON *item;
  cJSON_ArrayForEach(item, keys) {
    cfg->nkeys = i + 1; /* so that a half-filled entry is freed */
    int rc = load_key(ctx, cfg, denv, item, i, &literal);
    if (rc < 0) {
      return rc;
    }
    i++;
  }
  warn_keys(ctx, cfg, denv, literal && literal_readable);
  return 0;
}

/* ---- Top level ------------------------------------------------------------- */

/* Sets cfg->base_url from $GOOGLE_GEMINI_BASE_URL, "base_url" or Google's,
 * without trailing slashes.  Returns 0 or a negative errno. */
static int load_base_url(const gkp__cfg_ctx *ctx, gkp__config *cfg, const cJSON *root) {
  const char *env = getenv("GOOGLE_GEMINI_BASE_URL");
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, "base_url");
  const char *url = DEFAULT_BASE_URL;
  const char *where = "base_url";
  if (env != NULL && env[0] != '\0') {
    url = env;
    where = "$GOOGLE_GEMINI_BASE_URL (overrides base_url)";
  } else if (item != NULL && !cJSON_IsNull(item)) {
    if (!cJSON_IsString(item)) {
      return gkp__cfg_fail(ctx, -EINVAL, where, "expected a string, got %s; write e.g. \"%s\"",
                           gkp__json_type(item), DEFAULT_BASE_URL);
    }
    url = item->valuestring;
  }
  size_t len = strlen(url);
  while (len > 0 && url[len - 1] == '/') {
    len--;
  }
  size_t scheme = strncasecmp(url, "https://", 8) == 0 ? 8
                  : strncasecmp(url, "http://", 7) == 0 ? 7
                                                        : 0;
  if (scheme == 0 || len <= scheme || bad_secret_chars(url)) {
    char q[96];
    return gkp__cfg_fail(ctx, -EINVAL, where, "%s is not a URL starting with http:// or "
                         "https://; write e.g. \"%s\" (or \"http://127.0.0.1:PORT\" for the "
                         "emulator)", gkp__cfg_quote(url, q, sizeof q), DEFAULT_BASE_URL);
  }
  cfg->base_url = strndup(url, len);
  if (cfg->base_url == NULL) {
    return gkp__cfg_fail(ctx, -ENOMEM, where, "out of memory");
  }
  return 0;
}

/* Joins dir and ".env".  Returns a malloc'd path or NULL. */
static char *dotenv_path(const char *dir) {
  size_t len = strlen(dir);
  int slash = len > 0 && dir[len - 1] == '/';
  char *path = malloc(len + 6);
  if (path != NULL) {
    snprintf(path, len + 6, "%s%s.env", dir, slash ? "" : "/");
  }
  return path;
}

/* Everything gkp__config_parse does, plus the literal-key warning when the
 * file it came from is readable by group or others. */
static int parse_config(const char *json, size_t len, const char *name, const char *dir,
                        int literal_readable, gkp_log_fn log, void *log_ud, gkp__config **out,
                        gkp_error *err) {
  gkp__dotenv denv;
  cJSON *root = NULL;
  int rc = -ENOMEM;
  memset(&denv, 0, sizeof denv);
  gkp__config *cfg = calloc(1, sizeof *cfg);
  if (cfg == NULL || (cfg->path = strdup(name)) == NULL ||
      (dir != NULL && (cfg->dir = strdup(dir)) == NULL)) {
    gkp__err(err, rc, "%s: out of memory", name);
    goto out;
  }
  gkp__cfg_ctx ctx = {.file = cfg->path, .log = log, .log_ud = log_ud, .err = err};
  rc = parse_json(&ctx, json, len, &root);
  if (rc < 0) {
    goto out;
  }
  if (!cJSON_IsObject(root)) {
    rc = gkp__cfg_fail(&ctx, -EINVAL, "top level", "expected an object, got %s; the file must "
                       "look like {\"providers\": {\"gemini\": {\"keys\": [...]}}} (see "
                       "keys.json.example)", gkp__json_type(root));
    goto out;
  }
  int64_t inflight = 1;
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, "max_inflight");
  if (item != NULL && !cJSON_IsNull(item)) {
    rc = gkp__json_int(&ctx, item, "max_inflight", 1, MAX_INFLIGHT_MAX, &inflight);
    if (rc < 0) {
      goto out;
    }
  }
  cfg->max_inflight = (int)inflight;
  if (cfg->dir != NULL) {
    char *path = dotenv_path(cfg->dir);
    rc = path != NULL ? gkp__dotenv_load(path, &denv, err)
                      : gkp__err(err, -ENOMEM, "%s: out of memory", name);
    free(path);
    if (rc < 0) {
      goto out;
    }
  }
  rc = load_keys(&ctx, cfg, &denv, root, literal_readable);
  if (rc == 0) {
    rc = load_base_url(&ctx, cfg, root);
  }
  if (rc == 0) {
    rc = gkp__config_models_load(&ctx, cfg, root);
  }
  if (rc == 0) {
    rc = gkp__config_profiles_load(&ctx, cfg, root);
  }
out:
  gkp__dotenv_free(&denv);
  json_wipe(root);
  cJSON_Delete(root);
  if (rc < 0) {
    gkp__config_free(cfg);
    return rc;
  }
  gkp__err_clear(err);
  *out = cfg;
  return 0;
}

/* See config.h. */
int gkp__config_parse(const char *json, size_t len, const char *name, const char *dir,
                      gkp_log_fn log, void *log_ud, gkp__config **out, gkp_error *err) {
  if (out == NULL) {
    return gkp__err(err, -EINVAL, "gkp__config_parse: no place for the result");
  }
  *out = NULL;
  if (json == NULL) {
    len = 0;
    json = "";
  }
  return parse_config(json, len, name != NULL ? name : "<text>", dir, 0, log, log_ud, out, err);
}

/* Reads a whole keys.json into a malloc'd buffer (*buf, *len) and its mode.
 * Returns 0 or a negative errno with a message naming the file. */
static int read_file(const char *path, char **buf, size_t *len, unsigned *mode, gkp_error *err) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    return gkp__err(err, -e, "%s: cannot open: %s; check the path and its permissions", path,
                    strerror(e));
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return gkp__err(err, -EINVAL, "%s: not a regular file; name the keys.json file itself", path);
  }
  if (st.st_size > CONFIG_MAX_BYTES) {
    close(fd);
    return gkp__err(err, -EFBIG, "%s: larger than %d bytes; is it the right file?", path,
                    CONFIG_MAX_BYTES);
  }
  size_t cap = (size_t)st.st_size + 1;
  char *b = malloc(cap);
  if (b == NULL) {
    close(fd);
    return gkp__err(err, -ENOMEM, "%s: out of memory", path);
  }
  size_t n = 0;
  while (n < cap - 1) {
    ssize_t r = read(fd, b + n, cap - 1 - n);
    if (r < 0 && errno == EINTR) {
      continue;
    }
    if (r < 0) {
      int e = errno;
      close(fd);
      explicit_bzero(b, cap);
      free(b);
      return gkp__err(err, -e, "%s: cannot read: %s", path, strerror(e));
    }
    if (r == 0) {
      break;
    }
    n += (size_t)r;
  }
  close(fd);
  b[n] = '\0';
  *buf = b;
  *len = n;
  *mode = (unsigned)(st.st_mode & 07777);
  return 0;
}

/* See config.h.  The .env is looked for in the file's directory. */
int gkp__config_load(const char *path, gkp_log_fn log, void *log_ud, gkp__config **out,
                     gkp_error *err) {
  if (out == NULL || path == NULL || path[0] == '\0') {
    return gkp__err(err, -EINVAL, "gkp__config_load: no configuration path given");
  }
  *out = NULL;
  char *buf = NULL;
  size_t len = 0;
  unsigned mode = 0;
  int rc = read_file(path, &buf, &len, &mode, err);
  if (rc < 0) {
    return rc;
  }
  char *dir = strdup(path);
  if (dir == NULL) {
    rc = gkp__err(err, -ENOMEM, "%s: out of memory", path);
  } else {
    char *slash = strrchr(dir, '/');
    if (slash == NULL) {
      strcpy(dir, ".");
    } else {
      slash[slash == dir ? 1 : 0] = '\0';
    }
    rc = parse_config(buf, len, path, dir, (mode & 044) != 0, log, log_ud, out, err);
  }
  free(dir);
  explicit_bzero(buf, len);
  free(buf);
  return rc;
}

/* ---- Lookups and freeing ----------------------------------------------------- */

/* See config.h. */
const gkp__key_cfg *gkp__config_key(const gkp__config *cfg, const char *id) {
  for (size_t i = 0; cfg != NULL && id != NULL && i < cfg->nkeys; i++) {
    if (strcmp(cfg->keys[i].id, id) == 0) {
      return &cfg->keys[i];
    }
  }
  return NULL;
}

/* See config.h. */
const gkp__model_cfg *gkp__config_model(const gkp__config *cfg, const char *id) {
  for (size_t i = 0; cfg != NULL && id != NULL && i < cfg->nmodels; i++) {
    if (strcmp(cfg->models[i].id, id) == 0) {
      return &cfg->models[i];
    }
  }
  return NULL;
}

/* See config.h. */
const gkp__profile_cfg *gkp__config_profile(const gkp__config *cfg, const char *name) {
  for (size_t i = 0; cfg != NULL && name != NULL && i < cfg->nprofiles; i++) {
    if (strcmp(cfg->profiles[i].name, name) == 0) {
      return &cfg->profiles[i];
    }
  }
  return NULL;
}

/* See config.h. */
void gkp__config_free(gkp__config *cfg) {
  if (cfg == NULL) {
    return;
  }
  for (size_t i = 0; i < cfg->nkeys; i++) {
    gkp__key_cfg *k = &cfg->keys[i];
    if (k->secret != NULL) {
      explicit_bzero(k->secret, strlen(k->secret));
    }
    free(k->secret);
    free(k->id);
    free(k->project);
    free(k->source);
  }
  for (size_t i = 0; i < cfg->nmodels; i++) {
    gkp__model_cfg_clear(&cfg->models[i]);
  }
  for (size_t i = 0; i < cfg->nprofiles; i++) {
    gkp__profile_cfg_clear(&cfg->profiles[i]);
  }
  free(cfg->keys);
  free(cfg->models);
  free(cfg->profiles);
  free(cfg->path);
  free(cfg->dir);
  free(cfg->base_url);
  free(cfg);
}
