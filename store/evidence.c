/* The evidence record of one scan and its replay. The JSON document is
 * versioned ("v") and names every value in words, so that a later reader
 * (a report, a what-if run under another configuration) needs no table of
 * numbers from this version of the code. Pure; any thread. */
#include "store/evidence.h"
#include "common/jsonr.h"
#include "common/jsonw.h"
#include "common/text.h"

#include <ctype.h>
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
	if (!src)
		src = "";
	size_t n = strlen(src);
	if (n >= cap)
		n = cap - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
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
		if (s->list_given) {
			K(w, "has_header"), jsonw_bool(w, s->has_header);
			K(w, "list_id"), jsonw_strn(w, s->list_id, s->list_id_len);
			K(w, "list_post"), jsonw_strn(w, s->list_post, s->list_post_len);
		} else {
			K(w, "has_header"), jsonw_bool(w, f->m != NULL);
			header_value(w, "list_id", f->m, "List-Id");
			header_value(w, "list_post", f->m, "List-Post");
		}
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

/* One document being read: the text split into tokens (common/jsonr.h). */
struct rd {
	struct jsonr j;
};

static long get(const struct rd *d, long obj, const char *k)
{
	return jsonr_get(&d->j, obj, k);
}

/* A string member into dst ("" when absent or not a string); 1 when it was
 * a string. */
static int get_s(const struct rd *d, long obj, const char *k, char *dst, size_t cap)
{
	if (jsonr_str(&d->j, get(d, obj, k), dst, cap) >= 0)
		return 1;
	dst[0] = '\0';
	return 0;
}

static int get_b(const struct rd *d, long obj, const char *k)
{
	return jsonr_bool(&d->j, get(d, obj, k));
}

static int get_i(const struct rd *d, long obj, const char *k, int dflt)
{
	long long v = jsonr_int(&d->j, get(d, obj, k), dflt);
	return v < INT32_MIN || v > INT32_MAX ? dflt : (int)v;
}

/* The index of a word of tab[0..n) that a string member equals, or -1. */
static int get_word(const struct rd *d, long obj, const char *k, const char *const *tab, size_t n)
{
	char w[STORE_WORD_MAX];
	if (!get_s(d, obj, k, w, sizeof(w)))
		return -1;
	return name_index(tab, n, w);
}

static enum auth_res get_res(const struct rd *d, long obj, const char *k)
{
	char w[STORE_WORD_MAX];
	get_s(d, obj, k, w, sizeof(w));
	return auth_res_from(w);
}

static enum dmarc_policy get_pol(const struct rd *d, long obj, const char *k)
{
	int i = get_word(d, obj, k, pol_names, sizeof(pol_names) / sizeof(pol_names[0]));
	return i < 0 ? DMARC_POLICY_UNSET : (enum dmarc_policy)i;
}

static enum policy_disp get_pdisp(const struct rd *d, long obj, const char *k)
{
	int i = get_word(d, obj, k, disp_names, 3);
	return i == 2 ? POLICY_DISP_REJECT : i == 1 ? POLICY_DISP_QUARANTINE : POLICY_DISP_NONE;
}

static void load_spf(const struct rd *d, long o, struct spf_result *r, int *has)
{
	if (jsonr_type(&d->j, o) != JSONR_OBJECT)
		return;
	*has = 1;
	r->result = get_res(d, o, "result");
	get_s(d, o, "domain", r->domain, sizeof(r->domain));
	get_s(d, o, "mechanism", r->mechanism, sizeof(r->mechanism));
	get_s(d, o, "problem", r->problem, sizeof(r->problem));
}

static int load_dkim(const struct rd *d, long a, struct store_replay *r)
{
	if (jsonr_type(&d->j, a) != JSONR_ARRAY)
		return 0;
	r->has_dkim = 1;
	size_t n = jsonr_count(&d->j, a);
	if (n == 0)
		return 0;
	r->dkim.sigs = calloc(n, sizeof(*r->dkim.sigs));
	if (!r->dkim.sigs)
		return -1;
	/* as dkv orders them: pass > fail > temperror > policy > permerror > neutral */
	static const enum auth_res rank[] = { AUTH_PASS, AUTH_FAIL, AUTH_TEMPERROR, AUTH_POLICY,
	                                      AUTH_PERMERROR, AUTH_NEUTRAL };
	size_t best = sizeof(rank) / sizeof(rank[0]);
	for (long o = jsonr_at(&d->j, a, 0); r->dkim.n < n; o = (long)d->j.tok[o].next) {
		struct dkv_sig *g = &r->dkim.sigs[r->dkim.n++];
		g->res = get_res(d, o, "result");
		get_s(d, o, "reason", g->reason, sizeof(g->reason));
		get_s(d, o, "d", g->d, sizeof(g->d));
		get_s(d, o, "s", g->s, sizeof(g->s));
		get_s(d, o, "a", g->a, sizeof(g->a));
		get_s(d, o, "i", g->i, sizeof(g->i));
		int bits = get_i(d, o, "key_bits", 0);
		g->key_bits = bits > 0 ? (unsigned)bits : 0;
		g->key_testing = get_b(d, o, "key_testing");
		for (size_t k = 0; k < best; k++)
			if (rank[k] == g->res)
				best = k;
	}
	r->dkim.best = best < sizeof(rank) / sizeof(rank[0]) ? rank[best] : AUTH_NONE;
	return 0;
}

static void load_dmarc(const struct rd *d, long dm, struct store_replay *r)
{
	struct dmarc_result *m = &r->dmarc;
	int i = get_word(d, dm, "result", res_names, 5);
	m->res = i < 0 ? DMARC_RES_NONE : (enum dmarc_res)i;
	m->author_status = (enum dmarc_author_status)get_i(d, dm, "author_status", 0);
	int nd = get_i(d, dm, "n_domains", 0);
	m->n_domains = nd > 0 ? (size_t)nd : 0;
	get_s(d, dm, "domain", m->domain, sizeof(m->domain));
	get_s(d, dm, "org_domain", m->org_domain, sizeof(m->org_domain));
	get_s(d, dm, "policy_domain", m->policy_domain, sizeof(m->policy_domain));
	i = get_word(d, dm, "where", where_names, 4);
	m->where = i < 0 ? DMARC_AT_NONE : (enum dmarc_where)i;
	int ws = get_i(d, dm, "walk_step", 0);
	m->walk_step = ws > 0 ? (unsigned)ws : 0;
	long ro = get(d, dm, "record");
	m->rec.pct = 100;
	if (jsonr_type(&d->j, ro) == JSONR_OBJECT) {
		struct dmarc_record *rec = &m->rec;
		char w[4];
		rec->p = get_pol(d, ro, "p");
		rec->sp = get_pol(d, ro, "sp");
		rec->np = get_pol(d, ro, "np");
		get_s(d, ro, "psd", w, sizeof(w));
		rec->psd = w[0] == 'y' ? DMARC_PSD_Y : w[0] == 'n' ? DMARC_PSD_N : DMARC_PSD_U;
		rec->t = get_b(d, ro, "t");
		get_s(d, ro, "adkim", w, sizeof(w));
		rec->adkim_strict = w[0] == 's';
		get_s(d, ro, "aspf", w, sizeof(w));
		rec->aspf_strict = w[0] == 's';
		int pct = get_i(d, ro, "pct", 100);
		rec->pct = pct >= 0 && pct <= 100 ? (unsigned)pct : 100;
		rec->has_pct = get_b(d, ro, "has_pct");
		rec->forced_none = get_b(d, ro, "forced_none");
		rec->p_absent = get_b(d, ro, "p_absent");
		int rv = get_i(d, ro, "rua_valid", 0), fv = get_i(d, ro, "ruf_valid", 0);
		rec->rua_valid = rv > 0 ? (unsigned)rv : 0;
		rec->ruf_valid = fv > 0 ? (unsigned)fv : 0;
		get_s(d, ro, "fo", rec->fo, sizeof(rec->fo));
	}
	m->policy = get_pol(d, dm, "policy");
	char tag[4];
	if (get_s(d, dm, "policy_tag", tag, sizeof(tag)))
		m->policy_tag = strcmp(tag, "sp") == 0 ? "sp" : strcmp(tag, "np") == 0 ? "np" : "p";
	m->applied = get_pol(d, dm, "applied");
	i = get_word(d, dm, "disposition", disp_names, 3);
	m->disp = i < 0 ? DMARC_DISP_NONE : (enum dmarc_disp)i;
	m->author_exists = get_i(d, dm, "author_exists", -1);
	m->spf_aligned = get_i(d, dm, "spf_aligned", 0);
	m->dkim_aligned = get_i(d, dm, "dkim_aligned", 0);
	get_s(d, dm, "spf_domain", m->spf_domain, sizeof(m->spf_domain));
	get_s(d, dm, "dkim_domain", m->dkim_domain, sizeof(m->dkim_domain));
	m->testing = get_b(d, dm, "testing");
	int sb = get_i(d, dm, "sample_bucket", 0);
	m->sample_bucket = sb > 0 && sb < 100 ? (unsigned)sb : 0;
	i = get_word(d, dm, "override", ovr_names, sizeof(ovr_names) / sizeof(ovr_names[0]));
	m->override = i < 0 ? DMARC_OVR_NONE : (enum dmarc_override)i;
	if (get_s(d, dm, "why", r->dmarc_why, sizeof(r->dmarc_why)))
		m->why = r->dmarc_why;
}

/* A string array member into fixed slots, with the pointers to them. */
static size_t load_names(const struct rd *d, long obj, const char *k,
                         char (*slots)[STORE_DOMAIN_MAX], const char **ptrs, size_t max)
{
	long a = get(d, obj, k);
	size_t n = 0, count = jsonr_count(&d->j, a);
	long e = count ? jsonr_at(&d->j, a, 0) : -1;
	for (size_t i = 0; i < count && n < max; i++, e = (long)d->j.tok[e].next)
		if (jsonr_str(&d->j, e, slots[n], STORE_DOMAIN_MAX) >= 0) {
			ptrs[n] = slots[n];
			n++;
		}
	return n;
}

/* The two list header fields policy_gather reads, as a header section. */
static int load_headers(const struct rd *d, long fo, struct store_replay *r)
{
	long lid = get(d, fo, "list_id"), lpo = get(d, fo, "list_post");
	int has_id = jsonr_type(&d->j, lid) == JSONR_STRING;
	int has_po = jsonr_type(&d->j, lpo) == JSONR_STRING;
	size_t n = (has_id ? d->j.tok[lid].len + 12 : 0) + (has_po ? d->j.tok[lpo].len + 14 : 0) + 4;
	r->headers = malloc(n);
	if (!r->headers)
		return -1;
	size_t o = 0;
	if (has_id) {
		memcpy(r->headers + o, "List-Id:", 8);
		o += 8;
		o += (size_t)jsonr_str(&d->j, lid, r->headers + o, n - o);
		memcpy(r->headers + o, "\r\n", 2);
		o += 2;
	}
	if (has_po) {
		memcpy(r->headers + o, "List-Post:", 10);
		o += 10;
		o += (size_t)jsonr_str(&d->j, lpo, r->headers + o, n - o);
		memcpy(r->headers + o, "\r\n", 2);
		o += 2;
	}
	memcpy(r->headers + o, "\r\n", 3);
	o += 2;
	return msg_parse(r->headers, o, &r->m) == MSG_OK ? 0 : -1;
}

/* Tokens of a document read on the stack; a larger one gets them from the heap. */
#define REPLAY_STACK_TOKENS 2048

static int load(const struct rd *d, struct store_replay *r, char *err, size_t errlen);

int store_replay_load(const char *evidence, struct store_replay *r, char *err, size_t errlen)
{
	memset(r, 0, sizeof(*r));
	struct jsonr_tok stack[REPLAY_STACK_TOKENS];
	struct jsonr_tok *heap = NULL;
	struct rd d;
	const char *why = NULL;
	size_t len = evidence ? strlen(evidence) : 0;
	int rc = jsonr_parse(&d.j, evidence ? evidence : "", len, stack, REPLAY_STACK_TOKENS, &why);
	if (rc < 0 && len / 2 + 2 > REPLAY_STACK_TOKENS && strcmp(why, "too many values") == 0) {
		/* every value but the first takes at least two bytes */
		size_t cap = len / 2 + 2;
		heap = malloc(cap * sizeof(*heap));
		if (!heap) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		rc = jsonr_parse(&d.j, evidence, len, heap, cap, &why);
	}
	if (rc < 0) {
		snprintf(err, errlen, "evidence is not a JSON document: %s", why);
		free(heap);
		return -1;
	}
	rc = load(&d, r, err, errlen);
	free(heap);
	if (rc < 0)
		store_replay_free(r);
	return rc;
}

static int load(const struct rd *d, struct store_replay *r, char *err, size_t errlen)
{
	if (jsonr_type(&d->j, 0) != JSONR_OBJECT) {
		snprintf(err, errlen, "evidence is not a JSON object");
		return -1;
	}
	/* a later version adds members; reading an older one keeps working */
	long long v = jsonr_int(&d->j, get(d, 0, "v"), -1);
	if (v < 1 || v > STORE_EVIDENCE_VERSION) {
		snprintf(err, errlen, "evidence version %lld is not one this build reads (1..%d)", v,
		         STORE_EVIDENCE_VERSION);
		return -1;
	}
	r->version = (int)v;
	long dm = get(d, 0, "dmarc"), po = get(d, 0, "policy"), fo = get(d, po, "facts");
	if (jsonr_type(&d->j, dm) != JSONR_OBJECT || jsonr_type(&d->j, po) != JSONR_OBJECT ||
	    jsonr_type(&d->j, fo) != JSONR_OBJECT) {
		snprintf(err, errlen, "evidence lacks the dmarc or policy facts members");
		return -1;
	}
	get_s(d, dm, "domain", r->domain, sizeof(r->domain));
	r->disp = get_pdisp(d, po, "asked");
	int mi = get_word(d, po, "mode", mode_names, 3);
	r->policy_mode = mi < 0 ? POLICY_RFC9989 : (enum policy_mode)mi;
	long de = get(d, po, "decision");
	if (jsonr_type(&d->j, de) == JSONR_OBJECT) {
		r->decided = 1;
		r->decided_disp = get_pdisp(d, de, "disposition");
		get_s(d, de, "override", r->decided_override, sizeof(r->decided_override));
	}

	struct policy_facts *f = &r->facts;
	if (get_s(d, fo, "client_ip", r->client_ip, sizeof(r->client_ip)))
		f->client_ip = r->client_ip;
	if (get_s(d, fo, "helo", r->helo, sizeof(r->helo)))
		f->helo = r->helo;
	if (get_s(d, fo, "mail_from", r->mail_from, sizeof(r->mail_from)))
		f->mail_from = r->mail_from;
	f->spf_helo_pass = get_b(d, fo, "spf_helo_pass");
	f->spf_mfrom_pass = get_b(d, fo, "spf_mfrom_pass");
	f->n_dkim_pass = load_names(d, fo, "dkim_pass", r->dkim_pass, r->dkim_pass_p, 64);
	f->dkim_pass = r->dkim_pass_p;
	f->arc = get_res(d, fo, "arc");
	f->n_sealers = load_names(d, fo, "arc_sealers", r->sealers, r->sealers_p, 64);
	f->arc_sealers = r->sealers_p;
	int op = get_i(d, fo, "arc_oldest_pass", 0);
	f->arc_oldest_pass = op > 0 ? (unsigned)op : 0;
	long aar = get(d, fo, "aar1");
	if (jsonr_type(&d->j, aar) == JSONR_STRING) {
		size_t n = d->j.tok[aar].len + 1;
		if (!(r->aar1 = malloc(n))) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		jsonr_str(&d->j, aar, r->aar1, n);
		f->aar1 = r->aar1;
	}
	if (get_b(d, fo, "has_header")) {
		if (load_headers(d, fo, r) < 0) {
			snprintf(err, errlen, "cannot rebuild the list header fields");
			return -1;
		}
		f->m = &r->m;
	}

	/* the checks' results and the stored verdict */
	long long tm = jsonr_int(&d->j, get(d, 0, "time"), 0);
	r->time = (int64_t)tm;
	char mode[16];
	get_s(d, dm, "mode", mode, sizeof(mode));
	r->dmarc_mode = strcmp(mode, "rfc7489") == 0 ? DMARC_MODE_RFC7489 : DMARC_MODE_RFC9989;
	long spf = get(d, 0, "spf");
	load_spf(d, get(d, spf, "mfrom"), &r->spf, &r->has_spf);
	load_spf(d, get(d, spf, "helo"), &r->spf_helo, &r->has_spf_helo);
	if (load_dkim(d, get(d, 0, "dkim"), r) < 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	load_dmarc(d, dm, r);
	long so = get(d, 0, "scan");
	r->has_why_spf = get_s(d, so, "why_spf", r->why_spf, sizeof(r->why_spf));
	r->has_header_error = get_s(d, so, "header_error", r->header_error, sizeof(r->header_error));
	r->dkim_timeout = get_b(d, so, "dkim_timeout");
	r->timed_out = get_b(d, so, "timed_out");
	r->out_of_memory = get_b(d, so, "out_of_memory");
	r->score = jsonr_num(&d->j, get(d, so, "score"), 0);
	get_s(d, 0, "action", r->action, sizeof(r->action));
	get_s(d, 0, "disposition", r->disposition, sizeof(r->disposition));
	get_s(d, get(d, 0, "envelope"), "queue_id", r->queue_id, sizeof(r->queue_id));

	long eo = get(d, po, "evidence");
	if (jsonr_type(&d->j, eo) == JSONR_OBJECT) {
		struct policy_evidence *e = &r->ev;
		e->arc = get_res(d, eo, "arc");
		get_s(d, eo, "arc_sealer", e->arc_sealer, sizeof(e->arc_sealer));
		e->arc_trusted = get_b(d, eo, "arc_trusted");
		e->arc_aar1_dmarc_pass = get_b(d, eo, "arc_aar1_dmarc_pass");
		e->forwarder = get_b(d, eo, "forwarder");
		get_s(d, eo, "forwarder_why", e->forwarder_why, sizeof(e->forwarder_why));
		e->list = get_b(d, eo, "list");
		get_s(d, eo, "list_domain", e->list_domain, sizeof(e->list_domain));
		e->list_signed = get_b(d, eo, "list_signed");
		e->list_trusted = get_b(d, eo, "list_trusted");
	}
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
