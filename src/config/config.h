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
  int route;                 /* "route": "auto": the pool picks the model (model is nominal) */
  char *quality;             /* "quality": draft | standard | production | research, or NULL */
  int64_t max_wait_ms;       /* how long a job may wait for a key (default 120 s) */
  double temperature;        /* < 0: not set */
  int64_t max_output_tokens; /* <= 0: not set */
} gkp__profile_cfg;

/* Routing rules (SPEC §5.1): built-in defaults, then "routing" in keys.json
 * (routing.c). */
enum { GKP__RT_SEARCH = 1, GKP__RT_CODE = 2, GKP__RT_URL = 4 }; /* tool bits */
enum { GKP__CX_LOW = 0, GKP__CX_MEDIUM, GKP__CX_HIGH, GKP__CX_RESEARCH, GKP__CX_COUNT };
enum { GKP__Q_DRAFT = 0, GKP__Q_STANDARD, GKP__Q_PRODUCTION, GKP__Q_RESEARCH, GKP__Q_COUNT };

typedef struct gkp__strv {
  char **v;
  size_t n;
} gkp__strv;

typedef struct gkp__route_type {
  char *name;       /* "micro", "current_research", ... */
  gkp__strv words;  /* lower-case substrings of the task; the first type matching wins */
  gkp__strv models; /* tried first (then the quality's); empty: the quality's alone */
  char *thinking;   /* overrides the quality's; NULL: the quality's */
  int no_thinking;  /* thinking explicitly null: none */
  unsigned tools;   /* GKP__RT_* turned on for this type */
  int64_t max_chars;    /* > 0: only tasks shorter than this match */
  int only_no_quality;  /* only when the caller gave no quality */
  int only_with_image;  /* only tasks with an attached image */
} gkp__route_type;

typedef struct gkp__route_quality {
  gkp__strv models; /* the first candidates, then down the last one's fallback chain */
  char *thinking;   /* NULL: none */
  char *note;       /* one line added to the prompt */
} gkp__route_quality;

/* One phrase of the match index: which list it belongs to. */
typedef struct gkp__phrase {
  const char *text; /* a word of a type's or a complexity's list */
  uint32_t len;
  uint16_t list; /* a type's index, or GKP__PHRASE_CX + complexity */
} gkp__phrase;
#define GKP__PHRASE_CX 64

typedef struct gkp__routing {
  /* Every phrase of the types and complexities, grouped by first byte
   * ('a'..'z', then everything else): a task is matched in one pass. */
  gkp__phrase *phrases;
  size_t bucket[28]; /* bucket b is phrases[bucket[b] .. bucket[b + 1]) */
  int *fallback_ix;  /* per model of the config: its fallback's index, -1 at the end */
  gkp__route_type *types; /* in match order; "general" (no words) last */
  size_t ntypes;
  gkp__strv cx_words[GKP__CX_COUNT];   /* checked research, high, medium, low */
  int64_t low_max_chars;               /* no word matched: low under this, else medium */
  gkp__route_quality q[GKP__Q_COUNT];  /* per quality level */
  gkp__strv tool_words[3];             /* search, code, url: --enable-tools */
} gkp__routing;

/* Names of complexities and qualities; the index of a name or -1. */
const char *gkp__cx_name(int cx);
const char *gkp__quality_name(int q);
int gkp__quality_index(const char *name);
int gkp__cx_index(const char *name);

/* The tools the task's words call for (GKP__RT_* bits), from r->tool_words. */
unsigned gkp__routing_tools_for(const gkp__routing *r, const char *task);

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
  gkp__routing routing; /* built-in rules merged with "routing" */
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
