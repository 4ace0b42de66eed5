/*
 * check.c - the helpers every check in src/config uses: messages in the form
 * "FILE: WHERE: WHAT; FIX", JSON types and numbers, names and ids, and JSON
 * syntax errors turned into a line and a column.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "config/internal.h"

/* See internal.h. */
int gkp__cfg_fail(const gkp__cfg_ctx *ctx, int code, const char *where, const char *fmt, ...) {
  if (ctx->err == NULL) {
    return code;
  }
  char what[GKP_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  if (where != NULL && where[0] != '\0') {
    return gkp__err(ctx->err, code, "%s: %s: %s", ctx->file, where, what);
  }
  return gkp__err(ctx->err, code, "%s: %s", ctx->file, what);
}

/* See internal.h. */
void gkp__cfg_log(const gkp__cfg_ctx *ctx, int level, const char *fmt, ...) {
  if (ctx->log == NULL) {
    return;
  }
  char what[GKP_MSG_MAX];
  char line[GKP_MSG_MAX + 256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  snprintf(line, sizeof line, "%s: %s", ctx->file, what);
  ctx->log(ctx->log_ud, level, line);
}

/* See internal.h. */
const char *gkp__cfg_quote(const char *s, char *buf, size_t len) {
  size_t n = 0;
  size_t i = 0;
  if (len < 8) {
    return "\"...\"";
  }
  buf[n++] = '"';
  for (; s[i] != '\0' && i < 64 && n + 5 < len; i++) {
    unsigned char c = (unsigned char)s[i];
    buf[n++] = (c < 0x20 || c == 0x7f || c == '"') ? '?' : (char)c;
  }
  if (s[i] != '\0') {
    memcpy(buf + n, "...", 3);
    n += 3;
  }
  buf[n++] = '"';
  buf[n] = '\0';
  return buf;
}

/* See internal.h. */
const char *gkp__json_type(const cJSON *item) {
  if (item == NULL) {
    return "nothing";
  }
  if (cJSON_IsString(item)) {
    return "a string";
  }
  if (cJSON_IsNumber(item)) {
    return "a number";
  }
  if (cJSON_IsBool(item)) {
    return cJSON_IsTrue(item) ? "true" : "false";
  }
  if (cJSON_IsNull(item)) {
    return "null";
  }
  if (cJSON_IsArray(item)) {
    return "an array";
  }
  if (cJSON_IsObject(item)) {
    return "an object";
  }
  return "something else";
}

/* See internal.h. */
int gkp__json_int(const gkp__cfg_ctx *ctx, const cJSON *item, const char *where, int64_t min,
                  int64_t max, int64_t *out) {
  const double exact = 9007199254740992.0; /* 2^53: larger doubles skip integers */
  char range[64];
  if (max >= (int64_t)exact) {
    snprintf(range, sizeof range, "a whole number of at least %lld", (long long)min);
  } else {
    snprintf(range, sizeof range, "a whole number from %lld to %lld", (long long)min,
             (long long)max);
  }
  if (!cJSON_IsNumber(item)) {
    return gkp__cfg_fail(ctx, -EINVAL, where, "expected %s, got %s; write it without quotes", range,
                         gkp__json_type(item));
  }
  double v = item->valuedouble;
  if (!(v > -exact && v < exact) || (double)(int64_t)v != v || (int64_t)v < min ||
      (int64_t)v > max) {
    return gkp__cfg_fail(ctx, -EINVAL, where, "expected %s, got %g; change the value", range, v);
  }
  *out = (int64_t)v;
  return 0;
}

/* See internal.h. */
const char *gkp__cfg_name_problem(const char *name) {
  size_t len = strlen(name);
  if (len == 0) {
    return "is empty";
  }
  if (len >= GKP_ID_MAX) {
    return "is longer than 63 characters";
  }
  if (name[0] == '.') {
    return "starts with '.'";
  }
  if (strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") != len) {
    return "has characters other than letters, digits, '.', '_' and '-'";
  }
  if (strcmp(name, "status") == 0 || strcmp(name, "README") == 0 || strcmp(name, "ctl") == 0) {
    return "is the name of one of the filesystem's own files";
  }
  return NULL;
}

/* See internal.h. */
const char *gkp__cfg_id_problem(const char *id) {
  size_t len = strlen(id);
  if (len == 0) {
    return "is empty";
  }
  if (len >= GKP_ID_MAX) {
    return "is longer than 63 characters";
  }
  if (strcmp(id, ".") == 0 || strcmp(id, "..") == 0) {
    return "is \".\" or \"..\"";
  }
  if (strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._@-") != len) {
    return "has characters other than letters, digits, '.', '_', '@' and '-'";
  }
  return NULL;
}

/* See internal.h. */
int gkp__cfg_has_blank(const char *s) {
  for (; *s != '\0'; s++) {
    if ((unsigned char)*s <= 0x20 || (unsigned char)*s == 0x7f) {
      return 1;
    }
  }
  return 0;
}

/* ---- JSON syntax -------------------------------------------------------- */

/* cJSON reports one past the offending character when a string fails (an
 * object key that is not a string, an unterminated string).  Moves pos back
 * in those cases, knowing whether pos-1 is in an object and outside strings. */
static size_t error_pos(const char *s, size_t start, size_t pos) {
  char stack[1100];
  size_t depth = 0;
  int in_string = 0;
  if (pos <= start) {
    return pos;
  }
  for (size_t i = start; i < pos - 1; i++) {
    char c = s[i];
    if (in_string) {
      if (c == '\\') {
        i++;
      } else if (c == '"') {
        in_string = 0;
      }
    } else if (c == '"') {
      in_string = 1;
    } else if ((c == '{' || c == '[') && depth < sizeof stack) {
      stack[depth++] = c;
    } else if ((c == '}' || c == ']') && depth > 0) {
      depth--;
    }
  }
  char c = s[pos - 1];
  if (in_string) {
    return pos;
  }
  if (c == '"') {
    return pos - 1; /* an opening quote: the string never ended */
  }
  if (depth == 0 || stack[depth - 1] != '{' || strchr(" \t\r\n[{", c) != NULL) {
    return pos;
  }
  size_t q = pos - 1;
  while (q > start && strchr(" \t\r\n", s[q - 1]) != NULL) {
    q--;
  }
  return (q > start && (s[q - 1] == '{' || s[q - 1] == ',')) ? pos - 1 : pos;
}

/* See internal.h.  Columns count characters, not bytes. */
int gkp__json_parse(const gkp__cfg_ctx *ctx, const char *json, size_t len, cJSON **out) {
  size_t start = (len >= 3 && memcmp(json, "\xEF\xBB\xBF", 3) == 0) ? 3 : 0;
  size_t i = start;
  while (i < len && strchr(" \t\r\n", json[i]) != NULL && json[i] != '\0') {
    i++;
  }
  if (i == len) {
    return gkp__cfg_fail(
        ctx, -EINVAL, NULL,
        "the file is empty; write a JSON object with \"providers\" in it (see keys.json.example)");
  }
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(json + start, len - start, &end, 0);
  size_t pos = end != NULL ? (size_t)(end - json) : start;
  const char *what = "invalid JSON";
  const char *fix = "check for a missing or extra comma, quote, colon or bracket there (JSON "
                    "allows no comments and no trailing commas)";
  if (root == NULL) {
    pos = error_pos(json, start, pos < len ? pos + 0 : len);
  } else {
    while (pos < len && strchr(" \t\r\n", json[pos]) != NULL && json[pos] != '\0') {
      pos++;
    }
    if (pos == len) {
      *out = root;
      return 0;
    }
    cJSON_Delete(root);
    what = "unexpected text after the end of the JSON document";
    fix = "remove it, or wrap everything in one { }";
  }
  if (pos < len && (json[pos] == '}' || json[pos] == ']')) {
    size_t q = pos;
    while (q > start && strchr(" \t\r\n", json[q - 1]) != NULL) {
      q--;
    }
    if (q > start && json[q - 1] == ',') {
      fix = "remove the trailing comma before it (JSON allows none)";
    }
  }
  size_t line = 1;
  size_t col = 1;
  for (size_t k = start; k < pos && k < len; k++) {
    if (json[k] == '\n') {
      line++;
      col = 1;
    } else if (((unsigned char)json[k] & 0xC0) != 0x80) {
      col++;
    }
  }
  char where[64];
  snprintf(where, sizeof where, "line %zu, column %zu", line, col);
  return gkp__cfg_fail(ctx, -EINVAL, where, "%s; %s", what, fix);
}

/* See internal.h. */
void gkp__json_wipe(cJSON *item) {
  for (; item != NULL; item = item->next) {
    if (item->valuestring != NULL) {
      explicit_bzero(item->valuestring, strlen(item->valuestring));
    }
    gkp__json_wipe(item->child);
  }
}
