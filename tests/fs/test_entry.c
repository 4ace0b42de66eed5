/*
 * test_entry.c - the filesystem's entry point, linked without the command
 * line: fs_mount_run reports a mistake found before mounting in the caller's
 * buffer, as one line that names the file and the fix, and mounts nothing.
 *
 * That this program links at all is the check that the filesystem does not
 * depend on the command line (it is built from the fs library and libgkp
 * only).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs/fs_mount.h"

static char tmpdir[] = "/tmp/gkp-fs-entry-XXXXXX";
static char config[256], state[256], notdir[256], missing[256];

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static int setup(void **st) {
  (void)st;
  if (mkdtemp(tmpdir) == NULL) {
    return -1;
  }
  snprintf(config, sizeof config, "%s/keys.json", tmpdir);
  snprintf(state, sizeof state, "%s/state.db", tmpdir);
  snprintf(notdir, sizeof notdir, "%s/plain-file", tmpdir);
  snprintf(missing, sizeof missing, "%s/no-such-dir", tmpdir);
  setenv("GKP_ENTRY_KEY", "FAKE-ENTRY-SECRET-0001", 1);
  write_file(config, "{\"providers\":{\"gemini\":{\"keys\":["
                     "{\"id\":\"k1\",\"api_key\":\"env:GKP_ENTRY_KEY\"}]}}}\n");
  write_file(notdir, "not a directory\n");
  return 0;
}

static int teardown(void **st) {
  char cmd[300];
  (void)st;
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  return system(cmd) == 0 ? 0 : -1;
}

static fs_mount_opts opts(const char *cfg, const char *mnt) {
  fs_mount_opts o = {.config = cfg,
                     .state = state,
                     .mountpoint = mnt,
                     .foreground = 1,
                     .max_prompt = FS_DEFAULT_MAX_PROMPT,
                     .fuse_opts = ""};
  return o;
}

static void assert_one_line(const char *err) {
  assert_true(err[0] != '\0');
  assert_null(strchr(err, '\n'));
  assert_null(strstr(err, "FAKE-ENTRY-SECRET"));
  assert_true(strncmp(err, "gemini-pool:", 12) != 0); /* the caller adds its name */
}

static void bad_config_is_reported(void **st) {
  char path[300], err[1024];
  (void)st;
  snprintf(path, sizeof path, "%s/absent.json", tmpdir);
  fs_mount_opts o = opts(path, tmpdir);
  assert_int_equal(fs_mount_run(&o, err, sizeof err), -1);
  assert_one_line(err);
  assert_non_null(strstr(err, "absent.json"));
}

static void missing_mountpoint_is_reported(void **st) {
  char err[1024];
  (void)st;
  fs_mount_opts o = opts(config, missing);
  assert_int_equal(fs_mount_run(&o, err, sizeof err), -1);
  assert_one_line(err);
  assert_non_null(strstr(err, missing));
  assert_non_null(strstr(err, "create the directory first"));
  assert_int_equal(access(missing, F_OK), -1);
}

static void file_as_mountpoint_is_reported(void **st) {
  char err[1024];
  (void)st;
  fs_mount_opts o = opts(config, notdir);
  assert_int_equal(fs_mount_run(&o, err, sizeof err), -1);
  assert_one_line(err);
  assert_non_null(strstr(err, "plain-file is not a directory"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(bad_config_is_reported),
      cmocka_unit_test(missing_mountpoint_is_reported),
      cmocka_unit_test(file_as_mountpoint_is_reported),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
