/* RFC 9990 aggregate report XML: groups one policy domain's messages into
 * counted records and writes them with libxml2's xmlwriter. Any thread;
 * everything it allocates is freed before it returns. */
#include <stdlib.h>
#include <string.h>

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

struct item {
	const struct rpt_msg *msg;
	char *key;          /* every field a record shows, printable, \x1f-separated */
	size_t keylen;
};

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

/* Reasons and signatures of one message, in a stable order: the order in
 * which a message listed them says nothing to the report's reader. */
struct sorted {
	const struct rpt_reason *r[LIM_REPORT_REASONS];
	const struct rpt_dkim *d[LIM_DKIM_MAX_SIGNATURES * 8];
	size_t nr, nd;
};

static void sort_msg(const struct rpt_msg *m, struct sorted *s)
{
	s->nr = m->n_reasons < LIM_REPORT_REASONS ? m->n_reasons : LIM_REPORT_REASONS;
	s->nd = m->n_dkim < sizeof(s->d) / sizeof(s->d[0]) ? m->n_dkim : sizeof(s->d) / sizeof(s->d[0]);
	for (size_t i = 0; i < s->nr; i++)
		s->r[i] = &m->reasons[i];
	for (size_t i = 0; i < s->nd; i++)
		s->d[i] = &m->dkim[i];
	qsort(s->r, s->nr, sizeof(s->r[0]), cmp_reason);
	qsort(s->d, s->nd, sizeof(s->d[0]), cmp_dkim);
}

static int make_key(const struct rpt_msg *m, struct item *it)
{
	struct buf k;
	struct sorted s;
	buf_init(&k, 0);
	sort_msg(m, &s);
	key_str(&k, m->source_ip);
	buf_printf(&k, "%d%d%d\x1f", (int)m->disposition, m->dkim_aligned != 0, m->spf_aligned != 0);
	for (size_t i = 0; i < s.nr; i++) {
		buf_printf(&k, "r%d", (int)s.r[i]->type);
		key_str(&k, s.r[i]->comment);
	}
	key_str(&k, m->header_from);
	key_str(&k, m->envelope_from);
	key_str(&k, m->envelope_to);
	for (size_t i = 0; i < s.nd; i++) {
		buf_printf(&k, "d%d", (int)s.d[i]->res);
		key_str(&k, s.d[i]->domain);
		key_str(&k, s.d[i]->selector);
		key_str(&k, s.d[i]->human);
	}
	if (m->spf_domain) {
		buf_printf(&k, "p%d", (int)m->spf_res);
		key_str(&k, m->spf_domain);
	}
	if (k.failed) {
		buf_free(&k);
		return -1;
	}
	it->key = buf_steal(&k, &it->keylen);
	return it->key ? 0 : -1;
}

static int cmp_item(const void *a, const void *b)
{
	const struct item *x = a, *y = b;
	size_t n = x->keylen < y->keylen ? x->keylen : y->keylen;
	int c = memcmp(x->key, y->key, n);
	if (c == 0 && x->keylen != y->keylen)
		c = x->keylen < y->keylen ? -1 : 1;
	if (c == 0 && x->msg->time != y->msg->time)
		c = x->msg->time < y->msg->time ? -1 : 1;
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

int rpt_aggregate_xml(const struct rpt_meta *m, const char *policy_domain,
                      const struct rpt_msg *msgs, size_t n,
                      struct buf *out, const char **err_r)
{
	struct item *items = n ? calloc(n, sizeof(*items)) : NULL;
	size_t ni = 0;
	int rc = -1;
	*err_r = "out of memory";
	if (n && !items)
		return -1;
	for (size_t i = 0; i < n; i++) {
		const struct rpt_msg *msg = &msgs[i];
		if (!msg->policy.domain || strcasecmp(msg->policy.domain, policy_domain) != 0)
			continue;
		if (msg->time < m->begin || msg->time > m->end)
			continue;
		items[ni].msg = msg;
		if (make_key(msg, &items[ni]) < 0)
			goto out;
		ni++;
	}
	if (ni == 0) {
		*err_r = "no message for this domain in this period";
		goto out;
	}
	qsort(items, ni, sizeof(*items), cmp_item);

	/* The latest message's record is the policy in force at the end of the
	 * period; ties are broken by the sort order, so the choice is stable. */
	const struct rpt_msg *latest = items[0].msg;
	for (size_t i = 1; i < ni; i++)
		if (items[i].msg->time >= latest->time)
			latest = items[i].msg;

	char id[33];
	rpt_report_id(m, policy_domain, id);
	xmlBufferPtr xb = xmlBufferCreate();
	struct xw x = { xb ? xmlNewTextWriterMemory(xb, 0) : NULL, 0 };
	if (!x.w) {
		if (xb)
			xmlBufferFree(xb);
		goto out;
	}
	xmlTextWriterSetIndent(x.w, 1);
	xmlTextWriterSetIndentString(x.w, BAD_CAST "  ");
	if (xmlTextWriterStartDocument(x.w, "1.0", "UTF-8", NULL) < 0 ||
	    xmlTextWriterStartElementNS(x.w, NULL, BAD_CAST "feedback", BAD_CAST RPT_NS) < 0)
		x.failed = 1;
	el(&x, "version", "1.0");
	write_metadata(&x, m, id);
	write_policy(&x, &latest->policy);
	for (size_t i = 0; i < ni;) {
		size_t j = i + 1;
		while (j < ni && items[j].keylen == items[i].keylen &&
		       memcmp(items[j].key, items[i].key, items[i].keylen) == 0)
			j++;
		write_record(&x, items[i].msg, j - i);
		i = j;
	}
	if (xmlTextWriterEndDocument(x.w) < 0)
		x.failed = 1;
	xmlFreeTextWriter(x.w);     /* flushes into xb */
	if (!x.failed && buf_add(out, xmlBufferContent(xb), (size_t)xmlBufferLength(xb)) == 0)
		rc = 0;
	else
		*err_r = x.failed ? "XML writer failed" : "report larger than its limit";
	xmlBufferFree(xb);
out:
	for (size_t i = 0; i < ni; i++)
		free(items[i].key);
	free(items);
	return rc;
}
