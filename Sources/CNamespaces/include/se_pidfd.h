#ifndef SE_PIDFD_H
#define SE_PIDFD_H

#include <sys/types.h>

/* pidfd_send_signal(2). 0 or -1/errno. */
int se_pidfd_signal(int pidfd, int signal);

/*
 * Reaps the process behind `pidfd` if it has exited (waitid P_PIDFD, WNOHANG).
 * Returns 1 with *status set (raw wait status), 0 if still running, -1/errno.
 */
int se_pidfd_reap(int pidfd, int *_Nonnull status);

/* pidfd_open(pid, 0): the descriptor (close-on-exec) or -1/errno. */
int se_pidfd_open(pid_t pid);

#endif
