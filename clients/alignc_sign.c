/* alignc's signing commands: `sign` (a message signed by the daemon),
 * `keygen` (a new private key and the TXT record to publish) and
 * `keycheck` (does the published record match the key? asked of the
 * daemon, which resolves it through its validating cache). */
#include "clients/alignc.h"
#include "clients/dclient.h"
#include "checks/dkim/dks.h"
#include "checks/msg.h"
#include "common/buf.h"
#include "common/limits.h"
#include "protocol/request.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { SX_OK = 0, SX_NOT = 1, SX_ERROR_REPLY = 4, SX_USAGE = 64, SX_DATAERR = 65,
       SX_NOINPUT = 66, SX_CANTCREAT = 73, SX_UNREACHABLE = 69 };

static int read_file(const char *path, struct buf *b)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	char tmp[65536];
	size_t n;
	if (f == NULL)
		return -1;
	while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
		if (buf_add(b, tmp, n) < 0)
			break;
	int bad = ferror(f) || b->failed;
	if (f != stdin)
		fclose(f);
	return bad ? -1 : 0;
}

/* The DKIM-Signature fields of a SIGN reply, with LF line ends when the
 * message has them. */
static void put_fields(const char *reply, int lf, FILE *out)
{
	const char *p = strstr(reply, "\r\nDKIM-Signature:");
	if (p == NULL)
		return;
	p += 2;
	const char *end = strstr(p, "\r\n\r\n");
	if (end == NULL)
		return;
	end += 2;
	for (; p < end; p++) {
		if (lf && *p == '\r' && p[1] == '\n')
			continue;
		fputc(*p, out);
	}
}

/* --tls-ca, --tls-cert, --tls-key, as for a scan */
enum { O_TLS_CA = 300, O_TLS_CERT, O_TLS_KEY };
#define TLS_LONG_OPTS \
	{ "tls-ca", required_argument, NULL, O_TLS_CA }, \
	{ "tls-cert", required_argument, NULL, O_TLS_CERT }, \
	{ "tls-key", required_argument, NULL, O_TLS_KEY },

struct tls_opts {
	const char *ca, *cert, *key;
	struct dclient_tls *tls;
};

static int tls_opt(int opt, struct tls_opts *t)
{
	switch (opt) {
	case O_TLS_CA: t->ca = optarg; return 1;
	case O_TLS_CERT: t->cert = optarg; return 1;
	case O_TLS_KEY: t->key = optarg; return 1;
	default: return 0;
	}
}

/* Connects c to sock (made with timeout_ms): 0, SX_USAGE for TLS options
 * that cannot be used, SX_UNREACHABLE; the reason is printed. */
static int connect_daemon(struct dclient *c, const char *sock, int timeout_ms,
                          struct tls_opts *t)
{
	char err[512];
	dclient_init(c, timeout_ms);
	if (dclient_tls_setup(sock, t->ca, t->cert, t->key, &t->tls, err, sizeof err) < 0) {
		fprintf(stderr, "alignc: %s\n", err);
		return SX_USAGE;
	}
	c->tls = t->tls;
	if (dclient_connect(c, sock, err, sizeof err) < 0) {
		fprintf(stderr, "alignc: %s\n", err);
		dclient_close(c);
		dclient_tls_free(&t->tls);
		return SX_UNREACHABLE;
	}
	return 0;
}

static int cmd_sign(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "fields", no_argument, NULL, 'f' },
		{ "timeout", required_argument, NULL, 't' },
		TLS_LONG_OPTS
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *sock = dclient_default_socket();
	int fields_only = 0, timeout_s = 60, opt;
	struct tls_opts tls = { NULL, NULL, NULL, NULL };
	while ((opt = getopt_long(argc, argv, "s:fh", lo, NULL)) != -1) {
		if (tls_opt(opt, &tls))
			continue;
		switch (opt) {
		case 's': sock = optarg; break;
		case 'f': fields_only = 1; break;
		case 't': timeout_s = atoi(optarg); break;
		case 'h':
			printf("usage: alignc sign [-s SOCKET [--tls-...]] [--fields] [FILE]\n");
			return SX_OK;
		default: return SX_USAGE;
		}
	}
	if (argc - optind > 1 || timeout_s <= 0) {
		fprintf(stderr, "usage: alignc sign [-s SOCKET [--tls-...]] [--fields] [FILE]\n");
		return SX_USAGE;
	}
	const char *path = optind < argc ? argv[optind] : "-";
	struct buf msg;
	buf_init(&msg, 0);
	if (read_file(path, &msg) < 0) {
		fprintf(stderr, "alignc: %s: %s\n", path, strerror(errno ? errno : EIO));
		buf_free(&msg);
		return SX_NOINPUT;
	}
	struct dclient c;
	char err[512];
	int crc = connect_daemon(&c, sock, timeout_s * 1000, &tls);
	if (crc != 0) {
		buf_free(&msg);
		return crc;
	}
	int code = 0;
	char *reply = NULL;
	int rc = dclient_sign(&c, msg.data ? msg.data : "", msg.len, &code, &reply,
	                      err, sizeof err);
	dclient_close(&c);
	dclient_tls_free(&tls.tls);
	if (rc < 0) {
		fprintf(stderr, "alignc: %s\n", err);
		buf_free(&msg);
		return SX_UNREACHABLE;
	}
	if (code != 200) {
		const char *e = strstr(reply, "\r\n");
		fprintf(stderr, "alignc: %s: %.*s\n", path,
		        (int)(e ? (size_t)(e - reply) : strlen(reply)), reply);
		free(reply);
		buf_free(&msg);
		return SX_ERROR_REPLY;
	}
	int signed_it = strstr(reply, "\r\nDKIM-Signature:") != NULL;
	if (!signed_it)
		fprintf(stderr, "alignc: %s: no signing key for its From domain; not signed\n", path);
	int lf = 0;
	const char *nl = msg.data ? memchr(msg.data, '\n', msg.len) : NULL;
	if (nl != NULL && (nl == msg.data || nl[-1] != '\r'))
		lf = 1;
	put_fields(reply, lf, stdout);
	if (!fields_only && msg.len > 0)
		fwrite(msg.data, 1, msg.len, stdout);
	free(reply);
	buf_free(&msg);
	return fflush(stdout) == 0 && signed_it ? SX_OK : SX_NOT;
}

static int valid_label_list(const char *s)
{
	if (*s == '\0' || strlen(s) > LIM_DNS_MAX_NAME || *s == '.' || s[strlen(s) - 1] == '.')
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '-' || *s == '.' || *s == '_'))
			return 0;
	return 1;
}

/* The record as zone-file text: TXT strings of at most 255 bytes */
static void print_record(const char *sel, const char *dom, const char *txt)
{
	printf("%s._domainkey.%s. IN TXT (", sel, dom);
	size_t n = strlen(txt);
	for (size_t off = 0; off < n; off += 250)
		printf(" \"%.*s\"", (int)(n - off < 250 ? n - off : 250), txt + off);
	printf(" )\n");
}

static int cmd_keygen(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "domain", required_argument, NULL, 'd' },
		{ "selector", required_argument, NULL, 'S' },
		{ "type", required_argument, NULL, 'T' },
		{ "bits", required_argument, NULL, 'b' },
		{ "out", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dom = NULL, *sel = NULL, *type = "rsa", *out = NULL;
	unsigned bits = LIM_DKIM_SIGN_RSA_BITS;
	int opt;
	while ((opt = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (opt) {
		case 'd': dom = optarg; break;
		case 'S': sel = optarg; break;
		case 'T': type = optarg; break;
		case 'b': {
			char *e;
			unsigned long v = strtoul(optarg, &e, 10);
			if (*optarg == '\0' || *e || v > LIM_DKIM_MAX_RSA_BITS) {
				fprintf(stderr, "alignc: --bits: want a number up to %u\n",
				        LIM_DKIM_MAX_RSA_BITS);
				return SX_USAGE;
			}
			bits = (unsigned)v;
			break;
		}
		case 'o': out = optarg; break;
		case 'h':
			printf("usage: alignc keygen --domain D --selector S [--type rsa|ed25519] "
			       "[--bits N] [--out FILE]\n");
			return SX_OK;
		default: return SX_USAGE;
		}
	}
	enum dks_alg alg;
	if (strcmp(type, "rsa") == 0)
		alg = DKS_ALG_RSA_SHA256;
	else if (strcmp(type, "ed25519") == 0)
		alg = DKS_ALG_ED25519_SHA256;
	else {
		fprintf(stderr, "alignc: --type: want rsa or ed25519\n");
		return SX_USAGE;
	}
	if (dom == NULL || sel == NULL || optind != argc || !valid_label_list(dom) ||
	    !valid_label_list(sel) || strlen(sel) > 63) {
		fprintf(stderr, "usage: alignc keygen --domain D --selector S "
		        "[--type rsa|ed25519] [--bits N] [--out FILE]\n");
		return SX_USAGE;
	}
	char def[600];
	if (out == NULL) {
		snprintf(def, sizeof def, "%s.%s.key", dom, sel);
		out = def;
	}
	char err[256];
	struct dks_key *k = NULL;
	if (dks_key_generate(alg, bits, &k, err, sizeof err) != 0) {
		fprintf(stderr, "alignc: %s\n", err);
		return SX_USAGE;
	}
	char *pem = dks_key_pem(k), *rec = dks_key_record(k);
	if (pem == NULL || rec == NULL) {
		fprintf(stderr, "alignc: out of memory\n");
		dks_key_free(&k);
		return SX_CANTCREAT;
	}
	/* 0600 from the start, never over an existing file */
	int fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	size_t pl = strlen(pem);
	int bad = fd < 0;
	if (!bad)
		bad = fchmod(fd, 0600) < 0 || write(fd, pem, pl) != (ssize_t)pl;
	if (fd >= 0 && close(fd) < 0)
		bad = 1;
	explicit_bzero(pem, pl);
	free(pem);
	if (bad) {
		fprintf(stderr, "alignc: %s: %s\n", out, strerror(errno));
		free(rec);
		dks_key_free(&k);
		return SX_CANTCREAT;
	}
	printf("; %s key (%u bits) written to %s (mode 0600; make it owned by the daemon's user)\n",
	       dks_alg_name(alg), dks_key_bits(k), out);
	printf("; publish this record in the zone of %s:\n", dom);
	print_record(sel, dom, rec);
	printf("; signing table line (dkim_sign_table):\n; %s %s %s\n", dom, sel, out);
	free(rec);
	dks_key_free(&k);
	return fflush(stdout) == 0 ? SX_OK : SX_CANTCREAT;
}

/* The result of the dkim= clause for selector sel in an
 * Authentication-Results value, copied to res; -1 when there is none. */
static int dkim_clause(const char *ar, const char *sel, char *clause, size_t cap)
{
	char want[128];
	snprintf(want, sizeof want, "header.s=%s", sel);
	const char *p = ar;
	while ((p = strstr(p, "dkim=")) != NULL) {
		const char *end = strchr(p, ';');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		const char *s = strstr(p, want);
		if (s != NULL && (size_t)(s - p) < n) {
			char nx = s[strlen(want)];
			if (nx == '\0' || nx == ' ' || nx == ';' || nx == '\t') {
				snprintf(clause, cap, "%.*s", (int)n, p);
				return 0;
			}
		}
		p += n;
	}
	return -1;
}

static int cmd_keycheck(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "domain", required_argument, NULL, 'd' },
		{ "selector", required_argument, NULL, 'S' },
		{ "key", required_argument, NULL, 'k' },
		TLS_LONG_OPTS
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *sock = dclient_default_socket(), *dom = NULL, *sel = NULL, *keyf = NULL;
	int opt;
	struct tls_opts tls = { NULL, NULL, NULL, NULL };
	while ((opt = getopt_long(argc, argv, "s:h", lo, NULL)) != -1) {
		if (tls_opt(opt, &tls))
			continue;
		switch (opt) {
		case 's': sock = optarg; break;
		case 'd': dom = optarg; break;
		case 'S': sel = optarg; break;
		case 'k': keyf = optarg; break;
		case 'h':
			printf("usage: alignc keycheck [-s SOCKET [--tls-...]] --domain D --selector S --key FILE\n");
			return SX_OK;
		default: return SX_USAGE;
		}
	}
	if (!dom || !sel || !keyf || optind != argc || !valid_label_list(dom) ||
	    !valid_label_list(sel)) {
		fprintf(stderr, "usage: alignc keycheck [-s SOCKET [--tls-...]] --domain D --selector S --key FILE\n");
		return SX_USAGE;
	}
	struct buf pem;
	buf_init(&pem, LIM_DKIM_SIGN_KEY_FILE);
	struct stat st;
	if (stat(keyf, &st) < 0 || read_file(keyf, &pem) < 0) {
		fprintf(stderr, "alignc: %s: %s\n", keyf, strerror(errno ? errno : EIO));
		buf_free(&pem);
		return SX_NOINPUT;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO))
		fprintf(stderr, "alignc: warning: %s has mode %04o; alignd refuses key "
		        "files that group or others can read\n", keyf,
		        (unsigned)(st.st_mode & 07777));
	char err[512];
	struct dks_key *k = NULL;
	int r = dks_key_from_pem(pem.data ? pem.data : "", pem.len, &k, err, sizeof err);
	if (pem.data)
		explicit_bzero(pem.data, pem.len);
	buf_free(&pem);
	if (r != 0) {
		fprintf(stderr, "alignc: %s: %s\n", keyf, err);
		return SX_DATAERR;
	}
	/* a probe signed with the key, verified by the daemon: it resolves
	 * s._domainkey.d through its DNSSEC-validating cache and judges the
	 * signature as it judges incoming mail */
	char probe[1024];
	snprintf(probe, sizeof probe,
	         "From: keycheck@%s\r\nTo: keycheck@%s\r\nSubject: alignc keycheck\r\n"
	         "Message-ID: <keycheck.%ld@%s>\r\n\r\nkey check probe\r\n",
	         dom, dom, (long)time(NULL), dom);
	struct msg m;
	char *field = NULL;
	if (msg_parse(probe, strlen(probe), &m) != 0) {
		dks_key_free(&k);
		return SX_DATAERR;
	}
	struct dks_opts so = { .domain = dom, .selector = sel, .key = k,
	                       .now = (uint64_t)time(NULL) };
	r = dks_sign(&m, &so, "\r\n", &field, err, sizeof err);
	msg_free(&m);
	dks_key_free(&k);
	if (r != 0) {
		fprintf(stderr, "alignc: cannot sign the probe: %s\n", err);
		return SX_DATAERR;
	}
	struct buf full;
	buf_init(&full, 0);
	buf_adds(&full, field);
	buf_adds(&full, probe);
	free(field);
	struct dclient c;
	int crc = connect_daemon(&c, sock, 60000, &tls);
	if (crc != 0) {
		buf_free(&full);
		return crc;
	}
	struct proto_envelope env = { .client_ip = "127.0.0.1", .helo = "localhost",
	                              .mail_from = "" };
	struct dreply rep;
	memset(&rep, 0, sizeof rep);
	r = dclient_scan(&c, &env, full.data, full.len, &rep, err, sizeof err);
	dclient_close(&c);
	dclient_tls_free(&tls.tls);
	buf_free(&full);
	if (r < 0) {
		fprintf(stderr, "alignc: %s\n", err);
		dreply_free(&rep);
		return SX_UNREACHABLE;
	}
	char clause[1024];
	int rc;
	if (rep.code != 200 || rep.auth_results == NULL ||
	    dkim_clause(rep.auth_results, sel, clause, sizeof clause) < 0) {
		fprintf(stderr, "alignc: the daemon gave no DKIM result (%d %s)\n", rep.code,
		        rep.status ? rep.status : "");
		rc = SX_ERROR_REPLY;
	} else if (strncmp(clause, "dkim=pass", 9) == 0) {
		printf("%s._domainkey.%s: the published record matches %s (%s)\n",
		       sel, dom, keyf, clause);
		rc = SX_OK;
	} else {
		printf("%s._domainkey.%s: the published record does NOT match %s or cannot "
		       "be had (%s)\n", sel, dom, keyf, clause);
		rc = SX_NOT;
	}
	dreply_free(&rep);
	return rc;
}

int alignc_subcommand(int argc, char **argv)
{
	if (argc < 2)
		return -1;
	if (strcmp(argv[1], "sign") == 0)
		return cmd_sign(argc - 1, argv + 1);
	if (strcmp(argv[1], "keygen") == 0)
		return cmd_keygen(argc - 1, argv + 1);
	if (strcmp(argv[1], "keycheck") == 0)
		return cmd_keycheck(argc - 1, argv + 1);
	return -1;
}
