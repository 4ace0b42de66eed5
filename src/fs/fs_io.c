/*
 * fs_io.c - file operations of the mount: open, read, write, flush, release,
 * fsync and poll; and the submission of a prompt when its writer closes it.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/timeutil.h"
#include "fs/fs.h"
#include "fs/fs_ops.h"

/* ---- submitting ------------------------------------------------------------------------ */

/*
 * Submits a file's content as a job of its name when it should be: a
 * prompt (not a scratch name), non-empty, within the limit, and changed
 * since it was last submitted (or `force`, for a rename).  Called without
 * fs.mu; the caller holds a reference on f.
 */
int fs_maybe_submit(fs_file *f, int force) {
  fs_slot *s = NULL;
  char *copy = NULL;
  size_t len = 0;
  uint64_t uid = 0;

  pthread_mutex_lock(&fs.mu);
  if (!f->dirty && !force) {
    pthread_mutex_unlock(&fs.mu);
    return 0;
  }
  f->dirty = 0;
  if (f->dir != NULL && !f->dir->gone && !fs_file_scratch(f) && !f->too_big && f->data.len > 0) {
    if (f->data.len > fs.max_prompt) {
      fs_log(GKP_LOG_WARN, "%s/%s: %zu bytes is over the prompt limit of %zu bytes; not sent",
             f->dir->name, f->name, f->data.len, fs.max_prompt);
    } else if ((copy = malloc(f->data.len)) != NULL) {
      memcpy(copy, f->data.p, f->data.len);
      len = f->data.len;
      s = fs_slot_get(f->dir, f->name, 1);
      if (s != NULL) {
        s->refs++;
        s->mode = f->mode;
        s->uid = f->uid;
        s->gid = f->gid;
        uid = fs_store_run_id();
        f->sub_run = uid; /* the stored prompt will be this content */
      }
    }
  }
  pthread_mutex_unlock(&fs.mu);
  if (s != NULL) {
    int rc = fs_job_submit(s, copy, len, 1, uid);
    if (rc != 0 && rc != -ENOENT) {
      fs_log(GKP_LOG_INFO, "%s/%s: the job was refused: see %s.err", s->profile, s->name, s->name);
    }
    pthread_mutex_lock(&fs.mu);
    fs_slot_unref(s);
    pthread_mutex_unlock(&fs.mu);
  }
  free(copy);
  return s != NULL;
}

/* ---- open, read, write, flush, release ---------------------------------------------------- */

/* Opens an output of a run: its text or an image, from memory or from the
 * store (fs.mu held). */
static int open_output(fs_slot *s, unsigned sub, fs_handle *h) {
  fs_run *r = s->run;
  if (r == NULL) {
    return ENOENT;
  }
  if (sub >= FS_SUB_IMG0 && sub - FS_SUB_IMG0 >= r->nimages) {
    return ENOENT;
  }
  h->done = r->runner_done && r->status == GKP__JOB_DONE;
  fs_run_ref(r);
  h->run = r;
  h->gen = r->gen;
  if (r->on_disk) {
    h->disk = 1; /* read by row: a row replaced meanwhile reads as an error */
  } else {
    r->mem_readers++;
  }
  return 0;
}

/*
 * The steps of open.  Each runs under fs.mu, stores the new handle (if any)
 * in *hp and returns 0 or a positive errno; a handle left with an error is
 * freed by the caller.  A missing handle without an error means ENOMEM.
 */

/* The fixed nodes: README, ctl and the files of status/. */
static int open_fixed(fuse_ino_t ino, int wr, fs_handle **hp, int *render) {
  if (ino == FS_INO_ROOT || ino == FS_INO_STATUS || ino == FS_INO_ST_KEYS ||
      ino == FS_INO_ST_MODELS) {
    return EISDIR;
  }
  if (ino == FS_INO_CTL) {
    *hp = fs_handle_new(FS_H_CTL);
    *render = 1;
    return 0;
  }
  if (wr) {
    return EACCES;
  }
  *hp = fs_handle_new(FS_H_BUF);
  *render = 1;
  return 0;
}

/* A prompt or scratch file: O_TRUNC empties it, else its content is
 * brought back into memory. */
static int open_file(fs_file *f, const struct fuse_file_info *fi, int wr, pid_t opener,
                     fs_handle **hp) {
  fs_handle *h = *hp = fs_handle_new(FS_H_FILE);
  if (h == NULL) {
    return 0;
  }
  h->file = f;
  h->opener = opener;
  f->refs++;
  if (wr && (fi->flags & O_TRUNC) && fs_file_len(f) > 0) {
    fs_file_clear(f);
    f->dirty = 1;
    f->mtime_ms = f->ctime_ms = gkp__now_ms();
  } else {
    fs_file_load(f); /* a finished job's prompt, kept on disk */
  }
  if (wr && (fi->flags & O_TRUNC)) {
    f->too_big = 0;
  }
  return 0;
}

/* A job's output: .out and images (read as they come), .json and .err
 * (rendered now). */
static int open_slot(fs_slot *s, fuse_ino_t ino, const struct fuse_file_info *fi, int wr,
                     fs_handle **hp) {
  unsigned sub = FS_INO_SUB(ino);
  fs_handle *h;
  if (wr) {
    return fs_attr_of(ino, &(struct stat){0}) != 0 ? ENOENT : EACCES;
  }
  if (s->run == NULL) {
    return ENOENT;
  }
  if (sub == FS_SUB_OUT || sub >= FS_SUB_IMG0) {
    if ((h = *hp = fs_handle_new(sub == FS_SUB_OUT ? FS_H_OUT : FS_H_IMAGE)) == NULL) {
      return 0;
    }
    h->image = sub >= FS_SUB_IMG0 ? sub - FS_SUB_IMG0 : 0;
    int err = open_output(s, sub, h);
    h->nonblock = (fi->flags & O_NONBLOCK) != 0;
    return err;
  }
  if (sub == FS_SUB_JSON) {
    if ((h = *hp = fs_handle_new(FS_H_BUF)) == NULL || (h->buf = fs_job_json(s->run, 0)) == NULL) {
      return ENOMEM;
    }
    h->len = strlen(h->buf);
    h->buf[h->len++] = '\n'; /* replaces the NUL: a text file ends with a newline */
    return 0;
  }
  if (sub == FS_SUB_ERR) {
    if (s->run->status != GKP__JOB_FAILED) {
      return ENOENT;
    }
    if ((h = *hp = fs_handle_new(FS_H_BUF)) == NULL) {
      return 0;
    }
    if ((h->buf = fs_job_err_text(s->run)) == NULL) {
      return ENOMEM;
    }
    h->len = strlen(h->buf);
    return 0;
  }
  return ENOENT;
}

/* Any node but the fixed ones. */
static int open_object(fuse_ino_t ino, const struct fuse_file_info *fi, int wr, pid_t opener,
                       fs_handle **hp, int *render) {
  fs_obj *o = fs_obj_get(FS_INO_GROUP(ino));
  if (o == NULL) {
    return ENOENT;
  }
  switch (o->type) {
  case FS_T_DIR:
    return EISDIR;
  case FS_T_FILE:
    return FS_INO_SUB(ino) == 0 ? open_file((fs_file *)o, fi, wr, opener, hp) : ENOENT;
  case FS_T_ST_KEY:
  case FS_T_ST_MODEL:
    if (wr) {
      return EACCES;
    }
    *hp = fs_handle_new(FS_H_BUF);
    *render = 1;
    return 0;
  case FS_T_SLOT:
    return open_slot((fs_slot *)o, ino, fi, wr, hp);
  default:
    return ENOENT;
  }
}

/* How the kernel is to treat the open file. */
static void open_flags(const fs_handle *h, struct fuse_file_info *fi) {
  if (h->kind == FS_H_FILE) {
    fi->keep_cache = 0;
    return;
  }
  /* Sizes are not known in advance: every read reaches us.  Every
   * generated file may be seeked (head -n 1 seeks back after the line it
   * printed, and fails on a regular file that cannot): a handle's content
   * is fixed when it is opened (a snapshot), and a running answer's reads
   * at any offset wait for text as sequential ones do. */
  fi->direct_io = 1;
  fi->nonseekable = 0;
  /* Only a prompt's close means something (it submits): spare the others
   * a FLUSH round trip. */
  fi->noflush = h->kind != FS_H_CTL;
}

void fs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  int wr = (fi->flags & O_ACCMODE) != O_RDONLY, err, render = 0;
  fs_handle *h = NULL;

  pthread_mutex_lock(&fs.mu);
  if (FS_INO_GROUP(ino) == 0) {
    err = open_fixed(ino, wr, &h, &render);
  } else {
    err = open_object(ino, fi, wr, fuse_req_ctx(req)->pid, &h, &render);
  }
  if (err == 0 && h == NULL) {
    err = ENOMEM;
  }
  if (err != 0) {
    if (h != NULL) {
      if (h->kind == FS_H_BUF && h->buf != NULL) {
        free(h->buf);
        h->buf = NULL;
      }
      fs_handle_free(h);
    }
    pthread_mutex_unlock(&fs.mu);
    fuse_reply_err(req, err);
    return;
  }
  fs_handle_link(h);
  pthread_mutex_unlock(&fs.mu);

  if (render) {
    int rc = fs_status_render(ino, &h->buf, &h->len);
    if (rc != 0) {
      pthread_mutex_lock(&fs.mu);
      fs_handle_free(h);
      pthread_mutex_unlock(&fs.mu);
      fuse_reply_err(req, -rc);
      return;
    }
  }
  open_flags(h, fi);
  fi->fh = (uint64_t)(uintptr_t)h;
  if (fuse_reply_open(req, fi) != 0) {
    pthread_mutex_lock(&fs.mu);
    fs_handle_free(h); /* the open was interrupted: no release will come */
    pthread_mutex_unlock(&fs.mu);
  }
}

/* Queues the reply of a read from memory (fs.mu held). */
static void reply_slice(fs_outbox *ob, fuse_req_t req, const char *data, size_t len, size_t size,
                        off_t off) {
  if (off < 0 || (size_t)off >= len) {
    fs_outbox_reply(ob, req, 0, NULL, 0);
    return;
  }
  size_t n = len - (size_t)off;
  fs_outbox_reply(ob, req, 0, data + off, n < size ? n : size);
}

void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  fs_handle *h = (fs_handle *)(uintptr_t)fi->fh;
  FS_OUTBOX(ob);
  (void)ino;
  switch (h->kind) {
  case FS_H_OUT:
    fs_job_read(req, h, size, off);
    return;
  case FS_H_FILE:
    pthread_mutex_lock(&fs.mu);
    reply_slice(&ob, req, h->file->data.p, h->file->data.len, size, off);
    pthread_mutex_unlock(&fs.mu);
    fs_outbox_send(&ob);
    return;
  case FS_H_IMAGE:
    if (h->disk) {
      char *buf = malloc(size > 0 ? size : 1);
      ssize_t n = buf != NULL ? fs_store_read(h->run->row, (int)h->image, buf, size, off) : -ENOMEM;
      if (n < 0) {
        fuse_reply_err(req, (int)-n);
      } else {
        fuse_reply_buf(req, buf, (size_t)n);
      }
      free(buf);
      return;
    }
    pthread_mutex_lock(&fs.mu);
    reply_slice(&ob, req, h->run->images[h->image].data, h->run->images[h->image].len, size, off);
    pthread_mutex_unlock(&fs.mu);
    fs_outbox_send(&ob);
    return;
  default:
    /* A copy: a release (which frees the handle) may arrive as soon as the
     * kernel has the reply, before writev() has returned here. */
    reply_slice(&ob, req, h->buf, h->len, size, off);
    fs_outbox_send(&ob);
    return;
  }
}

void fs_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                 struct fuse_file_info *fi) {
  fs_handle *h = (fs_handle *)(uintptr_t)fi->fh;
  (void)ino;
  if (h->kind == FS_H_CTL) {
    int rc = fs_ctl_run(buf, size);
    if (rc != 0) {
      fuse_reply_err(req, -rc);
    } else {
      fuse_reply_write(req, size);
    }
    return;
  }
  if (h->kind != FS_H_FILE) {
    fuse_reply_err(req, EACCES);
    return;
  }
  pthread_mutex_lock(&fs.mu);
  fs_file *f = h->file;
  if (off < 0 || (size_t)off + size > fs_file_limit(f)) {
    /* Refused here, where even a shell's builtin echo sees it; the
     * partial content is never submitted. */
    f->too_big = 1;
    pthread_mutex_unlock(&fs.mu);
    fuse_reply_err(req, EFBIG);
    return;
  }
  int rc = fs_buf_write(&f->data, (size_t)off, buf, size);
  if (rc != 0) {
    f->too_big = 1; /* part of the content is missing: never submit it */
    pthread_mutex_unlock(&fs.mu);
    fuse_reply_err(req, -rc); /* ENOSPC: over -o max_memory */
    return;
  }
  f->dirty = 1;
  f->sub_run = 0;
  f->mtime_ms = f->ctime_ms = gkp__now_ms();
  pthread_mutex_unlock(&fs.mu);
  fuse_reply_write(req, size);
}

/* A close(): submits when the process that opened the file closes it.  A
 * forked child's close (`{ echo a; date; echo b; } > x`, `make > log`)
 * flushes too, with part of the prompt written: it submits nothing, and
 * the opener's close (or the last release) submits the whole. */
void fs_op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  fs_handle *h = (fs_handle *)(uintptr_t)fi->fh;
  (void)ino;
  if (h->kind == FS_H_FILE && fuse_req_ctx(req)->pid == h->opener && fs_maybe_submit(h->file, 0)) {
    /* close() returns once the prompt is written to the store's log: a job
     * whose writer saw success survives the daemon's death. */
    fs_store_sync(req, 0);
    return;
  }
  fuse_reply_err(req, 0);
}

void fs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  fs_handle *h = (fs_handle *)(uintptr_t)fi->fh;
  (void)ino;
  if (h->kind == FS_H_FILE) {
    fs_maybe_submit(h->file, 0);
  }
  pthread_mutex_lock(&fs.mu);
  fs_handle_free(h);
  pthread_mutex_unlock(&fs.mu);
  fuse_reply_err(req, 0);
}

/* fsync() of a prompt: answered once what was queued for the store (its
 * submitted prompt, if any) is committed. */
void fs_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  fs_handle *h = (fs_handle *)(uintptr_t)fi->fh;
  (void)ino;
  (void)datasync;
  if (h->kind == FS_H_FILE) {
    fs_store_sync(req, 1);
  } else {
    fuse_reply_err(req, 0);
  }
}

void fs_op_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
                struct fuse_pollhandle *ph) {
  fs_handle *h = (fs_handle *)(uintptr_t)fi->fh;
  struct fuse_pollhandle *destroy = NULL;
  unsigned revents;
  (void)ino;
  if (h->kind != FS_H_OUT) {
    if (ph != NULL) {
      fuse_pollhandle_destroy(ph);
    }
    fuse_reply_poll(req, POLLIN | POLLRDNORM | (h->kind == FS_H_FILE ? POLLOUT : 0));
    return;
  }
  pthread_mutex_lock(&fs.mu);
  revents = fs_job_revents(h);
  if (ph != NULL) {
    if (revents != 0) {
      destroy = ph;
    } else {
      fs_job_poll_drop(h);
      h->ph = ph;
      h->poll_prev = NULL;
      h->poll_next = h->run->pollers;
      if (h->poll_next != NULL) {
        h->poll_next->poll_prev = h;
      }
      h->run->pollers = h;
    }
  }
  pthread_mutex_unlock(&fs.mu);
  if (destroy != NULL) {
    fuse_pollhandle_destroy(destroy);
  }
  fuse_reply_poll(req, revents);
}
