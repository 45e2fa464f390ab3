#define _GNU_SOURCE
#include "se_netns.h"
#include "se_cleanup.h"
#include "se_netns_thread.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct dial {
    const struct sockaddr *address;
    socklen_t length;
    int in_progress;
};

/* Runs in the guest's network namespace (se_run_in_netns): makes the socket
 * there and starts the connect. */
static int dial_in_namespace(void *context, const char **step) {
    struct dial *dial = context;
    SE_CLEANUP_FD int fd = socket(dial->address->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *step = "socket";
        return -1;
    }
    if (connect(fd, dial->address, dial->length) != 0) {
        if (errno != EINPROGRESS) {
            *step = "connect";
            return -1;
        }
        dial->in_progress = 1;
    }
    return se_take_fd(&fd);
}

int se_netns_connect(int netns_fd, const struct sockaddr *address, socklen_t length,
                     int *in_progress, const char **step) {
    struct dial dial = {.address = address, .length = length};
    int fd = se_run_in_netns(SE_NETNS_JOIN, netns_fd, dial_in_namespace, &dial, step);
    if (fd >= 0) *in_progress = dial.in_progress;
    return fd;
}

int se_socket_error(int fd) {
    int error = 0;
    socklen_t length = sizeof error;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) return errno;
    return error;
}
