/*
 * status_text.c - the status snapshot rendered as a table for people and as
 * Prometheus metrics.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/dynbuf.h"
#include "common/timeutil.h"
#include "engine/status.h"

/* Copies `s` for a terminal: control characters (C0, DEL, and C1 as UTF-8)
 * become '?', so what the state holds (it came from upstream or from a state
 * server) can neither move the cursor nor start a line of its own. */
static const char *tty(char *buf, size_t len, const char *s) {
  size_t o = 0;
  if (s == NULL) {
    return NULL;
  }
  for (const unsigned char *p = (const unsigned char *)s; *p != '\0' && o + 1 < len; p++) {
    if (*p < 0x20 || *p == 0x7f) {
      buf[o++] = '?';
    } else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
      buf[o++] = '?';
      p++;
    } else {
      buf[o++] = (char)*p;
    }
  }
  buf[o] = '\0';
  return buf;
}

/* "7/20", "7/250*" when the limit was learned, or "7" when it is unknown. */
static void used_of(char *buf, size_t len, int64_t used, int64_t lim, int learned) {
  if (lim >= 0) {
    snprintf(buf, len, "%lld/%lld%s", (long long)used, (long long)lim, learned ? "*" : "");
  } else {
    snprintf(buf, len, "%lld", (long long)used);
  }
}

/* One line per learned limit of a row: what, how much, until when. */
static void learned_lines(gkp__dynbuf *b, const gkp__status_key *key, const gkp__status_model *m) {
  static const char *const metric[3] = {"rpm", "tpm", "rpd"};
  for (int i = 0; i < 3; i++) {
    char at[40] = "?", until[40] = "?";
    const gkp__status_learned *l = &m->learned[i];
    if (!l->set) {
      continue;
    }
    if (l->at_ms > 0) {
      gkp__rfc3339(l->at_ms, at, sizeof at);
    }
    if (l->until_ms > 0) {
      gkp__rfc3339(l->until_ms, until, sizeof until);
    }
    char kid[256], mid[256];
    tty(kid, sizeof kid, key->id);
    gkp__dynbuf_printf(b,
                       "  * %s %s: %s limit %lld learned from Google's 429 at %s, until %s "
                       "(midnight Pacific; gemini-pool reset %s forgets it)\n",
                       kid, tty(mid, sizeof mid, m->id), metric[i], (long long)l->value, at, until,
                       kid);
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

/* "endpoint http://… unreachable since 09:00:00 UTC (4m12s): connection
 * refused", when the last contact failed before anything was sent. */
static void endpoint_line(gkp__dynbuf *b, const gkp__status_info *in, int64_t now) {
  char since[40], ago[24];
  if (!in->unreachable || in->down_since_ms <= 0) {
    return;
  }
  gkp__rfc3339(in->down_since_ms, since, sizeof since);
  /* whole seconds, as the document shows them */
  span(ago, sizeof ago, now - in->down_since_ms / 1000 * 1000);
  char url[1024], why[1024];
  gkp__dynbuf_printf(b, "endpoint %s unreachable since %s (%s ago): %s\n",
                     tty(url, sizeof url, in->endpoint_url), since, ago,
                     in->down_error != NULL ? tty(why, sizeof why, in->down_error) : "no answer");
}

static void row(gkp__dynbuf *b, const gkp__status_key *key, const gkp__status_model *m,
                int64_t now) {
  char today[32] = "-", minute[32] = "-", tokens[48] = "-", cool[96] = "-", left[24];
  const char *err = m != NULL ? m->last_error : NULL;
  if (m != NULL) {
    used_of(today, sizeof today, m->requests_today, m->rpd_limit, m->learned[2].set);
    used_of(minute, sizeof minute, m->requests_last_minute, m->rpm_limit, m->learned[0].set);
    used_of(tokens, sizeof tokens, m->input_tokens_last_minute, m->tpm_limit, m->learned[1].set);
    if (m->cooldown_until_s > 0) {
      char hms[24];
      span(left, sizeof left, m->cooldown_until_s * 1000 - now);
      snprintf(cool, sizeof cool, "%s until %s (%s)",
               m->cooldown_kind != GKP_KIND_NONE ? gkp_kind_name(m->cooldown_kind) : "(null)",
               gkp__hms_utc(m->cooldown_until_s * 1000, hms, sizeof hms), left);
    }
  }
  char kid[256], proj[256], mid[256], why[256];
  gkp__dynbuf_printf(b, "%-16s %-12s %-9s %-30s %-11s %-7s %-15s %-34s %.60s\n",
                     tty(kid, sizeof kid, key->id), tty(proj, sizeof proj, key->project),
                     key->state, m != NULL ? tty(mid, sizeof mid, m->id) : "-", today, minute,
                     tokens, cool, err != NULL ? tty(why, sizeof why, err) : "-");
  if (m != NULL) {
    learned_lines(b, key, m);
  }
}

char *gkp__status_table(const gkp__status *s, int64_t now_ms) {
  gkp__status_info in;
  gkp__dynbuf b;
  char reset[40];
  gkp__status_get_info(s, &in);
  gkp__dynbuf_init(&b, (size_t)16 << 20);
  gkp__dynbuf_printf(&b, "%-16s %-12s %-9s %-30s %-11s %-7s %-15s %-34s %s\n", "KEY", "PROJECT",
                     "STATE", "MODEL", "TODAY", "MINUTE", "TOKENS/MIN", "COOLDOWN", "LAST ERROR");
  for (size_t ki = 0; ki < in.nkeys; ki++) {
    gkp__status_key key;
    gkp__status_model m;
    int shown = 0;
    gkp__status_get_key(s, ki, &key);
    for (size_t mi = 0; mi < in.nmodels; mi++) {
      gkp__status_get_model(s, ki, mi, &m);
      if (gkp__status_model_active(&m)) {
        row(&b, &key, &m, now_ms);
        shown++;
      }
    }
    if (!shown) {
      row(&b, &key, NULL, now_ms);
    }
    if (key.disabled_reason != NULL) {
      char kid[256], why[1024];
      tty(kid, sizeof kid, key.id);
      gkp__dynbuf_printf(&b, "  %s is disabled: %s (gemini-pool reset %s re-enables it)\n", kid,
                         tty(why, sizeof why, key.disabled_reason), kid);
    }
  }
  endpoint_line(&b, &in, now_ms);
  gkp__dynbuf_printf(&b, "next daily reset: %s (midnight Pacific)\n",
                     in.next_daily_reset_ms > 0
                         ? gkp__rfc3339(in.next_daily_reset_ms, reset, sizeof reset)
                         : "?");
  char where[1024];
  gkp__dynbuf_printf(&b, "state: %s %s\n", in.state_backend,
                     tty(where, sizeof where, in.state_file));
  return gkp__dynbuf_take(&b, NULL);
}

/* ---- Prometheus ------------------------------------------------------------------ */

/* A Prometheus label value: backslash, quote and newline escaped. */
static void label(gkp__dynbuf *b, const char *s) {
  for (; *s != '\0'; s++) {
    if (*s == '\\' || *s == '"') {
      gkp__dynbuf_printf(b, "\\%c", *s);
    } else if (*s == '\n') {
      gkp__dynbuf_adds(b, "\\n");
    } else {
      gkp__dynbuf_add(b, s, 1);
    }
  }
}

static void help(gkp__dynbuf *b, const char *name, const char *type, const char *text) {
  gkp__dynbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, type);
}

/* One sample: name{key="k",model="m",kind="x"} value.  NULL labels are left out. */
static void sample(gkp__dynbuf *b, const char *name, const char *key, const char *model,
                   const char *kind, double v) {
  const char *names[3] = {"key", "model", "kind"}, *vals[3] = {key, model, kind};
  int any = 0;
  gkp__dynbuf_adds(b, name);
  for (int i = 0; i < 3; i++) {
    if (vals[i] == NULL) {
      continue;
    }
    gkp__dynbuf_printf(b, "%s%s=\"", any ? "," : "{", names[i]);
    label(b, vals[i]);
    gkp__dynbuf_adds(b, "\"");
    any = 1;
  }
  gkp__dynbuf_printf(b, "%s %.17g\n", any ? "}" : "", v);
}

/* A row of the metrics: something was sent, or it cools down or failed. */
static int metrics_active(const gkp__status_model *m) {
  return m->requests_total > 0 || m->cooldown_until_s > 0 || m->last_error != NULL;
}

static const char *kind_or_unknown(int kind) {
  return kind != GKP_KIND_NONE ? gkp_kind_name(kind) : "unknown";
}

void gkp__status_prometheus(const gkp__status *s, int64_t now_ms, gkp__dynbuf *b) {
  static const char *states[] = {"ready", "busy", "cooling", "disabled"};
  static const char *const per_model[][3] = {
      {"gemini_pool_requests_total", "counter", "Requests sent, by key and model."},
      {"gemini_pool_requests_today", "gauge", "Requests since the last midnight Pacific."},
      {"gemini_pool_requests_last_minute", "gauge", "Requests in the last 60 s."},
      {"gemini_pool_input_tokens_last_minute", "gauge", "Input tokens in the last 60 s."},
      {"gemini_pool_input_tokens_total", "counter", "Input tokens sent."},
      {"gemini_pool_output_tokens_total", "counter", "Output tokens received."},
  };
  double now_s = (double)now_ms / 1000.0;
  gkp__status_info in;
  gkp__status_key k;
  gkp__status_model m;
  gkp__status_get_info(s, &in);

  help(b, "gemini_pool_next_daily_reset_seconds", "gauge",
       "The next midnight in America/Los_Angeles (Unix seconds).");
  gkp__dynbuf_printf(b, "gemini_pool_next_daily_reset_seconds %.0f\n",
                     (double)gkp_next_pacific_midnight(now_ms) / 1000.0);
  help(b, "gemini_pool_keys", "gauge", "Keys by state.");
  for (size_t st = 0; st < 4; st++) {
    double n = 0;
    for (size_t ki = 0; ki < in.nkeys; ki++) {
      gkp__status_get_key(s, ki, &k);
      n += strcmp(k.state, states[st]) == 0;
    }
    gkp__dynbuf_printf(b, "gemini_pool_keys{state=\"%s\"} %.0f\n", states[st], n);
  }
  help(b, "gemini_pool_key_inflight", "gauge", "Requests in flight on a key.");
  for (size_t ki = 0; ki < in.nkeys; ki++) {
    gkp__status_get_key(s, ki, &k);
    sample(b, "gemini_pool_key_inflight", k.id, NULL, NULL, k.inflight);
  }
  help(b, "gemini_pool_key_requests_total", "counter", "Requests sent with a key.");
  for (size_t ki = 0; ki < in.nkeys; ki++) {
    gkp__status_get_key(s, ki, &k);
    sample(b, "gemini_pool_key_requests_total", k.id, NULL, NULL, (double)k.requests_total);
  }
  for (size_t f = 0; f < sizeof per_model / sizeof per_model[0]; f++) {
    help(b, per_model[f][0], per_model[f][1], per_model[f][2]);
    for (size_t ki = 0; ki < in.nkeys; ki++) {
      gkp__status_get_key(s, ki, &k);
      for (size_t mi = 0; mi < in.nmodels; mi++) {
        gkp__status_get_model(s, ki, mi, &m);
        if (!metrics_active(&m)) {
          continue;
        }
        int64_t v[] = {m.requests_total,           m.requests_today,     m.requests_last_minute,
                       m.input_tokens_last_minute, m.input_tokens_total, m.output_tokens_total};
        sample(b, per_model[f][0], k.id, m.id, NULL, (double)v[f]);
      }
    }
  }
  help(b, "gemini_pool_errors_total", "counter", "Error answers, by key, model and kind.");
  for (size_t ki = 0; ki < in.nkeys; ki++) {
    gkp__status_get_key(s, ki, &k);
    for (size_t mi = 0; mi < in.nmodels; mi++) {
      gkp__status_get_model(s, ki, mi, &m);
      for (int e = GKP_KIND_RPM; e < GKP_KIND_COUNT; e++) {
        if (m.errors[e] > 0) {
          sample(b, "gemini_pool_errors_total", k.id, m.id, gkp_kind_name(e), (double)m.errors[e]);
        }
      }
    }
  }
  for (int until_too = 0; until_too < 2; until_too++) {
    const char *name = until_too ? "gemini_pool_cooldown_until_seconds"
                                 : "gemini_pool_cooldown_remaining_seconds";
    help(b, name, "gauge",
         until_too
             ? "When a cooldown ends (Unix seconds), by key, model and kind (only while cooling)."
             : "Seconds until a cooldown ends, by key, model and kind (only while cooling).");
    for (size_t ki = 0; ki < in.nkeys; ki++) {
      gkp__status_get_key(s, ki, &k);
      for (size_t mi = 0; mi < in.nmodels; mi++) {
        gkp__status_get_model(s, ki, mi, &m);
        double until = (double)m.cooldown_until_s;
        if (until > now_s) {
          sample(b, name, k.id, m.id, kind_or_unknown(m.cooldown_kind),
                 until_too ? until : until - now_s);
        }
      }
    }
  }
  help(b, "gemini_pool_keys_cooling", "gauge", "Keys cooling down, by model.");
  for (size_t mi = 0; in.nkeys > 0 && mi < in.nmodels; mi++) {
    double n = 0;
    for (size_t ki = 0; ki < in.nkeys; ki++) {
      gkp__status_get_model(s, ki, mi, &m);
      n += (double)m.cooldown_until_s > now_s;
    }
    gkp__status_get_model(s, 0, mi, &m);
    sample(b, "gemini_pool_keys_cooling", NULL, m.id, NULL, n);
  }
}
