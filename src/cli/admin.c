/*
 * admin.c - gemini-pool status, reset and keys check.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/serve.h"
#include "client/gemini.h"
#include "engine/engine.h"
#include "engine/status.h"

/* Parses the common options plus the given flags; returns 0, 1 after
 * printing the usage for --help, or -1 after printing an error. */
static int parse(cli_common *c, int argc, char **argv, const char *flag, int *flag_set,
                 const char **positional) {
  for (int i = 1; i < argc; i++) {
    int rc = cli_common_option(c, argc, argv, &i);
    if (rc < 0) {
      return -1;
    }
    if (rc > 0) {
      continue;
    }
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      cli_usage(stdout);
      return 1;
    }
    if (flag != NULL && strcmp(argv[i], flag) == 0) {
      *flag_set = 1;
    } else if (argv[i][0] != '-' && positional != NULL && *positional == NULL) {
      *positional = argv[i];
    } else {
      cli_error("%s: unexpected argument '%s' (see gemini-pool --help)", argv[0], argv[i]);
      return -1;
    }
  }
  return 0;
}

int cmd_status(int argc, char **argv) {
  cli_common c = {0};
  int json = 0, code = CLI_FAILED;
  char *doc = NULL;
  gkp__status *st = NULL;
  gkp_error err;
  int prc = parse(&c, argc, argv, "--json", &json, NULL);
  if (prc != 0) {
    return prc > 0 ? CLI_OK : CLI_USAGE;
  }
  gkp_pool *pool = cli_open_pool(&c);
  if (pool == NULL) {
    return CLI_USAGE;
  }
  if (gkp__status_take(pool, &st, &err) != 0) {
    cli_error("%s", err.msg);
  } else if (json) {
    doc = cli_status_json(pool, st);
    if (doc != NULL) {
      printf("%s\n", doc);
      code = CLI_OK;
    }
  } else {
    char *table = gkp__status_table(st, gkp_pool_now(pool));
    if (table != NULL) {
      fputs(table, stdout);
      cli_status_print_clients(pool, stdout);
      code = CLI_OK;
    }
    free(table);
  }
  free(doc);
  gkp__status_free(st);
  gkp_pool_close(pool);
  return code;
}

int cmd_reset(int argc, char **argv) {
  cli_common c = {0};
  const char *key = NULL;
  gkp_error err;
  int prc = parse(&c, argc, argv, NULL, NULL, &key);
  if (prc != 0) {
    return prc > 0 ? CLI_OK : CLI_USAGE;
  }
  gkp_pool *pool = cli_open_pool(&c);
  if (pool == NULL) {
    return CLI_USAGE;
  }
  int rc = gkp_reset(pool, key, &err);
  if (rc != 0) {
    cli_error("reset: %s", err.msg);
  } else if (key == NULL || strcmp(key, "all") == 0) {
    printf("reset all %zu keys: cooldowns cleared, disabled keys enabled\n", gkp_key_count(pool));
  } else {
    printf("reset %s: cooldowns cleared, enabled\n", key);
  }
  gkp_pool_close(pool);
  /* An unknown key id is a usage error like any other bad argument. */
  return rc == 0 ? CLI_OK : rc == -ENOENT ? CLI_USAGE : CLI_FAILED;
}

/* ---- keys check ------------------------------------------------------------- */

typedef struct check check;

/* One key being checked; `owner` leads back to the whole check. */
typedef struct check_key {
  check *owner;
  char id[GKP_ID_MAX];
  char line[GKP_MSG_MAX];
  int ok;
} check_key;

struct check {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  size_t pending;
  gkp_pool *pool;
  check_key *keys;
  gkp__loop *loop;
  char base[1024];
};

static void check_finished(check *ck) {
  pthread_mutex_lock(&ck->mu);
  ck->pending--;
  pthread_cond_signal(&ck->cv);
  pthread_mutex_unlock(&ck->mu);
}

/* A models.list answer for one key (loop thread). */
static void models_done(void *ud, const gkp__gemini_outcome *o, const gkp__gemini_model *models,
                        size_t n) {
  check_key *k = ud;
  (void)models;
  if (o->status == GKP__GEMINI_OK) {
    k->ok = 1;
    snprintf(k->line, sizeof k->line, "ok (%zu models)", n);
  } else {
    gkp_verdict v;
    if (o->status == GKP__GEMINI_HTTP_ERROR) {
      gkp_classify(o->http_status, o->body, o->body_len, &v);
    } else {
      gkp_classify(0, o->message, strlen(o->message), &v);
    }
    gkp_redact(k->owner->pool, v.message); /* shown, and stored when disabling */
    if (v.kind == GKP_KIND_INVALID_KEY) {
      gkp_disable_key(k->owner->pool, k->id, v.message, NULL);
      snprintf(k->line, sizeof k->line, "INVALID, disabled: %s", v.message);
    } else {
      snprintf(k->line, sizeof k->line, "%s: %s", gkp_kind_name(v.kind), v.message);
    }
  }
  check_finished(k->owner);
}

/* Starts one models.list per key, all at once (loop thread). */
static void start_all(gkp__loop *loop, void *ud) {
  check *ck = ud;
  for (size_t i = 0; i < gkp_key_count(ck->pool); i++) {
    char secret[512];
    gkp_error err;
    check_key *k = &ck->keys[i];
    gkp__gemini_endpoint ep = {.base_url = ck->base, .api_key = secret};
    if (gkp_key_secret(ck->pool, k->id, secret, sizeof secret, &err) != 0 ||
        gkp__gemini_models_start(loop, &ep, models_done, k, NULL, &err) != 0) {
      snprintf(k->line, sizeof k->line, "not checked: %s", err.msg);
      check_finished(ck);
    }
    explicit_bzero(secret, sizeof secret);
  }
}

int cmd_keys(int argc, char **argv) {
  cli_common c = {0};
  const char *sub = NULL;
  gkp_error err;
  check ck = {0};
  int code = CLI_OK;

  int prc = parse(&c, argc, argv, NULL, NULL, &sub);
  if (prc != 0) {
    return prc > 0 ? CLI_OK : CLI_USAGE;
  }
  if (sub == NULL || strcmp(sub, "check") != 0) {
    cli_error("keys: the only subcommand is 'check' (gemini-pool keys check)");
    return CLI_USAGE;
  }
  ck.pool = cli_open_pool(&c);
  if (ck.pool == NULL) {
    return CLI_USAGE;
  }
  pthread_mutex_init(&ck.mu, NULL);
  pthread_cond_init(&ck.cv, NULL);
  ck.pending = gkp_key_count(ck.pool);
  ck.keys = calloc(ck.pending + 1, sizeof *ck.keys);
  for (size_t i = 0; ck.keys != NULL && i < gkp_key_count(ck.pool); i++) {
    ck.keys[i].owner = &ck;
    snprintf(ck.keys[i].id, sizeof ck.keys[i].id, "%s", gkp_key_id(ck.pool, i));
  }
  const gkp__config *cfg = gkp__pool_config(ck.pool);
  snprintf(ck.base, sizeof ck.base, "%s", cfg->base_url);
  gkp__config_unref(cfg);
  if (ck.keys == NULL || gkp__loop_new(&ck.loop, NULL, &err) != 0 ||
      gkp__loop_start(ck.loop, &err) != 0 || gkp__loop_post(ck.loop, start_all, &ck) != 0) {
    cli_error("keys check: %s", ck.keys == NULL ? "out of memory" : err.msg);
    code = CLI_FAILED;
  } else {
    pthread_mutex_lock(&ck.mu);
    while (ck.pending > 0) {
      pthread_cond_wait(&ck.cv, &ck.mu);
    }
    pthread_mutex_unlock(&ck.mu);
    for (size_t i = 0; i < gkp_key_count(ck.pool); i++) {
      printf("%-20s %s\n", ck.keys[i].id, ck.keys[i].line);
      code = ck.keys[i].ok ? code : CLI_FAILED;
    }
  }
  gkp__loop_free(ck.loop);
  free(ck.keys);
  pthread_mutex_destroy(&ck.mu);
  pthread_cond_destroy(&ck.cv);
  gkp_pool_close(ck.pool);
  return code;
}

/* ---- state copy ------------------------------------------------------------- */

/* gemini-pool state copy FROM TO: the counts, cooldowns, learned limits and
 * disabled keys of the pool's keys, from one state (file or Redis) to
 * another. */
int cmd_state(int argc, char **argv) {
  cli_common c = {0};
  const char *pos[3] = {NULL, NULL, NULL};
  int n = 0;
  gkp_error err;
  for (int i = 1; i < argc; i++) {
    int rc = cli_common_option(&c, argc, argv, &i);
    if (rc < 0) {
      return CLI_USAGE;
    }
    if (rc > 0) {
      continue;
    }
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      cli_usage(stdout);
      return CLI_OK;
    }
    if (argv[i][0] == '-' || n == 3) {
      cli_error("state: unexpected argument '%s' (usage: gemini-pool state copy FROM TO)", argv[i]);
      return CLI_USAGE;
    }
    pos[n++] = argv[i];
  }
  if (n != 3 || strcmp(pos[0], "copy") != 0) {
    cli_error("usage: gemini-pool state copy FROM TO (each a state file or a Redis URL)");
    return CLI_USAGE;
  }
  cli_common from = c, to = c;
  from.state = pos[1];
  to.state = pos[2];
  cli_warn_literal_password(from.state, "state copy's FROM");
  cli_warn_literal_password(to.state, "state copy's TO");
  gkp_pool *a = cli_open_pool(&from);
  if (a == NULL) {
    return CLI_USAGE;
  }
  gkp_pool *b = cli_open_pool(&to);
  if (b == NULL) {
    gkp_pool_close(a);
    return CLI_USAGE;
  }
  int rc = gkp__state_copy(a, b, &err);
  if (rc != 0) {
    cli_error("state copy: %s", err.msg);
  } else {
    printf("copied the state of %zu keys from %s to %s\n", gkp_key_count(a), gkp_pool_state_path(a),
           gkp_pool_state_path(b));
  }
  gkp_pool_close(b);
  gkp_pool_close(a);
  return rc == 0 ? CLI_OK : CLI_FAILED;
}
