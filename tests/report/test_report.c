/* Aggregate report builder on fixed records: schema validity (the RFC 9990
 * XSD, through libxml2), grouping and counts, stability, hostile values,
 * gzip round trip, file name. With "--write DIR" it also writes the XML,
 * the gzip file and the mail for test_mime.py to check with other tools. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/xmlschemas.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
#include <zlib.h>

#include "report/report.h"

static int failures;
#define CHECK(c) do { if (!(c)) { fprintf(stderr, "%s:%d: failed: %s\n", __FILE__, __LINE__, #c); failures++; } } while (0)

static xmlSchemaPtr schema;

static int validates(const struct buf *xml)
{
	xmlDocPtr doc = xmlReadMemory(xml->data, (int)xml->len, "report.xml", NULL, XML_PARSE_NONET);
	if (!doc)
		return 0;
	xmlSchemaValidCtxtPtr v = xmlSchemaNewValidCtxt(schema);
	int rc = xmlSchemaValidateDoc(v, doc);
	xmlSchemaFreeValidCtxt(v);
	xmlFreeDoc(doc);
	return rc == 0;
}

/* Number of nodes an XPath expression selects, or the sum of their values
 * with sum != 0. */
static long xpath_num(const struct buf *xml, const char *expr)
{
	xmlDocPtr doc = xmlReadMemory(xml->data, (int)xml->len, "report.xml", NULL, XML_PARSE_NONET);
	if (!doc)
		return -1;
	xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
	xmlXPathRegisterNs(ctx, BAD_CAST "d", BAD_CAST "urn:ietf:params:xml:ns:dmarc-2.0");
	xmlXPathObjectPtr o = xmlXPathEvalExpression(BAD_CAST expr, ctx);
	long r = -1;
	if (o && o->type == XPATH_NUMBER)
		r = (long)o->floatval;
	xmlXPathFreeObject(o);
	xmlXPathFreeContext(ctx);
	xmlFreeDoc(doc);
	return r;
}

static const struct rpt_meta meta = {
	.org_name = "Example Receiver", .email = "dmarc-reports@mx.example.net",
	.receiver = "mx.example.net", .generator = "alignd",
	.begin = 1764979200, .end = 1764979200 + 86399,   /* 2025-12-06 UTC */
};

static const struct rpt_dkim sig_pass[] = { { "example.com", "s1", AUTH_PASS, NULL } };
static const struct rpt_dkim sig_two[] = {
	{ "list.example.org", "l1", AUTH_PASS, NULL },
	{ "example.com", "s1", AUTH_FAIL, "body hash did not verify" },
};
static const struct rpt_dkim sig_two_swapped[] = {
	{ "example.com", "s1", AUTH_FAIL, "body hash did not verify" },
	{ "list.example.org", "l1", AUTH_PASS, NULL },
};
static const struct rpt_reason ovr_list[] = {
	{ RPT_OVR_MAILING_LIST, "list.example.org: valid list signature" },
};
static const struct rpt_reason ovr_arc[] = {
	{ RPT_OVR_OTHER, "arc=pass, trusted sealer esp.example" },
	{ RPT_OVR_LOCAL_POLICY, NULL },
};
static const struct rpt_reason ovr_arc_swapped[] = {
	{ RPT_OVR_LOCAL_POLICY, NULL },
	{ RPT_OVR_OTHER, "arc=pass, trusted sealer esp.example" },
};

#define POL_REJECT { "example.com", RPT_POL_REJECT, RPT_POL_UNSET, RPT_POL_REJECT, 'r', 's', 0, 1, NULL }
#define POL_QUAR   { "example.com", RPT_POL_QUARANTINE, RPT_POL_NONE, RPT_POL_UNSET, 0, 0, 1, 1, "1" }

static struct rpt_msg msgs[] = {
	/* 3 identical passes from one source: one record, count 3 */
	{ 1764980000, "192.0.2.1", "example.com", "example.com", "example.net", RPT_DISP_PASS, 1, 1, NULL, 0, sig_pass, 1, "example.com", AUTH_PASS, POL_QUAR },
	{ 1764981000, "192.0.2.1", "example.com", "example.com", "example.net", RPT_DISP_PASS, 1, 1, NULL, 0, sig_pass, 1, "example.com", AUTH_PASS, POL_QUAR },
	{ 1764982000, "192.0.2.1", "example.com", "example.com", "example.net", RPT_DISP_PASS, 1, 1, NULL, 0, sig_pass, 1, "example.com", AUTH_PASS, POL_QUAR },
	/* a list: signatures in either order are one record, count 2 */
	{ 1764983000, "198.51.100.7", "example.com", "list.example.org", "example.net", RPT_DISP_NONE, 0, 0, ovr_list, 1, sig_two, 2, "list.example.org", AUTH_PASS, POL_QUAR },
	{ 1764984000, "198.51.100.7", "example.com", "list.example.org", "example.net", RPT_DISP_NONE, 0, 0, ovr_list, 1, sig_two_swapped, 2, "list.example.org", AUTH_PASS, POL_QUAR },
	/* ARC override, reasons in either order: one record, count 2 */
	{ 1764985000, "203.0.113.9", "example.com", "esp.example", NULL, RPT_DISP_QUARANTINE, 0, 0, ovr_arc, 2, NULL, 0, "esp.example", AUTH_SOFTFAIL, POL_QUAR },
	{ 1764986000, "203.0.113.9", "example.com", "esp.example", NULL, RPT_DISP_QUARANTINE, 0, 0, ovr_arc_swapped, 2, NULL, 0, "esp.example", AUTH_SOFTFAIL, POL_QUAR },
	/* direct spoofs, no SPF result; the latest message: its policy is published */
	{ 1765060000, "2001:db8::1", "example.com", NULL, NULL, RPT_DISP_REJECT, 0, 0, NULL, 0, NULL, 0, NULL, AUTH_NONE, POL_REJECT },
	/* hostile values: markup, control bytes and bytes that are not UTF-8 */
	{ 1764987000, "<x>&\x01\xff", "exa\"mple.com", "a\x1b]0;b", "c\xc3", RPT_DISP_REJECT, 0, 0, NULL, 0, NULL, 0, "<spf>\x02", AUTH_FAIL, POL_QUAR },
	/* skipped: another policy domain, and outside the period */
	{ 1764980000, "192.0.2.2", "other.example", "other.example", NULL, RPT_DISP_PASS, 1, 1, NULL, 0, NULL, 0, NULL, AUTH_NONE,
	  { "other.example", RPT_POL_NONE, RPT_POL_UNSET, RPT_POL_UNSET, 0, 0, 0, 1, NULL } },
	{ 1764979199, "192.0.2.3", "example.com", NULL, NULL, RPT_DISP_PASS, 1, 1, NULL, 0, NULL, 0, NULL, AUTH_NONE, POL_QUAR },
};
#define NMSGS (sizeof(msgs) / sizeof(msgs[0]))

static int build(const struct rpt_msg *m, size_t n, const char *domain, struct buf *out)
{
	const char *err = NULL;
	buf_init(out, 0);
	return rpt_aggregate_xml(&meta, domain, m, n, out, &err);
}

static int write_file(const char *dir, const char *name, const void *p, size_t n)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	int ok = fwrite(p, 1, n, f) == n;
	return fclose(f) == 0 && ok ? 0 : -1;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s SCHEMA.xsd [--write DIR]\n", argv[0]);
		return 2;
	}
	xmlSchemaParserCtxtPtr pc = xmlSchemaNewParserCtxt(argv[1]);
	schema = pc ? xmlSchemaParse(pc) : NULL;
	xmlSchemaFreeParserCtxt(pc);
	if (!schema) {
		fprintf(stderr, "cannot load the schema %s\n", argv[1]);
		return 2;
	}

	struct buf xml;
	CHECK(build(msgs, NMSGS, "example.com", &xml) == 0);
	CHECK(validates(&xml));
	/* 9 messages in the period: 5 records (3 + 2 + 2 + 1 + 1) */
	CHECK(xpath_num(&xml, "count(//d:record)") == 5);
	CHECK(xpath_num(&xml, "sum(//d:row/d:count)") == 9);
	CHECK(xpath_num(&xml, "count(//d:record[d:row/d:count=3])") == 1);
	CHECK(xpath_num(&xml, "count(//d:record[d:row/d:count=2])") == 2);
	CHECK(xpath_num(&xml, "count(//d:source_ip[.='192.0.2.2' or .='192.0.2.3'])") == 0);
	/* the latest message's record is the one published */
	CHECK(xpath_num(&xml, "count(/d:feedback/d:policy_published[d:p='reject' and d:np='reject' and d:adkim='r' and d:aspf='s' and not(d:sp)])") == 1);
	CHECK(xpath_num(&xml, "count(//d:reason[d:type='mailing_list'])") == 1);
	CHECK(xpath_num(&xml, "count(//d:record[d:row/d:policy_evaluated/d:disposition='quarantine']/d:row/d:policy_evaluated/d:reason)") == 2);
	CHECK(xpath_num(&xml, "count(//d:spf[d:result='softfail' and d:scope='mfrom'])") == 1);
	CHECK(xpath_num(&xml, "count(//d:record[d:row/d:source_ip='2001:db8::1']/d:auth_results/*)") == 0);
	CHECK(strstr(xml.data, "<source_ip>&lt;x&gt;&amp;?" "?</source_ip>") != NULL);
	CHECK(memchr(xml.data, '\x1b', xml.len) == NULL && memchr(xml.data, '\x01', xml.len) == NULL);

	/* the same messages in another order: the same bytes */
	struct rpt_msg rev[NMSGS];
	for (size_t i = 0; i < NMSGS; i++)
		rev[i] = msgs[NMSGS - 1 - i];
	struct buf xml2;
	CHECK(build(rev, NMSGS, "example.com", &xml2) == 0);
	CHECK(xml2.len == xml.len && memcmp(xml2.data, xml.data, xml.len) == 0);
	buf_free(&xml2);

	/* nothing to report */
	struct buf none;
	CHECK(build(msgs, NMSGS, "absent.example", &none) == -1);
	buf_free(&none);
	/* a cap on the output is honoured */
	struct buf small;
	const char *err = NULL;
	buf_init(&small, 100);
	CHECK(rpt_aggregate_xml(&meta, "example.com", msgs, NMSGS, &small, &err) == -1);
	buf_free(&small);

	/* report IDs: stable, distinct per domain and per period */
	char id1[33], id2[33], id3[33];
	rpt_report_id(&meta, "example.com", id1);
	rpt_report_id(&meta, "example.com", id2);
	CHECK(strcmp(id1, id2) == 0 && strlen(id1) == 32);
	rpt_report_id(&meta, "other.example", id3);
	CHECK(strcmp(id1, id3) != 0);
	struct rpt_meta next = meta;
	next.begin += 86400;
	next.end += 86400;
	rpt_report_id(&next, "example.com", id3);
	CHECK(strcmp(id1, id3) != 0);
	char idtxt[64];
	snprintf(idtxt, sizeof(idtxt), "<report_id>%s</report_id>", id1);
	CHECK(strstr(xml.data, idtxt) != NULL);

	/* gzip: inflates back to the XML; the same bytes twice */
	struct buf gz, gz2;
	buf_init(&gz, 0);
	buf_init(&gz2, 0);
	CHECK(rpt_gzip(xml.data, xml.len, &gz) == 0);
	CHECK(rpt_gzip(xml.data, xml.len, &gz2) == 0);
	CHECK(gz.len == gz2.len && memcmp(gz.data, gz2.data, gz.len) == 0);
	CHECK(gz.len > 10 && (unsigned char)gz.data[0] == 0x1f && (unsigned char)gz.data[1] == 0x8b);
	char *back = malloc(xml.len + 1);
	z_stream z;
	memset(&z, 0, sizeof(z));
	CHECK(inflateInit2(&z, 15 + 16) == Z_OK);
	z.next_in = (Bytef *)gz.data;
	z.avail_in = (uInt)gz.len;
	z.next_out = (Bytef *)back;
	z.avail_out = (uInt)xml.len + 1;
	CHECK(inflate(&z, Z_FINISH) == Z_STREAM_END);
	CHECK(z.total_out == xml.len && memcmp(back, xml.data, xml.len) == 0);
	inflateEnd(&z);
	free(back);

	/* file name (RFC 9990 3.2.1) */
	struct buf fn;
	buf_init(&fn, 0);
	CHECK(rpt_filename(&meta, "example.com", id1, &fn) == 0);
	buf_add(&fn, "", 1);
	char want[256];
	snprintf(want, sizeof(want), "mx.example.net!example.com!1764979200!1765065599!%s.xml.gz", id1);
	CHECK(strcmp(fn.data, want) == 0);
	struct buf fn2;
	buf_init(&fn2, 0);
	CHECK(rpt_filename(&meta, "ev!l/../x", id1, &fn2) == 0);
	buf_add(&fn2, "", 1);
	CHECK(strstr(fn2.data, "ev_l_.._x!") != NULL && strchr(fn2.data, '/') == NULL);
	buf_free(&fn2);

	/* the mail */
	struct rpt_mail mail = { "dmarc@rua.example.com",
	                         "Messages from example.com seen by mx.example.net: 9.\n", 1765065600 };
	struct buf eml;
	buf_init(&eml, 0);
	CHECK(rpt_message(&meta, "example.com", id1, &mail, gz.data, gz.len, &eml) == 0);
	buf_add(&eml, "", 1);
	char subj[256];
	snprintf(subj, sizeof(subj), "\r\nSubject: Report Domain: example.com Submitter: mx.example.net Report-ID: <%s@mx.example.net>\r\n", id1);
	CHECK(strstr(eml.data, subj) != NULL);
	CHECK(strstr(eml.data, "\r\nDate: Sun, 07 Dec 2025 00:00:00 +0000\r\n") != NULL);
	struct rpt_mail bad = mail;
	bad.summary = "x --=_alignd_report_boundary-- y";
	struct buf eml2;
	buf_init(&eml2, 0);
	CHECK(rpt_message(&meta, "example.com", id1, &bad, gz.data, gz.len, &eml2) == -1);
	buf_free(&eml2);

	/* many messages, many groups: the table grows, counts stay exact */
	struct rpt_agg *a = rpt_agg_new(&meta, "example.com");
	CHECK(a != NULL);
	char ips[300][32];
	for (int i = 0; i < 300; i++)
		snprintf(ips[i], sizeof(ips[i]), "10.0.%d.%d", i / 256, i % 256);
	for (int i = 0; i < 30000; i++) {
		struct rpt_msg m = msgs[0];
		m.source_ip = ips[(i * 7) % 300];
		m.time = meta.begin + i;
		m.disposition = (i / 300) % 2 ? RPT_DISP_PASS : RPT_DISP_NONE;
		CHECK(rpt_agg_add(a, &m) == 1);
	}
	CHECK(rpt_agg_add(a, &msgs[9]) == 0 && rpt_agg_add(a, &msgs[10]) == 0);
	CHECK(rpt_agg_messages(a) == 30000 && rpt_agg_records(a) == 600);
	struct buf big;
	buf_init(&big, 0);
	CHECK(rpt_agg_xml(a, &big, &err) == 0);
	CHECK(validates(&big));
	CHECK(xpath_num(&big, "sum(//d:row/d:count)") == 30000);
	CHECK(xpath_num(&big, "count(//d:record)") == 600);
	buf_free(&big);
	rpt_agg_free(&a);
	CHECK(a == NULL);

	/* a failure report: hostile bytes in the header section stay inside
	 * their part, recipients are redacted */
	static const char orig[] =
		"Received: from evil (evil [203.0.113.9])\r\n\tby mx.example.net\r\n"
		"From: CEO <ceo@example.com>\r\n"
		"To: Victim <victim@example.net>,\r\n\tother@example.net\r\n"
		"Subject: wire \x01\xe9 now\r\n"
		"Cc: boss@example.net\r\n"
		"\r\n"
		"body that must not be included\r\n";
	struct rpt_failure fr = {
		.arrival = 1764990000, .source_ip = "203.0.113.9", .mail_from = "x@evil.example",
		.rcpt_to = "victim@example.net", .reported_domain = "example.com",
		.auth_results = "mx.example.net; spf=fail smtp.mailfrom=evil.example;\r\n dmarc=fail",
		.delivery = RPT_REJECT, .dkim_domain = "example.com", .dkim_selector = "s1",
		.headers = orig, .headers_len = sizeof(orig) - 1, .subject = "wire \x01 now\r\nBcc: x@y",
		.redact = 1,
	};
	struct buf fail;
	buf_init(&fail, 0);
	CHECK(rpt_failure_message(&meta, &fr, "ruf@example.com", 1764990100, &fail) == 0);
	buf_add(&fail, "", 1);
	CHECK(strstr(fail.data, "body that must not") == NULL);
	CHECK(strstr(fail.data, "victim@") == NULL && strstr(fail.data, "boss@") == NULL &&
	      strstr(fail.data, "other@") == NULL);
	CHECK(strstr(fail.data, "\r\nTo: (redacted)\r\n") != NULL);
	CHECK(strstr(fail.data, "\r\nOriginal-Rcpt-To: <redacted@example.net>\r\n") != NULL);
	CHECK(strstr(fail.data, "\r\nBcc: x@y") == NULL);
	CHECK(strstr(fail.data, "\r\nIdentity-Alignment: none\r\n") != NULL);
	CHECK(strstr(fail.data, "\r\n\tby mx.example.net\r\n") != NULL);

	if (argc == 4 && strcmp(argv[2], "--write") == 0) {
		CHECK(write_file(argv[3], "failure.eml", fail.data, fail.len - 1) == 0);
		CHECK(write_file(argv[3], "report.xml", xml.data, xml.len) == 0);
		CHECK(write_file(argv[3], fn.data, gz.data, gz.len) == 0);
		CHECK(write_file(argv[3], "report.eml", eml.data, eml.len - 1) == 0);
	}
	buf_free(&fail);
	buf_free(&fn);
	buf_free(&eml);
	buf_free(&gz);
	buf_free(&gz2);
	buf_free(&xml);
	xmlSchemaFree(schema);
	xmlCleanupParser();
	if (failures) {
		fprintf(stderr, "%d checks failed\n", failures);
		return 1;
	}
	printf("report: all checks passed\n");
	return 0;
}
