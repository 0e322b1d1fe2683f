/* Fuzz target: the message header splitter (checks/msg.h) and the DMARC
 * author extraction (dmarc_author, dmarc_author_value) on what it finds.
 * Invariants: every field lies inside the header section, in order; the
 * body is the rest of the buffer; author domains are normalised names. */
#include "tests/fuzz/fuzz.h"
#include "checks/dmarc/dmarc.h"
#include "checks/msg.h"
#include "common/limits.h"

static void check_author(const struct dmarc_author *a, int rc)
{
	FUZZ_ASSERT(a->n_domains <= LIM_DMARC_AUTHOR_DOMAINS);
	FUZZ_ASSERT(memchr(a->display, 0, sizeof(a->display)) != NULL);
	for (const char *c = a->display; *c; c++)
		FUZZ_ASSERT((unsigned char)*c >= 0x20 && (unsigned char)*c < 0x7f);
	if (rc == 0) {
		FUZZ_ASSERT(a->status == DMARC_AUTHOR_OK || a->status == DMARC_AUTHOR_MULTI_DOMAIN ||
		            a->status == DMARC_AUTHOR_MULTI_FIELD);
		FUZZ_ASSERT(a->n_domains >= 1);
	} else {
		FUZZ_ASSERT(rc == -1);
		FUZZ_ASSERT(a->why != NULL);
	}
	FUZZ_ASSERT(dmarc_author_status_name(a->status) != NULL);
	for (size_t i = 0; i < a->n_domains; i++) {
		const char *d = a->domains[i];
		size_t l = strnlen(d, DMARC_DOMAIN_MAX);
		FUZZ_ASSERT(l > 0 && l < DMARC_DOMAIN_MAX && l <= 253);
		FUZZ_ASSERT(d[l - 1] != '.' && d[0] != '.');
		for (size_t k = 0; k < l; k++) {
			char c = d[k];
			FUZZ_ASSERT((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			            c == '-' || c == '.' || c == '_');
			FUZZ_ASSERT(!(c == '.' && d[k + 1] == '.'));
		}
		/* a normalised domain normalises to itself */
		char again[DMARC_DOMAIN_MAX];
		FUZZ_ASSERT(dmarc_domain_norm(d, l, again) == 0);
		FUZZ_ASSERT(strcmp(again, d) == 0);
		for (size_t j = 0; j < i; j++)
			FUZZ_ASSERT(strcmp(a->domains[j], d) != 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = fz_dup(data, size);
	struct msg m;
	int rc = msg_parse(buf, size, &m);
	FUZZ_ASSERT(rc == MSG_OK || rc == MSG_E_TOO_MANY || rc == MSG_E_LINE ||
	            rc == MSG_E_BLOCK || rc == MSG_E_NOMEM);
	if (rc == MSG_OK) {
		FUZZ_ASSERT(m.header_len <= size);
		FUZZ_ASSERT(m.n_fields <= LIM_MAX_HEADERS);
		FUZZ_ASSERT(m.body >= buf && m.body <= buf + size);
		FUZZ_ASSERT((size_t)(m.body - buf) + m.body_len == size);
		const char *prev_end = buf;
		for (size_t i = 0; i < m.n_fields; i++) {
			const struct msg_field *fl = &m.fields[i];
			FUZZ_ASSERT(fl->name_len > 0);
			FUZZ_ASSERT(fl->line >= prev_end);
			FUZZ_ASSERT(fl->line + fl->line_len <= m.body);
			FUZZ_ASSERT(fl->name == fl->line);
			FUZZ_ASSERT(fl->name_len < fl->line_len);
			FUZZ_ASSERT(!memchr(fl->name, ':', fl->name_len));
			FUZZ_ASSERT(fl->value >= fl->line);
			FUZZ_ASSERT(fl->value + fl->value_len == fl->line + fl->line_len);
			FUZZ_ASSERT(fl->line_len <= LIM_MAX_HEADER_LINE + 2);
			prev_end = fl->line + fl->line_len;
			/* lookups by name find this field */
			char name[64];
			if (fl->name_len < sizeof(name) && !memchr(fl->name, 0, fl->name_len)) {
				memcpy(name, fl->name, fl->name_len);
				name[fl->name_len] = '\0';
				FUZZ_ASSERT(msg_count(&m, name) >= 1);
				FUZZ_ASSERT(msg_get(&m, name, 0) != NULL);
			}
			char out[256];
			size_t ul = msg_unfold(fl->value, fl->value_len, out, sizeof(out));
			if (ul != (size_t)-1) {
				FUZZ_ASSERT(ul < sizeof(out));
				FUZZ_ASSERT(out[ul] == '\0');
				FUZZ_ASSERT(ul <= fl->value_len);
			}
		}
		struct dmarc_author a;
		int arc = dmarc_author(&m, &a);
		check_author(&a, arc);
		FUZZ_ASSERT(a.n_fields == msg_count(&m, "from"));
		for (size_t i = 0; i < 3; i++) {
			const struct msg_field *fr = msg_get(&m, "from", i);
			if (!fr)
				break;
			/* exact-size copy of the value: no read past it */
			char *v = fz_dup((const uint8_t *)fr->value, fr->value_len);
			struct dmarc_author one;
			int orc = dmarc_author_value(v, fr->value_len, &one);
			check_author(&one, orc);
			free(v);
		}
	}
	/* the whole input as one From value, too */
	if (size <= 8192) {
		struct dmarc_author whole;
		check_author(&whole, dmarc_author_value(buf, size, &whole));
	}
	size_t he = msg_header_end(buf, size);
	FUZZ_ASSERT(he <= size);
	if (he > 0)
		FUZZ_ASSERT(buf[he - 1] == '\n');
	msg_free(&m);
	free(buf);
	return 0;
}
