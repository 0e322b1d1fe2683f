/* Symbols, score, action, SMTP reply and Authentication-Results from the
 * results of SPF, DKIM and DMARC. Pure; any thread. */
#include "checks/verdict/verdict.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define VERDICT_SYM_NAME(name, w) #name,
static const char *const sym_names[VSYM_COUNT] = { VERDICT_SYMBOLS(VERDICT_SYM_NAME) };
#undef VERDICT_SYM_NAME
#define VERDICT_SYM_W(name, w) w,
static const double sym_weights[VSYM_COUNT] = { VERDICT_SYMBOLS(VERDICT_SYM_W) };
#undef VERDICT_SYM_W

void verdict_opts_default(struct verdict_opts *o)
{
	memset(o, 0, sizeof(*o));
	for (int i = 0; i < VSYM_COUNT; i++)
		o->weights[i] = sym_weights[i];
	o->reject_score = 15.0;
	o->quarantine_score = 6.0;
	o->dmarc_temperror_tempfail = 1;
}

int verdict_set_weight(struct verdict_opts *o, const char *name, double w)
{
	for (int i = 0; i < VSYM_COUNT; i++)
		if (strcmp(sym_names[i], name) == 0) {
			o->weights[i] = w;
			return 0;
		}
	return -1;
}

const char *verdict_sym_name(enum verdict_sym s)
{
	return (unsigned)s < VSYM_COUNT ? sym_names[s] : "?";
}

const char *verdict_action_name(enum verdict_action a)
{
	switch (a) {
	case VERDICT_ACCEPT:     return "accept";
	case VERDICT_QUARANTINE: return "quarantine";
	case VERDICT_REJECT:     return "reject";
	case VERDICT_TEMPFAIL:   return "tempfail";
	}
	return "tempfail";
}

/* RFC 2045 token: printable ASCII except SPACE and tspecials. */
static int is_token(const char *s)
{
	if (!*s)
		return 0;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p <= 32 || *p >= 127 || strchr("()<>@,;:\\\"/[]?=", *p))
			return 0;
	return 1;
}

void verdict_ar_value(struct buf *b, const char *s)
{
	if (is_token(s)) {
		buf_adds(b, s);
		return;
	}
	buf_adds(b, "\"");
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			buf_add(b, "\\", 1);
		char c = (*p >= 32 && *p < 127) ? (char)*p : '?';
		buf_add(b, &c, 1);
	}
	buf_adds(b, "\"");
}

/* A domain-valued property: a domain name passes as it is (RFC 8601 2.3
 * allows dot-atoms), anything else is quoted. */
static void ar_domain(struct buf *b, const char *s)
{
	int ok = *s != '\0';
	for (const char *p = s; *p && ok; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_'))
			ok = 0;
	if (ok)
		buf_adds(b, s);
	else
		verdict_ar_value(b, s);
}

/* A comment's text: parentheses and backslashes would end or escape it. */
/* " (text)": an RFC 5322 comment. Parentheses inside become brackets
 * (nested text stays readable and no reader has to balance them), a
 * backslash and anything but printable ASCII become a space, and runs of
 * spaces are one. */
static void ar_comment(struct buf *b, const char *s)
{
	buf_adds(b, " (");
	int space = 1;          /* nothing written yet: no leading space */
	size_t mark = b->len;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		char c = *p == '(' ? '[' : *p == ')' ? ']'
		       : (*p > 32 && *p < 127 && *p != '\\') ? (char)*p : ' ';
		if (c == ' ') {
			if (space)
				continue;
			space = 1;
		} else {
			space = 0;
		}
		buf_add(b, &c, 1);
	}
	if (!b->failed && b->len > mark && b->data[b->len - 1] == ' ')
		b->len--;       /* no trailing space */
	buf_adds(b, ")");
}

static void add_sym(struct verdict *v, const struct verdict_opts *o,
                    enum verdict_sym s, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void add_sym(struct verdict *v, const struct verdict_opts *o,
                    enum verdict_sym s, const char *fmt, ...)
{
	if (v->n_syms >= VERDICT_MAX_SYMBOLS)
		return;
	char *d = v->details[v->n_syms];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(d, sizeof(v->details[0]), fmt, ap);
	va_end(ap);
	v->syms[v->n_syms] = (struct proto_symbol){ sym_names[s], o->weights[s], d };
	v->n_syms++;
	v->score += o->weights[s];
}

static const char *mail_from_domain(const char *mf)
{
	if (!mf)
		return NULL;
	const char *at = strrchr(mf, '@');
	return at ? at + 1 : mf;
}

static void spf_part(const struct verdict_in *in, const struct verdict_opts *o,
                     struct verdict *v)
{
	const struct spf_result *r = in->spf;
	if (!r) {
		add_sym(v, o, VSYM_SPF_NONE, "%s", in->why_spf ? in->why_spf : "not evaluated");
		buf_adds(&v->ar, "; spf=none");
		ar_comment(&v->ar, in->why_spf ? in->why_spf : "not evaluated");
	} else {
		static const enum verdict_sym map[] = {
			[AUTH_NONE] = VSYM_SPF_NONE, [AUTH_PASS] = VSYM_SPF_PASS,
			[AUTH_FAIL] = VSYM_SPF_FAIL, [AUTH_SOFTFAIL] = VSYM_SPF_SOFTFAIL,
			[AUTH_NEUTRAL] = VSYM_SPF_NEUTRAL, [AUTH_TEMPERROR] = VSYM_SPF_TEMPERROR,
			[AUTH_PERMERROR] = VSYM_SPF_PERMERROR, [AUTH_POLICY] = VSYM_SPF_PERMERROR,
		};
		if (r->problem[0] && r->result != AUTH_PASS)
			add_sym(v, o, map[r->result], "%s: %s", r->domain, r->problem);
		else
			add_sym(v, o, map[r->result], "%s", r->domain);
		buf_printf(&v->ar, "; spf=%s", auth_res_name(r->result));
		if (r->result == AUTH_PASS || r->result == AUTH_FAIL || r->result == AUTH_SOFTFAIL) {
			char c[300];
			snprintf(c, sizeof(c), "%s: %s",
			         r->result == AUTH_PASS ? "designates client" : "does not designate client",
			         r->mechanism);
			ar_comment(&v->ar, c);
		} else if (r->problem[0]) {
			ar_comment(&v->ar, r->problem);
		}
		/* with a null sender check_host ran on the HELO identity */
		const char *mf = mail_from_domain(in->mail_from);
		if (mf && *mf) {
			buf_adds(&v->ar, " smtp.mailfrom=");
			ar_domain(&v->ar, mf);
		} else if (r->domain[0]) {
			buf_adds(&v->ar, " smtp.mailfrom=postmaster@");
			ar_domain(&v->ar, r->domain);
		}
	}
	const struct spf_result *h = in->spf_helo;
	if (h) {
		enum verdict_sym s = h->result == AUTH_PASS ? VSYM_SPF_HELO_PASS
		                   : h->result == AUTH_FAIL ? VSYM_SPF_HELO_FAIL
		                   : h->result == AUTH_SOFTFAIL ? VSYM_SPF_HELO_SOFTFAIL
		                   : VSYM_SPF_HELO_OTHER;
		add_sym(v, o, s, "%s %s", h->domain, auth_res_name(h->result));
		buf_printf(&v->ar, "; spf=%s", auth_res_name(h->result));
		if (in->helo) {
			buf_adds(&v->ar, " smtp.helo=");
			ar_domain(&v->ar, in->helo);
		}
	}
}

static void dkim_part(const struct verdict_in *in, const struct verdict_opts *o,
                      struct verdict *v)
{
	const struct dkv_result *r = in->dkim;
	if (!r || r->n == 0) {
		if (in->dkim_timeout) {
			add_sym(v, o, VSYM_DKIM_TEMPERROR, "not finished before the deadline");
			buf_adds(&v->ar, "; dkim=temperror");
			ar_comment(&v->ar, "not finished before the deadline");
		} else {
			add_sym(v, o, VSYM_DKIM_NONE, "no signature");
			buf_adds(&v->ar, "; dkim=none");
		}
		return;
	}
	/* one symbol per outcome class, listing the domains */
	static const enum verdict_sym map[] = {
		[AUTH_NONE] = VSYM_DKIM_NONE, [AUTH_PASS] = VSYM_DKIM_PASS,
		[AUTH_FAIL] = VSYM_DKIM_FAIL, [AUTH_SOFTFAIL] = VSYM_DKIM_FAIL,
		[AUTH_NEUTRAL] = VSYM_DKIM_NEUTRAL, [AUTH_TEMPERROR] = VSYM_DKIM_TEMPERROR,
		[AUTH_PERMERROR] = VSYM_DKIM_PERMERROR, [AUTH_POLICY] = VSYM_DKIM_POLICY,
	};
	static const enum auth_res order[] = { AUTH_PASS, AUTH_FAIL, AUTH_POLICY,
		AUTH_TEMPERROR, AUTH_PERMERROR, AUTH_NEUTRAL, AUTH_NONE };
	for (size_t k = 0; k < sizeof(order) / sizeof(order[0]); k++) {
		char list[192] = "";
		size_t used = 0;
		int any = 0;
		for (size_t i = 0; i < r->n; i++) {
			if (r->sigs[i].res != order[k])
				continue;
			any = 1;
			int n = snprintf(list + used, sizeof(list) - used, "%s%s", used ? "," : "",
			                 r->sigs[i].d[0] ? r->sigs[i].d : "?");
			if (n > 0 && (size_t)n < sizeof(list) - used)
				used += (size_t)n;
		}
		if (any)
			add_sym(v, o, map[order[k]], "%s", list);
	}
	for (size_t i = 0; i < r->n; i++) {
		const struct dkv_sig *s = &r->sigs[i];
		buf_printf(&v->ar, "; dkim=%s", auth_res_name(s->res));
		if (s->res != AUTH_PASS && s->reason[0]) {
			buf_adds(&v->ar, " reason=");
			verdict_ar_value(&v->ar, s->reason);
		} else if (s->key_bits) {
			char c[64];
			snprintf(c, sizeof(c), "%u-bit %s key%s", s->key_bits,
			         dkv_keytype_name(s->key_type), s->key_testing ? ", testing" : "");
			ar_comment(&v->ar, c);
		}
		if (s->d[0]) {
			buf_adds(&v->ar, " header.d=");
			ar_domain(&v->ar, s->d);
		}
		if (s->i[0]) {
			buf_adds(&v->ar, " header.i=");
			verdict_ar_value(&v->ar, s->i);
		}
		if (s->s[0]) {
			buf_adds(&v->ar, " header.s=");
			verdict_ar_value(&v->ar, s->s);
		}
		if (s->a[0]) {
			buf_adds(&v->ar, " header.a=");
			verdict_ar_value(&v->ar, s->a);
		}
		if (s->b_prefix[0]) {
			char b8[DKV_BPREFIX_LEN + 1];
			snprintf(b8, sizeof(b8), "%.8s", s->b_prefix);
			buf_adds(&v->ar, " header.b=");
			verdict_ar_value(&v->ar, b8);
		}
	}
	if (r->not_evaluated) {
		char c[64];
		snprintf(c, sizeof(c), "%zu more signatures not evaluated", r->not_evaluated);
		add_sym(v, o, VSYM_DKIM_NONE, "%s", c);
	}
}

/* Returns the action DMARC forces, or -1 when it forces none. */
static int dmarc_part(const struct verdict_in *in, const struct verdict_opts *o,
                      struct verdict *v, struct trace *t)
{
	const struct dmarc_result *r = in->dmarc;
	if (!r) {
		add_sym(v, o, VSYM_DMARC_TEMPERROR, "not finished before the deadline");
		buf_adds(&v->ar, "; dmarc=temperror");
		ar_comment(&v->ar, "not finished before the deadline");
		if (o->dmarc_temperror_tempfail) {
			snprintf(v->smtp_reply, sizeof(v->smtp_reply),
			         "451 4.7.1 DMARC evaluation did not finish in time, try again later");
			return VERDICT_TEMPFAIL;
		}
		return -1;
	}
	const char *dom = r->domain[0] ? r->domain : "unknown";
	int forced = -1;
	if (r->author_status == DMARC_AUTHOR_MULTI_FIELD && r->res == DMARC_RES_PASS) {
		/* RFC 5322 3.6 allows one From field; RFC 7489 6.6.1: such messages
		 * are typically rejected. A pass on it is not trusted as one. */
		add_sym(v, o, VSYM_DMARC_BAD_FROM, "several From fields (%s)", dom);
		buf_adds(&v->ar, "; dmarc=permerror");
		ar_comment(&v->ar, "several From fields");
		buf_adds(&v->ar, " header.from=");
		ar_domain(&v->ar, r->domain);
		trace_add(t, "verdict", "several From fields: DMARC pass not trusted, quarantine");
		return VERDICT_QUARANTINE;
	}
	switch (r->res) {
	case DMARC_RES_NONE:
		add_sym(v, o, VSYM_DMARC_NONE, "%s", dom);
		buf_adds(&v->ar, "; dmarc=none");
		break;
	case DMARC_RES_PASS:
		add_sym(v, o, VSYM_DMARC_PASS, "%s %s", dom,
		        r->spf_aligned == 1 && r->dkim_aligned == 1 ? "spf+dkim aligned"
		        : r->dkim_aligned == 1 ? "dkim aligned" : "spf aligned");
		buf_printf(&v->ar, "; dmarc=pass (p=%s dis=none)", dmarc_policy_name(r->policy != DMARC_POLICY_UNSET ? r->policy : r->rec.p));
		break;
	case DMARC_RES_FAIL: {
		enum dmarc_disp disp = r->disp;
		const char *override = r->override != DMARC_OVR_NONE ? dmarc_override_name(r->override) : NULL;
		const struct policy_decision *pd = in->policy;
		if (pd && pd->override) {
			disp = pd->disp == POLICY_DISP_REJECT ? DMARC_DISP_REJECT
			     : pd->disp == POLICY_DISP_QUARANTINE ? DMARC_DISP_QUARANTINE : DMARC_DISP_NONE;
			override = pd->override;
			trace_add(t, "policy", "DMARC %s of %s lowered to %s: override=%s (%s)",
			          dmarc_disp_name(r->disp), dom, dmarc_disp_name(disp), override, pd->why);
		} else if (pd && pd->why[0]) {
			trace_add(t, "policy", "%s", pd->why);
		}
		v->override = override;
		if (disp == DMARC_DISP_REJECT) {
			add_sym(v, o, VSYM_DMARC_POLICY_REJECT, "%s", dom);
			snprintf(v->smtp_reply, sizeof(v->smtp_reply),
			         "550 5.7.1 Rejected: the DMARC policy of %s is reject and this message fails it", dom);
			forced = VERDICT_REJECT;
		} else if (disp == DMARC_DISP_QUARANTINE) {
			add_sym(v, o, VSYM_DMARC_POLICY_QUARANTINE, "%s%s%s", dom,
			        override ? " override=" : "", override ? override : "");
			forced = VERDICT_QUARANTINE;
		} else if (override) {
			add_sym(v, o, VSYM_DMARC_POLICY_NONE, "%s p=%s override=%s", dom,
			        dmarc_policy_name(r->policy), override);
		} else {
			add_sym(v, o, VSYM_DMARC_POLICY_NONE, "%s p=%s", dom, dmarc_policy_name(r->policy));
		}
		buf_printf(&v->ar, "; dmarc=fail (p=%s dis=%s%s%s)", dmarc_policy_name(r->policy),
		           disp == DMARC_DISP_REJECT ? "reject" : disp == DMARC_DISP_QUARANTINE ? "quarantine" : "none",
		           override ? " override=" : "", override ? override : "");
		break;
	}
	case DMARC_RES_TEMPERROR:
		add_sym(v, o, VSYM_DMARC_TEMPERROR, "%s: %s", dom, r->why ? r->why : "DNS error");
		buf_adds(&v->ar, "; dmarc=temperror");
		if (r->why)
			ar_comment(&v->ar, r->why);
		if (o->dmarc_temperror_tempfail) {
			snprintf(v->smtp_reply, sizeof(v->smtp_reply),
			         "451 4.7.1 Temporary DNS failure evaluating the DMARC policy of %s, try again later", dom);
			forced = VERDICT_TEMPFAIL;
		}
		break;
	case DMARC_RES_PERMERROR: {
		int bad_from = r->author_status != DMARC_AUTHOR_OK &&
		               r->author_status != DMARC_AUTHOR_MULTI_DOMAIN &&
		               r->author_status != DMARC_AUTHOR_MULTI_FIELD;
		add_sym(v, o, bad_from ? VSYM_DMARC_BAD_FROM : VSYM_DMARC_PERMERROR, "%s",
		        bad_from ? dmarc_author_status_name(r->author_status) : dom);
		buf_adds(&v->ar, "; dmarc=permerror");
		ar_comment(&v->ar, r->why ? r->why : dmarc_author_status_name(r->author_status));
		if (r->disp == DMARC_DISP_REJECT) {
			snprintf(v->smtp_reply, sizeof(v->smtp_reply),
			         "550 5.7.1 Rejected: the author (From:) of this message cannot be determined");
			forced = VERDICT_REJECT;
		} else if (r->disp == DMARC_DISP_QUARANTINE) {
			forced = VERDICT_QUARANTINE;
		}
		break;
	}
	}
	if (r->domain[0]) {
		buf_adds(&v->ar, " header.from=");
		ar_domain(&v->ar, r->domain);
	}
	if (v->override)
		add_sym(v, o, VSYM_DMARC_OVERRIDE, "%s", v->override);
	return forced;
}

void verdict_build(const struct verdict_in *in, const struct verdict_opts *o,
                   struct verdict *v, struct trace *t)
{
	memset(v, 0, sizeof(*v));
	buf_init(&v->ar, 16 * 1024);
	buf_adds(&v->ar, in->authserv_id ? in->authserv_id : "localhost");
	spf_part(in, o, v);
	dkim_part(in, o, v);
	if (in->arc != AUTH_NONE) {
		/* RFC 8617 registers none/pass/fail for arc=; a key that could not
		 * be fetched is reported as fail with the reason in the comment */
		enum auth_res r = in->arc == AUTH_PASS ? AUTH_PASS : AUTH_FAIL;
		enum verdict_sym sym = in->arc == AUTH_PASS ? VSYM_ARC_PASS
		                     : in->arc == AUTH_TEMPERROR ? VSYM_ARC_TEMPERROR : VSYM_ARC_FAIL;
		add_sym(v, o, sym, "%s", in->arc_comment ? in->arc_comment : "");
		buf_printf(&v->ar, "; arc=%s", auth_res_name(r));
		if (in->arc_comment)
			ar_comment(&v->ar, in->arc_comment);
		if (r == AUTH_PASS && in->arc_oldest_pass >= 0)
			buf_printf(&v->ar, " header.oldest-pass=%d", in->arc_oldest_pass);
	}
	int forced = dmarc_part(in, o, v, t);
	if (in->timed_out)
		add_sym(v, o, VSYM_SCAN_TIMEOUT, "checks unfinished at the scan deadline");
	if (in->header_error)
		add_sym(v, o, VSYM_HEADER_UNPARSED, "%s", in->header_error);

	if (in->out_of_memory) {
		/* a result computed without all of its inputs is no verdict:
		 * neither a spoof let through nor good mail refused for good */
		add_sym(v, o, VSYM_NO_MEMORY, "a check ran out of memory");
		v->action = VERDICT_TEMPFAIL;
		snprintf(v->smtp_reply, sizeof(v->smtp_reply),
		         "451 4.3.0 Temporary local problem (out of memory), try again later");
		trace_add(t, "verdict", "tempfail: a check ran out of memory");
	} else if (forced >= 0) {
		v->action = (enum verdict_action)forced;
		trace_add(t, "verdict", "action %s forced by DMARC", verdict_action_name(v->action));
	} else if (v->score >= o->reject_score) {
		v->action = VERDICT_REJECT;
		snprintf(v->smtp_reply, sizeof(v->smtp_reply),
		         "550 5.7.1 Rejected: message failed authentication checks (score %.2f)", v->score);
		trace_add(t, "verdict", "score %.2f >= reject_score %.2f", v->score, o->reject_score);
	} else if (v->score >= o->quarantine_score) {
		v->action = VERDICT_QUARANTINE;
		trace_add(t, "verdict", "score %.2f >= quarantine_score %.2f", v->score, o->quarantine_score);
	} else {
		v->action = VERDICT_ACCEPT;
		trace_add(t, "verdict", "score %.2f below quarantine_score %.2f: accept", v->score,
		          o->quarantine_score);
	}
	if (v->action == VERDICT_ACCEPT || v->action == VERDICT_QUARANTINE)
		v->smtp_reply[0] = '\0';

	const struct dmarc_result *d = in->dmarc;
	snprintf(v->summary, sizeof(v->summary), "spf=%s dkim=%s dmarc=%s from=%s",
	         in->spf ? auth_res_name(in->spf->result) : "none",
	         in->dkim && in->dkim->n ? auth_res_name(in->dkim->best) : "none",
	         d ? dmarc_res_name(d->res) : "temperror",
	         d && d->domain[0] ? d->domain : "-");
}

void verdict_free(struct verdict *v)
{
	buf_free(&v->ar);
}

void verdict_decide(const struct policy_conf *pc, const struct verdict_opts *o,
                    struct verdict_in *in, const struct policy_evidence *ev,
                    struct policy_decision *pd, struct verdict *v, struct trace *t)
{
	const struct dmarc_result *d = in->dmarc;
	in->policy = NULL;
	if (d && d->res == DMARC_RES_FAIL) {
		enum policy_disp disp = d->disp == DMARC_DISP_REJECT ? POLICY_DISP_REJECT
		                      : d->disp == DMARC_DISP_QUARANTINE ? POLICY_DISP_QUARANTINE
		                      : POLICY_DISP_NONE;
		policy_decide(pc, d->domain, disp, ev, pd);
		in->policy = pd;
	}
	verdict_build(in, o, v, t);
}
