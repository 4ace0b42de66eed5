/*
 * fb_miss.c - the answer of a reservation that finds no key, kept per model
 * and brought up to date from the state file's change log (store.h), so
 * that a reservation on an exhausted pool costs the records that changed
 * since the last one, not a walk of every key.
 *
 * Answers are kept for up to MISS_SIZES request sizes per model (a runner
 * retries the same requests), the least recently asked replaced.
 *
 * A walk that finds no key notes, for every configured key, when it may be
 * eligible (`ready`), why not now, and its last use.  The answer is the key
 * with the smallest (ready, last use, configuration index): the one that
 * frees up first, the least recently used among equals.  A tournament tree
 * over the keys keeps that minimum.  At the next reservation of the same
 * size the change log names the key and pair records committed since; only
 * the keys they concern are looked at again (a pair's record concerns the
 * keys of its project).  Without a change, a key's `ready` stays true until
 * that time comes: windows, days and cooldowns only run out.  A lease's
 * holder may die without a change, so the holders of busy keys (at most
 * MISS_HOLDERS processes) are checked alive, as a walk would.
 *
 * The walk takes over whenever this cannot answer exactly: a gap in the log
 * (more changes than it keeps, or a change made by a version without it), a
 * key that is eligible again, the clock at or past the soonest `ready`, or
 * behind the time of an answer, a holder gone, a new pair record for the
 * model, a different request size.
 */
#include <stdlib.h>
#include <string.h>

#include "engine/file_backend.h"

typedef struct kready {
  int64_t ready;
  int64_t last_used;
  int32_t reason;
  uint32_t walk; /* the walk that noted it */
} kready;

struct gkp__fb_miss {
  int valid;
  int64_t est;
  uint64_t used; /* when last asked (a counter) */
  uint32_t walk; /* the current walk, so that starting one clears nothing */
  uint64_t generation; /* of the file when last brought up to date */
  uint64_t changes_n;  /* the change log's count then */
  int64_t at_ms;       /* the latest instant an entry was computed at */
  size_t nkeys, leaves;
  kready *k;      /* per configured key */
  int *tree;      /* 2 * leaves: node i holds the better of 2i, 2i+1; -1: none */
  uint32_t npm;   /* pair slots known when built */
  int *pm_head;   /* pair slot -> first configured key counting against it */
  int *pm_next;   /* configured key -> next one of the same pair */
  int nholders;
  gkp__owner holders[MISS_HOLDERS];
};

int gkp__fb_earlier(int64_t ready_a, int64_t used_a, int a, int64_t ready_b, int64_t used_b,
                    int b) {
  if (ready_a != ready_b) {
    return ready_a < ready_b;
  }
  if (used_a != used_b) {
    return used_a < used_b;
  }
  return a < b;
}

static int better(const struct gkp__fb_miss *m, int a, int b) {
  if (a < 0 || b < 0) {
    return a < 0 ? b : a;
  }
  const kready *x = &m->k[a], *y = &m->k[b];
  return gkp__fb_earlier(x->ready, x->last_used, a, y->ready, y->last_used, b) ? a : b;
}

static void tree_update(struct gkp__fb_miss *m, size_t ki) {
  for (size_t i = (m->leaves + ki) / 2; i >= 1; i /= 2) {
    m->tree[i] = better(m, m->tree[2 * i], m->tree[2 * i + 1]);
  }
}

void gkp__fb_miss_free(fb *f) {
  if (f->miss != NULL) {
    for (size_t i = 0; i < f->nmiss; i++) {
      struct gkp__fb_miss *m = &f->miss[i];
      free(m->k);
      free(m->tree);
      free(m->pm_head);
      free(m->pm_next);
    }
    free(f->miss);
  }
  f->miss = NULL;
  f->nmiss = 0;
}

/* Adds the holders of key slot s's leases (too many: 0). */
static int add_holders(fb *f, int s, struct gkp__fb_miss *m) {
  const gkp__key_rec *k = &f->st->keys[s];
  for (int i = 0; k->nleases > 0 && i < GKP__MAX_LEASES; i++) {
    int known = 0;
    if (k->leases[i].id == 0) {
      continue;
    }
    for (int h = 0; h < m->nholders && !known; h++) {
      known = gkp__owner_same(&m->holders[h], &k->leases[i].owner);
    }
    if (!known && m->nholders == MISS_HOLDERS) {
      return 0;
    }
    if (!known) {
      m->holders[m->nholders++] = k->leases[i].owner;
    }
  }
  return 1;
}

/* The answer kept for (model mi, est), or NULL. */
static struct gkp__fb_miss *find(fb *f, int mi, int64_t est) {
  for (size_t i = 0; f->miss != NULL && i < MISS_SIZES; i++) {
    struct gkp__fb_miss *m = &f->miss[(size_t)mi * MISS_SIZES + i];
    if (m->valid && m->est == est) {
      return m;
    }
  }
  return NULL;
}

struct gkp__fb_miss *gkp__fb_miss_start(fb *f, int mi, int64_t est) {
  size_t nk = f->cfg->nkeys;
  if (f->miss == NULL) {
    f->nmiss = (f->cfg->nmodels + 1) * MISS_SIZES;
    f->miss = calloc(f->nmiss, sizeof *f->miss);
    if (f->miss == NULL) {
      f->nmiss = 0;
      return NULL;
    }
  }
  struct gkp__fb_miss *m = find(f, mi, est);
  if (m == NULL) { /* a free place, or the least recently asked */
    m = &f->miss[(size_t)mi * MISS_SIZES];
    for (size_t i = 1; i < MISS_SIZES; i++) {
      struct gkp__fb_miss *c = &f->miss[(size_t)mi * MISS_SIZES + i];
      if (m->valid && (!c->valid || c->used < m->used)) {
        m = c;
      }
    }
  }
  m->valid = 0;
  m->used = ++f->miss_clock;
  if (m->k == NULL || m->nkeys != nk) {
    size_t leaves = 1;
    while (leaves < nk) {
      leaves *= 2;
    }
    free(m->k);
    free(m->tree);
    free(m->pm_next);
    m->k = calloc(nk + 1, sizeof *m->k);
    m->tree = malloc(sizeof *m->tree * 2 * leaves);
    m->pm_next = malloc(sizeof *m->pm_next * (nk + 1));
    m->nkeys = nk;
    m->leaves = leaves;
    if (m->k == NULL || m->tree == NULL || m->pm_next == NULL) {
      free(m->k);
      free(m->tree);
      free(m->pm_next);
      m->k = NULL;
      m->tree = NULL;
      m->pm_next = NULL;
      return NULL;
    }
  }
  if (++m->walk == 0) { /* wrapped: forget every note */
    for (size_t i = 0; i < nk; i++) {
      m->k[i].walk = 0;
    }
    m->walk = 1;
  }
  m->est = est;
  m->nholders = 0;
  m->at_ms = INT64_MIN;
  return m;
}

void gkp__fb_miss_note(fb *f, struct gkp__fb_miss *m, int ki, int64_t ready, int reason,
                       int64_t now) {
  if (m == NULL) {
    return;
  }
  int s = f->key_slot[ki];
  m->k[ki].ready = ready;
  m->k[ki].last_used = f->st->keys[s].c.last_used_ms;
  m->k[ki].reason = reason;
  m->k[ki].walk = m->walk;
  if (now > m->at_ms) {
    m->at_ms = now;
  }
  if (reason == GKP_WAIT_BUSY && !add_holders(f, s, m)) {
    m->nholders = MISS_HOLDERS + 1; /* too many: not kept */
  }
}

void gkp__fb_miss_done(fb *f, struct gkp__fb_miss *m, int mi) {
  uint32_t npm = f->st->hdr->lay.npm;
  if (m == NULL || m->nholders > MISS_HOLDERS) {
    return;
  }
  for (size_t i = 0; i < m->nkeys; i++) {
    if (m->k[i].walk != m->walk) {
      return; /* a key the walk did not see (not linked yet): no answer kept */
    }
  }
  if (m->pm_head == NULL || m->npm < npm) {
    free(m->pm_head);
    m->pm_head = malloc(sizeof *m->pm_head * ((size_t)npm + 1));
    if (m->pm_head == NULL) {
      m->npm = 0;
      return;
    }
  }
  m->npm = npm;
  memset(m->pm_head, 0xff, sizeof *m->pm_head * ((size_t)npm + 1));
  for (size_t i = 0; i < m->nkeys; i++) {
    int ps = pm_slot_of(f, (int)i, mi);
    m->pm_next[i] = -1;
    if (ps >= 0 && (uint32_t)ps < npm) {
      m->pm_next[i] = m->pm_head[ps];
      m->pm_head[ps] = (int)i;
    }
  }
  for (size_t i = 0; i < m->leaves; i++) {
    m->tree[m->leaves + i] = i < m->nkeys ? (int)i : -1;
  }
  for (size_t i = m->leaves - 1; i >= 1; i--) {
    m->tree[i] = better(m, m->tree[2 * i], m->tree[2 * i + 1]);
  }
  m->generation = f->st->hdr->generation;
  m->changes_n = f->st->changes != NULL ? f->st->changes->n : 0;
  m->valid = 1;
}

/* Looks at configured key ki again; 0: the walk must answer. */
static int refresh_key(fb *f, struct gkp__fb_miss *m, int ki, int mi, const gkp__instant *t,
                       int *budget) {
  int64_t ready;
  int reason;
  if (--*budget < 0 || eligible(f, ki, mi, m->est, t, &ready, &reason)) {
    return 0;
  }
  gkp__fb_miss_note(f, m, ki, ready, reason, t->now);
  if (m->nholders > MISS_HOLDERS) {
    return 0;
  }
  tree_update(m, (size_t)ki);
  return 1;
}

/* Applies the change log's entries since m was last brought up to date;
 * 0: the walk must answer. */
static int catch_up(fb *f, struct gkp__fb_miss *m, int mi, const gkp__instant *t) {
  const gkp__store *st = f->st;
  const gkp__changes *c = st->changes;
  uint64_t g = st->hdr->generation, cur = m->generation, n;
  /* A change concerns a handful of keys; more than an eighth of them cost
   * about what the walk does. */
  int budget = m->nkeys / 8 > 16 ? (int)(m->nkeys / 8) : 16;

  if (g == m->generation) {
    return 1;
  }
  if (c == NULL || (n = c->n) < m->changes_n || n - m->changes_n > GKP__CHANGES) {
    return 0;
  }
  for (uint64_t i = m->changes_n; i < n; i++) {
    gkp__change e = c->e[i % GKP__CHANGES];
    if (e.generation <= m->generation) {
      continue;
    }
    if (e.generation > cur + 1 || e.generation > g) {
      return 0; /* a change not in the log */
    }
    cur = e.generation;
    if (e.tag == GKP__CHANGE_NONE) {
      continue;
    }
    if (e.tag == GKP__CHANGE_ALL) {
      return 0;
    }
    if (e.tag & GKP__CHANGE_PM) {
      uint32_t p = e.tag & ~GKP__CHANGE_PM;
      if (p < m->npm && m->pm_head[p] >= 0) {
        for (int ki = m->pm_head[p]; ki >= 0; ki = m->pm_next[ki]) {
          if (!refresh_key(f, m, ki, mi, t, &budget)) {
            return 0;
          }
        }
      } else if (p < st->hdr->lay.npm && st->pms[p].used &&
                 strcmp(st->pms[p].model, f->cfg->models[mi].id) == 0) {
        return 0; /* a new pair record of this model */
      }
      continue;
    }
    int ki = e.tag < f->ncfg_of_slot ? f->cfg_of_slot[e.tag] : -1;
    if (ki >= 0 && !refresh_key(f, m, ki, mi, t, &budget)) {
      return 0;
    }
  }
  if (cur != g) {
    return 0;
  }
  m->generation = g;
  m->changes_n = n;
  return 1;
}

int gkp__fb_miss_answer(fb *f, int mi, int64_t est, const gkp__instant *t, int *next_key,
                        int64_t *next, int *reason) {
  struct gkp__fb_miss *m = find(f, mi, est);
  if (m == NULL || f->miss_off || t->now < m->at_ms) {
    return 0;
  }
  m->used = ++f->miss_clock;
  if (!catch_up(f, m, mi, t)) {
    m->valid = 0;
    return 0;
  }
  for (int i = 0; i < m->nholders; i++) {
    if (!holder_alive(f, &m->holders[i])) {
      m->valid = 0;
      return 0;
    }
  }
  int best = m->tree[1];
  if (best < 0 || t->now >= m->k[best].ready) {
    return 0; /* a key may be eligible now */
  }
  *next_key = best;
  *next = m->k[best].ready;
  *reason = m->k[best].reason;
  f->miss_hits++;
  return 1;
}
