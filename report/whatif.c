/* The what-if report (whatif.h). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/limits.h"
#include "common/text.h"
#include "report/summary.h"
#include "report/whatif.h"

struct example {
	int64_t time;
	char *queue_id, *why;
	int now, proposed;
};

struct group {                  /* one author domain, or one source */
	char *name;
	uint64_t messages, changed, unknown;
	uint64_t dir[RPT_WI_ACTIONS][RPT_WI_ACTIONS];   /* [now][proposed], changed ones */
	struct example ex[LIM_WHATIF_EXAMPLES];
	size_t n_ex;
};

struct gset {                   /* groups by name, open addressing */
	struct group *g;
	size_t n, cap;
	uint32_t *tab;              /* index + 1, 0 empty */
	size_t slots;               /* a power of two */
};

struct day {
	int64_t day;                /* days since the epoch */
	uint64_t now[RPT_WI_ACTIONS], proposed[RPT_WI_ACTIONS];
};

struct rpt_whatif {
	struct gset doms, srcs;
	struct day *days;
	size_t n_days, cap_days;
	uint64_t messages, changed, unknown, ungrouped;
	uint64_t dir[RPT_WI_ACTIONS][RPT_WI_ACTIONS];   /* all messages, changed or not */
};

static const char *const act_names[RPT_WI_ACTIONS] = { "accept", "quarantine", "reject", "tempfail" };

const char *rpt_whatif_action_name(int a)
{
	return a >= 0 && a < RPT_WI_ACTIONS ? act_names[a] : "?";
}

static uint64_t fnv(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++) {
		h ^= (unsigned char)(*s >= 'A' && *s <= 'Z' ? *s + 32 : *s);
		h *= 1099511628211ull;
	}
	return h;
}

static void gset_free(struct gset *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->g[i].name);
		for (size_t k = 0; k < s->g[i].n_ex; k++) {
			free(s->g[i].ex[k].queue_id);
			free(s->g[i].ex[k].why);
		}
	}
	free(s->g);
	free(s->tab);
}

static int rehash(struct gset *s)
{
	size_t ns = s->slots ? s->slots * 2 : 64;
	uint32_t *t = calloc(ns, sizeof(*t));
	if (!t)
		return -1;
	for (size_t i = 0; i < s->n; i++) {
		size_t k = (size_t)fnv(s->g[i].name) & (ns - 1);
		while (t[k])
			k = (k + 1) & (ns - 1);
		t[k] = (uint32_t)(i + 1);
	}
	free(s->tab);
	s->tab = t;
	s->slots = ns;
	return 0;
}

/* The group named name, made if new; NULL when full (*nomem 0) or out of
 * memory (*nomem 1). */
static struct group *gset_get(struct gset *s, const char *name, int *nomem)
{
	if ((s->n + 1) * 2 > s->slots && rehash(s) < 0) {
		*nomem = 1;
		return NULL;
	}
	size_t k = (size_t)fnv(name) & (s->slots - 1);
	for (; s->tab[k]; k = (k + 1) & (s->slots - 1))
		if (strcasecmp(s->g[s->tab[k] - 1].name, name) == 0)
			return &s->g[s->tab[k] - 1];
	if (s->n >= LIM_WHATIF_GROUPS)
		return NULL;
	if (s->n == s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 16;
		struct group *ng = realloc(s->g, nc * sizeof(*ng));
		if (!ng) {
			*nomem = 1;
			return NULL;
		}
		s->g = ng;
		s->cap = nc;
	}
	struct group *g = &s->g[s->n];
	memset(g, 0, sizeof(*g));
	if (!(g->name = strdup(name))) {
		*nomem = 1;
		return NULL;
	}
	s->tab[k] = (uint32_t)(++s->n);
	return g;
}

struct rpt_whatif *rpt_whatif_new(void)
{
	return calloc(1, sizeof(struct rpt_whatif));
}

void rpt_whatif_free(struct rpt_whatif **wp)
{
	struct rpt_whatif *w = *wp;
	if (!w)
		return;
	*wp = NULL;
	gset_free(&w->doms);
	gset_free(&w->srcs);
	free(w->days);
	free(w);
}

uint64_t rpt_whatif_messages(const struct rpt_whatif *w)
{
	return w->messages;
}

uint64_t rpt_whatif_changed(const struct rpt_whatif *w)
{
	return w->changed;
}

/* Whether example a comes before b: the oldest are kept, so that the
 * examples do not depend on the order messages were counted in. */
static int earlier(int64_t ta, const char *qa, int64_t tb, const char *qb)
{
	return ta != tb ? ta < tb : strcmp(qa, qb) < 0;
}

/* Keeps (time, queue id, why) among the group's examples if it is one of
 * the oldest; the strings are copied. 0 or -1. */
static int keep_example(struct group *g, int64_t time, const char *qid, const char *why,
                        int now, int proposed)
{
	size_t at = g->n_ex;
	if (at == LIM_WHATIF_EXAMPLES) {
		/* the newest kept one goes, if this one is older */
		size_t last = 0;
		for (size_t k = 1; k < g->n_ex; k++)
			if (earlier(g->ex[last].time, g->ex[last].queue_id, g->ex[k].time, g->ex[k].queue_id))
				last = k;
		if (!earlier(time, qid, g->ex[last].time, g->ex[last].queue_id))
			return 0;
		at = last;
	}
	char *q = strdup(qid), *w = strdup(why);
	if (!q || !w) {
		free(q);
		free(w);
		return -1;
	}
	struct example *e = &g->ex[at];
	if (at < g->n_ex) {
		free(e->queue_id);
		free(e->why);
	} else {
		g->n_ex++;
	}
	*e = (struct example){ time, q, w, now, proposed };
	return 0;
}

static int cmp_examples(const void *a, const void *b)
{
	const struct example *x = a, *y = b;
	return earlier(x->time, x->queue_id, y->time, y->queue_id) ? -1
	     : earlier(y->time, y->queue_id, x->time, x->queue_id) ? 1 : 0;
}

static int count_group(struct group *g, const struct rpt_whatif_msg *m, int changed)
{
	g->messages++;
	g->unknown += m->unknown != 0;
	if (!changed)
		return 0;
	g->changed++;
	g->dir[m->now][m->proposed]++;
	return keep_example(g, m->time, m->queue_id ? m->queue_id : "", m->why ? m->why : "",
	                    m->now, m->proposed);
}

static struct day *day_get(struct rpt_whatif *w, int64_t day)
{
	/* records come oldest first: the day is the last one, or a new one */
	for (size_t i = w->n_days; i-- > 0;)
		if (w->days[i].day == day)
			return &w->days[i];
	if (w->n_days >= LIM_WHATIF_DAYS)
		return NULL;
	if (w->n_days == w->cap_days) {
		size_t nc = w->cap_days ? w->cap_days * 2 : 16;
		struct day *nd = realloc(w->days, nc * sizeof(*nd));
		if (!nd)
			return NULL;
		w->days = nd;
		w->cap_days = nc;
	}
	/* kept in order */
	size_t at = w->n_days;
	while (at > 0 && w->days[at - 1].day > day)
		at--;
	memmove(&w->days[at + 1], &w->days[at], (w->n_days - at) * sizeof(*w->days));
	memset(&w->days[at], 0, sizeof(*w->days));
	w->days[at].day = day;
	w->n_days++;
	return &w->days[at];
}

int rpt_whatif_add(struct rpt_whatif *w, const struct rpt_whatif_msg *m)
{
	if (m->now < 0 || m->now >= RPT_WI_ACTIONS || m->proposed < 0 || m->proposed >= RPT_WI_ACTIONS)
		return 0;
	int changed = m->now != m->proposed;
	w->messages++;
	w->changed += changed;
	w->unknown += m->unknown != 0;
	w->dir[m->now][m->proposed]++;
	int nomem = 0;
	struct group *d = gset_get(&w->doms, m->domain && *m->domain ? m->domain : "-", &nomem);
	if (d && count_group(d, m, changed) < 0)
		return -1;
	struct group *s = nomem ? NULL : gset_get(&w->srcs, m->source && *m->source ? m->source : "-",
	                                          &nomem);
	if (s && count_group(s, m, changed) < 0)
		return -1;
	if (nomem)
		return -1;
	if (!d || !s)
		w->ungrouped++;
	int64_t day = m->time >= 0 ? m->time / 86400 : (m->time - 86399) / 86400;
	struct day *dy = day_get(w, day);
	if (dy) {
		dy->now[m->now]++;
		dy->proposed[m->proposed]++;
	}
	return 0;
}

/* Adds src's group into the group of the same name in dst. */
static int merge_groups(struct gset *dst, const struct gset *src, uint64_t *ungrouped)
{
	for (size_t i = 0; i < src->n; i++) {
		const struct group *s = &src->g[i];
		int nomem = 0;
		struct group *d = gset_get(dst, s->name, &nomem);
		if (nomem)
			return -1;
		if (!d) {
			*ungrouped += s->messages;
			continue;
		}
		d->messages += s->messages;
		d->changed += s->changed;
		d->unknown += s->unknown;
		for (int a = 0; a < RPT_WI_ACTIONS; a++)
			for (int b = 0; b < RPT_WI_ACTIONS; b++)
				d->dir[a][b] += s->dir[a][b];
		for (size_t k = 0; k < s->n_ex; k++)
			if (keep_example(d, s->ex[k].time, s->ex[k].queue_id, s->ex[k].why, s->ex[k].now,
			                 s->ex[k].proposed) < 0)
				return -1;
	}
	return 0;
}

int rpt_whatif_merge(struct rpt_whatif *dst, const struct rpt_whatif *src)
{
	dst->messages += src->messages;
	dst->changed += src->changed;
	dst->unknown += src->unknown;
	dst->ungrouped += src->ungrouped;
	for (int a = 0; a < RPT_WI_ACTIONS; a++)
		for (int b = 0; b < RPT_WI_ACTIONS; b++)
			dst->dir[a][b] += src->dir[a][b];
	if (merge_groups(&dst->doms, &src->doms, &dst->ungrouped) < 0 ||
	    merge_groups(&dst->srcs, &src->srcs, &dst->ungrouped) < 0)
		return -1;
	for (size_t i = 0; i < src->n_days; i++) {
		struct day *d = day_get(dst, src->days[i].day);
		if (!d)
			continue;
		for (int k = 0; k < RPT_WI_ACTIONS; k++) {
			d->now[k] += src->days[i].now[k];
			d->proposed[k] += src->days[i].proposed[k];
		}
	}
	return 0;
}

/* ---- output ---- */

static int cmp_groups(const void *a, const void *b)
{
	const struct group *x = *(const struct group *const *)a, *y = *(const struct group *const *)b;
	if (x->changed != y->changed)
		return x->changed < y->changed ? 1 : -1;
	if (x->messages != y->messages)
		return x->messages < y->messages ? 1 : -1;
	return strcmp(x->name, y->name);
}

/* The groups that changed, most changes first; NULL without memory
 * (an empty set gives a non-NULL empty array). */
static const struct group **order(const struct gset *s, size_t *n)
{
	const struct group **o = malloc((s->n + 1) * sizeof(*o));
	if (!o)
		return NULL;
	size_t k = 0;
	for (size_t i = 0; i < s->n; i++)
		if (s->g[i].changed) {
			/* oldest example first */
			qsort(s->g[i].ex, s->g[i].n_ex, sizeof(s->g[i].ex[0]), cmp_examples);
			o[k++] = &s->g[i];
		}
	qsort(o, k, sizeof(*o), cmp_groups);
	*n = k;
	return o;
}

static void day_text(char *dst, size_t cap, int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;
	gmtime_r(&tt, &tm);
	strftime(dst, cap, "%Y-%m-%d %H:%M", &tm);
}

static void text_dirs(struct buf *out, const uint64_t dir[RPT_WI_ACTIONS][RPT_WI_ACTIONS],
                      const char *indent)
{
	for (int a = 0; a < RPT_WI_ACTIONS; a++)
		for (int b = 0; b < RPT_WI_ACTIONS; b++)
			if (a != b && dir[a][b])
				buf_printf(out, "%s%-10s -> %-10s %8llu\n", indent, act_names[a], act_names[b],
				           (unsigned long long)dir[a][b]);
}

static void text_groups(struct buf *out, const char *title, const struct group **o, size_t n,
                        size_t top)
{
	char t1[LIM_REPORT_FIELD], t2[LIM_REPORT_FIELD];
	buf_printf(out, "\nBy %s (%zu with changes%s):\n", title, n,
	           top && n > top ? ", the first shown" : "");
	for (size_t i = 0; i < n && (!top || i < top); i++) {
		const struct group *g = o[i];
		text_printable(t1, sizeof t1, g->name, strlen(g->name));
		buf_printf(out, "  %s: %llu of %llu messages change", t1,
		           (unsigned long long)g->changed, (unsigned long long)g->messages);
		if (g->unknown)
			buf_printf(out, " (%llu without a DMARC record seen: unknown)",
			           (unsigned long long)g->unknown);
		buf_adds(out, "\n");
		text_dirs(out, g->dir, "    ");
		for (size_t k = 0; k < g->n_ex; k++) {
			const struct example *e = &g->ex[k];
			text_printable(t1, sizeof t1, e->queue_id, strlen(e->queue_id));
			text_printable(t2, sizeof t2, e->why, strlen(e->why));
			buf_printf(out, "    e.g. %s: %s -> %s: %s\n", *t1 ? t1 : "(no queue id)",
			           act_names[e->now], act_names[e->proposed], t2);
		}
	}
}

/* What both outputs need: the groups in order, and the verdicts now and
 * as proposed. */
struct view {
	const struct group **od, **os;
	size_t nd, ns;
	uint64_t now[RPT_WI_ACTIONS], proposed[RPT_WI_ACTIONS];
};

static int view_make(const struct rpt_whatif *w, struct view *v)
{
	memset(v, 0, sizeof(*v));
	for (int i = 0; i < RPT_WI_ACTIONS; i++)
		for (int k = 0; k < RPT_WI_ACTIONS; k++) {
			v->now[i] += w->dir[i][k];
			v->proposed[k] += w->dir[i][k];
		}
	v->od = order(&w->doms, &v->nd);
	v->os = order(&w->srcs, &v->ns);
	return v->od && v->os ? 0 : -1;
}

static void view_free(struct view *v)
{
	free(v->od);
	free(v->os);
}

int rpt_whatif_text(const struct rpt_whatif *w, const struct rpt_whatif_head *h, size_t top,
                    struct buf *out)
{
	struct view v;
	if (view_make(w, &v) < 0) {
		view_free(&v);
		return -1;
	}
	char a[32], b[32];
	day_text(a, sizeof a, h->since);
	day_text(b, sizeof b, h->until);
	buf_printf(out, "What-if from %s to %s UTC: %llu messages re-decided", a, b,
	           (unsigned long long)w->messages);
	if (h->proposal && *h->proposal)
		buf_printf(out, " under %s", h->proposal);
	buf_adds(out, ".\n");
	if (h->unreadable)
		buf_printf(out, "%llu stored records could not be replayed and are not counted.\n",
		           (unsigned long long)h->unreadable);
	if (w->unknown)
		buf_printf(out, "%llu messages come from the domain asked about without a DMARC record "
		           "seen: their alignment was never evaluated, so they are kept as they were.\n",
		           (unsigned long long)w->unknown);
	buf_printf(out, "Verdicts now:      ");
	for (int i = 0; i < RPT_WI_ACTIONS; i++)
		buf_printf(out, " %s %llu", act_names[i], (unsigned long long)v.now[i]);
	buf_printf(out, "\nVerdicts proposed: ");
	for (int k = 0; k < RPT_WI_ACTIONS; k++)
		buf_printf(out, " %s %llu", act_names[k], (unsigned long long)v.proposed[k]);
	buf_printf(out, "\n%llu unchanged, %llu would change", (unsigned long long)(w->messages - w->changed),
	           (unsigned long long)w->changed);
	buf_adds(out, w->changed ? ":\n" : ".\n");
	text_dirs(out, w->dir, "  ");
	if (h->disp_changed)
		buf_printf(out, "%llu messages change their DMARC disposition.\n",
		           (unsigned long long)h->disp_changed);
	if (w->changed) {
		text_groups(out, "author domain", v.od, v.nd, top);
		text_groups(out, "sending source", v.os, v.ns, top);
	}
	view_free(&v);
	return out->failed ? -1 : 0;
}

static void json_dirs(struct buf *out, const uint64_t dir[RPT_WI_ACTIONS][RPT_WI_ACTIONS])
{
	buf_adds(out, "[");
	int first = 1;
	for (int a = 0; a < RPT_WI_ACTIONS; a++)
		for (int b = 0; b < RPT_WI_ACTIONS; b++)
			if (a != b && dir[a][b]) {
				buf_printf(out, "%s{\"from\":\"%s\",\"to\":\"%s\",\"messages\":%llu}",
				           first ? "" : ",", act_names[a], act_names[b],
				           (unsigned long long)dir[a][b]);
				first = 0;
			}
	buf_adds(out, "]");
}

static void json_groups(struct buf *out, const char *key, const char *name_key,
                        const struct group **o, size_t n, size_t top)
{
	buf_printf(out, ",\"%s\":[", key);
	for (size_t i = 0; i < n && (!top || i < top); i++) {
		const struct group *g = o[i];
		buf_printf(out, "%s{\"%s\":", i ? "," : "", name_key);
		rpt_json_str(out, g->name);
		buf_printf(out, ",\"messages\":%llu,\"changed\":%llu,\"unknown\":%llu,\"changes\":",
		           (unsigned long long)g->messages, (unsigned long long)g->changed,
		           (unsigned long long)g->unknown);
		json_dirs(out, g->dir);
		buf_adds(out, ",\"examples\":[");
		for (size_t k = 0; k < g->n_ex; k++) {
			buf_adds(out, k ? ",{\"queue_id\":" : "{\"queue_id\":");
			rpt_json_str(out, g->ex[k].queue_id);
			buf_printf(out, ",\"from\":\"%s\",\"to\":\"%s\",\"why\":", act_names[g->ex[k].now],
			           act_names[g->ex[k].proposed]);
			rpt_json_str(out, g->ex[k].why);
			buf_adds(out, "}");
		}
		buf_adds(out, "]}");
	}
	buf_adds(out, "]");
}

int rpt_whatif_json(const struct rpt_whatif *w, const struct rpt_whatif_head *h, size_t top,
                    struct buf *out)
{
	struct view v;
	if (view_make(w, &v) < 0) {
		view_free(&v);
		return -1;
	}
	buf_printf(out, "{\"since\":%lld,\"until\":%lld,\"proposal\":", (long long)h->since,
	           (long long)h->until);
	rpt_json_str(out, h->proposal ? h->proposal : "");
	buf_printf(out, ",\"messages\":%llu,\"changed\":%llu,\"unknown\":%llu,\"unreadable\":%llu,"
	           "\"dispositions_changed\":%llu,\"now\":{", (unsigned long long)w->messages,
	           (unsigned long long)w->changed, (unsigned long long)w->unknown,
	           (unsigned long long)h->unreadable, (unsigned long long)h->disp_changed);
	for (int i = 0; i < RPT_WI_ACTIONS; i++)
		buf_printf(out, "%s\"%s\":%llu", i ? "," : "", act_names[i], (unsigned long long)v.now[i]);
	buf_adds(out, "},\"proposed\":{");
	for (int k = 0; k < RPT_WI_ACTIONS; k++)
		buf_printf(out, "%s\"%s\":%llu", k ? "," : "", act_names[k],
		           (unsigned long long)v.proposed[k]);
	buf_adds(out, "},\"changes\":");
	json_dirs(out, w->dir);
	json_groups(out, "domains", "domain", v.od, v.nd, top);
	json_groups(out, "sources", "source", v.os, v.ns, top);
	buf_adds(out, ",\"days\":[");
	for (size_t i = 0; i < w->n_days; i++) {
		char d[32];
		day_text(d, sizeof d, w->days[i].day * 86400);
		d[10] = '\0';
		buf_printf(out, "%s{\"day\":\"%s\",\"now\":[%llu,%llu,%llu,%llu],\"proposed\":[%llu,%llu,%llu,%llu]}",
		           i ? "," : "", d,
		           (unsigned long long)w->days[i].now[0], (unsigned long long)w->days[i].now[1],
		           (unsigned long long)w->days[i].now[2], (unsigned long long)w->days[i].now[3],
		           (unsigned long long)w->days[i].proposed[0], (unsigned long long)w->days[i].proposed[1],
		           (unsigned long long)w->days[i].proposed[2], (unsigned long long)w->days[i].proposed[3]);
	}
	buf_adds(out, "]}\n");
	view_free(&v);
	return out->failed ? -1 : 0;
}

int rpt_whatif_days(const struct rpt_whatif *w, struct buf *out)
{
	for (size_t i = 0; i < w->n_days; i++) {
		char d[32];
		day_text(d, sizeof d, w->days[i].day * 86400);
		d[10] = '\0';
		buf_printf(out, "%s", d);
		for (int k = 0; k < RPT_WI_ACTIONS; k++)
			buf_printf(out, "\t%llu", (unsigned long long)w->days[i].now[k]);
		for (int k = 0; k < RPT_WI_ACTIONS; k++)
			buf_printf(out, "\t%llu", (unsigned long long)w->days[i].proposed[k]);
		buf_adds(out, "\n");
	}
	return out->failed ? -1 : 0;
}
