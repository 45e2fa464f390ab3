/*
 * Netlink request/acknowledgement exchange over libmnl, shared by the
 * rtnetlink (routes, links) and nfnetlink (nftables) code. Private to CEgress.
 */
#ifndef SE_NETLINK_H
#define SE_NETLINK_H

#include <libmnl/libmnl.h>
#include <stddef.h>
#include <stdint.h>

/* Closes a libmnl socket when it goes out of scope, keeping errno. */
void se_mnl_socket_close_ptr(struct mnl_socket **socket);
#define SE_CLEANUP_MNL __attribute__((cleanup(se_mnl_socket_close_ptr)))

/*
 * A netlink socket of `bus` (NETLINK_ROUTE, NETLINK_NETFILTER) in the calling
 * thread's network namespace, close-on-exec, bound, with NETLINK_CAP_ACK so an
 * error reply does not carry a copy of the request. NULL with errno and *step
 * on failure.
 */
struct mnl_socket *se_netlink_open(int bus, const char **step);

/*
 * Sends `length` bytes of requests (built with sequence numbers first_seq,
 * first_seq + 1, ...) and reads replies until the one numbered last_seq is
 * acknowledged, so each request the caller waits for must carry NLM_F_ACK.
 * The first error reply ends it: -1 with errno and *step =
 * steps[seq - first_seq], the name the caller gave that request. The kernel
 * handles the requests inside sendmsg, so the replies are waiting by the time
 * this reads them.
 */
int se_netlink_exchange(struct mnl_socket *socket, const void *requests, size_t length, uint32_t first_seq,
                        uint32_t last_seq, const char *const *steps, const char **step);

#endif
