#define _GNU_SOURCE
#include "se_egress.h"
#include "../CNamespaces/se_netns_thread.h"
#include "se_nftables.h"
#include "se_rtnetlink.h"
#include "../CNamespaces/se_cleanup.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

enum { DNS_PORT = 53, BACKLOG = 1024, PORT_ATTEMPTS = 16 };

/* How one of the supervisor's sockets is made; `bind_step` names it in errors. */
struct endpoint {
    int family;
    int type;
    const char *bind_step;
};

/* A socket bound to loopback:port (0: the kernel picks one), listening if it is a stream socket. */
static int open_endpoint(const struct endpoint *endpoint, uint16_t port, const char **step) {
    SE_CLEANUP_FD int fd = socket(endpoint->family, endpoint->type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *step = "socket";
        return -1;
    }
    int on = 1;
    /* Without it an IPv6 listener would take IPv4-mapped connections too, and
     * the IPv4 socket on the same port could not bind. */
    if (endpoint->family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on) != 0) {
        *step = "setsockopt(IPV6_V6ONLY)";
        return -1;
    }
    /* TCP only: on UDP, SO_REUSEADDR would let a second socket with it share the port. */
    if (endpoint->type == SOCK_STREAM && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0) {
        *step = "setsockopt(SO_REUSEADDR)";
        return -1;
    }
    struct sockaddr_storage address;
    memset(&address, 0, sizeof address);
    socklen_t length;
    if (endpoint->family == AF_INET) {
        struct sockaddr_in *v4 = (struct sockaddr_in *)&address;
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        length = sizeof *v4;
    } else {
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&address;
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        v6->sin6_addr = in6addr_loopback;
        length = sizeof *v6;
    }
    if (bind(fd, (struct sockaddr *)&address, length) != 0) {
        *step = endpoint->bind_step;
        return -1;
    }
    if (endpoint->type == SOCK_STREAM && listen(fd, BACKLOG) != 0) {
        *step = "listen";
        return -1;
    }
    return se_take_fd(&fd);
}

static const struct endpoint tcp4 = {AF_INET, SOCK_STREAM, "bind 127.0.0.1 (TCP)"};
static const struct endpoint tcp6 = {AF_INET6, SOCK_STREAM, "bind [::1] (TCP)"};

/* The two egress listeners, on one port number the kernel picks for IPv4 and
 * that is then free (nearly always) on ::1 too. */
static int open_listeners(int *listener4, int *listener6, uint16_t *port, const char **step) {
    for (int attempt = 0;; attempt++) {
        SE_CLEANUP_FD int fd4 = open_endpoint(&tcp4, 0, step);
        if (fd4 < 0) return -1;
        struct sockaddr_in bound;
        socklen_t length = sizeof bound;
        if (getsockname(fd4, (struct sockaddr *)&bound, &length) != 0) {
            *step = "getsockname";
            return -1;
        }
        int fd6 = open_endpoint(&tcp6, ntohs(bound.sin_port), step);
        if (fd6 < 0) {
            if (errno == EADDRINUSE && attempt + 1 < PORT_ATTEMPTS) continue;
            return -1;
        }
        *listener4 = se_take_fd(&fd4);
        *listener6 = fd6;
        *port = ntohs(bound.sin_port);
        return 0;
    }
}

static int prepare_in_namespace(void *context, const char **step) {
    struct se_egress_sockets *out = context;
    /* lo first: 127.0.0.1 and ::1 exist only while it is up. */
    if (se_rtnl_loopback(NULL, 0, step) != 0) return -1;

    SE_CLEANUP_FD int listener4 = -1;
    SE_CLEANUP_FD int listener6 = -1;
    uint16_t port = 0;
    if (open_listeners(&listener4, &listener6, &port, step) != 0) return -1;
    static const struct endpoint dns_udp4 = {AF_INET, SOCK_DGRAM, "bind 127.0.0.1:53 (UDP)"};
    static const struct endpoint dns_udp6 = {AF_INET6, SOCK_DGRAM, "bind [::1]:53 (UDP)"};
    static const struct endpoint dns_tcp4 = {AF_INET, SOCK_STREAM, "bind 127.0.0.1:53 (TCP)"};
    static const struct endpoint dns_tcp6 = {AF_INET6, SOCK_STREAM, "bind [::1]:53 (TCP)"};
    SE_CLEANUP_FD int udp4 = open_endpoint(&dns_udp4, DNS_PORT, step);
    if (udp4 < 0) return -1;
    SE_CLEANUP_FD int udp6 = open_endpoint(&dns_udp6, DNS_PORT, step);
    if (udp6 < 0) return -1;
    SE_CLEANUP_FD int stream4 = open_endpoint(&dns_tcp4, DNS_PORT, step);
    if (stream4 < 0) return -1;
    SE_CLEANUP_FD int stream6 = open_endpoint(&dns_tcp6, DNS_PORT, step);
    if (stream6 < 0) return -1;

    /* The redirect before the routes: until both are in, a connect() to a
     * non-loopback address fails with ENETUNREACH, never reaching a guest's
     * own listener through the local routes. */
    if (se_nft_install_egress(port, step) != 0) return -1;
    struct se_local_route routes[2] = {
        {.family = AF_INET, .prefix_length = 0, .loopback_source = true},
        {.family = AF_INET6, .prefix_length = 0, .loopback_source = true},
    };
    if (se_rtnl_loopback(routes, 2, step) != 0) return -1;

    out->tcp4 = se_take_fd(&listener4);
    out->tcp6 = se_take_fd(&listener6);
    out->dns_udp4 = se_take_fd(&udp4);
    out->dns_udp6 = se_take_fd(&udp6);
    out->dns_tcp4 = se_take_fd(&stream4);
    out->dns_tcp6 = se_take_fd(&stream6);
    out->port = port;
    return 0;
}

int se_egress_prepare(int netns_fd, struct se_egress_sockets *out, const char **step) {
    struct se_egress_sockets sockets;
    if (se_run_in_netns(SE_NETNS_JOIN, netns_fd, prepare_in_namespace, &sockets, step) < 0) return -1;
    *out = sockets;
    return 0;
}
