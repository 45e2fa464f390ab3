#define _GNU_SOURCE
#include "se_egress.h"
#include "../CNamespaces/se_netns_thread.h"
#include "se_rtnetlink.h"
#include "../CNamespaces/se_cleanup.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_PREFIXES = 32 };

/* "203.0.113.0/24", "2001:db8::/64", or an address alone (a host route). */
static int parse_prefix(const char *text, struct se_local_route *route) {
    char address[INET6_ADDRSTRLEN];
    const char *slash = strchr(text, '/');
    size_t length = slash != NULL ? (size_t)(slash - text) : strlen(text);
    if (length >= sizeof address) return -1;
    memcpy(address, text, length);
    address[length] = '\0';
    memset(route, 0, sizeof *route);
    if (inet_pton(AF_INET, address, route->address) == 1)
        route->family = AF_INET;
    else if (inet_pton(AF_INET6, address, route->address) == 1)
        route->family = AF_INET6;
    else
        return -1;
    long bits = route->family == AF_INET ? 32 : 128;
    if (slash != NULL) {
        char *end;
        errno = 0;
        long parsed = strtol(slash + 1, &end, 10);
        if (errno != 0 || end == slash + 1 || *end != '\0' || parsed < 0 || parsed > bits) return -1;
        bits = parsed;
    }
    route->prefix_length = (unsigned char)bits;
    /* The kernel refuses (IPv4) or silently drops (IPv6) host bits; clear them either way. */
    for (long bit = bits; bit < (route->family == AF_INET ? 32 : 128); bit++)
        route->address[bit / 8] &= (unsigned char)~(0x80u >> (bit % 8));
    return 0;
}

struct creation {
    const struct se_local_route *routes;
    int count;
};

/* Writes "1" to a sysctl; /proc/sys/net shows the writing thread's namespace. */
static int set_sysctl(const char *path, const char **step) {
    SE_CLEANUP_FD int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || SE_RETRY_EINTR(write(fd, "1", 1)) != 1) {
        *step = path;
        return -1;
    }
    return 0;
}

static int create_in_namespace(void *context, const char **step) {
    const struct creation *creation = context;
    if (se_rtnl_loopback(creation->routes, creation->count, step) != 0) return -1;
    for (int index = 0; index < creation->count; index++) {
        if (creation->routes[index].family == AF_INET6) {
            if (set_sysctl("/proc/sys/net/ipv6/ip_nonlocal_bind", step) != 0) return -1;
            break;
        }
    }
    int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (fd < 0) *step = "open /proc/thread-self/ns/net";
    return fd;
}

int se_netns_create(const char *const *prefixes, int count, const char **step) {
    if (count < 0 || count > MAX_PREFIXES || (count > 0 && prefixes == NULL)) {
        *step = "prefix count";
        errno = EINVAL;
        return -1;
    }
    struct se_local_route routes[MAX_PREFIXES];
    for (int index = 0; index < count; index++) {
        if (prefixes[index] == NULL || parse_prefix(prefixes[index], &routes[index]) != 0) {
            *step = "parse prefix";
            errno = EINVAL;
            return -1;
        }
    }
    struct creation creation = {.routes = routes, .count = count};
    return se_run_in_netns(SE_NETNS_UNSHARE, -1, create_in_namespace, &creation, step);
}
