#define _GNU_SOURCE
#include "cphases_netns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* lo is ifindex 1 in every network namespace (the kernel's LOOPBACK_IFINDEX). */
enum { LOOPBACK_IFINDEX = 1 };

struct request {
    struct nlmsghdr header;
    union {
        struct ifinfomsg link;
        struct rtmsg route;
    };
    char attributes[64];
};

static void put_attribute(struct request *request, unsigned short type, const void *data, size_t length) {
    struct rtattr *attribute = (struct rtattr *)((char *)request + NLMSG_ALIGN(request->header.nlmsg_len));
    attribute->rta_type = type;
    attribute->rta_len = (unsigned short)RTA_LENGTH(length);
    memcpy(RTA_DATA(attribute), data, length);
    request->header.nlmsg_len = NLMSG_ALIGN(request->header.nlmsg_len) + RTA_ALIGN(attribute->rta_len);
}

/* Sends one request with NLM_F_ACK and reads its acknowledgement: 0, or -1 with errno. */
static int exchange(int sock, struct request *request) {
    if (send(sock, request, request->header.nlmsg_len, 0) < 0) return -1;
    uint32_t buffer[1024];
    for (;;) {
        ssize_t received = recv(sock, buffer, sizeof buffer, 0);
        if (received < 0 && errno == EINTR) continue;
        if (received <= 0) {
            if (received == 0) errno = EPROTO;
            return -1;
        }
        unsigned int remaining = (unsigned int)received;
        for (struct nlmsghdr *reply = (struct nlmsghdr *)buffer; NLMSG_OK(reply, remaining);
             reply = NLMSG_NEXT(reply, remaining)) {
            if (reply->nlmsg_type != NLMSG_ERROR || reply->nlmsg_seq != request->header.nlmsg_seq) continue;
            const struct nlmsgerr *answer = NLMSG_DATA(reply);
            if (answer->error == 0) return 0;
            errno = -answer->error;
            return -1;
        }
    }
}

struct creation {
    struct in_addr address;
    int prefix_length;
    int result;
    int error;
    const char *step;
};

static int fail(struct creation *creation, const char *step) {
    creation->error = errno;
    creation->step = step;
    return -1;
}

/* On the namespace's own thread: lo up, the local route, then the namespace's descriptor. */
static int configure(struct creation *creation) {
    if (unshare(CLONE_NEWNET) != 0) return fail(creation, "unshare(CLONE_NEWNET)");
    int sock = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (sock < 0) return fail(creation, "socket(AF_NETLINK)");

    struct request link;
    memset(&link, 0, sizeof link);
    link.header.nlmsg_len = NLMSG_LENGTH(sizeof link.link);
    link.header.nlmsg_type = RTM_NEWLINK;
    link.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    link.header.nlmsg_seq = 1;
    link.link.ifi_family = AF_UNSPEC;
    link.link.ifi_index = LOOPBACK_IFINDEX;
    link.link.ifi_flags = IFF_UP;
    link.link.ifi_change = IFF_UP;
    if (exchange(sock, &link) != 0) {
        int result = fail(creation, "RTM_NEWLINK lo up");
        close(sock);
        return result;
    }

    struct request route;
    memset(&route, 0, sizeof route);
    route.header.nlmsg_len = NLMSG_LENGTH(sizeof route.route);
    route.header.nlmsg_type = RTM_NEWROUTE;
    route.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
    route.header.nlmsg_seq = 2;
    route.route.rtm_family = AF_INET;
    route.route.rtm_dst_len = (unsigned char)creation->prefix_length;
    route.route.rtm_table = RT_TABLE_LOCAL;
    route.route.rtm_protocol = RTPROT_STATIC;
    route.route.rtm_scope = RT_SCOPE_HOST;
    route.route.rtm_type = RTN_LOCAL;
    uint32_t oif = LOOPBACK_IFINDEX;
    put_attribute(&route, RTA_DST, &creation->address, sizeof creation->address);
    put_attribute(&route, RTA_OIF, &oif, sizeof oif);
    if (exchange(sock, &route) != 0) {
        int result = fail(creation, "RTM_NEWROUTE local dev lo");
        close(sock);
        return result;
    }
    close(sock);

    int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail(creation, "open /proc/thread-self/ns/net");
    return fd;
}

static void *run(void *argument) {
    struct creation *creation = argument;
    creation->result = configure(creation);
    return NULL;
}

int cphases_upstream_netns(const char *address, int prefix_length, const char **step) {
    struct creation creation = {.prefix_length = prefix_length, .result = -1};
    if (prefix_length < 0 || prefix_length > 32 || inet_pton(AF_INET, address, &creation.address) != 1) {
        *step = "parse the network";
        errno = EINVAL;
        return -1;
    }
    /* The kernel refuses a route with host bits set. */
    uint32_t mask = prefix_length == 0 ? 0 : htonl(~(uint32_t)0 << (32 - prefix_length));
    creation.address.s_addr &= mask;
    pthread_t thread;
    int created = pthread_create(&thread, NULL, run, &creation);
    if (created != 0) {
        *step = "pthread_create";
        errno = created;
        return -1;
    }
    pthread_join(thread, NULL);
    if (creation.result < 0) {
        *step = creation.step;
        errno = creation.error;
    }
    return creation.result;
}
