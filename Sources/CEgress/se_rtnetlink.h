/*
 * Loopback and routes over NETLINK_ROUTE, in the calling thread's network
 * namespace. Private to CEgress.
 */
#ifndef SE_RTNETLINK_H
#define SE_RTNETLINK_H

#include <stdbool.h>

/* A route of type local on lo, in the local table: the namespace treats every
 * address in it as its own (delivers to its sockets, lets them bind there). */
struct se_local_route {
    int family; /* AF_INET or AF_INET6 */
    unsigned char address[16];
    unsigned char prefix_length;
    bool loopback_source; /* prefsrc 127.0.0.1 / ::1: connections from here start at loopback */
};

/*
 * Brings lo up (the kernel then gives it 127.0.0.1/8 and ::1), then adds each
 * route, replacing one already there, all in one netlink exchange. count may
 * be 0. Returns 0, or -1 with errno and *step naming the failing request.
 */
int se_rtnl_loopback(const struct se_local_route *routes, int count, const char **step);

#endif
