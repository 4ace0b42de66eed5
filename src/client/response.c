/*
 * response.c - GenerateContentResponse parsing and judging.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/base64.h"
#include "client/gemini.h"
#include "common/dynbuf.h"
#include "common/err.h"

void gkp__gemini_state_init(gkp__gemini_state *st) {
  memset(st, 0, sizeof *st);
  st->usage.prompt = -1;
  st->usage.candidates = -1;
  st->usage.thoughts = -1;
  st->usage.cached = -1;
  st->usage.tool_use = -1;
  st->usage.total = -1;
}

/* Copies a JSON string member into buf (truncated), if present. */
static void copy_str(const cJSON *obj, const char *name, char *buf, size_t len) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
  if (cJSON_IsString(v) && v->valuestring != NULL) {
    snprintf(buf, len, "%s", v->valuestring);
  }
}

/* A JSON integer member, or -1. */
static int64_t get_int(const cJSON *obj, const char *name) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
  if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 9.0e15) {
    return -1;
  }
  return (int64_t)v->valuedouble;
}

/* Copies a message on one line, shortened with "..." when too long. */
static void copy_message(char *buf, size_t len, const char *s) {
  size_t j = 0;
  for (size_t i = 0; s[i] != '\0' && j + 1 < len; i++) {
    char c = s[i];
    buf[j++] = (c == '\n' || c == '\r' || c == '\t') ? ' ' : c;
  }
  buf[j] = '\0';
  if (s[j] != '\0' && len >= 4) {
    memcpy(buf + len - 4, "...", 4);
  }
}

/* Reads an {"error":{...}} envelope into the state. */
static void read_error(const cJSON *e, gkp__gemini_state *st) {
  st->is_error = 1;
  int64_t code = get_int(e, "code");
  st->error_code = code > 0 && code < 1000 ? (int)code : 0;
  copy_str(e, "status", st->error_status, sizeof st->error_status);
  const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
  if (cJSON_IsString(m) && m->valuestring != NULL) {
    copy_message(st->error_message, sizeof st->error_message, m->valuestring);
  }
}

static void read_usage(const cJSON *u, gkp__gemini_state *st) {
  st->has_usage = 1;
  st->usage_updates++;
  st->usage.prompt = get_int(u, "promptTokenCount");
  st->usage.candidates = get_int(u, "candidatesTokenCount");
  st->usage.thoughts = get_int(u, "thoughtsTokenCount");
  st->usage.cached = get_int(u, "cachedContentTokenCount");
  st->usage.tool_use = get_int(u, "toolUsePromptTokenCount");
  st->usage.total = get_int(u, "totalTokenCount");
}

/* Delivers text to the sink and counts it. */
static int emit_text(const gkp__gemini_sink *sink, void *ud, gkp__gemini_state *st, const char *s,
                     size_t len, int thought) {
  if (thought) {
    st->thought_bytes += len;
  } else {
    st->text_bytes += len;
  }
  if (sink != NULL && sink->on_text != NULL && len > 0) {
    return sink->on_text(ud, s, len, thought);
  }
  return 0;
}

/* Renders a code part as a Markdown block: "\n```LANG\nBODY\n```\n". */
static int emit_code(const gkp__gemini_sink *sink, void *ud, gkp__gemini_state *st,
                     const char *lang, const char *body, int thought) {
  gkp__dynbuf b;
  gkp__dynbuf_init(&b, (size_t)64 * 1024 * 1024);
  int rc = gkp__dynbuf_printf(&b, "\n```%s\n%s%s```\n", lang, body,
                              (body[0] != '\0' && body[strlen(body) - 1] != '\n') ? "\n" : "");
  if (rc == 0) {
    rc = emit_text(sink, ud, st, gkp__dynbuf_ptr(&b), gkp__dynbuf_len(&b), thought);
  }
  gkp__dynbuf_reset(&b);
  return rc;
}

/* Decodes an inlineData part and delivers it. */
static int emit_image(const gkp__gemini_sink *sink, void *ud, gkp__gemini_state *st,
                      const cJSON *inl, int thought, gkp_error *err) {
  const cJSON *mime = cJSON_GetObjectItemCaseSensitive(inl, "mimeType");
  const cJSON *data = cJSON_GetObjectItemCaseSensitive(inl, "data");
  if (!cJSON_IsString(data) || data->valuestring == NULL) {
    return gkp__err(err, -EBADMSG, "an inlineData part has no data");
  }
  unsigned char *bytes = NULL;
  size_t n = 0;
  int rc = gkp__base64_decode(data->valuestring, strlen(data->valuestring), &bytes, &n);
  if (rc == -EINVAL) {
    return gkp__err(err, -EBADMSG, "an inlineData part is not valid base64");
  }
  if (rc < 0) {
    return gkp__err(err, rc, "out of memory decoding an image");
  }
  if (!thought) {
    st->images++;
  }
  const char *m =
      cJSON_IsString(mime) && mime->valuestring ? mime->valuestring : "application/octet-stream";
  if (sink != NULL && sink->on_image != NULL) {
    rc = sink->on_image(ud, m, bytes, n, thought);
  }
  free(bytes);
  return rc;
}

/* Delivers the parts of candidates[0].content in order. */
static int read_parts(const cJSON *parts, const gkp__gemini_sink *sink, void *ud,
                      gkp__gemini_state *st, gkp_error *err) {
  const cJSON *part;
  cJSON_ArrayForEach(part, parts) {
    int thought = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(part, "thought"));
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
    const cJSON *inl = cJSON_GetObjectItemCaseSensitive(part, "inlineData");
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(part, "executableCode");
    const cJSON *result = cJSON_GetObjectItemCaseSensitive(part, "codeExecutionResult");
    int rc = 0;
    if (cJSON_IsString(text) && text->valuestring != NULL) {
      rc = emit_text(sink, ud, st, text->valuestring, strlen(text->valuestring), thought);
    } else if (cJSON_IsObject(inl)) {
      rc = emit_image(sink, ud, st, inl, thought, err);
    } else if (cJSON_IsObject(code)) {
      const cJSON *lang = cJSON_GetObjectItemCaseSensitive(code, "language");
      const cJSON *body = cJSON_GetObjectItemCaseSensitive(code, "code");
      char l[32] = "";
      if (cJSON_IsString(lang) && lang->valuestring != NULL) {
        for (size_t i = 0; lang->valuestring[i] != '\0' && i + 1 < sizeof l; i++) {
          char c = lang->valuestring[i];
          l[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
          l[i + 1] = '\0';
        }
        if (strcmp(l, "language_unspecified") == 0) {
          l[0] = '\0';
        }
      }
      if (cJSON_IsString(body) && body->valuestring != NULL) {
        rc = emit_code(sink, ud, st, l, body->valuestring, thought);
      }
    } else if (cJSON_IsObject(result)) {
      const cJSON *output = cJSON_GetObjectItemCaseSensitive(result, "output");
      if (cJSON_IsString(output) && output->valuestring != NULL && output->valuestring[0] != '\0') {
        rc = emit_code(sink, ud, st, "", output->valuestring, thought);
      }
    }
    if (rc != 0) {
      return rc;
    }
  }
  return 0;
}

/* Reads one response object (or error envelope). */
static int read_response(const cJSON *obj, const gkp__gemini_sink *sink, void *ud,
                         gkp__gemini_state *st, gkp_error *err) {
  if (!cJSON_IsObject(obj)) {
    return gkp__err(err, -EBADMSG, "the answer is not a JSON object");
  }
  const cJSON *e = cJSON_GetObjectItemCaseSensitive(obj, "error");
  if (cJSON_IsObject(e)) {
    read_error(e, st);
    return 0;
  }
  st->responses++;
  copy_str(obj, "modelVersion", st->model_version, sizeof st->model_version);
  copy_str(obj, "responseId", st->response_id, sizeof st->response_id);
  const cJSON *pf = cJSON_GetObjectItemCaseSensitive(obj, "promptFeedback");
  if (cJSON_IsObject(pf)) {
    copy_str(pf, "blockReason", st->block_reason, sizeof st->block_reason);
  }
  const cJSON *cands = cJSON_GetObjectItemCaseSensitive(obj, "candidates");
  const cJSON *c0 = cJSON_IsArray(cands) ? cJSON_GetArrayItem(cands, 0) : NULL;
  if (cJSON_IsObject(c0)) {
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(c0, "content");
    const cJSON *parts = cJSON_GetObjectItemCaseSensitive(content, "parts");
    if (cJSON_IsArray(parts)) {
      int rc = read_parts(parts, sink, ud, st, err);
      if (rc != 0) {
        return rc;
      }
    }
    copy_str(c0, "finishReason", st->finish_reason, sizeof st->finish_reason);
  }
  const cJSON *usage = cJSON_GetObjectItemCaseSensitive(obj, "usageMetadata");
  if (cJSON_IsObject(usage)) {
    read_usage(usage, st);
  }
  return 0;
}

int gkp__gemini_parse(const char *json, size_t len, const gkp__gemini_sink *sink, void *ud,
                      gkp__gemini_state *st, gkp_error *err) {
  cJSON *root = cJSON_ParseWithLength(json, len);
  if (root == NULL) {
    return gkp__err(err, -EBADMSG, "the answer is not valid JSON");
  }
  int rc = 0;
  if (cJSON_IsArray(root)) {
    const cJSON *item;
    cJSON_ArrayForEach(item, root) {
      rc = read_response(item, sink, ud, st, err);
      if (rc != 0 || st->is_error) {
        break;
      }
    }
  } else {
    rc = read_response(root, sink, ud, st, err);
  }
  cJSON_Delete(root);
  return rc;
}

/* What a finishReason means, as the end of a sentence; NULL if unknown. */
static const char *finish_text(const char *r) {
  static const struct {
    const char *reason;
    const char *text;
  } table[] = {
      {"SAFETY", "the answer was blocked by Google's safety filter"},
      {"RECITATION", "the answer was stopped because it recited protected material"},
      {"PROHIBITED_CONTENT", "the answer was blocked for prohibited content"},
      {"BLOCKLIST", "the answer was blocked because it contained blocklisted terms"},
      {"SPII", "the answer was blocked because it contained sensitive personal information"},
      {"IMAGE_SAFETY", "the image was blocked by Google's safety filter"},
      {"IMAGE_PROHIBITED_CONTENT", "the image was blocked for prohibited content"},
      {"IMAGE_RECITATION", "the image was stopped because it recited protected material"},
      {"NO_IMAGE", "the model produced no image"},
      {"LANGUAGE", "the answer was stopped: the language is not supported"},
      {"MALFORMED_FUNCTION_CALL", "the model produced a malformed function call"},
      {"UNEXPECTED_TOOL_CALL", "the model made an unexpected tool call"},
      {"TOO_MANY_TOOL_CALLS", "the model made too many tool calls"},
  };
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
    if (strcmp(r, table[i].reason) == 0) {
      return table[i].text;
    }
  }
  return NULL;
}

int gkp__gemini_judge(const gkp__gemini_state *st, char *msg, size_t len) {
  msg[0] = '\0';
  if (st->block_reason[0] != '\0') {
    if (strcmp(st->block_reason, "SAFETY") == 0) {
      snprintf(msg, len, "the prompt was blocked by Google's safety filter (blockReason SAFETY)");
    } else {
      snprintf(msg, len, "the prompt was blocked (blockReason %s)", st->block_reason);
    }
    return GKP__JUDGE_CONTENT;
  }
  const char *fr = st->finish_reason;
  if (fr[0] == '\0') {
    snprintf(msg, len, "the answer ended without a finishReason (truncated)");
    return GKP__JUDGE_TRUNCATED;
  }
  if (strcmp(fr, "STOP") == 0 || strcmp(fr, "FINISH_REASON_UNSPECIFIED") == 0) {
    return GKP__JUDGE_OK;
  }
  if (strcmp(fr, "MAX_TOKENS") == 0) {
    snprintf(msg, len, "the answer was cut at maxOutputTokens (finishReason MAX_TOKENS)");
    return GKP__JUDGE_OK;
  }
  const char *t = finish_text(fr);
  if (t != NULL) {
    snprintf(msg, len, "%s (finishReason %s)", t, fr);
  } else {
    snprintf(msg, len, "the answer ended abnormally (finishReason %s)", fr);
  }
  return GKP__JUDGE_CONTENT;
}
