/*
 * secure-exec-probe: one escape attempt per run, for the escape test suite.
 *
 *   secure-exec-probe <name> [args]   run probe <name>
 *   secure-exec-probe list            print every probe name, one a line
 *
 * Each probe makes one attempt with raw system calls and prints exactly one
 * line:
 *
 *   BLOCKED <probe> <detail>   the sandbox stopped it (exit 0)
 *   ESCAPED <probe> <detail>   it worked, or reached the kernel although the
 *                              seccomp filter should have denied it (exit 1)
 *   ERROR <probe> <detail>     the probe could not make its attempt (exit 2)
 *
 * A call the seccomp allow-list leaves out must fail with EPERM from the
 * filter. Where the kernel would answer differently without the filter
 * (ENOTTY, EINVAL, success...), any other result means the call was let
 * through, and that is reported as ESCAPED even if the kernel then refused.
 * Calls the filter allows (open, kill, fork...) are judged by their effect.
 *
 * Arguments are chosen so that nothing happens even where a call succeeds
 * (invalid magic numbers, out-of-range values, paths that do not exist),
 * and every probe refuses to run as root without a seccomp filter, i.e. on
 * the host by mistake.
 *
 * Built static (the sandbox root has nothing but node and its libraries):
 *   cc -static -O2 -Wall -Wextra -Werror -o .build/probes/secure-exec-probe Tests/Probes/probe.c
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/kcmp.h>
#include <linux/keyctl.h>
#include <linux/netlink.h>
#include <linux/perf_event.h>
#include <linux/reboot.h>
#include <linux/userfaultfd.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/timex.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef TIOCLINUX
#define TIOCLINUX 0x541C
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef AF_XDP
#define AF_XDP 44
#endif
#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#ifndef AF_ALG
#define AF_ALG 38
#endif
#ifndef __X32_SYSCALL_BIT
#define __X32_SYSCALL_BIT 0x40000000
#endif
#ifndef FSOPEN_CLOEXEC
#define FSOPEN_CLOEXEC 0x00000001
#endif
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif

static const char *probe;

static const char *err_name(int err) {
    const char *name = strerrorname_np(err);
    return name ? name : "E?";
}

/* Prints the probe's one line, "<VERDICT> <probe> <detail>", and returns the
 * exit code that goes with the verdict. */
__attribute__((format(printf, 3, 4))) static int report(const char *verdict, int code, const char *format, ...) {
    char detail[1024];
    va_list args;
    va_start(args, format);
    vsnprintf(detail, sizeof detail, format, args);
    va_end(args);
    for (char *c = detail; *c; c++) {
        if (*c == '\n') *c = ' ';
    }
    printf("%s %s %s\n", verdict, probe, detail);
    fflush(stdout);
    return code;
}

/* The attempt failed as it must (exit 0), got through (exit 1), or could not be made (exit 2). */
#define blocked(...) report("BLOCKED", 0, __VA_ARGS__)
#define escaped(...) report("ESCAPED", 1, __VA_ARGS__)
#define error(...) report("ERROR", 2, __VA_ARGS__)

/* The result of a call the seccomp filter must deny: EPERM, nothing else. */
static int expect_denied(long result, int err, const char *call) {
    if (result == -1 && err == EPERM) return blocked("%s: EPERM", call);
    if (result == -1)
        return escaped("%s failed with %s, not EPERM: the seccomp filter let it reach the kernel", call, err_name(err));
    return escaped("%s succeeded (returned %ld)", call, result);
}

#define DENIED(call) ({ long result_ = (long)(call); expect_denied(result_, errno, #call); })

/* The result of an attempt that any failure stops (judged by effect). */
static int expect_failure(long result, int err, const char *call) {
    if (result == -1) return blocked("%s: %s", call, err_name(err));
    return escaped("%s succeeded (returned %ld)", call, result);
}

#define FAILS(call) ({ long result_ = (long)(call); expect_failure(result_, errno, #call); })

static long parse_pid(int argc, char **argv, long fallback) {
    if (argc < 1) return fallback;
    char *end;
    long pid = strtol(argv[0], &end, 10);
    return (*end || pid <= 0) ? -1 : pid;
}

/* ---- mounts and namespaces ---- */

static int p_mount_tmpfs(int argc, char **argv) {
    (void)argc, (void)argv;
    return DENIED(mount("none", "/tmp", "tmpfs", 0, "size=1m"));
}

static int p_mount_cgroup2(int argc, char **argv) {
    (void)argc, (void)argv;
    return DENIED(mount("none", "/tmp", "cgroup2", 0, NULL));
}

static int p_mount_cgroup1(int argc, char **argv) {
    (void)argc, (void)argv;
    return DENIED(mount("none", "/tmp", "cgroup", 0, "memory"));
}

static int p_mount_bind_remount(int argc, char **argv) {
    (void)argc, (void)argv;
    /* Making the read-only root writable again. */
    return DENIED(mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND, NULL));
}

static int p_umount2(int argc, char **argv) {
    (void)argc, (void)argv;
    return DENIED(umount2("/proc", MNT_DETACH));
}

static int p_fsopen(int argc, char **argv) {
    (void)argc, (void)argv;
    return DENIED(syscall(SYS_fsopen, "tmpfs", FSOPEN_CLOEXEC));
}

static int p_open_tree(int argc, char **argv) {
    (void)argc, (void)argv;
    return DENIED(syscall(SYS_open_tree, AT_FDCWD, "/", OPEN_TREE_CLONE | O_CLOEXEC));
}

static int unshare_probe(int flag, const char *flag_name) {
    long result = unshare(flag);
    char call[64];
    snprintf(call, sizeof call, "unshare(%s)", flag_name);
    return expect_denied(result, errno, call);
}

static int p_unshare_user(int argc, char **argv) { (void)argc, (void)argv; return unshare_probe(CLONE_NEWUSER, "CLONE_NEWUSER"); }
static int p_unshare_mnt(int argc, char **argv) { (void)argc, (void)argv; return unshare_probe(CLONE_NEWNS, "CLONE_NEWNS"); }
static int p_unshare_net(int argc, char **argv) { (void)argc, (void)argv; return unshare_probe(CLONE_NEWNET, "CLONE_NEWNET"); }
static int p_unshare_pid(int argc, char **argv) { (void)argc, (void)argv; return unshare_probe(CLONE_NEWPID, "CLONE_NEWPID"); }
static int p_unshare_ipc(int argc, char **argv) { (void)argc, (void)argv; return unshare_probe(CLONE_NEWIPC, "CLONE_NEWIPC"); }
static int p_unshare_uts(int argc, char **argv) { (void)argc, (void)argv; return unshare_probe(CLONE_NEWUTS, "CLONE_NEWUTS"); }
static int p_unshare_cgroup(int argc, char **argv) { (void)argc, (void)argv; return unshare_probe(CLONE_NEWCGROUP, "CLONE_NEWCGROUP"); }
static int p_unshare_time(int argc, char **argv) { (void)argc, (void)argv; return unshare_probe(CLONE_NEWTIME, "CLONE_NEWTIME"); }

static int p_setns_net(int argc, char **argv) {
    (void)argc, (void)argv;
    int fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return error("open /proc/self/ns/net: %s", err_name(errno));
    return DENIED(setns(fd, CLONE_NEWNET));
}

static int p_pivot_root(int argc, char **argv) {
    (void)argc, (void)argv;
    return DENIED(syscall(SYS_pivot_root, "/tmp", "/tmp"));
}

static int p_chroot(int argc, char **argv) {
    (void)argc, (void)argv;
    return DENIED(chroot("/tmp"));
}

/* A child that exists only if the call was let through: it leaves at once. */
static int judge_clone(long result, int err, const char *call, int expected) {
    if (result == 0) _exit(0);
    if (result > 0) {
        waitpid((pid_t)result, NULL, 0);
        return escaped("%s created process %ld", call, result);
    }
    if (err == expected) return blocked("%s: %s", call, err_name(err));
    return escaped("%s failed with %s, not %s: the seccomp filter let it reach the kernel", call, err_name(err),
                   err_name(expected));
}

static int p_clone_newuser(int argc, char **argv) {
    (void)argc, (void)argv;
    long result = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, NULL, NULL, 0);
    return judge_clone(result, errno, "clone(CLONE_NEWUSER)", EPERM);
}

static int p_clone_newns(int argc, char **argv) {
    (void)argc, (void)argv;
    long result = syscall(SYS_clone, CLONE_NEWNS | CLONE_NEWPID | SIGCHLD, 0, NULL, NULL, 0);
    return judge_clone(result, errno, "clone(CLONE_NEWNS|CLONE_NEWPID)", EPERM);
}

struct clone3_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

static int p_clone3(int argc, char **argv) {
    (void)argc, (void)argv;
    struct clone3_args args;
    memset(&args, 0, sizeof args);
    args.flags = CLONE_NEWUSER | CLONE_NEWNS;
    args.exit_signal = SIGCHLD;
    long result = syscall(SYS_clone3, &args, sizeof args);
    return judge_clone(result, errno, "clone3(CLONE_NEWUSER|CLONE_NEWNS)", ENOSYS);
}

/* ---- other processes ---- */

static int p_ptrace_init(int argc, char **argv) {
    (void)argc, (void)argv;
    return DENIED(ptrace(PTRACE_ATTACH, 1, NULL, NULL));
}

/* The kernel lets a process trace another of its own uid (no Yama here),
 * so only the filter stops this. Default target: the node that ran us. */
static int p_ptrace_sibling(int argc, char **argv) {
    long pid = parse_pid(argc, argv, getppid());
    if (pid < 0) return error("bad pid argument");
    long result = ptrace(PTRACE_ATTACH, (pid_t)pid, NULL, NULL);
    char call[64];
    snprintf(call, sizeof call, "ptrace(PTRACE_ATTACH, %ld)", pid);
    return expect_denied(result, errno, call);
}

static int p_ptrace_traceme(int argc, char **argv) {
    (void)argc, (void)argv;
    return DENIED(ptrace(PTRACE_TRACEME, 0, NULL, NULL));
}

static int p_process_vm_readv_init(int argc, char **argv) {
    (void)argc, (void)argv;
    char buffer[64];
    struct iovec local = {.iov_base = buffer, .iov_len = sizeof buffer};
    struct iovec remote = {.iov_base = (void *)0x400000, .iov_len = sizeof buffer};
    return DENIED(process_vm_readv(1, &local, 1, &remote, 1, 0));
}

static int p_process_vm_readv_sibling(int argc, char **argv) {
    long pid = parse_pid(argc, argv, getppid());
    if (pid < 0) return error("bad pid argument");
    char buffer[64];
    struct iovec local = {.iov_base = buffer, .iov_len = sizeof buffer};
    struct iovec remote = {.iov_base = (void *)0x400000, .iov_len = sizeof buffer};
    return DENIED(process_vm_readv((pid_t)pid, &local, 1, &remote, 1, 0));
}

static int p_kcmp(int argc, char **argv) {
    (void)argc, (void)argv;
    return DENIED(syscall(SYS_kcmp, getpid(), getppid(), KCMP_FILE, 0, 0));
}

static int p_pidfd_getfd(int argc, char **argv) {
    long pid = parse_pid(argc, argv, getppid());
    if (pid < 0) return error("bad pid argument");
    int pidfd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
    if (pidfd < 0) return error("pidfd_open(%ld): %s", pid, err_name(errno));
    return DENIED(syscall(SYS_pidfd_getfd, pidfd, 0, 0));
}

static int p_proc1_mem(int argc, char **argv) {
    (void)argc, (void)argv;
    int fd = open("/proc/1/mem", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return blocked("open /proc/1/mem: %s", err_name(errno));
    char buffer[16];
    ssize_t got = pread(fd, buffer, sizeof buffer, 0x400000);
    if (got < 0) return escaped("opened /proc/1/mem (reading 0x400000: %s)", err_name(errno));
    return escaped("read %zd bytes of init's memory", got);
}

static int p_proc1_exe_rdwr(int argc, char **argv) {
    (void)argc, (void)argv;
    return FAILS(open("/proc/1/exe", O_RDWR | O_CLOEXEC));
}

static int p_self_exe_rdwr(int argc, char **argv) {
    (void)argc, (void)argv;
    return FAILS(open("/proc/self/exe", O_RDWR | O_CLOEXEC));
}

/* The node that ran us: overwriting it would change every later guest's node
 * (the CVE-2019-5736 pattern). It is the same uid, so /proc lets us open it. */
static int p_parent_exe_rdwr(int argc, char **argv) {
    (void)argc, (void)argv;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/exe", (int)getppid());
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return blocked("open %s O_RDWR: %s", path, err_name(errno));
    return escaped("opened %s (the node binary) for writing", path);
}

static int p_kill_init(int argc, char **argv) {
    (void)argc, (void)argv;
    long result = kill(1, SIGKILL);
    if (result == -1) return blocked("kill(1, SIGKILL): %s", err_name(errno));
    return escaped("kill(1, SIGKILL) was permitted");
}

/* Sessions are allowed (detached children need them), but a new session
 * reaches no further than the sandbox's pid namespace: the pid of a host
 * process (the test's own, given as argument) names nothing here, alone or
 * as a process group. */
static int p_setsid_kill_outside(int argc, char **argv) {
    long outside = parse_pid(argc, argv, -1);
    if (outside <= 0) return error("needs the pid of a process outside the sandbox");
    if (setsid() < 0) return error("setsid: %s (sessions should be allowed)", err_name(errno));
    if (getsid(0) != getpid() || getpgid(0) != getpid()) return error("setsid made no session of our own");
    if (kill((pid_t)outside, 0) == 0) return escaped("in a new session, kill(%ld, 0) reached a process", outside);
    int single = errno;
    if (kill(-(pid_t)outside, 0) == 0) return escaped("in a new session, kill(-%ld, 0) reached a process group", outside);
    return blocked("in a new session of our own, kill(%ld, 0): %s, kill(-%ld, 0): %s", outside, err_name(single),
                   outside, err_name(errno));
}

/* A session leader with no controlling terminal still cannot push input
 * into a terminal: TIOCSTI stays denied by the filter. */
static int p_setsid_tiocsti(int argc, char **argv) {
    (void)argc, (void)argv;
    if (setsid() < 0) return error("setsid: %s (sessions should be allowed)", err_name(errno));
    char c = 'x';
    return DENIED(syscall(SYS_ioctl, 0, (unsigned long)TIOCSTI, &c));
}

static int p_pidfd_kill_init(int argc, char **argv) {
    (void)argc, (void)argv;
    int pidfd = (int)syscall(SYS_pidfd_open, 1, 0);
    if (pidfd < 0) return blocked("pidfd_open(1): %s", err_name(errno));
    return FAILS(syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0));
}

/* ---- sockets ---- */

static int p_socket_raw(int argc, char **argv) {
    (void)argc, (void)argv;
    return DENIED(socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
}

static int p_socket_raw_inet6(int argc, char **argv) {
    (void)argc, (void)argv;
    return DENIED(socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW));
}

static int p_socket_packet(int argc, char **argv) {
    (void)argc, (void)argv;
    return DENIED(socket(AF_PACKET, SOCK_RAW, 0x0300 /* htons(ETH_P_ALL) */));
}

static int p_netlink_audit(int argc, char **argv) {
    (void)argc, (void)argv;
    return DENIED(socket(AF_NETLINK, SOCK_RAW, NETLINK_AUDIT));
}

static int p_netlink_uevent(int argc, char **argv) {
    (void)argc, (void)argv;
    return DENIED(socket(AF_NETLINK, SOCK_DGRAM, NETLINK_KOBJECT_UEVENT));
}

/* Families with a history of kernel bugs that node never needs. */
static int p_socket_families(int argc, char **argv) {
    (void)argc, (void)argv;
    static const struct {
        int family, type;
        const char *name;
    } attempts[] = {
        {AF_ALG, SOCK_SEQPACKET, "AF_ALG"}, {AF_VSOCK, SOCK_STREAM, "AF_VSOCK"}, {AF_XDP, SOCK_RAW, "AF_XDP"},
        {AF_KEY, SOCK_RAW, "AF_KEY"},       {AF_TIPC, SOCK_RDM, "AF_TIPC"},      {AF_RDS, SOCK_SEQPACKET, "AF_RDS"},
        {AF_BLUETOOTH, SOCK_RAW, "AF_BLUETOOTH"}, {AF_CAN, SOCK_RAW, "AF_CAN"},
    };
    char seen[512] = "";
    for (size_t i = 0; i < sizeof attempts / sizeof *attempts; i++) {
        int fd = socket(attempts[i].family, attempts[i].type, 0);
        if (fd >= 0) return escaped("socket(%s) succeeded", attempts[i].name);
        if (errno != EPERM)
            return escaped("socket(%s) failed with %s, not EPERM: the seccomp filter let it reach the kernel",
                           attempts[i].name, err_name(errno));
        size_t used = strlen(seen);
        snprintf(seen + used, sizeof seen - used, "%s%s", used ? "," : "", attempts[i].name);
    }
    return blocked("socket(%s): EPERM", seen);
}

/* ---- kernel interfaces ---- */

static int p_bpf(int argc, char **argv) {
    (void)argc, (void)argv;
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.map_type = BPF_MAP_TYPE_ARRAY;
    attr.key_size = 4;
    attr.value_size = 4;
    attr.max_entries = 1;
    return DENIED(syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr));
}

/* A user-space-only software counter on ourselves: allowed at any
 * perf_event_paranoid level below 3, so only the filter refuses it. */
static int p_perf_event_open(int argc, char **argv) {
    (void)argc, (void)argv;
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.size = sizeof attr;
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_TASK_CLOCK;
    attr.exclude_kernel = 1;
    attr.exclude_hv = 1;
    return DENIED(syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0));
}

static int p_keyctl(int argc, char **argv) {
    (void)argc, (void)argv;
    return DENIED(syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0));
}

static int p_add_key(int argc, char **argv) {
    (void)argc, (void)argv;
    return DENIED(syscall(SYS_add_key, "user", "secure-exec-probe", "x", 1, KEY_SPEC_PROCESS_KEYRING));
}

static int p_request_key(int argc, char **argv) {
    (void)argc, (void)argv;
    return DENIED(syscall(SYS_request_key, "user", "secure-exec-probe", NULL, 0));
}

static int p_userfaultfd(int argc, char **argv) {
    (void)argc, (void)argv;
    return DENIED(syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY));
}

static int p_io_uring_setup(int argc, char **argv) {
    (void)argc, (void)argv;
    char params[120]; /* struct io_uring_params, zeroed */
    memset(params, 0, sizeof params);
    return DENIED(syscall(SYS_io_uring_setup, 1, params));
}

static int p_kexec_load(int argc, char **argv) {
    (void)argc, (void)argv;
    return DENIED(syscall(SYS_kexec_load, 0, 0, NULL, 0xdead0000UL));
}

static int p_kexec_file_load(int argc, char **argv) {
    (void)argc, (void)argv;
    return DENIED(syscall(SYS_kexec_file_load, -1, -1, 0, "", 0xdead0000UL));
}

static int p_init_module(int argc, char **argv) {
    (void)argc, (void)argv;
    static char image[16];
    return DENIED(syscall(SYS_init_module, image, 0, ""));
}

static int p_finit_module(int argc, char **argv) {
    (void)argc, (void)argv;
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return error("open /dev/null: %s", err_name(errno));
    return DENIED(syscall(SYS_finit_module, fd, "", 0));
}

static int p_delete_module(int argc, char **argv) {
    (void)argc, (void)argv;
    return DENIED(syscall(SYS_delete_module, "secure_exec_probe_none", O_NONBLOCK));
}

/* The "shocker" escape: open the filesystem's root inode by handle. */
static int p_open_by_handle_at(int argc, char **argv) {
    (void)argc, (void)argv;
    struct {
        struct file_handle handle;
        unsigned char bytes[8];
    } handle;
    memset(&handle, 0, sizeof handle);
    handle.handle.handle_bytes = 8;
    handle.handle.handle_type = 1; /* FILEID_INO32_GEN */
    uint32_t root_inode[2] = {2, 0};
    memcpy(handle.handle.f_handle, root_inode, sizeof root_inode);
    int mount_fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (mount_fd < 0) return error("open /: %s", err_name(errno));
    return DENIED(syscall(SYS_open_by_handle_at, mount_fd, &handle.handle, O_RDONLY));
}

/* Needs no privilege from the kernel: only the filter refuses it. */
static int p_name_to_handle_at(int argc, char **argv) {
    (void)argc, (void)argv;
    struct {
        struct file_handle handle;
        unsigned char bytes[128];
    } handle;
    memset(&handle, 0, sizeof handle);
    handle.handle.handle_bytes = 128;
    int mount_id;
    return DENIED(syscall(SYS_name_to_handle_at, AT_FDCWD, "/tmp", &handle.handle, &mount_id, 0));
}

static int p_reboot(int argc, char **argv) {
    (void)argc, (void)argv;
    /* A wrong second magic number: the kernel checks it after the privilege. */
    return DENIED(syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, 0x5ec0de, LINUX_REBOOT_CMD_CAD_OFF, NULL));
}

static int p_swapon(int argc, char **argv) {
    (void)argc, (void)argv;
    return DENIED(syscall(SYS_swapon, "/tmp/secure-exec-probe-no-swap", 0));
}

static int p_swapoff(int argc, char **argv) {
    (void)argc, (void)argv;
    return DENIED(syscall(SYS_swapoff, "/tmp/secure-exec-probe-no-swap"));
}

static int p_acct(int argc, char **argv) {
    (void)argc, (void)argv;
    return DENIED(acct("/tmp/secure-exec-probe-no-acct"));
}

/* An invalid time: the kernel validates it before the privilege check, so
 * without the filter this is EINVAL. */
static int p_settimeofday(int argc, char **argv) {
    (void)argc, (void)argv;
    struct timeval invalid = {.tv_sec = 0, .tv_usec = 2000000};
    return DENIED(syscall(SYS_settimeofday, &invalid, NULL));
}

static int p_clock_settime(int argc, char **argv) {
    (void)argc, (void)argv;
    struct timespec invalid = {.tv_sec = 0, .tv_nsec = 2000000000L};
    return DENIED(syscall(SYS_clock_settime, CLOCK_REALTIME, &invalid));
}

static int p_adjtimex(int argc, char **argv) {
    (void)argc, (void)argv;
    struct timex change;
    memset(&change, 0, sizeof change);
    change.modes = ADJ_TICK;
    change.tick = 1; /* out of range: refused even with the privilege */
    return DENIED(syscall(SYS_adjtimex, &change));
}

/* Unprivileged when dmesg_restrict is 0: only the filter refuses it. */
static int p_syslog(int argc, char **argv) {
    (void)argc, (void)argv;
    return DENIED(syscall(SYS_syslog, 10 /* SYSLOG_ACTION_SIZE_BUFFER */, NULL, 0));
}

static int personality_probe(unsigned long persona, const char *name) {
    long result = syscall(SYS_personality, persona);
    char call[64];
    snprintf(call, sizeof call, "personality(%s)", name);
    if (result != -1) syscall(SYS_personality, (unsigned long)result);
    return expect_denied(result, errno, call);
}

static int p_personality_bsd(int argc, char **argv) {
    (void)argc, (void)argv;
    return personality_probe(PER_BSD, "PER_BSD");
}

static int p_personality_0x0008(int argc, char **argv) {
    (void)argc, (void)argv;
    return personality_probe(0x0008, "0x0008");
}

static int p_personality_no_aslr(int argc, char **argv) {
    (void)argc, (void)argv;
    return personality_probe(ADDR_NO_RANDOMIZE, "ADDR_NO_RANDOMIZE");
}

/* stdin is a pipe or socket: without the filter these are ENOTTY. */
static int p_ioctl_tiocsti(int argc, char **argv) {
    (void)argc, (void)argv;
    char c = 'x';
    return DENIED(syscall(SYS_ioctl, 0, (unsigned long)TIOCSTI, &c));
}

static int p_ioctl_tiocsti_high_bits(int argc, char **argv) {
    (void)argc, (void)argv;
    char c = 'x';
    return DENIED(syscall(SYS_ioctl, 0, 0x100000000UL | TIOCSTI, &c));
}

static int p_ioctl_tioclinux(int argc, char **argv) {
    (void)argc, (void)argv;
    char subcode = 6; /* TIOCL_GETSHIFTSTATE */
    return DENIED(syscall(SYS_ioctl, 0, (unsigned long)TIOCLINUX, &subcode));
}

static int p_iopl(int argc, char **argv) {
    (void)argc, (void)argv;
    return DENIED(syscall(SYS_iopl, 3));
}

static int p_ioperm(int argc, char **argv) {
    (void)argc, (void)argv;
    return DENIED(syscall(SYS_ioperm, 0x80, 1, 1));
}

static int p_modify_ldt(int argc, char **argv) {
    (void)argc, (void)argv;
    char table[16];
    return DENIED(syscall(SYS_modify_ldt, 0, table, sizeof table));
}

static int p_mknod(int argc, char **argv) {
    (void)argc, (void)argv;
    const char *path = "/tmp/secure-exec-probe-mem";
    long result = mknod(path, S_IFCHR | 0600, makedev(1, 1)); /* /dev/mem */
    int err = errno;
    if (result == 0) unlink(path);
    return expect_denied(result, err, "mknod(/dev/mem's major:minor)");
}

/* ---- planting privilege in files: each call would succeed on the guest's own
 * /tmp file without the filter, so anything but EPERM (or ENOSYS where noted)
 * reached the kernel. ---- */

static const char *own_file(const char *name) {
    static char path[128];
    snprintf(path, sizeof path, "/tmp/secure-exec-probe-%s", name);
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return NULL;
    close(fd);
    return path;
}

static int p_mkfifo(int argc, char **argv) {
    (void)argc, (void)argv;
    const char *path = "/tmp/secure-exec-probe-fifo";
    long result = mknod(path, S_IFIFO | 0600, 0);
    int err = errno;
    if (result == 0) unlink(path);
    return expect_denied(result, err, "mknod(S_IFIFO)");
}

static int p_fchmodat_setgid(int argc, char **argv) {
    (void)argc, (void)argv;
    const char *path = own_file("fchmodat");
    if (!path) return error("cannot create a file in /tmp: %s", err_name(errno));
    return DENIED(syscall(SYS_fchmodat, AT_FDCWD, path, 02755));
}

static int p_fchmodat2_setuid(int argc, char **argv) {
    (void)argc, (void)argv;
    const char *path = own_file("fchmodat2");
    if (!path) return error("cannot create a file in /tmp: %s", err_name(errno));
    return DENIED(syscall(452 /* fchmodat2 */, AT_FDCWD, path, 04755, 0));
}

static int p_fchmod_high_bits(int argc, char **argv) {
    (void)argc, (void)argv;
    const char *path = own_file("fchmod");
    if (!path) return error("cannot create a file in /tmp: %s", err_name(errno));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return error("open: %s", err_name(errno));
    /* Bits above the mode in the 64-bit register must not hide the setuid bit. */
    int code = DENIED(syscall(SYS_fchmod, fd, (1UL << 32) | 04755));
    close(fd);
    return code;
}

static int p_create_setuid(int argc, char **argv) {
    (void)argc, (void)argv;
    unlink("/tmp/secure-exec-probe-created");
    return DENIED(syscall(SYS_openat, AT_FDCWD, "/tmp/secure-exec-probe-created", O_WRONLY | O_CREAT | O_CLOEXEC, 06755));
}

static int p_tmpfile_setuid(int argc, char **argv) {
    (void)argc, (void)argv;
    return DENIED(syscall(SYS_openat, AT_FDCWD, "/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 04755));
}

static int p_openat2(int argc, char **argv) {
    (void)argc, (void)argv;
    struct {
        uint64_t flags, mode, resolve;
    } how = {O_WRONLY | O_CREAT | O_CLOEXEC, 04755, 0};
    long result = syscall(437 /* openat2 */, AT_FDCWD, "/tmp/secure-exec-probe-openat2", &how, sizeof how);
    int err = errno;
    if (result == -1 && err == ENOSYS) return blocked("openat2: ENOSYS (its mode cannot be filtered)");
    return expect_denied(result, err, "openat2");
}

static int p_renameat2_whiteout(int argc, char **argv) {
    (void)argc, (void)argv;
    const char *path = own_file("whiteout");
    if (!path) return error("cannot create a file in /tmp: %s", err_name(errno));
    return DENIED(syscall(SYS_renameat2, AT_FDCWD, path, AT_FDCWD, "/tmp/secure-exec-probe-whiteout-moved", 4 /* RENAME_WHITEOUT */));
}

static int p_fcntl_setlease_high_bits(int argc, char **argv) {
    (void)argc, (void)argv;
    const char *path = own_file("lease-high");
    if (!path) return error("cannot create a file in /tmp: %s", err_name(errno));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return error("open: %s", err_name(errno));
    /* The kernel reads cmd as 32 bits: bits above must not hide F_SETLEASE. */
    int code = DENIED(syscall(SYS_fcntl, fd, (1UL << 32) | 1024 /* F_SETLEASE */, 0 /* F_RDLCK */));
    close(fd);
    return code;
}

static int p_fcntl_setlease(int argc, char **argv) {
    (void)argc, (void)argv;
    const char *path = own_file("lease");
    if (!path) return error("cannot create a file in /tmp: %s", err_name(errno));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return error("open: %s", err_name(errno));
    int code = DENIED(syscall(SYS_fcntl, fd, 1024 /* F_SETLEASE */, 0 /* F_RDLCK */));
    close(fd);
    return code;
}

/* ---- credentials ---- */

static int p_setuid(int argc, char **argv) {
    (void)argc, (void)argv;
    return DENIED(syscall(SYS_setuid, 0));
}

static int p_setresuid(int argc, char **argv) {
    (void)argc, (void)argv;
    return DENIED(syscall(SYS_setresuid, 0, 0, 0));
}

static int p_setgid(int argc, char **argv) {
    (void)argc, (void)argv;
    return DENIED(syscall(SYS_setgid, 0));
}

static int p_setgroups(int argc, char **argv) {
    (void)argc, (void)argv;
    gid_t root = 0;
    return DENIED(syscall(SYS_setgroups, 1, &root));
}

/* capset is allowed (libuv and node query capabilities); the kernel must
 * refuse to raise anything. */
static int p_capset_raise(int argc, char **argv) {
    (void)argc, (void)argv;
    struct {
        uint32_t version;
        int pid;
    } header = {0x20080522 /* _LINUX_CAPABILITY_VERSION_3 */, 0};
    struct {
        uint32_t effective, permitted, inheritable;
    } data[2] = {{1u << 21, 1u << 21, 0}, {0, 0, 0}}; /* CAP_SYS_ADMIN */
    return FAILS(syscall(SYS_capset, &header, data));
}

static int p_rlimit_raise(int argc, char **argv) {
    (void)argc, (void)argv;
    static const struct {
        int resource;
        const char *name;
    } limits[] = {{RLIMIT_NOFILE, "RLIMIT_NOFILE"}, {RLIMIT_CPU, "RLIMIT_CPU"}};
    for (size_t i = 0; i < sizeof limits / sizeof *limits; i++) {
        struct rlimit current;
        if (getrlimit(limits[i].resource, &current) != 0) return error("getrlimit: %s", err_name(errno));
        if (current.rlim_max == RLIM_INFINITY) return escaped("%s has no hard limit", limits[i].name);
        struct rlimit raised = {.rlim_cur = current.rlim_max + 1, .rlim_max = current.rlim_max + 1};
        if (setrlimit(limits[i].resource, &raised) == 0)
            return escaped("raised the hard %s to %llu", limits[i].name, (unsigned long long)raised.rlim_max);
        if (errno != EPERM) return error("setrlimit(%s): %s", limits[i].name, err_name(errno));
    }
    return blocked("raising the hard RLIMIT_NOFILE and RLIMIT_CPU: EPERM");
}

static int p_sethostname(int argc, char **argv) {
    (void)argc, (void)argv;
    /* Too long: without the filter the kernel answers EINVAL before it checks privilege. */
    static const char name[100] = "secure-exec-probe";
    return DENIED(syscall(SYS_sethostname, name, sizeof name));
}

/* /proc/self/status as one string, or NULL. */
static char *read_status(void) {
    static char text[8192];
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    size_t have = 0;
    for (;;) {
        ssize_t got = read(fd, text + have, sizeof text - 1 - have);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        have += (size_t)got;
    }
    close(fd);
    text[have] = 0;
    return text;
}

/* The value after "Key:\t" in /proc/self/status, or "" when absent. */
static const char *status_field(const char *status, const char *key) {
    static char value[8][64];
    static int next;
    char *slot = value[next++ % 8];
    slot[0] = 0;
    size_t key_length = strlen(key);
    for (const char *line = status; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
        if (strncmp(line, key, key_length) == 0 && line[key_length] == ':') {
            const char *start = line + key_length + 1;
            while (*start == ' ' || *start == '\t') start++;
            size_t length = strcspn(start, "\n");
            if (length >= sizeof value[0]) length = sizeof value[0] - 1;
            memcpy(slot, start, length);
            slot[length] = 0;
            break;
        }
    }
    return slot;
}

static int is_zero_mask(const char *hex) { return *hex && strspn(hex, "0") == strlen(hex); }

static int p_capabilities(int argc, char **argv) {
    (void)argc, (void)argv;
    const char *status = read_status();
    if (!status) return error("read /proc/self/status: %s", err_name(errno));
    static const char *const sets[] = {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"};
    char detail[512] = "";
    int ok = 1;
    for (size_t i = 0; i < sizeof sets / sizeof *sets; i++) {
        const char *value = status_field(status, sets[i]);
        if (!is_zero_mask(value)) ok = 0;
        size_t used = strlen(detail);
        snprintf(detail + used, sizeof detail - used, "%s=%s ", sets[i], value);
    }
    const char *nnp = status_field(status, "NoNewPrivs");
    const char *seccomp = status_field(status, "Seccomp");
    if (strcmp(nnp, "1") != 0 || strcmp(seccomp, "2") != 0) ok = 0;
    size_t used = strlen(detail);
    snprintf(detail + used, sizeof detail - used, "NoNewPrivs=%s Seccomp=%s", nnp, seccomp);
    return ok ? blocked("%s", detail) : escaped("%s", detail);
}

/* Who we are: the setuid and file-capability test runs this from a setuid-root
 * file carrying cap_sys_admin+ep. */
static int p_whoami(int argc, char **argv) {
    (void)argc, (void)argv;
    const char *status = read_status();
    if (!status) return error("read /proc/self/status: %s", err_name(errno));
    const char *permitted = status_field(status, "CapPrm");
    const char *effective = status_field(status, "CapEff");
    uid_t uid = getuid(), euid = geteuid();
    gid_t gid = getgid(), egid = getegid();
    int ok = euid != 0 && egid != 0 && is_zero_mask(permitted) && is_zero_mask(effective);
    return report(ok ? "BLOCKED" : "ESCAPED", ok ? 0 : 1, "uid=%u euid=%u gid=%u egid=%u CapPrm=%s CapEff=%s", uid, euid,
                  gid, egid, permitted, effective);
}

/* ---- files ---- */

static int p_proc_sys_hostname(int argc, char **argv) {
    (void)argc, (void)argv;
    int fd = open("/proc/sys/kernel/hostname", O_WRONLY | O_CLOEXEC);
    if (fd < 0) return blocked("open /proc/sys/kernel/hostname O_WRONLY: %s", err_name(errno));
    ssize_t put = write(fd, "escaped", 7);
    if (put < 0) return blocked("opened /proc/sys/kernel/hostname, write: %s", err_name(errno));
    return escaped("wrote /proc/sys/kernel/hostname");
}

static int p_proc_sys_core_pattern(int argc, char **argv) {
    (void)argc, (void)argv;
    /* Open only: never write a core pattern, even where it is allowed. */
    return FAILS(open("/proc/sys/kernel/core_pattern", O_WRONLY | O_CLOEXEC));
}

static int p_sysrq_trigger(int argc, char **argv) {
    (void)argc, (void)argv;
    /* Open only: nothing is ever written to it. */
    return FAILS(open("/proc/sysrq-trigger", O_WRONLY | O_CLOEXEC));
}

static int p_kcore(int argc, char **argv) {
    (void)argc, (void)argv;
    int fd = open("/proc/kcore", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return blocked("open /proc/kcore: %s", err_name(errno));
    char buffer[64];
    ssize_t got = read(fd, buffer, sizeof buffer);
    if (got < 0) return blocked("read /proc/kcore: %s", err_name(errno));
    if (got == 0) return blocked("/proc/kcore reads as empty");
    return escaped("read %zd bytes of /proc/kcore", got);
}

/* Whether directory `path` holds exactly the entry `only` (besides . and ..). */
static int holds_only(const char *path, const char *only) {
    DIR *dir = opendir(path);
    if (!dir) return 0;
    int others = 0, found = 0;
    struct dirent *entry;
    while ((entry = readdir(dir))) {
        if (!strcmp(entry->d_name, ".") || !strcmp(entry->d_name, "..")) continue;
        if (!strcmp(entry->d_name, only)) found = 1;
        else others = 1;
    }
    closedir(dir);
    return found && !others;
}

/* The number of subdirectories of `path`, or -1. */
static int subdirectories(const char *path) {
    DIR *dir = opendir(path);
    if (!dir) return -1;
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir(dir))) {
        if (entry->d_type == DT_DIR && strcmp(entry->d_name, ".") && strcmp(entry->d_name, "..")) count++;
    }
    closedir(dir);
    return count;
}

/* /sys holds nothing but the read-only view of the sandbox's own cgroups:
 * fs/cgroup, one directory per v1 controller (or the v2 cgroup's files),
 * and no cgroup above, beside or below the sandbox's own. */
static int p_sys_census(int argc, char **argv) {
    (void)argc, (void)argv;
    struct stat info;
    if (stat("/sys", &info) != 0) return blocked("stat /sys: %s (no cgroup limits, no view)", err_name(errno));
    if (!holds_only("/sys", "fs")) return escaped("/sys holds more than fs");
    if (!holds_only("/sys/fs", "cgroup")) return escaped("/sys/fs holds more than cgroup");
    DIR *views = opendir("/sys/fs/cgroup");
    if (!views) return error("opendir /sys/fs/cgroup: %s", err_name(errno));
    static const char *const controllers[] = {"memory", "pids", "unified"};
    char seen[512] = "";
    const char *stranger = NULL;
    struct dirent *entry;
    while ((entry = readdir(views))) {
        if (entry->d_type != DT_DIR || !strcmp(entry->d_name, ".") || !strcmp(entry->d_name, "..")) continue;
        int known = 0;
        for (size_t i = 0; i < sizeof controllers / sizeof *controllers; i++) known |= !strcmp(entry->d_name, controllers[i]);
        char path[300];
        snprintf(path, sizeof path, "/sys/fs/cgroup/%s", entry->d_name);
        /* A view's subdirectory, or a directory of a v2 view, is another cgroup. */
        if ((!known || subdirectories(path) != 0) && !stranger) stranger = strdup(path);
        size_t used = strlen(seen);
        snprintf(seen + used, sizeof seen - used, "%s%s", used ? "," : "", entry->d_name);
    }
    closedir(views);
    if (stranger) return escaped("another cgroup is visible: %s", stranger);
    return blocked("/sys holds only fs/cgroup, with %s", seen[0] ? seen : "the v2 cgroup's own files");
}

/* The cgroup view is read-only: no limit can be raised, no process moved,
 * no child cgroup made. */
static int p_cgroup_view_write(int argc, char **argv) {
    (void)argc, (void)argv;
    static const char *const files[] = {
        "/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/cgroup.procs",
        "/sys/fs/cgroup/pids/pids.max", "/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/pids.max",
        "/sys/fs/cgroup/cgroup.procs", "/sys/fs/cgroup/unified/memory.max",
    };
    static const char *const children[] = {"/sys/fs/cgroup/memory/x", "/sys/fs/cgroup/pids/x", "/sys/fs/cgroup/x"};
    char detail[1024] = "";
    int tried = 0;
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        if (access(files[i], F_OK) != 0) continue;
        tried++;
        int fd = open(files[i], O_WRONLY | O_CLOEXEC);
        if (fd >= 0) return escaped("opened %s for writing", files[i]);
        size_t used = strlen(detail);
        snprintf(detail + used, sizeof detail - used, "%s:%s ", files[i], err_name(errno));
    }
    if (!tried) return error("no cgroup view to write to");
    for (size_t i = 0; i < sizeof children / sizeof *children; i++) {
        if (mkdir(children[i], 0755) == 0) return escaped("made the cgroup %s", children[i]);
        size_t used = strlen(detail);
        snprintf(detail + used, sizeof detail - used, "mkdir %s:%s ", children[i], err_name(errno));
    }
    return blocked("%s", detail);
}

static int p_dev_census(int argc, char **argv) {
    (void)argc, (void)argv;
    static const char *const allowed[] = {".",      "..",   "null",  "zero", "full",   "random",
                                          "urandom", "tty", "fd",    "stdin", "stdout", "stderr"};
    DIR *dev = opendir("/dev");
    if (!dev) return error("opendir /dev: %s", err_name(errno));
    char seen[1024] = "";
    const char *extra = NULL;
    struct dirent *entry;
    while ((entry = readdir(dev))) {
        int known = 0;
        for (size_t i = 0; i < sizeof allowed / sizeof *allowed; i++) known |= strcmp(entry->d_name, allowed[i]) == 0;
        if (!known && !extra) extra = strdup(entry->d_name);
        if (strcmp(entry->d_name, ".") && strcmp(entry->d_name, "..")) {
            size_t used = strlen(seen);
            snprintf(seen + used, sizeof seen - used, "%s%s", used ? "," : "", entry->d_name);
        }
    }
    closedir(dev);
    if (extra) return escaped("/dev holds %s: %s", extra, seen);
    return blocked("/dev holds only %s", seen);
}

static int p_write_outside(int argc, char **argv) {
    (void)argc, (void)argv;
    static const char *const creates[] = {"/x", "/etc/x", "/usr/x", "/lib/x", "/dev/x", "/mnt/x", "/proc/x"};
    static const char *const overwrites[] = {"/etc/passwd", "/etc/hosts", "/usr/bin/node"};
    char detail[1024] = "";
    for (size_t i = 0; i < sizeof creates / sizeof *creates; i++) {
        int fd = open(creates[i], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd >= 0) {
            unlink(creates[i]);
            return escaped("created %s", creates[i]);
        }
        size_t used = strlen(detail);
        snprintf(detail + used, sizeof detail - used, "%s:%s ", creates[i], err_name(errno));
    }
    for (size_t i = 0; i < sizeof overwrites / sizeof *overwrites; i++) {
        int fd = open(overwrites[i], O_WRONLY | O_CLOEXEC);
        if (fd >= 0) return escaped("opened %s for writing", overwrites[i]);
        size_t used = strlen(detail);
        snprintf(detail + used, sizeof detail - used, "%s:%s ", overwrites[i], err_name(errno));
    }
    if (mkdir("/etc/x", 0755) == 0) return escaped("made /etc/x");
    size_t used = strlen(detail);
    snprintf(detail + used, sizeof detail - used, "mkdir /etc/x:%s", err_name(errno));
    return blocked("%s", detail);
}

/* Copies this program into `directory` as an executable file; returns its path. */
static const char *copy_self(const char *directory, char *path, size_t size) {
    snprintf(path, size, "%s/secure-exec-probe-copy-%d", directory, (int)getpid());
    int from = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    int to = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    if (from < 0 || to < 0) return NULL;
    char buffer[65536];
    for (;;) {
        ssize_t got = read(from, buffer, sizeof buffer);
        if (got < 0) return NULL;
        if (got == 0) break;
        if (write(to, buffer, (size_t)got) != got) return NULL;
    }
    close(from);
    if (fchmod(to, 0755) != 0 || close(to) != 0) return NULL;
    return path;
}

/* The writable areas are noexec: a program the guest writes there must not run. */
static int exec_in(const char *directory) {
    char path[256];
    if (!copy_self(directory, path, sizeof path)) return error("copying the probe to %s: %s", directory, err_name(errno));
    char *args[] = {path, "exec-succeeded", (char *)probe, NULL};
    char *env[] = {NULL};
    execve(path, args, env);
    int err = errno;
    unlink(path);
    if (err == EACCES) return blocked("execve of a file written to %s: EACCES", directory);
    return error("execve of a file written to %s: %s (expected EACCES)", directory, err_name(err));
}

static int p_exec_tmp(int argc, char **argv) { (void)argc, (void)argv; return exec_in("/tmp"); }
static int p_exec_workspace(int argc, char **argv) { (void)argc, (void)argv; return exec_in("/workspace"); }

static int p_mmap_exec_tmp(int argc, char **argv) {
    (void)argc, (void)argv;
    char path[256];
    if (!copy_self("/tmp", path, sizeof path)) return error("copying the probe to /tmp: %s", err_name(errno));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    unlink(path);
    if (fd < 0) return error("open %s: %s", path, err_name(errno));
    void *mapped = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
    if (mapped == MAP_FAILED) return blocked("mmap PROT_EXEC of a file in /tmp: %s", err_name(errno));
    return escaped("mapped a file from /tmp executable");
}

/* Reached only through execve in exec_in: the exec worked. */
static int p_exec_succeeded(int argc, char **argv) {
    if (argc >= 1) probe = argv[0];
    return escaped("executed a file written to a writable area");
}

/* ---- resources ---- */

static int p_fd_census(int argc, char **argv) {
    (void)argc, (void)argv;
    DIR *listing = opendir("/proc/self/fd");
    if (!listing) return error("opendir /proc/self/fd: %s", err_name(errno));
    int own = dirfd(listing);
    char fds[512] = "";
    int expected = 0, unexpected = 0;
    struct dirent *entry;
    while ((entry = readdir(listing))) {
        if (entry->d_name[0] == '.') continue;
        int fd = atoi(entry->d_name);
        if (fd == own) continue;
        char target[256] = "?";
        char link[64];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t length = readlink(link, target, sizeof target - 1);
        if (length >= 0) target[length] = 0;
        size_t used = strlen(fds);
        snprintf(fds + used, sizeof fds - used, "%s%d->%s", used ? "," : "", fd, target);
        if (fd <= 2) expected++;
        else unexpected++;
    }
    closedir(listing);
    if (unexpected || expected != 3) return escaped("open descriptors: %s", fds);
    return blocked("only 0, 1, 2 are open: %s", fds);
}

/* Forks until fork fails, each child pausing; then kills them all. */
static int p_forkbomb(int argc, char **argv) {
    (void)argc, (void)argv;
    enum { cap = 4096 };
    static pid_t children[cap];
    int count = 0, err = 0;
    pid_t parent = getpid();
    while (count < cap) {
        pid_t pid = fork();
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent) _exit(0);
            for (;;) pause();
        }
        if (pid < 0) {
            err = errno;
            break;
        }
        children[count++] = pid;
    }
    for (int i = 0; i < count; i++) kill(children[i], SIGKILL);
    for (int i = 0; i < count; i++) waitpid(children[i], NULL, 0);
    if (count == cap) return escaped("forked %d children without fork ever failing", count);
    return blocked("forked %d children, then fork failed: %s", count, err_name(err));
}

/* ---- other system call entry points ---- */

/* Runs `attempt` in a child and reports how the child ended. */
static int judge_foreign_entry(void (*attempt)(void), const char *what) {
    pid_t pid = fork();
    if (pid < 0) return error("fork: %s", err_name(errno));
    if (pid == 0) {
        attempt();
        _exit(99);
    }
    int status;
    if (waitpid(pid, &status, 0) < 0) return error("waitpid: %s", err_name(errno));
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS) return blocked("%s: killed by SIGSYS", what);
    if (WIFSIGNALED(status)) return blocked("%s: killed by signal %d", what, WTERMSIG(status));
    int code = WEXITSTATUS(status);
    if (code == 1) return blocked("%s: EPERM", what);
    if (code == 2) return blocked("%s: ENOSYS (no such entry point)", what);
    if (code == 3) return escaped("%s: returned another error", what);
    return escaped("%s ran (exit %d)", what, code);
}

/* i386 getpid (20) through int 0x80: a filter written for x86_64 must not let
 * the 32-bit table through. */
static void int80_getpid(void) {
    long result;
    __asm__ volatile("int $0x80" : "=a"(result) : "a"(20L) : "memory");
    _exit(result == -EPERM ? 1 : result == -ENOSYS ? 2 : result < 0 ? 3 : 0);
}

static int p_int80(int argc, char **argv) {
    (void)argc, (void)argv;
    return judge_foreign_entry(int80_getpid, "i386 getpid via int 0x80");
}

static void x32_getpid(void) {
    long result = syscall(__X32_SYSCALL_BIT | SYS_getpid);
    _exit(result == -1 && errno == EPERM ? 1 : result == -1 && errno == ENOSYS ? 2 : result < 0 ? 3 : 0);
}

static int p_x32(int argc, char **argv) {
    (void)argc, (void)argv;
    return judge_foreign_entry(x32_getpid, "x32 getpid");
}

/* ---- table ---- */

struct probe_entry {
    const char *name;
    int (*run)(int argc, char **argv);
};

static const struct probe_entry probes[] = {
    {"mount_tmpfs", p_mount_tmpfs},
    {"mount_cgroup2", p_mount_cgroup2},
    {"mount_cgroup1", p_mount_cgroup1},
    {"mount_bind_remount", p_mount_bind_remount},
    {"umount2", p_umount2},
    {"fsopen", p_fsopen},
    {"open_tree", p_open_tree},
    {"unshare_user", p_unshare_user},
    {"unshare_mnt", p_unshare_mnt},
    {"unshare_net", p_unshare_net},
    {"unshare_pid", p_unshare_pid},
    {"unshare_ipc", p_unshare_ipc},
    {"unshare_uts", p_unshare_uts},
    {"unshare_cgroup", p_unshare_cgroup},
    {"unshare_time", p_unshare_time},
    {"setns_net", p_setns_net},
    {"pivot_root", p_pivot_root},
    {"chroot", p_chroot},
    {"clone_newuser", p_clone_newuser},
    {"clone_newns", p_clone_newns},
    {"clone3", p_clone3},
    {"ptrace_init", p_ptrace_init},
    {"ptrace_sibling", p_ptrace_sibling},
    {"ptrace_traceme", p_ptrace_traceme},
    {"process_vm_readv_init", p_process_vm_readv_init},
    {"process_vm_readv_sibling", p_process_vm_readv_sibling},
    {"kcmp", p_kcmp},
    {"pidfd_getfd", p_pidfd_getfd},
    {"proc1_mem", p_proc1_mem},
    {"proc1_exe_rdwr", p_proc1_exe_rdwr},
    {"self_exe_rdwr", p_self_exe_rdwr},
    {"parent_exe_rdwr", p_parent_exe_rdwr},
    {"kill_init", p_kill_init},
    {"pidfd_kill_init", p_pidfd_kill_init},
    {"setsid_kill_outside", p_setsid_kill_outside},
    {"setsid_tiocsti", p_setsid_tiocsti},
    {"socket_raw", p_socket_raw},
    {"socket_raw_inet6", p_socket_raw_inet6},
    {"socket_packet", p_socket_packet},
    {"netlink_audit", p_netlink_audit},
    {"netlink_uevent", p_netlink_uevent},
    {"socket_families", p_socket_families},
    {"bpf", p_bpf},
    {"perf_event_open", p_perf_event_open},
    {"keyctl", p_keyctl},
    {"add_key", p_add_key},
    {"request_key", p_request_key},
    {"userfaultfd", p_userfaultfd},
    {"io_uring_setup", p_io_uring_setup},
    {"kexec_load", p_kexec_load},
    {"kexec_file_load", p_kexec_file_load},
    {"init_module", p_init_module},
    {"finit_module", p_finit_module},
    {"delete_module", p_delete_module},
    {"open_by_handle_at", p_open_by_handle_at},
    {"name_to_handle_at", p_name_to_handle_at},
    {"reboot", p_reboot},
    {"swapon", p_swapon},
    {"swapoff", p_swapoff},
    {"acct", p_acct},
    {"settimeofday", p_settimeofday},
    {"clock_settime", p_clock_settime},
    {"adjtimex", p_adjtimex},
    {"syslog", p_syslog},
    {"personality_bsd", p_personality_bsd},
    {"personality_0x0008", p_personality_0x0008},
    {"personality_no_aslr", p_personality_no_aslr},
    {"ioctl_tiocsti", p_ioctl_tiocsti},
    {"ioctl_tiocsti_high_bits", p_ioctl_tiocsti_high_bits},
    {"ioctl_tioclinux", p_ioctl_tioclinux},
    {"iopl", p_iopl},
    {"ioperm", p_ioperm},
    {"modify_ldt", p_modify_ldt},
    {"mknod", p_mknod},
    {"mkfifo", p_mkfifo},
    {"fchmodat_setgid", p_fchmodat_setgid},
    {"fchmodat2_setuid", p_fchmodat2_setuid},
    {"fchmod_high_bits", p_fchmod_high_bits},
    {"create_setuid", p_create_setuid},
    {"tmpfile_setuid", p_tmpfile_setuid},
    {"openat2", p_openat2},
    {"renameat2_whiteout", p_renameat2_whiteout},
    {"fcntl_setlease", p_fcntl_setlease},
    {"fcntl_setlease_high_bits", p_fcntl_setlease_high_bits},
    {"setuid", p_setuid},
    {"setresuid", p_setresuid},
    {"setgid", p_setgid},
    {"setgroups", p_setgroups},
    {"capset_raise", p_capset_raise},
    {"rlimit_raise", p_rlimit_raise},
    {"sethostname", p_sethostname},
    {"capabilities", p_capabilities},
    {"whoami", p_whoami},
    {"proc_sys_hostname", p_proc_sys_hostname},
    {"proc_sys_core_pattern", p_proc_sys_core_pattern},
    {"sysrq_trigger", p_sysrq_trigger},
    {"kcore", p_kcore},
    {"sys_census", p_sys_census},
    {"cgroup_view_write", p_cgroup_view_write},
    {"dev_census", p_dev_census},
    {"write_outside", p_write_outside},
    {"exec_tmp", p_exec_tmp},
    {"exec_workspace", p_exec_workspace},
    {"mmap_exec_tmp", p_mmap_exec_tmp},
    {"fd_census", p_fd_census},
    {"forkbomb", p_forkbomb},
    {"int80", p_int80},
    {"x32", p_x32},
};

/* True when we are root without a seccomp filter: on a host, not in a sandbox. */
static int unconfined_root(void) {
    if (geteuid() != 0) return 0;
    const char *status = read_status();
    return !status || strcmp(status_field(status, "Seccomp"), "0") == 0;
}

int main(int argc, char **argv) {
    probe = argc > 1 ? argv[1] : "?";
    if (argc < 2) {
        fprintf(stderr, "usage: secure-exec-probe <probe> [args] | list\n");
        return 2;
    }
    if (strcmp(argv[1], "list") == 0) {
        for (size_t i = 0; i < sizeof probes / sizeof *probes; i++) printf("%s\n", probes[i].name);
        return 0;
    }
    if (strcmp(argv[1], "exec-succeeded") == 0) return p_exec_succeeded(argc - 2, argv + 2);
    for (size_t i = 0; i < sizeof probes / sizeof *probes; i++) {
        if (strcmp(argv[1], probes[i].name) != 0) continue;
        if (unconfined_root()) return error("refusing to run as root without a seccomp filter (not in a sandbox)");
        return probes[i].run(argc - 2, argv + 2);
    }
    return error("no such probe (try `list`)");
}
