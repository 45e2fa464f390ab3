#define _GNU_SOURCE
#include "se_netns.h"
#include "se_cleanup.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct dial {
    int netns_fd;
    const struct sockaddr *address;
    socklen_t length;
    int fd;
    int in_progress;
    int error;
    const char *step;
};

/*
 * Runs on its own thread: joins the guest's network namespace, makes the
 * socket there and starts the connect. The thread ends right after, so the
 * namespace change dies with it.
 */
static void *dial_in_namespace(void *context) {
    struct dial *dial = context;
    if (setns(dial->netns_fd, CLONE_NEWNET) != 0) {
        dial->error = errno;
        dial->step = "setns";
        return NULL;
    }
    SE_CLEANUP_FD int fd = socket(dial->address->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        dial->error = errno;
        dial->step = "socket";
        return NULL;
    }
    if (connect(fd, dial->address, dial->length) != 0) {
        if (errno != EINPROGRESS) {
            dial->error = errno;
            dial->step = "connect";
            return NULL;
        }
        dial->in_progress = 1;
    }
    dial->fd = se_take_fd(&fd);
    return NULL;
}

int se_netns_connect(int netns_fd, const struct sockaddr *address, socklen_t length,
                     int *in_progress, const char **step) {
    struct dial dial = {.netns_fd = netns_fd, .address = address, .length = length, .fd = -1};
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setstacksize(&attributes, 64 * 1024);
    pthread_t thread;
    int created = pthread_create(&thread, &attributes, dial_in_namespace, &dial);
    pthread_attr_destroy(&attributes);
    if (created != 0) {
        *step = "pthread_create";
        errno = created;
        return -1;
    }
    pthread_join(thread, NULL);
    if (dial.fd < 0) {
        *step = dial.step;
        errno = dial.error;
        return -1;
    }
    *in_progress = dial.in_progress;
    return dial.fd;
}

int se_socket_error(int fd) {
    int error = 0;
    socklen_t length = sizeof error;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) return errno;
    return error;
}
