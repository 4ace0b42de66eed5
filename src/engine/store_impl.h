/*
 * store_impl.h - what the state file's three parts share: store.c (mapping,
 * journal, LRU links, transactions, growth), store_open.c (opening,
 * creating, upgrading, moving aside) and store_check.c (validation, the
 * file-system check).  Private to them.
 */
#ifndef GKP_ENGINE_STORE_IMPL_H
#define GKP_ENGINE_STORE_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "engine/store.h"

#define PAGE 4096u

/* The largest count, or time in seconds, a window bucket or the day count
 * may hold: far beyond anything the engine writes, and small enough that
 * sums over a window cannot overflow. */
#define COUNT_MAX (INT64_C(1) << 48)

static inline uint64_t round_up(uint64_t n) {
  return (n + PAGE - 1) / PAGE * PAGE;
}

/* store_check.c: NULL if the header (of a file of `size` bytes) and the
 * records are valid, else what is wrong; a state file `path` in directory
 * `dir` on NFS, CIFS or FUSE is refused with a negative errno. */
const char *gkp__store_validate_hdr(const gkp__store_hdr *h, uint64_t size);
const char *gkp__store_validate_recs(const gkp__store *st);
int gkp__store_check_fs(const char *dir, const char *path, gkp_error *err);
/* store_check.c: restarts the lease id counter when it is near wrapping
 * (inside a transaction, after the rollback). */
void gkp__store_repair_lease_ids(gkp__store *st);

/* store.c: unmaps; maps `size` bytes of st->fd; copies back an unfinished
 * change; whether the LRU links are sound, and relinking them. */
void gkp__store_unmap(gkp__store *st);
int gkp__store_map_size(gkp__store *st, size_t size, gkp_error *err);
void gkp__store_rollback(gkp__store *st);
int gkp__store_lru_ok(const gkp__store *st);
void gkp__store_lru_rebuild(gkp__store *st);

/* store_open.c: (re)opens the file at st->path, creating, upgrading or
 * replacing it as needed. */
int gkp__store_open_path(gkp__store *st, int64_t now_ms, gkp__store_note_fn note, void *note_ud,
                         gkp_error *err);

#endif
