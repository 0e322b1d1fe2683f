/* The two DKIM engines side by side: every message is verified by the
 * native engine and by libopendkim with the same key set and clock, and
 * each signature must get the same result from both. The differences we
 * mean to have are listed below with their RFC reason; any other one, and
 * any listed one that no longer happens, fails the test.
 * Usage: dkim_oracle [--now N] [--keys FILE] [--keytsv FILE] [--zone FILE]
 *                    [--dir DIR [--ext .EXT]] ... [--conformance DIR]
 *   --keys    key table "<name> <TXT>" (Mail::DKIM format, dkvtest.h)
 *   --keytsv  key table "<name>\t<TXT>" (bench/corpus.py)
 *   --zone    zone-file-like _domainkey records
 *   --conformance DIR  all three sets of ../shared/conformance/dkim
 * A name a signature needs that no table holds does not exist (NXDOMAIN). */
#include "tests/dkim/dkvtest.h"
#include "checks/msg.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Differences on purpose: file name, signature (1-based), the native
 * result, libopendkim's result, and why. None today: the native engine
 * reads both a SubjectPublicKeyInfo and a bare RSAPublicKey in p= (RFC 6376
 * 3.6.1 names the latter, libopendkim reads only the former) and accepts
 * key records over libopendkim's 1 KB buffer (8192-bit keys), and it
 * refuses a tag-list with a tag twice or a syntax error (RFC 6376 3.2: "the
 * entire tag-list is invalid"), which libopendkim reads keeping one of the
 * two, or up to the error; no message
 * in these sets has any of these (the fuzz target skips them). */
static const struct intended {
	const char *file;
	unsigned sig;
	enum auth_res native, ode;
	const char *why;
	int seen;
} intended[] = {
	{ NULL, 0, AUTH_NONE, AUTH_NONE, NULL, 0 },
};

static int messages, sigs, same, differ, listed;
static char seen_names[4096][64];
static size_t n_seen;

static int seen_file(const char *f)
{
	for (size_t i = 0; i < n_seen; i++)
		if (strcmp(seen_names[i], f) == 0)
			return 1;
	return 0;
}
static struct dkv_lib *native, *ode;
static struct dkv_keyset *ks;

static struct intended *find_intended(const char *file, size_t k)
{
	for (size_t i = 0; intended[i].file != NULL; i++)
		if (strcmp(intended[i].file, file) == 0 && intended[i].sig == k + 1)
			return (struct intended *)&intended[i];
	return NULL;
}

static void nx_fill(const char *msg, size_t len)
{
	struct msg m;
	struct dkv_sigref refs[LIM_DKIM_MAX_SIGNATURES];
	if (msg_parse(msg, len, &m) != 0)
		return;
	size_t n = dkv_list(&m, refs, LIM_DKIM_MAX_SIGNATURES, NULL);
	for (size_t k = 0; k < n; k++)
		if (refs[k].qname[0] && !dkv_keyset_has(ks, refs[k].qname))
			dkv_keyset_put_text(ks, refs[k].qname, DNSQ_NXDOMAIN,
			                    DNSQ_SEC_INSECURE, NULL);
	msg_free(&m);
}

static void compare(const char *name, const char *msg, size_t len)
{
	nx_fill(msg, len);
	if (n_seen < sizeof seen_names / sizeof seen_names[0])
		snprintf(seen_names[n_seen++], sizeof seen_names[0], "%s", name);
	struct dkv_result a, b;
	int ra = dkv_verify(native, msg, len, ks, &a, NULL);
	int rb = dkv_verify(ode, msg, len, ks, &b, NULL);
	messages++;
	if (ra != 0 || rb != 0 || a.n != b.n || a.not_evaluated != b.not_evaluated) {
		printf("FAIL %s: native rc=%d n=%zu, libopendkim rc=%d n=%zu\n", name,
		       ra, a.n, rb, b.n);
		differ++;
	}
	for (size_t k = 0; k < a.n && k < b.n; k++) {
		const struct dkv_sig *x = &a.sigs[k], *y = &b.sigs[k];
		sigs++;
		struct intended *in = find_intended(name, k);
		if (x->res == y->res && in == NULL) {
			same++;
			continue;
		}
		if (in != NULL && in->native == x->res && in->ode == y->res) {
			in->seen = 1;
			listed++;
			continue;
		}
		differ++;
		printf("FAIL %s sig %zu d=%s s=%s a=%s:\n"
		       "     native      %s (%s)\n"
		       "     libopendkim %s (%s)\n", name, k + 1, x->d, x->s, x->a,
		       auth_res_name(x->res), x->reason, auth_res_name(y->res), y->reason);
	}
	dkv_result_free(&a);
	dkv_result_free(&b);
}

static int walk(const char *dir, const char *ext)
{
	DIR *d = opendir(dir);
	if (d == NULL) {
		printf("FAIL cannot open %s\n", dir);
		return -1;
	}
	struct dirent *e;
	int n = 0;
	while ((e = readdir(d)) != NULL) {
		size_t nl = strlen(e->d_name), sl = ext ? strlen(ext) : 0;
		if (e->d_name[0] == '.' || nl < sl ||
		    (ext && strcmp(e->d_name + nl - sl, ext) != 0))
			continue;
		char path[4096];
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		size_t len;
		char *msg = dkvt_read_file(path, &len);
		if (msg == NULL)
			continue;
		compare(e->d_name, msg, len);
		free(msg);
		n++;
	}
	closedir(d);
	return n;
}

/* "<name>\t<TXT>" lines */
static int load_keytsv(const char *path)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return -1;
	static char line[1 << 16];
	int n = 0;
	while (fgets(line, sizeof line, f)) {
		line[strcspn(line, "\r\n")] = '\0';
		char *tab = strchr(line, '\t');
		if (tab == NULL)
			continue;
		*tab = '\0';
		if (dkv_keyset_put_text(ks, line, DNSQ_OK, DNSQ_SEC_SECURE, tab + 1) == 0)
			n++;
	}
	fclose(f);
	return n;
}

int main(int argc, char **argv)
{
	uint64_t now = 0;
	for (int i = 1; i + 1 < argc; i++)
		if (strcmp(argv[i], "--now") == 0)
			now = strtoull(argv[i + 1], NULL, 10);
	char err[256];
	struct dkv_opts on = { .engine = DKV_ENGINE_NATIVE, .fixed_time = now };
	struct dkv_opts oo = { .engine = DKV_ENGINE_LIBOPENDKIM, .fixed_time = now };
	native = dkv_lib_new(&on, err, sizeof err);
	ode = dkv_lib_new(&oo, err, sizeof err);
	ks = dkv_keyset_new();
	if (native == NULL || ode == NULL || ks == NULL) {
		printf("FAIL dkv_lib_new: %s\n", err);
		return 1;
	}
	int bad = 0;
	/* keys first, then the messages */
	for (int pass = 0; pass < 2; pass++)
		for (int i = 1; i + 1 < argc; i++) {
			const char *o = argv[i], *v = argv[i + 1];
			char path[4096];
			if (pass == 0 && strcmp(o, "--keys") == 0) {
				bad |= dkvt_load_keytable(ks, v) <= 0;
			} else if (pass == 0 && strcmp(o, "--keytsv") == 0) {
				bad |= load_keytsv(v) <= 0;
			} else if (pass == 0 && strcmp(o, "--zone") == 0) {
				bad |= dkvt_load_zonefile(ks, v) <= 0;
			} else if (pass == 0 && strcmp(o, "--conformance") == 0) {
				snprintf(path, sizeof path, "%s/mail-dkim/FAKE_DNS.dat", v);
				bad |= dkvt_load_keytable(ks, path) <= 0;
				snprintf(path, sizeof path, "%s/rfc8463/keys.txt", v);
				bad |= dkvt_load_keytable(ks, path) <= 0;
				snprintf(path, sizeof path, "%s/authentication_milter/zonefile", v);
				bad |= dkvt_load_zonefile(ks, path) <= 0;
			} else if (pass == 1 && strcmp(o, "--dir") == 0) {
				const char *ext = i + 3 < argc && strcmp(argv[i + 2], "--ext") == 0
				                ? argv[i + 3] : NULL;
				bad |= walk(v, ext) <= 0;
			} else if (pass == 1 && strcmp(o, "--conformance") == 0) {
				snprintf(path, sizeof path, "%s/mail-dkim/corpus", v);
				bad |= walk(path, NULL) <= 0;
				snprintf(path, sizeof path, "%s/authentication_milter/messages", v);
				bad |= walk(path, NULL) <= 0;
				snprintf(path, sizeof path, "%s/rfc8463", v);
				bad |= walk(path, ".msg") <= 0;
			}
		}
	if (bad)
		printf("FAIL: a key table or a message directory could not be read\n");
	/* a listed difference that no longer shows is a stale list */
	for (size_t i = 0; intended[i].file != NULL; i++)
		if (!intended[i].seen && seen_file(intended[i].file)) {
			printf("FAIL %s sig %u: listed difference did not happen\n",
			       intended[i].file, intended[i].sig);
			differ++;
		}
	printf("dkim oracle: %d messages, %d signatures: %d same, %d listed "
	       "differences, %d unexpected\n", messages, sigs, same, listed, differ);
	dkv_lib_free(&native);
	dkv_lib_free(&ode);
	dkv_keyset_free(&ks);
	return bad || differ || messages == 0 ? 1 : 0;
}
