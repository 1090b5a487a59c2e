/*
 * sim.h - `hubbub sim`: what Meta's App Dashboard does to a callback URL,
 * from the command line and against any server, not only hubbub.
 *
 *   sim verify URL   Meta's GET handshake; says in plain words what went wrong
 *   sim send URL     signed deliveries for every webhook field, optionally
 *                    retried as Meta retries, or as load at a fixed rate
 *
 * It runs in the CLI process, blocking, with its own libcurl state; it needs
 * neither the database nor the settings.
 */
#ifndef HB_SIM_H
#define HB_SIM_H

/* Usage lines for the command's help. */
extern const char SIM_USAGE[];

/* argv[0] is "verify" or "send". Returns the exit status: 0 success, 1 the
 * callback failed, 2 a usage error. */
int sim_main(int argc, char **argv);

#endif
