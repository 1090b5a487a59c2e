/*
 * waitfor.c - see waitfor.h.
 */
#include "tests/integration/waitfor.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool h_wait_sql(struct h_db *db, const char *want, int timeout_ms, const char *fmt, ...)
{
    char sql[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    int64_t deadline = h_now_ms() + timeout_ms;
    for (;;) {
        char *got = h_db_text(db, "%s", sql);
        bool match = want == NULL ? got[0] == '\0' : strcmp(got, want) == 0;
        if (match || h_now_ms() >= deadline) {
            if (!match)
                tap_diag("waited %d ms for '%s', last got '%s' from: %s", timeout_ms,
                         want != NULL ? want : "(none)", got, sql);
            free(got);
            return match;
        }
        free(got);
        h_sleep_ms(10);
    }
}
