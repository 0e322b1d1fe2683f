/* Fuzz target: the policy layer's untrusted inputs (checks/policy): the
 * instance-1 ARC-Authentication-Results text, the message's list header
 * fields, the client's HELO and MAIL FROM. Input: an AAR text, a NUL, a
 * HELO, a NUL, a MAIL FROM, a NUL, then a header section. Invariants: the
 * A-R parser (arc_ar_parse) gives lower-case, printable, bounded entries;
 * an upstream dmarc=pass is only taken with a header.from that the text
 * holds; an override of a reject is only ever "none" or "quarantine" with
 * a reason, and only for evidence the configuration trusts. */
#include "tests/fuzz/fuzz.h"
#include "checks/arc/arc.h"
#include "checks/policy/policy.h"

#include <ctype.h>
#include <strings.h>

static struct policy_conf conf;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	char err[256];
	conf.mode = POLICY_RFC9989;
	if (policy_add_sealers(&conf, "arc.lists.example", err, sizeof(err)) != 0 ||
	    policy_add_forwarders(&conf, "198.51.100.0/24 helo:relay.example from:alumni.example",
	                          err, sizeof(err)) != 0 ||
	    policy_add_lists(&conf, "lists.example", err, sizeof(err)) != 0)
		abort();
	return 0;
}

static int lower_printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f || isupper((unsigned char)*s))
			return 0;
	return 1;
}

static int contains_ci(const char *hay, const char *needle)
{
	size_t n = strlen(needle);
	for (; *hay; hay++)
		if (strncasecmp(hay, needle, n) == 0)
			return 1;
	return n == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (conf.n_sealers == 0)
		LLVMFuzzerInitialize(NULL, NULL);
	struct fz f;
	fz_init(&f, data, size);
	unsigned flags = fz_u8(&f);
	char *aar = fz_str(&f, 4096);
	char *helo = fz_str(&f, 256);
	char *mfrom = fz_str(&f, 256);
	char *head = fz_dup(f.p, f.len);

	struct arc_aar_method m[ARC_AAR_MAX];
	char id[128];
	size_t n = arc_ar_parse(aar, strlen(aar), id, sizeof(id), m, ARC_AAR_MAX);
	FUZZ_ASSERT(n <= ARC_AAR_MAX);
	for (size_t k = 0; k < n; k++) {
		FUZZ_ASSERT(m[k].method[0] && lower_printable(m[k].method));
		FUZZ_ASSERT(m[k].result[0] && lower_printable(m[k].result));
	}

	struct msg msg;
	int have_msg = msg_parse(head, f.len, &msg) == MSG_OK;
	const char *sealers[2] = { (flags & 1) ? "arc.lists.example" : "attacker.example",
	                           "arc.lists.example" };
	const char *dkim[1] = { (flags & 2) ? "lists.example" : "example.com" };
	struct policy_facts facts = {
		.m = have_msg ? &msg : NULL,
		.client_ip = (flags & 4) ? "198.51.100.7" : "203.0.113.9",
		.helo = helo,
		.mail_from = mfrom,
		.spf_helo_pass = !!(flags & 8),
		.spf_mfrom_pass = !!(flags & 16),
		.dkim_pass = dkim,
		.n_dkim_pass = (flags & 32) ? 1 : 0,
		.arc = (flags & 64) ? AUTH_PASS : AUTH_FAIL,
		.arc_sealers = sealers,
		.n_sealers = (flags & 128) ? 2 : 1,
		.arc_oldest_pass = 0,
		.aar1 = aar,
	};
	struct policy_evidence ev;
	policy_gather(&conf, &facts, &ev);
	if (ev.arc_aar1_dmarc_pass) {
		FUZZ_ASSERT(ev.arc_trusted && facts.arc == AUTH_PASS);
		FUZZ_ASSERT(ev.arc_aar1_from[0] && lower_printable(ev.arc_aar1_from));
		if (!contains_ci(aar, ev.arc_aar1_from))
			fprintf(stderr, "header.from \"%s\" is not in the text\n", ev.arc_aar1_from);
		FUZZ_ASSERT(contains_ci(aar, ev.arc_aar1_from));
	}
	struct policy_decision d;
	policy_decide(&conf, "example.com", POLICY_DISP_REJECT, &ev, &d);
	if (d.disp != POLICY_DISP_REJECT)
		FUZZ_ASSERT(d.override != NULL && d.why[0]);
	if (d.disp == POLICY_DISP_NONE)
		FUZZ_ASSERT(ev.forwarder || ev.list_trusted ||
		            (ev.arc_aar1_dmarc_pass && strcmp(ev.arc_aar1_from, "example.com") == 0));
	policy_decide(&conf, "example.com", POLICY_DISP_QUARANTINE, &ev, &d);
	FUZZ_ASSERT(d.disp == POLICY_DISP_QUARANTINE);   /* only a reject is ever lowered */

	msg_free(&msg);
	free(aar);
	free(helo);
	free(mfrom);
	free(head);
	return 0;
}
