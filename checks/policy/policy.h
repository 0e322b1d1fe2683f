/* Indirect mail flows: the evidence that a message which fails DMARC came
 * through a forwarder or a mailing list, and the decision whether that
 * evidence lowers a DMARC reject (RFC 9989 keeps the owner's policy but
 * asks receivers not to reject solely on it where other knowledge shows a
 * legitimate indirect flow). Every override carries a reason
 * (RFC 7489 PolicyOverrideType). Pure; any thread. docs/policy.md. */
#ifndef ALIGND_POLICY_H
#define ALIGND_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "checks/auth.h"
#include "checks/msg.h"
#include "common/netprefix.h"

#define POLICY_NAME_MAX 256

enum policy_mode {
	POLICY_STRICT = 0,        /* any DMARC fail under p=reject is rejected */
	POLICY_RFC9989,           /* direct failures rejected; evidence may lower */
	POLICY_QUARANTINE_ONLY,   /* reject becomes quarantine (reason local_policy) */
};

enum policy_exception { POLICY_EXC_NONE = 0, POLICY_EXC_ENFORCE, POLICY_EXC_NEVER_REJECT };

struct policy_conf {
	enum policy_mode mode;
	/* a valid ARC chain from a sealer not in `sealers` lowers a reject to
	 * quarantine ("forwarded"); off by default: anyone can seal, the
	 * spoofer with a domain of their own included */
	int untrusted_arc_lowers;
	char **sealers;           /* trusted ARC sealing domains (lower case) */
	size_t n_sealers;
	struct net_prefix *nets;  /* trusted forwarders by client address */
	size_t n_nets;
	char **helos;             /* trusted forwarders by HELO name */
	size_t n_helos;
	char **fwd_domains;       /* trusted forwarders by envelope sender domain */
	size_t n_fwd_domains;
	char **lists;             /* trusted mailing-list domains */
	size_t n_lists;
	struct { char *domain; enum policy_exception kind; } *exc;
	size_t n_exc;
};

/* Parses a space/comma-separated list into the matching field. 0 or -1
 * with a reason. */
int policy_add_sealers(struct policy_conf *c, const char *list, char *err, size_t errlen);
/* Forwarders: "192.0.2.0/24", "2001:db8::/32", "helo:mx.example",
 * "from:example.net" (envelope sender domain). */
int policy_add_forwarders(struct policy_conf *c, const char *list, char *err, size_t errlen);
int policy_add_lists(struct policy_conf *c, const char *list, char *err, size_t errlen);
/* The exceptions file: lines "enforce DOMAIN" or "never-reject DOMAIN";
 * '#' comments. A domain covers its subdomains. 0 or -1 ("file:line: ..."). */
int policy_load_exceptions(struct policy_conf *c, const char *path, char *err, size_t errlen);
void policy_conf_free(struct policy_conf *c);

/* What the message shows. Strings are copied in. */
struct policy_evidence {
	/* ARC (RFC 8617) */
	enum auth_res arc;                   /* pass, fail, none */
	/* the sealer trust was decided on: the first (i=1) sealer, or the
	 * untrusted hop that changed the content after it (oldest-pass) */
	char arc_sealer[POLICY_NAME_MAX];
	/* every sealer in order and which is trusted, for the A-R comment and
	 * the trace: "trusted sealer a.example at i=1, then b.example at i=2" */
	char arc_desc[2 * POLICY_NAME_MAX];
	int arc_trusted;                     /* a sealer of a passing chain is trusted */
	int arc_aar1_dmarc_pass;             /* instance 1's A-R says dmarc=pass ... */
	char arc_aar1_from[POLICY_NAME_MAX]; /* ... for this header.from (lower case) */
	/* configured forwarder */
	int forwarder;
	char forwarder_why[POLICY_NAME_MAX];
	/* mailing list */
	int list;                            /* List-Id (or List-Post) present */
	char list_domain[POLICY_NAME_MAX];
	int list_signed;                     /* a DKIM pass aligned with the list domain */
	int list_trusted;                    /* the list domain is a trusted list */
};

/* The message's facts that evidence is checked against. */
struct policy_facts {
	const struct msg *m;              /* may be NULL (no header section) */
	const char *client_ip;            /* may be NULL */
	const char *helo;
	const char *mail_from;
	int spf_helo_pass;                /* SPF for the HELO identity passed */
	int spf_mfrom_pass;               /* SPF for MAIL FROM passed */
	const char *const *dkim_pass;     /* d= of the passing DKIM signatures */
	size_t n_dkim_pass;
	/* ARC (RFC 8617): the chain result; on pass the sealing domain of
	 * every instance, oldest (i=1) first; oldest_pass as RFC 8617 5.2
	 * step 5 (0: every AMS still validates); the AAR of instance 1 */
	enum auth_res arc;
	const char *const *arc_sealers;
	size_t n_sealers;
	unsigned arc_oldest_pass;
	const char *aar1;
};

/* Gathers the evidence. RFC 8617 7.2: only results recorded by a trusted
 * sealer count, so the instance-1 sealer (whose AAR holds the original
 * results) must be trusted, and its own AMS must still validate (no later
 * hop changed what it sealed). A forwarder named by helo: needs a passing
 * SPF HELO check, one named by from: a passing SPF MAIL FROM check: both
 * are claims any client can make. */
void policy_gather(const struct policy_conf *c, const struct policy_facts *f,
                   struct policy_evidence *ev);

enum policy_disp { POLICY_DISP_NONE = 0, POLICY_DISP_QUARANTINE, POLICY_DISP_REJECT };

struct policy_decision {
	enum policy_disp disp;               /* after the override */
	const char *override;                /* reason, or NULL when unchanged */
	char why[POLICY_NAME_MAX + 128];      /* one line for the trace and A-R comment */
};

/* Decides the disposition of a DMARC failure of `domain` whose policy asks
 * for `disp`. Only a reject is ever lowered. */
void policy_decide(const struct policy_conf *c, const char *domain,
                   enum policy_disp disp, const struct policy_evidence *ev,
                   struct policy_decision *out);

enum policy_exception policy_exception_for(const struct policy_conf *c, const char *domain);

#endif
