/*
 * openai.c - the OpenAI-compatible API translated to and from Gemini's:
 * chat.completions (streamed and not, tools, images as data URLs,
 * response_format) to generateContent; embeddings to batchEmbedContents.
 * Pure functions over JSON text (cJSON); routes.c runs the result through
 * the pool like any Gemini request.
 */
#include <cjson/cJSON.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/base64.h"
#include "http/front_impl.h"

/* ---- requests ------------------------------------------------------------------ */

/* An error message naming a value of the request: at most 64 bytes of it,
 * control characters shown as '?', so the message stays one line. */
static int fail(char *msg, size_t len, int code, const char *fmt, const char *arg) {
  char shown[65];
  size_t n = 0;
  for (const char *p = arg != NULL ? arg : ""; *p != '\0' && n < sizeof shown - 1; p++) {
    shown[n++] = (unsigned char)*p < 0x20 || *p == 0x7f ? '?' : *p;
  }
  shown[n] = '\0';
  snprintf(msg, len, fmt, shown);
  return code;
}

/* A message's content as text: a string, or the text parts of an array
 * joined by newlines (one pass to size it, one to copy: linear). */
static char *content_text(const cJSON *content) {
  if (cJSON_IsString(content)) {
    return strdup(content->valuestring);
  }
  size_t n = 0;
  const cJSON *p;
  cJSON_ArrayForEach(p, content) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "text");
    n += cJSON_IsString(t) ? strlen(t->valuestring) + 1 : 0;
  }
  char *out = malloc(n + 1), *end = out;
  if (out == NULL) {
    return NULL;
  }
  cJSON_ArrayForEach(p, content) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "text");
    if (cJSON_IsString(t)) {
      size_t len = strlen(t->valuestring);
      if (end != out) {
        *end++ = '\n';
      }
      memcpy(end, t->valuestring, len);
      end += len;
    }
  }
  *end = '\0';
  return out;
}

/* "data:image/png;base64,XXXX" -> {"inlineData":{"mimeType":..,"data":..}}. */
static cJSON *image_part(const char *url, char *msg, size_t len) {
  const char *semi = strstr(url, ";base64,");
  if (strncmp(url, "data:", 5) != 0 || semi == NULL || semi - url - 5 <= 0 ||
      semi - url - 5 > 100) {
    fail(msg, len, 400,
         "image_url must be a data URL (data:image/png;base64,...); the pool "
         "does not fetch URLs",
         NULL);
    return NULL;
  }
  char mime[128];
  snprintf(mime, sizeof mime, "%.*s", (int)(semi - url - 5), url + 5);
  cJSON *part = cJSON_CreateObject(), *inl = cJSON_AddObjectToObject(part, "inlineData");
  cJSON_AddStringToObject(inl, "mimeType", mime);
  cJSON_AddStringToObject(inl, "data", semi + 8);
  return part;
}

/* A user message's content -> Gemini parts. */
static int user_parts(const cJSON *content, cJSON *parts, char *msg, size_t len) {
  if (cJSON_IsString(content)) {
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "text", content->valuestring);
    cJSON_AddItemToArray(parts, p);
    return 0;
  }
  if (!cJSON_IsArray(content)) {
    return fail(msg, len, 400, "messages[].content must be a string or a list of parts", NULL);
  }
  const cJSON *it;
  cJSON_ArrayForEach(it, content) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(it, "type");
    const char *ty = cJSON_IsString(type) ? type->valuestring : "";
    if (strcmp(ty, "text") == 0) {
      const cJSON *t = cJSON_GetObjectItemCaseSensitive(it, "text");
      cJSON *p = cJSON_CreateObject();
      cJSON_AddStringToObject(p, "text", cJSON_IsString(t) ? t->valuestring : "");
      cJSON_AddItemToArray(parts, p);
    } else if (strcmp(ty, "image_url") == 0) {
      const cJSON *iu = cJSON_GetObjectItemCaseSensitive(it, "image_url");
      const cJSON *url = cJSON_IsString(iu) ? iu : cJSON_GetObjectItemCaseSensitive(iu, "url");
      cJSON *p = cJSON_IsString(url) ? image_part(url->valuestring, msg, len) : NULL;
      if (p == NULL) {
        return cJSON_IsString(url) ? 400 : fail(msg, len, 400, "image_url needs a url", NULL);
      }
      cJSON_AddItemToArray(parts, p);
    } else {
      return fail(msg, len, 400, "unsupported content part type '%s' (text, image_url)", ty);
    }
  }
  return 0;
}

/* An assistant message -> a "model" content (text and functionCall parts). */
static int assistant_parts(const cJSON *m, cJSON *parts, char *msg, size_t len) {
  char *text = content_text(cJSON_GetObjectItemCaseSensitive(m, "content"));
  if (text != NULL && text[0] != '\0') {
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "text", text);
    cJSON_AddItemToArray(parts, p);
  }
  free(text);
  const cJSON *tc;
  cJSON_ArrayForEach(tc, cJSON_GetObjectItemCaseSensitive(m, "tool_calls")) {
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(tc, "function");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
    if (!cJSON_IsString(name)) {
      return fail(msg, len, 400, "tool_calls[].function.name is missing", NULL);
    }
    cJSON *parsed = cJSON_IsString(args) ? cJSON_Parse(args->valuestring) : NULL;
    cJSON *p = cJSON_CreateObject(), *call = cJSON_AddObjectToObject(p, "functionCall");
    cJSON_AddStringToObject(call, "name", name->valuestring);
    cJSON_AddItemToObject(call, "args", cJSON_IsObject(parsed) ? parsed : cJSON_CreateObject());
    if (!cJSON_IsObject(parsed)) {
      cJSON_Delete(parsed);
    }
    cJSON_AddItemToArray(parts, p);
  }
  return 0;
}

/* The function names of the request's tool_call ids, looked up in
 * constant time (glibc's hsearch_r): built once per request. */
typedef struct tool_names {
  struct hsearch_data h;
  int made;
} tool_names;

static int tool_names_build(tool_names *tn, const cJSON *messages) {
  const cJSON *m, *tc;
  size_t n = 0;
  memset(tn, 0, sizeof *tn);
  cJSON_ArrayForEach(m, messages) {
    cJSON_ArrayForEach(tc, cJSON_GetObjectItemCaseSensitive(m, "tool_calls")) {
      n++;
    }
  }
  if (n == 0) {
    return 0;
  }
  if (hcreate_r(n + n / 2 + 1, &tn->h) == 0) {
    return -1;
  }
  tn->made = 1;
  cJSON_ArrayForEach(m, messages) {
    cJSON_ArrayForEach(tc, cJSON_GetObjectItemCaseSensitive(m, "tool_calls")) {
      const cJSON *tid = cJSON_GetObjectItemCaseSensitive(tc, "id");
      const cJSON *fn = cJSON_GetObjectItemCaseSensitive(tc, "function");
      const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
      ENTRY e = {.key = NULL, .data = NULL}, *found = NULL;
      if (cJSON_IsString(tid) && cJSON_IsString(name)) {
        e.key = tid->valuestring; /* the first call of an id wins */
        e.data = name->valuestring;
        if (hsearch_r(e, ENTER, &found, &tn->h) == 0) {
          return -1;
        }
      }
    }
  }
  return 0;
}

static void tool_names_free(tool_names *tn) {
  if (tn->made) {
    hdestroy_r(&tn->h);
  }
}

/* The function name of a tool_call id, from the request's assistant messages. */
static const char *tool_name(tool_names *tn, const char *id) {
  ENTRY e = {.key = (char *)id, .data = NULL}, *found = NULL;
  if (!tn->made || hsearch_r(e, FIND, &found, &tn->h) == 0 || found == NULL) {
    return NULL;
  }
  return found->data;
}

/* A tool message -> a functionResponse part. */
static cJSON *tool_part(tool_names *tn, const cJSON *m, char *msg, size_t len) {
  const cJSON *id = cJSON_GetObjectItemCaseSensitive(m, "tool_call_id");
  const cJSON *nm = cJSON_GetObjectItemCaseSensitive(m, "name");
  const char *name = cJSON_IsString(id) ? tool_name(tn, id->valuestring) : NULL;
  if (name == NULL && cJSON_IsString(nm)) {
    name = nm->valuestring;
  }
  if (name == NULL) {
    fail(msg, len, 400, "a tool message's tool_call_id matches no earlier tool call", NULL);
    return NULL;
  }
  char *text = content_text(cJSON_GetObjectItemCaseSensitive(m, "content"));
  cJSON *parsed = text != NULL ? cJSON_Parse(text) : NULL;
  cJSON *p = cJSON_CreateObject(), *fr = cJSON_AddObjectToObject(p, "functionResponse");
  cJSON_AddStringToObject(fr, "name", name);
  if (cJSON_IsObject(parsed)) {
    cJSON_AddItemToObject(fr, "response", parsed);
  } else {
    cJSON_Delete(parsed);
    cJSON *r = cJSON_AddObjectToObject(fr, "response");
    cJSON_AddStringToObject(r, "content", text != NULL ? text : "");
  }
  free(text);
  return p;
}

/* messages -> contents + systemInstruction. */
static int translate_messages(const cJSON *messages, tool_names *tn, cJSON *g, char *msg,
                              size_t len) {
  cJSON *contents = cJSON_AddArrayToObject(g, "contents");
  cJSON *sys_parts = NULL, *last = NULL;
  const char *last_role = "";
  const cJSON *m;
  if (!cJSON_IsArray(messages) || cJSON_GetArraySize(messages) == 0) {
    return fail(msg, len, 400, "messages must be a non-empty list", NULL);
  }
  cJSON_ArrayForEach(m, messages) {
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
    const char *r = cJSON_IsString(role) ? role->valuestring : "";
    if (strcmp(r, "system") == 0 || strcmp(r, "developer") == 0) {
      if (sys_parts == NULL) {
        cJSON *si = cJSON_AddObjectToObject(g, "systemInstruction");
        sys_parts = cJSON_AddArrayToObject(si, "parts");
      }
      char *text = content_text(cJSON_GetObjectItemCaseSensitive(m, "content"));
      cJSON *p = cJSON_CreateObject();
      cJSON_AddStringToObject(p, "text", text != NULL ? text : "");
      cJSON_AddItemToArray(sys_parts, p);
      free(text);
      continue;
    }
    const char *grole = strcmp(r, "assistant") == 0 ? "model" : "user";
    if (strcmp(r, "user") != 0 && strcmp(r, "assistant") != 0 && strcmp(r, "tool") != 0) {
      return fail(msg, len, 400, "unknown message role '%s' (system, user, assistant, tool)", r);
    }
    /* Consecutive tool results form one turn, as Gemini wants. */
    int merge = strcmp(r, "tool") == 0 && strcmp(last_role, "tool") == 0 && last != NULL;
    cJSON *parts;
    if (merge) {
      parts = cJSON_GetObjectItemCaseSensitive(last, "parts");
    } else {
      last = cJSON_CreateObject();
      cJSON_AddStringToObject(last, "role", grole);
      parts = cJSON_AddArrayToObject(last, "parts");
      cJSON_AddItemToArray(contents, last);
    }
    int rc = 0;
    if (strcmp(r, "user") == 0) {
      rc = user_parts(cJSON_GetObjectItemCaseSensitive(m, "content"), parts, msg, len);
    } else if (strcmp(r, "assistant") == 0) {
      rc = assistant_parts(m, parts, msg, len);
    } else {
      cJSON *p = tool_part(tn, m, msg, len);
      rc = p != NULL ? (cJSON_AddItemToArray(parts, p), 0) : 400;
    }
    if (rc != 0) {
      return rc;
    }
    last_role = r;
  }
  return cJSON_GetArraySize(contents) > 0
             ? 0
             : fail(msg, len, 400, "messages hold no user or assistant message", NULL);
}

static void translate_tools(const cJSON *req, cJSON *g) {
  const cJSON *tools = cJSON_GetObjectItemCaseSensitive(req, "tools"), *t;
  if (cJSON_GetArraySize(tools) > 0) {
    cJSON *decls = cJSON_CreateArray();
    cJSON_ArrayForEach(t, tools) {
      const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
      const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
      if (!cJSON_IsString(name)) {
        continue;
      }
      cJSON *d = cJSON_CreateObject();
      cJSON_AddStringToObject(d, "name", name->valuestring);
      const cJSON *desc = cJSON_GetObjectItemCaseSensitive(fn, "description");
      if (cJSON_IsString(desc)) {
        cJSON_AddStringToObject(d, "description", desc->valuestring);
      }
      const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
      if (cJSON_IsObject(params)) {
        cJSON_AddItemToObject(d, "parametersJsonSchema", cJSON_Duplicate(params, 1));
      }
      cJSON_AddItemToArray(decls, d);
    }
    cJSON *tl = cJSON_AddArrayToObject(g, "tools"), *one = cJSON_CreateObject();
    cJSON_AddItemToObject(one, "functionDeclarations", decls);
    cJSON_AddItemToArray(tl, one);
  }
  const cJSON *choice = cJSON_GetObjectItemCaseSensitive(req, "tool_choice");
  const char *mode = NULL;
  const cJSON *forced = NULL;
  if (cJSON_IsString(choice)) {
    mode = strcmp(choice->valuestring, "none") == 0       ? "NONE"
           : strcmp(choice->valuestring, "required") == 0 ? "ANY"
                                                          : "AUTO";
  } else if (cJSON_IsObject(choice)) {
    mode = "ANY";
    forced = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(choice, "function"),
                                              "name");
  }
  if (mode != NULL) {
    cJSON *tc = cJSON_AddObjectToObject(g, "toolConfig");
    cJSON *fcc = cJSON_AddObjectToObject(tc, "functionCallingConfig");
    cJSON_AddStringToObject(fcc, "mode", mode);
    if (cJSON_IsString(forced)) {
      cJSON *names = cJSON_AddArrayToObject(fcc, "allowedFunctionNames");
      cJSON_AddItemToArray(names, cJSON_CreateString(forced->valuestring));
    }
  }
}

static void translate_config(const cJSON *req, cJSON *g) {
  cJSON *gc = cJSON_CreateObject();
  const cJSON *v;
  if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(req, "temperature"))) {
    cJSON_AddNumberToObject(gc, "temperature", v->valuedouble);
  }
  if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(req, "top_p"))) {
    cJSON_AddNumberToObject(gc, "topP", v->valuedouble);
  }
  if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(req, "max_completion_tokens")) ||
      cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(req, "max_tokens"))) {
    cJSON_AddNumberToObject(gc, "maxOutputTokens", v->valuedouble);
  }
  v = cJSON_GetObjectItemCaseSensitive(req, "stop");
  if (cJSON_IsString(v) || cJSON_IsArray(v)) {
    cJSON *stops = cJSON_AddArrayToObject(gc, "stopSequences"), *s;
    if (cJSON_IsString(v)) {
      cJSON_AddItemToArray(stops, cJSON_CreateString(v->valuestring));
    }
    const cJSON *list = cJSON_IsArray(v) ? v : NULL;
    cJSON_ArrayForEach(s, list) {
      if (cJSON_IsString(s)) {
        cJSON_AddItemToArray(stops, cJSON_CreateString(s->valuestring));
      }
    }
  }
  const cJSON *rf = cJSON_GetObjectItemCaseSensitive(req, "response_format");
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(rf, "type");
  if (cJSON_IsString(type) && strcmp(type->valuestring, "json_object") == 0) {
    cJSON_AddStringToObject(gc, "responseMimeType", "application/json");
  } else if (cJSON_IsString(type) && strcmp(type->valuestring, "json_schema") == 0) {
    cJSON_AddStringToObject(gc, "responseMimeType", "application/json");
    const cJSON *schema = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(rf, "json_schema"), "schema");
    if (cJSON_IsObject(schema)) {
      cJSON_AddItemToObject(gc, "responseJsonSchema", cJSON_Duplicate(schema, 1));
    }
  }
  if (cJSON_GetArraySize(gc) > 0) {
    cJSON_AddItemToObject(g, "generationConfig", gc);
  } else {
    cJSON_Delete(gc);
  }
}

/* The request's "model" (a "models/" prefix is dropped). */
static int request_model(const cJSON *req, oai_req *out, char *msg, size_t len) {
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(req, "model");
  if (!cJSON_IsString(model) || model->valuestring[0] == '\0') {
    return fail(msg, len, 400, "\"model\" is required", NULL);
  }
  const char *m = model->valuestring;
  snprintf(out->model, sizeof out->model, "%s", strncmp(m, "models/", 7) == 0 ? m + 7 : m);
  return 0;
}

int oai_chat_request(const char *body, size_t len, oai_req *out, char *msg, size_t msglen) {
  cJSON *req = cJSON_ParseWithLength(body, len);
  int rc;
  memset(out, 0, sizeof *out);
  if (!cJSON_IsObject(req)) {
    cJSON_Delete(req);
    return fail(msg, msglen, 400, "the request body is not a JSON object", NULL);
  }
  cJSON *g = cJSON_CreateObject();
  rc = request_model(req, out, msg, msglen);
  if (rc == 0) {
    const cJSON *messages = cJSON_GetObjectItemCaseSensitive(req, "messages");
    tool_names tn;
    rc = tool_names_build(&tn, messages) == 0 ? translate_messages(messages, &tn, g, msg, msglen)
                                               : fail(msg, msglen, 500, "out of memory", NULL);
    tool_names_free(&tn);
  }
  if (rc == 0) {
    translate_tools(req, g);
    translate_config(req, g);
    out->stream = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(req, "stream"));
    out->include_usage = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(req, "stream_options"), "include_usage"));
    out->gbody = cJSON_PrintUnformatted(g);
    out->gbody_len = out->gbody != NULL ? strlen(out->gbody) : 0;
    rc = out->gbody != NULL ? 0 : fail(msg, msglen, 500, "out of memory", NULL);
  }
  cJSON_Delete(g);
  cJSON_Delete(req);
  return rc;
}

int oai_embed_request(const char *body, size_t len, oai_req *out, char *msg, size_t msglen) {
  cJSON *req = cJSON_ParseWithLength(body, len), *g = NULL;
  int rc;
  memset(out, 0, sizeof *out);
  if (!cJSON_IsObject(req)) {
    cJSON_Delete(req);
    return fail(msg, msglen, 400, "the request body is not a JSON object", NULL);
  }
  rc = request_model(req, out, msg, msglen);
  const cJSON *input = cJSON_GetObjectItemCaseSensitive(req, "input"), *it;
  const cJSON *dims = cJSON_GetObjectItemCaseSensitive(req, "dimensions");
  const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(req, "encoding_format");
  out->base64 = cJSON_IsString(fmt) && strcmp(fmt->valuestring, "base64") == 0;
  if (rc == 0 && !cJSON_IsString(input) &&
      !(cJSON_IsArray(input) && cJSON_GetArraySize(input) > 0)) {
    rc = fail(msg, msglen, 400, "\"input\" must be a string or a list of strings", NULL);
  }
  if (rc == 0) {
    char mpath[200];
    snprintf(mpath, sizeof mpath, "models/%s", out->model);
    g = cJSON_CreateObject();
    cJSON *reqs = cJSON_AddArrayToObject(g, "requests");
    cJSON *one = cJSON_IsString(input) ? cJSON_CreateArray() : NULL;
    if (one != NULL) {
      cJSON_AddItemToArray(one, cJSON_CreateString(input->valuestring));
    }
    const cJSON *inputs = one != NULL ? one : input;
    cJSON_ArrayForEach(it, inputs) {
      if (!cJSON_IsString(it)) {
        rc =
            fail(msg, msglen, 400, "\"input\" must be text (token arrays are not supported)", NULL);
        break;
      }
      cJSON *r = cJSON_CreateObject(), *content = cJSON_AddObjectToObject(r, "content");
      cJSON *parts = cJSON_AddArrayToObject(content, "parts"), *p = cJSON_CreateObject();
      cJSON_AddStringToObject(r, "model", mpath);
      cJSON_AddStringToObject(p, "text", it->valuestring);
      cJSON_AddItemToArray(parts, p);
      if (cJSON_IsNumber(dims)) {
        cJSON_AddNumberToObject(r, "outputDimensionality", dims->valuedouble);
      }
      cJSON_AddItemToArray(reqs, r);
    }
    cJSON_Delete(one);
  }
  if (rc == 0) {
    out->gbody = cJSON_PrintUnformatted(g);
    out->gbody_len = out->gbody != NULL ? strlen(out->gbody) : 0;
  }
  cJSON_Delete(g);
  cJSON_Delete(req);
  return rc;
}

/* ---- answers --------------------------------------------------------------------- */

static const char *finish_reason(const char *gemini, int tool_calls) {
  if (gemini == NULL) {
    return NULL;
  }
  if (strcmp(gemini, "MAX_TOKENS") == 0) {
    return "length";
  }
  if (strcmp(gemini, "SAFETY") == 0 || strcmp(gemini, "RECITATION") == 0 ||
      strcmp(gemini, "PROHIBITED_CONTENT") == 0 || strcmp(gemini, "BLOCKLIST") == 0 ||
      strcmp(gemini, "SPII") == 0 || strcmp(gemini, "IMAGE_SAFETY") == 0) {
    return "content_filter";
  }
  return tool_calls ? "tool_calls" : "stop";
}

static cJSON *usage_of(const cJSON *g) {
  const cJSON *u = cJSON_GetObjectItemCaseSensitive(g, "usageMetadata");
  if (!cJSON_IsObject(u)) {
    return NULL;
  }
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(u, "promptTokenCount");
  const cJSON *c = cJSON_GetObjectItemCaseSensitive(u, "candidatesTokenCount");
  const cJSON *t = cJSON_GetObjectItemCaseSensitive(u, "thoughtsTokenCount");
  double pt = cJSON_IsNumber(p) ? p->valuedouble : 0;
  double ct = (cJSON_IsNumber(c) ? c->valuedouble : 0) + (cJSON_IsNumber(t) ? t->valuedouble : 0);
  cJSON *out = cJSON_CreateObject();
  cJSON_AddNumberToObject(out, "prompt_tokens", pt);
  cJSON_AddNumberToObject(out, "completion_tokens", ct);
  cJSON_AddNumberToObject(out, "total_tokens", pt + ct);
  if (cJSON_IsNumber(t)) {
    cJSON *d = cJSON_AddObjectToObject(out, "completion_tokens_details");
    cJSON_AddNumberToObject(d, "reasoning_tokens", t->valuedouble);
  }
  return out;
}

/*
 * The first candidate's text and function calls.  `text` gets the answer
 * text (thought parts left out); `calls` an OpenAI tool_calls array (each
 * with "index" when `indexed`), ids numbered from *next_call.
 */
static void candidate_parts(const cJSON *g, char **text, cJSON *calls, int indexed,
                            unsigned *next_call, const char **finish) {
  const cJSON *cand = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(g, "candidates"), 0);
  const cJSON *parts =
      cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(cand, "content"), "parts");
  const cJSON *p, *fr = cJSON_GetObjectItemCaseSensitive(cand, "finishReason");
  size_t n = 0;
  cJSON_ArrayForEach(p, parts) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "text");
    if (cJSON_IsString(t) && !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "thought"))) {
      n += strlen(t->valuestring);
    }
  }
  *text = calloc(1, n + 1);
  char *end = *text;
  cJSON_ArrayForEach(p, parts) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "text");
    const cJSON *fc = cJSON_GetObjectItemCaseSensitive(p, "functionCall");
    if (*text != NULL && cJSON_IsString(t) &&
        !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "thought"))) {
      size_t tlen = strlen(t->valuestring);
      memcpy(end, t->valuestring, tlen);
      end += tlen;
    }
    if (cJSON_IsObject(fc)) {
      const cJSON *name = cJSON_GetObjectItemCaseSensitive(fc, "name");
      const cJSON *args = cJSON_GetObjectItemCaseSensitive(fc, "args");
      char id[40], *a = args != NULL ? cJSON_PrintUnformatted(args) : NULL;
      cJSON *c = cJSON_CreateObject(), *f;
      snprintf(id, sizeof id, "call_%08x%04x", (unsigned)time(NULL), (*next_call)++);
      if (indexed) {
        cJSON_AddNumberToObject(c, "index", cJSON_GetArraySize(calls));
      }
      cJSON_AddStringToObject(c, "id", id);
      cJSON_AddStringToObject(c, "type", "function");
      f = cJSON_AddObjectToObject(c, "function");
      cJSON_AddStringToObject(f, "name", cJSON_IsString(name) ? name->valuestring : "");
      cJSON_AddStringToObject(f, "arguments", a != NULL ? a : "{}");
      free(a);
      cJSON_AddItemToArray(calls, c);
    }
  }
  *finish = cJSON_IsString(fr) ? fr->valuestring : NULL;
}

static void completion_head(cJSON *o, const char *object, const char *id, const char *model) {
  char full[120];
  snprintf(full, sizeof full, "chatcmpl-%s", id);
  cJSON_AddStringToObject(o, "id", full);
  cJSON_AddStringToObject(o, "object", object);
  cJSON_AddNumberToObject(o, "created", (double)time(NULL));
  cJSON_AddStringToObject(o, "model", model);
}

static const char *response_id(const cJSON *g) {
  const cJSON *id = cJSON_GetObjectItemCaseSensitive(g, "responseId");
  return cJSON_IsString(id) ? id->valuestring : "pool";
}

char *oai_chat_response(const char *gjson, size_t len, const char *model, size_t *outlen) {
  cJSON *g = cJSON_ParseWithLength(gjson, len), *o = cJSON_CreateObject();
  cJSON *calls = cJSON_CreateArray(), *choices, *choice, *message, *usage;
  char *text = NULL;
  const char *finish = NULL;
  unsigned next = 0;
  completion_head(o, "chat.completion", response_id(g), model);
  candidate_parts(g, &text, calls, 0, &next, &finish);
  choices = cJSON_AddArrayToObject(o, "choices");
  choice = cJSON_CreateObject();
  cJSON_AddNumberToObject(choice, "index", 0);
  message = cJSON_AddObjectToObject(choice, "message");
  cJSON_AddStringToObject(message, "role", "assistant");
  if (text != NULL && (text[0] != '\0' || cJSON_GetArraySize(calls) == 0)) {
    cJSON_AddStringToObject(message, "content", text);
  } else {
    cJSON_AddNullToObject(message, "content");
  }
  if (cJSON_GetArraySize(calls) > 0) {
    cJSON_AddItemToObject(message, "tool_calls", calls);
  } else {
    cJSON_Delete(calls);
  }
  const char *fr =
      finish_reason(finish != NULL ? finish : "STOP", cJSON_HasObjectItem(message, "tool_calls"));
  cJSON_AddStringToObject(choice, "finish_reason", fr);
  cJSON_AddItemToArray(choices, choice);
  if ((usage = usage_of(g)) != NULL) {
    cJSON_AddItemToObject(o, "usage", usage);
  }
  char *s = cJSON_PrintUnformatted(o);
  free(text);
  cJSON_Delete(o);
  cJSON_Delete(g);
  *outlen = s != NULL ? strlen(s) : 0;
  return s;
}

static void add_sse(gkp__dynbuf *out, cJSON *o) {
  char *s = cJSON_PrintUnformatted(o);
  if (s != NULL) {
    gkp__dynbuf_adds(out, "data: ");
    gkp__dynbuf_adds(out, s);
    gkp__dynbuf_adds(out, "\n\n");
    free(s);
  }
}

void oai_chat_chunk(oai_stream *st, const char *gjson, size_t len, const char *model,
                    gkp__dynbuf *out) {
  cJSON *g = cJSON_ParseWithLength(gjson, len), *o = cJSON_CreateObject();
  cJSON *calls = cJSON_CreateArray(), *choice = cJSON_CreateObject(), *delta, *usage;
  char *text = NULL;
  const char *finish = NULL;
  if (st->id[0] == '\0') {
    snprintf(st->id, sizeof st->id, "%s", response_id(g));
  }
  completion_head(o, "chat.completion.chunk", st->id, model);
  candidate_parts(g, &text, calls, 1, &st->next_call, &finish);
  /* Tool calls are numbered across the whole stream. */
  cJSON *c;
  cJSON_ArrayForEach(c, calls) {
    cJSON_ReplaceItemInObject(c, "index", cJSON_CreateNumber(st->ncalls++));
  }
  cJSON_AddNumberToObject(choice, "index", 0);
  delta = cJSON_AddObjectToObject(choice, "delta");
  if (!st->role_sent) {
    cJSON_AddStringToObject(delta, "role", "assistant");
    st->role_sent = 1;
  }
  if (text != NULL && text[0] != '\0') {
    cJSON_AddStringToObject(delta, "content", text);
  }
  if (cJSON_GetArraySize(calls) > 0) {
    cJSON_AddItemToObject(delta, "tool_calls", calls);
  } else {
    cJSON_Delete(calls);
  }
  const char *fr = finish_reason(finish, st->ncalls > 0);
  if (fr != NULL) {
    cJSON_AddStringToObject(choice, "finish_reason", fr);
  } else {
    cJSON_AddNullToObject(choice, "finish_reason");
  }
  cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "choices"), choice);
  if ((usage = usage_of(g)) != NULL) {
    cJSON_Delete(st->usage);
    st->usage = usage;
  }
  add_sse(out, o);
  free(text);
  cJSON_Delete(o);
  cJSON_Delete(g);
}

void oai_stream_end(oai_stream *st, const char *model, int ok, gkp__dynbuf *out) {
  if (ok && st->include_usage && st->usage != NULL) {
    cJSON *o = cJSON_CreateObject();
    completion_head(o, "chat.completion.chunk", st->id[0] ? st->id : "pool", model);
    cJSON_AddArrayToObject(o, "choices");
    cJSON_AddItemToObject(o, "usage", st->usage);
    st->usage = NULL;
    add_sse(out, o);
    cJSON_Delete(o);
  }
  if (ok) {
    gkp__dynbuf_adds(out, "data: [DONE]\n\n");
  }
  cJSON_Delete(st->usage);
  st->usage = NULL;
}

/* A vector as base64 of little-endian float32 values (encoding_format
 * "base64", what the openai SDKs ask for by default). */
static cJSON *base64_vector(const cJSON *values) {
  int n = cJSON_GetArraySize(values), i = 0;
  float *f = calloc((size_t)n + 1, sizeof *f);
  char *b = f != NULL ? malloc(gkp__base64_encoded_len((size_t)n * sizeof *f) + 1) : NULL;
  const cJSON *v;
  cJSON *out = NULL;
  if (b != NULL) {
    cJSON_ArrayForEach(v, values) {
      f[i++] = (float)v->valuedouble; /* x86 and arm64 Linux: little-endian */
    }
    gkp__base64_encode(f, (size_t)n * sizeof *f, b);
    out = cJSON_CreateString(b);
  }
  free(f);
  free(b);
  return out != NULL ? out : cJSON_CreateString("");
}

char *oai_embed_response(const char *gjson, size_t len, const char *model, int64_t tokens,
                         int base64, size_t *outlen) {
  cJSON *g = cJSON_ParseWithLength(gjson, len), *o = cJSON_CreateObject(), *e;
  cJSON *data = cJSON_CreateArray();
  int i = 0;
  cJSON_AddStringToObject(o, "object", "list");
  cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(g, "embeddings")) {
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "object", "embedding");
    cJSON_AddNumberToObject(d, "index", i++);
    cJSON *values = cJSON_GetObjectItemCaseSensitive(e, "values");
    cJSON_AddItemToObject(d, "embedding",
                          base64           ? base64_vector(values)
                          : values != NULL ? cJSON_Duplicate(values, 1)
                                           : cJSON_CreateArray());
    cJSON_AddItemToArray(data, d);
  }
  cJSON_AddItemToObject(o, "data", data);
  cJSON_AddStringToObject(o, "model", model);
  cJSON *u = cJSON_AddObjectToObject(o, "usage");
  cJSON_AddNumberToObject(u, "prompt_tokens", (double)tokens);
  cJSON_AddNumberToObject(u, "total_tokens", (double)tokens);
  char *s = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  cJSON_Delete(g);
  *outlen = s != NULL ? strlen(s) : 0;
  return s;
}

static const char *error_type(int code) {
  switch (code) {
  case 400:
  case 413:
  case 404:
    return "invalid_request_error";
  case 401:
  case 403:
    return "authentication_error";
  case 429:
    return "rate_limit_exceeded";
  default:
    return "api_error";
  }
}

char *oai_error_json(int code, const char *message, size_t *len) {
  cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
  cJSON_AddStringToObject(e, "message", message);
  cJSON_AddStringToObject(e, "type", error_type(code));
  cJSON_AddNullToObject(e, "param");
  if (code == 429) {
    cJSON_AddStringToObject(e, "code", "rate_limit_exceeded");
  } else if (code == 404) {
    cJSON_AddStringToObject(e, "code", "model_not_found");
  } else {
    cJSON_AddNullToObject(e, "code");
  }
  char *s = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  *len = s != NULL ? strlen(s) : 0;
  return s;
}

char *oai_error_from_gemini(int code, const char *gjson, size_t glen, size_t *len) {
  cJSON *g = cJSON_ParseWithLength(gjson, glen);
  const cJSON *e = cJSON_IsArray(g) ? cJSON_GetArrayItem(g, 0) : g;
  const cJSON *m =
      cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(e, "error"), "message");
  char *s = oai_error_json(code, cJSON_IsString(m) ? m->valuestring : "upstream error", len);
  cJSON_Delete(g);
  return s;
}

char *oai_models_json(char *const *models, size_t n, const caller *cl, const char *only) {
  cJSON *o = cJSON_CreateObject(), *data = NULL;
  if (only == NULL) {
    cJSON_AddStringToObject(o, "object", "list");
    data = cJSON_AddArrayToObject(o, "data");
  }
  for (size_t i = 0; i < n; i++) {
    if (!callers_allows(cl, models[i]) || (only != NULL && strcmp(only, models[i]) != 0)) {
      continue;
    }
    cJSON *m = only != NULL ? o : cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", models[i]);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", 0);
    cJSON_AddStringToObject(m, "owned_by", "google");
    if (only == NULL) {
      cJSON_AddItemToArray(data, m);
    }
  }
  char *s = cJSON_GetArraySize(o) > 0 ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  return s;
}
