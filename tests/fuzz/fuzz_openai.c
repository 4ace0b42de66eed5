/*
 * fuzz_openai.c - the OpenAI-compatible API's translations (src/http/openai.c):
 * a chat.completions or embeddings request body to Gemini's, and a Gemini
 * answer (whole or one stream event) back to OpenAI's.
 *
 * Input: a request body (JSON text), also read as a Gemini answer.  A
 * request that translates must give a Gemini body that is one JSON object
 * (with a non-empty "contents" for chat, "requests" for embeddings); one
 * that does not must give an HTTP status and a message.  Answers, whatever
 * they hold, translate to JSON.
 */
#include <cjson/cJSON.h>
#include <string.h>

#include "fuzz.h"
#include "http/openai.c"

/* openai.c lists models through the callers' rules; every model here. */
int callers_allows(const caller *c, const char *model) {
  (void)c;
  (void)model;
  return 1;
}

static void check_gemini_body(const oai_req *o, const char *list) {
  FUZZ_CHECK(o->gbody != NULL && strlen(o->gbody) == o->gbody_len);
  cJSON *g = cJSON_ParseWithLength(o->gbody, o->gbody_len);
  FUZZ_CHECK(cJSON_IsObject(g));
  FUZZ_CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(g, list)) > 0);
  FUZZ_CHECK(o->model[0] != '\0');
  cJSON_Delete(g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *body = (const char *)data;
  char msg[GKP_MSG_MAX];
  oai_req o;
  int rc = oai_chat_request(body, size, &o, msg, sizeof msg);
  if (rc == 0) {
    check_gemini_body(&o, "contents");
  } else {
    FUZZ_CHECK(rc >= 400 && rc < 600 && msg[0] != '\0' && strchr(msg, '\n') == NULL);
  }
  free(o.gbody);
  rc = oai_embed_request(body, size, &o, msg, sizeof msg);
  if (rc == 0) {
    check_gemini_body(&o, "requests");
  } else {
    FUZZ_CHECK(rc >= 400 && rc < 600 && msg[0] != '\0');
  }
  free(o.gbody);

  size_t len = 0;
  char *s = oai_chat_response(body, size, "m", &len);
  cJSON *j = cJSON_ParseWithLength(s, len);
  FUZZ_CHECK(s != NULL && cJSON_IsObject(j));
  cJSON_Delete(j);
  free(s);
  oai_stream st;
  gkp__dynbuf out;
  memset(&st, 0, sizeof st);
  st.include_usage = 1;
  gkp__dynbuf_init(&out, 1 << 24);
  oai_chat_chunk(&st, body, size, "m", &out);
  oai_chat_chunk(&st, body, size, "m", &out);
  oai_stream_end(&st, "m", 1, &out);
  const char *b = gkp__dynbuf_ptr(&out);
  FUZZ_CHECK(strncmp(b, "data: ", 6) == 0);
  FUZZ_CHECK(strstr(b, "data: [DONE]\n\n") != NULL);
  gkp__dynbuf_reset(&out);
  s = oai_error_from_gemini(503, body, size, &len);
  FUZZ_CHECK(s != NULL && len == strlen(s));
  free(s);
  return 0;
}
