/*
 * fs_store_load.c - the job store at start: the import of a spool directory
 * written by releases before the store, and the restore of the tree from
 * the store (finished jobs come back, unfinished ones run again).
 *
 * The spool's layout (read here only, to import it):
 *
 *   spool/<profile>/<name>.prompt   "gkp-prompt 1 <run> <length>\n" + the prompt
 *   spool/<profile>/<name>.result   one line of JSON (the job's metadata, with
 *                                   "spool": {"run", "text_bytes", ...}) + "\n" +
 *                                   the answer
 *   spool/<profile>/<name>.img<N>   generated images
 *
 * A result counts only for the prompt with the same run id and only if it
 * is complete; a prompt without one is a job that has not finished.  The
 * whole import is one transaction; the spool directory is removed once it
 * is committed.
 */
#define _XOPEN_SOURCE 700
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/securedir.h"
#include "common/timeutil.h"
#include "fs/fs.h"

#define PROMPT_MAGIC "gkp-prompt 1 "

/* ---- the old spool's files ---------------------------------------------------- */

/* Reads a whole file (never through a symbolic link).  Returns it
 * (malloc'd, NUL-terminated) or NULL. */
static char *slurp(int dirfd, const char *name, size_t *len) {
  int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  struct stat st;
  char *buf = NULL;
  size_t got = 0;
  if (fd < 0) {
    return NULL;
  }
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
      (buf = malloc((size_t)st.st_size + 1)) != NULL) {
    ssize_t n;
    while (got < (size_t)st.st_size && (n = read(fd, buf + got, (size_t)st.st_size - got)) > 0) {
      got += (size_t)n;
    }
    if (got != (size_t)st.st_size) {
      free(buf);
      buf = NULL;
    } else {
      buf[got] = '\0';
      *len = got;
    }
  }
  close(fd);
  return buf;
}

/* A spooled prompt: checks its header and length.  Returns the prompt's
 * offset in buf, or -1 when it is cut short or not a prompt. */
static long prompt_body(const char *buf, size_t len, uint64_t *run) {
  const char *nl = memchr(buf, '\n', len < 96 ? len : 96);
  unsigned long long id = 0, plen = 0;
  if (nl == NULL || strncmp(buf, PROMPT_MAGIC, strlen(PROMPT_MAGIC)) != 0 ||
      sscanf(buf + strlen(PROMPT_MAGIC), "%llx %llu", &id, &plen) != 2 ||
      (uint64_t)len != (uint64_t)(nl - buf) + 1 + plen) {
    return -1;
  }
  *run = id;
  return (long)(nl - buf) + 1;
}

static const char *json_str(const cJSON *o, const char *name) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
  return cJSON_IsString(v) ? v->valuestring : "";
}

static int64_t json_int(const cJSON *o, const char *name, int64_t dflt) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
  return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : dflt;
}

/* Inserts the images of an imported result.  Returns 0 or -EIO. */
static int import_images(sqlite3 *db, int dirfd, const char *name, int64_t job, const cJSON *imgs) {
  int n = cJSON_GetArraySize(imgs), rc = 0;
  for (int i = 0; rc == 0 && i < n && i < FS_MAX_IMAGES; i++) {
    char file[FS_NAME_MAX + 32];
    size_t len = 0;
    char *data;
    sqlite3_stmt *st = NULL;
    snprintf(file, sizeof file, "%s.img%d", name, i + 1);
    if ((data = slurp(dirfd, file, &len)) == NULL) {
      fs_log(GKP_LOG_WARN, "spool: %s is missing; that image is lost", file);
      continue;
    }
    if (sqlite3_prepare_v2(db, "INSERT INTO images(job, idx, mime, data) VALUES(?1, ?2, ?3, ?4)",
                           -1, &st, NULL) != SQLITE_OK) {
      rc = -EIO;
    } else {
      sqlite3_bind_int64(st, 1, job);
      sqlite3_bind_int(st, 2, i);
      sqlite3_bind_text(st, 3, json_str(cJSON_GetArrayItem(imgs, i), "mime"), -1, SQLITE_STATIC);
      sqlite3_bind_blob64(st, 4, data, len, SQLITE_STATIC);
      rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -EIO;
    }
    sqlite3_finalize(st);
    free(data);
  }
  return rc;
}

/* The finished result of run `run` in a result file, or NULL: its metadata,
 * and where its answer is. */
static cJSON *result_of(const char *buf, size_t len, uint64_t run, size_t *off, size_t *tlen) {
  const char *nl = memchr(buf, '\n', len);
  cJSON *doc;
  char want[24];
  if (nl == NULL || (doc = cJSON_ParseWithLength(buf, (size_t)(nl - buf))) == NULL) {
    return NULL;
  }
  const cJSON *sp = cJSON_GetObjectItemCaseSensitive(doc, "spool");
  const char *status = json_str(doc, "status");
  snprintf(want, sizeof want, "%016" PRIx64, run);
  *off = (size_t)(nl - buf) + 1;
  *tlen = (size_t)json_int(sp, "text_bytes", -1);
  if (strcmp(json_str(sp, "run"), want) != 0 || *off + *tlen != len ||
      (strcmp(status, "done") != 0 && strcmp(status, "failed") != 0)) {
    cJSON_Delete(doc); /* another prompt's, cut short, or not finished */
    return NULL;
  }
  return doc;
}

static int run_from_json(fs_run *r, const cJSON *doc);

/* What the store keeps beside an imported result: failed or not, the
 * images' extensions, its line of status/jobs. */
static void import_extras(sqlite3_stmt *st, const char *profile, const char *name, const cJSON *doc,
                          char *exts, size_t elen, char *line, size_t llen) {
  fs_slot s = {.profile = (char *)profile, .name = (char *)name};
  fs_run r = {.slot = &s};
  size_t n = 0;
  exts[0] = line[0] = '\0';
  if (run_from_json(&r, doc) == 0) {
    for (size_t i = 0; i < r.nimages && n + 10 < elen; i++) {
      n += (size_t)snprintf(exts + n, elen - n, "%s%s", i > 0 ? "," : "", r.images[i].ext);
    }
    fs_job_line(&r, 0, line, llen);
    sqlite3_bind_int(st, 9, r.status == GKP__JOB_FAILED);
    sqlite3_bind_text(st, 10, exts, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 11, line, -1, SQLITE_STATIC);
  }
  free(r.attempts);
  free(r.images);
  free(r.error);
}

/* Imports one job of the spool.  Returns 0, 1 when skipped, or -EIO. */
static int import_job(sqlite3 *db, int dirfd, const char *profile, const char *name) {
  char file[FS_NAME_MAX + 32];
  size_t plen = 0, rlen = 0, off = 0, tlen = 0;
  uint64_t run = 0;
  char *prompt, *result;
  long body;
  char exts[FS_MAX_IMAGES * 6 + 8], line[2048];
  cJSON *doc = NULL;
  sqlite3_stmt *st = NULL;
  int rc = -EIO;

  snprintf(file, sizeof file, "%s.prompt", name);
  if ((prompt = slurp(dirfd, file, &plen)) == NULL ||
      (body = prompt_body(prompt, plen, &run)) < 0) {
    fs_log(GKP_LOG_WARN, "spool: %s/%s is incomplete or unreadable; skipped", profile, file);
    free(prompt);
    return 1;
  }
  snprintf(file, sizeof file, "%s.result", name);
  if ((result = slurp(dirfd, file, &rlen)) != NULL) {
    doc = result_of(result, rlen, run, &off, &tlen);
  }
  const cJSON *sp = cJSON_GetObjectItemCaseSensitive(doc, "spool");
  if (sqlite3_prepare_v2(db,
                         "INSERT OR REPLACE INTO jobs(profile, name, run, prompt, created_ms,"
                         " finished_ms, meta, answer, failed, exts, line)"
                         " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) RETURNING id",
                         -1, &st, NULL) == SQLITE_OK) {
    int64_t now = gkp__now_ms();
    sqlite3_bind_text(st, 1, profile, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)run);
    sqlite3_bind_blob64(st, 4, prompt + body, plen - (size_t)body, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, json_int(sp, "created_ms", now));
    if (doc != NULL) {
      sqlite3_bind_int64(st, 6, json_int(sp, "finished_ms", now));
      sqlite3_bind_text(st, 7, result, (int)(off - 1), SQLITE_STATIC);
      sqlite3_bind_blob64(st, 8, result + off, tlen, SQLITE_STATIC);
      import_extras(st, profile, name, doc, exts, sizeof exts, line, sizeof line);
    }
    if (sqlite3_step(st) == SQLITE_ROW) {
      int64_t job = sqlite3_column_int64(st, 0);
      rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -EIO;
      if (rc == 0 && doc != NULL) {
        rc = import_images(db, dirfd, name, job, cJSON_GetObjectItemCaseSensitive(sp, "images"));
      }
    }
  }
  if (rc != 0) {
    fs_log(GKP_LOG_ERROR, "spool: %s/%s cannot be imported: %s", profile, name, sqlite3_errmsg(db));
  }
  sqlite3_finalize(st);
  cJSON_Delete(doc);
  free(result);
  free(prompt);
  return rc;
}

/* Imports the jobs of spool/<profile>/.  Returns the number imported or -EIO. */
static long import_dir(sqlite3 *db, int spoolfd, const char *profile) {
  int fd = openat(spoolfd, profile, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
  struct dirent *e;
  long n = 0;
  if (dir == NULL) {
    if (fd >= 0) {
      close(fd);
    }
    return 0;
  }
  while ((e = readdir(dir)) != NULL) {
    size_t len = strlen(e->d_name);
    if (e->d_name[0] == '.' || len <= 7 || strcmp(e->d_name + len - 7, ".prompt") != 0 ||
        len - 7 > FS_NAME_MAX) {
      continue;
    }
    char name[FS_NAME_MAX + 1];
    memcpy(name, e->d_name, len - 7);
    name[len - 7] = '\0';
    int rc = import_job(db, dirfd(dir), profile, name);
    if (rc < 0) {
      closedir(dir);
      return rc;
    }
    n += rc == 0;
  }
  closedir(dir);
  return n;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)ftw;
  return (flag == FTW_DP ? rmdir(path) : unlink(path)) == 0 || errno == ENOENT ? 0 : -1;
}

int fs_spool_import(sqlite3 *db, const char *spool_dir) {
  int fd = open(spool_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  DIR *dir;
  struct dirent *e;
  long total = 0, rc = 0;
  if (fd < 0) {
    return errno == ENOENT ? 0 : -errno;
  }
  gkp_error why = {0};
  if (gkp__secure_dir(spool_dir, 0, "the spool directory", &why) != 0) {
    fs_log(GKP_LOG_ERROR, "%s", why.msg); /* never import what someone else planted */
    close(fd);
    return -EACCES;
  }
  if ((dir = fdopendir(fd)) == NULL) {
    close(fd);
    return -errno;
  }
  if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
    closedir(dir);
    return -EIO;
  }
  while (rc >= 0 && (e = readdir(dir)) != NULL) {
    if (e->d_name[0] != '.') {
      rc = import_dir(db, dirfd(dir), e->d_name);
      total += rc > 0 ? rc : 0;
    }
  }
  closedir(dir);
  if (rc < 0 || sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    fs_log(GKP_LOG_ERROR, "spool %s: the import into %s failed; the spool is left as it was",
           spool_dir, fs.db_path);
    return -EIO;
  }
  if (nftw(spool_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0) {
    fs_log(GKP_LOG_WARN, "spool %s: imported, but it cannot be removed: %s", spool_dir,
           strerror(errno));
  }
  fs_log(GKP_LOG_INFO, "spool %s: %ld job(s) imported into %s; the spool directory is removed",
         spool_dir, total, fs.db_path);
  return 0;
}

/* ---- restore ------------------------------------------------------------------ */

static int kind_from_name(const char *name) {
  for (int k = GKP_KIND_RPM; k < GKP_KIND_COUNT; k++) {
    if (strcmp(gkp_kind_name(k), name) == 0) {
      return k;
    }
  }
  return GKP_KIND_NONE;
}

/* Fills a finished run from its stored metadata (fs.mu held).  Returns 0,
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
  snprintf(r->task_type, GKP_ID_MAX, "%s", json_str(doc, "task_type"));
  snprintf(r->complexity, sizeof r->complexity, "%s", json_str(doc, "complexity"));
  const cJSON *route = cJSON_GetObjectItemCaseSensitive(doc, "route");
  if (cJSON_IsObject(route)) {
    r->route = cJSON_PrintUnformatted(route);
  }
  r->tokens_in = json_int(doc, "tokens_in", -1);
  r->tokens_out = json_int(doc, "tokens_out", -1);
  r->created_ms = json_int(spool, "created_ms", gkp__now_ms());
  r->finished_ms = json_int(spool, "finished_ms", r->created_ms);
  r->text_len = (size_t)json_int(spool, "text_bytes", 0);
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
      snprintf(r->images[i].name, sizeof r->images[i].name, "%s", json_str(x, "name"));
    }
    r->nimages = (size_t)n;
  }
  r->runner_done = 1;
  r->stored = 1;
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

/* One row of the store, as sqlite3 gave it. */
typedef struct store_row {
  int64_t id;
  const char *profile, *name;
  uint64_t run;
  const void *prompt;
  size_t plen;
  const char *meta;
  unsigned mode;
  uid_t uid;
  gid_t gid;
} store_row;

/* Restores one row (fs.mu held): a finished job comes back as it was, an
 * unfinished one is added to *todo.  Returns 1 if it was finished, 0 if it
 * is to run again, -1 if it was skipped. */
static int restore_row(const store_row *w, pending **todo) {
  fs_dir *d = fs_dir_get(w->profile);
  cJSON *doc = w->meta != NULL ? cJSON_Parse(w->meta) : NULL;
  fs_file *f;
  fs_slot *s;
  int rc = -1;
  if (d == NULL || strlen(w->name) > FS_NAME_MAX) {
    cJSON_Delete(doc);
    return -1; /* a profile no longer configured: its rows stay for its return */
  }
  if ((f = fs_smap_get(&d->files, w->name)) == NULL) {
    f = fs_file_new(d, w->name);
  }
  s = fs_slot_get(d, w->name, 1);
  if (f != NULL) { /* the owner and permissions it was written with */
    f->mode = w->mode;
    f->uid = w->uid;
    f->gid = w->gid;
  }
  if (s != NULL) {
    s->mode = w->mode;
    s->uid = w->uid;
    s->gid = w->gid;
  }
  if (s != NULL && doc != NULL) {
    fs_run *r = fs_run_new(s);
    if (r != NULL && run_from_json(r, doc) == 0) {
      r->uid = w->run;
      r->row = w->id;
      if (s->run != NULL) {
        fs_run_unref(s->run);
      }
      s->run = r;
      rc = 1;
      fs_obj_regroup(&s->o, FS_ROW_GROUP(w->id, 0)); /* stable inode numbers */
      if (f != NULL) {                               /* a finished job's prompt stays on disk */
        fs_file_clear(f);
        f->on_disk = 1;
        f->disk_len = w->plen;
        f->sub_run = w->run;
        f->dirty = 0;
        fs_obj_regroup(&f->o, FS_ROW_GROUP(w->id, 1));
      }
    } else if (r != NULL) {
      fs_run_unref(r);
    }
  }
  cJSON_Delete(doc);
  if (rc != 1 && s != NULL && w->plen > 0 && todo != NULL) {
    pending *p = calloc(1, sizeof *p);
    if (p != NULL && (p->prompt = malloc(w->plen)) != NULL) {
      memcpy(p->prompt, w->prompt, w->plen);
      s->refs++;
      p->slot = s;
      p->len = w->plen;
      p->run = w->run;
      p->next = *todo;
      *todo = p;
      if (f != NULL) {
        fs_file_clear(f);
        fs_buf_load(&f->data, w->prompt, w->plen);
        f->dirty = 0;
        f->sub_run = w->run;
      }
      rc = 0;
    } else {
      free(p);
    }
  }
  return rc;
}

/* The counts of finished jobs in the store, for status/metrics. */
static void count_stored(sqlite3 *db) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, "SELECT failed, count(*) FROM jobs WHERE meta IS NOT NULL GROUP BY 1",
                         -1, &st, NULL) == SQLITE_OK) {
    pthread_mutex_lock(&fs.mu);
    while (sqlite3_step(st) == SQLITE_ROW) {
      fs.stored[sqlite3_column_int(st, 0) ? 1 : 0] += (uint64_t)sqlite3_column_int64(st, 1);
    }
    pthread_mutex_unlock(&fs.mu);
  }
  sqlite3_finalize(st);
}

static const char sql_row[] = "SELECT id, profile, name, run, length(prompt), meta,"
                              " CASE WHEN meta IS NULL THEN prompt END, mode, uid, gid FROM jobs";

/* Restores the rows a statement selects (fs.mu held).  Returns how many
 * finished jobs came back. */
static int restore_rows(sqlite3_stmt *st, pending **todo) {
  int n = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    store_row w = {
        .id = sqlite3_column_int64(st, 0),
        .profile = (const char *)sqlite3_column_text(st, 1),
        .name = (const char *)sqlite3_column_text(st, 2),
        .run = (uint64_t)sqlite3_column_int64(st, 3),
        .plen = (size_t)sqlite3_column_int64(st, 4),
        .meta = (const char *)sqlite3_column_text(st, 5),
        .prompt = sqlite3_column_blob(st, 6),
        .mode = (unsigned)sqlite3_column_int(st, 7) & 07777,
        .uid =
            sqlite3_column_type(st, 8) == SQLITE_NULL ? fs.uid : (uid_t)sqlite3_column_int64(st, 8),
        .gid = sqlite3_column_type(st, 9) == SQLITE_NULL ? fs.gid
                                                         : (gid_t)sqlite3_column_int64(st, 9)};
    if (w.profile != NULL && w.name != NULL && restore_row(&w, todo) == 1) {
      n++;
      fs_dir *d = fs_dir_get(w.profile);
      fs_slot *s = d != NULL ? fs_slot_get(d, w.name, 0) : NULL;
      if (s != NULL) {
        fs_cache_touch(s);
      }
    }
  }
  return n;
}

/* Loads the finished job of a query with one parameter bound (fs.mu held). */
static int fault(const char *where, const char *profile, const char *name, int64_t row) {
  char sql[512];
  sqlite3 *db = fs_store_reader();
  sqlite3_stmt *st = NULL;
  int n = 0;
  if (db == NULL) {
    return 0;
  }
  snprintf(sql, sizeof sql, "%s WHERE meta IS NOT NULL AND %s", sql_row, where);
  fs_dir *d = profile != NULL ? fs_dir_get(profile) : NULL;
  int64_t mtime = d != NULL ? d->mtime_ms : 0;
  if ((st = fs_store_rstmt(db, sql)) != NULL) {
    if (profile != NULL) {
      sqlite3_bind_text(st, 1, profile, -1, SQLITE_STATIC);
      sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    } else {
      sqlite3_bind_int64(st, 1, row);
    }
    n = restore_rows(st, NULL);
  }
  if (d != NULL) {
    d->mtime_ms = mtime; /* coming back from the store changes nothing */
  }
  fs_store_rdone(st);
  fs_store_reader_put(db);
  return n > 0;
}

int fs_store_fault_row(int64_t row) {
  return fault("id = ?1", NULL, NULL, row);
}

/* Loads the stored job `stem` of d unless memory has it (fs.mu held). */
static int fault_stem(fs_dir *d, const char *name, size_t len) {
  char stem[FS_NAME_MAX + 1];
  if (len == 0 || len > FS_NAME_MAX) {
    return 0;
  }
  memcpy(stem, name, len);
  stem[len] = '\0';
  if (fs_smap_get(&d->files, stem) != NULL || fs_smap_get(&d->slots, stem) != NULL) {
    return 0;
  }
  return fault("profile = ?1 AND name = ?2", d->name, stem, 0);
}

int fs_store_fault(fs_dir *d, const char *name) {
  size_t n = strlen(name);
  const char *dot = strrchr(name, '.');
  int got = fault_stem(d, name, n);
  size_t stems[3], k = fs_image_stems(name, stems);
  if (k == 0 && dot != NULL) {
    /* "a.out", "a.json", "a.err": job "a". */
    got |= fault_stem(d, name, (size_t)(dot - name));
  }
  /* "a.png": job "a"; "a-2.png": "a-2" or "a"; "a-2-1.png" also "a". */
  for (size_t i = 0; i < k; i++) {
    got |= fault_stem(d, name, stems[i]);
  }
  return got;
}

int fs_store_restore(void) {
  sqlite3 *db = fs_store_reader();
  sqlite3_stmt *st = NULL;
  pending *todo = NULL;
  size_t npending = 0;
  char sql[512];
  if (db == NULL) {
    return -EIO;
  }
  count_stored(db);
  /* Finished jobs stay in the store until used: only unfinished ones load. */
  snprintf(sql, sizeof sql, "%s WHERE meta IS NULL ORDER BY id", sql_row);
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
    fs_log(GKP_LOG_ERROR, "job store %s: %s", fs.db_path, sqlite3_errmsg(db));
    fs_store_reader_put(db);
    return -EIO;
  }
  pthread_mutex_lock(&fs.mu);
  restore_rows(st, &todo);
  uint64_t nfinished = fs.stored[0] + fs.stored[1];
  pthread_mutex_unlock(&fs.mu);
  sqlite3_finalize(st);
  fs_store_reader_put(db);
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
           "job store %s: %llu finished job(s) kept, %zu unfinished job(s) queued again",
           fs.db_path, (unsigned long long)nfinished, npending);
  }
  return 0;
}
