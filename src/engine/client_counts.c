/*
 * client_counts.c - a caller's counts: admission, reading, the text form.
 */
#include "engine/client_counts.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Beyond anything a caller can send; keeps sums far from overflow. */
#define COUNT_MAX (INT64_C(1) << 48)

static int64_t minute_used(const gkp__client_counts *c, int64_t sec, int64_t *oldest) {
  int64_t used = 0;
  *oldest = sec;
  for (int i = 0; i < GKP__CLIENT_SECONDS; i++) {
    if (c->sec[i] > sec - GKP__CLIENT_SECONDS && c->sec[i] <= sec && c->n[i] > 0) {
      used += c->n[i];
      if (c->sec[i] < *oldest) {
        *oldest = c->sec[i];
      }
    }
  }
  return used;
}

/* A clock before 1970 or absurdly far ahead counts as its nearest bound:
 * the buckets are indexed by the second. */
static int64_t sane_now(int64_t now_ms) {
  return now_ms < 0 ? 0 : now_ms > (INT64_C(1) << 52) ? INT64_C(1) << 52 : now_ms;
}

int64_t gkp__client_count(gkp__client_counts *c, int kind, int64_t now_ms, int64_t rpm,
                          int64_t rpd) {
  now_ms = sane_now(now_ms);
  int64_t sec = now_ms / 1000, day = gkp_last_pacific_midnight(now_ms), oldest;
  if (kind == GKP__CLIENT_ERROR) {
    c->errors += c->errors < COUNT_MAX;
    return 0;
  }
  if (c->day_ms != day) {
    c->day_ms = day;
    c->today = 0;
  }
  if (rpd > 0 && c->today >= rpd) {
    c->rejected += c->rejected < COUNT_MAX;
    return (gkp_next_pacific_midnight(now_ms) - now_ms + 999) / 1000;
  }
  int64_t used = minute_used(c, sec, &oldest);
  if (rpm > 0 && used >= rpm) {
    c->rejected += c->rejected < COUNT_MAX;
    return oldest + GKP__CLIENT_SECONDS - sec > 0 ? oldest + GKP__CLIENT_SECONDS - sec : 1;
  }
  int slot = (int)(sec % GKP__CLIENT_SECONDS);
  if (c->sec[slot] != sec) {
    c->sec[slot] = sec;
    c->n[slot] = 0;
  }
  c->n[slot] += c->n[slot] < COUNT_MAX;
  c->today += c->today < COUNT_MAX;
  c->requests += c->requests < COUNT_MAX;
  return 0;
}

void gkp__client_read(const gkp__client_counts *c, int64_t now_ms, gkp_client_usage *out) {
  int64_t oldest;
  now_ms = sane_now(now_ms);
  out->minute = minute_used(c, now_ms / 1000, &oldest);
  out->today = c->day_ms == gkp_last_pacific_midnight(now_ms) ? c->today : 0;
  out->requests = c->requests;
  out->rejected = c->rejected;
  out->errors = c->errors;
}

void gkp__client_encode(const gkp__client_counts *c, char *buf, size_t len) {
  size_t n =
      (size_t)snprintf(buf, len, "c1 %" PRId64 " %" PRId64 " %" PRId64 " %" PRId64 " %" PRId64,
                       c->day_ms, c->today, c->requests, c->rejected, c->errors);
  for (int i = 0; i < GKP__CLIENT_SECONDS && n < len; i++) {
    if (c->n[i] > 0) {
      n += (size_t)snprintf(buf + n, len - n, " %d:%" PRId64 ":%" PRId64, i, c->sec[i], c->n[i]);
    }
  }
}

/* A decimal in [0, COUNT_MAX] (times in ms are far below); advances *p. */
static int number(const char **p, const char *end, int64_t *out) {
  int64_t v = 0;
  const char *s = *p;
  if (s >= end || *s < '0' || *s > '9') {
    return -1;
  }
  while (s < end && *s >= '0' && *s <= '9') {
    v = v * 10 + (*s++ - '0');
    if (v > (INT64_C(1) << 52)) {
      return -1;
    }
  }
  *p = s;
  *out = v;
  return 0;
}

static int expect(const char **p, const char *end, char ch) {
  if (*p >= end || **p != ch) {
    return -1;
  }
  (*p)++;
  return 0;
}

int gkp__client_decode(const char *s, size_t len, gkp__client_counts *out) {
  const char *p = s, *end = s + len;
  gkp__client_counts c;
  memset(&c, 0, sizeof c);
  memset(out, 0, sizeof *out);
  if (len < 3 || memcmp(s, "c1", 2) != 0) {
    return -EINVAL;
  }
  p += 2;
  int64_t *head[] = {&c.day_ms, &c.today, &c.requests, &c.rejected, &c.errors};
  for (size_t i = 0; i < sizeof head / sizeof head[0]; i++) {
    /* The day may start before 1970 (a midnight Pacific of a clock near 0). */
    int neg = i == 0 && p + 1 < end && p[0] == ' ' && p[1] == '-';
    if (expect(&p, end, ' ') != 0 || (neg && expect(&p, end, '-') != 0) ||
        number(&p, end, head[i]) != 0) {
      return -EINVAL;
    }
    *head[i] = neg ? -*head[i] : *head[i];
  }
  if (c.today > COUNT_MAX || c.requests > COUNT_MAX || c.rejected > COUNT_MAX ||
      c.errors > COUNT_MAX) {
    return -EINVAL;
  }
  while (p < end) {
    int64_t slot, sec, n;
    if (expect(&p, end, ' ') != 0 || number(&p, end, &slot) != 0 || expect(&p, end, ':') != 0 ||
        number(&p, end, &sec) != 0 || expect(&p, end, ':') != 0 || number(&p, end, &n) != 0 ||
        slot >= GKP__CLIENT_SECONDS || sec % GKP__CLIENT_SECONDS != slot || n > COUNT_MAX) {
      return -EINVAL;
    }
    if (n > 0) { /* an empty bucket counts nothing, as if absent */
      c.sec[slot] = sec;
      c.n[slot] = n;
    }
  }
  *out = c;
  return 0;
}

int gkp__client_id_ok(const char *id) {
  size_t n = 0;
  for (; id[n] != '\0'; n++) {
    if ((unsigned char)id[n] <= ' ' || (unsigned char)id[n] >= 0x7f) {
      return 0;
    }
  }
  return n > 0 && n < GKP_ID_MAX;
}
