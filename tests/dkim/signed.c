/* Runs the cases that gen_cases.py signed with python3-dkim: verifies each
 * message against the key table and checks every expectation listed for
 * it. Usage: dkim_signed <dir> <now>   (dir holds keys.txt, cases.tsv and
 * the messages; now is the clock the cases were made for). */
#include "tests/dkim/dkvtest.h"
#include "common/text.h"
#include "common/trace.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int checks, bad;

static void expect(const char *file, const char *what, const char *want,
                   const char *got)
{
	checks++;
	if (strcmp(want, got) != 0) {
		bad++;
		printf("FAIL %s: %s: want %s, got %s\n", file, what, want, got);
	}
}

static const char *u64s(uint64_t v, char *buf)
{
	snprintf(buf, 24, "%" PRIu64, v);
	return buf;
}

/* one "name=value" expectation about signature o (or the message when o
 * is NULL) */
static void check_field(const char *file, const char *kv,
                        const struct dkv_result *r, const struct dkv_sig *o)
{
	char name[64], buf[32];
	const char *eq = strchr(kv, '=');
	if (eq == NULL || (size_t)(eq - kv) >= sizeof name) {
		printf("FAIL %s: bad expectation %s\n", file, kv);
		bad++;
		return;
	}
	memcpy(name, kv, (size_t)(eq - kv));
	name[eq - kv] = '\0';
	const char *want = eq + 1;
	if (o == NULL) {
		if (strcmp(name, "n") == 0)
			expect(file, name, want, u64s(r->n, buf));
		else if (strcmp(name, "not_evaluated") == 0)
			expect(file, name, want, u64s(r->not_evaluated, buf));
		else if (strcmp(name, "best") == 0)
			expect(file, name, want, auth_res_name(r->best));
		else {
			printf("FAIL %s: unknown message field %s\n", file, name);
			bad++;
		}
		return;
	}
	if (strcmp(name, "res") == 0)
		expect(file, name, want, auth_res_name(o->res));
	else if (strcmp(name, "reason~") == 0) {
		checks++;
		if (strstr(o->reason, want) == NULL) {
			bad++;
			printf("FAIL %s: reason \"%s\" lacks \"%s\"\n", file, o->reason, want);
		}
	} else if (strcmp(name, "bits") == 0)
		expect(file, name, want, u64s(o->key_bits, buf));
	else if (strcmp(name, "keytype") == 0)
		expect(file, name, want, dkv_keytype_name(o->key_type));
	else if (strcmp(name, "a") == 0)
		expect(file, name, want, o->a);
	else if (strcmp(name, "d") == 0)
		expect(file, name, want, o->d);
	else if (strcmp(name, "s") == 0)
		expect(file, name, want, o->s);
	else if (strcmp(name, "i") == 0)
		expect(file, name, want, o->i);
	else if (strcmp(name, "bprefix") == 0)
		expect(file, name, want, o->b_prefix);
	else if (strcmp(name, "l") == 0)
		expect(file, name, want, o->has_l ? u64s(o->l, buf) : "none");
	else if (strcmp(name, "unsigned") == 0)
		expect(file, name, want, u64s(o->unsigned_len, buf));
	else if (strcmp(name, "t") == 0)
		expect(file, name, want, o->has_t ? u64s(o->t, buf) : "none");
	else if (strcmp(name, "x") == 0)
		expect(file, name, want, o->has_x ? u64s(o->x, buf) : "none");
	else if (strcmp(name, "testing") == 0)
		expect(file, name, want, o->key_testing ? "1" : "0");
	else if (strcmp(name, "from") == 0)
		expect(file, name, want, o->from_signed ? "1" : "0");
	else if (strcmp(name, "bh") == 0)
		expect(file, name, want, o->bh_ok == 1 ? "1" : o->bh_ok == 0 ? "0" : "-1");
	else if (strcmp(name, "sig") == 0)
		expect(file, name, want, o->sig_ok == 1 ? "1" : o->sig_ok == 0 ? "0" : "-1");
	else if (strcmp(name, "sec") == 0)
		expect(file, name, want, dnsq_sec_name(o->key_sec));
	else if (strcmp(name, "keyfound") == 0)
		expect(file, name, want, o->key_found ? "1" : "0");
	else {
		printf("FAIL %s: unknown signature field %s\n", file, name);
		bad++;
	}
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s <dir> <now>\n", argv[0]);
		return 2;
	}
	const char *dir = argv[1];
	uint64_t now;
	if (text_u64(argv[2], strlen(argv[2]), UINT64_MAX, &now) != 0) {
		fprintf(stderr, "bad time %s\n", argv[2]);
		return 2;
	}
	char path[4096];
	struct dkv_keyset *ks = dkv_keyset_new();
	snprintf(path, sizeof path, "%s/keys.txt", dir);
	if (dkvt_load_keytable(ks, path) <= 0) {
		printf("FAIL cannot load %s\n", path);
		return 1;
	}
	struct dkv_opts o = { .fixed_time = now, .engine = dkvt_engine() };
	char err[256];
	struct dkv_lib *lib = dkv_lib_new(&o, err, sizeof err);
	if (lib == NULL) {
		printf("FAIL dkv_lib_new: %s\n", err);
		return 1;
	}
	snprintf(path, sizeof path, "%s/cases.tsv", dir);
	char *tsv = dkvt_read_file(path, NULL);
	if (tsv == NULL) {
		printf("FAIL cannot read %s\n", path);
		return 1;
	}
	int cases = 0;
	char cur[256] = "";
	struct dkv_result res = { 0 };
	int have = 0;
	for (char *line = strtok(tsv, "\n"); line; line = strtok(NULL, "\n")) {
		if (line[0] == '#' || line[0] == '\0')
			continue;
		char *f[32];
		size_t nf = dkvt_split_tabs(line, f, 32);
		if (nf < 2)
			continue;
		if (strcmp(cur, f[0]) != 0) {
			if (have)
				dkv_result_free(&res);
			have = 0;
			snprintf(cur, sizeof cur, "%s", f[0]);
			snprintf(path, sizeof path, "%s/%s", dir, f[0]);
			size_t len;
			char *msg = dkvt_read_file(path, &len);
			if (msg == NULL) {
				printf("FAIL cannot read %s\n", path);
				bad++;
				continue;
			}
			struct trace t;
			trace_init(&t, trace_now_us(), 1);
			int r = dkv_verify(lib, msg, len, ks, &res, &t);
			free(msg);
			if (r != 0) {
				printf("FAIL %s: dkv_verify returned %d\n", f[0], r);
				bad++;
			}
			have = 1;
			cases++;
			if (getenv("DKV_VERBOSE"))
				for (size_t k = 0; k < t.n; k++)
					printf("  %s: %s\n", f[0], t.lines[k].text);
			trace_free(&t);
		}
		if (!have)
			continue;
		const struct dkv_sig *sig = NULL;
		if (strcmp(f[1], "*") != 0) {
			uint64_t idx;
			if (text_u64(f[1], strlen(f[1]), 1000, &idx) != 0 || idx == 0 ||
			    idx > res.n) {
				printf("FAIL %s: no signature %s (have %zu)\n", f[0], f[1], res.n);
				bad++;
				continue;
			}
			sig = &res.sigs[idx - 1];
		}
		int before = bad;
		for (size_t k = 2; k < nf; k++)
			check_field(f[0], f[k], &res, sig);
		if (bad != before && sig)
			printf("     signature %s: %s (%s)\n", f[1],
			       auth_res_name(sig->res), sig->reason);
	}
	if (have)
		dkv_result_free(&res);
	free(tsv);
	dkv_keyset_free(&ks);
	dkv_lib_free(&lib);
	printf("dkim signed cases: %d messages, %d checks, %d failed\n", cases,
	       checks, bad);
	return bad || cases == 0 ? 1 : 0;
}
