/* The shared validating DNS cache: struct dnsq over one libunbound context.
 * Loop thread only. Owns the ub_ctx, a uv_poll on its answer pipe, one
 * deadline timer, one idle handle for answers that are ready at once, and
 * every lookup record until its callback has run. */
#include "server/dns.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unbound.h>
#include <unistd.h>

#include "common/limits.h"

#define DNS_ROOT_KEY "/usr/share/dns/root.key"
/* RFC 8767 5: a stale answer may be served for 1 to 3 days; wait 1.8 s for a
 * fresh answer before falling back to the stale one. */
#define DNS_STALE_TTL_S "86400"
#define DNS_STALE_CLIENT_TIMEOUT_MS "1800"
/* A text name without its final dot fits in 253 bytes (RFC 1035 2.3.4). */
#define DNS_MAX_TEXT_NAME (LIM_DNS_MAX_NAME - 2)

/* A lookup. It lives on exactly one list at a time: `pending` while
 * libunbound may still call back for it, `ready` once its outcome is known
 * and its callback has not run yet. Freed right after its callback. */
struct dns_q {
	struct dns_q *prev, *next;
	struct srv_dns *d;
	dnsq_cb cb;
	void *arg;
	uint64_t start_ns;           /* uv_hrtime() at lookup() */
	uint64_t deadline_ms;        /* loop time */
	int async_id;
	int ub_err;                  /* from the libunbound callback */
	struct ub_result *res;       /* owned; NULL for local outcomes */
	struct memo *memo;           /* answered from the memo (holds a ref) */
	enum dnsq_status status;     /* local outcome when res == NULL */
	const char *why;             /* static text for local outcomes */
	uint16_t type;
	char name[DNS_MAX_TEXT_NAME + 2];
};

struct qlist {
	struct dns_q *head, *tail;
	size_t n;
};

/* An answer kept until its TTL runs out (see "answer memo" below). */
struct memo {
	uint64_t key;
	uint64_t expiry_ms;          /* loop time */
	unsigned refs;               /* lookups about to be answered from it */
	int detached;                /* replaced in the table: free at refs 0 */
	enum dnsq_status status;     /* DNSQ_OK, DNSQ_NODATA or DNSQ_NXDOMAIN */
	enum dnsq_sec sec;           /* never DNSQ_SEC_BOGUS */
	size_t size;                 /* bytes allocated, counted in memo_bytes */
	uint16_t type;
	size_t count;
	size_t *lens;                /* count lengths, then the data */
	const unsigned char **rdata;
	char name[];
};

struct seen_slot {
	uint64_t key;
	uint64_t expiry_ms;
};

struct srv_dns {
	struct dnsq dq;              /* first member: lookup() casts back */
	uv_loop_t *loop;
	struct ub_ctx *ctx;
	uv_poll_t poll;
	uv_timer_t timer;
	uv_idle_t idle;
	int open_handles;
	int closing;
	int delivering;              /* depth of callbacks running */
	unsigned timeout_ms;
	unsigned max_inflight;
	int serve_stale;
	/* Deadlines all use the same timeout, so start order is deadline
	 * order: the pending list is a FIFO and the head expires first. */
	struct qlist pending;
	struct qlist ready;
	struct srv_dns_stats st;
	struct seen_slot *seen;
	struct memo **memo;          /* LIM_DNS_MEMO_SLOTS, direct-mapped */
	size_t memo_bytes;           /* held by entries in the table */
	/* Lookups that start while malloc fails still owe one callback: they
	 * take a node from here and are answered TEMPFAIL ("out of memory").
	 * spare links the free ones. */
	struct dns_q reserve[LIM_DNS_OOM_RESERVE];
	struct dns_q *spare;
};

static int from_reserve(const struct srv_dns *d, const struct dns_q *q)
{
	return q >= d->reserve && q < d->reserve + LIM_DNS_OOM_RESERVE;
}

static void q_free(struct srv_dns *d, struct dns_q *q)
{
	if (from_reserve(d, q)) {
		q->next = d->spare;
		d->spare = q;
	} else {
		free(q);
	}
}

static void q_append(struct qlist *l, struct dns_q *q)
{
	q->next = NULL;
	q->prev = l->tail;
	if (l->tail)
		l->tail->next = q;
	else
		l->head = q;
	l->tail = q;
	l->n++;
}

static void q_unlink(struct qlist *l, struct dns_q *q)
{
	if (q->prev)
		q->prev->next = q->next;
	else
		l->head = q->next;
	if (q->next)
		q->next->prev = q->prev;
	else
		l->tail = q->prev;
	q->prev = q->next = NULL;
	l->n--;
}

/* The poll handle keeps the loop alive only while libunbound has work. */
static void pending_changed(struct srv_dns *d)
{
	if (d->pending.head) {
		uv_ref((uv_handle_t *)&d->poll);
	} else {
		uv_unref((uv_handle_t *)&d->poll);
		uv_timer_stop(&d->timer);
	}
}

/* ---- from_cache approximation ----
 * libunbound does not say whether an answer came from its cache. We remember
 * (name, type) -> now + TTL of answers we passed on, in a direct-mapped table
 * of 64-bit hashes; an answer for a question whose entry has not expired is
 * reported as from_cache = 1. It can be wrong both ways: libunbound may have
 * evicted the entry (cache full) and re-asked, and a colliding question
 * overwrites a slot (then we say 0). Good enough for a trace and a counter. */
static uint64_t seen_key(const char *name, uint16_t type)
{
	uint64_t h = 1469598103934665603ull;
	size_t n = strlen(name);

	if (n > 0 && name[n - 1] == '.')
		n--;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c >= 'A' && c <= 'Z')
			c = (unsigned char)(c - 'A' + 'a');
		h = (h ^ c) * 1099511628211ull;
	}
	h = (h ^ (type & 0xff)) * 1099511628211ull;
	h = (h ^ (type >> 8)) * 1099511628211ull;
	return h ? h : 1;
}

static int seen_check_and_note(struct srv_dns *d, const char *name,
                               uint16_t type, uint32_t ttl, int *expired_r)
{
	uint64_t key = seen_key(name, type);
	uint64_t now = uv_now(d->loop);
	struct seen_slot *s = &d->seen[key & (LIM_DNS_SEEN_SLOTS - 1)];
	int hit = s->key == key && s->expiry_ms > now;
	*expired_r = s->key == key && s->expiry_ms <= now;

	if (!hit && ttl > 0) {
		s->key = key;
		s->expiry_ms = now + (uint64_t)ttl * 1000;
	}
	return hit;
}

/* ---- answer memo ----
 * libunbound is the shared validating cache, but every question to it costs
 * a round trip to its thread through a pipe (serialise, wake, parse, about
 * 20 us of CPU and two system calls): most of a warm scan's own cost. So
 * the answers it gave are kept here too, already validated, for their TTL
 * (at most LIM_DNS_MEMO_MAX_TTL s): OK, NODATA and NXDOMAIN answers with
 * their DNSSEC status; bogus answers and failures are never kept, and an
 * expired entry goes back to libunbound (which then applies serve-stale).
 * Direct-mapped by the (name, type) hash, names compared exactly. */
static void memo_unref(struct memo *m)
{
	if (m && --m->refs == 0 && m->detached)
		free(m);
}

static void memo_drop_slot(struct srv_dns *d, size_t slot)
{
	struct memo *old = d->memo[slot];
	d->memo[slot] = NULL;
	if (!old)
		return;
	d->memo_bytes -= old->size;
	if (old->refs == 0)
		free(old);
	else
		old->detached = 1;
}

static struct memo *memo_find(struct srv_dns *d, const char *name, uint16_t type)
{
	uint64_t key = seen_key(name, type);
	struct memo *m = d->memo[key & (LIM_DNS_MEMO_SLOTS - 1)];
	if (!m || m->key != key || m->type != type || strcasecmp(m->name, name) != 0)
		return NULL;
	if (m->expiry_ms <= uv_now(d->loop))
		return NULL;
	return m;
}

static void memo_store(struct srv_dns *d, const char *name, uint16_t type,
                       const struct dnsq_answer *a)
{
	if ((a->status != DNSQ_OK && a->status != DNSQ_NODATA &&
	     a->status != DNSQ_NXDOMAIN) || a->sec == DNSQ_SEC_BOGUS ||
	    a->ttl == 0 || a->stale)
		return;
	size_t nl = strlen(name) + 1, data = 0;
	for (size_t i = 0; i < a->count; i++)
		data += a->rdlen[i];
	size_t size = sizeof(struct memo) + nl;
	size = (size + 7) & ~(size_t)7;
	size_t off_lens = size;
	size += a->count * sizeof(size_t);
	size_t off_ptrs = size;
	size += a->count * sizeof(unsigned char *);
	size_t off_data = size;
	size += data;
	/* bounded: senders choose the names we look up, and so the sizes */
	uint64_t key = seen_key(name, type);
	size_t slot = key & (LIM_DNS_MEMO_SLOTS - 1);
	size_t in_slot = d->memo[slot] ? d->memo[slot]->size : 0;
	if (data > LIM_DNS_MEMO_MAX_ANSWER ||
	    d->memo_bytes - in_slot + size > LIM_DNS_MEMO_BYTES)
		return;
	struct memo *m = malloc(size);
	if (!m)
		return;       /* only a missed shortcut */
	memset(m, 0, sizeof(*m));
	m->key = key;
	uint32_t ttl = a->ttl < LIM_DNS_MEMO_MAX_TTL ? a->ttl : LIM_DNS_MEMO_MAX_TTL;
	m->expiry_ms = uv_now(d->loop) + (uint64_t)ttl * 1000;
	m->status = a->status;
	m->sec = a->sec;
	m->type = type;
	m->count = a->count;
	memcpy(m->name, name, nl);
	m->lens = (size_t *)(void *)((char *)m + off_lens);
	m->rdata = (const unsigned char **)(void *)((char *)m + off_ptrs);
	unsigned char *p = (unsigned char *)m + off_data;
	for (size_t i = 0; i < a->count; i++) {
		m->lens[i] = a->rdlen[i];
		m->rdata[i] = p;
		memcpy(p, a->rdata[i], a->rdlen[i]);
		p += a->rdlen[i];
	}
	m->size = size;
	memo_drop_slot(d, slot);
	d->memo[slot] = m;
	d->memo_bytes += size;
}

/* ---- delivery ---- */

static const char *rcode_name(int rcode)
{
	switch (rcode) {
	case 1: return "FORMERR";
	case 2: return "SERVFAIL";
	case 4: return "NOTIMP";
	case 5: return "REFUSED";
	default: return "unexpected rcode";
	}
}

/* Fills a from a libunbound result. rdlen_buf has room for cap lengths;
 * *heap_r is set when a larger array had to be allocated. */
static void fill_from_result(struct srv_dns *d, struct dns_q *q,
                             struct dnsq_answer *a, size_t *rdlen_buf,
                             size_t cap, size_t **heap_r)
{
	const struct ub_result *r = q->res;

	if (q->ub_err == UB_SYNTAX) {
		/* a label over 63 octets or an empty one: as an unusable name */
		a->status = DNSQ_NXDOMAIN;
		a->why = "unusable name: it cannot exist in the DNS";
		d->st.rejected++;
		return;
	}
	if (q->ub_err != 0 || !r) {
		a->status = DNSQ_TEMPFAIL;
		a->why = ub_strerror(q->ub_err);
		d->st.servfail++;
		return;
	}
	/* libunbound hands over bogus data with bogus = 1: never pass it on. */
	if (r->bogus) {
		a->status = DNSQ_BOGUS;
		a->sec = DNSQ_SEC_BOGUS;
		a->why = r->why_bogus ? r->why_bogus : "DNSSEC validation failed";
		d->st.bogus++;
		return;
	}
	a->sec = r->secure ? DNSQ_SEC_SECURE : DNSQ_SEC_INSECURE;
	a->ttl = r->ttl > 0 ? (uint32_t)r->ttl : 0;
	if (r->nxdomain || r->rcode == 3) {
		a->status = DNSQ_NXDOMAIN;
		d->st.nxdomain++;
	} else if (r->rcode != 0) {
		a->status = DNSQ_TEMPFAIL;
		a->why = rcode_name(r->rcode);
		a->sec = DNSQ_SEC_INSECURE;
		d->st.servfail++;
		return;
	} else if (!r->havedata || !r->data || !r->data[0]) {
		a->status = DNSQ_NODATA;
	} else {
		size_t n = 0, total = 0;
		size_t *lens = rdlen_buf;

		while (r->data[n])
			n++;
		if (n > cap) {
			lens = malloc(n * sizeof *lens);
			if (!lens) {
				a->status = DNSQ_TEMPFAIL;
				a->why = "out of memory";
				d->st.servfail++;
				return;
			}
			*heap_r = lens;
		}
		for (size_t i = 0; i < n; i++) {
			int l = r->len ? r->len[i] : -1;
			if (l < 0 || (size_t)l > LIM_DNS_MAX_ANSWER - total) {
				a->status = DNSQ_TEMPFAIL;
				a->why = "answer too large";
				d->st.servfail++;
				return;
			}
			lens[i] = (size_t)l;
			total += (size_t)l;
		}
		a->status = DNSQ_OK;
		a->count = n;
		a->rdata = (const unsigned char *const *)(void *)r->data;
		a->rdlen = lens;
	}
	int expired = 0;
	a->from_cache = seen_check_and_note(d, q->name, q->type, a->ttl, &expired);
	if (a->from_cache)
		d->st.cache_hits++;
	/* RFC 8767: libunbound does not mark a stale answer. With serve-stale
	 * on, an answer for a record we saw expire that comes only after the
	 * client timeout (when unbound gives up waiting for a fresh one) is
	 * the expired record: flag it. */
	if (d->serve_stale && a->status == DNSQ_OK && expired &&
	    a->elapsed_us + 100000 >= (uint64_t)atoi(DNS_STALE_CLIENT_TIMEOUT_MS) * 1000) {
		a->stale = 1;
		d->st.stale++;
	}
}

/* Runs q's callback and frees q. q must be on no list. */
static void deliver(struct srv_dns *d, struct dns_q *q)
{
	struct dnsq_answer a;
	size_t lens[32];
	size_t *heap = NULL;

	memset(&a, 0, sizeof a);
	a.qname = q->name;
	a.qtype = q->type;
	a.sec = DNSQ_SEC_INSECURE;
	a.elapsed_us = (uv_hrtime() - q->start_ns) / 1000;
	histo_observe(&d->st.lookup_duration, a.elapsed_us);
	if (q->memo) {
		const struct memo *m = q->memo;
		uint64_t now = uv_now(d->loop);
		a.status = m->status;
		a.sec = m->sec;
		a.ttl = m->expiry_ms > now ? (uint32_t)((m->expiry_ms - now + 999) / 1000) : 0;
		a.from_cache = 1;
		a.count = m->count;
		a.rdata = m->rdata;
		a.rdlen = m->lens;
		d->st.cache_hits++;
		d->st.memo_hits++;
		if (a.status == DNSQ_NXDOMAIN)
			d->st.nxdomain++;
	} else if (q->res || q->ub_err) {
		fill_from_result(d, q, &a, lens, sizeof lens / sizeof lens[0],
		                 &heap);
		if (!d->closing)
			memo_store(d, q->name, q->type, &a);
	} else {
		a.status = q->status;
		a.why = q->why;
		if (q->status == DNSQ_TIMEOUT)
			d->st.timeouts++;
	}
	if (a.status != DNSQ_OK) {
		a.count = 0;
		a.rdata = NULL;
		a.rdlen = NULL;
	}
	d->st.inflight--;
	d->st.answered++;
	d->delivering++;
	q->cb(q->arg, &a);
	d->delivering--;
	free(heap);
	if (q->res)
		ub_resolve_free(q->res);
	memo_unref(q->memo);
	q_free(d, q);
}

static void drain_ready(struct srv_dns *d)
{
	struct dns_q *q;

	while ((q = d->ready.head) != NULL) {
		q_unlink(&d->ready, q);
		deliver(d, q);
	}
	uv_idle_stop(&d->idle);
}

static void idle_cb(uv_idle_t *h)
{
	drain_ready(h->data);
}

/* An outcome known without asking libunbound: delivered from the idle
 * handle, never from inside lookup(). */
static void finish_local(struct srv_dns *d, struct dns_q *q,
                         enum dnsq_status st, const char *why)
{
	q->status = st;
	q->why = why;
	q_append(&d->ready, q);
	uv_idle_start(&d->idle, idle_cb);
}

/* Withdraws a lookup from libunbound: after ub_cancel() (threaded mode) the
 * query is flagged cancelled and a late answer is dropped inside
 * ub_process() without calling ub_cb, so q can be freed. */
static void withdraw(struct srv_dns *d, struct dns_q *q,
                     enum dnsq_status st, const char *why)
{
	q_unlink(&d->pending, q);
	(void)ub_cancel(d->ctx, q->async_id);
	q->status = st;
	q->why = why;
	q_append(&d->ready, q);
}

/* Called from inside ub_process() only; just records the outcome. The
 * callback runs after ub_process() returns, so it may start lookups
 * without re-entering libunbound from its own callback. */
static void ub_cb(void *mydata, int err, struct ub_result *result)
{
	struct dns_q *q = mydata;
	struct srv_dns *d = q->d;

	q_unlink(&d->pending, q);
	q->ub_err = err;
	q->res = result;
	if (err != 0 && !result)
		q->why = ub_strerror(err);
	q_append(&d->ready, q);
}

/* Fails every lookup libunbound holds; used on close and when its answer
 * pipe breaks. */
static void withdraw_all(struct srv_dns *d, const char *why)
{
	while (d->pending.head)
		withdraw(d, d->pending.head, DNSQ_TEMPFAIL, why);
	pending_changed(d);
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
	struct srv_dns *d = h->data;
	int r;

	(void)events;
	r = status < 0 ? UB_PIPE : ub_process(d->ctx);
	if (r != 0) {
		/* The resolver thread is gone: nothing will ever answer. */
		withdraw_all(d, "resolver failed");
		uv_poll_stop(&d->poll);
	}
	pending_changed(d);
	drain_ready(d);
}

static void timer_cb(uv_timer_t *h)
{
	struct srv_dns *d = h->data;
	uint64_t now = uv_now(d->loop);
	struct dns_q *q;

	/* Deliver each expired lookup right away; lookups its callback starts
	 * get now + timeout, so they never expire in this loop. */
	while ((q = d->pending.head) != NULL && q->deadline_ms <= now) {
		withdraw(d, q, DNSQ_TIMEOUT, "no answer within the deadline");
		q_unlink(&d->ready, q);
		deliver(d, q);
	}
	if (d->pending.head)
		uv_timer_start(&d->timer, timer_cb,
		               d->pending.head->deadline_ms - now, 0);
	pending_changed(d);
}

static int name_usable(const char *name, size_t *len_r)
{
	size_t n = strnlen(name, DNS_MAX_TEXT_NAME + 2);

	if (n > DNS_MAX_TEXT_NAME + 1)
		return 0;
	if (n == DNS_MAX_TEXT_NAME + 1 && name[n - 1] != '.')
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c <= ' ' || c >= 0x7f)
			return 0;
	}
	*len_r = n;
	return 1;
}

static void dns_lookup(struct dnsq *dq, const char *name, uint16_t type,
                       dnsq_cb cb, void *arg)
{
	struct srv_dns *d = (struct srv_dns *)dq;
	struct dns_q *q = calloc(1, sizeof *q);
	size_t n = 0;
	int r;
	int oom = 0;

	if (!q && d->spare) {
		/* no memory: the lookup fails, its one callback still comes */
		q = d->spare;
		d->spare = q->next;
		memset(q, 0, sizeof *q);
		oom = 1;
	}
	if (!q) {
		/* LIM_DNS_OOM_RESERVE lookups at once without memory: the promise
		 * of one callback per lookup cannot be kept */
		fprintf(stderr, "alignd: out of memory starting a DNS lookup\n");
		abort();
	}
	q->d = d;
	q->cb = cb;
	q->arg = arg;
	q->type = type;
	q->start_ns = uv_hrtime();
	d->st.started++;
	d->st.inflight++;
	if (d->st.inflight > d->st.inflight_peak)
		d->st.inflight_peak = d->st.inflight;

	if (oom) {
		d->st.rejected++;
		finish_local(d, q, DNSQ_TEMPFAIL, "out of memory");
		return;
	}
	if (!name || !name_usable(name, &n)) {
		/* longer than a DNS name can be, or bytes no hostname has: no
		 * answer could exist, so none is waited for (a permanent
		 * outcome, not a temporary one a sender could provoke) */
		d->st.rejected++;
		finish_local(d, q, DNSQ_NXDOMAIN, "unusable name: it cannot exist in the DNS");
		return;
	}
	memcpy(q->name, name, n);
	q->name[n] = '\0';
	if (d->closing) {
		d->st.rejected++;
		finish_local(d, q, DNSQ_TEMPFAIL, "resolver closing");
		return;
	}
	struct memo *m = memo_find(d, q->name, type);
	if (m) {
		/* answered on the next loop turn, never from inside lookup() */
		m->refs++;
		q->memo = m;
		q_append(&d->ready, q);
		uv_idle_start(&d->idle, idle_cb);
		return;
	}
	if (d->pending.n >= d->max_inflight) {
		d->st.rejected++;
		finish_local(d, q, DNSQ_TEMPFAIL, "too many DNS lookups in flight");
		return;
	}
	r = ub_resolve_async(d->ctx, q->name, type, 1 /* IN */, q, ub_cb,
	                     &q->async_id);
	if (r != 0) {
		d->st.rejected++;
		/* UB_SYNTAX: a label over 63 octets or an empty one; as above */
		finish_local(d, q, r == UB_SYNTAX ? DNSQ_NXDOMAIN : DNSQ_TEMPFAIL,
		             r == UB_SYNTAX ? "unusable name: it cannot exist in the DNS"
		                            : ub_strerror(r));
		return;
	}
	q->deadline_ms = uv_now(d->loop) + d->timeout_ms;
	q_append(&d->pending, q);
	if (d->pending.n == 1) {
		uv_timer_start(&d->timer, timer_cb, d->timeout_ms, 0);
		pending_changed(d);
	}
}

/* ---- setup and teardown ---- */

void dns_opts_default(struct dns_opts *o)
{
	memset(o, 0, sizeof *o);
	o->trust_anchor_file = NULL;
	o->timeout_ms = LIM_DNS_TIMEOUT_MS;
	o->max_inflight = LIM_DNS_MAX_INFLIGHT;
}

static int set_opt(struct ub_ctx *ctx, const char *opt, const char *val,
                   char *err, size_t errlen)
{
	int r = ub_ctx_set_option(ctx, opt, val);

	if (r != 0)
		snprintf(err, errlen, "unbound option %s %s: %s", opt, val,
		         ub_strerror(r));
	return r;
}

static int configure(struct ub_ctx *ctx, const struct dns_opts *o,
                     char *err, size_t errlen)
{
	char num[32];
	const char *ta;
	int r;

	/* Threaded mode: one resolver thread inside this process; answers
	 * come back through ub_fd(). Must precede the first query. */
	if ((r = ub_ctx_async(ctx, 1)) != 0) {
		snprintf(err, errlen, "ub_ctx_async: %s", ub_strerror(r));
		return r;
	}
	if (o->msg_cache_size) {
		snprintf(num, sizeof num, "%zu", o->msg_cache_size);
		if (set_opt(ctx, "msg-cache-size:", num, err, errlen))
			return -1;
	}
	if (o->rrset_cache_size) {
		snprintf(num, sizeof num, "%zu", o->rrset_cache_size);
		if (set_opt(ctx, "rrset-cache-size:", num, err, errlen))
			return -1;
	}
	/* RFC 9156 hides the full name from the servers above it at the cost
	 * of extra round trips on a cold cache (measured: a 2-round scan took
	 * 5-6); a mail filter asks about names the message itself discloses */
	if (set_opt(ctx, "qname-minimisation:", o->qname_minimisation ? "yes" : "no",
	            err, errlen))
		return -1;
	if (o->serve_stale &&
	    (set_opt(ctx, "serve-expired:", "yes", err, errlen) ||
	     set_opt(ctx, "serve-expired-ttl:", DNS_STALE_TTL_S, err, errlen) ||
	     set_opt(ctx, "serve-expired-client-timeout:",
	             DNS_STALE_CLIENT_TIMEOUT_MS, err, errlen)))
		return -1;

	ta = o->trust_anchor_file ? o->trust_anchor_file : DNS_ROOT_KEY;
	if (ta[0]) {
		/* libunbound reads the file only at the first query and then
		 * fails every lookup: check now, while an error can be shown. */
		if (access(ta, R_OK) != 0) {
			snprintf(err, errlen, "trust anchor %s: %s", ta,
			         strerror(errno));
			return -1;
		}
		if ((r = ub_ctx_add_ta_file(ctx, ta)) != 0) {
			snprintf(err, errlen, "trust anchor %s: %s", ta,
			         ub_strerror(r));
			return -1;
		}
	}

	if (!o->recursion) {
		/* Forwarders named by the admin (often a local resolver on
		 * 127.0.0.1) are meant to be asked, loopback or not. */
		if (set_opt(ctx, "do-not-query-localhost:", "no", err, errlen))
			return -1;
		if (o->forwarders && o->forwarders[0]) {
			char buf[1024], *save = NULL, *tok;
			int nfwd = 0;

			if (strlen(o->forwarders) >= sizeof buf) {
				snprintf(err, errlen, "forwarder list too long");
				return -1;
			}
			strcpy(buf, o->forwarders);
			for (tok = strtok_r(buf, " ,\t", &save); tok;
			     tok = strtok_r(NULL, " ,\t", &save)) {
				if ((r = ub_ctx_set_fwd(ctx, tok)) != 0) {
					snprintf(err, errlen, "forwarder %s: %s",
					         tok, ub_strerror(r));
					return -1;
				}
				nfwd++;
			}
			if (nfwd == 0) {
				snprintf(err, errlen, "empty forwarder list");
				return -1;
			}
		} else if ((r = ub_ctx_resolvconf(ctx, NULL)) != 0) {
			snprintf(err, errlen, "forwarders from resolv.conf: %s",
			         ub_strerror(r));
			return -1;
		}
	}

	if (o->unbound_config && o->unbound_config[0] &&
	    (r = ub_ctx_config(ctx, o->unbound_config)) != 0) {
		snprintf(err, errlen, "unbound config %s: %s", o->unbound_config,
		         ub_strerror(r));
		return -1;
	}
	return 0;
}

int srv_dns_new(uv_loop_t *loop, const struct dns_opts *o,
                struct srv_dns **d_r, char *err, size_t errlen)
{
	struct srv_dns *d;
	struct dns_opts def;
	int fd, r;

	*d_r = NULL;
	if (errlen)
		err[0] = '\0';
	if (!o) {
		dns_opts_default(&def);
		o = &def;
	}
	d = calloc(1, sizeof *d);
	if (!d || !(d->seen = calloc(LIM_DNS_SEEN_SLOTS, sizeof *d->seen)) ||
	    !(d->memo = calloc(LIM_DNS_MEMO_SLOTS, sizeof *d->memo))) {
		if (d)
			free(d->seen);
		free(d);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	d->dq.lookup = dns_lookup;
	d->loop = loop;
	for (size_t i = 0; i < LIM_DNS_OOM_RESERVE; i++) {
		d->reserve[i].next = d->spare;
		d->spare = &d->reserve[i];
	}
	d->timeout_ms = o->timeout_ms ? o->timeout_ms : LIM_DNS_TIMEOUT_MS;
	d->serve_stale = o->serve_stale;
	d->max_inflight = o->max_inflight ? o->max_inflight
	                                  : LIM_DNS_MAX_INFLIGHT;
	d->ctx = ub_ctx_create();
	if (!d->ctx) {
		snprintf(err, errlen, "ub_ctx_create failed");
		r = -ENOMEM;
		goto fail;
	}
	if (configure(d->ctx, o, err, errlen) != 0) {
		r = -EINVAL;
		goto fail;
	}
	fd = ub_fd(d->ctx);
	if (fd < 0) {
		snprintf(err, errlen, "ub_fd failed");
		r = -EIO;
		goto fail;
	}
	if ((r = uv_poll_init(loop, &d->poll, fd)) != 0) {
		snprintf(err, errlen, "uv_poll_init: %s", uv_strerror(r));
		goto fail;
	}
	d->poll.data = d;
	d->open_handles++;
	uv_timer_init(loop, &d->timer);
	d->timer.data = d;
	d->open_handles++;
	uv_idle_init(loop, &d->idle);
	d->idle.data = d;
	d->open_handles++;
	if ((r = uv_poll_start(&d->poll, UV_READABLE, poll_cb)) != 0) {
		snprintf(err, errlen, "uv_poll_start: %s", uv_strerror(r));
		*d_r = d;
		srv_dns_close(d_r);
		return r;
	}
	uv_unref((uv_handle_t *)&d->poll);
	*d_r = d;
	return 0;
fail:
	if (d->ctx)
		ub_ctx_delete(d->ctx);
	free(d->seen);
	free(d->memo);
	free(d);
	return r;
}

struct dnsq *srv_dns_dnsq(struct srv_dns *d)
{
	return &d->dq;
}

void srv_dns_stats(const struct srv_dns *d, struct srv_dns_stats *st)
{
	*st = d->st;
}

static void handle_closed(uv_handle_t *h)
{
	struct srv_dns *d = h->data;

	if (--d->open_handles == 0) {
		for (size_t i = 0; i < LIM_DNS_MEMO_SLOTS; i++)
			memo_drop_slot(d, i);
		free(d->memo);
		free(d->seen);
		free(d);
	}
}

void srv_dns_close(struct srv_dns **dp)
{
	struct srv_dns *d = *dp;

	if (!d)
		return;
	*dp = NULL;
	if (d->delivering) {
		/* Closing from inside a lookup callback would free the list
		 * being walked: a caller bug. */
		fprintf(stderr, "alignd: srv_dns_close called from a DNS callback\n");
		abort();
	}
	d->closing = 1;
	/* Lookups started by the callbacks below fail at once (closing), so
	 * this ends once no callback starts another. */
	while (d->pending.head || d->ready.head) {
		withdraw_all(d, "resolver closing");
		drain_ready(d);
	}
	/* uv_close() takes the fd out of the poll set at once, before
	 * ub_ctx_delete() closes it. */
	uv_close((uv_handle_t *)&d->poll, handle_closed);
	uv_close((uv_handle_t *)&d->timer, handle_closed);
	uv_close((uv_handle_t *)&d->idle, handle_closed);
	ub_ctx_delete(d->ctx);
	d->ctx = NULL;
}
