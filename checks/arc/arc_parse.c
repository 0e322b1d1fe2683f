/* ARC field parsing and the structural rules of RFC 8617 5.2 steps 1-3,
 * shared by arc_list() on the loop thread and arc_verify() on a worker.
 * Pure functions over a parsed, read-only struct msg. */
#include "checks/arc/arc_int.h"
#include "checks/dkim/dkv_int.h"
#include "common/text.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum arc_kind arc_field_kind(const struct msg_field *f, int *is_arc_r)
{
	*is_arc_r = 1;
	if (text_ieq(f->name, f->name_len, "ARC-Seal"))
		return ARC_K_AS;
	if (text_ieq(f->name, f->name_len, "ARC-Message-Signature"))
		return ARC_K_AMS;
	if (text_ieq(f->name, f->name_len, "ARC-Authentication-Results"))
		return ARC_K_AAR;
	*is_arc_r = 0;
	return ARC_K_AAR;
}

static int one_tag(void *arg, const char *tag, size_t tlen, const char *val,
                   size_t vlen)
{
	struct arc_tags *tg = arg;
	struct arc_val *slot = NULL;
	/* RFC 6376 3.2: tag names are case-sensitive; unknown tags are ignored */
	if (tlen == 1) {
		switch (tag[0]) {
		case 'i': slot = &tg->i; break;
		case 'a': slot = &tg->a; break;
		case 'b': slot = &tg->b; break;
		case 'c': slot = &tg->c; break;
		case 'd': slot = &tg->d; break;
		case 'h': slot = &tg->h; break;
		case 'l': slot = &tg->l; break;
		case 's': slot = &tg->s; break;
		case 't': slot = &tg->t; break;
		case 'x': slot = &tg->x; break;
		default: break;
		}
	} else if (tlen == 2 && tag[0] == 'b' && tag[1] == 'h') {
		slot = &tg->bh;
	} else if (tlen == 2 && tag[0] == 'c' && tag[1] == 'v') {
		slot = &tg->cv;
	}
	for (size_t k = 0; k < tlen; k++)
		if (!isalnum((unsigned char)tag[k]) && tag[k] != '_')
			return -1;
	if (slot == NULL)
		return 0;
	if (slot->v != NULL)
		return -1;    /* RFC 6376 3.2: a duplicated tag makes the list invalid */
	slot->v = val;
	slot->len = vlen;
	return 0;
}

int arc_tags_parse(const struct msg_field *f, struct arc_tags *tg)
{
	memset(tg, 0, sizeof *tg);
	tg->buf = malloc(f->value_len + 1);
	if (tg->buf == NULL)
		return -ENOMEM;
	size_t n = msg_unfold(f->value, f->value_len, tg->buf, f->value_len + 1);
	if (n == (size_t)-1 || dkv_taglist(tg->buf, n, one_tag, tg) != 0)
		tg->bad = 1;
	return 0;
}

void arc_tags_free(struct arc_tags *tg)
{
	free(tg->buf);
	tg->buf = NULL;
}

/* instance number 1..ARC_MAX_SETS+1 (the latter meaning "too big"), 0 when
 * not a number */
static unsigned instance_of(const char *v, size_t len)
{
	uint64_t n;
	if (v == NULL)
		return 0;
	/* leading zeros are not in RFC 8617 4.2.1's grammar, but harmless */
	if (text_u64(v, len, UINT64_MAX, &n) != 0 || n == 0)
		return 0;
	return n > ARC_MAX_SETS ? ARC_MAX_SETS + 1 : (unsigned)n;
}

unsigned arc_aar_instance(const char *v, size_t len, char *buf, size_t cap,
                          const char **rest_r, size_t *rest_len_r)
{
	size_t n = msg_unfold(v, len, buf, cap);
	if (n == (size_t)-1)
		return 0;
	/* RFC 8617 4.1.1: AAR = "i=" instance ";" authres-payload; a comment
	 * before it is not something any sealer writes, so not accepted */
	size_t p = 0;
	if (n < 2 || buf[0] != 'i')
		return 0;
	p = 1;
	while (p < n && (buf[p] == ' ' || buf[p] == '\t'))
		p++;
	if (p >= n || buf[p] != '=')
		return 0;
	p++;
	while (p < n && (buf[p] == ' ' || buf[p] == '\t'))
		p++;
	size_t d0 = p;
	while (p < n && buf[p] >= '0' && buf[p] <= '9')
		p++;
	unsigned inst = instance_of(buf + d0, p - d0);
	while (p < n && (buf[p] == ' ' || buf[p] == '\t'))
		p++;
	if (inst == 0 || p >= n || buf[p] != ';')
		return 0;
	p++;
	if (rest_r) {
		const char *r = buf + p;
		size_t rl = n - p;
		text_trim(&r, &rl);
		*rest_r = r;
		*rest_len_r = rl;
	}
	return inst;
}

static void fail(struct arc_chain *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void fail(struct arc_chain *c, const char *fmt, ...)
{
	if (c->state == AUTH_FAIL)
		return;             /* keep the first reason */
	c->state = AUTH_FAIL;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->reason, sizeof c->reason, fmt, ap);
	va_end(ap);
}

static const char *const kind_name[] = {
	"ARC-Authentication-Results", "ARC-Message-Signature", "ARC-Seal" };

int arc_chain_collect(const struct msg *m, struct arc_chain *c)
{
	memset(c, 0, sizeof *c);
	c->state = AUTH_PASS;
	int too_many = 0, bad_inst = -1;
	char *tmp = NULL;
	size_t tmpcap = 0;
	for (size_t k = 0; k < m->n_fields; k++) {
		const struct msg_field *f = &m->fields[k];
		int is_arc;
		enum arc_kind kind = arc_field_kind(f, &is_arc);
		if (!is_arc)
			continue;
		c->n_fields++;
		unsigned inst;
		char cv[8] = "";
		if (kind == ARC_K_AAR) {
			if (tmpcap < f->value_len + 1) {
				free(tmp);
				tmpcap = f->value_len + 1;
				tmp = malloc(tmpcap);
				if (tmp == NULL) {
					tmpcap = 0;
					return -ENOMEM;
				}
			}
			inst = arc_aar_instance(f->value, f->value_len, tmp, tmpcap,
			                        NULL, NULL);
		} else {
			struct arc_tags tg;
			if (arc_tags_parse(f, &tg) != 0) {
				free(tmp);
				return -ENOMEM;
			}
			inst = tg.bad ? 0 : instance_of(tg.i.v, tg.i.len);
			if (kind == ARC_K_AS && tg.cv.v)
				text_printable(cv, sizeof cv, tg.cv.v, tg.cv.len);
			arc_tags_free(&tg);
		}
		if (inst == 0) {
			if (bad_inst < 0)
				bad_inst = (int)kind;
			continue;
		}
		if (inst > ARC_MAX_SETS) {
			too_many = 1;
			continue;
		}
		struct arc_slot *s = &c->slot[inst];
		if (inst > c->n)
			c->n = inst;
		switch (kind) {
		case ARC_K_AAR:
			if (s->n_aar++ == 0)
				s->aar = f;
			break;
		case ARC_K_AMS:
			if (s->n_ams++ == 0)
				s->ams = f;
			break;
		case ARC_K_AS:
			if (s->n_as++ == 0) {
				s->as = f;
				memcpy(s->cv, cv, sizeof cv);
				for (char *p = s->cv; *p; p++)
					*p = (char)tolower((unsigned char)*p);
			}
			break;
		}
	}
	free(tmp);

	if (c->n_fields == 0) {
		c->state = AUTH_NONE;
		snprintf(c->reason, sizeof c->reason, "no ARC header fields");
		return 0;
	}
	/* step 1: at most 50 sets */
	if (too_many)
		fail(c, "more than %u ARC sets (RFC 8617 5.2 step 1)",
		     ARC_MAX_SETS);
	if (bad_inst >= 0 && c->state != AUTH_FAIL) {
		c->state = AUTH_FAIL;
		snprintf(c->reason, sizeof c->reason,
		         "an %s field has no valid i= (RFC 8617 4.2.1)",
		         kind_name[bad_inst]);
	}
	/* step 2: the newest seal says the chain failed */
	if (c->n > 0 && strcmp(c->slot[c->n].cv, "fail") == 0)
		fail(c, "ARC-Seal i=%u has cv=fail (RFC 8617 5.2 step 2)",
		     c->n);
	/* step 3: exactly one of each field per instance, 1..N without gaps,
	 * cv=none at 1 and cv=pass above */
	for (unsigned i = 1; i <= c->n; i++) {
		const struct arc_slot *s = &c->slot[i];
		if (s->n_aar + s->n_ams + s->n_as == 0)
			fail(c, "instance %u is missing: the instances are not 1..%u "
			     "(RFC 8617 5.2 step 3)", i, c->n);
		else if (s->n_aar > 1 || s->n_ams > 1 || s->n_as > 1)
			fail(c, "instance %u appears more than once (RFC 8617 5.2 "
			     "step 3)", i);
		else if (s->n_aar == 0)
			fail(c, "instance %u has no ARC-Authentication-Results "
			     "(RFC 8617 5.2 step 3)", i);
		else if (s->n_ams == 0)
			fail(c, "instance %u has no ARC-Message-Signature "
			     "(RFC 8617 5.2 step 3)", i);
		else if (s->n_as == 0)
			fail(c, "instance %u has no ARC-Seal (RFC 8617 5.2 step 3)",
			     i);
		else if (strcmp(s->cv, "fail") == 0)
			fail(c, "ARC-Seal i=%u has cv=fail (RFC 8617 5.2 step 3)",
			     i);
		else if (i == 1 && strcmp(s->cv, "none") != 0)
			fail(c, "ARC-Seal i=1 must have cv=none (RFC 8617 5.2 step 3)");
		else if (i > 1 && strcmp(s->cv, "pass") != 0)
			fail(c, "ARC-Seal i=%u must have cv=pass (RFC 8617 5.2 step 3)",
			     i);
	}
	return 0;
}

/* ---- loop thread ---- */

static void fill_ref(struct arc_ref *r, const struct arc_tags *tg, int seal)
{
	memset(r, 0, sizeof *r);
	r->seal = seal;
	if (tg->bad)
		return;
	unsigned inst = instance_of(tg->i.v, tg->i.len);
	r->instance = inst <= ARC_MAX_SETS ? inst : 0;
	if (seal && tg->cv.v)
		text_printable(r->cv, sizeof r->cv, tg->cv.v, tg->cv.len);
	if (tg->d.v)
		text_printable(r->d, sizeof r->d, tg->d.v, tg->d.len);
	if (tg->s.v)
		text_printable(r->s, sizeof r->s, tg->s.v, tg->s.len);
	if (tg->a.v)
		text_printable(r->a, sizeof r->a, tg->a.v, tg->a.len);
	/* RFC 8617 4.1.2/4.1.3: keys are DKIM keys, at <s>._domainkey.<d> */
	if (tg->d.v && tg->s.v && dkv_usable_name(tg->d.v, tg->d.len) &&
	    dkv_usable_name(tg->s.v, tg->s.len) &&
	    tg->s.len + tg->d.len + sizeof "._domainkey." - 1 <= LIM_DNS_MAX_NAME - 2) {
		memcpy(r->qname, tg->s.v, tg->s.len);
		memcpy(r->qname + tg->s.len, "._domainkey.", 12);
		memcpy(r->qname + tg->s.len + 12, tg->d.v, tg->d.len);
		r->qname[tg->s.len + 12 + tg->d.len] = '\0';
		dkv_lower(r->qname);
	}
}

size_t arc_list(const struct msg *m, struct arc_ref *refs, size_t max,
                struct arc_listing *sum_r)
{
	struct arc_chain *c = malloc(sizeof *c);
	struct arc_listing sum;
	memset(&sum, 0, sizeof sum);
	size_t n = 0;
	if (c == NULL || arc_chain_collect(m, c) != 0) {
		/* no memory: list nothing; arc_verify will say temperror */
		snprintf(sum.reason, sizeof sum.reason, "out of memory");
		free(c);
		if (sum_r)
			*sum_r = sum;
		return 0;
	}
	sum.n_fields = c->n_fields;
	sum.n_sets = c->n;
	sum.decided = c->state != AUTH_PASS;
	sum.result = c->state == AUTH_PASS ? AUTH_NONE : c->state;
	snprintf(sum.reason, sizeof sum.reason, "%s",
	         c->state == AUTH_PASS ? "signatures to check" : c->reason);
	for (size_t k = 0; k < m->n_fields && n < max; k++) {
		const struct msg_field *f = &m->fields[k];
		int is_arc;
		enum arc_kind kind = arc_field_kind(f, &is_arc);
		if (!is_arc || kind == ARC_K_AAR)
			continue;
		struct arc_tags tg;
		if (arc_tags_parse(f, &tg) != 0)
			break;
		struct arc_ref *r = &refs[n++];
		fill_ref(r, &tg, kind == ARC_K_AS);
		arc_tags_free(&tg);
		if (r->qname[0])
			for (size_t j = 0; j + 1 < n; j++)
				if (strcmp(refs[j].qname, r->qname) == 0) {
					r->dup = 1;
					break;
				}
	}
	free(c);
	if (sum_r)
		*sum_r = sum;
	return n;
}
