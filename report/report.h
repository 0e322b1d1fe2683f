/* DMARC aggregate reports (RFC 9990): from evidence records of one policy
 * domain and one period to the XML report, its gzip file, its file name,
 * Subject and the MIME message that carries it. No I/O: the caller reads
 * the history store and sends; any thread, the caller owns every buffer. */
#ifndef ALIGND_REPORT_H
#define ALIGND_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "checks/auth.h"
#include "common/limits.h"
#include "common/buf.h"

/* RFC 9990 ActionDispositionType */
enum rpt_disp { RPT_DISP_NONE = 0, RPT_DISP_PASS, RPT_DISP_QUARANTINE, RPT_DISP_REJECT };
/* RFC 9990 DispositionType (p=, sp=, np=); RPT_POL_UNSET: tag absent */
enum rpt_pol { RPT_POL_UNSET = 0, RPT_POL_NONE, RPT_POL_QUARANTINE, RPT_POL_REJECT };
/* RFC 9990 PolicyOverrideType */
enum rpt_override {
	RPT_OVR_LOCAL_POLICY = 0, RPT_OVR_MAILING_LIST, RPT_OVR_OTHER,
	RPT_OVR_POLICY_TEST_MODE, RPT_OVR_TRUSTED_FORWARDER,
};

struct rpt_dkim {
	const char *domain, *selector;
	enum auth_res res;
	const char *human;            /* optional */
};

struct rpt_reason {
	enum rpt_override type;
	const char *comment;          /* optional */
};

/* The policy record as discovered for one message. */
struct rpt_policy {
	const char *domain;           /* where the record was found */
	enum rpt_pol p, sp, np;
	char adkim, aspf;             /* 'r', 's' or 0 when absent */
	int testing;                  /* t=y */
	int treewalk;                 /* 1: RFC 9989 tree walk, 0: public suffix list */
	const char *fo;               /* optional */
};

/* One message's evidence, as a report needs it. Strings are borrowed;
 * untrusted ones are made printable ASCII in the output. */
struct rpt_msg {
	int64_t time;                 /* seconds since the epoch, UTC */
	const char *source_ip;
	const char *header_from, *envelope_from, *envelope_to;   /* envelope ones optional */
	enum rpt_disp disposition;
	int dkim_aligned, spf_aligned;          /* DMARC-aligned pass of each */
	const struct rpt_reason *reasons;
	size_t n_reasons;
	const struct rpt_dkim *dkim;
	size_t n_dkim;
	const char *spf_domain;       /* NULL: no SPF result to report */
	enum auth_res spf_res;
	struct rpt_policy policy;
};

/* Who reports, and the period. */
struct rpt_meta {
	const char *org_name;         /* reporting organisation */
	const char *email;            /* contact address (also the From of the message) */
	const char *extra_contact;    /* optional */
	const char *receiver;         /* the reporter's domain: file name, Subject */
	const char *generator;        /* optional */
	int64_t begin, end;           /* inclusive, seconds since the epoch */
};

/* A report ID that depends only on (receiver, policy domain, period):
 * a re-run after a crash builds the same ID, so a domain owner who gets the
 * report twice can tell (RFC 9990 Report-ID). Writes 32 hex digits. */
void rpt_report_id(const struct rpt_meta *m, const char *policy_domain,
                   char id_r[33]);

/* An aggregate report being built: messages are added one at a time and
 * grouped at once by every field a record shows, so memory grows with the
 * number of distinct records, not of messages. The groups come out sorted
 * (the same messages in any order give the same bytes); policy_published is
 * the record of the latest message. Messages of another policy domain or
 * outside the period are not counted. */
struct rpt_agg;
struct rpt_agg *rpt_agg_new(const struct rpt_meta *m, const char *policy_domain);
/* Copies what it keeps of msg. 1 added, 0 not for this report, -1 out of
 * memory. */
int rpt_agg_add(struct rpt_agg *a, const struct rpt_msg *msg);
size_t rpt_agg_messages(const struct rpt_agg *a);
size_t rpt_agg_records(const struct rpt_agg *a);
/* Appends the XML report to out. 0, or -1 with *err_r set (no message to
 * report, or output over out's cap). */
int rpt_agg_xml(const struct rpt_agg *a, struct buf *out, const char **err_r);
void rpt_agg_free(struct rpt_agg **a);

/* The same for messages at hand. */
int rpt_aggregate_xml(const struct rpt_meta *m, const char *policy_domain,
                      const struct rpt_msg *msgs, size_t n,
                      struct buf *out, const char **err_r);

/* gzip (RFC 1952) of data, with no file name and a zero time stamp so that
 * the same report gives the same bytes. 0 or -1. */
int rpt_gzip(const void *data, size_t len, struct buf *out);

/* RFC 9990 file name: receiver!policy-domain!begin!end!id.xml.gz */
int rpt_filename(const struct rpt_meta *m, const char *policy_domain,
                 const char *id, struct buf *out);

/* The whole RFC 5322 message (CRLF lines): From, To, Subject
 * "Report Domain: D Submitter: R Report-ID: <id>", Date, Message-ID,
 * multipart/mixed with a short text/plain summary and the gzip file as
 * application/gzip in base64. date is the time to put in Date:. */
struct rpt_mail {
	const char *to;               /* one address (the verified rua= mailbox) */
	const char *summary;          /* the text part */
	int64_t date;
};
int rpt_message(const struct rpt_meta *m, const char *policy_domain,
                const char *id, const struct rpt_mail *mail,
                const void *gz, size_t gz_len, struct buf *out);

/* ---- failure reports (RFC 9991, in the RFC 6591 ARF format) ---- */

/* RFC 6591 3.1 Delivery-Result */
enum rpt_delivery { RPT_DELIVERED = 0, RPT_SPAM, RPT_POLICY, RPT_REJECT, RPT_OTHER };

struct rpt_failure {
	int64_t arrival;              /* seconds since the epoch */
	const char *source_ip;
	const char *mail_from;        /* Original-Mail-From; NULL or "" for <> */
	const char *rcpt_to;          /* Original-Rcpt-To, optional */
	const char *reported_domain;  /* the author (From) domain */
	const char *auth_results;     /* our Authentication-Results value */
	int dkim_aligned, spf_aligned;
	enum rpt_delivery delivery;
	const char *dkim_domain, *dkim_selector;  /* a failing signature, optional */
	const char *headers;          /* the message's header section, raw */
	size_t headers_len;
	const char *subject;          /* the message's Subject, unfolded, optional */
	int redact;                   /* RFC 6590: recipient addresses hidden */
};

/* A whole RFC 5322 message: multipart/report; report-type=feedback-report
 * with a short text part, the message/feedback-report part
 * (Feedback-Type: auth-failure, Auth-Failure: dmarc) and the original
 * header section as text/rfc822-headers (RFC 6591 3.3: the body is not
 * needed for a DMARC failure; leaving it out keeps its content private).
 * Header fields of the original that cannot be carried as they are
 * (bytes outside printable ASCII) are made printable. */
int rpt_failure_message(const struct rpt_meta *m, const struct rpt_failure *f,
                        const char *to, int64_t date, struct buf *out);

/* ---- destinations ---- */

/* One mailto: destination of a DMARC record's rua= tag. */
struct rpt_dest {
	char addr[LIM_REPORT_ADDR];   /* local@domain, domain lower-cased */
	const char *domain;           /* inside addr */
	uint64_t max_size;            /* from "!size" (obsolete but honoured); 0: none */
};

/* The mailto: destinations of the rua= tag of a DMARC record (the TXT
 * text); other schemes and malformed URIs are skipped and counted in
 * *skipped_r, percent-escapes are decoded (RFC 9989 4.8: ',' and '!' in a
 * URI are escaped), an address with anything a mail header or an SMTP
 * command could not carry (controls, spaces, <>, quotes) is skipped. At
 * most cap destinations. Returns how many, or -1 when the record has no
 * rua= tag at all. */
int rpt_rua_parse(const char *txt, size_t len, struct rpt_dest *out, size_t cap,
                  unsigned *skipped_r);
/* The same for ruf= (RFC 9991 failure report destinations). */
int rpt_ruf_parse(const char *txt, size_t len, struct rpt_dest *out, size_t cap,
                  unsigned *skipped_r);

/* A verification record (RFC 9990 3.1 / RFC 9989: the TXT at
 * <policy-domain>._report._dmarc.<destination-domain>) authorises the
 * destination when it starts with "v=DMARC1". 1 or 0. */
int rpt_verify_record(const char *txt, size_t len);

#endif
