/* The what-if counts (report/whatif.c) on fixed messages: directions,
 * groups with the most changes first, the oldest examples kept, days, the
 * top-N cut, text and JSON, and a count split in two and merged giving the
 * same report as one count (the replay's threads). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report/whatif.h"

static int failures;

#define CHECK(c, ...) do { if (!(c)) { failures++; fprintf(stderr, "FAIL %s:%d: ", \
	__FILE__, __LINE__); fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

#define DAY 86400

struct m {
	int64_t t;
	const char *dom, *ip, *qid;
	int now, proposed;
};

static const struct m msgs[] = {
	{ 10 * DAY + 5, "example.com", "192.0.2.1", "Q5", RPT_WI_ACCEPT, RPT_WI_REJECT },
	{ 10 * DAY + 1, "example.com", "192.0.2.1", "Q1", RPT_WI_ACCEPT, RPT_WI_REJECT },
	{ 11 * DAY + 3, "example.com", "192.0.2.2", "Q3", RPT_WI_QUARANTINE, RPT_WI_REJECT },
	{ 11 * DAY + 2, "example.com", "192.0.2.2", "Q2", RPT_WI_ACCEPT, RPT_WI_ACCEPT },
	{ 12 * DAY + 4, "example.com", "192.0.2.1", "Q4", RPT_WI_ACCEPT, RPT_WI_REJECT },
	{ 12 * DAY + 9, "example.com", "192.0.2.1", "Q9", RPT_WI_ACCEPT, RPT_WI_REJECT },
	{ 10 * DAY + 7, "other.example", "198.51.100.7", "R1", RPT_WI_REJECT, RPT_WI_QUARANTINE },
	{ 10 * DAY + 8, "quiet.example", "198.51.100.8", "S1", RPT_WI_ACCEPT, RPT_WI_ACCEPT },
	{ 13 * DAY, "bad\"dom\x01", "203.0.113.1", "T\\1", RPT_WI_TEMPFAIL, RPT_WI_ACCEPT },
};
#define N (sizeof(msgs) / sizeof(msgs[0]))

static void add(struct rpt_whatif *w, const struct m *m)
{
	struct rpt_whatif_msg x = { m->t, m->dom, m->ip, m->qid, m->now, m->proposed,
	                            "because \"reasons\"", 0 };
	CHECK(rpt_whatif_add(w, &x) == 0, "add %s", m->qid);
}

static char *text(const struct rpt_whatif *w, int json, size_t top)
{
	struct rpt_whatif_head h = { 10 * DAY, 14 * DAY, "policy_mode = strict", 2, 6 };
	struct buf b;
	buf_init(&b, 0);
	int rc = json ? rpt_whatif_json(w, &h, top, &b) : rpt_whatif_text(w, &h, top, &b);
	CHECK(rc == 0, "output");
	buf_add(&b, "", 1);
	return buf_steal(&b, NULL);
}

int main(void)
{
	struct rpt_whatif *all = rpt_whatif_new();
	for (size_t i = 0; i < N; i++)
		add(all, &msgs[i]);
	CHECK(rpt_whatif_messages(all) == N, "messages");
	CHECK(rpt_whatif_changed(all) == 7, "changed %llu", (unsigned long long)rpt_whatif_changed(all));

	char *t = text(all, 0, 0);
	printf("%s", t);
	CHECK(strstr(t, "9 messages re-decided under policy_mode = strict.") != NULL, "head");
	CHECK(strstr(t, "2 stored records could not be replayed") != NULL, "unreadable");
	CHECK(strstr(t, "2 unchanged, 7 would change:") != NULL, "totals");
	CHECK(strstr(t, "accept     -> reject            4") != NULL, "direction");
	CHECK(strstr(t, "6 messages change their DMARC disposition.") != NULL, "dispositions");
	/* example.com first (5 changes), its oldest three examples in order */
	const char *d = strstr(t, "By author domain");
	const char *e = d ? strstr(d, "example.com: 5 of 6 messages change") : NULL;
	CHECK(e && e < strstr(d, "other.example"), "order");
	const char *q1 = e ? strstr(e, "e.g. Q1:") : NULL, *q3 = e ? strstr(e, "e.g. Q3:") : NULL;
	const char *q4 = e ? strstr(e, "e.g. Q4:") : NULL, *q5 = e ? strstr(e, "e.g. Q5:") : NULL;
	CHECK(q1 && q3 && q4 && q5 && q1 < q5 && q5 < q3, "examples oldest first");
	const char *dsect = strstr(t, "By sending source");
	CHECK(!q4 || !dsect || q4 > dsect, "Q4 is not among example.com's three oldest");
	CHECK(strstr(t, "quiet.example") == NULL, "no group without changes");
	CHECK(strstr(t, "bad\"dom?:") != NULL, "untrusted name made printable: %s", t);
	free(t);

	t = text(all, 0, 1);
	CHECK(strstr(t, "By author domain (3 with changes, the first shown)") != NULL, "top");
	CHECK(strstr(t, "other.example") == NULL, "cut by top");
	free(t);

	char *j = text(all, 1, 0);
	CHECK(strstr(j, "\"messages\":9,\"changed\":7,\"unknown\":0,\"unreadable\":2,"
	                "\"dispositions_changed\":6") != NULL, "json totals: %s", j);
	CHECK(strstr(j, "\"now\":{\"accept\":6,\"quarantine\":1,\"reject\":1,\"tempfail\":1}") != NULL,
	      "json now");
	CHECK(strstr(j, "{\"from\":\"accept\",\"to\":\"reject\",\"messages\":4}") != NULL, "json dir");
	CHECK(strstr(j, "\"queue_id\":\"T\\\\1\"") != NULL, "json escape");
	CHECK(strstr(j, "\"why\":\"because \\\"reasons\\\"\"") != NULL, "json why");
	CHECK(strstr(j, "{\"day\":\"1970-01-11\",\"now\":[3,0,1,0],\"proposed\":[1,1,2,0]}") != NULL,
	      "json day: %s", j);

	/* split in two, merged: the same report */
	struct rpt_whatif *a = rpt_whatif_new(), *b = rpt_whatif_new();
	for (size_t i = 0; i < N; i++)
		add(i % 2 ? a : b, &msgs[N - 1 - i]);
	CHECK(rpt_whatif_merge(a, b) == 0, "merge");
	char *j2 = text(a, 1, 0), *t1 = text(all, 0, 0), *t2 = text(a, 0, 0);
	CHECK(strcmp(j, j2) == 0, "merged json differs:\n%s\n%s", j, j2);
	CHECK(strcmp(t1, t2) == 0, "merged text differs");
	struct buf d1, d2;
	buf_init(&d1, 0);
	buf_init(&d2, 0);
	CHECK(rpt_whatif_days(all, &d1) == 0 && rpt_whatif_days(a, &d2) == 0, "days");
	CHECK(d1.len == d2.len && memcmp(d1.data, d2.data, d1.len) == 0, "days differ");
	CHECK(d1.data && strncmp(d1.data, "1970-01-11\t3\t0\t1\t0\t1\t1\t2\t0\n", 27) == 0, "tsv");
	buf_free(&d1);
	buf_free(&d2);
	free(j);
	free(j2);
	free(t1);
	free(t2);
	rpt_whatif_free(&a);
	rpt_whatif_free(&b);
	rpt_whatif_free(&all);
	CHECK(all == NULL, "freed");
	printf("test_whatif: %s\n", failures ? "FAILED" : "ok");
	return failures != 0;
}
