/*
 * The nftables table that sends a guest's outbound traffic to the
 * supervisor's listeners, over NETLINK_NETFILTER with libnftnl, in the
 * calling thread's network namespace. Private to CEgress.
 */
#ifndef SE_NFTABLES_H
#define SE_NFTABLES_H

#include <stdint.h>

/* The table's name (family inet). */
#define SE_NFT_TABLE "secure_exec"

/*
 * Creates table inet secure_exec (nft syntax):
 *
 *   chain egress_redirect { type nat hook output priority -100;
 *       ip daddr != 127.0.0.0/8 udp dport 53 redirect to :53      (and tcp, and ip6 daddr != ::1)
 *       ip daddr != 127.0.0.0/8 meta l4proto tcp redirect to :port (and ip6 daddr != ::1) }
 *   chain loopback_notrack { type filter hook output priority raw;
 *       ip saddr 127.0.0.0/8 ip daddr 127.0.0.0/8 tcp sport != { port, 53 } tcp dport != { port, 53 } notrack
 *       (and udp, and ip6 saddr ::1 ip6 daddr ::1) }
 *
 * in one nfnetlink batch, so it applies all or nothing (~0.3 ms). If the
 * table exists already, it is replaced, atomically too but slowly (tens of
 * ms of RCU grace periods). Returns 0, or -1 with errno and *step naming the
 * failing request.
 */
int se_nft_install_egress(uint16_t port, const char **step);

#endif
