/*
 * paths.c - the front's parsers of what a caller sends before its body:
 * the request path into a route, Host and Origin values, Content-Type; and
 * the bound on what parsing a body may allocate.  Pure functions (fuzzed
 * by tests/fuzz/fuzz_route.c).
 */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "client/gemini.h"
#include "http/front_impl.h"

/* The OpenAI routes: "/v1/chat/completions", "/v1/embeddings",
 * "/v1/models[/{m}]".  Returns the route or ROUTE_NONE. */
static int parse_openai_path(const char *url, char *model, size_t model_len) {
  if (strcmp(url, "/v1/chat/completions") == 0) {
    return ROUTE_OAI_CHAT;
  }
  if (strcmp(url, "/v1/embeddings") == 0) {
    return ROUTE_OAI_EMBED;
  }
  if (strcmp(url, "/v1/models") == 0 || strcmp(url, "/v1/models/") == 0) {
    return ROUTE_OAI_MODELS;
  }
  if (strncmp(url, "/v1/models/", 11) == 0 && strchr(url + 11, ':') == NULL &&
      strlen(url + 11) < model_len) {
    snprintf(model, model_len, "%s", url + 11);
    return ROUTE_OAI_MODEL;
  }
  return ROUTE_NONE;
}

int routes_parse_path(const char *url, int *api, char *model, size_t model_len, char *action,
                      size_t action_len) {
  const char *p;
  model[0] = '\0';
  action[0] = '\0';
  int route = parse_openai_path(url, model, model_len);
  *api = route != ROUTE_NONE ? API_OPENAI : API_GEMINI;
  if (route != ROUTE_NONE) {
    return route;
  }
  if (strncmp(url, "/v1beta/", 8) == 0) {
    p = url + 8;
  } else if (strncmp(url, "/v1/", 4) == 0) {
    p = url + 4;
  } else {
    return ROUTE_NONE;
  }
  if (strcmp(p, "models") == 0 || strcmp(p, "models/") == 0) {
    return ROUTE_MODELS;
  }
  if (strncmp(p, "models/", 7) != 0) {
    return ROUTE_NONE;
  }
  p += 7;
  const char *colon = strchr(p, ':');
  size_t mlen = colon != NULL ? (size_t)(colon - p) : strlen(p);
  if (mlen == 0 || mlen >= model_len || strchr(p, '/') != NULL) {
    return ROUTE_NONE;
  }
  memcpy(model, p, mlen);
  model[mlen] = '\0';
  if (gkp__gemini_model_path(model) == NULL) {
    model[0] = '\0';
    return ROUTE_NONE;
  }
  if (colon == NULL) {
    return ROUTE_MODEL;
  }
  if (strlen(colon + 1) >= action_len) {
    return ROUTE_NONE;
  }
  snprintf(action, action_len, "%s", colon + 1);
  return ROUTE_ACTION;
}

/* "localhost", "127.x.y.z" or "[::1]", with or without ":PORT". */
int routes_host_is_loopback(const char *h, size_t len) {
  char host[64];
  size_t hl = len;
  if (len > 0 && h[0] == '[') {
    const char *end = memchr(h, ']', len);
    if (end == NULL) {
      return 0;
    }
    hl = (size_t)(end - h) + 1;
  } else {
    const char *colon = memchr(h, ':', len);
    hl = colon != NULL ? (size_t)(colon - h) : len;
  }
  if (hl < len) { /* a port: ":" and digits only */
    if (h[hl] != ':' || hl + 1 == len) {
      return 0;
    }
    for (size_t i = hl + 1; i < len; i++) {
      if (!isdigit((unsigned char)h[i])) {
        return 0;
      }
    }
  }
  if (hl == 0 || hl >= sizeof host) {
    return 0;
  }
  memcpy(host, h, hl);
  host[hl] = '\0';
  if (strcasecmp(host, "localhost") == 0 || strcasecmp(host, "localhost.") == 0) {
    return 1;
  }
  struct in_addr a4;
  struct in6_addr a6;
  if (inet_pton(AF_INET, host, &a4) == 1) {
    return (ntohl(a4.s_addr) >> 24) == 127;
  }
  if (host[0] == '[' && host[hl - 1] == ']') {
    host[hl - 1] = '\0';
    return inet_pton(AF_INET6, host + 1, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
  }
  return 0;
}

/* An Origin of a page served from loopback: "http(s)://HOST[:PORT]". */
int routes_origin_is_loopback(const char *o) {
  const char *rest = strncmp(o, "http://", 7) == 0    ? o + 7
                     : strncmp(o, "https://", 8) == 0 ? o + 8
                                                      : NULL;
  return rest != NULL && routes_host_is_loopback(rest, strlen(rest));
}

/* A body type a browser may send from any page without asking first (a
 * "simple request"): text/plain and the form types. */
int routes_simple_request_type(const char *ct) {
  static const char *const simple[] = {"text/plain", "application/x-www-form-urlencoded",
                                       "multipart/form-data"};
  while (*ct == ' ' || *ct == '\t') {
    ct++;
  }
  size_t n = strcspn(ct, "; \t");
  for (size_t i = 0; i < sizeof simple / sizeof simple[0]; i++) {
    if (n == strlen(simple[i]) && strncasecmp(ct, simple[i], n) == 0) {
      return 1;
    }
  }
  return 0;
}

size_t routes_json_cost(const char *s, size_t len) {
  /* Every value is a node, and every value but a container's first follows
   * a comma; every string (key or value) is an allocation of its own. */
  size_t nodes = 1, quotes = 0;
  int in_string = 0;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    if (in_string) {
      if (c == '\\') {
        i++;
      } else if (c == '"') {
        in_string = 0;
      }
    } else if (c == '"') {
      in_string = 1;
      quotes++;
    } else if (c == ',' || c == '[' || c == '{') {
      nodes++;
    }
  }
  /* A node is sizeof(cJSON) plus malloc's header; a string at least
   * malloc's smallest chunk beyond its bytes (which are at most len); a
   * number is copied while it is read, one at a time. */
  return nodes * (sizeof(cJSON) + 16) + quotes * 32 + len + 32;
}
