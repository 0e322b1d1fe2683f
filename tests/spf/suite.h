/* Test support for the SPF tests: the converted RFC 7208 suite (see
 * conv_suite.py) loaded into memdns, and a synchronous runner. */
#ifndef ALIGND_TEST_SPF_SUITE_H
#define ALIGND_TEST_SPF_SUITE_H

#include "checks/spf/spf.h"
#include "tests/lib/memdns.h"

struct suite_case {
	char *name;
	char *host, *mailfrom, *helo;
	char *results;          /* comma-separated */
	char *explanation;      /* NULL: not checked */
	size_t scenario;
};

struct suite {
	char **zone;            /* per scenario: its Z lines, NUL-separated */
	size_t *zone_len;
	char **desc;
	size_t nscen;
	struct suite_case *c;
	size_t n;
};

int suite_load(struct suite *s, const char *path);
void suite_free(struct suite *s);
/* A fresh memdns holding the zone of a scenario. */
struct memdns *suite_zone(const struct suite *s, size_t scenario);

/* Runs one check_host synchronously over memdns: 0, or -1 when `done`
 * did not run exactly once or ran from inside spf_check_host(). */
struct run_out {
	struct spf_result r;
	int calls;
	int reentrant;
};
int run_check(struct memdns *m, const struct spf_request *rq, struct trace *t,
              struct run_out *out);

/* 1 when result r is in the comma-separated list. */
int result_in(const char *list, enum auth_res r);

#endif
