/*
 * trust.c - which configuration files, and which endpoints, are trusted.
 *
 * A keys.json decides where API keys are sent, so who can change it matters:
 * - a keys.json or .env that group or others can write is refused (another
 *   user could point base_url elsewhere);
 * - a keys.json picked up from the current directory (a cloned repository
 *   may ship one) must belong to the user, and may send a key taken from the
 *   environment only to Google or to this machine;
 * - a plain http:// endpoint is allowed only on loopback, where no key
 *   travels over a network in clear text.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/err.h"
#include "config/internal.h"

/* See internal.h. */
int gkp__url_host(const char *url, char *host, size_t len) {
  const char *p = strstr(url, "://");
  if (p == NULL || len == 0) {
    return -EINVAL;
  }
  p += 3;
  size_t n = strcspn(p, "/?#");
  const char *at = memrchr(p, '@', n); /* user:password@ */
  if (at != NULL) {
    n -= (size_t)(at + 1 - p);
    p = at + 1;
  }
  if (n > 0 && p[0] == '[') { /* [::1]:8080 */
    const char *close = memchr(p, ']', n);
    if (close == NULL) {
      return -EINVAL;
    }
    p++;
    n = (size_t)(close - p);
  } else {
    const char *colon = memchr(p, ':', n);
    if (colon != NULL) {
      n = (size_t)(colon - p);
    }
  }
  if (n == 0 || n >= len) {
    return -EINVAL;
  }
  memcpy(host, p, n);
  host[n] = '\0';
  while (n > 1 && host[n - 1] == '.') { /* "localhost." */
    host[--n] = '\0';
  }
  return 0;
}

/* See internal.h. */
int gkp__host_is_loopback(const char *host) {
  if (strcasecmp(host, "localhost") == 0 || strcmp(host, "::1") == 0) {
    return 1;
  }
  /* 127.0.0.0/8, written as a dotted quad. */
  unsigned a, b, c, d;
  char tail;
  return sscanf(host, "%u.%u.%u.%u%c", &a, &b, &c, &d, &tail) == 4 && a == 127 && b < 256 &&
         c < 256 && d < 256;
}

/* See internal.h. */
int gkp__host_is_google(const char *host) {
  static const char suffix[] = ".googleapis.com";
  size_t n = strlen(host), s = sizeof suffix - 1;
  return strcasecmp(host, "googleapis.com") == 0 ||
         (n > s && strcasecmp(host + n - s, suffix) == 0);
}

/* See internal.h. */
int gkp__config_file_trust(const gkp__cfg_ctx *ctx, const struct stat *st, int origin) {
  unsigned mode = (unsigned)(st->st_mode & 07777);
  if ((st->st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return gkp__cfg_fail(ctx, -EPERM, NULL,
                         "group or others can write this file (mode %04o), so another user could "
                         "change where your keys are sent; run `chmod go-w %s`",
                         mode, ctx->file);
  }
  if (origin == GKP_CONFIG_CWD && st->st_uid != geteuid()) {
    return gkp__cfg_fail(ctx, -EPERM, NULL,
                         "found in the current directory but owned by another user (uid %u); if "
                         "you trust it pass --config %s, or move it to "
                         "~/.config/gemini-pool/keys.json",
                         (unsigned)st->st_uid, ctx->file);
  }
  return 0;
}

/* See internal.h. */
int gkp__config_dotenv_trust(const gkp__cfg_ctx *ctx, const gkp__dotenv *denv) {
  if (denv->exists && (denv->mode & 022) != 0) {
    return gkp__err(ctx->err, -EPERM,
                    "%s: group or others can write this file (mode %04o), so another user could "
                    "change your keys; run `chmod go-w %s`",
                    denv->path, denv->mode, denv->path);
  }
  return 0;
}

/* See internal.h. */
int gkp__config_endpoint_trust(const gkp__cfg_ctx *ctx, const gkp__config *cfg, int origin,
                               int url_from_env) {
  char host[256];
  if (origin != GKP_CONFIG_CWD || url_from_env) {
    return 0;
  }
  if (gkp__url_host(cfg->base_url, host, sizeof host) != 0) {
    snprintf(host, sizeof host, "%s", cfg->base_url);
  } else if (gkp__host_is_google(host) || gkp__host_is_loopback(host)) {
    return 0;
  }
  for (size_t i = 0; i < cfg->nkeys; i++) {
    if (strncmp(cfg->keys[i].source, "env:", 4) == 0) {
      char q[96];
      return gkp__cfg_fail(ctx, -EPERM, NULL,
                           "found in the current directory, it would send the key of $%s "
                           "(providers.gemini.keys[%zu]) to %s, which is neither Google nor this "
                           "machine; if you trust this file pass --config %s, or move it to "
                           "~/.config/gemini-pool/keys.json",
                           cfg->keys[i].source + 4, i, gkp__cfg_quote(host, q, sizeof q),
                           ctx->file);
    }
  }
  return 0;
}
