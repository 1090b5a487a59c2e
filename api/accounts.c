/* The accounts resource follows in a later commit; until then it answers 500. */
#include "api/accounts.h"

#define NOT_YET(f)                                                                                 \
    void f(struct api_call *call, PGconn *c)                                                       \
    {                                                                                              \
        (void)c;                                                                                   \
        api_error(call, 500, "internal", "not implemented yet");                                   \
    }
NOT_YET(accounts_list)
NOT_YET(accounts_create)
NOT_YET(accounts_get)
NOT_YET(accounts_update)
NOT_YET(accounts_delete)
NOT_YET(accounts_put_fields)
