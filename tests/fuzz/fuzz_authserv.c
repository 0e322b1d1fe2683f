/* Fuzz target: the MTA clients' authserv-id reader (clients/dclient.c) on
 * raw Authentication-Results values, with an id buffer of a size taken
 * from the input, exactly as large as that (so ASan sees any overflow).
 * A readable id is lower-case, printable, without white space or trailing
 * dot, and fits; the reading is deterministic; a readable value claims its
 * own id; an unreadable one, or an unknown id, is always removed; and the
 * same id written quoted, escaped, commented, folded or upper-case is read
 * the same. */
#include "tests/fuzz/fuzz.h"
#include "clients/dclient.h"
#include "common/limits.h"

#include <ctype.h>

static int readable_id(const char *id)
{
	size_t n = strlen(id);
	if (n == 0 || id[n - 1] == '.')
		return 0;
	for (const char *p = id; *p; p++) {
		unsigned char ch = (unsigned char)*p;
		if (ch <= 0x20 || ch == 0x7f || isupper(ch))
			return 0;
	}
	return 1;
}

static int all_token(const char *id)
{
	for (const char *p = id; *p; p++)
		if ((unsigned char)*p >= 0x7f || strchr("()<>@,;:\\\"/[]?=", *p))
			return 0;
	return 1;
}

/* The id read from a heap copy of exactly len bytes. */
static int read_copy(const char *v, size_t len, char *id, size_t idlen)
{
	char *c = malloc(len ? len : 1);
	if (!c)
		abort();
	memcpy(c, v, len);
	int rc = dclient_ar_authserv_id(c, len, id, idlen);
	free(c);
	return rc;
}

static void same_id(const char *variant, const char *id)
{
	char got[LIM_AUTHSERV_ID];
	int rc = read_copy(variant, strlen(variant), got, sizeof(got));
	FUZZ_ASSERT(rc == 0);
	FUZZ_ASSERT(strcmp(got, id) == 0);
	FUZZ_ASSERT(dclient_ar_forged(variant, strlen(variant), id) == 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f;
	fz_init(&f, data, size);
	size_t idlen = 1 + fz_u16(&f) % (LIM_AUTHSERV_ID + 8);
	unsigned sel = fz_u8(&f);
	size_t n;
	const uint8_t *raw = fz_bytes(&f, f.len, &n);
	const char *v = (const char *)raw;

	char *id = malloc(idlen);
	if (!id)
		abort();
	int rc = read_copy(v, n, id, idlen);
	FUZZ_ASSERT(rc >= -1 && rc <= 1);
	FUZZ_ASSERT(strlen(id) < idlen);
	if (rc < 0) {
		FUZZ_ASSERT(id[0] == '\0');
	} else {
		FUZZ_ASSERT(readable_id(id));
	}
	/* deterministic */
	char *again = malloc(idlen);
	if (!again)
		abort();
	FUZZ_ASSERT(read_copy(v, n, again, idlen) == rc);
	FUZZ_ASSERT(strcmp(again, id) == 0);
	free(again);

	/* the removal rule */
	FUZZ_ASSERT(dclient_ar_forged(v, n, "") == 1);
	char full[LIM_AUTHSERV_ID];
	int frc = read_copy(v, n, full, sizeof(full));
	if (frc != 0) {
		FUZZ_ASSERT(dclient_ar_forged(v, n, "mx.test.example") == 1);
	} else {
		FUZZ_ASSERT(dclient_ar_forged(v, n, full) == 1);
		FUZZ_ASSERT(dclient_ar_forged(v, n, "mx.test.example") ==
		            (strcmp(full, "mx.test.example") == 0));
		/* written otherwise, the same id: the forms a forger would try */
		size_t il = strlen(full);
		char *w = malloc(4 * il + 64);
		if (!w)
			abort();
		if (all_token(full)) {
			char *up = strdup(full);
			if (!up)
				abort();
			for (char *p = up; *p; p++)
				*p = (char)toupper((unsigned char)*p);
			snprintf(w, 4 * il + 64, "%s%s; x=y", (sel & 1) ? " " : "", up);
			same_id(w, full);
			/* a root dot counts against the length limit */
			snprintf(w, 4 * il + 64, " (c\\) (n)) \r\n\t%s%s%s ; x=y", up,
			         il + 2 < LIM_AUTHSERV_ID ? "." : "", (sel & 2) ? " 1" : "");
			same_id(w, full);
			free(up);
		}
		/* quoted, every character escaped, folded */
		size_t o = 0;
		w[o++] = ' ';
		w[o++] = '"';
		for (size_t i = 0; i < il; i++) {
			if ((sel & 4) || full[i] == '"' || full[i] == '\\')
				w[o++] = '\\';
			w[o++] = full[i];
			if ((sel & 8) && i == il / 2) {
				w[o++] = '\r';
				w[o++] = '\n';
			}
		}
		memcpy(w + o, "\" ; x=y", 8);
		same_id(w, full);
		free(w);
	}
	free(id);
	return 0;
}
