/*
 * route.c - the routing decision as pure code: task type and complexity
 * from the task's words, the quality given or inferred, candidates from the
 * rules and the fallback chains, skips from a quota summary, order from
 * scores.  No locks, no I/O, no clock.
 */
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

/* ASCII letters and digits (the C locale's isalnum, without its call). */
static int is_alnum(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z');
}

/* One pass over the lower-cased text: at every word start, the phrases of
 * the index that begin there.  Returns the lists matched: bit i for type i,
 * bit GKP__PHRASE_CX + c for complexity c. */
static void match_lists(const gkp__routing *r, const char *text, size_t len, uint64_t *types,
                        unsigned *cx) {
  *types = 0;
  *cx = 0;
  for (size_t pos = 0; pos < len; pos++) {
    if (pos > 0 && is_alnum((unsigned char)text[pos - 1])) {
      continue;
    }
    unsigned char c = (unsigned char)text[pos];
    int b = c >= 'a' && c <= 'z' ? c - 'a' : 26;
    for (size_t i = r->bucket[b]; i < r->bucket[b + 1]; i++) {
      const gkp__phrase *p = &r->phrases[i];
      /* The second byte first: most phrases of a bucket differ there. */
      if (p->len <= len - pos && (p->len < 2 || p->text[1] == text[pos + 1]) &&
          memcmp(text + pos, p->text, p->len) == 0) {
        if (p->list >= GKP__PHRASE_CX) {
          *cx |= 1u << (p->list - GKP__PHRASE_CX);
        } else {
          *types |= 1ull << p->list;
        }
      }
    }
  }
}

static void classify_lower(const gkp__config *cfg, const gkp__route_in *in, const char *lower,
                           size_t n, int *type, int *cx) {
  const gkp__routing *r = &cfg->routing;
  uint64_t types;
  unsigned cxs;
  match_lists(r, lower, n, &types, &cxs);
  *type = -1;
  for (size_t i = 0; i < r->ntypes && *type < 0; i++) {
    const gkp__route_type *t = &r->types[i];
    if (t->words.n == 0 || (t->max_chars > 0 && (int64_t)in->len >= t->max_chars) ||
        (t->only_no_quality && in->quality >= 0)) {
      continue;
    }
    if (types & (1ull << i)) {
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
    if (cxs & (1u << order[i])) {
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
    lower[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c == '\0' ? ' ' : c;
  }
  lower[n] = '\0';
  classify_lower(cfg, in, lower, n, type, cx);
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
  if (t == NULL) {
    return NULL;
  }
  /* The first two bytes tell them apart; one comparison confirms. */
  int i = t[0] == 'l' ? 1 : t[0] == 'h' ? 3 : t[0] == 'm' ? (t[1] == 'i' ? 0 : 2) : -1;
  return i >= 0 && strcmp(t, names[i]) == 0 ? names[i] : NULL;
}

typedef struct building {
  const gkp__config *cfg;
  const gkp__model_quota *quota;
  const char *thinking;
  unsigned tools;
  gkp__route *out;
  int listed[2 * GKP__ROUTE_MAX]; /* model indexes already placed */
  size_t nlisted;
} building;

static int listed(const building *b, int mi) {
  for (size_t i = 0; i < b->nlisted; i++) {
    if (b->listed[i] == mi) {
      return 1;
    }
  }
  return 0;
}

/* Adds the model of index `mi` in the config and its fallback chain, each
 * as a candidate or a skip. */
static void add_chain(building *b, int mi) {
  gkp__route *r = b->out;
  for (size_t steps = 0; mi >= 0 && steps < GKP__ROUTE_MAX; steps++) {
    const gkp__model_cfg *m = &b->cfg->models[mi];
    if (!listed(b, mi) && b->nlisted < sizeof b->listed / sizeof b->listed[0]) {
      const gkp__model_quota *q = b->quota != NULL ? &b->quota[mi] : NULL;
      b->listed[b->nlisted++] = mi;
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
    mi = b->cfg->routing.fallback_ix != NULL ? b->cfg->routing.fallback_ix[mi] : -1;
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
    int mi = t->models.ix != NULL ? t->models.ix[i] : gkp__config_model_index(cfg, t->models.v[i]);
    if (mi < 0 || !cfg->models[mi].image_output) {
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
  /* Only the header and the counts: the arrays are filled up to them. */
  out->ncands = out->nskipped = 0;
  out->scored = 0;
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
  b.tools =
      (t != NULL ? t->tools : 0) | (in->enable_tools ? gkp__routing_tools_for(rules, in->task) : 0);
  for (size_t i = 0; t != NULL && i < t->models.n; i++) {
    add_chain(&b, t->models.ix != NULL ? t->models.ix[i]
                                       : gkp__config_model_index(cfg, t->models.v[i]));
  }
  /* The quality's models follow the type's, unless the type makes images
   * (a text model would answer without them). */
  if (t == NULL || !images_only(cfg, t)) {
    for (size_t i = 0; i < q->models.n; i++) {
      add_chain(&b, q->models.ix != NULL ? q->models.ix[i]
                                         : gkp__config_model_index(cfg, q->models.v[i]));
    }
  }
  order_by_scores(out, scores, nscores);
}

/* ---- rendering ------------------------------------------------------------ */

/* A growing string for the decision's JSON. */
typedef struct jbuf {
  char *p;
  size_t len, cap;
  int oom;
} jbuf;

static void grow_put(jbuf *b, const char *s, size_t n);

static inline void put(jbuf *b, const char *s, size_t n) {
  if (b->len + n + 1 <= b->cap) {
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return;
  }
  grow_put(b, s, n);
}

static void grow_put(jbuf *b, const char *s, size_t n) {
  if (b->oom) {
    return;
  }
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 512;
    while (cap < b->len + n + 1) {
      cap *= 2;
    }
    char *g = realloc(b->p, cap);
    if (g == NULL) {
      b->oom = 1;
      return;
    }
    b->p = g;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
}

static void puts_(jbuf *b, const char *s) {
  put(b, s, strlen(s));
}

/* A JSON string (quoted, escaped). */
static void put_str(jbuf *b, const char *s) {
  static const char hex[] = "0123456789abcdef";
  put(b, "\"", 1);
  for (const char *run = s;; s++) {
    unsigned char c = (unsigned char)*s;
    if (c != '\0' && c >= 0x20 && c != '"' && c != '\\') {
      continue;
    }
    put(b, run, (size_t)(s - run));
    if (c == '\0') {
      break;
    }
    char esc[6] = {'\\', (char)c, 0, 0, 0, 0};
    if (c < 0x20) {
      esc[1] = 'u';
      esc[2] = '0';
      esc[3] = '0';
      esc[4] = hex[c >> 4];
      esc[5] = hex[c & 15];
      put(b, esc, 6);
    } else {
      put(b, esc, 2);
    }
    run = s + 1;
  }
  put(b, "\"", 1);
}

char *gkp__route_json(const gkp__route *r) {
  static const char *const tool_names[] = {"google_search", "code_execution", "url_context"};
  jbuf b = {.p = malloc(1024), .cap = 1024};
  b.oom = b.p == NULL;
  b.cap = b.p != NULL ? b.cap : 0;
  puts_(&b, "{\"task_type\":");
  put_str(&b, r->task_type);
  puts_(&b, ",\"complexity\":");
  put_str(&b, gkp__cx_name(r->complexity));
  puts_(&b, ",\"quality\":");
  put_str(&b, gkp__quality_name(r->quality));
  puts_(&b, r->quality_given ? ",\"quality_given\":true" : ",\"quality_given\":false");
  puts_(&b, r->scored ? ",\"scored\":true,\"candidates\":[" : ",\"scored\":false,\"candidates\":[");
  for (size_t i = 0; i < r->ncands; i++) {
    puts_(&b, i > 0 ? ",{\"model\":" : "{\"model\":");
    put_str(&b, r->cands[i].model);
    puts_(&b, ",\"thinking\":");
    if (r->cands[i].thinking != NULL) {
      put_str(&b, r->cands[i].thinking);
    } else {
      puts_(&b, "null");
    }
    puts_(&b, ",\"tools\":[");
    for (int t = 0, n = 0; t < 3; t++) {
      if (r->cands[i].tools & (1u << t)) {
        puts_(&b, n++ > 0 ? "," : "");
        put_str(&b, tool_names[t]);
      }
    }
    puts_(&b, "]}");
  }
  puts_(&b, "],\"skipped\":[");
  for (size_t i = 0; i < r->nskipped; i++) {
    puts_(&b, i > 0 ? ",{\"model\":" : "{\"model\":");
    put_str(&b, r->skipped[i].model);
    puts_(&b, ",\"reason\":");
    put_str(&b, gkp__skip_name(r->skipped[i].skip));
    puts_(&b, ",\"detail\":");
    put_str(&b, r->skipped[i].detail);
    puts_(&b, "}");
  }
  puts_(&b, "]}");
  if (b.oom) {
    free(b.p);
    return NULL;
  }
  b.p[b.len] = '\0'; /* put always leaves room for it */
  return b.p;
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
