#define _GNU_SOURCE
#include "se_egress.h"
#include "../CNamespaces/se_netns_thread.h"

#include <errno.h>
#include <ifaddrs.h>
#include <stddef.h>
#include <sys/socket.h>

struct socket_request {
    int domain;
    int type;
    int protocol;
};

static int socket_in_namespace(void *context, const char **step) {
    const struct socket_request *request = context;
    int fd = socket(request->domain, request->type | SOCK_CLOEXEC, request->protocol);
    if (fd < 0) *step = "socket";
    return fd;
}

int se_netns_socket(int netns_fd, int domain, int type, int protocol, const char **step) {
    struct socket_request request = {.domain = domain, .type = type, .protocol = protocol};
    return se_run_in_netns(SE_NETNS_JOIN, netns_fd, socket_in_namespace, &request, step);
}

static int getifaddrs_in_namespace(void *context, const char **step) {
    if (getifaddrs(context) != 0) {
        *step = "getifaddrs";
        return -1;
    }
    return 0;
}

int se_netns_getifaddrs(int netns_fd, struct ifaddrs **out, const char **step) {
    struct ifaddrs *addresses = NULL;
    if (se_run_in_netns(SE_NETNS_JOIN, netns_fd, getifaddrs_in_namespace, &addresses, step) < 0) return -1;
    *out = addresses;
    return 0;
}
