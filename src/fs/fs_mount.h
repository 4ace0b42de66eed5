/*
 * fs_mount.h - the filesystem's one entry point, for the command line.
 *
 * The command line (src/cli) parses `gemini-pool mount`'s arguments into an
 * fs_mount_opts and calls fs_mount_run; nothing else of the filesystem is
 * visible to it.  This header includes no FUSE header and nothing of cli.
 */
#ifndef GKP_FS_MOUNT_H
#define GKP_FS_MOUNT_H

#include <stddef.h>

#define FS_DEFAULT_MAX_PROMPT ((size_t)1 << 20)  /* -o max_prompt */
#define FS_SCRATCH_MAX ((size_t)64 << 20)        /* scratch files; the largest max_prompt */
#define FS_MAX_TEXT ((size_t)64 << 20)           /* the largest answer (-o max_answer) */
#define FS_MAX_IMAGE_BYTES ((size_t)64 << 20)    /* the images of a job (-o max_images) */
#define FS_DEFAULT_MAX_MEMORY ((size_t)1 << 30)  /* -o max_memory: 1 GiB */
#define FS_MIN_MAX_MEMORY ((size_t)1 << 20)      /* the smallest -o max_memory */
#define FS_DEFAULT_KEEP_MS (30 * 86400 * 1000LL) /* -o keep: 30 days */

/* What `gemini-pool mount` was asked to do.  Strings are borrowed for the
 * duration of fs_mount_run. */
typedef struct fs_mount_opts {
  const char *config;     /* --config FILE, or NULL for the usual search */
  const char *state;      /* --state FILE, or NULL for $GEMINI_POOL_STATE or the default */
  const char *mountpoint; /* an existing directory */
  int foreground;         /* stay attached, log to stderr */
  int debug;              /* log every FUSE request (implies foreground) */
  int single;             /* one FUSE worker thread */
  size_t max_prompt;      /* 1 .. FS_SCRATCH_MAX */
  size_t max_answer;      /* 1 .. FS_MAX_TEXT: a longer answer fails its job */
  size_t max_images;      /* 1 .. FS_MAX_IMAGE_BYTES: more image bytes fail the job */
  size_t max_memory;      /* >= FS_MIN_MAX_MEMORY: prompts, scratch files, answers, images */
  long long keep_ms;      /* finished jobs are removed this long after they ended (0: never) */
  int status_public;      /* status/ readable by every user (else by the mounting user) */
  const char *fuse_opts;  /* "" or comma-separated options for libfuse */
} fs_mount_opts;

/* Checks the configuration, mounts, becomes a daemon unless o->foreground,
 * and serves until unmounted (fusermount3 -u, SIGINT or SIGTERM).
 * Returns 0 after a clean unmount.  Returns -1 on failure: a failure before
 * the process leaves its terminal is described in err (one line, without a
 * program-name prefix); a later one was written to the mount's log and err
 * is "".  Warnings and progress lines go to the filesystem's own log
 * (stderr while attached). */
int fs_mount_run(const fs_mount_opts *o, char *err, size_t errlen);

#endif
