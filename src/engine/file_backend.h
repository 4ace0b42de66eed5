/*
 * file_backend.h - the mapped-file backend's insides, shared by its files:
 * file_backend.c (the verbs on leases, attach, open and close), fb_index.c
 * (per-process indexes, holders' liveness, transactions) and fb_admin.c
 * (administration, expiry, the status snapshot).
 */
#ifndef GKP_ENGINE_FILE_BACKEND_H
#define GKP_ENGINE_FILE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "engine/backend.h"
#include "engine/store.h"

/* Leases live this long unless renewed (f->lease_ttl_ms: a test may set a
 * shorter lifetime). */
#define LEASE_TTL_MS (f->lease_ttl_ms)
/* A holder found alive is taken as alive for this long (a dead one's key
 * frees up at most this much later than it could). */
#define ALIVE_CACHE 16
#define ALIVE_FRESH_MS 1000
#define MAX_TPM_FRESH_MS 1000
#define MISS_HOLDERS 8
#define MISS_SIZES 4

/* An open-addressing index from one or two strings to a slot. */
typedef struct sindex {
  int *slot; /* -1: empty */
  size_t mask;
  size_t n; /* entries */
} sindex;

typedef struct fb {
  gkp__backend base;
  gkp__store *st;
  gkp_clock_fn clock;
  void *clock_ud;
  gkp_log_fn log;
  void *log_ud;
  gkp__owner self;
  uint64_t rng;
  int64_t lease_ttl_ms;
  /* Below: guarded by the store's mutex. */
  const gkp__config *cfg; /* attached; a reference */
  sindex cfg_keys;        /* key id -> cfg index */
  int *key_slot;          /* cfg index -> key slot */
  int *cfg_of_slot;       /* key slot -> cfg index, -1: not ours */
  size_t ncfg_of_slot;
  int *pm_cache; /* cfg key * nmodels + model -> pm slot, -1: none yet */
  sindex pms;    /* (project, model) -> pm slot, for the first `indexed_npm` */
  uint32_t indexed_npm;
  /* For max_tpm: one configured key per distinct project (built on first
   * use after a rebuild), and per model the answer last computed, reused
   * while the file is unchanged, or for MAX_TPM_FRESH_MS while this process
   * changed no limit (`limits_changed` counts its verdicts and admin). */
  int *proj_reps;
  size_t nproj_reps;
  struct tpm_memo {
    int valid;
    int64_t value;
    uint64_t generation;
    int64_t at_mono;
    uint64_t limits_changed;
  } * tpm_memo;
  uint64_t limits_changed;
  /* Per model, the answer of the last reservation that found no key, kept
   * up to date from the file's change log (fb_miss.c).  `miss_off` makes
   * every reservation walk the keys (tests compare both); `miss_hits`
   * counts the answers given without a walk. */
  struct gkp__fb_miss *miss; /* MISS_SIZES per model */
  size_t nmiss;
  uint64_t miss_clock;
  int miss_off;
  uint64_t miss_hits;
  uint64_t *own; /* ids of leases this process holds */
  size_t nown, capown;
  /* Holders found alive lately: reading /proc for every busy key on every
   * reservation would cost more than the reservation. */
  struct alive_seen {
    gkp__owner o;
    int64_t at_ms; /* monotonic */
  } alive[ALIVE_CACHE];
  unsigned alive_next;
  /* The callers' counts, in the file beside the state file (client_counts.h,
   * fb_clients.c): -1 until first used.  Guarded by the store's mutex. */
  int clients_fd;
} fb;

/* Internal names of the helpers the backend's files share. */
#define empty_pm gkp__fb_empty_pm
#define fb_now gkp__fb_now
#define rnd gkp__fb_rnd
#define model_index gkp__fb_model_index
#define cfg_key_index gkp__fb_cfg_key_index
#define own_add gkp__fb_own_add
#define own_remove gkp__fb_own_remove
#define find_pm gkp__fb_find_pm
#define pm_slot_of gkp__fb_pm_slot_of
#define pm_attach gkp__fb_pm_attach
#define lease_live gkp__fb_lease_live
#define holder_alive gkp__fb_holder_alive
#define key_has_live_lease gkp__fb_key_has_live_lease
#define rebuild gkp__fb_rebuild
#define begin gkp__fb_begin
#define end gkp__fb_end
#define reap gkp__fb_reap
#define sindex_init gkp__fb_sindex_init
#define sindex_find gkp__fb_sindex_find
#define same_cfg_key gkp__fb_same_cfg_key
#define unknown_model gkp__fb_unknown_model
#define unknown_key gkp__fb_unknown_key
#define index_new_pms gkp__fb_index_new_pms
#define eligible gkp__fb_eligible
#define fb_admin gkp__fb_admin
#define fb_count_available gkp__fb_count_available
#define fb_effective_limits gkp__fb_effective_limits
#define fb_gc gkp__fb_gc
#define fb_max_tpm gkp__fb_max_tpm
#define forget_tpm gkp__fb_forget_tpm
#define fb_snapshot gkp__fb_snapshot

/* A pm record that has never been used. */
const gkp__pm_counts *empty_pm(void);
/* The backend's clock, and a pseudo-random number (xorshift). */
int64_t fb_now(const fb *f);
uint64_t rnd(fb *f);
/* Index of a model in cfg, or -1; index of a configured key by id, or -1. */
int model_index(const gkp__config *cfg, const char *model);
int cfg_key_index(const fb *f, const char *id);
/* The ids of leases this process holds. */
int own_add(fb *f, uint64_t id);
void own_remove(fb *f, uint64_t id);
/* An open-addressing index of n entries; finding (a, b) with `same`. */
typedef int (*same_fn)(const void *ctx, int v, const char *a, const char *b);
int sindex_init(sindex *x, size_t n);
int sindex_find(const sindex *x, const void *ctx, same_fn same, const char *a, const char *b,
                size_t *pos);
int same_cfg_key(const void *ctx, int v, const char *a, const char *b);
void index_new_pms(fb *f);
/* The pm slot of (project, model), or -1; of (cfg key ki, model mi); the
 * same, created if needed. */
int find_pm(fb *f, const char *project, const char *model);
int pm_slot_of(fb *f, int ki, int mi);
int pm_attach(fb *f, int ki, int mi, gkp_error *err);
/* Whether a lease is still held (not expired on both clocks, holder not
 * gone); whether a key slot has one. */
int lease_live(fb *f, const gkp__lease_rec *l, int64_t now);
/* Whether the holder of a lease may be running (recent answers remembered). */
int holder_alive(fb *f, const gkp__owner *o);
int key_has_live_lease(fb *f, int s, int64_t now);
/* Removes key slot s's dead leases (adding to *reaped); returns the live. */
int reap(fb *f, int s, int64_t now, int *reaped);
/* Rebuilds the indexes for the attached configuration (reclaim: free the
 * records of keys it does not name).  Inside a transaction. */
int rebuild(fb *f, int reclaim, gkp_error *err);
/* A transaction with up-to-date indexes, and its end. */
int begin(fb *f, gkp_error *err);
void end(fb *f);
/* "unknown model/key" errors naming the configuration. */
int unknown_model(const fb *f, const char *model, gkp_error *err);
int unknown_key(const fb *f, const char *id, gkp_error *err);
/* Whether cfg key ki can take a request of `est` tokens on model mi at t;
 * *ready / *reason otherwise (file_backend.c). */
int eligible(fb *f, int ki, int mi, int64_t est, const gkp__instant *t, int64_t *ready,
             int *reason);

/* The callers' verbs of fb_clients.c (see backend.h), and closing their file. */
#define fb_client_count gkp__fb_client_count
#define fb_client_usage gkp__fb_client_usage
int fb_client_count(gkp__backend *b, const char *id, int kind, int64_t rpm, int64_t rpd,
                    int64_t *retry_s, gkp_error *err);
int fb_client_usage(gkp__backend *b, const char *id, gkp_client_usage *out, gkp_error *err);

/* The verbs of fb_admin.c (see backend.h). */
int fb_admin(gkp__backend *b, const gkp__admin *op, gkp_error *err);
int fb_count_available(gkp__backend *b, const char *model, gkp_error *err);
int fb_effective_limits(gkp__backend *b, const char *key_id, const char *model, gkp_limits *out,
                        gkp_error *err);
int fb_gc(gkp__backend *b, gkp_error *err);
int fb_max_tpm(gkp__backend *b, const char *model, int fresh, int64_t *out, gkp_error *err);
/* Drops what max_tpm and reserve remember (a rebuild, close). */
void forget_tpm(fb *f);
int fb_snapshot(gkp__backend *b, gkp__snapshot **out, gkp_error *err);

/* fb_miss.c: the answer of a reservation that finds no key.  A walk starts
 * a new one for model mi (NULL: none kept), notes every configured key it
 * looks at and, finding none eligible, completes it; gkp__fb_miss_answer
 * answers from it (1, with the soonest key, time and reason) or leaves the
 * question to a walk (0).  gkp__fb_earlier orders two keys' answers: the
 * sooner `ready`, then the less recently used, then the first configured. */
struct gkp__fb_miss *gkp__fb_miss_start(fb *f, int mi, int64_t est);
void gkp__fb_miss_note(fb *f, struct gkp__fb_miss *m, int ki, int64_t ready, int reason,
                       int64_t now);
void gkp__fb_miss_done(fb *f, struct gkp__fb_miss *m, int mi);
int gkp__fb_miss_answer(fb *f, int mi, int64_t est, const gkp__instant *t, int *next_key,
                        int64_t *next, int *reason);
int gkp__fb_earlier(int64_t ready_a, int64_t used_a, int a, int64_t ready_b, int64_t used_b,
                    int b);
void gkp__fb_miss_free(fb *f);

#endif
