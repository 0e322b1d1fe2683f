/* Worker-thread side of ARC: arc_verify() validates the chain of one
 * message (RFC 8617 5.2) with keys from a dkv_keyset, and fills an
 * arc_result with per-instance details and the first hop's
 * ARC-Authentication-Results. Owns its decoded keys for one call only. */
#include "checks/arc/arc_int.h"
#include "checks/dkim/dkv_int.h"
#include "checks/dkim/dkk.h"
#include "common/text.h"
#include "common/trace.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#define ARC_MAX_SIG_BYTES 1024u   /* 8192-bit RSA */
#define ARC_MAX_RSA_BITS  8192u   /* bigger keys cost too much to verify */
#define ARC_MAX_H_NAMES   256u    /* names in an AMS h= */
#define ARC_BH_CACHE      4u      /* distinct (canon, l=) body hashes per message */

struct keyent {
	char qname[DKV_NAME_MAX];
	struct dkk_key *key;          /* a reference, dropped at the end */
	enum dkv_keytype type;
	unsigned bits;
	enum auth_res res;            /* AUTH_PASS: usable */
	char reason[ARC_REASON_MAX];
};

struct bhent {
	int relaxed;
	int64_t limit;
	unsigned char hash[32];
};

struct vstate {
	const struct dkv_keyset *ks;
	struct dkk_cache *cache;      /* may be NULL: keys decoded per call */
	const struct msg *m;
	unsigned min_bits;
	uint64_t now;
	struct keyent keys[ARC_MAX_REFS];
	size_t nkeys;
	struct bhent bh[ARC_BH_CACHE];
	size_t nbh;
	int nomem;
};

static void set_sig(struct arc_sig *o, enum auth_res r, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_sig(struct arc_sig *o, enum auth_res r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	text_vformat(o->reason, sizeof o->reason, fmt, ap);
	va_end(ap);
	o->res = r;
}

static int val_is(const struct arc_val *v, const char *lit)
{
	return v->v != NULL && text_ieq(v->v, v->len, lit);
}

/* ---- keys: parsed and decoded by checks/dkim/dkk, cached with DKIM's ---- */

static void key_why(struct keyent *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void key_why(struct keyent *e, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	text_vformat(e->reason, sizeof e->reason, fmt, ap);
	va_end(ap);
}

/* RFC 6376 3.6.1 key record, RFC 8463 for ed25519 */
static void load_key(struct vstate *vs, struct keyent *e)
{
	const struct dkv_key *key = dkv_keyset_find(vs->ks, e->qname);
	e->res = AUTH_PERMERROR;
	if (key == NULL) {
		e->res = AUTH_TEMPERROR;
		key_why(e, "key record %s was not looked up", e->qname);
		return;
	}
	switch (key->status) {
	case DNSQ_OK:
		break;
	case DNSQ_NXDOMAIN:
	case DNSQ_NODATA:
		key_why(e, "no key record at %s (%s)",
		         e->qname, dnsq_status_name(key->status));
		return;
	case DNSQ_BOGUS:
	case DNSQ_TEMPFAIL:
	case DNSQ_TIMEOUT:
		e->res = AUTH_TEMPERROR;
		key_why(e, "key lookup for %s: %s",
		         e->qname, dnsq_status_name(key->status));
		return;
	}
	e->key = dkk_cache_get(vs->cache, e->qname, key->txt, key->ttl);
	if (e->key == NULL) {
		vs->nomem = 1;
		e->res = AUTH_TEMPERROR;
		key_why(e, "out of memory");
		return;
	}
	const struct dkk_key *k = e->key;
	e->type = k->type;
	/* every ARC signature is sha256 (RFC 8617 4.1.2, 4.1.3) */
	if (k->err == DKK_E_SYNTAX || k->err == DKK_E_DUP || k->err == DKK_E_VERSION)
		key_why(e, "key record at %s: %s", e->qname, dkk_err_name(k->err));
	else if (!k->h_sha256)
		key_why(e, "key record at %s: h= excludes sha256", e->qname);
	else if (k->err != DKK_OK)
		key_why(e, "key record at %s: %s", e->qname, dkk_err_name(k->err));
	else {
		e->bits = k->bits;
		e->res = AUTH_PASS;
	}
}

static struct keyent *get_key(struct vstate *vs, const char *qname)
{
	for (size_t k = 0; k < vs->nkeys; k++)
		if (strcmp(vs->keys[k].qname, qname) == 0)
			return &vs->keys[k];
	if (vs->nkeys == ARC_MAX_REFS)
		return NULL;    /* cannot happen: at most one key per AS and AMS */
	struct keyent *e = &vs->keys[vs->nkeys++];
	memset(e, 0, sizeof *e);
	snprintf(e->qname, sizeof e->qname, "%s", qname);
	load_key(vs, e);
	return e;
}

/* 1 verified, 0 not, -1 out of memory */
static int verify_digest(const struct keyent *e, const unsigned char dg[32],
                         const unsigned char *sig, size_t siglen)
{
	int ok = 0;
	if (e->type == DKV_KEY_ED25519) {
		/* RFC 8463 3: PureEdDSA over the SHA-256 hash */
		EVP_MD_CTX *md = EVP_MD_CTX_new();
		if (md == NULL)
			return -1;
		if (EVP_DigestVerifyInit(md, NULL, NULL, NULL, e->key->pkey) == 1)
			ok = EVP_DigestVerify(md, sig, siglen, dg, 32) == 1;
		EVP_MD_CTX_free(md);
		return ok;
	}
	EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new(e->key->pkey, NULL);
	if (pc == NULL)
		return -1;
	if (EVP_PKEY_verify_init(pc) == 1 &&
	    EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) == 1 &&
	    EVP_PKEY_CTX_set_signature_md(pc, EVP_sha256()) == 1)
		ok = EVP_PKEY_verify(pc, sig, siglen, dg, 32) == 1;
	EVP_PKEY_CTX_free(pc);
	return ok;
}

/* ---- one signature ---- */

static void copy_val(char *dst, size_t cap, const struct arc_val *v)
{
	if (v->v == NULL)
		dst[0] = '\0';
	else
		text_printable(dst, cap, v->v, v->len);
}

/* Checks what AS and AMS share: the tags, the algorithm, the key. Returns
 * the key, or NULL with o->res set. */
static struct keyent *common_checks(struct vstate *vs, const struct arc_tags *tg,
                                    struct arc_sig *o, const char *what,
                                    unsigned char *sig, size_t *siglen)
{
	if (tg->bad) {
		set_sig(o, AUTH_PERMERROR, "%s: malformed tag-list", what);
		return NULL;
	}
	if (tg->a.v == NULL || tg->b.v == NULL || tg->d.v == NULL ||
	    tg->s.v == NULL) {
		set_sig(o, AUTH_PERMERROR, "%s: a=, b=, d= or s= missing", what);
		return NULL;
	}
	if (val_is(&tg->a, "rsa-sha1")) {
		set_sig(o, AUTH_POLICY, "%s: rsa-sha1 is not accepted (RFC 8301 3.1)",
		        what);
		return NULL;
	}
	enum dkv_keytype want;
	if (val_is(&tg->a, "rsa-sha256"))
		want = DKV_KEY_RSA;
	else if (val_is(&tg->a, "ed25519-sha256"))
		want = DKV_KEY_ED25519;
	else {
		set_sig(o, AUTH_PERMERROR, "%s: unknown algorithm a=%s", what, o->a);
		return NULL;
	}
	if (!dkv_usable_name(tg->d.v, tg->d.len) ||
	    !dkv_usable_name(tg->s.v, tg->s.len) ||
	    tg->s.len + tg->d.len + 12 > LIM_DNS_MAX_NAME - 2) {
		set_sig(o, AUTH_PERMERROR, "%s: d= or s= is not a usable DNS name",
		        what);
		return NULL;
	}
	if (dkc_b64_decode(tg->b.v, tg->b.len, sig, ARC_MAX_SIG_BYTES, siglen) != 0 ||
	    *siglen == 0) {
		set_sig(o, AUTH_PERMERROR, "%s: b= is not base64 or too long", what);
		return NULL;
	}
	char qname[DKV_NAME_MAX];
	memcpy(qname, tg->s.v, tg->s.len);
	memcpy(qname + tg->s.len, "._domainkey.", 12);
	memcpy(qname + tg->s.len + 12, tg->d.v, tg->d.len);
	qname[tg->s.len + 12 + tg->d.len] = '\0';
	dkv_lower(qname);
	struct keyent *e = get_key(vs, qname);
	if (e == NULL) {
		set_sig(o, AUTH_TEMPERROR, "%s: too many keys", what);
		return NULL;
	}
	o->key_type = e->type;
	o->key_bits = e->bits;
	if (e->res != AUTH_PASS) {
		set_sig(o, e->res, "%s: %s", what, e->reason);
		return NULL;
	}
	if (e->type != want) {
		set_sig(o, AUTH_PERMERROR, "%s: key type %s does not suit a=%s", what,
		        dkv_keytype_name(e->type), o->a);
		return NULL;
	}
	if (e->type == DKV_KEY_RSA && e->bits < vs->min_bits) {
		set_sig(o, AUTH_POLICY, "%s: RSA key of %u bits is under %u "
		        "(RFC 8301 3.2)", what, e->bits, vs->min_bits);
		return NULL;
	}
	if (e->type == DKV_KEY_RSA && e->bits > ARC_MAX_RSA_BITS) {
		set_sig(o, AUTH_PERMERROR, "%s: RSA key of %u bits is over %u", what,
		        e->bits, ARC_MAX_RSA_BITS);
		return NULL;
	}
	return e;
}

static void finish_sig(struct arc_sig *o, const char *what, int v)
{
	if (v < 0)
		set_sig(o, AUTH_TEMPERROR, "%s: out of memory", what);
	else if (v == 1)
		set_sig(o, AUTH_PASS, "%s: signature verified", what);
	else
		set_sig(o, AUTH_FAIL, "%s: signature did not verify", what);
}

static int canon_of(const char *s, size_t len, int *relaxed)
{
	if (text_ieq(s, len, "relaxed"))
		*relaxed = 1;
	else if (text_ieq(s, len, "simple"))
		*relaxed = 0;
	else
		return -1;
	return 0;
}

static int body_hash(struct vstate *vs, int relaxed, int64_t limit,
                     unsigned char out[32])
{
	for (size_t k = 0; k < vs->nbh; k++)
		if (vs->bh[k].relaxed == relaxed && vs->bh[k].limit == limit) {
			memcpy(out, vs->bh[k].hash, 32);
			return 0;
		}
	uint64_t clen;
	int r = dkc_body_hash(vs->m->body, vs->m->body_len, relaxed, limit, out,
	                      &clen);
	if (r != 0)
		return r;
	if (vs->nbh < ARC_BH_CACHE) {
		struct bhent *b = &vs->bh[vs->nbh++];
		b->relaxed = relaxed;
		b->limit = limit;
		memcpy(b->hash, out, 32);
	}
	return 0;
}

/* RFC 8617 4.1.2 and 5.2 steps 4-5: the AMS is a DKIM signature over the
 * h= fields, itself and the body, with i= an instance number. */
static void verify_ams(struct vstate *vs, const struct msg_field *f,
                       struct arc_sig *o)
{
	static const char what[] = "AMS";
	struct arc_tags tg;
	unsigned char *sig = malloc(ARC_MAX_SIG_BYTES);
	if (sig == NULL || arc_tags_parse(f, &tg) != 0) {
		free(sig);
		vs->nomem = 1;
		set_sig(o, AUTH_TEMPERROR, "%s: out of memory", what);
		return;
	}
	size_t siglen = 0;
	struct keyent *e = common_checks(vs, &tg, o, what, sig, &siglen);
	if (e == NULL)
		goto out;
	if (tg.bh.v == NULL || tg.h.v == NULL) {
		set_sig(o, AUTH_PERMERROR, "%s: bh= or h= missing", what);
		goto out;
	}
	/* c= as in DKIM; absent means simple/simple (RFC 6376 3.5) */
	int hrel = 0, brel = 0;
	if (tg.c.v) {
		const char *sl = memchr(tg.c.v, '/', tg.c.len);
		size_t hl = sl ? (size_t)(sl - tg.c.v) : tg.c.len;
		if (canon_of(tg.c.v, hl, &hrel) != 0 ||
		    (sl && canon_of(sl + 1, tg.c.len - hl - 1, &brel) != 0)) {
			set_sig(o, AUTH_PERMERROR, "%s: unknown c=", what);
			goto out;
		}
	}
	int64_t limit = -1;
	if (tg.l.v) {
		uint64_t l;
		if (text_u64(tg.l.v, tg.l.len, INT64_MAX, &l) != 0) {
			set_sig(o, AUTH_PERMERROR, "%s: malformed l=", what);
			goto out;
		}
		limit = (int64_t)l;
	}
	if (tg.x.v) {
		uint64_t x;
		if (text_u64(tg.x.v, tg.x.len, UINT64_MAX, &x) != 0) {
			set_sig(o, AUTH_PERMERROR, "%s: malformed x=", what);
			goto out;
		}
		if (x < vs->now) {
			set_sig(o, AUTH_PERMERROR, "%s: expired (x=%llu)", what,
			        (unsigned long long)x);
			goto out;
		}
	}

	/* the body */
	unsigned char want_bh[64], got_bh[32];
	size_t bhlen = 0;
	if (dkc_b64_decode(tg.bh.v, tg.bh.len, want_bh, sizeof want_bh, &bhlen) != 0) {
		set_sig(o, AUTH_PERMERROR, "%s: bh= is not base64", what);
		goto out;
	}
	if (body_hash(vs, brel, limit, got_bh) != 0) {
		vs->nomem = 1;
		set_sig(o, AUTH_TEMPERROR, "%s: out of memory", what);
		goto out;
	}
	if (bhlen != 32 || memcmp(want_bh, got_bh, 32) != 0) {
		set_sig(o, AUTH_FAIL, "%s: body hash mismatch", what);
		goto out;
	}

	/* the header fields named by h=, each taken from the bottom up
	 * (RFC 6376 5.4.2); a name listed more often than present adds
	 * nothing */
	const char *names[ARC_MAX_H_NAMES];
	size_t nlens[ARC_MAX_H_NAMES], nn = 0;
	size_t off = 0;
	while (off <= tg.h.len) {
		size_t end = off;
		while (end < tg.h.len && tg.h.v[end] != ':')
			end++;
		const char *nm = tg.h.v + off;
		size_t nl = end - off;
		text_trim(&nm, &nl);
		if (nl == 0 || nn == ARC_MAX_H_NAMES) {
			set_sig(o, AUTH_PERMERROR, "%s: h= has an empty name or more "
			        "than %u", what, ARC_MAX_H_NAMES);
			goto out;
		}
		/* RFC 8617 4.1.2: the AMS must not cover ARC-Seal fields */
		if (text_ieq(nm, nl, "arc-seal")) {
			set_sig(o, AUTH_PERMERROR, "%s: h= names ARC-Seal (RFC 8617 "
			        "4.1.2)", what);
			goto out;
		}
		names[nn] = nm;
		nlens[nn++] = nl;
		off = end + 1;
	}
	struct dkc_hash *h = dkc_hash_new();
	if (h == NULL) {
		vs->nomem = 1;
		set_sig(o, AUTH_TEMPERROR, "%s: out of memory", what);
		goto out;
	}
	int r = 0;
	for (size_t j = 0; j < nn && r == 0; j++) {
		size_t used = 0;
		for (size_t q = 0; q < j; q++)
			if (nlens[q] == nlens[j] &&
			    strncasecmp(names[q], names[j], nlens[j]) == 0)
				used++;
		for (size_t k = vs->m->n_fields; k-- > 0;) {
			const struct msg_field *hf = &vs->m->fields[k];
			if (hf->name_len != nlens[j] ||
			    strncasecmp(hf->name, names[j], nlens[j]) != 0)
				continue;
			if (used-- == 0) {
				r = dkc_header(h, hf, hrel, 0);
				break;
			}
		}
	}
	if (r == 0)
		r = dkc_header(h, f, hrel, 1);
	unsigned char dg[32];
	if (r == 0)
		r = dkc_hash_final(h, dg);
	dkc_hash_free(&h);
	if (r != 0) {
		vs->nomem = 1;
		set_sig(o, AUTH_TEMPERROR, "%s: out of memory", what);
		goto out;
	}
	finish_sig(o, what, verify_digest(e, dg, sig, siglen));
out:
	arc_tags_free(&tg);
	free(sig);
}

/* RFC 8617 4.1.3 and 5.1.1: the AS of instance i signs, with relaxed
 * header canonicalisation, the AAR, AMS and AS of every instance 1..i in
 * that order, its own b= left empty. */
static void verify_as(struct vstate *vs, const struct arc_chain *c,
                      unsigned i, struct arc_sig *o)
{
	static const char what[] = "AS";
	const struct msg_field *f = c->slot[i].as;
	struct arc_tags tg;
	unsigned char *sig = malloc(ARC_MAX_SIG_BYTES);
	if (sig == NULL || arc_tags_parse(f, &tg) != 0) {
		free(sig);
		vs->nomem = 1;
		set_sig(o, AUTH_TEMPERROR, "%s: out of memory", what);
		return;
	}
	size_t siglen = 0;
	struct keyent *e = common_checks(vs, &tg, o, what, sig, &siglen);
	if (e == NULL)
		goto out;
	if (tg.h.v != NULL) {
		set_sig(o, AUTH_PERMERROR, "%s: h= is not allowed in an ARC-Seal "
		        "(RFC 8617 4.1.3)", what);
		goto out;
	}
	struct dkc_hash *h = dkc_hash_new();
	if (h == NULL) {
		vs->nomem = 1;
		set_sig(o, AUTH_TEMPERROR, "%s: out of memory", what);
		goto out;
	}
	int r = 0;
	for (unsigned k = 1; k <= i && r == 0; k++) {
		r = dkc_header(h, c->slot[k].aar, 1, 0);
		if (r == 0)
			r = dkc_header(h, c->slot[k].ams, 1, 0);
		if (r == 0)
			r = dkc_header(h, c->slot[k].as, 1, k == i);
	}
	unsigned char dg[32];
	if (r == 0)
		r = dkc_hash_final(h, dg);
	dkc_hash_free(&h);
	if (r != 0) {
		vs->nomem = 1;
		set_sig(o, AUTH_TEMPERROR, "%s: out of memory", what);
		goto out;
	}
	finish_sig(o, what, verify_digest(e, dg, sig, siglen));
out:
	arc_tags_free(&tg);
	free(sig);
}

/* ---- the first hop's ARC-Authentication-Results ---- */

/* splits at ';' outside quoted strings and comments */
static size_t next_semi(const char *s, size_t len, size_t off)
{
	int q = 0, depth = 0;
	for (; off < len; off++) {
		char ch = s[off];
		if (q) {
			if (ch == '\\' && off + 1 < len)
				off++;
			else if (ch == '"')
				q = 0;
		} else if (ch == '"' && depth == 0) {
			q = 1;
		} else if (ch == '(') {
			depth++;
		} else if (ch == ')' && depth > 0) {
			depth--;
		} else if (ch == '\\' && depth > 0 && off + 1 < len) {
			off++;
		} else if (ch == ';' && depth == 0) {
			break;
		}
	}
	return off;
}

static void lower_copy(char *dst, size_t cap, const char *s, size_t len)
{
	text_printable(dst, cap, s, len);
	for (char *p = dst; *p; p++)
		*p = (char)tolower((unsigned char)*p);
}

/* RFC 8601 2.2: authserv-id [version] ; resinfo ; resinfo ... */
size_t arc_ar_parse(const char *s, size_t len, char *authserv, size_t acap,
                    struct arc_aar_method *out, size_t max)
{
	size_t off = 0, end = next_semi(s, len, 0), n = 0;
	const char *id = s;
	size_t il = end;
	text_trim(&id, &il);
	size_t w = 0;
	while (w < il && id[w] != ' ' && id[w] != '\t' && id[w] != '(')
		w++;
	if (authserv && acap)
		text_printable(authserv, acap, id, w);
	off = end + 1;
	while (off < len && n < max) {
		end = next_semi(s, len, off);
		const char *ri = s + off;
		size_t rl = end - off;
		off = end + 1;
		text_trim(&ri, &rl);
		const char *eq = memchr(ri, '=', rl);
		if (eq == NULL)
			continue;     /* "none" or junk */
		size_t ml = (size_t)(eq - ri);
		const char *mv = ri;
		text_trim(&mv, &ml);
		const char *slash = memchr(mv, '/', ml);   /* method/version */
		if (slash)
			ml = (size_t)(slash - mv);
		const char *rv = eq + 1;
		size_t rest = rl - (size_t)(rv - ri);
		while (rest > 0 && (*rv == ' ' || *rv == '\t')) {
			rv++;
			rest--;
		}
		size_t vl = 0;
		while (vl < rest && rv[vl] != ' ' && rv[vl] != '\t' && rv[vl] != '(')
			vl++;
		if (ml == 0 || vl == 0)
			continue;
		struct arc_aar_method *am = &out[n++];
		lower_copy(am->method, sizeof am->method, mv, ml);
		lower_copy(am->result, sizeof am->result, rv, vl);
		const char *pp = rv + vl;
		size_t pl = rest - vl;
		text_trim(&pp, &pl);
		text_printable(am->props, sizeof am->props, pp, pl);
	}
	return n;
}

static int take_aar1(struct arc_result *res, const struct msg_field *f)
{
	char *buf = malloc(f->value_len + 1);
	if (buf == NULL)
		return -ENOMEM;
	const char *rest = NULL;
	size_t rl = 0;
	if (arc_aar_instance(f->value, f->value_len, buf, f->value_len + 1,
	                     &rest, &rl) == 1) {
		size_t cap = rl < ARC_AAR_TEXT_MAX ? rl + 1 : ARC_AAR_TEXT_MAX;
		res->aar1 = malloc(cap);
		if (res->aar1 == NULL) {
			free(buf);
			return -ENOMEM;
		}
		text_printable(res->aar1, cap, rest, rl);
		/* one space for each run of folding whitespace */
		size_t w = 0;
		for (size_t k = 0; res->aar1[k]; k++)
			if (!(res->aar1[k] == ' ' && w > 0 && res->aar1[w - 1] == ' '))
				res->aar1[w++] = res->aar1[k] == '\t' ? ' ' : res->aar1[k];
		res->aar1[w] = '\0';
		res->aar1_n = arc_ar_parse(rest, rl, res->aar1_authserv, sizeof res->aar1_authserv,
		                           res->aar1_res, ARC_AAR_MAX);
	}
	free(buf);
	return 0;
}

/* ---- the chain ---- */

static void set_reason(struct arc_result *res, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void set_reason(struct arc_result *res, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	text_vformat(res->reason, sizeof res->reason, fmt, ap);
	va_end(ap);
}

static void describe(struct arc_sig *o, const struct msg_field *f)
{
	struct arc_tags tg;
	if (f == NULL || arc_tags_parse(f, &tg) != 0)
		return;
	copy_val(o->d, sizeof o->d, &tg.d);
	copy_val(o->s, sizeof o->s, &tg.s);
	copy_val(o->a, sizeof o->a, &tg.a);
	arc_tags_free(&tg);
}

static void trace_set(struct trace *t, const struct arc_set *s)
{
	if (t == NULL || !t->enabled)
		return;
	trace_add(t, "arc", "i=%u cv=%s seal d=%s s=%s -> %s (%s); "
	          "message-signature d=%s s=%s -> %s (%s)",
	          s->instance, s->cv[0] ? s->cv : "-",
	          s->as.d, s->as.s, auth_res_name(s->as.res), s->as.reason,
	          s->ams.d, s->ams.s, auth_res_name(s->ams.res), s->ams.reason);
}

static void run_chain(struct vstate *vs, const struct arc_chain *c,
                      struct arc_result *res)
{
	unsigned n = c->n;
	struct arc_set *top = &res->sets[n - 1];
	/* step 4: the newest AMS must validate */
	verify_ams(vs, c->slot[n].ams, &top->ams);
	if (top->ams.res != AUTH_PASS) {
		res->chain = top->ams.res == AUTH_TEMPERROR ? AUTH_TEMPERROR : AUTH_FAIL;
		set_reason(res, "ARC-Message-Signature i=%u: %s", n, top->ams.reason);
		return;
	}
	/* step 5: oldest-pass, walking down while the AMSes still validate */
	res->oldest_pass = 0;
	for (unsigned i = n - 1; i >= 1; i--) {
		struct arc_set *s = &res->sets[i - 1];
		verify_ams(vs, c->slot[i].ams, &s->ams);
		if (s->ams.res != AUTH_PASS) {
			res->oldest_pass = i + 1;
			for (unsigned k = i - 1; k >= 1; k--)
				set_sig(&res->sets[k - 1].ams, AUTH_NONE,
				        "not evaluated: a newer AMS did not validate");
			break;
		}
	}
	/* step 6: every seal, newest first; a definite failure ends it */
	int temp = 0;
	for (unsigned i = n; i >= 1; i--) {
		struct arc_set *s = &res->sets[i - 1];
		verify_as(vs, c, i, &s->as);
		if (s->as.res == AUTH_TEMPERROR) {
			if (!temp)
				set_reason(res, "ARC-Seal i=%u: %s", i, s->as.reason);
			temp = 1;
			continue;
		}
		if (s->as.res != AUTH_PASS) {
			res->chain = AUTH_FAIL;
			set_reason(res, "ARC-Seal i=%u: %s", i, s->as.reason);
			for (unsigned k = i - 1; k >= 1; k--)
				set_sig(&res->sets[k - 1].as, AUTH_NONE,
				        "not evaluated: a newer seal did not validate");
			return;
		}
	}
	if (temp) {
		res->chain = AUTH_TEMPERROR;
		return;
	}
	/* step 7 */
	res->chain = AUTH_PASS;
	set_reason(res, "%u set(s) validate; sealed last by %s", n, top->as.d);
}

int arc_verify(const struct arc_opts *o, const char *msg, size_t len,
               const struct dkv_keyset *ks, struct arc_result *res,
               struct trace *t)
{
	uint64_t t0 = trace_now_us();
	memset(res, 0, sizeof *res);
	struct msg m;
	int pr = msg_parse(msg, len, &m);
	if (pr != MSG_OK) {
		res->chain = pr == MSG_E_NOMEM ? AUTH_TEMPERROR : AUTH_FAIL;
		set_reason(res, "the header section could not be parsed");
		if (t)
			trace_add(t, "arc", "%s", res->reason);
		res->elapsed_us = trace_now_us() - t0;
		return pr == MSG_E_NOMEM ? -ENOMEM : -EINVAL;
	}
	struct arc_chain *c = malloc(sizeof *c);
	struct vstate *vs = calloc(1, sizeof *vs);
	int rc = 0;
	if (c == NULL || vs == NULL || arc_chain_collect(&m, c) != 0) {
		rc = -ENOMEM;
		res->chain = AUTH_TEMPERROR;
		set_reason(res, "out of memory");
		goto done;
	}
	vs->ks = ks;
	vs->cache = o ? o->key_cache : NULL;
	vs->m = &m;
	vs->min_bits = o && o->min_rsa_bits ? o->min_rsa_bits : LIM_DKIM_MIN_RSA_BITS;
	vs->now = o && o->fixed_time ? o->fixed_time : (uint64_t)time(NULL);

	res->n_sets = c->n;
	if (c->n > 0) {
		res->sets = calloc(c->n, sizeof *res->sets);
		if (res->sets == NULL) {
			rc = -ENOMEM;
			res->chain = AUTH_TEMPERROR;
			set_reason(res, "out of memory");
			goto done;
		}
	}
	for (unsigned i = 1; i <= c->n; i++) {
		struct arc_set *s = &res->sets[i - 1];
		const struct arc_slot *sl = &c->slot[i];
		s->instance = i;
		s->n_as = sl->n_as;
		s->n_ams = sl->n_ams;
		s->n_aar = sl->n_aar;
		text_printable(s->cv, sizeof s->cv, sl->cv, strlen(sl->cv));
		describe(&s->as, sl->as);
		describe(&s->ams, sl->ams);
		set_sig(&s->as, AUTH_NONE, "not evaluated");
		set_sig(&s->ams, AUTH_NONE, "not evaluated");
	}
	if (c->n >= 1 && c->slot[1].n_aar >= 1 && take_aar1(res, c->slot[1].aar) != 0) {
		rc = -ENOMEM;
		res->chain = AUTH_TEMPERROR;
		set_reason(res, "out of memory");
		goto done;
	}
	if (c->state != AUTH_PASS) {
		res->chain = c->state;
		set_reason(res, "%s", c->reason);
	} else {
		run_chain(vs, c, res);
		if (vs->nomem) {
			rc = -ENOMEM;
			res->chain = AUTH_TEMPERROR;
			set_reason(res, "out of memory");
		}
	}
	for (unsigned i = 1; i <= res->n_sets; i++)
		trace_set(t, &res->sets[i - 1]);
	if (t)
		trace_add(t, "arc", "arc=%s oldest-pass=%u (%s)",
		          auth_res_name(res->chain), res->oldest_pass, res->reason);
done:
	if (vs != NULL)
		for (size_t k = 0; k < vs->nkeys; k++)
			dkk_unref(&vs->keys[k].key);
	free(vs);
	free(c);
	msg_free(&m);
	res->elapsed_us = trace_now_us() - t0;
	return rc;
}

void arc_result_free(struct arc_result *res)
{
	if (res == NULL)
		return;
	free(res->sets);
	res->sets = NULL;
	free(res->aar1);
	res->aar1 = NULL;
	res->n_sets = 0;
}

const char *arc_aar1_result(const struct arc_result *res, const char *method)
{
	for (size_t k = 0; k < res->aar1_n; k++)
		if (strcasecmp(res->aar1_res[k].method, method) == 0)
			return res->aar1_res[k].result;
	return NULL;
}

size_t arc_ar_text(const struct arc_result *res, char *out, size_t cap)
{
	char tmp[2 * ARC_REASON_MAX + DKV_NAME_MAX + 64];
	if (res->chain == AUTH_PASS && res->n_sets > 0)
		snprintf(tmp, sizeof tmp, "pass (i=%u sealer %s) header.oldest-pass=%u",
		         res->n_sets, res->sets[res->n_sets - 1].as.d, res->oldest_pass);
	else if (res->chain == AUTH_NONE)
		snprintf(tmp, sizeof tmp, "none");
	else {
		/* a comment: keep its parentheses balanced */
		char why[ARC_REASON_MAX];
		size_t k = 0;
		for (const char *p = res->reason; *p && k + 1 < sizeof why; p++)
			why[k++] = *p == '(' ? '[' : *p == ')' ? ']' : *p;
		why[k] = '\0';
		snprintf(tmp, sizeof tmp, "%s (%s)",
		         res->chain == AUTH_FAIL ? "fail" : "temperror", why);
	}
	return text_printable(out, cap, tmp, strlen(tmp));
}
