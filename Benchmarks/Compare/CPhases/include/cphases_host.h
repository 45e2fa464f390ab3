#ifndef CPHASES_HOST_H
#define CPHASES_HOST_H

/* GNU calls the harness needs that Swift's Glibc module does not show. */

/* pipe2(fds, O_CLOEXEC). */
int cphases_pipe_cloexec(int fds[_Nonnull 2]);

/* setns(fd, CLONE_NEWNET) for the calling thread. */
int cphases_enter_netns(int fd);

#endif
