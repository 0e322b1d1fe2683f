/* The history writer. history_add() runs on the loop thread: it copies
 * what the record is made of into one allocation (a snapshot: a few
 * memcpy, no encoding) and puts it in a bounded ring, or drops and counts
 * it when the ring is full; it never waits for the database. One writer
 * thread owns the store handle: it takes up to LIM_HISTORY_BATCH
 * snapshots, builds their records (the evidence document is written
 * there, off the loop), appends them in one transaction, and runs
 * retention every LIM_HISTORY_PURGE_S. */
#include "server/history.h"
#include "server/config.h"
#include "server/dispatch.h"
#include "server/log.h"
#include "server/srv.h"
#include "common/limits.h"
#include "common/text.h"
#include "checks/dmarc/dmarc.h"
#include "store/evidence.h"
#include "store/store.h"

#include <errno.h>
#include <pthread.h>
#include <pwd.h>
#include <grp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct history {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cond;          /* the writer waits here for records or stop */
	struct hist_item **ring;
	size_t cap, head, n;          /* n records from head */
	int stop;
	char *uri;
	uint64_t retention_days, max_size;
	/* counters, under mu */
	uint64_t accepted, written, dropped, in_hand, errors, purged;
	int open;                     /* the writer has the store open */
	/* loop thread only */
	time_t drop_logged;
	uint64_t drops_unlogged;
};

static const char *sqlite_path(const char *uri)
{
	return strncmp(uri, "sqlite:", 7) == 0 ? uri + 7 : NULL;
}

int history_prepare(const struct srv_config *c, char *err, size_t errlen)
{
	const char *path = sqlite_path(c->history);
	if (!path)
		return 0;
	/* "created on first start with no set-up": the last directory level */
	char dir[1024];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = '\0';
	if (mkdir(dir, 0750) < 0) {
		if (errno == EEXIST)
			return 0;
		snprintf(err, errlen, "history: cannot create %s: %s", dir, strerror(errno));
		return -1;
	}
	if (geteuid() == 0 && c->user && *c->user) {
		struct passwd *pw = getpwnam(c->user);
		gid_t gid = pw ? pw->pw_gid : (gid_t)-1;
		if (c->group && *c->group) {
			struct group *g = getgrnam(c->group);
			if (g)
				gid = g->gr_gid;
		}
		if (pw && chown(dir, pw->pw_uid, gid) < 0) {
			snprintf(err, errlen, "history: chown %s: %s", dir, strerror(errno));
			return -1;
		}
	}
	return 0;
}

/* Waits up to ms or until stop; mu held. */
static void wait_ms(struct history *h, unsigned ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	if (!h->stop)
		pthread_cond_timedwait(&h->cond, &h->mu, &ts);
}

/* ---- snapshots ---- */

/* Everything store_record_from_scan() reads, copied out of the scan: the
 * results by value, the strings and arrays in the allocation's tail. */
struct hist_item {
	struct store_scan sc;            /* points into this item */
	struct spf_result spf, spf_helo;
	struct dkv_result dkim;
	struct dmarc_result dmarc;
	struct policy_facts facts;
	struct policy_evidence ev;
	struct policy_decision pd;
	char tail[];
};

/* A bump allocator over the item's tail, sized beforehand. */
struct bump {
	char *p, *end;
};

static void *bump(struct bump *b, size_t n)
{
	size_t pad = (size_t)(-(uintptr_t)b->p & (sizeof(void *) - 1));
	if ((size_t)(b->end - b->p) < pad + n)
		return NULL;   /* not reached: the tail was sized for this */
	void *r = b->p + pad;
	b->p += pad + n;
	return r;
}

static const char *bump_strn(struct bump *b, const char *s, size_t n)
{
	if (!s)
		return NULL;
	char *d = bump(b, n + 1);
	if (!d)
		return NULL;
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

static const char *bump_str(struct bump *b, const char *s)
{
	return s ? bump_strn(b, s, strlen(s)) : NULL;
}

static size_t str_room(const char *s)
{
	return s ? strlen(s) + 1 + sizeof(void *) : 0;
}

static const struct msg_field *list_field(const struct policy_facts *f, const char *name)
{
	return f && f->m ? msg_get(f->m, name, 0) : NULL;
}

/* The snapshot of sc (whose pointers are the scan's), or NULL without
 * memory. */
static struct hist_item *snapshot(const struct store_scan *sc)
{
	const struct policy_facts *f = sc->facts;
	const struct msg_field *lid = list_field(f, "List-Id"), *lpo = list_field(f, "List-Post");
	size_t nsig = sc->dkim ? sc->dkim->n : 0;
	size_t nd = f ? f->n_dkim_pass : 0, ns = f ? f->n_sealers : 0;
	size_t room = nsig * sizeof(struct dkv_sig) + sizeof(void *) +
	              (sc->n_rcpt + nd + ns + 3) * (sizeof(char *) + sizeof(void *)) +
	              str_room(sc->client_ip) + str_room(sc->helo) + str_room(sc->mail_from) +
	              str_room(sc->queue_id) + str_room(sc->why_spf) + str_room(sc->header_error) +
	              str_room(sc->auth_results) +
	              (sc->failure_headers ? sc->failure_headers_len + 1 + sizeof(void *) : 0) +
	              (lid ? lid->value_len + 1 + sizeof(void *) : 0) +
	              (lpo ? lpo->value_len + 1 + sizeof(void *) : 0);
	for (size_t i = 0; i < sc->n_rcpt; i++)
		room += str_room(sc->rcpt[i]);
	if (f) {
		room += str_room(f->client_ip) + str_room(f->helo) + str_room(f->mail_from) +
		        str_room(f->aar1);
		for (size_t i = 0; i < nd; i++)
			room += str_room(f->dkim_pass[i]);
		for (size_t i = 0; i < ns; i++)
			room += str_room(f->arc_sealers[i]);
	}
	struct hist_item *it = malloc(sizeof(*it) + room);
	if (!it)
		return NULL;
	struct bump b = { it->tail, it->tail + room };
	struct store_scan *c = &it->sc;
	*c = *sc;
	c->client_ip = bump_str(&b, sc->client_ip);
	c->helo = bump_str(&b, sc->helo);
	c->mail_from = bump_str(&b, sc->mail_from);
	c->queue_id = bump_str(&b, sc->queue_id);
	const char **rc = bump(&b, (sc->n_rcpt + 1) * sizeof(char *));
	for (size_t i = 0; i < sc->n_rcpt; i++)
		rc[i] = bump_str(&b, sc->rcpt[i]);
	c->rcpt = rc;
	if (sc->spf) {
		it->spf = *sc->spf;
		c->spf = &it->spf;
	}
	if (sc->spf_helo) {
		it->spf_helo = *sc->spf_helo;
		c->spf_helo = &it->spf_helo;
	}
	if (sc->dkim) {
		it->dkim = *sc->dkim;
		it->dkim.sigs = nsig ? bump(&b, nsig * sizeof(struct dkv_sig)) : NULL;
		if (nsig)
			memcpy(it->dkim.sigs, sc->dkim->sigs, nsig * sizeof(struct dkv_sig));
		c->dkim = &it->dkim;
	}
	it->dmarc = *sc->dmarc;      /* why and policy_tag are static text */
	c->dmarc = &it->dmarc;
	if (f) {
		it->facts = *f;
		it->facts.m = NULL;
		it->facts.client_ip = bump_str(&b, f->client_ip);
		it->facts.helo = bump_str(&b, f->helo);
		it->facts.mail_from = bump_str(&b, f->mail_from);
		it->facts.aar1 = bump_str(&b, f->aar1);
		const char **dp = bump(&b, (nd + 1) * sizeof(char *));
		for (size_t i = 0; i < nd; i++)
			dp[i] = bump_str(&b, f->dkim_pass[i]);
		it->facts.dkim_pass = dp;
		const char **sp = bump(&b, (ns + 1) * sizeof(char *));
		for (size_t i = 0; i < ns; i++)
			sp[i] = bump_str(&b, f->arc_sealers[i]);
		it->facts.arc_sealers = sp;
		c->facts = &it->facts;
		c->list_given = 1;
		c->has_header = f->m != NULL;
		c->list_id = lid ? bump_strn(&b, lid->value, lid->value_len) : NULL;
		c->list_id_len = lid ? lid->value_len : 0;
		c->list_post = lpo ? bump_strn(&b, lpo->value, lpo->value_len) : NULL;
		c->list_post_len = lpo ? lpo->value_len : 0;
	}
	if (sc->ev) {
		it->ev = *sc->ev;
		c->ev = &it->ev;
	}
	if (sc->pd) {
		it->pd = *sc->pd;        /* override is static text */
		c->pd = &it->pd;
	}
	c->why_spf = bump_str(&b, sc->why_spf);
	c->header_error = bump_str(&b, sc->header_error);
	c->auth_results = bump_str(&b, sc->auth_results);
	c->failure_headers = sc->failure_headers
	                   ? bump_strn(&b, sc->failure_headers, sc->failure_headers_len) : NULL;
	return it;
}

/* The record of a snapshot, built on the writer thread; NULL without memory. */
static struct store_record *record_of(struct hist_item *it)
{
	struct store_record *r = malloc(sizeof(*r));
	if (r && store_record_from_scan(&it->sc, r) < 0) {
		free(r);
		r = NULL;
	}
	free(it);
	return r;
}

static void free_items(struct hist_item **it, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(it[i]);
}

static void free_batch(struct store_record **b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		store_record_clear(b[i]);
		free(b[i]);
	}
}

/* One bounded retention step; 1 when more is to delete. */
static int purge(struct history *h, struct store *st)
{
	char err[512];
	uint64_t n = 0;
	int more = 0;
	int64_t before = h->retention_days
	               ? (int64_t)time(NULL) - (int64_t)h->retention_days * 86400 : 0;
	if (store_purge(st, before, h->max_size, LIM_HISTORY_PURGE_ROWS, &n, &more,
	                err, sizeof(err)) < 0) {
		log_msg(LOG_LVL_WARN, "history: retention: %s", err);
		return 0;
	}
	if (n) {
		log_msg(LOG_LVL_INFO, "history: retention removed %llu records", (unsigned long long)n);
		pthread_mutex_lock(&h->mu);
		h->purged += n;
		pthread_mutex_unlock(&h->mu);
	}
	return more;
}

static void *writer(void *arg)
{
	struct history *h = arg;
	struct store *st = NULL;
	struct store_record *batch[LIM_HISTORY_BATCH];
	struct hist_item *taken[LIM_HISTORY_BATCH];
	size_t nb = 0;
	time_t next_purge = 0, open_logged = 0;
	char err[512];
	int stopping = 0;
	for (;;) {
		if (!st) {
			if (store_open(h->uri, &st, err, sizeof(err)) == 0) {
				log_msg(LOG_LVL_INFO, "history: %s store open (schema version %d, found %d)",
				        store_backend(st), STORE_SCHEMA_VERSION, store_found_version(st));
				pthread_mutex_lock(&h->mu);
				h->open = 1;
				pthread_mutex_unlock(&h->mu);
			} else {
				time_t now = time(NULL);
				if (now - open_logged >= 60) {
					log_msg(LOG_LVL_ERR, "history: cannot open the store: %s", err);
					open_logged = now;
				}
			}
		}
		if (st && time(NULL) >= next_purge && !h->stop) {
			/* a store far over its limits is cut down a step at a time,
			 * between batches, so neither writing nor a shutdown waits
			 * for the whole of it */
			next_purge = purge(h, st) ? 0 : time(NULL) + LIM_HISTORY_PURGE_S;
		}
		pthread_mutex_lock(&h->mu);
		if (!st && !h->stop) {
			wait_ms(h, LIM_HISTORY_RETRY_MS);
			pthread_mutex_unlock(&h->mu);
			continue;
		}
		while (nb == 0 && h->n == 0 && !h->stop) {
			time_t now = time(NULL);
			unsigned ms = next_purge > now ? (unsigned)(next_purge - now) * 1000 : 1;
			wait_ms(h, ms);
			if (st && time(NULL) >= next_purge)
				break;
		}
		stopping = h->stop;
		size_t nt = 0;
		while (nb + nt < LIM_HISTORY_BATCH && h->n > 0) {
			taken[nt++] = h->ring[h->head];
			h->head = (h->head + 1) % h->cap;
			h->n--;
		}
		h->in_hand = nb + nt;
		pthread_mutex_unlock(&h->mu);
		/* the records are built here, off the loop thread */
		uint64_t unbuilt = 0;
		for (size_t i = 0; i < nt; i++) {
			struct store_record *r = record_of(taken[i]);
			if (r)
				batch[nb++] = r;
			else
				unbuilt++;
		}
		if (unbuilt) {
			pthread_mutex_lock(&h->mu);
			h->dropped += unbuilt;
			h->in_hand -= unbuilt;
			pthread_mutex_unlock(&h->mu);
		}
		if (nb == 0) {
			if (stopping)
				break;
			continue;
		}
		int rc = st ? store_append(st, (const struct store_record *const *)batch, nb,
		                           err, sizeof(err)) : -1;
		pthread_mutex_lock(&h->mu);
		if (rc == 0) {
			h->written += nb;
			h->in_hand = 0;
		} else {
			h->errors++;
		}
		pthread_mutex_unlock(&h->mu);
		if (rc == 0) {
			free_batch(batch, nb);
			nb = 0;
			continue;
		}
		if (st)
			log_msg(LOG_LVL_WARN, "history: a batch of %zu records was not written: %s", nb, err);
		if (stopping) {
			/* shutting down with a store that refuses: what is left is lost */
			pthread_mutex_lock(&h->mu);
			uint64_t lost = nb + h->n;
			while (h->n > 0) {
				free_items(&h->ring[h->head], 1);
				h->head = (h->head + 1) % h->cap;
				h->n--;
			}
			h->dropped += lost;
			h->in_hand = 0;
			pthread_mutex_unlock(&h->mu);
			free_batch(batch, nb);
			nb = 0;
			log_msg(LOG_LVL_ERR, "history: %llu records lost at shutdown", (unsigned long long)lost);
			break;
		}
		/* keep the batch and try again: a locked or unreachable database
		 * fills the queue, and scans then drop records instead of waiting */
		pthread_mutex_lock(&h->mu);
		wait_ms(h, LIM_HISTORY_RETRY_MS);
		pthread_mutex_unlock(&h->mu);
	}
	store_close(&st);
	return NULL;
}

int history_start(struct srv *s, char *err, size_t errlen)
{
	const struct srv_config *c = s->cfg;
	if (strcmp(c->history, "off") == 0)
		return 0;
	struct history *h = calloc(1, sizeof(*h));
	if (!h || !(h->uri = strdup(c->history)) ||
	    !(h->ring = calloc((size_t)c->history_queue, sizeof(*h->ring)))) {
		if (h)
			free(h->uri);
		free(h);
		snprintf(err, errlen, "history: out of memory");
		return -1;
	}
	h->cap = (size_t)c->history_queue;
	h->retention_days = c->history_retention;
	h->max_size = c->history_max_size;
	pthread_mutex_init(&h->mu, NULL);
	pthread_cond_init(&h->cond, NULL);
	int rc = pthread_create(&h->thread, NULL, writer, h);
	if (rc != 0) {
		snprintf(err, errlen, "history: cannot start the writer: %s", strerror(rc));
		pthread_mutex_destroy(&h->mu);
		pthread_cond_destroy(&h->cond);
		free(h->ring);
		free(h->uri);
		free(h);
		return -1;
	}
	s->hist = h;
	return 0;
}

void history_stop(struct srv *s)
{
	struct history *h = s->hist;
	if (!h)
		return;
	s->hist = NULL;
	pthread_mutex_lock(&h->mu);
	h->stop = 1;
	pthread_cond_signal(&h->cond);
	pthread_mutex_unlock(&h->mu);
	pthread_join(h->thread, NULL);
	log_msg(LOG_LVL_INFO, "history: %llu records written, %llu dropped",
	        (unsigned long long)h->written, (unsigned long long)h->dropped);
	while (h->n > 0) {
		free_items(&h->ring[h->head], 1);
		h->head = (h->head + 1) % h->cap;
		h->n--;
	}
	pthread_mutex_destroy(&h->mu);
	pthread_cond_destroy(&h->cond);
	free(h->ring);
	free(h->uri);
	free(h);
}

static void note_drop(struct history *h)
{
	/* one line per LIM_HISTORY_DROP_LOG_S: a full queue under load would
	 * otherwise write a line per message */
	h->drops_unlogged++;
	time_t now = time(NULL);
	if (now - h->drop_logged >= LIM_HISTORY_DROP_LOG_S) {
		log_msg(LOG_LVL_WARN, "history: queue full (%zu records): %llu records dropped"
		        " since the last report", h->cap, (unsigned long long)h->drops_unlogged);
		h->drop_logged = now;
		h->drops_unlogged = 0;
	}
}

/* RFC 9991: may a failure report be due? Only when enabled, for a record
 * with a usable ruf= whose fo= asks for this outcome; never for mail that
 * an explicit override accepted, nor for reports and other automatic mail
 * (RFC 3834 Auto-Submitted, multipart/report): no report about a report. */
static int failure_due(const struct srv_config *cfg, const struct verdict_in *in,
                       const struct policy_facts *f, const struct verdict *v)
{
	const struct dmarc_result *d = in->dmarc;
	if (!cfg->failure_reports || !f || !f->m || d->where == DMARC_AT_NONE ||
	    d->rec.ruf_valid == 0 || (d->res != DMARC_RES_FAIL && d->res != DMARC_RES_PASS))
		return 0;
	int dkim_failed = 0;
	for (size_t i = 0; in->dkim && i < in->dkim->n; i++)
		if (in->dkim->sigs[i].res == AUTH_FAIL)
			dkim_failed = 1;
	int spf_failed = in->spf && in->spf->result == AUTH_FAIL;
	if (!dmarc_fo_wants(d->rec.fo, d->dkim_aligned == 1, d->spf_aligned == 1, dkim_failed,
	                    spf_failed))
		return 0;
	if (v->action == VERDICT_ACCEPT && ((in->policy && in->policy->override) ||
	                                    d->override != DMARC_OVR_NONE))
		return 0;
	const struct msg_field *as = msg_get(f->m, "Auto-Submitted", 0);
	if (as) {
		const char *p = as->value;
		size_t n = as->value_len;
		text_trim(&p, &n);
		if (!(n >= 2 && strncasecmp(p, "no", 2) == 0 && (n == 2 || p[2] == ';' || p[2] == ' ' ||
		                                                  p[2] == '(')))
			return 0;
	}
	const struct msg_field *ct = msg_get(f->m, "Content-Type", 0);
	if (ct) {
		const char *p = ct->value;
		size_t n = ct->value_len;
		text_trim(&p, &n);
		if (n >= 16 && strncasecmp(p, "multipart/report", 16) == 0)
			return 0;
	}
	return 1;
}

void history_add(struct srv *s, const struct srv_config *cfg, const struct proto_request *req,
                 const struct verdict_in *in, const struct policy_facts *facts,
                 const struct policy_evidence *ev, const struct verdict *v)
{
	struct history *h = s->hist;
	if (!h || !in->dmarc)
		return;
	pthread_mutex_lock(&h->mu);
	int full = h->n >= h->cap;
	if (full)
		h->dropped++;
	pthread_mutex_unlock(&h->mu);
	if (full) {
		note_drop(h);
		return;
	}
	struct store_scan sc = {
		.time = (int64_t)time(NULL),
		.client_ip = req->client_ip,
		.helo = req->helo,
		.mail_from = req->mail_from,
		.queue_id = req->queue_id,
		.rcpt = (const char *const *)req->rcpt,
		.n_rcpt = req->n_rcpt,
		.spf = in->spf,
		.spf_helo = in->spf_helo,
		.dkim = in->dkim,
		.dmarc = in->dmarc,
		/* as scan.c chooses: RFC 7489 only with a public suffix list */
		.dmarc_mode = strcmp(cfg->dmarc_mode, "rfc7489") == 0 && s->eng && s->eng->psl
		            ? DMARC_MODE_RFC7489 : DMARC_MODE_RFC9989,
		.policy_mode = cfg->policy.mode,
		.facts = facts,
		.ev = ev,
		.pd = in->policy,
		.action = verdict_action_name(v->action),
		.why_spf = in->spf ? NULL : in->why_spf,
		.header_error = in->header_error,
		.dkim_timeout = in->dkim_timeout,
		.timed_out = in->timed_out,
		.out_of_memory = in->out_of_memory,
		.score = v->score,
	};
	if (failure_due(cfg, in, facts, v) && facts->m->n_fields > 0) {
		const char *hs = facts->m->fields[0].line;
		size_t n = (size_t)(facts->m->body - hs);
		sc.failure_headers = hs;
		sc.failure_headers_len = n > LIM_FAILURE_HEADERS ? LIM_FAILURE_HEADERS : n;
		sc.auth_results = v->ar.failed ? NULL : v->ar.data;
	}
	struct hist_item *it = snapshot(&sc);
	if (!it) {
		pthread_mutex_lock(&h->mu);
		h->dropped++;
		pthread_mutex_unlock(&h->mu);
		note_drop(h);
		return;
	}
	pthread_mutex_lock(&h->mu);
	if (h->n < h->cap) {
		h->ring[(h->head + h->n) % h->cap] = it;
		h->n++;
		h->accepted++;
		it = NULL;
		pthread_cond_signal(&h->cond);
	} else {
		h->dropped++;
	}
	pthread_mutex_unlock(&h->mu);
	if (it) {
		free(it);
		note_drop(h);
	}
}

size_t history_stats(struct srv *s, const char **names, uint64_t *values, size_t max)
{
	struct history *h = s->hist;
	if (!h)
		return 0;
	pthread_mutex_lock(&h->mu);
	/* Queued: accepted and not yet committed (in the ring or in the
	 * writer's batch); those are what a crash can lose */
	const char *n[] = { "History-Queued", "History-Written", "History-Dropped",
	                    "History-Errors", "History-Purged", "History-Open" };
	uint64_t v[] = { h->n + h->in_hand, h->written, h->dropped, h->errors, h->purged,
	                 (uint64_t)h->open };
	pthread_mutex_unlock(&h->mu);
	size_t k = 0;
	for (; k < sizeof(n) / sizeof(n[0]) && k < max; k++) {
		names[k] = n[k];
		values[k] = v[k];
	}
	return k;
}

int history_counts(struct srv *s, struct history_counts *c)
{
	struct history *h = s->hist;
	if (!h)
		return -1;
	pthread_mutex_lock(&h->mu);
	*c = (struct history_counts){ h->n + h->in_hand, h->written, h->dropped, h->errors,
	                              h->purged, (uint64_t)h->open };
	pthread_mutex_unlock(&h->mu);
	return 0;
}
