#define _GNU_SOURCE
#include "init.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <linux/securebits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/*
 * A guest's path from fork to exec, in order:
 *   signals back to default, new session, stdio; resource limits (only
 *   ever lowered); drop the capability bounding set and lock securebits
 *   while we still hold CAP_SETPCAP; switch to the guest uid/gid (which
 *   empties effective and permitted); clear inheritable and ambient; then,
 *   with the guest's own credentials, chdir, open the executable (node, a
 *   shell, any program in the root or a mount: the guest's permissions
 *   apply, and a missing one fails here, named) and write the entry file (a
 *   planted symlink can only lead where the guest could go anyway);
 *   no_new_privs; seccomp; every fd but 0-2 close-on-exec; execveat the
 *   program from fd 3 (the one exec the seccomp filter allows when child
 *   processes are denied). A script (#!) cannot run from a close-on-exec
 *   descriptor (its interpreter could not open it), so on ENOENT it is
 *   exec'd by path; that needs child processes allowed, which every
 *   executable but node does.
 * A failure is written to the report pipe as (step index, errno) and, for
 * a script whose interpreter is missing, the interpreter's path.
 */

static const char *const child_steps[] = {
    "unknown", "setsid", "stdio", "chdir", "drop bounding set", "securebits", "setgroups",
    "setresgid", "setresuid", "clear capabilities", "write entry file", "no_new_privs",
    "seccomp", "close_range", "execveat", "open executable", "setrlimit", "interpreter",
};
enum {
    STEP_SETSID = 1, STEP_STDIO, STEP_CHDIR, STEP_BOUNDING, STEP_SECUREBITS, STEP_SETGROUPS,
    STEP_SETGID, STEP_SETUID, STEP_CAPS, STEP_ENTRY, STEP_NNP, STEP_SECCOMP, STEP_CLOSE_RANGE, STEP_EXEC,
    STEP_OPEN_EXE, STEP_RLIMIT, STEP_INTERPRETER,
};

/* What a child that failed before exec reports: the step, errno, and for a
 * missing interpreter its path (the supervisor names it in the error). */
struct child_report {
    int step;
    int err;
    char detail[44];
};

static void child_fail_with(int report_fd, int step, const char *detail) {
    struct child_report report = {.step = step, .err = errno};
    if (detail) strncpy(report.detail, detail, sizeof report.detail - 1);
    ssize_t ignored = write(report_fd, &report, sizeof report);
    (void)ignored;
    _exit(127);
}

static void child_fail(int report_fd, int step) { child_fail_with(report_fd, step, NULL); }

/* The interpreter named on a script's "#!" line, or 0 when it has none. */
static int read_interpreter(const char *path, char *out, size_t size) {
    SE_CLEANUP_FD int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return 0;
    char line[128];
    ssize_t got = SE_RETRY_EINTR(read(fd, line, sizeof line - 1));
    if (got < 3 || line[0] != '#' || line[1] != '!') return 0;
    line[got] = 0;
    char *start = line + 2;
    while (*start == ' ' || *start == '\t') start++;
    size_t length = strcspn(start, " \t\n");
    if (length == 0 || length >= size) return 0;
    memcpy(out, start, length);
    out[length] = 0;
    return 1;
}

static int write_entry(const char *path, int code_fd) {
    /* The path is predictable and the workspace is the guest's: whatever a
     * guest planted there (a FIFO would block this child, and init with it)
     * is removed, and the file is created afresh or not at all. */
    if (unlink(path) != 0 && errno != ENOENT) return -1;
    SE_CLEANUP_FD int out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0644);
    if (out < 0) return -1;
    char buffer[16384];
    off_t offset = 0;
    for (;;) {
        ssize_t got = SE_RETRY_EINTR(pread(code_fd, buffer, sizeof buffer, offset));
        if (got < 0) return -1;
        if (got == 0) break;
        offset += got;
        for (ssize_t done = 0; done < got;) {
            ssize_t put = SE_RETRY_EINTR(write(out, buffer + done, (size_t)(got - done)));
            if (put < 0) return -1;
            done += put;
        }
    }
    /* close reports a write the file system could not finish. */
    return close(se_take_fd(&out));
}

static void guest_child(const struct init_config *config, const struct spawn_request *request, int report_fd) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);

    if (setsid() < 0) child_fail(report_fd, STEP_SETSID);
    for (int fd = 0; fd < 3; fd++) {
        if (dup2(request->stdio[fd], fd) < 0) child_fail(report_fd, STEP_STDIO);
    }
    for (size_t i = 0; i < request->rlimit_count; i++) {
        const struct guest_rlimit *limit = &request->rlimits[i];
        struct rlimit value = {.rlim_cur = limit->soft, .rlim_max = limit->hard};
        if (setrlimit(limit->resource, &value) != 0) child_fail(report_fd, STEP_RLIMIT);
    }

    for (int cap = 0; cap <= CAP_LAST_CAP; cap++) {
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) child_fail(report_fd, STEP_BOUNDING);
    }
    /* Root gets no special treatment, and nobody can turn that back on. */
    unsigned bits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP_LOCKED |
                    SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
    if (prctl(PR_SET_SECUREBITS, bits, 0, 0, 0) != 0) child_fail(report_fd, STEP_SECUREBITS);
    if (setgroups(0, NULL) != 0) child_fail(report_fd, STEP_SETGROUPS);
    if (setresgid(config->guest_gid, config->guest_gid, config->guest_gid) != 0) child_fail(report_fd, STEP_SETGID);
    if (setresuid(config->guest_uid, config->guest_uid, config->guest_uid) != 0) child_fail(report_fd, STEP_SETUID);
    cap_t empty = cap_init();
    if (!empty || cap_set_proc(empty) != 0) child_fail(report_fd, STEP_CAPS);
    cap_free(empty);
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) child_fail(report_fd, STEP_CAPS);

    if (chdir(request->cwd) != 0) child_fail(report_fd, STEP_CHDIR);
    int exe = open(request->executable, O_PATH | O_CLOEXEC);
    if (exe < 0) child_fail(report_fd, STEP_OPEN_EXE);
    if (request->entry_path && write_entry(request->entry_path, request->code_fd) != 0)
        child_fail(report_fd, STEP_ENTRY);

    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) child_fail(report_fd, STEP_NNP);
    if (load_guest_filter() != 0) child_fail(report_fd, STEP_SECCOMP);
    /* Nothing but 0, 1 and 2 may reach node: not the control socket, not the
     * code memfd, not the report pipe (already close-on-exec). */
    if (exe != GUEST_EXEC_FD && dup3(exe, GUEST_EXEC_FD, O_CLOEXEC) < 0) child_fail(report_fd, STEP_OPEN_EXE);
    if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) child_fail(report_fd, STEP_CLOSE_RANGE);
    syscall(SYS_execveat, GUEST_EXEC_FD, "", request->argv, request->envp, AT_EMPTY_PATH);
    if (errno == ENOENT) {
        execve(request->executable, request->argv, request->envp);
        char interpreter[sizeof ((struct child_report *)0)->detail];
        if (errno == ENOENT && read_interpreter(request->executable, interpreter, sizeof interpreter)) {
            errno = ENOENT;
            child_fail_with(report_fd, STEP_INTERPRETER, interpreter);
        }
    }
    child_fail(report_fd, STEP_EXEC);
}

pid_t spawn_guest(const struct init_config *config, const struct spawn_request *request, struct failure *failure) {
    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) != 0) return fail(failure, "pipe for spawn report");
    SE_CLEANUP_FD int report_rd = pipe_fds[0];
    SE_CLEANUP_FD int report_wr = pipe_fds[1];
    pid_t pid = fork();
    if (pid < 0) return fail(failure, "fork");
    if (pid == 0) guest_child(config, request, report_wr);
    /* Ours closed, the pipe reaches EOF once the child's copy goes at exec. */
    close(se_take_fd(&report_wr));

    struct child_report answer;
    size_t have = 0;
    while (have < sizeof answer) {
        ssize_t got = SE_RETRY_EINTR(read(report_rd, (char *)&answer + have, sizeof answer - have));
        if (got <= 0) break;
        have += (size_t)got;
    }
    if (have == 0) return pid; /* the pipe closed on exec */

    /* The child failed before exec and is exiting; reap it here so the exit
     * is never reported as a guest's. */
    int status;
    SE_RETRY_EINTR(waitpid(pid, &status, 0));
    int step = have == sizeof answer ? answer.step : 0;
    if (step < 0 || step >= (int)(sizeof child_steps / sizeof *child_steps)) step = 0;
    failure->step = child_steps[step];
    failure->err = have == sizeof answer ? answer.err : EIO;
    if (step == STEP_INTERPRETER) {
        /* "interpreter /usr/bin/python3": the event's step carries the name. */
        static char named[64];
        answer.detail[sizeof answer.detail - 1] = 0;
        snprintf(named, sizeof named, "%s %s", child_steps[step], answer.detail);
        failure->step = named;
    }
    return -1;
}
