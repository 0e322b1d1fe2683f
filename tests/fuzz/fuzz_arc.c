/* Fuzz target: ARC (checks/arc) on hostile messages: arc_list() over the
 * parsed header section, then arc_verify() with the key records the input
 * supplies, then the Authentication-Results text and the A-R parser over
 * the first hop's AAR. Input: key lines "<qname> <TXT>" (a TXT of
 * NXDOMAIN or SERVFAIL for those answers), a NUL, then the message.
 * Invariants: the listing names at most ARC_MAX_REFS fields with
 * printable, terminated strings and usable lower-case key names; a chain
 * that the listing already decided verifies to the same result; the chain
 * result is none, pass, fail or temperror with a printable reason; a pass
 * has its sets, an oldest-pass within them, and a sealing domain for
 * every set; the A-R text is terminated inside its buffer; AAR entries
 * are lower-case and bounded; verifying twice gives the same result. */
#include "tests/fuzz/fuzz.h"
#include "checks/arc/arc.h"
#include "checks/msg.h"

#include <ctype.h>
#include <errno.h>

static int printable(const char *s, size_t cap)
{
	size_t n = strnlen(s, cap);
	if (n == cap)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			return 0;
	return 1;
}

static int lower(const char *s)
{
	for (; *s; s++)
		if (isupper((unsigned char)*s))
			return 0;
	return 1;
}

static void load_keys(struct dkv_keyset *ks, char *keys)
{
	for (char *line = strtok(keys, "\n"); line; line = strtok(NULL, "\n")) {
		char *sp = strchr(line, ' ');
		if (!sp || sp == line)
			continue;
		*sp = '\0';
		const char *txt = sp + 1;
		enum dnsq_status st = strcmp(txt, "NXDOMAIN") == 0 ? DNSQ_NXDOMAIN
		                    : strcmp(txt, "SERVFAIL") == 0 ? DNSQ_TEMPFAIL : DNSQ_OK;
		if (!dkv_keyset_has(ks, line))
			(void)dkv_keyset_put_text(ks, line, st, DNSQ_SEC_INSECURE, txt);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f;
	fz_init(&f, data, size);
	char *keys = fz_str(&f, 8192);
	size_t n;
	const uint8_t *raw = fz_bytes(&f, f.len, &n);
	char *msg = fz_dup(raw, n);

	struct dkv_keyset *ks = dkv_keyset_new();
	FUZZ_ASSERT(ks != NULL);
	load_keys(ks, keys);

	struct msg m;
	struct arc_listing sum;
	int listed = 0;
	if (msg_parse(msg, n, &m) == MSG_OK) {
		struct arc_ref refs[ARC_MAX_REFS];
		size_t nr = arc_list(&m, refs, ARC_MAX_REFS, &sum);
		FUZZ_ASSERT(nr <= ARC_MAX_REFS);
		FUZZ_ASSERT(sum.n_sets <= ARC_MAX_SETS + 1);
		FUZZ_ASSERT(printable(sum.reason, sizeof sum.reason));
		for (size_t k = 0; k < nr; k++) {
			const struct arc_ref *r = &refs[k];
			FUZZ_ASSERT(r->instance <= ARC_MAX_SETS);
			FUZZ_ASSERT(printable(r->cv, sizeof r->cv) && printable(r->d, sizeof r->d));
			FUZZ_ASSERT(printable(r->s, sizeof r->s) && printable(r->a, sizeof r->a));
			FUZZ_ASSERT(printable(r->qname, sizeof r->qname) && lower(r->qname));
			if (r->qname[0])
				FUZZ_ASSERT(strstr(r->qname, "._domainkey.") != NULL);
		}
		listed = 1;
		msg_free(&m);
	}

	struct arc_opts o = { .fixed_time = 1767225600 };   /* 2026-01-01 */
	struct arc_result res, res2;
	int rc = arc_verify(&o, msg, n, ks, &res, NULL);
	FUZZ_ASSERT(rc == 0 || rc == -EINVAL || rc == -ENOMEM);
	FUZZ_ASSERT(res.chain == AUTH_NONE || res.chain == AUTH_PASS ||
	            res.chain == AUTH_FAIL || res.chain == AUTH_TEMPERROR);
	FUZZ_ASSERT(printable(res.reason, sizeof res.reason));
	FUZZ_ASSERT(res.n_sets <= ARC_MAX_SETS + 1);
	if (listed && rc == 0 && sum.decided)
		FUZZ_ASSERT(res.chain == sum.result);
	if (res.chain == AUTH_PASS) {
		FUZZ_ASSERT(res.sets != NULL && res.n_sets >= 1 && res.n_sets <= ARC_MAX_SETS);
		FUZZ_ASSERT(res.oldest_pass <= res.n_sets);
		for (unsigned k = 0; k < res.n_sets; k++) {
			FUZZ_ASSERT(res.sets[k].instance == k + 1);
			FUZZ_ASSERT(res.sets[k].as.d[0] != '\0');
			FUZZ_ASSERT(printable(res.sets[k].as.d, sizeof res.sets[k].as.d));
		}
	}
	if (res.aar1) {
		FUZZ_ASSERT(strlen(res.aar1) <= ARC_AAR_TEXT_MAX);
		FUZZ_ASSERT(printable(res.aar1, ARC_AAR_TEXT_MAX + 1));
		struct arc_aar_method mm[ARC_AAR_MAX];
		char authserv[DKV_NAME_MAX];
		size_t na = arc_ar_parse(res.aar1, strlen(res.aar1), authserv, sizeof authserv,
		                         mm, ARC_AAR_MAX);
		FUZZ_ASSERT(na <= ARC_AAR_MAX);
		for (size_t k = 0; k < na; k++) {
			FUZZ_ASSERT(printable(mm[k].method, sizeof mm[k].method) && lower(mm[k].method));
			FUZZ_ASSERT(printable(mm[k].result, sizeof mm[k].result) && lower(mm[k].result));
			FUZZ_ASSERT(printable(mm[k].props, sizeof mm[k].props));
		}
	}
	FUZZ_ASSERT(res.aar1_n <= ARC_AAR_MAX);
	char text[256];
	size_t tl = arc_ar_text(&res, text, sizeof text);
	FUZZ_ASSERT(tl < sizeof text && strlen(text) == tl);

	/* the key set is only read: the same verdict again */
	int rc2 = arc_verify(&o, msg, n, ks, &res2, NULL);
	FUZZ_ASSERT(rc2 == rc && res2.chain == res.chain && res2.n_sets == res.n_sets &&
	            res2.oldest_pass == res.oldest_pass);
	FUZZ_ASSERT(strcmp(res2.reason, res.reason) == 0);
	arc_result_free(&res2);
	arc_result_free(&res);
	dkv_keyset_free(&ks);
	free(msg);
	free(keys);
	return 0;
}
