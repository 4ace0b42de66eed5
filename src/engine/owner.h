/*
 * owner.h - who holds a lease, in terms every process on a machine can check.
 *
 * A process is named by the boot it runs in (/proc/sys/kernel/random/boot_id),
 * its pid namespace (the inode of /proc/self/ns/pid), its pid there, and its
 * start time (field 22 of /proc/PID/stat), so that neither a pid seen from
 * another namespace nor a reused pid is ever taken for the holder.
 */
#ifndef GKP_ENGINE_OWNER_H
#define GKP_ENGINE_OWNER_H

#include <stdint.h>

typedef struct gkp__owner {
  uint64_t boot;  /* hash of the boot id; 0: unknown */
  uint64_t pidns; /* inode of the pid namespace; 0: unknown */
  uint64_t start; /* start time in clock ticks after boot; 0: unknown */
  int32_t pid;
  uint32_t reserved; /* in gkp__owner_self's answer: GKP__OWNER_PROC_OK */
} gkp__owner;

/* /proc shows this process's pid namespace. */
#define GKP__OWNER_PROC_OK 1u

/* The calling process. */
void gkp__owner_self(gkp__owner *o);

/* Whether two names are the same process. */
int gkp__owner_same(const gkp__owner *a, const gkp__owner *b);

/*
 * Whether the process `o` may still be running, judged from `self`: 0 only
 * when it is certainly gone (same boot and pid namespace, and its pid is
 * free or now belongs to a process started at another time); 1 otherwise,
 * including every process of another namespace or boot.
 */
int gkp__owner_alive(const gkp__owner *o, const gkp__owner *self);

#endif
