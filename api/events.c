/* The event queries follow in the next commit; until then they answer 500. */
#include "api/events.h"

#define NOT_YET(f)                                                                                 \
    void f(struct api_call *call, PGconn *c)                                                       \
    {                                                                                              \
        (void)c;                                                                                   \
        api_error(call, 500, "internal", "not implemented yet");                                   \
    }
NOT_YET(events_list)
NOT_YET(events_get)
NOT_YET(deliveries_list)
