/* Checks shared by the fuzz targets that see a whole verdict: the
 * Authentication-Results value must be printable ASCII on one line with
 * balanced quoted-strings and comments (RFC 8601, RFC 5322 3.2). */
#ifndef ALIGND_FUZZ_ARCHECK_H
#define ALIGND_FUZZ_ARCHECK_H

#include "tests/fuzz/fuzz.h"

/* RFC 8601 / RFC 5322 lexical check of a whole value. */
static inline void check_ar(const char *v, size_t len)
{
	FUZZ_ASSERT(strlen(v) == len);
	int quoted = 0, depth = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)v[i];
		FUZZ_ASSERT(c >= 0x20 && c < 0x7f);
		if (quoted) {
			if (c == '\\') {
				i++;
				FUZZ_ASSERT(i < len);
			} else if (c == '"') {
				quoted = 0;
			}
		} else if (depth) {
			if (c == '\\') {
				i++;
				FUZZ_ASSERT(i < len);
			} else if (c == '(') {
				depth++;
			} else if (c == ')') {
				depth--;
			}
		} else if (c == '"') {
			quoted = 1;
		} else if (c == '(') {
			depth = 1;
		} else {
			FUZZ_ASSERT(c != ')' && c != '\\');
		}
	}
	FUZZ_ASSERT(!quoted && depth == 0);
}

/* A text that goes on one protocol or SMTP line. */
static inline void one_line(const char *s, size_t cap)
{
	size_t l = strnlen(s, cap);
	FUZZ_ASSERT(l < cap);
	for (size_t i = 0; i < l; i++)
		FUZZ_ASSERT((unsigned char)s[i] >= 0x20 && s[i] != 0x7f);
}

#endif
