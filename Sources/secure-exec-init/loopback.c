#define _GNU_SOURCE
#include "init.h"

#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

int bring_up_loopback(struct failure *failure) {
    /* Only `lo` exists in a fresh network namespace, and it starts down.
     * Setting IFF_UP makes the kernel assign 127.0.0.1/8 and ::1 itself. */
    SE_CLEANUP_FD int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return fail(failure, "socket for lo");
    struct ifreq request;
    memset(&request, 0, sizeof request);
    strncpy(request.ifr_name, "lo", IFNAMSIZ - 1);
    if (ioctl(fd, SIOCGIFFLAGS, &request) != 0) return fail(failure, "SIOCGIFFLAGS lo");
    request.ifr_flags |= IFF_UP;
    if (ioctl(fd, SIOCSIFFLAGS, &request) != 0) return fail(failure, "SIOCSIFFLAGS lo up");
    return 0;
}
