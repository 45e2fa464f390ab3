/*
 * secure-exec-init: PID 1 of a SecureExec sandbox.
 *
 * Started by the supervisor with clone3 in fresh namespaces, already root of
 * its user namespace, with the control socket on fd 3. It builds the guest's
 * root, brings up loopback, answers READY, then spawns, signals and reaps
 * guests on request until the control socket closes, when it exits and the
 * kernel ends every process of the sandbox with it.
 *
 * Single-threaded on purpose: it can fork guests and run any libc there.
 */
#ifndef SECURE_EXEC_INIT_H
#define SECURE_EXEC_INIT_H

#include <stddef.h>
#include <signal.h>
#include <sys/types.h>

#include "se_protocol.h"
/* CNamespaces' private helpers (SE_CLEANUP_FD, se_take_fd, SE_RETRY_EINTR):
 * one definition for both C targets, kept out of the headers Swift imports. */
#include "../CNamespaces/se_cleanup.h"

#define GUEST_ROOT_WORKSPACE "/workspace"

/* A detached mount from the supervisor (open_tree) and where it goes. */
struct bind_mount {
    char *guest_path;
    int fd;
};

/* What /workspace is: a fresh tmpfs, or the caller's project (a detached
 * mount from the supervisor) under a private writable layer or as it is. */
enum workspace_mode {
    WORKSPACE_TMPFS = 0,
    WORKSPACE_OVERLAY = 1,
    WORKSPACE_BIND = 2,
};

/* A symlink init makes in the guest's root (busybox's applets, npm's commands,
 * the host's /bin -> usr/bin): both strings come from the supervisor. */
struct root_symlink {
    char *guest_path;
    char *target;
};

struct init_config {
    /* The root's read-only base (an operator's root filesystem, a detached
     * mount from the supervisor), under SecureExec's own layer; -1 when the
     * root is a plain tmpfs. */
    int base_fd;
    struct root_symlink *symlinks;
    size_t symlink_count;
    enum workspace_mode workspace_mode;
    int workspace_fd; /* the project's detached mount, or -1 */
    unsigned long long workspace_bytes;
    unsigned long long tmp_bytes;
    int network_allowed;
    int child_process_allowed;
    unsigned guest_uid;
    unsigned guest_gid;
    char *hostname;
    char *localtime; /* the target of the guest's /etc/localtime symlink, or NULL */
    char *nameserver; /* egress: the address /etc/resolv.conf names, or NULL (names resolve from /etc/hosts only) */
    struct bind_mount *binds;
    size_t bind_count;
    int rootfs_fd; /* the rootfs/ skeleton, opened by the supervisor */
    /* A pidfd of the supervisor process: readable once it has exited, even
     * if a stray fork of it still holds our control socket. */
    int supervisor_pidfd;
    char **sysctls; /* "name value" pairs: name below /proc/sys, set in the sandbox's own namespaces */
    size_t sysctl_count;
    char **writable; /* roots of the areas file operations may touch */
    int *writable_fds; /* each root opened (O_PATH) right after the root was built */
    size_t writable_count;
    unsigned file_timeout_seconds; /* a file helper still running then ends itself */
    int *received_fds; /* the config request's descriptors after rootfs_fd */
    size_t received_count;
    size_t received_used; /* how many of them records have claimed, in order */
};

/* Where setup failed: reported to the supervisor in SE_EV_SETUP_FAILED. */
struct failure {
    const char *step;
    int err;
};

/* Records `step` and the current errno in *failure; returns -1. */
int fail(struct failure *failure, const char *step);

/* Parses one request's "key=value\0" records; calls visit for each. */
int each_record(const char *payload, size_t length,
                int (*visit)(void *context, const char *key, const char *value), void *context);

int parse_config(const char *payload, size_t length, int *fds, size_t fd_count, struct init_config *config,
                 struct failure *failure);

/* rootfs.c: builds the guest's root and pivots into it. */
int build_guest_root(const struct init_config *config, struct failure *failure);

/* fileops.c: opens every writable area's root once, before any guest runs, so
 * a guest that later renames directories or plants symlinks above an area
 * cannot change what file operations act on. */
int open_writable_areas(struct init_config *config, struct failure *failure);

/* loopback.c: brings `lo` up (the kernel then adds 127.0.0.1 and ::1). */
int bring_up_loopback(struct failure *failure);

/* seccomp_policy.c: the filter every guest gets; built once, loaded per guest. */
int prepare_guest_filter(const struct init_config *config, struct failure *failure);
int load_guest_filter(void);

/* guest.c */

/* The fd number a guest's program is exec'd from (execveat AT_EMPTY_PATH). */
#define GUEST_EXEC_FD 3

struct guest_rlimit {
    int resource;
    unsigned long long soft;
    unsigned long long hard;
};

struct spawn_request {
    char **argv;
    char **envp;
    const char *executable;
    const char *cwd;
    const char *entry_path; /* where to write the code memfd, or NULL */
    int stdio[3];
    int code_fd; /* -1 when none */
    const struct guest_rlimit *rlimits;
    size_t rlimit_count;
};
/* Forks and execs a guest; returns its pid, or -1 with *failure set. */
pid_t spawn_guest(const struct init_config *config, const struct spawn_request *request,
                  struct failure *failure);

/* fileops.c: one file operation in a child that has become the guest. */
pid_t start_file_operation(const struct init_config *config, const char *operation, const char *path, int data,
                           struct failure *failure);

#endif
