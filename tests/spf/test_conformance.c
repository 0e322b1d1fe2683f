/* The RFC 7208 conformance suite through both SPF engines. Fails when the
 * native engine misses a case, or when either engine does not call `done`
 * exactly once (crashes and hangs fail by themselves); libspf2's RFC
 * differences are printed, not failed. SPF_TRACE=<case> prints a trace. */
#include "tests/spf/suite.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int case_ok(const struct suite_case *c, const struct spf_result *r)
{
	if (!result_in(c->results, r->result))
		return 0;
	/* Explanations compare without regard to case: the suite spells the
	 * %{i} nibbles of an IPv6 address in upper case where RFC 7208 7.4
	 * shows lower case; DNS names are case-insensitive (README). */
	if (c->explanation && r->result == AUTH_FAIL &&
	    strcasecmp(c->explanation, r->explanation) != 0)
		return 0;
	return 1;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s SUITE.lines\n", argv[0]);
		return 2;
	}
	struct suite s;
	if (suite_load(&s, argv[1]) < 0) {
		fprintf(stderr, "FATAL: cannot load the converted SPF suite %s\n", argv[1]);
		return 1;
	}
	const char *want_trace = getenv("SPF_TRACE");
	unsigned ok[2] = { 0, 0 }, broken = 0, ndiff = 0;
	for (size_t i = 0; i < s.n; i++) {
		const struct suite_case *c = &s.c[i];
		struct run_out out[2];
		for (int e = 0; e < 2; e++) {
			struct memdns *m = suite_zone(&s, c->scenario);
			struct spf_request rq;
			spf_request_mailfrom(&rq, c->host, c->mailfrom, c->helo);
			rq.default_explanation = "DEFAULT";
			rq.engine = e ? SPF_ENGINE_LIBSPF2 : SPF_ENGINE_NATIVE;
			struct trace t;
			int tr = want_trace && strcmp(want_trace, c->name) == 0;
			trace_init(&t, trace_now_us(), tr);
			if (run_check(m, &rq, &t, &out[e]) < 0) {
				printf("BROKEN %s engine %s: done ran %d times%s\n", c->name,
				       spf_engine_name(rq.engine), out[e].calls,
				       out[e].reentrant ? " (from inside spf_check_host)" : "");
				broken++;
			}
			if (tr)
				for (size_t k = 0; k < t.n; k++)
					printf("  [%s %6llu] %s\n", spf_engine_name(rq.engine),
					       (unsigned long long)t.lines[k].t_us, t.lines[k].text);
			trace_free(&t);
			memdns_free(&m);
			if (case_ok(c, &out[e].r))
				ok[e]++;
			else if (e == 0)
				printf("FAIL native %s [%s]: got %s (%s) expl \"%s\", want %s%s%s\n",
				       c->name, s.desc[c->scenario], auth_res_name(out[0].r.result),
				       out[0].r.problem, out[0].r.explanation, c->results,
				       c->explanation ? " expl " : "",
				       c->explanation ? c->explanation : "");
		}
		int d0 = case_ok(c, &out[0].r), d1 = case_ok(c, &out[1].r);
		if (d0 != d1 || out[0].r.result != out[1].r.result) {
			ndiff++;
			printf("DIFF %-32s want %-18s native %-9s libspf2 %-9s %s\n", c->name,
			       c->results, auth_res_name(out[0].r.result),
			       auth_res_name(out[1].r.result), out[1].r.problem);
		}
	}
	printf("RFC 7208 suite: native %u/%zu, libspf2 %u/%zu; %u cases differ\n",
	       ok[0], s.n, ok[1], s.n, ndiff);
	int fail = ok[0] != s.n || broken;
	suite_free(&s);
	return fail ? 1 : 0;
}
