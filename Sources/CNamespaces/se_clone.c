#define _GNU_SOURCE
#include "se_clone.h"
#include "se_cleanup.h"
#include "se_protocol.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <linux/close_range.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif

/* Async-signal-safe: reports (step, errno) to the parent and ends the child. */
static void child_fail(int error_fd, int step) {
    int report[2] = {step, errno};
    ssize_t ignored = write(error_fd, report, sizeof report);
    (void)ignored;
    syscall(SYS_exit_group, 127);
    __builtin_unreachable();
}

/*
 * The child's whole life before exec. Runs in a copy of a multithreaded
 * process: only raw syscalls here, no malloc, no locks, no libc wrappers
 * that touch glibc's thread list (setresuid & co. would broadcast to threads
 * that do not exist in this process, hence SYS_ calls).
 */
/* Closes every descriptor but the `count` in `keep` (async-signal-safe). */
static void close_all_but(const int *keep, int count) {
    int sorted[8];
    for (int i = 0; i < count; i++) {
        int value = keep[i], j = i;
        for (; j > 0 && sorted[j - 1] > value; j--) sorted[j] = sorted[j - 1];
        sorted[j] = value;
    }
    unsigned int next = 0;
    for (int i = 0; i < count; i++) {
        if (sorted[i] < 0) continue;
        if ((unsigned int)sorted[i] > next) syscall(SYS_close_range, next, (unsigned int)sorted[i] - 1, 0);
        next = (unsigned int)sorted[i] + 1;
    }
    syscall(SYS_close_range, next, ~0U, 0);
}

static void child_main(int init_fd, int control_fd, int null_fd, int sync_rd, int error_wr) {
    /* The host's descriptors are copies the child must not hold: the
     * release socket's other end (so a supervisor that dies before the
     * release gives EOF, not a child blocked for ever) and the uid lease's
     * flock among them. */
    const int keep[] = {init_fd, control_fd, null_fd, sync_rd, error_wr};
    close_all_but(keep, 5);
    char released;
    ssize_t got = SE_RETRY_EINTR(read(sync_rd, &released, 1));
    /* EOF without a byte means the parent gave up; so do we. */
    if (got != 1) child_fail(error_wr, SE_CHILD_STEP_WAIT);

    /* The maps are written: become root of the new user namespace so that
     * exec keeps the namespace's capabilities for init. */
    if (syscall(SYS_setresgid, 0, 0, 0) != 0) child_fail(error_wr, SE_CHILD_STEP_SETGID);
    if (syscall(SYS_setgroups, 0, NULL) != 0) child_fail(error_wr, SE_CHILD_STEP_SETGROUPS);
    if (syscall(SYS_setresuid, 0, 0, 0) != 0) child_fail(error_wr, SE_CHILD_STEP_SETUID);

    /* Lay out init's descriptors: 0-2 null, 3 control. First lift every
     * descriptor we still need above the low numbers, so laying out 0-3
     * cannot overwrite one of them (the host may hold anything at 0-3).
     * The copies are close-on-exec; the error pipe must survive until exec. */
    int high = 64;
    error_wr = fcntl(error_wr, F_DUPFD_CLOEXEC, high);
    if (error_wr < 0) syscall(SYS_exit_group, 126);
    init_fd = fcntl(init_fd, F_DUPFD_CLOEXEC, high);
    if (init_fd < 0) child_fail(error_wr, SE_CHILD_STEP_DUP);
    control_fd = fcntl(control_fd, F_DUPFD_CLOEXEC, high);
    if (control_fd < 0) child_fail(error_wr, SE_CHILD_STEP_DUP);
    null_fd = fcntl(null_fd, F_DUPFD_CLOEXEC, high);
    if (null_fd < 0) child_fail(error_wr, SE_CHILD_STEP_DUP);
    if (dup2(control_fd, SE_CONTROL_FD) < 0) child_fail(error_wr, SE_CHILD_STEP_DUP);
    for (int fd = 0; fd < 3; fd++) {
        if (dup2(null_fd, fd) < 0) child_fail(error_wr, SE_CHILD_STEP_DUP);
    }
    /* Anything the host had open beyond 3 must not reach init: mark it all
     * close-on-exec (closing would also close init_fd and the error pipe). */
    if (syscall(SYS_close_range, SE_CONTROL_FD + 1, ~0U, CLOSE_RANGE_CLOEXEC) != 0)
        child_fail(error_wr, SE_CHILD_STEP_CLOSE_RANGE);

    static char *const argv[] = {"secure-exec-init", NULL};
    static char *const envp[] = {NULL};
    syscall(SYS_execveat, init_fd, "", argv, envp, AT_EMPTY_PATH);
    child_fail(error_wr, SE_CHILD_STEP_EXEC);
}

/* What the cloning thread needs and what it hands back. */
struct clone_job {
    struct clone_args *args;
    uid_t owner_uid;
    gid_t owner_gid;
    int init_fd, control_fd, null_fd, sync_rd, error_wr;
    long pid;
    int err;
};

/*
 * Runs on a short-lived pthread of its own, because it changes credentials:
 * the raw setres*id calls below change only this thread (glibc's wrappers
 * would change every thread of the process). The new user namespace belongs
 * to the euid of the thread that creates it, and the kernel charges every
 * per-user count inside it (inotify instances and watches, user namespaces,
 * pending signals) to that owner on the host. So the namespace is created
 * with euid and egid set to the sandbox's own host ids: a guest can use up
 * only its own sandbox's share, never root's or another sandbox's.
 * The fs ids stay root's, so CLONE_INTO_CGROUP can still write cgroup.procs.
 */
static void *clone_on_own_thread(void *context) {
    struct clone_job *job = context;
    job->pid = -1;
    /* Nothing may run on this thread with its borrowed identity. */
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    if (syscall(SYS_setresgid, -1, job->owner_gid, -1) != 0 || syscall(SYS_setresuid, -1, job->owner_uid, -1) != 0) {
        job->err = errno;
        return NULL;
    }
    syscall(SYS_setfsuid, 0);
    syscall(SYS_setfsgid, 0);
    /* A nonzero euid emptied the effective set; the permitted set is intact
     * (the real and saved uids are still 0). Raise it again, so the kernel
     * (and LSMs such as AppArmor's userns restriction) see a privileged
     * caller; the namespace's owner is the euid all the same. */
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &header, data) == 0) {
        data[0].effective = data[0].permitted;
        data[1].effective = data[1].permitted;
        syscall(SYS_capset, &header, data);
    }
    long pid = syscall(SYS_clone3, job->args, sizeof *job->args);
    if (pid == 0) {
        child_main(job->init_fd, job->control_fd, job->null_fd, job->sync_rd, job->error_wr);
    }
    job->pid = pid;
    job->err = errno;
    return NULL;
}

int se_clone_sandbox(int init_fd, int control_fd, int null_fd, int cgroup_fd, uid_t owner_uid, gid_t owner_gid,
                     pid_t *pid_out, int *pidfd_out, int *sync_fd_out, int *error_fd_out) {
    /* The release channel is a socket pair, not a pipe: the parent sends with
     * MSG_NOSIGNAL, so a child that died before its release cannot raise
     * SIGPIPE in the host. */
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) return -1;
    SE_CLEANUP_FD int sync_rd = pair[0];
    SE_CLEANUP_FD int sync_wr = pair[1];
    if (pipe2(pair, O_CLOEXEC) != 0) return -1;
    SE_CLEANUP_FD int error_rd = pair[0];
    SE_CLEANUP_FD int error_wr = pair[1];

    int pidfd = -1;
    struct clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = CLONE_PIDFD | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET |
                 CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP;
    args.pidfd = (uint64_t)(uintptr_t)&pidfd;
    args.exit_signal = SIGCHLD;
    if (cgroup_fd >= 0) {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)cgroup_fd;
    }

    struct clone_job job = {
        .args = &args, .owner_uid = owner_uid, .owner_gid = owner_gid, .init_fd = init_fd,
        .control_fd = control_fd, .null_fd = null_fd, .sync_rd = sync_rd, .error_wr = error_wr,
        .pid = -1, .err = 0,
    };
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setstacksize(&attributes, 256 * 1024);
    /* Changing a thread's euid makes the whole process non-dumpable; the
     * embedding program keeps its own setting. */
    int dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
    pthread_t thread;
    int created = pthread_create(&thread, &attributes, clone_on_own_thread, &job);
    pthread_attr_destroy(&attributes);
    if (created == 0) {
        pthread_join(thread, NULL);
    } else {
        job.err = created;
    }
    if (dumpable >= 0) prctl(PR_SET_DUMPABLE, dumpable, 0, 0, 0);
    /* The child's ends (sync_rd, error_wr) are closed on return either way;
     * ours are handed out only on success. */
    if (job.pid < 0) {
        errno = job.err;
        return -1;
    }
    *pid_out = (pid_t)job.pid;
    *pidfd_out = pidfd;
    *sync_fd_out = se_take_fd(&sync_wr);
    *error_fd_out = se_take_fd(&error_rd);
    return 0;
}

static int write_file(const char *path, const char *text) {
    SE_CLEANUP_FD int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t length = strlen(text);
    ssize_t written = SE_RETRY_EINTR(write(fd, text, length));
    if (written < 0) return -1;
    if (written != (ssize_t)length) {
        errno = EIO;
        return -1;
    }
    return 0;
}

int se_write_id_maps(pid_t pid, unsigned inside, unsigned outside, unsigned count, const char **failed_file) {
    char path[64], line[64];
    snprintf(line, sizeof line, "%u %u %u\n", inside, outside, count);
    snprintf(path, sizeof path, "/proc/%d/uid_map", (int)pid);
    if (write_file(path, line) != 0) {
        *failed_file = "uid_map";
        return -1;
    }
    snprintf(path, sizeof path, "/proc/%d/gid_map", (int)pid);
    if (write_file(path, line) != 0) {
        *failed_file = "gid_map";
        return -1;
    }
    return 0;
}

int se_release_sandbox(int sync_fd, int error_fd, int *step_out, int *errno_out) {
    SE_CLEANUP_FD int release = sync_fd;
    SE_CLEANUP_FD int reports = error_fd;
    char go = 1;
    ssize_t sent = SE_RETRY_EINTR(send(release, &go, 1, MSG_NOSIGNAL));
    if (sent != 1) {
        /* The child is gone before its release: it never reached exec. */
        *step_out = SE_CHILD_STEP_WAIT;
        *errno_out = sent < 0 ? errno : EIO;
        return -1;
    }
    close(se_take_fd(&release));

    int report[2];
    size_t have = 0;
    while (have < sizeof report) {
        ssize_t got = SE_RETRY_EINTR(read(reports, (char *)report + have, sizeof report - have));
        if (got <= 0) break;
        have += (size_t)got;
    }
    if (have == 0) return 0; /* EOF: exec closed the close-on-exec write end */
    if (have == sizeof report) {
        *step_out = report[0];
        *errno_out = report[1];
    } else {
        *step_out = SE_CHILD_STEP_EXEC;
        *errno_out = EIO;
    }
    return -1;
}

const char *se_child_step_name(int step) {
    switch (step) {
    case SE_CHILD_STEP_WAIT: return "wait for id maps";
    case SE_CHILD_STEP_SETGID: return "setresgid";
    case SE_CHILD_STEP_SETUID: return "setresuid";
    case SE_CHILD_STEP_SETGROUPS: return "setgroups";
    case SE_CHILD_STEP_DUP: return "dup2";
    case SE_CHILD_STEP_CLOSE_RANGE: return "close_range";
    default: return "execveat init"; /* SE_CHILD_STEP_EXEC, and a report we cannot read */
    }
}

int se_sealed_copy(const char *path) {
    SE_CLEANUP_FD int source = open(path, O_RDONLY | O_CLOEXEC);
    if (source < 0) return -1;
    struct stat info;
    if (fstat(source, &info) != 0) return -1;
    SE_CLEANUP_FD int copy = memfd_create("secure-exec-init", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (copy < 0) return -1;
    off_t offset = 0;
    while (offset < info.st_size) {
        ssize_t moved = SE_RETRY_EINTR(sendfile(copy, source, &offset, (size_t)(info.st_size - offset)));
        if (moved <= 0) {
            if (moved == 0) errno = EIO;
            return -1;
        }
    }
    /* Sealed so nobody (not even a compromised host thread) can rewrite the
     * program that becomes every sandbox's PID 1. */
    if (fchmod(copy, 0555) != 0) return -1;
    if (fcntl(copy, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) return -1;
    return se_take_fd(&copy);
}
