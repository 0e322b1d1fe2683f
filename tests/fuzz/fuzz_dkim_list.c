/* Fuzz target: DKIM signature listing (dkv_list) on a parsed message.
 * Invariants: no more refs than asked, the total counts every
 * DKIM-Signature field, strings are terminated and printable, a qname is
 * "" or a lower-case "<s>._domainkey.<d>", and dup marks exactly the
 * repeated qnames. */
#include "tests/fuzz/fuzz.h"
#include "checks/dkim/dkv.h"
#include "checks/msg.h"

static void check_printable(const char *s, size_t cap)
{
	size_t l = strnlen(s, cap);
	FUZZ_ASSERT(l < cap);
	for (size_t i = 0; i < l; i++)
		FUZZ_ASSERT((unsigned char)s[i] >= 0x20 && (unsigned char)s[i] < 0x7f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = fz_dup(data, size);
	struct msg m;
	if (msg_parse(buf, size, &m) == MSG_OK) {
		size_t max = LIM_DKIM_MAX_SIGNATURES;
		struct dkv_sigref refs[LIM_DKIM_MAX_SIGNATURES + 1];
		memset(refs, 0x5a, sizeof(refs));
		size_t total = (size_t)-1;
		size_t n = dkv_list(&m, refs, max, &total);
		FUZZ_ASSERT(n <= max);
		FUZZ_ASSERT(total == msg_count(&m, "dkim-signature"));
		FUZZ_ASSERT(n == (total < max ? total : max));
		/* the slot after the last one was not written */
		FUZZ_ASSERT(((unsigned char *)&refs[max])[0] == 0x5a);
		for (size_t i = 0; i < n; i++) {
			const struct dkv_sigref *r = &refs[i];
			check_printable(r->d, sizeof(r->d));
			check_printable(r->s, sizeof(r->s));
			check_printable(r->a, sizeof(r->a));
			check_printable(r->qname, sizeof(r->qname));
			if (r->qname[0]) {
				FUZZ_ASSERT(r->d[0] && r->s[0]);
				FUZZ_ASSERT(strstr(r->qname, "._domainkey.") != NULL);
				FUZZ_ASSERT(strlen(r->qname) <= 253);
				for (const char *c = r->qname; *c; c++)
					FUZZ_ASSERT(!(*c >= 'A' && *c <= 'Z'));
			}
			int seen = 0;
			for (size_t j = 0; j < i; j++)
				if (r->qname[0] && strcmp(refs[j].qname, r->qname) == 0)
					seen = 1;
			FUZZ_ASSERT(r->dup == seen);
		}
		/* a smaller max lists a prefix of the same refs */
		if (n > 1) {
			struct dkv_sigref one;
			FUZZ_ASSERT(dkv_list(&m, &one, 1, NULL) == 1);
			FUZZ_ASSERT(strcmp(one.qname, refs[0].qname) == 0);
		}
	}
	msg_free(&m);
	free(buf);
	return 0;
}
