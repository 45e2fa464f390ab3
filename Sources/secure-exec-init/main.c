#define _GNU_SOURCE
#include "init.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* Guests we started and have not yet reported: only their exits are events.
 * entries[i] is the code file written for guests[i] (or NULL), removed when
 * it exits so it neither fills nor clutters the workspace. */
static pid_t *guests;
static char **entries;
static size_t guest_count, guest_capacity;

/* File-operation children still running, and the request each answers. */
struct file_operation {
    pid_t pid;
    uint32_t request;
};
static struct file_operation file_operations[64];
static size_t file_operation_count;

static void send_event(uint32_t type, uint32_t id, int32_t pid, int32_t status, int32_t err, const char *step) {
    struct se_event event;
    memset(&event, 0, sizeof event);
    event.type = type;
    event.id = id;
    event.pid = pid;
    event.status = status;
    event.err = err;
    if (step) strncpy(event.step, step, sizeof event.step - 1);
    /* The supervisor drains events promptly; if it is gone, we exit on HUP. */
    SE_RETRY_EINTR(send(SE_CONTROL_FD, &event, sizeof event, MSG_NOSIGNAL));
}

static void close_all(const int *fds, size_t count) {
    for (size_t i = 0; i < count; i++) close(fds[i]);
}

/*
 * Receives one request. Returns the payload length (>= 0) with fds[] holding
 * the attached descriptors (close-on-exec) and *fd_count how many; -2 when
 * the supervisor has closed its end; -1 when the record cannot be used, with
 * errno and *reason set and every descriptor it carried already closed.
 * header->id is the request's id whenever its header arrived, even on -1, so
 * the refusal can name the request; 0 when not even the header could be read.
 */
static ssize_t receive_request(struct se_request *header, char *payload, int *fds, size_t *fd_count,
                               const char **reason) {
    struct iovec parts[2] = {
        {.iov_base = header, .iov_len = sizeof *header},
        {.iov_base = payload, .iov_len = SE_MAX_REQUEST - sizeof *header},
    };
    union {
        char bytes[CMSG_SPACE(sizeof(int) * SE_MAX_REQUEST_FDS)];
        struct cmsghdr align;
    } control;
    struct msghdr message = {.msg_iov = parts, .msg_iovlen = 2, .msg_control = control.bytes,
                             .msg_controllen = sizeof control.bytes};
    memset(header, 0, sizeof *header);
    *fd_count = 0;
    ssize_t got = SE_RETRY_EINTR(recvmsg(SE_CONTROL_FD, &message, MSG_CMSG_CLOEXEC));
    if (got < 0) {
        *reason = "receive request";
        return -1;
    }
    /* Every descriptor that arrived is either kept here or closed now, so
     * none outlives a request that is refused. (Those that did not fit the
     * control buffer the kernel has already discarded: MSG_CTRUNC.) */
    for (struct cmsghdr *cmsg = CMSG_FIRSTHDR(&message); cmsg; cmsg = CMSG_NXTHDR(&message, cmsg)) {
        if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
        size_t count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof(int));
            if (*fd_count < SE_MAX_REQUEST_FDS) fds[(*fd_count)++] = fd;
            else close(fd);
        }
    }
    if (got == 0) {
        close_all(fds, *fd_count);
        *fd_count = 0;
        return -2;
    }
    int err = 0;
    if ((size_t)got < sizeof *header) {
        header->id = 0; /* a partial header names no request */
        *reason = "short request header";
        err = EPROTO;
    } else if (message.msg_flags & MSG_TRUNC) {
        *reason = "request too long";
        err = EMSGSIZE;
    } else if (message.msg_flags & MSG_CTRUNC) {
        *reason = "too many descriptors";
        err = EMSGSIZE;
    } else if (header->payload_len != (size_t)got - sizeof *header) {
        *reason = "request length mismatch";
        err = EPROTO;
    } else if (header->fd_count != *fd_count) {
        *reason = "descriptor count mismatch";
        err = EPROTO;
    }
    if (err != 0) {
        close_all(fds, *fd_count);
        *fd_count = 0;
        errno = err;
        return -1;
    }
    return (ssize_t)header->payload_len;
}

struct spawn_records {
    struct guest_rlimit rlimits[16];
    size_t rlimit_count;
    char **argv;
    size_t argc;
    char **envp;
    size_t envc;
    const char *cwd;
    const char *entry;
    const char *executable;
};

static int append(char ***list, size_t *count, const char *value) {
    char **grown = realloc(*list, (*count + 2) * sizeof *grown);
    if (!grown) return -1;
    grown[(*count)++] = (char *)value;
    grown[*count] = NULL;
    *list = grown;
    return 0;
}

static int visit_spawn(void *context, const char *key, const char *value) {
    struct spawn_records *records = context;
    if (strcmp(key, SE_KEY_ARG) == 0) return append(&records->argv, &records->argc, value);
    if (strcmp(key, SE_KEY_ENV) == 0) return append(&records->envp, &records->envc, value);
    if (strcmp(key, SE_KEY_CWD) == 0) records->cwd = value;
    else if (strcmp(key, SE_KEY_ENTRY) == 0) records->entry = value;
    else if (strcmp(key, SE_KEY_EXE) == 0) records->executable = value;
    else if (strcmp(key, SE_KEY_RLIMIT) == 0) {
        /* "resource:soft:hard", numbers as the kernel knows them */
        struct guest_rlimit limit;
        if (records->rlimit_count == sizeof records->rlimits / sizeof *records->rlimits ||
            sscanf(value, "%d:%llu:%llu", &limit.resource, &limit.soft, &limit.hard) != 3) {
            errno = EPROTO;
            return -1;
        }
        records->rlimits[records->rlimit_count++] = limit;
    } else {
        errno = EPROTO;
        return -1;
    }
    return 0;
}

/*
 * Records a started guest so its exit is reported and its entry file
 * removed. Returns 0, or -1 when memory ran out and nothing was recorded.
 */
static int track_guest(pid_t pid, const char *entry) {
    char *entry_copy = NULL;
    if (entry && !(entry_copy = strdup(entry))) return -1;
    if (guest_count == guest_capacity) {
        size_t capacity = guest_capacity ? guest_capacity * 2 : 16;
        pid_t *grown = realloc(guests, capacity * sizeof *grown);
        if (grown) guests = grown;
        char **grown_entries = realloc(entries, capacity * sizeof *grown_entries);
        if (grown_entries) entries = grown_entries;
        if (!grown || !grown_entries) {
            free(entry_copy);
            return -1;
        }
        guest_capacity = capacity;
    }
    entries[guest_count] = entry_copy;
    guests[guest_count++] = pid;
    return 0;
}

/* Answers with exactly one SE_EV_SPAWNED or SE_EV_SPAWN_FAILED. The caller closes fds. */
static void handle_spawn(const struct init_config *config, const struct se_request *header, char *payload,
                         size_t length, const int *fds, size_t fd_count) {
    struct spawn_records records = {0};
    struct failure failure = {0};
    char *empty[] = {NULL};
    int parsed = each_record(payload, length, visit_spawn, &records);
    /* ENOMEM from collecting argv or env; anything else is a bad request. */
    int parse_errno = parsed != 0 && errno == ENOMEM ? ENOMEM : EPROTO;
    if (parsed != 0 || records.argc == 0 || !records.executable || fd_count < 3 || (records.entry && fd_count < 4)) {
        send_event(SE_EV_SPAWN_FAILED, header->id, 0, 0, parse_errno, "parse spawn request");
    } else {
        struct spawn_request request = {
            .argv = records.argv,
            .envp = records.envp ? records.envp : empty,
            .executable = records.executable,
            .cwd = records.cwd ? records.cwd : GUEST_ROOT_WORKSPACE,
            .entry_path = records.entry,
            .stdio = {fds[0], fds[1], fds[2]},
            .code_fd = records.entry ? fds[3] : -1,
            .rlimits = records.rlimits,
            .rlimit_count = records.rlimit_count,
        };
        pid_t pid = spawn_guest(config, &request, &failure);
        if (pid < 0) {
            send_event(SE_EV_SPAWN_FAILED, header->id, 0, 0, failure.err, failure.step);
        } else if (track_guest(pid, records.entry) != 0) {
            /* A guest we cannot track would never be reported as exited:
             * end it (it is reaped as an orphan), remove the code file it
             * wrote before exec, and say why. Never announced as spawned. */
            kill(pid, SIGKILL);
            if (records.entry) unlink(records.entry);
            send_event(SE_EV_SPAWN_FAILED, header->id, 0, 0, ENOMEM, "track guest");
        } else {
            send_event(SE_EV_SPAWNED, header->id, pid, 0, 0, NULL);
        }
    }
    free(records.argv);
    free(records.envp);
}

struct file_records {
    const char *operation;
    const char *path;
};

static int visit_file(void *context, const char *key, const char *value) {
    struct file_records *records = context;
    if (strcmp(key, SE_KEY_OP) == 0) records->operation = value;
    else if (strcmp(key, SE_KEY_PATH) == 0) records->path = value;
    else {
        errno = EPROTO;
        return -1;
    }
    return 0;
}

/* Answers with exactly one SE_EV_FILE_DONE: now on failure, or when the
 * operation's child is reaped. The caller closes fds (the child has its copy). */
static void handle_file(const struct init_config *config, const struct se_request *header, char *payload,
                        size_t length, const int *fds, size_t fd_count) {
    struct file_records records = {0};
    struct failure failure = {0};
    if (each_record(payload, length, visit_file, &records) != 0 || !records.operation || !records.path ||
        records.path[0] != '/' || fd_count != 1) {
        send_event(SE_EV_FILE_DONE, header->id, 0, 0, EPROTO, "parse file request");
        return;
    }
    if (file_operation_count == sizeof file_operations / sizeof *file_operations) {
        send_event(SE_EV_FILE_DONE, header->id, 0, 0, EAGAIN, "too many file operations at once");
        return;
    }
    pid_t pid = start_file_operation(config, records.operation, records.path, fds[0], &failure);
    if (pid < 0) {
        send_event(SE_EV_FILE_DONE, header->id, 0, 0, failure.err, failure.step);
        return;
    }
    file_operations[file_operation_count++] = (struct file_operation){.pid = pid, .request = header->id};
}

static int is_guest(pid_t pid, int remove) {
    for (size_t i = 0; i < guest_count; i++) {
        if (guests[i] == pid) {
            if (remove) {
                /* unlink never follows a symlink the guest may have put there. */
                if (entries[i]) unlink(entries[i]);
                free(entries[i]);
                guest_count--;
                guests[i] = guests[guest_count];
                entries[i] = entries[guest_count];
            }
            return 1;
        }
    }
    return 0;
}

static void reap_children(void) {
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0) return;
        /* Orphans reparented to us are reaped silently; guests are reported. */
        if (is_guest(pid, 1)) {
            send_event(SE_EV_EXITED, 0, pid, status, 0, NULL);
            continue;
        }
        for (size_t i = 0; i < file_operation_count; i++) {
            if (file_operations[i].pid != pid) continue;
            int err = WIFEXITED(status) ? WEXITSTATUS(status) : EINTR;
            send_event(SE_EV_FILE_DONE, file_operations[i].request, pid, 0, err, "file operation");
            file_operations[i] = file_operations[--file_operation_count];
            break;
        }
    }
}

/*
 * Signals one guest (SE_REQ_SIGNAL) or every process but init
 * (SE_REQ_SIGNAL_ALL). A malformed request (a payload or descriptors, no
 * valid signal number, a target that is no pid) is answered with
 * SE_EV_REQUEST_FAILED; a SIGNAL that reaches no guest of ours with
 * SE_EV_SIGNAL_FAILED; success, and SIGNAL_ALL with nobody left to signal,
 * get no answer.
 */
static void handle_signal(const struct se_request *header, size_t length, size_t fd_count) {
    int all = header->type == SE_REQ_SIGNAL_ALL;
    if (length != 0 || fd_count != 0) {
        send_event(SE_EV_REQUEST_FAILED, header->id, 0, 0, EPROTO, "signal request with payload or fds");
        return;
    }
    if (header->signal <= 0 || header->signal >= NSIG) {
        send_event(SE_EV_REQUEST_FAILED, header->id, 0, 0, EINVAL, "signal number");
        return;
    }
    if (all) {
        kill(-1, header->signal);
        return;
    }
    if (header->target_pid <= 0) {
        send_event(SE_EV_REQUEST_FAILED, header->id, 0, 0, EINVAL, "signal target");
        return;
    }
    /* Only our own guests: never init, never an arbitrary pid. */
    if (!is_guest(header->target_pid, 0)) {
        send_event(SE_EV_SIGNAL_FAILED, header->id, header->target_pid, 0, ESRCH, "signal");
    } else if (kill(header->target_pid, header->signal) != 0) {
        send_event(SE_EV_SIGNAL_FAILED, header->id, header->target_pid, 0, errno, "signal");
    }
}

/* One request in, at most one answer out now (see se_protocol.h for which);
 * every descriptor it carried is closed before this returns. */
static void handle_request(const struct init_config *config) {
    static char payload[SE_MAX_REQUEST];
    struct se_request header;
    int fds[SE_MAX_REQUEST_FDS];
    size_t fd_count = 0;
    const char *reason = NULL;
    ssize_t length = receive_request(&header, payload, fds, &fd_count, &reason);
    if (length == -2) {
        /* The supervisor is gone (disposed, crashed, killed): leave, and the
         * kernel ends every process in this pid namespace with us. */
        _exit(0);
    }
    if (length < 0) {
        send_event(SE_EV_REQUEST_FAILED, header.id, 0, 0, errno, reason);
        return;
    }
    switch (header.type) {
    case SE_REQ_SPAWN:
        handle_spawn(config, &header, payload, (size_t)length, fds, fd_count);
        break;
    case SE_REQ_SIGNAL:
    case SE_REQ_SIGNAL_ALL:
        handle_signal(&header, (size_t)length, fd_count);
        break;
    case SE_REQ_FILE:
        handle_file(config, &header, payload, (size_t)length, fds, fd_count);
        break;
    case SE_REQ_CONFIG:
        send_event(SE_EV_REQUEST_FAILED, header.id, 0, 0, EPROTO, "config after setup");
        break;
    default:
        send_event(SE_EV_REQUEST_FAILED, header.id, 0, 0, EPROTO, "unknown request type");
        break;
    }
    close_all(fds, fd_count);
}

static int setup(struct init_config *config, struct failure *failure) {
    static char payload[SE_MAX_REQUEST];
    struct se_request header;
    int fds[SE_MAX_REQUEST_FDS];
    size_t fd_count = 0;
    const char *reason = NULL;
    ssize_t length = receive_request(&header, payload, fds, &fd_count, &reason);
    if (length < 0 || header.type != SE_REQ_CONFIG || fd_count < 2) {
        /* receive_request closed what a bad record carried; close the rest. */
        if (length >= 0) {
            close_all(fds, fd_count);
            errno = EPROTO;
        } else if (length == -2) {
            errno = EPIPE;
        }
        return fail(failure, "receive config");
    }
    static int config_fds[SE_MAX_REQUEST_FDS];
    memcpy(config_fds, fds, fd_count * sizeof *fds);
    if (parse_config(payload, (size_t)length, config_fds, fd_count, config, failure) != 0) return -1;
    /* A cgroup namespace of our own, rooted where the supervisor put us (the
     * sandbox's cgroups; clone3's was rooted at the supervisor's, since it
     * moves us only after the clone): guests see their cgroup as "/", where
     * the read-only view of it is mounted (/sys/fs/cgroup), and no path
     * names a cgroup outside the sandbox. Before build_proc sets
     * max_cgroup_namespaces to 0. */
    if (unshare(CLONE_NEWCGROUP) != 0) return fail(failure, "unshare cgroup namespace");
    if (bring_up_loopback(failure) != 0) return -1;
    if (sethostname(config->hostname, strlen(config->hostname)) != 0) return fail(failure, "sethostname");
    if (build_guest_root(config, failure) != 0) return -1;
    if (open_writable_areas(config, failure) != 0) return -1;
    close(config->rootfs_fd);
    config->rootfs_fd = -1;
    if (prepare_guest_filter(config, failure) != 0) return -1;
    return 0;
}

int main(void) {
    /* Nothing in the sandbox may ptrace us or read our memory. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    /* exec keeps ignored signals ignored and the signal mask as the host's
     * cloning thread had them. A host that ignores SIGCHLD would make the
     * kernel reap our guests behind our back (no exit would be reported), so
     * start from the defaults, with nothing blocked. */
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig != SIGKILL && sig != SIGSTOP) signal(sig, SIG_DFL);
    }
    sigset_t nothing;
    sigemptyset(&nothing);
    sigprocmask(SIG_SETMASK, &nothing, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* Signals become events: SIGCHLD to reap, the rest (sent from the host)
     * forwarded to every guest. */
    sigset_t handled;
    sigemptyset(&handled);
    sigaddset(&handled, SIGCHLD);
    sigaddset(&handled, SIGTERM);
    sigaddset(&handled, SIGINT);
    sigaddset(&handled, SIGHUP);
    sigaddset(&handled, SIGUSR1);
    sigaddset(&handled, SIGUSR2);
    sigprocmask(SIG_BLOCK, &handled, NULL);
    int signals = signalfd(-1, &handled, SFD_CLOEXEC | SFD_NONBLOCK);

    struct init_config config;
    struct failure failure = {0};
    if (signals < 0) {
        fail(&failure, "signalfd");
        send_event(SE_EV_SETUP_FAILED, 0, 0, 0, failure.err, failure.step);
        return 1;
    }
    if (setup(&config, &failure) != 0) {
        send_event(SE_EV_SETUP_FAILED, 0, 0, 0, failure.err, failure.step);
        return 1;
    }
    send_event(SE_EV_READY, 0, getpid(), 0, 0, NULL);

    for (;;) {
        /* Three lifelines: requests (and the control socket hanging up),
         * signals, and the supervisor process itself exiting. */
        struct pollfd watched[3] = {{.fd = SE_CONTROL_FD, .events = POLLIN},
                                    {.fd = signals, .events = POLLIN},
                                    {.fd = config.supervisor_pidfd, .events = POLLIN}};
        if (SE_RETRY_EINTR(poll(watched, 3, -1)) < 0) _exit(1);
        if (watched[1].revents & POLLIN) {
            struct signalfd_siginfo info;
            while (read(signals, &info, sizeof info) == sizeof info) {
                if (info.ssi_signo != SIGCHLD) kill(-1, (int)info.ssi_signo);
            }
            reap_children();
        }
        if (watched[2].revents) _exit(0); /* the supervisor is gone */
        if (watched[0].revents & POLLIN) {
            handle_request(&config);
        } else if (watched[0].revents & (POLLHUP | POLLERR | POLLNVAL)) {
            _exit(0);
        }
    }
}
