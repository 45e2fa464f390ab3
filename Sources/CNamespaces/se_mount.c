#define _GNU_SOURCE
#include "se_mount.h"
#include "se_cleanup.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

int se_open_no_symlinks(const char *path) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = O_PATH | O_CLOEXEC;
    how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    return (int)syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof how);
}

int se_open_in_root(int root, const char *path) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = O_PATH | O_CLOEXEC;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    return (int)syscall(SYS_openat2, root, path, &how, sizeof how);
}

int se_detached_mount(int source, uint64_t attributes, int recursive, int idmap_userns, const char **step) {
    unsigned flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0);
    SE_CLEANUP_FD int tree = (int)syscall(SYS_open_tree, source, "", flags);
    if (tree < 0) {
        *step = "open_tree";
        return -1;
    }
    struct mount_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.attr_set = attributes;
    if (idmap_userns >= 0) {
        attr.attr_set |= MOUNT_ATTR_IDMAP;
        attr.userns_fd = (uint64_t)idmap_userns;
    }
    if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &attr, sizeof attr) != 0) {
        *step = idmap_userns >= 0 ? "mount_setattr idmap" : "mount_setattr";
        return -1;
    }
    return se_take_fd(&tree);
}

static int write_map(pid_t pid, const char *name, unsigned inside, unsigned outside) {
    char path[64], line[64];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
    int length = snprintf(line, sizeof line, "%u %u 1\n", inside, outside);
    SE_CLEANUP_FD int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t written = SE_RETRY_EINTR(write(fd, line, (size_t)length));
    if (written < 0) return -1;
    if (written != length) {
        errno = EIO;
        return -1;
    }
    return 0;
}

int se_idmap_userns(uid_t fs_uid, gid_t fs_gid, uid_t host_uid, gid_t host_gid, const char **step) {
    int hold[2];
    if (pipe2(hold, O_CLOEXEC) != 0) {
        *step = "pipe2";
        return -1;
    }
    int pidfd = -1;
    struct clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = CLONE_NEWUSER | CLONE_PIDFD;
    args.pidfd = (uint64_t)(uintptr_t)&pidfd;
    args.exit_signal = 0; /* nobody else's waitpid(-1) may reap it */
    long pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid == 0) {
        /* The child of a multithreaded process: raw syscalls only. It lives
         * until the parent closes the pipe, so its namespace can be opened. */
        /* Close every inherited descriptor but our end of the pipe: another
         * thread's concurrent call may have a pipe whose EOF its helper waits
         * for, and O_CLOEXEC does nothing here since we never exec. */
        char byte;
        if (hold[0] > 0) syscall(SYS_close_range, 0, hold[0] - 1, 0);
        syscall(SYS_close_range, hold[0] + 1, ~0U, 0);
        SE_RETRY_EINTR(syscall(SYS_read, hold[0], &byte, 1));
        syscall(SYS_exit_group, 0);
        __builtin_unreachable();
    }
    close(hold[0]);
    if (pid < 0) {
        int saved = errno;
        close(hold[1]);
        errno = saved;
        *step = "clone3 idmap namespace";
        return -1;
    }
    int result = -1;
    if (write_map((pid_t)pid, "uid_map", fs_uid, host_uid) != 0) {
        *step = "write idmap uid_map";
    } else if (write_map((pid_t)pid, "gid_map", fs_gid, host_gid) != 0) {
        *step = "write idmap gid_map";
    } else {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/ns/user", (int)pid);
        result = open(path, O_RDONLY | O_CLOEXEC);
        if (result < 0) *step = "open idmap namespace";
    }
    int saved = errno;
    close(hold[1]);
    siginfo_t info;
    SE_RETRY_EINTR(syscall(SYS_waitid, P_PIDFD, pidfd, &info, WEXITED | __WALL, NULL));
    close(pidfd);
    errno = saved;
    return result;
}
