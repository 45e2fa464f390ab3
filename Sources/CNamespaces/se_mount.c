#define _GNU_SOURCE
#include "se_mount.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int se_detached_mount(const char *path, uint64_t attributes, int recursive, const char **step) {
    unsigned flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (recursive ? AT_RECURSIVE : 0);
    int tree = (int)syscall(SYS_open_tree, AT_FDCWD, path, flags);
    if (tree < 0) {
        *step = "open_tree";
        return -1;
    }
    struct mount_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.attr_set = attributes;
    if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &attr, sizeof attr) != 0) {
        int saved = errno;
        close(tree);
        errno = saved;
        *step = "mount_setattr";
        return -1;
    }
    return tree;
}
