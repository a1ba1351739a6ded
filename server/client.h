/*
 * client.h - the command line's HTTP client (libcurl) for a compatd server.
 * (Being written.)
 */
#ifndef CD_CLIENT_H
#define CD_CLIENT_H
#endif
