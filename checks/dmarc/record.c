/* DMARC policy record parser (RFC 9989 4.7 and 4.8, RFC 7489 6.3).
 * Pure function over a counted string; any thread. */
#include "checks/dmarc/dmarc.h"
#include "common/text.h"

#include <string.h>

static int is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static int is_digit(char c) { return c >= '0' && c <= '9'; }

const char *dmarc_policy_name(enum dmarc_policy p)
{
	switch (p) {
	case DMARC_POLICY_UNSET:      return "unset";
	case DMARC_POLICY_NONE:       return "none";
	case DMARC_POLICY_QUARANTINE: return "quarantine";
	case DMARC_POLICY_REJECT:     return "reject";
	case DMARC_POLICY_INVALID:    return "invalid";
	}
	return "unset";
}

static enum dmarc_policy parse_request(const char *v, size_t n)
{
	/* RFC 9989 4.8 dmarc-request; ABNF literals are case-insensitive */
	if (text_ieq(v, n, "none"))
		return DMARC_POLICY_NONE;
	if (text_ieq(v, n, "quarantine"))
		return DMARC_POLICY_QUARANTINE;
	if (text_ieq(v, n, "reject"))
		return DMARC_POLICY_REJECT;
	return DMARC_POLICY_INVALID;
}

/* One URI of a dmarc-urilist: scheme ":" something, no WSP inside, with an
 * optional obsolete "!size" suffix (RFC 9989 4.8 obs-dmarc-report-size). */
static int valid_uri(const char *s, size_t n)
{
	if (n == 0 || !is_alpha(s[0]))
		return 0;
	size_t i = 1;
	while (i < n && (is_alpha(s[i]) || is_digit(s[i]) || s[i] == '+' ||
	                 s[i] == '-' || s[i] == '.'))
		i++;
	if (i >= n || s[i] != ':')
		return 0;
	size_t rest = ++i;
	size_t end = n;
	for (size_t k = rest; k < n; k++)
		if (s[k] == '!') {
			/* "!" 1*DIGIT [k/m/g/t], only at the end */
			size_t d = k + 1;
			while (d < n && is_digit(s[d]))
				d++;
			if (d == k + 1)
				return 0;
			if (d < n && strchr("kmgtKMGT", s[d]))
				d++;
			if (d != n)
				return 0;
			end = k;
			break;
		}
	if (end <= rest)
		return 0;
	for (size_t k = rest; k < end; k++) {
		unsigned char c = (unsigned char)s[k];
		if (c <= 0x20 || c >= 0x7f || c == ';' || c == ',')
			return 0;
	}
	return 1;
}

static unsigned count_uris(const char *v, size_t n, int *bad_r)
{
	unsigned ok = 0;
	size_t i = 0;
	*bad_r = 0;
	while (i <= n) {
		size_t j = i;
		while (j < n && v[j] != ',')
			j++;
		const char *u = v + i;
		size_t ul = j - i;
		text_trim(&u, &ul);
		if (valid_uri(u, ul))
			ok++;
		else
			*bad_r = 1;
		i = j + 1;
	}
	return ok;
}

/* RFC 9989 4.8 dmarc-fo: "0"/"1" (at most one of them) and "d"/"s" (each
 * at most once), separated by colons. */
static int valid_fo(const char *v, size_t n)
{
	int seen01 = 0, seen_d = 0, seen_s = 0;
	size_t i = 0;
	if (n == 0)
		return 0;
	while (i < n) {
		const char *f = v + i;
		size_t j = i;
		while (j < n && v[j] != ':')
			j++;
		size_t fl = j - i;
		text_trim(&f, &fl);
		if (fl != 1)
			return 0;
		char c = f[0];
		if (c == '0' || c == '1') {
			if (seen01++)
				return 0;
		} else if (c == 'd' || c == 'D') {
			if (seen_d++)
				return 0;
		} else if (c == 's' || c == 'S') {
			if (seen_s++)
				return 0;
		} else {
			return 0;
		}
		if (j == n)
			break;
		i = j + 1;
		if (i == n)
			return 0;   /* trailing colon */
	}
	return 1;
}

enum tag_id { T_V, T_P, T_SP, T_NP, T_PSD, T_T, T_ADKIM, T_ASPF, T_RUA,
              T_RUF, T_FO, T_PCT, T_RI, T_RF, T_COUNT, T_UNKNOWN = -1 };

static int tag_of(const char *s, size_t n)
{
	static const char *const names[T_COUNT] = {
		"v", "p", "sp", "np", "psd", "t", "adkim", "aspf", "rua",
		"ruf", "fo", "pct", "ri", "rf" };
	for (int i = 0; i < T_COUNT; i++)
		if (text_ieq(s, n, names[i]))
			return i;
	return T_UNKNOWN;
}

int dmarc_record_parse(const char *txt, size_t len, enum dmarc_mode mode,
                       struct dmarc_record *r)
{
	memset(r, 0, sizeof(*r));
	r->pct = 100;
	r->status = DMARC_REC_NOT_DMARC;
	r->why = "not a DMARC record";
	if (len > LIM_DMARC_RECORD) {
		r->why = "record too long";
		return r->status;
	}
	const char *s = txt;
	size_t n = len;
	text_trim(&s, &n);

	unsigned seen = 0;              /* bit per known tag */
	int dup = 0, bad_policy = 0, rua_given = 0;
	size_t i = 0, ntag = 0;
	while (i < n) {
		/* one dmarc-tag up to the next ';' (values cannot hold ';') */
		size_t j = i;
		while (j < n && s[j] != ';')
			j++;
		const char *t = s + i;
		size_t tl = j - i;
		i = j + 1;
		text_trim(&t, &tl);
		if (tl == 0) {
			if (ntag == 0)
				return r->status;  /* ";" before v= */
			continue;             /* empty element or final ';' */
		}
		ntag++;
		size_t eq = 0;
		while (eq < tl && t[eq] != '=')
			eq++;
		const char *name = t, *val = t + (eq < tl ? eq + 1 : tl);
		size_t nl = eq, vl = eq < tl ? tl - eq - 1 : 0;
		text_trim(&name, &nl);
		text_trim(&val, &vl);
		int id = T_UNKNOWN, name_ok = nl > 0 && eq < tl;
		for (size_t k = 0; k < nl && name_ok; k++)
			if (!is_alpha(name[k]))
				name_ok = 0;
		if (name_ok)
			id = tag_of(name, nl);

		if (ntag == 1) {
			/* RFC 9989 4.7 v: first tag, value exactly "DMARC1" */
			if (id != T_V || vl != 6 || memcmp(val, "DMARC1", 6) != 0)
				return r->status;
			seen |= 1u << T_V;
			r->status = DMARC_REC_VALID;
			r->why = NULL;
			continue;
		}
		if (!name_ok) {
			r->bad_tags++;      /* 4.8: syntax errors are discarded */
			continue;
		}
		if (id == T_UNKNOWN) {
			r->unknown_tags++;  /* 4.7: unknown tags MUST be ignored */
			continue;
		}
		if (seen & (1u << id)) {
			dup = 1;            /* RFC 6376 3.2: the tag-list is invalid */
			continue;
		}
		seen |= 1u << id;
		/* a value is 1*(%x20-3A / %x3C-7E) */
		int printable = vl > 0;
		for (size_t k = 0; k < vl; k++)
			if ((unsigned char)val[k] < 0x20 || (unsigned char)val[k] > 0x7e)
				printable = 0;
		switch (id) {
		case T_V:
			dup = 1;
			break;
		case T_P:
		case T_SP:
		case T_NP: {
			enum dmarc_policy pv = printable ? parse_request(val, vl)
			                                 : DMARC_POLICY_INVALID;
			if (id == T_NP && mode == DMARC_MODE_RFC7489 &&
			    pv == DMARC_POLICY_INVALID) {
				/* np= extends RFC 7489 (RFC 9091) and is honoured
				 * there too; a value it cannot use is an unknown
				 * tag to RFC 7489, ignored (6.3) */
				r->unknown_tags++;
				break;
			}
			if (pv == DMARC_POLICY_INVALID)
				bad_policy = 1;
			if (id == T_P)
				r->p = pv;
			else if (id == T_SP)
				r->sp = pv;
			else
				r->np = pv;
			break;
		}
		case T_PSD:
		case T_T:
			if (mode == DMARC_MODE_RFC7489) {
				r->unknown_tags++;
				break;
			}
			if (id == T_PSD) {
				if (text_ieq(val, vl, "y"))
					r->psd = DMARC_PSD_Y;
				else if (text_ieq(val, vl, "n"))
					r->psd = DMARC_PSD_N;
				else if (!text_ieq(val, vl, "u"))
					r->bad_tags++;   /* default u */
			} else {
				if (text_ieq(val, vl, "y"))
					r->t = 1;
				else if (!text_ieq(val, vl, "n"))
					r->bad_tags++;   /* default n */
			}
			break;
		case T_ADKIM:
		case T_ASPF: {
			int strict = 0;
			if (text_ieq(val, vl, "s"))
				strict = 1;
			else if (!text_ieq(val, vl, "r"))
				r->bad_tags++;       /* default r */
			if (id == T_ADKIM)
				r->adkim_strict = strict;
			else
				r->aspf_strict = strict;
			break;
		}
		case T_RUA:
		case T_RUF: {
			int bad;
			unsigned c = printable ? count_uris(val, vl, &bad) : 0;
			if (!printable || bad)
				r->bad_tags++;
			if (id == T_RUA) {
				r->rua_valid = c;
				rua_given = 1;
			} else {
				r->ruf_valid = c;
			}
			break;
		}
		case T_FO:
			if (printable && valid_fo(val, vl) && vl < sizeof(r->fo)) {
				memcpy(r->fo, val, vl);
				r->fo[vl] = '\0';
			} else {
				r->bad_tags++;
			}
			break;
		case T_PCT: {
			/* RFC 7489 6.3; dropped by RFC 9989 (kept for the trace) */
			uint64_t v;
			if (text_u64(val, vl, 100, &v) == 0) {
				r->pct = (unsigned)v;
				r->has_pct = 1;
			} else {
				r->bad_tags++;
			}
			break;
		}
		case T_RI: {
			uint64_t v;
			if (text_u64(val, vl, UINT32_MAX, &v) != 0)
				r->bad_tags++;
			break;
		}
		case T_RF:
			break;   /* RFC 7489 report format; not used for evaluation */
		default:
			break;
		}
	}
	if (r->status != DMARC_REC_VALID)
		return r->status;
	(void)rua_given;
	if (dup) {
		r->status = DMARC_REC_UNUSABLE;
		r->why = "duplicated tag (RFC 6376 3.2)";
		return r->status;
	}
	if (r->p == DMARC_POLICY_UNSET && mode == DMARC_MODE_RFC9989) {
		/* RFC 9989 4.7 p: absent in an otherwise valid record: p=none */
		r->p_absent = 1;
		r->p = DMARC_POLICY_NONE;
	} else if (r->p == DMARC_POLICY_UNSET) {
		r->p_absent = 1;
		bad_policy = 1;       /* RFC 7489 6.6.3: no valid p tag */
	}
	if (bad_policy) {
		/* RFC 9989 4.10.1 / RFC 7489 6.6.3: with a valid rua the record
		 * acts as "p=none"; otherwise no DMARC processing */
		if (r->rua_valid > 0) {
			r->forced_none = 1;
			r->p = DMARC_POLICY_NONE;
			r->sp = DMARC_POLICY_UNSET;
			r->np = DMARC_POLICY_UNSET;
			r->why = "invalid policy tag with valid rua: p=none";
		} else {
			r->status = DMARC_REC_UNUSABLE;
			r->why = "invalid or missing policy tag and no valid rua";
		}
	}
	return r->status;
}

int dmarc_fo_wants(const char *fo, int dkim_aligned, int spf_aligned, int dkim_failed,
                   int spf_failed)
{
	if (!fo || !*fo)
		fo = "0";
	for (const char *p = fo; *p; p++) {
		switch (*p) {
		case '0': if (!dkim_aligned && !spf_aligned) return 1; break;
		case '1': if (!dkim_aligned || !spf_aligned) return 1; break;
		case 'd': case 'D': if (dkim_failed) return 1; break;
		case 's': case 'S': if (spf_failed) return 1; break;
		default: break;   /* ':' and spaces */
		}
	}
	return 0;
}
