/*
 * dotenv.c - reading a .env file beside keys.json.
 *
 * Accepted lines: `NAME=value`, an optional leading `export `, blank lines and
 * `#` comments.  Whitespace around `=` is ignored.  A value may be wrapped in
 * double quotes (escapes \n \r \t \" \\ ; other backslashes are kept) or
 * single quotes (taken literally); an unquoted value ends at ` #` (an inline
 * comment) and loses its trailing whitespace.  A value spans one line.
 *
 * Values are secrets: messages name the file and line number only, never the
 * line's text, and everything read is wiped when freed.
 */
#include "config/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/util.h"

/* A .env larger than this is surely not one. */
#define DOTENV_MAX_BYTES (1024 * 1024)

static int is_blank(char c) {
  return c == ' ' || c == '\t';
}

static int is_name_start(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static int is_name_char(char c) {
  return is_name_start(c) || (c >= '0' && c <= '9');
}

/* Stores name=value (copies), replacing an earlier value of the same name.
 * Returns 0 or -ENOMEM. */
static int dotenv_set(gkp__dotenv *env, const char *name, size_t name_len, const char *value,
                      size_t value_len) {
  char *v = malloc(value_len + 1);
  if (v == NULL) {
    return -ENOMEM;
  }
  memcpy(v, value, value_len);
  v[value_len] = '\0';
  for (size_t i = 0; i < env->n; i++) {
    if (strlen(env->names[i]) == name_len && memcmp(env->names[i], name, name_len) == 0) {
      explicit_bzero(env->values[i], strlen(env->values[i]));
      free(env->values[i]);
      env->values[i] = v;
      return 0;
    }
  }
  /* names and values grow in step, from the same capacity. */
  size_t ncap = env->cap, vcap = env->cap;
  char **names = gkp__grow(env->names, &ncap, env->n + 1, sizeof *names, 8);
  if (names != NULL) {
    env->names = names;
  }
  char **values = names ? gkp__grow(env->values, &vcap, env->n + 1, sizeof *values, 8) : NULL;
  if (values == NULL) {
    explicit_bzero(v, value_len);
    free(v);
    return -ENOMEM;
  }
  env->values = values;
  env->cap = ncap;
  char *n = strndup(name, name_len);
  if (n == NULL) {
    explicit_bzero(v, value_len);
    free(v);
    return -ENOMEM;
  }
  env->names[env->n] = n;
  env->values[env->n] = v;
  env->n++;
  return 0;
}

/* Decodes a double-quoted value starting after the opening quote into out
 * (which has room for end - p bytes).  Returns the position of the closing
 * quote, or NULL when the line ends first. */
static const char *decode_double(const char *p, const char *end, char *out, size_t *out_len) {
  size_t n = 0;
  while (p < end && *p != '"') {
    if (*p == '\\' && p + 1 < end) {
      char c = p[1];
      char d = c == 'n' ? '\n' : c == 'r' ? '\r' : c == 't' ? '\t' : c;
      if (c == 'n' || c == 'r' || c == 't' || c == '"' || c == '\\') {
        out[n++] = d;
      } else {
        out[n++] = '\\';
        out[n++] = c;
      }
      p += 2;
    } else {
      out[n++] = *p++;
    }
  }
  *out_len = n;
  return p < end ? p : NULL;
}

/* Parses one line [p, end) without its newline.  Returns 0 (also for blank
 * and comment lines), -ENOMEM, or -EINVAL with *why set to a phrase. */
static int parse_line(gkp__dotenv *env, const char *p, const char *end, const char **why) {
  while (p < end && is_blank(*p)) {
    p++;
  }
  if (p == end || *p == '#') {
    return 0;
  }
  if (end - p > 7 && memcmp(p, "export", 6) == 0 && is_blank(p[6])) {
    const char *q = p + 7;
    while (q < end && is_blank(*q)) {
      q++;
    }
    if (q < end && is_name_start(*q)) {
      p = q; /* "export NAME=value"; "export = x" sets a variable named export */
    }
  }
  const char *name = p;
  if (p == end || !is_name_start(*p)) {
    *why = "expected NAME=value where NAME is letters, digits and _";
    return -EINVAL;
  }
  while (p < end && is_name_char(*p)) {
    p++;
  }
  size_t name_len = (size_t)(p - name);
  while (p < end && is_blank(*p)) {
    p++;
  }
  if (p == end || *p != '=') {
    *why = "expected NAME=value";
    return -EINVAL;
  }
  p++;
  const char *raw = p; /* before the blanks: "A= #x" is an empty value */
  while (p < end && is_blank(*p)) {
    p++;
  }

  if (p < end && (*p == '"' || *p == '\'')) {
    char quote = *p++;
    const char *close;
    size_t len = 0;
    char *buf = malloc((size_t)(end - p) + 1);
    if (buf == NULL) {
      return -ENOMEM;
    }
    if (quote == '"') {
      close = decode_double(p, end, buf, &len);
    } else {
      close = memchr(p, '\'', (size_t)(end - p));
      if (close != NULL) {
        len = (size_t)(close - p);
        memcpy(buf, p, len);
      }
    }
    if (close == NULL) {
      explicit_bzero(buf, (size_t)(end - p) + 1);
      free(buf);
      *why = quote == '"' ? "the double quote is not closed on this line"
                          : "the single quote is not closed on this line";
      return -EINVAL;
    }
    const char *q = close + 1;
    while (q < end && is_blank(*q)) {
      q++;
    }
    int rc = 0;
    if (q < end && *q != '#') {
      *why = "unexpected text after the closing quote";
      rc = -EINVAL;
    } else {
      rc = dotenv_set(env, name, name_len, buf, len);
    }
    explicit_bzero(buf, (size_t)(end - p) + 1);
    free(buf);
    return rc;
  }

  /* Unquoted: a '#' after a blank starts a comment. */
  const char *stop = end;
  for (const char *q = raw; q < end; q++) {
    if (*q == '#' && (q == raw || is_blank(q[-1]))) {
      stop = q;
      break;
    }
  }
  if (stop < p) {
    stop = p;
  }
  while (stop > p && is_blank(stop[-1])) {
    stop--;
  }
  return dotenv_set(env, name, name_len, p, (size_t)(stop - p));
}

/* See internal.h. */
int gkp__dotenv_parse(const char *text, size_t len, const char *path, gkp__dotenv *env,
                      gkp_error *err) {
  if (env->path == NULL && path != NULL) {
    env->path = strdup(path);
    if (env->path == NULL) {
      return gkp__err(err, -ENOMEM, "%s: out of memory", path);
    }
  }
  env->exists = 1;
  const char *p = text;
  const char *end = text + len;
  if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) {
    p += 3; /* a UTF-8 byte order mark, as some editors write */
  }
  for (size_t line = 1; p < end; line++) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t n = (size_t)((nl ? nl : end) - p);
    if (n > 0 && p[n - 1] == '\r') {
      n--; /* CRLF line ends */
    }
    const char *why = NULL;
    int rc;
    if (memchr(p, '\0', n) != NULL) {
      why = "contains a NUL byte";
      rc = -EINVAL;
    } else {
      rc = parse_line(env, p, p + n, &why);
    }
    if (rc == -ENOMEM) {
      return gkp__err(err, rc, "%s: line %zu: out of memory", path, line);
    }
    if (rc < 0) {
      return gkp__err(err, rc, "%s: line %zu: %s; fix the line or comment it out with #", path,
                      line, why);
    }
    p = nl ? nl + 1 : end;
  }
  return 0;
}

/* See internal.h. */
int gkp__dotenv_load(const char *path, gkp__dotenv *env, gkp_error *err) {
  memset(env, 0, sizeof *env);
  env->path = strdup(path);
  if (env->path == NULL) {
    return gkp__err(err, -ENOMEM, "%s: out of memory", path);
  }
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR) {
      return 0;
    }
    int e = errno;
    return gkp__err(err, -e, "%s: cannot open: %s; check its permissions", path, strerror(e));
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return gkp__err(err, -EINVAL, "%s: not a regular file; remove it or make it a file", path);
  }
  if (st.st_size > DOTENV_MAX_BYTES) {
    close(fd);
    return gkp__err(err, -EFBIG, "%s: larger than %d bytes; is it the right file?", path,
                    DOTENV_MAX_BYTES);
  }
  env->mode = (unsigned)(st.st_mode & 07777);
  size_t cap = (size_t)st.st_size + 1;
  char *buf = malloc(cap);
  if (buf == NULL) {
    close(fd);
    return gkp__err(err, -ENOMEM, "%s: out of memory", path);
  }
  size_t len = 0;
  while (len < cap - 1) {
    ssize_t r = read(fd, buf + len, cap - 1 - len);
    if (r < 0 && errno == EINTR) {
      continue;
    }
    if (r < 0) {
      int e = errno;
      close(fd);
      explicit_bzero(buf, cap);
      free(buf);
      return gkp__err(err, -e, "%s: cannot read: %s", path, strerror(e));
    }
    if (r == 0) {
      break;
    }
    len += (size_t)r;
  }
  close(fd);
  int rc = gkp__dotenv_parse(buf, len, path, env, err);
  explicit_bzero(buf, cap);
  free(buf);
  return rc;
}

/* See internal.h. */
const char *gkp__dotenv_get(const gkp__dotenv *env, const char *name) {
  for (size_t i = 0; env != NULL && i < env->n; i++) {
    if (strcmp(env->names[i], name) == 0) {
      return env->values[i];
    }
  }
  return NULL;
}

/* See internal.h. */
void gkp__dotenv_free(gkp__dotenv *env) {
  if (env == NULL) {
    return;
  }
  for (size_t i = 0; i < env->n; i++) {
    explicit_bzero(env->values[i], strlen(env->values[i]));
    free(env->values[i]);
    free(env->names[i]);
  }
  free(env->values);
  free(env->names);
  free(env->path);
  memset(env, 0, sizeof *env);
}
