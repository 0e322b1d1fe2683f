/* alignc's subcommands beside scanning (alignc_sign.c). */
#ifndef ALIGND_ALIGNC_H
#define ALIGND_ALIGNC_H

/* Runs `alignc sign|keygen|keycheck ...` when argv[1] names one and
 * returns its exit status; -1 when argv[1] is no subcommand. */
int alignc_subcommand(int argc, char **argv);

#endif
