/* Bounds-checked decoders for the rdata that struct dnsq_answer carries.
 * Pure functions: any thread. */
#include "checks/dnsq.h"

#include <string.h>

int dnsq_txt(const struct dnsq_answer *a, size_t i, char *out, size_t cap,
             size_t *len_r)
{
	if (i >= a->count || cap == 0)
		return -1;
	const unsigned char *rd = a->rdata[i];
	size_t len = a->rdlen[i], off = 0, n = 0;
	while (off < len) {
		size_t sl = rd[off++];
		if (len - off < sl)
			return -1;
		if (cap - 1 - n < sl)
			return -1;
		memcpy(out + n, rd + off, sl);
		n += sl;
		off += sl;
	}
	out[n] = '\0';
	if (len_r)
		*len_r = n;
	return 0;
}

int dnsq_wire_name(const unsigned char *rd, size_t len, size_t *off,
                   char *out, size_t cap)
{
	size_t o = *off, n = 0, total = 0;
	if (cap == 0)
		return -1;
	for (;;) {
		if (o >= len)
			return -1;
		size_t ll = rd[o++];
		if (ll == 0)
			break;
		if (ll > 63 || len - o < ll)  /* compression pointers are not allowed here */
			return -1;
		total += ll + 1;
		if (total > 255)
			return -1;
		if (n > 0) {
			if (cap - 1 - n < 1)
				return -1;
			out[n++] = '.';
		}
		if (cap - 1 - n < ll)
			return -1;
		memcpy(out + n, rd + o, ll);
		n += ll;
		o += ll;
	}
	out[n] = '\0';
	*off = o;
	return 0;
}

int dnsq_mx(const struct dnsq_answer *a, size_t i, uint16_t *pref_r,
            char *out, size_t cap)
{
	if (i >= a->count || a->rdlen[i] < 3)
		return -1;
	const unsigned char *rd = a->rdata[i];
	*pref_r = (uint16_t)(rd[0] << 8 | rd[1]);
	size_t off = 2;
	return dnsq_wire_name(rd, a->rdlen[i], &off, out, cap);
}

int dnsq_target(const struct dnsq_answer *a, size_t i, char *out, size_t cap)
{
	if (i >= a->count)
		return -1;
	size_t off = 0;
	return dnsq_wire_name(a->rdata[i], a->rdlen[i], &off, out, cap);
}

const char *dnsq_status_name(enum dnsq_status s)
{
	switch (s) {
	case DNSQ_OK:       return "ok";
	case DNSQ_NODATA:   return "nodata";
	case DNSQ_NXDOMAIN: return "nxdomain";
	case DNSQ_TEMPFAIL: return "tempfail";
	case DNSQ_TIMEOUT:  return "timeout";
	case DNSQ_BOGUS:    return "bogus";
	}
	return "?";
}

const char *dnsq_sec_name(enum dnsq_sec s)
{
	switch (s) {
	case DNSQ_SEC_INSECURE: return "insecure";
	case DNSQ_SEC_SECURE:   return "secure";
	case DNSQ_SEC_BOGUS:    return "bogus";
	}
	return "?";
}
