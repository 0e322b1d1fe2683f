/* Signing throughput (checks/dkim/dks.c): messages signed per second on
 * one core, per algorithm and message size, with fresh keys. Each message
 * is parsed, its body canonicalised and hashed, its header hashed and the
 * digest signed, as SIGN does on a worker. Compare the small-message rate
 * with `openssl speed rsa2048 ed25519` on the same machine: there the
 * private-key operation alone is measured.
 * Usage: bench/sign [SECONDS_PER_ROW] */
#include "checks/dkim/dks.h"
#include "checks/msg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *make_message(size_t body, size_t *len_r)
{
	static const char head[] =
		"From: Alice Example <alice@example.org>\r\nTo: bob@example.net\r\n"
		"Subject: quarterly figures\r\nDate: Mon, 07 Dec 2026 10:00:00 +0000\r\n"
		"Message-ID: <bench.1@example.org>\r\nMIME-Version: 1.0\r\n"
		"Content-Type: text/plain; charset=utf-8\r\n\r\n";
	size_t hl = sizeof head - 1;
	char *m = malloc(hl + body + 80);
	if (m == NULL)
		abort();
	memcpy(m, head, hl);
	size_t n = hl;
	while (n < hl + body) {
		n += (size_t)sprintf(m + n, "line %zu of the message body, some  text\tto hash\r\n", n);
	}
	*len_r = n;
	return m;
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 2.0;
	const size_t sizes[] = { 1024, 15 * 1024, 100 * 1024, 1024 * 1024 };
	const struct { const char *name; enum dks_alg alg; unsigned bits; } algs[] = {
		{ "rsa-2048", DKS_ALG_RSA_SHA256, 2048 },
		{ "rsa-1024", DKS_ALG_RSA_SHA256, 1024 },
		{ "ed25519", DKS_ALG_ED25519_SHA256, 0 },
	};
	char err[256];
	printf("| key | message | msgs/s (1 core) | us/msg | MB/s |\n|---|---|---|---|---|\n");
	for (size_t a = 0; a < sizeof algs / sizeof algs[0]; a++) {
		struct dks_key *k = NULL;
		if (dks_key_generate(algs[a].alg, algs[a].bits, &k, err, sizeof err) != 0) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
		for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
			size_t len;
			char *text = make_message(sizes[s], &len);
			struct dks_opts o = { .domain = "example.org", .selector = "s",
			                      .key = k, .now = 1796648739 };
			unsigned long n = 0;
			double t0 = now_s(), t;
			do {
				struct msg m;
				char *field = NULL;
				if (msg_parse(text, len, &m) != 0 ||
				    dks_sign(&m, &o, "\r\n", &field, err, sizeof err) != 0) {
					fprintf(stderr, "sign: %s\n", err);
					return 1;
				}
				msg_free(&m);
				free(field);
				n++;
				t = now_s() - t0;
			} while (t < secs);
			printf("| %s | %zu KB | %.0f | %.1f | %.1f |\n", algs[a].name,
			       sizes[s] / 1024, (double)n / t, t * 1e6 / (double)n,
			       (double)n * (double)len / t / 1e6);
			fflush(stdout);
			free(text);
		}
		dks_key_free(&k);
	}
	return 0;
}
