/* DMARC evaluation: asynchronous policy discovery over struct dnsq (RFC
 * 9989 4.10 DNS tree walk, or RFC 7489 6.6.3 with the PSL), identifier
 * alignment, policy selection and disposition. Loop thread only. An
 * evaluation owns its DNS questions (each name asked at most once) and
 * frees itself when its result is delivered and its last answer landed. */
#include "checks/dmarc/dmarc.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { Q_PENDING = 1, Q_DONE = 2 };

struct qent {
	struct dmarc_eval *e;
	char name[DMARC_DOMAIN_MAX + 8];
	uint16_t type;
	unsigned char state;
	enum dnsq_status st;
	int n_dmarc;                 /* TXT: records starting with v=DMARC1 */
	struct dmarc_record rec;     /* valid when n_dmarc == 1 */
};

enum wstate { W_PENDING, W_DONE, W_TEMP };

/* One DNS tree walk (or the two RFC 7489 questions) from a start name. */
struct walk {
	char start[DMARC_DOMAIN_MAX];
	size_t off[LIM_DMARC_TREE_WALK];  /* start + off[i] is the i-th name */
	unsigned n;
	enum wstate state;
	int policy_i;                /* index of the policy record, -1 none */
	enum dmarc_where where;
	int org_known;
	char org[DMARC_DOMAIN_MAX];
	const char *why;
	int traced;
};

struct author_ctx {
	struct walk w;
	struct qent *ex[3];          /* A, AAAA, MX (RFC 9989 np=) */
	struct dmarc_result r;
	int decided;
};

struct ident {
	char domain[DMARC_DOMAIN_MAX];
	enum auth_res res;
	int is_spf;
	struct walk *w;              /* org-domain walk (RFC 9989), lazily */
	char org[DMARC_DOMAIN_MAX];  /* RFC 7489: from the PSL */
};

struct dmarc_eval {
	struct dnsq *dq;
	struct dmarc_opts o;
	struct trace *t;
	uint64_t deadline;
	struct dmarc_author a;
	struct author_ctx ad[LIM_DMARC_AUTHOR_DOMAINS];
	struct qent *q[LIM_DMARC_LOOKUPS];
	size_t nq;
	struct ident id[1 + LIM_DKIM_MAX_SIGNATURES];
	struct walk idw[1 + LIM_DKIM_MAX_SIGNATURES];
	size_t nid;
	int have_inputs;
	char sample_key[256];
	int has_sample_key;
	dmarc_done_cb done;
	void *done_arg;
	unsigned pending;            /* lookups + deferred calls in flight */
	int finished, abandoned, expired;
	struct dmarc_result res;
};

#define TR(e, ...) trace_add((e)->t, "dmarc", __VA_ARGS__)

const char *dmarc_res_name(enum dmarc_res r)
{
	switch (r) {
	case DMARC_RES_NONE:      return "none";
	case DMARC_RES_PASS:      return "pass";
	case DMARC_RES_FAIL:      return "fail";
	case DMARC_RES_TEMPERROR: return "temperror";
	case DMARC_RES_PERMERROR: return "permerror";
	}
	return "none";
}

const char *dmarc_disp_name(enum dmarc_disp d)
{
	switch (d) {
	case DMARC_DISP_NONE:       return "none";
	case DMARC_DISP_QUARANTINE: return "quarantine";
	case DMARC_DISP_REJECT:     return "reject";
	}
	return "none";
}

const char *dmarc_override_name(enum dmarc_override o)
{
	switch (o) {
	case DMARC_OVR_NONE:              return "none";
	case DMARC_OVR_FORWARDED:         return "forwarded";
	case DMARC_OVR_TRUSTED_FORWARDER: return "trusted_forwarder";
	case DMARC_OVR_MAILING_LIST:      return "mailing_list";
	case DMARC_OVR_LOCAL_POLICY:      return "local_policy";
	case DMARC_OVR_SAMPLED_OUT:       return "sampled_out";
	}
	return "none";
}

unsigned dmarc_sample_bucket(const char *key)
{
	uint64_t h = 14695981039346656037ull;     /* FNV-1a 64 offset basis */
	for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
		h ^= *p;
		h *= 1099511628211ull;                /* FNV-1a 64 prime */
	}
	return (unsigned)(h % 100u);
}

/* ---- DNS questions ---- */

static int is_temp(enum dnsq_status st)
{
	return st == DNSQ_TEMPFAIL || st == DNSQ_TIMEOUT || st == DNSQ_BOGUS;
}

static void progress(struct dmarc_eval *e);

static void maybe_free(struct dmarc_eval *e)
{
	if ((e->finished || e->abandoned) && e->pending == 0) {
		for (size_t i = 0; i < e->nq; i++)
			free(e->q[i]);
		free(e);
	}
}

static void on_answer(void *arg, const struct dnsq_answer *ans)
{
	struct qent *q = arg;
	struct dmarc_eval *e = q->e;
	e->pending--;
	q->state = Q_DONE;
	q->st = ans->status;
	if (ans->status == DNSQ_OK && q->type == DNSQ_T_TXT) {
		/* RFC 9989 4.10 steps 2/6: keep the records that start with
		 * v=DMARC1; several of them count as none */
		char buf[LIM_DMARC_RECORD + 1];
		for (size_t i = 0; i < ans->count; i++) {
			size_t len;
			struct dmarc_record r;
			if (dnsq_txt(ans, i, buf, sizeof(buf), &len) < 0) {
				/* too long or malformed: a DMARC record is short; we
				 * only need to know whether it claims to be one */
				if (ans->rdlen[i] >= 9 && memcmp(ans->rdata[i] + 1, "v=DMARC1", 8) == 0 &&
				    ++q->n_dmarc == 1) {
					memset(&q->rec, 0, sizeof(q->rec));
					q->rec.status = DMARC_REC_UNUSABLE;
					q->rec.why = "DMARC record too long or malformed";
				}
				continue;
			}
			if (dmarc_record_parse(buf, len, e->o.mode, &r) == DMARC_REC_NOT_DMARC)
				continue;
			if (++q->n_dmarc == 1)
				q->rec = r;
		}
	}
	if (!e->finished && !e->abandoned) {
		if (q->type == DNSQ_T_TXT)
			TR(e, "answer %s TXT: %s%s, %d DMARC record(s)%s%s", q->name,
			   dnsq_status_name(ans->status),
			   ans->sec == DNSQ_SEC_SECURE ? " (secure)" : "",
			   q->n_dmarc, ans->why ? "; " : "", ans->why ? ans->why : "");
		else
			TR(e, "answer %s type %u: %s", q->name, (unsigned)q->type,
			   dnsq_status_name(ans->status));
		progress(e);
	}
	maybe_free(e);
}

static struct qent *qfind(struct dmarc_eval *e, const char *name, uint16_t type)
{
	for (size_t i = 0; i < e->nq; i++)
		if (e->q[i]->type == type && strcmp(e->q[i]->name, name) == 0)
			return e->q[i];
	return NULL;
}

/* The question (name, type): found in this evaluation's cache, or sent.
 * NULL when the lookup budget or the deadline is exhausted. */
static struct qent *qget(struct dmarc_eval *e, const char *name, uint16_t type)
{
	struct qent *q = qfind(e, name, type);
	if (q)
		return q;
	if (e->nq >= LIM_DMARC_LOOKUPS || trace_now_us() > e->deadline) {
		e->expired = e->nq < LIM_DMARC_LOOKUPS;
		return NULL;
	}
	q = calloc(1, sizeof(*q));
	if (!q)
		return NULL;
	q->e = e;
	q->type = type;
	q->state = Q_PENDING;
	size_t n = strlen(name);
	if (n >= sizeof(q->name))
		n = sizeof(q->name) - 1;
	memcpy(q->name, name, n);
	e->q[e->nq++] = q;
	e->pending++;
	TR(e, "query %s %s", q->name, type == DNSQ_T_TXT ? "TXT" :
	   type == DNSQ_T_A ? "A" : type == DNSQ_T_AAAA ? "AAAA" : "MX");
	dnsq_lookup(e->dq, q->name, type, on_answer, q);
	return q;
}

static struct qent *qdmarc(struct dmarc_eval *e, const char *domain)
{
	char name[DMARC_DOMAIN_MAX + 8];
	memcpy(name, "_dmarc.", 7);
	memcpy(name + 7, domain, strlen(domain) + 1);
	return qget(e, name, DNSQ_T_TXT);
}

/* ---- walks ---- */

static unsigned labels_of(const char *d)
{
	unsigned n = 1;
	for (; *d; d++)
		n += *d == '.';
	return n;
}

/* RFC 9989 4.10 steps 3, 4 and 7: the start name, then (when it has eight
 * or more labels) its last seven labels, then one label less each time. */
static void walk_init(struct walk *w, const char *start, const struct dmarc_eval *e)
{
	memset(w, 0, sizeof(*w));
	w->policy_i = -1;
	memcpy(w->start, start, strlen(start) + 1);
	if (e->o.mode == DMARC_MODE_RFC7489) {
		w->off[w->n++] = 0;
		char org[DMARC_DOMAIN_MAX];
		if (dmarc_psl_org(e->o.psl, start, org) == 0) {
			memcpy(w->org, org, sizeof(org));
			w->org_known = 1;
			if (strcmp(org, start) != 0)
				w->off[w->n++] = strlen(start) - strlen(org);
		}
		return;
	}
	size_t lab[DMARC_DOMAIN_MAX];
	unsigned x = 0;
	lab[x++] = 0;
	for (size_t i = 0; start[i]; i++)
		if (start[i] == '.')
			lab[x++] = i + 1;
	w->off[w->n++] = 0;
	unsigned j = x >= LIM_DMARC_TREE_WALK ? x - (LIM_DMARC_TREE_WALK - 1) : 1;
	for (; j < x && w->n < LIM_DMARC_TREE_WALK; j++)
		w->off[w->n++] = lab[j];
}

static void walk_send(struct dmarc_eval *e, struct walk *w, unsigned from)
{
	for (unsigned i = from; i < w->n; i++)
		if (!qdmarc(e, w->start + w->off[i]))
			return;
}

/* Sets the org domain to the suffix of start with `labels` labels. */
static void set_org_labels(struct walk *w, unsigned labels)
{
	unsigned total = labels_of(w->start);
	const char *p = w->start;
	for (unsigned drop = total > labels ? total - labels : 0; drop > 0; drop--)
		p = strchr(p, '.') + 1;
	memmove(w->org, p, strlen(p) + 1);
	w->org_known = 1;
}

static enum wstate walk_eval_7489(struct dmarc_eval *e, struct walk *w)
{
	for (unsigned i = 0; i < w->n; i++) {
		struct qent *q = qdmarc(e, w->start + w->off[i]);
		if (!q) {
			w->why = "lookup not started (deadline or budget)";
			return W_TEMP;
		}
		if (i == 0 && !e->o.walk_sequential)
			walk_send(e, w, 1);
		if (q->state != Q_DONE)
			return W_PENDING;
		if (is_temp(q->st)) {
			w->why = "DNS error during policy discovery";
			return W_TEMP;
		}
		if (q->n_dmarc > 1) {
			/* RFC 7489 6.6.3 step 5: several records end discovery */
			w->why = "several DMARC records";
			return W_DONE;
		}
		if (q->n_dmarc == 1) {
			w->policy_i = (int)i;
			w->where = i == 0 ? DMARC_AT_AUTHOR : DMARC_AT_ORG;
			return W_DONE;
		}
	}
	return W_DONE;
}

/* RFC 9989 4.10 with the selection rules of 4.10.2 and the policy choice
 * of 4.10.1. Recomputed from the cached answers each time one lands. */
static enum wstate walk_eval_9989(struct dmarc_eval *e, struct walk *w)
{
	int found[LIM_DMARC_TREE_WALK] = { 0 };
	int stop_i = -1, temp_i = -1;
	for (unsigned i = 0; i < w->n; i++) {
		struct qent *q = qdmarc(e, w->start + w->off[i]);
		if (!q) {
			temp_i = (int)i;
			w->why = "lookup not started (deadline or budget)";
			break;
		}
		if (!e->o.walk_sequential)
			walk_send(e, w, i + 1);
		if (q->state != Q_DONE)
			return W_PENDING;
		if (is_temp(q->st)) {
			temp_i = (int)i;
			w->why = q->st == DNSQ_BOGUS ? "DNSSEC bogus answer in tree walk"
			                             : "DNS error in tree walk";
			break;
		}
		if (q->n_dmarc == 1) {
			found[i] = 1;
			if (q->rec.psd != DMARC_PSD_U) {
				stop_i = (int)i;   /* steps 2 and 6: psd=n or psd=y */
				break;
			}
		}
	}
	/* policy record (4.10.1): author domain, else org domain, else PSD */
	w->org_known = 0;
	if (temp_i >= 0) {
		if (found[0]) {
			w->policy_i = 0;
			w->where = DMARC_AT_AUTHOR;
			return W_DONE;     /* policy known, org domain unknown */
		}
		return W_TEMP;
	}
	if (stop_i >= 0) {
		struct qent *q = qdmarc(e, w->start + w->off[stop_i]);
		if (q->rec.psd == DMARC_PSD_N || stop_i == 0) {
			memcpy(w->org, w->start + w->off[stop_i],
			       strlen(w->start + w->off[stop_i]) + 1);
			w->org_known = 1;
		} else {
			/* 4.10.2 rule 2: one label below the PSD */
			set_org_labels(w, labels_of(w->start + w->off[stop_i]) + 1);
		}
	} else {
		int last = -1;
		for (unsigned i = 0; i < w->n; i++)
			if (found[i])
				last = (int)i;
		const char *org = last >= 0 ? w->start + w->off[last] : w->start;
		memmove(w->org, org, strlen(org) + 1);
		w->org_known = 1;
	}
	w->policy_i = -1;
	w->where = DMARC_AT_NONE;
	if (found[0]) {
		w->policy_i = 0;
		w->where = DMARC_AT_AUTHOR;
	} else {
		for (unsigned i = 1; i < w->n; i++)
			if (found[i] && strcmp(w->start + w->off[i], w->org) == 0) {
				w->policy_i = (int)i;
				w->where = DMARC_AT_ORG;
			}
		if (w->policy_i < 0 && stop_i > 0 &&
		    qdmarc(e, w->start + w->off[stop_i])->rec.psd == DMARC_PSD_Y) {
			w->policy_i = stop_i;
			w->where = DMARC_AT_PSD;
		}
	}
	return W_DONE;
}

static enum wstate walk_eval(struct dmarc_eval *e, struct walk *w)
{
	if (w->state != W_PENDING)
		return w->state;
	w->state = e->o.mode == DMARC_MODE_RFC7489 ? walk_eval_7489(e, w)
	                                           : walk_eval_9989(e, w);
	return w->state;
}

/* ---- alignment ---- */

/* 1 when sfx is d or a label suffix of d ("example.com" of
 * "mx.example.com", not of "badexample.com"). */
static int label_suffix(const char *sfx, const char *d)
{
	size_t ls = strlen(sfx), ld = strlen(d);
	if (ls > ld)
		return 0;
	if (strcasecmp(d + ld - ls, sfx) != 0)
		return 0;
	return ls == ld || d[ld - ls - 1] == '.';
}

/* 1 when a and b end in the same label (share some label suffix). */
static int same_last_label(const char *a, const char *b)
{
	const char *la = strrchr(a, '.'), *lb = strrchr(b, '.');
	return strcasecmp(la ? la + 1 : a, lb ? lb + 1 : b) == 0;
}

/* 1 aligned, 0 not, -1 undecided (DNS), 2 waiting for answers.
 *
 * An identifier's organizational domain is always a label suffix of it,
 * and the author's is a label suffix of the author domain; relaxed
 * alignment needs the two to be equal. So an identifier that has no label
 * suffix in common with the author domain (or, once the author's
 * organizational domain is known, does not end in it) cannot align, and
 * that is decided here without DNS: only a lookup that could still change
 * the answer may make it undecided. Otherwise a spoofer who names a domain
 * of their own whose DNS fails would turn a reject into a temperror. */
static int aligned(struct dmarc_eval *e, struct author_ctx *ac, struct ident *id,
                   int strict)
{
	if (strcmp(id->domain, ac->w.start) == 0)
		return 1;              /* identical: strict and relaxed alike */
	if (strict)
		return 0;
	if (!ac->w.org_known)
		return same_last_label(id->domain, ac->w.start) ? -1 : 0;
	if (!label_suffix(ac->w.org, id->domain))
		return 0;
	if (e->o.mode == DMARC_MODE_RFC7489)
		return strcmp(id->org, ac->w.org) == 0;
	if (!id->w) {
		size_t k = (size_t)(id - e->id);
		id->w = &e->idw[k];
		walk_init(id->w, id->domain, e);
	}
	enum wstate s = walk_eval(e, id->w);
	if (s == W_PENDING)
		return 2;
	if (s == W_TEMP || !id->w->org_known)
		return -1;
	return strcmp(id->w->org, ac->w.org) == 0;
}

static enum dmarc_policy lower(enum dmarc_policy p)
{
	if (p == DMARC_POLICY_REJECT)
		return DMARC_POLICY_QUARANTINE;
	return DMARC_POLICY_NONE;
}

/* Decides one author domain; 0 done (ac->r filled), 1 waiting. */
static int decide(struct dmarc_eval *e, struct author_ctx *ac)
{
	struct dmarc_result *r = &ac->r;
	struct walk *w = &ac->w;
	memset(r, 0, sizeof(*r));
	memcpy(r->domain, w->start, sizeof(r->domain));
	r->author_exists = -1;
	r->spf_aligned = r->dkim_aligned = 0;
	if (w->state == W_TEMP) {
		r->res = DMARC_RES_TEMPERROR;
		r->why = w->why;
		return 0;
	}
	if (w->org_known)
		memcpy(r->org_domain, w->org, sizeof(r->org_domain));
	if (w->policy_i < 0) {
		r->res = DMARC_RES_NONE;
		r->why = w->why ? w->why : "no DMARC policy record";
		return 0;
	}
	struct qent *pq = qdmarc(e, w->start + w->off[w->policy_i]);
	r->rec = pq->rec;
	r->where = w->where;
	r->walk_step = (unsigned)w->policy_i + 1;
	memcpy(r->policy_domain, w->start + w->off[w->policy_i],
	       strlen(w->start + w->off[w->policy_i]) + 1);
	if (r->rec.status == DMARC_REC_UNUSABLE) {
		/* RFC 9989 4.10.1: no DMARC processing for this message */
		r->res = DMARC_RES_NONE;
		r->why = r->rec.why;
		return 0;
	}

	/* identifier alignment (RFC 9989 4.4, 4.10.2); temperror inputs are
	 * checked too: if they would align, the outcome is unknown (5.3.6) */
	int waiting = 0, spf = 0, dkim = 0, temp = 0;
	for (size_t i = 0; i < e->nid; i++) {
		struct ident *id = &e->id[i];
		if (id->res != AUTH_PASS && id->res != AUTH_TEMPERROR)
			continue;
		int al = aligned(e, ac, id, id->is_spf ? r->rec.aspf_strict
		                                       : r->rec.adkim_strict);
		if (al == 2) {
			waiting = 1;
			continue;
		}
		if (id->res == AUTH_TEMPERROR) {
			if (al != 0)
				temp = 1;
			continue;
		}
		if (al == -1)
			temp = 1;
		if (id->is_spf) {
			spf = al;
			memcpy(r->spf_domain, id->domain, sizeof(r->spf_domain));
		} else {
			if (al == 1 && dkim != 1) {
				dkim = 1;
				memcpy(r->dkim_domain, id->domain, sizeof(r->dkim_domain));
			} else if (al == -1 && dkim == 0) {
				dkim = -1;
			}
			if (!r->dkim_domain[0])
				memcpy(r->dkim_domain, id->domain, sizeof(r->dkim_domain));
		}
	}
	if (waiting)
		return 1;
	r->spf_aligned = spf;
	r->dkim_aligned = dkim;
	if (spf == 1 || dkim == 1) {
		r->res = DMARC_RES_PASS;
		r->why = spf == 1 ? "aligned SPF pass" : "aligned DKIM pass";
		return 0;
	}
	if (temp) {
		r->res = DMARC_RES_TEMPERROR;
		r->why = "alignment undecided (temporary error)";
		return 0;
	}
	r->res = DMARC_RES_FAIL;
	r->why = "no aligned SPF or DKIM pass";

	/* the policy that applies (RFC 9989 4.10.1; RFC 7489 6.6.3) */
	const struct dmarc_record *rec = &r->rec;
	if (w->where == DMARC_AT_AUTHOR) {
		r->policy = rec->p;
		r->policy_tag = "p";
	} else {
		/* np= (RFC 9091, RFC 9989 3.2.13) in both modes: it extends
		 * RFC 7489 and receivers honour it there too */
		enum dmarc_policy sp = rec->sp != DMARC_POLICY_UNSET ? rec->sp : rec->p;
		const char *sp_tag = rec->sp != DMARC_POLICY_UNSET ? "sp" : "p";
		enum dmarc_policy np = rec->np != DMARC_POLICY_UNSET ? rec->np : sp;
		const char *np_tag = rec->np != DMARC_POLICY_UNSET ? "np" : sp_tag;
		int exists = -1;
		if (np != sp) {
			/* RFC 9989 3.2.13: NXDOMAIN (RFC 8020) means it does not
			 * exist; data or NODATA for any type means it does */
			int nx = 0, pend = 0;
			exists = -1;
			for (int k = 0; k < 3; k++) {
				struct qent *q = ac->ex[k];
				if (!q)
					continue;
				if (q->state != Q_DONE)
					pend = 1;
				else if (q->st == DNSQ_OK || q->st == DNSQ_NODATA)
					exists = 1;
				else if (q->st == DNSQ_NXDOMAIN)
					nx = 1;
			}
			if (exists != 1 && pend)
				return 1;
			if (exists != 1 && nx)
				exists = 0;
		}
		r->author_exists = exists;
		if (np == sp || exists == 1) {
			r->policy = sp;
			r->policy_tag = sp_tag;
		} else if (exists == 0) {
			r->policy = np;
			r->policy_tag = np_tag;
		} else {
			r->res = DMARC_RES_TEMPERROR;
			r->why = "author domain existence unknown (np=)";
			return 0;
		}
	}
	/* the pct= bucket is kept whatever the policy, so that a replay under
	 * another published policy samples this message the same way */
	if (e->o.mode == DMARC_MODE_RFC7489 && rec->pct < 100)
		r->sample_bucket = e->has_sample_key ? dmarc_sample_bucket(e->sample_key) : 0;
	dmarc_dispose(r, &e->o);
	return 0;
}

void dmarc_dispose(struct dmarc_result *r, const struct dmarc_opts *o)
{
	if (r->res == DMARC_RES_PERMERROR && r->n_domains == 0) {
		r->disp = o->bad_author_disp_set ? o->bad_author_disp : DMARC_DISP_QUARANTINE;
		return;
	}
	if (r->res != DMARC_RES_FAIL)
		return;
	const struct dmarc_record *rec = &r->rec;
	r->applied = r->policy;
	r->testing = 0;
	if (r->override == DMARC_OVR_SAMPLED_OUT)
		r->override = DMARC_OVR_NONE;
	if (o->mode == DMARC_MODE_RFC9989 && rec->t && r->policy > DMARC_POLICY_NONE) {
		/* RFC 9989 4.7 t=y: one level below the published policy */
		r->applied = lower(r->policy);
		r->testing = 1;
	}
	if (o->mode == DMARC_MODE_RFC7489 && rec->pct < 100 &&
	    r->policy > DMARC_POLICY_NONE && r->sample_bucket >= rec->pct) {
		/* RFC 7489 6.6.4: not sampled in, apply the next less strict */
		r->applied = lower(r->policy);
		r->override = DMARC_OVR_SAMPLED_OUT;
	}
	r->disp = r->applied == DMARC_POLICY_REJECT ? DMARC_DISP_REJECT :
	          r->applied == DMARC_POLICY_QUARANTINE ? DMARC_DISP_QUARANTINE :
	          DMARC_DISP_NONE;
}

static void trace_result(struct dmarc_eval *e, const struct dmarc_result *r)
{
	if (!e->t || !e->t->enabled)
		return;
	static const char *const where[] = { "none", "author domain",
		"organizational domain", "public suffix domain (psd=y)" };
	if (r->where != DMARC_AT_NONE)
		TR(e, "%s: policy record at _dmarc.%s (%s, %s step %u): p=%s sp=%s np=%s%s%s adkim=%c aspf=%c",
		   r->domain, r->policy_domain, where[r->where],
		   e->o.mode == DMARC_MODE_RFC7489 ? "RFC 7489 lookup" : "tree walk",
		   r->walk_step, dmarc_policy_name(r->rec.p), dmarc_policy_name(r->rec.sp),
		   dmarc_policy_name(r->rec.np), r->rec.t ? " t=y" : "",
		   r->rec.psd == DMARC_PSD_Y ? " psd=y" : r->rec.psd == DMARC_PSD_N ? " psd=n" : "",
		   r->rec.adkim_strict ? 's' : 'r', r->rec.aspf_strict ? 's' : 'r');
	if (r->org_domain[0])
		TR(e, "%s: organizational domain %s", r->domain, r->org_domain);
	for (size_t i = 0; i < e->nid && r->where != DMARC_AT_NONE; i++) {
		/* each authenticated identifier: why it aligned or did not */
		const struct ident *id = &e->id[i];
		int strict = id->is_spf ? r->rec.aspf_strict : r->rec.adkim_strict;
		const char *org = e->o.mode == DMARC_MODE_RFC7489 ? id->org :
		                  id->w && id->w->org_known ? id->w->org : "";
		TR(e, "%s: %s %s is %s; %s alignment: %s", r->domain,
		   id->is_spf ? "SPF domain" : "DKIM d=", id->domain, auth_res_name(id->res),
		   strict ? "strict" : "relaxed",
		   strcmp(id->domain, r->domain) == 0 ? "identical to the author domain" :
		   strict ? "not identical" :
		   !org[0] ? "organizational domain not needed or unknown" :
		   strcmp(org, r->org_domain) == 0 ? "same organizational domain" :
		   "different organizational domain");
		if (org[0] && !strict && strcmp(id->domain, r->domain) != 0)
			TR(e, "%s: organizational domain of %s is %s", r->domain, id->domain, org);
	}
	if (r->res == DMARC_RES_PASS || r->res == DMARC_RES_FAIL)
		TR(e, "%s: SPF %s%s, DKIM %s%s", r->domain,
		   r->spf_aligned == 1 ? "aligned " : "not aligned ", r->spf_domain,
		   r->dkim_aligned == 1 ? "aligned d=" : "not aligned d=", r->dkim_domain);
	TR(e, "%s: dmarc=%s (%s)%s%s%s%s", r->domain, dmarc_res_name(r->res),
	   r->why ? r->why : "",
	   r->res == DMARC_RES_FAIL ? " policy " : "",
	   r->res == DMARC_RES_FAIL ? r->policy_tag : "",
	   r->res == DMARC_RES_FAIL ? "=" : "",
	   r->res == DMARC_RES_FAIL ? dmarc_policy_name(r->policy) : "");
	if (r->res == DMARC_RES_FAIL)
		TR(e, "%s: applied %s, disposition %s%s%s", r->domain,
		   dmarc_policy_name(r->applied), dmarc_disp_name(r->disp),
		   r->testing ? " (t=y testing lowers the policy)" : "",
		   r->override == DMARC_OVR_SAMPLED_OUT ? " (pct= sampled out)" : "");
}

/* Order of severity for combining several author domains (RFC 9989 11.5:
 * the strictest policy among the checks that fail). */
static int severity(const struct dmarc_result *r)
{
	switch (r->res) {
	case DMARC_RES_FAIL:      return 10 + (int)r->applied * 4 + (int)r->policy;
	case DMARC_RES_TEMPERROR: return 5;
	case DMARC_RES_PERMERROR: return 4;
	case DMARC_RES_PASS:      return 2;
	case DMARC_RES_NONE:      return 1;
	}
	return 0;
}

static void deliver(struct dmarc_eval *e)
{
	e->finished = 1;
	e->done(e->done_arg, &e->res);
}

static void progress(struct dmarc_eval *e)
{
	if (e->finished || e->abandoned)
		return;
	int waiting = 0;
	size_t nd = e->a.n_domains;
	for (size_t i = 0; i < nd; i++)
		if (walk_eval(e, &e->ad[i].w) == W_PENDING)
			waiting = 1;
	if (!e->have_inputs)
		return;
	if (e->o.mode == DMARC_MODE_RFC9989)
		for (size_t i = 0; i < e->nid; i++) {
			/* the identifiers' org-domain walks run in parallel with
			 * the author's; only identical domains need none */
			struct ident *id = &e->id[i];
			int same = 0;
			for (size_t k = 0; k < nd; k++)
				same |= strcmp(id->domain, e->a.domains[k]) == 0;
			if (same || id->w || (id->res != AUTH_PASS && id->res != AUTH_TEMPERROR))
				continue;
			id->w = &e->idw[i];
			walk_init(id->w, id->domain, e);
			walk_eval(e, id->w);
		}
	if (nd == 0) {
		memset(&e->res, 0, sizeof(e->res));
		e->res.res = DMARC_RES_PERMERROR;
		e->res.author_status = e->a.status;
		dmarc_dispose(&e->res, &e->o);
		e->res.author_exists = -1;
		e->res.why = e->a.why;
		TR(e, "author domain: %s (%s): dmarc=permerror, disposition %s",
		   dmarc_author_status_name(e->a.status), e->a.why ? e->a.why : "",
		   dmarc_disp_name(e->res.disp));
		deliver(e);
		return;
	}
	if (!waiting)
		for (size_t i = 0; i < nd; i++)
			if (decide(e, &e->ad[i]))
				waiting = 1;
	if (waiting && !e->expired && trace_now_us() <= e->deadline)
		return;
	if (waiting) {
		memset(&e->res, 0, sizeof(e->res));
		e->res.res = DMARC_RES_TEMPERROR;
		e->res.why = "deadline reached during discovery";
		e->res.author_exists = -1;
		memcpy(e->res.domain, e->a.domains[0], sizeof(e->res.domain));
	} else {
		size_t best = 0;
		for (size_t i = 0; i < nd; i++) {
			trace_result(e, &e->ad[i].r);
			if (severity(&e->ad[i].r) > severity(&e->ad[best].r))
				best = i;
		}
		e->res = e->ad[best].r;
	}
	e->res.author_status = e->a.status;
	e->res.n_domains = nd;
	if (nd > 1)
		TR(e, "%zu author domains (%s): result of %s is kept", nd,
		   dmarc_author_status_name(e->a.status), e->res.domain);
	deliver(e);
}

/* ---- public entry points ---- */

struct dmarc_eval *dmarc_start(struct dnsq *dq, const struct dmarc_opts *o,
                               const struct dmarc_author *a,
                               uint64_t deadline_us, struct trace *t)
{
	struct dmarc_eval *e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->dq = dq;
	e->o = *o;
	e->t = t;
	e->deadline = deadline_us;
	e->a = *a;
	if (e->a.status != DMARC_AUTHOR_OK && e->a.status != DMARC_AUTHOR_MULTI_DOMAIN &&
	    e->a.status != DMARC_AUTHOR_MULTI_FIELD)
		e->a.n_domains = 0;
	if (e->o.mode == DMARC_MODE_RFC7489 && !e->o.psl) {
		TR(e, "RFC 7489 mode without a public suffix list: no evaluation");
		e->a.n_domains = 0;
		e->a.status = DMARC_AUTHOR_NO_DOMAIN;
		e->a.why = "no public suffix list loaded";
	}
	for (size_t i = 0; i < e->a.n_domains; i++) {
		struct author_ctx *ac = &e->ad[i];
		TR(e, "author domain %s (%s discovery)", e->a.domains[i],
		   e->o.mode == DMARC_MODE_RFC7489 ? "RFC 7489 PSL" : "RFC 9989 tree walk");
		walk_init(&ac->w, e->a.domains[i], e);
		walk_eval(e, &ac->w);     /* sends the first question(s) */
		if (e->o.mode == DMARC_MODE_RFC9989 ||
		    (ac->w.org_known && strcmp(ac->w.org, e->a.domains[i]) != 0)) {
			/* np= needs to know whether the author domain exists;
			 * ask now, in parallel with the policy questions (in RFC
			 * 7489 mode only when the policy may come from the
			 * organizational domain) */
			ac->ex[0] = qget(e, e->a.domains[i], DNSQ_T_A);
			ac->ex[1] = qget(e, e->a.domains[i], DNSQ_T_AAAA);
			ac->ex[2] = qget(e, e->a.domains[i], DNSQ_T_MX);
		}
	}
	return e;
}

static void deferred(void *arg)
{
	struct dmarc_eval *e = arg;
	e->pending--;
	progress(e);
	maybe_free(e);
}

static void add_ident(struct dmarc_eval *e, const char *d, enum auth_res res, int is_spf)
{
	struct ident *id = &e->id[e->nid];
	if (!d || dmarc_domain_norm(d, strlen(d), id->domain) < 0) {
		if (d && (res == AUTH_PASS || res == AUTH_TEMPERROR))
			TR(e, "%s identifier is not a usable domain: ignored",
			   is_spf ? "SPF" : "DKIM d=");
		return;
	}
	id->res = res;
	id->is_spf = is_spf;
	if (e->o.mode == DMARC_MODE_RFC7489 &&
	    dmarc_psl_org(e->o.psl, id->domain, id->org) < 0)
		id->org[0] = '\0';
	e->nid++;
}

void dmarc_finish(struct dmarc_eval *e, const struct dmarc_inputs *in,
                  dmarc_done_cb done, void *arg)
{
	e->done = done;
	e->done_arg = arg;
	e->have_inputs = 1;
	const char *spf_dom = in->spf_domain;
	if (in->mail_from_null && (!spf_dom || !*spf_dom)) {
		/* RFC 9989 3.2.4 with RFC 7208 2.4: a null reverse path makes
		 * the MAIL FROM identity postmaster@<HELO> */
		spf_dom = in->helo;
		TR(e, "null MAIL FROM: SPF identity is the HELO domain %s",
		   spf_dom ? spf_dom : "(none)");
	}
	if (spf_dom && *spf_dom)
		add_ident(e, spf_dom, in->spf, 1);
	for (size_t i = 0; i < in->n_dkim && i < LIM_DKIM_MAX_SIGNATURES; i++)
		add_ident(e, in->dkim[i].d, in->dkim[i].res, 0);
	if (in->sample_key) {
		size_t n = strlen(in->sample_key);
		if (n >= sizeof(e->sample_key))
			n = sizeof(e->sample_key) - 1;
		memcpy(e->sample_key, in->sample_key, n);
		e->has_sample_key = 1;
	}
	if (!e->o.defer)
		abort();   /* broken invariant: the caller must give a defer hook */
	e->pending++;
	e->o.defer(e->o.defer_arg, deferred, e);
}

void dmarc_abandon(struct dmarc_eval *e)
{
	e->abandoned = 1;
	e->t = NULL;         /* the caller may free its trace now */
	maybe_free(e);
}
