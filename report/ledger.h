/* The report ledger: what became of one aggregate report at one
 * destination, one line per (report ID, destination) kept by the report
 * tool under report_dir/ledger. Parsing, formatting and the retry rule;
 * no I/O, any thread. */
#ifndef ALIGND_LEDGER_H
#define ALIGND_LEDGER_H

#include <stddef.h>
#include <stdint.h>

enum rpt_ledger_state {
	RPT_LEDGER_SENT = 0,      /* accepted by the SMTP server */
	RPT_LEDGER_REFUSED,       /* refused for good (5xx): not tried again */
	RPT_LEDGER_FAILED,        /* failed for now: tried again with back-off */
	RPT_LEDGER_EXPIRED,       /* failed for longer than report_retry_days */
};

struct rpt_ledger {
	enum rpt_ledger_state state;
	unsigned attempts;        /* sends tried, this one included */
	int64_t last;             /* time of the last attempt */
	int64_t day;              /* first second of the report's UTC day; -1 unknown */
	char domain[256];         /* policy domain; "" unknown */
	char reason[256];         /* the server's last answer, printable */
};

const char *rpt_ledger_state_name(enum rpt_ledger_state s);

/* One ledger line (without or with its final LF). Lines written before
 * attempts, day and domain were kept ("sent 1765000000") are read too.
 * 0, or -1 when it is not a ledger line. */
int rpt_ledger_parse(const char *line, struct rpt_ledger *l);

/* The line for l, LF-terminated; untrusted text (the reason) is made
 * printable and single-line. Returns the length (< cap), or 0 when it
 * does not fit. */
size_t rpt_ledger_format(const struct rpt_ledger *l, char *out, size_t cap);

/* What to do about a destination whose entry is l (NULL: never tried). */
enum rpt_ledger_next {
	RPT_NEXT_SEND = 0,        /* never tried, or due for a retry */
	RPT_NEXT_DONE,            /* sent, refused or expired: nothing to do */
	RPT_NEXT_WAIT,            /* failed for now, not due yet (*due_r says when) */
	RPT_NEXT_EXPIRE,          /* failed for now, for too long: give up */
};

/* Retries back off: 1 h after the first failure, doubling up to 24 h; a
 * report that still fails report_retry_days after the end of its day
 * expires. */
enum rpt_ledger_next rpt_ledger_next(const struct rpt_ledger *l, int64_t now,
                                     unsigned retry_days, int64_t *due_r);

#endif
