/* The administrator's summary of the history store (summary.h). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/limits.h"
#include "common/text.h"
#include "report/summary.h"

struct src {
	char *ip;
	uint32_t dom;                 /* index into doms */
	uint64_t messages, failing;
	uint64_t disp[4];             /* failing ones by enum rpt_disp */
	char *envelope_from;          /* of the first failing message, or NULL */
};

struct sdom {
	char *name;
	uint64_t messages, pass, failing;
	uint64_t disp[4];             /* failing ones by enum rpt_disp */
	uint64_t overridden;          /* failing ones with an override reason */
	size_t n_src;
};

struct rpt_summary {
	struct sdom *doms;
	size_t n_doms, cap_doms;
	struct src *srcs;
	size_t n_srcs, cap_srcs;
	/* open addressing: index + 1 into doms / srcs, 0 empty */
	uint32_t *dom_tab, *src_tab;
	size_t dom_slots, src_slots;  /* powers of two */
	uint64_t messages, failing, dropped;
};

static uint64_t fnv(const char *s, uint64_t h)
{
	for (; *s; s++) {
		h ^= (unsigned char)(*s >= 'A' && *s <= 'Z' ? *s + 32 : *s);
		h *= 1099511628211ull;
	}
	return h;
}

#define FNV_BASIS 1469598103934665603ull

struct rpt_summary *rpt_summary_new(void)
{
	return calloc(1, sizeof(struct rpt_summary));
}

void rpt_summary_free(struct rpt_summary **sp)
{
	struct rpt_summary *s = *sp;
	if (!s)
		return;
	*sp = NULL;
	for (size_t i = 0; i < s->n_doms; i++)
		free(s->doms[i].name);
	for (size_t i = 0; i < s->n_srcs; i++) {
		free(s->srcs[i].ip);
		free(s->srcs[i].envelope_from);
	}
	free(s->doms);
	free(s->srcs);
	free(s->dom_tab);
	free(s->src_tab);
	free(s);
}

uint64_t rpt_summary_dropped(const struct rpt_summary *s)
{
	return s->dropped;
}

/* Rebuilds a table at twice the size (or the first one); 0 or -1. */
static int grow_tab(uint32_t **tab, size_t *slots, size_t n, uint64_t (*key)(const struct rpt_summary *, size_t),
                    const struct rpt_summary *s)
{
	size_t ns = *slots ? *slots * 2 : 64;
	uint32_t *t = calloc(ns, sizeof(*t));
	if (!t)
		return -1;
	for (size_t i = 0; i < n; i++) {
		size_t k = (size_t)key(s, i) & (ns - 1);
		while (t[k])
			k = (k + 1) & (ns - 1);
		t[k] = (uint32_t)(i + 1);
	}
	free(*tab);
	*tab = t;
	*slots = ns;
	return 0;
}

static uint64_t dom_key(const struct rpt_summary *s, size_t i)
{
	return fnv(s->doms[i].name, FNV_BASIS);
}

static uint64_t src_key(const struct rpt_summary *s, size_t i)
{
	return fnv(s->srcs[i].ip, FNV_BASIS ^ ((uint64_t)s->srcs[i].dom * 0x9e3779b97f4a7c15ull));
}

/* The domain's index, made if new; -1 full or no memory (*nomem says). */
static long find_dom(struct rpt_summary *s, const char *name, int *nomem)
{
	if ((s->n_doms + 1) * 2 > s->dom_slots &&
	    grow_tab(&s->dom_tab, &s->dom_slots, s->n_doms, dom_key, s) < 0) {
		*nomem = 1;
		return -1;
	}
	size_t k = (size_t)fnv(name, FNV_BASIS) & (s->dom_slots - 1);
	for (; s->dom_tab[k]; k = (k + 1) & (s->dom_slots - 1))
		if (strcasecmp(s->doms[s->dom_tab[k] - 1].name, name) == 0)
			return (long)s->dom_tab[k] - 1;
	if (s->n_doms >= LIM_SUMMARY_DOMAINS)
		return -1;
	if (s->n_doms == s->cap_doms) {
		size_t nc = s->cap_doms ? s->cap_doms * 2 : 16;
		struct sdom *nd = realloc(s->doms, nc * sizeof(*nd));
		if (!nd) {
			*nomem = 1;
			return -1;
		}
		s->doms = nd;
		s->cap_doms = nc;
	}
	struct sdom *d = &s->doms[s->n_doms];
	memset(d, 0, sizeof(*d));
	if (!(d->name = strdup(name))) {
		*nomem = 1;
		return -1;
	}
	s->dom_tab[k] = (uint32_t)(++s->n_doms);
	return (long)s->n_doms - 1;
}

static long find_src(struct rpt_summary *s, uint32_t dom, const char *ip, int *nomem)
{
	if ((s->n_srcs + 1) * 2 > s->src_slots &&
	    grow_tab(&s->src_tab, &s->src_slots, s->n_srcs, src_key, s) < 0) {
		*nomem = 1;
		return -1;
	}
	size_t k = (size_t)fnv(ip, FNV_BASIS ^ ((uint64_t)dom * 0x9e3779b97f4a7c15ull)) &
	           (s->src_slots - 1);
	for (; s->src_tab[k]; k = (k + 1) & (s->src_slots - 1)) {
		const struct src *c = &s->srcs[s->src_tab[k] - 1];
		if (c->dom == dom && strcmp(c->ip, ip) == 0)
			return (long)s->src_tab[k] - 1;
	}
	if (s->n_srcs >= LIM_SUMMARY_SOURCES)
		return -1;
	if (s->n_srcs == s->cap_srcs) {
		size_t nc = s->cap_srcs ? s->cap_srcs * 2 : 64;
		struct src *ns = realloc(s->srcs, nc * sizeof(*ns));
		if (!ns) {
			*nomem = 1;
			return -1;
		}
		s->srcs = ns;
		s->cap_srcs = nc;
	}
	struct src *c = &s->srcs[s->n_srcs];
	memset(c, 0, sizeof(*c));
	c->dom = dom;
	if (!(c->ip = strdup(ip))) {
		*nomem = 1;
		return -1;
	}
	s->src_tab[k] = (uint32_t)(++s->n_srcs);
	s->doms[dom].n_src++;
	return (long)s->n_srcs - 1;
}

int rpt_summary_add(struct rpt_summary *s, const struct rpt_msg *m)
{
	int fail = !m->dkim_aligned && !m->spf_aligned;
	unsigned disp = (unsigned)m->disposition < 4 ? (unsigned)m->disposition : RPT_DISP_NONE;
	s->messages++;
	if (fail)
		s->failing++;
	int nomem = 0;
	long di = find_dom(s, m->header_from && *m->header_from ? m->header_from : "(none)", &nomem);
	if (di < 0) {
		s->dropped++;
		return nomem ? -1 : 0;
	}
	struct sdom *d = &s->doms[di];
	d->messages++;
	if (fail) {
		d->failing++;
		d->disp[disp]++;
		if (m->n_reasons)
			d->overridden++;
	} else {
		d->pass++;
	}
	long si = find_src(s, (uint32_t)di, m->source_ip && *m->source_ip ? m->source_ip : "-",
	                   &nomem);
	if (si < 0) {
		s->dropped++;
		return nomem ? -1 : 0;
	}
	struct src *c = &s->srcs[si];
	c->messages++;
	if (fail) {
		c->failing++;
		c->disp[disp]++;
		if (!c->envelope_from && m->envelope_from && *m->envelope_from &&
		    !(c->envelope_from = strdup(m->envelope_from)))
			return -1;
	}
	return 0;
}

/* ---- output ---- */

static const struct rpt_summary *sort_ctx;

static int cmp_dom(const void *a, const void *b)
{
	const struct sdom *x = &sort_ctx->doms[*(const uint32_t *)a];
	const struct sdom *y = &sort_ctx->doms[*(const uint32_t *)b];
	if (x->failing != y->failing)
		return x->failing > y->failing ? -1 : 1;
	if (x->messages != y->messages)
		return x->messages > y->messages ? -1 : 1;
	return strcmp(x->name, y->name);
}

static int cmp_src(const void *a, const void *b)
{
	const struct src *x = &sort_ctx->srcs[*(const uint32_t *)a];
	const struct src *y = &sort_ctx->srcs[*(const uint32_t *)b];
	if (x->dom != y->dom)
		return x->dom < y->dom ? -1 : 1;
	if (x->failing != y->failing)
		return x->failing > y->failing ? -1 : 1;
	if (x->messages != y->messages)
		return x->messages > y->messages ? -1 : 1;
	return strcmp(x->ip, y->ip);
}

/* Domains in output order, and sources grouped by domain in output order
 * with first[d] the first source of domain d. Not reentrant (qsort has no
 * context argument): callers are single-threaded per summary, and the
 * report tool has one. */
struct order {
	uint32_t *dom, *src;
	size_t *first;
};

static int make_order(const struct rpt_summary *s, struct order *o)
{
	o->dom = malloc((s->n_doms + 1) * sizeof(*o->dom));
	o->src = malloc((s->n_srcs + 1) * sizeof(*o->src));
	o->first = malloc((s->n_doms + 1) * sizeof(*o->first));
	if (!o->dom || !o->src || !o->first)
		return -1;
	for (size_t i = 0; i < s->n_doms; i++)
		o->dom[i] = (uint32_t)i;
	for (size_t i = 0; i < s->n_srcs; i++)
		o->src[i] = (uint32_t)i;
	sort_ctx = s;
	qsort(o->dom, s->n_doms, sizeof(*o->dom), cmp_dom);
	qsort(o->src, s->n_srcs, sizeof(*o->src), cmp_src);
	sort_ctx = NULL;
	size_t k = 0;
	for (size_t d = 0; d < s->n_doms; d++) {
		o->first[d] = k;
		while (k < s->n_srcs && s->srcs[o->src[k]].dom == d)
			k++;
	}
	o->first[s->n_doms] = k;
	return 0;
}

static void free_order(struct order *o)
{
	free(o->dom);
	free(o->src);
	free(o->first);
}

static void day_text(int64_t t, char *out, size_t cap)
{
	time_t tt = (time_t)t;
	struct tm tm;
	gmtime_r(&tt, &tm);
	strftime(out, cap, "%Y-%m-%d %H:%M", &tm);
}

/* untrusted text (domains, IPs come from the store) made printable */
static const char *clean(const char *v, char *tmp, size_t cap)
{
	text_printable(tmp, cap, v ? v : "", v ? strlen(v) : 0);
	return tmp;
}

int rpt_summary_text(const struct rpt_summary *s, int64_t since, int64_t until, size_t top,
                     struct buf *out)
{
	struct order o;
	if (make_order(s, &o) < 0) {
		free_order(&o);
		return -1;
	}
	char a[32], b[32], t1[LIM_REPORT_FIELD], t2[LIM_REPORT_FIELD];
	day_text(since, a, sizeof a);
	day_text(until, b, sizeof b);
	buf_printf(out, "From %s to %s UTC: %llu messages, %llu failing DMARC, %zu author domains\n",
	           a, b, (unsigned long long)s->messages, (unsigned long long)s->failing, s->n_doms);
	if (s->dropped)
		buf_printf(out, "(%llu messages beyond the summary's table sizes are in the totals only)\n",
		           (unsigned long long)s->dropped);
	for (size_t i = 0; i < s->n_doms; i++) {
		const struct sdom *d = &s->doms[o.dom[i]];
		buf_printf(out, "\n%s: %llu messages, %llu pass, %llu fail", clean(d->name, t1, sizeof t1),
		           (unsigned long long)d->messages, (unsigned long long)d->pass,
		           (unsigned long long)d->failing);
		if (d->failing)
			buf_printf(out, " (%llu rejected, %llu quarantined, %llu delivered; %llu by an override)",
			           (unsigned long long)d->disp[RPT_DISP_REJECT],
			           (unsigned long long)d->disp[RPT_DISP_QUARANTINE],
			           (unsigned long long)d->disp[RPT_DISP_NONE],
			           (unsigned long long)d->overridden);
		buf_adds(out, "\n");
		size_t shown = 0;
		for (size_t k = o.first[o.dom[i]]; k < o.first[o.dom[i] + 1]; k++) {
			const struct src *c = &s->srcs[o.src[k]];
			if (!c->failing || (top && shown == top))
				break;
			shown++;
			buf_printf(out, "  %-39s %8llu failing of %llu", clean(c->ip, t1, sizeof t1),
			           (unsigned long long)c->failing, (unsigned long long)c->messages);
			if (c->envelope_from)
				buf_printf(out, ", envelope from %s", clean(c->envelope_from, t2, sizeof t2));
			buf_adds(out, "\n");
		}
	}
	free_order(&o);
	return out->failed ? -1 : 0;
}

void rpt_json_str(struct buf *out, const char *v)
{
	char tmp[LIM_REPORT_FIELD];
	text_printable(tmp, sizeof tmp, v ? v : "", v ? strlen(v) : 0);
	buf_adds(out, "\"");
	for (const char *p = tmp; *p; p++) {
		if (*p == '"' || *p == '\\')
			buf_add(out, "\\", 1);
		buf_add(out, p, 1);
	}
	buf_adds(out, "\"");
}

static void json_disp(struct buf *out, const uint64_t disp[4])
{
	buf_printf(out, "{\"reject\":%llu,\"quarantine\":%llu,\"none\":%llu}",
	           (unsigned long long)disp[RPT_DISP_REJECT],
	           (unsigned long long)disp[RPT_DISP_QUARANTINE],
	           (unsigned long long)disp[RPT_DISP_NONE]);
}

int rpt_summary_json(const struct rpt_summary *s, int64_t since, int64_t until, size_t top,
                     struct buf *out)
{
	struct order o;
	if (make_order(s, &o) < 0) {
		free_order(&o);
		return -1;
	}
	buf_printf(out, "{\"since\":%lld,\"until\":%lld,\"messages\":%llu,\"failing\":%llu,"
	           "\"dropped\":%llu,\"domains\":[", (long long)since, (long long)until,
	           (unsigned long long)s->messages, (unsigned long long)s->failing,
	           (unsigned long long)s->dropped);
	for (size_t i = 0; i < s->n_doms; i++) {
		const struct sdom *d = &s->doms[o.dom[i]];
		buf_adds(out, i ? ",{\"domain\":" : "{\"domain\":");
		rpt_json_str(out, d->name);
		buf_printf(out, ",\"messages\":%llu,\"pass\":%llu,\"failing\":%llu,\"overridden\":%llu,"
		           "\"failing_dispositions\":", (unsigned long long)d->messages,
		           (unsigned long long)d->pass, (unsigned long long)d->failing,
		           (unsigned long long)d->overridden);
		json_disp(out, d->disp);
		buf_adds(out, ",\"sources\":[");
		size_t shown = 0;
		for (size_t k = o.first[o.dom[i]]; k < o.first[o.dom[i] + 1]; k++) {
			const struct src *c = &s->srcs[o.src[k]];
			if (!c->failing || (top && shown == top))
				break;
			buf_adds(out, shown ? ",{\"ip\":" : "{\"ip\":");
			shown++;
			rpt_json_str(out, c->ip);
			buf_printf(out, ",\"messages\":%llu,\"failing\":%llu,\"dispositions\":",
			           (unsigned long long)c->messages, (unsigned long long)c->failing);
			json_disp(out, c->disp);
			if (c->envelope_from) {
				buf_adds(out, ",\"envelope_from\":");
				rpt_json_str(out, c->envelope_from);
			}
			buf_adds(out, "}");
		}
		buf_adds(out, "]}");
	}
	buf_adds(out, "]}\n");
	free_order(&o);
	return out->failed ? -1 : 0;
}
