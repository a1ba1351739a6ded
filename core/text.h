/*
 * text.h - facts about text that every layer checks: names, UTF-8, and
 * the base64 alphabet (bytes to characters and back, one at a time).
 * The lowest module of core: it includes nothing of core, so error.c and
 * everything above it may use it.  Nothing here allocates.
 */
#ifndef CD_TEXT_H
#define CD_TEXT_H

#include <stdbool.h>
#include <stddef.h>

#define CD_NAME_MAX 64          /* models and galleries: [A-Za-z0-9._-]{1,64} */

/* True when s matches [A-Za-z0-9._-]{1,64}. */
bool cd_name_valid(const char *s);

/* True when the n bytes at s are well-formed UTF-8 (no overlongs, no
 * surrogates, nothing above U+10FFFF). */
bool cd_utf8_valid(const char *s, size_t n);

/*
 * Where to cut the n bytes at s so that the cut does not split a UTF-8
 * sequence: n, or less when the last sequence is incomplete.  Text cut by
 * a bounded snprintf keeps being valid UTF-8 when cut there.
 */
size_t cd_utf8_cut(const char *s, size_t n);

/*
 * The 6-bit value of a character of the standard base64 alphabet
 * (A-Z a-z 0-9 + /), or -1 for any other byte, '=' included.
 */
int cd__b64_value(unsigned char c);

/*
 * Writes base64 of n bytes to out, which has room for (n + 2) / 3 * 4 + 1
 * chars: the standard alphabet with '=' padding, or (url) base64url
 * without padding.  NUL-terminates out and returns the chars written.
 */
size_t cd__b64_encode(const unsigned char *b, size_t n, bool url, char *out);

/*
 * Decodes base64url without padding (what cd__b64_encode writes with url)
 * of the NUL-terminated s into out, at most cap bytes; *n gets the count.
 * False for any other character, a length no encoding has, non-zero
 * spare bits, or more than cap bytes.
 */
bool cd__b64url_decode(const char *s, unsigned char *out, size_t cap,
                       size_t *n);

#endif
