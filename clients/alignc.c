/* alignc: scan messages with a running alignd from the command line.
 * Reads files (or standard input), sends one SCAN per message over one
 * connection, prints the replies as text or JSON. Exit status: see usage(). */
#include "clients/alignc.h"
#include "clients/dclient.h"
#include "checks/msg.h"
#include "common/buf.h"
#include "protocol/request.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum {
	EXIT_ACCEPT = 0, EXIT_QUARANTINE = 1, EXIT_REJECT = 2, EXIT_TEMPFAIL = 3,
	EXIT_ERROR_REPLY = 4, EXIT_USAGE = 64, EXIT_NOINPUT = 66, EXIT_UNREACHABLE = 69,
};

static void usage(FILE *out)
{
	fprintf(out,
	"usage: alignc [-s SOCKET] [--ip A] [--helo H] [--from S] [--rcpt R]...\n"
	"              [--queue-id ID] [--json] [--explain] [--timeout SEC]\n"
	"              [--tls-ca FILE] [--tls-cert FILE --tls-key FILE] [FILE...]\n"
	"       alignc [-s SOCKET] [--tls-...] --ping | --stats\n"
	"       alignc sign [-s SOCKET] [--tls-...] [--fields] [FILE]\n"
	"       alignc keygen --domain D --selector S [--type rsa|ed25519] [--bits N] [--out FILE]\n"
	"       alignc keycheck [-s SOCKET] [--tls-...] --domain D --selector S --key FILE\n"
	"Scans each FILE (standard input when none or '-') with alignd and prints\n"
	"the reply. Without --ip/--helo/--from the envelope is taken from the\n"
	"message's topmost Received: and its Return-Path: where they are\n"
	"unambiguous, and alignc says so on standard error.\n"
	"Socket: -s, else $ALIGND_SOCKET, else %s;\n"
	"a UNIX socket path, tcp:HOST:PORT, or tls:HOST:PORT for a daemon whose\n"
	"listen_tcp speaks TLS: its certificate must chain to --tls-ca (default:\n"
	"the system's CAs) and name HOST; --tls-cert and --tls-key are this\n"
	"client's certificate when the daemon requires one.\n"
	"Exit status (the strongest action over all messages):\n"
	"  0 accept, 1 quarantine, 2 reject, 3 tempfail,\n"
	"  4 the daemon answered with an error (4xx/5xx),\n"
	"  64 usage error, 66 a file cannot be read, 69 the daemon cannot be reached.\n",
	dclient_default_socket());
}

struct opts {
	const char *socket, *ip, *helo, *from, *queue_id;
	const char *tls_ca, *tls_cert, *tls_key;
	const char **rcpt;
	size_t n_rcpt;
	int json, explain, timeout_s, ping, stats, from_set;
};

static int read_all(FILE *f, struct buf *b)
{
	char tmp[65536];
	size_t n;
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
		if (buf_add(b, tmp, n) < 0)
			return -1;
	return ferror(f) ? -1 : 0;
}

/* "from HELO (rdns [IP])" of the topmost Received: field. */
static int envelope_from_received(const struct msg *m, char *helo, size_t hcap,
                                  char *ip, size_t icap)
{
	const struct msg_field *f = msg_get(m, "Received", 0);
	if (!f)
		return -1;
	char v[2048];
	if (msg_unfold(f->value, f->value_len, v, sizeof(v)) == (size_t)-1)
		return -1;
	if (strncasecmp(v, "from ", 5) != 0)
		return -1;
	const char *h = v + 5;
	size_t hl = strcspn(h, " \t(;");
	if (hl == 0 || hl >= hcap)
		return -1;
	memcpy(helo, h, hl);
	helo[hl] = '\0';
	/* the first [address] inside the first comment */
	const char *open = strchr(h + hl, '(');
	const char *close = open ? strchr(open, ')') : NULL;
	const char *lb = open ? memchr(open, '[', (size_t)(close ? close - open : 0)) : NULL;
	const char *rb = lb ? strchr(lb, ']') : NULL;
	if (!lb || !rb || (size_t)(rb - lb - 1) >= icap)
		return -1;
	memcpy(ip, lb + 1, (size_t)(rb - lb - 1));
	ip[rb - lb - 1] = '\0';
	const char *a = ip;
	if (strncasecmp(a, "IPv6:", 5) == 0)
		memmove(ip, ip + 5, strlen(ip + 5) + 1);
	unsigned char tmp[16];
	if (inet_pton(AF_INET, ip, tmp) != 1 && inet_pton(AF_INET6, ip, tmp) != 1)
		return -1;
	return 0;
}

static int return_path(const struct msg *m, char *out, size_t cap)
{
	if (msg_count(m, "Return-Path") != 1)
		return -1;
	const struct msg_field *f = msg_get(m, "Return-Path", 0);
	char v[1024];
	size_t n = msg_unfold(f->value, f->value_len, v, sizeof(v));
	if (n == (size_t)-1 || n < 2 || v[0] != '<' || v[n - 1] != '>' || n - 2 >= cap)
		return -1;
	memcpy(out, v + 1, n - 2);
	out[n - 2] = '\0';
	if (strpbrk(out, "<> \t"))
		return -1;
	return 0;
}

static json_t *arr(char **a, size_t n)
{
	json_t *j = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(j, json_string(a[i]));
	return j;
}

static void print_json(const char *name, const struct dreply *r)
{
	json_t *o = json_object();
	json_object_set_new(o, "file", json_string(name));
	json_object_set_new(o, "status", json_integer(r->code));
	if (r->code != 200 || !r->action) {
		json_object_set_new(o, "error", json_string(r->status ? r->status : ""));
	} else {
		json_object_set_new(o, "action", json_string(r->action));
		json_object_set_new(o, "score", json_real(r->score));
		if (r->smtp_reply)
			json_object_set_new(o, "smtp_reply", json_string(r->smtp_reply));
		json_t *syms = json_array();
		for (size_t i = 0; i < r->n_symbols; i++) {
			/* "NAME score [detail]" */
			char *s = r->symbols[i];
			char *sp1 = strchr(s, ' ');
			json_t *sym = json_object();
			if (sp1) {
				json_object_set_new(sym, "name", json_stringn(s, (size_t)(sp1 - s)));
				char *end;
				double sc = strtod(sp1 + 1, &end);
				json_object_set_new(sym, "score", json_real(sc));
				while (*end == ' ')
					end++;
				json_object_set_new(sym, "detail", json_string(end));
			} else {
				json_object_set_new(sym, "name", json_string(s));
			}
			json_array_append_new(syms, sym);
		}
		json_object_set_new(o, "symbols", syms);
		if (r->n_add_headers)
			json_object_set_new(o, "add_headers", arr(r->add_headers, r->n_add_headers));
		json_object_set_new(o, "authentication_results",
		                    json_string(r->auth_results ? r->auth_results : ""));
		if (r->n_trace)
			json_object_set_new(o, "trace", arr(r->trace, r->n_trace));
	}
	char *txt = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
	if (txt)
		puts(txt);
	free(txt);
	json_decref(o);
}

static void print_text(const char *name, const struct dreply *r, int many)
{
	if (many)
		printf("== %s\n", name);
	if (r->code != 200 || !r->action) {
		printf("Error: %d %s\n", r->code, r->status ? r->status : "");
		return;
	}
	printf("Action: %s\nScore: %.2f\n", r->action, r->score);
	if (r->smtp_reply)
		printf("SMTP-Reply: %s\n", r->smtp_reply);
	for (size_t i = 0; i < r->n_symbols; i++)
		printf("Symbol: %s\n", r->symbols[i]);
	for (size_t i = 0; i < r->n_add_headers; i++)
		printf("Add-Header: %s\n", r->add_headers[i]);
	if (r->auth_results)
		printf("Authentication-Results: %s\n", r->auth_results);
	for (size_t i = 0; i < r->n_trace; i++)
		printf("Trace: %s\n", r->trace[i]);
}

static int action_code(const struct dreply *r)
{
	if (r->code != 200 || !r->action)
		return EXIT_ERROR_REPLY;
	if (strcmp(r->action, "accept") == 0)
		return EXIT_ACCEPT;
	if (strcmp(r->action, "quarantine") == 0)
		return EXIT_QUARANTINE;
	if (strcmp(r->action, "reject") == 0)
		return EXIT_REJECT;
	return EXIT_TEMPFAIL;
}

static int simple_command(struct dclient *c, const char *cmd, int json)
{
	char err[256];
	struct dreply r;
	if (dclient_send(c, cmd, strlen(cmd), err, sizeof(err)) < 0 ||
	    dclient_read(c, &r, err, sizeof(err)) < 0) {
		fprintf(stderr, "alignc: %s\n", err);
		return EXIT_UNREACHABLE;
	}
	if (json) {
		json_t *o = json_object();
		json_object_set_new(o, "status", json_integer(r.code));
		json_object_set_new(o, "text", json_string(r.status ? r.status : ""));
		for (size_t i = 0; i < r.n_fields; i++) {
			char *colon = strchr(r.fields[i], ':');
			if (!colon)
				continue;
			*colon = '\0';
			json_object_set_new(o, r.fields[i], json_integer(strtoll(colon + 1, NULL, 10)));
		}
		char *t = json_dumps(o, JSON_COMPACT);
		if (t)
			puts(t);
		free(t);
		json_decref(o);
	} else {
		printf("%d %s\n", r.code, r.status ? r.status : "");
		for (size_t i = 0; i < r.n_fields; i++)
			printf("%s\n", r.fields[i]);
	}
	int rc = r.code == 200 ? 0 : EXIT_ERROR_REPLY;
	dreply_free(&r);
	return rc;
}

int main(int argc, char **argv)
{
	enum { O_IP = 256, O_HELO, O_FROM, O_RCPT, O_QID, O_JSON, O_EXPLAIN, O_TIMEOUT, O_PING, O_STATS,
	       O_TLS_CA, O_TLS_CERT, O_TLS_KEY };
	static const struct option lo[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "ip", required_argument, NULL, O_IP },
		{ "helo", required_argument, NULL, O_HELO },
		{ "from", required_argument, NULL, O_FROM },
		{ "rcpt", required_argument, NULL, O_RCPT },
		{ "queue-id", required_argument, NULL, O_QID },
		{ "json", no_argument, NULL, O_JSON },
		{ "explain", no_argument, NULL, O_EXPLAIN },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "ping", no_argument, NULL, O_PING },
		{ "stats", no_argument, NULL, O_STATS },
		{ "tls-ca", required_argument, NULL, O_TLS_CA },
		{ "tls-cert", required_argument, NULL, O_TLS_CERT },
		{ "tls-key", required_argument, NULL, O_TLS_KEY },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int sub = alignc_subcommand(argc, argv);
	if (sub >= 0)
		return sub;
	struct opts o = { .socket = dclient_default_socket(), .timeout_s = 60 };
	int opt;
	while ((opt = getopt_long(argc, argv, "s:h", lo, NULL)) != -1) {
		switch (opt) {
		case 's': o.socket = optarg; break;
		case O_IP: o.ip = optarg; break;
		case O_HELO: o.helo = optarg; break;
		case O_FROM: o.from = optarg; o.from_set = 1; break;
		case O_RCPT: {
			const char **nr = realloc(o.rcpt, (o.n_rcpt + 1) * sizeof(*nr));
			if (!nr)
				return 1;
			o.rcpt = nr;
			o.rcpt[o.n_rcpt++] = optarg;
			break;
		}
		case O_QID: o.queue_id = optarg; break;
		case O_JSON: o.json = 1; break;
		case O_EXPLAIN: o.explain = 1; break;
		case O_TIMEOUT: o.timeout_s = atoi(optarg); break;
		case O_PING: o.ping = 1; break;
		case O_STATS: o.stats = 1; break;
		case O_TLS_CA: o.tls_ca = optarg; break;
		case O_TLS_CERT: o.tls_cert = optarg; break;
		case O_TLS_KEY: o.tls_key = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	if (o.timeout_s <= 0 || o.timeout_s > 3600) {
		fprintf(stderr, "alignc: --timeout wants 1..3600 seconds\n");
		return EXIT_USAGE;
	}
	if (o.ip) {
		unsigned char tmp[16];
		if (inet_pton(AF_INET, o.ip, tmp) != 1 && inet_pton(AF_INET6, o.ip, tmp) != 1) {
			fprintf(stderr, "alignc: --ip %s is not an IP address\n", o.ip);
			return EXIT_USAGE;
		}
	}
	struct dclient c;
	char err[512];
	struct dclient_tls *tls;
	if (dclient_tls_setup(o.socket, o.tls_ca, o.tls_cert, o.tls_key, &tls, err, sizeof err) < 0) {
		fprintf(stderr, "alignc: %s\n", err);
		free(o.rcpt);
		return EXIT_USAGE;
	}
	dclient_init(&c, o.timeout_s * 1000);
	c.tls = tls;
	if (dclient_connect(&c, o.socket, err, sizeof(err)) < 0) {
		fprintf(stderr, "alignc: %s\n", err);
		dclient_close(&c);
		dclient_tls_free(&tls);
		free(o.rcpt);
		return EXIT_UNREACHABLE;
	}
	if (o.ping || o.stats) {
		int rc = simple_command(&c, o.ping ? "PING\r\n\r\n" : "STATS\r\n\r\n", o.json);
		dclient_close(&c);
		dclient_tls_free(&tls);
		free(o.rcpt);
		return rc;
	}
	const char *stdin_only[] = { "-" };
	char **files = optind < argc ? argv + optind : (char **)stdin_only;
	int nfiles = optind < argc ? argc - optind : 1;
	int worst = EXIT_ACCEPT;
	for (int i = 0; i < nfiles; i++) {
		const char *name = files[i];
		FILE *f = strcmp(name, "-") == 0 ? stdin : fopen(name, "rb");
		struct buf m;
		buf_init(&m, 0);
		if (!f || read_all(f, &m) < 0) {
			fprintf(stderr, "alignc: %s: %s\n", name, strerror(errno));
			if (f && f != stdin)
				fclose(f);
			buf_free(&m);
			if (worst < EXIT_NOINPUT)
				worst = EXIT_NOINPUT;
			continue;
		}
		if (f != stdin)
			fclose(f);
		struct proto_envelope env = {
			.client_ip = o.ip, .helo = o.helo, .mail_from = o.from,
			.queue_id = o.queue_id, .rcpt = o.rcpt, .n_rcpt = o.n_rcpt,
			.explain = o.explain,
		};
		char helo[256], ip[64], rp[512];
		if (!o.ip || !o.helo || !o.from_set) {
			struct msg pm;
			if (msg_parse(m.data ? m.data : "", m.len, &pm) == MSG_OK) {
				if ((!o.ip || !o.helo) &&
				    envelope_from_received(&pm, helo, sizeof(helo), ip, sizeof(ip)) == 0) {
					if (!o.ip)
						env.client_ip = ip;
					if (!o.helo)
						env.helo = helo;
					fprintf(stderr, "alignc: %s: client %s, HELO %s taken from the topmost Received: header\n",
					        name, env.client_ip, env.helo);
				}
				if (!o.from_set && return_path(&pm, rp, sizeof(rp)) == 0) {
					env.mail_from = rp;
					fprintf(stderr, "alignc: %s: MAIL FROM <%s> taken from Return-Path:\n", name, rp);
				}
				msg_free(&pm);
			}
		}
		struct dreply r;
		if (dclient_scan(&c, &env, m.data ? m.data : "", m.len, &r, err, sizeof(err)) < 0) {
			fprintf(stderr, "alignc: %s: %s\n", name, err);
			buf_free(&m);
			worst = EXIT_UNREACHABLE;
			break;
		}
		buf_free(&m);
		if (o.json)
			print_json(name, &r);
		else
			print_text(name, &r, nfiles > 1);
		int code = action_code(&r);
		if (code > worst)
			worst = code;
		int closed = r.code >= 400 && r.code != 405;
		dreply_free(&r);
		if (closed && i + 1 < nfiles) {
			/* the daemon may close after a framing error: reconnect */
			dclient_close(&c);
			if (dclient_connect(&c, o.socket, err, sizeof(err)) < 0) {
				fprintf(stderr, "alignc: %s\n", err);
				worst = EXIT_UNREACHABLE;
				break;
			}
		}
	}
	fflush(stdout);
	dclient_close(&c);
	dclient_tls_free(&tls);
	free(o.rcpt);
	return worst;
}
