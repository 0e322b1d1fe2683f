/* DKIM signing (RFC 6376 5): the body hash and the header hash through the
 * verifier's own canonicalisation (dkc), so what we sign is what we would
 * verify. The field is built up to "b=", hashed as it stands (3.7: the
 * signature field with an empty b=), then the signature is appended. */
#include "checks/dkim/dks.h"
#include "checks/dkim/dkc.h"
#include "checks/dkim/dkk.h"
#include "checks/dkim/dkv_int.h"
#include "checks/msg.h"
#include "common/buf.h"
#include "common/limits.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

struct dks_key {
	EVP_PKEY *pkey;
	enum dks_alg alg;
	unsigned bits;
};

const char *const dks_default_headers[] = {
	"From", "To", "Cc", "Subject", "Date", "Reply-To", "Message-ID",
	"In-Reply-To", "References", "MIME-Version", "Content-Type",
	"Content-Transfer-Encoding", "List-*",
};
const size_t dks_n_default_headers =
	sizeof dks_default_headers / sizeof dks_default_headers[0];
const char *const dks_default_oversign[] = {
	"From", "To", "Cc", "Subject", "Date", "Reply-To", "Message-ID",
	"MIME-Version", "Content-Type", "Content-Transfer-Encoding",
};
const size_t dks_n_default_oversign =
	sizeof dks_default_oversign / sizeof dks_default_oversign[0];

static void seterr(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
	if (err == NULL || errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

const char *dks_alg_name(enum dks_alg alg)
{
	return alg == DKS_ALG_ED25519_SHA256 ? "ed25519-sha256" : "rsa-sha256";
}

/* ---- keys ---- */

static int no_passphrase(char *buf, int size, int rw, void *u)
{
	(void)buf; (void)size; (void)rw; (void)u;
	return -1;    /* an encrypted key file is refused, never prompted for */
}

static int adopt(EVP_PKEY *pk, struct dks_key **key_r, char *err, size_t errlen)
{
	struct dks_key *k;
	int id = EVP_PKEY_get_base_id(pk);
	if (id == EVP_PKEY_RSA) {
		int bits = EVP_PKEY_get_bits(pk);
		if (bits < (int)LIM_DKIM_MIN_RSA_BITS || bits > (int)LIM_DKIM_MAX_RSA_BITS) {
			seterr(err, errlen, "an RSA key of %d bits (%u to %u allowed)",
			       bits, LIM_DKIM_MIN_RSA_BITS, LIM_DKIM_MAX_RSA_BITS);
			EVP_PKEY_free(pk);
			return -EINVAL;
		}
	} else if (id != EVP_PKEY_ED25519) {
		seterr(err, errlen, "neither an RSA nor an Ed25519 key");
		EVP_PKEY_free(pk);
		return -EINVAL;
	}
	k = calloc(1, sizeof *k);
	if (k == NULL) {
		EVP_PKEY_free(pk);
		seterr(err, errlen, "out of memory");
		return -ENOMEM;
	}
	k->pkey = pk;
	k->alg = id == EVP_PKEY_RSA ? DKS_ALG_RSA_SHA256 : DKS_ALG_ED25519_SHA256;
	k->bits = id == EVP_PKEY_RSA ? (unsigned)EVP_PKEY_get_bits(pk) : 256;
	*key_r = k;
	return 0;
}

int dks_key_from_pem(const char *pem, size_t len, struct dks_key **key_r,
                     char *err, size_t errlen)
{
	*key_r = NULL;
	if (len > LIM_DKIM_SIGN_KEY_FILE) {
		seterr(err, errlen, "longer than %u bytes", LIM_DKIM_SIGN_KEY_FILE);
		return -EINVAL;
	}
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	if (bio == NULL) {
		seterr(err, errlen, "out of memory");
		return -ENOMEM;
	}
	EVP_PKEY *pk = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
	BIO_free(bio);
	if (pk == NULL) {
		seterr(err, errlen, "not a PEM private key (or an encrypted one)");
		return -EINVAL;
	}
	return adopt(pk, key_r, err, errlen);
}

int dks_key_generate(enum dks_alg alg, unsigned bits, struct dks_key **key_r,
                     char *err, size_t errlen)
{
	EVP_PKEY *pk = NULL;
	*key_r = NULL;
	if (alg == DKS_ALG_ED25519_SHA256) {
		pk = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	} else {
		if (bits == 0)
			bits = LIM_DKIM_SIGN_RSA_BITS;
		if (bits < LIM_DKIM_MIN_RSA_BITS || bits > LIM_DKIM_MAX_RSA_BITS) {
			seterr(err, errlen, "RSA keys have %u to %u bits",
			       LIM_DKIM_MIN_RSA_BITS, LIM_DKIM_MAX_RSA_BITS);
			return -EINVAL;
		}
		pk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
	}
	if (pk == NULL) {
		seterr(err, errlen, "key generation failed");
		return -ENOMEM;
	}
	return adopt(pk, key_r, err, errlen);
}

void dks_key_free(struct dks_key **kp)
{
	if (*kp == NULL)
		return;
	EVP_PKEY_free((*kp)->pkey);
	free(*kp);
	*kp = NULL;
}

enum dks_alg dks_key_alg(const struct dks_key *key)
{
	return key->alg;
}

unsigned dks_key_bits(const struct dks_key *key)
{
	return key->bits;
}

char *dks_key_pem(const struct dks_key *key)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *out = NULL, *p;
	if (bio == NULL)
		return NULL;
	if (PEM_write_bio_PrivateKey(bio, key->pkey, NULL, NULL, 0, NULL, NULL) == 1) {
		long n = BIO_get_mem_data(bio, &p);
		if (n > 0 && (out = malloc((size_t)n + 1)) != NULL) {
			memcpy(out, p, (size_t)n);
			out[n] = '\0';
		}
	}
	BIO_free(bio);
	return out;
}

static char *b64(const unsigned char *in, size_t n)
{
	char *out = malloc(4 * ((n + 2) / 3) + 1);
	if (out != NULL)
		EVP_EncodeBlock((unsigned char *)out, in, (int)n);
	return out;
}

char *dks_key_record(const struct dks_key *key)
{
	unsigned char raw[32], *der = NULL;
	char *p64 = NULL, *out = NULL;
	if (key->alg == DKS_ALG_ED25519_SHA256) {
		/* RFC 8463 4.2: the bare 32-byte public key */
		size_t rl = sizeof raw;
		if (EVP_PKEY_get_raw_public_key(key->pkey, raw, &rl) == 1 && rl == 32)
			p64 = b64(raw, rl);
	} else {
		/* a SubjectPublicKeyInfo, what every verifier reads */
		int dl = i2d_PUBKEY(key->pkey, &der);
		if (dl > 0)
			p64 = b64(der, (size_t)dl);
		OPENSSL_free(der);
	}
	if (p64 == NULL)
		return NULL;
	struct buf b;
	buf_init(&b, 0);
	buf_printf(&b, "v=DKIM1; k=%s; p=%s",
	           key->alg == DKS_ALG_ED25519_SHA256 ? "ed25519" : "rsa", p64);
	free(p64);
	if (!b.failed)
		out = buf_steal(&b, NULL);
	buf_free(&b);
	return out;
}

int dks_key_matches(const struct dks_key *key, const char *txt)
{
	struct dkk_key *k = dkk_parse(txt);
	int ok = k != NULL && k->err == DKK_OK && k->pkey != NULL &&
	         EVP_PKEY_eq(k->pkey, key->pkey) == 1;
	dkk_unref(&k);
	return ok;
}

/* ---- the field ---- */

/* Appends atoms, folding before one that would pass the fold column. */
struct folder {
	struct buf b;
	size_t col;
	const char *eol;
};

static void atom(struct folder *f, const char *s, size_t n, int space)
{
	size_t need = n + (space ? 1 : 0);
	if (f->col > 1 && f->col + need > LIM_DKIM_SIGN_FOLD) {
		buf_adds(&f->b, f->eol);
		buf_add(&f->b, "\t", 1);
		f->col = 8;
	} else if (space) {
		buf_add(&f->b, " ", 1);
		f->col++;
	}
	buf_add(&f->b, s, n);
	f->col += n;
}

static void atoms(struct folder *f, const char *s)
{
	atom(f, s, strlen(s), 1);
}

/* base64 text that may be broken anywhere (RFC 6376 3.5: FWS inside) */
static void atom_b64(struct folder *f, const char *s)
{
	size_t n = strlen(s);
	while (n > 0) {
		size_t room = f->col < LIM_DKIM_SIGN_FOLD - 1 ? LIM_DKIM_SIGN_FOLD - 1 - f->col : 0;
		if (room < 8) {
			buf_adds(&f->b, f->eol);
			buf_add(&f->b, "\t", 1);
			f->col = 8;
			continue;
		}
		size_t take = n < room ? n : room;
		buf_add(&f->b, s, take);
		f->col += take;
		s += take;
		n -= take;
	}
}

/* A name that can go into h= as it is: a plain token of bounded length
 * (so that it fits on a folded line and a ';' cannot end the tag). */
static int name_ok(const char *s, size_t n)
{
	if (n == 0 || n > LIM_DKIM_SIGN_NAME)
		return 0;
	for (size_t k = 0; k < n; k++) {
		unsigned char c = (unsigned char)s[k];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
			return 0;
	}
	return 1;
}

static size_t count_named(const struct msg *m, const char *name, size_t len)
{
	size_t c = 0;
	for (size_t k = 0; k < m->n_fields; k++)
		if (m->fields[k].name_len == len &&
		    strncasecmp(m->fields[k].name, name, len) == 0)
			c++;
	return c;
}

static int in_list(const char *const *l, size_t n, const char *name, size_t len)
{
	for (size_t k = 0; k < n; k++)
		if (strlen(l[k]) == len && strncasecmp(l[k], name, len) == 0)
			return 1;
	return 0;
}

/* The h= list: every configured name as often as present, over-signed
 * names once more; wildcards expand to the distinct names of the message. */
struct hlist {
	const char *name[LIM_DKIM_H_NAMES];
	size_t len[LIM_DKIM_H_NAMES];
	size_t n;
	int full;
};

static void h_add(struct hlist *h, const char *name, size_t len, size_t times)
{
	for (size_t k = 0; k < times; k++) {
		if (h->n == LIM_DKIM_H_NAMES) {
			h->full = 1;
			return;
		}
		h->name[h->n] = name;
		h->len[h->n++] = len;
	}
}

static int h_has(const struct hlist *h, const char *name, size_t len)
{
	for (size_t k = 0; k < h->n; k++)
		if (h->len[k] == len && strncasecmp(h->name[k], name, len) == 0)
			return 1;
	return 0;
}

static void build_hlist(const struct msg *m, const struct dks_opts *o,
                        struct hlist *h)
{
	const char *const *hd = o->headers ? o->headers : dks_default_headers;
	size_t nh = o->headers ? o->n_headers : dks_n_default_headers;
	const char *const *os = o->oversign ? o->oversign : dks_default_oversign;
	size_t nos = o->oversign ? o->n_oversign : dks_n_default_oversign;
	memset(h, 0, sizeof *h);
	/* RFC 6376 5.4: From must be signed; first, whatever the list says */
	h_add(h, "From", 4, count_named(m, "From", 4) +
	      (in_list(os, nos, "From", 4) ? 1 : 0));
	for (size_t k = 0; k < nh; k++) {
		size_t len = strlen(hd[k]);
		if (len > 0 && hd[k][len - 1] == '*') {
			for (size_t f = 0; f < m->n_fields; f++) {
				const struct msg_field *mf = &m->fields[f];
				if (mf->name_len < len - 1 ||
				    strncasecmp(mf->name, hd[k], len - 1) != 0 ||
				    !name_ok(mf->name, mf->name_len) ||
				    h_has(h, mf->name, mf->name_len) ||
				    in_list(hd, nh, mf->name, mf->name_len))
					continue;
				h_add(h, mf->name, mf->name_len,
				      count_named(m, mf->name, mf->name_len));
			}
			continue;
		}
		if (!name_ok(hd[k], len) || h_has(h, hd[k], len) ||
		    strcasecmp(hd[k], "DKIM-Signature") == 0)
			continue;
		h_add(h, hd[k], len, count_named(m, hd[k], len) +
		      (in_list(os, nos, hd[k], len) ? 1 : 0));
	}
}

/* RFC 6376 3.7 in the order of h=: each name takes the next instance from
 * the bottom; a name listed more often than present adds nothing */
static int hash_headers(struct dkc_hash *hh, const struct msg *m,
                        const struct hlist *h, int relaxed)
{
	for (size_t j = 0; j < h->n; j++) {
		size_t used = 0;
		for (size_t q = 0; q < j; q++)
			if (h->len[q] == h->len[j] &&
			    strncasecmp(h->name[q], h->name[j], h->len[j]) == 0)
				used++;
		for (size_t k = m->n_fields; k-- > 0;) {
			const struct msg_field *hf = &m->fields[k];
			if (hf->name_len != h->len[j] ||
			    strncasecmp(hf->name, h->name[j], h->len[j]) != 0)
				continue;
			if (used-- == 0) {
				int r = dkc_header(hh, hf, relaxed, 0);
				if (r != 0)
					return r;
				break;
			}
		}
	}
	return 0;
}

static int sign_digest(const struct dks_key *key, const unsigned char *dg,
                       unsigned char *sig, size_t *siglen)
{
	int ok = 0;
	if (key->alg == DKS_ALG_ED25519_SHA256) {
		/* RFC 8463 3: PureEdDSA over the SHA-256 hash */
		EVP_MD_CTX *md = EVP_MD_CTX_new();
		if (md == NULL)
			return -ENOMEM;
		if (EVP_DigestSignInit(md, NULL, NULL, NULL, key->pkey) == 1)
			ok = EVP_DigestSign(md, sig, siglen, dg, DKC_DIGEST_LEN) == 1;
		EVP_MD_CTX_free(md);
		return ok ? 0 : -EINVAL;
	}
	EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new(key->pkey, NULL);
	if (pc == NULL)
		return -ENOMEM;
	if (EVP_PKEY_sign_init(pc) == 1 &&
	    EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) == 1 &&
	    EVP_PKEY_CTX_set_signature_md(pc, EVP_sha256()) == 1)
		ok = EVP_PKEY_sign(pc, sig, siglen, dg, DKC_DIGEST_LEN) == 1;
	EVP_PKEY_CTX_free(pc);
	return ok ? 0 : -EINVAL;
}

_Static_assert(DKS_BODY_HASH_LEN == DKC_DIGEST_LEN, "one digest size");

int dks_body_hash(const struct msg *m, int body_simple,
                  unsigned char out[DKS_BODY_HASH_LEN])
{
	uint64_t canon_len;
	return dkc_body_hash(m->body, m->body_len, !body_simple, -1, out, &canon_len);
}

int dks_sign(const struct msg *m, const struct dks_opts *o, const char *eol,
             char **field_r, char *err, size_t errlen)
{
	char tmp[DKV_NAME_MAX + 64];
	unsigned char bh[DKC_DIGEST_LEN], dg[DKC_DIGEST_LEN];
	unsigned char sig[LIM_DKIM_SIG_BYTES];
	size_t siglen = sizeof sig;
	uint64_t canon_len = 0;
	struct hlist *h = NULL;
	struct dkc_hash *hh = NULL;
	struct msg_field self;
	char *b64s = NULL;
	int r;

	*field_r = NULL;
	if (o->key == NULL || o->domain == NULL || o->selector == NULL) {
		seterr(err, errlen, "no key, domain or selector");
		return -EINVAL;
	}
	if (!dkv_usable_name(o->domain, strlen(o->domain)) ||
	    strlen(o->domain) > LIM_DNS_MAX_NAME) {
		seterr(err, errlen, "the signing domain is not a usable DNS name");
		return -EINVAL;
	}
	if (!dkv_usable_name(o->selector, strlen(o->selector)) ||
	    strlen(o->selector) > 63) {
		seterr(err, errlen, "the selector is not a usable DNS label");
		return -EINVAL;
	}
	for (size_t k = 0; k < m->n_fields; k++)
		if (memchr(m->fields[k].line, '\0', m->fields[k].line_len) != NULL) {
			/* RFC 5322 forbids it, and verifiers refuse such a header
			 * section whatever it is signed with */
			seterr(err, errlen, "a NUL byte in the header section");
			return -EINVAL;
		}
	if (msg_count(m, "From") == 0) {
		seterr(err, errlen, "the message has no From field (RFC 6376 5.4)");
		return -EINVAL;
	}
	if (o->body_hash != NULL)
		memcpy(bh, o->body_hash, sizeof bh);
	else if (dkc_body_hash(m->body, m->body_len, !o->body_simple, -1, bh,
	                       &canon_len) != 0) {
		seterr(err, errlen, "out of memory");
		return -ENOMEM;
	}
	h = malloc(sizeof *h);
	if (h == NULL) {
		seterr(err, errlen, "out of memory");
		return -ENOMEM;
	}
	build_hlist(m, o, h);
	if (h->full) {
		free(h);
		seterr(err, errlen, "more than %u names to sign", LIM_DKIM_H_NAMES);
		return -EINVAL;
	}

	struct folder f;
	buf_init(&f.b, LIM_DKIM_SIGN_FIELD);
	f.eol = eol;
	f.col = 0;
	atom(&f, "DKIM-Signature:", 15, 0);
	atoms(&f, "v=1;");
	snprintf(tmp, sizeof tmp, "a=%s;", dks_alg_name(o->key->alg));
	atoms(&f, tmp);
	snprintf(tmp, sizeof tmp, "c=%s/%s;", o->header_simple ? "simple" : "relaxed",
	         o->body_simple ? "simple" : "relaxed");
	atoms(&f, tmp);
	snprintf(tmp, sizeof tmp, "d=%s;", o->domain);
	atoms(&f, tmp);
	snprintf(tmp, sizeof tmp, "s=%s;", o->selector);
	atoms(&f, tmp);
	snprintf(tmp, sizeof tmp, "t=%" PRIu64 ";", o->now);
	atoms(&f, tmp);
	if (o->expire > 0) {
		snprintf(tmp, sizeof tmp, "x=%" PRIu64 ";", o->now + o->expire);
		atoms(&f, tmp);
	}
	for (size_t k = 0; k < h->n; k++) {
		/* lower case, as relaxed canonicalisation compares them anyway */
		char nm[LIM_DKIM_SIGN_NAME + 4];
		size_t nl = h->len[k];   /* at most LIM_DKIM_SIGN_NAME: name_ok() */
		size_t off = 0;
		if (k == 0) {
			nm[0] = 'h';
			nm[1] = '=';
			off = 2;
		}
		for (size_t q = 0; q < nl; q++) {
			char c = h->name[k][q];
			nm[off + q] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
		}
		nm[off + nl] = k + 1 < h->n ? ':' : ';';
		atom(&f, nm, off + nl + 1, k == 0);
	}
	b64s = b64(bh, sizeof bh);
	if (b64s == NULL) {
		r = -ENOMEM;
		goto out;
	}
	atom(&f, "bh=", 3, 1);
	atom_b64(&f, b64s);
	atom(&f, ";", 1, 0);
	free(b64s);
	b64s = NULL;
	atom(&f, "b=", 2, 1);
	if (f.b.failed) {
		r = -ENOMEM;
		goto out;
	}

	/* the header hash: signed fields, then this field with b= empty */
	hh = dkc_hash_new();
	if (hh == NULL) {
		r = -ENOMEM;
		goto out;
	}
	r = hash_headers(hh, m, h, !o->header_simple);
	self.name = self.line = f.b.data;
	self.name_len = 14;
	self.value = f.b.data + 15;
	self.value_len = f.b.len - 15;
	self.line_len = f.b.len;
	if (r == 0)
		r = dkc_header(hh, &self, !o->header_simple, 1);
	if (r == 0)
		r = dkc_hash_final(hh, dg);
	if (r != 0)
		goto out;
	r = sign_digest(o->key, dg, sig, &siglen);
	if (r != 0) {
		seterr(err, errlen, "the signature could not be made");
		goto out;
	}
	b64s = b64(sig, siglen);
	if (b64s == NULL) {
		r = -ENOMEM;
		goto out;
	}
	atom_b64(&f, b64s);
	buf_adds(&f.b, eol);
	if (f.b.failed) {
		r = -ENOMEM;
		goto out;
	}
	*field_r = buf_steal(&f.b, NULL);
	r = 0;
out:
	if (r == -ENOMEM)
		seterr(err, errlen, "out of memory");
	free(b64s);
	free(h);
	dkc_hash_free(&hh);
	buf_free(&f.b);
	return r;
}
