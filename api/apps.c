/* The apps resource follows in the next commit; until then it answers 500. */
#include "api/apps.h"

#define NOT_YET(f)                                                                                 \
    void f(struct api_call *call, PGconn *c)                                                       \
    {                                                                                              \
        (void)c;                                                                                   \
        api_error(call, 500, "internal", "not implemented yet");                                   \
    }
NOT_YET(apps_list)
NOT_YET(apps_create)
NOT_YET(apps_get)
NOT_YET(apps_update)
NOT_YET(apps_delete)
