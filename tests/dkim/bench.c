/* Where the time of one DKIM verification goes: dkv_verify() of the ~15 KB
 * message with one rsa-2048 signature that gen_cases.py writes
 * (bench_15k.eml), single thread, keys from memory; then the pieces alone
 * with OpenSSL (key decoding, RSA verify, SHA-256 of the message).
 * Usage: dkim_bench <dir> <now> [iterations [verify-only]]
 * (verify-only skips the pieces, for a profiler) */
#include "tests/dkim/dkvtest.h"
#include "common/trace.h"

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double per_us(uint64_t t0, long n)
{
	return (double)(trace_now_us() - t0) / (double)n;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s <dir> <now> [iterations]\n", argv[0]);
		return 2;
	}
	long iters = argc > 3 ? atol(argv[3]) : 3000;
	char path[4096], err[256];
	snprintf(path, sizeof path, "%s/bench_15k.eml", argv[1]);
	size_t len;
	char *msg = dkvt_read_file(path, &len);
	struct dkv_keyset *ks = dkv_keyset_new();
	snprintf(path, sizeof path, "%s/keys.txt", argv[1]);
	if (msg == NULL || dkvt_load_keytable(ks, path) <= 0) {
		printf("FAIL: no benchmark data in %s\n", argv[1]);
		return 1;
	}
	struct dkv_opts o = { .fixed_time = strtoull(argv[2], NULL, 10),
	                      .engine = dkvt_engine() };
	struct dkv_lib *lib = dkv_lib_new(&o, err, sizeof err);
	struct dkv_result r;
	if (lib == NULL || dkv_verify(lib, msg, len, ks, &r, NULL) != 0 ||
	    r.best != AUTH_PASS) {
		printf("FAIL: the benchmark message does not pass\n");
		return 1;
	}
	dkv_result_free(&r);
	for (int k = 0; k < 200; k++) {   /* warm up */
		dkv_verify(lib, msg, len, ks, &r, NULL);
		dkv_result_free(&r);
	}
	uint64_t t0 = trace_now_us();
	for (long k = 0; k < iters; k++) {
		dkv_verify(lib, msg, len, ks, &r, NULL);
		dkv_result_free(&r);
	}
	double full = per_us(t0, iters);
	if (argc > 4) {
		printf("dkim bench: dkv_verify %.1f us/message\n", full);
		return 0;
	}

	/* the pieces: decode the key as libopendkim does (base64 + d2i) */
	FILE *f = fopen(path, "r");
	char line[8192], *p = NULL;
	while (f && fgets(line, sizeof line, f))
		if (strncmp(line, "s2048._domainkey.", 17) == 0 &&
		    (p = strstr(line, "p=")) != NULL)
			break;
	if (f)
		fclose(f);
	if (p == NULL) {
		printf("FAIL: no s2048 key\n");
		return 1;
	}
	p += 2;
	p[strcspn(p, "; \r\n")] = '\0';
	unsigned char der[4096];
	t0 = trace_now_us();
	EVP_PKEY *pk = NULL;
	for (long k = 0; k < iters; k++) {
		int n = EVP_DecodeBlock(der, (const unsigned char *)p, (int)strlen(p));
		const unsigned char *dp = der;
		EVP_PKEY_free(pk);
		pk = d2i_PUBKEY(NULL, &dp, n);
	}
	double keydec = per_us(t0, iters);

	/* RSA-2048 public operation on a signature-sized input (it fails to
	 * verify, which costs the same) */
	unsigned char sig[256], md[32];
	memset(sig, 0x5a, sizeof sig);
	memset(md, 0x11, sizeof md);
	EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new(pk, NULL);
	EVP_PKEY_verify_init(pc);
	EVP_PKEY_CTX_set_signature_md(pc, EVP_sha256());
	t0 = trace_now_us();
	for (long k = 0; k < iters; k++)
		(void)EVP_PKEY_verify(pc, sig, sizeof sig, md, sizeof md);
	double rsa = per_us(t0, iters);
	EVP_PKEY_CTX_free(pc);
	EVP_PKEY_free(pk);

	t0 = trace_now_us();
	for (long k = 0; k < iters; k++) {
		unsigned int ml;
		EVP_Digest(msg, len, md, &ml, EVP_sha256(), NULL);
	}
	double sha = per_us(t0, iters);

	printf("dkim bench: %zu-byte message, rsa-2048, %ld runs, single thread\n",
	       len, iters);
	printf("  dkv_verify           %8.1f us/message (%.0f messages/s)\n",
	       full, 1e6 / full);
	printf("  key decode (b64+d2i) %8.1f us\n", keydec);
	printf("  RSA-2048 verify      %8.1f us\n", rsa);
	printf("  SHA-256 of message   %8.1f us\n", sha);
	printf("  rest (parsing, canonicalization, copies) %.1f us\n",
	       full - keydec - rsa - sha);
	free(msg);
	dkv_keyset_free(&ks);
	dkv_lib_free(&lib);
	return 0;
}
