#define _GNU_SOURCE
#include "se_netlink.h"
#include "../CNamespaces/se_cleanup.h"

#include <errno.h>
#include <linux/netlink.h>
#include <sys/socket.h>

void se_mnl_socket_close_ptr(struct mnl_socket **socket) {
    if (*socket != NULL) {
        int saved = errno;
        mnl_socket_close(*socket);
        errno = saved;
    }
}

struct mnl_socket *se_netlink_open(int bus, const char **step) {
    SE_CLEANUP_MNL struct mnl_socket *socket = mnl_socket_open2(bus, SOCK_CLOEXEC);
    if (socket == NULL) {
        *step = "socket(AF_NETLINK)";
        return NULL;
    }
    if (mnl_socket_bind(socket, 0, MNL_SOCKET_AUTOPID) != 0) {
        *step = "bind(AF_NETLINK)";
        return NULL;
    }
    int on = 1;
    if (mnl_socket_setsockopt(socket, NETLINK_CAP_ACK, &on, sizeof on) != 0) {
        *step = "setsockopt(NETLINK_CAP_ACK)";
        return NULL;
    }
    struct mnl_socket *taken = socket;
    socket = NULL;
    return taken;
}

int se_netlink_exchange(struct mnl_socket *socket, const void *requests, size_t length, uint32_t first_seq,
                        uint32_t last_seq, const char *const *steps, const char **step) {
    if (SE_RETRY_EINTR(mnl_socket_sendto(socket, requests, length)) < 0) {
        *step = "sendmsg(AF_NETLINK)";
        return -1;
    }
    /* Aligned for nlmsghdr; acknowledgements are 36 bytes each. */
    uint32_t buffer[8192 / sizeof(uint32_t)];
    for (;;) {
        ssize_t received = SE_RETRY_EINTR(mnl_socket_recvfrom(socket, buffer, sizeof buffer));
        if (received < 0) {
            *step = "recvmsg(AF_NETLINK)";
            return -1;
        }
        if (received == 0) {
            *step = "recvmsg(AF_NETLINK)";
            errno = EPROTO;
            return -1;
        }
        int remaining = (int)received;
        for (const struct nlmsghdr *reply = (const struct nlmsghdr *)buffer; mnl_nlmsg_ok(reply, remaining);
             reply = mnl_nlmsg_next(reply, &remaining)) {
            if (reply->nlmsg_type != NLMSG_ERROR) continue;
            if (mnl_nlmsg_get_payload_len(reply) < sizeof(struct nlmsgerr)) {
                *step = "netlink reply";
                errno = EBADMSG;
                return -1;
            }
            const struct nlmsgerr *answer = mnl_nlmsg_get_payload(reply);
            if (answer->error != 0) {
                uint32_t seq = reply->nlmsg_seq;
                *step = seq >= first_seq && seq <= last_seq ? steps[seq - first_seq] : "netlink request";
                errno = -answer->error;
                return -1;
            }
            /* The kernel answers requests in order, so the last one's
             * acknowledgement means every earlier one succeeded. */
            if (reply->nlmsg_seq == last_seq) return 0;
        }
    }
}
