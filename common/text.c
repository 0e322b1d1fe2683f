/* Text helpers for untrusted bytes. Pure functions: any thread. */
#include "common/text.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

size_t text_printable(char *dst, size_t cap, const char *src, size_t len)
{
	if (cap == 0)
		return 0;
	size_t n = 0;
	int cut = len > cap - 1;
	size_t keep = cut ? (cap - 1 > 3 ? cap - 4 : 0) : len;
	for (size_t i = 0; i < keep; i++) {
		unsigned char c = (unsigned char)src[i];
		dst[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	if (cut)
		for (size_t i = 0; i < 3 && n < cap - 1; i++)
			dst[n++] = '.';
	dst[n] = '\0';
	return n;
}

size_t text_vformat(char *dst, size_t cap, const char *fmt, va_list ap)
{
	char tmp[1024];
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	return text_printable(dst, cap, tmp, strlen(tmp));
}

int text_ieq(const char *s, size_t len, const char *lit)
{
	size_t ll = strlen(lit);
	if (ll != len)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char a = (unsigned char)s[i], b = (unsigned char)lit[i];
		if (a >= 'A' && a <= 'Z') a += 32;
		if (b >= 'A' && b <= 'Z') b += 32;
		if (a != b)
			return 0;
	}
	return 1;
}

int text_u64(const char *s, size_t len, uint64_t max, uint64_t *out_r)
{
	if (len == 0 || len > 20)
		return -1;
	uint64_t v = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		uint64_t d = (uint64_t)(s[i] - '0');
		if (d > max || v > (max - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*out_r = v;
	return 0;
}

void text_trim(const char **s, size_t *len)
{
	while (*len > 0 && (**s == ' ' || **s == '\t')) {
		(*s)++;
		(*len)--;
	}
	while (*len > 0 && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t'))
		(*len)--;
}

int text_domain_within(const char *name, const char *base, size_t base_len)
{
	size_t n = strlen(name);
	while (n > 0 && name[n - 1] == '.')
		n--;
	if (base_len == 0 || n < base_len || strncasecmp(name + n - base_len, base, base_len) != 0)
		return 0;
	return n == base_len || name[n - base_len - 1] == '.';
}
