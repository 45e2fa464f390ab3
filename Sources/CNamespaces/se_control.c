#define _GNU_SOURCE
#include "se_control.h"
#include "se_cleanup.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

int se_send_request(int sock, const struct se_request *header, const void *payload, const int *fds) {
    if (header->fd_count > SE_MAX_REQUEST_FDS ||
        header->payload_len > SE_MAX_REQUEST - sizeof *header) {
        errno = EMSGSIZE;
        return -1;
    }
    struct iovec parts[2] = {
        {.iov_base = (void *)header, .iov_len = sizeof *header},
        {.iov_base = (void *)payload, .iov_len = payload ? header->payload_len : 0},
    };
    union {
        char bytes[CMSG_SPACE(sizeof(int) * SE_MAX_REQUEST_FDS)];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof control);
    struct msghdr message = {.msg_iov = parts, .msg_iovlen = 2};
    if (header->fd_count > 0 && fds) {
        message.msg_control = control.bytes;
        message.msg_controllen = CMSG_SPACE(sizeof(int) * header->fd_count);
        struct cmsghdr *cmsg = CMSG_FIRSTHDR(&message);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(sizeof(int) * header->fd_count);
        memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * header->fd_count);
    }
    ssize_t sent = SE_RETRY_EINTR(sendmsg(sock, &message, MSG_NOSIGNAL));
    return sent < 0 ? -1 : 0;
}

int se_receive_event(int sock, struct se_event *event) {
    ssize_t got = SE_RETRY_EINTR(recv(sock, event, sizeof *event, MSG_DONTWAIT));
    if (got < 0) return -1;
    if (got == 0) return 0;
    if ((size_t)got != sizeof *event) {
        errno = EPROTO;
        return -1;
    }
    event->step[sizeof event->step - 1] = 0;
    return 1;
}
