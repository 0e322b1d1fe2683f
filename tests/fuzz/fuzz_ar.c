/* Fuzz target: the Authentication-Results writer (checks/verdict) with
 * hostile values. verdict_ar_value() output is parsed back (a token equal
 * to the input, or a quoted-string that decodes to it with non-printable
 * bytes as '?'); verdict_build() is run on results whose strings come from
 * the input, and the whole value must be printable ASCII on one line with
 * balanced quoted-strings and comments; the SMTP reply must be one line. */
#include "tests/fuzz/fuzz.h"
#include "checks/verdict/verdict.h"
#include "tests/fuzz/archeck.h"

static int tspecial(unsigned char c)
{
	return c <= ' ' || c >= 0x7f || strchr("()<>@,;:\\\"/[]?=", c) != NULL;
}

static void check_value(const char *s)
{
	struct buf b;
	buf_init(&b, 0);
	verdict_ar_value(&b, s);
	FUZZ_ASSERT(!b.failed);
	FUZZ_ASSERT(b.len > 0 || s[0] == '\0');
	FUZZ_ASSERT(strlen(b.data ? b.data : "") == b.len);
	for (size_t i = 0; i < b.len; i++)
		FUZZ_ASSERT((unsigned char)b.data[i] >= 0x20 && (unsigned char)b.data[i] < 0x7f);
	if (b.len && b.data[0] != '"') {
		/* a token: exactly the input, and really a token */
		FUZZ_ASSERT(strcmp(b.data, s) == 0);
		for (const char *p = s; *p; p++)
			FUZZ_ASSERT(!tspecial((unsigned char)*p));
	} else if (b.len) {
		FUZZ_ASSERT(b.len >= 2 && b.data[b.len - 1] == '"');
		size_t k = 0, i = 1;
		for (; i + 1 < b.len; i++) {
			char c = b.data[i];
			if (c == '\\') {
				i++;
				FUZZ_ASSERT(i + 1 < b.len);
				c = b.data[i];
				FUZZ_ASSERT(c == '"' || c == '\\');
			} else {
				FUZZ_ASSERT(c != '"');
			}
			unsigned char want = (unsigned char)s[k];
			FUZZ_ASSERT(want != 0);
			FUZZ_ASSERT(c == ((want >= 32 && want < 127) ? (char)want : '?'));
			k++;
		}
		FUZZ_ASSERT(i == b.len - 1);
		FUZZ_ASSERT(s[k] == '\0');
	}
	buf_free(&b);
}

static void fill(char *dst, size_t cap, const char *src, int printable)
{
	size_t n = strlen(src);
	if (n >= cap)
		n = cap - 1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)src[i];
		dst[i] = printable && (c < 0x20 || c >= 0x7f) ? '?' : (char)c;
	}
	dst[n] = '\0';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f;
	fz_init(&f, data, size);
	unsigned sel = fz_u16(&f);
	char *first = fz_str(&f, 4096);
	check_value(first);

	/* strings for every untrusted slot of a verdict */
	char *mail_from = fz_str(&f, 512), *helo = fz_str(&f, 512);
	char *spf_dom = fz_str(&f, 300), *spf_mech = fz_str(&f, 300), *spf_prob = fz_str(&f, 300);
	char *why_spf = fz_str(&f, 300), *from_dom = fz_str(&f, 300);

	struct spf_result spf, helo_spf;
	memset(&spf, 0, sizeof(spf));
	spf.result = (enum auth_res)(sel % 8);
	fill(spf.domain, sizeof(spf.domain), spf_dom, 0);
	fill(spf.mechanism, sizeof(spf.mechanism), spf_mech, 0);
	fill(spf.problem, sizeof(spf.problem), spf_prob, 0);
	helo_spf = spf;
	helo_spf.result = (enum auth_res)((sel >> 3) % 8);

	size_t nsig = (sel >> 6) % 4;
	struct dkv_sig sigs[3];
	memset(sigs, 0, sizeof(sigs));
	for (size_t i = 0; i < nsig; i++) {
		char *d = fz_str(&f, 300), *s = fz_str(&f, 300), *a = fz_str(&f, 40);
		char *id = fz_str(&f, 300), *reason = fz_str(&f, 200), *bp = fz_str(&f, 40);
		struct dkv_sig *g = &sigs[i];
		g->res = (enum auth_res)((sel + i * 3) % 8);
		/* dkv_verify makes these printable (dkv.h) */
		fill(g->d, sizeof(g->d), d, 1);
		fill(g->s, sizeof(g->s), s, 1);
		fill(g->a, sizeof(g->a), a, 1);
		fill(g->i, sizeof(g->i), id, 1);
		fill(g->reason, sizeof(g->reason), reason, 1);
		fill(g->b_prefix, sizeof(g->b_prefix), bp, 1);
		g->key_bits = (i & 1) ? 2048 : 0;
		g->key_type = DKV_KEY_RSA;
		free(d); free(s); free(a); free(id); free(reason); free(bp);
	}
	struct dkv_result dk = { .sigs = sigs, .n = nsig, .best = sigs[0].res,
	                         .not_evaluated = (sel >> 8) & 1 };

	struct dmarc_result dm;
	memset(&dm, 0, sizeof(dm));
	dm.res = (enum dmarc_res)((sel >> 9) % 5);
	dm.author_status = (enum dmarc_author_status)((sel >> 12) % 7);
	dm.policy = (enum dmarc_policy)((sel >> 4) % 5);
	dm.disp = (enum dmarc_disp)((sel >> 2) % 3);
	/* author domains come out of dmarc_domain_norm */
	if (dmarc_domain_norm(from_dom, strlen(from_dom), dm.domain) < 0)
		dm.domain[0] = '\0';
	dm.why = (sel & 0x8000) ? "hostile ( why \\" : NULL;

	struct verdict_in in = {
		.authserv_id = "mx.test.example",
		.spf = (sel & 0x4000) ? NULL : &spf,
		.why_spf = why_spf,
		.mail_from = (sel & 0x2000) ? NULL : mail_from,
		.spf_helo = (sel & 0x1000) ? &helo_spf : NULL,
		.helo = helo,
		.dkim = &dk,
		.dkim_timeout = (sel >> 1) & 1,
		.dmarc = (sel % 31 == 0) ? NULL : &dm,
	};
	struct verdict_opts o;
	verdict_opts_default(&o);
	struct verdict v;
	verdict_build(&in, &o, &v, NULL);
	FUZZ_ASSERT(!v.ar.failed);
	check_ar(v.ar.data, v.ar.len);
	one_line(v.smtp_reply, sizeof(v.smtp_reply));
	one_line(v.summary, sizeof(v.summary));
	FUZZ_ASSERT(v.n_syms <= VERDICT_MAX_SYMBOLS);
	for (size_t i = 0; i < v.n_syms; i++)
		FUZZ_ASSERT(v.syms[i].name && memchr(v.syms[i].detail, 0, 192));
	verdict_free(&v);

	free(first); free(mail_from); free(helo); free(spf_dom); free(spf_mech);
	free(spf_prob); free(why_spf); free(from_dom);
	return 0;
}
