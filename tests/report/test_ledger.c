/* The report ledger (report/ledger.c): lines in both forms, formatting
 * round trips, hostile reasons, and the retry rule at its edges. */
#include <stdio.h>
#include <string.h>

#include "common/limits.h"
#include "report/ledger.h"

static int failures;

#define CHECK(c, ...) do { if (!(c)) { failures++; fprintf(stderr, "FAIL %s:%d: ", \
	__FILE__, __LINE__); fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

#define DAY 1764979200   /* 2025-12-06 00:00 UTC */

int main(void)
{
	struct rpt_ledger l;
	/* the first form */
	CHECK(rpt_ledger_parse("sent 1765000000\n", &l) == 0, "old form");
	CHECK(l.state == RPT_LEDGER_SENT && l.last == 1765000000 && l.attempts == 1 && l.day == -1 &&
	      !l.domain[0], "old form fields");
	CHECK(rpt_ledger_parse("refused 1765000000", &l) == 0 && l.state == RPT_LEDGER_REFUSED,
	      "old refused");
	/* the current form */
	CHECK(rpt_ledger_parse("failed 3 1765100000 1764979200 example.com Failure when receiving "
	                       "data from the peer (SMTP 451)\n", &l) == 0, "new form");
	CHECK(l.state == RPT_LEDGER_FAILED && l.attempts == 3 && l.last == 1765100000 &&
	      l.day == DAY && strcmp(l.domain, "example.com") == 0 &&
	      strcmp(l.reason, "Failure when receiving data from the peer (SMTP 451)") == 0,
	      "new form fields: '%s' '%s'", l.domain, l.reason);
	/* not ledger lines */
	const char *bad[] = { "", "\n", "sending 1 2 3 x", "sent", "sent x", "failed 0 1 2 d r",
	                      "failed 2 1 x d", "failed 2 1 2", NULL };
	for (size_t i = 0; bad[i]; i++)
		CHECK(rpt_ledger_parse(bad[i], &l) < 0, "'%s' refused", bad[i]);

	/* round trip, and a reason that would start a line of its own */
	struct rpt_ledger w = { RPT_LEDGER_FAILED, 2, 1765100000, DAY, "example.com",
	                        "451 4.3.0 try later\r\nsent 1 2 3 evil.example x" };
	char line[600];
	size_t n = rpt_ledger_format(&w, line, sizeof line);
	CHECK(n > 0 && line[n - 1] == '\n' && !strchr(line, '\r') && strchr(line, '\n') == line + n - 1,
	      "one line: %s", line);
	CHECK(rpt_ledger_parse(line, &l) == 0 && l.state == RPT_LEDGER_FAILED && l.attempts == 2 &&
	      l.day == DAY && strcmp(l.domain, "example.com") == 0, "round trip");
	struct rpt_ledger u = { RPT_LEDGER_SENT, 1, 5, -1, "", "" };
	n = rpt_ledger_format(&u, line, sizeof line);
	CHECK(n > 0 && rpt_ledger_parse(line, &l) == 0 && l.day == -1 && !l.domain[0],
	      "unknown day and domain: %s", line);
	CHECK(rpt_ledger_format(&w, line, 10) == 0, "too small");

	/* the retry rule */
	int64_t due;
	CHECK(rpt_ledger_next(NULL, DAY, 5, &due) == RPT_NEXT_SEND, "never tried");
	struct rpt_ledger s = { RPT_LEDGER_SENT, 1, DAY, DAY, "a", "" };
	CHECK(rpt_ledger_next(&s, DAY + 99 * 86400, 5, &due) == RPT_NEXT_DONE, "sent is done");
	s.state = RPT_LEDGER_REFUSED;
	CHECK(rpt_ledger_next(&s, DAY, 5, &due) == RPT_NEXT_DONE, "refused is done");
	s.state = RPT_LEDGER_EXPIRED;
	CHECK(rpt_ledger_next(&s, DAY, 5, &due) == RPT_NEXT_DONE, "expired is done");
	struct rpt_ledger f = { RPT_LEDGER_FAILED, 1, DAY + 86400 + 600, DAY, "a", "x" };
	int64_t t0 = f.last;
	CHECK(rpt_ledger_next(&f, t0 + 60, 5, &due) == RPT_NEXT_WAIT && due == t0 + 3600,
	      "first wait 1 h");
	CHECK(rpt_ledger_next(&f, t0 + 3600, 5, &due) == RPT_NEXT_SEND, "due after 1 h");
	f.attempts = 2;
	CHECK(rpt_ledger_next(&f, t0 + 3600, 5, &due) == RPT_NEXT_WAIT && due == t0 + 7200,
	      "second wait 2 h");
	f.attempts = 9;
	CHECK(rpt_ledger_next(&f, t0 + 3600, 5, &due) == RPT_NEXT_WAIT &&
	      due == t0 + LIM_REPORT_RETRY_MAX_S, "capped at 24 h");
	f.attempts = 1;
	CHECK(rpt_ledger_next(&f, DAY + 6 * 86400 - 1, 5, &due) == RPT_NEXT_SEND, "last retry day");
	CHECK(rpt_ledger_next(&f, DAY + 6 * 86400, 5, &due) == RPT_NEXT_EXPIRE, "expired");
	CHECK(rpt_ledger_next(&f, DAY + 86400 + 601, 0, &due) == RPT_NEXT_EXPIRE,
	      "report_retry_days = 0: no retry after the day");
	f.day = -1;
	CHECK(rpt_ledger_next(&f, DAY + 99 * 86400, 5, &due) == RPT_NEXT_SEND, "unknown day: no expiry");
	if (failures)
		fprintf(stderr, "%d failures\n", failures);
	return failures ? 1 : 0;
}
