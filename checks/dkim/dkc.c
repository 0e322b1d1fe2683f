/* DKIM canonicalisation and hashing (RFC 6376 3.4, 3.7). The body is
 * canonicalised in one pass, chunk by chunk, by a small state machine per
 * algorithm; output that equals the input (the common case: CRLF lines,
 * single spaces) is handed to SHA-256 as whole spans of the caller's
 * buffer, so most of the body is hashed in place, never copied. */
#include "checks/dkim/dkc.h"
#include "checks/msg.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

/* ---- the digest: fetched once (an implicit fetch per init is slow) ---- */

static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void fetch_sha256(void)
{
	sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static const EVP_MD *sha256(void)
{
	pthread_once(&sha256_once, fetch_sha256);
	return sha256_md ? sha256_md : EVP_sha256();
}

/* ---- hash with a gather buffer for small writes ---- */

#define DKC_GATHER 4096u   /* writes under this are gathered before hashing */

struct dkc_hash {
	EVP_MD_CTX *md;
	int bad;
	size_t n;
	unsigned char buf[DKC_GATHER];
};

static int hash_init(struct dkc_hash *h)
{
	h->bad = 0;
	h->n = 0;
	h->md = EVP_MD_CTX_new();
	if (h->md == NULL || EVP_DigestInit_ex(h->md, sha256(), NULL) != 1) {
		EVP_MD_CTX_free(h->md);
		h->md = NULL;
		return -ENOMEM;
	}
	return 0;
}

struct dkc_hash *dkc_hash_new(void)
{
	struct dkc_hash *h = malloc(sizeof *h);
	if (h == NULL)
		return NULL;
	if (hash_init(h) != 0) {
		free(h);
		return NULL;
	}
	return h;
}

void dkc_hash_free(struct dkc_hash **hp)
{
	if (*hp == NULL)
		return;
	EVP_MD_CTX_free((*hp)->md);
	free(*hp);
	*hp = NULL;
}

static void flush(struct dkc_hash *h)
{
	if (h->n > 0 && EVP_DigestUpdate(h->md, h->buf, h->n) != 1)
		h->bad = 1;
	h->n = 0;
}

int dkc_hash_update(struct dkc_hash *h, const void *p, size_t n)
{
	if (n >= DKC_GATHER / 4) {
		flush(h);
		if (EVP_DigestUpdate(h->md, p, n) != 1)
			h->bad = 1;
		return h->bad ? -ENOMEM : 0;
	}
	if (DKC_GATHER - h->n < n)
		flush(h);
	memcpy(h->buf + h->n, p, n);
	h->n += n;
	return h->bad ? -ENOMEM : 0;
}

static void put1(struct dkc_hash *h, char c)
{
	if (h->n == DKC_GATHER)
		flush(h);
	h->buf[h->n++] = (unsigned char)c;
}

int dkc_hash_final(struct dkc_hash *h, unsigned char out[DKC_DIGEST_LEN])
{
	unsigned int len = 0;
	flush(h);
	if (h->bad || EVP_DigestFinal_ex(h->md, out, &len) != 1 ||
	    len != DKC_DIGEST_LEN)
		return -ENOMEM;
	return 0;
}

/* ---- header fields ---- */

static int is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

static int is_fws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
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
		while (p < end && is_fws(v[p]))
			p++;
		if (p < end && v[p] == 'b') {
			size_t q = p + 1;
			while (q < end && is_fws(v[q]))
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

/* Relaxed header value (RFC 6376 3.4.2): unfold, runs of WSP to one SP,
 * no WSP at either end. [skip_from, skip_to) of v is left out. */
static void relaxed_value(struct dkc_hash *h, const char *v, size_t len,
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

int dkc_header(struct dkc_hash *h, const struct msg_field *f, int relaxed,
               int strip_b)
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

/* ---- the body ---- */

struct sink {
	int relaxed;
	int64_t limit;          /* bytes still wanted; < 0: all */
	struct dkc_hash h;
	unsigned char digest[DKC_DIGEST_LEN];
};

/* One canonicaliser. Bytes whose fate depends on what follows are held as
 * state, never as data: a CR (is LF next?), a WSP run (does the line end
 * here?), empty lines (is the body over?). */
struct canon {
	int on;
	int relaxed;
	int cr;                 /* a CR was the last byte seen */
	int ws;                 /* relaxed: a WSP run is pending */
	int ws_one_sp;          /* ... and it is a single SP */
	int line_has;           /* the current line has produced output */
	uint64_t held;          /* empty lines not yet written */
	uint64_t len;           /* canonical bytes produced */
	/* the span of the current chunk to be hashed as it is */
	const char *span;
	size_t span_len;
};

struct dkc_body {
	/* allocated as asked for: most messages need one or two, and each
	 * carries a gather buffer (a message must not pay for sixteen) */
	struct sink *sinks[LIM_DKIM_BODY_HASHES];
	int n;
	int started, ended, bad;
	struct canon c[2];      /* [0] simple, [1] relaxed */
};

struct dkc_body *dkc_body_new(void)
{
	struct dkc_body *b = calloc(1, sizeof *b);
	if (b == NULL)
		return NULL;
	b->c[0].relaxed = 0;
	b->c[1].relaxed = 1;
	return b;
}

void dkc_body_free(struct dkc_body **bp)
{
	struct dkc_body *b = *bp;
	if (b == NULL)
		return;
	for (int i = 0; i < b->n; i++) {
		EVP_MD_CTX_free(b->sinks[i]->h.md);
		free(b->sinks[i]);
	}
	free(b);
	*bp = NULL;
}

int dkc_body_want(struct dkc_body *b, int relaxed, int64_t limit)
{
	relaxed = relaxed ? 1 : 0;
	if (limit < 0)
		limit = -1;
	for (int i = 0; i < b->n; i++)
		if (b->sinks[i]->relaxed == relaxed && b->sinks[i]->limit == limit)
			return i;
	if (b->started || b->n == (int)LIM_DKIM_BODY_HASHES)
		return -1;
	struct sink *s = malloc(sizeof *s);
	if (s == NULL)
		return -1;
	s->relaxed = relaxed;
	s->limit = limit;
	if (hash_init(&s->h) != 0) {
		free(s);
		return -1;
	}
	b->sinks[b->n] = s;
	b->c[relaxed].on = 1;
	return b->n++;
}

void dkc_body_measure(struct dkc_body *b, int relaxed)
{
	if (!b->started)
		b->c[relaxed ? 1 : 0].on = 1;
}

/* canonical output: every sink of this canonicalisation takes what it
 * still wants of it */
static void out(struct dkc_body *b, struct canon *c, const char *p, size_t n)
{
	c->len += n;
	for (int i = 0; i < b->n; i++) {
		struct sink *s = b->sinks[i];
		if (s->relaxed != c->relaxed)
			continue;
		size_t take = n;
		if (s->limit >= 0) {
			if ((uint64_t)s->limit < take)
				take = (size_t)s->limit;
			s->limit -= (int64_t)take;
		}
		if (take > 0 && dkc_hash_update(&s->h, p, take) != 0)
			b->bad = 1;
	}
}

static void span_flush(struct dkc_body *b, struct canon *c)
{
	if (c->span_len > 0)
		out(b, c, c->span, c->span_len);
	c->span_len = 0;
}

/* p[0..n) of the current chunk is output as it stands */
static void verbatim(struct dkc_body *b, struct canon *c, const char *p,
                     size_t n)
{
	if (c->span_len > 0 && c->span + c->span_len == p) {
		c->span_len += n;
		return;
	}
	span_flush(b, c);
	c->span = p;
	c->span_len = n;
}

static void literal(struct dkc_body *b, struct canon *c, const char *s,
                    size_t n)
{
	span_flush(b, c);
	out(b, c, s, n);
}

static void release_held(struct dkc_body *b, struct canon *c)
{
	for (; c->held > 0; c->held--)
		literal(b, c, "\r\n", 2);
}

/* Content byte(s) at p (in the chunk, or a held CR from an earlier one
 * when p is NULL): written after what was held back. */
static void content(struct dkc_body *b, struct canon *c, const char *p,
                    size_t n)
{
	release_held(b, c);
	if (c->ws) {
		/* a single SP right before p in this chunk stays in the span */
		if (c->ws_one_sp && p != NULL && c->span_len > 0 &&
		    c->span + c->span_len + 1 == p && p[-1] == ' ')
			c->span_len++;
		else
			literal(b, c, " ", 1);
		c->ws = 0;
	}
	if (p == NULL)
		literal(b, c, "\r", 1);
	else
		verbatim(b, c, p, n);
	c->line_has = 1;
}

/* The end of a line; lf is its LF in the chunk, crlf_here when the CR
 * before it is in the same chunk. */
static void line_end(struct dkc_body *b, struct canon *c, const char *lf,
                     int crlf_here)
{
	if (c->line_has) {
		if (crlf_here && !c->ws)
			verbatim(b, c, lf - 1, 2);
		else
			literal(b, c, "\r\n", 2);
	} else {
		c->held++;
	}
	c->line_has = 0;
	c->ws = 0;
	c->cr = 0;
}

static void canon_feed(struct dkc_body *b, struct canon *c, const char *p,
                       size_t n)
{
	size_t i = 0;
	c->span_len = 0;
	while (i < n) {
		char ch = p[i];
		if (c->cr && ch != '\n') {
			/* the CR before this byte was content after all */
			c->cr = 0;
			content(b, c, i > 0 ? p + i - 1 : NULL, 1);
		}
		if (ch == '\r') {
			c->cr = 1;
			i++;
			continue;
		}
		if (ch == '\n') {
			line_end(b, c, p + i, c->cr && i > 0);
			i++;
			continue;
		}
		if (c->relaxed && is_wsp(ch)) {
			c->ws_one_sp = !c->ws && ch == ' ';
			c->ws = 1;
			i++;
			continue;
		}
		/* a run of ordinary bytes */
		size_t j = i + 1;
		if (c->relaxed) {
			while (j < n && p[j] != '\r' && p[j] != '\n' && !is_wsp(p[j]))
				j++;
		} else {
			while (j < n && p[j] != '\r' && p[j] != '\n')
				j++;
		}
		content(b, c, p + i, j - i);
		i = j;
	}
	span_flush(b, c);
}

int dkc_body_feed(struct dkc_body *b, const char *p, size_t n)
{
	if (b->ended)
		return -EINVAL;
	b->started = 1;
	for (int k = 0; k < 2; k++)
		if (b->c[k].on)
			canon_feed(b, &b->c[k], p, n);
	return b->bad ? -ENOMEM : 0;
}

int dkc_body_end(struct dkc_body *b)
{
	if (b->ended)
		return b->bad ? -ENOMEM : 0;
	b->started = b->ended = 1;
	for (int k = 0; k < 2; k++) {
		struct canon *c = &b->c[k];
		if (!c->on)
			continue;
		c->span_len = 0;
		if (c->cr) {
			/* a CR at the very end is content */
			c->cr = 0;
			content(b, c, NULL, 1);
		}
		/* a last line without its line end still ends in CRLF; trailing
		 * empty lines (held) are dropped (3.4.3, 3.4.4) */
		if (c->line_has)
			literal(b, c, "\r\n", 2);
		/* 3.4.3: an empty simple body is one CRLF; 3.4.4: an empty
		 * relaxed body stays empty (errata 1384) */
		if (!c->relaxed && c->len == 0)
			literal(b, c, "\r\n", 2);
	}
	for (int i = 0; i < b->n; i++)
		if (dkc_hash_final(&b->sinks[i]->h, b->sinks[i]->digest) != 0)
			b->bad = 1;
	return b->bad ? -ENOMEM : 0;
}

const unsigned char *dkc_body_digest(const struct dkc_body *b, int idx)
{
	if (idx < 0 || idx >= b->n || !b->ended)
		return NULL;
	return b->sinks[idx]->digest;
}

uint64_t dkc_body_canon_len(const struct dkc_body *b, int relaxed)
{
	return b->c[relaxed ? 1 : 0].len;
}

int dkc_body_hash(const char *body, size_t len, int relaxed, int64_t limit,
                  unsigned char out_d[DKC_DIGEST_LEN], uint64_t *canon_len_r)
{
	struct dkc_body *b = dkc_body_new();
	if (b == NULL)
		return -ENOMEM;
	int idx = dkc_body_want(b, relaxed, limit);
	int r = idx < 0 ? -ENOMEM : 0;
	if (r == 0)
		r = dkc_body_feed(b, body, len);
	if (r == 0)
		r = dkc_body_end(b);
	if (r == 0) {
		memcpy(out_d, dkc_body_digest(b, idx), DKC_DIGEST_LEN);
		*canon_len_r = dkc_body_canon_len(b, relaxed);
	}
	dkc_body_free(&b);
	return r;
}

/* ---- base64 ---- */

int dkc_b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z') return c - 'A';
	if (c >= 'a' && c <= 'z') return c - 'a' + 26;
	if (c >= '0' && c <= '9') return c - '0' + 52;
	if (c == '+') return 62;
	if (c == '/') return 63;
	return -1;
}

int dkc_b64_decode(const char *s, size_t len, unsigned char *dst, size_t cap,
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
		int v = dkc_b64_value(c);
		if (v < 0 || pad > 0)
			return -1;    /* a character after padding, or not base64 */
		chars++;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (n == cap)
				return -1;
			dst[n++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	if (pad > 2 || chars % 4 != 0 || acc != 0)
		return -1;
	*out_len_r = n;
	return 0;
}
