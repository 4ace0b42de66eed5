/*
 * fuzz_jobname.c - the job store's names: which stored job a name in a
 * profile directory may belong to (fs_image_stems, fs_name_reserved,
 * fs_name_scratch), as a lookup that misses the store asks.
 *
 * The input is a name (cut at 255 bytes, at its first NUL or '/').  For
 * any name: at most three stems, each shorter than the name and than the
 * one before.  For a name a job may have (not reserved, not scratch, at
 * most FS_NAME_MAX bytes), every name its outputs and images are given
 * (N.png, N-2.png, N-1.png, N-2-1.png) leads back to it, so an image of a
 * stored job is always found.
 */
#include <string.h>

#include "fs/fs.h"
#include "fuzz.h"

static int stems_have(const char *name, size_t want) {
  size_t stems[3], k = fs_image_stems(name, stems);
  for (size_t i = 0; i < k; i++) {
    if (stems[i] == want) {
      return 1;
    }
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char name[256], out[320];
  size_t n = 0;
  while (n < size && n < sizeof name - 1 && data[n] != '\0' && data[n] != '/') {
    name[n] = (char)data[n];
    n++;
  }
  name[n] = '\0';

  size_t stems[3], k = fs_image_stems(name, stems);
  FUZZ_CHECK(k <= 3);
  for (size_t i = 0; i < k; i++) {
    FUZZ_CHECK(stems[i] > 0 && stems[i] < n);
    FUZZ_CHECK(i == 0 || stems[i] < stems[i - 1]);
  }
  (void)fs_name_scratch(name);

  if (n == 0 || n > FS_NAME_MAX || fs_name_reserved(name) || fs_name_scratch(name)) {
    return 0;
  }
  static const char *const forms[] = {"%s.png", "%s-2.png", "%s-1.jpg", "%s-2-1.webp",
                                      "%s-3-12.gif", "%s.img"};
  for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
    snprintf(out, sizeof out, forms[i], name);
    if (!stems_have(out, n)) {
      fprintf(stderr, "fuzz_jobname: '%s' does not lead back to job '%s'\n", out, name);
    }
    FUZZ_CHECK(stems_have(out, n));
  }
  return 0;
}
