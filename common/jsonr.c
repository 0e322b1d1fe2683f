/* The JSON reader (jsonr.h). */
#include "common/jsonr.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct ps {
	struct jsonr *j;
	size_t at;
	const char *why;
};

static void ws(struct ps *p)
{
	const char *s = p->j->text;
	while (p->at < p->j->len &&
	       (s[p->at] == ' ' || s[p->at] == '\t' || s[p->at] == '\n' || s[p->at] == '\r'))
		p->at++;
}

static long new_tok(struct ps *p, enum jsonr_type t)
{
	struct jsonr *j = p->j;
	if (j->n == j->cap || j->n >= UINT32_MAX) {
		p->why = "too many values";
		return -1;
	}
	struct jsonr_tok *k = &j->tok[j->n];
	memset(k, 0, sizeof(*k));
	k->type = (uint8_t)t;
	k->start = (uint32_t)p->at;
	return (long)j->n++;
}

static int hex4(const char *s, unsigned *v)
{
	*v = 0;
	for (int i = 0; i < 4; i++) {
		char c = s[i];
		unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0')
		           : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
		           : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10) : 16u;
		if (d == 16)
			return -1;
		*v = *v << 4 | d;
	}
	return 0;
}

static long string(struct ps *p)
{
	const char *s = p->j->text;
	p->at++;   /* the quote */
	long t = new_tok(p, JSONR_STRING);
	if (t < 0)
		return -1;
	struct jsonr_tok *k = &p->j->tok[t];
	k->start = (uint32_t)p->at;
	while (p->at < p->j->len) {
		unsigned char c = (unsigned char)s[p->at];
		if (c == '"') {
			k->len = (uint32_t)(p->at - k->start);
			p->at++;
			k->next = (uint32_t)p->j->n;
			return t;
		}
		if (c < 0x20) {
			p->why = "control character in a string";
			return -1;
		}
		if (c == '\\') {
			k->escaped = 1;
			if (p->at + 1 >= p->j->len) {
				break;
			}
			char e = s[p->at + 1];
			unsigned v;
			if (e == 'u') {
				if (p->at + 6 > p->j->len || hex4(s + p->at + 2, &v) < 0) {
					p->why = "bad \\u escape";
					return -1;
				}
				p->at += 6;
				continue;
			}
			if (!strchr("\"\\/bfnrt", e) || e == '\0') {
				p->why = "bad escape";
				return -1;
			}
			p->at += 2;
			continue;
		}
		p->at++;
	}
	p->why = "unterminated string";
	return -1;
}

/* Skips one or more digits at *i; 0 when there is none. */
static int digits(const char *s, size_t n, size_t *i)
{
	size_t k = *i;
	while (k < n && s[k] >= '0' && s[k] <= '9')
		k++;
	int any = k > *i;
	*i = k;
	return any;
}

static long number(struct ps *p)
{
	const char *s = p->j->text;
	size_t n = p->j->len, i = p->at;
	long t = new_tok(p, JSONR_NUMBER);
	if (t < 0)
		return -1;
	if (i < n && s[i] == '-')
		i++;
	if (i < n && s[i] == '0') {
		i++;
	} else if (i < n && s[i] >= '1' && s[i] <= '9') {
		digits(s, n, &i);
	} else {
		p->why = "bad number";
		return -1;
	}
	if (i < n && s[i] == '.') {
		i++;
		if (!digits(s, n, &i)) {
			p->why = "bad number";
			return -1;
		}
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		if (!digits(s, n, &i)) {
			p->why = "bad number";
			return -1;
		}
	}
	struct jsonr_tok *k = &p->j->tok[t];
	k->len = (uint32_t)(i - p->at);
	p->at = i;
	k->next = (uint32_t)p->j->n;
	return t;
}

static long word(struct ps *p, const char *w, enum jsonr_type type)
{
	size_t n = strlen(w);
	if (p->j->len - p->at < n || memcmp(p->j->text + p->at, w, n) != 0) {
		p->why = "not JSON";
		return -1;
	}
	long t = new_tok(p, type);
	if (t < 0)
		return -1;
	p->j->tok[t].len = (uint32_t)n;
	p->at += n;
	p->j->tok[t].next = (uint32_t)p->j->n;
	return t;
}

static long value(struct ps *p, unsigned depth);

static long container(struct ps *p, unsigned depth, int obj)
{
	if (depth >= JSONR_DEPTH) {
		p->why = "nested too deep";
		return -1;
	}
	long t = new_tok(p, obj ? JSONR_OBJECT : JSONR_ARRAY);
	if (t < 0)
		return -1;
	p->at++;
	ws(p);
	char close = obj ? '}' : ']';
	uint32_t count = 0;
	if (p->at < p->j->len && p->j->text[p->at] == close) {
		p->at++;
	} else {
		for (;;) {
			if (obj) {
				ws(p);
				if (p->at >= p->j->len || p->j->text[p->at] != '"') {
					p->why = "member name expected";
					return -1;
				}
				if (string(p) < 0)
					return -1;
				ws(p);
				if (p->at >= p->j->len || p->j->text[p->at] != ':') {
					p->why = "':' expected";
					return -1;
				}
				p->at++;
			}
			if (value(p, depth + 1) < 0)
				return -1;
			count++;
			ws(p);
			if (p->at < p->j->len && p->j->text[p->at] == ',') {
				p->at++;
				continue;
			}
			if (p->at < p->j->len && p->j->text[p->at] == close) {
				p->at++;
				break;
			}
			p->why = obj ? "',' or '}' expected" : "',' or ']' expected";
			return -1;
		}
	}
	struct jsonr_tok *k = &p->j->tok[t];
	k->count = count;
	k->len = (uint32_t)(p->at - k->start);
	k->next = (uint32_t)p->j->n;
	return t;
}

static long value(struct ps *p, unsigned depth)
{
	ws(p);
	if (p->at >= p->j->len) {
		p->why = "value expected";
		return -1;
	}
	char c = p->j->text[p->at];
	switch (c) {
	case '{': return container(p, depth, 1);
	case '[': return container(p, depth, 0);
	case '"': return string(p);
	case 't': return word(p, "true", JSONR_TRUE);
	case 'f': return word(p, "false", JSONR_FALSE);
	case 'n': return word(p, "null", JSONR_NULL);
	default:
		if (c == '-' || (c >= '0' && c <= '9'))
			return number(p);
		p->why = "not JSON";
		return -1;
	}
}

int jsonr_parse(struct jsonr *j, const char *text, size_t len, struct jsonr_tok *tok, size_t cap,
                const char **why)
{
	j->text = text;
	j->len = len;
	j->tok = tok;
	j->n = 0;
	j->cap = cap;
	struct ps p = { j, 0, NULL };
	if (len > UINT32_MAX) {
		*why = "too long";
		return -1;
	}
	if (value(&p, 0) < 0) {
		*why = p.why;
		j->n = 0;
		return -1;
	}
	ws(&p);
	if (p.at != len) {
		*why = "text after the value";
		j->n = 0;
		return -1;
	}
	return 0;
}

int jsonr_type(const struct jsonr *j, long t)
{
	return t >= 0 && (size_t)t < j->n ? j->tok[t].type : -1;
}

long jsonr_get(const struct jsonr *j, long obj, const char *name)
{
	if (jsonr_type(j, obj) != JSONR_OBJECT)
		return -1;
	size_t nl = strlen(name);
	size_t k = (size_t)obj + 1, end = j->tok[obj].next;
	while (k < end) {
		const struct jsonr_tok *key = &j->tok[k];
		if (!key->escaped && key->len == nl && memcmp(j->text + key->start, name, nl) == 0)
			return (long)k + 1;
		k = j->tok[k + 1].next;   /* past the member's value */
	}
	return -1;
}

long jsonr_at(const struct jsonr *j, long arr, size_t i)
{
	if (jsonr_type(j, arr) != JSONR_ARRAY || i >= j->tok[arr].count)
		return -1;
	size_t k = (size_t)arr + 1;
	while (i-- > 0)
		k = j->tok[k].next;
	return (long)k;
}

size_t jsonr_count(const struct jsonr *j, long arr)
{
	return jsonr_type(j, arr) == JSONR_ARRAY ? j->tok[arr].count : 0;
}

static size_t put_utf8(char *d, unsigned v)
{
	if (v < 0x80) {
		d[0] = (char)v;
		return 1;
	}
	if (v < 0x800) {
		d[0] = (char)(0xc0 | v >> 6);
		d[1] = (char)(0x80 | (v & 0x3f));
		return 2;
	}
	if (v < 0x10000) {
		d[0] = (char)(0xe0 | v >> 12);
		d[1] = (char)(0x80 | ((v >> 6) & 0x3f));
		d[2] = (char)(0x80 | (v & 0x3f));
		return 3;
	}
	d[0] = (char)(0xf0 | v >> 18);
	d[1] = (char)(0x80 | ((v >> 12) & 0x3f));
	d[2] = (char)(0x80 | ((v >> 6) & 0x3f));
	d[3] = (char)(0x80 | (v & 0x3f));
	return 4;
}

long jsonr_str(const struct jsonr *j, long t, char *dst, size_t cap)
{
	if (jsonr_type(j, t) != JSONR_STRING || cap == 0)
		return -1;
	const struct jsonr_tok *k = &j->tok[t];
	const char *s = j->text + k->start;
	size_t n = k->len, o = 0;
	if (!k->escaped) {
		o = n < cap - 1 ? n : cap - 1;
		memcpy(dst, s, o);
		dst[o] = '\0';
		return (long)o;
	}
	for (size_t i = 0; i < n && o + 1 < cap;) {
		if (s[i] != '\\') {
			dst[o++] = s[i++];
			continue;
		}
		char e = s[i + 1];
		char u[4];
		size_t ul = 1;
		unsigned v;
		switch (e) {
		case 'b': u[0] = '\b'; break;
		case 'f': u[0] = '\f'; break;
		case 'n': u[0] = '\n'; break;
		case 'r': u[0] = '\r'; break;
		case 't': u[0] = '\t'; break;
		case 'u':
			hex4(s + i + 2, &v);   /* checked by the parse */
			i += 4;
			if (v >= 0xd800 && v <= 0xdbff && i + 8 <= n && s[i + 2] == '\\' &&
			    s[i + 3] == 'u') {
				unsigned lo;
				if (hex4(s + i + 4, &lo) == 0 && lo >= 0xdc00 && lo <= 0xdfff) {
					v = 0x10000 + ((v - 0xd800) << 10) + (lo - 0xdc00);
					i += 6;
				}
			}
			if (v >= 0xd800 && v <= 0xdfff)
				v = '?';   /* a lone surrogate */
			ul = put_utf8(u, v);
			break;
		default: u[0] = e; break;   /* " \ / */
		}
		i += 2;
		if (o + ul >= cap)
			break;
		memcpy(dst + o, u, ul);
		o += ul;
	}
	dst[o] = '\0';
	return (long)o;
}

const char *jsonr_raw(const struct jsonr *j, long t, size_t *len)
{
	if (jsonr_type(j, t) != JSONR_STRING || j->tok[t].escaped)
		return NULL;
	*len = j->tok[t].len;
	return j->text + j->tok[t].start;
}

long long jsonr_int(const struct jsonr *j, long t, long long dflt)
{
	if (jsonr_type(j, t) != JSONR_NUMBER)
		return dflt;
	const struct jsonr_tok *k = &j->tok[t];
	char buf[32];
	if (k->len >= sizeof(buf) || memchr(j->text + k->start, '.', k->len) ||
	    memchr(j->text + k->start, 'e', k->len) || memchr(j->text + k->start, 'E', k->len))
		return dflt;
	memcpy(buf, j->text + k->start, k->len);
	buf[k->len] = '\0';
	errno = 0;
	char *end;
	long long v = strtoll(buf, &end, 10);
	return errno || *end ? dflt : v;
}

double jsonr_num(const struct jsonr *j, long t, double dflt)
{
	if (jsonr_type(j, t) != JSONR_NUMBER)
		return dflt;
	const struct jsonr_tok *k = &j->tok[t];
	char buf[64];
	if (k->len >= sizeof(buf))
		return dflt;
	memcpy(buf, j->text + k->start, k->len);
	buf[k->len] = '\0';
	return strtod(buf, NULL);
}

int jsonr_bool(const struct jsonr *j, long t)
{
	int ty = jsonr_type(j, t);
	return ty == JSONR_TRUE || (ty == JSONR_NUMBER && jsonr_int(j, t, 0) != 0);
}
