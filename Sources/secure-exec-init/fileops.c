#define _GNU_SOURCE
#include "init.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/openat2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/*
 * File operations the host asks for (read, write, list, remove, mkdir) run
 * in a child of init that acts on files as the guest: guest fsuid and fsgid,
 * no supplementary groups, no capabilities, no_new_privs. So the host can
 * never do through this path anything a guest could not do itself, and the
 * child is inside the sandbox's mount namespace, where no host path exists.
 * Its real uid stays the namespace's root, so the guest cannot stop it.
 *
 * Paths are resolved with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)
 * from the root of the writable area they name (/workspace, /tmp, or a
 * read-write mount), so a symlink or ".." that would leave the area fails
 * with EXDEV instead of being followed. The child's exit status is 0 or the
 * errno of the failure; the data flows through the descriptor the host sent.
 *
 * A write never leaves a partial file in place of the old one: the data
 * goes into a new temporary file beside it, renamed over it only once the
 * supervisor commits (se_protocol.h, "The data of op=write").
 */

static int open_beneath(int root, const char *relative, int flags, mode_t mode) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (unsigned long long)(flags | O_CLOEXEC);
    how.mode = (flags & O_CREAT) ? mode : 0;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    return (int)syscall(SYS_openat2, root, relative, &how, sizeof how);
}

static int write_all(int to, const char *buffer, size_t length) {
    for (size_t done = 0; done < length;) {
        ssize_t put = SE_RETRY_EINTR(write(to, buffer + done, length - done));
        if (put < 0) return -1;
        done += (size_t)put;
    }
    return 0;
}

static int copy(int from, int to) {
    char buffer[65536];
    for (;;) {
        ssize_t got = SE_RETRY_EINTR(read(from, buffer, sizeof buffer));
        if (got < 0) return -1;
        if (got == 0) return 0;
        if (write_all(to, buffer, (size_t)got) != 0) return -1;
    }
}

/* Reads `length` bytes, fewer only at EOF; returns how many, or -1. */
static ssize_t read_exactly(int from, unsigned char *buffer, size_t length) {
    size_t done = 0;
    while (done < length) {
        ssize_t got = SE_RETRY_EINTR(read(from, buffer + done, length - done));
        if (got < 0) return -1;
        if (got == 0) break;
        done += (size_t)got;
    }
    return (ssize_t)done;
}

/*
 * Copies the frames of an op=write (se_protocol.h) from `from` into `to`.
 * Returns 0 at the commit frame; -1 with errno ECANCELED when the data ends
 * before it, EPROTO for a frame longer than allowed, else the failing call's.
 */
static int copy_frames(int from, int to) {
    char buffer[65536];
    for (;;) {
        unsigned char header[4];
        ssize_t got = read_exactly(from, header, sizeof header);
        if (got < 0) return -1;
        if (got < (ssize_t)sizeof header) {
            errno = ECANCELED;
            return -1;
        }
        uint32_t length = (uint32_t)header[0] | (uint32_t)header[1] << 8 | (uint32_t)header[2] << 16 |
                          (uint32_t)header[3] << 24;
        if (length == 0) return 0;
        if (length > SE_WRITE_FRAME_MAX) {
            errno = EPROTO;
            return -1;
        }
        while (length > 0) {
            ssize_t part = SE_RETRY_EINTR(read(from, buffer, length < sizeof buffer ? length : sizeof buffer));
            if (part < 0) return -1;
            if (part == 0) {
                errno = ECANCELED;
                return -1;
            }
            if (write_all(to, buffer, (size_t)part) != 0) return -1;
            length -= (uint32_t)part;
        }
    }
}

/* A write's temporary file while it exists, for the alarm to remove it: the
 * helper ends itself (file_timeout) wherever it is blocked. */
#define TEMPORARY_NAME_SIZE (sizeof SE_WRITE_TEMP_PREFIX + 16)
static volatile sig_atomic_t pending_directory = -1;
static char pending_name[TEMPORARY_NAME_SIZE];

static void abandon_on_alarm(int signal_number) {
    (void)signal_number;
    if (pending_directory >= 0) unlinkat(pending_directory, pending_name, 0);
    _exit(ETIMEDOUT);
}

/* Creates SE_WRITE_TEMP_PREFIX plus random letters in `parent`, exclusively
 * and without following anything; its name goes into `name`. */
static int create_temporary(int parent, char name[TEMPORARY_NAME_SIZE]) {
    static const char letters[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    const size_t prefix = sizeof SE_WRITE_TEMP_PREFIX - 1;
    for (int attempt = 0; attempt < 16; attempt++) {
        unsigned char random[12];
        if (getrandom(random, sizeof random, 0) != (ssize_t)sizeof random) return -1;
        memcpy(name, SE_WRITE_TEMP_PREFIX, prefix);
        for (size_t i = 0; i < sizeof random; i++) name[prefix + i] = letters[random[i] % (sizeof letters - 1)];
        name[prefix + sizeof random] = 0;
        /* 0644 under the umask, as the file was made before writes were atomic. */
        int file = openat(parent, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (file >= 0 || errno != EEXIST) return file;
    }
    errno = EEXIST;
    return -1;
}

/*
 * op=write of `name` in `parent`: refuses what opening the file for writing
 * refused (a symlink: ELOOP, never replaced, since the guest may have planted
 * it; a directory, fifo or device; a file the guest may not write), then
 * fills a temporary file with the frames and renames it over `name` on the
 * commit. On every other path the temporary file is removed and `name` is
 * left as it was. A replaced file keeps its permission bits.
 */
static int write_atomically(int parent, const char *name, int data) {
    struct stat old;
    int had_old = fstatat(parent, name, &old, AT_SYMLINK_NOFOLLOW) == 0;
    if (!had_old && errno != ENOENT) return -1;
    if (had_old) {
        if (S_ISLNK(old.st_mode)) {
            errno = ELOOP;
            return -1;
        }
        if (!S_ISREG(old.st_mode)) {
            errno = S_ISDIR(old.st_mode) ? EISDIR : EINVAL;
            return -1;
        }
        if (faccessat(parent, name, W_OK, AT_EACCESS | AT_SYMLINK_NOFOLLOW) != 0) return -1;
    }
    struct sigaction on_alarm;
    memset(&on_alarm, 0, sizeof on_alarm);
    on_alarm.sa_handler = abandon_on_alarm;
    sigemptyset(&on_alarm.sa_mask);
    if (sigaction(SIGALRM, &on_alarm, NULL) != 0) return -1;

    char temporary[TEMPORARY_NAME_SIZE];
    SE_CLEANUP_FD int file = create_temporary(parent, temporary);
    if (file < 0) return -1;
    memcpy(pending_name, temporary, sizeof temporary);
    pending_directory = parent;
    /* close reports a write the file system could not finish. */
    if ((!had_old || fchmod(file, old.st_mode & 0777) == 0) && copy_frames(data, file) == 0 &&
        close(se_take_fd(&file)) == 0 && renameat(parent, temporary, parent, name) == 0) {
        pending_directory = -1;
        return 0;
    }
    /* Abandoned or failed (ENOSPC above all: a half-written file would keep
     * the area full): the temporary file goes, the old one stays. */
    int saved = errno;
    unlinkat(parent, temporary, 0);
    pending_directory = -1;
    errno = saved;
    return -1;
}

/*
 * mkdir -p of `relative` beneath `root`; returns an O_PATH fd of the last
 * directory. Each existing prefix is resolved with RESOLVE_BENEATH, so a
 * symlinked directory that stays inside the area is followed (as node_modules
 * trees use them) and one that leads out fails with EXDEV.
 */
static int make_directories(int root, const char *relative) {
    char *path = strdup(relative);
    if (!path) return -1;
    size_t length = strlen(path);
    int current = dup(root);
    for (size_t i = 1; current >= 0 && i <= length; i++) {
        if (path[i] != '/' && path[i] != 0) continue;
        char saved = path[i];
        path[i] = 0;
        int next = open_beneath(root, path, O_PATH | O_DIRECTORY, 0);
        if (next < 0 && errno == ENOENT) {
            const char *slash = strrchr(path, '/');
            const char *name = slash ? slash + 1 : path;
            if (mkdirat(current, name, 0755) == 0 || errno == EEXIST) {
                next = open_beneath(root, path, O_PATH | O_DIRECTORY, 0);
            }
        }
        se_close_fd_ptr(&current); /* keeps errno */
        current = next;
        path[i] = saved;
    }
    free(path);
    return current;
}

static int remove_tree(int parent, const char *name) {
    struct stat info;
    if (fstatat(parent, name, &info, AT_SYMLINK_NOFOLLOW) != 0) return -1;
    if (!S_ISDIR(info.st_mode)) return unlinkat(parent, name, 0);
    SE_CLEANUP_FD int directory = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (directory < 0) return -1;
    DIR *listing = fdopendir(directory);
    if (!listing) return -1;
    se_take_fd(&directory); /* the listing owns it now */
    struct dirent *entry;
    int result = 0;
    while (result == 0 && (entry = readdir(listing))) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
        result = remove_tree(dirfd(listing), entry->d_name);
    }
    closedir(listing);
    if (result != 0) return -1;
    return unlinkat(parent, name, AT_REMOVEDIR);
}

static int list_directory(int root, const char *relative, int out) {
    SE_CLEANUP_FD int directory = open_beneath(root, relative, O_RDONLY | O_DIRECTORY, 0);
    if (directory < 0) return -1;
    DIR *listing = fdopendir(directory);
    if (!listing) return -1;
    se_take_fd(&directory); /* the listing owns it now */
    struct dirent *entry;
    while ((entry = readdir(listing))) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
        struct stat info;
        char kind = 'o';
        if (fstatat(dirfd(listing), entry->d_name, &info, AT_SYMLINK_NOFOLLOW) == 0) {
            kind = S_ISDIR(info.st_mode) ? 'd' : S_ISREG(info.st_mode) ? 'f' : S_ISLNK(info.st_mode) ? 'l' : 'o';
        }
        /* "<kind>\0<name>\0": names may hold any byte but NUL and '/'. */
        char record[2] = {kind, 0};
        if (write(out, record, 2) != 2 || write(out, entry->d_name, strlen(entry->d_name) + 1) < 0) {
            closedir(listing);
            return -1;
        }
    }
    closedir(listing);
    return 0;
}

/* Refuses anything but a regular file (a fifo, a socket, a device, a
 * directory), then makes reads and writes blocking again. */
static int require_regular(int file) {
    struct stat info;
    if (fstat(file, &info) != 0) return -1;
    if (!S_ISREG(info.st_mode)) {
        errno = S_ISDIR(info.st_mode) ? EISDIR : EINVAL;
        return -1;
    }
    int flags = fcntl(file, F_GETFL);
    return flags < 0 ? -1 : fcntl(file, F_SETFL, flags & ~O_NONBLOCK);
}

int open_writable_areas(struct init_config *config, struct failure *failure) {
    config->writable_fds = calloc(config->writable_count ? config->writable_count : 1, sizeof *config->writable_fds);
    if (!config->writable_fds) return fail(failure, "allocate writable areas");
    for (size_t i = 0; i < config->writable_count; i++) {
        struct open_how how;
        memset(&how, 0, sizeof how);
        how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
        how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
        config->writable_fds[i] = (int)syscall(SYS_openat2, AT_FDCWD, config->writable[i], &how, sizeof how);
        /* A read-write mount of a single file is no area to resolve beneath. */
        if (config->writable_fds[i] < 0 && errno != ENOTDIR) return fail(failure, "open writable area");
    }
    return 0;
}

/* Closes every descriptor inherited from init (its control socket, signalfd,
 * pidfds...) but `keep` and the writable areas' roots. */
static void close_inherited(const struct init_config *config, int keep) {
    int highest = keep;
    for (size_t i = 0; i < config->writable_count; i++) {
        if (config->writable_fds[i] > highest) highest = config->writable_fds[i];
    }
    for (int fd = 0; fd <= highest; fd++) {
        int wanted = fd == keep;
        for (size_t i = 0; !wanted && i < config->writable_count; i++) wanted = fd == config->writable_fds[i];
        if (!wanted) close(fd);
    }
    syscall(SYS_close_range, (unsigned)highest + 1, ~0U, 0);
}

static int run_operation(const struct init_config *config, const char *operation, const char *path, int data) {
    /* The writable area the path lies in: the longest root that prefixes it. */
    const char *area = NULL;
    size_t area_length = 0;
    int area_root = -1;
    for (size_t i = 0; i < config->writable_count; i++) {
        size_t length = strlen(config->writable[i]);
        if (strncmp(path, config->writable[i], length) == 0 && (path[length] == '/' || path[length] == 0) &&
            length > area_length) {
            area = config->writable[i];
            area_length = length;
            area_root = config->writable_fds[i];
        }
    }
    if (!area) {
        errno = EXDEV;
        return -1;
    }
    const char *relative = path[area_length] == '/' ? path + area_length + 1 : ".";
    if (*relative == 0) relative = ".";
    int root = area_root;
    if (root < 0) {
        errno = EXDEV;
        return -1;
    }

    if (strcmp(operation, "read") == 0) {
        /* O_NONBLOCK: a fifo a guest renamed into place must not hold us. */
        SE_CLEANUP_FD int file = open_beneath(root, relative, O_RDONLY | O_NONBLOCK, 0);
        if (file < 0) return -1;
        if (require_regular(file) != 0) return -1;
        return copy(file, data);
    }
    if (strcmp(operation, "list") == 0) return list_directory(root, relative, data);
    if (strcmp(operation, "mkdir") == 0) {
        SE_CLEANUP_FD int made = make_directories(root, relative);
        return made < 0 ? -1 : 0;
    }

    /* write and remove act on the last component inside its parent. */
    char *parent_path = strdup(relative);
    if (!parent_path) return -1;
    char *slash = strrchr(parent_path, '/');
    const char *name = slash ? slash + 1 : parent_path;
    if (slash) *slash = 0;
    if (strcmp(name, ".") == 0 || *name == 0) {
        errno = EINVAL; /* the area itself */
        return -1;
    }
    SE_CLEANUP_FD int parent = -1;
    if (strcmp(operation, "write") == 0) {
        parent = slash ? make_directories(root, parent_path) : dup(root);
    } else {
        parent = slash ? open_beneath(root, parent_path, O_PATH | O_DIRECTORY, 0) : dup(root);
    }
    if (parent < 0) return -1;
    if (strcmp(operation, "remove") == 0) return remove_tree(parent, name);
    if (strcmp(operation, "write") == 0) return write_atomically(parent, name, data);
    errno = EINVAL;
    return -1;
}

/*
 * Files are touched with the guest's file ids (fsuid and fsgid: its
 * permissions, and what is created is its own) while the real, effective and
 * saved uids stay the namespace's root: a guest can neither signal (kill and
 * SIGSTOP need a matching uid) nor ptrace this process, so it cannot stall a
 * host file operation. Every capability is dropped, so being uid 0 grants
 * nothing here; no exec follows that could regain one.
 */
static int become_guest_for_files(const struct init_config *config) {
    if (setgroups(0, NULL) != 0) return -1;
    setfsgid(config->guest_gid);
    setfsuid(config->guest_uid);
    if ((unsigned)setfsuid((uid_t)-1) != config->guest_uid || (unsigned)setfsgid((gid_t)-1) != config->guest_gid) {
        errno = EPERM;
        return -1;
    }
    for (int cap = 0; cap <= 63; cap++) {
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) return -1;
    }
    cap_t empty = cap_init();
    int dropped = empty ? cap_set_proc(empty) : -1;
    if (empty) cap_free(empty);
    if (dropped != 0) return -1;
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return -1;
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}

pid_t start_file_operation(const struct init_config *config, const char *operation, const char *path, int data,
                           struct failure *failure) {
    pid_t pid = fork();
    if (pid < 0) {
        fail(failure, "fork for file operation");
        return -1;
    }
    if (pid > 0) return pid;

    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    close_inherited(config, data);
    /* Whatever holds it up, it ends itself once the supervisor gave up. */
    alarm(config->file_timeout_seconds + 1);
    int rc = -1;
    if (become_guest_for_files(config) == 0) rc = run_operation(config, operation, path, data);
    _exit(rc == 0 ? 0 : (errno > 0 && errno < 256 ? errno : EIO));
}
