#define _GNU_SOURCE
#include "se_fd.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

int se_pipe_cloexec(int *fds) { return pipe2(fds, O_CLOEXEC); }

int se_memfd(const char *name) { return memfd_create(name, MFD_CLOEXEC); }

#include <sys/socket.h>

int se_unix_stream_socket(void) { return socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0); }

int se_seqpacket_pair(int *fds) { return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds); }

int se_stream_pair(int *fds) { return socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds); }

long se_send_nonblocking(int fd, const void *bytes, unsigned long length) {
    return send(fd, bytes, length, MSG_NOSIGNAL | MSG_DONTWAIT);
}
