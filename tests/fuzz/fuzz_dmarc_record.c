/* Fuzz target: the DMARC policy record parser (dmarc_record_parse) in both
 * discovery modes. Invariants: the status is one of three, effective
 * policies are in range, pct within 0..100, fo is a terminated string,
 * and parsing is deterministic. */
#include "tests/fuzz/fuzz.h"
#include "checks/dmarc/dmarc.h"

static void check_record(const struct dmarc_record *r, int st)
{
	FUZZ_ASSERT(st == (int)r->status);
	FUZZ_ASSERT(st == DMARC_REC_NOT_DMARC || st == DMARC_REC_VALID || st == DMARC_REC_UNUSABLE);
	if (st != DMARC_REC_VALID)
		return;
	enum dmarc_policy ps[] = { r->p, r->sp, r->np };
	for (size_t i = 0; i < 3; i++) {
		FUZZ_ASSERT(ps[i] <= DMARC_POLICY_INVALID);
		FUZZ_ASSERT(dmarc_policy_name(ps[i]) != NULL);
	}
	FUZZ_ASSERT(r->p != DMARC_POLICY_INVALID);
	FUZZ_ASSERT(r->pct <= 100);
	FUZZ_ASSERT(r->psd <= DMARC_PSD_N);
	FUZZ_ASSERT(memchr(r->fo, 0, sizeof(r->fo)) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *txt = fz_dup(data, size);
	for (int mode = DMARC_MODE_RFC9989; mode <= DMARC_MODE_RFC7489; mode++) {
		struct dmarc_record r, r2;
		memset(&r, 0xa5, sizeof(r));
		int st = dmarc_record_parse(txt, size, (enum dmarc_mode)mode, &r);
		check_record(&r, st);
		int st2 = dmarc_record_parse(txt, size, (enum dmarc_mode)mode, &r2);
		FUZZ_ASSERT(st == st2);
		if (st == DMARC_REC_VALID)
			FUZZ_ASSERT(r.p == r2.p && r.sp == r2.sp && r.np == r2.np && r.pct == r2.pct);
	}
	free(txt);
	return 0;
}
