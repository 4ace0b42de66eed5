/*
 * internal.h - what the files of src/config share; not for other parts.
 *
 * dotenv.c reads .env files, models.c holds the model table and profiles,
 * config.c reads keys.json and owns the helpers that turn a mistake into one
 * line "FILE: WHERE: WHAT; FIX".
 */
#ifndef GKP_CONFIG_INTERNAL_H
#define GKP_CONFIG_INTERNAL_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

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

/* ---- Messages and JSON helpers (config.c) ------------------------------- */

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

/* strdup that tolerates NULL (returns NULL for NULL). */
char *gkp__cfg_strdup(const char *s);

/* ---- Models and profiles (models.c) ------------------------------------- */

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

/* Frees the strings of one model or profile entry (not the entry itself). */
void gkp__model_cfg_clear(gkp__model_cfg *m);
void gkp__profile_cfg_clear(gkp__profile_cfg *p);

#endif
