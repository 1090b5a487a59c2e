/*
 * jobs.h - /v1/jobs: the operator's view of the worker pool's queue
 * (db/jobs.h), to find what is stuck, held, failing or dead.
 */
#ifndef HB_API_JOBS_H
#define HB_API_JOBS_H

#include "api/api.h"

void jobs_list(struct api_call *call, PGconn *c);

#endif
