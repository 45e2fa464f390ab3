#define _GNU_SOURCE
#include "cphases.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

int64_t cphases_monotonic_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

int64_t cphases_realtime_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

/* What the child sends back: its timestamps, or the step that failed. */
struct child_report {
    int64_t released, loopback, mounts, pivot;
    int failed_step, failed_errno;
};

static void child_send(int fd, struct child_report *report) {
    ssize_t ignored = write(fd, report, sizeof *report);
    (void)ignored;
    syscall(SYS_exit_group, report->failed_step == 0 ? 0 : 1);
    __builtin_unreachable();
}

static void child_fail(int fd, struct child_report *report, int step) {
    report->failed_step = step;
    report->failed_errno = errno;
    child_send(fd, report);
}

static int loopback_up(void) {
    int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sock < 0) return -1;
    struct ifreq request;
    memset(&request, 0, sizeof request);
    memcpy(request.ifr_name, "lo", 3);
    int result = ioctl(sock, SIOCGIFFLAGS, &request);
    if (result == 0) {
        request.ifr_flags |= IFF_UP;
        result = ioctl(sock, SIOCSIFFLAGS, &request);
    }
    int saved = errno;
    close(sock);
    errno = saved;
    return result;
}

static int make_file(const char *path) {
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    close(fd);
    return 0;
}

/* Only syscalls from here to the exit: the parent is a multithreaded Swift process. */
static void child_main(const struct cphases_config *config, int sync_rd, int report_wr) {
    struct child_report report;
    memset(&report, 0, sizeof report);
    char go;
    ssize_t got;
    do {
        got = read(sync_rd, &go, 1);
    } while (got < 0 && errno == EINTR);
    if (got != 1) child_fail(report_wr, &report, CPHASES_STEP_ID_MAPS);
    if (syscall(SYS_setresgid, 0, 0, 0) != 0 || syscall(SYS_setgroups, 0, NULL) != 0 ||
        syscall(SYS_setresuid, 0, 0, 0) != 0)
        child_fail(report_wr, &report, CPHASES_STEP_CREDENTIALS);
    report.released = cphases_monotonic_ns();

    if (loopback_up() != 0) child_fail(report_wr, &report, CPHASES_STEP_LOOPBACK);
    report.loopback = cphases_monotonic_ns();

    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m") != 0)
        child_fail(report_wr, &report, CPHASES_STEP_ROOT_TMPFS);
    for (int i = 0; i < config->directory_count; i++) {
        if (mkdir(config->directories[i], 0755) != 0 && errno != EEXIST)
            child_fail(report_wr, &report, CPHASES_STEP_DIRECTORIES);
    }
    if (mount("tmpfs", "/tmp/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k") != 0 ||
        mount("tmpfs", "/tmp/workspace", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=134217728,mode=0755") != 0 ||
        mount("tmpfs", "/tmp/tmp", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=67108864,mode=1777") != 0)
        child_fail(report_wr, &report, CPHASES_STEP_ROOT_TMPFS);
    for (int i = 0; i < config->bind_count; i++) {
        if (make_file(config->bind_targets[i]) != 0 ||
            mount(config->bind_sources[i], config->bind_targets[i], NULL, MS_BIND, NULL) != 0 ||
            mount(NULL, config->bind_targets[i], NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) != 0)
            child_fail(report_wr, &report, CPHASES_STEP_BINDS);
    }
    for (int i = 0; i < config->device_count; i++) {
        if (make_file(config->device_targets[i]) != 0 ||
            mount(config->device_sources[i], config->device_targets[i], NULL, MS_BIND, NULL) != 0)
            child_fail(report_wr, &report, CPHASES_STEP_BINDS);
    }
    if (mount(NULL, "/tmp/dev", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC, NULL) != 0)
        child_fail(report_wr, &report, CPHASES_STEP_BINDS);
    if (mount("proc", "/tmp/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
        child_fail(report_wr, &report, CPHASES_STEP_PROC);
    static const char *const read_only[] = {"/tmp/proc/sys", "/tmp/proc/irq", "/tmp/proc/bus", "/tmp/proc/fs",
                                            "/tmp/proc/sysrq-trigger"};
    for (size_t i = 0; i < sizeof read_only / sizeof *read_only; i++) {
        if (access(read_only[i], F_OK) != 0) continue;
        if (mount(read_only[i], read_only[i], NULL, MS_BIND | MS_REC, NULL) != 0 ||
            mount(NULL, read_only[i], NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
            child_fail(report_wr, &report, CPHASES_STEP_PROC);
    }
    static const char *const masked[] = {"/tmp/proc/kcore", "/tmp/proc/keys", "/tmp/proc/timer_list",
                                         "/tmp/proc/sched_debug", "/tmp/proc/latency_stats", "/tmp/proc/kallsyms",
                                         "/tmp/proc/kmsg", "/tmp/proc/kpagecount", "/tmp/proc/kpageflags",
                                         "/tmp/proc/kpagecgroup"};
    for (size_t i = 0; i < sizeof masked / sizeof *masked; i++) {
        if (access(masked[i], F_OK) != 0) continue;
        if (mount("/tmp/dev/null", masked[i], NULL, MS_BIND, NULL) != 0) child_fail(report_wr, &report, CPHASES_STEP_PROC);
    }
    report.mounts = cphases_monotonic_ns();

    if (mount(NULL, "/tmp", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) != 0 ||
        chdir("/tmp") != 0 || syscall(SYS_pivot_root, ".", ".") != 0 || umount2(".", MNT_DETACH) != 0 ||
        chdir("/") != 0)
        child_fail(report_wr, &report, CPHASES_STEP_PIVOT);
    report.pivot = cphases_monotonic_ns();
    child_send(report_wr, &report);
}

static int write_text(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t length = (ssize_t)strlen(text);
    ssize_t written = write(fd, text, (size_t)length);
    int saved = errno;
    close(fd);
    errno = saved;
    return written == length ? 0 : -1;
}

static int fail(struct cphases_result *result, int step) {
    result->failed_step = step;
    result->failed_errno = errno;
    return -1;
}

int cphases_run(const struct cphases_config *config, struct cphases_result *result) {
    memset(result, 0, sizeof *result);
    int sync_pipe[2], report_pipe[2];
    if (pipe2(sync_pipe, O_CLOEXEC) != 0) return fail(result, CPHASES_STEP_PIPE);
    if (pipe2(report_pipe, O_CLOEXEC) != 0) {
        close(sync_pipe[0]);
        close(sync_pipe[1]);
        return fail(result, CPHASES_STEP_PIPE);
    }
    int pidfd = -1;
    struct clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = CLONE_PIDFD | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC |
                 CLONE_NEWUTS | CLONE_NEWCGROUP;
    args.pidfd = (uint64_t)(uintptr_t)&pidfd;
    args.exit_signal = SIGCHLD;

    result->before_clone = cphases_monotonic_ns();
    long pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid == 0) child_main(config, sync_pipe[0], report_pipe[1]);
    result->after_clone = cphases_monotonic_ns();
    int saved = errno;
    close(sync_pipe[0]);
    close(report_pipe[1]);
    if (pid < 0) {
        close(sync_pipe[1]);
        close(report_pipe[0]);
        errno = saved;
        return fail(result, CPHASES_STEP_CLONE);
    }

    char line[64], path[64];
    snprintf(line, sizeof line, "0 %u 65536\n", config->uid_base);
    snprintf(path, sizeof path, "/proc/%ld/uid_map", pid);
    int mapped = write_text(path, line);
    if (mapped == 0) {
        snprintf(path, sizeof path, "/proc/%ld/gid_map", pid);
        mapped = write_text(path, line);
    }
    int map_errno = errno;
    result->after_id_maps = cphases_monotonic_ns();
    int attached = 0;
    if (mapped == 0) {
        char pid_text[32];
        snprintf(pid_text, sizeof pid_text, "%ld", pid);
        for (int i = 0; i < config->cgroup_proc_count && attached == 0; i++) {
            attached = write_text(config->cgroup_procs[i], pid_text);
        }
        if (attached != 0) {
            map_errno = errno;
            mapped = -1;
        }
    }
    result->after_cgroups = cphases_monotonic_ns();
    /* A failed map: close the sync pipe unwritten, the child gives up on EOF. */
    if (mapped == 0) {
        char go = 1;
        ssize_t ignored = write(sync_pipe[1], &go, 1);
        (void)ignored;
    }
    close(sync_pipe[1]);

    struct child_report report;
    memset(&report, 0, sizeof report);
    size_t have = 0;
    while (have < sizeof report) {
        ssize_t got = read(report_pipe[0], (char *)&report + have, sizeof report - have);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        have += (size_t)got;
    }
    close(report_pipe[0]);

    siginfo_t info;
    int reaped;
    do {
        reaped = (int)syscall(SYS_waitid, P_PIDFD, pidfd, &info, WEXITED, NULL);
    } while (reaped < 0 && errno == EINTR);
    result->reaped = cphases_monotonic_ns();
    close(pidfd);

    if (mapped != 0) {
        errno = map_errno;
        return fail(result, attached != 0 ? CPHASES_STEP_CGROUP : CPHASES_STEP_ID_MAPS);
    }
    if (have != sizeof report) {
        errno = EIO;
        return fail(result, CPHASES_STEP_REPORT);
    }
    if (report.failed_step != 0) {
        result->failed_step = report.failed_step;
        result->failed_errno = report.failed_errno;
        return -1;
    }
    if (reaped < 0) return fail(result, CPHASES_STEP_REAP);
    result->child_released = report.released;
    result->after_loopback = report.loopback;
    result->after_mounts = report.mounts;
    result->after_pivot = report.pivot;
    return 0;
}
