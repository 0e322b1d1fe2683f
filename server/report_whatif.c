/* alignd-report --what-if: every stored message of a period re-decided
 * under a proposed configuration (store_replay_decide: the code the
 * daemon runs after its checks), counted by report/whatif.c, printed as
 * text or JSON, and optionally drawn per day with gnuplot. Reads the
 * store; sends and changes nothing. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <pthread.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/text.h"
#include "report/whatif.h"
#include "server/report_tool.h"
#include "store/evidence.h"

enum { EX_NOINPUT_ = 66 };

#define PROPOSAL_MAX 1024   /* the one-line description of the proposal */

/* One stored message on its way from the store's reader (the main
 * thread) to a worker. */
struct job {
	int64_t time;
	char domain[STORE_DOMAIN_MAX], ip[64], qid[128];
	char *evidence;                /* owned */
};

/* A worker re-decides jobs into counts of its own, merged at the end. */
struct worker {
	pthread_t thread;
	struct run *u;
	struct rpt_whatif *w;
	struct store_replay rp;        /* reused: it is large */
	uint64_t unreadable, disp_changed;
	int nomem;
};

struct run {
	const struct whatif_opts *o;
	struct store_replay_conf rc;
	uint64_t rows;
	int nomem;                     /* the reader ran out of memory */
	/* the jobs between the reader and the workers, under mu */
	pthread_mutex_t mu;
	pthread_cond_t can_put, can_take;
	struct job ring[LIM_WHATIF_QUEUE];
	size_t head, n;
	int done;
	struct worker workers[LIM_WHATIF_WORKERS];
	size_t n_workers;
};

static int under(const char *name, const char *domain)
{
	return text_domain_within(name, domain, strlen(domain));
}

static const char *disp_word(enum dmarc_disp d)
{
	return d == DMARC_DISP_REJECT ? "reject" : d == DMARC_DISP_QUARANTINE ? "quarantine" : "none";
}

/* Why the verdict of r changes from what was stored to o. */
static void why_changed(char *dst, size_t cap, const struct store_replay *r, enum dmarc_disp sdisp,
                        const struct store_outcome *o, const struct store_replay_conf *c)
{
	const char *was = r->decided_override[0] ? r->decided_override
	                : r->dmarc.override != DMARC_OVR_NONE ? dmarc_override_name(r->dmarc.override)
	                : "";
	const char *dom = r->dmarc.domain[0] ? r->dmarc.domain : "?";
	if (strcmp(was, o->override) != 0) {
		if (!*was)
			snprintf(dst, cap, "DMARC %s of %s is now lowered to %s: override %s",
			         disp_word(sdisp), dom, disp_word(o->disp), o->override);
		else if (!o->override[0])
			snprintf(dst, cap, "override %s no longer applies: DMARC %s of %s stands",
			         was, disp_word(o->disp), dom);
		else
			snprintf(dst, cap, "override %s becomes %s (DMARC %s of %s)", was, o->override,
			         disp_word(o->disp), dom);
	} else if (sdisp != o->disp) {
		snprintf(dst, cap, "DMARC disposition of %s %s -> %s", dom, disp_word(sdisp),
		         disp_word(o->disp));
	} else {
		snprintf(dst, cap, "score %.2f -> %.2f (quarantine at %.2f, reject at %.2f)",
		         r->score, o->score, c->vo->quarantine_score, c->vo->reject_score);
	}
}

/* Re-decides one stored message into the worker's counts. */
static void decide_job(struct worker *k, const struct job *j)
{
	char err[256];
	struct store_replay *r = &k->rp;
	enum verdict_action sact;
	enum dmarc_disp sdisp;
	if (store_replay_load(j->evidence, r, err, sizeof(err)) < 0) {
		k->unreadable++;
		return;
	}
	struct store_outcome out;
	if (store_replay_stored(r, &sact, &sdisp) < 0) {
		k->unreadable++;
	} else if (store_replay_decide(r, &k->u->rc, &out) < 0) {
		k->nomem = 1;
	} else {
		char why[512] = "";
		if (out.action != sact || out.disp != sdisp)
			why_changed(why, sizeof(why), r, sdisp, &out, &k->u->rc);
		k->disp_changed += out.disp != sdisp;
		struct rpt_whatif_msg m = {
			.time = j->time,
			.domain = j->domain,
			.source = j->ip,
			.queue_id = j->qid,
			.now = (int)sact,
			.proposed = (int)out.action,
			.why = why,
			.unknown = out.unknown,
		};
		if (rpt_whatif_add(k->w, &m) < 0)
			k->nomem = 1;
	}
	store_replay_free(r);
}

static void *worker_main(void *arg)
{
	struct worker *k = arg;
	struct run *u = k->u;
	for (;;) {
		pthread_mutex_lock(&u->mu);
		while (u->n == 0 && !u->done)
			pthread_cond_wait(&u->can_take, &u->mu);
		if (u->n == 0) {
			pthread_mutex_unlock(&u->mu);
			return NULL;
		}
		struct job j = u->ring[u->head];
		u->head = (u->head + 1) % LIM_WHATIF_QUEUE;
		u->n--;
		pthread_cond_signal(&u->can_put);
		pthread_mutex_unlock(&u->mu);
		if (!k->nomem)
			decide_job(k, &j);
		free(j.evidence);
	}
}

static void copy_text(char *dst, size_t cap, const char *src)
{
	size_t n = strlen(src);
	if (n >= cap)
		n = cap - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* The store's callback: the record's replay inputs become a job. */
static int on_row(void *arg, const struct store_record *rec)
{
	struct run *u = arg;
	const struct whatif_opts *o = u->o;
	if (o->domain && !under(rec->from_domain, o->domain))
		return 0;
	u->rows++;
	struct job j = { .time = rec->time, .evidence = strdup(rec->evidence ? rec->evidence : "") };
	if (!j.evidence) {
		u->nomem = 1;
		return 1;
	}
	copy_text(j.domain, sizeof(j.domain), rec->from_domain);
	copy_text(j.ip, sizeof(j.ip), rec->client_ip);
	copy_text(j.qid, sizeof(j.qid), rec->queue_id);
	pthread_mutex_lock(&u->mu);
	while (u->n == LIM_WHATIF_QUEUE)
		pthread_cond_wait(&u->can_put, &u->mu);
	u->ring[(u->head + u->n) % LIM_WHATIF_QUEUE] = j;
	u->n++;
	pthread_cond_signal(&u->can_take);
	pthread_mutex_unlock(&u->mu);
	return 0;
}

/* Starts the workers: one per processor, the reader being mostly I/O. 0 or -1. */
static int start_workers(struct run *u, const struct store_replay_conf *rc)
{
	u->rc = *rc;
	pthread_mutex_init(&u->mu, NULL);
	pthread_cond_init(&u->can_put, NULL);
	pthread_cond_init(&u->can_take, NULL);
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	size_t want = cpus < 1 ? 1 : cpus > (long)LIM_WHATIF_WORKERS ? LIM_WHATIF_WORKERS : (size_t)cpus;
	for (size_t i = 0; i < want; i++) {
		struct worker *k = &u->workers[i];
		k->u = u;
		if (!(k->w = rpt_whatif_new()))
			break;
		if (pthread_create(&k->thread, NULL, worker_main, k) != 0) {
			rpt_whatif_free(&k->w);
			break;
		}
		u->n_workers++;
	}
	return u->n_workers ? 0 : -1;
}

/* Lets the workers finish the queue, joins them and merges their counts
 * into *w_r (the first worker's). 0, or -1 without memory. */
static int stop_workers(struct run *u, struct rpt_whatif **w_r, uint64_t *unreadable,
                        uint64_t *disp_changed)
{
	pthread_mutex_lock(&u->mu);
	u->done = 1;
	pthread_cond_broadcast(&u->can_take);
	pthread_mutex_unlock(&u->mu);
	int rc = 0;
	for (size_t i = 0; i < u->n_workers; i++) {
		struct worker *k = &u->workers[i];
		pthread_join(k->thread, NULL);
		*unreadable += k->unreadable;
		*disp_changed += k->disp_changed;
		if (k->nomem || (i > 0 && rpt_whatif_merge(u->workers[0].w, k->w) < 0))
			rc = -1;
		if (i > 0)
			rpt_whatif_free(&k->w);
	}
	*w_r = u->n_workers ? u->workers[0].w : NULL;
	u->n_workers = 0;
	pthread_cond_destroy(&u->can_put);
	pthread_cond_destroy(&u->can_take);
	pthread_mutex_destroy(&u->mu);
	return rc;
}

/* The keys whose values the proposal changes, as "key = value, ..." */
static int describe(const struct srv_config *cur, const struct srv_config *prop,
                    const struct whatif_opts *o, char *dst, size_t cap)
{
	char *a = NULL, *b = NULL;
	size_t al = 0, bl = 0;
	FILE *fa = open_memstream(&a, &al), *fb = open_memstream(&b, &bl);
	if (!fa || !fb) {
		if (fa)
			fclose(fa);
		if (fb)
			fclose(fb);
		free(a);
		free(b);
		return -1;
	}
	cfg_print(cur, fa);
	cfg_print(prop, fb);
	fclose(fa);
	fclose(fb);
	dst[0] = '\0';
	size_t used = 0;
	int dmarc_mode = 0;
	for (char *save = NULL, *line = strtok_r(b, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		/* a line of the proposal not in the running configuration */
		size_t n = strlen(line);
		const char *p = a;
		int same = 0;
		while (p && !same) {
			const char *e = strchr(p, '\n');
			size_t ln = e ? (size_t)(e - p) : strlen(p);
			same = ln == n && memcmp(p, line, n) == 0;
			p = e ? e + 1 : NULL;
		}
		/* which store is read is no part of the proposal */
		if (same || line[0] == '#' || strncmp(line, "history ", 8) == 0)
			continue;
		dmarc_mode |= strncmp(line, "dmarc_mode ", 11) == 0;
		int k = snprintf(dst + used, cap - used, "%s%s", used ? ", " : "", line);
		if (k < 0 || (size_t)k >= cap - used) {
			/* cut: end with an ellipsis */
			memcpy(dst + cap - 5, " ...", 5);
			used = cap - 1;
			break;
		}
		used += (size_t)k;
	}
	free(a);
	free(b);
	if (o->as_policy && used + 1 < cap) {
		int k = snprintf(dst + used, cap - used, "%sas if %s published p=%s", used ? ", " : "",
		                 o->domain, o->as_policy);
		if (k > 0)
			used = (size_t)k < cap - used ? used + (size_t)k : cap - 1;
	}
	if (dmarc_mode && used + 1 < cap)
		snprintf(dst + used, cap - used, " (dmarc_mode is not replayed: discovery and alignment "
		         "stay as they were found)");
	if (!dst[0])
		snprintf(dst, cap, "the running configuration unchanged");
	return 0;
}

/* Draws the verdicts per day, now and as proposed, with gnuplot. */
static int chart(const struct rpt_whatif *w, const char *png)
{
	if (strpbrk(png, "'\"\n\\")) {
		fprintf(stderr, "alignd-report: --chart: the file name may not hold quotes, "
		        "backslashes or new lines\n");
		return EX_USAGE_;
	}
	char data[] = "/tmp/alignd-whatif-XXXXXX";
	int fd = mkstemp(data);
	if (fd < 0) {
		fprintf(stderr, "alignd-report: --chart: %s\n", strerror(errno));
		return EX_UNAVAILABLE_;
	}
	struct buf days;
	buf_init(&days, 0);
	int ok = rpt_whatif_days(w, &days) == 0 &&
	         write(fd, days.data ? days.data : "", days.len) == (ssize_t)days.len;
	close(fd);
	buf_free(&days);
	if (!ok) {
		unlink(data);
		fprintf(stderr, "alignd-report: --chart: cannot write the data\n");
		return EX_UNAVAILABLE_;
	}
	FILE *gp = popen("gnuplot 2>&1", "w");
	int rc = -1;
	if (gp) {
		fprintf(gp,
		        "set terminal pngcairo size 1000,500 noenhanced\n"
		        "set output '%s'\n"
		        "set title 'Verdicts per day: now and as proposed'\n"
		        "set xdata time\nset timefmt '%%Y-%%m-%%d'\nset format x '%%m-%%d'\n"
		        "set ylabel 'messages'\nset key outside right\nset grid ytics\n"
		        "set style data linespoints\n"
		        "plot '%s' using 1:4 title 'reject now' lw 2 lc rgb '#b22222', "
		        "'' using 1:8 title 'reject proposed' lw 2 dt 2 lc rgb '#ff6347', "
		        "'' using 1:3 title 'quarantine now' lw 2 lc rgb '#b8860b', "
		        "'' using 1:7 title 'quarantine proposed' lw 2 dt 2 lc rgb '#ffd700', "
		        "'' using 1:2 title 'accept now' lw 2 lc rgb '#2e8b57', "
		        "'' using 1:6 title 'accept proposed' lw 2 dt 2 lc rgb '#7fff00'\n",
		        png, data);
		rc = pclose(gp);
	}
	unlink(data);
	if (rc != 0) {
		fprintf(stderr, "alignd-report: --chart needs gnuplot with PNG output "
		        "(Debian: apt install gnuplot-nox); the report above is complete\n");
		return EX_UNAVAILABLE_;
	}
	return EX_OK_;
}

int report_whatif(const struct whatif_opts *o)
{
	struct srv_config *cur = NULL, *prop = NULL;
	struct rpt_whatif *w = NULL;
	struct run *u = calloc(1, sizeof(*u));   /* large: the workers' replay buffers */
	struct store *st = NULL;
	uint64_t unreadable = 0, disp_changed = 0;
	struct buf out;
	buf_init(&out, 0);
	int rc = EX_UNAVAILABLE_;
	if (!u) {
		fprintf(stderr, "alignd-report: out of memory\n");
		goto done;
	}
	u->o = o;
	rc = report_load_config(o->config, NULL, 0, &cur);
	if (rc != EX_OK_)
		goto done;
	rc = report_load_config(o->proposed ? o->proposed : o->config, o->sets, o->nsets, &prop);
	if (rc != EX_OK_) {
		fprintf(stderr, "alignd-report: the proposed configuration is not valid (see above)\n");
		goto done;
	}
	enum dmarc_policy as = DMARC_POLICY_UNSET;
	if (o->as_policy) {
		as = strcmp(o->as_policy, "reject") == 0 ? DMARC_POLICY_REJECT
		   : strcmp(o->as_policy, "quarantine") == 0 ? DMARC_POLICY_QUARANTINE
		   : strcmp(o->as_policy, "none") == 0 ? DMARC_POLICY_NONE : DMARC_POLICY_UNSET;
		if (as == DMARC_POLICY_UNSET || !o->domain) {
			fprintf(stderr, "alignd-report: --as-policy wants none, quarantine or reject, "
			        "and --domain\n");
			rc = EX_USAGE_;
			goto done;
		}
	}
	int64_t now = (int64_t)time(NULL), since;
	if (report_parse_since(o->since ? o->since : "7d", now, &since) < 0) {
		fprintf(stderr, "alignd-report: --since wants Nd, Nh, Nm or YYYY-MM-DD, not '%s'\n",
		        o->since);
		rc = EX_USAGE_;
		goto done;
	}
	char proposal[PROPOSAL_MAX];
	if (describe(cur, prop, o, proposal, sizeof(proposal)) < 0) {
		fprintf(stderr, "alignd-report: out of memory\n");
		rc = EX_UNAVAILABLE_;
		goto done;
	}
	struct verdict_opts vo;
	cfg_verdict_opts(prop, &vo);
	struct store_replay_conf rconf = {
		.policy = &prop->policy,
		.vo = &vo,
		.bad_author_disp = cfg_bad_author_disp(prop),
		.as_domain = o->as_policy ? o->domain : NULL,
		.as_policy = as,
	};
	char err[512];
	rc = report_open_store(prop, &st, err, sizeof(err));
	if (rc != EX_OK_)
		goto done;
	int64_t total = store_count(st, err, sizeof(err));
	if (total < 0) {
		fprintf(stderr, "alignd-report: reading the history store: %s\n", err);
		rc = EX_UNAVAILABLE_;
		goto done;
	}
	if (total == 0) {
		fprintf(stderr, "alignd-report: the history store (%s) holds no records yet: "
		        "nothing to replay\n", prop->history);
		rc = EX_NOINPUT_;
		goto done;
	}
	if (start_workers(u, &rconf) < 0) {
		fprintf(stderr, "alignd-report: cannot start the replay threads\n");
		rc = EX_UNAVAILABLE_;
		goto done;
	}
	struct store_query q = { .since = since, .until = now + 1 };
	int qrc = store_query(st, &q, on_row, u, err, sizeof(err));
	int mrc = stop_workers(u, &w, &unreadable, &disp_changed);
	if (qrc < 0 || u->nomem || mrc < 0) {
		fprintf(stderr, "alignd-report: reading the history store: %s\n",
		        qrc < 0 ? err : "out of memory");
		rc = EX_UNAVAILABLE_;
		goto done;
	}
	if (u->rows == 0) {
		char a[32];
		time_t t = (time_t)since;
		struct tm tm;
		gmtime_r(&t, &tm);
		strftime(a, sizeof(a), "%Y-%m-%d %H:%M", &tm);
		fprintf(stderr, "alignd-report: no stored messages%s%s since %s UTC (the store holds "
		        "%lld in all)\n", o->domain ? " from " : "", o->domain ? o->domain : "", a,
		        (long long)total);
		rc = EX_NOINPUT_;
		goto done;
	}
	struct rpt_whatif_head h = { since, now + 1, proposal, unreadable, disp_changed };
	if ((o->json ? rpt_whatif_json(w, &h, o->top, &out)
	             : rpt_whatif_text(w, &h, o->top, &out)) < 0) {
		fprintf(stderr, "alignd-report: out of memory\n");
		rc = EX_UNAVAILABLE_;
		goto done;
	}
	fwrite(out.data, 1, out.len, stdout);
	fflush(stdout);
	rc = o->chart ? chart(w, o->chart) : EX_OK_;
done:
	buf_free(&out);
	store_close(&st);
	rpt_whatif_free(&w);
	free(u);
	cfg_unref(&cur);
	cfg_unref(&prop);
	return rc;
}
