/* Fuzz target: what a TLS client sends to listen_tcp, through server/tls.c
 * over its memory BIOs, in pieces of a size taken from the input's first
 * byte, as conn.c drives it: handshake, then plaintext reads, a reply
 * written, close_notify. The server context (a self-signed EC key made at
 * the first call, and the same certificate as client CA, so client
 * certificates are required) is built once. Invariants: every call returns
 * one of its documented values, the ciphertext taken is what was pending,
 * no plaintext before the handshake is done; nothing leaks. */
#include "tests/fuzz/fuzz.h"
#include "server/tls.h"

#include <stdio.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

static struct srv_tls *ctx;

/* A key and a self-signed certificate in two temporary files. */
static void make_context(void)
{
	char cert[] = "/tmp/alignd-fuzz-tls-cert-XXXXXX";
	char key[] = "/tmp/alignd-fuzz-tls-key-XXXXXX";
	int cfd = mkstemp(cert), kfd = mkstemp(key);
	FUZZ_ASSERT(cfd >= 0 && kfd >= 0);
	EVP_PKEY *pk = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	FUZZ_ASSERT(pk && x);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, pk);
	X509_NAME *n = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"fuzz", -1, -1, 0);
	X509_set_issuer_name(x, n);
	FUZZ_ASSERT(X509_sign(x, pk, EVP_sha256()) > 0);
	FILE *cf = fdopen(cfd, "w"), *kf = fdopen(kfd, "w");
	FUZZ_ASSERT(cf && kf);
	FUZZ_ASSERT(PEM_write_X509(cf, x) == 1);
	FUZZ_ASSERT(PEM_write_PrivateKey(kf, pk, NULL, NULL, 0, NULL, NULL) == 1);
	fclose(cf);
	fclose(kf);
	X509_free(x);
	EVP_PKEY_free(pk);
	char err[512];
	int rc = srv_tls_new(cert, key, cert, "1.2", "", &ctx, err, sizeof err);
	unlink(cert);
	unlink(key);
	if (rc < 0)
		fprintf(stderr, "fuzz_tls: %s\n", err);
	FUZZ_ASSERT(rc == 0 && srv_tls_verifies_clients(ctx));
}

/* Takes all pending ciphertext, checking that the count is honest. */
static void drain(struct tls_conn *c)
{
	char out[4096];
	for (;;) {
		size_t want = tls_conn_pending(c);
		if (want == 0)
			return;
		size_t got = tls_conn_take(c, out, sizeof out);
		FUZZ_ASSERT(got > 0 && got <= sizeof out && got <= want);
		FUZZ_ASSERT(tls_conn_pending(c) == want - got);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ctx)
		make_context();
	if (size == 0)
		return 0;
	size_t piece = (size_t)(data[0] % 97) + 1;
	data++;
	size--;
	struct tls_conn *c = tls_conn_new(ctx);
	FUZZ_ASSERT(c);
	char err[256], plain[16384];
	int ready = 0, dead = 0;
	for (size_t off = 0; off < size && !dead;) {
		size_t n = size - off < piece ? size - off : piece;
		FUZZ_ASSERT(tls_conn_feed(c, data + off, n) == 0);
		off += n;
		if (!ready) {
			int rc = tls_conn_handshake(c, err, sizeof err);
			FUZZ_ASSERT(rc == -1 || rc == 0 || rc == 1);
			if (rc < 0)
				FUZZ_ASSERT(err[0] != '\0');
			dead = rc < 0;
			ready = rc == 1;
		}
		while (ready && !dead) {
			long got = tls_conn_read(c, plain, sizeof plain, err, sizeof err);
			FUZZ_ASSERT(got == TLS_CONN_EOF || (got >= -1 && got <= (long)sizeof plain));
			if (got <= 0) {
				dead = got != 0;
				break;
			}
			FUZZ_ASSERT(tls_conn_write(c, "ALIGND/1 200 PONG\r\n\r\n", 21) == 0);
		}
		drain(c);
	}
	if (ready) {
		char proto[128], cn[64];
		tls_conn_describe(c, proto, sizeof proto, cn, sizeof cn);
		FUZZ_ASSERT(memchr(proto, '\0', sizeof proto) && memchr(cn, '\0', sizeof cn));
		if (!dead)
			tls_conn_shutdown(c);
	}
	drain(c);
	tls_conn_free(&c);
	FUZZ_ASSERT(c == NULL);
	return 0;
}
