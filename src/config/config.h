/*
 * config.h - keys.json, .env and the model table, loaded and validated.
 *
 * A gkp__config is immutable once loaded; a reload builds a new one.  It owns
 * every string it points to.  Secrets are wiped when it is freed.
 */
#ifndef GKP_CONFIG_H
#define GKP_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "gkp.h"

typedef struct gkp__key_cfg {
  char *id;         /* unique, at most GKP_ID_MAX-1 bytes */
  char *project;    /* "project" or, by default, the id */
  char *secret;     /* the API key itself */
  char *source;     /* where it came from: "env:NAME", ".env:NAME" or "literal" */
  int max_inflight; /* per key; default from the top-level max_inflight (1) */
} gkp__key_cfg;

typedef struct gkp__model_cfg {
  char *id;           /* e.g. "gemini-3-flash-preview" */
  gkp_limits limits;  /* GKP_LIMIT_UNKNOWN where unknown */
  char *fallback;     /* next model, NULL at the end of the chain */
  int image_output;   /* generates images (responseModalities TEXT+IMAGE) */
  int thinking_level; /* 1: Gemini 3 style thinkingLevel, 0: 2.5 style thinkingBudget,
                         -1: no thinking config */
} gkp__model_cfg;

typedef struct gkp__profile_cfg {
  char *name;   /* the directory name */
  char *model;  /* a known model id */
  char *system; /* system instruction or NULL */
  char **tools; /* "google_search", "code_execution", "url_context" */
  size_t ntools;
  char *thinking;            /* "minimal" | "low" | "medium" | "high" or NULL */
  int64_t max_wait_ms;       /* how long a job may wait for a key (default 120 s) */
  double temperature;        /* < 0: not set */
  int64_t max_output_tokens; /* <= 0: not set */
} gkp__profile_cfg;

typedef struct gkp__config {
  char *path;       /* the file it was read from ("<text>" name when parsed from memory) */
  int origin;       /* enum gkp_config_origin: how the file was found */
  char *dir;        /* its directory (where .env is looked for), may be NULL */
  char *base_url;   /* $GOOGLE_GEMINI_BASE_URL, "base_url", or Google's */
  char *state;      /* "state": a state file path or a Redis URL; NULL: not given */
  int max_inflight; /* default per key */
  gkp__key_cfg *keys;
  size_t nkeys;
  gkp__model_cfg *models; /* built-in table merged with "models" */
  size_t nmodels;
  gkp__profile_cfg *profiles; /* default directories plus "profiles" */
  size_t nprofiles;
  char *secrets; /* every key's secret, on undumpable pages (common/secmem.h) */
  size_t secrets_len;
  uint64_t *runs; /* every 8-byte run of every secret, sorted, undumpable */
  size_t nruns;
  int refs; /* references the engine holds to this snapshot (atomic) */
} gkp__config;

/*
 * Finds the configuration file: `explicit_path` if given, else
 * $GEMINI_POOL_CONFIG, ./keys.json, $XDG_CONFIG_HOME/gemini-pool/keys.json
 * (~/.config when XDG_CONFIG_HOME is unset).  Writes the path into buf.
 * Returns 0, or -ENOENT with a message listing where it looked.
 */
int gkp__config_find(const char *explicit_path, char *buf, size_t len, gkp_error *err);

/* Same, and sets *origin to how it was found (enum gkp_config_origin). */
int gkp__config_locate(const char *explicit_path, char *buf, size_t len, int *origin,
                       gkp_error *err);

/*
 * Loads and validates a configuration file (and the .env beside it).
 * Warnings (literal key in a file others can read) go to log.
 * Returns 0 and *out, or a negative errno and one line in err naming the
 * file, the place and the fix.
 */
int gkp__config_load(const char *path, gkp_log_fn log, void *log_ud, gkp__config **out,
                     gkp_error *err);

/*
 * Same, for a file found by gkp__config_locate: `origin` says how, and a
 * file from the current directory is trusted only as far as SPEC's Trust
 * rules allow (it belongs to the user, nobody else can write it, and no key
 * from the environment goes to a host other than Google's or loopback).
 * gkp__config_load is this with GKP_CONFIG_GIVEN.
 */
int gkp__config_load_from(const char *path, int origin, gkp_log_fn log, void *log_ud,
                          gkp__config **out, gkp_error *err);

/* Same, from JSON text; `name` is used in messages, `dir` is where .env is
 * looked for (NULL: nowhere). */
int gkp__config_parse(const char *json, size_t len, const char *name, const char *dir,
                      gkp_log_fn log, void *log_ud, gkp__config **out, gkp_error *err);

/* Replaces, in the NUL-terminated `text`, every stretch holding a run of 8
 * or more characters of a configured key by "…" (never longer, so in
 * place).  Returns how many stretches were replaced. */
size_t gkp__config_redact(const gkp__config *cfg, char *text);

/* Frees a configuration, wiping its secrets.  NULL is a no-op. */
void gkp__config_free(gkp__config *cfg);

/* Lookups; NULL when absent. */
const gkp__key_cfg *gkp__config_key(const gkp__config *cfg, const char *id);
const gkp__model_cfg *gkp__config_model(const gkp__config *cfg, const char *id);
const gkp__profile_cfg *gkp__config_profile(const gkp__config *cfg, const char *name);

/* The built-in model table (SPEC §2), in chain order. */
size_t gkp__builtin_model_count(void);
const gkp__model_cfg *gkp__builtin_model(size_t i);

#endif
