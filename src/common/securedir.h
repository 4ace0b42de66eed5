/*
 * securedir.h - directories only the invoking user can change.
 *
 * The state file, the spool and the logs live in a directory that must
 * belong to the user and that nobody else can write: otherwise another user
 * of the machine could plant files or symbolic links there that receive
 * prompts and answers, or replace the state.  Every part that keeps files
 * (the engine's state, the filesystem's spool, the command line's logs)
 * checks its directory with gkp__secure_dir() before it opens anything in it,
 * and opens its files with O_NOFOLLOW | O_CLOEXEC (new ones with O_EXCL or
 * mkostemp's unpredictable names).
 */
#ifndef GKP_COMMON_SECUREDIR_H
#define GKP_COMMON_SECUREDIR_H

#include "gkp.h"

/*
 * Makes sure `dir` is safe to keep the pool's files in, creating it and its
 * missing parents 0700 when `create` is set.  Safe means: `dir` (symbolic
 * links resolved) is a directory owned by the effective user and writable by
 * nobody else, and every directory above it belongs to the user or root and
 * is writable by nobody else unless it is sticky (like /tmp, fine as a
 * parent only).  `what` names the directory's use in messages ("the state
 * directory").  Returns 0, or a negative errno with one line in err naming
 * the directory, its owner and mode, and the fix.
 */
int gkp__secure_dir(const char *dir, int create, const char *what, gkp_error *err);

/* Same, and `dir` itself may not be readable by group or others either: for
 * a directory that holds prompts and answers (the job store's). */
int gkp__private_dir(const char *dir, int create, const char *what, gkp_error *err);

/* Same as gkp__secure_dir for the directory holding `path` (the part before its last '/'; the
 * working directory when there is none). */
int gkp__secure_parent(const char *path, int create, const char *what, gkp_error *err);

#endif
