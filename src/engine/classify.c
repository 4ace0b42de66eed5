/*
 * classify.c - what a Gemini error response means (SPEC §4, "Error rules").
 *
 * gkp_classify turns an HTTP status and a raw body into a gkp_verdict in three
 * steps:
 *
 *   1. find the error envelope: plain JSON, array-framed `[{"error":…}]`, an
 *      SSE `data:` line, or bare JSON after other stream events; a truncated
 *      body is closed after its last complete member and parsed again;
 *   2. gather the evidence: error.code, error.status, error.message and the
 *      structured details (QuotaFailure violations, RetryInfo, ErrorInfo),
 *      recognised by their fields, not by their order or their @type;
 *   3. apply the rules (see decide()), structured details first, then the
 *      message's words, then the HTTP status.
 *
 * Everything is bounded by `len` (the body need not be NUL-terminated), no
 * state is kept between calls, and nothing is printed.
 */
#include "gkp.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define MAX_VIOLATIONS 16 /* QuotaFailure violations looked at */
#define MAX_DEPTH 64      /* nesting that repair_json follows */
#define MAX_SEARCHES 8    /* "error" members tried when the body does not start with one */
#define DAILY_HINT_MS INT64_C(300000) /* a retry hint longer than this means a daily limit */

/* A run of bytes, not NUL-terminated. */
typedef struct span {
  const char *p;
  size_t n;
} span;

/* One google.rpc.QuotaFailure violation. */
struct violation {
  char id[128];     /* quotaId */
  char metric[192]; /* quotaMetric */
  int64_t value;    /* quotaValue, -1 if absent or not a whole number */
};

/* What an error body says, before any rule is applied. */
struct evidence {
  int found;       /* an error envelope was found */
  int code;        /* error.code, 0 if absent */
  char rpc[40];    /* error.status ("RESOURCE_EXHAUSTED"), "" if absent */
  char reason[64]; /* ErrorInfo.reason ("API_KEY…" preferred), "" if absent */
  struct violation v[MAX_VIOLATIONS];
  int nv;
  int64_t retry_delay_ms; /* RetryInfo.retryDelay rounded up, -1 if absent */
  const char *message;    /* error.message (owned by the parsed tree), NULL if absent */
};

/* ---- Bounded text helpers ------------------------------------------------ */

static int lower(int c) {
  return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

static int is_digit(int c) {
  return c >= '0' && c <= '9';
}

static int is_alpha(int c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_space(int c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static span span_of(const char *s) {
  span t = {s, s != NULL ? strlen(s) : 0};
  return t;
}

/* Offset of the first case-insensitive occurrence of `needle` in t at or
 * after `from`, or SIZE_MAX. */
static size_t ci_find(span t, size_t from, const char *needle) {
  size_t m = strlen(needle);
  if (m == 0 || t.n < m) {
    return SIZE_MAX;
  }
  for (size_t i = from; i + m <= t.n; i++) {
    size_t k = 0;
    while (k < m && lower((unsigned char)t.p[i + k]) == lower((unsigned char)needle[k])) {
      k++;
    }
    if (k == m) {
      return i;
    }
  }
  return SIZE_MAX;
}

static int ci_has(span t, const char *needle) {
  return ci_find(t, 0, needle) != SIZE_MAX;
}

/* Whether t contains any of the NULL-terminated list of needles. */
static int ci_has_any(span t, const char *const *needles) {
  for (size_t i = 0; needles[i] != NULL; i++) {
    if (ci_has(t, needles[i])) {
      return 1;
    }
  }
  return 0;
}

/* Offset of the first case-sensitive occurrence of needle (m bytes) in t at
 * or after from, or SIZE_MAX. */
static size_t find_bytes(span t, size_t from, const char *needle, size_t m) {
  for (size_t i = from; i + m <= t.n; i++) {
    if (memcmp(t.p + i, needle, m) == 0) {
      return i;
    }
  }
  return SIZE_MAX;
}

/* ---- Durations ----------------------------------------------------------- */

#define NS_PER_MS INT64_C(1000000)
#define MAX_NS (INT64_C(400) * 24 * 3600 * 1000000000) /* longer hints saturate here */

static int64_t gcd64(int64_t a, int64_t b) {
  while (b != 0) {
    int64_t r = a % b;
    a = b;
    b = r;
  }
  return a;
}

/* Nanoseconds per unit for a unit word ("s", "ms", "minutes", …), 0 if none. */
static int64_t unit_ns(const char *w, size_t n) {
  static const struct {
    const char *word;
    int64_t ns;
  } units[] = {
      {"h", INT64_C(3600000000000)},
      {"hr", INT64_C(3600000000000)},
      {"hrs", INT64_C(3600000000000)},
      {"hour", INT64_C(3600000000000)},
      {"hours", INT64_C(3600000000000)},
      {"m", INT64_C(60000000000)},
      {"min", INT64_C(60000000000)},
      {"mins", INT64_C(60000000000)},
      {"minute", INT64_C(60000000000)},
      {"minutes", INT64_C(60000000000)},
      {"s", INT64_C(1000000000)},
      {"sec", INT64_C(1000000000)},
      {"secs", INT64_C(1000000000)},
      {"second", INT64_C(1000000000)},
      {"seconds", INT64_C(1000000000)},
      {"ms", INT64_C(1000000)},
      {"msec", INT64_C(1000000)},
      {"millisecond", INT64_C(1000000)},
      {"milliseconds", INT64_C(1000000)},
      {"us", INT64_C(1000)},
      {"\xc2\xb5s", INT64_C(1000)},
      {"microsecond", INT64_C(1000)},
      {"microseconds", INT64_C(1000)},
      {"ns", 1},
      {"nanosecond", 1},
      {"nanoseconds", 1},
  };
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
    size_t m = strlen(units[i].word);
    if (m != n) {
      continue;
    }
    size_t k = 0;
    while (k < n && lower((unsigned char)w[k]) == units[i].word[k]) {
      k++;
    }
    if (k == n) {
      return units[i].ns;
    }
  }
  return 0;
}

/* Parses one "<number>[.<fraction>] <unit>" term at t.p[*pos] and adds it to
 * *ns (saturating at MAX_NS).  Returns 1 and advances *pos, or 0. */
static int parse_duration_term(span t, size_t *pos, int64_t *ns) {
  size_t i = *pos;
  int64_t whole = 0, frac = 0, frac_div = 1;
  int frac_tail = 0; /* non-zero digits beyond nanosecond precision */
  if (i >= t.n || !is_digit((unsigned char)t.p[i])) {
    return 0;
  }
  while (i < t.n && is_digit((unsigned char)t.p[i])) {
    whole = whole < MAX_NS ? whole * 10 + (t.p[i] - '0') : MAX_NS;
    i++;
  }
  if (i + 1 < t.n && t.p[i] == '.' && is_digit((unsigned char)t.p[i + 1])) {
    i++;
    while (i < t.n && is_digit((unsigned char)t.p[i])) {
      if (frac_div < INT64_C(1000000000)) {
        frac = frac * 10 + (t.p[i] - '0');
        frac_div *= 10;
      } else if (t.p[i] != '0') {
        frac_tail = 1;
      }
      i++;
    }
  }
  while (i < t.n && t.p[i] == ' ') {
    i++;
  }
  size_t w = i;
  while (i < t.n && (is_alpha((unsigned char)t.p[i]) || (unsigned char)t.p[i] == 0xc2 ||
                     (unsigned char)t.p[i] == 0xb5)) {
    i++;
  }
  int64_t unit = unit_ns(t.p + w, i - w);
  if (unit == 0) {
    return 0;
  }
  /* whole * unit + ceil(frac * unit / frac_div), without overflow. */
  int64_t total = whole > MAX_NS / unit ? MAX_NS : whole * unit;
  int64_t g = gcd64(unit, frac_div);
  int64_t num = frac * (unit / g), den = frac_div / g;
  int64_t part = num / den + (num % den != 0 || frac_tail ? 1 : 0);
  total = total > MAX_NS - part ? MAX_NS : total + part;
  *ns = *ns > MAX_NS - total ? MAX_NS : *ns + total;
  *pos = i;
  return 1;
}

/* Parses a duration at t.p[pos]: Go style ("10.689924287s", "250ms",
 * "1m4.5s"), protobuf style ("22s", "0.100s") or words ("3 seconds").
 * Returns it in ms rounded up, or -1. */
static int64_t parse_duration_ms(span t, size_t pos) {
  int64_t ns = 0;
  if (!parse_duration_term(t, &pos, &ns)) {
    return -1;
  }
  while (parse_duration_term(t, &pos, &ns)) {
  }
  return ns / NS_PER_MS + (ns % NS_PER_MS != 0 ? 1 : 0);
}

/* The message's precise retry hint ("Please retry in 10.689924287s.",
 * "retry after 3s") in ms rounded up, or -1. */
static int64_t text_retry_ms(span t) {
  static const char *const phrases[] = {"retry in", "retry after"};
  for (size_t k = 0; k < sizeof phrases / sizeof phrases[0]; k++) {
    size_t at = 0;
    while ((at = ci_find(t, at, phrases[k])) != SIZE_MAX) {
      size_t i = at + strlen(phrases[k]);
      while (i < t.n && (t.p[i] == ' ' || t.p[i] == ':')) {
        i++;
      }
      int64_t ms = parse_duration_ms(t, i);
      if (ms >= 0) {
        return ms;
      }
      at++;
    }
  }
  return -1;
}

/* ---- Words of the rules -------------------------------------------------- */

static const char *const billing_words[] = {"prepayment credits are depleted",
                                            "credits are depleted", "enable billing",
                                            "billing account", NULL};

static const char *const invalid_key_words[] = {"api key not valid", "api key expired",
                                                "api key not found", "api key is invalid",
                                                "invalid api key",   NULL};

static const char *const no_free_tier_words[] = {"doesn't have a free quota tier",
                                                 "does not have a free quota tier",
                                                 "free tier is not available", NULL};

/* A free tier refused because of where the user is: the same for every key. */
static const char *const location_words[] = {"location is not supported",
                                             "not available in your country",
                                             "not supported in your country", NULL};

static const char *const per_day_words[] = {"perday", "per_day", "per day", "daily", NULL};
static const char *const per_minute_words[] = {"perminute", "per_minute", "per minute", NULL};

/* Whether t says `limit: 0` with 0 as a whole number ("limit: 0," or
 * "limit: 0 " or at the end; not "limit: 05" or "limit: 0.5"). */
static int has_limit_zero(span t) {
  size_t at = 0;
  while ((at = ci_find(t, at, "limit:")) != SIZE_MAX) {
    size_t i = at + strlen("limit:");
    while (i < t.n && (t.p[i] == ' ' || t.p[i] == '\t')) {
      i++;
    }
    if (i < t.n && t.p[i] == '0') {
      size_t k = i + 1;
      if (k == t.n) {
        return 1;
      }
      int c = (unsigned char)t.p[k];
      int decimal = c == '.' && k + 1 < t.n && is_digit((unsigned char)t.p[k + 1]);
      if (!is_digit(c) && !is_alpha(c) && c != '_' && !decimal) {
        return 1;
      }
    }
    at++;
  }
  return 0;
}

/* The whole number after the first "limit:" in t, or -1. */
static int64_t text_limit(span t) {
  size_t at = ci_find(t, 0, "limit:");
  if (at == SIZE_MAX) {
    return -1;
  }
  size_t i = at + strlen("limit:");
  while (i < t.n && t.p[i] == ' ') {
    i++;
  }
  int64_t v = 0;
  size_t start = i;
  while (i < t.n && is_digit((unsigned char)t.p[i]) && v < INT64_MAX / 10 - 10) {
    v = v * 10 + (t.p[i] - '0');
    i++;
  }
  if (i == start || (i < t.n && (is_digit((unsigned char)t.p[i]) || t.p[i] == '.'))) {
    return -1;
  }
  return v;
}

/* How severe a quota kind is: no_free_tier > rpd > tpm > rpm > none. */
static int severity(int kind) {
  switch (kind) {
  case GKP_KIND_NO_FREE_TIER:
    return 4;
  case GKP_KIND_RPD:
    return 3;
  case GKP_KIND_TPM:
    return 2;
  case GKP_KIND_RPM:
    return 1;
  default:
    return 0;
  }
}

/* The kind a quota violation names: RPD if its quotaId (or, failing that, its
 * quotaMetric) says per day / daily; TPM or RPM if it says per minute,
 * depending on whether it counts tokens; none otherwise. */
static int violation_kind(const struct violation *v) {
  span id = span_of(v->id), metric = span_of(v->metric);
  int tokens = ci_has(id, "token") || ci_has(metric, "token");
  int day = ci_has_any(id, per_day_words);
  int minute = ci_has_any(id, per_minute_words);
  if (!day && !minute) {
    day = ci_has_any(metric, per_day_words);
    minute = ci_has_any(metric, per_minute_words);
  }
  if (day) {
    return GKP_KIND_RPD;
  }
  if (minute) {
    return tokens ? GKP_KIND_TPM : GKP_KIND_RPM;
  }
  return GKP_KIND_NONE;
}

/* The most severe kind named by the message's "Quota exceeded for metric: …"
 * lines (per day / per minute words, input tokens), with that line's limit in
 * *limit (-1 if none). */
static int text_quota_kind(span t, int64_t *limit) {
  static const char lead[] = "quota exceeded for";
  int best = GKP_KIND_NONE;
  *limit = -1;
  size_t at = ci_find(t, 0, lead);
  while (at != SIZE_MAX) {
    size_t next = ci_find(t, at + 1, lead);
    size_t end = next != SIZE_MAX ? next : t.n;
    for (size_t i = at; i < end; i++) {
      if (t.p[i] == '\n') {
        end = i;
        break;
      }
    }
    span line = {t.p + at, end - at};
    int kind = GKP_KIND_NONE;
    if (ci_has_any(line, per_day_words)) {
      kind = GKP_KIND_RPD;
    } else if (ci_has(line, "token")) {
      kind = GKP_KIND_TPM;
    } else if (ci_has_any(line, per_minute_words)) {
      kind = GKP_KIND_RPM;
    }
    if (severity(kind) > severity(best)) {
      best = kind;
      *limit = text_limit(line);
    }
    at = next;
  }
  return best;
}

/* ---- Finding the envelope ------------------------------------------------ */

/*
 * Returns a malloc'd NUL-terminated copy of the JSON value at the start of
 * [s, s+n), cut after its last complete member and closed, so that a body
 * truncated in transit still parses.  A string cut inside the value of a
 * "message" member is kept up to the cut (the words are evidence); any other
 * unfinished string, number or literal is dropped, so that a cut "250000"
 * never reads as 2500.  NULL if nothing complete is left.
 */
static char *repair_json(const char *s, size_t n) {
  enum { EXP_VALUE, EXP_KEY, EXP_COLON, EXP_COMMA } exp = EXP_VALUE;
  char stack[MAX_DEPTH];
  int depth = 0, safe_depth = -1;
  size_t safe_pos = 0, key_start = 0, key_len = 0, cut = 0, i = 0;
  int keep_string = 0;

  while (i < n) {
    unsigned char c = (unsigned char)s[i];
    int value_done = 0;
    if (is_space(c)) {
      i++;
      continue;
    }
    if (c == '"') {
      if (exp != EXP_KEY && exp != EXP_VALUE) {
        break;
      }
      size_t j = i + 1, esc = SIZE_MAX;
      int closed = 0;
      while (j < n) {
        if (s[j] == '\\') {
          size_t need = j + 1 < n && s[j + 1] == 'u' ? 6 : 2;
          if (j + need > n) {
            esc = j;
            break;
          }
          j += need;
        } else if (s[j] == '"') {
          closed = 1;
          break;
        } else {
          j++;
        }
      }
      if (!closed) {
        keep_string = exp == EXP_VALUE && depth > 0 && stack[depth - 1] == '{' && key_len == 7 &&
                      memcmp(s + key_start, "message", 7) == 0;
        cut = esc != SIZE_MAX ? esc : n;
        break;
      }
      if (exp == EXP_KEY) {
        key_start = i + 1;
        key_len = j - (i + 1);
        exp = EXP_COLON;
      } else {
        value_done = 1;
      }
      i = j + 1;
    } else if (c == ':') {
      if (exp != EXP_COLON) {
        break;
      }
      exp = EXP_VALUE;
      i++;
    } else if (c == ',') {
      if (exp != EXP_COMMA) {
        break;
      }
      exp = stack[depth - 1] == '{' ? EXP_KEY : EXP_VALUE;
      i++;
    } else if (c == '{' || c == '[') {
      if (exp != EXP_VALUE || depth == MAX_DEPTH) {
        break;
      }
      stack[depth++] = (char)c;
      exp = c == '{' ? EXP_KEY : EXP_VALUE;
      i++;
      safe_pos = i;
      safe_depth = depth;
    } else if (c == '}' || c == ']') {
      char open = c == '}' ? '{' : '[';
      int may_close = exp == EXP_COMMA || (c == '}' ? exp == EXP_KEY : exp == EXP_VALUE);
      if (depth == 0 || stack[depth - 1] != open || !may_close) {
        break;
      }
      depth--;
      i++;
      value_done = 1;
    } else {
      size_t j = i;
      if (exp != EXP_VALUE) {
        break;
      }
      while (j < n && (is_digit((unsigned char)s[j]) || is_alpha((unsigned char)s[j]) ||
                       s[j] == '-' || s[j] == '+' || s[j] == '.')) {
        j++;
      }
      if (j == i || j == n) {
        break; /* not JSON, or a number or literal cut at the end */
      }
      i = j;
      value_done = 1;
    }
    if (value_done) {
      safe_pos = i;
      safe_depth = depth;
      if (depth == 0) {
        break;
      }
      exp = EXP_COMMA;
    }
  }

  size_t len = keep_string ? cut : safe_pos;
  int close_depth = keep_string ? depth : safe_depth;
  if (close_depth < 0) {
    return NULL;
  }
  char *out = malloc(len + (size_t)close_depth + 2);
  if (out == NULL) {
    return NULL;
  }
  memcpy(out, s, len);
  if (keep_string) {
    out[len++] = '"';
  }
  for (int d = close_depth - 1; d >= 0; d--) {
    out[len++] = stack[d] == '{' ? '}' : ']';
  }
  out[len] = '\0';
  return out;
}

/* The "error" member of a parsed response: of an object, or of the first
 * object holding one in an array.  NULL if none. */
static const cJSON *error_member(const cJSON *root) {
  const cJSON *item;
  if (cJSON_IsObject(root)) {
    item = cJSON_GetObjectItemCaseSensitive(root, "error");
    return cJSON_IsObject(item) || cJSON_IsString(item) ? item : NULL;
  }
  if (cJSON_IsArray(root)) {
    cJSON_ArrayForEach(item, root) {
      const cJSON *err = cJSON_IsObject(item) ? error_member(item) : NULL;
      if (err != NULL) {
        return err;
      }
    }
  }
  return NULL;
}

/* Parses the JSON value at the start of [p, p+n), repairing it if it was
 * truncated.  Returns the tree (the caller deletes it) or NULL. */
static cJSON *parse_value(const char *p, size_t n) {
  cJSON *root = cJSON_ParseWithLengthOpts(p, n, NULL, 0);
  if (root == NULL) {
    char *fixed = repair_json(p, n);
    if (fixed != NULL) {
      root = cJSON_Parse(fixed);
      free(fixed);
    }
  }
  return root;
}

/* Finds the error envelope in a body of any framing.  Returns the parsed tree
 * (the caller deletes it) with *err pointing at its "error" member, or NULL. */
static cJSON *find_envelope(span body, const cJSON **err) {
  size_t i = 0;
  *err = NULL;
  if (body.n >= 3 && memcmp(body.p, "\xef\xbb\xbf", 3) == 0) {
    i = 3;
  }
  while (i < body.n && is_space((unsigned char)body.p[i])) {
    i++;
  }
  if (body.n - i >= 5 && memcmp(body.p + i, "data:", 5) == 0) {
    i += 5;
    while (i < body.n && is_space((unsigned char)body.p[i])) {
      i++;
    }
  }
  size_t first = i;
  if (i < body.n) {
    cJSON *root = parse_value(body.p + i, body.n - i);
    *err = error_member(root);
    if (*err != NULL) {
      return root;
    }
    cJSON_Delete(root);
  }
  /* Further in: an error event after other stream events, or after noise. */
  size_t at = 0;
  for (int tries = 0; tries < MAX_SEARCHES; at++) {
    at = find_bytes(body, at, "\"error\"", 7);
    if (at == SIZE_MAX) {
      break;
    }
    size_t b = at;
    while (b > 0 && is_space((unsigned char)body.p[b - 1])) {
      b--;
    }
    if (b == 0 || body.p[b - 1] != '{' || b - 1 == first) {
      continue;
    }
    tries++;
    cJSON *root = parse_value(body.p + b - 1, body.n - (b - 1));
    *err = error_member(root);
    if (*err != NULL) {
      return root;
    }
    cJSON_Delete(root);
  }
  return NULL;
}

/* ---- Gathering the evidence ---------------------------------------------- */

static const char *string_member(const cJSON *obj, const char *name) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);
  return cJSON_IsString(item) ? item->valuestring : NULL;
}

/* A quotaValue ("250000" or 250000) as a whole number, or -1. */
static int64_t quota_value(const cJSON *item) {
  if (cJSON_IsNumber(item)) {
    double d = item->valuedouble;
    return d >= 0 && d < 9e15 && d == (double)(int64_t)d ? (int64_t)d : -1;
  }
  if (!cJSON_IsString(item) || item->valuestring[0] == '\0') {
    return -1;
  }
  int64_t v = 0;
  for (const char *s = item->valuestring; *s != '\0'; s++) {
    if (!is_digit((unsigned char)*s) || v > INT64_MAX / 10 - 10) {
      return -1;
    }
    v = v * 10 + (*s - '0');
  }
  return v;
}

static void add_violations(struct evidence *ev, const cJSON *violations) {
  const cJSON *item;
  cJSON_ArrayForEach(item, violations) {
    if (ev->nv == MAX_VIOLATIONS) {
      return;
    }
    if (!cJSON_IsObject(item)) {
      continue;
    }
    struct violation *v = &ev->v[ev->nv++];
    gkp__strlcpy(v->id, string_member(item, "quotaId"), sizeof v->id);
    gkp__strlcpy(v->metric, string_member(item, "quotaMetric"), sizeof v->metric);
    v->value = quota_value(cJSON_GetObjectItemCaseSensitive(item, "quotaValue"));
  }
}

/* Reads one entry of error.details, recognised by its fields. */
static void add_detail(struct evidence *ev, const cJSON *detail) {
  const cJSON *violations = cJSON_GetObjectItemCaseSensitive(detail, "violations");
  const char *delay = string_member(detail, "retryDelay");
  const char *reason = string_member(detail, "reason");
  if (cJSON_IsArray(violations)) {
    add_violations(ev, violations);
  }
  if (delay != NULL && ev->retry_delay_ms < 0) {
    ev->retry_delay_ms = parse_duration_ms(span_of(delay), 0);
  }
  if (reason != NULL && (ev->reason[0] == '\0' || (strncmp(reason, "API_KEY", 7) == 0 &&
                                                   strncmp(ev->reason, "API_KEY", 7) != 0))) {
    gkp__strlcpy(ev->reason, reason, sizeof ev->reason);
  }
}

static void gather(struct evidence *ev, const cJSON *err) {
  ev->found = 1;
  if (cJSON_IsString(err)) {
    ev->message = err->valuestring;
    return;
  }
  const cJSON *code = cJSON_GetObjectItemCaseSensitive(err, "code");
  if (cJSON_IsNumber(code) && code->valuedouble >= 100 && code->valuedouble < 600) {
    ev->code = (int)code->valuedouble;
  }
  gkp__strlcpy(ev->rpc, string_member(err, "status"), sizeof ev->rpc);
  ev->message = string_member(err, "message");
  const cJSON *details = cJSON_GetObjectItemCaseSensitive(err, "details");
  const cJSON *detail;
  cJSON_ArrayForEach(detail, details) {
    if (cJSON_IsObject(detail)) {
      add_detail(ev, detail);
    }
  }
}

/* The HTTP status that goes with an RPC status name, 0 if unknown. */
static int status_of_rpc(const char *rpc) {
  static const struct {
    const char *name;
    int status;
  } map[] = {
      {"INVALID_ARGUMENT", 400},
      {"FAILED_PRECONDITION", 400},
      {"OUT_OF_RANGE", 400},
      {"UNAUTHENTICATED", 401},
      {"PERMISSION_DENIED", 403},
      {"NOT_FOUND", 404},
      {"ABORTED", 409},
      {"ALREADY_EXISTS", 409},
      {"RESOURCE_EXHAUSTED", 429},
      {"CANCELLED", 499},
      {"UNKNOWN", 500},
      {"INTERNAL", 500},
      {"DATA_LOSS", 500},
      {"UNIMPLEMENTED", 501},
      {"UNAVAILABLE", 503},
      {"DEADLINE_EXCEEDED", 504},
  };
  for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
    if (strcmp(rpc, map[i].name) == 0) {
      return map[i].status;
    }
  }
  return 0;
}

/* ---- The verdict's message ----------------------------------------------- */

/* Length of the valid UTF-8 sequence at s[0..n), or 0 if it is not valid. */
static size_t utf8_len(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  size_t len;
  unsigned char lo = 0x80, hi = 0xbf;
  if (c < 0x80) {
    return 1;
  } else if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    lo = c == 0xe0 ? 0xa0 : 0x80;
    hi = c == 0xed ? 0x9f : 0xbf;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    lo = c == 0xf0 ? 0x90 : 0x80;
    hi = c == 0xf4 ? 0x8f : 0xbf;
  } else {
    return 0;
  }
  if (len > n || s[1] < lo || s[1] > hi) {
    return 0;
  }
  for (size_t k = 2; k < len; k++) {
    if (s[k] < 0x80 || s[k] > 0xbf) {
      return 0;
    }
  }
  return len;
}

static int is_key_char(int c) {
  return is_digit(c) || is_alpha(c) || c == '_' || c == '-';
}

/* A bounded output buffer for the verdict's message. */
struct msgbuf {
  char s[GKP_REASON_MAX];
  size_t n;
  int full;
};

static void put(struct msgbuf *b, const char *s, size_t n) {
  if (b->full || b->n + n > GKP_REASON_MAX - 1) {
    b->full = 1;
    return;
  }
  memcpy(b->s + b->n, s, n);
  b->n += n;
}

/* Appends text to b: whitespace and control characters collapsed to single
 * spaces, invalid UTF-8 shown as '?', and anything that looks like an API key
 * ("AIza" + 35 key characters, or a run of them cut by the end of the text)
 * shown as "AIza…" and its last 4 characters. */
static void put_text(struct msgbuf *b, span t) {
  const unsigned char *s = (const unsigned char *)t.p;
  size_t i = 0;
  int space = b->n > 0 && b->s[b->n - 1] != ' ';
  int pending = 0;
  while (i < t.n && !b->full) {
    if (s[i] < 0x20 || s[i] == 0x7f || s[i] == ' ') {
      pending = space;
      i++;
      continue;
    }
    if (pending) {
      put(b, " ", 1);
      pending = 0;
    }
    space = 1;
    if (t.n - i >= 4 && memcmp(s + i, "AIza", 4) == 0) {
      size_t run = 0;
      while (i + 4 + run < t.n && is_key_char(s[i + 4 + run])) {
        run++;
      }
      if (run >= 35) {
        put(b, "AIza\xe2\x80\xa6", 7);
        put(b, t.p + i + 4 + run - 4, 4);
        i += 4 + run;
        continue;
      }
      if (run > 0 && i + 4 + run == t.n) {
        put(b, "AIza\xe2\x80\xa6", 7);
        i = t.n;
        continue;
      }
    }
    size_t len = utf8_len(s + i, t.n - i);
    if (len == 0) {
      put(b, "?", 1);
      i++;
    } else {
      put(b, t.p + i, len);
      i += len;
    }
  }
  if (i < t.n) {
    b->full = 1;
  }
}

/* Copies b into dst, ending in "…" at a UTF-8 boundary if it was cut. */
static void finish_message(struct msgbuf *b, char *dst) {
  static const char ellipsis[] = "\xe2\x80\xa6";
  size_t n = b->n;
  if (b->full) {
    if (n > GKP_REASON_MAX - 1 - (sizeof ellipsis - 1)) {
      n = GKP_REASON_MAX - 1 - (sizeof ellipsis - 1);
      while (n > 0 && ((unsigned char)b->s[n] & 0xc0) == 0x80) {
        n--; /* b->s[n] is the first byte cut off: back up to a character start */
      }
    }
    while (n > 0 && b->s[n - 1] == ' ') {
      n--;
    }
    memcpy(b->s + n, ellipsis, sizeof ellipsis - 1);
    n += sizeof ellipsis - 1;
  }
  while (n > 0 && b->s[n - 1] == ' ') {
    n--;
  }
  memcpy(dst, b->s, n);
  dst[n] = '\0';
}

/* Whether a body that is not an error envelope reads as a line of text
 * (a proxy's "Bad Gateway", a client's "Connection reset"), not HTML, JSON or
 * binary. */
static int is_plain_text(span t) {
  size_t i = 0;
  while (i < t.n && is_space((unsigned char)t.p[i])) {
    i++;
  }
  if (i == t.n || t.p[i] == '<' || t.p[i] == '{' || t.p[i] == '[' || t.n > 4096) {
    return 0;
  }
  for (; i < t.n; i++) {
    unsigned char c = (unsigned char)t.p[i];
    if ((c < 0x20 && !is_space(c)) || c == 0x7f) {
      return 0;
    }
  }
  return 1;
}

/* Fills out->message: Google's message, else a description of what came. */
static void describe(gkp_verdict *out, int transport, const struct evidence *ev, span body) {
  struct msgbuf b = {.n = 0, .full = 0};
  char head[64];
  if (ev->message != NULL && ev->message[0] != '\0') {
    put_text(&b, span_of(ev->message));
  } else if (transport) {
    put(&b, "connection failed", strlen("connection failed"));
    if (!ev->found && is_plain_text(body)) {
      put(&b, ": ", 2);
      put_text(&b, body);
    }
  } else if (ev->found && ev->rpc[0] != '\0') {
    snprintf(head, sizeof head, "HTTP %d ", out->http_status);
    put(&b, head, strlen(head));
    put_text(&b, span_of(ev->rpc));
  } else if (!ev->found && is_plain_text(body)) {
    snprintf(head, sizeof head, "HTTP %d: ", out->http_status);
    put(&b, head, strlen(head));
    put_text(&b, body);
  } else {
    snprintf(head, sizeof head, "HTTP %d with %s body", out->http_status,
             body.n == 0 ? "an empty" : "an unreadable");
    put(&b, head, strlen(head));
  }
  finish_message(&b, out->message);
}

/* ---- The rules ----------------------------------------------------------- */

static void set_kind(gkp_verdict *out, int kind, int action) {
  out->kind = kind;
  out->action = action;
  out->key_wide = kind == GKP_KIND_BILLING || kind == GKP_KIND_INVALID_KEY;
}

/* The rules for a 429 / RESOURCE_EXHAUSTED: no_free_tier, then the most
 * severe violation, then the message's metric lines, then the retry hint. */
static void decide_quota(gkp_verdict *out, const struct evidence *ev, span text) {
  int zero_value = -1;
  for (int i = 0; i < ev->nv; i++) {
    if (ev->v[i].value == 0) {
      zero_value = i;
      break;
    }
  }
  if (zero_value >= 0 || has_limit_zero(text) || ci_has_any(text, no_free_tier_words)) {
    set_kind(out, GKP_KIND_NO_FREE_TIER, GKP_ACT_FALLBACK);
    if (zero_value >= 0 && violation_kind(&ev->v[zero_value]) != GKP_KIND_NONE) {
      out->learned_limit = 0;
      out->learned_metric = violation_kind(&ev->v[zero_value]);
    }
    return;
  }
  set_kind(out, GKP_KIND_UNKNOWN_429, GKP_ACT_RETRY);
  int best = -1;
  for (int i = 0; i < ev->nv; i++) {
    int kind = violation_kind(&ev->v[i]);
    if (severity(kind) > (best < 0 ? 0 : severity(violation_kind(&ev->v[best])))) {
      best = i;
    }
  }
  if (best >= 0) {
    out->kind = violation_kind(&ev->v[best]);
    out->learned_metric = out->kind;
    out->learned_limit = ev->v[best].value;
    return;
  }
  int64_t limit;
  int kind = ev->nv == 0 ? text_quota_kind(text, &limit) : GKP_KIND_NONE;
  if (kind != GKP_KIND_NONE) {
    out->kind = kind;
    out->learned_metric = kind;
    out->learned_limit = limit;
    return;
  }
  if (out->retry_ms >= 0) {
    out->kind = out->retry_ms > DAILY_HINT_MS ? GKP_KIND_RPD : GKP_KIND_RPM;
  }
}

static int rpc_is(const struct evidence *ev, const char *name) {
  return strcmp(ev->rpc, name) == 0;
}

/* Whether the body carries Google's error envelope: an "error" object with a
 * code or a status.  Key-wide penalties need it (or structured details). */
static int google_envelope(const struct evidence *ev) {
  return ev->found && (ev->code != 0 || ev->rpc[0] != '\0');
}

/* Whether the envelope has structured details (QuotaFailure, RetryInfo,
 * ErrorInfo): then message words never decide the kind. */
static int structured(const struct evidence *ev) {
  return ev->nv > 0 || ev->retry_delay_ms >= 0 || ev->reason[0] != '\0';
}

/* Applies the rules, structured evidence first, strictly:
 *   transport failure (status 0), then 5xx / 408 / 409 / 499  -> server
 *   401 / 402 / 403 without Google's envelope (a proxy's page) -> server
 *   a location refusal (400 / FAILED_PRECONDITION)             -> bad_request
 *   ErrorInfo reason API_KEY…                                  -> invalid_key
 *   ErrorInfo reason BILLING…, or HTTP 402                     -> billing
 *   quota violations or RetryInfo in a 429 / RESOURCE_EXHAUSTED -> decide_quota
 *   Google's envelope without structured details: billing words -> billing
 *                                    "API key not valid" …      -> invalid_key
 *   429 / RESOURCE_EXHAUSTED / quota violations                -> decide_quota
 *   401 / 403 / UNAUTHENTICATED / PERMISSION_DENIED            -> invalid_key
 *   404 / NOT_FOUND                                            -> model_not_found
 *   other 4xx                                                  -> bad_request
 *   anything else (no readable error)                          -> server */
static void decide(gkp_verdict *out, const struct evidence *ev, span text) {
  int st = out->http_status;
  int quota = st == 429 || rpc_is(ev, "RESOURCE_EXHAUSTED") || ev->nv > 0;
  /* Words may penalise a whole key only from Google's own envelope. */
  int words_decide = !structured(ev) && google_envelope(ev);
  if (st <= 0 || st < 400 || st >= 500 || st == 408 || st == 409 || st == 499) {
    set_kind(out, GKP_KIND_SERVER, GKP_ACT_RETRY);
  } else if ((st == 401 || st == 402 || st == 403) && !google_envelope(ev)) {
    /* Not Google at all: a proxy's or captive portal's page, an empty body.
     * Nothing says the key is at fault, so no key is disabled or billed. */
    set_kind(out, GKP_KIND_SERVER, GKP_ACT_RETRY);
  } else if ((st == 400 || rpc_is(ev, "FAILED_PRECONDITION")) && ci_has_any(text, location_words)) {
    set_kind(out, GKP_KIND_BAD_REQUEST, GKP_ACT_FAIL);
  } else if (strncmp(ev->reason, "API_KEY", 7) == 0) {
    set_kind(out, GKP_KIND_INVALID_KEY, GKP_ACT_RETRY);
  } else if (st == 402 || strncmp(ev->reason, "BILLING", 7) == 0) {
    set_kind(out, GKP_KIND_BILLING, GKP_ACT_RETRY);
  } else if (quota && structured(ev)) {
    decide_quota(out, ev, text);
  } else if (words_decide && ci_has_any(text, billing_words)) {
    set_kind(out, GKP_KIND_BILLING, GKP_ACT_RETRY);
  } else if (words_decide && ci_has_any(text, invalid_key_words)) {
    set_kind(out, GKP_KIND_INVALID_KEY, GKP_ACT_RETRY);
  } else if (quota) {
    decide_quota(out, ev, text);
  } else if (st == 401 || st == 403 || rpc_is(ev, "UNAUTHENTICATED") ||
             rpc_is(ev, "PERMISSION_DENIED")) {
    set_kind(out, GKP_KIND_INVALID_KEY, GKP_ACT_RETRY);
  } else if (st == 404 || rpc_is(ev, "NOT_FOUND")) {
    set_kind(out, GKP_KIND_MODEL_NOT_FOUND, GKP_ACT_FALLBACK);
  } else {
    set_kind(out, GKP_KIND_BAD_REQUEST, GKP_ACT_FAIL);
  }
}

void gkp_classify(int http_status, const char *body, size_t len, gkp_verdict *out) {
  struct evidence ev;
  span raw = {body != NULL ? body : "", body != NULL ? len : 0};
  const cJSON *err = NULL;
  cJSON *root = NULL;
  int transport = http_status <= 0;

  memset(&ev, 0, sizeof ev);
  ev.retry_delay_ms = -1;
  memset(out, 0, sizeof *out);
  out->kind = GKP_KIND_SERVER;
  out->action = GKP_ACT_RETRY;
  out->http_status = transport ? 0 : http_status;
  out->retry_ms = -1;
  out->learned_limit = -1;
  out->learned_metric = GKP_KIND_NONE;

  if (raw.n > 0) {
    root = find_envelope(raw, &err);
  }
  if (err != NULL) {
    gather(&ev, err);
  }
  /* An error inside a 2xx stream carries its real status in the envelope. */
  if (!transport && http_status < 300 && http_status >= 200) {
    if (ev.code != 0) {
      out->http_status = ev.code;
    } else if (status_of_rpc(ev.rpc) != 0) {
      out->http_status = status_of_rpc(ev.rpc);
    }
  }
  /* The words: Google's message, or whatever bytes came when none was found. */
  span text = ev.message != NULL ? span_of(ev.message) : raw;
  out->retry_ms = text_retry_ms(text);
  if (out->retry_ms < 0) {
    out->retry_ms = ev.retry_delay_ms;
  }
  if (!transport) {
    decide(out, &ev, text);
  }
  describe(out, transport, &ev, raw);
  cJSON_Delete(root);
}

const char *gkp_kind_name(int kind) {
  static const char *const names[GKP_KIND_COUNT] = {
      [GKP_KIND_NONE] = "none",
      [GKP_KIND_RPM] = "rpm",
      [GKP_KIND_TPM] = "tpm",
      [GKP_KIND_RPD] = "rpd",
      [GKP_KIND_NO_FREE_TIER] = "no_free_tier",
      [GKP_KIND_BILLING] = "billing",
      [GKP_KIND_UNKNOWN_429] = "unknown_429",
      [GKP_KIND_INVALID_KEY] = "invalid_key",
      [GKP_KIND_MODEL_NOT_FOUND] = "model_not_found",
      [GKP_KIND_BAD_REQUEST] = "bad_request",
      [GKP_KIND_SERVER] = "server",
      [GKP_KIND_UNREACHABLE] = "unreachable",
  };
  if (kind < 0 || kind >= GKP_KIND_COUNT) {
    return "unknown";
  }
  return names[kind];
}
