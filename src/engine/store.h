/*
 * store.h - the durable, shared state of a pool.
 *
 * The state file is a fixed-layout binary file mapped MAP_SHARED by every
 * process that uses the pool.  It holds one record per key (disabled flag,
 * key-wide cooldown, leases, last use) and one per (project, model) pair
 * (cooldown, request and token windows, requests today, learned limits).
 *
 * Concurrency: a transaction holds the process's mutex and an exclusive
 * flock() on the file, so threads and processes are serialised.  flock locks
 * die with their process, so a killed process never blocks the others.
 *
 * Crash safety: every change to records happens inside a "change": the
 * records about to be modified are first copied into the journal in the
 * header, the journal is marked active, the records are modified, and the
 * journal is cleared.  A process killed at any instruction leaves either no
 * active journal (the change is complete or never started) or an active one,
 * which the next transaction rolls back before doing anything else.  Since
 * MAP_SHARED pages belong to the kernel's page cache, stores a killed process
 * made are never lost.  (A power failure may lose recent changes; msync on
 * close and on demand narrows that window.)
 *
 * This is the narrow interface a second backend (e.g. Redis) would implement.
 */
#ifndef GKP_ENGINE_STORE_H
#define GKP_ENGINE_STORE_H

#include <pthread.h>
#include <stdint.h>

#include "gkp.h"

#define GKP__MAX_KEYS 256
#define GKP__MAX_PM 1024
#define GKP__MAX_LEASES 16
#define GKP__WIN_SLOTS 64 /* one-second buckets; a window spans at most 62 */
#define GKP__STORE_MAGIC "GKPSTATE"
/* Format 2 added the lease's boot-clock deadline, previous last use and
 * counted day, the time each learned limit was learned, and the endpoint
 * record in the header; a format-1 file is not readable by this version. */
#define GKP__STORE_VERSION 2u

typedef struct gkp__lease_rec {
  uint64_t id; /* 0: free slot */
  int64_t expires_ms;
  int64_t started_ms;
  int64_t est_tokens;
  int32_t pid;
  uint32_t pm_slot;
  /* The same deadline on the boot clock (CLOCK_BOOTTIME): a lease expires
   * only when both clocks say so, so a wall-clock step never reaps it. */
  int64_t boot_expires_ms;
  int64_t prev_used_ms; /* the key's last_used_ms before this lease */
  int64_t day_ms;       /* the Pacific day its request was counted in */
} gkp__lease_rec;

typedef struct gkp__key_rec {
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
  gkp__lease_rec leases[GKP__MAX_LEASES];
} gkp__key_rec;

typedef struct gkp__bucket {
  int64_t sec; /* the second (Unix time) this bucket counts */
  int64_t reqs;
  int64_t tokens;
} gkp__bucket;

typedef struct gkp__pm_rec {
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
  int64_t learned[3];    /* rpm, tpm, rpd learned from quotaValue; -1: none */
  int64_t learned_at[3]; /* when each was learned; it applies until the next
                            Pacific midnight after that */
  uint64_t requests_total;
  uint64_t tokens_in_total;
  uint64_t tokens_out_total;
  uint64_t errors[GKP_KIND_COUNT];
  char last_error[GKP_REASON_MAX];
  gkp__bucket win[GKP__WIN_SLOTS];
} gkp__pm_rec;

typedef struct gkp__journal {
  uint32_t active;
  int32_t key_slot; /* -1: none */
  int32_t pm_slot;  /* -1: none */
  uint32_t reserved0;
  gkp__key_rec key_copy;
  gkp__pm_rec pm_copy;
} gkp__journal;

typedef struct gkp__store_hdr {
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
  /* The API endpoint as last seen unreachable (nothing could be sent).
   * Written under the lock outside the journal: since_ms is cleared first
   * and set last, and readers bound the strings, so a torn write shows at
   * worst a stale reason. */
  int64_t down_since_ms; /* 0: the last contact reached the server */
  int64_t down_last_ms;  /* the latest failure */
  char down_url[256];
  char down_reason[GKP_REASON_MAX];
  gkp__journal journal;
} gkp__store_hdr;

typedef struct gkp__store {
  char *path;
  int fd;
  size_t size;
  gkp__store_hdr *hdr;
  gkp__key_rec *keys;
  gkp__pm_rec *pms;
  pthread_mutex_t mu;
  int in_tx;
} gkp__store;

/*
 * Opens or creates the state file at `path` (its directory must exist).  A
 * file that is not a valid state file is renamed to PATH.corrupt-UNIXTIME and
 * replaced by a fresh one; `moved_to` (if non-NULL, size >= 4096) receives
 * the new name of the old file, or "" if nothing was moved.
 * Returns 0 and *out, or a negative errno with err set.
 */
int gkp__store_open(const char *path, int64_t now_ms, gkp__store **out, char *moved_to,
                    gkp_error *err);

/* Unmaps and closes (after msync).  NULL is a no-op. */
void gkp__store_close(gkp__store *st);

/* Begins a transaction: takes the mutex and the file lock, and rolls back a
 * change a dead process left unfinished.  Returns 0 or a negative errno. */
int gkp__store_lock(gkp__store *st, gkp_error *err);

/* Ends a transaction. */
void gkp__store_unlock(gkp__store *st);

/* Starts a change that may modify key record `key_slot` and pm record
 * `pm_slot` (either may be -1).  Only these records may be modified until
 * gkp__store_commit.  Must be inside a transaction. */
void gkp__store_change(gkp__store *st, int key_slot, int pm_slot);

/* Completes the current change. */
void gkp__store_commit(gkp__store *st);

/* Finds the key record with `id`, or -1. */
int gkp__store_find_key(const gkp__store *st, const char *id);

/* Finds the pm record of (project, model), or -1. */
int gkp__store_find_pm(const gkp__store *st, const char *project, const char *model);

/* Finds or creates (in its own change) a key record; updates its project.
 * Returns the slot or a negative errno (-ENOSPC when full). */
int gkp__store_attach_key(gkp__store *st, const char *id, const char *project, gkp_error *err);

/* Finds or creates (in its own change) a pm record.  Returns the slot or a
 * negative errno. */
int gkp__store_attach_pm(gkp__store *st, const char *project, const char *model, gkp_error *err);

#endif
