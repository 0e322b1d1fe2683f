/* Fuzz target: reading a stored evidence document back (common/jsonr.c
 * and store_replay_load) and re-deciding it (store_replay_decide), as the
 * what-if replay does with whatever the store holds. Invariants: the
 * tokens nest inside each other and inside the text, every string reads
 * back within its buffer, a document jansson accepts the reader accepts
 * too, and a loaded document decides to a verdict under two
 * configurations, a DMARC failure left at reject being refused. */
#include "tests/fuzz/fuzz.h"
#include "common/jsonr.h"
#include "store/evidence.h"

#include <jansson.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *txt = fz_dup(data, size);
	static struct jsonr_tok tok[4096];
	struct jsonr j;
	const char *why = NULL;
	int rc = jsonr_parse(&j, txt, size, tok, 4096, &why);
	FUZZ_ASSERT(rc == 0 || why != NULL);
	if (rc == 0) {
		FUZZ_ASSERT(j.n > 0 && j.n <= 4096 && tok[0].next == j.n);
		for (size_t i = 0; i < j.n; i++) {
			FUZZ_ASSERT(tok[i].next > i && tok[i].next <= j.n);
			FUZZ_ASSERT((size_t)tok[i].start + tok[i].len <= size);
			if (tok[i].type == JSONR_STRING) {
				char out[64];
				long n = jsonr_str(&j, (long)i, out, sizeof(out));
				FUZZ_ASSERT(n >= 0 && (size_t)n < sizeof(out) && out[n] == '\0');
			}
			if (tok[i].type == JSONR_ARRAY && tok[i].count)
				FUZZ_ASSERT(jsonr_at(&j, (long)i, tok[i].count - 1) >= 0 &&
				            jsonr_at(&j, (long)i, tok[i].count) == -1);
		}
	} else if (strcmp(why, "too many values") != 0 && strcmp(why, "nested too deep") != 0 &&
	           !memchr(data, 0, size)) {
		/* what jansson takes (any value), the reader takes; jansson
		 * takes a NUL byte for the end of the text, so none is compared */
		json_error_t je;
		json_t *v = json_loadb(txt, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
		FUZZ_ASSERT(v == NULL);
	}

	/* the store hands over NUL-terminated text */
	char *doc = malloc(size + 1);
	if (!doc)
		abort();
	memcpy(doc, data, size);
	doc[size] = '\0';
	struct store_replay r;
	char err[256];
	if (store_replay_load(doc, &r, err, sizeof(err)) == 0) {
		struct verdict_opts vo;
		verdict_opts_default(&vo);
		struct policy_conf pc = { .mode = POLICY_RFC9989 };
		struct store_replay_conf c = { .policy = &pc, .vo = &vo,
		                               .bad_author_disp = DMARC_DISP_REJECT };
		struct store_outcome o;
		if (store_replay_decide(&r, &c, &o) == 0)
			FUZZ_ASSERT(o.action <= VERDICT_TEMPFAIL && o.disp <= DMARC_DISP_REJECT);
		pc.mode = POLICY_QUARANTINE_ONLY;
		c.as_domain = "example.com";
		c.as_policy = DMARC_POLICY_REJECT;
		/* a DMARC failure left at reject is refused (or tempfailed) */
		if (store_replay_decide(&r, &c, &o) == 0 && r.dmarc.res == DMARC_RES_FAIL)
			FUZZ_ASSERT(o.disp != DMARC_DISP_REJECT || o.action == VERDICT_REJECT ||
			            o.action == VERDICT_TEMPFAIL);
		enum verdict_action a;
		enum dmarc_disp d;
		(void)store_replay_stored(&r, &a, &d);
		store_replay_free(&r);
	}
	free(doc);
	free(txt);
	return 0;
}
