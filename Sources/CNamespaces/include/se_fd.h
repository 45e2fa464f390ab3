#ifndef SE_FD_H
#define SE_FD_H

/* pipe2(O_CLOEXEC); 0 or -1/errno. glibc hides pipe2 from Swift without _GNU_SOURCE. */
int se_pipe_cloexec(int *_Nonnull fds);

/* memfd_create(name, MFD_CLOEXEC); the descriptor or -1/errno. */
int se_memfd(const char *_Nonnull name);

#ifndef SE_FD_SOCKETS
#define SE_FD_SOCKETS
/* socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0); the descriptor or -1/errno. */
int se_unix_stream_socket(void);
/* socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC); 0 or -1/errno. */
int se_seqpacket_pair(int *_Nonnull fds);
/* socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC); 0 or -1/errno. */
int se_stream_pair(int *_Nonnull fds);
/* send(fd, bytes, length, MSG_NOSIGNAL | MSG_DONTWAIT): never raises SIGPIPE. */
long se_send_nonblocking(int fd, const void *_Nonnull bytes, unsigned long length);
#endif

#endif
