#ifndef SE_EGRESS_H
#define SE_EGRESS_H

#include <ifaddrs.h>
#include <sys/socket.h>

/*
 * Egress by allow-list: the guest's network namespace sends its outbound
 * traffic to listeners of the supervisor's, which decide by policy.
 *
 * Every function that enters a namespace does so on a short-lived pthread
 * made for that call alone, so no thread of the caller (Swift concurrency,
 * Dispatch) ever changes namespace. Each blocks for that thread (well under a
 * millisecond of netlink and socket calls). Descriptors returned are
 * close-on-exec and owned by the caller.
 */

/* The supervisor's sockets in a guest's network namespace (all non-blocking). */
struct se_egress_sockets {
    int tcp4, tcp6; /* listeners 127.0.0.1:port and [::1]:port (same port number), backlog 1024 */
    int dns_udp4, dns_udp6, dns_tcp4, dns_tcp6; /* 127.0.0.1:53 and [::1]:53, UDP and TCP (TCP listening) */
    int port;
};

/*
 * Prepares the network namespace netns_fd for egress:
 * 1. brings lo up and makes the six sockets above (IPV6_V6ONLY on the v6 ones);
 * 2. installs table inet secure_exec in one nftables batch: a nat chain at
 *    output (priority -100) that redirects UDP and TCP to port 53 of a
 *    non-loopback address to :53, then every other TCP to a non-loopback
 *    address to :port; and a raw-priority chain at output that keeps
 *    conntrack off the guest's own loopback-to-loopback traffic (ports other
 *    than port and 53);
 * 3. only then adds local routes 0.0.0.0/0 (prefsrc 127.0.0.1) and ::/0
 *    (prefsrc ::1) on lo in the local table, so a connect() to any address
 *    passes routing (instead of failing with ENETUNREACH) and meets the
 *    redirect. Traffic the redirect leaves alone (UDP other than to port 53,
 *    ICMP) is then delivered inside the namespace: to a guest socket bound
 *    there, or refused; none of it leaves.
 * Takes about 0.3 ms. A second call (after the first one's sockets are
 * closed: it binds port 53 again) replaces the table atomically, but waits
 * for RCU grace periods (tens of ms).
 *
 * Returns 0 and fills *out, or -1 with errno and *step naming the failing
 * call, having closed every socket it made (routes or a table already in
 * place stay).
 */
int se_egress_prepare(int netns_fd, struct se_egress_sockets *_Nonnull out, const char *_Nullable *_Nonnull step);

/*
 * socket(domain, type | SOCK_CLOEXEC, protocol) made inside netns_fd.
 * Returns the socket, or -1 with errno and *step.
 */
int se_netns_socket(int netns_fd, int domain, int type, int protocol, const char *_Nullable *_Nonnull step);

/*
 * getifaddrs() run inside netns_fd. Returns 0 and *out (free it with
 * freeifaddrs), or -1 with errno and *step.
 */
int se_netns_getifaddrs(int netns_fd, struct ifaddrs *_Nullable *_Nonnull out, const char *_Nullable *_Nonnull step);

/*
 * Makes a fresh network namespace (for tests, and operators who want an
 * egress namespace), brings lo up, and adds a local route on lo for each CIDR
 * in prefixes ("203.0.113.0/24", "2001:db8::/64"; host bits are ignored; at
 * most 32), so sockets there can bind to and reach those addresses. With an
 * IPv6 prefix it also sets net.ipv6.ip_nonlocal_bind there, since IPv6 (unlike
 * IPv4) binds only to configured addresses, not to ones a local route covers.
 *
 * Returns a descriptor for the namespace (/proc/thread-self/ns/net), which
 * lives while it (or a socket in it) does; or -1 with errno and *step.
 */
int se_netns_create(const char *_Nonnull const *_Nullable prefixes, int count, const char *_Nullable *_Nonnull step);

#endif
