/* Internals shared by the files of checks/arc (not for callers). */
#ifndef ALIGND_ARC_INT_H
#define ALIGND_ARC_INT_H

#include <stddef.h>
#include <stdint.h>

#include "checks/arc/arc.h"
#include "checks/msg.h"
#include "checks/dkim/dkc.h"

enum arc_kind { ARC_K_AAR = 0, ARC_K_AMS, ARC_K_AS };

struct arc_val {
	const char *v;      /* points into arc_tags.buf; NULL when absent */
	size_t len;
};

/* The tags of one ARC-Seal or ARC-Message-Signature (RFC 8617 4.1.2,
 * 4.1.3: DKIM tag-list syntax). */
struct arc_tags {
	char *buf;          /* the unfolded value, owned */
	struct arc_val i, a, b, bh, c, cv, d, h, l, s, t, x;
	int bad;            /* not a tag-list, or a tag twice (RFC 6376 3.2) */
};

int arc_tags_parse(const struct msg_field *f, struct arc_tags *tg);
void arc_tags_free(struct arc_tags *tg);

/* The ARC fields of a message grouped by instance (RFC 8617 5.2 steps 1-3). */
struct arc_slot {
	const struct msg_field *aar, *ams, *as;   /* first of each */
	unsigned n_aar, n_ams, n_as;
	char cv[8];                               /* cv= of the first AS */
};

struct arc_chain {
	size_t n_fields;
	unsigned n;                 /* highest valid instance, <= ARC_MAX_SETS */
	struct arc_slot slot[ARC_MAX_SETS + 1];   /* slot[i] for instance i; slot[0] unused */
	/* AUTH_NONE (no ARC field), AUTH_FAIL (structure invalid), or
	 * AUTH_PASS: structure valid, the signatures still to be checked */
	enum auth_res state;
	char reason[ARC_REASON_MAX];
};

/* 0, or -ENOMEM. */
int arc_chain_collect(const struct msg *m, struct arc_chain *c);
enum arc_kind arc_field_kind(const struct msg_field *f, int *is_arc_r);
/* "i=N;" at the start of an ARC-Authentication-Results value: N, with
 * *rest_r and *rest_len_r set to the text after the ';' (unfolded in buf).
 * 0 when there is no valid instance. */
unsigned arc_aar_instance(const char *v, size_t len, char *buf, size_t cap,
                          const char **rest_r, size_t *rest_len_r);

/* Canonicalisation, hashing and base64 are DKIM's (checks/dkim/dkc.h):
 * RFC 8617 4.1.2 and 4.1.3 use RFC 6376's algorithms. */

#endif
