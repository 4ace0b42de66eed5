/*
 * raw.c - what the runner needs to know of a raw Gemini request body: an
 * estimate of its input tokens.
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "common/dynbuf.h"

#include "client/gemini.h"
#include "runner/runner.h"

/* Adds up the bytes of every "text" string and counts inline files. */
static void walk(const cJSON *node, int64_t *bytes, int64_t *files) {
  const cJSON *child;
  cJSON_ArrayForEach(child, node) {
    if (child->string != NULL && strcmp(child->string, "text") == 0 && cJSON_IsString(child)) {
      *bytes += (int64_t)strlen(child->valuestring);
    } else if (child->string != NULL && (strcmp(child->string, "inlineData") == 0 ||
                                         strcmp(child->string, "inline_data") == 0)) {
      (*files)++;
    } else if (cJSON_IsObject(child) || cJSON_IsArray(child)) {
      walk(child, bytes, files);
    }
  }
}

int64_t gkp__raw_estimate_tokens(const char *body, size_t len) {
  int64_t bytes = 0, files = 0;
  cJSON *root = cJSON_ParseWithLength(body, len);
  if (root == NULL) {
    return (int64_t)(len + 3) / 4;
  }
  walk(root, &bytes, &files);
  cJSON_Delete(root);
  return (bytes + 3) / 4 + files * GKP__GEMINI_TOKENS_PER_IMAGE;
}

/* Appends every "text" string under node to b; notes inline files. */
static void texts(const cJSON *node, gkp__dynbuf *b, int *files) {
  const cJSON *child;
  cJSON_ArrayForEach(child, node) {
    if (child->string != NULL && strcmp(child->string, "text") == 0 && cJSON_IsString(child)) {
      gkp__dynbuf_printf(b, "%s%s", gkp__dynbuf_len(b) > 0 ? "\n" : "", child->valuestring);
    } else if (child->string != NULL && (strcmp(child->string, "inlineData") == 0 ||
                                         strcmp(child->string, "inline_data") == 0)) {
      *files = 1;
    } else if (cJSON_IsObject(child) || cJSON_IsArray(child)) {
      texts(child, b, files);
    }
  }
}

char *gkp__raw_task_text(const char *body, size_t len, int *has_image) {
  gkp__dynbuf b;
  char *out = NULL;
  *has_image = 0;
  cJSON *root = cJSON_ParseWithLength(body, len);
  const cJSON *contents = cJSON_GetObjectItemCaseSensitive(root, "contents");
  if (contents == NULL) {
    cJSON_Delete(root);
    return NULL;
  }
  gkp__dynbuf_init(&b, (size_t)1 << 20);
  texts(contents, &b, has_image);
  if (gkp__dynbuf_len(&b) > 0) {
    out = strdup(gkp__dynbuf_ptr(&b));
  }
  gkp__dynbuf_reset(&b);
  cJSON_Delete(root);
  return out;
}
