/* Runs every public DKIM conformance case in ../shared/conformance/dkim/
 * (Mail::DKIM corpus, RFC 8463 example, authentication_milter messages)
 * and requires each RFC verdict to match. Usage: dkim_conformance <dir>. */
#include "tests/dkim/dkvtest.h"
#include "checks/msg.h"
#include "common/trace.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int passed, failed, verbose;

/* The conformance files use Mail::DKIM's words; "invalid" (the signature
 * could not be used) is what RFC 8601 calls permerror, or policy when
 * RFC 8301 refuses it. */
static int verdict_matches(const char *want, enum auth_res got)
{
	if (strcmp(want, "invalid") == 0)
		return got == AUTH_PERMERROR || got == AUTH_POLICY;
	return strcmp(want, auth_res_name(got)) == 0;
}

static void report(const char *set, const char *file, const char *want,
                   enum auth_res got, const struct dkv_result *res)
{
	int ok = verdict_matches(want, got);
	if (ok)
		passed++;
	else
		failed++;
	if (!ok || verbose) {
		printf("%s %s/%s: want %s, got %s\n", ok ? "ok  " : "FAIL", set, file,
		       want, auth_res_name(got));
		for (size_t k = 0; res && k < res->n; k++)
			printf("      sig %zu d=%s s=%s a=%s bits=%u: %s (%s)\n", k + 1,
			       res->sigs[k].d, res->sigs[k].s, res->sigs[k].a,
			       res->sigs[k].key_bits, auth_res_name(res->sigs[k].res),
			       res->sigs[k].reason);
	}
}

static int verify_file(struct dkv_lib *lib, struct dkv_keyset *ks,
                       const char *path, struct dkv_result *res)
{
	size_t len;
	char *msg = dkvt_read_file(path, &len);
	if (msg == NULL) {
		printf("FAIL cannot read %s\n", path);
		return -1;
	}
	/* As the server does: every key name the signatures need is looked
	 * up; a name the data set does not hold does not exist. */
	struct msg m;
	struct dkv_sigref refs[LIM_DKIM_MAX_SIGNATURES];
	if (msg_parse(msg, len, &m) == 0) {
		size_t n = dkv_list(&m, refs, LIM_DKIM_MAX_SIGNATURES, NULL);
		for (size_t k = 0; k < n; k++)
			if (refs[k].qname[0] && !refs[k].dup &&
			    !dkv_keyset_has(ks, refs[k].qname))
				dkv_keyset_put_text(ks, refs[k].qname, DNSQ_NXDOMAIN,
				                    DNSQ_SEC_INSECURE, NULL);
		msg_free(&m);
	}
	int r = dkv_verify(lib, msg, len, ks, res, NULL);
	free(msg);
	if (r != 0)
		printf("FAIL %s: dkv_verify returned %d\n", path, r);
	return r;
}

static int mail_dkim(struct dkv_lib *lib, const char *dir)
{
	char path[4096];
	struct dkv_keyset *ks = dkv_keyset_new();
	snprintf(path, sizeof path, "%s/mail-dkim/FAKE_DNS.dat", dir);
	if (dkvt_load_keytable(ks, path) <= 0) {
		printf("FAIL cannot load %s\n", path);
		dkv_keyset_free(&ks);
		return -1;
	}
	snprintf(path, sizeof path, "%s/mail-dkim/expected.tsv", dir);
	char *tsv = dkvt_read_file(path, NULL);
	if (tsv == NULL) {
		printf("FAIL cannot read %s\n", path);
		dkv_keyset_free(&ks);
		return -1;
	}
	/* every corpus file must have a verdict, and every verdict a file */
	char listed[256][128];
	size_t nlisted = 0;
	for (char *line = strtok(tsv, "\n"); line; line = strtok(NULL, "\n")) {
		if (line[0] == '#' || line[0] == '\0')
			continue;
		char *f[5];
		if (dkvt_split_tabs(line, f, 5) < 4) {
			printf("FAIL bad line in mail-dkim/expected.tsv: %s\n", line);
			failed++;
			continue;
		}
		if (nlisted < 256)
			snprintf(listed[nlisted++], sizeof listed[0], "%s", f[0]);
		snprintf(path, sizeof path, "%s/mail-dkim/corpus/%s", dir, f[0]);
		struct dkv_result res;
		if (verify_file(lib, ks, path, &res) != 0) {
			failed++;
			dkv_result_free(&res);
			continue;
		}
		report("mail-dkim", f[0], f[3], res.best, &res);
		dkv_result_free(&res);
	}
	free(tsv);
	snprintf(path, sizeof path, "%s/mail-dkim/corpus", dir);
	DIR *d = opendir(path);
	if (d == NULL) {
		printf("FAIL cannot open %s\n", path);
		failed++;
	} else {
		struct dirent *e;
		while ((e = readdir(d)) != NULL) {
			if (e->d_name[0] == '.')
				continue;
			size_t k;
			for (k = 0; k < nlisted; k++)
				if (strcmp(listed[k], e->d_name) == 0)
					break;
			if (k == nlisted) {
				printf("FAIL mail-dkim/corpus/%s has no verdict\n", e->d_name);
				failed++;
			}
		}
		closedir(d);
	}
	dkv_keyset_free(&ks);
	return 0;
}

/* The verdict for the signature(s) of domain (and selector, if given):
 * the best of them, or none when the message has no such signature. */
static enum auth_res verdict_for(const struct dkv_result *res,
                                 const char *domain, const char *selector)
{
	enum auth_res best = AUTH_NONE;
	int any = 0;
	for (size_t k = 0; k < res->n; k++) {
		if (strcasecmp(res->sigs[k].d, domain) != 0)
			continue;
		if (selector && strcmp(res->sigs[k].s, selector) != 0)
			continue;
		/* pass beats anything; otherwise keep the first one seen */
		if (!any || res->sigs[k].res == AUTH_PASS)
			best = res->sigs[k].res;
		any = 1;
	}
	return best;
}

static int rfc8463(struct dkv_lib *lib, const char *dir)
{
	char path[4096];
	struct dkv_keyset *ks = dkv_keyset_new();
	snprintf(path, sizeof path, "%s/rfc8463/keys.txt", dir);
	if (dkvt_load_keytable(ks, path) <= 0) {
		printf("FAIL cannot load %s\n", path);
		dkv_keyset_free(&ks);
		return -1;
	}
	snprintf(path, sizeof path, "%s/rfc8463/expected.tsv", dir);
	char *tsv = dkvt_read_file(path, NULL);
	if (tsv == NULL) {
		printf("FAIL cannot read %s\n", path);
		dkv_keyset_free(&ks);
		return -1;
	}
	for (char *line = strtok(tsv, "\n"); line; line = strtok(NULL, "\n")) {
		if (line[0] == '#' || line[0] == '\0')
			continue;
		char *f[4];
		if (dkvt_split_tabs(line, f, 4) < 4) {
			printf("FAIL bad line in rfc8463/expected.tsv\n");
			failed++;
			continue;
		}
		snprintf(path, sizeof path, "%s/rfc8463/%s", dir, f[0]);
		struct dkv_result res;
		if (verify_file(lib, ks, path, &res) != 0) {
			failed++;
			dkv_result_free(&res);
			continue;
		}
		char name[256];
		snprintf(name, sizeof name, "%s (s=%s)", f[0], f[2]);
		report("rfc8463", name, f[3], verdict_for(&res, f[1], f[2]), &res);
		dkv_result_free(&res);
	}
	free(tsv);
	dkv_keyset_free(&ks);
	return 0;
}

/* authentication_milter's expected.tsv records what that milter printed,
 * which is not always the RFC verdict. Where RFC 8301 disagrees, the RFC
 * verdict is expected instead, with the reason. */
static const struct { const char *file, *rfc, *why; } milter_rfc[] = {
	{ "dmarc_reject_wl.eml", "policy",
	  "rsa-sha1 signature: RFC 8301 3.1 forbids verifying rsa-sha1" },
};

static int auth_milter(struct dkv_lib *lib, const char *dir)
{
	char path[4096];
	struct dkv_keyset *ks = dkv_keyset_new();
	snprintf(path, sizeof path, "%s/authentication_milter/zonefile", dir);
	if (dkvt_load_zonefile(ks, path) <= 0) {
		printf("FAIL cannot load %s\n", path);
		dkv_keyset_free(&ks);
		return -1;
	}
	snprintf(path, sizeof path, "%s/authentication_milter/expected.tsv", dir);
	char *tsv = dkvt_read_file(path, NULL);
	if (tsv == NULL) {
		printf("FAIL cannot read %s\n", path);
		dkv_keyset_free(&ks);
		return -1;
	}
	for (char *line = strtok(tsv, "\n"); line; line = strtok(NULL, "\n")) {
		if (line[0] == '#' || line[0] == '\0')
			continue;
		char *f[4];
		if (dkvt_split_tabs(line, f, 4) < 3) {
			printf("FAIL bad line in authentication_milter/expected.tsv\n");
			failed++;
			continue;
		}
		const char *want = f[2];
		for (size_t k = 0; k < sizeof milter_rfc / sizeof milter_rfc[0]; k++)
			if (strcmp(milter_rfc[k].file, f[0]) == 0) {
				if (verbose)
					printf("note authentication_milter/%s: expecting %s, "
					       "not %s: %s\n", f[0], milter_rfc[k].rfc, want,
					       milter_rfc[k].why);
				want = milter_rfc[k].rfc;
			}
		snprintf(path, sizeof path, "%s/authentication_milter/messages/%s",
		         dir, f[0]);
		struct dkv_result res;
		if (verify_file(lib, ks, path, &res) != 0) {
			failed++;
			dkv_result_free(&res);
			continue;
		}
		report("authentication_milter", f[0], want,
		       verdict_for(&res, f[1], NULL), &res);
		dkv_result_free(&res);
	}
	free(tsv);
	dkv_keyset_free(&ks);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s <conformance/dkim dir> [-v]\n", argv[0]);
		return 2;
	}
	verbose = argc > 2 && strcmp(argv[2], "-v") == 0;
	const char *dir = argv[1];
	DIR *d = opendir(dir);
	if (d == NULL) {
		printf("FAIL: conformance data not found at %s\n", dir);
		return 1;
	}
	closedir(d);
	char err[256];
	struct dkv_opts lo = { .engine = dkvt_engine() };
	struct dkv_lib *lib = dkv_lib_new(&lo, err, sizeof err);
	if (lib == NULL) {
		printf("FAIL dkv_lib_new: %s\n", err);
		return 1;
	}
	int bad = 0;
	bad |= mail_dkim(lib, dir) != 0;
	bad |= rfc8463(lib, dir) != 0;
	bad |= auth_milter(lib, dir) != 0;
	dkv_lib_free(&lib);
	printf("dkim conformance: %d passed, %d failed\n", passed, failed);
	return bad || failed || passed == 0 ? 1 : 0;
}
