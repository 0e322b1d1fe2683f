/* Fuzz target: the SPF record parser and the macro expander
 * (checks/spf/spf_int.h). The input is parsed as a record; every
 * domain-spec and exp= of a parsed record is expanded; the input is also
 * checked and expanded as a bare macro-string with each flag set, and
 * given to the address parser. Invariants: terms lie inside the record,
 * CIDR lengths in range, expansions terminated and within their caps. */
#include "tests/fuzz/fuzz.h"
#include "checks/spf/spf_int.h"
#include "common/limits.h"

static const struct spf_macro_ctx ctx4 = {
	.local = "strong-bad+x.y", .sender_dom = "email.example.com",
	.domain = "email.example.com", .helo = "mx.example.org",
	.ip_dots = "192.0.2.3", .ip_text = "192.0.2.3", .ip6 = 0,
	.ptr = "unknown", .receiver = "mx.test.example", .now = 1700000000,
};
static const struct spf_macro_ctx ctx6 = {
	.local = "a", .sender_dom = "x.example", .domain = "x.example",
	.helo = "h", .ip_dots = "2.0.0.1.0.d.b.8.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1",
	.ip_text = "2001:db8::1", .ip6 = 1, .ptr = "mail.x.example",
	.receiver = "r", .now = 0,
};

static void expand_spec(const char *s, size_t len, int flags)
{
	char out[LIM_SPF_MACRO_OUT + 1];
	const struct spf_macro_ctx *cs[] = { &ctx4, &ctx6 };
	for (size_t i = 0; i < 2; i++) {
		size_t ol = (size_t)-1;
		memset(out, 'Z', sizeof(out));
		if (spf_expand(cs[i], s, len, flags, out, sizeof(out), &ol) == 0) {
			FUZZ_ASSERT(ol < sizeof(out));
			FUZZ_ASSERT(out[ol] == '\0');
			FUZZ_ASSERT(strlen(out) == ol);
		}
		if (flags == 0) {
			char dom[LIM_DNS_MAX_NAME + 1];
			if (spf_expand_domain(cs[i], s, len, dom, sizeof(dom)) == 0) {
				size_t dl = strnlen(dom, sizeof(dom));
				FUZZ_ASSERT(dl < sizeof(dom));
				FUZZ_ASSERT(dl <= 253);
				(void)spf_name_ok(dom);
			}
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fz_dup(data, size);
	if (spf_is_record(s, size)) {
		struct spf_record rec;
		char err[256];
		memset(err, 'Q', sizeof(err));
		int rc = spf_parse(s, size, &rec, err, sizeof(err));
		if (rc == 0) {
			unsigned dns = 0;
			for (size_t i = 0; i < rec.n; i++) {
				const struct spf_mech *m = &rec.mech[i];
				FUZZ_ASSERT(m->text >= s && m->text + m->text_len <= s + size);
				FUZZ_ASSERT(m->kind <= SPF_M_EXISTS);
				FUZZ_ASSERT(strchr("+-~?", m->qual) && m->qual);
				FUZZ_ASSERT(m->cidr4 <= 32 && m->cidr6 <= 128);
				if (m->kind == SPF_M_INCLUDE || m->kind == SPF_M_A || m->kind == SPF_M_MX ||
				    m->kind == SPF_M_PTR || m->kind == SPF_M_EXISTS)
					dns++;
				if (m->spec) {
					FUZZ_ASSERT(m->spec >= s && m->spec + m->spec_len <= s + size);
					FUZZ_ASSERT(spf_domain_spec_check(m->spec, m->spec_len, NULL) == 0);
					expand_spec(m->spec, m->spec_len, 0);
				}
				if (m->kind == SPF_M_IP4 || m->kind == SPF_M_IP6) {
					unsigned char addr[16];
					memcpy(addr, m->net, 16);
					FUZZ_ASSERT(spf_cidr_match(addr, m->net,
					            m->kind == SPF_M_IP4 ? m->cidr4 : m->cidr6,
					            m->kind == SPF_M_IP6) == 1);
				}
			}
			FUZZ_ASSERT(dns == rec.dns_mechs);
			if (rec.has_redirect && rec.redirect.spec)
				expand_spec(rec.redirect.spec, rec.redirect.spec_len, 0);
			if (rec.exp) {
				FUZZ_ASSERT(rec.exp >= s && rec.exp + rec.exp_len <= s + size);
				expand_spec(rec.exp, rec.exp_len, 0);
			}
			spf_record_free(&rec);
		} else {
			FUZZ_ASSERT(rc == -1);
			FUZZ_ASSERT(memchr(err, 0, sizeof(err)) != NULL);
		}
	}
	if (size <= 2048) {
		static const int flagsets[] = { 0, SPF_MS_EXP, SPF_MS_UNKNOWN, SPF_MS_EXP | SPF_MS_UNKNOWN };
		for (size_t i = 0; i < 4; i++) {
			int up = -1;
			if (spf_macro_check(s, size, flagsets[i], &up) == 0) {
				FUZZ_ASSERT(up == 0 || up == 1);
				expand_spec(s, size, flagsets[i]);
			}
		}
		if (spf_domain_spec_check(s, size, NULL) == 0)
			expand_spec(s, size, 0);
		char *z = malloc(size + 1);
		if (!z)
			abort();
		memcpy(z, data, size);
		z[size] = '\0';
		unsigned char ip[16];
		int ip6 = -1;
		if (spf_parse_ip(z, ip, &ip6) == 0) {
			FUZZ_ASSERT(ip6 == 0 || ip6 == 1);
			char dots[128], rev[128];
			spf_ip_dots(ip, ip6, dots, sizeof(dots));
			spf_reverse_name(ip, ip6, rev, sizeof(rev));
			FUZZ_ASSERT(memchr(dots, 0, sizeof(dots)) && memchr(rev, 0, sizeof(rev)));
			FUZZ_ASSERT(spf_cidr_match(ip, ip, ip6 ? 128 : 32, ip6) == 1);
		}
		free(z);
	}
	free(s);
	return 0;
}
