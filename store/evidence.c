/* The evidence record of one scan and its replay. The JSON document is
 * versioned ("v") and names every value in words, so that a later reader
 * (a report, a what-if run under another configuration) needs no table of
 * numbers from this version of the code. Pure; any thread. */
#include "store/evidence.h"
#include "common/jsonw.h"
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

/* ---- writing the document (common/jsonw.h: no tree, one buffer) ---- */

#define K(w, k) jsonw_key(w, k)

static void spf_json(struct jsonw *w, const struct spf_result *s)
{
	if (!s) {
		jsonw_null(w);
		return;
	}
	jsonw_obj(w);
	K(w, "domain"), jsonw_str(w, s->domain);
	K(w, "result"), jsonw_str(w, auth_res_name(s->result));
	K(w, "mechanism"), jsonw_str(w, s->mechanism);
	K(w, "problem"), jsonw_str(w, s->problem);
	jsonw_end(w);
}

static const char *domain_part(const char *addr)
{
	if (!addr)
		return "";
	const char *at = strrchr(addr, '@');
	return at ? at + 1 : addr;
}

static void header_value(struct jsonw *w, const char *key, const struct msg *m, const char *name)
{
	const struct msg_field *f = m ? msg_get(m, name, 0) : NULL;
	K(w, key);
	if (f)
		jsonw_strn(w, f->value, f->value_len);
	else
		jsonw_null(w);
}

/* A header section: line structure kept, anything else outside printable
 * ASCII made '?' */
static void jheaders(struct jsonw *w, const char *h, size_t len)
{
	char *buf = malloc(len + 1);
	if (!buf) {
		w->failed = 1;
		return;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)h[i];
		buf[i] = (c == '\r' || c == '\n' || c == '\t' || (c >= 0x20 && c < 0x7f)) ? (char)c : '?';
	}
	jsonw_strn(w, buf, len);
	free(buf);
}

static void record_json(struct jsonw *w, const struct dmarc_record *rec)
{
	jsonw_obj(w);
	K(w, "p"), jsonw_str(w, NAME(pol_names, rec->p));
	K(w, "sp"), jsonw_str(w, NAME(pol_names, rec->sp));
	K(w, "np"), jsonw_str(w, NAME(pol_names, rec->np));
	K(w, "psd"), jsonw_str(w, rec->psd == DMARC_PSD_Y ? "y" : rec->psd == DMARC_PSD_N ? "n" : "u");
	K(w, "t"), jsonw_bool(w, rec->t);
	K(w, "adkim"), jsonw_str(w, rec->adkim_strict ? "s" : "r");
	K(w, "aspf"), jsonw_str(w, rec->aspf_strict ? "s" : "r");
	K(w, "pct"), jsonw_int(w, rec->pct);
	K(w, "has_pct"), jsonw_bool(w, rec->has_pct);
	K(w, "forced_none"), jsonw_bool(w, rec->forced_none);
	K(w, "p_absent"), jsonw_bool(w, rec->p_absent);
	K(w, "rua_valid"), jsonw_int(w, rec->rua_valid);
	K(w, "ruf_valid"), jsonw_int(w, rec->ruf_valid);
	K(w, "fo"), jsonw_str(w, rec->fo);
	jsonw_end(w);
}

static void dmarc_json(struct jsonw *w, const struct store_scan *s)
{
	const struct dmarc_result *d = s->dmarc;
	jsonw_obj(w);
	K(w, "mode"), jsonw_str(w, s->dmarc_mode == DMARC_MODE_RFC7489 ? "rfc7489" : "rfc9989");
	K(w, "result"), jsonw_str(w, NAME(res_names, d->res));
	K(w, "author_status"), jsonw_int(w, d->author_status);
	K(w, "n_domains"), jsonw_int(w, (long long)d->n_domains);
	K(w, "domain"), jsonw_str(w, d->domain);
	K(w, "org_domain"), jsonw_str(w, d->org_domain);
	K(w, "policy_domain"), jsonw_str(w, d->policy_domain);
	K(w, "where"), jsonw_str(w, NAME(where_names, d->where));
	K(w, "walk_step"), jsonw_int(w, d->walk_step);
	K(w, "record");
	if (d->where != DMARC_AT_NONE)
		record_json(w, &d->rec);
	else
		jsonw_null(w);
	K(w, "policy"), jsonw_str(w, NAME(pol_names, d->policy));
	K(w, "policy_tag"), jsonw_str(w, d->policy_tag);
	K(w, "applied"), jsonw_str(w, NAME(pol_names, d->applied));
	K(w, "disposition"), jsonw_str(w, NAME(disp_names, d->disp));
	K(w, "author_exists"), jsonw_int(w, d->author_exists);
	K(w, "spf_aligned"), jsonw_int(w, d->spf_aligned);
	K(w, "dkim_aligned"), jsonw_int(w, d->dkim_aligned);
	K(w, "spf_domain"), jsonw_str(w, d->spf_domain);
	K(w, "dkim_domain"), jsonw_str(w, d->dkim_domain);
	K(w, "testing"), jsonw_bool(w, d->testing);
	K(w, "sample_bucket"), jsonw_int(w, d->sample_bucket);
	K(w, "override"), jsonw_str(w, NAME(ovr_names, d->override));
	K(w, "why"), jsonw_str(w, d->why);
	jsonw_end(w);
}

/* the policy layer's inputs, as policy_gather() and policy_decide() read them */
static void policy_json(struct jsonw *w, const struct store_scan *s)
{
	jsonw_obj(w);
	K(w, "mode"), jsonw_str(w, NAME(mode_names, s->policy_mode));
	const struct policy_facts *f = s->facts;
	K(w, "facts");
	if (f) {
		jsonw_obj(w);
		K(w, "client_ip"), jsonw_str(w, f->client_ip);
		K(w, "helo"), jsonw_str(w, f->helo);
		K(w, "mail_from"), jsonw_str(w, f->mail_from);
		K(w, "spf_helo_pass"), jsonw_bool(w, f->spf_helo_pass);
		K(w, "spf_mfrom_pass"), jsonw_bool(w, f->spf_mfrom_pass);
		K(w, "dkim_pass"), jsonw_arr(w);
		for (size_t i = 0; i < f->n_dkim_pass; i++)
			jsonw_str(w, f->dkim_pass[i]);
		jsonw_end(w);
		K(w, "arc"), jsonw_str(w, auth_res_name(f->arc));
		K(w, "arc_sealers"), jsonw_arr(w);
		for (size_t i = 0; i < f->n_sealers; i++)
			jsonw_str(w, f->arc_sealers[i]);
		jsonw_end(w);
		K(w, "arc_oldest_pass"), jsonw_int(w, f->arc_oldest_pass);
		K(w, "aar1"), jsonw_str(w, f->aar1);
		K(w, "has_header"), jsonw_bool(w, f->m != NULL);
		header_value(w, "list_id", f->m, "List-Id");
		header_value(w, "list_post", f->m, "List-Post");
		jsonw_end(w);
	} else {
		jsonw_null(w);
	}
	const struct policy_evidence *ev = s->ev;
	K(w, "evidence");
	if (ev) {
		jsonw_obj(w);
		K(w, "arc"), jsonw_str(w, auth_res_name(ev->arc));
		K(w, "arc_sealer"), jsonw_str(w, ev->arc_sealer);
		K(w, "arc_trusted"), jsonw_bool(w, ev->arc_trusted);
		K(w, "arc_aar1_dmarc_pass"), jsonw_bool(w, ev->arc_aar1_dmarc_pass);
		K(w, "forwarder"), jsonw_bool(w, ev->forwarder);
		K(w, "forwarder_why"), jsonw_str(w, ev->forwarder_why);
		K(w, "list"), jsonw_bool(w, ev->list);
		K(w, "list_domain"), jsonw_str(w, ev->list_domain);
		K(w, "list_signed"), jsonw_bool(w, ev->list_signed);
		K(w, "list_trusted"), jsonw_bool(w, ev->list_trusted);
		jsonw_end(w);
	} else {
		jsonw_null(w);
	}
	K(w, "asked"), jsonw_str(w, NAME(disp_names, s->dmarc->disp));
	K(w, "decision");
	if (s->pd) {
		jsonw_obj(w);
		K(w, "disposition"), jsonw_str(w, NAME(disp_names, s->pd->disp));
		K(w, "override"), jsonw_str(w, s->pd->override);
		K(w, "why"), jsonw_str(w, s->pd->why);
		jsonw_end(w);
	} else {
		jsonw_null(w);
	}
	jsonw_end(w);
}

static void evidence_json(struct jsonw *w, const struct store_scan *s, const struct store_record *r)
{
	const struct dmarc_result *d = s->dmarc;
	jsonw_obj(w);
	K(w, "v"), jsonw_int(w, STORE_EVIDENCE_VERSION);
	K(w, "time"), jsonw_int(w, s->time);

	K(w, "envelope"), jsonw_obj(w);
	K(w, "client_ip"), jsonw_str(w, s->client_ip);
	K(w, "helo"), jsonw_str(w, s->helo);
	K(w, "mail_from"), jsonw_str(w, s->mail_from);
	K(w, "rcpt"), jsonw_arr(w);
	for (size_t i = 0; i < s->n_rcpt; i++)
		jsonw_str(w, s->rcpt[i]);
	jsonw_end(w);
	K(w, "queue_id"), jsonw_str(w, s->queue_id);
	jsonw_end(w);

	K(w, "spf"), jsonw_obj(w);
	K(w, "mfrom"), spf_json(w, s->spf);
	K(w, "helo"), spf_json(w, s->spf_helo);
	jsonw_end(w);

	K(w, "dkim"), jsonw_arr(w);
	for (size_t i = 0; s->dkim && i < s->dkim->n; i++) {
		const struct dkv_sig *g = &s->dkim->sigs[i];
		jsonw_obj(w);
		K(w, "d"), jsonw_str(w, g->d);
		K(w, "s"), jsonw_str(w, g->s);
		K(w, "a"), jsonw_str(w, g->a);
		K(w, "i"), jsonw_str(w, g->i);
		K(w, "result"), jsonw_str(w, auth_res_name(g->res));
		K(w, "reason"), jsonw_str(w, g->reason);
		K(w, "key_bits"), jsonw_int(w, g->key_bits);
		K(w, "key_testing"), jsonw_bool(w, g->key_testing);
		jsonw_end(w);
	}
	jsonw_end(w);

	K(w, "dmarc"), dmarc_json(w, s);
	K(w, "policy"), policy_json(w, s);

	K(w, "overrides"), jsonw_arr(w);
	if (d->override != DMARC_OVR_NONE) {
		jsonw_obj(w);
		K(w, "reason"), jsonw_str(w, NAME(ovr_names, d->override));
		K(w, "by"), jsonw_str(w, "dmarc");
		K(w, "why"), jsonw_str(w, d->why);
		jsonw_end(w);
	}
	if (s->pd && s->pd->override) {
		jsonw_obj(w);
		K(w, "reason"), jsonw_str(w, s->pd->override);
		K(w, "by"), jsonw_str(w, "policy");
		K(w, "why"), jsonw_str(w, s->pd->why);
		jsonw_end(w);
	}
	jsonw_end(w);
	/* what else the verdict read (version 2) */
	K(w, "scan"), jsonw_obj(w);
	K(w, "why_spf"), jsonw_str(w, s->why_spf);
	K(w, "header_error"), jsonw_str(w, s->header_error);
	K(w, "dkim_timeout"), jsonw_bool(w, s->dkim_timeout);
	K(w, "timed_out"), jsonw_bool(w, s->timed_out);
	K(w, "out_of_memory"), jsonw_bool(w, s->out_of_memory);
	K(w, "score"), jsonw_real(w, s->score);
	jsonw_end(w);
	K(w, "disposition"), jsonw_str(w, r->disposition);
	K(w, "action"), jsonw_str(w, s->action);
	if (s->failure_headers) {
		K(w, "failure"), jsonw_obj(w);
		K(w, "headers"), jheaders(w, s->failure_headers, s->failure_headers_len);
		K(w, "auth_results"), jsonw_str(w, s->auth_results);
		K(w, "rcpt"), jsonw_str(w, s->n_rcpt ? s->rcpt[0] : NULL);
		jsonw_end(w);
	}
	jsonw_end(w);
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

	struct buf b;
	buf_init(&b, 0);
	buf_reserve(&b, 2048 + s->failure_headers_len);
	struct jsonw w;
	jsonw_init(&w, &b);
	evidence_json(&w, s, r);
	if (jsonw_done(&w) == 0)
		r->evidence = buf_steal(&b, NULL);
	buf_free(&b);
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
