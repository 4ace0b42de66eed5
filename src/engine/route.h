/*
 * route.h - routing: the pool picks the model for a task (SPEC §5.1).
 *
 * The decision is a pure function (gkp__route_decide) of the task, the
 * quality, the rules of the configuration, a per-model quota summary and
 * the scores of earlier runs.  gkp__pool_route feeds it the pool's summary
 * and scores, cached for a second (route_pool.c), so a decision never walks
 * the keys.
 */
#ifndef GKP_ENGINE_ROUTE_H
#define GKP_ENGINE_ROUTE_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "engine/backend.h"
#include "gkp.h"

#define GKP__ROUTE_MAX 16 /* candidates and skips, each */

/* Why a model is skipped: nothing left today on any key. */
enum gkp__skip {
  GKP__SKIP_NONE = 0,
  GKP__SKIP_RPD,          /* "rpd_exhausted": every key's requests for the day used up */
  GKP__SKIP_NO_FREE_TIER, /* "no_free_tier": not on the free tier for any key */
  GKP__SKIP_DISABLED,     /* "keys_disabled": every key disabled */
};
const char *gkp__skip_name(int skip);

/* One model's quota today, summarised over every key. */
typedef struct gkp__model_quota {
  int skip; /* enum gkp__skip: GKP__SKIP_NONE when some key can still serve it today */
  char detail[120];
} gkp__model_quota;


typedef struct gkp__route_in {
  const char *task; /* the task text as the caller wrote it */
  size_t len;
  int has_image;
  int enable_tools; /* add the tools the task's words call for */
  int quality;      /* GKP__Q_*, or -1: inferred from the complexity */
} gkp__route_in;

typedef struct gkp__route_cand {
  char model[GKP_ID_MAX];
  const char *thinking; /* static string, NULL: none */
  unsigned tools;       /* GKP__RT_* */
} gkp__route_cand;

typedef struct gkp__route {
  char task_type[GKP_ID_MAX];
  int complexity; /* GKP__CX_* */
  int quality;    /* GKP__Q_* */
  int quality_given;
  int scored; /* ordered by scores */
  gkp__route_cand cands[GKP__ROUTE_MAX];
  size_t ncands;
  struct {
    char model[GKP_ID_MAX];
    int skip;
    char detail[120];
  } skipped[GKP__ROUTE_MAX];
  size_t nskipped;
} gkp__route;

/* The task type (an index into cfg->routing.types) and complexity of a task. */
void gkp__route_classify(const gkp__config *cfg, const gkp__route_in *in, int *type, int *cx);

/* The decision.  `quota`: one entry per cfg model (NULL: all have quota);
 * `scores`: every score known (any pair). */
void gkp__route_decide(const gkp__config *cfg, const gkp__route_in *in,
                       const gkp__model_quota *quota, const gkp__score *scores, size_t nscores,
                       gkp__route *out);

/* The decision as the JSON object of gkp_route (malloc'd), or NULL. */
char *gkp__route_json(const gkp__route *r);

/* The compact form of the x-pool-route header, into buf:
 * "type=T; complexity=C; quality=Q; models=M1,M2; skipped=M3:reason". */
void gkp__route_compact(const gkp__route *r, char *buf, size_t len);

/* The pool's decision for a task, from its cached quota summary and scores.
 * Returns 0 or a negative errno with err. */
int gkp__pool_route(gkp_pool *pool, const gkp__route_in *in, gkp__route *out, gkp_error *err);

/* Frees the pool's routing cache (pool close). */
void gkp__route_cache_free(gkp_pool *pool);

#endif
