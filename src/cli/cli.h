/*
 * cli.h - the gemini-pool command: shared option handling.
 */
#ifndef GKP_CLI_H
#define GKP_CLI_H

#include <stdio.h>

#include "gkp.h"

/* Options every command understands. */
typedef struct cli_common {
  const char *config; /* --config FILE */
  const char *state;  /* --state FILE */
} cli_common;

/* Exit codes. */
enum { CLI_OK = 0, CLI_FAILED = 1, CLI_USAGE = 2 };

/* Prints "gemini-pool: " + message + newline to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints the usage text (gemini-pool --help) to f. */
void cli_usage(FILE *f);

/* The log callback that prints warnings on stderr. */
void cli_log(void *ud, int level, const char *line);

/* Says on stderr which configuration the pool uses when it was neither
 * named with --config nor found in the XDG directory: always for
 * ./keys.json, for $GEMINI_POOL_CONFIG when stderr is a terminal (a script
 * that sets the variable knows). */
void cli_say_config(const gkp_pool *pool);

/* Opens the pool with the common options (and says which configuration it
 * uses, see cli_say_config); prints the error and returns NULL on failure. */
gkp_pool *cli_open_pool(const cli_common *c);

/* If argv[*i] is --config/--state (as "--opt VALUE" or "--opt=VALUE"),
 * consumes it and returns 1; returns -1 (after printing) when its value is
 * missing; 0 otherwise. */
int cli_common_option(cli_common *c, int argc, char **argv, int *i);
/* "1048576", "512k", "8M", "1G" -> bytes; 0 on a bad value (mount.c). */
size_t cli_parse_size(const char *s);
/* Warns (one line, never the password) when a state URL given on the
 * command line (`what`: the option) carries a literal password. */
void cli_warn_literal_password(const char *state, const char *what);

/* Returns the value of option `name` at argv[*i] ("--name VALUE" or
 * "--name=VALUE"), advancing *i, or NULL if argv[*i] is not that option.
 * Sets *missing when the option has no value. */
const char *cli_value(const char *name, int argc, char **argv, int *i, int *missing);

int cmd_ask(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_reset(int argc, char **argv);
int cmd_keys(int argc, char **argv);
int cmd_state(int argc, char **argv); /* state copy FROM TO */
int cmd_mount(int argc, char **argv); /* parses, then calls fs_mount_run */
int cmd_serve(int argc, char **argv);
int cmd_route(int argc, char **argv); /* route --task TEXT [--quality Q] [--json] */
int cmd_rate(int argc, char **argv);  /* rate JOB SCORE */

/* A new run id ("r" and 16 hex digits) into buf: what `ask --json` and
 * executions.jsonl name a run by, and what `rate` takes. */
void cli_run_id(char *buf, size_t len);
int cmd_skill(int argc, char **argv); /* skill [install [--dir DIR]] */

/* Appends one JSON line to executions.jsonl beside the state file. */
void cli_log_execution(gkp_pool *pool, const char *json_line);

#endif
