#include "client/sse.h"

#include <errno.h>
#include <string.h>

/* Where the parser is within the current line. */
enum {
  S_LINE_START = 0, /* nothing of this line seen yet */
  S_LEAD_WS,        /* only blanks so far: maybe a bare JSON value follows */
  S_FIELD,          /* reading a field name */
  S_DATA_START,     /* just after "data:": an optional space follows */
  S_DATA,           /* reading a data value */
  S_IGNORE,         /* a comment, an ignored field, or the rest after a bare value */
  S_BARE,           /* inside a bare JSON value (not line-based) */
};

/* Buffers that grew past this are freed after each event rather than kept. */
#define SSE_KEEP_ALLOC ((size_t)1024 * 1024)

void gkp__sse_init(gkp__sse *p, size_t max_event, gkp__sse_fn on_event, gkp__sse_fn on_bare,
                   void *ud) {
  memset(p, 0, sizeof *p);
  if (max_event == 0) {
    max_event = GKP__SSE_MAX_EVENT;
  }
  p->on_event = on_event;
  p->on_bare = on_bare;
  p->ud = ud;
  gkp__dynbuf_init(&p->data, max_event);
  gkp__dynbuf_init(&p->bare, max_event);
  p->state = S_LINE_START;
}

void gkp__sse_free(gkp__sse *p) {
  gkp__dynbuf_reset(&p->data);
  gkp__dynbuf_reset(&p->bare);
}

/* Empties a buffer after delivery, giving back memory a huge event took. */
static void recycle(gkp__dynbuf *b) {
  if (b->alloc > SSE_KEEP_ALLOC) {
    gkp__dynbuf_reset(b);
  } else {
    gkp__dynbuf_clear(b);
  }
}

/* Latches and returns an error (the first one wins). */
static int fail(gkp__sse *p, int err) {
  if (p->err == 0) {
    p->err = err;
  }
  return p->err;
}

/* A blank line: delivers the pending event, if it has data. */
static int dispatch(gkp__sse *p) {
  if (!p->have_data) {
    return 0;
  }
  p->have_data = 0;
  p->events++;
  int rc = p->on_event(p->ud, gkp__dynbuf_ptr(&p->data), gkp__dynbuf_len(&p->data));
  recycle(&p->data);
  return rc != 0 ? fail(p, rc) : 0;
}

/* A "data" field starts: joins it to the previous data line with '\n'. */
static int begin_data_line(gkp__sse *p) {
  if (p->have_data) {
    int rc = gkp__dynbuf_add(&p->data, "\n", 1);
    if (rc < 0) {
      return fail(p, rc);
    }
  }
  p->have_data = 1;
  return 0;
}

static int is_data_field(const gkp__sse *p) {
  return p->field_len == 4 && memcmp(p->field, "data", 4) == 0;
}

/* A line terminator (c is '\r' or '\n') ends the current non-blank line. */
static void end_line(gkp__sse *p, char c) {
  p->after_cr = (c == '\r');
  p->state = S_LINE_START;
}

/* Starts a bare JSON value with its opening bracket. */
static int begin_bare(gkp__sse *p, char c) {
  p->state = S_BARE;
  p->depth = 0;
  p->in_str = 0;
  p->esc = 0;
  gkp__dynbuf_clear(&p->bare);
  (void)c;
  return 0;
}

/*
 * Scans bare JSON from s[0..len): appends what belongs to the value and
 * delivers it at its closing bracket.  Returns how many bytes were consumed,
 * or a negative error.
 */
static long scan_bare(gkp__sse *p, const char *s, size_t len) {
  size_t i = 0;
  int done = 0;
  while (i < len && !done) {
    char c = s[i++];
    if (p->in_str) {
      if (p->esc) {
        p->esc = 0;
      } else if (c == '\\') {
        p->esc = 1;
      } else if (c == '"') {
        p->in_str = 0;
      }
    } else if (c == '"') {
      p->in_str = 1;
    } else if (c == '{' || c == '[') {
      p->depth++;
    } else if (c == '}' || c == ']') {
      p->depth--;
      done = (p->depth <= 0);
    }
  }
  int rc = gkp__dynbuf_add(&p->bare, s, i);
  if (rc < 0) {
    return fail(p, rc);
  }
  if (done) {
    p->state = S_IGNORE;
    p->events++;
    if (p->on_bare != NULL) {
      rc = p->on_bare(p->ud, gkp__dynbuf_ptr(&p->bare), gkp__dynbuf_len(&p->bare));
    }
    recycle(&p->bare);
    if (rc != 0) {
      return fail(p, rc);
    }
  }
  return (long)i;
}

/* Length of the run in s[0..len) before the first '\r' or '\n'. */
static size_t run_to_eol(const char *s, size_t len) {
  size_t i = 0;
  while (i < len && s[i] != '\r' && s[i] != '\n') {
    i++;
  }
  return i;
}

int gkp__sse_feed(gkp__sse *p, const void *bytes, size_t len) {
  const char *s = bytes;
  size_t i = 0;
  if (p->err != 0) {
    return p->err;
  }
  while (i < len) {
    char c = s[i];
    if (p->after_cr) {
      p->after_cr = 0;
      if (c == '\n' && p->state == S_LINE_START) {
        i++; /* the '\n' of a "\r\n" split from its '\r' */
        continue;
      }
    }
    int eol = (c == '\r' || c == '\n');
    int rc = 0;
    switch (p->state) {
    case S_LINE_START:
      if (eol) {
        p->after_cr = (c == '\r');
        rc = dispatch(p);
      } else if (c == '{' || c == '[') {
        rc = begin_bare(p, c);
        continue; /* the bracket is scanned as part of the value */
      } else if (c == ':') {
        p->state = S_IGNORE;
      } else if (c == ' ' || c == '\t') {
        p->state = S_LEAD_WS;
      } else {
        p->state = S_FIELD;
        p->field[0] = c;
        p->field_len = 1;
      }
      i++;
      break;
    case S_LEAD_WS:
      if (eol) {
        end_line(p, c); /* a line of blanks is a field named " ": ignored */
      } else if (c == '{' || c == '[') {
        rc = begin_bare(p, c);
        continue;
      } else if (c != ' ' && c != '\t') {
        p->state = S_IGNORE;
      }
      i++;
      break;
    case S_FIELD:
      if (eol) {
        if (is_data_field(p)) {
          rc = begin_data_line(p); /* "data" alone: an empty data line */
        }
        end_line(p, c);
      } else if (c == ':') {
        if (is_data_field(p)) {
          rc = begin_data_line(p);
          p->state = S_DATA_START;
        } else {
          p->state = S_IGNORE;
        }
      } else if (p->field_len < sizeof p->field) {
        p->field[p->field_len++] = c;
      } else {
        p->state = S_IGNORE; /* longer than any field we care about */
      }
      i++;
      break;
    case S_DATA_START:
      p->state = S_DATA;
      if (c == ' ') {
        i++;
      }
      break;
    case S_DATA: {
      size_t n = run_to_eol(s + i, len - i);
      if (n > 0) {
        rc = gkp__dynbuf_add(&p->data, s + i, n);
        if (rc < 0) {
          rc = fail(p, rc);
        }
        i += n;
      } else {
        end_line(p, c);
        i++;
      }
      break;
    }
    case S_IGNORE: {
      size_t n = run_to_eol(s + i, len - i);
      i += n;
      if (i < len) {
        end_line(p, s[i]);
        i++;
      }
      break;
    }
    case S_BARE: {
      long n = scan_bare(p, s + i, len - i);
      if (n < 0) {
        rc = (int)n;
      } else {
        i += (size_t)n;
      }
      break;
    }
    default:
      rc = fail(p, -EINVAL);
      break;
    }
    if (rc != 0) {
      return fail(p, rc);
    }
  }
  return 0;
}

int gkp__sse_finish(gkp__sse *p) {
  if (p->err != 0) {
    return p->err;
  }
  int partial_line = (p->state == S_FIELD || p->state == S_LEAD_WS || p->state == S_DATA_START ||
                      p->state == S_DATA || p->state == S_BARE);
  if (p->have_data || partial_line) {
    return fail(p, -EBADMSG);
  }
  return 0;
}
