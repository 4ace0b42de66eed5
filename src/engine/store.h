/*
 * store.h - the mapped state file, the first backend's storage.
 *
 * The state file is a binary file mapped MAP_SHARED by every process that
 * uses the pool: a header, a region of key records and a region of
 * (project, model) records.  Both regions grow (doubling, under the lock):
 * a grown region is copied to the end of the file and the header switched
 * to it in one journaled change; other processes remap when they see the
 * header's file size or layout generation change.
 *
 * Concurrency: a transaction holds the store's mutex and an exclusive flock()
 * on the file, so threads and processes are serialised.  flock locks die with
 * their process, so a killed process never blocks the others.
 *
 * Crash safety: before a byte range is modified inside a change it is copied
 * into the journal (gkp__store_save); gkp__store_commit empties the journal.
 * A process killed at any instruction leaves either an empty journal or one
 * whose ranges the next transaction copies back.  MAP_SHARED pages belong to
 * the kernel's page cache, so stores a killed process made are never lost.
 * The LRU links are not journaled: a header flag marks them being changed,
 * and a transaction that finds it set rebuilds them from last_used_ms.
 *
 * Moving aside: a file found damaged is marked retired (a word at a fixed
 * offset every format keeps) before it is renamed; every process checks the
 * mark when it takes the lock and moves to the file now at the path.
 * Format versions: 1 (fixed 256 keys / 1 024 pairs, leases named by a bare
 * pid) is upgraded under its lock into a file of this format renamed over
 * it; 2 (format 1 with clock-step fields and the endpoint record) is moved
 * aside; newer versions are refused.
 */
#ifndef GKP_ENGINE_STORE_H
#define GKP_ENGINE_STORE_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "engine/owner.h"
#include "engine/quota.h"
#include "gkp.h"

#define GKP__STORE_MAGIC "GKPSTATE"
#define GKP__STORE_VERSION 3u
#define GKP__MAX_LEASES 16
#define GKP__JOURNAL_ENTRIES 24
#define GKP__JOURNAL_BYTES 8192
#define GKP__KEYS_INITIAL 64
#define GKP__PMS_INITIAL 256
#define GKP__MAX_KEYS_LIMIT 1000000
#define GKP__MAX_PM_LIMIT 4000000

typedef struct gkp__lease_rec {
  uint64_t id; /* 0: free slot */
  int64_t expires_ms;
  int64_t started_ms;
  int64_t est_tokens;
  gkp__owner owner;
  uint32_t pm_slot;
  uint32_t reserved;
  /* The same deadline on the boot clock (CLOCK_BOOTTIME): a lease expires
   * only when both clocks say so, so a wall-clock step never reaps it. */
  int64_t boot_expires_ms;
  int64_t prev_used_ms; /* the key's last_used_ms before this lease */
  int64_t day_ms;       /* the Pacific day its request was counted in */
} gkp__lease_rec;

typedef struct gkp__key_rec {
  int32_t lru_prev, lru_next; /* -1: none; not journaled */
  uint32_t used;
  uint32_t nleases; /* leases in use (id != 0) */
  char id[GKP_ID_MAX];
  char project[GKP_ID_MAX];
  gkp__key_counts c;
  gkp__lease_rec leases[GKP__MAX_LEASES];
} gkp__key_rec;

typedef struct gkp__pm_rec {
  uint32_t used;
  uint32_t reserved;
  char project[GKP_ID_MAX];
  char model[GKP_ID_MAX];
  gkp__pm_counts c;
} gkp__pm_rec;

typedef struct gkp__jentry {
  uint64_t off; /* from the start of the file */
  uint32_t len;
  uint32_t data_off;
} gkp__jentry;

typedef struct gkp__journal {
  uint32_t n; /* valid entries; 0: nothing to roll back */
  uint32_t bytes;
  gkp__jentry e[GKP__JOURNAL_ENTRIES];
  unsigned char data[GKP__JOURNAL_BYTES];
} gkp__journal;

/* The fields a region's growth changes, journaled together. */
typedef struct gkp__layout {
  uint64_t file_size;
  uint64_t layout_gen; /* bumped when a slot is freed or reused (not appended) */
  uint64_t key_off, pm_off;
  uint32_t key_cap, pm_cap;
  uint32_t nkeys, npm; /* high-water marks of used slots */
} gkp__layout;

typedef struct gkp__store_hdr {
  char magic[8];
  uint32_t version;
  uint32_t retired; /* offset 12 in every format: moved aside, reopen the path */
  uint32_t hdr_size;
  uint32_t key_rec_size;
  uint32_t pm_rec_size;
  uint32_t lru_dirty; /* the LRU links are being changed */
  int64_t created_ms;
  uint64_t generation; /* bumped by every committed change */
  uint64_t next_lease_id;
  int32_t lru_head, lru_tail; /* least and most recently used key slots */
  /* The API endpoint as last seen unreachable (nothing could be sent).
   * Written under the lock outside the journal: since_ms is cleared first
   * and set last, and readers bound the strings, so a torn write shows at
   * worst a stale reason. */
  int64_t down_since_ms; /* 0: the last contact reached the server */
  int64_t down_last_ms;  /* the latest failure */
  char down_url[256];
  char down_reason[GKP_REASON_MAX];
  gkp__layout lay;
  gkp__journal journal;
} gkp__store_hdr;

/*
 * The change log: which records each committed change touched, so that a
 * process can bring what it derived from the records (the answer of a
 * reservation that found no key) up to date by looking at those records
 * alone.  It lives in the header's last page, after the header, which
 * every file of this format leaves zero (a file whose regions start before
 * its end has none).  gkp__store_commit bumps the generation and then
 * appends one entry per record the change saved (GKP__CHANGE_NONE when it
 * saved none), each with the new generation, before it empties the journal:
 * a change whose entries are missing (an older version's, or one cut short
 * by a kill) leaves a gap in the generations, and a reader that finds a
 * gap, or more than GKP__CHANGES entries since it last looked, starts over
 * from the records.  Entries of a change rolled back are harmless: they only
 * name records to look at again.
 */
#define GKP__CHANGES 128
#define GKP__CHANGE_PM 0x80000000u   /* tag | pm slot; else a key slot */
#define GKP__CHANGE_NONE 0xfffffffeu /* no record (the header only) */
#define GKP__CHANGE_ALL 0xffffffffu  /* too many to name */

typedef struct gkp__change {
  uint64_t generation;
  uint32_t tag;
  uint32_t reserved;
} gkp__change;

typedef struct gkp__changes {
  uint64_t n; /* entries ever appended; entry i is e[i % GKP__CHANGES] */
  uint64_t reserved;
  gkp__change e[GKP__CHANGES];
} gkp__changes;

#define GKP__CHANGES_OFF ((sizeof(gkp__store_hdr) + 63) / 64 * 64)

typedef struct gkp__store {
  char *path;
  int fd;
  size_t size; /* mapped bytes */
  gkp__store_hdr *hdr;
  gkp__key_rec *keys;
  gkp__pm_rec *pms;
  gkp__changes *changes; /* NULL: this file's layout leaves it no room */
  uint64_t seen_layout; /* layout_gen when the caller last rebuilt its indexes */
  int moved;            /* moved to a new file since the caller last looked */
  uint64_t locks;       /* transactions begun (the tests count them) */
  pthread_mutex_t mu;
} gkp__store;

/* Log lines the store has for its user (a damaged file moved, an upgrade). */
typedef void (*gkp__store_note_fn)(void *ud, const char *line);

/*
 * Opens or creates the state file at `path` (its directory must exist).
 * A version 1 file is upgraded; a newer one is refused; one that is not a
 * valid state file is moved to PATH.corrupt-UNIXTIME and replaced by a fresh
 * one.  A file on NFS, CIFS or FUSE is refused.  `note` receives what
 * happened (may be NULL).  Returns 0 and *out, or a negative errno with err.
 */
int gkp__store_open(const char *path, int64_t now_ms, gkp__store_note_fn note, void *note_ud,
                    gkp__store **out, gkp_error *err);

/* Unmaps and closes (after msync).  NULL is a no-op. */
void gkp__store_close(gkp__store *st);

/*
 * Begins a transaction: takes the mutex and the file lock, follows a file
 * that was moved aside, remaps after another process grew the file, rolls
 * back a change a dead process left unfinished and repairs the LRU links.
 * Returns 0, 1 when the layout changed since gkp__store_layout_seen (the
 * caller's slot indexes are stale), or a negative errno.
 */
int gkp__store_lock(gkp__store *st, gkp_error *err);

/* Ends a transaction. */
void gkp__store_unlock(gkp__store *st);

/* The caller has rebuilt its indexes for the current layout. */
void gkp__store_layout_seen(gkp__store *st);

/* Saves `len` bytes at `p` (inside the mapping) to the journal before they
 * are modified.  Inside a transaction; a change saves at most
 * GKP__JOURNAL_BYTES in GKP__JOURNAL_ENTRIES ranges. */
void gkp__store_save(gkp__store *st, const void *p, size_t len);

/* Completes the current change. */
void gkp__store_commit(gkp__store *st);

/* Saves a key record, LRU links apart, and a pm record (-1: none). */
void gkp__store_save_recs(gkp__store *st, int key_slot, int pm_slot);

/* A new key record (a free slot below the high-water mark if `reuse` >= 0,
 * else a new one, growing the file).  In its own change.  Returns the slot
 * or a negative errno. */
int gkp__store_new_key(gkp__store *st, const char *id, const char *project, int reuse,
                       gkp_error *err);

/* Same for a pm record. */
int gkp__store_new_pm(gkp__store *st, const char *project, const char *model, int reuse,
                      gkp_error *err);

/* Frees a key record (its slot may be reused); in its own change. */
void gkp__store_free_key(gkp__store *st, int slot);

/* Frees a pm record; in its own change. */
void gkp__store_free_pm(gkp__store *st, int slot);

/* Relinks the keys if records were added or freed (new_key, free_key leave
 * that to the end of a batch). */
void gkp__store_lru_repair(gkp__store *st);

/* Makes key `slot` the most recently used. */
void gkp__store_lru_touch(gkp__store *st, int slot);

#endif
