/* Header-section splitter for RFC 5322 messages (CRLF or LF line ends).
 * Borrows the caller's buffer; allocates only the field array. Any thread. */
#include "checks/msg.h"
#include "common/limits.h"
#include "common/text.h"

#include <stdlib.h>
#include <string.h>

size_t msg_header_end(const char *buf, size_t len)
{
	/* the blank line: "\n\n" or "\n\r\n", or an empty first line */
	if (len >= 1 && buf[0] == '\n')
		return 1;
	if (len >= 2 && buf[0] == '\r' && buf[1] == '\n')
		return 2;
	const char *p = buf, *end = buf + len;
	while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		p++;
		if (p < end && *p == '\n')
			return (size_t)(p - buf) + 1;
		if (end - p >= 2 && p[0] == '\r' && p[1] == '\n')
			return (size_t)(p - buf) + 2;
	}
	return 0;
}

static int push_field(struct msg *m, size_t *cap, struct msg_field f)
{
	if (m->n_fields == *cap) {
		if (*cap >= LIM_MAX_HEADERS)
			return MSG_E_TOO_MANY;
		size_t ncap = *cap ? *cap * 2 : 32;
		if (ncap > LIM_MAX_HEADERS)
			ncap = LIM_MAX_HEADERS;
		struct msg_field *nf = realloc(m->fields, ncap * sizeof(*nf));
		if (!nf)
			return MSG_E_NOMEM;
		m->fields = nf;
		*cap = ncap;
	}
	m->fields[m->n_fields++] = f;
	return MSG_OK;
}

/* End of the line starting at p: returns the EOL start, sets *next. */
static const char *line_end(const char *p, const char *end, const char **next)
{
	const char *nl = memchr(p, '\n', (size_t)(end - p));
	if (!nl) {
		*next = end;
		return end;
	}
	*next = nl + 1;
	if (nl > p && nl[-1] == '\r')
		return nl - 1;
	return nl;
}

int msg_parse(const char *buf, size_t len, struct msg *m)
{
	memset(m, 0, sizeof(*m));
	size_t cap = 0;
	const char *p = buf, *end = buf + len;
	const char *first_nl = memchr(buf, '\n', len);
	m->crlf = first_nl && first_nl > buf && first_nl[-1] == '\r';

	while (p < end) {
		const char *next;
		const char *eol = line_end(p, end, &next);
		if (eol == p)         /* blank line: end of the header section */
			{ p = next; break; }
		if (*p == ' ' || *p == '\t') {
			/* continuation without a field before it: body starts here */
			if (m->n_fields == 0)
				break;
		}
		const char *colon = memchr(p, ':', (size_t)(eol - p));
		if (!colon || colon == p)
			break;        /* not a header line: the body starts here */
		/* field name: printable ASCII except colon (RFC 5322 2.2); trailing
		 * WSP before the colon tolerated (obsolete syntax) */
		const char *ne = colon;
		while (ne > p && (ne[-1] == ' ' || ne[-1] == '\t'))
			ne--;
		int bad = ne == p;
		for (const char *q = p; q < ne && !bad; q++)
			if ((unsigned char)*q <= 32 || (unsigned char)*q >= 127)
				bad = 1;
		if (bad)
			break;
		/* gather continuation lines */
		const char *fend = eol;
		while (next < end && (*next == ' ' || *next == '\t')) {
			const char *n2;
			const char *e2 = line_end(next, end, &n2);
			fend = e2;
			next = n2;
			if ((size_t)(fend - p) > LIM_MAX_HEADER_LINE)
				break;
		}
		if ((size_t)(fend - p) > LIM_MAX_HEADER_LINE) {
			msg_free(m);
			return MSG_E_LINE;
		}
		for (const char *q = p; q < fend; q++)
			if ((unsigned char)*q >= 0x80) {
				m->has_8bit = 1;
				break;
			}
		struct msg_field f = {
			.name = p, .name_len = (size_t)(ne - p),
			.value = colon + 1, .value_len = (size_t)(fend - colon - 1),
			.line = p, .line_len = (size_t)(fend - p),
		};
		int rc = push_field(m, &cap, f);
		if (rc < 0) {
			msg_free(m);
			return rc;
		}
		p = next;
		if ((size_t)(p - buf) > LIM_MAX_HEADER_BLOCK) {
			msg_free(m);
			return MSG_E_BLOCK;
		}
	}
	m->header_len = (size_t)(p - buf);
	m->body = p;
	m->body_len = (size_t)(end - p);
	return MSG_OK;
}

void msg_free(struct msg *m)
{
	free(m->fields);
	m->fields = NULL;
	m->n_fields = 0;
}

const struct msg_field *msg_get(const struct msg *m, const char *name, size_t i)
{
	for (size_t k = 0; k < m->n_fields; k++)
		if (text_ieq(m->fields[k].name, m->fields[k].name_len, name) && i-- == 0)
			return &m->fields[k];
	return NULL;
}

size_t msg_count(const struct msg *m, const char *name)
{
	size_t n = 0;
	for (size_t k = 0; k < m->n_fields; k++)
		if (text_ieq(m->fields[k].name, m->fields[k].name_len, name))
			n++;
	return n;
}

size_t msg_unfold(const char *v, size_t len, char *out, size_t cap)
{
	size_t n = 0;
	if (cap == 0)
		return (size_t)-1;
	for (size_t i = 0; i < len; i++) {
		char c = v[i];
		if (c == '\r' || c == '\n')
			continue;     /* folding: the WSP after the EOL stays */
		if (n + 1 >= cap)
			return (size_t)-1;
		out[n++] = c;
	}
	/* trim WSP */
	size_t s = 0;
	while (s < n && (out[s] == ' ' || out[s] == '\t'))
		s++;
	while (n > s && (out[n - 1] == ' ' || out[n - 1] == '\t'))
		n--;
	memmove(out, out + s, n - s);
	n -= s;
	out[n] = '\0';
	return n;
}
