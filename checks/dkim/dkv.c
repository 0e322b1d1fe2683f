/* Worker-thread side of DKIM: the shared library handle, and dkv_verify(),
 * which hands a message to the chosen engine. This file also holds the
 * libopendkim engine: it feeds a whole message to libopendkim, answers its
 * key lookups from the key set (never DNS) and turns each signature into an
 * RFC 8601 result. Owns the DKIM_LIB; each verification owns its DKIM
 * handle. The native engine is in dkv_native.c. */
#include "checks/dkim/dkv.h"
#include "checks/dkim/dkk.h"
#include "checks/msg.h"
#include "common/buf.h"
#include "checks/dkim/dkv_int.h"
#include "common/text.h"
#include "common/trace.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <time.h>

#include <opendkim/dkim.h>

struct vctx {
	const struct dkv_lib *l;
	const struct dkv_keyset *ks;
	size_t buflen;            /* libopendkim's key buffer, seen by key_cb */
	const char *body;         /* the message body, for l= accounting */
	size_t body_len;
};

/* Length of the canonicalized body (RFC 6376 3.4.3 simple, 3.4.4 relaxed):
 * CRLF line ends (a bare LF counts as CRLF), trailing empty lines dropped;
 * relaxed also drops trailing whitespace and folds whitespace runs. */
static uint64_t canon_body_len(const char *b, size_t n, int relaxed)
{
	uint64_t total = 0, empty_run = 0;
	size_t i = 0;
	while (i < n) {
		size_t e = i;
		while (e < n && b[e] != '\n')
			e++;
		size_t le = e;
		if (le > i && b[le - 1] == '\r')
			le--;
		uint64_t line = 0;
		if (relaxed) {
			int in_ws = 0;
			for (size_t k = i; k < le; k++) {
				if (b[k] == ' ' || b[k] == '\t') {
					in_ws = 1;
				} else {
					line += (uint64_t)in_ws + 1;   /* a folded run is one SP */
					in_ws = 0;
				}
			}
			/* whitespace at the end of the line is dropped (in_ws left over) */
		} else {
			line = le - i;
		}
		if (line == 0) {
			empty_run += 2;
		} else {
			total += empty_run + line + 2;
			empty_run = 0;
		}
		i = e < n ? e + 1 : n;
	}
	if (total == 0 && !relaxed)
		total = 2;              /* simple: an empty body is one CRLF */
	return total;
}

const char *dkv_keytype_name(enum dkv_keytype k)
{
	switch (k) {
	case DKV_KEY_RSA:     return "rsa";
	case DKV_KEY_ED25519: return "ed25519";
	case DKV_KEY_UNKNOWN: break;
	}
	return "unknown";
}

/* ---- libopendkim callbacks (run inside dkim_chunk / dkim_eom) ---- */

/* Signatures beyond the configured maximum are not evaluated at all: no key
 * is asked for and no crypto is spent on them (a cheap attack otherwise). */
static DKIM_CBSTAT prescreen_cb(DKIM *dkim, DKIM_SIGINFO **sigs, int nsigs)
{
	struct vctx *c = dkim_get_user_context(dkim);
	if (c == NULL)
		return DKIM_CBSTAT_CONTINUE;
	for (int k = (int)c->l->max_sigs; k < nsigs; k++)
		dkim_sig_ignore(sigs[k]);
	return DKIM_CBSTAT_CONTINUE;
}

/* "<s>._domainkey.<d>" of a signature, lower case; -1 if it has none */
static int sig_qname(DKIM_SIGINFO *sig, char *out, size_t cap)
{
	const char *s = (const char *)dkim_sig_getselector(sig);
	const char *d = (const char *)dkim_sig_getdomain(sig);
	if (s == NULL || d == NULL || !dkv_usable_name(s, strlen(s)) ||
	    !dkv_usable_name(d, strlen(d)) ||
	    strlen(s) + strlen(d) + 12 > LIM_DNS_MAX_NAME - 2)
		return -1;
	int n = snprintf(out, cap, "%s._domainkey.%s", s, d);
	if (n < 0 || (size_t)n >= cap)
		return -1;
	dkv_lower(out);
	return 0;
}

/* Answers libopendkim's key lookup from the key set. Anything but a usable
 * record is reported as "not found": judge() tells a missing key from a
 * temporary failure by the key set itself. (DKIM_CBSTAT_ERROR or TRYAGAIN
 * would end dkim_eom() for every signature of the message.) */
static DKIM_CBSTAT key_cb(DKIM *dkim, DKIM_SIGINFO *sig, u_char *buf,
                          size_t buflen)
{
	struct vctx *c = dkim_get_user_context(dkim);
	char qname[DKV_NAME_MAX];
	if (c == NULL || buflen == 0 || sig_qname(sig, qname, sizeof qname) != 0)
		return DKIM_CBSTAT_NOTFOUND;
	c->buflen = buflen;
	const struct dkv_key *key = dkv_keyset_find(c->ks, qname);
	if (key == NULL || key->status != DNSQ_OK || strlen(key->txt) >= buflen)
		return DKIM_CBSTAT_NOTFOUND;
	memcpy(buf, key->txt, strlen(key->txt) + 1);
	dkim_sig_setdnssec(sig, key->sec == DNSQ_SEC_SECURE ? DKIM_DNSSEC_SECURE
	                                                    : DKIM_DNSSEC_INSECURE);
	return DKIM_CBSTAT_CONTINUE;
}

/* ---- the library handle ---- */

struct dkv_lib *dkv_lib_new(const struct dkv_opts *o, char *err, size_t errlen)
{
	struct dkv_opts def = { 0 };
	if (o == NULL)
		o = &def;
	struct dkv_lib *l = calloc(1, sizeof *l);
	if (l == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	l->max_sigs = o->max_signatures ? o->max_signatures : LIM_DKIM_MAX_SIGNATURES;
	l->min_bits = o->min_rsa_bits ? o->min_rsa_bits : LIM_DKIM_MIN_RSA_BITS;
	l->drift = o->clock_drift ? o->clock_drift : LIM_DKIM_CLOCK_DRIFT;
	l->fixed_time = o->fixed_time;
	l->engine = o->engine;
	if (l->engine == DKV_ENGINE_NATIVE) {
		l->keys = dkk_cache_new(o->key_cache);
		if (l->keys == NULL) {
			snprintf(err, errlen, "out of memory");
			free(l);
			return NULL;
		}
		l->ed25519 = 1;
		return l;
	}
	l->dl = dkim_init(NULL, NULL);
	if (l->dl == NULL) {
		snprintf(err, errlen, "dkim_init failed");
		free(l);
		return NULL;
	}
	/* FIXCRLF: LF-only input is turned into CRLF (without it an LF-only
	 * message shows no signature). BADSIGHANDLES: a malformed signature
	 * still gets a handle, so one broken extra DKIM-Signature does not
	 * hide the valid ones. */
	unsigned int flags = DKIM_LIBFLAGS_FIXCRLF | DKIM_LIBFLAGS_BADSIGHANDLES;
	uint64_t drift = l->drift;
	unsigned int minbits = l->min_bits;
	int bad = 0;
	bad |= dkim_options(l->dl, DKIM_OP_SETOPT, DKIM_OPTS_FLAGS,
	                    &flags, sizeof flags) != DKIM_STAT_OK;
	bad |= dkim_options(l->dl, DKIM_OP_SETOPT, DKIM_OPTS_CLOCKDRIFT,
	                    &drift, sizeof drift) != DKIM_STAT_OK;
	bad |= dkim_options(l->dl, DKIM_OP_SETOPT, DKIM_OPTS_MINKEYBITS,
	                    &minbits, sizeof minbits) != DKIM_STAT_OK;
	if (l->fixed_time != 0) {
		uint64_t ft = l->fixed_time;
		bad |= dkim_options(l->dl, DKIM_OP_SETOPT, DKIM_OPTS_FIXEDTIME,
		                    &ft, sizeof ft) != DKIM_STAT_OK;
	}
	bad |= dkim_set_key_lookup(l->dl, key_cb) != DKIM_STAT_OK;
	bad |= dkim_set_prescreen(l->dl, prescreen_cb) != DKIM_STAT_OK;
	if (bad) {
		snprintf(err, errlen, "libopendkim refused an option");
		dkim_close(l->dl);
		free(l);
		return NULL;
	}
	l->ed25519 = dkim_libfeature(l->dl, DKIM_FEATURE_ED25519) ? 1 : 0;
	return l;
}

void dkv_lib_free(struct dkv_lib **lp)
{
	struct dkv_lib *l = *lp;
	if (l == NULL)
		return;
	if (l->dl != NULL)
		dkim_close(l->dl);
	dkk_cache_free(&l->keys);
	free(l);
	*lp = NULL;
}

int dkv_lib_has_ed25519(const struct dkv_lib *l)
{
	return l->ed25519;
}

unsigned dkv_lib_max_signatures(const struct dkv_lib *l)
{
	return l->max_sigs;
}

enum dkv_engine dkv_lib_engine(const struct dkv_lib *l)
{
	return l->engine;
}

const char *dkv_engine_name(enum dkv_engine e)
{
	return e == DKV_ENGINE_LIBOPENDKIM ? "libopendkim" : "native";
}

struct dkk_cache *dkv_lib_key_cache(struct dkv_lib *l)
{
	return l->keys;
}

void dkv_lib_key_stats(const struct dkv_lib *l, uint64_t *hits,
                       uint64_t *misses, size_t *entries)
{
	struct dkk_stats st;
	dkk_cache_stats(l->keys, &st);
	*hits = st.hits;
	*misses = st.misses;
	*entries = st.entries;
}

/* ---- judging one signature ---- */

static const char *tagval(DKIM_SIGINFO *sig, bool key, const char *tag)
{
	return (const char *)dkim_sig_gettagvalue(sig, key, (u_char *)tag);
}

static void copy_tag(char *dst, size_t cap, const char *v)
{
	if (v == NULL)
		dst[0] = '\0';
	else
		text_printable(dst, cap, v, strlen(v));
}

static int num_tag(const char *v, uint64_t *out)
{
	if (v == NULL)
		return 0;
	const char *s = v;
	size_t len = strlen(v);
	text_trim(&s, &len);
	/* RFC 6376 3.5: t=, x= and l= are at most 12 and 76 digits; more than
	 * fits in 64 bits is refused as a syntax error elsewhere */
	return text_u64(s, len, UINT64_MAX, out) == 0 ? 1 : -1;
}

/* h= is a colon-separated list of header names, FWS allowed around them */
int dkv_lists_from(const char *h, size_t hlen)
{
	if (h == NULL)
		return 0;
	size_t off = 0;
	while (off <= hlen) {
		size_t end = off;
		while (end < hlen && h[end] != ':')
			end++;
		const char *nm = h + off;
		size_t len = end - off;
		text_trim(&nm, &len);
		if (text_ieq(nm, len, "from"))
			return 1;
		off = end + 1;
	}
	return 0;
}

static int lists_from(const char *h)
{
	return h ? dkv_lists_from(h, strlen(h)) : 0;
}

struct ktag { char *out; size_t cap; };

static int k_tag(void *arg, const char *tag, size_t tlen, const char *val,
                 size_t vlen)
{
	struct ktag *k = arg;
	if (tlen == 1 && tag[0] == 'k')
		text_printable(k->out, k->cap, val, vlen);
	return 0;
}

/* k= of a key record, lower case; "rsa" when absent (RFC 6376 3.6.1) */
static void key_k_tag(const char *txt, char *out, size_t cap)
{
	struct ktag k = { out, cap };
	snprintf(out, cap, "rsa");
	(void)dkv_taglist(txt, strlen(txt), k_tag, &k);
	dkv_lower(out);
}

static int is_key_error(int e)
{
	switch (e) {
	case DKIM_SIGERROR_NOKEY:
	case DKIM_SIGERROR_DNSSYNTAX:
	case DKIM_SIGERROR_KEYFAIL:
	case DKIM_SIGERROR_MULTIREPLY:
	case DKIM_SIGERROR_KEYVERSION:
	case DKIM_SIGERROR_KEYUNKNOWNHASH:
	case DKIM_SIGERROR_KEYHASHMISMATCH:
	case DKIM_SIGERROR_NOTEMAILKEY:
	case DKIM_SIGERROR_KEYTYPEMISSING:
	case DKIM_SIGERROR_KEYTYPEUNKNOWN:
	case DKIM_SIGERROR_KEYREVOKED:
	case DKIM_SIGERROR_KEYDECODE:
	case DKIM_SIGERROR_KEYTOOSMALL:
		return 1;
	}
	return 0;
}

void dkv_set_res(struct dkv_sig *o, enum auth_res r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	text_vformat(o->reason, sizeof o->reason, fmt, ap);
	va_end(ap);
	o->res = r;
}

int dkv_judge_lookup(struct dkv_sig *o, const struct dkv_key *kr,
                     const char *qname)
{
	if (kr == NULL && qname[0] == '\0') {
		/* d= or s= missing, or no usable DNS name: no key can exist
		 * there, so the signature fails for good (6.1.1, 6.1.2) */
		dkv_set_res(o, AUTH_PERMERROR, "s= and d= do not make a usable key "
		            "name (RFC 6376 3.6.2.1)");
		return 0;
	}
	if (kr == NULL) {
		/* a usable name the key set holds no answer for (more
		 * signatures than are looked up) */
		dkv_set_res(o, AUTH_TEMPERROR, "key record %s was not looked up",
		            qname);
		return 0;
	}
	switch (kr->status) {
	case DNSQ_OK:
		return 1;
	case DNSQ_NXDOMAIN:
	case DNSQ_NODATA:
		dkv_set_res(o, AUTH_PERMERROR, "no key record at %s (%s, RFC 6376 6.1.2)",
		            qname, dnsq_status_name(kr->status));
		return 0;
	case DNSQ_BOGUS:
		dkv_set_res(o, AUTH_TEMPERROR, "key record at %s failed DNSSEC validation",
		            qname);
		return 0;
	case DNSQ_TEMPFAIL:
	case DNSQ_TIMEOUT:
		dkv_set_res(o, AUTH_TEMPERROR, "key lookup for %s: %s",
		            qname, dnsq_status_name(kr->status));
		return 0;
	}
	return 0;
}

void dkv_set_pass(struct dkv_sig *o)
{
	char extra[DKV_REASON_MAX];
	int n = snprintf(extra, sizeof extra, "signature verified");
	if (o->key_testing && n > 0 && (size_t)n < sizeof extra)
		n += snprintf(extra + n, sizeof extra - (size_t)n, "; testing key (t=y)");
	if (o->has_l && n > 0 && (size_t)n < sizeof extra)
		snprintf(extra + n, sizeof extra - (size_t)n,
		         "; l=%llu leaves %llu body bytes unsigned",
		         (unsigned long long)o->l, (unsigned long long)o->unsigned_len);
	dkv_set_res(o, AUTH_PASS, "%s", extra);
}

/* Does the raw field name a tag twice? libopendkim keeps one of the two
 * and goes on; both engines refuse the list (RFC 6376 3.2). */
static int field_dup_tag(const struct msg_field *f)
{
	if (f == NULL)
		return 0;
	char *v = malloc(f->value_len + 1);
	if (v == NULL)
		return 0;
	size_t vl = msg_unfold(f->value, f->value_len, v, f->value_len + 1);
	int dup = vl != (size_t)-1 && dkv_sig_has_dup_tag(v, vl);
	free(v);
	return dup;
}

static void judge(struct vctx *c, DKIM *dk, DKIM_SIGINFO *sig,
                  int dup_tag, struct dkv_sig *o, uint64_t now)
{
	const struct dkv_lib *l = c->l;
	unsigned int flags = dkim_sig_getflags(sig);
	int err = dkim_sig_geterror(sig);
	int bh = dkim_sig_getbh(sig);
	char qname[DKV_NAME_MAX];
	const struct dkv_key *key = NULL;
	if (sig_qname(sig, qname, sizeof qname) == 0)
		key = dkv_keyset_find(c->ks, qname);
	else
		qname[0] = '\0';
	int too_long = key && key->status == DNSQ_OK && c->buflen &&
	               strlen(key->txt) >= c->buflen;

	memset(o, 0, sizeof *o);
	o->lib_error = err;
	copy_tag(o->d, sizeof o->d, tagval(sig, false, "d"));
	copy_tag(o->s, sizeof o->s, tagval(sig, false, "s"));
	copy_tag(o->a, sizeof o->a, tagval(sig, false, "a"));
	copy_tag(o->i, sizeof o->i, tagval(sig, false, "i"));
	const char *b = tagval(sig, false, "b");
	if (b != NULL) {
		size_t n = 0;
		for (const char *p = b; *p && n < DKV_BPREFIX_LEN; p++)
			if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
				o->b_prefix[n++] = *p;
		o->b_prefix[n] = '\0';
		text_printable(o->b_prefix, sizeof o->b_prefix, o->b_prefix, n);
	}
	int tn = num_tag(tagval(sig, false, "t"), &o->t);
	int xn = num_tag(tagval(sig, false, "x"), &o->x);
	int ln = num_tag(tagval(sig, false, "l"), &o->l);
	o->has_t = tn == 1;
	o->has_x = xn == 1;
	o->has_l = ln == 1;
	o->from_signed = lists_from(tagval(sig, false, "h"));

	/* RFC 6376 3.5: l= counts octets of the canonicalized body */
	const char *cv = tagval(sig, false, "c");
	const char *slash = cv ? strchr(cv, '/') : NULL;
	int body_relaxed = slash && strncasecmp(slash + 1, "relaxed", 7) == 0;
	o->body_len = canon_body_len(c->body, c->body_len, body_relaxed);
	if (o->has_l && o->body_len > o->l)
		o->unsigned_len = o->body_len - o->l;

	/* the key */
	o->key_status = key ? key->status : DNSQ_TEMPFAIL;
	o->key_sec = key ? key->sec : DNSQ_SEC_INSECURE;
	o->key_found = key && key->status == DNSQ_OK && !too_long;
	const char *kt = tagval(sig, true, "k");
	dkim_alg_t alg = DKIM_SIGN_UNKNOWN;
	(void)dkim_sig_getsignalg(sig, &alg);
	if (kt != NULL && strcasecmp(kt, "ed25519") == 0)
		o->key_type = DKV_KEY_ED25519;
	else if (kt != NULL && strcasecmp(kt, "rsa") == 0)
		o->key_type = DKV_KEY_RSA;
	else if (kt == NULL && (flags & DKIM_SIGFLAG_KEYLOADED))
		o->key_type = DKV_KEY_RSA;       /* RFC 6376 3.6.1: k= defaults to rsa */
	else if (kt == NULL && alg == DKIM_SIGN_ED25519SHA256)
		o->key_type = DKV_KEY_ED25519;
	else if (kt == NULL && (alg == DKIM_SIGN_RSASHA1 || alg == DKIM_SIGN_RSASHA256))
		o->key_type = DKV_KEY_RSA;
	unsigned int bits = 0;
	if (dkim_sig_getkeysize(sig, &bits) == DKIM_STAT_OK)
		o->key_bits = bits;
	if (o->key_type == DKV_KEY_ED25519 && o->key_bits == 0 &&
	    o->key_found && !is_key_error(err))
		o->key_bits = 256;     /* RFC 8463: a 32-byte public key */
	o->key_testing = (flags & DKIM_SIGFLAG_TESTKEY) != 0;
	o->bh_ok = bh == DKIM_SIGBH_MATCH ? 1 : bh == DKIM_SIGBH_MISMATCH ? 0 : -1;
	o->sig_ok = (flags & DKIM_SIGFLAG_PROCESSED) == 0 ? -1
	          : (flags & DKIM_SIGFLAG_PASSED) ? 1 : 0;

	/* 1. The signature itself must be well formed (RFC 6376 6.1.1). */
	if (dup_tag) {
		dkv_set_res(o, AUTH_PERMERROR, "bad signature: %s", DKV_SIG_DUP_REASON);
		return;
	}
	if (tagval(sig, false, "h") != NULL && !o->from_signed) {
		dkv_set_res(o, AUTH_PERMERROR, "h= does not include From (RFC 6376 5.4)");
		return;
	}
	if (err != DKIM_SIGERROR_OK && err != DKIM_SIGERROR_BADSIG &&
	    !is_key_error(err) && err != DKIM_SIGERROR_EXPIRED &&
	    err != DKIM_SIGERROR_FUTURE) {
		dkv_set_res(o, AUTH_PERMERROR, "bad signature: %s",
		        dkim_sig_geterrorstr(err) ? dkim_sig_geterrorstr(err) : "unknown error");
		return;
	}
	if (tn < 0 || xn < 0 || ln < 0) {
		dkv_set_res(o, AUTH_PERMERROR, "bad signature: malformed t=, x= or l=");
		return;
	}
	if (!o->from_signed) {
		dkv_set_res(o, AUTH_PERMERROR, "h= does not include From (RFC 6376 5.4)");
		return;
	}
	/* RFC 6376 3.5 x=: an expired signature is ignored (PERMFAIL) */
	if ((o->has_x && o->x < now) || err == DKIM_SIGERROR_EXPIRED) {
		dkv_set_res(o, AUTH_PERMERROR, "signature expired (x=%llu)",
		        (unsigned long long)o->x);
		return;
	}
	if (o->has_x && o->has_t && o->x < o->t) {
		dkv_set_res(o, AUTH_PERMERROR, "x= earlier than t= (RFC 6376 3.5)");
		return;
	}
	/* RFC 6376 3.5 t=: verifiers may ignore signatures from the future;
	 * a little clock drift is tolerated */
	if ((o->has_t && o->t > now && o->t - now > l->drift) ||
	    err == DKIM_SIGERROR_FUTURE) {
		dkv_set_res(o, AUTH_PERMERROR, "signature timestamp in the future (t=%llu)",
		        (unsigned long long)o->t);
		return;
	}

	/* 2. The key lookup (RFC 6376 6.1.2). */
	if (!dkv_judge_lookup(o, key, qname))
		return;
	if (too_long) {
		dkv_set_res(o, AUTH_PERMERROR, "key record at %s is too long", qname);
		return;
	}
	if (err == DKIM_SIGERROR_KEYREVOKED) {
		dkv_set_res(o, AUTH_PERMERROR, "key revoked (empty p=, RFC 6376 3.6.1)");
		return;
	}
	/* RFC 6376 6.1.2 step 8: the key type (k=, default rsa) must suit
	 * a=; libopendkim 2.11 does not check this for ed25519-sha256 */
	char kk[16];
	key_k_tag(key->txt, kk, sizeof kk);
	int want_ed = alg == DKIM_SIGN_ED25519SHA256;
	int want_rsa = alg == DKIM_SIGN_RSASHA1 || alg == DKIM_SIGN_RSASHA256;
	if ((want_ed && strcmp(kk, "ed25519") != 0) ||
	    (want_rsa && strcmp(kk, "rsa") != 0)) {
		dkv_set_res(o, AUTH_PERMERROR, "key type k=%s does not suit a=%s "
		        "(RFC 6376 6.1.2)", kk, o->a);
		return;
	}

	/* 3. RFC 8301. Reported as "policy", not "fail": the signature is
	 * refused for what it is, not because it failed to verify (RFC 8601
	 * 2.7.1 policy: "some aspect of the signature ... was not acceptable"). */
	if (alg == DKIM_SIGN_RSASHA1) {
		if (o->key_bits != 0 && o->key_bits < l->min_bits)
			dkv_set_res(o, AUTH_POLICY, "rsa-sha1 is not accepted (RFC 8301 3.1); "
			        "RSA key of %u bits is under %u (3.2)", o->key_bits,
			        l->min_bits);
		else
			dkv_set_res(o, AUTH_POLICY, "rsa-sha1 is not accepted (RFC 8301 3.1)");
		return;
	}
	if (err == DKIM_SIGERROR_KEYTOOSMALL ||
	    (o->key_type == DKV_KEY_RSA && o->key_bits != 0 && o->key_bits < l->min_bits)) {
		dkv_set_res(o, AUTH_POLICY, "RSA key of %u bits is under %u (RFC 8301 3.2)",
		        o->key_bits, l->min_bits);
		return;
	}
	if (is_key_error(err)) {
		dkv_set_res(o, AUTH_PERMERROR, "unusable key: %s",
		        dkim_sig_geterrorstr(err) ? dkim_sig_geterrorstr(err) : "unknown error");
		return;
	}

	/* 4. The crypto. PASSED alone is not enough: libopendkim sets it
	 * when the header signature verifies even if the body hash differs. */
	if ((flags & DKIM_SIGFLAG_PROCESSED) == 0) {
		dkv_set_res(o, AUTH_TEMPERROR, "signature not processed");
		return;
	}
	if (DKIM_SIG_CHECK(sig)) {
		dkv_set_pass(o);
		return;
	}
	if (bh == DKIM_SIGBH_MISMATCH) {
		dkv_set_res(o, AUTH_FAIL, "body hash mismatch%s",
		        (flags & DKIM_SIGFLAG_PASSED) ? " (header signature verified)" : "");
		return;
	}
	dkv_set_res(o, AUTH_FAIL, "signature did not verify");
}

int dkv_rank(enum auth_res r)
{
	switch (r) {
	case AUTH_PASS:      return 7;
	case AUTH_FAIL:      return 6;
	case AUTH_TEMPERROR: return 5;
	case AUTH_POLICY:    return 4;
	case AUTH_PERMERROR: return 3;
	case AUTH_NEUTRAL:   return 2;
	case AUTH_SOFTFAIL:  return 1;
	case AUTH_NONE:      return 0;
	}
	return 0;
}

void dkv_trace_sig(struct trace *t, size_t idx, const struct dkv_sig *o)
{
	if (t == NULL || !t->enabled)
		return;
	char lbuf[64] = "";
	if (o->has_l)
		snprintf(lbuf, sizeof lbuf, "%llu/%llu", (unsigned long long)o->l,
		         (unsigned long long)o->body_len);
	trace_add(t, "dkim",
	          "signature %zu: d=%s s=%s a=%s b=%s key=%s/%u%s dnssec=%s "
	          "bh=%s sig=%s%s%s -> %s (%s)",
	          idx + 1, o->d, o->s, o->a, o->b_prefix,
	          dkv_keytype_name(o->key_type), o->key_bits,
	          o->key_testing ? " t=y" : "",
	          o->key_found ? dnsq_sec_name(o->key_sec) : "-",
	          o->bh_ok == 1 ? "match" : o->bh_ok == 0 ? "mismatch" : "untested",
	          o->sig_ok == 1 ? "ok" : o->sig_ok == 0 ? "bad" : "untested",
	          o->has_l ? " l=" : "", o->has_l ? lbuf : "",
	          auth_res_name(o->res), o->reason);
}

/* Every signature of m gets res r (the message cannot be handed to
 * libopendkim); d=, s=, a= come from dkv_list. */
int dkv_refuse_all(struct dkv_lib *l, const struct msg *m, struct dkv_result *res,
                   struct trace *t, const char *why)
{
	size_t max = l->max_sigs;
	struct dkv_sigref *refs = calloc(max ? max : 1, sizeof(*refs));
	if (!refs) {
		res->best = AUTH_TEMPERROR;
		return -ENOMEM;
	}
	size_t total = 0;
	size_t n = dkv_list(m, refs, max, &total);
	res->sigs = calloc(n ? n : 1, sizeof(*res->sigs));
	if (!res->sigs) {
		free(refs);
		res->best = AUTH_TEMPERROR;
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		struct dkv_sig *o = &res->sigs[i];
		memcpy(o->d, refs[i].d, sizeof(o->d));
		memcpy(o->s, refs[i].s, sizeof(o->s));
		memcpy(o->a, refs[i].a, sizeof(o->a));
		o->bh_ok = o->sig_ok = -1;
		dkv_set_res(o, AUTH_PERMERROR, "%s", why);
		dkv_trace_sig(t, i, o);
	}
	res->n = n;
	res->not_evaluated = total > n ? total - n : 0;
	res->best = n ? AUTH_PERMERROR : AUTH_NONE;
	free(refs);
	return 0;
}

static int ode_verify(struct dkv_lib *l, const char *msg, size_t len,
                      const struct dkv_keyset *ks, struct dkv_result *res,
                      struct trace *t);

int dkv_verify(struct dkv_lib *l, const char *msg, size_t len,
               const struct dkv_keyset *ks, struct dkv_result *res,
               struct trace *t)
{
	if (l->engine == DKV_ENGINE_NATIVE)
		return dkv_native_verify(l, msg, len, ks, res, t);
	return ode_verify(l, msg, len, ks, res, t);
}

static int ode_verify(struct dkv_lib *l, const char *msg, size_t len,
                      const struct dkv_keyset *ks, struct dkv_result *res,
                      struct trace *t)
{
	uint64_t t0 = trace_now_us();
	memset(res, 0, sizeof *res);
	res->best = AUTH_NONE;

	struct vctx c = { .l = l, .ks = ks, .buflen = 0 };

	/* libopendkim must see exactly the header fields the rest of alignd
	 * sees (msg_parse): same fields, same end of the header section, same
	 * signatures in the same order. So the header section is handed over
	 * rebuilt from msg_parse's fields with CRLF line ends; the body follows
	 * from where msg_parse put it. */
	struct msg m;
	if (msg_parse(msg, len, &m) != MSG_OK) {
		if (t)
			trace_add(t, "dkim", "header section not parsed: no signature evaluated");
		res->elapsed_us = trace_now_us() - t0;
		return 0;
	}
	if (msg_count(&m, "DKIM-Signature") == 0) {
		/* nothing to verify (libopendkim also asserts on an empty header) */
		msg_free(&m);
		if (t)
			trace_add(t, "dkim", "no DKIM signature");
		res->elapsed_us = trace_now_us() - t0;
		return 0;
	}
	if (memchr(msg, '\0', m.header_len) != NULL) {
		/* RFC 5322 forbids NUL; libopendkim reads past such a field */
		int rc0 = dkv_refuse_all(l, &m, res, t, "NUL byte in the header section");
		msg_free(&m);
		res->elapsed_us = trace_now_us() - t0;
		return rc0;
	}
	struct buf head;
	buf_init(&head, 0);
	buf_reserve(&head, m.header_len + m.header_len / 8 + 4);
	for (size_t i = 0; i < m.n_fields; i++) {
		const char *ln = m.fields[i].line;
		size_t ll = m.fields[i].line_len, from = 0;
		/* copied in runs; a bare LF inside a folded field becomes CRLF */
		const char *nl;
		while ((nl = memchr(ln + from, '\n', ll - from)) != NULL) {
			size_t k = (size_t)(nl - ln);
			if (k > from && ln[k - 1] == '\r') {
				buf_add(&head, ln + from, k + 1 - from);
			} else {
				buf_add(&head, ln + from, k - from);
				buf_add(&head, "\r\n", 2);
			}
			from = k + 1;
		}
		buf_add(&head, ln + from, ll - from);
		buf_add(&head, "\r\n", 2);
	}
	buf_add(&head, "\r\n", 2);
	c.body = m.body;
	c.body_len = m.body_len;
	/* signatures with a tag twice, by position (dkim_max_signatures <= 64) */
	uint64_t dups = 0;
	for (size_t k = 0; k < 64; k++) {
		const struct msg_field *f = msg_get(&m, "DKIM-Signature", k);
		if (f == NULL)
			break;
		if (field_dup_tag(f))
			dups |= (uint64_t)1 << k;
	}
	msg_free(&m);
	if (head.failed) {
		buf_free(&head);
		res->best = AUTH_TEMPERROR;
		return -ENOMEM;
	}

	DKIM_STAT st = DKIM_STAT_OK;
	DKIM *dk = dkim_verify(l->dl, (const unsigned char *)"alignd", NULL, &st);
	if (dk == NULL) {
		buf_free(&head);
		res->best = AUTH_TEMPERROR;
		return -ENOMEM;
	}
	dkim_set_user_context(dk, &c);

	/* dkim_chunk() does not write to the buffer; its prototype lacks const */
	st = dkim_chunk(dk, (u_char *)head.data, head.len);
	if (st == DKIM_STAT_OK && c.body_len > 0)
		st = dkim_chunk(dk, (u_char *)(uintptr_t)c.body, c.body_len);
	if (st == DKIM_STAT_OK)
		st = dkim_chunk(dk, NULL, 0);
	if (st == DKIM_STAT_OK)
		st = dkim_eom(dk, NULL);
	buf_free(&head);

	DKIM_SIGINFO **sigs = NULL;
	int nsigs = 0;
	int rc = 0;
	if (dkim_getsiglist(dk, &sigs, &nsigs) != DKIM_STAT_OK || sigs == NULL)
		nsigs = 0;
	if (nsigs == 0 && st != DKIM_STAT_OK && st != DKIM_STAT_NOSIG &&
	    st != DKIM_STAT_BADSIG && st != DKIM_STAT_SYNTAX) {
		/* libopendkim gave up before listing signatures */
		if (t)
			trace_add(t, "dkim", "libopendkim: %s", dkim_getresultstr(st));
		rc = st == DKIM_STAT_NORESOURCE ? -ENOMEM : -EIO;
		res->best = AUTH_TEMPERROR;
	}

	size_t n = (size_t)nsigs;
	if (n > l->max_sigs) {
		res->not_evaluated = n - l->max_sigs;
		n = l->max_sigs;
	}
	if (n > 0) {
		res->sigs = calloc(n, sizeof *res->sigs);
		if (res->sigs == NULL) {
			dkim_free(dk);
			res->best = AUTH_TEMPERROR;
			return -ENOMEM;
		}
	}
	uint64_t now = l->fixed_time ? l->fixed_time : (uint64_t)time(NULL);
	for (size_t k = 0; k < n; k++) {
		judge(&c, dk, sigs[k], k < 64 && (dups >> k & 1), &res->sigs[k], now);
		res->n++;
		if (dkv_rank(res->sigs[k].res) > dkv_rank(res->best))
			res->best = res->sigs[k].res;
		dkv_trace_sig(t, k, &res->sigs[k]);
	}
	if (res->not_evaluated && t)
		trace_add(t, "dkim", "%zu more signature(s) not evaluated (max %u)",
		          res->not_evaluated, l->max_sigs);
	if (nsigs == 0 && t && rc == 0)
		trace_add(t, "dkim", "no DKIM signature");
	dkim_free(dk);
	res->elapsed_us = trace_now_us() - t0;
	return rc;
}

void dkv_result_free(struct dkv_result *res)
{
	if (res == NULL)
		return;
	free(res->sigs);
	res->sigs = NULL;
	res->n = 0;
}
