/* Strict RFC 7208 record parser and macro expander (sections 4.5, 4.6, 5,
 * 6, 7, appendix A). Pure functions: any thread. Records are counted
 * strings (a NUL inside a record is a syntax error, not an end). */
#include "checks/spf/spf_int.h"
#include "common/limits.h"
#include "common/text.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int is_alpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static int is_digit(int c) { return c >= '0' && c <= '9'; }
static int is_alnum(int c) { return is_alpha(c) || is_digit(c); }
static int lower(int c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

int spf_is_record(const char *s, size_t len)
{
	return len >= 6 && text_ieq(s, 6, "v=spf1") && (len == 6 || s[6] == ' ');
}

/* ---- macro strings ---- */

static int is_delim(int c)
{
	return c == '.' || c == '-' || c == '+' || c == ',' || c == '/' ||
	       c == '_' || c == '=';
}

/* One macro-expand at s[*i] == '%'. Fills the letter, digit count, reverse
 * flag and delimiter span when out-params are given. 0 or -1. */
struct macro {
	int letter;        /* as written */
	unsigned keep;     /* 0: all parts */
	int reverse;
	const char *delims;
	size_t ndelims;
	int simple;        /* '%', '_' or '-' for %%, %_, %- */
};

static int macro_at(const char *s, size_t len, size_t *i, int flags,
                    struct macro *m)
{
	size_t k = *i;
	memset(m, 0, sizeof(*m));
	if (len - k < 2)
		return -1;
	char n = s[k + 1];
	if (n == '%' || n == '_' || n == '-') {
		m->simple = n;
		*i = k + 2;
		return 0;
	}
	if (n != '{')
		return -1;   /* RFC 7208 7.1: '%' not followed by '{', '%', '-', '_' */
	k += 2;
	if (k >= len)
		return -1;
	int c = lower((unsigned char)s[k]);
	if (!strchr("slodiphcrtv", c) || c == 0)
		return -1;
	if ((c == 'c' || c == 'r' || c == 't') && !(flags & (SPF_MS_EXP | SPF_MS_UNKNOWN)))
		return -1;   /* RFC 7208 7.1: c, r, t only in explanation text */
	m->letter = (unsigned char)s[k++];
	int digits = 0;
	unsigned v = 0;
	while (k < len && is_digit((unsigned char)s[k])) {
		if (v < 100000)
			v = v * 10 + (unsigned)(s[k] - '0');
		digits = 1;
		k++;
	}
	if (digits && v == 0)
		return -1;   /* RFC 7208 7.1: the DIGIT transformer MUST be nonzero */
	m->keep = v;
	if (k < len && (s[k] == 'r' || s[k] == 'R')) {
		m->reverse = 1;
		k++;
	}
	m->delims = s + k;
	while (k < len && is_delim((unsigned char)s[k]))
		k++;
	m->ndelims = (size_t)(s + k - m->delims);
	if (k >= len || s[k] != '}')
		return -1;
	*i = k + 1;
	return 0;
}

int spf_macro_check(const char *s, size_t len, int flags, int *uses_p_r)
{
	size_t i = 0;
	if (uses_p_r)
		*uses_p_r = 0;
	while (i < len) {
		unsigned char c = (unsigned char)s[i];
		if (c == '%') {
			struct macro m;
			if (macro_at(s, len, &i, flags, &m) < 0)
				return -1;
			if (lower(m.letter) == 'p' && uses_p_r)
				*uses_p_r = 1;
		} else if ((c == ' ' && (flags & SPF_MS_EXP)) || (c >= 0x21 && c <= 0x7e)) {
			i++;
		} else {
			return -1;
		}
	}
	return 0;
}

static int toplabel_ok(const char *s, size_t len)
{
	/* toplabel = ( *alphanum ALPHA *alphanum ) /
	 *            ( 1*alphanum "-" *( alphanum / "-" ) alphanum ) */
	int alpha = 0, dash = 0;
	if (len == 0)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '-')
			dash = 1;
		else if (!is_alnum(c))
			return 0;
		if (is_alpha(c))
			alpha = 1;
	}
	if (dash)
		return is_alnum((unsigned char)s[0]) && is_alnum((unsigned char)s[len - 1]);
	return alpha;
}

int spf_domain_spec_check(const char *s, size_t len, int *uses_p_r)
{
	if (len == 0 || spf_macro_check(s, len, 0, uses_p_r) < 0)
		return -1;
	/* find where the last macro-expand ends: the literal tail after it
	 * must be "." toplabel [ "." ] unless it is empty */
	size_t i = 0, tail = 0;
	while (i < len) {
		if (s[i] == '%') {
			struct macro m;
			if (macro_at(s, len, &i, 0, &m) < 0)
				return -1;
			tail = i;
		} else {
			i++;
		}
	}
	if (tail == len)
		return 0;
	size_t end = len;
	if (s[end - 1] == '.')
		end--;
	size_t dot = end;
	while (dot > tail && s[dot - 1] != '.')
		dot--;
	if (dot == tail)
		return -1;   /* no "." before the top label */
	return toplabel_ok(s + dot, end - dot) ? 0 : -1;
}

/* ---- expansion ---- */

struct outbuf {
	char *p;
	size_t cap, n;
	int over;
};

static void put(struct outbuf *o, const char *s, size_t len)
{
	if (o->over || o->cap - 1 - o->n < len) {
		o->over = 1;
		return;
	}
	memcpy(o->p + o->n, s, len);
	o->n += len;
}

static void put_escaped(struct outbuf *o, const char *s, size_t len, int esc)
{
	if (!esc) {
		put(o, s, len);
		return;
	}
	/* RFC 7208 7.3: uppercase macros are URL-escaped (RFC 3986 unreserved
	 * characters kept) */
	static const char hex[] = "0123456789ABCDEF";
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
			put(o, (const char *)&s[i], 1);
		} else {
			char e[3] = { '%', hex[c >> 4], hex[c & 15] };
			put(o, e, 3);
		}
	}
}

#define SPF_MAX_PARTS 1024u

static void expand_one(const struct spf_macro_ctx *c, const struct macro *m,
                       struct outbuf *o)
{
	char vbuf[1100];
	const char *v = "";
	int letter = lower(m->letter);
	switch (letter) {
	case 's':
		snprintf(vbuf, sizeof(vbuf), "%s@%s", c->local ? c->local : "",
		         c->sender_dom ? c->sender_dom : "");
		v = vbuf;
		break;
	case 'l': v = c->local; break;
	case 'o': v = c->sender_dom; break;
	case 'd': v = c->domain; break;
	case 'i': v = c->ip_dots; break;
	case 'p': v = c->ptr ? c->ptr : "unknown"; break;
	case 'v': v = c->ip6 ? "ip6" : "in-addr"; break;
	case 'h': v = c->helo; break;
	case 'c': v = c->ip_text; break;
	case 'r': v = c->receiver ? c->receiver : "unknown"; break;
	case 't':
		snprintf(vbuf, sizeof(vbuf), "%llu", (unsigned long long)c->now);
		v = vbuf;
		break;
	}
	if (!v)
		v = "";
	size_t vlen = strlen(v);
	if (vlen > 1024)
		vlen = 1024;
	const char *delims = m->ndelims ? m->delims : ".";
	size_t nd = m->ndelims ? m->ndelims : 1;
	/* RFC 7208 7.3: split on the delimiters, reverse if asked, keep the
	 * right-most N parts, join with "." */
	struct { size_t off, len; } parts[SPF_MAX_PARTS + 1];
	size_t np = 0, start = 0;
	for (size_t i = 0; i <= vlen; i++) {
		if (i == vlen || memchr(delims, v[i], nd)) {
			if (np < SPF_MAX_PARTS) {
				parts[np].off = start;
				parts[np].len = i - start;
				np++;
			}
			start = i + 1;
		}
	}
	if (m->reverse)
		for (size_t a = 0, b = np - 1; a < b; a++, b--) {
			size_t to = parts[a].off, tl = parts[a].len;
			parts[a] = parts[b];
			parts[b].off = to;
			parts[b].len = tl;
		}
	size_t first = (m->keep && m->keep < np) ? np - m->keep : 0;
	int esc = m->letter >= 'A' && m->letter <= 'Z';
	for (size_t i = first; i < np; i++) {
		if (i > first)
			put(o, ".", 1);
		put_escaped(o, v + parts[i].off, parts[i].len, esc);
	}
}

int spf_expand(const struct spf_macro_ctx *c, const char *s, size_t len,
               int flags, char *out, size_t cap, size_t *len_r)
{
	struct outbuf o = { out, cap, 0, 0 };
	if (cap == 0)
		return -1;
	size_t i = 0;
	while (i < len) {
		if (s[i] != '%') {
			size_t j = i;
			while (j < len && s[j] != '%')
				j++;
			put(&o, s + i, j - i);
			i = j;
			continue;
		}
		struct macro m;
		if (macro_at(s, len, &i, flags, &m) < 0)
			return -1;
		if (m.simple == '%')
			put(&o, "%", 1);
		else if (m.simple == '_')
			put(&o, " ", 1);
		else if (m.simple == '-')
			put(&o, "%20", 3);
		else
			expand_one(c, &m, &o);
	}
	out[o.n] = '\0';
	if (len_r)
		*len_r = o.n;
	return o.over ? -1 : 0;
}

int spf_expand_domain(const struct spf_macro_ctx *c, const char *s,
                      size_t len, char *out, size_t cap)
{
	char buf[LIM_SPF_MACRO_OUT + 1];
	size_t n;
	if (spf_expand(c, s, len, 0, buf, sizeof(buf), &n) < 0)
		return -1;
	if (n > 0 && buf[n - 1] == '.')
		buf[--n] = '\0';
	size_t off = 0;
	while (n - off > 253) {   /* RFC 7208 7.3: cut whole labels on the left */
		const char *dot = memchr(buf + off, '.', n - off);
		if (!dot)
			return -1;
		off = (size_t)(dot - buf) + 1;
	}
	if (n - off + 1 > cap || n == off)
		return -1;
	memcpy(out, buf + off, n - off + 1);
	return 0;
}

int spf_name_ok(const char *name)
{
	size_t n = strlen(name), lab = 0;
	if (n == 0 || n > 253)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (name[i] == '.') {
			if (lab == 0)
				return 0;
			lab = 0;
		} else if (++lab > 63) {
			return 0;
		}
	}
	return lab > 0;
}

/* ---- addresses ---- */

void spf_ip_dots(const unsigned char *ip, int ip6, char *out, size_t cap)
{
	if (!ip6) {
		snprintf(out, cap, "%u.%u.%u.%u", ip[0], ip[1], ip[2], ip[3]);
		return;
	}
	static const char hex[] = "0123456789abcdef";
	size_t n = 0;
	for (int i = 0; i < 16 && n + 4 < cap; i++) {
		out[n++] = hex[ip[i] >> 4];
		out[n++] = '.';
		out[n++] = hex[ip[i] & 15];
		if (i < 15)
			out[n++] = '.';
	}
	out[n] = '\0';
}

void spf_reverse_name(const unsigned char *ip, int ip6, char *out, size_t cap)
{
	if (!ip6) {
		snprintf(out, cap, "%u.%u.%u.%u.in-addr.arpa", ip[3], ip[2], ip[1], ip[0]);
		return;
	}
	static const char hex[] = "0123456789abcdef";
	char buf[80];
	size_t n = 0;
	for (int i = 15; i >= 0; i--) {
		buf[n++] = hex[ip[i] & 15];
		buf[n++] = '.';
		buf[n++] = hex[ip[i] >> 4];
		buf[n++] = '.';
	}
	buf[n] = '\0';
	snprintf(out, cap, "%sip6.arpa", buf);
}

int spf_parse_ip(const char *text, unsigned char ip_r[16], int *ip6_r)
{
	unsigned char a[16];
	memset(ip_r, 0, 16);
	if (!text)
		return -1;
	if (inet_pton(AF_INET, text, a) == 1) {
		memcpy(ip_r, a, 4);
		*ip6_r = 0;
		return 0;
	}
	if (inet_pton(AF_INET6, text, a) != 1)
		return -1;
	static const unsigned char mapped[12] = { 0,0,0,0,0,0,0,0,0,0,0xff,0xff };
	if (memcmp(a, mapped, 12) == 0) {   /* RFC 7208 5: IPv4-mapped is IPv4 */
		memcpy(ip_r, a + 12, 4);
		*ip6_r = 0;
		return 0;
	}
	memcpy(ip_r, a, 16);
	*ip6_r = 1;
	return 0;
}

int spf_cidr_match(const unsigned char *addr, const unsigned char *net,
                   unsigned bits, int ip6)
{
	unsigned max = ip6 ? 128 : 32;
	if (bits > max)
		return 0;
	unsigned full = bits / 8, rest = bits % 8;
	if (memcmp(addr, net, full) != 0)
		return 0;
	if (rest) {
		unsigned char mask = (unsigned char)(0xff << (8 - rest));
		if ((addr[full] & mask) != (net[full] & mask))
			return 0;
	}
	return 1;
}

/* ---- records ---- */

/* ip4-cidr-length = "/" ("0" / %x31-39 0*1DIGIT); ip6: up to 3 digits.
 * Digits only, no leading zero, value <= max. */
static int cidr_num(const char *s, size_t len, unsigned max, unsigned *out)
{
	if (len == 0 || len > 3 || (len > 1 && s[0] == '0'))
		return -1;
	unsigned v = 0;
	for (size_t i = 0; i < len; i++) {
		if (!is_digit((unsigned char)s[i]))
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > max)
		return -1;
	*out = v;
	return 0;
}

/* Strict left-to-right dual-cidr-length over the whole of s. */
static int dual_cidr(const char *s, size_t len, unsigned *c4, unsigned *c6)
{
	size_t i = 0;
	if (i < len && s[i] == '/' && (len - i < 2 || s[i + 1] != '/')) {
		size_t j = ++i;
		while (j < len && s[j] != '/')
			j++;
		if (cidr_num(s + i, j - i, 32, c4) < 0)
			return -1;
		i = j;
	}
	if (i < len) {
		if (len - i < 3 || s[i] != '/' || s[i + 1] != '/')
			return -1;
		if (cidr_num(s + i + 2, len - i - 2, 128, c6) < 0)
			return -1;
		i = len;
	}
	return 0;
}

/* A domain-spec followed by an optional dual-cidr-length: the CIDR part is
 * taken from the end (the domain-spec may itself hold '/' and ':'). */
static int split_cidr(const char *s, size_t len, size_t *dlen,
                      unsigned *c4, unsigned *c6)
{
	size_t e = len, d = len;
	while (d > 0 && is_digit((unsigned char)s[d - 1]))
		d--;
	if (d < e && d >= 2 && s[d - 1] == '/' && s[d - 2] == '/') {
		if (cidr_num(s + d, e - d, 128, c6) < 0)
			return -1;
		e = d - 2;
		d = e;
		while (d > 0 && is_digit((unsigned char)s[d - 1]))
			d--;
	}
	if (d < e && d >= 1 && s[d - 1] == '/' && (d < 2 || s[d - 2] != '/')) {
		if (cidr_num(s + d, e - d, 32, c4) < 0)
			return -1;
		e = d - 1;
	}
	*dlen = e;
	return 0;
}

static int ip4_network(const char *s, size_t len, unsigned char *out)
{
	/* qnum "." qnum "." qnum "." qnum, qnum = 0..255 without leading zeros */
	size_t i = 0;
	for (int part = 0; part < 4; part++) {
		size_t j = i;
		while (j < len && is_digit((unsigned char)s[j]))
			j++;
		unsigned v;
		if (cidr_num(s + i, j - i, 255, &v) < 0)
			return -1;
		out[part] = (unsigned char)v;
		if (part < 3) {
			if (j >= len || s[j] != '.')
				return -1;
			j++;
		}
		i = j;
	}
	return i == len ? 0 : -1;
}

static void seterr(char *err, size_t cap, const char *what, const char *t, size_t tl)
{
	char tok[80];
	text_printable(tok, sizeof(tok), t, tl);
	snprintf(err, cap, "%s: \"%s\"", what, tok);
}

static int parse_modifier(struct spf_record *r, const char *t, size_t tl,
                          size_t nl, char *err, size_t errcap)
{
	const char *v = t + nl + 1;
	size_t vl = tl - nl - 1;
	if (text_ieq(t, nl, "redirect")) {
		if (r->has_redirect) {
			seterr(err, errcap, "redirect= given twice", t, tl);
			return -1;
		}
		int up;
		if (spf_domain_spec_check(v, vl, &up) < 0) {
			seterr(err, errcap, "bad redirect= domain-spec", t, tl);
			return -1;
		}
		memset(&r->redirect, 0, sizeof(r->redirect));
		r->redirect.kind = SPF_M_REDIRECT;
		r->redirect.qual = '+';
		r->redirect.spec = v;
		r->redirect.spec_len = vl;
		r->redirect.uses_p = up;
		r->redirect.text = t;
		r->redirect.text_len = tl;
		r->has_redirect = 1;
		return 0;
	}
	if (text_ieq(t, nl, "exp")) {
		if (r->exp) {
			seterr(err, errcap, "exp= given twice", t, tl);
			return -1;
		}
		/* RFC 7208 6.2 erratum: an explicit empty exp= is a permerror */
		if (spf_domain_spec_check(v, vl, &r->exp_uses_p) < 0) {
			seterr(err, errcap, "bad exp= domain-spec", t, tl);
			return -1;
		}
		r->exp = v;
		r->exp_len = vl;
		return 0;
	}
	if (spf_macro_check(v, vl, SPF_MS_UNKNOWN, NULL) < 0) {
		seterr(err, errcap, "bad macro-string in modifier", t, tl);
		return -1;
	}
	return 0;   /* RFC 7208 6: unknown modifiers are ignored */
}

static int parse_mech(struct spf_mech *m, const char *t, size_t tl,
                      char *err, size_t errcap)
{
	const char *p = t;
	size_t n = tl;
	memset(m, 0, sizeof(*m));
	m->text = t;
	m->text_len = tl;
	m->qual = '+';
	m->cidr4 = 32;
	m->cidr6 = 128;
	if (n > 0 && strchr("+-~?", *p)) {
		m->qual = *p;
		p++;
		n--;
	}
	size_t nl = 0;
	while (nl < n && is_alnum((unsigned char)p[nl]))
		nl++;
	const char *rest = p + nl;
	size_t rl = n - nl;
	if (rl > 0 && rest[0] != ':' && rest[0] != '/')
		goto bad;
	if (text_ieq(p, nl, "all"))
		m->kind = SPF_M_ALL;
	else if (text_ieq(p, nl, "include"))
		m->kind = SPF_M_INCLUDE;
	else if (text_ieq(p, nl, "a"))
		m->kind = SPF_M_A;
	else if (text_ieq(p, nl, "mx"))
		m->kind = SPF_M_MX;
	else if (text_ieq(p, nl, "ptr"))
		m->kind = SPF_M_PTR;
	else if (text_ieq(p, nl, "ip4"))
		m->kind = SPF_M_IP4;
	else if (text_ieq(p, nl, "ip6"))
		m->kind = SPF_M_IP6;
	else if (text_ieq(p, nl, "exists"))
		m->kind = SPF_M_EXISTS;
	else {
		seterr(err, errcap, "unknown mechanism", t, tl);
		return -1;
	}
	switch (m->kind) {
	case SPF_M_ALL:
		if (rl != 0)
			goto bad;
		return 0;
	case SPF_M_INCLUDE:
	case SPF_M_EXISTS:
	case SPF_M_PTR:
		if (rl == 0 && m->kind == SPF_M_PTR)
			return 0;
		if (rl < 2 || rest[0] != ':')
			goto bad;
		m->spec = rest + 1;
		m->spec_len = rl - 1;
		if (spf_domain_spec_check(m->spec, m->spec_len, &m->uses_p) < 0)
			goto bad;
		return 0;
	case SPF_M_A:
	case SPF_M_MX:
		if (rl == 0)
			return 0;
		if (rest[0] == '/') {
			if (dual_cidr(rest, rl, &m->cidr4, &m->cidr6) < 0)
				goto bad;
			return 0;
		}
		m->spec = rest + 1;
		if (split_cidr(m->spec, rl - 1, &m->spec_len, &m->cidr4, &m->cidr6) < 0)
			goto bad;
		if (spf_domain_spec_check(m->spec, m->spec_len, &m->uses_p) < 0)
			goto bad;
		return 0;
	case SPF_M_IP4:
	case SPF_M_IP6: {
		if (rl < 2 || rest[0] != ':')
			goto bad;
		const char *a = rest + 1;
		size_t al = rl - 1, sl = 0;
		while (sl < al && a[sl] != '/')
			sl++;
		if (m->kind == SPF_M_IP4) {
			if (ip4_network(a, sl, m->net) < 0)
				goto bad;
			if (sl < al && cidr_num(a + sl + 1, al - sl - 1, 32, &m->cidr4) < 0)
				goto bad;
		} else {
			char buf[64];
			if (sl == 0 || sl >= sizeof(buf))
				goto bad;
			memcpy(buf, a, sl);
			buf[sl] = '\0';
			if (inet_pton(AF_INET6, buf, m->net) != 1)
				goto bad;
			if (sl < al && cidr_num(a + sl + 1, al - sl - 1, 128, &m->cidr6) < 0)
				goto bad;
		}
		return 0;
	}
	default:
		break;
	}
bad:
	seterr(err, errcap, "syntax error in mechanism", t, tl);
	return -1;
}

int spf_parse(const char *s, size_t len, struct spf_record *rec,
              char *err, size_t errcap)
{
	memset(rec, 0, sizeof(*rec));
	if (errcap)
		err[0] = '\0';
	if (!spf_is_record(s, len)) {
		snprintf(err, errcap, "not an SPF record");
		return -1;
	}
	if (len > LIM_SPF_RECORD) {
		snprintf(err, errcap, "record longer than %u bytes", LIM_SPF_RECORD);
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c > 0x7e) {
			/* RFC 7208 3.1, 4.6.1: 7-bit text, terms split by spaces only */
			snprintf(err, errcap, "%s at offset %zu",
			         c >= 0x80 ? "non-ASCII byte" : "control character", i);
			return -1;
		}
	}
	size_t cap = 0;
	size_t i = 6;
	while (i < len) {
		while (i < len && s[i] == ' ')
			i++;
		if (i >= len)
			break;
		size_t j = i;
		while (j < len && s[j] != ' ')
			j++;
		const char *t = s + i;
		size_t tl = j - i;
		i = j;
		/* modifier: name "=" ..., name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." ) */
		size_t nl = 0;
		while (nl < tl && (is_alnum((unsigned char)t[nl]) || t[nl] == '-' ||
		                   t[nl] == '_' || t[nl] == '.'))
			nl++;
		if (nl < tl && t[nl] == '=') {
			if (nl == 0 || !is_alpha((unsigned char)t[0])) {
				seterr(err, errcap, "bad modifier name", t, tl);
				goto fail;
			}
			if (parse_modifier(rec, t, tl, nl, err, errcap) < 0)
				goto fail;
			continue;
		}
		if (rec->n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			struct spf_mech *nm = realloc(rec->mech, ncap * sizeof(*nm));
			if (!nm) {
				snprintf(err, errcap, "out of memory");
				goto fail;
			}
			rec->mech = nm;
			cap = ncap;
		}
		struct spf_mech *m = &rec->mech[rec->n];
		if (parse_mech(m, t, tl, err, errcap) < 0)
			goto fail;
		rec->n++;
		if (m->kind == SPF_M_ALL)
			rec->has_all = 1;
		if (m->kind == SPF_M_INCLUDE || m->kind == SPF_M_A || m->kind == SPF_M_MX ||
		    m->kind == SPF_M_PTR || m->kind == SPF_M_EXISTS)
			rec->dns_mechs++;
	}
	return 0;
fail:
	spf_record_free(rec);
	return -1;
}

void spf_record_free(struct spf_record *rec)
{
	free(rec->mech);
	rec->mech = NULL;
	rec->n = 0;
}
