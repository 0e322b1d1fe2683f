/* Packaging an aggregate report for mail (RFC 9990 section 3.2): gzip, the
 * file name, the Subject and the MIME message. Any thread; no I/O. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <zlib.h>

#include "common/limits.h"
#include "common/text.h"
#include "report/report.h"

int rpt_gzip(const void *data, size_t len, struct buf *out)
{
	z_stream z;
	memset(&z, 0, sizeof(z));
	/* 15 + 16: a gzip wrapper; deflate writes no name and MTIME 0 unless a
	 * header is set, which keeps the output a function of the input. */
	if (deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return -1;
	uLong bound = deflateBound(&z, (uLong)len);
	if (buf_reserve(out, bound) < 0) {
		deflateEnd(&z);
		return -1;
	}
	z.next_in = (Bytef *)(uintptr_t)data;
	z.avail_in = (uInt)len;
	z.next_out = (Bytef *)out->data + out->len;
	z.avail_out = (uInt)bound;
	int zr = deflate(&z, Z_FINISH);
	size_t produced = bound - z.avail_out;
	deflateEnd(&z);
	if (zr != Z_STREAM_END)
		return -1;
	out->len += produced;
	return 0;
}

/* Report file names and Subjects are built from domain names that came from
 * DNS and messages: only letters, digits, '-', '.' and '_' pass. */
static void add_name(struct buf *b, const char *s)
{
	for (; s && *s; s++) {
		char c = *s;
		int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		         (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
		buf_add(b, ok ? &c : "_", 1);
	}
}

int rpt_filename(const struct rpt_meta *m, const char *policy_domain,
                 const char *id, struct buf *out)
{
	add_name(out, m->receiver);
	buf_adds(out, "!");
	add_name(out, policy_domain);
	buf_printf(out, "!%lld!%lld!", (long long)m->begin, (long long)m->end);
	add_name(out, id);
	buf_adds(out, ".xml.gz");
	return out->failed ? -1 : 0;
}

static void add_base64(struct buf *b, const unsigned char *p, size_t n)
{
	static const char t[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t col = 0;
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)p[i] << 16;
		if (i + 1 < n)
			v |= (unsigned)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		char q[4] = { t[(v >> 18) & 63], t[(v >> 12) & 63],
		              i + 1 < n ? t[(v >> 6) & 63] : '=',
		              i + 2 < n ? t[v & 63] : '=' };
		buf_add(b, q, 4);
		col += 4;
		if (col == 76) {      /* RFC 2045 6.8: lines of at most 76 characters */
			buf_adds(b, "\r\n");
			col = 0;
		}
	}
	if (col)
		buf_adds(b, "\r\n");
}

/* A text part goes out as written but for line ends, made CRLF, and bytes
 * outside printable ASCII, which become '?'. */
static void add_text(struct buf *b, const char *s)
{
	const char *line = s;
	while (line && *line) {
		const char *nl = strchr(line, '\n');
		size_t n = nl ? (size_t)(nl - line) : strlen(line);
		if (n && line[n - 1] == '\r')
			n--;
		char tmp[LIM_REPORT_FIELD];
		size_t k = text_printable(tmp, sizeof(tmp), line, n);
		buf_add(b, tmp, k);
		buf_adds(b, "\r\n");
		line = nl ? nl + 1 : NULL;
	}
}

int rpt_message(const struct rpt_meta *m, const char *policy_domain,
                const char *id, const struct rpt_mail *mail,
                const void *gz, size_t gz_len, struct buf *out)
{
	char date[64], tmp[LIM_REPORT_FIELD];
	time_t t = (time_t)mail->date;
	struct tm tm;
	if (!gmtime_r(&t, &tm) || strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm) == 0)
		return -1;
	struct buf fname;
	buf_init(&fname, 0);
	if (rpt_filename(m, policy_domain, id, &fname) < 0 || buf_add(&fname, "", 1) < 0) {
		buf_free(&fname);
		return -1;
	}
	/* "=_" never occurs in base64; the text part is checked. */
	const char *boundary = "=_alignd_report_boundary";
	if (mail->summary && strstr(mail->summary, boundary)) {
		buf_free(&fname);
		return -1;
	}

	text_printable(tmp, sizeof(tmp), m->email, strlen(m->email));
	buf_printf(out, "From: %s\r\n", tmp);
	text_printable(tmp, sizeof(tmp), mail->to, strlen(mail->to));
	buf_printf(out, "To: %s\r\n", tmp);
	buf_adds(out, "Subject: Report Domain: ");
	add_name(out, policy_domain);
	buf_adds(out, " Submitter: ");
	add_name(out, m->receiver);
	buf_adds(out, " Report-ID: <");
	add_name(out, id);
	buf_adds(out, "@");
	add_name(out, m->receiver);
	buf_adds(out, ">\r\n");
	buf_printf(out, "Date: %s\r\n", date);
	buf_adds(out, "Message-ID: <");
	add_name(out, id);
	buf_adds(out, ".");
	add_name(out, policy_domain);
	buf_adds(out, "@");
	add_name(out, m->receiver);
	buf_adds(out, ">\r\n");
	/* RFC 3834 5: a report is an automatic message; it must not start a
	 * loop of replies or further reports. */
	buf_adds(out, "Auto-Submitted: auto-generated\r\n");
	buf_adds(out, "MIME-Version: 1.0\r\n");
	buf_printf(out, "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n", boundary);
	buf_adds(out, "This is a DMARC aggregate report (RFC 9990) in MIME format.\r\n\r\n");
	buf_printf(out, "--%s\r\n", boundary);
	buf_adds(out, "Content-Type: text/plain; charset=us-ascii\r\n"
	              "Content-Transfer-Encoding: 7bit\r\n\r\n");
	add_text(out, mail->summary ? mail->summary : "");
	buf_printf(out, "\r\n--%s\r\n", boundary);
	buf_printf(out, "Content-Type: application/gzip; name=\"%s\"\r\n", fname.data);
	buf_printf(out, "Content-Disposition: attachment; filename=\"%s\"\r\n", fname.data);
	buf_adds(out, "Content-Transfer-Encoding: base64\r\n\r\n");
	add_base64(out, gz, gz_len);
	buf_printf(out, "\r\n--%s--\r\n", boundary);
	buf_free(&fname);
	return out->failed ? -1 : 0;
}
