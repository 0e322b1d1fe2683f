/* Fuzz target: the DKIM signer (checks/dkim/dks.c) against our own
 * verifier. Input: a message, then one byte (the last) choosing the key
 * (RSA-1024 or Ed25519), the canonicalisation and an expiry. Invariant:
 * whenever dks_sign() signs a message, the message with the field
 * prepended verifies (pass) with the native engine, and the field lines
 * stay folded under the fold column. Keys are made once per process. */
#include "tests/fuzz/fuzz.h"
#include "checks/dkim/dks.h"
#include "checks/dkim/dkv.h"
#include "checks/msg.h"

#define NOW 1700000000u

static struct dkv_lib *lib;
static struct dkv_keyset *ks;
static struct dks_key *keys[2];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	char err[128];
	struct dkv_opts o = { .engine = DKV_ENGINE_NATIVE, .fixed_time = NOW };
	lib = dkv_lib_new(&o, err, sizeof err);
	ks = dkv_keyset_new();
	FUZZ_ASSERT(lib != NULL && ks != NULL);
	FUZZ_ASSERT(dks_key_generate(DKS_ALG_RSA_SHA256, 1024, &keys[0], err, sizeof err) == 0);
	FUZZ_ASSERT(dks_key_generate(DKS_ALG_ED25519_SHA256, 0, &keys[1], err, sizeof err) == 0);
	const char *names[2] = { "r._domainkey.example.org", "e._domainkey.example.org" };
	for (int i = 0; i < 2; i++) {
		char *rec = dks_key_record(keys[i]);
		FUZZ_ASSERT(rec != NULL);
		FUZZ_ASSERT(dkv_keyset_put_text(ks, names[i], DNSQ_OK, DNSQ_SEC_INSECURE, rec) == 0);
		free(rec);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (lib == NULL)
		LLVMFuzzerInitialize(NULL, NULL);
	struct fz f;
	fz_init(&f, data, size);
	unsigned sel = fz_u8(&f);
	size_t len;
	const uint8_t *p = fz_bytes(&f, f.len, &len);
	char *text = fz_dup(p, len);
	struct msg m;
	if (msg_parse(text, len, &m) != 0) {
		free(text);
		return 0;
	}
	int k = sel & 1;
	struct dks_opts o = {
		.domain = "example.org", .selector = k ? "e" : "r", .key = keys[k],
		.header_simple = (sel >> 1) & 1, .body_simple = (sel >> 2) & 1,
		.now = NOW - 10, .expire = (sel & 8) ? 3600 : 0,
	};
	const char *eol = m.crlf ? "\r\n" : "\n";
	char *field = NULL;
	char err[256];
	int r = dks_sign(&m, &o, eol, &field, err, sizeof err);
	msg_free(&m);
	if (r == 0) {
		size_t fl = strlen(field);
		for (const char *q = field; *q;) {
			const char *e = strchr(q, '\n');
			FUZZ_ASSERT(e != NULL);
			FUZZ_ASSERT((size_t)(e - q) <= LIM_DKIM_SIGN_FOLD + 1);
			q = e + 1;
		}
		char *s = malloc(fl + len + 1);
		FUZZ_ASSERT(s != NULL);
		memcpy(s, field, fl);
		memcpy(s + fl, text, len);
		struct dkv_result res;
		FUZZ_ASSERT(dkv_verify(lib, s, fl + len, ks, &res, NULL) == 0);
		FUZZ_ASSERT(res.n > 0);
		if (res.sigs[0].res != AUTH_PASS) {
			fprintf(stderr, "our signature does not verify: %s\n", res.sigs[0].reason);
			FUZZ_ASSERT(res.sigs[0].res == AUTH_PASS);
		}
		dkv_result_free(&res);
		free(s);
	}
	free(field);
	free(text);
	return 0;
}
