/*
 * fb_admin.c - the mapped-file backend's administration verbs (cooldowns,
 * disabling, resets), reads (count, effective limits), expiry and the status
 * snapshot.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/timeutil.h"
#include "common/util.h"
#include "engine/file_backend.h"

/* ---- administration
 * ------------------------------------------------------------------------------ */

int unknown_key(const fb *f, const char *id, gkp_error *err) {
  return gkp__err(err, -ENOENT, "unknown key id '%s' (the keys are listed in %s)",
                  id != NULL ? id : "", f->cfg->path);
}

/* Clears one key's disabled flag and cooldowns, and those of its project's
 * pairs. */
static void reset_key(fb *f, int ki) {
  gkp__store *st = f->st;
  int s = f->key_slot[ki];
  gkp__key_rec *k = &st->keys[s];
  gkp__store_save_recs(st, s, -1);
  k->c.disabled = 0;
  k->c.disabled_reason[0] = '\0';
  k->c.cooldown_until_ms = 0;
  k->c.cooldown_kind = GKP_KIND_NONE;
  gkp__store_commit(st);
  for (size_t mi = 0; mi < f->cfg->nmodels; mi++) {
    int ps = pm_slot_of(f, ki, (int)mi);
    if (ps >= 0) {
      gkp__store_save_recs(st, -1, ps);
      gkp__pm_reset(&st->pms[ps].c);
      gkp__store_commit(st);
    }
  }
}

static int admin_locked(fb *f, const gkp__admin *op, gkp_error *err) {
  gkp__store *st = f->st;
  int ki = -1, mi = -1, ps = -1;
  if (op->kind == GKP__ADMIN_RESET && op->key_id == NULL) {
    for (size_t i = 0; i < f->cfg->nkeys; i++) {
      reset_key(f, (int)i);
    }
    return 0;
  }
  ki = cfg_key_index(f, op->key_id);
  if (ki < 0) {
    return unknown_key(f, op->key_id, err);
  }
  int s = f->key_slot[ki];
  gkp__key_rec *k = &st->keys[s];
  switch (op->kind) {
  case GKP__ADMIN_RESET:
    reset_key(f, ki);
    return 0;
  case GKP__ADMIN_DISABLE:
    gkp__store_save_recs(st, s, -1);
    k->c.disabled = 1;
    gkp__strlcpy(k->c.disabled_reason, op->reason != NULL ? op->reason : "disabled by hand",
                 sizeof k->c.disabled_reason);
    gkp__store_commit(st);
    return 0;
  default:
    break;
  }
  if (op->model != NULL) {
    mi = model_index(f->cfg, op->model);
    if (mi < 0) {
      return gkp__err(err, -ENOENT, "unknown model '%s'", op->model);
    }
    ps = pm_attach(f, ki, mi, err);
    if (ps < 0) {
      return ps;
    }
  }
  gkp__store_save_recs(st, s, ps);
  if (ps >= 0) {
    st->pms[ps].c.cooldown_until_ms = op->until_ms;
    st->pms[ps].c.cooldown_kind = op->until_ms > 0 ? op->cooldown_kind : GKP_KIND_NONE;
  } else {
    k->c.cooldown_until_ms = op->until_ms;
    k->c.cooldown_kind = op->until_ms > 0 ? op->cooldown_kind : GKP_KIND_NONE;
  }
  gkp__store_commit(st);
  return 0;
}

int fb_admin(gkp__backend *b, const gkp__admin *op, gkp_error *err) {
  fb *f = (fb *)b;
  int rc = begin(f, err);
  if (rc != 0) {
    return rc;
  }
  rc = admin_locked(f, op, err);
  f->limits_changed++;
  end(f);
  return rc;
}

int fb_count_available(gkp__backend *b, const char *model, gkp_error *err) {
  fb *f = (fb *)b;
  gkp__instant t;
  int rc = begin(f, err), mi, n = 0;
  if (rc != 0) {
    return rc;
  }
  mi = model_index(f->cfg, model);
  if (mi < 0) {
    rc = unknown_model(f, model, err);
    end(f);
    return rc;
  }
  gkp__instant_at(&t, fb_now(f));
  for (size_t ki = 0; ki < f->cfg->nkeys; ki++) {
    int64_t ready;
    int reason;
    n += eligible(f, (int)ki, mi, 1, &t, &ready, &reason);
  }
  end(f);
  return n;
}

int fb_effective_limits(gkp__backend *b, const char *key_id, const char *model, gkp_limits *out,
                        gkp_error *err) {
  fb *f = (fb *)b;
  int rc = begin(f, err), ki, mi;
  if (rc != 0) {
    return rc;
  }
  ki = cfg_key_index(f, key_id);
  mi = model_index(f->cfg, model);
  if (ki < 0 || mi < 0) {
    rc = ki < 0 ? unknown_key(f, key_id, err)
                : gkp__err(err, -ENOENT, "unknown model '%s'", model != NULL ? model : "");
  } else {
    int ps = pm_slot_of(f, ki, mi);
    gkp__effective(ps >= 0 ? &f->st->pms[ps].c : empty_pm(), &f->cfg->models[mi].limits, fb_now(f),
                   out);
  }
  end(f);
  return rc;
}

/* ---- the largest TPM of a model chain ---------------------------------------------------------
 */

void forget_tpm(fb *f) {
  free(f->proj_reps);
  free(f->tpm_memo);
  gkp__fb_miss_free(f);
  f->proj_reps = NULL;
  f->tpm_memo = NULL;
  f->nproj_reps = 0;
}

static int same_project(const void *ctx, int v, const char *a, const char *b) {
  const gkp__config *cfg = ctx;
  (void)b;
  return strcmp(cfg->keys[v].project, a) == 0;
}

/* One configured key per distinct project: the limits are the project's. */
static int project_reps(fb *f) {
  const gkp__config *cfg = f->cfg;
  sindex seen = {0};
  if (f->proj_reps != NULL) {
    return 0;
  }
  f->proj_reps = malloc(sizeof(int) * (cfg->nkeys + 1));
  f->tpm_memo = calloc(cfg->nmodels + 1, sizeof *f->tpm_memo);
  if (f->proj_reps == NULL || f->tpm_memo == NULL || sindex_init(&seen, cfg->nkeys) != 0) {
    forget_tpm(f);
    return -ENOMEM;
  }
  for (size_t i = 0; i < cfg->nkeys; i++) {
    size_t pos;
    if (sindex_find(&seen, cfg, same_project, cfg->keys[i].project, NULL, &pos) < 0) {
      seen.slot[pos] = (int)i;
      f->proj_reps[f->nproj_reps++] = (int)i;
    }
  }
  free(seen.slot);
  return 0;
}

/* The largest TPM any project has for model mi; -1 if one's is unknown. */
static int64_t model_max_tpm(fb *f, int mi, int64_t now) {
  int64_t best = 0;
  for (size_t r = 0; r < f->nproj_reps; r++) {
    int ps = pm_slot_of(f, f->proj_reps[r], mi);
    gkp_limits lim;
    gkp__effective(ps >= 0 ? &f->st->pms[ps].c : empty_pm(), &f->cfg->models[mi].limits, now, &lim);
    if (lim.tpm <= 0) {
      return -1;
    }
    best = lim.tpm > best ? lim.tpm : best;
  }
  return best;
}

/* The memo of model mi answers while the file is unchanged, or for a second
 * while this process changed no limit. */
static int memo_fresh(const fb *f, const struct tpm_memo *m, int64_t mono) {
  return m->valid && (m->generation == f->st->hdr->generation ||
                      (m->limits_changed == f->limits_changed && mono >= m->at_mono &&
                       mono - m->at_mono < MAX_TPM_FRESH_MS));
}

/* The answer from the memos alone, without the file's lock, when every
 * model of the chain was computed less than a second ago and this process
 * changed no limit since: 1 and *out, else 0. */
static int max_tpm_remembered(fb *f, const char *model, int64_t mono, int64_t *out) {
  int64_t best = 0;
  int mi, ok = f->tpm_memo != NULL && f->cfg != NULL;
  mi = ok ? model_index(f->cfg, model) : -1;
  ok = ok && mi >= 0;
  for (size_t n = 0; ok && mi >= 0 && n < f->cfg->nmodels && best >= 0; n++) {
    const struct tpm_memo *m = &f->tpm_memo[mi];
    ok = m->valid && m->limits_changed == f->limits_changed && mono >= m->at_mono &&
         mono - m->at_mono < MAX_TPM_FRESH_MS;
    best = m->value < 0 ? -1 : m->value > best ? m->value : best;
    mi =
        f->cfg->models[mi].fallback != NULL ? model_index(f->cfg, f->cfg->models[mi].fallback) : -1;
  }
  if (ok) {
    *out = best;
  }
  return ok;
}

int fb_max_tpm(gkp__backend *b, const char *model, int fresh, int64_t *out, gkp_error *err) {
  fb *f = (fb *)b;
  int64_t best = 0, now, mono = gkp__mono_ms();
  int rc, mi;
  if (!fresh) {
    pthread_mutex_lock(&f->st->mu);
    rc = max_tpm_remembered(f, model, mono, out);
    pthread_mutex_unlock(&f->st->mu);
    if (rc) {
      return 0;
    }
  }
  if ((rc = begin(f, err)) != 0) {
    return rc;
  }
  mi = model_index(f->cfg, model);
  if (mi < 0 || project_reps(f) != 0) {
    *out = -1;
    end(f);
    return mi < 0 ? 0 : gkp__err(err, -ENOMEM, "out of memory");
  }
  now = fb_now(f);
  for (size_t n = 0; mi >= 0 && n < f->cfg->nmodels && best >= 0; n++) {
    struct tpm_memo *m = &f->tpm_memo[mi];
    if (fresh || !memo_fresh(f, m, mono)) {
      m->value = model_max_tpm(f, mi, now);
      m->generation = f->st->hdr->generation;
      m->at_mono = mono;
      m->limits_changed = f->limits_changed;
      m->valid = 1;
    }
    best = m->value < 0 ? -1 : m->value > best ? m->value : best;
    mi =
        f->cfg->models[mi].fallback != NULL ? model_index(f->cfg, f->cfg->models[mi].fallback) : -1;
  }
  *out = best;
  end(f);
  return 0;
}

int fb_gc(gkp__backend *b, gkp_error *err) {
  fb *f = (fb *)b;
  gkp__store *st = f->st;
  int64_t now;
  int n = 0, rc = begin(f, err);
  if (rc != 0) {
    return rc;
  }
  now = fb_now(f);
  for (uint32_t s = 0; s < st->hdr->lay.nkeys; s++) {
    gkp__key_rec *k = &st->keys[s];
    if (!k->used) {
      continue;
    }
    if (k->c.cooldown_kind != GKP_KIND_NONE && k->c.cooldown_until_ms <= now) {
      gkp__store_save_recs(st, (int)s, -1);
      k->c.cooldown_until_ms = 0;
      k->c.cooldown_kind = GKP_KIND_NONE;
      gkp__store_commit(st);
      n++;
    }
    reap(f, (int)s, now, &n);
  }
  for (uint32_t s = 0; s < st->hdr->lay.npm; s++) {
    gkp__pm_counts *p = &st->pms[s].c;
    if (st->pms[s].used && p->cooldown_kind != GKP_KIND_NONE && p->cooldown_until_ms <= now) {
      gkp__store_save_recs(st, -1, (int)s);
      p->cooldown_until_ms = 0;
      p->cooldown_kind = GKP_KIND_NONE;
      gkp__store_commit(st);
      n++;
    }
  }
  end(f);
  return n;
}

/* ---- status snapshot ---------------------------------------------------------------------------
 */

void gkp__snapshot_free(gkp__snapshot *s) {
  if (s == NULL) {
    return;
  }
  if (s->cfg != NULL) {
    gkp__config_unref(s->cfg);
  }
  free(s->keys);
  free(s->pm_of);
  free(s->pms);
  free(s->where);
  free(s);
}

/* Copies what the status document shows; only plain copies under the lock. */
static int snap_locked(fb *f, gkp__snapshot *s) {
  const gkp__config *cfg = f->cfg;
  size_t nk = cfg->nkeys, nm = cfg->nmodels, cap = 0;
  gkp__instant t;

  gkp__instant_at(&t, s->now);
  s->cfg = gkp__config_ref(cfg);
  s->keys = calloc(nk + 1, sizeof *s->keys);
  s->pm_of = malloc(sizeof(int) * (nk * nm + 1));
  if (s->keys == NULL || s->pm_of == NULL) {
    return -ENOMEM;
  }
  for (size_t ki = 0; ki < nk; ki++) {
    const gkp__key_rec *k = &f->st->keys[f->key_slot[ki]];
    s->keys[ki].c = k->c;
    for (int i = 0; k->nleases > 0 && i < GKP__MAX_LEASES; i++) {
      s->keys[ki].inflight += lease_live(f, &k->leases[i], s->now);
    }
    for (size_t mi = 0; mi < nm; mi++) {
      int ps = pm_slot_of(f, (int)ki, (int)mi);
      s->pm_of[ki * nm + mi] = -1;
      if (ps < 0) {
        continue;
      }
      if (s->npms == cap) {
        cap = cap ? cap * 2 : 64;
        gkp__snap_pm *n = realloc(s->pms, cap * sizeof *n);
        if (n == NULL) {
          return -ENOMEM;
        }
        s->pms = n;
      }
      gkp__snap_pm *e = &s->pms[s->npms];
      const gkp__pm_counts *p = &f->st->pms[ps].c;
      memcpy(&e->c, p, offsetof(gkp__pm_counts, win));
      memset(&e->c.win, 0, sizeof e->c.win);
      e->requests_today = gkp__day_count(p, &t);
      gkp__window_totals(&p->win, &t, &e->reqs_minute, &e->tokens_minute);
      s->pm_of[ki * nm + mi] = (int)s->npms++;
    }
  }
  return 0;
}

int fb_snapshot(gkp__backend *b, gkp__snapshot **out, gkp_error *err) {
  fb *f = (fb *)b;
  gkp__snapshot *s = calloc(1, sizeof *s);
  int rc;
  *out = NULL;
  if (s == NULL || (s->where = strdup(f->st->path)) == NULL) {
    free(s);
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  rc = begin(f, err);
  if (rc != 0) {
    gkp__snapshot_free(s);
    return rc;
  }
  s->now = fb_now(f);
  const gkp__store_hdr *h = f->st->hdr;
  s->down_since_ms = h->down_since_ms;
  s->down_last_ms = h->down_last_ms;
  snprintf(s->down_url, sizeof s->down_url, "%.*s", (int)sizeof h->down_url - 1, h->down_url);
  snprintf(s->down_reason, sizeof s->down_reason, "%.*s", (int)sizeof h->down_reason - 1,
           h->down_reason);
  rc = snap_locked(f, s);
  end(f);
  if (rc != 0) {
    gkp__snapshot_free(s);
    return gkp__err(err, rc, "out of memory");
  }
  *out = s;
  return 0;
}
