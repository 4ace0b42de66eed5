/*
 * fs_map.h - hash maps for the filesystem's tables: string -> pointer and
 * uint64 -> pointer (open addressing, linear probing, backward-shift
 * deletion; no tombstones, so a map never degrades).
 *
 * The string map does not copy keys: a key must stay valid, unchanged, for
 * as long as its entry is in the map (it is normally the value's own name).
 * Not thread-safe: the caller locks.
 */
#ifndef GKP_FS_MAP_H
#define GKP_FS_MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct fs_smap_ent {
  uint64_t hash; /* 0: empty */
  const char *key;
  void *val;
} fs_smap_ent;

typedef struct fs_smap {
  fs_smap_ent *ents;
  size_t cap, n; /* cap: 0 or a power of two */
} fs_smap;

typedef struct fs_imap_ent {
  uint64_t key; /* 0: empty (0 is never a key) */
  void *val;
} fs_imap_ent;

typedef struct fs_imap {
  fs_imap_ent *ents;
  size_t cap, n;
} fs_imap;

/* The value for `key`, or NULL. */
void *fs_smap_get(const fs_smap *m, const char *key);
/* Inserts or replaces.  Returns 0 or -ENOMEM. */
int fs_smap_put(fs_smap *m, const char *key, void *val);
/* Removes `key`; returns its value or NULL. */
void *fs_smap_del(fs_smap *m, const char *key);
void fs_smap_free(fs_smap *m);
/* Iteration: *i starts at 0; returns the next value or NULL at the end. */
void *fs_smap_next(const fs_smap *m, size_t *i);

void *fs_imap_get(const fs_imap *m, uint64_t key);
int fs_imap_put(fs_imap *m, uint64_t key, void *val);
void *fs_imap_del(fs_imap *m, uint64_t key);
void fs_imap_free(fs_imap *m);
void *fs_imap_next(const fs_imap *m, size_t *i);

#endif
