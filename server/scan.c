/* One SCAN: holds the message, runs the checks, builds the verdict and
 * the reply. Loop thread; DKIM verification goes to the worker pool.
 *
 * Timeline: the envelope starts SPF (MAIL FROM and HELO) at once; the end
 * of the header section starts DMARC discovery and the DKIM key lookups,
 * all in flight together while the body still arrives; the end of the
 * body queues DKIM on a worker once its keys are in; DMARC is finished
 * with the SPF and DKIM outcomes; then the verdict.
 * Lifetime: every asynchronous step holds one count in `pending`; the
 * scan is freed when it has reported (or was abandoned) and pending is 0. */
#include "server/scan.h"
#include "server/dispatch.h"
#include "server/history.h"
#include "server/log.h"
#include "server/srv.h"
#include "server/stats.h"
#include "checks/arc/arc.h"
#include "checks/dkim/dkv.h"
#include "checks/dmarc/dmarc.h"
#include "checks/msg.h"
#include "checks/spf/spf.h"
#include "checks/verdict/verdict.h"
#include "common/text.h"
#include "common/trace.h"
#include "protocol/reply.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>

struct key_lookup {
	struct scan *sc;
	char qname[DKV_NAME_MAX];
};

struct dkim_job {                 /* DKIM and ARC verification of one message */
	uv_work_t work;
	struct scan *sc;
	struct dkv_result res;
	struct arc_result arc;
	struct trace trace;
	int rc, arc_rc;
};

/* Every DNS question of a scan goes through this wrapper: it writes the
 * question and its answer (status, DNSSEC, TTL, cache, time) to the trace,
 * and holds the scan alive until the answer has landed, also for lookups a
 * check no longer waits for. */
struct scan_dnsq {
	struct dnsq dq;               /* first */
	struct scan *sc;
};

struct tdq_ctx {
	struct scan *sc;
	dnsq_cb cb;
	void *arg;
};

struct scan {
	struct srv *srv;
	struct scan_dnsq sdq;
	struct srv_config *cfg;       /* reference held for the scan's life */
	struct engines *eng;
	struct proto_request req;
	char *msg;                    /* Content-Length + 1 bytes, allocated once */
	size_t msg_len, msg_cap;
	size_t hdr_end;               /* first body byte, 0 until known */
	size_t hdr_pos;               /* header-end search position */
	struct msg parsed;
	int headers_done;
	const char *header_error;     /* static text when msg_parse refused it */
	uint64_t t0_us, deadline_us;
	struct trace trace;
	uv_timer_t timer;             /* deadline, and deferred completion */
	int timer_open;
	unsigned pending;             /* asynchronous work not yet settled */
	int body_done, reported, abandoned, timed_out;
	int oom;                      /* a check lacked memory: the verdict is tempfail */
	scan_done_cb done;
	void *arg;

	/* SPF */
	int spf_done, helo_done;
	int spf_ran, helo_ran;
	struct spf_result spf, spf_helo;
	const char *why_spf;
	/* DKIM */
	struct dkv_keyset *keys;
	unsigned key_lookups;
	int dkim_queued, dkim_done, dkim_ran;   /* the crypto stage: DKIM and ARC */
	int has_dkim, arc_needs_crypto, arc_ran;
	struct dkv_result dkim;
	struct arc_result arc;
	char **asked;                 /* key names looked up (DKIM and ARC share them) */
	size_t n_asked;
	/* DMARC */
	struct dmarc_opts dmarc_opts;
	struct dmarc_eval *dmarc;
	int dmarc_finishing, dmarc_done, dmarc_ran;
	struct defer_item end_defer;   /* scan_end's step to the next loop turn */
	struct defer_item dmarc_defer; /* dmarc_finish's, through scan_defer_dmarc */
	void (*dmarc_defer_fn)(void *);
	void *dmarc_defer_arg;
	struct dmarc_result dmarc_res;
};

static void scan_progress(struct scan *sc);
static void scan_maybe_free(struct scan *sc);

static const char *rrtype_name(uint16_t t)
{
	switch (t) {
	case DNSQ_T_A:     return "A";
	case DNSQ_T_AAAA:  return "AAAA";
	case DNSQ_T_TXT:   return "TXT";
	case DNSQ_T_MX:    return "MX";
	case DNSQ_T_PTR:   return "PTR";
	case DNSQ_T_CNAME: return "CNAME";
	case DNSQ_T_NS:    return "NS";
	}
	return "?";
}

static void tdq_answer(void *arg, const struct dnsq_answer *a)
{
	struct tdq_ctx *x = arg;
	struct scan *sc = x->sc;
	if (sc->trace.enabled)
		trace_add(&sc->trace, "dns", "answer %s %s: %s%s%s, %s, %u records, ttl %u%s%s, %.1f ms",
		          rrtype_name(a->qtype), a->qname, dnsq_status_name(a->status),
		          a->why ? " - " : "", a->why ? a->why : "", dnsq_sec_name(a->sec),
		          (unsigned)a->count, a->ttl,
		          a->from_cache == 1 ? ", from cache" : a->from_cache == 0 ? ", not cached" : "",
		          a->stale ? ", STALE (expired record served, RFC 8767)" : "",
		          a->elapsed_us / 1000.0);
	x->cb(x->arg, a);
	free(x);
	sc->pending--;
	scan_maybe_free(sc);
}

static void tdq_lookup(struct dnsq *dq, const char *name, uint16_t type,
                       dnsq_cb cb, void *arg)
{
	struct scan_dnsq *w = (struct scan_dnsq *)dq;
	struct scan *sc = w->sc;
	struct tdq_ctx *x = malloc(sizeof(*x));
	if (!x) {
		/* no memory for the trace's wrapper: the lookup goes straight to
		 * the resolver (which answers even then); the check waiting for
		 * it keeps the scan alive on its own */
		trace_add(&sc->trace, "dns", "query %s %s (answer not traced: out of memory)",
		          rrtype_name(type), name);
		dnsq_lookup(sc->eng->dq, name, type, cb, arg);
		return;
	}
	x->sc = sc;
	x->cb = cb;
	x->arg = arg;
	sc->pending++;
	trace_add(&sc->trace, "dns", "query %s %s", rrtype_name(type), name);
	dnsq_lookup(sc->eng->dq, name, type, tdq_answer, x);
}

static void on_timer_closed(uv_handle_t *h)
{
	struct scan *sc = h->data;
	sc->timer_open = 0;
	/* scan_maybe_free() below runs again now that the timer is gone */
	if ((sc->reported || sc->abandoned) && sc->pending == 0) {
		struct srv *s = sc->srv;
		s->stats.scans_in_flight--;
		msg_free(&sc->parsed);
		trace_free(&sc->trace);
		proto_request_clear(&sc->req);
		dkv_keyset_free(&sc->keys);
		dkv_result_free(&sc->dkim);
		arc_result_free(&sc->arc);
		for (size_t i = 0; i < sc->n_asked; i++)
			free(sc->asked[i]);
		free(sc->asked);
		free(sc->msg);
		s->msg_bytes -= sc->msg_cap;
		cfg_unref(&sc->cfg);
		free(sc);
		srv_maybe_finish(s);
	}
}

static void scan_maybe_free(struct scan *sc)
{
	if (!(sc->reported || sc->abandoned) || sc->pending > 0)
		return;
	if (sc->timer_open && !uv_is_closing((uv_handle_t *)&sc->timer))
		uv_close((uv_handle_t *)&sc->timer, on_timer_closed);
}

static const char *domain_of(const char *addr)
{
	if (!addr)
		return NULL;
	const char *at = strrchr(addr, '@');
	return at ? at + 1 : addr;
}

/* ---- verdict and reply ---- */

static void scan_report(struct scan *sc)
{
	if (sc->reported || sc->abandoned)
		return;
	sc->reported = 1;
	struct srv *s = sc->srv;
	uint64_t ms = (trace_now_us() - sc->t0_us) / 1000;

	struct verdict_opts vo;
	cfg_verdict_opts(sc->cfg, &vo);
	struct verdict_in in = {
		.authserv_id = cfg_authserv_id(sc->cfg),
		.spf = sc->spf_done && sc->spf_ran ? &sc->spf : NULL,
		.why_spf = sc->why_spf ? sc->why_spf
		         : !sc->spf_done ? "not finished before the deadline" : NULL,
		.mail_from = sc->req.mail_from,
		.spf_helo = sc->helo_done && sc->helo_ran ? &sc->spf_helo : NULL,
		.helo = sc->req.helo,
		.dkim = sc->dkim_done && sc->dkim_ran ? &sc->dkim : NULL,
		.dkim_timeout = !sc->dkim_done,
		.dmarc = sc->dmarc_done && sc->dmarc_ran ? &sc->dmarc_res : NULL,
		.timed_out = sc->timed_out,
		.arc_oldest_pass = -1,
		.header_error = sc->header_error,
		.out_of_memory = sc->oom,
	};
	/* indirect-flow evidence (docs/policy.md), gathered for every message
	 * so that Authentication-Results can say whom the ARC chain came from */
	const char *passing[64];
	size_t np = 0;
	for (size_t i = 0; sc->dkim_ran && i < sc->dkim.n && np < 64; i++)
		if (sc->dkim.sigs[i].res == AUTH_PASS)
			passing[np++] = sc->dkim.sigs[i].d;
	const char *sealers[ARC_MAX_SETS];
	size_t ns = 0;
	if (sc->arc_ran && sc->arc.chain == AUTH_PASS && sc->arc.sets)
		for (size_t k = 0; k < sc->arc.n_sets && ns < ARC_MAX_SETS; k++)
			sealers[ns++] = sc->arc.sets[k].as.d;
	struct policy_facts facts = {
		.m = sc->headers_done ? &sc->parsed : NULL,
		.client_ip = sc->req.client_ip,
		.helo = sc->req.helo,
		.mail_from = sc->req.mail_from,
		.spf_helo_pass = sc->helo_ran && sc->spf_helo.result == AUTH_PASS,
		.spf_mfrom_pass = sc->spf_ran && sc->spf.result == AUTH_PASS,
		.dkim_pass = passing,
		.n_dkim_pass = np,
		.arc = sc->arc_ran ? sc->arc.chain : AUTH_NONE,
		.arc_sealers = sealers,
		.n_sealers = ns,
		.arc_oldest_pass = sc->arc_ran ? sc->arc.oldest_pass : 0,
		.aar1 = sc->arc_ran ? sc->arc.aar1 : NULL,
	};
	struct policy_evidence ev;
	policy_gather(&sc->cfg->policy, &facts, &ev);
	if (ev.arc == AUTH_PASS)
		trace_add(&sc->trace, "policy", "arc=pass, %s: chain %s", ev.arc_desc,
		          ev.arc_trusted ? "trusted" : "not trusted");

	char arc_text[sizeof(ev.arc_desc) + 32];
	if (sc->arc_ran && sc->arc.chain != AUTH_NONE) {
		in.arc = sc->arc.chain;
		if (sc->arc.chain == AUTH_PASS && ns > 0) {
			snprintf(arc_text, sizeof(arc_text), "i=%u, %s", sc->arc.n_sets, ev.arc_desc);
			in.arc_comment = arc_text;
			in.arc_oldest_pass = (int)sc->arc.oldest_pass;
		} else {
			in.arc_comment = sc->arc.reason;
		}
	}
	/* may a DMARC reject be lowered? and the verdict */
	struct policy_decision pd;
	struct verdict v;
	verdict_decide(&sc->cfg->policy, &vo, &in, &ev, &pd, &v, &sc->trace);
	if (in.policy && pd.override)
		stats_count_override(s, pd.override);
	else if (in.policy && sc->dmarc_res.override != DMARC_OVR_NONE)
		stats_count_override(s, dmarc_override_name(sc->dmarc_res.override));
	history_add(s, sc->cfg, &sc->req, &in, &facts, &ev, &v);

	char qheader[512];
	const char *add[1];
	size_t n_add = 0;
	if (v.action == VERDICT_QUARANTINE) {
		snprintf(qheader, sizeof(qheader), "X-Alignd-Quarantine: yes (%s)",
		         v.override ? v.override : v.summary);
		add[n_add++] = qheader;
	}
	struct proto_result res = {
		.queue_id = sc->req.queue_id,
		.action = verdict_action_name(v.action),
		.score = v.score,
		.smtp_reply = v.smtp_reply[0] ? v.smtp_reply : NULL,
		.symbols = v.syms,
		.n_symbols = v.n_syms,
		.auth_results = v.ar.failed ? NULL : v.ar.data,
		.add_headers = add,
		.n_add_headers = n_add,
	};
	struct proto_trace_line *tl = NULL;
	if (sc->req.explain && sc->trace.n) {
		trace_sort(&sc->trace);
		tl = calloc(sc->trace.n, sizeof(*tl));
		if (tl) {
			for (size_t i = 0; i < sc->trace.n; i++)
				tl[i] = (struct proto_trace_line){ sc->trace.lines[i].t_us,
				        sc->trace.lines[i].area, sc->trace.lines[i].text };
			res.trace = tl;
			res.n_trace = sc->trace.n;
			res.trace_dropped = sc->trace.dropped;
		}
	}
	switch (v.action) {
	case VERDICT_ACCEPT:     s->stats.action_accept++; break;
	case VERDICT_QUARANTINE: s->stats.action_quarantine++; break;
	case VERDICT_REJECT:     s->stats.action_reject++; break;
	case VERDICT_TEMPFAIL:   s->stats.action_tempfail++; break;
	}
	stats_count_scan(s, in.spf, in.spf_helo, in.dkim, in.dmarc, trace_now_us() - sc->t0_us);
	char size[24], score[24], msec[24];
	snprintf(size, sizeof(size), "%zu", sc->msg_len);
	snprintf(score, sizeof(score), "%.2f", v.score);
	snprintf(msec, sizeof(msec), "%llu", (unsigned long long)ms);
	const struct log_kv kv[] = {
		{ "qid", log_clean(sc->req.queue_id), 0 },
		{ "ip", log_clean(sc->req.client_ip), 0 },
		{ "helo", log_clean(sc->req.helo), 0 },
		{ "mfrom", log_clean(domain_of(sc->req.mail_from)), 0 },
		{ NULL, log_clean(v.summary), 0 },
		{ "size", size, 1 },
		{ "action", res.action, 0 },
		{ "score", score, 1 },
		{ "ms", msec, 1 },
		{ "deadline", "yes", 0 },
	};
	log_event(LOG_LVL_INFO, "scan", kv, sizeof(kv) / sizeof(kv[0]) - !sc->timed_out);
	sc->done(sc->arg, &res);
	free(tl);
	verdict_free(&v);
}

/* ---- SPF ---- */

static void on_spf(void *arg, const struct spf_result *r)
{
	struct scan *sc = arg;
	sc->spf = *r;
	sc->spf_done = 1;
	sc->spf_ran = 1;
	sc->pending--;
	trace_add(&sc->trace, "spf", "MAIL FROM result %s for %s (%u DNS terms, %u lookups, %u at once)",
	          auth_res_name(r->result), r->domain, r->dns_terms, r->lookups, r->max_parallel);
	scan_progress(sc);
}

static void on_spf_helo(void *arg, const struct spf_result *r)
{
	struct scan *sc = arg;
	sc->spf_helo = *r;
	sc->helo_done = 1;
	sc->helo_ran = 1;
	sc->pending--;
	trace_add(&sc->trace, "spf", "HELO result %s for %s", auth_res_name(r->result), r->domain);
	scan_progress(sc);
}

/* No memory to start check_host(): a temporary error, as the RFC 7208
 * 2.6.6 result for a transient failure, never a silent "none" */
static void spf_no_memory(struct scan *sc, struct spf_result *r, const char *domain)
{
	memset(r, 0, sizeof *r);
	r->result = AUTH_TEMPERROR;
	snprintf(r->domain, sizeof r->domain, "%s", domain ? domain : "");
	snprintf(r->problem, sizeof r->problem, "out of memory");
	trace_add(&sc->trace, "spf", "check_host not started: out of memory");
	sc->oom = 1;
}

static void start_spf(struct scan *sc)
{
	const struct proto_request *q = &sc->req;
	int engine = strcmp(sc->cfg->spf_engine, "libspf2") == 0 ? SPF_ENGINE_LIBSPF2
	                                                          : SPF_ENGINE_NATIVE;
	if (!q->client_ip) {
		sc->why_spf = "client IP not given";
		sc->spf_done = sc->helo_done = 1;
		return;
	}
	if (!q->mail_from) {
		sc->why_spf = "envelope sender not given";
		sc->spf_done = 1;
	} else if (!q->mail_from[0] && !q->helo) {
		sc->why_spf = "null sender and no HELO";
		sc->spf_done = 1;
	} else {
		struct spf_request rq;
		spf_request_mailfrom(&rq, q->client_ip, q->mail_from, q->helo);
		rq.deadline_us = sc->deadline_us;
		rq.engine = engine;
		rq.receiver = cfg_authserv_id(sc->cfg);
		sc->pending++;
		if (spf_check_host(&sc->sdq.dq, &rq, &sc->trace, on_spf, sc) < 0) {
			sc->pending--;
			spf_no_memory(sc, &sc->spf, domain_of(q->mail_from));
			sc->spf_done = sc->spf_ran = 1;
		}
	}
	/* RFC 7208 2.3: checking HELO too is recommended; with a null sender
	 * the MAIL FROM check above already is the HELO identity */
	if (sc->cfg->spf_helo && q->helo && q->mail_from && q->mail_from[0]) {
		struct spf_request rq;
		spf_request_helo(&rq, q->client_ip, q->helo);
		rq.deadline_us = sc->deadline_us;
		rq.engine = engine;
		rq.receiver = cfg_authserv_id(sc->cfg);
		sc->pending++;
		if (spf_check_host(&sc->sdq.dq, &rq, &sc->trace, on_spf_helo, sc) < 0) {
			sc->pending--;
			spf_no_memory(sc, &sc->spf_helo, q->helo);
			sc->helo_done = sc->helo_ran = 1;
		}
	} else {
		sc->helo_done = 1;
	}
}

/* ---- DKIM and ARC: keys on the loop, crypto on a worker ---- */

static void on_key(void *arg, const struct dnsq_answer *a)
{
	struct key_lookup *k = arg;
	struct scan *sc = k->sc;
	if (dkv_keyset_put(sc->keys, k->qname, a) < 0) {
		trace_add(&sc->trace, "dkim", "cannot store the key answer for %s", k->qname);
		sc->oom = 1;
	}
	free(k);
	sc->key_lookups--;
	sc->pending--;
	scan_progress(sc);
}

/* Looks a key record up once per scan, whichever check asked first. */
static void want_key(struct scan *sc, const char *qname)
{
	for (size_t i = 0; i < sc->n_asked; i++)
		if (strcmp(sc->asked[i], qname) == 0)
			return;
	/* at most one per DKIM signature and ARC signature (both capped) */
	if (sc->n_asked >= LIM_DKIM_MAX_SIGNATURES * 8 + ARC_MAX_REFS)
		return;             /* beyond the caps: the key stays missing (temperror) */
	char **na = realloc(sc->asked, (sc->n_asked + 1) * sizeof(*na));
	if (!na) {
		sc->oom = 1;
		return;
	}
	sc->asked = na;
	struct key_lookup *k = malloc(sizeof(*k));
	if (!k || !(sc->asked[sc->n_asked] = strdup(qname))) {
		free(k);
		sc->oom = 1;
		return;
	}
	sc->n_asked++;
	k->sc = sc;
	memcpy(k->qname, qname, sizeof(k->qname));
	sc->key_lookups++;
	sc->pending++;
	dnsq_lookup(&sc->sdq.dq, k->qname, DNSQ_T_TXT, on_key, k);
}

static void start_keys(struct scan *sc)
{
	struct dkv_sigref refs[64];
	size_t max = dkv_lib_max_signatures(sc->eng->dkv);
	if (max > 64)
		max = 64;
	size_t total = 0;
	size_t n = dkv_list(&sc->parsed, refs, max, &total);
	struct arc_ref *arefs = calloc(ARC_MAX_REFS, sizeof(*arefs));
	struct arc_listing sum;
	size_t na = arefs ? arc_list(&sc->parsed, arefs, ARC_MAX_REFS, &sum) : 0;
	if (!arefs) {
		sc->oom = 1;
		sum.decided = 1;
		sum.result = AUTH_TEMPERROR;
		snprintf(sum.reason, sizeof(sum.reason), "out of memory");
	}
	sc->has_dkim = total > 0;
	sc->arc_needs_crypto = !sum.decided;
	if (sum.decided) {
		/* no ARC field, or a structure that fails before any crypto */
		sc->arc.chain = sum.result;
		snprintf(sc->arc.reason, sizeof(sc->arc.reason), "%s", sum.reason);
		sc->arc.n_sets = sum.n_sets;
		sc->arc_ran = 1;
		if (sum.result != AUTH_NONE)
			trace_add(&sc->trace, "arc", "arc=%s without crypto: %s",
			          auth_res_name(sum.result), sum.reason);
	}
	if (!sc->has_dkim && !sc->arc_needs_crypto) {
		free(arefs);
		sc->dkim_done = 1;     /* nothing to verify */
		return;
	}
	sc->keys = dkv_keyset_new();
	if (!sc->keys) {
		sc->oom = 1;
		free(arefs);
		sc->dkim_done = 1;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (!refs[i].qname[0])
			continue;
		trace_add(&sc->trace, "dkim", "signature %zu d=%s s=%s a=%s: key %s",
		          i + 1, refs[i].d, refs[i].s, refs[i].a, refs[i].qname);
		want_key(sc, refs[i].qname);
	}
	for (size_t i = 0; sc->arc_needs_crypto && i < na; i++)
		if (arefs[i].qname[0])
			want_key(sc, arefs[i].qname);
	free(arefs);
}

static void crypto_work(uv_work_t *w)
{
	struct dkim_job *j = w->data;
	struct scan *sc = j->sc;
	if (sc->has_dkim)
		j->rc = dkv_verify(sc->eng->dkv, sc->msg, sc->msg_len, sc->keys, &j->res, &j->trace);
	if (sc->arc_needs_crypto) {
		struct arc_opts ao = { .key_cache = dkv_lib_key_cache(sc->eng->dkv) };
		j->arc_rc = arc_verify(&ao, sc->msg, sc->msg_len, sc->keys, &j->arc, &j->trace);
	}
	/* OpenSSL keeps per-thread state (the error queue) that libuv's pool
	 * threads never release at exit: free it after each job */
	OPENSSL_thread_stop();
}

static void crypto_after(uv_work_t *w, int status)
{
	struct dkim_job *j = w->data;
	struct scan *sc = j->sc;
	if (status == 0 && sc->has_dkim) {
		sc->dkim = j->res;
		sc->dkim_ran = 1;
	} else {
		dkv_result_free(&j->res);
	}
	if (status == 0 && sc->arc_needs_crypto) {
		sc->arc = j->arc;
		sc->arc_ran = 1;
	} else {
		arc_result_free(&j->arc);
	}
	trace_merge(&sc->trace, &j->trace);
	trace_free(&j->trace);
	if (status == 0 && (j->rc < 0 || j->arc_rc < 0))
		trace_add(&sc->trace, "dkim", "verification failed internally (%d, %d)", j->rc, j->arc_rc);
	if (j->rc == -ENOMEM || j->arc_rc == -ENOMEM)
		sc->oom = 1;
	free(j);
	sc->dkim_done = 1;
	sc->pending--;
	scan_progress(sc);
}

static void queue_crypto(struct scan *sc)
{
	struct dkim_job *j = calloc(1, sizeof(*j));
	sc->dkim_queued = 1;
	if (!j) {
		sc->oom = 1;
		sc->dkim_done = 1;
		return;
	}
	j->sc = sc;
	j->work.data = j;
	trace_init(&j->trace, sc->t0_us, sc->req.explain);
	sc->pending++;
	sc->eng->dkim_jobs++;
	if (uv_queue_work(sc->srv->loop, &j->work, crypto_work, crypto_after) < 0) {
		sc->pending--;
		trace_free(&j->trace);
		free(j);
		sc->oom = 1;
		sc->dkim_done = 1;
	}
}

/* ---- DMARC ---- */

static void on_dmarc(void *arg, const struct dmarc_result *r)
{
	struct scan *sc = arg;
	sc->dmarc_res = *r;
	sc->dmarc_done = 1;
	sc->dmarc_ran = 1;
	sc->pending--;
	scan_progress(sc);
}

/* DMARC defers one call per evaluation (dmarc_finish): through the
 * scan's own node, so it allocates nothing. The evaluation may report
 * before that call runs, so the scan stays until it has run. */
static void scan_dmarc_deferred(void *arg)
{
	struct scan *sc = arg;
	sc->dmarc_defer_fn(sc->dmarc_defer_arg);
	sc->pending--;
	scan_maybe_free(sc);
}

static void scan_defer_dmarc(void *arg, void (*fn)(void *), void *fn_arg)
{
	struct scan *sc = arg;
	sc->dmarc_defer_fn = fn;
	sc->dmarc_defer_arg = fn_arg;
	sc->pending++;
	dispatch_defer(sc->eng, &sc->dmarc_defer, scan_dmarc_deferred, sc);
}

static void start_dmarc(struct scan *sc)
{
	struct dmarc_author author;
	if (dmarc_author(&sc->parsed, &author) < 0 && author.status == DMARC_AUTHOR_NO_MEMORY)
		sc->oom = 1;
	struct dmarc_opts *o = &sc->dmarc_opts;
	memset(o, 0, sizeof(*o));
	o->mode = strcmp(sc->cfg->dmarc_mode, "rfc7489") == 0 ? DMARC_MODE_RFC7489
	                                                       : DMARC_MODE_RFC9989;
	o->psl = sc->eng->psl;
	o->defer = scan_defer_dmarc;
	o->defer_arg = sc;
	if (o->mode == DMARC_MODE_RFC7489 && !o->psl)
		o->mode = DMARC_MODE_RFC9989;
	/* no usable From (RFC 5322 3.6: exactly one, with a mailbox): the
	 * author cannot be judged */
	o->bad_author_disp_set = 1;
	o->bad_author_disp = cfg_bad_author_disp(sc->cfg);
	sc->dmarc = dmarc_start(&sc->sdq.dq, o, &author, sc->deadline_us, &sc->trace);
	if (sc->dmarc) {
		sc->pending++;   /* released by on_dmarc, once dmarc_finish ran */
	} else {
		sc->oom = 1;     /* it fails only without memory */
		sc->dmarc_done = 1;
	}
}

static void finish_dmarc(struct scan *sc)
{
	struct dmarc_dkim_in dk[LIM_DKIM_MAX_SIGNATURES * 8];
	size_t nd = 0;
	if (sc->dkim_ran)
		for (size_t i = 0; i < sc->dkim.n && nd < sizeof(dk) / sizeof(dk[0]); i++)
			dk[nd++] = (struct dmarc_dkim_in){ sc->dkim.sigs[i].res, sc->dkim.sigs[i].d };
	const struct proto_request *q = &sc->req;
	struct dmarc_inputs in = {
		.spf = sc->spf_ran ? sc->spf.result : AUTH_NONE,
		.spf_domain = sc->spf_ran ? sc->spf.domain : NULL,
		.mail_from_null = q->mail_from && !q->mail_from[0],
		.helo = q->helo,
		.dkim = dk,
		.n_dkim = nd,
		.sample_key = q->queue_id,
	};
	const struct msg_field *mid = sc->headers_done ? msg_get(&sc->parsed, "Message-ID", 0) : NULL;
	char midbuf[256];
	if (mid && msg_unfold(mid->value, mid->value_len, midbuf, sizeof(midbuf)) != (size_t)-1)
		in.sample_key = midbuf;
	sc->dmarc_finishing = 1;
	dmarc_finish(sc->dmarc, &in, on_dmarc, sc);
}

/* ---- orchestration ---- */

static void scan_progress(struct scan *sc)
{
	if (sc->abandoned) {
		scan_maybe_free(sc);
		return;
	}
	if (sc->body_done && sc->headers_done && !sc->dkim_done && !sc->dkim_queued &&
	    sc->key_lookups == 0)
		queue_crypto(sc);
	if (sc->dmarc && !sc->dmarc_finishing && sc->spf_done && sc->dkim_done)
		finish_dmarc(sc);
	if (sc->body_done && sc->spf_done && sc->helo_done && sc->dkim_done && sc->dmarc_done)
		scan_report(sc);
	scan_maybe_free(sc);
}

static void deferred_progress(void *arg)
{
	struct scan *sc = arg;
	sc->pending--;
	scan_progress(sc);
}

static void on_deadline(uv_timer_t *t)
{
	struct scan *sc = t->data;
	if (sc->reported || sc->abandoned)
		return;
	sc->timed_out = 1;
	trace_add(&sc->trace, "scan", "deadline of %llu ms reached with %u steps pending",
	          (unsigned long long)sc->cfg->scan_timeout, sc->pending);
	scan_report(sc);
	scan_maybe_free(sc);
}

struct scan *scan_new(struct srv *s, struct proto_request *req,
                      scan_done_cb done, void *arg)
{
	struct scan *sc = calloc(1, sizeof(*sc));
	if (!sc)
		return NULL;
	/* The buffer is allocated once at its announced size, so pointers into
	 * it stay valid; pages are only touched as bytes arrive. */
	sc->msg_cap = (size_t)req->content_length;
	sc->msg = malloc(sc->msg_cap + 1);
	if (!sc->msg) {
		free(sc);
		return NULL;
	}
	sc->srv = s;
	s->msg_bytes += sc->msg_cap;
	sc->eng = s->eng;
	sc->sdq.dq.lookup = tdq_lookup;
	sc->sdq.sc = sc;
	sc->cfg = cfg_ref(s->cfg);
	sc->req = *req;
	memset(req, 0, sizeof(*req));
	sc->done = done;
	sc->arg = arg;
	sc->t0_us = trace_now_us();
	trace_init(&sc->trace, sc->t0_us, sc->req.explain);
	uv_timer_init(s->loop, &sc->timer);
	sc->timer.data = sc;
	sc->timer_open = 1;
	s->stats.scans_total++;
	s->stats.scans_in_flight++;
	trace_add(&sc->trace, "scan", "request: ip=%s helo=%s mail-from=<%s> rcpts=%zu size=%zu",
	          sc->req.client_ip ? sc->req.client_ip : "-",
	          sc->req.helo ? sc->req.helo : "-",
	          sc->req.mail_from ? sc->req.mail_from : "", sc->req.n_rcpt, sc->msg_cap);
	/* the deadline counts from the end of the message (scan_end); checks
	 * that start earlier get the same absolute bound plus reading time */
	sc->deadline_us = sc->t0_us + sc->cfg->request_timeout * 1000 + sc->cfg->scan_timeout * 1000;
	start_spf(sc);
	return sc;
}

static void scan_headers_ready(struct scan *sc)
{
	int rc = msg_parse(sc->msg, sc->hdr_end, &sc->parsed);
	sc->headers_done = 1;
	if (rc == MSG_E_NOMEM) {
		sc->oom = 1;
		trace_add(&sc->trace, "scan", "no memory to split the header section");
	} else if (rc != MSG_OK) {
		sc->header_error = rc == MSG_E_TOO_MANY ? "header section has too many fields"
		                 : rc == MSG_E_LINE ? "a header field is too long"
		                 : rc == MSG_E_BLOCK ? "header section too large"
		                 : "header section could not be split";
		trace_add(&sc->trace, "scan", "%s: checks see no header", sc->header_error);
	}
	trace_add(&sc->trace, "scan", "header section complete: %zu bytes, %zu fields",
	          sc->hdr_end, sc->parsed.n_fields);
	start_dmarc(sc);
	start_keys(sc);
}

/* Incremental search for the blank line that ends the header section:
 * *pos is where to look for the next LF, 0 before anything was examined. */
static size_t find_header_end(const char *m, size_t len, size_t *pos)
{
	size_t i = *pos;
	if (i == 0) {
		/* an empty first line */
		if (len < 1 || (m[0] == '\r' && len < 2))
			return 0;
		if (m[0] == '\n')
			return 1;
		if (m[0] == '\r' && m[1] == '\n')
			return 2;
	}
	while (i < len) {
		const char *nl = memchr(m + i, '\n', len - i);
		if (!nl) {
			*pos = len;
			return 0;
		}
		size_t k = (size_t)(nl - m) + 1;     /* start of the next line */
		if (k >= len || (m[k] == '\r' && k + 1 >= len)) {
			*pos = k - 1;                  /* look at this LF again later */
			return 0;
		}
		if (m[k] == '\n')
			return k + 1;
		if (m[k] == '\r' && m[k + 1] == '\n')
			return k + 2;
		i = k;
	}
	*pos = i;
	return 0;
}

void scan_body(struct scan *sc, const char *data, size_t len)
{
	if (sc->msg_cap - sc->msg_len < len)
		len = sc->msg_cap - sc->msg_len;   /* the parser never sends more */
	memcpy(sc->msg + sc->msg_len, data, len);
	sc->msg_len += len;
	if (sc->hdr_end == 0) {
		size_t e = find_header_end(sc->msg, sc->msg_len, &sc->hdr_pos);
		if (e) {
			sc->hdr_end = e;
			scan_headers_ready(sc);
		}
	}
}

void scan_end(struct scan *sc)
{
	sc->body_done = 1;
	sc->msg[sc->msg_len] = '\0';
	if (sc->hdr_end == 0) {
		/* no blank line: the whole message is header section */
		sc->hdr_end = sc->msg_len;
		scan_headers_ready(sc);
	}
	uint64_t now = trace_now_us();
	if (sc->deadline_us > now + sc->cfg->scan_timeout * 1000)
		sc->deadline_us = now + sc->cfg->scan_timeout * 1000;
	uv_timer_start(&sc->timer, on_deadline, sc->cfg->scan_timeout, 0);
	/* progress on the next loop turn: done() never runs inside this call */
	sc->pending++;
	dispatch_defer(sc->eng, &sc->end_defer, deferred_progress, sc);
}

void scan_abandon(struct scan *sc)
{
	sc->abandoned = 1;
	/* DMARC evaluations end through dmarc_finish: give it what there is */
	if (sc->dmarc && !sc->dmarc_finishing)
		finish_dmarc(sc);
	scan_maybe_free(sc);
}
