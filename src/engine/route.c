/*
 * route.c - the routing decision as pure code: task type and complexity
 * from the task's words, the quality given or inferred, candidates from the
 * rules and the fallback chains, skips from a quota summary, order from
 * scores.  No locks, no I/O, no clock.
 */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "engine/engine.h"
#include "engine/route.h"

/* Only the start of a long task is read for its words (its length counts
 * whole). */
#define CLASSIFY_MAX ((size_t)64 * 1024)

const char *gkp__skip_name(int skip) {
  switch (skip) {
  case GKP__SKIP_RPD:
    return "rpd_exhausted";
  case GKP__SKIP_NO_FREE_TIER:
    return "no_free_tier";
  case GKP__SKIP_DISABLED:
    return "keys_disabled";
  default:
    return "none";
  }
}

/* Whether the lower-cased `text` holds `phrase` starting at a word start. */
static int has_phrase(const char *text, const char *phrase) {
  for (const char *p = strstr(text, phrase); p != NULL; p = strstr(p + 1, phrase)) {
    if (p == text || !isalnum((unsigned char)p[-1])) {
      return 1;
    }
  }
  return 0;
}

static int has_any(const char *text, const gkp__strv *words) {
  for (size_t i = 0; i < words->n; i++) {
    if (has_phrase(text, words->v[i])) {
      return 1;
    }
  }
  return 0;
}

static void classify_lower(const gkp__config *cfg, const gkp__route_in *in, const char *lower,
                           int *type, int *cx) {
  const gkp__routing *r = &cfg->routing;
  *type = -1;
  for (size_t i = 0; i < r->ntypes && *type < 0; i++) {
    const gkp__route_type *t = &r->types[i];
    if (t->words.n == 0 || (t->max_chars > 0 && (int64_t)in->len >= t->max_chars) ||
        (t->only_no_quality && in->quality >= 0)) {
      continue;
    }
    if (has_any(lower, &t->words)) {
      *type = (int)i;
    }
  }
  for (size_t i = 0; i < r->ntypes && *type < 0; i++) {
    if (r->types[i].words.n == 0) {
      *type = (int)i; /* "general" */
    }
  }
  static const int order[] = {GKP__CX_RESEARCH, GKP__CX_HIGH, GKP__CX_MEDIUM, GKP__CX_LOW};
  *cx = -1;
  for (int i = 0; i < 4 && *cx < 0; i++) {
    if (has_any(lower, &r->cx_words[order[i]])) {
      *cx = order[i];
    }
  }
  if (*cx < 0) {
    *cx = (int64_t)in->len < r->low_max_chars ? GKP__CX_LOW : GKP__CX_MEDIUM;
  }
}

/* Calls classify_lower with a lower-cased copy of the task's start. */
static void classify(const gkp__config *cfg, const gkp__route_in *in, int *type, int *cx) {
  char small[2048];
  size_t n = in->len < CLASSIFY_MAX ? in->len : CLASSIFY_MAX;
  char *lower = n < sizeof small ? small : malloc(n + 1);
  if (lower == NULL) {
    lower = small;
    n = sizeof small - 1;
  }
  for (size_t i = 0; i < n; i++) {
    char c = in->task[i];
    lower[i] = (char)tolower((unsigned char)(c == '\0' ? ' ' : c));
  }
  lower[n] = '\0';
  classify_lower(cfg, in, lower, type, cx);
  if (lower != small) {
    free(lower);
  }
}

void gkp__route_classify(const gkp__config *cfg, const gkp__route_in *in, int *type, int *cx) {
  classify(cfg, in, type, cx);
}

/* The static name of a thinking level, or NULL. */
static const char *thinking_static(const char *t) {
  static const char *const names[] = {"minimal", "low", "medium", "high"};
  for (size_t i = 0; t != NULL && i < 4; i++) {
    if (strcmp(t, names[i]) == 0) {
      return names[i];
    }
  }
  return NULL;
}

typedef struct building {
  const gkp__config *cfg;
  const gkp__model_quota *quota;
  const char *thinking;
  unsigned tools;
  gkp__route *out;
} building;

static int listed(const gkp__route *r, const char *model) {
  for (size_t i = 0; i < r->ncands; i++) {
    if (strcmp(r->cands[i].model, model) == 0) {
      return 1;
    }
  }
  for (size_t i = 0; i < r->nskipped; i++) {
    if (strcmp(r->skipped[i].model, model) == 0) {
      return 1;
    }
  }
  return 0;
}

/* Adds `model` and its fallback chain, each as a candidate or a skip. */
static void add_chain(building *b, const char *model) {
  gkp__route *r = b->out;
  for (size_t steps = 0; model != NULL && steps < GKP__ROUTE_MAX; steps++) {
    int mi = gkp__config_model_index(b->cfg, model);
    if (mi < 0) {
      return;
    }
    const gkp__model_cfg *m = &b->cfg->models[mi];
    if (!listed(r, m->id)) {
      const gkp__model_quota *q = b->quota != NULL ? &b->quota[mi] : NULL;
      if (q != NULL && q->skip != GKP__SKIP_NONE) {
        if (r->nskipped < GKP__ROUTE_MAX) {
          gkp__strlcpy(r->skipped[r->nskipped].model, m->id, GKP_ID_MAX);
          r->skipped[r->nskipped].skip = q->skip;
          gkp__strlcpy(r->skipped[r->nskipped].detail, q->detail,
                       sizeof r->skipped[r->nskipped].detail);
          r->nskipped++;
        }
      } else if (r->ncands < GKP__ROUTE_MAX) {
        gkp__route_cand *c = &r->cands[r->ncands++];
        gkp__strlcpy(c->model, m->id, sizeof c->model);
        /* Models without a thinking setting (Gemma, image, embedding) take
         * no thinking and no tools. */
        c->thinking = m->thinking_level >= 0 ? b->thinking : NULL;
        c->tools = m->thinking_level >= 0 ? b->tools : 0;
      }
    }
    model = m->fallback;
  }
}

static double average(const gkp__score *scores, size_t nscores, const gkp__route *r,
                      const char *model) {
  for (size_t i = 0; i < nscores; i++) {
    const gkp__score *s = &scores[i];
    if (s->n > 0 && strcmp(s->model, model) == 0 && strcmp(s->task_type, r->task_type) == 0 &&
        strcmp(s->complexity, gkp__cx_name(r->complexity)) == 0) {
      return (double)s->sum / (double)s->n;
    }
  }
  return 3.0;
}

/* Orders the candidates by average score once the pair has 5 scores. */
static void order_by_scores(gkp__route *r, const gkp__score *scores, size_t nscores) {
  int64_t total = 0;
  double avg[GKP__ROUTE_MAX];
  for (size_t i = 0; i < nscores; i++) {
    if (strcmp(scores[i].task_type, r->task_type) == 0 &&
        strcmp(scores[i].complexity, gkp__cx_name(r->complexity)) == 0) {
      total += scores[i].n;
    }
  }
  if (total < 5) {
    return;
  }
  r->scored = 1;
  for (size_t i = 0; i < r->ncands; i++) {
    avg[i] = average(scores, nscores, r, r->cands[i].model);
  }
  /* Insertion sort, stable: equal averages keep the rules' order. */
  for (size_t i = 1; i < r->ncands; i++) {
    gkp__route_cand c = r->cands[i];
    double a = avg[i];
    size_t j = i;
    while (j > 0 && avg[j - 1] < a) {
      r->cands[j] = r->cands[j - 1];
      avg[j] = avg[j - 1];
      j--;
    }
    r->cands[j] = c;
    avg[j] = a;
  }
}

/* Whether every model of the type generates images. */
static int images_only(const gkp__config *cfg, const gkp__route_type *t) {
  for (size_t i = 0; i < t->models.n; i++) {
    const gkp__model_cfg *m = gkp__config_model(cfg, t->models.v[i]);
    if (m == NULL || !m->image_output) {
      return 0;
    }
  }
  return t->models.n > 0;
}

void gkp__route_decide(const gkp__config *cfg, const gkp__route_in *in,
                       const gkp__model_quota *quota, const gkp__score *scores, size_t nscores,
                       gkp__route *out) {
  const gkp__routing *rules = &cfg->routing;
  int type, cx;
  memset(out, 0, sizeof *out);
  classify(cfg, in, &type, &cx);
  const gkp__route_type *t = type >= 0 ? &rules->types[type] : NULL;
  gkp__strlcpy(out->task_type, t != NULL ? t->name : "general", sizeof out->task_type);
  out->complexity = cx;
  out->quality_given = in->quality >= 0;
  out->quality = in->quality >= 0 && in->quality < GKP__Q_COUNT ? in->quality : cx; /* same order */
  const gkp__route_quality *q = &rules->q[out->quality];

  building b = {.cfg = cfg, .quota = quota, .out = out};
  b.thinking = thinking_static(q->thinking);
  if (t != NULL && t->no_thinking) {
    b.thinking = NULL;
  } else if (t != NULL && t->thinking != NULL) {
    b.thinking = thinking_static(t->thinking);
  }
  b.tools = (t != NULL ? t->tools : 0) |
            (in->enable_tools ? gkp__routing_tools_for(rules, in->task) : 0);
  for (size_t i = 0; t != NULL && i < t->models.n; i++) {
    add_chain(&b, t->models.v[i]);
  }
  /* The quality's models follow the type's, unless the type makes images
   * (a text model would answer without them). */
  if (t == NULL || !images_only(cfg, t)) {
    for (size_t i = 0; i < q->models.n; i++) {
      add_chain(&b, q->models.v[i]);
    }
  }
  order_by_scores(out, scores, nscores);
}

/* ---- rendering ------------------------------------------------------------ */

static cJSON *tools_json(unsigned tools) {
  static const char *const names[] = {"google_search", "code_execution", "url_context"};
  cJSON *a = cJSON_CreateArray();
  for (int i = 0; i < 3; i++) {
    if (tools & (1u << i)) {
      cJSON_AddItemToArray(a, cJSON_CreateString(names[i]));
    }
  }
  return a;
}

char *gkp__route_json(const gkp__route *r) {
  cJSON *o = cJSON_CreateObject(), *cands = cJSON_CreateArray(), *skipped = cJSON_CreateArray();
  cJSON_AddStringToObject(o, "task_type", r->task_type);
  cJSON_AddStringToObject(o, "complexity", gkp__cx_name(r->complexity));
  cJSON_AddStringToObject(o, "quality", gkp__quality_name(r->quality));
  cJSON_AddBoolToObject(o, "quality_given", r->quality_given);
  cJSON_AddBoolToObject(o, "scored", r->scored);
  for (size_t i = 0; i < r->ncands; i++) {
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "model", r->cands[i].model);
    cJSON_AddItemToObject(c, "thinking",
                          r->cands[i].thinking != NULL ? cJSON_CreateString(r->cands[i].thinking)
                                                       : cJSON_CreateNull());
    cJSON_AddItemToObject(c, "tools", tools_json(r->cands[i].tools));
    cJSON_AddItemToArray(cands, c);
  }
  for (size_t i = 0; i < r->nskipped; i++) {
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "model", r->skipped[i].model);
    cJSON_AddStringToObject(s, "reason", gkp__skip_name(r->skipped[i].skip));
    cJSON_AddStringToObject(s, "detail", r->skipped[i].detail);
    cJSON_AddItemToArray(skipped, s);
  }
  cJSON_AddItemToObject(o, "candidates", cands);
  cJSON_AddItemToObject(o, "skipped", skipped);
  char *text = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  if (text == NULL) {
    return NULL;
  }
  /* cJSON's allocator is malloc here; hand out plain malloc'd memory. */
  char *copy = strdup(text);
  cJSON_free(text);
  return copy;
}

void gkp__route_compact(const gkp__route *r, char *buf, size_t len) {
  size_t n = 0;
#define PUT(...)                                                                                   \
  do {                                                                                             \
    int k_ = snprintf(buf + n, n < len ? len - n : 0, __VA_ARGS__);                                \
    n += k_ > 0 ? (size_t)k_ : 0;                                                                  \
  } while (0)
  if (len == 0) {
    return;
  }
  buf[0] = '\0';
  PUT("type=%s; complexity=%s; quality=%s; models=", r->task_type, gkp__cx_name(r->complexity),
      gkp__quality_name(r->quality));
  for (size_t i = 0; i < r->ncands; i++) {
    PUT("%s%s", i > 0 ? "," : "", r->cands[i].model);
  }
  if (r->nskipped > 0) {
    PUT("; skipped=");
    for (size_t i = 0; i < r->nskipped; i++) {
      PUT("%s%s:%s", i > 0 ? "," : "", r->skipped[i].model, gkp__skip_name(r->skipped[i].skip));
    }
  }
#undef PUT
  if (n >= len) {
    buf[len - 1] = '\0';
  }
}
