/*
 * secmem.c - page-aligned, undumpable memory for API keys.
 */
#include "common/secmem.h"

#include <string.h>
#include <sys/mman.h>

/* See secmem.h. */
void *gkp__secmem_alloc(size_t len) {
  void *p =
      mmap(NULL, len > 0 ? len : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    return NULL;
  }
  /* Not fatal where the kernel lacks it: the processes also turn dumps off. */
  (void)madvise(p, len > 0 ? len : 1, MADV_DONTDUMP);
  return p;
}

/* See secmem.h. */
void gkp__secmem_free(void *p, size_t len) {
  if (p == NULL) {
    return;
  }
  explicit_bzero(p, len);
  munmap(p, len > 0 ? len : 1);
}
