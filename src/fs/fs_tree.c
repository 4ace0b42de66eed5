/*
 * fs_tree.c - the objects of the tree: byte buffers, the name rules, inode
 * groups, profile directories, prompt files, job slots and runs.  Every
 * function here runs with fs.mu held unless it says otherwise.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/timeutil.h"
#include "common/util.h"
#include "engine/engine.h"
#include "engine/pool_impl.h"
#include "fs/fs.h"

/* ---- buffers ------------------------------------------------------------- */

/* ---- the memory accountant ---------------------------------------------- */

int fs_mem_charge(size_t n, int force) {
  size_t used = __atomic_load_n(&fs.mem_used, __ATOMIC_RELAXED);
  do {
    if (!force && (n > fs.max_memory || used > fs.max_memory - n)) {
      return -ENOSPC;
    }
  } while (!__atomic_compare_exchange_n(&fs.mem_used, &used, used + n, 1, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED));
  return 0;
}

void fs_mem_release(size_t n) {
  __atomic_fetch_sub(&fs.mem_used, n, __ATOMIC_RELAXED);
}

size_t fs_mem_used(void) {
  return __atomic_load_n(&fs.mem_used, __ATOMIC_RELAXED);
}

/* ---- buffers ------------------------------------------------------------- */

/* Grows b to hold `need` bytes, charging the growth to the accountant:
 * doubling when the ceiling allows it, else exactly `need`.  Returns 0,
 * -ENOSPC (over -o max_memory unless `force`) or -ENOMEM. */
static int buf_reserve(fs_buf *b, size_t need, int force) {
  if (need <= b->cap) {
    return 0;
  }
  size_t cap = b->cap > SIZE_MAX / 2 ? need : b->cap * 2;
  cap = cap < need ? need : cap < 256 ? 256 : cap;
  if (fs_mem_charge(cap - b->cap, force) != 0) {
    cap = need;
    if (fs_mem_charge(cap - b->cap, force) != 0) {
      return -ENOSPC;
    }
  }
  char *p = realloc(b->p, cap);
  if (p == NULL) {
    fs_mem_release(cap - b->cap);
    return -ENOMEM;
  }
  b->p = p;
  b->cap = cap;
  return 0;
}

static int buf_write(fs_buf *b, size_t off, const void *data, size_t n, int force) {
  int rc;
  if (off + n < off) {
    return -EFBIG;
  }
  if ((rc = buf_reserve(b, off + n, force)) != 0) {
    return rc;
  }
  if (off > b->len) {
    memset(b->p + b->len, 0, off - b->len);
  }
  memcpy(b->p + off, data, n);
  if (off + n > b->len) {
    b->len = off + n;
  }
  return 0;
}

int fs_buf_write(fs_buf *b, size_t off, const void *data, size_t n) {
  return buf_write(b, off, data, n, 0);
}

int fs_buf_load(fs_buf *b, const void *data, size_t n) {
  fs_buf_truncate(b, 0);
  return buf_write(b, 0, data, n, 1);
}

int fs_buf_truncate(fs_buf *b, size_t len) {
  int rc;
  if (len > b->len) {
    if ((rc = buf_reserve(b, len, 0)) != 0) {
      return rc;
    }
    memset(b->p + b->len, 0, len - b->len);
  }
  b->len = len;
  if (len == 0 && b->cap > 65536) {
    fs_buf_free(b); /* do not keep a big buffer for an emptied file */
  }
  return 0;
}

void fs_buf_free(fs_buf *b) {
  fs_mem_release(b->cap);
  free(b->p);
  memset(b, 0, sizeof *b);
}

/* ---- names ----------------------------------------------------------------- */

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n > m && strcmp(s + n - m, suffix) == 0;
}

/* vim's probe for "can I create a file here": 4913, then 4913 + 123k. */
static int vim_probe(const char *name) {
  size_t n = strlen(name);
  if (n < 4 || n > 6) {
    return 0;
  }
  for (size_t i = 0; i < n; i++) {
    if (!isdigit((unsigned char)name[i])) {
      return 0;
    }
  }
  long v = strtol(name, NULL, 10);
  return v >= 4913 && (v - 4913) % 123 == 0;
}

/* GNU sed -i's temporary: "sed" + mkstemp's 6 random letters and digits.
 * By name alone it needs a capital or a digit among them, so that words
 * like "sedentary" stay prompts; a file created with O_EXCL (as mkstemp
 * does) needs neither. */
static int sed_temp(const char *name, int excl) {
  int mixed = excl;
  if (strncmp(name, "sed", 3) != 0 || strlen(name) != 9) {
    return 0;
  }
  for (int i = 3; i < 9; i++) {
    unsigned char c = (unsigned char)name[i];
    if (!isalnum(c)) {
      return 0;
    }
    mixed |= isupper(c) || isdigit(c);
  }
  return mixed;
}

int fs_name_scratch(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || name[0] == '.' || name[n - 1] == '~') {
    return 1;
  }
  if (n >= 2 && name[0] == '#' && name[n - 1] == '#') {
    return 1; /* emacs auto-save */
  }
  return vim_probe(name) || sed_temp(name, 0);
}

int fs_file_scratch(const fs_file *f) {
  return fs_name_scratch(f->name) || (f->excl && sed_temp(f->name, 1));
}

static const char *const reserved_ext[] = {".out",  ".err",  ".json", ".png", ".jpg",
                                           ".jpeg", ".webp", ".gif",  ".img"};

int fs_name_reserved(const char *name) {
  for (size_t i = 0; i < sizeof reserved_ext / sizeof reserved_ext[0]; i++) {
    if (ends_with(name, reserved_ext[i])) {
      return 1;
    }
  }
  return 0;
}

const char *fs_mime_ext(const char *mime) {
  if (strcmp(mime, "image/png") == 0) {
    return "png";
  }
  if (strcmp(mime, "image/jpeg") == 0 || strcmp(mime, "image/jpg") == 0) {
    return "jpg";
  }
  if (strcmp(mime, "image/webp") == 0) {
    return "webp";
  }
  if (strcmp(mime, "image/gif") == 0) {
    return "gif";
  }
  return "img";
}

void fs_image_name(const fs_slot *s, const fs_run *r, size_t i, char *buf, size_t len) {
  if (r->images[i].name[0] != '\0') {
    snprintf(buf, len, "%s", r->images[i].name);
  } else if (i == 0) {
    snprintf(buf, len, "%s.%s", s->name, r->images[i].ext);
  } else {
    snprintf(buf, len, "%s-%zu.%s", s->name, i + 1, r->images[i].ext);
  }
}

/* The length of s[0..len) without a trailing "-<digits>", or len. */
static size_t strip_number(const char *s, size_t len) {
  size_t i = len;
  while (i > 0 && s[i - 1] >= '0' && s[i - 1] <= '9') {
    i--;
  }
  return i < len && i > 1 && s[i - 1] == '-' ? i - 1 : len;
}

size_t fs_image_stems(const char *name, size_t stems[3]) {
  const char *dot = strrchr(name, '.');
  size_t n = 0;
  if (dot == NULL || dot == name || !fs_name_reserved(name) || strcmp(dot, ".out") == 0 ||
      strcmp(dot, ".err") == 0 || strcmp(dot, ".json") == 0) {
    return 0;
  }
  stems[n++] = (size_t)(dot - name);
  for (int k = 0; k < 2; k++) {
    size_t m = strip_number(name, stems[n - 1]);
    if (m == stems[n - 1]) {
      break;
    }
    stems[n++] = m;
  }
  return n;
}

/* Whether an image of directory d (memory or store) is named `name`. */
static int image_taken(fs_dir *d, const char *name) {
  fs_slot *s;
  fs_store_fault(d, name);
  return fs_image_find(d, name, &s) >= 0;
}

void fs_image_alloc(fs_run *r, size_t i) {
  fs_image *im = &r->images[i];
  fs_dir *d = r->slot->dir;
  char stem[FS_NAME_MAX + 16];
  if (i == 0) {
    snprintf(stem, sizeof stem, "%s", r->slot->name);
  } else {
    snprintf(stem, sizeof stem, "%s-%zu", r->slot->name, i + 1);
  }
  snprintf(im->name, sizeof im->name, "%s.%s", stem, im->ext);
  for (unsigned k = 1; d != NULL && k <= FS_MAX_IMAGES * 4 && image_taken(d, im->name); k++) {
    snprintf(im->name, sizeof im->name, "%s-%u.%s", stem, k, im->ext);
  }
}

/* ---- groups ------------------------------------------------------------------ */

int fs_obj_add(fs_obj *o, int type) {
  o->type = type;
  o->group = fs.next_group++;
  return fs_imap_put(&fs.objs, o->group, o);
}

int fs_obj_regroup(fs_obj *o, uint64_t group) {
  if (fs_imap_get(&fs.objs, group) != NULL) {
    return -EEXIST;
  }
  if (fs_imap_put(&fs.objs, group, o) != 0) {
    return -ENOMEM;
  }
  fs_imap_del(&fs.objs, o->group);
  o->group = group;
  return 0;
}

void fs_obj_del(fs_obj *o) {
  fs_imap_del(&fs.objs, o->group);
}

fs_obj *fs_obj_peek(uint64_t group) {
  return fs_imap_get(&fs.objs, group);
}

fs_obj *fs_obj_get(uint64_t group) {
  fs_obj *o = fs_imap_get(&fs.objs, group);
  if (o == NULL && group >= FS_ROW_GROUP_BASE &&
      fs_store_fault_row((int64_t)((group - FS_ROW_GROUP_BASE) / 2)) == 1) {
    o = fs_imap_get(&fs.objs, group);
  }
  return o;
}

/* ---- directories -------------------------------------------------------------- */

fs_dir *fs_dir_get(const char *name) {
  return fs_smap_get(&fs.dirs, name);
}

static fs_dir *dir_new(const char *name) {
  fs_dir *d = calloc(1, sizeof *d);
  if (d == NULL || (d->name = strdup(name)) == NULL) {
    free(d);
    return NULL;
  }
  d->mtime_ms = gkp__now_ms();
  if (fs_obj_add(&d->o, FS_T_DIR) != 0 || fs_smap_put(&fs.dirs, d->name, d) != 0) {
    fs_obj_del(&d->o);
    free(d->name);
    free(d);
    return NULL;
  }
  return d;
}

static int in_list(const char *s, char **names, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (strcmp(s, names[i]) == 0) {
      return 1;
    }
  }
  return 0;
}

int fs_dirs_sync(char **names, size_t n) {
  size_t it = 0;
  fs_dir *d;
  while ((d = fs_smap_next(&fs.dirs, &it)) != NULL) {
    d->gone = !in_list(d->name, names, n);
  }
  for (size_t i = 0; i < n; i++) {
    if (strchr(names[i], '/') != NULL || strcmp(names[i], "status") == 0 ||
        strcmp(names[i], "README") == 0 || strcmp(names[i], "ctl") == 0 || names[i][0] == '.' ||
        names[i][0] == '\0') {
      fs_log(GKP_LOG_WARN, "profile '%s' cannot be a directory of the mount; skipped", names[i]);
      continue;
    }
    if (fs_dir_get(names[i]) == NULL && dir_new(names[i]) == NULL) {
      return -ENOMEM;
    }
  }
  return 0;
}

int fs_named_sync(fs_smap *map, int type, char **names, size_t n) {
  size_t it = 0;
  fs_named *e;
  while ((e = fs_smap_next(map, &it)) != NULL) {
    e->gone = !in_list(e->name, names, n);
  }
  for (size_t i = 0; i < n; i++) {
    if (fs_smap_get(map, names[i]) != NULL) {
      continue;
    }
    e = calloc(1, sizeof *e);
    if (e == NULL || (e->name = strdup(names[i])) == NULL) {
      free(e);
      return -ENOMEM;
    }
    if (fs_obj_add(&e->o, type) != 0 || fs_smap_put(map, e->name, e) != 0) {
      fs_obj_del(&e->o);
      free(e->name);
      free(e);
      return -ENOMEM;
    }
  }
  return 0;
}

/* ---- files ------------------------------------------------------------------------ */

fs_file *fs_file_new(fs_dir *d, const char *name) {
  fs_file *f = calloc(1, sizeof *f);
  if (f == NULL || (f->name = strdup(name)) == NULL) {
    free(f);
    return NULL;
  }
  f->dir = d;
  f->refs = 1;
  f->mode = 0644;
  f->uid = fs.uid;
  f->gid = fs.gid;
  f->mtime_ms = f->ctime_ms = gkp__now_ms();
  if (fs_obj_add(&f->o, FS_T_FILE) != 0) {
    free(f->name);
    free(f);
    return NULL;
  }
  if (fs_smap_put(&d->files, f->name, f) != 0) {
    fs_obj_del(&f->o);
    free(f->name);
    free(f);
    return NULL;
  }
  d->mtime_ms = f->mtime_ms;
  return f;
}

void fs_file_unlink(fs_file *f) {
  if (f->dir == NULL) {
    return;
  }
  fs_smap_del(&f->dir->files, f->name);
  f->dir->mtime_ms = gkp__now_ms();
  f->dir = NULL;
  fs_file_unref(f);
}

size_t fs_file_len(const fs_file *f) {
  return f->on_disk ? f->disk_len : f->data.len;
}

void fs_file_clear(fs_file *f) {
  fs_buf_truncate(&f->data, 0);
  f->on_disk = 0;
  f->sub_run = 0;
}

int fs_file_load(fs_file *f) {
  size_t len = 0;
  char *p;
  if (!f->on_disk) {
    return 0;
  }
  p = f->dir != NULL ? fs_store_read_prompt(f->dir->name, f->name, f->sub_run, &len) : NULL;
  f->on_disk = 0;
  if (p == NULL || len != f->disk_len) {
    fs_log(GKP_LOG_WARN,
           "%s/%s: the prompt kept in the store is gone or changed; the file is "
           "empty now",
           f->dir != NULL ? f->dir->name : "?", f->name);
    free(p);
    fs_file_clear(f);
    return -EIO;
  }
  int rc = fs_buf_load(&f->data, p, len);
  free(p);
  if (rc != 0) {
    fs_file_clear(f);
  }
  return rc;
}

void fs_file_offload(fs_file *f) {
  fs_slot *s;
  if (f->dir == NULL || f->on_disk || f->refs != 1 || f->dirty || f->sub_run == 0) {
    return;
  }
  s = fs_slot_get(f->dir, f->name, 0);
  if (s == NULL || s->run == NULL || s->run->uid != f->sub_run || !s->run->stored) {
    return;
  }
  f->disk_len = f->data.len;
  fs_buf_free(&f->data);
  f->on_disk = 1;
}

void fs_file_unref(fs_file *f) {
  if (--f->refs > 0) {
    return;
  }
  fs_obj_del(&f->o);
  fs_buf_free(&f->data);
  free(f->name);
  free(f);
}

/* ---- slots --------------------------------------------------------------------------- */

fs_slot *fs_slot_get(fs_dir *d, const char *name, int create) {
  fs_slot *s = fs_smap_get(&d->slots, name);
  if (s != NULL || !create) {
    return s;
  }
  s = calloc(1, sizeof *s);
  if (s == NULL) {
    return NULL;
  }
  s->name = strdup(name);
  s->profile = strdup(d->name);
  if (s->name == NULL || s->profile == NULL || fs_obj_add(&s->o, FS_T_SLOT) != 0) {
    free(s->name);
    free(s->profile);
    free(s);
    return NULL;
  }
  if (fs_smap_put(&d->slots, s->name, s) != 0) {
    fs_obj_del(&s->o);
    free(s->name);
    free(s->profile);
    free(s);
    return NULL;
  }
  s->dir = d;
  s->refs = 1;
  s->mode = 0644;
  s->uid = fs.uid;
  s->gid = fs.gid;
  d->mtime_ms = gkp__now_ms();
  return s;
}

void fs_slot_unref(fs_slot *s) {
  if (--s->refs > 0) {
    return;
  }
  fs_obj_del(&s->o);
  free(s->name);
  free(s->profile);
  free(s);
}

void fs_slot_remove(fs_slot *s) {
  if (s->dir == NULL) {
    return;
  }
  fs_cache_drop(s);
  fs_smap_del(&s->dir->slots, s->name);
  s->dir->mtime_ms = gkp__now_ms();
  s->dir = NULL;
  if (s->run != NULL) {
    fs_run *r = s->run;
    s->run = NULL;
    r->stale = 1;
    fs_job_cancel(r);
    fs_run_unref(r);
  }
  fs_slot_unref(s);
}

/* ---- the cache of finished jobs ---------------------------------------------------- */

void fs_cache_drop(fs_slot *s) {
  if (!s->in_cache) {
    return;
  }
  if (s->cache_prev != NULL) {
    s->cache_prev->cache_next = s->cache_next;
  } else {
    fs.cache_head = s->cache_next;
  }
  if (s->cache_next != NULL) {
    s->cache_next->cache_prev = s->cache_prev;
  } else {
    fs.cache_tail = s->cache_prev;
  }
  s->cache_prev = s->cache_next = NULL;
  s->in_cache = 0;
  fs.cache_n--;
}

static void cache_append(fs_slot *s) {
  s->cache_prev = fs.cache_tail;
  s->cache_next = NULL;
  if (fs.cache_tail != NULL) {
    fs.cache_tail->cache_next = s;
  } else {
    fs.cache_head = s;
  }
  fs.cache_tail = s;
  s->in_cache = 1;
  fs.cache_n++;
}

/* Whether a cached job can leave memory now: nothing but the tree holds it,
 * and its prompt is the stored one, on disk only. */
static int evictable(const fs_slot *s) {
  const fs_run *r = s->run;
  const fs_file *f;
  if (s->dir == NULL || r == NULL || !r->runner_done || !r->stored || !r->on_disk || r->refs != 1 ||
      s->refs != 2 || r->parked != NULL || r->pollers != NULL) {
    return 0;
  }
  /* A job whose prompt was renamed away stays: from the store it would come
   * back with its prompt under the old name. */
  f = fs_smap_get(&s->dir->files, s->name);
  return f != NULL && f->refs == 1 && f->on_disk && !f->dirty && f->sub_run == r->uid;
}

/* Takes a finished job out of memory: it stays in the store. */
static void evict(fs_slot *s) {
  fs_dir *d = s->dir;
  fs_file *f = fs_smap_get(&d->files, s->name);
  fs_run *r = s->run;
  fs_cache_drop(s);
  if (f != NULL) {
    fs_smap_del(&d->files, f->name);
    f->dir = NULL;
    fs_file_unref(f);
  }
  fs_smap_del(&d->slots, s->name);
  s->dir = NULL;
  s->run = NULL;
  fs_run_unref(r);
  fs_slot_unref(s);
}

void fs_cache_touch(fs_slot *s) {
  if (s->dir == NULL || s->run == NULL || !s->run->stored || !s->run->runner_done) {
    return;
  }
  fs_cache_drop(s);
  cache_append(s);
  /* Jobs held open go to the back: each is looked at once per trim. */
  for (size_t tries = fs.cache_n; fs.cache_n > FS_CACHE_JOBS && tries > 0; tries--) {
    fs_slot *old = fs.cache_head;
    if (old == s) {
      break;
    }
    if (evictable(old)) {
      evict(old);
    } else {
      fs_cache_drop(old);
      cache_append(old);
    }
  }
}

/* ---- runs ------------------------------------------------------------------------------ */

fs_run *fs_run_new(fs_slot *s) {
  fs_run *r = calloc(1, sizeof *r);
  if (r == NULL) {
    return NULL;
  }
  r->refs = 1;
  r->id = fs.next_run_id++;
  r->slot = s;
  s->refs++;
  r->status = GKP__JOB_QUEUED;
  r->tokens_in = r->tokens_out = -1;
  r->created_ms = gkp__now_ms();
  return r;
}

void fs_run_ref(fs_run *r) {
  r->refs++;
}

void fs_run_unref(fs_run *r) {
  if (--r->refs > 0) {
    return;
  }
  fs_buf_free(&r->text);
  for (size_t i = 0; i < r->nimages; i++) {
    fs_image_free(&r->images[i]);
  }
  free(r->images);
  free(r->attempts);
  free(r->error);
  free(r->route);
  fs_slot_unref(r->slot);
  free(r);
}

void fs_image_free(fs_image *im) {
  if (im->data != NULL) {
    fs_mem_release(im->len);
    free(im->data);
    im->data = NULL;
  }
}

void fs_run_trim(fs_run *r) {
  if (!r->stored || r->on_disk || r->mem_readers > 0) {
    return;
  }
  fs_buf_free(&r->text);
  for (size_t i = 0; i < r->nimages; i++) {
    fs_image_free(&r->images[i]);
  }
  r->on_disk = 1;
}

/* ---- configuration -------------------------------------------------------------------- */

static void free_names(char **v, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(v[i]);
  }
  free(v);
}

/* Copies n strings found at base + i*stride + off (each a char *). */
static char **copy_names(const void *base, size_t n, size_t stride, size_t off) {
  char **v = calloc(n + 1, sizeof *v);
  if (v == NULL) {
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    const char *s = *(char *const *)((const char *)base + i * stride + off);
    if ((v[i] = strdup(s)) == NULL) {
      free_names(v, i);
      return NULL;
    }
  }
  return v;
}

int fs_tree_sync_config(void) {
  gkp_pool *pool = fs.pool;
  char **profiles, **keys, **models;
  size_t np, nk, nm;
  int rc = 0;

  const gkp__config *cfg = gkp__pool_config(pool);
  np = cfg->nprofiles;
  nk = cfg->nkeys;
  nm = cfg->nmodels;
  profiles =
      copy_names(cfg->profiles, np, sizeof(gkp__profile_cfg), offsetof(gkp__profile_cfg, name));
  keys = copy_names(cfg->keys, nk, sizeof(gkp__key_cfg), offsetof(gkp__key_cfg, id));
  models = copy_names(cfg->models, nm, sizeof(gkp__model_cfg), offsetof(gkp__model_cfg, id));
  gkp__config_unref(cfg);

  if (profiles == NULL || keys == NULL || models == NULL) {
    rc = -ENOMEM;
  } else {
    pthread_mutex_lock(&fs.mu);
    rc = fs_dirs_sync(profiles, np);
    if (rc == 0) {
      rc = fs_named_sync(&fs.keys, FS_T_ST_KEY, keys, nk);
    }
    if (rc == 0) {
      rc = fs_named_sync(&fs.models, FS_T_ST_MODEL, models, nm);
    }
    pthread_mutex_unlock(&fs.mu);
  }
  if (profiles != NULL) {
    free_names(profiles, np);
  }
  if (keys != NULL) {
    free_names(keys, nk);
  }
  if (models != NULL) {
    free_names(models, nm);
  }
  return rc;
}

/* ---- the end ------------------------------------------------------------------------------ */

void fs_tree_free(void) {
  size_t it = 0;
  fs_dir *d;
  fs_named *e;
  pthread_mutex_lock(&fs.mu);
  while ((d = fs_smap_next(&fs.dirs, &it)) != NULL) {
    size_t j = 0;
    fs_file *f;
    fs_slot *s;
    while ((f = fs_smap_next(&d->files, &j)) != NULL) {
      f->dir = NULL;
      fs_file_unref(f);
    }
    fs_smap_free(&d->files);
    j = 0;
    while ((s = fs_smap_next(&d->slots, &j)) != NULL) {
      fs_run *r = s->run;
      s->dir = NULL;
      s->run = NULL;
      if (r != NULL) {
        fs_run_unref(r);
      }
      fs_slot_unref(s);
    }
    fs_smap_free(&d->slots);
    fs_obj_del(&d->o);
    free(d->name);
    free(d);
  }
  fs_smap_free(&fs.dirs);
  fs_smap *maps[2] = {&fs.keys, &fs.models};
  for (int m = 0; m < 2; m++) {
    it = 0;
    while ((e = fs_smap_next(maps[m], &it)) != NULL) {
      fs_obj_del(&e->o);
      free(e->name);
      free(e);
    }
    fs_smap_free(maps[m]);
  }
  fs_imap_free(&fs.objs);
  fs_imap_free(&fs.parked);
  pthread_mutex_unlock(&fs.mu);
}
