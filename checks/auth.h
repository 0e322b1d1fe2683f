/* Outcomes shared by every check (RFC 8601 result values). An outcome is a
 * value, not an error. */
#ifndef ALIGND_AUTH_H
#define ALIGND_AUTH_H

enum auth_res {
	AUTH_NONE = 0,
	AUTH_PASS,
	AUTH_FAIL,
	AUTH_SOFTFAIL,    /* SPF only */
	AUTH_NEUTRAL,     /* SPF, DKIM */
	AUTH_TEMPERROR,
	AUTH_PERMERROR,
	AUTH_POLICY,      /* DKIM: verified but refused by local policy (RFC 8601 2.7.1) */
};

static inline const char *auth_res_name(enum auth_res r)
{
	switch (r) {
	case AUTH_NONE:      return "none";
	case AUTH_PASS:      return "pass";
	case AUTH_FAIL:      return "fail";
	case AUTH_SOFTFAIL:  return "softfail";
	case AUTH_NEUTRAL:   return "neutral";
	case AUTH_TEMPERROR: return "temperror";
	case AUTH_PERMERROR: return "permerror";
	case AUTH_POLICY:    return "policy";
	}
	return "none";
}

#endif
