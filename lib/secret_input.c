/*
 * secret_input.c - a secret from the environment or standard input; see
 * secret_input.h.
 */
#include "lib/secret_input.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "lib/hb.h"

int secret_input_read(const char *env, const char *prompt, char *out, size_t outsz)
{
    const char *v = getenv(env);
    if (v != NULL && v[0] != '\0') {
        if (strlen(v) >= outsz)
            return HB_ETOOBIG;
        snprintf(out, outsz, "%s", v);
        return 0;
    }
    bool tty = isatty(STDIN_FILENO);
    struct termios old, quiet;
    if (tty) {
        fprintf(stderr, "%s: ", prompt);
        tcgetattr(STDIN_FILENO, &old);
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
    }
    char *line = fgets(out, (int)outsz, stdin);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSANOW, &old);
        fputc('\n', stderr);
    }
    if (line == NULL)
        return HB_EINVAL;
    size_t n = strlen(out);
    if (n == outsz - 1 && out[n - 1] != '\n')
        return HB_ETOOBIG;
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r'))
        out[--n] = '\0';
    return n == 0 ? HB_EINVAL : 0;
}
