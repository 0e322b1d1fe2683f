/* The native DKIM verifier (RFC 6376 6.1, RFC 8463, RFC 8301). Per
 * message: the header section is parsed once (msg_parse), each signature's
 * tags once, every body hash the signatures need is computed in one pass
 * over the body (dkc_body), and keys come decoded from the shared cache
 * (dkk). Each signature is judged in the order the libopendkim engine
 * judges it (dkv.c judge()), so the two give the same result; where they
 * differ on purpose the test of both engines lists why. Owns nothing
 * beyond one call. */
#include "checks/dkim/dkc.h"
#include "checks/dkim/dkk.h"
#include "checks/dkim/dkv.h"
#include "checks/dkim/dkv_int.h"
#include "checks/msg.h"
#include "common/text.h"
#include "common/trace.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>

struct tv {
	const char *v;      /* into the unfolded value; NULL: absent */
	size_t len;
};

enum alg { ALG_UNKNOWN = 0, ALG_RSA_SHA1, ALG_RSA_SHA256, ALG_ED25519_SHA256 };

/* One DKIM-Signature field as the verifier sees it. */
struct nsig {
	const struct msg_field *f;
	char *buf;                        /* the unfolded value, owned */
	struct tv v, a, b, bh, c, d, h, i, l, q, s, t, x;
	int bad_list;                     /* not a tag-list */
	int dup_tag;                      /* a tag twice */
	const char *syntax;               /* why it cannot be used, or NULL */
	enum alg alg;
	int hrel, brel;
	int64_t limit;                    /* l=, or -1 */
	int bh_idx;                       /* dkc_body hash index, or -1 */
	unsigned char sig[LIM_DKIM_SIG_BYTES];
	size_t siglen;
	int b_corrupt;                    /* b= is not clean base64 */
	struct tv idec;                   /* i= decoded (dkim-quoted-printable) */
	char ibuf[2 * DKV_NAME_MAX];
};

static int hexval(char c)
{
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	return -1;
}

/* RFC 6376 2.11 dkim-quoted-printable: "=XX" is the octet XX; -1 when
 * malformed or too long */
static int qp_decode(const struct tv *in, char *out, size_t cap, size_t *len_r)
{
	size_t n = 0;
	for (size_t k = 0; k < in->len; k++) {
		char c = in->v[k];
		if (c == '=') {
			if (k + 2 >= in->len)
				return -1;
			int hi = hexval(in->v[k + 1]), lo = hexval(in->v[k + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			c = (char)(hi * 16 + lo);
			k += 2;
		}
		if (n + 1 >= cap)
			return -1;
		out[n++] = c;
	}
	out[n] = '\0';
	*len_r = n;
	return 0;
}

static int sig_tag(void *arg, const char *tag, size_t tlen, const char *val,
                   size_t vlen)
{
	struct nsig *n = arg;
	struct tv *slot = NULL;
	if (!dkv_tag_name_ok(tag, tlen)) {
		n->bad_list = 1;
		return -1;
	}
	vlen = dkv_squeeze_ws((char *)val, vlen);   /* the buffer is ours */
	if (tlen == 1) {
		switch (tag[0]) {
		case 'v': slot = &n->v; break;
		case 'a': slot = &n->a; break;
		case 'b': slot = &n->b; break;
		case 'c': slot = &n->c; break;
		case 'd': slot = &n->d; break;
		case 'h': slot = &n->h; break;
		case 'i': slot = &n->i; break;
		case 'l': slot = &n->l; break;
		case 'q': slot = &n->q; break;
		case 's': slot = &n->s; break;
		case 't': slot = &n->t; break;
		case 'x': slot = &n->x; break;
		default: break;
		}
	} else if (tlen == 2 && tag[0] == 'b' && tag[1] == 'h') {
		slot = &n->bh;
	}
	if (slot == NULL)
		return 0;          /* RFC 6376 3.2: unknown tags are ignored */
	if (slot->v != NULL)
		n->dup_tag = 1;    /* 3.2: a tag twice makes the list invalid */
	slot->v = val;
	slot->len = vlen;
	return 0;
}

static int tv_is(const struct tv *t, const char *lit)
{
	return t->v != NULL && text_ieq(t->v, t->len, lit);
}

static int canon_name(const char *s, size_t len, int *relaxed)
{
	if (text_ieq(s, len, "relaxed"))
		*relaxed = 1;
	else if (text_ieq(s, len, "simple"))
		*relaxed = 0;
	else
		return -1;
	return 0;
}

/* i= is [local-part] "@" domain, the domain d= or below it (3.5) */
static int i_within_d(const struct tv *i, const struct tv *d)
{
	const char *at = memchr(i->v, '@', i->len);
	if (at == NULL)
		return 0;
	const char *dom = at + 1;
	size_t dl = i->len - (size_t)(dom - i->v);
	for (;;) {
		if (dl == d->len && strncasecmp(dom, d->v, dl) == 0)
			return 1;
		const char *dot = memchr(dom, '.', dl);
		if (dot == NULL)
			return 0;
		dl -= (size_t)(dot + 1 - dom);
		dom = dot + 1;
	}
}

static int i_equals_d(const struct tv *i, const struct tv *d)
{
	const char *at = memchr(i->v, '@', i->len);
	const char *dom = at ? at + 1 : i->v;
	size_t dl = i->len - (size_t)(dom - i->v);
	return dl == d->len && strncasecmp(dom, d->v, dl) == 0;
}

static int num(const struct tv *t, uint64_t *out)
{
	if (t->v == NULL)
		return 0;
	return text_u64(t->v, t->len, UINT64_MAX, out) == 0 ? 1 : -1;
}

/* RFC 6376 3.2: tag-list = tag-spec *( ";" tag-spec ) [ ";" ]: only the
 * last ';' may have nothing after it; an empty tag-spec before another
 * ';' (or at the start) is a syntax error. */
static int empty_tag_spec(const char *s, size_t len)
{
	int seen = 0;                   /* something since the last ';' */
	for (size_t k = 0; k < len; k++) {
		if (s[k] == ';') {
			if (!seen)
				return 1;
			seen = 0;
		} else if (s[k] != ' ' && s[k] != '\t' && s[k] != '\r' && s[k] != '\n') {
			seen = 1;
		}
	}
	return 0;
}

/* Tags, then the checks libopendkim makes before it asks for a key, in
 * its order (a signature that fails one is not verified at all). */
static void parse_sig(struct nsig *n, const struct msg_field *f)
{
	n->f = f;
	n->limit = -1;
	n->bh_idx = -1;
	n->buf = malloc(f->value_len + 1);
	if (n->buf == NULL) {
		n->syntax = "out of memory";
		return;
	}
	size_t vl = msg_unfold(f->value, f->value_len, n->buf, f->value_len + 1);
	if (vl == (size_t)-1 || !dkv_text_ok(n->buf, vl) ||
	    empty_tag_spec(n->buf, vl) || dkv_taglist(n->buf, vl, sig_tag, n) != 0)
		n->bad_list = 1;
	if (n->bad_list) {
		n->syntax = "malformed tag-list (RFC 6376 3.2)";
		return;
	}
	if (n->dup_tag) {
		/* libopendkim takes one of the two and goes on */
		n->syntax = DKV_SIG_DUP_REASON;
		return;
	}
	if (n->d.v == NULL || n->d.len == 0) {
		n->syntax = "d= missing or empty";
		return;
	}
	if (n->s.v == NULL || n->s.len == 0) {
		n->syntax = "s= missing or empty";
		return;
	}
	if (n->v.v == NULL || n->v.len == 0) {
		n->syntax = "v= missing or empty";
		return;
	}
	if (!(n->v.len == 1 && n->v.v[0] == '1')) {
		n->syntax = "unsupported version (v=)";
		return;
	}
	if (n->i.v != NULL) {
		size_t il = 0;
		if (qp_decode(&n->i, n->ibuf, sizeof n->ibuf, &il) != 0) {
			n->syntax = "i= is not valid dkim-quoted-printable (RFC 6376 2.11)";
			return;
		}
		n->idec.v = n->ibuf;
		n->idec.len = il;
	}
	if (n->i.v != NULL && !i_within_d(&n->idec, &n->d)) {
		n->syntax = "i= is not within d= (RFC 6376 3.5)";
		return;
	}
	/* expiry and the future are judged with the key checks (judge order) */
	n->hrel = n->brel = 0;
	if (n->c.v != NULL) {
		const char *sl = memchr(n->c.v, '/', n->c.len);
		size_t hl = sl ? (size_t)(sl - n->c.v) : n->c.len;
		if (canon_name(n->c.v, hl, &n->hrel) != 0) {
			n->syntax = "invalid header canonicalization (c=)";
			return;
		}
		if (sl && canon_name(sl + 1, n->c.len - hl - 1, &n->brel) != 0) {
			n->syntax = "invalid body canonicalization (c=)";
			return;
		}
	}
	if (n->a.v == NULL) {
		n->syntax = "a= missing";
		return;
	}
	if (tv_is(&n->a, "rsa-sha256"))
		n->alg = ALG_RSA_SHA256;
	else if (tv_is(&n->a, "ed25519-sha256"))
		n->alg = ALG_ED25519_SHA256;
	else if (tv_is(&n->a, "rsa-sha1"))
		n->alg = ALG_RSA_SHA1;
	else {
		n->syntax = "unknown algorithm (a=)";
		return;
	}
	if (n->h.v == NULL || n->h.len == 0) {
		n->syntax = "h= missing or empty";
		return;
	}
	if (!dkv_lists_from(n->h.v, n->h.len)) {
		n->syntax = "h= does not include From (RFC 6376 5.4)";
		return;
	}
	if (n->l.v != NULL) {
		uint64_t l;
		if (text_u64(n->l.v, n->l.len, INT64_MAX, &l) != 0) {
			n->syntax = "malformed l=";
			return;
		}
		n->limit = (int64_t)l;
	}
	if (n->bh.v == NULL || n->bh.len == 0) {
		n->syntax = "bh= missing or empty";
		return;
	}
	if (n->b.v == NULL || n->b.len == 0) {
		n->syntax = "b= missing or empty";
		return;
	}
	/* a b= that is not clean base64 is a signature that does not verify
	 * (libopendkim decodes what it can and fails the check); only one
	 * longer than any key we accept is refused outright */
	if (n->b.len < 3) {
		/* no signature is that short; libopendkim cannot decode it
		 * either ("signature data corrupt") */
		n->syntax = "b= is corrupt (RFC 6376 3.5)";
		return;
	}
	if (dkc_b64_decode(n->b.v, n->b.len, n->sig, sizeof n->sig, &n->siglen) != 0) {
		/* what libopendkim cannot decode at all (it skips what is not
		 * base64 and stops at '='): one character left over */
		size_t chars = 0;
		for (size_t k = 0; k < n->b.len && n->b.v[k] != '='; k++)
			chars += dkc_b64_value((unsigned char)n->b.v[k]) >= 0;
		if (n->b.len > 4 * (sizeof n->sig / 3) + 256)
			n->syntax = "b= is too long";
		else if (chars % 4 == 1)
			n->syntax = "b= is corrupt (RFC 6376 3.5)";
		else if (n->alg == ALG_ED25519_SHA256 &&
		         chars / 4 * 3 + (chars % 4 == 2 ? 1 : chars % 4 == 3 ? 2 : 0) != 64)
			n->syntax = "b= is not an Ed25519 signature (RFC 8463 3)";
		else {
			/* decoded the way libopendkim does (skipping what is not
			 * base64, up to the first '='), so both engines verify
			 * the same bytes */
			char *clean = malloc(n->b.len + 4);
			size_t cl = 0;
			for (size_t k = 0; clean && k < n->b.len && n->b.v[k] != '='; k++)
				if (dkc_b64_value((unsigned char)n->b.v[k]) >= 0)
					clean[cl++] = n->b.v[k];
			while (clean && cl % 4 != 0)
				clean[cl++] = '=';
			if (clean == NULL ||
			    dkc_b64_decode(clean, cl, n->sig, sizeof n->sig, &n->siglen) != 0)
				n->b_corrupt = 1;
			free(clean);
		}
	} else if (n->alg == ALG_ED25519_SHA256 && n->siglen != 64) {
		/* RFC 8032 5.1.6: an Ed25519 signature is 64 octets; anything
		 * else is not one, so the signature is malformed (permerror).
		 * libopendkim hands it to OpenSSL, whose check fails (fail),
		 * or calls some of them corrupt (permerror): a difference on
		 * purpose, both results are "not a pass" */
		n->syntax = "b= is not an Ed25519 signature (RFC 8463 3)";
	}
}

static void copy_tv(char *dst, size_t cap, const struct tv *t)
{
	if (t->v == NULL)
		dst[0] = '\0';
	else
		text_printable(dst, cap, t->v, t->len);
}

/* The header hash (RFC 6376 3.7): the fields h= names, each name taking
 * the next instance from the bottom (5.4.2; a name listed more often than
 * present adds nothing), then the signature field without b=. */
static int header_hash(const struct msg *m, const struct nsig *n,
                       unsigned char dg[DKC_DIGEST_LEN])
{
	const char *names[LIM_DKIM_H_NAMES];
	size_t lens[LIM_DKIM_H_NAMES], nn = 0, off = 0;
	while (off <= n->h.len) {
		size_t end = off;
		while (end < n->h.len && n->h.v[end] != ':')
			end++;
		const char *nm = n->h.v + off;
		size_t nl = end - off;
		text_trim(&nm, &nl);
		if (nn == LIM_DKIM_H_NAMES)
			return -E2BIG;
		if (nl > 0) {
			names[nn] = nm;
			lens[nn++] = nl;
		}
		off = end + 1;
	}
	struct dkc_hash *h = dkc_hash_new();
	if (h == NULL)
		return -ENOMEM;
	int r = 0;
	for (size_t j = 0; j < nn && r == 0; j++) {
		size_t used = 0;
		for (size_t q = 0; q < j; q++)
			if (lens[q] == lens[j] && strncasecmp(names[q], names[j], lens[j]) == 0)
				used++;
		for (size_t k = m->n_fields; k-- > 0;) {
			const struct msg_field *hf = &m->fields[k];
			if (hf->name_len != lens[j] ||
			    strncasecmp(hf->name, names[j], lens[j]) != 0)
				continue;
			if (used-- == 0) {
				r = dkc_header(h, hf, n->hrel, 0);
				break;
			}
		}
	}
	if (r == 0)
		r = dkc_header(h, n->f, n->hrel, 1);
	if (r == 0)
		r = dkc_hash_final(h, dg);
	dkc_hash_free(&h);
	return r;
}

/* 1 verified, 0 not, -1 out of memory */
static int verify_digest(const struct dkk_key *k, const unsigned char *dg,
                         const unsigned char *sig, size_t siglen)
{
	int ok = 0;
	EVP_PKEY *pk = k->pkey;
	if (k->type == DKV_KEY_ED25519) {
		/* RFC 8463 3: PureEdDSA over the SHA-256 hash */
		EVP_MD_CTX *md = EVP_MD_CTX_new();
		if (md == NULL)
			return -1;
		if (EVP_DigestVerifyInit(md, NULL, NULL, NULL, pk) == 1)
			ok = EVP_DigestVerify(md, sig, siglen, dg, DKC_DIGEST_LEN) == 1;
		EVP_MD_CTX_free(md);
		return ok;
	}
	EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new(pk, NULL);
	if (pc == NULL)
		return -1;
	if (EVP_PKEY_verify_init(pc) == 1 &&
	    EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) == 1 &&
	    EVP_PKEY_CTX_set_signature_md(pc, EVP_sha256()) == 1)
		ok = EVP_PKEY_verify(pc, sig, siglen, dg, DKC_DIGEST_LEN) == 1;
	EVP_PKEY_CTX_free(pc);
	return ok;
}

static void judge(struct dkv_lib *l, const struct msg *m, const struct dkv_keyset *ks,
                  const struct dkc_body *body, struct nsig *n, struct dkv_sig *o,
                  uint64_t now)
{
	memset(o, 0, sizeof *o);
	o->bh_ok = o->sig_ok = -1;
	copy_tv(o->d, sizeof o->d, &n->d);
	copy_tv(o->s, sizeof o->s, &n->s);
	copy_tv(o->a, sizeof o->a, &n->a);
	copy_tv(o->i, sizeof o->i, &n->i);
	if (n->b.v != NULL) {
		size_t k = 0;
		for (size_t p = 0; p < n->b.len && k < DKV_BPREFIX_LEN; p++)
			if (n->b.v[p] != ' ' && n->b.v[p] != '\t')
				o->b_prefix[k++] = n->b.v[p];
		o->b_prefix[k] = '\0';
		text_printable(o->b_prefix, sizeof o->b_prefix, o->b_prefix, k);
	}
	int tn = num(&n->t, &o->t), xn = num(&n->x, &o->x), ln = num(&n->l, &o->l);
	o->has_t = tn == 1;
	o->has_x = xn == 1;
	o->has_l = ln == 1;
	o->from_signed = n->h.v != NULL && dkv_lists_from(n->h.v, n->h.len);
	o->body_len = dkc_body_canon_len(body, n->brel);
	if (o->has_l && o->body_len > o->l)
		o->unsigned_len = o->body_len - o->l;

	char qname[DKV_NAME_MAX] = "";
	const struct dkv_key *kr = NULL;
	if (n->d.v && n->s.v && dkv_usable_name(n->d.v, n->d.len) &&
	    dkv_usable_name(n->s.v, n->s.len) &&
	    n->s.len + n->d.len + 12 <= LIM_DNS_MAX_NAME - 2) {
		memcpy(qname, n->s.v, n->s.len);
		memcpy(qname + n->s.len, "._domainkey.", 12);
		memcpy(qname + n->s.len + 12, n->d.v, n->d.len);
		qname[n->s.len + 12 + n->d.len] = '\0';
		dkv_lower(qname);
		kr = dkv_keyset_find(ks, qname);
	}
	o->key_status = kr ? kr->status : DNSQ_TEMPFAIL;
	o->key_sec = kr ? kr->sec : DNSQ_SEC_INSECURE;
	o->key_found = kr && kr->status == DNSQ_OK;
	o->key_type = n->alg == ALG_ED25519_SHA256 ? DKV_KEY_ED25519
	            : n->alg != ALG_UNKNOWN ? DKV_KEY_RSA : DKV_KEY_UNKNOWN;

	/* 1. The signature itself (RFC 6376 6.1.1). A tag twice first: which
	 * of the two h= (or d=, s=) would count is undefined. */
	if (n->dup_tag) {
		dkv_set_res(o, AUTH_PERMERROR, "bad signature: %s", DKV_SIG_DUP_REASON);
		return;
	}
	if (n->h.v != NULL && !o->from_signed) {
		dkv_set_res(o, AUTH_PERMERROR, "h= does not include From (RFC 6376 5.4)");
		return;
	}
	if (n->syntax != NULL) {
		dkv_set_res(o, AUTH_PERMERROR, "bad signature: %s", n->syntax);
		return;
	}
	if (tn < 0 || xn < 0 || ln < 0) {
		dkv_set_res(o, AUTH_PERMERROR, "bad signature: malformed t=, x= or l=");
		return;
	}
	/* RFC 6376 3.5 x=: an expired signature is ignored (PERMFAIL) */
	if (o->has_x && o->x < now) {
		dkv_set_res(o, AUTH_PERMERROR, "signature expired (x=%llu)",
		            (unsigned long long)o->x);
		return;
	}
	/* 3.5: x= MUST be greater than t= */
	if (o->has_x && o->has_t && o->x <= o->t) {
		dkv_set_res(o, AUTH_PERMERROR, "x= not later than t= (RFC 6376 3.5)");
		return;
	}
	/* 3.5 t=: verifiers may ignore signatures from the future; a little
	 * clock drift is tolerated */
	if (o->has_t && o->t > now && o->t - now > l->drift) {
		dkv_set_res(o, AUTH_PERMERROR, "signature timestamp in the future (t=%llu)",
		            (unsigned long long)o->t);
		return;
	}
	/* 3.5 l=: a count beyond the body makes the signature invalid */
	if (n->limit >= 0 && (uint64_t)n->limit > o->body_len) {
		dkv_set_res(o, AUTH_PERMERROR, "bad signature: l=%llu exceeds the "
		            "body of %llu bytes", (unsigned long long)n->limit,
		            (unsigned long long)o->body_len);
		return;
	}

	/* 2. The key lookup (RFC 6376 6.1.2). */
	if (!dkv_judge_lookup(o, kr, qname))
		return;
	struct dkk_key *key = dkk_cache_get(l->keys, qname, kr->txt, kr->ttl);
	if (key == NULL) {
		dkv_set_res(o, AUTH_TEMPERROR, "out of memory");
		return;
	}
	/* the key's error as this signature meets it: the check that h=
	 * allows the signature's hash sits between the record's own checks
	 * (libopendkim's order), so it hides what comes after it */
	int hash_ok = n->alg == ALG_RSA_SHA1 ? key->h_sha1 : key->h_sha256;
	const char *kerr = NULL;
	if (key->err == DKK_E_SYNTAX || key->err == DKK_E_DUP || key->err == DKK_E_VERSION ||
	    key->err == DKK_E_HASH_UNKNOWN)
		kerr = dkk_err_name(key->err);
	else if (!hash_ok)
		kerr = "key h= does not allow the signature's hash (RFC 6376 3.6.1)";
	else if (key->err != DKK_OK)
		kerr = dkk_err_name(key->err);
	if (kerr == NULL) {
		o->key_type = key->type;
		o->key_bits = key->bits;
		o->key_testing = key->testing;
	} else if (key->type != DKV_KEY_UNKNOWN) {
		o->key_type = key->type;
	}
	if (kerr == NULL && key->strict && n->i.v != NULL && !i_equals_d(&n->idec, &n->d)) {
		dkv_set_res(o, AUTH_PERMERROR, "bad signature: i= is a subdomain of d= "
		            "and the key has t=s (RFC 6376 3.6.1)");
		goto out;
	}
	if (hash_ok && key->err == DKK_E_REVOKED) {
		dkv_set_res(o, AUTH_PERMERROR, "key revoked (empty p=, RFC 6376 3.6.1)");
		goto out;
	}
	/* 6.1.2 step 8: the key type (k=, default rsa) must suit a= */
	int want_ed = n->alg == ALG_ED25519_SHA256;
	if ((want_ed && key->type != DKV_KEY_ED25519) ||
	    (!want_ed && key->type != DKV_KEY_RSA)) {
		dkv_set_res(o, AUTH_PERMERROR, "key type k=%s does not suit a=%s "
		            "(RFC 6376 6.1.2)", dkv_keytype_name(key->type), o->a);
		goto out;
	}

	/* 3. RFC 8301: "policy" (RFC 8601 2.7.1), not "fail". */
	if (n->alg == ALG_RSA_SHA1) {
		if (o->key_bits != 0 && o->key_bits < l->min_bits)
			dkv_set_res(o, AUTH_POLICY, "rsa-sha1 is not accepted (RFC 8301 3.1); "
			            "RSA key of %u bits is under %u (3.2)", o->key_bits,
			            l->min_bits);
		else
			dkv_set_res(o, AUTH_POLICY, "rsa-sha1 is not accepted (RFC 8301 3.1)");
		goto out;
	}
	if (kerr == NULL && key->type == DKV_KEY_RSA && key->bits < l->min_bits) {
		dkv_set_res(o, AUTH_POLICY, "RSA key of %u bits is under %u (RFC 8301 3.2)",
		            key->bits, l->min_bits);
		goto out;
	}
	if (kerr != NULL) {
		dkv_set_res(o, AUTH_PERMERROR, "unusable key: %s", kerr);
		goto out;
	}
	if (key->type == DKV_KEY_RSA && key->bits > LIM_DKIM_MAX_RSA_BITS) {
		dkv_set_res(o, AUTH_PERMERROR, "unusable key: RSA key of %u bits is over %u",
		            key->bits, LIM_DKIM_MAX_RSA_BITS);
		goto out;
	}

	/* 4. The crypto (6.1.3). Both hashes are checked even when one fails:
	 * "header signature verified, body changed" tells a modifying relay
	 * (a list footer) from a forgery. */
	const unsigned char *got = dkc_body_digest(body, n->bh_idx);
	unsigned char want[64];
	size_t wl = 0;
	if (got == NULL) {
		dkv_set_res(o, AUTH_TEMPERROR, "signature not processed");
		goto out;
	}
	o->bh_ok = dkc_b64_decode(n->bh.v, n->bh.len, want, sizeof want, &wl) == 0 &&
	           wl == DKC_DIGEST_LEN && memcmp(want, got, DKC_DIGEST_LEN) == 0;
	if (n->b_corrupt) {
		o->sig_ok = 0;
		dkv_set_res(o, AUTH_FAIL, "signature did not verify (b= is not valid "
		            "base64)");
		goto out;
	}
	unsigned char dg[DKC_DIGEST_LEN];
	int r = header_hash(m, n, dg);
	if (r == -E2BIG) {
		dkv_set_res(o, AUTH_PERMERROR, "bad signature: h= names more than %u fields",
		            LIM_DKIM_H_NAMES);
		goto out;
	}
	int v = r == 0 ? verify_digest(key, dg, n->sig, n->siglen) : -1;
	if (v < 0) {
		dkv_set_res(o, AUTH_TEMPERROR, "out of memory");
		goto out;
	}
	o->sig_ok = v;
	if (!v) {
		dkv_set_res(o, AUTH_FAIL, "signature did not verify");
		goto out;
	}
	if (!o->bh_ok) {
		dkv_set_res(o, AUTH_FAIL, "body hash mismatch (header signature verified)");
		goto out;
	}
	dkv_set_pass(o);
out:
	dkk_unref(&key);
}

int dkv_native_verify(struct dkv_lib *l, const char *msg, size_t len,
                      const struct dkv_keyset *ks, struct dkv_result *res,
                      struct trace *t)
{
	uint64_t t0 = trace_now_us();
	memset(res, 0, sizeof *res);
	res->best = AUTH_NONE;

	struct msg m;
	if (msg_parse(msg, len, &m) != MSG_OK) {
		if (t)
			trace_add(t, "dkim", "header section not parsed: no signature evaluated");
		res->elapsed_us = trace_now_us() - t0;
		return 0;
	}
	size_t total = msg_count(&m, "DKIM-Signature");
	if (total == 0) {
		msg_free(&m);
		if (t)
			trace_add(t, "dkim", "no DKIM signature");
		res->elapsed_us = trace_now_us() - t0;
		return 0;
	}
	if (memchr(msg, '\0', m.header_len) != NULL) {
		/* RFC 5322 forbids NUL; both engines refuse such a header alike */
		int rc0 = dkv_refuse_all(l, &m, res, t, "NUL byte in the header section");
		msg_free(&m);
		res->elapsed_us = trace_now_us() - t0;
		return rc0;
	}
	size_t n = total < l->max_sigs ? total : l->max_sigs;
	res->not_evaluated = total - n;
	struct nsig *sigs = calloc(n, sizeof *sigs);
	res->sigs = calloc(n, sizeof *res->sigs);
	struct dkc_body *body = dkc_body_new();
	int rc = 0;
	if (sigs == NULL || res->sigs == NULL || body == NULL) {
		rc = -ENOMEM;
		goto done;
	}
	for (size_t k = 0, seen = 0; k < m.n_fields && seen < n; k++) {
		const struct msg_field *f = &m.fields[k];
		if (!text_ieq(f->name, f->name_len, "DKIM-Signature"))
			continue;
		struct nsig *s = &sigs[seen++];
		parse_sig(s, f);
		dkc_body_measure(body, s->brel);
		if (s->syntax == NULL && s->alg != ALG_RSA_SHA1) {
			s->bh_idx = dkc_body_want(body, s->brel, s->limit);
			if (s->bh_idx < 0)
				s->syntax = "too many distinct body hashes in one message";
		}
	}
	/* the one pass over the body */
	if (dkc_body_feed(body, m.body, m.body_len) != 0 || dkc_body_end(body) != 0) {
		rc = -ENOMEM;
		goto done;
	}
	uint64_t now = l->fixed_time ? l->fixed_time : (uint64_t)time(NULL);
	for (size_t k = 0; k < n; k++) {
		judge(l, &m, ks, body, &sigs[k], &res->sigs[k], now);
		res->n++;
		if (dkv_rank(res->sigs[k].res) > dkv_rank(res->best))
			res->best = res->sigs[k].res;
		dkv_trace_sig(t, k, &res->sigs[k]);
	}
	if (res->not_evaluated && t)
		trace_add(t, "dkim", "%zu more signature(s) not evaluated (max %u)",
		          res->not_evaluated, l->max_sigs);
done:
	if (rc != 0)
		res->best = AUTH_TEMPERROR;
	for (size_t k = 0; sigs && k < n; k++)
		free(sigs[k].buf);
	free(sigs);
	dkc_body_free(&body);
	msg_free(&m);
	res->elapsed_us = trace_now_us() - t0;
	return rc;
}
