/* Indirect-flow evidence and the override decision. Pure; any thread. */
#include "checks/policy/policy.h"
#include "checks/arc/arc.h"
#include "common/text.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static char *lower_dup(const char *s, size_t n)
{
	while (n > 0 && s[n - 1] == '.')
		n--;
	char *d = malloc(n + 1);
	if (!d)
		return NULL;
	for (size_t i = 0; i < n; i++)
		d[i] = (char)tolower((unsigned char)s[i]);
	d[n] = '\0';
	return d;
}

static int push_str(char ***arr, size_t *n, const char *s, size_t len)
{
	char **na = realloc(*arr, (*n + 1) * sizeof(*na));
	if (!na)
		return -1;
	*arr = na;
	if (!(na[*n] = lower_dup(s, len)))
		return -1;
	(*n)++;
	return 0;
}

/* Calls fn for each item of a space/comma-separated list. */
static int each_item(const char *list, int (*fn)(void *, const char *, size_t), void *arg)
{
	const char *p = list;
	while (*p) {
		while (*p == ' ' || *p == ',' || *p == '\t')
			p++;
		size_t n = strcspn(p, " ,\t");
		if (n && fn(arg, p, n) < 0)
			return -1;
		p += n;
	}
	return 0;
}

struct add_ctx {
	struct policy_conf *c;
	char *err;
	size_t errlen;
	int which;
};

static int valid_domain(const char *s, size_t n)
{
	if (n == 0 || n > 253)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '.' && s[i] != '_')
			return 0;
	return 1;
}

static int add_domain_item(void *arg, const char *s, size_t n)
{
	struct add_ctx *a = arg;
	if (!valid_domain(s, n)) {
		snprintf(a->err, a->errlen, "'%.*s' is not a domain name", (int)(n > 64 ? 64 : n), s);
		return -1;
	}
	if (a->which == 0)
		return push_str(&a->c->sealers, &a->c->n_sealers, s, n);
	return push_str(&a->c->lists, &a->c->n_lists, s, n);
}

int policy_add_sealers(struct policy_conf *c, const char *list, char *err, size_t errlen)
{
	struct add_ctx a = { c, err, errlen, 0 };
	return each_item(list, add_domain_item, &a);
}

int policy_add_lists(struct policy_conf *c, const char *list, char *err, size_t errlen)
{
	struct add_ctx a = { c, err, errlen, 1 };
	return each_item(list, add_domain_item, &a);
}

static int add_forwarder_item(void *arg, const char *s, size_t n)
{
	struct add_ctx *a = arg;
	struct policy_conf *c = a->c;
	if (n > 5 && strncasecmp(s, "helo:", 5) == 0) {
		if (!valid_domain(s + 5, n - 5))
			goto bad;
		return push_str(&c->helos, &c->n_helos, s + 5, n - 5);
	}
	if (n > 5 && strncasecmp(s, "from:", 5) == 0) {
		if (!valid_domain(s + 5, n - 5))
			goto bad;
		return push_str(&c->fwd_domains, &c->n_fwd_domains, s + 5, n - 5);
	}
	struct net_prefix net;
	if (net_prefix_parse(s, n, &net) < 0)
		goto bad;
	struct net_prefix *nn = realloc(c->nets, (c->n_nets + 1) * sizeof(*nn));
	if (!nn)
		return -1;
	c->nets = nn;
	c->nets[c->n_nets++] = net;
	return 0;
bad:
	snprintf(a->err, a->errlen, "forwarder '%.*s': want an address/prefix, helo:NAME or from:DOMAIN",
	         (int)(n > 64 ? 64 : n), s);
	return -1;
}

int policy_add_forwarders(struct policy_conf *c, const char *list, char *err, size_t errlen)
{
	struct add_ctx a = { c, err, errlen, 0 };
	return each_item(list, add_forwarder_item, &a);
}

int policy_load_exceptions(struct policy_conf *c, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	char line[512];
	unsigned no = 0;
	int rc = 0;
	while (fgets(line, sizeof(line), f)) {
		no++;
		char *hash = strchr(line, '#');
		if (hash)
			*hash = '\0';
		char kind[32], dom[300], extra[8];
		int k = sscanf(line, "%31s %299s %7s", kind, dom, extra);
		if (k <= 0)
			continue;
		enum policy_exception e;
		if (k == 2 && strcasecmp(kind, "enforce") == 0)
			e = POLICY_EXC_ENFORCE;
		else if (k == 2 && strcasecmp(kind, "never-reject") == 0)
			e = POLICY_EXC_NEVER_REJECT;
		else {
			snprintf(err, errlen, "%s:%u: want 'enforce DOMAIN' or 'never-reject DOMAIN'", path, no);
			rc = -1;
			break;
		}
		if (!valid_domain(dom, strlen(dom))) {
			snprintf(err, errlen, "%s:%u: '%s' is not a domain name", path, no, dom);
			rc = -1;
			break;
		}
		void *ne = realloc(c->exc, (c->n_exc + 1) * sizeof(*c->exc));
		if (!ne) {
			rc = -1;
			snprintf(err, errlen, "out of memory");
			break;
		}
		c->exc = ne;
		c->exc[c->n_exc].domain = lower_dup(dom, strlen(dom));
		c->exc[c->n_exc].kind = e;
		if (!c->exc[c->n_exc].domain) {
			rc = -1;
			break;
		}
		c->n_exc++;
	}
	fclose(f);
	return rc;
}

static void free_strs(char **a, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(a[i]);
	free(a);
}

void policy_conf_free(struct policy_conf *c)
{
	free_strs(c->sealers, c->n_sealers);
	free_strs(c->helos, c->n_helos);
	free_strs(c->fwd_domains, c->n_fwd_domains);
	free_strs(c->lists, c->n_lists);
	for (size_t i = 0; i < c->n_exc; i++)
		free(c->exc[i].domain);
	free(c->exc);
	free(c->nets);
	memset(c, 0, sizeof(*c));
}

/* d equals base or is a subdomain of it (case-insensitive). */
static int within(const char *d, const char *base)
{
	return text_domain_within(d, base, strlen(base));
}

static int in_list(char *const *list, size_t n, const char *d)
{
	for (size_t i = 0; i < n; i++)
		if (within(d, list[i]))
			return 1;
	return 0;
}

/* List-Id: "Name <label.domain>" (RFC 2919): the domain after the label. */
static int list_domain(const struct msg *m, char *out, size_t cap)
{
	char v[1024];
	const struct msg_field *f = msg_get(m, "List-Id", 0);
	if (f && msg_unfold(f->value, f->value_len, v, sizeof(v)) != (size_t)-1) {
		char *lt = strrchr(v, '<'), *gt = lt ? strchr(lt, '>') : NULL;
		char *id = lt && gt ? lt + 1 : v;
		if (gt)
			*gt = '\0';
		char *dot = strchr(id, '.');
		if (dot && valid_domain(dot + 1, strlen(dot + 1)) && strlen(dot + 1) < cap) {
			for (size_t i = 0; dot[1 + i]; i++)
				out[i] = (char)tolower((unsigned char)dot[1 + i]);
			out[strlen(dot + 1)] = '\0';
			return 1;
		}
	}
	f = msg_get(m, "List-Post", 0);
	if (f && msg_unfold(f->value, f->value_len, v, sizeof(v)) != (size_t)-1) {
		char *at = strchr(v, '@');
		if (at) {
			size_t n = strcspn(at + 1, ">?, \t");
			if (n && n < cap && valid_domain(at + 1, n)) {
				for (size_t i = 0; i < n; i++)
					out[i] = (char)tolower((unsigned char)at[1 + i]);
				out[n] = '\0';
				return 1;
			}
		}
	}
	return 0;
}

/* The value of property `name` ("header.from") in a resinfo's props,
 * outside comments and quoted strings; 0 when absent. */
static int prop_value(const char *props, const char *name, char *out, size_t cap)
{
	size_t nl = strlen(name);
	const char *p = props;
	int depth = 0;
	while (*p) {
		if (*p == '(') {
			depth++;
			p++;
		} else if (*p == ')') {
			if (depth > 0)
				depth--;
			p++;
		} else if (*p == '\\' && depth > 0 && p[1]) {
			p += 2;
		} else if (*p == '"') {
			for (p++; *p && *p != '"'; p++)
				if (*p == '\\' && p[1])
					p++;
			if (*p)
				p++;
		} else if (depth == 0 && (p == props || p[-1] == ' ' || p[-1] == '\t' || p[-1] == ')') &&
		           strncasecmp(p, name, nl) == 0 && p[nl] == '=') {
			const char *v = p + nl + 1;
			size_t n = strcspn(v, " \t(;\"");
			if (n == 0 || n >= cap)
				return 0;
			/* a domain, or nothing: what no domain can equal is no
			 * evidence (nor is a value cut short, which ends in "...") */
			for (size_t i = 0; i < n; i++)
				if ((!isalnum((unsigned char)v[i]) && v[i] != '.' && v[i] != '-' &&
				     v[i] != '_') || (v[i] == '.' && (i == 0 || v[i - 1] == '.')))
					return 0;
			for (size_t i = 0; i < n; i++)
				out[i] = (char)tolower((unsigned char)v[i]);
			out[n] = '\0';
			return 1;
		} else {
			p++;
		}
	}
	return 0;
}

/* Whether an Authentication-Results text holds a "dmarc=pass" result, and
 * for which header.from. Parsed as RFC 8601 has it (quoted strings and
 * comments are not split at ';'): a MAIL FROM such as
 * "x; dmarc=pass"@example.net inside smtp.mailfrom is not a result. */
static int aar_dmarc_pass(const char *aar, char *from, size_t cap)
{
	struct arc_aar_method m[ARC_AAR_MAX];
	size_t n = arc_ar_parse(aar, strlen(aar), NULL, 0, m, ARC_AAR_MAX);
	for (size_t k = 0; k < n; k++)
		if (strcmp(m[k].method, "dmarc") == 0 && strcmp(m[k].result, "pass") == 0 &&
		    prop_value(m[k].props, "header.from", from, cap))
			return 1;
	from[0] = '\0';
	return 0;
}

/* snprintf at d + at, never past cap; returns the new end (cap - 1 once
 * full: the text is cut, still terminated). */
static size_t appendf(char *d, size_t cap, size_t at, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static size_t appendf(char *d, size_t cap, size_t at, const char *fmt, ...)
{
	if (at + 1 >= cap)
		return at;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(d + at, cap - at, fmt, ap);
	va_end(ap);
	if (n < 0)
		return at;
	return (size_t)n >= cap - at ? cap - 1 : at + (size_t)n;
}

void policy_gather(const struct policy_conf *c, const struct policy_facts *f,
                   struct policy_evidence *ev)
{
	memset(ev, 0, sizeof(*ev));
	ev->arc = f->arc;
	if (f->arc == AUTH_PASS && f->n_sealers > 0) {
		const char *first = f->arc_sealers[0];
		int first_trusted = in_list(c->sealers, c->n_sealers, first);
		/* AMS i=1 .. oldest_pass-1 no longer validate: the content was
		 * changed by the hop that sealed oldest_pass (or before it). That
		 * is fine only when every sealer up to it is trusted too. */
		size_t upto = f->arc_oldest_pass > 1 ? f->arc_oldest_pass : 1;
		size_t changer = 0;      /* index of an untrusted changer, 0: none */
		int changers_trusted = upto <= f->n_sealers;
		for (size_t k = 1; k < upto && k < f->n_sealers; k++)
			if (!in_list(c->sealers, c->n_sealers, f->arc_sealers[k])) {
				changers_trusted = 0;
				if (!changer)
					changer = k;
			}
		ev->arc_trusted = first_trusted && changers_trusted;
		snprintf(ev->arc_sealer, sizeof(ev->arc_sealer), "%s",
		         first_trusted && changer ? f->arc_sealers[changer] : first);
		char *d = ev->arc_desc;
		size_t cap = sizeof(ev->arc_desc), at = 0;
		at = appendf(d, cap, at, "%s sealer %s at i=1",
		             first_trusted ? "trusted" : "untrusted", first);
		for (size_t k = 1; k < f->n_sealers; k++)
			at = appendf(d, cap, at, ", then %s %s at i=%zu",
			             in_list(c->sealers, c->n_sealers, f->arc_sealers[k])
			             ? "trusted" : "untrusted", f->arc_sealers[k], k + 1);
		if (first_trusted && !changers_trusted)
			at = appendf(d, cap, at, "; content changed after i=1 by %s (oldest-pass=%u)",
			             changer ? f->arc_sealers[changer] : "an unsealed hop",
			             f->arc_oldest_pass);
		ev->arc_aar1_dmarc_pass = ev->arc_trusted && f->aar1 &&
		                          aar_dmarc_pass(f->aar1, ev->arc_aar1_from,
		                                         sizeof ev->arc_aar1_from);
	}
	if (f->client_ip)
		for (size_t i = 0; i < c->n_nets && !ev->forwarder; i++)
			if (net_prefix_match_text(&c->nets[i], f->client_ip)) {
				ev->forwarder = 1;
				snprintf(ev->forwarder_why, sizeof(ev->forwarder_why),
				         "client %s is a trusted forwarder", f->client_ip);
			}
	if (f->helo && !ev->forwarder && f->spf_helo_pass)
		for (size_t i = 0; i < c->n_helos; i++)
			if (strcasecmp(f->helo, c->helos[i]) == 0) {
				ev->forwarder = 1;
				snprintf(ev->forwarder_why, sizeof(ev->forwarder_why),
				         "HELO %s (SPF pass) is a trusted forwarder", c->helos[i]);
				break;
			}
	const char *at = f->mail_from ? strrchr(f->mail_from, '@') : NULL;
	if (at && !ev->forwarder && f->spf_mfrom_pass &&
	    in_list(c->fwd_domains, c->n_fwd_domains, at + 1)) {
		ev->forwarder = 1;
		snprintf(ev->forwarder_why, sizeof(ev->forwarder_why),
		         "envelope sender domain %s (SPF pass) is a trusted forwarder", at + 1);
	}
	if (f->m && list_domain(f->m, ev->list_domain, sizeof(ev->list_domain))) {
		ev->list = 1;
		for (size_t i = 0; i < f->n_dkim_pass; i++)
			if (f->dkim_pass[i] && (within(ev->list_domain, f->dkim_pass[i]) ||
			                        within(f->dkim_pass[i], ev->list_domain)))
				ev->list_signed = 1;
		ev->list_trusted = in_list(c->lists, c->n_lists, ev->list_domain);
	}
}

enum policy_exception policy_exception_for(const struct policy_conf *c, const char *domain)
{
	/* the most specific entry wins */
	enum policy_exception best = POLICY_EXC_NONE;
	size_t best_len = 0;
	for (size_t i = 0; i < c->n_exc; i++)
		if (within(domain, c->exc[i].domain) && strlen(c->exc[i].domain) >= best_len) {
			best = c->exc[i].kind;
			best_len = strlen(c->exc[i].domain);
		}
	return best;
}

void policy_decide(const struct policy_conf *c, const char *domain,
                   enum policy_disp disp, const struct policy_evidence *ev,
                   struct policy_decision *out)
{
	memset(out, 0, sizeof(*out));
	out->disp = disp;
	if (disp != POLICY_DISP_REJECT)
		return;
	enum policy_exception exc = policy_exception_for(c, domain);
	if (exc == POLICY_EXC_ENFORCE) {
		snprintf(out->why, sizeof(out->why), "reject enforced for %s by local exception", domain);
		return;
	}
	if (c->mode == POLICY_STRICT) {
		snprintf(out->why, sizeof(out->why), "policy_mode strict: no override");
		return;
	}
	/* trusted evidence of an indirect flow: accepted in rfc9989 and
	 * quarantine-only modes, and for never-reject domains */
	if (ev->forwarder) {
		out->disp = POLICY_DISP_NONE;
		out->override = "trusted_forwarder";
		snprintf(out->why, sizeof(out->why), "%s", ev->forwarder_why);
		return;
	}
	/* the first hop's pass must be for this message's own author domain */
	if (ev->arc == AUTH_PASS && ev->arc_trusted && ev->arc_aar1_dmarc_pass &&
	    strcasecmp(ev->arc_aar1_from, domain) == 0) {
		out->disp = POLICY_DISP_NONE;
		out->override = "trusted_forwarder";
		snprintf(out->why, sizeof(out->why),
		         "arc=pass, trusted sealer %s saw dmarc=pass at the first hop", ev->arc_sealer);
		return;
	}
	if (ev->list && ev->list_signed && ev->list_trusted) {
		out->disp = POLICY_DISP_NONE;
		out->override = "mailing_list";
		snprintf(out->why, sizeof(out->why), "trusted mailing list %s, signed by its own domain",
		         ev->list_domain);
		return;
	}
	if (exc == POLICY_EXC_NEVER_REJECT) {
		out->disp = POLICY_DISP_QUARANTINE;
		out->override = "local_policy";
		snprintf(out->why, sizeof(out->why), "%s is listed never-reject", domain);
		return;
	}
	if (c->mode == POLICY_QUARANTINE_ONLY) {
		out->disp = POLICY_DISP_QUARANTINE;
		out->override = "local_policy";
		snprintf(out->why, sizeof(out->why), "policy_mode quarantine-only");
		return;
	}
	if (ev->arc == AUTH_PASS && ev->arc_trusted) {
		/* the trusted sealer itself saw the failure: nothing to forgive */
		snprintf(out->why, sizeof(out->why),
		         "trusted sealer %s did not see dmarc=pass at the first hop: no override",
		         ev->arc_sealer);
		return;
	}
	/* evidence that is there but not trusted: never accept, never reject.
	 * Bare list headers are not evidence: anyone can add a List-Id, while
	 * a list's own signature or an ARC seal costs the sender a domain. */
	if ((ev->arc == AUTH_PASS && c->untrusted_arc_lowers) || (ev->list && ev->list_signed)) {
		out->disp = POLICY_DISP_QUARANTINE;
		out->override = "forwarded";
		if (ev->arc == AUTH_PASS)
			snprintf(out->why, sizeof(out->why), "arc=pass from untrusted sealer %s",
			         ev->arc_sealer[0] ? ev->arc_sealer : "?");
		else
			snprintf(out->why, sizeof(out->why), "mailing list %s, signed by its domain, not a trusted list",
			         ev->list_domain);
		return;
	}
	if (ev->arc == AUTH_PASS)
		snprintf(out->why, sizeof(out->why),
		         "arc=pass from untrusted sealer %s: recorded, no override (untrusted_arc = ignore)",
		         ev->arc_sealer[0] ? ev->arc_sealer : "?");
	else if (ev->list)
		snprintf(out->why, sizeof(out->why),
		         "list headers of %s without the list's own signature: no evidence", ev->list_domain);
	else
		snprintf(out->why, sizeof(out->why), "direct failure: no evidence of an indirect flow");
}
