/*
 * store.c - the mapped state file: creation, validation, locking, journal.
 */
#include "engine/store.h"

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
#include "engine/store_v1.h"

/* Keeps the compiler from moving stores across a journal step.  A killed
 * process cannot tear an aligned word store, and the kernel keeps every
 * store it completed, so ordering in program order is all that matters. */
#define STORE_FENCE() atomic_signal_fence(memory_order_seq_cst)

#define PAGE 4096u

/* The largest count, or time in seconds, a window bucket or the day count
 * may hold: far beyond anything the engine writes, and small enough that
 * sums over a window cannot overflow. */
#define COUNT_MAX (INT64_C(1) << 48)

static uint64_t round_up(uint64_t n) {
  return (n + PAGE - 1) / PAGE * PAGE;
}

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
static const char *validate_hdr(const gkp__store_hdr *h, uint64_t size) {
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

static const char *validate_recs(const gkp__store *st) {
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

/* ---- mapping ---------------------------------------------------------------------- */

static void set_regions(gkp__store *st) {
  st->keys = (gkp__key_rec *)((char *)st->hdr + st->hdr->lay.key_off);
  st->pms = (gkp__pm_rec *)((char *)st->hdr + st->hdr->lay.pm_off);
}

static void unmap(gkp__store *st) {
  if (st->hdr != NULL) {
    munmap(st->hdr, st->size);
    st->hdr = NULL;
    st->keys = NULL;
    st->pms = NULL;
    st->size = 0;
  }
}

/* Maps `size` bytes of the open file. */
static int map_size(gkp__store *st, size_t size, gkp_error *err) {
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, st->fd, 0);
  if (p == MAP_FAILED) {
    return gkp__err(err, -errno, "%s: cannot map the state file: %s", st->path, strerror(errno));
  }
  unmap(st);
  st->hdr = p;
  st->size = size;
  set_regions(st);
  return 0;
}

/* ---- the journal ------------------------------------------------------------------- */

void gkp__store_save(gkp__store *st, const void *p, size_t len) {
  gkp__journal *j = &st->hdr->journal;
  uint64_t off = (uint64_t)((const char *)p - (const char *)st->hdr);
  if (j->n >= GKP__JOURNAL_ENTRIES || len > GKP__JOURNAL_BYTES - j->bytes) {
    abort(); /* a change larger than the journal: a bug, never data */
  }
  memcpy(j->data + j->bytes, p, len);
  j->e[j->n].off = off;
  j->e[j->n].len = (uint32_t)len;
  j->e[j->n].data_off = j->bytes;
  j->bytes += (uint32_t)len;
  STORE_FENCE();
  j->n++;
  STORE_FENCE();
}

void gkp__store_commit(gkp__store *st) {
  STORE_FENCE();
  st->hdr->generation++;
  st->hdr->journal.n = 0;
  STORE_FENCE();
  st->hdr->journal.bytes = 0;
}

/* Undoes the change a dead process left half done, newest range first. */
static void rollback(gkp__store *st) {
  gkp__journal *j = &st->hdr->journal;
  while (j->n > 0) {
    const gkp__jentry *e = &j->e[j->n - 1];
    memcpy((char *)st->hdr + e->off, j->data + e->data_off, e->len);
    STORE_FENCE();
    j->n--;
    STORE_FENCE();
  }
  j->bytes = 0;
}

void gkp__store_save_recs(gkp__store *st, int key_slot, int pm_slot) {
  if (key_slot >= 0) {
    gkp__key_rec *k = &st->keys[key_slot];
    gkp__store_save(st, &k->used, sizeof *k - offsetof(gkp__key_rec, used));
  }
  if (pm_slot >= 0) {
    gkp__store_save(st, &st->pms[pm_slot], sizeof st->pms[pm_slot]);
  }
}

/* ---- LRU links ---------------------------------------------------------------------- */

static int cmp_lru(const void *a, const void *b, void *ud) {
  const gkp__key_rec *keys = ud;
  int x = *(const int *)a, y = *(const int *)b;
  int64_t ux = keys[x].c.last_used_ms, uy = keys[y].c.last_used_ms;
  if (ux != uy) {
    return ux < uy ? -1 : 1;
  }
  return (x > y) - (x < y);
}

/* Relinks every used key, least recently used first (ties: slot order). */
static void lru_rebuild(gkp__store *st) {
  gkp__store_hdr *h = st->hdr;
  uint32_t n = 0;
  int *order = malloc(sizeof(int) * (h->lay.nkeys + 1));
  h->lru_dirty = 1;
  STORE_FENCE();
  if (order == NULL) {
    return; /* stays dirty: the next transaction tries again */
  }
  for (uint32_t i = 0; i < h->lay.nkeys; i++) {
    if (st->keys[i].used) {
      order[n++] = (int)i;
    } else {
      st->keys[i].lru_prev = st->keys[i].lru_next = -1;
    }
  }
  qsort_r(order, n, sizeof *order, cmp_lru, st->keys);
  for (uint32_t i = 0; i < n; i++) {
    st->keys[order[i]].lru_prev = i > 0 ? order[i - 1] : -1;
    st->keys[order[i]].lru_next = i + 1 < n ? order[i + 1] : -1;
  }
  h->lru_head = n > 0 ? order[0] : -1;
  h->lru_tail = n > 0 ? order[n - 1] : -1;
  free(order);
  STORE_FENCE();
  h->lru_dirty = 0;
}

/* Whether the links form one list of exactly the used keys. */
static int lru_ok(const gkp__store *st) {
  const gkp__store_hdr *h = st->hdr;
  uint32_t used = 0, seen = 0;
  int prev = -1;
  for (uint32_t i = 0; i < h->lay.nkeys; i++) {
    used += st->keys[i].used;
  }
  for (int s = h->lru_head; s != -1; s = st->keys[s].lru_next) {
    if (s < 0 || (uint32_t)s >= h->lay.nkeys || !st->keys[s].used || st->keys[s].lru_prev != prev ||
        ++seen > used) {
      return 0;
    }
    prev = s;
  }
  return seen == used && h->lru_tail == prev;
}

static void lru_unlink(gkp__store *st, int s) {
  gkp__key_rec *k = &st->keys[s];
  if (k->lru_prev >= 0) {
    st->keys[k->lru_prev].lru_next = k->lru_next;
  } else {
    st->hdr->lru_head = k->lru_next;
  }
  if (k->lru_next >= 0) {
    st->keys[k->lru_next].lru_prev = k->lru_prev;
  } else {
    st->hdr->lru_tail = k->lru_prev;
  }
  k->lru_prev = k->lru_next = -1;
}

static void lru_append(gkp__store *st, int s) {
  gkp__key_rec *k = &st->keys[s];
  k->lru_prev = st->hdr->lru_tail;
  k->lru_next = -1;
  if (st->hdr->lru_tail >= 0) {
    st->keys[st->hdr->lru_tail].lru_next = s;
  } else {
    st->hdr->lru_head = s;
  }
  st->hdr->lru_tail = s;
}

void gkp__store_lru_repair(gkp__store *st) {
  if (st->hdr->lru_dirty) {
    lru_rebuild(st);
  }
}

void gkp__store_lru_touch(gkp__store *st, int slot) {
  if (st->hdr->lru_tail == slot) {
    return;
  }
  st->hdr->lru_dirty = 1;
  STORE_FENCE();
  lru_unlink(st, slot);
  lru_append(st, slot);
  STORE_FENCE();
  st->hdr->lru_dirty = 0;
}

/* ---- creating, upgrading, opening --------------------------------------------------- */

static uint64_t first_lease_id(int64_t now_ms) {
  /* Lease ids of different files never meet: a release that outlives a
   * moved-aside file cannot end a lease of the new one. */
  uint64_t x = (uint64_t)now_ms * 6364136223846793005ull ^ (uint64_t)getpid() << 32;
  return (x & 0x0000ffffffff0000ull) << 16 | 1;
}

/* The header and layout of a fresh file with room for nk keys, np pairs. */
static void fresh_header(gkp__store_hdr *h, int64_t now_ms, uint32_t nk, uint32_t np) {
  memset(h, 0, sizeof *h);
  memcpy(h->magic, GKP__STORE_MAGIC, 8);
  h->version = GKP__STORE_VERSION;
  h->hdr_size = sizeof *h;
  h->key_rec_size = sizeof(gkp__key_rec);
  h->pm_rec_size = sizeof(gkp__pm_rec);
  h->created_ms = now_ms;
  h->next_lease_id = first_lease_id(now_ms);
  h->lru_head = h->lru_tail = -1;
  h->lay.key_cap = nk;
  h->lay.pm_cap = np;
  h->lay.key_off = round_up(sizeof *h);
  h->lay.pm_off = round_up(h->lay.key_off + (uint64_t)nk * sizeof(gkp__key_rec));
  h->lay.file_size = round_up(h->lay.pm_off + (uint64_t)np * sizeof(gkp__pm_rec));
}

static uint32_t cap_for(size_t n, uint32_t initial) {
  uint32_t c = initial;
  while (c < n) {
    c *= 2;
  }
  return c;
}

/* Writes a file (header, then records) at a temporary name and links or
 * renames it to `path`.  `replace` 0: never replaces an existing file. */
static int write_file(const char *path, const gkp__store_hdr *h, const gkp__v1_contents *v1,
                      int replace, gkp_error *err) {
  char tmp[4200];
  int fd, rc = 0;
  /* An unpredictable name, created exclusively: nothing planted there is
   * followed or reused. */
  snprintf(tmp, sizeof tmp, "%s.new-XXXXXX", path);
  fd = mkostemp(tmp, O_CLOEXEC);
  if (fd < 0) {
    return gkp__err(err, -errno, "%s: cannot create the state file: %s", tmp, strerror(errno));
  }
  if (ftruncate(fd, (off_t)h->lay.file_size) != 0) {
    rc = -errno;
  }
  for (size_t i = 0; rc == 0 && v1 != NULL && i < v1->nkeys; i++) {
    gkp__key_rec k;
    memset(&k, 0, sizeof k);
    k.used = 1;
    memcpy(k.id, v1->keys[i].id, sizeof k.id);
    memcpy(k.project, v1->keys[i].project, sizeof k.project);
    k.c = v1->keys[i].c;
    if (pwrite(fd, &k, sizeof k, (off_t)(h->lay.key_off + i * sizeof k)) != (ssize_t)sizeof k) {
      rc = -errno;
    }
  }
  for (size_t i = 0; rc == 0 && v1 != NULL && i < v1->npm; i++) {
    gkp__pm_rec p;
    memset(&p, 0, sizeof p);
    p.used = 1;
    memcpy(p.project, v1->pms[i].project, sizeof p.project);
    memcpy(p.model, v1->pms[i].model, sizeof p.model);
    p.c = v1->pms[i].c;
    if (pwrite(fd, &p, sizeof p, (off_t)(h->lay.pm_off + i * sizeof p)) != (ssize_t)sizeof p) {
      rc = -errno;
    }
  }
  if (rc == 0 && (pwrite(fd, h, sizeof *h, 0) != (ssize_t)sizeof *h || fsync(fd) != 0)) {
    rc = -errno;
  }
  close(fd);
  if (rc != 0) {
    gkp__err(err, rc, "%s: cannot write the state file: %s", tmp, strerror(-rc));
  } else if (replace ? rename(tmp, path) != 0 : (link(tmp, path) != 0 && errno != EEXIST)) {
    rc = gkp__err(err, -errno, "%s: cannot create the state file: %s", path, strerror(errno));
  }
  unlink(tmp);
  return rc;
}

/* Creates a fresh state file at `path` unless one appears meanwhile. */
static int create_file(const char *path, int64_t now_ms, gkp_error *err) {
  gkp__store_hdr *h = malloc(sizeof *h);
  int rc;
  if (h == NULL) {
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  fresh_header(h, now_ms, GKP__KEYS_INITIAL, GKP__PMS_INITIAL);
  rc = write_file(path, h, NULL, 0, err);
  free(h);
  return rc;
}

/* Replaces the format 1 file open on fd (locked) with a format 2 file that
 * keeps its records.  Returns 0, 1 if it is not a sane format 1 file, or a
 * negative errno. */
static int upgrade_v1(gkp__store *st, size_t size, int64_t now_ms, gkp_error *err) {
  gkp__v1_contents v1;
  gkp__store_hdr *h;
  void *map;
  int rc;
  if (size != gkp__store_v1_size()) {
    return 1;
  }
  map = mmap(NULL, size, PROT_READ, MAP_SHARED, st->fd, 0);
  if (map == MAP_FAILED) {
    return gkp__err(err, -errno, "%s: cannot map the state file: %s", st->path, strerror(errno));
  }
  rc = gkp__store_v1_read(map, size, &v1, err);
  munmap(map, size);
  if (rc != 0) {
    return rc;
  }
  h = malloc(sizeof *h);
  if (h == NULL) {
    gkp__store_v1_free(&v1);
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  fresh_header(h, v1.created_ms != 0 ? v1.created_ms : now_ms, cap_for(v1.nkeys, GKP__KEYS_INITIAL),
               cap_for(v1.npm, GKP__PMS_INITIAL));
  h->lay.nkeys = (uint32_t)v1.nkeys;
  h->lay.npm = (uint32_t)v1.npm;
  h->lru_dirty = 1; /* the first transaction links the keys by last use */
  rc = write_file(st->path, h, &v1, 1, err);
  free(h);
  gkp__store_v1_free(&v1);
  return rc;
}

/* Refuses a state file `path` whose directory `dir` is on a file system
 * whose mapped pages are not coherent between hosts (NFS, CIFS, FUSE). */
static int check_fs(const char *dir, const char *path, gkp_error *err) {
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

/* Marks the file open on st->fd retired and moves it aside (if the path
 * still names it).  Under the file's lock. */
static void move_aside(gkp__store *st, int64_t now_ms, const char *why, gkp__store_note_fn note,
                       void *note_ud) {
  char aside[4200], line[4400];
  struct stat a, b;
  uint32_t one = 1;
  if (fstat(st->fd, &b) == 0 && b.st_size >= 16) {
    /* Processes that have it mapped see this when they next take the lock. */
    if (pwrite(st->fd, &one, sizeof one, 12) != (ssize_t)sizeof one) {
      return;
    }
  }
  snprintf(aside, sizeof aside, "%s.corrupt-%lld", st->path, (long long)(now_ms / 1000));
  if (stat(st->path, &a) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev &&
      rename(st->path, aside) == 0 && note != NULL) {
    snprintf(line, sizeof line,
             "%s: the state file was damaged (%s); moved it to %s and started a fresh one",
             st->path, why, aside);
    note(note_ud, line);
  }
}

/* One attempt at opening the file at st->path, with st->fd open and locked.
 * Returns 0 (mapped), 1 (try again: created, upgraded or moved aside), or a
 * negative errno. */
static int open_locked(gkp__store *st, int64_t now_ms, gkp__store_note_fn note, void *note_ud,
                       gkp_error *err) {
  struct stat sb;
  gkp__store_hdr *h;
  const char *why = NULL;
  int rc;

  if (fstat(st->fd, &sb) != 0) {
    return gkp__err(err, -errno, "%s: %s", st->path, strerror(errno));
  }
  if (!S_ISREG(sb.st_mode)) {
    return gkp__err(err, -EINVAL, "%s: not a regular file; name the state file itself", st->path);
  }
  h = malloc(sizeof *h);
  if (h == NULL) {
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  memset(h, 0, sizeof *h);
  if ((size_t)sb.st_size < 16 || pread(st->fd, h, sizeof *h, 0) < 16) {
    why = "shorter than its header";
  } else if (memcmp(h->magic, GKP__STORE_MAGIC, 8) != 0) {
    why = "not a gemini-pool state file";
  } else if (h->version > GKP__STORE_VERSION) {
    rc = gkp__err(err, -EPROTO,
                  "%s: state written by a newer gemini-pool (format %u); upgrade or use another "
                  "--state",
                  st->path, h->version);
    free(h);
    return rc;
  } else if (h->version == 1) {
    free(h);
    rc = upgrade_v1(st, (size_t)sb.st_size, now_ms, err);
    if (rc == 0 && note != NULL) {
      char line[4300];
      snprintf(line, sizeof line, "%s: upgraded the state file to format %u", st->path,
               GKP__STORE_VERSION);
      note(note_ud, line);
    }
    if (rc <= 0) {
      return rc < 0 ? rc : 1;
    }
    why = "a damaged format 1 file";
    h = NULL;
  } else if (h->version == 2) {
    why = "format 2, written by a development version";
  } else if (h->version != GKP__STORE_VERSION || (size_t)sb.st_size < sizeof *h) {
    why = "written by an incompatible version";
  } else if (h->retired) {
    why = "retired, yet still at its path";
  } else {
    why = validate_hdr(h, (uint64_t)sb.st_size);
  }
  if (why == NULL) {
    rc = map_size(st, h->lay.file_size, err);
    free(h);
    if (rc != 0) {
      return rc;
    }
    rollback(st);
    why = validate_recs(st);
    if (why == NULL) {
      if (st->hdr->lru_dirty || !lru_ok(st)) {
        lru_rebuild(st);
      }
      return 0;
    }
    unmap(st);
  } else {
    free(h);
  }
  move_aside(st, now_ms, why, note, note_ud);
  return 1;
}

/* Opens whatever file is at st->path now, into st (fd and mapping). */
static int open_path(gkp__store *st, int64_t now_ms, gkp__store_note_fn note, void *note_ud,
                     gkp_error *err) {
  for (int attempt = 0; attempt < 4; attempt++) {
    int rc;
    st->fd = open(st->path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (st->fd < 0 && errno == ENOENT) {
      rc = create_file(st->path, now_ms, err);
      if (rc < 0) {
        return rc;
      }
      continue;
    }
    if (st->fd < 0 && errno == ELOOP) {
      return gkp__err(err, -ELOOP,
                      "%s: is a symbolic link, and the state file is never opened through one; "
                      "remove the link (or pass --state with the real file)",
                      st->path);
    }
    if (st->fd < 0) {
      return gkp__err(err, -errno, "%s: cannot open the state file: %s", st->path, strerror(errno));
    }
    if (flock(st->fd, LOCK_EX) != 0) {
      rc = gkp__err(err, -errno, "%s: cannot lock the state file: %s", st->path, strerror(errno));
    } else {
      rc = open_locked(st, now_ms, note, note_ud, err);
      flock(st->fd, LOCK_UN);
    }
    if (rc == 0) {
      return 0;
    }
    close(st->fd);
    st->fd = -1;
    if (rc < 0) {
      return rc;
    }
  }
  return gkp__err(err, -EIO, "%s: the state file keeps turning out invalid; remove it", st->path);
}

int gkp__store_open(const char *path, int64_t now_ms, gkp__store_note_fn note, void *note_ud,
                    gkp__store **out, gkp_error *err) {
  gkp__store *st;
  char dir[4200];
  char *slash;
  int rc;

  *out = NULL;
  snprintf(dir, sizeof dir, "%s", path);
  slash = strrchr(dir, '/');
  if (slash != NULL) {
    slash[slash == dir ? 1 : 0] = '\0';
  }
  rc = check_fs(slash != NULL ? dir : ".", path, err);
  if (rc != 0) {
    return rc;
  }
  st = calloc(1, sizeof *st);
  if (st == NULL || (st->path = strdup(path)) == NULL) {
    free(st);
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  st->fd = -1;
  pthread_mutex_init(&st->mu, NULL);
  rc = open_path(st, now_ms, note, note_ud, err);
  if (rc != 0) {
    gkp__store_close(st);
    return rc;
  }
  *out = st;
  return 0;
}

void gkp__store_close(gkp__store *st) {
  if (st == NULL) {
    return;
  }
  if (st->hdr != NULL) {
    msync(st->hdr, st->size, MS_ASYNC);
    unmap(st);
  }
  if (st->fd >= 0) {
    close(st->fd);
  }
  pthread_mutex_destroy(&st->mu);
  free(st->path);
  free(st);
}

/* ---- transactions ------------------------------------------------------------------- */

static int flock_ex(gkp__store *st, gkp_error *err) {
  while (flock(st->fd, LOCK_EX) != 0) {
    if (errno != EINTR) {
      return gkp__err(err, -errno, "%s: cannot lock the state file: %s", st->path, strerror(errno));
    }
  }
  return 0;
}

/* Follows the file now at the path after this one was moved aside. */
static int follow_move(gkp__store *st, gkp_error *err) {
  flock(st->fd, LOCK_UN);
  unmap(st);
  close(st->fd);
  st->fd = -1;
  st->moved = 1;
  return open_path(st, gkp__now_ms(), NULL, NULL, err);
}

int gkp__store_lock(gkp__store *st, gkp_error *err) {
  int rc;
  pthread_mutex_lock(&st->mu);
  if (st->fd < 0) {
    rc = open_path(st, gkp__now_ms(), NULL, NULL, err);
    if (rc != 0) {
      pthread_mutex_unlock(&st->mu);
      return rc;
    }
  }
  for (;;) {
    rc = flock_ex(st, err);
    if (rc == 0 && st->hdr->retired) {
      rc = follow_move(st, err);
      if (rc == 0) {
        continue;
      }
    }
    break;
  }
  if (rc == 0 && st->hdr->lay.file_size != st->size) {
    rc = map_size(st, st->hdr->lay.file_size, err);
  }
  if (rc != 0) {
    if (st->fd >= 0) {
      flock(st->fd, LOCK_UN);
    }
    pthread_mutex_unlock(&st->mu);
    return rc;
  }
  rollback(st);
  if (st->hdr->lay.file_size != st->size) { /* a grower died before committing */
    rc = map_size(st, st->hdr->lay.file_size, err);
    if (rc != 0) {
      flock(st->fd, LOCK_UN);
      pthread_mutex_unlock(&st->mu);
      return rc;
    }
  }
  if (st->hdr->lru_dirty) {
    lru_rebuild(st);
  }
  return st->moved || st->hdr->lay.layout_gen != st->seen_layout ? 1 : 0;
}

void gkp__store_unlock(gkp__store *st) {
  flock(st->fd, LOCK_UN);
  pthread_mutex_unlock(&st->mu);
}

void gkp__store_layout_seen(gkp__store *st) {
  st->seen_layout = st->hdr->lay.layout_gen;
  st->moved = 0;
}

/* ---- records ------------------------------------------------------------------------- */

/* Moves the key (which != 0) or pm region to a new one twice as large at the
 * end of the file.  Returns 0 or a negative errno. */
static int grow(gkp__store *st, int which_keys, gkp_error *err) {
  gkp__layout *l = &st->hdr->lay;
  size_t rec = which_keys ? sizeof(gkp__key_rec) : sizeof(gkp__pm_rec);
  uint32_t cap = which_keys ? l->key_cap : l->pm_cap;
  uint32_t limit = which_keys ? GKP__MAX_KEYS_LIMIT : GKP__MAX_PM_LIMIT;
  uint64_t off = round_up(l->file_size), old_off = which_keys ? l->key_off : l->pm_off;
  uint64_t ncap = (uint64_t)cap * 2, size = round_up(off + ncap * rec);
  int rc;

  if (ncap > limit) {
    return gkp__err(err, -ENOSPC, "%s: the state file cannot track more than %u %s", st->path,
                    limit, which_keys ? "keys" : "project/model pairs");
  }
  rc = posix_fallocate(st->fd, 0, (off_t)size);
  if (rc != 0) {
    return gkp__err(err, -rc, "%s: cannot grow the state file: %s", st->path, strerror(rc));
  }
  rc = map_size(st, size, err);
  if (rc != 0) {
    return rc;
  }
  l = &st->hdr->lay;
  memcpy((char *)st->hdr + off, (char *)st->hdr + old_off, (size_t)cap * rec);
  gkp__store_save(st, l, sizeof *l);
  if (which_keys) {
    l->key_off = off;
    l->key_cap = (uint32_t)ncap;
  } else {
    l->pm_off = off;
    l->pm_cap = (uint32_t)ncap;
  }
  l->file_size = size;
  l->layout_gen++;
  gkp__store_commit(st);
  set_regions(st);
  return 0;
}

int gkp__store_new_key(gkp__store *st, const char *id, const char *project, int reuse,
                       gkp_error *err) {
  gkp__layout *l = &st->hdr->lay;
  int slot = reuse;
  if (slot < 0 && l->nkeys >= l->key_cap) {
    int rc = grow(st, 1, err);
    if (rc != 0) {
      return rc;
    }
    l = &st->hdr->lay;
  }
  /* A new key has never been used: the links are rebuilt to put it first. */
  st->hdr->lru_dirty = 1;
  gkp__store_save(st, l, sizeof *l);
  if (slot < 0) {
    slot = (int)l->nkeys++; /* appended: other processes' indexes stay valid */
  } else {
    l->layout_gen++; /* a reused slot: indexes that knew it as free are stale */
  }
  gkp__key_rec *k = &st->keys[slot];
  gkp__store_save_recs(st, slot, -1);
  memset(&k->used, 0, sizeof *k - offsetof(gkp__key_rec, used));
  gkp__strlcpy(k->id, id, sizeof k->id);
  gkp__strlcpy(k->project, project, sizeof k->project);
  k->used = 1;
  gkp__store_commit(st);
  return slot;
}

int gkp__store_new_pm(gkp__store *st, const char *project, const char *model, int reuse,
                      gkp_error *err) {
  gkp__layout *l = &st->hdr->lay;
  int slot = reuse;
  if (slot < 0 && l->npm >= l->pm_cap) {
    int rc = grow(st, 0, err);
    if (rc != 0) {
      return rc;
    }
    l = &st->hdr->lay;
  }
  gkp__store_save(st, l, sizeof *l);
  if (slot < 0) {
    slot = (int)l->npm++; /* appended: other processes' indexes stay valid */
  } else {
    l->layout_gen++; /* a reused slot: indexes that knew it as free are stale */
  }
  gkp__pm_rec *p = &st->pms[slot];
  gkp__store_save(st, p, sizeof *p);
  memset(p, 0, sizeof *p);
  gkp__pm_counts_init(&p->c);
  gkp__strlcpy(p->project, project, sizeof p->project);
  gkp__strlcpy(p->model, model, sizeof p->model);
  p->used = 1;
  gkp__store_commit(st);
  return slot;
}

void gkp__store_free_key(gkp__store *st, int slot) {
  st->hdr->lru_dirty = 1;
  gkp__store_save(st, &st->hdr->lay, sizeof st->hdr->lay);
  gkp__store_save(st, &st->keys[slot].used, sizeof st->keys[slot].used);
  st->keys[slot].used = 0;
  st->hdr->lay.layout_gen++;
  gkp__store_commit(st);
}

void gkp__store_free_pm(gkp__store *st, int slot) {
  gkp__store_save(st, &st->hdr->lay, sizeof st->hdr->lay);
  gkp__store_save(st, &st->pms[slot].used, sizeof st->pms[slot].used);
  st->pms[slot].used = 0;
  st->hdr->lay.layout_gen++;
  gkp__store_commit(st);
}
