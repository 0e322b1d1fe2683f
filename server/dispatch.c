/* Start-up and shutdown of the check engines, and their counters.
 * Loop thread. */
#include "server/dispatch.h"
#include "server/srv.h"

int dispatch_init(struct srv *s, char *err, size_t errlen)
{
	(void)s;
	(void)err;
	(void)errlen;
	return 0;
}

void dispatch_close(struct srv *s)
{
	(void)s;
}

size_t dispatch_stats(struct srv *s, const char **names, uint64_t *values,
                      size_t max)
{
	(void)s;
	(void)names;
	(void)values;
	(void)max;
	return 0;
}
