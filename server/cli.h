/*
 * cli.h - the operator commands of the compatd binary that talk to a
 * server over HTTP.  (Being written.)
 */
#ifndef CD_CLI_H
#define CD_CLI_H
#endif
