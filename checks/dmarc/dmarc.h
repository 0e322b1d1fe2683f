/* DMARC for alignd: author domain, policy record parser, asynchronous
 * policy discovery (RFC 9989 DNS tree walk, or RFC 7489 with the public
 * suffix list), identifier alignment and the disposition. Loop thread only
 * for evaluations; dmarc_author() and dmarc_record_parse() are pure. */
#ifndef ALIGND_DMARC_H
#define ALIGND_DMARC_H

#include <stddef.h>
#include <stdint.h>

#include "checks/auth.h"
#include "checks/dnsq.h"
#include "checks/msg.h"
#include "common/limits.h"
#include "common/trace.h"

#define DMARC_DOMAIN_MAX 256   /* a domain name in text, NUL included */

/* ------------------------------------------------------------------ */
/* Author domain (RFC 5322 3.6.2 From; RFC 9989 5.3.1 and 11.5)         */

enum dmarc_author_status {
	DMARC_AUTHOR_OK = 0,        /* one From field; every mailbox in one domain */
	DMARC_AUTHOR_MULTI_DOMAIN,  /* one From field, mailboxes in several domains:
	                               each is evaluated, the strictest failing policy wins */
	DMARC_AUTHOR_MULTI_FIELD,   /* several From fields (invalid RFC 5322): each domain
	                               is evaluated as for MULTI_DOMAIN */
	DMARC_AUTHOR_NO_FROM,       /* no From field */
	DMARC_AUTHOR_SYNTAX,        /* a From field that does not parse */
	DMARC_AUTHOR_NO_DOMAIN,     /* no mailbox, or one whose domain is empty, a
	                               literal, or not a valid (IDNA) host name */
	DMARC_AUTHOR_TOO_MANY,      /* more than LIM_DMARC_AUTHOR_DOMAINS domains */
	DMARC_AUTHOR_NO_MEMORY,     /* not judged: no memory to unfold the field */
};

struct dmarc_author {
	enum dmarc_author_status status;
	size_t n_fields;            /* From fields seen */
	size_t n_mailboxes;         /* mailboxes parsed */
	size_t n_domains;           /* distinct domains in domains[] */
	/* lower-case A-label form, no final dot */
	char domains[LIM_DMARC_AUTHOR_DOMAINS][DMARC_DOMAIN_MAX];
	/* display name of the first mailbox, RFC 2047 decoded, printable */
	char display[128];
	const char *why;            /* static text for the trace when not OK */
};

/* Extracts the author domain(s) from a parsed header section. Always fills
 * *a; returns 0 when at least one domain can be evaluated (OK,
 * MULTI_DOMAIN, MULTI_FIELD), -1 otherwise (a->status says why). */
int dmarc_author(const struct msg *m, struct dmarc_author *a);

/* Parses one From field value (raw, folding allowed). Same contract. */
int dmarc_author_value(const char *v, size_t len, struct dmarc_author *a);

/* Normalises a domain name for DMARC: lower case, final dot removed,
 * U-labels converted to A-labels (RFC 9989 5.3.1, libidn2 IDNA2008
 * non-transitional), LDH labels of 1..63 octets, at most 253 octets.
 * Underscores are tolerated (seen in real d= values). 0 or -1. */
int dmarc_domain_norm(const char *in, size_t len, char out[DMARC_DOMAIN_MAX]);

/* ------------------------------------------------------------------ */
/* Policy record (RFC 9989 4.7, 4.8; RFC 7489 6.3)                      */

enum dmarc_policy {
	DMARC_POLICY_UNSET = 0,     /* tag absent */
	DMARC_POLICY_NONE,
	DMARC_POLICY_QUARANTINE,
	DMARC_POLICY_REJECT,
	DMARC_POLICY_INVALID,       /* tag present with a bad value */
};

enum dmarc_psd { DMARC_PSD_U = 0, DMARC_PSD_Y, DMARC_PSD_N };

enum dmarc_rec_status {
	DMARC_REC_NOT_DMARC = -1,   /* does not start with v=DMARC1: discard */
	DMARC_REC_VALID = 0,        /* usable (possibly with p=none forced) */
	DMARC_REC_UNUSABLE = 1,     /* a DMARC record, but no DMARC processing may
	                               follow from it (bad p/sp/np and no valid rua,
	                               or a duplicated tag, RFC 6376 3.2) */
};

struct dmarc_record {
	enum dmarc_rec_status status;
	enum dmarc_policy p, sp, np;    /* effective values (see forced_none) */
	enum dmarc_psd psd;
	int t;                          /* t=y */
	int adkim_strict, aspf_strict;
	unsigned pct;                   /* 0..100, default 100 (RFC 7489 only) */
	int has_pct;
	unsigned rua_valid, ruf_valid;  /* syntactically valid report URIs */
	int forced_none;                /* bad p/sp/np with valid rua: p=none (9989 4.10.1) */
	int p_absent;                   /* no p tag at all */
	unsigned unknown_tags, bad_tags;/* ignored tags, tags with syntax errors */
	char fo[16];                    /* raw fo value when valid, else "" */
	const char *why;                /* static text when not VALID */
};

enum dmarc_mode { DMARC_MODE_RFC9989 = 0, DMARC_MODE_RFC7489 };

/* Parses one TXT record (already concatenated). `mode` decides what a
 * missing p means (RFC 9989 4.7: p=none; RFC 7489 6.6.3: the rua rule).
 * Returns r->status. */
int dmarc_record_parse(const char *txt, size_t len, enum dmarc_mode mode,
                       struct dmarc_record *r);

const char *dmarc_policy_name(enum dmarc_policy p);

/* RFC 9991 / RFC 9989 4.8 fo=: does this outcome ask for a failure report?
 * fo is the record's raw value ("" or NULL: "0"). 0: neither DKIM nor SPF
 * gave an aligned pass; 1: one of them did not; d: a DKIM signature failed
 * to verify, aligned or not; s: SPF failed, aligned or not. Options are
 * colon-separated and any of them suffices. 1 or 0. */
int dmarc_fo_wants(const char *fo, int dkim_aligned, int spf_aligned, int dkim_failed,
                   int spf_failed);

/* ------------------------------------------------------------------ */
/* Public suffix list for RFC 7489 mode                                 */

struct dmarc_psl;
/* Loads a PSL file (.dat or .dafsa); NULL path: the newest of libpsl's
 * built-in list and the distribution's file (Debian: package publicsuffix).
 * Read-only once loaded: any thread may share it. NULL on failure. */
struct dmarc_psl *dmarc_psl_open(const char *path);
void dmarc_psl_close(struct dmarc_psl **p);
/* Organizational domain per RFC 7489 3.2: the registrable domain; a name
 * that is itself a public suffix (or unknown to the list's rules as
 * libpsl sees them) is its own organizational domain. 0 or -1. */
int dmarc_psl_org(const struct dmarc_psl *p, const char *domain,
                  char out[DMARC_DOMAIN_MAX]);

/* ------------------------------------------------------------------ */
/* Evaluation                                                           */

enum dmarc_res {
	DMARC_RES_NONE = 0,         /* no policy record: DMARC does not apply */
	DMARC_RES_PASS,
	DMARC_RES_FAIL,
	DMARC_RES_TEMPERROR,        /* DNS error, timeout, bogus, or deadline */
	DMARC_RES_PERMERROR,        /* the author domain cannot be determined */
};

enum dmarc_disp { DMARC_DISP_NONE = 0, DMARC_DISP_QUARANTINE, DMARC_DISP_REJECT };

/* Why the disposition differs from the policy (RFC 7489 PolicyOverrideType).
 * The evaluator itself sets only SAMPLED_OUT (pct=, RFC 7489 mode); the
 * others are for the indirect-flow logic that runs after it. */
enum dmarc_override {
	DMARC_OVR_NONE = 0,
	DMARC_OVR_FORWARDED,
	DMARC_OVR_TRUSTED_FORWARDER,
	DMARC_OVR_MAILING_LIST,
	DMARC_OVR_LOCAL_POLICY,
	DMARC_OVR_SAMPLED_OUT,
};

/* Where the policy record was found. */
enum dmarc_where {
	DMARC_AT_NONE = 0,
	DMARC_AT_AUTHOR,            /* _dmarc.<author domain> */
	DMARC_AT_ORG,               /* the organizational domain of the author domain */
	DMARC_AT_PSD,               /* a public suffix domain (psd=y) */
};

struct dmarc_opts {
	enum dmarc_mode mode;
	const struct dmarc_psl *psl;     /* RFC 7489 mode; required there */
	/* Policy for a message whose author domain cannot be determined (no
	 * From, bad From, too many domains): result PERMERROR with this
	 * disposition, never a silent pass. Default (0) is quarantine unless
	 * bad_author_disp_set says otherwise. */
	enum dmarc_disp bad_author_disp;
	int bad_author_disp_set;
	/* 0: all tree-walk queries of a name are sent at once (one round trip);
	 * 1: one after the other, stopping as soon as the walk may stop. */
	int walk_sequential;
	/* Runs fn(fn_arg) later on the loop thread, never from inside this
	 * call: used so that done never runs from inside dmarc_finish(). */
	void (*defer)(void *defer_arg, void (*fn)(void *), void *fn_arg);
	void *defer_arg;
};

struct dmarc_dkim_in {
	enum auth_res res;               /* only AUTH_PASS can align */
	const char *d;                   /* the signature's d= */
};

struct dmarc_inputs {
	/* SPF result for the MAIL FROM identity (RFC 9989 3.2.4). With a null
	 * reverse path RFC 7208 2.4 makes that identity postmaster@<HELO>:
	 * set mail_from_null and give the HELO domain as spf_domain (or leave
	 * spf_domain NULL and set helo). */
	enum auth_res spf;
	const char *spf_domain;
	int mail_from_null;
	const char *helo;
	const struct dmarc_dkim_in *dkim;
	size_t n_dkim;                   /* at most LIM_DKIM_MAX_SIGNATURES used */
	/* RFC 7489 pct= sampling key (e.g. Message-ID or queue id); see
	 * dmarc_sample_bucket(). NULL: every message is sampled in. */
	const char *sample_key;
};

struct dmarc_result {
	enum dmarc_res res;
	enum dmarc_author_status author_status;
	size_t n_domains;                /* author domains evaluated */
	char domain[DMARC_DOMAIN_MAX];   /* the (deciding) author domain */
	char org_domain[DMARC_DOMAIN_MAX];
	char policy_domain[DMARC_DOMAIN_MAX]; /* where the record was found */
	enum dmarc_where where;
	unsigned walk_step;              /* 1-based query of the walk that found it */
	struct dmarc_record rec;         /* the record applied (if where != NONE) */
	enum dmarc_policy policy;        /* published policy that applies (p/sp/np) */
	const char *policy_tag;          /* "p", "sp" or "np" */
	enum dmarc_policy applied;       /* after t=y and pct= */
	enum dmarc_disp disp;
	int author_exists;               /* 1 yes, 0 NXDOMAIN, -1 unknown/not asked */
	int spf_aligned, dkim_aligned;   /* 1 aligned, 0 not, -1 undecided (DNS) */
	char spf_domain[DMARC_DOMAIN_MAX];
	char dkim_domain[DMARC_DOMAIN_MAX]; /* the aligned d= (or first passing) */
	int testing;                     /* t=y lowered the policy */
	unsigned sample_bucket;          /* 0..99 when pct= was applied */
	enum dmarc_override override;
	const char *why;                 /* static: short reason */
};

typedef void (*dmarc_done_cb)(void *arg, const struct dmarc_result *r);

/* The disposition a result asks for. A FAIL (r->policy, r->rec and, in
 * RFC 7489 mode, r->sample_bucket set) gets applied, testing, override
 * and disp from the published policy, t=y (RFC 9989 4.7) and pct= (RFC
 * 7489 6.6.4); a PERMERROR without an author domain gets o's bad-author
 * disposition; any other result is left as it is. Pure: the evaluation
 * calls it, and so does the what-if replay with a proposed policy. */
void dmarc_dispose(struct dmarc_result *r, const struct dmarc_opts *o);

struct dmarc_eval;

/* Starts discovery at once (header time). Borrows dq, o and t until the
 * evaluation ends; copies *a. Never calls back from inside. NULL only when
 * out of memory. An author status that cannot be evaluated starts no
 * lookup: dmarc_finish() then yields PERMERROR. */
struct dmarc_eval *dmarc_start(struct dnsq *dq, const struct dmarc_opts *o,
                               const struct dmarc_author *a,
                               uint64_t deadline_us, struct trace *t);

/* Gives the SPF/DKIM outcomes (copied). done runs exactly once, later,
 * never from inside this call; the result is borrowed for the callback.
 * The evaluation frees itself after done and after its last lookup
 * (late answers are absorbed). Past deadline_us no lookup is started and
 * an unfinished evaluation ends in TEMPERROR at the next answer. */
void dmarc_finish(struct dmarc_eval *e, const struct dmarc_inputs *in,
                  dmarc_done_cb done, void *arg);

/* Gives up: done will not run; the evaluation frees itself when its
 * lookups have landed (at once if none is pending). Valid before or after
 * dmarc_finish(), not after done has run. */
void dmarc_abandon(struct dmarc_eval *e);

/* Deterministic pct= sampling (RFC 7489 6.6.4): the bucket of a key is
 * FNV-1a-64 of the key's bytes, modulo 100. A message is sampled in (the
 * policy applies) when bucket < pct. */
unsigned dmarc_sample_bucket(const char *key);

const char *dmarc_res_name(enum dmarc_res r);
const char *dmarc_disp_name(enum dmarc_disp d);
const char *dmarc_override_name(enum dmarc_override o);
const char *dmarc_author_status_name(enum dmarc_author_status s);

#endif
