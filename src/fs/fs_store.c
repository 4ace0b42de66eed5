/*
 * fs_store.c - jobs on disk, in SQLite (jobs.db in the state directory), so
 * that an answer that cost quota is never lost and a job that was waiting
 * when the daemon stopped runs again.
 *
 * Schema (user_version 1):
 *
 *   jobs(id, profile, name, run, prompt, created_ms, finished_ms, meta, answer,
 *        failed, exts, line, mode, uid, gid)
 *        one row per job name: its latest prompt and, once it has finished,
 *        its metadata (the .json with the restore fields, as one line of
 *        JSON), its answer, and what listings and status/jobs show without
 *        parsing it (failed or not, its images' file names '/'-separated --
 *        rows written before image names were allocated hold their
 *        extensions ','-separated instead --, its line of status/jobs).  finished_ms and meta are
 * NULL while the job has not finished: such a row is submitted again at start.  Unique on (profile,
 * name); indexed on finished_ms (retention) and created_ms (status/jobs). images(job, idx, mime,
 * data)   a finished job's images.
 *
 * `run` is a random 64-bit id of the submission: a result is stored only on
 * the row of the prompt with the same run id, so an old answer is never
 * taken for a new prompt's.  Row ids are never reused (AUTOINCREMENT): a
 * reader of a row that was replaced finds nothing rather than another job.
 *
 * Durability: WAL with synchronous=FULL; one writer thread applies what was
 * queued (prompts, results, removals) in one transaction and commits it (a
 * group commit: one fsync of the log for everything queued meanwhile).  A
 * finished job reads as finished, and its .out ends, only once its result
 * is committed; fsync() on a prompt is answered after the next commit.
 *
 * Memory holds unfinished jobs and a bounded cache of finished ones
 * (fs_cache_touch); the others are listed, looked up and read from here.
 * Reads use connections of a small pool, one per reading thread at a time;
 * WAL lets them run while the writer commits.
 *
 * Queue items of one job name are pushed under fs_store_lock(profile, name),
 * so the writer applies them in the order they happened.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "common/securedir.h"
#include "common/timeutil.h"
#include "fs/fs.h"

#define NSTRIPES 64
#define NIDLE 8
#define NSTMT 16
#define HOUR_MS (3600 * 1000LL)

enum { ITEM_PROMPT = 1, ITEM_RESULT, ITEM_REMOVE, ITEM_SYNC, ITEM_MODE };

typedef struct fs_store_item {
  int kind;
  fs_run *run; /* RESULT (a reference) */
  char *profile, *name;
  uint64_t uid;
  char *prompt; /* PROMPT */
  size_t len;
  int64_t created_ms;
  unsigned mode; /* PROMPT, MODE: the outputs' owner and permissions */
  uid_t uid_owner;
  gid_t gid;
  fuse_req_t req; /* SYNC */
  int ok;         /* applied */
  int64_t row;    /* RESULT: the row it went to */
  int delta[2];   /* finished jobs (done, failed) it added to the store */
  struct fs_store_item *next;
} fs_store_item;

static pthread_mutex_t stripes[NSTRIPES];
static pthread_once_t stripes_once = PTHREAD_ONCE_INIT;

static sqlite3 *wdb; /* the writer's connection */
static struct {
  const char *sql;
  sqlite3_stmt *st;
} wstmts[NSTMT];

static pthread_mutex_t idle_mu = PTHREAD_MUTEX_INITIALIZER;
static sqlite3 *idle[NIDLE]; /* reader connections not in use */
static int nidle;

static void stripes_init(void) {
  for (int i = 0; i < NSTRIPES; i++) {
    pthread_mutex_init(&stripes[i], NULL);
  }
}

pthread_mutex_t *fs_store_lock(const char *profile, const char *name) {
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
uint64_t fs_store_run_id(void) {
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

/* ---- connections ------------------------------------------------------------ */

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS jobs("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " profile TEXT NOT NULL, name TEXT NOT NULL, run INTEGER NOT NULL,"
    " prompt BLOB NOT NULL, created_ms INTEGER NOT NULL, finished_ms INTEGER,"
    " meta TEXT, answer BLOB, failed INTEGER, exts TEXT, line TEXT,"
    " mode INTEGER NOT NULL DEFAULT 420, uid INTEGER, gid INTEGER,"
    " UNIQUE(profile, name));"
    "CREATE INDEX IF NOT EXISTS jobs_finished ON jobs(finished_ms);"
    "CREATE INDEX IF NOT EXISTS jobs_created ON jobs(created_ms);"
    "CREATE TABLE IF NOT EXISTS images("
    " job INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,"
    " idx INTEGER NOT NULL, mime TEXT NOT NULL, data BLOB NOT NULL,"
    " PRIMARY KEY(job, idx));"
    "PRAGMA user_version = 1;";

/* The database, its WAL and its shared memory hold prompts: readable by
 * their owner alone whatever the umask.  The database is created here 0600
 * (SQLite gives the WAL and the shared-memory file the database's mode), and
 * any of the three left readable by others is made private.  Never through
 * a symbolic link. */
static int db_files_private(gkp_error *err) {
  static const char *const suffix[] = {"", "-wal", "-shm"};
  for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
    char path[4200];
    struct stat sb;
    snprintf(path, sizeof path, "%s%s", fs.db_path, suffix[i]);
    int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | (i == 0 ? O_CREAT : 0), 0600);
    if (fd < 0 && errno == ENOENT) {
      continue;
    }
    if (fd < 0) {
      return gkp__err(err, -errno, "job store %s: %s", path,
                      errno == ELOOP ? "is a symbolic link; refusing to follow it"
                                     : strerror(errno));
    }
    int bad = fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_uid != geteuid() ||
              ((sb.st_mode & 077) != 0 && fchmod(fd, sb.st_mode & 0700) != 0);
    close(fd);
    if (bad) {
      return gkp__err(err, -EPERM,
                      "job store %s: not a regular file of this user that can be made private; "
                      "move it away",
                      path);
    }
  }
  return 0;
}

/* Opens the database (never through a symbolic link).  `writer`: creates
 * it, turns WAL on and creates the schema.  Returns NULL with a logged
 * reason. */
static sqlite3 *db_open(int writer) {
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW |
              (writer ? SQLITE_OPEN_CREATE : 0);
  sqlite3 *db = NULL;
  char *msg = NULL;
  int rc = sqlite3_open_v2(fs.db_path, &db, flags, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_busy_timeout(db, 10000);
    /* A small page cache per connection: memory is for work. */
    rc =
        sqlite3_exec(db, "PRAGMA foreign_keys=ON; PRAGMA synchronous=FULL; PRAGMA cache_size=-512;",
                     NULL, NULL, &msg);
  }
  if (rc == SQLITE_OK && writer) {
    rc = sqlite3_exec(db, "PRAGMA journal_mode=WAL;", NULL, NULL, &msg);
    if (rc == SQLITE_OK) {
      rc = sqlite3_exec(db, schema, NULL, NULL, &msg);
    }
  }
  if (rc != SQLITE_OK) {
    fs_log(GKP_LOG_ERROR, "job store %s: %s", fs.db_path,
           msg != NULL ? msg : (db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
    sqlite3_free(msg);
    sqlite3_close(db);
    return NULL;
  }
  return db;
}

static sqlite3 *reader_get(void) {
  sqlite3 *db = NULL;
  pthread_mutex_lock(&idle_mu);
  if (nidle > 0) {
    db = idle[--nidle];
  }
  pthread_mutex_unlock(&idle_mu);
  return db != NULL ? db : db_open(0);
}

/* Closes a reader connection with the statements it kept. */
static void reader_close(sqlite3 *db) {
  sqlite3_stmt *st;
  while (db != NULL && (st = sqlite3_next_stmt(db, NULL)) != NULL) {
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
}

static void reader_put(sqlite3 *db) {
  pthread_mutex_lock(&idle_mu);
  if (db != NULL && nidle < NIDLE) {
    idle[nidle++] = db;
    db = NULL;
  }
  pthread_mutex_unlock(&idle_mu);
  reader_close(db);
}

sqlite3_stmt *fs_store_rstmt(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st = NULL;
  while ((st = sqlite3_next_stmt(db, st)) != NULL) {
    if (!sqlite3_stmt_busy(st) && strcmp(sqlite3_sql(st), sql) == 0) {
      return st;
    }
  }
  if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
    sqlite3_finalize(st);
    return NULL;
  }
  return st;
}

void fs_store_rdone(sqlite3_stmt *st) {
  if (st != NULL) {
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
  }
}

sqlite3 *fs_store_reader(void) {
  return reader_get();
}

void fs_store_reader_put(sqlite3 *db) {
  reader_put(db);
}

/* A prepared statement of the writer's, kept for the daemon's life. */
static sqlite3_stmt *wstmt(const char *sql) {
  int i;
  for (i = 0; i < NSTMT && wstmts[i].sql != NULL; i++) {
    if (wstmts[i].sql == sql) {
      sqlite3_reset(wstmts[i].st);
      sqlite3_clear_bindings(wstmts[i].st);
      return wstmts[i].st;
    }
  }
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v3(wdb, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
    fs_log(GKP_LOG_ERROR, "job store: %s", sqlite3_errmsg(wdb));
    return NULL;
  }
  if (i < NSTMT) {
    wstmts[i].sql = sql;
    wstmts[i].st = st;
  }
  return st;
}

/* Runs a statement of the writer's to its end.  Returns 0 or -EIO. */
static int wstep(sqlite3_stmt *st) {
  int rc;
  if (st == NULL) {
    return -EIO;
  }
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
  }
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) {
    fs_log(GKP_LOG_WARN, "job store: %s", sqlite3_errmsg(wdb));
    return -EIO;
  }
  return 0;
}

/* Ends a statement stepped by hand, whose last step returned rc. */
static int wdone(sqlite3_stmt *st, int rc) {
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) {
    fs_log(GKP_LOG_WARN, "job store: %s", sqlite3_errmsg(wdb));
    return -EIO;
  }
  return 0;
}

static int wexec(const char *sql) {
  char *msg = NULL;
  if (sqlite3_exec(wdb, sql, NULL, NULL, &msg) != SQLITE_OK) {
    fs_log(GKP_LOG_WARN, "job store: %s: %s", sql, msg != NULL ? msg : sqlite3_errmsg(wdb));
    sqlite3_free(msg);
    return -EIO;
  }
  return 0;
}

/* ---- the queue ------------------------------------------------------------------- */

static void push(fs_store_item *it) {
  pthread_mutex_lock(&fs.store_qmu);
  if (fs.store_tail != NULL) {
    fs.store_tail->next = it;
  } else {
    fs.store_head = it;
  }
  fs.store_tail = it;
  pthread_cond_signal(&fs.store_cv);
  pthread_mutex_unlock(&fs.store_qmu);
}

static void item_free(fs_store_item *it) {
  free(it->profile);
  free(it->name);
  free(it->prompt);
  free(it);
}

static fs_store_item *item_new(int kind, const char *profile, const char *name) {
  fs_store_item *it = calloc(1, sizeof *it);
  if (it == NULL) {
    return NULL;
  }
  it->kind = kind;
  if (profile != NULL &&
      ((it->profile = strdup(profile)) == NULL || (it->name = strdup(name)) == NULL)) {
    item_free(it);
    return NULL;
  }
  return it;
}

int fs_store_prompt(fs_slot *s, uint64_t run, const char *prompt, size_t len) {
  fs_store_item *it = item_new(ITEM_PROMPT, s->profile, s->name);
  if (it == NULL || (it->prompt = malloc(len > 0 ? len : 1)) == NULL) {
    if (it != NULL) {
      item_free(it);
    }
    return -ENOMEM;
  }
  memcpy(it->prompt, prompt, len);
  it->len = len;
  it->uid = run;
  it->created_ms = gkp__now_ms();
  it->mode = s->mode;
  it->uid_owner = s->uid;
  it->gid = s->gid;
  push(it);
  return 0;
}

void fs_store_mode(const char *profile, const char *name, unsigned mode, uid_t uid, gid_t gid) {
  fs_store_item *it = item_new(ITEM_MODE, profile, name);
  if (it != NULL) {
    it->mode = mode;
    it->uid_owner = uid;
    it->gid = gid;
    push(it);
  }
}

void fs_store_finish(fs_run *r) {
  fs_store_item *it = item_new(ITEM_RESULT, NULL, NULL);
  if (it == NULL) {
    fs_log(GKP_LOG_WARN, "%s/%s: out of memory: the answer is not kept on disk", r->slot->profile,
           r->slot->name);
    r->committing = 0;
    r->status = r->final_status;
    r->runner_done = 1;
    return;
  }
  fs_run_ref(r);
  it->run = r;
  push(it);
}

void fs_store_sync(fuse_req_t req, int durable) {
  fs_store_item *it = item_new(ITEM_SYNC, NULL, NULL);
  if (it == NULL || !fs.store_started) {
    free(it);
    fuse_reply_err(req, it == NULL ? ENOMEM : 0);
    return;
  }
  it->req = req;
  it->ok = durable; /* until applied: whether its commit must be synced */
  push(it);
}

void fs_store_remove(fs_slot *s) {
  fs_dir *d;
  int newer;
  pthread_mutex_lock(&fs.mu);
  d = fs_dir_get(s->profile);
  newer = d != NULL && fs_smap_get(&d->slots, s->name) != NULL;
  if (!newer && d != NULL) {
    /* A prompt file kept only in the store comes back into memory first. */
    fs_file *f = fs_smap_get(&d->files, s->name);
    if (f != NULL && f->on_disk) {
      fs_file_load(f);
    }
  }
  pthread_mutex_unlock(&fs.mu);
  if (newer) {
    return; /* a new job of this name owns the row now */
  }
  fs_store_item *it = item_new(ITEM_REMOVE, s->profile, s->name);
  if (it != NULL) {
    push(it);
  }
}

/* ---- the writer -------------------------------------------------------------------- */

static const char sql_del[] = "DELETE FROM jobs WHERE profile = ?1 AND name = ?2"
                              " RETURNING meta IS NOT NULL, failed";
static const char sql_ins[] =
    "INSERT INTO jobs(profile, name, run, prompt, created_ms, mode, uid, gid)"
    " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
static const char sql_mode[] =
    "UPDATE jobs SET mode = ?3, uid = ?4, gid = ?5 WHERE profile = ?1 AND name = ?2";
static const char sql_result[] =
    "UPDATE jobs SET finished_ms = ?1, meta = ?2, answer = ?3, failed = ?7, exts = ?8, line = ?9"
    " WHERE profile = ?4 AND name = ?5 AND run = ?6 RETURNING id";
static const char sql_image[] = "INSERT INTO images(job, idx, mime, data) VALUES(?1, ?2, ?3, ?4)";

static void bind_name(sqlite3_stmt *st, const char *profile, const char *name) {
  sqlite3_bind_text(st, 1, profile, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
}

/* Deletes the name's row, counting the finished job it held. */
static int delete_row(fs_store_item *it) {
  sqlite3_stmt *st = wstmt(sql_del);
  int rc;
  if (st == NULL) {
    return -EIO;
  }
  bind_name(st, it->profile, it->name);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (sqlite3_column_int(st, 0)) {
      it->delta[sqlite3_column_int(st, 1) ? 1 : 0]--;
    }
  }
  return wdone(st, rc);
}

static int apply_prompt(fs_store_item *it) {
  sqlite3_stmt *st;
  if (delete_row(it) != 0 || (st = wstmt(sql_ins)) == NULL) {
    return -EIO;
  }
  bind_name(st, it->profile, it->name);
  sqlite3_bind_int64(st, 3, (sqlite3_int64)it->uid);
  sqlite3_bind_blob64(st, 4, it->prompt, it->len, SQLITE_STATIC);
  sqlite3_bind_int64(st, 5, it->created_ms);
  sqlite3_bind_int(st, 6, (int)it->mode);
  sqlite3_bind_int64(st, 7, (sqlite3_int64)it->uid_owner);
  sqlite3_bind_int64(st, 8, (sqlite3_int64)it->gid);
  return wstep(st);
}

static int apply_mode(fs_store_item *it) {
  sqlite3_stmt *st = wstmt(sql_mode);
  if (st == NULL) {
    return -EIO;
  }
  bind_name(st, it->profile, it->name);
  sqlite3_bind_int(st, 3, (int)it->mode);
  sqlite3_bind_int64(st, 4, (sqlite3_int64)it->uid_owner);
  sqlite3_bind_int64(st, 5, (sqlite3_int64)it->gid);
  return wstep(st);
}

static int apply_remove(fs_store_item *it) {
  return delete_row(it);
}

/* "a.png/a-2.png": the file names of a run's images, '/'-separated (names
 * cannot hold a '/'), or NULL (fs.mu held). */
static char *image_names(const fs_run *r) {
  size_t n = 0, len = r->nimages * (FS_NAME_MAX + 32) + 1;
  char *buf = malloc(len);
  if (buf != NULL) {
    buf[0] = '\0';
    for (size_t i = 0; i < r->nimages; i++) {
      char name[FS_NAME_MAX + 32];
      fs_image_name(r->slot, r, i, name, sizeof name);
      n += (size_t)snprintf(buf + n, len - n, "%s%s", i > 0 ? "/" : "", name);
    }
  }
  return buf;
}

/* Stores a finished run: its metadata and answer on its prompt's row, and
 * its images.  The text and images of a finished run do not change. */
static int apply_result(fs_store_item *it) {
  fs_run *r = it->run;
  fs_slot *s = r->slot;
  sqlite3_stmt *st;
  char *json, *exts, line[2048];
  int rc, failed;

  pthread_mutex_lock(&fs.mu);
  json = fs_job_json(r, 1);
  failed = r->final_status == GKP__JOB_FAILED;
  exts = image_names(r);
  fs_job_line(r, 1, line, sizeof line);
  pthread_mutex_unlock(&fs.mu);
  if (json == NULL || exts == NULL || (st = wstmt(sql_result)) == NULL) {
    cJSON_free(json);
    free(exts);
    return -ENOMEM;
  }
  sqlite3_bind_int64(st, 1, r->finished_ms);
  sqlite3_bind_text(st, 2, json, -1, SQLITE_STATIC);
  sqlite3_bind_blob64(st, 3, r->text.p != NULL ? r->text.p : "", r->text_len, SQLITE_STATIC);
  sqlite3_bind_text(st, 4, s->profile, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 5, s->name, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 6, (sqlite3_int64)r->uid);
  sqlite3_bind_int(st, 7, failed);
  sqlite3_bind_text(st, 8, exts, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 9, line, -1, SQLITE_STATIC);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    it->row = sqlite3_column_int64(st, 0);
  }
  rc = wdone(st, rc);
  cJSON_free(json);
  free(exts);
  if (rc != 0 || it->row == 0) {
    return rc != 0 ? rc : -ENOENT; /* no prompt row: replaced or removed */
  }
  it->delta[failed]++;
  for (size_t i = 0; rc == 0 && i < r->nimages; i++) {
    if ((st = wstmt(sql_image)) == NULL) {
      return -EIO;
    }
    sqlite3_bind_int64(st, 1, it->row);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)i);
    sqlite3_bind_text(st, 3, r->images[i].mime, -1, SQLITE_STATIC);
    sqlite3_bind_blob64(st, 4, r->images[i].data != NULL ? r->images[i].data : "", r->images[i].len,
                        SQLITE_STATIC);
    rc = wstep(st);
  }
  return rc;
}

static void apply(fs_store_item *it) {
  int rc = 0;
  switch (it->kind) {
  case ITEM_PROMPT:
    rc = apply_prompt(it);
    break;
  case ITEM_RESULT:
    rc = apply_result(it);
    break;
  case ITEM_REMOVE:
    rc = apply_remove(it);
    break;
  case ITEM_MODE:
    rc = apply_mode(it);
    break;
  default:
    break;
  }
  it->ok = rc == 0;
}

/* After the commit (or its failure): finished runs read as finished, their
 * memory copies go, fsync()s are answered. */
static void after_commit(fs_store_item *list, int committed) {
  FS_OUTBOX(ob);
  pthread_mutex_lock(&fs.mu);
  for (fs_store_item *it = list; it != NULL; it = it->next) {
    if (committed && it->ok) {
      fs.stored[0] += (uint64_t)(int64_t)it->delta[0];
      fs.stored[1] += (uint64_t)(int64_t)it->delta[1];
    }
    if (it->kind == ITEM_RESULT) {
      fs_run *r = it->run;
      int stored = committed && it->ok;
      if (!stored && !r->stale && r->slot->run == r) {
        fs_log(GKP_LOG_WARN,
               "%s/%s: the answer could not be kept on disk (%s); it is in memory only",
               r->slot->profile, r->slot->name, fs.db_path);
      }
      r->row = stored ? it->row : 0;
      r->stored = stored;
      fs_job_finished(r, &ob);
      if (stored) {
        fs_run_trim(r);
        fs_slot *s = r->slot;
        fs_file *f = s->dir != NULL ? fs_smap_get(&s->dir->files, s->name) : NULL;
        if (f != NULL) {
          fs_file_offload(f); /* the prompt is on disk too: memory is for work */
        }
        if (s->run == r) {
          fs_cache_touch(s);
        }
      }
      fs_run_unref(r);
    } else if (it->kind == ITEM_PROMPT && !(committed && it->ok)) {
      fs_log(GKP_LOG_WARN, "%s/%s: cannot keep the prompt on disk; the job is not durable",
             it->profile, it->name);
    }
  }
  pthread_mutex_unlock(&fs.mu);
  fs_outbox_send(&ob);
  for (fs_store_item *it = list; it != NULL; it = it->next) {
    if (it->kind == ITEM_SYNC) {
      fuse_reply_err(it->req, committed ? 0 : EIO);
    }
  }
}

/* Whether an item's commit must reach stable storage: a result (a job
 * reads as finished only once it is) or an fsync().  Prompts, removals and
 * close()s are written to the log without a sync: they survive the
 * daemon's death at once, and a power cut from the next synced commit on. */
static int item_durable(const fs_store_item *it) {
  return it->kind == ITEM_RESULT || (it->kind == ITEM_SYNC && it->ok);
}

/* Checkpoints are ours, made after a synced commit (synchronous=FULL then
 * syncs the log before and the database after): one made by a commit
 * without a sync could let the log be reused before the database is on
 * disk. */
static int wal_frames;

static int on_wal(void *ud, sqlite3 *db, const char *name, int frames) {
  (void)ud;
  (void)db;
  (void)name;
  wal_frames = frames;
  return SQLITE_OK;
}

static void checkpoint(void) {
  if (sqlite3_wal_checkpoint_v2(wdb, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL) == SQLITE_OK) {
    wal_frames = 0;
  }
}

/* Applies a list in one transaction and commits it, synced or not. */
static void commit_list(fs_store_item *list, int durable) {
  static int synced = -1; /* the connection's synchronous setting */
  if (list == NULL) {
    return;
  }
  if (durable != synced) {
    wexec(durable ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=OFF");
    synced = durable;
  }
  int committed = wexec("BEGIN IMMEDIATE") == 0;
  if (committed) {
    for (fs_store_item *it = list; it != NULL; it = it->next) {
      apply(it);
    }
    committed = wexec("COMMIT") == 0;
    if (!committed) {
      wexec("ROLLBACK");
    }
  }
  after_commit(list, committed);
  if (durable && wal_frames >= 1000) {
    checkpoint();
  }
  while (list != NULL) {
    fs_store_item *next = list->next;
    item_free(list);
    list = next;
  }
}

/*
 * A batch is two commits: first prompts, removals and close()s, unsynced,
 * so a close() never waits for a sync; then results and fsync()s, synced
 * (one sync for all of them: the group commit).  Moving a result after a
 * later prompt or removal of its name only means it is not stored: its run
 * was replaced or removed already.
 */
static void write_batch(fs_store_item *list) {
  fs_store_item *light = NULL, **lt = &light, *heavy = NULL, **ht = &heavy;
  while (list != NULL) {
    fs_store_item *it = list;
    list = it->next;
    it->next = NULL;
    if (item_durable(it)) {
      *ht = it;
      ht = &it->next;
    } else {
      *lt = it;
      lt = &it->next;
    }
  }
  commit_list(light, 0);
  commit_list(heavy, 1);
}

/* How often expired jobs are looked for: hourly, or sooner for a short
 * retention. */
static int64_t expire_period(void) {
  int64_t p = fs.keep_ms / 4;
  return p < 1000 ? 1000 : p > HOUR_MS ? HOUR_MS : p;
}

static void *store_main(void *arg) {
  sigset_t all;
  int64_t next_expire = gkp__now_ms() + expire_period();
  (void)arg;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL);
  pthread_mutex_lock(&fs.store_qmu);
  for (;;) {
    fs_store_item *list = fs.store_head;
    if (list == NULL) {
      if (fs.store_stop) {
        break;
      }
      if (fs.keep_ms > 0 && gkp__now_ms() >= next_expire) {
        pthread_mutex_unlock(&fs.store_qmu);
        fs_store_expire();
        next_expire = gkp__now_ms() + expire_period();
        pthread_mutex_lock(&fs.store_qmu);
        continue;
      }
      if (fs.keep_ms > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t wait = next_expire - gkp__now_ms();
        ts.tv_sec += wait / 1000;
        ts.tv_nsec += (wait % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
          ts.tv_sec++;
          ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&fs.store_cv, &fs.store_qmu, &ts);
      } else {
        pthread_cond_wait(&fs.store_cv, &fs.store_qmu);
      }
      continue;
    }
    fs.store_head = fs.store_tail = NULL;
    pthread_mutex_unlock(&fs.store_qmu);
    write_batch(list);
    pthread_mutex_lock(&fs.store_qmu);
  }
  pthread_mutex_unlock(&fs.store_qmu);
  return NULL;
}

/* ---- retention ------------------------------------------------------------------- */

/* Forgets a job of the tree whose row expired, if the tree still holds that
 * finished run (fs.mu held). */
static void forget(const char *profile, const char *name, uint64_t run) {
  fs_dir *d = fs_dir_get(profile);
  fs_slot *s = d != NULL ? fs_slot_get(d, name, 0) : NULL;
  if (s == NULL || s->run == NULL || s->run->uid != run || !s->run->runner_done) {
    return;
  }
  fs_file *f = fs_smap_get(&d->files, name);
  if (f != NULL && f->sub_run == run && !f->dirty) {
    fs_file_unlink(f);
  }
  fs_slot_remove(s);
}

static const char sql_expired[] =
    "SELECT profile, name, run FROM jobs WHERE finished_ms IS NOT NULL AND finished_ms < ?1";
static const char sql_expire[] =
    "DELETE FROM jobs WHERE finished_ms IS NOT NULL AND finished_ms < ?1 RETURNING failed";

size_t fs_store_expire(void) {
  int64_t cutoff = gkp__now_ms() - fs.keep_ms;
  sqlite3_stmt *st;
  size_t n = 0;
  uint64_t gone[2] = {0, 0};
  if (fs.keep_ms <= 0 || wexec("BEGIN IMMEDIATE") != 0) {
    return 0;
  }
  if ((st = wstmt(sql_expired)) != NULL) {
    sqlite3_bind_int64(st, 1, cutoff);
    pthread_mutex_lock(&fs.mu);
    while (sqlite3_step(st) == SQLITE_ROW) {
      forget((const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1),
             (uint64_t)sqlite3_column_int64(st, 2));
      n++;
    }
    pthread_mutex_unlock(&fs.mu);
    sqlite3_reset(st);
  }
  if ((st = wstmt(sql_expire)) != NULL) {
    sqlite3_bind_int64(st, 1, cutoff);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      gone[sqlite3_column_int(st, 0) ? 1 : 0]++;
    }
    wdone(st, rc);
  }
  if (wexec("COMMIT") != 0) {
    wexec("ROLLBACK");
    return 0;
  }
  pthread_mutex_lock(&fs.mu);
  fs.stored[0] -= gone[0] < fs.stored[0] ? gone[0] : fs.stored[0];
  fs.stored[1] -= gone[1] < fs.stored[1] ? gone[1] : fs.stored[1];
  pthread_mutex_unlock(&fs.mu);
  if (n > 0) {
    fs_log(GKP_LOG_INFO, "job store: %zu finished job(s) older than the retention removed", n);
  }
  return n;
}

/* ---- reads ----------------------------------------------------------------------- */

char *fs_store_read_prompt(const char *profile, const char *name, uint64_t run, size_t *len) {
  sqlite3 *db = reader_get();
  sqlite3_stmt *st = NULL;
  char *out = NULL;
  if (db == NULL) {
    return NULL;
  }
  if ((st = fs_store_rstmt(db, "SELECT prompt, run FROM jobs WHERE profile = ?1 AND name = ?2")) !=
      NULL) {
    sqlite3_bind_text(st, 1, profile, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW &&
        (run == 0 || (uint64_t)sqlite3_column_int64(st, 1) == run)) {
      size_t n = (size_t)sqlite3_column_bytes(st, 0);
      const void *p = sqlite3_column_blob(st, 0);
      if ((out = malloc(n + 1)) != NULL) {
        if (n > 0) {
          memcpy(out, p, n);
        }
        out[n] = '\0';
        *len = n;
      }
    }
  }
  fs_store_rdone(st);
  reader_put(db);
  return out;
}

int fs_store_list(const char *profile, fs_store_list_fn fn, void *ud) {
  sqlite3 *db = reader_get();
  sqlite3_stmt *st = NULL;
  int rc = 0;
  if (db == NULL) {
    return -EIO;
  }
  if (sqlite3_prepare_v2(db,
                         "SELECT id, name, failed, exts FROM jobs"
                         " WHERE profile = ?1 AND meta IS NOT NULL",
                         -1, &st, NULL) != SQLITE_OK) {
    rc = -EIO;
  } else {
    sqlite3_bind_text(st, 1, profile, -1, SQLITE_STATIC);
    while (rc == 0 && sqlite3_step(st) == SQLITE_ROW) {
      const char *exts = (const char *)sqlite3_column_text(st, 3);
      rc = fn(ud, sqlite3_column_int64(st, 0), (const char *)sqlite3_column_text(st, 1),
              sqlite3_column_int(st, 2), exts != NULL ? exts : "");
    }
  }
  sqlite3_finalize(st);
  reader_put(db);
  return rc;
}

int fs_store_lines(fs_store_line_fn fn, void *ud) {
  sqlite3 *db = reader_get();
  sqlite3_stmt *st = NULL;
  int rc = 0;
  if (db == NULL) {
    return -EIO;
  }
  if (sqlite3_prepare_v2(db,
                         "SELECT created_ms, profile, name, line FROM jobs"
                         " WHERE line IS NOT NULL ORDER BY created_ms",
                         -1, &st, NULL) != SQLITE_OK) {
    rc = -EIO;
  } else {
    while (rc == 0 && sqlite3_step(st) == SQLITE_ROW) {
      rc = fn(ud, sqlite3_column_int64(st, 0), (const char *)sqlite3_column_text(st, 1),
              (const char *)sqlite3_column_text(st, 2), (const char *)sqlite3_column_text(st, 3));
    }
  }
  sqlite3_finalize(st);
  reader_put(db);
  return rc;
}

/* The row id of image idx of job row `row`, or 0. */
static int64_t image_row(sqlite3 *db, int64_t row, size_t idx) {
  sqlite3_stmt *st = NULL;
  int64_t id = 0;
  if ((st = fs_store_rstmt(db, "SELECT rowid FROM images WHERE job = ?1 AND idx = ?2")) != NULL) {
    sqlite3_bind_int64(st, 1, row);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)idx);
    if (sqlite3_step(st) == SQLITE_ROW) {
      id = sqlite3_column_int64(st, 0);
    }
  }
  fs_store_rdone(st);
  return id;
}

ssize_t fs_store_read(int64_t row, int image, void *buf, size_t size, off_t off) {
  sqlite3 *db = reader_get();
  sqlite3_blob *b = NULL;
  ssize_t n = -EIO;
  int64_t id = row;
  if (db == NULL) {
    return -EIO;
  }
  if (image >= 0) {
    id = image_row(db, row, (size_t)image);
  }
  if (id != 0 && sqlite3_blob_open(db, "main", image >= 0 ? "images" : "jobs",
                                   image >= 0 ? "data" : "answer", id, 0, &b) == SQLITE_OK) {
    int64_t total = sqlite3_blob_bytes(b);
    if (off >= total) {
      n = 0;
    } else {
      size_t want = (size_t)(total - off) < size ? (size_t)(total - off) : size;
      n = sqlite3_blob_read(b, buf, (int)want, (int)off) == SQLITE_OK ? (ssize_t)want : -EIO;
    }
  }
  sqlite3_blob_close(b);
  reader_put(db);
  return n;
}

/* ---- start and stop ---------------------------------------------------------------- */

int fs_store_start(gkp_error *err) {
  int rc;
  pthread_once(&stripes_once, stripes_init);
  /* The store holds prompts and answers: its directory must be the user's
   * alone, and the database is never opened through a symbolic link. */
  char dir[4096];
  const char *slash = strrchr(fs.db_path, '/');
  snprintf(dir, sizeof dir, "%.*s", slash != NULL ? (int)(slash - fs.db_path) : 1,
           slash != NULL ? fs.db_path : ".");
  if ((rc = gkp__private_dir(dir, 1, "the state directory", err)) != 0) {
    return rc;
  }
  if ((rc = db_files_private(err)) != 0) {
    return rc;
  }
  if ((wdb = db_open(1)) == NULL) {
    snprintf(err->msg, sizeof err->msg, "cannot open the job store %s (see the log above)",
             fs.db_path);
    return -EIO;
  }
  sqlite3_wal_hook(wdb, on_wal, NULL); /* replaces the automatic checkpoints */
  if ((rc = fs_spool_import(wdb, fs.spool_dir)) != 0) {
    snprintf(err->msg, sizeof err->msg, "cannot import the spool %s into %s: %s", fs.spool_dir,
             fs.db_path, strerror(-rc));
    return rc;
  }
  fs_store_expire();
  rc = pthread_create(&fs.store_thread, NULL, store_main, NULL);
  if (rc != 0) {
    snprintf(err->msg, sizeof err->msg, "cannot start the job store's thread: %s", strerror(rc));
    return -rc;
  }
  fs.store_started = 1;
  return 0;
}

void fs_store_stop(void) {
  if (fs.store_started) {
    pthread_mutex_lock(&fs.store_qmu);
    fs.store_stop = 1;
    pthread_cond_signal(&fs.store_cv);
    pthread_mutex_unlock(&fs.store_qmu);
    pthread_join(fs.store_thread, NULL);
    fs.store_started = 0;
  }
  for (int i = 0; i < NSTMT && wstmts[i].sql != NULL; i++) {
    sqlite3_finalize(wstmts[i].st);
    wstmts[i].sql = NULL;
    wstmts[i].st = NULL;
  }
  pthread_mutex_lock(&idle_mu);
  while (nidle > 0) {
    reader_close(idle[--nidle]);
  }
  pthread_mutex_unlock(&idle_mu);
  sqlite3_close(wdb);
  wdb = NULL;
}
