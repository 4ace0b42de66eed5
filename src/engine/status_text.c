/*
 * status_text.c - the status snapshot rendered as a table for people.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/dynbuf.h"
#include "common/timeutil.h"
#include "engine/status.h"

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
    gkp__dynbuf_printf(b,
                       "  * %s %s: %s limit %lld learned from Google's 429 at %s, until %s "
                       "(midnight Pacific; gemini-pool reset %s forgets it)\n",
                       key->id, m->id, metric[i], (long long)l->value, at, until, key->id);
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
  gkp__dynbuf_printf(b, "endpoint %s unreachable since %s (%s ago): %s\n", in->endpoint_url, since,
                     ago, in->down_error != NULL ? in->down_error : "no answer");
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
  gkp__dynbuf_printf(b, "%-16s %-12s %-9s %-30s %-11s %-7s %-15s %-34s %.60s\n", key->id,
                     key->project, key->state, m != NULL ? m->id : "-", today, minute, tokens, cool,
                     err != NULL ? err : "-");
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
      gkp__dynbuf_printf(&b, "  %s is disabled: %s (gemini-pool reset %s re-enables it)\n", key.id,
                         key.disabled_reason, key.id);
    }
  }
  endpoint_line(&b, &in, now_ms);
  gkp__dynbuf_printf(&b, "next daily reset: %s (midnight Pacific)\n",
                     in.next_daily_reset_ms > 0
                         ? gkp__rfc3339(in.next_daily_reset_ms, reset, sizeof reset)
                         : "?");
  gkp__dynbuf_printf(&b, "state: %s %s\n", in.state_backend, in.state_file);
  return gkp__dynbuf_take(&b, NULL);
}
