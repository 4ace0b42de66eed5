/*
 * quota.c - per-minute windows, per-day counts, eligibility and error rules
 * over plain values.
 */
#include "engine/quota.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "engine/bounds.h"

#define SECOND 1000LL
#define MINUTE (60 * SECOND)
#define BILLING_COOLDOWN_MS (2 * 60 * MINUTE)
#define SERVER_COOLDOWN_MAX_MS (30 * SECOND)

#define floor_div gkp__floor_div

static int64_t min64(int64_t a, int64_t b) {
  return a < b ? a : b;
}

static int64_t max64(int64_t a, int64_t b) {
  return a > b ? a : b;
}

void gkp__instant_at(gkp__instant *t, int64_t now_ms) {
  t->now = now_ms;
  t->day_start = gkp_last_pacific_midnight(now_ms);
  t->next_midnight = gkp_next_pacific_midnight(now_ms);
  t->dead_sec = gkp__floor_div(now_ms - 61 * SECOND - GKP__WINDOW_MARGIN_MS, SECOND);
}

void gkp__pm_counts_init(gkp__pm_counts *p) {
  memset(p, 0, sizeof *p);
  p->learned[0] = p->learned[1] = p->learned[2] = -1;
}

int64_t gkp__learned_until(const gkp__pm_counts *p, int i) {
  if (p->learned[i] < 0 || p->learned_at[i] <= 0) {
    return 0;
  }
  return gkp_next_pacific_midnight(p->learned_at[i]);
}

void gkp__effective(const gkp__pm_counts *p, const gkp_limits *cfg, int64_t now, gkp_limits *out) {
  int64_t *field[3] = {&out->rpm, &out->tpm, &out->rpd};
  *out = *cfg;
  for (int i = 0; i < 3; i++) {
    /* A learned limit heals at the next midnight Pacific: Google's limits
     * change, and a value seen once must not cap the project for good. */
    if (p->learned[i] >= 0 && now < gkp__learned_until(p, i)) {
      *field[i] = p->learned[i];
    }
  }
}

void gkp__pm_reset(gkp__pm_counts *p) {
  p->cooldown_until_ms = 0;
  p->cooldown_kind = GKP_KIND_NONE;
  p->streak_429 = 0;
  p->streak_server = 0;
  p->last_error[0] = '\0';
  for (int i = 0; i < 3; i++) {
    p->learned[i] = -1; /* back to the configured limits */
    p->learned_at[i] = 0;
  }
}

/* ---- the window ----------------------------------------------------------- */

/* The time at which a bucket for second `sec` stops counting. */
static int64_t bucket_end_ms(int64_t sec) {
  return (sec + 61) * SECOND + GKP__WINDOW_MARGIN_MS;
}

/* The second a time falls in, as a bucket stores it. */
static uint32_t sec_of(int64_t ms) {
  int64_t s = gkp__floor_div(ms, SECOND);
  return s < 0 ? 0 : s > UINT32_MAX ? UINT32_MAX : (uint32_t)s;
}

gkp__bucket *gkp__bucket_of(gkp__window *w, int64_t ms) {
  return &w->b[sec_of(ms) % GKP__WIN_SLOTS];
}

/* What the buckets in (w->floor_sec, dead] hold: the part of the running
 * sums that has expired by `dead`. */
static void expired_part(const gkp__window *w, int64_t dead, int64_t *reqs, int64_t *tokens) {
  int64_t r = 0, t = 0;
  if (dead - w->floor_sec >= GKP__WIN_SLOTS) {
    for (int i = 0; i < GKP__WIN_SLOTS; i++) {
      int64_t s = w->b[i].sec;
      if (s > w->floor_sec && s <= dead) {
        r += w->b[i].reqs;
        t += w->b[i].tokens;
      }
    }
  } else {
    for (int64_t s = w->floor_sec + 1; s <= dead; s++) {
      const gkp__bucket *b = &w->b[(uint64_t)s % GKP__WIN_SLOTS];
      if ((int64_t)b->sec == s) {
        r += b->reqs;
        t += b->tokens;
      }
    }
  }
  *reqs = r;
  *tokens = t;
}

void gkp__window_totals(const gkp__window *w, const gkp__instant *t, int64_t *reqs,
                        int64_t *tokens) {
  int64_t r = w->sum_reqs, k = w->sum_tokens;
  if (t->dead_sec > w->floor_sec) {
    int64_t er, et;
    expired_part(w, t->dead_sec, &er, &et);
    r -= er;
    k -= et;
  }
  *reqs = r > 0 ? r : 0;
  *tokens = k > 0 ? k : 0;
}

/* Moves the running sums' floor up to `dead`. */
static void window_advance(gkp__window *w, int64_t dead) {
  if (dead > w->floor_sec) {
    int64_t er, et;
    expired_part(w, dead, &er, &et);
    w->sum_reqs = max64(w->sum_reqs - er, 0);
    w->sum_tokens = max64(w->sum_tokens - et, 0);
    w->floor_sec = dead;
  }
}

/* Adds to the bucket of `ms` (creating it), keeping the sums. */
static void window_add(gkp__window *w, int64_t ms, int64_t reqs, int64_t tokens, int64_t dead) {
  uint32_t sec = sec_of(ms);
  gkp__bucket *b = &w->b[sec % GKP__WIN_SLOTS];
  window_advance(w, dead);
  if (b->sec != sec) {
    if ((int64_t)b->sec > w->floor_sec) { /* only after the clock went back */
      w->sum_reqs = max64(w->sum_reqs - b->reqs, 0);
      w->sum_tokens = max64(w->sum_tokens - b->tokens, 0);
    }
    b->sec = sec;
    b->reqs = 0;
    b->tokens = 0;
  }
  b->reqs = (uint32_t)max64((int64_t)b->reqs + reqs, 0);
  b->tokens = max64(b->tokens + tokens, 0);
  if ((int64_t)sec > w->floor_sec) {
    w->sum_reqs = max64(w->sum_reqs + reqs, 0);
    w->sum_tokens = max64(w->sum_tokens + tokens, 0);
  }
  if ((int64_t)sec > w->top_sec) {
    w->top_sec = sec;
  }
}

int gkp__window_from_future(const gkp__window *w, const gkp__instant *t) {
  /* A second counted later than now, or sums kept for a later time. */
  return w->top_sec > (int64_t)sec_of(t->now) || w->floor_sec > t->dead_sec;
}

void gkp__window_restamp(gkp__window *w, const gkp__instant *t) {
  uint32_t now_sec = sec_of(t->now);
  gkp__bucket *here = &w->b[now_sec % GKP__WIN_SLOTS];
  int64_t reqs = 0, tokens = 0;
  for (int i = 0; i < GKP__WIN_SLOTS; i++) {
    gkp__bucket *b = &w->b[i];
    if (b->sec > now_sec || (b == here && b->sec == now_sec)) {
      reqs += b->reqs;
      tokens += b->tokens;
      memset(b, 0, sizeof *b);
    }
  }
  if (reqs > 0 || tokens > 0) {
    here->sec = now_sec;
    here->reqs = (uint32_t)min64(reqs, UINT32_MAX);
    here->tokens = tokens;
  }
  /* The sums start again from every bucket live now (a rare path). */
  w->sum_reqs = w->sum_tokens = 0;
  w->floor_sec = t->dead_sec;
  for (int i = 0; i < GKP__WIN_SLOTS; i++) {
    if ((int64_t)w->b[i].sec > t->dead_sec) {
      w->sum_reqs += w->b[i].reqs;
      w->sum_tokens += w->b[i].tokens;
    }
  }
  w->top_sec = now_sec;
}

/* Changes an existing bucket of `ms` (if still in the ring), keeping the sums. */
static void window_adjust(gkp__window *w, int64_t ms, int64_t reqs, int64_t tokens) {
  uint32_t sec = sec_of(ms);
  gkp__bucket *b = &w->b[sec % GKP__WIN_SLOTS];
  int64_t nr, nt;
  if (b->sec != sec) {
    return;
  }
  nr = max64((int64_t)b->reqs + reqs, 0);
  nt = max64(b->tokens + tokens, 0);
  if ((int64_t)sec > w->floor_sec) {
    w->sum_reqs = max64(w->sum_reqs + (nr - b->reqs), 0);
    w->sum_tokens = max64(w->sum_tokens + (nt - b->tokens), 0);
  }
  b->reqs = (uint32_t)nr;
  b->tokens = nt;
}

int64_t gkp__day_count(const gkp__pm_counts *p, const gkp__instant *t) {
  return p->day_start_ms >= t->day_start ? p->day_count : 0;
}

int64_t gkp__day_reset_ms(const gkp__pm_counts *p, const gkp__instant *t) {
  return p->day_start_ms > t->now ? gkp_next_pacific_midnight(p->day_start_ms) : t->next_midnight;
}

int64_t gkp__count_request(gkp__pm_counts *p, const gkp__instant *t, int64_t tokens) {
  /* Today, or the later day the record already counts if the wall clock
   * stepped back across a midnight: days never go backwards. */
  int64_t day = max64(p->day_start_ms, t->day_start);
  if (gkp__window_from_future(&p->win, t)) {
    gkp__window_restamp(&p->win, t); /* never overwrite a bucket still counting */
  }
  window_add(&p->win, t->now, 1, tokens > 0 ? tokens : 0, t->dead_sec);
  if (p->day_start_ms != day) {
    p->day_start_ms = day;
    p->day_count = 0;
  }
  p->day_count++;
  p->requests_total++;
  return day;
}

void gkp__uncount_request(gkp__pm_counts *p, int64_t started_ms, int64_t day_ms, int64_t tokens) {
  window_adjust(&p->win, started_ms, -1, -(tokens > 0 ? tokens : 0));
  if (p->day_start_ms == day_ms && p->day_count > 0) {
    p->day_count--;
  }
  if (p->requests_total > 0) {
    p->requests_total--;
  }
}

void gkp__correct_tokens(gkp__pm_counts *p, int64_t started_ms, int64_t delta) {
  window_adjust(&p->win, started_ms, 0, delta);
}

static int cmp_sec(const void *a, const void *b) {
  const gkp__bucket *x = a, *y = b;
  return (x->sec > y->sec) - (x->sec < y->sec);
}

/*
 * When the window will have room: the buckets expire oldest first; returns
 * the end of the bucket whose expiry first brings the total (requests when
 * use_tokens is 0, else tokens) down to at most `allowed`.
 */
static int64_t window_ready_ms(const gkp__window *w, const gkp__instant *t, int use_tokens,
                               int64_t allowed) {
  gkp__bucket live[GKP__WIN_SLOTS];
  int n = 0;
  int64_t total = 0;
  for (int i = 0; i < GKP__WIN_SLOTS; i++) {
    const gkp__bucket *b = &w->b[i];
    if ((b->reqs > 0 || b->tokens > 0) && (int64_t)b->sec > t->dead_sec) {
      live[n] = *b;
      total += use_tokens ? live[n].tokens : (int64_t)live[n].reqs;
      n++;
    }
  }
  qsort(live, (size_t)n, sizeof live[0], cmp_sec);
  for (int i = 0; i < n; i++) {
    total -= use_tokens ? live[i].tokens : (int64_t)live[i].reqs;
    if (total <= allowed) {
      /* A bucket from the future (the wall clock stepped back) is moved to
       * the present when the next request is counted; until then it is
       * judged as if it were the present second. */
      int64_t now_sec = sec_of(t->now);
      return bucket_end_ms(min64(live[i].sec, now_sec));
    }
  }
  return t->now;
}

int gkp__quota_fits(const gkp__pm_counts *p, const gkp_limits *lim, int64_t est,
                    const gkp__instant *t, int64_t *ready_ms, int *reason) {
  int64_t reqs, tokens, ready = t->now;
  int fits = 1;

  if ((lim->rpm == 0 || lim->tpm == 0 || lim->rpd == 0) && !p->proven) {
    *ready_ms = INT64_MAX;
    *reason = GKP_WAIT_NEVER;
    return 0;
  }
  if (lim->tpm > 0 && est > lim->tpm) {
    *ready_ms = INT64_MAX;
    *reason = GKP_WAIT_NEVER;
    return 0;
  }
  if (lim->rpd > 0 && gkp__day_count(p, t) + 1 > lim->rpd) {
    *ready_ms = gkp__day_reset_ms(p, t);
    *reason = GKP_WAIT_QUOTA;
    return 0;
  }
  if (lim->rpm <= 0 && lim->tpm <= 0) {
    return 1;
  }
  gkp__window_totals(&p->win, t, &reqs, &tokens);
  if (lim->rpm > 0 && reqs + 1 > lim->rpm) {
    ready = max64(ready, window_ready_ms(&p->win, t, 0, lim->rpm - 1));
    fits = 0;
  }
  if (lim->tpm > 0 && tokens + est > lim->tpm) {
    ready = max64(ready, window_ready_ms(&p->win, t, 1, lim->tpm - est));
    fits = 0;
  }
  if (!fits) {
    *ready_ms = ready;
    *reason = GKP_WAIT_QUOTA;
  }
  return fits;
}

/* Notes a condition that keeps a key from being eligible until `when`. */
static void hold(int64_t *ready, int *reason, int64_t when, int why) {
  if (*reason == GKP_WAIT_NONE || when > *ready) {
    *ready = when;
    *reason = why;
  }
}

int gkp__key_fits(const gkp__key_counts *k, const gkp__pm_counts *p, const gkp_limits *cfg,
                  int64_t est, const gkp__instant *t, int64_t *ready, int *reason) {
  gkp_limits lim;
  int64_t when;
  int why;

  *reason = GKP_WAIT_NONE;
  *ready = t->now;
  if (k->disabled) {
    hold(ready, reason, INT64_MAX, GKP_WAIT_NEVER);
    return 0;
  }
  if (k->cooldown_until_ms > t->now) {
    hold(ready, reason, k->cooldown_until_ms, GKP_WAIT_COOLDOWN);
  }
  if (p->cooldown_until_ms > t->now) {
    hold(ready, reason, p->cooldown_until_ms, GKP_WAIT_COOLDOWN);
  }
  gkp__effective(p, cfg, t->now, &lim);
  if (!gkp__quota_fits(p, &lim, est, t, &when, &why)) {
    hold(ready, reason, when, why);
  }
  return *reason == GKP_WAIT_NONE;
}

/* ---- error rules -------------------------------------------------------------- */

/* Sets a (project, model) cooldown, never shortening one already running. */
static int64_t cool_pm(gkp__pm_counts *p, int64_t until, int kind) {
  if (until > p->cooldown_until_ms || p->cooldown_kind == GKP_KIND_NONE) {
    p->cooldown_until_ms = max64(until, p->cooldown_until_ms);
    p->cooldown_kind = kind;
  }
  return p->cooldown_until_ms;
}

/* The cooldown of an unknown 429: 60 s, doubled for each consecutive one,
 * never past the next Pacific midnight. */
static int64_t unknown_429_ms(uint32_t streak, const gkp__instant *t) {
  int64_t d = MINUTE;
  for (uint32_t i = 1; i < streak && d < 48 * 60 * MINUTE; i++) {
    d *= 2;
  }
  return min64(t->now + d, t->next_midnight);
}

static void learn(gkp__pm_counts *p, const gkp_verdict *v, int64_t now) {
  int i = v->learned_metric == GKP_KIND_RPM   ? 0
          : v->learned_metric == GKP_KIND_TPM ? 1
          : v->learned_metric == GKP_KIND_RPD ? 2
                                              : -1;
  if (v->learned_limit >= 0 && i >= 0) {
    /* Applies until the next midnight Pacific (gkp__effective). */
    p->learned[i] = gkp__clamp64(v->learned_limit, 0, GKP__LIMIT_MAX);
    p->learned_at[i] = now;
  }
}

int64_t gkp__apply_rule(gkp__key_counts *k, gkp__pm_counts *p, const gkp_verdict *v,
                        const gkp__instant *t, uint64_t jitter) {
  int64_t now = t->now, until = 0;
  switch (v->kind) {
  case GKP_KIND_RPM:
  case GKP_KIND_TPM: {
    int64_t d = v->retry_ms >= 0 ? gkp__clamp64(v->retry_ms, SECOND, GKP__DELAY_MAX_MS) : MINUTE;
    until = cool_pm(p, now + d, v->kind);
    break;
  }
  case GKP_KIND_RPD:
    until = cool_pm(p, t->next_midnight, v->kind);
    break;
  case GKP_KIND_NO_FREE_TIER:
    p->proven = 0;
    until = cool_pm(p, t->next_midnight, v->kind);
    break;
  case GKP_KIND_BILLING:
    k->cooldown_until_ms = max64(k->cooldown_until_ms, now + BILLING_COOLDOWN_MS);
    k->cooldown_kind = GKP_KIND_BILLING;
    until = k->cooldown_until_ms;
    break;
  case GKP_KIND_UNKNOWN_429:
    p->streak_429++;
    until = cool_pm(p, unknown_429_ms(p->streak_429, t), v->kind);
    break;
  case GKP_KIND_INVALID_KEY:
    k->disabled = 1;
    snprintf(k->disabled_reason, sizeof k->disabled_reason, "HTTP %d: %s", v->http_status,
             v->message);
    break;
  case GKP_KIND_SERVER: {
    /* Short jittered backoff: 1 s, 2 s, 4 s ... at most 30 s, times [0.5, 1). */
    int64_t d = SECOND << min64(p->streak_server, 5);
    p->streak_server++;
    d = min64(d, SERVER_COOLDOWN_MAX_MS);
    d = d / 2 + (int64_t)(jitter % (uint64_t)(d / 2));
    until = cool_pm(p, now + d, v->kind);
    break;
  }
  default:
    break; /* model not found, bad request: no penalty */
  }
  learn(p, v, now);
  if (v->kind > GKP_KIND_NONE && v->kind < GKP_KIND_COUNT && v->kind < GKP__ERROR_KINDS) {
    p->errors[v->kind]++;
  }
  snprintf(p->last_error, sizeof p->last_error, "%s: %s", gkp_kind_name(v->kind), v->message);
  return until;
}

void gkp__apply_usage(gkp__pm_counts *p, int64_t started_ms, int64_t est_tokens,
                      const gkp_usage *usage) {
  p->proven = 1;
  p->streak_429 = 0;
  p->streak_server = 0;
  p->last_error[0] = '\0';
  if (usage == NULL) {
    return;
  }
  int64_t in = gkp__clamp64(usage->prompt_tokens, -1, GKP__TOKENS_MAX);
  int64_t out = gkp__clamp64(usage->candidates_tokens, 0, GKP__TOKENS_MAX);
  int64_t thoughts = gkp__clamp64(usage->thoughts_tokens, 0, GKP__TOKENS_MAX);
  if (in >= 0) {
    gkp__correct_tokens(p, started_ms, in - est_tokens);
    p->tokens_in_total += (uint64_t)in;
  }
  p->tokens_out_total += (uint64_t)out + (uint64_t)thoughts;
}
