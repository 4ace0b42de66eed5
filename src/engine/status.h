/*
 * status.h - the pool's status as one typed snapshot, and its renderings:
 * the JSON document (status/pool.json, `status --json`, gkp_status_json),
 * the table for people (status/pool, `gemini-pool status`) and the
 * Prometheus metrics (status/metrics).  The
 * interface front ends (the filesystem, the command) use to read the
 * status: nothing prints the document to parse it again.
 *
 * A snapshot is copied from the state under its lock and read after it:
 * accessors fill small structures per key and per (key, model), computing
 * the effective limits and cooldowns at the snapshot's instant.
 */
#ifndef GKP_ENGINE_STATUS_H
#define GKP_ENGINE_STATUS_H

#include <stddef.h>
#include <stdint.h>

#include "gkp.h"

typedef struct gkp__status gkp__status;

/* The document's header. */
typedef struct gkp__status_info {
  int64_t generated_at_ms;
  int64_t next_daily_reset_ms;
  const char *config;        /* the configuration's path */
  const char *state_file;    /* the state's location */
  const char *state_backend; /* "file" or "redis" */
  /* The endpoint: the configured URL unless an outage is on record. */
  const char *endpoint_url;
  int unreachable;
  int64_t down_since_ms, down_last_ms; /* 0 unless unreachable */
  const char *down_error;              /* NULL unless unreachable with a reason */
  size_t nkeys, nmodels;
} gkp__status_info;

/* A limit learned from a 429 that still applies. */
typedef struct gkp__status_learned {
  int set;
  int64_t value, at_ms, until_ms;
} gkp__status_learned;

/* One key's entry for one model. */
typedef struct gkp__status_model {
  const char *id;
  int64_t requests_today, requests_last_minute, input_tokens_last_minute;
  int64_t rpd_limit, rpm_limit, tpm_limit; /* -1: unknown */
  int64_t cooldown_until_s;                /* Unix seconds rounded up; 0: none */
  int cooldown_kind;                       /* GKP_KIND_NONE: none */
  gkp__status_learned learned[3];          /* rpm, tpm, rpd */
  const char *last_error;                  /* NULL: none */
  int64_t requests_total, input_tokens_total, output_tokens_total;
  int proven_access;
  int64_t errors[GKP_KIND_COUNT]; /* by kind, from GKP_KIND_RPM */
} gkp__status_model;

/* One key. */
typedef struct gkp__status_key {
  const char *id, *project;
  const char *state;           /* "ready", "busy", "cooling", "disabled" */
  const char *disabled_reason; /* NULL unless disabled */
  int inflight, max_inflight;
  int64_t requests_total;
  int64_t last_used_ms;     /* 0: never */
  int64_t cooldown_until_s; /* key-wide, Unix seconds rounded up; 0: none */
  int cooldown_kind;        /* GKP_KIND_NONE: none */
} gkp__status_key;

/* Takes a snapshot of the pool's status.  Returns 0 or a negative errno
 * with err. */
int gkp__status_take(gkp_pool *pool, gkp__status **out, gkp_error *err);
void gkp__status_free(gkp__status *s);

void gkp__status_get_info(const gkp__status *s, gkp__status_info *out);
void gkp__status_get_key(const gkp__status *s, size_t ki, gkp__status_key *out);
void gkp__status_get_model(const gkp__status *s, size_t ki, size_t mi, gkp__status_model *out);
/* Whether a model entry shows anything worth a row of the table. */
int gkp__status_model_active(const gkp__status_model *m);

/* The JSON document (the format cJSON_Print gives), malloc'd; NULL when out
 * of memory. */
char *gkp__status_render_json(const gkp__status *s);

/* The same, as cJSON_PrintUnformatted gives it when `compact`, with one more
 * member at the end, `extra_name`: `extra_json` (a JSON value written as it
 * is; NULL: none). */
char *gkp__status_render_json_with(const gkp__status *s, int compact, const char *extra_name,
                                   const char *extra_json);

/* The table: one row per key and model with activity, then the next daily
 * reset.  `now_ms` is used for "in 5m12s" hints.  malloc'd; NULL when out
 * of memory. */
char *gkp__status_table(const gkp__status *s, int64_t now_ms);

/* The pool's Prometheus metrics (the next daily reset, keys by state,
 * per key and model counts, errors, cooldowns at `now_ms`), appended to b.
 * The filesystem's status/metrics adds its own after them. */
struct gkp__dynbuf;
void gkp__status_prometheus(const gkp__status *s, int64_t now_ms, struct gkp__dynbuf *b);

#endif
