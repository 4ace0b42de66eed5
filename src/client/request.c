/*
 * request.c - generateContent request bodies and token estimates.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client/base64.h"
#include "client/gemini.h"
#include "common/err.h"

/* ---- small helpers ---------------------------------------------------------- */

const char *gkp__gemini_detect_mime(const void *data, size_t len) {
  const unsigned char *p = data;
  if (p == NULL) {
    return NULL;
  }
  if (len >= 8 && memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0) {
    return "image/png";
  }
  if (len >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF) {
    return "image/jpeg";
  }
  if (len >= 6 && (memcmp(p, "GIF87a", 6) == 0 || memcmp(p, "GIF89a", 6) == 0)) {
    return "image/gif";
  }
  if (len >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0) {
    return "image/webp";
  }
  if (len >= 12 && memcmp(p + 4, "ftyp", 4) == 0) {
    static const char *const heic[] = {"heic", "heix", "hevc", "hevx", "heim", "heis"};
    static const char *const heif[] = {"mif1", "msf1", "heif"};
    for (size_t i = 0; i < sizeof heic / sizeof heic[0]; i++) {
      if (memcmp(p + 8, heic[i], 4) == 0) {
        return "image/heic";
      }
    }
    for (size_t i = 0; i < sizeof heif / sizeof heif[0]; i++) {
      if (memcmp(p + 8, heif[i], 4) == 0) {
        return "image/heif";
      }
    }
  }
  if (len >= 5 && memcmp(p, "%PDF-", 5) == 0) {
    return "application/pdf";
  }
  return NULL;
}

int gkp__gemini_thinking_budget(int thinking) {
  switch (thinking) {
  case GKP__THINK_MINIMAL:
    return 0;
  case GKP__THINK_LOW:
    return 1024;
  case GKP__THINK_MEDIUM:
    return 8192;
  case GKP__THINK_HIGH:
    return 24576;
  default:
    return -1;
  }
}

const char *gkp__gemini_thinking_level_name(int thinking) {
  switch (thinking) {
  case GKP__THINK_MINIMAL:
    return "MINIMAL";
  case GKP__THINK_LOW:
    return "LOW";
  case GKP__THINK_MEDIUM:
    return "MEDIUM";
  case GKP__THINK_HIGH:
    return "HIGH";
  default:
    return NULL;
  }
}

int gkp__gemini_thinking_parse(const char *s) {
  if (s == NULL || s[0] == '\0') {
    return GKP__THINK_UNSET;
  }
  static const char *const names[] = {"minimal", "low", "medium", "high"};
  for (int i = 0; i < 4; i++) {
    if (strcasecmp(s, names[i]) == 0) {
      return GKP__THINK_MINIMAL + i;
    }
  }
  return -1;
}

/* Returns the offset of the first byte that is not valid UTF-8, or -1. */
static long utf8_invalid_at(const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  while (p[i] != '\0') {
    unsigned char c = p[i];
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      i++;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      cp = c & 0x07;
    } else {
      return (long)i;
    }
    for (size_t k = 1; k <= n; k++) {
      if ((p[i + k] & 0xC0) != 0x80) {
        return (long)i;
      }
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return (long)i; /* overlong, out of range, or a surrogate */
    }
    i += n + 1;
  }
  return -1;
}

static int check_text(const char *what, const char *s, gkp_error *err) {
  long bad = utf8_invalid_at(s);
  if (bad >= 0) {
    return gkp__err(err, -EINVAL,
                    "the %s is not valid UTF-8 text (bad byte at offset %ld); convert it to "
                    "UTF-8",
                    what, bad);
  }
  return 0;
}

/* Formats a byte count as "12.3 MiB" / "512 KiB" / "100 bytes". */
static void fmt_size(char *buf, size_t len, size_t n) {
  if (n >= 1024 * 1024) {
    snprintf(buf, len, "%.1f MiB", (double)n / (1024.0 * 1024.0));
  } else if (n >= 1024) {
    snprintf(buf, len, "%.1f KiB", (double)n / 1024.0);
  } else {
    snprintf(buf, len, "%zu bytes", n);
  }
}

/* ---- building ---------------------------------------------------------------- */

/* Base64 strings referenced (not copied) by the cJSON tree; freed after
 * printing. */
typedef struct b64_list {
  char **items;
  size_t n;
} b64_list;

static void b64_list_free(b64_list *l) {
  for (size_t i = 0; i < l->n; i++) {
    free(l->items[i]);
  }
  free(l->items);
}

/* Adds {"text": s} to parts. */
static int add_text_part(cJSON *parts, const char *s) {
  cJSON *part = cJSON_CreateObject();
  if (part == NULL || cJSON_AddStringToObject(part, "text", s) == NULL) {
    cJSON_Delete(part);
    return -ENOMEM;
  }
  cJSON_AddItemToArray(parts, part);
  return 0;
}

/* Adds {"inlineData":{"mimeType":M,"data":B64}} for image i. */
static int add_image_part(cJSON *parts, const gkp__gemini_image *img, size_t i, size_t limit,
                          b64_list *keep, gkp_error *err) {
  char a[32], b[32];
  if (img->data == NULL || img->len == 0) {
    return gkp__err(err, -EINVAL, "input file %zu is empty", i + 1);
  }
  if (img->len > limit) {
    fmt_size(a, sizeof a, img->len);
    fmt_size(b, sizeof b, limit);
    return gkp__err(err, -EFBIG,
                    "input file %zu is %s, over the %s limit for inline files; make it smaller",
                    i + 1, a, b);
  }
  const char *mime = gkp__gemini_detect_mime(img->data, img->len);
  if (mime == NULL) {
    return gkp__err(err, -ENOTSUP,
                    "input file %zu is not a PNG, JPEG, GIF, WEBP, HEIC/HEIF image or a PDF "
                    "(unknown signature in its first bytes)",
                    i + 1);
  }
  size_t n = gkp__base64_encoded_len(img->len);
  char **items = realloc(keep->items, (keep->n + 1) * sizeof *items);
  if (items == NULL) {
    return gkp__err(err, -ENOMEM, "out of memory encoding input file %zu", i + 1);
  }
  keep->items = items;
  char *b64 = malloc(n + 1);
  if (b64 == NULL) {
    return gkp__err(err, -ENOMEM, "out of memory encoding input file %zu", i + 1);
  }
  keep->items[keep->n++] = b64;
  gkp__base64_encode(img->data, img->len, b64);
  cJSON *part = cJSON_CreateObject();
  cJSON *inl = cJSON_AddObjectToObject(part, "inlineData");
  cJSON *data = cJSON_CreateStringReference(b64);
  if (part == NULL || inl == NULL || data == NULL ||
      cJSON_AddStringToObject(inl, "mimeType", mime) == NULL) {
    cJSON_Delete(part);
    cJSON_Delete(data);
    return gkp__err(err, -ENOMEM, "out of memory encoding input file %zu", i + 1);
  }
  cJSON_AddItemToObject(inl, "data", data);
  cJSON_AddItemToArray(parts, part);
  return 0;
}

/* Adds "contents":[{"role":"user","parts":[...]}] to root. */
static int add_contents(cJSON *root, const gkp__gemini_request *req, b64_list *keep,
                        gkp_error *err) {
  cJSON *contents = cJSON_AddArrayToObject(root, "contents");
  cJSON *content = cJSON_CreateObject();
  if (contents == NULL || content == NULL) {
    cJSON_Delete(content);
    return gkp__err(err, -ENOMEM, "out of memory building the request");
  }
  cJSON_AddItemToArray(contents, content);
  if (cJSON_AddStringToObject(content, "role", "user") == NULL) {
    return gkp__err(err, -ENOMEM, "out of memory building the request");
  }
  cJSON *parts = cJSON_AddArrayToObject(content, "parts");
  if (parts == NULL) {
    return gkp__err(err, -ENOMEM, "out of memory building the request");
  }
  if (req->text[0] != '\0' && add_text_part(parts, req->text) < 0) {
    return gkp__err(err, -ENOMEM, "out of memory building the request");
  }
  if (req->context != NULL && req->context[0] != '\0' && add_text_part(parts, req->context) < 0) {
    return gkp__err(err, -ENOMEM, "out of memory building the request");
  }
  size_t limit = req->max_image_bytes ? req->max_image_bytes : GKP__GEMINI_MAX_IMAGE;
  for (size_t i = 0; i < req->nimages; i++) {
    int rc = add_image_part(parts, &req->images[i], i, limit, keep, err);
    if (rc < 0) {
      return rc;
    }
  }
  return 0;
}

/* Adds "thinkingConfig" to the generation config, when there is one. */
static int add_thinking(cJSON *gc, const gkp__gemini_request *req) {
  if (req->thinking_style == GKP__THINKING_STYLE_NONE) {
    return 0;
  }
  if (req->thinking == GKP__THINK_UNSET && !req->include_thoughts) {
    return 0;
  }
  cJSON *tc = cJSON_AddObjectToObject(gc, "thinkingConfig");
  if (tc == NULL) {
    return -ENOMEM;
  }
  if (req->thinking != GKP__THINK_UNSET) {
    if (req->thinking_style == GKP__THINKING_STYLE_LEVEL) {
      if (cJSON_AddStringToObject(tc, "thinkingLevel",
                                  gkp__gemini_thinking_level_name(req->thinking)) == NULL) {
        return -ENOMEM;
      }
    } else if (cJSON_AddNumberToObject(tc, "thinkingBudget",
                                       gkp__gemini_thinking_budget(req->thinking)) == NULL) {
      return -ENOMEM;
    }
  }
  if (req->include_thoughts && cJSON_AddTrueToObject(tc, "includeThoughts") == NULL) {
    return -ENOMEM;
  }
  return 0;
}

/* Adds "generationConfig" when any of its settings is given. */
static int add_generation_config(cJSON *root, const gkp__gemini_request *req) {
  int thinking = req->thinking_style != GKP__THINKING_STYLE_NONE &&
                 (req->thinking != GKP__THINK_UNSET || req->include_thoughts);
  if (req->temperature < 0 && req->max_output_tokens <= 0 && !req->image_output && !thinking) {
    return 0;
  }
  cJSON *gc = cJSON_AddObjectToObject(root, "generationConfig");
  if (gc == NULL) {
    return -ENOMEM;
  }
  if (req->temperature >= 0 &&
      cJSON_AddNumberToObject(gc, "temperature", req->temperature) == NULL) {
    return -ENOMEM;
  }
  if (req->max_output_tokens > 0 &&
      cJSON_AddNumberToObject(gc, "maxOutputTokens", (double)req->max_output_tokens) == NULL) {
    return -ENOMEM;
  }
  if (req->image_output) {
    const char *mods[] = {"TEXT", "IMAGE"};
    cJSON *m = cJSON_CreateStringArray(mods, 2);
    if (m == NULL) {
      return -ENOMEM;
    }
    cJSON_AddItemToObject(gc, "responseModalities", m);
  }
  return add_thinking(gc, req);
}

/* Adds "systemInstruction" and "tools". */
static int add_system_and_tools(cJSON *root, const gkp__gemini_request *req) {
  if (req->system != NULL && req->system[0] != '\0') {
    cJSON *si = cJSON_AddObjectToObject(root, "systemInstruction");
    cJSON *parts = si ? cJSON_AddArrayToObject(si, "parts") : NULL;
    if (parts == NULL || add_text_part(parts, req->system) < 0 ||
        cJSON_AddStringToObject(si, "role", "user") == NULL) {
      return -ENOMEM;
    }
  }
  if (req->tools != 0) {
    static const struct {
      unsigned bit;
      const char *name;
    } tools[] = {{GKP__TOOL_GOOGLE_SEARCH, "googleSearch"},
                 {GKP__TOOL_CODE_EXECUTION, "codeExecution"},
                 {GKP__TOOL_URL_CONTEXT, "urlContext"}};
    cJSON *arr = cJSON_AddArrayToObject(root, "tools");
    if (arr == NULL) {
      return -ENOMEM;
    }
    for (size_t i = 0; i < sizeof tools / sizeof tools[0]; i++) {
      if (!(req->tools & tools[i].bit)) {
        continue;
      }
      cJSON *t = cJSON_CreateObject();
      if (t == NULL || cJSON_AddObjectToObject(t, tools[i].name) == NULL) {
        cJSON_Delete(t);
        return -ENOMEM;
      }
      cJSON_AddItemToArray(arr, t);
    }
  }
  return 0;
}

/* Checks what does not depend on the files. */
static int check_request(const gkp__gemini_request *req, gkp_error *err) {
  if (req == NULL || req->text == NULL) {
    return gkp__err(err, -EINVAL, "the request has no task text");
  }
  if (req->text[0] == '\0' && (req->context == NULL || req->context[0] == '\0') &&
      req->nimages == 0) {
    return gkp__err(err, -EINVAL, "the request is empty: give a task text");
  }
  if (req->nimages > 0 && req->images == NULL) {
    return gkp__err(err, -EINVAL, "the request names input files but has none");
  }
  if (req->thinking_style < GKP__THINKING_STYLE_NONE ||
      req->thinking_style > GKP__THINKING_STYLE_LEVEL) {
    return gkp__err(err, -EINVAL, "unknown thinking style %d", req->thinking_style);
  }
  if (req->thinking < GKP__THINK_UNSET || req->thinking > GKP__THINK_HIGH) {
    return gkp__err(err, -EINVAL, "unknown thinking level %d (use minimal, low, medium or high)",
                    req->thinking);
  }
  if (req->tools &
      ~(unsigned)(GKP__TOOL_GOOGLE_SEARCH | GKP__TOOL_CODE_EXECUTION | GKP__TOOL_URL_CONTEXT)) {
    return gkp__err(err, -EINVAL, "unknown tool bits 0x%x", req->tools);
  }
  int rc = check_text("task text", req->text, err);
  if (rc == 0 && req->context != NULL) {
    rc = check_text("context", req->context, err);
  }
  if (rc == 0 && req->system != NULL) {
    rc = check_text("system instruction", req->system, err);
  }
  return rc;
}

/* Prints the tree to *out; frees nothing. */
static int print_body(cJSON *root, char **out, size_t *out_len, gkp_error *err) {
  char *s = cJSON_PrintUnformatted(root);
  if (s == NULL) {
    return gkp__err(err, -ENOMEM, "out of memory building the request");
  }
  *out = s;
  if (out_len != NULL) {
    *out_len = strlen(s);
  }
  return 0;
}

/* Builds the body: the contents always, the system instruction, tools and
 * generation config only for a generation (`full`), not for countTokens. */
static int build(const gkp__gemini_request *req, int full, char **out, size_t *out_len,
                 gkp_error *err) {
  *out = NULL;
  int rc = check_request(req, err);
  if (rc < 0) {
    return rc;
  }
  b64_list keep = {0};
  cJSON *root = cJSON_CreateObject();
  if (root == NULL) {
    return gkp__err(err, -ENOMEM, "out of memory building the request");
  }
  rc = add_contents(root, req, &keep, err);
  if (rc == 0 && full &&
      (add_system_and_tools(root, req) < 0 || add_generation_config(root, req) < 0)) {
    rc = gkp__err(err, -ENOMEM, "out of memory building the request");
  }
  if (rc == 0) {
    rc = print_body(root, out, out_len, err);
  }
  cJSON_Delete(root);
  b64_list_free(&keep);
  return rc;
}

int gkp__gemini_build_body(const gkp__gemini_request *req, char **out, size_t *out_len,
                           gkp_error *err) {
  return build(req, 1, out, out_len, err);
}

int gkp__gemini_build_count_body(const gkp__gemini_request *req, char **out, size_t *out_len,
                                 gkp_error *err) {
  return build(req, 0, out, out_len, err);
}

int64_t gkp__gemini_estimate_tokens(const gkp__gemini_request *req) {
  uint64_t bytes = 0;
  if (req->text != NULL) {
    bytes += strlen(req->text);
  }
  if (req->context != NULL) {
    bytes += strlen(req->context);
  }
  if (req->system != NULL) {
    bytes += strlen(req->system);
  }
  return (int64_t)((bytes + 3) / 4) + (int64_t)req->nimages * GKP__GEMINI_TOKENS_PER_IMAGE;
}
