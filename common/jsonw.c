/* The JSON writer (jsonw.h). */
#include "common/jsonw.h"
#include "common/text.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Appends n bytes: in place when they fit, else through buf_add. */
static inline void put(struct buf *b, const char *s, size_t n)
{
	if (!b->failed && b->cap - b->len > n) {
		memcpy(b->data + b->len, s, n);
		b->len += n;
		b->data[b->len] = '\0';
	} else {
		buf_add(b, s, n);
	}
}

void jsonw_init(struct jsonw *w, struct buf *b)
{
	memset(w, 0, sizeof(*w));
	w->b = b;
}

/* What comes before a value or a member: a comma unless it is the first. */
static void sep(struct jsonw *w)
{
	if (w->after_key) {
		w->after_key = 0;
		return;
	}
	if (w->depth) {
		if (!w->first[w->depth - 1])
			put(w->b, ",", 1);
		w->first[w->depth - 1] = 0;
	}
}

static void open(struct jsonw *w, char c)
{
	sep(w);
	if (w->depth == JSONW_DEPTH) {
		w->failed = 1;
		return;
	}
	put(w->b, &c, 1);
	w->close[w->depth] = c == '{' ? '}' : ']';
	w->first[w->depth++] = 1;
}

void jsonw_obj(struct jsonw *w)
{
	open(w, '{');
}

void jsonw_arr(struct jsonw *w)
{
	open(w, '[');
}

void jsonw_end(struct jsonw *w)
{
	if (w->depth == 0) {
		w->failed = 1;
		return;
	}
	w->depth--;
	put(w->b, &w->close[w->depth], 1);
}

/* Valid UTF-8 (RFC 3629: no overlongs, no surrogates, at most U+10FFFF). */
static int utf8_valid(const unsigned char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		unsigned c = s[i];
		size_t k;
		unsigned min;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			k = 1, min = 0x80, c &= 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			k = 2, min = 0x800, c &= 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			k = 3, min = 0x10000, c &= 0x07;
		} else {
			return 0;
		}
		if (n - i <= k)
			return 0;
		for (size_t j = 1; j <= k; j++) {
			if ((s[i + j] & 0xc0) != 0x80)
				return 0;
			c = (c << 6) | (s[i + j] & 0x3f);
		}
		if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
			return 0;
		i += k + 1;
	}
	return 1;
}

static void escaped(struct buf *b, const char *s, size_t n)
{
	put(b, "\"", 1);
	size_t run = 0;   /* bytes since the last escape, written in one go */
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		put(b, s + run, i - run);
		run = i + 1;
		char e[8];
		switch (c) {
		case '"':  put(b, "\\\"", 2); break;
		case '\\': put(b, "\\\\", 2); break;
		case '\n': put(b, "\\n", 2); break;
		case '\r': put(b, "\\r", 2); break;
		case '\t': put(b, "\\t", 2); break;
		default:
			snprintf(e, sizeof(e), "\\u%04x", c);
			put(b, e, 6);
		}
	}
	put(b, s + run, n - run);
	put(b, "\"", 1);
}

void jsonw_strn(struct jsonw *w, const char *s, size_t n)
{
	if (!s) {
		jsonw_null(w);
		return;
	}
	sep(w);
	if (utf8_valid((const unsigned char *)s, n)) {
		escaped(w->b, s, n);
		return;
	}
	char *p = malloc(n + 4);
	if (!p) {
		w->failed = 1;
		return;
	}
	size_t m = text_printable(p, n + 4, s, n);
	escaped(w->b, p, m);
	free(p);
}

void jsonw_str(struct jsonw *w, const char *s)
{
	jsonw_strn(w, s, s ? strlen(s) : 0);
}

void jsonw_key(struct jsonw *w, const char *k)
{
	sep(w);
	size_t n = strlen(k);
	char t[64];
	int plain = n + 3 <= sizeof(t);
	for (size_t i = 0; plain && i < n; i++)
		plain = (unsigned char)k[i] >= 0x20 && k[i] != '"' && k[i] != '\\';
	if (plain) {
		/* the usual case: a short literal name, written in one piece */
		t[0] = '"';
		memcpy(t + 1, k, n);
		t[n + 1] = '"';
		t[n + 2] = ':';
		put(w->b, t, n + 3);
	} else {
		escaped(w->b, k, n);
		put(w->b, ":", 1);
	}
	w->after_key = 1;
}

void jsonw_int(struct jsonw *w, long long v)
{
	sep(w);
	char t[24], *p = t + sizeof(t);
	unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
	do
		*--p = (char)('0' + u % 10);
	while (u /= 10);
	if (v < 0)
		*--p = '-';
	put(w->b, p, (size_t)(t + sizeof(t) - p));
}

void jsonw_bool(struct jsonw *w, int v)
{
	sep(w);
	if (v)
		put(w->b, "true", 4);
	else
		put(w->b, "false", 5);
}

void jsonw_real(struct jsonw *w, double v)
{
	sep(w);
	if (!isfinite(v))
		v = 0;
	char t[40];
	int n = snprintf(t, sizeof(t), "%.17g", v);
	put(w->b, t, (size_t)n);
	if (!strpbrk(t, ".eE"))
		put(w->b, ".0", 2);   /* read back as a real */
}

void jsonw_null(struct jsonw *w)
{
	sep(w);
	put(w->b, "null", 4);
}

int jsonw_done(const struct jsonw *w)
{
	return w->failed || w->b->failed || w->depth || w->after_key ? -1 : 0;
}
