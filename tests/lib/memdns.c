/* In-memory struct dnsq for unit tests. Single thread. */
#include "tests/lib/memdns.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct rr {
	char *name;
	uint16_t type;
	unsigned char *data;
	size_t len;
};

struct forced {
	char *name;
	uint16_t type;
	enum dnsq_status st;
};

struct secz {
	char *zone;
	enum dnsq_sec sec;
};

struct pending {
	char *name;
	uint16_t type;
	dnsq_cb cb;
	void *arg;
};

struct memdns {
	struct dnsq dq;            /* first: the struct dnsq * is the struct memdns * */
	struct rr *rr;
	size_t n_rr, cap_rr;
	struct forced *forced;
	size_t n_forced;
	struct secz *secz;
	size_t n_secz;
	struct pending *q;
	size_t q_head, q_len, q_cap;
	unsigned lookups, max_pending;
};

static char *norm(const char *name)
{
	size_t n = strlen(name);
	if (n > 0 && name[n - 1] == '.')
		n--;
	char *s = malloc(n + 1);
	if (!s)
		abort();  /* test tooling: out of memory is fatal */
	for (size_t i = 0; i < n; i++)
		s[i] = (name[i] >= 'A' && name[i] <= 'Z') ? (char)(name[i] + 32) : name[i];
	s[n] = '\0';
	return s;
}

static void mem_lookup(struct dnsq *dq, const char *name, uint16_t type,
                       dnsq_cb cb, void *arg)
{
	struct memdns *m = (struct memdns *)dq;
	if (m->q_head + m->q_len == m->q_cap) {
		if (m->q_head > 0) {
			memmove(m->q, m->q + m->q_head, m->q_len * sizeof(*m->q));
			m->q_head = 0;
		} else {
			m->q_cap = m->q_cap ? m->q_cap * 2 : 16;
			m->q = realloc(m->q, m->q_cap * sizeof(*m->q));
			if (!m->q)
				abort();
		}
	}
	m->q[m->q_head + m->q_len++] = (struct pending){ norm(name), type, cb, arg };
	m->lookups++;
	if (m->q_len > m->max_pending)
		m->max_pending = (unsigned)m->q_len;
}

struct memdns *memdns_new(void)
{
	struct memdns *m = calloc(1, sizeof(*m));
	if (!m)
		abort();
	m->dq.lookup = mem_lookup;
	return m;
}

struct dnsq *memdns_dnsq(struct memdns *m) { return &m->dq; }

void memdns_free(struct memdns **mp)
{
	struct memdns *m = *mp;
	if (!m)
		return;
	for (size_t i = 0; i < m->n_rr; i++) {
		free(m->rr[i].name);
		free(m->rr[i].data);
	}
	for (size_t i = 0; i < m->n_forced; i++)
		free(m->forced[i].name);
	for (size_t i = 0; i < m->n_secz; i++)
		free(m->secz[i].zone);
	for (size_t i = 0; i < m->q_len; i++)
		free(m->q[m->q_head + i].name);
	free(m->rr);
	free(m->forced);
	free(m->secz);
	free(m->q);
	free(m);
	*mp = NULL;
}

void memdns_add(struct memdns *m, const char *name, uint16_t type,
                const void *rdata, size_t len)
{
	if (m->n_rr == m->cap_rr) {
		m->cap_rr = m->cap_rr ? m->cap_rr * 2 : 64;
		m->rr = realloc(m->rr, m->cap_rr * sizeof(*m->rr));
		if (!m->rr)
			abort();
	}
	unsigned char *d = malloc(len ? len : 1);
	if (!d)
		abort();
	memcpy(d, rdata, len);
	m->rr[m->n_rr++] = (struct rr){ norm(name), type, d, len };
}

void memdns_add_txt_parts(struct memdns *m, const char *name,
                          const char *const *parts, size_t n)
{
	size_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += 1 + strlen(parts[i]);
	unsigned char *buf = malloc(total ? total : 1);
	if (!buf)
		abort();
	size_t off = 0;
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(parts[i]);
		if (l > 255)
			l = 255;
		buf[off++] = (unsigned char)l;
		memcpy(buf + off, parts[i], l);
		off += l;
	}
	memdns_add(m, name, DNSQ_T_TXT, buf, off);
	free(buf);
}

void memdns_add_txt(struct memdns *m, const char *name, const char *text)
{
	size_t len = strlen(text);
	unsigned char *buf = malloc(len + len / 255 + 2);
	if (!buf)
		abort();
	size_t off = 0, pos = 0;
	do {
		size_t l = len - pos > 255 ? 255 : len - pos;
		buf[off++] = (unsigned char)l;
		memcpy(buf + off, text + pos, l);
		off += l;
		pos += l;
	} while (pos < len);
	memdns_add(m, name, DNSQ_T_TXT, buf, off);
	free(buf);
}

void memdns_add_a(struct memdns *m, const char *name, const char *ip4)
{
	unsigned char a[4];
	if (inet_pton(AF_INET, ip4, a) != 1)
		abort();
	memdns_add(m, name, DNSQ_T_A, a, 4);
}

void memdns_add_aaaa(struct memdns *m, const char *name, const char *ip6)
{
	unsigned char a[16];
	if (inet_pton(AF_INET6, ip6, a) != 1)
		abort();
	memdns_add(m, name, DNSQ_T_AAAA, a, 16);
}

static size_t to_wire(const char *name, unsigned char *out)
{
	size_t off = 0;
	const char *p = name;
	while (*p) {
		const char *dot = strchr(p, '.');
		size_t l = dot ? (size_t)(dot - p) : strlen(p);
		if (l > 63)
			l = 63;
		out[off++] = (unsigned char)l;
		memcpy(out + off, p, l);
		off += l;
		p += l;
		if (*p == '.')
			p++;
	}
	out[off++] = 0;
	return off;
}

void memdns_add_mx(struct memdns *m, const char *name, uint16_t pref,
                   const char *target)
{
	unsigned char buf[2 + 300];
	if (strlen(target) > 253)
		abort();
	buf[0] = (unsigned char)(pref >> 8);
	buf[1] = (unsigned char)pref;
	size_t n = to_wire(target, buf + 2);
	memdns_add(m, name, DNSQ_T_MX, buf, n + 2);
}

static void add_name_rr(struct memdns *m, const char *name, uint16_t type,
                        const char *target)
{
	unsigned char buf[300];
	if (strlen(target) > 253)
		abort();
	size_t n = to_wire(target, buf);
	memdns_add(m, name, type, buf, n);
}

void memdns_add_ptr(struct memdns *m, const char *name, const char *target)
{
	add_name_rr(m, name, DNSQ_T_PTR, target);
}

void memdns_add_cname(struct memdns *m, const char *name, const char *target)
{
	add_name_rr(m, name, DNSQ_T_CNAME, target);
}

void memdns_set_status(struct memdns *m, const char *name, uint16_t type,
                       enum dnsq_status st)
{
	m->forced = realloc(m->forced, (m->n_forced + 1) * sizeof(*m->forced));
	if (!m->forced)
		abort();
	m->forced[m->n_forced++] = (struct forced){ norm(name), type, st };
}

void memdns_set_sec(struct memdns *m, const char *zone, enum dnsq_sec sec)
{
	m->secz = realloc(m->secz, (m->n_secz + 1) * sizeof(*m->secz));
	if (!m->secz)
		abort();
	m->secz[m->n_secz++] = (struct secz){ norm(zone), sec };
}

static int at_or_below(const char *name, const char *zone)
{
	size_t n = strlen(name), z = strlen(zone);
	if (z == 0)
		return 1;
	if (n < z || strcmp(name + n - z, zone) != 0)
		return 0;
	return n == z || name[n - z - 1] == '.';
}

static void answer(struct memdns *m, struct pending *p)
{
	const char *name = p->name;
	char *owned = NULL;
	struct dnsq_answer a = { .qname = p->name, .qtype = p->type,
	                         .ttl = 300, .from_cache = 0 };
	for (size_t i = 0; i < m->n_secz; i++)
		if (at_or_below(name, m->secz[i].zone))
			a.sec = m->secz[i].sec;
	for (size_t i = 0; i < m->n_forced; i++)
		if (strcmp(m->forced[i].name, name) == 0 &&
		    (m->forced[i].type == 0 || m->forced[i].type == p->type)) {
			a.status = m->forced[i].st;
			if (a.status == DNSQ_BOGUS)
				a.sec = DNSQ_SEC_BOGUS;
			p->cb(p->arg, &a);
			return;
		}
	/* follow CNAMEs (at most 8) unless CNAME itself was asked */
	for (int hop = 0; hop < 8 && p->type != DNSQ_T_CNAME; hop++) {
		size_t i;
		for (i = 0; i < m->n_rr; i++)
			if (m->rr[i].type == DNSQ_T_CNAME && strcmp(m->rr[i].name, name) == 0)
				break;
		if (i == m->n_rr)
			break;
		char target[300];
		size_t off = 0;
		if (dnsq_wire_name(m->rr[i].data, m->rr[i].len, &off, target, sizeof(target)) < 0)
			break;
		free(owned);
		owned = norm(target);
		name = owned;
	}
	size_t n = 0, exists = 0;
	for (size_t i = 0; i < m->n_rr; i++)
		if (strcmp(m->rr[i].name, name) == 0) {
			exists = 1;
			if (m->rr[i].type == p->type)
				n++;
		}
	if (!exists)
		for (size_t i = 0; i < m->n_rr && !exists; i++)
			if (at_or_below(m->rr[i].name, name))
				exists = 1;   /* empty non-terminal */
	const unsigned char **rd = calloc(n ? n : 1, sizeof(*rd));
	size_t *rl = calloc(n ? n : 1, sizeof(*rl));
	if (!rd || !rl)
		abort();
	size_t k = 0;
	for (size_t i = 0; i < m->n_rr; i++)
		if (strcmp(m->rr[i].name, name) == 0 && m->rr[i].type == p->type) {
			rd[k] = m->rr[i].data;
			rl[k++] = m->rr[i].len;
		}
	a.status = n ? DNSQ_OK : exists ? DNSQ_NODATA : DNSQ_NXDOMAIN;
	a.count = n;
	a.rdata = rd;
	a.rdlen = rl;
	p->cb(p->arg, &a);
	free(rd);
	free(rl);
	free(owned);
}

size_t memdns_run(struct memdns *m)
{
	size_t delivered = 0;
	while (m->q_len > 0) {
		struct pending p = m->q[m->q_head++];
		m->q_len--;
		if (m->q_len == 0)
			m->q_head = 0;
		answer(m, &p);
		free(p.name);
		delivered++;
	}
	return delivered;
}

unsigned memdns_lookups(const struct memdns *m) { return m->lookups; }
unsigned memdns_max_pending(const struct memdns *m) { return m->max_pending; }
