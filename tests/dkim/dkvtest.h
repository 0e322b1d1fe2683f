/* Helpers for the DKIM tests: whole-file reading and the one-line key table
 * format of the Mail::DKIM corpus ("<name> <TXT text>", with NXDOMAIN,
 * ~~Query timed out~~, ~~SERVFAIL~~ and "" as special values; our own cases
 * add ~~NODATA~~, ~~BOGUS~~ and a "~~SECURE~~ " prefix). */
#ifndef ALIGND_TEST_DKVTEST_H
#define ALIGND_TEST_DKVTEST_H

#include <stddef.h>

#include "checks/dkim/dkv.h"

/* The engine under test: ALIGND_DKIM_ENGINE=libopendkim in the
 * environment, else the native one (meson runs the tests with both). */
enum dkv_engine dkvt_engine(void);

/* malloc'd, NUL-terminated; NULL on error */
char *dkvt_read_file(const char *path, size_t *len_r);
/* Adds every line of a key table file to ks; returns records added or -1. */
int dkvt_load_keytable(struct dkv_keyset *ks, const char *path);
/* Adds the _domainkey TXT records of a zone-file-like file; -1 on error. */
int dkvt_load_zonefile(struct dkv_keyset *ks, const char *path);
/* Splits a tab-separated line in place; returns the number of fields. */
size_t dkvt_split_tabs(char *line, char **f, size_t max);

#endif
