/*
 * skill.c - gemini-pool skill [install [--dir DIR]]: the agent skill
 * (share/skill/SKILL.md, built into the binary) printed or installed where
 * coding agents look for skills.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"

/* skill_text.c, generated from share/skill/SKILL.md. */
extern const unsigned char cli_skill_text[];
extern const size_t cli_skill_text_len;

static const char *SKILL_USAGE =
    "usage:\n"
    "  gemini-pool skill                    print the agent skill (SKILL.md)\n"
    "  gemini-pool skill install [--dir DIR]\n"
    "                                       write it to DIR/SKILL.md\n"
    "                                       (default ~/.claude/skills/gemini-pool)\n";

/* mkdir -p, 0755 for the directories it creates. */
static int make_dirs(const char *dir) {
  char path[4096];
  size_t n = strlen(dir);
  if (n == 0 || n >= sizeof path) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memcpy(path, dir, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (path[i] == '/' || path[i] == '\0') {
      char c = path[i];
      path[i] = '\0';
      if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        return -1;
      }
      path[i] = c;
    }
  }
  struct stat st;
  if (stat(dir, &st) != 0) {
    return -1;
  }
  if (!S_ISDIR(st.st_mode)) {
    errno = ENOTDIR;
    return -1;
  }
  return 0;
}

/* Writes the skill to dir/SKILL.md through a temporary file and rename, so
 * an agent never reads half a skill. */
static int install(const char *dir) {
  char path[4200], tmp[4220];
  if (make_dirs(dir) != 0) {
    cli_error("skill install: cannot create %s: %s", dir, strerror(errno));
    return CLI_FAILED;
  }
  snprintf(path, sizeof path, "%s/SKILL.md", dir);
  snprintf(tmp, sizeof tmp, "%s/.SKILL.md.%ld", dir, (long)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    cli_error("skill install: cannot write %s: %s", tmp, strerror(errno));
    return CLI_FAILED;
  }
  size_t done = 0;
  while (done < cli_skill_text_len) {
    ssize_t w = write(fd, (const char *)cli_skill_text + done, cli_skill_text_len - done);
    if (w < 0 && errno == EINTR) {
      continue;
    }
    if (w <= 0) {
      cli_error("skill install: cannot write %s: %s", tmp, strerror(errno));
      close(fd);
      unlink(tmp);
      return CLI_FAILED;
    }
    done += (size_t)w;
  }
  if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
    cli_error("skill install: cannot write %s: %s", path, strerror(errno));
    unlink(tmp);
    return CLI_FAILED;
  }
  printf("%s\n", path);
  return CLI_OK;
}

int cmd_skill(int argc, char **argv) {
  if (argc == 1) {
    return fwrite(cli_skill_text, 1, cli_skill_text_len, stdout) == cli_skill_text_len &&
                   fflush(stdout) == 0
               ? CLI_OK
               : CLI_FAILED;
  }
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    fputs(SKILL_USAGE, stdout);
    return CLI_OK;
  }
  if (strcmp(argv[1], "install") != 0) {
    cli_error("skill: unknown argument '%s' (expected 'install')", argv[1]);
    return CLI_USAGE;
  }
  const char *dir = NULL;
  char def[4096];
  for (int i = 2; i < argc; i++) {
    int missing = 0;
    const char *v = cli_value("--dir", argc, argv, &i, &missing);
    if (missing) {
      return CLI_USAGE; /* cli_value said so */
    }
    if (v != NULL) {
      if (*v == '\0') {
        cli_error("skill install: --dir needs a value");
        return CLI_USAGE;
      }
      dir = v;
      continue;
    }
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      fputs(SKILL_USAGE, stdout);
      return CLI_OK;
    }
    cli_error("skill install: unknown option '%s'", argv[i]);
    return CLI_USAGE;
  }
  if (dir == NULL) {
    const char *home = getenv("HOME");
    if (home == NULL || *home != '/') {
      cli_error("skill install: HOME is not set to an absolute path; give --dir DIR");
      return CLI_USAGE;
    }
    snprintf(def, sizeof def, "%s/.claude/skills/gemini-pool", home);
    dir = def;
  }
  return install(dir);
}
