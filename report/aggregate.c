/* RFC 9990 aggregate report XML: groups one policy domain's messages into
 * counted records and writes them with libxml2's xmlwriter. Any thread;
 * everything it allocates is freed before it returns. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libxml/xmlwriter.h>
#include <openssl/evp.h>

#include "common/limits.h"
#include "common/text.h"
#include "report/report.h"

#define RPT_NS "urn:ietf:params:xml:ns:dmarc-2.0"

static const char *disp_name(enum rpt_disp d)
{
	switch (d) {
	case RPT_DISP_PASS:       return "pass";
	case RPT_DISP_QUARANTINE: return "quarantine";
	case RPT_DISP_REJECT:     return "reject";
	case RPT_DISP_NONE:       break;
	}
	return "none";
}

static const char *pol_name(enum rpt_pol p)
{
	switch (p) {
	case RPT_POL_QUARANTINE: return "quarantine";
	case RPT_POL_REJECT:     return "reject";
	case RPT_POL_NONE:
	case RPT_POL_UNSET:      break;
	}
	return "none";
}

static const char *override_name(enum rpt_override o)
{
	switch (o) {
	case RPT_OVR_LOCAL_POLICY:      return "local_policy";
	case RPT_OVR_MAILING_LIST:      return "mailing_list";
	case RPT_OVR_POLICY_TEST_MODE:  return "policy_test_mode";
	case RPT_OVR_TRUSTED_FORWARDER: return "trusted_forwarder";
	case RPT_OVR_OTHER:             break;
	}
	return "other";
}

/* RFC 9990 DKIMResultType has no softfail; SPFResultType has it. */
static const char *dkim_res_name(enum auth_res r)
{
	return r == AUTH_SOFTFAIL ? "fail" : auth_res_name(r);
}

void rpt_report_id(const struct rpt_meta *m, const char *policy_domain, char id_r[33])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	char in[2 * LIM_DNS_MAX_NAME + 64];
	int n = snprintf(in, sizeof(in), "%s!%s!%lld!%lld", m->receiver, policy_domain,
	                 (long long)m->begin, (long long)m->end);
	if (n < 0 || (size_t)n >= sizeof(in))
		n = n < 0 ? 0 : (int)sizeof(in) - 1;
	if (!EVP_Digest(in, (size_t)n, md, &mdlen, EVP_sha256(), NULL))
		mdlen = 0;
	static const char hex[] = "0123456789abcdef";
	for (unsigned i = 0; i < 16; i++) {
		unsigned char c = i < mdlen ? md[i] : 0;
		id_r[2 * i] = hex[c >> 4];
		id_r[2 * i + 1] = hex[c & 15];
	}
	id_r[32] = '\0';
}

/* ---- grouping ---- */

static void key_str(struct buf *k, const char *s)
{
	char tmp[LIM_REPORT_FIELD];
	size_t n = s ? text_printable(tmp, sizeof(tmp), s, strlen(s)) : 0;
	buf_add(k, s ? "s" : "-", 1);
	buf_add(k, tmp, n);
	buf_add(k, "\x1f", 1);
}

static int cmp_reason(const void *a, const void *b)
{
	const struct rpt_reason *x = *(const struct rpt_reason *const *)a;
	const struct rpt_reason *y = *(const struct rpt_reason *const *)b;
	if (x->type != y->type)
		return x->type < y->type ? -1 : 1;
	return strcmp(x->comment ? x->comment : "", y->comment ? y->comment : "");
}

static int cmp_dkim(const void *a, const void *b)
{
	const struct rpt_dkim *x = *(const struct rpt_dkim *const *)a;
	const struct rpt_dkim *y = *(const struct rpt_dkim *const *)b;
	int c = strcmp(x->domain ? x->domain : "", y->domain ? y->domain : "");
	if (c == 0)
		c = strcmp(x->selector ? x->selector : "", y->selector ? y->selector : "");
	if (c == 0 && x->res != y->res)
		c = x->res < y->res ? -1 : 1;
	if (c == 0)
		c = strcmp(x->human ? x->human : "", y->human ? y->human : "");
	return c;
}

#define MAX_SIGS (LIM_DKIM_MAX_SIGNATURES * 8)

/* Reasons and signatures of one message, in a stable order: the order in
 * which a message listed them says nothing to the report's reader. */
struct sorted {
	const struct rpt_reason *r[LIM_REPORT_REASONS];
	const struct rpt_dkim *d[MAX_SIGS];
	size_t nr, nd;
};

static void sort_msg(const struct rpt_msg *m, struct sorted *s)
{
	s->nr = m->n_reasons < LIM_REPORT_REASONS ? m->n_reasons : LIM_REPORT_REASONS;
	s->nd = m->n_dkim < MAX_SIGS ? m->n_dkim : MAX_SIGS;
	for (size_t i = 0; i < s->nr; i++)
		s->r[i] = &m->reasons[i];
	for (size_t i = 0; i < s->nd; i++)
		s->d[i] = &m->dkim[i];
	qsort(s->r, s->nr, sizeof(s->r[0]), cmp_reason);
	qsort(s->d, s->nd, sizeof(s->d[0]), cmp_dkim);
}

/* Every field a record shows, printable, \x1f-separated. */
static int make_key(const struct rpt_msg *m, struct buf *k)
{
	struct sorted s;
	sort_msg(m, &s);
	key_str(k, m->source_ip);
	buf_printf(k, "%d%d%d\x1f", (int)m->disposition, m->dkim_aligned != 0, m->spf_aligned != 0);
	for (size_t i = 0; i < s.nr; i++) {
		buf_printf(k, "r%d", (int)s.r[i]->type);
		key_str(k, s.r[i]->comment);
	}
	key_str(k, m->header_from);
	key_str(k, m->envelope_from);
	key_str(k, m->envelope_to);
	for (size_t i = 0; i < s.nd; i++) {
		buf_printf(k, "d%d", (int)s.d[i]->res);
		key_str(k, s.d[i]->domain);
		key_str(k, s.d[i]->selector);
		key_str(k, s.d[i]->human);
	}
	if (m->spf_domain) {
		buf_printf(k, "p%d", (int)m->spf_res);
		key_str(k, m->spf_domain);
	}
	return k->failed ? -1 : 0;
}

/* A deep copy of a message: the struct, its arrays and its strings in one
 * allocation, freed with free(). */
struct clone {
	size_t need, off;
	char *base;
};

static const char *cl_str(struct clone *c, const char *s)
{
	if (!s)
		return NULL;
	size_t n = strlen(s) + 1;
	if (!c->base) {
		c->need += n;
		return s;
	}
	char *d = c->base + c->off;
	memcpy(d, s, n);
	c->off += n;
	return d;
}

static struct rpt_msg *msg_clone(const struct rpt_msg *m)
{
	size_t nr = m->n_reasons < LIM_REPORT_REASONS ? m->n_reasons : LIM_REPORT_REASONS;
	size_t nd = m->n_dkim < MAX_SIGS ? m->n_dkim : MAX_SIGS;
	size_t fixed = sizeof(struct rpt_msg) + nr * sizeof(struct rpt_reason) +
	               nd * sizeof(struct rpt_dkim);
	struct clone c = { fixed, fixed, NULL };
	for (int pass = 0; pass < 2; pass++) {
		if (pass == 1) {
			c.base = malloc(c.need);
			if (!c.base)
				return NULL;
		}
		struct rpt_msg *o = pass ? (struct rpt_msg *)c.base : NULL;
		struct rpt_reason *r = pass ? (struct rpt_reason *)(c.base + sizeof(*o)) : NULL;
		struct rpt_dkim *d = pass ? (struct rpt_dkim *)(c.base + sizeof(*o) + nr * sizeof(*r)) : NULL;
		const char *ip = cl_str(&c, m->source_ip), *hf = cl_str(&c, m->header_from);
		const char *ef = cl_str(&c, m->envelope_from), *et = cl_str(&c, m->envelope_to);
		const char *sd = cl_str(&c, m->spf_domain), *pd = cl_str(&c, m->policy.domain);
		const char *fo = cl_str(&c, m->policy.fo);
		for (size_t i = 0; i < nr; i++) {
			const char *cm = cl_str(&c, m->reasons[i].comment);
			if (pass)
				r[i] = (struct rpt_reason){ m->reasons[i].type, cm };
		}
		for (size_t i = 0; i < nd; i++) {
			const char *dd = cl_str(&c, m->dkim[i].domain), *ds = cl_str(&c, m->dkim[i].selector);
			const char *dh = cl_str(&c, m->dkim[i].human);
			if (pass)
				d[i] = (struct rpt_dkim){ dd, ds, m->dkim[i].res, dh };
		}
		if (pass) {
			*o = *m;
			o->source_ip = ip;
			o->header_from = hf;
			o->envelope_from = ef;
			o->envelope_to = et;
			o->spf_domain = sd;
			o->policy.domain = pd;
			o->policy.fo = fo;
			o->reasons = nr ? r : NULL;
			o->n_reasons = nr;
			o->dkim = nd ? d : NULL;
			o->n_dkim = nd;
			return o;
		}
	}
	return NULL;
}

struct group {
	char *key;
	size_t keylen;
	uint64_t hash;
	size_t count;
	struct rpt_msg *rep;       /* the first message of the group, copied */
};

struct rpt_agg {
	struct rpt_meta meta;      /* strings borrowed */
	char domain[LIM_DNS_MAX_NAME + 1];
	struct group *g;           /* open addressing; key NULL: free slot */
	size_t cap, n;
	size_t messages;
	struct rpt_msg *latest;    /* policy_published comes from it */
	char *latest_key;
	int64_t latest_time;
};

static uint64_t fnv1a(const char *p, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)p[i];
		h *= 1099511628211ull;
	}
	return h;
}

struct rpt_agg *rpt_agg_new(const struct rpt_meta *m, const char *policy_domain)
{
	if (strlen(policy_domain) > LIM_DNS_MAX_NAME)
		return NULL;
	struct rpt_agg *a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	a->meta = *m;
	strcpy(a->domain, policy_domain);
	a->cap = 64;
	a->g = calloc(a->cap, sizeof(*a->g));
	if (!a->g) {
		free(a);
		return NULL;
	}
	return a;
}

static int grow(struct rpt_agg *a)
{
	size_t cap = a->cap * 2;
	struct group *g = calloc(cap, sizeof(*g));
	if (!g)
		return -1;
	for (size_t i = 0; i < a->cap; i++) {
		if (!a->g[i].key)
			continue;
		size_t j = a->g[i].hash & (cap - 1);
		while (g[j].key)
			j = (j + 1) & (cap - 1);
		g[j] = a->g[i];
	}
	free(a->g);
	a->g = g;
	a->cap = cap;
	return 0;
}

int rpt_agg_add(struct rpt_agg *a, const struct rpt_msg *msg)
{
	if (!msg->policy.domain || strcasecmp(msg->policy.domain, a->domain) != 0)
		return 0;
	if (msg->time < a->meta.begin || msg->time > a->meta.end)
		return 0;
	struct buf k;
	buf_init(&k, 0);
	if (make_key(msg, &k) < 0) {
		buf_free(&k);
		return -1;
	}
	uint64_t h = fnv1a(k.data, k.len);
	size_t j = h & (a->cap - 1);
	while (a->g[j].key && !(a->g[j].hash == h && a->g[j].keylen == k.len &&
	                        memcmp(a->g[j].key, k.data, k.len) == 0))
		j = (j + 1) & (a->cap - 1);
	struct group *g = &a->g[j];
	const char *key = g->key;
	if (!g->key) {
		if ((a->n + 1) * 10 > a->cap * 7) {
			if (grow(a) < 0) {
				buf_free(&k);
				return -1;
			}
			buf_free(&k);
			return rpt_agg_add(a, msg);     /* slots moved: look again */
		}
		struct rpt_msg *rep = msg_clone(msg);
		if (!rep) {
			buf_free(&k);
			return -1;
		}
		g->rep = rep;
		g->hash = h;
		g->key = buf_steal(&k, &g->keylen);
		if (!g->key) {
			free(rep);
			g->rep = NULL;
			return -1;
		}
		key = g->key;
		a->n++;
	}
	g->count++;
	a->messages++;
	/* The latest message's record is the policy in force at the end of the
	 * period; among messages of the same second the greatest key wins, so
	 * the choice does not depend on the order of arrival. */
	if (!a->latest || msg->time > a->latest_time ||
	    (msg->time == a->latest_time && strcmp(key, a->latest_key) > 0)) {
		struct rpt_msg *c = msg_clone(msg);
		if (!c) {
			buf_free(&k);
			return -1;
		}
		free(a->latest);
		a->latest = c;
		a->latest_key = g->key;
		a->latest_time = msg->time;
	}
	buf_free(&k);
	return 1;
}

size_t rpt_agg_messages(const struct rpt_agg *a) { return a->messages; }
size_t rpt_agg_records(const struct rpt_agg *a) { return a->n; }

void rpt_agg_free(struct rpt_agg **ap)
{
	struct rpt_agg *a = *ap;
	if (!a)
		return;
	for (size_t i = 0; i < a->cap; i++) {
		free(a->g[i].key);
		free(a->g[i].rep);
	}
	free(a->g);
	free(a->latest);
	free(a);
	*ap = NULL;
}

static int cmp_group(const void *x, const void *y)
{
	const struct group *a = *(const struct group *const *)x, *b = *(const struct group *const *)y;
	size_t n = a->keylen < b->keylen ? a->keylen : b->keylen;
	int c = memcmp(a->key, b->key, n);
	if (c == 0 && a->keylen != b->keylen)
		c = a->keylen < b->keylen ? -1 : 1;
	return c;
}

/* ---- writing ---- */

struct xw {
	xmlTextWriterPtr w;
	int failed;
};

static void el(struct xw *x, const char *name, const char *value)
{
	char tmp[LIM_REPORT_FIELD];
	text_printable(tmp, sizeof(tmp), value ? value : "", value ? strlen(value) : 0);
	if (xmlTextWriterWriteElement(x->w, BAD_CAST name, BAD_CAST tmp) < 0)
		x->failed = 1;
}

static void el_i64(struct xw *x, const char *name, long long v)
{
	if (xmlTextWriterWriteFormatElement(x->w, BAD_CAST name, "%lld", v) < 0)
		x->failed = 1;
}

static void open_el(struct xw *x, const char *name)
{
	if (xmlTextWriterStartElement(x->w, BAD_CAST name) < 0)
		x->failed = 1;
}

static void close_el(struct xw *x)
{
	if (xmlTextWriterEndElement(x->w) < 0)
		x->failed = 1;
}

static void write_metadata(struct xw *x, const struct rpt_meta *m, const char *id)
{
	open_el(x, "report_metadata");
	el(x, "org_name", m->org_name);
	el(x, "email", m->email);
	if (m->extra_contact)
		el(x, "extra_contact_info", m->extra_contact);
	el(x, "report_id", id);
	open_el(x, "date_range");
	el_i64(x, "begin", m->begin);
	el_i64(x, "end", m->end);
	close_el(x);
	if (m->generator)
		el(x, "generator", m->generator);
	close_el(x);
}

static void write_policy(struct xw *x, const struct rpt_policy *p)
{
	char a[2] = { 0, 0 };
	open_el(x, "policy_published");
	el(x, "domain", p->domain);
	el(x, "p", pol_name(p->p));
	if (p->sp != RPT_POL_UNSET)
		el(x, "sp", pol_name(p->sp));
	if (p->np != RPT_POL_UNSET)
		el(x, "np", pol_name(p->np));
	if (p->adkim == 'r' || p->adkim == 's') {
		a[0] = p->adkim;
		el(x, "adkim", a);
	}
	if (p->aspf == 'r' || p->aspf == 's') {
		a[0] = p->aspf;
		el(x, "aspf", a);
	}
	el(x, "discovery_method", p->treewalk ? "treewalk" : "psl");
	if (p->fo)
		el(x, "fo", p->fo);
	el(x, "testing", p->testing ? "y" : "n");
	close_el(x);
}

static void write_record(struct xw *x, const struct rpt_msg *m, size_t count)
{
	struct sorted s;
	sort_msg(m, &s);
	open_el(x, "record");
	open_el(x, "row");
	el(x, "source_ip", m->source_ip);
	el_i64(x, "count", (long long)count);
	open_el(x, "policy_evaluated");
	el(x, "disposition", disp_name(m->disposition));
	el(x, "dkim", m->dkim_aligned ? "pass" : "fail");
	el(x, "spf", m->spf_aligned ? "pass" : "fail");
	for (size_t i = 0; i < s.nr; i++) {
		open_el(x, "reason");
		el(x, "type", override_name(s.r[i]->type));
		if (s.r[i]->comment)
			el(x, "comment", s.r[i]->comment);
		close_el(x);
	}
	close_el(x);
	close_el(x);
	open_el(x, "identifiers");
	el(x, "header_from", m->header_from);
	if (m->envelope_from)
		el(x, "envelope_from", m->envelope_from);
	if (m->envelope_to)
		el(x, "envelope_to", m->envelope_to);
	close_el(x);
	open_el(x, "auth_results");
	for (size_t i = 0; i < s.nd; i++) {
		open_el(x, "dkim");
		el(x, "domain", s.d[i]->domain);
		el(x, "selector", s.d[i]->selector);
		el(x, "result", dkim_res_name(s.d[i]->res));
		if (s.d[i]->human)
			el(x, "human_result", s.d[i]->human);
		close_el(x);
	}
	if (m->spf_domain) {
		open_el(x, "spf");
		el(x, "domain", m->spf_domain);
		el(x, "scope", "mfrom");
		el(x, "result", auth_res_name(m->spf_res));
		close_el(x);
	}
	close_el(x);
	close_el(x);
}

int rpt_agg_xml(const struct rpt_agg *a, struct buf *out, const char **err_r)
{
	int rc = -1;
	if (a->n == 0) {
		*err_r = "no message for this domain in this period";
		return -1;
	}
	*err_r = "out of memory";
	const struct group **order = calloc(a->n, sizeof(*order));
	if (!order)
		return -1;
	size_t k = 0;
	for (size_t i = 0; i < a->cap; i++)
		if (a->g[i].key)
			order[k++] = &a->g[i];
	qsort(order, k, sizeof(*order), cmp_group);

	char id[33];
	rpt_report_id(&a->meta, a->domain, id);
	xmlBufferPtr xb = xmlBufferCreate();
	struct xw x = { xb ? xmlNewTextWriterMemory(xb, 0) : NULL, 0 };
	if (!x.w) {
		if (xb)
			xmlBufferFree(xb);
		free(order);
		return -1;
	}
	xmlTextWriterSetIndent(x.w, 1);
	xmlTextWriterSetIndentString(x.w, BAD_CAST "  ");
	if (xmlTextWriterStartDocument(x.w, "1.0", "UTF-8", NULL) < 0 ||
	    xmlTextWriterStartElementNS(x.w, NULL, BAD_CAST "feedback", BAD_CAST RPT_NS) < 0)
		x.failed = 1;
	el(&x, "version", "1.0");
	write_metadata(&x, &a->meta, id);
	write_policy(&x, &a->latest->policy);
	for (size_t i = 0; i < k; i++)
		write_record(&x, order[i]->rep, order[i]->count);
	if (xmlTextWriterEndDocument(x.w) < 0)
		x.failed = 1;
	xmlFreeTextWriter(x.w);     /* flushes into xb */
	if (!x.failed && buf_add(out, xmlBufferContent(xb), (size_t)xmlBufferLength(xb)) == 0)
		rc = 0;
	else
		*err_r = x.failed ? "XML writer failed" : "report larger than its limit";
	xmlBufferFree(xb);
	free(order);
	return rc;
}

int rpt_aggregate_xml(const struct rpt_meta *m, const char *policy_domain,
                      const struct rpt_msg *msgs, size_t n,
                      struct buf *out, const char **err_r)
{
	struct rpt_agg *a = rpt_agg_new(m, policy_domain);
	*err_r = "out of memory";
	if (!a)
		return -1;
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++)
		if (rpt_agg_add(a, &msgs[i]) < 0)
			rc = -1;
	if (rc == 0)
		rc = rpt_agg_xml(a, out, err_r);
	rpt_agg_free(&a);
	return rc;
}
