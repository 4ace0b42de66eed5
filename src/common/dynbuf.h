/*
 * dynbuf.h - a growable byte buffer with a hard size limit.
 *
 * Modelled on curl's lib/curlx/dynbuf.c: the buffer grows by doubling up to
 * `cap` bytes of content and never further.  An append that would pass the
 * cap fails with -EFBIG and, like curl's, frees the buffer, so a failed
 * buffer is always empty and never half-filled.  The content is always
 * followed by a NUL byte (not counted in len), so text can be used as a C
 * string directly.
 *
 * A gkp__dynbuf is plain data owned by whoever embeds it; it is not
 * thread-safe.
 */
#ifndef GKP_COMMON_DYNBUF_H
#define GKP_COMMON_DYNBUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct gkp__dynbuf {
  char *buf;    /* NULL until the first append */
  size_t len;   /* bytes of content */
  size_t alloc; /* bytes allocated (content + NUL + slack) */
  size_t cap;   /* hard limit on len */
} gkp__dynbuf;

/* Initialises an empty buffer that will hold at most `cap` bytes. */
void gkp__dynbuf_init(gkp__dynbuf *b, size_t cap);

/*
 * Appends `len` bytes.  Returns 0; -EFBIG if the content would pass the cap;
 * -ENOMEM if memory ran out.  On failure the buffer is freed (empty, cap
 * kept), as curl's dynbuf does.
 */
int gkp__dynbuf_add(gkp__dynbuf *b, const void *data, size_t len);

/* Appends a NUL-terminated string; as gkp__dynbuf_add. */
int gkp__dynbuf_adds(gkp__dynbuf *b, const char *s);

/* Appends printf-formatted text; as gkp__dynbuf_add (-EINVAL on a bad
 * format). */
int gkp__dynbuf_printf(gkp__dynbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int gkp__dynbuf_vprintf(gkp__dynbuf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* How many more bytes fit before the cap. */
size_t gkp__dynbuf_room(const gkp__dynbuf *b);

/* Empties the buffer but keeps its memory for reuse. */
void gkp__dynbuf_clear(gkp__dynbuf *b);

/* Frees the memory; the buffer is empty and usable again (cap kept). */
void gkp__dynbuf_reset(gkp__dynbuf *b);

/* As gkp__dynbuf_reset, wiping the memory first (for secrets). */
void gkp__dynbuf_wipe(gkp__dynbuf *b);

/*
 * Hands the content over to the caller: returns the malloc'd NUL-terminated
 * content (the buffer itself, or a fresh "" when empty; the caller frees it)
 * and its length in *len if len is non-NULL.  The dynbuf is left empty.
 * NULL on ENOMEM.
 */
char *gkp__dynbuf_take(gkp__dynbuf *b, size_t *len);

/* The content (a NUL-terminated "" when empty; never NULL) and its length. */
const char *gkp__dynbuf_ptr(const gkp__dynbuf *b);
size_t gkp__dynbuf_len(const gkp__dynbuf *b);

#endif
