/*
 * test_classify.c - gkp_classify against every real error body in
 * $GKP_FIXTURES/gemini-errors, variants of them (framing, detail order,
 * missing parts, truncation, mid-stream) and hand-made bodies for each rule.
 *
 * Every body is handed over in a malloc'd buffer of exactly its length, so
 * AddressSanitizer catches any read past `len`.
 */
/* cmocka.h needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <cjson/cJSON.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gkp.h"

#define MAX_FIXTURES 128

struct fixture {
  char name[256];
  int status;
  char *body;
  size_t len;
  int kind;
  cJSON *envelope; /* the {"error":…} object of the body, NULL if none */
};

static struct fixture fixtures[MAX_FIXTURES];
static int nfixtures;

/* What a fixture's own file does not say: the precise numbers it must give. */
static const struct expect {
  const char *name;
  int64_t retry_ms;
  int64_t learned_limit;
  int learned_metric;
  int kind_without_details; /* after removing error.details */
} expects[] = {
    {"429_input_tokens_per_minute_free_tier.json", 26000, 250000, GKP_KIND_TPM,
     GKP_KIND_UNKNOWN_429},
    {"429_per_day_free_tier.json", 22000, 250, GKP_KIND_RPD, GKP_KIND_UNKNOWN_429},
    {"429_limit_zero_no_free_tier.json", 10690, -1, GKP_KIND_NONE, GKP_KIND_NO_FREE_TIER},
    {"429_prepay_credits_depleted.json", -1, -1, GKP_KIND_NONE, GKP_KIND_BILLING},
    {"400_api_key_invalid_array_framed.json", -1, -1, GKP_KIND_NONE, GKP_KIND_INVALID_KEY},
    {"404_model_not_found.json", -1, -1, GKP_KIND_NONE, GKP_KIND_MODEL_NOT_FOUND},
    {"503_model_overloaded.json", -1, -1, GKP_KIND_NONE, GKP_KIND_SERVER},
};

static const struct expect *expect_of(const char *name) {
  for (size_t i = 0; i < sizeof expects / sizeof expects[0]; i++) {
    if (strcmp(expects[i].name, name) == 0) {
      return &expects[i];
    }
  }
  return NULL;
}

#define assert_i64(actual, expected)                                                               \
  do {                                                                                             \
    int64_t a_ = (actual), e_ = (expected);                                                        \
    if (a_ != e_) {                                                                                \
      fail_msg("%s = %" PRId64 ", expected %" PRId64 " (%s)", #actual, a_, e_, #expected);         \
    }                                                                                              \
  } while (0)

#define assert_kind(v, k)                                                                          \
  do {                                                                                             \
    if ((v).kind != (k)) {                                                                         \
      fail_msg("kind %s, expected %s (message \"%s\")", gkp_kind_name((v).kind), gkp_kind_name(k), \
               (v).message);                                                                       \
    }                                                                                              \
  } while (0)

/* ---- Helpers ------------------------------------------------------------- */

static int expected_action(int kind) {
  switch (kind) {
  case GKP_KIND_NO_FREE_TIER:
  case GKP_KIND_MODEL_NOT_FOUND:
    return GKP_ACT_FALLBACK;
  case GKP_KIND_BAD_REQUEST:
    return GKP_ACT_FAIL;
  default:
    return GKP_ACT_RETRY;
  }
}

static int valid_utf8(const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  while (*p != '\0') {
    int n = *p < 0x80             ? 1
            : (*p & 0xe0) == 0xc0 ? 2
            : (*p & 0xf0) == 0xe0 ? 3
            : (*p & 0xf8) == 0xf0 ? 4
                                  : 0;
    if (n == 0 || *p == 0xc0 || *p == 0xc1) {
      return 0;
    }
    for (int k = 1; k < n; k++) {
      if ((p[k] & 0xc0) != 0x80) {
        return 0;
      }
    }
    p += n;
  }
  return 1;
}

/* Whether s holds "AIza" followed by 35 key characters. */
static int has_key(const char *s) {
  for (const char *p = strstr(s, "AIza"); p != NULL; p = strstr(p + 1, "AIza")) {
    int n = 0;
    while (p[4 + n] != '\0' && (strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                       "0123456789_-",
                                       p[4 + n]) != NULL)) {
      n++;
    }
    if (n >= 35) {
      return 1;
    }
  }
  return 0;
}

/* What every verdict must satisfy. */
static void check_sane(const gkp_verdict *v) {
  size_t len = strnlen(v->message, sizeof v->message);
  if (len >= sizeof v->message) {
    fail_msg("message not NUL-terminated");
  }
  if (v->kind <= GKP_KIND_NONE || v->kind >= GKP_KIND_COUNT) {
    fail_msg("kind %d out of range", v->kind);
  }
  if (v->action != expected_action(v->kind)) {
    fail_msg("kind %s with action %d", gkp_kind_name(v->kind), v->action);
  }
  assert_int_equal(v->key_wide,
                   v->kind == GKP_KIND_BILLING || v->kind == GKP_KIND_INVALID_KEY ? 1 : 0);
  assert_i64(v->cooldown_until_ms, 0);
  assert_true(v->retry_ms >= -1);
  assert_true(v->learned_limit >= -1);
  if (len == 0) {
    fail_msg("empty message");
  }
  if (!valid_utf8(v->message)) {
    fail_msg("message is not valid UTF-8: \"%s\"", v->message);
  }
  if (has_key(v->message)) {
    fail_msg("message shows an API key: \"%s\"", v->message);
  }
  if (strstr(v->message, "  ") != NULL || v->message[0] == ' ' || v->message[len - 1] == ' ' ||
      strpbrk(v->message, "\n\r\t") != NULL) {
    fail_msg("whitespace not collapsed: \"%s\"", v->message);
  }
}

/* Classifies n bytes of s from a buffer of exactly n bytes. */
static gkp_verdict classify_n(int status, const char *s, size_t n) {
  gkp_verdict v;
  char *buf = malloc(n > 0 ? n : 1);
  assert_non_null(buf);
  if (n > 0) {
    memcpy(buf, s, n);
  }
  memset(&v, 0xa5, sizeof v);
  gkp_classify(status, buf, n, &v);
  free(buf);
  check_sane(&v);
  return v;
}

static gkp_verdict classify_str(int status, const char *s) {
  return classify_n(status, s, strlen(s));
}

/* Classifies a cJSON tree printed compactly, and frees the text. */
static gkp_verdict classify_json(int status, const cJSON *json) {
  char *text = cJSON_PrintUnformatted(json);
  assert_non_null(text);
  gkp_verdict v = classify_str(status, text);
  free(text);
  return v;
}

/* The same verdict, but for http_status. */
static void assert_same_verdict(const gkp_verdict *a, const gkp_verdict *b) {
  assert_kind(*a, b->kind);
  assert_int_equal(a->action, b->action);
  assert_i64(a->retry_ms, b->retry_ms);
  assert_i64(a->learned_limit, b->learned_limit);
  assert_int_equal(a->learned_metric, b->learned_metric);
  assert_int_equal(a->key_wide, b->key_wide);
  assert_string_equal(a->message, b->message);
}

/* A fake API key, built at run time so no key-like literal is in the source. */
static void fake_key(char *out) {
  memcpy(out, "AIza", 4);
  for (int i = 0; i < 35; i++) {
    out[4 + i] =
        "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_-"[(i * 7 + 3) % 64];
  }
  out[39] = '\0';
}

/* An error envelope {"error":{code,message,status,details}}, as a tree.
 * details is JSON text of an array (NULL: no details). */
static cJSON *envelope(int code, const char *status, const char *message, const char *details) {
  cJSON *root = cJSON_CreateObject();
  cJSON *err = cJSON_AddObjectToObject(root, "error");
  if (code != 0) {
    cJSON_AddNumberToObject(err, "code", code);
  }
  if (message != NULL) {
    cJSON_AddStringToObject(err, "message", message);
  }
  if (status != NULL) {
    cJSON_AddStringToObject(err, "status", status);
  }
  if (details != NULL) {
    cJSON *d = cJSON_Parse(details);
    if (d == NULL) {
      fail_msg("bad details in the test: %s", details);
    }
    cJSON_AddItemToObject(err, "details", d);
  }
  return root;
}

static gkp_verdict classify_envelope(int http, int code, const char *status, const char *message,
                                     const char *details) {
  cJSON *root = envelope(code, status, message, details);
  gkp_verdict v = classify_json(http, root);
  cJSON_Delete(root);
  return v;
}

#define QUOTA_MSG                                                                                  \
  "You exceeded your current quota, please check your plan and billing details. For more "         \
  "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."
#define QF_HEAD "{\"@type\":\"type.googleapis.com/google.rpc.QuotaFailure\",\"violations\":["
#define HELP                                                                                       \
  "{\"@type\":\"type.googleapis.com/google.rpc.Help\",\"links\":[{\"description\":\"Learn "        \
  "more\",\"url\":\"https://ai.google.dev/gemini-api/docs/rate-limits\"}]}"
#define RETRY(d) "{\"@type\":\"type.googleapis.com/google.rpc.RetryInfo\",\"retryDelay\":\"" d "\"}"
#define VIOL(metric, id, value)                                                                    \
  "{\"quotaMetric\":\"generativelanguage.googleapis.com/" metric "\",\"quotaId\":\"" id            \
  "\",\"quotaDimensions\":{\"location\":\"global\",\"model\":\"gemini-2.5-flash\"}" value "}"
#define VALUE(n) ",\"quotaValue\":\"" n "\""
#define RPM_ID "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
#define RPD_ID "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
#define TPM_ID "GenerateContentInputTokensPerModelPerMinute-FreeTier"
#define REQ_METRIC "generate_content_free_tier_requests"
#define TOK_METRIC "generate_content_free_tier_input_token_count"

static gkp_verdict quota429(const char *message, const char *details) {
  return classify_envelope(429, 429, "RESOURCE_EXHAUSTED", message, details);
}

/* ---- Fixtures ------------------------------------------------------------ */

static int kind_of_fixture(const char *name) {
  static const struct {
    const char *fixture;
    int kind;
  } map[] = {
      {"per_minute_tokens", GKP_KIND_TPM},
      {"per_minute_requests", GKP_KIND_RPM},
      {"per_day", GKP_KIND_RPD},
      {"server_overloaded", GKP_KIND_SERVER},
  };
  for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
    if (strcmp(map[i].fixture, name) == 0) {
      return map[i].kind;
    }
  }
  for (int k = GKP_KIND_RPM; k < GKP_KIND_COUNT; k++) {
    if (strcmp(gkp_kind_name(k), name) == 0) {
      return k;
    }
  }
  return -1;
}

static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    return NULL;
  }
  char *buf = NULL;
  size_t len = 0, cap = 0, got;
  do {
    if (cap - len < 4096) {
      cap = cap * 2 + 4096;
      buf = realloc(buf, cap + 1);
      assert_non_null(buf);
    }
    got = fread(buf + len, 1, cap - len, f);
    len += got;
  } while (got > 0);
  fclose(f);
  buf[len] = '\0';
  return buf;
}

static int by_name(const void *a, const void *b) {
  return strcmp(((const struct fixture *)a)->name, ((const struct fixture *)b)->name);
}

static int load_fixtures(void **state) {
  (void)state;
  const char *root = getenv("GKP_FIXTURES");
  char dir[4096], path[8192];
  if (root == NULL) {
    fprintf(stderr, "GKP_FIXTURES is not set\n");
    return -1;
  }
  snprintf(dir, sizeof dir, "%s/gemini-errors", root);
  DIR *d = opendir(dir);
  if (d == NULL) {
    fprintf(stderr, "cannot open %s\n", dir);
    return -1;
  }
  struct dirent *e;
  while ((e = readdir(d)) != NULL && nfixtures < MAX_FIXTURES) {
    size_t n = strlen(e->d_name);
    if (n < 6 || strcmp(e->d_name + n - 5, ".json") != 0) {
      continue;
    }
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    char *text = read_file(path);
    cJSON *json = text != NULL ? cJSON_Parse(text) : NULL;
    free(text);
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(json, "http_status");
    const cJSON *body = cJSON_GetObjectItemCaseSensitive(json, "body");
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(json, "kind");
    if (!cJSON_IsNumber(status) || !cJSON_IsString(body) || !cJSON_IsString(kind)) {
      fprintf(stderr, "%s: not a fixture (http_status, body, kind)\n", path);
      closedir(d);
      return -1;
    }
    struct fixture *f = &fixtures[nfixtures++];
    snprintf(f->name, sizeof f->name, "%s", e->d_name);
    f->status = status->valueint;
    f->body = strdup(body->valuestring);
    f->len = strlen(f->body);
    f->kind = kind_of_fixture(kind->valuestring);
    if (f->kind < 0) {
      fprintf(stderr, "%s: unknown kind \"%s\"\n", path, kind->valuestring);
      closedir(d);
      return -1;
    }
    cJSON *parsed = cJSON_Parse(f->body);
    cJSON *obj = cJSON_IsArray(parsed) ? cJSON_DetachItemFromArray(parsed, 0) : parsed;
    if (obj != parsed) {
      cJSON_Delete(parsed);
    }
    f->envelope = cJSON_GetObjectItemCaseSensitive(obj, "error") != NULL ? obj : NULL;
    if (f->envelope == NULL) {
      cJSON_Delete(obj);
    }
    cJSON_Delete(json);
  }
  closedir(d);
  qsort(fixtures, (size_t)nfixtures, sizeof fixtures[0], by_name);
  return nfixtures > 0 ? 0 : -1;
}

static int free_fixtures(void **state) {
  (void)state;
  for (int i = 0; i < nfixtures; i++) {
    free(fixtures[i].body);
    cJSON_Delete(fixtures[i].envelope);
  }
  return 0;
}

/* Google's message with whitespace collapsed, as the verdict should show it. */
static void collapsed(const char *s, char *out, size_t size) {
  size_t n = 0;
  int space = 0;
  for (; *s != '\0' && n + 1 < size; s++) {
    if (strchr(" \t\r\n", *s) != NULL) {
      space = n > 0;
      continue;
    }
    if (space && n + 2 < size) {
      out[n++] = ' ';
    }
    space = 0;
    out[n++] = *s;
  }
  out[n] = '\0';
}

static const char *fixture_message(const struct fixture *f) {
  const cJSON *err = cJSON_GetObjectItemCaseSensitive(f->envelope, "error");
  const cJSON *msg = cJSON_GetObjectItemCaseSensitive(err, "message");
  return cJSON_IsString(msg) ? msg->valuestring : NULL;
}

static int fixture_code(const struct fixture *f) {
  const cJSON *err = cJSON_GetObjectItemCaseSensitive(f->envelope, "error");
  const cJSON *code = cJSON_GetObjectItemCaseSensitive(err, "code");
  return cJSON_IsNumber(code) ? code->valueint : f->status;
}

static void test_fixtures(void **state) {
  (void)state;
  size_t known = 0;
  for (int i = 0; i < nfixtures; i++) {
    const struct fixture *f = &fixtures[i];
    print_message("fixture %s\n", f->name);
    gkp_verdict v = classify_n(f->status, f->body, f->len);
    assert_kind(v, f->kind);
    assert_int_equal(v.action, expected_action(f->kind));
    assert_int_equal(v.http_status, f->status);
    const struct expect *e = expect_of(f->name);
    if (e != NULL) {
      known++;
      assert_i64(v.retry_ms, e->retry_ms);
      assert_i64(v.learned_limit, e->learned_limit);
      assert_int_equal(v.learned_metric, e->learned_metric);
    }
    const char *msg = fixture_message(f);
    if (msg != NULL) {
      char want[4096];
      collapsed(msg, want, sizeof want);
      if (strlen(want) < GKP_REASON_MAX) {
        assert_string_equal(v.message, want);
      } else {
        size_t n = strlen(v.message);
        assert_true(n <= GKP_REASON_MAX - 1);
        assert_true(n > GKP_REASON_MAX - 10);
        assert_string_equal(v.message + n - 3, "\xe2\x80\xa6");
        assert_memory_equal(v.message, want, n - 3);
      }
    }
  }
  /* The fixtures this file knows the numbers of are all still there. */
  assert_int_equal(known, sizeof expects / sizeof expects[0]);
}

/* Compact, array-framed, SSE-framed, mid-stream, details reversed. */
static void test_fixture_framings(void **state) {
  (void)state;
  for (int i = 0; i < nfixtures; i++) {
    const struct fixture *f = &fixtures[i];
    if (f->envelope == NULL) {
      continue;
    }
    print_message("fixture %s\n", f->name);
    gkp_verdict base = classify_n(f->status, f->body, f->len);
    char *compact = cJSON_PrintUnformatted(f->envelope);
    char *pretty = cJSON_Print(f->envelope);
    size_t n = strlen(compact) + strlen(pretty) + 256;
    char *buf = malloc(n);
    assert_non_null(buf);
    gkp_verdict v;

    v = classify_str(f->status, compact);
    assert_same_verdict(&v, &base);
    v = classify_str(f->status, pretty);
    assert_same_verdict(&v, &base);
    snprintf(buf, n, "[%s\n]\n", compact);
    v = classify_str(f->status, buf);
    assert_same_verdict(&v, &base);
    snprintf(buf, n, "[%s,\n%s]", pretty, compact);
    v = classify_str(f->status, buf);
    assert_same_verdict(&v, &base);
    snprintf(buf, n, "data: %s\r\n\r\n", compact);
    v = classify_str(f->status, buf);
    assert_same_verdict(&v, &base);
    snprintf(buf, n, "data:%s\n\n", compact);
    v = classify_str(f->status, buf);
    assert_same_verdict(&v, &base);

    /* Mid-stream: HTTP 200, bare JSON or a data: event after other events. */
    v = classify_str(200, compact);
    assert_same_verdict(&v, &base);
    assert_int_equal(v.http_status, fixture_code(f));
    snprintf(buf, n,
             "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hel\"}]}}]}\r\n\r\n"
             "%s\n",
             pretty);
    v = classify_str(200, buf);
    assert_same_verdict(&v, &base);
    assert_int_equal(v.http_status, fixture_code(f));
    snprintf(buf, n, "data: {\"candidates\":[]}\r\n\r\ndata: %s\r\n\r\n", compact);
    v = classify_str(200, buf);
    assert_same_verdict(&v, &base);
    assert_int_equal(v.http_status, fixture_code(f));

    /* Details in reverse order. */
    cJSON *copy = cJSON_Duplicate(f->envelope, 1);
    cJSON *details =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItem(copy, "error"), "details");
    if (cJSON_IsArray(details)) {
      cJSON *rev = cJSON_CreateArray();
      while (cJSON_GetArraySize(details) > 0) {
        cJSON_AddItemToArray(rev,
                             cJSON_DetachItemFromArray(details, cJSON_GetArraySize(details) - 1));
      }
      cJSON_ReplaceItemInObject(cJSON_GetObjectItem(copy, "error"), "details", rev);
      v = classify_json(f->status, copy);
      assert_same_verdict(&v, &base);
    }
    cJSON_Delete(copy);
    free(buf);
    free(compact);
    free(pretty);
  }
}

/* Details removed, quotaValue removed. */
static void test_fixture_missing_parts(void **state) {
  (void)state;
  for (int i = 0; i < nfixtures; i++) {
    const struct fixture *f = &fixtures[i];
    if (f->envelope == NULL) {
      continue;
    }
    print_message("fixture %s\n", f->name);
    gkp_verdict base = classify_n(f->status, f->body, f->len);
    const struct expect *e = expect_of(f->name);
    gkp_verdict v;

    cJSON *copy = cJSON_Duplicate(f->envelope, 1);
    cJSON_DeleteItemFromObject(cJSON_GetObjectItem(copy, "error"), "details");
    v = classify_json(f->status, copy);
    cJSON_Delete(copy);
    if (e != NULL) {
      assert_kind(v, e->kind_without_details);
      assert_i64(v.learned_limit, -1);
      /* Only the message's own hint is left. */
      assert_i64(v.retry_ms, e->kind_without_details == GKP_KIND_NO_FREE_TIER ? e->retry_ms : -1);
    }
    assert_string_equal(v.message, base.message);

    copy = cJSON_Duplicate(f->envelope, 1);
    cJSON *detail;
    cJSON_ArrayForEach(detail, cJSON_GetObjectItem(cJSON_GetObjectItem(copy, "error"), "details")) {
      cJSON *viol;
      cJSON_ArrayForEach(viol, cJSON_GetObjectItem(detail, "violations")) {
        cJSON_DeleteItemFromObject(viol, "quotaValue");
      }
    }
    v = classify_json(f->status, copy);
    cJSON_Delete(copy);
    assert_kind(v, base.kind);
    assert_i64(v.learned_limit, -1);
    assert_i64(v.retry_ms, base.retry_ms);
  }
}

/* The kinds a status allows whatever the body says. */
static int allowed_for_status(int status, int kind) {
  switch (status) {
  case 429:
    return kind == GKP_KIND_RPM || kind == GKP_KIND_TPM || kind == GKP_KIND_RPD ||
           kind == GKP_KIND_NO_FREE_TIER || kind == GKP_KIND_UNKNOWN_429 ||
           kind == GKP_KIND_BILLING;
  case 400:
    return kind == GKP_KIND_BAD_REQUEST || kind == GKP_KIND_INVALID_KEY;
  case 401:
  case 403:
    return kind == GKP_KIND_INVALID_KEY || kind == GKP_KIND_BILLING;
  case 402:
    return kind == GKP_KIND_BILLING;
  case 404:
    return kind == GKP_KIND_MODEL_NOT_FOUND;
  default:
    return status >= 500 ? kind == GKP_KIND_SERVER : 1;
  }
}

static void check_cut(const struct fixture *f, const gkp_verdict *base, int status,
                      const char *body, size_t cut) {
  gkp_verdict v = classify_n(status, body, cut);
  int st = status == 200 ? fixture_code(f) : status;
  if (!(allowed_for_status(st, v.kind) || (status == 200 && v.kind == GKP_KIND_SERVER))) {
    fail_msg("%s cut at %zu with HTTP %d: %s", f->name, cut, status, gkp_kind_name(v.kind));
  }
  /* A cut number is never learned, a cut hint never used. */
  if (v.learned_limit != -1 && v.learned_limit != base->learned_limit) {
    fail_msg("%s cut at %zu: learned %" PRId64, f->name, cut, v.learned_limit);
  }
  if (v.retry_ms != -1 && v.retry_ms != base->retry_ms) {
    fail_msg("%s cut at %zu: retry %" PRId64, f->name, cut, v.retry_ms);
  }
}

/* Truncated at every byte: no crash, no read past the cut, classified by status. */
static void test_fixture_truncated(void **state) {
  (void)state;
  for (int i = 0; i < nfixtures; i++) {
    const struct fixture *f = &fixtures[i];
    print_message("fixture %s\n", f->name);
    gkp_verdict base = classify_n(f->status, f->body, f->len);
    for (size_t cut = 0; cut <= f->len; cut++) {
      check_cut(f, &base, f->status, f->body, cut);
      check_cut(f, &base, 200, f->body, cut);
    }
    if (f->envelope != NULL) {
      char *compact = cJSON_PrintUnformatted(f->envelope);
      size_t n = strlen(compact) + 16;
      char *sse = malloc(n);
      snprintf(sse, n, "data: %s\r\n\r\n", compact);
      for (size_t cut = 0; cut <= strlen(sse); cut++) {
        check_cut(f, &base, f->status, sse, cut);
        check_cut(f, &base, 200, sse, cut);
      }
      free(sse);
      free(compact);
    }
    /* Cut just after the message: the words still count. */
    const char *msg = fixture_message(f);
    const char *at = msg != NULL ? strstr(f->body, "\"status\"") : NULL;
    if (at != NULL && f->kind != GKP_KIND_TPM && f->kind != GKP_KIND_RPD) {
      gkp_verdict v = classify_n(f->status, f->body, (size_t)(at - f->body));
      assert_kind(v, f->kind);
    }
  }
}

/* ---- Hand-made bodies, rule by rule --------------------------------------- */

static void test_several_violations(void **state) {
  (void)state;
  gkp_verdict v;
  v = quota429(QUOTA_MSG, "[" QF_HEAD VIOL(REQ_METRIC, RPM_ID, VALUE("10")) "," VIOL(
                              REQ_METRIC, RPD_ID, VALUE("250")) "]}," RETRY("22s") "]");
  assert_kind(v, GKP_KIND_RPD);
  assert_int_equal(v.action, GKP_ACT_RETRY);
  assert_i64(v.learned_limit, 250);
  assert_int_equal(v.learned_metric, GKP_KIND_RPD);
  assert_i64(v.retry_ms, 22000);
  assert_int_equal(v.key_wide, 0);

  v = quota429(QUOTA_MSG,
               "[" RETRY("22s") "," QF_HEAD VIOL(REQ_METRIC, RPD_ID, VALUE("250")) "," VIOL(
                   REQ_METRIC, RPM_ID, VALUE("10")) "]}]");
  assert_kind(v, GKP_KIND_RPD);
  assert_i64(v.learned_limit, 250);

  v = quota429(QUOTA_MSG, "[" QF_HEAD VIOL(REQ_METRIC, RPM_ID, VALUE("10")) "," VIOL(
                              TOK_METRIC, TPM_ID, VALUE("250000")) "]}]");
  assert_kind(v, GKP_KIND_TPM);
  assert_i64(v.learned_limit, 250000);
  assert_int_equal(v.learned_metric, GKP_KIND_TPM);

  /* Violations in two QuotaFailure details. */
  v = quota429(QUOTA_MSG, "[" QF_HEAD VIOL(REQ_METRIC, RPM_ID, VALUE("10")) "]}," QF_HEAD VIOL(
                              REQ_METRIC, RPD_ID, VALUE("20")) "]}]");
  assert_kind(v, GKP_KIND_RPD);
  assert_i64(v.learned_limit, 20);

  v = quota429(QUOTA_MSG, "[" QF_HEAD VIOL(REQ_METRIC, RPM_ID, VALUE("15")) "]}," RETRY("7s") "]");
  assert_kind(v, GKP_KIND_RPM);
  assert_i64(v.learned_limit, 15);
  assert_int_equal(v.learned_metric, GKP_KIND_RPM);
  assert_i64(v.retry_ms, 7000);

  /* A violation with quotaValue "0" is no free tier, whatever else is there. */
  v = quota429(QUOTA_MSG, "[" QF_HEAD VIOL(REQ_METRIC, RPD_ID, VALUE("250")) "," VIOL(
                              REQ_METRIC, RPM_ID, VALUE("0")) "]}]");
  assert_kind(v, GKP_KIND_NO_FREE_TIER);
  assert_int_equal(v.action, GKP_ACT_FALLBACK);
  assert_i64(v.learned_limit, 0);
  assert_int_equal(v.learned_metric, GKP_KIND_RPM);
}

static void test_quota_words(void **state) {
  (void)state;
  gkp_verdict v;
  /* Paid-tier ids: no "FreeTier". */
  v = quota429(QUOTA_MSG,
               "[" QF_HEAD VIOL("generate_requests", "GenerateRequestsPerMinutePerProjectPerModel",
                                VALUE("2000")) "]}]");
  assert_kind(v, GKP_KIND_RPM);
  assert_i64(v.learned_limit, 2000);
  v = quota429(QUOTA_MSG, "[" QF_HEAD VIOL("generate_requests",
                                           "GenerateRequestsPerDayPerProjectPerModel", "") "]}]");
  assert_kind(v, GKP_KIND_RPD);
  assert_i64(v.learned_limit, -1);
  assert_int_equal(v.learned_metric, GKP_KIND_RPD);
  v = quota429(QUOTA_MSG, "[" QF_HEAD VIOL("generate_content_paid_tier_input_token_count",
                                           "GenerateContentPaidTierInputTokensPerModelPerMinute",
                                           VALUE("4000000")) "]}]");
  assert_kind(v, GKP_KIND_TPM);
  assert_i64(v.learned_limit, 4000000);
  /* "Daily" wording, any case. */
  v = quota429(QUOTA_MSG,
               "[" QF_HEAD VIOL("requests", "DailyRequestsPerProjectPerModel", VALUE("50")) "]}]");
  assert_kind(v, GKP_KIND_RPD);
  assert_i64(v.learned_limit, 50);
  v = quota429(QUOTA_MSG, "[" QF_HEAD VIOL("requests", "requests_daily_limit", "") "]}]");
  assert_kind(v, GKP_KIND_RPD);
  /* A violation naming no period counts for nothing. */
  v = quota429(QUOTA_MSG,
               "[" QF_HEAD VIOL("requests", "GenerateRequestsPerProject", VALUE("9")) "]}]");
  assert_kind(v, GKP_KIND_UNKNOWN_429);
  assert_i64(v.learned_limit, -1);
  /* Without @type: recognised by the fields. */
  v = quota429(QUOTA_MSG, "[{\"violations\":[" VIOL(REQ_METRIC, RPD_ID, VALUE("20")) "]}]");
  assert_kind(v, GKP_KIND_RPD);
  /* quotaValue as a number. */
  v = quota429(QUOTA_MSG, "[" QF_HEAD VIOL(REQ_METRIC, RPM_ID, ",\"quotaValue\":5") "]}]");
  assert_kind(v, GKP_KIND_RPM);
  assert_i64(v.learned_limit, 5);
  /* The message's metric lines when there are no violations. */
  v = quota429("You exceeded your current quota.\n* Quota exceeded for metric: "
               "generativelanguage.googleapis.com/generate_content_free_tier_input_token_count, "
               "limit: 250000, model: gemini-2.5-flash\nPlease retry in 31.2s.",
               NULL);
  assert_kind(v, GKP_KIND_TPM);
  assert_i64(v.learned_limit, 250000);
  assert_i64(v.retry_ms, 31200);
  v = quota429("* Quota exceeded for metric: generate_requests_per_day, limit: 20, model: x\n"
               "* Quota exceeded for metric: generate_requests_per_minute, limit: 5, model: x",
               NULL);
  assert_kind(v, GKP_KIND_RPD);
  assert_i64(v.learned_limit, 20);
  assert_int_equal(v.learned_metric, GKP_KIND_RPD);
  v = quota429("Quota exceeded for quota metric 'Generate Content API requests per minute' and "
               "limit 'GenerateContent request limit per minute for a region'",
               NULL);
  assert_kind(v, GKP_KIND_RPM);
}

static void test_limit_zero(void **state) {
  (void)state;
  static const struct {
    const char *message;
    int kind;
  } cases[] = {
      {"* Quota exceeded for metric: x, limit: 0, model: gemini-3-pro", GKP_KIND_NO_FREE_TIER},
      {"Quota exceeded for metric: x, limit: 0", GKP_KIND_NO_FREE_TIER},
      {"Quota exceeded, limit: 0 requests", GKP_KIND_NO_FREE_TIER},
      {"Quota exceeded, LIMIT:0.", GKP_KIND_NO_FREE_TIER},
      {"Quota exceeded, limit: 05, model: m", GKP_KIND_UNKNOWN_429},
      {"Quota exceeded, limit: 0.5, model: m", GKP_KIND_UNKNOWN_429},
      {"Quota exceeded, limit: 10, model: m", GKP_KIND_UNKNOWN_429},
      {"Gemini 2.5 Pro Preview doesn't have a free quota tier. Please use Gemini 2.5 Pro "
       "Experimental instead.",
       GKP_KIND_NO_FREE_TIER},
      {"This model does not have a free quota tier.", GKP_KIND_NO_FREE_TIER},
      {"The free tier is not available for this model.", GKP_KIND_NO_FREE_TIER},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    gkp_verdict v = quota429(cases[i].message, NULL);
    assert_kind(v, cases[i].kind);
    assert_i64(v.learned_limit, -1);
  }
  /* limit: 0 beats a per-day violation and a short retryDelay. */
  gkp_verdict v =
      quota429("* Quota exceeded for metric: x, limit: 0, model: m\nPlease retry in 9.5s.",
               "[" QF_HEAD VIOL(REQ_METRIC, RPD_ID, "") "]}," RETRY("9s") "]");
  assert_kind(v, GKP_KIND_NO_FREE_TIER);
  assert_int_equal(v.action, GKP_ACT_FALLBACK);
  assert_i64(v.retry_ms, 9500);
}

static void test_retry_hints(void **state) {
  (void)state;
  static const struct {
    const char *message;
    const char *delay; /* RetryInfo.retryDelay, NULL: none */
    int64_t retry_ms;
    int kind;
  } cases[] = {
      {"Please retry in 250ms.", NULL, 250, GKP_KIND_RPM},
      {"Resource exhausted. Retry after 3s", NULL, 3000, GKP_KIND_RPM},
      {"Please RETRY IN 1m4.5s.", NULL, 64500, GKP_KIND_RPM},
      {"Please retry in 0.0001s.", NULL, 1, GKP_KIND_RPM},
      {"Please retry in 10.689924287s.", "10s", 10690, GKP_KIND_RPM},
      {"Please retry in 30 seconds.", NULL, 30000, GKP_KIND_RPM},
      {QUOTA_MSG, "22s", 22000, GKP_KIND_RPM},
      {QUOTA_MSG, "1.5s", 1500, GKP_KIND_RPM},
      {QUOTA_MSG, "0.100s", 100, GKP_KIND_RPM},
      {QUOTA_MSG, "300s", 300000, GKP_KIND_RPM},
      /* A hint over 300 s with no quota information: a daily limit. */
      {QUOTA_MSG, "3600s", 3600000, GKP_KIND_RPD},
      {"Please retry in 2h13m.", NULL, 7980000, GKP_KIND_RPD},
      {"Please retry in 300.001s.", NULL, 300001, GKP_KIND_RPD},
      {"Please retry in a moment.", NULL, -1, GKP_KIND_UNKNOWN_429},
      {"Resource has been exhausted (e.g. check quota).", NULL, -1, GKP_KIND_UNKNOWN_429},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char details[256];
    snprintf(details, sizeof details, "[" HELP ",{\"retryDelay\":\"%s\"}]",
             cases[i].delay != NULL ? cases[i].delay : "");
    gkp_verdict v = quota429(cases[i].message, cases[i].delay != NULL ? details : NULL);
    print_message("case %zu: %s\n", i, cases[i].message);
    assert_i64(v.retry_ms, cases[i].retry_ms);
    assert_kind(v, cases[i].kind);
    assert_i64(v.learned_limit, -1);
  }
}

static void test_unknown_429(void **state) {
  (void)state;
  gkp_verdict v = quota429("Resource has been exhausted (e.g. check quota).", NULL);
  assert_kind(v, GKP_KIND_UNKNOWN_429);
  assert_int_equal(v.action, GKP_ACT_RETRY);
  assert_i64(v.retry_ms, -1);
  assert_string_equal(v.message, "Resource has been exhausted (e.g. check quota).");
  v = quota429(QUOTA_MSG, "[" HELP "]");
  assert_kind(v, GKP_KIND_UNKNOWN_429);
  v = classify_str(429, "");
  assert_kind(v, GKP_KIND_UNKNOWN_429);
  assert_string_equal(v.message, "HTTP 429 with an empty body");
  v = classify_str(429, "Too Many Requests");
  assert_kind(v, GKP_KIND_UNKNOWN_429);
  assert_string_equal(v.message, "HTTP 429: Too Many Requests");
  v = classify_str(429, "{\"error\":{\"code\":429,\"status\":\"RESOURCE_EXHAUSTED\"}}");
  assert_kind(v, GKP_KIND_UNKNOWN_429);
  assert_string_equal(v.message, "HTTP 429 RESOURCE_EXHAUSTED");
}

static void test_billing(void **state) {
  (void)state;
  gkp_verdict v;
  v = classify_envelope(402, 402, "RESOURCE_EXHAUSTED", "Your project is out of credits.", NULL);
  assert_kind(v, GKP_KIND_BILLING);
  assert_int_equal(v.key_wide, 1);
  assert_int_equal(v.action, GKP_ACT_RETRY);
  v = quota429("Your prepayment credits are depleted. Please go to AI Studio.", NULL);
  assert_kind(v, GKP_KIND_BILLING);
  v = classify_envelope(403, 403, "PERMISSION_DENIED",
                        "This API method requires billing. Please enable billing on project #1.",
                        NULL);
  assert_kind(v, GKP_KIND_BILLING);
  v = classify_envelope(403, 403, "PERMISSION_DENIED", "Billing needed.",
                        "[{\"@type\":\"type.googleapis.com/google.rpc.ErrorInfo\","
                        "\"reason\":\"BILLING_DISABLED\",\"domain\":\"googleapis.com\"}]");
  assert_kind(v, GKP_KIND_BILLING);
  v = classify_envelope(400, 400, "FAILED_PRECONDITION", "Link a billing account to continue.",
                        NULL);
  assert_kind(v, GKP_KIND_BILLING);
}

static void test_invalid_key(void **state) {
  (void)state;
  gkp_verdict v;
  v = classify_envelope(403, 403, "PERMISSION_DENIED",
                        "Your API key was reported as leaked. Please use another API key.", NULL);
  assert_kind(v, GKP_KIND_INVALID_KEY);
  assert_int_equal(v.key_wide, 1);
  assert_int_equal(v.action, GKP_ACT_RETRY);
  assert_string_equal(v.message,
                      "Your API key was reported as leaked. Please use another API key.");
  v = classify_envelope(403, 403, "PERMISSION_DENIED",
                        "Permission denied: Consumer 'api_key:x' has been suspended.", NULL);
  assert_kind(v, GKP_KIND_INVALID_KEY);
  v = classify_envelope(401, 401, "UNAUTHENTICATED",
                        "Request had invalid authentication credentials.", NULL);
  assert_kind(v, GKP_KIND_INVALID_KEY);
  static const char *const reasons[] = {"API_KEY_INVALID", "API_KEY_EXPIRED",
                                        "API_KEY_SERVICE_BLOCKED", "API_KEY_HTTP_REFERRER_BLOCKED"};
  for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++) {
    char details[256];
    snprintf(details, sizeof details,
             "[{\"@type\":\"type.googleapis.com/google.rpc.LocalizedMessage\",\"locale\":\"en-US\","
             "\"message\":\"x\"},{\"@type\":\"type.googleapis.com/google.rpc.ErrorInfo\","
             "\"reason\":\"%s\",\"domain\":\"googleapis.com\"}]",
             reasons[i]);
    v = classify_envelope(400, 400, "INVALID_ARGUMENT", "Bad key.", details);
    assert_kind(v, GKP_KIND_INVALID_KEY);
  }
  v = classify_envelope(400, 400, "INVALID_ARGUMENT", "API key expired. Please renew the API key.",
                        NULL);
  assert_kind(v, GKP_KIND_INVALID_KEY);
  v = classify_envelope(400, 400, "INVALID_ARGUMENT",
                        "API key not valid. Please pass a valid API key.", NULL);
  assert_kind(v, GKP_KIND_INVALID_KEY);
}

/* A 401/402/403/5xx whose body is not a Google error (a proxy's HTML page, a
 * captive portal, plain text, nothing) is server trouble: no key is disabled
 * or billed for it. */
static void test_not_google(void **state) {
  (void)state;
  static const struct {
    int status;
    const char *body;
  } cases[] = {
      {403, "<html><head><title>403 Forbidden</title></head><body><h1>Forbidden</h1>"
            "<p>Your API key is invalid or billing is not enabled.</p></body></html>"},
      {401, ""},
      {401, "Unauthorized: invalid api key"},
      {402, ""},
      {402, "<html><body>Payment Required: enable billing</body></html>"},
      {403, "Forbidden"},
      {403, "{\"error\": \"API key not valid\"}"},
      {403, "{\"message\": \"Your prepayment credits are depleted\"}"},
      {500, "Internal Server Error: API key not valid"},
      {400, "Bad Request: API key not valid"},
      {429, "Your prepayment credits are depleted"},
      {502, "<html>Bad Gateway</html>"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    gkp_verdict v = classify_str(cases[i].status, cases[i].body);
    if ((cases[i].status != 400 && cases[i].status != 429 && v.kind != GKP_KIND_SERVER) ||
        v.key_wide) {
      fail_msg("case %zu (HTTP %d): %s, key-wide %d", i, cases[i].status, gkp_kind_name(v.kind),
               v.key_wide);
    }
    /* A 400 that is not Google's fails the job: it is no key's fault either. */
    assert_int_equal(v.action, cases[i].status == 400 ? GKP_ACT_FAIL : GKP_ACT_RETRY);
  }
}

/* Structured details decide before message words: a per-minute QuotaFailure
 * whose message also says "enable billing" is rpm for the retry delay. */
static void test_structured_first(void **state) {
  (void)state;
  gkp_verdict v;
  v = quota429("Quota exceeded. Please enable billing to raise your limits.",
               "[" QF_HEAD VIOL("generate_content_free_tier_requests", RPM_ID,
                                VALUE("5")) "]}," HELP "," RETRY("21s") "]");
  assert_kind(v, GKP_KIND_RPM);
  assert_int_equal(v.key_wide, 0);
  assert_i64(v.retry_ms, 21000);
  assert_i64(v.learned_limit, 5);
  /* RetryInfo alone is structured too. */
  v = quota429("Your Credits Are Depleted.", "[" RETRY("22s") "]");
  assert_kind(v, GKP_KIND_RPM);
  assert_i64(v.retry_ms, 22000);
  /* The message's precise hint still refines the delay. */
  v = quota429(
      "Enable billing. Please retry in 3.5s.",
      "[" QF_HEAD VIOL("generate_content_free_tier_requests", RPM_ID, "") "]}," RETRY("21s") "]");
  assert_kind(v, GKP_KIND_RPM);
  assert_i64(v.retry_ms, 3500);
  /* Words about keys do not beat a quota violation either. */
  v = quota429("API key not valid.",
               "[" QF_HEAD VIOL("generate_content_free_tier_requests", RPD_ID, VALUE("250")) "]}]");
  assert_kind(v, GKP_KIND_RPD);
  assert_i64(v.learned_limit, 250);
  /* Structured ErrorInfo beats words the other way round too. */
  v = classify_envelope(
      403, 403, "PERMISSION_DENIED", "Please enable billing.",
      "[{\"@type\":\"type.googleapis.com/google.rpc.ErrorInfo\",\"reason\":\"API_KEY_INVALID\"}]");
  assert_kind(v, GKP_KIND_INVALID_KEY);
  /* Without details, the words decide. */
  v = quota429("Please enable billing on this project.", NULL);
  assert_kind(v, GKP_KIND_BILLING);
}

static void test_bad_request(void **state) {
  (void)state;
  gkp_verdict v;
  v = classify_envelope(400, 400, "FAILED_PRECONDITION",
                        "User location is not supported for the API use.", NULL);
  assert_kind(v, GKP_KIND_BAD_REQUEST);
  assert_int_equal(v.action, GKP_ACT_FAIL);
  assert_int_equal(v.key_wide, 0);
  assert_string_equal(v.message, "User location is not supported for the API use.");
  /* Mentions billing and the free tier, but it is the user's country. */
  v = classify_envelope(400, 400, "FAILED_PRECONDITION",
                        "Gemini API free tier is not available in your country. Please enable "
                        "billing on your project to use Gemini API.",
                        NULL);
  assert_kind(v, GKP_KIND_BAD_REQUEST);
  v = classify_envelope(400, 400, "INVALID_ARGUMENT",
                        "Invalid JSON payload received. Unknown name \"foo\".", NULL);
  assert_kind(v, GKP_KIND_BAD_REQUEST);
  assert_string_equal(v.message, "Invalid JSON payload received. Unknown name \"foo\".");
  v = classify_envelope(400, 400, "FAILED_PRECONDITION", "Precondition check failed.", NULL);
  assert_kind(v, GKP_KIND_BAD_REQUEST);
  v = classify_str(413, "");
  assert_kind(v, GKP_KIND_BAD_REQUEST);
  assert_string_equal(v.message, "HTTP 413 with an empty body");
  v = classify_str(422, "<html><body>nope</body></html>");
  assert_kind(v, GKP_KIND_BAD_REQUEST);
  assert_string_equal(v.message, "HTTP 422 with an unreadable body");
  v = classify_envelope(404, 404, "NOT_FOUND", "models/nope is not found for API version v1beta.",
                        NULL);
  assert_kind(v, GKP_KIND_MODEL_NOT_FOUND);
  assert_int_equal(v.action, GKP_ACT_FALLBACK);
  assert_int_equal(v.key_wide, 0);
}

static void test_server(void **state) {
  (void)state;
  static const int statuses[] = {500, 502, 503, 504, 408, 0};
  for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
    gkp_verdict v = classify_str(statuses[i], "");
    assert_kind(v, GKP_KIND_SERVER);
    assert_int_equal(v.action, GKP_ACT_RETRY);
    assert_int_equal(v.http_status, statuses[i]);
  }
  gkp_verdict v;
  v = classify_envelope(500, 500, "INTERNAL", "An internal error has occurred.", NULL);
  assert_kind(v, GKP_KIND_SERVER);
  assert_string_equal(v.message, "An internal error has occurred.");
  v = classify_envelope(504, 504, "DEADLINE_EXCEEDED",
                        "Deadline expired before operation could complete.", NULL);
  assert_kind(v, GKP_KIND_SERVER);
  v = classify_str(502, "<html><head><title>502 Bad Gateway</title></head></html>");
  assert_kind(v, GKP_KIND_SERVER);
  assert_string_equal(v.message, "HTTP 502 with an unreadable body");
  v = classify_str(502, "Bad Gateway\n");
  assert_string_equal(v.message, "HTTP 502: Bad Gateway");
  v = classify_str(503, "");
  assert_string_equal(v.message, "HTTP 503 with an empty body");
  v = classify_str(0, "");
  assert_string_equal(v.message, "connection failed");
  v = classify_str(0, "Operation timed out after 30000 milliseconds");
  assert_kind(v, GKP_KIND_SERVER);
  assert_string_equal(v.message, "connection failed: Operation timed out after 30000 milliseconds");
  /* A transport failure is a server problem even with a quota body. */
  v = classify_envelope(0, 429, "RESOURCE_EXHAUSTED", QUOTA_MSG, NULL);
  assert_kind(v, GKP_KIND_SERVER);
  assert_int_equal(v.http_status, 0);
}

static void test_midstream(void **state) {
  (void)state;
  gkp_verdict v;
  v = classify_envelope(200, 503, "UNAVAILABLE", "The model is overloaded. Please try again later.",
                        NULL);
  assert_kind(v, GKP_KIND_SERVER);
  assert_int_equal(v.http_status, 503);
  v = classify_envelope(200, 429, "RESOURCE_EXHAUSTED", QUOTA_MSG,
                        "[" QF_HEAD VIOL(REQ_METRIC, RPM_ID, VALUE("10")) "]}]");
  assert_kind(v, GKP_KIND_RPM);
  assert_int_equal(v.http_status, 429);
  /* No code: the RPC status says it. */
  v = classify_envelope(200, 0, "RESOURCE_EXHAUSTED", "Resource has been exhausted.", NULL);
  assert_kind(v, GKP_KIND_UNKNOWN_429);
  assert_int_equal(v.http_status, 429);
  /* An error event after answer chunks, framed as data:. */
  v = classify_str(200,
                   "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}]}\r\n\r\n"
                   "data: {\"error\":{\"code\":500,\"message\":\"Internal error.\","
                   "\"status\":\"INTERNAL\"}}\r\n\r\n");
  assert_kind(v, GKP_KIND_SERVER);
  assert_int_equal(v.http_status, 500);
  assert_string_equal(v.message, "Internal error.");
  /* A 200 with no error in it is unreadable: server. */
  v = classify_str(200, "data: {\"candidates\":[]}\r\n\r\n");
  assert_kind(v, GKP_KIND_SERVER);
  assert_int_equal(v.http_status, 200);
  v = classify_str(200,
                   "{\"error\": {\"code\": 429, \"message\": \"Quota exceeded for metric: x, lim");
  assert_kind(v, GKP_KIND_UNKNOWN_429);
  assert_int_equal(v.http_status, 429);
  /* Truncated inside the message: the words up to the cut are kept. */
  v = classify_str(400, "{\"error\": {\"code\": 400, \"message\": \"API key not valid. Please pa");
  assert_kind(v, GKP_KIND_INVALID_KEY);
  assert_string_equal(v.message, "API key not valid. Please pa");
  v = classify_str(429, "[{\"error\": {\"message\": \"Please retry in 3s. Quota\\");
  assert_kind(v, GKP_KIND_RPM);
  assert_i64(v.retry_ms, 3000);
  assert_string_equal(v.message, "Please retry in 3s. Quota");
  /* A number cut by the end is dropped, never read short. */
  static const char numeric[] =
      "{\"error\":{\"code\":429,\"status\":\"RESOURCE_EXHAUSTED\",\"details\":[{\"violations\":"
      "[{\"quotaId\":\"GenerateRequestsPerMinute\",\"quotaValue\":250000";
  for (size_t cut = 0; cut <= strlen(numeric); cut++) {
    v = classify_n(200, numeric, cut);
    assert_i64(v.learned_limit, -1);
    assert_true(v.http_status == 200 || v.http_status == 429);
  }
  v = classify_str(200, "{\"error\":{\"code\":50");
  assert_int_equal(v.http_status, 200);
  /* Truncated before the code: nothing but a broken stream. */
  v = classify_str(200, "{\"error\": {\"co");
  assert_kind(v, GKP_KIND_SERVER);
}

static void test_garbage(void **state) {
  (void)state;
  static const int statuses[] = {0, 200, 400, 403, 404, 429, 500, 503, 999, -5};
  uint32_t seed = 12345;
  char buf[600];
  for (int round = 0; round < 3000; round++) {
    size_t n = (size_t)(round % 600);
    for (size_t i = 0; i < n; i++) {
      seed = seed * 1103515245u + 12345u;
      /* Mostly JSON punctuation and words, to get deep into the parser. */
      static const char alphabet[] = "{}[]\":,\\ \n0123456789.-eE truefalsnul\"error\"code\"message"
                                     "\xc3\xa9\xe2\x82\xff\x01"
                                     "AIza_";
      buf[i] = (seed >> 16) % 4 == 0 ? (char)(seed >> 8)
                                     : alphabet[(seed >> 16) % (sizeof alphabet - 1)];
    }
    gkp_verdict v = classify_n(statuses[round % 10], buf, n);
    if (statuses[round % 10] <= 0) {
      assert_kind(v, GKP_KIND_SERVER);
      assert_int_equal(v.http_status, 0);
    }
  }
  /* Deep nesting. */
  char *deep = malloc(200001);
  memset(deep, '[', 100000);
  memset(deep + 100000, ']', 100000);
  deep[200000] = '\0';
  gkp_verdict v = classify_str(503, deep);
  assert_kind(v, GKP_KIND_SERVER);
  memcpy(deep, "{\"error\":", 9);
  v = classify_str(429, deep);
  assert_kind(v, GKP_KIND_UNKNOWN_429);
  free(deep);
  v = classify_str(429, "\xff\xfe\x00garbage");
  assert_kind(v, GKP_KIND_UNKNOWN_429);
  v = classify_str(503, "}}}]]]\"\"\"");
  assert_kind(v, GKP_KIND_SERVER);
}

static void test_null_body(void **state) {
  (void)state;
  gkp_verdict v;
  gkp_classify(429, NULL, 0, &v);
  check_sane(&v);
  assert_kind(v, GKP_KIND_UNKNOWN_429);
  assert_string_equal(v.message, "HTTP 429 with an empty body");
  gkp_classify(503, NULL, 100, &v); /* a NULL body is empty whatever len says */
  check_sane(&v);
  assert_kind(v, GKP_KIND_SERVER);
  gkp_classify(0, NULL, 0, &v);
  check_sane(&v);
  assert_kind(v, GKP_KIND_SERVER);
  assert_int_equal(v.http_status, 0);
  assert_string_equal(v.message, "connection failed");
  gkp_classify(404, NULL, 0, &v);
  check_sane(&v);
  assert_kind(v, GKP_KIND_MODEL_NOT_FOUND);
}

static void test_key_never_shown(void **state) {
  (void)state;
  char key[40], msg[256], want[64];
  fake_key(key);
  snprintf(want, sizeof want, "AIza\xe2\x80\xa6%s", key + 35);
  snprintf(msg, sizeof msg, "API key not valid: %s. Please pass a valid API key.", key);
  gkp_verdict v = classify_envelope(400, 400, "INVALID_ARGUMENT", msg, NULL);
  assert_kind(v, GKP_KIND_INVALID_KEY);
  assert_null(strstr(v.message, key));
  assert_non_null(strstr(v.message, want));
  /* In a URL, in plain text, after a transport failure. */
  snprintf(msg, sizeof msg, "https://x.googleapis.com/v1beta/models?key=%s failed", key);
  v = classify_str(502, msg);
  assert_null(strstr(v.message, key + 4));
  assert_non_null(strstr(v.message, want));
  v = classify_str(0, msg);
  assert_null(strstr(v.message, key + 4));
  /* A body cut inside the key shows none of it. */
  char head[5];
  memcpy(head, key + 4, 4);
  head[4] = '\0';
  snprintf(msg, sizeof msg, "{\"error\":{\"code\":400,\"message\":\"API key not valid: %s\"}}",
           key);
  for (size_t cut = 0; cut < strlen(msg); cut++) {
    v = classify_n(400, msg, cut);
    assert_null(strstr(v.message, head));
  }
  /* At the very end of a long message. */
  char long_msg[1024];
  memset(long_msg, 'x', 600);
  snprintf(long_msg + 600, sizeof long_msg - 600, " %s", key);
  v = quota429(long_msg, NULL);
  assert_null(strstr(v.message, key + 4));
}

static void test_message_shape(void **state) {
  (void)state;
  gkp_verdict v;
  v = classify_envelope(500, 500, "INTERNAL", "  An \n\n internal\t\terror\r\n has   occurred.  ",
                        NULL);
  assert_string_equal(v.message, "An internal error has occurred.");
  /* Long messages end in an ellipsis at a character boundary. */
  char msg[2048] = "";
  for (int i = 0; i < 300; i++) {
    strcat(msg, i % 3 == 0 ? "\xc3\xa9" : i % 3 == 1 ? "\xe2\x82\xac" : "\xf0\x9f\x98\x80");
  }
  for (int shift = 0; shift < 4; shift++) {
    char shifted[2100];
    snprintf(shifted, sizeof shifted, "%.*s%s", shift, "abc", msg);
    v = classify_envelope(500, 500, "INTERNAL", shifted, NULL);
    size_t n = strlen(v.message);
    assert_true(n <= GKP_REASON_MAX - 1);
    assert_true(n >= GKP_REASON_MAX - 1 - 6);
    assert_string_equal(v.message + n - 3, "\xe2\x80\xa6");
  }
  /* Invalid UTF-8 and control characters are made harmless. */
  v = classify_str(502, "bad \xff\xfe bytes\x01\x02 and \xe2\x82");
  assert_kind(v, GKP_KIND_SERVER);
  /* Exactly GKP_REASON_MAX - 1 bytes fit without an ellipsis. */
  memset(msg, 'a', GKP_REASON_MAX - 1);
  msg[GKP_REASON_MAX - 1] = '\0';
  v = classify_envelope(500, 500, "INTERNAL", msg, NULL);
  assert_string_equal(v.message, msg);
  msg[GKP_REASON_MAX - 1] = 'b';
  msg[GKP_REASON_MAX] = '\0';
  v = classify_envelope(500, 500, "INTERNAL", msg, NULL);
  assert_int_equal(strlen(v.message), GKP_REASON_MAX - 1);
  assert_string_equal(v.message + GKP_REASON_MAX - 4, "\xe2\x80\xa6");
}

static void test_kind_names(void **state) {
  (void)state;
  static const char *const names[] = {"none",        "rpm",          "tpm",
                                      "rpd",         "no_free_tier", "billing",
                                      "unknown_429", "invalid_key",  "model_not_found",
                                      "bad_request", "server",       "unreachable"};
  assert_int_equal(sizeof names / sizeof names[0], GKP_KIND_COUNT);
  for (int k = 0; k < GKP_KIND_COUNT; k++) {
    assert_string_equal(gkp_kind_name(k), names[k]);
  }
  assert_string_equal(gkp_kind_name(-1), "unknown");
  assert_string_equal(gkp_kind_name(GKP_KIND_COUNT), "unknown");
  assert_string_equal(gkp_kind_name(1000), "unknown");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fixtures),
      cmocka_unit_test(test_fixture_framings),
      cmocka_unit_test(test_fixture_missing_parts),
      cmocka_unit_test(test_fixture_truncated),
      cmocka_unit_test(test_several_violations),
      cmocka_unit_test(test_quota_words),
      cmocka_unit_test(test_limit_zero),
      cmocka_unit_test(test_retry_hints),
      cmocka_unit_test(test_unknown_429),
      cmocka_unit_test(test_billing),
      cmocka_unit_test(test_not_google),
      cmocka_unit_test(test_structured_first),
      cmocka_unit_test(test_invalid_key),
      cmocka_unit_test(test_bad_request),
      cmocka_unit_test(test_server),
      cmocka_unit_test(test_midstream),
      cmocka_unit_test(test_garbage),
      cmocka_unit_test(test_null_body),
      cmocka_unit_test(test_key_never_shown),
      cmocka_unit_test(test_message_shape),
      cmocka_unit_test(test_kind_names),
  };
  return cmocka_run_group_tests(tests, load_fixtures, free_fixtures);
}
