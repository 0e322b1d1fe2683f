/* The guarded libspf2 engine. Loop thread only. libspf2 is synchronous, so
 * it runs against a DNS layer that answers only from this evaluation's
 * table of answers gathered through dnsq: a question not in the table is
 * noted and answered TRY_AGAIN; the noted lookups go out together, and when
 * they have all landed libspf2 runs again from scratch, until it asks
 * nothing new. Limits, void lookups, record sizes, explanations and
 * libspf2's fatal-error hook are handled here (see README.md). */
#include "checks/spf/spf_engines.h"
#include "checks/spf/spf_int.h"
#include "common/text.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <spf2/spf.h>
#include <spf2/spf_dns.h>

/* libspf2 1.2.10 truncates a compiled record at SPF_MAX_MECH_LEN (511)
 * bytes and has crashed on long records and long exp= with macros; a
 * record over these bounds goes to the native engine instead. */
#define L2_SAFE_TEXT      380u
#define L2_SAFE_COMPILED  400u
#define L2_MAX_ROUNDS     64u
#define L2_MAX_ANSWERS    256u

struct l2_ans {
	char *name;
	uint16_t type;
	enum dnsq_status st;
	size_t count;
	unsigned char **rd;
	size_t *rl;
	struct l2_ans *next;
};

struct l2_q {
	char *name;
	uint16_t type;
	struct l2_q *next;
};

struct l2_eval {
	struct dnsq *dq;
	struct trace *t;
	spf_done_cb done;
	void *arg;
	/* copied request */
	char *ip, *sender, *helo, *receiver, *domain, *default_exp;
	struct spf_request rq;   /* pointers into the copies above */
	unsigned char ipb[16];
	int ip6, ip_ok;
	/* answers and questions */
	struct l2_ans *ans;
	unsigned nans;
	struct l2_q *missing;
	unsigned nmissing, pending, lookups, max_parallel, rounds;
	int finished, native;
	/* per run of libspf2 */
	int first_txt_seen, temp_seen, limit_hit, big;
	unsigned terms, voids;
	char big_name[LIM_DNS_MAX_NAME + 1];
	char subnames[LIM_SPF_MX_NAMES + LIM_SPF_PTR_NAMES][LIM_DNS_MAX_NAME + 1];
	unsigned nsub;
	SPF_dns_server_t *dns;
	SPF_server_t *srv;
	SPF_request_t *req;
	SPF_response_t *resp;
	int rc;
	int exp_state;           /* 0 none, 1 explanation set, -1 ignored */
	char exp[LIM_SPF_EXPLANATION + 1];
	struct spf_result res;
};

/* ---- libspf2's global hooks ---- */

static jmp_buf *l2_guard;
static struct l2_eval *l2_cur;   /* the evaluation libspf2 is running for */

static void l2_error(const char *file, int line, const char *msg)
	__attribute__((noreturn));
static void l2_error(const char *file, int line, const char *msg)
{
	/* libspf2's default calls abort(); leave the library instead */
	if (l2_guard)
		longjmp(*l2_guard, 1);
	abort();   /* never reached: libspf2 only runs under the guard */
}

static void l2_quiet(const char *file, int line, const char *msg)
{
}

static void l2_hooks(void)
{
	static int done;
	if (done)
		return;
	done = 1;
	SPF_error_handler = l2_error;
	SPF_warning_handler = l2_quiet;
	SPF_info_handler = l2_quiet;
	SPF_debug_handler = l2_quiet;
}

/* ---- answers table ---- */

static struct l2_ans *table_find(struct l2_eval *ev, const char *name, uint16_t type)
{
	for (struct l2_ans *a = ev->ans; a; a = a->next)
		if (a->type == type && strcasecmp(a->name, name) == 0)
			return a;
	return NULL;
}

static void table_put(struct l2_eval *ev, const char *name, uint16_t type,
                      const struct dnsq_answer *d, enum dnsq_status st)
{
	if (table_find(ev, name, type))
		return;
	struct l2_ans *a = calloc(1, sizeof(*a));
	if (!a)
		return;
	a->name = strdup(name);
	a->type = type;
	a->st = st;
	if (d && st == DNSQ_OK && d->count) {
		a->rd = calloc(d->count, sizeof(*a->rd));
		a->rl = calloc(d->count, sizeof(*a->rl));
		if (a->rd && a->rl)
			for (size_t i = 0; i < d->count; i++) {
				a->rd[i] = malloc(d->rdlen[i] ? d->rdlen[i] : 1);
				if (!a->rd[i])
					break;
				memcpy(a->rd[i], d->rdata[i], d->rdlen[i]);
				a->rl[i] = d->rdlen[i];
				a->count = i + 1;
			}
	}
	if (!a->name) {
		free(a);
		return;
	}
	a->next = ev->ans;
	ev->ans = a;
	ev->nans++;
}

static void note_missing(struct l2_eval *ev, const char *name, uint16_t type)
{
	for (struct l2_q *q = ev->missing; q; q = q->next)
		if (q->type == type && strcasecmp(q->name, name) == 0)
			return;
	struct l2_q *q = calloc(1, sizeof(*q));
	if (!q || !(q->name = strdup(name))) {
		free(q);
		return;
	}
	q->type = type;
	q->next = ev->missing;
	ev->missing = q;
	ev->nmissing++;
}

static void missing_free(struct l2_eval *ev)
{
	while (ev->missing) {
		struct l2_q *q = ev->missing;
		ev->missing = q->next;
		free(q->name);
		free(q);
	}
	ev->nmissing = 0;
}

static void l2_free(struct l2_eval *ev)
{
	while (ev->ans) {
		struct l2_ans *a = ev->ans;
		ev->ans = a->next;
		for (size_t i = 0; i < a->count; i++)
			free(a->rd[i]);
		free(a->rd);
		free(a->rl);
		free(a->name);
		free(a);
	}
	missing_free(ev);
	free(ev->ip);
	free(ev->sender);
	free(ev->helo);
	free(ev->receiver);
	free(ev->domain);
	free(ev->default_exp);
	free(ev);
}

/* ---- record size gate ---- */

static size_t count_pct(const char *s, size_t n)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		k += s[i] == '%';
	return k;
}

/* An upper bound of libspf2's compiled size of a record (4-byte headers,
 * strings padded to 4, 16-byte addresses, 4-byte CIDR blocks). */
static int l2_record_safe(const char *s, size_t len)
{
	if (len > L2_SAFE_TEXT)
		return 0;
	struct spf_record r;
	char err[64];
	if (spf_parse(s, len, &r, err, sizeof(err)) < 0)
		return 1;   /* short and invalid: libspf2 rejects it at compile */
	size_t total = 8;
	for (size_t i = 0; i < r.n; i++) {
		const struct spf_mech *m = &r.mech[i];
		total += 4 + 4;
		if (m->kind == SPF_M_IP4)
			total += 4;
		else if (m->kind == SPF_M_IP6)
			total += 16;
		else if (m->spec)
			total += m->spec_len + 4 + 8 * (count_pct(m->spec, m->spec_len) + 1);
	}
	/* modifiers: name + value, each with headers */
	for (size_t i = 6; i < len;) {
		while (i < len && s[i] == ' ')
			i++;
		size_t j = i;
		while (j < len && s[j] != ' ')
			j++;
		const char *eq = memchr(s + i, '=', j - i);
		if (eq && j > i)
			total += 8 + (j - i) + 8 * (count_pct(s + i, j - i) + 1);
		i = j;
	}
	spf_record_free(&r);
	return total <= L2_SAFE_COMPILED;
}

/* ---- the DNS layer libspf2 sees ---- */

static int is_sub(struct l2_eval *ev, const char *name)
{
	for (unsigned i = 0; i < ev->nsub; i++)
		if (strcasecmp(ev->subnames[i], name) == 0)
			return 1;
	return 0;
}

static void add_sub(struct l2_eval *ev, const char *name)
{
	size_t n = strnlen(name, LIM_DNS_MAX_NAME);
	if (ev->nsub >= LIM_SPF_MX_NAMES + LIM_SPF_PTR_NAMES)
		return;
	memcpy(ev->subnames[ev->nsub], name, n);
	ev->subnames[ev->nsub++][n] = '\0';
}

static SPF_dns_rr_t *rr_status(SPF_dns_server_t *s, const char *domain,
                               ns_type type, int herrno)
{
	return SPF_dns_rr_new_init(s, domain, type, 300, herrno);
}

static SPF_dns_rr_t *l2_lookup(SPF_dns_server_t *s, const char *domain,
                               ns_type type, int should_cache)
{
	struct l2_eval *ev = l2_cur;
	if (!domain)
		domain = "";
	if (type == ns_t_spf || !ev)
		return rr_status(s, domain, type, NO_DATA);   /* RFC 7208 3.1: TXT only */
	uint16_t qt = (uint16_t)type;
	/* count DNS-querying terms across the whole evaluation, in the order
	 * libspf2 asks (RFC 7208 4.6.4), which libspf2 restarts per include */
	int term = 0;
	if (qt == DNSQ_T_TXT) {
		term = ev->first_txt_seen;
		ev->first_txt_seen = 1;
	} else if (qt == DNSQ_T_MX || qt == DNSQ_T_PTR) {
		term = 1;
	} else if (qt == DNSQ_T_A || qt == DNSQ_T_AAAA) {
		term = !is_sub(ev, domain);
	}
	if (term && ++ev->terms > LIM_SPF_DNS_TERMS)
		ev->limit_hit = 1;
	if (ev->limit_hit || ev->big)
		return rr_status(s, domain, type, TRY_AGAIN);   /* stop it quickly */
	struct l2_ans *a = table_find(ev, domain, qt);
	if (!a) {
		note_missing(ev, domain, qt);
		return rr_status(s, domain, type, TRY_AGAIN);
	}
	if (a->st == DNSQ_TEMPFAIL || a->st == DNSQ_TIMEOUT || a->st == DNSQ_BOGUS) {
		ev->temp_seen = 1;
		return rr_status(s, domain, type, TRY_AGAIN);
	}
	if (a->st == DNSQ_NXDOMAIN || a->st == DNSQ_NODATA) {
		if (term && qt != DNSQ_T_TXT && ++ev->voids > LIM_SPF_VOID_LOOKUPS)
			ev->limit_hit = 2;
		return rr_status(s, domain, type, a->st == DNSQ_NXDOMAIN ? HOST_NOT_FOUND : NO_DATA);
	}
	SPF_dns_rr_t *rr = rr_status(s, domain, type, NETDB_SUCCESS);
	if (!rr)
		return NULL;
	int cnt = 0;
	static char buf[LIM_DNS_MAX_ANSWER + 1];   /* loop thread only */
	struct dnsq_answer view = { .qname = domain, .qtype = qt, .status = DNSQ_OK,
	                            .count = a->count,
	                            .rdata = (const unsigned char *const *)a->rd,
	                            .rdlen = a->rl };
	for (size_t i = 0; i < a->count; i++) {
		size_t l = 0;
		uint16_t pref;
		switch (qt) {
		case DNSQ_T_A:
		case DNSQ_T_AAAA:
			if (a->rl[i] != (qt == DNSQ_T_A ? 4u : 16u))
				continue;
			if (SPF_dns_rr_buf_realloc(rr, cnt, a->rl[i]) != SPF_E_SUCCESS)
				goto out;
			memcpy(qt == DNSQ_T_A ? (void *)&rr->rr[cnt]->a : (void *)&rr->rr[cnt]->aaaa,
			       a->rd[i], a->rl[i]);
			cnt++;
			continue;
		case DNSQ_T_TXT:
			if (dnsq_txt(&view, i, buf, sizeof(buf), &l) < 0)
				continue;
			if (spf_is_record(buf, l) && !l2_record_safe(buf, l)) {
				ev->big = 1;
				snprintf(ev->big_name, sizeof(ev->big_name), "%s", domain);
			}
			break;
		case DNSQ_T_MX:
			if (dnsq_mx(&view, i, &pref, buf, sizeof(buf)) < 0)
				continue;
			l = strlen(buf);
			add_sub(ev, buf);
			break;
		case DNSQ_T_PTR:
			if (dnsq_target(&view, i, buf, sizeof(buf)) < 0)
				continue;
			l = strlen(buf);
			add_sub(ev, buf);
			break;
		default:
			continue;
		}
		if (SPF_dns_rr_buf_realloc(rr, cnt, l + 1) != SPF_E_SUCCESS)
			goto out;
		memcpy(rr->rr[cnt]->txt, buf, l);
		rr->rr[cnt]->txt[l] = '\0';
		cnt++;
	}
out:
	rr->num_rr = cnt;
	if (ev->big)
		rr->herrno = TRY_AGAIN;
	return rr;
}

/* exp=: the TXT comes from the table and is expanded by alignd's own
 * expander (libspf2's expansion of long explanations has crashed). */
static SPF_errcode_t l2_get_exp(SPF_server_t *srv, const char *domain,
                                char **bufp, size_t *buflenp)
{
	struct l2_eval *ev = l2_cur;
	if (!ev || !domain)
		return SPF_E_DNS_ERROR;
	char name[LIM_DNS_MAX_NAME + 1];
	snprintf(name, sizeof(name), "%s", domain);
	struct l2_ans *a = table_find(ev, name, DNSQ_T_TXT);
	if (!a) {
		note_missing(ev, name, DNSQ_T_TXT);
		ev->exp_state = -1;
		return SPF_E_DNS_ERROR;
	}
	char txt[LIM_SPF_EXPLANATION * 2 + 1];
	size_t l = 0;
	struct dnsq_answer view = { .qname = name, .qtype = DNSQ_T_TXT, .status = DNSQ_OK,
	                            .count = a->count,
	                            .rdata = (const unsigned char *const *)a->rd,
	                            .rdlen = a->rl };
	/* RFC 7208 6.2: exactly one 7-bit TXT record with valid macros */
	if (a->st != DNSQ_OK || a->count != 1 || dnsq_txt(&view, 0, txt, sizeof(txt), &l) < 0 ||
	    spf_macro_check(txt, l, SPF_MS_EXP, NULL) < 0) {
		ev->exp_state = -1;
		return SPF_E_DNS_ERROR;
	}
	char dots[80], local[300], *at;
	spf_ip_dots(ev->ipb, ev->ip6, dots, sizeof(dots));
	snprintf(local, sizeof(local), "%s", ev->rq.sender ? ev->rq.sender : "");
	at = strrchr(local, '@');
	if (at)
		*at = '\0';
	struct spf_macro_ctx c = {
		.local = local, .sender_dom = at ? at + 1 : "",
		.domain = ev->req && ev->req->cur_dom ? ev->req->cur_dom : ev->domain,
		.helo = ev->helo ? ev->helo : "", .ip_dots = dots, .ip_text = ev->ip,
		.ip6 = ev->ip6,
		.ptr = ev->req && ev->req->client_dom ? ev->req->client_dom : "unknown",
		.receiver = ev->receiver ? ev->receiver : "unknown",
		.now = (uint64_t)time(NULL),
	};
	if (spf_expand(&c, txt, l, SPF_MS_EXP, ev->exp, sizeof(ev->exp), NULL) < 0) {
		ev->exp_state = -1;
		return SPF_E_DNS_ERROR;
	}
	ev->exp_state = 1;
	size_t need = strlen(ev->exp) + 1;
	if (*buflenp < need) {
		char *nb = realloc(*bufp, need);
		if (!nb)
			return SPF_E_NO_MEMORY;
		*bufp = nb;
		*buflenp = need;
	}
	memcpy(*bufp, ev->exp, need);
	return SPF_E_SUCCESS;
}

/* ---- one run of libspf2 ---- */

static enum auth_res map_result(struct l2_eval *ev, SPF_result_t r)
{
	switch (r) {
	case SPF_RESULT_PASS:      return AUTH_PASS;
	case SPF_RESULT_FAIL:      return AUTH_FAIL;
	case SPF_RESULT_SOFTFAIL:  return AUTH_SOFTFAIL;
	case SPF_RESULT_NEUTRAL:   return AUTH_NEUTRAL;
	case SPF_RESULT_NONE:      return AUTH_NONE;
	case SPF_RESULT_TEMPERROR: return AUTH_TEMPERROR;
	case SPF_RESULT_PERMERROR: return AUTH_PERMERROR;
	default:
		/* "invalid": what the DNS layer saw decides */
		return ev->temp_seen ? AUTH_TEMPERROR : AUTH_PERMERROR;
	}
}

/* The libspf2 calls of one run; may leave through l2_error's longjmp. */
static void l2_query(struct l2_eval *ev)
{
	SPF_response_t *tmp = NULL;
	ev->srv = SPF_server_new_dns(ev->dns, 0);
	if (!ev->srv)
		return;
	/* a literal: alignd expands the default explanation itself */
	SPF_server_set_explanation(ev->srv, "-", &tmp);
	if (tmp)
		SPF_response_free(tmp);
	if (ev->receiver)
		SPF_server_set_rec_dom(ev->srv, ev->receiver);
	ev->req = SPF_request_new(ev->srv);
	if (!ev->req)
		return;
	if (ev->ip6) {
		struct in6_addr a6;
		memcpy(&a6, ev->ipb, 16);
		SPF_request_set_ipv6(ev->req, a6);
	} else {
		struct in_addr a4;
		memcpy(&a4, ev->ipb, 4);
		SPF_request_set_ipv4(ev->req, a4);   /* mapped IPv4 as IPv4 */
	}
	if (ev->helo)
		SPF_request_set_helo_dom(ev->req, ev->helo);
	SPF_request_set_env_from(ev->req, ev->rq.sender);
	SPF_request_query_mailfrom(ev->req, &ev->resp);
	ev->rc = 0;
}

/* 0 result in ev->res, 1 needs more lookups, -1 libspf2 failed */
static int run_once(struct l2_eval *ev)
{
	ev->first_txt_seen = ev->temp_seen = ev->limit_hit = ev->big = 0;
	ev->terms = ev->voids = ev->nsub = 0;
	ev->exp_state = 0;
	missing_free(ev);
	SPF_dns_server_t *dns = calloc(1, sizeof(*dns));
	if (!dns)
		return -1;
	dns->lookup = l2_lookup;
	dns->get_exp = l2_get_exp;
	dns->name = "alignd";
	/* everything setjmp must not lose lives in *ev, not in locals */
	ev->dns = dns;
	ev->srv = NULL;
	ev->req = NULL;
	ev->resp = NULL;
	ev->rc = -1;
	jmp_buf jb;
	l2_cur = ev;
	l2_guard = &jb;
	if (setjmp(jb) != 0) {
		/* libspf2 called its fatal-error hook: its objects may be half
		 * built, so they are left allocated rather than freed blind */
		l2_guard = NULL;
		l2_cur = NULL;
		ev->req = NULL;
		trace_add(ev->t, "spf", "libspf2 reported an internal error");
		return -1;
	}
	l2_query(ev);
	l2_guard = NULL;
	l2_cur = NULL;
	if (ev->rc == 0 && ev->resp) {
		ev->res.result = map_result(ev, SPF_response_result(ev->resp));
		ev->res.problem[0] = '\0';
		if (SPF_response_messages(ev->resp) > 0) {
			SPF_error_t *e = SPF_response_message(ev->resp, 0);
			const char *m = e ? SPF_error_message(e) : NULL;
			if (m)
				text_printable(ev->res.problem, sizeof(ev->res.problem), m, strlen(m));
		}
	}
	if (ev->resp)
		SPF_response_free(ev->resp);
	if (ev->req)
		SPF_request_free(ev->req);
	if (ev->srv)
		SPF_server_free(ev->srv);
	free(dns);
	ev->req = NULL;
	ev->resp = NULL;
	ev->srv = NULL;
	ev->dns = NULL;
	if (ev->rc < 0)
		return -1;
	if (ev->big || ev->limit_hit)
		return 0;
	return ev->nmissing ? 1 : 0;
}

/* ---- driving ---- */

static void l2_deliver(struct l2_eval *ev)
{
	if (ev->finished)
		return;
	ev->finished = 1;
	ev->res.lookups = ev->lookups;
	ev->res.max_parallel = ev->max_parallel;
	ev->res.engine = SPF_ENGINE_LIBSPF2;
	trace_add(ev->t, "spf", "libspf2: check_host(%s) = %s after %u runs; %u DNS terms, "
	          "%u void, %u lookups, at most %u in flight", ev->res.domain,
	          auth_res_name(ev->res.result), ev->rounds, ev->res.dns_terms,
	          ev->res.void_lookups, ev->lookups, ev->max_parallel);
	ev->done(ev->arg, &ev->res);
}

static void native_done(void *arg, const struct spf_result *r)
{
	struct l2_eval *ev = arg;
	ev->res = *r;
	ev->finished = 1;
	ev->done(ev->arg, &ev->res);
	if (ev->pending == 0)
		l2_free(ev);
}

static void l2_cb(void *arg, const struct dnsq_answer *ans);

static void explain_default(struct l2_eval *ev)
{
	ev->res.explanation[0] = '\0';
	if (ev->res.result != AUTH_FAIL)
		return;
	if (ev->exp_state == 1) {
		snprintf(ev->res.explanation, sizeof(ev->res.explanation), "%s", ev->exp);
		return;
	}
	if (!ev->default_exp || spf_macro_check(ev->default_exp, strlen(ev->default_exp),
	                                        SPF_MS_EXP, NULL) < 0)
		return;
	char dots[80], local[300], *at;
	spf_ip_dots(ev->ipb, ev->ip6, dots, sizeof(dots));
	snprintf(local, sizeof(local), "%s", ev->rq.sender);
	at = strrchr(local, '@');
	if (at)
		*at = '\0';
	struct spf_macro_ctx c = { .local = local, .sender_dom = at ? at + 1 : "",
	                           .domain = ev->domain, .helo = ev->helo ? ev->helo : "",
	                           .ip_dots = dots, .ip_text = ev->ip, .ip6 = ev->ip6,
	                           .ptr = "unknown", .receiver = ev->receiver,
	                           .now = (uint64_t)time(NULL) };
	if (spf_expand(&c, ev->default_exp, strlen(ev->default_exp), SPF_MS_EXP,
	               ev->res.explanation, sizeof(ev->res.explanation), NULL) < 0)
		ev->res.explanation[0] = '\0';
}

/* Runs libspf2 until it needs nothing new; issues what it needs. Called
 * from dnsq callbacks only. */
static void l2_step(struct l2_eval *ev)
{
	for (;;) {
		if (++ev->rounds > L2_MAX_ROUNDS || ev->nans > L2_MAX_ANSWERS) {
			ev->res.result = AUTH_TEMPERROR;
			snprintf(ev->res.problem, sizeof(ev->res.problem),
			         "libspf2 engine: too many lookups");
			l2_deliver(ev);
			return;
		}
		int r = run_once(ev);
		ev->res.dns_terms = ev->terms > LIM_SPF_DNS_TERMS + 1 ? LIM_SPF_DNS_TERMS + 1 : ev->terms;
		ev->res.void_lookups = ev->voids;
		if (r < 0) {
			ev->res.result = AUTH_TEMPERROR;
			snprintf(ev->res.problem, sizeof(ev->res.problem), "libspf2 internal error");
			l2_deliver(ev);
			return;
		}
		if (ev->big) {
			trace_add(ev->t, "spf", "libspf2: the record of %s is beyond libspf2's safe "
			          "size; handed to the native engine", ev->big_name);
			ev->native = 1;
			struct spf_request nrq = ev->rq;
			nrq.engine = SPF_ENGINE_NATIVE;
			if (spf_native_check_host(ev->dq, &nrq, ev->t, native_done, ev) == 0)
				return;
			ev->native = 0;
			ev->res.result = AUTH_TEMPERROR;
			snprintf(ev->res.problem, sizeof(ev->res.problem), "out of memory");
			l2_deliver(ev);
			return;
		}
		if (ev->limit_hit) {
			ev->res.result = AUTH_PERMERROR;
			snprintf(ev->res.problem, sizeof(ev->res.problem), "%s",
			         ev->limit_hit == 1 ? "more than 10 DNS-querying terms (RFC 7208 4.6.4)"
			                            : "more than 2 void lookups (RFC 7208 4.6.4)");
			l2_deliver(ev);
			return;
		}
		if (r == 0) {
			explain_default(ev);
			l2_deliver(ev);
			return;
		}
		/* issue every noted question together */
		unsigned issued = 0;
		int deadline = ev->rq.deadline_us && trace_now_us() >= ev->rq.deadline_us;
		for (struct l2_q *q = ev->missing; q; q = q->next) {
			if (deadline) {
				table_put(ev, q->name, q->type, NULL, DNSQ_TIMEOUT);
				continue;
			}
			struct l2_q *own = malloc(sizeof(*own));
			char *nm = strdup(q->name);
			if (!own || !nm) {
				free(own);
				free(nm);
				table_put(ev, q->name, q->type, NULL, DNSQ_TEMPFAIL);
				continue;
			}
			own->name = nm;
			own->type = q->type;
			own->next = (struct l2_q *)ev;   /* back pointer for the callback */
			ev->pending++;
			ev->lookups++;
			issued++;
			if (ev->pending > ev->max_parallel)
				ev->max_parallel = ev->pending;
			dnsq_lookup(ev->dq, nm, q->type, l2_cb, own);
		}
		if (issued > 1)
			trace_add(ev->t, "spf", "libspf2 run %u: %u lookups in flight together",
			          ev->rounds, issued);
		missing_free(ev);
		if (issued)
			return;
	}
}

static void l2_cb(void *arg, const struct dnsq_answer *ans)
{
	struct l2_q *own = arg;
	struct l2_eval *ev = (struct l2_eval *)own->next;
	ev->pending--;
	if (!ev->finished && !ev->native) {
		enum dnsq_status st = ans->status;
		if (st == DNSQ_OK && ans->sec == DNSQ_SEC_BOGUS)
			st = DNSQ_BOGUS;
		if (ev->rq.deadline_us && trace_now_us() >= ev->rq.deadline_us)
			st = DNSQ_TIMEOUT;
		table_put(ev, own->name, own->type, ans, st);
	}
	free(own->name);
	free(own);
	if (ev->finished) {
		if (ev->pending == 0)
			l2_free(ev);
		return;
	}
	if (ev->pending == 0 && !ev->native)
		l2_step(ev);
	if (ev->finished && ev->pending == 0)
		l2_free(ev);
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

int spf_libspf2_check_host(struct dnsq *dq, const struct spf_request *rq,
                           struct trace *t, spf_done_cb done, void *arg)
{
	l2_hooks();
	struct l2_eval *ev = calloc(1, sizeof(*ev));
	if (!ev)
		return -1;
	ev->dq = dq;
	ev->t = t;
	ev->done = done;
	ev->arg = arg;
	ev->ip = strdup(rq->ip ? rq->ip : "");
	ev->helo = dup_or_null(rq->helo);
	ev->receiver = strdup(rq->receiver ? rq->receiver : "unknown");
	ev->default_exp = dup_or_null(rq->default_explanation);
	/* RFC 7208 2.4 and 4.3: null sender and empty local part */
	const char *snd = rq->sender;
	size_t need = (snd ? strlen(snd) : 0) + (rq->helo ? strlen(rq->helo) : 0) + 16;
	ev->sender = malloc(need);
	if (ev->sender) {
		if (!snd || !*snd)
			snprintf(ev->sender, need, "postmaster@%s", rq->helo ? rq->helo : "");
		else if (snd[0] == '@')
			snprintf(ev->sender, need, "postmaster%s", snd);
		else
			snprintf(ev->sender, need, "%s", snd);
	}
	const char *at = ev->sender ? strrchr(ev->sender, '@') : NULL;
	ev->domain = strdup(rq->domain ? rq->domain : at ? at + 1 : "");
	ev->rq = *rq;
	ev->rq.ip = ev->ip;
	ev->rq.sender = ev->sender;
	ev->rq.helo = ev->helo;
	ev->rq.receiver = ev->receiver;
	ev->rq.domain = rq->domain ? ev->domain : NULL;
	ev->rq.default_explanation = ev->default_exp;
	if (!ev->ip || !ev->sender || !ev->domain || !ev->receiver ||
	    (rq->helo && !ev->helo) || (rq->default_explanation && !ev->default_exp)) {
		l2_free(ev);
		return -1;
	}
	snprintf(ev->res.domain, sizeof(ev->res.domain), "%s", ev->domain);
	ev->ip_ok = spf_parse_ip(ev->ip, ev->ipb, &ev->ip6) == 0;
	trace_add(t, "spf", "check_host(%s, %s, %s) libspf2 engine", ev->ip, ev->domain,
	          ev->sender);
	if (!ev->ip_ok) {
		/* the native engine reports it, through a callback as always */
		ev->native = 1;
		if (spf_native_check_host(dq, &ev->rq, t, native_done, ev) < 0) {
			l2_free(ev);
			return -1;
		}
		return 0;
	}
	/* the first question is known: ask it now, run libspf2 when it lands
	 * (so done never runs inside this call) */
	struct l2_q *own = malloc(sizeof(*own));
	if (own && !(own->name = strdup(spf_name_ok(ev->domain) ? ev->domain : "invalid"))) {
		free(own);
		own = NULL;
	}
	if (!own) {
		l2_free(ev);
		return -1;
	}
	own->type = DNSQ_T_TXT;
	own->next = (struct l2_q *)ev;
	ev->pending++;
	ev->lookups++;
	ev->max_parallel = 1;
	dnsq_lookup(dq, own->name, DNSQ_T_TXT, l2_cb, own);
	return 0;
}
