/*
 * quota.c - per-minute windows and per-day counts.
 */
#include "engine/quota.h"

#include <stdint.h>
#include <stdlib.h>

#include "common/util.h"

/* The time at which a bucket for second `sec` stops counting. */
static int64_t bucket_end_ms(int64_t sec) {
  return (sec + 61) * 1000 + GKP__WINDOW_MARGIN_MS;
}

static int bucket_live(const gkp__bucket *b, int64_t now_ms) {
  return (b->reqs > 0 || b->tokens > 0) && now_ms < bucket_end_ms(b->sec);
}

void gkp__window_totals(const gkp__pm_rec *p, int64_t now_ms, int64_t *reqs, int64_t *tokens) {
  int64_t r = 0, t = 0;
  for (int i = 0; i < GKP__WIN_SLOTS; i++) {
    if (bucket_live(&p->win[i], now_ms)) {
      r += p->win[i].reqs;
      t += p->win[i].tokens;
    }
  }
  *reqs = r;
  *tokens = t;
}

/* The day a request started at now_ms is counted in: today, or the later
 * day the record already counts if the wall clock stepped back across a
 * midnight.  Days never go backwards, so the count never flips. */
int64_t gkp__count_day(const gkp__pm_rec *p, int64_t now_ms) {
  int64_t day = gkp_last_pacific_midnight(now_ms);
  return p->day_start_ms > day ? p->day_start_ms : day;
}

int64_t gkp__day_count(const gkp__pm_rec *p, int64_t now_ms) {
  return p->day_start_ms >= gkp_last_pacific_midnight(now_ms) ? p->day_count : 0;
}

int64_t gkp__day_reset_ms(const gkp__pm_rec *p, int64_t now_ms) {
  return gkp_next_pacific_midnight(p->day_start_ms > now_ms ? p->day_start_ms : now_ms);
}

void gkp__window_restamp(gkp__pm_rec *p, int64_t now_ms) {
  int64_t now_sec = gkp__floor_div(now_ms, 1000), reqs = 0, tokens = 0;
  gkp__bucket *here = &p->win[(uint64_t)now_sec % GKP__WIN_SLOTS];
  for (int i = 0; i < GKP__WIN_SLOTS; i++) {
    gkp__bucket *b = &p->win[i];
    if (b->sec > now_sec || (b == here && b->sec == now_sec)) {
      reqs += b->reqs;
      tokens += b->tokens;
      b->sec = 0;
      b->reqs = 0;
      b->tokens = 0;
    }
  }
  if (reqs > 0 || tokens > 0 || here->sec > now_sec) {
    here->sec = now_sec;
    here->reqs = reqs;
    here->tokens = tokens;
  }
}

int gkp__window_from_future(const gkp__pm_rec *p, int64_t now_ms) {
  int64_t now_sec = gkp__floor_div(now_ms, 1000);
  for (int i = 0; i < GKP__WIN_SLOTS; i++) {
    if (p->win[i].sec > now_sec && (p->win[i].reqs > 0 || p->win[i].tokens > 0)) {
      return 1;
    }
  }
  return 0;
}

static gkp__bucket *bucket_for(gkp__pm_rec *p, int64_t ms, int create) {
  int64_t sec = gkp__floor_div(ms, 1000);
  gkp__bucket *b = &p->win[(uint64_t)sec % GKP__WIN_SLOTS];
  if (b->sec != sec) {
    if (!create) {
      return NULL;
    }
    /* The previous occupant is at least 64 s old: out of every window. */
    b->sec = sec;
    b->reqs = 0;
    b->tokens = 0;
  }
  return b;
}

int64_t gkp__count_request(gkp__pm_rec *p, int64_t now_ms, int64_t tokens) {
  int64_t day = gkp__count_day(p, now_ms);
  gkp__bucket *b;
  if (gkp__window_from_future(p, now_ms)) {
    gkp__window_restamp(p, now_ms); /* never overwrite a bucket still counting */
  }
  b = bucket_for(p, now_ms, 1);
  b->reqs += 1;
  b->tokens += tokens > 0 ? tokens : 0;
  if (p->day_start_ms != day) {
    p->day_start_ms = day;
    p->day_count = 0;
  }
  p->day_count++;
  p->requests_total++;
  return day;
}

void gkp__uncount_request(gkp__pm_rec *p, int64_t started_ms, int64_t day_ms, int64_t tokens) {
  gkp__bucket *b = bucket_for(p, started_ms, 0);
  if (b != NULL) {
    b->reqs = b->reqs > 0 ? b->reqs - 1 : 0;
    b->tokens -= tokens > 0 ? tokens : 0;
    if (b->tokens < 0) {
      b->tokens = 0;
    }
  }
  if (p->day_start_ms == day_ms && p->day_count > 0) {
    p->day_count--;
  }
  if (p->requests_total > 0) {
    p->requests_total--;
  }
}

void gkp__correct_tokens(gkp__pm_rec *p, int64_t started_ms, int64_t delta) {
  gkp__bucket *b = bucket_for(p, started_ms, 0);
  if (b != NULL) {
    b->tokens += delta;
    if (b->tokens < 0) {
      b->tokens = 0;
    }
  }
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
static int64_t window_ready_ms(const gkp__pm_rec *p, int64_t now_ms, int use_tokens,
                               int64_t allowed) {
  gkp__bucket live[GKP__WIN_SLOTS];
  int n = 0;
  int64_t total = 0;
  for (int i = 0; i < GKP__WIN_SLOTS; i++) {
    if (bucket_live(&p->win[i], now_ms)) {
      live[n] = p->win[i];
      total += use_tokens ? live[n].tokens : live[n].reqs;
      n++;
    }
  }
  qsort(live, (size_t)n, sizeof live[0], cmp_sec);
  for (int i = 0; i < n; i++) {
    total -= use_tokens ? live[i].tokens : live[i].reqs;
    if (total <= allowed) {
      /* A bucket from the future (the wall clock stepped back) is moved to
       * the present when the next request is counted; until then it is
       * judged as if it were the present second. */
      int64_t now_sec = gkp__floor_div(now_ms, 1000);
      return bucket_end_ms(live[i].sec < now_sec ? live[i].sec : now_sec);
    }
  }
  return now_ms;
}

int gkp__quota_fits(const gkp__pm_rec *p, const gkp_limits *lim, int64_t est, int64_t now_ms,
                    int64_t *ready_ms, int *reason) {
  int64_t reqs, tokens, ready = now_ms;
  int fits = 1;

  if (lim->rpm == 0 || lim->tpm == 0 || lim->rpd == 0) {
    if (!p->proven) {
      *ready_ms = INT64_MAX;
      *reason = GKP_WAIT_NEVER;
      return 0;
    }
  }
  if (lim->tpm > 0 && est > lim->tpm) {
    *ready_ms = INT64_MAX;
    *reason = GKP_WAIT_NEVER;
    return 0;
  }
  gkp__window_totals(p, now_ms, &reqs, &tokens);
  if (lim->rpd > 0 && gkp__day_count(p, now_ms) + 1 > lim->rpd) {
    *ready_ms = gkp__day_reset_ms(p, now_ms);
    *reason = GKP_WAIT_QUOTA;
    return 0;
  }
  if (lim->rpm > 0 && reqs + 1 > lim->rpm) {
    int64_t t = window_ready_ms(p, now_ms, 0, lim->rpm - 1);
    ready = t > ready ? t : ready;
    fits = 0;
  }
  if (lim->tpm > 0 && tokens + est > lim->tpm) {
    int64_t t = window_ready_ms(p, now_ms, 1, lim->tpm - est);
    ready = t > ready ? t : ready;
    fits = 0;
  }
  if (!fits) {
    *ready_ms = ready;
    *reason = GKP_WAIT_QUOTA;
  }
  return fits;
}
