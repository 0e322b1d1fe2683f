/* Fuzz target: the rua= destination parser and the verification-record
 * check of the report tool (report/rua.c), both fed DNS text. Invariants:
 * every destination is a terminated local@domain with no byte that a mail
 * header or an SMTP command could not carry, its domain points inside it,
 * at most cap are returned, and parsing is deterministic. */
#include "tests/fuzz/fuzz.h"
#include "report/report.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *txt = fz_dup(data, size);
	struct rpt_dest d[LIM_REPORT_DESTS], d2[LIM_REPORT_DESTS];
	unsigned sk, sk2;
	int n = rpt_rua_parse(txt, size, d, LIM_REPORT_DESTS, &sk);
	int n2 = rpt_rua_parse(txt, size, d2, LIM_REPORT_DESTS, &sk2);
	FUZZ_ASSERT(n == n2 && sk == sk2);
	FUZZ_ASSERT(n >= -1 && n <= (int)LIM_REPORT_DESTS);
	for (int i = 0; i < n; i++) {
		size_t len = strnlen(d[i].addr, sizeof(d[i].addr));
		FUZZ_ASSERT(len > 0 && len < sizeof(d[i].addr));
		FUZZ_ASSERT(d[i].domain > d[i].addr && d[i].domain < d[i].addr + len);
		FUZZ_ASSERT(d[i].domain[-1] == '@');
		for (size_t k = 0; k < len; k++) {
			unsigned char c = (unsigned char)d[i].addr[k];
			FUZZ_ASSERT(c > ' ' && c < 0x7f && c != '<' && c != '>' && c != '"');
		}
		FUZZ_ASSERT(strcmp(d[i].addr, d2[i].addr) == 0 && d[i].max_size == d2[i].max_size);
	}
	int v = rpt_verify_record(txt, size);
	FUZZ_ASSERT(v == 0 || v == 1);
	FUZZ_ASSERT(!v || (size >= 8 && memcmp(txt, "v=DMARC1", 8) == 0));
	free(txt);
	return 0;
}
