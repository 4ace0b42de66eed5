/*
 * fuzz_route.c - what the HTTP front reads before a body (src/http/paths.c):
 * a request path into a route, Host and Origin values, Content-Type, and
 * the bound on what parsing a body may allocate.
 *
 * Input: the bytes up to the first NUL are a path (also a Host, an Origin
 * and a Content-Type); the whole input is also a body.  A route gives a
 * model and action that fit their buffers and came from the path, and an
 * API that matches it; what cJSON allocates to parse the body never passes
 * routes_json_cost (counted through cJSON's allocation hooks).
 */
#include <cjson/cJSON.h>
#include <malloc.h>
#include <string.h>

#include "fuzz.h"
#include "http/paths.c"

static size_t now_bytes, peak_bytes;

static void *count_malloc(size_t n) {
  void *p = malloc(n);
  if (p != NULL) {
    now_bytes += malloc_usable_size(p);
    if (now_bytes > peak_bytes) {
      peak_bytes = now_bytes;
    }
  }
  return p;
}

static void count_free(void *p) {
  if (p != NULL) {
    now_bytes -= malloc_usable_size(p);
  }
  free(p);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  cJSON_Hooks hooks = {.malloc_fn = count_malloc, .free_fn = count_free};
  cJSON_InitHooks(&hooks);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *nul = memchr(data, '\0', size);
  size_t plen = nul != NULL ? (size_t)(nul - data) : size;
  char *path = malloc(plen + 1);
  FUZZ_CHECK(path != NULL);
  memcpy(path, data, plen);
  path[plen] = '\0';

  char model[128], action[32];
  int api = -1;
  int route = routes_parse_path(path, &api, model, sizeof model, action, sizeof action);
  FUZZ_CHECK(route >= ROUTE_NONE && route <= ROUTE_OAI_MODEL);
  FUZZ_CHECK(strlen(model) < sizeof model && strlen(action) < sizeof action);
  FUZZ_CHECK(api == (route >= ROUTE_OAI_CHAT ? API_OPENAI : API_GEMINI));
  if (route == ROUTE_MODEL || route == ROUTE_ACTION || route == ROUTE_OAI_MODEL) {
    FUZZ_CHECK(model[0] != '\0' && strstr(path, model) != NULL);
  }
  if (route == ROUTE_MODEL || route == ROUTE_ACTION) {
    FUZZ_CHECK(strchr(model, '/') == NULL && strchr(model, ':') == NULL);
  }
  if (route == ROUTE_ACTION) {
    FUZZ_CHECK(strstr(path, action) != NULL);
  }
  if (route == ROUTE_NONE) {
    FUZZ_CHECK(model[0] == '\0' || api == API_GEMINI);
  }

  int loop = routes_host_is_loopback(path, plen);
  if (loop) { /* a loopback name, perhaps with a port: nothing else */
    FUZZ_CHECK(strncasecmp(path, "localhost", 9) == 0 || strncmp(path, "127.", 4) == 0 ||
               strncmp(path, "[", 1) == 0);
    FUZZ_CHECK(strpbrk(path, "/@?# ") == NULL);
  }
  if (routes_origin_is_loopback(path)) {
    FUZZ_CHECK(strncmp(path, "http://", 7) == 0 || strncmp(path, "https://", 8) == 0);
  }
  (void)routes_simple_request_type(path);

  size_t bound = routes_json_cost((const char *)data, size);
  FUZZ_CHECK(bound >= size);
  now_bytes = peak_bytes = 0;
  cJSON *doc = cJSON_ParseWithLength((const char *)data, size);
  cJSON_Delete(doc);
  FUZZ_CHECK(now_bytes == 0);
  if (peak_bytes > bound) {
    fprintf(stderr, "parsing %zu bytes took %zu bytes, over the bound %zu\n", size, peak_bytes,
            bound);
    FUZZ_CHECK(peak_bytes <= bound);
  }
  free(path);
  return 0;
}
