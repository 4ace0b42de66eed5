/*
 * fs.h - the FUSE filesystem (gemini-pool mount): shared types of its modules.
 *
 * Modules:
 *   fs_main.c    fs_mount_run (fs_mount.h, the entry point the command line
 *                calls with parsed options): mount, daemon, signals, shutdown
 *   fs_ops.c     the operations table; handles, attributes, lookup, directories
 *   fs_io.c      open, read, write, flush (which submits), release, poll
 *   fs_names.c   create, unlink, rename
 *   fs_tree.c    the tree: inode numbers, directories, files, job slots, runs
 *   fs_jobs.c    submitting jobs, the runner's sink, parked reads, poll
 *   fs_store.c   the job store (SQLite): prompts, results, group commits,
 *                retention, reads of stored answers
 *   fs_store_load.c  at start: import of an old spool directory, restore
 *   fs_status.c  README, ctl and the generated files of status/
 *   fs_map.c     hash maps
 *   fs_log.c     logging (stderr in the foreground, a log file otherwise)
 *
 * The filesystem uses common, config, engine and runner, never cli; the
 * command line sees only fs_mount.h.  docs/ARCHITECTURE.md has the whole
 * module graph, the threads, the lock order and a job's life cycle.
 *
 * Threads and locks:
 * - libfuse's worker threads (a bounded pool) run the operations.  They
 *   never wait for a job: a read with nothing to return is *parked* (its
 *   fuse_req_t is stored with the run) and answered later by whichever thread
 *   brings the data.
 * - The runner's event-loop thread calls the sink (fs_jobs.c): new text,
 *   state changes, completion.  It answers parked reads itself.
 * - The store thread writes prompts and finished jobs to the job store and
 *   commits them; a finished job reads as finished once committed.
 * - The SIGHUP thread (fs_main.c) reloads the configuration.
 * - fs.mu guards the whole tree (every structure below unless noted).  It is
 *   held for memory work only (and for reading a finished job's prompt back
 *   from the store), never across network I/O and never while calling into
 *   the pool, the runner (but to cancel or release a job, which only queues
 *   work for its loop) or libfuse's interrupt registration.  Replies are
 *   prepared under it and sent after it is dropped (fs_outbox): a reply
 *   wakes a reader, which may preempt the thread that holds fs.mu.
 * - fs_store_lock(profile, name) (a striped mutex) orders what is queued
 *   for the store about one job name; it is taken before fs.mu, never after.
 *   The store thread takes fs.mu inside its transactions; nobody waits for
 *   the store's write lock with fs.mu held.
 */
#ifndef GKP_FS_H
#define GKP_FS_H

#define FUSE_USE_VERSION 35

#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "fs/fs_map.h"
#include "fs/fs_mount.h"
#include "gkp.h"
#include "runner/runner.h"

/* ---- limits and names ---------------------------------------------------- */

/* FS_DEFAULT_MAX_PROMPT, FS_SCRATCH_MAX (scratch files, editor swap
 * files), FS_DEFAULT_KEEP_MS and FS_MAX_TEXT (an answer: the largest
 * -o max_answer) are in fs_mount.h. */
#define FS_NAME_MAX 200    /* names in profile directories */
#define FS_MAX_IMAGES 200  /* images per job */
#define FS_CACHE_JOBS 1024 /* finished jobs held in memory; the others are in the store only */

/*
 * Groups of jobs loaded from the store are derived from their row, so that
 * a job keeps its inode numbers when it leaves memory and comes back:
 * outputs FS_ROW_GROUP(row, 0), prompt FS_ROW_GROUP(row, 1).  Other groups
 * count up from 1 and never get there.
 */
#define FS_ROW_GROUP_BASE ((uint64_t)1 << 46)
#define FS_ROW_GROUP(row, k) (FS_ROW_GROUP_BASE + (uint64_t)(row)*2 + (k))

/*
 * Inode numbers: (group << 8) | sub.  Group 0 holds the fixed nodes (the
 * root must be 1); every other object gets a group of its own, never
 * reused during a mount.  A job slot's outputs are subs of its group.
 */
enum fs_fixed_ino {
  FS_INO_ROOT = 1,
  FS_INO_README = 2,
  FS_INO_CTL = 3,
  FS_INO_STATUS = 4,
  FS_INO_ST_POOL = 5,
  FS_INO_ST_POOLJSON = 6,
  FS_INO_ST_METRICS = 7,
  FS_INO_ST_JOBS = 8,
  FS_INO_ST_KEYS = 9,
  FS_INO_ST_MODELS = 10,
};

enum fs_sub { FS_SUB_SELF = 0, FS_SUB_OUT = 1, FS_SUB_ERR = 2, FS_SUB_JSON = 3, FS_SUB_IMG0 = 8 };

#define FS_INO(group, sub) (((fuse_ino_t)(group) << 8) | (fuse_ino_t)(sub))
#define FS_INO_GROUP(ino) ((uint64_t)(ino) >> 8)
#define FS_INO_SUB(ino) ((unsigned)((ino)&0xff))

/* What an object of a group is. */
enum fs_type {
  FS_T_DIR = 1, /* a profile directory */
  FS_T_FILE,    /* a prompt or scratch file */
  FS_T_SLOT,    /* a job name's outputs */
  FS_T_ST_KEY,  /* status/keys/<id> */
  FS_T_ST_MODEL /* status/models/<model> */
};

typedef struct fs_obj {
  int type; /* enum fs_type */
  uint64_t group;
} fs_obj;

typedef struct fs_run fs_run;
typedef struct fs_slot fs_slot;
typedef struct fs_dir fs_dir;
typedef struct fs_handle fs_handle;

/* A growable byte buffer with random-access writes (file contents). */
typedef struct fs_buf {
  char *p;
  size_t len, cap;
} fs_buf;

/* A profile directory. */
struct fs_dir {
  fs_obj o;
  char *name;
  int gone;      /* no longer in the configuration */
  fs_smap files; /* name -> fs_file */
  fs_smap slots; /* name -> fs_slot */
  int64_t mtime_ms;
};

/* A prompt or scratch file: plain bytes in memory. */
typedef struct fs_file {
  fs_obj o;
  fs_dir *dir; /* NULL once unlinked */
  char *name;
  fs_buf data;
  int dirty;        /* changed since the last submission */
  int too_big;      /* a write was refused with EFBIG: never submit this content */
  int excl;         /* created with O_EXCL (mkstemp-style temporaries) */
  uint64_t sub_run; /* the run whose stored prompt is this content (0: changed since) */
  int on_disk;      /* the content is only in that stored prompt, not in memory */
  size_t disk_len;  /* its length then */
  int refs;         /* the directory's link + open handles */
  unsigned mode;
  uid_t uid; /* the creator's (the mounting user's by default) */
  gid_t gid;
  int64_t mtime_ms, ctime_ms;
} fs_file;

/* A job name in a directory: where the current run's outputs appear. */
struct fs_slot {
  fs_obj o;
  fs_dir *dir; /* NULL once removed */
  char *name;
  char *profile; /* the directory's name (kept when the slot is removed) */
  fs_run *run;   /* the current run (a reference) */
  int refs;      /* the directory's link + one per run + temporary holders */
  int in_cache;  /* in fs.cache: finished, stored, may leave memory */
  unsigned mode; /* the outputs' owner and permissions: the prompt's when submitted */
  uid_t uid;
  gid_t gid;
  fs_slot *cache_prev, *cache_next;
};

/* One image of a run. */
typedef struct fs_image {
  char mime[48];
  char ext[8];
  char name[FS_NAME_MAX + 32]; /* its file name ("" before names were allocated: the SPEC's) */
  void *data;                  /* NULL when only on disk */
  size_t len;
} fs_image;

/* A read waiting for answer text. */
typedef struct fs_parked {
  uint64_t id;
  fuse_req_t req;
  fs_handle *h;
  fs_run *run;
  off_t off;
  size_t size;
  int published; /* in run->parked (else still being registered) */
  int interrupted;
  struct fs_parked *prev, *next;
} fs_parked;

/* One submission of a prompt and its outcome. */
struct fs_run {
  int refs;
  uint64_t id;      /* for the kernel's view, never reused in a mount */
  uint64_t uid;     /* random: ties the stored prompt and result together */
  fs_slot *slot;    /* a reference */
  gkp__job *job;    /* while the runner has it */
  int submitted;    /* handed to the runner */
  int runner_done;  /* finished: its on_done came (or it never ran), and its
                       result is committed to the store if it is kept */
  int committing;   /* finished, its result waiting for the store's commit */
  int final_status; /* the status it will read as once committed */
  int cancel_req;
  int over_cap;       /* the answer (1), its images (2) or the mount's memory (3) went over a
                         cap: it fails */
  size_t image_bytes; /* the images' bytes so far */
  int stale;          /* replaced or removed: never stored */
  int status;         /* enum gkp__job_status */

  /* The answer. */
  fs_buf text; /* while in memory */
  size_t text_len;
  int on_disk;     /* text and images are in the store, not in memory */
  int64_t row;     /* its row in the store (when stored) */
  int stored;      /* committed to the store */
  int mem_readers; /* handles reading text or images from memory */
  uint32_t gen;    /* incremented when the text so far is thrown away */
  fs_image *images;
  size_t nimages;

  /* Metadata (the .json). */
  char model_requested[GKP_ID_MAX];
  char model_used[GKP_ID_MAX];
  char key_id[GKP_ID_MAX];
  gkp__attempt *attempts;
  size_t nattempts;
  int64_t tokens_in, tokens_out;
  int64_t created_ms, finished_ms;
  char *error;
  char *route; /* a routed job's decision (JSON), NULL otherwise */
  char task_type[GKP_ID_MAX], complexity[16]; /* routing's view of the task */

  fs_parked *parked;  /* reads waiting for text */
  fs_handle *pollers; /* handles with a poll handle */
};

/* What an open file handle reads. */
enum fs_hkind { FS_H_FILE = 1, FS_H_OUT, FS_H_IMAGE, FS_H_BUF, FS_H_CTL };

struct fs_handle {
  int kind;
  fs_file *file; /* FS_H_FILE */
  pid_t opener;  /* FS_H_FILE: the process that opened it (only its close submits) */
  fs_run *run;   /* FS_H_OUT, FS_H_IMAGE */
  size_t image;  /* FS_H_IMAGE */
  int disk;      /* FS_H_OUT, FS_H_IMAGE: read from the store, not memory */
  char *buf;     /* FS_H_BUF: generated content */
  size_t len;
  uint32_t gen; /* FS_H_OUT: the run's gen when reading began */
  int consumed; /* FS_H_OUT: text was returned */
  off_t pos;    /* FS_H_OUT: where the next read starts */
  int nonblock;
  int done; /* FS_H_OUT: the answer was complete when opened (seekable) */
  struct fuse_pollhandle *ph;
  fs_handle *poll_prev, *poll_next;
  fs_handle *all_prev, *all_next; /* fs.handles, for the teardown */
};

/* The status file entries. */
typedef struct fs_named {
  fs_obj o;
  char *name;
  int gone;
} fs_named;

#define FS_HIST_BUCKETS 16

/* The filesystem. */
typedef struct fs_state {
  pthread_mutex_t mu;
  gkp_pool *pool;
  gkp__runner *runner;
  struct fuse_session *se;

  fs_imap objs; /* group -> fs_obj */
  uint64_t next_group;
  uint64_t next_run_id;
  uint64_t next_parked_id;
  fs_smap dirs;                     /* profile name -> fs_dir */
  fs_smap keys;                     /* key id -> fs_named */
  fs_smap models;                   /* model id -> fs_named */
  fs_imap parked;                   /* id -> fs_parked */
  fs_handle *handles;               /* every open handle */
  fs_slot *cache_head, *cache_tail; /* finished jobs in memory, least recently used first */
  size_t cache_n;
  uint64_t stored[2]; /* finished jobs in the store: done, failed (the store thread's view) */

  size_t max_prompt;
  size_t max_answer; /* -o max_answer */
  size_t max_images; /* -o max_images: the image bytes of one job */
  size_t max_memory; /* -o max_memory: the accountant's ceiling */
  size_t mem_used;   /* the accountant's count (atomic) */
  int status_public; /* -o status_public: status/ readable by all */
  uid_t uid;
  gid_t gid;
  int64_t start_ms;
  int stopping;
  char *spool_dir; /* where releases before the store kept jobs (imported) */
  char *db_path;   /* the job store */
  int64_t keep_ms; /* retention of finished jobs (0: forever) */
  char *readme;
  size_t readme_len;

  /* Counters for status/metrics. */
  uint64_t hist[FS_HIST_BUCKETS];
  double hist_sum;
  uint64_t hist_count;
  uint64_t finished[5]; /* by enum gkp__job_status */
  uint64_t submitted;

  /* The store thread's queue (store_qmu). */
  pthread_mutex_t store_qmu;
  pthread_cond_t store_cv;
  struct fs_store_item *store_head, *store_tail;
  int store_stop;
  pthread_t store_thread;
  int store_started;

  /* What else the daemon serves (fs_mount_extra), while it runs. */
  const fs_mount_extra *extra;
  void *extra_handle;
} fs_state;

extern fs_state fs;
extern const double fs_hist_bounds[FS_HIST_BUCKETS - 1];

/* ---- fs_log.c --------------------------------------------------------- */

/* Where log lines go: stderr (foreground) or the file at `path`. */
int fs_log_open(int foreground, const char *path);
void fs_log_close(void);
void fs_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The pool's and libfuse's log callbacks. */
void fs_log_pool(void *ud, int level, const char *line);

/* ---- fs_tree.c -------------------------------------------------------- */

/* fs_buf: writes at any offset (a gap reads as zeros), truncation. */
/* Buffers charge what they hold (their capacity) to the memory accountant:
 * fs_buf_write and fs_buf_truncate return -ENOSPC beyond -o max_memory
 * (-ENOMEM if malloc fails); fs_buf_load (content coming back from the
 * store, bounded by the prompt limit) is charged but never refused. */
int fs_buf_write(fs_buf *b, size_t off, const void *data, size_t n);
int fs_buf_truncate(fs_buf *b, size_t len);
int fs_buf_load(fs_buf *b, const void *data, size_t n);
void fs_buf_free(fs_buf *b);
/*
 * The memory accountant (-o max_memory): the bytes of prompts, scratch
 * files, answers and images held in memory, one count for the whole mount
 * (atomic: with or without fs.mu).  fs_mem_charge adds n, or returns
 * -ENOSPC when that would pass the ceiling (unless `force`);
 * fs_mem_release gives n back.
 */
int fs_mem_charge(size_t n, int force);
void fs_mem_release(size_t n);
size_t fs_mem_used(void);
/* Frees an image's bytes held in memory (and their charge). */
void fs_image_free(fs_image *im);

/* Whether a name in a profile directory is a scratch file (never
 * submitted): ".x", "x~", "#x#", vim's "4913" probe, sed's "sedXXXXXX". */
int fs_name_scratch(const char *name);
/* Whether a file's content is never submitted: its name is scratch (or
 * is mkstemp-like and it was created with O_EXCL). */
int fs_file_scratch(const fs_file *f);
/* Whether a name is reserved for outputs (.out .err .json and images). */
int fs_name_reserved(const char *name);
/* The file extension for an image mime type ("png", "jpg", ...). */
const char *fs_mime_ext(const char *mime);

/* Registers an object under a fresh group.  Returns 0 or -ENOMEM. */
int fs_obj_add(fs_obj *o, int type);
/* Moves an object to another group (one derived from its store row). */
int fs_obj_regroup(fs_obj *o, uint64_t group);
void fs_obj_del(fs_obj *o);
/* The object of a group; a job's group derived from its row brings the job
 * back from the store if it is not in memory. */
fs_obj *fs_obj_get(uint64_t group);
/* The object of a group in memory only. */
fs_obj *fs_obj_peek(uint64_t group);

/* The cache of finished jobs (fs.mu held).  touch: the slot's job was
 * used, or has just been stored; it goes to the back, and jobs at the front
 * leave memory while the cache is over FS_CACHE_JOBS.  drop: the slot is
 * not a finished, stored job any more (new run, removed). */
void fs_cache_touch(fs_slot *s);
void fs_cache_drop(fs_slot *s);

fs_dir *fs_dir_get(const char *name);
/* The profile directories: adds new ones, marks removed ones gone. */
int fs_dirs_sync(char **names, size_t n);
/* Status entries (keys, models): adds new ones, marks removed ones gone. */
int fs_named_sync(fs_smap *map, int type, char **names, size_t n);

fs_file *fs_file_new(fs_dir *d, const char *name);
void fs_file_unlink(fs_file *f);
void fs_file_unref(fs_file *f);
/* The content's length, in memory or on disk. */
size_t fs_file_len(const fs_file *f);
/* Brings a prompt kept on disk back into memory (fs.mu held; reads the
 * stored prompt, which only a submission of this name could rewrite, and
 * that needs this file in memory).  Returns 0 or a negative errno (the
 * content is then lost, and said so in the log). */
int fs_file_load(fs_file *f);
/* Empties a file (fs.mu held), wherever its content was. */
void fs_file_clear(fs_file *f);
/* Leaves a prompt's content on disk only, if it is the stored prompt of its
 * slot's finished, stored run and nobody has the file open (fs.mu held). */
void fs_file_offload(fs_file *f);

fs_slot *fs_slot_get(fs_dir *d, const char *name, int create);
void fs_slot_unref(fs_slot *s);
/* Detaches a slot from its directory: cancels its run, forgets it. */
void fs_slot_remove(fs_slot *s);

fs_run *fs_run_new(fs_slot *s);
void fs_run_ref(fs_run *r);
void fs_run_unref(fs_run *r);
/* Frees a finished run's memory copy of text and images once it is on disk
 * and nobody reads it from memory. */
void fs_run_trim(fs_run *r);

/* The file name of image i of a run: the one allocated when it came
 * (fs_image_alloc), or for images stored before names were allocated the
 * SPEC's ("a.png", "a-2.png"). */
void fs_image_name(const fs_slot *s, const fs_run *r, size_t i, char *buf, size_t len);
/*
 * Names image i (the last that came) of run r (fs.mu held): "<job>.<ext>"
 * for the first, "<job>-<i+1>.<ext>" for the others, unless another image
 * of the directory (in memory or in the store) has that name; then
 * "<that stem>-<k>.<ext>" with the smallest free k >= 1.  Prompts cannot
 * have image names (fs_name_reserved) and .out/.err/.json are not image
 * extensions, so only images can take an image's name.
 */
void fs_image_alloc(fs_run *r, size_t i);
/* The image of directory d in memory named `name`: its index, and its slot
 * in *sp; -1 if none (fs.mu held). */
int fs_image_find(fs_dir *d, const char *name, fs_slot **sp);
/* The job names an image name can belong to, as lengths of its prefix:
 * the stem before the extension, then that stem without one and without
 * two "-<digits>" suffixes.  Returns how many (0 to 3). */
size_t fs_image_stems(const char *name, size_t stems[3]);

/* Reads the profile list (and keys and models) from the configuration and
 * syncs the tree.  Reads a configuration snapshot, then takes fs.mu. */
int fs_tree_sync_config(void);
/* Frees the whole tree (at the end, once nothing else runs). */
void fs_tree_free(void);

/* ---- fs_jobs.c -------------------------------------------------------- */

/* Replies and poll notifications gathered under fs.mu, sent after it. */
#define FS_OUTBOX_SMALL 4
typedef struct fs_out {
  fuse_req_t req; /* NULL: a poll notification */
  int err;
  char *data;
  size_t len;
  struct fuse_pollhandle *ph;
} fs_out;
typedef struct fs_outbox {
  fs_out *v;
  size_t n, cap;
  fs_out small[FS_OUTBOX_SMALL];
} fs_outbox;
#define FS_OUTBOX(name) fs_outbox name = {.v = name.small, .cap = FS_OUTBOX_SMALL}
/* Queues a reply (data is copied; err != 0 replies with that error). */
void fs_outbox_reply(fs_outbox *ob, fuse_req_t req, int err, const char *data, size_t len);
/* Queues a poll notification (takes the poll handle). */
void fs_outbox_poll(fs_outbox *ob, struct fuse_pollhandle *ph);
/* Sends everything queued (without fs.mu) and empties the outbox. */
void fs_outbox_send(fs_outbox *ob);

/* Submits `prompt` as the new run of slot s, replacing (cancelling) the
 * current one.  `store_prompt`: queue the prompt for the store first;
 * `run_uid`: the run id of a prompt already in the store (0: a new one).
 * Called without fs.mu.  Returns 0 or a negative errno (the run then exists
 * as failed with the reason). */
int fs_job_submit(fs_slot *s, const char *prompt, size_t len, int store_prompt, uint64_t run_uid);
/* Cancels a run (any thread, fs.mu held). */
void fs_job_cancel(fs_run *r);
/* Answers the parked reads of a run that can be answered now and notifies
 * its pollers, through the outbox (fs.mu held). */
void fs_job_wake(fs_run *r, fs_outbox *ob);
/* Reads from an .out handle: replies, or parks the request. */
void fs_job_read(fuse_req_t req, fs_handle *h, size_t size, off_t off);
/* The poll state of an .out handle (fs.mu held). */
unsigned fs_job_revents(fs_handle *h);
void fs_job_poll_drop(fs_handle *h);
/* Builds a run's .json document (fs.mu held).  `store`: the store's copy,
 * with the restore fields and the status it finished with.  Returns a
 * malloc'd string or NULL. */
char *fs_job_json(const fs_run *r, int store);
/* A finished run whose result is committed (or not kept) reads as
 * finished: counted, its readers answered (fs.mu held). */
void fs_job_finished(fs_run *r, fs_outbox *ob);
/* The text of a failed run's .err: the reason, and what to do about it
 * (malloc'd; fs.mu held). */
char *fs_job_err_text(const fs_run *r);
/* A run's line of status/jobs, with its newline (fs.mu held).  `store`:
 * the store's copy (the status it finished with). */
void fs_job_line(const fs_run *r, int store, char *buf, size_t len);
/* Counts a finished run in the metrics (fs.mu held). */
void fs_job_account(const fs_run *r);
/* At the end: answers every parked read with EIO (takes fs.mu). */
void fs_job_stop_parked(void);

/* ---- fs_store.c, fs_store_load.c ---------------------------------------- */

struct sqlite3;
/* The mutex that orders what is queued about one job name. */
pthread_mutex_t *fs_store_lock(const char *profile, const char *name);
/* Checks that the state directory is the user's alone, opens the store
 * (creating it), imports an old spool directory, removes jobs past the
 * retention, starts the store thread.  Returns 0 or a negative errno with
 * err set. */
int fs_store_start(gkp_error *err);
/* Commits what is queued and stops the thread; closes the store. */
void fs_store_stop(void);
/* Queues the prompt of a new run; its row replaces the name's previous one
 * (the name's store lock held). */
int fs_store_prompt(fs_slot *s, uint64_t run, const char *prompt, size_t len);
/* Reads the stored prompt of run `run` (or any run when 0) into a malloc'd
 * buffer.  Returns it, or NULL when missing or another run's. */
char *fs_store_read_prompt(const char *profile, const char *name, uint64_t run, size_t *len);
/* A new random run id. */
uint64_t fs_store_run_id(void);
/* Queues a finished run (r->committing set, fs.mu held): once its result is
 * committed, fs_job_finished() is called for it. */
void fs_store_finish(fs_run *r);
/* Queues a new owner and mode of a stored job (the name's prompt changed
 * them). */
void fs_store_mode(const char *profile, const char *name, unsigned mode, uid_t uid, gid_t gid);
/* Queues the removal of a removed slot's row, unless the name has a new
 * slot already (the name's store lock held; takes fs.mu). */
void fs_store_remove(fs_slot *s);
/* Replies to req once everything queued so far is committed: `durable`,
 * synced to stable storage (an fsync()); else written to the log (a close()
 * that submitted a prompt: the job then survives the daemon's death). */
void fs_store_sync(fuse_req_t req, int durable);
/* Reads stored bytes: the answer of job row `row` (image < 0) or its image.
 * Returns the count (0 at the end) or a negative errno. */
ssize_t fs_store_read(int64_t row, int image, void *buf, size_t size, off_t off);
/* Removes finished jobs older than the retention, from the store and the
 * tree (the store thread, or at start).  Returns how many. */
size_t fs_store_expire(void);
/* A reader connection of the pool, and its return. */
struct sqlite3 *fs_store_reader(void);
void fs_store_reader_put(struct sqlite3 *db);
/* A statement of a reader connection, prepared once and kept with it (the
 * lookups of every job); NULL on failure.  fs_store_rdone resets it for
 * the next user (the caller's, instead of sqlite3_finalize). */
struct sqlite3_stmt *fs_store_rstmt(struct sqlite3 *db, const char *sql);
void fs_store_rdone(struct sqlite3_stmt *st);
/* Imports a spool directory of the releases before the store, then
 * removes it (nothing when it does not exist). */
int fs_spool_import(struct sqlite3 *db, const char *spool_dir);
/* Loads the store: unfinished jobs are submitted again; finished ones stay
 * in the store until used. */
int fs_store_restore(void);
/* Brings the finished job that `name` belongs to (a prompt or an output
 * name) into memory from the store, if it is there and not in memory
 * (fs.mu held).  Returns 1 if it loaded one. */
int fs_store_fault(fs_dir *d, const char *name);
/* The same for the job of a store row (fs.mu held). */
int fs_store_fault_row(int64_t row);
/* One entry of a directory listing from the store (exts: the images'
 * names, '/'-separated, or on older rows their extensions, ','-separated). */
typedef int (*fs_store_list_fn)(void *ud, int64_t row, const char *name, int failed,
                                const char *exts);
/* Lists the finished jobs of a profile in the store (without fs.mu).
 * Returns 0 or a negative errno (the callback's, if it returns one). */
int fs_store_list(const char *profile, fs_store_list_fn fn, void *ud);
/* Calls fn for each stored job's status/jobs line, oldest first (without
 * fs.mu).  Returns 0 or a negative errno. */
typedef int (*fs_store_line_fn)(void *ud, int64_t created, const char *profile, const char *name,
                                const char *line);
int fs_store_lines(fs_store_line_fn fn, void *ud);

/* ---- fs_status.c ------------------------------------------------------ */

/* Renders a generated file: README, ctl's help, status files.  Returns 0
 * with a malloc'd *out, or a negative errno. */
int fs_status_render(fuse_ino_t ino, char **out, size_t *len);
/* Runs the commands written to ctl.  Returns 0 or -EINVAL with a logged
 * reason. */
int fs_ctl_run(const char *text, size_t len);
/* Reloads the configuration (ctl "reload", SIGHUP). */
int fs_reload(void);
char *fs_readme_text(const char *mountpoint);

/* ---- fs_ops.c --------------------------------------------------------- */

extern const struct fuse_lowlevel_ops fs_ops;
/* Frees every handle the kernel still had open (at the end). */
void fs_handles_free(void);

#endif
