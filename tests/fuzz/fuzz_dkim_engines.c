/* Fuzz target: the native DKIM engine against libopendkim, and the
 * streaming body canonicaliser against itself.
 * Input: a key record (TXT text), a NUL, then a message; the key record
 * answers every key name the signatures need, and the last input byte
 * picks the chunk size for the streaming check. Seeds are signed messages
 * of ../shared/conformance/dkim with their keys (mkseeds.py), so mutations
 * land in tags, canonicalisation and keys that really verify.
 * Invariants: both engines list the same signatures and agree on what a
 * verdict depends on for each (pass, temperror, or another failure),
 * except where they differ on purpose (checks/dkim/README.md): key records
 * that do not fit libopendkim's 1 KB key buffer, key records with a tag
 * twice, signature tag-lists with a syntax error (RFC 6376 3.2), a p=
 * outside base64. (A signature with a tag twice is refused by both before
 * libopendkim picks one of the two values.) Which
 * failure is named may differ (printed; fatal with ALIGND_FUZZ_EXACT=1);
 * tests/dkim/oracle.c requires the same result on real messages. Body hashes are the
 * same whether the body is fed whole or in chunks. */
#include "tests/fuzz/fuzz.h"
#include "checks/dkim/dkc.h"
#include "checks/dkim/dkk.h"
#include "checks/dkim/dkv.h"
#include "checks/msg.h"

static struct dkv_lib *native, *ode;

#define ODE_KEY_BUFFER 1024   /* libopendkim's BUFRSZ: longer records are "too long" */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	char err[128];
	/* a fixed clock: t= and x= judged alike on every run */
	struct dkv_opts on = { .engine = DKV_ENGINE_NATIVE, .fixed_time = 1700000000 };
	struct dkv_opts oo = { .engine = DKV_ENGINE_LIBOPENDKIM, .fixed_time = 1700000000 };
	native = dkv_lib_new(&on, err, sizeof err);
	ode = dkv_lib_new(&oo, err, sizeof err);
	FUZZ_ASSERT(native != NULL && ode != NULL);
	return 0;
}

/* Does the p= of a key record hold anything but base64 and FWS? RFC 6376
 * 3.6.1 makes such a record unusable; libopendkim skips those characters
 * and decodes the rest (a difference on purpose). */
/* RFC 5322 4.5.8 (obs-optional): a field name may be followed by WSP
 * before the colon. The native engine reads "DKIM-Signature :" as a
 * signature (msg_parse drops the WSP); libopendkim does not see it (a
 * difference on purpose). */
static int sig_name_wsp(const struct msg *m)
{
	for (size_t i = 0; i < m->n_fields; i++) {
		const struct msg_field *f = &m->fields[i];
		if (f->name_len == 14 && strncasecmp(f->name, "DKIM-Signature", 14) == 0 &&
		    f->line_len > 14 && (f->line[14] == ' ' || f->line[14] == '\t'))
			return 1;
	}
	return 0;
}

static int p_not_base64(const char *txt)
{
	for (const char *p = strstr(txt, "p="); p != NULL; p = strstr(p + 1, "p=")) {
		if (p != txt && p[-1] != ';' && p[-1] != ' ' && p[-1] != '\t')
			continue;
		for (const char *q = p + 2; *q && *q != ';'; q++)
			if (!((*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z') ||
			      (*q >= '0' && *q <= '9') || *q == '+' || *q == '/' ||
			      *q == '=' || *q == ' ' || *q == '\t' || *q == '\r' || *q == '\n'))
				return 1;
	}
	return 0;
}

static void streaming(const char *body, size_t len, size_t chunk)
{
	for (int relaxed = 0; relaxed < 2; relaxed++) {
		unsigned char whole[DKC_DIGEST_LEN];
		uint64_t wl = 0;
		FUZZ_ASSERT(dkc_body_hash(body, len, relaxed, -1, whole, &wl) == 0);
		struct dkc_body *b = dkc_body_new();
		FUZZ_ASSERT(b != NULL);
		int i = dkc_body_want(b, relaxed, -1);
		int il = dkc_body_want(b, relaxed, (int64_t)(len / 2));
		FUZZ_ASSERT(i >= 0 && il >= 0);
		for (size_t off = 0; off < len; off += chunk)
			FUZZ_ASSERT(dkc_body_feed(b, body + off,
			                          len - off < chunk ? len - off : chunk) == 0);
		FUZZ_ASSERT(dkc_body_end(b) == 0);
		FUZZ_ASSERT(memcmp(dkc_body_digest(b, i), whole, DKC_DIGEST_LEN) == 0);
		FUZZ_ASSERT(dkc_body_canon_len(b, relaxed) == wl);
		/* the l= hash is the hash of a prefix of the same canonical body */
		unsigned char pre[DKC_DIGEST_LEN];
		uint64_t pl = 0;
		FUZZ_ASSERT(dkc_body_hash(body, len, relaxed, (int64_t)(len / 2), pre, &pl) == 0);
		FUZZ_ASSERT(memcmp(dkc_body_digest(b, il), pre, DKC_DIGEST_LEN) == 0);
		dkc_body_free(&b);
	}
}

/* the classes of DKIM result a verdict tells apart */
static int verdict_class(enum auth_res r)
{
	return r == AUTH_PASS ? 0 : r == AUTH_TEMPERROR ? 1 : 2;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int exact = -1;
	if (exact < 0) {
		const char *e = getenv("ALIGND_FUZZ_EXACT");
		exact = e && *e == '1';
	}
	if (native == NULL)
		LLVMFuzzerInitialize(NULL, NULL);
	struct fz f;
	fz_init(&f, data, size);
	size_t chunk = fz_u8(&f) % 67 + 1;
	char *txt = fz_str(&f, 4096);
	size_t mlen = f.len;
	char *msg = fz_dup(f.p, mlen);

	struct msg m;
	if (msg_parse(msg, mlen, &m) == MSG_OK) {
		streaming(m.body, m.body_len, chunk);
		struct dkv_keyset *ks = dkv_keyset_new();
		FUZZ_ASSERT(ks != NULL);
		struct dkv_sigref refs[LIM_DKIM_MAX_SIGNATURES];
		size_t n = dkv_list(&m, refs, LIM_DKIM_MAX_SIGNATURES, NULL);
		for (size_t k = 0; k < n; k++)
			if (refs[k].qname[0])
				dkv_keyset_put_text(ks, refs[k].qname, DNSQ_OK,
				                    DNSQ_SEC_INSECURE, txt);
		struct dkv_result a, b;
		int ra = dkv_verify(native, msg, mlen, ks, &a, NULL);
		int rb = dkv_verify(ode, msg, mlen, ks, &b, NULL);
		struct dkk_key *key = dkk_parse(txt);
		FUZZ_ASSERT(key != NULL);
		int key_dup = key->err == DKK_E_DUP;
		dkk_unref(&key);
		if (ra == 0 && rb == 0 && strlen(txt) < ODE_KEY_BUFFER && !p_not_base64(txt) &&
		    !sig_name_wsp(&m) &&
		    !key_dup) {
			if (a.n != b.n)
				fprintf(stderr, "native saw %zu signatures, libopendkim %zu\n", a.n, b.n);
			FUZZ_ASSERT(a.n == b.n);
			FUZZ_ASSERT(a.not_evaluated == b.not_evaluated);
			for (size_t k = 0; k < a.n; k++) {
				/* 3.2 again: a tag-list with a syntax error is invalid as a
				 * whole; libopendkim uses the tags it read before the error */
				if (strstr(a.sigs[k].reason, "malformed tag-list") != NULL)
					continue;
				/* RFC 8032 5.1.6: an ed25519 b= that is not 64 octets is
				 * malformed (permerror); libopendkim lets OpenSSL fail it
				 * (fail) or, for some, calls it corrupt (permerror) */
				if (strstr(a.sigs[k].reason, "not an Ed25519 signature") != NULL &&
				    b.sigs[k].res != AUTH_PASS)
					continue;
				/* refused for two reasons at once (an algorithm we do not
				 * accept and a malformed b=): which one is named first
				 * differs; neither engine passes it */
				if ((a.sigs[k].res == AUTH_POLICY &&
				     (b.sigs[k].res == AUTH_PERMERROR || b.sigs[k].res == AUTH_FAIL)) ||
				    (b.sigs[k].res == AUTH_POLICY &&
				     (a.sigs[k].res == AUTH_PERMERROR || a.sigs[k].res == AUTH_FAIL)))
					continue;
				/* a b= that is not clean base64: libopendkim's lenient
				 * decoder sometimes calls it corrupt (permerror) and
				 * sometimes hands it on to fail; neither engine passes */
				if (strstr(a.sigs[k].reason, "b= is corrupt") != NULL &&
				    b.sigs[k].res != AUTH_PASS)
					continue;
				if (a.sigs[k].res != b.sigs[k].res)
					fprintf(stderr, "sig %zu: native %s (%s), libopendkim %s (%s)\n",
					        k + 1, auth_res_name(a.sigs[k].res), a.sigs[k].reason,
					        auth_res_name(b.sigs[k].res), b.sigs[k].reason);
				/* What a verdict depends on must agree: pass, temperror
				 * (a temporary verdict), or any other failure. Which
				 * failure is named (fail, permerror, policy, neutral)
				 * may differ on hostile input where the two judge in
				 * another order; on the conformance sets and the signed
				 * test messages tests/dkim/oracle.c requires the very
				 * same result. ALIGND_FUZZ_EXACT=1 makes any difference
				 * fatal, to hunt for them. */
				if (exact)
					FUZZ_ASSERT(a.sigs[k].res == b.sigs[k].res);
				FUZZ_ASSERT(verdict_class(a.sigs[k].res) == verdict_class(b.sigs[k].res));
			}
		}
		dkv_result_free(&a);
		dkv_result_free(&b);
		dkv_keyset_free(&ks);
	}
	msg_free(&m);
	free(msg);
	free(txt);
	return 0;
}
