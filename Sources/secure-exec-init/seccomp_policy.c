#define _GNU_SOURCE
#include "init.h"

#include <errno.h>
#include <linux/sched.h>
#include <seccomp.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

/*
 * The seccomp filter every guest runs under, built once in init and loaded
 * in each guest between fork and exec. Denied calls fail with EPERM (never
 * kill), so node reports a clear error instead of dying. Calls of another
 * architecture (i386 via int 0x80, x32) are killed by libseccomp's
 * bad-architecture action.
 */

static scmp_filter_ctx guest_filter;

/* Reaches kernel attack surface or escapes the namespaces; no node program needs it. */
static const char *const denied_calls[] = {
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns",
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
    "bpf", "perf_event_open", "userfaultfd",
    "keyctl", "add_key", "request_key",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "open_by_handle_at", "name_to_handle_at",
    "reboot", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "syslog", "vhangup", "iopl", "ioperm", "lookup_dcookie", "nfsservctl", "uselib",
    "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr",
    "sethostname", "setdomainname", "pidfd_getfd",
};

static int deny(int syscall_number, unsigned count, const struct scmp_arg_cmp *compare) {
    return seccomp_rule_add_array(guest_filter, SCMP_ACT_ERRNO(EPERM), syscall_number, count, compare);
}

int prepare_guest_filter(const struct init_config *config, struct failure *failure) {
    guest_filter = seccomp_init(SCMP_ACT_ALLOW);
    if (!guest_filter) return fail(failure, "seccomp_init");
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof denied_calls / sizeof *denied_calls; i++) {
        int number = seccomp_syscall_resolve_name(denied_calls[i]);
        if (number == __NR_SCMP_ERROR) continue; /* not on this architecture */
        rc = seccomp_rule_add(guest_filter, SCMP_ACT_ERRNO(EPERM), number, 0);
    }

    /* clone3 passes its flags in memory a filter cannot read: answer ENOSYS so
     * glibc falls back to clone, whose flags we can check. */
    if (rc == 0) rc = seccomp_rule_add(guest_filter, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    static const unsigned long namespace_flags[] = {CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWPID,
                                                    CLONE_NEWIPC, CLONE_NEWUTS, CLONE_NEWCGROUP, CLONE_NEWTIME};
    for (size_t i = 0; rc == 0 && i < sizeof namespace_flags / sizeof *namespace_flags; i++) {
        struct scmp_arg_cmp flag = SCMP_A0(SCMP_CMP_MASKED_EQ, namespace_flags[i], namespace_flags[i]);
        rc = deny(SCMP_SYS(clone), 1, &flag);
    }

    /* TIOCSTI pushes input into a terminal; compare only the low 32 bits the
     * kernel looks at, so a command with high bits set cannot slip past. */
    if (rc == 0) {
        struct scmp_arg_cmp command = SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffUL, TIOCSTI);
        rc = deny(SCMP_SYS(ioctl), 1, &command);
    }

    /* Sockets: never raw packets; netlink only for routing (getifaddrs). */
    if (rc == 0) {
        struct scmp_arg_cmp family = SCMP_A0(SCMP_CMP_EQ, AF_PACKET);
        rc = deny(SCMP_SYS(socket), 1, &family);
    }
    if (rc == 0) {
        struct scmp_arg_cmp rule[2] = {SCMP_A0(SCMP_CMP_EQ, AF_NETLINK), SCMP_A2(SCMP_CMP_NE, 0)};
        rc = deny(SCMP_SYS(socket), 2, rule);
    }
    static const int inet_families[] = {AF_INET, AF_INET6};
    for (size_t i = 0; rc == 0 && i < 2; i++) {
        if (config->network_allowed) {
            struct scmp_arg_cmp rule[2] = {SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)inet_families[i]),
                                           SCMP_A1(SCMP_CMP_MASKED_EQ, 0xf, SOCK_RAW)};
            rc = deny(SCMP_SYS(socket), 2, rule);
        } else {
            /* Network denied: no IPv4 or IPv6 socket at all. */
            struct scmp_arg_cmp rule = SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)inet_families[i]);
            rc = deny(SCMP_SYS(socket), 1, &rule);
        }
    }

    /* Child processes denied: no fork, no vfork, no clone without CLONE_THREAD.
     * Threads (libuv's pool, worker_threads) keep working. */
    if (rc == 0 && !config->child_process_allowed) {
        rc = deny(SCMP_SYS(fork), 0, NULL);
        if (rc == 0) rc = deny(SCMP_SYS(vfork), 0, NULL);
        struct scmp_arg_cmp not_thread = SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, 0);
        if (rc == 0) rc = deny(SCMP_SYS(clone), 1, &not_thread);
    }

    if (rc != 0) {
        errno = -rc;
        return fail(failure, "seccomp_rule_add");
    }
    return 0;
}

int load_guest_filter(void) {
    int rc = seccomp_load(guest_filter);
    if (rc != 0) {
        errno = -rc;
        return -1;
    }
    return 0;
}
