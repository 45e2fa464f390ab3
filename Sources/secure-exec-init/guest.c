#define _GNU_SOURCE
#include "init.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <linux/openat2.h>
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
 *   processes are denied).
 * execveat answers ENOENT both for a missing file and for a missing
 * interpreter (a "#!" line's program, an ELF's loader). The file is open by
 * then, so on ENOENT the interpreter it asks for is read from it and, when
 * missing, named. A script whose interpreter exists still cannot run from a
 * close-on-exec descriptor (the interpreter could not open /dev/fd/3), so it
 * is exec'd by path; that needs child processes allowed, which every
 * executable but node does (the API's spawnExecutable and spawnCommand
 * require it).
 * A failure is written to the report pipe as (step index, errno), followed
 * for some steps by the path it concerns: the executable that could not be
 * opened, or the interpreter an executable names that does not exist.
 */

static const char *const child_steps[] = {
    "unknown", "setsid", "stdio", "chdir", "drop bounding set", "securebits", "setgroups",
    "setresgid", "setresuid", "clear capabilities", "write entry file", "no_new_privs",
    "seccomp", "close_range", "execveat", "open", "setrlimit", "missing interpreter",
};
enum {
    STEP_SETSID = 1, STEP_STDIO, STEP_CHDIR, STEP_BOUNDING, STEP_SECUREBITS, STEP_SETGROUPS,
    STEP_SETGID, STEP_SETUID, STEP_CAPS, STEP_ENTRY, STEP_NNP, STEP_SECCOMP, STEP_CLOSE_RANGE, STEP_EXEC,
    STEP_OPEN_EXE, STEP_RLIMIT, STEP_INTERPRETER,
};

/* Longest path a report carries; the event's step field cuts it shorter. */
#define REPORT_PATH_MAX 256

static void child_fail_path(int report_fd, int step, const char *path) {
    struct {
        int step, err;
        char path[REPORT_PATH_MAX];
    } report = {step, errno, {0}};
    size_t length = path ? strnlen(path, sizeof report.path) : 0;
    /* A path may come from a file the guest wrote (a "#!" line): only
     * printable ASCII reaches the host's messages and terminals. */
    for (size_t i = 0; i < length; i++) {
        unsigned char byte = (unsigned char)path[i];
        report.path[i] = byte >= 0x20 && byte < 0x7f ? (char)byte : '?';
    }
    ssize_t ignored = write(report_fd, &report, offsetof(__typeof__(report), path) + length);
    (void)ignored;
    _exit(127);
}

static void child_fail(int report_fd, int step) { child_fail_path(report_fd, step, NULL); }

/*
 * The interpreter an executable asks the kernel for: the program of its
 * "#!" line, or an ELF's loader (PT_INTERP). execve answers ENOENT when that
 * is missing, exactly as when the file itself is, so the file alone would be
 * named. fd is O_PATH: the file is read through /proc/self/fd, as the guest.
 * Returns which kind asks (the path in out), or INTERPRETER_NONE.
 */
enum { INTERPRETER_NONE = -1, INTERPRETER_SCRIPT = 1, INTERPRETER_LOADER = 2 };
static int requested_interpreter(int fd, char *out, size_t size) {
    char link[32];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    SE_CLEANUP_FD int file = open(link, O_RDONLY | O_CLOEXEC);
    if (file < 0) return INTERPRETER_NONE;
    char head[256]; /* what the kernel reads of a "#!" line (BINPRM_BUF_SIZE) */
    ssize_t got = pread(file, head, sizeof head - 1, 0);
    if (got < 4) return INTERPRETER_NONE;
    head[got] = 0;
    if (head[0] == '#' && head[1] == '!') {
        char *start = head + 2;
        start += strspn(start, " \t");
        size_t length = strcspn(start, " \t\n");
        if (length == 0 || length >= size) return INTERPRETER_NONE;
        memcpy(out, start, length);
        out[length] = 0;
        return INTERPRETER_SCRIPT;
    }
    Elf64_Ehdr header;
    if ((size_t)got < sizeof header || memcmp(head, ELFMAG, SELFMAG) != 0 || head[EI_CLASS] != ELFCLASS64) return INTERPRETER_NONE;
    memcpy(&header, head, sizeof header);
    for (unsigned i = 0; i < header.e_phnum; i++) {
        Elf64_Phdr program;
        off_t at = (off_t)(header.e_phoff + (Elf64_Off)i * header.e_phentsize);
        if (pread(file, &program, sizeof program, at) != (ssize_t)sizeof program) return INTERPRETER_NONE;
        if (program.p_type != PT_INTERP) continue;
        if (program.p_filesz < 2 || program.p_filesz > size) return INTERPRETER_NONE;
        if (pread(file, out, program.p_filesz, (off_t)program.p_offset) != (ssize_t)program.p_filesz) return INTERPRETER_NONE;
        out[program.p_filesz - 1] = 0;
        return INTERPRETER_LOADER;
    }
    return INTERPRETER_NONE;
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
    /* No /proc magic link (/proc/self/exe, /proc/self/fd/N) may name the
     * program: those reach init's own files and descriptors. */
    struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_NO_MAGICLINKS};
    int exe = (int)syscall(SYS_openat2, AT_FDCWD, request->executable, &how, sizeof how);
    if (exe < 0) child_fail_path(report_fd, STEP_OPEN_EXE, request->executable);
    if (request->entry_path && write_entry(request->entry_path, request->code_fd) != 0)
        child_fail(report_fd, STEP_ENTRY);

    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) child_fail(report_fd, STEP_NNP);
    if (load_guest_filter() != 0) child_fail(report_fd, STEP_SECCOMP);
    /* Nothing but 0, 1 and 2 may reach the program: not the control socket,
     * not the code memfd, not the report pipe (already close-on-exec). */
    if (exe != GUEST_EXEC_FD && dup3(exe, GUEST_EXEC_FD, O_CLOEXEC) < 0) child_fail(report_fd, STEP_OPEN_EXE);
    if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) child_fail(report_fd, STEP_CLOSE_RANGE);
    syscall(SYS_execveat, GUEST_EXEC_FD, "", request->argv, request->envp, AT_EMPTY_PATH);
    if (errno == ENOENT) {
        /* The file is open, so what is missing is what it asks to run (or,
         * when that exists, what in turn that asks for: not named). */
        char interpreter[REPORT_PATH_MAX];
        int kind = requested_interpreter(GUEST_EXEC_FD, interpreter, sizeof interpreter);
        if (kind != INTERPRETER_NONE && access(interpreter, F_OK) != 0) {
            errno = ENOENT;
            child_fail_path(report_fd, STEP_INTERPRETER, interpreter);
        }
        /* A script whose interpreter exists: by path (see the top). */
        if (kind == INTERPRETER_SCRIPT) execve(request->executable, request->argv, request->envp);
        else errno = ENOENT;
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

    /* (step, errno), then the path some steps name, until EOF. */
    struct {
        int step, err;
        char path[REPORT_PATH_MAX];
    } answer;
    const size_t head = offsetof(__typeof__(answer), path);
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
    int step = have >= head ? answer.step : 0;
    if (step < 0 || step >= (int)(sizeof child_steps / sizeof *child_steps)) step = 0;
    failure->step = child_steps[step];
    failure->err = have >= head ? answer.err : EIO;
    if (have > head) {
        /* "<step> <path>", the path's end kept when the event's step field
         * (se_event.step) cannot hold it all: the file name tells most. */
        static char named[sizeof ((struct se_event *)0)->step];
        int path_length = (int)(have - head);
        int room = (int)sizeof named - 1 - (int)strlen(child_steps[step]) - 1;
        if (path_length <= room) {
            snprintf(named, sizeof named, "%s %.*s", child_steps[step], path_length, answer.path);
        } else {
            snprintf(named, sizeof named, "%s ...%.*s", child_steps[step], room - 3,
                     answer.path + path_length - (room - 3));
        }
        failure->step = named;
    }
    return -1;
}
