/*
 * fs_ops.c - the libfuse low-level operations of the mount: the operations
 * table, handles, attributes, name resolution, lookup, getattr, setattr and
 * directories.  File I/O is in fs_io.c; creating, removing and renaming in
 * fs_names.c.
 *
 * Error convention (as sshfs): each operation replies exactly once, with a
 * positive errno from the reply helpers; objects are looked up under fs.mu
 * and never used after it is dropped unless a reference was taken.  Replies
 * are sent after fs.mu is dropped.
 *
 * Caching: entries and attributes of profile directories are never cached
 * by the kernel (timeout 0): outputs appear, change size and vanish as jobs
 * run.  The fixed nodes are cached for a second.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/timeutil.h"
#include "common/util.h"
#include "fs/fs.h"
#include "fs/fs_ops.h"

#define FIXED_TIMEOUT 1.0

/* A directory listing, taken when the directory is opened. */
typedef struct fs_dent {
  char *name;
  fuse_ino_t ino;
  mode_t mode;
} fs_dent;

typedef struct fs_listing {
  fs_dent *v;
  size_t n, cap;
} fs_listing;

static const struct {
  const char *name;
  fuse_ino_t ino;
} status_entries[] = {
    {"pool", FS_INO_ST_POOL}, {"pool.json", FS_INO_ST_POOLJSON}, {"metrics", FS_INO_ST_METRICS},
    {"jobs", FS_INO_ST_JOBS}, {"keys", FS_INO_ST_KEYS},          {"models", FS_INO_ST_MODELS},
};

/* ---- handles ------------------------------------------------------------------ */

fs_handle *fs_handle_new(int kind) {
  fs_handle *h = calloc(1, sizeof *h);
  if (h == NULL) {
    return NULL;
  }
  h->kind = kind;
  return h;
}

/* Registers a handle (fs.mu held). */
void fs_handle_link(fs_handle *h) {
  h->all_next = fs.handles;
  if (fs.handles != NULL) {
    fs.handles->all_prev = h;
  }
  fs.handles = h;
}

/* Drops everything a handle holds (fs.mu held) and frees it. */
void fs_handle_free(fs_handle *h) {
  if (h->all_prev != NULL) {
    h->all_prev->all_next = h->all_next;
  } else if (fs.handles == h) {
    fs.handles = h->all_next;
  }
  if (h->all_next != NULL) {
    h->all_next->all_prev = h->all_prev;
  }
  fs_job_poll_drop(h);
  if (h->file != NULL) {
    if (h->file->refs > 1) {
      h->file->refs--;
      fs_file_offload(h->file); /* back on disk if it is a finished job's prompt */
    } else {
      fs_file_unref(h->file);
    }
  }
  if (h->run != NULL) {
    if (!h->disk) {
      h->run->mem_readers--;
      fs_run_trim(h->run);
    }
    fs_run_unref(h->run);
  }
  if (h->kind == FS_H_BUF || h->kind == FS_H_CTL) {
    free(h->buf);
  }
  free(h);
}

/* Frees every handle still open (at the end, when the kernel is gone). */
void fs_handles_free(void) {
  pthread_mutex_lock(&fs.mu);
  while (fs.handles != NULL) {
    fs_handle *h = fs.handles;
    if (h->kind == 0) { /* a directory listing */
      fs.handles = h->all_next;
      if (fs.handles != NULL) {
        fs.handles->all_prev = NULL;
      }
      fs_listing *l = (fs_listing *)h->buf;
      for (size_t i = 0; l != NULL && i < l->n; i++) {
        free(l->v[i].name);
      }
      if (l != NULL) {
        free(l->v);
        free(l);
      }
      free(h);
      continue;
    }
    fs_handle_free(h);
  }
  pthread_mutex_unlock(&fs.mu);
}

/* ---- attributes (fs.mu held) --------------------------------------------------- */

static void set_time(struct timespec *ts, int64_t ms) {
  ts->tv_sec = (time_t)(ms / 1000);
  ts->tv_nsec = (long)(ms % 1000) * 1000000L;
}

/* Who may read status/: its owner only, unless -o status_public. */
static mode_t status_mode(int dir) {
  return dir ? (fs.status_public ? 0755 : 0700) : (fs.status_public ? 0444 : 0400);
}

static void base_attr(struct stat *st, fuse_ino_t ino, mode_t mode, off_t size, int64_t mtime) {
  memset(st, 0, sizeof *st);
  st->st_ino = ino;
  st->st_mode = mode;
  st->st_nlink = S_ISDIR(mode) ? 2 : 1;
  st->st_uid = fs.uid;
  st->st_gid = fs.gid;
  st->st_size = size;
  st->st_blksize = 4096;
  st->st_blocks = (size + 511) / 512;
  set_time(&st->st_mtim, mtime);
  st->st_ctim = st->st_mtim;
  st->st_atim = st->st_mtim;
}

static int slot_attr(unsigned sub, const fs_run *r, int64_t mtime, fuse_ino_t ino, struct stat *st);

/* Fills the attributes of any inode.  Returns 0 or a positive errno. */
int fs_attr_of(fuse_ino_t ino, struct stat *st) {
  int64_t t0 = fs.start_ms;
  if (FS_INO_GROUP(ino) == 0) {
    switch (ino) {
    case FS_INO_ROOT:
      base_attr(st, ino, S_IFDIR | 0755, 0, t0);
      return 0;
    case FS_INO_STATUS:
    case FS_INO_ST_KEYS:
    case FS_INO_ST_MODELS:
      base_attr(st, ino, S_IFDIR | status_mode(1), 0, t0);
      return 0;
    case FS_INO_README:
      base_attr(st, ino, S_IFREG | 0444, (off_t)fs.readme_len, t0);
      return 0;
    case FS_INO_CTL:
      base_attr(st, ino, S_IFREG | 0644, 0, t0);
      return 0;
    case FS_INO_ST_POOL:
    case FS_INO_ST_POOLJSON:
    case FS_INO_ST_METRICS:
    case FS_INO_ST_JOBS:
      base_attr(st, ino, S_IFREG | status_mode(0), 0, gkp__now_ms());
      return 0;
    default:
      return ENOENT;
    }
  }
  fs_obj *o = fs_obj_get(FS_INO_GROUP(ino));
  unsigned sub = FS_INO_SUB(ino);
  if (o == NULL) {
    return ENOENT;
  }
  switch (o->type) {
  case FS_T_DIR:
    if (sub != 0) {
      return ENOENT;
    }
    base_attr(st, ino, S_IFDIR | 0755, 0, ((fs_dir *)o)->mtime_ms);
    return 0;
  case FS_T_FILE: {
    fs_file *f = (fs_file *)o;
    if (sub != 0) {
      return ENOENT;
    }
    base_attr(st, ino, S_IFREG | (f->mode & 07777), (off_t)fs_file_len(f), f->mtime_ms);
    st->st_uid = f->uid;
    st->st_gid = f->gid;
    set_time(&st->st_ctim, f->ctime_ms);
    st->st_nlink = f->dir != NULL ? 1 : 0;
    return 0;
  }
  case FS_T_ST_KEY:
  case FS_T_ST_MODEL:
    if (sub != 0) {
      return ENOENT;
    }
    base_attr(st, ino, S_IFREG | status_mode(0), 0, gkp__now_ms());
    return 0;
  case FS_T_SLOT:
    break;
  default:
    return ENOENT;
  }
  fs_slot *s = (fs_slot *)o;
  fs_run *r = s->run;
  if (r == NULL) {
    return ENOENT;
  }
  int64_t mtime = r->finished_ms > 0 ? r->finished_ms : r->created_ms;
  int err = slot_attr(sub, r, mtime, ino, st);
  if (err == 0) { /* the prompt's owner and read/write bits */
    st->st_mode = S_IFREG | (s->mode & 0666);
    st->st_uid = s->uid;
    st->st_gid = s->gid;
  }
  return err;
}

/* The attributes of a job's output (fs.mu held). */
static int slot_attr(unsigned sub, const fs_run *r, int64_t mtime, fuse_ino_t ino,
                     struct stat *st) {
  if (sub == FS_SUB_OUT) {
    base_attr(st, ino, S_IFREG | 0444, (off_t)r->text_len, mtime);
    return 0;
  }
  if (sub == FS_SUB_ERR) {
    if (r->status != GKP__JOB_FAILED) {
      return ENOENT;
    }
    char *text = fs_job_err_text(r);
    base_attr(st, ino, S_IFREG | 0444, text != NULL ? (off_t)strlen(text) : 0, mtime);
    free(text);
    return 0;
  }
  if (sub == FS_SUB_JSON) {
    char *json = fs_job_json(r, 0);
    base_attr(st, ino, S_IFREG | 0444, json != NULL ? (off_t)strlen(json) + 1 : 0, mtime);
    free(json);
    return 0;
  }
  if (sub >= FS_SUB_IMG0 && sub - FS_SUB_IMG0 < r->nimages) {
    base_attr(st, ino, S_IFREG | 0444, (off_t)r->images[sub - FS_SUB_IMG0].len, mtime);
    return 0;
  }
  return ENOENT;
}

double fs_timeout_of(fuse_ino_t ino) {
  if (FS_INO_GROUP(ino) == 0) {
    return FIXED_TIMEOUT;
  }
  fs_obj *o = fs_obj_get(FS_INO_GROUP(ino));
  return o != NULL && (o->type == FS_T_ST_KEY || o->type == FS_T_ST_MODEL || o->type == FS_T_DIR)
             ? FIXED_TIMEOUT
             : 0.0;
}

/* Fills the entry of `ino` for a lookup-like reply (fs.mu held).  Returns 0
 * or a positive errno. */
int fs_entry_of(fuse_ino_t ino, struct fuse_entry_param *e) {
  memset(e, 0, sizeof *e);
  int err = fs_attr_of(ino, &e->attr);
  e->ino = ino;
  e->attr_timeout = e->entry_timeout = fs_timeout_of(ino);
  return err;
}

/* Replies with an entry, or the error (without fs.mu). */
void fs_reply_entry(fuse_req_t req, int err, const struct fuse_entry_param *e) {
  if (err != 0) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_entry(req, e);
  }
}

/* ---- names (fs.mu held) --------------------------------------------------------- */

/* The profile directory of an inode, or NULL. */
fs_dir *fs_dir_of(fuse_ino_t ino) {
  if (FS_INO_GROUP(ino) == 0 || FS_INO_SUB(ino) != 0) {
    return NULL;
  }
  fs_obj *o = fs_obj_get(FS_INO_GROUP(ino));
  return o != NULL && o->type == FS_T_DIR ? (fs_dir *)o : NULL;
}

static fs_slot *slot_named(fs_dir *d, const char *name, size_t len) {
  char stem[FS_NAME_MAX + 1];
  if (len == 0 || len > FS_NAME_MAX) {
    return NULL;
  }
  memcpy(stem, name, len);
  stem[len] = '\0';
  fs_slot *s = fs_slot_get(d, stem, 0);
  return s != NULL && s->run != NULL ? s : NULL;
}

int fs_image_find(fs_dir *d, const char *name, fs_slot **sp) {
  size_t stems[3], n = fs_image_stems(name, stems);
  char buf[FS_NAME_MAX + 32];
  for (size_t k = 0; k < n; k++) {
    fs_slot *s = slot_named(d, name, stems[k]);
    for (size_t i = 0; s != NULL && i < s->run->nimages; i++) {
      fs_image_name(s, s->run, i, buf, sizeof buf);
      if (strcmp(buf, name) == 0) {
        *sp = s;
        return (int)i;
      }
    }
  }
  return -1;
}

/* Resolves an output name ("a.out", "a.err", "a.json", an image name)
 * to its inode and slot.  Returns 0 if it is none. */
fuse_ino_t fs_output_ino(fs_dir *d, const char *name, fs_slot **sp) {
  const char *dot = strrchr(name, '.');
  fs_slot *s;
  if (dot == NULL) {
    return 0;
  }
  size_t stem = (size_t)(dot - name);
  if (strcmp(dot, ".out") == 0 && (s = slot_named(d, name, stem)) != NULL) {
    *sp = s;
    return FS_INO(s->o.group, FS_SUB_OUT);
  }
  if (strcmp(dot, ".json") == 0 && (s = slot_named(d, name, stem)) != NULL) {
    *sp = s;
    return FS_INO(s->o.group, FS_SUB_JSON);
  }
  if (strcmp(dot, ".err") == 0 && (s = slot_named(d, name, stem)) != NULL &&
      s->run->status == GKP__JOB_FAILED) {
    *sp = s;
    return FS_INO(s->o.group, FS_SUB_ERR);
  }
  int i = fs_image_find(d, name, &s);
  if (i >= 0) {
    *sp = s;
    return FS_INO(s->o.group, FS_SUB_IMG0 + (unsigned)i);
  }
  return 0;
}

static int dir_visible(const fs_dir *d) {
  return !d->gone || d->files.n > 0 || d->slots.n > 0;
}

/* ---- lookup, getattr, setattr ------------------------------------------------------- */

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  fuse_ino_t ino = 0;
  pthread_mutex_lock(&fs.mu);
  if (parent == FS_INO_ROOT) {
    fs_dir *d;
    if (strcmp(name, "README") == 0) {
      ino = FS_INO_README;
    } else if (strcmp(name, "ctl") == 0) {
      ino = FS_INO_CTL;
    } else if (strcmp(name, "status") == 0) {
      ino = FS_INO_STATUS;
    } else if ((d = fs_dir_get(name)) != NULL && dir_visible(d)) {
      ino = FS_INO(d->o.group, 0);
    }
  } else if (parent == FS_INO_STATUS) {
    for (size_t i = 0; i < sizeof status_entries / sizeof status_entries[0]; i++) {
      if (strcmp(name, status_entries[i].name) == 0) {
        ino = status_entries[i].ino;
      }
    }
  } else if (parent == FS_INO_ST_KEYS || parent == FS_INO_ST_MODELS) {
    fs_named *e = fs_smap_get(parent == FS_INO_ST_KEYS ? &fs.keys : &fs.models, name);
    if (e != NULL && !e->gone) {
      ino = FS_INO(e->o.group, 0);
    }
  } else {
    fs_dir *d = fs_dir_of(parent);
    fs_file *f;
    fs_slot *s = NULL;
    if (d != NULL && strlen(name) <= FS_NAME_MAX + 16) {
      fs_store_fault(d, name); /* a finished job that is only in the store */
    }
    if (d != NULL && (f = fs_smap_get(&d->files, name)) != NULL) {
      ino = FS_INO(f->o.group, 0);
      s = fs_slot_get(d, name, 0);
    } else if (d != NULL) {
      ino = fs_output_ino(d, name, &s);
    }
    if (s != NULL) {
      fs_cache_touch(s);
    }
  }
  struct fuse_entry_param e;
  int err = ino == 0 ? ENOENT : fs_entry_of(ino, &e);
  pthread_mutex_unlock(&fs.mu);
  fs_reply_entry(req, err, &e);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  (void)ino;
  (void)nlookup;
  fuse_reply_none(req); /* objects live by their own references, not the kernel's */
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets) {
  (void)count;
  (void)forgets;
  fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  struct stat st;
  (void)fi;
  pthread_mutex_lock(&fs.mu);
  int err = fs_attr_of(ino, &st);
  double timeout = fs_timeout_of(ino);
  pthread_mutex_unlock(&fs.mu);
  if (err != 0) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_attr(req, &st, timeout);
  }
}

/* The largest content a file may have: prompts are limited by -o max_prompt. */
size_t fs_file_limit(const fs_file *f) {
  return f->dir != NULL && !fs_file_scratch(f) ? fs.max_prompt : FS_SCRATCH_MAX;
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi) {
  int err = 0;
  struct stat st;
  const int times = FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
                    FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME;
  (void)fi;
  pthread_mutex_lock(&fs.mu);
  fs_obj *o = FS_INO_GROUP(ino) != 0 && FS_INO_SUB(ino) == 0 ? fs_obj_get(FS_INO_GROUP(ino)) : NULL;
  if (o != NULL && o->type == FS_T_FILE) {
    fs_file *f = (fs_file *)o;
    int64_t now = gkp__now_ms();
    if (to_set & FUSE_SET_ATTR_SIZE) {
      if (attr->st_size == 0) {
        fs_file_clear(f);
      } else {
        fs_file_load(f);
      }
      if ((size_t)attr->st_size > fs_file_limit(f)) {
        err = EFBIG;
      } else if ((err = -fs_buf_truncate(&f->data, (size_t)attr->st_size)) != 0) {
        /* ENOSPC over -o max_memory */
      } else {
        f->dirty = 1;
        f->sub_run = 0;
        if (attr->st_size == 0) {
          f->too_big = 0;
        }
        f->mtime_ms = f->ctime_ms = now;
      }
    }
    if (err == 0 && (to_set & FUSE_SET_ATTR_MODE)) {
      f->mode = attr->st_mode & 07777;
      f->ctime_ms = now;
      fs_slot *s = f->dir != NULL ? fs_slot_get(f->dir, f->name, 0) : NULL;
      if (s != NULL) { /* `chmod 600 prompt` makes its answer private too */
        s->mode = f->mode;
        fs_store_mode(s->profile, s->name, s->mode, s->uid, s->gid);
      }
    }
    if (err == 0 && (to_set & FUSE_SET_ATTR_MTIME)) {
      f->mtime_ms = (int64_t)attr->st_mtim.tv_sec * 1000 + attr->st_mtim.tv_nsec / 1000000;
    } else if (err == 0 && (to_set & FUSE_SET_ATTR_MTIME_NOW)) {
      f->mtime_ms = now;
    }
    /* Owners: files belong to the mounting user; a chown is accepted and
     * changes nothing (editors copy owners to the file they write). */
  } else if (ino == FS_INO_CTL) {
    if (to_set & ~(FUSE_SET_ATTR_SIZE | times)) {
      err = EACCES;
    }
  } else if (ino == FS_INO_ROOT || fs_dir_of(ino) != NULL) {
    if (to_set & ~times) {
      err = EACCES;
    }
  } else {
    err = fs_attr_of(ino, &st) != 0 ? ENOENT : EACCES; /* outputs and status files */
  }
  if (err == 0) {
    err = fs_attr_of(ino, &st);
  }
  double timeout = fs_timeout_of(ino);
  pthread_mutex_unlock(&fs.mu);
  if (err != 0) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_attr(req, &st, timeout);
  }
}

/* ---- directories ---------------------------------------------------------------------------- */

static int listing_add(fs_listing *l, const char *name, fuse_ino_t ino, mode_t mode) {
  fs_dent *v = gkp__grow(l->v, &l->cap, l->n + 1, sizeof *v, 32);
  if (v == NULL) {
    return -ENOMEM;
  }
  l->v = v;
  if ((l->v[l->n].name = strdup(name)) == NULL) {
    return -ENOMEM;
  }
  l->v[l->n].ino = ino;
  l->v[l->n].mode = mode;
  l->n++;
  return 0;
}

/* The entries of a directory (fs.mu held). */
static int listing_build(fuse_ino_t ino, fs_listing *l) {
  int rc = listing_add(l, ".", ino, S_IFDIR);
  size_t it = 0;
  rc |= listing_add(l, "..", FS_INO_ROOT, S_IFDIR);
  if (ino == FS_INO_ROOT) {
    fs_dir *d;
    rc |= listing_add(l, "README", FS_INO_README, S_IFREG);
    rc |= listing_add(l, "ctl", FS_INO_CTL, S_IFREG);
    rc |= listing_add(l, "status", FS_INO_STATUS, S_IFDIR);
    while (rc == 0 && (d = fs_smap_next(&fs.dirs, &it)) != NULL) {
      if (dir_visible(d)) {
        rc |= listing_add(l, d->name, FS_INO(d->o.group, 0), S_IFDIR);
      }
    }
    return rc;
  }
  if (ino == FS_INO_STATUS) {
    for (size_t i = 0; i < sizeof status_entries / sizeof status_entries[0]; i++) {
      rc |= listing_add(l, status_entries[i].name, status_entries[i].ino,
                        status_entries[i].ino == FS_INO_ST_KEYS ||
                                status_entries[i].ino == FS_INO_ST_MODELS
                            ? S_IFDIR
                            : S_IFREG);
    }
    return rc;
  }
  if (ino == FS_INO_ST_KEYS || ino == FS_INO_ST_MODELS) {
    fs_named *e;
    while (rc == 0 &&
           (e = fs_smap_next(ino == FS_INO_ST_KEYS ? &fs.keys : &fs.models, &it)) != NULL) {
      if (!e->gone) {
        rc |= listing_add(l, e->name, FS_INO(e->o.group, 0), S_IFREG);
      }
    }
    return rc;
  }
  fs_dir *d = fs_dir_of(ino);
  fs_file *f;
  fs_slot *s;
  char name[FS_NAME_MAX + 32];
  if (d == NULL) {
    return -ENOTDIR;
  }
  while (rc == 0 && (f = fs_smap_next(&d->files, &it)) != NULL) {
    rc |= listing_add(l, f->name, FS_INO(f->o.group, 0), S_IFREG);
  }
  it = 0;
  while (rc == 0 && (s = fs_smap_next(&d->slots, &it)) != NULL) {
    fs_run *r = s->run;
    if (r == NULL) {
      continue;
    }
    snprintf(name, sizeof name, "%s.out", s->name);
    rc |= listing_add(l, name, FS_INO(s->o.group, FS_SUB_OUT), S_IFREG);
    snprintf(name, sizeof name, "%s.json", s->name);
    rc |= listing_add(l, name, FS_INO(s->o.group, FS_SUB_JSON), S_IFREG);
    if (r->status == GKP__JOB_FAILED) {
      snprintf(name, sizeof name, "%s.err", s->name);
      rc |= listing_add(l, name, FS_INO(s->o.group, FS_SUB_ERR), S_IFREG);
    }
    for (size_t i = 0; rc == 0 && i < r->nimages; i++) {
      fs_image_name(s, r, i, name, sizeof name);
      rc |= listing_add(l, name, FS_INO(s->o.group, FS_SUB_IMG0 + i), S_IFREG);
    }
  }
  return rc;
}

/* Adds a stored job's entries, unless memory listed it (without fs.mu). */
typedef struct store_listing {
  fs_listing *l;
  fs_smap seen; /* names listed from memory */
} store_listing;

static int list_stored(void *ud, int64_t row, const char *name, int failed, const char *exts) {
  store_listing *sl = ud;
  char out[FS_NAME_MAX + 32];
  int rc = 0;
  unsigned i = 0;
  if (name == NULL || fs_smap_get(&sl->seen, name) != NULL) {
    return 0;
  }
  rc |= listing_add(sl->l, name, FS_INO(FS_ROW_GROUP(row, 1), 0), S_IFREG);
  snprintf(out, sizeof out, "%s.out", name);
  rc |= listing_add(sl->l, out, FS_INO(FS_ROW_GROUP(row, 0), FS_SUB_OUT), S_IFREG);
  snprintf(out, sizeof out, "%s.json", name);
  rc |= listing_add(sl->l, out, FS_INO(FS_ROW_GROUP(row, 0), FS_SUB_JSON), S_IFREG);
  if (failed) {
    snprintf(out, sizeof out, "%s.err", name);
    rc |= listing_add(sl->l, out, FS_INO(FS_ROW_GROUP(row, 0), FS_SUB_ERR), S_IFREG);
  }
  int names = strchr(exts, '.') != NULL || strchr(exts, '/') != NULL;
  for (const char *e = exts; rc == 0 && *e != '\0' && i < FS_MAX_IMAGES; i++) {
    size_t n = strcspn(e, names ? "/" : ",");
    if (names) {
      snprintf(out, sizeof out, "%.*s", (int)n, e);
    } else if (i == 0) {
      snprintf(out, sizeof out, "%s.%.*s", name, (int)n, e);
    } else {
      snprintf(out, sizeof out, "%s-%u.%.*s", name, i + 1, (int)n, e);
    }
    rc |= listing_add(sl->l, out, FS_INO(FS_ROW_GROUP(row, 0), FS_SUB_IMG0 + i), S_IFREG);
    e += n + (e[n] != '\0');
  }
  return rc != 0 ? -ENOMEM : 0;
}

/* The finished jobs of a profile directory that are only in the store:
 * listed from it without fs.mu, skipping the names memory listed. */
static int listing_store(fuse_ino_t ino, fs_listing *l) {
  store_listing sl = {.l = l};
  char *profile = NULL, **names = NULL;
  size_t n = 0, it = 0;
  int rc = 0;
  pthread_mutex_lock(&fs.mu);
  fs_dir *d = fs_dir_of(ino);
  if (d != NULL && (profile = strdup(d->name)) != NULL &&
      (names = calloc(d->files.n + d->slots.n + 1, sizeof *names)) != NULL) {
    fs_file *f;
    fs_slot *s;
    while (rc == 0 && (f = fs_smap_next(&d->files, &it)) != NULL) {
      rc = (names[n] = strdup(f->name)) != NULL ? fs_smap_put(&sl.seen, names[n], l) : -ENOMEM;
      n += names[n] != NULL;
    }
    it = 0;
    while (rc == 0 && (s = fs_smap_next(&d->slots, &it)) != NULL) {
      rc = (names[n] = strdup(s->name)) != NULL ? fs_smap_put(&sl.seen, names[n], l) : -ENOMEM;
      n += names[n] != NULL;
    }
  } else if (d != NULL) {
    rc = -ENOMEM;
  }
  pthread_mutex_unlock(&fs.mu);
  if (profile != NULL && rc == 0) {
    rc = fs_store_list(profile, list_stored, &sl);
  }
  fs_smap_free(&sl.seen);
  for (size_t i = 0; i < n; i++) {
    free(names[i]);
  }
  free(names);
  free(profile);
  return rc;
}

static void listing_free(fs_listing *l) {
  for (size_t i = 0; i < l->n; i++) {
    free(l->v[i].name);
  }
  free(l->v);
  free(l);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  fs_listing *l = calloc(1, sizeof *l);
  fs_handle *h = calloc(1, sizeof *h);
  int rc;
  if (l == NULL || h == NULL) {
    free(l);
    free(h);
    fuse_reply_err(req, ENOMEM);
    return;
  }
  pthread_mutex_lock(&fs.mu);
  rc = listing_build(ino, l);
  int profile_dir = fs_dir_of(ino) != NULL;
  pthread_mutex_unlock(&fs.mu);
  if (rc == 0 && profile_dir) {
    rc = listing_store(ino, l);
  }
  pthread_mutex_lock(&fs.mu);
  if (rc == 0) {
    h->kind = 0; /* a listing */
    h->buf = (char *)l;
    fs_handle_link(h);
  }
  pthread_mutex_unlock(&fs.mu);
  if (rc != 0) {
    listing_free(l);
    free(h);
    fuse_reply_err(req, rc == -ENOTDIR ? ENOTDIR : ENOMEM);
    return;
  }
  fi->fh = (uint64_t)(uintptr_t)h;
  fi->cache_readdir = 0;
  if (fuse_reply_open(req, fi) != 0) {
    pthread_mutex_lock(&fs.mu);
    if (h->all_prev != NULL) {
      h->all_prev->all_next = h->all_next;
    } else {
      fs.handles = h->all_next;
    }
    if (h->all_next != NULL) {
      h->all_next->all_prev = h->all_prev;
    }
    pthread_mutex_unlock(&fs.mu);
    listing_free(l);
    free(h);
  }
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi) {
  fs_handle *h = (fs_handle *)(uintptr_t)fi->fh;
  fs_listing *l = (fs_listing *)h->buf;
  char *buf = malloc(size > 0 ? size : 1);
  size_t pos = 0;
  (void)ino;
  if (buf == NULL) {
    fuse_reply_err(req, ENOMEM);
    return;
  }
  for (size_t i = off < 0 ? 0 : (size_t)off; i < l->n; i++) {
    struct stat st = {.st_ino = l->v[i].ino, .st_mode = l->v[i].mode};
    size_t n = fuse_add_direntry(req, buf + pos, size - pos, l->v[i].name, &st, (off_t)(i + 1));
    if (n > size - pos) {
      break;
    }
    pos += n;
  }
  fuse_reply_buf(req, buf, pos);
  free(buf);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  fs_handle *h = (fs_handle *)(uintptr_t)fi->fh;
  (void)ino;
  pthread_mutex_lock(&fs.mu);
  if (h->all_prev != NULL) {
    h->all_prev->all_next = h->all_next;
  } else if (fs.handles == h) {
    fs.handles = h->all_next;
  }
  if (h->all_next != NULL) {
    h->all_next->all_prev = h->all_prev;
  }
  pthread_mutex_unlock(&fs.mu);
  listing_free((fs_listing *)h->buf);
  free(h);
  fuse_reply_err(req, 0);
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  (void)ino;
  (void)datasync;
  (void)fi;
  fuse_reply_err(req, 0);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino) {
  struct statvfs sv;
  (void)ino;
  memset(&sv, 0, sizeof sv);
  sv.f_bsize = sv.f_frsize = 4096;
  sv.f_namemax = FS_NAME_MAX;
  pthread_mutex_lock(&fs.mu);
  sv.f_files = fs.objs.n;
  pthread_mutex_unlock(&fs.mu);
  fuse_reply_statfs(req, &sv);
}

static void op_init(void *userdata, struct fuse_conn_info *conn) {
  (void)userdata;
  if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) {
    conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
  }
  /* Prompt files are written through: no writeback cache. */
  conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
}

const struct fuse_lowlevel_ops fs_ops = {
    .init = op_init,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .mknod = fs_op_mknod,
    .mkdir = fs_op_mkdir,
    .unlink = fs_op_unlink,
    .rmdir = fs_op_rmdir,
    .symlink = fs_op_symlink,
    .rename = fs_op_rename,
    .link = fs_op_link,
    .open = fs_op_open,
    .read = fs_op_read,
    .write = fs_op_write,
    .flush = fs_op_flush,
    .release = fs_op_release,
    .fsync = fs_op_fsync,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .releasedir = op_releasedir,
    .fsyncdir = op_fsyncdir,
    .statfs = op_statfs,
    .create = fs_op_create,
    .poll = fs_op_poll,
};
