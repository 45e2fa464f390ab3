#define _GNU_SOURCE
#include "se_rtnetlink.h"
#include "se_netlink.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <string.h>
#include <sys/socket.h>

/* lo is ifindex 1 in every network namespace (the kernel's LOOPBACK_IFINDEX;
 * loopback_net_init insists on it), so no lookup by name is needed. */
enum { LOOPBACK_IFINDEX = 1 };

enum { MAX_ROUTES = 32 };

static void put_link_up(struct nlmsghdr *request, uint32_t seq) {
    request->nlmsg_type = RTM_NEWLINK;
    request->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    request->nlmsg_seq = seq;
    struct ifinfomsg *link = mnl_nlmsg_put_extra_header(request, sizeof *link);
    link->ifi_family = AF_UNSPEC;
    link->ifi_index = LOOPBACK_IFINDEX;
    link->ifi_flags = IFF_UP;
    link->ifi_change = IFF_UP;
}

static void put_local_route(struct nlmsghdr *request, uint32_t seq, const struct se_local_route *route) {
    request->nlmsg_type = RTM_NEWROUTE;
    request->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
    request->nlmsg_seq = seq;
    struct rtmsg *message = mnl_nlmsg_put_extra_header(request, sizeof *message);
    message->rtm_family = (unsigned char)route->family;
    message->rtm_dst_len = route->prefix_length;
    message->rtm_table = RT_TABLE_LOCAL;
    message->rtm_protocol = RTPROT_STATIC;
    message->rtm_scope = RT_SCOPE_HOST;
    /* Local, not unicast: IPv6 turns a unicast route via lo into a reject
     * route, and for IPv4 local means a datagram to a port nobody holds gets
     * ECONNREFUSED instead of vanishing on lo. */
    message->rtm_type = RTN_LOCAL;
    size_t length = route->family == AF_INET ? 4 : 16;
    mnl_attr_put(request, RTA_DST, length, route->address);
    mnl_attr_put_u32(request, RTA_OIF, LOOPBACK_IFINDEX);
    if (route->loopback_source) {
        static const unsigned char loopback4[4] = {127, 0, 0, 1};
        mnl_attr_put(request, RTA_PREFSRC, length,
                     route->family == AF_INET ? (const void *)loopback4 : (const void *)&in6addr_loopback);
    }
}

int se_rtnl_loopback(const struct se_local_route *routes, int count, const char **step) {
    if (count < 0 || count > MAX_ROUTES) {
        *step = "route count";
        errno = EINVAL;
        return -1;
    }
    SE_CLEANUP_MNL struct mnl_socket *socket = se_netlink_open(NETLINK_ROUTE, step);
    if (socket == NULL) return -1;
    /* One request is under 100 bytes. */
    uint64_t buffer[(1 + MAX_ROUTES) * 128 / sizeof(uint64_t)];
    const char *steps[1 + MAX_ROUTES];
    const uint32_t first_seq = 1;
    size_t used = 0;
    struct nlmsghdr *request = mnl_nlmsg_put_header((char *)buffer);
    put_link_up(request, first_seq);
    steps[0] = "RTM_NEWLINK lo up";
    used += request->nlmsg_len;
    for (int index = 0; index < count; index++) {
        request = mnl_nlmsg_put_header((char *)buffer + used);
        put_local_route(request, first_seq + 1 + (uint32_t)index, &routes[index]);
        steps[1 + index] = routes[index].family == AF_INET ? "RTM_NEWROUTE local (IPv4) dev lo"
                                                           : "RTM_NEWROUTE local (IPv6) dev lo";
        used += request->nlmsg_len;
    }
    return se_netlink_exchange(socket, buffer, used, first_seq, first_seq + (uint32_t)count, steps, step);
}
