#include "common/dynbuf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DYNBUF_MIN_ALLOC 64

void gkp__dynbuf_init(gkp__dynbuf *b, size_t cap) {
  b->buf = NULL;
  b->len = 0;
  b->alloc = 0;
  b->cap = cap;
}

/* Makes room for `extra` more bytes plus the NUL, or fails (and frees). */
static int dynbuf_grow(gkp__dynbuf *b, size_t extra) {
  if (extra > b->cap || b->len > b->cap - extra) {
    gkp__dynbuf_reset(b);
    return -EFBIG;
  }
  size_t need = b->len + extra + 1;
  if (need <= b->alloc) {
    return 0;
  }
  size_t limit = b->cap + 1;
  size_t a = b->alloc ? b->alloc : DYNBUF_MIN_ALLOC;
  while (a < need) {
    a = (a > limit / 2) ? limit : a * 2;
  }
  if (a > limit) {
    a = limit;
  }
  char *p = realloc(b->buf, a);
  if (p == NULL) {
    gkp__dynbuf_reset(b);
    return -ENOMEM;
  }
  b->buf = p;
  b->alloc = a;
  return 0;
}

int gkp__dynbuf_add(gkp__dynbuf *b, const void *data, size_t len) {
  int rc = dynbuf_grow(b, len);
  if (rc < 0) {
    return rc;
  }
  if (len > 0) {
    memcpy(b->buf + b->len, data, len);
  }
  b->len += len;
  b->buf[b->len] = '\0';
  return 0;
}

int gkp__dynbuf_adds(gkp__dynbuf *b, const char *s) {
  return gkp__dynbuf_add(b, s, strlen(s));
}

int gkp__dynbuf_vprintf(gkp__dynbuf *b, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n < 0) {
    return -EINVAL;
  }
  int rc = dynbuf_grow(b, (size_t)n);
  if (rc < 0) {
    return rc;
  }
  vsnprintf(b->buf + b->len, (size_t)n + 1, fmt, ap);
  b->len += (size_t)n;
  return 0;
}

int gkp__dynbuf_printf(gkp__dynbuf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = gkp__dynbuf_vprintf(b, fmt, ap);
  va_end(ap);
  return rc;
}

size_t gkp__dynbuf_room(const gkp__dynbuf *b) {
  return b->len < b->cap ? b->cap - b->len : 0;
}

void gkp__dynbuf_clear(gkp__dynbuf *b) {
  b->len = 0;
  if (b->buf != NULL) {
    b->buf[0] = '\0';
  }
}

void gkp__dynbuf_reset(gkp__dynbuf *b) {
  free(b->buf);
  b->buf = NULL;
  b->len = 0;
  b->alloc = 0;
}

void gkp__dynbuf_wipe(gkp__dynbuf *b) {
  if (b->buf != NULL) {
    explicit_bzero(b->buf, b->alloc);
  }
  gkp__dynbuf_reset(b);
}

char *gkp__dynbuf_take(gkp__dynbuf *b, size_t *len) {
  char *p = b->buf;
  size_t n = b->len;
  if (p == NULL) {
    p = calloc(1, 1);
    if (p == NULL) {
      return NULL;
    }
    n = 0;
  }
  b->buf = NULL;
  b->len = 0;
  b->alloc = 0;
  if (len != NULL) {
    *len = n;
  }
  return p;
}

const char *gkp__dynbuf_ptr(const gkp__dynbuf *b) {
  return b->buf != NULL ? b->buf : "";
}

size_t gkp__dynbuf_len(const gkp__dynbuf *b) {
  return b->len;
}
