/* The evidence record of one scan and its replay. The JSON document is
 * versioned ("v") and names every value in words, so that a later reader
 * (a report, a what-if run under another configuration) needs no table of
 * numbers from this version of the code. Pure; any thread. */
#include "store/evidence.h"
#include "common/text.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- names (kept here so that stored words never depend on enum values) ---- */

static const char *const res_names[] = { "none", "pass", "fail", "temperror", "permerror" };
static const char *const disp_names[] = { "none", "quarantine", "reject" };
static const char *const ovr_names[] = { "none", "forwarded", "trusted_forwarder",
                                         "mailing_list", "local_policy", "sampled_out" };
static const char *const where_names[] = { "none", "author", "org", "psd" };
static const char *const mode_names[] = { "strict", "rfc9989", "quarantine-only" };
static const char *const pol_names[] = { "", "none", "quarantine", "reject", "invalid" };

#define NAME(tab, v) ((unsigned)(v) < sizeof(tab) / sizeof(tab[0]) ? tab[(unsigned)(v)] : tab[0])

static int name_index(const char *const *tab, size_t n, const char *s)
{
	for (size_t i = 0; s && i < n; i++)
		if (strcmp(tab[i], s) == 0)
			return (int)i;
	return -1;
}

static enum auth_res auth_res_from(const char *s)
{
	for (int r = AUTH_NONE; r <= AUTH_POLICY; r++)
		if (s && strcmp(auth_res_name((enum auth_res)r), s) == 0)
			return (enum auth_res)r;
	return AUTH_NONE;
}

static void copy(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src ? src : "");
}

static void copy_lower(char *dst, size_t cap, const char *src)
{
	size_t i = 0;
	for (; src && src[i] && i + 1 < cap; i++)
		dst[i] = (char)tolower((unsigned char)src[i]);
	dst[i] = '\0';
}

/* ---- building JSON from untrusted text ---- */

/* jansson accepts only UTF-8: anything else is stored made printable
 * (such a value can match no configured name anyway). */
static json_t *jstrn(const char *s, size_t len)
{
	if (!s)
		return json_null();
	json_t *j = json_stringn(s, len);
	if (j)
		return j;
	char *buf = malloc(len + 4);
	if (!buf)
		return NULL;
	size_t n = text_printable(buf, len + 4, s, len);
	j = json_stringn(buf, n);
	free(buf);
	return j;
}

static json_t *jstr(const char *s)
{
	return s ? jstrn(s, strlen(s)) : json_null();
}

/* json_object_set_new() fails on a NULL value: remember it */
struct jb {
	int failed;
};

static void set(struct jb *b, json_t *o, const char *k, json_t *v)
{
	if (!v || !o || json_object_set_new(o, k, v) < 0)
		b->failed = 1;
}

static void push(struct jb *b, json_t *a, json_t *v)
{
	if (!v || !a || json_array_append_new(a, v) < 0)
		b->failed = 1;
}

static json_t *spf_json(struct jb *b, const struct spf_result *s)
{
	if (!s)
		return json_null();
	json_t *o = json_object();
	set(b, o, "domain", jstr(s->domain));
	set(b, o, "result", json_string(auth_res_name(s->result)));
	set(b, o, "mechanism", jstr(s->mechanism));
	set(b, o, "problem", jstr(s->problem));
	return o;
}

static const char *domain_part(const char *addr)
{
	if (!addr)
		return "";
	const char *at = strrchr(addr, '@');
	return at ? at + 1 : addr;
}

static void header_value(struct jb *b, json_t *o, const char *key, const struct msg *m,
                         const char *name)
{
	const struct msg_field *f = m ? msg_get(m, name, 0) : NULL;
	set(b, o, key, f ? jstrn(f->value, f->value_len) : json_null());
}

/* A header section as a JSON string: line structure kept, anything else
 * outside printable ASCII made '?' (JSON strings are UTF-8) */
static json_t *jheaders(const char *h, size_t len)
{
	char *buf = malloc(len + 1);
	if (!buf)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)h[i];
		buf[i] = (c == '\r' || c == '\n' || c == '\t' || (c >= 0x20 && c < 0x7f)) ? (char)c : '?';
	}
	json_t *j = json_stringn(buf, len);
	free(buf);
	return j;
}

static json_t *evidence_json(struct jb *b, const struct store_scan *s, const struct store_record *r)
{
	const struct dmarc_result *d = s->dmarc;
	json_t *doc = json_object();
	set(b, doc, "v", json_integer(STORE_EVIDENCE_VERSION));
	set(b, doc, "time", json_integer(s->time));

	json_t *env = json_object();
	set(b, env, "client_ip", jstr(s->client_ip));
	set(b, env, "helo", jstr(s->helo));
	set(b, env, "mail_from", jstr(s->mail_from));
	json_t *rc = json_array();
	for (size_t i = 0; i < s->n_rcpt; i++)
		push(b, rc, jstr(s->rcpt[i]));
	set(b, env, "rcpt", rc);
	set(b, env, "queue_id", jstr(s->queue_id));
	set(b, doc, "envelope", env);

	json_t *spf = json_object();
	set(b, spf, "mfrom", spf_json(b, s->spf));
	set(b, spf, "helo", spf_json(b, s->spf_helo));
	set(b, doc, "spf", spf);

	json_t *dk = json_array();
	for (size_t i = 0; s->dkim && i < s->dkim->n; i++) {
		const struct dkv_sig *g = &s->dkim->sigs[i];
		json_t *o = json_object();
		set(b, o, "d", jstr(g->d));
		set(b, o, "s", jstr(g->s));
		set(b, o, "a", jstr(g->a));
		set(b, o, "i", jstr(g->i));
		set(b, o, "result", json_string(auth_res_name(g->res)));
		set(b, o, "reason", jstr(g->reason));
		set(b, o, "key_bits", json_integer(g->key_bits));
		set(b, o, "key_testing", json_boolean(g->key_testing));
		push(b, dk, o);
	}
	set(b, doc, "dkim", dk);

	json_t *dm = json_object();
	set(b, dm, "mode", json_string(s->dmarc_mode == DMARC_MODE_RFC7489 ? "rfc7489" : "rfc9989"));
	set(b, dm, "result", json_string(NAME(res_names, d->res)));
	set(b, dm, "author_status", json_integer(d->author_status));
	set(b, dm, "n_domains", json_integer((json_int_t)d->n_domains));
	set(b, dm, "domain", jstr(d->domain));
	set(b, dm, "org_domain", jstr(d->org_domain));
	set(b, dm, "policy_domain", jstr(d->policy_domain));
	set(b, dm, "where", json_string(NAME(where_names, d->where)));
	set(b, dm, "walk_step", json_integer(d->walk_step));
	if (d->where != DMARC_AT_NONE) {
		const struct dmarc_record *rec = &d->rec;
		json_t *ro = json_object();
		set(b, ro, "p", json_string(NAME(pol_names, rec->p)));
		set(b, ro, "sp", json_string(NAME(pol_names, rec->sp)));
		set(b, ro, "np", json_string(NAME(pol_names, rec->np)));
		set(b, ro, "psd", json_string(rec->psd == DMARC_PSD_Y ? "y" : rec->psd == DMARC_PSD_N ? "n" : "u"));
		set(b, ro, "t", json_boolean(rec->t));
		set(b, ro, "adkim", json_string(rec->adkim_strict ? "s" : "r"));
		set(b, ro, "aspf", json_string(rec->aspf_strict ? "s" : "r"));
		set(b, ro, "pct", json_integer(rec->pct));
		set(b, ro, "has_pct", json_boolean(rec->has_pct));
		set(b, ro, "forced_none", json_boolean(rec->forced_none));
		set(b, ro, "p_absent", json_boolean(rec->p_absent));
		set(b, ro, "rua_valid", json_integer(rec->rua_valid));
		set(b, ro, "ruf_valid", json_integer(rec->ruf_valid));
		set(b, ro, "fo", jstr(rec->fo));
		set(b, dm, "record", ro);
	} else {
		set(b, dm, "record", json_null());
	}
	set(b, dm, "policy", json_string(NAME(pol_names, d->policy)));
	set(b, dm, "policy_tag", jstr(d->policy_tag));
	set(b, dm, "applied", json_string(NAME(pol_names, d->applied)));
	set(b, dm, "disposition", json_string(NAME(disp_names, d->disp)));
	set(b, dm, "author_exists", json_integer(d->author_exists));
	set(b, dm, "spf_aligned", json_integer(d->spf_aligned));
	set(b, dm, "dkim_aligned", json_integer(d->dkim_aligned));
	set(b, dm, "spf_domain", jstr(d->spf_domain));
	set(b, dm, "dkim_domain", jstr(d->dkim_domain));
	set(b, dm, "testing", json_boolean(d->testing));
	set(b, dm, "sample_bucket", json_integer(d->sample_bucket));
	set(b, dm, "override", json_string(NAME(ovr_names, d->override)));
	set(b, dm, "why", jstr(d->why));
	set(b, doc, "dmarc", dm);

	/* the policy layer's inputs, as policy_gather() and policy_decide() read them */
	json_t *po = json_object();
	set(b, po, "mode", json_string(NAME(mode_names, s->policy_mode)));
	const struct policy_facts *f = s->facts;
	if (f) {
		json_t *fo = json_object();
		set(b, fo, "client_ip", jstr(f->client_ip));
		set(b, fo, "helo", jstr(f->helo));
		set(b, fo, "mail_from", jstr(f->mail_from));
		set(b, fo, "spf_helo_pass", json_boolean(f->spf_helo_pass));
		set(b, fo, "spf_mfrom_pass", json_boolean(f->spf_mfrom_pass));
		json_t *dp = json_array();
		for (size_t i = 0; i < f->n_dkim_pass; i++)
			push(b, dp, jstr(f->dkim_pass[i]));
		set(b, fo, "dkim_pass", dp);
		set(b, fo, "arc", json_string(auth_res_name(f->arc)));
		json_t *se = json_array();
		for (size_t i = 0; i < f->n_sealers; i++)
			push(b, se, jstr(f->arc_sealers[i]));
		set(b, fo, "arc_sealers", se);
		set(b, fo, "arc_oldest_pass", json_integer(f->arc_oldest_pass));
		set(b, fo, "aar1", jstr(f->aar1));
		set(b, fo, "has_header", json_boolean(f->m != NULL));
		header_value(b, fo, "list_id", f->m, "List-Id");
		header_value(b, fo, "list_post", f->m, "List-Post");
		set(b, po, "facts", fo);
	} else {
		set(b, po, "facts", json_null());
	}
	const struct policy_evidence *ev = s->ev;
	if (ev) {
		json_t *eo = json_object();
		set(b, eo, "arc", json_string(auth_res_name(ev->arc)));
		set(b, eo, "arc_sealer", jstr(ev->arc_sealer));
		set(b, eo, "arc_trusted", json_boolean(ev->arc_trusted));
		set(b, eo, "arc_aar1_dmarc_pass", json_boolean(ev->arc_aar1_dmarc_pass));
		set(b, eo, "forwarder", json_boolean(ev->forwarder));
		set(b, eo, "forwarder_why", jstr(ev->forwarder_why));
		set(b, eo, "list", json_boolean(ev->list));
		set(b, eo, "list_domain", jstr(ev->list_domain));
		set(b, eo, "list_signed", json_boolean(ev->list_signed));
		set(b, eo, "list_trusted", json_boolean(ev->list_trusted));
		set(b, po, "evidence", eo);
	} else {
		set(b, po, "evidence", json_null());
	}
	set(b, po, "asked", json_string(NAME(disp_names, d->disp)));
	if (s->pd) {
		json_t *de = json_object();
		set(b, de, "disposition", json_string(NAME(disp_names, s->pd->disp)));
		set(b, de, "override", s->pd->override ? jstr(s->pd->override) : json_null());
		set(b, de, "why", jstr(s->pd->why));
		set(b, po, "decision", de);
	} else {
		set(b, po, "decision", json_null());
	}
	set(b, doc, "policy", po);

	json_t *ov = json_array();
	if (d->override != DMARC_OVR_NONE) {
		json_t *o = json_object();
		set(b, o, "reason", json_string(NAME(ovr_names, d->override)));
		set(b, o, "by", json_string("dmarc"));
		set(b, o, "why", jstr(d->why));
		push(b, ov, o);
	}
	if (s->pd && s->pd->override) {
		json_t *o = json_object();
		set(b, o, "reason", jstr(s->pd->override));
		set(b, o, "by", json_string("policy"));
		set(b, o, "why", jstr(s->pd->why));
		push(b, ov, o);
	}
	set(b, doc, "overrides", ov);
	/* what else the verdict read (version 2) */
	json_t *so = json_object();
	set(b, so, "why_spf", jstr(s->why_spf));
	set(b, so, "header_error", jstr(s->header_error));
	set(b, so, "dkim_timeout", json_boolean(s->dkim_timeout));
	set(b, so, "timed_out", json_boolean(s->timed_out));
	set(b, so, "out_of_memory", json_boolean(s->out_of_memory));
	set(b, so, "score", json_real(s->score));
	set(b, doc, "scan", so);
	set(b, doc, "disposition", jstr(r->disposition));
	set(b, doc, "action", jstr(s->action));
	if (s->failure_headers) {
		json_t *fr = json_object();
		set(b, fr, "headers", jheaders(s->failure_headers, s->failure_headers_len));
		set(b, fr, "auth_results", jstr(s->auth_results));
		set(b, fr, "rcpt", s->n_rcpt ? jstr(s->rcpt[0]) : json_null());
		set(b, doc, "failure", fr);
	}
	return doc;
}

static void add_word(char *dst, size_t cap, const char *w)
{
	size_t n = strlen(dst);
	snprintf(dst + n, cap - n, "%s%s", n ? " " : "", w);
}

int store_record_from_scan(const struct store_scan *s, struct store_record *r)
{
	memset(r, 0, sizeof(*r));
	const struct dmarc_result *d = s->dmarc;
	r->time = s->time;
	copy(r->client_ip, sizeof(r->client_ip), s->client_ip);
	copy_lower(r->mail_from_domain, sizeof(r->mail_from_domain), domain_part(s->mail_from));
	for (size_t i = 0; i < s->n_rcpt; i++) {
		char dom[STORE_DOMAIN_MAX];
		copy_lower(dom, sizeof(dom), domain_part(s->rcpt[i]));
		/* distinct, whole words */
		size_t dl = strlen(dom);
		const char *p = r->rcpt_domains;
		int seen = 0;
		while (dl && (p = strstr(p, dom)) != NULL) {
			if ((p == r->rcpt_domains || p[-1] == ' ') && (p[dl] == ' ' || p[dl] == '\0'))
				seen = 1;
			p += dl;
		}
		if (dl && !seen && strlen(r->rcpt_domains) + dl + 2 < sizeof(r->rcpt_domains))
			add_word(r->rcpt_domains, sizeof(r->rcpt_domains), dom);
	}
	copy(r->from_domain, sizeof(r->from_domain), d->domain);
	copy(r->policy_domain, sizeof(r->policy_domain), d->policy_domain);
	copy(r->discovery, sizeof(r->discovery), NAME(where_names, d->where));
	copy(r->discovery_method, sizeof(r->discovery_method),
	     s->dmarc_mode == DMARC_MODE_RFC7489 ? "rfc7489" : "rfc9989");
	r->adkim = r->aspf = 'r';
	r->psd = 'u';
	r->pct = 100;
	if (d->where != DMARC_AT_NONE) {
		copy(r->p, sizeof(r->p), NAME(pol_names, d->rec.p));
		copy(r->sp, sizeof(r->sp), NAME(pol_names, d->rec.sp));
		copy(r->np, sizeof(r->np), NAME(pol_names, d->rec.np));
		r->adkim = d->rec.adkim_strict ? 's' : 'r';
		r->aspf = d->rec.aspf_strict ? 's' : 'r';
		r->psd = d->rec.psd == DMARC_PSD_Y ? 'y' : d->rec.psd == DMARC_PSD_N ? 'n' : 'u';
		r->t = d->rec.t;
		r->pct = (int)d->rec.pct;
	}
	copy(r->dmarc_result, sizeof(r->dmarc_result), NAME(res_names, d->res));
	copy(r->policy_disposition, sizeof(r->policy_disposition), NAME(disp_names, d->disp));
	enum dmarc_disp applied = d->disp;
	if (s->pd)
		applied = s->pd->disp == POLICY_DISP_REJECT ? DMARC_DISP_REJECT
		        : s->pd->disp == POLICY_DISP_QUARANTINE ? DMARC_DISP_QUARANTINE : DMARC_DISP_NONE;
	copy(r->disposition, sizeof(r->disposition), NAME(disp_names, applied));
	if (d->override != DMARC_OVR_NONE)
		add_word(r->overrides, sizeof(r->overrides), NAME(ovr_names, d->override));
	if (s->pd && s->pd->override)
		add_word(r->overrides, sizeof(r->overrides), s->pd->override);
	copy(r->action, sizeof(r->action), s->action);
	/* RFC 7208 2.4: with a null reverse path the MAIL FROM check is the
	 * HELO identity, and the report's scope says so (RFC 7489 appendix C) */
	int null_sender = s->mail_from && !s->mail_from[0];
	copy(r->spf_scope, sizeof(r->spf_scope), null_sender ? "helo" : "mfrom");
	if (s->spf) {
		copy_lower(r->spf_domain, sizeof(r->spf_domain), s->spf->domain);
		copy(r->spf_result, sizeof(r->spf_result), auth_res_name(s->spf->result));
	} else {
		copy_lower(r->spf_domain, sizeof(r->spf_domain),
		           null_sender ? s->helo : domain_part(s->mail_from));
		copy(r->spf_result, sizeof(r->spf_result), "none");
	}
	size_t nd = s->dkim ? s->dkim->n : 0;
	if (nd && store_record_dkim(r, nd) < 0)
		return -1;
	for (size_t i = 0; i < nd; i++) {
		copy_lower(r->dkim[i].d, sizeof(r->dkim[i].d), s->dkim->sigs[i].d);
		copy(r->dkim[i].s, sizeof(r->dkim[i].s), s->dkim->sigs[i].s);
		copy(r->dkim[i].result, sizeof(r->dkim[i].result), auth_res_name(s->dkim->sigs[i].res));
	}
	text_printable(r->queue_id, sizeof(r->queue_id), s->queue_id ? s->queue_id : "",
	               s->queue_id ? strlen(s->queue_id) : 0);

	struct jb b = { 0 };
	json_t *doc = evidence_json(&b, s, r);
	if (!b.failed && doc)
		r->evidence = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	if (!r->evidence) {
		store_record_clear(r);
		return -1;
	}
	return 0;
}

/* ---- replay ---- */

static const char *jget_s(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

static int jget_b(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	return json_is_true(v) || (json_is_integer(v) && json_integer_value(v) != 0);
}

static int jget_i(json_t *o, const char *k, int dflt)
{
	json_t *v = json_object_get(o, k);
	return json_is_integer(v) ? (int)json_integer_value(v) : dflt;
}

static enum dmarc_policy pol_from(const char *s)
{
	int i = name_index(pol_names, sizeof(pol_names) / sizeof(pol_names[0]), s);
	return i < 0 ? DMARC_POLICY_UNSET : (enum dmarc_policy)i;
}

static void load_spf(json_t *o, struct spf_result *r, int *has)
{
	if (!json_is_object(o))
		return;
	*has = 1;
	r->result = auth_res_from(jget_s(o, "result"));
	copy(r->domain, sizeof(r->domain), jget_s(o, "domain"));
	copy(r->mechanism, sizeof(r->mechanism), jget_s(o, "mechanism"));
	copy(r->problem, sizeof(r->problem), jget_s(o, "problem"));
}

static int load_dkim(json_t *a, struct store_replay *r)
{
	size_t n = json_array_size(a);
	if (!json_is_array(a))
		return 0;
	r->has_dkim = 1;
	if (n == 0)
		return 0;
	r->dkim.sigs = calloc(n, sizeof(*r->dkim.sigs));
	if (!r->dkim.sigs)
		return -1;
	/* as dkv orders them: pass > fail > temperror > policy > permerror > neutral */
	static const enum auth_res rank[] = { AUTH_PASS, AUTH_FAIL, AUTH_TEMPERROR, AUTH_POLICY,
	                                      AUTH_PERMERROR, AUTH_NEUTRAL };
	size_t best = sizeof(rank) / sizeof(rank[0]);
	for (size_t i = 0; i < n; i++) {
		json_t *o = json_array_get(a, i);
		struct dkv_sig *g = &r->dkim.sigs[r->dkim.n++];
		g->res = auth_res_from(jget_s(o, "result"));
		copy(g->reason, sizeof(g->reason), jget_s(o, "reason"));
		copy(g->d, sizeof(g->d), jget_s(o, "d"));
		copy(g->s, sizeof(g->s), jget_s(o, "s"));
		copy(g->a, sizeof(g->a), jget_s(o, "a"));
		copy(g->i, sizeof(g->i), jget_s(o, "i"));
		int bits = jget_i(o, "key_bits", 0);
		g->key_bits = bits > 0 ? (unsigned)bits : 0;
		g->key_testing = jget_b(o, "key_testing");
		for (size_t k = 0; k < best; k++)
			if (rank[k] == g->res)
				best = k;
	}
	r->dkim.best = best < sizeof(rank) / sizeof(rank[0]) ? rank[best] : AUTH_NONE;
	return 0;
}

static void load_dmarc(json_t *dm, struct store_replay *r)
{
	struct dmarc_result *d = &r->dmarc;
	int i = name_index(res_names, 5, jget_s(dm, "result"));
	d->res = i < 0 ? DMARC_RES_NONE : (enum dmarc_res)i;
	d->author_status = (enum dmarc_author_status)jget_i(dm, "author_status", 0);
	int nd = jget_i(dm, "n_domains", 0);
	d->n_domains = nd > 0 ? (size_t)nd : 0;
	copy(d->domain, sizeof(d->domain), jget_s(dm, "domain"));
	copy(d->org_domain, sizeof(d->org_domain), jget_s(dm, "org_domain"));
	copy(d->policy_domain, sizeof(d->policy_domain), jget_s(dm, "policy_domain"));
	i = name_index(where_names, 4, jget_s(dm, "where"));
	d->where = i < 0 ? DMARC_AT_NONE : (enum dmarc_where)i;
	int ws = jget_i(dm, "walk_step", 0);
	d->walk_step = ws > 0 ? (unsigned)ws : 0;
	json_t *ro = json_object_get(dm, "record");
	d->rec.pct = 100;
	if (json_is_object(ro)) {
		struct dmarc_record *rec = &d->rec;
		rec->p = pol_from(jget_s(ro, "p"));
		rec->sp = pol_from(jget_s(ro, "sp"));
		rec->np = pol_from(jget_s(ro, "np"));
		const char *psd = jget_s(ro, "psd");
		rec->psd = psd && *psd == 'y' ? DMARC_PSD_Y : psd && *psd == 'n' ? DMARC_PSD_N : DMARC_PSD_U;
		rec->t = jget_b(ro, "t");
		const char *x = jget_s(ro, "adkim");
		rec->adkim_strict = x && *x == 's';
		x = jget_s(ro, "aspf");
		rec->aspf_strict = x && *x == 's';
		int pct = jget_i(ro, "pct", 100);
		rec->pct = pct >= 0 && pct <= 100 ? (unsigned)pct : 100;
		rec->has_pct = jget_b(ro, "has_pct");
		rec->forced_none = jget_b(ro, "forced_none");
		rec->p_absent = jget_b(ro, "p_absent");
		int rv = jget_i(ro, "rua_valid", 0), fv = jget_i(ro, "ruf_valid", 0);
		rec->rua_valid = rv > 0 ? (unsigned)rv : 0;
		rec->ruf_valid = fv > 0 ? (unsigned)fv : 0;
		copy(rec->fo, sizeof(rec->fo), jget_s(ro, "fo"));
	}
	d->policy = pol_from(jget_s(dm, "policy"));
	const char *tag = jget_s(dm, "policy_tag");
	d->policy_tag = !tag ? NULL : strcmp(tag, "sp") == 0 ? "sp" : strcmp(tag, "np") == 0 ? "np" : "p";
	d->applied = pol_from(jget_s(dm, "applied"));
	i = name_index(disp_names, 3, jget_s(dm, "disposition"));
	d->disp = i < 0 ? DMARC_DISP_NONE : (enum dmarc_disp)i;
	d->author_exists = jget_i(dm, "author_exists", -1);
	d->spf_aligned = jget_i(dm, "spf_aligned", 0);
	d->dkim_aligned = jget_i(dm, "dkim_aligned", 0);
	copy(d->spf_domain, sizeof(d->spf_domain), jget_s(dm, "spf_domain"));
	copy(d->dkim_domain, sizeof(d->dkim_domain), jget_s(dm, "dkim_domain"));
	d->testing = jget_b(dm, "testing");
	int sb = jget_i(dm, "sample_bucket", 0);
	d->sample_bucket = sb > 0 && sb < 100 ? (unsigned)sb : 0;
	i = name_index(ovr_names, sizeof(ovr_names) / sizeof(ovr_names[0]), jget_s(dm, "override"));
	d->override = i < 0 ? DMARC_OVR_NONE : (enum dmarc_override)i;
	const char *why = jget_s(dm, "why");
	if (why) {
		copy(r->dmarc_why, sizeof(r->dmarc_why), why);
		d->why = r->dmarc_why;
	}
}

static void load_text(json_t *o, const char *k, char *dst, size_t cap, int *has)
{
	const char *s = jget_s(o, k);
	if (s) {
		copy(dst, cap, s);
		*has = 1;
	}
}

static enum policy_disp pdisp_from(const char *s)
{
	int i = name_index(disp_names, 3, s);
	return i == 2 ? POLICY_DISP_REJECT : i == 1 ? POLICY_DISP_QUARANTINE : POLICY_DISP_NONE;
}

int store_replay_load(const char *evidence, struct store_replay *r, char *err, size_t errlen)
{
	memset(r, 0, sizeof(*r));
	json_error_t je;
	json_t *doc = json_loads(evidence ? evidence : "", 0, &je);
	if (!json_is_object(doc)) {
		snprintf(err, errlen, "evidence is not a JSON object: %s", je.text);
		json_decref(doc);
		return -1;
	}
	json_t *v = json_object_get(doc, "v");
	/* a later version adds members; reading an older one keeps working */
	if (!json_is_integer(v) || json_integer_value(v) < 1 ||
	    json_integer_value(v) > STORE_EVIDENCE_VERSION) {
		snprintf(err, errlen, "evidence version %lld is not one this build reads (1..%d)",
		         json_is_integer(v) ? (long long)json_integer_value(v) : -1LL,
		         STORE_EVIDENCE_VERSION);
		json_decref(doc);
		return -1;
	}
	r->version = (int)json_integer_value(v);
	json_t *dm = json_object_get(doc, "dmarc");
	json_t *po = json_object_get(doc, "policy");
	json_t *fo = json_object_get(po, "facts");
	if (!json_is_object(dm) || !json_is_object(po) || !json_is_object(fo)) {
		snprintf(err, errlen, "evidence lacks the dmarc or policy facts members");
		json_decref(doc);
		return -1;
	}
	copy(r->domain, sizeof(r->domain), jget_s(dm, "domain"));
	r->disp = pdisp_from(jget_s(po, "asked"));
	int mi = name_index(mode_names, 3, jget_s(po, "mode"));
	r->policy_mode = mi < 0 ? POLICY_RFC9989 : (enum policy_mode)mi;
	json_t *de = json_object_get(po, "decision");
	if (json_is_object(de)) {
		r->decided = 1;
		r->decided_disp = pdisp_from(jget_s(de, "disposition"));
		copy(r->decided_override, sizeof(r->decided_override), jget_s(de, "override"));
	}

	struct policy_facts *f = &r->facts;
	const char *s;
	if ((s = jget_s(fo, "client_ip"))) {
		copy(r->client_ip, sizeof(r->client_ip), s);
		f->client_ip = r->client_ip;
	}
	if ((s = jget_s(fo, "helo"))) {
		copy(r->helo, sizeof(r->helo), s);
		f->helo = r->helo;
	}
	if ((s = jget_s(fo, "mail_from"))) {
		copy(r->mail_from, sizeof(r->mail_from), s);
		f->mail_from = r->mail_from;
	}
	f->spf_helo_pass = jget_b(fo, "spf_helo_pass");
	f->spf_mfrom_pass = jget_b(fo, "spf_mfrom_pass");
	json_t *a = json_object_get(fo, "dkim_pass");
	for (size_t i = 0; i < json_array_size(a) && f->n_dkim_pass < 64; i++)
		if (json_is_string(json_array_get(a, i))) {
			copy(r->dkim_pass[f->n_dkim_pass], STORE_DOMAIN_MAX,
			     json_string_value(json_array_get(a, i)));
			r->dkim_pass_p[f->n_dkim_pass] = r->dkim_pass[f->n_dkim_pass];
			f->n_dkim_pass++;
		}
	f->dkim_pass = r->dkim_pass_p;
	f->arc = auth_res_from(jget_s(fo, "arc"));
	a = json_object_get(fo, "arc_sealers");
	for (size_t i = 0; i < json_array_size(a) && f->n_sealers < 64; i++)
		if (json_is_string(json_array_get(a, i))) {
			copy(r->sealers[f->n_sealers], STORE_DOMAIN_MAX,
			     json_string_value(json_array_get(a, i)));
			r->sealers_p[f->n_sealers] = r->sealers[f->n_sealers];
			f->n_sealers++;
		}
	f->arc_sealers = r->sealers_p;
	json_t *op = json_object_get(fo, "arc_oldest_pass");
	f->arc_oldest_pass = json_is_integer(op) && json_integer_value(op) > 0
	                   ? (unsigned)json_integer_value(op) : 0;
	if ((s = jget_s(fo, "aar1"))) {
		r->aar1 = strdup(s);
		f->aar1 = r->aar1;
	}
	if (jget_b(fo, "has_header")) {
		/* the only header fields policy_gather reads */
		const char *lid = jget_s(fo, "list_id"), *lpo = jget_s(fo, "list_post");
		size_t n = (lid ? strlen(lid) + 12 : 0) + (lpo ? strlen(lpo) + 14 : 0) + 4;
		r->headers = malloc(n);
		if (r->headers) {
			snprintf(r->headers, n, "%s%s%s%s%s%s\r\n", lid ? "List-Id:" : "", lid ? lid : "",
			         lid ? "\r\n" : "", lpo ? "List-Post:" : "", lpo ? lpo : "", lpo ? "\r\n" : "");
			if (msg_parse(r->headers, strlen(r->headers), &r->m) == MSG_OK)
				f->m = &r->m;
		}
		if (!f->m) {
			snprintf(err, errlen, "cannot rebuild the list header fields");
			json_decref(doc);
			store_replay_free(r);
			return -1;
		}
	}

	/* the checks' results and the stored verdict */
	json_t *tm = json_object_get(doc, "time");
	r->time = json_is_integer(tm) ? (int64_t)json_integer_value(tm) : 0;
	const char *dmode = jget_s(dm, "mode");
	r->dmarc_mode = dmode && strcmp(dmode, "rfc7489") == 0 ? DMARC_MODE_RFC7489 : DMARC_MODE_RFC9989;
	json_t *spf = json_object_get(doc, "spf");
	load_spf(json_object_get(spf, "mfrom"), &r->spf, &r->has_spf);
	load_spf(json_object_get(spf, "helo"), &r->spf_helo, &r->has_spf_helo);
	if (load_dkim(json_object_get(doc, "dkim"), r) < 0) {
		snprintf(err, errlen, "out of memory");
		json_decref(doc);
		store_replay_free(r);
		return -1;
	}
	load_dmarc(dm, r);
	json_t *so = json_object_get(doc, "scan");
	load_text(so, "why_spf", r->why_spf, sizeof(r->why_spf), &r->has_why_spf);
	load_text(so, "header_error", r->header_error, sizeof(r->header_error), &r->has_header_error);
	r->dkim_timeout = jget_b(so, "dkim_timeout");
	r->timed_out = jget_b(so, "timed_out");
	r->out_of_memory = jget_b(so, "out_of_memory");
	json_t *sc = json_object_get(so, "score");
	r->score = json_is_number(sc) ? json_number_value(sc) : 0;
	copy(r->action, sizeof(r->action), jget_s(doc, "action"));
	copy(r->disposition, sizeof(r->disposition), jget_s(doc, "disposition"));
	copy(r->queue_id, sizeof(r->queue_id), jget_s(json_object_get(doc, "envelope"), "queue_id"));

	json_t *eo = json_object_get(po, "evidence");
	if (json_is_object(eo)) {
		struct policy_evidence *e = &r->ev;
		e->arc = auth_res_from(jget_s(eo, "arc"));
		copy(e->arc_sealer, sizeof(e->arc_sealer), jget_s(eo, "arc_sealer"));
		e->arc_trusted = jget_b(eo, "arc_trusted");
		e->arc_aar1_dmarc_pass = jget_b(eo, "arc_aar1_dmarc_pass");
		e->forwarder = jget_b(eo, "forwarder");
		copy(e->forwarder_why, sizeof(e->forwarder_why), jget_s(eo, "forwarder_why"));
		e->list = jget_b(eo, "list");
		copy(e->list_domain, sizeof(e->list_domain), jget_s(eo, "list_domain"));
		e->list_signed = jget_b(eo, "list_signed");
		e->list_trusted = jget_b(eo, "list_trusted");
	}
	json_decref(doc);
	return 0;
}

void store_replay_free(struct store_replay *r)
{
	free(r->dkim.sigs);
	r->dkim.sigs = NULL;
	r->dkim.n = 0;
	msg_free(&r->m);
	free(r->headers);
	free(r->aar1);
	r->headers = r->aar1 = NULL;
	r->facts.m = NULL;
	r->facts.aar1 = NULL;
}
