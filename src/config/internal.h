/*
 * internal.h - what the files of src/config share; not for other parts.
 *
 * config.c finds and reads keys.json, keys.c its keys, dotenv.c the .env
 * beside it, models.c the model table and chains, profiles.c the profiles,
 * and check.c owns the helpers that turn a mistake into one line
 * "FILE: WHERE: WHAT; FIX".
 */
#ifndef GKP_CONFIG_INTERNAL_H
#define GKP_CONFIG_INTERNAL_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "config/config.h"

/* Largest max_inflight, per key or as the default. */
#define GKP__MAX_INFLIGHT_MAX 16

/* ---- .env files (dotenv.c) ---------------------------------------------- */

/* The variables of one .env file.  Values are secrets: wiped when freed. */
typedef struct gkp__dotenv {
  char *path;    /* the file looked for (NULL: none is read) */
  int exists;    /* whether it was found */
  unsigned mode; /* its permission bits, when read from a file */
  char **names;  /* n names, later duplicates replace earlier values */
  char **values; /* n values, never NULL (possibly "") */
  size_t n;
  size_t cap;
} gkp__dotenv;

/*
 * Reads the .env file at `path` into *env (zeroed first).  A missing file is
 * not an error: env->exists stays 0.  Returns 0, or a negative errno with one
 * line in err naming the file and the line ("FILE: line N: WHAT; FIX").
 * The caller frees *env with gkp__dotenv_free in every case.
 */
int gkp__dotenv_load(const char *path, gkp__dotenv *env, gkp_error *err);

/* Parses .env text into *env, which must be zeroed or hold earlier
 * variables (later ones replace them); `path` names it in messages.
 * Returns as gkp__dotenv_load. */
int gkp__dotenv_parse(const char *text, size_t len, const char *path, gkp__dotenv *env,
                      gkp_error *err);

/* The value of `name`, or NULL when the file does not set it.  Borrowed. */
const char *gkp__dotenv_get(const gkp__dotenv *env, const char *name);

/* Wipes and frees what *env holds; *env is left empty.  NULL is a no-op. */
void gkp__dotenv_free(gkp__dotenv *env);

/* ---- Messages and JSON helpers (check.c) -------------------------------- */

/* What every check needs: the file's name, where to log, where errors go. */
typedef struct gkp__cfg_ctx {
  const char *file; /* the file named in messages */
  gkp_log_fn log;   /* may be NULL */
  void *log_ud;
  gkp_error *err; /* may be NULL */
} gkp__cfg_ctx;

/* Fills ctx->err with "FILE: WHERE: " and the formatted rest; returns code. */
int gkp__cfg_fail(const gkp__cfg_ctx *ctx, int code, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Sends "FILE: " and the formatted rest to the log callback, if any. */
void gkp__cfg_log(const gkp__cfg_ctx *ctx, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Copies s into buf for a message: quoted, control characters as '?',
 * shortened with "..." past 64 bytes.  Returns buf.  Never use it on secrets. */
const char *gkp__cfg_quote(const char *s, char *buf, size_t len);

/* "a string", "a number", "an object", ... for "expected X, got Y". */
const char *gkp__json_type(const cJSON *item);

/* Reads a whole number in [min, max] into *out; otherwise fills ctx->err
 * naming `where` and the expected range, and returns -EINVAL. */
int gkp__json_int(const gkp__cfg_ctx *ctx, const cJSON *item, const char *where, int64_t min,
                  int64_t max, int64_t *out);

/* Returns NULL when `name` is a valid directory name for a profile or model
 * (1..63 of [A-Za-z0-9._-], no leading '.', not status/README/ctl), else
 * what is wrong with it, as a phrase for a message. */
const char *gkp__cfg_name_problem(const char *name);

/* Returns NULL when `id` is a valid key or project id (1..63 characters of
 * [A-Za-z0-9._@-], not "." or ".."), else a phrase saying what is wrong. */
const char *gkp__cfg_id_problem(const char *id);

/* Whether s holds whitespace or control characters (a pasted newline in a
 * key would corrupt the HTTP header it goes into). */
int gkp__cfg_has_blank(const char *s);

/* Parses JSON text (an optional UTF-8 BOM, then one value, then only
 * whitespace).  Returns 0 and *out (the caller frees it with cJSON_Delete),
 * or -EINVAL with "FILE: line L, column C: invalid JSON; FIX" in ctx->err. */
int gkp__json_parse(const gkp__cfg_ctx *ctx, const char *json, size_t len, cJSON **out);

/* Wipes every string value of a cJSON tree (api_key values are among them)
 * before it is deleted.  NULL is a no-op. */
void gkp__json_wipe(cJSON *item);

/* ---- Keys (keys.c) ------------------------------------------------------ */

/*
 * Reads providers.gemini.keys into cfg->keys (with cfg->max_inflight set),
 * resolving each api_key from the environment, `denv` or the literal; sets
 * *literal when a key is written literally.  Returns 0 or a negative errno
 * with ctx->err filled; what was added to cfg is freed with the config.
 */
int gkp__config_keys_load(const gkp__cfg_ctx *ctx, gkp__config *cfg, const gkp__dotenv *denv,
                          const cJSON *root, int *literal);

/* Logs warnings (never fails): a literal key when `literal_readable` (the
 * file is readable by group or others), a .env holding keys that others can
 * read, and one API key configured under two ids. */
void gkp__config_keys_warn(const gkp__cfg_ctx *ctx, const gkp__config *cfg, const gkp__dotenv *denv,
                           int literal_readable);

/* ---- Trust (trust.c) ---------------------------------------------------- */

/* Copies the host of `url` (no user, port or brackets) into host.  Returns 0
 * or -EINVAL when there is none or it does not fit. */
int gkp__url_host(const char *url, char *host, size_t len);

/* Whether host is this machine (localhost, 127.0.0.0/8, ::1). */
int gkp__host_is_loopback(const char *host);

/* Whether host is Google's API (googleapis.com or a name under it). */
int gkp__host_is_google(const char *host);

/* Refuses (-EPERM, ctx->err filled) a keys.json that group or others can
 * write, or one found in the current directory (`origin` GKP_CONFIG_CWD)
 * that another user owns.  Returns 0 when it may be used. */
int gkp__config_file_trust(const gkp__cfg_ctx *ctx, const struct stat *st, int origin);

/* Refuses (-EPERM) a .env that group or others can write.  Returns 0 when
 * it may be used or does not exist. */
int gkp__config_dotenv_trust(const gkp__cfg_ctx *ctx, const gkp__dotenv *denv);

/* Refuses (-EPERM) a configuration found in the current directory whose
 * base_url (not one from $GOOGLE_GEMINI_BASE_URL: `url_from_env`) would send
 * a key taken from the environment to a host that is neither Google's nor
 * loopback.  Returns 0 otherwise. */
int gkp__config_endpoint_trust(const gkp__cfg_ctx *ctx, const gkp__config *cfg, int origin,
                               int url_from_env);

/* ---- Redaction (redact.c) ---------------------------------------------- */

/* Builds cfg->runs from the keys' secrets.  Returns 0 or -ENOMEM. */
int gkp__config_build_runs(gkp__config *cfg);

/* ---- Models (models.c) and profiles (profiles.c) ------------------------ */

/*
 * Builds cfg->models: the built-in table, then the file's "models" entries,
 * then its "fallback" object; checks every fallback names a known model and
 * that no chain loops.  Returns 0 or a negative errno with ctx->err filled;
 * what was added to cfg is freed with the config either way.
 */
int gkp__config_models_load(const gkp__cfg_ctx *ctx, gkp__config *cfg, const cJSON *root);

/*
 * Builds cfg->profiles: the default directories, one per model of
 * cfg->models, then the file's "profiles" (merged over a profile of the same
 * name).  Needs cfg->models.  Returns 0 or a negative errno with ctx->err.
 */
int gkp__config_profiles_load(const gkp__cfg_ctx *ctx, gkp__config *cfg, const cJSON *root);

/*
 * Builds cfg->routing: the built-in rules, then the file's "routing"
 * (types added or merged by name, complexity words and quality levels
 * replaced).  Needs cfg->models.  Returns 0 or a negative errno with
 * ctx->err: one line naming the place and the fix.
 */
int gkp__config_routing_load(const gkp__cfg_ctx *ctx, gkp__config *cfg, const cJSON *root);
void gkp__routing_clear(gkp__routing *r);

/* Frees the strings of one model or profile entry (not the entry itself). */
void gkp__model_cfg_clear(gkp__model_cfg *m);
void gkp__profile_cfg_clear(gkp__profile_cfg *p);

#endif
