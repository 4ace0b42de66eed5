/*
 * test_gemini_codec.c - request bodies, MIME detection, token estimates,
 * base64, response parsing and judging.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "client/base64.h"
#include "client/gemini.h"
#include "common/dynbuf.h"

static const unsigned char PNG[] = "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR";
#define PNG_LEN 16
#define PNG_B64 "iVBORw0KGgoAAAANSUhEUg=="

static gkp__gemini_request base_request(const char *text) {
  gkp__gemini_request r = {0};
  r.text = text;
  r.temperature = -1;
  r.thinking_style = GKP__THINKING_STYLE_NONE;
  return r;
}

static char *build(const gkp__gemini_request *r) {
  char *out = NULL;
  size_t len = 0;
  gkp_error e = {0};
  int rc = gkp__gemini_build_body(r, &out, &len, &e);
  if (rc != 0) {
    fail_msg("build failed: %d %s", rc, e.msg);
  }
  assert_int_equal(len, strlen(out));
  return out;
}

/* ---- requests ---------------------------------------------------------------- */

static void test_body_text_only(void **state) {
  (void)state;
  gkp__gemini_request r = base_request("hello \"world\"\n");
  char *b = build(&r);
  assert_string_equal(b, "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"hello "
                         "\\\"world\\\"\\n\"}]}]}");
  free(b);
}

static void test_body_like_the_sdk(void **state) {
  (void)state;
  gkp__gemini_image img = {PNG, PNG_LEN};
  gkp__gemini_request r = base_request("draw");
  r.images = &img;
  r.nimages = 1;
  r.system = "be brief";
  r.tools = GKP__TOOL_GOOGLE_SEARCH | GKP__TOOL_CODE_EXECUTION | GKP__TOOL_URL_CONTEXT;
  r.temperature = 0.2;
  r.max_output_tokens = 1024;
  r.image_output = 1;
  r.thinking_style = GKP__THINKING_STYLE_LEVEL;
  r.thinking = GKP__THINK_LOW;
  r.include_thoughts = 1;
  char *b = build(&r);
  assert_string_equal(
      b, "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"draw\"},"
         "{\"inlineData\":{\"mimeType\":\"image/png\",\"data\":\"" PNG_B64 "\"}}]}],"
         "\"systemInstruction\":{\"parts\":[{\"text\":\"be brief\"}],\"role\":\"user\"},"
         "\"tools\":[{\"googleSearch\":{}},{\"codeExecution\":{}},{\"urlContext\":{}}],"
         "\"generationConfig\":{\"temperature\":0.2,\"maxOutputTokens\":1024,"
         "\"responseModalities\":[\"TEXT\",\"IMAGE\"],"
         "\"thinkingConfig\":{\"thinkingLevel\":\"LOW\",\"includeThoughts\":true}}}");
  free(b);
}

static void test_body_context_and_some_tools(void **state) {
  (void)state;
  gkp__gemini_request r = base_request("summarise");
  r.context = "the context";
  r.tools = GKP__TOOL_URL_CONTEXT;
  char *b = build(&r);
  assert_string_equal(b, "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"summarise\"},"
                         "{\"text\":\"the context\"}]}],\"tools\":[{\"urlContext\":{}}]}");
  free(b);
}

static void test_thinking_level_vs_budget(void **state) {
  (void)state;
  static const char *const levels[] = {"MINIMAL", "LOW", "MEDIUM", "HIGH"};
  static const int budgets[] = {0, 1024, 8192, 24576};
  for (int t = GKP__THINK_MINIMAL; t <= GKP__THINK_HIGH; t++) {
    gkp__gemini_request r = base_request("x");
    r.thinking = t;
    r.thinking_style = GKP__THINKING_STYLE_LEVEL;
    char *b = build(&r);
    char want[128];
    snprintf(want, sizeof want,
             "\"generationConfig\":{\"thinkingConfig\":{\"thinkingLevel\":\"%s\"}}", levels[t - 1]);
    assert_non_null(strstr(b, want));
    assert_null(strstr(b, "thinkingBudget"));
    free(b);

    r.thinking_style = GKP__THINKING_STYLE_BUDGET;
    b = build(&r);
    snprintf(want, sizeof want, "\"thinkingConfig\":{\"thinkingBudget\":%d}", budgets[t - 1]);
    assert_non_null(strstr(b, want));
    assert_null(strstr(b, "thinkingLevel"));
    free(b);

    r.thinking_style = GKP__THINKING_STYLE_NONE;
    r.include_thoughts = 1;
    b = build(&r);
    assert_null(strstr(b, "thinkingConfig"));
    assert_null(strstr(b, "generationConfig"));
    free(b);
  }
  /* includeThoughts alone. */
  gkp__gemini_request r = base_request("x");
  r.thinking_style = GKP__THINKING_STYLE_BUDGET;
  r.include_thoughts = 1;
  char *b = build(&r);
  assert_non_null(
      strstr(b, "\"generationConfig\":{\"thinkingConfig\":{\"includeThoughts\":true}}"));
  free(b);
  /* Budget plus includeThoughts: the budget only, never a level. */
  r.thinking = GKP__THINK_HIGH;
  b = build(&r);
  assert_non_null(strstr(b, "{\"thinkingBudget\":24576,\"includeThoughts\":true}"));
  free(b);
  /* Bad values. */
  gkp_error e = {0};
  char *out = NULL;
  r.thinking = 9;
  assert_int_equal(gkp__gemini_build_body(&r, &out, NULL, &e), -EINVAL);
  assert_null(out);
  r.thinking = GKP__THINK_LOW;
  r.thinking_style = 5;
  assert_int_equal(gkp__gemini_build_body(&r, &out, NULL, &e), -EINVAL);

  assert_int_equal(gkp__gemini_thinking_parse("Medium"), GKP__THINK_MEDIUM);
  assert_int_equal(gkp__gemini_thinking_parse(NULL), GKP__THINK_UNSET);
  assert_int_equal(gkp__gemini_thinking_parse("extreme"), -1);
}

static void test_mime_detection(void **state) {
  (void)state;
  static const struct {
    const char *bytes;
    size_t len;
    const char *mime;
  } cases[] = {
      {"\x89PNG\r\n\x1a\nrest", 12, "image/png"},
      {"\xff\xd8\xff\xe0\x00\x10JFIF", 10, "image/jpeg"},
      {"GIF89a....", 10, "image/gif"},
      {"GIF87a....", 10, "image/gif"},
      {"RIFF\x10\x00\x00\x00WEBPVP8 ", 16, "image/webp"},
      {"\x00\x00\x00\x18"
       "ftypheic\x00\x00\x00\x00",
       16, "image/heic"},
      {"\x00\x00\x00\x18"
       "ftyphevc\x00\x00\x00\x00",
       16, "image/heic"},
      {"\x00\x00\x00\x18"
       "ftypmif1\x00\x00\x00\x00",
       16, "image/heif"},
      {"%PDF-1.7\n", 9, "application/pdf"},
      {"RIFF\x10\x00\x00\x00WAVEfmt ", 16, NULL},
      {"\x00\x00\x00\x18"
       "ftypisom\x00\x00\x00\x00",
       16, NULL},
      {"hello world", 11, NULL},
      {"\x89PN", 3, NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *m = gkp__gemini_detect_mime(cases[i].bytes, cases[i].len);
    if (cases[i].mime == NULL) {
      assert_null(m);
    } else {
      assert_non_null(m);
      assert_string_equal(m, cases[i].mime);
    }
  }
  /* In a request: JPEG sent as image/jpeg. */
  static const unsigned char jpeg[] = {0xff, 0xd8, 0xff, 0xe0, 1, 2, 3};
  gkp__gemini_image img = {jpeg, sizeof jpeg};
  gkp__gemini_request r = base_request("look");
  r.images = &img;
  r.nimages = 1;
  char *b = build(&r);
  assert_non_null(
      strstr(b, "{\"inlineData\":{\"mimeType\":\"image/jpeg\",\"data\":\"/9j/4AECAw==\"}}"));
  free(b);
}

static void test_image_rejections(void **state) {
  (void)state;
  gkp_error e = {0};
  char *out = NULL;
  gkp__gemini_image imgs[2] = {{PNG, PNG_LEN}, {"just some text", 14}};
  gkp__gemini_request r = base_request("look");
  r.images = imgs;
  r.nimages = 2;
  assert_int_equal(gkp__gemini_build_body(&r, &out, NULL, &e), -ENOTSUP);
  assert_null(out);
  assert_non_null(strstr(e.msg, "input file 2"));
  assert_non_null(strstr(e.msg, "PNG, JPEG, GIF, WEBP, HEIC/HEIF"));

  r.nimages = 1;
  r.max_image_bytes = 10;
  assert_int_equal(gkp__gemini_build_body(&r, &out, NULL, &e), -EFBIG);
  assert_non_null(strstr(e.msg, "input file 1 is 16 bytes"));

  /* The default limit is 20 MiB. */
  size_t big = GKP__GEMINI_MAX_IMAGE + 1;
  unsigned char *huge = calloc(1, big);
  assert_non_null(huge);
  memcpy(huge, PNG, PNG_LEN);
  gkp__gemini_image h = {huge, big};
  r.images = &h;
  r.max_image_bytes = 0;
  assert_int_equal(gkp__gemini_build_body(&r, &out, NULL, &e), -EFBIG);
  assert_non_null(strstr(e.msg, "20.0 MiB limit"));
  /* Exactly 20 MiB is accepted. */
  h.len = GKP__GEMINI_MAX_IMAGE;
  assert_int_equal(gkp__gemini_build_body(&r, &out, NULL, &e), 0);
  assert_non_null(out);
  free(out);
  out = NULL;
  free(huge);

  gkp__gemini_image empty = {PNG, 0};
  r.images = &empty;
  assert_int_equal(gkp__gemini_build_body(&r, &out, NULL, &e), -EINVAL);
}

static void test_request_validation(void **state) {
  (void)state;
  gkp_error e = {0};
  char *out = NULL;
  gkp__gemini_request r = base_request(NULL);
  assert_int_equal(gkp__gemini_build_body(&r, &out, NULL, &e), -EINVAL);
  r.text = "";
  assert_int_equal(gkp__gemini_build_body(&r, &out, NULL, &e), -EINVAL);
  r.text = "bad \xff utf-8";
  assert_int_equal(gkp__gemini_build_body(&r, &out, NULL, &e), -EINVAL);
  assert_non_null(strstr(e.msg, "not valid UTF-8"));
  assert_non_null(strstr(e.msg, "offset 4"));
  r.text = "fine";
  r.context = "overlong \xc0\xaf";
  assert_int_equal(gkp__gemini_build_body(&r, &out, NULL, &e), -EINVAL);
  assert_non_null(strstr(e.msg, "context"));
  r.context = "surrogate \xed\xa0\x80";
  assert_int_equal(gkp__gemini_build_body(&r, &out, NULL, &e), -EINVAL);
  r.context = "ok: caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
  assert_int_equal(gkp__gemini_build_body(&r, &out, NULL, &e), 0);
  free(out);
}

static void test_count_body(void **state) {
  (void)state;
  gkp__gemini_request r = base_request("count me");
  r.system = "not counted";
  r.tools = GKP__TOOL_GOOGLE_SEARCH;
  r.thinking_style = GKP__THINKING_STYLE_LEVEL;
  r.thinking = GKP__THINK_HIGH;
  char *out = NULL;
  gkp_error e = {0};
  assert_int_equal(gkp__gemini_build_count_body(&r, &out, NULL, &e), 0);
  assert_string_equal(out,
                      "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"count me\"}]}]}");
  free(out);
}

static void test_estimate(void **state) {
  (void)state;
  gkp__gemini_request r = base_request("abcd");
  assert_int_equal(gkp__gemini_estimate_tokens(&r), 1);
  r.text = "abcde";
  assert_int_equal(gkp__gemini_estimate_tokens(&r), 2);
  r.text = "\xe2\x82\xac"; /* 3 bytes of UTF-8 */
  assert_int_equal(gkp__gemini_estimate_tokens(&r), 1);
  r.text = "abcd";
  r.context = "efgh";
  r.system = "ijkl";
  gkp__gemini_image imgs[2] = {{PNG, PNG_LEN}, {PNG, PNG_LEN}};
  r.images = imgs;
  r.nimages = 2;
  assert_int_equal(gkp__gemini_estimate_tokens(&r), 3 + 2 * 258);
}

static void test_base64(void **state) {
  (void)state;
  static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
  static const char *const enc[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
  for (size_t i = 0; i < 7; i++) {
    char buf[16];
    gkp__base64_encode(plain[i], strlen(plain[i]), buf);
    assert_string_equal(buf, enc[i]);
    assert_int_equal(gkp__base64_encoded_len(strlen(plain[i])), strlen(enc[i]));
    unsigned char *out;
    size_t n;
    assert_int_equal(gkp__base64_decode(enc[i], strlen(enc[i]), &out, &n), 0);
    assert_int_equal(n, strlen(plain[i]));
    assert_memory_equal(out, plain[i], n);
    free(out);
  }
  unsigned char *out;
  size_t n;
  assert_int_equal(gkp__base64_decode("Zm9v\nYmE", 8, &out, &n), 0); /* newline, no padding */
  assert_int_equal(n, 5);
  free(out);
  assert_int_equal(gkp__base64_decode("-_8=", 4, &out, &n), 0); /* URL-safe */
  assert_int_equal(n, 2);
  assert_int_equal(out[0], 0xfb);
  assert_int_equal(out[1], 0xff);
  free(out);
  assert_int_equal(gkp__base64_decode("Zm9v*", 5, &out, &n), -EINVAL);
  assert_int_equal(gkp__base64_decode("Zg==Zg==", 8, &out, &n), -EINVAL);
  assert_int_equal(gkp__base64_decode("Z", 1, &out, &n), -EINVAL);
}

/* ---- responses ---------------------------------------------------------------- */

typedef struct sink_rec {
  gkp__dynbuf text, thoughts;
  int images;
  int thought_images;
  char mime[32];
  unsigned char image[64];
  size_t image_len;
  int stop;
} sink_rec;

static int rec_text(void *ud, const char *t, size_t len, int thought) {
  sink_rec *r = ud;
  gkp__dynbuf_add(thought ? &r->thoughts : &r->text, t, len);
  return r->stop;
}

static int rec_image(void *ud, const char *mime, const void *data, size_t len, int thought) {
  sink_rec *r = ud;
  if (thought) {
    r->thought_images++; /* interim images of image models */
    return 0;
  }
  r->images++;
  snprintf(r->mime, sizeof r->mime, "%s", mime);
  assert_true(len <= sizeof r->image);
  memcpy(r->image, data, len);
  r->image_len = len;
  return 0;
}

static const gkp__gemini_sink rec_sink = {rec_text, rec_image};

static void rec_init(sink_rec *r) {
  memset(r, 0, sizeof *r);
  gkp__dynbuf_init(&r->text, 1 << 20);
  gkp__dynbuf_init(&r->thoughts, 1 << 20);
}

static void rec_free(sink_rec *r) {
  gkp__dynbuf_reset(&r->text);
  gkp__dynbuf_reset(&r->thoughts);
}

static int parse(const char *json, sink_rec *r, gkp__gemini_state *st) {
  gkp_error e = {0};
  return gkp__gemini_parse(json, strlen(json), &rec_sink, r, st, &e);
}

static void test_parse_stream_chunks(void **state) {
  (void)state;
  sink_rec r;
  rec_init(&r);
  gkp__gemini_state st;
  gkp__gemini_state_init(&st);
  assert_int_equal(st.usage.prompt, -1);
  assert_int_equal(parse("{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":["
                         "{\"text\":\"Thinking about it\",\"thought\":true},{\"text\":\"Hel\"}]}}],"
                         "\"usageMetadata\":{\"promptTokenCount\":10,\"totalTokenCount\":10},"
                         "\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"abc\"}",
                         &r, &st),
                   0);
  assert_int_equal(
      parse("{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"lo\"},"
            "{\"thoughtSignature\":\"xyz\",\"text\":\"!\"}]},\"finishReason\":\"STOP\"}],"
            "\"usageMetadata\":{\"promptTokenCount\":10,\"candidatesTokenCount\":3,"
            "\"thoughtsTokenCount\":50,\"cachedContentTokenCount\":2,"
            "\"toolUsePromptTokenCount\":1,\"totalTokenCount\":63},"
            "\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"abc\"}",
            &r, &st),
      0);
  assert_string_equal(gkp__dynbuf_ptr(&r.text), "Hello!");
  assert_string_equal(gkp__dynbuf_ptr(&r.thoughts), "Thinking about it");
  assert_int_equal(st.text_bytes, 6);
  assert_int_equal(st.thought_bytes, 17);
  assert_int_equal(st.responses, 2);
  assert_int_equal(st.usage_updates, 2);
  assert_int_equal(st.usage.prompt, 10);
  assert_int_equal(st.usage.candidates, 3);
  assert_int_equal(st.usage.thoughts, 50);
  assert_int_equal(st.usage.cached, 2);
  assert_int_equal(st.usage.tool_use, 1);
  assert_int_equal(st.usage.total, 63);
  assert_string_equal(st.finish_reason, "STOP");
  assert_string_equal(st.model_version, "gemini-2.5-flash");
  assert_string_equal(st.response_id, "abc");
  assert_false(st.is_error);
  char msg[256];
  assert_int_equal(gkp__gemini_judge(&st, msg, sizeof msg), GKP__JUDGE_OK);
  assert_string_equal(msg, "");
  rec_free(&r);
}

static void test_parse_array_and_images(void **state) {
  (void)state;
  sink_rec r;
  rec_init(&r);
  gkp__gemini_state st;
  gkp__gemini_state_init(&st);
  assert_int_equal(parse("[{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Here: \"}]}}]},\n"
                         " {\"candidates\":[{\"content\":{\"parts\":[{\"inlineData\":{\"mimeType\":"
                         "\"image/png\",\"data\":\"" PNG_B64 "\"}},"
                         "{\"inlineData\":{\"mimeType\":\"image/png\",\"data\":\"" PNG_B64 "\"},"
                         "\"thought\":true}]},\"finishReason\":\"STOP\"}]}]",
                         &r, &st),
                   0);
  assert_string_equal(gkp__dynbuf_ptr(&r.text), "Here: ");
  assert_int_equal(r.images, 1);
  assert_int_equal(r.thought_images, 1);
  assert_int_equal(st.images, 1);
  assert_string_equal(r.mime, "image/png");
  assert_int_equal(r.image_len, PNG_LEN);
  assert_memory_equal(r.image, PNG, PNG_LEN);
  rec_free(&r);
}

static void test_parse_code_parts(void **state) {
  (void)state;
  sink_rec r;
  rec_init(&r);
  gkp__gemini_state st;
  gkp__gemini_state_init(&st);
  assert_int_equal(
      parse("{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Run:\"},"
            "{\"executableCode\":{\"language\":\"PYTHON\",\"code\":\"print(1)\"}},"
            "{\"codeExecutionResult\":{\"outcome\":\"OUTCOME_OK\",\"output\":\"1\\n\"}}]},"
            "\"finishReason\":\"STOP\"}]}",
            &r, &st),
      0);
  assert_string_equal(gkp__dynbuf_ptr(&r.text), "Run:\n```python\nprint(1)\n```\n\n```\n1\n```\n");
  rec_free(&r);
}

static void test_judge_failures(void **state) {
  (void)state;
  static const struct {
    const char *json;
    int verdict;
    const char *msg;
  } cases[] = {
      {"{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"x\"}]},\"finishReason\":\"SAFETY\"}]"
       "}",
       GKP__JUDGE_CONTENT,
       "the answer was blocked by Google's safety filter (finishReason SAFETY)"},
      {"{\"candidates\":[{\"finishReason\":\"RECITATION\"}]}", GKP__JUDGE_CONTENT,
       "the answer was stopped because it recited protected material (finishReason "
       "RECITATION)"},
      {"{\"candidates\":[{\"finishReason\":\"IMAGE_SAFETY\"}]}", GKP__JUDGE_CONTENT,
       "the image was blocked by Google's safety filter (finishReason IMAGE_SAFETY)"},
      {"{\"candidates\":[{\"finishReason\":\"SOMETHING_NEW\"}]}", GKP__JUDGE_CONTENT,
       "the answer ended abnormally (finishReason SOMETHING_NEW)"},
      {"{\"promptFeedback\":{\"blockReason\":\"PROHIBITED_CONTENT\"},"
       "\"usageMetadata\":{\"promptTokenCount\":5}}",
       GKP__JUDGE_CONTENT, "the prompt was blocked (blockReason PROHIBITED_CONTENT)"},
      {"{\"promptFeedback\":{\"blockReason\":\"SAFETY\"}}", GKP__JUDGE_CONTENT,
       "the prompt was blocked by Google's safety filter (blockReason SAFETY)"},
      {"{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"x\"}]},"
       "\"finishReason\":\"MAX_TOKENS\"}]}",
       GKP__JUDGE_OK, "the answer was cut at maxOutputTokens (finishReason MAX_TOKENS)"},
      {"{\"candidates\":[{\"finishReason\":\"FINISH_REASON_UNSPECIFIED\"}]}", GKP__JUDGE_OK, ""},
      {"{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"x\"}]}}]}", GKP__JUDGE_TRUNCATED,
       "the answer ended without a finishReason (truncated)"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sink_rec r;
    rec_init(&r);
    gkp__gemini_state st;
    gkp__gemini_state_init(&st);
    assert_int_equal(parse(cases[i].json, &r, &st), 0);
    char msg[256];
    assert_int_equal(gkp__gemini_judge(&st, msg, sizeof msg), cases[i].verdict);
    assert_string_equal(msg, cases[i].msg);
    rec_free(&r);
  }
}

/* Reads the raw "body" of a fixture from GKP_FIXTURES/gemini-errors. */
static char *fixture_body(const char *name) {
  const char *dir = getenv("GKP_FIXTURES");
  if (dir == NULL) {
    return NULL;
  }
  char path[1024];
  snprintf(path, sizeof path, "%s/gemini-errors/%s", dir, name);
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    return NULL;
  }
  gkp__dynbuf b;
  gkp__dynbuf_init(&b, 1 << 20);
  char buf[4096];
  for (;;) {
    size_t n = fread(buf, 1, sizeof buf, f);
    if (n == 0) {
      break;
    }
    gkp__dynbuf_add(&b, buf, n);
  }
  fclose(f);
  cJSON *root = cJSON_Parse(gkp__dynbuf_ptr(&b));
  gkp__dynbuf_reset(&b);
  cJSON *body = cJSON_GetObjectItemCaseSensitive(root, "body");
  char *s = cJSON_IsString(body) ? strdup(body->valuestring) : NULL;
  cJSON_Delete(root);
  return s;
}

static void test_error_envelopes(void **state) {
  (void)state;
  sink_rec r;
  rec_init(&r);
  gkp__gemini_state st;
  gkp__gemini_state_init(&st);
  assert_int_equal(
      parse("{\n  \"error\": {\n    \"code\": 503,\n    \"message\": \"The model is overloaded.\n"
            "Please try again later.\",\n    \"status\": \"UNAVAILABLE\"\n  }\n}\n",
            &r, &st),
      0);
  assert_true(st.is_error);
  assert_int_equal(st.error_code, 503);
  assert_string_equal(st.error_status, "UNAVAILABLE");
  assert_string_equal(st.error_message, "The model is overloaded. Please try again later.");

  /* Real bodies from the fixtures, plain and array-framed. */
  const char *files[] = {"429_per_day_free_tier.json", "400_api_key_invalid_array_framed.json"};
  const int codes[] = {429, 400};
  for (int i = 0; i < 2; i++) {
    char *body = fixture_body(files[i]);
    if (body == NULL) {
      print_message("fixture %s not found; skipped\n", files[i]);
      continue;
    }
    gkp__gemini_state_init(&st);
    assert_int_equal(parse(body, &r, &st), 0);
    assert_true(st.is_error);
    assert_int_equal(st.error_code, codes[i]);
    free(body);
  }
  /* An error after a good element of an array stops there. */
  gkp__gemini_state_init(&st);
  assert_int_equal(parse("[{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}]},"
                         "{\"error\":{\"code\":500,\"status\":\"INTERNAL\"}},"
                         "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"b\"}]}}]}]",
                         &r, &st),
                   0);
  assert_true(st.is_error);
  assert_string_equal(gkp__dynbuf_ptr(&r.text), "a");
  rec_free(&r);
}

static void test_parse_malformed(void **state) {
  (void)state;
  sink_rec r;
  rec_init(&r);
  gkp__gemini_state st;
  gkp__gemini_state_init(&st);
  gkp_error e = {0};
  assert_int_equal(gkp__gemini_parse("{\"candidates\":", 14, &rec_sink, &r, &st, &e), -EBADMSG);
  assert_int_equal(parse("42", &r, &st), -EBADMSG);
  assert_int_equal(parse("[1]", &r, &st), -EBADMSG);
  assert_int_equal(
      parse("{\"candidates\":[{\"content\":{\"parts\":[{\"inlineData\":{\"data\":\"!!\"}}]}}]}", &r,
            &st),
      -EBADMSG);
  /* A sink's non-zero return stops and is returned. */
  r.stop = 7;
  assert_int_equal(parse("{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"},"
                         "{\"text\":\"b\"}]}}]}",
                         &r, &st),
                   7);
  assert_string_equal(gkp__dynbuf_ptr(&r.text), "a");
  rec_free(&r);
}

static void test_model_path(void **state) {
  (void)state;
  assert_string_equal(gkp__gemini_model_path("models/gemini-2.5-flash"), "gemini-2.5-flash");
  assert_string_equal(gkp__gemini_model_path("gemini-3-pro-preview"), "gemini-3-pro-preview");
  assert_null(gkp__gemini_model_path("gemini?key=x"));
  assert_null(gkp__gemini_model_path("../x"));
  assert_null(gkp__gemini_model_path(""));
  assert_null(gkp__gemini_model_path("models/"));
  assert_null(gkp__gemini_model_path(NULL));
  assert_string_equal(gkp__gemini_status_name(GKP__GEMINI_STREAM_ERROR), "stream_error");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_body_text_only),
      cmocka_unit_test(test_body_like_the_sdk),
      cmocka_unit_test(test_body_context_and_some_tools),
      cmocka_unit_test(test_thinking_level_vs_budget),
      cmocka_unit_test(test_mime_detection),
      cmocka_unit_test(test_image_rejections),
      cmocka_unit_test(test_request_validation),
      cmocka_unit_test(test_count_body),
      cmocka_unit_test(test_estimate),
      cmocka_unit_test(test_base64),
      cmocka_unit_test(test_parse_stream_chunks),
      cmocka_unit_test(test_parse_array_and_images),
      cmocka_unit_test(test_parse_code_parts),
      cmocka_unit_test(test_judge_failures),
      cmocka_unit_test(test_error_envelopes),
      cmocka_unit_test(test_parse_malformed),
      cmocka_unit_test(test_model_path),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
