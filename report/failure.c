/* DMARC failure reports (RFC 9991) in the authentication failure format of
 * RFC 6591 (ARF, RFC 5965): one message per failing message. Any thread;
 * no I/O. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/limits.h"
#include "common/text.h"
#include "report/report.h"

static const char *delivery_name(enum rpt_delivery d)
{
	switch (d) {
	case RPT_DELIVERED: return "delivered";
	case RPT_SPAM:      return "spam";
	case RPT_POLICY:    return "policy";
	case RPT_REJECT:    return "reject";
	case RPT_OTHER:     break;
	}
	return "other";
}

/* One value on one line: printable ASCII only (a CR or LF from a message or
 * DNS would start a field of its own). */
static void add_value(struct buf *b, const char *s)
{
	char tmp[LIM_REPORT_FIELD];
	size_t n = text_printable(tmp, sizeof(tmp), s ? s : "", s ? strlen(s) : 0);
	buf_add(b, tmp, n);
}

static void add_field(struct buf *b, const char *name, const char *value)
{
	if (!value || !*value)
		return;
	buf_adds(b, name);
	buf_adds(b, ": ");
	add_value(b, value);
	buf_adds(b, "\r\n");
}

/* RFC 6590 redaction: fields that name the recipients. */
static int names_recipients(const char *line, size_t n)
{
	static const char *const fields[] = { "to", "cc", "bcc", "delivered-to", "x-original-to",
		"envelope-to", "resent-to", "resent-cc", "resent-bcc", "apparently-to" };
	const char *colon = memchr(line, ':', n);
	if (!colon)
		return 0;
	size_t fl = (size_t)(colon - line);
	while (fl && (line[fl - 1] == ' ' || line[fl - 1] == '\t'))
		fl--;
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (text_ieq(line, fl, fields[i]))
			return 1;
	return 0;
}

/* The original header section, CRLF line ends, folding kept, any other
 * byte outside printable ASCII made '?'; with redact, the value of each
 * recipient field (and its continuation lines) replaced. */
static void add_headers(struct buf *b, const char *h, size_t len, int redact)
{
	size_t off = 0;
	int hiding = 0;
	while (off < len) {
		const char *nl = memchr(h + off, '\n', len - off);
		size_t end = nl ? (size_t)(nl - h) : len;
		size_t n = end - off;
		if (n && h[off + n - 1] == '\r')
			n--;
		const char *line = h + off;
		off = nl ? end + 1 : len;
		if (n == 0)
			break;                   /* the end of the header section */
		int cont = line[0] == ' ' || line[0] == '\t';
		if (!cont)
			hiding = redact && names_recipients(line, n);
		if (hiding) {
			if (!cont) {
				const char *colon = memchr(line, ':', n);
				buf_add(b, line, (size_t)(colon - line) + 1);
				buf_adds(b, " (redacted)\r\n");
			}
			continue;
		}
		for (size_t i = 0; i < n; i++) {
			char c = line[i];
			if (!(c == '\t' || (c >= 0x20 && c < 0x7f)))
				c = '?';
			buf_add(b, &c, 1);
		}
		buf_adds(b, "\r\n");
	}
}

static void redact_addr(char *dst, size_t cap, const char *addr, int redact)
{
	const char *at = addr ? strrchr(addr, '@') : NULL;
	if (!redact || !at)
		snprintf(dst, cap, "%s", addr ? addr : "");
	else
		snprintf(dst, cap, "redacted@%s", at + 1);
}

int rpt_failure_message(const struct rpt_meta *m, const struct rpt_failure *f,
                        const char *to, int64_t date, struct buf *out)
{
	char dbuf[64], abuf[64], tmp[LIM_REPORT_ADDR + 16];
	time_t t = (time_t)date, ta = (time_t)f->arrival;
	struct tm tm;
	if (!gmtime_r(&t, &tm) || !strftime(dbuf, sizeof(dbuf), "%a, %d %b %Y %H:%M:%S +0000", &tm) ||
	    !gmtime_r(&ta, &tm) || !strftime(abuf, sizeof(abuf), "%a, %d %b %Y %H:%M:%S +0000", &tm))
		return -1;
	/* "=_" never occurs in what goes between the boundaries: base64 is not
	 * used, and header values are printable text checked here */
	const char *boundary = "=_alignd_failure_report";
	if ((f->headers && memmem(f->headers, f->headers_len, boundary, strlen(boundary))) ||
	    (f->subject && strstr(f->subject, boundary)))
		return -1;

	add_field(out, "From", m->email);
	add_field(out, "To", to);
	buf_adds(out, "Subject: DMARC failure report for ");
	add_value(out, f->reported_domain);
	buf_adds(out, " from ");
	add_value(out, f->source_ip);
	buf_adds(out, "\r\n");
	buf_printf(out, "Date: %s\r\n", dbuf);
	buf_printf(out, "Message-ID: <failure.%lld.", (long long)f->arrival);
	for (const char *p = f->source_ip; p && *p; p++)
		buf_add(out, (*p == ':' ? "-" : p), 1);
	buf_adds(out, ".");
	add_value(out, f->reported_domain);
	buf_adds(out, "@");
	add_value(out, m->receiver);
	buf_adds(out, ">\r\n");
	buf_adds(out, "Auto-Submitted: auto-generated\r\n");
	buf_adds(out, "MIME-Version: 1.0\r\n");
	buf_printf(out, "Content-Type: multipart/report; report-type=feedback-report;\r\n"
	                "\tboundary=\"%s\"\r\n\r\n", boundary);
	buf_adds(out, "This is a DMARC failure report (RFC 9991) in MIME format.\r\n\r\n");

	/* 1: for people */
	buf_printf(out, "--%s\r\n", boundary);
	buf_adds(out, "Content-Type: text/plain; charset=us-ascii\r\n"
	              "Content-Transfer-Encoding: 7bit\r\n\r\n");
	buf_adds(out, "A message claiming to be from ");
	add_value(out, f->reported_domain);
	buf_adds(out, " failed DMARC at ");
	add_value(out, m->receiver);
	buf_adds(out, ".\r\nIt came from ");
	add_value(out, f->source_ip);
	buf_printf(out, " on %s; it was handled as: %s.\r\n", abuf, delivery_name(f->delivery));
	if (f->subject) {
		buf_adds(out, "Its Subject was: ");
		add_value(out, f->subject);
		buf_adds(out, "\r\n");
	}

	/* 2: the machine-readable part (RFC 5965 3.1, RFC 6591 3.1) */
	buf_printf(out, "\r\n--%s\r\n", boundary);
	buf_adds(out, "Content-Type: message/feedback-report\r\n\r\n");
	buf_adds(out, "Feedback-Type: auth-failure\r\n");
	buf_adds(out, "User-Agent: alignd\r\n");
	buf_adds(out, "Version: 1\r\n");
	redact_addr(tmp, sizeof(tmp), f->mail_from, f->redact);
	buf_adds(out, "Original-Mail-From: <");
	add_value(out, tmp);
	buf_adds(out, ">\r\n");
	if (f->rcpt_to && *f->rcpt_to) {
		redact_addr(tmp, sizeof(tmp), f->rcpt_to, f->redact);
		buf_adds(out, "Original-Rcpt-To: <");
		add_value(out, tmp);
		buf_adds(out, ">\r\n");
	}
	buf_printf(out, "Arrival-Date: %s\r\n", abuf);
	if (m->receiver) {
		buf_adds(out, "Reporting-MTA: dns; ");
		add_value(out, m->receiver);
		buf_adds(out, "\r\n");
	}
	add_field(out, "Source-IP", f->source_ip);
	add_field(out, "Authentication-Results", f->auth_results);
	buf_adds(out, "Auth-Failure: dmarc\r\n");
	buf_printf(out, "Delivery-Result: %s\r\n", delivery_name(f->delivery));
	add_field(out, "Reported-Domain", f->reported_domain);
	/* RFC 9991: which mechanisms produced an aligned identifier */
	buf_printf(out, "Identity-Alignment: %s\r\n",
	           f->dkim_aligned && f->spf_aligned ? "dkim, spf"
	           : f->dkim_aligned ? "dkim" : f->spf_aligned ? "spf" : "none");
	add_field(out, "DKIM-Domain", f->dkim_domain);
	add_field(out, "DKIM-Selector", f->dkim_selector);

	/* 3: the original header section */
	buf_printf(out, "\r\n--%s\r\n", boundary);
	buf_adds(out, "Content-Type: text/rfc822-headers\r\n\r\n");
	if (f->headers)
		add_headers(out, f->headers, f->headers_len, f->redact);
	buf_printf(out, "\r\n--%s--\r\n", boundary);
	return out->failed ? -1 : 0;
}
