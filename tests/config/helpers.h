/*
 * helpers.h - shared by the config tests (see helpers.c).
 *
 * JSON is written with single quotes (write_json_mode turns them into double
 * quotes) to keep it readable.  Every test runs in a fresh temporary
 * directory g_dir with the test variables unset except GKP_TEST_KEY_1 and
 * GKP_TEST_KEY_2, which hold SECRET_ENV1 and SECRET_ENV2.
 */
#ifndef GKP_TEST_CONFIG_HELPERS_H
#define GKP_TEST_CONFIG_HELPERS_H

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "config/config.h"
#include "config/internal.h"

#define SECRET_ENV1 "AIzaSyENVSECRET1x0123456789abcdefghijk"
#define SECRET_ENV2 "AIzaSyENVSECRET2x0123456789abcdefghijk"
#define SECRET_DOT "AIzaSyDOTSECRETxx0123456789abcdefghijk"
#define SECRET_LIT "AIzaSyLITSECRETxx0123456789abcdefghijk"

/* One key read from GKP_TEST_KEY_1: the smallest valid pool. */
#define POOL "'providers': {'gemini': {'keys': [{'id': 'k1', 'api_key': 'env:GKP_TEST_KEY_1'}]}}"

/* A captured log line. */
struct test_log {
  int level;
  char line[1024];
};
#define TEST_MAX_LOGS 32

extern char g_dir[256];    /* this test's temporary directory */
extern char g_keys[512];   /* g_dir/keys.json */
extern char g_dotenv[512]; /* g_dir/.env */
extern struct test_log g_logs[TEST_MAX_LOGS];
extern int g_nlogs;

/* cmocka setup and teardown: the temporary directory and the variables. */
int setup(void **state);
int teardown(void **state);

/* Fails unless text holds none of the secrets in use. */
void assert_no_secret(const char *text);
/* Fails unless text contains part, printing both. */
void assert_contains(const char *text, const char *part);
/* A gkp_log_fn that checks and stores the line in g_logs. */
void capture_log(void *ud, int level, const char *line);
/* How many captured lines have `level` and contain `part`. */
int count_logs(int level, const char *part);

/* Writes text to path with exactly `mode` (whatever the umask). */
void write_file(const char *path, const char *text, mode_t mode);
/* Writes single-quoted JSON as JSON to path with `mode`. */
void write_json_mode(const char *path, const char *json, mode_t mode);
/* Writes it as g_keys and loads it (log: capture_log). */
int load_json_mode(const char *json, mode_t mode, gkp__config **cfg, gkp_error *err);
/* Loads JSON that must be valid (g_keys, mode 0600). */
gkp__config *load_ok(const char *json);

/* Checks a failure: rc < 0 in err->code, one line starting "FILE: ", every
 * one of the NULL-terminated parts in it, and no secret. */
void check_error(int rc, const gkp_error *err, const char *file, const char *const *parts);
/* Loads JSON that must fail with -EINVAL, and checks the message. */
void expect_error_(const char *json, const char *const *parts);
#define EXPECT_ERROR(json, ...) expect_error_(json, (const char *const[]){__VA_ARGS__, NULL})

/* The groups of tests in the other files; each returns its failure count. */
int run_dotenv_tests(void);
int run_model_tests(void);

#endif
