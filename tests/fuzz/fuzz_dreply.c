/* Fuzz target: the MTA clients' reply parser (clients/dclient.c,
 * dreply_parse) on raw daemon replies, from a heap copy of exactly the
 * input's size with no NUL after it, so ASan sees any read past the end.
 * Invariants: a parsed reply has a status code of three digits; every
 * array has as many strings as it says; no value holds a CR (a reply with
 * a CR or NUL inside a line is refused), and only signatures hold line
 * ends (folded with LF + tab); parsing the same bytes twice gives the
 * same result. */
#include "tests/fuzz/fuzz.h"
#include "clients/dclient.h"

static void check_arr(char **a, size_t n, int folded)
{
	FUZZ_ASSERT(n == 0 || a != NULL);
	for (size_t i = 0; i < n; i++) {
		FUZZ_ASSERT(a[i] != NULL);
		FUZZ_ASSERT(strchr(a[i], '\r') == NULL);
		if (!folded)
			FUZZ_ASSERT(strchr(a[i], '\n') == NULL);
		for (const char *nl = strchr(a[i], '\n'); nl; nl = strchr(nl + 1, '\n'))
			FUZZ_ASSERT(nl[1] == ' ' || nl[1] == '\t');
	}
}

static void check_str(const char *s)
{
	if (s)
		FUZZ_ASSERT(strchr(s, '\n') == NULL && strchr(s, '\r') == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size ? size : 1);
	FUZZ_ASSERT(buf != NULL);
	memcpy(buf, data, size);
	struct dreply a, b;
	int ra = dreply_parse(buf, size, &a);
	int rb = dreply_parse(buf, size, &b);
	FUZZ_ASSERT(ra == rb);
	if (ra == 0) {
		FUZZ_ASSERT(a.code >= 100 && a.code <= 999);
		FUZZ_ASSERT(a.code == b.code);
		FUZZ_ASSERT(a.status != NULL);
		FUZZ_ASSERT(strcmp(a.status, b.status) == 0);
		check_str(a.status);
		check_str(a.action);
		check_str(a.smtp_reply);
		check_str(a.auth_results);
		check_arr(a.symbols, a.n_symbols, 0);
		check_arr(a.add_headers, a.n_add_headers, 0);
		check_arr(a.trace, a.n_trace, 0);
		check_arr(a.fields, a.n_fields, 0);
		check_arr(a.signatures, a.n_signatures, 1);
		FUZZ_ASSERT(a.n_signatures == b.n_signatures && a.n_fields == b.n_fields &&
		            a.n_symbols == b.n_symbols && a.n_trace == b.n_trace);
		FUZZ_ASSERT(a.score == b.score || (a.score != a.score && b.score != b.score));
	}
	dreply_free(&a);
	dreply_free(&b);
	free(buf);
	return 0;
}
