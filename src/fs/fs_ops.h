/*
 * fs_ops.h - what the operation modules (fs_ops.c, fs_io.c, fs_names.c)
 * share.  Functions marked "fs.mu held" must be called with it.
 */
#ifndef GKP_FS_OPS_H
#define GKP_FS_OPS_H

#include "fs/fs.h"

/* ---- fs_ops.c ------------------------------------------------------------ */

/* A new handle of a kind, or NULL. */
fs_handle *fs_handle_new(int kind);
/* Registers a handle in fs.handles (fs.mu held). */
void fs_handle_link(fs_handle *h);
/* Drops what a handle holds and frees it (fs.mu held). */
void fs_handle_free(fs_handle *h);

/* The attributes of any inode.  Returns 0 or a positive errno (fs.mu held). */
int fs_attr_of(fuse_ino_t ino, struct stat *st);
/* How long the kernel may cache an inode's entry and attributes (fs.mu held). */
double fs_timeout_of(fuse_ino_t ino);
/* Fills the entry of `ino` for a lookup-like reply.  Returns 0 or a
 * positive errno (fs.mu held). */
int fs_entry_of(fuse_ino_t ino, struct fuse_entry_param *e);
/* Replies with an entry, or the error (without fs.mu). */
void fs_reply_entry(fuse_req_t req, int err, const struct fuse_entry_param *e);

/* The profile directory of an inode, or NULL (fs.mu held). */
fs_dir *fs_dir_of(fuse_ino_t ino);
/* Resolves an output name ("a.out", "a.err", "a.json", "a.png", "a-2.png")
 * to its inode and slot; 0 if it is none (fs.mu held). */
fuse_ino_t fs_output_ino(fs_dir *d, const char *name, fs_slot **sp);
/* The largest content a file may have: prompts are limited by -o max_prompt. */
size_t fs_file_limit(const fs_file *f);

/* ---- fs_io.c -------------------------------------------------------------- */

/* Submits a file's content as the job of its name when it should be (a
 * prompt, non-empty, within the limit, changed since, or `force` for a
 * rename).  Without fs.mu; the caller holds a reference on f.  Returns 1 if
 * it submitted. */
int fs_maybe_submit(fs_file *f, int force);

void fs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void fs_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                 struct fuse_file_info *fi);
void fs_op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void fs_op_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
                struct fuse_pollhandle *ph);

/* ---- fs_names.c ----------------------------------------------------------- */

void fs_op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                  struct fuse_file_info *fi);
void fs_op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev);
void fs_op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode);
void fs_op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs_op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs_op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                  const char *newname, unsigned int flags);
void fs_op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname);
void fs_op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name);

#endif
