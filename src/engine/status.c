/*
 * status.c - the pool's status as a typed snapshot, and as the JSON document
 * (status/pool.json, status --json).
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/err.h"
#include "common/timeutil.h"
#include "engine/pool_impl.h"
#include "engine/quota.h"
#include "engine/redis_conn.h"
#include "engine/status.h"


/* ---- the snapshot ------------------------------------------------------------------- */

struct gkp__status {
  gkp__snapshot *snap;
  char *config;
  gkp__snap_pm none; /* a pair never used */
};

int gkp__status_take(gkp_pool *pool, gkp__status **out, gkp_error *err) {
  gkp__status *s;
  int rc;
  *out = NULL;
  gkp__err_clear(err);
  if ((rc = gkp__pool_check_fork(pool, err)) != 0) {
    return rc;
  }
  s = calloc(1, sizeof *s);
  if (s == NULL) {
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  rc = pool->be->ops->snapshot(pool->be, &s->snap, err);
  if (rc != 0) {
    free(s);
    return rc;
  }
  s->config = strdup(pool->config_path != NULL ? pool->config_path : s->snap->cfg->path);
  if (s->config == NULL) {
    gkp__status_free(s);
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  gkp__pm_counts_init(&s->none.c);
  *out = s;
  return 0;
}

void gkp__status_free(gkp__status *s) {
  if (s != NULL) {
    gkp__snapshot_free(s->snap);
    free(s->config);
    free(s);
  }
}

void gkp__status_get_info(const gkp__status *s, gkp__status_info *out) {
  const gkp__snapshot *n = s->snap;
  int down = n->down_since_ms > 0;
  memset(out, 0, sizeof *out);
  out->generated_at_ms = n->now;
  out->next_daily_reset_ms = gkp_next_pacific_midnight(n->now);
  out->config = s->config;
  out->state_file = n->where;
  out->state_backend = gkp__state_is_redis(n->where) ? "redis" : "file";
  out->endpoint_url = down && n->down_url[0] != '\0' ? n->down_url : n->cfg->base_url;
  out->unreachable = down;
  out->down_since_ms = down ? n->down_since_ms : 0;
  out->down_last_ms = down ? n->down_last_ms : 0;
  out->down_error = down && n->down_reason[0] != '\0' ? n->down_reason : NULL;
  out->nkeys = n->cfg->nkeys;
  out->nmodels = n->cfg->nmodels;
}

/* Unix seconds, rounded up so that a cooldown never looks over early. */
static int64_t unix_s_ceil(int64_t ms) {
  return (ms + 999) / 1000;
}

static const gkp__snap_pm *pm_at(const gkp__status *s, size_t ki, size_t mi) {
  int pi = s->snap->pm_of[ki * s->snap->cfg->nmodels + mi];
  return pi >= 0 ? &s->snap->pms[pi] : &s->none;
}

void gkp__status_get_model(const gkp__status *s, size_t ki, size_t mi, gkp__status_model *out) {
  const gkp__config *cfg = s->snap->cfg;
  const gkp__snap_key *k = &s->snap->keys[ki];
  const gkp__snap_pm *p = pm_at(s, ki, mi);
  int64_t now = s->snap->now, until = 0;
  int kind = GKP_KIND_NONE;
  gkp_limits lim;

  memset(out, 0, sizeof *out);
  out->id = cfg->models[mi].id;
  gkp__effective(&p->c, &cfg->models[mi].limits, now, &lim);
  if (p->c.cooldown_until_ms > now) {
    until = p->c.cooldown_until_ms;
    kind = p->c.cooldown_kind;
  }
  if (k->c.cooldown_until_ms > now && k->c.cooldown_until_ms > until) {
    until = k->c.cooldown_until_ms;
    kind = k->c.cooldown_kind;
  }
  out->requests_today = p->requests_today;
  out->requests_last_minute = p->reqs_minute;
  out->input_tokens_last_minute = p->tokens_minute;
  out->rpd_limit = lim.rpd >= 0 ? lim.rpd : -1;
  out->rpm_limit = lim.rpm >= 0 ? lim.rpm : -1;
  out->tpm_limit = lim.tpm >= 0 ? lim.tpm : -1;
  out->cooldown_until_s = until > 0 ? unix_s_ceil(until) : 0;
  out->cooldown_kind = kind;
  for (int i = 0; i < 3; i++) {
    int64_t lu = gkp__learned_until(&p->c, i);
    if (p->c.learned[i] >= 0 && now < lu) {
      out->learned[i].set = 1;
      out->learned[i].value = p->c.learned[i];
      out->learned[i].at_ms = p->c.learned_at[i];
      out->learned[i].until_ms = lu;
    }
  }
  out->last_error = p->c.last_error[0] != '\0' ? p->c.last_error : NULL;
  out->requests_total = (int64_t)p->c.requests_total;
  out->input_tokens_total = (int64_t)p->c.tokens_in_total;
  out->output_tokens_total = (int64_t)p->c.tokens_out_total;
  out->proven_access = p->c.proven != 0;
  for (int e = GKP_KIND_RPM; e < GKP_KIND_COUNT && e < GKP__ERROR_KINDS; e++) {
    out->errors[e] = (int64_t)p->c.errors[e];
  }
}

void gkp__status_get_key(const gkp__status *s, size_t ki, gkp__status_key *out) {
  const gkp__config *cfg = s->snap->cfg;
  const gkp__key_cfg *kc = &cfg->keys[ki];
  const gkp__snap_key *k = &s->snap->keys[ki];
  int64_t now = s->snap->now;
  int any_cooling = 0;

  for (size_t mi = 0; mi < cfg->nmodels && !any_cooling; mi++) {
    any_cooling = pm_at(s, ki, mi)->c.cooldown_until_ms > now;
  }
  memset(out, 0, sizeof *out);
  out->id = kc->id;
  out->project = kc->project;
  out->state = k->c.disabled                                          ? "disabled"
               : k->inflight > 0                                      ? "busy"
               : k->c.cooldown_until_ms > now || any_cooling ? "cooling"
                                                                      : "ready";
  out->disabled_reason = k->c.disabled ? k->c.disabled_reason : NULL;
  out->inflight = k->inflight;
  out->max_inflight = kc->max_inflight;
  out->requests_total = (int64_t)k->c.requests_total;
  out->last_used_ms = k->c.last_used_ms > 0 ? k->c.last_used_ms : 0;
  out->cooldown_until_s = k->c.cooldown_until_ms > now ? unix_s_ceil(k->c.cooldown_until_ms) : 0;
  out->cooldown_kind = k->c.cooldown_until_ms > now ? k->c.cooldown_kind : GKP_KIND_NONE;
}

int gkp__status_model_active(const gkp__status_model *m) {
  int learned = m->learned[0].set || m->learned[1].set || m->learned[2].set;
  return m->requests_total > 0 || m->cooldown_until_s > 0 || m->last_error != NULL || learned;
}

/* ---- JSON --------------------------------------------------------------------------- */

/* The document is written directly in the layout cJSON_Print gives (tabs,
 * "name":<tab>value, ", " between array items), so that it reads exactly
 * as before without building a tree of a million nodes. */
#define HUGE_BUF ((size_t)2 << 20)

typedef struct jout {
  char *buf;
  size_t len, cap;
  int oom;
  int depth;
  int first;   /* nothing yet in the current object */
  int compact; /* as cJSON_PrintUnformatted: no white space */
} jout;

static char *grow(jout *o, size_t n) {
  {
    size_t cap = o->cap ? o->cap : 4096;
    while (o->len + n + 1 > cap) {
      cap *= 2;
    }
    char *b = o->oom ? NULL : realloc(o->buf, cap);
    if (b == NULL) {
      o->oom = 1;
      return NULL;
    }
    o->buf = b;
    o->cap = cap;
    if (cap >= HUGE_BUF) {
      /* A document of thousands of keys fills tens of megabytes: huge
       * pages spare a fault per 4 KiB. */
      uintptr_t from = ((uintptr_t)b + HUGE_BUF - 1) & ~(uintptr_t)(HUGE_BUF - 1);
      uintptr_t to = ((uintptr_t)b + cap) & ~(uintptr_t)(HUGE_BUF - 1);
      if (to > from) {
        madvise((void *)from, to - from, MADV_HUGEPAGE);
      }
    }
  }
  return o->buf + o->len;
}

static inline char *room(jout *o, size_t n) {
  return o->len + n + 1 <= o->cap ? o->buf + o->len : grow(o, n);
}

static inline void put(jout *o, const char *s, size_t n) {
  char *p = room(o, n);
  if (p != NULL) {
    memcpy(p, s, n);
    o->len += n;
  }
}

#define PUTS(o, lit) put(o, lit, sizeof lit - 1)

static void tabs(jout *o, int n) {
  if (o->compact || n <= 0) {
    return;
  }
  char *p = room(o, (size_t)n);
  if (p != NULL) {
    memset(p, '\t', (size_t)n);
    o->len += (size_t)n;
  }
}

static void str_value(jout *o, const char *s) {
  static const char hex[] = "0123456789abcdef";
  size_t n = strlen(s);
  char *p = room(o, n * 6 + 2), *w = p;
  if (p == NULL) {
    return;
  }
  *w++ = '"';
  for (; *s != '\0'; s++) {
    unsigned char c = (unsigned char)*s;
    if (c >= 32 && c != '"' && c != '\\') {
      *w++ = (char)c;
      continue;
    }
    *w++ = '\\';
    switch (c) {
    case '"': *w++ = '"'; break;
    case '\\': *w++ = '\\'; break;
    case '\b': *w++ = 'b'; break;
    case '\f': *w++ = 'f'; break;
    case '\n': *w++ = 'n'; break;
    case '\r': *w++ = 'r'; break;
    case '\t': *w++ = 't'; break;
    default:
      memcpy(w, "u00", 3);
      w[3] = hex[c >> 4];
      w[4] = hex[c & 15];
      w += 5;
    }
  }
  *w++ = '"';
  o->len += (size_t)(w - p);
}

/* A number as cJSON prints it: integers below 10^15 in full, others with
 * 15 significant digits, or 17 when 15 do not give the value back. */
static void num_value(jout *o, int64_t v) {
  char b[32];
  size_t n = 0;
  if (v > -1000000000000000LL && v < 1000000000000000LL) {
    uint64_t u = v < 0 ? (uint64_t)(-v) : (uint64_t)v;
    char *e = b + sizeof b, *p = e;
    do {
      *--p = (char)('0' + u % 10);
      u /= 10;
    } while (u > 0);
    if (v < 0) {
      *--p = '-';
    }
    put(o, p, (size_t)(e - p));
    return;
  }
  double d = (double)v, back;
  n = (size_t)snprintf(b, sizeof b, "%1.15g", d);
  if (sscanf(b, "%lg", &back) != 1 || fabs(back - d) > fmax(fabs(back), fabs(d)) * DBL_EPSILON) {
    n = (size_t)snprintf(b, sizeof b, "%1.17g", d);
  }
  put(o, b, n);
}

/* Opens an object: "{" and a newline, one level deeper. */
static void obj_open(jout *o) {
  if (o->compact) {
    PUTS(o, "{");
  } else {
    PUTS(o, "{\n");
  }
  o->depth++;
  o->first = 1;
}

static void obj_close(jout *o) {
  if (!o->first && !o->compact) {
    PUTS(o, "\n");
  }
  tabs(o, o->depth - 1);
  PUTS(o, "}");
  o->depth--;
  o->first = 0;
}

/* The name of the next member. */
static void name(jout *o, const char *n) {
  if (!o->first) {
    if (o->compact) {
      PUTS(o, ",");
    } else {
      PUTS(o, ",\n");
    }
  }
  o->first = 0;
  tabs(o, o->depth);
  str_value(o, n);
  if (o->compact) {
    PUTS(o, ":");
  } else {
    PUTS(o, ":\t");
  }
}

static void m_str(jout *o, const char *n, const char *v) {
  name(o, n);
  if (v != NULL) {
    str_value(o, v);
  } else {
    PUTS(o, "null");
  }
}

static void m_num(jout *o, const char *n, int64_t v) {
  name(o, n);
  num_value(o, v);
}

static void m_num_or_null(jout *o, const char *n, int64_t v) {
  name(o, n);
  if (v >= 0) {
    num_value(o, v);
  } else {
    PUTS(o, "null");
  }
}

static void m_bool(jout *o, const char *n, int v) {
  name(o, n);
  if (v) {
    PUTS(o, "true");
  } else {
    PUTS(o, "false");
  }
}

static void m_time(jout *o, const char *n, int64_t ms) {
  char buf[40];
  m_str(o, n, ms > 0 ? gkp__rfc3339(ms, buf, sizeof buf) : NULL);
}

static void model_json(jout *o, const gkp__status_model *m) {
  static const char *const metric[3] = {"rpm", "tpm", "rpd"};
  obj_open(o);
  m_num(o, "requests_today", m->requests_today);
  m_num_or_null(o, "rpd_limit", m->rpd_limit);
  m_num(o, "requests_last_minute", m->requests_last_minute);
  m_num_or_null(o, "rpm_limit", m->rpm_limit);
  m_num(o, "input_tokens_last_minute", m->input_tokens_last_minute);
  m_num_or_null(o, "tpm_limit", m->tpm_limit);
  m_num(o, "cooldown_until", m->cooldown_until_s);
  m_str(o, "cooldown_kind",
        m->cooldown_kind != GKP_KIND_NONE ? gkp_kind_name(m->cooldown_kind) : NULL);
  name(o, "learned");
  obj_open(o);
  for (int i = 0; i < 3; i++) {
    if (m->learned[i].set) {
      name(o, metric[i]);
      obj_open(o);
      m_num(o, "value", m->learned[i].value);
      m_time(o, "at", m->learned[i].at_ms);
      m_time(o, "until", m->learned[i].until_ms);
      obj_close(o);
    }
  }
  obj_close(o);
  m_str(o, "last_error", m->last_error);
  m_num(o, "requests_total", m->requests_total);
  m_num(o, "input_tokens_total", m->input_tokens_total);
  m_num(o, "output_tokens_total", m->output_tokens_total);
  m_bool(o, "proven_access", m->proven_access);
  name(o, "errors");
  obj_open(o);
  for (int e = GKP_KIND_RPM; e < GKP_KIND_COUNT && e < GKP__ERROR_KINDS; e++) {
    m_num(o, gkp_kind_name(e), m->errors[e]);
  }
  obj_close(o);
  obj_close(o);
}

static void key_json(jout *o, const gkp__status *s, size_t ki, size_t nmodels) {
  gkp__status_key k;
  gkp__status_model m;
  gkp__status_get_key(s, ki, &k);
  obj_open(o);
  m_str(o, "id", k.id);
  m_str(o, "project", k.project);
  m_str(o, "state", k.state);
  m_str(o, "disabled_reason", k.disabled_reason);
  m_num(o, "inflight", k.inflight);
  m_num(o, "max_inflight", k.max_inflight);
  m_num(o, "requests_total", k.requests_total);
  m_time(o, "last_used", k.last_used_ms);
  m_num(o, "cooldown_until", k.cooldown_until_s);
  m_str(o, "cooldown_kind", k.cooldown_kind != GKP_KIND_NONE ? gkp_kind_name(k.cooldown_kind) : NULL);
  name(o, "models");
  obj_open(o);
  for (size_t mi = 0; mi < nmodels; mi++) {
    gkp__status_get_model(s, ki, mi, &m);
    name(o, m.id);
    model_json(o, &m);
  }
  obj_close(o);
  obj_close(o);
}

char *gkp__status_render_json(const gkp__status *s) {
  return gkp__status_render_json_with(s, 0, NULL, NULL);
}

char *gkp__status_render_json_with(const gkp__status *s, int compact, const char *extra_name,
                                   const char *extra_json) {
  gkp__status_info in;
  jout o = {.compact = compact};
  gkp__status_get_info(s, &in);
  obj_open(&o);
  m_time(&o, "generated_at", in.generated_at_ms);
  m_time(&o, "next_daily_reset", in.next_daily_reset_ms);
  m_str(&o, "config", in.config);
  m_str(&o, "state_file", in.state_file);
  m_str(&o, "state_backend", in.state_backend);
  name(&o, "endpoint");
  obj_open(&o);
  m_str(&o, "url", in.endpoint_url);
  m_bool(&o, "unreachable", in.unreachable);
  m_time(&o, "since", in.down_since_ms);
  m_time(&o, "last_failure", in.down_last_ms);
  m_str(&o, "error", in.down_error);
  obj_close(&o);
  name(&o, "keys");
  PUTS(&o, "[");
  o.depth++;
  for (size_t ki = 0; ki < in.nkeys; ki++) {
    if (ki > 0 && compact) {
      PUTS(&o, ",");
    } else if (ki > 0) {
      PUTS(&o, ", ");
    }
    size_t before = o.len;
    key_json(&o, s, ki, in.nmodels);
    if (ki == 0 && in.nkeys > 1) { /* room for the others at once */
      room(&o, (o.len - before + 2) * (in.nkeys - 1) * 11 / 10 + 1024);
    }
  }
  o.depth--;
  PUTS(&o, "]");
  o.first = 0;
  if (extra_name != NULL && extra_json != NULL) {
    name(&o, extra_name);
    put(&o, extra_json, strlen(extra_json));
  }
  obj_close(&o);
  if (o.oom || room(&o, 0) == NULL) {
    free(o.buf);
    return NULL;
  }
  o.buf[o.len] = '\0';
  return o.buf;
}

/* The document is rendered from a snapshot after the state's lock is let
 * go: a slow reader or a large pool never holds up the others. */
int gkp_status_json(gkp_pool *pool, char **out, gkp_error *err) {
  gkp__status *s;
  int rc;
  *out = NULL;
  if ((rc = gkp__status_take(pool, &s, err)) != 0) {
    return rc;
  }
  *out = gkp__status_render_json(s);
  gkp__status_free(s);
  if (*out == NULL) {
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  return 0;
}
