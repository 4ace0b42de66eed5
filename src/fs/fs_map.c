/*
 * fs_map.c - hash maps (see fs_map.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs/fs_map.h"

/* FNV-1a, never 0 (0 marks an empty slot). */
static uint64_t str_hash(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s != '\0'; s++) {
    h ^= (unsigned char)*s;
    h *= 1099511628211ull;
  }
  return h != 0 ? h : 1;
}

/* A 64-bit mixer (splitmix64's finaliser). */
static uint64_t int_hash(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

/* ---- string keys ------------------------------------------------------------ */

static size_t s_find(const fs_smap *m, const char *key, uint64_t h) {
  size_t mask = m->cap - 1, i = h & mask;
  while (m->ents[i].hash != 0) {
    if (m->ents[i].hash == h && strcmp(m->ents[i].key, key) == 0) {
      return i;
    }
    i = (i + 1) & mask;
  }
  return i; /* the empty slot where it would go */
}

void *fs_smap_get(const fs_smap *m, const char *key) {
  if (m->n == 0) {
    return NULL;
  }
  size_t i = s_find(m, key, str_hash(key));
  return m->ents[i].hash != 0 ? m->ents[i].val : NULL;
}

static int s_grow(fs_smap *m) {
  size_t cap = m->cap ? m->cap * 2 : 16;
  fs_smap_ent *old = m->ents, *ents = calloc(cap, sizeof *ents);
  size_t oldcap = m->cap;
  if (ents == NULL) {
    return -ENOMEM;
  }
  m->ents = ents;
  m->cap = cap;
  for (size_t j = 0; j < oldcap; j++) {
    if (old[j].hash != 0) {
      size_t i = old[j].hash & (cap - 1);
      while (ents[i].hash != 0) {
        i = (i + 1) & (cap - 1);
      }
      ents[i] = old[j];
    }
  }
  free(old);
  return 0;
}

int fs_smap_put(fs_smap *m, const char *key, void *val) {
  uint64_t h = str_hash(key);
  if ((m->n + 1) * 4 > m->cap * 3 && s_grow(m) != 0) {
    return -ENOMEM;
  }
  size_t i = s_find(m, key, h);
  if (m->ents[i].hash == 0) {
    m->n++;
  }
  m->ents[i].hash = h;
  m->ents[i].key = key;
  m->ents[i].val = val;
  return 0;
}

void *fs_smap_del(fs_smap *m, const char *key) {
  if (m->n == 0) {
    return NULL;
  }
  size_t mask = m->cap - 1, i = s_find(m, key, str_hash(key));
  if (m->ents[i].hash == 0) {
    return NULL;
  }
  void *val = m->ents[i].val;
  /* Backward-shift: move later members of the run into the hole. */
  size_t j = i;
  for (;;) {
    j = (j + 1) & mask;
    if (m->ents[j].hash == 0) {
      break;
    }
    size_t home = m->ents[j].hash & mask;
    if (((j - home) & mask) >= ((j - i) & mask)) {
      m->ents[i] = m->ents[j];
      i = j;
    }
  }
  m->ents[i].hash = 0;
  m->ents[i].key = NULL;
  m->ents[i].val = NULL;
  m->n--;
  return val;
}

void fs_smap_free(fs_smap *m) {
  free(m->ents);
  memset(m, 0, sizeof *m);
}

void *fs_smap_next(const fs_smap *m, size_t *i) {
  while (*i < m->cap) {
    const fs_smap_ent *e = &m->ents[(*i)++];
    if (e->hash != 0) {
      return e->val;
    }
  }
  return NULL;
}

/* ---- integer keys ------------------------------------------------------------ */

static size_t i_find(const fs_imap *m, uint64_t key) {
  size_t mask = m->cap - 1, i = int_hash(key) & mask;
  while (m->ents[i].key != 0 && m->ents[i].key != key) {
    i = (i + 1) & mask;
  }
  return i;
}

void *fs_imap_get(const fs_imap *m, uint64_t key) {
  if (m->n == 0 || key == 0) {
    return NULL;
  }
  size_t i = i_find(m, key);
  return m->ents[i].key == key ? m->ents[i].val : NULL;
}

static int i_grow(fs_imap *m) {
  size_t cap = m->cap ? m->cap * 2 : 16, oldcap = m->cap;
  fs_imap_ent *old = m->ents, *ents = calloc(cap, sizeof *ents);
  if (ents == NULL) {
    return -ENOMEM;
  }
  m->ents = ents;
  m->cap = cap;
  for (size_t j = 0; j < oldcap; j++) {
    if (old[j].key != 0) {
      size_t i = int_hash(old[j].key) & (cap - 1);
      while (ents[i].key != 0) {
        i = (i + 1) & (cap - 1);
      }
      ents[i] = old[j];
    }
  }
  free(old);
  return 0;
}

int fs_imap_put(fs_imap *m, uint64_t key, void *val) {
  if (key == 0) {
    return -EINVAL;
  }
  if ((m->n + 1) * 4 > m->cap * 3 && i_grow(m) != 0) {
    return -ENOMEM;
  }
  size_t i = i_find(m, key);
  if (m->ents[i].key == 0) {
    m->n++;
  }
  m->ents[i].key = key;
  m->ents[i].val = val;
  return 0;
}

void *fs_imap_del(fs_imap *m, uint64_t key) {
  if (m->n == 0 || key == 0) {
    return NULL;
  }
  size_t mask = m->cap - 1, i = i_find(m, key);
  if (m->ents[i].key != key) {
    return NULL;
  }
  void *val = m->ents[i].val;
  size_t j = i;
  for (;;) {
    j = (j + 1) & mask;
    if (m->ents[j].key == 0) {
      break;
    }
    size_t home = int_hash(m->ents[j].key) & mask;
    if (((j - home) & mask) >= ((j - i) & mask)) {
      m->ents[i] = m->ents[j];
      i = j;
    }
  }
  m->ents[i].key = 0;
  m->ents[i].val = NULL;
  m->n--;
  return val;
}

void fs_imap_free(fs_imap *m) {
  free(m->ents);
  memset(m, 0, sizeof *m);
}

void *fs_imap_next(const fs_imap *m, size_t *i) {
  while (*i < m->cap) {
    const fs_imap_ent *e = &m->ents[(*i)++];
    if (e->key != 0) {
      return e->val;
    }
  }
  return NULL;
}
