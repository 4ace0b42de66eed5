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
 *   fs_spool.c   finished jobs on disk under the state directory, restore
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
 * - The spool thread writes finished jobs to disk.
 * - The SIGHUP thread (fs_main.c) reloads the configuration.
 * - fs.mu guards the whole tree (every structure below unless noted).  It is
 *   held for memory work only (and for reading a finished job's prompt back
 *   from the spool), never across network I/O and never while calling into
 *   the pool, the runner (but to cancel or release a job, which only queues
 *   work for its loop) or libfuse's interrupt registration.  Replies are
 *   prepared under it and sent after it is dropped (fs_outbox): a reply
 *   wakes a reader, which may preempt the thread that holds fs.mu.
 * - fs_spool_lock(profile, name) (a striped mutex) serialises the disk
 *   files of one job name; it is taken before fs.mu, never after.
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

/* FS_DEFAULT_MAX_PROMPT and FS_SCRATCH_MAX (scratch files, editor swap
 * files) are in fs_mount.h. */
#define FS_NAME_MAX 200                /* names in profile directories */
#define FS_MAX_IMAGES 200              /* images per job */
#define FS_MAX_TEXT ((size_t)64 << 20) /* an answer */

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
  uint64_t sub_run; /* the run whose spooled prompt is this content (0: changed since) */
  int on_disk;      /* the content is only in that spooled prompt, not in memory */
  size_t disk_len;  /* its length then */
  int refs;         /* the directory's link + open handles */
  unsigned mode;
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
};

/* One image of a run. */
typedef struct fs_image {
  char mime[48];
  char ext[8];
  void *data; /* NULL when only on disk */
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
  uint64_t id;     /* for the kernel's view, never reused in a mount */
  uint64_t uid;    /* random: ties the spooled prompt and result together */
  fs_slot *slot;   /* a reference */
  gkp__job *job;   /* while the runner has it */
  int submitted;   /* handed to the runner */
  int runner_done; /* its on_done came (or it never ran) */
  int cancel_req;
  int stale;  /* replaced or removed: never spooled */
  int status; /* enum gkp__job_status */

  /* The answer. */
  fs_buf text; /* while in memory */
  size_t text_len;
  int on_disk;     /* text and images are in the spool, not in memory */
  size_t disk_off; /* where the text starts in the spooled result file */
  int spooled;     /* written to the spool */
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

  fs_parked *parked;  /* reads waiting for text */
  fs_handle *pollers; /* handles with a poll handle */
};

/* What an open file handle reads. */
enum fs_hkind { FS_H_FILE = 1, FS_H_OUT, FS_H_IMAGE, FS_H_BUF, FS_H_CTL };

struct fs_handle {
  int kind;
  fs_file *file; /* FS_H_FILE */
  fs_run *run;   /* FS_H_OUT, FS_H_IMAGE */
  size_t image;  /* FS_H_IMAGE */
  int fd;        /* spool file, or -1: read from memory */
  size_t fd_off; /* where the content starts in it */
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
  fs_smap dirs;       /* profile name -> fs_dir */
  fs_smap keys;       /* key id -> fs_named */
  fs_smap models;     /* model id -> fs_named */
  fs_imap parked;     /* id -> fs_parked */
  fs_handle *handles; /* every open handle */

  size_t max_prompt;
  uid_t uid;
  gid_t gid;
  int64_t start_ms;
  int stopping;
  char *spool_dir;
  char *readme;
  size_t readme_len;

  /* Counters for status/metrics. */
  uint64_t hist[FS_HIST_BUCKETS];
  double hist_sum;
  uint64_t hist_count;
  uint64_t finished[5]; /* by enum gkp__job_status */
  uint64_t submitted;

  /* The spool thread's queue (spool_qmu). */
  pthread_mutex_t spool_qmu;
  pthread_cond_t spool_cv;
  struct fs_spool_item *spool_head, *spool_tail;
  int spool_stop;
  pthread_t spool_thread;
  int spool_started;
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
int fs_buf_write(fs_buf *b, size_t off, const void *data, size_t n);
int fs_buf_truncate(fs_buf *b, size_t len);
void fs_buf_free(fs_buf *b);

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
void fs_obj_del(fs_obj *o);
fs_obj *fs_obj_get(uint64_t group);

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
 * spooled prompt, which only a submission of this name could rewrite, and
 * that needs this file in memory).  Returns 0 or a negative errno (the
 * content is then lost, and said so in the log). */
int fs_file_load(fs_file *f);
/* Empties a file (fs.mu held), wherever its content was. */
void fs_file_clear(fs_file *f);
/* Leaves a prompt's content on disk only, if it is the spooled prompt of its
 * slot's finished, spooled run and nobody has the file open (fs.mu held). */
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

/* The output name of image i of a run ("a.png", "a-2.png"). */
void fs_image_name(const fs_slot *s, const fs_run *r, size_t i, char *buf, size_t len);

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
 * current one.  `spool_prompt`: write the prompt to the spool first;
 * `run_uid`: the run id of a prompt already in the spool (0: a new one).
 * Called without fs.mu.  Returns 0 or a negative errno (the run then exists
 * as failed with the reason). */
int fs_job_submit(fs_slot *s, const char *prompt, size_t len, int spool_prompt, uint64_t run_uid);
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
/* Builds a run's .json document (fs.mu held).  `spool`: with the restore
 * fields.  Returns a malloc'd string or NULL. */
char *fs_job_json(const fs_run *r, int spool);
/* The text of a failed run's .err: the reason, and what to do about it
 * (malloc'd; fs.mu held). */
char *fs_job_err_text(const fs_run *r);
/* Counts a finished run in the metrics (fs.mu held). */
void fs_job_account(const fs_run *r);
/* At the end: answers every parked read with EIO (takes fs.mu). */
void fs_job_stop_parked(void);

/* ---- fs_spool.c ------------------------------------------------------- */

/* The mutex that serialises the spool files of one job name. */
pthread_mutex_t *fs_spool_lock(const char *profile, const char *name);
int fs_spool_start(void);
/* Drains the queue and stops the thread. */
void fs_spool_stop(void);
/* Writes the prompt of a new run, removing the files of the previous one
 * (the name's spool lock held). */
int fs_spool_prompt(fs_slot *s, uint64_t run, const char *prompt, size_t len);
/* Reads a spooled prompt of run `run` (or any run when 0) into a malloc'd
 * buffer.  Returns it, or NULL when missing, cut short or another run's. */
char *fs_spool_read_prompt(const char *profile, const char *name, uint64_t run, size_t *len);
/* A new random run id. */
uint64_t fs_spool_run_id(void);
/* Queues a finished run for writing (fs.mu held). */
void fs_spool_queue(fs_run *r);
/* Removes every spool file of a removed slot, unless the name has a new
 * slot already (the name's spool lock held; takes fs.mu). */
void fs_spool_remove(fs_slot *s);
/* Opens a spooled output of a slot read-only: "result" or "img<N>".
 * Returns an fd or a negative errno (the name's spool lock held). */
int fs_spool_open(const fs_slot *s, const char *ext);
/* Loads the spool: finished jobs come back, pending ones are submitted. */
int fs_spool_restore(void);

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
