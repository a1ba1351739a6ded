/*
 * embed.h - files compiled into the binary (SQL migrations, web assets).
 * The tables are generated at build time by core/embedgen.c.
 */
#ifndef CD_EMBED_H
#define CD_EMBED_H

#include <stddef.h>

typedef struct cd_embedded_file {
    const char *name;           /* base name, e.g. "001_init.sql" */
    const unsigned char *data;  /* len bytes followed by a NUL */
    size_t len;
} cd_embedded_file;

#endif
