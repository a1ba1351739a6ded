/*
 * auth.h - API keys on the server side: checking a request's key against
 * the scope its route needs (route.h), the key file `compatd serve
 * --key-file` stores at start, and the `compatd keys` command; and which
 * addresses and Hosts are loopback.  The keys themselves are core's
 * (keys.h).
 */
#ifndef CD_AUTH_H
#define CD_AUTH_H

#include <stdbool.h>

#include "api.h"
#include "reply.h"
#include "request.h"
#include "route.h"
#include "store.h"

/*
 * Decides whether req, whose route is m (its method, api_key and
 * auth_invalid are read; the body is not, so this runs before it
 * arrives), may go on.  Returns true when it may: the route needs no key,
 * the data directory has no key at all (open mode), or req's key is
 * active and of a scope that includes the route's.  Otherwise fills rep
 * with 401 `unauthorized` (no key, a malformed header, an unknown or
 * revoked key; rep->authenticate set) or 403 `forbidden` (scope too low),
 * or 503 when the keys cannot be read, and returns false.  Sets
 * rep->route either way.
 */
bool cd_auth_request(cd_api *api, const cd_route_match *m, const cd_request *req,
                     cd_reply *rep);

/*
 * Sets *out to whether requests need a key: true once any key row exists
 * (revoked ones too), for good.  Returns CD_OK, or the store's error.
 */
cd_err cd_auth_keys_required(cd_api *api, bool *out, cd_error *err);

/*
 * Stores the keys of a key file: lines "name scope key" (blank lines and
 * lines starting with '#' are skipped), e.g. a Kubernetes Secret mounted
 * as a file.  The whole file is checked before anything is stored.  A key
 * whose name is stored already is left as it is (a warning says so when
 * the text differs).  Returns 0, or -1 after logging one line that names
 * the file, the line and what is wrong (never the key).
 */
int cd_key_file_load(cd_store *st, const char *path);

/*
 * `compatd keys create|list|revoke ...`: argv[0] is "keys".  Opens the
 * data directory's database itself, so it works while a daemon serves
 * from it.  Returns the process exit status: 0, 1 when the operation
 * failed (duplicate name, unknown key, unreadable database), 2 for a bad
 * command line.
 */
int cd_keys_main(int argc, char **argv);

/*
 * True when addr (a struct in_addr for AF_INET, a struct in6_addr for
 * AF_INET6) is a loopback address: 127.0.0.0/8, ::1 or ::ffff:127.0.0.0/104.
 */
bool cd_ip_is_loopback(int family, const void *addr);

/*
 * True when host, the value of a Host header, names this machine's
 * loopback: "localhost" (any case), an IPv4 address of 127.0.0.0/8 in
 * dotted-quad form or a loopback IPv6 address in brackets ("[::1]"), each
 * with or without ":port".  A daemon without API keys answers only such
 * Hosts, so that a web page whose name an attacker points at 127.0.0.1
 * (DNS rebinding) cannot make the victim's browser use it.
 */
bool cd_host_is_loopback(const char *host);

#endif
