/*
 * routing.c - the rules the pool routes by (SPEC §5.1): task types with
 * their trigger phrases, complexity words, quality levels and the words
 * that turn tools on.  Built-in defaults describe today's free-tier models;
 * "routing" in keys.json adds task types, merges over built-in ones by name
 * and replaces complexity words or quality levels:
 *
 *   "routing": {
 *     "types":      {"legal": {"words": ["contract"], "models": ["gemini-2.5-flash"],
 *                              "thinking": "high", "tools": ["google_search"],
 *                              "max_chars": 2000}},
 *     "complexity": {"high": ["refactor", "audit"]},
 *     "quality":    {"draft": {"models": ["gemma-3-27b-it"], "thinking": null}}
 *   }
 *
 * Phrases are matched case-insensitively at the start of a word of the task.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/internal.h"

#define MAX_WORDS 256   /* phrases per list */
#define MAX_WORD_LEN 64 /* bytes per phrase */
#define MAX_TYPES 56 /* with the built-in ones, fewer than GKP__PHRASE_CX */
#define MAX_MODELS 8

static const char *const cx_names[GKP__CX_COUNT] = {"low", "medium", "high", "research"};
static const char *const q_names[GKP__Q_COUNT] = {"draft", "standard", "production", "research"};
static const char *const tool_names[3] = {"google_search", "code_execution", "url_context"};
static const char *const thinking_names[4] = {"minimal", "low", "medium", "high"};

#define W(...)                                                                                     \
  (const char *const[]) {                                                                          \
    __VA_ARGS__, NULL                                                                              \
  }

/* The built-in task types, in match order ("general" matches everything). */
static const struct builtin_type {
  const char *name;
  const char *const *words;
  const char *model; /* NULL: the quality's */
  const char *thinking;
  int no_thinking;
  unsigned tools;
  int64_t max_chars;
} builtin_types[] = {
    {"intent", W("intent analysis", "route task", "classify intent", "select model"),
     "gemini-3-flash-preview", "minimal", 0, 0, 0},
    {"image", W("generate image", "generate an image", "create diagram", "design mockup", "draw",
                "visualize", "flowchart"),
     "gemini-2.5-flash-image", NULL, 1, 0, 0},
    /* Embedding models answer no generation request: the type is told
     * apart (for scores) and routed by quality. */
    {"embedding", W("semantic search", "find similar", "cluster", "embedding", "vector search",
                    "rag", "retrieval"),
     NULL, NULL, 0, 0, 0},
    {"current_research", W("latest", "recent", "current", "today", "news", "what happened"),
     "gemini-3-flash-preview", NULL, 0, GKP__RT_SEARCH, 0},
    {"tool_use", W("bash", "shell command", "terminal", "custom tools"), "gemini-3-flash-preview",
     NULL, 0, GKP__RT_CODE, 0},
    {"micro", W("fix typo", "format this", "count words", "extract single", "convert to json"),
     "gemma-3-1b-it", NULL, 0, 0, 500},
    {"general", W(NULL), NULL, NULL, 0, 0, 0},
};

static const char *const *const builtin_cx[GKP__CX_COUNT] = {
    W("format", "list", "summarize", "typo", "count", "extract", "what is", "translate", "convert",
      "define", "quick", "draft", "brainstorm"),
    W("review", "analyze", "analyse", "explain", "compare", "document", "test", "validate",
      "evaluate"),
    W("refactor", "architect", "security audit", "threat model", "comprehensive", "in-depth",
      "multi-step", "review code", "debug", "investigate", "plan", "implement feature"),
    W("strategic", "novel", "deep analysis", "multi-document", "research", "critical",
      "high-stakes"),
};

static const struct builtin_quality {
  const char *model, *thinking, *note;
} builtin_q[GKP__Q_COUNT] = {
    {"gemini-3.1-flash-lite-preview", "minimal",
     "Quality level: draft. Be brief; a quick first pass is fine."},
    {"gemini-3-flash-preview", "medium",
     "Quality level: standard. Be accurate and reasonably complete."},
    {"gemini-3-flash-preview", "high",
     "Quality level: production. Be thorough, accurate and polished; check your work."},
    {"gemini-3.1-pro-preview", "high",
     "Quality level: research. Be exhaustive and rigorous; cite sources where you can."},
};

/* --enable-tools: the words that turn on each tool. */
static const char *const *const builtin_tool_words[3] = {
    W("search", "latest", "news", "current", "today", "recent", "look up", "find out", "who is"),
    W("calculate", "compute", "python", "code", "plot", "simulate", "run ", "algorithm"),
    W("http://", "https://", "www."),
};

/* ---- names -------------------------------------------------------------- */

const char *gkp__cx_name(int cx) {
  return cx >= 0 && cx < GKP__CX_COUNT ? cx_names[cx] : "unknown";
}

const char *gkp__quality_name(int q) {
  return q >= 0 && q < GKP__Q_COUNT ? q_names[q] : "unknown";
}

static int index_of(const char *s, const char *const *names, size_t n) {
  for (size_t i = 0; s != NULL && i < n; i++) {
    if (strcmp(s, names[i]) == 0) {
      return (int)i;
    }
  }
  return -1;
}

int gkp__quality_index(const char *name) {
  return index_of(name, q_names, GKP__Q_COUNT);
}

int gkp__cx_index(const char *name) {
  return index_of(name, cx_names, GKP__CX_COUNT);
}

/* ---- string vectors ----------------------------------------------------- */

static void strv_clear(gkp__strv *v) {
  for (size_t i = 0; i < v->n; i++) {
    free(v->v[i]);
  }
  free(v->v);
  v->v = NULL;
  v->n = 0;
}

static int strv_add(gkp__strv *v, const char *s) {
  char **grown = realloc(v->v, (v->n + 1) * sizeof *grown);
  if (grown == NULL) {
    return -ENOMEM;
  }
  v->v = grown;
  if ((v->v[v->n] = strdup(s)) == NULL) {
    return -ENOMEM;
  }
  v->n++;
  return 0;
}

static int strv_from(gkp__strv *v, const char *const *words) {
  for (; words != NULL && *words != NULL; words++) {
    if (strv_add(v, *words) != 0) {
      return -ENOMEM;
    }
  }
  return 0;
}

void gkp__routing_clear(gkp__routing *r) {
  for (size_t i = 0; i < r->ntypes; i++) {
    free(r->types[i].name);
    free(r->types[i].thinking);
    strv_clear(&r->types[i].words);
    strv_clear(&r->types[i].models);
  }
  free(r->types);
  free(r->phrases);
  free(r->fallback_ix);
  for (int i = 0; i < GKP__CX_COUNT; i++) {
    strv_clear(&r->cx_words[i]);
  }
  for (int i = 0; i < GKP__Q_COUNT; i++) {
    strv_clear(&r->q[i].models);
    free(r->q[i].thinking);
    free(r->q[i].note);
  }
  for (int i = 0; i < 3; i++) {
    strv_clear(&r->tool_words[i]);
  }
  memset(r, 0, sizeof *r);
}

/* ---- matching ----------------------------------------------------------- */

unsigned gkp__routing_tools_for(const gkp__routing *r, const char *task) {
  static const unsigned bits[3] = {GKP__RT_SEARCH, GKP__RT_CODE, GKP__RT_URL};
  unsigned out = 0;
  for (int t = 0; t < 3; t++) {
    for (size_t i = 0; i < r->tool_words[t].n; i++) {
      if (strcasestr(task, r->tool_words[t].v[i]) != NULL) {
        out |= bits[t];
        break;
      }
    }
  }
  return out;
}

/* ---- defaults ----------------------------------------------------------- */

static int add_type(gkp__routing *r, const char *name, gkp__route_type **out) {
  gkp__route_type *grown = realloc(r->types, (r->ntypes + 1) * sizeof *grown);
  if (grown == NULL) {
    return -ENOMEM;
  }
  r->types = grown;
  gkp__route_type *t = &r->types[r->ntypes];
  memset(t, 0, sizeof *t);
  if ((t->name = strdup(name)) == NULL) {
    return -ENOMEM;
  }
  r->ntypes++;
  *out = t;
  return 0;
}

static int load_defaults(gkp__routing *r) {
  for (size_t i = 0; i < sizeof builtin_types / sizeof builtin_types[0]; i++) {
    const struct builtin_type *b = &builtin_types[i];
    gkp__route_type *t;
    if (add_type(r, b->name, &t) != 0 || strv_from(&t->words, b->words) != 0 ||
        (b->model != NULL && strv_add(&t->models, b->model) != 0) ||
        (b->thinking != NULL && (t->thinking = strdup(b->thinking)) == NULL)) {
      return -ENOMEM;
    }
    t->no_thinking = b->no_thinking;
    t->tools = b->tools;
    t->max_chars = b->max_chars;
    t->only_no_quality = strcmp(b->name, "embedding") == 0;
  }
  for (int i = 0; i < GKP__CX_COUNT; i++) {
    if (strv_from(&r->cx_words[i], builtin_cx[i]) != 0) {
      return -ENOMEM;
    }
  }
  r->low_max_chars = 50;
  for (int i = 0; i < GKP__Q_COUNT; i++) {
    if (strv_add(&r->q[i].models, builtin_q[i].model) != 0 ||
        (r->q[i].thinking = strdup(builtin_q[i].thinking)) == NULL ||
        (r->q[i].note = strdup(builtin_q[i].note)) == NULL) {
      return -ENOMEM;
    }
  }
  for (int i = 0; i < 3; i++) {
    if (strv_from(&r->tool_words[i], builtin_tool_words[i]) != 0) {
      return -ENOMEM;
    }
  }
  return 0;
}

/* ---- "routing" in keys.json ---------------------------------------------- */

/* Reads an array of phrases (1..MAX_WORDS strings of 1..MAX_WORD_LEN bytes,
 * stored lower-case) into *v, replacing it. */
static int read_words(const gkp__cfg_ctx *ctx, const cJSON *a, const char *where, gkp__strv *v) {
  char at[256];
  char q[96];
  size_t i = 0;
  const cJSON *w;
  if (!cJSON_IsArray(a)) {
    return gkp__cfg_fail(ctx, -EINVAL, where, "expected an array of phrases such as [\"refactor\"], got %s",
                         gkp__json_type(a));
  }
  if (cJSON_GetArraySize(a) > MAX_WORDS) {
    return gkp__cfg_fail(ctx, -EINVAL, where, "at most %d phrases, got %d", MAX_WORDS,
                         cJSON_GetArraySize(a));
  }
  strv_clear(v);
  cJSON_ArrayForEach(w, a) {
    snprintf(at, sizeof at, "%s[%zu]", where, i++);
    if (!cJSON_IsString(w) || w->valuestring[0] == '\0' ||
        strlen(w->valuestring) > MAX_WORD_LEN) {
      return gkp__cfg_fail(ctx, -EINVAL, at, "expected a phrase of 1 to %d bytes, got %s",
                           MAX_WORD_LEN,
                           cJSON_IsString(w) ? gkp__cfg_quote(w->valuestring, q, sizeof q)
                                             : gkp__json_type(w));
    }
    if (strv_add(v, w->valuestring) != 0) {
      return gkp__cfg_fail(ctx, -ENOMEM, at, "out of memory");
    }
    for (char *c = v->v[v->n - 1]; *c != '\0'; c++) {
      *c = (char)tolower((unsigned char)*c);
    }
  }
  return 0;
}

/* Reads an array of 1..MAX_MODELS known model ids into *v, replacing it. */
static int read_models(const gkp__cfg_ctx *ctx, const gkp__config *cfg, const cJSON *a,
                       const char *where, int allow_empty, gkp__strv *v) {
  char at[256];
  char q[96];
  size_t i = 0;
  const cJSON *m;
  int n = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : -1;
  if (n < (allow_empty ? 0 : 1) || n > MAX_MODELS) {
    return gkp__cfg_fail(ctx, -EINVAL, where,
                         "expected an array of %d to %d model ids such as [\"gemini-2.5-flash\"], "
                         "got %s",
                         allow_empty ? 0 : 1, MAX_MODELS,
                         n < 0 ? gkp__json_type(a) : n == 0 ? "an empty array" : "more");
  }
  strv_clear(v);
  cJSON_ArrayForEach(m, a) {
    snprintf(at, sizeof at, "%s[%zu]", where, i++);
    if (!cJSON_IsString(m) || gkp__config_model(cfg, m->valuestring) == NULL) {
      return gkp__cfg_fail(ctx, -EINVAL, at,
                           "%s is not a known model; use a built-in model id or add it under "
                           "\"models\"",
                           cJSON_IsString(m) ? gkp__cfg_quote(m->valuestring, q, sizeof q)
                                             : gkp__json_type(m));
    }
    if (strv_add(v, m->valuestring) != 0) {
      return gkp__cfg_fail(ctx, -ENOMEM, at, "out of memory");
    }
  }
  return 0;
}

/* "thinking": one of the levels, or null (none).  Sets *slot and *none. */
static int read_thinking(const gkp__cfg_ctx *ctx, const cJSON *v, const char *where, char **slot,
                         int *none) {
  char q[96];
  if (cJSON_IsNull(v)) {
    free(*slot);
    *slot = NULL;
    *none = 1;
    return 0;
  }
  if (!cJSON_IsString(v) || index_of(v->valuestring, thinking_names, 4) < 0) {
    return gkp__cfg_fail(ctx, -EINVAL, where,
                         "expected \"minimal\", \"low\", \"medium\", \"high\" or null, got %s",
                         cJSON_IsString(v) ? gkp__cfg_quote(v->valuestring, q, sizeof q)
                                           : gkp__json_type(v));
  }
  char *copy = strdup(v->valuestring);
  if (copy == NULL) {
    return gkp__cfg_fail(ctx, -ENOMEM, where, "out of memory");
  }
  free(*slot);
  *slot = copy;
  *none = 0;
  return 0;
}

static int read_tools(const gkp__cfg_ctx *ctx, const cJSON *a, const char *where, unsigned *out) {
  char at[256];
  char q[96];
  size_t i = 0;
  const cJSON *t;
  if (!cJSON_IsArray(a)) {
    return gkp__cfg_fail(ctx, -EINVAL, where, "expected an array such as [\"google_search\"], got %s",
                         gkp__json_type(a));
  }
  *out = 0;
  cJSON_ArrayForEach(t, a) {
    snprintf(at, sizeof at, "%s[%zu]", where, i++);
    int k = cJSON_IsString(t) ? index_of(t->valuestring, tool_names, 3) : -1;
    if (k < 0) {
      return gkp__cfg_fail(
          ctx, -EINVAL, at,
          "unknown tool %s; use \"google_search\", \"code_execution\" or \"url_context\"",
          cJSON_IsString(t) ? gkp__cfg_quote(t->valuestring, q, sizeof q) : gkp__json_type(t));
    }
    *out |= 1u << k;
  }
  return 0;
}

/* Fails on a field of `e` that is not among `known`. */
static int check_fields(const gkp__cfg_ctx *ctx, const cJSON *e, const char *where,
                        const char *const *known, size_t n, const char *list) {
  char at[256];
  char q[96];
  const cJSON *f;
  cJSON_ArrayForEach(f, e) {
    if (index_of(f->string, known, n) < 0) {
      snprintf(at, sizeof at, "%s", where);
      return gkp__cfg_fail(ctx, -EINVAL, at, "unknown field %s; use %s",
                           gkp__cfg_quote(f->string, q, sizeof q), list);
    }
  }
  return 0;
}

static int apply_type(const gkp__cfg_ctx *ctx, gkp__config *cfg, const cJSON *e, size_t *added) {
  static const char *const fields[] = {"words", "models", "thinking", "tools", "max_chars"};
  gkp__routing *r = &cfg->routing;
  char base[160];
  char where[224];
  char q[96];
  gkp__route_type *t = NULL;
  int rc;
  snprintf(base, sizeof base, "routing.types.%s", e->string);
  if (e->string[0] == '\0' || strlen(e->string) >= GKP_ID_MAX ||
      gkp__cfg_name_problem(e->string) != NULL) {
    return gkp__cfg_fail(ctx, -EINVAL, "routing.types",
                         "task type name %s is not valid; use 1 to 63 letters, digits, '.', '_' "
                         "or '-'",
                         gkp__cfg_quote(e->string, q, sizeof q));
  }
  if (!cJSON_IsObject(e)) {
    return gkp__cfg_fail(ctx, -EINVAL, base,
                         "expected an object such as {\"words\": [\"contract\"], \"models\": "
                         "[\"gemini-2.5-flash\"]}, got %s",
                         gkp__json_type(e));
  }
  if ((rc = check_fields(ctx, e, base, fields, 5,
                         "\"words\", \"models\", \"thinking\", \"tools\" or \"max_chars\"")) < 0) {
    return rc;
  }
  for (size_t i = 0; i < r->ntypes; i++) {
    if (strcmp(r->types[i].name, e->string) == 0) {
      t = &r->types[i];
    }
  }
  const cJSON *words = cJSON_GetObjectItemCaseSensitive(e, "words");
  if (t == NULL) {
    if (words == NULL) {
      return gkp__cfg_fail(ctx, -EINVAL, base,
                           "a new task type needs \"words\": the phrases that pick it, e.g. "
                           "\"words\": [\"contract\", \"clause\"]");
    }
    if (r->ntypes >= MAX_TYPES) {
      return gkp__cfg_fail(ctx, -EINVAL, base, "at most %d task types", MAX_TYPES);
    }
    /* New types are tried before the built-in ones, in the file's order. */
    gkp__route_type *nt;
    if (add_type(r, e->string, &nt) != 0) {
      return gkp__cfg_fail(ctx, -ENOMEM, base, "out of memory");
    }
    gkp__route_type fresh = *nt;
    memmove(&r->types[*added + 1], &r->types[*added], (r->ntypes - 1 - *added) * sizeof fresh);
    r->types[*added] = fresh;
    t = &r->types[(*added)++];
  }
  if (words != NULL) {
    snprintf(where, sizeof where, "%s.words", base);
    if (strcmp(t->name, "general") == 0) {
      return gkp__cfg_fail(ctx, -EINVAL, where,
                           "\"general\" takes every task no other type took: it has no words");
    }
    if ((rc = read_words(ctx, words, where, &t->words)) < 0) {
      return rc;
    }
  }
  const cJSON *v;
  if ((v = cJSON_GetObjectItemCaseSensitive(e, "models")) != NULL) {
    snprintf(where, sizeof where, "%s.models", base);
    if ((rc = read_models(ctx, cfg, v, where, 1, &t->models)) < 0) {
      return rc;
    }
  }
  if ((v = cJSON_GetObjectItemCaseSensitive(e, "thinking")) != NULL) {
    snprintf(where, sizeof where, "%s.thinking", base);
    if ((rc = read_thinking(ctx, v, where, &t->thinking, &t->no_thinking)) < 0) {
      return rc;
    }
  }
  if ((v = cJSON_GetObjectItemCaseSensitive(e, "tools")) != NULL) {
    snprintf(where, sizeof where, "%s.tools", base);
    if ((rc = read_tools(ctx, v, where, &t->tools)) < 0) {
      return rc;
    }
  }
  if ((v = cJSON_GetObjectItemCaseSensitive(e, "max_chars")) != NULL) {
    snprintf(where, sizeof where, "%s.max_chars", base);
    if ((rc = gkp__json_int(ctx, v, where, 0, INT32_MAX, &t->max_chars)) < 0) {
      return rc;
    }
  }
  return 0;
}

static int apply_quality(const gkp__cfg_ctx *ctx, gkp__config *cfg, const cJSON *e) {
  static const char *const fields[] = {"models", "thinking", "note"};
  char base[160];
  char where[224];
  char q[96];
  int rc, none = 0;
  int qi = gkp__quality_index(e->string);
  if (qi < 0) {
    return gkp__cfg_fail(ctx, -EINVAL, "routing.quality",
                         "unknown quality level %s; use \"draft\", \"standard\", \"production\" "
                         "or \"research\"",
                         gkp__cfg_quote(e->string, q, sizeof q));
  }
  snprintf(base, sizeof base, "routing.quality.%s", e->string);
  if (!cJSON_IsObject(e)) {
    return gkp__cfg_fail(ctx, -EINVAL, base,
                         "expected an object such as {\"models\": [\"gemini-2.5-flash\"], "
                         "\"thinking\": \"low\"}, got %s",
                         gkp__json_type(e));
  }
  if ((rc = check_fields(ctx, e, base, fields, 3, "\"models\", \"thinking\" or \"note\"")) < 0) {
    return rc;
  }
  gkp__route_quality *rq = &cfg->routing.q[qi];
  const cJSON *v;
  if ((v = cJSON_GetObjectItemCaseSensitive(e, "models")) != NULL) {
    snprintf(where, sizeof where, "%s.models", base);
    if ((rc = read_models(ctx, cfg, v, where, 0, &rq->models)) < 0) {
      return rc;
    }
  }
  if ((v = cJSON_GetObjectItemCaseSensitive(e, "thinking")) != NULL) {
    snprintf(where, sizeof where, "%s.thinking", base);
    if ((rc = read_thinking(ctx, v, where, &rq->thinking, &none)) < 0) {
      return rc;
    }
  }
  if ((v = cJSON_GetObjectItemCaseSensitive(e, "note")) != NULL) {
    snprintf(where, sizeof where, "%s.note", base);
    if (!cJSON_IsString(v) || strlen(v->valuestring) > 1000 || strchr(v->valuestring, '\n')) {
      return gkp__cfg_fail(ctx, -EINVAL, where, "expected one line of at most 1000 bytes, got %s",
                           gkp__json_type(v));
    }
    char *copy = strdup(v->valuestring);
    if (copy == NULL) {
      return gkp__cfg_fail(ctx, -ENOMEM, where, "out of memory");
    }
    free(rq->note);
    rq->note = copy;
  }
  return 0;
}

static int apply_routing(const gkp__cfg_ctx *ctx, gkp__config *cfg, const cJSON *routing) {
  static const char *const fields[] = {"types", "complexity", "quality"};
  char where[224];
  char q[96];
  int rc;
  const cJSON *e;
  if (!cJSON_IsObject(routing)) {
    return gkp__cfg_fail(ctx, -EINVAL, "routing",
                         "expected an object with \"types\", \"complexity\" or \"quality\", got %s",
                         gkp__json_type(routing));
  }
  if ((rc = check_fields(ctx, routing, "routing", fields, 3,
                         "\"types\", \"complexity\" or \"quality\"")) < 0) {
    return rc;
  }
  const cJSON *types = cJSON_GetObjectItemCaseSensitive(routing, "types");
  if (types != NULL) {
    size_t added = 0;
    if (!cJSON_IsObject(types)) {
      return gkp__cfg_fail(ctx, -EINVAL, "routing.types",
                           "expected an object of task type names, got %s", gkp__json_type(types));
    }
    cJSON_ArrayForEach(e, types) {
      if ((rc = apply_type(ctx, cfg, e, &added)) < 0) {
        return rc;
      }
    }
  }
  const cJSON *cx = cJSON_GetObjectItemCaseSensitive(routing, "complexity");
  if (cx != NULL) {
    if (!cJSON_IsObject(cx)) {
      return gkp__cfg_fail(ctx, -EINVAL, "routing.complexity",
                           "expected an object such as {\"high\": [\"refactor\"]}, got %s",
                           gkp__json_type(cx));
    }
    cJSON_ArrayForEach(e, cx) {
      int ci = gkp__cx_index(e->string);
      if (ci < 0) {
        return gkp__cfg_fail(ctx, -EINVAL, "routing.complexity",
                             "unknown complexity %s; use \"low\", \"medium\", \"high\" or "
                             "\"research\"",
                             gkp__cfg_quote(e->string, q, sizeof q));
      }
      snprintf(where, sizeof where, "routing.complexity.%s", e->string);
      if ((rc = read_words(ctx, e, where, &cfg->routing.cx_words[ci])) < 0) {
        return rc;
      }
    }
  }
  const cJSON *quality = cJSON_GetObjectItemCaseSensitive(routing, "quality");
  if (quality != NULL) {
    if (!cJSON_IsObject(quality)) {
      return gkp__cfg_fail(ctx, -EINVAL, "routing.quality",
                           "expected an object of quality levels, got %s", gkp__json_type(quality));
    }
    cJSON_ArrayForEach(e, quality) {
      if ((rc = apply_quality(ctx, cfg, e)) < 0) {
        return rc;
      }
    }
  }
  return 0;
}

/* The bucket of a phrase's or a text's first byte. */
static int bucket_of(unsigned char c) {
  return c >= 'a' && c <= 'z' ? c - 'a' : 26;
}

/* Builds r->phrases and r->bucket from the lists. */
static int build_index(gkp__routing *r) {
  size_t n = 0, at[27] = {0};
  for (size_t i = 0; i < r->ntypes; i++) {
    n += r->types[i].words.n;
  }
  for (int c = 0; c < GKP__CX_COUNT; c++) {
    n += r->cx_words[c].n;
  }
  free(r->phrases);
  r->phrases = calloc(n > 0 ? n : 1, sizeof *r->phrases);
  if (r->phrases == NULL) {
    return -ENOMEM;
  }
  for (int pass = 0; pass < 2; pass++) {
    for (size_t l = 0; l < r->ntypes + GKP__CX_COUNT; l++) {
      const gkp__strv *w = l < r->ntypes ? &r->types[l].words : &r->cx_words[l - r->ntypes];
      uint16_t list = (uint16_t)(l < r->ntypes ? l : GKP__PHRASE_CX + (l - r->ntypes));
      for (size_t i = 0; i < w->n; i++) {
        int b = bucket_of((unsigned char)w->v[i][0]);
        if (pass == 0) {
          r->bucket[b + 1]++;
        } else {
          gkp__phrase *p = &r->phrases[r->bucket[b] + at[b]++];
          p->text = w->v[i];
          p->len = (uint32_t)strlen(w->v[i]);
          p->list = list;
        }
      }
    }
    if (pass == 0) {
      for (int b = 1; b < 28; b++) {
        r->bucket[b] += r->bucket[b - 1];
      }
    }
  }
  return 0;
}

/* See internal.h. */
int gkp__config_routing_load(const gkp__cfg_ctx *ctx, gkp__config *cfg, const cJSON *root) {
  if (load_defaults(&cfg->routing) != 0) {
    return gkp__cfg_fail(ctx, -ENOMEM, "routing", "out of memory");
  }
  const cJSON *routing = cJSON_GetObjectItemCaseSensitive(root, "routing");
  int rc = routing == NULL || cJSON_IsNull(routing) ? 0 : apply_routing(ctx, cfg, routing);
  if (rc == 0 && build_index(&cfg->routing) != 0) {
    rc = gkp__cfg_fail(ctx, -ENOMEM, "routing", "out of memory");
  }
  if (rc == 0) {
    int *fb = calloc(cfg->nmodels > 0 ? cfg->nmodels : 1, sizeof *fb);
    if (fb == NULL) {
      return gkp__cfg_fail(ctx, -ENOMEM, "routing", "out of memory");
    }
    for (size_t i = 0; i < cfg->nmodels; i++) {
      fb[i] = -1;
      for (size_t j = 0; cfg->models[i].fallback != NULL && j < cfg->nmodels; j++) {
        if (strcmp(cfg->models[j].id, cfg->models[i].fallback) == 0) {
          fb[i] = (int)j;
        }
      }
    }
    cfg->routing.fallback_ix = fb;
  }
  return rc;
}
