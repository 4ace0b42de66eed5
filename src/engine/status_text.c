/*
 * status_text.c - the status document rendered as a table for people.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/dynbuf.h"
#include "common/timeutil.h"
#include "engine/status.h"

static double num(const cJSON *o, const char *field, double dflt) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, field);
  return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static const char *str(const cJSON *o, const char *field) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, field);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Whether `metric` ("rpd") of a model entry is a limit learned from a 429. */
static int learned(const cJSON *m, const char *metric) {
  const cJSON *l = cJSON_GetObjectItemCaseSensitive(m, "learned");
  return cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(l, metric));
}

/* "7/20", "7/250*" when the limit was learned, or "7" when it is unknown. */
static void used_of(char *buf, size_t len, double used, const cJSON *m, const char *limit,
                    const char *metric) {
  double lim = num(m, limit, -1);
  if (lim >= 0) {
    snprintf(buf, len, "%.0f/%.0f%s", used, lim, learned(m, metric) ? "*" : "");
  } else {
    snprintf(buf, len, "%.0f", used);
  }
}

/* One line per learned limit of a row: what, how much, until when. */
static void learned_lines(gkp__dynbuf *b, const cJSON *key, const char *model, const cJSON *m) {
  const cJSON *l;
  cJSON_ArrayForEach(l, cJSON_GetObjectItemCaseSensitive(m, "learned")) {
    const char *until = str(l, "until");
    gkp__dynbuf_printf(b,
                       "  * %s %s: %s limit %.0f learned from Google's 429 at %s, until %s "
                       "(midnight Pacific; gemini-pool reset %s forgets it)\n",
                       str(key, "id"), model, l->string, num(l, "value", -1),
                       str(l, "at") ? str(l, "at") : "?", until ? until : "?", str(key, "id"));
  }
}

/* "2h05m", "4m12s", "9s". */
static void span(char *buf, size_t len, int64_t ms) {
  int64_t s = ms > 0 ? (ms + 999) / 1000 : 0;
  if (s >= 3600) {
    snprintf(buf, len, "%lldh%02lldm", (long long)(s / 3600), (long long)(s % 3600 / 60));
  } else if (s >= 60) {
    snprintf(buf, len, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
  } else {
    snprintf(buf, len, "%llds", (long long)s);
  }
}

static int active(const cJSON *m) {
  return num(m, "requests_total", 0) > 0 || num(m, "cooldown_until", 0) > 0 ||
         str(m, "last_error") != NULL ||
         cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(m, "learned")) > 0;
}

/* "endpoint http://… unreachable since 09:00:00 UTC (4m12s): connection
 * refused", when the last contact failed before anything was sent. */
static void endpoint_line(gkp__dynbuf *b, const cJSON *doc, int64_t now) {
  const cJSON *e = cJSON_GetObjectItemCaseSensitive(doc, "endpoint");
  const char *since = str(e, "since");
  struct tm tm;
  if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "unreachable")) || since == NULL) {
    return;
  }
  memset(&tm, 0, sizeof tm);
  char ago[24] = "?";
  if (strptime(since, "%Y-%m-%dT%H:%M:%SZ", &tm) != NULL) {
    span(ago, sizeof ago, now - (int64_t)timegm(&tm) * 1000);
  }
  gkp__dynbuf_printf(b, "endpoint %s unreachable since %s (%s ago): %s\n", str(e, "url"), since,
                     ago, str(e, "error") ? str(e, "error") : "no answer");
}

static void row(gkp__dynbuf *b, const cJSON *key, const char *model, const cJSON *m, int64_t now) {
  char today[32] = "-", minute[32] = "-", tokens[48] = "-", cool[96] = "-", left[24];
  const char *err = m != NULL ? str(m, "last_error") : NULL;
  if (m != NULL) {
    used_of(today, sizeof today, num(m, "requests_today", 0), m, "rpd_limit", "rpd");
    used_of(minute, sizeof minute, num(m, "requests_last_minute", 0), m, "rpm_limit", "rpm");
    used_of(tokens, sizeof tokens, num(m, "input_tokens_last_minute", 0), m, "tpm_limit", "tpm");
    double until = num(m, "cooldown_until", 0);
    if (until > 0) {
      char hms[24];
      span(left, sizeof left, (int64_t)until * 1000 - now);
      snprintf(cool, sizeof cool, "%s until %s (%s)", str(m, "cooldown_kind"),
               gkp__hms_utc((int64_t)until * 1000, hms, sizeof hms), left);
    }
  }
  gkp__dynbuf_printf(b, "%-16s %-12s %-9s %-30s %-11s %-7s %-15s %-34s %.60s\n", str(key, "id"),
                     str(key, "project"), str(key, "state"), model, today, minute, tokens, cool,
                     err != NULL ? err : "-");
  if (m != NULL) {
    learned_lines(b, key, model, m);
  }
}

/* Makes a string fit for a terminal: control characters (C0, DEL, and C1
 * as UTF-8) become '?'.  Same length. */
static void defang_text(char *s) {
  for (unsigned char *p = (unsigned char *)s; p != NULL && *p != '\0'; p++) {
    if (*p < 0x20 || *p == 0x7f) {
      *p = '?';
    } else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
      p[0] = p[1] = '?';
      p++;
    }
  }
}

/* Every string and member name of the document: what the state holds came
 * from upstream or from a state server and reaches a terminal. */
static void defang(cJSON *o) {
  for (; o != NULL; o = o->next) {
    defang_text(o->string);
    if (cJSON_IsString(o)) {
      defang_text(o->valuestring);
    }
    defang(o->child);
  }
}

char *gkp__status_table(const char *json, int64_t now_ms) {
  cJSON *doc = cJSON_Parse(json), *key;
  gkp__dynbuf b;
  if (doc == NULL) {
    return NULL;
  }
  defang(doc);
  gkp__dynbuf_init(&b, (size_t)16 << 20);
  gkp__dynbuf_printf(&b, "%-16s %-12s %-9s %-30s %-11s %-7s %-15s %-34s %s\n", "KEY", "PROJECT",
                     "STATE", "MODEL", "TODAY", "MINUTE", "TOKENS/MIN", "COOLDOWN", "LAST ERROR");
  cJSON_ArrayForEach(key, cJSON_GetObjectItemCaseSensitive(doc, "keys")) {
    const cJSON *m;
    int shown = 0;
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(key, "models")) {
      if (active(m)) {
        row(&b, key, m->string, m, now_ms);
        shown++;
      }
    }
    if (!shown) {
      row(&b, key, "-", NULL, now_ms);
    }
    if (str(key, "disabled_reason") != NULL) {
      gkp__dynbuf_printf(&b, "  %s is disabled: %s (gemini-pool reset %s re-enables it)\n",
                         str(key, "id"), str(key, "disabled_reason"), str(key, "id"));
    }
  }
  endpoint_line(&b, doc, now_ms);
  const char *reset = str(doc, "next_daily_reset");
  gkp__dynbuf_printf(&b, "next daily reset: %s (midnight Pacific)\n", reset ? reset : "?");
  gkp__dynbuf_printf(&b, "state: %s %s\n",
                     str(doc, "state_backend") ? str(doc, "state_backend") : "?",
                     str(doc, "state_file") ? str(doc, "state_file") : "?");
  cJSON_Delete(doc);
  return gkp__dynbuf_take(&b, NULL);
}
