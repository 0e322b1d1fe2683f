/* Runs the ARC cases that gen_cases.py sealed with python3-dkim, the way
 * the server does: arc_list() on the parsed header section, one TXT lookup
 * per distinct key name through struct dnsq (in-memory zones), answers
 * stored with dkv_keyset_put(), then arc_verify(). Checks every expectation
 * and that the chain result agrees with python3-dkim's arc_verify.
 * Usage: arc_cases <dir> <now> */
#include "checks/arc/arc.h"
#include "checks/msg.h"
#include "common/trace.h"
#include "tests/dkim/dkvtest.h"
#include "tests/lib/memdns.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int checks, bad;

static int expect(const char *file, const char *what, const char *want,
                  const char *got)
{
	checks++;
	if (strcmp(want, got) != 0) {
		bad++;
		printf("FAIL %s: %s: want %s, got %s\n", file, what, want, got);
		return 1;
	}
	return 0;
}

struct pending {
	struct dkv_keyset *ks;
	char qname[DKV_NAME_MAX];
	int done;
};

static void on_key(void *arg, const struct dnsq_answer *a)
{
	struct pending *p = arg;
	p->done = 1;
	if (dkv_keyset_put(p->ks, p->qname, a) != 0) {
		bad++;
		printf("FAIL dkv_keyset_put %s\n", p->qname);
	}
}

static struct memdns *load_zone(const char *path)
{
	char *data = dkvt_read_file(path, NULL);
	if (data == NULL)
		return NULL;
	struct memdns *md = memdns_new();
	for (char *line = strtok(data, "\n"); line; line = strtok(NULL, "\n")) {
		char *sp = strchr(line, ' ');
		if (sp == NULL)
			continue;
		*sp++ = '\0';
		if (strcmp(sp, "NXDOMAIN") == 0)
			memdns_set_status(md, line, DNSQ_T_TXT, DNSQ_NXDOMAIN);
		else if (strcmp(sp, "~~SERVFAIL~~") == 0)
			memdns_set_status(md, line, DNSQ_T_TXT, DNSQ_TEMPFAIL);
		else
			memdns_add_txt(md, line, sp);
	}
	free(data);
	return md;
}

static const char *num(unsigned long v, char *buf)
{
	snprintf(buf, 24, "%lu", v);
	return buf;
}

/* one "name=value" expectation; returns 1 when it failed */
static int check_one(const char *file, const char *kv, const struct arc_result *r)
{
	char name[64], buf[32];
	const char *eq = strchr(kv, '=');
	if (eq == NULL || (size_t)(eq - kv) >= sizeof name) {
		printf("FAIL %s: bad expectation %s\n", file, kv);
		bad++;
		return 1;
	}
	memcpy(name, kv, (size_t)(eq - kv));
	name[eq - kv] = '\0';
	const char *want = eq + 1;
	unsigned inst = 0;
	if (strcmp(name, "chain") == 0)
		return expect(file, name, want, auth_res_name(r->chain));
	if (strcmp(name, "python") == 0)
		/* python3-dkim's verdict on the same message */
		return expect(file, "agreement with python3-dkim", want,
		              auth_res_name(r->chain));
	if (strcmp(name, "n") == 0)
		return expect(file, name, want, num(r->n_sets, buf));
	if (strcmp(name, "oldest_pass") == 0)
		return expect(file, name, want, num(r->oldest_pass, buf));
	if (strcmp(name, "aar1.authserv") == 0)
		return expect(file, name, want, r->aar1_authserv);
	if (strcmp(name, "aar1.n") == 0)
		return expect(file, name, want, num(r->aar1_n, buf));
	if (strncmp(name, "aar1.", 5) == 0) {
		const char *got = arc_aar1_result(r, name + 5);
		return expect(file, name, want, got ? got : "(absent)");
	}
	if (sscanf(name, "sealer%u", &inst) == 1 || sscanf(name, "as%u", &inst) == 1 ||
	    sscanf(name, "ams%u", &inst) == 1) {
		if (inst == 0 || inst > r->n_sets)
			return expect(file, name, want, "(no such set)");
		const struct arc_set *s = &r->sets[inst - 1];
		if (s->instance != inst)
			return expect(file, "instance", num(inst, buf), num(s->instance, buf));
		if (strncmp(name, "sealer", 6) == 0)
			return expect(file, name, want, s->as.d);
		if (strncmp(name, "ams", 3) == 0)
			return expect(file, name, want, auth_res_name(s->ams.res));
		return expect(file, name, want, auth_res_name(s->as.res));
	}
	printf("FAIL %s: unknown expectation %s\n", file, name);
	bad++;
	return 1;
}

static void run_case(const char *dir, char **f, size_t nf, uint64_t now,
                     struct memdns *md)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, f[0]);
	size_t len;
	char *msg = dkvt_read_file(path, &len);
	if (msg == NULL) {
		printf("FAIL %s: cannot read\n", f[0]);
		bad++;
		return;
	}
	/* loop thread: list and look up */
	struct msg m;
	struct dkv_keyset *ks = dkv_keyset_new();
	struct arc_ref *refs = calloc(ARC_MAX_REFS, sizeof *refs);
	struct pending *pend = calloc(ARC_MAX_REFS, sizeof *pend);
	struct arc_listing sum;
	memset(&sum, 0, sizeof sum);
	size_t nrefs = 0, lookups = 0;
	if (ks == NULL || refs == NULL || pend == NULL) {
		printf("FAIL out of memory\n");
		exit(1);
	}
	if (msg_parse(msg, len, &m) != 0) {
		printf("FAIL %s: msg_parse\n", f[0]);
		bad++;
	} else {
		nrefs = arc_list(&m, refs, ARC_MAX_REFS, &sum);
		for (size_t k = 0; k < nrefs && !sum.decided; k++) {
			if (refs[k].qname[0] == '\0' || refs[k].dup)
				continue;
			pend[k].ks = ks;
			snprintf(pend[k].qname, sizeof pend[k].qname, "%s", refs[k].qname);
			dnsq_lookup(memdns_dnsq(md), refs[k].qname, DNSQ_T_TXT, on_key,
			            &pend[k]);
			lookups++;
		}
		memdns_run(md);
		msg_free(&m);
	}

	/* worker: verify */
	struct arc_opts o = { .fixed_time = now };
	struct arc_result r;
	struct trace t;
	trace_init(&t, trace_now_us(), 1);
	int rc = arc_verify(&o, msg, len, ks, &r, &t);
	int failed = 0;
	checks++;
	if (rc != 0) {
		printf("FAIL %s: arc_verify returned %d\n", f[0], rc);
		bad++;
		failed = 1;
	}
	/* what arc_list decided alone must be what arc_verify says */
	if (sum.decided)
		failed |= expect(f[0], "arc_list's early decision", auth_res_name(sum.result),
		                 auth_res_name(r.chain));
	else
		failed |= expect(f[0], "lookups started", lookups ? "some" : "none",
		                 "some");
	for (size_t k = 1; k < nf; k++)
		failed |= check_one(f[0], f[k], &r);
	char ar[512];
	arc_ar_text(&r, ar, sizeof ar);
	if (failed) {
		for (size_t k = 0; k < t.n; k++)
			printf("    trace: %s\n", t.lines[k].text);
		printf("    listing: decided=%d %s; refs=%zu lookups=%zu\n",
		       sum.decided, sum.reason, nrefs, lookups);
	} else {
		printf("ok   %-26s arc=%s\n", f[0], ar);
	}
	trace_free(&t);
	arc_result_free(&r);
	dkv_keyset_free(&ks);
	free(refs);
	free(pend);
	free(msg);
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s DIR NOW\n", argv[0]);
		return 2;
	}
	uint64_t now = strtoull(argv[2], NULL, 10);
	char path[4096];
	snprintf(path, sizeof path, "%s/keys.txt", argv[1]);
	struct memdns *md = load_zone(path);
	snprintf(path, sizeof path, "%s/cases.tsv", argv[1]);
	char *list = dkvt_read_file(path, NULL);
	if (md == NULL || list == NULL) {
		fprintf(stderr, "cannot read %s\n", argv[1]);
		return 2;
	}
	size_t ncases = 0;
	char *save = NULL;
	for (char *line = strtok_r(list, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		char *f[32];
		size_t nf = dkvt_split_tabs(line, f, 32);
		if (nf == 0)
			continue;
		run_case(argv[1], f, nf, now, md);
		ncases++;
	}
	free(list);
	memdns_free(&md);
	printf("%zu cases, %d checks, %d failed\n", ncases, checks, bad);
	return bad || ncases == 0 ? 1 : 0;
}
