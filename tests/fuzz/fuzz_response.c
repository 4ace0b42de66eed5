/*
 * fuzz_response.c - answers through gkp__gemini_parse and gkp__gemini_judge.
 *
 * The input is one JSON text as the client hands it over (an SSE event's
 * data, a whole answer, an array of responses, an error envelope).  It is
 * parsed with a sink that reads every byte it is given, and once more
 * without a sink: the state must agree.  Some inputs (chosen by their hash)
 * get a sink that stops after a few parts, which must stop the parse with
 * the sink's value.
 */
#include <errno.h>
#include <string.h>

#include "client/gemini.h"
#include "fuzz.h"

#define STOP_CODE (-ECANCELED)

typedef struct sink_state {
  uint64_t parts;
  uint64_t stop_after; /* 0: never */
  uint64_t text_bytes, thought_bytes, images;
} sink_state;

static int stop(sink_state *s) {
  s->parts++;
  return s->stop_after != 0 && s->parts >= s->stop_after ? STOP_CODE : 0;
}

static int on_text(void *ud, const char *text, size_t len, int is_thought) {
  sink_state *s = ud;
  FUZZ_CHECK(text != NULL && len > 0);
  fuzz_touch(text, len);
  *(is_thought ? &s->thought_bytes : &s->text_bytes) += len;
  return stop(s);
}

static int on_image(void *ud, const char *mime, const void *data, size_t len, int is_thought) {
  sink_state *s = ud;
  FUZZ_CHECK(mime != NULL && (data != NULL || len == 0));
  fuzz_touch(mime, strlen(mime));
  fuzz_touch(data, len);
  if (!is_thought) {
    s->images++;
  }
  return stop(s);
}

static void check_strings(const gkp__gemini_state *st) {
  FUZZ_CHECK(memchr(st->finish_reason, '\0', sizeof st->finish_reason) != NULL);
  FUZZ_CHECK(memchr(st->block_reason, '\0', sizeof st->block_reason) != NULL);
  FUZZ_CHECK(memchr(st->model_version, '\0', sizeof st->model_version) != NULL);
  FUZZ_CHECK(memchr(st->response_id, '\0', sizeof st->response_id) != NULL);
  FUZZ_CHECK(memchr(st->error_status, '\0', sizeof st->error_status) != NULL);
  FUZZ_CHECK(memchr(st->error_message, '\0', sizeof st->error_message) != NULL);
  FUZZ_CHECK(strchr(st->error_message, '\n') == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const gkp__gemini_sink sink = {.on_text = on_text, .on_image = on_image};
  uint64_t h = fuzz_hash(data, size);
  sink_state ss;
  gkp__gemini_state st, bare;
  gkp_error err;
  memset(&ss, 0, sizeof ss);
  memset(&err, 0, sizeof err);
  ss.stop_after = (h & 7) == 0 ? 1 + (h >> 8) % 3 : 0;

  gkp__gemini_state_init(&st);
  int rc = gkp__gemini_parse((const char *)data, size, &sink, &ss, &st, &err);
  FUZZ_CHECK(rc == 0 || rc == -EBADMSG || rc == -ENOMEM || rc == STOP_CODE);
  FUZZ_CHECK(rc != STOP_CODE || (ss.stop_after != 0 && ss.parts == ss.stop_after));
  check_strings(&st);
  if (rc == 0 || rc == STOP_CODE) {
    /* Everything counted was delivered (empty texts are counted, not sent). */
    FUZZ_CHECK(st.text_bytes == ss.text_bytes && st.thought_bytes == ss.thought_bytes);
    FUZZ_CHECK(st.images == ss.images);
  } else {
    FUZZ_CHECK(err.msg[0] != '\0' && strchr(err.msg, '\n') == NULL);
  }

  char msg[256];
  int verdict = gkp__gemini_judge(&st, msg, sizeof msg);
  FUZZ_CHECK(verdict == GKP__JUDGE_OK || verdict == GKP__JUDGE_CONTENT ||
             verdict == GKP__JUDGE_TRUNCATED);
  FUZZ_CHECK(memchr(msg, '\0', sizeof msg) != NULL);
  FUZZ_CHECK(verdict == GKP__JUDGE_OK || msg[0] != '\0');

  /* Without a sink (and without stopping) the state is the same. */
  if (ss.stop_after == 0) {
    gkp__gemini_state_init(&bare);
    int rc2 = gkp__gemini_parse((const char *)data, size, NULL, NULL, &bare, NULL);
    FUZZ_CHECK(rc2 == rc);
    FUZZ_CHECK(bare.text_bytes == st.text_bytes && bare.thought_bytes == st.thought_bytes &&
               bare.images == st.images && bare.responses == st.responses &&
               bare.is_error == st.is_error && bare.error_code == st.error_code &&
               strcmp(bare.finish_reason, st.finish_reason) == 0 &&
               memcmp(&bare.usage, &st.usage, sizeof st.usage) == 0);
  }
  return 0;
}
