/*
 * fs_jobs.c - jobs of the filesystem: submitting a prompt to the runner,
 * the runner's sink (on the loop thread), and reads of <name>.out that wait
 * for text without holding a thread.
 *
 * A read with nothing to return is parked: its fuse_req_t is stored in the
 * run's list and answered by the thread that brings text (the runner's loop
 * thread through the sink) or by libfuse's interrupt callback.  Parked
 * reads live in fs.parked by id, so an interrupt arriving for a read that
 * was already answered finds nothing and does nothing.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/timeutil.h"
#include "common/util.h"
#include "fs/fs.h"

const double fs_hist_bounds[FS_HIST_BUCKETS - 1] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                                    2.5,   5,    10,    30,   60,  120,  300};

/* ---- the outbox ---------------------------------------------------------------- */

/*
 * Replies are prepared under fs.mu and sent after it is dropped: a reply
 * wakes the reader, which may preempt the sender, and a sender preempted
 * while holding fs.mu would stall every other thread.  Data is copied, so
 * what it came from may change or go as soon as fs.mu is dropped.
 */
/* A new slot at the end of the outbox, or NULL when memory ran out. */
static fs_out *outbox_push(fs_outbox *ob) {
  if (ob->n == ob->cap) {
    size_t cap = ob->cap * 2;
    fs_out *v = ob->v == ob->small ? malloc(cap * sizeof *v) : realloc(ob->v, cap * sizeof *v);
    if (v == NULL) {
      return NULL;
    }
    if (ob->v == ob->small) {
      memcpy(v, ob->small, ob->n * sizeof *v);
    }
    ob->v = v;
    ob->cap = cap;
  }
  fs_out *o = &ob->v[ob->n++];
  memset(o, 0, sizeof *o);
  return o;
}

void fs_outbox_reply(fs_outbox *ob, fuse_req_t req, int err, const char *data, size_t len) {
  fs_out *o = outbox_push(ob);
  char *copy = NULL;
  if (o != NULL && err == 0 && len > 0 && (copy = malloc(len)) == NULL) {
    ob->n--;
    o = NULL;
  }
  if (o == NULL) { /* out of memory: answer at once rather than never */
    if (err != 0) {
      fuse_reply_err(req, err);
    } else {
      fuse_reply_buf(req, data, len);
    }
    return;
  }
  o->req = req;
  o->err = err;
  if (copy != NULL) {
    memcpy(copy, data, len);
    o->data = copy;
    o->len = len;
  }
}

void fs_outbox_poll(fs_outbox *ob, struct fuse_pollhandle *ph) {
  fs_out *o = ph != NULL ? outbox_push(ob) : NULL;
  if (o != NULL) {
    o->ph = ph;
  } else if (ph != NULL) {
    fuse_lowlevel_notify_poll(ph);
    fuse_pollhandle_destroy(ph);
  }
}

void fs_outbox_send(fs_outbox *ob) {
  for (size_t i = 0; i < ob->n; i++) {
    fs_out *o = &ob->v[i];
    if (o->ph != NULL) {
      fuse_lowlevel_notify_poll(o->ph);
      fuse_pollhandle_destroy(o->ph);
    } else if (o->req == NULL) {
      continue;
    } else if (o->err != 0) {
      fuse_reply_err(o->req, o->err);
    } else {
      fuse_reply_buf(o->req, o->data, o->len);
    }
    free(o->data);
  }
  if (ob->v != ob->small) {
    free(ob->v);
  }
  ob->v = ob->small;
  ob->n = 0;
  ob->cap = FS_OUTBOX_SMALL;
}

/* ---- parked reads (fs.mu held) ---------------------------------------------- */

static void parked_unlink(fs_parked *p) {
  if (p->published) {
    if (p->prev != NULL) {
      p->prev->next = p->next;
    } else {
      p->run->parked = p->next;
    }
    if (p->next != NULL) {
      p->next->prev = p->prev;
    }
    p->published = 0;
  }
  fs_imap_del(&fs.parked, p->id);
}

/*
 * Answers a read of h at `off` if it can be answered now: text, EOF, or an
 * error (the reply goes to the outbox).  Returns 1 if it answered, 0 if the
 * read must wait.
 */
static int answer(fs_outbox *ob, fuse_req_t req, fs_handle *h, off_t off, size_t size) {
  fs_run *r = h->run;
  if (h->gen != r->gen) {
    if (h->consumed) {
      /* The text this reader saw was thrown away: never join two attempts. */
      fs_outbox_reply(ob, req, EIO, NULL, 0);
      return 1;
    }
    h->gen = r->gen;
  }
  if ((size_t)off < r->text_len) {
    size_t n = r->text_len - (size_t)off;
    if (n > size) {
      n = size;
    }
    h->consumed = 1;
    h->pos = off + (off_t)n;
    fs_outbox_reply(ob, req, 0, r->text.p + off, n);
    return 1;
  }
  if (r->runner_done) {
    fs_outbox_reply(ob, req, r->status == GKP__JOB_DONE ? 0 : EIO, NULL, 0);
    return 1;
  }
  return 0;
}

unsigned fs_job_revents(fs_handle *h) {
  fs_run *r = h->run;
  if (h->disk || r->runner_done) {
    return POLLIN | POLLRDNORM;
  }
  if (h->gen != r->gen && h->consumed) {
    return POLLIN | POLLRDNORM | POLLERR;
  }
  if ((size_t)h->pos < r->text_len || (h->gen != r->gen && r->text_len > 0)) {
    return POLLIN | POLLRDNORM;
  }
  return 0;
}

/* Takes a handle out of its run's poll list; returns its poll handle. */
static struct fuse_pollhandle *poll_unlink(fs_handle *h) {
  struct fuse_pollhandle *ph = h->ph;
  if (ph == NULL) {
    return NULL;
  }
  if (h->poll_prev != NULL) {
    h->poll_prev->poll_next = h->poll_next;
  } else if (h->run != NULL && h->run->pollers == h) {
    h->run->pollers = h->poll_next;
  }
  if (h->poll_next != NULL) {
    h->poll_next->poll_prev = h->poll_prev;
  }
  h->poll_prev = h->poll_next = NULL;
  h->ph = NULL;
  return ph;
}

void fs_job_poll_drop(fs_handle *h) {
  struct fuse_pollhandle *ph = poll_unlink(h);
  if (ph != NULL) {
    fuse_pollhandle_destroy(ph);
  }
}

void fs_job_wake(fs_run *r, fs_outbox *ob) {
  fs_parked *p = r->parked, *next;
  for (; p != NULL; p = next) {
    next = p->next;
    if (answer(ob, p->req, p->h, p->off, p->size)) {
      parked_unlink(p);
      free(p);
    }
  }
  fs_handle *h = r->pollers, *hn;
  for (; h != NULL; h = hn) {
    hn = h->poll_next;
    if (fs_job_revents(h) != 0) {
      fs_outbox_poll(ob, poll_unlink(h));
    }
  }
}

/* libfuse's interrupt callback (any thread, with the request's lock held). */
static void on_interrupt(fuse_req_t req, void *data) {
  uint64_t id = (uint64_t)(uintptr_t)data;
  int reply = 0;
  pthread_mutex_lock(&fs.mu);
  fs_parked *p = fs_imap_get(&fs.parked, id);
  if (p != NULL && p->req == req) {
    if (!p->published) {
      p->interrupted = 1; /* the reader answers EINTR itself */
    } else {
      parked_unlink(p);
      free(p);
      reply = 1;
    }
  }
  pthread_mutex_unlock(&fs.mu);
  if (reply) {
    fuse_reply_err(req, EINTR);
  }
}

/* Reads text of a finished run from the store. */
static void read_disk(fuse_req_t req, fs_handle *h, size_t size, off_t off) {
  char stack[65536];
  char *buf = size <= sizeof stack ? stack : malloc(size);
  ssize_t n;
  if (buf == NULL) {
    fuse_reply_err(req, ENOMEM);
    return;
  }
  n = fs_store_read(h->run->row, -1, buf, size, off);
  if (n < 0) {
    fuse_reply_err(req, (int)-n);
  } else if (n == 0) {
    int ok;
    pthread_mutex_lock(&fs.mu);
    ok = h->run->status == GKP__JOB_DONE;
    pthread_mutex_unlock(&fs.mu);
    if (ok) {
      fuse_reply_buf(req, NULL, 0);
    } else {
      fuse_reply_err(req, EIO);
    }
  } else {
    fuse_reply_buf(req, buf, (size_t)n);
  }
  if (buf != stack) {
    free(buf);
  }
}

void fs_job_read(fuse_req_t req, fs_handle *h, size_t size, off_t off) {
  FS_OUTBOX(ob);
  fs_parked *p;
  uint64_t id;

  if (h->disk) {
    read_disk(req, h, size, off);
    return;
  }
  pthread_mutex_lock(&fs.mu);
  if (answer(&ob, req, h, off, size)) {
    pthread_mutex_unlock(&fs.mu);
    fs_outbox_send(&ob);
    return;
  }
  if (h->nonblock || fs.stopping) {
    pthread_mutex_unlock(&fs.mu);
    fuse_reply_err(req, fs.stopping ? EIO : EAGAIN);
    return;
  }
  p = calloc(1, sizeof *p);
  if (p == NULL) {
    pthread_mutex_unlock(&fs.mu);
    fuse_reply_err(req, ENOMEM);
    return;
  }
  p->id = id = fs.next_parked_id++;
  p->req = req;
  p->h = h;
  p->run = h->run;
  p->off = off;
  p->size = size;
  if (fs_imap_put(&fs.parked, id, p) != 0) {
    pthread_mutex_unlock(&fs.mu);
    free(p);
    fuse_reply_err(req, ENOMEM);
    return;
  }
  pthread_mutex_unlock(&fs.mu);

  /* Registered without fs.mu: libfuse calls on_interrupt at once (which
   * takes fs.mu) if the interrupt came first.  Until the read is published
   * below, nobody else can answer it, so req stays valid here. */
  fuse_req_interrupt_func(req, on_interrupt, (void *)(uintptr_t)id);

  pthread_mutex_lock(&fs.mu);
  if (p->interrupted) {
    parked_unlink(p);
    pthread_mutex_unlock(&fs.mu);
    free(p);
    fuse_reply_err(req, EINTR);
    return;
  }
  if (answer(&ob, req, h, off, size)) { /* text came in the meantime */
    parked_unlink(p);
    pthread_mutex_unlock(&fs.mu);
    free(p);
    fs_outbox_send(&ob);
    return;
  }
  p->next = h->run->parked;
  if (p->next != NULL) {
    p->next->prev = p;
  }
  h->run->parked = p;
  p->published = 1;
  pthread_mutex_unlock(&fs.mu);
}

/* ---- metadata ------------------------------------------------------------------ */

static cJSON *num_or_null(int64_t v) {
  return v >= 0 ? cJSON_CreateNumber((double)v) : cJSON_CreateNull();
}

static cJSON *str_or_null(const char *s) {
  return s != NULL && s[0] != '\0' ? cJSON_CreateString(s) : cJSON_CreateNull();
}

static cJSON *time_or_null(int64_t ms) {
  char t[40];
  return ms > 0 ? cJSON_CreateString(gkp__rfc3339(ms, t, sizeof t)) : cJSON_CreateNull();
}

static const char *attempt_kind(const gkp__attempt *a) {
  if (a->kind != GKP_KIND_NONE) {
    return gkp_kind_name(a->kind);
  }
  return a->http_status >= 200 && a->http_status < 300 ? "ok" : "none";
}

char *fs_job_json(const fs_run *r, int store) {
  cJSON *o = cJSON_CreateObject(), *att = cJSON_CreateArray(), *imgs = cJSON_CreateArray();
  char *out;
  char name[FS_NAME_MAX + 32];

  cJSON_AddStringToObject(
      o, "status", gkp__job_status_name(store && r->committing ? r->final_status : r->status));
  cJSON_AddStringToObject(o, "profile", r->slot->profile);
  cJSON_AddStringToObject(o, "name", r->slot->name);
  cJSON_AddItemToObject(o, "model_requested", str_or_null(r->model_requested));
  cJSON_AddItemToObject(o, "model_used", str_or_null(r->model_used));
  cJSON_AddItemToObject(o, "key_id", str_or_null(r->key_id));
  cJSON *route = r->route != NULL ? cJSON_Parse(r->route) : NULL;
  cJSON_AddItemToObject(o, "route", route != NULL ? route : cJSON_CreateNull());
  cJSON_AddItemToObject(o, "task_type", str_or_null(r->task_type));
  cJSON_AddItemToObject(o, "complexity", str_or_null(r->complexity));
  for (size_t i = 0; i < r->nattempts; i++) {
    const gkp__attempt *a = &r->attempts[i];
    cJSON *x = cJSON_CreateObject();
    cJSON_AddStringToObject(x, "key_id", a->key_id);
    cJSON_AddStringToObject(x, "model", a->model);
    cJSON_AddNumberToObject(x, "http_status", a->http_status);
    cJSON_AddStringToObject(x, "kind", attempt_kind(a));
    cJSON_AddNumberToObject(x, "ms", (double)a->ms);
    cJSON_AddItemToArray(att, x);
  }
  cJSON_AddItemToObject(o, "attempts", att);
  cJSON_AddItemToObject(o, "tokens_in", num_or_null(r->tokens_in));
  cJSON_AddItemToObject(o, "tokens_out", num_or_null(r->tokens_out));
  cJSON_AddItemToObject(o, "latency_ms",
                        r->finished_ms > 0
                            ? cJSON_CreateNumber((double)(r->finished_ms - r->created_ms))
                            : cJSON_CreateNull());
  cJSON_AddItemToObject(o, "error", str_or_null(r->error));
  cJSON_AddItemToObject(o, "created", time_or_null(r->created_ms));
  cJSON_AddItemToObject(o, "finished", time_or_null(r->finished_ms));
  cJSON_AddNumberToObject(o, "bytes", (double)r->text_len);
  for (size_t i = 0; i < r->nimages; i++) {
    fs_image_name(r->slot, r, i, name, sizeof name);
    cJSON_AddItemToArray(imgs, cJSON_CreateString(name));
  }
  cJSON_AddItemToObject(o, "images", imgs);
  if (store) {
    cJSON *sp = cJSON_AddObjectToObject(o, "spool"), *list = cJSON_CreateArray();
    char run[24];
    snprintf(run, sizeof run, "%016" PRIx64, r->uid);
    cJSON_AddStringToObject(sp, "run", run);
    cJSON_AddNumberToObject(sp, "text_bytes", (double)r->text_len);
    cJSON_AddNumberToObject(sp, "created_ms", (double)r->created_ms);
    cJSON_AddNumberToObject(sp, "finished_ms", (double)r->finished_ms);
    for (size_t i = 0; i < r->nimages; i++) {
      cJSON *x = cJSON_CreateObject();
      cJSON_AddStringToObject(x, "mime", r->images[i].mime);
      cJSON_AddNumberToObject(x, "bytes", (double)r->images[i].len);
      fs_image_name(r->slot, r, i, name, sizeof name);
      cJSON_AddStringToObject(x, "name", name);
      cJSON_AddItemToArray(list, x);
    }
    cJSON_AddItemToObject(sp, "images", list);
  }
  /* The store's copy is one line (as the spool's result files had it). */
  out = store ? cJSON_PrintUnformatted(o) : cJSON_Print(o);
  cJSON_Delete(o);
  return out;
}

/* What to do about a failure, from what the attempts met (one line or NULL). */
static const char *err_hint(const fs_run *r) {
  int seen[GKP_KIND_COUNT] = {0};
  for (size_t i = 0; i < r->nattempts; i++) {
    if (r->attempts[i].kind > 0 && r->attempts[i].kind < GKP_KIND_COUNT) {
      seen[r->attempts[i].kind] = 1;
    }
  }
  const char *e = r->error != NULL ? r->error : "";
  if (r->over_cap == 1) {
    return "Ask for a shorter answer, or mount with a larger -o max_answer (up to 64M).";
  }
  if (r->over_cap == 2) {
    return "Ask for fewer or smaller images, or mount with a larger -o max_images (up to 64M).";
  }
  if (r->over_cap == 3) {
    return "Write the prompt again when fewer or smaller jobs and files are held by the mount, "
           "or mount with a larger -o max_memory.";
  }
  if (seen[GKP_KIND_BAD_REQUEST] || strstr(e, "refused the request") != NULL) {
    return "Google rejected the request itself: change the prompt (or the profile's settings) "
           "and write it again; retrying as is will fail the same way.";
  }
  if (seen[GKP_KIND_INVALID_KEY] || strstr(e, "disabled") != NULL) {
    return "Keys were refused (invalid, revoked or reported as leaked): see status/pool; fix them "
           "in keys.json, then `echo reload > ctl` and write the prompt again.";
  }
  if (seen[GKP_KIND_BILLING]) {
    return "A key's prepaid credits are used up (billing): it rests 2 h; see status/pool, or add "
           "keys and `echo reload > ctl`.";
  }
  if (strstr(e, "exhausted") != NULL || seen[GKP_KIND_RPD] || seen[GKP_KIND_NO_FREE_TIER]) {
    return "The free-tier quota is used up: write the prompt again after the time above, add "
           "keys (one per Google Cloud project), or use another profile; see status/models/.";
  }
  if (seen[GKP_KIND_SERVER] || strstr(e, "timed out") != NULL) {
    return "Google's servers had trouble or were too slow: write the prompt again to retry.";
  }
  return NULL;
}

char *fs_job_err_text(const fs_run *r) {
  const char *e = r->error != NULL && r->error[0] != '\0' ? r->error : "the job failed";
  const char *hint = err_hint(r);
  size_t n = strlen(e) + (hint != NULL ? strlen(hint) + 1 : 0) + 2;
  char *out = malloc(n);
  if (out != NULL) {
    snprintf(out, n, "%s\n%s%s", e, hint != NULL ? hint : "", hint != NULL ? "\n" : "");
  }
  return out;
}

/* Copies s with control characters and backslashes escaped (\n, \t,
 * \xHH, \\), so that a name cannot forge a line or a terminal sequence. */
static void escape(char *dst, size_t cap, const char *s) {
  size_t n = 0;
  for (; *s != '\0' && n + 5 < cap; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '\\') {
      n += (size_t)snprintf(dst + n, cap - n, "\\\\");
    } else if (c == '\n') {
      n += (size_t)snprintf(dst + n, cap - n, "\\n");
    } else if (c == '\t') {
      n += (size_t)snprintf(dst + n, cap - n, "\\t");
    } else if (c < 0x20 || c == 0x7f) {
      n += (size_t)snprintf(dst + n, cap - n, "\\x%02x", c);
    } else {
      dst[n++] = (char)c;
    }
  }
  dst[n] = '\0';
}

void fs_job_line(const fs_run *r, int store, char *buf, size_t len) {
  char when[40], err[160] = "-", profile[4 * FS_NAME_MAX + 8], name[4 * FS_NAME_MAX + 8];
  int status = store && r->committing ? r->final_status : r->status;
  if (r->error != NULL) {
    snprintf(err, sizeof err, "%s", r->error);
    for (char *c = err; *c != '\0'; c++) {
      if ((unsigned char)*c < 0x20 || *c == 0x7f) {
        *c = ' ';
      }
    }
  }
  escape(profile, sizeof profile, r->slot->profile);
  escape(name, sizeof name, r->slot->name);
  int64_t lat = (r->finished_ms > 0 ? r->finished_ms : gkp__now_ms()) - r->created_ms;
  snprintf(buf, len, "%s/%s\t%s\t%s\t%s\t%lldms\t%zu\t%s\t%s\n", profile, name,
           gkp__job_status_name(status),
           r->model_used[0]        ? r->model_used
           : r->model_requested[0] ? r->model_requested
                                   : "-",
           r->key_id[0] ? r->key_id : "-", (long long)lat, r->text_len,
           gkp__rfc3339(r->created_ms, when, sizeof when), err);
}

void fs_job_account(const fs_run *r) {
  double s = (double)(r->finished_ms - r->created_ms) / 1000.0;
  size_t b = 0;
  if (s < 0) {
    s = 0;
  }
  while (b < FS_HIST_BUCKETS - 1 && s > fs_hist_bounds[b]) {
    b++;
  }
  fs.hist[b]++;
  fs.hist_sum += s;
  fs.hist_count++;
  if (r->status >= 0 && r->status <= GKP__JOB_CANCELLED) {
    fs.finished[r->status]++;
  }
}

/* Copies the runner's view of a job into the run (fs.mu held). */
static void take_info(fs_run *r, const gkp__job_info *info) {
  r->status = info->status;
  gkp__strlcpy(r->model_requested, info->model_requested, sizeof r->model_requested);
  gkp__strlcpy(r->model_used, info->model_used, sizeof r->model_used);
  gkp__strlcpy(r->key_id, info->key_id, sizeof r->key_id);
  r->tokens_in = info->tokens_in;
  r->tokens_out = info->tokens_out;
  if (info->route != NULL && r->route == NULL) {
    r->route = strdup(info->route);
  }
  gkp__strlcpy(r->task_type, info->task_type, sizeof r->task_type);
  gkp__strlcpy(r->complexity, info->complexity, sizeof r->complexity);
  if (info->nattempts != r->nattempts) {
    gkp__attempt *a = realloc(r->attempts, (info->nattempts + 1) * sizeof *a);
    if (a != NULL) {
      memcpy(a, info->attempts, info->nattempts * sizeof *a);
      r->attempts = a;
      r->nattempts = info->nattempts;
    }
  }
}

/* ---- the runner's sink (loop thread) ------------------------------------------- */

/* A cap reached: the job stops and fails (never a cut answer read as
 * done); what came before the cap stays readable (fs.mu held). */
static void over_cap(fs_run *r, int which) {
  if (!r->over_cap) {
    r->over_cap = which;
    fs_job_cancel(r);
  }
}

static void on_text(void *ud, gkp__job *job, const char *text, size_t len) {
  fs_run *r = ud;
  FS_OUTBOX(ob);
  (void)job;
  pthread_mutex_lock(&fs.mu);
  if (r->over_cap) {
    /* stopping: nothing more is kept */
  } else if (r->text_len + len > fs.max_answer) {
    over_cap(r, 1);
  } else if (fs_buf_write(&r->text, r->text_len, text, len) == 0) {
    r->text_len += len;
    fs_job_wake(r, &ob);
  } else {
    over_cap(r, 3); /* over -o max_memory (or out of memory): never a cut */
  }
  pthread_mutex_unlock(&fs.mu);
  fs_outbox_send(&ob);
}

static void on_restart(void *ud, gkp__job *job) {
  fs_run *r = ud;
  FS_OUTBOX(ob);
  (void)job;
  pthread_mutex_lock(&fs.mu);
  fs_buf_truncate(&r->text, 0);
  r->text_len = 0;
  r->gen++;
  fs_job_wake(r, &ob);
  pthread_mutex_unlock(&fs.mu);
  fs_outbox_send(&ob);
}

static void on_image(void *ud, gkp__job *job, const char *mime, const void *data, size_t len) {
  fs_run *r = ud;
  fs_image *n;
  (void)job;
  pthread_mutex_lock(&fs.mu);
  if (!r->over_cap && (r->nimages >= FS_MAX_IMAGES || r->image_bytes + len > fs.max_images)) {
    over_cap(r, 2);
  }
  if (r->over_cap) {
    /* stopping: nothing more is kept */
  } else if (fs_mem_charge(len, 0) != 0) {
    over_cap(r, 3); /* over -o max_memory: never a job with an image left out */
  } else if ((n = realloc(r->images, (r->nimages + 1) * sizeof *n)) == NULL ||
             ((r->images = n), (n[r->nimages].data = malloc(len > 0 ? len : 1)) == NULL)) {
    fs_mem_release(len);
    over_cap(r, 3);
  } else {
    n = &r->images[r->nimages];
    void *bytes = n->data;
    memset(n, 0, sizeof *n);
    n->data = bytes;
    memcpy(n->data, data, len);
    n->len = len;
    snprintf(n->mime, sizeof n->mime, "%s", mime);
    snprintf(n->ext, sizeof n->ext, "%s", fs_mime_ext(mime));
    fs_image_alloc(r, r->nimages);
    r->nimages++;
    r->image_bytes += len;
  }
  pthread_mutex_unlock(&fs.mu);
}

static void on_state(void *ud, gkp__job *job, const gkp__job_info *info) {
  fs_run *r = ud;
  (void)job;
  pthread_mutex_lock(&fs.mu);
  take_info(r, info);
  pthread_mutex_unlock(&fs.mu);
}

/* A finished run that is to be kept goes to the store and reads as
 * running until its result is committed (fs.mu held).  Returns 1 if so. */
static int keep(fs_run *r) {
  if (r->stale || r->slot->run != r ||
      (r->status != GKP__JOB_DONE && r->status != GKP__JOB_FAILED)) {
    return 0;
  }
  r->final_status = r->status;
  r->status = GKP__JOB_RUNNING;
  r->committing = 1;
  fs_store_finish(r);
  return r->committing;
}

void fs_job_finished(fs_run *r, fs_outbox *ob) {
  if (r->committing) {
    r->committing = 0;
    r->status = r->final_status;
  }
  r->runner_done = 1;
  if (!fs.stopping) {
    fs_job_account(r);
    fs_job_wake(r, ob);
  }
}

static void on_done(void *ud, gkp__job *job, const gkp__job_info *info) {
  fs_run *r = ud;
  FS_OUTBOX(ob);
  pthread_mutex_lock(&fs.mu);
  take_info(r, info);
  free(r->error);
  r->error = info->error != NULL && info->error[0] != '\0' ? strdup(info->error) : NULL;
  r->finished_ms = info->finished_ms > 0 ? info->finished_ms : gkp__now_ms();
  if (r->over_cap && !r->stale) {
    char msg[256];
    if (r->over_cap == 1) {
      snprintf(msg, sizeof msg,
               "the answer went over the cap of %zu bytes on answers (-o max_answer); it was "
               "stopped after %zu bytes",
               fs.max_answer, r->text_len);
    } else if (r->over_cap == 2) {
      snprintf(msg, sizeof msg,
               "the images went over the cap of %zu bytes (-o max_images) or %d images per "
               "job; the job was stopped",
               fs.max_images, FS_MAX_IMAGES);
    } else {
      snprintf(msg, sizeof msg,
               "the mount's memory reached its ceiling of %zu bytes (-o max_memory) while this "
               "job's answer came in; the job was stopped after %zu bytes",
               fs.max_memory, r->text_len);
    }
    free(r->error);
    r->error = strdup(msg);
    r->status = GKP__JOB_FAILED;
  }
  r->job = NULL;
  gkp__job_release(job);
  /* A finished answer is kept even while stopping; a job cancelled by the
   * stop stays a bare prompt on disk and is submitted again at start. */
  if (!keep(r)) {
    fs_job_finished(r, &ob);
  }
  fs_run_unref(r); /* the runner's reference */
  pthread_mutex_unlock(&fs.mu);
  fs_outbox_send(&ob);
}

static const gkp__job_sink sink = {
    .on_text = on_text,
    .on_restart = on_restart,
    .on_image = on_image,
    .on_state = on_state,
    .on_done = on_done,
};

/* ---- submitting ------------------------------------------------------------------- */

void fs_job_cancel(fs_run *r) {
  r->cancel_req = 1;
  if (r->job != NULL && !r->runner_done) {
    gkp__job_cancel(r->job);
  }
}

/* Fails a run that never reached the runner (fs.mu held). */
static void fail_now(fs_run *r, const char *msg, fs_outbox *ob) {
  free(r->error);
  r->error = strdup(msg);
  r->status = GKP__JOB_FAILED;
  r->finished_ms = gkp__now_ms();
  if (!keep(r)) {
    fs_job_finished(r, ob);
  }
}

int fs_job_submit(fs_slot *s, const char *prompt, size_t len, int store_prompt, uint64_t run_uid) {
  pthread_mutex_t *smu = fs_store_lock(s->profile, s->name);
  gkp__job_spec spec = {
      .profile = s->profile, .prompt = prompt, .prompt_len = len, .max_wait_ms = -1};
  gkp_error err = {0};
  gkp__job *job;
  fs_run *r, *old;
  int rc = 0;
  FS_OUTBOX(ob);

  uint64_t uid = run_uid != 0 ? run_uid : fs_store_run_id();

  pthread_mutex_lock(smu);
  if (store_prompt && fs_store_prompt(s, uid, prompt, len) != 0) {
    /* Not durable, but still answered: say so in the log only. */
    fs_log(GKP_LOG_WARN, "%s/%s: cannot keep the prompt on disk; the job is not durable",
           s->profile, s->name);
  }
  pthread_mutex_lock(&fs.mu);
  if (s->dir == NULL) {
    /* Removed while the prompt was being written: take the file back. */
    pthread_mutex_unlock(&fs.mu);
    if (store_prompt) {
      fs_store_remove(s);
    }
    pthread_mutex_unlock(smu);
    return -ENOENT;
  }
  r = fs_run_new(s);
  if (r == NULL) {
    pthread_mutex_unlock(&fs.mu);
    pthread_mutex_unlock(smu);
    return -ENOMEM;
  }
  r->uid = uid;
  old = s->run;
  s->run = r; /* the slot's reference */
  fs_cache_drop(s);
  if (old != NULL) {
    old->stale = 1;
    fs_job_cancel(old);
    fs_run_unref(old);
  }
  r->refs += 2; /* the runner's reference, and ours until the end */
  r->submitted = 1;
  fs.submitted++;
  s->dir->mtime_ms = r->created_ms;
  pthread_mutex_unlock(&fs.mu);
  pthread_mutex_unlock(smu);

  job = gkp__runner_submit(fs.runner, &spec, &sink, r, &err);

  pthread_mutex_lock(&fs.mu);
  if (job == NULL) {
    fail_now(r, err.msg[0] != '\0' ? err.msg : "the job was refused", &ob);
    fs_run_unref(r); /* the runner's reference */
    rc = err.code < 0 ? err.code : -EINVAL;
  } else if (!r->runner_done && !r->committing) {
    r->job = job;
    if (r->cancel_req) {
      gkp__job_cancel(job);
    }
  }
  fs_run_unref(r);
  pthread_mutex_unlock(&fs.mu);
  fs_outbox_send(&ob);
  return rc;
}

void fs_job_stop_parked(void) {
  size_t it = 0, n = 0;
  fs_parked *p, **all;
  FS_OUTBOX(ob);
  pthread_mutex_lock(&fs.mu);
  all = calloc(fs.parked.n + 1, sizeof *all);
  while (all != NULL && (p = fs_imap_next(&fs.parked, &it)) != NULL) {
    all[n++] = p;
  }
  for (size_t i = 0; i < n; i++) {
    p = all[i];
    if (!p->published) {
      continue; /* still with the thread that parks it: it answers and frees it */
    }
    parked_unlink(p);
    fs_outbox_reply(&ob, p->req, EIO, NULL, 0);
    free(p);
  }
  free(all);
  pthread_mutex_unlock(&fs.mu);
  fs_outbox_send(&ob);
}
