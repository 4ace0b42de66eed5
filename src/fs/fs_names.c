/*
 * fs_names.c - operations that change names in the mount: create, mknod,
 * unlink, rename (and the refused mkdir, rmdir, link and symlink).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/timeutil.h"
#include "fs/fs.h"
#include "fs/fs_ops.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

/* Removes a slot from its directory and its row from the store.  Called
 * with fs.mu held; drops and retakes it. */
static void remove_slot_locked(fs_slot *s) {
  pthread_mutex_t *smu = fs_store_lock(s->profile, s->name);
  s->refs++;
  fs_slot_remove(s);
  pthread_mutex_unlock(&fs.mu);
  pthread_mutex_lock(smu);
  fs_store_remove(s);
  pthread_mutex_unlock(smu);
  pthread_mutex_lock(&fs.mu);
  fs_slot_unref(s);
}

/* ---- creating, removing, renaming ------------------------------------------------------------ */

/* Checks that `name` may be created in `parent`.  Returns the directory, or
 * NULL with *err set. */
static fs_dir *creatable(fuse_ino_t parent, const char *name, int *err) {
  fs_dir *d = fs_dir_of(parent);
  if (d == NULL) {
    *err = parent == FS_INO_ROOT || FS_INO_GROUP(parent) == 0 ? EACCES : ENOENT;
    return NULL;
  }
  if (d->gone) {
    *err = ENOENT;
    return NULL;
  }
  if (strlen(name) > FS_NAME_MAX) {
    *err = ENAMETOOLONG;
    return NULL;
  }
  if (fs_name_reserved(name)) {
    *err = EACCES; /* outputs are the pool's to write */
    return NULL;
  }
  return d;
}

void fs_op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                  struct fuse_file_info *fi) {
  struct fuse_entry_param e;
  int err = 0;
  fs_handle *h;
  fs_file *f;

  pthread_mutex_lock(&fs.mu);
  fs_dir *d = creatable(parent, name, &err);
  if (d == NULL) {
    pthread_mutex_unlock(&fs.mu);
    fuse_reply_err(req, err);
    return;
  }
  f = fs_smap_get(&d->files, name);
  if (f != NULL && (fi->flags & O_EXCL)) {
    pthread_mutex_unlock(&fs.mu);
    fuse_reply_err(req, EEXIST);
    return;
  }
  if (f == NULL) {
    f = fs_file_new(d, name);
    if (f != NULL) {
      f->mode = mode & 07777;
      f->uid = fuse_req_ctx(req)->uid;
      f->gid = fuse_req_ctx(req)->gid;
      f->excl = (fi->flags & O_EXCL) != 0;
    }
  } else if (fi->flags & O_TRUNC) {
    fs_file_clear(f);
    f->dirty = 1;
    f->too_big = 0;
  } else {
    fs_file_load(f);
  }
  h = f != NULL ? fs_handle_new(FS_H_FILE) : NULL;
  if (h == NULL) {
    pthread_mutex_unlock(&fs.mu);
    fuse_reply_err(req, ENOMEM);
    return;
  }
  h->file = f;
  h->opener = fuse_req_ctx(req)->pid;
  f->refs++;
  fs_handle_link(h);
  fs_entry_of(FS_INO(f->o.group, 0), &e);
  pthread_mutex_unlock(&fs.mu);
  fi->fh = (uint64_t)(uintptr_t)h;
  fi->keep_cache = 0;
  if (fuse_reply_create(req, &e, fi) != 0) {
    pthread_mutex_lock(&fs.mu);
    fs_handle_free(h); /* the create was interrupted: no release will come */
    pthread_mutex_unlock(&fs.mu);
  }
}

void fs_op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev) {
  int err = 0;
  (void)rdev;
  if (!S_ISREG(mode)) {
    fuse_reply_err(req, EPERM);
    return;
  }
  struct fuse_entry_param e;
  pthread_mutex_lock(&fs.mu);
  fs_dir *d = creatable(parent, name, &err);
  if (d != NULL && fs_smap_get(&d->files, name) != NULL) {
    err = EEXIST;
  } else if (d != NULL) {
    fs_file *f = fs_file_new(d, name);
    if (f == NULL) {
      err = ENOMEM;
    } else {
      f->mode = mode & 07777;
      f->uid = fuse_req_ctx(req)->uid;
      f->gid = fuse_req_ctx(req)->gid;
      err = fs_entry_of(FS_INO(f->o.group, 0), &e);
    }
  }
  pthread_mutex_unlock(&fs.mu);
  fs_reply_entry(req, err, &e);
}

void fs_op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode) {
  (void)parent;
  (void)name;
  (void)mode;
  /* Directories are profiles: they come from the configuration. */
  fuse_reply_err(req, EACCES);
}

void fs_op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name) {
  (void)parent;
  (void)name;
  fuse_reply_err(req, EACCES);
}

void fs_op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name) {
  pthread_mutex_lock(&fs.mu);
  fs_dir *d = fs_dir_of(parent);
  if (d == NULL) {
    pthread_mutex_unlock(&fs.mu);
    fuse_reply_err(req, FS_INO_GROUP(parent) == 0 ? EACCES : ENOENT);
    return;
  }
  fs_file *f = fs_smap_get(&d->files, name);
  fs_slot *s = fs_slot_get(d, name, 0), *out = NULL;
  if (f == NULL && s == NULL) {
    /* Removing an output forgets the job (the prompt file stays). */
    if (fs_output_ino(d, name, &out) == 0) {
      pthread_mutex_unlock(&fs.mu);
      fuse_reply_err(req, ENOENT);
      return;
    }
    s = out;
  }
  if (f != NULL) {
    fs_file_unlink(f);
  }
  if (s != NULL) {
    remove_slot_locked(s); /* cancels a running job */
  }
  pthread_mutex_unlock(&fs.mu);
  fuse_reply_err(req, 0);
}

void fs_op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                  const char *newname, unsigned int flags) {
  int err = 0;
  fs_file *f, *g;
  fs_slot *s;

  if (flags & RENAME_EXCHANGE) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  pthread_mutex_lock(&fs.mu);
  fs_dir *sd = fs_dir_of(parent);
  fs_dir *dd = creatable(newparent, newname, &err);
  if (sd == NULL) {
    err = FS_INO_GROUP(parent) == 0 ? EACCES : ENOENT;
  }
  f = sd != NULL ? fs_smap_get(&sd->files, name) : NULL;
  if (err == 0 && f == NULL) {
    err = fs_output_ino(sd, name, &s) != 0 || fs_slot_get(sd, name, 0) != NULL ? EACCES : ENOENT;
  }
  if (err != 0 || dd == NULL) {
    pthread_mutex_unlock(&fs.mu);
    fuse_reply_err(req, err != 0 ? err : EACCES);
    return;
  }
  if (sd == dd && strcmp(name, newname) == 0) {
    pthread_mutex_unlock(&fs.mu);
    fuse_reply_err(req, 0);
    return;
  }
  g = fs_smap_get(&dd->files, newname);
  if (g != NULL && (flags & RENAME_NOREPLACE)) {
    pthread_mutex_unlock(&fs.mu);
    fuse_reply_err(req, EEXIST);
    return;
  }
  char *nn = strdup(newname);
  if (nn == NULL) {
    pthread_mutex_unlock(&fs.mu);
    fuse_reply_err(req, ENOMEM);
    return;
  }
  if (g != NULL) {
    fs_file_unlink(g);
  }
  fs_file_load(f); /* its stored copy belongs to the old name */
  fs_smap_del(&sd->files, f->name);
  free(f->name);
  f->name = nn;
  f->dir = dd;
  if (fs_smap_put(&dd->files, f->name, f) != 0) {
    f->dir = NULL; /* out of memory: the file is lost, as if unlinked */
    fs_file_unref(f);
    pthread_mutex_unlock(&fs.mu);
    fuse_reply_err(req, ENOMEM);
    return;
  }
  f->ctime_ms = sd->mtime_ms = dd->mtime_ms = gkp__now_ms();
  f->refs++; /* held across the submission */
  pthread_mutex_unlock(&fs.mu);

  /* A file that appears by rename (how editors save) is submitted. */
  fs_maybe_submit(f, 1);
  pthread_mutex_lock(&fs.mu);
  fs_file_unref(f);
  pthread_mutex_unlock(&fs.mu);
  fuse_reply_err(req, 0);
}

void fs_op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname) {
  (void)ino;
  (void)newparent;
  (void)newname;
  fuse_reply_err(req, EPERM);
}

void fs_op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name) {
  (void)link;
  (void)parent;
  (void)name;
  fuse_reply_err(req, EPERM);
}
