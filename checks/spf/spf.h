/* SPF (RFC 7208): check_host() evaluated asynchronously over struct dnsq.
 * Loop thread only. Two engines behind one call: alignd's own evaluator
 * (default) and libspf2 behind a guard (SPF_ENGINE_LIBSPF2). An evaluation
 * owns copies of everything it was given and frees itself. */
#ifndef ALIGND_SPF_H
#define ALIGND_SPF_H

#include <stddef.h>
#include <stdint.h>

#include "checks/auth.h"
#include "checks/dnsq.h"
#include "common/limits.h"
#include "common/trace.h"

enum spf_engine { SPF_ENGINE_NATIVE = 0, SPF_ENGINE_LIBSPF2 = 1 };

/* All pointers are borrowed for the duration of spf_check_host() only:
 * the evaluation copies what it needs before returning. */
struct spf_request {
	const char *ip;        /* client address, IPv4 or IPv6 text; IPv4-mapped
	                        * IPv6 is evaluated as IPv4 (RFC 7208 5) */
	const char *sender;    /* local@domain; NULL or "" (null MAIL FROM) means
	                        * postmaster@<helo> (RFC 7208 2.4); a missing local
	                        * part means "postmaster" (RFC 7208 4.3) */
	const char *domain;    /* check_host <domain>; NULL: the sender's domain */
	const char *helo;      /* HELO/EHLO argument, for %{h}; may be NULL */
	const char *receiver;  /* for %{r}; NULL: "unknown" */
	const char *default_explanation; /* macro-string used for a fail without
	                        * a usable exp=; NULL: no explanation */
	uint64_t deadline_us;  /* absolute, trace_now_us() clock; 0: none */
	int engine;            /* enum spf_engine */
};

#define SPF_MECH_MAX 256u

struct spf_result {
	enum auth_res result;
	char domain[LIM_DNS_MAX_NAME + 1];      /* the <domain> checked */
	char mechanism[SPF_MECH_MAX];           /* matching term, or "default",
	                                         * "redirect=..." as applicable */
	char explanation[LIM_SPF_EXPLANATION + 1]; /* fail only; may be "" */
	char problem[256];                      /* why permerror/temperror/none */
	unsigned dns_terms;      /* DNS-querying terms evaluated (limit 10) */
	unsigned void_lookups;   /* void answers counted (limit 2) */
	unsigned lookups;        /* DNS lookups issued, speculative ones included */
	unsigned max_parallel;   /* most lookups of this evaluation in flight at once */
	int engine;              /* engine that produced the result */
};

/* Runs once per evaluation; r is borrowed for the call. */
typedef void (*spf_done_cb)(void *arg, const struct spf_result *r);

/* Starts check_host(). `done` runs exactly once, later, from inside a dnsq
 * callback, never from inside spf_check_host(): even a result known at once
 * (malformed domain, bad IP) is delivered after one harmless lookup of
 * "invalid." (RFC 6761 special-use name, answered by the resolver locally).
 * `done` runs as soon as the result is known; lookups still in flight then
 * are absorbed when they land, and the evaluation frees itself once `done`
 * has run and none of its lookups is pending. The dnsq implementation must
 * eventually answer every lookup (it owns the per-lookup deadline); answers
 * that land after rq->deadline_us count as timeouts and no lookup starts
 * after it. `t` (may be NULL) must outlive the evaluation's `done`.
 * Returns 0, or -1 when there was no memory to start: then `done` will not
 * run and nothing is left to free (the caller reports a temperror). */
int spf_check_host(struct dnsq *dq, const struct spf_request *rq,
                   struct trace *t, spf_done_cb done, void *arg)
	__attribute__((warn_unused_result));

/* Request builders (RFC 7208 2.3, 2.4). They only set pointers (borrowed);
 * the other fields are zeroed. mail_from NULL or "" is the null sender, for
 * which check_host runs on the HELO domain with postmaster@<helo>. */
void spf_request_mailfrom(struct spf_request *rq, const char *ip,
                          const char *mail_from, const char *helo);
void spf_request_helo(struct spf_request *rq, const char *ip,
                      const char *helo);

const char *spf_engine_name(int engine);

#endif
