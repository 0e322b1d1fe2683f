/* alignd's own check_host() (RFC 7208 4-8), asynchronous over struct dnsq.
 * Loop thread only. When a record arrives, the lookups of its DNS-querying
 * terms start together (within the 10-term budget); evaluation then goes
 * left to right as answers land. One struct spf_eval owns every node, term
 * and lookup context of one evaluation and frees itself after `done`. */
#include "checks/spf/spf.h"
#include "checks/spf/spf_int.h"
#include "checks/spf/spf_engines.h"
#include "common/text.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NAMECAP (LIM_DNS_MAX_NAME + 1)
#define LOCAL_MAX 256u

enum tstate { TS_IDLE = 0, TS_WAIT_P, TS_PENDING, TS_READY };

struct node;

struct term {
	const struct spf_mech *m;
	struct node *node;
	enum tstate st;
	int counted;
	unsigned lb;                 /* lower bound of its place in evaluation order */
	char target[NAMECAP];
	int bad_target;              /* expanded name unusable as a query name */
	enum dnsq_status dst;        /* primary answer */
	int matched;
	unsigned nmx, mx_pending;
	int mx_over;
	struct { enum dnsq_status st; int matched; } mx[LIM_SPF_MX_NAMES];
	struct node *child;          /* include, redirect */
};

struct node {
	struct node *parent, *next_alloc;
	unsigned lb;
	char domain[NAMECAP];
	int fetched, early, done;
	enum auth_res early_res, res;
	char why[160];
	char *text;
	struct spf_record rec;
	struct term *terms;
	struct term redir;
	size_t cur;
	struct node *exp_node;       /* node whose exp= explains this result */
	char match[SPF_MECH_MAX];
};

enum { LK_RECORD, LK_TERM, LK_MXADDR, LK_PTR, LK_PTRADDR, LK_EXP, LK_DEFER };

struct spf_eval;

struct lk {
	struct spf_eval *ev;
	int kind;
	struct node *node;
	struct term *term;
	unsigned idx;
};

struct spf_eval {
	struct dnsq *dq;
	struct trace *t;
	spf_done_cb done;
	void *arg;
	unsigned char ip[16];
	int ip6;
	char ip_text[64], ip_dots[80];
	char local[LOCAL_MAX + 1], sender_dom[NAMECAP], helo[NAMECAP];
	char receiver[NAMECAP], domain[NAMECAP];
	char *default_exp;
	uint64_t deadline, now_s;
	unsigned pending, lookups, max_parallel;
	unsigned dns_terms, voids, spec_terms;
	int finished;
	struct node *root, *cur, *nodes;
	/* validated names of the client (ptr mechanism, %{p}), shared */
	int ptr_state;               /* 0 idle, 1 running, 2 done */
	enum dnsq_status ptr_st;
	unsigned ptr_n, ptr_pending;
	char ptr_names[LIM_SPF_PTR_NAMES][NAMECAP];
	int ptr_valid[LIM_SPF_PTR_NAMES];
	/* explanation */
	int exp_wait_p;              /* 1: domain-spec waits, 2: text waits */
	struct node *exp_node;
	char *exp_text;
	size_t exp_len;
	struct spf_result res;
};

static void run(struct spf_eval *ev);
static void issue_term(struct spf_eval *ev, struct term *t);
static void exp_start(struct spf_eval *ev);
static void exp_text_ready(struct spf_eval *ev);
static void deliver(struct spf_eval *ev);

/* snprintf that may cut: every text here is bounded on purpose. */
static void sfmt(char *dst, size_t cap, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void sfmt(char *dst, size_t cap, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(dst, cap, fmt, ap);
	va_end(ap);
}

static int is_temp(enum dnsq_status s)
{
	return s == DNSQ_TEMPFAIL || s == DNSQ_TIMEOUT || s == DNSQ_BOGUS;
}

static int is_void(enum dnsq_status s)
{
	return s == DNSQ_NODATA || s == DNSQ_NXDOMAIN;
}

static int is_dns_mech(const struct spf_mech *m)
{
	return m->kind == SPF_M_INCLUDE || m->kind == SPF_M_A || m->kind == SPF_M_MX ||
	       m->kind == SPF_M_PTR || m->kind == SPF_M_EXISTS || m->kind == SPF_M_REDIRECT;
}

static int past_deadline(const struct spf_eval *ev)
{
	return ev->deadline && trace_now_us() >= ev->deadline;
}

static void pterm(char *out, size_t cap, const struct spf_mech *m)
{
	text_printable(out, cap, m->text, m->text_len);
}

static void eval_free(struct spf_eval *ev)
{
	struct node *n = ev->nodes;
	while (n) {
		struct node *next = n->next_alloc;
		spf_record_free(&n->rec);
		free(n->terms);
		free(n->text);
		free(n);
		n = next;
	}
	free(ev->default_exp);
	free(ev->exp_text);
	free(ev);
}

static void dns_cb(void *arg, const struct dnsq_answer *ans);

/* Starts one lookup; -1 when none may start (deadline, memory): the caller
 * then treats it as a timeout / temporary failure. */
static int lookup(struct spf_eval *ev, const char *name, uint16_t type, int kind,
                  struct node *n, struct term *t, unsigned idx)
{
	if (kind != LK_DEFER && past_deadline(ev))
		return -1;
	struct lk *l = malloc(sizeof(*l));
	if (!l)
		return -1;
	*l = (struct lk){ ev, kind, n, t, idx };
	ev->pending++;
	ev->lookups++;
	if (ev->pending > ev->max_parallel)
		ev->max_parallel = ev->pending;
	dnsq_lookup(ev->dq, name, type, dns_cb, l);
	return 0;
}

static void macro_ctx(const struct spf_eval *ev, const char *domain,
                      struct spf_macro_ctx *c);

/* ---- nodes: one per check_host() (top, include, redirect) ---- */

static struct node *node_new(struct spf_eval *ev, struct node *parent,
                             const char *domain, unsigned lb)
{
	struct node *n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->parent = parent;
	n->lb = lb;
	sfmt(n->domain, sizeof(n->domain), "%s", domain);
	n->next_alloc = ev->nodes;
	ev->nodes = n;
	return n;
}

static void node_early(struct node *n, enum auth_res r, const char *why)
{
	n->fetched = 1;
	n->early = 1;
	n->early_res = r;
	sfmt(n->why, sizeof(n->why), "%s", why);
}

static void node_fetch(struct spf_eval *ev, struct node *n)
{
	if (lookup(ev, n->domain, DNSQ_T_TXT, LK_RECORD, n, NULL, 0) < 0)
		node_early(n, AUTH_TEMPERROR, "deadline passed before the record lookup");
}

/* Starts the lookups of a fresh record's DNS-querying terms together,
 * as far as the evaluation-wide budget of LIM_SPF_DNS_TERMS allows: a term
 * that cannot be among the first 10 in evaluation order is never issued. */
static void prefetch(struct spf_eval *ev, struct node *n)
{
	unsigned k = 0, before = ev->pending;
	for (size_t i = 0; i <= n->rec.n; i++) {
		struct term *t;
		if (i < n->rec.n) {
			t = &n->terms[i];
			if (!is_dns_mech(t->m))
				continue;
		} else {
			if (!n->rec.has_redirect || n->rec.has_all)
				break;   /* RFC 7208 6.1: redirect is ignored when "all" exists */
			t = &n->redir;
		}
		t->lb = n->lb + 1 + k++;
		if (t->lb > LIM_SPF_DNS_TERMS || ev->spec_terms >= LIM_SPF_DNS_TERMS)
			break;
		ev->spec_terms++;
		issue_term(ev, t);
	}
	if (ev->pending - before > 1 || ev->pending > 1)
		trace_add(ev->t, "spf", "%s: %u lookups in flight together",
		          n->domain, ev->pending);
}

static void record_answer(struct spf_eval *ev, struct node *n,
                          const struct dnsq_answer *a)
{
	n->fetched = 1;
	if (is_temp(a->status)) {
		char why[160];
		sfmt(why, sizeof(why), "TXT %s: %s", n->domain, dnsq_status_name(a->status));
		node_early(n, AUTH_TEMPERROR, why);
		return;
	}
	if (a->status != DNSQ_OK) {
		node_early(n, AUTH_NONE, a->status == DNSQ_NXDOMAIN ?
		           "no such domain" : "no TXT records");
		return;
	}
	char *buf = malloc(LIM_DNS_MAX_ANSWER + 1);
	if (!buf) {
		node_early(n, AUTH_TEMPERROR, "out of memory");
		return;
	}
	size_t found = 0, len = 0, l;
	for (size_t i = 0; i < a->count; i++) {
		if (dnsq_txt(a, i, buf, LIM_DNS_MAX_ANSWER + 1, &l) < 0)
			continue;
		if (!spf_is_record(buf, l))
			continue;   /* RFC 7208 4.5: other TXT records are discarded */
		if (++found > 1)
			break;
		free(n->text);
		n->text = malloc(l + 1);
		if (!n->text) {
			free(buf);
			node_early(n, AUTH_TEMPERROR, "out of memory");
			return;
		}
		memcpy(n->text, buf, l + 1);
		len = l;
	}
	free(buf);
	if (found == 0) {
		node_early(n, AUTH_NONE, "no SPF record");
		return;
	}
	if (found > 1) {
		node_early(n, AUTH_PERMERROR, "more than one SPF record");   /* RFC 7208 4.5 */
		return;
	}
	char shown[200];
	text_printable(shown, sizeof(shown), n->text, len);
	trace_add(ev->t, "spf", "%s: record \"%s\"", n->domain, shown);
	char err[200];
	if (spf_parse(n->text, len, &n->rec, err, sizeof(err)) < 0) {
		node_early(n, AUTH_PERMERROR, err);
		return;
	}
	n->terms = calloc(n->rec.n ? n->rec.n : 1, sizeof(*n->terms));
	if (!n->terms) {
		node_early(n, AUTH_TEMPERROR, "out of memory");
		return;
	}
	for (size_t i = 0; i < n->rec.n; i++) {
		n->terms[i].m = &n->rec.mech[i];
		n->terms[i].node = n;
	}
	n->redir.m = &n->rec.redirect;
	n->redir.node = n;
	prefetch(ev, n);
}

/* ---- validated names of the client: PTR then A/AAAA (RFC 7208 5.5) ---- */

static void ptr_done(struct spf_eval *ev)
{
	ev->ptr_state = 2;
	unsigned nv = 0;
	for (unsigned i = 0; i < ev->ptr_n; i++)
		nv += (unsigned)ev->ptr_valid[i];
	trace_add(ev->t, "spf", "client %s: %u PTR names, %u validated", ev->ip_text,
	          ev->ptr_n, nv);
	for (struct node *n = ev->nodes; n; n = n->next_alloc) {
		for (size_t i = 0; i < n->rec.n; i++)
			if (n->terms && n->terms[i].st == TS_WAIT_P)
				issue_term(ev, &n->terms[i]);
		if (n->redir.st == TS_WAIT_P)
			issue_term(ev, &n->redir);
	}
	if (ev->exp_wait_p == 1) {
		ev->exp_wait_p = 0;
		exp_start(ev);
	} else if (ev->exp_wait_p == 2) {
		ev->exp_wait_p = 0;
		exp_text_ready(ev);
	}
}

static void ptr_start(struct spf_eval *ev)
{
	if (ev->ptr_state != 0)
		return;
	ev->ptr_state = 1;
	char rev[80];
	spf_reverse_name(ev->ip, ev->ip6, rev, sizeof(rev));
	if (lookup(ev, rev, DNSQ_T_PTR, LK_PTR, NULL, NULL, 0) < 0) {
		ev->ptr_st = DNSQ_TIMEOUT;
		ptr_done(ev);
	}
}

static void ptr_answer(struct spf_eval *ev, const struct dnsq_answer *a)
{
	ev->ptr_st = a->status;
	if (a->status == DNSQ_OK) {
		/* RFC 7208 4.6.4: at most 10 PTR names looked up and checked */
		for (size_t i = 0; i < a->count && ev->ptr_n < LIM_SPF_PTR_NAMES; i++) {
			char *name = ev->ptr_names[ev->ptr_n];
			if (dnsq_target(a, i, name, NAMECAP) < 0 || !spf_name_ok(name))
				continue;
			unsigned idx = ev->ptr_n++;
			if (lookup(ev, name, ev->ip6 ? DNSQ_T_AAAA : DNSQ_T_A, LK_PTRADDR,
			           NULL, NULL, idx) == 0)
				ev->ptr_pending++;
		}
	}
	if (ev->ptr_pending == 0)
		ptr_done(ev);
}

static int addr_in(const struct dnsq_answer *a, const unsigned char *net,
                   unsigned bits, int ip6)
{
	if (a->status != DNSQ_OK)
		return 0;
	for (size_t i = 0; i < a->count; i++) {
		if (a->rdlen[i] != (ip6 ? 16u : 4u))
			continue;
		if (spf_cidr_match(a->rdata[i], net, bits, ip6))
			return 1;
	}
	return 0;
}

static void ptraddr_answer(struct spf_eval *ev, unsigned idx,
                           const struct dnsq_answer *a)
{
	/* RFC 7208 5.5: an error on one name skips that name */
	if (addr_in(a, ev->ip, ev->ip6 ? 128 : 32, ev->ip6))
		ev->ptr_valid[idx] = 1;
	if (--ev->ptr_pending == 0)
		ptr_done(ev);
}

static int name_within(const char *name, const char *dom)
{
	size_t n = strlen(name), d = strlen(dom);
	if (d > 0 && dom[d - 1] == '.')
		d--;
	if (n > 0 && name[n - 1] == '.')
		n--;
	if (n < d)
		return 0;
	for (size_t i = 0; i < d; i++) {
		char a = name[n - d + i], b = dom[i];
		if (a >= 'A' && a <= 'Z') a += 32;
		if (b >= 'A' && b <= 'Z') b += 32;
		if (a != b)
			return 0;
	}
	return n == d || name[n - d - 1] == '.';
}

/* %{p}: a validated name within <domain> if any, else the first validated
 * name, else "unknown" (RFC 7208 7.3). */
static const char *ptr_choice(const struct spf_eval *ev, const char *domain)
{
	for (unsigned i = 0; i < ev->ptr_n; i++)
		if (ev->ptr_valid[i] && name_within(ev->ptr_names[i], domain))
			return ev->ptr_names[i];
	for (unsigned i = 0; i < ev->ptr_n; i++)
		if (ev->ptr_valid[i])
			return ev->ptr_names[i];
	return "unknown";
}

static void macro_ctx(const struct spf_eval *ev, const char *domain,
                      struct spf_macro_ctx *c)
{
	memset(c, 0, sizeof(*c));
	c->local = ev->local;
	c->sender_dom = ev->sender_dom;
	c->domain = domain;
	c->helo = ev->helo;
	c->ip_dots = ev->ip_dots;
	c->ip_text = ev->ip_text;
	c->ip6 = ev->ip6;
	c->ptr = ev->ptr_state == 2 ? ptr_choice(ev, domain) : "unknown";
	c->receiver = ev->receiver;
	c->now = ev->now_s;
}

/* ---- terms ---- */

static void issue_term(struct spf_eval *ev, struct term *t)
{
	const struct spf_mech *m = t->m;
	struct node *n = t->node;
	if (t->st != TS_IDLE && t->st != TS_WAIT_P)
		return;
	if (m->uses_p && ev->ptr_state != 2) {
		t->st = TS_WAIT_P;
		ptr_start(ev);
		return;
	}
	t->st = TS_PENDING;
	if (m->spec) {
		struct spf_macro_ctx c;
		macro_ctx(ev, n->domain, &c);
		if (spf_expand_domain(&c, m->spec, m->spec_len, t->target, sizeof(t->target)) < 0)
			t->bad_target = 1;
	} else {
		sfmt(t->target, sizeof(t->target), "%s", n->domain);
	}
	if (!t->bad_target && !spf_name_ok(t->target))
		t->bad_target = 1;
	if (m->kind == SPF_M_PTR) {
		ptr_start(ev);
		return;      /* ready when the validated names are known */
	}
	if (t->bad_target) {
		t->st = TS_READY;
		return;
	}
	uint16_t type = DNSQ_T_A;
	switch (m->kind) {
	case SPF_M_A:      type = ev->ip6 ? DNSQ_T_AAAA : DNSQ_T_A; break;
	case SPF_M_MX:     type = DNSQ_T_MX; break;
	case SPF_M_EXISTS: type = DNSQ_T_A; break;
	case SPF_M_INCLUDE:
	case SPF_M_REDIRECT:
		t->child = node_new(ev, n, t->target, t->lb);
		if (!t->child) {
			t->st = TS_READY;
			t->dst = DNSQ_TEMPFAIL;
			return;
		}
		node_fetch(ev, t->child);
		return;
	default:
		break;
	}
	if (lookup(ev, t->target, type, LK_TERM, n, t, 0) < 0) {
		t->dst = DNSQ_TIMEOUT;
		t->st = TS_READY;
	}
}

static void term_answer(struct spf_eval *ev, struct term *t,
                        const struct dnsq_answer *a)
{
	t->dst = a->status;
	switch (t->m->kind) {
	case SPF_M_A:
		/* match the client against each address at the mechanism's CIDR */
		t->matched = 0;
		if (a->status == DNSQ_OK)
			for (size_t i = 0; i < a->count; i++)
				if (a->rdlen[i] == (ev->ip6 ? 16u : 4u) &&
				    spf_cidr_match(ev->ip, a->rdata[i],
				                   ev->ip6 ? t->m->cidr6 : t->m->cidr4, ev->ip6))
					t->matched = 1;
		t->st = TS_READY;
		break;
	case SPF_M_EXISTS:
		t->matched = a->status == DNSQ_OK && a->count > 0;
		t->st = TS_READY;
		break;
	case SPF_M_MX:
		if (a->status == DNSQ_OK && a->count > LIM_SPF_MX_NAMES) {
			t->mx_over = 1;   /* RFC 7208 4.6.4: permerror when evaluated */
			t->st = TS_READY;
			break;
		}
		if (a->status == DNSQ_OK) {
			unsigned before = ev->pending;
			for (size_t i = 0; i < a->count; i++) {
				char name[NAMECAP];
				uint16_t pref;
				unsigned k = t->nmx++;
				t->mx[k].st = DNSQ_NXDOMAIN;
				if (dnsq_mx(a, i, &pref, name, sizeof(name)) < 0 || !spf_name_ok(name))
					continue;   /* includes the null MX "." (RFC 7505) */
				if (lookup(ev, name, ev->ip6 ? DNSQ_T_AAAA : DNSQ_T_A, LK_MXADDR,
				           t->node, t, k) == 0)
					t->mx_pending++;
				else
					t->mx[k].st = DNSQ_TIMEOUT;
			}
			if (ev->pending - before > 1)
				trace_add(ev->t, "spf", "mx:%s: %u address lookups in flight together",
				          t->target, ev->pending - before);
		}
		if (t->mx_pending == 0)
			t->st = TS_READY;
		break;
	default:
		t->st = TS_READY;
		break;
	}
}

static void mxaddr_answer(struct spf_eval *ev, struct term *t, unsigned k,
                          const struct dnsq_answer *a)
{
	t->mx[k].st = a->status;
	t->mx[k].matched = 0;
	if (a->status == DNSQ_OK)
		for (size_t i = 0; i < a->count; i++)
			if (a->rdlen[i] == (ev->ip6 ? 16u : 4u) &&
			    spf_cidr_match(ev->ip, a->rdata[i],
			                   ev->ip6 ? t->m->cidr6 : t->m->cidr4, ev->ip6))
				t->mx[k].matched = 1;
	if (--t->mx_pending == 0)
		t->st = TS_READY;
}

/* ---- evaluation ---- */

static enum auth_res qual_res(char q)
{
	switch (q) {
	case '-': return AUTH_FAIL;
	case '~': return AUTH_SOFTFAIL;
	case '?': return AUTH_NEUTRAL;
	default:  return AUTH_PASS;
	}
}

static void top_done(struct spf_eval *ev);

static void finish_node(struct spf_eval *ev, struct node *n, enum auth_res r,
                        const char *why, const char *match, struct node *expn)
{
	n->done = 1;
	n->res = r;
	n->exp_node = expn;
	if (why && why != n->why)
		sfmt(n->why, sizeof(n->why), "%s", why);
	if (match && match != n->match)
		sfmt(n->match, sizeof(n->match), "%s", match);
	trace_add(ev->t, "spf", "%s: %s%s%s", n->domain, auth_res_name(r),
	          n->why[0] ? " - " : "", n->why);
	if (n->parent)
		ev->cur = n->parent;
	else
		top_done(ev);
}

enum { STEP_WAIT, STEP_NEXT, STEP_DONE, STEP_DESCEND };

static int count_term(struct spf_eval *ev, struct node *n, struct term *t)
{
	if (t->counted)
		return 0;
	t->counted = 1;
	ev->dns_terms++;
	char txt[120];
	pterm(txt, sizeof(txt), t->m);
	trace_add(ev->t, "spf", "%s: %s is DNS term %u of %u", n->domain, txt,
	          ev->dns_terms, LIM_SPF_DNS_TERMS);
	if (ev->dns_terms > LIM_SPF_DNS_TERMS) {
		finish_node(ev, n, AUTH_PERMERROR,
		            "more than 10 DNS-querying terms (RFC 7208 4.6.4)", NULL, NULL);
		return -1;
	}
	return 0;
}

static int count_void(struct spf_eval *ev, struct node *n, struct term *t)
{
	ev->voids++;
	char txt[120];
	pterm(txt, sizeof(txt), t->m);
	trace_add(ev->t, "spf", "%s: %s void lookup %u of %u", n->domain, txt,
	          ev->voids, LIM_SPF_VOID_LOOKUPS);
	if (ev->voids > LIM_SPF_VOID_LOOKUPS) {
		finish_node(ev, n, AUTH_PERMERROR,
		            "more than 2 void lookups (RFC 7208 4.6.4)", NULL, NULL);
		return -1;
	}
	return 0;
}

static int step_term(struct spf_eval *ev, struct node *n, struct term *t)
{
	const struct spf_mech *m = t->m;
	int match = 0;
	char why[200];
	if (is_dns_mech(m) && count_term(ev, n, t) < 0)
		return STEP_DONE;
	switch (m->kind) {
	case SPF_M_ALL:
		match = 1;
		break;
	case SPF_M_IP4:
		match = !ev->ip6 && spf_cidr_match(ev->ip, m->net, m->cidr4, 0);
		break;
	case SPF_M_IP6:
		match = ev->ip6 && spf_cidr_match(ev->ip, m->net, m->cidr6, 1);
		break;
	case SPF_M_INCLUDE:
		if (t->st == TS_IDLE)
			issue_term(ev, t);
		if (t->st == TS_WAIT_P)
			return STEP_WAIT;
		if (t->bad_target) {
			finish_node(ev, n, AUTH_PERMERROR, "include: target is not a valid domain",
			            NULL, NULL);
			return STEP_DONE;
		}
		if (!t->child) {
			finish_node(ev, n, AUTH_TEMPERROR, "out of memory", NULL, NULL);
			return STEP_DONE;
		}
		if (!t->child->done) {
			ev->cur = t->child;
			return STEP_DESCEND;
		}
		switch (t->child->res) {   /* RFC 7208 5.2 table */
		case AUTH_PASS:
			match = 1;
			break;
		case AUTH_TEMPERROR:
			sfmt(why, sizeof(why), "include:%s: temperror", t->target);
			finish_node(ev, n, AUTH_TEMPERROR, why, NULL, NULL);
			return STEP_DONE;
		case AUTH_PERMERROR:
		case AUTH_NONE:
			sfmt(why, sizeof(why), "include:%s: %s", t->target,
			         t->child->res == AUTH_NONE ? "no SPF record" : "permerror");
			finish_node(ev, n, AUTH_PERMERROR, why, NULL, NULL);
			return STEP_DONE;
		default:
			break;
		}
		break;
	case SPF_M_PTR:
		if (t->st == TS_IDLE)
			issue_term(ev, t);
		if (t->st == TS_WAIT_P || ev->ptr_state != 2)
			return STEP_WAIT;
		if (is_void(ev->ptr_st) && count_void(ev, n, t) < 0)
			return STEP_DONE;
		if (!t->bad_target)
			for (unsigned i = 0; i < ev->ptr_n && !match; i++)
				match = ev->ptr_valid[i] && name_within(ev->ptr_names[i], t->target);
		break;
	default:   /* a, mx, exists */
		if (t->st == TS_IDLE)
			issue_term(ev, t);
		if (t->st != TS_READY)
			return STEP_WAIT;
		if (t->bad_target)
			break;   /* RFC 7208 4.3 by analogy: an unusable name does not exist */
		if (is_temp(t->dst)) {
			sfmt(why, sizeof(why), "%s %s: %s", m->kind == SPF_M_MX ? "MX" : "A",
			         t->target, dnsq_status_name(t->dst));
			finish_node(ev, n, AUTH_TEMPERROR, why, NULL, NULL);
			return STEP_DONE;
		}
		if (is_void(t->dst) && count_void(ev, n, t) < 0)
			return STEP_DONE;
		if (m->kind == SPF_M_MX) {
			if (t->mx_over) {
				sfmt(why, sizeof(why), "mx:%s: more than %u MX names (RFC 7208 4.6.4)",
				         t->target, LIM_SPF_MX_NAMES);
				finish_node(ev, n, AUTH_PERMERROR, why, NULL, NULL);
				return STEP_DONE;
			}
			for (unsigned i = 0; i < t->nmx && !match; i++) {
				if (is_temp(t->mx[i].st)) {
					sfmt(why, sizeof(why), "address of an MX of %s: %s",
					         t->target, dnsq_status_name(t->mx[i].st));
					finish_node(ev, n, AUTH_TEMPERROR, why, NULL, NULL);
					return STEP_DONE;
				}
				match = t->mx[i].matched;
			}
		} else {
			match = t->matched;
		}
		break;
	}
	char txt[SPF_MECH_MAX];
	pterm(txt, sizeof(txt), m);
	if (match) {
		trace_add(ev->t, "spf", "%s: %s matches", n->domain, txt);
		finish_node(ev, n, qual_res(m->qual), "", txt, n);
		return STEP_DONE;
	}
	trace_add(ev->t, "spf", "%s: %s does not match", n->domain, txt);
	n->cur++;
	return STEP_NEXT;
}

static int step_redirect(struct spf_eval *ev, struct node *n)
{
	struct term *t = &n->redir;
	char why[200];
	if (count_term(ev, n, t) < 0)
		return STEP_DONE;
	if (t->st == TS_IDLE)
		issue_term(ev, t);
	if (t->st == TS_WAIT_P)
		return STEP_WAIT;
	if (t->bad_target || !t->child) {
		finish_node(ev, n, AUTH_PERMERROR, "redirect= target is not a valid domain",
		            NULL, NULL);
		return STEP_DONE;
	}
	if (!t->child->done) {
		ev->cur = t->child;
		return STEP_DESCEND;
	}
	struct node *c = t->child;
	enum auth_res r = c->res;
	if (r == AUTH_NONE) {   /* RFC 7208 6.1 */
		sfmt(why, sizeof(why), "redirect=%s: no SPF record", t->target);
		finish_node(ev, n, AUTH_PERMERROR, why, NULL, NULL);
		return STEP_DONE;
	}
	/* the target's result, its matching term and its exp= (RFC 7208 6.2) */
	finish_node(ev, n, r, c->why, c->match, c->exp_node);
	return STEP_DONE;
}

static void run(struct spf_eval *ev)
{
	while (!ev->finished && ev->cur) {
		struct node *n = ev->cur;
		if (n->done) {   /* a node finished while we waited elsewhere */
			ev->cur = n->parent;
			continue;
		}
		if (!n->fetched)
			return;
		if (n->early) {
			finish_node(ev, n, n->early_res, n->why, NULL, NULL);
			continue;
		}
		int r;
		if (n->cur < n->rec.n)
			r = step_term(ev, n, &n->terms[n->cur]);
		else if (n->rec.has_redirect && !n->rec.has_all)
			r = step_redirect(ev, n);
		else {
			finish_node(ev, n, AUTH_NEUTRAL, "no term matched", "default", n);
			r = STEP_DONE;
		}
		if (r == STEP_WAIT)
			return;
	}
}

/* ---- explanation (RFC 7208 6.2) ---- */

static void set_explanation(struct spf_eval *ev, const char *s, size_t len,
                            struct node *n)
{
	struct spf_macro_ctx c;
	macro_ctx(ev, n ? n->domain : ev->domain, &c);
	char *out = ev->res.explanation;
	size_t cap = sizeof(ev->res.explanation), ol = 0;
	if (spf_expand(&c, s, len, SPF_MS_EXP, out, cap, &ol) < 0)
		out[0] = '\0';
	for (size_t i = 0; i < ol; i++)   /* keep it printable for headers and logs */
		if ((unsigned char)out[i] < 0x20 || (unsigned char)out[i] > 0x7e)
			out[i] = '?';
}

static int macro_uses_p(const char *s, size_t len, int flags)
{
	int up = 0;
	if (spf_macro_check(s, len, flags, &up) < 0)
		return -1;
	return up;
}

static void exp_default(struct spf_eval *ev)
{
	if (!ev->default_exp) {
		deliver(ev);
		return;
	}
	free(ev->exp_text);
	ev->exp_text = strdup(ev->default_exp);
	ev->exp_len = ev->exp_text ? strlen(ev->exp_text) : 0;
	ev->exp_node = NULL;
	exp_text_ready(ev);
}

static void exp_text_ready(struct spf_eval *ev)
{
	if (!ev->exp_text) {
		deliver(ev);
		return;
	}
	int up = macro_uses_p(ev->exp_text, ev->exp_len, SPF_MS_EXP);
	if (up < 0) {
		/* RFC 7208 6.2: a bad explanation string is as if no exp= */
		trace_add(ev->t, "spf", "explanation has a syntax error, ignored");
		if (ev->exp_node) {
			exp_default(ev);
			return;
		}
		deliver(ev);
		return;
	}
	if (up && ev->ptr_state != 2) {
		ev->exp_wait_p = 2;
		ptr_start(ev);
		return;
	}
	set_explanation(ev, ev->exp_text, ev->exp_len, ev->exp_node);
	deliver(ev);
}

static void exp_start(struct spf_eval *ev)
{
	struct node *xn = ev->exp_node;
	if (xn->rec.exp_uses_p && ev->ptr_state != 2) {
		ev->exp_wait_p = 1;
		ptr_start(ev);
		return;
	}
	struct spf_macro_ctx c;
	char name[NAMECAP];
	macro_ctx(ev, xn->domain, &c);
	if (spf_expand_domain(&c, xn->rec.exp, xn->rec.exp_len, name, sizeof(name)) < 0 ||
	    !spf_name_ok(name) ||
	    lookup(ev, name, DNSQ_T_TXT, LK_EXP, xn, NULL, 0) < 0) {
		exp_default(ev);
		return;
	}
	trace_add(ev->t, "spf", "%s: fetching explanation from %s", xn->domain, name);
}

static void exp_answer(struct spf_eval *ev, const struct dnsq_answer *a)
{
	/* RFC 7208 6.2: exactly one TXT record, else as if no exp= */
	if (a->status != DNSQ_OK || a->count != 1) {
		trace_add(ev->t, "spf", "explanation lookup: %s, %zu records; ignored",
		          dnsq_status_name(a->status), a->count);
		exp_default(ev);
		return;
	}
	char buf[LIM_SPF_EXPLANATION * 2 + 1];
	size_t l;
	if (dnsq_txt(a, 0, buf, sizeof(buf), &l) < 0) {
		exp_default(ev);
		return;
	}
	for (size_t i = 0; i < l; i++)
		if ((unsigned char)buf[i] < 0x20 || (unsigned char)buf[i] > 0x7e) {
			trace_add(ev->t, "spf", "explanation is not 7-bit text, ignored");
			exp_default(ev);
			return;
		}
	free(ev->exp_text);
	ev->exp_text = malloc(l + 1);
	if (!ev->exp_text) {
		deliver(ev);
		return;
	}
	memcpy(ev->exp_text, buf, l + 1);
	ev->exp_len = l;
	exp_text_ready(ev);
}

static void top_done(struct spf_eval *ev)
{
	struct node *r = ev->root;
	ev->cur = NULL;
	ev->res.result = r->res;
	sfmt(ev->res.mechanism, sizeof(ev->res.mechanism), "%s", r->match);
	sfmt(ev->res.problem, sizeof(ev->res.problem), "%s",
	         (r->res == AUTH_PERMERROR || r->res == AUTH_TEMPERROR || r->res == AUTH_NONE)
	         ? r->why : "");
	if (r->res != AUTH_FAIL) {
		deliver(ev);
		return;
	}
	ev->exp_node = r->exp_node;
	if (ev->exp_node && ev->exp_node->rec.exp)
		exp_start(ev);
	else
		exp_default(ev);
}

static void deliver(struct spf_eval *ev)
{
	if (ev->finished)
		return;
	ev->finished = 1;
	ev->res.dns_terms = ev->dns_terms;
	ev->res.void_lookups = ev->voids;
	ev->res.lookups = ev->lookups;
	ev->res.max_parallel = ev->max_parallel;
	ev->res.engine = SPF_ENGINE_NATIVE;
	trace_add(ev->t, "spf", "check_host(%s) = %s%s%s; %u DNS terms, %u void, "
	          "%u lookups, at most %u in flight", ev->res.domain,
	          auth_res_name(ev->res.result), ev->res.mechanism[0] ? " by " : "",
	          ev->res.mechanism, ev->dns_terms, ev->voids, ev->lookups, ev->max_parallel);
	ev->done(ev->arg, &ev->res);
}

static void dns_cb(void *arg, const struct dnsq_answer *ans)
{
	struct lk *l = arg;
	struct spf_eval *ev = l->ev;
	ev->pending--;
	if (ev->finished) {   /* late answer of a finished evaluation: absorbed */
		free(l);
		if (ev->pending == 0)
			eval_free(ev);
		return;
	}
	struct dnsq_answer a = *ans;
	if (a.status == DNSQ_OK && a.sec == DNSQ_SEC_BOGUS)
		a.status = DNSQ_BOGUS;       /* bogus data is never used */
	if (l->kind != LK_DEFER && past_deadline(ev))
		a.status = DNSQ_TIMEOUT;
	if (a.status != DNSQ_OK)
		a.count = 0;
	switch (l->kind) {
	case LK_RECORD:  record_answer(ev, l->node, &a); break;
	case LK_TERM:    term_answer(ev, l->term, &a); break;
	case LK_MXADDR:  mxaddr_answer(ev, l->term, l->idx, &a); break;
	case LK_PTR:     ptr_answer(ev, &a); break;
	case LK_PTRADDR: ptraddr_answer(ev, l->idx, &a); break;
	case LK_EXP:     exp_answer(ev, &a); break;
	case LK_DEFER:   deliver(ev); break;
	}
	free(l);
	if (!ev->finished)
		run(ev);
	if (ev->finished && ev->pending == 0)
		eval_free(ev);
}

/* ---- start ---- */

/* RFC 7208 4.3: a malformed or single-label domain gives "none". */
static int domain_ok(const char *d)
{
	if (d[0] == '[')
		return 0;   /* an address literal (RFC 5321 4.1.3) */
	return spf_name_ok(d) && strchr(d, '.') != NULL;
}

static void copy_name(char *dst, size_t cap, const char *src, int *too_long)
{
	size_t n = src ? strlen(src) : 0;
	if (n >= cap) {
		*too_long = 1;
		n = cap - 1;
	}
	if (n)
		memcpy(dst, src, n);
	dst[n] = '\0';
}

/* 0, or -1 when not even that lookup could start: ev is freed then */
static int start_immediate(struct spf_eval *ev, enum auth_res r, const char *why)
{
	ev->res.result = r;
	sfmt(ev->res.problem, sizeof(ev->res.problem), "%s", why);
	trace_add(ev->t, "spf", "check_host(%s): %s - %s", ev->res.domain,
	          auth_res_name(r), why);
	/* the result goes through one callback so that done never runs inside
	 * spf_check_host(); "invalid." is answered by the resolver itself */
	if (lookup(ev, "invalid", DNSQ_T_TXT, LK_DEFER, NULL, NULL, 0) < 0) {
		trace_add(ev->t, "spf", "check_host(%s): out of memory", ev->res.domain);
		eval_free(ev);
		return -1;
	}
	return 0;
}

int spf_native_check_host(struct dnsq *dq, const struct spf_request *rq,
                          struct trace *t, spf_done_cb done, void *arg)
{
	struct spf_eval *ev = calloc(1, sizeof(*ev));
	if (!ev)
		return -1;
	ev->dq = dq;
	ev->t = t;
	ev->done = done;
	ev->arg = arg;
	ev->deadline = rq->deadline_us;
	ev->now_s = (uint64_t)time(NULL);
	int bad = 0, helo_long = 0;
	copy_name(ev->helo, sizeof(ev->helo), rq->helo, &helo_long);
	copy_name(ev->receiver, sizeof(ev->receiver),
	          rq->receiver ? rq->receiver : "unknown", &bad);
	if (rq->default_explanation) {
		ev->default_exp = strdup(rq->default_explanation);
		if (!ev->default_exp) {
			eval_free(ev);
			return -1;
		}
	}
	bad = 0;
	const char *snd = rq->sender;
	if (!snd || !*snd) {   /* RFC 7208 2.4: null sender: postmaster@<helo> */
		sfmt(ev->local, sizeof(ev->local), "postmaster");
		sfmt(ev->sender_dom, sizeof(ev->sender_dom), "%s", ev->helo);
		bad = helo_long;
	} else {
		const char *at = strrchr(snd, '@');
		const char *dom = at ? at + 1 : snd;
		size_t ll = at ? (size_t)(at - snd) : 0;
		if (ll > LOCAL_MAX)
			bad = 1;
		else if (ll == 0)   /* RFC 7208 4.3 */
			sfmt(ev->local, sizeof(ev->local), "postmaster");
		else {
			memcpy(ev->local, snd, ll);
			ev->local[ll] = '\0';
		}
		copy_name(ev->sender_dom, sizeof(ev->sender_dom), dom, &bad);
	}
	copy_name(ev->domain, sizeof(ev->domain),
	          rq->domain ? rq->domain : ev->sender_dom, &bad);
	size_t dl = strlen(ev->domain);
	if (dl > 0 && ev->domain[dl - 1] == '.')
		ev->domain[dl - 1] = '\0';
	sfmt(ev->res.domain, sizeof(ev->res.domain), "%s", ev->domain);
	if (spf_parse_ip(rq->ip, ev->ip, &ev->ip6) < 0) {
		return start_immediate(ev, AUTH_PERMERROR, "client address is not an IP address");
	}
	sfmt(ev->ip_text, sizeof(ev->ip_text), "%s", "");
	{
		/* %{c}: the address in its usual text form (mapped IPv4 as IPv4) */
		char buf[64];
		if (ev->ip6) {
			if (!inet_ntop(AF_INET6, ev->ip, buf, sizeof(buf)))
				buf[0] = '\0';
		} else {
			sfmt(buf, sizeof(buf), "%u.%u.%u.%u", ev->ip[0], ev->ip[1],
			         ev->ip[2], ev->ip[3]);
		}
		sfmt(ev->ip_text, sizeof(ev->ip_text), "%s", buf);
	}
	spf_ip_dots(ev->ip, ev->ip6, ev->ip_dots, sizeof(ev->ip_dots));
	if (bad || !domain_ok(ev->domain)) {
		return start_immediate(ev, AUTH_NONE, "domain is malformed or not multi-label "
		                       "(RFC 7208 4.3)");
	}
	trace_add(ev->t, "spf", "check_host(%s, %s, %s@%s) native engine", ev->ip_text,
	          ev->domain, ev->local, ev->sender_dom);
	ev->root = node_new(ev, NULL, ev->domain, 0);
	if (!ev->root) {
		return start_immediate(ev, AUTH_TEMPERROR, "out of memory");
	}
	ev->cur = ev->root;
	if (lookup(ev, ev->domain, DNSQ_T_TXT, LK_RECORD, ev->root, NULL, 0) < 0) {
		/* past the deadline, or no memory for the lookup */
		return start_immediate(ev, AUTH_TEMPERROR, past_deadline(ev)
		                       ? "deadline passed before the first lookup" : "out of memory");
	}
	return 0;
}
