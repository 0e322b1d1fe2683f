/* DKIM canonicalisation (RFC 6376 3.4) and SHA-256 hashing for the ARC
 * signatures, whose header set libopendkim cannot build (it only hashes a
 * DKIM-Signature field as the signature field). Any thread; no state but
 * what the caller owns. LF-only input is read as CRLF, like libopendkim's
 * FIXCRLF. */
#include "checks/arc/arc_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

struct arc_hash {
	EVP_MD_CTX *md;
	int bad;
	unsigned char buf[4096];  /* small writes are gathered here */
	size_t n;
};

struct arc_hash *arc_hash_new(void)
{
	struct arc_hash *h = calloc(1, sizeof *h);
	if (h == NULL)
		return NULL;
	h->md = EVP_MD_CTX_new();
	if (h->md == NULL || EVP_DigestInit_ex(h->md, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(h->md);
		free(h);
		return NULL;
	}
	return h;
}

void arc_hash_free(struct arc_hash **hp)
{
	if (*hp == NULL)
		return;
	EVP_MD_CTX_free((*hp)->md);
	free(*hp);
	*hp = NULL;
}

static void flush(struct arc_hash *h)
{
	if (h->n > 0 && EVP_DigestUpdate(h->md, h->buf, h->n) != 1)
		h->bad = 1;
	h->n = 0;
}

int arc_hash_update(struct arc_hash *h, const void *p, size_t n)
{
	if (n >= sizeof h->buf) {
		flush(h);
		if (EVP_DigestUpdate(h->md, p, n) != 1)
			h->bad = 1;
		return h->bad ? -ENOMEM : 0;
	}
	if (sizeof h->buf - h->n < n)
		flush(h);
	memcpy(h->buf + h->n, p, n);
	h->n += n;
	return h->bad ? -ENOMEM : 0;
}

static void put1(struct arc_hash *h, char c)
{
	if (h->n == sizeof h->buf)
		flush(h);
	h->buf[h->n++] = (unsigned char)c;
}

int arc_hash_final(struct arc_hash *h, unsigned char out[32])
{
	unsigned int len = 0;
	flush(h);
	if (h->bad || EVP_DigestFinal_ex(h->md, out, &len) != 1 || len != 32)
		return -ENOMEM;
	return 0;
}

/* The range of the b= value inside a raw field value (folding kept), so
 * that the signature field can be hashed without it (RFC 6376 3.7). The
 * tag name may be surrounded by FWS. -1 when there is no b= tag. */
static int find_b(const char *v, size_t len, size_t *from, size_t *to)
{
	size_t off = 0;
	while (off <= len) {
		size_t end = off;
		while (end < len && v[end] != ';')
			end++;
		size_t p = off;
		while (p < end && (v[p] == ' ' || v[p] == '\t' || v[p] == '\r' ||
		                   v[p] == '\n'))
			p++;
		if (p < end && v[p] == 'b') {
			size_t q = p + 1;
			while (q < end && (v[q] == ' ' || v[q] == '\t' || v[q] == '\r' ||
			                   v[q] == '\n'))
				q++;
			if (q < end && v[q] == '=') {
				*from = q + 1;
				*to = end;
				return 0;
			}
		}
		off = end + 1;
	}
	return -1;
}

static int is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/* Relaxed header value (RFC 6376 3.4.2): unfold, runs of WSP to one SP,
 * no WSP at either end. [skip_from, skip_to) of v is left out. */
static void relaxed_value(struct arc_hash *h, const char *v, size_t len,
                          size_t skip_from, size_t skip_to)
{
	int pending_sp = 0, started = 0;
	for (size_t k = 0; k < len; k++) {
		if (k >= skip_from && k < skip_to)
			continue;
		char c = v[k];
		if (c == '\r' || c == '\n')
			continue;
		if (is_wsp(c)) {
			pending_sp = 1;
			continue;
		}
		if (pending_sp && started)
			put1(h, ' ');
		pending_sp = 0;
		started = 1;
		put1(h, c);
	}
}

int arc_canon_header(struct arc_hash *h, const struct msg_field *f,
                     int relaxed, int strip_b)
{
	size_t from = 0, to = 0;
	int have_b = strip_b && find_b(f->value, f->value_len, &from, &to) == 0;
	if (!have_b)
		from = to = f->value_len;
	if (relaxed) {
		/* name in lower case, no WSP around the colon */
		size_t nl = f->name_len;
		while (nl > 0 && is_wsp(f->name[nl - 1]))
			nl--;
		for (size_t k = 0; k < nl; k++) {
			char c = f->name[k];
			put1(h, (char)(c >= 'A' && c <= 'Z' ? c + 32 : c));
		}
		put1(h, ':');
		relaxed_value(h, f->value, f->value_len, from, to);
	} else {
		/* simple: the field exactly as it came, bare LF read as CRLF */
		size_t vstart = (size_t)(f->value - f->line);
		for (size_t k = 0; k < f->line_len; k++) {
			if (k >= vstart + from && k < vstart + to)
				continue;
			char c = f->line[k];
			if (c == '\n' && (k == 0 || f->line[k - 1] != '\r'))
				put1(h, '\r');
			put1(h, c);
		}
	}
	if (!strip_b) {
		put1(h, '\r');
		put1(h, '\n');
	}
	return h->bad ? -ENOMEM : 0;
}

/* ---- body ---- */

struct body_out {
	struct arc_hash *h;
	int64_t limit;      /* bytes still to hash; < 0: no limit */
	uint64_t total;     /* canonical bytes produced */
};

static void body_put(struct body_out *o, const char *p, size_t n)
{
	o->total += n;
	if (o->limit >= 0) {
		if ((uint64_t)o->limit < n)
			n = (size_t)o->limit;
		o->limit -= (int64_t)n;
	}
	if (n > 0)
		(void)arc_hash_update(o->h, p, n);
}

static void body_crlfs(struct body_out *o, uint64_t n)
{
	for (uint64_t k = 0; k < n; k++)
		body_put(o, "\r\n", 2);
}

int arc_body_hash(const char *body, size_t len, int relaxed, int64_t limit,
                  unsigned char out[32], uint64_t *canon_len_r)
{
	struct arc_hash *h = arc_hash_new();
	if (h == NULL)
		return -ENOMEM;
	struct body_out o = { h, limit, 0 };
	uint64_t empty_lines = 0;   /* held back: trailing ones are dropped */
	size_t off = 0;
	while (off < len) {
		/* one line: [off, eol) then its line end (CRLF or bare LF) */
		size_t eol = off;
		while (eol < len && body[eol] != '\n')
			eol++;
		int has_eol = eol < len;
		size_t end = eol;
		if (has_eol && end > off && body[end - 1] == '\r')
			end--;
		size_t next = has_eol ? eol + 1 : eol;
		if (relaxed) {
			/* RFC 6376 3.4.4: WSP runs to one SP, none at line end */
			size_t e = end;
			while (e > off && is_wsp(body[e - 1]))
				e--;
			if (e == off) {
				empty_lines++;
				off = next;
				continue;
			}
			body_crlfs(&o, empty_lines);
			empty_lines = 0;
			size_t k = off;
			while (k < e) {
				size_t run = k;
				while (run < e && !is_wsp(body[run]))
					run++;
				body_put(&o, body + k, run - k);
				if (run < e) {
					body_put(&o, " ", 1);
					while (run < e && is_wsp(body[run]))
						run++;
				}
				k = run;
			}
			body_put(&o, "\r\n", 2);
		} else {
			if (end == off) {
				empty_lines++;
				off = next;
				continue;
			}
			body_crlfs(&o, empty_lines);
			empty_lines = 0;
			body_put(&o, body + off, end - off);
			body_put(&o, "\r\n", 2);
		}
		off = next;
	}
	/* RFC 6376 3.4.3: an empty simple body is one CRLF; 3.4.4: an empty
	 * relaxed body stays empty (errata 1384) */
	if (!relaxed && o.total == 0)
		body_put(&o, "\r\n", 2);
	*canon_len_r = o.total;
	int r = arc_hash_final(h, out);
	arc_hash_free(&h);
	return r;
}

/* ---- base64 ---- */

static int b64v(unsigned char c)
{
	if (c >= 'A' && c <= 'Z') return c - 'A';
	if (c >= 'a' && c <= 'z') return c - 'a' + 26;
	if (c >= '0' && c <= '9') return c - '0' + 52;
	if (c == '+') return 62;
	if (c == '/') return 63;
	return -1;
}

int arc_b64_decode(const char *s, size_t len, unsigned char *out, size_t cap,
                   size_t *out_len_r)
{
	uint32_t acc = 0;
	unsigned bits = 0, pad = 0;
	size_t n = 0, chars = 0;
	for (size_t k = 0; k < len; k++) {
		unsigned char c = (unsigned char)s[k];
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
			continue;
		if (c == '=') {
			pad++;
			chars++;
			continue;
		}
		int v = b64v(c);
		if (v < 0 || pad > 0)
			return -1;    /* a character after padding, or not base64 */
		chars++;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (n == cap)
				return -1;
			out[n++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	if (pad > 2 || chars % 4 != 0 || acc != 0)
		return -1;
	*out_len_r = n;
	return 0;
}
