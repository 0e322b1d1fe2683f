/* Start-up and shutdown of the check engines, their counters, and the
 * deferral queue. Loop thread. */
#include "server/dispatch.h"
#include "server/dns.h"
#include "server/log.h"
#include "server/srv.h"
#include "checks/dkim/dkv.h"
#include "checks/dmarc/dmarc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void on_defer_idle(uv_idle_t *h)
{
	struct engines *e = h->data;
	/* run what is queued now; items queued by these calls wait a turn */
	struct defer_item *it = e->defer_head;
	e->defer_head = e->defer_tail = NULL;
	uv_idle_stop(h);
	while (it) {
		struct defer_item *next = it->next;
		it->next = NULL;
		it->fn(it->arg);     /* may free the node's owner */
		it = next;
	}
}

void dispatch_defer(struct engines *e, struct defer_item *it, void (*fn)(void *), void *arg)
{
	it->next = NULL;
	it->fn = fn;
	it->arg = arg;
	if (e->defer_tail)
		e->defer_tail->next = it;
	else
		e->defer_head = it;
	e->defer_tail = it;
	uv_idle_start(&e->defer_idle, on_defer_idle);
}

void dispatch_dns_opts(const struct srv_config *c, struct dns_opts *o)
{
	dns_opts_default(o);
	o->trust_anchor_file = c->dns_trust_anchor;
	o->recursion = strcmp(c->dns_mode, "recursive") == 0;
	o->forwarders = c->dns_forwarders;
	o->unbound_config = *c->unbound_config ? c->unbound_config : NULL;
	o->timeout_ms = (unsigned)c->dns_timeout;
	o->msg_cache_size = (size_t)c->dns_msg_cache_size;
	o->rrset_cache_size = (size_t)c->dns_rrset_cache_size;
	o->serve_stale = c->dns_serve_stale;
	o->qname_minimisation = c->dns_qname_minimisation;
}

int dispatch_init(struct srv *s, char *err, size_t errlen)
{
	const struct srv_config *c = s->cfg;
	struct engines *e = calloc(1, sizeof(*e));
	if (!e) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	uv_idle_init(s->loop, &e->defer_idle);
	e->defer_idle.data = e;

	struct dns_opts o;
	dispatch_dns_opts(c, &o);
	char e2[512];
	if (srv_dns_new(s->loop, &o, &e->dns, e2, sizeof(e2)) < 0) {
		snprintf(err, errlen, "DNS: %s", e2);
		goto fail;
	}
	e->dq = srv_dns_dnsq(e->dns);

	struct dkv_opts ko = {
		.max_signatures = (unsigned)c->dkim_max_signatures,
		.engine = strcmp(c->dkim_engine, "libopendkim") == 0 ? DKV_ENGINE_LIBOPENDKIM
		                                                      : DKV_ENGINE_NATIVE,
		.key_cache = (size_t)c->dkim_key_cache,
	};
	e->dkv = dkv_lib_new(&ko, e2, sizeof(e2));
	if (!e->dkv) {
		snprintf(err, errlen, "DKIM: %s", e2);
		goto fail;
	}
	/* the list is loaded even in rfc9989 mode so that a reload to rfc7489
	 * works without a restart; it is small and read-only */
	e->psl = dmarc_psl_open(NULL);
	if (!e->psl && strcmp(c->dmarc_mode, "rfc7489") == 0) {
		snprintf(err, errlen, "DMARC: cannot load the public suffix list");
		goto fail;
	}
	s->eng = e;
	return 0;
fail:
	if (e->dns)
		srv_dns_close(&e->dns);
	dkv_lib_free(&e->dkv);
	uv_close((uv_handle_t *)&e->defer_idle, NULL);
	/* e itself is released by the caller's exit; its idle handle closes
	 * with the loop */
	return -1;
}

static void on_idle_closed(uv_handle_t *h)
{
	free(h->data);
}

void dispatch_close(struct srv *s)
{
	struct engines *e = s->eng;
	if (!e)
		return;
	s->eng = NULL;
	/* Every scan has ended, but an abandoned check may still have its
	 * last deferred step queued (it only frees itself): run those now
	 * rather than leave them to an idle handle that is closing. */
	while (e->defer_head)
		on_defer_idle(&e->defer_idle);
	srv_dns_close(&e->dns);
	dkv_lib_free(&e->dkv);
	dmarc_psl_close(&e->psl);
	uv_close((uv_handle_t *)&e->defer_idle, on_idle_closed);
}

size_t dispatch_stats(struct srv *s, const char **names, uint64_t *values,
                      size_t max)
{
	struct engines *e = s->eng;
	if (!e || !e->dns)
		return 0;
	struct srv_dns_stats st;
	srv_dns_stats(e->dns, &st);
	const char *n[] = { "DNS-Lookups", "DNS-Answered", "DNS-In-Flight", "DNS-In-Flight-Peak",
	                    "DNS-Timeouts", "DNS-Bogus", "DNS-Servfail", "DNS-Nxdomain",
	                    "DNS-Rejected", "DNS-Cache-Hits", "DNS-Stale", "DNS-Memo-Hits", "DKIM-Jobs" };
	uint64_t v[] = { st.started, st.answered, st.inflight, st.inflight_peak, st.timeouts,
	                 st.bogus, st.servfail, st.nxdomain, st.rejected, st.cache_hits,
	                 st.stale, st.memo_hits, e->dkim_jobs };
	size_t k = 0;
	for (; k < sizeof(n) / sizeof(n[0]) && k < max; k++) {
		names[k] = n[k];
		values[k] = v[k];
	}
	return k;
}
