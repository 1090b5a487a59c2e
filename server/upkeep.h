/*
 * upkeep.h - the server's partition upkeep thread.
 *
 * Every HUBBUB_PARTITION_UPKEEP_INTERVAL (and once at start) it creates the
 * monthly partitions that are missing up to HUBBUB_PARTITION_MONTHS_AHEAD
 * and moves rows out of the DEFAULT partitions (db/partitions.h). Its own
 * thread and connection: partition DDL may wait for a lock, which must stall
 * neither the event loop nor the job dispatcher, and it runs whatever
 * HUBBUB_WORKERS says.
 */
#ifndef HB_UPKEEP_H
#define HB_UPKEEP_H

#include <stdint.h>

#include "server/config.h"

struct upkeep;

struct upkeep *upkeep_start(const struct config *cfg);
/* Stops and joins the thread, waiting at most timeout_ms for a database
 * call in progress (then leaves it: for process exit). NULL is a no-op. */
bool upkeep_stop(struct upkeep *u, int64_t timeout_ms); /* false: left running */

#endif
