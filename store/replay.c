/* Re-deciding a stored record (the what-if replay): the checks' results
 * as the evidence document kept them, run again through the decision the
 * daemon makes after its checks, under another configuration. No DNS and
 * no message bytes: discovery, alignment and the signatures' results are
 * facts of the past; what a configuration changes is how they are
 * weighed. Pure; any thread. */
#include "store/evidence.h"
#include "common/text.h"

#include <stdio.h>
#include <string.h>

/* Whether name is domain or one of its subdomains (ASCII, any case). */
static int under(const char *name, const char *domain)
{
	return text_domain_within(name, domain, strlen(domain));
}

int store_replay_decide(const struct store_replay *r, const struct store_replay_conf *c,
                        struct store_outcome *out)
{
	memset(out, 0, sizeof(*out));
	struct dmarc_result d = r->dmarc;
	if (c->as_domain && under(d.domain, c->as_domain)) {
		if (d.res == DMARC_RES_NONE || d.where == DMARC_AT_NONE) {
			/* no record was found, so alignment was never evaluated */
			out->unknown = 1;
		} else if (d.res == DMARC_RES_FAIL) {
			d.rec.p = d.rec.sp = d.rec.np = c->as_policy;
			d.policy = c->as_policy;
		}
	}
	struct dmarc_opts dopts = {
		.mode = r->dmarc_mode,
		.bad_author_disp = c->bad_author_disp,
		.bad_author_disp_set = 1,
	};
	dmarc_dispose(&d, &dopts);

	struct policy_evidence ev;
	policy_gather(c->policy, &r->facts, &ev);
	struct verdict_in in = {
		.spf = r->has_spf ? &r->spf : NULL,
		.why_spf = r->has_why_spf ? r->why_spf : NULL,
		.mail_from = r->facts.mail_from,
		.spf_helo = r->has_spf_helo ? &r->spf_helo : NULL,
		.helo = r->facts.helo,
		.dkim = r->has_dkim && r->dkim.n ? &r->dkim : NULL,
		.dkim_timeout = r->dkim_timeout,
		.dmarc = &d,
		.arc = r->facts.arc,
		.arc_oldest_pass = -1,
		.timed_out = r->timed_out,
		.header_error = r->has_header_error ? r->header_error : NULL,
		.out_of_memory = r->out_of_memory,
	};
	struct policy_decision pd;
	struct verdict v;
	verdict_decide(c->policy, c->vo, &in, &ev, &pd, &v, NULL);
	int failed = v.ar.failed;
	out->action = v.action;
	out->score = v.score;
	out->disp = d.disp;
	if (in.policy)
		out->disp = pd.disp == POLICY_DISP_REJECT ? DMARC_DISP_REJECT
		          : pd.disp == POLICY_DISP_QUARANTINE ? DMARC_DISP_QUARANTINE : DMARC_DISP_NONE;
	if (v.override)
		snprintf(out->override, sizeof(out->override), "%s", v.override);
	verdict_free(&v);
	return failed ? -1 : 0;
}

int store_replay_stored(const struct store_replay *r, enum verdict_action *action,
                        enum dmarc_disp *disp)
{
	static const char *const acts[] = { "accept", "quarantine", "reject", "tempfail" };
	static const char *const disps[] = { "none", "quarantine", "reject" };
	int a = -1, d = -1;
	for (int i = 0; i < 4; i++)
		if (strcmp(r->action, acts[i]) == 0)
			a = i;
	for (int i = 0; i < 3; i++)
		if (strcmp(r->disposition, disps[i]) == 0)
			d = i;
	if (a < 0 || d < 0)
		return -1;
	*action = (enum verdict_action)a;
	*disp = (enum dmarc_disp)d;
	return 0;
}
