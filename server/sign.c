/* The SIGN request: the message is read like a SCAN's, then signed on the
 * worker pool with the signing table of the configuration it started
 * with (it holds a reference, so a reload replacing the keys does not
 * pull them away). */
#include "server/sign.h"
#include "server/config.h"
#include "server/dispatch.h"
#include "server/log.h"
#include "server/srv.h"
#include "checks/dkim/dks.h"
#include "checks/dnsq.h"
#include "checks/msg.h"
#include "common/buf.h"
#include "common/limits.h"
#include "protocol/reply.h"

#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <time.h>

/* ---- "next" selectors ---- */

struct next_lookup {
	struct srv *srv;
	struct srv_config *cfg;      /* held until the answer is in */
	size_t idx;
	char qname[LIM_DNS_MAX_NAME + 1];
};

static void on_next_key(void *arg, const struct dnsq_answer *a)
{
	struct next_lookup *nl = arg;
	struct signtab *t = nl->cfg->signing;
	struct signtab_entry *e = &t->e[nl->idx];
	int match = 0;
	char txt[LIM_DKIM_KEY_DER * 2];
	/* a bogus answer is no answer (the record must not be used) */
	if (a->status == DNSQ_OK && a->sec != DNSQ_SEC_BOGUS)
		for (size_t i = 0; i < a->count && !match; i++) {
			size_t len;
			if (dnsq_txt(a, i, txt, sizeof txt, &len) == 0 &&
			    dks_key_matches(e->key, txt))
				match = 1;
		}
	if (match) {
		__atomic_store_n(&e->published, 1, __ATOMIC_RELEASE);
		log_msg(LOG_LVL_INFO, "signing: %s is published and matches %s: signing with it",
		        nl->qname, e->key_file);
	} else {
		log_msg(LOG_LVL_INFO, "signing: next selector %s: %s; not used yet", nl->qname,
		        a->status == DNSQ_OK ? "the record does not match the key"
		                             : dnsq_status_name(a->status));
	}
	t->next_pending--;
	cfg_unref(&nl->cfg);
	free(nl);
}

void sign_check_next(struct srv *s, struct srv_config *c)
{
	struct signtab *t = c->signing;
	if (t == NULL || t->n_next == 0 || t->next_pending > 0 || s->eng == NULL ||
	    s->eng->dq == NULL)
		return;
	uint64_t now = uv_now(s->loop);
	if (t->next_checked != 0 && now - t->next_checked < LIM_DKIM_SIGN_NEXT_RECHECK * 1000u)
		return;
	t->next_checked = now ? now : 1;
	for (size_t i = 0; i < t->n; i++) {
		struct signtab_entry *e = &t->e[i];
		if (!e->next || signtab_usable(e))
			continue;
		struct next_lookup *nl = calloc(1, sizeof *nl);
		if (nl == NULL)
			return;
		nl->srv = s;
		nl->cfg = cfg_ref(c);
		nl->idx = i;
		snprintf(nl->qname, sizeof nl->qname, "%s._domainkey.%s", e->selector, e->domain);
		t->next_pending++;
		dnsq_lookup(s->eng->dq, nl->qname, DNSQ_T_TXT, on_next_key, nl);
	}
}

/* ---- the SIGN request ---- */

struct sign_req {
	uv_work_t work;
	struct srv *srv;
	struct srv_config *cfg;       /* held for the request's life: its keys */
	struct proto_request req;
	char *msg;
	size_t len, cap;
	int queued, abandoned;
	sign_done_cb done;
	void *arg;
	/* worker results */
	int status;
	struct buf reply;
	uint64_t elapsed_us;
	unsigned n_rsa, n_ed25519;   /* signatures made, by algorithm */
};

struct sign_req *sign_new(struct srv *s, struct proto_request *req,
                          sign_done_cb done, void *arg)
{
	struct sign_req *r = calloc(1, sizeof *r);
	if (r == NULL)
		return NULL;
	r->cap = (size_t)req->content_length;
	r->msg = malloc(r->cap + 1);
	if (r->msg == NULL) {
		free(r);
		return NULL;
	}
	r->srv = s;
	s->msg_bytes += r->cap;
	r->cfg = cfg_ref(s->cfg);
	r->req = *req;
	memset(req, 0, sizeof *req);
	r->done = done;
	r->arg = arg;
	r->work.data = r;
	buf_init(&r->reply, 0);
	s->stats.scans_in_flight++;
	sign_check_next(s, r->cfg);
	return r;
}

void sign_body(struct sign_req *r, const char *data, size_t len)
{
	if (r->cap - r->len < len)
		len = r->cap - r->len;   /* the parser never gives more */
	memcpy(r->msg + r->len, data, len);
	r->len += len;
}

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void sign_work(uv_work_t *w)
{
	struct sign_req *r = w->data;
	const struct signtab *t = r->cfg->signing;
	char err[512];
	uint64_t t0 = now_us();
	r->msg[r->len] = '\0';
	if (t == NULL) {
		r->status = 403;
		proto_reply_status(&r->reply, 403, "signing is not configured (dkim_sign_table)");
		return;
	}
	struct msg m;
	int prc = msg_parse(r->msg, r->len, &m);
	if (prc == MSG_E_NOMEM) {
		r->status = 500;
		proto_reply_status(&r->reply, 500, "out of memory");
		return;
	}
	if (prc != MSG_OK) {
		r->status = 400;
		proto_reply_status(&r->reply, 400, "cannot sign: the header section does not parse");
		return;
	}
	char *fields[LIM_DKIM_SIGN_KEYS] = { 0 };
	size_t n = 0;
	const char *domain = NULL;
	int src = sign_message(t, &m, (uint64_t)time(NULL), fields, LIM_DKIM_SIGN_KEYS,
	                       &n, &domain, err, sizeof err);
	if (src == -ENOMEM) {
		r->status = 500;
		proto_reply_status(&r->reply, 500, "out of memory");
	} else if (src < 0) {
		r->status = 400;
		proto_reply_status(&r->reply, 400, err);
	} else {
		r->status = 200;
		if (proto_reply_sign(&r->reply, domain, (const char *const *)fields, n) < 0) {
			buf_free(&r->reply);
			buf_init(&r->reply, 0);
			r->status = 500;
			proto_reply_status(&r->reply, 500, "out of memory");
		}
	}
	for (size_t k = 0; k < n; k++) {
		if (r->status == 200) {
			if (strstr(fields[k], "a=ed25519-sha256") != NULL)
				r->n_ed25519++;
			else
				r->n_rsa++;
		}
		free(fields[k]);
	}
	msg_free(&m);
	r->elapsed_us = now_us() - t0;
}

static void sign_free(struct sign_req *r)
{
	struct srv *s = r->srv;
	s->stats.scans_in_flight--;
	cfg_unref(&r->cfg);
	proto_request_clear(&r->req);
	buf_free(&r->reply);
	free(r->msg);
	s->msg_bytes -= r->cap;
	free(r);
	srv_maybe_finish(s);
}

static void sign_after(uv_work_t *w, int status)
{
	struct sign_req *r = w->data;
	(void)status;
	if (!r->abandoned) {
		log_msg(LOG_LVL_DEBUG, "sign: %d in %llu us", r->status,
		        (unsigned long long)r->elapsed_us);
		struct srv_stats *st = &r->srv->stats;
		if (r->status >= 500) {
			st->errors_5xx++;
			st->sign_failed++;
		} else if (r->status >= 400) {
			st->errors_4xx++;
			st->sign_refused++;
		} else {
			st->sign_signed++;
			st->signatures_rsa += r->n_rsa;
			st->signatures_ed25519 += r->n_ed25519;
		}
		if (r->reply.failed)
			r->done(r->arg, "ALIGND/1 500 out of memory\r\n\r\n", 30, 500);
		else
			r->done(r->arg, r->reply.data, r->reply.len, r->status);
	}
	sign_free(r);
}

void sign_end(struct sign_req *r)
{
	r->queued = 1;
	if (uv_queue_work(r->srv->loop, &r->work, sign_work, sign_after) != 0) {
		/* cannot happen with a valid loop; answer on a later turn anyway */
		r->queued = 0;
		sign_work(&r->work);
		sign_after(&r->work, 0);
	}
}

void sign_abandon(struct sign_req *r)
{
	if (r->queued)
		r->abandoned = 1;     /* sign_after frees it */
	else
		sign_free(r);
}
