#define _GNU_SOURCE
#include "cphases_host.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

int cphases_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int cphases_enter_netns(int fd) { return setns(fd, CLONE_NEWNET); }
