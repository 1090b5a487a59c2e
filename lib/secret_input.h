/*
 * secret_input.h - reading a secret the command line is given: from an
 * environment variable, or else one line of standard input, without echo
 * on a terminal. Never from argv, which other users can read in the
 * process list.
 */
#ifndef HB_SECRET_INPUT_H
#define HB_SECRET_INPUT_H

#include <stddef.h>

/* Fills out with the value of env, or else with one line of standard input
 * (prompting with "prompt: " on a terminal). HB_EINVAL when empty or at end
 * of input, HB_ETOOBIG when it does not fit out. */
int secret_input_read(const char *env, const char *prompt, char *out, size_t outsz);

#endif
