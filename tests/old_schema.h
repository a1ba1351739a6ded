/*
 * old_schema.h - a database as an older compatd left it, for the tests of
 * migrations (test_store, test_keys): the embedded schema files up to a
 * version, applied as that compatd applied them, and nothing newer.
 */
#ifndef CD_OLD_SCHEMA_H
#define CD_OLD_SCHEMA_H

#include <sqlite3.h>
#include <stdio.h>

#include "check.h"
#include "embed.h"

/* The schema/NNN_*.sql files, in order (core/meson.build embeds them). */
extern const cd_embedded_file cd__migrations[];

/* PRAGMA application_id of a compatd database ("cmpd"). */
#define OLD_SCHEMA_APPLICATION_ID 0x636d7064

/*
 * Creates path (which must not exist) at schema version `version`, then
 * runs sql (may be NULL) on it: the rows an older compatd would have
 * written.
 */
static void old_schema_create(const char *path, int version, const char *sql)
{
    sqlite3 *db = NULL;
    char *msg = NULL, pragmas[128];
    REQUIRE(sqlite3_open(path, &db) == SQLITE_OK);
    for (int i = 0; i < version; i++) {
        if (sqlite3_exec(db, (const char *)cd__migrations[i].data, NULL, NULL, &msg) != SQLITE_OK)
            fprintf(stderr, "%s: %s\n", cd__migrations[i].name, msg);
        REQUIRE(msg == NULL);
    }
    snprintf(pragmas, sizeof pragmas, "PRAGMA application_id = %d; PRAGMA user_version = %d",
             OLD_SCHEMA_APPLICATION_ID, version);
    CHECK_EQ(sqlite3_exec(db, pragmas, NULL, NULL, NULL), SQLITE_OK);
    if (sql && sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fprintf(stderr, "old_schema_create: %s\n", msg);
    REQUIRE(msg == NULL);
    CHECK_EQ(sqlite3_close(db), SQLITE_OK);
}

#endif
