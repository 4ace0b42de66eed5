/*
 * base64.h - standard base64 (RFC 4648) for inline images.
 */
#ifndef GKP_CLIENT_BASE64_H
#define GKP_CLIENT_BASE64_H

#include <stddef.h>

/* Characters needed to encode n bytes, without the NUL; SIZE_MAX if n is so
 * large the result cannot be represented. */
size_t gkp__base64_encoded_len(size_t n);

/* Encodes n bytes into dst (gkp__base64_encoded_len(n) + 1 bytes, padded,
 * NUL-terminated). */
void gkp__base64_encode(const void *src, size_t n, char *dst);

/*
 * Decodes n characters of base64: the standard or the URL-safe alphabet,
 * padding optional, ASCII whitespace ignored.  Returns 0 with a malloc'd
 * buffer in *out (the caller frees it; NUL-terminated for convenience) and
 * its length in *out_len; -EINVAL for invalid input; -ENOMEM.
 */
int gkp__base64_decode(const char *src, size_t n, unsigned char **out, size_t *out_len);

#endif
