/* One SCAN: holds the message, runs the checks, builds the verdict and
 * the reply. Loop thread; CPU-heavy check work goes to the worker pool.
 * Lifetime: freed when it has reported (or was abandoned) and nothing of
 * it is pending any more. */
#include "server/scan.h"
#include "server/log.h"
#include "server/srv.h"
#include "checks/msg.h"
#include "common/text.h"
#include "common/trace.h"
#include "protocol/reply.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct scan {
	struct srv *srv;
	struct srv_config *cfg;       /* reference held for the scan's life */
	struct proto_request req;
	char *msg;                    /* Content-Length + 1 bytes, allocated once */
	size_t msg_len, msg_cap;
	size_t hdr_end;               /* first body byte, 0 until known */
	size_t hdr_pos;               /* header-end search position */
	struct msg parsed;
	int parsed_ok;
	uint64_t t0_us;
	struct trace trace;
	uv_timer_t timer;             /* deadline, and deferred completion */
	int timer_open;
	unsigned pending;             /* asynchronous work not yet settled */
	int body_done, reported, abandoned;
	scan_done_cb done;
	void *arg;
};

static void scan_maybe_free(struct scan *sc);

static void on_timer_closed(uv_handle_t *h)
{
	struct scan *sc = h->data;
	sc->timer_open = 0;
	scan_maybe_free(sc);
}

static void scan_maybe_free(struct scan *sc)
{
	if (!(sc->reported || sc->abandoned) || sc->pending > 0)
		return;
	if (sc->timer_open) {
		if (!uv_is_closing((uv_handle_t *)&sc->timer))
			uv_close((uv_handle_t *)&sc->timer, on_timer_closed);
		return;
	}
	sc->srv->stats.scans_in_flight--;
	msg_free(&sc->parsed);
	trace_free(&sc->trace);
	proto_request_clear(&sc->req);
	free(sc->msg);
	cfg_unref(&sc->cfg);
	struct srv *s = sc->srv;
	free(sc);
	srv_maybe_finish(s);
}

static const char *domain_of(const char *addr)
{
	if (!addr)
		return NULL;
	const char *at = strrchr(addr, '@');
	return at ? at + 1 : addr;
}

/* Builds the verdict and the reply, logs the scan, reports it. */
static void scan_report(struct scan *sc)
{
	if (sc->reported)
		return;
	sc->reported = 1;
	struct srv *s = sc->srv;
	uint64_t ms = (trace_now_us() - sc->t0_us) / 1000;
	const char *action = "accept";
	char ar[512];
	snprintf(ar, sizeof(ar), "%s; none", cfg_authserv_id(sc->cfg));

	struct proto_result res = {
		.queue_id = sc->req.queue_id,
		.action = action,
		.score = 0,
		.auth_results = ar,
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
	sc->done(sc->arg, &res);
	free(tl);
	s->stats.action_accept++;
	log_msg(LOG_LVL_INFO, "scan qid=%s ip=%s helo=%s mfrom=%s size=%zu action=%s score=%.2f ms=%llu",
	        log_clean(sc->req.queue_id), log_clean(sc->req.client_ip),
	        log_clean(sc->req.helo), log_clean(domain_of(sc->req.mail_from)),
	        sc->msg_len, action, res.score, (unsigned long long)ms);
}

static void on_deadline(uv_timer_t *t)
{
	struct scan *sc = t->data;
	if (!sc->body_done)
		return;     /* the request timeout of the connection applies first */
	trace_add(&sc->trace, "scan", "deadline reached with %u checks pending", sc->pending);
	scan_report(sc);
	scan_maybe_free(sc);
}

static void scan_check_complete(struct scan *sc)
{
	if (sc->body_done && sc->pending == 0 && !sc->reported && !sc->abandoned)
		scan_report(sc);
	scan_maybe_free(sc);
}

static void on_soon(uv_timer_t *t)
{
	struct scan *sc = t->data;
	uv_timer_start(&sc->timer, on_deadline, sc->cfg->scan_timeout, 0);
	scan_check_complete(sc);
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
	return sc;
}

static void scan_headers_ready(struct scan *sc)
{
	if (msg_parse(sc->msg, sc->hdr_end, &sc->parsed) == MSG_OK)
		sc->parsed_ok = 1;
	trace_add(&sc->trace, "scan", "header section complete: %zu bytes, %zu fields",
	          sc->hdr_end, sc->parsed.n_fields);
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
	/* complete on the next loop iteration, never inside this call */
	uv_timer_start(&sc->timer, on_soon, 0, 0);
}

void scan_abandon(struct scan *sc)
{
	sc->abandoned = 1;
	scan_maybe_free(sc);
}
