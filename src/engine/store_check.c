/*
 * store_check.c - what the state file must be: a header and records that
 * validate (a file that does not is moved aside), and a local file system.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "common/err.h"
#include "common/timeutil.h"
#include "common/util.h"
#include "engine/store_impl.h"
#include "engine/store_v1.h"

/* ---- validation -------------------------------------------------------------- */

static int str_ok(const char *s, size_t size) {
  return memchr(s, '\0', size) != NULL;
}

static int kind_ok(int32_t k) {
  return k >= 0 && k < GKP__ERROR_KINDS;
}

static int key_rec_ok(const gkp__key_rec *k, uint32_t pm_cap) {
  if (k->used > 1 || k->c.disabled > 1 || k->nleases > GKP__MAX_LEASES) {
    return 0;
  }
  if (!str_ok(k->id, sizeof k->id) || !str_ok(k->project, sizeof k->project) ||
      !str_ok(k->c.disabled_reason, sizeof k->c.disabled_reason) || !kind_ok(k->c.cooldown_kind)) {
    return 0;
  }
  for (int i = 0; i < GKP__MAX_LEASES; i++) {
    if (k->leases[i].id != 0 && k->leases[i].pm_slot >= pm_cap) {
      return 0;
    }
  }
  return 1;
}

static int pm_rec_ok(const gkp__pm_rec *p) {
  const gkp__pm_counts *c = &p->c;
  if (p->used > 1 || c->proven > 1 || !kind_ok(c->cooldown_kind)) {
    return 0;
  }
  if (!str_ok(p->project, sizeof p->project) || !str_ok(p->model, sizeof p->model) ||
      !str_ok(c->last_error, sizeof c->last_error)) {
    return 0;
  }
  for (int i = 0; i < 3; i++) {
    if (c->learned[i] < -1 || c->learned[i] > COUNT_MAX) {
      return 0;
    }
  }
  if (c->day_count < 0 || c->day_count > COUNT_MAX || c->win.sum_reqs < 0 ||
      c->win.sum_reqs > COUNT_MAX || c->win.sum_tokens < 0 || c->win.sum_tokens > COUNT_MAX ||
      c->win.floor_sec < -COUNT_MAX || c->win.floor_sec > COUNT_MAX) {
    return 0;
  }
  for (int i = 0; i < GKP__WIN_SLOTS; i++) {
    if (c->win.b[i].tokens < 0 || c->win.b[i].tokens > COUNT_MAX) {
      return 0;
    }
  }
  return 1;
}

/* Whether [off, off + len) lies in a file of `size` bytes, past the header. */
static int region_ok(uint64_t off, uint64_t len, uint64_t size) {
  return off >= sizeof(gkp__store_hdr) && off <= size && len <= size - off && off % 8 == 0;
}

/* Checks the header of a format 2 file of `size` bytes.  Returns NULL if it
 * is sane, else what is wrong. */
const char *gkp__store_validate_hdr(const gkp__store_hdr *h, uint64_t size) {
  const gkp__layout *l = &h->lay;
  const gkp__journal *j = &h->journal;
  if (h->hdr_size != sizeof *h || h->key_rec_size != sizeof(gkp__key_rec) ||
      h->pm_rec_size != sizeof(gkp__pm_rec)) {
    return "its record sizes do not match its format";
  }
  if (l->file_size > size || l->key_cap > GKP__MAX_KEYS_LIMIT || l->pm_cap > GKP__MAX_PM_LIMIT ||
      l->nkeys > l->key_cap || l->npm > l->pm_cap ||
      !region_ok(l->key_off, (uint64_t)l->key_cap * sizeof(gkp__key_rec), l->file_size) ||
      !region_ok(l->pm_off, (uint64_t)l->pm_cap * sizeof(gkp__pm_rec), l->file_size)) {
    return "truncated, or its layout is out of range";
  }
  if (h->retired > 1 || h->lru_dirty > 1 || h->next_lease_id == 0 || j->n > GKP__JOURNAL_ENTRIES ||
      j->bytes > GKP__JOURNAL_BYTES) {
    return "header out of range";
  }
  for (uint32_t i = 0; i < j->n; i++) {
    const gkp__jentry *e = &j->e[i];
    if (e->off > l->file_size || e->len > l->file_size - e->off || e->data_off > j->bytes ||
        e->len > j->bytes - e->data_off) {
      return "its journal is damaged";
    }
  }
  return NULL;
}

const char *gkp__store_validate_recs(const gkp__store *st) {
  const gkp__layout *l = &st->hdr->lay;
  for (uint32_t i = 0; i < l->nkeys; i++) {
    if (!key_rec_ok(&st->keys[i], l->pm_cap)) {
      return "a key record is damaged";
    }
  }
  for (uint32_t i = 0; i < l->npm; i++) {
    if (!pm_rec_ok(&st->pms[i])) {
      return "a model record is damaged";
    }
  }
  return NULL;
}

/* Lease ids come from the header's counter and are never 0: a counter this
 * close to wrapping (a damaged or hostile file, or 2^32 leases after the
 * highest first id) would soon hand out 0, which no verb accepts, and then
 * ids already in use.  It restarts above every live lease's id below the
 * limit, in its own change. */
#define LEASE_ID_LIMIT (UINT64_MAX - (UINT64_C(1) << 20))

void gkp__store_repair_lease_ids(gkp__store *st) {
  gkp__store_hdr *h = st->hdr;
  if (h->next_lease_id != 0 && h->next_lease_id <= LEASE_ID_LIMIT) {
    return;
  }
  uint64_t next = 1;
  for (uint32_t i = 0; i < h->lay.nkeys; i++) {
    for (int k = 0; k < GKP__MAX_LEASES; k++) {
      uint64_t id = st->keys[i].leases[k].id;
      if (id != 0 && id <= LEASE_ID_LIMIT && id >= next) {
        next = id + 1;
      }
    }
  }
  gkp__store_save(st, &h->next_lease_id, sizeof h->next_lease_id);
  h->next_lease_id = next;
  gkp__store_commit(st);
}

/* Refuses a state file `path` whose directory `dir` is on a file system
 * whose mapped pages are not coherent between hosts (NFS, CIFS, FUSE). */
int gkp__store_check_fs(const char *dir, const char *path, gkp_error *err) {
  struct statfs sf;
  const char *name = NULL;
  if (statfs(dir, &sf) != 0) {
    return 0;
  }
  switch ((unsigned long)sf.f_type) {
  case 0x6969ul:
    name = "NFS";
    break;
  case 0xFF534D42ul:
  case 0xFE534D42ul:
  case 0x517Bul:
    name = "CIFS/SMB";
    break;
  case 0x65735546ul:
    name = "FUSE";
    break;
  default:
    return 0;
  }
  return gkp__err(err, -EXDEV,
                  "%s: the state file is on %s, where processes of different hosts do not see "
                  "one another's changes; put it on a local disk (--state FILE), or share a pool "
                  "between hosts with the Redis backend (--state redis://...) once available",
                  path, name);
}
