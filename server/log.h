/*
 * log.h - the daemon's log: one line per event on stderr, stamped in UTC,
 * at the levels CD_LOG_ERROR..CD_LOG_DEBUG of core/engine.h (the same
 * levels the engine's log callback passes, so its lines go through here
 * unchanged).  Every file of server/ may log; this one includes no other.
 */
#ifndef CD_LOG_H
#define CD_LOG_H

#include <stdbool.h>

#include "engine.h"     /* CD_LOG_ERROR, CD_LOG_WARN, CD_LOG_INFO, CD_LOG_DEBUG */

/*
 * Writes a log line at level when the configured level allows it.  Bytes
 * a reader could take for something else (control bytes, DEL, '\\',
 * invalid UTF-8) are written as \xHH.
 */
void cd_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Sets the level cd_log prints up to (CD_LOG_ERROR..CD_LOG_DEBUG). */
void cd_log_set_level(int level);

/* Parses "error", "warn", "info" or "debug". */
bool cd_log_level_parse(const char *s, int *out);

#endif
