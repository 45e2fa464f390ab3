#define _GNU_SOURCE
#include "init.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <linux/openat2.h>
#include <sys/fsuid.h>
#include <sys/mount.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/*
 * The guest's root, built in this order (each step's reason beside it):
 *
 *  1. make every mount private: nothing we do may propagate to the host;
 *  2. mount the guest's root tmpfs over /tmp (our private copy of it) and
 *     fill it: the rootfs/ skeleton (copied from a directory descriptor)
 *     and the root image's symlinks (busybox's applets, npm's commands,
 *     /etc/localtime to the host's zone),
 *     a minimal /dev, a private /proc with its dangerous files masked,
 *     size-limited writable tmpfs for the workspace and /tmp, and every
 *     detached mount the supervisor sent (node, its libraries, the host's
 *     zone file, the device nodes, the read-only view of the sandbox's own
 *     cgroups, the caller's host mounts), attached with move_mount. A root
 *     with a base (an operator's root filesystem) is instead a read-only
 *     overlay: SecureExec's layer (the skeleton, symlinks and every mount
 *     point, made first because nothing can be made in it afterwards) over
 *     the base, both staged in that tmpfs, which the overlay then covers;
 *  3. remount /dev and the guest's root read-only;
 *  4. pivot_root into it and detach the old root, so no host path is left.
 *
 * Init never resolves a host path: the supervisor opened every host file
 * and directory itself (open_tree) and sent descriptors. Paths below are
 * resolved before any guest exists, in a root only this process can write,
 * so no guest-controlled symlink can be on them.
 */

#define NEW_ROOT "/tmp"

static int join(char *out, size_t size, const char *prefix, const char *path) {
    int written = snprintf(out, size, "%s%s", prefix, path);
    if (written < 0 || (size_t)written >= size) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

/*
 * Creating a mount point (a directory, or an empty file for a file mount)
 * also has to work inside an idmapped host mount, where only the guest's ids
 * are mapped and init's own uid cannot create anything (EOVERFLOW): there it
 * is made as the guest, so on the host it belongs to the mount's owner like
 * everything else the guest makes.
 */
static int make_entry(int dir, const char *name, int directory) {
    if (directory) return mkdirat(dir, name, 0755);
    int fd = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0444);
    return fd < 0 ? -1 : close(fd);
}

static int make_mount_point_entry(int dir, const char *name, int directory, const struct init_config *config) {
    if (make_entry(dir, name, directory) == 0 || errno == EEXIST) return 0;
    if (errno != EOVERFLOW && errno != EACCES && errno != EPERM) return -1;
    setfsgid(config->guest_gid);
    setfsuid(config->guest_uid);
    int made = make_entry(dir, name, directory);
    int saved = errno;
    setfsuid(0);
    setfsgid(0);
    errno = saved;
    return made == 0 || saved == EEXIST ? 0 : -1;
}

static int open_component(int dir, const char *name, int directory) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = O_PATH | O_CLOEXEC | (directory ? O_DIRECTORY : 0);
    how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_BENEATH;
    return (int)syscall(SYS_openat2, dir, name, &how, sizeof how);
}

/*
 * Opens (O_PATH) the mount point `guest_path` below the new root, creating
 * each missing directory (and, for a file mount, the file) on the way. No
 * symlink is ever followed: a host mount attached earlier may hold symlinks
 * a guest planted on the host, and following one would create directories,
 * or attach the mount, outside the new root. One fails with ELOOP.
 */
static int open_mount_point(int root, const char *guest_path, int directory, const struct init_config *config) {
    char path[PATH_MAX];
    size_t length = strlen(guest_path);
    if (guest_path[0] != '/' || length >= sizeof path) {
        errno = EINVAL;
        return -1;
    }
    memcpy(path, guest_path, length + 1);
    SE_CLEANUP_FD int dir = fcntl(root, F_DUPFD_CLOEXEC, 0);
    if (dir < 0) return -1;
    char *name = path + 1;
    while (*name) {
        char *slash = strchr(name, '/');
        int last = slash == NULL;
        if (slash) *slash = 0;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || *name == 0) {
            errno = EINVAL;
            return -1;
        }
        int want_directory = !last || directory;
        int next = open_component(dir, name, want_directory);
        if (next < 0 && errno == ENOENT) {
            int made = make_mount_point_entry(dir, name, want_directory, config);
            next = made == 0 ? open_component(dir, name, want_directory) : -1;
        }
        if (next < 0) return -1;
        se_close_fd_ptr(&dir);
        dir = next;
        if (last) break;
        name = slash + 1;
    }
    return se_take_fd(&dir);
}

/* Attaches a detached mount (from open_tree in the supervisor) at target, a guest path. */
static int attach(int root, int tree, const char *target, const struct init_config *config,
                  struct failure *failure) {
    struct stat info;
    if (fstat(tree, &info) != 0) return fail(failure, "stat detached mount");
    SE_CLEANUP_FD int point = open_mount_point(root, target, S_ISDIR(info.st_mode), config);
    if (point < 0) return fail(failure, "create mount point");
    int moved = (int)syscall(SYS_move_mount, tree, "", point, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
    if (moved != 0) return fail(failure, "move_mount");
    return 0;
}

/* Replaces a skeleton file of the root being built (never a link: the root is ours). */
static int replace_root_file(int root, const char *path, const char *text) {
    SE_CLEANUP_FD int fd = openat(root, path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    size_t length = strlen(text);
    return write(fd, text, length) == (ssize_t)length ? 0 : -1;
}

/* With egress, names resolve through the supervisor's DNS server in the
 * sandbox; without, the skeleton's files say there is none. */
static int write_resolver(int root, const struct init_config *config, struct failure *failure) {
    if (!config->nameserver) return 0;
    char resolv[256];
    int length = snprintf(resolv, sizeof resolv,
                          "# SecureExec's DNS for this sandbox: answers only names the egress policy allows.\n"
                          "nameserver %s\noptions timeout:2 attempts:2\n",
                          config->nameserver);
    if (length < 0 || (size_t)length >= sizeof resolv) {
        errno = ENAMETOOLONG;
        return fail(failure, "resolv.conf");
    }
    if (replace_root_file(root, "etc/resolv.conf", resolv) != 0) return fail(failure, "write resolv.conf");
    static const char nsswitch[] = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"
                                   "networks: files\nprotocols: files\nservices: files\n";
    if (replace_root_file(root, "etc/nsswitch.conf", nsswitch) != 0) return fail(failure, "write nsswitch.conf");
    return 0;
}

/* Makes the symlink `link` below root, creating its missing parent directories. */
static int make_symlink(int root, const struct root_symlink *link, const struct init_config *config,
                        struct failure *failure) {
    const char *slash = strrchr(link->guest_path, '/');
    const char *name = slash + 1;
    char parent[PATH_MAX];
    size_t length = (size_t)(slash - link->guest_path);
    if (*name == 0 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || length >= sizeof parent) {
        errno = EINVAL;
        return fail(failure, "symlink path");
    }
    memcpy(parent, link->guest_path, length);
    parent[length] = 0;
    SE_CLEANUP_FD int dir = open_mount_point(root, length == 0 ? "/" : parent, 1, config);
    if (dir < 0) return fail(failure, "create symlink directory");
    if (symlinkat(link->target, dir, name) != 0) return fail(failure, "symlink in root");
    return 0;
}

static int make_symlinks(int root, const struct init_config *config, struct failure *failure) {
    for (size_t i = 0; i < config->symlink_count; i++) {
        if (make_symlink(root, &config->symlinks[i], config, failure) != 0) return -1;
    }
    /* The host's zone, named the way the host names it: ICU takes the zone's
     * name from where /etc/localtime links (".../zoneinfo/<name>"), glibc
     * reads the file there (a mount, or the root's own zoneinfo). Made with
     * the other links, before the mounts, so a layered root's layer holds it
     * too (the supervisor sends no zone when a caller's mount covers
     * /etc/localtime). */
    if (config->localtime && symlinkat(config->localtime, root, "etc/localtime") != 0)
        return fail(failure, "symlink /etc/localtime");
    return write_resolver(root, config, failure);
}

static int build_dev(struct failure *failure) {
    if (mkdir(NEW_ROOT "/dev", 0755) != 0 && errno != EEXIST) return fail(failure, "mkdir /dev");
    if (mount("tmpfs", NEW_ROOT "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k") != 0)
        return fail(failure, "mount /dev tmpfs");
    static const char *const links[][2] = {
        {"/proc/self/fd", NEW_ROOT "/dev/fd"},
        {"/proc/self/fd/0", NEW_ROOT "/dev/stdin"},
        {"/proc/self/fd/1", NEW_ROOT "/dev/stdout"},
        {"/proc/self/fd/2", NEW_ROOT "/dev/stderr"},
    };
    for (size_t i = 0; i < sizeof links / sizeof *links; i++) {
        if (symlink(links[i][0], links[i][1]) != 0) return fail(failure, "symlink in /dev");
    }
    return 0;
}

static int build_proc(const struct init_config *config, struct failure *failure) {
    if (mkdir(NEW_ROOT "/proc", 0555) != 0 && errno != EEXIST) return fail(failure, "mkdir /proc");
    /* We are PID 1 of the new pid namespace, so this /proc shows only the sandbox. */
    if (mount("proc", NEW_ROOT "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
        return fail(failure, "mount /proc");
    /* The sandbox's own per-namespace knobs (its user namespace's counts, its
     * network namespace's socket buffers), set before /proc/sys goes
     * read-only. They belong to namespaces only this sandbox is in. */
    for (size_t i = 0; i < config->sysctl_count; i++) {
        char name[PATH_MAX];
        const char *space = strchr(config->sysctls[i], ' ');
        size_t length = (size_t)(space - config->sysctls[i]);
        if (length + sizeof NEW_ROOT "/proc/sys/" >= sizeof name) return fail(failure, "sysctl name");
        snprintf(name, sizeof name, NEW_ROOT "/proc/sys/%.*s", (int)length, config->sysctls[i]);
        SE_CLEANUP_FD int fd = open(name, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) return fail(failure, "open sysctl");
        const char *value = space + 1;
        ssize_t written = write(fd, value, strlen(value));
        if (written != (ssize_t)strlen(value)) return fail(failure, "write sysctl");
    }
    /* Kernel-wide knobs stay visible (node reads some) but read-only. */
    static const char *const read_only[] = {"sys", "irq", "bus", "fs", "sysrq-trigger"};
    for (size_t i = 0; i < sizeof read_only / sizeof *read_only; i++) {
        char path[PATH_MAX];
        if (join(path, sizeof path, NEW_ROOT "/proc/", read_only[i]) != 0) return fail(failure, "proc path");
        if (access(path, F_OK) != 0) continue;
        if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) != 0) return fail(failure, "bind /proc entry");
        if (mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
            return fail(failure, "remount /proc entry read-only");
    }
    /* Files that expose kernel memory or host-wide state read as empty. */
    static const char *const masked[] = {"kcore", "keys", "timer_list", "sched_debug", "latency_stats",
                                         "kallsyms", "kmsg", "kpagecount", "kpageflags", "kpagecgroup",
                                         /* facts about the host: how it booted, what it runs, its disks */
                                         "cmdline", "config.gz", "bootconfig", "modules", "partitions",
                                         "diskstats", "swaps", "sys/kernel/random/boot_id",
                                         /* its hardware, and host-wide memory detail */
                                         "interrupts", "iomem", "ioports", "devices", "zoneinfo", "buddyinfo",
                                         "pagetypeinfo", "vmallocinfo", "slabinfo"};
    for (size_t i = 0; i < sizeof masked / sizeof *masked; i++) {
        char path[PATH_MAX];
        if (join(path, sizeof path, NEW_ROOT "/proc/", masked[i]) != 0) return fail(failure, "proc path");
        if (access(path, F_OK) != 0) continue;
        if (mount(NEW_ROOT "/dev/null", path, NULL, MS_BIND, NULL) != 0) return fail(failure, "mask /proc file");
    }
    /* pressure: host-wide stall figures, a side channel between tenants. */
    static const char *const hidden_dirs[] = {"acpi", "scsi", "asound", "pressure", "driver"};
    for (size_t i = 0; i < sizeof hidden_dirs / sizeof *hidden_dirs; i++) {
        char path[PATH_MAX];
        if (join(path, sizeof path, NEW_ROOT "/proc/", hidden_dirs[i]) != 0) return fail(failure, "proc path");
        if (access(path, F_OK) != 0) continue;
        if (mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0,mode=0555") != 0)
            return fail(failure, "mask /proc directory");
    }
    return 0;
}

static int mount_writable(const char *target, unsigned long long bytes, const char *mode,
                          const struct init_config *config, struct failure *failure) {
    if (mkdir(target, 0755) != 0 && errno != EEXIST) return fail(failure, "mkdir writable area");
    char options[160];
    snprintf(options, sizeof options, "size=%llu,mode=%s,uid=%u,gid=%u,nr_inodes=%llu", bytes, mode,
             config->guest_uid, config->guest_gid, bytes / 1024 + 1024);
    if (mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, options) != 0)
        return fail(failure, "mount writable tmpfs");
    return 0;
}

/*
 * /workspace: a fresh tmpfs, the caller's project as it is (read-write,
 * idmapped by the supervisor), or the project under a private writable
 * layer. For the overlay, a tmpfs of workspace_bytes holds the layer and its
 * work directory, with the project attached beside them; once the overlay is
 * mounted at /workspace, that staging is detached: overlayfs keeps its own
 * private clones of its layers, so nothing of it is reachable from the guest.
 * The project's mounts keep exec (native addons and tools in node_modules
 * must load), never setuid or devices.
 */
static int build_workspace(int root, const struct init_config *config, struct failure *failure) {
    const char *target = NEW_ROOT GUEST_ROOT_WORKSPACE;
    switch (config->workspace_mode) {
    case WORKSPACE_TMPFS:
        return mount_writable(target, config->workspace_bytes, "0755", config, failure);
    case WORKSPACE_BIND: {
        int attached = attach(root, config->workspace_fd, GUEST_ROOT_WORKSPACE, config, failure);
        close(config->workspace_fd);
        return attached;
    }
    case WORKSPACE_OVERLAY:
        break;
    }
    /* The layers are staged in /dev (init's own tmpfs, not yet read-only)
     * and detached once the overlay holds them, so the guest's mount table
     * shows neither the staging nor the project's host path. */
#define STAGE "/dev/.workspace-layers"
    if (mkdir(NEW_ROOT STAGE, 0700) != 0) return fail(failure, "mkdir workspace layers");
    char options[320];
    snprintf(options, sizeof options, "size=%llu,mode=0700,nr_inodes=%llu", config->workspace_bytes,
             config->workspace_bytes / 1024 + 1024);
    if (mount("tmpfs", NEW_ROOT STAGE, "tmpfs", MS_NOSUID | MS_NODEV, options) != 0)
        return fail(failure, "mount workspace layer tmpfs");
    if (mkdir(NEW_ROOT STAGE "/upper", 0755) != 0 || mkdir(NEW_ROOT STAGE "/work", 0700) != 0)
        return fail(failure, "mkdir workspace layer");
    /* The overlay's root takes the upper directory's owner: the guest's. */
    if (chown(NEW_ROOT STAGE "/upper", config->guest_uid, config->guest_gid) != 0)
        return fail(failure, "chown workspace layer");
    int attached = attach(root, config->workspace_fd, STAGE "/lower", config, failure);
    close(config->workspace_fd);
    if (attached != 0) return -1;
    if (mkdir(target, 0755) != 0 && errno != EEXIST) return fail(failure, "mkdir workspace");
    snprintf(options, sizeof options,
             "lowerdir=%s/lower,upperdir=%s/upper,workdir=%s/work,userxattr", NEW_ROOT STAGE, NEW_ROOT STAGE,
             NEW_ROOT STAGE);
    if (mount("overlay", target, "overlay", MS_NOSUID | MS_NODEV, options) != 0)
        return fail(failure, "mount workspace overlay");
    /* Overlayfs keeps private clones of its layers: the staged mounts can go. */
    if (umount2(NEW_ROOT STAGE, MNT_DETACH) != 0) return fail(failure, "detach workspace layers");
    if (rmdir(NEW_ROOT STAGE) != 0) return fail(failure, "remove workspace layers");
#undef STAGE
    return 0;
}

/* Copies the rootfs/ skeleton (small text files and directories) into dest. */
static int copy_tree(int source_dir, int dest_dir, struct failure *failure) {
    SE_CLEANUP_FD int walk = dup(source_dir);
    if (walk < 0) return fail(failure, "dup skeleton dir");
    DIR *listing = fdopendir(walk);
    if (!listing) return fail(failure, "open skeleton dir");
    se_take_fd(&walk); /* the listing owns it now */
    int result = 0;
    struct dirent *entry;
    while (result == 0 && (entry = readdir(listing))) {
        const char *name = entry->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) continue;
        struct stat info;
        if (fstatat(source_dir, name, &info, AT_SYMLINK_NOFOLLOW) != 0) {
            result = fail(failure, "stat skeleton entry");
        } else if (S_ISDIR(info.st_mode)) {
            SE_CLEANUP_FD int from = openat(source_dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (from < 0) {
                result = fail(failure, "open skeleton subdir");
                continue;
            }
            SE_CLEANUP_FD int to = -1;
            if (mkdirat(dest_dir, name, 0755) != 0 && errno != EEXIST) {
                result = fail(failure, "mkdir skeleton subdir");
            } else if ((to = openat(dest_dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
                result = fail(failure, "open copied subdir");
            } else {
                result = copy_tree(from, to, failure);
            }
        } else if (S_ISREG(info.st_mode)) {
            SE_CLEANUP_FD int from = openat(source_dir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
            SE_CLEANUP_FD int to = openat(dest_dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
            if (from < 0 || to < 0) {
                result = fail(failure, "open skeleton file");
            } else {
                off_t offset = 0;
                while (offset < info.st_size) {
                    ssize_t moved = sendfile(to, from, &offset, (size_t)(info.st_size - offset));
                    if (moved <= 0) {
                        if (moved == 0) errno = EIO;
                        result = fail(failure, "copy skeleton file");
                        break;
                    }
                }
            }
        } else if (S_ISLNK(info.st_mode)) {
            char link[PATH_MAX];
            ssize_t length = readlinkat(source_dir, name, link, sizeof link - 1);
            if (length < 0) {
                result = fail(failure, "read skeleton symlink");
            } else {
                link[length] = 0;
                if (symlinkat(link, dest_dir, name) != 0) result = fail(failure, "copy skeleton symlink");
            }
        }
    }
    closedir(listing);
    return result;
}

/* SecureExec's own top-level directories: the mounts init puts there come
 * later, over whatever the base holds, so nothing of the base is checked. */
static int is_own_area(const char *guest_path) {
    static const char *const areas[] = {"/dev", "/proc", "/tmp", GUEST_ROOT_WORKSPACE};
    for (size_t i = 0; i < sizeof areas / sizeof *areas; i++) {
        size_t length = strlen(areas[i]);
        if (strncmp(guest_path, areas[i], length) == 0 && (guest_path[length] == 0 || guest_path[length] == '/'))
            return 1;
    }
    return 0;
}

/*
 * Makes a mount point for guest_path in the layer, so it exists in the
 * read-only overlay. Where the base already has the path, the layer's
 * directories merge with it; a symlink (or a file where a directory is
 * needed) in the base on the way is refused, as everywhere else.
 */
static int make_layer_mount_point(int layer, int base, const char *guest_path, int directory,
                                  const struct init_config *config) {
    char path[PATH_MAX];
    size_t length = strlen(guest_path);
    if (length >= sizeof path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(path, guest_path, length + 1);
    SE_CLEANUP_FD int in_base = fcntl(base, F_DUPFD_CLOEXEC, 0);
    if (in_base < 0) return -1;
    for (char *name = path + 1; *name;) {
        char *slash = strchr(name, '/');
        if (slash) *slash = 0;
        int next = open_component(in_base, name, slash != NULL || directory);
        if (next < 0 && errno != ENOENT) return -1;
        se_close_fd_ptr(&in_base);
        in_base = next;
        if (next < 0 || !slash) break;
        name = slash + 1;
    }
    SE_CLEANUP_FD int point = open_mount_point(layer, guest_path, directory, config);
    return point < 0 ? -1 : 0;
}

/*
 * The root over a base: a read-only overlay whose upper lower layer is
 * SecureExec's (skeleton, symlinks, the directories of its own mounts and
 * a mount point for every other mount) and whose lower one is the base.
 * Both are staged in the root tmpfs the overlay then covers; overlayfs keeps
 * private clones of its layers, so pivot_root's detach of the old root takes
 * the staging away and the guest never sees it.
 */
static int build_layered_root(const struct init_config *config, struct failure *failure) {
    if (mkdir(NEW_ROOT "/.layer", 0755) != 0 || mkdir(NEW_ROOT "/.base", 0755) != 0)
        return fail(failure, "mkdir root layers");
    SE_CLEANUP_FD int staging = open(NEW_ROOT, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (staging < 0) return fail(failure, "open root staging");
    int attached = attach(staging, config->base_fd, "/.base", config, failure);
    close(config->base_fd);
    if (attached != 0) return -1;
    SE_CLEANUP_FD int layer = open(NEW_ROOT "/.layer", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    SE_CLEANUP_FD int base = open(NEW_ROOT "/.base", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (layer < 0 || base < 0) return fail(failure, "open root layers");
    if (copy_tree(config->rootfs_fd, layer, failure) != 0) return -1;
    if (make_symlinks(layer, config, failure) != 0) return -1;
    static const char *const own[] = {"dev", "proc", "tmp", &GUEST_ROOT_WORKSPACE[1]};
    for (size_t i = 0; i < sizeof own / sizeof *own; i++) {
        if (mkdirat(layer, own[i], 0755) != 0 && errno != EEXIST) return fail(failure, "mkdir in root layer");
    }
    for (size_t i = 0; i < config->bind_count; i++) {
        if (is_own_area(config->binds[i].guest_path)) continue;
        struct stat info;
        if (fstat(config->binds[i].fd, &info) != 0) return fail(failure, "stat detached mount");
        if (make_layer_mount_point(layer, base, config->binds[i].guest_path, S_ISDIR(info.st_mode), config) != 0)
            return fail(failure, "create mount point in root layer");
    }
    /* Two lower layers and no upper: read-only by construction. */
    if (mount("overlay", NEW_ROOT, "overlay", MS_RDONLY | MS_NOSUID | MS_NODEV,
              "lowerdir=" NEW_ROOT "/.layer:" NEW_ROOT "/.base,userxattr") != 0)
        return fail(failure, "mount root overlay");
    return 0;
}

int build_guest_root(const struct init_config *config, struct failure *failure) {
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) return fail(failure, "make mounts private");
    if (mount("tmpfs", NEW_ROOT, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m") != 0)
        return fail(failure, "mount guest root tmpfs");

    if (config->base_fd >= 0) {
        if (build_layered_root(config, failure) != 0) return -1;
    } else {
        SE_CLEANUP_FD int dest = open(NEW_ROOT, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dest < 0) return fail(failure, "open guest root");
        if (copy_tree(config->rootfs_fd, dest, failure) != 0) return -1;
        if (make_symlinks(dest, config, failure) != 0) return -1;
    }

    if (build_dev(failure) != 0) return -1;
    int root = open(NEW_ROOT, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) return fail(failure, "open guest root");
    int built = build_workspace(root, config, failure);
    if (built == 0) built = mount_writable(NEW_ROOT "/tmp", config->tmp_bytes, "1777", config, failure);

    /* After the writable areas, so a host mount may sit inside one
     * (e.g. /workspace/node_modules), and in the caller's order, so nested
     * mounts (/data, then /data/cache) stack as given. */
    for (size_t i = 0; built == 0 && i < config->bind_count; i++) {
        built = attach(root, config->binds[i].fd, config->binds[i].guest_path, config, failure);
        close(config->binds[i].fd);
    }
    close(root);
    if (built != 0) return -1;
    if (mount(NULL, NEW_ROOT "/dev", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC, NULL) != 0)
        return fail(failure, "remount /dev read-only");
    /* /proc last: its masks bind the guest's /dev/null. */
    if (build_proc(config, failure) != 0) return -1;

    if (mount(NULL, NEW_ROOT, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) != 0)
        return fail(failure, "remount guest root read-only");

    /* pivot_root(".", ".") stacks the old root on top of the new one; the
     * lazy unmount then removes it and everything of the host's under it. */
    if (chdir(NEW_ROOT) != 0) return fail(failure, "chdir guest root");
    if (syscall(SYS_pivot_root, ".", ".") != 0) return fail(failure, "pivot_root");
    if (umount2(".", MNT_DETACH) != 0) return fail(failure, "detach old root");
    if (chdir("/") != 0) return fail(failure, "chdir / in guest root");
    return 0;
}
