/* The verdict: the checks' results turned into symbols with weights, a
 * score, an action with its SMTP reply, and the Authentication-Results
 * header value (RFC 8601). Pure: no I/O, any thread, one call per scan.
 * DMARC dispositions force the action; the score decides the rest. */
#ifndef ALIGND_VERDICT_H
#define ALIGND_VERDICT_H

#include <stddef.h>

#include "checks/dkim/dkv.h"
#include "checks/dmarc/dmarc.h"
#include "checks/policy/policy.h"
#include "checks/spf/spf.h"
#include "common/buf.h"
#include "common/trace.h"
#include "protocol/reply.h"

enum verdict_action { VERDICT_ACCEPT = 0, VERDICT_QUARANTINE, VERDICT_REJECT, VERDICT_TEMPFAIL };

/* Symbols and their default weights: docs/CONFIG.md lists them. */
#define VERDICT_SYMBOLS(X) \
	X(SPF_PASS,             -0.5) \
	X(SPF_FAIL,              3.0) \
	X(SPF_SOFTFAIL,          1.0) \
	X(SPF_NEUTRAL,           0.0) \
	X(SPF_NONE,              0.0) \
	X(SPF_TEMPERROR,         0.0) \
	X(SPF_PERMERROR,         1.0) \
	X(SPF_HELO_PASS,        -0.1) \
	X(SPF_HELO_FAIL,         1.0) \
	X(SPF_HELO_SOFTFAIL,     0.5) \
	X(SPF_HELO_OTHER,        0.0) \
	X(DKIM_PASS,            -0.5) \
	X(DKIM_FAIL,             2.0) \
	X(DKIM_POLICY,           1.0) \
	X(DKIM_TEMPERROR,        0.0) \
	X(DKIM_PERMERROR,        0.5) \
	X(DKIM_NEUTRAL,          0.0) \
	X(DKIM_NONE,             0.0) \
	X(DMARC_PASS,           -1.0) \
	X(DMARC_POLICY_REJECT,  10.0) \
	X(DMARC_POLICY_QUARANTINE, 5.0) \
	X(DMARC_POLICY_NONE,     1.0) \
	X(DMARC_NONE,            0.0) \
	X(DMARC_TEMPERROR,       0.0) \
	X(DMARC_PERMERROR,       2.0) \
	X(DMARC_BAD_FROM,        3.0) \
	X(DMARC_OVERRIDE,        0.0) \
	X(ARC_PASS,              0.0) \
	X(ARC_FAIL,              0.0) \
	X(ARC_TEMPERROR,         0.0) \
	X(SCAN_TIMEOUT,          0.0) \
	X(HEADER_UNPARSED,       0.0) \
	X(NO_MEMORY,             0.0)

#define VERDICT_SYM_ENUM(name, w) VSYM_##name,
enum verdict_sym { VERDICT_SYMBOLS(VERDICT_SYM_ENUM) VSYM_COUNT };
#undef VERDICT_SYM_ENUM

struct verdict_opts {
	double weights[VSYM_COUNT];
	double reject_score;
	double quarantine_score;
	int dmarc_temperror_tempfail;   /* 1: DMARC temperror -> tempfail (451) */
};

/* Default weights and thresholds (15 / 6, tempfail on temperror). */
void verdict_opts_default(struct verdict_opts *o);
/* Sets one weight by symbol name; 0 or -1 (unknown name). */
int verdict_set_weight(struct verdict_opts *o, const char *name, double w);
const char *verdict_sym_name(enum verdict_sym s);

struct verdict_in {
	const char *authserv_id;
	/* SPF for MAIL FROM (NULL: not evaluated; why_spf says why) */
	const struct spf_result *spf;
	const char *why_spf;
	const char *mail_from;          /* as given; "" null sender; NULL unknown */
	const struct spf_result *spf_helo;  /* NULL: not evaluated */
	const char *helo;
	const struct dkv_result *dkim;  /* NULL: not evaluated (no signature or deadline) */
	int dkim_timeout;               /* DKIM did not finish in time */
	const struct dmarc_result *dmarc;   /* NULL: not finished in time */
	/* the indirect-flow decision for a DMARC failure (policy_decide);
	 * NULL: the DMARC disposition applies as it is */
	const struct policy_decision *policy;
	/* ARC, for Authentication-Results: AUTH_NONE with arc_comment NULL
	 * means not evaluated and no arc= is written */
	enum auth_res arc;
	const char *arc_comment;
	int arc_oldest_pass;            /* header.oldest-pass (RFC 8617 10.1), -1: none */
	int timed_out;                  /* the scan deadline passed */
	const char *header_error;       /* the header section could not be split: why */
	int out_of_memory;              /* a check lacked memory: the verdict is tempfail */
};

#define VERDICT_MAX_SYMBOLS 32

struct verdict {
	enum verdict_action action;
	double score;
	char smtp_reply[512];           /* "" for accept */
	struct proto_symbol syms[VERDICT_MAX_SYMBOLS];
	size_t n_syms;
	char details[VERDICT_MAX_SYMBOLS][192];
	struct buf ar;                  /* the Authentication-Results value */
	char summary[400];              /* "spf=pass dkim=pass dmarc=pass" for the log */
	const char *override;           /* reason a DMARC reject was lowered, or NULL */
};

void verdict_build(const struct verdict_in *in, const struct verdict_opts *o,
                   struct verdict *v, struct trace *t);
void verdict_free(struct verdict *v);

/* The decision after the checks, in one place: when DMARC failed, whether
 * the indirect-flow evidence ev (policy_gather under pc) lowers its
 * disposition (policy_decide into *pd, and in->policy = pd), then the
 * verdict. The daemon's scan and the what-if replay of stored evidence
 * both call it, so that a replay under the configuration a message was
 * scanned with reproduces its verdict. */
void verdict_decide(const struct policy_conf *pc, const struct verdict_opts *o,
                    struct verdict_in *in, const struct policy_evidence *ev,
                    struct policy_decision *pd, struct verdict *v, struct trace *t);
const char *verdict_action_name(enum verdict_action a);

/* Appends an RFC 8601 value: as a token when it is one, else as a
 * quoted-string (RFC 2045 tspecials, RFC 5322 quoting); bytes outside
 * printable ASCII become '?'. Exposed for tests. */
void verdict_ar_value(struct buf *b, const char *s);

#endif
