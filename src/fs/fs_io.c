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
void fs_maybe_submit(fs_file *f, int force) {
  fs_slot *s = NULL;
  char *copy = NULL;
  size_t len = 0;
  uint64_t uid = 0;

  pthread_mutex_lock(&fs.mu);
  if (!f->dirty && !force) {
    pthread_mutex_unlock(&fs.mu);
    return;
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
        uid = fs_spool_run_id();
        f->sub_run = uid; /* the spooled prompt will be this content */
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
}

/* ---- open, read, write, flush, release ---------------------------------------------------- */

/* Opens an output of a run: its text or an image, from memory or from the
 * spool.  Called with fs.mu held (dropped and retaken for disk files). */
static int open_output(fs_slot *s, unsigned sub, fs_handle *h) {
  for (int tries = 0; tries < 3; tries++) {
    fs_run *r = s->run;
    char ext[32];
    if (r == NULL) {
      return ENOENT;
    }
    if (sub >= FS_SUB_IMG0 && sub - FS_SUB_IMG0 >= r->nimages) {
      return ENOENT;
    }
    h->done = r->runner_done && r->status == GKP__JOB_DONE;
    if (!r->on_disk) {
      fs_run_ref(r);
      r->mem_readers++;
      h->run = r;
      h->gen = r->gen;
      return 0;
    }
    /* On disk: open the file while the name's spool files cannot change. */
    pthread_mutex_t *smu = fs_spool_lock(s->profile, s->name);
    int fd;
    fs_run_ref(r);
    s->refs++;
    if (sub == FS_SUB_OUT) {
      snprintf(ext, sizeof ext, "result");
    } else {
      snprintf(ext, sizeof ext, "img%u", sub - FS_SUB_IMG0 + 1);
    }
    pthread_mutex_unlock(&fs.mu);
    pthread_mutex_lock(smu);
    pthread_mutex_lock(&fs.mu);
    int same = s->run == r;
    pthread_mutex_unlock(&fs.mu);
    fd = same ? fs_spool_open(s, ext) : -EAGAIN;
    pthread_mutex_unlock(smu);
    pthread_mutex_lock(&fs.mu);
    fs_slot_unref(s);
    if (fd >= 0) {
      h->run = r;
      h->fd = fd;
      h->fd_off = sub == FS_SUB_OUT ? r->disk_off : 0;
      return 0;
    }
    fs_run_unref(r);
    if (fd != -EAGAIN) {
      fs_log(GKP_LOG_WARN, "%s/%s: the spooled answer cannot be read: %s", s->profile, s->name,
             strerror(-fd));
      return EIO;
    }
  }
  return EAGAIN;
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
static int open_file(fs_file *f, const struct fuse_file_info *fi, int wr, fs_handle **hp) {
  fs_handle *h = *hp = fs_handle_new(FS_H_FILE);
  if (h == NULL) {
    return 0;
  }
  h->file = f;
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
static int open_object(fuse_ino_t ino, const struct fuse_file_info *fi, int wr, fs_handle **hp,
                       int *render) {
  fs_obj *o = fs_obj_get(FS_INO_GROUP(ino));
  if (o == NULL) {
    return ENOENT;
  }
  switch (o->type) {
  case FS_T_DIR:
    return EISDIR;
  case FS_T_FILE:
    return FS_INO_SUB(ino) == 0 ? open_file((fs_file *)o, fi, wr, hp) : ENOENT;
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
  /* Sizes are not known in advance: every read reaches us, no seeking.
   * An answer that is already complete (and an image) has a size and
   * never changes: it may be seeked, so that cmp -s, wc -c and tail -c,
   * which trust st_size of a regular file, see it right. */
  fi->direct_io = 1;
  fi->nonseekable = h->kind == FS_H_BUF || h->kind == FS_H_CTL || (h->kind == FS_H_OUT && !h->done);
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
    err = open_object(ino, fi, wr, &h, &render);
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
    if (h->fd >= 0) {
      char *buf = malloc(size > 0 ? size : 1);
      ssize_t n = buf != NULL ? pread(h->fd, buf, size, off) : -1;
      if (n < 0) {
        fuse_reply_err(req, buf == NULL ? ENOMEM : errno);
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
  if (fs_buf_write(&f->data, (size_t)off, buf, size) != 0) {
    pthread_mutex_unlock(&fs.mu);
    fuse_reply_err(req, ENOMEM);
    return;
  }
  f->dirty = 1;
  f->sub_run = 0;
  f->mtime_ms = f->ctime_ms = gkp__now_ms();
  pthread_mutex_unlock(&fs.mu);
  fuse_reply_write(req, size);
}

void fs_op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  fs_handle *h = (fs_handle *)(uintptr_t)fi->fh;
  (void)ino;
  if (h->kind == FS_H_FILE) {
    fs_maybe_submit(h->file, 0);
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

void fs_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  (void)ino;
  (void)datasync;
  (void)fi;
  fuse_reply_err(req, 0);
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
