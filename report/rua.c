/* The rua= destinations of a DMARC record and the external-destination
 * verification record (RFC 9990 3.1). Pure functions over DNS text; any
 * thread. */
#include <string.h>

#include "common/text.h"
#include "report/report.h"

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* An address we are willing to put in RCPT TO and To: one '@', a
 * non-empty local part of atext and dots, a domain of letters, digits,
 * '-' and '.'. */
static int usable_addr(char *a, size_t n, const char **domain_r)
{
	char *at = memchr(a, '@', n);
	if (!at || at == a || (size_t)(at - a) > 64 || at + 1 == a + n ||
	    memchr(at + 1, '@', (size_t)(a + n - at - 1)))
		return 0;
	for (char *p = a; p < at; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || strchr("!#$%&'*+-/=?^_`{|}~.", *p)))
			return 0;
	for (char *p = at + 1; p < a + n; p++) {
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.'))
			return 0;
	}
	if (at[1] == '.' || a[n - 1] == '.' || strstr(at + 1, ".."))
		return 0;
	*domain_r = at + 1;
	return 1;
}

/* One URI: "mailto:" addr [ "!" size [k|m|g|t] ]. 1 when usable. */
static int parse_uri(const char *s, size_t n, struct rpt_dest *d)
{
	text_trim(&s, &n);
	if (n < 7 || !text_ieq(s, 7, "mailto:"))
		return 0;
	s += 7;
	n -= 7;
	const char *bang = memchr(s, '!', n);
	size_t an = bang ? (size_t)(bang - s) : n;
	d->max_size = 0;
	if (bang) {
		const char *z = bang + 1;
		size_t zn = n - an - 1, digits = 0;
		while (digits < zn && z[digits] >= '0' && z[digits] <= '9')
			digits++;
		uint64_t v;
		if (digits == 0 || digits > 12 || text_u64(z, digits, UINT64_C(999999999999), &v) < 0)
			return 0;
		unsigned shift = 0;
		if (digits < zn) {
			switch (z[digits] | 0x20) {
			case 'k': shift = 10; break;
			case 'm': shift = 20; break;
			case 'g': shift = 30; break;
			case 't': shift = 40; break;
			default: return 0;
			}
			if (digits + 1 != zn)
				return 0;
		}
		/* 12 digits and a shift of 40 stay below 2^80: cap instead */
		d->max_size = shift && v > (UINT64_MAX >> shift) ? UINT64_MAX : v << shift;
		if (d->max_size == 0)
			return 0;
	}
	/* RFC 3986 percent-decoding; a query ("?subject=...") is not ours to
	 * follow and is dropped */
	size_t o = 0;
	for (size_t i = 0; i < an; i++) {
		char c = s[i];
		if (c == '?')
			break;
		if (c == '%') {
			int h = i + 2 < an ? hexval(s[i + 1]) : -1, l = i + 2 < an ? hexval(s[i + 2]) : -1;
			if (h < 0 || l < 0)
				return 0;
			c = (char)(h * 16 + l);
			i += 2;
		}
		if ((unsigned char)c <= ' ' || (unsigned char)c >= 0x7f || o + 1 >= sizeof(d->addr))
			return 0;
		d->addr[o++] = c;
	}
	d->addr[o] = '\0';
	return o > 0 && usable_addr(d->addr, o, &d->domain);
}

static int uri_list(const char *txt, size_t len, const char *which, struct rpt_dest *out,
                    size_t cap, unsigned *skipped_r)
{
	*skipped_r = 0;
	size_t off = 0;
	while (off < len) {
		const char *semi = memchr(txt + off, ';', len - off);
		size_t end = semi ? (size_t)(semi - txt) : len;
		const char *tag = txt + off;
		size_t tn = end - off;
		off = semi ? end + 1 : len;
		text_trim(&tag, &tn);
		const char *eq = memchr(tag, '=', tn);
		if (!eq)
			continue;
		const char *name = tag, *val = eq + 1;
		size_t nn = (size_t)(eq - tag), vn = tn - nn - 1;
		text_trim(&name, &nn);
		if (!text_ieq(name, nn, which))
			continue;
		/* RFC 9989 4.7: the first rua= (ruf=) counts; a duplicated tag makes the
		 * record invalid, which the policy parser reports, not us */
		size_t n = 0, p = 0;
		while (p <= vn) {
			const char *comma = memchr(val + p, ',', vn - p);
			size_t ue = comma ? (size_t)(comma - val) : vn;
			struct rpt_dest d;
			if (ue > p && parse_uri(val + p, ue - p, &d)) {
				int dup = 0;
				for (size_t k = 0; k < n; k++)
					dup |= strcmp(out[k].addr, d.addr) == 0;
				if (!dup && n < cap) {
					out[n] = d;
					out[n].domain = out[n].addr + (d.domain - d.addr);
					n++;
				} else if (!dup) {
					(*skipped_r)++;
				}
			} else {
				(*skipped_r)++;
			}
			if (!comma)
				break;
			p = ue + 1;
		}
		return (int)n;
	}
	return -1;
}

int rpt_rua_parse(const char *txt, size_t len, struct rpt_dest *out, size_t cap,
                  unsigned *skipped_r)
{
	return uri_list(txt, len, "rua", out, cap, skipped_r);
}

int rpt_ruf_parse(const char *txt, size_t len, struct rpt_dest *out, size_t cap,
                  unsigned *skipped_r)
{
	return uri_list(txt, len, "ruf", out, cap, skipped_r);
}

int rpt_verify_record(const char *txt, size_t len)
{
	/* RFC 9990 3.1: "v=DMARC1" first; a record that has only it is fine */
	if (len < 8 || memcmp(txt, "v=DMARC1", 8) != 0)
		return 0;
	if (len == 8)
		return 1;
	const char *rest = txt + 8;
	size_t rn = len - 8;
	text_trim(&rest, &rn);
	return rn == 0 || rest[0] == ';';
}
