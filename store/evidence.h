/* Building a history record from what a scan's verdict was made of, and
 * reading its evidence document back into the policy layer's inputs (the
 * what-if replay: policy_gather + policy_decide over stored facts and a
 * different configuration). Pure; any thread. */
#ifndef ALIGND_STORE_EVIDENCE_H
#define ALIGND_STORE_EVIDENCE_H

#include <stddef.h>
#include <stdint.h>

#include "checks/dkim/dkv.h"
#include "checks/dmarc/dmarc.h"
#include "checks/msg.h"
#include "checks/policy/policy.h"
#include "checks/spf/spf.h"
#include "checks/verdict/verdict.h"
#include "store/store.h"

/* Everything is borrowed for the call; NULL means "did not run". */
struct store_scan {
	int64_t time;
	const char *client_ip, *helo, *mail_from, *queue_id;
	const char *const *rcpt;
	size_t n_rcpt;
	const struct spf_result *spf;        /* MAIL FROM identity */
	const struct spf_result *spf_helo;
	const struct dkv_result *dkim;
	const struct dmarc_result *dmarc;    /* required */
	enum dmarc_mode dmarc_mode;
	enum policy_mode policy_mode;
	const struct policy_facts *facts;    /* what policy_gather read */
	/* the List-Id and List-Post values policy_gather read, when facts->m
	 * is NULL because the header section was not kept (has_header: there
	 * was one); NULL: absent */
	int list_given, has_header;
	const char *list_id, *list_post;
	size_t list_id_len, list_post_len;
	const struct policy_evidence *ev;    /* what it found */
	const struct policy_decision *pd;    /* NULL: no override decision was made */
	const char *action;                  /* the verdict's action name */
	/* what else the verdict read (verdict_in), so that a replay rebuilds it */
	const char *why_spf;                 /* why SPF has no result, or NULL */
	const char *header_error;            /* the header section did not split */
	int dkim_timeout, timed_out, out_of_memory;
	double score;
	/* RFC 9991: set when a failure report may be due (the daemon decides);
	 * the header section is kept in the evidence for alignd-report
	 * --failures, bytes outside printable ASCII (CR, LF and TAB kept) as '?' */
	const char *failure_headers;
	size_t failure_headers_len;
	const char *auth_results;            /* our Authentication-Results value */
};

/* Fills *r (cleared first; free with store_record_clear). 0 or -1 (memory). */
int store_record_from_scan(const struct store_scan *s, struct store_record *r);

/* The policy inputs of one stored record, ready for policy_gather() and
 * policy_decide(). facts and its arrays point into this struct. */
struct store_replay {
	int version;                          /* the document's "v" */
	struct policy_facts facts;
	struct policy_evidence ev;            /* as gathered at scan time */
	char domain[STORE_DOMAIN_MAX];        /* the DMARC author domain */
	enum policy_disp disp;                /* what the DMARC policy asked */
	int decided;                          /* policy_decide ran at scan time */
	enum policy_disp decided_disp;        /* and what it decided */
	char decided_override[32];            /* "" when unchanged */
	enum policy_mode policy_mode;         /* configuration at scan time */
	/* the checks' results as the verdict read them; only what decides
	 * the verdict is kept (evidence version 2; older ones lack the
	 * scan-level flags, which then read as unset) */
	int64_t time;
	enum dmarc_mode dmarc_mode;
	struct spf_result spf, spf_helo;
	int has_spf, has_spf_helo;
	struct dkv_result dkim;               /* sigs owned */
	int has_dkim;
	struct dmarc_result dmarc;
	char dmarc_why[128];                  /* behind dmarc.why */
	char why_spf[128], header_error[128];
	int has_why_spf, has_header_error;
	int dkim_timeout, timed_out, out_of_memory;
	double score;                         /* the stored verdict's score */
	char action[STORE_WORD_MAX];          /* the stored verdict */
	char disposition[STORE_WORD_MAX];     /* and DMARC disposition after overrides */
	char queue_id[128];
	/* storage behind facts */
	char client_ip[64], helo[STORE_DOMAIN_MAX], mail_from[512];
	char dkim_pass[64][STORE_DOMAIN_MAX];
	const char *dkim_pass_p[64];
	char sealers[64][STORE_DOMAIN_MAX];
	const char *sealers_p[64];
	char *aar1;
	char *headers;                        /* List-Id / List-Post fields, re-parsed */
	struct msg m;
};

/* 0, or -1 with a reason (not JSON, unknown version, missing member).
 * Free with store_replay_free(). */
int store_replay_load(const char *evidence, struct store_replay *r, char *err, size_t errlen);
void store_replay_free(struct store_replay *r);

/* A configuration to re-decide stored records under. */
struct store_replay_conf {
	const struct policy_conf *policy;     /* forwarders, lists, sealers, mode */
	const struct verdict_opts *vo;        /* weights and thresholds */
	enum dmarc_disp bad_author_disp;      /* bad_from, as the daemon maps it */
	/* the domain owner's question: as if as_domain (and its subdomains)
	 * published p=, sp= and np= as_policy; NULL: as published */
	const char *as_domain;
	enum dmarc_policy as_policy;
};

struct store_outcome {
	enum verdict_action action;
	enum dmarc_disp disp;                 /* the DMARC disposition after overrides */
	char override[32];                    /* reason it was lowered, "" none */
	double score;
	/* as_domain applies but nothing can be said: no DMARC record was
	 * found for the message, so its alignment was never evaluated */
	int unknown;
};

/* Re-decides one loaded record under c, with the code the daemon runs
 * (dmarc_dispose, policy_gather, verdict_decide); r is not changed. 0, or
 * -1 without memory. */
int store_replay_decide(const struct store_replay *r, const struct store_replay_conf *c,
                        struct store_outcome *out);
/* The stored verdict and disposition as the same values; -1 for a word
 * this build does not know. */
int store_replay_stored(const struct store_replay *r, enum verdict_action *action,
                        enum dmarc_disp *disp);

#endif
