#ifndef CPHASES_NETNS_H
#define CPHASES_NETNS_H

/*
 * A network namespace for the egress benchmark's upstream server, made
 * without host tools (no `ip`): the same shape as SecureExec's test
 * namespace (se_netns_create, which the benchmark package cannot import).
 */

/*
 * Makes a fresh network namespace on a pthread of its own (so no thread of
 * the caller changes namespace), brings lo up and adds a local route on lo
 * for the IPv4 network `address`/`prefix_length` ("203.0.113.0", 24): sockets
 * there can bind to and reach every address in it. A route, not an address
 * on lo, so the namespace's interfaces list no such address (SecureExec's
 * egress refuses names that resolve to the outbound side's own addresses).
 *
 * Returns a descriptor for the namespace (it lives while the descriptor or a
 * socket in it does), or -1 with errno and *step naming the failing call.
 */
int cphases_upstream_netns(const char *_Nonnull address, int prefix_length, const char *_Nullable *_Nonnull step);

#endif
