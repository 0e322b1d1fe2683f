/* The Prometheus exposition writer (server/metrics.c) on fixed numbers:
 * exact sample lines, cumulative histogram buckets, label escaping, a
 * "# HELP"/"# TYPE" pair before every family, and the optional sections. */
#include "server/metrics.h"
#include "checks/auth.h"
#include "tests/unit/check.h"

#include <stdlib.h>
#include <string.h>

/* The text contains this whole line. */
static int has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return 1;
	return 0;
}

#define CHECK_LINE(text, line) do { check_count++; if (!has_line((text), (line))) { \
	check_failures++; fprintf(stderr, "%s:%d: missing line: %s\n", __FILE__, __LINE__, \
	(line)); } } while (0)

static void fill(struct metrics_snapshot *m)
{
	memset(m, 0, sizeof(*m));
	m->version = "1.2.3";
	m->start_time_s = 1700000000;
	m->uptime_s = 42;
	m->workers = 4;
	m->conns_open = 3;
	m->conns_total = 17;
	m->errors_4xx = 2;
	m->errors_5xx = 1;
	m->scans_started = 12;
	m->actions[0] = 7;
	m->actions[1] = 2;
	m->actions[2] = 2;
	m->actions[3] = 1;
	m->overrides[2] = 5;
	m->out.spf_mailfrom[AUTH_PASS] = 9;
	m->out.spf_helo[AUTH_NONE] = 3;
	m->out.dkim[0][AUTH_PASS] = 6;
	m->out.dkim[2][AUTH_FAIL] = 1;
	m->out.dmarc[2][2] = 2;      /* fail, reject */
	histo_observe(&m->out.scan_duration, 500);       /* <= 1 ms */
	histo_observe(&m->out.scan_duration, 1000);      /* the bound itself: <= 1 ms */
	histo_observe(&m->out.scan_duration, 1001);      /* <= 2.5 ms */
	histo_observe(&m->out.scan_duration, 300000);    /* <= 0.5 s */
	histo_observe(&m->out.scan_duration, 60000000);  /* above 10 s */
	m->have_dns = 1;
	m->dns.started = 20;
	m->dns.answered = 19;
	m->dns.inflight = 1;
	m->dns.cache_hits = 4;
	m->dns.timeouts = 2;
	histo_observe(&m->dns.lookup_duration, 20000);
	m->dkim_jobs = 8;
	m->have_dkim_keys = 1;
	m->dkim_key_hits = 5;
	m->dkim_key_misses = 3;
	m->dkim_key_entries = 3;
	m->have_history = 1;
	m->hist_queued = 1;
	m->hist_written = 10;
	m->hist_dropped = 2;
}

static char *render(const struct metrics_snapshot *m)
{
	struct buf b;
	buf_init(&b, 0);
	metrics_write(m, &b);
	CHECK(!b.failed);
	size_t n;
	char *s = buf_steal(&b, &n);
	CHECK(s != NULL && n > 0 && s[n - 1] == '\n');
	return s;
}

static void test_samples(void)
{
	struct metrics_snapshot m;
	fill(&m);
	char *t = render(&m);
	CHECK_LINE(t, "alignd_build_info{version=\"1.2.3\"} 1");
	CHECK_LINE(t, "alignd_start_time_seconds 1700000000");
	CHECK_LINE(t, "alignd_uptime_seconds 42");
	CHECK_LINE(t, "alignd_connections_open 3");
	CHECK_LINE(t, "alignd_connections_total 17");
	CHECK_LINE(t, "alignd_request_errors_total{class=\"4xx\"} 2");
	CHECK_LINE(t, "alignd_request_errors_total{class=\"5xx\"} 1");
	CHECK_LINE(t, "alignd_scans_started_total 12");
	CHECK_LINE(t, "# TYPE alignd_scans_total counter");
	CHECK_LINE(t, "alignd_scans_total{action=\"accept\"} 7");
	CHECK_LINE(t, "alignd_scans_total{action=\"quarantine\"} 2");
	CHECK_LINE(t, "alignd_scans_total{action=\"reject\"} 2");
	CHECK_LINE(t, "alignd_scans_total{action=\"tempfail\"} 1");
	CHECK_LINE(t, "alignd_dmarc_overrides_total{reason=\"mailing_list\"} 5");
	CHECK_LINE(t, "alignd_dmarc_overrides_total{reason=\"forwarded\"} 0");
	CHECK_LINE(t, "alignd_spf_results_total{identity=\"mailfrom\",result=\"pass\"} 9");
	CHECK_LINE(t, "alignd_spf_results_total{identity=\"helo\",result=\"none\"} 3");
	CHECK_LINE(t, "alignd_spf_results_total{identity=\"helo\",result=\"softfail\"} 0");
	CHECK_LINE(t, "alignd_dkim_results_total{algorithm=\"rsa-sha256\",result=\"pass\"} 6");
	CHECK_LINE(t, "alignd_dkim_results_total{algorithm=\"ed25519-sha256\",result=\"fail\"} 1");
	CHECK_LINE(t, "alignd_dmarc_results_total{result=\"fail\",disposition=\"reject\"} 2");
	CHECK_LINE(t, "alignd_dmarc_results_total{result=\"pass\",disposition=\"none\"} 0");
	/* results that do not exist for a check are not written */
	CHECK(!strstr(t, "alignd_spf_results_total{identity=\"mailfrom\",result=\"policy\"}"));
	CHECK(!strstr(t, "alignd_dkim_results_total{algorithm=\"rsa-sha256\",result=\"softfail\"}"));
	CHECK(!strstr(t, "alignd_dkim_results_total{algorithm=\"rsa-sha256\",result=\"none\"}"));
	CHECK_LINE(t, "alignd_dns_lookups_total 20");
	CHECK_LINE(t, "alignd_dns_lookups_in_flight 1");
	CHECK_LINE(t, "alignd_dns_cache_hits_total 4");
	CHECK_LINE(t, "alignd_dns_cache_misses_total 15");
	CHECK_LINE(t, "alignd_dns_failures_total{kind=\"timeout\"} 2");
	CHECK_LINE(t, "alignd_dkim_jobs_total 8");
	CHECK_LINE(t, "alignd_dkim_key_cache_hits_total 5");
	CHECK_LINE(t, "alignd_dkim_key_cache_misses_total 3");
	CHECK_LINE(t, "alignd_dkim_key_cache_entries 3");
	CHECK_LINE(t, "alignd_history_queued 1");
	CHECK_LINE(t, "alignd_history_written_total 10");
	CHECK_LINE(t, "alignd_history_dropped_total 2");
	free(t);
}

static void test_histogram(void)
{
	struct metrics_snapshot m;
	fill(&m);
	char *t = render(&m);
	CHECK_LINE(t, "# TYPE alignd_scan_duration_seconds histogram");
	CHECK_LINE(t, "alignd_scan_duration_seconds_bucket{le=\"0.001\"} 2");
	CHECK_LINE(t, "alignd_scan_duration_seconds_bucket{le=\"0.0025\"} 3");
	CHECK_LINE(t, "alignd_scan_duration_seconds_bucket{le=\"0.25\"} 3");
	CHECK_LINE(t, "alignd_scan_duration_seconds_bucket{le=\"0.5\"} 4");
	CHECK_LINE(t, "alignd_scan_duration_seconds_bucket{le=\"10\"} 4");
	CHECK_LINE(t, "alignd_scan_duration_seconds_bucket{le=\"+Inf\"} 5");
	CHECK_LINE(t, "alignd_scan_duration_seconds_count 5");
	/* 500 + 1000 + 1001 + 300000 + 60000000 us */
	CHECK_LINE(t, "alignd_scan_duration_seconds_sum 60.302501");
	CHECK_LINE(t, "alignd_dns_lookup_duration_seconds_bucket{le=\"0.01\"} 0");
	CHECK_LINE(t, "alignd_dns_lookup_duration_seconds_bucket{le=\"0.025\"} 1");
	CHECK_LINE(t, "alignd_dns_lookup_duration_seconds_sum 0.020000");
	/* buckets never decrease, +Inf last */
	const char *p = strstr(t, "alignd_scan_duration_seconds_bucket");
	unsigned long prev = 0;
	int n = 0;
	while (p && strncmp(p, "alignd_scan_duration_seconds_bucket", 35) == 0) {
		const char *sp = strchr(p, ' ');
		unsigned long v = strtoul(sp + 1, NULL, 10);
		CHECK(v >= prev);
		prev = v;
		n++;
		p = strchr(p, '\n') + 1;
	}
	CHECK(n == HISTO_BOUNDS + 1);
	free(t);
}

/* Every sample's family has "# HELP" then "# TYPE" before it, once. */
static void test_structure(void)
{
	struct metrics_snapshot m;
	fill(&m);
	char *t = render(&m);
	char family[128] = "", typed[128] = "";
	int helped = 0, samples = 0;
	for (char *line = t, *nl; *line; line = nl + 1) {
		nl = strchr(line, '\n');
		CHECK(nl != NULL);
		if (!nl)
			break;
		*nl = '\0';
		if (strncmp(line, "# HELP ", 7) == 0) {
			size_t k = strcspn(line + 7, " ");
			CHECK(k < sizeof(family));
			snprintf(family, sizeof(family), "%.*s", (int)k, line + 7);
			/* a family is written once */
			CHECK(strstr(nl + 1, line) == NULL);
			helped = 1;
			continue;
		}
		if (strncmp(line, "# TYPE ", 7) == 0) {
			CHECK(helped);
			size_t k = strcspn(line + 7, " ");
			snprintf(typed, sizeof(typed), "%.*s", (int)k, line + 7);
			CHECK_STR(typed, family);
			const char *type = line + 7 + k + 1;
			CHECK(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
			      strcmp(type, "histogram") == 0);
			/* counters end in _total (Prometheus naming) */
			if (strcmp(type, "counter") == 0)
				CHECK(k > 6 && strncmp(line + 7 + k - 6, "_total", 6) == 0);
			helped = 0;
			continue;
		}
		CHECK(line[0] != '#');
		samples++;
		CHECK(strncmp(line, typed, strlen(typed)) == 0);
		char after = line[strlen(typed)];
		CHECK(after == ' ' || after == '{' || after == '_');
	}
	CHECK(samples > 100);
	free(t);
}

static void test_optional_and_escaping(void)
{
	struct metrics_snapshot m;
	fill(&m);
	m.have_dns = 0;
	m.have_dkim_keys = 0;
	m.have_history = 0;
	m.version = "a\"b\\c\nd";
	char *t = render(&m);
	CHECK(!strstr(t, "alignd_dns_"));
	CHECK(!strstr(t, "alignd_dkim_key_cache"));
	CHECK(!strstr(t, "alignd_history_"));
	CHECK_LINE(t, "alignd_dkim_jobs_total 8");
	CHECK_LINE(t, "alignd_build_info{version=\"a\\\"b\\\\c\\nd\"} 1");
	free(t);
	m.version = NULL;
	t = render(&m);
	CHECK_LINE(t, "alignd_build_info{version=\"unknown\"} 1");
	free(t);
}

/* A capped buffer says that the text did not fit. */
static void test_cap(void)
{
	struct metrics_snapshot m;
	fill(&m);
	struct buf b;
	buf_init(&b, 256);
	metrics_write(&m, &b);
	CHECK(b.failed);
	buf_free(&b);
}

int main(void)
{
	test_samples();
	test_histogram();
	test_structure();
	test_optional_and_escaping();
	test_cap();
	return check_done("metrics");
}
