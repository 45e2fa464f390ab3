#ifndef SE_CLONE_H
#define SE_CLONE_H

#include <sys/types.h>

/*
 * Starts a sandbox's init in new user, pid, mount, network, ipc, uts and
 * cgroup namespaces with clone3(CLONE_PIDFD).
 *
 * Between clone3 and exec the child runs only async-signal-safe syscalls: it
 * waits until the parent has written its uid/gid maps (se_release_sandbox),
 * becomes root of the new user namespace, moves control_fd to SE_CONTROL_FD,
 * points 0-2 at null_fd, marks every other descriptor close-on-exec and
 * executes init_fd (an executable memfd) with execveat(AT_EMPTY_PATH). A
 * failure there is written as two ints (step, errno) to the error pipe.
 *
 * With cgroup_fd >= 0 (a cgroup v2 directory) the child starts in that
 * cgroup (CLONE_INTO_CGROUP), so nothing it runs is ever outside it.
 *
 * The new user namespace is owned by owner_uid:owner_gid (the sandbox's own
 * unprivileged host ids), not by root: the kernel charges per-user counts
 * made inside the sandbox (inotify, pending signals, ...) to its owner.
 *
 * On success returns 0 and fills *pid_out, *pidfd_out, *sync_fd_out (write end
 * of the release pipe) and *error_fd_out (read end of the error pipe). On
 * failure returns -1 with errno set and nothing to close.
 */
int se_clone_sandbox(int init_fd, int control_fd, int null_fd, int cgroup_fd,
                     uid_t owner_uid, gid_t owner_gid,
                     pid_t *_Nonnull pid_out, int *_Nonnull pidfd_out,
                     int *_Nonnull sync_fd_out, int *_Nonnull error_fd_out);

/*
 * Writes "<inside> <outside> <count>" to /proc/<pid>/uid_map and gid_map.
 * Returns 0, or -1 with errno and *_Nonnull failed_file naming the map.
 */
int se_write_id_maps(pid_t pid, unsigned inside, unsigned outside, unsigned count,
                     const char *_Nullable *_Nonnull failed_file);

/*
 * Lets the cloned child go on to exec, then reports how that went: returns 0
 * when exec succeeded (the error pipe hit EOF), or -1 with *step_out (one of
 * the SE_CHILD_STEP_* values) and *errno_out when the child failed first.
 * Closes both descriptors. Blocks until the child execs or dies.
 */
int se_release_sandbox(int sync_fd, int error_fd, int *_Nonnull step_out, int *_Nonnull errno_out);

enum se_child_step {
    SE_CHILD_STEP_WAIT = 1,
    SE_CHILD_STEP_SETGID = 2,
    SE_CHILD_STEP_SETUID = 3,
    SE_CHILD_STEP_SETGROUPS = 4,
    SE_CHILD_STEP_DUP = 5,
    SE_CHILD_STEP_CLOSE_RANGE = 6,
    SE_CHILD_STEP_EXEC = 7,
};

/*
 * The name of a SE_CHILD_STEP_* value as errors show it ("wait for id maps",
 * "setresgid", "setresuid", "setgroups", "dup2", "close_range", "execveat init").
 * SE_CHILD_STEP_EXEC and any unknown value give "execveat init". The string
 * is static; never free it.
 */
const char *_Nonnull se_child_step_name(int step);

/* Creates a sealed, executable, close-on-exec memfd holding a copy of the file at path. -1/errno on failure. */
int se_sealed_copy(const char *_Nonnull path);

#endif
