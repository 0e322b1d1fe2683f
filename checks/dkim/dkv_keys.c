/* Loop-thread side of DKIM: list the signatures of a parsed header section
 * with the key records they need, and keep the DNS answers for them in a
 * key set that a worker later reads (the hand-off to the worker orders the
 * writes before the reads, so no lock is needed). Owns the key set. */
#include "checks/dkim/dkv.h"
#include "checks/dkim/dkv_int.h"
#include "checks/msg.h"
#include "common/text.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* RFC 6376 3.2 tag-list: tag=value pairs separated by ';', with FWS around
 * tags and values. Calls fn for each pair; value whitespace is kept. */
int dkv_taglist(const char *s, size_t len,
                int (*fn)(void *arg, const char *tag, size_t tlen,
                          const char *val, size_t vlen),
                void *arg)
{
	size_t off = 0;
	while (off < len) {
		size_t end = off;
		while (end < len && s[end] != ';')
			end++;
		const char *spec = s + off;
		size_t slen = end - off;
		text_trim(&spec, &slen);
		if (slen > 0) {
			const char *eq = memchr(spec, '=', slen);
			if (eq == NULL)
				return -1;
			const char *tag = spec, *val = eq + 1;
			size_t tlen = (size_t)(eq - spec);
			size_t vlen = slen - tlen - 1;
			text_trim(&tag, &tlen);
			text_trim(&val, &vlen);
			if (tlen == 0)
				return -1;
			int r = fn(arg, tag, tlen, val, vlen);
			if (r != 0)
				return r;
		}
		off = end + 1;
	}
	return 0;
}

int dkv_sig_tag_index(const char *tag, size_t tlen)
{
	static const char one[] = "vabcdhilqstx";
	if (tlen == 1) {
		const char *p = memchr(one, tag[0], sizeof one - 1);
		return p ? (int)(p - one) : -1;
	}
	if (tlen == 2 && tag[0] == 'b' && tag[1] == 'h')
		return (int)(sizeof one - 1);
	return -1;
}

static int dup_tag(void *arg, const char *tag, size_t tlen, const char *val, size_t vlen)
{
	unsigned *seen = arg;
	(void)val;
	(void)vlen;
	int i = dkv_sig_tag_index(tag, tlen);
	if (i < 0)
		return 0;
	if (*seen & (1u << i))
		return 1;          /* stops the walk: the answer is known */
	*seen |= 1u << i;
	return 0;
}

int dkv_sig_has_dup_tag(const char *v, size_t len)
{
	unsigned seen = 0;
	return dkv_taglist(v, len, dup_tag, &seen) == 1;
}

int dkv_tag_name_ok(const char *t, size_t n)
{
	if (n == 0 || !isalnum((unsigned char)t[0]))
		return 0;
	for (size_t k = 1; k < n; k++)
		if (isspace((unsigned char)t[k]))
			return 0;
	return 1;
}

size_t dkv_squeeze_ws(char *v, size_t len)
{
	size_t wl = 0;
	for (size_t k = 0; k < len; k++)
		if (v[k] != ' ' && v[k] != '\t' && v[k] != '\r' && v[k] != '\n')
			v[wl++] = v[k];
	return wl;
}

int dkv_text_ok(const char *s, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		unsigned char c = (unsigned char)s[k];
		if (c >= 0x80 || (c < 0x20 && c != '\t' && c != '\r' && c != '\n') || c == 0x7f)
			return 0;
	}
	return 1;
}

/* A DNS name we are willing to build a query from: letters, digits, '-',
 * '_' and dots, no empty label, labels of at most 63 bytes. */
int dkv_usable_name(const char *s, size_t len)
{
	size_t label = 0;
	if (len == 0 || s[0] == '.' || s[len - 1] == '.')
		return 0;
	for (size_t k = 0; k < len; k++) {
		unsigned char c = (unsigned char)s[k];
		if (c == '.') {
			if (label == 0)
				return 0;
			label = 0;
			continue;
		}
		if (!isalnum(c) && c != '-' && c != '_')
			return 0;
		if (++label > 63)
			return 0;
	}
	return 1;
}

struct ref_tags {
	const char *d, *s, *a;
	size_t dl, sl, al;
};

static int ref_tag(void *arg, const char *tag, size_t tlen,
                   const char *val, size_t vlen)
{
	struct ref_tags *rt = arg;
	/* values read as the engines read them (the list's own copy) */
	vlen = dkv_squeeze_ws((char *)val, vlen);
	/* RFC 6376 3.2: tag names are case-sensitive */
	if (tlen == 1 && tag[0] == 'd') {
		rt->d = val; rt->dl = vlen;
	} else if (tlen == 1 && tag[0] == 's') {
		rt->s = val; rt->sl = vlen;
	} else if (tlen == 1 && tag[0] == 'a') {
		rt->a = val; rt->al = vlen;
	}
	return 0;
}

void dkv_lower(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

size_t dkv_list(const struct msg *m, struct dkv_sigref *refs, size_t max,
                size_t *total_r)
{
	size_t total = msg_count(m, "DKIM-Signature"), n = 0;
	if (total_r)
		*total_r = total;
	for (size_t k = 0; k < total && n < max; k++) {
		const struct msg_field *f = msg_get(m, "DKIM-Signature", k);
		struct dkv_sigref *r = &refs[n++];
		memset(r, 0, sizeof *r);
		if (f == NULL)
			continue;
		char *v = malloc(f->value_len + 1);
		if (v == NULL)
			continue;   /* the slot stays, with nothing to look up */
		size_t vl = msg_unfold(f->value, f->value_len, v, f->value_len + 1);
		struct ref_tags rt = { 0 };
		int dup = 0;
		if (vl != (size_t)-1) {
			dup = dkv_sig_has_dup_tag(v, vl);
			(void)dkv_taglist(v, vl, ref_tag, &rt);   /* squeezes values: last */
		}
		if (rt.d)
			text_printable(r->d, sizeof r->d, rt.d, rt.dl);
		if (rt.s)
			text_printable(r->s, sizeof r->s, rt.s, rt.sl);
		if (rt.a)
			text_printable(r->a, sizeof r->a, rt.a, rt.al);
		/* RFC 6376 3.6.2.1: the key lives at <s>._domainkey.<d>; a list
		 * with a tag twice names no key (3.2: it is invalid as a whole) */
		if (!dup && rt.d && rt.s && dkv_usable_name(rt.d, rt.dl) &&
		    dkv_usable_name(rt.s, rt.sl) &&
		    rt.sl + rt.dl + sizeof "._domainkey." - 1 <= LIM_DNS_MAX_NAME - 2) {
			memcpy(r->qname, rt.s, rt.sl);
			memcpy(r->qname + rt.sl, "._domainkey.", 12);
			memcpy(r->qname + rt.sl + 12, rt.d, rt.dl);
			r->qname[rt.sl + 12 + rt.dl] = '\0';
			dkv_lower(r->qname);
			for (size_t j = 0; j + 1 < n; j++)
				if (strcmp(refs[j].qname, r->qname) == 0) {
					r->dup = 1;
					break;
				}
		}
		free(v);
	}
	return n;
}

/* ---- key set ---- */

struct dkv_keyset *dkv_keyset_new(void)
{
	return calloc(1, sizeof(struct dkv_keyset));
}

void dkv_keyset_free(struct dkv_keyset **ksp)
{
	struct dkv_keyset *ks = *ksp;
	if (ks == NULL)
		return;
	for (size_t k = 0; k < ks->n; k++) {
		free(ks->keys[k].qname);
		free(ks->keys[k].txt);
	}
	free(ks->keys);
	free(ks);
	*ksp = NULL;
}

size_t dkv_keyset_count(const struct dkv_keyset *ks)
{
	return ks ? ks->n : 0;
}

static int norm_name(const char *in, char *out, size_t cap)
{
	size_t len = strlen(in);
	if (len > 0 && in[len - 1] == '.')
		len--;
	if (len == 0 || len >= cap)
		return -1;
	memcpy(out, in, len);
	out[len] = '\0';
	dkv_lower(out);
	return 0;
}

const struct dkv_key *dkv_keyset_find(const struct dkv_keyset *ks,
                                      const char *qname)
{
	char nm[DKV_NAME_MAX];
	if (ks == NULL || norm_name(qname, nm, sizeof nm) != 0)
		return NULL;
	for (size_t k = 0; k < ks->n; k++)
		if (strcmp(ks->keys[k].qname, nm) == 0)
			return &ks->keys[k];
	return NULL;
}

int dkv_keyset_has(const struct dkv_keyset *ks, const char *qname)
{
	return dkv_keyset_find(ks, qname) != NULL;
}

int dkv_keyset_put_text(struct dkv_keyset *ks, const char *qname,
                        enum dnsq_status st, enum dnsq_sec sec,
                        const char *txt)
{
	char nm[DKV_NAME_MAX];
	if (ks == NULL || qname == NULL || norm_name(qname, nm, sizeof nm) != 0)
		return -EINVAL;
	if (st == DNSQ_OK && txt == NULL)
		return -EINVAL;
	char *name = strdup(nm);
	char *copy = st == DNSQ_OK ? strdup(txt) : NULL;
	if (name == NULL || (st == DNSQ_OK && copy == NULL)) {
		free(name);
		free(copy);
		return -ENOMEM;
	}
	struct dkv_key *k = (struct dkv_key *)dkv_keyset_find(ks, nm);
	if (k == NULL) {
		if (ks->n == ks->cap) {
			size_t nc = ks->cap ? ks->cap * 2 : 8;
			struct dkv_key *nk = realloc(ks->keys, nc * sizeof *nk);
			if (nk == NULL) {
				free(name);
				free(copy);
				return -ENOMEM;
			}
			ks->keys = nk;
			ks->cap = nc;
		}
		k = &ks->keys[ks->n++];
	} else {
		free(k->qname);
		free(k->txt);
	}
	k->qname = name;
	k->txt = copy;
	k->ttl = 0;
	k->status = st;
	/* RFC 6376 6.1.2 and DESIGN.md: bogus data is never used */
	k->sec = st == DNSQ_BOGUS ? DNSQ_SEC_BOGUS : sec;
	if (sec == DNSQ_SEC_BOGUS && st == DNSQ_OK) {
		free(k->txt);
		k->txt = NULL;
		k->status = DNSQ_BOGUS;
	}
	return 0;
}

/* Does this TXT text carry a p= tag (a key, possibly revoked)? */
static int has_p_tag(void *arg, const char *tag, size_t tlen,
                     const char *val, size_t vlen)
{
	(void)val; (void)vlen;
	if (tlen == 1 && tag[0] == 'p')
		*(int *)arg = 1;
	return 0;
}

int dkv_keyset_put(struct dkv_keyset *ks, const char *qname,
                   const struct dnsq_answer *a)
{
	if (a == NULL)
		return -EINVAL;
	if (a->status != DNSQ_OK || a->count == 0) {
		enum dnsq_status st = a->status == DNSQ_OK ? DNSQ_NODATA : a->status;
		return dkv_keyset_put_text(ks, qname, st, a->sec, NULL);
	}
	char *buf = malloc(LIM_DNS_MAX_ANSWER + 1);
	if (buf == NULL)
		return -ENOMEM;
	size_t chosen = (size_t)-1;
	for (size_t i = 0; i < a->count && chosen == (size_t)-1; i++) {
		size_t len;
		int p = 0;
		if (dnsq_txt(a, i, buf, LIM_DNS_MAX_ANSWER + 1, &len) != 0)
			continue;
		(void)dkv_taglist(buf, len, has_p_tag, &p);
		if (p)
			chosen = i;
	}
	if (chosen == (size_t)-1)
		chosen = 0;
	int r;
	if (dnsq_txt(a, chosen, buf, LIM_DNS_MAX_ANSWER + 1, NULL) != 0)
		/* malformed or oversized rdata: give libopendkim an empty record,
		 * which it refuses as a key syntax error (a permanent failure) */
		r = dkv_keyset_put_text(ks, qname, DNSQ_OK, a->sec, "");
	else
		r = dkv_keyset_put_text(ks, qname, DNSQ_OK, a->sec, buf);
	free(buf);
	if (r == 0) {
		struct dkv_key *k = (struct dkv_key *)dkv_keyset_find(ks, qname);
		if (k != NULL)
			k->ttl = a->ttl;
	}
	return r;
}
