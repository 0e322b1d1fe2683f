/* Internals shared by the files of checks/dkim (not for callers). */
#ifndef ALIGND_DKV_INT_H
#define ALIGND_DKV_INT_H

#include <stddef.h>
#include <stdint.h>

#include "checks/auth.h"
#include "checks/dnsq.h"
#include "checks/dkim/dkv.h"

struct dkim_lib;     /* libopendkim's DKIM_LIB */
struct dkk_cache;
struct msg;

struct dkv_lib {
	enum dkv_engine engine;
	struct dkim_lib *dl;      /* libopendkim: the engine, or the oracle */
	struct dkk_cache *keys;   /* decoded keys (native engine) */
	unsigned max_sigs;
	unsigned min_bits;
	unsigned drift;
	uint64_t fixed_time;
	int ed25519;
};

struct dkv_key {
	char *qname;              /* lower case, no final dot */
	enum dnsq_status status;
	enum dnsq_sec sec;
	char *txt;                /* the TXT text when status == DNSQ_OK, else NULL */
	uint32_t ttl;             /* of the answer; 0 unknown */
};

struct dkv_keyset {
	struct dkv_key *keys;
	size_t n, cap;
};

int dkv_taglist(const char *s, size_t len,
                int (*fn)(void *arg, const char *tag, size_t tlen,
                          const char *val, size_t vlen),
                void *arg);
void dkv_lower(char *s);
/* A d= or s= value usable in a key query name (letters, digits, '-', '_',
 * non-empty labels of at most 63 bytes): 1 or 0. Shared with ARC. */
int dkv_usable_name(const char *s, size_t len);
/* What libopendkim's tag-list parser takes, so that both engines refuse
 * the same lists: a tag name starts with a letter or digit and has no
 * whitespace in it (RFC 6376 3.2 wants ALPHA *ALNUMPUNC; a looser unknown
 * name is ignored either way), and the text is ASCII, printable or
 * whitespace. 1 or 0. */
int dkv_tag_name_ok(const char *t, size_t n);
int dkv_text_ok(const char *s, size_t n);
/* Whitespace inside a tag value is not part of it (RFC 6376 3.2 allows
 * FWS in b=, bh=, h= ...; libopendkim drops it everywhere): squeezed out
 * in place, inside the value's own span; returns the new length. */
size_t dkv_squeeze_ws(char *v, size_t len);
/* Index of a DKIM-Signature tag whose repetition makes the tag-list
 * invalid (RFC 6376 3.2: v a b c d h i l q s t x, and bh), or -1 for a
 * tag the engines ignore. */
int dkv_sig_tag_index(const char *tag, size_t tlen);
/* Does the (unfolded) DKIM-Signature value name one of those tags twice?
 * Both engines and the key listing judge it before anything else in the
 * list, because which of the two values counts is undefined. 1 or 0. */
int dkv_sig_has_dup_tag(const char *v, size_t len);
#define DKV_SIG_DUP_REASON "a tag twice in the tag-list (RFC 6376 3.2)"

/* shared by both engines (dkv.c) */
int dkv_rank(enum auth_res r);
void dkv_set_res(struct dkv_sig *o, enum auth_res r, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
struct dkv_key;
/* RFC 6376 6.1.2: 1 when the key lookup for qname gave a record; else 0
 * with o's result and reason set: permerror when qname is empty (s= and
 * d= make no usable name), temperror when it was not looked up, none,
 * bogus or failed as the answer says. */
int dkv_judge_lookup(struct dkv_sig *o, const struct dkv_key *kr,
                     const char *qname);
/* o passes: "signature verified", with t=y and l= noted */
void dkv_set_pass(struct dkv_sig *o);
void dkv_trace_sig(struct trace *t, size_t idx, const struct dkv_sig *o);
int dkv_refuse_all(struct dkv_lib *l, const struct msg *m,
                   struct dkv_result *res, struct trace *t, const char *why);
/* h= lists From (FWS around names allowed) */
int dkv_lists_from(const char *h, size_t len);
/* the native engine (dkv_native.c) */
int dkv_native_verify(struct dkv_lib *l, const char *msg, size_t len,
                      const struct dkv_keyset *ks, struct dkv_result *res,
                      struct trace *t);

const struct dkv_key *dkv_keyset_find(const struct dkv_keyset *ks,
                                      const char *qname);

#endif
