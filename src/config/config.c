/*
 * config.c - finding keys.json, reading it, and the configuration's lookups.
 *
 * Every mistake becomes one line "FILE: WHERE: WHAT; FIX", where WHERE is the
 * JSON path of the offending field (e.g. providers.gemini.keys[1].api_key) or
 * "line L, column C" for a syntax error.  No message ever holds a secret.
 * The keys are read in keys.c, the .env beside the file in dotenv.c, models
 * in models.c, profiles in profiles.c; check.c holds the helpers they share.
 */
#include "config/config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/secmem.h"
#include "config/internal.h"

#define DEFAULT_BASE_URL "https://generativelanguage.googleapis.com"
#define CONFIG_MAX_BYTES (4 * 1024 * 1024)

/* ---- Finding the file -------------------------------------------------- */

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
    return gkp__err(
        err, -e,
        "%s: %s (the configuration file %s); check the path, or create it (see keys.json.example)",
        path, strerror(e), how);
  }
  if (S_ISDIR(st.st_mode)) {
    return gkp__err(
        err, -EISDIR,
        "%s: is a directory (the configuration file %s); name the keys.json file itself", path,
        how);
  }
  return 0;
}

/* See config.h. */
int gkp__config_find(const char *explicit_path, char *buf, size_t len, gkp_error *err) {
  int origin;
  return gkp__config_locate(explicit_path, buf, len, &origin, err);
}

/* See config.h.  Candidates that exist but are directories are errors. */
int gkp__config_locate(const char *explicit_path, char *buf, size_t len, int *origin,
                       gkp_error *err) {
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
    *origin = GKP_CONFIG_GIVEN;
  } else if (env != NULL && env[0] != '\0') {
    named = env;
    how = "named by $GEMINI_POOL_CONFIG";
    *origin = GKP_CONFIG_ENV;
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
      return gkp__err(err, -EISDIR, "%s: is a directory, not a keys.json file; remove or rename it",
                      candidates[i]);
    }
    *origin = i == 0 ? GKP_CONFIG_CWD : GKP_CONFIG_XDG;
    return copy_path(candidates[i], buf, len, err);
  }
  return gkp__err(
      err, -ENOENT,
      "no configuration found: $GEMINI_POOL_CONFIG is not set and neither %s nor %s exists; create "
      "one (see keys.json.example), or pass --config FILE",
      local,
      xdg[0] ? xdg : "$XDG_CONFIG_HOME/gemini-pool/keys.json ($XDG_CONFIG_HOME and $HOME unset)");
}

/* ---- Top level --------------------------------------------------------- */

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
  size_t scheme = strncasecmp(url, "https://", 8) == 0  ? 8
                  : strncasecmp(url, "http://", 7) == 0 ? 7
                                                        : 0;
  if (scheme == 0 || len <= scheme || gkp__cfg_has_blank(url)) {
    char q[96];
    return gkp__cfg_fail(ctx, -EINVAL, where,
                         "%s is not a URL starting with http:// or https://; write e.g. \"%s\" (or "
                         "\"http://127.0.0.1:PORT\" for the emulator)",
                         gkp__cfg_quote(url, q, sizeof q), DEFAULT_BASE_URL);
  }
  char host[256];
  if (scheme == 7 && (gkp__url_host(url, host, sizeof host) != 0 || !gkp__host_is_loopback(host))) {
    char q[96];
    return gkp__cfg_fail(ctx, -EPERM, where,
                         "%s is plain http:// to a host that is not this machine, so keys would "
                         "cross the network in clear text; use https:// (plain http:// is for "
                         "loopback only, e.g. \"http://127.0.0.1:PORT\")",
                         gkp__cfg_quote(url, q, sizeof q));
  }
  cfg->base_url = strndup(url, len);
  if (cfg->base_url == NULL) {
    return gkp__cfg_fail(ctx, -ENOMEM, where, "out of memory");
  }
  return 0;
}

/* Sets cfg->state from "state" (absent: NULL).  Returns 0 or a negative errno. */
static int load_state(const gkp__cfg_ctx *ctx, gkp__config *cfg, const cJSON *root) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, "state");
  if (item == NULL || cJSON_IsNull(item)) {
    return 0;
  }
  if (!cJSON_IsString(item) || item->valuestring[0] == '\0') {
    return gkp__cfg_fail(ctx, -EINVAL, "state",
                         "expected a file path or a Redis URL, got %s; write e.g. "
                         "\"redis://127.0.0.1:6379/0\"",
                         gkp__json_type(item));
  }
  cfg->state = strdup(item->valuestring);
  return cfg->state != NULL ? 0 : gkp__cfg_fail(ctx, -ENOMEM, "state", "out of memory");
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

/* Moves every key's secret onto undumpable pages of one allocation (so
 * that a core dump never holds a key), wiping the copies they leave.
 * Returns 0 or -ENOMEM. */
static int seal_secrets(gkp__config *cfg) {
  size_t total = 0, off = 0;
  for (size_t i = 0; i < cfg->nkeys; i++) {
    total += strlen(cfg->keys[i].secret) + 1;
  }
  char *arena = gkp__secmem_alloc(total);
  if (arena == NULL) {
    return -ENOMEM;
  }
  for (size_t i = 0; i < cfg->nkeys; i++) {
    char *s = cfg->keys[i].secret;
    size_t n = strlen(s) + 1;
    memcpy(arena + off, s, n);
    explicit_bzero(s, n);
    free(s);
    cfg->keys[i].secret = arena + off;
    off += n;
  }
  cfg->secrets = arena;
  cfg->secrets_len = total;
  return 0;
}

/* Everything gkp__config_parse does, plus the literal-key warning when the
 * file it came from is readable by group or others.  Warnings are only given
 * for a configuration that loads. */
static int parse_config(const char *json, size_t len, const char *name, const char *dir,
                        int literal_readable, int origin, gkp_log_fn log, void *log_ud,
                        gkp__config **out, gkp_error *err) {
  gkp__dotenv denv;
  gkp__cfg_ctx ctx = {.file = name, .log = log, .log_ud = log_ud, .err = err};
  cJSON *root = NULL;
  int literal = 0;
  int64_t inflight = 1;
  int rc = -ENOMEM;
  memset(&denv, 0, sizeof denv);
  gkp__config *cfg = calloc(1, sizeof *cfg);
  if (cfg != NULL) {
    cfg->origin = origin;
    cfg->path = strdup(name);
    cfg->dir = dir != NULL ? strdup(dir) : NULL;
  }
  if (cfg == NULL || cfg->path == NULL || (dir != NULL && cfg->dir == NULL)) {
    gkp__err(err, rc, "%s: out of memory", name);
    goto out;
  }
  rc = gkp__json_parse(&ctx, json, len, &root);
  if (rc < 0) {
    goto out;
  }
  if (!cJSON_IsObject(root)) {
    rc = gkp__cfg_fail(&ctx, -EINVAL, "top level",
                       "expected an object, got %s; the file must look like {\"providers\": "
                       "{\"gemini\": {\"keys\": [...]}}} (see keys.json.example)",
                       gkp__json_type(root));
    goto out;
  }
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, "max_inflight");
  if (item != NULL && !cJSON_IsNull(item)) {
    rc = gkp__json_int(&ctx, item, "max_inflight", 1, GKP__MAX_INFLIGHT_MAX, &inflight);
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
    if (rc == 0) {
      rc = gkp__config_dotenv_trust(&ctx, &denv);
    }
    if (rc < 0) {
      goto out;
    }
  }
  rc = gkp__config_keys_load(&ctx, cfg, &denv, root, &literal);
  if (rc == 0) {
    rc = load_base_url(&ctx, cfg, root);
  }
  if (rc == 0) {
    const char *env_url = getenv("GOOGLE_GEMINI_BASE_URL");
    rc = gkp__config_endpoint_trust(&ctx, cfg, origin, env_url != NULL && env_url[0] != '\0');
  }
  if (rc == 0) {
    rc = load_state(&ctx, cfg, root);
  }
  if (rc == 0) {
    rc = gkp__config_models_load(&ctx, cfg, root);
  }
  if (rc == 0) {
    rc = gkp__config_profiles_load(&ctx, cfg, root);
  }
  if (rc == 0) {
    rc = gkp__config_routing_load(&ctx, cfg, root);
  }
  if (rc == 0 && (seal_secrets(cfg) != 0 || gkp__config_build_runs(cfg) != 0)) {
    rc = gkp__cfg_fail(&ctx, -ENOMEM, NULL, "out of memory");
  }
  if (rc == 0) {
    gkp__config_keys_warn(&ctx, cfg, &denv, literal && literal_readable);
  }
out:
  gkp__dotenv_free(&denv);
  gkp__json_wipe(root);
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
  return parse_config(json, len, name != NULL ? name : "<text>", dir, 0, GKP_CONFIG_TEXT, log,
                      log_ud, out, err);
}

/* Reads a whole keys.json into a malloc'd buffer (*buf, *len) and its mode.
 * Returns 0 or a negative errno with a message naming the file. */
static int read_file(const char *path, char **buf, size_t *len, struct stat *out_st,
                     gkp_error *err) {
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
  *out_st = st;
  return 0;
}

/* See config.h. */
int gkp__config_load(const char *path, gkp_log_fn log, void *log_ud, gkp__config **out,
                     gkp_error *err) {
  return gkp__config_load_from(path, GKP_CONFIG_GIVEN, log, log_ud, out, err);
}

/* See config.h.  The .env is looked for in the file's directory. */
int gkp__config_load_from(const char *path, int origin, gkp_log_fn log, void *log_ud,
                          gkp__config **out, gkp_error *err) {
  if (out == NULL || path == NULL || path[0] == '\0') {
    return gkp__err(err, -EINVAL, "gkp__config_load: no configuration path given");
  }
  *out = NULL;
  char *buf = NULL;
  size_t len = 0;
  struct stat st;
  gkp__cfg_ctx ctx = {.file = path, .log = log, .log_ud = log_ud, .err = err};
  int rc = read_file(path, &buf, &len, &st, err);
  if (rc < 0) {
    return rc;
  }
  rc = gkp__config_file_trust(&ctx, &st, origin);
  if (rc < 0) {
    explicit_bzero(buf, len);
    free(buf);
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
    rc = parse_config(buf, len, path, dir, (st.st_mode & 044) != 0, origin, log, log_ud, out, err);
  }
  free(dir);
  explicit_bzero(buf, len);
  free(buf);
  return rc;
}

/* ---- Lookups and freeing ----------------------------------------------- */

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
    if (cfg->secrets == NULL && k->secret != NULL) {
      explicit_bzero(k->secret, strlen(k->secret));
      free(k->secret);
    }
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
  gkp__routing_clear(&cfg->routing);
  gkp__secmem_free(cfg->secrets, cfg->secrets_len);
  gkp__secmem_free(cfg->runs, cfg->nruns * sizeof *cfg->runs);
  free(cfg->keys);
  free(cfg->models);
  free(cfg->profiles);
  free(cfg->path);
  free(cfg->dir);
  free(cfg->base_url);
  free(cfg->state);
  free(cfg);
}
