/*
 * raw.c - what the runner needs to know of a raw Gemini request body: an
 * estimate of its input tokens.
 */
#include <cjson/cJSON.h>
#include <string.h>

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

int64_t gkp__raw_estimate_tokens_doc(const cJSON *root) {
  int64_t bytes = 0, files = 0;
  walk(root, &bytes, &files);
  return (bytes + 3) / 4 + files * GKP__GEMINI_TOKENS_PER_IMAGE;
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
