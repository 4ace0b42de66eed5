/*
 * fs_spool.c - jobs on disk, so that an answer that cost quota is never
 * lost and a job that was waiting when the daemon stopped runs again.
 *
 * Layout, under the state file's directory:
 *
 *   spool/<profile>/<name>.prompt   "gkp-prompt 1 <run> <length>\n" + the prompt,
 *                                   written when the job is submitted
 *   spool/<profile>/<name>.result   one line of JSON (the job's metadata, with
 *                                   "run" and "text_bytes") + "\n" + the answer,
 *                                   written when the job has finished
 *   spool/<profile>/<name>.img<N>   generated images, written before the result
 *
 * <run> is a random 64-bit id of the submission.  A result counts only for
 * the prompt with the same run id and only if it is complete: so a prompt
 * without a matching result is a job that has not finished, and is
 * submitted again at start; an old answer is never taken for a new prompt's.
 * The prompt is rewritten in place (its header says how long it must be: a
 * write cut short is seen and ignored); results and images are written as
 * .<file>.XXXXXX.tmp (a new file with an unpredictable name) and renamed,
 * so a reader holding the old one keeps it.  No file of the spool is opened
 * through a symbolic link, and the spool directory belongs to the user alone
 * (checked at start).  Two
 * files per job, because creating files is what costs on a busy disk.
 *
 * The files of one name are serialised by fs_spool_lock(profile, name).
 * Results are written by the spool thread, so the runner's loop thread never
 * waits for the disk; prompts are written by the thread that submits, before
 * the job reaches the runner (so a job is durable once its writer's close()
 * has returned).
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/securedir.h"
#include "common/timeutil.h"
#include "fs/fs.h"

#define NSTRIPES 64
#define PROMPT_MAGIC "gkp-prompt 1 "

typedef struct fs_spool_item {
  fs_run *run;
  struct fs_spool_item *next;
} fs_spool_item;

static pthread_mutex_t stripes[NSTRIPES];
static pthread_once_t stripes_once = PTHREAD_ONCE_INIT;

static void stripes_init(void) {
  for (int i = 0; i < NSTRIPES; i++) {
    pthread_mutex_init(&stripes[i], NULL);
  }
}

pthread_mutex_t *fs_spool_lock(const char *profile, const char *name) {
  uint64_t h = 1469598103934665603ull;
  const char *parts[2] = {profile, name};
  pthread_once(&stripes_once, stripes_init);
  for (int i = 0; i < 2; i++) {
    for (const char *p = parts[i]; *p != '\0'; p++) {
      h = (h ^ (unsigned char)*p) * 1099511628211ull;
    }
    h = (h ^ '/') * 1099511628211ull;
  }
  return &stripes[h % NSTRIPES];
}

/* A random run id (never 0), from a generator seeded once by the kernel. */
uint64_t fs_spool_run_id(void) {
  static uint64_t state;
  static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  uint64_t z;
  pthread_mutex_lock(&mu);
  if (state == 0 && getrandom(&state, sizeof state, 0) != (ssize_t)sizeof state) {
    state = (uint64_t)gkp__now_ms() * 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
  }
  z = (state += 0x9e3779b97f4a7c15ull);
  pthread_mutex_unlock(&mu);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return z != 0 ? z : 1;
}

/* ---- files ------------------------------------------------------------------- */

static int spool_path(char *buf, size_t len, const char *profile, const char *name, const char *ext,
                      int tmp) {
  int n = tmp ? snprintf(buf, len, "%s/%s/.%s.%s.XXXXXX.tmp", fs.spool_dir, profile, name, ext)
              : snprintf(buf, len, "%s/%s/%s.%s", fs.spool_dir, profile, name, ext);
  return n > 0 && (size_t)n < len ? 0 : -ENAMETOOLONG;
}

/* Writes every byte of the iovecs (a short write is continued). */
static int write_iov(int fd, struct iovec *iov, int n) {
  while (n > 0) {
    ssize_t w = writev(fd, iov, n);
    if (w < 0) {
      if (errno == EINTR) {
        continue;
      }
      return -errno;
    }
    while (n > 0 && (size_t)w >= iov->iov_len) {
      w -= (ssize_t)iov->iov_len;
      iov++;
      n--;
    }
    if (n > 0) {
      iov->iov_base = (char *)iov->iov_base + w;
      iov->iov_len -= (size_t)w;
    }
  }
  return 0;
}

/* Opens a spool file for writing: in place, never through a symbolic link,
 * or (`tmp`) as a new file whose XXXXXX mkostemps makes unpredictable.
 * Creates the profile's directory if needed.  Returns an fd or a negative
 * errno. */
static int open_once(char *path, int tmp) {
  if (tmp) {
    return mkostemps(path, 4, O_CLOEXEC);
  }
  return open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
}

static int open_for_write(char *path, const char *profile, int tmp) {
  int fd = open_once(path, tmp);
  if (fd < 0 && errno == ENOENT) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", fs.spool_dir, profile);
    if (mkdir(fs.spool_dir, 0700) != 0 && errno != EEXIST) {
      return -errno;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
      return -errno;
    }
    fd = open_once(path, tmp);
  }
  return fd >= 0 ? fd : -errno;
}

/* Writes a file of the spool: in place, or as .tmp renamed into place. */
static int write_file(const char *profile, const char *name, const char *ext, struct iovec *iov,
                      int n, int replace) {
  char path[4096], final[4096];
  int fd, rc;
  if (spool_path(path, sizeof path, profile, name, ext, replace) != 0 ||
      spool_path(final, sizeof final, profile, name, ext, 0) != 0) {
    return -ENAMETOOLONG;
  }
  if ((fd = open_for_write(path, profile, replace)) < 0) {
    return fd;
  }
  rc = write_iov(fd, iov, n);
  if (close(fd) != 0 && rc == 0) {
    rc = -errno;
  }
  if (rc == 0 && replace && rename(path, final) != 0) {
    rc = -errno;
  }
  if (rc != 0) {
    unlink(path);
  }
  return rc;
}

static void remove_file(const char *profile, const char *name, const char *ext) {
  char path[4096];
  if (spool_path(path, sizeof path, profile, name, ext, 0) == 0) {
    unlink(path);
  }
}

int fs_spool_prompt(fs_slot *s, uint64_t run, const char *prompt, size_t len) {
  char head[96];
  int n = snprintf(head, sizeof head, PROMPT_MAGIC "%016" PRIx64 " %zu\n", run, len);
  struct iovec iov[2] = {{head, (size_t)n}, {(void *)prompt, len}};
  return write_file(s->profile, s->name, "prompt", iov, 2, 0);
}

void fs_spool_remove(fs_slot *s) {
  char ext[32], path[4096];
  fs_dir *d;
  int newer;
  pthread_mutex_lock(&fs.mu);
  d = fs_dir_get(s->profile);
  newer = d != NULL && fs_smap_get(&d->slots, s->name) != NULL;
  if (!newer && d != NULL) {
    /* A prompt file kept only in the spool comes back into memory first. */
    fs_file *f = fs_smap_get(&d->files, s->name);
    if (f != NULL && f->on_disk) {
      fs_file_load(f);
    }
  }
  pthread_mutex_unlock(&fs.mu);
  if (newer) {
    return; /* a new job of this name owns the files now */
  }
  remove_file(s->profile, s->name, "prompt");
  remove_file(s->profile, s->name, "result");
  for (int i = 1; i <= FS_MAX_IMAGES; i++) {
    snprintf(ext, sizeof ext, "img%d", i);
    if (spool_path(path, sizeof path, s->profile, s->name, ext, 0) != 0 ||
        (unlink(path) != 0 && errno == ENOENT)) {
      break;
    }
  }
}

int fs_spool_open(const fs_slot *s, const char *ext) {
  char path[4096];
  int fd;
  if (spool_path(path, sizeof path, s->profile, s->name, ext, 0) != 0) {
    return -ENAMETOOLONG;
  }
  fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  return fd >= 0 ? fd : -errno;
}

/* ---- the spool thread -------------------------------------------------------------- */

/* Writes a finished run: the images, then the result. */
static void spool_run(fs_run *r) {
  fs_slot *s = r->slot;
  pthread_mutex_t *smu = fs_spool_lock(s->profile, s->name);
  char *json = NULL, ext[32];
  int ok, rc = 0;

  pthread_mutex_lock(smu);
  pthread_mutex_lock(&fs.mu);
  ok = !r->stale && s->run == r && s->dir != NULL;
  if (ok) {
    json = fs_job_json(r, 1);
  }
  pthread_mutex_unlock(&fs.mu);
  if (ok && json != NULL) {
    /* The text and the images do not change once the run has finished. */
    for (size_t i = 0; rc == 0 && i < r->nimages; i++) {
      struct iovec iov = {r->images[i].data, r->images[i].len};
      snprintf(ext, sizeof ext, "img%zu", i + 1);
      rc = write_file(s->profile, s->name, ext, &iov, 1, 1);
    }
    if (rc == 0) {
      struct iovec iov[3] = {
          {json, strlen(json)}, {"\n", 1}, {r->text.p != NULL ? r->text.p : "", r->text_len}};
      rc = write_file(s->profile, s->name, "result", iov, 3, 1);
    }
    if (rc != 0) {
      fs_log(GKP_LOG_WARN, "%s/%s: cannot keep the answer on disk under %s: %s", s->profile,
             s->name, fs.spool_dir, strerror(-rc));
    }
  }
  pthread_mutex_lock(&fs.mu);
  if (ok && json != NULL && rc == 0) {
    r->disk_off = strlen(json) + 1;
    r->spooled = 1;
    fs_run_trim(r);
    if (s->dir != NULL) {
      fs_file *f = fs_smap_get(&s->dir->files, s->name);
      if (f != NULL) {
        fs_file_offload(f); /* the prompt is on disk too: memory is for work */
      }
    }
  }
  fs_run_unref(r);
  pthread_mutex_unlock(&fs.mu);
  pthread_mutex_unlock(smu);
  cJSON_free(json);
}

static void *spool_main(void *arg) {
  sigset_t all;
  (void)arg;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL);
  pthread_mutex_lock(&fs.spool_qmu);
  for (;;) {
    fs_spool_item *it = fs.spool_head;
    if (it == NULL) {
      if (fs.spool_stop) {
        break;
      }
      pthread_cond_wait(&fs.spool_cv, &fs.spool_qmu);
      continue;
    }
    fs.spool_head = it->next;
    if (fs.spool_head == NULL) {
      fs.spool_tail = NULL;
    }
    pthread_mutex_unlock(&fs.spool_qmu);
    spool_run(it->run);
    free(it);
    pthread_mutex_lock(&fs.spool_qmu);
  }
  pthread_mutex_unlock(&fs.spool_qmu);
  return NULL;
}

void fs_spool_queue(fs_run *r) {
  fs_spool_item *it = calloc(1, sizeof *it);
  if (it == NULL) {
    fs_log(GKP_LOG_WARN, "%s/%s: out of memory: the answer is not kept on disk", r->slot->profile,
           r->slot->name);
    return;
  }
  fs_run_ref(r);
  it->run = r;
  pthread_mutex_lock(&fs.spool_qmu);
  if (fs.spool_tail != NULL) {
    fs.spool_tail->next = it;
  } else {
    fs.spool_head = it;
  }
  fs.spool_tail = it;
  pthread_cond_signal(&fs.spool_cv);
  pthread_mutex_unlock(&fs.spool_qmu);
}

int fs_spool_start(gkp_error *err) {
  int rc;
  pthread_once(&stripes_once, stripes_init);
  rc = gkp__secure_dir(fs.spool_dir, 1, "the spool directory", err);
  if (rc != 0) {
    return rc;
  }
  rc = pthread_create(&fs.spool_thread, NULL, spool_main, NULL);
  if (rc != 0) {
    return -rc;
  }
  fs.spool_started = 1;
  return 0;
}

void fs_spool_stop(void) {
  if (!fs.spool_started) {
    return;
  }
  pthread_mutex_lock(&fs.spool_qmu);
  fs.spool_stop = 1;
  pthread_cond_signal(&fs.spool_cv);
  pthread_mutex_unlock(&fs.spool_qmu);
  pthread_join(fs.spool_thread, NULL);
  fs.spool_started = 0;
}

/* ---- restore --------------------------------------------------------------------- */

/* Reads a spooled prompt: checks its header and length.  Returns the
 * prompt (malloc'd; only "" when !want) and its run id, or NULL if missing
 * or cut short. */
static char *read_prompt(const char *path, uint64_t *run, size_t *len, int want) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  struct stat st;
  char head[96], *buf = NULL;
  ssize_t n;
  if (fd < 0) {
    return NULL;
  }
  n = pread(fd, head, sizeof head - 1, 0);
  if (n > 0 && fstat(fd, &st) == 0) {
    char *nl;
    head[n] = '\0';
    nl = strchr(head, '\n');
    unsigned long long id = 0, plen = 0;
    if (nl != NULL && strncmp(head, PROMPT_MAGIC, strlen(PROMPT_MAGIC)) == 0 &&
        sscanf(head + strlen(PROMPT_MAGIC), "%llx %llu", &id, &plen) == 2 &&
        (uint64_t)st.st_size == (uint64_t)(nl - head) + 1 + plen && plen <= FS_SCRATCH_MAX &&
        (buf = malloc(want ? plen + 1 : 1)) != NULL) {
      size_t got = want ? 0 : plen, off = (size_t)(nl - head) + 1;
      while (got < plen && (n = pread(fd, buf + got, plen - got, (off_t)(off + got))) > 0) {
        got += (size_t)n;
      }
      if (got == plen) {
        buf[want ? plen : 0] = '\0';
        *run = id;
        *len = plen;
      } else {
        free(buf);
        buf = NULL;
      }
    }
  }
  close(fd);
  return buf;
}

char *fs_spool_read_prompt(const char *profile, const char *name, uint64_t run, size_t *len) {
  char path[4096];
  uint64_t got = 0;
  char *p;
  if (spool_path(path, sizeof path, profile, name, "prompt", 0) != 0) {
    return NULL;
  }
  p = read_prompt(path, &got, len, 1);
  if (p != NULL && run != 0 && got != run) {
    free(p);
    p = NULL;
  }
  return p;
}

/* Reads the first line of a spooled result (its metadata) and checks that
 * the answer after it is complete.  Returns the parsed metadata, with the
 * text's offset in *off and its length in *len, or NULL. */
static cJSON *read_result(const char *path, size_t *off, size_t *len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  struct stat st;
  size_t cap = 65536, got = 0;
  char *buf = NULL, *nl = NULL;
  cJSON *doc = NULL;
  if (fd < 0) {
    return NULL;
  }
  while (nl == NULL && cap <= ((size_t)4 << 20)) {
    char *b = realloc(buf, cap);
    ssize_t n;
    if (b == NULL) {
      break;
    }
    buf = b;
    n = pread(fd, buf + got, cap - got, (off_t)got);
    if (n <= 0) {
      break;
    }
    got += (size_t)n;
    nl = memchr(buf, '\n', got);
    cap *= 2;
  }
  if (nl != NULL && fstat(fd, &st) == 0) {
    doc = cJSON_ParseWithLength(buf, (size_t)(nl - buf));
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(doc, "spool");
    const cJSON *tb = cJSON_GetObjectItemCaseSensitive(sp, "text_bytes");
    *off = (size_t)(nl - buf) + 1;
    if (!cJSON_IsNumber(tb) || (uint64_t)st.st_size != *off + (uint64_t)tb->valuedouble) {
      cJSON_Delete(doc); /* cut short: as if there were no result */
      doc = NULL;
    } else {
      *len = (size_t)tb->valuedouble;
    }
  }
  free(buf);
  close(fd);
  return doc;
}

static int kind_from_name(const char *name) {
  for (int k = GKP_KIND_RPM; k < GKP_KIND_COUNT; k++) {
    if (strcmp(gkp_kind_name(k), name) == 0) {
      return k;
    }
  }
  return GKP_KIND_NONE;
}

static int64_t json_int(const cJSON *o, const char *name, int64_t dflt) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
  return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : dflt;
}

static const char *json_str(const cJSON *o, const char *name) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
  return cJSON_IsString(v) ? v->valuestring : "";
}

/* Fills a finished run from its spooled metadata (fs.mu held).  Returns 0,
 * or -EINVAL when the document is not a finished job's. */
static int run_from_json(fs_run *r, const cJSON *doc) {
  const char *status = json_str(doc, "status");
  const cJSON *spool = cJSON_GetObjectItemCaseSensitive(doc, "spool");
  const cJSON *att = cJSON_GetObjectItemCaseSensitive(doc, "attempts");
  const cJSON *imgs = cJSON_GetObjectItemCaseSensitive(spool, "images");

  if (strcmp(status, "done") == 0) {
    r->status = GKP__JOB_DONE;
  } else if (strcmp(status, "failed") == 0) {
    r->status = GKP__JOB_FAILED;
  } else {
    return -EINVAL;
  }
  snprintf(r->model_requested, GKP_ID_MAX, "%s", json_str(doc, "model_requested"));
  snprintf(r->model_used, GKP_ID_MAX, "%s", json_str(doc, "model_used"));
  snprintf(r->key_id, GKP_ID_MAX, "%s", json_str(doc, "key_id"));
  r->tokens_in = json_int(doc, "tokens_in", -1);
  r->tokens_out = json_int(doc, "tokens_out", -1);
  r->created_ms = json_int(spool, "created_ms", gkp__now_ms());
  r->finished_ms = json_int(spool, "finished_ms", r->created_ms);
  if (json_str(doc, "error")[0] != '\0') {
    r->error = strdup(json_str(doc, "error"));
  }
  int n = cJSON_GetArraySize(att);
  if (n > 0 && (r->attempts = calloc((size_t)n, sizeof *r->attempts)) != NULL) {
    for (int i = 0; i < n; i++) {
      const cJSON *a = cJSON_GetArrayItem(att, i);
      gkp__attempt *x = &r->attempts[i];
      snprintf(x->key_id, sizeof x->key_id, "%s", json_str(a, "key_id"));
      snprintf(x->model, sizeof x->model, "%s", json_str(a, "model"));
      x->http_status = (int)json_int(a, "http_status", 0);
      x->kind = kind_from_name(json_str(a, "kind"));
      x->ms = json_int(a, "ms", 0);
    }
    r->nattempts = (size_t)n;
  }
  n = cJSON_GetArraySize(imgs);
  if (n > FS_MAX_IMAGES) {
    n = FS_MAX_IMAGES;
  }
  if (n > 0 && (r->images = calloc((size_t)n, sizeof *r->images)) != NULL) {
    for (int i = 0; i < n; i++) {
      const cJSON *x = cJSON_GetArrayItem(imgs, i);
      snprintf(r->images[i].mime, sizeof r->images[i].mime, "%s", json_str(x, "mime"));
      snprintf(r->images[i].ext, sizeof r->images[i].ext, "%s", fs_mime_ext(r->images[i].mime));
      r->images[i].len = (size_t)json_int(x, "bytes", 0);
    }
    r->nimages = (size_t)n;
  }
  r->runner_done = 1;
  r->spooled = 1;
  r->on_disk = 1;
  return 0;
}

typedef struct pending {
  fs_slot *slot;
  char *prompt;
  size_t len;
  uint64_t run;
  struct pending *next;
} pending;

/* Restores one spooled name of directory d.  A finished job comes back as
 * it was; an unfinished one is added to *todo.  Returns 1 if it was
 * finished, 0 if it is to run again, -1 if it was skipped. */
static int restore_name(fs_dir *d, const char *name, pending **todo) {
  char path[4096];
  size_t plen = 0, off = 0, tlen = 0;
  uint64_t run = 0;
  char *prompt;
  cJSON *doc = NULL;
  fs_slot *s;
  fs_file *f;
  int rc = -1;

  if (spool_path(path, sizeof path, d->name, name, "prompt", 0) != 0 ||
      (prompt = read_prompt(path, &run, &plen, 1)) == NULL) {
    fs_log(GKP_LOG_WARN, "spool: %s is incomplete or unreadable; skipped", path);
    return -1;
  }
  if (spool_path(path, sizeof path, d->name, name, "result", 0) == 0) {
    doc = read_result(path, &off, &tlen);
  }
  if (doc != NULL) {
    char want[24];
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(doc, "spool");
    snprintf(want, sizeof want, "%016" PRIx64, run);
    if (strcmp(json_str(sp, "run"), want) != 0) {
      cJSON_Delete(doc); /* the answer to an earlier prompt of this name */
      doc = NULL;
    }
  }

  pthread_mutex_lock(&fs.mu);
  f = fs_smap_get(&d->files, name);
  if (f == NULL) {
    f = fs_file_new(d, name);
  }
  if (f != NULL) {
    fs_file_clear(f);
    fs_buf_write(&f->data, 0, prompt, plen);
    f->dirty = 0;
    f->sub_run = run;
  }
  s = fs_slot_get(d, name, 1);
  if (s != NULL && doc != NULL) {
    fs_run *r = fs_run_new(s);
    if (r != NULL && run_from_json(r, doc) == 0) {
      r->uid = run;
      r->text_len = tlen;
      r->disk_off = off;
      if (s->run != NULL) {
        fs_run_unref(s->run);
      }
      s->run = r;
      rc = 1;
      if (f != NULL) {
        fs_file_offload(f); /* a finished job's prompt stays on disk */
      }
    } else if (r != NULL) {
      fs_run_unref(r);
    }
  }
  cJSON_Delete(doc);
  if (rc != 1 && s != NULL && plen > 0) {
    pending *p = calloc(1, sizeof *p);
    if (p != NULL) {
      s->refs++;
      p->slot = s;
      p->prompt = prompt;
      p->len = plen;
      p->run = run;
      p->next = *todo;
      *todo = p;
      prompt = NULL;
      rc = 0;
    }
  }
  pthread_mutex_unlock(&fs.mu);
  free(prompt);
  return rc;
}

static void restore_dir(fs_dir *d, pending **todo, size_t *nfinished) {
  char path[4096];
  DIR *dir;
  struct dirent *e;
  snprintf(path, sizeof path, "%s/%s", fs.spool_dir, d->name);
  dir = opendir(path);
  if (dir == NULL) {
    return;
  }
  while ((e = readdir(dir)) != NULL) {
    size_t n = strlen(e->d_name);
    if (e->d_name[0] == '.') {
      if (n > 4 && strcmp(e->d_name + n - 4, ".tmp") == 0) {
        unlinkat(dirfd(dir), e->d_name, 0); /* a write cut short */
      }
      continue;
    }
    if (n <= 7 || strcmp(e->d_name + n - 7, ".prompt") != 0 || n - 7 > FS_NAME_MAX) {
      continue;
    }
    char name[FS_NAME_MAX + 1];
    memcpy(name, e->d_name, n - 7);
    name[n - 7] = '\0';
    if (restore_name(d, name, todo) == 1) {
      (*nfinished)++;
    }
  }
  closedir(dir);
}

int fs_spool_restore(void) {
  pending *todo = NULL;
  size_t nfinished = 0, npending = 0, it = 0, nd = 0;
  fs_dir *d, **dirs;

  pthread_mutex_lock(&fs.mu);
  dirs = calloc(fs.dirs.n + 1, sizeof *dirs);
  while (dirs != NULL && (d = fs_smap_next(&fs.dirs, &it)) != NULL) {
    dirs[nd++] = d; /* directories are never freed while mounted */
  }
  pthread_mutex_unlock(&fs.mu);
  if (dirs == NULL) {
    return -ENOMEM;
  }
  for (size_t i = 0; i < nd; i++) {
    restore_dir(dirs[i], &todo, &nfinished);
  }
  free(dirs);
  while (todo != NULL) {
    pending *p = todo;
    todo = p->next;
    fs_job_submit(p->slot, p->prompt, p->len, 0, p->run);
    pthread_mutex_lock(&fs.mu);
    fs_slot_unref(p->slot);
    pthread_mutex_unlock(&fs.mu);
    free(p->prompt);
    free(p);
    npending++;
  }
  if (nfinished > 0 || npending > 0) {
    fs_log(GKP_LOG_INFO,
           "spool %s: %zu finished job(s) restored, %zu unfinished job(s) queued again",
           fs.spool_dir, nfinished, npending);
  }
  return 0;
}
