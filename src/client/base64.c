#include "client/base64.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

static const char enc_table[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t gkp__base64_encoded_len(size_t n) {
  if (n / 3 >= SIZE_MAX / 4 - 1) {
    return SIZE_MAX;
  }
  return (n + 2) / 3 * 4;
}

void gkp__base64_encode(const void *src, size_t n, char *dst) {
  const unsigned char *s = src;
  size_t i = 0;
  char *d = dst;
  while (i + 3 <= n) {
    uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
    *d++ = enc_table[(v >> 18) & 63];
    *d++ = enc_table[(v >> 12) & 63];
    *d++ = enc_table[(v >> 6) & 63];
    *d++ = enc_table[v & 63];
    i += 3;
  }
  if (i < n) {
    uint32_t v = (uint32_t)s[i] << 16;
    if (i + 1 < n) {
      v |= (uint32_t)s[i + 1] << 8;
    }
    *d++ = enc_table[(v >> 18) & 63];
    *d++ = enc_table[(v >> 12) & 63];
    *d++ = (i + 1 < n) ? enc_table[(v >> 6) & 63] : '=';
    *d++ = '=';
  }
  *d = '\0';
}

/* The 6-bit value of a base64 character (both alphabets), or -1. */
static int dec_char(unsigned char c) {
  if (c >= 'A' && c <= 'Z') {
    return c - 'A';
  }
  if (c >= 'a' && c <= 'z') {
    return c - 'a' + 26;
  }
  if (c >= '0' && c <= '9') {
    return c - '0' + 52;
  }
  if (c == '+' || c == '-') {
    return 62;
  }
  if (c == '/' || c == '_') {
    return 63;
  }
  return -1;
}

int gkp__base64_decode(const char *src, size_t n, unsigned char **out, size_t *out_len) {
  *out = NULL;
  *out_len = 0;
  unsigned char *buf = malloc(n / 4 * 3 + 4);
  if (buf == NULL) {
    return -ENOMEM;
  }
  size_t len = 0;
  uint32_t acc = 0;
  int bits = 0;
  int pad = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)src[i];
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      continue;
    }
    if (c == '=') {
      pad++;
      continue;
    }
    int v = dec_char(c);
    if (v < 0 || pad > 0) { /* a bad character, or data after padding */
      free(buf);
      return -EINVAL;
    }
    acc = (acc << 6) | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      buf[len++] = (unsigned char)(acc >> bits);
      acc &= (1u << bits) - 1;
    }
  }
  /* Leftover bits: 0, 2 or 4 are fine (unpadded tails); 6 means a lone char. */
  if (bits >= 6 || pad > 2) {
    free(buf);
    return -EINVAL;
  }
  buf[len] = '\0';
  *out = buf;
  *out_len = len;
  return 0;
}
