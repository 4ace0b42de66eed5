#include "cli/cli.h"
int cmd_mount(int argc, char **argv) {
  (void)argc;
  (void)argv;
  cli_error("mount: the filesystem is not part of this build");
  return CLI_FAILED;
}
