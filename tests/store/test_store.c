/* The history store against one back end (the same program runs against
 * SQLite and PostgreSQL, see run_store.py): records built from check
 * results go in and come out field for field; queries by period and
 * domain; retention by age and by size; the evidence replays through the
 * policy decision; an older schema is migrated in place.
 *
 * usage: test_store URI-TEMPLATE   (one %s: the name of a fresh store) */
#include "tests/unit/check.h"
#include "store/evidence.h"
#include "store/store.h"

#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *tmpl;

/* tmpl holds one "%s" where the store's name goes */
static void uri_of(const char *name, char *out, size_t cap)
{
	const char *hole = strstr(tmpl, "%s");
	if (!hole) {
		snprintf(out, cap, "%s", tmpl);
		return;
	}
	snprintf(out, cap, "%.*s%s%s", (int)(hole - tmpl), tmpl, name, hole + 2);
}

static struct store *open_store(const char *name)
{
	char uri[1024], err[512];
	uri_of(name, uri, sizeof(uri));
	struct store *st = NULL;
	if (store_open(uri, &st, err, sizeof(err)) < 0)
		fprintf(stderr, "store_open %s: %s\n", uri, err);
	return st;
}

/* ---- scenario messages, as the scan would hand them over ---- */

struct scenario {
	struct spf_result spf, helo;
	struct dkv_sig sigs[2];
	struct dkv_result dkim;
	struct dmarc_result dmarc;
	struct policy_conf conf;
	struct policy_facts facts;
	struct policy_evidence ev;
	struct policy_decision pd;
	int has_pd;
	const char *dkim_pass[2];
	const char *sealers[2];
	struct msg m;
	const char *rcpt[3];
	struct store_scan scan;
};

static void base(struct scenario *s, int64_t when, const char *qid)
{
	memset(s, 0, sizeof(*s));
	s->conf.mode = POLICY_RFC9989;   /* the daemon's default */
	s->spf.result = AUTH_PASS;
	snprintf(s->spf.domain, sizeof(s->spf.domain), "bounce.example.org");
	snprintf(s->spf.mechanism, sizeof(s->spf.mechanism), "ip4:192.0.2.0/24");
	s->helo.result = AUTH_NONE;
	snprintf(s->helo.domain, sizeof(s->helo.domain), "mail.example.org");
	s->dmarc.where = DMARC_AT_AUTHOR;
	s->dmarc.rec.status = DMARC_REC_VALID;
	s->dmarc.rec.pct = 100;
	s->rcpt[0] = "a@Example.NET";
	s->rcpt[1] = "b@example.net";
	s->rcpt[2] = "c@other.example";
	s->scan = (struct store_scan){
		.time = when, .client_ip = "192.0.2.7", .helo = "mail.example.org",
		.mail_from = "bounce@Bounce.Example.org", .queue_id = qid,
		.rcpt = s->rcpt, .n_rcpt = 3, .spf = &s->spf, .spf_helo = &s->helo,
		.dkim = &s->dkim, .dmarc = &s->dmarc, .dmarc_mode = DMARC_MODE_RFC9989,
		.policy_mode = POLICY_RFC9989, .facts = &s->facts, .ev = &s->ev,
		.action = "accept",
	};
	s->facts = (struct policy_facts){
		.client_ip = "192.0.2.7", .helo = "mail.example.org",
		.mail_from = "bounce@bounce.example.org", .spf_mfrom_pass = 1,
		.dkim_pass = s->dkim_pass, .arc_sealers = s->sealers,
	};
}

static void finish(struct scenario *s)
{
	s->dkim.sigs = s->sigs;
	policy_gather(&s->conf, &s->facts, &s->ev);
	if (s->dmarc.res == DMARC_RES_FAIL) {
		enum policy_disp d = s->dmarc.disp == DMARC_DISP_REJECT ? POLICY_DISP_REJECT
		                   : s->dmarc.disp == DMARC_DISP_QUARANTINE ? POLICY_DISP_QUARANTINE
		                   : POLICY_DISP_NONE;
		policy_decide(&s->conf, s->dmarc.domain, d, &s->ev, &s->pd);
		s->has_pd = 1;
		s->scan.pd = &s->pd;
	}
}

/* DMARC pass: aligned DKIM, p=reject sp=quarantine adkim=s */
static void scenario_pass(struct scenario *s, int64_t when, const char *qid)
{
	base(s, when, qid);
	s->dmarc.res = DMARC_RES_PASS;
	snprintf(s->dmarc.domain, sizeof(s->dmarc.domain), "example.com");
	snprintf(s->dmarc.policy_domain, sizeof(s->dmarc.policy_domain), "example.com");
	s->dmarc.rec.p = DMARC_POLICY_REJECT;
	s->dmarc.rec.sp = DMARC_POLICY_QUARANTINE;
	s->dmarc.rec.adkim_strict = 1;
	s->dmarc.policy = DMARC_POLICY_REJECT;
	s->dmarc.disp = DMARC_DISP_NONE;
	s->dkim.n = 2;
	s->sigs[0].res = AUTH_PASS;
	snprintf(s->sigs[0].d, sizeof(s->sigs[0].d), "Example.com");
	snprintf(s->sigs[0].s, sizeof(s->sigs[0].s), "s2048");
	s->sigs[1].res = AUTH_FAIL;
	snprintf(s->sigs[1].d, sizeof(s->sigs[1].d), "esp.example");
	snprintf(s->sigs[1].s, sizeof(s->sigs[1].s), "k1");
	s->dkim_pass[0] = "example.com";
	s->facts.n_dkim_pass = 1;
	finish(s);
}

/* DMARC fail, p=reject, lowered: an ARC chain from a trusted sealer whose
 * first hop saw dmarc=pass */
static void scenario_arc(struct scenario *s, int64_t when, const char *qid)
{
	base(s, when, qid);
	char e[256];
	policy_add_sealers(&s->conf, "arc.example.net", e, sizeof(e));
	s->dmarc.res = DMARC_RES_FAIL;
	snprintf(s->dmarc.domain, sizeof(s->dmarc.domain), "sub.example.com");
	snprintf(s->dmarc.org_domain, sizeof(s->dmarc.org_domain), "example.com");
	snprintf(s->dmarc.policy_domain, sizeof(s->dmarc.policy_domain), "example.com");
	s->dmarc.where = DMARC_AT_ORG;
	s->dmarc.rec.p = DMARC_POLICY_QUARANTINE;
	s->dmarc.rec.sp = DMARC_POLICY_REJECT;
	s->dmarc.rec.np = DMARC_POLICY_REJECT;
	s->dmarc.rec.psd = DMARC_PSD_N;
	s->dmarc.rec.aspf_strict = 1;
	s->dmarc.policy = DMARC_POLICY_REJECT;
	s->dmarc.policy_tag = "sp";
	s->dmarc.disp = DMARC_DISP_REJECT;
	s->spf.result = AUTH_FAIL;
	s->facts.spf_mfrom_pass = 0;
	s->facts.arc = AUTH_PASS;
	s->sealers[0] = "arc.example.net";
	s->facts.n_sealers = 1;
	s->facts.aar1 = "i=1; arc.example.net; dmarc=pass header.from=sub.example.com";
	s->scan.action = "accept";
	finish(s);
}

/* DMARC fail under p=quarantine from a mailing list (List-Id, no list
 * signature): quarantined, no override; null sender, so the SPF scope is
 * helo */
static void scenario_quarantine(struct scenario *s, int64_t when, const char *qid)
{
	base(s, when, qid);
	static const char hdr[] = "From: x@example.com\r\nList-Id: Talk <talk.lists.example>\r\n\r\n";
	msg_parse(hdr, sizeof(hdr) - 1, &s->m);
	s->facts.m = &s->m;
	s->dmarc.res = DMARC_RES_FAIL;
	snprintf(s->dmarc.domain, sizeof(s->dmarc.domain), "example.com");
	snprintf(s->dmarc.policy_domain, sizeof(s->dmarc.policy_domain), "example.com");
	s->dmarc.rec.p = DMARC_POLICY_QUARANTINE;
	s->dmarc.rec.t = 0;
	s->dmarc.rec.pct = 50;
	s->dmarc.policy = DMARC_POLICY_QUARANTINE;
	s->dmarc.disp = DMARC_DISP_QUARANTINE;
	s->scan.mail_from = "";
	s->facts.mail_from = "";
	s->spf.result = AUTH_SOFTFAIL;
	snprintf(s->spf.domain, sizeof(s->spf.domain), "mail.example.org");
	s->scan.spf_helo = NULL;
	s->scan.action = "quarantine";
	s->scan.dkim = NULL;
	finish(s);
}

static void scenario_free(struct scenario *s)
{
	policy_conf_free(&s->conf);
	msg_free(&s->m);
}

/* ---- collecting query results ---- */

struct rows {
	struct store_record r[64];
	size_t n;
	int64_t ids[4096];
	size_t nid;
};

static int collect(void *arg, const struct store_record *r)
{
	struct rows *w = arg;
	if (w->nid < 4096)
		w->ids[w->nid++] = r->id;
	if (w->n < 64) {
		struct store_record *c = &w->r[w->n++];
		*c = *r;
		c->dkim = NULL;
		c->n_dkim = 0;
		c->evidence = r->evidence ? strdup(r->evidence) : NULL;
		if (r->n_dkim && store_record_dkim(c, r->n_dkim) == 0)
			memcpy(c->dkim, r->dkim, r->n_dkim * sizeof(*r->dkim));
	}
	return 0;
}

static void rows_free(struct rows *w)
{
	for (size_t i = 0; i < w->n; i++)
		store_record_clear(&w->r[i]);
	w->n = w->nid = 0;
}

static int query(struct store *st, int64_t since, int64_t until, const char *dom, size_t limit,
                 struct rows *w)
{
	char err[512];
	rows_free(w);
	struct store_query q = { since, until, dom, limit };
	int rc = store_query(st, &q, collect, w, err, sizeof(err));
	if (rc < 0)
		fprintf(stderr, "query: %s\n", err);
	return rc;
}

static int append_one(struct store *st, const struct store_record *r)
{
	char err[512];
	const struct store_record *b[1] = { r };
	int rc = store_append(st, b, 1, err, sizeof(err));
	if (rc < 0)
		fprintf(stderr, "append: %s\n", err);
	return rc;
}

/* ---- tests ---- */

static void test_fields(void)
{
	struct store *st = open_store("fields");
	CHECK(st != NULL);
	if (!st)
		return;
	CHECK(store_found_version(st) == 0);
	static struct scenario sa, sb, sc;
	scenario_pass(&sa, 1700000000, "Q1");
	scenario_arc(&sb, 1700000100, "Q2");
	scenario_quarantine(&sc, 1700000200, "Q3");
	struct store_record ra, rb, rcq;
	CHECK(store_record_from_scan(&sa.scan, &ra) == 0);
	CHECK(store_record_from_scan(&sb.scan, &rb) == 0);
	CHECK(store_record_from_scan(&sc.scan, &rcq) == 0);
	const struct store_record *batch[3] = { &ra, &rb, &rcq };
	char err[512];
	CHECK(store_append(st, batch, 3, err, sizeof(err)) == 0);
	CHECK(store_count(st, err, sizeof(err)) == 3);

	static struct rows w;
	CHECK(query(st, 0, INT64_MAX, NULL, 0, &w) == 0);
	CHECK(w.n == 3);
	if (w.n == 3) {
		const struct store_record *a = &w.r[0], *b = &w.r[1], *c = &w.r[2];
		CHECK(a->id > 0 && b->id > a->id && c->id > b->id);
		/* pass */
		CHECK(a->time == 1700000000);
		CHECK_STR(a->client_ip, "192.0.2.7");
		CHECK_STR(a->mail_from_domain, "bounce.example.org");
		CHECK_STR(a->rcpt_domains, "example.net other.example");
		CHECK_STR(a->from_domain, "example.com");
		CHECK_STR(a->policy_domain, "example.com");
		CHECK_STR(a->discovery, "author");
		CHECK_STR(a->discovery_method, "rfc9989");
		CHECK_STR(a->p, "reject");
		CHECK_STR(a->sp, "quarantine");
		CHECK_STR(a->np, "");
		CHECK(a->adkim == 's' && a->aspf == 'r' && a->psd == 'u' && a->t == 0 && a->pct == 100);
		CHECK_STR(a->dmarc_result, "pass");
		CHECK_STR(a->policy_disposition, "none");
		CHECK_STR(a->disposition, "none");
		CHECK_STR(a->overrides, "");
		CHECK_STR(a->action, "accept");
		CHECK_STR(a->spf_domain, "bounce.example.org");
		CHECK_STR(a->spf_scope, "mfrom");
		CHECK_STR(a->spf_result, "pass");
		CHECK(a->n_dkim == 2);
		if (a->n_dkim == 2) {
			CHECK_STR(a->dkim[0].d, "example.com");
			CHECK_STR(a->dkim[0].s, "s2048");
			CHECK_STR(a->dkim[0].result, "pass");
			CHECK_STR(a->dkim[1].d, "esp.example");
			CHECK_STR(a->dkim[1].s, "k1");
			CHECK_STR(a->dkim[1].result, "fail");
		}
		CHECK_STR(a->queue_id, "Q1");
		CHECK(a->evidence && strstr(a->evidence, "\"v\":2") != NULL);
		/* reject lowered by the trusted ARC sealer */
		CHECK_STR(b->from_domain, "sub.example.com");
		CHECK_STR(b->policy_domain, "example.com");
		CHECK_STR(b->discovery, "org");
		CHECK_STR(b->p, "quarantine");
		CHECK_STR(b->sp, "reject");
		CHECK_STR(b->np, "reject");
		CHECK(b->aspf == 's' && b->adkim == 'r' && b->psd == 'n');
		CHECK_STR(b->dmarc_result, "fail");
		CHECK_STR(b->policy_disposition, "reject");
		CHECK_STR(b->disposition, "none");
		CHECK_STR(b->overrides, "trusted_forwarder");
		CHECK_STR(b->spf_result, "fail");
		CHECK(b->n_dkim == 0);
		CHECK_STR(b->queue_id, "Q2");
		/* quarantine, null sender */
		CHECK_STR(c->dmarc_result, "fail");
		CHECK_STR(c->policy_disposition, "quarantine");
		CHECK_STR(c->disposition, "quarantine");
		CHECK_STR(c->overrides, "");
		CHECK_STR(c->action, "quarantine");
		CHECK_STR(c->mail_from_domain, "");
		CHECK_STR(c->spf_scope, "helo");
		CHECK_STR(c->spf_domain, "mail.example.org");
		CHECK_STR(c->spf_result, "softfail");
		CHECK(c->pct == 50);
		CHECK(c->n_dkim == 0);
	}

	/* replay: the stored inputs give the same decision under the same
	 * configuration, and another one under another configuration */
	if (w.n == 3) {
		struct store_replay rp;
		CHECK(store_replay_load(w.r[1].evidence, &rp, err, sizeof(err)) == 0);
		CHECK(rp.version == 2);
		CHECK_STR(rp.domain, "sub.example.com");
		/* the whole decision again: as stored under the scan's own
		 * configuration, a reject without the trusted sealer, and a
		 * quarantine if the domain published p=quarantine */
		{
			struct verdict_opts vo;
			verdict_opts_default(&vo);
			struct store_replay_conf rc = { .policy = &sb.conf, .vo = &vo,
			                                .bad_author_disp = DMARC_DISP_REJECT };
			struct store_outcome out;
			enum verdict_action sact;
			enum dmarc_disp sdisp;
			CHECK(store_replay_stored(&rp, &sact, &sdisp) == 0);
			CHECK(sact == VERDICT_ACCEPT && sdisp == DMARC_DISP_NONE);
			CHECK(store_replay_decide(&rp, &rc, &out) == 0);
			CHECK(out.action == sact && out.disp == sdisp && !out.unknown);
			CHECK_STR(out.override, "trusted_forwarder");
			struct policy_conf plain = { .mode = POLICY_RFC9989 };
			rc.policy = &plain;
			CHECK(store_replay_decide(&rp, &rc, &out) == 0);
			CHECK(out.action == VERDICT_REJECT && out.disp == DMARC_DISP_REJECT);
			CHECK_STR(out.override, "");
			rc.as_domain = "example.com";
			rc.as_policy = DMARC_POLICY_QUARANTINE;
			CHECK(store_replay_decide(&rp, &rc, &out) == 0);
			CHECK(out.action == VERDICT_QUARANTINE && out.disp == DMARC_DISP_QUARANTINE);
			rc.as_domain = "other.example";
			CHECK(store_replay_decide(&rp, &rc, &out) == 0);
			CHECK(out.action == VERDICT_REJECT);
			/* a version 1 document (no "scan" member) still replays */
			char *v1 = strdup(w.r[1].evidence);
			char *at = v1 ? strstr(v1, "\"v\":2") : NULL;
			if (at)
				at[4] = '1';
			struct store_replay old;
			CHECK(at && store_replay_load(v1, &old, err, sizeof(err)) == 0 && old.version == 1);
			store_replay_free(&old);
			free(v1);
		}
		CHECK(rp.disp == POLICY_DISP_REJECT);
		CHECK(rp.decided && rp.decided_disp == POLICY_DISP_NONE);
		CHECK_STR(rp.decided_override, "trusted_forwarder");
		struct policy_evidence ev;
		struct policy_decision pd;
		policy_gather(&sb.conf, &rp.facts, &ev);
		CHECK(ev.arc_trusted && ev.arc_aar1_dmarc_pass);
		policy_decide(&sb.conf, rp.domain, rp.disp, &ev, &pd);
		CHECK(pd.disp == sb.pd.disp);
		CHECK_STR(pd.override, sb.pd.override);
		/* what if the sealer were not trusted: reject (untrusted_arc =
		 * ignore), or quarantine (forwarded) with untrusted_arc = quarantine */
		struct policy_conf none = { .mode = POLICY_RFC9989 };
		policy_gather(&none, &rp.facts, &ev);
		policy_decide(&none, rp.domain, rp.disp, &ev, &pd);
		CHECK(pd.disp == POLICY_DISP_REJECT && pd.override == NULL);
		none.untrusted_arc_lowers = 1;
		policy_decide(&none, rp.domain, rp.disp, &ev, &pd);
		CHECK(pd.disp == POLICY_DISP_QUARANTINE);
		CHECK_STR(pd.override, "forwarded");
		none.untrusted_arc_lowers = 0;
		/* and under policy_mode strict: reject */
		none.mode = POLICY_STRICT;
		policy_decide(&none, rp.domain, rp.disp, &ev, &pd);
		CHECK(pd.disp == POLICY_DISP_REJECT && pd.override == NULL);
		store_replay_free(&rp);

		/* the list headers come back: a trusted, signed list would
		 * have lowered a reject */
		CHECK(store_replay_load(w.r[2].evidence, &rp, err, sizeof(err)) == 0);
		CHECK(rp.facts.m != NULL);
		CHECK_STR(rp.facts.mail_from, "");
		struct policy_conf lists = { .mode = POLICY_RFC9989 };
		policy_add_lists(&lists, "lists.example", err, sizeof(err));
		const char *dp[1] = { "lists.example" };
		rp.facts.dkim_pass = dp;
		rp.facts.n_dkim_pass = 1;
		policy_gather(&lists, &rp.facts, &ev);
		CHECK(ev.list && ev.list_trusted && ev.list_signed);
		CHECK_STR(ev.list_domain, "lists.example");
		policy_decide(&lists, rp.domain, POLICY_DISP_REJECT, &ev, &pd);
		CHECK_STR(pd.override, "mailing_list");
		policy_conf_free(&lists);
		store_replay_free(&rp);

		CHECK(store_replay_load("{\"v\":99}", &rp, err, sizeof(err)) < 0);
		CHECK(store_replay_load("not json", &rp, err, sizeof(err)) < 0);
	}

	/* queries by period and domain */
	CHECK(query(st, 1700000100, 1700000200, NULL, 0, &w) == 0);
	CHECK(w.n == 1 && strcmp(w.r[0].queue_id, "Q2") == 0);
	CHECK(query(st, 0, INT64_MAX, "example.com", 0, &w) == 0);
	CHECK(w.n == 3);
	CHECK(query(st, 0, INT64_MAX, "sub.example.com", 0, &w) == 0);
	CHECK(w.n == 1 && strcmp(w.r[0].queue_id, "Q2") == 0);
	CHECK(query(st, 0, INT64_MAX, "nobody.example", 0, &w) == 0);
	CHECK(w.n == 0);
	CHECK(query(st, 0, INT64_MAX, NULL, 2, &w) == 0);
	CHECK(w.n == 2);
	rows_free(&w);

	store_record_clear(&ra);
	store_record_clear(&rb);
	store_record_clear(&rcq);
	scenario_free(&sa);
	scenario_free(&sb);
	scenario_free(&sc);
	store_close(&st);
	CHECK(st == NULL);

	/* reopened: nothing to migrate, the rows are there */
	st = open_store("fields");
	CHECK(st && store_found_version(st) == STORE_SCHEMA_VERSION);
	if (st)
		CHECK(store_count(st, err, sizeof(err)) == 3);
	store_close(&st);
}

static void test_retention(void)
{
	struct store *st = open_store("retention");
	CHECK(st != NULL);
	if (!st)
		return;
	static struct scenario s;
	char err[512], qid[32];
	/* 100 records, one a day */
	for (int i = 0; i < 100; i++) {
		snprintf(qid, sizeof(qid), "R%d", i);
		scenario_pass(&s, 1700000000 + (int64_t)i * 86400, qid);
		struct store_record r;
		CHECK(store_record_from_scan(&s.scan, &r) == 0);
		CHECK(append_one(st, &r) == 0);
		store_record_clear(&r);
		scenario_free(&s);
	}
	uint64_t n = 0;
	int more = 0;
	/* a budget smaller than what is due: a step at a time */
	CHECK(store_purge(st, 1700000000 + 30 * 86400, 0, 12, &n, &more, err, sizeof(err)) == 0);
	CHECK(n == 12 && more);
	CHECK(store_purge(st, 1700000000 + 30 * 86400, 0, 12, &n, &more, err, sizeof(err)) == 0);
	CHECK(n == 12 && more);
	CHECK(store_purge(st, 1700000000 + 30 * 86400, 0, 12, &n, &more, err, sizeof(err)) == 0);
	CHECK(n == 6 && !more);
	CHECK(store_count(st, err, sizeof(err)) == 70);
	static struct rows w;
	CHECK(query(st, 0, INT64_MAX, NULL, 1, &w) == 0);
	CHECK(w.n == 1 && strcmp(w.r[0].queue_id, "R30") == 0);

	/* size cap: the oldest go until the rest fits */
	int64_t size = store_size(st, err, sizeof(err));
	CHECK(size > 0);
	uint64_t cap = (uint64_t)size / 2;
	CHECK(store_purge(st, 0, cap, 1000, &n, &more, err, sizeof(err)) == 0);
	CHECK(n > 0 && n < 70 && !more);
	CHECK(store_size(st, err, sizeof(err)) <= (int64_t)cap);
	int64_t left = store_count(st, err, sizeof(err));
	CHECK(left == 70 - (int64_t)n);
	/* the newest survive */
	CHECK(query(st, 1700000000 + 99 * 86400, INT64_MAX, NULL, 0, &w) == 0);
	CHECK(w.n == 1);
	CHECK(store_purge(st, 0, 0, 1000, &n, &more, err, sizeof(err)) == 0 && n == 0 && !more);
	/* a cap far below the size, with a small budget: the budget holds */
	CHECK(store_purge(st, 0, 1, 5, &n, &more, err, sizeof(err)) == 0);
	CHECK(n == 5 && more);
	rows_free(&w);
	store_close(&st);
}

/* The layout of schema version 1, as a database created by the first
 * release holds it (kept here on purpose: not taken from the code that
 * migrates it). */
#define V1_TABLE(idtype) \
	"CREATE TABLE schema_version (version INTEGER NOT NULL);" \
	"INSERT INTO schema_version VALUES (1);" \
	"CREATE TABLE history (id " idtype ", time BIGINT NOT NULL," \
	" client_ip TEXT NOT NULL, mail_from_domain TEXT NOT NULL, from_domain TEXT NOT NULL," \
	" policy_domain TEXT NOT NULL, discovery TEXT NOT NULL, p TEXT NOT NULL, sp TEXT NOT NULL," \
	" np TEXT NOT NULL, adkim TEXT NOT NULL, aspf TEXT NOT NULL, psd TEXT NOT NULL," \
	" t INTEGER NOT NULL, pct INTEGER NOT NULL, dmarc_result TEXT NOT NULL," \
	" policy_disposition TEXT NOT NULL, disposition TEXT NOT NULL, overrides TEXT NOT NULL," \
	" spf_domain TEXT NOT NULL, spf_scope TEXT NOT NULL, spf_result TEXT NOT NULL," \
	" dkim TEXT NOT NULL, queue_id TEXT NOT NULL, evidence TEXT NOT NULL);" \
	"CREATE INDEX history_time ON history (time);" \
	"CREATE INDEX history_policy_domain ON history (policy_domain, time);" \
	"INSERT INTO history (time, client_ip, mail_from_domain, from_domain, policy_domain," \
	" discovery, p, sp, np, adkim, aspf, psd, t, pct, dmarc_result, policy_disposition," \
	" disposition, overrides, spf_domain, spf_scope, spf_result, dkim, queue_id, evidence)" \
	" VALUES (1600000000, '198.51.100.1', 'old.example', 'old.example', 'old.example'," \
	" 'author', 'reject', '', '', 'r', 'r', 'u', 0, 100, 'fail', 'reject', 'reject', ''," \
	" 'old.example', 'mfrom', 'fail', '[{\"d\":\"old.example\",\"s\":\"s1\",\"r\":\"fail\"}]'," \
	" 'OLD1', '{\"v\":1}');"

static void test_migrate(void)
{
	char uri[1024];
	uri_of("migrate", uri, sizeof(uri));
	int made = 0;
	if (strncmp(uri, "sqlite:", 7) == 0) {
		sqlite3 *db = NULL;
		char *msg = NULL;
		if (sqlite3_open(uri + 7, &db) == SQLITE_OK &&
		    sqlite3_exec(db, V1_TABLE("INTEGER PRIMARY KEY AUTOINCREMENT"), NULL, NULL, &msg) == SQLITE_OK)
			made = 1;
		else
			fprintf(stderr, "v1 database: %s\n", msg ? msg : "?");
		sqlite3_free(msg);
		sqlite3_close(db);
	} else {
		PGconn *c = PQconnectdb(uri);
		PGresult *r = PQexec(c, V1_TABLE("BIGSERIAL PRIMARY KEY"));
		if (PQresultStatus(r) == PGRES_COMMAND_OK)
			made = 1;
		else
			fprintf(stderr, "v1 database: %s\n", PQerrorMessage(c));
		PQclear(r);
		PQfinish(c);
	}
	CHECK(made);
	struct store *st = open_store("migrate");
	CHECK(st != NULL);
	if (!st)
		return;
	CHECK(store_found_version(st) == 1);
	char err[512];
	static struct rows w;
	CHECK(query(st, 0, INT64_MAX, NULL, 0, &w) == 0);
	CHECK(w.n == 1);
	if (w.n == 1) {
		CHECK_STR(w.r[0].queue_id, "OLD1");
		CHECK_STR(w.r[0].rcpt_domains, "");          /* the new columns' defaults */
		CHECK_STR(w.r[0].discovery_method, "rfc9989");
		CHECK_STR(w.r[0].action, "");
		CHECK(w.r[0].n_dkim == 1 && strcmp(w.r[0].dkim[0].s, "s1") == 0);
	}
	/* and new records go in after it */
	static struct scenario s;
	scenario_pass(&s, 1700000000, "NEW1");
	struct store_record r;
	CHECK(store_record_from_scan(&s.scan, &r) == 0);
	CHECK(append_one(st, &r) == 0);
	store_record_clear(&r);
	scenario_free(&s);
	CHECK(store_count(st, err, sizeof(err)) == 2);
	CHECK(query(st, 0, INT64_MAX, "example.com", 0, &w) == 0);
	CHECK(w.n == 1 && strcmp(w.r[0].action, "accept") == 0 &&
	      strcmp(w.r[0].rcpt_domains, "example.net other.example") == 0);
	rows_free(&w);
	store_close(&st);
	st = open_store("migrate");
	CHECK(st && store_found_version(st) == STORE_SCHEMA_VERSION);
	store_close(&st);
}

static void test_bad_uri(void)
{
	struct store *st = NULL;
	char err[512];
	CHECK(store_open("mysql://x", &st, err, sizeof(err)) < 0 && st == NULL);
	CHECK(store_open("sqlite:", &st, err, sizeof(err)) < 0 && st == NULL);
	CHECK(store_open("sqlite:/nonexistent-dir/x/y.sqlite", &st, err, sizeof(err)) < 0);
}

int main(int argc, char **argv)
{
	if (argc != 2 || !strstr(argv[1], "%s")) {
		fprintf(stderr, "usage: test_store URI-TEMPLATE (with one %%s)\n");
		return 2;
	}
	tmpl = argv[1];
	test_fields();
	test_retention();
	test_migrate();
	test_bad_uri();
	return check_done(strncmp(tmpl, "sqlite:", 7) == 0 ? "store (sqlite)" : "store (postgresql)");
}
