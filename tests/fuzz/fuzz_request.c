/*
 * fuzz_request.c - prompt text, context, system instruction and an input
 * file through gkp__gemini_build_body.
 *
 * Input: one byte of settings (tools, thinking, image output, temperature),
 * then the task text, context, system instruction and file, separated by
 * NUL bytes (missing parts are absent).  A body that builds must be valid
 * JSON that gives back every text and the file byte for byte; one that does
 * not build must say why in one line.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client/base64.h"
#include "client/gemini.h"
#include "fuzz.h"

/* Splits off the next NUL-terminated part: a malloc'd copy, or NULL when
 * the input has ended. */
static char *next_part(const uint8_t **p, const uint8_t *end, size_t *len) {
  if (*p >= end) {
    return NULL;
  }
  const uint8_t *nul = memchr(*p, '\0', (size_t)(end - *p));
  size_t n = (size_t)((nul != NULL ? nul : end) - *p);
  char *s = malloc(n + 1);
  FUZZ_CHECK(s != NULL);
  memcpy(s, *p, n);
  s[n] = '\0';
  *len = n;
  *p += n + (nul != NULL ? 1 : 0);
  return s;
}

/* The text of parts[i] of a content object, or NULL. */
static const char *part_text(const cJSON *content, int i) {
  const cJSON *parts = cJSON_GetObjectItemCaseSensitive(content, "parts");
  const cJSON *t = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(parts, i), "text");
  return cJSON_IsString(t) ? t->valuestring : NULL;
}

/* Checks that body holds req's contents (and its system instruction when
 * with_system: countTokens bodies have none). */
static void check_body(const gkp__gemini_request *req, const char *body, size_t len,
                       const uint8_t *file, size_t file_len, int with_system) {
  FUZZ_CHECK(body != NULL && strlen(body) == len);
  cJSON *root = cJSON_ParseWithLength(body, len);
  FUZZ_CHECK(root != NULL);
  const cJSON *content = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "contents"), 0);
  int i = 0;
  if (req->text[0] != '\0') {
    FUZZ_CHECK(part_text(content, i) != NULL && strcmp(part_text(content, i), req->text) == 0);
    i++;
  }
  if (req->context != NULL && req->context[0] != '\0') {
    FUZZ_CHECK(part_text(content, i) != NULL && strcmp(part_text(content, i), req->context) == 0);
    i++;
  }
  if (req->nimages > 0) {
    const cJSON *part = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(content, "parts"), i);
    const cJSON *inl = cJSON_GetObjectItemCaseSensitive(part, "inlineData");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(inl, "data");
    FUZZ_CHECK(cJSON_IsString(data));
    unsigned char *back = NULL;
    size_t back_len = 0;
    FUZZ_CHECK(gkp__base64_decode(data->valuestring, strlen(data->valuestring), &back, &back_len) ==
               0);
    FUZZ_CHECK(back_len == file_len && memcmp(back, file, file_len) == 0);
    free(back);
  }
  if (with_system && req->system != NULL && req->system[0] != '\0') {
    const cJSON *si = cJSON_GetObjectItemCaseSensitive(root, "systemInstruction");
    FUZZ_CHECK(part_text(si, 0) != NULL && strcmp(part_text(si, 0), req->system) == 0);
  }
  cJSON_Delete(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  gkp__gemini_request req;
  gkp__gemini_image img;
  gkp_error err;
  size_t text_len = 0, context_len = 0, system_len = 0, file_len = 0;
  if (size < 1) {
    return 0;
  }
  const uint8_t *p = data + 1, *end = data + size;
  unsigned settings = data[0];
  char *text = next_part(&p, end, &text_len);
  char *context = next_part(&p, end, &context_len);
  char *system = next_part(&p, end, &system_len);
  /* The file is the rest, NUL bytes and all. */
  uint8_t *file = NULL;
  if (p < end) {
    file_len = (size_t)(end - p);
    file = malloc(file_len);
    FUZZ_CHECK(file != NULL);
    memcpy(file, p, file_len);
  }

  memset(&req, 0, sizeof req);
  memset(&err, 0, sizeof err);
  req.text = text != NULL ? text : "";
  req.context = context;
  req.system = system;
  if (file != NULL) {
    img.data = file;
    img.len = file_len;
    req.images = &img;
    req.nimages = 1;
    req.max_image_bytes = 4096;
  }
  req.tools = settings & 7;
  req.thinking_style = (int)((settings >> 3) % 3) - 1;
  req.thinking = (int)((settings >> 5) % 5);
  req.include_thoughts = (settings >> 5) == 7;
  req.image_output = (settings & 0x80) != 0;
  req.temperature = (settings & 0x40) ? (double)(settings & 7) / 4.0 : -1.0;
  req.max_output_tokens = (settings & 0x20) ? settings * 16 : 0;

  char *body = NULL;
  size_t len = 0;
  int rc = gkp__gemini_build_body(&req, &body, &len, &err);
  if (rc == 0) {
    check_body(&req, body, len, file, file_len, 1);
  } else {
    FUZZ_CHECK(rc == -EINVAL || rc == -ENOTSUP || rc == -EFBIG || rc == -ENOMEM);
    FUZZ_CHECK(body == NULL && err.msg[0] != '\0' && strchr(err.msg, '\n') == NULL);
  }
  free(body);

  /* The countTokens body holds the same contents and fails the same way. */
  body = NULL;
  int rc2 = gkp__gemini_build_count_body(&req, &body, &len, NULL);
  FUZZ_CHECK(rc2 == rc);
  if (rc2 == 0) {
    check_body(&req, body, len, file, file_len, 0);
  }
  free(body);
  FUZZ_CHECK(gkp__gemini_estimate_tokens(&req) >= 0);

  free(text);
  free(context);
  free(system);
  free(file);
  return 0;
}
