/* The report ledger (ledger.h). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/limits.h"
#include "common/text.h"
#include "report/ledger.h"

static const char *const names[] = { "sent", "refused", "failed", "expired" };

const char *rpt_ledger_state_name(enum rpt_ledger_state s)
{
	return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "failed";
}

/* the next space-separated word of *p, into out; 0 or -1 */
static int word(const char **p, char *out, size_t cap)
{
	const char *s = *p;
	while (*s == ' ')
		s++;
	size_t n = strcspn(s, " \n");
	if (n == 0 || n >= cap)
		return -1;
	memcpy(out, s, n);
	out[n] = '\0';
	*p = s + n;
	return 0;
}

static int number(const char **p, int64_t *v)
{
	char w[24], *end;
	if (word(p, w, sizeof w) < 0)
		return -1;
	long long x = strtoll(w, &end, 10);
	if (*end)
		return -1;
	*v = x;
	return 0;
}

int rpt_ledger_parse(const char *line, struct rpt_ledger *l)
{
	memset(l, 0, sizeof(*l));
	l->day = -1;
	l->attempts = 1;
	const char *p = line;
	char st[16];
	if (word(&p, st, sizeof st) < 0)
		return -1;
	size_t k;
	for (k = 0; k < sizeof(names) / sizeof(names[0]); k++)
		if (strcmp(st, names[k]) == 0)
			break;
	if (k == sizeof(names) / sizeof(names[0]))
		return -1;
	l->state = (enum rpt_ledger_state)k;
	int64_t a, t;
	if (number(&p, &a) < 0)
		return -1;
	const char *rest = p;
	if (number(&rest, &t) < 0) {
		/* the first form: "STATE TIME" */
		l->last = a;
		return 0;
	}
	if (a < 1 || a > 1000000)
		return -1;
	l->attempts = (unsigned)a;
	l->last = t;
	p = rest;
	if (number(&p, &l->day) < 0 || word(&p, l->domain, sizeof l->domain) < 0)
		return -1;
	if (strcmp(l->domain, "-") == 0)
		l->domain[0] = '\0';
	while (*p == ' ')
		p++;
	size_t n = strcspn(p, "\n");
	if (n >= sizeof l->reason)
		n = sizeof l->reason - 1;
	memcpy(l->reason, p, n);
	l->reason[n] = '\0';
	return 0;
}

size_t rpt_ledger_format(const struct rpt_ledger *l, char *out, size_t cap)
{
	char reason[sizeof l->reason];
	text_printable(reason, sizeof reason, l->reason, strlen(l->reason));
	/* the domain is one word: anything else in it is not a domain */
	const char *dom = l->domain[0] && !strpbrk(l->domain, " \r\n\t") ? l->domain : "-";
	int n = snprintf(out, cap, "%s %u %" PRId64 " %" PRId64 " %s %s\n",
	                 rpt_ledger_state_name(l->state), l->attempts ? l->attempts : 1, l->last,
	                 l->day, dom, reason);
	return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

enum rpt_ledger_next rpt_ledger_next(const struct rpt_ledger *l, int64_t now,
                                     unsigned retry_days, int64_t *due_r)
{
	*due_r = now;
	if (!l)
		return RPT_NEXT_SEND;
	if (l->state != RPT_LEDGER_FAILED)
		return RPT_NEXT_DONE;
	if (l->day >= 0 && now >= l->day + 86400 + (int64_t)retry_days * 86400)
		return RPT_NEXT_EXPIRE;
	unsigned shift = l->attempts > 1 ? l->attempts - 1 : 0;
	int64_t wait = shift >= 5 ? LIM_REPORT_RETRY_MAX_S
	             : (int64_t)LIM_REPORT_RETRY_FIRST_S << shift;
	if (wait > LIM_REPORT_RETRY_MAX_S)
		wait = LIM_REPORT_RETRY_MAX_S;
	*due_r = l->last + wait;
	return now >= *due_r ? RPT_NEXT_SEND : RPT_NEXT_WAIT;
}
