/* Small text helpers for untrusted bytes: printable copies for logs and
 * headers, case-insensitive comparisons, strict number parsing. Any thread. */
#ifndef ALIGND_TEXT_H
#define ALIGND_TEXT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* Copies src to dst (always NUL-terminated, cap >= 1), replacing every byte
 * outside printable ASCII with '?'; cuts at cap-1 bytes and marks a cut with
 * "...". Returns the length written. */
size_t text_printable(char *dst, size_t cap, const char *src, size_t len);

/* Formats into dst (cap >= 1) and makes the result printable as
 * text_printable() does: for reasons built from untrusted values. */
size_t text_vformat(char *dst, size_t cap, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

/* ASCII case-insensitive equality of a counted string and a C string. */
int text_ieq(const char *s, size_t len, const char *lit);

/* Parses a whole counted string as an unsigned decimal number in [0, max]:
 * digits only, no sign, no spaces. 0 or -1. */
int text_u64(const char *s, size_t len, uint64_t max, uint64_t *out_r);

/* Whether domain name is base[0..base_len) or one of its subdomains
 * (ASCII case-insensitive, trailing dots of name ignored); an empty base
 * covers nothing. */
int text_domain_within(const char *name, const char *base, size_t base_len);

/* Trims spaces and tabs at both ends of [*s, *s+*len). */
void text_trim(const char **s, size_t *len);

#endif
