/* Micro-benchmarks of the hot pieces and the DKIM ceiling: libopendkim
 * verification alone (dkv_verify, keys from memory) over the benchmark
 * corpus on T threads, plus what decoding the public keys costs of it.
 *   micro pieces INDEX.tsv KEYS.tsv
 *   micro ceiling INDEX.tsv KEYS.tsv THREADS SECONDS
 * KEYS.tsv: "<selector>._domainkey.<domain> <TAB> <TXT>" lines.
 * Output: one JSON object per line on stdout. Threads share one dkv_lib
 * and one key set (read-only), as the daemon's workers do. */
#include "checks/dkim/dkv.h"
#include "checks/dmarc/dmarc.h"
#include "checks/msg.h"
#include "common/trace.h"
#include "protocol/request.h"
#include "corpus_io.h"

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


static struct m_item *items;
static size_t n_items;
static struct dkv_lib *lib;
static struct dkv_keyset *keyset;
static double run_seconds;
static volatile int stop_flag;

static double now_s(void)
{
	return corpus_now_s();
}

static void load_corpus(const char *index)
{
	items = corpus_load(index, &n_items);
}

/* keys.tsv -> key set; also keeps the p= values for the decode benchmark */
static char **key_p;
static size_t n_key_p;

static void load_keys(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "micro: cannot open %s\n", path);
		exit(2);
	}
	keyset = dkv_keyset_new();
	key_p = calloc(4096, sizeof *key_p);
	static char line[16384];
	while (keyset && key_p && fgets(line, sizeof line, f)) {
		line[strcspn(line, "\r\n")] = '\0';
		char *tab = strchr(line, '\t');
		if (!tab)
			continue;
		*tab = '\0';
		dkv_keyset_put_text(keyset, line, DNSQ_OK, DNSQ_SEC_SECURE, tab + 1);
		char *p = strstr(tab + 1, "p=");
		if (p && strstr(tab + 1, "k=rsa") && n_key_p < 4096) {
			p += 2;
			p[strcspn(p, "; ")] = '\0';
			key_p[n_key_p++] = strdup(p);
		}
	}
	fclose(f);
}

/* ---- DKIM ceiling ---- */

struct th {
	pthread_t t;
	size_t start;
	unsigned long done, sigs;
	double busy;
};

static void *verify_thread(void *arg)
{
	struct th *t = arg;
	size_t i = t->start;
	double t0 = now_s();
	while (!stop_flag) {
		struct m_item *it = &items[i % n_items];
		struct dkv_result r;
		dkv_verify(lib, it->data, it->len, keyset, &r, NULL);
		t->sigs += r.n;
		dkv_result_free(&r);
		t->done++;
		i++;
		if ((t->done & 15) == 0 && now_s() - t0 >= run_seconds)
			break;
	}
	t->busy = now_s() - t0;
	return NULL;
}

/* Decoding one RSA public key as libopendkim does it per signature:
 * base64 of the p= tag, then d2i_PUBKEY. */
static double key_decode_us(void)
{
	if (n_key_p == 0)
		return 0;
	unsigned long iters = 0;
	double t0 = now_s();
	unsigned char der[4096];
	while (now_s() - t0 < 0.5) {
		for (size_t k = 0; k < n_key_p; k++) {
			int n = EVP_DecodeBlock(der, (const unsigned char *)key_p[k],
			                        (int)strlen(key_p[k]));
			const unsigned char *pp = der;
			EVP_PKEY *pk = n > 0 ? d2i_PUBKEY(NULL, &pp, n) : NULL;
			EVP_PKEY_free(pk);
			iters++;
		}
	}
	return (now_s() - t0) * 1e6 / (double)iters;
}

static int run_ceiling(int threads, double secs)
{
	run_seconds = secs;
	struct th *ts = calloc((size_t)threads, sizeof *ts);
	if (!ts)
		return 1;
	double t0 = now_s();
	for (int k = 0; k < threads; k++) {
		ts[k].start = (size_t)k * n_items / (size_t)threads;
		pthread_create(&ts[k].t, NULL, verify_thread, &ts[k]);
	}
	unsigned long done = 0, sigs = 0;
	for (int k = 0; k < threads; k++) {
		pthread_join(ts[k].t, NULL);
		done += ts[k].done;
		sigs += ts[k].sigs;
	}
	double el = now_s() - t0;
	double per_msg_us = el * threads * 1e6 / (double)done;
	double dec = key_decode_us();
	double sig_per_msg = (double)sigs / (double)done;
	/* With decoded keys cached per selector, each verification would skip
	 * the decode: the projected per-message cost. */
	double proj_us = per_msg_us - sig_per_msg * dec;
	printf("{\"bench\":\"dkim_ceiling\",\"threads\":%d,\"messages\":%lu,"
	       "\"seconds\":%.3f,\"msgs_per_s\":%.1f,\"us_per_msg_per_core\":%.2f,"
	       "\"sigs_per_msg\":%.3f,\"key_decode_us\":%.2f,"
	       "\"cached_key_us_per_msg_per_core\":%.2f,"
	       "\"cached_key_msgs_per_s\":%.1f}\n",
	       threads, done, el, (double)done / el, per_msg_us, sig_per_msg, dec,
	       proj_us, proj_us > 0 ? threads * 1e6 / proj_us : 0);
	free(ts);
	return 0;
}

/* ---- pieces ---- */

#define BENCH(name, unit_bytes, ...) do { \
	unsigned long it_ = 0; double t0_ = now_s(), el_; \
	do { for (int r_ = 0; r_ < 64; r_++) { __VA_ARGS__; it_++; } \
	     el_ = now_s() - t0_; } while (el_ < 0.4); \
	printf("{\"bench\":\"%s\",\"iterations\":%lu,\"us_per_op\":%.3f," \
	       "\"mb_per_s\":%.1f}\n", name, it_, el_ * 1e6 / (double)it_, \
	       (unit_bytes) ? (double)(unit_bytes) * (double)it_ / el_ / 1e6 : 0.0); \
} while (0)

static volatile size_t sink;

static size_t typical_item(void)
{
	/* the message closest to 15 KB with one signature */
	size_t best = 0;
	long bd = -1;
	for (size_t i = 0; i < n_items; i++) {
		long d = labs((long)items[i].len - 15000);
		if (bd < 0 || d < bd) {
			bd = d;
			best = i;
		}
	}
	return best;
}

static int run_pieces(void)
{
	struct m_item *it = &items[typical_item()];
	/* request parser: the whole SCAN request of the typical message */
	const char *rc[1] = { it->rcpt };
	struct proto_envelope e = { .client_ip = it->ip, .helo = it->helo,
		.mail_from = it->from, .rcpt = rc, .n_rcpt = 1 };
	char *head;
	size_t hlen;
	if (proto_write_scan_head(&e, it->len, &head, &hlen) != 0)
		return 1;
	char *req = malloc(hlen + it->len);
	if (!req)
		return 1;
	memcpy(req, head, hlen);
	memcpy(req + hlen, it->data, it->len);
	size_t rlen = hlen + it->len;
	struct proto_limits lim;
	proto_limits_default(&lim);
	lim.max_body = 1u << 30;
	struct proto_parser *p = proto_parser_new(&lim);
	BENCH("request_parse_15k", rlen, {
		size_t off = 0, used;
		struct proto_event ev;
		for (;;) {
			proto_feed(p, req + off, rlen - off, &used, &ev);
			off += used;
			if (ev.type == PROTO_EV_HEAD || ev.type == PROTO_EV_END) {
				struct proto_request pr;
				proto_take_request(p, &pr);
				proto_request_clear(&pr);
			}
			if (ev.type == PROTO_EV_MORE || ev.type == PROTO_EV_ERROR)
				break;
		}
	});
	proto_parser_free(&p);
	BENCH("request_parse_head_only", hlen, {
		struct proto_parser *q = proto_parser_new(&lim);
		size_t off = 0, used;
		struct proto_event ev;
		do {
			proto_feed(q, req + off, hlen - off, &used, &ev);
			off += used;
		} while (ev.type != PROTO_EV_MORE && ev.type != PROTO_EV_ERROR &&
		         ev.type != PROTO_EV_HEAD);
		proto_parser_free(&q);
	});
	free(req);
	free(head);

	size_t he = msg_header_end(it->data, it->len);
	BENCH("header_parse", he, {
		struct msg m;
		msg_parse(it->data, it->len, &m);
		sink += m.n_fields;
		msg_free(&m);
	});
	struct msg m;
	msg_parse(it->data, it->len, &m);
	BENCH("dmarc_author", 0, {
		struct dmarc_author a;
		dmarc_author(&m, &a);
		sink += a.n_domains;
	});
	static const char rec[] = "v=DMARC1; p=reject; sp=quarantine; adkim=s; aspf=r; "
	                          "rua=mailto:dmarc@example.com; ruf=mailto:f@example.com; fo=1";
	BENCH("dmarc_record_parse", 0, {
		struct dmarc_record r;
		dmarc_record_parse(rec, sizeof rec - 1, DMARC_MODE_RFC9989, &r);
		sink += r.p;
	});
	BENCH("dkv_list", 0, {
		struct dkv_sigref refs[8];
		sink += dkv_list(&m, refs, 8, NULL);
	});
	msg_free(&m);
	BENCH("dkim_verify_15k_1thread", it->len, {
		struct dkv_result r;
		dkv_verify(lib, it->data, it->len, keyset, &r, NULL);
		sink += r.n;
		dkv_result_free(&r);
	});
	printf("{\"bench\":\"rsa_key_decode\",\"us_per_op\":%.3f}\n", key_decode_us());
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: micro pieces INDEX KEYS | micro ceiling INDEX KEYS THREADS SECONDS\n");
		return 64;
	}
	load_corpus(argv[2]);
	load_keys(argv[3]);
	char err[256];
	/* the ceiling is libopendkim's (the reference the native engine is
	 * measured against, bench/engines.c); the pieces use the default */
	struct dkv_opts o = { .engine = strcmp(argv[1], "ceiling") == 0
	                                ? DKV_ENGINE_LIBOPENDKIM : DKV_ENGINE_NATIVE };
	lib = dkv_lib_new(&o, err, sizeof err);
	if (!lib) {
		fprintf(stderr, "micro: %s\n", err);
		return 1;
	}
	int rc;
	if (strcmp(argv[1], "ceiling") == 0 && argc >= 6)
		rc = run_ceiling(atoi(argv[4]), atof(argv[5]));
	else if (strcmp(argv[1], "pieces") == 0)
		rc = run_pieces();
	else
		rc = 64;
	dkv_keyset_free(&keyset);
	dkv_lib_free(&lib);
	return rc;
}
