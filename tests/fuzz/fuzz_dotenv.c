/*
 * fuzz_dotenv.c - .env text through gkp__dotenv_parse.
 *
 * Every input gives either variables with valid, unique names whose values
 * gkp__dotenv_get finds, or one line of error text naming the file and the
 * line, never the line's text.
 */
#include <errno.h>
#include <string.h>

#include "config/internal.h"
#include "fuzz.h"

static int name_ok(const char *s) {
  if (!((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z') || s[0] == '_')) {
    return 0;
  }
  for (size_t i = 1; s[i] != '\0'; i++) {
    char c = s[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
      return 0;
    }
  }
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  gkp__dotenv env;
  gkp_error err;
  memset(&env, 0, sizeof env);
  memset(&err, 0, sizeof err);
  int rc = gkp__dotenv_parse((const char *)data, size, "/fuzz/.env", &env, &err);
  if (rc == 0) {
    FUZZ_CHECK(env.exists);
    for (size_t i = 0; i < env.n; i++) {
      FUZZ_CHECK(name_ok(env.names[i]));
      FUZZ_CHECK(env.values[i] != NULL);
      /* Later duplicates replace earlier values: each name is there once. */
      FUZZ_CHECK(gkp__dotenv_get(&env, env.names[i]) == env.values[i]);
      fuzz_touch(env.values[i], strlen(env.values[i]) + 1);
    }
  } else {
    FUZZ_CHECK(rc == -EINVAL || rc == -ENOMEM);
    FUZZ_CHECK(strncmp(err.msg, "/fuzz/.env: line ", 17) == 0);
    FUZZ_CHECK(strchr(err.msg, '\n') == NULL);
  }
  gkp__dotenv_free(&env);
  FUZZ_CHECK(env.n == 0 && env.names == NULL && env.values == NULL);
  return 0;
}
