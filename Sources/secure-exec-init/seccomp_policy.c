#define _GNU_SOURCE
#include "init.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <linux/sched.h>
#include <seccomp.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef TIOCLINUX
#define TIOCLINUX 0x541C
#endif

/*
 * The seccomp filters every guest runs under, built once in init and loaded
 * in each guest between fork and exec.
 *
 * The main filter is an allow-list: a call not named here fails with EPERM
 * (never a kill, so node reports a clear error). It is our own list of what
 * node and libuv use, in the spirit of Docker's default profile: threads,
 * memory, files, epoll, timers, signals, sockets as the network permission
 * allows. Sessions and process groups (setsid, setpgid) are allowed: the
 * sandbox's own pid namespace bounds whom a group or session can reach, no
 * guest has a terminal to take as its controlling one (stdio are sockets,
 * /dev has no pty), and TIOCSTI stays denied below. Left out on purpose, so
 * denied: mount and the new mount API, pivot_root, chroot, unshare, setns,
 * ptrace, process_vm_*, kcmp, bpf, perf_event_open, userfaultfd, keyctl
 * and friends, io_uring (libuv falls
 * back to its thread pool), module loading, kexec, open_by_handle_at,
 * reboot, swap, acct, clock and time setting, syslog, iopl/ioperm,
 * quotactl, setuid and friends, sethostname, memfd_create (with child
 * processes allowed, an executable memfd would run native code around the
 * noexec writable mounts; node does not need it), and anything newer than
 * this list. Calls of another architecture (i386 via int 0x80, x32) are killed
 * by libseccomp's bad-architecture action.
 *
 * libseccomp 2.5 cannot compare one argument twice in a rule, so denials
 * that look at an argument live in a second, default-allow filter stacked on
 * the first (the kernel applies the stricter answer of the two):
 *  - ioctl TIOCSTI and TIOCLINUX, matched on the low 32 bits the kernel reads;
 *  - every way to give a file the setuid or setgid bit: chmod, fchmod,
 *    fchmodat, fchmodat2, and creating one with such a mode (open, openat
 *    and creat with O_CREAT or O_TMPFILE). A guest owns the files it makes
 *    on a host mount, and there a setuid file would run as the mount's
 *    owner for anyone on the host; nosuid on the mount does not stop that.
 *    openat2 passes its mode in memory a filter cannot read, so it answers
 *    ENOSYS (nothing in node needs it). mknod is not allowed at all, and
 *    renameat2 with RENAME_WHITEOUT (which makes a 0:0 character device) is
 *    refused: no device node and no fifo can be made anywhere;
 *  - fcntl F_SETLEASE: a guest owns the files of a mount's owner, and a
 *    lease on one would stall host writers of it.
 */

static scmp_filter_ctx allow_filter;
static scmp_filter_ctx argument_filter;

static const char *const allowed_calls[] = {
    /* threads, processes we already are, scheduling */
    "exit", "exit_group", "wait4", "waitid", "kill", "tgkill", "tkill", "getpid", "getppid", "gettid",
    "getpgid", "getpgrp", "getsid", "setpgid", "setsid", "set_tid_address", "set_robust_list", "get_robust_list", "rseq",
    "futex", "futex_waitv", "futex_wait", "futex_wake", "futex_requeue", "sched_yield", "sched_getaffinity",
    "sched_setaffinity", "sched_getparam", "sched_setparam", "sched_getscheduler", "sched_setscheduler",
    "sched_get_priority_max", "sched_get_priority_min", "sched_rr_get_interval", "sched_getattr",
    "sched_setattr", "getpriority", "setpriority", "prctl", "arch_prctl", "getrusage", "times", "capget",
    "capset", "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups",
    "ioprio_get", "ioprio_set", "pidfd_open", "pidfd_send_signal", "seccomp", "landlock_create_ruleset",
    "landlock_add_rule", "landlock_restrict_self",
    /* signals */
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigsuspend", "rt_sigpending", "rt_sigtimedwait",
    "rt_sigqueueinfo", "rt_tgsigqueueinfo", "sigaltstack", "signalfd", "signalfd4", "pause", "alarm",
    "restart_syscall",
    /* memory */
    "brk", "mmap", "munmap", "mremap", "mprotect", "madvise", "mlock", "mlock2", "munlock", "mlockall",
    "munlockall", "mincore", "msync", "membarrier", "pkey_alloc", "pkey_free", "pkey_mprotect",
    "get_mempolicy", "set_mempolicy", "mbind", "mseal", "process_madvise",
    /* files and descriptors */
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2",
    "open", "openat", "creat", "close", "close_range", "lseek", "fstat", "stat", "lstat",
    "newfstatat", "statx", "statfs", "fstatfs", "access", "faccessat", "faccessat2", "readlink",
    "readlinkat", "getdents", "getdents64", "mkdir", "mkdirat", "rmdir", "unlink", "unlinkat", "rename",
    "renameat", "renameat2", "link", "linkat", "symlink", "symlinkat", "chmod", "fchmod", "fchmodat",
    "fchmodat2", "chown", "fchown", "lchown", "fchownat", "truncate", "ftruncate", "fallocate", "fadvise64",
    "fsync", "fdatasync", "sync_file_range", "syncfs", "sync", "utime", "utimes", "utimensat", "futimesat",
    "getcwd", "chdir", "fchdir", "dup", "dup2", "dup3", "fcntl", "flock", "umask", "sendfile",
    "copy_file_range", "splice", "tee", "vmsplice", "pipe", "pipe2", "ioctl", "getxattr", "lgetxattr",
    "fgetxattr", "listxattr", "llistxattr", "flistxattr", "readahead",
    /* waiting and timers */
    "poll", "ppoll", "select", "pselect6", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait",
    "epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2", "timerfd_create", "timerfd_settime",
    "timerfd_gettime", "inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch",
    "clock_gettime", "clock_getres", "clock_nanosleep", "gettimeofday", "time", "nanosleep", "getitimer",
    "setitimer", "timer_create", "timer_settime", "timer_gettime", "timer_getoverrun", "timer_delete",
    /* what the system is */
    "uname", "sysinfo", "getrlimit", "setrlimit", "prlimit64", "ugetrlimit", "getcpu", "getrandom",
    /* sockets; which families may be created is decided below */
    "socketpair", "bind", "listen", "accept", "accept4", "connect", "getsockname", "getpeername", "sendto",
    "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg", "shutdown", "setsockopt", "getsockopt",
};

#define ARRAY_COUNT(array) (sizeof(array) / sizeof *(array))

static int allow(int number, unsigned count, const struct scmp_arg_cmp *compare) {
    return seccomp_rule_add_array(allow_filter, SCMP_ACT_ALLOW, number, count, compare);
}

static const unsigned long namespace_flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID |
                                             CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP | CLONE_NEWTIME;

static int add_process_rules(const struct init_config *config) {
    int rc;
    /* clone3 passes its flags in memory a filter cannot read: answer ENOSYS
     * so glibc falls back to clone, whose flags we can check. */
    rc = seccomp_rule_add(allow_filter, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    if (rc) return rc;
    if (config->child_process_allowed) {
        /* Any process or thread, but never in new namespaces. */
        struct scmp_arg_cmp no_namespaces = SCMP_A0(SCMP_CMP_MASKED_EQ, namespace_flags, 0);
        if ((rc = allow(SCMP_SYS(clone), 1, &no_namespaces))) return rc;
        if ((rc = allow(SCMP_SYS(fork), 0, NULL))) return rc;
        if ((rc = allow(SCMP_SYS(vfork), 0, NULL))) return rc;
        if ((rc = allow(SCMP_SYS(execve), 0, NULL))) return rc;
        if ((rc = allow(SCMP_SYS(execveat), 0, NULL))) return rc;
        return 0;
    }
    /* Threads only: CLONE_THREAD set, no namespace flag. */
    struct scmp_arg_cmp thread_only = SCMP_A0(SCMP_CMP_MASKED_EQ, namespace_flags | CLONE_THREAD, CLONE_THREAD);
    if ((rc = allow(SCMP_SYS(clone), 1, &thread_only))) return rc;
    /* The exec that starts the guest's program: execveat(3, "", ...,
     * AT_EMPTY_PATH). The kernel ignores the descriptor for an absolute
     * pathname, so native code could exec another program of the root this
     * way (busybox, the host's /usr under .host): what this rule keeps is
     * "no new process", since fork and clone stay denied. */
    struct scmp_arg_cmp start[2] = {SCMP_A0(SCMP_CMP_EQ, GUEST_EXEC_FD),
                                    SCMP_A4(SCMP_CMP_MASKED_EQ, AT_EMPTY_PATH, AT_EMPTY_PATH)};
    return allow(SCMP_SYS(execveat), 2, start);
}

static int add_socket_rules(const struct init_config *config) {
    int rc;
    struct scmp_arg_cmp unix_family = SCMP_A0(SCMP_CMP_EQ, AF_UNIX);
    if ((rc = allow(SCMP_SYS(socket), 1, &unix_family))) return rc;
    /* Netlink for routing queries only (getifaddrs, os.networkInterfaces). */
    struct scmp_arg_cmp route[2] = {SCMP_A0(SCMP_CMP_EQ, AF_NETLINK), SCMP_A2(SCMP_CMP_EQ, 0)};
    if ((rc = allow(SCMP_SYS(socket), 2, route))) return rc;
    if (!config->network_allowed) return 0; /* no IPv4 or IPv6 socket at all */
    static const int families[] = {AF_INET, AF_INET6};
    static const int types[] = {SOCK_STREAM, SOCK_DGRAM};
    for (size_t f = 0; f < ARRAY_COUNT(families); f++) {
        for (size_t t = 0; t < ARRAY_COUNT(types); t++) {
            /* The type's low bits without SOCK_NONBLOCK/SOCK_CLOEXEC: never SOCK_RAW. */
            struct scmp_arg_cmp rule[2] = {SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)families[f]),
                                           SCMP_A1(SCMP_CMP_MASKED_EQ, 0xf, (scmp_datum_t)types[t])};
            if ((rc = allow(SCMP_SYS(socket), 2, rule))) return rc;
        }
    }
    return 0;
}

/* In the stacked default-allow filter: no setuid or setgid bit on any file. */
static int add_privilege_bit_rules(void) {
    static const scmp_datum_t bits[] = {S_ISUID, S_ISGID};
    /* chmod-like calls: which argument holds the mode. */
    static const struct {
        const char *name;
        unsigned mode_arg;
    } chmods[] = {{"chmod", 1}, {"fchmod", 1}, {"fchmodat", 2}, {"fchmodat2", 2}, {"creat", 1}};
    /* File creation: the flags that create, and where flags and mode are. */
    static const struct {
        const char *name;
        unsigned flags_arg, mode_arg;
    } creates[] = {{"open", 1, 2}, {"openat", 2, 3}};
    static const scmp_datum_t creating[] = {O_CREAT, __O_TMPFILE};
    int rc = 0;
    for (size_t b = 0; b < ARRAY_COUNT(bits); b++) {
        for (size_t i = 0; rc == 0 && i < ARRAY_COUNT(chmods); i++) {
            int number = seccomp_syscall_resolve_name(chmods[i].name);
            if (number == __NR_SCMP_ERROR) continue; /* not on this architecture */
            struct scmp_arg_cmp mode = {chmods[i].mode_arg, SCMP_CMP_MASKED_EQ, bits[b], bits[b]};
            rc = seccomp_rule_add_array(argument_filter, SCMP_ACT_ERRNO(EPERM), number, 1, &mode);
        }
        for (size_t i = 0; rc == 0 && i < ARRAY_COUNT(creates); i++) {
            int number = seccomp_syscall_resolve_name(creates[i].name);
            if (number == __NR_SCMP_ERROR) continue;
            for (size_t c = 0; rc == 0 && c < ARRAY_COUNT(creating); c++) {
                struct scmp_arg_cmp rule[2] = {
                    {creates[i].flags_arg, SCMP_CMP_MASKED_EQ, creating[c], creating[c]},
                    {creates[i].mode_arg, SCMP_CMP_MASKED_EQ, bits[b], bits[b]},
                };
                rc = seccomp_rule_add_array(argument_filter, SCMP_ACT_ERRNO(EPERM), number, 2, rule);
            }
        }
    }
    if (rc) return rc;
    /* A lease lets its holder stall, for the kernel's lease-break time, any
     * host process that opens the file for writing; node never takes one. */
    /* Matched on the low 32 bits, which is all the kernel reads of cmd. */
    struct scmp_arg_cmp lease = SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffUL, F_SETLEASE);
    rc = seccomp_rule_add_array(argument_filter, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(fcntl), 1, &lease);
    /* RENAME_WHITEOUT leaves a 0:0 character device behind: no device nodes. */
    struct scmp_arg_cmp whiteout = SCMP_A4(SCMP_CMP_MASKED_EQ, RENAME_WHITEOUT, RENAME_WHITEOUT);
    if (rc == 0) rc = seccomp_rule_add_array(argument_filter, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(renameat2), 1, &whiteout);
    return rc;
}

int prepare_guest_filter(const struct init_config *config, struct failure *failure) {
    allow_filter = seccomp_init(SCMP_ACT_ERRNO(EPERM));
    argument_filter = seccomp_init(SCMP_ACT_ALLOW);
    if (!allow_filter || !argument_filter) return fail(failure, "seccomp_init");
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < ARRAY_COUNT(allowed_calls); i++) {
        int number = seccomp_syscall_resolve_name(allowed_calls[i]);
        if (number == __NR_SCMP_ERROR) continue; /* not on this architecture */
        rc = allow(number, 0, NULL);
    }
    /* personality: only PER_LINUX and the query value; no changing execution domains. */
    if (rc == 0) {
        struct scmp_arg_cmp linux_domain = SCMP_A0(SCMP_CMP_EQ, 0);
        rc = allow(SCMP_SYS(personality), 1, &linux_domain);
    }
    if (rc == 0) {
        struct scmp_arg_cmp query = SCMP_A0(SCMP_CMP_EQ, 0xffffffffUL);
        rc = allow(SCMP_SYS(personality), 1, &query);
    }
    if (rc == 0) rc = add_process_rules(config);
    if (rc == 0) rc = add_socket_rules(config);

    if (rc == 0) rc = seccomp_rule_add(allow_filter, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(openat2), 0);
    if (rc == 0) rc = add_privilege_bit_rules();

    static const unsigned long denied_ioctls[] = {TIOCSTI, TIOCLINUX};
    for (size_t i = 0; rc == 0 && i < ARRAY_COUNT(denied_ioctls); i++) {
        struct scmp_arg_cmp command = SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffUL, denied_ioctls[i]);
        rc = seccomp_rule_add_array(argument_filter, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1, &command);
    }
    if (rc != 0) {
        errno = -rc;
        return fail(failure, "seccomp_rule_add");
    }
    return 0;
}

int load_guest_filter(void) {
    int rc = seccomp_load(argument_filter);
    if (rc == 0) rc = seccomp_load(allow_filter);
    if (rc != 0) {
        errno = -rc;
        return -1;
    }
    return 0;
}
