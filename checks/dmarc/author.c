/* The DMARC author domain: the domain(s) of the RFC 5322 From field,
 * parsed with the full address grammar (display names, quoted strings,
 * nested comments, angle addresses with obsolete routes, groups, obsolete
 * phrases and empty list elements) and normalised to lower-case A-labels.
 * Pure functions; any thread. */
#include "checks/dmarc/dmarc.h"
#include "common/text.h"

#include <idn2.h>
#include <stdlib.h>
#include <string.h>

const char *dmarc_author_status_name(enum dmarc_author_status s)
{
	switch (s) {
	case DMARC_AUTHOR_OK:           return "ok";
	case DMARC_AUTHOR_MULTI_DOMAIN: return "multi_domain";
	case DMARC_AUTHOR_MULTI_FIELD:  return "multi_field";
	case DMARC_AUTHOR_NO_FROM:      return "no_from";
	case DMARC_AUTHOR_SYNTAX:       return "syntax";
	case DMARC_AUTHOR_NO_DOMAIN:    return "no_domain";
	case DMARC_AUTHOR_TOO_MANY:     return "too_many";
	case DMARC_AUTHOR_NO_MEMORY:    return "no_memory";
	}
	return "syntax";
}

/* ---- domain names ---- */

static char lc(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c; }

static int ldh_ok(const char *d)
{
	size_t total = strlen(d), lab = 0;
	if (total == 0 || total > 253)
		return 0;
	for (size_t i = 0; i <= total; i++) {
		char c = d[i];
		if (c == '.' || c == '\0') {
			if (lab == 0 || lab > 63)
				return 0;
			lab = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_'))
			return 0;
		lab++;
	}
	return 1;
}

int dmarc_domain_norm(const char *in, size_t len, char out[DMARC_DOMAIN_MAX])
{
	char buf[DMARC_DOMAIN_MAX * 4];
	out[0] = '\0';
	if (len > 0 && in[len - 1] == '.')
		len--;                 /* a final dot names the same domain */
	if (len == 0 || len >= sizeof(buf))
		return -1;
	int eight = 0, xn = 0;
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)in[i] >= 0x80)
			eight = 1;
		if (in[i] == '\0')
			return -1;
		buf[i] = lc(in[i]);
	}
	buf[len] = '\0';
	for (const char *p = buf; (p = strstr(p, "xn--")) != NULL; p += 4)
		if (p == buf || p[-1] == '.')
			xn = 1;
	if (eight || xn) {
		/* RFC 9989 5.3.1: U-labels become A-labels (RFC 5890 2.3);
		 * existing A-labels are checked by the same lookup conversion */
		char *a = NULL;
		if (idn2_lookup_u8((const uint8_t *)buf, (uint8_t **)&a,
		                   IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL) != IDN2_OK)
			return -1;
		size_t al = strlen(a);
		if (al > 0 && a[al - 1] == '.')
			a[--al] = '\0';
		if (al >= DMARC_DOMAIN_MAX) {
			idn2_free(a);
			return -1;
		}
		for (size_t i = 0; i <= al; i++)
			buf[i] = lc(a[i]);
		idn2_free(a);
	}
	if (!ldh_ok(buf))
		return -1;
	memcpy(out, buf, strlen(buf) + 1);
	return 0;
}

/* ---- RFC 5322 address lexer over an unfolded value ---- */

enum tok { TK_END, TK_ATOM, TK_QSTR, TK_DLIT, TK_SPECIAL, TK_ERR };

struct lex {
	const char *s;
	size_t n, i;
	int err;                /* sticky */
};

static int is_atext(unsigned char c)
{
	if (c >= 0x80)
		return 1;       /* RFC 6532 3.2: UTF-8 in atext */
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return 1;
	return c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static void skip_cfws(struct lex *l)
{
	while (l->i < l->n && !l->err) {
		char c = l->s[l->i];
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			l->i++;
		} else if (c == '(') {
			unsigned depth = 0;
			do {
				c = l->s[l->i];
				if (c == '\\') {
					l->i++;     /* quoted-pair: skip the next byte */
				} else if (c == '(') {
					if (++depth > LIM_MAIL_COMMENT_DEPTH)
						l->err = 1;
				} else if (c == ')') {
					depth--;
				}
				l->i++;
			} while (depth > 0 && l->i < l->n && !l->err);
			if (depth > 0)
				l->err = 1;     /* unterminated comment */
		} else {
			break;
		}
	}
}

/* Peeks the next token after CFWS: type, and its extent [*b, *e). */
static enum tok peek(struct lex *l, size_t *b, size_t *e)
{
	skip_cfws(l);
	if (l->err)
		return TK_ERR;
	size_t i = l->i;
	*b = i;
	if (i >= l->n) {
		*e = i;
		return TK_END;
	}
	unsigned char c = (unsigned char)l->s[i];
	if (c == '"') {
		for (i++; i < l->n; i++) {
			if (l->s[i] == '\\')
				i++;
			else if (l->s[i] == '"')
				break;
		}
		if (i >= l->n)
			return TK_ERR;
		*e = i + 1;
		return TK_QSTR;
	}
	if (c == '[') {
		for (i++; i < l->n && l->s[i] != ']'; i++)
			if (l->s[i] == '[' || l->s[i] == '\\')
				return TK_ERR;
		if (i >= l->n)
			return TK_ERR;
		*e = i + 1;
		return TK_DLIT;
	}
	if (is_atext(c)) {
		while (i < l->n && is_atext((unsigned char)l->s[i]))
			i++;
		*e = i;
		return TK_ATOM;
	}
	if (strchr("<>:;@,.", c)) {
		*e = i + 1;
		return TK_SPECIAL;
	}
	return TK_ERR;   /* ')', ']', '\\' or a control byte out of place */
}

static int take_special(struct lex *l, char want)
{
	size_t b, e;
	if (peek(l, &b, &e) == TK_SPECIAL && l->s[b] == want) {
		l->i = e;
		return 1;
	}
	return 0;
}

struct acc {                 /* what the parse collects */
	struct dmarc_author *a;
	int bad_domain;
	int display_done;
	size_t n_seen_domains;   /* distinct, may exceed the array */
	char spare[DMARC_DOMAIN_MAX];  /* a domain beyond the array's room */
};

/* ---- RFC 2047 encoded words, for the display name in the trace ---- */

static int b64v(char c)
{
	if (c >= 'A' && c <= 'Z') return c - 'A';
	if (c >= 'a' && c <= 'z') return c - 'a' + 26;
	if (c >= '0' && c <= '9') return c - '0' + 52;
	if (c == '+') return 62;
	if (c == '/') return 63;
	return -1;
}

static int hexv(char c)
{
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

/* Decodes one atom if it is an encoded word (=?cs?B|Q?text?=) into out.
 * Returns the bytes written, or -1 when it is not an encoded word. */
static long decode_ew(const char *w, size_t n, char *out, size_t cap)
{
	if (n < 8 || w[0] != '=' || w[1] != '?' || w[n - 2] != '?' || w[n - 1] != '=')
		return -1;
	const char *q1 = memchr(w + 2, '?', n - 4);
	if (!q1 || q1 + 3 > w + n - 2 || q1[2] != '?')
		return -1;
	char enc = lc(q1[1]);
	const char *t = q1 + 3, *te = w + n - 2;
	size_t o = 0;
	if (enc == 'b') {
		unsigned acc = 0;
		int bits = 0;
		for (; t < te; t++) {
			if (*t == '=')
				break;
			int v = b64v(*t);
			if (v < 0)
				return -1;
			acc = (acc << 6) | (unsigned)v;
			bits += 6;
			if (bits >= 8) {
				bits -= 8;
				if (o < cap)
					out[o++] = (char)((acc >> bits) & 0xff);
			}
		}
	} else if (enc == 'q') {
		for (; t < te; t++) {
			char c = *t;
			if (c == '_') {
				c = ' ';
			} else if (c == '=' && te - t >= 3 && hexv(t[1]) >= 0 && hexv(t[2]) >= 0) {
				c = (char)(hexv(t[1]) * 16 + hexv(t[2]));
				t += 2;
			}
			if (o < cap)
				out[o++] = c;
		}
	} else {
		return -1;
	}
	return (long)o;
}

/* Builds the display name from the phrase tokens in [b, e) of the value. */
static void set_display(struct acc *c, const struct lex *l, size_t b, size_t e)
{
	char tmp[256];
	size_t o = 0;
	int prev_ew = 0;
	struct lex sub = { l->s, e, b, 0 };
	size_t tb, te;
	enum tok k;
	if (c->display_done)
		return;
	c->display_done = 1;
	while ((k = peek(&sub, &tb, &te)) != TK_END && k != TK_ERR && o < sizeof(tmp) - 1) {
		sub.i = te;
		const char *w = l->s + tb;
		size_t wl = te - tb;
		if (k == TK_QSTR) {
			w++;
			wl -= 2;
		}
		long d = -1;
		if (k == TK_ATOM && o + 1 < sizeof(tmp))
			d = decode_ew(w, wl, tmp + o + (o && !prev_ew ? 1 : 0),
			              sizeof(tmp) - 1 - o - 1);
		if (d >= 0) {
			/* RFC 2047 6.2: space between adjacent encoded words is dropped */
			if (o && !prev_ew)
				tmp[o++] = ' ';
			o += (size_t)d;
			prev_ew = 1;
			continue;
		}
		if (o && o < sizeof(tmp) - 1 && !(k == TK_SPECIAL))
			tmp[o++] = ' ';
		for (size_t i = 0; i < wl && o < sizeof(tmp) - 1; i++) {
			if (k == TK_QSTR && w[i] == '\\' && i + 1 < wl)
				i++;
			tmp[o++] = w[i];
		}
		prev_ew = 0;
	}
	text_printable(c->a->display, sizeof(c->a->display), tmp, o);
}

static void add_domain(struct acc *c, const char *raw, size_t len, int literal)
{
	struct dmarc_author *a = c->a;
	a->n_mailboxes++;
	/* normalised straight into its place (the next free slot, or the
	 * spare one when the array is full) */
	int room = a->n_domains < LIM_DMARC_AUTHOR_DOMAINS;
	char *d = room ? a->domains[a->n_domains] : c->spare;
	if (literal || dmarc_domain_norm(raw, len, d) < 0) {
		d[0] = '\0';
		c->bad_domain = 1;
		return;
	}
	for (size_t i = 0; i < a->n_domains; i++)
		if (strcmp(a->domains[i], d) == 0) {
			if (room)
				d[0] = '\0';
			return;
		}
	if (room)
		a->n_domains++;
	c->n_seen_domains++;
}

/* local-part "@" domain, RFC 5322 3.4.1 with obs-local-part/obs-domain. */
static int parse_addr_spec(struct lex *l, struct acc *c)
{
	size_t b, e;
	enum tok k = peek(l, &b, &e);
	if (k != TK_ATOM && k != TK_QSTR)
		return -1;
	l->i = e;
	while (take_special(l, '.')) {
		k = peek(l, &b, &e);
		if (k != TK_ATOM && k != TK_QSTR)
			return -1;
		l->i = e;
	}
	if (!take_special(l, '@'))
		return -1;
	k = peek(l, &b, &e);
	if (k == TK_DLIT) {
		l->i = e;
		add_domain(c, NULL, 0, 1);   /* an address literal has no DMARC domain */
		return 0;
	}
	char dom[DMARC_DOMAIN_MAX * 4];
	size_t dl = 0;
	int too_long = 0;
	if (k != TK_ATOM) {
		if (k == TK_SPECIAL || k == TK_END) {
			add_domain(c, "", 0, 0);  /* empty domain */
			return 0;
		}
		return -1;
	}
	for (;;) {
		if (dl + (e - b) + 1 >= sizeof(dom))
			too_long = 1;
		else {
			memcpy(dom + dl, l->s + b, e - b);
			dl += e - b;
		}
		l->i = e;
		if (!take_special(l, '.'))
			break;
		if (dl + 1 < sizeof(dom))
			dom[dl++] = '.';
		k = peek(l, &b, &e);
		if (k != TK_ATOM)
			break;         /* a final dot: "user@example.com." */
	}
	if (too_long)
		add_domain(c, NULL, 0, 1);
	else
		add_domain(c, dom, dl, 0);
	return 0;
}

/* mailbox = name-addr / addr-spec; group when allow_group. */
static int parse_address(struct lex *l, struct acc *c, int allow_group)
{
	size_t start = l->i, b, e, pb = 0, pe = 0;
	enum tok k;
	int words = 0;
	skip_cfws(l);
	start = l->i;
	/* phrase (obs-phrase allows dots) */
	for (;;) {
		k = peek(l, &b, &e);
		if (k == TK_ATOM || k == TK_QSTR) {
			if (!words)
				pb = b;
			pe = e;
			words++;
			l->i = e;
		} else if (k == TK_SPECIAL && l->s[b] == '.' && words) {
			l->i = e;
		} else {
			break;
		}
	}
	if (k == TK_ERR)
		return -1;
	if (k == TK_SPECIAL && l->s[b] == '<') {
		if (words)
			set_display(c, l, pb, pe);
		else
			c->display_done = 1;
		l->i = e;
		/* obs-route: "@a,@b:" before the addr-spec */
		if (peek(l, &b, &e) == TK_SPECIAL && (l->s[b] == '@' || l->s[b] == ',')) {
			while (take_special(l, ',') || take_special(l, '@')) {
				k = peek(l, &b, &e);
				while (k == TK_ATOM || (k == TK_SPECIAL && l->s[b] == '.')) {
					l->i = e;
					k = peek(l, &b, &e);
				}
			}
			if (!take_special(l, ':'))
				return -1;
		}
		if (parse_addr_spec(l, c) < 0)
			return -1;
		return take_special(l, '>') ? 0 : -1;
	}
	if (k == TK_SPECIAL && l->s[b] == '@' && words) {
		l->i = start;
		c->display_done = 1;
		return parse_addr_spec(l, c);
	}
	if (k == TK_SPECIAL && l->s[b] == ':' && words && allow_group) {
		/* group: display-name ":" [group-list] ";" */
		l->i = e;
		for (;;) {
			k = peek(l, &b, &e);
			if (k == TK_SPECIAL && l->s[b] == ';') {
				l->i = e;
				return 0;
			}
			if (k == TK_SPECIAL && l->s[b] == ',') {
				l->i = e;      /* obs-mbox-list empty element */
				continue;
			}
			if (k == TK_END || k == TK_ERR)
				return -1;
			if (parse_address(l, c, 0) < 0)
				return -1;
			if (c->a->n_mailboxes > LIM_DMARC_FROM_MAILBOXES)
				return -1;
			k = peek(l, &b, &e);
			if (k == TK_SPECIAL && (l->s[b] == ',' || l->s[b] == ';'))
				continue;
			return -1;
		}
	}
	return -1;
}

static int parse_list(const char *v, size_t n, struct acc *c)
{
	struct lex l = { v, n, 0, 0 };
	size_t b, e;
	for (;;) {
		enum tok k = peek(&l, &b, &e);
		if (k == TK_END)
			return 0;
		if (k == TK_ERR)
			return -1;
		if (k == TK_SPECIAL && v[b] == ',') {
			l.i = e;           /* obs-addr-list empty element */
			continue;
		}
		if (parse_address(&l, c, 1) < 0 || l.err)
			return -1;
		if (c->a->n_mailboxes > LIM_DMARC_FROM_MAILBOXES)
			return -1;
		k = peek(&l, &b, &e);
		if (k == TK_END)
			return 0;
		if (k != TK_SPECIAL || v[b] != ',')
			return -1;
		l.i = e;
	}
}

/* syntax_err: 0, 1 (does not parse) or 2 (no memory) */
static int finish(struct acc *c, int syntax_err)
{
	struct dmarc_author *a = c->a;
	if (syntax_err == 2) {
		a->status = DMARC_AUTHOR_NO_MEMORY;
		a->why = "out of memory";
		a->n_domains = 0;
		return -1;
	}
	if (syntax_err) {
		a->status = DMARC_AUTHOR_SYNTAX;
		a->why = "From field does not parse";
	} else if (a->n_mailboxes == 0) {
		a->status = DMARC_AUTHOR_NO_DOMAIN;
		a->why = "From field has no mailbox";
	} else if (c->bad_domain) {
		a->status = DMARC_AUTHOR_NO_DOMAIN;
		a->why = "From mailbox without a valid domain";
	} else if (c->n_seen_domains > LIM_DMARC_AUTHOR_DOMAINS) {
		a->status = DMARC_AUTHOR_TOO_MANY;
		a->why = "too many From domains";
	} else if (a->n_fields > 1) {
		a->status = DMARC_AUTHOR_MULTI_FIELD;
		a->why = "several From fields";
	} else if (a->n_domains > 1) {
		a->status = DMARC_AUTHOR_MULTI_DOMAIN;
		a->why = "From mailboxes in several domains";
	} else {
		a->status = DMARC_AUTHOR_OK;
		a->why = NULL;
	}
	if (a->status == DMARC_AUTHOR_SYNTAX || a->status == DMARC_AUTHOR_NO_DOMAIN ||
	    a->status == DMARC_AUTHOR_TOO_MANY) {
		a->n_domains = 0;
		return -1;
	}
	return 0;
}

/* 0, -1 (does not parse) or -2 (no memory) */
static int parse_field(const char *v, size_t len, struct acc *c)
{
	char *buf = malloc(len + 1);
	if (!buf)
		return -2;
	size_t n = msg_unfold(v, len, buf, len + 1);
	int rc = n == (size_t)-1 ? -1 : parse_list(buf, n, c);
	free(buf);
	return rc;
}

int dmarc_author_value(const char *v, size_t len, struct dmarc_author *a)
{
	memset(a, 0, sizeof(*a));
	struct acc c = { .a = a };
	a->n_fields = 1;
	int rc = parse_field(v, len, &c);
	return finish(&c, rc == -2 ? 2 : rc < 0);
}

int dmarc_author(const struct msg *m, struct dmarc_author *a)
{
	memset(a, 0, sizeof(*a));
	struct acc c = { .a = a };
	size_t nf = msg_count(m, "From");
	a->n_fields = nf;
	if (nf == 0) {
		a->status = DMARC_AUTHOR_NO_FROM;
		a->why = "no From field";
		return -1;
	}
	int err = 0;
	for (size_t i = 0; i < nf && !err; i++) {
		const struct msg_field *f = msg_get(m, "From", i);
		int rc = f ? parse_field(f->value, f->value_len, &c) : -1;
		if (rc < 0)
			err = rc == -2 ? 2 : 1;
		if (a->n_mailboxes > LIM_DMARC_FROM_MAILBOXES)
			err = 1;
	}
	return finish(&c, err);
}
