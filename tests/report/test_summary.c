/* The administrator's summary (report/summary.c) on fixed messages: counts
 * per author domain, failing sources in order, the top-N cut, text and
 * JSON (parsed back by the caller's Python when run from meson; here
 * checked for its key figures), and untrusted text made safe. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report/summary.h"

static int failures;

#define CHECK(c, ...) do { if (!(c)) { failures++; fprintf(stderr, "FAIL %s:%d: ", \
	__FILE__, __LINE__); fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

static void add(struct rpt_summary *s, const char *from, const char *ip, int dkim, int spf,
                enum rpt_disp d, const char *env, int override)
{
	struct rpt_reason r = { RPT_OVR_MAILING_LIST, NULL };
	struct rpt_msg m = {
		.time = 1765000000, .source_ip = ip, .header_from = from, .envelope_from = env,
		.disposition = d, .dkim_aligned = dkim, .spf_aligned = spf,
		.reasons = override ? &r : NULL, .n_reasons = override ? 1 : 0,
	};
	CHECK(rpt_summary_add(s, &m) == 0, "add");
}

static const char *after(const char *hay, const char *needle, const char *from)
{
	const char *p = strstr(from ? from : hay, needle);
	return p ? p + strlen(needle) : NULL;
}

int main(void)
{
	struct rpt_summary *s = rpt_summary_new();
	CHECK(s != NULL, "new");
	/* example.com: 5 pass, 7 failing from three sources */
	for (int i = 0; i < 5; i++)
		add(s, "example.com", "192.0.2.25", 1, i & 1, RPT_DISP_PASS, "example.com", 0);
	for (int i = 0; i < 4; i++)
		add(s, "example.com", "203.0.113.9", 0, 0, RPT_DISP_REJECT, "attacker.test", 0);
	add(s, "example.com", "198.51.100.7", 0, 0, RPT_DISP_QUARANTINE, "list.example", 1);
	add(s, "example.com", "198.51.100.7", 0, 0, RPT_DISP_NONE, "list.example", 1);
	add(s, "EXAMPLE.COM", "2001:db8::1", 0, 0, RPT_DISP_REJECT, NULL, 0);
	/* a clean domain and one with a hostile envelope domain */
	add(s, "clean.example", "192.0.2.1", 1, 1, RPT_DISP_PASS, NULL, 0);
	add(s, "evil.example", "192.0.2.66", 0, 0, RPT_DISP_REJECT, "x\"y\\z\r\nInjected: 1", 0);
	CHECK(rpt_summary_dropped(s) == 0, "dropped");

	struct buf out;
	buf_init(&out, 0);
	CHECK(rpt_summary_text(s, 1764400000, 1765100000, 2, &out) == 0, "text");
	CHECK(buf_add(&out, "", 1) == 0, "nul");
	const char *t = out.data;
	printf("%s", t);
	CHECK(strstr(t, "14 messages, 8 failing DMARC, 3 author domains") != NULL, "totals");
	/* case-insensitive domains: EXAMPLE.COM counted with example.com */
	CHECK(strstr(t, "example.com: 12 messages, 5 pass, 7 fail (5 rejected, 1 quarantined, "
	                "1 delivered; 2 by an override)") != NULL, "example.com line");
	/* most failing first; the top-2 cut leaves out 2001:db8::1 */
	const char *a = strstr(t, "203.0.113.9"), *b = strstr(t, "198.51.100.7");
	CHECK(a && b && a < b, "order of sources");
	CHECK(strstr(t, "4 failing of 4, envelope from attacker.test") != NULL, "source line");
	CHECK(strstr(t, "2001:db8::1") == NULL, "top cut");
	/* the passing domain lists no source; domains by failures first */
	const char *e = strstr(t, "\nexample.com:"), *v = strstr(t, "\nevil.example:"),
	           *c = strstr(t, "\nclean.example:");
	CHECK(e && v && c && e < v && v < c, "order of domains");
	CHECK(strstr(t, "192.0.2.1 ") == NULL, "no passing source");
	/* untrusted text cannot start a line of its own */
	CHECK(strstr(t, "\nInjected") == NULL, "CR LF from the store");
	buf_free(&out);

	buf_init(&out, 0);
	CHECK(rpt_summary_json(s, 1764400000, 1765100000, 0, &out) == 0, "json");
	CHECK(buf_add(&out, "", 1) == 0, "nul");
	t = out.data;
	printf("%s", t);
	CHECK(strncmp(t, "{\"since\":1764400000,\"until\":1765100000,\"messages\":14,\"failing\":8,", 64) == 0,
	      "json head");
	CHECK(strstr(t, "\"ip\":\"2001:db8::1\"") != NULL, "top 0 lists all");
	CHECK(strstr(t, "\"failing_dispositions\":{\"reject\":5,\"quarantine\":1,\"none\":1}") != NULL,
	      "json dispositions");
	CHECK(strstr(t, "x\\\"y\\\\z") != NULL, "json escapes");
	CHECK(strchr(t, '\r') == NULL, "json has no CR");
	const char *p = after(t, "\"domain\":\"example.com\"", NULL);
	CHECK(p && after(t, "\"ip\":\"203.0.113.9\"", p), "json source under its domain");
	buf_free(&out);

	/* empty */
	rpt_summary_free(&s);
	CHECK(s == NULL, "free clears");
	s = rpt_summary_new();
	buf_init(&out, 0);
	CHECK(rpt_summary_text(s, 0, 86400, 10, &out) == 0, "empty text");
	CHECK(out.len > 0 && strstr(out.data, "0 messages") != NULL, "empty says so");
	buf_free(&out);
	buf_init(&out, 0);
	CHECK(rpt_summary_json(s, 0, 86400, 10, &out) == 0 && strstr(out.data, "\"domains\":[]"),
	      "empty json");
	buf_free(&out);
	rpt_summary_free(&s);
	if (failures)
		fprintf(stderr, "%d failures\n", failures);
	return failures ? 1 : 0;
}
