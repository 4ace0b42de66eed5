/*
 * store_v1.c - reading a format 1 state file, for the upgrade to format 2.
 *
 * Format 1 had room for 256 keys and 1 024 (project, model) pairs in fixed
 * arrays, leases that named their owner by a bare pid, and one-second
 * buckets of 24 bytes.  These are its records, exactly as it wrote them.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "engine/store_v1.h"

#define V1_MAX_KEYS 256
#define V1_MAX_PM 1024
#define V1_MAX_LEASES 16
#define V1_WIN_SLOTS 64
#define V1_KINDS 11

typedef struct v1_lease_rec {
  uint64_t id; /* 0: free slot */
  int64_t expires_ms;
  int64_t started_ms;
  int64_t est_tokens;
  int32_t pid;
  uint32_t pm_slot;
} v1_lease_rec;

typedef struct v1_key_rec {
  uint32_t used;
  uint32_t disabled;
  char id[GKP_ID_MAX];
  char project[GKP_ID_MAX];
  char disabled_reason[GKP_REASON_MAX];
  int64_t last_used_ms;
  uint64_t requests_total;
  int64_t cooldown_until_ms; /* key-wide cooldown (billing) */
  int32_t cooldown_kind;
  uint32_t nleases; /* leases in use (id != 0) */
  v1_lease_rec leases[V1_MAX_LEASES];
} v1_key_rec;

typedef struct v1_bucket {
  int64_t sec; /* the second (Unix time) this bucket counts */
  int64_t reqs;
  int64_t tokens;
} v1_bucket;

typedef struct v1_pm_rec {
  uint32_t used;
  uint32_t proven; /* a 2xx answer proved access to the model */
  char project[GKP_ID_MAX];
  char model[GKP_ID_MAX];
  int64_t cooldown_until_ms;
  int32_t cooldown_kind;
  uint32_t streak_429;    /* consecutive unknown_429s */
  uint32_t streak_server; /* consecutive server errors */
  uint32_t reserved0;
  int64_t day_start_ms; /* the Pacific midnight day_count counts from */
  int64_t day_count;
  int64_t learned[3]; /* rpm, tpm, rpd learned from quotaValue; -1: none */
  uint64_t requests_total;
  uint64_t tokens_in_total;
  uint64_t tokens_out_total;
  uint64_t errors[V1_KINDS];
  char last_error[GKP_REASON_MAX];
  v1_bucket win[V1_WIN_SLOTS];
} v1_pm_rec;

typedef struct v1_journal {
  uint32_t active;
  int32_t key_slot; /* -1: none */
  int32_t pm_slot;  /* -1: none */
  uint32_t reserved0;
  v1_key_rec key_copy;
  v1_pm_rec pm_copy;
} v1_journal;

typedef struct v1_store_hdr {
  char magic[8];
  uint32_t version;
  uint32_t hdr_size;
  uint32_t key_rec_size;
  uint32_t pm_rec_size;
  uint32_t max_keys;
  uint32_t max_pm;
  uint64_t file_size;
  int64_t created_ms;
  uint64_t generation; /* bumped by every committed change */
  uint64_t next_lease_id;
  uint32_t nkeys; /* high-water mark of used key slots */
  uint32_t npm;   /* high-water mark of used pm slots */
  v1_journal journal;
} v1_store_hdr;

size_t gkp__store_v1_size(void) {
  return sizeof(v1_store_hdr) + sizeof(v1_key_rec) * V1_MAX_KEYS + sizeof(v1_pm_rec) * V1_MAX_PM;
}

static void copy_str(char *dst, const char *src, size_t size) {
  size_t n = strnlen(src, size - 1);
  memcpy(dst, src, n);
  dst[n] = '\0';
}

static void convert_key(const v1_key_rec *o, gkp__v1_key *k) {
  memset(k, 0, sizeof *k);
  copy_str(k->id, o->id, sizeof k->id);
  copy_str(k->project, o->project, sizeof k->project);
  k->c.disabled = o->disabled != 0;
  copy_str(k->c.disabled_reason, o->disabled_reason, sizeof k->c.disabled_reason);
  k->c.last_used_ms = o->last_used_ms;
  k->c.requests_total = o->requests_total;
  k->c.cooldown_until_ms = o->cooldown_until_ms;
  k->c.cooldown_kind = o->cooldown_kind >= 0 && o->cooldown_kind < V1_KINDS ? o->cooldown_kind : 0;
}

static void convert_pm(const v1_pm_rec *o, gkp__v1_pm *p) {
  memset(p, 0, sizeof *p);
  gkp__pm_counts_init(&p->c);
  copy_str(p->project, o->project, sizeof p->project);
  copy_str(p->model, o->model, sizeof p->model);
  p->c.proven = o->proven != 0;
  p->c.cooldown_until_ms = o->cooldown_until_ms;
  p->c.cooldown_kind = o->cooldown_kind >= 0 && o->cooldown_kind < V1_KINDS ? o->cooldown_kind : 0;
  p->c.streak_429 = o->streak_429;
  p->c.streak_server = o->streak_server;
  p->c.day_start_ms = o->day_start_ms;
  p->c.day_count = o->day_count >= 0 ? o->day_count : 0;
  memcpy(p->c.learned, o->learned, sizeof p->c.learned);
  p->c.requests_total = o->requests_total;
  p->c.tokens_in_total = o->tokens_in_total;
  p->c.tokens_out_total = o->tokens_out_total;
  for (int e = 0; e < V1_KINDS; e++) {
    p->c.errors[e] = o->errors[e];
  }
  copy_str(p->c.last_error, o->last_error, sizeof p->c.last_error);
  /* Buckets keep their counts; the running sums start from all of them. */
  for (int i = 0; i < V1_WIN_SLOTS; i++) {
    const v1_bucket *b = &o->win[i];
    if (b->sec <= 0 || b->sec > UINT32_MAX || (b->reqs <= 0 && b->tokens <= 0)) {
      continue;
    }
    gkp__bucket *n = &p->c.win.b[(uint64_t)b->sec % GKP__WIN_SLOTS];
    n->sec = (uint32_t)b->sec;
    n->reqs = b->reqs > 0 && b->reqs < UINT32_MAX ? (uint32_t)b->reqs : 0;
    n->tokens = b->tokens > 0 ? b->tokens : 0;
    p->c.win.sum_reqs += n->reqs;
    p->c.win.sum_tokens += n->tokens;
  }
}

int gkp__store_v1_read(const void *map, size_t size, gkp__v1_contents *out, gkp_error *err) {
  const v1_store_hdr *h = map;
  const v1_key_rec *keys = (const v1_key_rec *)(h + 1);
  const v1_pm_rec *pms = (const v1_pm_rec *)(keys + V1_MAX_KEYS);

  memset(out, 0, sizeof *out);
  if (size < gkp__store_v1_size() || h->hdr_size != sizeof *h ||
      h->key_rec_size != sizeof(v1_key_rec) || h->pm_rec_size != sizeof(v1_pm_rec) ||
      h->nkeys > V1_MAX_KEYS || h->npm > V1_MAX_PM) {
    return 1;
  }
  out->keys = calloc(h->nkeys + 1, sizeof *out->keys);
  out->pms = calloc(h->npm + 1, sizeof *out->pms);
  if (out->keys == NULL || out->pms == NULL) {
    gkp__store_v1_free(out);
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  out->created_ms = h->created_ms;
  for (uint32_t i = 0; i < h->nkeys; i++) {
    /* A change a dead process left unfinished is undone on the way. */
    const v1_key_rec *k =
        h->journal.active && h->journal.key_slot == (int32_t)i ? &h->journal.key_copy : &keys[i];
    if (k->used) {
      convert_key(k, &out->keys[out->nkeys++]);
    }
  }
  for (uint32_t i = 0; i < h->npm; i++) {
    const v1_pm_rec *p =
        h->journal.active && h->journal.pm_slot == (int32_t)i ? &h->journal.pm_copy : &pms[i];
    if (p->used) {
      convert_pm(p, &out->pms[out->npm++]);
    }
  }
  return 0;
}

void gkp__store_v1_free(gkp__v1_contents *c) {
  free(c->keys);
  free(c->pms);
  memset(c, 0, sizeof *c);
}
