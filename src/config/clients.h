/*
 * clients.h - the `clients` of keys.json: who may call the HTTP front.
 *
 *   "clients": [ { "id": "ci", "token": "env:POOL_TOKEN_CI",
 *                  "rpm": 10, "rpd": 200, "profiles": ["flash", "gemma"] } ]
 *
 * A token follows the rules of an api_key: "env:NAME" (the environment,
 * then the .env beside keys.json) or a literal.  A token must be at least 16
 * characters, unique, and never a Gemini API key of the pool.  `rpm`/`rpd`
 * (optional, 0 or absent: no limit) cap the client's requests per minute
 * and per day (from midnight Pacific); `profiles` (optional) lists the
 * profiles and model ids it may use.
 */
#ifndef GKP_CONFIG_CLIENTS_H
#define GKP_CONFIG_CLIENTS_H

#include <stddef.h>
#include <stdint.h>

#include "gkp.h"

typedef struct gkp__client_cfg {
  char *id;
  char *token;      /* wiped when freed */
  int64_t rpm, rpd; /* 0: no limit */
  char **profiles;  /* NULL: every profile and model */
  size_t nprofiles;
} gkp__client_cfg;

typedef struct gkp__clients {
  gkp__client_cfg *v;
  size_t n;
} gkp__clients;

/*
 * Reads `clients` from the configuration file at `path`.  Returns 0 with
 * *out (NULL when the file has no clients), or a negative errno with one
 * line in err naming the file, the client and the fix.
 */
int gkp__clients_load(const char *path, gkp__clients **out, gkp_error *err);

/* Frees (and wipes the tokens of) a client list.  NULL is a no-op. */
void gkp__clients_free(gkp__clients *c);

#endif
