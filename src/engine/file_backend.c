/*
 * file_backend.c - the backend verbs over the mapped state file.
 *
 * Every verb is one transaction of the store.  The backend keeps, per
 * process, indexes from the attached configuration to store slots (rebuilt
 * when the store says its layout changed) and walks the keys in the file's
 * least recently used order, stopping at the first eligible one.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "common/timeutil.h"
#include "common/util.h"
#include "engine/file_backend.h"

/* ---- attach ---------------------------------------------------------------------------------- */

static int fb_attach(gkp__backend *b, const gkp__config *cfg, int reload, gkp_error *err) {
  fb *f = (fb *)b;
  const gkp__config *old;
  sindex keys = {0};
  int rc;

  if (sindex_init(&keys, cfg->nkeys) != 0) {
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  for (size_t i = 0; i < cfg->nkeys; i++) {
    size_t pos;
    if (sindex_find(&keys, cfg, same_cfg_key, cfg->keys[i].id, NULL, &pos) < 0) {
      keys.slot[pos] = (int)i;
    }
  }
  rc = gkp__store_lock(f->st, err);
  if (rc < 0) {
    free(keys.slot);
    return rc;
  }
  old = f->cfg;
  sindex old_keys = f->cfg_keys;
  f->cfg = gkp__config_ref(cfg);
  f->cfg_keys = keys;
  rc = rebuild(f, reload, err);
  if (rc != 0 && old != NULL) { /* keep serving the configuration in use */
    gkp__config_unref(f->cfg);
    free(f->cfg_keys.slot);
    f->cfg = old;
    f->cfg_keys = old_keys;
    old = NULL;
    rebuild(f, 0, NULL);
  } else {
    free(old_keys.slot);
  }
  if (rc == 0 && reload) {
    /* A reload re-enables disabled keys: the user may have fixed them. */
    for (size_t i = 0; i < cfg->nkeys; i++) {
      gkp__key_rec *k = &f->st->keys[f->key_slot[i]];
      if (k->c.disabled) {
        gkp__store_save_recs(f->st, f->key_slot[i], -1);
        k->c.disabled = 0;
        k->c.disabled_reason[0] = '\0';
        gkp__store_commit(f->st);
      }
    }
  }
  end(f);
  if (old != NULL) {
    gkp__config_unref(old);
  }
  return rc;
}

/* Whether cfg key ki can take a request now; *ready / *reason otherwise. */
int eligible(fb *f, int ki, int mi, int64_t est, const gkp__instant *t, int64_t *ready,
             int *reason) {
  int s = f->key_slot[ki];
  gkp__key_rec *k = &f->st->keys[s];
  int ps = pm_slot_of(f, ki, mi);
  const gkp__pm_counts *p = ps >= 0 ? &f->st->pms[ps].c : empty_pm();
  int max = f->cfg->keys[ki].max_inflight;

  if (ps >= 0 && gkp__window_from_future(&p->win, t)) {
    /* The wall clock stepped back: bring the window's buckets to the present
     * so that they expire a window from now, not a step from now. */
    gkp__store_save_recs(f->st, -1, ps);
    gkp__window_restamp(&f->st->pms[ps].c.win, t);
    gkp__store_commit(f->st);
  }
  gkp__key_fits(&k->c, p, &f->cfg->models[mi].limits, est, t, ready, reason);
  if (*reason == GKP_WAIT_NEVER) {
    return 0;
  }
  if ((int)k->nleases >= max && reap(f, s, t->now, NULL) >= max) {
    int64_t soonest = INT64_MAX;
    for (int i = 0; i < GKP__MAX_LEASES; i++) {
      if (k->leases[i].id != 0 && k->leases[i].expires_ms < soonest) {
        soonest = k->leases[i].expires_ms;
      }
    }
    /* A busy key usually frees up long before its lease expires: the
     * expiry is only an upper bound, reported when nothing else holds it. */
    if (*reason == GKP_WAIT_NONE) {
      *ready = soonest;
      *reason = GKP_WAIT_BUSY;
    }
  }
  return *reason == GKP_WAIT_NONE;
}

int unknown_model(const fb *f, const char *model, gkp_error *err) {
  return gkp__err(err, -ENOENT, "unknown model '%s': add it under \"models\" in %s",
                  model != NULL ? model : "", f->cfg->path);
}

/* Reports that no key is eligible. */
static int no_key(fb *f, const char *model, int next_key, int64_t next, int reason, gkp_wait *wait,
                  gkp_error *err) {
  return gkp__no_key(f->cfg, model, next_key, next, reason, wait, err);
}

_Static_assert(offsetof(gkp__pm_counts, day_count) == offsetof(gkp__pm_counts, day_start_ms) + 8,
               "day_start_ms and day_count are journaled together");
_Static_assert(offsetof(gkp__pm_counts, streak_server) == offsetof(gkp__pm_counts, proven) + 8,
               "proven and the streaks are journaled together");
_Static_assert(offsetof(gkp__pm_counts, tokens_out_total) ==
                   offsetof(gkp__pm_counts, tokens_in_total) + 8,
               "the token totals are journaled together");

/* Saves what gkp__count_request changes in a pair's counts (the bucket of
 * the second apart): only those fields, so that a reservation copies and
 * touches as little as it can. */
static void save_counted(gkp__store *st, gkp__pm_counts *c) {
  gkp__store_save(st, &c->day_start_ms, sizeof c->day_start_ms + sizeof c->day_count);
  gkp__store_save(st, &c->requests_total, sizeof c->requests_total);
  gkp__store_save(st, &c->win, offsetof(gkp__window, b));
}

/* The same for gkp__apply_usage (the bucket of the request apart). */
static void save_used(gkp__store *st, gkp__pm_counts *c) {
  gkp__store_save(st, &c->proven,
                  sizeof c->proven + sizeof c->streak_429 + sizeof c->streak_server);
  gkp__store_save(st, &c->tokens_in_total, sizeof c->tokens_in_total + sizeof c->tokens_out_total);
  gkp__store_save(st, c->last_error, 1);
  gkp__store_save(st, &c->win, offsetof(gkp__window, b));
}

/* Takes a lease on cfg key ki for model mi. */
static int take(fb *f, int ki, int mi, int64_t est, const gkp__instant *t, gkp_lease *out,
                gkp_error *err) {
  gkp__store *st = f->st;
  int s = f->key_slot[ki];
  int ps = pm_attach(f, ki, mi, err);
  gkp__key_rec *k = &st->keys[s];
  uint64_t id;
  int li = -1;

  if (ps < 0) {
    return ps;
  }
  for (int i = 0; i < GKP__MAX_LEASES && li < 0; i++) {
    li = k->leases[i].id == 0 ? i : -1;
  }
  if (li < 0 || own_add(f, st->hdr->next_lease_id) != 0) {
    return gkp__err(err, li < 0 ? -EAGAIN : -ENOMEM, "%s",
                    li < 0 ? "no lease slot" : "out of memory");
  }
  id = st->hdr->next_lease_id;
  gkp__store_save(st, &st->hdr->next_lease_id, sizeof st->hdr->next_lease_id);
  gkp__store_save(st, &k->nleases, sizeof k->nleases);
  gkp__store_save(st, &k->c, sizeof k->c);
  gkp__store_save(st, &k->leases[li], sizeof k->leases[li]);
  save_counted(st, &st->pms[ps].c);
  gkp__store_save(st, gkp__bucket_of(&st->pms[ps].c.win, t->now), sizeof(gkp__bucket));
  st->hdr->next_lease_id++;
  gkp__lease_rec *l = &k->leases[li];
  l->id = id;
  l->owner = f->self;
  l->started_ms = t->now;
  l->expires_ms = t->now + LEASE_TTL_MS;
  l->boot_expires_ms = gkp__boot_ms() + LEASE_TTL_MS;
  l->est_tokens = est;
  l->pm_slot = (uint32_t)ps;
  l->prev_used_ms = k->c.last_used_ms;
  k->nleases++;
  k->c.last_used_ms = t->now;
  k->c.requests_total++;
  if (gkp__window_from_future(&st->pms[ps].c.win, t)) {
    gkp__store_save(st, st->pms[ps].c.win.b, sizeof st->pms[ps].c.win.b);
  }
  l->day_ms = gkp__count_request(&st->pms[ps].c, t, est);
  gkp__store_commit(st);
  gkp__store_lru_touch(st, s);

  memset(out, 0, sizeof *out);
  out->id = id;
  out->started_ms = t->now;
  out->est_tokens = est;
  gkp__strlcpy(out->key_id, k->id, sizeof out->key_id);
  gkp__strlcpy(out->project, k->project, sizeof out->project);
  gkp__strlcpy(out->model, f->cfg->models[mi].id, sizeof out->model);
  return 0;
}

static int fb_reserve(gkp__backend *b, const char *model, int64_t est, gkp_lease *out,
                      gkp_wait *wait, gkp_error *err) {
  fb *f = (fb *)b;
  gkp__instant t;
  int64_t next = INT64_MAX, next_used = 0;
  int mi, rc, next_key = -1, next_reason = GKP_WAIT_NONE;

  if ((rc = begin(f, err)) != 0) {
    return rc;
  }
  mi = model_index(f->cfg, model);
  if (mi < 0) {
    rc = unknown_model(f, model, err);
    end(f);
    return rc;
  }
  gkp__instant_at(&t, fb_now(f));
  if (gkp__fb_miss_answer(f, mi, est, &t, &next_key, &next, &next_reason)) {
    rc = no_key(f, model, next_key, next, next_reason, wait, err);
    end(f);
    return rc;
  }
  struct gkp__fb_miss *miss = gkp__fb_miss_start(f, mi, est);
  for (int s = f->st->hdr->lru_head; s >= 0; s = f->st->keys[s].lru_next) {
    int ki = (size_t)s < f->ncfg_of_slot ? f->cfg_of_slot[s] : -1;
    int64_t ready, used = f->st->keys[s].c.last_used_ms;
    int reason;
    if (ki < 0) {
      continue;
    }
    if (eligible(f, ki, mi, est, &t, &ready, &reason)) {
      rc = take(f, ki, mi, est, &t, out, err);
      end(f);
      return rc;
    }
    gkp__fb_miss_note(f, miss, ki, ready, reason, t.now);
    if (next_key < 0 || gkp__fb_earlier(ready, used, ki, next, next_used, next_key)) {
      next = ready;
      next_used = used;
      next_reason = reason;
      next_key = ki;
    }
  }
  gkp__fb_miss_done(f, miss, mi);
  rc = no_key(f, model, next_key, next, next_reason, wait, err);
  end(f);
  return rc;
}

/* ---- lease verbs ------------------------------------------------------------------------------
 */

/* Finds a lease of this process: its key slot and index, or -1. */
static int find_lease(fb *f, const gkp_lease *l, int *li) {
  gkp__store *st = f->st;
  int ki = cfg_key_index(f, l->key_id), s = -1;
  if (ki >= 0) {
    s = f->key_slot[ki];
  } else {
    for (uint32_t i = 0; i < st->hdr->lay.nkeys && s < 0; i++) {
      s = st->keys[i].used && strcmp(st->keys[i].id, l->key_id) == 0 ? (int)i : -1;
    }
  }
  if (s < 0) {
    return -1;
  }
  for (int i = 0; i < GKP__MAX_LEASES; i++) {
    const gkp__lease_rec *r = &st->keys[s].leases[i];
    if (r->id == l->id && gkp__owner_same(&r->owner, &f->self)) {
      *li = i;
      return s;
    }
  }
  return -1;
}

static int bad_lease(const gkp_lease *l, gkp_error *err) {
  if (l == NULL || l->id == 0) {
    return gkp__err(err, -EINVAL, "not a lease of this pool");
  }
  return 0;
}

/* Extends one lease inside a transaction. */
static int renew_locked(fb *f, const gkp_lease *l, gkp_error *err) {
  int li, s = find_lease(f, l, &li);
  if (s < 0) {
    return gkp__err(err, -ESTALE, "the lease on key '%s' was reclaimed", l->key_id);
  }
  gkp__lease_rec *r = &f->st->keys[s].leases[li];
  gkp__store_save(f->st, &r->expires_ms, sizeof r->expires_ms);
  gkp__store_save(f->st, &r->boot_expires_ms, sizeof r->boot_expires_ms);
  r->expires_ms = fb_now(f) + LEASE_TTL_MS;
  r->boot_expires_ms = gkp__boot_ms() + LEASE_TTL_MS;
  gkp__store_commit(f->st);
  return 0;
}

static int fb_renew(gkp__backend *b, const gkp_lease *l, gkp_error *err) {
  fb *f = (fb *)b;
  int rc;
  if ((rc = bad_lease(l, err)) != 0 || (rc = begin(f, err)) != 0) {
    return rc;
  }
  rc = renew_locked(f, l, err);
  end(f);
  return rc;
}

/* Every lease of a heartbeat in one transaction. */
static int fb_renew_many(gkp__backend *b, const gkp_lease *ls, size_t n, int *rcs,
                         gkp_error *err) {
  fb *f = (fb *)b;
  int rc = begin(f, err);
  for (size_t i = 0; i < n; i++) {
    rcs[i] = rc != 0 ? rc : bad_lease(&ls[i], NULL) != 0 ? -EINVAL : renew_locked(f, &ls[i], NULL);
  }
  if (rc == 0) {
    end(f);
  }
  return rc;
}

/* Ends a lease of this process inside a transaction. */
static void release_locked(fb *f, const gkp_lease *l, int sent) {
  int li, s = find_lease(f, l, &li);
  if (s >= 0) {
    gkp__key_rec *k = &f->st->keys[s];
    uint32_t ps = k->leases[li].pm_slot;
    int unsent = !sent && ps < f->st->hdr->lay.npm;
    gkp__store_save(f->st, &k->leases[li], sizeof k->leases[li]);
    gkp__store_save(f->st, &k->nleases, sizeof k->nleases);
    if (unsent) {
      gkp__store_save(f->st, &k->c, sizeof k->c);
      gkp__store_save_recs(f->st, -1, (int)ps);
      /* Nothing reached the server: as if the reservation never happened,
       * unless a later reservation has used the key since. */
      gkp__uncount_request(&f->st->pms[ps].c, l->started_ms, k->leases[li].day_ms, l->est_tokens);
      if (k->c.requests_total > 0) {
        k->c.requests_total--;
      }
      if (k->c.last_used_ms == l->started_ms) {
        k->c.last_used_ms = k->leases[li].prev_used_ms;
      }
    }
    memset(&k->leases[li], 0, sizeof k->leases[li]);
    k->nleases = k->nleases > 0 ? k->nleases - 1 : 0;
    gkp__store_commit(f->st);
  }
  own_remove(f, l->id);
}

static int fb_release(gkp__backend *b, const gkp_lease *l, int sent, gkp_error *err) {
  fb *f = (fb *)b;
  int rc;
  if ((rc = bad_lease(l, err)) != 0 || (rc = begin(f, err)) != 0) {
    return rc;
  }
  release_locked(f, l, sent);
  end(f);
  return 0;
}

/* The lease given back unsent and the endpoint noted unreachable: one
 * transaction. */
static int fb_release_unreached(gkp__backend *b, const gkp_lease *l, const char *url,
                                const char *reason, gkp_error *err) {
  fb *f = (fb *)b;
  int rc;
  if ((rc = bad_lease(l, err)) != 0 || (rc = begin(f, err)) != 0) {
    return rc;
  }
  release_locked(f, l, 0);
  gkp__store_hdr *h = f->st->hdr;
  int64_t now = fb_now(f), since = h->down_since_ms > 0 ? h->down_since_ms : now;
  h->down_since_ms = 0; /* strings first, the time last: see store.h */
  gkp__strlcpy(h->down_url, url != NULL ? url : "", sizeof h->down_url);
  gkp__strlcpy(h->down_reason, reason != NULL ? reason : "", sizeof h->down_reason);
  h->down_last_ms = now;
  h->down_since_ms = since;
  end(f);
  return 0;
}

static int64_t fb_endpoint_down(gkp__backend *b, char *buf, size_t len) {
  fb *f = (fb *)b;
  int64_t since = 0;
  if (buf != NULL && len > 0) {
    buf[0] = '\0';
  }
  if (begin(f, NULL) == 0) {
    const gkp__store_hdr *h = f->st->hdr;
    since = h->down_since_ms;
    if (since > 0 && buf != NULL && len > 0) {
      snprintf(buf, len, "%.*s", (int)sizeof h->down_reason - 1, h->down_reason);
    }
    end(f);
  }
  return since;
}

/* The pm slot a lease of this process counts against, or -1 with err. */
static int lease_pm(fb *f, const gkp_lease *l, int *key_slot, gkp_error *err) {
  int li, s = find_lease(f, l, &li);
  if (s >= 0) {
    *key_slot = s;
    return (int)f->st->keys[s].leases[li].pm_slot;
  }
  /* A lease already released (a verdict after release, say) still names
   * its key and pair; so does an error met outside a reservation
   * (gkp_report_key_error), whose pair may have no record yet. */
  int ki = cfg_key_index(f, l->key_id);
  int mi = ki >= 0 && strcmp(f->cfg->keys[ki].project, l->project) == 0
               ? model_index(f->cfg, l->model)
               : -1;
  int ps = mi >= 0 ? pm_attach(f, ki, mi, NULL) : ki >= 0 ? find_pm(f, l->project, l->model) : -1;
  if (ps < 0) {
    return gkp__err(err, -EINVAL, "not a lease of this pool");
  }
  *key_slot = f->key_slot[ki];
  return ps;
}

/* Records a 2xx answer inside a transaction: 0 or -EINVAL. */
static int usage_locked(fb *f, const gkp_lease *l, const gkp_usage *u, gkp_error *err) {
  int ks, ps = lease_pm(f, l, &ks, err);
  if (ps >= 0) {
    gkp__pm_counts *p = &f->st->pms[ps].c;
    save_used(f->st, p);
    gkp__store_save(f->st, gkp__bucket_of(&p->win, l->started_ms), sizeof(gkp__bucket));
    gkp__apply_usage(p, l->started_ms, l->est_tokens, u);
    gkp__store_commit(f->st);
    f->st->hdr->down_since_ms = 0; /* an answer came: the endpoint is reachable */
  }
  return ps < 0 ? ps : 0;
}

static int fb_record_usage(gkp__backend *b, const gkp_lease *l, const gkp_usage *u,
                           gkp_error *err) {
  fb *f = (fb *)b;
  int rc;
  if ((rc = bad_lease(l, err)) != 0 || (rc = begin(f, err)) != 0) {
    return rc;
  }
  rc = usage_locked(f, l, u, err);
  end(f);
  return rc;
}

/* Usage and release of n requests in one transaction. */
static int fb_finish(gkp__backend *b, const gkp__finish *fs, size_t n, gkp_error *err) {
  fb *f = (fb *)b;
  int rc = begin(f, err), first = 0;
  if (rc != 0) {
    return rc;
  }
  for (size_t i = 0; i < n; i++) {
    const gkp_lease *l = &fs[i].lease;
    rc = bad_lease(l, err);
    if (rc == 0 && fs[i].counted) {
      rc = usage_locked(f, l, &fs[i].usage, err);
    }
    if (bad_lease(l, NULL) == 0) {
      release_locked(f, l, fs[i].sent);
    }
    if (rc != 0 && first == 0) {
      first = rc;
    }
  }
  end(f);
  return first;
}

static int fb_apply_verdict(gkp__backend *b, const gkp_lease *l, gkp_verdict *v, gkp_error *err) {
  fb *f = (fb *)b;
  gkp__instant t;
  int rc, ks, ps;
  if ((rc = bad_lease(l, err)) != 0 || (rc = begin(f, err)) != 0) {
    return rc;
  }
  ps = lease_pm(f, l, &ks, err);
  if (ps >= 0) {
    gkp__instant_at(&t, fb_now(f));
    gkp__store_save_recs(f->st, ks, ps);
    v->cooldown_until_ms = gkp__apply_rule(&f->st->keys[ks].c, &f->st->pms[ps].c, v, &t, rnd(f));
    gkp__store_commit(f->st);
    f->limits_changed++;
    if (v->http_status > 0) {
      f->st->hdr->down_since_ms = 0; /* the server answered */
    }
  }
  end(f);
  return ps < 0 ? ps : 0;
}

/* ---- open and close ---------------------------------------------------------------------------
 */

static const char *fb_where(gkp__backend *b) {
  return ((fb *)b)->st->path;
}

static void fb_close(gkp__backend *b, int forked) {
  fb *f = (fb *)b;
  if (f == NULL) {
    return;
  }
  /* A forked child shares the parent's lock and leases: it touches neither. */
  if (!forked && f->nown > 0 && f->cfg != NULL && begin(f, NULL) == 0) {
    for (uint32_t s = 0; s < f->st->hdr->lay.nkeys; s++) {
      gkp__key_rec *k = &f->st->keys[s];
      for (int i = 0; k->nleases > 0 && i < GKP__MAX_LEASES; i++) {
        if (k->leases[i].id != 0 && gkp__owner_same(&k->leases[i].owner, &f->self)) {
          for (size_t o = 0; o < f->nown; o++) {
            if (f->own[o] == k->leases[i].id) {
              gkp__store_save(f->st, &k->leases[i], sizeof k->leases[i]);
              gkp__store_save(f->st, &k->nleases, sizeof k->nleases);
              memset(&k->leases[i], 0, sizeof k->leases[i]);
              k->nleases--;
              gkp__store_commit(f->st);
              break;
            }
          }
        }
      }
    }
    end(f);
  }
  /* Closing a descriptor never unlocks a lock the parent's copy holds. */
  gkp__store_close(f->st);
  if (f->cfg != NULL) {
    gkp__config_unref(f->cfg);
  }
  free(f->cfg_keys.slot);
  free(f->pms.slot);
  free(f->key_slot);
  free(f->cfg_of_slot);
  free(f->pm_cache);
  forget_tpm(f);
  if (f->clients_fd >= 0) {
    close(f->clients_fd);
  }
  free(f->own);
  free(f);
}

/* ---- import ------------------------------------------------------------------------------ */

/* Puts a minute's totals in the bucket of `now` (an upper bound: they count
 * for a whole minute more). */
static void window_from_totals(gkp__window *w, int64_t now, int64_t reqs, int64_t tokens) {
  gkp__instant t;
  gkp__instant_at(&t, now);
  memset(w, 0, sizeof *w);
  w->floor_sec = t.dead_sec;
  gkp__bucket *b = gkp__bucket_of(w, now);
  b->sec = (uint32_t)(now / 1000);
  b->reqs = (uint32_t)reqs;
  b->tokens = tokens;
  w->sum_reqs = reqs;
  w->sum_tokens = tokens;
}

static int import_locked(fb *f, const gkp__snapshot *s, gkp_error *err) {
  size_t snm = s->cfg->nmodels;
  int64_t now = fb_now(f);
  for (size_t sk = 0; sk < s->cfg->nkeys; sk++) {
    int ki = cfg_key_index(f, s->cfg->keys[sk].id);
    if (ki < 0) {
      continue;
    }
    int ks = f->key_slot[ki];
    gkp__store_save_recs(f->st, ks, -1);
    f->st->keys[ks].c = s->keys[sk].c;
    gkp__store_commit(f->st);
    for (size_t sm = 0; sm < snm; sm++) {
      int pi = s->pm_of[sk * snm + sm], mi = model_index(f->cfg, s->cfg->models[sm].id);
      if (pi < 0 || mi < 0) {
        continue;
      }
      int ps = pm_attach(f, ki, mi, err);
      if (ps < 0) {
        return ps;
      }
      const gkp__snap_pm *e = &s->pms[pi];
      gkp__pm_counts *p = &f->st->pms[ps].c;
      gkp__store_save_recs(f->st, -1, ps);
      memcpy(p, &e->c, offsetof(gkp__pm_counts, win));
      window_from_totals(&p->win, now, e->reqs_minute, e->tokens_minute);
      gkp__store_commit(f->st);
    }
  }
  return 0;
}

static int fb_import(gkp__backend *b, const gkp__snapshot *s, gkp_error *err) {
  fb *f = (fb *)b;
  int rc = begin(f, err);
  if (rc != 0) {
    return rc;
  }
  rc = import_locked(f, s, err);
  end(f);
  return rc;
}

static void fb_set_lease_ttl(gkp__backend *b, int64_t ms) {
  ((fb *)b)->lease_ttl_ms = ms > 0 ? ms : GKP_LEASE_TTL_MS;
}

static const gkp__backend_ops file_ops = {
    .set_lease_ttl = fb_set_lease_ttl,
    .attach = fb_attach,
    .reserve = fb_reserve,
    .renew = fb_renew,
    .renew_many = fb_renew_many,
    .finish = fb_finish,
    .release = fb_release,
    .release_unreached = fb_release_unreached,
    .endpoint_down = fb_endpoint_down,
    .record_usage = fb_record_usage,
    .apply_verdict = fb_apply_verdict,
    .admin = fb_admin,
    .count_available = fb_count_available,
    .effective_limits = fb_effective_limits,
    .max_tpm = fb_max_tpm,
    .snapshot = fb_snapshot,
    .gc = fb_gc,
    .where = fb_where,
    .close = fb_close,
    .import = fb_import,
    .rate = gkp__fb_rate,
    .scores = gkp__fb_scores,
    .client_count = fb_client_count,
    .client_usage = fb_client_usage,
};

static void store_note(void *ud, const char *line) {
  fb *f = ud;
  if (f->log != NULL) {
    f->log(f->log_ud, GKP_LOG_WARN, line);
  }
}

int gkp__file_backend_open(const char *path, gkp_clock_fn clock, void *clock_ud, gkp_log_fn log,
                           void *log_ud, gkp__backend **out, gkp_error *err) {
  fb *f = calloc(1, sizeof *f);
  int rc;
  *out = NULL;
  if (f == NULL) {
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  f->base.ops = &file_ops;
  f->lease_ttl_ms = GKP_LEASE_TTL_MS;
  f->clients_fd = -1;
  f->clock = clock;
  f->clock_ud = clock_ud;
  f->log = log;
  f->log_ud = log_ud;
  gkp__owner_self(&f->self);
  f->rng = (uint64_t)gkp__now_ms() * 6364136223846793005ull ^ (uint64_t)f->self.pid;
  rc = gkp__store_open(path, fb_now(f), store_note, f, &f->st, err);
  if (rc != 0) {
    free(f);
    return rc;
  }
  *out = &f->base;
  return 0;
}
