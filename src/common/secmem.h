/*
 * secmem.h - memory for secrets: kept out of core dumps, wiped when freed.
 */
#ifndef GKP_COMMON_SECMEM_H
#define GKP_COMMON_SECMEM_H

#include <stddef.h>

/* Allocates `len` zeroed bytes on pages of their own, marked MADV_DONTDUMP
 * so that a core dump of the process never holds them.  Returns NULL (errno
 * set) on failure.  Free with gkp__secmem_free and the same length. */
void *gkp__secmem_alloc(size_t len);

/* Wipes (explicit_bzero) and releases what gkp__secmem_alloc returned.
 * NULL is a no-op. */
void gkp__secmem_free(void *p, size_t len);

#endif
