/* The SIGN request: the message is read like a SCAN's, then signed on the
 * worker pool with the signing table of the configuration it started
 * with (it holds a reference, so a reload replacing the keys does not
 * pull them away). */
#include "server/sign.h"
#include "server/config.h"
#include "server/log.h"
#include "server/srv.h"
#include "checks/msg.h"
#include "common/buf.h"
#include "common/limits.h"
#include "protocol/reply.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

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
	r->cfg = cfg_ref(s->cfg);
	r->req = *req;
	memset(req, 0, sizeof *req);
	r->done = done;
	r->arg = arg;
	r->work.data = r;
	buf_init(&r->reply, 0);
	s->stats.scans_in_flight++;
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
	if (msg_parse(r->msg, r->len, &m) != 0) {
		r->status = 400;
		proto_reply_status(&r->reply, 400, "cannot sign: the header section does not parse");
		return;
	}
	char *fields[LIM_DKIM_SIGN_KEYS] = { 0 };
	size_t n = 0;
	const char *domain = NULL;
	if (sign_message(t, &m, (uint64_t)time(NULL), fields, LIM_DKIM_SIGN_KEYS,
	                 &n, &domain, err, sizeof err) < 0) {
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
	for (size_t k = 0; k < n; k++)
		free(fields[k]);
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
		if (r->status >= 500)
			r->srv->stats.errors_5xx++;
		else if (r->status >= 400)
			r->srv->stats.errors_4xx++;
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
