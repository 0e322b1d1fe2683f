/* The head of an rspamd-style HTTP/1.x request (see http_req.h). */
#include "protocol/http_req.h"
#include "common/limits.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

static int token_char(char ch)
{
	return ch > 0x20 && ch < 0x7f && !strchr("()<>@,;:\\\"/[]?={}", ch);
}

static char *dup_addr(const char *v, size_t vl)
{
	if (vl >= 2 && v[0] == '<' && v[vl - 1] == '>') {
		v++;
		vl -= 2;
	}
	return strndup(v, vl);
}

static int set_once(char **dst, char *v)
{
	if (!v)
		return -1;
	if (*dst) {
		free(v);
		return -2;
	}
	*dst = v;
	return 0;
}

int http_parse_head(char *head, size_t len, uint64_t max_body, struct http_head *h,
                    struct proto_request *req, const char **why)
{
	memset(req, 0, sizeof(*req));
	memset(h, 0, sizeof(*h));
	h->target = HTTP_T_SCAN;
	int *ping = &(int){ 0 };
	char *p = head, *end = head + len;
	int first = 1, have_len = 0;
	size_t n_fields = 0;
	unsigned char ipbuf[16];
	while (p < end) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			break;
		size_t ll = (size_t)(nl - p);
		if (ll && p[ll - 1] == '\r')
			ll--;
		p[ll] = '\0';
		char *line = p;
		p = nl + 1;
		if (ll == 0)
			break;
		for (size_t i = 0; i < ll; i++)
			if (((unsigned char)line[i] < 0x20 && line[i] != '\t') || line[i] == 0x7f) {
				*why = "control character in the request head";
				return 400;
			}
		if (first) {
			first = 0;
			char *sp1 = strchr(line, ' ');
			char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
			const char *method = line, *target, *version;
			if (sp1 && !sp2 && strncmp(sp1 + 1, "RSPAMC/1.", 9) == 0) {
				/* legacy spamc form, no path: "CHECK RSPAMC/1.3" (Exim) */
				*sp1 = '\0';
				target = "/";
				version = sp1 + 1;
			} else if (!sp1 || !sp2 || strchr(sp2 + 1, ' ')) {
				*why = "bad request line";
				return 400;
			} else {
				*sp1 = *sp2 = '\0';
				target = sp1 + 1;
				version = sp2 + 1;
			}
			if (strcmp(version, "HTTP/1.1") == 0) {
				h->keep_alive = 1;
			} else if (strcmp(version, "HTTP/1.0") == 0) {
				h->keep_alive = 0;
			} else if (strncmp(version, "RSPAMC/1.", 9) == 0) {
				h->legacy = 1;
				h->keep_alive = 0;
			} else {
				*why = "unsupported protocol version";
				return 505;
			}
			size_t tl = strcspn(target, "?");
			if (strcmp(method, "GET") == 0 && tl == 5 && strncmp(target, "/ping", 5) == 0) {
				*ping = 1;
			} else if (strcmp(method, "GET") == 0 && tl == 8 &&
			           strncmp(target, "/metrics", 8) == 0) {
				*ping = 2;      /* Prometheus scrape (docs/CONFIG.md "Metrics") */
			} else if (strcmp(method, "POST") != 0 && strcmp(method, "PROCESS") != 0 &&
			           strcmp(method, "CHECK") != 0 && strcmp(method, "SYMBOLS") != 0) {
				*why = "method not allowed";
				return 405;
			} else if (!((tl == 8 && strncmp(target, "/checkv2", 8) == 0) ||
			             (tl == 6 && strncmp(target, "/check", 6) == 0) ||
			             (tl == 8 && strncmp(target, "/symbols", 8) == 0) ||
			             (tl == 1 && target[0] == '/' && h->legacy))) {
				*why = "not found";
				return 404;
			}
			continue;
		}
		if (line[0] == ' ' || line[0] == '\t') {
			*why = "folded header lines are not accepted";   /* RFC 9112 5.2 */
			return 400;
		}
		if (++n_fields > LIM_MAX_REQUEST_FIELDS) {
			*why = "too many header fields";
			return 431;
		}
		char *colon = strchr(line, ':');
		if (!colon || colon == line) {
			*why = "bad header field";
			return 400;
		}
		for (char *q = line; q < colon; q++)
			if (!token_char(*q)) {
				*why = "bad header field name";
				return 400;
			}
		*colon = '\0';
		char *v = colon + 1;
		while (*v == ' ' || *v == '\t')
			v++;
		size_t vl = strlen(v);
		while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
			v[--vl] = '\0';
		const char *name = line;
		int rc = 0;
		if (strcasecmp(name, "Content-Length") == 0) {
			char *e;
			errno = 0;
			unsigned long long n = strtoull(v, &e, 10);
			if (vl == 0 || *e || errno || v[0] < '0' || v[0] > '9' ||
			    (have_len && n != req->content_length)) {
				*why = "bad Content-Length";
				return 400;
			}
			if (n > max_body) {
				*why = "message larger than max_message_size";
				return 413;
			}
			req->content_length = n;
			have_len = 1;
		} else if (strcasecmp(name, "Transfer-Encoding") == 0) {
			*why = "Content-Length required (no transfer codings)";
			return 411;
		} else if (strcasecmp(name, "Connection") == 0) {
			if (strcasecmp(v, "close") == 0)
				h->keep_alive = 0;
			else if (strcasecmp(v, "keep-alive") == 0 && !h->legacy)
				h->keep_alive = 1;
		} else if (strcasecmp(name, "IP") == 0) {
			char *a = v;
			if (vl > 2 && a[0] == '[' && a[vl - 1] == ']') {
				a[vl - 1] = '\0';
				a++;
			}
			if (strncasecmp(a, "IPv6:", 5) == 0)
				a += 5;
			if (inet_pton(AF_INET, a, ipbuf) != 1 && inet_pton(AF_INET6, a, ipbuf) != 1) {
				*why = "bad IP";
				return 400;
			}
			rc = set_once(&req->client_ip, strdup(a));
		} else if (strcasecmp(name, "Helo") == 0) {
			if (vl)
				rc = set_once(&req->helo, strdup(v));
		} else if (strcasecmp(name, "From") == 0) {
			rc = set_once(&req->mail_from, dup_addr(v, vl));
		} else if (strcasecmp(name, "Rcpt") == 0) {
			if (req->n_rcpt >= LIM_MAX_REQUEST_FIELDS) {
				*why = "too many recipients";
				return 431;
			}
			char **nr = realloc(req->rcpt, (req->n_rcpt + 1) * sizeof(*nr));
			if (!nr) {
				rc = -1;
			} else {
				req->rcpt = nr;
				nr[req->n_rcpt] = dup_addr(v, vl);
				rc = nr[req->n_rcpt] ? 0 : -1;
				if (rc == 0)
					req->n_rcpt++;
			}
		} else if (strcasecmp(name, "Queue-Id") == 0) {
			if (vl)
				rc = set_once(&req->queue_id, strdup(v));
		}
		/* other rspamd fields (Hostname, User, Settings, ...) are ignored */
		if (rc == -1) {
			*why = "out of memory";
			return 500;
		}
		if (rc == -2) {
			*why = "duplicate header field";
			return 400;
		}
	}
	if (first) {
		*why = "empty request";
		return 400;
	}
	h->target = *ping == 1 ? HTTP_T_PING : *ping == 2 ? HTTP_T_METRICS : HTTP_T_SCAN;
	if (*ping)
		return 0;
	if (!have_len) {
		*why = "Content-Length required";
		return 411;
	}
	req->cmd = PROTO_CMD_SCAN;
	req->has_length = 1;
	return 0;
}

size_t http_head_end(const char *d, size_t len, size_t *resume)
{
	size_t i = resume ? *resume : 0;
	for (; i + 1 < len; i++) {
		if (d[i] != '\n')
			continue;
		if (d[i + 1] == '\n')
			return i + 2;
		if (i + 2 < len && d[i + 1] == '\r' && d[i + 2] == '\n')
			return i + 3;
	}
	/* every LF before len - 2 was looked at; one at len - 2 or len - 1
	 * may still end the head with the next bytes */
	if (resume)
		*resume = len >= 2 ? len - 2 : 0;
	return 0;
}
